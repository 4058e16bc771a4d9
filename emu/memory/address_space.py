"""Guest physical address space: RAM shared with unicorn, ROM, MMIO, unassigned holes.

PC memory map (as QEMU's i440FX board lays it out): RAM from 0 to 640 KiB, the legacy
VGA window 0xA0000-0xBFFFF, then 0xC0000-0xFFFFF in the 13 segments the i440FX PAM
registers switch between ROM/PCI and shadow RAM (82441FX datasheet, 3.2.16: 16 KiB
segments from 0xC0000, one 64 KiB segment at 0xF0000), RAM from 1 MiB up to the PCI
hole (at most 3.5 GiB below 4 GiB, the rest above 4 GiB), and the whole BIOS image just
below 4 GiB, whose last 128 KiB also show at 0xE0000 while shadowing is off.
Reads of unassigned addresses return all ones and writes are dropped, never faulting.

One shortcut: a segment whose PAM mode is read-only shadow RAM (RE without WE) is
mapped as plain RAM, so guest writes to it are not dropped; the engine cannot ignore a
write to a read-only page and go on, and firmware only write-protects what it no longer
writes.
"""

from __future__ import annotations

import ctypes
import itertools
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import unicorn
from unicorn.unicorn_py3.unicorn import uclib

from emu.memory import hostram

PAGE = 0x1000
LOW_RAM_END = 0xA0000
LEGACY_BASE = 0xC0000
BIOS_LOW = 0xE0000
ONE_MIB = 0x100000
FOUR_GIB = 1 << 32
# The most guest RAM pyemu builds: the cap of -m and of a stream's description.
MAX_RAM = 64 << 30
LOWMEM_MAX = 0xE0000000
# PAM segments: (base, size); mode bit 0 = reads from RAM, bit 1 = writes to RAM.
PAM_SEGMENTS = tuple((LEGACY_BASE + i * 0x4000, 0x4000) for i in range(12)) + (
    (0xF0000, 0x10000),)
PAM_OFF, PAM_RE, PAM_WE = 0, 1, 2

MmioRead = Callable[[int, int], int]  # (offset, size) -> value
MmioWrite = Callable[[int, int, int], None]


class _Handlers:
    """One MMIO region's handlers; its AddressSpace holds it, _MMIO only weakly."""

    __slots__ = ("read", "write", "uc", "__weakref__")

    def __init__(self, read: MmioRead, write: MmioWrite, uc: unicorn.Uc) -> None:
        self.read, self.write, self.uc = read, write, uc


# MMIO regions are mapped with uc_mmio_map directly, through two C entry points made once
# per process: the engine passes back the region's key as user data, and _MMIO finds its
# handlers. (The binding's mmio_map made two wrapped callbacks per mapping, ~0.2 ms, and
# each access went through two more Python frames.) Weak values: a machine dropped in a
# process takes its handlers with it.
_MMIO: weakref.WeakValueDictionary[int, _Handlers] = weakref.WeakValueDictionary()
_keys = itertools.count(1)


def _fault(uc: unicorn.Uc, e: BaseException) -> None:
    """An exception in a handler stops the engine and is raised by emu_start, as the
    binding's own callbacks do (it cannot cross the engine's C frames)."""
    if uc._hook_exception is None:
        uc._hook_exception = e
    uc.emu_stop()


@ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint,
                  ctypes.c_void_p)
def _mmio_read(_uch: int, offset: int, size: int, key: int) -> int:
    h = _MMIO[key]
    try:
        return h.read(offset, size)
    except BaseException as e:
        _fault(h.uc, e)
        return 0


@ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint, ctypes.c_uint64,
                  ctypes.c_void_p)
def _mmio_write(_uch: int, offset: int, size: int, value: int, key: int) -> None:
    h = _MMIO[key]
    try:
        h.write(offset, size, value)
    except BaseException as e:
        _fault(h.uc, e)


@dataclass
class Region:
    name: str
    base: int
    size: int

    @property
    def end(self) -> int:
        return self.base + self.size


