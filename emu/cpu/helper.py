"""ctypes binding of the C helper (cpuhelper.c) and the engine layout it needs.

The helper reaches into unicorn's CPUState/CPUX86State. Offsets are build-specific,
so they are found at start-up by writing distinctive values through the API and
searching for them, then verified (../shared/notes/unicorn-2.1.4.md, "Engine and modes").
"""

from __future__ import annotations

import ctypes
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import unicorn
import unicorn.x86_const as x
from unicorn.unicorn_py3 import unicorn as _ucmod

log = logging.getLogger(__name__)
HELPER_PATH = Path(__file__).with_name("_cpuhelper.so")
UCLIB = _ucmod.uclib

STOP_DOUBLE_FAULT = 8  # stop_reason bit: the engine stopped on a triple fault

# Offsets within CPUX86State that the notes measured and the code verifies.
ENV_REGS, ENV_EIP, ENV_EFLAGS, ENV_HFLAGS, ENV_SEGS = 0, 128, 136, 176, 184
UC_CPU_PTR = 0x1B8  # uc_struct -> CPUState*
MSR_EFER, MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_FMASK = (
    0xC0000080, 0xC0000081, 0xC0000082, 0xC0000083, 0xC0000084)
MSR_SYSENTER_CS, MSR_SYSENTER_ESP, MSR_SYSENTER_EIP = 0x174, 0x175, 0x176
MSR_TSC_AUX = 0xC0000103
EFER_SCE, EFER_LME = 1 << 0, 1 << 8  # bits any 64-bit model lets a WRMSR change


# CPUX86State around exception_next_eip (QEMU 5.0's target/i386/cpu.h, which unicorn
# 2.1.4 carries): int error_code, int exception_is_int, exception_next_eip, dr[8],
# cpu_breakpoint[4], int old_exception (the exception in flight, -1 between instructions).
EXC_BOOKKEEPING = (-8, 8)  # error_code .. exception_next_eip, relative to the latter
OLD_EXCEPTION = 8 + 8 * 8 + 4 * 8


# The patch set of pyemu's own build of unicorn 2.1.4 (emu/cpu/unicorn-patches/, built by
# `make`), which the engine names in a symbol (0005-engine-marker.patch). PyPI's stock
# build runs pyemu too, only slower: every guest store takes its slow path.
ENGINE_PATCHES = "pyemu-4"


def engine_patches() -> str | None:
    """The patch set the loaded engine was built with; None for a stock build."""
    try:
        marker = ctypes.c_char.in_dll(UCLIB, "pyemu_engine_patches")
    except ValueError:
        return None
    return ctypes.string_at(ctypes.addressof(marker)).decode(errors="replace")


def _check_engine() -> None:
    found = engine_patches()
    if found != ENGINE_PATCHES:
        what = "PyPI's stock build" if found is None else f"built with patches {found}"
        log.warning("unicorn engine: %s, not pyemu's patched one (%s): guest stores run "
                    "slowly; run 'make' to build it", what, ENGINE_PATCHES)


_check_engine()


class HelperError(RuntimeError):
    """The C helper is missing or the engine does not look like the one it was built for."""


class IntEvent(ctypes.Structure):
    """One delivery the helper started (cpuhelper.c's struct int_event)."""

    _fields_ = [("seq", ctypes.c_int64),
                *[(n, ctypes.c_int32) for n in (
                    "vector", "error_code", "is_int", "is_hw", "cpl", "pe")],
                ("cs", ctypes.c_uint32), ("ss", ctypes.c_uint32),
                *[(n, ctypes.c_uint64) for n in ("eip", "cs_base", "esp", "cr2", "eax")]]


INT_LOG_SIZE = 1024  # cpuhelper.c's ring of events


