"""CPU benchmark: the same compute loop under bare unicorn and under pyemu, and a guest
rewriting its memory under pyemu and under QEMU, in one run.

The guest (bench/guests/compute.S) runs a 10-instruction loop while the PIT interrupts
at 250 Hz; the bare run executes the very same bytes on an engine with no devices and
no hooks. Prints guest MIPS for each and their ratio (best of --repeat runs, as the
machine is shared and noisy). Realtime mode, then icount (-icount shift=3), with
icount's speed over realtime's (issue 17's goal: >= 0.5).
Then tests/guests' dirty.elf checks and rewrites a 32 MiB buffer round after round
(no pause between rounds) under pyemu and under `qemu-system-x86_64 -accel tcg`: the
rate is MiB rewritten per second from its first round's end to its last's, best of
--repeat runs each, and pyemu's share of QEMU's rate.
Usage: python bench/cpu.py [--iterations N] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import unicorn
import unicorn.x86_const as x
from console import QEMU_NAME, engines, times_to
from elftools.elf.elffile import ELFFile

from emu.cpu.helper import engine_patches
from emu.machine.config import MachineConfig
from emu.machine.pc.pc import PcMachine

GUEST = Path(__file__).with_name("guests") / "build" / "compute.elf"
INSNS_PER_ITERATION = 10
ROOT = Path(__file__).resolve().parents[1]
DIRTY = ROOT / "tests" / "guests" / "build" / "dirty.elf"
REWRITE_MIB, REWRITE_ROUNDS = 32, 11
REWRITE_TIMEOUT = 120


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


def rewrite_rate(engine: list[str]) -> float:
    """MiB/s at which dirty.elf checks and rewrites its buffer under ``engine``, from the
    end of its first round (fresh pages, which the host zeroes) to the end of its last."""
    cmd = [*engine, "-m", "256", "-kernel", str(DIRTY), "-nographic",
           "-append", f"mib={REWRITE_MIB} rounds={REWRITE_ROUNDS} period=0",
           "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]
    marks = [b"round 1 ok", b"round %d ok" % REWRITE_ROUNDS]
    (first, _), (last, _) = times_to(cmd, marks, REWRITE_TIMEOUT)
    return (REWRITE_ROUNDS - 1) * REWRITE_MIB / (last - first)


def rewrite_table(repeat: int) -> None:
    """The rewrite rate of pyemu and QEMU (when installed), best of ``repeat`` each."""
    if not DIRTY.exists():
        sys.exit(f"{DIRTY} is missing: run 'make guests'")
    found = engines()
    rates: dict[str, list[float]] = {name: [] for name in found}
    for _ in range(repeat):  # interleaved, so machine noise hits both alike
        for name, cmd in found.items():
            rates[name].append(rewrite_rate(cmd))
    print(f"\nguest rewriting memory (dirty.elf, {REWRITE_MIB} MiB checked and rewritten per "
          f"round, rounds 2-{REWRITE_ROUNDS}), best of {repeat}")
    print(f"{'engine':<40}{'MiB/s':>9}  runs")
    for name, runs in rates.items():
        print(f"{name:<40}{max(runs):>9.0f}  " + " ".join(f"{r:.0f}" for r in runs))
    if QEMU_NAME in found:
        print(f"pyemu / qemu: {max(rates['pyemu']) / max(rates[QEMU_NAME]):.2f}x the rate")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=100_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs per engine; the best counts")
    args = ap.parse_args()
    n, insns = args.iterations, args.iterations * INSNS_PER_ITERATION
    runs = []
    for _ in range(args.repeat):  # interleaved, so all three see the same machine load
        runs.append((bare_unicorn(n), *pyemu(n, None), pyemu(n, 3)[0]))
    bare = min(r[0] for r in runs)
    real, ticks = min((r[1], r[2]) for r in runs)
    icount = min(r[3] for r in runs)
    print(f"unicorn engine: {engine_patches() or 'stock 2.1.4 build'}")
    print(f"compute loop, {insns / 1e6:.0f} M guest instructions, best of {args.repeat}, "
          f"{os.cpu_count()} cores")
    print(f"{'engine':<40}{'seconds':>9}{'MIPS':>9}{'vs bare':>9}")
    for label, secs in (("bare unicorn (no devices, no hooks)", bare),
                        (f"pyemu realtime (PIT 250 Hz, {ticks} ticks)", real),
                        ("pyemu -icount shift=3", icount)):
        print(f"{label:<40}{secs:>9.2f}{insns / secs / 1e6:>9.0f}{bare / secs:>9.2f}")
    print(f"pyemu -icount / realtime: {real / icount:.2f}x the speed")
    # each run beside its neighbours: robust where the machine's speed drifts between runs
    print("medians of the runs' own ratios: realtime / bare "
          f"{statistics.median(r[0] / r[1] for r in runs):.2f}, -icount / realtime "
          f"{statistics.median(r[1] / r[3] for r in runs):.2f}")
    rewrite_table(args.repeat)


if __name__ == "__main__":
    main()
