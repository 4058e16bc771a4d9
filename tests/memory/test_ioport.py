"""IoBus: port dispatch, unassigned ports, ownership, offsets and byte-wide ISA chips.

On an ISA bus a read nobody answers floats to all ones and a write nobody claims is lost;
neither faults. An 8-bit chip sees a 16/32-bit access as byte cycles on consecutive ports.
"""

from __future__ import annotations

import pytest

from emu.memory.ioport import IoBus

ONES = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}


class Dev:
    """Records the (offset, size[, value]) its handlers receive."""

    def __init__(self, value: int = 0x12345678) -> None:
        self.reads: list[tuple[int, int]] = []
        self.writes: list[tuple[int, int, int]] = []
        self.value = value

    def read(self, off: int, size: int) -> int:
        self.reads.append((off, size))
        return self.value

    def write(self, off: int, size: int, value: int) -> None:
        self.writes.append((off, size, value))


@pytest.mark.parametrize("size", [1, 2, 4])
@pytest.mark.parametrize("port", [0x0, 0x80, 0x3F8, 0xCF8, 0xFFFF])
def test_unassigned_port_reads_all_ones(port: int, size: int) -> None:
    bus = IoBus()
    assert bus.read(port, size) == ONES[size]
    bus.write(port, size, 0)  # dropped, no fault
    assert bus.owner(port) is None


def test_handlers_get_offsets_from_base_and_sizes() -> None:
    bus, dev = IoBus(), Dev()
    bus.register(0x3F8, 8, dev.read, dev.write, owner="uart")
    assert bus.read(0x3F8, 1) == 0x78
    assert bus.read(0x3FD, 2) == 0x5678
    assert bus.read(0x3FC, 4) == 0x12345678
    bus.write(0x3F9, 1, 0xAB)
    bus.write(0x3FE, 2, 0xBEEF)
    bus.write(0x3FF, 4, 0xCAFEF00D)
    assert dev.reads == [(0, 1), (5, 2), (4, 4)]
    assert dev.writes == [(1, 1, 0xAB), (6, 2, 0xBEEF), (7, 4, 0xCAFEF00D)]
    assert bus.owner(0x3F8) == bus.owner(0x3FF) == "uart"
    assert bus.owner(0x3F7) is None and bus.owner(0x400) is None


def test_values_are_truncated_to_the_access_size() -> None:
    bus, dev = IoBus(), Dev(value=0x1_FFFF_FFFF)
    bus.register(0x60, 1, dev.read, dev.write, owner="kbd")
    assert bus.read(0x60, 1) == 0xFF
    assert bus.read(0x60, 4) == 0xFFFFFFFF
    bus.write(0x60, 1, 0x1234)
    bus.write(0x60, 2, 0x12345)
    assert dev.writes == [(0, 1, 0x34), (0, 2, 0x2345)]


def test_missing_handler_behaves_as_unassigned() -> None:
    bus, dev = IoBus(), Dev()
    bus.register(0x70, 1, None, dev.write, owner="wo")
    bus.register(0x71, 1, dev.read, None, owner="ro")
    assert bus.read(0x70, 1) == 0xFF
    bus.write(0x71, 1, 5)
    assert dev.reads == [] and dev.writes == []


def test_conflict_names_both_owners_and_claims_nothing() -> None:
    bus = IoBus()
    bus.register(0x3F8, 8, Dev().read, None, owner="serial0")
    with pytest.raises(ValueError) as info:
        bus.register(0x3FC, 8, Dev().read, None, owner="gameport")
    msg = str(info.value)
    assert "serial0" in msg and "gameport" in msg and "0x3fc" in msg
    # the refused range took no ports, not even the free ones
    assert bus.owner(0x400) is None
    assert bus.owner(0x3FC) == "serial0"
    bus.register(0x400, 4, None, None, owner="other")


@pytest.mark.parametrize(("base", "count"), [(0xFFFF, 2), (0x10000, 1), (-1, 1), (0x80, 0)])
def test_range_outside_port_space_refused(base: int, count: int) -> None:
    with pytest.raises(ValueError, match="dev"):
        IoBus().register(base, count, None, None, owner="dev")


def test_unregister_frees_the_ports() -> None:
    bus, dev = IoBus(), Dev()
    bus.register(0x80, 4, dev.read, dev.write, owner="post")
    bus.unregister(0x80, 4)
    assert bus.read(0x80, 1) == 0xFF and bus.owner(0x83) is None
    bus.register(0x80, 1, dev.read, dev.write, owner="post2")
    assert bus.owner(0x80) == "post2"


def test_byte_wide_chip_sees_byte_cycles() -> None:
    bus = IoBus()
    regs = [0x11, 0x22, 0x33, 0x44]
    seen: list[tuple] = []

    def read(off: int, size: int) -> int:
        seen.append(("r", off, size))
        return regs[off]

    def write(off: int, size: int, value: int) -> None:
        seen.append(("w", off, size, value))

    bus.register(0x40, 4, read, write, owner="pit", byte_wide=True)
    assert bus.read(0x40, 2) == 0x2211
    assert bus.read(0x40, 4) == 0x44332211
    bus.write(0x42, 2, 0xBBAA)
    assert seen == [("r", 0, 1), ("r", 1, 1),
                    ("r", 0, 1), ("r", 1, 1), ("r", 2, 1), ("r", 3, 1),
                    ("w", 2, 1, 0xAA), ("w", 3, 1, 0xBB)]


def test_byte_wide_access_past_the_chip_reaches_the_next_port_owner() -> None:
    bus, wide = IoBus(), Dev()
    bus.register(0x61, 1, lambda off, size: 0x5A, None, owner="port61", byte_wide=True)
    bus.register(0x62, 1, wide.read, wide.write, owner="next")
    # byte 0 from the 8-bit chip, byte 1 from whoever owns 0x62, bytes 2-3 float high
    assert bus.read(0x61, 4) == 0xFFFF78 << 8 | 0x5A
    assert wide.reads == [(0, 1)]