class PyemuCpu(ctypes.Structure):
    _fields_ = [
        ("uc", ctypes.c_void_p), ("cpu", ctypes.c_void_p), ("env", ctypes.c_void_p),
        *[(n, ctypes.c_int64) for n in (
            "off_eip", "off_eflags", "off_hflags", "off_segs", "off_exc_index",
            "off_exc_next_eip", "off_efer", "off_star", "off_lstar", "off_cstar",
            "off_fmask", "off_sysenter_cs", "off_sysenter_esp", "off_sysenter_eip",
            "off_regs")],
        *[(n, ctypes.c_void_p) for n in (
            "hook_add", "hook_del", "emu_stop", "reg_write", "reg_read", "do_interrupt", "hardirq",
            "raise_exc_err", "update_hflags", "inta", "py_in", "icount_blocks")],
        ("fast_port", ctypes.c_int64), ("fast_buf", ctypes.c_void_p),
        ("fast_pos", ctypes.c_int64), ("fast_end", ctypes.c_int64),
        *[(n, ctypes.c_int64) for n in (
            "const_port", "const_value", "const_until", "intr", "kick", "stop_reason",
            "icount", "icount_budget", "irqs_delivered",
            "exceptions_delivered", "watch_hook", "deadline_ns", "in_run",
            "thread_running", "off_tsc_aux", "clock_shift", "clock_base", "tsc_offset",
            "int_seq", "int_read", "int_watch")],
        ("int_log", IntEvent * INT_LOG_SIZE),
        ("lock", ctypes.c_byte * 40), ("cond", ctypes.c_byte * 48), ("thread", ctypes.c_ulong),
        ("loop_hook", ctypes.c_void_p), ("exit_word_fn", ctypes.c_void_p),
        ("exit_word", ctypes.c_void_p),
    ]


INTA_FN = ctypes.CFUNCTYPE(ctypes.c_int)


@dataclass
class Layout:
    cpu: int
    env: int
    halted: int  # offset in CPUState
    exc_index: int  # offset in CPUState
    msr: dict[int, int]  # MSR -> offset in env
    exc_next_eip: int


def _ns(host_ns: int | None) -> int:
    return host_ns if host_ns is not None else (1 << 63) - 1


