/*
 * Second stage of the BIOS services test: real mode, loaded at 0:8000 by stage1.S.
 * It calls each BIOS service the way a boot loader or DOS program does and prints one
 * verdict per check through INT 10h AH=0Eh (so every line on COM1 is itself proof that
 * teletype works): "PASS <service> ..." or "FAIL <service> ...", some "INFO" lines with
 * values the host test compares with the command line (-m, -rtc), and last
 * "DONE bios: <passed> passed, <failed> failed"; then isa-debug-exit (status 1 when all
 * passed, 3 otherwise).
 *
 * First, before any verdict, it asks the keyboard and video services loaders use
 * (INT 16h with scan codes sent through the 8042, INT 10h on the console) and prints
 * what they answer as "ANSWER ..." lines and the bytes INT 10h sends between
 * "VIDEO BEGIN" and "VIDEO END", up to "ANSWERS END": the host test compares them
 * between pyemu's BIOS and SeaBIOS, which run this stage alike up to there.
 *
 * From a disk (DL = 80h) it also reads and writes the disk with CHS and EDD calls (the
 * host test checks the written sectors in the image) and waits for two keys: one typed
 * on the serial console, one sent to the PS/2 keyboard. From a CD (DL >= E0h) it reads
 * the CD in 2048-byte sectors and checks the El Torito status call instead.
 *
 * The disk (mkdisk.py): stage 1 with one partition (type 0Ch, LBA 2048 to the end, its
 * first sector starting "PYEMU-PART"), this stage at LBA 1-48, and from LBA 49 every
 * sector starting "PYEMU LBA " and its number in 8 hex digits.
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
#define NULL ((void *)0)

struct regs {
    u32 eax, ebx, ecx, edx, esi, edi, ebp;
    u16 ds, es, flags;
    u8 vec;
} __attribute__((packed));

void bios_call(struct regs *r);

#define CF 0x0001
#define ZF 0x0040
#define DISK_SECTORS 8192u
#define PART_LBA 2048u

static u32 passed, failed;
/* Transfer buffers in free conventional memory below the boot sector. */
#define buf ((u8 *)0x2000)    /* 4 KiB */
#define buf2 ((u8 *)0x3000)   /* 2 KiB */

static void zero(struct regs *r)
{
    u8 *p = (u8 *)r;
    for (u32 i = 0; i < sizeof(*r); i++)
        p[i] = 0;
}

static void call(u8 vec, struct regs *r)
{
    r->vec = vec;
    bios_call(r);
}

static void putc(char c)
{
    struct regs r;
    zero(&r);
    r.eax = 0x0E00 | (u8)c;
    r.ebx = 0x0007;
    call(0x10, &r);
}

static void puts(const char *s)
{
    while (*s) {
        if (*s == '\n')
            putc('\r');
        putc(*s++);
    }
}

static void puthex(u32 v, int digits)
{
    while (digits--)
        putc("0123456789ABCDEF"[(v >> (4 * digits)) & 15]);
}

static void putdec(u32 v)
{
    char d[10];
    int n = 0;
    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n--)
        putc(d[n]);
}

static int check(int ok, const char *what)
{
    puts(ok ? "PASS " : "FAIL ");
    puts(what);
    puts("\n");
    if (ok)
        passed++;
    else
        failed++;
    return ok;
}

static int mem_eq(const void *a, const void *b, u32 n)
{
    const u8 *x = a, *y = b;
    for (u32 i = 0; i < n; i++) {
        if (x[i] != y[i])
            return 0;
    }
    return 1;
}

static void mem_set(void *d, u8 c, u32 n)
{
    u8 *p = d;
    while (n--)
        *p++ = c;
}

static u8 peek(u16 seg, u16 off)
{
    u8 v;
    __asm__ volatile("movw %1, %%fs\n\tmovb %%fs:(%2), %0" : "=q"(v) : "r"(seg), "r"((u32)off));
    return v;
}

static void poke(u16 seg, u16 off, u8 v)
{
    __asm__ volatile("movw %0, %%fs\n\tmovb %2, %%fs:(%1)" :: "r"(seg), "r"((u32)off), "q"(v)
                     : "memory");
}

static u16 peekw(u16 seg, u16 off)
{
    return (u16)(peek(seg, off) | peek(seg, off + 1) << 8);
}

/* -- INT 10h, 11h, 12h, BDA ----------------------------------------------------------- */
static void test_video(void)
{
    struct regs r;
    puts("\rabc");
    zero(&r);
    r.eax = 0x0300;
    call(0x10, &r);
    puts("\n");
    check((r.edx & 0xFF) == 3, "int10 teletype moves the cursor (AH=03h column 3 after \"abc\")");
    zero(&r);
    r.eax = 0x0200;
    r.edx = 0x0507;
    call(0x10, &r);
    zero(&r);
    r.eax = 0x0300;
    call(0x10, &r);
    check((r.edx & 0xFFFF) == 0x0507, "int10 set/get cursor (AH=02h/03h)");
    zero(&r);
    r.eax = 0x0F00;
    call(0x10, &r);
    check((r.eax & 0xFFFF) == 0x5003, "int10 get video mode (AH=0Fh: mode 3, 80 columns)");
}

