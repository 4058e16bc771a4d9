/*
 * pyemu CPU helper: the parts of the x86 CPU that must run in C.
 *
 * unicorn never delivers exceptions or interrupts through the guest's IVT/IDT, but it
 * exports QEMU's delivery functions. Those may longjmp out of a fault during delivery,
 * which is only safe with no Python frame on the stack, so the hooks that deliver are
 * C functions (see ../shared/notes/unicorn-2.1.4.md, "Exceptions and interrupts").
 *
 * Python decides *what* to deliver (the PIC's INTA cycle, through the `inta` callback,
 * which never calls back into QEMU); C does the delivery.
 *
 * The time-stamp counter is virtual: RDTSC/RDTSCP read the machine's virtual clock at a
 * fixed 1 GHz plus an offset, so it stops with the machine, is exact in icount mode and
 * carries across snapshots (unicorn's own RDTSC reads the host's counter).
 *
 * Every delivery it starts is recorded in a ring of events (vector, error code, CS:EIP,
 * SS:ESP, CPL, CR2) before QEMU's code runs, so that one that faults is recorded too:
 * Python logs them (-d int) and shows the last ones when a triple fault ends a slice.
 *
 * References: Intel SDM vol. 3A, 6.8 (enabling and disabling interrupts, the STI/MOV SS
 * shadow), 5.8.8 (SYSCALL/SYSRET), 5.8.7 (SYSENTER/SYSEXIT), 17.17 (time-stamp counter);
 * vol. 2B RDTSC, RDTSCP (EDX:EAX = TSC, ECX = IA32_TSC_AUX[31:0]).
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define UC_HOOK_INTR 1
#define UC_HOOK_INSN 2
#define UC_HOOK_CODE 4
#define UC_HOOK_BLOCK 8
#define UC_HOOK_INSN_INVALID (1 << 14)
#define UC_X86_INS_SYSCALL 699
#define UC_X86_INS_SYSENTER 700
#define UC_X86_INS_IN 218
#define UC_X86_INS_RDTSC 608
#define UC_X86_INS_RDTSCP 609
#define UC_X86_REG_RIP 41
#define UC_X86_REG_CR0 50
#define UC_X86_REG_CR2 52
#define UC_X86_REG_RFLAGS 253

#define IF_MASK (1u << 9)
#define VM_MASK (1u << 17)
#define RF_MASK (1u << 16)
#define HF_INHIBIT_IRQ_MASK (1u << 3)
#define HF_LMA_MASK (1u << 14)
#define HF_CPL_MASK 3u
#define EFER_SCE 1u
#define EXCP06_ILLOP 6
#define EXCP0D_GPF 13

/* stop_reason: a #DF was being delivered when emu_start returned, i.e. its delivery
 * faulted and the engine stopped on a triple fault (it does so silently) */
enum { STOP_DOUBLE_FAULT = 8 };

typedef int (*uc_hook_add_fn)(void *, size_t *, int, void *, void *, uint64_t, uint64_t, ...);
typedef int (*uc_emu_stop_fn)(void *);
typedef int (*uc_hook_del_fn)(void *, size_t);
typedef int (*uc_loop_hook_fn)(void *, int (*)(void *, void *), void *);
typedef volatile int16_t *(*uc_exit_word_fn)(void *);
typedef int (*uc_icount_fn)(void *, int64_t *);
typedef int (*uc_reg_write_fn)(void *, int, const void *);
typedef int (*uc_reg_read_fn)(void *, int, void *);
typedef void (*do_interrupt_fn)(void *cpu);
typedef void (*hardirq_fn)(void *env, int intno, int is_hw);
typedef void (*raise_exc_err_fn)(void *env, int intno, int error_code);
typedef void (*update_hflags_fn)(void *env);
typedef int (*inta_fn)(void);
typedef uint32_t (*port_in_fn)(void *uc, uint32_t port, int size, void *ud);

/* One segment cache entry of CPUX86State (QEMU's SegmentCache). */
struct seg {
    uint32_t selector;
    uint32_t pad;
    uint64_t base;
    uint32_t limit;
    uint32_t flags;
};

