"""Linux x86 boot protocol loader for ``-kernel bzImage``: direct, or through firmware.

Follows the kernel's Documentation/x86/boot.rst: the real-mode header at 0x1F1 ("HdrS"
at 0x202, protocol version at 0x206), the protected-mode kernel after (setup_sects + 1)
sectors; boot_params (the "zero page") with the setup header copied in at 0x1F1 and the
loader's fields filled in, the E820 map at 0x2D0 with its count at 0x1E8, the ACPI RSDP
address at 0x070 (protocol 2.14 and later).

Each header field is read only from a header whose version has it, and written only
there ("Details of header fields": e.g. heap_end_ptr from 2.01, cmd_line_ptr from 2.02
(before it, the command line magic A33Fh at 0x20), initrd_addr_max from 2.03,
kernel_alignment and relocatable_kernel from 2.05, cmdline_size from 2.06, pref_address
and init_size from 2.10); an older header means the documented default (initrd_addr_max
37FFFFFFh, cmdline_size 255) or nothing. The loader's fields are what QEMU's
x86_load_linux (hw/i386/x86.c) writes, so the kernel sees QEMU's loader: type_of_loader
B0h, CAN_USE_HEAP with heap_end_ptr = command line - setup - 200h, and QEMU's layout
(setup at 10000h and the command line at 20000h for a kernel loaded high with protocol
2.02 or later; setup at 90000h and the command line below 9A000h otherwise, with the
protected-mode part at 10000h for a zImage).

Two entries:
- Direct, the 32-bit boot protocol ("32-bit BOOT PROTOCOL"), for a kernel loaded high
  with a 32-bit entry at code32_start and a 2.06 or later header: flat 4 GiB segments,
  a GDT holding __BOOT_CS (0x10) and __BOOT_DS (0x18), ESI = boot_params, EBP = EDI =
  EBX = 0, interrupts and paging off.
- Through firmware (fw_cfg_boot), for every kernel with -bios and, as QEMU boots every
  kernel, for one that only enters through its real-mode setup (code32_start 0, as
  iPXE's, an older header or a zImage): the loader's fields go in the setup sectors,
  which the firmware's option ROM (firmware/linuxboot.S) copies to the setup address
  with the kernel, command line and initrd, then enters setup in real mode ("Running the
  kernel"): DS = ES = FS = GS = SS = the setup segment, SP at the heap's end, CS:IP =
  segment + 20h:0. Setup then asks the firmware for the memory map itself.
The image is hostile input: every field used is checked against the file and RAM.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from emu.machine.pc.multiboot import BootError
from emu.memory.address_space import AddressSpace

HDR_START = 0x1F1
MAGIC_OFFSET, MAGIC = 0x202, b"HdrS"
ONE_MIB = 0x100000


@dataclass(frozen=True)
class Field:
    """A setup header field: offset (in the file and in boot_params alike), struct format,
    the protocol version that added it, and what a header older than that means."""

    offset: int
    fmt: str
    since: int
    default: int = 0

    @property
    def end(self) -> int:
        return self.offset + struct.calcsize("<" + self.fmt)


# boot.rst, "The real-mode kernel header" (2.00 came with "HdrS").
SETUP_SECTS = Field(0x1F1, "B", 0)
VERSION = Field(0x206, "H", 0x200)
TYPE_OF_LOADER = Field(0x210, "B", 0x200)
LOADFLAGS = Field(0x211, "B", 0x200)
CODE32_START = Field(0x214, "I", 0x200)
RAMDISK_IMAGE = Field(0x218, "I", 0x200)
RAMDISK_SIZE = Field(0x21C, "I", 0x200)
HEAP_END_PTR = Field(0x224, "H", 0x201)
CMD_LINE_PTR = Field(0x228, "I", 0x202)
INITRD_ADDR_MAX = Field(0x22C, "I", 0x203, default=0x37FFFFFF)
KERNEL_ALIGNMENT = Field(0x230, "I", 0x205)
RELOCATABLE_KERNEL = Field(0x234, "B", 0x205)
MIN_ALIGNMENT = Field(0x235, "B", 0x20A)
XLOADFLAGS = Field(0x236, "H", 0x20C)
CMDLINE_SIZE = Field(0x238, "I", 0x206, default=255)
HARDWARE_SUBARCH = Field(0x23C, "I", 0x207)
HARDWARE_SUBARCH_DATA = Field(0x240, "Q", 0x207)
PAYLOAD_OFFSET = Field(0x248, "I", 0x208)
PAYLOAD_LENGTH = Field(0x24C, "I", 0x208)
SETUP_DATA = Field(0x250, "Q", 0x209)
PREF_ADDRESS = Field(0x258, "Q", 0x20A)
INIT_SIZE = Field(0x260, "I", 0x20A)
HANDOVER_OFFSET = Field(0x264, "I", 0x20B)
KERNEL_INFO_OFFSET = Field(0x268, "I", 0x20F)
FIELDS = (SETUP_SECTS, VERSION, TYPE_OF_LOADER, LOADFLAGS, CODE32_START, RAMDISK_IMAGE,
          RAMDISK_SIZE, HEAP_END_PTR, CMD_LINE_PTR, INITRD_ADDR_MAX, KERNEL_ALIGNMENT,
          RELOCATABLE_KERNEL, MIN_ALIGNMENT, XLOADFLAGS, CMDLINE_SIZE, HARDWARE_SUBARCH,
          HARDWARE_SUBARCH_DATA, PAYLOAD_OFFSET, PAYLOAD_LENGTH, SETUP_DATA, PREF_ADDRESS,
          INIT_SIZE, HANDOVER_OFFSET, KERNEL_INFO_OFFSET)

DIRECT_PROTOCOL = 0x206  # the 32-bit boot protocol's documented state, and cmdline_size
RSDP_PROTOCOL = 0x20E  # 2.14: boot_params.acpi_rsdp_addr is read by the kernel
# Before 2.02 the command line is found through the boot sector: magic, then its offset
# from the setup's start.
OLD_CMDLINE_MAGIC, OLD_CMDLINE_MAGIC_AT, OLD_CMDLINE_OFFSET_AT = 0xA33F, 0x020, 0x022
# boot_params fields outside the setup header.
ACPI_RSDP_ADDR, E820_ENTRIES, E820_TABLE = 0x070, 0x1E8, 0x2D0
E820_MAX = 128
E820_ENTRY = struct.Struct("<QQI")

LOADED_HIGH, CAN_USE_HEAP = 0x01, 0x80
XLF_CAN_BE_LOADED_ABOVE_4G = 0x02
LOADER_QEMU = 0xB0  # type_of_loader: ID Bh (QEMU), version 0, as QEMU's -kernel writes it
BOOT_CS, BOOT_DS = 0x10, 0x18

# QEMU's layout of what the loader puts below 1 MiB. A kernel loaded high with a 2.02 or
# later header: setup (or, for the direct entry, boot_params) at 10000h, the command line
# at 20000h. Otherwise setup at 90000h with the command line just below 9A000h, and a
# zImage's protected-mode part at 10000h.
GDT_ADDR = 0x8000
ZERO_PAGE = SETUP_ADDR = 0x10000
CMDLINE_ADDR = 0x20000
LOW_SETUP_ADDR, LOW_CMDLINE_END = 0x90000, 0x9A000
ZIMAGE_ADDR = 0x10000
CMDLINE_LIMIT = 0x10000  # the room at CMDLINE_ADDR, whatever cmdline_size allows
HEAP_MARGIN = 0x200  # heap_end_ptr is the heap's end minus this (boot.rst)
# Through firmware, RAM at the top of low memory is the firmware's (its tables, reserved
# in its E820): the initrd stays this far below it.
FIRMWARE_RESERVE = 0x100000
E820_RAM = 1
# The GDT: null, unused, then flat 4 GiB ring-0 code (0x10) and data (0x18).
GDT = struct.pack("<4Q", 0, 0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF)


@dataclass
class LinuxImage:
    """A parsed bzImage: what the loader takes from the file."""

    header: bytes  # the setup header, 0x1F1 up to its end
    setup: bytes  # the real-mode part: boot sector and setup sectors
    kernel: bytes  # the protected-mode part
    version: int

    def field(self, f: Field) -> int:
        """A header field's value, or its default when this header is older than it."""
        if self.version < f.since:
            return f.default
        return struct.unpack_from("<" + f.fmt, self.header, f.offset - HDR_START)[0]

    @property
    def loaded_high(self) -> bool:
        """LOADED_HIGH: the protected-mode part runs at 1 MiB (a bzImage), not 10000h."""
        return bool(self.field(LOADFLAGS) & LOADED_HIGH)

    @property
    def high_layout(self) -> bool:
        """QEMU's "high and recent kernel" layout (setup at 10000h) applies."""
        return self.loaded_high and self.version >= CMD_LINE_PTR.since

    @property
    def needs_real_mode(self) -> bool:
        """Only the real-mode setup can enter this kernel: no 32-bit entry at
        code32_start (0, as iPXE's), a zImage, or a header older than the 32-bit boot
        protocol's documented state."""
        return (self.version < DIRECT_PROTOCOL or not self.loaded_high
                or self.field(CODE32_START) == 0)

    @property
    def load_addr(self) -> int:
        """Where the protected-mode part goes: 1 MiB (10000h for a zImage), or a
        relocatable kernel's pref_address, where it decompresses anyway (loading it
        there saves it moving itself out of the way first)."""
        if not self.loaded_high:
            return ZIMAGE_ADDR
        pref, align = self.field(PREF_ADDRESS), self.field(KERNEL_ALIGNMENT)
        if self.field(RELOCATABLE_KERNEL) and align and pref % align == 0 and \
                ONE_MIB < pref < 1 << 32:
            return pref
        return ONE_MIB

    @property
    def initrd_ceiling(self) -> int:
        """One past the highest initrd byte the kernel takes: initrd_addr_max, or 4 GiB
        with XLF_CAN_BE_LOADED_ABOVE_4G (2.12), as QEMU reads them."""
        if self.field(XLOADFLAGS) & XLF_CAN_BE_LOADED_ABOVE_4G:
            return 1 << 32
        return min(self.field(INITRD_ADDR_MAX) + 1, 1 << 32)


