"""Minimal ACPI tables for a direct Linux boot (no firmware builds any).

Follows the ACPI 6.x specification, chapter 5: the RSDP (5.2.5.3, revision 2 with the
XSDT address and the extended checksum), the common table header (5.2.6), RSDT (5.2.7)
and XSDT (5.2.8), the FADT (5.2.9, revision 6, 276 bytes) describing the PIIX4 PM
registers this board decodes (PM1a event and control blocks, the 24-bit PM timer, the
GPE0 block (4.8.5.1), SCI on ISA IRQ 9, the SMI command port with the ACPI enable/disable
values, the reset register at I/O 0xCF9), the FACS (5.2.10), and a DSDT (5.2.11.1) with:
the \\_S5 sleep package (7.4.2) with SLP_TYP 0, the value the PIIX4 model powers off on;
the PCI root bridge \\_SB.PCI0 (PNP0A03, 6.1.5 _HID, 6.4 resource descriptors in _CRS),
without which Linux with ACPI on never scans PCI bus 0 (it takes the host bridge and its
windows from ACPI only); its static INTx routing table (6.2.13 _PRT); and QEMU's -M pc
PCI hotplug interface (hw/acpi/pcihp.c, hw/i386/acpi-build.c): the PIIX4 hotplug
registers at I/O 0xAE00 as operation region fields (19.6), one device per slot with
_ADR, _SUN and _EJ0 (6.1.1, 6.1.12, 6.3.3), and the GPE 1 handler \\_GPE._E01 (5.6.4.1)
that sends the slots device-check and eject-request notifications (5.6.6). AML encodings
are from chapter 20 (20.2: name strings, PkgLength, data objects, named objects, and the
Method, If, Store, And and Notify terms).

There is no MADT: the board has no local or I/O APIC (and CPUID hides the APIC bit), so
Linux keeps to the 8259 PICs with no kernel option.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache

from emu.devices import piix3
from emu.devices.piix3 import HOTPLUG_SLOTS, PIRQ_IRQS

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
GPE0_BLOCK, GPE0_LEN = piix3.GPE0_BLOCK  # where QEMU's PIIX4 PM decodes GPE0 (hw/acpi/piix4.c)
GPE0_MAX_LEN = 30  # X_GPE0_BLK's bit width is one byte

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

# AML encoding (ACPI 6.x chapter 20): opcodes and prefixes (20.2), and the data objects
# the tables use. Each helper returns the bytes of one term, so terms compose by nesting.
ZERO_OP, ONE_OP = 0x00, 0x01
NAME_OP, BYTE_PREFIX, WORD_PREFIX, DWORD_PREFIX, QWORD_PREFIX = 0x08, 0x0A, 0x0B, 0x0C, 0x0E
SCOPE_OP, BUFFER_OP, PACKAGE_OP, METHOD_OP = 0x10, 0x11, 0x12, 0x14
ROOT_CHAR, DUAL_NAME_PREFIX, MULTI_NAME_PREFIX = 0x5C, 0x2E, 0x2F
EXT_OP_PREFIX, OP_REGION_OP, FIELD_OP, DEVICE_OP = 0x5B, 0x80, 0x81, 0x82
LOCAL0, LOCAL1 = bytes([0x60]), bytes([0x61])
STORE_OP, AND_OP, NOTIFY_OP, IF_OP = 0x70, 0x7B, 0x86, 0xA0
NULL_NAME = b"\x00"  # an absent Target: the result is only used as a predicate
PKG_LIMITS = (1 << 6, 1 << 12, 1 << 20, 1 << 28)  # PkgLength value bound by extra bytes
NAMESEG_LEAD = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ_")
NAMESEG_CHARS = NAMESEG_LEAD | set("0123456789")
EISA_PNP0A03 = 0x030AD041  # EisaId ("PNP0A03"): compressed "PNP" then product 0A03h


def _pkg_bytes(value: int, extra: int) -> bytes:
    """A PkgLength-format value (20.2.4): one byte up to 63, else a lead byte holding the
    count of following bytes and the low nibble, then the rest 8 bits at a time."""
    if extra == 0:
        return bytes([value])
    return bytes([extra << 6 | value & 0xF]) + (value >> 4).to_bytes(extra, "little")


def pkg_length(body_len: int) -> bytes:
    """PkgLength of a block: counts its own bytes as well as the body's."""
    for extra, limit in enumerate(PKG_LIMITS):
        if body_len + 1 + extra < limit:
            return _pkg_bytes(body_len + 1 + extra, extra)
    raise ValueError(f"AML package of {body_len} bytes is too long")


