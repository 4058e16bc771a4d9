/*
 * ata: the PIIX3 IDE function and an ATA disk on the primary channel, driven as a
 * BIOS-less kernel would: PCI discovery, PIO, multiple-sector PIO, LBA48, bus-master DMA,
 * error reporting, and a PIO throughput figure.
 *
 * Command line (-append): "sectors=N" (the image size in 512-byte sectors, required),
 * "mib=M" (MiB read for the throughput figure, default 4), "lba48=L" (the sector read
 * with READ SECTORS EXT, default sectors-1). The test fills every sector it reads with
 * "PYEMU-ATA-TEST" followed by the sector's LBA as a little-endian u32; the rest is zero.
 *
 * References: PCI Local Bus 2.1 3.7.4 (configuration mechanism #1 at CF8h/CFCh);
 * 82371SB PIIX3 datasheet 2.3 (IDE function 8086:7010, BMIBA at 20h = BAR4, PCICMD bits 0
 * and 2); SFF-8038i (bus-master command/status/PRD registers, PRD entries: base, byte
 * count, EOT in bit 31, no 64 KiB crossing); T13 1410D ATA/ATAPI-6: 6.2 status/error bits,
 * 8.15 IDENTIFY DEVICE (words 27-46 model, 60-61 LBA28 capacity, 59 multiple setting,
 * 83 bit 10 48-bit feature set, 100-103 LBA48 capacity, 255 integrity word), 8.x command
 * codes (READ SECTORS 20h, READ SECTORS EXT 24h, WRITE SECTORS 30h, READ MULTIPLE C4h,
 * SET MULTIPLE MODE C6h, READ DMA C8h, FLUSH CACHE E7h, NOP 00h always aborts), 9.7/9.8
 * PIO data-in/out protocols (wait BSY=0 DRQ=1 before each DRQ block). PIIX4 datasheet
 * 3.4/7: PMBA (40h) and PMREGMISC (80h) of function 3 place the 24-bit ACPI PM timer
 * (3.579545 MHz) at PMBASE+8.
 */
#include "guest.h"

const char guest_name[] = "ata";

#define IDE_DEVFN ((1u << 3) | 1u) /* 00:01.1 */
#define PM_DEVFN ((1u << 3) | 3u)  /* 00:01.3 */
#define BMIBA 0xC000u
#define PMBASE 0x600u

#define ATA_IO 0x1F0
#define ATA_CTL 0x3F6
#define REG_DATA (ATA_IO + 0)
#define REG_ERROR (ATA_IO + 1)
#define REG_NSECT (ATA_IO + 2)
#define REG_LBAL (ATA_IO + 3)
#define REG_LBAM (ATA_IO + 4)
#define REG_LBAH (ATA_IO + 5)
#define REG_DEV (ATA_IO + 6)
#define REG_CMD (ATA_IO + 7)
#define REG_STATUS REG_CMD

#define ST_BSY 0x80
#define ST_DRDY 0x40
#define ST_DF 0x20
#define ST_DRQ 0x08
#define ST_ERR 0x01
#define ER_IDNF 0x10
#define ER_ABRT 0x04
#define DC_NIEN 0x02

#define BM_CMD (BMIBA + 0)
#define BM_STATUS (BMIBA + 2)
#define BM_PRD (BMIBA + 4)
#define BM_START 0x01
#define BM_TO_MEMORY 0x08
#define BM_ACTIVE 0x01
#define BM_ERROR 0x02
#define BM_INT 0x04

#define SECTOR 512
#define MAGIC "PYEMU-ATA-TEST"
#define MAGIC_LEN 14
#define WRITE_LBA 100
#define WRITE_COUNT 2
#define MULT_LBA 200
#define MULT_COUNT 40
#define DMA_LBA 300
#define DMA_COUNT 64
#define SPIN_LIMIT 2000000u
#define PM_TIMER_HZ 3579545u

static uint16_t sector_buf[256 * 256]; /* one 256-sector command: 128 KiB */
static uint8_t dma_area[65536] __attribute__((aligned(65536)));
static uint32_t prd_table[4] __attribute__((aligned(16)));
static volatile int irq14_count;
static volatile uint8_t irq14_bm_status;

