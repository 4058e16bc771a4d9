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

static volatile int ticks;

static void on_irq0(struct frame32 *f)
{
    (void)f;
    ticks++;
    pic_eoi(0);
}

static void test_hlt_wakes(void)
{
    int woken_by_tick = 0;
    sti();
    for (int i = 0; i < WAKES; i++) {
        int before = ticks;
        /* STI's shadow covers HLT: no interrupt can slip in between the test and HLT. */
        __asm__ volatile("cli; sti; hlt" ::: "memory");
        if (ticks != before)
            woken_by_tick++;
    }
    cli();
    check(woken_by_tick == WAKES, "sti; hlt woke %d/%d times with IRQ0 delivered", woken_by_tick,
          WAKES);
}

static void test_if_clear(void)
{
    cli();
    int before = ticks;
    pit_delay_us(35000); /* >= 3 periods of the 100 Hz timer */
    int during = ticks - before;
    uint16_t irr = pic_read_irr();
    check(during == 0, "IF=0 for 35 ms: %d IRQ0 delivered", during);
    check(irr & 1, "IRQ0 waits in the PIC IRR (%04x)", irr);

    int spins = 0;
    before = ticks;
    sti();
    while (ticks == before && spins < 100000)
        spins++;
    cli();
    int after = ticks - before;
    check(after == 1, "after sti: %d interrupt(s) delivered (the masked edges collapse to 1)",
          after);
    check(spins < 1000, "delivered promptly after sti (%d spins)", spins);
}

int main(void)
{
    idt32_init();
    isr32_register(PIC_VEC_BASE + 0, on_irq0);
    pic_init();
    pit_set_periodic(100);
    pic_unmask(0);
    test_hlt_wakes();
    test_if_clear();
    return checks_failed();
}
