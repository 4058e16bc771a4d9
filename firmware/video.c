/*
 * INT 10h video services on the serial console.
 *
 * pyemu has no VGA, so the console is COM1, driven the way SeaBIOS drives it when QEMU
 * runs it with -nographic and no VGA BIOS (src/sercon.c, "sercon", enabled by fw_cfg
 * etc/sercon-port): a loader's text reaches the serial line the same way under both
 * firmwares.
 *  - The screen is the BIOS data area as the VGA BIOS keeps it: mode 49h, columns 4Ah,
 *    rows less one 84h, cursor shape 60h and the cursor at 50h. Like sercon (which has
 *    no pages) the cursor functions use the page 0 cursor whatever BH says.
 *  - A character written at the cursor (AH=09h with CX=1, AH=0Ah, teletype) is held back
 *    until something is written somewhere else, so a cell written twice (AH=09h for the
 *    colour, then AH=0Eh to advance, as DOS programs do) goes out once. INT 08h sends
 *    what is held back at the next timer tick, as sercon does from its clock handler.
 *  - Before a character goes out, the terminal's cursor is brought to the BIOS cursor:
 *    with CR and LFs when it moved down to column 0, else with ESC [ row ; col H; the
 *    attribute becomes ESC [ 0 (; 3 fg)(; 4 bg)(; 1) m (the VGA's blue-green-red order
 *    turned into ANSI's red-green-blue).
 *  - A character goes out as the UTF-8 of its code page 437 glyph (01h-1Fh and 7Fh too:
 *    only teletype interprets BEL, BS, CR and LF).
 *  - AH=09h with CX>1 sends the character CX times at once and puts the terminal's
 *    cursor back; CX spaces that fill the screen from the top left clear it (ESC [2J).
 *  - AH=00h (set mode) resets the terminal (ESC c), turns off its line wrap (ESC [?7l)
 *    and clears it (ESC [2J, unless AL bit 7 is set); a mode above 7 (graphics) turns
 *    the console off, and only AX <= 0007h (a text mode set) is answered until then.
 *  - AH=06h sends CR LF for a scroll and clears the terminal when the whole screen is
 *    blanked; AH=01h/02h/03h/0Fh only keep the BDA; AH=4Fh (VBE) answers AX=0100h.
 * Where sercon does nothing or returns what the VGA BIOS interface does not say (IBM
 * VGA Technical Reference; SeaBIOS's own VGA BIOS, vgasrc/vgabios.c), the interface
 * decides: AH=0Ah (write character only) goes out as AH=09h would send it, keeping the
 * attribute; AH=13h (write string at DH/DL, attributes in the string when AL bit 1, the
 * cursor moved when AL bit 0) as teletype; AH=08h returns a blank, AL=20h AH=07h (sercon
 * returns AH=07h and puts the blank in BH); AH=0Fh also returns the page in BH.
 *
 * When POST found a text buffer at B8000h (pyemu's BIOS inside QEMU with a VGA), the
 * same writes also go to its cells, and AH=1Ah reports a VGA.
 */
#include "bios.h"

#define EBDA_FLAGS (*(volatile u8 *)(EBDA_SEG * 16 + 0x10))
#define TEXT ((volatile u16 *)0xB8000)
#define BDA_VIDEO_PAGE 0x62
#define BDA_VIDEO_CTL 0x87
#define ESC 0x1B

/* The serial console's state. entry.S (INT 08h) reads chr and, as one word, col_last and
 * row_last: keep the first four fields where they are. */
struct sercon sercon;

/* VGA colour number (bits: blue, green, red) -> ANSI colour digit (red, green, blue). */
static const u8 ansi_colour[8] = {'0', '4', '2', '6', '1', '5', '3', '7'};

