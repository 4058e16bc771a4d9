"""Minimal ACPI tables for a direct Linux boot (no firmware builds any).

Follows the ACPI 6.x specification, chapter 5: the RSDP (5.2.5.3, revision 2 with the
XSDT address and the extended checksum), the common table header (5.2.6), RSDT (5.2.7)
and XSDT (5.2.8), the FADT (5.2.9, revision 6, 276 bytes) describing the PIIX4 PM
registers this board decodes (PM1a event and control blocks, the 24-bit PM timer, SCI on
ISA IRQ 9, the SMI command port with the ACPI enable/disable values, the reset register
at I/O 0xCF9), the FACS (5.2.10), and a DSDT (5.2.11.1) holding two objects: the \\_S5
sleep package (7.4.2) with SLP_TYP 0, the value the PIIX4 model powers off on; and the
PCI root bridge \\_SB.PCI0 (PNP0A03, 6.1.5 _HID, 6.4 resource descriptors in _CRS), without
which Linux with ACPI on never scans PCI bus 0 (it takes the host bridge and its windows
from ACPI only). AML encodings are from chapter 20 (NameOp, PackageOp, BufferOp,
DeviceOp, PkgLength, NameSeg, integer constants).

There is no MADT: the board has no local or I/O APIC (and CPUID hides the APIC bit), so
Linux keeps to the 8259 PICs with no kernel option.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

OEM_ID = b"PYEMU "
OEM_TABLE_ID = b"PYEMU-PC"
CREATOR_ID = b"PYEM"
HEADER = struct.Struct("<4sIBB6s8sI4sI")  # 36 bytes, ACPI 6.x table 5.4
CHECKSUM_OFFSET = 9

FADT_REVISION, FADT_MINOR = 6, 0
FADT_LENGTH = 276
DSDT_REVISION = 2  # 2 or more: AML integers are 64-bit
RSDP_REVISION = 2  # ACPI 2.0 and later: 36 bytes with the XSDT address
RSDP_V1_LENGTH, RSDP_LENGTH = 20, 36
FACS_LENGTH, FACS_VERSION, FACS_ALIGN = 64, 2, 64
PCI_MMIO_END = 0xFEBFFFFF  # the PCI memory window ends below the IOAPIC/BIOS area

# Generic Address Structure (5.2.3.2): space, bit width, bit offset, access size, address.
GAS = struct.Struct("<BBBBQ")
SYSTEM_IO = 1
ACCESS_BYTE, ACCESS_WORD, ACCESS_DWORD = 1, 2, 3

# FADT fixed feature flags (table 5.10).
WBINVD = 1 << 0
PROC_C1 = 1 << 2
SLP_BUTTON = 1 << 5  # no fixed-feature sleep button
FIX_RTC = 1 << 6  # RTC wake status is not in the fixed register space
RESET_REG_SUP = 1 << 10
# IA-PC boot architecture flags (table 5.11): ISA devices (COM ports, RTC, PIT) and an
# 8042 are present; there is no VGA and no MSI (no local APIC to deliver it).
LEGACY_DEVICES, HAS_8042, VGA_NOT_PRESENT, MSI_NOT_SUPPORTED = 1, 2, 4, 8
CMOS_CENTURY = 0x32  # the RTC's century byte (mc146818.CENTURY)
LATENCY_NO_C2, LATENCY_NO_C3 = 101, 1001  # above 100 / 1000 us: the state is unsupported

# DSDT body: Name (\_S5, Package (4) {0, 0, 0, 0}), hand-assembled (ACPI 6.x chapter 20).
S5_AML = bytes([
    0x08,                    # NameOp: Name (NameString, DataRefObject)
    0x5C,                    # RootChar '\': the name is in the root namespace
    0x5F, 0x53, 0x35, 0x5F,  # NameSeg "_S5_"
    0x12,                    # PackageOp: Package (PkgLength NumElements PackageElementList)
    0x06,                    # PkgLength, one-byte form: itself + NumElements + 4 elements
    0x04,                    # NumElements
    0x00,                    # ZeroOp: SLP_TYPa = 0, the PIIX4 soft-off value
    0x00,                    # ZeroOp: SLP_TYPb (no PM1b block)
    0x00, 0x00,              # ZeroOp x2: reserved elements
])


# AML opcodes and prefixes (ACPI 6.x 20.2).
NAME_OP, BUFFER_OP, DWORD_PREFIX, BYTE_PREFIX = 0x08, 0x11, 0x0C, 0x0A
EXT_OP_PREFIX, DEVICE_OP = 0x5B, 0x82
ROOT_CHAR, DUAL_NAME_PREFIX = 0x5C, 0x2E
EISA_PNP0A03 = 0x030AD041  # EisaId ("PNP0A03"): compressed "PNP" then product 0A03h


def pkg_length(body_len: int) -> bytes:
    """PkgLength (20.2.4): counts itself; one byte up to 63, else a lead byte holding
    the byte count and the low nibble, then the rest 8 bits at a time."""
    if body_len + 1 < 0x40:
        return bytes([body_len + 1])
    for extra in (1, 2, 3):
        total = body_len + 1 + extra
        if total < 1 << (4 + 8 * extra):
            return bytes([extra << 6 | total & 0xF]) + (total >> 4).to_bytes(extra, "little")
    raise ValueError(f"AML package of {body_len} bytes is too long")


def aml_name(name: str, value: bytes) -> bytes:
    """Name (NameSeg, DataRefObject) in the current scope."""
    return bytes([NAME_OP]) + name.encode() + value


def aml_dword(value: int) -> bytes:
    return bytes([DWORD_PREFIX]) + struct.pack("<I", value)


def aml_buffer(data: bytes) -> bytes:
    """Buffer (BufferSize) {data}: BufferOp PkgLength BufferSize(ByteConst) bytes."""
    size = bytes([BYTE_PREFIX, len(data)]) if len(data) < 0x100 else aml_dword(len(data))
    return bytes([BUFFER_OP]) + pkg_length(len(size) + len(data)) + size + data


def aml_device(scope: str, name: str, body: bytes) -> bytes:
    """Device (\\scope.name) {body}: ExtOpPrefix DeviceOp PkgLength NameString TermList,
    the name an absolute DualNamePath."""
    path = bytes([ROOT_CHAR, DUAL_NAME_PREFIX]) + scope.encode() + name.encode()
    return bytes([EXT_OP_PREFIX, DEVICE_OP]) + pkg_length(len(path) + len(body)) + path + body


# Resource descriptors (6.4): large items with a 16-bit length after the tag.
WORD_SPACE, DWORD_SPACE, IO_PORT, END_TAG = 0x88, 0x87, 0x47, 0x79
SPACE_MEMORY, SPACE_IO, SPACE_BUS = 0, 1, 2
MIN_MAX_FIXED = 0x0C  # _MIF | _MAF; bit 0 clear: the bridge produces this range
IO_ENTIRE_RANGE, MEM_READ_WRITE = 0x03, 0x01


def word_space(kind: int, flags: int, lo: int, hi: int) -> bytes:
    """Word address space descriptor (6.4.3.5.3): granularity, min, max, translation, len."""
    return struct.pack("<BHBBBHHHHH", WORD_SPACE, 13, kind, MIN_MAX_FIXED, flags, 0, lo, hi,
                       0, hi - lo + 1)


def dword_memory(lo: int, hi: int) -> bytes:
    """DWord address space descriptor (6.4.3.5.2) for a memory window."""
    return struct.pack("<BHBBBIIIII", DWORD_SPACE, 23, SPACE_MEMORY, MIN_MAX_FIXED,
                       MEM_READ_WRITE, 0, lo, hi, 0, hi - lo + 1)


def pci_root_crs(mmio_base: int) -> bytes:
    """Bus 0-255; the I/O ports except the config ports 0xCF8-0xCFF, which the bridge
    itself uses; the legacy VGA window and the memory above RAM up to PCI_MMIO_END."""
    return b"".join((
        word_space(SPACE_BUS, 0, 0x00, 0xFF),
        struct.pack("<BBHHBB", IO_PORT, 1, 0xCF8, 0xCF8, 1, 8),  # 16-bit decode, 8 ports
        word_space(SPACE_IO, IO_ENTIRE_RANGE, 0x0000, 0x0CF7),
        word_space(SPACE_IO, IO_ENTIRE_RANGE, 0x0D00, 0xFFFF),
        dword_memory(0xA0000, 0xBFFFF),
        dword_memory(mmio_base, PCI_MMIO_END),
        bytes([END_TAG, 0]),  # checksum 0: "treat as correct"
    ))


def pci_root_aml(mmio_base: int) -> bytes:
    """Device (\\_SB.PCI0) { Name (_HID, EisaId ("PNP0A03")) Name (_CRS, ...) }."""
    return aml_device("_SB_", "PCI0", aml_name("_HID", aml_dword(EISA_PNP0A03))
                      + aml_name("_CRS", aml_buffer(pci_root_crs(mmio_base))))


@dataclass(frozen=True)
class PmBlock:
    """Where the board decodes the ACPI fixed-hardware registers."""

    pm_base: int  # PM1a_EVT_BLK; PM1a_CNT_BLK at +4, PM_TMR_BLK at +8
    sci_irq: int
    smi_cmd: int
    acpi_enable: int
    acpi_disable: int
    reset_port: int
    reset_value: int


@dataclass
class AcpiTables:
    """The table area's contents, to be copied to ``base`` in guest RAM."""

    base: int
    blob: bytes
    rsdp: int  # guest address of the RSDP
    offsets: dict[str, int]  # table signature -> guest address


