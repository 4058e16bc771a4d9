"""Debian's ISOLINUX boots the Linux guest under pyemu from a hybrid ISO.

tests/guests/grub/fetch.sh builds the ISO with xorriso (isolinux.bin as the El Torito
no-emulation image with a boot info table, isohdpfx.bin as the MBR that finds it when
the ISO is a disk). isolinux.cfg talks on COM1, prints a SAY line and boots Linux
(console=ttyS0) at once (PROMPT 0, TIMEOUT 0).

Each medium boots through pyemu's own BIOS and through SeaBIOS, to the SAY line (the
BIOS loaded ISOLINUX, which read ldlinux.c32 and its configuration through INT 13h);
two of the four (one per medium and one per firmware) go on to the Linux guest's /init
marker. bench/bootloaders.py times all of them to it beside QEMU.
"""

from __future__ import annotations

import pytest
from loaderboot import CASES, boot_loader, markers

pytestmark = pytest.mark.linux

PROMPT = b"\nboot:"  # ISOLINUX asks for a kernel: it could not boot the default


@pytest.mark.parametrize(("medium", "firmware", "to_linux"), CASES)
def test_isolinux_boots_linux(medium: str, firmware: str, to_linux: bool) -> None:
    say = markers("isolinux")["loader"].encode()
    before = boot_loader("isolinux", say, medium, firmware, to_linux, (PROMPT,))
    assert b"ISOLINUX 6" in before, before
