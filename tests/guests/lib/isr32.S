/*
 * 32-bit interrupt stubs: vectors 0-47 and 0x80 push a uniform frame (struct frame32 in
 * guest.h) and call isr32_dispatch(frame).  The CPU pushes an error code only for
 * vectors 8, 10-14, 17, 21, 29 and 30 (Intel SDM vol. 3A table 6-1); the others push 0.
 * Also: enter_user32() and the INT 0x81 stub that returns from it.
 */
    .code32
    .section .text

.macro ISR n
isr32_\n:
    .if (\n == 8) || ((\n >= 10) && (\n <= 14)) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
    .else
    pushl $0
    .endif
    pushl $\n
    jmp isr32_common
.endm

.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,128
    ISR \n
.endr

isr32_common:
    pusha
    push %ds
    push %es
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    cld
    push %esp
    call isr32_dispatch
    add $4, %esp
    pop %es
    pop %ds
    popa
    add $8, %esp
    iret

    .section .rodata
    .align 4
    .globl isr32_stubs
isr32_stubs:
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,128
    .long isr32_\n
.endr

/* void enter_user32(void (*entry)(void), uint32_t user_esp) */
    .section .text
    .globl enter_user32
enter_user32:
    push %ebp
    push %ebx
    push %esi
    push %edi
    mov 20(%esp), %eax
    mov 24(%esp), %edx
    mov %esp, user_saved_esp
    /* IRET to an outer level nulls data segments whose DPL is below the new CPL. */
    mov $0x23, %ecx
    mov %ecx, %ds
    mov %ecx, %es
    pushl $0x23         /* SS */
    push %edx           /* ESP */
    pushl $0x002        /* EFLAGS: IF=0, IOPL=0 */
    pushl $0x1B         /* CS */
    push %eax           /* EIP */
    iret

/* INT 0x81 from ring 3 lands here on the TSS stack; abandon that frame. */
    .globl isr32_user_return
isr32_user_return:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov user_saved_esp, %esp
    pop %edi
    pop %esi
    pop %ebx
    pop %ebp
    ret

    .section .bss
    .align 4
user_saved_esp:
    .skip 4

    .section .note.GNU-stack, "", @progbits