/* One delivery the helper started: an exception, INT n or an external interrupt, with
 * the CPU state QEMU's -d int prints (mirrored in emu/cpu/helper.py). */
struct int_event {
    int64_t seq;                    /* the event's number since the engine started */
    int32_t vector, error_code;
    int32_t is_int;                 /* INT n, INT3, INTO */
    int32_t is_hw;                  /* an external interrupt (the PIC's) */
    int32_t cpl, pe;                /* CPL; CR0.PE */
    uint32_t cs, ss;                /* selectors */
    uint64_t eip, cs_base, esp, cr2, eax;
};

#define INT_LOG_SIZE 1024            /* a power of two */

/* Shared with Python through ctypes: the field order is mirrored in emu/cpu/helper.py. */
struct pyemu_cpu {
    void *uc;
    char *cpu;                      /* CPUState* */
    char *env;                      /* CPUX86State* */
    int64_t off_eip, off_eflags, off_hflags, off_segs, off_exc_index, off_exc_next_eip;
    int64_t off_efer, off_star, off_lstar, off_cstar, off_fmask;
    int64_t off_sysenter_cs, off_sysenter_esp, off_sysenter_eip, off_regs;
    uc_hook_add_fn hook_add;
    uc_hook_del_fn hook_del;
    uc_emu_stop_fn emu_stop;
    uc_reg_write_fn reg_write;
    uc_reg_read_fn reg_read;
    do_interrupt_fn do_interrupt;
    hardirq_fn hardirq;
    raise_exc_err_fn raise_exc_err;
    update_hflags_fn update_hflags;
    inta_fn inta;
    port_in_fn py_in;               /* Python's port-read dispatcher */
    /* pyemu's engine only, else NULL: icount counted per translation block by the
     * engine (0006-icount-by-blocks.patch) into `icount`, stopping at `icount_budget`,
     * instead of the code hook on every instruction */
    uc_icount_fn icount_blocks;
    /* PIO window: reads of `fast_port` are served from fast_buf[fast_pos:fast_end] here,
     * except the one that reaches fast_end, which goes to the device (end of a block) */
    int64_t fast_port;
    const uint8_t *fast_buf;
    int64_t fast_pos;
    int64_t fast_end;
    /* Constant port: byte reads of `const_port` answer `const_value` here while virtual
     * time is before `const_until` (ns); a device sets it when it knows its register
     * holds still until then (the PIT's port 61h while Linux polls it) */
    int64_t const_port;
    int64_t const_value;
    int64_t const_until;
    volatile int64_t intr;          /* the INTR line from the PIC */
    volatile int64_t kick;          /* end the running slice as soon as possible */
    int64_t stop_reason;
    int64_t icount;                 /* instructions executed (icount mode only) */
    int64_t icount_budget;          /* (side by side: the engine's icount words) */
    int64_t irqs_delivered;
    int64_t exceptions_delivered;
    /* the block hook, with an engine that has no loop hook (0 otherwise) */
    int64_t watch_hook;
    /* deadline thread: kicks the running slice (`in_run`) once CLOCK_MONOTONIC
     * reaches `deadline_ns` */
    int64_t deadline_ns;
    int64_t in_run;
    int64_t thread_running;
    /* virtual TSC: TSC = virtual ns + tsc_offset (1 GHz). Virtual ns is
     * (icount << clock_shift) + clock_base in icount mode (clock_shift >= 0), else
     * CLOCK_MONOTONIC ns - clock_base; the machine sets both before each slice. */
    int64_t off_tsc_aux;
    int64_t clock_shift;
    int64_t clock_base;
    int64_t tsc_offset;
    /* ring of the last INT_LOG_SIZE deliveries: event n at int_log[n % INT_LOG_SIZE];
     * with int_watch set, a slice ends once half the ring is unread (past int_read) */
    int64_t int_seq;
    int64_t int_read;
    int64_t int_watch;
    struct int_event int_log[INT_LOG_SIZE];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    /* pyemu's engine from 0008 on, else NULL: interrupts and kicks are taken by a
     * function the engine's execution loop calls between blocks (on_loop), which
     * a block reaches through QEMU's own exit check: `exit_word` set to -1 */
    uc_loop_hook_fn loop_hook;
    uc_exit_word_fn exit_word_fn;
    volatile int16_t *exit_word;
};

