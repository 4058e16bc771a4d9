"""QEMU's pci-serial: identity, BAR0 onto the 16550A's registers, INTA# through the
PIIX3 PIRQ routing -- driven through the configuration and I/O ports as Linux's
8250_pci does."""

from __future__ import annotations

import pytest

from emu.devices.pci import PciHost
from emu.devices.pci_serial import PciSerial
from emu.devices.piix3 import Piix3Isa
from emu.host.chardev import BufferChardev

DEVFN = 3 << 3  # slot 3: INTA# reaches PIRQC (config 62h)
BAR = 0xC000


def cfg(board, devfn, reg, size=4, value=None):
    board.outl(0xCF8, 0x80000000 | devfn << 8 | (reg & 0xFC))
    port = 0xCFC + (reg & 3)
    if value is None:
        return {1: board.inb, 2: board.inw, 4: board.inl}[size](port)
    {1: board.outb, 2: board.outw, 4: board.outl}[size](port, value)


@pytest.fixture
def card(board):
    host = PciHost("pci", None)
    isa = Piix3Isa("piix3", None, devfn=8)
    dev = PciSerial("ps0", None, devfn=DEVFN)
    dev.chardev = BufferChardev()
    host.attach([isa])
    for obj in (host, isa, dev):
        obj.realize(board)
        obj.reset()
    host.plug(dev)  # hot-plugged: it joins a bus already running
    board.pci, board.router = [isa, dev], isa
    return dev


def test_identity_is_qemus(board, card):
    assert cfg(board, DEVFN, 0x00) == 0x00021B36           # Red Hat, QEMU PCI 16550A
    assert cfg(board, DEVFN, 0x08) == 0x07000201           # serial, 16550, revision 1
    assert cfg(board, DEVFN, 0x2C) == 0x11001AF4           # QEMU's subsystem
    assert cfg(board, DEVFN, 0x3D, 1) == 1                 # INTA#


def test_bar0_is_an_8_byte_io_window_decoded_when_enabled(board, card):
    cfg(board, DEVFN, 0x10, 4, 0xFFFFFFFF)
    assert cfg(board, DEVFN, 0x10) == 0xFFFFFFF9           # size 8, I/O space
    cfg(board, DEVFN, 0x10, 4, BAR)
    assert board.inb(BAR + 7) == 0xFF                       # not decoded: I/O disabled
    cfg(board, DEVFN, 0x04, 2, 0x0001)
    board.outb(BAR + 7, 0x5A)                               # the scratch register
    assert board.inb(BAR + 7) == 0x5A
    board.outb(BAR, ord("A"))
    assert card.chardev.take_output() == b"A"
    cfg(board, DEVFN, 0x04, 2, 0)
    assert board.inb(BAR + 7) == 0xFF


def test_the_uart_interrupt_is_inta_through_the_pirq_route(board, card):
    cfg(board, 8, 0x62, 1, 11)                              # PIRQC -> IRQ 11
    cfg(board, DEVFN, 0x10, 4, BAR)
    cfg(board, DEVFN, 0x04, 2, 0x0001)
    board.outb(BAR + 4, 0x08)                               # MCR.OUT2
    board.outb(BAR + 1, 0x02)                               # IER: THR empty
    assert board.irqs[11].level and cfg(board, DEVFN, 0x06, 2) & 0x08
    assert board.inb(BAR + 2) & 0x0F == 0x02                # IIR: THRE, which clears it
    assert not board.irqs[11].level and not cfg(board, DEVFN, 0x06, 2) & 0x08
    card.chardev.feed(b"x")
    card.chardev.pump()
    board.outb(BAR + 1, 0x01)                               # IER: received data
    assert board.irqs[11].level
    cfg(board, DEVFN, 0x04, 2, 0x0401)                      # Interrupt Disable masks it
    assert not board.irqs[11].level
    cfg(board, DEVFN, 0x04, 2, 0x0001)
    assert board.inb(BAR) == ord("x") and not board.irqs[11].level


def test_unrealize_gives_the_ports_back(board, card):
    cfg(board, DEVFN, 0x10, 4, BAR)
    cfg(board, DEVFN, 0x04, 2, 0x0001)
    card.unrealize()
    assert board.inb(BAR + 7) == 0xFF
    assert card.chardev.attached is None