def field_width(bits: int) -> bytes:
    """A NamedField's bit length (20.2.5.2): PkgLength format, not counting itself."""
    for extra, limit in enumerate(PKG_LIMITS):
        if bits < limit:
            return _pkg_bytes(bits, extra)
    raise ValueError(f"AML field of {bits} bits is too wide")


def nameseg(name: str) -> bytes:
    """NameSeg (20.2.2): four characters, a short name padded with '_' as iasl does."""
    if not 0 < len(name) <= 4 or name[0] not in NAMESEG_LEAD or set(name) - NAMESEG_CHARS:
        raise ValueError(f"bad AML NameSeg {name!r}")
    return name.ljust(4, "_").encode()


def name_string(path: str) -> bytes:
    """NameString (20.2.2): '\\' roots the path; dots separate the NameSegs."""
    root = path.startswith("\\")
    segs = [nameseg(s) for s in path.lstrip("\\").split(".")]
    prefix = bytes([ROOT_CHAR]) if root else b""
    if len(segs) == 1:
        return prefix + segs[0]
    if len(segs) == 2:
        return prefix + bytes([DUAL_NAME_PREFIX]) + b"".join(segs)
    return prefix + bytes([MULTI_NAME_PREFIX, len(segs)]) + b"".join(segs)


def aml_integer(value: int) -> bytes:
    """The shortest ComputationalData for ``value``: Zero, One or a prefixed constant."""
    if value in (0, 1):
        return bytes([ZERO_OP if value == 0 else ONE_OP])
    for prefix, size in ((BYTE_PREFIX, 1), (WORD_PREFIX, 2), (DWORD_PREFIX, 4),
                         (QWORD_PREFIX, 8)):
        if 0 <= value < 1 << 8 * size:
            return bytes([prefix]) + value.to_bytes(size, "little")
    raise ValueError(f"AML integer {value} is out of range")


def aml_dword(value: int) -> bytes:
    """A DWordConst even for small values: EisaId () compiles to one."""
    return bytes([DWORD_PREFIX]) + struct.pack("<I", value)


def _block(opcode: bytes, head: bytes, body: bytes) -> bytes:
    """Opcode PkgLength head body: the shape of every AML term that holds others."""
    return opcode + pkg_length(len(head) + len(body)) + head + body


def aml_name(name: str, value: bytes) -> bytes:
    """Name (NameString, DataRefObject)."""
    return bytes([NAME_OP]) + name_string(name) + value


def aml_package(elements: list[bytes]) -> bytes:
    """Package () {elements}: PackageOp PkgLength NumElements(byte) elements."""
    if len(elements) > 0xFF:
        raise ValueError(f"AML package of {len(elements)} elements needs VarPackageOp")
    return _block(bytes([PACKAGE_OP]), bytes([len(elements)]), b"".join(elements))


def aml_buffer(data: bytes) -> bytes:
    """Buffer (BufferSize) {data}: BufferOp PkgLength BufferSize bytes."""
    return _block(bytes([BUFFER_OP]), aml_integer(len(data)), data)


def aml_scope(path: str, body: bytes) -> bytes:
    return _block(bytes([SCOPE_OP]), name_string(path), body)


def aml_device(path: str, body: bytes) -> bytes:
    return _block(bytes([EXT_OP_PREFIX, DEVICE_OP]), name_string(path), body)


def aml_method(name: str, args: int, body: bytes) -> bytes:
    """Method (name, args, NotSerialized) {body}: MethodFlags bits 0-2 hold the argument
    count; serialize flag and sync level stay 0."""
    return _block(bytes([METHOD_OP]), name_string(name) + bytes([args]), body)


def aml_if(predicate: bytes, body: bytes) -> bytes:
    return _block(bytes([IF_OP]), predicate, body)


def aml_op_region(name: str, space: int, offset: int, length: int) -> bytes:
    """OperationRegion (name, space, offset, length)."""
    return (bytes([EXT_OP_PREFIX, OP_REGION_OP]) + name_string(name) + bytes([space])
            + aml_integer(offset) + aml_integer(length))


