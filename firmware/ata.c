/*
 * ATA disks and ATAPI CD-ROMs on the two legacy IDE channels, by polled PIO.
 *
 * T13 1410D (ATA/ATAPI-6): 7 register block (Status BSY/DRQ/ERR, Device/Head with the
 * LBA bit, the 48-bit "previous content" writes), 8.15 IDENTIFY DEVICE (words 27-46
 * model, 60-61 LBA28 capacity, 83 bit 10 48-bit feature set, 100-103 LBA48 capacity),
 * 8.16 IDENTIFY PACKET DEVICE, 9.12 signatures (LBA Mid/High 14h/EBh: packet device),
 * READ/WRITE SECTORS (20h/30h), their EXT forms (24h/34h), FLUSH CACHE (E7h), PACKET
 * (A0h) with the byte count limit in LBA Mid/High. MMC-2: READ(10) (28h), READ CAPACITY
 * (25h). Drive interrupts stay masked at the PIC: everything here polls the status.
 *
 * INT 13h drive numbers: disks 80h upwards, CD-ROMs E0h upwards (as SeaBIOS numbers a
 * no-emulation CD), in channel order primary master, primary slave, secondary master,
 * secondary slave.
 */
#include "bios.h"

#define ST_BSY 0x80
#define ST_DRQ 0x08
#define ST_ERR 0x01

/* How long a drive may stay busy, in TSC ticks. A command: 32 s at pyemu's 1 GHz TSC, as
 * SeaBIOS allows (IDE_TIMEOUT), and 10 s or more at the host TSC rate QEMU's TCG shows;
 * a busy host keeps QEMU's disk requests pending longer than a count of status polls
 * lasts there (2 million, 0.4 s: GRUB then failed to read its kernel). IDENTIFY at POST:
 * 0.1 s, as emulated drives answer at once and an absent slave never does. */
#define COMMAND_TICKS 32000000000ull
#define PROBE_TICKS 100000000ull

struct drive drives[MAX_DRIVES];
u32 num_drives;

static const u16 channel_base[2][2] = {{0x1F0, 0x3F6}, {0x170, 0x376}};

static u64 rdtsc(void)
{
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (u64)hi << 32 | lo;
}

/* Status once BSY is clear; -1 after `ticks`. */
static int wait_ready(u16 base, u64 ticks)
{
    u64 end = rdtsc() + ticks;
    do {
        u8 st = inb(base + 7);
        if (!(st & ST_BSY))
            return st;
    } while (rdtsc() < end);
    return -1;
}

/* 0 once the drive asks for data (DRQ), -1 on error or after `ticks`. */
static int wait_drq(u16 base, u64 ticks)
{
    u64 end = rdtsc() + ticks;
    do {
        u8 st = inb(base + 7);
        if (st & ST_BSY)
            continue;
        if (st & ST_ERR)
            return -1;
        if (st & ST_DRQ)
            return 0;
    } while (rdtsc() < end);
    return -1;
}

static void select_drive(const struct drive *d, u8 head_bits)
{
    outb(d->iobase + 6, (u8)(0xA0 | (d->slave << 4) | head_bits));
}

/* ATA strings hold the first character of each pair in the high byte. */
static void ata_string(char *out, const u16 *words, u32 nwords)
{
    u32 n = 0;
    for (u32 i = 0; i < nwords; i++) {
        out[n++] = (char)(words[i] >> 8);
        out[n++] = (char)words[i];
    }
    while (n && out[n - 1] == ' ')
        n--;
    out[n] = 0;
}

/* The geometry INT 13h shows: the drive's own if it fits 1024 cylinders, else LBA
 * assisted translation (63 sectors, heads doubling up to 255). */
