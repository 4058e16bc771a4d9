"""``x``/``xp``: QEMU's /FMT over known guest memory, page walks, disassembly, errors."""

from __future__ import annotations

import struct

import pytest
import unicorn.x86_const as x

from emu.monitor.commands import CommandError, execute
from emu.monitor.memory import CS_L, AccessError, Paging, read_physical, translate

DATA = 0x200000


@pytest.fixture
def m(machine):
    machine.mem.write(DATA, bytes(range(0x20)) + b"Hi!\n'\\\x7f" + b"\xfe\xff\xff\xff")
    return machine


def test_xp_formats_and_sizes(m, run):
    assert run(m, f"xp {DATA:#x}") == "0000000000200000: 0x03020100"
    assert run(m, f"xp /8xb {DATA:#x}") == \
        "0000000000200000: 0x00 0x01 0x02 0x03 0x04 0x05 0x06 0x07"
    assert run(m, f"xp /3xh {DATA + 2:#x}") == "0000000000200002: 0x0302 0x0504 0x0706"
    assert run(m, f"xp /2g {DATA:#x}") == \
        "0000000000200000: 0x0706050403020100 0x0f0e0d0c0b0a0908"
    assert run(m, f"xp /6x {DATA:#x}").splitlines() == [
        "0000000000200000: 0x03020100 0x07060504 0x0b0a0908 0x0f0e0d0c",
        "0000000000200010: 0x13121110 0x17161514"]
    assert run(m, f"xp /10bx {DATA:#x}").splitlines()[1] == "0000000000200008: 0x08 0x09"


def test_the_format_may_be_glued_to_the_command(m, run):
    assert run(m, f"xp/2xb {DATA + 1:#x}") == run(m, f"xp /2xb {DATA + 1:#x}") == \
        "0000000000200001: 0x01 0x02"
    assert run(m, f"x/i {DATA:#x}") == run(m, f"x /i {DATA:#x}")


def test_xp_decimal_octal_and_chars(m, run):
    end = DATA + 0x27
    assert run(m, f"xp /2dw {end:#x}") == "0000000000200027:         -2          0"
    assert run(m, f"xp /uw {end:#x}") == "0000000000200027: 4294967294"
    assert run(m, f"xp /db {end:#x}") == "0000000000200027:  -2"
    assert run(m, f"xp /ob {DATA + 8:#x}") == "0000000000200008: 010"
    assert run(m, f"xp /2oh {DATA:#x}") == "0000000000200000:   0400  01402"
    assert run(m, f"xp /8c {DATA + 0x20:#x}") == \
        "0000000000200020: 'H' 'i' '!' '\\n' '\\'' '\\\\' '\\x7f' '\\xfe'"


def test_count_zero_prints_nothing(m, run):
    assert run(m, f"xp /0x {DATA:#x}") == ""


def test_rom_and_holes(m, run):
    # The reset vector stub in the BIOS image, seen at the top of 4 GiB and, while PAM
    # is off, below 1 MiB.
    assert run(m, "xp /4xb 0xfffffff0") == "00000000fffffff0: 0xfa 0xf4 0xeb 0xfd"
    assert run(m, "xp /4xb 0xffff0") == "00000000000ffff0: 0xfa 0xf4 0xeb 0xfd"
    assert run(m, "xp 0xfee00000") == "00000000fee00000: Cannot access memory"
    assert run(m, "xp 0xa0000") == "00000000000a0000: Cannot access memory"
    assert run(m, "xp 0xffffffffffff0000") == "ffffffffffff0000: Cannot access memory"
    assert run(m, "xp /12x 0x9ffe0").splitlines()[1:] == [
        "000000000009fff0: 0x00000000 0x00000000 0x00000000 0x00000000",
        "00000000000a0000: Cannot access memory"]


def test_x_without_paging_is_linear_equals_physical(m, run):
    assert run(m, f"x /4x {DATA:#x}") == run(m, f"xp /4x {DATA:#x}")


def test_register_expressions(m, run, error):
    m.cpu.uc.reg_write(x.UC_X86_REG_RSP, DATA + 8)
    assert run(m, "x $esp") == "0000000000200008: 0x0b0a0908"
    assert run(m, "x $rsp+8") == "0000000000200010: 0x13121110"
    assert run(m, "x $esp-0x8") == "0000000000200000: 0x03020100"
    assert run(m, "xp $esp + 4") == "000000000020000c: 0x0f0e0d0c"  # spaces are fine
    m.cpu.uc.reg_write(x.UC_X86_REG_RIP, DATA)
    assert run(m, "x /xb $eip") == run(m, "x /xb $pc") == "0000000000200000: 0x00"
    assert run(m, "x /xb 2097152") == "0000000000200000: 0x00"  # decimal
    assert error(m, "x $nosuch") == "unknown register: '$nosuch'"