static void test_equipment(void)
{
    struct regs r;
    zero(&r);
    call(0x12, &r);
    puts("INFO int12 base memory ");
    putdec(r.eax & 0xFFFF);
    puts(" KiB\n");
    check((r.eax & 0xFFFF) == 639, "int12 base memory 639 KiB");
    zero(&r);
    call(0x11, &r);
    check(((r.eax >> 9) & 7) >= 1 && !(r.eax & 1), "int11 equipment: serial port, no floppy");
    check(peekw(0x40, 0x00) == 0x3F8, "bda COM1 base 3F8h at 40:00");
    check(peekw(0x40, 0x0E) == 0x9FC0 && peek(0x9FC0, 0) == 1, "bda EBDA segment 9FC0h, 1 KiB");
}

/* -- what POST left in the chipset -------------------------------------------------- */
static u8 inb(u16 port)
{
    u8 v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static u32 pci_read(u32 devfn, u32 reg)
{
    u32 v;
    __asm__ volatile("outl %0, %w1" :: "a"(0x80000000u | devfn << 8 | (reg & 0xFC)), "Nd"(0xCF8));
    __asm__ volatile("inl %w1, %0" : "=a"(v) : "Nd"(0xCFC));
    return v >> (8 * (reg & 3));
}

static void test_post(void)
{
    u32 pam = pci_read(0, 0x58);   /* 58h-5Bh: PAM0 in byte 1 */
    u32 pam56 = pci_read(0, 0x5C) >> 16;
    check(((pam >> 8) & 0xFF) == 0x10 && (pam56 & 0xFFFF) == 0x3333,
          "post shadow RAM: F segment read-only (PAM0=10h), E segment RAM (PAM5/6=33h)");
    check(peek(0xF000, 0xFFF0) == 0xEA && peek(0xF000, 0xFFFE) == 0xFC,
          "post shadowed image: reset vector and model byte at F000:FFF0");
    check(pci_read(9, 0) == 0x70108086 && (pci_read(9, 4) & 5) == 5,
          "post PCI: PIIX3 IDE 00:01.1 decodes I/O and masters the bus");
    check((inb(0x21) & 0x03) == 0 && (inb(0x21) & 0x40) == 0x40,
          "post PIC: IRQ0 and IRQ1 unmasked, IRQ6 (no floppy) masked");
}

/* -- INT 13h on a disk ---------------------------------------------------------------- */
static u8 drive;
static u32 cyls, heads, spt;

static int ext_rw(u8 fn, u32 lba, u32 count, void *dest)
{
    struct {
        u8 size, reserved;
        u16 count, off, seg;
        u64 lba;
    } __attribute__((packed)) dap = {0x10, 0, (u16)count, (u16)(u32)dest, 0, lba};
    struct regs r;
    zero(&r);
    r.eax = (u32)fn << 8;
    r.edx = drive;
    r.esi = (u32)&dap;
    call(0x13, &r);
    return !(r.flags & CF) && dap.count == count;
}

static int chs_rw(u8 fn, u32 lba, u32 count, void *dest)
{
    u32 cyl = lba / (heads * spt), head = lba / spt % heads, sec = lba % spt + 1;
    struct regs r;
    zero(&r);
    r.eax = (u32)fn << 8 | count;
    r.ecx = (cyl & 0xFF) << 8 | (cyl >> 2 & 0xC0) | sec;
    r.edx = head << 8 | drive;
    r.ebx = (u32)dest;
    call(0x13, &r);
    return !(r.flags & CF) && (r.eax & 0xFF) == count;
}

static int is_lba_sector(const u8 *s, u32 lba)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!mem_eq(s, "PYEMU LBA ", 10))
        return 0;
    for (int i = 0; i < 8; i++) {
        if (s[10 + i] != hex[(lba >> (28 - 4 * i)) & 15])
            return 0;
    }
    return 1;
}

static void fill(u8 *s, const char *tag)
{
    mem_set(s, 0, 512);
    for (u32 i = 0; tag[i]; i++)
        s[i] = (u8)tag[i];
    for (u32 i = 64; i < 512; i++)
        s[i] = (u8)(i * 7);
}

/* INT 13h AH=41h (EDD installation check) on drive `number`, into r. */
static void edd_check(struct regs *r, u32 number)
{
    zero(r);
    r->eax = 0x4100;
    r->ebx = 0x55AA;
    r->edx = number;
    call(0x13, r);
}

