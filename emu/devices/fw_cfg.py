"""QEMU's firmware configuration device (fw_cfg) on its x86 I/O ports, as SeaBIOS uses it.

Ref: QEMU docs/specs/fw_cfg.txt — "Selector (Control) Register", "Data Register",
"Register Locations" (x86: selector 0x510, data 0x511, DMA address 0x514),
"Firmware Configuration Items" (signature, feature bitmap, file directory) and
"Guest-side DMA Interface" (FWCfgDmaAccess, control bits, completion). Selector key
numbers and the x86 arch-local keys are QEMU's (include/standard-headers/linux/
qemu_fw_cfg.h, hw/i386/fw_cfg.h); ``etc/e820`` entries are QEMU's ``struct e820_entry``.

Behaviour that follows QEMU's implementation rather than the spec text:
- 0x510-0x511 is one region: a 16-bit write selects, a byte read at either port
  reads data, byte writes are dropped (data writes went away in QEMU 2.4). Wider reads
  are not valid accesses there and read 0 without consuming data.
- Bit 14 of a key (the old write channel) is ignored when looking an item up.
- A DMA read past the end of the item copies what is left and zero-fills the rest of
  the guest buffer; a skip past the end leaves the offset at the end. A DMA write is
  an error unless the item is writable, and no item here is. Any guest address that
  is not RAM ends the transfer with the ERROR bit; nothing escapes the port handler.
- The DMA address register is big-endian: the value a little-endian OUT puts on the
  bus is byte-swapped. Writing the high half (0x514) sets it, writing the low half
  (0x518) starts the transfer, and the register reads back as 0 for the next one.
- Reset selects the signature item, as QEMU's reset does.

Items are host configuration, not state: the board fills them with ``add_*`` before
the guest runs, and a destination machine rebuilds them identically from the same
machine description before state is loaded. Only the selector, the read offset and
the pending DMA address half are guest-visible state.

Modelling choice: the file directory holds exactly ``count`` entries; QEMU pads it
to its slot capacity with zeroed entries, which no reader looks at past ``count``.
"""

from __future__ import annotations

import struct
from typing import Any

from emu.devices.base import Board, Device
from emu.qom import Object, prop, register_type, state

# Well-known selector keys (generic).
SIGNATURE, ID, UUID, RAM_SIZE, NOGRAPHIC, NB_CPUS, MACHINE_ID = range(0x00, 0x07)
KERNEL_ADDR, KERNEL_SIZE, KERNEL_CMDLINE, INITRD_ADDR, INITRD_SIZE = range(0x07, 0x0C)
BOOT_DEVICE, NUMA, BOOT_MENU, MAX_CPUS, KERNEL_ENTRY, KERNEL_DATA = range(0x0C, 0x12)
INITRD_DATA, CMDLINE_ADDR, CMDLINE_SIZE, CMDLINE_DATA = range(0x12, 0x16)
SETUP_ADDR, SETUP_SIZE, SETUP_DATA, FILE_DIR = range(0x16, 0x1A)
FILE_FIRST = 0x20

WRITE_CHANNEL, ARCH_LOCAL = 0x4000, 0x8000
# x86 arch-local keys.
ACPI_TABLES, SMBIOS_ENTRIES, IRQ0_OVERRIDE, E820_TABLE, HPET = range(0x8000, 0x8005)

# FW_CFG_ID feature bits.
FEATURE_TRADITIONAL, FEATURE_DMA = 0x01, 0x02

# FWCfgDmaAccess.control bits.
DMA_ERROR, DMA_READ, DMA_SKIP, DMA_SELECT, DMA_WRITE = 0x01, 0x02, 0x04, 0x08, 0x10
DMA_ACCESS = struct.Struct(">IIQ")  # control, length, address
DMA_SIGNATURE = b"QEMU CFG"  # reads of the DMA address register, in address order

FILE_NAME_SIZE = 56  # including the terminating NUL
FILE_ENTRY = struct.Struct(f">IHH{FILE_NAME_SIZE}s")  # size, select, reserved, name
MAX_ITEM_SIZE = 0xFFFFFFFF  # lengths and offsets are 32-bit
ZERO_CHUNK = 1 << 16  # zero-fill in pieces: a guest length may be up to 4 GiB

