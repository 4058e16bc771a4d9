/*
 * pyemu BIOS, real-mode part: reset vector, POST start (shadow RAM), the call32 thunk
 * into the C part, interrupt entry points and the services simple enough for assembly
 * (INT 08h/09h/10h/11h/12h/16h and INT 15h AH=86h).
 *
 * Section .text16 is linked at offset 0 of segment F000h (its symbols are offsets, as
 * real-mode code and IVT entries need them) and loaded at 0xF0000; the C part (.text)
 * is linked at its flat address after it. See bios.ld.
 *
 * References: IBM PC/AT Technical Reference (BIOS data area, keyboard buffer, INT 08h/
 * 09h/10h/11h/12h/16h interfaces), Intel 8259A and 8254 data sheets, 82441FX data sheet
 * 3.2.16 (PAM registers), Intel SDM vol. 3 9.9 (switching modes).
 */
#define BIOS_SEG 0xF000
#define BIOS_FLAT 0xF0000
#define PM_STACK_TOP 0xEF000
#define SEL_CODE32 0x08
#define SEL_DATA32 0x10
#define SEL_CODE16 0x18
#define SEL_DATA16 0x20
#define BDA_SEG 0x40
#define EBDA_SEG 0x9FC0
#define EBDA_FLAGS 0x10     /* EBDA byte: bit 0 = a VGA text buffer answers at B8000h */
#define TICKS_PER_DAY 0x1800B0

        .section .text16, "ax"
        .code16

/* ---------------------------------------------------------------------------------- */
/* POST: stack in low RAM, open the E segment as RAM, shadow the image, run C.         */
/* ---------------------------------------------------------------------------------- */
        .globl post_entry
post_entry:
        cli
        cld
        xorw    %ax, %ax
        movw    %ax, %ss
        movl    $0x7000, %esp
        movw    %ax, %ds
        movw    %ax, %es
        /* PAM5/PAM6 = 33h: 0xE0000-0xEFFFF read and write DRAM (data, stack of C). */
        movw    $0x335E, %ax
        call    pam_write
        movw    $0x335F, %ax
        call    pam_write
        /* Copy the image to 1000:0000 and continue there while F000 becomes RAM. */
        movw    $BIOS_SEG, %ax
        movw    %ax, %ds
        movw    $0x1000, %ax
        movw    %ax, %es
        xorw    %si, %si
        xorw    %di, %di
        movw    $0x4000, %cx
        rep movsl
        ljmp    $0x1000, $shadow_from_copy
shadow_from_copy:
        movw    $0x3059, %ax            /* PAM0 high nibble 3: F segment is DRAM, RW */
        call    pam_write
        movw    $0x1000, %ax
        movw    %ax, %ds
        movw    $BIOS_SEG, %ax
        movw    %ax, %es
        xorw    %si, %si
        xorw    %di, %di
        movw    $0x4000, %cx
        rep movsl
        ljmp    $BIOS_SEG, $shadowed
shadowed:
        xorw    %ax, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movl    $post_main, %eax
        call    call32                  /* the C POST ends by write-protecting F000 */
        call    option_roms_init
        sti
        int     $0x19
1:      hlt
        jmp     1b

/* Far-call the initialisation entry (offset 3) of each option ROM POST placed, with
 * BX = DX = FFFFh (no ISA PnP card) as BBS 1.01 asks; the segments are a 0-terminated
 * list in the C part's data (E segment). */
option_roms_init:
        movl    $option_rom_segs, %esi
        subl    $0xE0000, %esi
1:      movw    $0xE000, %ax
        movw    %ax, %fs
        movw    %fs:(%si), %ax
        testw   %ax, %ax
        jz      2f
        pushw   %si
        pushw   %ax
        pushw   $3
        movw    %sp, %bp
        movw    $0xFFFF, %bx
        movw    $0xFFFF, %dx
        lcallw  *(%bp)
        cli
        cld
        addw    $4, %sp
        popw    %si
        xorw    %ax, %ax
        movw    %ax, %ds
        movw    %ax, %es
        addw    $2, %si
        jmp     1b
2:      ret

