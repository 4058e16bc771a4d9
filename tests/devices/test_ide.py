"""IDE channel, ATA disk and ATAPI CD-ROM, driven through their I/O ports."""

from __future__ import annotations

import struct
import time

import pytest

from emu.devices.ide import IdeChannel, IdeDrive
from emu.host.block import open_image
from emu.qom import fields_of

BASE, CTL = 0x1F0, 0x3F6
DATA, FEATURE, NSECTOR, LBAL, LBAM, LBAH, DEVICE, CMD = range(BASE, BASE + 8)
ERROR, STATUS = FEATURE, CMD
NIEN, SRST, HOB = 0x02, 0x04, 0x80
SECTORS = 2048  # 1 MiB disk


def sector_data(n: int) -> bytes:
    return struct.pack("<I", n) * 128


@pytest.fixture
def disk_path(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(b"".join(sector_data(i) for i in range(SECTORS)))
    return path


@pytest.fixture
def iso_path(tmp_path):
    path = tmp_path / "cd.iso"
    path.write_bytes(b"".join(bytes([i]) * 2048 for i in range(40)))
    return path


def make_channel(board, master=None, slave=None, **props) -> IdeChannel:
    """``master``/``slave``: (media, backend) or None for no drive."""
    ch = IdeChannel("ide0", None, **props)
    for name, spec in (("master", master), ("slave", slave)):
        if spec is not None:
            drv = IdeDrive(name, ch, media=spec[0])
            drv.backend = spec[1]
    ch.realize_all(board)
    ch.reset_all()
    return ch


@pytest.fixture
def disk(board, disk_path):
    be = open_image(str(disk_path), readonly=False, snapshot=False)
    yield make_channel(board, master=("disk", be))
    be.close()


@pytest.fixture
def cd(board, iso_path):
    be = open_image(str(iso_path), readonly=True, snapshot=False)
    yield make_channel(board, master=("cdrom", be))
    be.close()


def irq(board) -> bool:
    return board.irqs[14].level


def read_words(board, n: int) -> bytes:
    return b"".join(board.inw(DATA).to_bytes(2, "little") for _ in range(n))


def issue(board, cmd, *, count=0, lba=0, dev=0xE0, feature=0) -> None:
    board.outb(FEATURE, feature)
    board.outb(NSECTOR, count)
    board.outb(LBAL, lba & 0xFF)
    board.outb(LBAM, (lba >> 8) & 0xFF)
    board.outb(LBAH, (lba >> 16) & 0xFF)
    board.outb(DEVICE, dev | ((lba >> 24) & 0x0F))
    board.outb(CMD, cmd)


def identify(board) -> list[int]:
    issue(board, 0xEC, dev=0xA0)
    assert board.inb(STATUS) == 0x58
    return list(struct.unpack("<256H", read_words(board, 256)))


def ata_text(words: list[int]) -> str:
    return b"".join(struct.pack(">H", w) for w in words).decode().rstrip()


# -- ATA ----------------------------------------------------------------------------

def test_identify_contents(board, disk):
    w = identify(board)
    assert board.inb(STATUS) == 0x50  # DRQ drops after the 512 bytes
    assert w[0] == 0x0040
    assert (w[1], w[3], w[6]) == (2, 16, 63)  # 2048 sectors: cylinders clamp at 2
    assert w[60] | w[61] << 16 == SECTORS
    assert sum(w[i] << (16 * (i - 100)) for i in range(100, 104)) == SECTORS
    assert ata_text(w[27:47]) == "PYEMU HARDDISK"
    assert ata_text(w[23:27]) == "0.1"
    assert w[47] & 0xFF == 16 and w[59] == 0x110
    assert w[49] & 0x0300 == 0x0300  # LBA and DMA
    assert w[83] & 0x0400 and w[86] & 0x0400  # 48-bit supported and enabled
    assert w[63] & 0x07 == 0x07 and w[88] == 0
    assert w[93] & 0x6001 == 0x6001
    assert w[255] & 0xFF == 0xA5
    assert sum(struct.pack("<256H", *w)) & 0xFF == 0  # integrity checksum


def test_identify_geometry_of_a_big_disk(board, tmp_path):
    path = tmp_path / "big.img"
    with open(path, "wb") as f:
        f.truncate((1 << 28) * 512 + 1024 * 512)  # sparse, beyond LBA28
    be = open_image(str(path), readonly=False, snapshot=False)
    make_channel(board, master=("disk", be))
    w = identify(board)
    assert (w[1], w[3], w[6]) == (16383, 16, 63)
    assert w[60] | w[61] << 16 == 0x0FFFFFFF
    assert sum(w[i] << (16 * (i - 100)) for i in range(100, 104)) == (1 << 28) + 1024
    be.close()


def test_read_sectors_pio(board, disk):
    issue(board, 0x20, count=3, lba=100)
    for n in range(100, 103):
        assert irq(board)
        assert board.inb(CTL) == 0x58 and irq(board)  # alternate status keeps the IRQ
        assert board.inb(STATUS) == 0x58 and not irq(board)
        assert read_words(board, 256) == sector_data(n)
    assert board.inb(CTL) == 0x50 and not irq(board)  # no interrupt after the last block
    assert board.inw(DATA) == 0xFFFF  # nothing more to read


def test_read_with_32_bit_accesses(board, disk):
    issue(board, 0x20, count=1, lba=7)
    data = b"".join(board.inl(DATA).to_bytes(4, "little") for _ in range(128))
    assert data == sector_data(7) and board.inb(STATUS) == 0x50


def test_read_multiple_blocks(board, disk):
    issue(board, 0xC6, count=4)
    assert board.inb(STATUS) == 0x50
    issue(board, 0xC4, count=10, lba=20)
    got, interrupts = b"", 0
    for block in (4, 4, 2):
        interrupts += irq(board)
        assert board.inb(STATUS) == 0x58
        got += read_words(board, 256 * block)
    assert interrupts == 3 and got == b"".join(sector_data(i) for i in range(20, 30))
    assert board.inb(STATUS) == 0x50
    issue(board, 0xC6, count=3)  # not a power of two
    assert (board.inb(STATUS), board.inb(ERROR)) == (0x41, 0x04)


def test_write_sectors_and_multiple(board, disk, disk_path):
    issue(board, 0x30, count=2, lba=5)
    assert board.inb(STATUS) == 0x58 and not irq(board)  # DRQ, no interrupt yet
    for i in range(256):
        board.outw(DATA, 0xA500 | (i & 0xFF))
    assert irq(board) and board.inb(STATUS) == 0x58
    for _ in range(128):
        board.outl(DATA, 0x11223344)
    assert irq(board) and board.inb(STATUS) == 0x50
    issue(board, 0xC6, count=2)
    issue(board, 0xC5, count=3, lba=9)
    for _ in range(512):
        board.outw(DATA, 0xBEEF)
    assert board.inb(STATUS) == 0x58  # second block (one sector) wanted
    for _ in range(256):
        board.outw(DATA, 0xCAFE)
    assert board.inb(STATUS) == 0x50
    issue(board, 0xE7)
    assert board.inb(STATUS) == 0x50
    img = disk_path.read_bytes()
    assert img[5 * 512:5 * 512 + 4] == bytes([0, 0xA5, 1, 0xA5])
    assert img[6 * 512:7 * 512] == bytes.fromhex("44332211") * 128
    assert img[9 * 512:11 * 512] == b"\xef\xbe" * 512
    assert img[11 * 512:12 * 512] == b"\xfe\xca" * 256
    assert img[12 * 512:13 * 512] == sector_data(12)


def test_a_dword_across_the_sector_end_stays_in_the_command(board, disk, disk_path):
    """WRITE SECTORS of one sector fed 514 bytes (one OUTW, 128 OUTLs): only the
    addressed sector changes; the 2 spare bytes are outside the DRQ block and dropped."""
    issue(board, 0x30, count=1, lba=10)
    board.outw(0x1F0, 0x1111)
    for _ in range(128):
        board.outl(0x1F0, 0x22222222)
    assert board.inb(0x1F7) & 0x89 == 0  # not busy, no DRQ, no error: the command ended
    data = disk_path.read_bytes()
    assert data[10 * 512:10 * 512 + 4] == b"\x11\x11\x22\x22"
    assert data[11 * 512:12 * 512] == sector_data(11)


def test_flush_cache_reaches_the_backend(board, disk_path):
    be = open_image(str(disk_path), readonly=False, snapshot=False)
    flushes = []
    real_flush = be.flush
    be.flush = lambda: (flushes.append(1), real_flush())  # type: ignore[method-assign]
    make_channel(board, master=("disk", be))
    for cmd in (0xE7, 0xEA):
        issue(board, cmd)
        assert board.inb(STATUS) == 0x50
    assert len(flushes) == 2
    issue(board, 0xEF, feature=0x82)  # write cache off: every write is flushed
    issue(board, 0x30, count=1, lba=1)
    for _ in range(256):
        board.outw(DATA, 0x7777)
    assert len(flushes) == 3 and disk_path.read_bytes()[512:514] == b"\x77\x77"
    be.close()


def test_lba48_with_hob(board, tmp_path):
    path = tmp_path / "big.img"
    with open(path, "wb") as f:
        f.truncate((1 << 28) * 512 + 8 * 512)
    be = open_image(str(path), readonly=False, snapshot=False)
    make_channel(board, master=("disk", be))
    lba = (1 << 28) + 3
    regs = ((NSECTOR, 0, 2), (LBAL, lba >> 24 & 0xFF, lba & 0xFF),
            (LBAM, lba >> 32 & 0xFF, lba >> 8 & 0xFF), (LBAH, lba >> 40 & 0xFF, lba >> 16 & 0xFF))
    for port, high, low in regs:
        board.outb(port, high)
        board.outb(port, low)
    board.outb(DEVICE, 0x40)
    board.outb(CTL, HOB)
    assert [board.inb(p) for p, _, _ in regs] == [h for _, h, _ in regs]
    board.outb(CTL, 0)
    assert [board.inb(p) for p, _, _ in regs] == [lo for _, _, lo in regs]
    board.outb(CMD, 0x34)  # WRITE SECTORS EXT, 2 sectors
    for _ in range(512):
        board.outw(DATA, 0x4848)
    assert board.inb(STATUS) == 0x50
    for port, high, low in regs:
        board.outb(port, high)
        board.outb(port, low)
    board.outb(CMD, 0x24)
    assert read_words(board, 512) == b"\x48" * 1024
    assert board.inb(STATUS) == 0x50
    with open(path, "rb") as f:
        f.seek(lba * 512)
        assert f.read(1024) == b"\x48" * 1024
    be.close()


def test_out_of_range_is_idnf(board, disk):
    issue(board, 0x20, count=2, lba=SECTORS - 1)
    assert irq(board)
    assert (board.inb(STATUS), board.inb(ERROR)) == (0x41, 0x10)
    issue(board, 0x20, count=1, lba=SECTORS - 1)  # the last sector is fine
    assert read_words(board, 256) == sector_data(SECTORS - 1)


def test_unknown_command_aborts(board, disk):
    for cmd in (0x00, 0xA0, 0xA1, 0xFF):
        issue(board, cmd)
        assert irq(board)
        assert (board.inb(STATUS), board.inb(ERROR)) == (0x41, 0x04)
        assert (board.inb(LBAM), board.inb(LBAH)) == (0, 0)  # still an ATA device


def test_chs_addressing_and_initialize_device_parameters(board, disk):
    # default 16 heads x 63 sectors: C/H/S 1/2/3 is LBA (1*16+2)*63+2
    issue(board, 0x20, count=1, lba=(1 << 8) | 3, dev=0xA2)
    assert read_words(board, 256) == sector_data(18 * 63 + 2)
    issue(board, 0x91, count=32, dev=0xA7)  # 8 heads, 32 sectors
    assert board.inb(STATUS) == 0x50
    issue(board, 0x20, count=1, lba=(1 << 8) | 3, dev=0xA2)
    assert read_words(board, 256) == sector_data((8 + 2) * 32 + 2)
    issue(board, 0x20, count=1, lba=(1 << 8) | 0, dev=0xA2)  # sector 0 does not exist
    assert (board.inb(STATUS), board.inb(ERROR)) == (0x41, 0x10)
    w = identify(board)
    assert (w[55], w[56]) == (8, 32) and (w[1], w[3], w[6]) == (2, 16, 63)


def test_set_features_and_power_commands(board, disk):
    issue(board, 0xEF, feature=0x03, count=0x22)  # multiword DMA 2
    assert board.inb(STATUS) == 0x50
    assert identify(board)[63] == 0x0407
    issue(board, 0xEF, feature=0x03, count=0x45)  # UDMA 5: not offered
    assert (board.inb(STATUS), board.inb(ERROR)) == (0x41, 0x04)
    issue(board, 0xEF, feature=0x99)
    assert board.inb(STATUS) == 0x41
    issue(board, 0xE5)
    assert (board.inb(STATUS), board.inb(NSECTOR)) == (0x50, 0xFF)
    for cmd in (0xE0, 0xE1, 0x10, 0x70, 0x40):
        issue(board, cmd, count=1)
        assert board.inb(STATUS) == 0x50


def test_soft_reset_signatures(board, disk_path, iso_path):
    hd = open_image(str(disk_path), readonly=False, snapshot=False)
    cd = open_image(str(iso_path), readonly=True, snapshot=False)
    make_channel(board, master=("disk", hd), slave=("cdrom", cd))
    issue(board, 0x20, count=4, dev=0xE0)  # a transfer to be cancelled
    board.outb(CTL, SRST | NIEN)
    assert board.inb(CTL) & 0x80  # busy while SRST is asserted
    board.outb(CTL, NIEN)
    assert board.inb(DEVICE) & 0x10 == 0  # device 0 selected
    assert [board.inb(p) for p in (STATUS, ERROR, NSECTOR, LBAL, LBAM, LBAH)] == \
        [0x50, 0x01, 1, 1, 0x00, 0x00]
    board.outb(DEVICE, 0xB0)
    assert [board.inb(p) for p in (STATUS, ERROR, NSECTOR, LBAL, LBAM, LBAH)] == \
        [0x00, 0x01, 1, 1, 0x14, 0xEB]
    assert not irq(board)
    # the ATAPI drive aborts IDENTIFY DEVICE and shows its signature
    board.outb(CTL, 0)
    board.outb(LBAM, 0)
    board.outb(LBAH, 0)
    board.outb(CMD, 0xEC)
    assert (board.inb(STATUS) & 0x01, board.inb(LBAM), board.inb(LBAH)) == (1, 0x14, 0xEB)
    board.outb(LBAM, 0x33)
    board.outb(CMD, 0x90)  # EXECUTE DEVICE DIAGNOSTIC: both drives, device 0 selected
    assert irq(board) and board.inb(DEVICE) & 0x10 == 0
    assert [board.inb(p) for p in (STATUS, ERROR, LBAM)] == [0x50, 0x01, 0x00]
    board.outb(DEVICE, 0xB0)
    assert [board.inb(p) for p in (STATUS, ERROR, LBAM, LBAH)] == [0x00, 0x01, 0x14, 0xEB]
    hd.close()
    cd.close()


def test_absent_slave_and_empty_channel(board, disk):
    board.outb(DEVICE, 0xB0)
    assert board.inb(DEVICE) == 0xB0  # SeaBIOS checks the select reads back
    board.outb(NSECTOR, 0x55)
    board.outb(LBAL, 0xAA)
    assert [board.inb(p) for p in (STATUS, ERROR, NSECTOR, LBAL, LBAM, LBAH, CTL)] == [0] * 7
    board.outb(CMD, 0xEC)  # dropped
    assert not irq(board) and board.inb(STATUS) == 0 and board.inw(DATA) == 0xFFFF
    board.outb(DEVICE, 0xA0)
    assert (board.inb(NSECTOR), board.inb(LBAL), board.inb(STATUS)) == (0x55, 0xAA, 0x50)


def test_channel_without_drives_reads_zero(board):
    make_channel(board)
    for dev in (0xA0, 0xB0):
        board.outb(DEVICE, dev)
        assert [board.inb(p) for p in range(BASE + 1, BASE + 8)] + [board.inb(CTL)] == [0] * 8


def test_nien_masks_the_interrupt(board, disk):
    board.outb(CTL, NIEN)
    issue(board, 0x20, count=1, lba=0)
    assert not irq(board) and board.inb(CTL) == 0x58
    read_words(board, 256)
    board.outb(CTL, 0)
    issue(board, 0xE7)
    assert irq(board)
    board.inb(STATUS)
    assert not irq(board)


def test_data_port_byte_access_is_inert(board, disk):
    issue(board, 0x20, count=1, lba=3)
    assert board.inb(DATA) == 0xFF
    assert read_words(board, 256) == sector_data(3)


def test_ata_pio_read_throughput(board, disk):
    """1 MiB through 16-bit data-port reads via the I/O bus, as a booting guest does."""
    read = board.io.read
    words: list[int] = []
    start = time.perf_counter()
    for first in range(0, SECTORS, 256):
        issue(board, 0x20, count=0, lba=first)  # 256 sectors
        for _ in range(256):
            assert read(STATUS, 1) == 0x58
            words += [read(DATA, 2) for _ in range(256)]
    elapsed = time.perf_counter() - start
    rate = 2 * len(words) / elapsed / 1e6
    print(f"PIO 16-bit read: {rate:.2f} MB/s ({elapsed / len(words) * 1e6:.2f} us/word)")
    data = struct.pack(f"<{len(words)}H", *words)
    assert data == b"".join(sector_data(i) for i in range(SECTORS))
    assert rate > 0.3  # a loaded CI host still manages this; an idle one does ~2 MB/s


# -- bus-master DMA -------------------------------------------------------------------

def write_prd(board, addr: int, entries: list[tuple[int, int, bool]]) -> None:
    for i, (base, count, eot) in enumerate(entries):
        board.mem.write(addr + 8 * i, struct.pack("<IHH", base, count & 0xFFFF,
                                                  0x8000 if eot else 0))


def test_dma_read_multi_entry_prd(board, disk):
    ch = disk
    write_prd(board, 0x1000, [(0x20000, 512, False), (0x30000, 1024, False),
                              (0x40000, 512, True)])
    ch.bm_write(4, 4, 0x1000)
    assert ch.bm_read(4, 4) == 0x1000
    ch.bm_write(0, 1, 0x08)  # direction: to memory
    issue(board, 0xC8, count=4, lba=50)
    assert not irq(board) and board.inb(CTL) & 0x08  # waiting for the engine
    ch.bm_write(0, 1, 0x09)
    assert irq(board)
    assert ch.bm_read(2, 1) & 0x07 == 0x04  # interrupt, not active, no error
    assert board.inb(STATUS) == 0x50
    mem = board.mem
    assert mem.read(0x20000, 512) == sector_data(50)
    assert mem.read(0x30000, 1024) == sector_data(51) + sector_data(52)
    assert mem.read(0x40000, 512) == sector_data(53)
    ch.bm_write(2, 1, 0x04)  # write one to clear
    ch.bm_write(0, 1, 0x08)
    assert ch.bm_read(0, 4) == 0x08


def test_dma_scatter_list_of_single_sectors_in_any_order(board, disk):
    """A guest's scatter list as Linux builds it for a direct I/O buffer: one entry per
    page, some pages following one another, others not, in any order; the PRD table
    ends at the last byte of RAM."""
    ch, mem = disk, board.mem
    bases = [0x50000 + 0x200 * k for k in range(6)] + [0x48000, 0x47E00, 0x60000]
    table = len(mem.ram) - 8 * len(bases)
    write_prd(board, table, [(b, 512, k == len(bases) - 1) for k, b in enumerate(bases)])
    ch.bm_write(4, 4, table)
    ch.bm_write(0, 1, 0x08)
    issue(board, 0xC8, count=len(bases), lba=20)
    ch.bm_write(0, 1, 0x09)
    assert irq(board) and ch.bm_read(2, 1) & 0x07 == 0x04
    for k, base in enumerate(bases):
        assert mem.read(base, 512) == sector_data(20 + k), f"entry {k}"


def test_dma_start_before_command_and_64k_entry(board, disk):
    ch = disk
    write_prd(board, 0x800, [(0x10000, 0, True)])  # count 0 = 64 KiB
    ch.bm_write(4, 4, 0x800)
    ch.bm_write(0, 1, 0x09)
    assert ch.bm_read(2, 1) & 0x01
    board.outb(FEATURE, 0)
    for port, val in ((NSECTOR, 0), (NSECTOR, 128), (LBAL, 0), (LBAL, 1)):
        board.outb(port, val)  # READ DMA EXT at LBA 1, 128 sectors
    board.outb(LBAM, 0)
    board.outb(LBAM, 0)
    board.outb(LBAH, 0)
    board.outb(LBAH, 0)
    board.outb(DEVICE, 0x40)
    board.outb(CMD, 0x25)
    assert irq(board) and ch.bm_read(2, 1) & 0x07 == 0x04
    assert board.mem.read(0x10000, 65536) == b"".join(sector_data(i) for i in range(1, 129))


def test_dma_write(board, disk, disk_path):
    ch = disk
    board.mem.write(0x50000, b"\x11" * 512)
    board.mem.write(0x60000, b"\x22" * 512)
    write_prd(board, 0x1000, [(0x50000, 512, False), (0x60000, 512, True)])
    ch.bm_write(4, 4, 0x1000)
    issue(board, 0xCA, count=2, lba=30)
    ch.bm_write(0, 1, 0x01)
    assert irq(board) and board.inb(STATUS) == 0x50
    assert disk_path.read_bytes()[30 * 512:32 * 512] == b"\x11" * 512 + b"\x22" * 512


def test_dma_outside_ram_sets_error(board, disk):
    ch = disk
    write_prd(board, 0x1000, [(0x20000, 512, False), (0x7FF00000, 512, True)])
    ch.bm_write(4, 4, 0x1000)
    ch.bm_write(0, 1, 0x09)
    issue(board, 0xC8, count=2, lba=0)
    assert ch.bm_read(2, 1) & 0x07 == 0x06  # error and interrupt, not active
    assert irq(board)
    assert (board.inb(STATUS), board.inb(ERROR)) == (0x41, 0x04)
    ch.bm_write(2, 1, 0x06)
    assert ch.bm_read(2, 1) == 0
    # a PRD table that is itself outside RAM
    ch.bm_write(0, 1, 0)
    ch.bm_write(4, 4, 0xFFFF0000)
    ch.bm_write(0, 1, 0x09)
    issue(board, 0xC8, count=1, lba=0)
    assert ch.bm_read(2, 1) & 0x07 == 0x06 and board.inb(STATUS) == 0x41


def test_dma_short_prd_table(board, disk):
    ch = disk
    write_prd(board, 0x1000, [(0x20000, 512, True)])
    ch.bm_write(4, 4, 0x1000)
    ch.bm_write(0, 1, 0x09)
    issue(board, 0xC8, count=2, lba=0)
    assert ch.bm_read(2, 1) & 0x07 == 0  # neither active nor interrupt: PRD too small
    assert not irq(board)


def test_bm_status_capable_bits(board, disk):
    ch = disk
    ch.bm_write(2, 1, 0x60)
    assert ch.bm_read(2, 1) == 0x60
    assert ch.bm_read(0, 2) == 0x0000 and ch.bm_read(1, 1) == 0


# -- ATAPI ----------------------------------------------------------------------------

def packet(board, cdb: bytes, *, limit=0xFFFE, dma=False) -> None:
    board.outb(FEATURE, 1 if dma else 0)
    board.outb(LBAM, limit & 0xFF)
    board.outb(LBAH, limit >> 8)
    board.outb(DEVICE, 0xA0)
    board.outb(CMD, 0xA0)
    assert board.inb(CTL) & 0x08 and board.inb(NSECTOR) & 0x03 == 0x01  # CoD: want packet
    cdb = cdb.ljust(12, b"\0")
    for i in range(0, 12, 2):
        board.outw(DATA, int.from_bytes(cdb[i:i + 2], "little"))


def atapi_data(board) -> bytes:
    """Read every data-in block; return the bytes. Leaves the status unread."""
    out = b""
    while True:
        assert irq(board)
        status = board.inb(STATUS)
        if not status & 0x08:
            assert board.inb(NSECTOR) & 0x03 == 0x03 and not status & 0x01
            return out
        assert board.inb(NSECTOR) & 0x03 == 0x02
        n = board.inb(LBAM) | board.inb(LBAH) << 8
        out += read_words(board, (n + 1) // 2)[:n]


def sense(board) -> tuple[int, int]:
    packet(board, bytes([0x03, 0, 0, 0, 18]))
    data = atapi_data(board)
    return data[2] & 0x0F, data[12]


def test_identify_packet_device(board, cd):
    board.outb(DEVICE, 0xA0)
    board.outb(CMD, 0xA1)
    assert board.inb(STATUS) == 0x58
    w = struct.unpack("<256H", read_words(board, 256))
    assert w[0] == 0x85C0 and ata_text(w[27:47]) == "PYEMU DVD-ROM"
    assert board.inb(STATUS) == 0x50


def test_atapi_inquiry(board, cd):
    packet(board, bytes([0x12, 0, 0, 0, 36]))
    data = atapi_data(board)
    assert len(data) == 36 and data[0] == 0x05 and data[1] & 0x80
    assert data[8:16] == b"PYEMU   "


def test_atapi_read_capacity_and_read10(board, cd):
    packet(board, bytes([0x25]))
    assert atapi_data(board) == struct.pack(">II", 39, 2048)
    packet(board, bytes([0x28, 0, 0, 0, 0, 5, 0, 0, 3]), limit=2048)
    blocks = 0
    data = b""
    while True:
        status = board.inb(STATUS)
        if not status & 0x08:
            break
        blocks += 1
        assert board.inb(LBAM) | board.inb(LBAH) << 8 == 2048
        data += read_words(board, 1024)
    assert blocks == 3 and data == bytes([5]) * 2048 + bytes([6]) * 2048 + bytes([7]) * 2048
    packet(board, bytes([0xA8, 0, 0, 0, 0, 39, 0, 0, 0, 1]))  # READ(12), last sector
    assert atapi_data(board) == bytes([39]) * 2048


def test_atapi_errors_and_request_sense(board, cd):
    packet(board, bytes([0x28, 0, 0, 0, 0, 39, 0, 0, 2]))  # past the end
    assert irq(board)
    assert board.inb(STATUS) == 0x41 and board.inb(ERROR) >> 4 == 0x05
    assert sense(board) == (0x05, 0x21)
    assert sense(board) == (0x00, 0x00)  # sense is consumed
    packet(board, bytes([0xFF]))
    assert board.inb(STATUS) & 0x01 and sense(board) == (0x05, 0x20)


def test_atapi_no_medium_and_medium_change(board, iso_path):
    ch = make_channel(board, master=("cdrom", None))
    drv = ch.children["master"]
    packet(board, bytes([0x00]))
    assert board.inb(STATUS) == 0x41 and board.inb(ERROR) >> 4 == 0x02
    assert sense(board) == (0x02, 0x3A)
    packet(board, bytes([0x25]))
    assert board.inb(STATUS) & 0x01
    be = open_image(str(iso_path), readonly=True, snapshot=False)
    drv.change_medium(be)
    packet(board, bytes([0x00]))
    assert board.inb(STATUS) == 0x41 and sense(board) == (0x06, 0x28)
    drv.change_medium(be)
    assert sense(board) == (0x06, 0x28)  # REQUEST SENSE reports the attention itself
    packet(board, bytes([0x00]))
    assert board.inb(STATUS) == 0x50 and board.inb(NSECTOR) == 0x03
    packet(board, bytes([0x25]))
    assert atapi_data(board)[:4] == struct.pack(">I", 39)
    be.close()


def test_atapi_mode_sense_toc_config(board, cd):
    packet(board, bytes([0x5A, 0, 0x2A, 0, 0, 0, 0, 0, 64]))
    data = atapi_data(board)
    assert data[8] == 0x2A and len(data) == 8 + 20
    assert struct.unpack(">H", data[:2])[0] == len(data) - 2
    packet(board, bytes([0x43, 0, 0, 0, 0, 0, 0, 0, 100]))
    toc = atapi_data(board)
    assert toc[:4] == struct.pack(">HBB", 18, 1, 1)
    assert toc[4:12] == bytes([0, 0x14, 1, 0, 0, 0, 0, 0])
    assert toc[12:20] == bytes([0, 0x14, 0xAA, 0]) + struct.pack(">I", 40)
    packet(board, bytes([0x43, 0x02, 0, 0, 0, 0, 0, 0, 100]))  # MSF
    assert atapi_data(board)[8:12] == bytes([0, 0, 2, 0])
    packet(board, bytes([0x46, 0, 0, 0, 0, 0, 0, 0, 64]))
    cfg = atapi_data(board)
    assert cfg[6:8] == b"\x00\x08"
    packet(board, bytes([0x5A, 0, 0x05, 0, 0, 0, 0, 0, 64]))  # unknown page
    assert board.inb(STATUS) & 0x01


def test_atapi_lock_and_eject(board, cd):
    packet(board, bytes([0x1E, 0, 0, 0, 1]))
    assert board.inb(STATUS) == 0x50
    packet(board, bytes([0x1B, 0, 0, 0, 0x02]))
    assert board.inb(STATUS) & 0x01 and sense(board) == (0x05, 0x53)
    packet(board, bytes([0x1E, 0, 0, 0, 0]))
    packet(board, bytes([0x1B, 0, 0, 0, 0x02]))
    assert board.inb(STATUS) == 0x50
    # the eject opened the tray: the disc is there but cannot be read
    packet(board, bytes([0x00]))
    assert board.inb(STATUS) == 0x41 and sense(board) == (0x02, 0x3A)
    packet(board, bytes([0x1B, 0, 0, 0, 0x03]))  # LoEj + Start: load
    assert board.inb(STATUS) == 0x50
    packet(board, bytes([0x00]))  # the guest closed it itself: no unit attention
    assert board.inb(STATUS) == 0x50


def test_atapi_tray_moved_from_outside(board, cd):
    drv = cd.children["master"]
    drv.set_tray(True)
    packet(board, bytes([0x25]))  # READ CAPACITY: not ready, no medium
    assert board.inb(STATUS) == 0x41 and sense(board) == (0x02, 0x3A)
    packet(board, bytes([0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8]))  # no GESN: the guest falls back
    assert board.inb(STATUS) & 0x01 and sense(board) == (0x05, 0x20)
    drv.set_tray(False)  # closed over the disc: the guest hears of a (possibly) new one
    packet(board, bytes([0x00]))
    assert board.inb(STATUS) == 0x41 and sense(board) == (0x06, 0x28)
    packet(board, bytes([0x00]))
    assert board.inb(STATUS) == 0x50
    assert board.trays == [(drv.path, True), (drv.path, False)]  # each move, once
    drv.set_tray(False)
    assert len(board.trays) == 2
    drv.change_medium(None)  # taken out: nothing to hear of until one is put in
    packet(board, bytes([0x00]))
    assert sense(board) == (0x02, 0x3A)
    assert not drv.medium_changed


def test_atapi_read_small_byte_count_limit(board, cd):
    packet(board, bytes([0x28, 0, 0, 0, 0, 2, 0, 0, 1]), limit=1000)
    data = atapi_data(board)
    assert data == bytes([2]) * 2048


def test_atapi_read_dma(board, cd):
    ch = cd
    write_prd(board, 0x1000, [(0x20000, 2048, False), (0x30000, 2048, True)])
    ch.bm_write(4, 4, 0x1000)
    ch.bm_write(0, 1, 0x09)
    packet(board, bytes([0x28, 0, 0, 0, 0, 10, 0, 0, 2]), dma=True)
    assert irq(board) and ch.bm_read(2, 1) & 0x07 == 0x04
    assert board.inb(STATUS) == 0x50 and board.inb(NSECTOR) == 0x03
    assert board.mem.read(0x20000, 2048) == bytes([10]) * 2048
    assert board.mem.read(0x30000, 2048) == bytes([11]) * 2048


def test_ata_commands_on_a_cd_and_atapi_on_a_disk(board, cd):
    issue(board, 0x20, count=1, dev=0xE0)
    assert board.inb(STATUS) & 0x01 and (board.inb(LBAM), board.inb(LBAH)) == (0x14, 0xEB)
    issue(board, 0xCA, count=1, dev=0xE0)
    assert board.inb(ERROR) == 0x04


def test_hostile_commands_never_raise(board, disk_path, iso_path):
    """Every opcode and packet with random registers: error statuses, no exceptions."""
    import random

    rng = random.Random(1234)
    hd = open_image(str(disk_path), readonly=False, snapshot=True)
    cd = open_image(str(iso_path), readonly=True, snapshot=False)
    ch = make_channel(board, master=("disk", hd), slave=("cdrom", cd))
    ch.bm_write(4, 4, rng.randrange(1 << 32))
    for op in range(256):
        for dev in (0xA0, 0xB0):
            board.outb(CTL, SRST)
            board.outb(CTL, 0)
            for port in (FEATURE, NSECTOR, LBAL, LBAM, LBAH) * 2:
                board.outb(port, rng.randrange(256))
            board.outb(DEVICE, dev | rng.randrange(16) | rng.choice((0, 0x40)))
            board.outb(CMD, op)
            ch.bm_write(0, 1, 0x09)
            if dev == 0xB0:  # every packet opcode, through PACKET (PIO or DMA)
                board.outb(FEATURE, rng.randrange(2))
                board.outb(CMD, 0xA0)
                cdb = bytes([op]) + rng.randbytes(11)
                for i in range(0, 12, 2):
                    board.outw(DATA, int.from_bytes(cdb[i:i + 2], "little"))
            for _ in range(600):
                board.inw(DATA)
                board.outw(DATA, rng.randrange(1 << 16))
            board.inb(STATUS)
            ch.bm_write(0, 1, 0)
    hd.close()
    cd.close()


# -- state --------------------------------------------------------------------------

def copy_state(src: IdeChannel, dst: IdeChannel) -> None:
    src.sync_state()  # as a save does: the CPU may hold the PIO position
    pairs = [(src, dst)] + [(src.children[n], dst.children[n]) for n in src.children]
    for a, b in pairs:
        for f in fields_of(type(a), "state"):
            setattr(b, f.attr, getattr(a, f.attr))
        b.rebuild()


def test_state_fields_are_complete(board, disk_path, iso_path):
    hd = open_image(str(disk_path), readonly=False, snapshot=True)
    cd = open_image(str(iso_path), readonly=True, snapshot=False)
    old = make_channel(board, master=("disk", hd), slave=("cdrom", cd))
    issue(board, 0xC6, count=8)
    issue(board, 0x91, count=17, dev=0xA3)
    issue(board, 0xEF, feature=0x03, count=0x21)
    board.outb(CTL, 0)
    old.bm_write(2, 1, 0x60)
    old.bm_write(4, 4, 0x2000)
    issue(board, 0xC4, count=20, lba=40)  # READ MULTIPLE, mid-block below
    read_words(board, 300)
    fresh = type(board)()
    new = make_channel(fresh, master=("disk", hd), slave=("cdrom", cd))
    copy_state(old, new)
    assert new.irq_out == old.irq_out

    def script(b):
        seen = [b.inb(p) for p in (CTL, NSECTOR, LBAL, DEVICE)] + [b.io.read(0x1F0, 4)]
        seen.append(read_words(b, 256 * 20 - 302))
        seen.append((b.inb(STATUS), b.irqs[14].level))
        w = identify(b)
        seen.append((w[47], w[54], w[55], w[56], w[59], w[63]))
        b.outb(DEVICE, 0xB0)
        seen.append([b.inb(p) for p in (STATUS, LBAM, LBAH)])
        return seen

    assert script(board) == script(fresh)
    assert new.bm_read(0, 8) == old.bm_read(0, 8)
    assert old.bm_read(0, 8) & ~(0x04 << 16) == 0x2000 << 32 | 0x60 << 16
    hd.close()
    cd.close()


def test_state_round_trip_mid_atapi_transfer(board, iso_path):
    cd = open_image(str(iso_path), readonly=True, snapshot=False)
    old = make_channel(board, master=("cdrom", cd))
    packet(board, bytes([0x28, 0, 0, 0, 0, 3, 0, 0, 4]), limit=4096)
    board.inb(STATUS)
    read_words(board, 1000)
    fresh = type(board)()
    new = make_channel(fresh, master=("cdrom", cd))
    copy_state(old, new)

    def rest(b):
        data = read_words(b, 1048)
        return data, atapi_data(b), b.inb(STATUS), b.inb(NSECTOR)

    assert rest(board) == rest(fresh)
    cd.close()


def test_master_disk_is_backed_by_its_image(disk, disk_path):
    drv = disk.drives[0]
    assert disk.name == "ide0" and (drv.name, drv.media) == ("master", "disk")
    assert drv.backend.path == str(disk_path)
