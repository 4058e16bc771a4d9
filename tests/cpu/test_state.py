"""The CPU's named state (emu/cpu/state.py): every format round-trips into a new CPU,
"run N" equals "run k, save, load into a new CPU, run N-k" in icount mode, and a bad
encoding is refused before the CPU is touched.

Guest code is hand-assembled (the bytes carry their mnemonics). References: Intel SDM
vol. 3A 4.3 (32-bit paging with 4 MiB pages, CR4.PSE), 6.8.3 (STI shadow), 13.1.4
(CR4.OSFXSR for SSE); vol. 4 (IA32_FS_BASE C0000100h).
"""

from __future__ import annotations

import ctypes
import struct

import pytest
import unicorn.x86_const as x

from emu.cpu.helper import ENV_SEGS
from emu.cpu.state import apply_cpu, cpu_values, load_cpu, save_cpu, visit_cpu
from emu.cpu.x86 import X86Cpu
from emu.memory.address_space import AddressSpace
from emu.qom.visitor import (
    BinaryReader,
    BinaryWriter,
    DecodeError,
    JsonReader,
    JsonWriter,
    TreeReader,
    TreeWriter,
)

RAM_SIZE = 2 << 20
GDT, CODE32, STACK32, DATA = 0x1000, 0x4000, 0x9000, 0x6000
FS_BASE = 0x5000

GUEST = bytes.fromhex("".join((
    "0f20e0",          # mov eax, cr4
    "0d10060000",      # or eax, 610h          ; OSFXSR | OSXMMEXCPT | PSE
    "0f22e0",          # mov cr4, eax
    "c7050000020083000000",  # mov dword [20000h], 83h ; PDE 0: 4 MiB page, present, RW
    "b800000200",      # mov eax, 20000h
    "0f22d8",          # mov cr3, eax
    "0f20c0",          # mov eax, cr0
    "0d02000080",      # or eax, 80000002h     ; PG | MP
    "0f22c0",          # mov cr0, eax
    "b9000100c0",      # mov ecx, C0000100h    ; IA32_FS_BASE
    "b800500000",      # mov eax, 5000h
    "31d2",            # xor edx, edx
    "0f30",            # wrmsr
    "dbe3",            # fninit
    "d9e8",            # fld1
    "d9eb",            # fldpi
    "0f280500600000",  # movaps xmm0, [6000h]
    "0f280d10600000",  # movaps xmm1, [6010h]
    "bfc8000000",      # mov edi, 200
    "31f6",            # xor esi, esi
    # loop:
    "41",              # inc ecx
    "01c8",            # add eax, ecx
    "c1c303",          # rol ebx, 3
    "31c3",            # xor ebx, eax
    "50",              # push eax
    "5a",              # pop edx
    "648916",          # mov fs:[esi], edx
    "83c604",          # add esi, 4
    "81e6ff000000",    # and esi, 0FFh
    "0f58c1",          # addps xmm0, xmm1
    "d8c1",            # fadd st0, st1
    "fb",              # sti
    "90",              # nop                   ; in the STI shadow
    "fa",              # cli
    "4f",              # dec edi
    "75df",            # jnz loop
    "f4",              # hlt
)))
PROLOGUE, LOOP = 20, 16  # instructions
AFTER_STI = PROLOGUE + 3 * LOOP + 12  # the fourth STI has run, its NOP not yet


class Rig:
    """One icount CPU with 2 MiB of RAM, in flat 32-bit mode at the guest's entry."""

    def __init__(self) -> None:
        self.cpu = X86Cpu(icount=True, port_in=lambda port, size: 0,
                          port_out=lambda port, size, value: None, inta=lambda: -1)
        self.mem = AddressSpace(self.cpu.uc, RAM_SIZE, bytes(0x10000), self.cpu.invalidate_code)
        self.mem.fill_unassigned()
        self.cpu.reset()

    def boot(self) -> None:
        self.mem.write(GDT, struct.pack("<3Q", 0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF))
        self.cpu.uc.reg_write(x.UC_X86_REG_GDTR, (0, GDT, 3 * 8 - 1, 0))
        self.mem.write(DATA, struct.pack("<8f", 1.5, -2.0, 3.25, 0.125, 0.5, 0.25, -1.0, 8.0))
        self.mem.write(CODE32, GUEST)
        self.cpu.enter_flat32(CODE32, rsp=STACK32, rbx=0x1234567)

    def run(self, budget: int) -> None:
        result = self.cpu.run(budget=budget)
        assert result.error is None and not result.triple_fault

    def named(self) -> dict:
        w = TreeWriter()
        visit_cpu(w, cpu_values(self.cpu))
        return w.root