@pytest.mark.parametrize("line", [
    "x", "xp", "x /4x", "x /4q 0", "x /x4 0", "x 0x", "x 0xzz", "x $", "x 1+", "x --1",
    "x 1*2", "x /99999999 0", "x /2000i 0", "xp (0)", "x \x00", "x 09", "xp ${x}",
    "x /4x 0 junk!", "x a b c d e f g h",
])
def test_garbage_gets_one_line(m, error, line):
    error(m, line)


@pytest.mark.parametrize("line", ["x 0x10000000000000000", "xp -1", "x /g 0xfffffffffffffff8",
                                  "x /i 0xffffffffffffffff", "xp /100i 0xfffff"])
def test_odd_addresses_never_crash(m, line):
    try:
        execute(m, line)
    except CommandError as e:
        assert "\n" not in str(e)


# -- page walks ---------------------------------------------------------------------------

PT = 0x300000  # page tables are built from here
P, RW, PS = 1, 2, 0x80


def build(m, entries: dict[int, int], size: int) -> None:
    """Write page-table entries (physical address -> value) of ``size`` bytes."""
    for addr, value in entries.items():
        m.mem.write(addr, value.to_bytes(size, "little"))


def reader(m):
    return lambda addr, n: read_physical(m.mem, addr, n)


def test_32bit_paging_4k_and_4m_pages(m):
    pd, pt = PT, PT + 0x1000
    build(m, {pd + (0x40000000 >> 22) * 4: pt | P | RW,
              pt + 0 * 4: DATA | P, pt + 1 * 4: 0x250000 | P,
              pd + (0x80000000 >> 22) * 4: 0x400000 | P | PS,
              pd + (0x90000000 >> 22) * 4: 0x400000 | (0x3 << 13) | P | PS}, 4)
    paging = Paging(cr0=0x80000011, cr3=pd, cr4=0x10, efer=0)
    assert translate(paging, reader(m), 0x40000123) == DATA + 0x123
    assert translate(paging, reader(m), 0x40001004) == 0x250004
    assert translate(paging, reader(m), 0x80123456) == 0x523456
    assert translate(paging, reader(m), 0x90000010) == (3 << 32) | 0x400010  # PSE-36
    for va in (0x40002000, 0xC0000000):  # not-present PTE, not-present PDE
        with pytest.raises(AccessError):
            translate(paging, reader(m), va)
    without_pse = Paging(cr0=0x80000011, cr3=pd, cr4=0, efer=0)
    with pytest.raises(AccessError):  # PS is ignored: the "PT" at 0x400000 is all zeros
        translate(without_pse, reader(m), 0x80123456)


def test_pae_paging(m):
    pdpt, pd, pt = PT + 0x20, PT + 0x1000, PT + 0x2000
    build(m, {pdpt + 1 * 8: pd | P, pd + 0: pt | P, pt + 5 * 8: DATA | P,
              pd + 8: 0x600000 | P | PS}, 8)
    paging = Paging(cr0=0x80000011, cr3=pdpt, cr4=0x20, efer=0)
    assert translate(paging, reader(m), 0x40005010) == DATA + 0x10
    assert translate(paging, reader(m), 0x40212345) == 0x612345  # 2 MiB page
    with pytest.raises(AccessError):
        translate(paging, reader(m), 0x80000000)  # PDPTE 2 not present


def test_long_mode_paging(m):
    pml4, pdpt, pd, pt = PT, PT + 0x1000, PT + 0x2000, PT + 0x3000
    va = 0xFFFF_8000_0040_3000  # PML4 256, PDPT 0, PD 2, PT 3
    build(m, {pml4 + 256 * 8: pdpt | P, pdpt + 0: pd | P, pd + 2 * 8: pt | P,
              pt + 3 * 8: DATA | P | (1 << 63),  # NX does not end up in the address
              pml4 + 0: pdpt | P, pdpt + 1 * 8: 0x40000000 | P | PS}, 8)
    paging = Paging(cr0=0x80000011, cr3=pml4, cr4=0x20, efer=0x500)
    assert translate(paging, reader(m), va + 0x20) == DATA + 0x20
    assert translate(paging, reader(m), 0x40000000 + 0x123) == 0x40000123  # 1 GiB page
    for bad in (0x0000_8000_0000_0000, va + 0x1000):  # not canonical; not present
        with pytest.raises(AccessError):
            translate(paging, reader(m), bad)


