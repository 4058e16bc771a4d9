/*
 * Benchmark guest: a 10-instruction compute loop, run ITERATIONS times while the PIT
 * interrupts at 250 Hz (as a Linux kernel with HZ=250 would), then exit through
 * isa-debug-exit. bench/cpu.py runs the same loop on a bare unicorn engine.
 */
        .include "multiboot32.inc"
        .set PIT_DIVISOR, 4773              /* 1193182 Hz / 250 */

        .text
        .code32
        .globl _start, compute_loop, compute_end
_start:
        MB32_START stack_top
        mov     $tick, %eax                 /* IDT gate 0x20 -> tick */
        mov     %ax, idt + 0x20 * 8
        movw    $0x08, idt + 0x20 * 8 + 2
        movw    $0x8E00, idt + 0x20 * 8 + 4
        shr     $16, %eax
        mov     %ax, idt + 0x20 * 8 + 6
        lidt    idt_desc
        mov     $0x11, %al                  /* PICs: vectors 0x20/0x28, only IRQ0 open */
        out     %al, $0x20
        out     %al, $0xA0
        mov     $0x20, %al
        out     %al, $0x21
        mov     $0x28, %al
        out     %al, $0xA1
        mov     $0x04, %al
        out     %al, $0x21
        mov     $0x02, %al
        out     %al, $0xA1
        mov     $0x01, %al
        out     %al, $0x21
        out     %al, $0xA1
        mov     $0xFE, %al
        out     %al, $0x21
        mov     $0xFF, %al
        out     %al, $0xA1
        mov     $0x34, %al
        out     %al, $0x43
        mov     $PIT_DIVISOR & 0xFF, %al
        out     %al, $0x40
        mov     $PIT_DIVISOR >> 8, %al
        out     %al, $0x40
        mov     iterations, %ecx
        xor     %eax, %eax
        xor     %ebx, %ebx
        xor     %edx, %edx
        mov     $1, %esi
        xor     %edi, %edi
        xor     %ebp, %ebp
        sti
compute_loop:
        add     %esi, %eax
        xor     %eax, %ebx
        rol     $3, %ebx
        lea     1(%ebx,%eax), %edx
        sub     %edx, %esi
        inc     %edi
        and     $0xffff, %edx
        or      %edx, %ebp
        dec     %ecx
        jnz     compute_loop
compute_end:
        cli
        xor     %eax, %eax
        out     %al, $0xF4                  /* isa-debug-exit: status 1 */
2:      hlt
        jmp     2b

tick:   push    %eax
        incl    ticks
        mov     $0x20, %al
        out     %al, $0x20
        pop     %eax
        iret

        /* data on a page of its own, as a kernel keeps it: a store into a page that
         * holds code drops the page's translations (the tick handler's count would
         * retranslate the loop 250 times a second, in QEMU as in pyemu) */
        .data
        .balign 4096
        .globl iterations, ticks
iterations: .long 30000000
ticks:  .long   0
        MB32_GDT
idt_desc:
        .word   48 * 8 - 1
        .long   idt

        .bss
        .align 8
idt:    .space  48 * 8
        .space  4096
stack_top:
