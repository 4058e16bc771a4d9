"""``info`` commands that show the machine: its name, CPUs, object tree, address spaces,
PCI functions, interrupt controllers, disks, character devices and the monitor history.

Output follows QEMU's human monitor where QEMU has a shape for it (``info pic``,
``info pci``, ``info block``, ``info chardev``, ``info cpus``, ``info history``), and
is a plain equivalent where our model differs (``info qtree`` shows our object tree,
``info mtree`` our flat memory map). Everything here only reads: no device sees an
access it would not have seen otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from emu.cpu.dump import dump_state
from emu.devices.i8259 import IsaPic, Pic8259
from emu.devices.ide import IdeDrive
from emu.devices.isa_debug import DebugCon
from emu.devices.pci import PciDevice
from emu.host.block import BlockBackend
from emu.host.chardev import Chardev, MuxChardev, MuxFrontend
from emu.memory.address_space import PAM_RE, PAM_WE
from emu.monitor.commands import CommandError, command
from emu.monitor.memory import (
    CR0_PG,
    CR4_LA57,
    CR4_PAE,
    CR4_PSE,
    PTE_PS,
    AccessError,
    Paging,
    read_physical,
)
from emu.qom import Object, fields_of

if TYPE_CHECKING:
    from emu.machine.machine import Machine


def _objects(machine: Machine, cls: type) -> Iterator[Any]:
    return (o for o in machine.walk() if isinstance(o, cls))


@command("info name", help="show the current VM name")
def _info_name(machine: Machine, args: list[str]) -> str:
    cfg = getattr(machine, "cfg", None)
    return cfg.name if cfg is not None else ""


@command("info cpus", help="show infos for each CPU")
def _info_cpus(machine: Machine, args: list[str]) -> str:
    # Commands run on the machine thread, which is the one thread running the CPU.
    return f"* CPU #0: thread_id={threading.get_native_id()}"


# -- info registers ----------------------------------------------------------------------

@command("info registers", help="show the cpu registers")
def _info_registers(machine: Machine, args: list[str]) -> str:
    # QEMU's hmp_info_registers: a header per CPU, then the dump with the x87/SSE part
    return "\n".join(["", "CPU#0", *dump_state(machine.cpu, fpu=True)])


# -- info tlb / info mem (target/i386/monitor.c) -------------------------------------------

PROT_BITS = 0x7  # present, writable, user: what info mem shows
TABLE_ADDR = 0x3FFFFFFFFF000  # the address bits QEMU takes from an entry (51:12)


class Leaf(NamedTuple):
    """One present mapping the walk found: linear address and size, the entry, the mask
    QEMU prints it through, and the U/W/P bits of every level combined as QEMU does."""

    va: int
    size: int
    entry: int
    mask: int
    prot: int


def _table(machine: Machine, addr: int, entries: int, width: int) -> np.ndarray:
    """A page table's entries; a table outside RAM reads as not present."""
    try:
        raw = read_physical(machine.mem, addr, entries * width)
    except AccessError:
        raw = bytes(entries * width)
    return np.frombuffer(raw, dtype="<u4" if width == 4 else "<u8")


def _present(table: np.ndarray) -> list[tuple[int, int]]:
    return [(int(i), int(table[i])) for i in np.flatnonzero(table & 1)]


def _leaves_32(machine: Machine, p: Paging) -> list[Leaf]:
    out = []
    for l1, pde in _present(_table(machine, p.cr3 & ~0xFFF, 1024, 4)):
        if pde & PTE_PS and p.cr4 & CR4_PSE:  # 4 MiB page (QEMU masks it at 2 MiB)
            out.append(Leaf(l1 << 22, 1 << 22, pde, ~((1 << 21) - 1), pde & PROT_BITS))
            continue
        for l2, pte in _present(_table(machine, pde & ~0xFFF, 1024, 4)):
            out.append(Leaf((l1 << 22) + (l2 << 12), 1 << 12, pte & ~PTE_PS, ~0xFFF,
                            pte & pde & PROT_BITS))
    return out


def _leaves_pae(machine: Machine, p: Paging) -> list[Leaf]:
    out = []
    for l1, pdpe in _present(_table(machine, p.cr3 & ~0x1F & 0xFFFFFFFF, 4, 8)):
        for l2, pde in _present(_table(machine, pdpe & TABLE_ADDR, 512, 8)):
            va = (l1 << 30) + (l2 << 21)
            if pde & PTE_PS:  # 2 MiB page (QEMU masks it at 1 MiB)
                out.append(Leaf(va, 1 << 21, pde, ~((1 << 20) - 1), pde & PROT_BITS))
                continue
            for l3, pte in _present(_table(machine, pde & TABLE_ADDR, 512, 8)):
                out.append(Leaf(va + (l3 << 12), 1 << 12, pte & ~PTE_PS, ~0xFFF,
                                pte & pde & PROT_BITS))
    return out


