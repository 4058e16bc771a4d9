"""PCI bus 0 and configuration mechanism #1 (PCI Local Bus Specification 2.1, 3.2.2.3.2):
the address register at 0xCF8 (dword only) and the data window at 0xCFC-0xCFF (any size,
any offset). Functions that are absent read all ones, cheaply: Linux scans every bus.

A ``PciDevice`` keeps its 256-byte configuration space as one state field; which bits
the guest may write is declared per device (``WRITABLE``), and I/O BARs (section 6.2.5)
are decoded on the I/O bus while the command register's I/O enable bit is set.

A function with an interrupt pin (``INTX_PIN``, config 3Dh: 1 = INTA#) drives it
through the board, which routes it (PIIX3 PIRQ routing); the command register's
Interrupt Disable bit (PCI 2.3, 6.2.2) masks it, and the status register's Interrupt
Status bit (6.2.3) shows it.

The host bridge's bus is hot-pluggable: ``plug``/``unplug`` add and take away a
function at run time (the board's ACPI hotplug controller decides when).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from emu.devices.base import Board, Device
from emu.memory.ioport import PortRead, PortWrite
from emu.qom import prop, register_type, state

CONFIG_SIZE = 256
COMMAND, STATUS, BAR0, INTERRUPT_LINE, INTERRUPT_PIN = 0x04, 0x06, 0x10, 0x3C, 0x3D
SUBSYSTEM_VENDOR_ID = 0x2C
CMD_IO, CMD_INTX_DISABLE = 0x0001, 0x0400
STATUS_INTERRUPT = 0x0008
ENABLE = 1 << 31


class PciDevice(Device):
    """One PCI function. Subclasses set the identity props' defaults and ``WRITABLE``."""

    devfn = prop.u8(reset=0, doc="device << 3 | function on bus 0")
    vendor_id = prop.u16(reset=0x8086, doc="vendor ID (config 00h)")
    device_id = prop.u16(reset=0, doc="device ID (config 02h)")
    class_code = prop.u32(reset=0, doc="class, subclass, programming interface (09h-0Bh)")
    revision = prop.u8(reset=0, doc="revision ID (config 08h)")
    header_type = prop.u8(reset=0, doc="header type (0Eh); bit 7 = multi-function")

    config = state.bytes(max_len=CONFIG_SIZE, doc="the 256-byte configuration space")

    # (offset, mask) ranges the guest can change; everything else is read-only
    # (I/O, memory, bus master and Interrupt Disable in the command register, PCI 2.3)
    WRITABLE: tuple[tuple[int, bytes], ...] = ((COMMAND, b"\x07\x05"),
                                               (INTERRUPT_LINE, b"\xff"))
    # I/O BARs: index -> size in bytes (a power of two, at least 4)
    IO_BARS: dict[int, int] = {}
    INTX_PIN = 0  # config 3Dh: 0 none, 1-4 INTA#-INTD#

    def realize(self, board: Board) -> None:  # type: ignore[override]
        self._mapped: dict[int, int | None] = {}  # BAR index -> port base now decoded
        self._intx = False  # what the function asserts, before Interrupt Disable
        super().realize(board)

    def unrealize(self) -> None:
        for index, base in self._mapped.items():
            if base is not None:
                self.board.io.unregister(base, self.IO_BARS[index])
        self._mapped.clear()
        super().unrealize()

    def reset_state(self) -> None:
        super().reset_state()
        self.config = self.initial_config()

    def initial_config(self) -> bytes:
        cfg = bytearray(CONFIG_SIZE)
        struct.pack_into("<HH", cfg, 0, self.vendor_id, self.device_id)
        struct.pack_into("<I", cfg, 8, (self.class_code << 8) | self.revision)
        cfg[0x0E] = self.header_type
        cfg[INTERRUPT_PIN] = self.INTX_PIN
        for index in self.IO_BARS:
            struct.pack_into("<I", cfg, BAR0 + 4 * index, 1)  # I/O space indicator
        return bytes(cfg)

    def rebuild(self) -> None:
        super().rebuild()
        if self.realized:
            self._decode_bars()

    # -- INTx ---------------------------------------------------------------------------
    def set_intx(self, level: bool) -> None:
        """The function's interrupt output (a device model's own level)."""
        self._intx = level
        self._show_intx()
        self.board.pci_intx_changed()

    def intx_level(self) -> bool:
        """The level on the pin: asserted and not masked by Interrupt Disable."""
        return self._intx and not self.config_read(COMMAND, 2) & CMD_INTX_DISABLE

    def _show_intx(self) -> None:
        status = self.config_read(STATUS, 2)
        want = status | STATUS_INTERRUPT if self._intx else status & ~STATUS_INTERRUPT
        if want != status:
            cfg = bytearray(self.config.ljust(CONFIG_SIZE, b"\0"))
            struct.pack_into("<H", cfg, STATUS, want)
            self.config = bytes(cfg)

    # -- configuration space --------------------------------------------------------
    # A loaded ``config`` may be shorter than 256 bytes (the field caps its length only):
    # what it lacks reads as zero, and a write fills it out.
    def config_read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.config[offset:offset + size], "little")

    def config_write(self, offset: int, size: int, value: int) -> None:
        cfg = bytearray(self.config.ljust(CONFIG_SIZE, b"\0"))
        old = bytes(cfg)
        for i, byte in enumerate(value.to_bytes(size, "little")):
            mask = self._write_mask(offset + i)
            cfg[offset + i] = (cfg[offset + i] & ~mask) | (byte & mask)
        self.config = bytes(cfg)
        self.config_written(offset, size, old)

    def _write_mask(self, offset: int) -> int:
        for base, mask in self.WRITABLE:
            if base <= offset < base + len(mask):
                return mask[offset - base]
        bar, byte = divmod(offset - BAR0, 4)
        if 0 <= bar < 6 and bar in self.IO_BARS:
            return (~(self.IO_BARS[bar] - 1) >> (8 * byte)) & 0xFF & (0xFC if byte == 0 else 0xFF)
        return 0

    def config_written(self, offset: int, size: int, old: bytes) -> None:
        """After a guest write: re-decode BARs if the command register or a BAR changed."""
        if offset < BAR0 + 24 and offset + size > COMMAND:
            self._decode_bars()
        if self.INTX_PIN and offset <= COMMAND + 1 < offset + size:
            self.board.pci_intx_changed()  # Interrupt Disable may have changed

    def io_bar(self, index: int) -> int | None:
        """Port base of I/O BAR ``index`` while decoding is enabled, else None."""
        if not self.config_read(COMMAND, 2) & CMD_IO:
            return None
        base = self.config_read(BAR0 + 4 * index, 4) & 0xFFFC
        return base or None

    def _decode_bars(self) -> None:
        for index, size in self.IO_BARS.items():
            base = self.io_bar(index)
            if self._mapped.get(index) == base:
                continue
            if self._mapped.get(index) is not None:
                self.board.io.unregister(self._mapped[index], size)
                self._mapped[index] = None
            if base is not None and base + size <= 0x10000:
                read, write = self.bar_handlers(index)
                try:
                    self.board.io.register(base, size, read, write, owner=f"{self.path}/bar{index}")
                except ValueError:
                    continue  # overlaps another device: not decoded, as a conflict on a bus
                self._mapped[index] = base

    def bar_handlers(self, index: int) -> tuple[PortRead, PortWrite]:
        """The port handlers of I/O BAR ``index`` (offsets from the BAR base)."""
        raise KeyError(index)


