"""AddressSpace: the PC memory map, ROM aliases, unassigned holes, checked Python access.

The map follows the i440FX PC layout described in emu/memory/address_space.py: RAM below
640 KiB, the VGA hole at 0xA0000, RAM 0xC0000-0xDFFFF, the BIOS tail at 0xE0000-0xFFFFF,
RAM from 1 MiB up to at most 3.5 GiB, the rest of RAM above 4 GiB, the BIOS below 4 GiB.
"""

from __future__ import annotations

import gc
import struct
import time
import weakref
from collections.abc import Iterator

import numpy as np
import pytest
import unicorn
import unicorn.x86_const as x

from emu.cpu.x86 import X86Cpu
from emu.memory.address_space import (
    FOUR_GIB,
    LOWMEM_MAX,
    ONE_MIB,
    PAM_OFF,
    PAM_RE,
    PAM_SEGMENTS,
    PAM_WE,
    AddressSpace,
)

RAM_SIZE = 2 * ONE_MIB
ONES32 = 0xFFFFFFFF


def _bios(size: int) -> bytes:
    """A BIOS image whose every 32-bit word holds its own offset, so aliases can be told apart."""
    return np.arange(0, size, 4, dtype="<u4").tobytes()


class Recorder:
    def __init__(self) -> None:
        self.invalidated: list[tuple[int, int]] = []

    def __call__(self, start: int, end: int) -> None:
        self.invalidated.append((start, end))


def _space(ram_size: int = RAM_SIZE, bios: bytes = bytes(0x10000),
           invalidate: Recorder | None = None) -> AddressSpace:
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    return AddressSpace(uc, ram_size, bios, invalidate or Recorder())


class GuestCpu:
    """A CPU running flat 32-bit code at 0x1000 against an AddressSpace."""

    CODE, GDT = 0x1000, 0x800

    def __init__(self, bios: bytes = bytes(0x10000)) -> None:
        self.cpu = X86Cpu(icount=False, port_in=lambda _p, size: 0, port_out=lambda *_: None,
                          inta=lambda: -1)
        self.mem = AddressSpace(self.cpu.uc, RAM_SIZE, bios, self.cpu.invalidate_code)
        self.cpu.reset()

    def run(self, code: bytes) -> dict[str, int]:
        self.mem.write(self.GDT, struct.pack("<3Q", 0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF))
        self.cpu.uc.reg_write(x.UC_X86_REG_GDTR, (0, self.GDT, 23, 0))
        self.mem.write(self.CODE, code + bytes([0xF4]))  # ... hlt
        self.cpu.enter_flat32(self.CODE, rsp=0x8000)
        result = self.cpu.run(host_deadline_ns=time.monotonic_ns() + 2_000_000_000)
        assert result.halted, result
        return self.cpu.registers()


@pytest.fixture
def guest() -> Iterator[GuestCpu]:
    g = GuestCpu(bios=_bios(0x10000))
    yield g
    g.cpu.close()


def _load(reg_opcode: bytes, addr: int) -> bytes:
    return reg_opcode + struct.pack("<I", addr)


def mov_eax_from(addr: int) -> bytes:
    return _load(b"\xa1", addr)            # mov eax,[addr]


def mov_ebx_from(addr: int) -> bytes:
    return _load(b"\x8b\x1d", addr)        # mov ebx,[addr]


def mov_ecx_from(addr: int) -> bytes:
    return _load(b"\x8b\x0d", addr)        # mov ecx,[addr]


def mov_dl_from(addr: int) -> bytes:
    return _load(b"\x8a\x15", addr)        # mov dl,[addr]


def mov_to_from_eax(addr: int) -> bytes:
    return _load(b"\xa3", addr)            # mov [addr],eax


