/*
 * longmode: 32-bit paging, then IA-32e mode, 64-bit code above 4 GiB, then back out.
 *
 * Intel SDM vol. 3A 4.3 (32-bit paging), 4.5 (4-level paging), 9.8.5 (entering IA-32e:
 * paging off, CR4.PAE, CR3, EFER.LME, CR0.PG => EFER.LMA) and 9.8.5.4 (leaving it).
 */
#include "guest.h"

const char guest_name[] = "longmode";

extern void lm_test64(void);

#define ALIAS_32 0x40000000u /* 32-bit paging: 1 GiB virtual -> alias_target */
#define HIGH_PHYS 0x00400000u /* long mode: 4 GiB virtual -> 4 MiB physical */

static uint32_t pd32[1024] __attribute__((aligned(4096)));
static uint32_t pt32[2][1024] __attribute__((aligned(4096)));
static volatile uint32_t alias_target[1024] __attribute__((aligned(4096)));
static uint64_t pd_high[512] __attribute__((aligned(4096)));

static void test_paging32(void)
{
    for (uint32_t i = 0; i < 1024; i++)
        pt32[0][i] = (i << 12) | 0x3; /* identity 0-4 MiB */
    memset(pt32[1], 0, sizeof(pt32[1]));
    pt32[1][0] = (uint32_t)alias_target | 0x3;
    memset(pd32, 0, sizeof(pd32));
    pd32[0] = (uint32_t)pt32[0] | 0x3;
    pd32[ALIAS_32 >> 22] = (uint32_t)pt32[1] | 0x3;
    write_cr3((uint32_t)pd32);
    write_cr0(read_cr0() | CR0_PG);
    uint32_t cr0 = read_cr0(), cr4 = read_cr4();
    volatile uint32_t *alias = (volatile uint32_t *)(ALIAS_32 + 0x10);
    *alias = 0xC0FFEE32;
    uint32_t seen = alias_target[4];
    alias_target[5] = 0x5EED5EED;
    uint32_t back = alias[1];
    write_cr0(read_cr0() & ~CR0_PG);
    check((cr0 & (CR0_PG | CR0_PE)) == (CR0_PG | CR0_PE) && !(cr4 & CR4_PAE),
          "32-bit paging on: CR0 %08x CR4 %08x", cr0, cr4);
    check(seen == 0xC0FFEE32 && back == 0x5EED5EED,
          "32-bit paging: alias at %08x reaches %p (%08x, %08x)", ALIAS_32, alias_target, seen,
          back);
}

static void test_long_mode(void)
{
    lm_build_identity();
    memset(pd_high, 0, sizeof(pd_high));
    pd_high[0] = HIGH_PHYS | 0x83; /* 2 MiB page, RW, present */
    lm_pdpt[4] = (uint32_t)pd_high | 0x3; /* PDPT entry 4 covers 4-5 GiB */
    memset((void *)HIGH_PHYS, 0, 0x2000);

    lm_enter();
    uint64_t efer = rdmsr(MSR_EFER);
    uint32_t cr0 = read_cr0(), cr4 = read_cr4(), cr3 = read_cr3();
    uint16_t cs = read_cs();
    idt64_init(); /* so a stray fault reports instead of triple-faulting */
    uint32_t bits = call64(lm_test64, 0);
    uint64_t low_view = *(volatile uint64_t *)(HIGH_PHYS + 0x1238);
    uint64_t efer_after = rdmsr(MSR_EFER);
    lm_leave();
    uint64_t efer_out = rdmsr(MSR_EFER);
    uint32_t cr0_out = read_cr0(), cr4_out = read_cr4();
    idt32_init();

    check((cr0 & (CR0_PG | CR0_PE)) == (CR0_PG | CR0_PE) && (cr4 & CR4_PAE) &&
              cr3 == (uint32_t)lm_pml4,
          "IA-32e: CR0 %08x CR4 %08x CR3 %08x", cr0, cr4, cr3);
    check((efer & (EFER_LME | EFER_LMA)) == (EFER_LME | EFER_LMA), "IA-32e: EFER %llx has LME, LMA",
          efer);
    check(cs == SEL_CODE32, "compatibility mode after CR0.PG: CS %x", cs);
    check(bits & 0x01, "64-bit code runs with CS 0x28");
    check(bits & 0x02, "64-bit arithmetic carries into bit 32");
    check(bits & 0x04, "store at 4 GiB + 0x1238 lands at physical %08x", HIGH_PHYS + 0x1238);
    check(bits & 0x08, "store at physical %08x reads back at 4 GiB + 0x1240", HIGH_PHYS + 0x1240);
    check(bits & 0x10, "RIP-relative LEA matches the absolute address");
    check(low_view == 0x1122334455667788ull, "compatibility mode sees the 64-bit store: %llx",
          low_view);
    check(efer_after == efer, "EFER unchanged by 64-bit code (%llx)", efer_after);
    check(!(efer_out & (EFER_LME | EFER_LMA)) && !(cr0_out & CR0_PG) && !(cr4_out & CR4_PAE),
          "left IA-32e: EFER %llx CR0 %08x CR4 %08x", efer_out, cr0_out, cr4_out);
}

int main(void)
{
    lm_require();
    test_paging32();
    test_long_mode();
    return checks_failed();
}