/* Write AH to config register AL of PCI 00:00.0 (the i440FX). Clobbers AX, CX, DX. */
pam_write:
        movw    %ax, %cx
        movl    $0x80000000, %eax
        movb    %cl, %al
        andb    $0xFC, %al
        movw    $0xCF8, %dx
        outl    %eax, %dx
        movw    $0xCFC, %dx
        movb    %cl, %al
        andw    $3, %ax
        addw    %ax, %dx
        movb    %ch, %al
        outb    %al, %dx
        ret

/* ---------------------------------------------------------------------------------- */
/* call32: run the C function at flat address EAX in 32-bit protected mode with a      */
/* pointer to the caller's register frame, which starts just above our return address. */
/* Interrupts stay off while C runs; the frame's FLAGS decide IF on iret.               */
/* ---------------------------------------------------------------------------------- */
        .balign 8
gdt:
        .quad   0
        .quad   0x00CF9B000000FFFF      /* 08: code, flat 4 GiB, 32-bit (accessed) */
        .quad   0x00CF93000000FFFF      /* 10: data, flat 4 GiB */
        .quad   0x00009B0F0000FFFF      /* 18: code, base F0000h, 64 KiB, 16-bit */
        .quad   0x000093000000FFFF      /* 20: data, base 0, 64 KiB (real-mode limits) */
gdt_end:
gdt_desc:
        .word   gdt_end - gdt - 1
        .long   gdt + BIOS_FLAT

        .globl call32
call32:
        pushw   %fs
        pushw   %gs
        movzwl  %sp, %esi
        addl    $6, %esi                /* past GS, FS and our return address */
        movw    %ss, %bx
        movzwl  %bx, %ecx
        shll    $4, %ecx
        addl    %ecx, %esi              /* ESI = flat address of the frame */
        movl    %esp, %edx              /* BX:EDX = the real-mode SS:ESP to come back to;
                                           all of ESP, as 32-bit real-mode code uses it */
        cli
        lgdtl   %cs:gdt_desc
        movl    %cr0, %ecx
        orb     $1, %cl
        movl    %ecx, %cr0
        ljmpl   $SEL_CODE32, $call32_pm
        .globl call32_back
call32_back:                            /* 16-bit protected mode, CS = SEL_CODE16 */
        movw    $SEL_DATA16, %cx
        movw    %cx, %ds
        movw    %cx, %es
        movw    %cx, %fs
        movw    %cx, %gs
        movw    %cx, %ss
        movl    %cr0, %ecx
        andb    $0xFE, %cl
        movl    %ecx, %cr0
        ljmp    $BIOS_SEG, $1f
1:      movw    %bx, %ss
        movl    %edx, %esp
        popw    %gs
        popw    %fs
        ret

/* An interrupt entry whose work is done by a C handler(struct bregs *). */
.macro C_ENTRY name, handler
        .globl \name
\name:
        pushw   %ds
        pushw   %es
        pushal
        movl    $\handler, %eax
        call    call32
        popal
        popw    %es
        popw    %ds
        iret
.endm

        C_ENTRY int13_entry, handle_13
        C_ENTRY int1a_entry, handle_1a
        C_ENTRY int15_c, handle_15

/* INT 19h: the C part loads a boot sector (or picks a ROM's BEV) and returns its entry
 * (seg:off) in EAX and the drive in DL, or EAX = 0 when nothing is left to try. The
 * entry is far-called: a BEV that returns did not boot, and the next device is tried. */
        .globl int19_entry
int19_entry:
        cli
        xorw    %ax, %ax
        movw    %ax, %ss
        movl    $0x7C00, %esp
        pushw   %ds
        pushw   %es
        pushal
        movl    $handle_19, %eax
        call    call32
        popal
        popw    %es
        popw    %ds
        testl   %eax, %eax
        jz      1f
        pushl   %eax                    /* IP then CS for lcallw */
        movw    %sp, %bp
        xorl    %eax, %eax
        sti
        lcallw  *(%bp)
        jmp     int19_entry
1:      int     $0x18

/* INT 18h: no bootable device. Say so and stop. */
        .globl int18_entry
int18_entry:
        pushw   %ds
        pushw   %es
        pushal
        movl    $handle_18, %eax
        call    call32
1:      cli
        hlt
        jmp     1b

/* ---------------------------------------------------------------------------------- */
/* Default handlers.                                                                  */
/* ---------------------------------------------------------------------------------- */
        .globl int_default, irq_default_master, irq_default_slave, int1c_entry
int_default:
int1c_entry:
        iret
