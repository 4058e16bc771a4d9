"""Bootloader benchmark: GRUB 2 and ISOLINUX booting the Linux guest, pyemu beside QEMU.

Boots the hybrid ISOs tests/guests/grub/fetch.sh builds (GRUB 2 from grub-mkrescue,
ISOLINUX from xorriso; both carry the Linux guest) as a disk and as a CD, through
pyemu's BIOS (firmware/build/bios.bin) and through SeaBIOS, under pyemu and under
`qemu-system-x86_64 -accel tcg` with the very same options. For each it prints the
median of --repeat runs from process start to the loader's own marker and to the Linux
guest's /init marker, and pyemu's time to the latter over QEMU's.
Usage: python bench/bootloaders.py [--repeat N] [--loader grub|isolinux]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

from console import QEMU_NAME, engines, times_to

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "tests" / "guests" / "build"
ISOS = {"grub": BUILD / "grub" / "grub.iso", "isolinux": BUILD / "isolinux" / "isolinux.iso"}
FIRMWARE = {"pyemu-bios": ROOT / "firmware" / "build" / "bios.bin",
            "seabios": Path("/usr/share/seabios/bios.bin")}
MEDIA = ("disk", "cd")
TIMEOUT = 180


def markers(loader: str) -> tuple[bytes, bytes]:
    """The loader's own marker and the Linux guest's, from the markers file."""
    fields = dict(line.split(" ", 1)
                  for line in (ISOS[loader].parent / "markers").read_text().splitlines())
    return fields["loader"].encode(), fields["linux"].encode()


def options(loader: str, medium: str, firmware: str) -> list[str]:
    iso = ISOS[loader]
    media = (["-cdrom", str(iso), "-boot", "d"] if medium == "cd"
             else ["-drive", f"file={iso},format=raw,snapshot=on"])
    return ["-m", "256", "-nographic", "-vga", "none", "-nic", "none", "-no-reboot", *media,
            "-bios", str(FIRMWARE[firmware])]


Config = tuple[str, str, str]  # loader, medium, firmware
Samples = dict[tuple[Config, str], list[tuple[float, float]]]


def measure(configs: list[Config], engines: dict[str, list[str]], repeat: int) -> Samples:
    """Each run's times by configuration and engine; a run that fails is told on
    stderr and left out."""
    samples: Samples = {(config, engine): [] for config in configs for engine in engines}
    for _ in range(repeat):  # interleaved, so machine noise hits both alike
        for config in configs:
            for engine, argv in engines.items():
                try:
                    times = times_to([*argv, *options(*config)], markers(config[0]), TIMEOUT)
                    samples[config, engine].append((times[0][0], times[1][0]))
                except RuntimeError as err:
                    print(f"{engine} {' '.join(config)}: {err}", file=sys.stderr)
    return samples


def cell(samples: list[tuple[float, float]]) -> str:
    """'loader / linux' medians, or why there are none."""
    if not samples:
        return f"{'failed':>13}"
    return (f"{statistics.median(s[0] for s in samples):>5.2f} / "
            f"{statistics.median(s[1] for s in samples):>5.2f}")


def report(samples: Samples, configs: list[Config], engines: list[str], repeat: int) -> None:
    print(f"seconds from process start to the loader's marker / to the Linux guest's "
          f"/init marker, median of {repeat}")
    print(f"{'loader':<9} {'medium':<6} {'firmware':<11} {'pyemu':>13}"
          + (f" {'qemu tcg':>13} {'ratio':>6}" if QEMU_NAME in engines else ""))
    for config in configs:
        ours = samples[config, "pyemu"]
        line = f"{config[0]:<9} {config[1]:<6} {config[2]:<11} {cell(ours)}"
        if QEMU_NAME in engines:
            theirs = samples[config, QEMU_NAME]
            line += f" {cell(theirs)}"
            if ours and theirs:
                ratio = (statistics.median(s[1] for s in ours)
                         / statistics.median(s[1] for s in theirs))
                line += f" {ratio:>5.1f}x"
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--loader", choices=sorted(ISOS), action="append")
    args = ap.parse_args()
    loaders = args.loader or sorted(ISOS)
    for path in [*(ISOS[name] for name in loaders), *FIRMWARE.values()]:
        if not path.exists():
            sys.exit(f"{path} is missing: 'make grub-guest firmware bios' builds it")
    configs = list(itertools.product(loaders, MEDIA, FIRMWARE))
    found = engines()
    report(measure(configs, found, args.repeat), configs, list(found), args.repeat)


if __name__ == "__main__":
    main()
