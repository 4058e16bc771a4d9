/*
 * TSS descriptors in the shared GDT (slot 0x48).
 * Intel SDM vol. 3A 7.2.2 (32-bit TSS descriptor, type 9) and 7.7 (64-bit TSS: 16-byte
 * descriptor, RSP0 at offset 4).  No I/O bitmap: the map base points past the limit, so
 * ring-3 port access and CLI fault with #GP(0) as long as IOPL is 0.
 */
#include "guest.h"

extern uint64_t gdt[];

struct tss32 {
    uint32_t link, esp0, ss0, esp1, ss1, esp2, ss2;
    uint32_t cr3, eip, eflags, eax, ecx, edx, ebx, esp, ebp, esi, edi;
    uint32_t es, cs, ss, ds, fs, gs, ldt;
    uint16_t trap, iomap_base;
} __attribute__((packed));

struct tss64 {
    uint32_t reserved0;
    uint64_t rsp0, rsp1, rsp2;
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3, iomap_base;
} __attribute__((packed));

static struct tss32 tss32 __attribute__((aligned(16)));
static struct tss64 tss64 __attribute__((aligned(16)));

static uint64_t system_descriptor(uint32_t base, uint32_t limit, uint8_t type)
{
    uint64_t d = limit & 0xFFFF;
    d |= (uint64_t)(base & 0xFFFFFF) << 16;
    d |= (uint64_t)(0x80 | type) << 40; /* present, DPL0, system */
    d |= (uint64_t)((limit >> 16) & 0xF) << 48;
    d |= (uint64_t)(base >> 24) << 56;
    return d;
}

static void load_tr(void) { __asm__ volatile("ltr %w0" ::"r"(SEL_TSS)); }

void gdt_set_tss32(uint32_t esp0)
{
    memset(&tss32, 0, sizeof(tss32));
    tss32.esp0 = esp0;
    tss32.ss0 = SEL_DATA;
    tss32.iomap_base = sizeof(tss32);
    gdt[SEL_TSS / 8] = system_descriptor((uint32_t)&tss32, sizeof(tss32) - 1, 0x9);
    gdt[SEL_TSS / 8 + 1] = 0;
    load_tr();
}

void gdt_set_tss64(uint64_t rsp0)
{
    memset(&tss64, 0, sizeof(tss64));
    tss64.rsp0 = rsp0;
    tss64.iomap_base = sizeof(tss64);
    gdt[SEL_TSS / 8] = system_descriptor((uint32_t)&tss64, sizeof(tss64) - 1, 0x9);
    gdt[SEL_TSS / 8 + 1] = 0; /* base bits 63:32 */
    load_tr();
}
