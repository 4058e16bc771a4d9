/*
 * tsc: the time-stamp counter is virtual time at 1 GHz, measured against the 8254.
 *
 * Intel SDM vol. 2B RDTSC (EDX:EAX = TSC), RDTSCP (also ECX = IA32_TSC_AUX[31:0], MSR
 * C0000103h); vol. 3A 17.17 (the TSC counts from 0 after reset; CPUID 80000007h EDX bit 8
 * = invariant TSC, 80000001h EDX bit 27 = RDTSCP). pyemu's TSC ticks once per virtual
 * nanosecond, so a channel-2 one-shot of N PIT clocks (Intel 8254 datasheet, mode 0) spans
 * N * 10^9 / 1193182 TSC ticks.
 */
#include "guest.h"

const char guest_name[] = "tsc";

#define WINDOW_MS 20
#define WINDOWS 5
#define TOLERANCE_PERCENT 2
#define TSC_AUX_VALUE 0x5A17C0DEu
#define MSR_TSC_AUX 0xC0000103u
#define BOOT_BOUND 5000000000ull /* the TSC starts at 0: 5 s of guest time at most by now */

static inline uint64_t rdtscp(uint32_t *aux)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(*aux));
    return ((uint64_t)hi << 32) | lo;
}

/* RDTSCP exists where CPUID says so (-cpu max; QEMU's qemu64 has none). */
static int has_rdtscp(void)
{
    uint32_t a, b, c, d;
    cpuid(0x80000001, &a, &b, &c, &d);
    return (d & (1u << 27)) != 0;
}

static void test_features(void)
{
    uint32_t a, b, c, d;
    cpuid(0x80000007, &a, &b, &c, &d);
    check(d & (1u << 8), "CPUID 80000007h reports an invariant TSC (EDX %08x)", d);
}

static void test_starts_near_zero(void)
{
    uint64_t t = rdtsc();
    check(t < BOOT_BOUND, "TSC counts from reset: %llx", t);
}

static void test_monotonic(void)
{
    uint64_t prev = rdtsc(), first = prev;
    int backwards = 0;
    for (int i = 0; i < 10000; i++) {
        uint64_t t = rdtsc();
        if (t < prev)
            backwards++;
        prev = t;
    }
    check(backwards == 0, "10000 RDTSCs never go backwards (%d did)", backwards);
    check(prev > first, "the TSC advanced over 10000 reads");
}

/* Bounds on the TSC ticks over one channel-2 one-shot of count PIT clocks. The one-shot
 * starts between the reads around the writing of its count, and ends after the last poll
 * that saw OUT2 low and before the read after the poll that saw it high. A stall
 * (stall.c) widens the bounds, and never moves them off the true value. */
struct bounds {
    uint32_t lo, hi;
};

static uint32_t clamp32(uint64_t v) { return v > 0xFFFFFFFFull ? 0xFFFFFFFFu : (uint32_t)v; }

static struct bounds tsc_over_pit(uint16_t count)
{
    uint64_t t0 = rdtsc();
    pit_ch2_oneshot(count);
    uint64_t t1 = rdtsc(), low = t0;
    for (;;) {
        uint64_t polled = rdtsc();
        if (pit_ch2_done())
            break;
        low = polled;
    }
    uint64_t end = rdtsc();
    stall_span(t0, t1);
    stall_span(low, end);
    struct bounds b = {low > t1 ? clamp32(low - t1) : 0, clamp32(end - t0)};
    return b;
}

static void test_rate(void)
{
    uint16_t count = (uint16_t)(PIT_HZ * WINDOW_MS / 1000);
    /* 10^9 / 1193182 ns per PIT clock, in 32-bit arithmetic: count * 838.0953 */
    uint32_t want = count * 838u + count / 10;
    uint32_t slack = want / 100 * TOLERANCE_PERCENT;
    int met = 0;
    struct bounds tightest = {0, 0xFFFFFFFFu};
    for (int i = 0; i < WINDOWS; i++) {
        struct bounds b = tsc_over_pit(count);
        met += b.lo <= want + slack && b.hi >= want - slack;
        if (b.hi - b.lo < tightest.hi - tightest.lo)
            tightest = b;
    }
    printf("TSC ticks over %u PIT clocks (%u ns): the tightest of %d windows %u..%u\n", count,
           want, WINDOWS, tightest.lo, tightest.hi);
    check(met == WINDOWS, "TSC rate 1 GHz against the PIT: %d of %d windows meet %u +- %u%%",
          met, WINDOWS, want, TOLERANCE_PERCENT);
}

static void test_rdtscp(void)
{
    uint32_t aux = 0;
    wrmsr(MSR_TSC_AUX, TSC_AUX_VALUE);
    uint64_t before, t, after;
    /* Three reads in a row; a stall (stall.c) between them is no fault of the counter, so
     * a try that saw one is made again (up to 8 tries). */
    for (int i = 0; i < 8; i++) {
        before = rdtsc();
        t = rdtscp(&aux);
        after = rdtsc();
        if (stall_span(before, after) < 1000000)
            break;
    }
    check(aux == TSC_AUX_VALUE, "RDTSCP returns IA32_TSC_AUX in ECX (%08x)", aux);
    check(before <= t && t <= after, "RDTSCP reads the same counter as RDTSC (%llx <= %llx <= %llx)",
          before, t, after);
    check(after - before < 1000000, "two RDTSCs around it lie within 1 ms (%llx ticks)",
          after - before);
}

int main(void)
{
    idt32_init();
    test_starts_near_zero();
    test_features();
    test_monotonic();
    test_rate();
    if (has_rdtscp())
        test_rdtscp();
    else
        printf("RDTSCP not in CPUID 80000001h EDX: not tried\n");
    return checks_failed();
}
