"""The x86 CPU: one 64-bit unicorn engine, reset, run slices, port I/O and CPUID.

Intel SDM vol. 3A 9.1.4 (first instruction at F000:FFF0 with CS.base FFFF0000 after
reset), 9.1.1 (register state after reset: IDTR limit 3FFh, EDX = family/model), 17.17
(the TSC: zero after reset). What CPUID answers is the CPU model's (models.py).
The TSC is virtual: the machine's virtual time in ns (a 1 GHz counter) plus an offset,
read by the C helper on RDTSC/RDTSCP.
The engine quirks this follows are in ../shared/notes/unicorn-2.1.4.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import unicorn
import unicorn.x86_const as x

from emu.clock import Clock
from emu.cpu.helper import (
    ENV_HFLAGS,
    ENV_SEGS,
    STOP_DOUBLE_FAULT,
    UCLIB,
    Helper,
    IntEvent,
    Registers,
)
from emu.cpu.models import (
    DEFAULT_MODEL,
    MISC_ENABLE_RESET,
    MODELS,
    MSR_MISC_ENABLE,
    CpuModel,
    cpuid_table,
)

log = logging.getLogger("emu.cpu")
int_log = logging.getLogger("emu.cpu.int")  # -d int
TRIPLE_FAULT_HISTORY = 8  # deliveries shown when a triple fault ends a slice
PF_VECTOR = 14

# emu_start's "until" argument, ignored: exits are enabled with an empty set, because
# unicorn otherwise translates until-1 through the guest's page tables at every stop,
# which clobbers CR2 and turns the next #PF into a #DF.
NEVER = 0
IF_FLAG = 1 << 9
SEG_NAMES = ("es", "cs", "ss", "ds", "fs", "gs")
HF_INHIBIT_IRQ = 1 << 3

IN_CB = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                         ctypes.c_void_p)
OUT_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint32,
                          ctypes.c_void_p)
CPUID_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
HOOK_ADD = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                            ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64,
                            ctypes.c_uint64, ctypes.c_int)
SET_A20 = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int)

UPDATE_HFLAGS = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
# The engine's RAM offset (ram_addr_t) of a host address in a pointer-mapped RAM block,
# and QEMU's invalidation of the translations made from a range of such offsets.
RAM_ADDR_FROM_HOST = UCLIB.qemu_ram_addr_from_host_x86_64
RAM_ADDR_FROM_HOST.restype = ctypes.c_uint64
RAM_ADDR_FROM_HOST.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
TB_INVALIDATE_RANGE = UCLIB.tb_invalidate_phys_range_x86_64
TB_INVALIDATE_RANGE.restype = None
TB_INVALIDATE_RANGE.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]
RAM_ADDR_INVALID = (1 << 64) - 1
# pyemu's engine only (patch 0007): the migration dirty log, one byte per RAM page.
DIRTY_LOG = getattr(UCLIB, "uc_pyemu_dirty_log", None)
if DIRTY_LOG is not None:
    DIRTY_LOG.restype = None
    DIRTY_LOG.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
PAGE = 0x1000
# Descriptor-cache flags of flat 4 GiB ring-0 segments (granular, 32-bit, present).
CODE32_FLAGS, DATA32_FLAGS = 0x00CF9A00, 0x00CF9300
CS_LONG = 1 << 21  # descriptor L bit: 64-bit code, where CS.base is ignored
CR0_PE, CR0_ET, CR0_PG = 1, 0x10, 1 << 31

U64 = (1 << 64) - 1


class Segment(ctypes.Structure):
    """QEMU's SegmentCache: the selector and its hidden descriptor cache."""

    _fields_ = [("selector", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("base", ctypes.c_uint64), ("limit", ctypes.c_uint32),
                ("flags", ctypes.c_uint32)]


@dataclass
class RunResult:
    """Why one run slice ended."""

    halted: bool = False
    triple_fault: bool = False
    error: str | None = None


# Engines made ahead of need, one per engine CPU model (``make_spare_engine``).
_spare_engines: dict[int, unicorn.Uc] = {}


def _new_engine(model: CpuModel) -> unicorn.Uc:
    """A fresh engine running ``model``, initialized (the engine builds its CPU, memory
    and translator lazily, at the first call that needs them: the exits set here)."""
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    uc.ctl_set_cpu_model(model.engine)  # before anything creates the CPU
    uc.ctl_exits_enabled(True)
    uc.ctl_set_exits([])
    return uc


def make_spare_engine(model: CpuModel) -> None:
    """Make an engine of ``model`` now, for the next X86Cpu of that model to take: a bare
    destination does it while it waits, so that the machine its stream describes is
    built without the engine's initialization (1-6 ms on a busy host) in between the
    source's description and the answer the source waits for."""
    if model.engine not in _spare_engines:
        _spare_engines[model.engine] = _new_engine(model)


class X86Cpu:
    """The machine's CPU. Owned by the machine thread; ``kick()`` is safe from any thread."""

    def __init__(self, *, icount: bool, port_in: Callable[[int, int], int],
                 port_out: Callable[[int, int, int], None], inta: Callable[[], int],
                 clock: Clock | None = None, model: CpuModel = MODELS[DEFAULT_MODEL]) -> None:
        """``clock`` is the machine's virtual clock, which the TSC follows; a CPU on its
        own (tests, offline tools) gets a running clock of its own (1 ns per instruction
        in icount mode). ``model``: what CPUID says and the engine runs (-cpu)."""
        spare = _spare_engines.pop(model.engine, None)
        self.uc = spare if spare is not None else _new_engine(model)
        self.icount = icount
        self.model = model
        self._cpuid = cpuid_table(model)
        self._port_in, self._port_out = port_in, port_out
        self._inta_fn = inta
        self.helper = Helper(self.uc, self._inta, IN_CB(self._on_in), icount)
        self.regs = Registers(self.uc)
        self._batching = False
        self._watch_memory_map()
        self._window: bytes | None = None
        self._hooks: list[object] = []
        self._add_insn_hook(OUT_CB(self._on_out), x.UC_X86_INS_OUT)
        self._add_insn_hook(CPUID_CB(self._on_cpuid), x.UC_X86_INS_CPUID)
        self._reset_ctx = real_mode_context(model.engine)
        self._segs = (Segment * 6).from_address(self.helper.env_addr(ENV_SEGS))
        self.a20 = True  # the engine's own a20_mask starts all ones
        if clock is None:
            clock = Clock(0 if icount else None)
            clock.insn_count = lambda p=self.helper.p: p.icount  # no cycle through self
            clock.start()
        assert clock.icount == icount
        self.clock = clock
        # A TSC value set while the clock may not be final yet (reset, or a load before
        # the snapshot's clock is restored); settle_tsc() turns it into the offset before
        # time moves on, and reads return it until then.
        self._tsc_pending: int | None = 0
        self._int_logged = 0  # deliveries up to this number have been through -d int

    # -- hooks -----------------------------------------------------------------
    def _add_insn_hook(self, cb: object, insn: int) -> None:
        self._hooks.append(cb)  # ctypes callbacks must outlive the engine's use of them
        add = HOOK_ADD(ctypes.cast(UCLIB.uc_hook_add, ctypes.c_void_p).value)
        handle = ctypes.c_size_t()
        err = add(self.helper.p.uc, ctypes.byref(handle), unicorn.UC_HOOK_INSN,
                  ctypes.cast(cb, ctypes.c_void_p), None, 1, 0, insn)
        if err:
            raise RuntimeError(f"unicorn refused an instruction hook: error {err}")

    def _inta(self) -> int:
        try:
            return self._inta_fn()
        except Exception:  # an exception must not cross the C frame
            log.exception("interrupt acknowledge failed")
            return -1

    def _on_in(self, _uc: int, port: int, size: int, _ud: int) -> int:
        try:
            return self._port_in(port, size)
        except Exception:
            log.exception("IN from port %#x failed", port)
            return (1 << (8 * size)) - 1

    def _on_out(self, _uc: int, port: int, size: int, value: int, _ud: int) -> None:
        try:
            self._port_out(port, size, value)
        except Exception:
            log.exception("OUT to port %#x failed", port)

    def _on_cpuid(self, _uc: int, _ud: int) -> int:
        leaf = self.uc.reg_read(x.UC_X86_REG_EAX) & 0xFFFFFFFF
        sub = self.uc.reg_read(x.UC_X86_REG_ECX) & 0xFFFFFFFF
        for reg, v in zip((x.UC_X86_REG_RAX, x.UC_X86_REG_RBX, x.UC_X86_REG_RCX,
                           x.UC_X86_REG_RDX), self._cpuid.lookup(leaf, sub), strict=True):
            self.uc.reg_write(reg, v)
        return 1  # skip the engine's own CPUID: ours hides the APIC

    def _watch_memory_map(self) -> None:
        """Keep the helper's memory-region cache in step with the engine's map: every
        call that changes the map suspends the cache and hands over the new ranges."""
        for name in ("mem_map", "mem_map_ptr", "mem_unmap", "mem_protect", "mmio_map"):
            setattr(self.uc, name, self._map_changer(getattr(self.uc, name)))
        self._regions_changed()

    @contextlib.contextmanager
    def map_batch(self) -> Iterator[None]:
        """Map changes made inside take effect in the helper's cache once, at the end
        (building a machine, installing a snapshot's devices); CR2 and the exception
        bookkeeping stay as they were before the batch, as for a single change."""
        cr2 = self.uc.reg_read(x.UC_X86_REG_CR2)
        kept = self.helper.exception_bookkeeping()
        self._batching = True
        self.helper.regions_changing()
        try:
            yield
        finally:
            self._batching = False
            self._regions_changed()
            self.helper.restore_exception_bookkeeping(kept)
            self.uc.reg_write(x.UC_X86_REG_CR2, cr2)

    def _map_changer(self, method: Callable[..., None]) -> Callable[..., None]:
        def changed(*args: object, **kwargs: object) -> None:
            if self._batching:
                method(*args, **kwargs)
                return
            # The engine's map calls may leave CR2 and the exception bookkeeping as if
            # the guest had faulted (helper.exception_bookkeeping); the guest did not.
            cr2 = self.uc.reg_read(x.UC_X86_REG_CR2)
            kept = self.helper.exception_bookkeeping()
            self.helper.regions_changing()
            try:
                method(*args, **kwargs)
            finally:
                self._regions_changed()
                self.helper.restore_exception_bookkeeping(kept)
                self.uc.reg_write(x.UC_X86_REG_CR2, cr2)
        return changed

    def _regions_changed(self) -> None:
        self.helper.regions_changed([(lo, hi + 1) for lo, hi, _ in self.uc.mem_regions()])

    # -- control -----------------------------------------------------------------
    def kick(self) -> None:
        """Make the CPU leave its current (or next) slice promptly; any thread."""
        self.helper.kick()

    def request_stop(self) -> None:
        """From an I/O callback: end the slice so the machine can act (reset, exit)."""
        self.uc.emu_stop()

    def pio_window(self, port: int, data: bytes, pos: int, end: int) -> None:
        """Serve 16/32-bit reads of ``port`` from data[pos:end] in C; the read that would
        reach ``end`` still goes to the device, which ends its block there."""
        p = self.helper.p
        self._window = data  # the C side points into this object: keep it alive
        p.fast_buf = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
        p.fast_pos, p.fast_end, p.fast_port = pos, end, port

    def pio_window_take(self, port: int) -> int | None:
        """Close the window on ``port``: the position reads reached, or None if none."""
        p = self.helper.p
        if p.fast_port != port:
            return None
        p.fast_port = -1
        self._window = None
        return p.fast_pos

    def port_constant(self, port: int, value: int, until_ns: int) -> None:
        """Answer byte reads of ``port`` with ``value`` in C until virtual time
        ``until_ns``; a port of -1 answers nothing."""
        p = self.helper.p
        p.const_port, p.const_value, p.const_until = port, value, until_ns

    def set_budget(self, insns: int) -> None:
        """icount: end the running slice after ``insns`` more instructions."""
        self.helper.p.icount_budget = self.helper.p.icount + insns

    def set_intr(self, level: bool) -> None:
        """The INTR line; the C helper delivers at the next block boundary once IF=1
        and no STI/MOV SS shadow is in force."""
        self.helper.lib.pyemu_set_intr(self.helper.ref, int(level))

    def set_a20(self, enabled: bool) -> None:
        fn = SET_A20(ctypes.cast(UCLIB.x86_cpu_set_a20_x86_64, ctypes.c_void_p).value)
        fn(self.helper.layout.cpu, int(enabled))
        self.a20 = bool(enabled)  # env's a20_mask has no API to read it back

    @property
    def halted(self) -> bool:
        return self.helper.halted

    @halted.setter
    def halted(self, value: bool) -> None:
        self.helper.halted = value

    def irq_deliverable(self) -> bool:
        return bool(self.helper.p.intr) and bool(self.rflags & IF_FLAG)

    @property
    def insn_count(self) -> int:
        return self.helper.p.icount

    def read_tsc(self) -> int:
        """The guest's time-stamp counter now (between slices)."""
        if self._tsc_pending is not None:
            return self._tsc_pending
        return (self.clock.now_ns() + self.helper.p.tsc_offset) & U64

    def set_tsc(self, value: int) -> None:
        """Make the TSC read ``value`` from the next settle_tsc() on, i.e. before the next
        slice (WRMSR 10h's effect; the guest's own WRMSR 10h does not reach here:
        unicorn 2.1.4 refuses RDMSR/WRMSR instruction hooks)."""
        self._tsc_pending = value & U64

    def settle_tsc(self) -> None:
        """Turn a pending TSC value into the offset from the clock as it is now. The
        machine calls this once the clock is final and before time moves on (a slice,
        or idle time that passes with the CPU halted)."""
        if self._tsc_pending is not None:
            offset = (self._tsc_pending - self.clock.now_ns()) & U64
            self.helper.p.tsc_offset = offset - (1 << 64) if offset >> 63 else offset
            self._tsc_pending = None

    def reset(self) -> None:
        """Power-on/INIT state: real mode at F000:FFF0 with CS.base FFFF0000, TSC 0."""
        self.set_tsc(0)
        self.uc.context_restore(self._reset_ctx)
        cs = self._segs[1]
        cs.selector, cs.base, cs.limit = 0xF000, 0xFFFF0000, 0xFFFF
        self.uc.reg_write(x.UC_X86_REG_RIP, 0xFFF0)
        self._reset_as_qemu()
        self.uc.reg_write(x.UC_X86_REG_RDX, self.model.signature)  # as CPUID 1 EAX
        self.uc.msr_write(MSR_MISC_ENABLE, MISC_ENABLE_RESET)
        self.halted = False
        self.set_a20(True)
        self.flush_tlb()

    def _reset_as_qemu(self) -> None:
        """What the engine's fresh context lacks of the power-on state (SDM Vol. 3
        §9.1.1, Table 9-1, as QEMU's x86_cpu_reset sets it): CR0 with CD, NW and ET,
        descriptor tables and LDT/TR with 64 KiB limits (LDT a present LDT, TR a busy
        TSS), FCW 037Fh, every x87 register empty, MXCSR 1F80h."""
        self.uc.reg_write(x.UC_X86_REG_CR0, 0x60000010)
        self.uc.reg_write(x.UC_X86_REG_GDTR, (0, 0, 0xFFFF, 0))
        self.uc.reg_write(x.UC_X86_REG_IDTR, (0, 0, 0xFFFF, 0))
        self.uc.reg_write(x.UC_X86_REG_LDTR, (0, 0, 0xFFFF, 0x8200))
        self.uc.reg_write(x.UC_X86_REG_TR, (0, 0, 0xFFFF, 0x8B00))
        self.uc.reg_write(x.UC_X86_REG_FPCW, 0x037F)
        self.uc.reg_write(x.UC_X86_REG_FPTAG, 0xFFFF)  # every x87 register empty
        self.uc.reg_write(x.UC_X86_REG_MXCSR, 0x1F80)

    def enter_flat32(self, eip: int, *, code_sel: int = 0x08, data_sel: int = 0x10,
                     gdt: tuple[int, int] | None = None, idt: tuple[int, int] | None = None,
                     **regs: int) -> None:
        """Flat 32-bit protected mode, paging off, IF=0: the Multiboot entry state, and
        with ``code_sel``/``data_sel`` and a ``gdt`` (base, limit) that of Linux's 32-bit
        boot protocol."""
        self.uc.reg_write(x.UC_X86_REG_CR0, CR0_PE | CR0_ET)
        for reg, table in ((x.UC_X86_REG_GDTR, gdt), (x.UC_X86_REG_IDTR, idt)):
            if table is not None:
                self.uc.reg_write(reg, (0, table[0], table[1], 0))
        for i, seg in enumerate(self._segs):
            code = SEG_NAMES[i] == "cs"
            seg.selector = code_sel if code else data_sel
            seg.base, seg.limit = 0, 0xFFFFFFFF
            seg.flags = CODE32_FLAGS if code else DATA32_FLAGS
        UPDATE_HFLAGS(ctypes.cast(UCLIB.x86_update_hflags_x86_64, ctypes.c_void_p).value)(
            self.helper.layout.env)
        self.uc.reg_write(x.UC_X86_REG_RFLAGS, 2)
        for name, value in regs.items():
            self.uc.reg_write(getattr(x, f"UC_X86_REG_{name.upper()}"), value)
        self.uc.reg_write(x.UC_X86_REG_RIP, eip)
        self.flush_tlb()

    def flush_tlb(self) -> None:
        self.uc.ctl(unicorn.UC_CTL_TLB_FLUSH, unicorn.UC_CTL_IO_WRITE)

    def invalidate_code(self, start: int, end: int) -> None:
        """Drop translated code for guest-physical [start, end) after a write from Python.
        The engine's range removal takes *virtual* addresses through the current page
        tables, so with paging on the only exact choice is to drop all translations."""
        if end <= start:
            return
        if self.uc.reg_read(x.UC_X86_REG_CR0) & CR0_PG:
            self.uc.ctl_flush_tb()
        else:
            self.uc.ctl_remove_cache(start, end)

    @property
    def has_dirty_log(self) -> bool:
        """The engine keeps a migration dirty log (pyemu's build, patch 0007)."""
        return DIRTY_LOG is not None

    def dirty_log(self, host: int, length: int, byte_map: int | None) -> None:
        """Start or restart (``byte_map``: the address of a byte per page, which the
        engine sets at the first store to that page) or stop (None) the engine's log of
        the RAM at host addresses [host, host+length). Restarting sends every store to
        the range back through the slow path that marks it: clear the map first.
        On the machine thread, with the CPU stopped."""
        uch = ctypes.cast(self.uc._uch, ctypes.c_void_p).value
        DIRTY_LOG(uch, host, length, byte_map)

    def invalidate_ram(self, host: int, length: int) -> None:
        """Drop translated code made from the RAM at host addresses [host, host+length)
        after a write from Python (DMA, loaders), as QEMU does for DMA: only the
        translations on those pages (tb_invalidate_phys_range on the engine's RAM offsets,
        which it finds from the host address), not the whole cache as invalidate_code
        must with paging on. RAM that is not mapped now (a shadow segment showing ROM)
        has no translations to drop."""
        if length <= 0:
            return
        uch = ctypes.cast(self.uc._uch, ctypes.c_void_p).value
        first = RAM_ADDR_FROM_HOST(uch, host)
        if first != RAM_ADDR_INVALID and RAM_ADDR_FROM_HOST(uch, host + length - 1) \
                == first + length - 1:
            TB_INVALIDATE_RANGE(uch, first, first + length)
            return
        end = host + length
        while host < end:  # across RAM blocks: page by page
            step = min(end, (host | (PAGE - 1)) + 1) - host
            start = RAM_ADDR_FROM_HOST(uch, host)
            if start != RAM_ADDR_INVALID:
                TB_INVALIDATE_RANGE(uch, start, start + step)
            host += step

    def run(self, *, host_deadline_ns: int | None = None, budget: int | None = None,
            count: int = 0) -> RunResult:
        """Run until the deadline (realtime) or for ``budget`` instructions (icount);
        ``count``: at most that many instructions (the engine's exact count)."""
        p = self.helper.p
        p.stop_reason = 0
        p.clock_shift, p.clock_base = self.clock.time_base()
        self.settle_tsc()
        rip = self.regs.read(x.UC_X86_REG_RIP)
        if self.icount:
            p.icount_budget = p.icount + (budget if budget is not None else 1 << 62)
        p.int_watch = int(int_log.isEnabledFor(logging.DEBUG))
        self.helper.run_begin(None if self.icount else host_deadline_ns)
        try:
            self.uc.emu_start(rip, NEVER, count=count)
        except unicorn.UcError as e:
            return RunResult(error=f"{e} at RIP {self.uc.reg_read(x.UC_X86_REG_RIP):#x}")
        finally:
            self.helper.run_end()
            if p.int_watch:
                self._log_interrupts()
        if self.helper.halted:
            return RunResult(halted=True)
        # #DF delivery that itself faulted is a triple fault: the engine stops silently.
        triple_fault = bool(p.stop_reason & STOP_DOUBLE_FAULT)
        if triple_fault:
            events, _ = self.helper.int_events(p.int_seq - TRIPLE_FAULT_HISTORY)
            log.warning("triple fault; the last exceptions and interrupts before it:")
            for e in events:
                for line in event_lines(e, real_mode=True):
                    log.warning("%s", line)
        return RunResult(triple_fault=triple_fault)

    def step(self) -> RunResult:
        """One instruction (a debugger's single step), the INTR line held off as QEMU's
        gdbstub does by default (SSTEP_NOIRQ). The engine honours ``count`` only in
        code translated with it: the translations are dropped before and after. A kick
        that came between slices was for the loop, which is there now: dropped."""
        p = self.helper.p
        p.kick = 0
        intr, p.intr = p.intr, 0
        self.uc.ctl_flush_tb()
        try:
            return self.run(count=1)
        finally:
            p.intr = intr
            self.uc.ctl_flush_tb()

    def _log_interrupts(self) -> None:
        """-d int: the deliveries of the slice, in protected mode as QEMU logs them."""
        events, lost = self.helper.int_events(self._int_logged)
        if lost:
            int_log.debug("%d exceptions and interrupts not logged", lost)
        for e in events:
            for line in event_lines(e):
                int_log.debug("%s", line)
        self._int_logged = self.helper.p.int_read = self.helper.p.int_seq

    # -- registers ------------------------------------------------------------------
    @property
    def rflags(self) -> int:
        return self.uc.reg_read(x.UC_X86_REG_RFLAGS)

    def segment(self, name: str) -> Segment:
        return self._segs[SEG_NAMES.index(name)]

    @property
    def hflags(self) -> int:
        return self.helper.env_u32(ENV_HFLAGS)

    def paging_registers(self) -> tuple[int, int, int, int]:
        """CR0, CR3, CR4 and EFER: what the translation of a linear address depends on
        (read through ``regs``: a tracer asks at every block)."""
        r = self.regs
        return (r.read(x.UC_X86_REG_CR0), r.read(x.UC_X86_REG_CR3),
                r.read(x.UC_X86_REG_CR4), r.read_msr(0xC0000080))

    def registers(self) -> dict[str, int]:
        """The architectural registers by name, for the monitor and tests."""
        names = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10",
                 "r11", "r12", "r13", "r14", "r15", "rip", "rflags", "cr0", "cr2", "cr3", "cr4")
        regs = {n: self.uc.reg_read(getattr(x, f"UC_X86_REG_{n.upper()}")) for n in names}
        regs["efer"] = self.uc.msr_read(0xC0000080)
        return regs

    def table(self, name: str) -> tuple[int, int]:
        """(base, limit) of ``gdtr`` or ``idtr``."""
        _, base, limit, _ = self.uc.reg_read(getattr(x, f"UC_X86_REG_{name.upper()}"))
        return base, limit

    def close(self) -> None:
        self.helper.close()


