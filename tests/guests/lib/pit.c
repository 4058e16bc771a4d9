/*
 * 8254 PIT at 1.193182 MHz.  Intel 8254 datasheet: control word 0x34 = channel 0,
 * lobyte/hibyte, mode 2 (rate generator); 0xB0 = channel 2, lobyte/hibyte, mode 0
 * (interrupt on terminal count: OUT low after the count is written, high when it
 * reaches zero).  PC port 0x61: bit 0 gates channel 2, bit 1 enables the speaker,
 * bit 5 reads OUT2.
 */
#include "guest.h"

void pit_set_periodic(uint32_t hz)
{
    uint32_t div = (PIT_HZ + hz / 2) / hz;
    outb(0x43, 0x34);
    outb(0x40, (uint8_t)div);
    outb(0x40, (uint8_t)(div >> 8));
}

volatile int pit_ticks;

static void on_tick(struct frame32 *f)
{
    (void)f;
    pit_ticks++;
    pic_eoi(0);
}

void pit_ticks_start(uint32_t hz)
{
    idt32_init();
    isr32_register(PIC_VEC_BASE + 0, on_tick);
    pic_init();
    pit_set_periodic(hz);
    pic_unmask(0);
}

void pit_ch2_oneshot(uint16_t count)
{
    outb(0x61, (uint8_t)((inb(0x61) & ~0x02) | 0x01));
    outb(0x43, 0xB0);
    outb(0x42, (uint8_t)count);
    outb(0x42, (uint8_t)(count >> 8));
}

int pit_ch2_done(void) { return (inb(0x61) & 0x20) != 0; }

void pit_delay_us(uint32_t us)
{
    while (us) {
        uint32_t chunk = us > 50000 ? 50000 : us;
        /* 1193 ticks per ms keeps the product in 32 bits; the 0.015% error is irrelevant. */
        pit_ch2_oneshot((uint16_t)(chunk * 1193u / 1000u));
        while (!pit_ch2_done())
            ;
        us -= chunk;
    }
}

int wait_count(volatile int *p, int target, uint32_t ms)
{
    for (uint32_t i = 0; i < ms && *p < target; i++) {
        pit_ch2_oneshot((uint16_t)(PIT_HZ / 1000));
        while (!pit_ch2_done() && *p < target)
            ;
    }
    return *p >= target;
}
