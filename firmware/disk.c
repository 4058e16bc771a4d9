/*
 * INT 13h for ATA disks (80h..) and ATAPI CD-ROMs (E0h..).
 *
 * IBM PC/AT BIOS interface for the CHS functions (00h reset, 01h status, 02h/03h/04h
 * read/write/verify with cylinder bits 8-9 in CL bits 6-7, 08h parameters, 15h type);
 * Phoenix "BIOS Enhanced Disk Drive Specification" 3.0 for the extensions (41h check,
 * 42h/43h/44h with the disk address packet, 47h seek, 48h parameters, 45h/46h/49h for
 * removable media); El Torito 1.0 section 5 for AX=4B00h/4B01h (the specification
 * packet). A CD is addressed in its 2048-byte sectors.
 */
#include "bios.h"

enum {
    DISK_OK = 0x00, DISK_BAD_CMD = 0x01, DISK_WRITE_PROTECTED = 0x03, DISK_NOT_FOUND = 0x04,
    DISK_CTRL_FAIL = 0x20, DISK_TIMEOUT = 0x80, DISK_NOT_READY = 0xAA,
};

/* The disk address packet of 42h/43h/44h/47h (EDD 3.0 table 1). */
struct dap {
    u8 size, reserved;
    u16 count;
    u16 off, seg;
    u64 lba;
    u64 flat;   /* when size >= 18h and seg:off is FFFF:FFFF */
} __attribute__((packed));

static void *dap_buffer(const struct dap *p)
{
    if (p->size >= 0x18 && p->seg == 0xFFFF && p->off == 0xFFFF)
        return (void *)(u32)p->flat;
    return far(p->seg, p->off);
}

static u8 disk_transfer(struct drive *d, u64 lba, u32 count, void *buf, int write)
{
    if (lba + count > d->sectors)
        return DISK_NOT_FOUND;
    if (d->is_cd) {
        if (write)
            return DISK_WRITE_PROTECTED;
        return atapi_read(d, (u32)lba, count, buf) < 0 ? DISK_NOT_READY : DISK_OK;
    }
    return ata_rw(d, lba, count, buf, write) < 0 ? DISK_CTRL_FAIL : DISK_OK;
}

static void chs_call(struct bregs *r, struct drive *d)
{
    u32 count = AL(r);
    u32 cyl = CH(r) | (u32)(CL(r) & 0xC0) << 2, sec = CL(r) & 0x3F, head = DH(r);
    if (!count || !sec || sec > d->spt || head >= d->heads || cyl >= d->cyls) {
        set_al(r, 0);
        ret_status(r, DISK_BAD_CMD);
        return;
    }
    u64 lba = ((u64)cyl * d->heads + head) * d->spt + sec - 1;
    u8 status = DISK_OK;
    if (AH(r) == 0x04)
        status = lba + count > d->sectors ? DISK_NOT_FOUND : DISK_OK;
    else
        status = disk_transfer(d, lba, count, far(r->es, BX(r)), AH(r) == 0x03);
    set_al(r, status ? 0 : (u8)count);
    ret_status(r, status);
}

static void ext_call(struct bregs *r, struct drive *d)
{
    struct dap *p = far(r->ds, SI(r));
    if (p->size < 0x10) {
        ret_status(r, DISK_BAD_CMD);
        return;
    }
    u8 status = DISK_OK;
    if (AH(r) == 0x42 || AH(r) == 0x43)
        status = disk_transfer(d, p->lba, p->count, dap_buffer(p), AH(r) == 0x43);
    else if (p->lba + p->count > d->sectors)
        status = DISK_NOT_FOUND;   /* 44h verify, 47h seek: only the range to check */
    if (status)
        p->count = 0;
    ret_status(r, status);
}

/* 48h: the result buffer (EDD 3.0 table 8), up to the DPTE pointer. */
static void params_call(struct bregs *r, struct drive *d)
{
    u8 *p = far(r->ds, SI(r));
    u16 size = *(u16 *)p;
    if (size < 0x1A) {
        ret_status(r, DISK_BAD_CMD);
        return;
    }
    memset(p + 2, 0, 0x18);
    if (d->is_cd) {
        *(u16 *)(p + 2) = 0x0074;   /* removable, change line, lockable, max geometry */
        memset(p + 4, 0xFF, 12);
        *(u16 *)(p + 24) = 2048;
    } else {
        *(u16 *)(p + 2) = 0x0002;   /* the CHS information is valid */
        *(u32 *)(p + 4) = d->cyls;
        *(u32 *)(p + 8) = d->heads;
        *(u32 *)(p + 12) = d->spt;
        *(u16 *)(p + 24) = 512;
    }
    *(u64 *)(p + 16) = d->sectors;
    if (size >= 0x1E) {
        *(u32 *)(p + 26) = 0xFFFFFFFF;   /* no device parameter table extension */
        size = 0x1E;
    } else {
        size = 0x1A;
    }
    *(u16 *)p = size;
    ret_status(r, DISK_OK);
}

