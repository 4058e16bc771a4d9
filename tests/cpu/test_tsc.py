"""The virtual time-stamp counter: RDTSC/RDTSCP read the machine's virtual clock at 1 GHz.

It is exact in icount mode, stands still while the clock is stopped, starts at 0 after a
reset and continues from the saved value after a load (the loaded value waits until the
next slice, when the clock has been restored too). Guest code is hand-assembled.
References: Intel SDM vol. 2B RDTSC, RDTSCP; vol. 3A 17.17.
"""

from __future__ import annotations

import time

from emu.clock import Clock
from emu.cpu.models import DEFAULT_MODEL, MODELS, CpuModel
from emu.cpu.state import load_cpu, save_cpu
from emu.cpu.x86 import X86Cpu
from emu.memory.address_space import AddressSpace
from emu.qom.visitor import BinaryReader, BinaryWriter

RAM_SIZE = 2 << 20
CODE32, OUT = 0x4000, 0x8000
MSR_TSC_AUX = 0xC0000103
# Each pass stores one counter reading at [edi] and halts; INSNS_PER_PASS instructions.
GUEST = bytes.fromhex("".join((
    "0f31",      # loop: rdtsc
    "8907",      # mov [edi], eax
    "895704",    # mov [edi+4], edx
    "83c708",    # add edi, 8
    "f4",        # hlt
    "ebf3",      # jmp loop
)))
RDTSCP_GUEST = bytes.fromhex("".join((
    "0f01f9",    # loop: rdtscp
    "8907",      # mov [edi], eax
    "895704",    # mov [edi+4], edx
    "894f08",    # mov [edi+8], ecx
    "83c710",    # add edi, 16
    "f4",        # hlt
    "ebef",      # jmp loop
)))
INSNS_PER_PASS = 6
SHIFT = 3


class Rig:
    """A CPU on a clock of the test's choosing, running GUEST in flat 32-bit mode."""

    def __init__(self, clock: Clock, code: bytes = GUEST,
                 model: CpuModel = MODELS[DEFAULT_MODEL]) -> None:
        self.clock = clock
        self.cpu = X86Cpu(icount=clock.icount, port_in=lambda port, size: 0,
                          port_out=lambda port, size, value: None, inta=lambda: -1, clock=clock,
                          model=model)
        clock.insn_count = lambda: self.cpu.insn_count
        self.mem = AddressSpace(self.cpu.uc, RAM_SIZE, bytes(0x10000), self.cpu.invalidate_code)
        self.mem.fill_unassigned()
        self.cpu.reset()
        self.mem.write(CODE32, code)
        self.cpu.enter_flat32(CODE32, rdi=OUT)
        self.passes = 0

    def step(self) -> None:
        """One pass of the guest: from where it halted to the next HLT."""
        self.cpu.halted = False
        result = self.cpu.run(budget=1000) if self.clock.icount else self.cpu.run()
        assert result.halted, result
        self.passes += 1

    def reading(self, i: int, stride: int = 8) -> int:
        return int.from_bytes(self.mem.read(OUT + i * stride, 8), "little")

    def readings(self) -> list[int]:
        return [self.reading(i) for i in range(self.passes)]


def new_rig(rigs: list[Rig], clock: Clock, code: bytes = GUEST,
            model: CpuModel = MODELS[DEFAULT_MODEL]) -> Rig:
    rigs.append(Rig(clock, code, model))
    return rigs[-1]


def running_clock(shift: int | None) -> Clock:
    clock = Clock(shift)
    clock.start()
    return clock


def test_icount_tsc_is_exact_and_identical_across_runs(rigs: list[Rig]) -> None:
    runs = []
    for _ in range(2):
        r = new_rig(rigs, running_clock(SHIFT))
        for _ in range(5):
            r.step()
        r.clock.warp_to(r.clock.now_ns() + 1_000_000)  # as the machine skips idle time
        r.step()
        runs.append(r.readings())
    assert runs[0] == runs[1]
    tsc = runs[0]
    assert tsc[0] == 1 << SHIFT  # reset to 0; the first instruction is the RDTSC itself
    assert [b - a for a, b in zip(tsc, tsc[1:], strict=False)] == (
        [INSNS_PER_PASS << SHIFT] * 4 + [(INSNS_PER_PASS << SHIFT) + 1_000_000])
    assert rigs[-1].cpu.read_tsc() == rigs[-1].clock.now_ns()


def test_rdtscp_reads_the_same_counter_and_tsc_aux(rigs: list[Rig]) -> None:
    r = new_rig(rigs, running_clock(SHIFT), RDTSCP_GUEST, MODELS["max"])  # qemu64 has none
    r.cpu.uc.msr_write(MSR_TSC_AUX, 0x1_2345_6789)
    r.step()
    r.step()
    assert r.reading(0, 16) == 1 << SHIFT
    assert r.reading(1, 16) == (1 + 7) << SHIFT
    assert int.from_bytes(r.mem.read(OUT + 8, 4), "little") == 0x2345_6789


def test_save_load_continues_from_the_saved_value(rigs: list[Rig]) -> None:
    a = new_rig(rigs, running_clock(SHIFT))
    for _ in range(3):
        a.step()
    a.clock.warp_to(7_000_000_123)
    saved = a.cpu.read_tsc()
    assert saved == 7_000_000_123
    w = BinaryWriter()
    save_cpu(a.cpu, w)

    b = new_rig(rigs, running_clock(SHIFT))
    b.mem.ram[:] = a.mem.ram
    load_cpu(b.cpu, BinaryReader(bytes(w.out)))
    assert b.cpu.read_tsc() == saved  # pending until the next slice
    w2 = BinaryWriter()
    save_cpu(b.cpu, w2)
    assert bytes(w2.out) == bytes(w.out)  # a save before any slice keeps the loaded TSC
    b.clock.set_now(123_456)  # the stream restores the clock after the CPU
    b.passes = a.passes
    b.step()
    assert b.reading(3) == saved + (2 << SHIFT)  # the JMP after the HLT, then RDTSC


def test_realtime_load_continues_from_the_saved_value(rigs: list[Rig]) -> None:
    r = new_rig(rigs, running_clock(None))
    saved = 50_000_000_000  # 50 s: neither 0 nor the host counter
    r.cpu.set_tsc(saved)
    r.step()
    assert saved < r.reading(0) < saved + 1_000_000_000


def test_realtime_tsc_stands_still_while_the_clock_is_stopped(rigs: list[Rig]) -> None:
    r = new_rig(rigs, running_clock(None))
    r.step()
    r.clock.stop()
    frozen = r.cpu.read_tsc()
    assert r.reading(0) <= frozen
    time.sleep(0.2)
    assert r.cpu.read_tsc() == frozen
    r.clock.start()
    r.step()
    assert 0 < r.reading(1) - r.reading(0) < 100_000_000  # far less than the 200 ms stopped


def test_reset_puts_the_tsc_to_zero(rigs: list[Rig]) -> None:
    r = new_rig(rigs, running_clock(SHIFT))
    r.step()
    r.clock.warp_to(9_000_000_000)
    r.step()
    assert r.reading(1) > 9_000_000_000
    r.cpu.reset()
    assert r.cpu.read_tsc() == 0
    r.cpu.enter_flat32(CODE32, rdi=OUT)
    r.passes = 0
    r.step()
    assert r.reading(0) == 1 << SHIFT