def event_lines(e: IntEvent, real_mode: bool = False) -> list[str]:
    """One delivery as QEMU's -d int prints it (target/i386/tcg/seg_helper.c,
    do_interrupt_all; x86_cpu_exec_interrupt for external ones): number, vector, error
    code, INT n or not, CPL, CS:EIP, the linear PC, SS:ESP, then CR2 for a page fault or
    else EAX; in protected mode only, as QEMU, unless ``real_mode``. CS:EIP is where the
    engine's EIP was: after the instruction for INT n (unicorn moves it on first)."""
    lines = [f"Servicing hardware INT=0x{e.vector:02x}"] if e.is_hw else []
    if e.pe or real_mode:
        tail = f"CR2={e.cr2:016x}" if e.vector == PF_VECTOR else f"env->regs[R_EAX]={e.eax:016x}"
        lines.append(
            f"{e.seq:6d}: v={e.vector:02x} e={e.error_code & 0xFFFFFFFF:04x} i={e.is_int} "
            f"cpl={e.cpl} IP={e.cs & 0xFFFF:04x}:{e.eip:016x} "
            f"pc={(e.cs_base + e.eip) & U64:016x} SP={e.ss & 0xFFFF:04x}:{e.esp:016x} {tail}")
    return lines


@functools.cache
def real_mode_context(engine_model: int) -> unicorn.UcContext:
    """A context of a fresh 16-bit engine of unicorn's model ``engine_model``: real mode,
    to restore into the 64-bit one. Made once per model and process: it is a copy of
    the engine's CPU state, and a whole engine costs milliseconds to set up."""
    uc16 = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_16)
    uc16.ctl_set_cpu_model(engine_model)
    return uc16.context_save()