# etc/e820 entry types.
E820_RAM, E820_RESERVED, E820_ACPI, E820_NVS, E820_UNUSABLE = range(1, 6)
E820_ENTRY = struct.Struct("<QQI")


def e820_table(entries: list[tuple[int, int, int]]) -> bytes:
    """The ``etc/e820`` file: packed little-endian (address u64, length u64, type u32)."""
    return b"".join(E820_ENTRY.pack(addr, length, kind) for addr, length, kind in entries)


def _key_index(key: int) -> int:
    """The key an item is stored under: bit 14 (the write channel) does not select."""
    return key & ~WRITE_CHANNEL & 0xFFFF


@register_type("fw_cfg_io")
class FwCfg(Device):
    """fw_cfg at ``iobase`` (selector/data) and ``iobase + 4`` (DMA address)."""

    STATE_VERSION = 1

    iobase = prop.u16(reset=0x510, doc="selector port; data at +1, DMA address at +4")
    dma_enabled = prop.bool(reset=True, doc="offer the DMA interface (FW_CFG_ID bit 1)")

    selector = state.u16(reset=SIGNATURE, doc="item key last selected (port or DMA SELECT)")
    offset = state.u32(reset=0, doc="read offset within the selected item")
    dma_addr_high = state.u32(reset=0, doc="DMA address high half written, awaiting the low")

    def __init__(self, name: str, parent: Object | None = None, **props: Any) -> None:
        super().__init__(name, parent, **props)
        self.items: dict[int, bytes] = {}  # host-built; rebuilt identically on a destination
        self._plain: dict[int, bytes] = {SIGNATURE: b"QEMU"}
        self._files: dict[str, bytes] = {}
        self._build_items()

    # -- host API: the board describes the configuration ---------------------------
    def add_bytes(self, key: int, data: bytes) -> None:
        """Add a numbered item; ValueError for a taken, file-range or write-channel key."""
        if not 0 <= key <= 0xFFFF or key & WRITE_CHANNEL:
            raise ValueError(f"fw_cfg key {key:#x} is not a read-only item key")
        if not key & ARCH_LOCAL and key >= FILE_DIR:
            raise ValueError(f"fw_cfg key {key:#x} belongs to the file directory")
        if key in self._plain or key == ID:
            raise ValueError(f"fw_cfg key {key:#x} is already set")
        self._plain[key] = _checked_size(bytes(data), f"key {key:#x}")
        self._build_items()

    def add_u16(self, key: int, value: int) -> None:
        self.add_bytes(key, _little(value, 2))

    def add_u32(self, key: int, value: int) -> None:
        self.add_bytes(key, _little(value, 4))

    def add_u64(self, key: int, value: int) -> None:
        self.add_bytes(key, _little(value, 8))

    def add_file(self, name: str, data: bytes) -> None:
        """Add a named item to the directory; keys are reassigned in name order."""
        if not name.isascii() or not 0 < len(name) < FILE_NAME_SIZE or "\0" in name:
            raise ValueError(f"fw_cfg file name {name!r}: 1-55 ASCII characters, no NUL")
        if name in self._files:
            raise ValueError(f"fw_cfg file {name!r} added twice")
        if FILE_FIRST + len(self._files) >= WRITE_CHANNEL:
            raise ValueError("fw_cfg file directory is full")
        self._files[name] = _checked_size(bytes(data), f"file {name!r}")
        self._build_items()

    def file_key(self, name: str) -> int:
        """The selector key of file ``name``; KeyError if there is none."""
        for i, fname in enumerate(self._sorted_files()):
            if fname == name:
                return FILE_FIRST + i
        raise KeyError(f"no fw_cfg file {name!r}")

    def _sorted_files(self) -> list[str]:
        # QEMU orders the directory by strcmp() of the names: byte order.
        return sorted(self._files, key=lambda n: n.encode("ascii"))

    def _build_items(self) -> None:
        features = FEATURE_TRADITIONAL | (FEATURE_DMA if self.dma_enabled else 0)
        items = dict(self._plain)
        items[ID] = struct.pack("<I", features)
        names = self._sorted_files()
        directory = [struct.pack(">I", len(names))]
        for i, name in enumerate(names):
            data = self._files[name]
            directory.append(FILE_ENTRY.pack(len(data), FILE_FIRST + i, 0, name.encode("ascii")))
            items[FILE_FIRST + i] = data
        items[FILE_DIR] = b"".join(directory)
        self.items = items

    # -- life cycle -------------------------------------------------------------------
    def realize(self, board: Board) -> None:
        super().realize(board)
        self._build_items()  # dma_enabled is final now
        board.io.register(self.iobase, 2, self._ctl_read, self._ctl_write, self.path)
        if self.dma_enabled:
            board.io.register(self.iobase + 4, 8, self._dma_read, self._dma_write, self.path)

    # -- selector and data ports --------------------------------------------------------
    def _select(self, key: int) -> None:
        self.selector = key & 0xFFFF
        self.offset = 0

    def _current(self) -> bytes:
        return self.items.get(_key_index(self.selector), b"")

    def _ctl_read(self, _off: int, size: int) -> int:
        if size != 1:
            return 0
        data = self._current()
        if self.offset >= len(data):
            return 0
        self.offset += 1
        return data[self.offset - 1]

    def _ctl_write(self, _off: int, size: int, value: int) -> None:
        if size == 2:
            self._select(value)

    # -- DMA interface ------------------------------------------------------------------
    def _dma_read(self, off: int, size: int) -> int:
        return int.from_bytes(DMA_SIGNATURE[off:off + size], "little")

    def _dma_write(self, off: int, size: int, value: int) -> None:
        if size != 4:
            return
        half = int.from_bytes(value.to_bytes(4, "little"), "big")
        if off == 0:
            self.dma_addr_high = half
        elif off == 4:
            addr = self.dma_addr_high << 32 | half
            self.dma_addr_high = 0
            self._dma_transfer(addr)

    def _dma_transfer(self, desc: int) -> None:
        """Run the FWCfgDmaAccess at ``desc`` to completion and write its status back."""
        try:
            control, length, addr = DMA_ACCESS.unpack(self.board.mem.read(desc, DMA_ACCESS.size))
        except ValueError:
            self._dma_status(desc, DMA_ERROR)
            return
        if control & DMA_SELECT:
            self._select(control >> 16)
        if control & DMA_READ:
            op = DMA_READ
        elif control & DMA_WRITE:
            op = DMA_WRITE
        elif control & DMA_SKIP:
            op = DMA_SKIP
        else:
            op, length = 0, 0
        self._dma_status(desc, 0 if self._dma_move(op, addr, length) else DMA_ERROR)

    def _dma_move(self, op: int, addr: int, length: int) -> bool:
        """Read, skip or write ``length`` bytes at the current offset; False on error."""
        if length == 0:
            return True
        if op == DMA_WRITE:
            return False  # no item is writable
        data = self._current()
        start = min(self.offset, len(data))
        chunk = data[start:start + length]
        self.offset = start + len(chunk)
        if op != DMA_READ:
            return True
        try:
            self.board.mem.write(addr, chunk)
            self._zero_fill(addr + len(chunk), length - len(chunk))
        except ValueError:
            return False
        return True

    def _zero_fill(self, addr: int, length: int) -> None:
        while length > 0:
            n = min(length, ZERO_CHUNK)
            self.board.mem.write(addr, bytes(n))
            addr, length = addr + n, length - n

    def _dma_status(self, desc: int, control: int) -> None:
        try:
            self.board.mem.write(desc, control.to_bytes(4, "big"))
        except ValueError:
            pass  # the guest gave a descriptor outside RAM: nowhere to report to


def _little(value: int, size: int) -> bytes:
    if not 0 <= value < 1 << (8 * size):
        raise ValueError(f"fw_cfg value {value:#x} does not fit in {size} bytes")
    return value.to_bytes(size, "little")


def _checked_size(data: bytes, what: str) -> bytes:
    if len(data) > MAX_ITEM_SIZE:
        raise ValueError(f"fw_cfg {what}: {len(data)} bytes is over the 32-bit size limit")
    return data