/* Code page 437 glyphs as Unicode: 00h-1Fh, then 80h-FFh (7Fh is U+2302). */
static const u16 cp437_low[32] = {
    0x0000, 0x263A, 0x263B, 0x2665, 0x2666, 0x2663, 0x2660, 0x2022,   /* 00h */
    0x25D8, 0x25CB, 0x25D9, 0x2642, 0x2640, 0x266A, 0x266B, 0x263C,   /* 08h */
    0x25BA, 0x25C4, 0x2195, 0x203C, 0x00B6, 0x00A7, 0x25AC, 0x21A8,   /* 10h */
    0x2191, 0x2193, 0x2192, 0x2190, 0x221F, 0x2194, 0x25B2, 0x25BC,   /* 18h */
};
static const u16 cp437_high[128] = {
    0x00C7, 0x00FC, 0x00E9, 0x00E2, 0x00E4, 0x00E0, 0x00E5, 0x00E7,   /* 80h */
    0x00EA, 0x00EB, 0x00E8, 0x00EF, 0x00EE, 0x00EC, 0x00C4, 0x00C5,   /* 88h */
    0x00C9, 0x00E6, 0x00C6, 0x00F4, 0x00F6, 0x00F2, 0x00FB, 0x00F9,   /* 90h */
    0x00FF, 0x00D6, 0x00DC, 0x00A2, 0x00A3, 0x00A5, 0x20A7, 0x0192,   /* 98h */
    0x00E1, 0x00ED, 0x00F3, 0x00FA, 0x00F1, 0x00D1, 0x00AA, 0x00BA,   /* A0h */
    0x00BF, 0x2310, 0x00AC, 0x00BD, 0x00BC, 0x00A1, 0x00AB, 0x00BB,   /* A8h */
    0x2591, 0x2592, 0x2593, 0x2502, 0x2524, 0x2561, 0x2562, 0x2556,   /* B0h */
    0x2555, 0x2563, 0x2551, 0x2557, 0x255D, 0x255C, 0x255B, 0x2510,   /* B8h */
    0x2514, 0x2534, 0x252C, 0x251C, 0x2500, 0x253C, 0x255E, 0x255F,   /* C0h */
    0x255A, 0x2554, 0x2569, 0x2566, 0x2560, 0x2550, 0x256C, 0x2567,   /* C8h */
    0x2568, 0x2564, 0x2565, 0x2559, 0x2558, 0x2552, 0x2553, 0x256B,   /* D0h */
    0x256A, 0x2518, 0x250C, 0x2588, 0x2584, 0x258C, 0x2590, 0x2580,   /* D8h */
    0x03B1, 0x00DF, 0x0393, 0x03C0, 0x03A3, 0x03C3, 0x00B5, 0x03C4,   /* E0h */
    0x03A6, 0x0398, 0x03A9, 0x03B4, 0x221E, 0x03C6, 0x03B5, 0x2229,   /* E8h */
    0x2261, 0x00B1, 0x2265, 0x2264, 0x2320, 0x2321, 0x00F7, 0x2248,   /* F0h */
    0x00B0, 0x2219, 0x00B7, 0x221A, 0x207F, 0x00B2, 0x25A0, 0x00A0,   /* F8h */
};

/* -- the screen as the BDA describes it ------------------------------------------------ */
static u8 cur_row(void) { return BDA8(BDA_CURSOR + 1); }
static u8 cur_col(void) { return BDA8(BDA_CURSOR); }
static u8 rows(void) { return (u8)(BDA8(BDA_VIDEO_ROWS) + 1); }
static u8 cols(void) { return (u8)BDA16(BDA_VIDEO_COLS); }
static void set_cursor(u8 row, u8 col) { BDA16(BDA_CURSOR) = (u16)(row << 8 | col); }

/* -- the text buffer, when there is one ---------------------------------------------- */
static int text_here(void) { return EBDA_FLAGS & 1; }

