/*
 * Console output of the C part: COM1 (16550: 115200 8N1, FIFOs on, no interrupts) set up
 * here, the characters written as INT 10h teletype writes them (video.c: COM1 and, when
 * POST found one, the text buffer at B8000h); plus a small printf (%s %c %d %u %x with
 * width and zero padding) and the string helpers a freestanding build needs.
 */
#include "bios.h"

#define COM1 0x3F8
#define EBDA_FLAGS (*(volatile u8 *)(EBDA_SEG * 16 + 0x10))

void serial_init(void)
{
    outb(COM1 + 1, 0x00);   /* IER: polled */
    outb(COM1 + 3, 0x80);   /* DLAB */
    outb(COM1 + 0, 0x01);   /* divisor 1: 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);   /* 8N1 */
    outb(COM1 + 2, 0x07);   /* FIFOs on and cleared */
    outb(COM1 + 4, 0x03);   /* DTR, RTS; OUT2 off: no IRQ4 */
}

/* A text buffer is there when a PCI display controller (class 03h) is on bus 0 and what
 * is written at B8000h reads back (QEMU with -vga none has plain RAM there). */
static int display_on_pci(void)
{
    for (u32 devfn = 0; devfn < 256; devfn++) {
        u32 id = pci_read32(0, (u8)devfn, 0x00);
        if ((id & 0xFFFF) == 0xFFFF)
            continue;
        if (pci_read32(0, (u8)devfn, 0x08) >> 24 == 0x03)
            return 1;
    }
    return 0;
}

void vga_probe(void)
{
    volatile u16 *cell = (volatile u16 *)0xB8000;
    EBDA_FLAGS &= ~1;
    if (!display_on_pci())
        return;
    *cell = 0x0720;
    EBDA_FLAGS |= *cell == 0x0720;
    if (EBDA_FLAGS & 1) {
        for (u32 i = 0; i < 80 * 25; i++)
            cell[i] = 0x0720;
    }
}

/* The BIOS's own messages go through INT 10h's console (video.c) and out at once. */
void putc(char c)
{
    if (c == '\n')
        video_putc('\r');
    video_putc(c);
}

void puts(const char *s)
{
    while (*s)
        putc(*s++);
}

static void put_number(u32 v, u32 base, int width, char pad, int negative)
{
    char digits[12];
    int n = 0;
    do {
        digits[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    if (negative)
        digits[n++] = '-';
    while (width-- > n)
        putc(pad);
    while (n--)
        putc(digits[n]);
}

void printf(const char *fmt, ...)
{
    __builtin_va_list ap;
    __builtin_va_start(ap, fmt);
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            putc(*fmt);
            continue;
        }
        char pad = ' ';
        int width = 0;
        if (*++fmt == '0')
            pad = '0';
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        switch (*fmt) {
        case 's':
            puts(__builtin_va_arg(ap, const char *));
            break;
        case 'c':
            putc((char)__builtin_va_arg(ap, int));
            break;
        case 'd': {
            s32 v = __builtin_va_arg(ap, s32);
            put_number(v < 0 ? (u32)-v : (u32)v, 10, width, pad, v < 0);
            break;
        }
        case 'u':
            put_number(__builtin_va_arg(ap, u32), 10, width, pad, 0);
            break;
        case 'x':
            put_number(__builtin_va_arg(ap, u32), 16, width, pad, 0);
            break;
        case '\0':
            fmt--;
            break;
        default:
            putc(*fmt);
        }
    }
    __builtin_va_end(ap);
}

void *memcpy(void *d, const void *s, u32 n)
{
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) :: "memory");
    return d;
}

void *memmove(void *d, const void *s, u32 n)
{
    u8 *dp = d;
    const u8 *sp = s;
    if (dp <= sp || dp >= sp + n)
        return memcpy(d, s, n);
    while (n--)
        dp[n] = sp[n];
    return d;
}

void *memset(void *d, int c, u32 n)
{
    void *p = d;
    __asm__ volatile("rep stosb" : "+D"(p), "+c"(n) : "a"(c) : "memory");
    return d;
}

int memcmp(const void *a, const void *b, u32 n)
{
    const u8 *x = a, *y = b;
    for (u32 i = 0; i < n; i++) {
        if (x[i] != y[i])
            return x[i] - y[i];
    }
    return 0;
}

u32 strlen(const char *s)
{
    u32 n = 0;
    while (s[n])
        n++;
    return n;
}
