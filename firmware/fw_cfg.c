/*
 * QEMU's firmware configuration interface on its x86 ports (docs/specs/fw_cfg.txt):
 * a 16-bit write of an item key to the selector 0x510, then byte reads of the data port
 * 0x511. Item 0 holds the signature "QEMU"; item 19h the file directory, a big-endian
 * count followed by 64-byte entries (size BE32, select BE16, reserved, 56-byte name).
 */
#include "bios.h"

#define FW_CFG_CTL 0x510
#define FW_CFG_DATA 0x511
#define FW_CFG_SIGNATURE 0x00
#define FW_CFG_FILE_DIR 0x19

void fw_cfg_select(u16 key)
{
    outw(FW_CFG_CTL, key);
}

void fw_cfg_read(void *buf, u32 len)
{
    u8 *p = buf;
    while (len--)
        *p++ = inb(FW_CFG_DATA);
}

int fw_cfg_present(void)
{
    char sig[4];
    fw_cfg_select(FW_CFG_SIGNATURE);
    fw_cfg_read(sig, 4);
    return memcmp(sig, "QEMU", 4) == 0;
}

static u32 be32(const u8 *p)
{
    return (u32)p[0] << 24 | (u32)p[1] << 16 | (u32)p[2] << 8 | p[3];
}

int fw_cfg_each_file(int (*fn)(const struct fw_cfg_file *f, void *ctx), void *ctx)
{
    u8 entry[64];
    struct fw_cfg_file f;
    fw_cfg_select(FW_CFG_FILE_DIR);
    fw_cfg_read(entry, 4);
    for (u32 n = be32(entry); n; n--) {
        fw_cfg_read(entry, sizeof(entry));
        f.size = be32(entry);
        f.key = (u16)(entry[4] << 8 | entry[5]);
        memcpy(f.name, entry + 8, sizeof(f.name));
        f.name[sizeof(f.name) - 1] = 0;
        int done = fn(&f, ctx);
        if (done)
            return done;
    }
    return 0;
}

static int match_name(const struct fw_cfg_file *f, void *ctx)
{
    struct fw_cfg_file *want = ctx;
    if (memcmp(f->name, want->name, strlen(want->name) + 1))
        return 0;
    *want = *f;
    return 1;
}

int fw_cfg_find_file(const char *name, u16 *key, u32 *size)
{
    struct fw_cfg_file want;
    u32 len = strlen(name) + 1;
    if (len > sizeof(want.name))
        return 0;
    memcpy(want.name, name, len);
    if (!fw_cfg_each_file(match_name, &want))
        return 0;
    *key = want.key;
    *size = want.size;
    return 1;
}