/* Character c at row, col; attr < 0 keeps the cell's attribute. */
static void text_put(u8 row, u8 col, u8 c, int attr)
{
    if (!text_here() || row >= rows() || col >= cols())
        return;
    volatile u16 *cell = TEXT + row * cols() + col;
    *cell = attr < 0 ? (u16)((*cell & 0xFF00) | c) : (u16)(attr << 8 | c);
}

/* Scroll the window rows top-bottom, columns left-right by `lines` (0: blank it), up or
 * down, filling with blanks of attribute attr (INT 10h AH=06h/07h). */
static void text_scroll(u8 top, u8 left, u8 bottom, u8 right, u8 lines, u8 attr, int down)
{
    if (!text_here())
        return;
    if (bottom >= rows())
        bottom = (u8)(rows() - 1);
    if (right >= cols())
        right = (u8)(cols() - 1);
    if (top > bottom || left > right)
        return;
    u32 height = bottom - top + 1u, w = cols();
    if (!lines || lines > height)
        lines = (u8)height;
    for (u32 i = 0; i < height; i++) {
        u32 row = down ? bottom - i : top + i;
        u32 from = down ? row - lines : row + lines;
        int keep = i + lines < height;
        for (u32 col = left; col <= right; col++)
            TEXT[row * w + col] = keep ? TEXT[from * w + col] : (u16)(attr << 8 | ' ');
    }
}

/* -- the terminal -------------------------------------------------------------------- */
static void out(u8 c)
{
    if (!sercon.port)
        return;
    /* Like sercon: wait until the transmitter is empty (LSR bits 5 and 6), for a while. */
    for (u32 i = 0; i < 1000000; i++) {
        if ((inb(sercon.port + 5) & 0x60) == 0x60) {
            outb(sercon.port, c);
            return;
        }
    }
}

static void out_str(const char *s)
{
    while (*s)
        out((u8)*s++);
}

static void term_goto(u8 row, u8 col)
{
    row++;
    col++;
    out(ESC);
    out('[');
    out((u8)('0' + row / 10));
    out((u8)('0' + row % 10));
    out(';');
    out((u8)('0' + col / 10));
    out((u8)('0' + col % 10));
    out('H');
}

static void term_attr(u8 attr)
{
    if (attr == sercon.attr_last)
        return;
    sercon.attr_last = attr;
    u8 fg = attr & 7, bg = attr >> 4 & 7;
    out(ESC);
    out('[');
    out('0');
    if (fg != 7) {
        out(';');
        out('3');
        out(ansi_colour[fg]);
    }
    if (bg != 0) {
        out(';');
        out('4');
        out(ansi_colour[bg]);
    }
    if (attr & 8) {
        out(';');
        out('1');
    }
    out('m');
}

static void out_glyph(u8 c)
{
    u16 u = c < 0x20 ? cp437_low[c] : c == 0x7F ? 0x2302 : c >= 0x80 ? cp437_high[c - 0x80] : c;
    if (u < 0x7F) {
        out((u8)u);
    } else if (u < 0x7FF) {
        out((u8)(0xC0 | u >> 6));
        out((u8)(0x80 | (u & 0x3F)));
    } else {
        out((u8)(0xE0 | u >> 12));
        out((u8)(0x80 | (u >> 6 & 0x3F)));
        out((u8)(0x80 | (u & 0x3F)));
    }
}

/* Bring the terminal's cursor to the BIOS cursor. */
static void sync_cursor(void)
{
    u8 row = cur_row(), col = cur_col();
    if (row == sercon.row_last && col == sercon.col_last)
        return;
    if (col == 0 && sercon.row_last <= row) {
        if (sercon.col_last != 0) {
            out('\r');
            sercon.col_last = 0;
        }
        while (sercon.row_last < row) {
            out('\n');
            sercon.row_last++;
        }
        return;
    }
    term_goto(row, col);
    sercon.row_last = row;
    sercon.col_last = col;
}