def new_rig(rigs: list[Rig]) -> Rig:
    rigs.append(Rig())
    return rigs[-1]


def busy_state(cpu: X86Cpu) -> None:
    """Distinct values in every field a guest could have set, written through the engine."""
    uc = cpu.uc
    for i, reg in enumerate(("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
                             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")):
        uc.reg_write(getattr(x, f"UC_X86_REG_{reg.upper()}"), 0x1111_0000_0000_0000 * (i + 1) + i)
    uc.reg_write(x.UC_X86_REG_LDTR, (0x28, 0xFFFF8000_12340000, 0x67, 0x8200))
    uc.reg_write(x.UC_X86_REG_TR, (0x30, 0xFFFF8000_56780000, 0x2067, 0x8B00))
    uc.reg_write(x.UC_X86_REG_IDTR, (0, 0xFFFF8000_0000A000, 0xFFF, 0))
    for i, seg in enumerate(("es", "cs", "ss", "ds", "fs", "gs")):
        s = cpu.segment(seg)
        s.selector, s.base, s.limit, s.flags = 0x10 + 8 * i, 0x100 * i, 0xFFFFF - i, 0x00CF9300
    cpu.segment("cs").flags = 0x00CF9B00
    for msr, value in ((0x174, 0x08), (0x175, 0xC000), (0x176, 0xC0DE),
                       (0xC0000081, 0x23_0010 << 32), (0xC0000082, 0xFFFF8000_01000000),
                       (0xC0000102, 0xFFFF8000_77770000),
                       (0xC0000103, 3), (0x200, 0x6), (0x201, 0xFFF000800), (0x2FF, 0xC06)):
        uc.msr_write(msr, value)
    uc.reg_write(x.UC_X86_REG_CR2, 0xDEAD000)
    uc.reg_write(x.UC_X86_REG_FPCW, 0x27F)
    uc.reg_write(x.UC_X86_REG_FPSW, 5 << 11)
    for i in range(8):
        uc.reg_write(x.UC_X86_REG_FP0 + i, (0x8000_0000_0000_0000 | i << 40, 0x3FFF + i))
    uc.reg_write(x.UC_X86_REG_MXCSR, 0x1FA0)
    for i in range(16):
        uc.reg_write(x.UC_X86_REG_XMM0 + i, (i + 1) * 0x0101_0101_0101_0101_0202_0202_0202_0202)
    uc.reg_write(x.UC_X86_REG_RIP, 0x123456)
    cpu.halted = True
    cpu.set_a20(False)
    cpu.helper.p.icount = 987654
    cpu.helper.p.intr = 1


FORMATS = {
    "tree": (TreeWriter, lambda w: TreeReader(w.root)),
    "binary": (BinaryWriter, lambda w: BinaryReader(bytes(w.out))),
    "json": (JsonWriter, lambda w: JsonReader(w.dumps())),
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips_into_a_new_cpu(fmt: str, rigs: list[Rig]) -> None:
    a, b = new_rig(rigs), new_rig(rigs)
    busy_state(a.cpu)
    before = a.named()
    writer_cls, reader_of = FORMATS[fmt]
    w = writer_cls()
    save_cpu(a.cpu, w)
    r = reader_of(w)
    load_cpu(b.cpu, r)
    if isinstance(r, BinaryReader):
        r.finish()
    assert b.named() == before
    assert before["segments"]["tr"] == {"selector": 0x30, "base": 0xFFFF8000_56780000,
                                        "limit": 0x2067, "flags": 0x8B00}
    assert before["fpu"]["st0"] == (0x8000_0500_0000_0000).to_bytes(8, "little") + \
        (0x3FFF + 5).to_bytes(2, "little")  # ST(0) is R(TOP), TOP = 5
    assert not before["a20"] and before["halted"] and before["intr"]


def test_system_segments_follow_the_data_segments_in_env(rigs: list[Rig]) -> None:
    """The layout state.py relies on: LDTR, TR, GDTR, IDTR after GS, as SegmentCaches."""
    cpu = new_rig(rigs).cpu
    uc = cpu.uc
    uc.reg_write(x.UC_X86_REG_LDTR, (0x28, 0x1111222233334444, 0x5555, 0x8200))
    uc.reg_write(x.UC_X86_REG_TR, (0x30, 0x6666777788889999, 0xAAAA, 0x8B00))
    uc.reg_write(x.UC_X86_REG_GDTR, (0, 0x0123456789ABCDEF, 0x1357, 0))
    uc.reg_write(x.UC_X86_REG_IDTR, (0, 0x0FEDCBA987654321, 0x2468, 0))
    raw = ctypes.string_at(cpu.helper.env_addr(ENV_SEGS) + 6 * 24, 4 * 24)
    got = [struct.unpack_from("<IIQII", raw, 24 * i) for i in range(4)]
    assert [(sel, base, limit, flags) for sel, _, base, limit, flags in got] == [
        (0x28, 0x1111222233334444, 0x5555, 0x8200), (0x30, 0x6666777788889999, 0xAAAA, 0x8B00),
        (0, 0x0123456789ABCDEF, 0x1357, 0), (0, 0x0FEDCBA987654321, 0x2468, 0)]


N = 1500
ENV_RESET_BYTES = 5608  # what uc.context_save copies: env up to end_reset_fields


def host_address(value: int) -> bool:
    """Whether ``value`` points into this process's memory (/proc/self/maps): a word of
    the engine's own bookkeeping. Not a fixed range: mappings move down as a worker
    process makes more engines, below 0x7F00_0000_0000 after enough of them."""
    with open("/proc/self/maps") as f:
        spans = [line.split(None, 1)[0].split("-") for line in f]
    return any(int(lo, 16) <= value < int(hi, 16) for lo, hi in spans)


def env_differences(a: X86Cpu, b: X86Cpu) -> list[int]:
    """Offsets of the env words (all of the architectural state, named or not) that differ
    between two CPUs of this process, host pointers aside: a cross-check that the named
    fields leave nothing of the engine's state behind. Right after a load the engine's
    scratch values (the third lazy-flags operand, the x87 temporary, softfloat's sticky
    flags) differ until the guest overwrites them; they are not architectural. RFLAGS is
    written back first on both, so that lazily evaluated flags are held in the same form."""
    for cpu in (a, b):
        cpu.uc.reg_write(x.UC_X86_REG_RFLAGS, cpu.rflags)
    raw_a, raw_b = (ctypes.string_at(cpu.helper.layout.env, ENV_RESET_BYTES) for cpu in (a, b))
    words = struct.iter_unpack("<QQ", b"".join(
        raw_a[i:i + 8] + raw_b[i:i + 8] for i in range(0, ENV_RESET_BYTES, 8)))
    return [8 * i for i, (wa, wb) in enumerate(words)
            if wa != wb and not (host_address(wa) and host_address(wb))]



@pytest.mark.parametrize("k", [1, 9, 13, 17, 21, AFTER_STI, 777, N - 1])
def test_run_k_save_load_run_rest_equals_run_n(k: int, rigs: list[Rig]) -> None:
    a, b, c = new_rig(rigs), new_rig(rigs), new_rig(rigs)
    a.boot()
    a.run(N)
    b.boot()
    b.run(k)
    w = BinaryWriter()
    save_cpu(b.cpu, w)
    mid = b.named()
    c.mem.ram[:] = b.mem.ram
    r = BinaryReader(bytes(w.out))
    load_cpu(c.cpu, r)
    r.finish()
    assert c.named() == mid
    assert c.cpu.hflags == b.cpu.hflags
    c.run(N - k)
    assert c.named() == a.named()
    assert (c.mem.ram == a.mem.ram).all()
    if N - k > LOOP:  # by then the guest has rewritten the engine's scratch values too
        assert env_differences(a.cpu, c.cpu) == []
    if k == AFTER_STI:
        assert mid["interrupt_shadow"]
    if k >= PROLOGUE:  # the guest's own settings are among what crossed over
        assert mid["cr0"] & 0x8000_0000 and mid["msrs"]["ia32_fs_base"] == FS_BASE
        assert mid["sse"]["xmm0"] != bytes(16)


def test_corrupt_or_truncated_state_leaves_the_cpu_alone(rigs: list[Rig]) -> None:
    a, b = new_rig(rigs), new_rig(rigs)
    busy_state(a.cpu)
    w = BinaryWriter()
    save_cpu(a.cpu, w)
    good = bytes(w.out)
    b.boot()
    before = b.named()
    hflags = b.cpu.hflags
    bad_bool = bytearray(good)
    bad_bool[-9] = 7  # "intr", the boolean before the u64 icount
    st0_len = bytearray(good)
    offset = good.index(a.named()["fpu"]["st0"]) - 4
    st0_len[offset] = 9  # a 9-byte ST(0)
    for data in (good[:-1], good[: len(good) // 2], bytes(bad_bool), bytes(st0_len)):
        with pytest.raises(DecodeError):
            load_cpu(b.cpu, BinaryReader(data))
        assert b.named() == before
        assert b.cpu.hflags == hflags


def test_apply_takes_exactly_what_visit_decoded(rigs: list[Rig]) -> None:
    """apply_cpu is the only writer: visiting with a reader changes nothing by itself."""
    a, b = new_rig(rigs), new_rig(rigs)
    busy_state(a.cpu)
    w = TreeWriter()
    save_cpu(a.cpu, w)
    r = TreeReader(w.root)
    r.begin_struct("cpu")
    before = b.named()
    values = visit_cpu(r)
    assert b.named() == before
    apply_cpu(b.cpu, values)
    assert b.named() == w.root["cpu"]


def _idle_cpu(rigs) -> X86Cpu:
    class Rig:
        cpu = X86Cpu(icount=False, port_in=lambda p, s: 0, port_out=lambda p, s, v: None,
                     inta=lambda: 0)
    rigs.append(Rig)
    Rig.cpu.reset()
    return Rig.cpu


def test_the_fast_register_path_reads_and_writes_what_unicorns_own_methods_do(rigs):
    # cpu.regs (ctypes straight to uc_reg_read/uc_reg_write) beside the engine's Python
    # methods, for every register a CPU section holds: narrow ones read after a wide
    # value sat in the shared buffer, 128-bit XMM and 80-bit x87 as their bytes.
    import random

    from emu.cpu.state import CRS, FPU_POINTERS, GPRS, _reg, saved_msrs

    cpu, rng = _idle_cpu(rigs), random.Random(7)
    uc, regs = cpu.uc, cpu.regs
    for name in (*GPRS, "rip", "rflags", *CRS, "fpcw", "fpsw", "fptag",
                 *(n for n, _ in FPU_POINTERS)):
        regs.write(x.UC_X86_REG_RAX, (1 << 64) - 1)
        assert regs.read(x.UC_X86_REG_RAX) == (1 << 64) - 1
        assert regs.read(_reg(name)) == uc.reg_read(_reg(name)), name
    for i in range(16):
        value = rng.getrandbits(128)
        regs.write_wide(x.UC_X86_REG_XMM0 + i, value.to_bytes(16, "little"))
        assert uc.reg_read(x.UC_X86_REG_XMM0 + i) == value
        uc.reg_write(x.UC_X86_REG_XMM0 + i, value ^ 1)
        assert regs.read_wide(x.UC_X86_REG_XMM0 + i) == (value ^ 1).to_bytes(16, "little")
    for i in range(8):
        mantissa, exponent = rng.getrandbits(64), rng.getrandbits(16)
        uc.reg_write(x.UC_X86_REG_FP0 + i, (mantissa, exponent))
        raw = mantissa.to_bytes(8, "little") + exponent.to_bytes(2, "little")
        assert regs.read_wide(x.UC_X86_REG_FP0 + i)[:10] == raw
        regs.write_wide(x.UC_X86_REG_FP0 + i, raw[::-1])
        assert uc.reg_read(x.UC_X86_REG_FP0 + i) == (int.from_bytes(raw[::-1][:8], "little"),
                                                     int.from_bytes(raw[::-1][8:], "little"))
    for name, index in saved_msrs():  # each MSR keeps what its width holds
        value = rng.getrandbits(47)
        uc.msr_write(index, value)
        kept = uc.msr_read(index)
        uc.msr_write(index, 0)
        regs.write_msr(index, value)
        assert uc.msr_read(index) == regs.read_msr(index) == kept, name
