"""X86Cpu driven directly: reset state, interrupt delivery, faults, A20, code invalidation,
port I/O and icount slices.

Guest code is hand-assembled (the bytes carry their mnemonics). References: Intel SDM
vol. 3A 9.1.1 (state after reset), 6.8.3 (the STI and MOV SS interrupt shadows),
6.12-6.13 (IDT gates, error codes, return addresses of faults), 4.7 (#PF and CR2);
vol. 2A CPUID leaf 1 (EDX bit 9 APIC, ECX bit 21 x2APIC).
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterator

import pytest
import unicorn.x86_const as x

from emu.cpu import x86
from emu.cpu.models import DEFAULT_MODEL, MODELS, CpuModel
from emu.cpu.x86 import RunResult, X86Cpu, make_spare_engine
from emu.memory.address_space import PAM_RE, PAM_WE, AddressSpace

RAM_SIZE = 2 << 20
IF = 1 << 9

# real-mode layout: code at 1000:0000, IRQ/INT handlers in segment 0800, stack at 0000:7000
CODE_SEG, HANDLER_SEG, STACK = 0x1000, 0x0800, 0x7000
IRQ_VECTOR = 0x22

# flat 32-bit layout
GDT, IDT, HANDLERS, CODE32, STACK32 = 0x1000, 0x2000, 0x3000, 0x4000, 0x9000
HANDLER_STRIDE = 8
PAGE_DIR, PAGE_TABLE = 0x20000, 0x21000


class Rig:
    """One CPU with 2 MiB of RAM, recording its port I/O and interrupt acknowledges."""

    def __init__(self, *, icount: bool = False, bios: bytes = bytes(0x10000),
                 model: CpuModel = MODELS[DEFAULT_MODEL]) -> None:
        self.io: list[tuple] = []
        self.inta_calls = 0
        self.cpu = X86Cpu(icount=icount, port_in=self._in, port_out=self._out,
                          inta=self._inta, model=model)
        # as the PC machine wires it: RAM written from Python drops only its own code
        self.mem = AddressSpace(self.cpu.uc, RAM_SIZE, bios, self.cpu.invalidate_code,
                                self.cpu.invalidate_ram)
        self.mem.fill_unassigned()
        self.cpu.reset()

    def _in(self, port: int, size: int) -> int:
        self.io.append(("in", port, size))
        return (0xC0DE0000 | port) & ((1 << (8 * size)) - 1)

    def _out(self, port: int, size: int, value: int) -> None:
        self.io.append(("out", port, size, value))
        if port == 0x81:  # lets guest code raise INTR at a chosen instruction
            self.cpu.set_intr(True)
        elif port == 0x82:  # ... or end the slice, as a device that needs the machine does
            self.cpu.request_stop()

    def _inta(self) -> int:
        self.inta_calls += 1
        self.cpu.set_intr(False)  # the PIC drops INTR once the vector is acknowledged
        return IRQ_VECTOR

    # -- registers and memory ----------------------------------------------------------
    def reg(self, name: str) -> int:
        return self.cpu.uc.reg_read(getattr(x, f"UC_X86_REG_{name.upper()}"))

    def set_reg(self, name: str, value: int) -> None:
        self.cpu.uc.reg_write(getattr(x, f"UC_X86_REG_{name.upper()}"), value)

    def u16(self, addr: int) -> int:
        return int.from_bytes(self.mem.read(addr, 2), "little")

    def u32(self, addr: int) -> int:
        return self.mem.read_u32(addr)

    def run(self, budget: int | None = None) -> RunResult:
        """Resume like the machine does after a HLT, then run slices as its loop does
        (a slice that ends for no reason of the guest's is followed by the next) until
        the guest halts or faults, or 2 s pass."""
        self.cpu.halted = False
        if self.cpu.icount:
            return self.cpu.run(budget=budget)
        end = time.monotonic_ns() + 2_000_000_000
        while True:
            result = self.cpu.run(host_deadline_ns=end)
            if result != RunResult() or time.monotonic_ns() >= end:
                return result

    def slice(self) -> RunResult:
        """Exactly one slice, with a deadline far away."""
        return self.cpu.run(host_deadline_ns=time.monotonic_ns() + 2_000_000_000)

    # -- real mode ---------------------------------------------------------------------
    def set_seg(self, name: str, selector: int) -> None:
        seg = self.cpu.segment(name)
        seg.selector, seg.base = selector, selector << 4

    def real_mode(self, code: bytes, ip: int = 0) -> None:
        """Load ``code`` at 1000:ip and point CS:IP and SS:SP at it and the stack."""
        self.mem.write((CODE_SEG << 4) + ip, code)
        self.set_seg("cs", CODE_SEG)
        self.set_seg("ss", 0)
        self.set_reg("rip", ip)
        self.set_reg("rsp", STACK)

    def ivt(self, vector: int, seg: int, off: int, handler: bytes) -> None:
        self.mem.write(vector * 4, struct.pack("<HH", off, seg))
        self.mem.write((seg << 4) + off, handler)

    # -- flat 32-bit protected mode ------------------------------------------------------
    def flat32(self, code: bytes, idt_limit: int = 256 * 8 - 1) -> None:
        """GDT (flat code 08, data 10), an IDT whose vector v handler is ``hlt; iret`` at
        HANDLERS + 8v, and ``code`` at CODE32 entered through enter_flat32."""
        self.mem.write(GDT, struct.pack("<3Q", 0, 0x00CF9A000000FFFF, 0x00CF92000000FFFF))
        for v in range(256):
            handler = HANDLERS + v * HANDLER_STRIDE
            self.mem.write(handler, bytes([0xF4, 0xCF]))  # hlt; iret
            gate = struct.pack("<HHHH", handler & 0xFFFF, 0x08, 0x8E00, handler >> 16)
            self.mem.write(IDT + v * 8, gate)  # 32-bit interrupt gate, DPL 0
        self.set_reg("gdtr", (0, GDT, 3 * 8 - 1, 0))
        self.set_reg("idtr", (0, IDT, idt_limit, 0))
        self.mem.write(CODE32, code)
        self.cpu.enter_flat32(CODE32, rsp=STACK32)

    def vector_taken(self) -> int:
        """The vector whose handler halted (EIP is just past its HLT)."""
        off = self.reg("rip") - 1 - HANDLERS
        assert off % HANDLER_STRIDE == 0, f"halted at {self.reg('rip'):#x}, not in a handler"
        return off // HANDLER_STRIDE


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.cpu.close()


@pytest.fixture
def icount_rig() -> Iterator[Rig]:
    r = Rig(icount=True)
    yield r
    r.cpu.close()


# -- reset -------------------------------------------------------------------------------------
def test_reset_state_is_real_mode_at_f000_fff0() -> None:
    bios = bytearray(0x10000)
    bios[0xFFF0:0xFFF5] = bytes([0xB0, 0x42, 0xE6, 0x80, 0xF4])  # mov al,42h; out 80h,al; hlt
    r = Rig(bios=bytes(bios))
    try:
        cpu = r.cpu
        cs = cpu.segment("cs")
        assert (cs.selector, cs.base, cs.limit) == (0xF000, 0xFFFF0000, 0xFFFF)
        assert r.reg("rip") == 0xFFF0
        assert cpu.table("idtr") == (0, 0xFFFF)  # SDM Table 9-1, as QEMU
        assert r.reg("cr0") & 1 == 0  # PE clear: real mode
        assert r.reg("rdx") & 0xFFFFFFFF == 0x00060FB1  # qemu64: family 15, model 107, stepping 1
        assert r.reg("rflags") & IF == 0
        # the first instruction comes from the top of the BIOS image, just below 4 GiB
        assert r.run() == RunResult(halted=True)
        assert r.io == [("out", 0x80, 1, 0x42)]
        assert (cs.selector, r.reg("rip")) == (0xF000, 0xFFF5)
    finally:
        r.cpu.close()


def test_reset_undoes_protected_mode_halt_and_a20(rig: Rig) -> None:
    rig.flat32(bytes([0xF4]))  # hlt
    assert rig.run().halted
    rig.cpu.set_a20(False)
    rig.cpu.reset()
    assert not rig.cpu.halted
    assert rig.reg("cr0") & 1 == 0
    assert (rig.cpu.segment("cs").selector, rig.cpu.segment("cs").base) == (0xF000, 0xFFFF0000)
    assert rig.reg("rip") == 0xFFF0
    assert rig.cpu.table("idtr") == (0, 0xFFFF)
    # A20 is back on: a write through FFFF:0010 reaches 1 MiB
    rig.real_mode(bytes([0xC6, 0x06, 0x10, 0x00, 0xAA, 0xF4]))  # mov byte [0010h],0AAh; hlt
    rig.set_seg("ds", 0xFFFF)
    rig.mem.fill(0, 1)
    assert rig.run().halted
    assert rig.mem.read(0x100000, 1) == b"\xaa" and rig.mem.read(0, 1) == b"\x00"


# -- real-mode interrupts -----------------------------------------------------------------------
def test_real_mode_int_goes_through_ivt_and_iret_returns(rig: Rig) -> None:
    rig.real_mode(bytes([0xCD, 0x21,   # int 21h
                         0xB3, 0x01,   # mov bl,1
                         0xF4]))       # hlt
    rig.ivt(0x21, HANDLER_SEG, 0x0100, bytes([0xB0, 0x21, 0xE6, 0x80,  # mov al,21h; out 80h,al
                                             0xF4, 0xCF]))              # hlt; iret
    rig.set_reg("rflags", 0x2 | IF)
    assert rig.run().halted
    cs = rig.cpu.segment("cs")
    assert (cs.selector, cs.base, rig.reg("rip")) == (HANDLER_SEG, HANDLER_SEG << 4, 0x0105)
    sp = rig.reg("rsp") & 0xFFFF
    assert sp == STACK - 6
    # the frame: IP after the INT, the caller's CS, FLAGS with IF still set
    assert (rig.u16(sp), rig.u16(sp + 2)) == (0x0002, CODE_SEG)
    assert rig.u16(sp + 4) & IF
    assert rig.reg("rflags") & IF == 0  # INT clears IF
    assert rig.io == [("out", 0x80, 1, 0x21)]
    assert rig.run().halted
    assert (cs.selector, cs.base, rig.reg("rip")) == (CODE_SEG, CODE_SEG << 4, 0x0005)
    assert rig.reg("rbx") & 0xFF == 1
    assert rig.reg("rsp") & 0xFFFF == STACK
    assert rig.reg("rflags") & IF


IRQ_HANDLER = bytes([0xF4, 0xCF])  # hlt; iret


def _irq_handler(rig: Rig) -> None:
    rig.ivt(IRQ_VECTOR, HANDLER_SEG, 0x0200, IRQ_HANDLER)


def _in_irq_handler(rig: Rig) -> bool:
    return (rig.cpu.segment("cs").selector, rig.reg("rip")) == (HANDLER_SEG, 0x0201)


def test_irq_not_taken_with_if_clear(rig: Rig) -> None:
    rig.real_mode(bytes([0xFA,          # cli
                         0x43, 0x43,    # inc bx; inc bx
                         0xEB, 0x00,    # jmp $+2 (a new block)
                         0x43,          # inc bx
                         0xF4]))        # hlt
    _irq_handler(rig)
    rig.cpu.set_intr(True)
    assert rig.run() == RunResult(halted=True)
    assert rig.inta_calls == 0
    assert rig.reg("rbx") & 0xFFFF == 3
    assert (rig.cpu.segment("cs").selector, rig.reg("rip")) == (CODE_SEG, 7)
    assert not rig.cpu.irq_deliverable()


def test_cli_hlt_stays_halted_with_intr_raised(rig: Rig) -> None:
    rig.real_mode(bytes([0xFA, 0xF4]))  # cli; hlt
    _irq_handler(rig)
    rig.set_reg("rflags", 0x2 | IF)
    assert rig.run() == RunResult(halted=True)
    assert rig.cpu.halted
    rig.cpu.set_intr(True)
    assert not rig.cpu.irq_deliverable()
    assert rig.inta_calls == 0


def test_sti_shadow_delivers_after_the_next_instruction(rig: Rig) -> None:
    rig.real_mode(bytes([0xFB,                # sti
                         0x43, 0x43, 0x43,    # inc bx (x3)
                         0xF4]))              # hlt
    _irq_handler(rig)
    rig.cpu.set_intr(True)
    assert rig.run().halted
    assert _in_irq_handler(rig)
    assert rig.inta_calls == 1
    # exactly one instruction after STI ran: the return address is the second INC
    assert rig.reg("rbx") & 0xFFFF == 1
    sp = rig.reg("rsp") & 0xFFFF
    assert (rig.u16(sp), rig.u16(sp + 2)) == (0x0002, CODE_SEG)
    assert rig.u16(sp + 4) & IF
    assert rig.run().halted
    assert rig.reg("rbx") & 0xFFFF == 3


@pytest.mark.parametrize("shadow", [True, False])
def test_mov_ss_shadow(rig: Rig, shadow: bool) -> None:
    # INTR rises during OUT 81h with IF=1. MOV SS ends the translation block and inhibits
    # interrupts for one instruction; the control case ends the block with a JMP instead.
    ends_block = bytes([0x8E, 0xD0]) if shadow else bytes([0xEB, 0x00])  # mov ss,ax | jmp $+2
    rig.real_mode(bytes([0x31, 0xC0,          # xor ax,ax
                         0xFB, 0x90,          # sti; nop
                         0xE6, 0x81,          # out 81h,al (raises INTR)
                         *ends_block,
                         0x43, 0x43, 0x43,    # inc bx (x3)
                         0xF4]))              # hlt
    _irq_handler(rig)
    assert rig.run().halted
    assert _in_irq_handler(rig)
    ret = rig.u16(rig.reg("rsp") & 0xFFFF)
    if shadow:
        # the instruction after MOV SS completes before delivery, and no more
        assert (rig.reg("rbx") & 0xFFFF, ret) == (1, 9)
    else:
        assert (rig.reg("rbx") & 0xFFFF, ret) == (0, 8)


def test_hlt_with_if_set_resumes_into_handler_then_after_hlt(rig: Rig) -> None:
    rig.real_mode(bytes([0xFB, 0x90,   # sti; nop
                         0xF4,         # hlt
                         0x43,         # inc bx
                         0xF4]))       # hlt
    _irq_handler(rig)
    assert rig.run() == RunResult(halted=True)
    assert rig.reg("rip") == 3
    assert not rig.cpu.irq_deliverable()
    rig.cpu.set_intr(True)
    assert rig.cpu.irq_deliverable()
    assert rig.run().halted
    assert _in_irq_handler(rig)
    sp = rig.reg("rsp") & 0xFFFF
    assert (rig.u16(sp), rig.u16(sp + 2)) == (0x0003, CODE_SEG)  # just after the HLT
    assert rig.run().halted
    assert (rig.cpu.segment("cs").selector, rig.reg("rip")) == (CODE_SEG, 5)
    assert rig.reg("rbx") & 0xFFFF == 1
    assert rig.inta_calls == 1


# -- CPUID -------------------------------------------------------------------------------------
def test_cpuid_hides_apic_and_x2apic(rig: Rig) -> None:
    rig.real_mode(bytes([0x66, 0xB8, 0x01, 0x00, 0x00, 0x00,   # mov eax,1
                         0x0F, 0xA2,                           # cpuid
                         0xF4]))                               # hlt
    assert rig.run().halted
    edx, ecx = rig.reg("rdx"), rig.reg("rcx")
    assert edx & 1  # FPU: the leaf was answered
    assert edx & (1 << 9) == 0
    assert ecx & (1 << 21) == 0


# -- 32-bit protected mode --------------------------------------------------------------------
def test_int_through_32bit_idt_and_iret(rig: Rig) -> None:
    rig.flat32(bytes([0xFB,                               # sti
                      0xCD, 0x30,                         # int 30h
                      0xBB, 0x01, 0x00, 0x00, 0x00,       # mov ebx,1
                      0xF4]))                             # hlt
    assert rig.run().halted
    assert rig.vector_taken() == 0x30
    esp = rig.reg("rsp")
    assert esp == STACK32 - 12
    assert (rig.u32(esp), rig.u32(esp + 4)) == (CODE32 + 3, 0x08)
    assert rig.u32(esp + 8) & IF
    assert rig.reg("rflags") & IF == 0  # interrupt gate
    assert rig.run().halted
    assert rig.reg("rip") == CODE32 + 9
    assert rig.reg("rbx") == 1 and rig.reg("rsp") == STACK32


def test_divide_error_returns_to_the_faulting_instruction(rig: Rig) -> None:
    rig.flat32(bytes([0x31, 0xC9,    # xor ecx,ecx
                      0x31, 0xD2,    # xor edx,edx
                      0xF7, 0xF1,    # div ecx
                      0xF4]))
    assert rig.run().halted
    assert rig.vector_taken() == 0
    esp = rig.reg("rsp")
    assert esp == STACK32 - 12  # no error code for #DE
    assert (rig.u32(esp), rig.u32(esp + 4)) == (CODE32 + 4, 0x08)


def test_general_protection_pushes_error_code(rig: Rig) -> None:
    rig.flat32(bytes([0x66, 0xB8, 0x1B, 0x00,   # mov ax,1Bh (GDT index 3: beyond the limit)
                      0x8E, 0xD8,               # mov ds,ax
                      0xF4]))
    assert rig.run().halted
    assert rig.vector_taken() == 13
    esp = rig.reg("rsp")
    assert esp == STACK32 - 16
    assert rig.u32(esp) == 0x18  # the selector, RPL cleared
    assert (rig.u32(esp + 4), rig.u32(esp + 8)) == (CODE32 + 4, 0x08)


def _paging_then(rig: Rig, tail: bytes) -> None:
    """Identity-map the first 2 MiB (0x300000 has no page), enable paging, then ``tail``.
    The #PF handler is ``mov eax,cr2; hlt``."""
    rig.mem.write(PAGE_DIR, struct.pack("<I", PAGE_TABLE | 3))
    rig.mem.write(PAGE_TABLE, struct.pack("<512I", *((i << 12) | 3 for i in range(512))))
    rig.flat32(bytes([0xB8, *struct.pack("<I", PAGE_DIR),    # mov eax,PAGE_DIR
                      0x0F, 0x22, 0xD8,                      # mov cr3,eax
                      0x0F, 0x20, 0xC0,                      # mov eax,cr0
                      0x0D, 0x00, 0x00, 0x00, 0x80,          # or eax,80000000h
                      0x0F, 0x22, 0xC0,                      # mov cr0,eax
                      *tail]))
    rig.mem.write(HANDLERS + 14 * HANDLER_STRIDE, bytes([0x0F, 0x20, 0xD0,   # mov eax,cr2
                                                         0xF4]))             # hlt


PF_HANDLER_HALTED = HANDLERS + 14 * HANDLER_STRIDE + 4
STORE_300000 = bytes([0xA3, *struct.pack("<I", 0x300000)])  # mov [300000h],eax


def test_page_fault_sets_cr2_and_error_code(rig: Rig) -> None:
    _paging_then(rig, STORE_300000 + bytes([0xF4]))
    assert rig.run().halted
    assert rig.reg("rip") == PF_HANDLER_HALTED
    assert rig.reg("rax") == 0x300000  # CR2 as the handler reads it
    esp = rig.reg("rsp")
    assert esp == STACK32 - 16
    assert rig.u32(esp) == 0x2  # write, supervisor, page not present
    assert (rig.u32(esp + 4), rig.u32(esp + 8)) == (CODE32 + 19, 0x08)


def test_cr2_survives_the_end_of_the_slice(rig: Rig) -> None:
    _paging_then(rig, STORE_300000 + bytes([0xF4]))
    assert rig.run().halted
    assert rig.reg("rax") == 0x300000
    assert rig.reg("cr2") == 0x300000


def test_page_fault_after_a_slice_boundary_is_a_page_fault(rig: Rig) -> None:
    _paging_then(rig, bytes([0xE6, 0x82,    # out 82h,al (ends the slice)
                             0xEB, 0x00,    # jmp $+2
                             *STORE_300000, 0xF4]))
    assert rig.slice() == RunResult()
    assert rig.reg("rip") == CODE32 + 23  # the slice ended after the JMP's block
    assert rig.run().halted
    assert rig.reg("rip") == PF_HANDLER_HALTED  # #DF's handler instead, at vector 8
    assert rig.reg("rax") == 0x300000


def test_consecutive_faults_do_not_escalate_to_double_fault(rig: Rig) -> None:
    rig.flat32(bytes([0x31, 0xC9,                # xor ecx,ecx
                      0xF7, 0xF1,                # div ecx (#DE, handler skips it)
                      0xF7, 0xF1,                # div ecx (#DE again)
                      0x66, 0xB8, 0x1B, 0x00,    # mov ax,1Bh
                      0x8E, 0xD8,                # mov ds,ax (#GP)
                      0xF4]))
    rig.mem.write(HANDLERS, bytes([0x83, 0x04, 0x24, 0x02,   # add dword [esp],2
                                   0xCF]))                   # iret
    assert rig.run().halted
    assert rig.vector_taken() == 13
    assert rig.u32(rig.reg("rsp") + 4) == CODE32 + 10


def test_triple_fault_reported(rig: Rig) -> None:
    rig.flat32(bytes([0xCC, 0xF4]), idt_limit=0)  # int3 with an empty IDT
    result = rig.run()
    assert result.triple_fault
    assert not result.halted and result.error is None


def test_triple_fault_in_real_mode(rig: Rig) -> None:
    rig.real_mode(bytes([0xCC, 0xF4]))  # int3
    rig.set_reg("idtr", (0, 0, 0, 0))
    assert rig.run().triple_fault


# -- A20 ---------------------------------------------------------------------------------------
def test_a20_gate_wraps_at_one_mib(rig: Rig) -> None:
    rig.real_mode(bytes([0xC6, 0x06, 0x10, 0x00, 0x00,   # mov byte [0010h],imm8 (patched)
                         0xF4]))
    imm = (CODE_SEG << 4) + 4

    def store(value: int) -> None:
        rig.mem.write(imm, bytes([value]))
        rig.set_seg("ds", 0xFFFF)  # FFFF:0010 = 0x100000
        rig.set_reg("rip", 0)
        assert rig.run().halted

    store(0xAA)
    assert rig.mem.read(0x100000, 1) == b"\xaa" and rig.mem.read(0, 1) == b"\x00"
    rig.cpu.set_a20(False)
    store(0xBB)
    assert rig.mem.read(0, 1) == b"\xbb" and rig.mem.read(0x100000, 1) == b"\xaa"
    rig.cpu.set_a20(True)
    store(0xCC)
    assert rig.mem.read(0x100000, 1) == b"\xcc" and rig.mem.read(0, 1) == b"\xbb"


def test_guest_stores_follow_memory_map_changes(rig: Rig) -> None:
    # The helper caches which region each physical address belongs to (for unicorn's
    # store path); remapping the same addresses must be seen by the very next store.
    from emu.memory.address_space import PAM_OFF, PAM_RE, PAM_WE

    rig.real_mode(bytes([0xC6, 0x06, 0x00, 0x00, 0x5A,   # mov byte [0000h],5Ah
                         0xF4]))
    rig.mem.ram[0xC0000] = 0

    def store() -> RunResult:
        rig.set_seg("ds", 0xC000)
        rig.set_reg("rip", 0)
        return rig.run()

    for _ in range(2):
        rig.mem.set_pam(0xC0000, 0x4000, PAM_OFF)  # no ROM there: the write is dropped
        assert store().halted
        assert rig.mem.ram[0xC0000] == 0
        rig.mem.set_pam(0xC0000, 0x4000, PAM_RE | PAM_WE)  # shadow RAM
        assert store().halted
        assert rig.mem.ram[0xC0000] == 0x5A
        rig.mem.ram[0xC0000] = 0
    rig.cpu.uc.mem_unmap(0xC0000, 0x4000)  # nothing there now: the engine says so
    result = store()
    assert result.error and "UNMAPPED" in result.error


# -- code changed from Python ------------------------------------------------------------------
@pytest.mark.parametrize("how", ["invalidate_code", "AddressSpace.write"])
def test_code_patched_from_python_is_seen_after_invalidation(rig: Rig, how: str) -> None:
    rig.real_mode(bytes([0x66, 0xB8, 0x11, 0x11, 0x11, 0x11,   # mov eax,11111111h
                         0xF4]))
    assert rig.run().halted
    assert rig.reg("rax") == 0x11111111
    imm = (CODE_SEG << 4) + 2
    if how == "invalidate_code":
        rig.mem.ram[imm:imm + 4] = 0x22
        rig.cpu.invalidate_code(imm, imm + 4)
    else:
        rig.mem.write(imm, b"\x22" * 4)
    rig.set_reg("rip", 0)
    assert rig.run().halted
    assert rig.reg("rax") == 0x22222222


def test_code_patched_from_python_under_paging_is_seen(rig: Rig) -> None:
    # physical page 50000h holds the code and is mapped only at virtual 1F0000h
    _paging_then(rig, bytes([0xB8, *struct.pack("<I", 0x1F0000),   # mov eax,1F0000h
                             0xFF, 0xE0]))                         # jmp eax
    rig.mem.write(PAGE_TABLE + 0x1F0 * 4, struct.pack("<I", 0x50000 | 3))
    rig.mem.write(PAGE_TABLE + 0x50 * 4, struct.pack("<I", 0))
    rig.mem.write(0x50000, bytes([0xB8, 0x11, 0x11, 0x11, 0x11, 0xF4]))  # mov eax,..; hlt
    assert rig.run().halted
    assert (rig.reg("rip"), rig.reg("rax")) == (0x1F0006, 0x11111111)
    rig.mem.write(0x50001, b"\x22" * 4)
    rig.set_reg("rip", 0x1F0000)
    assert rig.run().halted
    assert rig.reg("rax") == 0x22222222



def test_code_written_across_two_engine_ram_blocks_is_seen(rig: Rig) -> None:
    # Two shadow-RAM PAM segments are two RAM blocks of the engine: code written across
    # their boundary has its translations dropped in both.
    for base in (0xC0000, 0xC4000):
        rig.mem.set_pam(base, 0x4000, PAM_RE | PAM_WE)

    def code(value: int) -> bytes:
        return bytes([0x66, 0xB8, *struct.pack("<I", value), 0xF4])  # mov eax,value; hlt

    rig.mem.write(0xC3FFE, code(0x11111111))
    rig.set_seg("cs", 0xC3FF)
    rig.set_reg("rip", 0xE)
    assert rig.run().halted
    assert rig.reg("rax") == 0x11111111
    rig.mem.write(0xC3FFE, code(0x22222222))
    rig.set_reg("rip", 0xE)
    assert rig.run().halted
    assert rig.reg("rax") == 0x22222222


# -- port I/O ----------------------------------------------------------------------------------
def test_port_io_sizes_ports_and_values(rig: Rig) -> None:
    rig.real_mode(bytes([
        0xBA, 0x34, 0x12,                     # mov dx,1234h
        0xB0, 0x5A,                           # mov al,5Ah
        0xEE,                                 # out dx,al
        0xB8, 0xCD, 0xAB,                     # mov ax,0ABCDh
        0xEF,                                 # out dx,ax
        0x66, 0xB8, 0x78, 0x56, 0x34, 0x12,   # mov eax,12345678h
        0x66, 0xEF,                           # out dx,eax
        0xE6, 0x80,                           # out 80h,al
        0xE4, 0x60,                           # in al,60h
        0x88, 0xC3,                           # mov bl,al
        0xED,                                 # in ax,dx
        0x89, 0xC1,                           # mov cx,ax
        0x66, 0xED,                           # in eax,dx
        0xF4]))
    assert rig.run().halted
    assert rig.io == [("out", 0x1234, 1, 0x5A), ("out", 0x1234, 2, 0xABCD),
                      ("out", 0x1234, 4, 0x12345678), ("out", 0x80, 1, 0x78),
                      ("in", 0x60, 1), ("in", 0x1234, 2), ("in", 0x1234, 4)]
    assert rig.reg("rbx") & 0xFF == 0x60
    assert rig.reg("rcx") & 0xFFFF == 0x1234
    assert rig.reg("rax") & 0xFFFFFFFF == 0xC0DE1234


def test_rep_outsb_calls_once_per_byte(rig: Rig) -> None:
    rig.mem.write(0x500, b"abc")
    rig.real_mode(bytes([0xBE, 0x00, 0x05,   # mov si,500h
                         0xB9, 0x03, 0x00,   # mov cx,3
                         0xBA, 0xF8, 0x03,   # mov dx,3F8h
                         0xF3, 0x6E,         # rep outsb
                         0xF4]))
    assert rig.run().halted
    assert rig.io == [("out", 0x3F8, 1, c) for c in b"abc"]
    assert rig.reg("rcx") & 0xFFFF == 0
    assert rig.reg("rsi") & 0xFFFF == 0x503


# -- icount ------------------------------------------------------------------------------------
def test_icount_budget_executes_exactly_n_instructions(icount_rig: Rig) -> None:
    rig = icount_rig
    rig.real_mode(bytes([0x41,          # inc cx
                         0xEB, 0xFD]))  # jmp short back to the inc
    start = rig.cpu.insn_count
    assert rig.run(budget=7) == RunResult()
    assert rig.cpu.insn_count - start == 7
    assert rig.reg("rcx") & 0xFFFF == 4  # inc, jmp, inc, jmp, inc, jmp, inc
    assert rig.reg("rip") == 1
    assert rig.run(budget=10) == RunResult()
    assert rig.cpu.insn_count - start == 17
    assert rig.reg("rcx") & 0xFFFF == 9
    assert rig.run(budget=1) == RunResult()
    assert rig.cpu.insn_count - start == 18
    assert rig.reg("rcx") & 0xFFFF == 9 and rig.reg("rip") == 0


# -- slices and robustness --------------------------------------------------------------------
def test_deadline_ends_a_busy_slice_without_a_triple_fault(rig: Rig) -> None:
    rig.real_mode(bytes([0x43,           # inc bx
                         0xEB, 0xFD]))   # jmp back to the inc
    start = time.monotonic_ns()
    result = rig.cpu.run(host_deadline_ns=start + 20_000_000)
    assert result == RunResult()
    assert time.monotonic_ns() - start >= 20_000_000
    assert rig.reg("rbx") & 0xFFFF  # it did run
    assert rig.reg("rip") == 0  # left at a block boundary


@pytest.mark.parametrize("code", [bytes([0x0F, 0x31, 0xEB, 0xFC]),   # rdtsc; jmp back
                                  bytes([0xE4, 0x80, 0xEB, 0xFC])],  # in al, 0x80; jmp back
                         ids=["rdtsc", "in"])
def test_a_guest_reading_the_time_ends_an_overdue_slice_itself(rig: Rig, code: bytes) -> None:
    """A busy host can keep the deadline thread off a core for milliseconds; a guest that
    reads the TSC or a port must not run on past the deadline meanwhile. Here the thread
    is gone: the CPU thread alone ends the slice."""
    helper = rig.cpu.helper
    helper.lib.pyemu_deadline_stop(helper.ref)
    rescue = threading.Timer(2.0, rig.cpu.kick)  # without the check, only this ends it
    rescue.start()
    rig.real_mode(code)
    start = time.monotonic_ns()
    try:
        assert rig.cpu.run(host_deadline_ns=start + 20_000_000) == RunResult()
    finally:
        rescue.cancel()
    assert time.monotonic_ns() - start < 1_000_000_000


@pytest.mark.parametrize("when", ["before", "during"])
def test_kick_ends_the_slice_promptly(rig: Rig, when: str) -> None:
    rig.real_mode(bytes([0x43, 0xEB, 0xFD]))  # inc bx; jmp back
    if when == "before":
        rig.cpu.kick()
    else:
        threading.Timer(0.05, rig.cpu.kick).start()
    start = time.monotonic()
    assert rig.slice() == RunResult()  # the deadline is 2 s away
    assert time.monotonic() - start < 0.5
    assert rig.reg("rip") in (0, 1)  # left at a block boundary


def test_invalid_opcode_delivered_through_idt(rig: Rig) -> None:
    rig.flat32(bytes([0x90,          # nop
                      0x0F, 0x0B,    # ud2
                      0xF4]))
    result = rig.run()
    assert not result.triple_fault and result.error is None
    if not result.halted:  # the engine leaves emu_start after #UD: the machine resumes
        assert rig.run().halted
    assert rig.vector_taken() == 6
    esp = rig.reg("rsp")
    assert (rig.u32(esp), rig.u32(esp + 4)) == (CODE32 + 1, 0x08)


def test_hardware_irq_through_32bit_idt(rig: Rig) -> None:
    rig.flat32(bytes([0xFB,    # sti
                      0x90,    # nop
                      0x90,    # nop
                      0xF4]))
    rig.cpu.set_intr(True)
    assert rig.run().halted
    assert rig.vector_taken() == IRQ_VECTOR
    assert rig.inta_calls == 1
    esp = rig.reg("rsp")
    assert (rig.u32(esp), rig.u32(esp + 4)) == (CODE32 + 2, 0x08)
    assert rig.u32(esp + 8) & IF and rig.reg("rflags") & IF == 0


def test_no_vector_from_inta_delivers_nothing(rig: Rig) -> None:
    rig.cpu._inta_fn = lambda: -1  # the PIC had nothing after all (INTR withdrawn)
    rig.real_mode(bytes([0xFB, 0x90, 0x43, 0xEB, 0x00, 0x43, 0xF4]))  # sti; nop; inc bx;
    _irq_handler(rig)                                                   # jmp $+2; inc bx; hlt
    rig.cpu.set_intr(True)
    assert rig.run().halted
    assert (rig.cpu.segment("cs").selector, rig.reg("rip")) == (CODE_SEG, 7)
    assert rig.reg("rbx") & 0xFFFF == 2


def test_failing_port_handlers_do_not_stop_the_guest() -> None:
    def boom(*_: int) -> int:
        raise RuntimeError("device bug")

    cpu = X86Cpu(icount=False, port_in=boom, port_out=boom, inta=lambda: -1)
    try:
        mem = AddressSpace(cpu.uc, RAM_SIZE, bytes(0x10000), cpu.invalidate_code)
        cpu.reset()
        mem.write(0x10000, bytes([0xE6, 0x80,          # out 80h,al
                                  0x66, 0x31, 0xC0,    # xor eax,eax
                                  0xED,                # in ax,dx
                                  0xF4]))
        cs = cpu.segment("cs")
        cs.selector, cs.base = 0x1000, 0x10000
        cpu.uc.reg_write(x.UC_X86_REG_RIP, 0)
        assert cpu.run(host_deadline_ns=time.monotonic_ns() + 2_000_000_000).halted
        assert cpu.uc.reg_read(x.UC_X86_REG_RAX) == 0xFFFF  # a failed read floats high
    finally:
        cpu.close()


def test_map_changes_under_paging_leave_no_fault_behind(rig: Rig) -> None:
    # unicorn's mem_unmap walks the guest's page tables for the range it unmaps and, where
    # the walk fails, leaves CR2 and a #PF then #DF "in flight" behind; the guest's next
    # page fault would then stop the CPU silently. A loaded snapshot remaps PAM with the
    # guest's paging already on, so this is every migration of a firmware-booted guest.
    from emu.memory.address_space import PAM_OFF, PAM_RE, PAM_WE

    _paging_then(rig, bytes([0xF4, *STORE_300000, 0xF4]))
    rig.mem.write(PAGE_TABLE + 0xC0 * 4, bytes(16))  # no page maps C0000h-C3FFFh
    assert rig.run().halted  # paging on, at the first HLT
    cr2 = rig.reg("cr2")
    for mode in (PAM_OFF, PAM_RE | PAM_WE):
        rig.mem.set_pam(0xC0000, 0x4000, mode)
    assert rig.reg("cr2") == cr2
    rig.cpu.halted = False
    assert rig.run().halted
    assert rig.reg("rip") == PF_HANDLER_HALTED  # the store's #PF, delivered
    assert rig.reg("rax") == 0x300000


# -- engines made ahead (a bare migration destination) ------------------------------------------
MOVBE_EAX = bytes([0xBB]) + struct.pack("<I", 0x8000) + bytes([  # mov ebx, 8000h
    0x0F, 0x38, 0xF0, 0x03,  # movbe eax, [ebx]: qemu64's engine lacks MOVBE, max's has it
    0xF4])                   # hlt


def _run_movbe(rig: Rig) -> int | None:
    """EAX after the MOVBE, or None if the engine raised #UD for it."""
    rig.mem.write(0x8000, bytes([0x11, 0x22, 0x33, 0x44]))
    rig.flat32(MOVBE_EAX)
    result = rig.run()
    if not result.halted:  # the engine leaves emu_start after #UD: the machine resumes
        assert rig.run().halted
    if rig.reg("rip") == CODE32 + len(MOVBE_EAX):  # past its own HLT
        return rig.reg("rax") & 0xFFFFFFFF
    assert rig.vector_taken() == 6
    return None


@pytest.mark.parametrize("spare", ["qemu64", "max"])
def test_a_cpu_takes_a_spare_engine_of_its_own_model_only(spare: str) -> None:
    make_spare_engine(MODELS[spare])
    made = x86._spare_engines[MODELS[spare].engine]
    rigs = [Rig(model=MODELS["qemu64"]), Rig(model=MODELS["max"])]
    try:
        took = [r for r in rigs if r.cpu.uc is made]
        assert took == [rigs[0] if spare == "qemu64" else rigs[1]]
        assert MODELS[spare].engine not in x86._spare_engines  # taken once
        # each runs as its own model: the spare went to the CPU of its model
        assert _run_movbe(rigs[0]) is None
        assert _run_movbe(rigs[1]) == 0x11223344
    finally:
        for r in rigs:
            r.cpu.close()
