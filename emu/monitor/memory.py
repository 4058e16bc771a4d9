"""``x`` and ``xp``: guest memory as the monitor shows it, with QEMU's ``/FMT``.

``xp`` reads guest-physical addresses, ``x`` linear ones translated through the guest's
page tables as the CPU would (Intel SDM vol. 3A 4.3 32-bit paging with 4 MiB pages and
PSE-36, 4.4 PAE paging, 4.5 4- and 5-level paging; 2.5 CR0.PG, CR4.PSE/PAE/LA57, EFER.LMA).
The walk is done here, over guest RAM, rather than by the engine: its own translation
would set CR2 and the accessed/dirty bits, and a monitor must not change the guest.

Only RAM and ROM are read (as the guest sees them through the PAM registers); MMIO and
unassigned addresses give QEMU's "Cannot access memory" instead of calling a device.
``/i`` disassembles with capstone in the mode of the CPU's current code segment.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from emu.memory.address_space import (
    FOUR_GIB,
    LOW_RAM_END,
    ONE_MIB,
    PAM_RE,
    PAM_SEGMENTS,
    AddressSpace,
)
from emu.monitor.commands import CommandError, command

if TYPE_CHECKING:
    from emu.machine.machine import Machine

MAX_DUMP = 64 * 1024  # bytes one command shows; more is a typo, not a request
MAX_INSNS = 1024
MAX_INSN_LEN = 15
PAGE = 0x1000

CR0_PG = 1 << 31
CR4_PSE, CR4_PAE, CR4_LA57 = 1 << 4, 1 << 5, 1 << 12
EFER_LMA = 1 << 10
PTE_P, PTE_PS = 1, 1 << 7
ADDR_BITS = 0x000F_FFFF_FFFF_F000  # bits 51:12 of a PAE/long-mode entry
CS_L, CS_DB = 1 << 21, 1 << 22  # descriptor-cache flags: 64-bit code, 32-bit default


class AccessError(Exception):
    """Guest address ``addr`` reads nothing (not RAM or ROM, or not mapped)."""

    def __init__(self, addr: int) -> None:
        super().__init__(f"Cannot access memory at {addr:#x}")
        self.addr = addr


# -- physical memory ------------------------------------------------------------------

def _spans(mem: AddressSpace) -> list[tuple[int, int, np.ndarray, int]]:
    """(start, end, array, offset of start in array) of what reads as RAM or ROM now."""
    spans = [(0, LOW_RAM_END, mem.ram, 0)]
    for base, size in PAM_SEGMENTS:
        rom = mem._rom_offset(base)
        if mem.pam.get(base, 0) & PAM_RE:
            spans.append((base, base + size, mem.ram, base))
        elif rom is not None:  # reads from the BIOS image while shadowing is off
            spans.append((base, base + size, mem.rom, rom))
    spans.append((ONE_MIB, mem.below_4g, mem.ram, ONE_MIB))
    spans.append((FOUR_GIB - len(mem.rom), FOUR_GIB, mem.rom, 0))
    if mem.above_4g:
        spans.append((FOUR_GIB, FOUR_GIB + mem.above_4g, mem.ram, mem.below_4g))
    return spans


def read_physical(mem: AddressSpace, addr: int, length: int) -> bytes:
    """Guest-physical [addr, addr+length) from RAM/ROM; AccessError at the first hole."""
    spans = _spans(mem)
    out = bytearray()
    while len(out) < length:
        for start, end, array, offset in spans:
            if start <= addr < end:
                n = min(end - addr, length - len(out))
                out += array[offset + addr - start:offset + addr - start + n].tobytes()
                addr += n
                break
        else:
            raise AccessError(addr)
    return bytes(out)


# -- linear to physical ------------------------------------------------------------

@dataclass(frozen=True)
class Paging:
    """The control registers a translation depends on."""

    cr0: int
    cr3: int
    cr4: int
    efer: int
    a20: bool = True

    @classmethod
    def of(cls, machine: Machine) -> Paging:
        return cls(*machine.cpu.paging_registers(), machine.cpu.a20)

    @property
    def long_mode(self) -> bool:
        return bool(self.efer & EFER_LMA)


def translate(paging: Paging, read: Callable[[int, int], bytes], va: int) -> int:
    """The physical address of linear ``va``; AccessError if it is not mapped.
    ``read(addr, length)`` reads the page tables (physical)."""
    def entry(addr: int, size: int) -> int:
        return int.from_bytes(read(addr, size), "little")

    if not paging.cr0 & CR0_PG:
        pa = va & 0xFFFFFFFF  # long mode implies paging
    elif paging.long_mode:
        levels = 5 if paging.cr4 & CR4_LA57 else 4
        top = 12 + 9 * levels - 1  # highest implemented bit: 47 or 56
        sign = va >> top
        if sign not in (0, (1 << (64 - top)) - 1):
            raise AccessError(va)  # not canonical
        shifts = tuple(12 + 9 * i for i in reversed(range(levels)))
        pa = _walk(entry, paging.cr3 & ADDR_BITS, va, shifts, va)
    elif paging.cr4 & CR4_PAE:
        va &= 0xFFFFFFFF
        pdpte = entry((paging.cr3 & 0xFFFFFFE0) + (va >> 30) * 8, 8)
        if not pdpte & PTE_P:
            raise AccessError(va)
        pa = _walk(entry, pdpte & ADDR_BITS, va, (21, 12), va)
    else:
        pa = _walk32(entry, paging, va & 0xFFFFFFFF)
    return pa if paging.a20 else pa & ~(1 << 20)


def _walk(entry: Callable[[int, int], int], table: int, va: int, shifts: tuple[int, ...],
          shown: int) -> int:
    """A walk over 512-entry tables of 8-byte entries; a PS bit above the last level
    (2 MiB, 1 GiB) ends it early."""
    for shift in shifts:
        e = entry(table + ((va >> shift) & 0x1FF) * 8, 8)
        if not e & PTE_P:
            raise AccessError(shown)
        if shift == 12 or (e & PTE_PS and shift <= 30):
            mask = (1 << shift) - 1
            return (e & ADDR_BITS & ~mask) | (va & mask)
        table = e & ADDR_BITS
    raise AccessError(shown)


def _walk32(entry: Callable[[int, int], int], paging: Paging, va: int) -> int:
    """Two levels of 1024 4-byte entries; 4 MiB pages with PSE, bits 39:32 (PSE-36) in
    PDE bits 20:13."""
    pde = entry((paging.cr3 & 0xFFFFF000) + (va >> 22) * 4, 4)
    if not pde & PTE_P:
        raise AccessError(va)
    if pde & PTE_PS and paging.cr4 & CR4_PSE:
        return (pde & 0xFFC00000) | ((pde >> 13) & 0xFF) << 32 | (va & 0x3FFFFF)
    pte = entry((pde & 0xFFFFF000) + ((va >> 12) & 0x3FF) * 4, 4)
    if not pte & PTE_P:
        raise AccessError(va)
    return (pte & 0xFFFFF000) | (va & 0xFFF)


def read_linear(machine: Machine, va: int, length: int) -> bytes:
    """Linear [va, va+length) through the page tables, a page at a time."""
    paging = Paging.of(machine)

    def phys(addr: int, n: int) -> bytes:
        return read_physical(machine.mem, addr, n)

    out = bytearray()
    while len(out) < length:
        n = min(PAGE - (va & (PAGE - 1)), length - len(out))
        out += phys(translate(paging, phys, va), n)
        va = (va + n) & ((1 << 64) - 1)
    return bytes(out)


# -- arguments --------------------------------------------------------------------------

@dataclass(frozen=True)
class Format:
    count: int = 1
    fmt: str = "x"
    size: int = 4


_SIZES = {"b": 1, "h": 2, "w": 4, "g": 8}
_FORMATS = "xduoci"


def parse_format(text: str) -> Format:
    """QEMU's ``/[count][format][size]``; format and size letters in any order."""
    digits = re.match(r"/(\d*)", text)
    assert digits is not None  # the caller saw the slash
    count = int(digits.group(1)) if digits.group(1) else 1
    fmt, size = "x", 0
    for c in text[digits.end():]:
        if c in _FORMATS:
            fmt = c
        elif c in _SIZES:
            size = _SIZES[c]
        else:
            raise CommandError(f"invalid char in format: '{c}'")
    if fmt == "c":
        size = 1
    return Format(count, fmt, size or 4)


