"""Fixtures for tests that run pyemu as a user does: a real process with real stdio."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUESTS = ROOT / "tests" / "guests" / "build"


def _guest(name: str) -> str:
    path = GUESTS / f"{name}.elf"
    if not path.exists():
        pytest.fail(f"{path} is missing: 'make guests' builds the test guests")
    return str(path)


def _command(*args: str) -> dict:
    return {"args": [sys.executable, "-m", "emu.cli", *args], "cwd": ROOT,
            "env": dict(os.environ, PYTHONPATH=str(ROOT))}


def _run(*args: str, stdin: bytes = b"", timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(**_command(*args), input=stdin, capture_output=True, timeout=timeout)


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(**_command(*args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _type_into(proc: subprocess.Popen, *steps: float | bytes) -> None:
    """Act at a console: each float waits that many seconds, each bytes is typed."""
    for step in steps:
        if isinstance(step, bytes):
            proc.stdin.write(step)
            proc.stdin.flush()
        else:
            time.sleep(step)


@pytest.fixture
def guest() -> Callable[[str], str]:
    """Path of a built test guest by name."""
    return _guest


@pytest.fixture
def pyemu() -> Callable[..., subprocess.CompletedProcess]:
    """Run ``pyemu ARGS`` to completion; returns the CompletedProcess (bytes)."""
    return _run


@pytest.fixture
def type_into() -> Callable[..., None]:
    """Type into a running pyemu's stdin with pauses: ``type_into(proc, 1.0, b"keys")``."""
    return _type_into


@pytest.fixture
def pyemu_proc():
    """Start ``pyemu ARGS`` in the background; killed at the end of the test."""
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        p = _spawn(*args)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(10)
        for f in (p.stdin, p.stdout, p.stderr):
            if f:
                f.close()


PROMPT = b"(pyemu) "


class MonitorClient:
    """A socket client that sends a line and returns the text up to the next prompt."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(15)
        self.buf = b""

    def until_prompt(self) -> str:
        while PROMPT not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"monitor closed; got {self.buf!r}")
            self.buf += chunk
        text, _, self.buf = self.buf.partition(PROMPT)
        return text.decode().replace("\r\n", "\n").strip()

    def cmd(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\n")
        return self.until_prompt()


def _connect(address: Path | tuple[str, int], proc: subprocess.Popen) -> MonitorClient:
    """Connect to a monitor socket (a unix path or host and port), waiting for it."""
    for _ in range(200):
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode())
        s = socket.socket(socket.AF_UNIX if isinstance(address, Path) else socket.AF_INET)
        try:
            s.connect(str(address) if isinstance(address, Path) else address)
            return MonitorClient(s)
        except OSError:
            s.close()
            time.sleep(0.05)
    raise AssertionError("monitor socket never appeared")


@pytest.fixture
def connect_monitor() -> Callable[..., MonitorClient]:
    """``connect_monitor(address, proc)``: a client of pyemu's monitor at a unix path or
    (host, port), once the process has opened it."""
    return _connect


@pytest.fixture
def start_with_monitor(tmp_path, pyemu_proc):
    """``start_with_monitor(*ARGS)``: pyemu ARGS with a monitor on a unix socket;
    returns (process, client past the greeting)."""
    count = 0

    def start(*args: str) -> tuple[subprocess.Popen, MonitorClient]:
        nonlocal count
        count += 1
        path = tmp_path / f"mon{count}.sock"
        proc = pyemu_proc(*args, "-monitor", f"unix:{path},server,nowait")
        mon = _connect(path, proc)
        greeting = mon.until_prompt()
        assert greeting.startswith("pyemu ") and "monitor" in greeting
        return proc, mon

    return start
