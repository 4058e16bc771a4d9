/*
 * pyemu BIOS, real-mode part: reset vector, POST start (shadow RAM), the call32 thunk
 * into the C part, interrupt entry points and the services simple enough for assembly
 * (INT 08h/09h/11h/12h/16h and INT 15h AH=4Fh/86h); INT 10h is video.c.
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
        pushw   %bp
        subw    $6, %sp                 /* the caller's GDTR, put back on the way out */
        movw    %sp, %bp                /* (SeaBIOS's call32 does the same) */
        sgdtl   (%bp)
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
        movw    %sp, %bp
        lgdtl   (%bp)
        addw    $6, %sp
        popw    %bp
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
/* INT 08h (IRQ0, 18.2 Hz): count ticks since midnight, send what the serial console   */
/* holds back (as SeaBIOS's clock handler does), chain INT 1Ch, EOI.                   */
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
        call    sercon_poll
        int     $0x1C
        movb    $0x20, %al
        outb    %al, $0x20
        popl    %eax
        popw    %ds
        iret

/* When video.c holds a character back, or the terminal's cursor is not where the BIOS
 * cursor is, let video_tick send it. Not from virtual-8086 mode (PE set), where the
 * switch to protected mode is not ours to make. DS = 40h; clobbers AX. */
sercon_poll:
        smsw    %ax
        testb   $1, %al
        jnz     9f
        pushw   %es
        pushl   %ebx
        movw    $0xE000, %bx
        movw    %bx, %es
        movl    $sercon, %ebx
        subl    $0xE0000, %ebx
        cmpb    $0, %es:(%bx)           /* sercon.chr */
        jne     1f
        movw    %es:2(%bx), %bx         /* sercon.col_last, row_last */
        cmpw    0x50, %bx               /* the page 0 cursor */
        je      2f
1:      pushw   %ds
        pushw   %es
        pushal
        movl    $video_tick, %eax
        call    call32
        popal
        popw    %es
        popw    %ds
2:      popl    %ebx
        popw    %es
9:      ret

/* ---------------------------------------------------------------------------------- */
/* Keyboard. INT 09h (IRQ1) takes scan code set 1 bytes from the 8042 and keeps the    */
/* shift state in the BDA (40:17 and 40:18 as one word, kbd_flag0 below; 40:96,        */
/* kbd_flag1) and key words (scan code << 8 | ASCII) in the ring at 40:1E-40:3D; INT   */
/* 16h reads them, and also takes bytes from COM1 so a -nographic user can type. What  */
/* each key makes is IBM's enhanced keyboard table (PC/AT Technical Reference; the     */
/* same as SeaBIOS's src/kbd.c, whose handling of prefixes and locks this follows).    */
/* ---------------------------------------------------------------------------------- */
#define KF0_RSHIFT 0x0001
#define KF0_LSHIFT 0x0002
#define KF0_CTRL 0x0004                 /* either Ctrl held */
#define KF0_ALT 0x0008                  /* either Alt held */
#define KF0_SCROLLACTIVE 0x0010
#define KF0_NUMACTIVE 0x0020
#define KF0_CAPSACTIVE 0x0040
#define KF0_LCTRL 0x0100
#define KF0_LALT 0x0200
#define KF0_SCROLL 0x1000               /* Scroll Lock key held */
#define KF0_NUM 0x2000
#define KF0_CAPS 0x4000
#define KF1_LAST_E1 0x01                /* the previous byte was the E1h prefix */
#define KF1_LAST_E0 0x02                /* ... the E0h prefix */
#define KF1_RCTRL 0x04
#define KF1_RALT 0x08
#define KEYS 0x59                       /* scan codes in the table: 00h-58h */

        .globl int09_entry
int09_entry:
        pushw   %ds
        pushaw
        movw    $BDA_SEG, %ax
        movw    %ax, %ds
        inb     $0x64, %al
        testb   $0x20, %al              /* a byte from the mouse port is not ours */
        jnz     9f
        inb     $0x60, %al
        movb    $0x4F, %ah              /* INT 15h AH=4Fh, the keyboard intercept: a   */
        stc                             /* hook that clears CF swallows the byte, else */
        int     $0x15                   /* AL is the byte to handle */
        jnc     9f
        call    kbd_scancode