_REG64 = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
          "r12", "r13", "r14", "r15", "rip", "rflags", "cr0", "cr2", "cr3", "cr4")
_REG32 = {"eax": "rax", "ebx": "rbx", "ecx": "rcx", "edx": "rdx", "esi": "rsi",
          "edi": "rdi", "ebp": "rbp", "esp": "rsp", "eip": "rip", "eflags": "rflags"}


def register_value(machine: Machine, name: str) -> int:
    """``$name`` in an expression: a 64- or 32-bit register, or ``pc`` (CS.base + RIP)."""
    regs = machine.cpu.registers()
    if name in _REG64:
        return regs[name]
    if name in _REG32:
        return regs[_REG32[name]] & 0xFFFFFFFF
    if name == "pc":
        cs = machine.cpu.segment("cs")
        return regs["rip"] if cs.flags & CS_L else (cs.base + regs["rip"]) & 0xFFFFFFFF
    raise CommandError(f"unknown register: '${name}'")


def _number(text: str) -> int:
    """A number as C's strtoull with base 0 reads it: 0x hex, leading 0 octal, decimal."""
    try:
        if text[:2].lower() == "0x":
            return int(text[2:], 16)
        if len(text) > 1 and text[0] == "0":
            return int(text[1:], 8)
        return int(text, 10)
    except ValueError:
        raise CommandError(f"invalid number: '{text}'") from None


