/*
 * mbstate: the machine as a Multiboot loader leaves it, used as a kernel that does not
 * load a GDT of its own would use it -- up to taking timer interrupts through it.
 *
 * Multiboot 0.6.96 section 3.2 (machine state: EAX magic, EBX info, CS/DS..SS flat 32-bit
 * segments, CR0.PE set and PG clear, EFLAGS.VM and IF clear, A20 enabled; GDTR "may be
 * invalid" by the letter, but QEMU's loader, like GRUB, leaves a flat GDT in force) and
 * 3.3 (the information structure: mem_lower/mem_upper, boot_device, cmdline, mods,
 * mmap, boot_loader_name).  Intel SDM vol. 3A 3.4.5 (segment descriptor fields) and
 * 6.12.1 (an interrupt gate's selector is looked up in the GDT at delivery).
 *
 * Prints one "entry:" line that holds only what QEMU and pyemu must agree on (the
 * integration test compares it), "at:" with addresses that may differ, then the checks.
 */
#include "guest.h"

const char guest_name[] = "mbstate";

/* Written by mbstate_entry.S before anything else runs. */
extern uint32_t entry_gpr[8]; /* EAX EBX ECX EDX ESI EDI EBP ESP */
extern uint16_t entry_sel[8]; /* CS DS ES FS GS SS LDTR TR */
extern uint8_t entry_gdtr[8], entry_idtr[8];
extern uint32_t entry_cr0, entry_cr4, entry_eflags;
extern char __end[];

static const char *const sel_names[] = {"cs", "ds", "es", "fs", "gs", "ss"};

#define MBI_MEM (1u << 0)
#define MBI_BOOTDEV (1u << 1)
#define MBI_CMDLINE (1u << 2)
#define MBI_MODS (1u << 3)
#define MBI_MMAP (1u << 6)
#define MBI_LOADER (1u << 9)

struct mbi_full {
    struct multiboot_info base;
    uint32_t drives_length, drives_addr, config_table, boot_loader_name;
};

struct mmap_entry {
    uint32_t size;
    uint64_t base, length;
    uint32_t type;
} __attribute__((packed));

struct module {
    uint32_t start, end, string, reserved;
};

static uint16_t gdt_limit(void) { return (uint16_t)(entry_gdtr[0] | entry_gdtr[1] << 8); }
static uint32_t gdt_base(void) { return *(uint32_t *)(entry_gdtr + 2); }

static uint64_t descriptor(uint16_t sel) { return ((const uint64_t *)gdt_base())[sel >> 3]; }

/* Base 0, limit 0xFFFFF with G=1 (4 GiB), D/B=1, present, S=1, DPL 0 (SDM 3.4.5). */
static int flat32(uint64_t d)
{
    uint32_t base = (uint32_t)((d >> 16) & 0xFFFFFF) | (uint32_t)((d >> 56) << 24);
    uint32_t limit = (uint32_t)(d & 0xFFFF) | (uint32_t)((d >> 48) & 0xF) << 16;
    uint32_t access = (uint32_t)(d >> 40) & 0xFF, flags = (uint32_t)(d >> 52) & 0xF;
    return base == 0 && limit == 0xFFFFF && (flags & 0xC) == 0xC && (access & 0xF0) == 0x90;
}

static int code_readable(uint64_t d) { return ((d >> 40) & 0xA) == 0xA; }
static int data_writable(uint64_t d) { return ((d >> 40) & 0xA) == 0x2; }

static void report(void)
{
    const uint16_t *s = entry_sel;
    printf("entry: eax=%08x cs=%04x ds=%04x es=%04x fs=%04x gs=%04x ss=%04x ldtr=%04x tr=%04x"
           " gdtr.limit=%04x idtr=%08x/%04x cr0=%08x cr4=%08x eflags=%08x\n",
           entry_gpr[0], s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], gdt_limit(),
           *(uint32_t *)(entry_idtr + 2), entry_idtr[0] | entry_idtr[1] << 8, entry_cr0,
           entry_cr4, entry_eflags);
    printf("at: gdtr.base=%08x esp=%08x ebx=%08x ecx=%08x edx=%08x esi=%08x edi=%08x"
           " ebp=%08x\n", gdt_base(), entry_gpr[7], entry_gpr[1], entry_gpr[2], entry_gpr[3],
           entry_gpr[4], entry_gpr[5], entry_gpr[6]);
    printf("gdt:");
    for (uint32_t off = 0; off + 7 <= gdt_limit() && off < 0x60; off += 8)
        printf(" %08x%08x", (uint32_t)(descriptor((uint16_t)off) >> 32),
               (uint32_t)descriptor((uint16_t)off));
    printf("\n");
}

