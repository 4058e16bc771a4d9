"""pyemu's own build of unicorn (emu/cpu/unicorn-patches/): the engine in the venv is the
patched one, and code the guest rewrites with its own stores still runs as rewritten.

The patches let stores to pages without translated code skip the engine's slow path, so
these tests rewrite code in every way that path must still catch: a block of the same
page, the very block doing the store, and a page written through a second virtual
mapping whose TLB entry was filled before the page held any code (Intel SDM vol. 3A,
11.6: self-modifying code; QEMU's precise SMC on x86).
"""

from __future__ import annotations

import struct

from test_x86 import CODE32, PAGE_TABLE, Rig, _paging_then

from emu.cpu.helper import ENGINE_PATCHES, engine_patches


def _rig(rigs: list[Rig]) -> Rig:
    rigs.append(Rig())
    return rigs[-1]


def test_the_venv_runs_pyemus_patched_engine() -> None:
    assert engine_patches() == ENGINE_PATCHES, "run 'make' to build emu/cpu/unicorn-patches"


def test_store_rewrites_an_earlier_block_of_its_page(rigs: list[Rig]) -> None:
    rig = _rig(rigs)
    # a loop that patches the immediate of its first instruction until it reads back
    rig.flat32(bytes([
        0xB8, 0x11, 0x11, 0x11, 0x11,                       # 4000: mov eax,11111111h
        0x3D, 0x22, 0x22, 0x22, 0x22,                       # 4005: cmp eax,22222222h
        0x74, 0x0C,                                         # 400A: je 4018h
        0xC7, 0x05, *struct.pack("<I", CODE32 + 1),         # 400C: mov dword [4001h],
        0x22, 0x22, 0x22, 0x22,                             #         22222222h
        0xEB, 0xE8,                                         # 4016: jmp 4000h
        0xF4]))                                             # 4018: hlt
    assert rig.run().halted
    assert rig.reg("rax") == 0x22222222


def test_store_rewrites_the_next_instruction_of_its_own_block(rigs: list[Rig]) -> None:
    rig = _rig(rigs)
    rig.flat32(bytes([
        0xC7, 0x05, *struct.pack("<I", CODE32 + 11),        # 4000: mov dword [400Bh],
        0x22, 0x22, 0x22, 0x22,                             #         22222222h
        0xB8, 0x11, 0x11, 0x11, 0x11,                       # 400A: mov eax,11111111h
        0xF4]))                                             # 400F: hlt
    assert rig.run().halted
    assert rig.reg("rax") == 0x22222222


def test_store_through_an_alias_mapped_before_the_page_held_code(rigs: list[Rig]) -> None:
    rig = _rig(rigs)
    # physical page 50000h: `mov eax,imm32; ret`, run at virtual 50000h, written at
    # virtual 1F0000h, whose TLB entry the first store fills while the page has no code
    call_50000 = bytes([0xB8, *struct.pack("<I", 0x50000), 0xFF, 0xD0])  # mov eax,..; call eax
    _paging_then(rig, bytes([
        0xC6, 0x05, *struct.pack("<I", 0x1F0800), 0x90,     # mov byte [1F0800h],90h
        *call_50000,
        0x89, 0xC3,                                         # mov ebx,eax
        0xC7, 0x05, *struct.pack("<I", 0x1F0001),           # mov dword [1F0001h],
        0x22, 0x22, 0x22, 0x22,                             #         22222222h
        *call_50000,
        0xF4]))                                             # hlt
    rig.mem.write(PAGE_TABLE + 0x1F0 * 4, struct.pack("<I", 0x50000 | 3))
    rig.mem.write(0x50000, bytes([0xB8, 0x11, 0x11, 0x11, 0x11, 0xC3]))
    assert rig.run().halted
    assert (rig.reg("rbx"), rig.reg("rax")) == (0x11111111, 0x22222222)
    assert rig.mem.ram[0x50800] == 0x90
