"""Tiny clients for the benchmarks: QEMU's QMP and pyemu's human monitor, over unix sockets.

QMP as QEMU speaks it: the server greets with one JSON line, the client answers
``qmp_capabilities``, then each command carries an id the reply echoes; events may
arrive between. Stdlib only, so the benches need nothing but a QEMU binary.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

QEMU = shutil.which("qemu-system-x86_64")


def qemu_argv(ram_mib: int, kernel: str | Path, qmp: str | Path, serial: str = "null",
              append: str | None = None) -> list[str]:
    """QEMU TCG on the pc machine booting a Multiboot kernel, QMP on a unix socket."""
    argv = [QEMU or "qemu-system-x86_64", "-M", "pc", "-m", str(ram_mib), "-accel", "tcg",
            "-kernel", str(kernel), "-display", "none", "-serial", serial,
            "-qmp", f"unix:{qmp},server,nowait"]
    return argv + (["-append", append] if append is not None else [])


class QmpError(Exception):
    """A QMP error reply, a closed socket or a timeout."""


def _connect_unix(path: str | Path, timeout: float, proc: subprocess.Popen | None
                  ) -> socket.socket:
    """Connect to a server socket its process may not have created yet."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except OSError:
            sock.close()
            if proc is not None and proc.poll() is not None:
                raise QmpError(f"{proc.args[0]} exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise QmpError(f"no server on {path} after {timeout} s") from None
            time.sleep(0.02)


class Qmp:
    """One QMP connection: ``cmd(name, **arguments)`` returns the reply's ``return``."""

    def __init__(self, path: str | Path, timeout: float = 10.0,
                 proc: subprocess.Popen | None = None) -> None:
        self.sock = _connect_unix(path, timeout, proc)
        self.sock.settimeout(timeout)
        self.file = self.sock.makefile("rb")
        self.events: list[dict[str, Any]] = []
        self._id = 0
        greeting = self._read()
        if "QMP" not in greeting:
            raise QmpError(f"not a QMP greeting: {greeting}")
        self.cmd("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        line = self.file.readline()
        if not line:
            raise QmpError("QMP socket closed")
        return json.loads(line)

    def cmd(self, name: str, **arguments: Any) -> Any:
        self._id += 1
        ident = f"bench#{self._id}"
        self.sock.sendall(json.dumps({"execute": name, "arguments": arguments,
                                      "id": ident}).encode() + b"\n")
        while True:
            msg = self._read()
            if "event" in msg:
                self.events.append(msg)
            elif msg.get("id") == ident:
                if "error" in msg:
                    raise QmpError(f"{name}: {msg['error'].get('desc', msg['error'])}")
                return msg["return"]

    def wait_event(self, name: str, timeout: float) -> dict[str, Any]:
        """The first event ``name`` (already queued or still to come)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["event"] == name:
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise QmpError(f"no {name} event after {timeout} s")
            self.sock.settimeout(left)
            try:
                msg = self._read()
            except TimeoutError:
                continue
            if "event" in msg:
                self.events.append(msg)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class Hmp:
    """pyemu's human monitor on a unix socket: ``cmd(line)`` returns the text before the
    next prompt."""

    PROMPT = b"(pyemu) "

    def __init__(self, path: str | Path, timeout: float = 20.0,
                 proc: subprocess.Popen | None = None) -> None:
        self.sock = _connect_unix(path, timeout, proc)
        self.sock.settimeout(timeout)
        self._buf = b""
        self._until_prompt()  # the banner

    def _until_prompt(self) -> str:
        while not self._buf.endswith(self.PROMPT):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise QmpError("monitor socket closed")
            self._buf += chunk
        text, self._buf = self._buf[:-len(self.PROMPT)], b""
        return text.decode("utf-8", "replace").replace("\r\n", "\n")

    def cmd(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\n")
        return self._until_prompt().strip()

    def close(self) -> None:
        self.sock.close()


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """End a process this bench started (terminate, then kill)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port (read from /proc, so no connection
    is spent on a server that accepts only one)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        return any(cols[1] == want and cols[3] == "0A"
                   for cols in (row.split() for row in f.readlines()[1:]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