static const struct mmap_entry *mmap_next(const struct mmap_entry *e)
{
    return (const struct mmap_entry *)((const uint8_t *)e + e->size + 4);
}

#define FOR_MMAP(mbi, e)                                                                  \
    for (const struct mmap_entry *e = (const void *)(mbi)->base.mmap_addr;               \
         (uint32_t)e < (mbi)->base.mmap_addr + (mbi)->base.mmap_length; e = mmap_next(e))

/* Is [addr, addr+len) inside RAM the map calls available (type 1)? */
static int available(const struct mbi_full *mbi, uint32_t addr, uint32_t len)
{
    FOR_MMAP(mbi, e)
        if (e->type == 1 && e->base <= addr && addr + (uint64_t)len <= e->base + e->length)
            return 1;
    return 0;
}

/* The GDT and the selectors in force: QEMU's multiboot.bin loads its flat GDT with CS
 * 0x08 and DS..SS 0x10, which this guest's interrupt gates and stubs (lib/) also use. */
static int check_gdt(const struct mbi_full *mbi)
{
    int ok = check(gdt_limit() >= 0x17, "GDTR limit %04x holds selectors 0x08 and 0x10",
                   gdt_limit());
    ok &= check(entry_sel[0] == SEL_CODE32, "CS %04x is 0x08", entry_sel[0]);
    for (int i = 1; i < 6; i++)
        ok &= check(entry_sel[i] == SEL_DATA, "%s %04x is 0x10", sel_names[i], entry_sel[i]);
    if (!ok)
        return 0;
    uint64_t code = descriptor(SEL_CODE32), data = descriptor(SEL_DATA);
    ok &= check(flat32(code) && code_readable(code), "GDT 0x08 is flat 32-bit ring-0 code "
                "(%08x%08x)", (uint32_t)(code >> 32), (uint32_t)code);
    ok &= check(flat32(data) && data_writable(data), "GDT 0x10 is flat 32-bit ring-0 data "
                "(%08x%08x)", (uint32_t)(data >> 32), (uint32_t)data);
    /* A kernel may use any RAM the map calls available: the GDT it relies on is not there. */
    ok &= check(!available(mbi, gdt_base(), gdt_limit() + 1u),
                "the GDT is outside the RAM the memory map calls available");
    return ok;
}

/* Each data segment's cache: base 0 (a value written through DS reads back through it)
 * and limit 4 GiB (an access at 0xFFFFFFFC does not fault: it reads the BIOS ROM). */
static void check_segment_caches(void)
{
    static volatile uint32_t probe = 0x5EC0CAC4;
    uint32_t a = (uint32_t)&probe, top = 0xFFFFFFFCu, v[5], t[5];
#define READ_THROUGH(seg, i) \
    __asm__ volatile("movl %%" #seg ":(%2), %0; movl %%" #seg ":(%3), %1" \
                     : "=r"(v[i]), "=r"(t[i]) : "r"(a), "r"(top))
    READ_THROUGH(es, 0);
    READ_THROUGH(fs, 1);
    READ_THROUGH(gs, 2);
    READ_THROUGH(ss, 3);
    READ_THROUGH(ds, 4);
    static const char *const names[] = {"es", "fs", "gs", "ss", "ds"};
    for (int i = 0; i < 5; i++)
        check(v[i] == probe && t[i] == t[4], "%s: base 0 and limit 4 GiB in its cache", names[i]);
}

static void check_cpu_state(void)
{
    check(mb_magic == MULTIBOOT_BOOTLOADER_MAGIC, "EAX magic %08x", mb_magic);
    check((entry_cr0 & CR0_PE) && !(entry_cr0 & CR0_PG), "CR0 %08x: PE set, PG clear",
          entry_cr0);
    check(!(entry_eflags & (EFLAGS_IF | 1u << 10 | 1u << 17)) && (entry_eflags & 2),
          "EFLAGS %08x: IF, DF and VM clear", entry_eflags);
    volatile uint32_t *low = (uint32_t *)0x80000, *high = (uint32_t *)0x180000;
    *low = 0x11111111;
    *high = 0x22222222;
    check(*low == 0x11111111, "A20 enabled: 0x180000 does not alias 0x080000");
}

