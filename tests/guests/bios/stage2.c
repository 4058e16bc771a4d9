/*
 * Second stage of the BIOS services test: real mode, loaded at 0:8000 by stage1.S.
 * It calls each BIOS service the way a boot loader or DOS program does and prints one
 * verdict per check through INT 10h AH=0Eh (so every line on COM1 is itself proof that
 * teletype works): "PASS <service> ..." or "FAIL <service> ...", some "INFO" lines with
 * values the host test compares with the command line (-m, -rtc), and last
 * "DONE bios: <passed> passed, <failed> failed"; then isa-debug-exit (status 1 when all
 * passed, 3 otherwise).
 *
 * From a disk (DL = 80h) it also reads and writes the disk with CHS and EDD calls (the
 * host test checks the written sectors in the image) and waits for two keys: one typed
 * on the serial console, one sent to the PS/2 keyboard. From a CD (DL >= E0h) it reads
 * the CD in 2048-byte sectors and checks the El Torito status call instead.
 *
 * The disk (mkdisk.py): stage 1 with one partition (type 0Ch, LBA 2048 to the end, its
 * first sector starting "PYEMU-PART"), this stage at LBA 1-32, and from LBA 33 every
 * sector starting "PYEMU LBA " and its number in 8 hex digits.
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

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

void stage2_main(u32 boot_drive)
{
    drive = (u8)boot_drive;
    puts("stage2: BIOS services test from drive ");
    puthex(drive, 2);
    puts("\n");
    check(1, "int10 0Eh teletype prints this line");
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
    __asm__ volatile("outb %0, $0xF4" :: "a"((u8)(failed ? 1 : 0)));
    for (;;)
        __asm__ volatile("cli; hlt");
}
