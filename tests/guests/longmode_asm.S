/*
 * 64-bit half of the longmode guest, entered through call64().
 * Returns a bit mask in EAX of the checks that passed (see longmode.c).
 */
    .code64
    .section .text

    .globl lm_test64
lm_test64:
    xor %eax, %eax
    /* bit 0: CS is the L=1 segment */
    mov %cs, %dx
    cmp $0x28, %dx
    jne 1f
    or $0x01, %eax
1:  /* bit 1: 64-bit arithmetic -- a carry across bit 31 stays in the register */
    mov $0xFFFFFFFF, %edx
    add $1, %rdx
    movabs $0x100000000, %rcx
    cmp %rcx, %rdx
    jne 1f
    or $0x02, %eax
1:  /* bit 2: a store through 4 GiB + 0x1238 lands in physical 0x400000 + 0x1238 */
    movabs $0x0000000100001238, %rsi
    movabs $0x1122334455667788, %rdx
    mov %rdx, (%rsi)
    mov 0x401238, %rcx
    cmp %rdx, %rcx
    jne 1f
    or $0x04, %eax
1:  /* bit 3: and the reverse direction */
    movabs $0x0A0B0C0D0E0F1011, %rdx
    mov %rdx, 0x401240
    movabs $0x0000000100001240, %rsi
    cmp (%rsi), %rdx
    jne 1f
    or $0x08, %eax
1:  /* bit 4: RIP-relative addressing reads this code's own bytes */
    lea lm_test64(%rip), %rdx
    mov $lm_test64, %ecx
    cmp %rcx, %rdx
    jne 1f
    or $0x10, %eax
1:  ret

    .section .note.GNU-stack, "", @progbits
