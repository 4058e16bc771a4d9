"""IDE: ATA disks and ATAPI CD-ROMs on a legacy channel, with SFF-8038i bus-master DMA.

Ref: T13 1410D (ATA/ATAPI-6) — 6.2 status and error bits, 7 register descriptions
(Device Control nIEN/SRST/HOB, Device/Head, the 48-bit "previous content" registers),
8 command descriptions (IDENTIFY DEVICE word table 8.15, IDENTIFY PACKET DEVICE
8.16, READ/WRITE SECTORS/MULTIPLE/DMA and their EXT forms, SET FEATURES, SET MULTIPLE
MODE, FLUSH CACHE, INITIALIZE DEVICE PARAMETERS, EXECUTE DEVICE DIAGNOSTIC, PACKET),
9 protocols (PIO data-in/out, DMA, PACKET, signatures after reset, 9.12);
SFF-8038i rev 1.0 (Bus Master Programming Interface for IDE ATA Controllers) — 2
register layout, 3 Physical Region Descriptor table, the status bit table; the
PIIX3 implements it behind BAR4. ATAPI commands follow MMC-2/SPC (sense keys, INQUIRY,
READ CAPACITY, READ(10)/(12), MODE SENSE(10) page 2Ah, READ TOC format 0/1, GET
CONFIGURATION).

Modelling choices:
- Commands complete instantly: BSY is never seen set; DRQ is set while data remain in
  the current DRQ block; the interrupt comes at the start of each PIO data-in block,
  after each PIO data-out block and at the end of non-data and DMA commands, as 9.x.
- Each drive keeps its own copy of the taskfile (writes go to both, as on the cable);
  the Device/Head register, Device Control and the bus master live in the channel.
  Like QEMU, a selected drive that is absent reads 0 in every taskfile register, a
  channel with no drive at all reads 0 too, and commands to an absent drive are dropped.
- An 8-bit access to the data port reads 0xFF and writes are dropped (as QEMU).
- With nIEN set an interrupt is not latched at all (QEMU's behaviour; guests that
  poll with nIEN set see no stale interrupt when they clear it).
- A DMA command runs when it has been issued and the engine started (either order).
  A guest address outside RAM sets the bus-master error bit and ends the command with
  ABRT; a PRD table shorter than the transfer ends it with Active and Interrupt clear
  (the spec's "PRD smaller than transfer" case).
- PIO data live in ``io_buffer`` (one DRQ block, or a whole ATAPI reply); the data
  port serves words from it with a precompiled ``struct`` — the hot path of any boot.
- A guest eject (START STOP UNIT) is accepted but does not drop the medium: host images
  are bound by the board, which calls ``IdeDrive.change_medium``.
"""

from __future__ import annotations

import struct

from emu.devices.base import Board, Device
from emu.host.block import BlockBackend
from emu.qom import Object, derived, link, prop, register_type, state

SECTOR = 512
CD_SECTOR = 2048
MAX_MULT_SECTORS = 16
BUFFER_CAP = 65536
PRD_BATCH = 512  # bytes of PRD entries read at once
MAX_PRD_ENTRIES = 8192  # a table may not cross a 64 KiB boundary: 8192 entries at most

# Status (6.2) and error bits.
BSY, DRDY, DF, DSC, DRQ, ERR = 0x80, 0x40, 0x20, 0x10, 0x08, 0x01
ABRT, IDNF, UNC = 0x04, 0x10, 0x40
# Device Control.
NIEN, SRST, HOB = 0x02, 0x04, 0x80
# Device/Head.
DEV_LBA, DEV_DEV = 0x40, 0x10
# ATAPI interrupt reason (in the sector count register).
IR_COD, IR_IO = 0x01, 0x02

# Taskfile register offsets from iobase.
R_DATA, R_FEATURE, R_NSECTOR, R_LBAL, R_LBAM, R_LBAH, R_DEVICE, R_COMMAND = range(8)
R_ERROR, R_STATUS = R_FEATURE, R_COMMAND

# Bus master (SFF-8038i 2).
BM_START, BM_READ = 0x01, 0x08  # BM_READ: the bus master writes memory (a device read)
BM_ACTIVE, BM_ERROR, BM_INT, BM_CAPABLE = 0x01, 0x02, 0x04, 0x60
PRD_EOT = 0x8000

# Transfer phases of a drive.
PH_IDLE, PH_ATA_IN, PH_ATA_OUT, PH_PACKET, PH_ATAPI_IN, PH_DMA = range(6)

# SCSI sense keys and additional sense codes used here.
NO_SENSE, NOT_READY, ILLEGAL_REQUEST, UNIT_ATTENTION = 0x00, 0x02, 0x05, 0x06
ASC_INVALID_OPCODE, ASC_LBA_OUT_OF_RANGE, ASC_INVALID_FIELD = 0x20, 0x21, 0x24
ASC_MEDIUM_CHANGED, ASC_SAVING_UNSUPPORTED, ASC_NO_MEDIUM = 0x28, 0x39, 0x3A
ASC_REMOVAL_PREVENTED = 0x53

_UNPACK = {2: struct.Struct("<H").unpack_from, 4: struct.Struct("<I").unpack_from}


def ata_string(text: str, nbytes: int) -> bytes:
    """An IDENTIFY string field: space padded, first character in each word's high byte."""
    raw = text.encode("ascii", "replace")[:nbytes].ljust(nbytes, b" ")
    return bytes(raw[i ^ 1] for i in range(nbytes))