static void test_disk(void)
{
    struct regs r;
    edd_check(&r, drive);
    check(!(r.flags & CF) && (r.ebx & 0xFFFF) == 0xAA55 && (r.ecx & 1),
          "int13 41h EDD installation check");

    zero(&r);
    r.eax = 0x0800;
    r.edx = drive;
    call(0x13, &r);
    cyls = ((r.ecx >> 8) & 0xFF) + ((r.ecx & 0xC0) << 2) + 1;
    spt = r.ecx & 0x3F;
    heads = ((r.edx >> 8) & 0xFF) + 1;
    puts("INFO int13 08h geometry ");
    putdec(cyls);
    putc('/');
    putdec(heads);
    putc('/');
    putdec(spt);
    puts(" drives ");
    putdec(r.edx & 0xFF);
    puts("\n");
    check(!(r.flags & CF) && spt && (r.edx & 0xFF) == 1 && cyls * heads * spt <= DISK_SECTORS
          && cyls * heads * spt > DISK_SECTORS - heads * spt,
          "int13 08h parameters describe the disk");

    zero(&r);
    r.eax = 0x1500;
    r.edx = drive;
    call(0x13, &r);
    check(!(r.flags & CF) && ((r.eax >> 8) & 0xFF) == 3
          && ((r.ecx & 0xFFFF) << 16 | (r.edx & 0xFFFF)) == DISK_SECTORS,
          "int13 15h type: fixed disk, sector count");

    u16 *params = (u16 *)buf;
    mem_set(buf, 0, 0x1E);
    params[0] = 0x1E;
    zero(&r);
    r.eax = 0x4800;
    r.edx = drive;
    r.esi = (u32)params;
    call(0x13, &r);
    check(!(r.flags & CF) && params[12] == 512 && *(u32 *)(buf + 16) == DISK_SECTORS
          && *(u32 *)(buf + 20) == 0, "int13 48h parameters: 512-byte sectors, total");

    /* The partition table, read with CHS 0/0/1, then the partition's first sector. */
    int ok = chs_rw(0x02, 0, 1, buf) && buf[510] == 0x55 && buf[511] == 0xAA;
    u8 *entry = buf + 446;
    u32 start = entry[8] | entry[9] << 8 | (u32)entry[10] << 16 | (u32)entry[11] << 24;
    check(ok && entry[0] == 0x80 && entry[4] == 0x0C && start == PART_LBA,
          "int13 02h reads the partition table (CHS 0/0/1)");
    check(ext_rw(0x42, start, 1, buf) && mem_eq(buf, "PYEMU-PART", 10),
          "int13 42h reads the partition's first sector");

    check(chs_rw(0x02, 100, 1, buf) && is_lba_sector(buf, 100), "int13 02h CHS read of LBA 100");
    check(chs_rw(0x02, 6047, 3, buf) && is_lba_sector(buf, 6047) && is_lba_sector(buf + 512, 6048)
          && is_lba_sector(buf + 1024, 6049), "int13 02h CHS read of 3 sectors across a track");
    ok = ext_rw(0x42, 300, 8, buf);
    for (u32 i = 0; i < 8; i++)
        ok = ok && is_lba_sector(buf + 512 * i, 300 + i);
    check(ok, "int13 42h extended read of 8 sectors");

    fill(buf, "CHS-WRITE 200");
    mem_set(buf2, 0, 512);
    check(chs_rw(0x03, 200, 1, buf) && ext_rw(0x42, 200, 1, buf2) && mem_eq(buf, buf2, 512),
          "int13 03h CHS write, read back with 42h");
    fill(buf, "EDD-WRITE 201");
    fill(buf + 512, "EDD-WRITE 202");
    mem_set(buf2, 0, 1024);
    check(ext_rw(0x43, 201, 2, buf) && chs_rw(0x02, 201, 2, buf2) && mem_eq(buf, buf2, 1024),
          "int13 43h extended write, read back with 02h");

    zero(&r);
    check(!ext_rw(0x42, DISK_SECTORS, 1, buf), "int13 42h past the end fails (CF=1)");
    zero(&r);
    r.eax = 0x0100;
    r.edx = drive;
    call(0x13, &r);
    check(!(r.flags & CF) || ((r.eax >> 8) & 0xFF) != 0, "int13 01h reports the last error");
    edd_check(&r, 0x81);
    check(r.flags & CF, "int13 on an absent drive 81h fails");
}

/* -- INT 13h on the El Torito CD ------------------------------------------------------ */
static void test_cd(void)
{
    struct regs r;
    edd_check(&r, drive);
    check(!(r.flags & CF) && (r.ebx & 0xFFFF) == 0xAA55, "int13 41h EDD check on the CD");

    u16 *params = (u16 *)buf;
    mem_set(buf, 0, 0x1E);
    params[0] = 0x1A;
    zero(&r);
    r.eax = 0x4800;
    r.edx = drive;
    r.esi = (u32)params;
    call(0x13, &r);
    check(!(r.flags & CF) && params[12] == 2048 && *(u32 *)(buf + 16) >= 24,
          "int13 48h on the CD: 2048-byte sectors");

    check(ext_rw(0x42, 16, 2, buf) && mem_eq(buf, "\1CD001\1", 7)
          && mem_eq(buf + 2048, "\0CD001\1EL TORITO SPECIFICATION", 30),
          "int13 42h reads 2048-byte CD sectors (PVD and boot record)");
    u32 catalog = *(u32 *)(buf + 2048 + 0x47);
    check(ext_rw(0x42, catalog, 1, buf2) && buf2[0] == 1 && buf2[32] == 0x88,
          "int13 42h reads the boot catalog");

    mem_set(buf, 0, 0x13);
    zero(&r);
    r.eax = 0x4B01;
    r.edx = drive;
    r.esi = (u32)buf;
    call(0x13, &r);
    check(!(r.flags & CF) && buf[0] == 0x13 && buf[1] == 0 && buf[2] == drive
          && *(u32 *)(buf + 4) == *(u32 *)(buf2 + 40),
          "int13 4B01h El Torito status: no emulation, image LBA");
    check(!ext_rw(0x43, 30, 1, buf), "int13 43h on the CD fails");
}