#define ENV(p, off, type) (*(type *)((p)->env + (p)->off))

/* Send the next block back to the engine's loop (on_loop), from any thread: QEMU's
 * exit request. The fence orders the flag the caller raised before the word: the loop
 * clears the word, then reads the flags (0008-loop-hook.patch). */
static inline void request_exit(struct pyemu_cpu *p)
{
    if (p->exit_word != NULL) {
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        *p->exit_word = -1;
    }
}

static void leave_tb(struct pyemu_cpu *p)
{
    /* Writing RIP through the API makes unicorn abandon the current translation block
     * and continue at the new RIP without returning from emu_start. */
    uint64_t rip = ENV(p, off_eip, uint64_t);
    p->reg_write(p->uc, UC_X86_REG_RIP, &rip);
}

static uint64_t *gpr(struct pyemu_cpu *p, int n);

/* CPUX86State: int error_code; int exception_is_int; then exception_next_eip. */
static int32_t env_i32_before_next_eip(struct pyemu_cpu *p, int back)
{
    return *(int32_t *)(p->env + p->off_exc_next_eip - back);
}

static void record(struct pyemu_cpu *p, int vector, int is_hw, int has_error)
{
    struct int_event *e = &p->int_log[p->int_seq % INT_LOG_SIZE];
    struct seg *segs = (struct seg *)(p->env + p->off_segs);
    uint64_t cr0 = 0, cr2 = 0;
    p->reg_read(p->uc, UC_X86_REG_CR0, &cr0);
    p->reg_read(p->uc, UC_X86_REG_CR2, &cr2);
    e->seq = p->int_seq;
    e->vector = vector;
    e->error_code = has_error ? env_i32_before_next_eip(p, 8) : 0;
    e->is_int = has_error ? env_i32_before_next_eip(p, 4) : 0;
    e->is_hw = is_hw;
    e->cpl = (int32_t)(ENV(p, off_hflags, uint32_t) & HF_CPL_MASK);
    e->pe = (int32_t)(cr0 & 1);
    e->cs = segs[1].selector;
    e->ss = segs[2].selector;
    e->eip = ENV(p, off_eip, uint64_t);
    e->cs_base = segs[1].base;
    e->esp = *gpr(p, 4);
    e->cr2 = cr2;
    e->eax = *gpr(p, 0);
    p->int_seq++;
    if (p->int_watch && p->int_seq - p->int_read >= INT_LOG_SIZE / 2) {
        p->kick = 1;                /* let Python log them before the ring wraps */
        request_exit(p);
    }
}

static void on_intr(void *uc, uint32_t intno, void *ud)
{
    struct pyemu_cpu *p = ud;
    (void)uc;
    record(p, (int)intno, 0, 1);
    if (intno == 8)
        p->stop_reason |= STOP_DOUBLE_FAULT;
    *(int32_t *)(p->cpu + p->off_exc_index) = (int32_t)intno;
    p->do_interrupt(p->cpu);                /* may longjmp on a nested fault */
    *(int32_t *)(p->cpu + p->off_exc_index) = -1;
    p->exceptions_delivered++;
    p->stop_reason &= ~STOP_DOUBLE_FAULT;
    /* unicorn sets EIP to exception_next_eip after the hook returns: point that at
     * the handler the delivery chose. */
    ENV(p, off_exc_next_eip, uint64_t) = ENV(p, off_eip, uint64_t);
}

static int on_insn_invalid(void *uc, void *ud)
{
    struct pyemu_cpu *p = ud;
    (void)uc;
    record(p, EXCP06_ILLOP, 0, 0);
    *(int32_t *)(p->cpu + p->off_exc_index) = EXCP06_ILLOP;
    p->do_interrupt(p->cpu);
    *(int32_t *)(p->cpu + p->off_exc_index) = -1;
    p->exceptions_delivered++;
    return 1;  /* unicorn ends emu_start after this hook anyway; the machine resumes */
}

static inline int irq_deliverable(struct pyemu_cpu *p)
{
    return p->intr && (ENV(p, off_eflags, uint32_t) & IF_MASK) &&
           !(ENV(p, off_hflags, uint32_t) & HF_INHIBIT_IRQ_MASK);
}

