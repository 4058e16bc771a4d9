"""QEMU's ``pci-serial``: one NS16550A behind a PCI function, which Linux's 8250_pci
drives with no option (its table entry for 1B36:0002, "pbn_b0_1_115200").

Identity as QEMU gives it (hw/char/serial-pci.c, docs/specs/pci-ids.rst): vendor 1B36h
(Red Hat), device 0002h, revision 1, class 07h subclass 00h interface 02h (a 16550
compatible serial controller; PCI Local Bus 2.1 appendix D), subsystem 1AF4h:1100h (QEMU's
default for its own devices). BAR0 is an 8-byte I/O window onto the UART's registers
(PCI 2.1 6.2.5.1); the UART's interrupt is INTA# (config 3Dh = 1), routed by the board.
The chip itself is uart16550.Ns16550, its state and behaviour unchanged.
"""

from __future__ import annotations

import struct

from emu.devices.base import Board
from emu.devices.pci import SUBSYSTEM_VENDOR_ID, PciDevice
from emu.devices.uart16550 import Ns16550
from emu.irq import IrqLine
from emu.memory.ioport import PortRead, PortWrite
from emu.qom import prop, register_type

REDHAT_VENDOR, QEMU_SUBSYSTEM_VENDOR, QEMU_SUBSYSTEM = 0x1B36, 0x1AF4, 0x1100


@register_type("pci-serial")
class PciSerial(PciDevice, Ns16550):
    """A 16550A UART on PCI: BAR0 its registers, INTA# its interrupt."""

    vendor_id = prop.u16(reset=REDHAT_VENDOR, doc="Red Hat, Inc. (QEMU's PCI devices)")
    device_id = prop.u16(reset=0x0002, doc="QEMU PCI 16550A adapter")
    class_code = prop.u32(reset=0x070002, doc="serial controller, 16550 compatible")
    revision = prop.u8(reset=1, doc="revision as QEMU reports it")

    IO_BARS = {0: 8}
    INTX_PIN = 1

    def initial_config(self) -> bytes:
        cfg = bytearray(super().initial_config())
        struct.pack_into("<HH", cfg, SUBSYSTEM_VENDOR_ID, QEMU_SUBSYSTEM_VENDOR, QEMU_SUBSYSTEM)
        return bytes(cfg)

    def wire(self, board: Board) -> IrqLine:
        return IrqLine(self.set_intx, f"{self.path}/INTA")

    def bar_handlers(self, index: int) -> tuple[PortRead, PortWrite]:
        return self.io_read, self.io_write

    def rebuild(self) -> None:
        super().rebuild()
        self._intx = self.irq_out  # derived again; the PIC holds the line's level
