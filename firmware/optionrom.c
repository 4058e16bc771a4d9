/*
 * Option ROMs the board passes in fw_cfg's genroms/ directory (QEMU's convention, which
 * SeaBIOS follows too); -kernel's Linux loader (linuxboot.S) is one.
 *
 * BIOS Boot Specification 1.01: an option ROM starts 55h AAh, byte 2 is its length in
 * 512-byte blocks and all those bytes sum to 0. ROMs go on 2 KiB boundaries from C0000h
 * (the area opened as RAM through PAM1-PAM4, 82441FX data sheet 3.2.16) and entry.S
 * far-calls each one's initialisation entry at offset 3 in real mode after POST. A ROM's
 * PnP expansion header (its offset at 1Ah, signature "$PnP") may hold a bootstrap entry
 * vector (BEV, at 1Ah in the header), which INT 19h far-calls to boot from the ROM; a
 * BEV that returns did not boot. fw_cfg's `bootorder` file (one device path per line,
 * "/rom@genroms/NAME" for a ROM) puts a ROM's BEV ahead of the disks.
 */
#include "bios.h"

#define ROM_AREA 0xC0000
#define ROM_AREA_END 0xE0000
#define ROM_ALIGN 2048
#define MAX_ROMS 8
#define PAM1 0x5A
#define PAM_RW 0x33     /* both 16 KiB halves: reads and writes go to DRAM */
#define BOOTORDER_MAX 1024

u16 option_rom_segs[MAX_ROMS + 1];
u32 option_rom_count;
static char rom_names[MAX_ROMS][56];
static char bootorder[BOOTORDER_MAX + 1];

struct genroms {
    struct fw_cfg_file files[MAX_ROMS];
    u32 count;
};

static int collect_genroms(const struct fw_cfg_file *f, void *ctx)
{
    struct genroms *g = ctx;
    if (!memcmp(f->name, "genroms/", 8) && g->count < MAX_ROMS)
        g->files[g->count++] = *f;
    return 0;
}

static u32 rom_length(const u8 *rom, u32 size)
{
    u32 len = rom[2] * 512u;
    if (size < 512 || rom[0] != 0x55 || rom[1] != 0xAA || !len || len > size)
        return 0;
    u8 sum = 0;
    for (u32 i = 0; i < len; i++)
        sum = (u8)(sum + rom[i]);
    return sum ? 0 : len;
}

static void read_bootorder(void)
{
    u16 key;
    u32 size;
    if (!fw_cfg_find_file("bootorder", &key, &size))
        return;
    if (size > BOOTORDER_MAX)
        size = BOOTORDER_MAX;
    fw_cfg_select(key);
    fw_cfg_read(bootorder, size);
}

void option_roms_load(void)
{
    struct genroms g;
    g.count = 0;
    if (!fw_cfg_present())
        return;
    fw_cfg_each_file(collect_genroms, &g);
    if (!g.count)
        return;
    read_bootorder();
    for (u8 pam = PAM1; pam < PAM1 + 4; pam++)
        pci_write8(0, 0, pam, PAM_RW);
    u32 addr = ROM_AREA;
    for (u32 i = 0; i < g.count; i++) {
        struct fw_cfg_file *f = &g.files[i];
        if (f->size > ROM_AREA_END - addr) {
            printf("Option ROM %s: %u bytes do not fit, skipped\n", f->name, f->size);
            continue;
        }
        fw_cfg_select(f->key);
        fw_cfg_read((void *)addr, f->size);
        u32 len = rom_length((const u8 *)addr, f->size);
        if (!len) {
            printf("Option ROM %s: bad header or checksum, skipped\n", f->name);
            continue;
        }
        memcpy(rom_names[option_rom_count], f->name, sizeof(rom_names[0]));
        option_rom_segs[option_rom_count++] = (u16)(addr >> 4);
        addr += (len + ROM_ALIGN - 1) & ~(ROM_ALIGN - 1);
    }
}

/* Whether bootorder holds the line "/rom@NAME". */
static int in_bootorder(const char *name)
{
    u32 len = strlen(name);
    for (const char *line = bootorder; *line;) {
        if (!memcmp(line, "/rom@", 5) && !memcmp(line + 5, name, len) &&
            (line[5 + len] == '\n' || line[5 + len] == 0))
            return 1;
        while (*line && *line++ != '\n')
            ;
    }
    return 0;
}

int option_rom_in_bootorder(u32 i)
{
    return in_bootorder(rom_names[i]);
}

u32 option_rom_bev(u32 i)
{
    const u8 *rom = far(option_rom_segs[i], 0);
    u16 pnp = *(const u16 *)(rom + 0x1A);
    if (!pnp || pnp > rom[2] * 512u - 0x20 || memcmp(rom + pnp, "$PnP", 4))
        return 0;
    u16 bev = *(const u16 *)(rom + pnp + 0x1A);
    if (!bev)
        return 0;
    printf("Booting from ROM %s...\n", rom_names[i]);
    return segoff(option_rom_segs[i], bev);
}