def is_bzimage(data: bytes) -> bool:
    return data[MAGIC_OFFSET:MAGIC_OFFSET + 4] == MAGIC


def header_end(version: int) -> int:
    """Where a header of this protocol version ends at the least: past its last field."""
    return max(f.end for f in FIELDS if f.since <= version)


def parse_bzimage(data: bytes, path: str) -> LinuxImage:
    """Check a bzImage's header and split it; BootError names what is wrong."""
    if len(data) < 0x400 or not is_bzimage(data):
        raise BootError(f"-kernel {path}: not a bzImage (no 'HdrS' at {MAGIC_OFFSET:#x})")
    version = struct.unpack_from("<H", data, VERSION.offset)[0]
    if version < VERSION.since:
        raise BootError(f"-kernel {path}: boot protocol {version >> 8}.{version & 0xFF:02} "
                        f"is not a 2.x protocol")
    hdr_end = MAGIC_OFFSET + data[0x201]  # the header ends where its jump lands
    setup_len = ((data[SETUP_SECTS.offset] or 4) + 1) * 512
    if hdr_end > setup_len or setup_len >= len(data):
        raise BootError(f"-kernel {path}: setup of {setup_len} bytes does not fit the file")
    if hdr_end < header_end(version):
        raise BootError(f"-kernel {path}: setup header shorter than its protocol version "
                        f"{version >> 8}.{version & 0xFF:02} says")
    return LinuxImage(header=data[HDR_START:hdr_end], setup=data[:setup_len],
                      kernel=data[setup_len:], version=version)