/* -- INT 15h ------------------------------------------------------------------------ */
static void test_memory(void)
{
    struct regs r;
    struct { u64 addr, len; u32 type; } __attribute__((packed)) e;
    u64 ram_end = 0, prev_end = 0;
    u32 n = 0, ok = 1, cont = 0, low_ok = 0;
    do {
        zero(&r);
        r.eax = 0xE820;
        r.edx = 0x534D4150;
        r.ecx = 20;
        r.ebx = cont;
        r.edi = (u32)&e;
        call(0x15, &r);
        if (r.flags & CF || r.eax != 0x534D4150 || r.ecx != 20) {
            ok = 0;
            break;
        }
        puts("INFO e820 ");
        puthex((u32)(e.addr >> 32), 8);
        puthex((u32)e.addr, 8);
        putc(' ');
        puthex((u32)(e.len >> 32), 8);
        puthex((u32)e.len, 8);
        putc(' ');
        putdec(e.type);
        puts("\n");
        if (e.addr < prev_end)
            ok = 0;
        prev_end = e.addr + e.len;
        if (e.addr == 0 && e.len == 0x9FC00 && e.type == 1)
            low_ok = 1;
        if (e.type == 1 && e.addr + e.len <= 0x100000000ull && e.addr + e.len > ram_end)
            ram_end = e.addr + e.len;
        cont = r.ebx;
    } while (cont && ++n < 32);
    puts("INFO e820 ram_end=");
    puthex((u32)ram_end, 8);
    puts("\n");
    check(ok && low_ok && ram_end >= 0x200000, "int15 E820 map: sorted, 639 KiB low RAM");

    u32 mib1 = (u32)ram_end - 0x100000;
    zero(&r);
    r.eax = 0xE801;
    call(0x15, &r);
    u32 low = (r.eax & 0xFFFF), high = r.ebx & 0xFFFF;
    u32 expect_low = mib1 / 1024 > 15360 ? 15360 : mib1 / 1024;
    u32 expect_high = ram_end > 0x1000000 ? (u32)(ram_end - 0x1000000) / 65536 : 0;
    check(!(r.flags & CF) && low == expect_low && (r.ecx & 0xFFFF) == low && high == expect_high
          && (r.edx & 0xFFFF) == high, "int15 E801h agrees with E820");
    zero(&r);
    r.eax = 0x8800;
    call(0x15, &r);
    u32 kib = mib1 / 1024 > 0xFFFF ? 0xFFFF : mib1 / 1024;
    check(!(r.flags & CF) && (r.eax & 0xFFFF) == kib, "int15 88h extended memory agrees");

    zero(&r);
    r.eax = 0xC000;
    call(0x15, &r);
    check(!(r.flags & CF) && peek((u16)r.es, (u16)(r.ebx + 2)) == 0xFC,
          "int15 C0h configuration table (model FCh)");
}

/* AH=87h: a GDT whose entries 2 and 3 describe source and destination. */
static int block_move(u32 src, u32 dst, u32 words)
{
    u8 gdt[48];
    mem_set(gdt, 0, sizeof(gdt));
    u32 addr[2] = {src, dst};
    for (int i = 0; i < 2; i++) {
        u8 *d = gdt + 0x10 + 8 * i;
        d[0] = 0xFF;
        d[1] = 0xFF;
        d[2] = (u8)addr[i];
        d[3] = (u8)(addr[i] >> 8);
        d[4] = (u8)(addr[i] >> 16);
        d[5] = 0x93;
        d[7] = (u8)(addr[i] >> 24);
    }
    struct regs r;
    zero(&r);
    r.eax = 0x8700;
    r.ecx = words;
    r.esi = (u32)gdt;
    call(0x15, &r);
    return !(r.flags & CF) && !(r.eax & 0xFF00);
}

static void test_block_move(void)
{
    for (u32 i = 0; i < 512; i++)
        buf[i] = (u8)(i * 13 + 1);
    mem_set(buf2, 0, 512);
    check(block_move(0x2000, 0x200000, 256) && block_move(0x200000, 0x3000, 256)
          && mem_eq(buf, buf2, 512), "int15 87h block move to 2 MiB and back");
}

static int a20_wraps(void)
{
    poke(0, 0x600, 0xAA);
    poke(0xFFFF, 0x610, 0x55);   /* 0x100600, or 0x600 with A20 off */
    int wraps = peek(0, 0x600) == 0x55;
    poke(0, 0x600, 0);
    return wraps;
}

static void test_a20(void)
{
    struct regs r;
    zero(&r);
    r.eax = 0x2403;
    call(0x15, &r);
    check(!(r.flags & CF) && (r.ebx & 2), "int15 2403h: A20 via port 92h supported");
    zero(&r);
    r.eax = 0x2400;
    call(0x15, &r);
    int off_wraps = !(r.flags & CF) && a20_wraps();
    zero(&r);
    r.eax = 0x2402;
    call(0x15, &r);
    int off_status = (r.eax & 0xFF) == 0;
    zero(&r);
    r.eax = 0x2401;
    call(0x15, &r);
    int on_ok = !(r.flags & CF) && !a20_wraps();
    zero(&r);
    r.eax = 0x2402;
    call(0x15, &r);
    check(off_wraps && off_status && on_ok && (r.eax & 0xFF) == 1,
          "int15 2400h/2401h/2402h toggle A20 (addresses wrap at 1 MiB only when off)");
}

/* -- INT 1Ah, INT 15h AH=86h --------------------------------------------------------- */
static u32 ticks(void)
{
    struct regs r;
    zero(&r);
    call(0x1A, &r);
    return (r.ecx & 0xFFFF) << 16 | (r.edx & 0xFFFF);
}