/* Send the character held back, then bring the terminal's cursor to the BIOS cursor. */
void video_flush(void)
{
    if (sercon.chr) {
        term_attr(sercon.attr);
        out_glyph(sercon.chr);
        sercon.col_last++;
    }
    sync_cursor();
    sercon.attr = 0x07;
    sercon.chr = 0;
}

/* Hold c back at the cursor, sending what was held first if the cursor moved since. */
static void hold(u8 c)
{
    if (cur_row() != sercon.row_last || cur_col() != sercon.col_last)
        video_flush();
    sercon.chr = c;
}

/* -- cursor movement of teletype ----------------------------------------------------- */
static void cursor_down(void)
{
    u8 row = (u8)(cur_row() + 1);
    if (row >= rows()) {
        row = (u8)(rows() - 1);
        if (sercon.row_last > 0)
            sercon.row_last--;   /* the terminal scrolls with us */
        text_scroll(0, 0, row, (u8)(cols() - 1), 1, 0x07, 0);
    }
    set_cursor(row, cur_col());
}

static void cursor_advance(void)
{
    u8 col = (u8)(cur_col() + 1);
    if (col >= cols()) {
        set_cursor(cur_row(), 0);
        cursor_down();
    } else {
        set_cursor(cur_row(), col);
    }
}

/* Teletype: BEL, BS, CR and LF act, anything else is written and the cursor advances.
 * attr < 0 keeps the attribute (AH=0Eh), else the character gets it (AH=13h). */
static void teletype(u8 c, int attr)
{
    switch (c) {
    case 0x07:
        out(0x07);
        break;
    case 0x08:
        video_flush();
        if (cur_col() > 0) {
            out(0x08);
            set_cursor(cur_row(), (u8)(cur_col() - 1));
            sercon.row_last = cur_row();
            sercon.col_last = cur_col();
        }
        break;
    case '\r':
        set_cursor(cur_row(), 0);
        break;
    case '\n':
        cursor_down();
        break;
    default:
        text_put(cur_row(), cur_col(), c, attr);
        hold(c);
        if (attr >= 0)
            sercon.attr = (u8)attr;
        cursor_advance();
    }
}

/* -- the services -------------------------------------------------------------------- */
static void set_mode(struct bregs *r)
{
    u8 mode = AL(r) & 0x7F;
    int clear = !(AL(r) & 0x80);
    u8 width = (mode <= 1 || mode == 4 || mode == 5) ? 40 : 80;
    set_cursor(0, 0);
    BDA8(BDA_VIDEO_MODE) = mode;
    BDA16(BDA_VIDEO_COLS) = width;
    BDA16(BDA_VIDEO_PAGE_SIZE) = (u16)(width * 25 * 2);
    BDA8(BDA_VIDEO_ROWS) = 24;
    BDA16(BDA_CURSOR_SHAPE) = 0x0007;
    set_al(r, 0x30);
    sercon.on = mode <= 7;
    sercon.col_last = sercon.row_last = sercon.attr_last = 0;
    out(ESC);
    out('c');
    out_str("\x1b[?7l");
    if (clear) {
        out_str("\x1b[2J");
        text_scroll(0, 0, 24, (u8)(width - 1), 0, 0x07, 0);
    }
}

/* AH=09h (with_attr) and AH=0Ah: CX times the character AL at the cursor, which stays. */
static void write_chars(struct bregs *r, int with_attr)
{
    u8 c = AL(r), attr = BL(r);
    u16 count = CX(r);
    u32 cell = cur_row() * cols() + cur_col();
    for (u32 i = 0; i < count && cell + i < (u32)rows() * cols(); i++)
        text_put((u8)((cell + i) / cols()), (u8)((cell + i) % cols()), c, with_attr ? attr : -1);
    if (count == 1) {
        hold(c);
        if (with_attr)
            sercon.attr = attr;
    } else if (c == ' ' && count == rows() * cols() && cell == 0) {
        video_flush();
        if (with_attr)
            term_attr(attr);
        out_str("\x1b[2J");
    } else {
        video_flush();
        if (with_attr)
            term_attr(attr);
        while (count--)
            out_glyph(c);
        term_goto(cur_row(), cur_col());
    }
}

