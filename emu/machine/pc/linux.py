"""Linux x86 boot protocol loader for ``-kernel bzImage``: direct, or through firmware.

Follows the kernel's Documentation/x86/boot.rst: the real-mode header at 0x1F1 ("HdrS"
at 0x202, protocol version at 0x206; 2.06 or later is required here, for cmdline_size
and the 32-bit entry's documented state), the protected-mode kernel after
(setup_sects + 1) sectors, loaded at code32_start (1 MiB); boot_params (the "zero
page") with the setup header copied in at 0x1F1 and the loader's fields filled in
(type_of_loader, loadflags, heap_end_ptr, cmd_line_ptr, ramdisk_image/size), the E820
map at 0x2D0 with its count at 0x1E8, the ACPI RSDP address at 0x070 (protocol 2.14 and
later); and the 32-bit boot protocol's entry state: flat
4 GiB segments, a GDT holding __BOOT_CS (0x10) and __BOOT_DS (0x18), ESI = boot_params,
EBP = EDI = EBX = 0, interrupts off, paging off.
Through firmware (fw_cfg_boot), the loader's part is the same but done in the setup
sectors themselves, which the firmware's option ROM (firmware/linuxboot.S) copies to
SETUP_SEG:0 with the kernel, command line and initrd at the addresses given here, then
enters setup at SETUP_SEG+20h:0 in real mode with SS = DS = SETUP_SEG and SP at the
heap's end, as boot.rst's "Running the kernel" asks. Setup then asks the firmware for
the memory map (INT 15h E820) itself.
The image is hostile input: every field used is checked against the file and RAM.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from emu.machine.pc.multiboot import BootError
from emu.memory.address_space import AddressSpace

HDR_START = 0x1F1
MAGIC_OFFSET, MAGIC = 0x202, b"HdrS"
MIN_PROTOCOL = 0x206
RSDP_PROTOCOL = 0x20E  # 2.14: boot_params.acpi_rsdp_addr is read by the kernel
ONE_MIB = 0x100000

# Setup header fields (offsets in the file and in boot_params alike).
SETUP_SECTS, VERSION, TYPE_OF_LOADER, LOADFLAGS = 0x1F1, 0x206, 0x210, 0x211
CODE32_START, RAMDISK_IMAGE, RAMDISK_SIZE, HEAP_END_PTR = 0x214, 0x218, 0x21C, 0x224
CMD_LINE_PTR, INITRD_ADDR_MAX, CMDLINE_SIZE = 0x228, 0x22C, 0x238
KERNEL_ALIGNMENT, RELOCATABLE_KERNEL, PREF_ADDRESS, INIT_SIZE = 0x230, 0x234, 0x258, 0x260
# boot_params fields outside the setup header.
ACPI_RSDP_ADDR, E820_ENTRIES, E820_TABLE = 0x070, 0x1E8, 0x2D0
E820_MAX = 128
E820_ENTRY = struct.Struct("<QQI")

LOADED_HIGH, CAN_USE_HEAP = 0x01, 0x80
LOADER_UNDEFINED = 0xFF  # type_of_loader for a loader with no assigned ID
BOOT_CS, BOOT_DS = 0x10, 0x18

# Low-memory layout of what the loader builds, all below the kernel's 1 MiB.
GDT_ADDR = 0x8000
ZERO_PAGE = 0x10000
CMDLINE_ADDR = 0x20000
CMDLINE_LIMIT = 0x10000  # the room at CMDLINE_ADDR, whatever cmdline_size allows
HEAP_END = 0xFE00  # the real-mode heap's end as setup sees it (offset in its segment)
SETUP_ADDR = 0x10000  # real-mode setup through firmware: segment 1000h, below the cmdline
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
    code32_start: int
    initrd_addr_max: int
    cmdline_size: int
    load_addr: int


def is_bzimage(data: bytes) -> bool:
    return data[MAGIC_OFFSET:MAGIC_OFFSET + 4] == MAGIC


def _u(data: bytes, off: int, fmt: str) -> int:
    return struct.unpack_from("<" + fmt, data, off)[0]


def parse_bzimage(data: bytes, path: str) -> LinuxImage:
    """Check a bzImage's header and split it; BootError names what is wrong."""
    if len(data) < 0x400 or not is_bzimage(data):
        raise BootError(f"-kernel {path}: not a bzImage (no 'HdrS' at {MAGIC_OFFSET:#x})")
    version = _u(data, VERSION, "H")
    if version < MIN_PROTOCOL:
        raise BootError(f"-kernel {path}: boot protocol {version >> 8}.{version & 0xFF:02} "
                        f"is too old (2.06 or later needed)")
    hdr_end = MAGIC_OFFSET + data[0x201]  # the header ends where its jump lands
    setup_len = ((data[SETUP_SECTS] or 4) + 1) * 512
    if hdr_end > setup_len or setup_len >= len(data):
        raise BootError(f"-kernel {path}: setup of {setup_len} bytes does not fit the file")
    header = data[HDR_START:hdr_end]
    if len(header) < INIT_SIZE + 4 - HDR_START:
        raise BootError(f"-kernel {path}: setup header shorter than its protocol version says")
    load_addr = ONE_MIB
    pref = _u(data, PREF_ADDRESS, "Q")
    align = _u(data, KERNEL_ALIGNMENT, "I")
    if data[RELOCATABLE_KERNEL] and align and pref % align == 0 and ONE_MIB < pref < 1 << 32:
        # A relocatable kernel decompresses at pref_address anyway: loading it there
        # saves it moving itself out of the way first.
        load_addr = pref
    return LinuxImage(header=header, setup=data[:setup_len], kernel=data[setup_len:],
                      version=version,
                      code32_start=_u(data, CODE32_START, "I"),
                      initrd_addr_max=_u(data, INITRD_ADDR_MAX, "I"),
                      cmdline_size=_u(data, CMDLINE_SIZE, "I"), load_addr=load_addr)


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
    entry: int  # code32_start as the loader sets it
    kernel_end: int
    initrd_addr: int | None


