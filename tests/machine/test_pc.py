"""The pc board's wiring, seen through the ports firmware uses: fw_cfg items, CMOS."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from emu.devices import fw_cfg
from emu.machine.config import MachineConfig
from emu.machine.pc.multiboot import BootError
from emu.machine.pc.pc import OWN_BIOS, PcMachine

HELLO = Path(__file__).resolve().parents[1] / "guests" / "build" / "hello.elf"


def item(m: PcMachine, key: int, n: int) -> bytes:
    m.io.write(0x510, 2, key)
    return bytes(m.io.read(0x511, 1) for _ in range(n))


def cmos(m: PcMachine, index: int) -> int:
    m.io.write(0x70, 1, index)
    return m.io.read(0x71, 1)


def test_fw_cfg_describes_the_machine(machine):
    m = machine(kernel=str(HELLO), ram_size=256 << 20)
    assert item(m, fw_cfg.SIGNATURE, 4) == b"QEMU"
    assert struct.unpack("<Q", item(m, fw_cfg.RAM_SIZE, 8))[0] == 256 << 20
    assert struct.unpack("<H", item(m, fw_cfg.NB_CPUS, 2))[0] == 1
    assert struct.unpack("<H", item(m, fw_cfg.NOGRAPHIC, 2))[0] == 1
    assert item(m, fw_cfg.BOOT_DEVICE, 1) == b"c"


def bzimage(tmp_path: Path, setup_sects: int = 2) -> Path:
    """A minimal relocatable bzImage (protocol 2.15) with a 4 KiB kernel part."""
    image = bytearray((setup_sects + 1) * 512 + 4096)
    image[0x1F1] = setup_sects
    image[0x201] = 0x6A  # the header's jump: the header ends at 26Ch, as 2.15's does
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", image, 0x206, 0x20F)
    image[0x211] = 0x01  # loadflags: LOADED_HIGH
    struct.pack_into("<I", image, 0x214, 0x100000)  # code32_start
    struct.pack_into("<I", image, 0x22C, 0x37FFFFFF)  # initrd_addr_max
    struct.pack_into("<I", image, 0x230, 0x200000)  # kernel_alignment
    image[0x234] = 1  # relocatable
    struct.pack_into("<I", image, 0x238, 2048)  # cmdline_size
    struct.pack_into("<Q", image, 0x258, 0x1000000)  # pref_address
    struct.pack_into("<I", image, 0x260, 0x800000)  # init_size
    image[-4096:-4092] = b"KERN"
    path = tmp_path / "bzImage"
    path.write_bytes(bytes(image))
    return path


def u32_item(m: PcMachine, key: int) -> int:
    return struct.unpack("<I", item(m, key, 4))[0]


def test_kernel_through_firmware_is_offered_in_fw_cfg(machine, tmp_path):
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"initrd-bytes")
    kernel = bzimage(tmp_path)
    m = machine(kernel=str(kernel), bios=str(OWN_BIOS), append="console=ttyS0",
                initrd=str(initrd), ram_size=256 << 20)
    # each part: where the option ROM puts it, its size, its bytes
    assert u32_item(m, fw_cfg.SETUP_ADDR) == 0x10000
    assert u32_item(m, fw_cfg.SETUP_SIZE) == 1536
    setup = item(m, fw_cfg.SETUP_DATA, 1536)
    assert u32_item(m, fw_cfg.KERNEL_ADDR) == 0x1000000  # pref_address
    assert u32_item(m, fw_cfg.KERNEL_SIZE) == 4096
    assert item(m, fw_cfg.KERNEL_DATA, 4) == b"KERN"
    assert u32_item(m, fw_cfg.CMDLINE_ADDR) == 0x20000
    assert item(m, fw_cfg.CMDLINE_DATA, 14) == b"console=ttyS0\0"
    initrd_addr = u32_item(m, fw_cfg.INITRD_ADDR)
    assert item(m, fw_cfg.INITRD_DATA, 12) == b"initrd-bytes"
    # below the RAM the firmware keeps at the top, page-aligned
    assert initrd_addr % 4096 == 0 and initrd_addr + 12 <= (256 - 1) << 20
    # the loader's header fields are filled in the setup sectors themselves
    assert setup[0x210] == 0xB0  # type_of_loader: QEMU's
    assert setup[0x211] & 0x81 == 0x81  # LOADED_HIGH | CAN_USE_HEAP
    assert struct.unpack_from("<H", setup, 0x224)[0] == 0xFE00  # heap_end_ptr, as QEMU's
    assert struct.unpack_from("<II", setup, 0x218) == (initrd_addr, 12)
    assert struct.unpack_from("<I", setup, 0x228)[0] == 0x20000  # cmd_line_ptr
    assert struct.unpack_from("<I", setup, 0x214)[0] == 0x1000000  # code32_start
    # the option ROM that loads them, first in the boot order
    fw = m.fw_cfg
    rom = fw.items[fw.file_key("genroms/linuxboot_dma.bin")]
    assert rom[:2] == b"\x55\xaa" and len(rom) == rom[2] * 512 and sum(rom) % 256 == 0
    assert fw.items[fw.file_key("bootorder")] == b"/rom@genroms/linuxboot_dma.bin\n"


def test_kernel_without_bios_is_loaded_directly(machine, tmp_path):
    m = machine(kernel=str(bzimage(tmp_path)), ram_size=256 << 20)
    with pytest.raises(KeyError):
        m.fw_cfg.file_key("genroms/linuxboot_dma.bin")
    assert m.mem.read(0x1000000, 4) == b"KERN"


@pytest.mark.parametrize("opts, message", [
    (dict(ram_size=16 << 20), r"-kernel: the kernel needs RAM up to 0x1800000; give more"),
    (dict(append="x" * 3000), r"-append: command line of 3000 bytes; this kernel takes at "
                              r"most 2048"),
])
def test_kernel_through_firmware_that_does_not_fit_is_refused(machine, tmp_path, opts,
                                                              message):
    with pytest.raises(BootError, match=message):
        machine(kernel=str(bzimage(tmp_path)), bios=str(OWN_BIOS), **opts)


def test_setup_too_big_for_real_mode_is_refused(machine, tmp_path):
    with pytest.raises(BootError, match=r"real-mode setup of 65536 bytes does not fit"):
        machine(kernel=str(bzimage(tmp_path, setup_sects=127)), bios=str(OWN_BIOS))


def test_cmos_holds_memory_and_boot_order(machine):
    m = machine(kernel=str(HELLO), ram_size=64 << 20, boot_order="dc")
    ext_kib = cmos(m, 0x30) | cmos(m, 0x31) << 8
    assert ext_kib == (64 << 20) // 1024 - 1024
    assert cmos(m, 0x3D) == 0x23  # first cdrom (3), then disk (2)


def test_bios_image_size_is_checked(machine, tmp_path):
    bad = tmp_path / "bios.bin"
    bad.write_bytes(bytes(100))
    with pytest.raises(BootError, match=r"-bios .*: 100 bytes: a BIOS image is a multiple"):
        machine(bios=str(bad))


def _disk_machine(tmp_path: Path) -> tuple[PcMachine, Path]:
    from emu.host.block import DriveSpec

    image = tmp_path / "disk.img"
    image.write_bytes(bytes(1 << 20))
    spec = DriveSpec(file=str(image), index=0, id="d0")
    m = PcMachine(MachineConfig(kernel=str(HELLO), drives=[spec]), {}, {0: spec.open()})
    return m, image


def test_the_guest_runs_only_where_its_images_are_locked(tmp_path):
    # A migration let go of the image and another process (its destination) took it:
    # cont must refuse, naming the drive, until that process lets go.
    import fcntl

    from emu.migration.live import RunRefused

    m, image = _disk_machine(tmp_path)
    try:
        m.set_runstate("paused")
        m.drive_backends()["d0"].inactivate()
        with open(image, "r+b") as other:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with pytest.raises(RunRefused, match=r"drive d0: image .*disk.img is in use by "
                                                 r"another process"):
                m.cont()
            assert m.runstate == "paused"
        m.cont()  # let go: the image is ours again
        assert m.runstate == "running" and m.drive_backends()["d0"].active
    finally:
        m.cpu.close()


def test_a_handed_off_guest_never_runs_and_an_unsure_one_only_when_forced(tmp_path):
    from emu.migration.live import Hold, RunRefused

    m, _ = _disk_machine(tmp_path)
    try:
        m.set_runstate("postmigrate")
        m.hold = Hold("the guest was migrated to tcp:x:1: it runs there")
        for force in (False, True):
            with pytest.raises(RunRefused, match="it runs there"):
                m.cont(force)
        m.hold = Hold("the migration was not confirmed", forceable=True)
        with pytest.raises(RunRefused, match=r"'cont -f' runs it here"):
            m.cont()
        m.cont(force=True)
        assert m.runstate == "running" and m.hold is None
    finally:
        m.cpu.close()
