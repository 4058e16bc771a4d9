"""Booting the bootloader CDs (tests/guests/grub/fetch.sh) as a user would, and
watching their serial console for markers.

The GRUB 2 and ISOLINUX hybrid ISOs boot as a CD (`-cdrom ISO -boot d`) or as a disk
(`-drive file=ISO,format=raw,snapshot=on`: nothing written reaches the file, so runs may
share it), through pyemu's own BIOS or Debian's SeaBIOS. tests/integration/test_grub.py
and test_isolinux.py use this; bench/bootloaders.py runs the same command lines under
pyemu and QEMU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from serialguest import boot_until, find_on_screen, pyemu_argv, timeline

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "tests" / "guests" / "build"
SEABIOS = Path("/usr/share/seabios/bios.bin")
ISOS = {"grub": BUILD / "grub" / "grub.iso", "isolinux": BUILD / "isolinux" / "isolinux.iso"}
CASES = [  # medium, firmware, on to the Linux marker: each medium and firmware once
    ("cd", "pyemu-bios", True),
    ("disk", "seabios", True),
    ("disk", "pyemu-bios", False),
    ("cd", "seabios", False),
]


def markers(loader: str) -> dict[str, str]:
    """The markers file mkisos.py wrote beside the loader's ISO (name -> text)."""
    path = ISOS[loader].parent / "markers"
    if not path.exists() or not ISOS[loader].exists():
        pytest.fail(f"{ISOS[loader]} is missing: 'make grub-guest' builds it "
                    "(tests/guests/grub/fetch.sh)")
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


def machine_args(loader: str, medium: str, firmware: str) -> list[str]:
    """pyemu's (and QEMU's) options for the loader's ISO on ``medium`` ("cd" or "disk")
    through ``firmware`` ("pyemu-bios": the default, none given; "seabios")."""
    iso = ISOS[loader]
    media = (["-cdrom", str(iso), "-boot", "d"] if medium == "cd"
             else ["-drive", f"file={iso},format=raw,snapshot=on"])
    args = ["-m", "256", "-nographic", "-vga", "none", "-nic", "none", "-no-reboot", *media]
    if firmware == "seabios":
        if not SEABIOS.exists():
            pytest.fail(f"{SEABIOS} is missing: 'make firmware' installs Debian's seabios")
        args += ["-bios", str(SEABIOS)]
    return args


def boot_loader(loader: str, own: bytes, medium: str, firmware: str, to_linux: bool,
                stop: tuple[bytes, ...]) -> bytes:
    """Boot the loader's ISO on ``medium`` through ``firmware`` under pyemu to the
    loader's ``own`` marker and, when ``to_linux``, on to the Linux guest's /init marker
    (which must follow the kernel's banner); a ``stop`` string first fails. Returns the
    console output before ``own``."""
    wanted = [own, markers(loader)["linux"].encode()] if to_linux else [own]
    out, times = boot_until(pyemu_argv(*machine_args(loader, medium, firmware)), wanted,
                            timeout=150 if to_linux else 60, stop=stop)
    if to_linux:
        assert out.index(b"Linux version") > find_on_screen(out, own), out
    print(f"\n{loader.upper()} {medium} through {firmware}: {timeline(wanted, times)}")
    return out[:find_on_screen(out, own)]
