"""ACPI tables pyemu builds for a direct Linux boot: each table as the ACPI 6.x spec lays
it out, the RSDP where Linux looks for it, and the PM registers the FADT names decoding."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from emu.devices import piix3
from emu.machine.config import MachineConfig
from emu.machine.pc import acpi, linux
from emu.machine.pc.pc import ACPI_AREA_SIZE, BDA_EBDA_SEGMENT, E820_ACPI, PM_BLOCK, PcMachine

BZIMAGE = Path(__file__).resolve().parents[1] / "guests" / "build" / "linux" / "vmlinuz"
HELLO = Path(__file__).resolve().parents[1] / "guests" / "build" / "hello.elf"
BASE = 0x0FFF0000


@pytest.fixture
def tables() -> acpi.AcpiTables:
    return acpi.build(BASE, PM_BLOCK, 0x10000000)


def table_at(t: acpi.AcpiTables, addr: int) -> bytes:
    off = addr - t.base
    length = struct.unpack_from("<I", t.blob, off + 4)[0]
    return t.blob[off:off + length]


def test_every_table_sums_to_zero_and_has_its_length(tables):
    expected = {"DSDT": None, "FACP": acpi.FADT_LENGTH, "RSDT": 36 + 4, "XSDT": 36 + 8}
    for sig, length in expected.items():
        data = table_at(tables, tables.offsets[sig])
        assert data[:4] == sig.encode()
        assert sum(data) % 256 == 0, sig
        if length is not None:
            assert len(data) == length, sig
    facs = table_at(tables, tables.offsets["FACS"])
    assert facs[:4] == b"FACS" and len(facs) == 64 and tables.offsets["FACS"] % 64 == 0


def test_rsdp_checksums_and_points_at_rsdt_and_xsdt(tables):
    rsdp = tables.blob[tables.rsdp - tables.base:][:acpi.RSDP_LENGTH]
    assert rsdp[:8] == b"RSD PTR " and tables.rsdp % 16 == 0
    assert sum(rsdp[:20]) % 256 == 0  # ACPI 1.0 checksum: the first 20 bytes
    assert sum(rsdp) % 256 == 0  # extended checksum: all 36
    revision, rsdt, length, xsdt = struct.unpack_from("<BIIQ", rsdp, 15)
    assert (revision, length) == (2, 36)
    assert (rsdt, xsdt) == (tables.offsets["RSDT"], tables.offsets["XSDT"])
    fadt = tables.offsets["FACP"]
    assert table_at(tables, rsdt)[36:] == struct.pack("<I", fadt)
    assert table_at(tables, xsdt)[36:] == struct.pack("<Q", fadt)


def test_fadt_describes_the_piix4_pm_block(tables):
    f = table_at(tables, tables.offsets["FACP"])
    assert f[8] == 6  # revision 6
    facs, dsdt, sci, smi, on, off = struct.unpack_from("<IIxxHIBB", f, 36)
    assert (facs, dsdt) == (tables.offsets["FACS"], tables.offsets["DSDT"])
    assert (sci, smi, on, off) == (9, 0xB2, piix3.ACPI_ENABLE, piix3.ACPI_DISABLE)
    evt, _, cnt, _, _, tmr = struct.unpack_from("<6I", f, 56)
    assert (evt, cnt, tmr) == (0x600, 0x604, 0x608)
    assert tuple(f[88:92]) == (4, 2, 0, 4)  # PM1_EVT_LEN, PM1_CNT_LEN, PM2, PM_TMR_LEN
    flags = struct.unpack_from("<I", f, 112)[0]
    assert flags & acpi.RESET_REG_SUP and not flags & (1 << 8)  # 24-bit timer
    assert f[116:128] == struct.pack("<BBBBQ", 1, 8, 0, 1, 0xCF9) and f[128] == 0x06
    assert struct.unpack_from("<Q", f, 140)[0] == dsdt  # X_DSDT agrees
    # X_PM1a_EVT_BLK, X_PM1a_CNT_BLK, X_PM_TMR_BLK: system I/O at the same ports.
    for off, port, bits in ((148, 0x600, 32), (172, 0x604, 16), (208, 0x608, 32)):
        space, width, _, _, addr = struct.unpack_from("<BBBBQ", f, off)
        assert (space, width, addr) == (1, bits, port)


def test_dsdt_starts_with_the_s5_package(tables):
    body = table_at(tables, tables.offsets["DSDT"])[36:]
    # Name (\_S5_, Package (4) {Zero, Zero, Zero, Zero})
    assert body[:13] == bytes.fromhex("08 5c 5f53355f 12 06 04 00 00 00 00")


def test_dsdt_declares_the_pci_root_bridge(tables):
    body = table_at(tables, tables.offsets["DSDT"])[36 + 13:]
    assert body[:2] == b"\x5b\x82"  # DeviceOp
    assert b"\x5c\x2e_SB_PCI0" in body
    assert b"_HID\x0c" + struct.pack("<I", 0x030AD041) in body  # EisaId ("PNP0A03")
    assert body.endswith(b"\x79\x00")  # the _CRS template's end tag closes the table


@pytest.mark.parametrize("length, encoded", [(5, "06"), (62, "3f"), (63, "4104"), (140, "4e08"),
                                             (5000, "8b3801")])
def test_pkg_length_counts_itself(length, encoded):
    assert acpi.pkg_length(length).hex() == encoded


def test_direct_linux_boot_gets_tables_where_linux_looks():
    if not BZIMAGE.exists():
        pytest.fail(f"{BZIMAGE} is missing: 'make linux-guest' builds it")
    m = PcMachine(MachineConfig(kernel=str(BZIMAGE), ram_size=128 << 20), {})
    try:
        top = m.mem.below_4g
        assert (top - ACPI_AREA_SIZE, ACPI_AREA_SIZE, E820_ACPI) in m.memory_map()
        rsdp = struct.unpack("<Q", m.mem.read(linux.ZERO_PAGE + linux.ACPI_RSDP_ADDR, 8))[0]
        assert top - ACPI_AREA_SIZE <= rsdp < top
        assert m.mem.read(rsdp, 8) == b"RSD PTR "
        # The copy a scan finds: the EBDA's first KiB, from the BDA's segment word.
        ebda = struct.unpack("<H", m.mem.read(BDA_EBDA_SEGMENT, 2))[0] << 4
        assert m.mem.read(ebda, 36) == m.mem.read(rsdp, 36)
        # The FADT's PM registers decode: the PM timer at PMBA+8 runs.
        assert m.pm.config_read(piix3.PMBA, 2) == 0x601 and m.pm.config[piix3.PMREGMISC] & 1
        assert m.io.read(0x608, 4) == m.pm.pm_timer() < 1 << 24
    finally:
        m.cpu.close()


def test_other_boots_get_no_tables():
    m = PcMachine(MachineConfig(kernel=str(HELLO), ram_size=64 << 20), {})
    try:
        assert all(kind != E820_ACPI for _, _, kind in m.memory_map())
        assert m.pm.config[piix3.PMREGMISC] & 1 == 0  # PM registers left to firmware
    finally:
        m.cpu.close()
