"""The pc board's wiring, seen through the ports firmware uses: fw_cfg items, CMOS."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from emu.devices import fw_cfg
from emu.devices.fw_cfg import FwCfg
from emu.machine.config import MachineConfig
from emu.machine.pc.multiboot import BootError
from emu.machine.pc.pc import PcMachine, _linux_items

HELLO = Path(__file__).resolve().parents[1] / "guests" / "build" / "hello.elf"


def item(m: PcMachine, key: int, n: int) -> bytes:
    m.io.write(0x510, 2, key)
    return bytes(m.io.read(0x511, 1) for _ in range(n))


def cmos(m: PcMachine, index: int) -> int:
    m.io.write(0x70, 1, index)
    return m.io.read(0x71, 1)


@pytest.fixture
def machine():
    made = []

    def build(**cfg) -> PcMachine:
        m = PcMachine(MachineConfig(**cfg), {})
        made.append(m)
        return m

    yield build
    for m in made:
        m.cpu.close()


def test_fw_cfg_describes_the_machine(machine):
    m = machine(kernel=str(HELLO), ram_size=256 << 20)
    assert item(m, fw_cfg.SIGNATURE, 4) == b"QEMU"
    assert struct.unpack("<Q", item(m, fw_cfg.RAM_SIZE, 8))[0] == 256 << 20
    assert struct.unpack("<H", item(m, fw_cfg.NB_CPUS, 2))[0] == 1
    assert struct.unpack("<H", item(m, fw_cfg.NOGRAPHIC, 2))[0] == 1
    assert item(m, fw_cfg.BOOT_DEVICE, 1) == b"c"


def test_kernel_items_carry_the_kernel_and_command_line(machine, tmp_path):
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"initrd-bytes")
    m = machine(kernel=str(HELLO), append="console=ttyS0", initrd=str(initrd))
    size = struct.unpack("<I", item(m, fw_cfg.KERNEL_SIZE, 4))[0]
    assert size == HELLO.stat().st_size
    assert item(m, fw_cfg.KERNEL_DATA, 16) == HELLO.read_bytes()[:16]
    assert item(m, fw_cfg.CMDLINE_DATA, 14) == b"console=ttyS0\0"
    assert item(m, fw_cfg.INITRD_DATA, 12) == b"initrd-bytes"


def test_a_bzimage_is_split_into_setup_and_kernel():
    image = bytearray(8192)
    image[0x1F1] = 2  # setup_sects: the setup is 3 sectors with the boot sector
    image[0x202:0x206] = b"HdrS"
    image[1536:1540] = b"KERN"
    fw = FwCfg("fw_cfg", None)
    _linux_items(fw, bytes(image), "", None)
    assert fw.items[fw_cfg.SETUP_SIZE] == struct.pack("<I", 1536)
    assert fw.items[fw_cfg.SETUP_DATA] == bytes(image[:1536])
    assert fw.items[fw_cfg.KERNEL_DATA][:4] == b"KERN"


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