/* ---- command line ---- */

static uint32_t cmdline_uint(const char *key, uint32_t dflt)
{
    if (!(mb_info->flags & (1u << 2)))
        return dflt;
    size_t klen = strlen(key);
    for (const char *p = (const char *)mb_info->cmdline; *p; p++) {
        if ((p == (const char *)mb_info->cmdline || p[-1] == ' ') && !memcmp(p, key, klen) &&
            p[klen] == '=') {
            uint32_t v = 0;
            for (p += klen + 1; *p >= '0' && *p <= '9'; p++)
                v = v * 10 + (uint32_t)(*p - '0');
            return v;
        }
    }
    return dflt;
}

/* ---- PCI configuration mechanism #1 (bus 0) ---- */

static void pci_select(uint32_t devfn, uint32_t reg)
{
    outl(0xCF8, 0x80000000u | devfn << 8 | (reg & 0xFC));
}

static uint32_t pci_read32(uint32_t devfn, uint32_t reg)
{
    pci_select(devfn, reg);
    return inl(0xCFC);
}

static void pci_write32(uint32_t devfn, uint32_t reg, uint32_t v)
{
    pci_select(devfn, reg);
    outl(0xCFC, v);
}

static void pci_write8(uint32_t devfn, uint32_t reg, uint8_t v)
{
    pci_select(devfn, reg);
    outb((uint16_t)(0xCFC + (reg & 3)), v);
}

/* ---- ACPI PM timer ---- */

static uint32_t pm_last, pm_ticks;

static void pm_timer_enable(void)
{
    pci_write32(PM_DEVFN, 0x40, PMBASE | 1);
    pci_write8(PM_DEVFN, 0x80, 1);
}

static uint32_t pm_timer_read(void) { return inl(PMBASE + 8) & 0xFFFFFF; }

static void pm_start(void)
{
    pm_ticks = 0;
    pm_last = pm_timer_read();
}

/* Accumulates ticks; called at least every 4.6 s (the 24-bit counter's wrap). */
static void pm_sample(void)
{
    uint32_t now = pm_timer_read();
    pm_ticks += (now - pm_last) & 0xFFFFFF;
    pm_last = now;
}

/* ---- ATA primitives (polled; nIEN set except around DMA) ---- */

static uint8_t ata_wait_not_busy(void)
{
    uint8_t st = ST_BSY;
    for (uint32_t i = 0; i < SPIN_LIMIT && (st & ST_BSY); i++)
        st = inb(REG_STATUS);
    return st;
}

/* Waits for the drive to leave BSY; returns 1 with DRQ set and no error. */
static int ata_wait_drq(const char *what)
{
    uint8_t st = ata_wait_not_busy();
    if (st & (ST_BSY | ST_ERR | ST_DF) || !(st & ST_DRQ)) {
        check(0, "%s: status %02x (error %02x) instead of DRQ", what, st, inb(REG_ERROR));
        return 0;
    }
    return 1;
}

static int ata_wait_done(const char *what)
{
    uint8_t st = ata_wait_not_busy();
    if (st & (ST_BSY | ST_ERR | ST_DF | ST_DRQ) || !(st & ST_DRDY)) {
        check(0, "%s: status %02x (error %02x) at the end", what, st, inb(REG_ERROR));
        return 0;
    }
    return 1;
}

static void ata_issue28(uint8_t cmd, uint32_t lba, uint8_t count)
{
    outb(REG_DEV, (uint8_t)(0xE0 | ((lba >> 24) & 0x0F)));
    outb(REG_NSECT, count);
    outb(REG_LBAL, (uint8_t)lba);
    outb(REG_LBAM, (uint8_t)(lba >> 8));
    outb(REG_LBAH, (uint8_t)(lba >> 16));
    outb(REG_CMD, cmd);
}

/* 48-bit taskfile: each register is written twice, the high-order byte first. */
static void ata_issue48(uint8_t cmd, uint64_t lba, uint16_t count)
{
    outb(REG_DEV, 0x40);
    outb(REG_NSECT, (uint8_t)(count >> 8));
    outb(REG_LBAL, (uint8_t)(lba >> 24));
    outb(REG_LBAM, (uint8_t)(lba >> 32));
    outb(REG_LBAH, (uint8_t)(lba >> 40));
    outb(REG_NSECT, (uint8_t)count);
    outb(REG_LBAL, (uint8_t)lba);
    outb(REG_LBAM, (uint8_t)(lba >> 8));
    outb(REG_LBAH, (uint8_t)(lba >> 16));
    outb(REG_CMD, cmd);
}