/* The PIC's interrupt, if the CPU takes one now; whether one was delivered. */
static int deliver_irq(struct pyemu_cpu *p)
{
    if (irq_deliverable(p)) {
        int vector = p->inta();
        if (vector >= 0) {
            record(p, vector, 1, 0);
            p->hardirq(p->env, vector, 1);
            p->irqs_delivered++;
            return 1;
        }
    }
    return 0;
}

/* The engine's loop, between blocks: a kick ends the slice, else the interrupt goes
 * in; non-zero tells the engine the flow changed (no chaining into the handler). */
static int on_loop(void *uc, void *ud)
{
    struct pyemu_cpu *p = ud;
    if (p->kick) {
        p->emu_stop(uc);
        return 0;
    }
    return deliver_irq(p);
}

/* The same from a block hook, with an engine that has no loop hook. */
static void on_block(void *uc, uint64_t addr, uint32_t size, void *ud)
{
    struct pyemu_cpu *p = ud;
    (void)addr;
    (void)size;
    if (p->kick) {
        p->emu_stop(uc);
        return;
    }
    if (deliver_irq(p))
        leave_tb(p);
}

/* The INTR line, from any thread: a raised line sends the running block to the loop. */
void pyemu_set_intr(struct pyemu_cpu *p, int level)
{
    p->intr = level;
    if (level)
        request_exit(p);
}

static void on_code_icount(void *uc, uint64_t addr, uint32_t size, void *ud)
{
    struct pyemu_cpu *p = ud;
    (void)addr;
    (void)size;
    if (p->icount >= p->icount_budget || p->kick) {
        p->emu_stop(uc);
        return;
    }
    p->icount++;
}

static void load_flat(struct pyemu_cpu *p, int seg, uint32_t selector, uint32_t flags)
{
    struct seg *s = (struct seg *)(p->env + p->off_segs) + seg;
    s->selector = selector;
    s->base = 0;
    s->limit = 0xFFFFFFFF;
    s->flags = flags;
}

/* Segment cache flag bits, as QEMU stores descriptor high words. */
#define DESC_G (1u << 23)
#define DESC_B (1u << 22)
#define DESC_L (1u << 21)
#define DESC_P (1u << 15)
#define DESC_S (1u << 12)
#define DESC_DPL(n) ((uint32_t)(n) << 13)
#define DESC_CODE_RX (0xBu << 8)     /* code, execute/read, accessed */
#define DESC_DATA_RW (0x3u << 8)     /* data, read/write, accessed */
enum { R_ES, R_CS, R_SS, R_DS };
enum { R_EAX = 0, R_ECX = 1, R_EDX = 2, R_ESP = 4, R_R11 = 11 };

static uint64_t *gpr(struct pyemu_cpu *p, int n)
{
    return (uint64_t *)(p->env + p->off_regs) + n;
}

/* QEMU keeps the arithmetic flags and DF outside env->eflags, so RFLAGS goes through
 * the API, which assembles and splits them. */
static uint64_t get_rflags(struct pyemu_cpu *p)
{
    uint64_t value = 0;
    p->reg_read(p->uc, UC_X86_REG_RFLAGS, &value);
    return value;
}

static void set_rflags(struct pyemu_cpu *p, uint64_t value)
{
    value |= 2;
    p->reg_write(p->uc, UC_X86_REG_RFLAGS, &value);
}

/* SYSCALL, which unicorn turns into a no-op: the instruction is 2 bytes and unicorn
 * adds that to EIP after the hook, so EIP is set 2 short of the target. */
