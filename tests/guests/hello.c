/* hello: the smallest guest -- Multiboot entry, COM1 output, the info structure. */
#include "guest.h"

const char guest_name[] = "hello";

int main(void)
{
    printf("Hello from pyemu guest\n");
    if (!check(mb_magic == MULTIBOOT_BOOTLOADER_MAGIC, "EAX magic %08x", mb_magic))
        return 1;
    const struct multiboot_info *mbi = mb_info;
    printf("multiboot info at %p, flags %08x\n", (void *)mbi, mbi->flags);
    if (mbi->flags & (1u << 2))
        printf("cmdline: \"%s\"\n", (const char *)mbi->cmdline);
    else
        printf("cmdline: (none)\n");
    if (check(mbi->flags & 1u, "mem_lower/mem_upper present"))
        printf("mem_lower %u KiB, mem_upper %u KiB\n", mbi->mem_lower, mbi->mem_upper);
    return 0;
}
