/*
 * exceptions64: exception delivery in IA-32e mode and SYSCALL/SYSRET.
 *
 * Intel SDM vol. 3A 6.14: 64-bit gates, the CPU always pushes SS:RSP, error codes as in
 * protected mode; a non-canonical data reference is #GP(0) (not #PF); #PF error code
 * bits P (0), W/R (1), U/S (2) and CR2 holding the full linear address.  C code here
 * runs in compatibility mode (CS 0x08); the snippets under test run in 64-bit mode
 * (CS 0x28) through call64().
 */
#include "guest.h"

const char guest_name[] = "exceptions64";

extern void t64_de(void), t64_ud(void), t64_gp_sel(void), t64_noncanonical(void);
extern void t64_pf_write(void), t64_pf_read(void), t64_pf_high(void), t64_int3(void);
extern void user64_syscall_test(void), user64_pf_test(void), syscall_entry(void);
extern volatile uint64_t fault_rip, resume_rip, fault_rsp, after_rip;
extern volatile uint64_t u_rsp_before, u_rsp_after, u_rflags_before, u_rflags_after;
extern volatile uint64_t u_expected_rip, u_cs_after, u_ss_after;
extern volatile uint64_t sc_rcx, sc_r11, sc_rsp, sc_cs, sc_ss, sc_rflags, sc_calls;

#define MSR_STAR 0xC0000081u
#define MSR_LSTAR 0xC0000082u
#define MSR_FMASK 0xC0000084u
#define FMASK (0x40400u) /* AC | DF */

struct fault_rec {
    uint64_t vector, error, rip, cs, rsp, ss, cr2, depth;
};

static volatile struct fault_rec faults[8];
static volatile int nfaults, depth, nest_mode;

static void on_fault(struct frame64 *f)
{
    depth++;
    if (nfaults < (int)ARRAY_SIZE(faults)) {
        volatile struct fault_rec *r = &faults[nfaults++];
        r->vector = f->vector;
        r->error = f->error;
        r->rip = f->rip;
        r->cs = f->cs;
        r->rsp = f->rsp;
        r->ss = f->ss;
        r->cr2 = f->cr2;
        r->depth = depth;
    }
    if (depth > 1) {
        f->rip += 2; /* the handler's own UD2 (in compatibility mode) */
    } else {
        if (nest_mode && f->vector == 13) {
            nest_mode = 0;
            __asm__ volatile("ud2");
        }
        if (resume_rip) {
            f->rip = resume_rip;
            resume_rip = 0;
            if (f->vector == 8)
                f->cs = SEL_CODE64; /* #DF leaves the saved CS:RIP undefined */
        }
    }
    depth--;
}

static void reset_log(void)
{
    nfaults = 0;
    depth = 0;
    memset((void *)faults, 0, sizeof(faults));
}

static void expect_one(const char *what, uint32_t vector, uint32_t error)
{
    volatile struct fault_rec *r = &faults[0];
    check(nfaults == 1 && r->vector == vector && r->error == error && r->rip == fault_rip &&
              r->cs == SEL_CODE64 && r->rsp == fault_rsp,
          "%s: %d fault(s), vector %u err %x rip %llx cs %llx rsp %llx (want %u err %x rip %llx "
          "rsp %llx)",
          what, nfaults, (uint32_t)r->vector, (uint32_t)r->error, r->rip, r->cs, r->rsp, vector,
          error, fault_rip, fault_rsp);
}

static void test_simple_faults(void)
{
    reset_log();
    call64(t64_de, 0);
    expect_one("#DE div by zero", 0, 0);
    reset_log();
    call64(t64_ud, 0);
    expect_one("#UD ud2", 6, 0);
    reset_log();
    call64(t64_gp_sel, 0x1234);
    expect_one("#GP mov 0x1234 -> ds", 13, 0x1234);
    reset_log();
    call64(t64_noncanonical, 0);
    expect_one("#GP(0) non-canonical address", 13, 0);
}

static void page_fault(const char *what, void *fn, uint32_t arg, uint64_t addr, uint32_t err)
{
    reset_log();
    call64(fn, arg);
    expect_one(what, 14, err);
    check(faults[0].cr2 == addr, "%s: CR2 %llx (want %llx)", what, faults[0].cr2, addr);
}

static void test_page_faults(void)
{
    page_fault("#PF write above the 1 GiB map", t64_pf_write, 0x40001230, 0x40001230, 0x2);
    page_fault("#PF read above the 1 GiB map", t64_pf_read, 0x7FFFF000, 0x7FFFF000, 0x0);
    page_fault("#PF read above 4 GiB", t64_pf_high, 0, 0x123456789Aull, 0x0);
}

static void test_int3(void)
{
    reset_log();
    call64(t64_int3, 0);
    volatile struct fault_rec *r = &faults[0];
    check(nfaults == 1 && r->vector == 3 && r->rip == after_rip && r->cs == SEL_CODE64,
          "#BP int3: vector %u rip %llx (int3 at %llx, want %llx)", (uint32_t)r->vector, r->rip,
          fault_rip, after_rip);
}

