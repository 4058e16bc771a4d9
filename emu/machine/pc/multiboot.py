"""Multiboot (version 1) kernel loader for ``-kernel FILE.elf``.

Follows the Multiboot Specification 0.6.96: section 3.1 (the header: magic 0x1BADB002
in the first 8192 bytes, 32-bit aligned, with flags and checksum), 3.2 (machine state
at entry: EAX=0x2BADB002, EBX=info address, flat 32-bit protected mode, paging and
interrupts off, A20 on) and 3.3 (the information structure, modules, memory map).

Where the specification leaves the state open, it is the one QEMU's loader leaves (its
hw/i386/multiboot.c and option ROM pc-bios/optionrom/multiboot.S), since kernels are
written against that: a GDT in force whose 0x08 is flat 32-bit code and 0x10 flat
32-bit data (then 16-bit code and data at 0x18 and 0x20), CS = 0x08 and DS..SS = 0x10,
ESP on a stack in free conventional memory, ECX = the entry point, EFLAGS as the ROM's
last instructions leave them (PF set); in the information structure mem_lower and
mem_upper taken from the memory map (as that ROM takes them from INT 12h and E820),
boot_device 0x8000FFFF, the command line "KERNEL APPEND", and the modules flag with a
(possibly empty) module table. The GDT sits in memory the map reserves (QEMU's is in
its option ROM), so a kernel that reuses available RAM does not overwrite it.
The image is hostile input: every offset and size is checked against the file and
every destination against guest RAM.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from emu.host.files import read_regular
from emu.memory.address_space import AddressSpace

MAGIC = 0x1BADB002
BOOT_MAGIC = 0x2BADB002
SEARCH = 8192
_MAGIC_BYTES = struct.pack("<I", MAGIC)
FLAG_PAGE_ALIGN, FLAG_MEMINFO, FLAG_VIDEO, FLAG_AOUT = 1, 2, 4, 1 << 16
SUPPORTED_REQUIRED = FLAG_PAGE_ALIGN | FLAG_MEMINFO | FLAG_VIDEO
INFO_MEM, INFO_BOOTDEV, INFO_CMDLINE, INFO_MODS, INFO_MMAP, INFO_LOADER = 1, 2, 4, 8, 64, 512
INFO_FLAGS = INFO_MEM | INFO_BOOTDEV | INFO_CMDLINE | INFO_MODS | INFO_MMAP | INFO_LOADER
BOOT_DEVICE = 0x8000FFFF  # BIOS drive 80h, no partition: what QEMU's loader reports
INFO_ADDR = 0x9000  # the info block, strings and map sit in low memory below 640 KiB
INFO_LIMIT = 0x9F000
MAX_CMDLINE = 4096
MAX_MODULES = 32
LOADER_NAME = b"pyemu\0"
E820_RAM = 1
ONE_MIB = 0x100000

# The entry state's GDT, descriptor for descriptor QEMU's multiboot.S one as a guest reads
# it after entry (the CPU has set the data descriptor's accessed bit by loading it): null,
# flat 32-bit code (0x08) and data (0x10), 16-bit code (0x18) and data (0x20) of 64 KiB.
GDT = struct.pack("<5Q", 0, 0x00CF9A000000FFFF, 0x00CF93000000FFFF, 0x00009E000000FFFF,
                  0x000092000000FFFF)
CODE_SEL, DATA_SEL = 0x08, 0x10
# In the KiB below 640 KiB that the memory map reserves (where an EBDA would be).
GDT_ADDR = 0x9FC00
LOADER_AREA_END = GDT_ADDR + len(GDT)
STACK_TOP = 0x7000  # free conventional memory below the info block
ENTRY_EFLAGS = 0x06  # reserved bit 1, PF from the ROM's last arithmetic; IF and DF clear


class BootError(ValueError):
    """The kernel or a module cannot be booted; the message names the file and why."""


@dataclass
class BootImage:
    """What the board needs to enter the kernel."""

    entry: int
    info_addr: int
    segments: list[tuple[int, int]] = field(default_factory=list)  # (addr, size) loaded
    gdt: tuple[int, int] = (GDT_ADDR, len(GDT) - 1)  # GDTR base and limit to load
    stack: int = STACK_TOP


def _find_header(data: bytes, path: str) -> tuple[int, int]:
    """The first 32-bit aligned header whose 12 bytes lie in the first SEARCH bytes
    (Multiboot 0.6.96 section 3.1.1): its offset and flags."""
    end = min(len(data), SEARCH) - 8  # where the magic may end with 12 bytes in range
    off = data.find(_MAGIC_BYTES, 0, end)
    while off > 0 and off % 4:  # a match off the 32-bit grid is not a header
        off = data.find(_MAGIC_BYTES, off + 1, end)
    if off == -1:
        raise BootError(f"{path}: no multiboot header in the first {SEARCH} bytes")
    _, flags, checksum = struct.unpack_from("<III", data, off)
    if (MAGIC + flags + checksum) & 0xFFFFFFFF:
        raise BootError(f"{path}: multiboot header at {off:#x} has a bad checksum")
    unsupported = flags & 0xFFFF & ~SUPPORTED_REQUIRED
    if unsupported:
        raise BootError(f"{path}: multiboot header requires unsupported flags "
                        f"{unsupported:#x}")
    return off, flags


def _load_elf(data: bytes, path: str, mem: AddressSpace) -> tuple[int, list[tuple[int, int]]]:
    try:
        elf = ELFFile(io.BytesIO(data))
        if elf.elfclass != 32 or elf["e_machine"] != "EM_386":
            raise BootError(f"{path}: multiboot kernels must be 32-bit x86 ELF files")
        loaded = []
        for seg in elf.iter_segments():
            if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
                continue
            addr, filesz, memsz, off = (seg["p_paddr"], seg["p_filesz"], seg["p_memsz"],
                                        seg["p_offset"])
            if filesz > memsz or off + filesz > len(data):
                raise BootError(f"{path}: segment at {addr:#x} runs past the end of the file")
            if not mem.is_ram(addr, memsz):
                raise BootError(f"{path}: segment {addr:#x}+{memsz:#x} does not fit in "
                                f"guest RAM")
            mem.write(addr, data[off:off + filesz])
            mem.fill(addr + filesz, memsz - filesz)
            loaded.append((addr, memsz))
        return elf["e_entry"], loaded
    except (ELFError, struct.error) as e:
        raise BootError(f"{path}: not a valid ELF file ({e})") from None


def _load_aout(data: bytes, hdr_off: int, path: str,
               mem: AddressSpace) -> tuple[int, list[tuple[int, int]]]:
    header_addr, load_addr, load_end, bss_end, entry = struct.unpack_from("<5I", data, hdr_off + 12)
    start = hdr_off - (header_addr - load_addr)
    end = len(data) if load_end == 0 else start + (load_end - load_addr)
    if start < 0 or end > len(data) or end < start:
        raise BootError(f"{path}: multiboot address fields point outside the file")
    size = (bss_end or load_addr + end - start) - load_addr
    if size < end - start or not mem.is_ram(load_addr, size):
        raise BootError(f"{path}: image {load_addr:#x}+{size:#x} does not fit in guest RAM")
    mem.write(load_addr, data[start:end])
    mem.fill(load_addr + end - start, size - (end - start))
    return entry, [(load_addr, size)]


def module_list(spec: str) -> list[tuple[str, str]]:
    """QEMU's ``-initrd "file1 arg=foo,file2"``: comma-separated, ',,' escapes a comma."""
    mods = [m.replace("\0", ",") for m in spec.replace(",,", "\0").split(",") if m.strip()]
    if len(mods) > MAX_MODULES:
        raise BootError(f"-initrd: at most {MAX_MODULES} modules")
    return [(m.split(" ", 1)[0], m) for m in mods]


