"""A guest run as a pyemu process whose serial console is its stdout (``-nographic``),
for tests that follow what a real guest prints: a reader thread gathers the output and
``wait_for`` waits, with a timeout, for a pattern in it, so a guest that hangs or stops
fails the test with the end of its console.

Several can run at once: a test module may start slow guests together so that their
boots share the machine's cores (used by tests/integration/test_debian_kernels.py).
"""

from __future__ import annotations

import bisect
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class SerialGuest:
    """``pyemu ARGS -nographic`` started at once; its console output kept in ``out``."""

    def __init__(self, *args: str) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "emu.cli", *args, "-nographic"], cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out = b""
        self.arrivals: list[tuple[int, float]] = []  # (end of a chunk in out, its time)
        self.err = b""
        self.ended = False
        self.cond = threading.Condition()
        self.readers = [threading.Thread(target=self._read, daemon=True),
                        threading.Thread(target=self._read_stderr, daemon=True)]
        for reader in self.readers:
            reader.start()

    def _read(self) -> None:
        while chunk := os.read(self.proc.stdout.fileno(), 65536):
            with self.cond:
                self.out += chunk
                self.arrivals.append((len(self.out), time.monotonic()))
                self.cond.notify_all()
        with self.cond:
            self.ended = True  # pyemu closed its stdout: it has exited
            self.cond.notify_all()

    def _read_stderr(self) -> None:
        while chunk := os.read(self.proc.stderr.fileno(), 65536):
            self.err = (self.err + chunk)[-4096:]

    def wait_for(self, pattern: bytes, timeout: float, start: int = 0) -> re.Match:
        """The first match of ``pattern`` in the output from ``start`` on; fails when
        ``timeout`` seconds pass or pyemu's output ends first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while not (m := regex.search(self.out, start)):
                left = deadline - time.monotonic()
                if left <= 0 or self.ended:
                    raise AssertionError(self._why_not(pattern, timeout))
                self.cond.wait(left)
            return m

    def _why_not(self, pattern: bytes, timeout: float) -> str:
        how = f"not within {timeout:.0f} s"
        if self.ended:
            try:
                how = f"pyemu exited with status {self.proc.wait(5)}"
            except subprocess.TimeoutExpired:
                how = "pyemu closed its output"
        tail = self.out[-2000:].decode(errors="replace")
        return (f"no {pattern!r} on the console ({how}); it ends with:\n{tail}"
                f"\npyemu's stderr ends with:\n{self.err[-1000:].decode(errors='replace')}")

    def type(self, text: str) -> int:
        """Types a line on the console; returns the output position before it."""
        with self.cond:
            start = len(self.out)
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()
        return start

    def seconds_to(self, match: re.Match) -> float:
        """Seconds from the start of the process to the output ``match`` ends in."""
        with self.cond:
            at = bisect.bisect_left(self.arrivals, (match.end(), 0.0))
            return self.arrivals[at][1] - self.started

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for reader in self.readers:  # until they read the end of the pipes
            reader.join(5)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()

    def __enter__(self) -> SerialGuest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
