"""What a device sees of the board it is plugged into."""

from __future__ import annotations

from typing import Protocol

from emu.clock import Clock
from emu.irq import IrqLine
from emu.memory.ioport import IoBus
from emu.qom import Object


class GuestMemory(Protocol):
    """Guest-physical memory as DMA sees it: checked, and code caches kept coherent."""

    def read(self, addr: int, length: int) -> bytes:
        """Bytes at [addr, addr+length); ValueError naming the address if not RAM."""
        ...

    def write(self, addr: int, data: bytes) -> None:
        """Store ``data`` at ``addr``; ValueError naming the address if not RAM."""
        ...

    def is_ram(self, addr: int, length: int) -> bool:
        """Whether [addr, addr+length) is all RAM (a DMA checks before it moves)."""
        ...


class Board(Protocol):
    """The services a board offers its devices at realize time."""

    io: IoBus
    clock: Clock
    mem: GuestMemory

    def isa_irq(self, n: int) -> IrqLine:
        """The ISA interrupt line ``n`` (0-15), wired to the PICs."""
        ...

    def request_reset(self, reason: str) -> None:
        """Ask for a machine reset at the next instruction boundary."""
        ...

    def request_shutdown(self, status: int, reason: str, *, immediate: bool = False) -> None:
        """Ask the machine to stop and pyemu to exit with ``status`` (``immediate``: even
        with -no-shutdown, which otherwise pauses at the guest's shutdown)."""
        ...

    def pio_window(self, port: int, data: bytes, pos: int, end: int) -> None:
        """Let the CPU serve 16/32-bit reads of ``port`` from data[pos:end] itself, without
        calling the device, except the read that would reach ``end`` (a block's end)."""
        ...

    def pio_window_take(self, port: int) -> int | None:
        """Close the window on ``port``: the position reads reached, or None if none was
        open. A device takes it back before anything else touches that transfer."""
        ...

    def port_constant(self, port: int, value: int, until_ns: int) -> None:
        """Let the CPU answer byte reads of ``port`` with ``value`` itself, without
        calling the device, until virtual time ``until_ns``. One port at a time; the
        device sets it again (or to -1) whenever its register may change sooner."""
        ...

    def tray_moved(self, drive: Object, tray_open: bool) -> None:
        """A removable-media drive's tray opened or closed (the guest's doing or the
        monitor's): the board tells whoever listens (QMP's DEVICE_TRAY_MOVED)."""
        ...

    def pci_functions(self) -> list:
        """The PCI functions on bus 0 now (hot-plugged ones included)."""
        ...

    def pci_intx_changed(self) -> None:
        """A PCI function's interrupt pin may have changed level: route them again."""
        ...

    def pci_eject(self, slot: int) -> None:
        """The guest ejected the card in PCI ``slot`` (ACPI hotplug): take it away."""
        ...

    def set_a20(self, source: str, enabled: bool) -> None:
        """One source of the A20 gate (the i8042 output port, port 0x92): the line is
        enabled while any source enables it."""
        ...


class Device(Object):
    """A device: realized against a board, which gives it ports, IRQs and time."""

    board: Board

    def realize(self, board: Board) -> None:  # type: ignore[override]
        self.board = board
        super().realize()

    def realize_all(self, board: Board) -> None:
        """This device, then its descendants: a parent configures its children's props
        before they freeze, and children find their parent realized."""
        self.realize(board)
        for child in self.children.values():
            child.realize_all(board)  # type: ignore[attr-defined]

    def reset_all(self) -> None:
        """Descendants first, then this device, whose rebuild may read theirs."""
        for child in self.children.values():
            child.reset_all()  # type: ignore[attr-defined]
        self.reset()