def default_geometry(sectors: int) -> tuple[int, int, int]:
    """Cylinders, heads, sectors per track as QEMU guesses them without a partition hint."""
    cyls = min(max(sectors // (16 * 63), 2), 16383)
    return cyls, 16, 63


@register_type("ide-drive")
class IdeDrive(Device):
    """One ATA disk or ATAPI CD-ROM. ``backend`` is bound by the board before realize."""

    STATE_VERSION = 2  # 2: tray_open

    media = prop.str(max_len=8, reset="disk", doc="disk or cdrom")
    model = prop.str(max_len=40, reset="", doc="IDENTIFY model string; empty for a default")
    serial = prop.str(max_len=20, reset="", doc="IDENTIFY serial string; empty for a default")

    feature = state.u8(reset=0, doc="Features register")
    nsector = state.u8(reset=0, doc="Sector Count register")
    lbal = state.u8(reset=0, doc="LBA Low (sector number) register")
    lbam = state.u8(reset=0, doc="LBA Mid (cylinder low) register")
    lbah = state.u8(reset=0, doc="LBA High (cylinder high) register")
    hob_feature = state.u8(reset=0, doc="previous Features value (48-bit commands)")
    hob_nsector = state.u8(reset=0, doc="previous Sector Count value")
    hob_lbal = state.u8(reset=0, doc="previous LBA Low value")
    hob_lbam = state.u8(reset=0, doc="previous LBA Mid value")
    hob_lbah = state.u8(reset=0, doc="previous LBA High value")
    status = state.u8(reset=DRDY | DSC, doc="Status register")
    error = state.u8(reset=0x01, doc="Error register (01h: diagnostics passed)")
    mult_sectors = state.u8(reset=MAX_MULT_SECTORS, doc="SET MULTIPLE block size; 0 = off")
    cur_heads = state.u8(reset=0, doc="CHS translation heads (INITIALIZE DEVICE PARAMETERS); "
                         "0 = default geometry")
    cur_sectors = state.u8(reset=0, doc="CHS translation sectors per track; 0 = default")
    xfer_mode = state.u8(reset=0, doc="transfer mode set by SET FEATURES 03h; 0 = default")
    write_cache = state.bool(reset=True, doc="volatile write cache enabled (SET FEATURES 02h)")
    phase = state.u8(reset=PH_IDLE, doc="0 idle, 1 ATA data-in, 2 ATA data-out, "
                     "3 ATAPI packet, 4 ATAPI data-in, 5 waiting for the DMA engine")
    command = state.u8(reset=0, doc="command in progress")
    dma_write = state.bool(reset=False, doc="pending DMA moves memory to the drive")
    io_buffer = state.bytes(max_len=BUFFER_CAP, reset=b"", doc="PIO data: the current "
                            "block, a partial sector being written, or an ATAPI reply")
    io_pos = state.u32(reset=0, doc="next byte of io_buffer the data port moves")
    io_end = state.u32(reset=0, doc="end of the current DRQ block in io_buffer")
    xfer_offset = state.u64(reset=0, doc="image byte offset of the data not yet buffered")
    xfer_left = state.u64(reset=0, doc="image bytes of the command not yet buffered/written")
    block_bytes = state.u32(reset=0, doc="bytes per DRQ block (ATA) or byte count limit "
                            "(ATAPI)")
    block_left = state.u32(reset=0, doc="bytes left in the current PIO data-out block")
    packet_dma = state.bool(reset=False, doc="the ATAPI packet asked for DMA")
    medium_changed = state.bool(reset=False, doc="unit attention pending (ATAPI)")
    medium_locked = state.bool(reset=False, doc="PREVENT MEDIUM REMOVAL in force (ATAPI)")
    tray_open = state.bool(reset=False, doc="the tray is open (ATAPI): a medium in it "
                           "cannot be read")
    sense_key = state.u8(reset=NO_SENSE, doc="ATAPI sense key for REQUEST SENSE")
    asc = state.u8(reset=0, doc="ATAPI additional sense code")

    backend = link("block", doc="the image in the drive; None: no medium")

    def __init__(self, name: str, parent: Object | None = None, **props: object) -> None:
        super().__init__(name, parent, **props)
        if self.media not in ("disk", "cdrom"):
            raise ValueError(f"{self.path}: media must be disk or cdrom, not {self.media!r}")

    @property
    def is_cd(self) -> bool:
        return self.media == "cdrom"

    @property
    def unit(self) -> int:
        return 1 if self.name == "slave" else 0

    # -- life cycle -------------------------------------------------------------------
    def realize(self, board: Board) -> None:  # type: ignore[override]
        if not self.is_cd and self.backend is None:
            raise ValueError(f"{self.path}: a disk needs an image")
        super().realize(board)
        self.channel: IdeChannel = self.parent  # type: ignore[assignment]

    def reset_state(self) -> None:
        if self.realized:  # a transfer the CPU was serving ends here
            self.board.pio_window_take(self.channel.iobase)
        super().reset_state()
        self._signature()  # power-on registers hold the device signature (9.1)

    def change_medium(self, backend: BlockBackend | None) -> None:
        """The board put ``backend`` in the tray (None: took the medium out); the guest
        sees a unit attention once the tray is closed with a medium in it."""
        if not self.is_cd:
            raise ValueError(f"{self.path}: only a cdrom has removable media")
        self.backend = backend
        self.medium_changed = backend is not None

    def set_tray(self, open_: bool) -> None:
        """Open or close the tray from outside (the monitor); the guest's lock is for
        the caller to respect. Closing it over a medium is a medium change (MMC-2 4.1.6:
        the unit attention a newly loaded medium gives)."""
        if not self.is_cd:
            raise ValueError(f"{self.path}: only a cdrom has a tray")
        if self.tray_open and not open_ and self.backend is not None:
            self.medium_changed = True
        if self.tray_open != open_:
            self.tray_open = open_
            self.board.tray_moved(self, open_)

    @property
    def has_medium(self) -> bool:
        """A medium the drive can read: in the tray, and the tray closed."""
        return self.backend is not None and not self.tray_open

    # -- geometry ---------------------------------------------------------------------
    @property
    def total_sectors(self) -> int:
        if self.backend is None:
            return 0
        return self.backend.size // (CD_SECTOR if self.is_cd else SECTOR)

    def _translation(self) -> tuple[int, int, int]:
        cyls, heads, secs = default_geometry(self.total_sectors)
        if self.cur_heads and self.cur_sectors:
            heads, secs = self.cur_heads, self.cur_sectors
            cyls = min(min(self.total_sectors, 16514064) // (heads * secs), 65535)
        return cyls, heads, secs

    # -- taskfile ---------------------------------------------------------------------
    def write_register(self, reg: int, value: int) -> None:
        """A taskfile write: the 48-bit registers keep the previous value (7.x)."""
        name = _TASKFILE[reg]
        setattr(self, "hob_" + name, getattr(self, name))
        setattr(self, name, value)

    def read_register(self, reg: int, hob: bool) -> int:
        if reg == R_ERROR:
            return self.hob_feature if hob else self.error
        name = _TASKFILE[reg]
        return getattr(self, "hob_" + name if hob else name)

    def _signature(self) -> None:
        """Registers after a reset or diagnostic (9.12): the device kind in LBA Mid/High."""
        self.nsector, self.lbal = 1, 1
        self.lbam, self.lbah = (0x14, 0xEB) if self.is_cd else (0x00, 0x00)
        self.error = 0x01

    def soft_reset(self, asserted: bool) -> None:
        """SRST: busy while asserted; the signature when released."""
        self._stop_transfer()
        if asserted:
            self.status, self.error = BSY | DSC, 0x01
            return
        self._signature()
        self.status = 0 if self.is_cd else DRDY | DSC  # a packet device clears DRDY

    def _stop_transfer(self) -> None:
        self.phase, self.command = PH_IDLE, 0
        self.io_buffer, self.io_pos, self.io_end = b"", 0, 0
        self.xfer_left = self.block_left = 0

    # -- completion -------------------------------------------------------------------
    def _complete(self, irq: bool = True) -> None:
        self._stop_transfer()
        self.status = DRDY | DSC
        if irq:
            self.channel.raise_irq()

    def _abort(self, error: int = ABRT) -> None:
        self._stop_transfer()
        self.status, self.error = DRDY | ERR, error
        self.channel.raise_irq()

    # -- command dispatch -------------------------------------------------------------
    def execute(self, cmd: int) -> None:
        """The guest wrote the Command register with this drive selected."""
        if self.status & (BSY | DRQ) and not (cmd == 0x08 and self.is_cd):
            return  # only DEVICE RESET is accepted mid-command (QEMU does the same)
        table = _ATAPI_COMMANDS if self.is_cd else _ATA_COMMANDS
        handler = table.get(cmd)
        if handler is None:
            self._abort()
            return
        self.error = 0
        self.command = cmd
        handler(self)

    def _address(self, lba48: bool) -> tuple[int, int] | None:
        """(first sector, count) of a read/write command, None if CHS is out of range."""
        dev = self.channel.select
        if lba48:
            count = (self.hob_nsector << 8 | self.nsector) or 65536
            lba = (self.hob_lbah << 40 | self.hob_lbam << 32 | self.hob_lbal << 24
                   | self.lbah << 16 | self.lbam << 8 | self.lbal)
            return lba, count
        count = self.nsector or 256
        if dev & DEV_LBA:
            return (dev & 0x0F) << 24 | self.lbah << 16 | self.lbam << 8 | self.lbal, count
        cyls, heads, secs = self._translation()
        cyl, head, sec = self.lbah << 8 | self.lbam, dev & 0x0F, self.lbal
        if not (cyl < cyls and head < heads and 1 <= sec <= secs):
            return None
        return (cyl * heads + head) * secs + sec - 1, count

    def _checked_range(self, lba48: bool) -> tuple[int, int] | None:
        """The command's sectors, or None after aborting it with IDNF."""
        addr = self._address(lba48)
        if addr is None or addr[0] + addr[1] > self.total_sectors:
            self._abort(IDNF)
            return None
        return addr

    # -- ATA: PIO data-in ---------------------------------------------------------------
    def _start_pio(self, lba48: bool, multiple: bool, write: bool) -> bool:
        """Check a PIO command's range and set up its transfer; False when refused (the
        status and error registers then say why)."""
        if (multiple and not self.mult_sectors) or (write and self.backend.readonly):  # type: ignore
            self._abort()
            return False
        addr = self._checked_range(lba48)
        if addr is None:
            return False
        lba, count = addr
        self.xfer_offset, self.xfer_left = lba * SECTOR, count * SECTOR
        self.block_bytes = (self.mult_sectors if multiple else 1) * SECTOR
        return True

    def _cmd_read_pio(self, lba48: bool = False, multiple: bool = False) -> None:
        if self._start_pio(lba48, multiple, write=False):
            self.phase = PH_ATA_IN
            self._ata_next_block()

    def _ata_next_block(self) -> None:
        n = min(self.block_bytes, self.xfer_left)
        try:
            data = self.backend.read(self.xfer_offset, n)  # type: ignore[union-attr]
        except (OSError, ValueError):
            self._abort(UNC | ABRT)
            return
        self.io_buffer, self.io_pos, self.io_end = data, 0, n
        self.xfer_offset += n
        self.xfer_left -= n
        self.status = DRDY | DSC | DRQ
        self.channel.raise_irq()

    def _reply(self, data: bytes) -> None:
        """A one-block PIO data-in reply (IDENTIFY)."""
        self.phase = PH_ATA_IN
        self.io_buffer, self.io_pos, self.io_end = data, 0, len(data)
        self.xfer_left = 0
        self.status = DRDY | DSC | DRQ
        self.channel.raise_irq()

    # -- ATA: PIO data-out --------------------------------------------------------------
    def _cmd_write_pio(self, lba48: bool = False, multiple: bool = False) -> None:
        if not self._start_pio(lba48, multiple, write=True):
            return
        self.block_left = min(self.block_bytes, self.xfer_left)
        self.io_buffer, self.io_pos, self.io_end = b"", 0, 0
        self.phase = PH_ATA_OUT
        self.status = DRDY | DSC | DRQ  # no interrupt before the first block (9.8)

    def _sector_written(self) -> None:
        try:
            self.backend.write(self.xfer_offset, self.io_buffer)  # type: ignore[union-attr]
            if self.xfer_left == SECTOR and not self.write_cache:
                self.backend.flush()  # type: ignore[union-attr]
        except (OSError, ValueError):
            self._abort()
            return
        self.io_buffer = b""
        self.xfer_offset += SECTOR
        self.xfer_left -= SECTOR
        self.block_left -= SECTOR
        if self.block_left:
            return
        if not self.xfer_left:
            self._complete()
            return
        self.block_left = min(self.block_bytes, self.xfer_left)
        self.channel.raise_irq()

    # -- the data port ----------------------------------------------------------------
    def pio_read(self, size: int) -> int:
        """A 16/32-bit read of the data port: the hot path of every disk boot.

        It reads and writes the state fields' storage (the instance dict) directly:
        going through the field descriptors would triple the cost of a word."""
        d = self.__dict__
        pos = d["io_pos"]
        end = pos + size
        if end > d["io_end"]:
            return self._pio_read_tail(size)
        d["io_pos"] = end
        value = _UNPACK[size](d["io_buffer"], pos)[0]
        if end == d["io_end"]:
            self._end_of_block()
        return value

    def _pio_read_tail(self, size: int) -> int:
        """A read past the block (an odd ATAPI length, or no DRQ): zero-padded."""
        if self.io_pos >= self.io_end:
            return (1 << (8 * size)) - 1 if self.phase == PH_IDLE else 0
        chunk = self.io_buffer[self.io_pos:self.io_end]
        self.io_pos = self.io_end
        value = int.from_bytes(chunk, "little")
        self._end_of_block()
        return value

    def _end_of_block(self) -> None:
        if self.phase == PH_ATA_IN:
            if self.xfer_left:
                self._ata_next_block()
            else:
                self._stop_transfer()  # no interrupt after the last data-in block (9.7)
                self.status = DRDY | DSC
        elif self.phase == PH_ATAPI_IN:
            self._atapi_next_block()

    def pio_write(self, size: int, value: int) -> None:
        phase = self.phase
        if phase == PH_ATA_OUT:
            # bytes past the sector's end are outside the DRQ block: the drive drops them
            room = SECTOR - len(self.io_buffer)
            self.io_buffer += value.to_bytes(size, "little")[:room]
            if len(self.io_buffer) >= SECTOR:
                self._sector_written()
        elif phase == PH_PACKET:
            self.io_buffer += value.to_bytes(size, "little")
            if len(self.io_buffer) >= 12:
                self._atapi_execute(self.io_buffer[:12])

    # -- ATA: DMA ---------------------------------------------------------------------
    def _cmd_dma(self, lba48: bool = False, write: bool = False) -> None:
        if write and self.backend.readonly:  # type: ignore[union-attr]
            self._abort()
            return
        addr = self._checked_range(lba48)
        if addr is None:
            return
        lba, count = addr
        self.xfer_offset, self.xfer_left = lba * SECTOR, count * SECTOR
        self.io_buffer, self.io_pos, self.io_end = b"", 0, 0
        self._start_dma(write)

    def _start_dma(self, write: bool) -> None:
        self.dma_write = write
        self.phase = PH_DMA
        self.status = DRDY | DSC | DRQ
        self.channel.dma_kick()

    def dma_source(self, n: int) -> bytes:
        """The next ``n`` bytes of a device-to-memory DMA: reply first, then the image."""
        out = b""
        if self.io_pos < len(self.io_buffer):
            out = self.io_buffer[self.io_pos:self.io_pos + n]
            self.io_pos += len(out)
        if len(out) < n:
            k = n - len(out)
            out += self.backend.read(self.xfer_offset, k)  # type: ignore[union-attr]
            self.xfer_offset += k
            self.xfer_left -= k
        return out

    def dma_sink(self, data: bytes) -> None:
        self.backend.write(self.xfer_offset, data)  # type: ignore[union-attr]
        self.xfer_offset += len(data)
        self.xfer_left -= len(data)

    @property
    def dma_bytes_left(self) -> int:
        return len(self.io_buffer) - self.io_pos + self.xfer_left

    def dma_done(self, error: int) -> None:
        """The engine finished (error 0) or failed (an ATA error code) this command."""
        if error:
            if self.is_cd:
                self._atapi_error(ILLEGAL_REQUEST if error == ABRT else NOT_READY, 0)
                self.error |= error
            else:
                self._abort(error)
            return
        if self.dma_write and not self.write_cache:
            self.backend.flush()  # type: ignore[union-attr]
        if self.is_cd:
            self.nsector = IR_IO | IR_COD
        self._complete()

    def dma_short(self) -> None:
        """The PRD table ran out before the data: the command ends without interrupt."""
        self._complete(irq=False)

    # -- ATA: other commands ----------------------------------------------------------
    def _cmd_identify(self) -> None:
        self._reply(self._identify_words())

    def _cmd_identify_on_cd(self) -> None:
        """IDENTIFY DEVICE / READ SECTORS to a packet device: abort with its signature."""
        self._signature()
        self._abort()

    def _cmd_identify_packet(self) -> None:
        self._reply(self._identify_packet_words())

    def _cmd_verify(self, lba48: bool = False) -> None:
        if self._checked_range(lba48) is not None:
            self._complete()

    def _cmd_set_multiple(self) -> None:
        n = self.nsector
        if n > MAX_MULT_SECTORS or n & (n - 1):
            self._abort()
            return
        self.mult_sectors = n
        self._complete()

    def _cmd_set_features(self) -> None:
        sub = self.feature
        if sub == 0x03:  # set transfer mode from the sector count
            mode = self.nsector
            kind, n = mode >> 3, mode & 7
            if not ((kind == 0 and n <= 1) or (kind == 1 and n <= 4) or (kind == 4 and n <= 2)):
                self._abort()  # PIO default/0-4 and multiword DMA 0-2 only; no UDMA
                return
            self.xfer_mode = mode
        elif sub in (0x02, 0x82) and not self.is_cd:
            self.write_cache = sub == 0x02
        elif sub not in (0x55, 0xAA, 0x66, 0xCC):  # look-ahead, revert to defaults: no-ops
            self._abort()
            return
        self._complete()

    def _cmd_flush(self) -> None:
        try:
            self.backend.flush()  # type: ignore[union-attr]
        except OSError:
            self._abort()
            return
        self._complete()

    def _cmd_init_params(self) -> None:
        if not self.nsector:
            self._abort()
            return
        self.cur_sectors, self.cur_heads = self.nsector, (self.channel.select & 0x0F) + 1
        self._complete()

    def _cmd_diagnostic(self) -> None:
        self.channel.diagnostic()

    def diagnostic_result(self) -> None:
        self._stop_transfer()
        self._signature()
        self.status = 0 if self.is_cd else DRDY | DSC

    def _cmd_check_power(self) -> None:
        self.nsector = 0xFF  # active or idle
        self._complete()

    def _cmd_nodata(self) -> None:
        self._complete()

    def _cmd_device_reset(self) -> None:
        self.soft_reset(False)

    # -- IDENTIFY ---------------------------------------------------------------------
    def _strings(self, words: list[int]) -> None:
        default_model = "PYEMU DVD-ROM" if self.is_cd else "PYEMU HARDDISK"
        serial = self.serial or f"PY0000{self.channel.irq:02d}{self.unit}"
        text = (ata_string(serial, 20) + ata_string("0.1", 8)
                + ata_string(self.model or default_model, 40))
        words[10:20] = struct.unpack("<10H", text[:20])
        words[23:47] = struct.unpack("<24H", text[20:])

    def _identify_words(self) -> bytes:
        w = [0] * 256
        total = self.total_sectors
        cyls, heads, secs = default_geometry(total)
        ccyls, cheads, csecs = self._translation()
        w[0] = 0x0040  # fixed device
        w[1], w[3], w[6] = cyls, heads, secs
        self._strings(w)
        w[47] = 0x8000 | MAX_MULT_SECTORS
        w[49] = 0x0B00  # IORDY, LBA, DMA
        w[50] = 0x4000
        w[51] = w[52] = 0x0200
        w[53] = 0x0003  # words 54-58 and 64-70 valid
        w[54], w[55], w[56] = ccyls, cheads, csecs
        cur = ccyls * cheads * csecs
        w[57], w[58] = cur & 0xFFFF, cur >> 16
        w[59] = (0x100 | self.mult_sectors) if self.mult_sectors else 0
        lba28 = min(total, 0x0FFFFFFF)
        w[60], w[61] = lba28 & 0xFFFF, lba28 >> 16
        w[63] = 0x0007 | self._mdma_active()
        w[64] = 0x0003  # PIO 3 and 4
        w[65] = w[66] = w[67] = w[68] = 120
        w[80] = 0x007E  # ATA-1 to ATA-6
        w[81] = 0x0000  # minor version not reported
        w[82] = 0x4020  # write cache; bit 14 set as the spec asks
        w[83] = 0x7400  # FLUSH CACHE EXT, FLUSH CACHE, 48-bit address
        w[84] = 0x4000
        w[85] = 0x4000 | (0x20 if self.write_cache else 0)
        w[86] = 0x3400
        w[87] = 0x4000
        w[93] = 0x6000 | (0x0100 if self.unit else 0x0001)  # 93: hardware reset result
        w[100:104] = [(total >> s) & 0xFFFF for s in (0, 16, 32, 48)]
        return self._pack_identify(w)

    def _identify_packet_words(self) -> bytes:
        w = [0] * 256
        w[0] = 0x85C0  # ATAPI, CD-ROM, removable, 50 us DRQ, 12-byte packets
        self._strings(w)
        w[49] = 0x0B00
        w[53] = 0x0003
        w[63] = 0x0007 | self._mdma_active()
        w[64] = 0x0003
        w[65] = w[66] = w[68] = 180
        w[67] = 300
        w[80] = 0x001E  # ATA/ATAPI-1 to 4
        w[82] = 0x4010  # PACKET feature set
        w[83] = w[84] = w[87] = 0x4000
        w[85] = 0x0010
        w[93] = 0x6000 | (0x0100 if self.unit else 0x0001)
        return self._pack_identify(w)

    def _mdma_active(self) -> int:
        return (1 << (8 + (self.xfer_mode & 7))) if self.xfer_mode >> 3 == 4 else 0

    @staticmethod
    def _pack_identify(w: list[int]) -> bytes:
        w[255] = 0x00A5  # integrity word: signature, then the checksum byte
        data = struct.pack("<256H", *w)
        w[255] |= ((-sum(data[:511])) & 0xFF) << 8
        return struct.pack("<256H", *w)

    # -- ATAPI ------------------------------------------------------------------------
    def _cmd_packet(self) -> None:
        if self.feature & 0x02:  # overlapped commands are not supported
            self._abort()
            return
        self.packet_dma = bool(self.feature & 0x01)
        limit = self.lbah << 8 | self.lbam
        self.block_bytes = 0xFFFE if limit in (0, 0xFFFF) else limit
        self.io_buffer, self.io_pos, self.io_end = b"", 0, 0
        self.phase = PH_PACKET
        self.nsector = IR_COD
        self.status = DRDY | DSC | DRQ  # no interrupt before the packet (9.10)

    def _atapi_error(self, key: int, asc: int) -> None:
        self._stop_transfer()
        self.sense_key, self.asc = key, asc
        self.status, self.error = DRDY | ERR, key << 4
        self.nsector = IR_IO | IR_COD
        self.channel.raise_irq()

    def _atapi_execute(self, cdb: bytes) -> None:
        op = cdb[0]
        handler = _PACKET_COMMANDS.get(op)
        self.io_buffer, self.io_pos = b"", 0
        if handler is None:
            self._atapi_error(ILLEGAL_REQUEST, ASC_INVALID_OPCODE)
            return
        if op not in (0x03, 0x12, 0x46):  # these report without a unit attention
            if self.medium_changed:
                self.medium_changed = False
                self._atapi_error(UNIT_ATTENTION, ASC_MEDIUM_CHANGED)
                return
            self.sense_key, self.asc = NO_SENSE, 0
            if op in _NEED_MEDIUM and not self.has_medium:
                self._atapi_error(NOT_READY, ASC_NO_MEDIUM)
                return
        handler(self, cdb)

    def _atapi_reply(self, data: bytes, alloc: int) -> None:
        data = data[:min(alloc, BUFFER_CAP)]
        if not data:
            self._atapi_done()
            return
        self.io_buffer, self.io_pos, self.io_end = data, 0, 0
        self.xfer_left = 0
        self._atapi_data_phase()

    def _atapi_data_phase(self) -> None:
        if self.packet_dma:
            self._start_dma(write=False)
            return
        self.phase = PH_ATAPI_IN
        self._atapi_next_block()

    def _atapi_next_block(self) -> None:
        limit = self.block_bytes
        if self.io_end < len(self.io_buffer):
            n = min(limit, len(self.io_buffer) - self.io_end)
            if n < len(self.io_buffer) - self.io_end:
                n = max(n & ~1, 2)  # more follows: keep blocks an even length
            self.io_end += n
        elif self.xfer_left:
            n = min(self.xfer_left, limit if limit < CD_SECTOR else limit // CD_SECTOR
                    * CD_SECTOR)
            if n < self.xfer_left:
                n = max(n & ~1, 2)
            try:
                data = self.backend.read(self.xfer_offset, n)  # type: ignore[union-attr]
            except (OSError, ValueError):
                self._atapi_error(NOT_READY, ASC_NO_MEDIUM)
                return
            self.io_buffer, self.io_pos, self.io_end = data, 0, n
            self.xfer_offset += n
            self.xfer_left -= n
        else:
            self._atapi_done()
            return
        self.lbam, self.lbah = n & 0xFF, n >> 8
        self.nsector = IR_IO
        self.status = DRDY | DSC | DRQ
        self.channel.raise_irq()

    def _atapi_done(self) -> None:
        self.nsector = IR_IO | IR_COD
        self._complete()

    def _pk_test_unit_ready(self, cdb: bytes) -> None:
        self._atapi_done()

    def _pk_request_sense(self, cdb: bytes) -> None:
        if self.medium_changed:  # a pending unit attention is what the sense reports
            self.medium_changed = False
            self.sense_key, self.asc = UNIT_ATTENTION, ASC_MEDIUM_CHANGED
        sense = bytearray(18)
        sense[0], sense[2], sense[7], sense[12] = 0x70, self.sense_key, 10, self.asc
        self.sense_key, self.asc = NO_SENSE, 0
        self._atapi_reply(bytes(sense), cdb[4])

    def _pk_inquiry(self, cdb: bytes) -> None:
        data = (bytes([0x05, 0x80, 0x00, 0x21, 31, 0, 0, 0]) + b"PYEMU   "
                + (self.model or "PYEMU DVD-ROM").encode("ascii", "replace")[:16].ljust(16)
                + b"0.1 ")
        self._atapi_reply(data, cdb[3] << 8 | cdb[4])

    def _pk_read_capacity(self, cdb: bytes) -> None:
        last = (self.total_sectors - 1) & 0xFFFFFFFF  # an empty image reports all ones
        self._atapi_reply(struct.pack(">II", last, CD_SECTOR), 8)

    def _pk_read(self, cdb: bytes) -> None:
        lba = int.from_bytes(cdb[2:6], "big")
        count = int.from_bytes(cdb[7:9] if cdb[0] == 0x28 else cdb[6:10], "big")
        if lba + count > self.total_sectors:
            self._atapi_error(ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE)
            return
        if not count:
            self._atapi_done()
            return
        self.io_buffer, self.io_pos, self.io_end = b"", 0, 0
        self.xfer_offset, self.xfer_left = lba * CD_SECTOR, count * CD_SECTOR
        self._atapi_data_phase()

    def _pk_mode_sense(self, cdb: bytes) -> None:
        control, page = cdb[2] >> 6, cdb[2] & 0x3F
        if control == 3:
            self._atapi_error(ILLEGAL_REQUEST, ASC_SAVING_UNSUPPORTED)
            return
        pages = {0x01: bytes([0x01, 0x06, 0, 5, 0, 0, 0, 0]),
                 0x2A: self._capabilities_page()}
        if page == 0x3F:
            body = pages[0x01] + pages[0x2A]
        elif page in pages:
            body = pages[page]
        else:
            self._atapi_error(ILLEGAL_REQUEST, ASC_INVALID_FIELD)
            return
        medium = 0x01 if self.has_medium else 0x70  # data CD, or no disc
        header = struct.pack(">HBB4x", 6 + len(body), medium, 0)
        self._atapi_reply(header + body, cdb[7] << 8 | cdb[8])

    def _capabilities_page(self) -> bytes:
        page = bytearray(20)
        page[0], page[1] = 0x2A, 18
        page[2] = 0x03  # reads CD-R and CD-RW
        page[4] = 0x71  # audio play, composite, digital ports, multisession
        page[5] = 0x1B  # CD-DA, accurate stream, read R-W, ...
        page[6] = 0x29 | (0x02 if self.medium_locked else 0)  # tray, eject, lock
        struct.pack_into(">HHHH", page, 8, 706 * 4, 256, 512, 706 * 4)
        return bytes(page)

    def _pk_get_configuration(self, cdb: bytes) -> None:
        profile = 0x0008 if self.has_medium else 0
        feature0 = struct.pack(">HBBHBx", 0x0000, 0x03, 4, 0x0008, 1 if profile else 0)
        header = struct.pack(">IHH", 4 + len(feature0), 0, profile)
        self._atapi_reply(header + feature0, cdb[7] << 8 | cdb[8])

    def _pk_read_toc(self, cdb: bytes) -> None:
        msf, fmt, start = bool(cdb[1] & 0x02), cdb[2] & 0x0F, cdb[6]
        if fmt == 0 and cdb[9] >> 6:
            fmt = cdb[9] >> 6  # the SFF-8020 spelling of the format
        alloc = cdb[7] << 8 | cdb[8]
        if fmt == 0 and (start <= 1 or start == 0xAA):
            tracks = [] if start == 0xAA else [(0x14, 1, 0)]
            tracks.append((0x14, 0xAA, self.total_sectors))
            body = b"".join(struct.pack(">xBBx", ctl, trk) + self._toc_addr(lba, msf)
                            for ctl, trk, lba in tracks)
        elif fmt == 1:
            body = struct.pack(">xBBx", 0x14, 1) + self._toc_addr(0, msf)
        else:
            self._atapi_error(ILLEGAL_REQUEST, ASC_INVALID_FIELD)
            return
        self._atapi_reply(struct.pack(">HBB", 2 + len(body), 1, 1) + body, alloc)

    @staticmethod
    def _toc_addr(lba: int, msf: bool) -> bytes:
        if not msf:
            return struct.pack(">I", lba & 0xFFFFFFFF)
        frames = lba + 150  # the 2-second pregap
        return bytes([0, min(frames // (75 * 60), 255), frames // 75 % 60, frames % 75])

    def _pk_start_stop(self, cdb: bytes) -> None:
        """START STOP UNIT: LoEj with Start clear ejects (opens the tray), with Start
        set loads (closes it); an eject while the medium is locked is refused."""
        loej, start = cdb[4] & 0x02, cdb[4] & 0x01
        if loej and not start and self.medium_locked and not self.tray_open:
            self._atapi_error(ILLEGAL_REQUEST, ASC_REMOVAL_PREVENTED)
            return
        if loej:
            self.set_tray(not start)
            self.medium_changed = False  # the guest moved the tray itself: no surprise
        self._atapi_done()

    def _pk_prevent_allow(self, cdb: bytes) -> None:
        self.medium_locked = bool(cdb[4] & 0x01)
        self._atapi_done()


_TASKFILE = {R_FEATURE: "feature", R_NSECTOR: "nsector", R_LBAL: "lbal", R_LBAM: "lbam",
             R_LBAH: "lbah"}

_D = IdeDrive
_ATA_COMMANDS = {
    0x20: _D._cmd_read_pio, 0x21: _D._cmd_read_pio,
    0x24: lambda d: d._cmd_read_pio(lba48=True),
    0xC4: lambda d: d._cmd_read_pio(multiple=True),
    0x29: lambda d: d._cmd_read_pio(lba48=True, multiple=True),
    0x30: _D._cmd_write_pio, 0x31: _D._cmd_write_pio,
    0x34: lambda d: d._cmd_write_pio(lba48=True),
    0xC5: lambda d: d._cmd_write_pio(multiple=True),
    0x39: lambda d: d._cmd_write_pio(lba48=True, multiple=True),
    0xC8: _D._cmd_dma, 0xC9: _D._cmd_dma,
    0x25: lambda d: d._cmd_dma(lba48=True),
    0xCA: lambda d: d._cmd_dma(write=True), 0xCB: lambda d: d._cmd_dma(write=True),
    0x35: lambda d: d._cmd_dma(lba48=True, write=True),
    0x40: _D._cmd_verify, 0x41: _D._cmd_verify,
    0x42: lambda d: d._cmd_verify(lba48=True),
    0xEC: _D._cmd_identify,
    0xC6: _D._cmd_set_multiple,
    0xEF: _D._cmd_set_features,
    0xE7: _D._cmd_flush, 0xEA: _D._cmd_flush,
    0x91: _D._cmd_init_params,
    0x90: _D._cmd_diagnostic,
    0xE5: _D._cmd_check_power, 0x98: _D._cmd_check_power,
    0x70: _D._cmd_nodata,  # SEEK
    **{op: _D._cmd_nodata for op in range(0x10, 0x20)},  # RECALIBRATE
    # standby/idle (immediate), sleep: no power states to model
    **{op: _D._cmd_nodata for op in (0xE0, 0xE1, 0xE2, 0xE3, 0xE6, 0x94, 0x95, 0x96, 0x97,
                                     0x99)},
}
_ATAPI_COMMANDS = {
    0xA0: _D._cmd_packet,
    0xA1: _D._cmd_identify_packet,
    0x08: _D._cmd_device_reset,
    0xEC: _D._cmd_identify_on_cd, 0x20: _D._cmd_identify_on_cd, 0x21: _D._cmd_identify_on_cd,
    0xEF: _D._cmd_set_features,
    0x90: _D._cmd_diagnostic,
    0xE5: _D._cmd_check_power, 0x98: _D._cmd_check_power,
    **{op: _D._cmd_nodata for op in (0xE0, 0xE1, 0xE2, 0xE3, 0xE6, 0x94, 0x95, 0x96, 0x97,
                                     0x99)},
}
_PACKET_COMMANDS = {
    0x00: _D._pk_test_unit_ready,
    0x03: _D._pk_request_sense,
    0x12: _D._pk_inquiry,
    0x1B: _D._pk_start_stop,
    0x1E: _D._pk_prevent_allow,
    0x25: _D._pk_read_capacity,
    0x28: _D._pk_read, 0xA8: _D._pk_read,
    0x2B: _D._pk_test_unit_ready,  # SEEK(10): nothing to move
    0x43: _D._pk_read_toc,
    0x46: _D._pk_get_configuration,
    0x5A: _D._pk_mode_sense,
    0xBB: _D._pk_test_unit_ready,  # SET CD SPEED
}
_NEED_MEDIUM = {0x00, 0x25, 0x28, 0xA8, 0x2B, 0x43}


class _AbsentDrive:
    """What the data port reaches when the selected drive is not there."""

    @staticmethod
    def pio_read(size: int) -> int:
        return (1 << (8 * size)) - 1

    @staticmethod
    def pio_write(size: int, value: int) -> None:
        pass


_ABSENT = _AbsentDrive()


@register_type("ide-channel")
class IdeChannel(Device):
    """One legacy IDE channel (command block, control block, IRQ) and its bus master.

    The board adds ``master``/``slave`` ``IdeDrive`` children before realize; the
    channel realizes and resets them. ``bm_read``/``bm_write`` are the 8 bus-master
    bytes the PIIX3 maps at BAR4 (channel 0 at 0-7, channel 1 at 8-15).
    """

    STATE_VERSION = 1

    iobase = prop.u16(reset=0x1F0, doc="command block base (data port)")
    ctlbase = prop.u16(reset=0x3F6, doc="alternate status / device control port")
    irq = prop.u8(reset=14, doc="ISA IRQ line")

    select = state.u8(reset=0xA0, doc="Device/Head register; bit 4 selects the slave")
    devctl = state.u8(reset=0, doc="Device Control register: nIEN, SRST, HOB")
    intrq = state.bool(reset=False, doc="INTRQ asserted, until the Status register is read")
    bm_cmd = state.u8(reset=0, doc="bus master command: start (0), read (3)")
    bm_status = state.u8(reset=0, doc="bus master status: active, error, interrupt, "
                         "drive DMA capable (5-6)")
    bm_prd = state.u32(reset=0, doc="PRD table physical address")

    irq_out = derived.bool(reset=False, doc="level driven onto the IRQ line")

    # -- life cycle -------------------------------------------------------------------
    def realize(self, board: Board) -> None:  # type: ignore[override]
        super().realize(board)
        self.drives: list[IdeDrive | None] = [
            self.children.get("master"), self.children.get("slave")]  # type: ignore[list-item]
        board.io.register(self.iobase, 1, self._data_read, self._data_write, owner=self.path)
        board.io.register(self.iobase + 1, 7, self._reg_read, self._reg_write,
                          owner=self.path)
        board.io.register(self.ctlbase, 1, self._ctl_read, self._ctl_write, owner=self.path)
        self._irq = board.isa_irq(self.irq)
        self._select_changed()

    def unrealize(self) -> None:
        self.board.io.unregister(self.iobase, 8)
        self.board.io.unregister(self.ctlbase, 1)

    def reset(self) -> None:
        super().reset()
        if self.realized:
            self._irq.lower()

    def rebuild(self) -> None:
        self.irq_out = self.intrq
        self._select_changed()

    def _set_select(self, value: int) -> None:
        self.select = value
        self._select_changed()

    def _select_changed(self) -> None:
        # the data port's drive, cached for the hot path (an absent one reads all ones)
        drives = getattr(self, "drives", None)
        drv = drives[(self.select >> 4) & 1] if drives else None
        self._current: IdeDrive | _AbsentDrive = drv if drv is not None else _ABSENT

    # -- interrupt --------------------------------------------------------------------
    def raise_irq(self) -> None:
        if self.devctl & NIEN:
            return
        self.bm_status |= BM_INT
        self._set_intrq(True)

    def _set_intrq(self, level: bool) -> None:
        self.intrq = self.irq_out = level
        self._irq.set(level)

    # -- ports ------------------------------------------------------------------------
    def _selected(self) -> IdeDrive | None:
        return self.drives[(self.select >> 4) & 1]

    def _take_window(self) -> None:
        """Bring back what the CPU read from the PIO window: its drive's position."""
        pos = self.board.pio_window_take(self.iobase)
        if pos is not None:
            self._window_drive.io_pos = pos

    def sync_state(self) -> None:
        if self.realized:
            self._take_window()

    def _data_read(self, _off: int, size: int) -> int:
        if size == 1:
            return 0xFF
        self._take_window()
        drv = self._current
        value = drv.pio_read(size)
        if isinstance(drv, IdeDrive) and drv.io_pos < drv.io_end:
            # the rest of this block: the CPU serves it without calling back
            self._window_drive = drv
            self.board.pio_window(self.iobase, drv.io_buffer, drv.io_pos, drv.io_end)
        return value

    def _data_write(self, _off: int, size: int, value: int) -> None:
        self._take_window()
        if size != 1:
            self._current.pio_write(size, value)

    def _reg_read(self, off: int, size: int) -> int:
        reg = off + 1
        drv = self._selected()
        if reg == R_DEVICE:
            return self.select if any(self.drives) else 0
        if drv is None:
            return 0
        if reg == R_STATUS:
            if self.intrq:
                self._set_intrq(False)
            return drv.status
        return drv.read_register(reg, bool(self.devctl & HOB))

    def _reg_write(self, off: int, size: int, value: int) -> None:
        self._take_window()
        reg = off + 1
        value &= 0xFF
        self.devctl &= ~HOB  # a taskfile write ends high-order byte readback
        if reg == R_COMMAND:
            drv = self._selected()
            if drv is not None:
                drv.execute(value)
        elif reg == R_DEVICE:
            self._set_select(value | 0xA0)  # bits 7 and 5 are obsolete and read as one
        else:
            for drv in self.drives:
                if drv is not None:
                    drv.write_register(reg, value)

    def _ctl_read(self, _off: int, _size: int) -> int:
        drv = self._selected()
        return drv.status if drv is not None else 0

    def _ctl_write(self, _off: int, _size: int, value: int) -> None:
        self._take_window()
        old, self.devctl = self.devctl, value & (NIEN | SRST | HOB)
        if (old ^ value) & SRST:
            asserted = bool(value & SRST)
            for drv in self.drives:
                if drv is not None:
                    drv.soft_reset(asserted)
            if not asserted:
                self._set_select(0xA0)  # device 0 is selected after a reset
            if self.intrq:
                self._set_intrq(False)

    def diagnostic(self) -> None:
        """EXECUTE DEVICE DIAGNOSTIC: every drive resets to its signature; one interrupt."""
        for drv in self.drives:
            if drv is not None:
                drv.diagnostic_result()
        self._set_select(self.select & ~DEV_DEV)
        self.raise_irq()

    # -- bus master (SFF-8038i) ---------------------------------------------------------
    def bm_read(self, offset: int, size: int) -> int:
        """Read ``size`` bytes of this channel's bus-master registers at ``offset`` (0-7)."""
        regs = bytes([self.bm_cmd, 0, self.bm_status, 0]) + self.bm_prd.to_bytes(4, "little")
        return int.from_bytes(regs[offset:offset + size].ljust(size, b"\xff"), "little")

    def bm_write(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            if offset + i < 8:
                self._bm_write_byte(offset + i, (value >> (8 * i)) & 0xFF)

    def _bm_write_byte(self, reg: int, value: int) -> None:
        if reg == 0:
            old, self.bm_cmd = self.bm_cmd, value & (BM_START | BM_READ)
            if value & BM_START and not old & BM_START:
                self.bm_status |= BM_ACTIVE
                self.dma_kick()
            elif old & BM_START and not value & BM_START:
                self.bm_status &= ~BM_ACTIVE
        elif reg == 2:
            self.bm_status = ((self.bm_status & ~(BM_CAPABLE | (value & (BM_ERROR | BM_INT))))
                              | (value & BM_CAPABLE))
        elif reg >= 4:
            shift = 8 * (reg - 4)
            prd = (self.bm_prd & ~(0xFF << shift)) | (value << shift)
            self.bm_prd = prd & 0xFFFFFFFC

    def dma_kick(self) -> None:
        """Run a DMA command once both it and the engine (Active) are there."""
        if not self.bm_status & BM_ACTIVE:
            return
        for drv in self.drives:
            if drv is not None and drv.phase == PH_DMA:
                self._run_dma(drv)
                return

    def _prd_regions(self, total: int) -> tuple[list[tuple[int, int]], bool]:
        """Walk the PRD table: the regions covering ``total`` bytes and whether the
        table ended (EOT) exactly there; regions that continue one another are joined.
        ValueError when the table is not in RAM. Entries are read 64 at a time."""
        regions: list[tuple[int, int]] = []
        covered, addr, mem = 0, self.bm_prd, self.board.mem
        while addr - self.bm_prd < 8 * MAX_PRD_ENTRIES:
            chunk = min(PRD_BATCH, 8 * MAX_PRD_ENTRIES - (addr - self.bm_prd))
            entries = mem.read(addr, chunk) if mem.is_ram(addr, chunk) else mem.read(addr, 8)
            for base, count, flags in struct.iter_unpack("<IHH", entries):
                count = count or 0x10000
                base &= ~1
                if regions and regions[-1][0] + regions[-1][1] == base:
                    regions[-1] = (regions[-1][0], regions[-1][1] + count)
                else:
                    regions.append((base, count))
                covered += count
                if covered >= total:
                    return regions, bool(flags & PRD_EOT) and covered == total
                if flags & PRD_EOT:
                    return regions, True
                addr += 8
        raise ValueError("PRD table has no end-of-table entry")

    def _run_dma(self, drv: IdeDrive) -> None:
        """Move the command's bytes between the image and the PRD table's regions, as
        one transfer: every region is checked first, then the image is read or written
        once (a guest's scatter list can have hundreds of 4 KiB entries)."""
        total = drv.dma_bytes_left
        mem = self.board.mem
        try:
            regions, ended = self._prd_regions(total)
        except ValueError:
            return self._dma_finish(drv, ABRT, memory_error=True)
        spans, left = [], total
        for base, count in regions:
            n = min(count, left)
            spans.append((base, n))
            left -= n
        if not all(mem.is_ram(base, n) for base, n in spans):
            return self._dma_finish(drv, ABRT, memory_error=True)
        try:
            if drv.dma_write:
                drv.dma_sink(b"".join(mem.read(base, n) for base, n in spans))
            else:
                data, pos = memoryview(drv.dma_source(total - left)), 0
                for base, n in spans:
                    mem.write(base, data[pos:pos + n])
                    pos += n
        except (OSError, ValueError):
            return self._dma_finish(drv, UNC if not drv.dma_write else ABRT)
        if drv.dma_bytes_left:
            self.bm_status &= ~BM_ACTIVE
            drv.dma_short()
            return None
        if ended:
            self.bm_status &= ~BM_ACTIVE
        drv.dma_done(0)
        return None

    def _dma_finish(self, drv: IdeDrive, error: int, memory_error: bool = False) -> None:
        self.bm_status &= ~BM_ACTIVE
        if memory_error:
            self.bm_status |= BM_ERROR
        drv.dma_done(error)
