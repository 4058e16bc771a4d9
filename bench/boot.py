"""Linux boot benchmark: process start to the guest's /init marker, pyemu beside QEMU.

Boots Debian's cloud kernel with the busybox initramfs (tests/guests/linux/fetch.sh
builds both) on the serial console, under pyemu and under `qemu-system-x86_64 -accel
tcg` when it is installed, with the same kernel, initrd and command line; prints the
median of --repeat runs each: the wall time, and the CPU time the process used to get
there (user + system, all threads), which other load on the machine disturbs less.
pyemu boots twice: with its direct loader, and like QEMU through SeaBIOS and fw_cfg
(when Debian's seabios is installed). --icount adds a run of each engine with
`-icount shift=0` (time is instructions) and its time over the realtime run's (issue
17's goal: pyemu's icount boot within 2x of its realtime boot). --profile then runs
pyemu's machine thread under cProfile to the marker and prints where the time went.
Usage: python bench/boot.py [--repeat N] [--icount] [--profile]
"""

from __future__ import annotations

import argparse
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

from console import QEMU_NAME, SEABIOS, engines, times_to

from emu.cpu.helper import engine_patches

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "tests" / "guests" / "build" / "linux"
MARKER = b"pyemu-linux: init started"
APPEND = "console=ttyS0 noapic nolapic acpi=off"
TIMEOUT = 120
ICOUNT_ARGS = ["-icount", "shift=0"]
GUEST_ARGS = ["-m", "256", "-kernel", str(BUILD / "vmlinuz"), "-initrd",
              str(BUILD / "rootfs.gz"), "-append", APPEND, "-nographic"]

# Runs pyemu with its machine thread under cProfile; the stats are written when the
# machine loop ends (the benchmark ends it with SIGTERM once the marker shows).
PROFILED = """
import cProfile, sys
from emu.machine import machine
OUT = sys.argv.pop(1)
run = machine.Machine.run
def profiled(self):
    prof = cProfile.Profile()
    prof.enable()
    try:
        return run(self)
    finally:
        prof.disable()
        prof.dump_stats(OUT)
machine.Machine.run = profiled
from emu.cli import main
sys.exit(main(sys.argv[1:]))
"""


def time_to_marker(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds from spawning ``cmd`` to the marker on its stdout, and the CPU
    seconds it used by then."""
    return times_to(cmd, [MARKER], TIMEOUT)[0]


def profile() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "boot.prof"
        took, _ = time_to_marker([sys.executable, "-c", PROFILED, str(out), *GUEST_ARGS])
        for _ in range(50):  # the stats are written as the machine thread ends
            if out.exists():
                break
            time.sleep(0.1)
        print(f"\npyemu under cProfile: {took:.2f} s to the marker; machine thread:")
        pstats.Stats(str(out)).sort_stats("tottime").print_stats(15)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--icount", action="store_true", help="also each engine with -icount")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    for name in ("vmlinuz", "rootfs.gz"):
        if not (BUILD / name).exists():
            sys.exit(f"{BUILD / name} is missing: run tests/guests/linux/fetch.sh")
    found = {name: [*argv, *GUEST_ARGS]
             for name, argv in engines(seabios=SEABIOS.exists()).items()}
    if args.icount:
        found |= {f"{name} -icount": [*cmd, *ICOUNT_ARGS] for name, cmd in found.items()}
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in found}
    for _ in range(args.repeat):  # interleaved, so machine noise hits both alike
        for name, cmd in found.items():
            runs[name].append(time_to_marker(cmd))
    wall = {name: statistics.median(w for w, _ in r) for name, r in runs.items()}
    cpu = {name: statistics.median(c for _, c in r) for name, r in runs.items()}
    print(f"Linux 6.1 cloud kernel + busybox initramfs, '{APPEND}', "
          f"median of {args.repeat}; unicorn engine: {engine_patches() or 'stock 2.1.4 build'}")
    width = max(14, *map(len, found))
    print(f"{'engine':<{width}} {'to marker (s)':>14} {'CPU (s)':>8}  runs (wall/CPU)")
    for name, r in runs.items():
        print(f"{name:<{width}} {wall[name]:>14.2f} {cpu[name]:>8.2f}  "
              + " ".join(f"{w:.2f}/{c:.2f}" for w, c in r))
    if QEMU_NAME in found:
        for name in [n for n in found if n != QEMU_NAME and not n.endswith(" -icount")]:
            print(f"{name} / qemu: {wall[name] / wall[QEMU_NAME]:.1f}x wall, "
                  f"{cpu[name] / cpu[QEMU_NAME]:.1f}x CPU")
    for name in [n.removesuffix(" -icount") for n in found if n.endswith(" -icount")]:
        print(f"{name} -icount / realtime: {wall[name + ' -icount'] / wall[name]:.1f}x wall, "
              f"{cpu[name + ' -icount'] / cpu[name]:.1f}x CPU")
    if args.profile:
        profile()


if __name__ == "__main__":
    main()
