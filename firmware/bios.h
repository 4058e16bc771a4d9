/*
 * pyemu BIOS: shared definitions of the 32-bit C part.
 *
 * The BIOS is one 64 KiB image at F000:0000. Real-mode code (entry.S) runs the reset
 * vector, the interrupt entry points and the simple services; everything with logic in
 * it (POST, INT 10h, 13h, 15h, 16h AH=0Ah, 18h, 19h, 1Ah) is C compiled for 32-bit flat
 * protected mode and reached through the call32 thunk in entry.S, which switches to
 * protected mode with interrupts off, calls handler(struct bregs *) on a private stack
 * and returns to real mode with the caller's registers (and GDTR) as the handler left
 * them in the frame.
 *
 * Memory the BIOS owns (all reported reserved in E820):
 *   0x00400-0x004FF  BIOS data area (IBM PC/AT layout)
 *   0x9FC00-0x9FFFF  extended BIOS data area (1 KiB; size in KiB at offset 0)
 *   0xE0000-0xEFFFF  shadow RAM opened through PAM5/PAM6: C globals (.bss), buffers and
 *                    the protected-mode stack; never write-protected
 *   0xF0000-0xFFFFF  this image, shadowed into RAM during POST, then write-protected
 */
#ifndef BIOS_H
#define BIOS_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef signed int s32;

#define NULL ((void *)0)

/* The registers of the real-mode caller, as entry.S pushed them (pushw %ds, pushw %es,
 * pushal) above the interrupt's IP/CS/FLAGS. Handlers read and write them in place. */
struct bregs {
    u32 edi, esi, ebp, esp_unused, ebx, edx, ecx, eax;
    u16 es, ds;
    u16 ip, cs, flags;
} __attribute__((packed));

#define F_CF 0x0001
#define F_ZF 0x0040
#define F_IF 0x0200

#define AL(r) ((u8)(r)->eax)
#define AH(r) ((u8)((r)->eax >> 8))
#define BL(r) ((u8)(r)->ebx)
#define BH(r) ((u8)((r)->ebx >> 8))
#define CL(r) ((u8)(r)->ecx)
#define CH(r) ((u8)((r)->ecx >> 8))
#define DL(r) ((u8)(r)->edx)
#define DH(r) ((u8)((r)->edx >> 8))
#define AX(r) ((u16)(r)->eax)
#define BX(r) ((u16)(r)->ebx)
#define CX(r) ((u16)(r)->ecx)
#define DX(r) ((u16)(r)->edx)
#define SI(r) ((u16)(r)->esi)
#define DI(r) ((u16)(r)->edi)

static inline void set_ax(struct bregs *r, u16 v) { r->eax = (r->eax & 0xFFFF0000u) | v; }
static inline void set_bx(struct bregs *r, u16 v) { r->ebx = (r->ebx & 0xFFFF0000u) | v; }
static inline void set_cx(struct bregs *r, u16 v) { r->ecx = (r->ecx & 0xFFFF0000u) | v; }
static inline void set_dx(struct bregs *r, u16 v) { r->edx = (r->edx & 0xFFFF0000u) | v; }
static inline void set_ah(struct bregs *r, u8 v) { r->eax = (r->eax & 0xFFFF00FFu) | (u32)v << 8; }
static inline void set_al(struct bregs *r, u8 v) { r->eax = (r->eax & 0xFFFFFF00u) | v; }
static inline void set_dl(struct bregs *r, u8 v) { r->edx = (r->edx & 0xFFFFFF00u) | v; }
static inline void set_cf(struct bregs *r, int on)
{
    r->flags = on ? (r->flags | F_CF) : (r->flags & ~F_CF);
}
/* The usual BIOS return: AH = status, CF set when status is not 0. */
static inline void ret_status(struct bregs *r, u8 status)
{
    set_ah(r, status);
    set_cf(r, status != 0);
}