def _layout(image: LinuxImage, cmdline: str, initrd_size: int | None, initrd_path: str | None,
            e820: list[tuple[int, int, int]]) -> Layout:
    init_size = _u(image.header, INIT_SIZE - HDR_START, "I")
    kernel_end = image.load_addr + max(len(image.kernel), init_size)
    if not any(kind == E820_RAM and base <= image.load_addr and kernel_end <= base + length
               for base, length, kind in e820):
        raise BootError(f"-kernel: the kernel needs RAM up to {kernel_end:#x}; "
                        f"give more memory with -m")
    line = cmdline.encode()
    limit = min(image.cmdline_size, CMDLINE_LIMIT - 1)
    if len(line) > limit:
        raise BootError(f"-append: command line of {len(line)} bytes; this kernel takes "
                        f"at most {limit}")
    initrd_addr = None
    if initrd_size is not None:
        initrd_addr = _place_initrd(image, initrd_size, initrd_path or "", kernel_end, e820)
    # code32_start is where the kernel was loaded: a relocatable one loaded elsewhere
    # than its default finds itself from there.
    entry = image.load_addr if image.load_addr != ONE_MIB else image.code32_start
    return Layout(cmdline=line + b"\0", entry=entry, kernel_end=kernel_end,
                  initrd_addr=initrd_addr)


def _fill_header(buf: bytearray, layout: Layout, initrd_size: int | None) -> None:
    """The loader's fields of the setup header, in boot_params or in the setup sectors
    (both hold the header at 0x1F1)."""
    buf[TYPE_OF_LOADER] = LOADER_UNDEFINED
    buf[LOADFLAGS] |= LOADED_HIGH | CAN_USE_HEAP
    struct.pack_into("<H", buf, HEAP_END_PTR, HEAP_END - 0x200)
    struct.pack_into("<I", buf, CODE32_START, layout.entry)
    struct.pack_into("<I", buf, CMD_LINE_PTR, CMDLINE_ADDR)
    if layout.initrd_addr is not None:
        struct.pack_into("<II", buf, RAMDISK_IMAGE, layout.initrd_addr, initrd_size)


