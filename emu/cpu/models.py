"""CPU models: what CPUID tells the guest, as QEMU presents its models under TCG.

``-cpu qemu64`` (the default) is QEMU's default model as ``qemu-system-x86_64 -M pc
-accel tcg`` shows it (QEMU 7.2; its leaves are recorded in tests/cpu/test_cpuid.py):
an AMD-vendor CPU of family 15, model 107, stepping 1 with SSE2, SSE3, CX16, NX,
SYSCALL, LAHF_LM and SVM (and no VME: QEMU turns it off under TCG). No Intel model:
Linux treats every Intel CPU it does not know as vulnerable to Meltdown and turns on
page-table isolation, which an emulator pays for on every system call. ``-cpu max``
adds what unicorn's TCG runs (and tests/cpu/test_cpuid.py shows it running): the SSE4,
AES, BMI and ADX families, RDTSCP, FSGSBASE, 1 GiB pages, with the identity QEMU's max
has under TCG; its engine (unicorn's EPYC-Rome) also runs all that the Haswell engine
of pyemu before -cpu ran.

Where pyemu differs from QEMU, on purpose, for every model:
- no APIC and no x2APIC bit: the board has no local APIC (../shared/notes/unicorn-2.1.4.md);
- the TSC leaves 15h/16h (a 1 GHz TSC; basic level raised to 16h) and 80000007h EDX
  bit 8 (invariant TSC): pyemu's TSC is virtual time at a fixed rate;
- no RDRAND/RDSEED: they read the host's entropy, which -icount runs cannot reproduce.

The engine runs the matching unicorn model (``engine``), so an instruction a model does
not advertise faults as it does in QEMU. References: Intel SDM vol. 2A CPUID; AMD APM
vol. 3, appendix E (CPUID); QEMU target/i386/cpu.c (builtin_x86_defs, cpu_x86_cpuid).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import unicorn.x86_const as x

Regs = tuple[int, int, int, int]  # EAX, EBX, ECX, EDX

TSC_HZ = 1_000_000_000  # the virtual TSC counts virtual nanoseconds
TSC_LEVEL = 0x16

# CPUID 1 EDX (Intel SDM vol. 2A table 3-11)
FPU, VME, DE, PSE, TSC, MSR, PAE, MCE, CX8, APIC = (1 << b for b in (0, 1, 2, 3, 4, 5, 6, 7,
                                                                      8, 9))
SEP, MTRR, PGE, MCA, CMOV, PAT, PSE36, CLFLUSH = (1 << b for b in (11, 12, 13, 14, 15, 16, 17,
                                                                    19))
MMX, FXSR, SSE, SSE2 = (1 << b for b in (23, 24, 25, 26))
# CPUID 1 ECX
SSE3, PCLMULQDQ, SSSE3, CX16, SSE41, SSE42, X2APIC, MOVBE, POPCNT, AES, RDRAND, HYPERVISOR = (
    1 << b for b in (0, 1, 9, 13, 19, 20, 21, 22, 23, 25, 30, 31))
# CPUID 7.0 EBX
FSGSBASE, BMI1, BMI2, RDSEED, ADX, CLFLUSHOPT = (1 << b for b in (0, 3, 8, 18, 19, 23))
# CPUID 80000001h EDX (AMD): bits 0-9, 12-17, 23 and 24 repeat leaf 1's
AMD_ALIASES = 0x0183F3FF
SYSCALL, NX, MMXEXT, PDPE1GB, RDTSCP, LM = (1 << b for b in (11, 20, 22, 26, 27, 29))
# CPUID 80000001h ECX
LAHF_LM, SVM, ABM, SSE4A = (1 << b for b in (0, 2, 5, 6))
INVARIANT_TSC = 1 << 8  # CPUID 80000007h EDX

PPRO = FPU | DE | PSE | TSC | MSR | MCE | CX8 | PGE | CMOV | PAT | FXSR | MMX | SSE | SSE2 | \
    PAE | SEP | APIC  # QEMU's PPRO_FEATURES

# IA32_MISC_ENABLE (MSR 1A0h) at reset, as QEMU sets it: bit 0, fast string operations
# enabled (an Intel guest that finds it clear avoids `rep movs`/`rep stos`).
MSR_MISC_ENABLE, MISC_ENABLE_RESET = 0x1A0, 1


@dataclass(frozen=True)
class CpuModel:
    """A -cpu model: identity and feature words as QEMU defines them."""

    name: str
    doc: str
    engine: int  # unicorn's model, whose TCG decides what the instructions do
    brand: str
    edx1: int  # CPUID 1 EDX
    ecx1: int  # CPUID 1 ECX
    ebx7: int = 0  # CPUID 7.0 EBX
    edx_ext: int = 0  # CPUID 80000001h EDX beyond leaf 1's aliases
    ecx_ext: int = 0  # CPUID 80000001h ECX
    vendor: str = "AuthenticAMD"
    family: int = 15
    model: int = 107
    stepping: int = 1
    level: int = 0xD
    xlevel: int = 0x8000000A

    @property
    def signature(self) -> int:
        """CPUID 1 EAX (and EDX at reset): family, model, stepping as QEMU encodes them."""
        fam, mod = self.family, self.model
        eax = min(fam, 0xF) << 8 | (mod & 0xF) << 4 | (mod >> 4) << 16 | self.stepping
        return eax | (max(fam - 0xF, 0) << 20)


MODELS = {m.name: m for m in (
    CpuModel("qemu64", "QEMU's default: AMD family 15, SSE3, CX16, NX, SVM (default)",
             x.UC_CPU_X86_QEMU64, "QEMU Virtual CPU version 2.5+",
             edx1=PPRO | MTRR | CLFLUSH | MCA | PSE36, ecx1=SSE3 | CX16,
             edx_ext=LM | SYSCALL | NX, ecx_ext=LAHF_LM | SVM),
    CpuModel("max", "qemu64 with all that unicorn's TCG runs: SSE4, AES, BMI, RDTSCP, "
             "FSGSBASE, 1 GiB pages", x.UC_CPU_X86_EPYC_ROME, "QEMU TCG CPU version 2.5+",
             edx1=PPRO | MTRR | CLFLUSH | MCA | PSE36,
             ecx1=SSE3 | PCLMULQDQ | SSSE3 | CX16 | SSE41 | SSE42 | MOVBE | POPCNT | AES,
             ebx7=FSGSBASE | BMI1 | BMI2 | ADX | CLFLUSHOPT,
             edx_ext=LM | SYSCALL | NX | MMXEXT | PDPE1GB | RDTSCP,
             ecx_ext=LAHF_LM | SVM | ABM | SSE4A),
)}
DEFAULT_MODEL = "qemu64"
# Models QEMU has that need an accelerator pyemu does not have.
KVM_ONLY = ("host",)


def find_model(name: str) -> CpuModel:
    """The model a -cpu name selects; ValueError saying why there is none."""
    if name not in MODELS:
        raise ValueError(f"unknown CPU model '{name}' ('-cpu help' lists them)")
    return MODELS[name]


def models_help() -> str:
    """-cpu help: the models and their meaning."""
    return "Available CPUs:\n" + "".join(f"  {m.name:<10}{m.doc}\n" for m in MODELS.values())


def _words(text: str) -> tuple[int, ...]:
    """A string as CPUID returns it: little-endian 32-bit words."""
    raw = text.encode().ljust((len(text) + 3) // 4 * 4, b"\0")
    return tuple(int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4))


class CpuidTable:
    """The answers to CPUID for one model, as QEMU's cpu_x86_cpuid gives them under
    TCG (pc-i440fx-7.2), with pyemu's differences (module docstring)."""

    # leaves whose answer depends on ECX; the others ignore it
    SUBLEAF_LEAVES = (4, 7, 0xB, 0xD)

    def __init__(self, model: CpuModel) -> None:
        self.model = m = model
        self.level = max(m.level, TSC_LEVEL)
        vendor = _words(m.vendor)  # EBX, EDX, ECX order
        ident = (vendor[0], vendor[2], vendor[1])
        sig = m.signature
        ecx1 = (m.ecx1 | HYPERVISOR) & ~(X2APIC | RDRAND)
        edx1 = m.edx1 & ~APIC
        leaves: dict[tuple[int, int], Regs] = {
            (0, 0): (self.level, *ident),
            (1, 0): (sig, 0x800, ecx1, edx1),  # EBX: CLFLUSH line of 8 quadwords, APIC ID 0
            (5, 0): (0, 0, 3, 0),  # MONITOR/MWAIT leaf, as QEMU fills it
            (7, 0): (0, m.ebx7 & ~RDSEED, 0, 0),
            # topology: one thread per core, one core per package
            (0xB, 0): (0, 1, 0x100, 0), (0xB, 1): (0, 1, 0x201, 0),
            (0x15, 0): (1, 1, TSC_HZ, 0),  # TSC = crystal Hz * EBX / EAX
            (0x16, 0): (TSC_HZ // 10**6, TSC_HZ // 10**6, 100, 0),  # base, max, bus MHz
            (0x40000000, 0): (0x40000001, *_words("TCGTCGTCGTCG")),
            (0x80000000, 0): (m.xlevel, *ident),
            (0x80000001, 0): (sig, 0, m.ecx_ext, (edx1 & AMD_ALIASES) | m.edx_ext),
            (0x80000005, 0): (0x01FF01FF, 0x01FF01FF, 0x40020140, 0x40020140),  # L1 caches
            (0x80000006, 0): (0, 0x42004200, 0x02008140, 0x00808140),  # L2 and L3
            (0x80000007, 0): (0, 0, 0, INVARIANT_TSC),
            (0x80000008, 0): (0x3028, 0, 0, 0),  # 40 physical, 48 virtual address bits
        }
        brand = _words(m.brand.ljust(48, "\0"))
        for i in range(3):
            leaves[(0x80000002 + i, 0)] = brand[4 * i:4 * i + 4]  # type: ignore[assignment]
        if m.ecx_ext & SVM:
            leaves[(0x8000000A, 0)] = (1, 0x10, 0, 0)  # SVM revision 1, 16 ASIDs
        self.leaves = leaves

    def lookup(self, leaf: int, sub: int) -> Regs:
        """What CPUID answers for EAX=leaf, ECX=sub. A leaf past the limit of its range
        answers as the highest basic leaf, as QEMU does (Intel SDM vol. 2A, CPUID)."""
        if leaf >= 0xC0000000:
            limit = 0  # no Centaur range
        elif leaf >= 0x80000000:
            limit = self.model.xlevel
        elif leaf >= 0x40000000:
            limit = 0x40000001  # the hypervisor range
        else:
            limit = self.level
        if leaf > limit:
            leaf = self.level
        if leaf == 0xB and sub > 1:
            return (0, 0, sub & 0xFF, 0)  # no further topology level
        key = (leaf, sub if leaf in self.SUBLEAF_LEAVES else 0)
        return self.leaves.get(key, (0, 0, 0, 0))


@functools.cache
def cpuid_table(model: CpuModel) -> CpuidTable:
    """The model's table, made once per process (each machine's CPU asks at its build;
    the table is never changed after)."""
    return CpuidTable(model)