@register_type("pci-host")
class PciHost(Device):
    """Configuration mechanism #1 for bus 0."""

    address = state.u32(reset=0, doc="CONFIG_ADDRESS (0xCF8): enable, bus, devfn, register")
    # Byte accesses to 0xCF9 are the PIIX3 reset control register, not CONFIG_ADDRESS.
    reset_control: tuple[Callable[[], int], Callable[[int], None]] | None = None

    def realize(self, board: Board) -> None:  # type: ignore[override]
        super().realize(board)
        board.io.register(0xCF8, 4, self._addr_read, self._addr_write, owner=self.path)
        board.io.register(0xCFC, 4, self._data_read, self._data_write, owner=self.path)

    def attach(self, devices: list[PciDevice]) -> None:
        """Plug the functions of bus 0 (the board calls this once, before realize)."""
        self._by_devfn = {d.devfn: d for d in devices}

    def functions(self) -> list[PciDevice]:
        return list(self._by_devfn.values())

    def plug(self, dev: PciDevice) -> None:
        """Put a (realized) function on the bus; ValueError if its devfn is taken."""
        if dev.devfn in self._by_devfn:
            raise ValueError(f"PCI slot {dev.devfn >> 3:#x} function {dev.devfn & 7} is "
                             f"taken by {self._by_devfn[dev.devfn].path}")
        self._by_devfn[dev.devfn] = dev

    def unplug(self, dev: PciDevice) -> None:
        del self._by_devfn[dev.devfn]

    def _addr_read(self, off: int, size: int) -> int:
        if size == 1 and off == 1 and self.reset_control is not None:
            return self.reset_control[0]()
        if size != 4:
            return 0xFF if size == 1 else 0xFFFF
        return self.address

    def _addr_write(self, off: int, size: int, value: int) -> None:
        if size == 1 and off == 1 and self.reset_control is not None:
            self.reset_control[1](value)
        elif size == 4:
            self.address = value & 0x80FFFFFC

    def _target(self) -> PciDevice | None:
        a = self.address
        if not a & ENABLE or (a >> 16) & 0xFF:
            return None
        return self._by_devfn.get((a >> 8) & 0xFF)

    def _data_read(self, off: int, size: int) -> int:
        dev = self._target()
        if dev is None:
            return (1 << (8 * size)) - 1
        reg = (self.address & 0xFC) + off
        return dev.config_read(reg, min(size, CONFIG_SIZE - reg))

    def _data_write(self, off: int, size: int, value: int) -> None:
        dev = self._target()
        if dev is not None:
            dev.config_write((self.address & 0xFC) + off, size, value)
