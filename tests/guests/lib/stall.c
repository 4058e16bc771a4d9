/*
 * Stalls: spans of virtual time in which the guest ran no instructions (guest.h says why
 * they happen in realtime mode). Intel SDM vol. 3B 17.17: the TSC counts at a constant
 * rate, which pyemu makes one tick per virtual nanosecond.
 */
#include "guest.h"

static uint32_t stalls;
static uint32_t longest_ns;

uint32_t stall_span(uint64_t a, uint64_t b)
{
    uint64_t d = b > a ? b - a : 0;
    uint32_t ns = d > 0xFFFFFFFFull ? 0xFFFFFFFFu : (uint32_t)d;
    if (ns > STALL_NS) {
        stalls++;
        if (ns > longest_ns)
            longest_ns = ns;
    }
    return ns;
}

void stall_report(void)
{
    if (stalls)
        printf("stalled %u time(s), longest %u us\n", stalls, longest_ns / 1000u);
}
