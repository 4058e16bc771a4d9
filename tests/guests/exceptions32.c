/*
 * exceptions32: exception and interrupt delivery in 32-bit protected mode.
 *
 * Expectations follow Intel SDM vol. 3A chapter 6: faults report the EIP of the
 * faulting instruction, traps (INT3, INT n) the EIP after it; #GP from a segment load
 * carries the selector (TI and index, RPL bits clear) as error code; #PF sets CR2 and
 * error code bits P/W/U; a contributory fault (#NP from a not-present #GP gate) during
 * delivery of a contributory fault (#GP) becomes #DF with error code 0 (table 6-5);
 * an interrupt from ring 3 switches to SS0:ESP0 of the TSS and pushes SS:ESP.
 */
#include "guest.h"

const char guest_name[] = "exceptions32";

struct fault_rec {
    uint32_t vector, error, eip, cs, cr2, depth;
};

static volatile struct fault_rec faults[8];
static volatile int nfaults, depth, nest_mode;
/* Where the handler resumes after a fault (0: return to the faulting EIP's successor
 * as delivered, which is right for traps). */
static volatile uint32_t resume_eip;
static volatile uint32_t fault_at, after_at;

static void on_fault(struct frame32 *f)
{
    uint32_t cr2 = read_cr2();
    depth++;
    if (nfaults < (int)ARRAY_SIZE(faults)) {
        volatile struct fault_rec *r = &faults[nfaults++];
        r->vector = f->vector;
        r->error = f->error;
        r->eip = f->eip;
        r->cs = f->cs;
        r->cr2 = cr2;
        r->depth = depth;
    }
    if (depth > 1) {
        f->eip += 2; /* the only nested fault is the handler's own UD2 */
    } else {
        if (nest_mode && f->vector == 13) {
            nest_mode = 0;
            __asm__ volatile("ud2");
        }
        if (resume_eip) {
            f->eip = resume_eip;
            resume_eip = 0;
            if (f->vector == 8)
                f->cs = SEL_CODE32; /* #DF leaves the saved CS:EIP undefined */
        }
    }
    depth--;
}

/* int 0x80 from ring 0 or ring 3 */
static volatile uint32_t sw_calls, sw_cs, sw_eip, sw_user_esp, sw_user_ss, sw_frame_end, sw_cpl_cs;

static void on_int80(struct frame32 *f)
{
    sw_calls++;
    sw_cs = f->cs;
    sw_eip = f->eip;
    sw_cpl_cs = read_cs();
    if (f->cs & 3) {
        sw_user_esp = f->user_esp;
        sw_user_ss = f->user_ss;
        sw_frame_end = (uint32_t)&f->user_ss + 4;
    } else {
        sw_frame_end = (uint32_t)&f->user_esp;
    }
}

static void reset_log(void)
{
    nfaults = 0;
    depth = 0;
    memset((void *)faults, 0, sizeof(faults));
}

/* One fault, the expected vector/error, reported at the faulting instruction. */
static void expect_one(const char *what, uint32_t vector, uint32_t error)
{
    volatile struct fault_rec *r = &faults[0];
    check(nfaults == 1 && r->vector == vector && r->error == error && r->eip == fault_at &&
              r->cs == SEL_CODE32,
          "%s: %d fault(s), vector %u err %x eip %08x cs %x (want %u err %x eip %08x)", what,
          nfaults, r->vector, r->error, r->eip, r->cs, vector, error, fault_at);
}

static void load_ds(uint16_t sel)
{
    __asm__ volatile("movl $1f, %0\n\t"
                     "movl $0f, %1\n\t"
                     "0: mov %w2, %%ds\n\t"
                     "1:"
                     : "=m"(resume_eip), "=m"(fault_at)
                     : "r"(sel)
                     : "memory");
}

static void test_divide(void)
{
    reset_log();
    __asm__ volatile("movl $1f, %0\n\t"
                     "movl $0f, %1\n\t"
                     "xorl %%ecx, %%ecx\n\t"
                     "0: divl %%ecx\n\t"
                     "1:"
                     : "=m"(resume_eip), "=m"(fault_at)
                     : "a"(1), "d"(0)
                     : "ecx", "memory", "cc");
    expect_one("#DE div by zero", 0, 0);
}

static void test_ud(void)
{
    reset_log();
    __asm__ volatile("movl $1f, %0\n\t"
                     "movl $0f, %1\n\t"
                     "0: ud2\n\t"
                     "1:"
                     : "=m"(resume_eip), "=m"(fault_at)::"memory");
    expect_one("#UD ud2", 6, 0);
}

