/*
 * dirty: a guest that keeps rewriting its memory and checking it, for live migration.
 *
 * Each round checks that a buffer still holds the previous round's pattern, writes the
 * next one and prints "round N ok"; a word that differs prints where and fails. A
 * migration that loses or tears a page shows up as a failed round on the destination.
 * The kernel command line sets the load: "mib=N" buffer size (default 8), "period=MS"
 * pause between rounds (default 20, PIT at 1000 Hz, HLT while waiting), "rounds=N"
 * rounds before PASS (default 0: forever), "disk=1": round N also writes sector N
 * (N < 1024) of the primary master with ATA WRITE SECTORS (PIO, polled; ATA-6 8.62),
 * its first word N and the rest the round's pattern, for block migration tests.
 */
#include "guest.h"

const char guest_name[] = "dirty";

#define BUF_BASE 0x400000u /* 4 MiB, above the guest image */


static uint32_t option(const char *name, uint32_t fallback)
{
    const char *s = mb_info && mb_info->cmdline ? (const char *)mb_info->cmdline : "";
    size_t n = strlen(name);
    for (; *s; s++) {
        if ((s == (const char *)mb_info->cmdline || s[-1] == ' ') &&
            memcmp(s, name, n) == 0 && s[n] == '=') {
            uint32_t v = 0;
            for (s += n + 1; *s >= '0' && *s <= '9'; s++)
                v = v * 10 + (uint32_t)(*s - '0');
            return v;
        }
    }
    return fallback;
}

static inline uint32_t pattern(uint32_t round, uint32_t i)
{
    return (round * 0x9E3779B1u) ^ (i * 0x85EBCA77u) ^ (i >> 7);
}

#define ATA_IO 0x1F0
#define DISK_SECTORS 1024

static uint8_t ata_status(void)
{
    uint8_t st;
    while ((st = inb(ATA_IO + 7)) & 0x80) /* BSY */
        ;
    return st;
}

static void write_sector(uint32_t lba, uint32_t round)
{
    ata_status();
    outb(ATA_IO + 6, 0xE0 | ((lba >> 24) & 0x0F)); /* LBA, master */
    outb(ATA_IO + 2, 1);
    outb(ATA_IO + 3, lba & 0xFF);
    outb(ATA_IO + 4, (lba >> 8) & 0xFF);
    outb(ATA_IO + 5, (lba >> 16) & 0xFF);
    outb(ATA_IO + 7, 0x30); /* WRITE SECTORS */
    if (!(ata_status() & 0x08)) /* DRQ */
        guest_fail("round %u: no DRQ for WRITE SECTORS %u", round, lba);
    for (uint32_t w = 0; w < 128; w++) {
        uint32_t v = w == 0 ? round : pattern(round, w);
        outw(ATA_IO, v & 0xFFFF);
        outw(ATA_IO, v >> 16);
    }
    if (ata_status() & 0x21) /* ERR, DF */
        guest_fail("round %u: WRITE SECTORS %u failed", round, lba);
}

int main(void)
{
    uint32_t words = option("mib", 8) << 18;
    uint32_t period = option("period", 20);
    uint32_t rounds = option("rounds", 0);
    uint32_t disk = option("disk", 0);
    volatile uint32_t *buf = (volatile uint32_t *)BUF_BASE;

    pit_ticks_start(1000);
    sti();
    for (uint32_t r = 1; rounds == 0 || r <= rounds; r++) {
        for (uint32_t i = 0; i < words; i++) {
            uint32_t want = pattern(r - 1, i);
            if (r > 1 && buf[i] != want)
                guest_fail("round %u: word %u at %x is %x, not %x", r, i,
                           BUF_BASE + 4 * i, buf[i], want);
            buf[i] = pattern(r, i);
        }
        if (disk && r < DISK_SECTORS)
            write_sector(r, r);
        printf("round %u ok\n", r);
        int until = pit_ticks + (int)period;
        while (pit_ticks < until)
            hlt();
    }
    return 0;
}
