/*
 * Ring-3 programs and the SYSENTER target for exceptions32.
 * Intel SDM vol. 2B SYSENTER/SYSEXIT: CS = IA32_SYSENTER_CS, SS = CS + 8,
 * ESP = IA32_SYSENTER_ESP, EIP = IA32_SYSENTER_EIP; SYSEXIT loads CS = SYSENTER_CS + 16
 * (RPL 3), SS = SYSENTER_CS + 24 (RPL 3), EIP = EDX, ESP = ECX.
 */
    .code32
    .section .text

/* int 0x80 through a DPL3 gate, IRET back, then CLI at IOPL 0 (#GP(0), skipped). */
    .globl user_int80_test, user_cli_insn
user_int80_test:
    mov %esp, u_esp_before
    int $0x80
    movl $1, u_back
    xor %eax, %eax
    mov %cs, %ax
    mov %eax, u_cs
user_cli_insn:
    cli
    movl $1, u_after_cli
    int $0x81

    .globl user_sysenter_test
user_sysenter_test:
    mov %esp, u_esp_before
    mov %esp, %ecx
    mov $1f, %edx
    sysenter
1:  xor %eax, %eax
    mov %cs, %ax
    mov %eax, u_cs
    mov %ss, %ax
    mov %eax, u_ss
    mov %esp, u_esp_after
    int $0x81

    .globl sysenter_entry
sysenter_entry:
    mov %esp, se_esp
    xor %eax, %eax
    mov %cs, %ax
    mov %eax, se_cs
    mov %ss, %ax
    mov %eax, se_ss
    incl se_calls
    sysexit

    .section .bss
    .align 4
    .globl u_esp_before, u_esp_after, u_back, u_cs, u_ss, u_after_cli
    .globl se_esp, se_cs, se_ss, se_calls
u_esp_before: .skip 4
u_esp_after:  .skip 4
u_back:       .skip 4
u_cs:         .skip 4
u_ss:         .skip 4
u_after_cli:  .skip 4
se_esp:       .skip 4
se_cs:        .skip 4
se_ss:        .skip 4
se_calls:     .skip 4

    .section .note.GNU-stack, "", @progbits
