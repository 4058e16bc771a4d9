"""ACPI tables pyemu builds for a direct Linux boot: each table as the ACPI 6.x spec lays
it out, the RSDP where Linux looks for it, and the PM registers the FADT names decoding."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from emu.devices import piix3
from emu.machine.config import MachineConfig
from emu.machine.pc import acpi, linux
from emu.machine.pc.pc import ACPI_AREA_SIZE, BDA_EBDA_SEGMENT, E820_ACPI, PM_BLOCK, PcMachine

BZIMAGE = Path(__file__).resolve().parents[1] / "guests" / "build" / "linux" / "vmlinuz"
HELLO = Path(__file__).resolve().parents[1] / "guests" / "build" / "hello.elf"
BASE = 0x0FFF0000
IASL_TIMEOUT = 30  # seconds; iasl takes milliseconds on these tables
PIRQS = (5, 9, 10, 11)  # distinct IRQs, so each _PRT entry shows which PIRQ line it uses


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
    assert crs_template(body).endswith(b"\x79\x00")  # the template's end tag closes it


def crs_template(body: bytes) -> bytes:
    """The bytes of Name (_CRS, Buffer ...): PkgLength, size and the resource template."""
    at = body.index(b"_CRS\x11") + 5
    extra = body[at] >> 6
    length = body[at] & 0x3F if extra == 0 else (
        body[at] & 0xF | int.from_bytes(body[at + 1:at + 1 + extra], "little") << 4)
    return body[at:at + length]


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


# ACPI PCI hotplug and INTx routing as on QEMU's -M pc (PIIX4 hotplug at AE00h, GPE0 at AFE0h),
# checked with ACPICA's own disassembler and compiler.

@pytest.fixture
def iasl() -> str:
    path = shutil.which("iasl")
    if path is None:
        pytest.fail("iasl is missing: 'make test' installs acpica-tools")
    return path


def run_iasl(iasl: str, cwd: Path, *args: str) -> None:
    done = subprocess.run([iasl, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=IASL_TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr


def disassemble(iasl: str, tmp_path: Path, name: str, table: bytes) -> str:
    (tmp_path / f"{name}.dat").write_bytes(table)
    run_iasl(iasl, tmp_path, "-d", f"{name}.dat")
    return (tmp_path / f"{name}.dsl").read_text()


def hotplug_dsdt(**kwargs) -> bytes:
    return acpi.dsdt(0x10000000, pirq_irqs=PIRQS, **kwargs)


def aml_int(text: str) -> int:
    constants = {"Zero": 0, "One": 1}
    return constants[text] if text in constants else int(text, 16)


def prt_entries(dsl: str) -> dict[tuple[int, int], tuple[int, int]]:
    """(slot, pin) -> (source, GSI) from the disassembled _PRT packages."""
    entries = re.findall(r"Package \(0x04\)\s*\{\s*(0x[0-9A-F]+),\s*(\w+),\s*(\w+),\s*(\w+)\s*\}",
                         dsl)
    table = {}
    for addr, pin, source, gsi in entries:
        assert aml_int(addr) & 0xFFFF == 0xFFFF  # any function of the slot
        table[aml_int(addr) >> 16, aml_int(pin)] = (aml_int(source), aml_int(gsi))
    return table


def test_hotplug_dsdt_sums_to_zero():
    table = hotplug_dsdt()
    assert table[:4] == b"DSDT" and struct.unpack_from("<I", table, 4)[0] == len(table)
    assert sum(table) % 256 == 0


def test_dsdt_declares_the_piix4_hotplug_registers(iasl, tmp_path):
    dsl = disassemble(iasl, tmp_path, "dsdt", hotplug_dsdt())
    assert "OperationRegion (PCST, SystemIO, 0xAE00, 0x08)" in dsl
    assert re.search(r"Field \(PCST, DWordAcc, NoLock, WriteAsZeros\)\s*\{\s*PCIU,\s*32,"
                     r"\s*PCID,\s*32\s*\}", dsl)
    assert "OperationRegion (SEJ, SystemIO, 0xAE08, 0x04)" in dsl
    assert re.search(r"Field \(SEJ, DWordAcc, NoLock, WriteAsZeros\)\s*\{\s*B0EJ,\s*32\s*\}", dsl)


def test_each_slot_is_an_ejectable_device_named_as_qemu_names_it(iasl, tmp_path):
    dsl = disassemble(iasl, tmp_path, "dsdt", hotplug_dsdt())
    for name, adr, sun, bit in (("S10", "0x00020000", "0x02", "0x04"),
                                ("SF8", "0x001F0000", "0x1F", "0x80000000")):
        assert re.search(rf"Device \({name}\)\s*\{{\s*Name \(_ADR, {adr}\).*\n"
                         rf"\s*Name \(_SUN, {sun}\).*\n"
                         rf"\s*Method \(_EJ0, 1, NotSerialized\).*\n"
                         rf"\s*\{{\s*\\_SB.PCI0.B0EJ = {bit}\s*\}}", dsl), name
    assert len(re.findall(r"Device \(S[0-9A-F]{2}\)", dsl)) == 30  # slots 2-31
    assert "Device (S08)" not in dsl and "Device (S00)" not in dsl  # PIIX3, host bridge


def test_pcnt_reads_each_register_once_and_notifies_the_slots(iasl, tmp_path):
    dsl = disassemble(iasl, tmp_path, "dsdt", hotplug_dsdt())
    pcnt = dsl[dsl.index("Method (PCNT, 0, NotSerialized)"):]
    pcnt = pcnt[:pcnt.index("Device (")]
    assert pcnt.count("= PCIU") == 1 and pcnt.count("= PCID") == 1
    assert re.search(r"Local0 = PCIU.*\n\s*Local1 = PCID", pcnt)
    assert re.search(r"If \(\(Local0 & 0x04\)\)\s*\{\s*Notify \(S10, One\)", pcnt)
    assert re.search(r"If \(\(Local1 & 0x04\)\)\s*\{\s*Notify \(S10, 0x03\)", pcnt)
    assert re.search(r"If \(\(Local1 & 0x80000000\)\)\s*\{\s*Notify \(SF8, 0x03\)", pcnt)
    assert pcnt.count("Notify (") == 2 * 30


def test_gpe_1_runs_pcnt(iasl, tmp_path):
    dsl = disassemble(iasl, tmp_path, "dsdt", hotplug_dsdt())
    assert re.search(r"Scope \(\\_GPE\)\s*\{\s*Method \(_E01, 0, NotSerialized\).*\n"
                     r"\s*\{\s*\\_SB.PCI0.PCNT \(\)\s*\}", dsl)


def test_prt_routes_every_pin_of_every_slot_through_the_piix3_pirqs(iasl, tmp_path):
    table = prt_entries(disassemble(iasl, tmp_path, "dsdt", hotplug_dsdt()))
    assert table[2, 0] == (0, PIRQS[1])  # slot 2 INTA -> PIRQB
    assert table[3, 0] == (0, PIRQS[2])  # slot 3 INTA -> PIRQC
    assert table[3, 3] == (0, PIRQS[1])  # slot 3 INTD -> PIRQB
    assert table[31, 1] == (0, PIRQS[3])  # slot 31 INTB -> PIRQD
    assert table == {(slot, pin): (0, PIRQS[(slot + pin - 1) & 3])
                     for slot in range(2, 32) for pin in range(4)}


def test_a_smaller_slot_set_gets_only_its_devices_and_routes(iasl, tmp_path):
    dsl = disassemble(iasl, tmp_path, "dsdt", hotplug_dsdt(slots=(3, 5)))
    assert re.findall(r"Device \((S[0-9A-F]{2})\)", dsl) == ["S18", "S28"]
    assert set(prt_entries(dsl)) == {(slot, pin) for slot in (3, 5) for pin in range(4)}
    assert "Notify (S10" not in dsl


def test_disassembly_recompiles_to_the_same_aml(iasl, tmp_path):
    """iasl compiling the disassembly back, with its optimizations off, gives the very
    bytes pyemu wrote: the hand-encoded AML is what the ASL says."""
    table = hotplug_dsdt()
    disassemble(iasl, tmp_path, "dsdt", table)
    run_iasl(iasl, tmp_path, "-oa", "-p", "recompiled", "dsdt.dsl")
    recompiled = (tmp_path / "recompiled.aml").read_bytes()
    assert recompiled[acpi.HEADER.size:] == table[acpi.HEADER.size:]


def test_fadt_points_at_the_gpe0_block(tables, iasl, tmp_path):
    f = table_at(tables, tables.offsets["FACP"])
    assert struct.unpack_from("<I", f, 80)[0] == 0xAFE0 and f[92] == 4  # GPE0_BLK, _LEN
    assert f[220:232] == struct.pack("<BBBBQ", 1, 32, 0, 1, 0xAFE0)  # X_GPE0_BLK
    assert struct.unpack_from("<I", f, 84)[0] == 0 and f[93] == 0  # no GPE1 block
    dsl = disassemble(iasl, tmp_path, "facp", f)
    assert re.search(r"GPE0 Block Address : 0000AFE0", dsl)
    assert re.search(r"GPE0 Block Length : 04", dsl)


def test_a_board_without_gpe0_leaves_the_fields_zero():
    f = acpi.fadt(replace(PM_BLOCK, gpe0_len=0), 0x1000, 0x2000)
    assert struct.unpack_from("<I", f, 80)[0] == 0 and f[92] == 0 and f[220:232] == bytes(12)


@pytest.mark.parametrize("kwargs, message", [
    ({"slots": (2, 32)}, "hotplug slots"),
    ({"slots": (2, 2)}, "hotplug slots"),
    ({"pirq_irqs": (10, 10, 11)}, "PIRQ IRQs"),
    ({"pirq_irqs": (10, 10, 11, 16)}, "PIRQ IRQs"),
])
def test_bad_pci_parameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        acpi.dsdt(0x10000000, **kwargs)


@pytest.mark.parametrize("length", [3, 32])
def test_bad_gpe0_length_is_refused(length):
    with pytest.raises(ValueError, match="GPE0 block length"):
        acpi.fadt(replace(PM_BLOCK, gpe0_len=length), 0x1000, 0x2000)


@pytest.mark.parametrize("path, encoded", [
    ("S10", b"S10_"), ("\\_GPE", b"\\_GPE"), ("\\_SB.PCI0", b"\\._SB_PCI0"),
    ("\\_SB.PCI0.B0EJ", b"\\/\x03_SB_PCI0B0EJ"),
])
def test_name_strings(path, encoded):
    assert acpi.name_string(path) == encoded


@pytest.mark.parametrize("value, encoded", [(0, "00"), (1, "01"), (3, "0a03"), (0xAE00, "0b00ae"),
                                            (0x2FFFF, "0cffff0200")])
def test_integers_take_the_shortest_encoding(value, encoded):
    assert acpi.aml_integer(value).hex() == encoded