@dataclass
class LinuxBoot:
    """Where to enter the kernel and what it was given."""

    entry: int
    boot_params: int
    initrd_addr: int | None = None


@dataclass
class Layout:
    """Where the loader puts each part, checked against the memory map."""

    cmdline: bytes  # NUL-terminated
    setup_addr: int  # the real-mode part (for the direct entry, boot_params)
    cmdline_addr: int
    kernel_addr: int
    kernel_end: int
    initrd_addr: int | None

    @property
    def heap_end_ptr(self) -> int:
        """The setup heap ends where the command line starts (QEMU's choice)."""
        return self.cmdline_addr - self.setup_addr - HEAP_MARGIN


def _low_memory(image: LinuxImage, line: bytes) -> tuple[int, int, int]:
    """Setup address, command line address and the longest command line, in QEMU's
    layout for this kernel."""
    if image.high_layout:
        return SETUP_ADDR, CMDLINE_ADDR, min(image.field(CMDLINE_SIZE), CMDLINE_LIMIT - 1)
    return (LOW_SETUP_ADDR, LOW_CMDLINE_END - ((len(line) + 16) & ~15),
            image.field(CMDLINE_SIZE))


def _check_kernel_fits(kernel_addr: int, kernel_end: int, setup_addr: int,
                       e820: list[tuple[int, int, int]]) -> None:
    if kernel_addr < setup_addr < kernel_end:
        raise BootError(f"-kernel: a zImage of {kernel_end - kernel_addr} bytes does not fit "
                        f"between {kernel_addr:#x} and its setup at {setup_addr:#x}")
    if not any(kind == E820_RAM and base <= kernel_addr and kernel_end <= base + length
               for base, length, kind in e820):
        raise BootError(f"-kernel: the kernel needs RAM up to {kernel_end:#x}; "
                        f"give more memory with -m")


