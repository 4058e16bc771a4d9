/*
 * cpuid: prints the CPU model the guest sees, one line per CPUID leaf and subleaf
 * ("cpuid LLLLLLLL.SS EAX EBX ECX EDX"), for comparison with QEMU's, and checks the
 * promises the model makes a PC guest: a vendor and brand string, no APIC (pyemu has
 * none), the basic and extended levels it reports, and IA32_MISC_ENABLE's fast-string
 * bit (Intel SDM vol. 4, MSR 1A0h bit 0) where the vendor is Intel.
 *
 * Intel SDM vol. 2A CPUID; AMD APM vol. 3, CPUID.
 */
#include "guest.h"

const char guest_name[] = "cpuid";

static void cpuid_sub(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                     : "a"(leaf), "c"(sub));
}

/* Leaves whose subleaves differ: how many of them to print. */
static uint32_t subleaves(uint32_t leaf)
{
    switch (leaf) {
    case 4: return 4;
    case 7: return 2;
    case 0xB: return 2;
    case 0xD: return 3;
    default: return 1;
    }
}

static void dump(uint32_t first, uint32_t last)
{
    uint32_t r[4];
    for (uint32_t leaf = first; leaf <= last; leaf++)
        for (uint32_t sub = 0; sub < subleaves(leaf); sub++) {
            cpuid_sub(leaf, sub, r);
            printf("cpuid %08x.%02x %08x %08x %08x %08x\n", leaf, sub, r[0], r[1], r[2], r[3]);
        }
}

int main(void)
{
    uint32_t r[4];
    char vendor[13], brand[49];
    cpuid_sub(0, 0, r);
    uint32_t level = r[0];
    ((uint32_t *)vendor)[0] = r[1];
    ((uint32_t *)vendor)[1] = r[3];
    ((uint32_t *)vendor)[2] = r[2];
    vendor[12] = 0;
    cpuid_sub(0x80000000, 0, r);
    uint32_t xlevel = r[0];
    check(level >= 1 && level < 0x100, "basic level %08x", level);
    check(xlevel >= 0x80000004 && xlevel < 0x80000100, "extended level %08x", xlevel);
    dump(0, level);
    dump(0x40000000, 0x40000001);
    dump(0x80000000, xlevel);
    for (uint32_t i = 0; i < 3; i++)
        cpuid_sub(0x80000002 + i, 0, (uint32_t *)brand + 4 * i);
    brand[48] = 0;
    printf("vendor \"%s\" brand \"%s\"\n", vendor, brand);
    cpuid_sub(1, 0, r);
    check(!(r[3] & (1u << 9)), "no APIC in CPUID 1 EDX (%08x)", r[3]);
    check(!(r[2] & (1u << 21)), "no x2APIC in CPUID 1 ECX (%08x)", r[2]);
    uint32_t family = (r[0] >> 8) & 0xF, model = (r[0] >> 4) & 0xF;
    if (family == 0xF)
        family += (r[0] >> 20) & 0xFF;
    if (family >= 6)
        model |= ((r[0] >> 16) & 0xF) << 4;
    printf("family %u model %u stepping %u\n", family, model, r[0] & 0xF);
    if (vendor[0] == 'G') {  /* GenuineIntel: Linux reads fast strings from this MSR */
        uint64_t misc = rdmsr(0x1A0);
        check(misc & 1, "IA32_MISC_ENABLE fast strings (%08x)", (uint32_t)misc);
    }
    return 0;
}
