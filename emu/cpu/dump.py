"""The CPU's registers as QEMU prints them (target/i386/cpu-dump.c, x86_cpu_dump_state):
``info registers`` (with the x87/SSE part) and ``-d cpu`` (with the lazy-flags part).

The 64-bit form (RAX.., 16-digit segment bases) is used while CS is a 64-bit code
segment, the 64-bit GDT/IDT/CR/DR lines while long mode is active (EFER.LMA), as QEMU
decides. The lazy-flags fields (CCS/CCD/CCO) are read from the engine's env, which is
QEMU's CPUX86State: cc_dst, cc_src, cc_src2, cc_op follow EFLAGS (helper.ENV_EFLAGS).
"""

from __future__ import annotations

import ctypes

import unicorn.x86_const as x

from emu.cpu.helper import ENV_EFLAGS, ENV_SEGS
from emu.cpu.x86 import Segment, X86Cpu

# QEMU's hflags bits (target/i386/cpu.h)
HF_CPL_MASK, HF_INHIBIT_IRQ_SHIFT, HF_PE_MASK = 3, 3, 1 << 7
HF_LMA_MASK, HF_CS64_MASK, HF_SMM_SHIFT = 1 << 14, 1 << 15, 19
# descriptor-cache flag bits
DESC_A, DESC_RW, DESC_CE, DESC_CS, DESC_S, DESC_P = (1 << 8, 1 << 9, 1 << 10, 1 << 11,
                                                     1 << 12, 1 << 15)
DESC_DPL_SHIFT, DESC_L, DESC_B = 13, 1 << 21, 1 << 22
# EFLAGS letters in QEMU's order: DF OF SF ZF AF PF CF
EFLAGS_LETTERS = ((1 << 10, "D"), (1 << 11, "O"), (1 << 7, "S"), (1 << 6, "Z"), (1 << 4, "A"),
                  (1 << 2, "P"), (1 << 0, "C"))
SEG_LINES = ("ES", "CS", "SS", "DS", "FS", "GS", "LDT", "TR")  # env order; GDT, IDT follow
SYS_TYPES = (
    ("Reserved", "TSS16-avl", "LDT", "TSS16-busy", "CallGate16", "TaskGate", "IntGate16",
     "TrapGate16", "Reserved", "TSS32-avl", "Reserved", "TSS32-busy", "CallGate32",
     "Reserved", "IntGate32", "TrapGate32"),
    ("<hiword>", "Reserved", "LDT", "Reserved", "Reserved", "Reserved", "Reserved",
     "Reserved", "Reserved", "TSS64-avl", "Reserved", "TSS64-busy", "CallGate64",
     "Reserved", "IntGate64", "TrapGate64"),
)
# QEMU's CCOp enum (target/i386/cpu.h of the engine's QEMU 5.0): DYNAMIC, EFLAGS, then
# byte/word/long/quad groups, then the single ones.
CC_OP_NAMES = ("DYNAMIC", "EFLAGS", *(f"{op}{s}" for op in (
    "MUL", "ADD", "ADC", "SUB", "SBB", "LOGIC", "INC", "DEC", "SHL", "SAR", "BMILG")
    for s in "BWLQ"), "ADCX", "ADOX", "ADCOX", "CLR", "POPCNT")
CC_DST, CC_SRC, CC_OP = ENV_EFLAGS + 8, ENV_EFLAGS + 16, ENV_EFLAGS + 32
GPR32 = ("EAX", "EBX", "ECX", "EDX", "ESI", "EDI", "EBP", "ESP")
GPR64 = ("RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "RSP", "R8", "R9", "R10", "R11",
         "R12", "R13", "R14", "R15")


def _reg(cpu: X86Cpu, name: str) -> int:
    return cpu.regs.read(getattr(x, f"UC_X86_REG_{name}"))


def _caches(cpu: X86Cpu) -> ctypes.Array:
    """ES..GS, LDTR, TR, GDTR, IDTR as the engine holds them."""
    return (Segment * 10).from_address(cpu.helper.env_addr(ENV_SEGS))


def _gpr_lines(cpu: X86Cpu, wide: bool) -> list[str]:
    if wide:
        return [" ".join(f"{n:<3}={_reg(cpu, n):016x}" for n in GPR64[i:i + 4])
                for i in range(0, 16, 4)]
    return [" ".join(f"{n}={_reg(cpu, n) & 0xFFFFFFFF:08x}" for n in GPR32[i:i + 4])
            for i in (0, 4)]


def _ip_line(cpu: X86Cpu, wide: bool) -> str:
    hflags, fl = cpu.hflags, cpu.rflags & 0xFFFFFFFF
    letters = "".join(c if fl & bit else "-" for bit, c in EFLAGS_LETTERS)
    rip = _reg(cpu, "RIP")
    ip = f"RIP={rip:016x} RFL" if wide else f"EIP={rip & 0xFFFFFFFF:08x} EFL"
    return (f"{ip}={fl:08x} [{letters}] CPL={hflags & HF_CPL_MASK} "
            f"II={(hflags >> HF_INHIBIT_IRQ_SHIFT) & 1} A20={int(cpu.a20)} "
            f"SMM={(hflags >> HF_SMM_SHIFT) & 1} HLT={int(cpu.halted)}")


