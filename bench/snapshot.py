"""Snapshot benchmark: save and load time and file size, beside memcpy of the same RAM.

For 128 MiB and 512 MiB machines running the demo guest: idle (RAM mostly zero) and
with most pages non-zero (filled with incompressible data). Load is the whole path:
parse and check the stream, then apply it. Usage: python bench/snapshot.py
"""

from __future__ import annotations

import io
import os
import time

import numpy as np

from emu.machine.config import MachineConfig
from emu.machine.pc.pc import PcMachine

MIB = 1 << 20


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


def main() -> None:
    print(f"snapshot to memory, best of 3, {os.cpu_count()} cores")
    print(f"{'guest':<26}{'save s':>8}{'load s':>8}{'memcpy s':>10}{'file MiB':>10}")
    for ram in (128, 512):
        for busy in (False, True):
            save, load, memcpy, size = measure(ram, busy)
            label = f"{ram} MiB, {'most pages used' if busy else 'idle'}"
            print(f"{label:<26}{save:>8.3f}{load:>8.3f}{memcpy:>10.3f}{size / MIB:>10.1f}")


if __name__ == "__main__":
    main()
