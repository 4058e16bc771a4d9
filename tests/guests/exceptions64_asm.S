/*
 * 64-bit code for exceptions64: faulting snippets (called through call64), ring-3
 * programs and the SYSCALL target.
 * Intel SDM vol. 2B SYSCALL: RCX <- RIP of the next instruction, R11 <- RFLAGS,
 * RFLAGS &= ~IA32_FMASK, CS <- STAR[47:32], SS <- STAR[47:32] + 8, RIP <- LSTAR, RSP
 * unchanged; SYSRET (REX.W): RIP <- RCX, RFLAGS <- R11, CS <- STAR[63:48] + 16 | 3,
 * SS <- STAR[63:48] + 8 | 3.
 * Each snippet stores the faulting RIP in fault_rip, the RSP at the fault in fault_rsp
 * and where to resume in resume_rip (the C handler moves the frame's RIP there).
 */
    .code64
    .section .text

.macro ARM_FAULT
    lea 0f(%rip), %rax
    mov %rax, fault_rip(%rip)
    lea 1f(%rip), %rax
    mov %rax, resume_rip(%rip)
    mov %rsp, fault_rsp(%rip)
.endm

    .globl t64_de, t64_ud, t64_gp_sel, t64_noncanonical, t64_pf_write, t64_pf_read
    .globl t64_pf_high, t64_int3
t64_de:
    ARM_FAULT
    mov $1, %eax
    xor %edx, %edx
    xor %ecx, %ecx
0:  div %rcx
1:  ret

t64_ud:
    ARM_FAULT
0:  ud2
1:  ret

/* rdi = selector to load into DS */
t64_gp_sel:
    ARM_FAULT
0:  mov %edi, %ds
1:  ret

t64_noncanonical:
    ARM_FAULT
    movabs $0x0000800000000000, %rdx
0:  mov (%rdx), %rax
1:  ret

/* rdi = address */
t64_pf_write:
    ARM_FAULT
0:  movl $0x5a5a5a5a, (%rdi)
1:  ret

t64_pf_read:
    ARM_FAULT
0:  mov (%rdi), %eax
1:  ret

/* Canonical but unmapped, above 4 GiB: CR2 must hold all 64 bits. */
t64_pf_high:
    ARM_FAULT
    movabs $0x000000123456789A, %rdx
0:  mov (%rdx), %rax
1:  ret

t64_int3:
    lea 0f(%rip), %rax
    mov %rax, fault_rip(%rip)
    lea 1f(%rip), %rax
    mov %rax, after_rip(%rip)
0:  int3
1:  ret

/* ---- ring 3 ---- */

/* Sets DF and AC (both in FMASK), SYSCALLs, records state after SYSRET. */
    .globl user64_syscall_test
user64_syscall_test:
    mov %rsp, u_rsp_before(%rip)
    pushfq
    orq $0x40400, (%rsp)
    popfq
    pushfq
    pop %rax
    mov %rax, u_rflags_before(%rip)
    lea 1f(%rip), %rcx
    mov %rcx, u_expected_rip(%rip)
    syscall
1:  pushfq
    pop %rax
    mov %rax, u_rflags_after(%rip)
    xor %eax, %eax
    mov %cs, %ax
    mov %rax, u_cs_after(%rip)
    mov %ss, %ax
    mov %rax, u_ss_after(%rip)
    mov %rsp, u_rsp_after(%rip)
    pushq $0x002
    popfq
    int $0x81

/* Reads a supervisor-only page from ring 3: #PF with P and U set. */
    .globl user64_pf_test
user64_pf_test:
    ARM_FAULT
0:  mov 0x600000, %eax
1:  int $0x81

    .globl syscall_entry
syscall_entry:
    mov %rsp, sc_rsp(%rip)
    pushfq                      /* first: the XOR below would change the flags */
    pop %rax
    mov %rax, sc_rflags(%rip)
    mov %rcx, sc_rcx(%rip)
    mov %r11, sc_r11(%rip)
    xor %eax, %eax
    mov %cs, %ax
    mov %rax, sc_cs(%rip)
    mov %ss, %ax
    mov %rax, sc_ss(%rip)
    incq sc_calls(%rip)
    sysretq

    .section .bss
    .align 8
    .globl fault_rip, resume_rip, fault_rsp, after_rip
    .globl u_rsp_before, u_rsp_after, u_rflags_before, u_rflags_after, u_expected_rip
    .globl u_cs_after, u_ss_after
    .globl sc_rcx, sc_r11, sc_rsp, sc_cs, sc_ss, sc_rflags, sc_calls
fault_rip:       .skip 8
resume_rip:      .skip 8
fault_rsp:       .skip 8
after_rip:       .skip 8
u_rsp_before:    .skip 8
u_rsp_after:     .skip 8
u_rflags_before: .skip 8
u_rflags_after:  .skip 8
u_expected_rip:  .skip 8
u_cs_after:      .skip 8
u_ss_after:      .skip 8
sc_rcx:          .skip 8
sc_r11:          .skip 8
sc_rsp:          .skip 8
sc_cs:           .skip 8
sc_ss:           .skip 8
sc_rflags:       .skip 8
sc_calls:        .skip 8

    .section .note.GNU-stack, "", @progbits
