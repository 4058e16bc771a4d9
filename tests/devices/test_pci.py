"""PCI configuration mechanism #1 at 0xCF8/0xCFC, driven through the I/O ports."""

from __future__ import annotations

import pytest

from emu.devices.pci import PciDevice, PciHost
from emu.qom import prop, register_type


@register_type("test-pci-function")
class Function(PciDevice):
    device_id = prop.u16(reset=0xBEEF, doc="test")
    class_code = prop.u32(reset=0x0C0330, doc="test")
    IO_BARS = {0: 16}

    def bar_handlers(self, index):
        return (lambda off, size: 0x40 + off), (lambda off, size, v: self.seen.append((off, v)))


def cfg_addr(devfn: int, reg: int, bus: int = 0) -> int:
    return 0x80000000 | bus << 16 | devfn << 8 | reg


@pytest.fixture
def bus(board):
    host = PciHost("pci", None)
    fn = Function("fn", None, devfn=0x18)  # 00:03.0
    fn.seen = []
    host.attach([fn])
    for obj in (host, fn):
        obj.realize(board)
        obj.reset()
    return host, fn


def test_identity_and_absent_functions(board, bus):
    board.outl(0xCF8, cfg_addr(0x18, 0))
    assert board.inl(0xCFC) == 0xBEEF8086
    board.outl(0xCF8, cfg_addr(0x18, 8))
    assert board.inl(0xCFC) >> 8 == 0x0C0330
    for devfn, busno in ((0x20, 0), (0x18, 1)):  # another slot, another bus
        board.outl(0xCF8, cfg_addr(devfn, 0, busno))
        assert board.inl(0xCFC) == 0xFFFFFFFF
        assert board.inw(0xCFE) == 0xFFFF
    board.outl(0xCF8, cfg_addr(0x18, 0) & ~0x80000000)  # enable bit clear
    assert board.inl(0xCFC) == 0xFFFFFFFF


def test_byte_and_word_accesses_at_every_offset(board, bus):
    board.outl(0xCF8, cfg_addr(0x18, 0))
    assert [board.inb(0xCFC + i) for i in range(4)] == [0x86, 0x80, 0xEF, 0xBE]
    assert board.inw(0xCFE) == 0xBEEF
    assert board.inl(0xCF8) == cfg_addr(0x18, 0)


def test_read_only_registers_ignore_writes(board, bus):
    board.outl(0xCF8, cfg_addr(0x18, 0))
    board.outl(0xCFC, 0x12345678)
    assert board.inl(0xCFC) == 0xBEEF8086
    board.outl(0xCF8, cfg_addr(0x18, 0x3C))
    board.outb(0xCFC, 11)  # interrupt line is writable
    assert board.inb(0xCFC) == 11


def test_io_bar_sizing_and_decoding(board, bus):
    _, fn = bus
    board.outl(0xCF8, cfg_addr(0x18, 0x10))
    board.outl(0xCFC, 0xFFFFFFFF)  # size probe
    assert board.inl(0xCFC) == 0xFFFFFFF1  # 16 bytes of I/O space
    board.outl(0xCFC, 0xC000)
    assert board.inb(0xC004) == 0xFF  # I/O decoding still disabled
    board.outl(0xCF8, cfg_addr(0x18, 0x04))
    board.outw(0xCFC, 1)
    assert board.inb(0xC004) == 0x44
    board.outb(0xC00F, 7)
    assert fn.seen == [(15, 7)]
    board.outl(0xCF8, cfg_addr(0x18, 0x10))  # move it
    board.outl(0xCFC, 0xD000)
    assert board.inb(0xC004) == 0xFF and board.inb(0xD004) == 0x44
    assert board.inl(0xCFC) == 0xD001 and fn.io_bar(0) == 0xD000  # an I/O BAR at D000h


def test_config_space_survives_a_state_round_trip(board, bus):
    host, fn = bus
    board.outl(0xCF8, cfg_addr(0x18, 0x10))
    board.outl(0xCFC, 0xC000)
    board.outl(0xCF8, cfg_addr(0x18, 0x04))
    board.outw(0xCFC, 1)
    other = type(board)()
    copy = Function("fn", None, devfn=0x18)
    copy.seen = []
    copy.realize(other)
    copy.reset()
    copy.config = fn.config
    copy.rebuild()  # decoding follows the restored BAR and command register
    assert other.inb(0xC004) == 0x44


@pytest.mark.parametrize("length", [0, 5, 255])
def test_a_short_loaded_config_space_reads_zero_beyond_its_end(board, bus, length):
    """The state field caps the length only: a hostile snapshot's short configuration
    space reads as zeros past its end, and a write fills it out to 256 bytes."""
    host, fn = bus
    fn.config = fn.config[:length]
    fn.rebuild()
    board.outl(0xCF8, cfg_addr(0x18, 0xFC))
    assert board.inl(0xCFC) == 0
    board.outl(0xCF8, cfg_addr(0x18, 0x3C))
    board.outb(0xCFC, 0x0B)  # interrupt line: writable
    assert board.inb(0xCFC) == 0x0B and len(fn.config) == 256