static int bcd_ok(u8 v, u8 max)
{
    return (v & 15) < 10 && (v >> 4) < 10 && ((v >> 4) * 10 + (v & 15)) <= max;
}

static u32 from_bcd(u8 v)
{
    return (v >> 4) * 10u + (v & 15);
}

/* POST starts the tick count at the RTC's time of day: 1193182 / 65536 ticks a second. */
static void test_post_ticks(void)
{
    struct regs r;
    zero(&r);
    r.eax = 0x0200;
    call(0x1A, &r);
    u32 secs = from_bcd((u8)(r.ecx >> 8)) * 3600 + from_bcd((u8)r.ecx) * 60
               + from_bcd((u8)(r.edx >> 8));
    u32 expect = secs * 18 + (secs * 13535 >> 16);
    u32 now = ticks();
    puts("INFO ticks at the RTC time of day: ");
    putdec(now);
    puts("\n");
    check(now + 19 >= expect && now <= expect + 19, "int1a 00h counts from the RTC time of day");
}

static void test_time(void)
{
    u32 t0 = ticks(), t1 = t0;
    for (int i = 0; i < 100 && t1 == t0; i++) {
        __asm__ volatile("sti; hlt");
        t1 = ticks();
    }
    check(t1 > t0, "int1a 00h ticks advance (IRQ0 at 18.2 Hz, INT 08h)");
    check(peekw(0x40, 0x6C) != 0 || peekw(0x40, 0x6E) != 0, "bda tick count at 40:6C");
    struct regs s;
    zero(&s);
    s.eax = 0x0100;
    s.ecx = 0x0001;
    s.edx = 0x2345;   /* 12345h ticks: about 1h 10m past midnight */
    call(0x1A, &s);
    t0 = ticks();
    check(t0 >= 0x12345 && t0 < 0x12345 + 5, "int1a 01h sets the tick count");

    struct regs r;
    t0 = ticks();
    zero(&r);
    r.eax = 0x8600;
    r.ecx = 0x0003;
    r.edx = 0x0D40;   /* 200000 us */
    call(0x15, &r);
    t1 = ticks();
    puts("INFO int15 86h: 200 ms took ");
    putdec(t1 - t0);
    puts(" ticks\n");
    check(!(r.flags & CF) && t1 - t0 >= 3 && t1 - t0 <= 6, "int15 86h waits 200 ms");

    zero(&r);
    r.eax = 0x0400;
    call(0x1A, &r);
    puts("INFO rtc date ");
    puthex((r.ecx >> 8) & 0xFF, 2);
    puthex(r.ecx & 0xFF, 2);
    putc('-');
    puthex((r.edx >> 8) & 0xFF, 2);
    putc('-');
    puthex(r.edx & 0xFF, 2);
    puts("\n");
    check(!(r.flags & CF) && bcd_ok((u8)(r.edx >> 8), 12) && bcd_ok((u8)r.edx, 31),
          "int1a 04h RTC date in BCD");
    zero(&r);
    r.eax = 0x0200;
    call(0x1A, &r);
    puts("INFO rtc time ");
    puthex((r.ecx >> 8) & 0xFF, 2);
    putc(':');
    puthex(r.ecx & 0xFF, 2);
    putc(':');
    puthex((r.edx >> 8) & 0xFF, 2);
    puts("\n");
    check(!(r.flags & CF) && bcd_ok((u8)(r.ecx >> 8), 23) && bcd_ok((u8)r.ecx, 59)
          && bcd_ok((u8)(r.edx >> 8), 59), "int1a 02h RTC time in BCD");
}

/* -- INT 16h ------------------------------------------------------------------------ */
static u16 read_key(void)
{
    struct regs r;
    zero(&r);
    call(0x16, &r);
    return (u16)r.eax;
}

static void test_keyboard_buffer(void)
{
    struct regs r;
    zero(&r);
    r.eax = 0x0500;
    r.ecx = 0x2E63;   /* 'c' */
    call(0x16, &r);
    int stored = (r.eax & 0xFF) == 0;
    zero(&r);
    r.eax = 0x0100;
    call(0x16, &r);
    int peeked = !(r.flags & ZF) && (r.eax & 0xFFFF) == 0x2E63;
    u16 key = read_key();
    zero(&r);
    r.eax = 0x0100;
    call(0x16, &r);
    check(stored && peeked && key == 0x2E63 && (r.flags & ZF),
          "int16 05h/01h/00h keyboard buffer");
    zero(&r);
    r.eax = 0x0200;
    call(0x16, &r);
    check((r.eax & 0xFF) == 0, "int16 02h shift flags (none held)");
}

static void report_key(const char *source, u16 key)
{
    puts("INFO int16 key from ");
    puts(source);
    puts(": ascii ");
    puthex(key & 0xFF, 2);
    puts(" scan ");
    puthex(key >> 8, 2);
    puts("\n");
}

static void test_typed_keys(void)
{
    puts("WAIT int16: type a key on the serial console\n");
    u16 key = read_key();
    report_key("serial", key);
    check(key == 0x256B, "int16 00h reads 'k' typed on the serial console");
    puts("WAIT int16: send shift-a to the keyboard\n");
    key = read_key();
    report_key("keyboard", key);
    check(key == 0x1E41, "int16 00h reads shift-a from the PS/2 keyboard (INT 09h)");
}