def checksum(data: bytes) -> int:
    """The byte that makes ``data`` (with it in place of a zero) sum to 0 mod 256."""
    return -sum(data) & 0xFF


def _table(signature: bytes, revision: int, body: bytes) -> bytes:
    """A table with its 36-byte header and a correct checksum."""
    length = HEADER.size + len(body)
    data = bytearray(HEADER.pack(signature, length, revision, 0, OEM_ID, OEM_TABLE_ID, 1,
                                 CREATOR_ID, 1) + body)
    data[CHECKSUM_OFFSET] = checksum(data)
    return bytes(data)


def _io(port: int, width_bytes: int, access: int) -> bytes:
    return GAS.pack(SYSTEM_IO, 8 * width_bytes, 0, access, port)


def dsdt(pci_mmio_base: int) -> bytes:
    return _table(b"DSDT", DSDT_REVISION, S5_AML + pci_root_aml(pci_mmio_base))


def facs() -> bytes:
    """Firmware ACPI control structure: no waking vector (no S3), global lock free."""
    data = struct.pack("<4sIIIIIQB3sI24s", b"FACS", FACS_LENGTH, 0, 0, 0, 0, 0,
                       FACS_VERSION, b"", 0, b"")
    assert len(data) == FACS_LENGTH
    return data