9:      movb    $0x20, %al
        outb    %al, $0x20
        popaw
        popw    %ds
        iret

/* AL = a set 1 scan code; DS = 40h. Clobbers AX, BX, CX, DX, SI. */
kbd_scancode:
        movb    0x96, %bl               /* BL = kbd_flag1 as the byte arrived */
        cmpb    $0xE0, %al
        jne     1f
        orb     $KF1_LAST_E0, 0x96
        ret
1:      cmpb    $0xE1, %al              /* Pause: E1 1D 45, E1 9D C5 */
        jne     2f
        orb     $KF1_LAST_E1, 0x96
        ret
2:      movb    %al, %ah
        andb    $0x7F, %ah              /* AH = key */
        andb    $0x80, %al              /* AL = 80h when released */
        testb   $(KF1_LAST_E0 | KF1_LAST_E1), %bl
        jz      3f
        testb   $KF1_LAST_E1, %bl       /* the second byte of Pause waits for the third */
        jz      4f
        cmpb    $0x1D, %ah
        je      99f
4:      andb    $~(KF1_LAST_E0 | KF1_LAST_E1), 0x96
3:      xorb    %cl, %cl                /* CL: kbd_flag1 bits, DX: kbd_flag0 bits, */
        xorw    %si, %si                /* SI: kbd_flag0 bits a press toggles */
        cmpb    $0x3A, %ah
        jne     1f
        movw    $KF0_CAPS, %dx          /* Caps Lock */
        movw    $KF0_CAPSACTIVE, %si
        jmp     set_flags
1:      cmpb    $0x2A, %ah
        jne     1f
        testb   $KF1_LAST_E0, %bl       /* E0 2A / E0 AA: the extended keys' fake shifts */
        jnz     99f
        movw    $KF0_LSHIFT, %dx
        jmp     set_flags
1:      cmpb    $0x36, %ah
        jne     1f
        testb   $KF1_LAST_E0, %bl
        jnz     99f
        movw    $KF0_RSHIFT, %dx
        jmp     set_flags
1:      cmpb    $0x1D, %ah
        jne     1f
        movw    $(KF0_CTRL | KF0_LCTRL), %dx
        testb   $KF1_LAST_E0, %bl
        jz      set_flags
        movw    $KF0_CTRL, %dx          /* right Ctrl */
        movb    $KF1_RCTRL, %cl
        jmp     set_flags
1:      cmpb    $0x38, %ah
        jne     1f
        movw    $(KF0_ALT | KF0_LALT), %dx
        testb   $KF1_LAST_E0, %bl
        jz      set_flags
        movw    $KF0_ALT, %dx           /* right Alt */
        movb    $KF1_RALT, %cl
        jmp     set_flags
1:      cmpb    $0x45, %ah
        jne     1f
        testb   $KF1_LAST_E1, %bl       /* E1 45: Pause, not Num Lock */
        jnz     99f
        movw    $KF0_NUM, %dx
        movw    $KF0_NUMACTIVE, %si
        jmp     set_flags
1:      cmpb    $0x46, %ah
        jne     1f
        testb   $KF1_LAST_E0, %bl
        jnz     ctrl_break              /* E0 46: Ctrl-Break */
        movw    $KF0_SCROLL, %dx
        movw    $KF0_SCROLLACTIVE, %si
        jmp     set_flags
1:      cmpb    $0x37, %ah
        jne     1f
        testb   $KF1_LAST_E0, %bl
        jz      key_word
        testb   %al, %al                /* E0 37: Print Screen, INT 05h on the press */
        jnz     99f
        int     $0x05
        ret
1:      cmpb    $0x54, %ah              /* SysReq: INT 15h AH=85h, AL=1 on release */
        jne     1f
        rolb    $1, %al
        movb    $0x85, %ah
        int     $0x15
        ret