def test_a20_off_wraps_at_1mib(m):
    paging = Paging(cr0=0x10, cr3=0, cr4=0, efer=0, a20=False)
    assert translate(paging, reader(m), 0x100123) == 0x123


def enter_long_mode(m, pml4: int) -> None:
    uc = m.cpu.uc
    uc.msr_write(0xC0000080, 1 << 8)  # EFER.LME
    uc.reg_write(x.UC_X86_REG_CR3, pml4)
    uc.reg_write(x.UC_X86_REG_CR4, 0x20)
    uc.reg_write(x.UC_X86_REG_CR0, 0x80000011)  # and so EFER.LMA
    m.cpu.segment("cs").flags |= CS_L


def test_x_reads_through_the_guests_page_tables(m, run):
    pml4, pdpt, pd, pt = PT, PT + 0x1000, PT + 0x2000, PT + 0x3000
    build(m, {pml4 + 511 * 8: pdpt | P, pdpt + 511 * 8: pd | P, pd + 0: pt | P,
              pt + 0: DATA | P, pt + 8: 0x250000 | P}, 8)
    m.mem.write(0x250000, struct.pack("<I", 0xC0FFEE64))
    enter_long_mode(m, pml4)
    assert run(m, "x /2x 0xffffffffc0000ff8") == \
        "ffffffffc0000ff8: 0x00000000 0x00000000"
    assert run(m, "x /4x 0xffffffffc0000ff8") == \
        "ffffffffc0000ff8: 0x00000000 0x00000000 0xc0ffee64 0x00000000"
    assert run(m, "x /xb 0xffffffffc0000001") == "ffffffffc0000001: 0x01"
    assert run(m, "x 0xffffffffc0002000") == "ffffffffc0002000: Cannot access memory"
    assert run(m, "x 0x1000") == "0000000000001000: Cannot access memory"
    assert run(m, "xp 0x1000") == "0000000000001000: 0x00000000"


def test_x_in_a_guest_that_turned_paging_on(make_machine, run):
    g = make_machine("exceptions64")
    g.run_until(340_000)  # by then: long mode with the guest's identity map
    assert Paging.of(g).long_mode
    assert run(g, "x /8x 0x100000") == run(g, "xp /8x 0x100000")
    assert run(g, "x 0x123456789000") .endswith("Cannot access memory")


# -- disassembly --------------------------------------------------------------------------

CODE = bytes.fromhex("b8785634 12c3") + b"\x90" * 4


def test_disassembly_follows_the_cpu_mode(m, run):
    m.mem.write(DATA, CODE)
    assert run(m, f"xp /2i {DATA:#x}").splitlines() == [  # flat 32-bit (Multiboot entry)
        "0x00200000:  b8 78 56 34 12           movl     $0x12345678, %eax",
        "0x00200005:  c3                       retl"]
    m.cpu.reset()  # real mode
    assert run(m, f"xp /2i {DATA:#x}").splitlines() == [
        "0x00200000:  b8 78 56                 movw     $0x5678, %ax",
        "0x00200003:  34 12                    xorb     $0x12, %al"]
    m.mem.write(DATA, bytes.fromhex("48b8efcdab8967452301"))  # movabs, 10 bytes
    enter_long_mode(m, PT)
    assert run(m, f"xp /i {DATA:#x}").splitlines() == [
        "0x00200000:  48 b8 ef cd ab 89 67 45  movabsq  $0x123456789abcdef, %rax",
        "0x00200008:  23 01"]


def test_disassembly_stops_at_a_hole(m, run):
    m.mem.write(0x9FFFE, b"\x90\x90")
    assert run(m, "xp /3i 0x9fffe").splitlines() == [
        "0x0009fffe:  90                       nop",
        "0x0009ffff:  90                       nop",
        "0x000a0000: Cannot access memory"]
    m.mem.write(0x9FFFF, b"\xb8")  # an instruction cut by the hole
    assert run(m, "xp /2i 0x9fffe").splitlines()[1] == "0x0009ffff: Cannot access memory"


def test_x_i_at_pc(m, run):
    m.mem.write(DATA, CODE)
    m.cpu.uc.reg_write(x.UC_X86_REG_RIP, DATA + 5)
    assert run(m, "x /i $pc") == "0x00200005:  c3                       retl"