static void test_nested(void)
{
    reset_log();
    nest_mode = 1;
    call64(t64_gp_sel, 0x1234);
    volatile struct fault_rec *o = &faults[0], *i = &faults[1];
    check(nfaults == 2 && o->vector == 13 && o->depth == 1 && i->vector == 6 && i->depth == 2 &&
              i->cs == SEL_CODE32,
          "nested: #GP handler's ud2 -> #UD (%d faults: %u@%u, %u@%u cs %llx)", nfaults,
          (uint32_t)o->vector, (uint32_t)o->depth, (uint32_t)i->vector, (uint32_t)i->depth, i->cs);
    check(o->rip == fault_rip && o->error == 0x1234 && o->cs == SEL_CODE64,
          "nested: outer #GP rip %llx err %llx", o->rip, o->error);
}

static void test_double_fault(void)
{
    reset_log();
    idt64_set_present(13, 0);
    call64(t64_gp_sel, 0x1234);
    idt64_set_present(13, 1);
    volatile struct fault_rec *r = &faults[0];
    check(nfaults == 1 && r->vector == 8 && r->error == 0,
          "#DF: #GP through a not-present gate -> %d fault(s), first vector %u err %llx", nfaults,
          (uint32_t)r->vector, r->error);
}

static uint8_t ring0_stack[4096] __attribute__((aligned(16)));
static uint8_t user_stack[4096] __attribute__((aligned(16)));
#define RING0_TOP ((uint32_t)ring0_stack + sizeof(ring0_stack))
#define USER_TOP ((uint32_t)user_stack + sizeof(user_stack))

static void test_user_page_fault(void)
{
    lm_pd[3] &= ~0x4ull; /* 6-8 MiB: supervisor only */
    __asm__ volatile("mov %%cr3, %%eax; mov %%eax, %%cr3" ::: "eax", "memory");
    reset_log();
    enter_user64(user64_pf_test, USER_TOP);
    lm_pd[3] |= 0x4ull;
    __asm__ volatile("mov %%cr3, %%eax; mov %%eax, %%cr3" ::: "eax", "memory");
    volatile struct fault_rec *r = &faults[0];
    check(nfaults == 1 && r->vector == 14 && r->error == 0x5 && r->cr2 == 0x600000 &&
              r->rip == fault_rip,
          "ring 3 #PF on a supervisor page: vector %u err %llx CR2 %llx", (uint32_t)r->vector,
          r->error, r->cr2);
    check(r->cs == (SEL_UCODE64 | 3) && r->ss == (SEL_UDATA64 | 3) && r->rsp == fault_rsp,
          "ring 3 #PF frame: CS %llx SS %llx RSP %llx (want 43 3b %llx)", r->cs, r->ss, r->rsp,
          fault_rsp);
}

static void test_syscall(void)
{
    uint32_t a, b, c, d;
    cpuid(0x80000001u, &a, &b, &c, &d);
    if (!check(d & (1u << 11), "CPUID.80000001:EDX.SYSCALL"))
        return;
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
    wrmsr(MSR_STAR, ((uint64_t)SEL_DATA64 << 48) | ((uint64_t)SEL_CODE64 << 32));
    wrmsr(MSR_LSTAR, (uint32_t)syscall_entry);
    wrmsr(MSR_FMASK, FMASK);
    sc_calls = 0;
    enter_user64(user64_syscall_test, USER_TOP);
    check(sc_calls == 1, "syscall reached LSTAR (%llu call)", sc_calls);
    check(sc_rcx == u_expected_rip, "syscall: RCX %llx (want %llx)", sc_rcx, u_expected_rip);
    check(sc_r11 == u_rflags_before, "syscall: R11 %llx (want RFLAGS %llx)", sc_r11,
          u_rflags_before);
    check(sc_cs == SEL_CODE64 && sc_ss == SEL_DATA64, "syscall: CS %llx SS %llx (CPL 0)", sc_cs,
          sc_ss);
    check(sc_rflags == (u_rflags_before & ~(uint64_t)FMASK),
          "syscall: RFLAGS %llx (want %llx masked by FMASK)", sc_rflags, u_rflags_before);
    check(sc_rsp == u_rsp_before, "syscall: RSP unchanged %llx", sc_rsp);
    check(u_cs_after == (SEL_UCODE64 | 3) && u_ss_after == (SEL_UDATA64 | 3),
          "sysretq: CS %llx SS %llx (want 43 3b)", u_cs_after, u_ss_after);
    check(u_rflags_after == u_rflags_before && u_rsp_after == u_rsp_before,
          "sysretq: RFLAGS %llx RSP %llx restored", u_rflags_after, u_rsp_after);
}

int main(void)
{
    lm_require();

    lm_build_identity();
    lm_enter();
    check((rdmsr(MSR_EFER) & EFER_LMA) && read_cs() == SEL_CODE32,
          "IA-32e active (EFER %llx), running in compatibility mode", rdmsr(MSR_EFER));
    idt64_init();
    for (int v = 0; v < 32; v++)
        isr64_register(v, on_fault);
    gdt_set_tss64(RING0_TOP);

    test_simple_faults();
    test_page_faults();
    test_int3();
    test_nested();
    test_double_fault();
    test_user_page_fault();
    test_syscall();
    return checks_failed();
}