1:      cmpb    $0x53, %ah              /* Ctrl-Alt-Del */
        jne     key_word
        testb   %al, %al
        jnz     key_word
        movw    0x17, %dx
        andw    $(KF0_CTRL | KF0_ALT), %dx
        cmpw    $(KF0_CTRL | KF0_ALT), %dx
        jne     key_word
        movw    $0x1234, 0x72           /* warm boot flag */
        movb    $0xFE, %al              /* pulse the 8042's reset line ... */
        outb    %al, $0x64
        movb    $0x06, %al              /* ... or reset through the PIIX's 0CF9h */
        movw    $0xCF9, %dx
        outb    %al, %dx
5:      cli
        hlt
        jmp     5b

/* A key that makes a key word: from the table's column for the shift state. */
key_word:
        testb   %al, %al                /* releases make nothing */
        jnz     99f
        testb   %ah, %ah
        jz      99f
        cmpb    $KEYS, %ah
        jae     99f
        movzbw  %ah, %si
        shlw    $3, %si
        addw    $keycodes, %si          /* SI = the key's row: normal, shift, ctrl, alt */
        testb   $KF1_LAST_E0, %bl       /* E0 1C, E0 35: keypad Enter and / */
        jz      1f
        cmpb    $0x1C, %ah
        jne     2f
        movw    $key_kp_enter, %si
2:      cmpb    $0x35, %ah
        jne     1f
        movw    $key_kp_slash, %si
1:      movw    0x17, %dx               /* DX = kbd_flag0 */
        testw   $KF0_ALT, %dx
        jz      1f
        movw    %cs:6(%si), %cx
        jmp     4f
1:      testw   $KF0_CTRL, %dx
        jz      1f
        movw    %cs:4(%si), %cx
        jmp     4f
1:      xorb    %bh, %bh                /* BH = 1: use the shifted word */
        testw   $(KF0_LSHIFT | KF0_RSHIFT), %dx
        jz      1f
        incb    %bh
1:      testw   $KF0_NUMACTIVE, %dx     /* Num Lock shifts the keypad (47h-53h) ... */
        jz      2f
        cmpb    $0x47, %ah
        jb      2f
        cmpb    $0x53, %ah
        ja      2f
        xorb    $1, %bh
        jmp     3f
2:      testw   $KF0_CAPSACTIVE, %dx    /* ... and Caps Lock the letters */
        jz      3f
        movb    %cs:(%si), %cl
        cmpb    $'a', %cl
        jb      3f
        cmpb    $'z', %cl
        ja      3f
        xorb    $1, %bh
3:      movw    %cs:(%si), %cx
        testb   %bh, %bh
        jz      4f
        movw    %cs:2(%si), %cx
4:      testb   $KF1_LAST_E0, %bl       /* the editing keys (E0 47-E0 53): ASCII E0h, */
        jz      5f                      /* or with Alt scan code + 50h and no ASCII */
        cmpb    $0x47, %ah
        jb      5f
        cmpb    $0x53, %ah
        ja      5f
        testw   $KF0_ALT, %dx
        jz      6f
        movb    %ah, %ch
        addb    $0x50, %ch
        xorb    %cl, %cl
        jmp     5f
6:      movb    $0xE0, %cl
5:      jcxz    99f
        movw    %cx, %ax
        call    kbd_push
99:     ret

/* AL = 80h for a release: clear DX in kbd_flag0 and CL in kbd_flag1; for a press, set
 * them and toggle SI in kbd_flag0 (the lock states). */
set_flags:
        testb   %al, %al
        jz      1f
        notw    %dx
        andw    %dx, 0x17
        notb    %cl
        andb    %cl, 0x96
        ret
1:      xorw    %si, 0x17
        orw     %dx, 0x17
        orb     %cl, 0x96
        ret

/* Ctrl-Break (released): the ring holds one word 0000h, 40:71 bit 7 says Break was
 * pressed, INT 1Bh runs. */