def aml_field(region: str, flags: int, fields: list[tuple[str, int]]) -> bytes:
    """Field (region, flags) {name, bits, ...}: FieldFlags packs the access type (bits
    0-3), lock rule (bit 4) and update rule (bits 5-6)."""
    units = b"".join(nameseg(name) + field_width(bits) for name, bits in fields)
    return _block(bytes([EXT_OP_PREFIX, FIELD_OP]), name_string(region) + bytes([flags]), units)


def aml_store(source: bytes, target: bytes) -> bytes:
    return bytes([STORE_OP]) + source + target


def aml_and(left: bytes, right: bytes) -> bytes:
    return bytes([AND_OP]) + left + right + NULL_NAME


def aml_notify(target: str, value: int) -> bytes:
    return bytes([NOTIFY_OP]) + name_string(target) + aml_integer(value)


# Name (\_S5, Package (4) {0, 0, 0, 0}): SLP_TYPa 0 is the PIIX4 soft-off value; SLP_TYPb
# (no PM1b block) and the two reserved elements are 0 too.
S5_AML = aml_name("\\_S5", aml_package([aml_integer(0)] * 4))

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


# QEMU's legacy PIIX4 PCI hotplug registers (hw/acpi/pcihp.c): PCIU and PCID, one bit
# per slot of bus 0 for a card inserted / to be removed, then B0EJ, where writing a slot's
# bit ejects it. GPE0 status bit 1 is the event that says PCIU or PCID changed.
PCI0 = "\\_SB.PCI0"
PCIHP_STATUS = piix3.PCI_HOTPLUG[0] + piix3.PCIU  # PCIU, then PCID
PCIHP_EJECT = piix3.PCI_HOTPLUG[0] + piix3.B0EJ
PCIHP_GPE = "_E01"
SPACE_SYSTEM_IO = 1  # OperationRegion RegionSpace (19.6.100)
DWORD_ACC, NO_LOCK, WRITE_AS_ZEROS = 3, 0, 2 << 5  # FieldFlags (20.2.5.2)
NOTIFY_DEVICE_CHECK, NOTIFY_EJECT_REQUEST = 1, 3  # device notification values (5.6.6)
PCI_SLOTS, PCI_PINS, ISA_IRQS = 32, 4, 16


def slot_name(slot: int) -> str:
    """QEMU's name for a slot's device: 'S' and the two hex digits of devfn (slot << 3)."""
    return f"S{slot << 3:02X}"


def pirq_of(slot: int, pin: int) -> int:
    """The PIIX3 PIRQ line (0 = PIRQA) a slot's INTx pin (0 = INTA) is wired to: the
    swizzle QEMU's pci_slot_get_pirq applies on the i440FX board."""
    return (slot + pin - 1) & 3


def pci_prt(slots: tuple[int, ...], pirq_irqs: tuple[int, ...]) -> bytes:
    """Name (_PRT, ...) (6.2.13): every pin of every slot as {address, pin, Zero, GSI},
    the address's function field 0xFFFF meaning any function. A Zero source says the
    fourth element is a global system interrupt: with only the 8259s, GSI n = IRQ n."""
    return aml_name("_PRT", aml_package([
        aml_package([aml_integer(slot << 16 | 0xFFFF), aml_integer(pin), aml_integer(0),
                     aml_integer(pirq_irqs[pirq_of(slot, pin)])])
        for slot in slots for pin in range(PCI_PINS)]))


def pcihp_registers() -> bytes:
    """The hotplug registers as named fields; WriteAsZeros, since a write of a 0 bit is
    a no-op for the board (only B0EJ is written)."""
    flags = DWORD_ACC | NO_LOCK | WRITE_AS_ZEROS
    return b"".join((
        aml_op_region("PCST", SPACE_SYSTEM_IO, PCIHP_STATUS, 8),
        aml_field("PCST", flags, [("PCIU", 32), ("PCID", 32)]),
        aml_op_region("SEJ", SPACE_SYSTEM_IO, PCIHP_EJECT, 4),
        aml_field("SEJ", flags, [("B0EJ", 32)]),
    ))


def slot_device(slot: int) -> bytes:
    """Device (Sxx) with _ADR (6.1.1, device << 16 | function), _SUN (6.1.12, the slot
    number users see) and _EJ0 (6.3.3), which asks the board to eject the card."""
    return aml_device(slot_name(slot), b"".join((
        aml_name("_ADR", aml_integer(slot << 16)),
        aml_name("_SUN", aml_integer(slot)),
        aml_method("_EJ0", 1, aml_store(aml_integer(1 << slot), name_string(PCI0 + ".B0EJ"))),
    )))


