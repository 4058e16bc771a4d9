"""The CPU's state as named fields through a visitor (issue 4, "Declaration and visitors").

Names follow the Intel SDM: vol. 1 3.4 (general registers, RIP, RFLAGS), 8.1 (x87: ST(i)
relative to TOP in the status word, control/status/tag words), 10.2.3 (MXCSR), 11 (XMM);
vol. 3A 2.4-2.5 (GDTR/IDTR/LDTR/TR, control registers), 3.4.3 (segment registers and their
hidden descriptor caches), 6.8.3 (the STI / MOV SS interrupt shadow), 11.11 (MTRRs);
vol. 4 (MSR names). No engine context bytes appear: every value is a named field.

The hidden descriptor caches are kept exactly as the engine (QEMU's SegmentCache) holds
them: selector, base, limit (byte granular, already expanded) and the descriptor's
attribute bits in place (the high dword of the descriptor masked to its flags).

Loading decodes everything into a plain dict first (``visit_cpu``) and only then writes
the engine (``apply_cpu``): a failed decode leaves the CPU untouched.
"""

from __future__ import annotations

import ctypes
from functools import cache
from typing import Any

import unicorn
import unicorn.x86_const as x

from emu.cpu.helper import ENV_HFLAGS, ENV_SEGS, MSR_EFER, UCLIB, discover_layout
from emu.cpu.models import MODELS
from emu.cpu.x86 import HF_INHIBIT_IRQ, SEG_NAMES, UPDATE_HFLAGS, Segment, X86Cpu, real_mode_context
from emu.qom import Object, link, register_type
from emu.qom.visitor import DecodeError, Visitor

GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
CRS = ("cr0", "cr2", "cr3", "cr4", "cr8")
# env holds ES..GS, then LDTR and TR with the same layout, then GDTR and IDTR (base/limit
# in the same struct, selector and flags unused); measured in tests/cpu/test_state.py.
SYSTEM_SEGS = ("ldtr", "tr")
TABLES = ("gdtr", "idtr")
ALL_SEGS = (*SEG_NAMES, *SYSTEM_SEGS, *TABLES)

_MTRR_FIXED = (("ia32_mtrr_fix64k_00000", 0x250), ("ia32_mtrr_fix16k_80000", 0x258),
               ("ia32_mtrr_fix16k_a0000", 0x259),
               *((f"ia32_mtrr_fix4k_{0xC0000 + i * 0x8000:05x}", 0x268 + i) for i in range(8)))
_MTRR_VAR = tuple((f"ia32_mtrr_phys{kind}{n}", 0x200 + 2 * n + (kind == "mask"))
                  for n in range(8) for kind in ("base", "mask"))
# IA32_MTRRCAP (0FEh) is left out: a read-only description of the model, not state.
MSRS = (
    ("ia32_sysenter_cs", 0x174), ("ia32_sysenter_esp", 0x175), ("ia32_sysenter_eip", 0x176),
    ("ia32_star", 0xC0000081), ("ia32_lstar", 0xC0000082), ("ia32_cstar", 0xC0000083),
    ("ia32_fmask", 0xC0000084), ("ia32_fs_base", 0xC0000100), ("ia32_gs_base", 0xC0000101),
    ("ia32_kernel_gs_base", 0xC0000102), ("ia32_tsc_aux", 0xC0000103), ("ia32_pat", 0x277),
    ("ia32_mtrr_def_type", 0x2FF), *_MTRR_FIXED, *_MTRR_VAR,
)
ST_BYTES, XMM_BYTES = 10, 16
# the last x87 instruction and operand pointers and opcode, as FNSTENV/FXSAVE store them
FPU_POINTERS = (("fip", 64), ("fcs", 16), ("fdp", 64), ("fds", 16), ("fop", 16))
FSW_TOP_SHIFT = 11
CPU_PATH = "/machine/cpu"