ctrl_break:
        testb   %al, %al
        jz      99b
        movw    0x80, %bx
        movw    %bx, 0x1A
        movw    $0, (%bx)
        addw    $2, %bx
        movw    %bx, 0x1C
        movb    $0x80, 0x71
        int     $0x1B
        ret

/* Append key word AX to the ring (dropped when full: ZF set); DS = 40h. Keeps BX. */
kbd_push:
        pushw   %bx
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
        popw    %bx
        ret

/* Move bytes waiting at COM1 into the ring as key words: the first key whose normal,
 * shifted or Ctrl word has the byte as its ASCII (SeaBIOS's serial console does the
 * same); a byte no key makes is dropped. DS = 40h; keeps all registers. */
serial_poll:
        pushaw
        movw    0x00, %dx
        testw   %dx, %dx
        jz      9f
1:      addw    $5, %dx
        inb     %dx, %al
        subw    $5, %dx
        cmpb    $0xFF, %al              /* nothing answers there */
        je      9f
        testb   $1, %al
        jz      9f
        inb     %dx, %al
        xorw    %bx, %bx
2:      movw    %cs:keycodes(%bx), %cx
        cmpb    %al, %cl
        je      3f
        movw    %cs:keycodes+2(%bx), %cx
        cmpb    %al, %cl
        je      3f
        movw    %cs:keycodes+4(%bx), %cx
        cmpb    %al, %cl
        je      3f
        addw    $8, %bx
        cmpw    $KEYS * 8, %bx
        jb      2b
        jmp     1b
3:      jcxz    1b
        movw    %cx, %ax
        call    kbd_push
        jmp     1b
9:      popaw
        ret

/* Key words per scan code 00h-58h: normal, with Shift, with Ctrl, with Alt; 0: none.
 * ASCII F0h marks an Alt combination only the enhanced keyboard has (read back as 00h). */