/* -- answers compared between firmwares ---------------------------------------------- */
/* What SYSLINUX, GRUB, iPXE and DOS programs call, answers printed rather than judged
 * (see the top of this file). */
static void outb(u16 port, u8 v)
{
    __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port));
}

static void put_reg(const char *name, u32 v)
{
    puts(name);
    puthex(v & 0xFFFF, 4);
}

/* "ANSWER <what>: AX=.. BX=.. CX=.. DX=.. CF=. ZF=." */
static void answer(const char *what, const struct regs *r)
{
    puts("ANSWER ");
    puts(what);
    put_reg(": AX=", r->eax);
    put_reg(" BX=", r->ebx);
    put_reg(" CX=", r->ecx);
    put_reg(" DX=", r->edx);
    puts(r->flags & CF ? " CF=1" : " CF=0");
    puts(r->flags & ZF ? " ZF=1\n" : " ZF=0\n");
}

/* Call INT vec with AX and the other registers set to 5A5Ah (so what a service leaves
 * alone shows), print its answer. */
static void ask(const char *what, u8 vec, u16 ax, u16 bx)
{
    struct regs r;
    zero(&r);
    r.eax = ax;
    r.ebx = bx;
    r.ecx = r.edx = 0x5A5A;
    call(vec, &r);
    answer(what, &r);
}

/* A scan code into the 8042's output buffer as if the keyboard sent it (controller
 * command D2h): IRQ1 and the BIOS's INT 09h take it. */
static int inject(u8 code)
{
    for (u32 i = 0; i < 100000 && (inb(0x64) & 2); i++)
        ;
    outb(0x64, 0xD2);
    for (u32 i = 0; i < 100000 && (inb(0x64) & 2); i++)
        ;
    outb(0x60, code);
    for (u32 i = 0; i < 200000; i++) {
        if (!(inb(0x64) & 1))
            return 1;
    }
    return 0;
}

static u16 kbd(u8 ah, u16 *flags)
{
    struct regs r;
    zero(&r);
    r.eax = (u32)ah << 8;
    call(0x16, &r);
    if (flags)
        *flags = r.flags;
    return (u16)r.eax;
}

/* Inject `codes`, then print a line for each key word the BIOS made, as AH=01h (the
 * 84-key form), 11h and 10h return it, and one with the shift flags from AH=02h and 12h.
 * (Lines stay within 80 columns: a console wraps longer ones.) */
static void keys(const char *name, const char *codes)
{
    int taken = 1;
    for (const u8 *c = (const u8 *)codes; *c; c++)
        taken &= inject(*c);
    for (int n = 0; n < 8; n++) {
        u16 flags, peek = kbd(0x01, &flags);
        if (flags & ZF)
            break;
        puts("ANSWER keys ");
        puts(name);
        put_reg(": 01h=", peek);
        put_reg(" 11h=", kbd(0x11, NULL));
        put_reg(" 10h=", kbd(0x10, NULL));
        puts("\n");
    }
    puts("ANSWER keys ");
    puts(name);
    puts(taken ? ":" : ": (not taken)");
    put_reg(" 02h=", kbd(0x02, NULL) & 0xFF);
    put_reg(" 12h=", kbd(0x12, NULL));
    puts("\n");
}

