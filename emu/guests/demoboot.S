/*
 * The master boot record of emu/guests/demo.img, which carries the demo guest (demo.S)
 * from sector 1 on. The BIOS loads this sector to 0000:7C00 and enters it in real mode
 * with DL = the boot drive (IBM PC/AT bootstrap convention). It reads the demo to
 * demo_segment:0000 with the BIOS Enhanced Disk Drive services (INT 13h AH=41h, then
 * AH=42h with a disk address packet, EDD 3.0 rev 0.8 sections 7.1 and 7.2), opens the
 * A20 gate (INT 15h AX=2401h), enters 32-bit protected mode with a flat GDT (Intel SDM
 * vol. 3, 10.9.1) and jumps to the demo's _start, which sets up its own GDT, IDT and
 * stack just as it does after a Multiboot loader. On failure it says why through
 * INT 10h AH=0Eh (teletype output) and halts.
 *
 * demo_segment and demo_sectors come from demoimg.ld, which lays out the image.
 */
        .code16
        .section .mbr, "ax"
        .globl mbr
mbr:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     $0x7C00, %sp
        ljmp    $0, $1f                  /* some BIOSes enter at 07C0:0000 */
1:      sti
        mov     %dl, boot_drive
        mov     $0x41, %ah               /* EDD installation check */
        mov     $0x55AA, %bx
        int     $0x13
        mov     $msg_no_edd, %si
        jc      fail
        cmp     $0xAA55, %bx
        jne     fail
        test    $0x01, %cl               /* the fixed disk access subset: AH=42h */
        jz      fail
        mov     $0x42, %ah               /* extended read */
        mov     boot_drive, %dl
        mov     $dap, %si
        int     $0x13
        mov     $msg_read, %si
        jc      fail
        mov     $0x2401, %ax             /* enable the A20 gate */
        int     $0x15
        mov     $msg_a20, %si
        jc      fail
        cli
        lgdt    gdt_desc
        mov     %cr0, %eax
        or      $0x01, %al               /* PE */
        mov     %eax, %cr0
        ljmpl   $0x08, $protected

fail:   lodsb
        test    %al, %al
        jz      halt
        mov     $0x0E, %ah
        mov     $0x0007, %bx             /* page 0, light grey */
        int     $0x10
        jmp     fail
halt:   cli
        hlt
        jmp     halt

        .code32
protected:
        mov     $0x10, %ax               /* the real-mode limits must go before _start */
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     %ax, %fs
        mov     %ax, %gs
        jmp     _start

        .align 4
dap:    .byte   16, 0                    /* packet size, reserved */
        .word   demo_sectors
        .word   0, demo_segment          /* buffer offset, segment */
        .quad   1                        /* first LBA: the sector after this one */

        .align 8
gdt:    .quad   0
        .quad   0x00CF9A000000FFFF       /* 0x08: flat 32-bit code */
        .quad   0x00CF92000000FFFF       /* 0x10: flat 32-bit data */
gdt_desc:
        .word   gdt_desc - gdt - 1
        .long   gdt

boot_drive:     .byte 0
msg_no_edd:     .asciz "\r\ndemo.img: the BIOS has no INT 13h extensions; cannot load the demo\r\n"
msg_read:       .asciz "\r\ndemo.img: INT 13h AH=42h failed to read the demo\r\n"
msg_a20:        .asciz "\r\ndemo.img: INT 15h AX=2401h failed to enable A20\r\n"

        /*
         * One partition over the demo's sectors, type DAh (non-file-system data), CHS
         * on the 16-head, 63-sector geometry the IDE disk reports (demoimg.ld keeps the
         * image within cylinder 0, head 0).
         */
        .org    0x1BE
        .byte   0x80                     /* active */
        .byte   0, 2, 0                  /* first: head 0, sector 2, cylinder 0 */
        .byte   0xDA
        .byte   0
        .byte   demo_last_chs_sector
        .byte   0                        /* last: head 0, cylinder 0 */
        .long   1, demo_sectors          /* first LBA, sector count */
        .org    0x1FE
        .byte   0x55, 0xAA