def parse_address(machine: Machine, text: str) -> int:
    """A sum of terms (``$esp+8``, ``0x1000-16``): numbers and ``$registers``."""
    if not text:
        raise CommandError("missing address")
    bad = next((c for c in text if not (c.isascii() and c.isalnum() or c in "$_+-")), None)
    if bad is not None:
        raise CommandError(f"invalid char in expression: '{bad}'")
    if not re.fullmatch(r"[-+]?[$\w]+([-+][$\w]+)*", text):
        raise CommandError(f"invalid expression: '{text}'")
    total = 0
    for sign, term in re.findall(r"([-+]?)([$\w]+)", text):
        if term.startswith("$"):
            value = register_value(machine, term[1:].lower())
        else:
            value = _number(term)
        total += -value if sign == "-" else value
    return total & ((1 << 64) - 1)


# -- output ---------------------------------------------------------------------------

def _char(v: int) -> str:
    escapes = {ord("'"): "\\'", ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r"}
    if v in escapes:
        return f"'{escapes[v]}'"
    return f"'{chr(v)}'" if 32 <= v <= 126 else f"'\\x{v:02x}'"


def _value(v: int, fmt: str, size: int) -> str:
    bits = 8 * size
    if fmt == "x":
        return f"0x{v:0{size * 2}x}"
    if fmt == "c":
        return _char(v)
    if fmt == "o":
        return ("0" + format(v, "o") if v else "0").rjust(-(-bits // 3))
    if fmt == "d" and v >> (bits - 1):
        v -= 1 << bits
    return str(v).rjust(-(-bits * 10 // 33))


def dump(read: Callable[[int, int], bytes], addr: int, f: Format) -> str:
    """QEMU's layout: 16 bytes a line (8 for bytes), each line led by its address; an
    unreadable line ends the dump with "Cannot access memory"."""
    line_size = 8 if f.size == 1 else 16
    lines = []
    remaining = f.count * f.size
    while remaining > 0:
        n = min(line_size, remaining)
        try:
            data = read(addr, n)
        except AccessError:
            lines.append(f"{addr:016x}: Cannot access memory")
            break
        values = [int.from_bytes(data[i:i + f.size], "little") for i in range(0, n, f.size)]
        lines.append(f"{addr:016x}: " + " ".join(_value(v, f.fmt, f.size) for v in values))
        addr = (addr + n) & ((1 << 64) - 1)
        remaining -= n
    return "\n".join(lines)


def code_bits(machine: Machine) -> int:
    """16, 32 or 64: the operand size of the code segment the CPU runs in now."""
    cs = machine.cpu.segment("cs")
    if Paging.of(machine).long_mode and cs.flags & CS_L:
        return 64
    return 32 if cs.flags & CS_DB else 16


def _readable(read: Callable[[int, int], bytes], addr: int, length: int) -> bytes:
    """As many bytes from ``addr`` (up to ``length``) as read without a hole."""
    out = bytearray()
    while len(out) < length:
        n = min(PAGE - ((addr + len(out)) & (PAGE - 1)), length - len(out))
        try:
            out += read(addr + len(out), n)
        except AccessError:
            break
    return bytes(out)


def disassemble(read: Callable[[int, int], bytes], addr: int, count: int, bits: int) -> str:
    """``count`` instructions from ``addr`` as QEMU prints capstone's (AT&T syntax):
    address, up to 8 code bytes, mnemonic and operands; longer ones continue below."""
    import capstone

    mode = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}[bits]
    md = capstone.Cs(capstone.CS_ARCH_X86, mode)
    md.syntax = capstone.CS_OPT_SYNTAX_ATT
    wanted = count * MAX_INSN_LEN
    code = _readable(read, addr, wanted)
    lines: list[str] = []
    pos = 0
    while len(lines) < count:
        insn = next(md.disasm(code[pos:pos + MAX_INSN_LEN], addr + pos, 1), None)
        if insn is None:
            if len(code) < wanted and len(code) - pos < MAX_INSN_LEN:  # runs into a hole
                lines.append(f"0x{addr + pos:08x}: Cannot access memory")
                break
            lines.append(f"0x{addr + pos:08x}:  {code[pos]:02x}{' ' * 21}  (bad)")
            pos += 1
            continue
        raw = bytes(insn.bytes)
        head = " ".join(f"{b:02x}" for b in raw[:8])
        lines.append(f"0x{insn.address:08x}:  {head:<23}  {insn.mnemonic:<8} "
                     f"{insn.op_str}".rstrip())
        for i in range(8, len(raw), 8):
            lines.append(f"0x{insn.address + i:08x}:  "
                         + " ".join(f"{b:02x}" for b in raw[i:i + 8]))
        pos += insn.size
    return "\n".join(lines)


# -- the commands -----------------------------------------------------------------------

def _memory_command(machine: Machine, args: list[str], name: str,
                    read: Callable[[int, int], bytes]) -> str:
    if args and args[0].startswith("/"):
        f, rest = parse_format(args[0]), args[1:]
    else:
        f, rest = Format(), args
    if not rest:
        raise CommandError(f"{name}: missing address (usage: {name} /fmt addr)")
    addr = parse_address(machine, "".join(rest))
    if f.fmt == "i":
        if f.count > MAX_INSNS:
            raise CommandError(f"{name}: at most {MAX_INSNS} instructions at a time")
        return disassemble(read, addr, f.count, code_bits(machine))
    if f.count * f.size > MAX_DUMP:
        raise CommandError(f"{name}: at most {MAX_DUMP} bytes at a time")
    return dump(read, addr, f)


_FMT_HELP = "(fmt: /[count][x|d|u|o|c|i][b|h|w|g]; addr: number or $reg sum)"


@command("x", "/fmt addr", "virtual memory dump starting at addr " + _FMT_HELP,
         max_args=6, min_args=1)
def _x(machine: Machine, args: list[str]) -> str:
    return _memory_command(machine, args, "x",
                           lambda a, n: read_linear(machine, a, n))


@command("xp", "/fmt addr", "physical memory dump starting at addr " + _FMT_HELP,
         max_args=6, min_args=1)
def _xp(machine: Machine, args: list[str]) -> str:
    return _memory_command(machine, args, "xp",
                           lambda a, n: read_physical(machine.mem, a, n))
