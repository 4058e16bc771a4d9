"""Shared fixtures: a board for driving one device through its I/O ports."""

from __future__ import annotations

import pytest

from emu.clock import Clock
from emu.irq import IrqLine
from emu.memory.ioport import IoBus


class BenchMemory:
    """Guest RAM for DMA tests: a bytearray with the AddressSpace's checks."""

    def __init__(self, size: int = 1 << 20) -> None:
        self.ram = bytearray(size)

    def _check(self, addr: int, length: int) -> None:
        if addr < 0 or length < 0 or addr + length > len(self.ram):
            raise ValueError(f"guest address {addr:#x}+{length:#x} is outside RAM")

    def is_ram(self, addr: int, length: int) -> bool:
        return 0 <= addr and 0 <= length and addr + length <= len(self.ram)

    def read(self, addr: int, length: int) -> bytes:
        self._check(addr, length)
        return bytes(self.ram[addr:addr + length])

    def write(self, addr: int, data: bytes) -> None:
        self._check(addr, len(data))
        self.ram[addr:addr + len(data)] = data


class BenchBoard:
    """A board with a hand-driven clock: tests move time with ``advance()``."""

    def __init__(self) -> None:
        self.io = IoBus()
        self.clock = Clock(icount_shift=0)
        self._now = 0
        self.clock.insn_count = lambda: self._now
        self.irqs = [IrqLine(name=f"irq{n}") for n in range(16)]
        self.resets: list[str] = []
        self.shutdowns: list[tuple[int, str]] = []
        self.mem = BenchMemory()
        self.a20: dict[str, bool] = {}
        self.trays: list[tuple[str, bool]] = []  # (drive path, tray open) as they moved
        self.window: list | None = None  # [port, data, pos, end], as the CPU keeps it
        self.constant = (-1, 0, 0)  # (port, value, until_ns), as the CPU keeps it
        self.constant_reads = 0  # reads the constant answered
        self.pci: list = []  # the PCI functions on bus 0, as the board lists them
        self.router = None  # the PIIX3 function routing their INTx, once a test has one
        self.ejected: list[int] = []  # PCI slots the guest ejected (ACPI B0EJ)

    def isa_irq(self, n: int) -> IrqLine:
        return self.irqs[n]

    def request_reset(self, reason: str) -> None:
        self.resets.append(reason)

    def request_shutdown(self, status: int, reason: str) -> None:
        self.shutdowns.append((status, reason))

    def pio_window(self, port: int, data: bytes, pos: int, end: int) -> None:
        self.window = [port, data, pos, end]

    def pio_window_take(self, port: int) -> int | None:
        if self.window is None or self.window[0] != port:
            return None
        pos, self.window = self.window[2], None
        return pos

    def port_constant(self, port: int, value: int, until_ns: int) -> None:
        self.constant = (port, value, until_ns)

    def _in(self, port: int, size: int) -> int:
        """A guest IN, served from a PIO window the way the CPU's C hook serves it."""
        w = self.window
        if w is not None and w[0] == port and w[2] + size < w[3]:
            w[2] += size
            return int.from_bytes(w[1][w[2] - size:w[2]], "little")
        return self.io.read(port, size)

    def set_a20(self, source: str, enabled: bool) -> None:
        self.a20[source] = enabled

    def pci_functions(self) -> list:
        return self.pci

    def pci_intx_changed(self) -> None:
        if self.router is not None:
            self.router.route_intx()

    def pci_eject(self, slot: int) -> None:
        self.ejected.append(slot)

    def tray_moved(self, drive, tray_open: bool) -> None:
        self.trays.append((drive.path, tray_open))

    def advance(self, ns: int) -> None:
        """Move virtual time forward by ``ns``, firing timers at their deadlines in order."""
        end = self._now + ns
        while True:
            nxt = self.clock.next_deadline()
            if nxt is None or nxt > end:
                break
            self._now = max(self._now, nxt)
            self.clock.run_expired()
        self._now = end
        self.clock.run_expired()

    def jump(self, ns: int) -> None:
        """Move virtual time on by ``ns`` at once, as loading a clock that far ahead does
        (``advance`` fires each timer at its deadline); due timers then fire late."""
        self._now += ns
        self.clock.run_expired()

    # port helpers, as a guest's IN/OUT instructions would do them
    def outb(self, port: int, v: int) -> None:
        self.io.write(port, 1, v)

    def outw(self, port: int, v: int) -> None:
        self.io.write(port, 2, v)

    def inb(self, port: int) -> int:
        """A guest IN, answered by the port constant the way the CPU's C hook does."""
        const_port, value, until = self.constant
        if port == const_port and self.clock.now_ns() < until:
            self.constant_reads += 1
            return value
        return self.io.read(port, 1)

    def inw(self, port: int) -> int:
        return self._in(port, 2)

    def outl(self, port: int, v: int) -> None:
        self.io.write(port, 4, v)

    def inl(self, port: int) -> int:
        return self._in(port, 4)


@pytest.fixture
def board() -> BenchBoard:
    return BenchBoard()
