/*
 * Memory map and the system services.
 *
 * memory_init() sizes RAM from fw_cfg's etc/e820 (QEMU's struct e820_entry: u64 address,
 * u64 length, u32 type), or without fw_cfg from the CMOS bytes QEMU's pc board fills
 * (30h/31h: KiB above 1 MiB up to 64 MiB; 34h/35h: 64 KiB units above 16 MiB; 5Bh-5Dh:
 * 64 KiB units above 4 GiB), and builds the E820 map with the areas the BIOS owns
 * reserved: the EBDA at 9FC00h, E0000h-FFFFFh, and the flash window below 4 GiB.
 *
 * INT 15h (ACPI 6.x "System Address Map Interfaces" for E820; Phoenix/IBM BIOS interface
 * for E801h, 88h, 87h, C0h; the A20 gate functions 2400h-2403h via port 92h bit 1) and
 * INT 1Ah (ticks since midnight from the BDA; time and date from the MC146818 in BCD).
 */
#include "bios.h"

#define SMAP 0x534D4150u
#define MIB (1024u * 1024u)
#define BIOS_FLASH_BASE 0xFFFC0000ull

struct e820_entry e820[E820_MAX];
u32 e820_count;
u32 ram_below_4g;
u64 ram_above_4g;

static void e820_add(u64 addr, u64 len, u32 type)
{
    if (!len || e820_count == E820_MAX)
        return;
    u32 i = e820_count++;
    while (i && e820[i - 1].addr > addr) {   /* keep the map sorted by address */
        e820[i] = e820[i - 1];
        i--;
    }
    e820[i].addr = addr;
    e820[i].len = len;
    e820[i].type = type;
}

/* Add a range from the host's map, moving what lies below 1 MiB into the fixed layout. */
static void e820_add_host(u64 addr, u64 len, u32 type)
{
    u64 end = addr + len;
    if (type == E820_RAM) {
        if (end <= (1ull << 32) && end > ram_below_4g)
            ram_below_4g = (u32)end;
        if (addr >= (1ull << 32))
            ram_above_4g += len;
    }
    if (end <= MIB)
        return;
    if (addr < MIB)
        addr = MIB;
    e820_add(addr, end - addr, type);
}

static int e820_from_fw_cfg(void)
{
    u16 key;
    u32 size;
    if (!fw_cfg_present() || !fw_cfg_find_file("etc/e820", &key, &size))
        return 0;
    fw_cfg_select(key);
    for (u32 n = size / 20; n; n--) {
        struct e820_entry e;
        fw_cfg_read(&e, sizeof(e));
        e820_add_host(e.addr, e.len, e.type);
    }
    return 1;
}

static void e820_from_cmos(void)
{
    u32 ext_kib = cmos_read(0x30) | (u32)cmos_read(0x31) << 8;
    u32 above16 = cmos_read(0x34) | (u32)cmos_read(0x35) << 8;
    u64 above4g = (cmos_read(0x5B) | (u32)cmos_read(0x5C) << 8 | (u32)cmos_read(0x5D) << 16);
    u32 below = above16 ? 16 * MIB + above16 * 65536u : MIB + ext_kib * 1024u;
    e820_add_host(0, below, E820_RAM);
    if (above4g)
        e820_add_host(1ull << 32, above4g << 16, E820_RAM);
}

void memory_init(void)
{
    e820_count = 0;
    ram_below_4g = 0;
    ram_above_4g = 0;
    e820_add(0, BASE_MEM_KIB * 1024, E820_RAM);
    e820_add(BASE_MEM_KIB * 1024, 0xA0000 - BASE_MEM_KIB * 1024, E820_RESERVED);
    e820_add(0xE0000, 0x20000, E820_RESERVED);
    e820_add(BIOS_FLASH_BASE, (1ull << 32) - BIOS_FLASH_BASE, E820_RESERVED);
    if (!e820_from_fw_cfg())
        e820_from_cmos();
}

void e820_reserve_top(u32 len, u32 type)
{
    for (u32 i = 0; i < e820_count; i++) {
        struct e820_entry *e = &e820[i];
        if (e->type == E820_RAM && e->addr + e->len == ram_below_4g && e->len > len) {
            e->len -= len;
            ram_below_4g -= len;
            e820_add(ram_below_4g, len, type);
            return;
        }
    }
}