static void check_info(const struct mbi_full *mbi)
{
    uint32_t want = MBI_MEM | MBI_BOOTDEV | MBI_CMDLINE | MBI_MODS | MBI_MMAP | MBI_LOADER;
    printf("info: flags=%08x mem_lower=%u boot_device=%08x mods_count=%u\n", mbi->base.flags,
           mbi->base.mem_lower, mbi->base.boot_device, mbi->base.mods_count);
    printf("at: info=%08x mem_upper=%u\n", (uint32_t)mbi, mbi->base.mem_upper);
    if (!check((mbi->base.flags & want) == want, "info flags %08x include %08x",
               mbi->base.flags, want))
        return;
    printf("cmdline: \"%s\"\n", (const char *)mbi->base.cmdline);
    printf("boot_loader_name: \"%s\"\n", (const char *)mbi->boot_loader_name);
    uint32_t lower = 0, upper_end = 0x100000;
    int entries = 0;
    FOR_MMAP(mbi, e) {
        entries++;
        printf("mmap: %08x%08x +%08x%08x type %u (size %u)\n", (uint32_t)(e->base >> 32),
               (uint32_t)e->base, (uint32_t)(e->length >> 32), (uint32_t)e->length, e->type,
               e->size);
        if (e->type == 1 && e->base == 0)
            lower = (uint32_t)e->length;
    }
    /* Section 3.3: mem_upper reaches the first hole above 1 MiB; extend through the map. */
    for (int grown = 1; grown;) {
        grown = 0;
        FOR_MMAP(mbi, e)
            if (e->type == 1 && e->base <= upper_end && upper_end < e->base + e->length) {
                upper_end = (uint32_t)(e->base + e->length);
                grown = 1;
            }
    }
    check(entries > 0 && mbi->base.mmap_length % 24 == 0, "memory map of %d 20-byte entries",
          entries);
    check(mbi->base.mem_lower == lower / 1024, "mem_lower %u KiB = the map's RAM at 0",
          mbi->base.mem_lower);
    check(mbi->base.mem_upper == (upper_end - 0x100000) / 1024,
          "mem_upper %u KiB = the map's RAM from 1 MiB", mbi->base.mem_upper);
    const struct module *mods = (const void *)mbi->base.mods_addr;
    for (uint32_t i = 0; i < mbi->base.mods_count; i++) {
        const struct module *m = &mods[i];
        char head[17] = {0};
        memcpy(head, (const void *)m->start, m->end - m->start < 16 ? m->end - m->start : 16);
        for (int k = 0; head[k]; k++)
            if (head[k] < ' ')
                head[k] = '.';
        printf("module %u: \"%s\" holds \"%s\"\n", i, (const char *)m->string, head);
        check(m->start % 4096 == 0 && m->end > m->start, "module %u page-aligned", i);
        check(m->start >= (uint32_t)__end && available(mbi, m->start, m->end - m->start),
              "module %u in available RAM past the kernel", i);
    }
}

static volatile uint16_t irq_cs;

static void on_tick(struct frame32 *f)
{
    irq_cs = (uint16_t)f->cs;
    pit_ticks++;
    pic_eoi(0);
}

/* Interrupt delivery loads CS from the loader's GDT (the gate's selector 0x08) and the
 * stub loads DS/ES with 0x10 from it too. */
static void check_timer_interrupts(void)
{
    isr32_register(PIC_VEC_BASE + 0, on_tick);
    pic_init();
    pit_set_periodic(1000);
    pic_unmask(0);
    sti();
    for (int i = 0; i < 10000 && pit_ticks < 10; i++)
        __asm__ volatile("hlt" ::: "memory");
    cli();
    check(pit_ticks >= 10, "10 PIT interrupts taken through the loader's GDT");
    check(irq_cs == SEL_CODE32, "interrupted code ran with CS %04x", irq_cs);
}

int main(void)
{
    const struct mbi_full *mbi = (const void *)mb_info;
    report();
    if (!check_gdt(mbi))
        return 1;
    idt32_init(); /* from here on a fault prints its vector instead of resetting */
    check_segment_caches();
    check_cpu_state();
    check_info(mbi);
    check_timer_interrupts();
    return checks_failed();
}
