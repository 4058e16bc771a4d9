"""Linux boot benchmark: process start to the guest's /init marker, pyemu beside QEMU.

Boots Debian's cloud kernel with the busybox initramfs (tests/guests/linux/fetch.sh
builds both) on the serial console, under pyemu and under `qemu-system-x86_64 -accel
tcg` when it is installed, with the same kernel, initrd and command line; prints the
median of --repeat runs each. pyemu boots twice: with its direct loader, and like QEMU
through SeaBIOS and fw_cfg (when Debian's seabios is installed). --profile then runs
pyemu's machine thread under cProfile to the marker and prints where the time went.
Usage: python bench/boot.py [--repeat N] [--profile]
"""

from __future__ import annotations

import argparse
import os
import pstats
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "tests" / "guests" / "build" / "linux"
MARKER = b"pyemu-linux: init started"
APPEND = "console=ttyS0 noapic nolapic acpi=off"
TIMEOUT = 120
SEABIOS = Path("/usr/share/seabios/bios.bin")
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


def time_to_marker(cmd: list[str]) -> float:
    """Seconds from spawning ``cmd`` to the marker on its stdout."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    seen = b""
    try:
        while MARKER not in seen:
            if time.monotonic() - started > TIMEOUT:
                raise RuntimeError(f"{cmd[0]}: no marker after {TIMEOUT} s")
            ready, _, _ = select.select([proc.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    raise RuntimeError(f"{cmd[0]} exited before the marker:\n"
                                       f"{seen[-1500:].decode(errors='replace')}")
                seen = seen[-4096:] + chunk
        return time.monotonic() - started
    finally:
        proc.terminate()
        proc.wait(10)


def profile() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "boot.prof"
        took = time_to_marker([sys.executable, "-c", PROFILED, str(out), *GUEST_ARGS])
        for _ in range(50):  # the stats are written as the machine thread ends
            if out.exists():
                break
            time.sleep(0.1)
        print(f"\npyemu under cProfile: {took:.2f} s to the marker; machine thread:")
        pstats.Stats(str(out)).sort_stats("tottime").print_stats(15)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    for name in ("vmlinuz", "rootfs.gz"):
        if not (BUILD / name).exists():
            sys.exit(f"{BUILD / name} is missing: run tests/guests/linux/fetch.sh")
    engines = {"pyemu": [sys.executable, "-m", "emu.cli", *GUEST_ARGS]}
    if SEABIOS.exists():
        engines["pyemu seabios"] = [*engines["pyemu"], "-bios", str(SEABIOS)]
    qemu = shutil.which("qemu-system-x86_64")
    if qemu:
        engines["qemu tcg"] = [qemu, "-accel", "tcg", *GUEST_ARGS]
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(args.repeat):  # interleaved, so machine noise hits both alike
        for name, cmd in engines.items():
            times[name].append(time_to_marker(cmd))
    print(f"Linux 6.1 cloud kernel + busybox initramfs, '{APPEND}', "
          f"median of {args.repeat}")
    print(f"{'engine':<14} {'to marker (s)':>14}  runs")
    for name, runs in times.items():
        print(f"{name:<14} {statistics.median(runs):>14.2f}  "
              + " ".join(f"{t:.2f}" for t in runs))
    if qemu:
        for name in [n for n in engines if n != "qemu tcg"]:
            ratio = statistics.median(times[name]) / statistics.median(times["qemu tcg"])
            print(f"{name} / qemu: {ratio:.1f}x")
    if args.profile:
        profile()


if __name__ == "__main__":
    main()
