/*
 * mbstate's entry: the Multiboot header and an entry point that keeps the machine as the
 * loader left it.  Unlike lib/start.S it loads no GDT and no segment register: it
 * records every register first (moves only, so no flag changes before PUSHF), then
 * switches to its own stack and calls main with the loader's GDT, CS, DS..SS in force.
 *
 * Multiboot 0.6.96 section 3.1.1: header in the first 8192 bytes, 4-byte aligned; flags
 * bit 0 (page-align modules) and bit 1 (memory information).  Section 3.2: EAX =
 * 0x2BADB002, EBX = the information structure; CS a 32-bit read/execute segment and
 * DS/ES/FS/GS/SS 32-bit read/write segments, all with offset 0 and limit 0xFFFFFFFF.
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
    mov %eax, entry_gpr + 0
    mov %ebx, entry_gpr + 4
    mov %ecx, entry_gpr + 8
    mov %edx, entry_gpr + 12
    mov %esi, entry_gpr + 16
    mov %edi, entry_gpr + 20
    mov %ebp, entry_gpr + 24
    mov %esp, entry_gpr + 28
    movw %cs, entry_sel + 0
    movw %ds, entry_sel + 2
    movw %es, entry_sel + 4
    movw %fs, entry_sel + 6
    movw %gs, entry_sel + 8
    movw %ss, entry_sel + 10
    sldt entry_sel + 12
    str entry_sel + 14
    sgdt entry_gdtr
    sidt entry_idtr
    mov %cr0, %eax
    mov %eax, entry_cr0
    mov %cr4, %eax
    mov %eax, entry_cr4
    mov $stack_top, %esp
    pushfl
    popl entry_eflags
    cld
    mov entry_gpr + 0, %eax
    mov %eax, mb_magic
    mov entry_gpr + 4, %eax
    mov %eax, mb_info
    call serial_init
    call main
    xor %edx, %edx
    test %eax, %eax
    sete %dl
    push %edx
    call exit_verdict
1:  cli
    hlt
    jmp 1b

    .section .data
    .align 4
    .globl entry_gpr, entry_sel, entry_gdtr, entry_idtr, entry_cr0, entry_cr4, entry_eflags
    .globl mb_magic, mb_info
entry_gpr:    .skip 32          /* EAX ECX... in the order of struct entry_state */
entry_sel:    .skip 16          /* CS DS ES FS GS SS LDTR TR */
entry_gdtr:   .skip 8           /* limit (16 bits), base (32 bits) */
entry_idtr:   .skip 8
entry_cr0:    .long 0
entry_cr4:    .long 0
entry_eflags: .long 0
mb_magic:     .long 0
mb_info:      .long 0

    .section .bss
    .align 16
    .skip 16384
    .globl stack_top
stack_top:

    .section .note.GNU-stack, "", @progbits