static void test_gp_selector(void)
{
    reset_log();
    load_ds(0x1234); /* TI=1 with a null LDTR */
    expect_one("#GP mov 0x1234 -> ds", 13, 0x1234);
    reset_log();
    load_ds(0x1233); /* GDT index 0x246 beyond the limit; RPL bits drop from the code */
    expect_one("#GP mov 0x1233 -> ds", 13, 0x1230);
}

static void test_breakpoint(void)
{
    reset_log();
    __asm__ volatile("movl $0f, %0\n\t"
                     "movl $1f, %1\n\t"
                     "0: int3\n\t"
                     "1:"
                     : "=m"(fault_at), "=m"(after_at)::"memory");
    volatile struct fault_rec *r = &faults[0];
    check(nfaults == 1 && r->vector == 3 && r->eip == after_at,
          "#BP int3: vector %u eip %08x (int3 at %08x, want %08x)", r->vector, r->eip, fault_at,
          after_at);
}

static void test_int80_ring0(void)
{
    sw_calls = 0;
    __asm__ volatile("int $0x80\n\t"
                     "1: movl $1b, %0"
                     : "=m"(after_at)::"memory");
    check(sw_calls == 1 && sw_eip == after_at && sw_cs == SEL_CODE32,
          "int 0x80 from ring 0: calls %u eip %08x cs %x (want %08x)", sw_calls, sw_eip, sw_cs,
          after_at);
}

/* ---- paging: identity-map 0-8 MiB with 4 KiB pages ---- */
static uint32_t page_dir[1024] __attribute__((aligned(4096)));
static uint32_t page_tab[2][1024] __attribute__((aligned(4096)));

#define RO_PAGE 0x007FE000u
#define ABSENT_PAGE 0x007FF000u
#define UNMAPPED 0x00C01234u

static void paging_on(void)
{
    for (uint32_t i = 0; i < 2048; i++)
        page_tab[i / 1024][i % 1024] = (i << 12) | 0x3;
    page_tab[1][(RO_PAGE >> 12) - 1024] &= ~0x2u;
    page_tab[1][(ABSENT_PAGE >> 12) - 1024] = 0;
    memset(page_dir, 0, sizeof(page_dir));
    page_dir[0] = (uint32_t)page_tab[0] | 0x3;
    page_dir[1] = (uint32_t)page_tab[1] | 0x3;
    write_cr3((uint32_t)page_dir);
    write_cr0(read_cr0() | CR0_PG | (1u << 16)); /* WP: supervisor writes honour R/W */
}

static void paging_off(void) { write_cr0(read_cr0() & ~(CR0_PG | (1u << 16))); }

static void page_fault(const char *what, uint32_t addr, int write, uint32_t want_err)
{
    reset_log();
    if (write)
        __asm__ volatile("movl $1f, %0\n\t"
                         "movl $0f, %1\n\t"
                         "0: movl $0x5a5a5a5a, (%2)\n\t"
                         "1:"
                         : "=m"(resume_eip), "=m"(fault_at)
                         : "r"(addr)
                         : "memory");
    else
        __asm__ volatile("movl $1f, %0\n\t"
                         "movl $0f, %1\n\t"
                         "0: movl (%2), %%eax\n\t"
                         "1:"
                         : "=m"(resume_eip), "=m"(fault_at)
                         : "r"(addr)
                         : "eax", "memory");
    volatile struct fault_rec *r = &faults[0];
    expect_one(what, 14, want_err);
    check(r->cr2 == addr, "%s: CR2 %08x (want %08x)", what, r->cr2, addr);
}

static void test_page_faults(void)
{
    paging_on();
    page_fault("#PF write, PDE not present", UNMAPPED, 1, 0x2);
    page_fault("#PF read, PTE not present", ABSENT_PAGE + 0x10, 0, 0x0);
    page_fault("#PF write, read-only page, CR0.WP", RO_PAGE + 0x20, 1, 0x3);
    paging_off();
}

static void test_nested(void)
{
    reset_log();
    nest_mode = 1;
    load_ds(0x1234);
    volatile struct fault_rec *o = &faults[0], *i = &faults[1];
    check(nfaults == 2 && o->vector == 13 && o->depth == 1 && i->vector == 6 && i->depth == 2 &&
              i->cs == SEL_CODE32 && i->eip != fault_at,
          "nested: #GP handler's ud2 -> #UD inside it (%d faults: %u@%u, %u@%u eip %08x)", nfaults,
          o->vector, o->depth, i->vector, i->depth, i->eip);
    check(o->eip == fault_at && o->error == 0x1234, "nested: outer #GP eip %08x err %x", o->eip,
          o->error);
}