def _load() -> ctypes.CDLL:
    if not HELPER_PATH.exists():
        raise HelperError(f"{HELPER_PATH} is missing: run 'make' to build the C helper")
    lib = ctypes.CDLL(str(HELPER_PATH))
    lib.pyemu_cpu_attach.argtypes = [ctypes.POINTER(PyemuCpu), ctypes.c_int]
    ref = ctypes.POINTER(PyemuCpu)
    for name, args in (("pyemu_deadline_start", []), ("pyemu_deadline_stop", []),
                       ("pyemu_deadline_set", [ctypes.c_int64]),
                       ("pyemu_run_begin", [ctypes.c_int64]), ("pyemu_run_end", []),
                       ("pyemu_kick", []), ("pyemu_watch", [ctypes.c_int]),
                       ("pyemu_set_intr", [ctypes.c_int])):
        getattr(lib, name).argtypes = [ref, *args]
    lib.pyemu_struct_size.restype = ctypes.c_int64
    lib.pyemu_mr_cache_attach.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
    lib.pyemu_mr_cache_set.argtypes = [ctypes.c_void_p, ctypes.c_int,
                                       ctypes.POINTER(ctypes.c_uint64)]
    for name in ("pyemu_mr_cache_suspend", "pyemu_mr_cache_detach"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    if lib.pyemu_struct_size() != ctypes.sizeof(PyemuCpu):
        raise HelperError("the C helper's struct does not match emu/cpu/helper.py: rebuild it")
    return lib


def _u64(addr: int) -> int:
    return struct.unpack("<Q", ctypes.string_at(addr, 8))[0]


def _find(blob: bytes, value: int, step: int = 8) -> list[int]:
    needle = struct.pack("<Q", value)
    hits, i = [], blob.find(needle)
    while i >= 0:
        if i % step == 0:
            hits.append(i)
        i = blob.find(needle, i + 1)
    return hits


def _handle(uc: unicorn.Uc) -> int:
    return ctypes.cast(uc._uch, ctypes.c_void_p).value or 0


class _Msr(ctypes.Structure):
    _fields_ = [("rid", ctypes.c_uint32), ("value", ctypes.c_uint64)]  # uc_x86_msr


class Registers:
    """The engine's uc_reg_read/uc_reg_write called through ctypes with buffers made
    once. unicorn's Python methods choose a ctypes type on every call (~10 us each);
    a CPU section reads or writes ~100 registers, inside a migration's downtime.
    ``wide`` registers (XMM, x87's 80-bit ST) are read and written as 16 raw bytes,
    little-endian: the engine's uc_x86_xmm and uc_x86_float80 layouts."""

    def __init__(self, uc: unicorn.Uc) -> None:
        self._uc = uc  # keeps the engine alive as long as its handle is used here
        self._h = ctypes.c_void_p(_handle(uc))
        self._read_fn, self._write_fn = UCLIB.uc_reg_read, UCLIB.uc_reg_write
        self._u64 = ctypes.c_uint64()
        self._wide = (ctypes.c_uint8 * 16)()
        self._msr = _Msr()

    def _call(self, fn: object, reg: int, buf: ctypes._CData) -> None:
        err = fn(self._h, reg, ctypes.byref(buf))
        if err:
            raise unicorn.UcError(err)

    def read(self, reg: int) -> int:
        """A register of up to 64 bits (the engine writes only its own width)."""
        self._u64.value = 0
        self._call(self._read_fn, reg, self._u64)
        return self._u64.value

    def write(self, reg: int, value: int) -> None:
        self._u64.value = value
        self._call(self._write_fn, reg, self._u64)

    def read_wide(self, reg: int) -> bytes:
        ctypes.memset(self._wide, 0, 16)
        self._call(self._read_fn, reg, self._wide)
        return bytes(self._wide)

    def write_wide(self, reg: int, raw: bytes) -> None:
        ctypes.memmove(self._wide, raw.ljust(16, b"\0"), 16)
        self._call(self._write_fn, reg, self._wide)

    def read_msr(self, index: int) -> int:
        self._msr.rid, self._msr.value = index, 0
        self._call(self._read_fn, x.UC_X86_REG_MSR, self._msr)
        return self._msr.value

    def write_msr(self, index: int, value: int) -> None:
        self._msr.rid, self._msr.value = index, value
        self._call(self._write_fn, x.UC_X86_REG_MSR, self._msr)


MARKS = tuple(0x5EED0001CAFE0000 + i for i in range(4))


@dataclass(frozen=True)
class _Offsets:
    """Where the fields are, relative to CPUState: the same in every engine of one
    library, so found once per process."""

    env: int
    halted: int
    exc_index: int
    msr: dict[int, int]
    exc_next_eip: int


_offsets: _Offsets | None = None


def discover_layout(uc: unicorn.Uc) -> Layout:
    """Locate CPUState, env and the fields the helper touches in this engine (the
    offsets found by the first engine of the process, checked against this one)."""
    global _offsets
    uch = _handle(uc)
    for reg, v in zip((x.UC_X86_REG_RAX, x.UC_X86_REG_RCX, x.UC_X86_REG_RDX,
                       x.UC_X86_REG_RBX), MARKS, strict=True):
        uc.reg_write(reg, v)  # the first register access also creates the CPU
    cpu = _u64(uch + UC_CPU_PTR)
    if _offsets is None or ctypes.string_at(cpu + _offsets.env, 32) != struct.pack(
            "<4Q", *MARKS):
        _offsets = _find_offsets(uc, uch, cpu)
    o = _offsets
    return Layout(cpu=cpu, env=cpu + o.env, halted=o.halted, exc_index=o.exc_index,
                  msr=dict(o.msr), exc_next_eip=o.exc_next_eip)


def _find_offsets(uc: unicorn.Uc, uch: int, cpu: int) -> _Offsets:
    blob = ctypes.string_at(cpu, 0xA000)
    hits = _find(blob, MARKS[0])
    env = next((cpu + h for h in hits if blob[h + 8:h + 32] == struct.pack("<3Q", *MARKS[1:])),
               None)
    if env is None:
        raise HelperError("cannot find the CPU registers inside unicorn's CPUState")
    back = [h for h in _find(blob[: env - cpu], uch)]
    if not back:
        raise HelperError("cannot find CPUState's pointer back to the engine")
    off_uc = back[-1]
    uc.reg_write(x.UC_X86_REG_RIP, 0x1234_5678)
    if _u64(env + ENV_EIP) != 0x1234_5678:
        raise HelperError("env->eip is not where the helper expects it")
    msr = {}
    env_blob_len = 0x4000
    for n, reg in enumerate((MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_FMASK, MSR_SYSENTER_CS,
                             MSR_SYSENTER_ESP, MSR_SYSENTER_EIP, MSR_TSC_AUX)):
        v = 0x0023_0010_0000_0000 + (n + 1) * 0x1111 if reg == MSR_STAR else 0xFFFF8000_00001000 + n
        if reg in (MSR_FMASK, MSR_SYSENTER_CS):
            v = 0x7ED0 + n
        if reg == MSR_TSC_AUX:  # RDTSCP returns its low 32 bits
            v = 0x5EC0_7A00 + n
        uc.msr_write(reg, v)
        found = _find(ctypes.string_at(env, env_blob_len), v)
        if len(found) != 1:
            raise HelperError(f"cannot locate MSR {reg:#x} in env")
        msr[reg] = found[0]
        uc.msr_write(reg, 0)
    # EFER: the word that changes by exactly the bit toggled, for two different bits
    # (SCE, then LME). One bit alone is not enough: the scan reaches past env into the
    # host's heap, where a reference count going from 2 to 3 also differs by bit 0.
    candidates = None
    for bit in (EFER_SCE, EFER_LME):
        before = ctypes.string_at(env, env_blob_len)
        uc.msr_write(MSR_EFER, uc.msr_read(MSR_EFER) ^ bit)
        after = ctypes.string_at(env, env_blob_len)
        uc.msr_write(MSR_EFER, uc.msr_read(MSR_EFER) ^ bit)
        changed = {i for i in range(0, env_blob_len, 8)
                   if struct.unpack_from("<Q", before, i)[0] ^ struct.unpack_from(
                       "<Q", after, i)[0] == bit}
        candidates = changed if candidates is None else candidates & changed
    if candidates is None or len(candidates) != 1:
        raise HelperError("cannot locate EFER in env")
    msr[MSR_EFER] = candidates.pop()
    exc_next_eip = _find_exc_next_eip(env - cpu)
    if ctypes.c_int32.from_address(env + exc_next_eip + OLD_EXCEPTION).value != -1:
        raise HelperError("cannot locate old_exception in env")
    return _Offsets(env=env - cpu, halted=off_uc - 16, exc_index=off_uc - 8, msr=msr,
                    exc_next_eip=exc_next_eip)


def _find_mapping_slot(uc: unicorn.Uc) -> int:
    """Offset in uc_struct of the engine's region-lookup function pointer."""
    hits = _find(ctypes.string_at(_handle(uc), 0x1000), _sym("find_memory_mapping_x86_64"))
    if len(hits) != 1:
        raise HelperError("cannot locate uc_struct's memory_mapping pointer")
    return hits[0]


def _sym(name: str) -> int:
    return ctypes.cast(getattr(UCLIB, name), ctypes.c_void_p).value or 0


def _optional_sym(name: str) -> int | None:
    """The address of ``name`` in the engine, None if this build has no such symbol."""
    try:
        return _sym(name)
    except AttributeError:
        return None


def _find_exc_next_eip(env_off: int) -> int:
    """Run ``int 0x42`` in a scratch engine and see where its next-EIP is kept."""
    found: list[set[int]] = []
    for addr in (0x12345, 0x23456):
        uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
        uc.mem_map(0x10000, 0x20000)
        uc.mem_write(addr, b"\xcd\x42\xf4")
        uc.reg_write(x.UC_X86_REG_RAX, 0)
        cpu = _u64(_handle(uc) + UC_CPU_PTR)
        hits: set[int] = set()

        def hook(uc_: unicorn.Uc, intno: int, _ud: object, cpu: int = cpu,
                 hits: set[int] = hits, addr: int = addr) -> None:
            hits.update(_find(ctypes.string_at(cpu + env_off, 0x4000), addr + 2))
            uc_.emu_stop()

        uc.hook_add(unicorn.UC_HOOK_INTR, hook)
        uc.emu_start(addr, addr + 3)
        found.append(hits - {ENV_EIP})
    common = found[0] & found[1]
    if len(common) != 1:
        raise HelperError("cannot locate exception_next_eip in env")
    return common.pop()


class Helper:
    """The C helper bound to one engine."""

    def __init__(self, uc: unicorn.Uc, inta: callable, port_in: object, icount: bool) -> None:
        self.lib = _load()
        self.layout = lay = discover_layout(uc)
        p = self.p = PyemuCpu()
        p.uc, p.cpu, p.env = _handle(uc), lay.cpu, lay.env
        p.off_eip, p.off_eflags, p.off_hflags = ENV_EIP, ENV_EFLAGS, ENV_HFLAGS
        p.off_segs = ENV_SEGS
        p.off_regs = ENV_REGS
        p.off_exc_index, p.off_exc_next_eip = lay.exc_index, lay.exc_next_eip
        p.off_efer, p.off_star, p.off_lstar = (lay.msr[MSR_EFER], lay.msr[MSR_STAR],
                                              lay.msr[MSR_LSTAR])
        p.off_cstar, p.off_fmask = lay.msr[MSR_CSTAR], lay.msr[MSR_FMASK]
        p.off_sysenter_cs = lay.msr[MSR_SYSENTER_CS]
        p.off_sysenter_esp = lay.msr[MSR_SYSENTER_ESP]
        p.off_sysenter_eip = lay.msr[MSR_SYSENTER_EIP]
        p.off_tsc_aux = lay.msr[MSR_TSC_AUX]
        p.clock_shift = -1
        sym = _sym
        p.hook_add, p.hook_del = sym("uc_hook_add"), sym("uc_hook_del")
        p.emu_stop = sym("uc_emu_stop")
        p.reg_write, p.reg_read = sym("uc_reg_write"), sym("uc_reg_read")
        p.do_interrupt = sym("x86_cpu_do_interrupt_x86_64")
        p.hardirq = sym("do_interrupt_x86_hardirq_x86_64")
        p.raise_exc_err = sym("raise_exception_err_x86_64")
        p.update_hflags = sym("x86_update_hflags_x86_64")
        p.icount_blocks = _optional_sym("uc_pyemu_icount")  # 0006 and later only
        if (loop_hook := _optional_sym("uc_pyemu_loop_hook")) is not None:  # 0008 on
            p.loop_hook, p.exit_word_fn = loop_hook, _sym("uc_pyemu_exit_word")
        self._inta = INTA_FN(inta)  # kept alive: C holds the pointer
        p.inta = ctypes.cast(self._inta, ctypes.c_void_p).value
        self._port_in = port_in  # a ctypes callback: kept alive while C holds it
        p.py_in = ctypes.cast(port_in, ctypes.c_void_p).value
        p.fast_port = p.const_port = -1
        self.ref = ctypes.byref(p)
        if self.lib.pyemu_cpu_attach(self.ref, int(icount)) != 0:
            raise HelperError("unicorn refused the helper's hooks")
        if self.lib.pyemu_deadline_start(self.ref) != 0:
            raise HelperError("cannot start the deadline thread")
        self._mr_attached = self._attach_mr_cache(uc)

    def _attach_mr_cache(self, uc: unicorn.Uc) -> bool:
        """The cache is only a speed-up: without it (an engine whose layout we do not
        recognise, or every slot taken) stores are slower, nothing else changes."""
        try:
            slot = _find_mapping_slot(uc)
        except HelperError as e:
            log.warning("memory-region cache off: %s", e)
            return False
        return self.lib.pyemu_mr_cache_attach(self.p.uc, slot,
                                              _sym("find_memory_mapping_x86_64")) == 0

    # memory-region cache (cpuhelper.c): suspended while the engine's map changes
    def regions_changing(self) -> None:
        self.lib.pyemu_mr_cache_suspend(self.p.uc)

    def regions_changed(self, ranges: list[tuple[int, int]]) -> None:
        """The engine's mapped ranges now, as [start, end) pairs."""
        flat = (ctypes.c_uint64 * (2 * len(ranges)))(*[v for r in ranges for v in r])
        self.lib.pyemu_mr_cache_set(self.p.uc, len(ranges), flat)

    # CPUState fields
    @property
    def halted(self) -> bool:
        return ctypes.c_uint32.from_address(self.layout.cpu + self.layout.halted).value != 0

    @halted.setter
    def halted(self, value: bool) -> None:
        ctypes.c_uint32.from_address(self.layout.cpu + self.layout.halted).value = int(value)

    def env_u32(self, off: int) -> int:
        return ctypes.c_uint32.from_address(self.layout.env + off).value

    def env_addr(self, off: int) -> int:
        return self.layout.env + off

    def exception_bookkeeping(self) -> tuple[bytes, bytes]:
        """The engine's record of exception delivery: error code, next EIP and the
        exception in flight. uc_mem_unmap with paging on walks the guest's page tables
        for the physical range it unmaps and records the failed walks there as a #PF, then
        a #DF in flight, which turns the guest's next page fault into a silent halt."""
        base = self.layout.env + self.layout.exc_next_eip
        lo, hi = EXC_BOOKKEEPING
        return (ctypes.string_at(base + lo, hi - lo),
                ctypes.string_at(base + OLD_EXCEPTION, 4))

    def restore_exception_bookkeeping(self, saved: tuple[bytes, bytes]) -> None:
        base = self.layout.env + self.layout.exc_next_eip
        ctypes.memmove(base + EXC_BOOKKEEPING[0], saved[0], len(saved[0]))
        ctypes.memmove(base + OLD_EXCEPTION, saved[1], len(saved[1]))

    def deadline(self, host_ns: int | None) -> None:
        """Move the end of the running slice to host monotonic time ``host_ns``."""
        self.lib.pyemu_deadline_set(self.ref, _ns(host_ns))

    def run_begin(self, host_ns: int | None) -> None:
        self.lib.pyemu_run_begin(self.ref, _ns(host_ns))

    def run_end(self) -> None:
        self.lib.pyemu_run_end(self.ref)

    def kick(self) -> None:
        self.lib.pyemu_kick(self.ref)

    def int_events(self, since: int) -> tuple[list[IntEvent], int]:
        """Copies of the deliveries recorded from number ``since`` on that the ring still
        holds, and how many of them it no longer holds."""
        p = self.p
        first = max(since, 0, p.int_seq - INT_LOG_SIZE)
        events = [IntEvent.from_buffer_copy(p.int_log[seq % INT_LOG_SIZE])
                  for seq in range(first, p.int_seq)]
        return events, first - since

    def close(self) -> None:
        """Stop the deadline thread; idempotent. It must run before the struct the thread
        waits on is freed, so an engine dropped without close() is closed here too."""
        if getattr(self, "_mr_attached", False):
            self._mr_attached = False
            self.lib.pyemu_mr_cache_detach(self.p.uc)
        if getattr(self, "ref", None) is not None and self.p.thread_running:
            self.lib.pyemu_deadline_stop(self.ref)

    __del__ = close
