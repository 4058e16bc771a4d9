/*
 * Freestanding runtime for pyemu test guests.
 *
 * Machine contract (see tests/guests/README.md): Multiboot v1 entry in 32-bit protected
 * mode, COM1 16550A at 0x3F8, debugcon at 0xE9, isa-debug-exit at 0xF4 (with -device
 * isa-debug-exit,iobase=0xf4,iosize=0x04), 8259 pair, 8254 PIT.  Every guest ends with exactly one line "PASS <name>" or
 * "FAIL <name>: <why>" on COM1 and a write of 0 (pass) or 1 (fail) to port 0xF4.
 */
#ifndef GUEST_H
#define GUEST_H

typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
typedef signed char int8_t;
typedef short int16_t;
typedef int int32_t;
typedef long long int64_t;
typedef unsigned int size_t;
typedef unsigned int uintptr_t;

#define NULL ((void *)0)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Each guest defines its name; it appears in the verdict line. */
extern const char guest_name[];

/* ---- GDT selectors (lib/start.S lays the table out; keep in sync) ---- */
#define SEL_CODE32 0x08  /* ring-0 32-bit code */
#define SEL_DATA 0x10    /* ring-0 data */
#define SEL_UCODE32 0x18 /* ring-3 32-bit code (SYSENTER_CS + 16) */
#define SEL_UDATA 0x20   /* ring-3 data (SYSENTER_CS + 24) */
#define SEL_CODE64 0x28  /* ring-0 64-bit code (STAR[47:32]) */
#define SEL_DATA64 0x30  /* ring-0 data (STAR[47:32] + 8); also STAR[63:48] base */
#define SEL_UDATA64 0x38 /* ring-3 data (STAR[63:48] + 8) */
#define SEL_UCODE64 0x40 /* ring-3 64-bit code (STAR[63:48] + 16) */
#define SEL_TSS 0x48     /* TSS; 16 bytes in long mode */

/* ---- Multiboot ---- */
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u
struct multiboot_info {
    uint32_t flags;
    uint32_t mem_lower, mem_upper;
    uint32_t boot_device;
    uint32_t cmdline;
    uint32_t mods_count, mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length, mmap_addr;
};
extern uint32_t mb_magic;
extern struct multiboot_info *mb_info;

