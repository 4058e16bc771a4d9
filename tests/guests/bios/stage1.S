/*
 * Boot sector of the BIOS services test disk: loaded by the BIOS at 0:7C00 with DL = the
 * boot drive. From a disk it checks the EDD extensions (INT 13h AH=41h) and loads the
 * second stage from LBA 1 to 0:8000 with an extended read (AH=42h); from a CD (DL >= E0h)
 * the El Torito boot image already holds it at 0:8000 (this sector, a pad sector, then the
 * second stage). Bytes 446-509 are the partition table mkdisk.py fills in.
 */
#define STAGE2_SECTORS 48
        .code16
        .text
        .globl _start
_start:
        ljmp    $0, $1f                 /* a CD boots us at 07C0:0000 */
1:      cli
        xorw    %ax, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    $0x7C00, %sp
        sti
        movb    %dl, drive
        movw    $hello, %si
        call    print
        cmpb    $0xE0, %dl
        jae     2f
        movb    $0x41, %ah
        movw    $0x55AA, %bx
        int     $0x13
        movw    $no_edd, %si
        jc      fail
        cmpw    $0xAA55, %bx
        jne     fail
        movw    $dap, %si
        movb    $0x42, %ah
        movb    drive, %dl
        int     $0x13
        movw    $read_failed, %si
        jc      fail
2:      movb    drive, %dl
        ljmp    $0, $0x8000

fail:   call    print
        movb    $1, %al
        outb    %al, $0xF4              /* isa-debug-exit: status 3 */
3:      hlt
        jmp     3b

print:  lodsb
        testb   %al, %al
        jz      4f
        movb    $0x0E, %ah
        movw    $0x0007, %bx
        int     $0x10
        jmp     print
4:      ret

dap:    .byte   0x10, 0
        .word   STAGE2_SECTORS
        .word   0x8000, 0
        .quad   1
drive:  .byte   0
hello:  .asciz  "stage1: running\r\n"
no_edd: .asciz  "FAIL stage1: no INT 13h extensions\r\n"
read_failed: .asciz "FAIL stage1: INT 13h AH=42h could not load stage 2\r\n"

        .org    446
        .fill   64, 1, 0
        .word   0xAA55
