"""i440FX host bridge: identity and the PAM registers switching shadow RAM."""

from __future__ import annotations

import unicorn

from emu.devices.i440fx import I440fx
from emu.devices.pci import PciHost
from emu.memory.address_space import AddressSpace


def _setup(board):
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    bios = bytes([0xB1]) * 0x20000  # 128 KiB: shows at 0xE0000-0xFFFFF
    board.mem = AddressSpace(uc, 4 << 20, bios, lambda a, b: None)
    host, bridge = PciHost("pci", None), I440fx("i440fx", None, devfn=0)
    host.attach([bridge])
    for obj in (host, bridge):
        obj.realize(board)
        obj.reset()
    return uc, bridge


def pam(board, reg: int, value: int) -> None:
    board.outl(0xCF8, 0x80000000 | (reg & 0xFC))
    board.outb(0xCFC + (reg & 3), value)


def test_identity(board):
    _setup(board)
    board.outl(0xCF8, 0x80000000)
    assert board.inl(0xCFC) == 0x12378086
    board.outl(0xCF8, 0x80000008)
    assert board.inl(0xCFC) == 0x06000002


def test_shadowing_the_bios_as_seabios_does(board):
    uc, bridge = _setup(board)
    read = lambda addr: bytes(uc.mem_read(addr, 1))[0]  # noqa: E731
    assert read(0xF1234) == 0xB1 and read(0xE8000) == 0xB1
    pam(board, 0x59, 0x30)          # F segment: read/write RAM
    assert read(0xF1234) == 0x00
    uc.mem_write(0xF1234, b"\x42")
    pam(board, 0x59, 0x10)          # read-only shadow keeps the copy
    assert read(0xF1234) == 0x42
    pam(board, 0x59, 0x00)          # back to the ROM
    assert read(0xF1234) == 0xB1
    pam(board, 0x5A, 0x03)          # C0000-C3FFF RAM, C4000-C7FFF still PCI
    uc.mem_write(0xC0010, b"\x77")
    assert read(0xC0010) == 0x77 and read(0xC4010) == 0xFF
    assert bridge.pam_mode(0) == 3 and bridge.pam_mode(1) == 0
    board.outl(0xCF8, 0x80000058)
    assert board.inl(0xCFC) >> 8 & 0xFFFF == 0x0300  # PAM0 = 00h, PAM1 = 03h read back