static void logical_geometry(struct drive *d, const u16 *id)
{
    u32 cyls = id[1], heads = id[3], spt = id[6];
    if (!heads || !spt || heads > 16 || spt > 63) {
        heads = 16;
        spt = 63;
    }
    u32 total = d->sectors > 0xFFFFFFFFu ? 0xFFFFFFFFu : (u32)d->sectors;
    if (total / (heads * spt) > 1024 || cyls > 1024) {
        spt = 63;
        heads = 16;
        while (heads < 255 && total / (heads * spt) > 1024)
            heads = heads * 2 > 255 ? 255 : heads * 2;
        cyls = total / (heads * spt);
    } else if (!cyls) {
        cyls = total / (heads * spt);
    }
    d->cyls = (u16)(cyls > 1024 ? 1024 : cyls ? cyls : 1);
    d->heads = (u16)heads;
    d->spt = (u16)spt;
}

static int identify(struct drive *d, u8 cmd, u16 *id)
{
    select_drive(d, 0);
    if (wait_ready(d->iobase, PROBE_TICKS) < 0)
        return -1;
    outb(d->iobase + 7, cmd);
    if (wait_drq(d->iobase, PROBE_TICKS) < 0)
        return -1;
    insw(d->iobase, id, 256);
    return 0;
}

static void cd_capacity(struct drive *d)
{
    u8 cdb[12] = {0x25}, cap[8];
    if (atapi_command(d, cdb, cap, sizeof(cap)) == (int)sizeof(cap))
        d->sectors = ((u32)cap[0] << 24 | (u32)cap[1] << 16 | (u32)cap[2] << 8 | cap[3]) + 1;
}

static void probe(u32 channel, u32 slave, u8 *next_disk, u8 *next_cd)
{
    struct drive *d = &drives[num_drives];
    u16 id[256];
    memset(d, 0, sizeof(*d));
    d->iobase = channel_base[channel][0];
    d->ctlbase = channel_base[channel][1];
    d->slave = (u8)slave;
    select_drive(d, 0);
    /* An absent drive keeps nothing: the classic write/read-back of two registers. */
    outb(d->iobase + 2, 0x55);
    outb(d->iobase + 3, 0xAA);
    if (inb(d->iobase + 2) != 0x55 || inb(d->iobase + 3) != 0xAA)
        return;
    if (identify(d, 0xEC, id) == 0) {
        d->lba48 = (id[83] & (1 << 10)) != 0;
        d->sectors = d->lba48 ? (u64)id[100] | (u64)id[101] << 16 | (u64)id[102] << 32
                                    | (u64)id[103] << 48
                              : (u32)id[60] | (u32)id[61] << 16;
        logical_geometry(d, id);
        d->number = (*next_disk)++;
    } else if (inb(d->iobase + 4) == 0x14 && inb(d->iobase + 5) == 0xEB
               && identify(d, 0xA1, id) == 0) {
        d->is_cd = 1;
        d->number = (*next_cd)++;
        cd_capacity(d);
    } else {
        return;
    }
    ata_string(d->model, id + 27, 20);
    num_drives++;
    if (d->is_cd)
        printf("ata%u-%u: %s, CD-ROM, drive %x\n", channel, slave, d->model, d->number);
    else if (d->sectors >= 2048)
        printf("ata%u-%u: %s, %u MiB, drive %x\n", channel, slave, d->model,
               (u32)(d->sectors >> 11), d->number);
    else
        printf("ata%u-%u: %s, %u KiB, drive %x\n", channel, slave, d->model,
               (u32)d->sectors / 2, d->number);
}

void ata_init(void)
{
    u8 next_disk = 0x80, next_cd = 0xE0;
    num_drives = 0;
    for (u32 channel = 0; channel < 2; channel++) {
        for (u32 slave = 0; slave < 2; slave++)
            probe(channel, slave, &next_disk, &next_cd);
    }
    BDA8(BDA_NUM_DISKS) = (u8)(next_disk - 0x80);
}

struct drive *drive_by_number(u8 number)
{
    for (u32 i = 0; i < num_drives; i++) {
        if (drives[i].number == number)
            return &drives[i];
    }
    return NULL;
}

struct drive *first_drive(int cd)
{
    return drive_by_number(cd ? 0xE0 : 0x80);
}