static void on_syscall(void *uc, void *ud)
{
    struct pyemu_cpu *p = ud;
    uint64_t next = ENV(p, off_eip, uint64_t) + 2;
    uint64_t star = ENV(p, off_star, uint64_t);
    uint32_t sel = (uint32_t)(star >> 32) & 0xFFFC;
    (void)uc;
    if (!(ENV(p, off_efer, uint64_t) & EFER_SCE)) {
        p->raise_exc_err(p->env, EXCP06_ILLOP, 0);
        return;
    }
    if (ENV(p, off_hflags, uint32_t) & HF_LMA_MASK) {
        int cs64 = ((struct seg *)(p->env + p->off_segs))[R_CS].flags & DESC_L;
        *gpr(p, R_ECX) = next;
        *gpr(p, R_R11) = get_rflags(p);
        load_flat(p, R_CS, sel, DESC_G | DESC_L | DESC_P | DESC_S | DESC_CODE_RX);
        load_flat(p, R_SS, (sel + 8) & 0xFFFF, DESC_G | DESC_B | DESC_P | DESC_S | DESC_DATA_RW);
        set_rflags(p, get_rflags(p) & ~(ENV(p, off_fmask, uint64_t) & 0xFFFFFFFF) & ~RF_MASK);
        ENV(p, off_eip, uint64_t) = (cs64 ? ENV(p, off_lstar, uint64_t) : ENV(p, off_cstar, uint64_t)) - 2;
    } else {
        *gpr(p, R_ECX) = (uint32_t)next;
        load_flat(p, R_CS, sel, DESC_G | DESC_B | DESC_P | DESC_S | DESC_CODE_RX);
        load_flat(p, R_SS, (sel + 8) & 0xFFFF, DESC_G | DESC_B | DESC_P | DESC_S | DESC_DATA_RW);
        set_rflags(p, get_rflags(p) & ~(uint64_t)(IF_MASK | VM_MASK | RF_MASK));
        ENV(p, off_eip, uint64_t) = (uint32_t)star - 2;
    }
    p->update_hflags(p->env);
}