def _layout(image: LinuxImage, cmdline: str, initrd_size: int | None, initrd_path: str | None,
            e820: list[tuple[int, int, int]]) -> Layout:
    line = cmdline.encode()
    setup_addr, cmdline_addr, limit = _low_memory(image, line)
    if len(line) > limit:
        raise BootError(f"-append: command line of {len(line)} bytes; this kernel takes "
                        f"at most {limit}")
    if setup_addr + len(image.setup) > cmdline_addr - HEAP_MARGIN:
        raise BootError(f"-kernel: real-mode setup of {len(image.setup)} bytes does not fit "
                        f"at {setup_addr:#x} with its heap below the command line at "
                        f"{cmdline_addr:#x}")
    kernel_addr = image.load_addr
    kernel_end = kernel_addr + max(len(image.kernel), image.field(INIT_SIZE))
    _check_kernel_fits(kernel_addr, kernel_end, setup_addr, e820)
    initrd_addr = None
    if initrd_size is not None:
        initrd_addr = _place_initrd(image, initrd_size, initrd_path or "", kernel_end, e820)
    return Layout(cmdline=line + b"\0", setup_addr=setup_addr, cmdline_addr=cmdline_addr,
                  kernel_addr=kernel_addr, kernel_end=kernel_end, initrd_addr=initrd_addr)


def _fill_header(buf: bytearray, image: LinuxImage, layout: Layout,
                 initrd_size: int | None) -> None:
    """The loader's fields of the setup header, in boot_params or in the setup sectors
    (both hold the header at 0x1F1), each only where this protocol version has it."""
    buf[TYPE_OF_LOADER.offset] = LOADER_QEMU
    if image.version >= HEAP_END_PTR.since:
        buf[LOADFLAGS.offset] |= CAN_USE_HEAP
        struct.pack_into("<H", buf, HEAP_END_PTR.offset, layout.heap_end_ptr)
    if image.version >= CMD_LINE_PTR.since:
        struct.pack_into("<I", buf, CMD_LINE_PTR.offset, layout.cmdline_addr)
    else:
        struct.pack_into("<HH", buf, OLD_CMDLINE_MAGIC_AT, OLD_CMDLINE_MAGIC,
                         layout.cmdline_addr - layout.setup_addr)
    if layout.kernel_addr > ONE_MIB:
        # A relocatable kernel loaded at pref_address finds itself from code32_start.
        struct.pack_into("<I", buf, CODE32_START.offset, layout.kernel_addr)
    if layout.initrd_addr is not None:
        struct.pack_into("<II", buf, RAMDISK_IMAGE.offset, layout.initrd_addr, initrd_size)