/* AX=4B00h/4B01h: the El Torito specification packet of the booted CD. */
static void eltorito_status(struct bregs *r, struct drive *d)
{
    u8 *p = far(r->ds, SI(r));
    if (AL(r) > 1 || d->number != cd_boot_drive) {
        ret_status(r, DISK_BAD_CMD);
        return;
    }
    memset(p, 0, 0x13);
    p[0] = 0x13;
    p[1] = 0x00;                                    /* no emulation */
    p[2] = d->number;
    p[3] = d->iobase == 0x1F0 ? 0 : 1;              /* controller index */
    memcpy(p + 4, cd_boot_catalog + 32 + 8, 4);     /* LBA of the boot image */
    p[8] = d->slave;                                /* device specification */
    memcpy(p + 0x0C, cd_boot_catalog + 32 + 2, 2);  /* load segment */
    memcpy(p + 0x0E, cd_boot_catalog + 32 + 6, 2);  /* sector count */
    ret_status(r, DISK_OK);
}

static void edd_check(struct bregs *r, struct drive *d)
{
    if (BX(r) != 0x55AA) {
        ret_status(r, DISK_BAD_CMD);
        return;
    }
    set_bx(r, 0xAA55);
    set_cx(r, d->is_cd ? 0x0007 : 0x0005);   /* 42h-44h,47h,48h; 45h/46h/49h for CDs */
    ret_status(r, 0x30);                     /* EDD 3.0 */
    set_cf(r, 0);
}

/* The EDD calls (Phoenix EDD 3.0: 41h-44h, 47h, 48h), answered alike for disks and CDs;
 * 0 if AH is not one of them. */
static int edd_call(struct bregs *r, struct drive *d)
{
    switch (AH(r)) {
    case 0x41:
        edd_check(r, d);
        return 1;
    case 0x42: case 0x43: case 0x44: case 0x47:
        ext_call(r, d);
        return 1;
    case 0x48:
        params_call(r, d);
        return 1;
    }
    return 0;
}

static void hd_call(struct bregs *r, struct drive *d)
{
    switch (AH(r)) {
    case 0x00: case 0x0C: case 0x0D: case 0x10: case 0x11: case 0x14:
        ret_status(r, DISK_OK);
        break;
    case 0x01:
        ret_status(r, BDA8(BDA_DISK_STATUS));
        return;
    case 0x02: case 0x03: case 0x04:
        chs_call(r, d);
        break;
    case 0x08: {
        u16 maxcyl = (u16)(d->cyls - 1);
        set_ax(r, 0);
        set_bx(r, 0);
        set_cx(r, (u16)((maxcyl & 0xFF) << 8 | (maxcyl >> 2 & 0xC0) | d->spt));
        set_dx(r, (u16)((d->heads - 1) << 8 | BDA8(BDA_NUM_DISKS)));
        set_cf(r, 0);
        break;
    }
    case 0x15: {
        u64 n = d->sectors > 0xFFFFFFFF ? 0xFFFFFFFF : d->sectors;
        set_cx(r, (u16)(n >> 16));
        set_dx(r, (u16)n);
        set_ah(r, 0x03);   /* fixed disk */
        set_cf(r, 0);
        return;
    }
    default:
        if (!edd_call(r, d))
            ret_status(r, DISK_BAD_CMD);
    }
    BDA8(BDA_DISK_STATUS) = AH(r);
}

static void cd_call(struct bregs *r, struct drive *d)
{
    switch (AH(r)) {
    case 0x00: case 0x0D: case 0x10: case 0x45: case 0x46: case 0x49:
        ret_status(r, DISK_OK);
        break;
    case 0x01:
        ret_status(r, DISK_OK);
        break;
    case 0x15:
        set_ah(r, 0x02);   /* removable, with change line */
        set_cf(r, 0);
        break;
    case 0x4B:
        eltorito_status(r, d);
        break;
    default:
        if (!edd_call(r, d))
            ret_status(r, DISK_BAD_CMD);
    }
}

void handle_13(struct bregs *r)
{
    struct drive *d = drive_by_number(DL(r));
    if (!d) {
        if (AH(r) == 0x15) {
            set_ah(r, 0);   /* no such drive */
            set_cf(r, 0);
            return;
        }
        if (AH(r) == 0x08 && DL(r) >= 0x80 && DL(r) < 0xE0)
            set_dl(r, BDA8(BDA_NUM_DISKS));
        ret_status(r, DISK_BAD_CMD);
        return;
    }
    if (d->is_cd)
        cd_call(r, d);
    else
        hd_call(r, d);
}