keycodes:
        .word   0, 0, 0, 0                              /* 00 */
        .word   0x011B, 0x011B, 0x011B, 0x01F0          /* 01 Esc */
        .word   0x0231, 0x0221, 0x0000, 0x7800          /* 02 1 ! */
        .word   0x0332, 0x0340, 0x0300, 0x7900          /* 03 2 @ */
        .word   0x0433, 0x0423, 0x0000, 0x7A00          /* 04 3 # */
        .word   0x0534, 0x0524, 0x0000, 0x7B00          /* 05 4 $ */
        .word   0x0635, 0x0625, 0x0000, 0x7C00          /* 06 5 % */
        .word   0x0736, 0x075E, 0x071E, 0x7D00          /* 07 6 ^ */
        .word   0x0837, 0x0826, 0x0000, 0x7E00          /* 08 7 & */
        .word   0x0938, 0x092A, 0x0000, 0x7F00          /* 09 8 * */
        .word   0x0A39, 0x0A28, 0x0000, 0x8000          /* 0A 9 ( */
        .word   0x0B30, 0x0B29, 0x0000, 0x8100          /* 0B 0 ) */
        .word   0x0C2D, 0x0C5F, 0x0C1F, 0x8200          /* 0C - _ */
        .word   0x0D3D, 0x0D2B, 0x0000, 0x8300          /* 0D = + */
        .word   0x0E08, 0x0E08, 0x0E7F, 0x0EF0          /* 0E Backspace */
        .word   0x0F09, 0x0F00, 0x9400, 0xA5F0          /* 0F Tab */
        .word   0x1071, 0x1051, 0x1011, 0x1000          /* 10 q */
        .word   0x1177, 0x1157, 0x1117, 0x1100          /* 11 w */
        .word   0x1265, 0x1245, 0x1205, 0x1200          /* 12 e */
        .word   0x1372, 0x1352, 0x1312, 0x1300          /* 13 r */
        .word   0x1474, 0x1454, 0x1414, 0x1400          /* 14 t */
        .word   0x1579, 0x1559, 0x1519, 0x1500          /* 15 y */
        .word   0x1675, 0x1655, 0x1615, 0x1600          /* 16 u */
        .word   0x1769, 0x1749, 0x1709, 0x1700          /* 17 i */
        .word   0x186F, 0x184F, 0x180F, 0x1800          /* 18 o */
        .word   0x1970, 0x1950, 0x1910, 0x1900          /* 19 p */
        .word   0x1A5B, 0x1A7B, 0x1A1B, 0x1AF0          /* 1A [ { */
        .word   0x1B5D, 0x1B7D, 0x1B1D, 0x1BF0          /* 1B ] } */
        .word   0x1C0D, 0x1C0D, 0x1C0A, 0x1CF0          /* 1C Enter */
        .word   0, 0, 0, 0                              /* 1D left Ctrl */
        .word   0x1E61, 0x1E41, 0x1E01, 0x1E00          /* 1E a */
        .word   0x1F73, 0x1F53, 0x1F13, 0x1F00          /* 1F s */
        .word   0x2064, 0x2044, 0x2004, 0x2000          /* 20 d */
        .word   0x2166, 0x2146, 0x2106, 0x2100          /* 21 f */
        .word   0x2267, 0x2247, 0x2207, 0x2200          /* 22 g */
        .word   0x2368, 0x2348, 0x2308, 0x2300          /* 23 h */
        .word   0x246A, 0x244A, 0x240A, 0x2400          /* 24 j */
        .word   0x256B, 0x254B, 0x250B, 0x2500          /* 25 k */
        .word   0x266C, 0x264C, 0x260C, 0x2600          /* 26 l */
        .word   0x273B, 0x273A, 0x0000, 0x27F0          /* 27 ; : */
        .word   0x2827, 0x2822, 0x0000, 0x28F0          /* 28 ' " */
        .word   0x2960, 0x297E, 0x0000, 0x29F0          /* 29 ` ~ */
        .word   0, 0, 0, 0                              /* 2A left Shift */
        .word   0x2B5C, 0x2B7C, 0x2B1C, 0x2BF0          /* 2B \ | */
        .word   0x2C7A, 0x2C5A, 0x2C1A, 0x2C00          /* 2C z */
        .word   0x2D78, 0x2D58, 0x2D18, 0x2D00          /* 2D x */
        .word   0x2E63, 0x2E43, 0x2E03, 0x2E00          /* 2E c */
        .word   0x2F76, 0x2F56, 0x2F16, 0x2F00          /* 2F v */
        .word   0x3062, 0x3042, 0x3002, 0x3000          /* 30 b */
        .word   0x316E, 0x314E, 0x310E, 0x3100          /* 31 n */
        .word   0x326D, 0x324D, 0x320D, 0x3200          /* 32 m */
        .word   0x332C, 0x333C, 0x0000, 0x33F0          /* 33 , < */
        .word   0x342E, 0x343E, 0x0000, 0x34F0          /* 34 . > */
        .word   0x352F, 0x353F, 0x0000, 0x35F0          /* 35 / ? */
        .word   0, 0, 0, 0                              /* 36 right Shift */
        .word   0x372A, 0x372A, 0x9600, 0x37F0          /* 37 keypad * */
        .word   0, 0, 0, 0                              /* 38 left Alt */
        .word   0x3920, 0x3920, 0x3920, 0x3920          /* 39 space */
        .word   0, 0, 0, 0                              /* 3A Caps Lock */
        .word   0x3B00, 0x5400, 0x5E00, 0x6800          /* 3B F1 */
        .word   0x3C00, 0x5500, 0x5F00, 0x6900          /* 3C F2 */
        .word   0x3D00, 0x5600, 0x6000, 0x6A00          /* 3D F3 */
        .word   0x3E00, 0x5700, 0x6100, 0x6B00          /* 3E F4 */
        .word   0x3F00, 0x5800, 0x6200, 0x6C00          /* 3F F5 */
        .word   0x4000, 0x5900, 0x6300, 0x6D00          /* 40 F6 */
        .word   0x4100, 0x5A00, 0x6400, 0x6E00          /* 41 F7 */
        .word   0x4200, 0x5B00, 0x6500, 0x6F00          /* 42 F8 */
        .word   0x4300, 0x5C00, 0x6600, 0x7000          /* 43 F9 */
        .word   0x4400, 0x5D00, 0x6700, 0x7100          /* 44 F10 */
        .word   0, 0, 0, 0                              /* 45 Num Lock */
        .word   0, 0, 0, 0                              /* 46 Scroll Lock */
        .word   0x4700, 0x4737, 0x7700, 0x0000          /* 47 keypad 7 Home */
        .word   0x4800, 0x4838, 0x8D00, 0x0000          /* 48 keypad 8 Up */
        .word   0x4900, 0x4939, 0x8400, 0x0000          /* 49 keypad 9 PgUp */
        .word   0x4A2D, 0x4A2D, 0x8E00, 0x4AF0          /* 4A keypad - */
        .word   0x4B00, 0x4B34, 0x7300, 0x0000          /* 4B keypad 4 Left */
        .word   0x4C00, 0x4C35, 0x8F00, 0x0000          /* 4C keypad 5 */
        .word   0x4D00, 0x4D36, 0x7400, 0x0000          /* 4D keypad 6 Right */
        .word   0x4E2B, 0x4E2B, 0x9000, 0x4EF0          /* 4E keypad + */
        .word   0x4F00, 0x4F31, 0x7500, 0x0000          /* 4F keypad 1 End */
        .word   0x5000, 0x5032, 0x9100, 0x0000          /* 50 keypad 2 Down */
        .word   0x5100, 0x5133, 0x7600, 0x0000          /* 51 keypad 3 PgDn */
        .word   0x5200, 0x5230, 0x9200, 0x0000          /* 52 keypad 0 Ins */
        .word   0x5300, 0x532E, 0x9300, 0x0000          /* 53 keypad . Del */
        .word   0, 0, 0, 0                              /* 54 SysReq */
        .word   0, 0, 0, 0                              /* 55 */
        .word   0x565C, 0x567C, 0x0000, 0x0000          /* 56 the 102nd key: \ | */
        .word   0x8500, 0x8700, 0x8900, 0x8B00          /* 57 F11 */
        .word   0x8600, 0x8800, 0x8A00, 0x8C00          /* 58 F12 */
