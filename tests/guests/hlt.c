/*
 * hlt: HLT wakes on each timer interrupt; with IF=0 an interrupt waits in the PIC.
 *
 * Intel SDM vol. 2 HLT: execution resumes when an unmasked interrupt arrives (and with
 * IF=1 it is delivered, so the instruction after HLT runs after the handler).  STI
 * delays recognition by one instruction.  8259A: an edge-triggered request stays in
 * IRR until acknowledged, and further edges meanwhile collapse into that one bit.
 */
#include "guest.h"

const char guest_name[] = "hlt";

#define WAKES 20
/* Channel 0 at 100 Hz: 11932 PIT clocks, in whole ns. */
#define PERIOD_NS 10000067u


static void test_hlt_wakes(void)
{
    int woken_by_tick = 0;
    sti();
    for (int i = 0; i < WAKES; i++) {
        int before = pit_ticks;
        /* STI's shadow covers HLT: no interrupt can slip in between the test and HLT. */
        __asm__ volatile("cli; sti; hlt" ::: "memory");
        if (pit_ticks != before)
            woken_by_tick++;
    }
    cli();
    check(woken_by_tick == WAKES, "sti; hlt woke %d/%d times with IRQ0 delivered", woken_by_tick,
          WAKES);
}

static void test_if_clear(void)
{
    cli();
    int before = pit_ticks;
    pit_delay_us(35000); /* >= 3 periods of the 100 Hz timer */
    int during = pit_ticks - before;
    uint16_t irr = pic_read_irr();
    check(during == 0, "IF=0 for 35 ms: %d IRQ0 delivered", during);
    check(irr & 1, "IRQ0 waits in the PIC IRR (%04x)", irr);

    int spins = 0;
    before = pit_ticks;
    uint64_t start = rdtsc();
    sti();
    while (pit_ticks == before && spins < 100000)
        spins++;
    cli();
    int after = pit_ticks - before;
    /* A second edge can only get in before the loop looks if a stall (stall.c) as long as
     * a period held up the first interrupt's handler. */
    int excused = (int)(stall_span(start, rdtsc()) / PERIOD_NS);
    check(after >= 1 && after <= 1 + excused,
          "after sti: %d interrupt(s) delivered (the masked edges collapse to 1; %d excused)",
          after, excused);
    check(spins < 1000, "delivered promptly after sti (%d spins)", spins);
}

int main(void)
{
    pit_ticks_start(100);
    test_hlt_wakes();
    test_if_clear();
    return checks_failed();
}