/* A real-mode far pointer as a flat address. */
static inline void *far(u16 seg, u16 off) { return (void *)((u32)seg * 16 + off); }
static inline u32 segoff(u16 seg, u16 off) { return (u32)seg << 16 | off; }

/* -- port I/O ------------------------------------------------------------------------- */
static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void insw(u16 port, void *buf, u32 words)
{
    __asm__ volatile("rep insw" : "+D"(buf), "+c"(words) : "d"(port) : "memory");
}
static inline void outsw(u16 port, const void *buf, u32 words)
{
    __asm__ volatile("rep outsw" : "+S"(buf), "+c"(words) : "d"(port) : "memory");
}

/* -- the BIOS data area (segment 40h) ------------------------------------------------- */
#define BDA ((volatile u8 *)0x400)
#define BDA8(off) (*(volatile u8 *)(0x400 + (off)))
#define BDA16(off) (*(volatile u16 *)(0x400 + (off)))
#define BDA32(off) (*(volatile u32 *)(0x400 + (off)))
enum {
    BDA_COM = 0x00, BDA_LPT = 0x08, BDA_EBDA_SEG = 0x0E, BDA_EQUIPMENT = 0x10,
    BDA_MEM_KIB = 0x13, BDA_KBD_FLAGS = 0x17, BDA_KBD_HEAD = 0x1A, BDA_KBD_TAIL = 0x1C,
    BDA_KBD_BUF = 0x1E, BDA_VIDEO_MODE = 0x49, BDA_VIDEO_COLS = 0x4A, BDA_VIDEO_PAGE_SIZE = 0x4C,
    BDA_CURSOR = 0x50, BDA_CURSOR_SHAPE = 0x60, BDA_CRTC = 0x63, BDA_TICKS = 0x6C,
    BDA_MIDNIGHT = 0x70, BDA_DISK_STATUS = 0x74, BDA_NUM_DISKS = 0x75, BDA_KBD_START = 0x80,
    BDA_KBD_END = 0x82, BDA_VIDEO_ROWS = 0x84, BDA_CHAR_HEIGHT = 0x85, BDA_KBD_STATUS3 = 0x96,
};
#define EBDA_SEG 0x9FC0
#define EBDA_KIB 1
#define BASE_MEM_KIB 639

/* -- console.c ------------------------------------------------------------------------ */
void serial_init(void);
void putc(char c);
void puts(const char *s);
void printf(const char *fmt, ...);
void vga_probe(void);

/* -- video.c: INT 10h on the serial console ------------------------------------------ */
struct sercon {
    u8 chr;         /* +0: a character written at the cursor, not sent yet; 0: none */
    u8 attr;        /* +1: its attribute */
    u8 col_last;    /* +2: the terminal's cursor, column and row: as one word laid out */
    u8 row_last;    /* +3:  like the BDA cursor (entry.S compares the two at INT 08h) */
    u8 attr_last;   /* the attribute the terminal was last given */
    u8 on;          /* 0 while a graphics mode is set */
    u16 port;       /* COM1's base; 0: no serial console */
};
extern struct sercon sercon;
void video_init(void);
void video_putc(char c);
void video_flush(void);

/* -- keyboard.c ----------------------------------------------------------------------- */
extern u8 i8042_ctr;   /* the 8042 command byte POST wrote (never read back) */

/* -- util ----------------------------------------------------------------------------- */
void *memcpy(void *d, const void *s, u32 n);
void *memmove(void *d, const void *s, u32 n);
void *memset(void *d, int c, u32 n);
int memcmp(const void *a, const void *b, u32 n);
u32 strlen(const char *s);

/* -- hardware helpers (post.c) -------------------------------------------------------- */
u32 pci_read32(u8 bus, u8 devfn, u8 reg);
void pci_write8(u8 bus, u8 devfn, u8 reg, u8 v);
void pci_write16(u8 bus, u8 devfn, u8 reg, u16 v);
u8 cmos_read(u8 reg);
void cmos_write(u8 reg, u8 v);

