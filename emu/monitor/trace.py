"""QEMU's per-block ``-d`` items: ``in_asm``, ``exec`` and ``cpu`` (accel/tcg/cpu-exec.c's
log_cpu_exec, translator.c's "IN:" dump with disas/capstone.c's layout).

They need a block hook, which costs a call into Python at every block the guest runs, so
the hook exists only while one of them is asked for (``attach`` does nothing otherwise):
a machine without them runs at full speed. What each prints:
- ``in_asm``: the first time a block runs with given code bytes (the engine translates it
  then; code rewritten later is shown again), QEMU's "IN:" block of capstone AT&T lines.
- ``exec``: every block run, "Trace 0: HOST [CS_BASE/PC/FLAGS/CFLAGS]" as QEMU, with the
  translation flags computed as QEMU does (hflags and the EFLAGS bits it keeps). pyemu
  has no host code pointer nor compile flags to show: both are printed as 0. Blocks the
  engine chains are logged too, as QEMU's do under ``-d nochain``.
- ``cpu``: the registers before every block run, with the lazy-flags line (emu/cpu/dump.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import unicorn

from emu.cpu.dump import dump_state
from emu.monitor.memory import AccessError, code_bits, disassemble, read_linear

if TYPE_CHECKING:
    from emu.machine.machine import Machine

in_asm_log = logging.getLogger("emu.trace.in_asm")
exec_log = logging.getLogger("emu.trace.exec")
cpu_log = logging.getLogger("emu.trace.cpu")
# EFLAGS bits a translation block's flags carry (IOPL, TF, RF, VM, AC)
TB_EFLAGS = (3 << 12) | (1 << 8) | (1 << 16) | (1 << 17) | (1 << 18)
SEPARATOR = "-" * 16


class BlockTracer:
    """The block hook of one machine, with what ``in_asm`` has shown."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.in_asm = in_asm_log.isEnabledFor(logging.DEBUG)
        self.exec = exec_log.isEnabledFor(logging.DEBUG)
        self.cpu = cpu_log.isEnabledFor(logging.DEBUG)
        self.shown: dict[int, bytes] = {}  # block address -> code bytes shown for it

    @property
    def wanted(self) -> bool:
        return self.in_asm or self.exec or self.cpu

    def on_block(self, _uc: unicorn.Uc, address: int, size: int, _ud: object) -> None:
        try:
            if self.in_asm:
                self._log_in_asm(address, size)
            if self.exec:
                self._log_exec(address)
            if self.cpu:
                cpu_log.debug("%s", "\n".join(dump_state(self.machine.cpu, ccop=True)))
        except Exception:  # an exception must not cross the engine's C frame
            logging.getLogger("emu.cpu").exception("-d block trace failed at %#x", address)

    def _log_in_asm(self, address: int, size: int) -> None:
        try:
            code = read_linear(self.machine, address, size)
        except AccessError:
            code = b""
        if self.shown.get(address) == code:
            return
        self.shown[address] = code
        in_asm_log.debug("%s", "\n".join([SEPARATOR, "IN: ", *block_lines(
            code, address, code_bits(self.machine)), ""]))

    def _log_exec(self, address: int) -> None:
        cpu = self.machine.cpu
        flags = (cpu.hflags | (cpu.rflags & TB_EFLAGS)) & 0xFFFFFFFF
        cs_base = cpu.segment("cs").base
        exec_log.debug("Trace 0: 0x%016x [%016x/%016x/%08x/%08x] ", 0, cs_base, address,
                       flags, 0)


def block_lines(code: bytes, address: int, bits: int) -> list[str]:
    """A block's instructions as QEMU's capstone lines (memory.disassemble's layout)."""
    import capstone

    mode = {16: capstone.CS_MODE_16, 32: capstone.CS_MODE_32, 64: capstone.CS_MODE_64}[bits]
    count = sum(1 for _ in capstone.Cs(capstone.CS_ARCH_X86, mode).disasm_lite(code, address))
    if count == 0:
        return [f"0x{address:08x}:  (no code readable)"]

    def read(addr: int, length: int) -> bytes:
        if addr - address >= len(code):
            raise AccessError(addr)  # the block ends here
        return code[addr - address:addr - address + length]

    return disassemble(read, address, count, bits).split("\n")


def attach(machine: Machine) -> BlockTracer | None:
    """Hook every block if ``in_asm``, ``exec`` or ``cpu`` is on; else nothing."""
    tracer = BlockTracer(machine)
    if not tracer.wanted:
        return None
    machine.cpu.uc.hook_add(unicorn.UC_HOOK_BLOCK, tracer.on_block)
    return tracer