def _leaves_la48(machine: Machine, pml4: int, top: int) -> list[Leaf]:
    out = []
    for l1, pml4e in _present(_table(machine, pml4, 512, 8)):
        for l2, pdpe in _present(_table(machine, pml4e & TABLE_ADDR, 512, 8)):
            va = top + (l1 << 39) + (l2 << 30)
            if pdpe & PTE_PS:  # 1 GiB page
                out.append(Leaf(va, 1 << 30, pdpe, 0x3FFFFC0000000,
                                pdpe & pml4e & PROT_BITS))
                continue
            for l3, pde in _present(_table(machine, pdpe & TABLE_ADDR, 512, 8)):
                va2 = va + (l3 << 21)
                if pde & PTE_PS:  # 2 MiB page
                    out.append(Leaf(va2, 1 << 21, pde, 0x3FFFFFFE00000,
                                    pde & pdpe & pml4e & PROT_BITS))
                    continue
                for l4, pte in _present(_table(machine, pde & TABLE_ADDR, 512, 8)):
                    out.append(Leaf(va2 + (l4 << 12), 1 << 12, pte & ~PTE_PS, TABLE_ADDR,
                                    pte & pde & pdpe & pml4e & PROT_BITS))
    return out


def _leaves(machine: Machine, p: Paging) -> list[Leaf]:
    """Every present mapping in address order: 32-bit, PAE, 4- or 5-level paging."""
    if not p.cr4 & CR4_PAE:
        return _leaves_32(machine, p)
    if not p.long_mode:
        return _leaves_pae(machine, p)
    if not p.cr4 & CR4_LA57:
        return _leaves_la48(machine, p.cr3 & TABLE_ADDR, 0)
    return [leaf for l0, pml5e in _present(_table(machine, p.cr3 & TABLE_ADDR, 512, 8))
            for leaf in _leaves_la48(machine, pml5e & TABLE_ADDR, l0 << 48)]


def _canonical(p: Paging, addr: int) -> int:
    """QEMU's addr_canonical: sign-extended from bit 47 (56 with LA57), in 64 bits."""
    top = 56 if p.cr4 & CR4_LA57 else 47
    if addr >> top & 1:
        addr |= ((1 << 64) - 1) & ~((1 << (top + 1)) - 1)
    return addr & ((1 << 64) - 1)


def _tlb_line(p: Paging, leaf: Leaf) -> str:
    e = leaf.entry
    flags = "".join(c if e & bit else "-" for bit, c in (
        (1 << 63, "X"), (1 << 8, "G"), (1 << 7, "P"), (1 << 6, "D"), (1 << 5, "A"),
        (1 << 4, "C"), (1 << 3, "T"), (1 << 2, "U"), (1 << 1, "W")))
    return f"{_canonical(p, leaf.va):016x}: {e & leaf.mask & ((1 << 64) - 1):016x} {flags}"


def _ranges(leaves: list[Leaf]) -> list[tuple[int, int, int]]:
    """(start, end, prot) of contiguous mappings with the same U/W/P bits."""
    out: list[tuple[int, int, int]] = []
    for leaf in leaves:
        if out and out[-1][1] == leaf.va and out[-1][2] == leaf.prot:
            out[-1] = (out[-1][0], leaf.va + leaf.size, leaf.prot)
        elif leaf.prot:
            out.append((leaf.va, leaf.va + leaf.size, leaf.prot))
    return out


def _mem_line(p: Paging, start: int, end: int, prot: int) -> str:
    first, last, size = (_canonical(p, a) for a in (start, end, end - start))
    return f"{first:016x}-{last:016x} {size:016x} {'u' if prot & 4 else '-'}r" + (
        "w" if prot & 2 else "-")


@command("info tlb", help="show virtual to physical memory mappings")
def _info_tlb(machine: Machine, args: list[str]) -> str:
    p = Paging.of(machine)
    if not p.cr0 & CR0_PG:
        return "PG disabled"
    return "\n".join(_tlb_line(p, leaf) for leaf in _leaves(machine, p))


@command("info mem", help="show the active virtual memory mappings")
def _info_mem(machine: Machine, args: list[str]) -> str:
    p = Paging.of(machine)
    if not p.cr0 & CR0_PG:
        return "PG disabled"
    return "\n".join(_mem_line(p, *r) for r in _ranges(_leaves(machine, p)))


# -- info qtree ---------------------------------------------------------------------------

