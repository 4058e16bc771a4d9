/*
 * Multiboot v1 header and entry point.
 *
 * Multiboot 0.6.96 section 3.1.1: header in the first 8192 bytes, 4-byte aligned;
 * flags bit 0 (page-align modules) and bit 1 (memory info); bit 16 (a.out kludge) is
 * clear so the loader uses the ELF program headers.  Section 3.2: on entry EAX holds
 * 0x2BADB002, EBX the info structure, GDTR is undefined, so a GDT is loaded before
 * any segment register is touched.
 */
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .section .text
    .code32
    .globl _start
_start:
    cli
    cld
    mov %eax, %esi              /* bootloader magic; EBX (info) is left alone */
    lgdt gdt_desc
    ljmp $0x08, $1f
1:  mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %fs
    mov %eax, %gs
    mov %eax, %ss
    mov $stack_top, %esp
    xor %eax, %eax
    lldt %ax                    /* no LDT: LDT selectors fault with their own error code */
    /* The loader zero-fills bss per the ELF headers; do it again so a re-entry after a
     * machine reset starts from the same state. */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    rep stosb
    mov %esi, mb_magic
    mov %ebx, mb_info
    call serial_init
    call main
    xor %edx, %edx
    test %eax, %eax
    sete %dl
    push %edx
    call exit_verdict
2:  cli
    hlt
    jmp 2b

    .section .data
    .align 16
    .globl gdt
gdt:
    .quad 0                     /* 0x00 null */
    .quad 0x00CF9A000000FFFF    /* 0x08 ring-0 code, 32-bit, flat */
    .quad 0x00CF92000000FFFF    /* 0x10 ring-0 data, flat */
    .quad 0x00CFFA000000FFFF    /* 0x18 ring-3 code, 32-bit, flat */
    .quad 0x00CFF2000000FFFF    /* 0x20 ring-3 data, flat */
    .quad 0x00AF9A000000FFFF    /* 0x28 ring-0 code, 64-bit (L=1, D=0) */
    .quad 0x00CF92000000FFFF    /* 0x30 ring-0 data (SYSCALL SS) */
    .quad 0x00CFF2000000FFFF    /* 0x38 ring-3 data (SYSRET SS) */
    .quad 0x00AFFA000000FFFF    /* 0x40 ring-3 code, 64-bit (SYSRET CS) */
    .quad 0                     /* 0x48 TSS, filled by gdt_set_tss32/64 */
    .quad 0                     /* 0x50 upper half of a 64-bit TSS descriptor */
gdt_end:
    .align 4
    .word 0
gdt_desc:
    .word gdt_end - gdt - 1
    .long gdt

    .globl mb_magic, mb_info
    .align 4
mb_magic: .long 0
mb_info:  .long 0

    .section .bss
    .align 16
    .globl stack_top
stack_bottom:
    .skip 16384
stack_top:

    .section .note.GNU-stack, "", @progbits