def fadt(pm: PmBlock, facs_addr: int, dsdt_addr: int) -> bytes:
    """Fixed ACPI description table, revision 6: the legacy 32-bit block addresses and
    their 64-bit X_ twins say the same thing (Linux checks that they agree)."""
    evt, cnt, tmr = pm.pm_base, pm.pm_base + 4, pm.pm_base + 8
    body = bytearray(FADT_LENGTH - HEADER.size)

    def put(offset: int, fmt: str, *values: int | bytes) -> None:
        struct.pack_into("<" + fmt, body, offset - HEADER.size, *values)

    put(36, "II", facs_addr, dsdt_addr)
    put(46, "HIBBBB", pm.sci_irq, pm.smi_cmd, pm.acpi_enable, pm.acpi_disable, 0, 0)
    put(56, "IIIIIIII", evt, 0, cnt, 0, 0, tmr, 0, 0)  # PM1a/b EVT, CNT, PM2, TMR, GPE0/1
    put(88, "BBBBBBBB", 4, 2, 0, 4, 0, 0, 0, 0)  # block lengths; no GPE blocks, no _CST
    put(96, "HHHH", LATENCY_NO_C2, LATENCY_NO_C3, 0, 0)
    put(108, "BH", CMOS_CENTURY, LEGACY_DEVICES | HAS_8042 | VGA_NOT_PRESENT | MSI_NOT_SUPPORTED)
    put(112, "I", WBINVD | PROC_C1 | SLP_BUTTON | FIX_RTC | RESET_REG_SUP)
    put(116, "12sBHB", _io(pm.reset_port, 1, ACCESS_BYTE), pm.reset_value, 0, FADT_MINOR)
    put(132, "QQ", 0, dsdt_addr)  # X_FIRMWARE_CTRL stays 0 when FIRMWARE_CTRL is set
    put(148, "12s12s12s12s12s12s", _io(evt, 4, ACCESS_WORD), bytes(12),
        _io(cnt, 2, ACCESS_WORD), bytes(12), bytes(12), _io(tmr, 4, ACCESS_DWORD))
    return _table(b"FACP", FADT_REVISION, bytes(body))


def rsdp(rsdt_addr: int, xsdt_addr: int) -> bytes:
    data = bytearray(struct.pack("<8sB6sBIIQB3s", b"RSD PTR ", 0, OEM_ID, RSDP_REVISION,
                                 rsdt_addr, RSDP_LENGTH, xsdt_addr, 0, b""))
    data[8] = checksum(data[:RSDP_V1_LENGTH])
    data[32] = checksum(data)
    return bytes(data)


def _align(offset: int, to: int) -> int:
    return -(-offset // to) * to


def build(base: int, pm: PmBlock, pci_mmio_base: int) -> AcpiTables:
    """Lay the tables out from ``base`` (64-byte aligned): FACS, DSDT, FADT, RSDT, XSDT
    and last the RSDP, each 16-byte aligned (the RSDP must be). PCI memory is decoded
    from ``pci_mmio_base`` (the top of low RAM) up."""
    if base % FACS_ALIGN:
        raise ValueError(f"ACPI table base {base:#x} is not {FACS_ALIGN}-byte aligned")
    blob = bytearray()
    offsets: dict[str, int] = {}

    def place(name: str, table: bytes) -> int:
        blob.extend(bytes(_align(len(blob), 16) - len(blob)))
        offsets[name] = base + len(blob)
        blob.extend(table)
        return offsets[name]

    facs_addr = place("FACS", facs())
    dsdt_addr = place("DSDT", dsdt(pci_mmio_base))
    fadt_addr = place("FACP", fadt(pm, facs_addr, dsdt_addr))
    rsdt_addr = place("RSDT", _table(b"RSDT", 1, struct.pack("<I", fadt_addr)))
    xsdt_addr = place("XSDT", _table(b"XSDT", 1, struct.pack("<Q", fadt_addr)))
    rsdp_addr = place("RSDP", rsdp(rsdt_addr, xsdt_addr))
    return AcpiTables(base=base, blob=bytes(blob), rsdp=rsdp_addr, offsets=offsets)
