"""fw_cfg driven through its x86 ports the way SeaBIOS and Linux drive it."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import pytest

from emu.devices.fw_cfg import (
    DMA_ERROR,
    DMA_READ,
    DMA_SELECT,
    DMA_SKIP,
    DMA_WRITE,
    E820_TABLE,
    FILE_DIR,
    ID,
    MAX_CPUS,
    NB_CPUS,
    RAM_SIZE,
    SIGNATURE,
    FwCfg,
    e820_table,
)
from emu.qom import fields_of

if TYPE_CHECKING:
    from conftest import BenchBoard

SEL, DATA, DMA_HI, DMA_LO = 0x510, 0x511, 0x514, 0x518
DESC = 0x1000  # where tests put their FWCfgDmaAccess
BUF = 0x2000  # and the buffer it points to

FILES = {
    "etc/e820": e820_table([(0, 0x9FC00, 1), (0x100000, 0x7F00000, 1)]),
    "bootorder": b"/pci@i0cf8/ide@1,1/drive@0/disk@0\n",
    "etc/boot-fail-wait": struct.pack("<I", 5),
    "genroms/linuxboot_dma.bin": bytes(range(256)) * 4,
}


def make_fw_cfg(board: BenchBoard, files: dict[str, bytes] | None = None) -> FwCfg:
    """The device as a board would build it: items first, then realize and reset."""
    dev = FwCfg("fw_cfg", None)
    dev.add_u64(RAM_SIZE, 128 << 20)
    dev.add_u16(NB_CPUS, 1)
    dev.add_u16(MAX_CPUS, 4)
    for name, data in (FILES if files is None else files).items():
        dev.add_file(name, data)
    dev.realize(board)
    dev.reset()
    return dev


@pytest.fixture
def fw(board: BenchBoard) -> FwCfg:
    return make_fw_cfg(board)


def read_item(board: BenchBoard, key: int, n: int) -> bytes:
    board.outw(SEL, key)
    return bytes(board.inb(DATA) for _ in range(n))


def read_dir(board: BenchBoard) -> list[tuple[int, int, str]]:
    """(size, select, name) of every directory entry, as firmware walks it."""
    board.outw(SEL, FILE_DIR)
    count = int.from_bytes(bytes(board.inb(DATA) for _ in range(4)), "big")
    assert count <= 64, f"implausible directory count {count:#x}"
    out = []
    for _ in range(count):
        raw = bytes(board.inb(DATA) for _ in range(64))
        size, select, reserved, name = struct.unpack(">IHH56s", raw)
        assert reserved == 0
        out.append((size, select, name.rstrip(b"\0").decode()))
    return out


def find_file(board: BenchBoard, name: str) -> tuple[int, int]:
    for size, select, fname in read_dir(board):
        if fname == name:
            return select, size
    raise KeyError(name)


def dma(board: BenchBoard, control: int, length: int, addr: int, desc: int = DESC) -> int:
    """Run one DMA access like SeaBIOS (32-bit descriptor: only the low half is written)
    and return the control word the device wrote back."""
    board.mem.write(desc, struct.pack(">IIQ", control, length, addr))
    board.outl(DMA_LO, int.from_bytes(desc.to_bytes(4, "big"), "little"))
    return int.from_bytes(board.mem.read(desc, 4), "big")


# -- traditional interface ---------------------------------------------------------------
def test_signature_through_data_port(board, fw):
    assert read_item(board, SIGNATURE, 4) == b"QEMU"


def test_signature_is_selected_after_reset(board, fw):
    board.outw(SEL, RAM_SIZE)
    board.inb(DATA)
    fw.reset()
    assert bytes(board.inb(DATA) for _ in range(4)) == b"QEMU"


def test_id_reports_traditional_and_dma(board, fw):
    assert int.from_bytes(read_item(board, ID, 4), "little") == 0b11


def test_id_without_dma_and_no_dma_port(board):
    dev = FwCfg("fw_cfg", None, dma_enabled=False)
    dev.realize(board)
    dev.reset()
    assert int.from_bytes(read_item(board, ID, 4), "little") == 0b01
    assert board.io.owner(DMA_HI) is None


def test_numeric_items_are_little_endian(board, fw):
    assert int.from_bytes(read_item(board, RAM_SIZE, 8), "little") == 128 << 20
    assert int.from_bytes(read_item(board, NB_CPUS, 2), "little") == 1
    assert int.from_bytes(read_item(board, MAX_CPUS, 2), "little") == 4


def test_item_read_byte_by_byte_then_zero_past_end(board, fw):
    board.outw(SEL, NB_CPUS)
    assert [board.inb(DATA) for _ in range(5)] == [1, 0, 0, 0, 0]
    key, _ = find_file(board, "bootorder")
    got = read_item(board, key, len(FILES["bootorder"]) + 3)
    assert got == FILES["bootorder"] + b"\0\0\0"
    assert fw.offset == len(FILES["bootorder"])  # the offset stops at the end


def test_reselect_restarts_at_offset_zero(board, fw):
    assert read_item(board, SIGNATURE, 2) == b"QE"
    assert read_item(board, SIGNATURE, 4) == b"QEMU"


def test_byte_read_at_selector_port_reads_data(board, fw):
    board.outw(SEL, SIGNATURE)
    assert bytes([board.inb(SEL), board.inb(DATA), board.inb(SEL)]) == b"QEM"


def test_wide_reads_and_byte_writes_do_not_disturb_the_item(board, fw):
    board.outw(SEL, SIGNATURE)
    assert board.inw(SEL) == 0 and board.inl(SEL) == 0
    board.outb(DATA, 0x55)  # data writes are dropped; a byte write never selects
    board.outb(SEL, 0x03)
    assert bytes(board.inb(DATA) for _ in range(4)) == b"QEMU"


def test_unknown_key_reads_zero(board, fw):
    assert read_item(board, 0x3FFF, 4) == bytes(4)
    assert read_item(board, 0xFFFF, 4) == bytes(4)


def test_write_channel_bit_selects_the_same_item(board, fw):
    assert read_item(board, 0x4000 | SIGNATURE, 4) == b"QEMU"


# -- file directory ------------------------------------------------------------------------
def test_file_dir_is_sorted_by_name_with_keys_from_0x20(board, fw):
    entries = read_dir(board)
    names = [name for _, _, name in entries]
    assert names == sorted(FILES)
    assert [select for _, select, _ in entries] == list(range(0x20, 0x20 + len(FILES)))
    assert {name: size for size, _, name in entries} == {n: len(d) for n, d in FILES.items()}


def test_file_dir_sorts_bytewise_like_strcmp(board):
    make_fw_cfg(board, {"b": b"2", "B": b"1", "a/b": b"3", "a": b"4"})
    assert [name for _, _, name in read_dir(board)] == ["B", "a", "a/b", "b"]


def test_file_lookup_then_read(board, fw):
    key, size = find_file(board, "etc/boot-fail-wait")
    assert key == fw.file_key("etc/boot-fail-wait")
    assert read_item(board, key, size) == struct.pack("<I", 5)
    key, size = find_file(board, "genroms/linuxboot_dma.bin")
    assert read_item(board, key, size) == FILES["genroms/linuxboot_dma.bin"]


def test_empty_directory_has_count_zero(board):
    make_fw_cfg(board, {})
    assert read_item(board, FILE_DIR, 4) == bytes(4)


def test_add_file_rejects_duplicates_and_long_names(board):
    dev = FwCfg("fw_cfg", None)
    dev.add_file("x" * 55, b"")
    with pytest.raises(ValueError):
        dev.add_file("x" * 55, b"again")
    with pytest.raises(ValueError):
        dev.add_file("y" * 56, b"")
    with pytest.raises(ValueError):
        dev.add_file("", b"")


def test_add_bytes_rejects_taken_and_directory_keys():
    dev = FwCfg("fw_cfg", None)
    dev.add_u16(NB_CPUS, 1)
    for key in (NB_CPUS, SIGNATURE, ID, FILE_DIR, 0x20, 0x4005):
        with pytest.raises(ValueError):
            dev.add_bytes(key, b"x")
    with pytest.raises(ValueError):
        dev.add_u16(MAX_CPUS, 0x10000)
    dev.add_bytes(E820_TABLE, b"arch-local keys are numbered items")


# -- DMA interface -------------------------------------------------------------------------
def test_dma_address_register_reads_signature(board, fw):
    assert board.inl(DMA_HI).to_bytes(4, "little") == b"QEMU"
    assert board.inl(DMA_LO).to_bytes(4, "little") == b" CFG"
    assert bytes(board.inb(DMA_HI + i) for i in range(8)) == b"QEMU CFG"
    # as a 64-bit big-endian register it is the spec's value
    assert int.from_bytes(bytes(board.inb(DMA_HI + i) for i in range(8)), "big") \
        == 0x51454D5520434647


def test_dma_read_with_select(board, fw):
    key, size = find_file(board, "etc/e820")
    assert dma(board, key << 16 | DMA_SELECT | DMA_READ, size, BUF) == 0
    assert board.mem.read(BUF, size) == FILES["etc/e820"]


def test_dma_read_continues_from_port_reads_without_select(board, fw):
    key, size = find_file(board, "genroms/linuxboot_dma.bin")
    board.outw(SEL, key)
    first = bytes(board.inb(DATA) for _ in range(10))
    assert dma(board, DMA_READ, 100, BUF) == 0
    data = FILES["genroms/linuxboot_dma.bin"]
    assert first + board.mem.read(BUF, 100) == data[:110]
    assert board.inb(DATA) == data[110]  # and the port continues after the DMA


def test_dma_skip_then_read(board, fw):
    key, _ = find_file(board, "genroms/linuxboot_dma.bin")
    assert dma(board, key << 16 | DMA_SELECT | DMA_SKIP, 300, BUF) == 0
    assert dma(board, DMA_READ, 16, BUF) == 0
    assert board.mem.read(BUF, 16) == FILES["genroms/linuxboot_dma.bin"][300:316]


def test_dma_read_across_item_end_zero_fills(board, fw):
    board.mem.write(BUF, b"\xAA" * 16)
    assert dma(board, SIGNATURE << 16 | DMA_SELECT | DMA_READ, 12, BUF) == 0
    assert board.mem.read(BUF, 16) == b"QEMU" + bytes(8) + b"\xAA" * 4
    board.mem.write(BUF, b"\xAA" * 4)
    assert dma(board, DMA_READ, 4, BUF) == 0  # already at the end: all zeros
    assert board.mem.read(BUF, 4) == bytes(4)


def test_dma_skip_past_end_then_read_gives_zeros(board, fw):
    assert dma(board, SIGNATURE << 16 | DMA_SELECT | DMA_SKIP, 100, BUF) == 0
    assert board.inb(DATA) == 0


def test_dma_select_only_moves_nothing(board, fw):
    board.mem.write(BUF, b"\xAA" * 4)
    assert dma(board, NB_CPUS << 16 | DMA_SELECT, 4, BUF) == 0
    assert board.mem.read(BUF, 4) == b"\xAA" * 4
    assert board.inb(DATA) == 1  # NB_CPUS selected, at offset 0


def test_dma_buffer_outside_ram_sets_error(board, fw):
    ram = len(board.mem.ram)
    assert dma(board, SIGNATURE << 16 | DMA_SELECT | DMA_READ, 4, ram - 2) == DMA_ERROR
    assert dma(board, DMA_READ, 4, 1 << 40) == DMA_ERROR
    # the zero-fill tail runs off the end of RAM too: also an error, not a crash
    assert dma(board, SIGNATURE << 16 | DMA_SELECT | DMA_READ, 0xFFFFFFFF, BUF) == DMA_ERROR


def test_dma_descriptor_outside_ram_is_dropped(board, fw):
    board.outl(DMA_HI, int.from_bytes((1).to_bytes(4, "big"), "little"))
    board.outl(DMA_LO, 0)  # descriptor at 4 GiB: nothing to read, nowhere to report
    assert fw.dma_addr_high == 0
    assert read_item(board, SIGNATURE, 4) == b"QEMU"


def test_dma_write_is_rejected(board, fw):
    board.mem.write(BUF, b"EVIL")
    assert dma(board, SIGNATURE << 16 | DMA_SELECT | DMA_WRITE, 4, BUF) == DMA_ERROR
    assert read_item(board, SIGNATURE, 4) == b"QEMU"


def test_dma_with_64bit_descriptor_address_uses_both_halves(board, fw):
    # The high half is latched; a high half pointing above RAM makes the transfer fail
    # without touching the low-memory descriptor, which proves it was used.
    board.mem.write(DESC, struct.pack(">IIQ", DMA_SELECT | DMA_READ, 4, BUF))
    board.outl(DMA_HI, int.from_bytes((2).to_bytes(4, "big"), "little"))
    assert fw.dma_addr_high == 2
    board.outl(DMA_LO, int.from_bytes(DESC.to_bytes(4, "big"), "little"))
    assert fw.dma_addr_high == 0  # the register resets after an operation
    assert int.from_bytes(board.mem.read(DESC, 4), "big") == DMA_SELECT | DMA_READ
    # the next operation, low half only, uses high = 0 again
    assert dma(board, DMA_SELECT | DMA_READ, 4, BUF) == 0
    assert board.mem.read(BUF, 4) == b"QEMU"


# -- host helpers ------------------------------------------------------------------------
def test_e820_table_layout():
    raw = e820_table([(0, 0x9FC00, 1), (0xFFFC0000, 0x40000, 2)])
    assert len(raw) == 40
    assert raw[:20] == (0).to_bytes(8, "little") + (0x9FC00).to_bytes(8, "little") \
        + (1).to_bytes(4, "little")
    assert struct.unpack_from("<QQI", raw, 20) == (0xFFFC0000, 0x40000, 2)
    assert e820_table([]) == b""


def test_items_hold_the_host_values_and_files(board, fw):
    assert FILE_DIR in fw.items
    assert read_item(board, RAM_SIZE, 8) == (128 << 20).to_bytes(8, "little")
    assert find_file(board, "etc/e820") == (fw.file_key("etc/e820"), 40)
    key, size = find_file(board, "bootorder")
    assert (key, size) == (fw.file_key("bootorder"), len(FILES["bootorder"]))
    assert read_item(board, key, size) == FILES["bootorder"]


# -- state table completeness ------------------------------------------------------------------
def test_state_round_trip_mid_item(board, fw):
    BenchBoard = type(board)  # tests/ is no package: the fixture gives the class

    key, _ = find_file(board, "genroms/linuxboot_dma.bin")
    board.outw(SEL, key)
    for _ in range(37):
        board.inb(DATA)
    # a pending high half (above RAM): the next low-half write must use it and fail
    board.outl(DMA_HI, int.from_bytes((3).to_bytes(4, "big"), "little"))

    fresh_board = BenchBoard()
    new = make_fw_cfg(fresh_board)  # the destination rebuilds the same items
    for f in fields_of(FwCfg, "state"):
        setattr(new, f.attr, getattr(fw, f.attr))
    new.rebuild()
    assert (fw.offset, fw.dma_addr_high) == (37, 3)

    def script(b: BenchBoard) -> list[object]:
        seen: list[object] = [bytes(b.inb(DATA) for _ in range(20))]
        seen.append(dma(b, DMA_READ, 50, BUF))  # descriptor above RAM: left untouched
        seen.append(dma(b, DMA_READ, 50, BUF))  # high half back to 0: this one runs
        seen.append(b.mem.read(BUF, 50))
        seen.append(bytes(b.inb(DATA) for _ in range(5)))
        return seen

    data = FILES["genroms/linuxboot_dma.bin"]
    result = script(board)
    assert result == script(fresh_board)
    assert result == [data[37:57], DMA_READ, 0, data[57:107], data[107:112]]