static void test_double_fault(void)
{
    reset_log();
    idt32_set_present(13, 0);
    load_ds(0x1234);
    idt32_set_present(13, 1);
    volatile struct fault_rec *r = &faults[0];
    check(nfaults == 1 && r->vector == 8 && r->error == 0,
          "#DF: #GP through a not-present gate -> %d fault(s), first vector %u err %x", nfaults,
          r->vector, r->error);
}

/* ---- ring 3 ---- */
extern void user_int80_test(void), user_cli_insn(void), user_sysenter_test(void);
extern void sysenter_entry(void);
extern volatile uint32_t u_esp_before, u_esp_after, u_back, u_cs, u_ss, u_after_cli;
extern volatile uint32_t se_esp, se_cs, se_ss, se_calls;

static uint8_t ring0_stack[4096] __attribute__((aligned(16)));
static uint8_t user_stack[4096] __attribute__((aligned(16)));
static uint8_t sysenter_stack[1024] __attribute__((aligned(16)));
#define RING0_TOP ((uint32_t)ring0_stack + sizeof(ring0_stack))
#define USER_TOP ((uint32_t)user_stack + sizeof(user_stack))
#define SYSENTER_TOP ((uint32_t)sysenter_stack + sizeof(sysenter_stack))

static void test_ring3_int80(void)
{
    reset_log();
    sw_calls = 0;
    resume_eip = (uint32_t)user_cli_insn + 1; /* for the #GP raised by CLI */
    enter_user32(user_int80_test, USER_TOP);
    check(sw_calls == 1 && sw_cs == (SEL_UCODE32 | 3) && sw_cpl_cs == SEL_CODE32,
          "ring 3 int 0x80: frame CS %x, handler CS %x", sw_cs, sw_cpl_cs);
    check(sw_user_esp == u_esp_before && sw_user_ss == (SEL_UDATA | 3),
          "ring 3 int 0x80: frame SS:ESP %x:%08x (want 23:%08x)", sw_user_ss, sw_user_esp,
          u_esp_before);
    check(sw_frame_end == RING0_TOP, "ring 3 int 0x80: handler stack ends at %08x (TSS ESP0 %08x)",
          sw_frame_end, RING0_TOP);
    check(u_back == 1 && u_cs == (SEL_UCODE32 | 3), "iret back to ring 3: CS %x", u_cs);
    volatile struct fault_rec *r = &faults[0];
    check(nfaults == 1 && r->vector == 13 && r->error == 0 && r->cs == (SEL_UCODE32 | 3) &&
              r->eip == (uint32_t)user_cli_insn,
          "ring 3 cli: vector %u err %x at %x:%08x (want 13 err 0 at 1b:%08x)", r->vector, r->error,
          r->cs, r->eip, (uint32_t)user_cli_insn);
    check(u_after_cli == 1, "ring 3 resumes after the #GP");
}

static void test_sysenter(void)
{
    uint32_t a, b, c, d;
    cpuid(1, &a, &b, &c, &d);
    if (!check(d & (1u << 11), "CPUID.1:EDX.SEP"))
        return;
    wrmsr(0x174, SEL_CODE32);
    wrmsr(0x175, SYSENTER_TOP);
    wrmsr(0x176, (uint32_t)sysenter_entry);
    se_calls = 0;
    enter_user32(user_sysenter_test, USER_TOP);
    check(se_calls == 1 && se_esp == SYSENTER_TOP && se_cs == SEL_CODE32 && se_ss == SEL_DATA,
          "sysenter: handler CS %x SS %x ESP %08x (want 8 10 %08x)", se_cs, se_ss, se_esp,
          SYSENTER_TOP);
    check(u_cs == (SEL_UCODE32 | 3) && u_ss == (SEL_UDATA | 3) && u_esp_after == u_esp_before,
          "sysexit: CS %x SS %x ESP %08x (want 1b 23 %08x)", u_cs, u_ss, u_esp_after, u_esp_before);
}

int main(void)
{
    idt32_init();
    for (int v = 0; v < 32; v++)
        isr32_register(v, on_fault);
    isr32_register(0x80, on_int80);
    idt32_set_gate(0x80, isr32_stub(0x80), GATE_INT_U);
    gdt_set_tss32(RING0_TOP);

    test_divide();
    test_ud();
    test_gp_selector();
    test_breakpoint();
    test_int80_ring0();
    test_page_faults();
    test_nested();
    test_double_fault();
    test_ring3_int80();
    test_sysenter();
    return checks_failed();
}