static void insw(uint16_t port, void *dst, uint32_t words)
{
    __asm__ volatile("cld; rep insw" : "+D"(dst), "+c"(words) : "d"(port) : "memory");
}

static void outsw(uint16_t port, const void *src, uint32_t words)
{
    __asm__ volatile("cld; rep outsw" : "+S"(src), "+c"(words) : "d"(port) : "memory");
}

/* PIO data-in: `sectors` sectors in DRQ blocks of `per_block` sectors into dst. */
static int ata_pio_in(void *dst, uint32_t sectors, uint32_t per_block, const char *what)
{
    uint8_t *p = dst;
    while (sectors) {
        uint32_t n = sectors < per_block ? sectors : per_block;
        if (!ata_wait_drq(what))
            return 0;
        insw(REG_DATA, p, n * 256);
        p += n * SECTOR;
        sectors -= n;
    }
    return ata_wait_done(what);
}

/* ---- the image's pattern ---- */

static int sector_matches(const uint8_t *s, uint32_t lba)
{
    if (memcmp(s, MAGIC, MAGIC_LEN))
        return 0;
    uint32_t got = s[14] | s[15] << 8 | s[16] << 16 | (uint32_t)s[17] << 24;
    if (got != lba)
        return 0;
    for (int i = MAGIC_LEN + 4; i < SECTOR; i++)
        if (s[i])
            return 0;
    return 1;
}

/* The first mismatching sector of a run read from first_lba, or -1. */
static int first_bad_sector(const uint8_t *buf, uint32_t first_lba, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++)
        if (!sector_matches(buf + i * SECTOR, first_lba + i))
            return (int)i;
    return -1;
}

/* What the guest writes at WRITE_LBA + k; tests/integration/test_disks.py checks it. */
static uint8_t written_byte(uint32_t k, uint32_t i) { return (uint8_t)(i * 7 + k * 13 + 1); }

/* ---- the checks ---- */

static int check_pci(void)
{
    uint32_t id = pci_read32(IDE_DEVFN, 0x00);
    if (!check(id == 0x70108086, "00:01.1 is the PIIX3 IDE function (id %08x)", id))
        return 0;
    uint32_t class_rev = pci_read32(IDE_DEVFN, 0x08);
    check((class_rev >> 16) == 0x0101, "class 0101xx: IDE controller (%08x)", class_rev);
    check(class_rev & 0x8000, "prog-if bit 7: bus-master capable (%08x)", class_rev);
    pci_write32(IDE_DEVFN, 0x20, 0xFFFFFFFF);
    uint32_t mask = pci_read32(IDE_DEVFN, 0x20);
    check(mask == 0xFFFFFFF1, "BAR4 sizes as 16 bytes of I/O (%08x)", mask);
    pci_write32(IDE_DEVFN, 0x20, BMIBA);
    uint32_t bar = pci_read32(IDE_DEVFN, 0x20);
    check(bar == (BMIBA | 1), "BAR4 = %08x after writing %04x", bar, BMIBA);
    pci_select(IDE_DEVFN, 0x04);
    outw(0xCFC, (uint16_t)(inw(0xCFC) | 0x05)); /* I/O space, bus master */
    uint32_t cmd = pci_read32(IDE_DEVFN, 0x04) & 0xFFFF;
    check((cmd & 0x05) == 0x05, "PCICMD has I/O and bus master enabled (%04x)", cmd);
    uint8_t bms = inb(BM_STATUS);
    check(!(bms & (BM_ACTIVE | BM_ERROR | BM_INT)), "bus-master status idle (%02x)", bms);
    return 1;
}