# -- layout ------------------------------------------------------------------------------------
def test_small_ram_layout() -> None:
    mem = _space()
    assert (mem.below_4g, mem.above_4g) == (RAM_SIZE, 0)
    spans = {r.name: (r.base, r.end) for r in mem.regions}
    assert spans["ram-low"] == (0, 0xA0000)
    assert spans["pam@0xc0000"] == (0xC0000, 0xC4000)  # shadow segments, PAM off
    assert spans["pam@0xf0000"] == (0xF0000, ONE_MIB)
    assert spans["ram"] == (ONE_MIB, RAM_SIZE)
    assert spans["bios"] == (FOUR_GIB - 0x10000, FOUR_GIB)
    assert "ram-above-4g" not in spans
    # guest-physical and Python views are the same bytes
    mem.write(0x1234, b"abc")
    mem.write(ONE_MIB + 5, b"xyz")
    assert bytes(mem.uc.mem_read(0x1234, 3)) == b"abc"
    assert bytes(mem.uc.mem_read(ONE_MIB + 5, 3)) == b"xyz"
    assert mem.ram[ONE_MIB + 5:ONE_MIB + 8].tobytes() == b"xyz"


def test_ram_beyond_the_pci_hole_is_mapped_above_4g() -> None:
    mem = _space(ram_size=LOWMEM_MAX + 2 * ONE_MIB)  # numpy's zeros are lazily committed
    assert (mem.below_4g, mem.above_4g) == (LOWMEM_MAX, 2 * ONE_MIB)
    spans = {r.name: (r.base, r.end) for r in mem.regions}
    assert spans["ram"] == (ONE_MIB, LOWMEM_MAX)
    assert spans["ram-above-4g"] == (FOUR_GIB, FOUR_GIB + 2 * ONE_MIB)
    mem.write(FOUR_GIB, b"hi")
    assert mem.ram[LOWMEM_MAX:LOWMEM_MAX + 2].tobytes() == b"hi"
    assert bytes(mem.uc.mem_read(FOUR_GIB, 2)) == b"hi"
    mem.write(LOWMEM_MAX - 2, b"lo")
    assert bytes(mem.uc.mem_read(LOWMEM_MAX - 2, 2)) == b"lo"
    for addr in (LOWMEM_MAX, FOUR_GIB - 1, FOUR_GIB + 2 * ONE_MIB - 1):
        with pytest.raises(ValueError, match=f"{addr:#x}"):
            mem.read(addr, 2)


@pytest.mark.parametrize("size", [0x10000, 0x20000, 0x40000])
def test_bios_mapped_below_4g_and_its_tail_below_1mib(size: int) -> None:
    bios = _bios(size)
    mem = _space(bios=bios)
    assert bytes(mem.uc.mem_read(FOUR_GIB - size, size)) == bios
    tail = min(size, 0x20000)
    assert bytes(mem.uc.mem_read(ONE_MIB - tail, tail)) == bios[-tail:]


def test_guest_sees_the_same_rom_at_both_addresses(guest: GuestCpu) -> None:
    regs = guest.run(mov_eax_from(0xFFFFFFF0) + mov_ebx_from(0xFFFF0) + mov_ecx_from(0xF0010))
    assert regs["rax"] == regs["rbx"] == 0xFFF0  # the word at image offset 0xFFF0
    assert regs["rcx"] == 0x0010


def test_rom_is_not_writable_from_python() -> None:
    mem = _space(bios=_bios(0x10000))
    for addr in (0xF0000, FOUR_GIB - 0x10):
        with pytest.raises(ValueError, match=f"{addr:#x}"):
            mem.write(addr, b"\0")


# -- unassigned memory -------------------------------------------------------------------------
@pytest.mark.parametrize("addr", [0xA0000, 0xB8000, 0xE0000, 0x300000, 0xFEC00000, 0xFEE00000])
def test_unassigned_reads_all_ones_and_drops_writes(guest: GuestCpu, addr: int) -> None:
    guest.mem.fill_unassigned()
    regs = guest.run(b"\x31\xc0"                      # xor eax,eax
                     + mov_to_from_eax(addr)          # mov [addr],eax (dropped)
                     + mov_ebx_from(addr)             # mov ebx,[addr]
                     + b"\x31\xd2"                    # xor edx,edx
                     + mov_dl_from(addr + 1))         # mov dl,[addr+1]
    assert regs["rbx"] == ONES32
    assert regs["rdx"] == 0xFF
    assert regs["rip"] == GuestCpu.CODE + 2 + 5 + 6 + 2 + 6 + 1  # ran to the HLT, no fault


