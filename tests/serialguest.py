"""A guest run as a process whose serial console is its stdout (pyemu or QEMU with
``-nographic``), for tests and benches that follow what a real guest prints: reader
threads gather the output and ``wait_for`` waits, with a timeout, for a pattern in it,
so a guest that hangs, stops or prints a "stop string" first fails with the end of its
console. ``boot_until`` times a command to a series of markers.

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
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A kernel message on the console: "[    1.743104] tsc: ...", written whole up to its
# newline, but maybe into a line the shell is writing ("after[    1.83] msg\n\n").
PRINTK_LINE = re.compile(r"\[ *\d+\.\d{6}\] [^\n]*\n")
# What a terminal does not print: a carriage return, an ANSI control sequence.
CONTROL = rb"(?:\r|\x1b\[[0-9;?]*[A-Za-z])*"


def on_screen(text: bytes) -> bytes:
    """A pattern for ``text`` as a terminal shows it: control sequences may come between
    its characters. Two writers on one port do that: SeaBIOS's serial console (INT 10h
    turned into escapes, cursor moves when it syncs its cursor, at times set by the
    timer) and a loader writing COM1 itself (SYSLINUX's SERIAL)."""
    return CONTROL.join(re.escape(bytes([c])) for c in text)


def find_on_screen(out: bytes, text: bytes) -> int:
    """Where ``text`` first shows in ``out`` (as ``on_screen`` matches it), or -1."""
    m = re.search(on_screen(text), out)
    return m.start() if m else -1


def pyemu_argv(*args: str) -> list[str]:
    """The command line running pyemu with ``args``."""
    return [sys.executable, "-m", "emu.cli", *args]


def start(argv: Sequence[str]) -> subprocess.Popen:
    """``argv`` started in the project's root, with pipes for stdin, stdout and stderr."""
    return subprocess.Popen(list(argv), cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


class SerialGuest:
    """``pyemu ARGS -nographic`` started at once (or the command ``argv``, or the
    process ``proc`` already started with pipes); its console output kept in ``out``.
    Any of the ``stop`` strings showing before a pattern ``wait_for`` waits for fails."""

    def __init__(self, *args: str, argv: Sequence[str] | None = None,
                 proc: subprocess.Popen | None = None, stop: Iterable[bytes] = ()) -> None:
        self.started = time.monotonic()
        self.proc = proc or start(argv or pyemu_argv(*args, "-nographic"))
        self.stop = tuple(stop)
        self.seq = 0
        self.out = b""
        self.arrivals: list[tuple[int, float]] = []  # (end of a chunk in out, its time)
        self.err = b""
        self.ended = False
        self.cond = threading.Condition()
        self.readers = [threading.Thread(target=self._read, daemon=True)]
        if self.proc.stderr is not None:
            self.readers.append(threading.Thread(target=self._read_stderr, daemon=True))
        for reader in self.readers:
            reader.start()

    def _read(self) -> None:
        while chunk := os.read(self.proc.stdout.fileno(), 65536):
            with self.cond:
                self.out += chunk
                self.arrivals.append((len(self.out), time.monotonic()))
                self.cond.notify_all()
        with self.cond:
            self.ended = True  # the process closed its stdout: it has exited
            self.cond.notify_all()

    def _read_stderr(self) -> None:
        while chunk := os.read(self.proc.stderr.fileno(), 65536):
            self.err = (self.err + chunk)[-4096:]

    def wait_for(self, pattern: bytes, timeout: float, start: int = 0) -> re.Match:
        """The first match of ``pattern`` in the output from ``start`` on; fails when
        ``timeout`` seconds pass, the output ends or a stop string shows first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                m = regex.search(self.out, start)
                end = m.start() if m else len(self.out)
                for bad in self.stop:
                    if bad in self.out[start:end]:
                        raise AssertionError(self._why_not(pattern, f"{bad!r} showed first"))
                if m:
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or self.ended:
                    raise AssertionError(self._why_not(pattern, self._how(timeout)))
                self.cond.wait(left)

    def _how(self, timeout: float) -> str:
        if not self.ended:
            return f"not within {timeout:.0f} s"
        try:
            return f"{self.proc.args[0]} exited with status {self.proc.wait(5)}"
        except subprocess.TimeoutExpired:
            return f"{self.proc.args[0]} closed its output"

    def _why_not(self, pattern: bytes, how: str) -> str:
        tail = self.out[-2000:].decode(errors="replace")
        return (f"no {pattern!r} on the console ({how}); it ends with:\n{tail}"
                f"\nits stderr ends with:\n{self.err[-1000:].decode(errors='replace')}")

    def type(self, text: str) -> int:
        """Types a line on the console; returns the output position before it."""
        with self.cond:
            start = len(self.out)
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()
        return start

    def run(self, command: str, timeout: float = 30, *, kernel_lines: bool = False) -> str:
        """The output of shell ``command`` (without the echoed command line). The end
        mark is computed by the shell, so the echo of the typed line cannot match it.
        Kernel messages the console printed meanwhile (lines starting with a printk
        timestamp) are left out, unless ``kernel_lines`` (the command prints such lines
        itself: dmesg)."""
        self.seq += 1
        typed = f"END-$((1000+{self.seq}))"
        start = self.type(f"{command}; echo {typed}")
        m = self.wait_for(rb"\nEND-%d" % (1000 + self.seq), timeout=timeout, start=start)
        text = self.out[start:m.start() + 1].decode(errors="replace").replace("\r", "")
        # after the (re)drawn line; an echo a kernel message broke up ends at a line end
        _, seen, rest = text.rpartition(typed)
        output = (rest if seen else text).split("\n", 1)[-1]
        return output if kernel_lines else PRINTK_LINE.sub("", output)

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
            if f is not None:
                f.close()

    def __enter__(self) -> SerialGuest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def boot_until(argv: Sequence[str], wanted: Sequence[bytes], timeout: float,
               stop: Iterable[bytes] = ()) -> tuple[bytes, list[float]]:
    """Start ``argv`` and read its console until each of ``wanted`` (plain strings, as
    ``on_screen`` matches them) has shown, in order, within ``timeout`` seconds of its
    start; then kill it. Returns the
    output and the seconds from process start to each marker. A ``stop`` string before
    a marker, the timeout or an early exit fails, with the output's end."""
    with SerialGuest(argv=argv, stop=stop) as guest:
        times, at = [], 0
        for marker in wanted:
            left = timeout - (time.monotonic() - guest.started)
            m = guest.wait_for(on_screen(marker), max(left, 0.0), at)
            times.append(guest.seconds_to(m))
            at = m.end()
        return guest.out, times


def timeline(wanted: Sequence[bytes], times: Sequence[float]) -> str:
    """``'marker' at 1.23 s, ...``: when each marker showed."""
    return ", ".join(f"{w.decode()!r} at {t:.2f} s" for w, t in zip(wanted, times, strict=True))
