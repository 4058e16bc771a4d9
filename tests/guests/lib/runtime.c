/*
 * Polled COM1 output, a small printf, the check/verdict protocol.
 * UART programming follows the PC16550D datasheet: LCR bit 7 (DLAB) exposes the divisor
 * latch, LSR bit 5 (THRE) says the transmit holding register may be written.
 */
#include "guest.h"

typedef __builtin_va_list va_list;
#define va_start(ap, last) __builtin_va_start(ap, last)
#define va_end(ap) __builtin_va_end(ap)
#define va_arg(ap, t) __builtin_va_arg(ap, t)

void *memset(void *d, int c, size_t n)
{
    uint8_t *p = d;
    while (n--)
        *p++ = (uint8_t)c;
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    uint8_t *p = d;
    const uint8_t *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *p = a, *q = b;
    for (; n; n--, p++, q++)
        if (*p != *q)
            return *p - *q;
    return 0;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

void serial_init(void)
{
    outb(COM1 + 1, 0x00); /* IER: polled */
    outb(COM1 + 3, 0x80); /* DLAB */
    outb(COM1 + 0, 0x01); /* divisor 1 = 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03); /* 8N1 */
    outb(COM1 + 2, 0xC7); /* FIFO on, both cleared, 14-byte trigger */
    outb(COM1 + 4, 0x0B); /* DTR, RTS, OUT2 (the PC's IRQ gate) */
}

void serial_putc(char c)
{
    /* Bounded so a UART that never reports THRE cannot hang the guest forever. */
    for (uint32_t spin = 0; spin < 10000000u; spin++)
        if (inb(COM1 + 5) & 0x20)
            break;
    outb(COM1, (uint8_t)c);
}

void serial_puts(const char *s)
{
    while (*s) {
        if (*s == '\n')
            serial_putc('\r');
        serial_putc(*s++);
    }
}

/* ---- formatting ---- */

struct sink {
    char *buf; /* NULL: write to the serial port */
    size_t size, len;
};

static void sink_put(struct sink *s, char c)
{
    if (!s->buf) {
        if (c == '\n')
            serial_putc('\r');
        serial_putc(c);
    } else if (s->len + 1 < s->size) {
        s->buf[s->len] = c;
    }
    s->len++;
}

static void emit_number(struct sink *s, uint64_t v, unsigned base, int neg, int width, char pad,
                        int upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    int n = 0;
    do {
        /* base is 10 or 16 and 64-bit division would need libgcc; decimal is 32-bit only. */
        if (base == 16) {
            tmp[n++] = digits[v & 15];
            v >>= 4;
        } else {
            uint32_t w = (uint32_t)v;
            tmp[n++] = digits[w % 10];
            v = w / 10;
        }
    } while (v);
    if (neg)
        tmp[n++] = '-';
    for (int i = n; i < width; i++)
        sink_put(s, pad);
    while (n)
        sink_put(s, tmp[--n]);
}

static void vformat(struct sink *s, const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            sink_put(s, *fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        int width = 0, longs = 0;
        if (*fmt == '0') {
            pad = '0';
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') {
            longs++;
            fmt++;
        }
        switch (*fmt) {
        case 'd': {
            int v = va_arg(ap, int);
            emit_number(s, v < 0 ? -(uint32_t)v : (uint32_t)v, 10, v < 0, width, pad, 0);
            break;
        }
        case 'u':
            emit_number(s, va_arg(ap, uint32_t), 10, 0, width, pad, 0);
            break;
        case 'x':
        case 'X':
            emit_number(s, longs >= 2 ? va_arg(ap, uint64_t) : va_arg(ap, uint32_t), 16, 0, width,
                        pad, *fmt == 'X');
            break;
        case 'p':
            sink_put(s, '0');
            sink_put(s, 'x');
            emit_number(s, (uint32_t)va_arg(ap, void *), 16, 0, 8, '0', 0);
            break;
        case 'c':
            sink_put(s, (char)va_arg(ap, int));
            break;
        case 's': {
            const char *str = va_arg(ap, const char *);
            if (!str)
                str = "(null)";
            int len = (int)strlen(str);
            for (int i = len; i < width; i++)
                sink_put(s, ' ');
            while (*str)
                sink_put(s, *str++);
            break;
        }
        case '%':
            sink_put(s, '%');
            break;
        case '\0':
            return;
        default:
            sink_put(s, '%');
            sink_put(s, *fmt);
        }
    }
}

int printf(const char *fmt, ...)
{
    struct sink s = {0, 0, 0};
    va_list ap;
    va_start(ap, fmt);
    vformat(&s, fmt, ap);
    va_end(ap);
    return (int)s.len;
}

static int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct sink s = {buf, size, 0};
    vformat(&s, fmt, ap);
    if (size)
        buf[s.len < size ? s.len : size - 1] = '\0';
    return (int)s.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

/* ---- verdict ---- */

static char first_failure[160];
static int failures;

static void note_failure(const char *fmt, va_list ap)
{
    if (!failures++)
        vsnprintf(first_failure, sizeof(first_failure), fmt, ap);
}

int check(int cond, const char *fmt, ...)
{
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    printf("  %s %s\n", cond ? "ok " : "BAD", what);
    if (!cond && !failures++)
        memcpy(first_failure, what, sizeof(first_failure));
    return cond;
}

void fail_reason(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    note_failure(fmt, ap);
    va_end(ap);
}

int checks_failed(void) { return failures; }

void exit_verdict(int pass)
{
    static int exiting;
    cli();
    /* A fault while reporting must not print a second verdict line. */
    if (!exiting++) {
        stall_report();
        if (pass && !failures) {
            printf("PASS %s\n", guest_name);
            outb(0xF4, 0);
        } else {
            printf("FAIL %s: %s\n", guest_name, failures ? first_failure : "guest reported failure");
            outb(0xF4, 1);
        }
    }
    for (;;)
        hlt();
}

void guest_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    note_failure(fmt, ap);
    va_end(ap);
    exit_verdict(0);
}
