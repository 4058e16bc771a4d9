/*
 * 32-bit IDT: gate format per Intel SDM vol. 3A 6.11 (offset split 15:0 / 31:16,
 * selector, type/attributes byte: P, DPL, 0, type 0xE interrupt / 0xF trap).
 */
#include "guest.h"

extern const uint32_t isr32_stubs[49];

static uint64_t idt32[256] __attribute__((aligned(16)));
static isr32_fn handlers32[256];

static int stub_index(int vec)
{
    if (vec >= 0 && vec < 48)
        return vec;
    return vec == 0x80 ? 48 : -1;
}

uint32_t isr32_stub(int vec)
{
    int i = stub_index(vec);
    return i < 0 ? 0 : isr32_stubs[i];
}

void idt32_set_gate(int vec, uint32_t handler, uint8_t type_attr)
{
    uint64_t g = handler & 0xFFFF;
    g |= (uint64_t)SEL_CODE32 << 16;
    g |= (uint64_t)type_attr << 40;
    g |= (uint64_t)(handler >> 16) << 48;
    idt32[vec] = g;
}

void idt32_set_present(int vec, int present)
{
    const uint64_t p = 1ull << 47;
    idt32[vec] = present ? idt32[vec] | p : idt32[vec] & ~p;
}

void idt32_load(void)
{
    struct {
        uint16_t limit;
        uint32_t base;
    } __attribute__((packed)) desc = {sizeof(idt32) - 1, (uint32_t)idt32};
    __asm__ volatile("lidt %0" ::"m"(desc));
}

void idt32_init(void)
{
    for (int v = 0; v < 256; v++) {
        uint32_t stub = isr32_stub(v);
        if (stub)
            idt32_set_gate(v, stub, GATE_INT);
    }
    idt32_set_gate(0x81, (uint32_t)isr32_user_return, GATE_INT_U);
    idt32_load();
}

void isr32_register(int vec, isr32_fn fn) { handlers32[vec & 0xFF] = fn; }

void isr32_dispatch(struct frame32 *f)
{
    isr32_fn fn = handlers32[f->vector & 0xFF];
    if (fn) {
        fn(f);
        return;
    }
    guest_fail("unexpected vector %u error %x at %x:%08x", f->vector, f->error, f->cs, f->eip);
}
