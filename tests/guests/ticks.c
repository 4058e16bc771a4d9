/*
 * ticks: a transcript of guest time, for determinism tests.
 *
 * 8254 channel 0 interrupts at 1000 Hz (Intel 8254 datasheet, mode 2); at each of TICKS
 * interrupts the guest stirs a buffer (work whose length in instructions is fixed) and
 * prints the tick number, the TSC and the buffer's checksum. Under -icount every value
 * is a function of the instruction count, so two runs -- or a run split by a snapshot
 * and continued in another process -- must print the same bytes.
 */
#include "guest.h"

const char guest_name[] = "ticks";

#define TICKS 120
#define WORDS 4096
#define ROUNDS 6

static uint32_t buf[WORDS];

static uint32_t stir(uint32_t seed)
{
    uint32_t sum = 0;
    for (int r = 0; r < ROUNDS; r++)
        for (int i = 0; i < WORDS; i++) {
            seed = seed * 1664525u + 1013904223u;
            buf[i] ^= seed >> 7;
            sum = (sum << 5 | sum >> 27) ^ buf[i];
        }
    return sum;
}

int main(void)
{
    pit_ticks_start(1000);
    sti();
    for (int seen = 0; seen < TICKS;) {
        while (pit_ticks == seen)
            hlt();
        seen = pit_ticks;
        uint64_t tsc = rdtsc();
        printf("tick %d tsc %u:%u sum %x\n", seen, (uint32_t)(tsc >> 32), (uint32_t)tsc,
               stir((uint32_t)tsc));
    }
    cli();
    return 0;
}