def load_linux(image: LinuxImage, cmdline: str, initrd: bytes | None, initrd_path: str | None,
               mem: AddressSpace, e820: list[tuple[int, int, int]],
               rsdp: int | None = None) -> LinuxBoot:
    """Put kernel, boot_params, command line and initrd into guest RAM for the 32-bit
    entry (a kernel that needs its real-mode setup goes through firmware instead)."""
    if image.needs_real_mode:
        raise BootError("-kernel: this kernel enters only through its real-mode setup, "
                        "which needs firmware")
    initrd_size = None if initrd is None else len(initrd)
    layout = _layout(image, cmdline, initrd_size, initrd_path, e820)
    if len(e820) > E820_MAX:
        raise BootError(f"-kernel: memory map of {len(e820)} entries (at most {E820_MAX})")
    mem.write(layout.kernel_addr, image.kernel)
    params = bytearray(4096)
    params[HDR_START:HDR_START + len(image.header)] = image.header
    _fill_header(params, image, layout, initrd_size)
    mem.write(layout.cmdline_addr, layout.cmdline)
    if initrd is not None:
        mem.write(layout.initrd_addr, initrd)
    params[E820_ENTRIES] = len(e820)
    for i, entry_ in enumerate(e820):
        E820_ENTRY.pack_into(params, E820_TABLE + i * E820_ENTRY.size, *entry_)
    if rsdp is not None and image.version >= RSDP_PROTOCOL:
        struct.pack_into("<Q", params, ACPI_RSDP_ADDR, rsdp)
    mem.write(layout.setup_addr, bytes(params))
    mem.write(GDT_ADDR, GDT)
    entry = struct.unpack_from("<I", params, CODE32_START.offset)[0]  # as the loader left it
    return LinuxBoot(entry=entry, boot_params=layout.setup_addr,
                     initrd_addr=layout.initrd_addr)


@dataclass
class FirmwareBoot:
    """What the firmware's option ROM copies where (fw_cfg's setup, kernel, cmdline and
    initrd items with their addresses)."""

    setup: bytes  # with the loader's header fields filled in
    setup_addr: int
    kernel_addr: int
    cmdline: bytes
    cmdline_addr: int
    initrd_addr: int | None


def firmware_boot(image: LinuxImage, cmdline: str, initrd_size: int | None,
                  initrd_path: str | None, ram_below_4g: int) -> FirmwareBoot:
    """The layout of a boot through firmware; BootError when it does not fit."""
    usable = ram_below_4g - FIRMWARE_RESERVE - ONE_MIB
    if usable <= 0:
        raise BootError(f"-kernel: {ram_below_4g >> 20} MiB of RAM is too little to boot "
                        "Linux through firmware; give more memory with -m")
    # Low memory up to the low setup address is free for a zImage's protected-mode part.
    e820 = [(0, LOW_SETUP_ADDR, E820_RAM), (ONE_MIB, usable, E820_RAM)]
    layout = _layout(image, cmdline, initrd_size, initrd_path, e820)
    setup = bytearray(image.setup)
    _fill_header(setup, image, layout, initrd_size)
    return FirmwareBoot(setup=bytes(setup), setup_addr=layout.setup_addr,
                        kernel_addr=layout.kernel_addr, cmdline=layout.cmdline,
                        cmdline_addr=layout.cmdline_addr, initrd_addr=layout.initrd_addr)


def _place_initrd(image: LinuxImage, size: int, path: str, kernel_end: int,
                  e820: list[tuple[int, int, int]]) -> int:
    """As high as the kernel allows: the top of the highest RAM range below its
    ceiling, page-aligned, above everything the kernel occupies."""
    ceiling = image.initrd_ceiling
    for base, length, kind in sorted(e820, reverse=True):
        top = min(base + length, ceiling)
        addr = (top - size) & ~0xFFF
        if kind == E820_RAM and addr >= max(base, kernel_end):
            return addr
    raise BootError(f"-initrd {path}: {size} bytes do not fit in guest RAM above the kernel "
                    f"(ends at {kernel_end:#x}) and below {ceiling:#x}; give more memory "
                    f"with -m")