key_kp_enter:
        .word   0xE00D, 0xE00D, 0xE00A, 0xA600          /* E0 1C keypad Enter */
key_kp_slash:
        .word   0xE02F, 0xE02F, 0x9500, 0xA400          /* E0 35 keypad / */

/* INT 16h (IBM PC/AT keyboard services, answered as SeaBIOS's src/kbd.c answers):
 * AH=00h/10h read a key word (waiting), 01h/11h look at the next one (ZF=1: none).
 * 10h/11h return the enhanced keyboard's words as stored; 00h/01h turn them into what
 * an 84-key keyboard makes (extended keys' ASCII E0h becomes 00h, keypad Enter and /
 * get the main keys' scan codes). Both turn the ASCII F0h marker into 00h.
 * AH=02h: AL = shift flags (40:17). AH=12h: also AH = 40:18 with right Ctrl and right
 * Alt (40:96 bits 2 and 3) in bits 2 and 3 (where 40:18 has SysReq and Pause).
 * AH=05h: store key word CX (AL = 1 when the ring was full). AH=09h: AL = 30h (10h-12h
 * and 0Ah supported). AH=0Ah: keyboard ID in BX (keyboard.c). AH=92h: AH = 80h (DOS
 * KEYB: 10h-12h supported). AH=6Fh AL=08h: AH = 2 (HP Vectra: not one). Others, and
 * 03h (typematic rate), change nothing. */
        .globl int16_entry
