/*
 * Power-on self test, after entry.S has shadowed the image into RAM: the interrupt
 * vector table, BIOS data area and EBDA (IBM PC/AT Technical Reference), the 8259A pair
 * (ICW1-4: vectors 08h-0Fh and 70h-77h) and a local APIC's virtual wire mode when the
 * CPU has one, 8254 channel 0 in mode 2 with divisor 65536
 * (18.2 Hz), the 8042 command byte (translation to set 1, keyboard interrupt), COM1,
 * the MC146818 (rtc_init), memory sizing, PCI (configuration mechanism #1) for the PIIX3
 * IDE function, the board's ACPI tables (acpi.c), the drives, option ROMs from fw_cfg
 * (optionrom.c), and finally the F segment made read-only through PAM0 (82441FX data
 * sheet 3.2.16).
 */
#include "bios.h"

#define PIIX3_IDE_ID 0x70108086u
#define PIIX3_ISA_ID 0x70008086u
#define PIRQ_ROUTE 0x60     /* PIRQA-D route control, 82371SB 2.2.11 */
#define IDETIM_PRIMARY 0x40
#define IDETIM_SECONDARY 0x42
#define IDE_DECODE 0x8000
#define PAM0 0x59

extern char __bss_start[], __bss_end[];

u32 pci_read32(u8 bus, u8 devfn, u8 reg)
{
    outl(0xCF8, 0x80000000u | (u32)bus << 16 | (u32)devfn << 8 | (reg & 0xFC));
    return inl(0xCFC);
}

void pci_write8(u8 bus, u8 devfn, u8 reg, u8 v)
{
    outl(0xCF8, 0x80000000u | (u32)bus << 16 | (u32)devfn << 8 | (reg & 0xFC));
    outb(0xCFC + (reg & 3), v);
}

void pci_write16(u8 bus, u8 devfn, u8 reg, u16 v)
{
    outl(0xCF8, 0x80000000u | (u32)bus << 16 | (u32)devfn << 8 | (reg & 0xFC));
    outw(0xCFC + (reg & 2), v);
}

u8 cmos_read(u8 reg)
{
    outb(0x70, reg | 0x80);   /* bit 7: NMI stays masked */
    return inb(0x71);
}

void cmos_write(u8 reg, u8 v)
{
    outb(0x70, reg | 0x80);
    outb(0x71, v);
}

static void set_vector(u8 n, const char *handler)
{
    ((volatile u32 *)0)[n] = segoff(BIOS_SEG, RM_OFFSET(handler));
}

static void ivt_init(void)
{
    for (u32 n = 0; n < 256; n++)
        set_vector(n, int_default);
    for (u32 n = 0; n < 8; n++) {
        set_vector(0x08 + n, irq_default_master);
        set_vector(0x70 + n, irq_default_slave);
    }
    set_vector(0x08, int08_entry);
    set_vector(0x09, int09_entry);
    set_vector(0x10, int10_entry);
    set_vector(0x11, int11_entry);
    set_vector(0x12, int12_entry);
    set_vector(0x13, int13_entry);
    set_vector(0x15, int15_entry);
    set_vector(0x16, int16_entry);
    set_vector(0x18, int18_entry);
    set_vector(0x19, int19_entry);
    set_vector(0x1A, int1a_entry);
    set_vector(0x1C, int1c_entry);
}

static void pic_init(void)
{
    outb(0x20, 0x11); outb(0xA0, 0x11);   /* ICW1: edge, cascade, ICW4 follows */
    outb(0x21, 0x08); outb(0xA1, 0x70);   /* ICW2: vector bases */
    outb(0x21, 0x04); outb(0xA1, 0x02);   /* ICW3: slave on IRQ2 */
    outb(0x21, 0x01); outb(0xA1, 0x01);   /* ICW4: 8086 mode */
    outb(0x21, 0xF8);                     /* IRQ0 timer, IRQ1 keyboard, IRQ2 cascade */
    outb(0xA1, 0xFF);
}

/* A CPU with a local APIC (CPUID 1 EDX bit 9) ignores the 8259A until LINT0 is made an
 * ExtINT input: virtual wire mode (MultiProcessor Specification 1.4, 3.6.2.2), as
 * SeaBIOS sets it up (src/fw/smp.c): APIC software-enabled (SVR bit 8), LINT0 ExtINT and
 * LINT1 NMI, level triggered. pyemu's CPU has no APIC; QEMU's has one. */
#define LAPIC 0xFEE00000u
static void lapic_virtual_wire(void)
{
    u32 eax = 1, ebx, ecx, edx;
    __asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx));
    if (!(edx & (1u << 9)))
        return;
    volatile u32 *svr = (volatile u32 *)(LAPIC + 0xF0);
    *svr |= 0x100;
    *(volatile u32 *)(LAPIC + 0x350) = 0x8700;
    *(volatile u32 *)(LAPIC + 0x360) = 0x8400;
}

static void pit_init(void)
{
    outb(0x43, 0x34);   /* channel 0, lobyte/hibyte, mode 2 */
    outb(0x40, 0x00);   /* divisor 0 = 65536: 1193182 / 65536 = 18.2 Hz */
    outb(0x40, 0x00);
}