static void on_sysenter(void *uc, void *ud)
{
    struct pyemu_cpu *p = ud;
    uint32_t cs = (uint32_t)ENV(p, off_sysenter_cs, uint64_t) & 0xFFFC;
    int lma = (ENV(p, off_hflags, uint32_t) & HF_LMA_MASK) != 0;
    (void)uc;
    if (cs == 0) {
        p->raise_exc_err(p->env, EXCP0D_GPF, 0);
        return;
    }
    set_rflags(p, get_rflags(p) & ~(uint64_t)(IF_MASK | VM_MASK | RF_MASK));
    load_flat(p, R_CS, cs, DESC_G | (lma ? DESC_L : DESC_B) | DESC_P | DESC_S | DESC_CODE_RX);
    load_flat(p, R_SS, cs + 8, DESC_G | DESC_B | DESC_P | DESC_S | DESC_DATA_RW);
    *gpr(p, R_ESP) = ENV(p, off_sysenter_esp, uint64_t);
    ENV(p, off_eip, uint64_t) = ENV(p, off_sysenter_eip, uint64_t) - 2;
    p->update_hflags(p->env);
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- virtual TSC ---------------------------------------------------------------- */

/* Realtime: a slice whose deadline has passed ends at the next block even if the
 * deadline thread has not run yet. On a busy host that thread can wait milliseconds for
 * a core while this one runs on, and a guest that reads the time (the TSC, a port) could
 * see it pass a timer's edge that no interrupt had followed; the PIT's edges of that
 * wait would then collapse into one request in the PIC. */
static int64_t check_deadline(struct pyemu_cpu *p, int64_t now)
{
    if (now >= __atomic_load_n(&p->deadline_ns, __ATOMIC_RELAXED) && !p->kick) {
        p->kick = 1;
        request_exit(p);
    }
    return now;
}

/* The machine's virtual time now, as its clock computes it (emu/clock.py time_base). */
static int64_t virtual_ns(struct pyemu_cpu *p)
{
    return p->clock_shift >= 0 ? (p->icount << p->clock_shift) + p->clock_base
                               : check_deadline(p, mono_ns()) - p->clock_base;
}

static uint64_t read_tsc(struct pyemu_cpu *p)
{
    return (uint64_t)virtual_ns(p) + (uint64_t)p->tsc_offset;  /* wraps like the 64-bit counter */
}

/* The engine checks CR4.TSD before calling these hooks; returning 1 skips its own
 * implementation. EIP is synced, and EIP/register writes below land in env. */
static int on_rdtsc(void *uc, void *ud)
{
    struct pyemu_cpu *p = ud;
    uint64_t tsc = read_tsc(p);
    (void)uc;
    *gpr(p, R_EAX) = (uint32_t)tsc;
    *gpr(p, R_EDX) = (uint32_t)(tsc >> 32);
    return 1;
}

static int on_rdtscp(void *uc, void *ud)
{
    struct pyemu_cpu *p = ud;
    on_rdtsc(uc, ud);
    *gpr(p, R_ECX) = ENV(p, off_tsc_aux, uint32_t);
    return 1;
}

int pyemu_watch(struct pyemu_cpu *p, int on);

static uint32_t on_in(void *uc, uint32_t port, int size, void *ud)
{
    struct pyemu_cpu *p = ud;
    if ((int64_t)port == p->fast_port && p->fast_pos + size < p->fast_end) {
        uint32_t value = 0;
        memcpy(&value, p->fast_buf + p->fast_pos, (size_t)size);  /* x86 host: little-endian */
        p->fast_pos += size;
        return value;
    }
    int64_t now = virtual_ns(p);  /* (realtime: also ends an overdue slice) */
    if ((int64_t)port == p->const_port && size == 1 && now < p->const_until)
        return (uint32_t)p->const_value;
    return p->py_in(uc, port, size, NULL);
}

int pyemu_cpu_attach(struct pyemu_cpu *p, int icount)
{
    size_t h;
    int err = 0;
    err |= p->hook_add(p->uc, &h, UC_HOOK_INTR, (void *)on_intr, p, (uint64_t)1, (uint64_t)0);
    err |= p->hook_add(p->uc, &h, UC_HOOK_INSN_INVALID, (void *)on_insn_invalid, p,
                       (uint64_t)1, (uint64_t)0);
    err |= p->hook_add(p->uc, &h, UC_HOOK_INSN, (void *)on_syscall, p, (uint64_t)1, (uint64_t)0,
                       UC_X86_INS_SYSCALL);
    err |= p->hook_add(p->uc, &h, UC_HOOK_INSN, (void *)on_in, p, (uint64_t)1, (uint64_t)0,
                       UC_X86_INS_IN);
    err |= p->hook_add(p->uc, &h, UC_HOOK_INSN, (void *)on_sysenter, p, (uint64_t)1, (uint64_t)0,
                       UC_X86_INS_SYSENTER);
    err |= p->hook_add(p->uc, &h, UC_HOOK_INSN, (void *)on_rdtsc, p, (uint64_t)1, (uint64_t)0,
                       UC_X86_INS_RDTSC);
    err |= p->hook_add(p->uc, &h, UC_HOOK_INSN, (void *)on_rdtscp, p, (uint64_t)1, (uint64_t)0,
                       UC_X86_INS_RDTSCP);
    if (icount && p->icount_blocks)
        err |= p->icount_blocks(p->uc, &p->icount);
    else if (icount)
        err |= p->hook_add(p->uc, &h, UC_HOOK_CODE, (void *)on_code_icount, p, (uint64_t)1,
                           (uint64_t)0);
    /* Delivery stays on in both modes. Slices end from inside the CPU thread, at a
     * block boundary, never by uc_emu_stop from another thread (other threads only set
     * the exit word), and translated code is never flushed to add or drop a hook: Linux
     * crashed on stale translations of code it had patched (alternatives, entry code)
     * with either of those in play. */
    err |= pyemu_watch(p, 1);
    return err;
}

_Static_assert(offsetof(struct pyemu_cpu, icount_budget) == offsetof(struct pyemu_cpu, icount) + 8,
               "the engine's icount words are icount and icount_budget, side by side");

/* Turn interrupt delivery and kicks on or off. With pyemu's engine (0008), the
 * engine's loop calls on_loop between blocks, and a block goes back to the loop when
 * the exit word is set (request_exit): nothing runs per block. With any other engine,
 * a block hook on every block (the caller flushes translated code after, so that
 * blocks are translated with or without its call). */
int pyemu_watch(struct pyemu_cpu *p, int on)
{
    size_t h = 0;
    int err = 0;
    if (p->loop_hook != NULL) {
        if (on && p->exit_word == NULL)
            p->exit_word = p->exit_word_fn(p->uc);
        err = p->loop_hook(p->uc, on ? on_loop : NULL, p);
        if (on && (p->intr || p->kick))
            request_exit(p);
        return err;
    }
    if (on && !p->watch_hook) {
        err = p->hook_add(p->uc, &h, UC_HOOK_BLOCK, (void *)on_block, p, (uint64_t)1,
                          (uint64_t)0);
        p->watch_hook = (int64_t)h;
    } else if (!on && p->watch_hook) {
        err = p->hook_del(p->uc, (size_t)p->watch_hook);
        p->watch_hook = 0;
    }
    return err;
}

/* ---- deadline thread ------------------------------------------------------------ */

static void wait_until(struct pyemu_cpu *p, int64_t ns)
{
    struct timespec ts = {ns / 1000000000, ns % 1000000000};
    pthread_cond_timedwait(&p->cond, &p->lock, &ts);
}

/* The thread only raises `kick` (and the exit word); on_loop (the block hook with an
 * engine that has no loop hook, or icount's code hook) stops the engine from the CPU
 * thread. A kick stays raised until the slice ends, so none is lost between two
 * emu_starts. A slice with no deadline does not wake the thread: it has nothing to arm. */

static void *deadline_main(void *arg)
{
    struct pyemu_cpu *p = arg;
    pthread_mutex_lock(&p->lock);
    while (p->thread_running) {
        if (p->in_run && mono_ns() >= p->deadline_ns) {
            p->kick = 1;
            request_exit(p);
            pthread_cond_wait(&p->cond, &p->lock);  /* until the next slice begins */
        } else if (!p->in_run || p->deadline_ns == INT64_MAX) {
            pthread_cond_wait(&p->cond, &p->lock);
        } else {
            wait_until(p, p->deadline_ns);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int pyemu_deadline_start(struct pyemu_cpu *p)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &attr);
    pthread_mutex_init(&p->lock, NULL);
    p->deadline_ns = INT64_MAX;
    p->thread_running = 1;
    return pthread_create(&p->thread, NULL, deadline_main, p);
}

/* A slice starts: it ends when CLOCK_MONOTONIC reaches `ns` (INT64_MAX: never). */
void pyemu_run_begin(struct pyemu_cpu *p, int64_t ns)
{
    pthread_mutex_lock(&p->lock);
    p->deadline_ns = ns;
    p->in_run = 1;
    if (ns != INT64_MAX)  /* no deadline (icount, no timer): nothing for it to arm */
        pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/* Move the running slice's end (a timer was armed to fire before it). */
void pyemu_deadline_set(struct pyemu_cpu *p, int64_t ns)
{
    pthread_mutex_lock(&p->lock);
    p->deadline_ns = ns;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

void pyemu_run_end(struct pyemu_cpu *p)
{
    pthread_mutex_lock(&p->lock);
    p->in_run = 0;
    p->kick = 0;
    p->deadline_ns = INT64_MAX;
    pthread_mutex_unlock(&p->lock);
}

/* From any thread: end the running slice, or the next one, promptly. */
void pyemu_kick(struct pyemu_cpu *p)
{
    pthread_mutex_lock(&p->lock);
    p->kick = 1;
    request_exit(p);
    pthread_mutex_unlock(&p->lock);
}

void pyemu_deadline_stop(struct pyemu_cpu *p)
{
    pthread_mutex_lock(&p->lock);
    p->thread_running = 0;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
}

int64_t pyemu_struct_size(void)
{
    return (int64_t)sizeof(struct pyemu_cpu);
}

/* ---- memory-region lookup cache -------------------------------------------------
 *
 * unicorn 2.1.4 sends every guest store to RAM down the softmmu slow path, and that
 * path asks `uc->memory_mapping(uc, paddr)` for the store's MemoryRegion twice (in the
 * store helper and in notdirty_write); each ask is a full flatview_translate, ~20 % of
 * a Linux boot. The regions only change through the API (map, unmap, mmio_map,
 * protect), so the helper answers from the list of mapped ranges instead: the
 * machine suspends the cache around each such call (uc_mem_unmap itself asks for
 * regions while it splits them) and hands the new list over after. Addresses outside
 * every range go to the engine's own lookup. */

typedef void *(*mem_mapping_fn)(void *uc, uint64_t addr);

#define MR_RANGES 64
#define MR_CACHES 64

struct mr_range {
    uint64_t base, end;             /* [base, end) */
    void *mr;
};

struct mr_cache {
    void *uc;                       /* NULL: slot free */
    int enabled;
    int n, last;
    struct mr_range r[MR_RANGES];
};

static struct mr_cache mr_caches[MR_CACHES];
static mem_mapping_fn mr_lookup;    /* the engine's own (find_memory_mapping) */
static pthread_mutex_t mr_lock = PTHREAD_MUTEX_INITIALIZER;
/* the cache used last, by any thread: a hint, checked against `uc` on each use */
static struct mr_cache *volatile mr_last;

static struct mr_cache *mr_cache_of(void *uc)
{
    for (int i = 0; i < MR_CACHES; i++)
        if (mr_caches[i].uc == uc)
            return &mr_caches[i];
    return NULL;
}

static void *cached_mapping(void *uc, uint64_t addr)
{
    struct mr_cache *c = mr_last;
    if (!c || c->uc != uc) {
        c = mr_cache_of(uc);
        if (!c)
            return mr_lookup(uc, addr);
        mr_last = c;
    }
    if (c->enabled) {
        struct mr_range *r = &c->r[c->last];
        if (addr - r->base < r->end - r->base)
            return r->mr;
        for (int i = 0; i < c->n; i++) {
            r = &c->r[i];
            if (addr - r->base < r->end - r->base) {
                c->last = i;
                return r->mr;
            }
        }
    }
    return mr_lookup(uc, addr);
}

/* Route the engine's region lookups (the function pointer at `off` in uc_struct, which
 * must hold `lookup`) through the cache; it starts suspended. 0 on success. */
int pyemu_mr_cache_attach(void *uc, int64_t off, void *lookup)
{
    mem_mapping_fn *slot = (mem_mapping_fn *)((char *)uc + off);
    struct mr_cache *c;
    int err = -1;
    pthread_mutex_lock(&mr_lock);
    if (*slot == (mem_mapping_fn)lookup && (!mr_lookup || mr_lookup == (mem_mapping_fn)lookup)) {
        c = mr_cache_of(uc);        /* an engine freed without detach, same address */
        if (!c)
            c = mr_cache_of(NULL);
        if (c) {
            memset(c, 0, sizeof(*c));
            c->uc = uc;
            mr_lookup = (mem_mapping_fn)lookup;
            *slot = (mem_mapping_fn)cached_mapping;
            err = 0;
        }
    }
    pthread_mutex_unlock(&mr_lock);
    return err;
}

/* Before the region list changes: every lookup goes to the engine until the next set. */
void pyemu_mr_cache_suspend(void *uc)
{
    struct mr_cache *c = mr_cache_of(uc);
    if (c)
        c->enabled = 0;
}

/* The mapped ranges now, as n (base, end) pairs; each is kept only if the engine
 * resolves its first and last byte to the same region. */
void pyemu_mr_cache_set(void *uc, int n, const uint64_t *ranges)
{
    struct mr_cache *c = mr_cache_of(uc);
    if (!c)
        return;
    c->enabled = 0;
    c->n = 0;
    c->last = 0;
    memset(c->r, 0, sizeof(c->r));
    for (int i = 0; i < n && c->n < MR_RANGES; i++) {
        uint64_t base = ranges[2 * i], end = ranges[2 * i + 1];
        void *mr = end > base ? mr_lookup(uc, base) : NULL;
        if (mr && mr_lookup(uc, end - 1) == mr) {
            c->r[c->n].base = base;
            c->r[c->n].end = end;
            c->r[c->n].mr = mr;
            c->n++;
        }
    }
    c->enabled = 1;
}

/* The engine is going away: free its slot (the engine itself is not touched, it may
 * already be closed). */
void pyemu_mr_cache_detach(void *uc)
{
    pthread_mutex_lock(&mr_lock);
    struct mr_cache *c = mr_cache_of(uc);
    if (c) {
        c->enabled = 0;
        c->uc = NULL;
    }
    pthread_mutex_unlock(&mr_lock);
}