irq_default_slave:
        pushw   %ax
        movb    $0x20, %al
        outb    %al, $0xA0
        outb    %al, $0x20
        popw    %ax
        iret
irq_default_master:
        pushw   %ax
        movb    $0x20, %al
        outb    %al, $0x20
        popw    %ax
        iret

/* INT 11h equipment word, INT 12h base memory in KiB (both from the BDA). */
        .globl int11_entry, int12_entry
int11_entry:
        pushw   %ds
        movw    $BDA_SEG, %ax
        movw    %ax, %ds
        movw    0x10, %ax
        popw    %ds
        iret
int12_entry:
        pushw   %ds
        movw    $BDA_SEG, %ax
        movw    %ax, %ds
        movw    0x13, %ax
        popw    %ds
        iret

/* ---------------------------------------------------------------------------------- */
/* INT 08h (IRQ0, 18.2 Hz): count ticks since midnight, chain INT 1Ch, EOI.            */
/* ---------------------------------------------------------------------------------- */
        .globl int08_entry
int08_entry:
        pushw   %ds
        pushl   %eax
        movw    $BDA_SEG, %ax
        movw    %ax, %ds
        movl    0x6C, %eax
        incl    %eax
        cmpl    $TICKS_PER_DAY, %eax
        jb      1f
        xorl    %eax, %eax
        movb    $1, 0x70
1:      movl    %eax, 0x6C
        int     $0x1C
        movb    $0x20, %al
        outb    %al, $0x20
        popl    %eax
        popw    %ds
        iret

/* ---------------------------------------------------------------------------------- */
/* Keyboard: INT 09h (IRQ1) turns scan code set 1 into BIOS key words (scan << 8 |     */
/* ASCII) in the BDA ring at 40:1E-40:3D; INT 16h reads them, and also takes bytes     */
/* from COM1 so a -nographic user can type.                                            */
/* ---------------------------------------------------------------------------------- */
#define KF_RSHIFT 0x01
#define KF_LSHIFT 0x02
#define KF_CTRL 0x04
#define KF_ALT 0x08
#define KF_CAPS 0x40
#define KEYMAP_LEN 0x3A

        .globl int09_entry
int09_entry:
        pushw   %ds
        pushaw
        movw    $BDA_SEG, %ax
        movw    %ax, %ds
        inb     $0x60, %al
        call    kbd_scancode
        movb    $0x20, %al
        outb    %al, $0x20
        popaw
        popw    %ds
        iret

/* AL = a set 1 scan code; DS = 40h. Clobbers AX, BX. */
kbd_scancode:
        cmpb    $0xE0, %al              /* extended prefix: the next code says enough */
        je      9f
        cmpb    $0xE1, %al
        je      9f
        movb    %al, %ah
        andb    $0x7F, %ah              /* AH = key, AL bit 7 = released */
        movb    $KF_LSHIFT, %bl
        cmpb    $0x2A, %ah
        je      2f
        movb    $KF_RSHIFT, %bl
        cmpb    $0x36, %ah
        je      2f
        movb    $KF_CTRL, %bl
        cmpb    $0x1D, %ah
        je      2f
        movb    $KF_ALT, %bl
        cmpb    $0x38, %ah
        je      2f
        testb   $0x80, %al
        jnz     9f                      /* other releases mean nothing here */
        cmpb    $0x3A, %ah
        jne     3f
        xorb    $KF_CAPS, 0x17
        ret
2:      testb   $0x80, %al              /* a modifier: set or clear its flag */
        jnz     1f
        orb     %bl, 0x17
        ret
1:      notb    %bl
        andb    %bl, 0x17
        ret
3:      xorb    %al, %al                /* a key that makes a character (or 0) */
        cmpb    $KEYMAP_LEN, %ah
        jae     5f
        movzbw  %ah, %bx
        testb   $(KF_LSHIFT | KF_RSHIFT), 0x17
        jz      4f
        addw    $KEYMAP_LEN, %bx
4:      movb    %cs:keymap(%bx), %al
        testb   $KF_CAPS, 0x17          /* caps lock swaps the case of letters */
        jz      6f
        movb    %al, %bl
        orb     $0x20, %bl
        cmpb    $'a', %bl
        jb      6f
        cmpb    $'z', %bl
        ja      6f
        xorb    $0x20, %al