static void keyboard_answers(void)
{
    ask("int16 09h functionality", 0x16, 0x0900, 0x5A5A);
    ask("int16 0Ah keyboard ID", 0x16, 0x0A00, 0x5A5A);
    ask("int16 03h typematic", 0x16, 0x0305, 0x0000);
    ask("int16 02h shift flags", 0x16, 0x0200, 0x5A5A);
    ask("int16 12h extended flags", 0x16, 0x1200, 0x5A5A);
    ask("int16 92h capability", 0x16, 0x9200, 0x5A5A);
    ask("int16 A2h 122-key capability", 0x16, 0xA200, 0x5A5A);
    ask("int16 6F08h", 0x16, 0x6F08, 0x5A5A);
    ask("int16 01h with nothing typed", 0x16, 0x0100, 0x5A5A);
    ask("int15 4Fh keyboard intercept", 0x15, 0x4F1E, 0x5A5A);

    /* AH=12h reads 40:18 and 40:96 as the BIOS keeps them. */
    poke(0x40, 0x17, 0x4C);
    poke(0x40, 0x18, 0x0F);
    poke(0x40, 0x96, 0x18);
    ask("int16 12h of 4C 0F 18", 0x16, 0x1200, 0x5A5A);
    poke(0x40, 0x17, 0);
    poke(0x40, 0x18, 0);
    poke(0x40, 0x96, 0x10);

    /* Key words stored with AH=05h, read back in both forms. */
    static const u16 stored[] = {0x1E61, 0x48E0, 0xE00D, 0xE00A, 0xE02F, 0x01F0, 0x00F0, 0x00E0};
    for (u32 i = 0; i < sizeof(stored) / sizeof(stored[0]); i++) {
        struct regs r;
        zero(&r);
        r.eax = 0x0500;
        r.ecx = stored[i];
        call(0x16, &r);
        puts("ANSWER int16 05h ");
        puthex(stored[i], 4);
        put_reg(": AX=", r.eax);
        put_reg(" 01h=", kbd(0x01, NULL));
        put_reg(" 00h=", kbd(0x00, NULL));
        r.eax = 0x0500;
        call(0x16, &r);
        put_reg(" 11h=", kbd(0x11, NULL));
        put_reg(" 10h=", kbd(0x10, NULL));
        puts("\n");
    }
    u32 stored_n = 0;
    struct regs r;
    for (u32 i = 0; i < 20; i++) {
        zero(&r);
        r.eax = 0x0500;
        r.ecx = 0x3920;
        call(0x16, &r);
        if (r.eax & 0xFF)
            break;
        stored_n++;
    }
    puts("ANSWER int16 05h fills the ring after ");
    putdec(stored_n);
    put_reg(" words: AX=", r.eax);
    puts("\n");
    while (stored_n--)
        kbd(0x10, NULL);

    /* Scan codes (set 1) as the keyboard sends them through the 8042's translation. */
    keys("a", "\x1E\x9E");
    keys("shift-a", "\x2A\x1E\x9E\xAA");
    keys("caps lock on, a, shift-a", "\x3A\xBA\x1E\x9E\x2A\x1E\x9E\xAA");
    keys("caps lock off", "\x3A\xBA");
    keys("caps lock held", "\x3A");
    keys("caps lock released, off", "\xBA\x3A\xBA");
    keys("ctrl-c", "\x1D\x2E\xAE\x9D");
    keys("right ctrl held", "\xE0\x1D");
    keys("right ctrl-c, released", "\x2E\xAE\xE0\x9D");
    keys("left alt held", "\x38");
    keys("left alt-x, released", "\x2D\xAD\xB8");
    keys("right alt held", "\xE0\x38");
    keys("right alt-x, released", "\x2D\xAD\xE0\xB8");
    keys("grey up, keypad 8", "\xE0\x48\xE0\xC8\x48\xC8");
    keys("num lock on, keypad 8", "\x45\xC5\x48\xC8");
    keys("grey up with fake shifts", "\xE0\x2A\xE0\x48\xE0\xC8\xE0\xAA");
    keys("num lock off", "\x45\xC5");
    keys("keypad enter, keypad /, keypad *", "\xE0\x1C\xE0\x9C\xE0\x35\xE0\xB5\x37\xB7");
    keys("ctrl-keypad enter, alt-keypad /", "\x1D\xE0\x1C\xE0\x9C\x9D\x38\xE0\x35\xE0\xB5\xB8");
    keys("F1, shift-F12, alt-F1, ctrl-F10",
         "\x3B\xBB\x2A\x58\xD8\xAA\x38\x3B\xBB\xB8\x1D\x44\xC4\x9D");
    keys("esc, alt-esc, backspace, ctrl-backspace",
         "\x01\x81\x38\x01\x81\xB8\x0E\x8E\x1D\x0E\x8E\x9D");
    keys("tab, shift-tab, ctrl-tab", "\x0F\x8F\x2A\x0F\x8F\xAA\x1D\x0F\x8F\x9D");
    keys("alt-grey home, ctrl-grey end", "\x38\xE0\x47\xE0\xC7\xB8\x1D\xE0\x4F\xE0\xCF\x9D");
    keys("pause", "\xE1\x1D\x45\xE1\x9D\xC5");
    keys("scroll lock on", "\x46\xC6");
    keys("scroll lock off", "\x46\xC6");
    keys("print screen, sysreq", "\xE0\x2A\xE0\x37\xE0\xB7\xE0\xAA\x54\xD4");
    keys("the 102nd key, F11", "\x56\xD6\x57\xD7");
    keys("ctrl-break", "\x1D\xE0\x46\xE0\xC6\x9D");
    puts("ANSWER bda 40:71 after ctrl-break: ");
    puthex(peek(0x40, 0x71), 2);
    puts("\n");
    poke(0x40, 0x71, 0);
}

/* INT 10h with interrupts off, so nothing the firmware sends on a timer tick lands in
 * the middle; register answers are printed after "VIDEO END". */
struct video_answer {
    const char *what;
    struct regs r;
};
static struct video_answer video_answers[16];
static u32 video_answer_count;

static void video(u16 ax, u16 bx, u16 cx, u16 dx, const char *what)
{
    struct regs r;
    zero(&r);
    r.eax = ax;
    r.ebx = bx;
    r.ecx = cx;
    r.edx = dx;
    call(0x10, &r);
    if (what && video_answer_count < sizeof(video_answers) / sizeof(video_answers[0])) {
        video_answers[video_answer_count].what = what;
        video_answers[video_answer_count++].r = r;
    }
}

static void video_str(u16 ax, u16 bl, u8 row, u8 col, const char *s, u16 n)
{
    struct regs r;
    zero(&r);
    r.eax = ax;
    r.ebx = bl;
    r.ecx = n;
    r.edx = (u32)row << 8 | col;
    r.ebp = (u32)s;
    call(0x10, &r);
}

static void tty(const char *s)
{
    while (*s)
        video(0x0E00 | (u8)*s++, 0x0007, 0, 0, NULL);
}

/* AH=09h then AH=02h to the next column, per character: how SYSLINUX's and GRUB's
 * consoles write. */
static void write_at(u8 row, u8 col, const char *s, u8 attr)
{
    for (; *s; s++, col++) {
        video(0x0200, 0, 0, (u16)(row << 8 | col), NULL);
        video(0x0900 | (u8)*s, attr, 1, 0, NULL);
    }
    video(0x0200, 0, 0, (u16)(row << 8 | col), NULL);
}

