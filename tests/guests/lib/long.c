/*
 * Long-mode page tables and the 64-bit IDT.
 * Intel SDM vol. 3A 4.5 (4-level paging: PML4E/PDPTE/PDE, PS=1 in a PDE maps 2 MiB)
 * and 6.14.1 (16-byte 64-bit interrupt gates).
 */
#include "guest.h"

#define PTE_P 0x001ull
#define PTE_RW 0x002ull
#define PTE_US 0x004ull
#define PTE_PS 0x080ull

uint64_t lm_pml4[512] __attribute__((aligned(4096)));
uint64_t lm_pdpt[512] __attribute__((aligned(4096)));
uint64_t lm_pd[512] __attribute__((aligned(4096)));

extern const uint32_t isr64_stubs[49];
extern void isr64_user_return(void);
extern void lidt64_fn(void);

static uint64_t idt64[512] __attribute__((aligned(16))); /* 256 gates x 16 bytes */
static isr64_fn handlers64[256];

void lm_require(void)
{
    uint32_t a, b, c, d;
    cpuid(0x80000000u, &a, &b, &c, &d);
    uint32_t max_ext = a;
    cpuid(0x80000001u, &a, &b, &c, &d);
    if (max_ext < 0x80000001u || !(d & (1u << 29)))
        guest_fail("CPUID reports no long mode");
}

void lm_build_identity(void)
{
    memset(lm_pml4, 0, sizeof(lm_pml4));
    memset(lm_pdpt, 0, sizeof(lm_pdpt));
    for (uint32_t i = 0; i < 512; i++)
        lm_pd[i] = ((uint64_t)i << 21) | PTE_P | PTE_RW | PTE_US | PTE_PS;
    lm_pdpt[0] = (uint32_t)lm_pd | PTE_P | PTE_RW | PTE_US;
    lm_pml4[0] = (uint32_t)lm_pdpt | PTE_P | PTE_RW | PTE_US;
}

static void set_gate64(int vec, uint32_t handler, int dpl)
{
    uint64_t lo = handler & 0xFFFF;
    lo |= (uint64_t)SEL_CODE64 << 16;
    lo |= (uint64_t)(0x8E | (dpl << 5)) << 40; /* present, 64-bit interrupt gate, IST 0 */
    lo |= (uint64_t)(handler >> 16) << 48;
    idt64[vec * 2] = lo;
    idt64[vec * 2 + 1] = 0; /* offset 63:32 */
}

void idt64_set_present(int vec, int present)
{
    const uint64_t p = 1ull << 47;
    idt64[vec * 2] = present ? idt64[vec * 2] | p : idt64[vec * 2] & ~p;
}

void idt64_set_dpl(int vec, int dpl)
{
    idt64[vec * 2] = (idt64[vec * 2] & ~(3ull << 45)) | ((uint64_t)dpl << 45);
}

void idt64_init(void)
{
    static struct {
        uint16_t limit;
        uint64_t base;
    } __attribute__((packed)) desc;
    for (int v = 0; v < 48; v++)
        set_gate64(v, isr64_stubs[v], 0);
    set_gate64(0x80, isr64_stubs[48], 0);
    set_gate64(0x81, (uint32_t)isr64_user_return, 3);
    desc.limit = sizeof(idt64) - 1;
    desc.base = (uint32_t)idt64;
    /* LIDT in compatibility mode takes a 32-bit base; load it from 64-bit mode instead. */
    call64(lidt64_fn, (uint32_t)&desc);
}

void isr64_register(int vec, isr64_fn fn) { handlers64[vec & 0xFF] = fn; }

void isr64_dispatch(struct frame64 *f)
{
    isr64_fn fn = handlers64[f->vector & 0xFF];
    if (fn) {
        fn(f);
        return;
    }
    guest_fail("unexpected 64-bit vector %u error %llx at %llx:%llx", (uint32_t)f->vector, f->error,
               f->cs, f->rip);
}