/* -- INT 15h ---------------------------------------------------------------------- */
static void e820_call(struct bregs *r)
{
    if (r->edx != SMAP || r->ecx < 20 || r->ebx >= e820_count) {
        ret_status(r, 0x86);
        return;
    }
    memcpy(far(r->es, DI(r)), &e820[r->ebx], 20);
    r->eax = SMAP;
    r->ecx = 20;
    r->ebx = r->ebx + 1 < e820_count ? r->ebx + 1 : 0;
    set_cf(r, 0);
}

static void e801_call(struct bregs *r)
{
    u32 above1 = ram_below_4g > MIB ? ram_below_4g - MIB : 0;
    u32 low_kib = above1 / 1024 > 15 * 1024 ? 15 * 1024 : above1 / 1024;
    u32 high = ram_below_4g > 16 * MIB ? (ram_below_4g - 16 * MIB) / 65536 : 0;
    set_ax(r, (u16)low_kib);
    set_cx(r, (u16)low_kib);
    set_bx(r, (u16)high);
    set_dx(r, (u16)high);
    set_cf(r, 0);
}

/* The A20 line is the OR of port 92h bit 1 and the 8042 output port bit 1: turning it
 * off clears both, turning it on sets the fast one. */
static void kbc_wait_input(void)
{
    for (u32 i = 0; i < 100000 && (inb(0x64) & 0x02); i++)
        ;
}

static void kbc_write_outport(u8 value)
{
    kbc_wait_input();
    outb(0x64, 0xD1);
    kbc_wait_input();
    outb(0x60, value);
    kbc_wait_input();
}

/* A20 is on when a byte of ours at X does not show at X + 1 MiB. */
static u8 a20_probe_byte;

static int a20_enabled(void)
{
    volatile u8 *low = &a20_probe_byte, *high = (volatile u8 *)((u32)&a20_probe_byte + MIB);
    u8 saved = *low;
    *low = (u8)~*high;
    int on = *high != *low;
    *low = saved;
    return on;
}

static void a20_call(struct bregs *r)
{
    u8 port = inb(0x92);
    switch (AL(r)) {
    case 0x00:
        outb(0x92, port & ~0x03);
        kbc_write_outport(0xDD);   /* system reset high, A20 low */
        break;
    case 0x01:
        outb(0x92, (port | 0x02) & ~0x01);
        break;
    case 0x02:
        set_al(r, (u8)a20_enabled());
        break;
    case 0x03:
        set_bx(r, 0x0003);   /* keyboard controller and port 92h */
        break;
    default:
        ret_status(r, 0x86);
        return;
    }
    ret_status(r, 0);
}

/* AH=87h: copy CX words between the descriptors at ES:SI+10h (source) and +18h (dest). */
static void block_move(struct bregs *r)
{
    u8 *gdt = far(r->es, SI(r));
    u32 src = gdt[0x12] | gdt[0x13] << 8 | gdt[0x14] << 16 | (u32)gdt[0x17] << 24;
    u32 dst = gdt[0x1A] | gdt[0x1B] << 8 | gdt[0x1C] << 16 | (u32)gdt[0x1F] << 24;
    u8 port = inb(0x92);
    outb(0x92, port | 0x02);  /* the copy may cross 1 MiB */
    memmove((void *)dst, (void *)src, CX(r) * 2u);
    outb(0x92, port & ~0x01);
    ret_status(r, 0);
}

void handle_15(struct bregs *r)
{
    switch (AH(r)) {
    case 0x24:
        a20_call(r);
        break;
    case 0x87:
        block_move(r);
        break;
    case 0x88: {
        u32 kib = ram_below_4g > MIB ? (ram_below_4g - MIB) / 1024 : 0;
        set_ax(r, kib > 0xFFFF ? 0xFFFF : (u16)kib);
        set_cf(r, 0);
        break;
    }
    case 0x90:
    case 0x91:
        ret_status(r, 0);
        break;
    case 0xC0:
        r->es = BIOS_SEG;
        set_bx(r, RM_OFFSET(config_table));
        ret_status(r, 0);
        break;
    case 0xE8:
        if (AL(r) == 0x20)
            e820_call(r);
        else if (AL(r) == 0x01)
            e801_call(r);
        else
            ret_status(r, 0x86);
        break;
    default:
        ret_status(r, 0x86);   /* function not supported */
    }
}