static void identify_string(const uint16_t *w, int first, int words, char *out)
{
    for (int i = 0; i < words; i++) {
        out[2 * i] = (char)(w[first + i] >> 8);
        out[2 * i + 1] = (char)w[first + i];
    }
    int n = 2 * words;
    while (n && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

static int check_identify(uint32_t sectors)
{
    outb(REG_DEV, 0xA0);
    outb(REG_CMD, 0xEC);
    uint16_t *w = sector_buf;
    if (!ata_pio_in(w, 1, 1, "IDENTIFY DEVICE"))
        return 0;
    char model[41];
    identify_string(w, 27, 20, model);
    check(!memcmp(model, "PYEMU HARDDISK", 15), "IDENTIFY model \"%s\"", model);
    uint32_t lba28 = w[60] | (uint32_t)w[61] << 16;
    uint32_t want28 = sectors < 0x0FFFFFFF ? sectors : 0x0FFFFFFF;
    check(lba28 == want28, "LBA28 capacity %u sectors (the image has %u)", lba28, sectors);
    check(w[49] & (1u << 9), "word 49: LBA supported (%04x)", w[49]);
    check(w[49] & (1u << 8), "word 49: DMA supported (%04x)", w[49]);
    check(w[83] & (1u << 10), "word 83: 48-bit address feature set (%04x)", w[83]);
    uint64_t lba48 = w[100] | (uint64_t)w[101] << 16 | (uint64_t)w[102] << 32 |
                     (uint64_t)w[103] << 48;
    check(lba48 == sectors, "LBA48 capacity 0x%llx sectors", lba48);
    check((w[47] & 0xFF) >= 16, "word 47: up to %u sectors per READ MULTIPLE block", w[47] & 0xFF);
    uint8_t sum = 0;
    const uint8_t *b = (const uint8_t *)w;
    for (int i = 0; i < SECTOR; i++)
        sum = (uint8_t)(sum + b[i]);
    check((w[255] & 0xFF) == 0xA5 && sum == 0, "word 255: integrity signature and checksum "
          "(%04x, sum %02x)", w[255], sum);
    return 1;
}

static void check_read_sectors(void)
{
    ata_issue28(0x20, 0, 4);
    if (!ata_pio_in(sector_buf, 4, 1, "READ SECTORS 0-3"))
        return;
    const uint8_t *b = (const uint8_t *)sector_buf;
    check(sector_matches(b, 0), "READ SECTORS: sector 0 holds \"" MAGIC "\" + LBA 0");
    check(first_bad_sector(b, 0, 4) < 0, "READ SECTORS: 4 sectors in 4 DRQ blocks match");
}

static void check_write_sectors(void)
{
    uint8_t *b = (uint8_t *)sector_buf;
    for (uint32_t k = 0; k < WRITE_COUNT; k++)
        for (uint32_t i = 0; i < SECTOR; i++)
            b[k * SECTOR + i] = written_byte(k, i);
    ata_issue28(0x30, WRITE_LBA, WRITE_COUNT);
    for (uint32_t k = 0; k < WRITE_COUNT; k++) {
        if (!ata_wait_drq("WRITE SECTORS"))
            return;
        outsw(REG_DATA, b + k * SECTOR, 256);
    }
    if (!check(ata_wait_done("WRITE SECTORS"), "WRITE SECTORS %u-%u", WRITE_LBA,
               WRITE_LBA + WRITE_COUNT - 1))
        return;
    outb(REG_DEV, 0xE0);
    outb(REG_CMD, 0xE7);
    check(ata_wait_done("FLUSH CACHE"), "FLUSH CACHE");

    memset(b, 0xCC, WRITE_COUNT * SECTOR);
    ata_issue28(0x20, WRITE_LBA, WRITE_COUNT);
    if (!ata_pio_in(b, WRITE_COUNT, 1, "READ SECTORS after write"))
        return;
    int same = 1;
    for (uint32_t k = 0; k < WRITE_COUNT; k++)
        for (uint32_t i = 0; i < SECTOR; i++)
            same &= b[k * SECTOR + i] == written_byte(k, i);
    check(same, "the written sectors read back");
}

static void check_read_multiple(void)
{
    outb(REG_DEV, 0xE0);
    outb(REG_NSECT, 16);
    outb(REG_CMD, 0xC6);
    if (!check(ata_wait_done("SET MULTIPLE MODE"), "SET MULTIPLE MODE 16"))
        return;
    outb(REG_DEV, 0xA0);
    outb(REG_CMD, 0xEC);
    if (ata_pio_in(sector_buf, 1, 1, "IDENTIFY after SET MULTIPLE"))
        check(sector_buf[59] == 0x0110, "IDENTIFY word 59 = %04x (multiple 16 valid)",
              sector_buf[59]);

    memset(sector_buf, 0, MULT_COUNT * SECTOR);
    ata_issue28(0xC4, MULT_LBA, MULT_COUNT);
    /* 40 sectors: DRQ blocks of 16, 16 and 8 sectors, one wait each */
    if (!ata_pio_in(sector_buf, MULT_COUNT, 16, "READ MULTIPLE"))
        return;
    int bad = first_bad_sector((const uint8_t *)sector_buf, MULT_LBA, MULT_COUNT);
    check(bad < 0, "READ MULTIPLE: %u sectors from %u in 16-sector blocks (first bad %d)",
          MULT_COUNT, MULT_LBA, bad);
}

static void check_read_ext(uint64_t lba)
{
    memset(sector_buf, 0, 2 * SECTOR);
    ata_issue48(0x24, lba, 1);
    if (!ata_pio_in(sector_buf, 1, 1, "READ SECTORS EXT"))
        return;
    check(sector_matches((const uint8_t *)sector_buf, (uint32_t)lba),
          "READ SECTORS EXT of sector 0x%llx", lba);
    outb(ATA_CTL, DC_NIEN | 0x80); /* HOB: the previous (high-order) register contents */
    uint8_t hob_lbal = inb(REG_LBAL);
    outb(ATA_CTL, DC_NIEN);
    check(hob_lbal == (uint8_t)(lba >> 24), "HOB read of LBA Low: %02x", hob_lbal);
}

static void on_irq14(struct frame32 *f)
{
    (void)f;
    irq14_bm_status = inb(BM_STATUS);
    (void)inb(REG_STATUS); /* acknowledges INTRQ */
    irq14_count++;
    pic_eoi(14);
}

static void check_dma(void)
{
    uint8_t *first = dma_area + 0x8000, *second = dma_area;
    memset(dma_area, 0xCC, sizeof(dma_area));
    /* two regions of 16 KiB, the second below the first in memory */
    prd_table[0] = (uint32_t)first;
    prd_table[1] = DMA_COUNT / 2 * SECTOR;
    prd_table[2] = (uint32_t)second;
    prd_table[3] = (DMA_COUNT / 2 * SECTOR) | 0x80000000u;

    idt32_init();
    isr32_register(PIC_VEC_BASE + 14, on_irq14);
    pic_init();
    pic_unmask(2);
    pic_unmask(14);
    outb(ATA_CTL, 0); /* nIEN clear: the drive interrupts */
    sti();

    outb(BM_CMD, 0);
    outl(BM_PRD, (uint32_t)prd_table);
    outb(BM_STATUS, BM_ERROR | BM_INT);
    outb(BM_CMD, BM_TO_MEMORY);
    ata_issue28(0xC8, DMA_LBA, DMA_COUNT);
    outb(BM_CMD, BM_TO_MEMORY | BM_START);
    int got = wait_count(&irq14_count, 1, 1000);
    cli();
    uint8_t bms = inb(BM_STATUS);
    outb(BM_CMD, 0);
    uint8_t st = inb(REG_STATUS);
    outb(BM_STATUS, BM_INT | BM_ERROR);
    outb(ATA_CTL, DC_NIEN);
    pic_mask(14);

    if (!check(got, "READ DMA: IRQ14 within 1 s"))
        return;
    check(irq14_bm_status & BM_INT, "bus-master status in the IRQ handler: %02x (interrupt)",
          irq14_bm_status);
    check(!(bms & (BM_ACTIVE | BM_ERROR)), "bus-master status after: %02x (not active, no error)",
          bms);
    check((st & (ST_BSY | ST_DRQ | ST_ERR)) == 0 && (st & ST_DRDY), "drive status %02x after DMA",
          st);
    int bad1 = first_bad_sector(first, DMA_LBA, DMA_COUNT / 2);
    int bad2 = first_bad_sector(second, DMA_LBA + DMA_COUNT / 2, DMA_COUNT / 2);
    check(bad1 < 0 && bad2 < 0, "READ DMA of %u sectors through 2 PRDs matches (bad %d, %d)",
          DMA_COUNT, bad1, bad2);
    check(dma_area[0x4000] == 0xCC && dma_area[0x7FFF] == 0xCC,
          "nothing written between the two regions");
}

/* A device may transfer the sectors before the failing one (9.7): drain them, then the
 * command must end with ERR and the wanted error bit. */
static void expect_error(const char *what, uint8_t want)
{
    uint8_t st = ata_wait_not_busy();
    int drained = 0;
    for (; drained < 256 && (st & (ST_DRQ | ST_ERR)) == ST_DRQ; drained++) {
        insw(REG_DATA, sector_buf, 256);
        st = ata_wait_not_busy();
    }
    uint8_t err = inb(REG_ERROR);
    check((st & (ST_ERR | ST_DRQ | ST_BSY)) == ST_ERR && (err & want),
          "%s: status %02x error %02x after %d sectors (want ERR, error bit %02x)", what, st,
          err, drained, want);
}

static void check_errors(uint32_t sectors)
{
    if (sectors < 0x0FFFFFFF) {
        ata_issue28(0x20, sectors, 1);
        expect_error("READ SECTORS past the end", ER_IDNF);
    }
    ata_issue48(0x24, sectors - 1, 2);
    expect_error("READ SECTORS EXT straddling the end", ER_IDNF);
    outb(REG_DEV, 0xE0);
    outb(REG_CMD, 0x00);
    expect_error("NOP", ER_ABRT);
    outb(REG_CMD, 0xFF);
    expect_error("unassigned command FFh", ER_ABRT);
    ata_issue28(0x20, 0, 1);
    check(ata_pio_in(sector_buf, 1, 1, "READ after the errors") &&
              sector_matches((const uint8_t *)sector_buf, 0),
          "the drive reads again after the errors");
}

static void pio_throughput(uint32_t sectors, uint32_t mib)
{
    uint32_t commands = mib * 8; /* 128 KiB each */
    uint32_t span = sectors / 256 * 256;
    if (!mib || span < 256)
        return;
    pm_timer_enable();
    pm_start();
    int ok = 1;
    for (uint32_t c = 0; c < commands && ok; c++) {
        uint32_t lba = c * 256 % span;
        ata_issue28(0x20, lba, 0); /* 0 = 256 sectors */
        for (int s = 0; s < 256 && ok; s++) {
            uint8_t st = ata_wait_not_busy();
            ok = (st & (ST_DRQ | ST_ERR)) == ST_DRQ;
            if (ok)
                insw(REG_DATA, sector_buf + s * 256, 256);
        }
        pm_sample();
        if (ok)
            ok = sector_matches((const uint8_t *)sector_buf, lba) &&
                 sector_matches((const uint8_t *)(sector_buf + 255 * 256), lba + 255);
    }
    if (!check(ok, "PIO throughput run read the expected data"))
        return;
    uint32_t ms = (pm_ticks + PM_TIMER_HZ / 2000) / (PM_TIMER_HZ / 1000);
    uint32_t tenths = ms ? mib * 10486u / ms : 0; /* MB/s x10: 1 MiB = 1.048576 MB */
    printf("pio: %u MiB in %u ms (%u.%u MB/s)\n", mib, ms, tenths / 10, tenths % 10);
}

int main(void)
{
    uint32_t sectors = cmdline_uint("sectors", 0);
    if (!check(sectors >= 2 * DMA_LBA, "sectors=%u on the command line", sectors))
        return 1;
    uint32_t mib = cmdline_uint("mib", 4);
    uint32_t lba48 = cmdline_uint("lba48", sectors - 1);

    if (!check_pci())
        return 1;
    outb(ATA_CTL, DC_NIEN); /* polled */
    if (!check_identify(sectors))
        return 1;
    check_read_sectors();
    check_write_sectors();
    check_read_multiple();
    check_read_ext(lba48);
    check_dma();
    check_errors(sectors);
    if (!checks_failed())
        pio_throughput(sectors, mib);
    return 0;
}
