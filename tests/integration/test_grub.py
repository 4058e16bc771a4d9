"""Debian's GRUB 2 boots the Linux guest under pyemu from a grub-mkrescue hybrid ISO.

tests/guests/grub/fetch.sh builds the ISO (grub-pc-bin, grub-common, xorriso): GRUB's
El Torito no-emulation image for a CD, boot_hybrid.img as the MBR for a disk. Its
grub.cfg moves GRUB's terminal to COM1, echoes a marker naming the device GRUB found
its files on, and boots Linux (console=ttyS0) with timeout 0.

Each medium boots through pyemu's own BIOS and through SeaBIOS. GRUB's marker proves
the BIOS loaded GRUB from that medium (the MBR's or El Torito's path) and answered its
INT 13h reads of modules and grub.cfg; the device name is what GRUB makes of the boot
drive the BIOS passed in DL (hd0 for the disk, hd96 for the CD at E0h, as under QEMU
with SeaBIOS). Loading the 15 MiB kernel and initrd is most of a boot, so two of the
four boots (one per medium and one per firmware) go on to the Linux guest's /init
marker; bench/bootloaders.py times all of them to it beside QEMU.
"""

from __future__ import annotations

import pytest
from loaderboot import CASES, boot_loader, markers

pytestmark = pytest.mark.linux

# GRUB gives up into one of its shells when it cannot find or run grub.cfg.
GRUB_SHELLS = (b"grub rescue>", b"grub>")


@pytest.mark.parametrize(("medium", "firmware", "to_linux"), CASES)
def test_grub_boots_linux(medium: str, firmware: str, to_linux: bool) -> None:
    mark = markers("grub")
    own = f"{mark['loader']} {mark[medium + '_root']}".encode()
    before = boot_loader("grub", own, medium, firmware, to_linux, GRUB_SHELLS)
    assert b"error:" not in before, before
