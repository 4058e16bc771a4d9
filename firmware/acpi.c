/*
 * ACPI tables from the board: fw_cfg file `etc/pyemu/acpi` holds the base address they
 * were built for (u32), the RSDP's offset in them (u32), then the tables (RSDP, XSDT,
 * RSDT, FADT, FACS, DSDT; emu/machine/pc/acpi.py). POST copies them to that base near the
 * top of low RAM, reserves from there to the top as ACPI reclaimable in E820 (ACPI 6.x 15.2 "address
 * range types"), puts a copy of the RSDP in the EBDA's first KiB where an OS scans for it
 * (ACPI 6.x 5.2.5.1), and decodes the PIIX4 power-management registers where the FADT
 * says they are: PMBA (function 3, 40h) and PMREGMISC bit 0 (80h), 82371AB data sheet
 * 3.4.1.1 / 3.4.1.13.
 */
#include "bios.h"

#define PIIX4_PM_DEVFN 0x0B
#define PMBA 0x40
#define PMREGMISC 0x80
#define PM_BASE 0x600
#define RSDP_LEN 36
#define EBDA_RSDP 0x20  /* 16-byte aligned, in the first KiB of the EBDA */

void acpi_install(void)
{
    u16 key;
    u32 size, head[2];
    if (!fw_cfg_present() || !fw_cfg_find_file("etc/pyemu/acpi", &key, &size) || size < 8)
        return;
    fw_cfg_select(key);
    fw_cfg_read(head, sizeof(head));
    u32 base = head[0], len = size - 8;
    if (base < 0x100000 || base >= ram_below_4g || len > ram_below_4g - base ||
        head[1] + RSDP_LEN > len) {
        puts("ACPI: the board's tables do not fit, left out\n");
        return;
    }
    fw_cfg_read((void *)base, len);
    memcpy(far(EBDA_SEG, EBDA_RSDP), (void *)(base + head[1]), RSDP_LEN);
    e820_reserve_top(ram_below_4g - base, E820_ACPI);
    pci_write16(0, PIIX4_PM_DEVFN, PMBA, PM_BASE | 1);
    pci_write8(0, PIIX4_PM_DEVFN, PMREGMISC, 1);
    printf("ACPI: tables at %x\n", base);
}