static void wait_ticks(u32 n)
{
    u32 t0 = ticks();
    for (u32 i = 0; i < 1000 && ticks() - t0 < n; i++)
        __asm__ volatile("sti; hlt");
}

static void video_answers_run(void)
{
    puts("VIDEO BEGIN\n");
    wait_ticks(2);   /* what the firmware held back goes out first */
    __asm__ volatile("cli");
    video(0x0003, 0, 0, 0, "int10 00h mode 3");
    video(0x0F00, 0, 0x5A5A, 0x5A5A, "int10 0Fh mode");
    video(0x0300, 0, 0x5A5A, 0x5A5A, "int10 03h after mode set");
    tty("teletype\r\n");
    write_at(1, 0, "SAY line", 0x07);
    tty("\r\n");
    write_at(2, 4, "coloured", 0x1E);
    tty("\r\n");
    /* AH=09h for the colour, AH=0Eh on the same cell to advance (DOS programs). */
    video(0x0958, 0x004E, 1, 0, NULL);
    video(0x0E58, 0x0007, 0, 0, NULL);
    video(0x0959, 0x004E, 1, 0, NULL);
    video(0x0E59, 0x0007, 0, 0, NULL);
    video(0x092A, 0x000A, 5, 0, NULL);               /* five at once, cursor stays */
    video(0x0300, 0, 0x5A5A, 0x5A5A, "int10 03h after AH=09h CX=5");
    tty("ab\bc\a\r\n");
    tty("\x01\x1B\x7F\x80\xB3\xDB\xE0\r\n");
    video(0x0200, 0, 0, 0x0A28, NULL);                /* row 10, column 40 */
    tty("moved");
    video(0x0601, 0x0700, 0, 0x184F, NULL);          /* scroll the screen up one line */
    video(0x0200, 0, 0, 0x1700, NULL);                /* rows 23 and 24: teletype scrolls */
    tty("row 23\r\nrow 24\r\nscrolled\r\n");
    video(0x0600, 0x1700, 0, 0x184F, NULL);          /* blank the whole screen */
    video(0x0600, 0x0700, 0x0101, 0x0505, NULL);     /* ... and a window */
    video(0x0200, 0, 0, 0, NULL);
    video(0x0920, 0x0007, 80 * 25, 0, NULL);         /* spaces over the screen: clear */
    video(0x0800, 0, 0x5A5A, 0x5A5A, "int10 08h read character");
    video(0x1A00, 0x5A5A, 0x5A5A, 0x5A5A, "int10 1Ah display combination");
    video(0x1200, 0x5A10, 0x5A5A, 0x5A5A, "int10 12h BL=10h EGA info");
    video(0x4F00, 0x5A5A, 0x5A5A, 0x5A5A, "int10 4F00h VBE information");
    video(0x0100, 0, 0x2000, 0, NULL);
    video(0x0300, 0, 0x5A5A, 0x5A5A, "int10 03h after 01h CX=2000h");
    video(0x0013, 0, 0, 0, "int10 00h mode 13h");
    tty("graphics");
    video(0x0F00, 0x5A5A, 0x5A5A, 0x5A5A, "int10 0Fh in mode 13h");
    video(0x0083, 0, 0, 0, "int10 00h 83h in mode 13h");
    video(0x0003, 0, 0, 0, NULL);
    tty("text again\r\n");
    /* Where SeaBIOS's serial console sends nothing: AH=0Ah and AH=13h. */
    tty("VIDEO PART 2\r\n");
    video(0x0A41, 0x001F, 1, 0, NULL);
    video(0x0200, 0, 0, 0x0401, NULL);
    video(0x0A42, 0x001F, 3, 0, NULL);
    video_str(0x1301, 0x000A, 5, 2, "str13 moves\r\n", 13);
    video_str(0x1303, 0, 6, 0, "a\x0C" "b\x0D", 2);
    video_str(0x1300, 0x0007, 7, 0, "cursor stays", 12);
    video(0x0300, 0, 0x5A5A, 0x5A5A, "int10 03h after AH=13h");
    video(0x0200, 0, 0, 0x0900, NULL);
    tty("VIDEO END\r\n");
    __asm__ volatile("sti");
    wait_ticks(2);
    for (u32 i = 0; i < video_answer_count; i++)
        answer(video_answers[i].what, &video_answers[i].r);
}

void stage2_main(u32 boot_drive)
{
    drive = (u8)boot_drive;
    puts("stage2: BIOS services test from drive ");
    puthex(drive, 2);
    puts("\n");
    check(1, "int10 0Eh teletype prints this line");
    keyboard_answers();
    video_answers_run();
    puts("ANSWERS END\n");
    test_video();
    test_equipment();
    test_post();
    if (drive >= 0xE0)
        test_cd();
    else
        test_disk();
    test_memory();
    test_a20();
    test_block_move();
    test_post_ticks();
    test_time();
    test_keyboard_buffer();
    if (drive < 0xE0)
        test_typed_keys();
    puts("DONE bios: ");
    putdec(passed);
    puts(" passed, ");
    putdec(failed);
    puts(" failed\n");
    wait_ticks(2);   /* the firmware's console may hold the last character back a tick */
    __asm__ volatile("outb %0, $0xF4" :: "a"((u8)(failed ? 1 : 0)));
    for (;;)
        __asm__ volatile("cli; hlt");
}
