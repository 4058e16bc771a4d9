"""CPU benchmark: the same compute loop under bare unicorn and under pyemu, in one run.

The guest (bench/guests/compute.S) runs a 10-instruction loop while the PIT interrupts
at 250 Hz; the bare run executes the very same bytes on an engine with no devices and
no hooks. Prints guest MIPS for each and their ratio (best of --repeat runs, as the
machine is shared and noisy). Realtime mode, then icount.
Usage: python bench/cpu.py [--iterations N]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import unicorn
import unicorn.x86_const as x
from elftools.elf.elffile import ELFFile

from emu.machine.config import MachineConfig
from emu.machine.pc.pc import PcMachine

GUEST = Path(__file__).with_name("guests") / "build" / "compute.elf"
INSNS_PER_ITERATION = 10


def _symbols(path: Path) -> tuple[dict[str, int], bytes, int]:
    with path.open("rb") as f:
        elf = ELFFile(f)
        syms = {s.name: s["st_value"] for s in elf.get_section_by_name(".symtab").iter_symbols()}
        text = elf.get_section_by_name(".text")
        return syms, text.data(), text["sh_addr"]


def bare_unicorn(iterations: int) -> float:
    """Seconds for the loop on an engine with nothing else attached."""
    syms, text, base = _symbols(GUEST)
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
    uc.mem_map(base & ~0xFFF, 0x10000)
    uc.mem_write(base, text)
    uc.reg_write(x.UC_X86_REG_ECX, iterations)
    uc.reg_write(x.UC_X86_REG_ESI, 1)
    start = time.perf_counter()
    uc.emu_start(syms["compute_loop"], syms["compute_end"])
    return time.perf_counter() - start


def pyemu(iterations: int, icount: int | None) -> tuple[float, int]:
    """Seconds from the first instruction to isa-debug-exit, and timer ticks seen."""
    syms, _, _ = _symbols(GUEST)
    m = PcMachine(MachineConfig(kernel=str(GUEST), icount_shift=icount,
                                devices=["isa-debug-exit,iobase=0xf4,iosize=0x04"]), {})
    m.mem.write_u32(syms["iterations"], iterations)
    m.set_runstate("running")
    start = time.perf_counter()
    status = m.run()
    elapsed = time.perf_counter() - start
    assert status == 1, f"guest exited with {status}: {m.exit_reason}"
    return elapsed, m.mem.read_u32(syms["ticks"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=100_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs per engine; the best counts")
    args = ap.parse_args()
    n, insns = args.iterations, args.iterations * INSNS_PER_ITERATION
    runs = []
    for _ in range(args.repeat):  # interleaved, so both see the same machine load
        runs.append((bare_unicorn(n), *pyemu(n, None)))
    bare = min(r[0] for r in runs)
    real, ticks = min((r[1], r[2]) for r in runs)
    icount = pyemu(n // 10, 3)[0] * 10  # icount is slow: a tenth of the loop, scaled
    print(f"compute loop, {insns / 1e6:.0f} M guest instructions, best of {args.repeat}, "
          f"{os.cpu_count()} cores")
    print(f"{'engine':<40}{'seconds':>9}{'MIPS':>9}{'vs bare':>9}")
    for label, secs in (("bare unicorn (no devices, no hooks)", bare),
                        (f"pyemu realtime (PIT 250 Hz, {ticks} ticks)", real),
                        ("pyemu -icount shift=3", icount)):
        print(f"{label:<40}{secs:>9.2f}{insns / secs / 1e6:>9.0f}{bare / secs:>9.2f}")


if __name__ == "__main__":
    main()
