"""Debian's public guests, pyemu beside QEMU: each guest's time to each of its markers.

The guests are those tests/guests/debian/fetch.sh fetches ('make debian-guests'), on
the serial console, with the same options under `pyemu` and `qemu-system-x86_64 -accel
tcg` (both without VGA and NIC, which pyemu does not have), one run each, one after the
other:

- memtest86+ x64 and ia32 (-m 32, `nopause`): the banner, test 0 complete (a later
  test's number drawn), and tests 0-9 complete (test 10, the bit fade test, which mostly
  sleeps, started): the memory-testing part of a pass;
- linux-image-amd64 and linux-image-686 with the busybox initramfs: the kernel's banner
  and /init's marker;
- the netboot installer: the banner, /init, the first line of its own start-up and its
  first question screen (language selection).

Each cell is the wall time from spawning the process to the marker, with the CPU time
the process had used by then (user + system, all threads), which other load on the
machine disturbs less; the ratio is pyemu's over QEMU's. `--seabios` adds pyemu booting
through SeaBIOS and fw_cfg as QEMU does.
Usage: python bench/guests_boot.py [--seabios] [--only NAME...] [--timeout S]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from console import QEMU_NAME, SEABIOS, engines, follow

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "tests" / "guests" / "build"
DEBIAN = BUILD / "debian"
COMMON = ["-nographic", "-vga", "none", "-nic", "none"]


@dataclass
class Guest:
    """A guest's options (the same for each engine) and its markers, in the order the
    guest prints them."""

    args: list[str | Path]
    markers: list[tuple[str, bytes]]


def memtest(arch: str) -> Guest:
    return Guest(["-m", "32", "-kernel", DEBIAN / f"memtest86+{arch}.bin",
                  "-append", "console=ttyS0,115200 nopause"],
                 [("banner", rb"Memtest86\+ v6"),
                  ("test 0 complete", rb"#(?:[1-9]|1[0-9]) +\["),
                  ("tests 0-9 complete", rb"#10 +\[")])


def kernel(image: Path, initrd: Path) -> Guest:
    return Guest(["-m", "256", "-kernel", image, "-initrd", initrd,
                  "-append", "console=ttyS0"],
                 [("Linux version", rb"Linux version"),
                  ("init marker", rb"pyemu-linux: init started")])


GUESTS = {
    "memtest-x64": memtest("x64"),
    "memtest-ia32": memtest("ia32"),
    "linux-amd64": kernel(DEBIAN / "vmlinuz-amd64", BUILD / "linux" / "rootfs.gz"),
    "linux-686": kernel(DEBIAN / "vmlinuz-686", DEBIAN / "rootfs32.gz"),
    "installer": Guest(["-m", "1024", "-kernel", DEBIAN / "installer" / "linux",
                        "-initrd", DEBIAN / "installer" / "initrd.gz",
                        "-append", "console=ttyS0"],
                       [("Linux version", rb"Linux version"),
                        ("Run /init", rb"Run /init as init process"),
                        ("syslogd started", rb"Starting system log daemon"),
                        ("language screen", rb"Select a language")]),
}


def cell(times: list[tuple[float, float]], i: int) -> str:
    return f"{times[i][0]:7.2f} /{times[i][1]:7.2f}" if i < len(times) else f"{'-':>16}"


def report(name: str, guest: Guest, runs: dict[str, list[tuple[float, float]]]) -> None:
    engines = list(runs)
    print(f"\n{name}: {' '.join(map(str, guest.args))}")
    print(f"{'wall / CPU seconds':<20}" + "".join(f"{e:>20}" for e in engines)
          + "".join(f"{e + ' / qemu':>22}" for e in engines if e != QEMU_NAME))
    for i, (label, _) in enumerate(guest.markers):
        line = f"{label:<20}" + "".join(f"{cell(runs[e], i):>20}" for e in engines)
        qemu = runs.get(QEMU_NAME, [])
        for e in engines:
            if e != QEMU_NAME:
                have = i < len(runs[e]) and i < len(qemu)
                ratio = (f"{runs[e][i][0] / qemu[i][0]:.1f}x /{runs[e][i][1] / qemu[i][1]:.1f}x"
                         if have else "-")
                line += f"{ratio:>22}"
        print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seabios", action="store_true", help="also pyemu through SeaBIOS")
    ap.add_argument("--only", nargs="+", choices=list(GUESTS), help="these guests only")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per run")
    args = ap.parse_args()
    if args.seabios and not SEABIOS.exists():
        sys.exit(f"{SEABIOS} is missing: 'make firmware' installs it")
    found = engines(seabios=args.seabios)
    for name in args.only or GUESTS:
        guest = GUESTS[name]
        for path in (a for a in guest.args if isinstance(a, Path)):
            if not path.exists():
                sys.exit(f"{path} is missing: run tests/guests/debian/fetch.sh "
                         "('make debian-guests')")
        patterns = [p for _, p in guest.markers]
        runs = {e: follow([*cmd, *map(str, guest.args), *COMMON], patterns, args.timeout)[0]
                for e, cmd in found.items()}
        report(name, guest, runs)


if __name__ == "__main__":
    main()