def test_fill_unassigned_leaves_mapped_regions_alone(guest: GuestCpu) -> None:
    seen: list[tuple[int, int]] = []

    def read(off: int, size: int) -> int:
        seen.append((off, size))
        return 0x12345678

    guest.mem.map_mmio("dev", 0xFED00000, 0x1000, read, lambda *_: None)
    guest.mem.fill_unassigned()
    guest.mem.write(0x2000, b"\x5a\xa5\x5a\xa5")
    regs = guest.run(mov_eax_from(0xFED00008) + mov_ebx_from(0x2000) + mov_ecx_from(0xFFFF0))
    assert seen == [(8, 4)]  # offsets are relative to the region base
    assert regs["rax"] == 0x12345678
    assert regs["rbx"] == 0xA55AA55A
    assert regs["rcx"] == 0xFFF0


def test_mmio_writes_reach_the_handler_and_a_failing_handler_stops_the_guest(
        guest: GuestCpu) -> None:
    writes: list[tuple[int, int, int]] = []

    def read(off: int, size: int) -> int:
        raise RuntimeError(f"device broke at {off:#x}")

    guest.mem.map_mmio("dev", 0xFED00000, 0x1000, read, lambda *a: writes.append(a))
    with pytest.raises(RuntimeError, match="device broke at 0x10"):
        guest.run(b"\xb8\x78\x56\x34\x12"            # mov eax,0x12345678
                  + mov_to_from_eax(0xFED00004)       # mov [0xFED00004],eax
                  + mov_ebx_from(0xFED00010))         # mov ebx,[0xFED00010]: raises
    assert writes == [(4, 4, 0x12345678)]


def test_a_dropped_address_space_frees_its_mmio_handlers() -> None:
    mem = _space()

    def read(off: int, size: int) -> int:
        return 0

    handler = weakref.ref(read)
    mem.map_mmio("dev", 0xFED00000, 0x1000, read, lambda *_: None)
    del read, mem
    gc.collect()
    assert handler() is None


def test_mmio_overlapping_a_region_is_refused() -> None:
    mem = _space()
    with pytest.raises(ValueError, match="ram-low"):
        mem.map_mmio("dev", 0x9F000, 0x2000, lambda *_: 0, lambda *_: None)
    with pytest.raises(ValueError, match="bios"):
        mem.map_mmio("dev", FOUR_GIB - 0x20000, 0x20000, lambda *_: 0, lambda *_: None)


# -- checked access ----------------------------------------------------------------------------
@pytest.mark.parametrize(("addr", "length"), [
    (0xA0000, 1),                  # VGA hole
    (0x9FFFF, 2),                  # straddles the end of low RAM
    (0xDFFFF, 2),                  # straddles the BIOS tail
    (0xF0000, 4),                  # BIOS tail
    (RAM_SIZE - 2, 4),             # runs off the end of RAM
    (RAM_SIZE, 1),
    (FOUR_GIB, 1),                 # no RAM above 4 GiB
    (-1, 1),
])
def test_checked_access_outside_ram_is_refused(addr: int, length: int) -> None:
    mem = _space()
    name = f"{addr:#x}"
    with pytest.raises(ValueError, match=name):
        mem.read(addr, length)
    with pytest.raises(ValueError, match=name):
        mem.write(addr, bytes(length))
    with pytest.raises(ValueError, match=name):
        mem.fill(addr, length, 0xCC)
    assert not mem.is_ram(addr, length)
    assert not mem.ram.any()  # nothing was written before the refusal