6:      testb   $KF_CTRL, 0x17
        jz      5f
        movb    %al, %bl
        orb     $0x20, %bl
        cmpb    $'a', %bl
        jb      5f
        cmpb    $'z', %bl
        ja      5f
        andb    $0x1F, %al
5:      call    kbd_push
9:      ret

/* Append key word AX to the ring (dropped when full); DS = 40h. Clobbers BX. */
kbd_push:
        pushw   %si
        movw    0x1C, %bx
        leaw    2(%bx), %si
        cmpw    0x82, %si
        jb      1f
        movw    0x80, %si
1:      cmpw    0x1A, %si
        je      2f
        movw    %ax, (%bx)
        movw    %si, 0x1C
2:      popw    %si
        ret

/* Move bytes waiting at COM1 into the ring; DS = 40h. Clobbers AX, BX, DX. */
serial_poll:
        movw    0x00, %dx
        testw   %dx, %dx
        jz      9f
1:      addw    $5, %dx
        inb     %dx, %al
        subw    $5, %dx
        testb   $1, %al
        jz      9f
        inb     %dx, %al
        call    ascii_key
        call    kbd_push
        jmp     1b
9:      ret

/* AL = a character from the serial line -> AX = key word, the scan code looked up in
 * the key maps (0 when no key makes it). Clobbers BX. */
ascii_key:
        cmpb    $0x0A, %al              /* a terminal's Enter may arrive as LF */
        jne     1f
        movb    $0x0D, %al
1:      cmpb    $0x7F, %al              /* ... and Backspace as DEL */
        jne     2f
        movb    $0x08, %al
2:      testb   %al, %al
        jz      5f
        xorw    %bx, %bx
3:      cmpb    %cs:keymap(%bx), %al
        je      4f
        incw    %bx
        cmpw    $2 * KEYMAP_LEN, %bx
        jb      3b
        xorb    %ah, %ah
        ret
4:      cmpw    $KEYMAP_LEN, %bx
        jb      6f
        subw    $KEYMAP_LEN, %bx
6:      movb    %bl, %ah
        ret
5:      xorb    %ah, %ah
        ret

/* Scan code set 1, keys 00h-39h: unshifted, then shifted. */
keymap:
        .byte   0, 0x1B
        .ascii  "1234567890-="
        .byte   0x08, 0x09
        .ascii  "qwertyuiop[]"
        .byte   0x0D, 0
        .ascii  "asdfghjkl;'`"
        .byte   0
        .ascii  "\\zxcvbnm,./"
        .byte   0, '*', 0, ' '
        .byte   0, 0x1B
        .ascii  "!@#$%^&*()_+"
        .byte   0x08, 0
        .ascii  "QWERTYUIOP{}"
        .byte   0x0D, 0
        .ascii  "ASDFGHJKL:\"~"
        .byte   0
        .ascii  "|ZXCVBNM<>?"
        .byte   0, '*', 0, ' '

/* INT 16h: AH=00h/10h read (wait), 01h/11h peek (ZF=1: none), 02h/12h shift flags,
 * 05h store CX. */
        .globl int16_entry
int16_entry:
        pushw   %bp
        movw    %sp, %bp                /* FLAGS of the caller at 6(%bp) */
        pushw   %ds
        pushw   %bx
        pushw   %dx
        movw    $BDA_SEG, %bx
        movw    %bx, %ds
        movb    %ah, %dl
        andb    $0xEF, %dl              /* 10h-12h: the enhanced forms behave the same */
        cmpb    $0x00, %dl
        je      16f
        cmpb    $0x01, %dl
        je      17f
        cmpb    $0x02, %dl
        je      18f
        cmpb    $0x05, %ah
        je      19f
        jmp     99f
16:     cli                             /* wait for a key */
        pushw   %ax
        call    serial_poll
        popw    %ax
        movw    0x1A, %bx
        cmpw    0x1C, %bx
        jne     1f
        sti
        hlt
        jmp     16b
1:      movw    (%bx), %ax
        addw    $2, %bx
        cmpw    0x82, %bx
        jb      2f
        movw    0x80, %bx
2:      movw    %bx, 0x1A
        jmp     99f
