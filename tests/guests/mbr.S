/*
 * A 512-byte master boot record for the firmware tests: the BIOS loads it at 0:7C00
 * and jumps to it in real mode with DL = the boot drive. It prints its verdict on COM1
 * (polled, as a BIOS-less guest would) with the boot drive number, then ends pyemu
 * through isa-debug-exit. The verdict proves the firmware found the disk, read sector 0
 * and handed over as the PC boot protocol says (signature 55AAh checked by the BIOS).
 */
        .code16
        .text
        .globl _start
_start:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        mov     %ax, %ss
        mov     $0x7C00, %sp
        mov     %dl, boot_drive
        mov     $msg, %si
        call    puts
        mov     boot_drive, %al
        call    puthex
        mov     $crlf, %si
        call    puts
        xor     %al, %al
        out     %al, $0xF4              /* isa-debug-exit: status 1 */
1:      hlt
        jmp     1b

putc:   push    %ax
        mov     $0x3FD, %dx
2:      in      %dx, %al
        test    $0x20, %al
        jz      2b
        pop     %ax
        mov     $0x3F8, %dx
        out     %al, %dx
        ret

puts:   lodsb
        test    %al, %al
        jz      3f
        call    putc
        jmp     puts
3:      ret

puthex: push    %ax
        shr     $4, %al
        call    nibble
        pop     %ax
nibble: and     $0x0F, %al
        add     $'0', %al
        cmp     $'9', %al
        jbe     putc
        add     $7, %al
        jmp     putc

msg:    .asciz  "PASS mbr: booted by the BIOS from drive "
crlf:   .asciz  "\r\n"
boot_drive: .byte 0

        .org    510
        .word   0xAA55