def load_linux(image: LinuxImage, cmdline: str, initrd: bytes | None, initrd_path: str | None,
               mem: AddressSpace, e820: list[tuple[int, int, int]],
               rsdp: int | None = None) -> LinuxBoot:
    """Put kernel, boot_params, command line and initrd into guest RAM."""
    initrd_size = None if initrd is None else len(initrd)
    layout = _layout(image, cmdline, initrd_size, initrd_path, e820)
    if len(e820) > E820_MAX:
        raise BootError(f"-kernel: memory map of {len(e820)} entries (at most {E820_MAX})")
    mem.write(image.load_addr, image.kernel)
    params = bytearray(4096)
    params[HDR_START:HDR_START + len(image.header)] = image.header
    _fill_header(params, layout, initrd_size)
    mem.write(CMDLINE_ADDR, layout.cmdline)
    if initrd is not None:
        mem.write(layout.initrd_addr, initrd)
    params[E820_ENTRIES] = len(e820)
    for i, entry_ in enumerate(e820):
        E820_ENTRY.pack_into(params, E820_TABLE + i * E820_ENTRY.size, *entry_)
    if rsdp is not None and image.version >= RSDP_PROTOCOL:
        struct.pack_into("<Q", params, ACPI_RSDP_ADDR, rsdp)
    mem.write(ZERO_PAGE, bytes(params))
    mem.write(GDT_ADDR, GDT)
    return LinuxBoot(entry=layout.entry, boot_params=ZERO_PAGE, initrd_addr=layout.initrd_addr)


@dataclass
class FirmwareBoot:
    """What the firmware's option ROM copies where (fw_cfg's setup, kernel, cmdline and
    initrd items with their addresses)."""

    setup: bytes  # with the loader's header fields filled in
    kernel_addr: int
    cmdline: bytes
    initrd_addr: int | None
    setup_addr: int = SETUP_ADDR
    cmdline_addr: int = CMDLINE_ADDR


def firmware_boot(image: LinuxImage, cmdline: str, initrd_size: int | None,
                  initrd_path: str | None, ram_below_4g: int) -> FirmwareBoot:
    """The layout of a boot through firmware; BootError when it does not fit."""
    if len(image.setup) > HEAP_END - 0x200:
        raise BootError(f"-kernel: real-mode setup of {len(image.setup)} bytes does not fit "
                        f"below its heap at {HEAP_END - 0x200:#x}")
    usable = ram_below_4g - FIRMWARE_RESERVE - ONE_MIB
    if usable <= 0:
        raise BootError(f"-kernel: {ram_below_4g >> 20} MiB of RAM is too little to boot "
                        "Linux through firmware; give more memory with -m")
    layout = _layout(image, cmdline, initrd_size, initrd_path, [(ONE_MIB, usable, E820_RAM)])
    setup = bytearray(image.setup)
    _fill_header(setup, layout, initrd_size)
    return FirmwareBoot(setup=bytes(setup), kernel_addr=image.load_addr,
                        cmdline=layout.cmdline, initrd_addr=layout.initrd_addr)


def _place_initrd(image: LinuxImage, size: int, path: str, kernel_end: int,
                  e820: list[tuple[int, int, int]]) -> int:
    """As high as the kernel allows: the top of the highest RAM range below
    initrd_addr_max, page-aligned, above everything the kernel occupies."""
    ceiling = min(image.initrd_addr_max + 1, 1 << 32)
    for base, length, kind in sorted(e820, reverse=True):
        top = min(base + length, ceiling)
        addr = (top - size) & ~0xFFF
        if kind == E820_RAM and addr >= max(base, kernel_end):
            return addr
    raise BootError(f"-initrd {path}: {size} bytes do not fit in guest RAM above the kernel "
                    f"(ends at {kernel_end:#x}) and below {ceiling:#x}; give more memory "
                    f"with -m")