17:     cli                             /* peek */
        pushw   %ax
        call    serial_poll
        popw    %ax
        movw    0x1A, %bx
        cmpw    0x1C, %bx
        je      1f
        movw    (%bx), %ax
        andw    $~0x40, 6(%bp)
        jmp     99f
1:      orw     $0x40, 6(%bp)
        jmp     99f
18:     movb    0x17, %al
        jmp     99f
19:     pushw   0x1C
        movw    %cx, %ax
        call    kbd_push
        popw    %bx
        xorw    %ax, %ax
        cmpw    0x1C, %bx
        jne     99f
        incb    %al                     /* AL = 1: the buffer was full */
99:     popw    %dx
        popw    %bx
        popw    %ds
        popw    %bp
        iret

/* ---------------------------------------------------------------------------------- */
/* INT 10h: teletype on COM1 (and the B8000h text buffer when one answers), cursor.    */
/* ---------------------------------------------------------------------------------- */
        .globl int10_entry
int10_entry:
        pushw   %ds
        pushw   %bx
        pushw   %si
        movw    $BDA_SEG, %si
        movw    %si, %ds
        cmpb    $0x0E, %ah
        je      10f
        cmpb    $0x02, %ah
        je      12f
        cmpb    $0x03, %ah
        je      13f
        cmpb    $0x01, %ah
        je      11f
        cmpb    $0x0F, %ah
        je      15f
        cmpb    $0x00, %ah
        je      14f
        cmpb    $0x13, %ah
        je      19f
        cmpb    $0x1A, %ah
        je      16f
        jmp     99f
10:     call    teletype
        jmp     99f
11:     movw    %cx, 0x60
        jmp     99f
12:     movzbw  %bh, %si                /* set cursor of page BH */
        andw    $7, %si
        shlw    $1, %si
        movw    %dx, 0x50(%si)
        jmp     99f
13:     movzbw  %bh, %si                /* get cursor */
        andw    $7, %si
        shlw    $1, %si
        movw    0x50(%si), %dx
        movw    0x60, %cx
        jmp     99f
14:     andb    $0x7F, %al              /* set mode: remember it, cursor home */
        movb    %al, 0x49
        movw    $0, 0x50
        jmp     99f
15:     movb    0x49, %al               /* get mode */
        movb    0x4A, %ah
        popw    %si
        popw    %bx
        movb    0x62, %bh
        popw    %ds
        iret
16:     testb   %al, %al                /* display combination: VGA with colour display */
        jnz     99f
        movb    $0x1A, %al
        popw    %si
        popw    %bx
        movw    $0x0008, %bx
        popw    %ds
        iret
19:     pushw   %ax                     /* write string ES:BP, CX chars, at DH/DL */
        pushw   %cx
        pushw   %bp
        movw    %dx, 0x50
        movb    %al, %bl                /* bit 1: characters and attributes alternate */
        jcxz    3f
1:      movb    %es:(%bp), %al
        call    teletype
        incw    %bp
        testb   $2, %bl
        jz      2f
        incw    %bp
2:      loop    1b
3:      popw    %bp
        popw    %cx
        popw    %ax
        jmp     99f
99:     popw    %si
        popw    %bx
        popw    %ds
        iret

/* Character AL to COM1 and the text buffer; moves the page 0 cursor. DS = 40h. */
teletype:
        pushw   %ax
        pushw   %dx
        pushw   %ax
        movw    0x00, %dx               /* COM1 base; 0 when there is none */
        testw   %dx, %dx
        jz      2f
        addw    $5, %dx
1:      inb     %dx, %al
        testb   $0x20, %al
        jz      1b
        subw    $5, %dx
        popw    %ax
        pushw   %ax
        outb    %al, %dx
2:      popw    %ax
        movw    0x50, %dx               /* DL = column, DH = row */
        cmpb    $0x0D, %al
        je      3f
        cmpb    $0x0A, %al
        je      4f
        cmpb    $0x08, %al
        je      5f
        cmpb    $0x07, %al
        je      9f
        call    vga_put
        incb    %dl
        cmpb    $80, %dl
        jb      8f
3:      xorb    %dl, %dl
        cmpb    $0x0D, %al
        je      8f
4:      incb    %dh
        cmpb    $25, %dh
        jb      8f
        movb    $24, %dh
        call    vga_scroll
        jmp     8f
5:      testb   %dl, %dl
        jz      8f
        decb    %dl
