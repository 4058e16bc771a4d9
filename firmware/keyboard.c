/*
 * INT 16h AH=0Ah (read keyboard ID) and the 8042 command byte. The rest of INT 16h and
 * the scan code handling of INT 09h are in entry.S.
 *
 * As SeaBIOS does it (src/kbd.c handle_160a, src/hw/ps2port.c): the command byte POST
 * wrote is remembered rather than read back (a read would put it where INT 09h takes
 * scan codes from); for the command the keyboard interrupt and both ports are turned off,
 * what the controller holds is dropped, the keyboard port alone is turned on, the
 * keyboard gets F2h (identify), answers FAh (acknowledge) and its ID: two bytes for a
 * keyboard (ABh then 83h, or 41h as the controller's translation to set 1 turns it),
 * one byte otherwise; then the command byte is restored. BX = second byte << 8 | first,
 * or 0 when the keyboard did not answer.
 */
#include "bios.h"

#define STATUS 0x64
#define DATA 0x60
#define ST_OBF 0x01
#define ST_IBF 0x02
#define ST_AUX 0x20
#define CTR_KBDINT 0x01
#define CTR_AUXINT 0x02
#define CTR_KBDDIS 0x10
#define CTR_AUXDIS 0x20
#define CMD_WRITE_CTR 0x60
#define KBD_IDENTIFY 0xF2
#define KBD_ACK 0xFA
#define KBD_NAK 0xFE
#define POLLS 200000u   /* a bound on waiting, far above what a keyboard needs */

u8 i8042_ctr;

static int wait_write(void)
{
    for (u32 i = 0; i < POLLS; i++) {
        if (!(inb(STATUS) & ST_IBF))
            return 0;
    }
    return -1;
}

static int write_ctr(u8 value)
{
    if (wait_write())
        return -1;
    outb(STATUS, CMD_WRITE_CTR);
    if (wait_write())
        return -1;
    outb(DATA, value);
    return 0;
}

/* The next byte from the keyboard (bytes from the aux port are dropped); with need_ack,
 * only an acknowledge or a resend request counts. -1 on time-out. */
static int receive(int need_ack)
{
    for (u32 i = 0; i < POLLS; i++) {
        u8 status = inb(STATUS);
        if (!(status & ST_OBF))
            continue;
        u8 data = inb(DATA);
        if (status & ST_AUX)
            continue;
        if (!need_ack || data == KBD_ACK || data == KBD_NAK)
            return data;
    }
    return -1;
}

/* ID bytes that mean "a keyboard, one more byte follows" (SeaBIOS's list). */
static int two_byte_id(u8 first)
{
    return first == 0xAB || first == 0xAC || first == 0x2B || first == 0x5D
           || first == 0x60 || first == 0x47;
}

static int keyboard_id(u8 id[2])
{
    u8 off = (u8)((i8042_ctr | CTR_AUXDIS | CTR_KBDDIS) & ~(CTR_KBDINT | CTR_AUXINT));
    if (write_ctr(off))
        return -1;
    for (u32 i = 0; i < 16 && (inb(STATUS) & ST_OBF); i++)
        inb(DATA);
    int ok = -1;
    if (!write_ctr(off & ~CTR_KBDDIS) && !wait_write()) {
        outb(DATA, KBD_IDENTIFY);
        int ack = receive(1), first = ack == KBD_ACK ? receive(0) : -1;
        if (first >= 0) {
            id[0] = (u8)first;
            int second = two_byte_id(id[0]) ? receive(0) : 0;
            if (second >= 0) {
                id[1] = (u8)second;
                ok = 0;
            }
        }
    }
    if (write_ctr(i8042_ctr))
        return -1;
    return ok;
}

/* INT 16h AH=0Ah (entry.S sends only this function here). */
void handle_16(struct bregs *r)
{
    u8 id[2];
    set_bx(r, keyboard_id(id) ? 0 : (u16)(id[1] << 8 | id[0]));
}