def pcnt_method(slots: tuple[int, ...]) -> bytes:
    """Method (PCNT): reads PCIU and PCID once each (QEMU's modern pc clears PCIU on read)
    and notifies each slot named there: device check for a new card, eject request for
    one to remove (5.6.6)."""
    checks = b"".join(
        aml_if(aml_and(local, aml_integer(1 << slot)), aml_notify(slot_name(slot), value))
        for slot in slots
        for local, value in ((LOCAL0, NOTIFY_DEVICE_CHECK), (LOCAL1, NOTIFY_EJECT_REQUEST)))
    return aml_method("PCNT", 0, aml_store(name_string("PCIU"), LOCAL0)
                      + aml_store(name_string("PCID"), LOCAL1) + checks)


def pci_root_aml(mmio_base: int, slots: tuple[int, ...], pirq_irqs: tuple[int, ...]) -> bytes:
    """Device (\\_SB.PCI0): _HID, _CRS, the INTx routing and the hotplug slots."""
    return aml_device(PCI0, b"".join((
        aml_name("_HID", aml_dword(EISA_PNP0A03)),
        aml_name("_CRS", aml_buffer(pci_root_crs(mmio_base))),
        slots_aml(slots, pirq_irqs),
    )))


@cache  # a few milliseconds of Python, the same for every machine of a board
def slots_aml(slots: tuple[int, ...], pirq_irqs: tuple[int, ...]) -> bytes:
    """The part of PCI0 that depends on the slots only: _PRT, the hotplug registers,
    PCNT and the slot devices."""
    return b"".join((pci_prt(slots, pirq_irqs), pcihp_registers(), pcnt_method(slots),
                     *(slot_device(slot) for slot in slots)))


def gpe_aml() -> bytes:
    """Scope (\\_GPE) { Method (_E01) }: the edge-triggered handler of GPE 1 (5.6.4.1),
    which OSPM runs when the board sets GPE0 status bit 1 with the bit enabled."""
    return aml_scope("\\_GPE", aml_method(PCIHP_GPE, 0, name_string(PCI0 + ".PCNT")))


def _check_pci_params(slots: tuple[int, ...], pirq_irqs: tuple[int, ...]) -> None:
    if any(not 0 <= slot < PCI_SLOTS for slot in slots) or len(set(slots)) != len(slots):
        raise ValueError(f"hotplug slots {slots} are not distinct slots 0-{PCI_SLOTS - 1}")
    if len(pirq_irqs) != 4 or any(not 0 <= irq < ISA_IRQS for irq in pirq_irqs):
        raise ValueError(f"PIRQ IRQs {pirq_irqs} are not four ISA IRQs 0-{ISA_IRQS - 1}")


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
    gpe0_block: int = GPE0_BLOCK  # GPE0_STS, then GPE0_EN at + gpe0_len / 2
    gpe0_len: int = GPE0_LEN  # bytes, even (4.8.5.1); 0: the board has no GPE block


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


def dsdt(pci_mmio_base: int, slots: tuple[int, ...] = HOTPLUG_SLOTS,
         pirq_irqs: tuple[int, ...] = PIRQ_IRQS) -> bytes:
    _check_pci_params(slots, pirq_irqs)
    return _table(b"DSDT", DSDT_REVISION,
                  S5_AML + pci_root_aml(pci_mmio_base, slots, pirq_irqs) + gpe_aml())


def facs() -> bytes:
    """Firmware ACPI control structure: no waking vector (no S3), global lock free."""
    data = struct.pack("<4sIIIIIQB3sI24s", b"FACS", FACS_LENGTH, 0, 0, 0, 0, 0,
                       FACS_VERSION, b"", 0, b"")
    assert len(data) == FACS_LENGTH
    return data