class AddressSpace:
    """Maps RAM, ROM and MMIO into the engine and gives Python checked access to RAM."""

    def __init__(self, uc: unicorn.Uc, ram_size: int, bios: bytes,
                 invalidate: Callable[[int, int], None],
                 invalidate_ram: Callable[[int, int], None] | None = None) -> None:
        """``invalidate(start, end)`` drops translated code for guest-physical addresses;
        ``invalidate_ram(host, length)``, when given, does it for RAM written from Python
        by its host address (the engine can then drop only what those pages held)."""
        if ram_size < 2 * ONE_MIB or ram_size % PAGE:
            raise ValueError(f"RAM size {ram_size} must be at least 2 MiB and page aligned")
        if len(bios) % 0x10000 or not 0x10000 <= len(bios) <= 0x1000000:
            raise ValueError(f"BIOS image of {len(bios)} bytes: must be a multiple of 64 KiB")
        self.uc = uc
        self.ram = hostram.allocate(ram_size)
        self.rom = np.frombuffer(bytearray(bios), dtype=np.uint8)
        self.below_4g = min(ram_size, LOWMEM_MAX)
        self.above_4g = ram_size - self.below_4g
        self._invalidate = invalidate
        self._invalidate_ram = invalidate_ram
        self._ram_host = self.ram.ctypes.data
        # While a migration runs: a byte per RAM page, set when the page is written
        # (the engine marks the CPU's stores, _written the writes from Python)
        self.dirty_log: np.ndarray | None = None
        self.regions: list[Region] = []
        self._mmio: dict[int, _Handlers] = {}  # MMIO region base -> its handlers
        self.pam: dict[int, int] = {}  # segment base -> PAM mode now mapped
        self._map_fixed()

    def _map_ptr(self, name: str, base: int, size: int, array: np.ndarray, offset: int) -> None:
        self.uc.mem_map_ptr(base, size, unicorn.UC_PROT_ALL, array.ctypes.data + offset)
        self.regions.append(Region(name, base, size))

    def _map_fixed(self) -> None:
        self._map_ptr("ram-low", 0, LOW_RAM_END, self.ram, 0)
        for base, size in PAM_SEGMENTS:
            self.set_pam(base, size, PAM_OFF)
        self._map_ptr("ram", ONE_MIB, self.below_4g - ONE_MIB, self.ram, ONE_MIB)
        self._map_ptr("bios", FOUR_GIB - len(self.rom), len(self.rom), self.rom, 0)
        if self.above_4g:
            self._map_ptr("ram-above-4g", FOUR_GIB, self.above_4g, self.ram, self.below_4g)

    def _rom_offset(self, base: int) -> int | None:
        """Offset in the ROM image of legacy address ``base``, if the image shows there."""
        rom_low = min(len(self.rom), ONE_MIB - BIOS_LOW)
        if base >= ONE_MIB - rom_low:
            return len(self.rom) - (ONE_MIB - base)
        return None

    def set_pam(self, base: int, size: int, mode: int) -> None:
        """Map PAM segment [base, base+size) for ``mode`` (PAM_RE | PAM_WE bits)."""
        if self.pam.get(base) == mode:
            return
        if base in self.pam:
            self.uc.mem_unmap(base, size)
            self.regions = [r for r in self.regions if r.base != base]
        rom = self._rom_offset(base)
        name = f"pam@{base:#x}"
        if mode & PAM_RE:
            self._map_ptr(name, base, size, self.ram, base)
        elif mode == PAM_OFF and rom is not None:
            self._map_ptr(name, base, size, self.rom, rom)
        else:  # reads from ROM or nothing; writes to RAM (WE) or dropped
            def read(off: int, sz: int, rom: int | None = rom) -> int:
                if rom is None:
                    return (1 << (8 * sz)) - 1
                return int.from_bytes(self.rom[rom + off:rom + off + sz].tobytes(), "little")

            def write(off: int, sz: int, value: int, we: bool = bool(mode & PAM_WE)) -> None:
                if we:
                    self.ram[base + off:base + off + sz] = np.frombuffer(
                        value.to_bytes(sz, "little"), dtype=np.uint8)
                    self._log_write(base + off, sz)

            self.map_mmio(name, base, size, read, write)
        self.pam[base] = mode
        self._invalidate(base, base + size)

    def map_mmio(self, name: str, base: int, size: int, read: MmioRead, write: MmioWrite) -> None:
        """Route guest accesses to [base, base+size) to Python handlers (offsets from base)."""
        for r in self.regions:
            if base < r.end and r.base < base + size:
                raise ValueError(f"MMIO {name} at {base:#x} overlaps {r.name}")

        key, handlers = next(_keys), _Handlers(read, write, self.uc)
        _MMIO[key] = handlers
        status = uclib.uc_mmio_map(self.uc._uch, base, size, _mmio_read, key, _mmio_write, key)
        if status != unicorn.UC_ERR_OK:
            raise unicorn.UcError(status)
        self._mmio[base] = handlers  # what was mapped here before goes
        self.regions.append(Region(name, base, size))

    def fill_unassigned(self) -> None:
        """Map every hole below 4 GiB to the all-ones handler, after devices placed MMIO."""
        taken = sorted((r.base, r.end) for r in self.regions if r.base < FOUR_GIB)
        cursor = 0
        holes = []
        for base, end in taken:
            if base > cursor:
                holes.append((cursor, base))
            cursor = max(cursor, end)
        if cursor < FOUR_GIB:
            holes.append((cursor, FOUR_GIB))
        for base, end in holes:
            self.map_mmio(f"unassigned@{base:#x}", base, end - base,
                          lambda _off, size: (1 << (8 * size)) - 1, lambda *_: None)

    # -- checked access from Python (loaders, DMA) -----------------------------------
    def _ram_offset(self, addr: int, length: int) -> int:
        """Array offset of guest-physical [addr, addr+length), which must be RAM."""
        if length < 0:
            raise ValueError("negative length")
        if 0 <= addr and addr + length <= self.below_4g:
            if addr < ONE_MIB and not (addr + length <= LOW_RAM_END or
                                       self._shadow_writable(addr, length)):
                raise ValueError(f"guest address {addr:#x}+{length:#x} is not RAM")
            return addr
        if FOUR_GIB <= addr and addr + length <= FOUR_GIB + self.above_4g:
            return addr - FOUR_GIB + self.below_4g
        raise ValueError(f"guest address {addr:#x}+{length:#x} is outside RAM")

    def _shadow_writable(self, addr: int, length: int) -> bool:
        """[addr, addr+length) lies in PAM segments whose writes go to RAM."""
        if addr < LEGACY_BASE:
            return False
        return all(self.pam[b] & PAM_WE for b, s in PAM_SEGMENTS
                   if b < addr + length and addr < b + s)

    def is_ram(self, addr: int, length: int) -> bool:
        try:
            self._ram_offset(addr, length)
        except ValueError:
            return False
        return True

    def read(self, addr: int, length: int) -> bytes:
        off = self._ram_offset(addr, length)
        return self.ram[off:off + length].tobytes()

    def write(self, addr: int, data: bytes) -> None:
        off = self._ram_offset(addr, len(data))
        self.ram[off:off + len(data)] = np.frombuffer(data, dtype=np.uint8)
        self._written(addr, off, len(data))

    def fill(self, addr: int, length: int, value: int = 0) -> None:
        off = self._ram_offset(addr, length)
        self.ram[off:off + length] = value
        self._written(addr, off, length)

    def _log_write(self, off: int, length: int) -> None:
        """Mark RAM [off, off+length) written in the migration's dirty log, if any."""
        if self.dirty_log is not None and length > 0:
            self.dirty_log[off // PAGE:(off + length - 1) // PAGE + 1] = 1

    def _written(self, addr: int, off: int, length: int) -> None:
        self._log_write(off, length)
        if self._invalidate_ram is not None:
            self._invalidate_ram(self._ram_host + off, length)
        else:
            self._invalidate(addr, addr + length)

    def read_u32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    def write_u32(self, addr: int, value: int) -> None:
        self.write(addr, value.to_bytes(4, "little"))
