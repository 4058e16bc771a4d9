"""What the boot benches share: the engines they compare (pyemu, pyemu through SeaBIOS,
QEMU's TCG), timing a command from its start to markers on its serial console, and the
CPU time it used by then.

The console is followed by tests/serialguest.py's SerialGuest, the runner the tests use,
so a bench and a test wait for a marker the same way. Each run ends with SIGTERM (pyemu
under bench/boot.py's --profile writes its statistics then), SIGKILL after 10 s.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from qmp import QEMU

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from serialguest import SerialGuest, pyemu_argv  # noqa: E402

SEABIOS = Path("/usr/share/seabios/bios.bin")
QEMU_NAME = "qemu tcg"


def engines(seabios: bool = False) -> dict[str, list[str]]:
    """The command lines to compare: pyemu, pyemu through SeaBIOS when ``seabios``, and
    QEMU's TCG when it is installed, by name."""
    found = {"pyemu": pyemu_argv()}
    if seabios:
        found["pyemu seabios"] = pyemu_argv("-bios", str(SEABIOS))
    if QEMU:
        found[QEMU_NAME] = [QEMU, "-accel", "tcg"]
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux's /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def follow(argv: Sequence[str], patterns: Sequence[bytes],
           timeout: float) -> tuple[list[tuple[float, float]], str]:
    """(wall, CPU) seconds from spawning ``argv`` to each of ``patterns`` (regular
    expressions) on its console, in order; when the process exits or ``timeout``
    seconds pass first, the times so far and why ("" when all showed)."""
    times: list[tuple[float, float]] = []
    with SerialGuest(argv=argv) as guest:
        try:
            at = 0
            for pattern in patterns:
                left = timeout - (time.monotonic() - guest.started)
                m = guest.wait_for(pattern, max(left, 0.0), at)
                times.append((guest.seconds_to(m), cpu_seconds(guest.proc.pid)))
                at = m.end()
            return times, ""
        except AssertionError as err:
            return times, f"{argv[0]}: {err}"
        finally:
            guest.proc.terminate()
            try:
                guest.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass  # close() kills it


def times_to(argv: Sequence[str], markers: Sequence[bytes],
             timeout: float) -> list[tuple[float, float]]:
    """``follow`` to plain-string ``markers``, all of which must show (RuntimeError)."""
    times, why = follow(argv, [re.escape(m) for m in markers], timeout)
    if why:
        raise RuntimeError(why)
    return times
