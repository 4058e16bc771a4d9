/*
 * pit: 8254 channel 0 as a 1000 Hz rate generator on IRQ0, measured against channel 2.
 *
 * Intel 8254 datasheet: mode 2 divides the 1.193182 MHz input by the count (1193 ->
 * 1000.15 Hz); mode 0 drives OUT low when the count is written and high at terminal
 * count, which the PC exposes as port 0x61 bit 5.  The 8259 must be initialised by the
 * guest (no BIOS): ICW1-4, then IRQ0 unmasked, EOI per interrupt.
 */
#include "guest.h"

const char guest_name[] = "pit";

#define WINDOW_MS 50
#define TOLERANCE 3
/* Channel 0's period: 1193 PIT clocks (pit_set_periodic(1000)), in whole ns. */
#define PERIOD_NS 999847u

int main(void)
{
    pit_ticks_start(1000);
    sti();

    /* Wait for the first tick so the window starts with the rate generator running. */
    if (!check(wait_count(&pit_ticks, 1, 100), "IRQ0 arrives after PIC/PIT setup"))
        return 1;

    /* Each poll reads the TSC: a stall of n ns holds up to n / PERIOD_NS + 1 edges, of
     * which the PIC delivers one, so it can take n / PERIOD_NS ticks from the count. */
    uint64_t prev = rdtsc();
    pit_ch2_oneshot((uint16_t)(PIT_HZ * WINDOW_MS / 1000));
    int done = pit_ch2_done();
    uint64_t now = rdtsc();
    uint32_t span = stall_span(prev, now);
    check(!done || span >= WINDOW_MS * 1000000u,
          "port 0x61 OUT2 low right after the mode 0 count is written");
    uint32_t excused = span / PERIOD_NS;
    int start = pit_ticks;
    while (!done) {
        prev = now;
        done = pit_ch2_done();
        now = rdtsc();
        excused += stall_span(prev, now) / PERIOD_NS;
    }
    int counted = pit_ticks - start;
    cli();
    printf("counted %d IRQ0 ticks in %d ms (channel 2 one-shot); stalls excuse %u\n", counted,
           WINDOW_MS, excused);
    check(counted + (int)excused >= WINDOW_MS - TOLERANCE && counted <= WINDOW_MS + TOLERANCE,
          "%d ticks (and %u excused) in %d ms window (want %d +- %d)", counted, excused,
          WINDOW_MS, WINDOW_MS, TOLERANCE);
    check(pic_read_isr() == 0, "no interrupt left in service (ISR %04x)", pic_read_isr());
    return checks_failed();
}
