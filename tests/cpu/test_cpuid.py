"""CPU models: CPUID as QEMU's TCG presents ``qemu64``, and every feature a model
advertises runs on the engine (a feature it does not advertise faults, as in QEMU).

QEMU_QEMU64 was recorded from ``qemu-system-x86_64 -accel tcg -cpu qemu64`` (QEMU 7.2,
``-M pc``) running tests/guests/cpuid.c. Guest code is hand-assembled (the bytes carry
their mnemonics). References: Intel SDM vol. 2A CPUID, vol. 4 MSR 1A0h; AMD APM vol. 2
15.5 (VMRUN), 15.9 (instruction intercepts), appendix C (SVM exit codes); vol. 3 CPUID.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from test_x86 import Rig

from emu.cpu.models import DEFAULT_MODEL, MODELS, CpuidTable, CpuModel, find_model, models_help

Regs = tuple[int, int, int, int]
QEMU_QEMU64: dict[tuple[int, int], Regs] = {
    (0x0, 0): (0x0000000D, 0x68747541, 0x444D4163, 0x69746E65),
    (0x1, 0): (0x00060FB1, 0x00000800, 0x80002001, 0x078BFBFD),
    (0x2, 0): (0, 0, 0, 0), (0x3, 0): (0, 0, 0, 0),
    (0x4, 0): (0, 0, 0, 0), (0x4, 1): (0, 0, 0, 0), (0x4, 2): (0, 0, 0, 0), (0x4, 3): (0, 0, 0, 0),
    (0x5, 0): (0x00000000, 0x00000000, 0x00000003, 0x00000000),
    (0x6, 0): (0, 0, 0, 0), (0x7, 0): (0, 0, 0, 0), (0x7, 1): (0, 0, 0, 0),
    (0x8, 0): (0, 0, 0, 0), (0x9, 0): (0, 0, 0, 0), (0xA, 0): (0, 0, 0, 0),
    (0xB, 0): (0x00000000, 0x00000001, 0x00000100, 0x00000000),
    (0xB, 1): (0x00000000, 0x00000001, 0x00000201, 0x00000000),
    (0xC, 0): (0, 0, 0, 0), (0xD, 0): (0, 0, 0, 0), (0xD, 1): (0, 0, 0, 0), (0xD, 2): (0, 0, 0, 0),
    (0x40000000, 0): (0x40000001, 0x54474354, 0x43544743, 0x47435447),
    (0x40000001, 0): (0, 0, 0, 0),
    (0x80000000, 0): (0x8000000A, 0x68747541, 0x444D4163, 0x69746E65),
    (0x80000001, 0): (0x00060FB1, 0x00000000, 0x00000005, 0x2193FBFD),
    (0x80000002, 0): (0x554D4551, 0x72695620, 0x6C617574, 0x55504320),
    (0x80000003, 0): (0x72657620, 0x6E6F6973, 0x352E3220, 0x0000002B),
    (0x80000004, 0): (0, 0, 0, 0),
    (0x80000005, 0): (0x01FF01FF, 0x01FF01FF, 0x40020140, 0x40020140),
    (0x80000006, 0): (0x00000000, 0x42004200, 0x02008140, 0x00808140),
    (0x80000007, 0): (0, 0, 0, 0),
    (0x80000008, 0): (0x00003028, 0x00000000, 0x00000000, 0x00000000),
    (0x80000009, 0): (0, 0, 0, 0),
    (0x8000000A, 0): (0x00000001, 0x00000010, 0x00000000, 0x00000000),
}
APIC = 1 << 9  # CPUID 1 EDX and its alias in 80000001h EDX
# pyemu's deliberate differences (emu/cpu/models.py): no APIC, the TSC leaves (basic
# level 16h), the invariant TSC.
PYEMU_QEMU64 = {
    **QEMU_QEMU64,
    (0x0, 0): (0x16, *QEMU_QEMU64[(0, 0)][1:]),
    (0x1, 0): (*QEMU_QEMU64[(1, 0)][:3], QEMU_QEMU64[(1, 0)][3] & ~APIC),
    (0x80000001, 0): (*QEMU_QEMU64[(0x80000001, 0)][:3], QEMU_QEMU64[(0x80000001, 0)][3] & ~APIC),
    (0x80000007, 0): (0, 0, 0, 1 << 8),
    **{(leaf, 0): (0, 0, 0, 0) for leaf in range(0xE, 0x15)},
    (0x15, 0): (1, 1, 1_000_000_000, 0),
    (0x16, 0): (1000, 1000, 100, 0),
}
MISC_ENABLE_FAST_STRINGS = 1


def test_qemu64_is_the_default_and_answers_as_qemu_tcg() -> None:
    assert DEFAULT_MODEL == "qemu64"
    table = CpuidTable(MODELS["qemu64"])
    assert {key: table.lookup(*key) for key in PYEMU_QEMU64} == PYEMU_QEMU64


def test_leaves_past_their_range_answer_as_the_highest_basic_leaf() -> None:
    table = CpuidTable(MODELS["qemu64"])
    top = table.lookup(0x16, 0)
    for leaf in (0x17, 0x1000, 0x40000002, 0x8000000B, 0xC0000000):
        assert table.lookup(leaf, 0) == top, hex(leaf)
    assert table.lookup(0xB, 2) == (0, 0, 2, 0)  # past the last topology level
    assert table.lookup(1, 5) == table.lookup(1, 0)  # ECX matters only where it should


def test_max_has_qemu64s_identity_and_more_features() -> None:
    q, m = CpuidTable(MODELS["qemu64"]), CpuidTable(MODELS["max"])
    for leaf in (0, 0x80000000):
        assert q.lookup(leaf, 0)[1:] == m.lookup(leaf, 0)[1:]  # AuthenticAMD
    assert q.lookup(1, 0)[0] == m.lookup(1, 0)[0] == 0x60FB1  # family 15, model 107
    for leaf, reg in ((1, 2), (1, 3), (7, 1), (0x80000001, 2), (0x80000001, 3)):
        assert q.lookup(leaf, 0)[reg] & ~m.lookup(leaf, 0)[reg] == 0  # a superset
    assert m.lookup(1, 0)[2] != q.lookup(1, 0)[2]


def test_cpu_models_listed_and_looked_up() -> None:
    text = models_help()
    assert "qemu64" in text and "max" in text and "(default)" in text
    assert find_model("max") is MODELS["max"]
    with pytest.raises(ValueError, match="unknown CPU model 'core2duo'"):
        find_model("core2duo")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_cpuid_instruction_gives_the_table_and_reset_edx_the_signature(rigs, name) -> None:
    rig = Rig(model=MODELS[name])
    rigs.append(rig)
    table = CpuidTable(MODELS[name])
    assert rig.reg("rdx") & 0xFFFFFFFF == MODELS[name].signature
    for leaf, sub in ((0, 0), (1, 0), (0xB, 1), (0x80000001, 0), (0x80000003, 0)):
        rig.flat32(struct.pack("<BIBI", 0xB8, leaf, 0xB9, sub) +  # mov eax, leaf; mov ecx, sub
                   bytes([0x0F, 0xA2, 0xF4]))                    # cpuid; hlt
        assert rig.run().halted
        assert tuple(rig.reg(r) & 0xFFFFFFFF for r in ("rax", "rbx", "rcx", "rdx")) == \
            table.lookup(leaf, sub)


def test_reset_enables_fast_strings_as_qemu(rigs) -> None:
    rig = Rig()
    rigs.append(rig)
    rig.cpu.uc.msr_write(0x1A0, 0)
    rig.cpu.reset()
    assert rig.cpu.uc.msr_read(0x1A0) & MISC_ENABLE_FAST_STRINGS


# -- each advertised feature runs -----------------------------------------------------------
@dataclass(frozen=True)
class Feature:
    """One CPUID bit and code that uses it (ending in HLT); ``works`` tells from the
    registers and memory afterwards that it did what the feature says. ``strict``: the
    engine refuses the code (#UD) on a model that does not advertise the bit."""

    name: str
    leaf: int
    reg: int  # 0-3: EAX EBX ECX EDX
    bit: int
    code: bytes
    works: Callable[[Rig], bool]
    long_mode: bool = False
    strict: bool = True


DATA = 0x30000  # scratch data the features' code reads and writes
INITIAL = (("rax", 0xFFFFFFFF), ("rbx", 0xF0F0), ("rcx", 0b1010), ("rdx", 0), ("rsi", DATA),
           ("rdi", DATA + 16), ("xmm0", 0b11), ("xmm1", 0b101))
CR4_OSFXSR = 0x600  # OSFXSR | OSXMMEXCPT: SSE instructions allowed
HLT = b"\xF4"


def _xmm0(rig: Rig) -> int:
    return rig.reg("xmm0")


FEATURES = [
    Feature("sse3", 1, 2, 0, bytes.fromhex("f20f7cc1") + HLT,  # haddps xmm0, xmm1
            lambda r: True),
    Feature("pclmulqdq", 1, 2, 1, bytes.fromhex("660f3a44c100") + HLT,  # pclmulqdq xmm0,xmm1,0
            lambda r: _xmm0(r) == 0b1111),  # 0b11 x 0b101 carry-less
    Feature("ssse3", 1, 2, 9, bytes.fromhex("660f3800c1") + HLT,  # pshufb xmm0, xmm1
            lambda r: True),
    Feature("sse4.1", 1, 2, 19, bytes.fromhex("660f3839c1") + HLT,  # pminsd xmm0, xmm1
            lambda r: _xmm0(r) & 0xFFFFFFFF == 0b11),
    Feature("sse4.2", 1, 2, 20, bytes.fromhex("f20f38f1c3") + HLT,  # crc32 eax, ebx
            lambda r: r.reg("rax") & 0xFFFFFFFF != 0xFFFFFFFF),
    Feature("movbe", 1, 2, 22, bytes.fromhex("0f38f006") + HLT,  # movbe eax, [esi]
            lambda r: r.reg("rax") & 0xFFFFFFFF == 0x12345678),  # bytes 12 34 56 78
    Feature("popcnt", 1, 2, 23, bytes.fromhex("f30fb8c3") + HLT,  # popcnt eax, ebx
            lambda r: r.reg("rax") & 0xFFFFFFFF == 8),
    Feature("aes", 1, 2, 25, bytes.fromhex("660f38dcc1") + HLT,  # aesenc xmm0, xmm1
            lambda r: _xmm0(r) != 0b11),
    Feature("bmi1", 7, 1, 3, bytes.fromhex("c4e260f2c1") + HLT,  # andn eax, ebx, ecx
            lambda r: r.reg("rax") & 0xFFFFFFFF == 0b1010 & ~0xF0F0),
    Feature("bmi2", 7, 1, 8, bytes.fromhex("c4e273f5c3") + HLT,  # pdep eax, ecx, ebx
            lambda r: r.reg("rax") & 0xFFFFFFFF == 0xA0),  # 1010b into mask F0F0h's bits
    Feature("adx", 7, 1, 19, bytes.fromhex("f9660f38f6c3") + HLT,  # stc; adcx eax, ebx
            lambda r: r.reg("rax") & 0xFFFFFFFF == 0xF0F0),  # -1 + F0F0h + CF
    Feature("clflushopt", 7, 1, 23, bytes.fromhex("660fae3e") + HLT,  # clflushopt [esi]
            lambda r: True),
    Feature("rdtscp", 0x80000001, 3, 27, bytes.fromhex("0f01f9") + HLT,  # rdtscp
            lambda r: r.reg("rcx") & 0xFFFFFFFF == 0),  # IA32_TSC_AUX
    Feature("mmxext", 0x80000001, 3, 22, bytes.fromhex("0fdac1") + HLT,  # pminub mm0, mm1
            lambda r: True, strict=False),  # SSE gives it too
    Feature("abm", 0x80000001, 2, 5, bytes.fromhex("f30fbdc3") + HLT,  # lzcnt eax, ebx
            lambda r: r.reg("rax") & 0xFFFFFFFF == 16),  # (bsr where absent: no #UD)
    Feature("sse4a", 0x80000001, 2, 6, bytes.fromhex("660f78c00800") + HLT,  # extrq xmm0,8,0
            lambda r: _xmm0(r) == 0b11, strict=False),  # the engine runs it for any model
    Feature("cx16", 1, 2, 13, bytes.fromhex(
        "31c0" "31d2" "31db"  # xor eax, eax; xor edx, edx; xor ebx, ebx: RDX:RAX = memory
        "48c7c1ffffffff"      # mov rcx, -1
        "f0480fc70f"          # lock cmpxchg16b [rdi]
    ) + HLT, lambda r: r.mem.read(DATA + 16, 16) == bytes(8) + b"\xff" * 8, long_mode=True),
    Feature("lahf_lm", 0x80000001, 2, 0, bytes.fromhex("9f") + HLT,  # lahf (in 64-bit mode)
            lambda r: True, long_mode=True),
    Feature("fsgsbase", 7, 1, 0, bytes.fromhex(
        "0f20e0"        # mov rax, cr4
        "480d00000100"  # or rax, 10000h (CR4.FSGSBASE)
        "0f22e0"        # mov cr4, rax
        "f3480faed3"    # wrfsbase rbx
        "f3480faec1"    # rdfsbase rcx
    ) + HLT, lambda r: r.reg("rcx") == 0xF0F0, long_mode=True),
]
# 64-bit mode, entered from flat 32-bit code: PAE paging of the first 1 GiB (a 1 GiB page
# where the model has them, to prove PDPE1GB; else 2 MiB pages), EFER.LME, CR0.PG, and a
# far jump to a 64-bit code segment.
PML4, PDPT, PD, CODE64 = 0x20000, 0x21000, 0x22000, 0x5000
GDT64 = 0x1000
LONG_ENTRY = bytes.fromhex(
    "0f20e0" "0d20000000" "0f22e0"      # cr4 |= PAE
    "b800000200" "0f22d8"               # cr3 = PML4
    "b9800000c0" "0f32" "0d00010000" "0f30"  # EFER.LME
    "0f20c0" "0d00000080" "0f22c0"      # cr0 |= PG
    "ea00500000" "1800"                 # jmp 18h:CODE64
)


def _long_mode(rig: Rig, huge: bool) -> None:
    rig.mem.write(GDT64 + 0x18, struct.pack("<Q", 0x00AF9A000000FFFF))  # 64-bit code
    rig.set_reg("gdtr", (0, GDT64, 4 * 8 - 1, 0))
    rig.mem.write(PML4, struct.pack("<Q", PDPT | 3))
    if huge:
        rig.mem.write(PDPT, struct.pack("<Q", 0x83))  # 1 GiB page at 0
    else:
        rig.mem.write(PDPT, struct.pack("<Q", PD | 3))
        rig.mem.write(PD, struct.pack("<Q", 0x83))  # 2 MiB page at 0


def _run_feature(rig: Rig, model: CpuModel, f: Feature) -> tuple[bool, int | None]:
    """(whether the code halted at its end, the vector it faulted on or None)."""
    if f.long_mode:
        rig.flat32(LONG_ENTRY)
        _long_mode(rig, huge=bool(CpuidTable(model).lookup(0x80000001, 0)[3] & (1 << 26)))
        rig.mem.write(CODE64, f.code)
        end = CODE64 + len(f.code)
    else:
        rig.flat32(f.code)
        end = 0x4000 + len(f.code)
    rig.set_reg("cr4", rig.reg("cr4") | CR4_OSFXSR)
    rig.mem.write(DATA, bytes.fromhex("12345678") + bytes(28))
    for name, value in INITIAL:  # (the entry to 64-bit mode clobbers EAX, ECX and EDX)
        rig.set_reg(name, value)
    result = rig.run()
    if result.triple_fault:  # a fault in 64-bit mode, where the rig has no IDT
        return False, None
    assert result.halted, result
    if rig.reg("rip") == end:
        return True, None
    return False, rig.vector_taken()


def _advertised(model: CpuModel, f: Feature) -> bool:
    return bool(CpuidTable(model).lookup(f.leaf, 0)[f.reg] & (1 << f.bit))


@pytest.mark.parametrize("f", FEATURES, ids=lambda f: f.name)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_advertised_features_run_and_others_fault(rigs, name, f) -> None:
    model = MODELS[name]
    rig = Rig(model=model)
    rigs.append(rig)
    done, vector = _run_feature(rig, model, f)
    if _advertised(model, f):
        assert done and f.works(rig), f"{f.name} advertised by {name} but {vector=}"
    elif f.strict:  # #UD, #GP (a CR4 bit the model lacks) or the older meaning (LZCNT)
        assert not (done and f.works(rig)), f"{f.name} ran on {name}"


def test_max_advertises_every_feature_tested_here() -> None:
    assert all(_advertised(MODELS["max"], f) for f in FEATURES)


# -- SVM (both models advertise it, as QEMU's qemu64 does) -----------------------------------
VMCB, HSAVE, GUEST_CODE = 0x40000, 0x38000, 0x50000
SVM_CODE = bytes.fromhex(
    "b9800000c0" "0f32" "0d00100000" "0f30"   # EFER.SVME
    "eb00"                                   # jmp $+2: a new block sees SVME
    "b9170101c0" "b800800300" "31d2" "0f30"  # VM_HSAVE_PA = HSAVE
    "b800000400" "0f01d8"                    # mov eax, VMCB; vmrun
    "f4")                                    # hlt
EXIT_HLT = 0x78


def _vmcb() -> bytes:
    """A guest in flat 32-bit protected mode at GUEST_CODE, HLT and VMRUN intercepted."""
    vmcb = bytearray(0x1000)
    struct.pack_into("<Q", vmcb, 0x0C, (1 << 24) | (1 << 32))  # intercept HLT, VMRUN
    struct.pack_into("<I", vmcb, 0x58, 1)  # guest ASID
    for off, sel, flags in ((0x400, 0x10, 0x00CF9300), (0x410, 0x08, 0x00CF9B00),
                            (0x420, 0x10, 0x00CF9300), (0x430, 0x10, 0x00CF9300)):
        attrib = ((flags >> 8) & 0xFF) | ((flags >> 12) & 0xF00)
        struct.pack_into("<HHIQ", vmcb, off, sel, attrib, 0xFFFFFFFF, 0)
    for off, value in ((0x4D0, 0x1000), (0x558, 0x11), (0x570, 2), (0x578, GUEST_CODE),
                       (0x5D8, 0x60000)):  # EFER.SVME, CR0 PE|ET, RFLAGS, RIP, RSP
        struct.pack_into("<Q", vmcb, off, value)
    return bytes(vmcb)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_svm_vmrun_runs_a_guest_to_an_intercepted_hlt(rigs, name) -> None:
    rig = Rig(model=MODELS[name])
    rigs.append(rig)
    assert CpuidTable(MODELS[name]).lookup(0x80000001, 0)[2] & (1 << 2)
    rig.mem.write(VMCB, _vmcb())
    rig.mem.write(GUEST_CODE, bytes([0x90, 0xF4]))  # nop; hlt
    rig.flat32(SVM_CODE)
    assert rig.run().halted
    assert rig.reg("rip") == 0x4000 + len(SVM_CODE)  # back in the host, after VMRUN
    exit_code, = struct.unpack_from("<Q", rig.mem.read(VMCB + 0x70, 8))
    assert exit_code == EXIT_HLT
    assert struct.unpack_from("<Q", rig.mem.read(VMCB + 0x578, 8))[0] == GUEST_CODE + 1