/* ---- port I/O and CPU helpers ---- */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint16_t inw(uint16_t port)
{
    uint16_t v;
    __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint32_t inl(uint16_t port)
{
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
/* A write to the POST port takes about 1 us on real ISA hardware. */
static inline void io_wait(void) { outb(0x80, 0); }

static inline void cli(void) { __asm__ volatile("cli" ::: "memory"); }
static inline void sti(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void hlt(void) { __asm__ volatile("hlt" ::: "memory"); }
static inline uint32_t read_eflags(void)
{
    uint32_t v;
    __asm__ volatile("pushfl; popl %0" : "=r"(v));
    return v;
}
#define DEFINE_CR(n)                                                          \
    static inline uint32_t read_cr##n(void)                                   \
    {                                                                         \
        uint32_t v;                                                           \
        __asm__ volatile("mov %%cr" #n ", %0" : "=r"(v));                     \
        return v;                                                             \
    }                                                                         \
    static inline void write_cr##n(uint32_t v)                                \
    {                                                                         \
        __asm__ volatile("mov %0, %%cr" #n ::"r"(v) : "memory");              \
    }
DEFINE_CR(0)
DEFINE_CR(2)
DEFINE_CR(3)
DEFINE_CR(4)
static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}
static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}
static inline uint16_t read_cs(void)
{
    uint16_t v;
    __asm__ volatile("mov %%cs, %0" : "=r"(v));
    return v;
}

/* pyemu's TSC counts virtual nanoseconds (1 GHz); see tsc.c. */
static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

#define CR0_PE (1u << 0)
#define CR0_PG (1u << 31)
#define CR4_PSE (1u << 4)
#define CR4_PAE (1u << 5)
#define MSR_EFER 0xC0000080u
#define EFER_SCE (1u << 0)
#define EFER_LME (1u << 8)
#define EFER_LMA (1u << 10)
#define EFLAGS_IF (1u << 9)

/* ---- runtime.c ---- */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

#define COM1 0x3F8
void serial_init(void);
void serial_putc(char c);
void serial_puts(const char *s);
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* check() prints "  ok  <what>" or "  BAD <what>"; the first BAD becomes the FAIL reason. */
int check(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fail_reason(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int checks_failed(void);
/* Prints the verdict line and writes 0 (pass, and no failed check) or 1 to port 0xF4. */
void exit_verdict(int pass) __attribute__((noreturn));
void guest_fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

int main(void);

/* ---- GDT / TSS (gdt.c) ---- */
void gdt_set_tss32(uint32_t esp0);
void gdt_set_tss64(uint64_t rsp0);

/* ---- 32-bit IDT (idt32.c, isr32.S) ---- */
/* Layout pushed by lib/isr32.S, lowest address first. */
struct frame32 {
    uint32_t es, ds;
    uint32_t edi, esi, ebp, esp_pusha, ebx, edx, ecx, eax;
    uint32_t vector, error;
    uint32_t eip, cs, eflags;
    uint32_t user_esp, user_ss; /* only present after a privilege change */
};
typedef void (*isr32_fn)(struct frame32 *f);
#define GATE_INT 0x8E     /* present, DPL0, 32-bit interrupt gate */
#define GATE_INT_U 0xEE   /* present, DPL3, 32-bit interrupt gate */
#define GATE_TRAP 0x8F    /* present, DPL0, 32-bit trap gate */
void idt32_init(void);  /* gates 0-47 and 0x80 to the stubs, lidt */
void idt32_load(void);
void idt32_set_gate(int vec, uint32_t handler, uint8_t type_attr);
void idt32_set_present(int vec, int present);
uint32_t isr32_stub(int vec); /* address of the stub for vec (0-47, 0x80) or 0 */
void isr32_register(int vec, isr32_fn fn);
extern void isr32_user_return(void); /* vector stub that ends enter_user32() */
/* Runs entry at CPL3 (CS 0x1B, SS/DS 0x23, IF=0) until it executes INT 0x81. */
void enter_user32(void (*entry)(void), uint32_t user_esp);

/* ---- 8259 PIC (pic.c) ---- */
#define PIC_VEC_BASE 0x20
void pic_init(void);     /* ICW1-4: master 0x20-0x27, slave 0x28-0x2F, all masked but cascade */
void pic_unmask(int irq);
void pic_mask(int irq);
void pic_eoi(int irq);
uint16_t pic_read_irr(void);
uint16_t pic_read_isr(void);

/* ---- 8254 PIT (pit.c) ---- */
#define PIT_HZ 1193182u
void pit_set_periodic(uint32_t hz); /* channel 0, mode 2 */
/* IDT, PIC and channel 0 at hz with IRQ0 unmasked, counting into pit_ticks; the caller
 * does the sti(). */
extern volatile int pit_ticks;
void pit_ticks_start(uint32_t hz);
void pit_ch2_oneshot(uint16_t count); /* channel 2, mode 0, gate on, speaker off */
int pit_ch2_done(void);               /* port 0x61 bit 5 = OUT2 */
void pit_delay_us(uint32_t us);       /* busy wait on channel 2 */
/* Busy-waits (interrupts untouched) until *p >= target or ms elapse; returns *p >= target. */
int wait_count(volatile int *p, int target, uint32_t ms);

/* ---- stalls (stall.c) ----
 * In realtime mode virtual time is the host's, so a host that deschedules pyemu makes it
 * jump between two instructions, as a real CPU held off the bus would see it: the PIT's
 * edges of that time collapse into one request in the PIC, and a measurement that spans
 * the jump is off by it. A guest that measures one timer against another reads the TSC
 * around each step; a span of virtual time longer than STALL_NS between two reads a few
 * instructions apart is a stall, and the guest excuses only what the stalls it saw can
 * explain. exit_verdict() reports them, so a test can demand that an icount run (virtual
 * time from instructions) has none. */
#define STALL_NS 500000u
/* Virtual ns from TSC value a to b, clamped to 32 bits; a span over STALL_NS is counted. */
uint32_t stall_span(uint64_t a, uint64_t b);
void stall_report(void); /* "stalled N time(s), longest L us", if any */

/* ---- long mode (long.c, long.S) ---- */
extern uint64_t lm_pml4[512], lm_pdpt[512], lm_pd[512];
/* Identity-maps 0..1 GiB with 2 MiB pages (user-accessible, writable) into lm_pml4. */
void lm_require(void); /* fails the guest unless CPUID reports long mode */
void lm_build_identity(void);
/* Paging off -> IA-32e: PAE, CR3=lm_pml4, EFER.LME, CR0.PG; returns in compatibility mode. */
void lm_enter(void);
/* Compatibility mode -> legacy 32-bit protected mode, paging off, EFER.LME clear. */
void lm_leave(void);
/* Far-jumps to the 64-bit code segment, calls fn(arg) (SysV: arg in RDI), returns RAX low. */
uint32_t call64(void *fn, uint32_t arg);

struct frame64 {
    uint64_t es, ds, cr2;
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss;
};
typedef void (*isr64_fn)(struct frame64 *f);
void idt64_init(void); /* 64-bit gates 0-47 and 0x80, 0x81 (user return, DPL3); lidt in 64-bit mode */
void idt64_set_present(int vec, int present);
void idt64_set_dpl(int vec, int dpl);
void isr64_register(int vec, isr64_fn fn);
/* Runs entry in 64-bit ring 3 (CS 0x43, SS 0x3B, IF=0) until it executes INT 0x81. */
void enter_user64(void *entry, uint32_t user_rsp);

#endif