def format_value(value: Any) -> str:
    """A field value as ``info qtree`` shows it: integers in decimal and hex."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value} ({value:#x})"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bytes):
        return value.hex() or '""'
    return str(value)


def _qtree(obj: Object, indent: int) -> list[str]:
    pad = " " * indent
    lines = [f'{pad}dev: {obj.TYPE_NAME}, id "{obj.name}"']
    lines += [f"{pad}  {f.wire} = {format_value(f.__get__(obj))}"
              for f in fields_of(type(obj), "prop")]
    for child in obj.children.values():
        lines += _qtree(child, indent + 2)
    return lines


@command("info qtree", help="show the device tree (objects, their types and properties)")
def _info_qtree(machine: Machine, args: list[str]) -> str:
    return "\n".join(_qtree(machine, 0))


# -- info mtree ---------------------------------------------------------------------------

PAM_MODES = {0: "off", PAM_RE: "read", PAM_WE: "write", PAM_RE | PAM_WE: "read/write"}


def _region_row(machine: Machine, name: str, base: int) -> tuple[str, str] | None:
    """(ram|rom|i/o as QEMU labels regions, name) of a region; None for the fill of
    unassigned holes."""
    if name.startswith("unassigned@"):
        return None
    if name.startswith("pam@"):
        # PAM segments (82441FX 3.2.16): shadow RAM while reads go to RAM, else the BIOS
        # image or nothing, with writes to RAM or dropped through an MMIO handler.
        mode = machine.mem.pam.get(base, 0)
        if mode & PAM_RE:
            kind = "ram"
        elif mode == 0 and machine.mem._rom_offset(base) is not None:
            kind = "rom"
        else:
            kind = "i/o"
        return kind, f"{name} [PAM {PAM_MODES[mode]}]"
    if name == "bios":
        return "rom", name
    return ("ram" if name.startswith("ram") else "i/o"), name


def _io_ranges(machine: Machine) -> Iterator[tuple[int, int, str]]:
    """(first port, last port, owner) for each run of ports with one owner."""
    start, owner = 0, machine.io.owner(0)
    for port in range(1, 0x10001):
        now = machine.io.owner(port) if port < 0x10000 else None
        if now != owner or port == 0x10000:
            if owner is not None:
                yield start, port - 1, owner
            start, owner = port, now


@command("info mtree", help="show the memory map (RAM, ROM, PAM, MMIO) and the I/O ports")
def _info_mtree(machine: Machine, args: list[str]) -> str:
    lines = ["address-space: memory"]
    for r in sorted(machine.mem.regions, key=lambda r: r.base):
        row = _region_row(machine, r.name, r.base)
        if row is not None:
            lines.append(f"  {r.base:016x}-{r.end - 1:016x} ({row[0]}): {row[1]}")
    lines += ["", "address-space: I/O"]
    lines += [f"  {first:016x}-{last:016x} (i/o): {owner}"
              for first, last, owner in _io_ranges(machine)]
    return "\n".join(lines)


# -- info pci -----------------------------------------------------------------------------

# PCI Local Bus Specification 2.1, appendix D (class codes), the ones a PC board holds.
PCI_CLASS_NAMES = {
    0x0100: "SCSI controller", 0x0101: "IDE controller", 0x0106: "SATA controller",
    0x0200: "Ethernet controller", 0x0300: "VGA controller", 0x0401: "Audio controller",
    0x0600: "Host bridge", 0x0601: "ISA bridge", 0x0604: "PCI bridge", 0x0680: "Bridge",
    0x0c03: "USB controller",
}
SUBSYSTEM, INTERRUPT_PIN = 0x2C, 0x3D


def _pci_function(dev: PciDevice) -> list[str]:
    cls = dev.config_read(0x0A, 2)
    desc = PCI_CLASS_NAMES.get(cls, f"Class {cls:04x}")
    lines = [f"  Bus  0, device {dev.devfn >> 3:3}, function {dev.devfn & 7}:",
             f"    {desc}: PCI device {dev.vendor_id:04x}:{dev.device_id:04x}"]
    sub_vendor, sub_id = dev.config_read(SUBSYSTEM, 2), dev.config_read(SUBSYSTEM + 2, 2)
    if sub_vendor or sub_id:
        lines.append(f"      PCI subsystem {sub_vendor:04x}:{sub_id:04x}")
    pin = dev.config_read(INTERRUPT_PIN, 1)
    if pin:
        lines.append(f"      IRQ {dev.config_read(0x3C, 1)}, pin {chr(ord('A') + pin - 1)}")
    for index, size in sorted(dev.IO_BARS.items()):
        base = dev.io_bar(index)
        if base is None:
            lines.append(f"      BAR{index}: I/O (not decoded), {size} bytes.")
        else:
            lines.append(f"      BAR{index}: I/O at {base:#06x} [{base + size - 1:#06x}].")
    lines.append(f'      id "{dev.name}"')
    return lines


@command("info pci", help="show PCI info")
def _info_pci(machine: Machine, args: list[str]) -> str:
    lines: list[str] = []
    for dev in sorted(_objects(machine, PciDevice), key=lambda d: d.devfn):
        lines += _pci_function(dev)
    return "\n".join(lines)


# -- info pic / info irq ------------------------------------------------------------------

def _pic_line(index: int, chip: Pic8259) -> str:
    return (f"pic{index}: irr={chip.irr:02x} imr={chip.imr:02x} isr={chip.isr:02x} "
            f"hprio={chip.priority_add} irq_base={chip.vector_base:02x} "
            f"rr_sel={int(chip.read_isr)} elcr={chip.elcr:02x} fnm={int(chip.sfnm)}")


@command("info pic", help="show PIC state")
def _info_pic(machine: Machine, args: list[str]) -> str:
    lines = []
    for pic in _objects(machine, IsaPic):
        lines += [_pic_line(0, pic.master), _pic_line(1, pic.slave)]
    return "\n".join(lines)


@command("info irq", help="show the interrupt statistics (rising inputs per ISA IRQ)")
def _info_irq(machine: Machine, args: list[str]) -> str:
    lines = []
    for pic in _objects(machine, IsaPic):
        # Host-side statistics, not guest state: the PIC pair's ``irq_counts``, one
        # counter per ISA line, when it counts at all.
        counts = getattr(pic, "irq_counts", None)
        if counts is None:
            raise CommandError("info irq: this interrupt controller keeps no statistics")
        lines.append("IRQ statistics for isa-i8259:")  # QEMU's type name for the chip
        lines += [f"{irq:2}: {n}" for irq, n in enumerate(counts) if n]
    return "\n".join(lines)


# -- info block ---------------------------------------------------------------------------

def _block_entry(name: str, drive: IdeDrive) -> list[str]:
    backend: BlockBackend | None = drive.backend
    if backend is None:
        lines = [f"{name}: [not inserted]"]
    else:
        mode = ", read-only" if backend.readonly else ""
        lines = [f"{name}: {backend.path} ({backend.format}{mode})"]
    lines.append(f"    Attached to:      {drive.path}")
    if drive.media == "cdrom":
        lock = "locked" if drive.medium_locked else "not locked"
        tray = "open" if drive.tray_open else "closed"
        lines.append(f"    Removable device: {lock}, tray {tray}")
    lines.append("    Cache mode:       writeback")
    if backend is not None and backend.snapshot:
        lines.append("    Snapshot:         writes kept in a temporary overlay, dropped at exit")
    return lines


@command("info block", help="show the block devices")
def _info_block(machine: Machine, args: list[str]) -> str:
    entries = ["\n".join(_block_entry(name, d)) for name, _, d in machine.drives()]
    return "\n\n".join(entries)


# -- info chardev -------------------------------------------------------------------------

def _endpoints(cd: Chardev) -> list[Chardev]:
    """The frontend sides of an opened backend: a mux has one per user."""
    if isinstance(cd, MuxChardev):
        return [cd.frontend(i) for i in range(2 if cd.monitor else 1)]
    return [cd]


def _filename(cd: Chardev) -> str:
    return cd.mux.spec if isinstance(cd, MuxFrontend) else cd.spec


@command("info chardev", help="show the character devices")
def _info_chardev(machine: Machine, args: list[str]) -> str:
    rows: list[tuple[str, Chardev]] = []
    seen: set[int] = set()
    for dev in machine.walk():
        cd = getattr(dev, "chardev", None)
        if isinstance(cd, Chardev) and id(cd) not in seen:
            seen.add(id(cd))
            rows.append(("debugcon" if isinstance(dev, DebugCon) else dev.name, cd))
    # The machine pumps every opened backend; those not bound to a device serve monitors.
    monitors = 0
    for source in getattr(machine, "_input_sources", []):
        for cd in _endpoints(source):
            if id(cd) not in seen and cd.attached is not None:
                seen.add(id(cd))
                rows.append((f"compat_monitor{monitors}", cd))
                monitors += 1
    return "\n".join(f"{label}: filename={_filename(cd)}" for label, cd in rows)


# -- info history -------------------------------------------------------------------------

@command("info history", help="show the command line history")
def _info_history(machine: Machine, args: list[str]) -> str:
    from emu.monitor.hmp import current_session

    session = current_session()
    if session is None:
        return ""  # a command from QMP: no line history of its own
    return "\n".join(f"{i}: '{line}'" for i, line in enumerate(session.history))
