/*
 * IA-32e mode entry/exit and 64-bit interrupt stubs.
 *
 * Intel SDM vol. 3A 9.8.5 (initializing IA-32e mode: CR4.PAE, CR3, EFER.LME, then
 * CR0.PG; the CPU is then in compatibility mode until a far transfer to an L=1 code
 * segment) and 9.8.5.4 (leaving: from compatibility mode clear CR0.PG, branch, clear
 * EFER.LME).  C code is compiled for i386 and runs in compatibility mode; call64() and
 * the interrupt stubs hop to the 64-bit code segment 0x28 and back through LRETQ.
 */
    .section .text

    .code32
    .globl lm_enter
lm_enter:
    mov %cr4, %eax
    or $0x20, %eax              /* PAE */
    mov %eax, %cr4
    mov $lm_pml4, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax             /* LME */
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax        /* PG | PE: activates IA-32e (compatibility mode) */
    mov %eax, %cr0
    ljmp $0x28, $1f
    .code64
1:  pushq $0x08
    lea 2f(%rip), %rax          /* ELF32 cannot hold a sign-extended absolute; go PC-relative */
    push %rax
    lretq
    .code32
2:  ret

    .globl lm_leave
lm_leave:
    mov %cr0, %eax
    and $0x7FFFFFFF, %eax
    mov %eax, %cr0              /* EFER.LMA drops with PG */
    jmp 1f
1:  mov $0xC0000080, %ecx
    rdmsr
    and $~0x100, %eax
    wrmsr
    mov %cr4, %eax
    and $~0x20, %eax
    mov %eax, %cr4
    ret

/* uint32_t call64(void *fn, uint32_t arg) -- from compatibility mode */
    .globl call64
call64:
    push %ebp
    push %ebx
    push %esi
    push %edi
    mov 20(%esp), %eax
    mov 24(%esp), %edx
    ljmp $0x28, $1f
    .code64
1:  mov %esp, %esp              /* 32-bit writes zero-extend: RSP = ESP */
    mov %eax, %eax
    mov %edx, %edi
    mov %rsp, %rbp
    and $-16, %rsp
    call *%rax
    mov %rbp, %rsp
    pushq $0x08
    lea 2f(%rip), %rcx
    push %rcx
    lretq
    .code32
2:  pop %edi
    pop %esi
    pop %ebx
    pop %ebp
    ret

    .code64
    .globl lidt64_fn
lidt64_fn:
    lidt (%rdi)
    ret

/*
 * 64-bit stubs: push (error or 0), vector, GPRs, CR2, DS, ES -> struct frame64; switch
 * to compatibility mode; isr64_dispatch(frame) in C; back to 64-bit; IRETQ.
 */
.macro ISR64 n
isr64_\n:
    .if (\n == 8) || ((\n >= 10) && (\n <= 14)) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
    .else
    pushq $0
    .endif
    pushq $\n
    jmp isr64_common
.endm

.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,128
    ISR64 \n
.endr

isr64_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %cr2, %rax
    push %rax
    mov %ds, %eax
    push %rax
    mov %es, %eax
    push %rax
    /* A ring-3 interrupt leaves SS null; compatibility-mode code needs a real one. */
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    cld
    mov %rsp, %rbx
    pushq $0x08
    lea 1f(%rip), %rax
    push %rax
    lretq
    .code32
1:  push %ebx
    call isr64_dispatch
    add $4, %esp
    ljmp $0x28, $2f
    .code64
2:  mov %ebx, %esp
    pop %rax
    mov %eax, %es
    pop %rax
    mov %eax, %ds
    pop %rax                    /* cr2 */
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    iretq

/* void enter_user64(void *entry, uint32_t user_rsp) -- from compatibility mode */
    .code32
    .globl enter_user64
enter_user64:
    push %ebp
    push %ebx
    push %esi
    push %edi
    mov 20(%esp), %eax
    mov 24(%esp), %edx
    mov %esp, user64_saved_esp
    ljmp $0x28, $1f
    .code64
1:  mov %eax, %eax
    mov %edx, %edx
    pushq $0x3B                 /* SS */
    push %rdx                   /* RSP */
    pushq $0x002                /* RFLAGS: IF=0, IOPL=0 */
    pushq $0x43                 /* CS */
    push %rax                   /* RIP */
    iretq

/* INT 0x81 from ring 3: drop the TSS-stack frame, return from enter_user64(). */
    .globl isr64_user_return
isr64_user_return:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov user64_saved_esp(%rip), %esp
    pushq $0x08
    lea 1f(%rip), %rax
    push %rax
    lretq
    .code32
1:  pop %edi
    pop %esi
    pop %ebx
    pop %ebp
    ret

    .section .rodata
    .align 4
    .globl isr64_stubs
isr64_stubs:
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,128
    .long isr64_\n
.endr

    .section .bss
    .align 4
user64_saved_esp:
    .skip 4

    .section .note.GNU-stack, "", @progbits