/* -- INT 1Ah ---------------------------------------------------------------------- */
static u8 to_bcd(u8 v) { return (u8)((v / 10) << 4 | (v % 10)); }
static u8 from_bcd(u8 v) { return (u8)((v >> 4) * 10 + (v & 15)); }

/* An RTC register as BCD, whatever mode register B (bit 2 = binary) selects. */
static u8 rtc_bcd(u8 reg)
{
    u8 v = cmos_read(reg);
    return cmos_read(0x0B) & 0x04 ? to_bcd(v) : v;
}

static void rtc_set_bcd(u8 reg, u8 v)
{
    cmos_write(reg, cmos_read(0x0B) & 0x04 ? from_bcd(v) : v);
}

/* Wait while an update cycle is in progress (register A bit 7). */
static int rtc_ready(void)
{
    for (u32 i = 0; i < 100000; i++) {
        if (!(cmos_read(0x0A) & 0x80))
            return 1;
    }
    return 0;
}

/* POST: register A = 26h (32.768 kHz time base, 1024 Hz periodic rate), B = 02h (24-hour,
 * BCD, no interrupts), C and D read to clear pending flags (MC146818A data sheet,
 * registers A-D); the BDA tick count starts at the time of day, as INT 1Ah counts from
 * midnight at 1193182 / 65536 = 18.2065 ticks a second. */
void rtc_init(void)
{
    cmos_write(0x0A, 0x26);
    cmos_write(0x0B, 0x02);
    cmos_read(0x0C);
    cmos_read(0x0D);
    if (!rtc_ready())
        return;
    u32 secs = from_bcd(rtc_bcd(0x04)) * 3600u + from_bcd(rtc_bcd(0x02)) * 60u
               + from_bcd(rtc_bcd(0x00));
    BDA32(BDA_TICKS) = secs * 18 + (secs * 13535 >> 16);
}

void handle_1a(struct bregs *r)
{
    switch (AH(r)) {
    case 0x00:
        set_cx(r, (u16)(BDA32(BDA_TICKS) >> 16));
        set_dx(r, (u16)BDA32(BDA_TICKS));
        set_al(r, BDA8(BDA_MIDNIGHT));
        BDA8(BDA_MIDNIGHT) = 0;
        set_cf(r, 0);
        break;
    case 0x01:
        BDA32(BDA_TICKS) = (u32)CX(r) << 16 | DX(r);
        BDA8(BDA_MIDNIGHT) = 0;
        set_cf(r, 0);
        break;
    case 0x02:
        if (!rtc_ready()) {
            set_cf(r, 1);
            break;
        }
        set_cx(r, (u16)(rtc_bcd(0x04) << 8 | rtc_bcd(0x02)));
        set_dx(r, (u16)(rtc_bcd(0x00) << 8 | (cmos_read(0x0B) & 0x01)));
        ret_status(r, 0);
        break;
    case 0x04:
        if (!rtc_ready()) {
            set_cf(r, 1);
            break;
        }
        set_cx(r, (u16)(rtc_bcd(0x32) << 8 | rtc_bcd(0x09)));
        set_dx(r, (u16)(rtc_bcd(0x08) << 8 | rtc_bcd(0x07)));
        ret_status(r, 0);
        break;
    case 0x03:
    case 0x05: {
        u8 b = cmos_read(0x0B);
        cmos_write(0x0B, b | 0x80);   /* SET: freeze updates while writing */
        if (AH(r) == 0x03) {
            rtc_set_bcd(0x04, CH(r));
            rtc_set_bcd(0x02, CL(r));
            rtc_set_bcd(0x00, DH(r));
        } else {
            rtc_set_bcd(0x32, CH(r));
            rtc_set_bcd(0x09, CL(r));
            rtc_set_bcd(0x08, DH(r));
            rtc_set_bcd(0x07, DL(r));
        }
        cmos_write(0x0B, b & 0x7F);
        ret_status(r, 0);
        break;
    }
    default:
        set_cf(r, 1);
    }
}