def _descriptor(flags: int, hflags: int) -> str:
    """What QEMU appends to a present segment in protected mode."""
    text = f" DPL={(flags >> DESC_DPL_SHIFT) & 3} "
    if not flags & DESC_S:
        return text + SYS_TYPES[bool(hflags & HF_LMA_MASK)][(flags >> 8) & 15]
    if flags & DESC_CS:
        kind = "CS64" if flags & DESC_L else "CS32" if flags & DESC_B else "CS16"
        bits = ("C" if flags & DESC_CE else "-") + ("R" if flags & DESC_RW else "-")
    else:
        kind = "DS  " if flags & DESC_B or hflags & HF_LMA_MASK else "DS16"
        bits = ("E" if flags & DESC_CE else "-") + ("W" if flags & DESC_RW else "-")
    return f"{text}{kind} [{bits}{'A' if flags & DESC_A else '-'}]"


def _segment_line(name: str, s: Segment, hflags: int, wide: bool) -> str:
    base = f"{s.base:016x}" if wide else f"{s.base & 0xFFFFFFFF:08x}"
    line = f"{name:<3}={s.selector & 0xFFFF:04x} {base} {s.limit:08x} {s.flags & 0x00FFFF00:08x}"
    if hflags & HF_PE_MASK and s.flags & DESC_P:
        line += _descriptor(s.flags, hflags)
    return line


def _system_lines(cpu: X86Cpu, lma: bool) -> list[str]:
    caches = _caches(cpu)
    gdt, idt = caches[8], caches[9]
    crs = [_reg(cpu, f"CR{i}") for i in (0, 2, 3, 4)]
    drs = [_reg(cpu, f"DR{i}") for i in range(8)]
    if lma:
        lines = [f"GDT=     {gdt.base:016x} {gdt.limit:08x}",
                 f"IDT=     {idt.base:016x} {idt.limit:08x}",
                 f"CR0={crs[0] & 0xFFFFFFFF:08x} CR2={crs[1]:016x} CR3={crs[2]:016x} "
                 f"CR4={crs[3] & 0xFFFFFFFF:08x}"]
    else:
        lines = [f"GDT=     {gdt.base & 0xFFFFFFFF:08x} {gdt.limit:08x}",
                 f"IDT=     {idt.base & 0xFFFFFFFF:08x} {idt.limit:08x}",
                 "CR0={:08x} CR2={:08x} CR3={:08x} CR4={:08x}".format(
                     *(c & 0xFFFFFFFF for c in crs))]
    # 16 digits in both forms: QEMU's TARGET_FMT_lx in qemu-system-x86_64
    lines.append("".join(f"DR{i}={drs[i]:016x} " for i in range(4)))
    lines.append(f"DR6={drs[6]:016x} DR7={drs[7]:016x}")
    return lines


def _ccop_line(cpu: X86Cpu, wide: bool) -> str:
    src = ctypes.c_uint64.from_address(cpu.helper.env_addr(CC_SRC)).value
    dst = ctypes.c_uint64.from_address(cpu.helper.env_addr(CC_DST)).value
    op = cpu.helper.env_u32(CC_OP)
    name = CC_OP_NAMES[op] if op < len(CC_OP_NAMES) else f"[{op}]"
    if wide:
        return f"CCS={src:016x} CCD={dst:016x} CCO={name}"
    return f"CCS={src & 0xFFFFFFFF:08x} CCD={dst & 0xFFFFFFFF:08x} CCO={name}"


def _fpu_lines(cpu: X86Cpu, wide: bool) -> list[str]:
    fsw, tag = _reg(cpu, "FPSW"), _reg(cpu, "FPTAG")
    # FTW as QEMU shows it: one bit per register, set when it holds a value
    ftw = sum(1 << i for i in range(8) if (tag >> (2 * i)) & 3 != 3)
    lines = [f"FCW={_reg(cpu, 'FPCW'):04x} FSW={fsw:04x} [ST={(fsw >> 11) & 7}] FTW={ftw:02x} "
             f"MXCSR={_reg(cpu, 'MXCSR'):08x}"]
    regs = []
    for i in range(8):
        mant, sexp = cpu.uc.reg_read(x.UC_X86_REG_FP0 + i)
        regs.append(f"FPR{i}={mant:016x} {sexp:04x}")
    lines += [f"{regs[i]} {regs[i + 1]}" for i in range(0, 8, 2)]
    xmm = []
    for i in range(16 if wide else 8):
        v = cpu.uc.reg_read(x.UC_X86_REG_XMM0 + i)
        xmm.append(f"XMM{i:02d}={v >> 64:016x} {v & ((1 << 64) - 1):016x}")
    lines += [f"{xmm[i]} {xmm[i + 1]}" for i in range(0, len(xmm), 2)]
    return lines


def dump_state(cpu: X86Cpu, *, fpu: bool = False, ccop: bool = False) -> list[str]:
    """x86_cpu_dump_state's lines: ``fpu`` as ``info registers`` (CPU_DUMP_FPU), ``ccop``
    as ``-d cpu`` (CPU_DUMP_CCOP)."""
    hflags = cpu.hflags
    wide, lma = bool(hflags & HF_CS64_MASK), bool(hflags & HF_LMA_MASK)
    lines = _gpr_lines(cpu, wide) + [_ip_line(cpu, wide)]
    caches = _caches(cpu)
    lines += [_segment_line(name, caches[i], hflags, wide) for i, name in enumerate(SEG_LINES)]
    lines += _system_lines(cpu, lma)
    if ccop:
        lines.append(_ccop_line(cpu, wide))
    lines.append(f"EFER={cpu.regs.read_msr(0xC0000080):016x}")
    if fpu:
        lines += _fpu_lines(cpu, wide)
    return lines