/* One PIO command of at most 256 (LBA28) or 65536 (LBA48) sectors. */
static int ata_command(struct drive *d, u64 lba, u32 count, u8 *buf, int write)
{
    u16 base = d->iobase;
    int ext = lba + count > 0x0FFFFFFF;
    if (wait_ready(base, COMMAND_TICKS) < 0)
        return -1;
    if (ext) {
        select_drive(d, 0x40);
        outb(base + 2, (u8)(count >> 8));
        outb(base + 3, (u8)(lba >> 24));
        outb(base + 4, (u8)(lba >> 32));
        outb(base + 5, (u8)(lba >> 40));
    } else {
        select_drive(d, (u8)(0x40 | ((lba >> 24) & 0x0F)));
    }
    outb(base + 2, (u8)count);
    outb(base + 3, (u8)lba);
    outb(base + 4, (u8)(lba >> 8));
    outb(base + 5, (u8)(lba >> 16));
    outb(base + 7, write ? (ext ? 0x34 : 0x30) : (ext ? 0x24 : 0x20));
    for (u32 i = 0; i < count; i++, buf += 512) {
        if (wait_drq(base, COMMAND_TICKS) < 0)
            return -1;
        if (write)
            outsw(base, buf, 256);
        else
            insw(base, buf, 256);
    }
    int st = wait_ready(base, COMMAND_TICKS);
    return st < 0 || (st & ST_ERR) ? -1 : 0;
}

int ata_rw(struct drive *d, u64 lba, u32 count, void *buf, int write)
{
    u8 *p = buf;
    if (!d->lba48 && lba + count > 0x0FFFFFFF)
        return -1;
    while (count) {
        u32 n = count > 128 ? 128 : count;
        if (ata_command(d, lba, n, p, write) < 0)
            return -1;
        lba += n;
        count -= n;
        p += n * 512;
    }
    if (write) {
        outb(d->iobase + 7, d->lba48 ? 0xEA : 0xE7);   /* FLUSH CACHE (EXT) */
        int st = wait_ready(d->iobase, COMMAND_TICKS);
        if (st < 0 || (st & ST_ERR))
            return -1;
    }
    return 0;
}

/* Send a 12-byte packet and read its data (at most len bytes); bytes read, -1 on error,
 * -2 when the drive reports a unit attention or not ready (worth a retry). */
int atapi_command(struct drive *d, const u8 *cdb, void *buf, u32 len)
{
    u16 base = d->iobase;
    u8 *p = buf;
    u32 got = 0;
    select_drive(d, 0);
    if (wait_ready(base, COMMAND_TICKS) < 0)
        return -1;
    outb(base + 1, 0);          /* PIO */
    outb(base + 4, 0x00);       /* byte count limit F800h: 31 CD sectors per DRQ block */
    outb(base + 5, 0xF8);
    outb(base + 7, 0xA0);
    if (wait_drq(base, COMMAND_TICKS) < 0)
        return -1;
    outsw(base, cdb, 6);
    for (;;) {
        int st = wait_ready(base, COMMAND_TICKS);
        if (st < 0)
            return -1;
        if (st & ST_ERR) {
            u8 key = inb(base + 1) >> 4;
            return key == 0x06 || key == 0x02 ? -2 : -1;
        }
        if (!(st & ST_DRQ))
            break;
        u32 n = inb(base + 4) | (u32)inb(base + 5) << 8;
        if (got + n > len)
            return -1;
        insw(base, p + got, n / 2);
        got += n;
    }
    return (int)got;
}

int atapi_read(struct drive *d, u32 lba, u32 count, void *buf)
{
    u8 *p = buf;
    while (count) {
        u32 n = count > 32 ? 32 : count;
        u8 cdb[12] = {0x28, 0, (u8)(lba >> 24), (u8)(lba >> 16), (u8)(lba >> 8), (u8)lba,
                      0, (u8)(n >> 8), (u8)n, 0, 0, 0};
        int got = -2;
        for (u32 tries = 0; got == -2 && tries < 3; tries++)
            got = atapi_command(d, cdb, p, n * 2048);
        if (got != (int)(n * 2048))
            return -1;
        lba += n;
        count -= n;
        p += n * 2048;
    }
    return 0;
}