class InfoWriter:
    """Lays out the info structure and its strings in low memory, bounds-checked."""

    def __init__(self, mem: AddressSpace) -> None:
        self.mem = mem
        self.cursor = INFO_ADDR + 0x100  # after the 88-byte info structure

    def put(self, data: bytes, align: int = 4) -> int:
        self.cursor = (self.cursor + align - 1) & -align
        if self.cursor + len(data) > INFO_LIMIT:
            raise BootError("multiboot information does not fit below 640 KiB")
        addr = self.cursor
        self.mem.write(addr, data)
        self.cursor += len(data)
        return addr


def read_file(path: str, option: str, limit: int) -> bytes:
    """A kernel, module or firmware file whole: a regular file of at most ``limit``
    bytes (a device or FIFO named by mistake, or by a stream, is refused at once)."""
    try:
        return read_regular(path, limit)
    except OSError as e:
        raise BootError(f"{option} {path}: {e.strerror or e}") from None


def check_multiboot(path: str, limit: int) -> None:
    """BootError unless ``path`` is a file of at most ``limit`` bytes with a Multiboot
    header that this loader supports: what a machine that will not boot it now (a
    migration's destination) checks, so that a wrong file is refused at once."""
    _find_header(read_file(path, "-kernel", limit), path)


def load_multiboot(path: str, cmdline: str, initrd: str | None, mem: AddressSpace,
                   e820: list[tuple[int, int, int]]) -> BootImage:
    """Load a Multiboot kernel (and modules) into guest RAM, with the information
    structure describing the memory map ``e820`` (base, length, type); return how to
    enter it."""
    data = read_file(path, "-kernel", int(mem.ram.size))
    hdr_off, flags = _find_header(data, path)
    if flags & FLAG_AOUT:
        entry, segments = _load_aout(data, hdr_off, path, mem)
    else:
        entry, segments = _load_elf(data, path, mem)
    for addr, size in segments:
        if addr < LOADER_AREA_END and INFO_ADDR < addr + size:
            raise BootError(f"{path}: segment {addr:#x}+{size:#x} overlaps the loader's "
                            f"information and GDT at {INFO_ADDR:#x}-{LOADER_AREA_END:#x}")
    kernel_end = max(a + s for a, s in segments)
    w = InfoWriter(mem)
    info = {"flags": INFO_FLAGS, "boot_device": BOOT_DEVICE}
    info["mem_lower"], info["mem_upper"] = _mem_sizes(e820)
    # "KERNEL APPEND" as QEMU builds it, with the space even when APPEND is empty.
    full_cmdline = f"{path} {cmdline}".encode()
    if len(full_cmdline) > MAX_CMDLINE:
        raise BootError(f"-append: command line longer than {MAX_CMDLINE} bytes")
    info["cmdline"] = w.put(full_cmdline + b"\0", 1)
    info["boot_loader_name"] = w.put(LOADER_NAME, 1)
    info["mmap_addr"], info["mmap_length"] = _write_mmap(w, e820)
    mods = module_list(initrd) if initrd else []
    info["mods_addr"], info["mods_count"] = _load_modules(
        mods, kernel_end, bool(flags & FLAG_PAGE_ALIGN), w, mem)
    mem.write(INFO_ADDR, _pack_info(info))
    mem.write(GDT_ADDR, GDT)
    return BootImage(entry=entry, info_addr=INFO_ADDR, segments=segments)


