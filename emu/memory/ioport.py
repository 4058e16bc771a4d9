"""The x86 I/O port space: 65536 byte-addressed ports dispatched to devices.

An access to a port no device claims reads all ones and writes are dropped, as on an
ISA bus with nothing driving the data lines; it never faults.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

PortRead = Callable[[int, int], int]  # (offset from base, size in bytes) -> value
PortWrite = Callable[[int, int, int], None]  # (offset, size, value)

ONES = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}
log = logging.getLogger("emu.memory")
unimp_log = logging.getLogger("emu.unimp")  # -d unimp: each port once


@dataclass
class PortRange:
    base: int
    count: int
    read: PortRead | None
    write: PortWrite | None
    owner: str
    byte_wide: bool = False  # an 8-bit ISA chip: wider accesses become byte cycles


class IoBus:
    """Port -> handler dispatch, one table slot per port so lookups cost one index."""

    def __init__(self) -> None:
        self._slots: list[PortRange | None] = [None] * 0x10000
        self._unimp_seen: set[int] = set()

    def register(self, base: int, count: int, read: PortRead | None, write: PortWrite | None,
                 owner: str, *, byte_wide: bool = False) -> None:
        """Claim [base, base+count). ``byte_wide``: the device sits on the 8-bit ISA data
        bus, so a 16/32-bit access reaches it as byte cycles on consecutive ports (each
        port dispatched on its own, whoever owns it), and handlers only see size 1."""
        if not (0 <= base and base + count <= 0x10000 and count > 0):
            raise ValueError(f"{owner}: port range {base:#x}+{count} outside 0-0xffff")
        for port in range(base, base + count):
            slot = self._slots[port]
            if slot is not None:
                raise ValueError(f"{owner}: port {port:#x} already belongs to {slot.owner}")
        rng = PortRange(base, count, read, write, owner, byte_wide)
        for port in range(base, base + count):
            self._slots[port] = rng

    def unregister(self, base: int, count: int) -> None:
        for port in range(base, base + count):
            self._slots[port] = None

    def _unimplemented(self, port: int, access: str, size: int) -> None:
        """-d unimp: the first access to a port no device models."""
        if unimp_log.isEnabledFor(logging.DEBUG) and port not in self._unimp_seen:
            self._unimp_seen.add(port)
            unimp_log.debug("unimplemented I/O port %#x: %s (size %d); not logged again",
                            port, access, size)

    def owner(self, port: int) -> str | None:
        slot = self._slots[port & 0xFFFF]
        return slot.owner if slot else None

    def read(self, port: int, size: int) -> int:
        slot = self._slots[port & 0xFFFF]
        if slot is None or slot.read is None:
            log.debug("read of unassigned port %#x (size %d)", port, size)
            self._unimplemented(port, "read", size)
            return ONES[size]
        if slot.byte_wide and size > 1:
            return sum(self.read(port + i, 1) << (8 * i) for i in range(size))
        return slot.read(port - slot.base, size) & ONES[size]

    def write(self, port: int, size: int, value: int) -> None:
        slot = self._slots[port & 0xFFFF]
        if slot is None or slot.write is None:
            log.debug("write of %#x to unassigned port %#x (size %d)", value, port, size)
            self._unimplemented(port, "write", size)
            return
        if slot.byte_wide and size > 1:
            for i in range(size):
                self.write(port + i, 1, (value >> (8 * i)) & 0xFF)
        else:
            slot.write(port - slot.base, size, value & ONES[size])
