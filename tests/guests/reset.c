/*
 * reset: a triple fault resets the machine and the guest starts again.
 *
 * With a zero-limit IDT, INT3 cannot be delivered (#GP), nor can #GP, so the CPU
 * raises #DF, which cannot be delivered either: shutdown, which the PC turns into a
 * reset (Intel SDM vol. 3A 6.15, interrupt 8).  The machine then reloads the ELF and
 * enters it again; RAM outside the ELF's segments survives, so a marker at physical
 * 0x600 tells the second boot from the first.
 */
#include "guest.h"

const char guest_name[] = "reset";

#define MARK_MAGIC 0x7E5E7B00u

struct marker {
    uint32_t magic, boots;
};

int main(void)
{
    volatile struct marker *m = (volatile struct marker *)0x600;
    if (m->magic != MARK_MAGIC) {
        m->magic = MARK_MAGIC;
        m->boots = 1;
        printf("first boot: triple faulting\n");
        struct {
            uint16_t limit;
            uint32_t base;
        } __attribute__((packed)) empty = {0, 0};
        __asm__ volatile("lidt %0; int3" ::"m"(empty) : "memory");
        m->magic = 0;
        guest_fail("int3 with a zero-limit IDT returned");
    }
    uint32_t boots = ++m->boots;
    m->magic = 0;
    printf("reset observed: boot %u\n", boots);
    check(boots == 2, "exactly one reset happened (boot %u)", boots);
    check(mb_magic == MULTIBOOT_BOOTLOADER_MAGIC, "re-entered through Multiboot (EAX %08x)",
          mb_magic);
    return checks_failed();
}