def _mem_sizes(e820: list[tuple[int, int, int]]) -> tuple[int, int]:
    """mem_lower and mem_upper in KiB (section 3.3): RAM from 0, and RAM from 1 MiB up to
    the first hole, each as the map shows it (QEMU's ROM takes mem_upper from the E820
    map the same way)."""
    lower = next((length for base, length, kind in e820 if kind == E820_RAM and base == 0), 0)
    upper_end = ONE_MIB
    grown = True
    while grown:  # the map need not be sorted: extend until no range continues it
        grown = False
        for base, length, kind in e820:
            if kind == E820_RAM and base <= upper_end < base + length:
                upper_end, grown = base + length, True
    return lower // 1024, (min(upper_end, 1 << 32) - ONE_MIB) // 1024


def _write_mmap(w: InfoWriter, e820: list[tuple[int, int, int]]) -> tuple[int, int]:
    blob = b"".join(struct.pack("<IQQI", 20, base, size, kind) for base, size, kind in e820)
    return w.put(blob), len(blob)


def _load_modules(mods: list[tuple[str, str]], kernel_end: int, page_align: bool,
                  w: InfoWriter, mem: AddressSpace) -> tuple[int, int]:
    cursor = (kernel_end + 0xFFF) & ~0xFFF
    table = b""
    for path, line in mods:
        data = read_file(path, "-initrd", int(mem.ram.size))
        if page_align:
            cursor = (cursor + 0xFFF) & ~0xFFF
        if not mem.is_ram(cursor, len(data)):
            raise BootError(f"-initrd {path}: {len(data)} bytes do not fit in guest RAM")
        mem.write(cursor, data)
        string = w.put(line.encode()[:MAX_CMDLINE] + b"\0", 1)
        table += struct.pack("<IIII", cursor, cursor + len(data), string, 0)
        cursor += len(data)
    # An empty table still has an address: QEMU sets the modules flag either way.
    return w.put(table) if table else w.cursor, len(mods)


def _pack_info(info: dict[str, int]) -> bytes:
    order = ("flags", "mem_lower", "mem_upper", "boot_device", "cmdline", "mods_count",
             "mods_addr", "syms0", "syms1", "syms2", "syms3", "mmap_length", "mmap_addr",
             "drives_length", "drives_addr", "config_table", "boot_loader_name")
    return struct.pack("<17I", *(info.get(k, 0) for k in order)) + bytes(88 - 68)
