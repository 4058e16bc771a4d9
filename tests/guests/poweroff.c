/*
 * poweroff: turns the machine off the way an ACPI OS does on QEMU's pc board: the PIIX4
 * power-management function (00:01.3) gets its I/O base (PMBA, 40h) and I/O enable
 * (PMREGMISC, 80h bit 0), then SLP_TYP 0 (S5, soft off, as QEMU's and pyemu's boards
 * define it) with SLP_EN in PM1a_CNT. It prints "PASS poweroff: powering off" first;
 * nothing after the power-off may run, so anything later is a FAIL.
 *
 * Intel 82371AB (PIIX4) datasheet 3.4.1 (PMBA, PMREGMISC), 7.2.3 (PM1 control); ACPI 6.4
 * 4.8.3.2.1 (PM1 control register: SLP_TYP bits 10-12, SLP_EN bit 13).
 */
#include "guest.h"

const char guest_name[] = "poweroff";

#define PM_DEVFN ((1u << 3) | 3)  /* device 1, function 3 */
#define PMBA 0x40
#define PMREGMISC 0x80
#define PM_BASE 0x600
#define PM1_CNT (PM_BASE + 4)
#define SLP_EN (1u << 13)

static void pci_write(uint32_t reg, uint32_t value, int size)
{
    outl(0xCF8, 0x80000000u | PM_DEVFN << 8 | (reg & 0xFC));
    if (size == 4)
        outl(0xCFC, value);
    else
        outb(0xCFC + (reg & 3), (uint8_t)value);
}

int main(void)
{
    pci_write(PMBA, PM_BASE | 1, 4);
    pci_write(PMREGMISC, 1, 1);
    printf("PASS poweroff: powering off\n");
    outw(PM1_CNT, SLP_EN);  /* SLP_TYP 0: S5 */
    for (int i = 0; i < 1000000; i++)
        io_wait();
    printf("FAIL poweroff: still running after the power-off\n");
    for (;;)
        hlt();
}