static void i8042_init(void)
{
    for (u32 i = 0; i < 100000 && (inb(0x64) & 0x02); i++)
        ;
    outb(0x64, 0x60);   /* write command byte */
    for (u32 i = 0; i < 100000 && (inb(0x64) & 0x02); i++)
        ;
    i8042_ctr = 0x61;   /* translate to set 1, mouse off, keyboard interrupt on */
    outb(0x60, i8042_ctr);
    while (inb(0x64) & 0x01)
        inb(0x60);      /* drop anything left over */
}

/* COM1-COM4 that keep what is written to their scratch register. */
static u32 serial_ports(void)
{
    static const u16 bases[4] = {0x3F8, 0x2F8, 0x3E8, 0x2E8};
    u32 n = 0;
    for (u32 i = 0; i < 4; i++) {
        outb(bases[i] + 7, 0x5A);
        if (inb(bases[i] + 7) == 0x5A)
            BDA16(BDA_COM + 2 * n++) = bases[i];
    }
    return n;
}

static void bda_init(void)
{
    memset((void *)0x400, 0, 0x100);
    memset((void *)(EBDA_SEG * 16), 0, EBDA_KIB * 1024);
    *(volatile u8 *)(EBDA_SEG * 16) = EBDA_KIB;
    BDA16(BDA_EBDA_SEG) = EBDA_SEG;
    BDA16(BDA_MEM_KIB) = BASE_MEM_KIB;
    BDA16(BDA_KBD_HEAD) = BDA16(BDA_KBD_TAIL) = BDA_KBD_BUF;
    BDA16(BDA_KBD_START) = BDA_KBD_BUF;
    BDA16(BDA_KBD_END) = BDA_KBD_BUF + 32;
    BDA8(BDA_KBD_STATUS3) = 0x10;           /* 101/102-key keyboard (SeaBIOS kbd_init) */
    BDA8(BDA_VIDEO_MODE) = 3;               /* 80x25 colour text */
    BDA16(BDA_VIDEO_COLS) = 80;
    BDA16(BDA_VIDEO_PAGE_SIZE) = 80 * 25 * 2;
    BDA16(BDA_CURSOR_SHAPE) = 0x0007;       /* as SeaBIOS's serial console sets it */
    BDA16(BDA_CRTC) = 0x3D4;
    BDA8(BDA_VIDEO_ROWS) = 24;
    BDA8(BDA_CHAR_HEIGHT) = 16;
}

/* PCI INTx: PIRQA-D to ISA IRQs 10, 10, 11, 11, as SeaBIOS routes them; the board's
 * DSDT (_PRT) tells the OS the same. */
static const u8 pirq_irqs[4] = { 10, 10, 11, 11 };

static void pirq_init(u8 devfn)
{
    for (u8 i = 0; i < 4; i++)
        pci_write8(0, devfn, PIRQ_ROUTE + i, pirq_irqs[i]);
}

/* Find the PIIX3 IDE function on bus 0 and let it decode I/O and master the bus, and
 * turn on both channels' legacy port decode (IDETIM bit 15, as SeaBIOS does): Linux's
 * ata_piix leaves a channel whose bit is clear alone, as a disabled port. Route the PCI
 * interrupts through the ISA bridge function. */
static void pci_init(void)
{
    for (u32 devfn = 0; devfn < 256; devfn++) {
        u32 id = pci_read32(0, (u8)devfn, 0x00);
        if ((devfn & 7) == 0 && (id & 0xFFFF) == 0xFFFF) {
            devfn += 7;     /* no device: skip its functions */
            continue;
        }
        if (id == PIIX3_ISA_ID)
            pirq_init((u8)devfn);
        if (id != PIIX3_IDE_ID)
            continue;
        u16 cmd = (u16)pci_read32(0, (u8)devfn, 0x04);
        pci_write16(0, (u8)devfn, 0x04, cmd | 0x05);
        u32 timing = pci_read32(0, (u8)devfn, IDETIM_PRIMARY);   /* 40h-43h */
        pci_write16(0, (u8)devfn, IDETIM_PRIMARY, (u16)timing | IDE_DECODE);
        pci_write16(0, (u8)devfn, IDETIM_SECONDARY, (u16)(timing >> 16) | IDE_DECODE);
        printf("PCI: IDE 8086:7010 at 00:%02x.%u\n", devfn >> 3, devfn & 7);
    }
}

void post_main(struct bregs *r)
{
    (void)r;
    memset(__bss_start, 0, (u32)(__bss_end - __bss_start));
    bda_init();
    ivt_init();
    pic_init();
    lapic_virtual_wire();
    pit_init();
    rtc_init();
    serial_init();
    u32 com = serial_ports();
    /* Equipment: math coprocessor, 80x25 colour, serial port count. */
    BDA16(BDA_EQUIPMENT) = 0x0002 | 0x0020 | (u16)(com << 9);
    vga_probe();
    video_init();
    puts("\npyemu BIOS 1.0\n");
    memory_init();
    printf("RAM: %u MiB below 4 GiB", ram_below_4g >> 20);
    if (ram_above_4g)
        printf(", %u MiB above", (u32)(ram_above_4g >> 20));
    putc('\n');
    i8042_init();
    pci_init();
    acpi_install();
    ata_init();
    option_roms_load();
    /* F segment read-only from here on: PAM0 bits 5:4 = 01 (reads from DRAM). */
    pci_write8(0, 0, PAM0, 0x10);
}