def test_checked_access_inside_ram() -> None:
    inv = Recorder()
    mem = _space(invalidate=inv)
    for base, size in PAM_SEGMENTS[:8]:  # 0xC0000-0xDFFFF: shadow RAM, read-write
        mem.set_pam(base, size, PAM_RE | PAM_WE)
    inv.invalidated.clear()
    for addr, data in ((0, b"\x01"), (0x9FFFC, b"abcd"), (0xC0000, b"opt"), (0xDFFFF, b"z"),
                       (ONE_MIB, b"hi"), (RAM_SIZE - 3, b"end")):
        assert mem.is_ram(addr, len(data))
        mem.write(addr, data)
        assert mem.read(addr, len(data)) == data
        assert bytes(mem.uc.mem_read(addr, len(data))) == data
    mem.fill(0x5000, 16, 0xCC)
    assert mem.read(0x5000, 16) == b"\xcc" * 16
    mem.write_u32(0x6000, 0xDEADBEEF)
    assert mem.read_u32(0x6000) == 0xDEADBEEF
    assert mem.read(0x6000, 4) == b"\xef\xbe\xad\xde"
    # every write from Python tells the CPU to drop translations of those bytes
    assert inv.invalidated == [(0, 1), (0x9FFFC, 0xA0000), (0xC0000, 0xC0003), (0xDFFFF, 0xE0000),
                               (ONE_MIB, ONE_MIB + 2), (RAM_SIZE - 3, RAM_SIZE),
                               (0x5000, 0x5010), (0x6000, 0x6004)]


def test_negative_length_refused() -> None:
    with pytest.raises(ValueError):
        _space().read(0x1000, -1)


# -- construction ------------------------------------------------------------------------------
@pytest.mark.parametrize("ram_size", [0, ONE_MIB, 2 * ONE_MIB - 0x1000, 2 * ONE_MIB + 0x800])
def test_bad_ram_size_refused(ram_size: int) -> None:
    with pytest.raises(ValueError, match=str(ram_size)):
        _space(ram_size=ram_size)


@pytest.mark.parametrize("bios_size", [0, 0x8000, 0x10001, 0x18000, 0x1010000])
def test_bad_bios_size_refused(bios_size: int) -> None:
    with pytest.raises(ValueError, match=str(bios_size)):
        _space(bios=bytes(bios_size))


def test_largest_bios_accepted() -> None:
    bios = _bios(0x1000000)
    mem = _space(bios=bios)
    assert bytes(mem.uc.mem_read(FOUR_GIB - 16, 16)) == bios[-16:]
    assert bytes(mem.uc.mem_read(0xE0000, 16)) == bios[-0x20000:-0x20000 + 16]


def test_pam_switches_segments_between_rom_and_shadow_ram() -> None:
    bios = bytes(range(256)) * 256  # 64 KiB: shows at 0xF0000 only
    mem = _space(bios=bios)
    f_seg, c_seg = PAM_SEGMENTS[-1], PAM_SEGMENTS[0]
    read = lambda addr, n: bytes(mem.uc.mem_read(addr, n))  # noqa: E731
    assert read(0xF0010, 4) == bios[0x10:0x14]            # off: the BIOS ROM
    assert read(0xC0000, 4) == b"\xff" * 4                 # off: nothing decodes C0000
    assert not mem.is_ram(0xC0000, 4) and not mem.is_ram(0xF0000, 4)
    mem.set_pam(*f_seg, PAM_RE | PAM_WE)                   # shadow RAM, read-write
    assert read(0xF0010, 4) == b"\0" * 4
    mem.write(0xF0010, b"shdw")
    assert read(0xF0010, 4) == b"shdw"
    mem.set_pam(*f_seg, PAM_OFF)                           # back to ROM; RAM keeps its data
    assert read(0xF0010, 4) == bios[0x10:0x14]
    mem.set_pam(*f_seg, PAM_WE)                            # write RAM, read ROM
    mem.uc.mem_write(0xF0020, b"wr")
    assert read(0xF0020, 2) == bios[0x20:0x22]
    assert mem.ram[0xF0020:0xF0022].tobytes() == b"wr"
    mem.set_pam(*c_seg, PAM_RE)                            # read-only shadow reads RAM
    assert read(0xC0000, 2) == b"\0\0"
