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

int main(void)
{
    pit_ticks_start(1000);
    sti();

    /* Wait for the first tick so the window starts with the rate generator running. */
    if (!check(wait_count(&pit_ticks, 1, 100), "IRQ0 arrives after PIC/PIT setup"))
        return 1;

    pit_ch2_oneshot((uint16_t)(PIT_HZ * WINDOW_MS / 1000));
    check(!pit_ch2_done(), "port 0x61 OUT2 low right after the mode 0 count is written");
    int start = pit_ticks;
    while (!pit_ch2_done())
        ;
    int counted = pit_ticks - start;
    cli();
    printf("counted %d IRQ0 ticks in %d ms (channel 2 one-shot)\n", counted, WINDOW_MS);
    check(counted >= WINDOW_MS - TOLERANCE && counted <= WINDOW_MS + TOLERANCE,
          "%d ticks in %d ms window (want %d +- %d)", counted, WINDOW_MS, WINDOW_MS, TOLERANCE);
    check(pic_read_isr() == 0, "no interrupt left in service (ISR %04x)", pic_read_isr());
    return checks_failed();
}
