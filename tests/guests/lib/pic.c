/*
 * 8259A pair as wired on the PC: master 0x20/0x21, slave 0xA0/0xA1 on master IR2.
 * Intel 8259A datasheet: ICW1 (0x11: edge, cascade, ICW4 needed), ICW2 vector base,
 * ICW3 cascade wiring, ICW4 (0x01: 8086 mode, normal EOI); OCW2 0x20 non-specific EOI;
 * OCW3 0x0A / 0x0B selects IRR / ISR for the next read of the command port.
 */
#include "guest.h"

static uint8_t mask_master = 0xFF, mask_slave = 0xFF;

static void write_masks(void)
{
    outb(0x21, mask_master);
    outb(0xA1, mask_slave);
}

void pic_init(void)
{
    outb(0x20, 0x11);
    io_wait();
    outb(0xA0, 0x11);
    io_wait();
    outb(0x21, PIC_VEC_BASE);
    io_wait();
    outb(0xA1, PIC_VEC_BASE + 8);
    io_wait();
    outb(0x21, 0x04); /* slave on IR2 */
    io_wait();
    outb(0xA1, 0x02); /* slave identity 2 */
    io_wait();
    outb(0x21, 0x01);
    io_wait();
    outb(0xA1, 0x01);
    io_wait();
    mask_master = 0xFB; /* everything masked except the cascade input */
    mask_slave = 0xFF;
    write_masks();
}

void pic_unmask(int irq)
{
    if (irq < 8)
        mask_master &= (uint8_t)~(1u << irq);
    else
        mask_slave &= (uint8_t)~(1u << (irq - 8));
    write_masks();
}

void pic_mask(int irq)
{
    if (irq < 8)
        mask_master |= (uint8_t)(1u << irq);
    else
        mask_slave |= (uint8_t)(1u << (irq - 8));
    write_masks();
}

void pic_eoi(int irq)
{
    if (irq >= 8)
        outb(0xA0, 0x20);
    outb(0x20, 0x20);
}

static uint16_t read_pair(uint8_t ocw3)
{
    outb(0x20, ocw3);
    outb(0xA0, ocw3);
    return (uint16_t)(inb(0x20) | (inb(0xA0) << 8));
}

uint16_t pic_read_irr(void) { return read_pair(0x0A); }
uint16_t pic_read_isr(void) { return read_pair(0x0B); }