def fadt(pm: PmBlock, facs_addr: int, dsdt_addr: int) -> bytes:
    """Fixed ACPI description table, revision 6: the legacy 32-bit block addresses and
    their 64-bit X_ twins say the same thing (Linux checks that they agree)."""
    if pm.gpe0_len % 2 or not 0 <= pm.gpe0_len <= GPE0_MAX_LEN:
        raise ValueError(f"GPE0 block length {pm.gpe0_len} is not even and 0-{GPE0_MAX_LEN}")
    evt, cnt, tmr = pm.pm_base, pm.pm_base + 4, pm.pm_base + 8
    gpe0 = pm.gpe0_block if pm.gpe0_len else 0
    body = bytearray(FADT_LENGTH - HEADER.size)

    def put(offset: int, fmt: str, *values: int | bytes) -> None:
        struct.pack_into("<" + fmt, body, offset - HEADER.size, *values)

    put(36, "II", facs_addr, dsdt_addr)
    put(46, "HIBBBB", pm.sci_irq, pm.smi_cmd, pm.acpi_enable, pm.acpi_disable, 0, 0)
    put(56, "IIIIIIII", evt, 0, cnt, 0, 0, tmr, gpe0, 0)  # PM1a/b EVT, CNT, PM2, TMR, GPE0/1
    put(88, "BBBBBBBB", 4, 2, 0, 4, pm.gpe0_len, 0, 0, 0)  # block lengths; no GPE1, no _CST
    put(96, "HHHH", LATENCY_NO_C2, LATENCY_NO_C3, 0, 0)
    put(108, "BH", CMOS_CENTURY, LEGACY_DEVICES | HAS_8042 | VGA_NOT_PRESENT | MSI_NOT_SUPPORTED)
    put(112, "I", WBINVD | PROC_C1 | SLP_BUTTON | FIX_RTC | RESET_REG_SUP)
    put(116, "12sBHB", _io(pm.reset_port, 1, ACCESS_BYTE), pm.reset_value, 0, FADT_MINOR)
    put(132, "QQ", 0, dsdt_addr)  # X_FIRMWARE_CTRL stays 0 when FIRMWARE_CTRL is set
    put(148, "12s12s12s12s12s12s", _io(evt, 4, ACCESS_WORD), bytes(12),
        _io(cnt, 2, ACCESS_WORD), bytes(12), bytes(12), _io(tmr, 4, ACCESS_DWORD))
    # X_GPE0_BLK: GPE registers are accessed a byte at a time (4.8.5.1).
    put(220, "12s", _io(gpe0, pm.gpe0_len, ACCESS_BYTE) if gpe0 else bytes(12))
    return _table(b"FACP", FADT_REVISION, bytes(body))


def rsdp(rsdt_addr: int, xsdt_addr: int) -> bytes:
    data = bytearray(struct.pack("<8sB6sBIIQB3s", b"RSD PTR ", 0, OEM_ID, RSDP_REVISION,
                                 rsdt_addr, RSDP_LENGTH, xsdt_addr, 0, b""))
    data[8] = checksum(data[:RSDP_V1_LENGTH])
    data[32] = checksum(data)
    return bytes(data)


def _align(offset: int, to: int) -> int:
    return -(-offset // to) * to


def build(base: int, pm: PmBlock, pci_mmio_base: int, *,
          hotplug_slots: tuple[int, ...] = HOTPLUG_SLOTS,
          pirq_irqs: tuple[int, ...] = PIRQ_IRQS) -> AcpiTables:
    """Lay the tables out from ``base`` (64-byte aligned): FACS, DSDT, FADT, RSDT, XSDT
    and last the RSDP, each 16-byte aligned (the RSDP must be).

    ``pm`` places the fixed-hardware registers the FADT (5.2.9) names, GPE0 included.
    The DSDT (5.2.11.1) describes PCI bus 0: memory decoded from ``pci_mmio_base`` (the
    top of low RAM) up; one ejectable device per slot of ``hotplug_slots`` with QEMU's
    PIIX4 hotplug registers and GPE 1 handler (5.6.4.1, 5.6.6, 6.1.1, 6.1.12, 6.3.3), so
    Linux's acpiphp drives them; and a static _PRT (6.2.13) routing those slots' INTA-D
    through PIIX3 PIRQA-D, which the firmware programs to ISA IRQs ``pirq_irqs``."""
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
    dsdt_addr = place("DSDT", dsdt(pci_mmio_base, hotplug_slots, pirq_irqs))
    fadt_addr = place("FACP", fadt(pm, facs_addr, dsdt_addr))
    rsdt_addr = place("RSDT", _table(b"RSDT", 1, struct.pack("<I", fadt_addr)))
    xsdt_addr = place("XSDT", _table(b"XSDT", 1, struct.pack("<Q", fadt_addr)))
    rsdp_addr = place("RSDP", rsdp(rsdt_addr, xsdt_addr))
    return AcpiTables(base=base, blob=bytes(blob), rsdp=rsdp_addr, offsets=offsets)