/* AH=13h: CX characters at ES:BP (each followed by its attribute when AL bit 1, else all
 * in attribute BL) written as teletype from row DH, column DL; the cursor stays there
 * unless AL bit 0. */
static void write_string(struct bregs *r)
{
    u16 cursor = BDA16(BDA_CURSOR);
    const u8 *s = far(r->es, (u16)r->ebp);
    u8 attr = BL(r);
    set_cursor(DH(r), DL(r));
    for (u16 n = CX(r); n; n--) {
        u8 c = *s++;
        if (AL(r) & 2)
            attr = *s++;
        teletype(c, attr);
    }
    if (!(AL(r) & 1))
        BDA16(BDA_CURSOR) = cursor;
}

/* AH=06h (up) and 07h (down): scroll the window CH,CL-DH,DL by AL lines (0: blank it). */
static void scroll(struct bregs *r, int down)
{
    text_scroll(CH(r), CL(r), DH(r), DL(r), AL(r), BH(r), down);
    if (down)
        return;   /* sercon leaves AH=07h to the VGA BIOS */
    video_flush();
    if (AL(r) == 0) {
        if (CX(r) == 0 && DH(r) == rows() - 1 && DL(r) == cols() - 1) {
            term_attr(BH(r));
            out_str("\x1b[2J");
        }
    } else {
        out('\r');
        out('\n');
    }
}

void handle_10(struct bregs *r)
{
    if (!sercon.on && AX(r) > 0x0007)
        return;   /* graphics mode: only a text mode set is answered */
    switch (AH(r)) {
    case 0x00:
        set_mode(r);
        break;
    case 0x01:
        BDA16(BDA_CURSOR_SHAPE) = CX(r);
        break;
    case 0x02:
        set_cursor(DH(r), DL(r));
        break;
    case 0x03:
        set_cx(r, BDA16(BDA_CURSOR_SHAPE));
        set_dx(r, BDA16(BDA_CURSOR));
        break;
    case 0x06:
    case 0x07:
        scroll(r, AH(r) == 0x07);
        break;
    case 0x08:
        if (text_here())
            set_ax(r, TEXT[cur_row() * cols() + cur_col()]);
        else
            set_ax(r, 0x0720);
        break;
    case 0x09:
    case 0x0A:
        write_chars(r, AH(r) == 0x09);
        break;
    case 0x0E:
        teletype(AL(r), -1);
        break;
    case 0x0F:
        set_ax(r, (u16)(cols() << 8 | BDA8(BDA_VIDEO_MODE) | (BDA8(BDA_VIDEO_CTL) & 0x80)));
        r->ebx = (r->ebx & 0xFFFF00FFu) | (u32)BDA8(BDA_VIDEO_PAGE) << 8;
        break;
    case 0x13:
        write_string(r);
        break;
    case 0x1A:
        if (AL(r) == 0x00 && text_here()) {   /* display combination: VGA, colour */
            set_al(r, 0x1A);
            set_bx(r, 0x0008);
        }
        break;
    case 0x4F:
        set_ax(r, 0x0100);   /* VBE: call failed */
        break;
    default:
        break;
    }
}

/* INT 08h (entry.S): a timer tick found something held back. */
void video_tick(struct bregs *r)
{
    (void)r;
    video_flush();
}

/* The BIOS's own messages: teletype, sent at once. */
void video_putc(char c)
{
    teletype((u8)c, -1);
    video_flush();
}

/* POST: the console on COM1 (when there is one), nothing sent yet, the terminal's
 * attributes taken to be the default ones. */
void video_init(void)
{
    sercon.port = BDA16(BDA_COM);
    sercon.attr = sercon.attr_last = 0x07;
    sercon.on = 1;
}
