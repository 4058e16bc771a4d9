"""Snapshot benchmark: save and load time and file size, beside memcpy of the same RAM.

For 128 MiB and 512 MiB machines running the demo guest: idle (RAM mostly zero) and
with most pages non-zero (filled with incompressible data). Load is the whole path:
parse and check the stream, then apply it. When qemu-system-x86_64 is installed, every
row also shows QEMU TCG (idle: the same demo guest; most pages used: a guest that fills
them), snapshotting as its users do it: max-bandwidth out of the way, ``stop``, then
``migrate "exec:cat > FILE"`` (timed until query-migrate says completed), and loading
with ``-incoming defer`` then ``migrate-incoming "exec:cat FILE"`` (timed until
query-status leaves inmigrate); process start-up is not counted.
Usage: python bench/snapshot.py
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from emu.machine.config import MachineConfig
from emu.machine.pc.pc import PcMachine

sys.path.insert(0, str(Path(__file__).parent))
from qmp import QEMU, Qmp, QmpError, qemu_argv, stop  # noqa: E402

NO_CAP = 1 << 40  # QEMU's 128 MiB/s default cap holds even with the guest stopped
MIB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "emu" / "guests" / "demo.elf"
DIRTY = ROOT / "tests" / "guests" / "build" / "dirty.elf"  # `make guests` builds it


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(ram_mib: int, busy: bool) -> tuple[float, float, float, int]:
    m = PcMachine(MachineConfig(ram_size=ram_mib * MIB), {})
    m.run_until(20_000_000)  # 20 ms of the demo guest
    if busy:  # most pages non-zero, as a guest that has used its memory
        rng = np.random.default_rng(1)
        m.mem.ram[2 * MIB:] = rng.integers(0, 256, m.mem.ram.size - 2 * MIB, dtype=np.uint8)
    buf = io.BytesIO()
    save = best(lambda: (buf.seek(0), buf.truncate(), m.save_snapshot(buf)))
    data = buf.getvalue()
    load = best(lambda: m.load_snapshot(data))
    copy = np.empty_like(m.mem.ram)
    memcpy = best(lambda: np.copyto(copy, m.mem.ram))
    m.cpu.close()
    return save, load, memcpy, len(data)


def _poll(query, done, timeout: float = 60.0) -> float:
    """Seconds until ``done(query())``; polled every millisecond."""
    start = time.perf_counter()
    while not done(query()):
        if time.perf_counter() - start > timeout:
            raise QmpError(f"not done after {timeout} s")
        time.sleep(0.001)
    return time.perf_counter() - start


def _qemu(tmp: Path, ram_mib: int, busy: bool, extra: list[str], job) -> float:
    """Start QEMU (see ``qemu_measure`` for the guest), run ``job(qmp, serial)`` (it
    times itself), quit."""
    sock, serial = tmp / "qmp.sock", tmp / "serial.txt"
    serial.unlink(missing_ok=True)
    if busy:  # fills all but the first 4 MiB and 4 more with a pattern, then idles
        argv = qemu_argv(ram_mib, DIRTY, sock, f"file:{serial}",
                         f"mib={ram_mib - 8} period=1000000")
    else:
        argv = qemu_argv(ram_mib, DEMO, sock)
    proc = subprocess.Popen(argv + extra, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        qmp = Qmp(sock, proc=proc)
        seconds = job(qmp, serial)
        qmp.cmd("quit")
        proc.wait(10)
        return seconds
    finally:
        stop(proc)


def qemu_measure(ram_mib: int, busy: bool) -> tuple[float, float, int]:
    """QEMU's best save and load seconds and its file's size. Idle: the demo guest, as
    for pyemu. Busy: tests/guests' dirty.elf, once it has written a non-zero pattern
    over all but 8 MiB of RAM (QEMU sends every non-zero page whole, as pyemu's
    random fill makes it do)."""
    with tempfile.TemporaryDirectory(prefix="snapshot-qemu-") as d:
        tmp = Path(d)
        snap = tmp / "snap.bin"

        def save(qmp: Qmp, serial: Path) -> float:
            if busy:
                _poll(lambda: serial.read_text(errors="replace") if serial.exists() else "",
                      lambda text: "round 1 ok" in text)
            time.sleep(0.02)  # 20 ms of the guest, as for pyemu
            qmp.cmd("migrate-set-parameters", **{"max-bandwidth": NO_CAP})
            qmp.cmd("stop")
            start = time.perf_counter()
            qmp.cmd("migrate", uri=f"exec:cat > {snap}")
            _poll(lambda: qmp.cmd("query-migrate")["status"],
                  lambda st: st in ("completed", "failed"))
            seconds = time.perf_counter() - start
            if qmp.cmd("query-migrate")["status"] != "completed":
                raise QmpError("QEMU could not save a snapshot")
            return seconds

        def load(qmp: Qmp, serial: Path) -> float:
            start = time.perf_counter()
            qmp.cmd("migrate-incoming", uri=f"exec:cat {snap}")
            _poll(lambda: qmp.cmd("query-status")["status"], lambda st: st != "inmigrate")
            seconds = time.perf_counter() - start
            if qmp.cmd("query-migrate").get("status") != "completed":
                raise QmpError("QEMU could not load its own snapshot")
            return seconds

        saves, loads = [], []
        for _ in range(3):
            saves.append(_qemu(tmp, ram_mib, busy, [], save))
            loads.append(_qemu(tmp, ram_mib, busy, ["-incoming", "defer"], load))
        return min(saves), min(loads), snap.stat().st_size


def main() -> None:
    qemu = QEMU is not None
    print(f"snapshot to memory, best of 3, {os.cpu_count()} cores"
          + ("; qemu: TCG, to a file through exec:cat, no bandwidth cap" if qemu
             else ""))
    print(f"{'guest':<26}{'save s':>8}{'load s':>8}{'memcpy s':>10}{'file MiB':>10}"
          + (f"{'qemu save s':>13}{'qemu load s':>13}{'qemu MiB':>10}" if qemu else ""))
    for ram in (128, 512):
        for busy in (False, True):
            save, load, memcpy, size = measure(ram, busy)
            label = f"{ram} MiB, {'most pages used' if busy else 'idle'}"
            line = f"{label:<26}{save:>8.3f}{load:>8.3f}{memcpy:>10.3f}{size / MIB:>10.1f}"
            if qemu:
                qsave, qload, qsize = qemu_measure(ram, busy)
                line += f"{qsave:>13.3f}{qload:>13.3f}{qsize / MIB:>10.1f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