/* -- fw_cfg.c ------------------------------------------------------------------------- */
int fw_cfg_present(void);
void fw_cfg_select(u16 key);
void fw_cfg_read(void *buf, u32 len);
int fw_cfg_find_file(const char *name, u16 *key, u32 *size);
struct fw_cfg_file { u32 size; u16 key; char name[56]; };
/* Calls fn for each directory entry until it returns non-zero, and returns that value;
 * fn must not select another item. */
int fw_cfg_each_file(int (*fn)(const struct fw_cfg_file *f, void *ctx), void *ctx);

/* -- optionrom.c ---------------------------------------------------------------------- */
void option_roms_load(void);
int option_rom_in_bootorder(u32 i);
u32 option_rom_bev(u32 i);     /* its bootstrap entry as seg:off, 0 if it has none */
extern u16 option_rom_segs[];   /* 0-terminated; entry.S calls each one's init entry */
extern u32 option_rom_count;
#define FW_CFG_RAM_SIZE 0x03

/* -- memory map (system.c) ------------------------------------------------------------ */
struct e820_entry { u64 addr, len; u32 type; } __attribute__((packed));
#define E820_RAM 1
#define E820_RESERVED 2
#define E820_ACPI 3
#define E820_MAX 16
extern struct e820_entry e820[E820_MAX];
extern u32 e820_count;
void memory_init(void);
void e820_reserve_top(u32 len, u32 type);  /* the top of low RAM becomes `type`, and
                                              ram_below_4g moves down below it */
void acpi_install(void);                   /* acpi.c */
void rtc_init(void);
extern u32 ram_below_4g;   /* top of the RAM below 4 GiB the OS may use (E801h, 88h) */
extern u64 ram_above_4g;   /* bytes of RAM above 4 GiB */

/* -- ata.c ---------------------------------------------------------------------------- */
struct drive {
    u16 iobase, ctlbase;
    u8 slave, is_cd, lba48, number;   /* number: the INT 13h drive number */
    u64 sectors;                      /* 512-byte (disk) or 2048-byte (CD) sectors */
    u16 cyls, heads, spt;             /* logical CHS geometry presented by INT 13h */
    char model[41];
};
#define MAX_DRIVES 4
extern struct drive drives[MAX_DRIVES];
extern u32 num_drives;
void ata_init(void);
int ata_rw(struct drive *d, u64 lba, u32 count, void *buf, int write);
int atapi_read(struct drive *d, u32 lba, u32 count, void *buf);
int atapi_command(struct drive *d, const u8 *cdb, void *buf, u32 len);
struct drive *drive_by_number(u8 number);
struct drive *first_drive(int cd);

/* -- boot.c --------------------------------------------------------------------------- */
extern u8 cd_boot_drive;        /* INT 13h number of the CD booted in no-emulation mode */
extern u8 cd_boot_catalog[64];  /* validation + initial entry of its boot catalog */
extern u32 cd_boot_catalog_lba;

/* Handlers called through call32 (entry.S). */
void post_main(struct bregs *r);
void handle_10(struct bregs *r);
void video_tick(struct bregs *r);
void handle_13(struct bregs *r);
void handle_15(struct bregs *r);
void handle_16(struct bregs *r);
void handle_18(struct bregs *r);
void handle_19(struct bregs *r);
void handle_1a(struct bregs *r);

/* Real-mode symbols of entry.S: their link-time values are offsets in segment F000h. */
extern char int_default[], irq_default_master[], irq_default_slave[];
extern char int08_entry[], int09_entry[], int10_entry[], int11_entry[], int12_entry[];
extern char int13_entry[], int15_entry[], int16_entry[], int18_entry[], int19_entry[];
extern char int1a_entry[], int1c_entry[], config_table[];
#define RM_OFFSET(sym) ((u16)(u32)(sym))
#define BIOS_SEG 0xF000

#endif
