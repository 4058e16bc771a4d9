/*
 * Start of the second stage and bios_call(struct regs *): load the registers from the
 * structure, raise the interrupt it names, store the registers and FLAGS back.
 * Called from gcc -m16 code: 32-bit calls (calll/retl), arguments on the stack.
 * struct regs: eax 0, ebx 4, ecx 8, edx 12, esi 16, edi 20, ebp 24, ds 28, es 30,
 * flags 32, vector 34.
 */
        .code16
        .section .text.start, "ax"
        .globl _start
_start:
        cli
        xorw    %ax, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movl    $0x7C00, %esp
        sti
        movzbl  %dl, %eax
        pushl   %eax
        calll   stage2_main
1:      hlt
        jmp     1b

        .text
        .globl bios_call
bios_call:
        pushal
        pushw   %ds
        pushw   %es
        movl    40(%esp), %eax
        movw    %ax, cur
        movw    %ax, %bx
        movb    34(%bx), %al
.irp vec, 0x10, 0x11, 0x12, 0x13, 0x15, 0x16, 0x1A
        cmpb    $\vec, %al
        jne     1f
        call    load_regs
        int     $\vec
        call    store_regs
        jmp     9f
1:
.endr
9:      popw    %es
        popw    %ds
        popal
        retl

load_regs:
        movw    cur, %bx
        movl    0(%bx), %eax
        movl    8(%bx), %ecx
        movl    12(%bx), %edx
        movl    16(%bx), %esi
        movl    20(%bx), %edi
        movl    24(%bx), %ebp
        movw    30(%bx), %es
        pushw   28(%bx)
        movl    4(%bx), %ebx
        popw    %ds
        ret

store_regs:
        pushfw
        pushw   %ds
        pushl   %ebx
        pushw   $0
        popw    %ds
        movw    cur, %bx
        movl    %eax, 0(%bx)
        movl    %ecx, 8(%bx)
        movl    %edx, 12(%bx)
        movl    %esi, 16(%bx)
        movl    %edi, 20(%bx)
        movl    %ebp, 24(%bx)
        movw    %es, 30(%bx)
        popl    %eax
        movl    %eax, 4(%bx)
        popw    %ax
        movw    %ax, 28(%bx)
        popw    %ax
        movw    %ax, 32(%bx)
        ret

        .data
cur:    .word   0