@cache
def saved_msrs() -> tuple[tuple[str, int], ...]:
    """The MSRs of ``MSRS`` this engine reads and writes back, decided once per process so
    every stream it writes has the same fields."""
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    kept = []
    for name, index in MSRS:
        try:
            uc.msr_write(index, uc.msr_read(index))
        except unicorn.UcError:
            continue
        kept.append((name, index))
    return tuple(kept)


def warm_up() -> None:
    """Make the discoveries a process's first CPU and first CPU section need (the
    engine's layout, the MSRs it keeps), ahead of time: a destination does it while it
    waits for its source, so neither costs the migration."""
    discover_layout(unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64))
    saved_msrs()
    for model in MODELS.values():
        real_mode_context(model.engine)


def _reg(name: str) -> int:
    return getattr(x, f"UC_X86_REG_{name.upper()}")


def _segments(cpu: X86Cpu) -> ctypes.Array:
    return (Segment * len(ALL_SEGS)).from_address(cpu.helper.env_addr(ENV_SEGS))


def _u64_at(cpu: X86Cpu, off: int) -> ctypes.c_uint64:
    return ctypes.c_uint64.from_address(cpu.helper.env_addr(off))


def _exact(v: Visitor, name: str, value: bytes, size: int) -> bytes:
    got = v.blob(name, value, size)
    if len(got) != size:
        raise v.fail(name, f"{len(got)} bytes where the register has {size}")
    return got


# -- reading the engine ----------------------------------------------------------------
def cpu_values(cpu: X86Cpu) -> dict[str, Any]:
    """Every named CPU value as it is in the engine now, in ``visit_cpu``'s shape."""
    regs = cpu.regs
    out: dict[str, Any] = {name: regs.read(_reg(name)) for name in (*GPRS, "rip", "rflags")}
    segs = _segments(cpu)
    out["segments"] = {name: ({"base": segs[i].base, "limit": segs[i].limit} if name in TABLES
                              else {"selector": segs[i].selector & 0xFFFF,
                                    "base": segs[i].base, "limit": segs[i].limit,
                                    "flags": segs[i].flags})
                       for i, name in enumerate(ALL_SEGS)}
    out.update({name: regs.read(_reg(name)) for name in CRS})
    out["efer"] = regs.read_msr(MSR_EFER)
    out["msrs"] = {name: regs.read_msr(index) for name, index in saved_msrs()}
    out["tsc"] = cpu.read_tsc()
    out["fpu"] = _fpu_values(cpu)
    out["sse"] = {"mxcsr": regs.read(x.UC_X86_REG_MXCSR),
                  **{f"xmm{i}": regs.read_wide(x.UC_X86_REG_XMM0 + i)[:XMM_BYTES]
                     for i in range(16)}}
    out["halted"] = cpu.halted
    out["interrupt_shadow"] = bool(cpu.hflags & HF_INHIBIT_IRQ)
    out["a20"] = cpu.a20
    out["intr"] = bool(cpu.helper.p.intr)
    out["icount"] = cpu.helper.p.icount
    return out


def _fpu_values(cpu: X86Cpu) -> dict[str, Any]:
    """x87 with ST(i) in stack order; the engine's FPn registers are the physical Rn."""
    regs = cpu.regs
    out: dict[str, Any] = {name: regs.read(_reg(name)) for name in ("fpcw", "fpsw", "fptag")}
    out.update({name: regs.read(_reg(name)) for name, _ in FPU_POINTERS})
    top = (out["fpsw"] >> FSW_TOP_SHIFT) & 7
    for i in range(8):  # uc_x86_float80: the 64-bit mantissa, then sign and exponent
        out[f"st{i}"] = regs.read_wide(x.UC_X86_REG_FP0 + (top + i) % 8)[:ST_BYTES]
    return out


# -- the walk -------------------------------------------------------------------------
def visit_cpu(v: Visitor, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every named CPU value through ``v``: ``values`` (from ``cpu_values``) when saving,
    decoded when loading; returns them as a plain dict and changes nothing."""
    def get(*keys: str) -> Any:
        if values is None:
            return None
        node: Any = values
        for key in keys:
            node = node[key]
        return node

    out: dict[str, Any] = {}
    for name in (*GPRS, "rip", "rflags"):
        out[name] = v.uint(name, get(name), 64)
    out["segments"] = _visit_segments(v, get("segments"))
    for name in CRS:
        out[name] = v.uint(name, get(name), 64)
    out["efer"] = v.uint("efer", get("efer"), 64)
    v.begin_struct("msrs")
    out["msrs"] = {name: v.uint(name, get("msrs", name), 64) for name, _ in saved_msrs()}
    v.end_struct()
    out["tsc"] = v.uint("tsc", get("tsc"), 64)
    out["fpu"] = _visit_fpu(v, get("fpu"))
    out["sse"] = _visit_sse(v, get("sse"))
    out["halted"] = v.boolean("halted", get("halted"))
    out["interrupt_shadow"] = v.boolean("interrupt_shadow", get("interrupt_shadow"))
    out["a20"] = v.boolean("a20", get("a20"))
    out["intr"] = v.boolean("intr", get("intr"))
    out["icount"] = v.uint("icount", get("icount"), 64)
    if out["icount"] >= 1 << 63:  # the helper counts in an int64
        raise DecodeError(f"{CPU_PATH}/icount: {out['icount']} is past the horizon of "
                          "the instruction counter (2^63-1)")
    return out


def _visit_segments(v: Visitor, segs: dict[str, dict[str, int]] | None) -> dict[str, Any]:
    v.begin_struct("segments")
    out = {}
    for name in ALL_SEGS:
        s = segs[name] if segs is not None else {}
        v.begin_struct(name)
        keys = (("base", 64), ("limit", 32)) if name in TABLES else \
            (("selector", 16), ("base", 64), ("limit", 32), ("flags", 32))
        out[name] = {key: v.uint(key, s.get(key), bits) for key, bits in keys}
        v.end_struct()
    v.end_struct()
    return out


def _visit_fpu(v: Visitor, fpu: dict[str, Any] | None) -> dict[str, Any]:
    f = fpu or {}
    v.begin_struct("fpu")
    out: dict[str, Any] = {}
    for name in ("fpcw", "fpsw", "fptag"):
        out[name] = v.uint(name, f.get(name), 16)
    for name, bits in FPU_POINTERS:
        out[name] = v.uint(name, f.get(name), bits)
    for i in range(8):
        out[f"st{i}"] = _exact(v, f"st{i}", f.get(f"st{i}", b""), ST_BYTES)
    v.end_struct()
    return out


def _visit_sse(v: Visitor, sse: dict[str, Any] | None) -> dict[str, Any]:
    s = sse or {}
    v.begin_struct("sse")
    out: dict[str, Any] = {"mxcsr": v.uint("mxcsr", s.get("mxcsr"), 32)}
    for i in range(16):
        out[f"xmm{i}"] = _exact(v, f"xmm{i}", s.get(f"xmm{i}", b""), XMM_BYTES)
    v.end_struct()
    return out


# -- writing the engine ---------------------------------------------------------------
def apply_cpu(cpu: X86Cpu, values: dict[str, Any]) -> None:
    """Write values produced by ``visit_cpu`` into the engine."""
    regs = cpu.regs
    # Paging and long mode: EFER.LME and CR4.PAE before CR0.PG; EFER is then set exactly
    # in env, since WRMSR cannot write LMA.
    regs.write_msr(MSR_EFER, values["efer"])
    _u64_at(cpu, cpu.helper.layout.msr[MSR_EFER]).value = values["efer"]
    for name in ("cr4", "cr3", "cr0", "cr2", "cr8"):
        regs.write(_reg(name), values[name])
    for name, index in saved_msrs():
        regs.write_msr(index, values["msrs"][name])
    _apply_segments(cpu, values["segments"])
    for name in (*GPRS, "rip", "rflags"):
        regs.write(_reg(name), values[name])
    _apply_fpu(cpu, values["fpu"])
    regs.write(x.UC_X86_REG_MXCSR, values["sse"]["mxcsr"])
    for i in range(16):
        regs.write_wide(x.UC_X86_REG_XMM0 + i, values["sse"][f"xmm{i}"])
    # x86_update_hflags recomputes the mode bits from CR0/CR4/EFER/segments/RFLAGS and
    # keeps the others; the shadow is one of the kept ones, so it is set afterwards.
    UPDATE_HFLAGS(ctypes.cast(UCLIB.x86_update_hflags_x86_64, ctypes.c_void_p).value)(
        cpu.helper.layout.env)
    hflags = ctypes.c_uint32.from_address(cpu.helper.env_addr(ENV_HFLAGS))
    hflags.value = (hflags.value & ~HF_INHIBIT_IRQ) | (
        HF_INHIBIT_IRQ if values["interrupt_shadow"] else 0)
    cpu.halted = values["halted"]
    cpu.set_a20(values["a20"])
    cpu.helper.p.intr = int(values["intr"])
    cpu.helper.p.icount = values["icount"]
    cpu.set_tsc(values["tsc"])  # pending until the machine's clock is restored too
    cpu.flush_tlb()
    cpu.uc.ctl_flush_tb()


def _apply_segments(cpu: X86Cpu, segments: dict[str, dict[str, int]]) -> None:
    """Descriptor caches written in place: reg_write of CS/DS/ES/SS would change only the
    selector in a 64-bit engine."""
    segs = _segments(cpu)
    for i, name in enumerate(ALL_SEGS):
        got, s = segments[name], segs[i]
        s.base, s.limit = got["base"], got["limit"]
        if name not in TABLES:
            s.selector, s.flags = got["selector"], got["flags"]


def _apply_fpu(cpu: X86Cpu, fpu: dict[str, Any]) -> None:
    regs = cpu.regs
    regs.write(x.UC_X86_REG_FPCW, fpu["fpcw"])
    regs.write(x.UC_X86_REG_FPSW, fpu["fpsw"])  # sets TOP
    top = (fpu["fpsw"] >> FSW_TOP_SHIFT) & 7
    for i in range(8):
        regs.write_wide(x.UC_X86_REG_FP0 + (top + i) % 8, fpu[f"st{i}"])
    regs.write(x.UC_X86_REG_FPTAG, fpu["fptag"])
    for name, _ in FPU_POINTERS:
        regs.write(_reg(name), fpu[name])


# -- the CPU in the object tree -------------------------------------------------------
@register_type("x86-cpu")
class CpuState(Object):
    """The CPU as an object of the machine tree (``/machine/cpu``): saved, loaded,
    shown and compared like any other object, through an imperative visit of the
    engine's registers instead of declared fields. The engine is a host binding."""

    STATE_VERSION = 1
    IMPLIED = "cpu"

    cpu = link("engine", doc="the CPU engine whose registers this object shows")

    @classmethod
    def has_state(cls) -> bool:
        return True

    @classmethod
    def visit_values(cls, v: Visitor, values: dict[str, Any] | None = None) -> dict[str, Any]:
        return visit_cpu(v, values)

    def state_values(self) -> dict[str, Any]:
        assert self.cpu is not None
        return cpu_values(self.cpu)

    def install_state(self, values: dict[str, Any]) -> None:
        assert self.cpu is not None
        apply_cpu(self.cpu, values)


def save_cpu(cpu: X86Cpu, v: Visitor) -> None:
    """The CPU into a saving visitor, as the struct "cpu"."""
    v.begin_struct("cpu")
    visit_cpu(v, cpu_values(cpu))
    v.end_struct()


def load_cpu(cpu: X86Cpu, v: Visitor) -> None:
    """Decode the struct "cpu" completely, then write it into the engine."""
    if v.saving:
        raise ValueError("load_cpu needs a loading visitor")
    v.begin_struct("cpu")
    values = visit_cpu(v)
    v.end_struct()
    apply_cpu(cpu, values)


__all__ = ["CPU_PATH", "CpuState", "apply_cpu", "cpu_values", "load_cpu", "save_cpu",
           "saved_msrs", "visit_cpu", "warm_up"]
