"""Fixtures for tests that run pyemu as a user does: a real process with real stdio."""

from __future__ import annotations

import os
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