int16_entry:
        cmpb    $0x0A, %ah
        je      int16_c
        pushw   %bp
        movw    %sp, %bp                /* FLAGS of the caller at 6(%bp) */
        pushw   %ds
        pushw   %bx
        pushw   %dx
        movw    $BDA_SEG, %bx
        movw    %bx, %ds
        movb    %ah, %dl
        andb    $0x10, %dl              /* DL = 10h for the enhanced forms */
        movb    %ah, %dh
        andb    $0xEF, %dh
        cmpb    $0x00, %dh
        je      16f
        cmpb    $0x01, %dh
        je      17f
        cmpb    $0x02, %ah
        je      18f
        cmpb    $0x12, %ah
        je      19f
        cmpb    $0x05, %ah
        je      20f
        cmpb    $0x09, %ah
        je      21f
        cmpb    $0x92, %ah
        je      22f
        cmpb    $0x6F, %ah
        je      23f
        jmp     99f
16:     cli                             /* wait for a key */
        call    serial_poll
        movw    0x1A, %bx
        cmpw    0x1C, %bx
        jne     1f
        sti
        hlt
        jmp     16b
1:      movw    (%bx), %ax
        call    kbd_translate
        addw    $2, %bx
        cmpw    0x82, %bx
        jb      2f
        movw    0x80, %bx
2:      movw    %bx, 0x1A
        jmp     99f
17:     cli                             /* look */
        call    serial_poll
        movw    0x1A, %bx
        cmpw    0x1C, %bx
        je      1f
        movw    (%bx), %ax
        call    kbd_translate
        andw    $~0x40, 6(%bp)
        jmp     99f
1:      orw     $0x40, 6(%bp)
        jmp     99f
18:     movb    0x17, %al
        jmp     99f
19:     movw    0x17, %ax
        andb    $~(KF1_RCTRL | KF1_RALT), %ah
        movb    0x96, %bl
        andb    $(KF1_RCTRL | KF1_RALT), %bl
        orb     %bl, %ah
        jmp     99f
20:     movw    0x1C, %bx
        pushw   %ax
        movw    %cx, %ax
        call    kbd_push
        popw    %ax
        movb    $0, %al
        cmpw    0x1C, %bx
        jne     99f
        incb    %al                     /* AL = 1: the ring was full */
        jmp     99f
21:     movb    $0x30, %al
        jmp     99f
22:     movb    $0x80, %ah
        jmp     99f
23:     cmpb    $0x08, %al
        jne     99f
        movb    $0x02, %ah
99:     popw    %dx
        popw    %bx
        popw    %ds
        popw    %bp
        iret

/* Key word AX as AH=00h/01h (DL = 0) or 10h/11h (DL = 10h) return it. */
kbd_translate:
        testb   %dl, %dl
        jnz     2f
        cmpb    $0xE0, %al
        jne     1f
        testb   %ah, %ah
        jz      1f
        xorb    %al, %al
        jmp     2f
1:      cmpw    $0xE00D, %ax
        je      3f
        cmpw    $0xE00A, %ax
        jne     4f
3:      movb    $0x1C, %ah
        jmp     2f
4:      cmpw    $0xE02F, %ax
        jne     2f
        movw    $0x352F, %ax
2:      cmpb    $0xF0, %al
        jne     5f
        testb   %ah, %ah
        jz      5f
        xorb    %al, %al
5:      ret

/* ---------------------------------------------------------------------------------- */
/* INT 10h: the serial console (video.c).                                             */
/* ---------------------------------------------------------------------------------- */
        C_ENTRY int10_entry, handle_10
        C_ENTRY int16_c, handle_16

/* ---------------------------------------------------------------------------------- */
/* INT 15h: AH=86h (wait CX:DX microseconds, in timer ticks with interrupts on) and    */
/* AH=4Fh here; everything else in C.                                                 */
/* ---------------------------------------------------------------------------------- */
        .globl int15_entry
int15_entry:
        cmpb    $0x86, %ah
        je      1f
        cmpb    $0x4F, %ah              /* keyboard intercept (INT 09h calls it per */
        je      4f                      /* byte): not hooked, so CF = 1 keeps the byte */
        jmp     int15_c
4:      pushw   %bp
        movw    %sp, %bp
        orw     $1, 6(%bp)
        popw    %bp
        iret
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
