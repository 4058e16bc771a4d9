/*
 * INT 19h bootstrap and INT 18h.
 *
 * Boot devices are tried in turn: an entry that returns (a ROM's BEV, BIOS Boot
 * Specification 1.01) makes INT 19h try the next one; after the last, INT 18h.
 * Boot order: the CMOS boot device nibbles QEMU's pc board stores for -boot (3Dh bits
 * 3:0 first, 7:4 second, 38h bits 7:4 third; 1 floppy, 2 hard disk, 3 CD-ROM,
 * 4 network); without any usable entry, hard disk then CD-ROM.
 * - Hard disk (IBM PC/AT): sector 0 of drive 80h to 0000:7C00h, accepted with the
 *   signature 55h AAh at offset 510, entered with DL = 80h.
 * - CD-ROM (El Torito 1.0): the boot record volume descriptor at sector 17 ("\0CD001\1"
 *   and "EL TORITO SPECIFICATION", catalog LBA at byte 47h); the catalog's validation
 *   entry (header 01h, key bytes 55h AAh, words summing to 0) and initial entry (80h
 *   bootable, media 0 = no emulation, load segment with 0 meaning 07C0h, count of
 *   512-byte virtual sectors, image LBA); the image loaded to segment:0000 and entered
 *   there with DL = the CD's drive number (E0h).
 */
#include "bios.h"

#define SCRATCH ((u8 *)0xE8000)   /* a 2048-byte sector buffer in BIOS shadow RAM */

u8 cd_boot_drive;
u8 cd_boot_catalog[64];
u32 cd_boot_catalog_lba;

static const char EL_TORITO_ID[] = "EL TORITO SPECIFICATION";

static u32 boot_disk(struct bregs *r)
{
    struct drive *d = first_drive(0);
    if (!d)
        return 0;
    printf("Booting from hard disk %x...\n", d->number);
    if (ata_rw(d, 0, 1, (void *)0x7C00, 0) < 0) {
        puts("Boot failed: could not read the boot sector\n");
        return 0;
    }
    if (*(u16 *)0x7DFE != 0xAA55) {
        puts("Boot failed: not a bootable disk\n");
        return 0;
    }
    set_dl(r, d->number);
    return segoff(0, 0x7C00);
}

static int cd_boot_catalog_ok(const u8 *cat)
{
    u16 sum = 0;
    for (u32 i = 0; i < 32; i += 2)
        sum = (u16)(sum + (cat[i] | cat[i + 1] << 8));
    return cat[0] == 0x01 && cat[30] == 0x55 && cat[31] == 0xAA && sum == 0;
}

static const char *cd_load(struct drive *d, u16 *seg_out)
{
    if (atapi_read(d, 17, 1, SCRATCH) < 0)
        return "could not read the boot record";
    if (memcmp(SCRATCH, "\0CD001\1", 7) || memcmp(SCRATCH + 7, EL_TORITO_ID, 23))
        return "no El Torito boot record";
    cd_boot_catalog_lba = *(u32 *)(SCRATCH + 0x47);
    if (atapi_read(d, cd_boot_catalog_lba, 1, SCRATCH) < 0)
        return "could not read the boot catalog";
    memcpy(cd_boot_catalog, SCRATCH, sizeof(cd_boot_catalog));
    const u8 *entry = cd_boot_catalog + 32;
    if (!cd_boot_catalog_ok(cd_boot_catalog) || entry[0] != 0x88)
        return "no bootable entry in the boot catalog";
    if (entry[1] != 0)
        return "only no-emulation boot images are supported";
    u16 seg = *(const u16 *)(entry + 2);
    u32 bytes = *(const u16 *)(entry + 6) * 512u;
    u32 lba = *(const u32 *)(entry + 8);
    if (!seg)
        seg = 0x07C0;
    if (!bytes || seg * 16u + bytes > 0x9FC00)
        return "boot image does not fit in conventional memory";
    u8 *dest = far(seg, 0);
    for (u32 done = 0; done < bytes; done += 2048, lba++) {
        if (atapi_read(d, lba, 1, SCRATCH) < 0)
            return "could not read the boot image";
        memcpy(dest + done, SCRATCH, bytes - done < 2048 ? bytes - done : 2048);
    }
    *seg_out = seg;
    return NULL;
}

static u32 boot_cd(struct bregs *r)
{
    struct drive *d = first_drive(1);
    u16 seg;
    if (!d)
        return 0;
    printf("Booting from CD-ROM %x...\n", d->number);
    const char *err = cd_load(d, &seg);
    if (err) {
        printf("Boot failed: %s\n", err);
        return 0;
    }
    cd_boot_drive = d->number;
    set_dl(r, d->number);
    return segoff(seg, 0);
}

enum { BOOT_DISK = 2, BOOT_CD = 3, BOOT_ROM = 0x10 /* + option ROM index */ };
#define MAX_CANDIDATES (3 + 8)

static u32 boot_tried;  /* candidates tried so far: INT 19h goes on after a BEV returns */

/* What to try, in order: ROMs bootorder names, the CMOS order (disk then CD-ROM when it
 * names neither), then the other ROMs. */
static u32 boot_candidates(u8 *list)
{
    u8 order[3] = {cmos_read(0x3D) & 0x0F, cmos_read(0x3D) >> 4, cmos_read(0x38) >> 4};
    u32 n = 0;
    for (u32 i = 0; i < option_rom_count; i++)
        if (option_rom_in_bootorder(i))
            list[n++] = (u8)(BOOT_ROM + i);
    u32 cmos_first = n;
    for (u32 i = 0; i < 3; i++)
        if (order[i] == BOOT_DISK || order[i] == BOOT_CD)
            list[n++] = order[i];
    if (n == cmos_first) {
        list[n++] = BOOT_DISK;
        list[n++] = BOOT_CD;
    }
    for (u32 i = 0; i < option_rom_count; i++)
        if (!option_rom_in_bootorder(i))
            list[n++] = (u8)(BOOT_ROM + i);
    return n;
}

void handle_19(struct bregs *r)
{
    u8 list[MAX_CANDIDATES];
    u32 n = boot_candidates(list);
    r->eax = 0;
    r->ds = r->es = 0;
    while (!r->eax && boot_tried < n) {
        u8 what = list[boot_tried++];
        if (what == BOOT_DISK)
            r->eax = boot_disk(r);
        else if (what == BOOT_CD)
            r->eax = boot_cd(r);
        else
            r->eax = option_rom_bev(what - BOOT_ROM);
    }
}

void handle_18(struct bregs *r)
{
    (void)r;
    puts("No bootable device.\n");
}
