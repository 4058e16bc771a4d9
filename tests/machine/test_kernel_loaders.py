"""The -kernel loaders' entry states and layouts, field by field.

Multiboot 0.6.96 section 3.2/3.3 as QEMU's loader fills them (hw/i386/multiboot.c and
its multiboot.S option ROM); Linux's Documentation/x86/boot.rst read per protocol version,
with QEMU's x86_load_linux layout for the real-mode entry.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import unicorn.x86_const as x

from emu.machine.pc import linux, multiboot
from emu.machine.pc.multiboot import BootError
from emu.machine.pc.pc import OWN_BIOS

HELLO = Path(__file__).resolve().parents[1] / "guests" / "build" / "hello.elf"
MIB = 1 << 20
# What follows a short header in iPXE's ipxe.lkrn (protocol 2.07): text, which a loader
# reading init_size regardless of the version takes for 0x353D3538 bytes.
TEXT = b"5.2c6a4c85-5.1 iPXE -- Open Source Network Boot Firmware -- http://ipxe.org "


# boot.rst, "The real-mode kernel header", restated here so that the tests read the
# specification, not the loader: field -> (offset, format, protocol version that added it).
HEADER = {
    "type_of_loader": (0x210, "B", 0x200), "loadflags": (0x211, "B", 0x200),
    "code32_start": (0x214, "I", 0x200), "ramdisk_size": (0x21C, "I", 0x200),
    "heap_end_ptr": (0x224, "H", 0x201), "cmd_line_ptr": (0x228, "I", 0x202),
    "initrd_addr_max": (0x22C, "I", 0x203), "kernel_alignment": (0x230, "I", 0x205),
    "relocatable_kernel": (0x234, "B", 0x205), "xloadflags": (0x236, "H", 0x20C),
    "cmdline_size": (0x238, "I", 0x206), "hardware_subarch_data": (0x240, "Q", 0x207),
    "payload_length": (0x24C, "I", 0x208), "setup_data": (0x250, "Q", 0x209),
    "pref_address": (0x258, "Q", 0x20A), "init_size": (0x260, "I", 0x20A),
    "handover_offset": (0x264, "I", 0x20B), "kernel_info_offset": (0x268, "I", 0x20F),
}
LOADED_HIGH, CAN_USE_HEAP = 0x01, 0x80


def bzimage(version: int, *, loadflags: int = LOADED_HIGH, code32_start: int = MIB,
            kernel_size: int = 4096, **fields: int) -> bytes:
    """A bzImage with a ``version`` header whose jump ends it where that version's last
    field does, text after it (and in every field the version does not have), zeros in
    the fields it has (cmdline_size 2047), and the named fields set."""
    image = bytearray((4 + 1) * 512 + kernel_size)
    image[0x1F1] = 4
    image[0x206:0x300] = (TEXT * 4)[:0x300 - 0x206]
    ends = [off + struct.calcsize("<" + fmt) for off, fmt, since in HEADER.values()
            if since <= version]
    image[0x201] = max(ends) - 0x202
    image[0x202:0x206] = b"HdrS"
    values = {name: 0 for name, (_, _, since) in HEADER.items() if since <= version}
    values |= {"loadflags": loadflags, "code32_start": code32_start}
    if version >= 0x206:
        values["cmdline_size"] = 2047
    for name, value in (values | fields).items():
        off, fmt, _ = HEADER[name]
        struct.pack_into("<" + fmt, image, off, value)
    struct.pack_into("<H", image, 0x206, version)
    image[-kernel_size:-kernel_size + 4] = b"KERN"
    return bytes(image)


def parse(data: bytes) -> linux.LinuxImage:
    return linux.parse_bzimage(data, "bzImage")


def through_firmware(data: bytes, append: str = "", initrd: int | None = None,
                     ram: int = 256 * MIB) -> linux.FirmwareBoot:
    return linux.firmware_boot(parse(data), append, initrd, "initrd", ram)


def u16(buf: bytes, off: int) -> int:
    return struct.unpack_from("<H", buf, off)[0]


def u32(buf: bytes, off: int) -> int:
    return struct.unpack_from("<I", buf, off)[0]


# -- Linux: what each protocol version has ------------------------------------------------

def test_fields_a_header_does_not_have_are_not_read():
    """ipxe.lkrn's case: a 2.07 header, text where 2.10's init_size and pref_address
    would be. The kernel needs its own size of RAM, not 0x353D3538 bytes."""
    data = bzimage(0x207, code32_start=0)
    assert data[0x258:0x264] in TEXT * 4  # text where 2.10 has its fields
    for mib in (128, 256, 1024):
        assert through_firmware(data, ram=mib * MIB).kernel_addr == MIB


def test_an_old_header_means_the_documented_defaults():
    data = bzimage(0x202)
    through_firmware(data, append="x" * 255)
    with pytest.raises(BootError, match="command line of 256 bytes; this kernel takes at "
                                        "most 255"):
        through_firmware(data, append="x" * 256)
    boot = through_firmware(data, initrd=4096, ram=2048 * MIB)
    assert boot.initrd_addr == 0x38000000 - 4096


@pytest.mark.parametrize("version, xloadflags, ceiling", [
    (0x20C, 0x02, 1 << 32),  # XLF_CAN_BE_LOADED_ABOVE_4G: QEMU puts it under 4 GiB
    (0x20C, 0x00, 0x80000000),  # initrd_addr_max
    (0x20B, 0x02, 0x80000000),  # 2.11 has no xloadflags: those bytes are padding
])
def test_initrd_ceiling(version, xloadflags, ceiling):
    data = bzimage(version, initrd_addr_max=0x7FFFFFFF, xloadflags=xloadflags)
    boot = through_firmware(data, initrd=4096, ram=3 << 30)
    assert boot.initrd_addr + 4096 <= ceiling
    assert boot.initrd_addr >= min(ceiling, (3 << 30) - 2 * MIB) - 2 * MIB


def test_a_header_shorter_than_its_version_is_refused():
    data = bytearray(bzimage(0x20F))
    data[0x201] = 0x66  # ends at 268h: 2.15's kernel_info_offset is cut off
    with pytest.raises(BootError, match="shorter than its protocol version 2.15 says"):
        parse(bytes(data))


@pytest.mark.parametrize("version, loadflags, code32_start, real_mode", [
    (0x20F, LOADED_HIGH, MIB, False),  # Debian's kernels: the 32-bit entry
    (0x206, LOADED_HIGH, MIB, False),
    (0x207, LOADED_HIGH, 0, True),  # iPXE: no 32-bit entry
    (0x205, LOADED_HIGH, MIB, True),  # before the 32-bit protocol's state
    (0x20F, 0, 0x1000, True),  # a zImage
])
def test_which_kernels_enter_through_real_mode_setup(machine, tmp_path, version, loadflags,
                                                     code32_start, real_mode):
    kernel = tmp_path / "kernel"
    kernel.write_bytes(bzimage(version, loadflags=loadflags, code32_start=code32_start))
    m = machine(kernel=str(kernel), ram_size=256 * MIB)
    assert (m.linux is None) is real_mode  # None: the firmware boots it


def test_real_mode_entry_layout_of_a_recent_kernel_is_qemus():
    """Setup at 10000h, command line at 20000h, heap_end_ptr = FE00h, CAN_USE_HEAP,
    type_of_loader B0h, cmd_line_ptr; code32_start left as the kernel has it."""
    boot = through_firmware(bzimage(0x207, code32_start=0), append="console=ttyS0")
    setup = boot.setup
    assert (boot.setup_addr, boot.cmdline_addr, boot.kernel_addr) == (0x10000, 0x20000, MIB)
    assert boot.cmdline == b"console=ttyS0\0"
    assert setup[0x210] == 0xB0
    assert setup[0x211] == LOADED_HIGH | CAN_USE_HEAP
    assert u16(setup, 0x224) == 0xFE00
    assert u32(setup, 0x228) == 0x20000
    assert u32(setup, 0x214) == 0


def test_real_mode_entry_layout_of_an_old_kernel_is_qemus():
    """Before 2.02: setup at 90000h, the command line just below 9A000h found through
    the A33Fh magic at 20h; no cmd_line_ptr written where the header has none."""
    data = bzimage(0x201)
    boot = through_firmware(data, append="root=/dev/hda")
    setup = boot.setup
    cmdline_addr = 0x9A000 - 16  # 13 bytes + NUL, rounded up as QEMU does
    assert (boot.setup_addr, boot.cmdline_addr) == (0x90000, cmdline_addr)
    assert u16(setup, 0x20) == 0xA33F and u16(setup, 0x22) == cmdline_addr - 0x90000
    assert u16(setup, 0x224) == cmdline_addr - 0x90000 - 0x200
    assert setup[0x228:0x22C] == data[0x228:0x22C]  # text, not a cmd_line_ptr


def test_a_200_header_gets_no_heap():
    data = bzimage(0x200)
    setup = through_firmware(data).setup
    assert setup[0x211] == LOADED_HIGH  # no CAN_USE_HEAP
    assert setup[0x224:0x226] == data[0x224:0x226]
    assert setup[0x210] == 0xB0


def test_a_zimage_runs_at_10000h_and_must_fit_below_its_setup():
    boot = through_firmware(bzimage(0x204, loadflags=0, code32_start=0x1000))
    assert (boot.kernel_addr, boot.setup_addr) == (0x10000, 0x90000)
    with pytest.raises(BootError, match="a zImage of 524289 bytes does not fit between "
                                        "0x10000 and its setup at 0x90000"):
        through_firmware(bzimage(0x204, loadflags=0, kernel_size=0x80001))


def test_direct_loader_takes_only_kernels_with_a_32_bit_entry(machine):
    m = machine(kernel=str(HELLO))
    with pytest.raises(BootError, match="enters only through its real-mode setup"):
        linux.load_linux(parse(bzimage(0x207, code32_start=0)), "", None, None, m.mem,
                         m.memory_map())


def test_a_real_mode_kernel_boots_through_pyemus_bios(machine, tmp_path):
    kernel = tmp_path / "ipxe.lkrn"
    kernel.write_bytes(bzimage(0x207, code32_start=0))
    m = machine(kernel=str(kernel), ram_size=256 * MIB)
    assert m.kernel is None and m.linux is None  # no direct load: the firmware boots it
    fw = m.fw_cfg
    assert fw.items[fw.file_key("bootorder")] == b"/rom@genroms/linuxboot_dma.bin\n"
    assert m.mem.rom.tobytes() == OWN_BIOS.read_bytes()


def test_debian_style_kernel_is_still_entered_directly(machine, tmp_path):
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(bzimage(0x20F, init_size=0x800000, cmdline_size=2047))
    m = machine(kernel=str(kernel), append="console=ttyS0", ram_size=256 * MIB)
    assert m.kernel is not None and m.cpu.uc.reg_read(x.UC_X86_REG_RIP) == MIB
    params = m.mem.read(linux.ZERO_PAGE, 4096)
    assert params[0x210] == 0xB0 and u32(params, 0x228) == 0x20000
    assert m.cpu.uc.reg_read(x.UC_X86_REG_RSI) == linux.ZERO_PAGE


# -- Multiboot: the state QEMU's loader leaves --------------------------------------------

def test_multiboot_entry_state_is_qemus(machine):
    m = machine(kernel=str(HELLO), append="a b", ram_size=64 * MIB)
    reg = m.cpu.uc.reg_read
    _, base, limit, _ = reg(x.UC_X86_REG_GDTR)
    assert m.mem.read(base, limit + 1) == multiboot.GDT
    assert limit == 0x27 and struct.unpack("<5Q", multiboot.GDT)[1:3] == (
        0x00CF9A000000FFFF, 0x00CF93000000FFFF)
    assert not any(kind == 1 and start <= base < start + size
                   for start, size, kind in m.memory_map())  # no kernel reuses it
    assert reg(x.UC_X86_REG_CS) == 0x08
    assert [reg(r) for r in (x.UC_X86_REG_DS, x.UC_X86_REG_ES, x.UC_X86_REG_FS,
                             x.UC_X86_REG_GS, x.UC_X86_REG_SS)] == [0x10] * 5
    assert reg(x.UC_X86_REG_EFLAGS) == 0x06
    assert reg(x.UC_X86_REG_EAX) == 0x2BADB002
    assert reg(x.UC_X86_REG_ECX) == reg(x.UC_X86_REG_EIP)
    assert 0x500 < reg(x.UC_X86_REG_ESP) <= multiboot.INFO_ADDR


def test_multiboot_info_fields_are_qemus(machine):
    m = machine(kernel=str(HELLO), append="a b", ram_size=64 * MIB)
    info = m.mem.read(m.cpu.uc.reg_read(x.UC_X86_REG_EBX), 88)
    (flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr) = \
        struct.unpack_from("<7I", info)
    mmap_length, mmap_addr = struct.unpack_from("<II", info, 44)
    assert flags == 0x24F  # mem, boot_device, cmdline, mods, mmap, boot_loader_name
    assert (mem_lower, mem_upper) == (639, 63 * 1024)
    assert boot_device == 0x8000FFFF
    assert m.mem.read(cmdline, len(str(HELLO)) + 5) == f"{HELLO} a b\0".encode()
    assert mods_count == 0 and mods_addr != 0
    entries = [struct.unpack_from("<IQQI", m.mem.read(mmap_addr, mmap_length), off)
               for off in range(0, mmap_length, 24)]
    assert [e[1:] for e in entries] == m.memory_map() and {e[0] for e in entries} == {20}


def test_multiboot_kernel_over_the_loaders_area_is_refused(machine, tmp_path):
    """An a.out-kludge kernel at 8000h whose bss reaches the information structure."""
    hdr = struct.pack("<8I", multiboot.MAGIC, 0x10000, (-(multiboot.MAGIC + 0x10000)) & 0xFFFFFFFF,
                      0x8000, 0x8000, 0, 0xA000, 0x8000)
    kernel = tmp_path / "low.bin"
    kernel.write_bytes(hdr + bytes(64))
    with pytest.raises(BootError, match="overlaps the loader's information and GDT"):
        machine(kernel=str(kernel))