8:      movw    %dx, 0x50
9:      popw    %dx
        popw    %ax
        ret

/* AL at row DH, column DL of the text buffer, when there is one. */
vga_put:
        call    vga_here
        jz      1f
        pushw   %es
        pushw   %di
        pushw   %ax
        movw    $0xB800, %di
        movw    %di, %es
        movb    %dh, %al
        movb    $80, %ah
        mulb    %ah
        addb    %dl, %al
        adcb    $0, %ah
        shlw    $1, %ax
        movw    %ax, %di
        popw    %ax
        pushw   %ax
        movb    $0x07, %ah
        stosw
        popw    %ax
        popw    %di
        popw    %es
1:      ret

/* Scroll the text buffer up one line, when there is one. */
vga_scroll:
        call    vga_here
        jz      1f
        pushaw
        pushw   %ds
        pushw   %es
        movw    $0xB800, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    $160, %si
        xorw    %di, %di
        movw    $80 * 24, %cx
        cld
        rep movsw
        movw    $0x0720, %ax
        movw    $80, %cx
        rep stosw
        popw    %es
        popw    %ds
        popaw
1:      ret

/* ZF clear when POST found a text buffer at B8000h (EBDA flag). */
vga_here:
        pushw   %ds
        pushw   %ax
        movw    $EBDA_SEG, %ax
        movw    %ax, %ds
        testb   $1, EBDA_FLAGS
        popw    %ax
        popw    %ds
        ret

/* ---------------------------------------------------------------------------------- */
/* INT 15h: AH=86h (wait CX:DX microseconds, in timer ticks with interrupts on) here;  */
/* everything else in C.                                                              */
/* ---------------------------------------------------------------------------------- */
        .globl int15_entry
int15_entry:
        cmpb    $0x86, %ah
        je      1f
        jmp     int15_c
1:      pushw   %bp
        movw    %sp, %bp
        pushw   %ds
        pushl   %ebx
        pushl   %ecx
        pushl   %edx
        movw    %cx, %ax
        shll    $16, %eax
        movw    %dx, %ax                /* EAX = microseconds */
        xorl    %edx, %edx
        addl    $54924, %eax            /* round up to whole ticks of 54925 us */
        adcl    $0, %edx
        movl    $54925, %ebx
        divl    %ebx
        movw    $BDA_SEG, %bx
        movw    %bx, %ds
        movl    0x6C, %ecx              /* ECX = start, EAX = ticks to wait */
        sti
2:      movl    0x6C, %edx
        subl    %ecx, %edx
        jb      3f                      /* midnight rolled over: stop waiting */
        cmpl    %eax, %edx
        jae     3f
        hlt
        jmp     2b
3:      popl    %edx
        popl    %ecx
        popl    %ebx
        popw    %ds
        andw    $~1, 6(%bp)             /* CF = 0 */
        popw    %bp
        xorb    %ah, %ah
        iret

/* INT 15h AH=C0h: the system configuration table (length, model FCh = AT, submodel,
 * revision, feature bytes: second 8259, real-time clock). */
        .globl config_table
config_table:
        .word   8
        .byte   0xFC, 0x01, 0x00, 0x60, 0x00, 0x00, 0x00, 0x00

/* ---------------------------------------------------------------------------------- */
/* The 32-bit half of call32 (flat code segment).                                     */
/* ---------------------------------------------------------------------------------- */
        .text
        .code32
call32_pm:
        movl    $SEL_DATA32, %ecx
        movw    %cx, %ds
        movw    %cx, %es
        movw    %cx, %fs
        movw    %cx, %gs
        movw    %cx, %ss
        movl    $PM_STACK_TOP, %esp
        pushl   %ebx
        pushl   %edx
        pushl   %esi
        cld
        call    *%eax
        addl    $4, %esp
        popl    %edx
        popl    %ebx
        ljmp    $SEL_CODE16, $call32_back

/* ---------------------------------------------------------------------------------- */
/* The reset vector at F000:FFF0, the BIOS date at F000:FFF5 and the model byte.       */
/* ---------------------------------------------------------------------------------- */
        .section .reset, "ax"
        .code16
        .globl reset_vector
reset_vector:
        ljmp    $BIOS_SEG, $post_entry
        .ascii  "01/01/25"
        .byte   0
        .byte   0xFC                    /* model: AT compatible */
        .byte   0
