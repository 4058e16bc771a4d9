/*
 * linuxboot: an option ROM that boots Linux from fw_cfg, for any BIOS that runs option
 * ROMs from fw_cfg's genroms/ directory (SeaBIOS, and pyemu's BIOS).
 *
 * The board puts the setup sectors (with the loader's header fields already filled in,
 * emu/machine/pc/linux.py), the kernel, the command line and the initrd in fw_cfg, each
 * as an address item, a size item and a data item. At boot this ROM copies each part
 * to its address with one fw_cfg DMA read, then enters setup in real mode as the Linux
 * boot protocol's "Running the kernel" section asks: interrupts off, DS = ES = FS = GS =
 * SS = the setup segment, SP 16 bytes below the command line (as QEMU's linuxboot ROM
 * leaves it: the top of the heap for kernels whose header has heap_end_ptr, and a
 * stack for those whose header does not), far jump to segment + 20h, offset 0.
 *
 * References: BIOS Boot Specification 1.01 (option ROM header: 55h AAh, size in
 * 512-byte blocks, initialisation entry at offset 3, PnP expansion header offset at
 * 1Ah; the expansion header's bootstrap entry vector, BEV, which the BIOS far-calls to
 * boot from the device); QEMU docs/specs/fw_cfg.txt (selector 510h, data 511h, DMA
 * address 514h/518h big-endian, FWCfgDmaAccess control bits, item keys); Linux
 * Documentation/x86/boot.rst. romsum.py fills in the size and both checksums.
 */
#define FW_CFG_CTL      0x510
#define FW_CFG_DATA     0x511
#define FW_CFG_DMA_HIGH 0x514
#define FW_CFG_DMA_LOW  0x518
#define DMA_CTL_ERROR   0x01
#define DMA_CTL_READ    0x02
#define DMA_CTL_SELECT  0x08
/* Item keys: address, size, data of each part. */
#define KERNEL_ADDR     0x07
#define KERNEL_SIZE     0x08
#define INITRD_ADDR     0x0A
#define INITRD_SIZE     0x0B
#define KERNEL_DATA     0x11
#define INITRD_DATA     0x12
#define CMDLINE_ADDR    0x13
#define CMDLINE_SIZE    0x14
#define CMDLINE_DATA    0x15
#define SETUP_ADDR      0x16
#define SETUP_SIZE      0x17
#define SETUP_DATA      0x18
#define LOW_STACK       0x7000  /* 0000:7000h: free conventional memory at boot time */

        .code16
        .text
        .globl  _start
_start:
        .byte   0x55, 0xAA
        .byte   0                       /* size in 512-byte blocks (romsum.py) */
        jmp     init                    /* offset 3: initialisation entry */
        .org    0x1A
        .word   pnp

/* PnP expansion header (BBS 1.01 appendix): a bootstrap entry vector, nothing else. */
        .balign 16
pnp:
        .ascii  "$PnP"
        .byte   0x01                    /* structure revision */
        .byte   0x02                    /* length in 16-byte units */
        .word   0                       /* next header: none */
        .byte   0
        .byte   0                       /* checksum of these 32 bytes (romsum.py) */
        .long   0                       /* device identifier */
        .word   manufacturer
        .word   product
        .byte   0x00, 0x00, 0x00        /* device type: unspecified */
        .byte   0x00                    /* device indicators */
        .word   0                       /* boot connection vector: none */
        .word   0                       /* disconnect vector: none */
        .word   bev                     /* bootstrap entry vector */
        .word   0
        .word   0                       /* static resource information: none */

manufacturer:
        .asciz  "pyemu"
product:
        .asciz  "Linux loader (fw_cfg)"

/* Nothing to set up before boot: the BEV does the work. */
init:
        lretw

/* The four parts: address item << 8 | size item, then data item. */
parts:
        .word   SETUP_ADDR << 8 | SETUP_SIZE, SETUP_DATA
        .word   KERNEL_ADDR << 8 | KERNEL_SIZE, KERNEL_DATA
        .word   CMDLINE_ADDR << 8 | CMDLINE_SIZE, CMDLINE_DATA
        .word   INITRD_ADDR << 8 | INITRD_SIZE, INITRD_DATA
parts_end:

/* Bootstrap entry: load the four parts and enter setup. On a fw_cfg error, say so and
 * return to the BIOS, which tries the next boot device. */
bev:
        pushal
        pushw   %ds
        pushw   %es
        cld
        movw    $parts, %si
1:      movw    %cs:(%si), %bx
        movw    %cs:2(%si), %di
        pushw   %si
        call    load_part
        popw    %si
        jc      fail
        addw    $4, %si
        cmpw    $parts_end, %si
        jb      1b
        movb    $CMDLINE_ADDR, %al
        call    read_u32
        movl    %eax, %ebx
        movb    $SETUP_ADDR, %al
        call    read_u32
        subl    %eax, %ebx              /* the stack ends 16 bytes below the command */
        subw    $16, %bx                /* line, as QEMU's ROM leaves it (any version) */
        shrl    $4, %eax
        cli
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %fs
        movw    %ax, %gs
        movw    %ax, %ss
        movzwl  %bx, %esp
        addw    $0x20, %ax
        pushw   %ax
        pushw   $0
        lretw

fail:
        movw    $error_text, %si
1:      movb    %cs:(%si), %al
        testb   %al, %al
        jz      2f
        movb    $0x0E, %ah              /* INT 10h teletype */
        movw    $0x0007, %bx
        int     $0x10
        incw    %si
        jmp     1b
2:      popw    %es
        popw    %ds
        popal
        lretw

/* Copy one part: BH = its address item, BL = its size item, DI = its data item. A part
 * of size 0 (or without items) is skipped. CF set on a fw_cfg DMA error. */
load_part:
        movb    %bl, %al
        call    read_u32
        movl    %eax, %esi              /* size */
        movb    %bh, %al
        call    read_u32                /* address */
        clc
        testl   %esi, %esi
        jz      2f
        subw    $16, %sp                /* FWCfgDmaAccess, big-endian fields */
        movw    %sp, %bp
        bswapl  %eax
        movl    %eax, 12(%bp)           /* address, low half */
        movl    $0, 8(%bp)              /* address, high half */
        bswapl  %esi
        movl    %esi, 4(%bp)            /* length */
        movzwl  %di, %eax
        shll    $16, %eax
        orl     $DMA_CTL_SELECT | DMA_CTL_READ, %eax
        bswapl  %eax
        movl    %eax, (%bp)             /* control: select DI, read */
        xorl    %eax, %eax
        movw    $FW_CFG_DMA_HIGH, %dx
        outl    %eax, %dx
        movw    %ss, %ax                /* the descriptor's flat address: SS * 16 + BP */
        shll    $4, %eax
        movzwl  %bp, %edx
        addl    %edx, %eax
        bswapl  %eax
        movw    $FW_CFG_DMA_LOW, %dx
        outl    %eax, %dx               /* starts the transfer */
1:      movl    (%bp), %eax
        bswapl  %eax
        testl   $~DMA_CTL_ERROR, %eax   /* done when only the error bit may remain */
        jnz     1b
        addw    $16, %sp
        shrl    $1, %eax                /* CF = the error bit */
2:      ret

/* EAX = the first four bytes of item AL, little-endian (0 for an absent item).
 * Clobbers CX and DX. */
read_u32:
        movw    $FW_CFG_CTL, %dx
        movzbw  %al, %ax
        outw    %ax, %dx
        incw    %dx
        movw    $4, %cx
1:      inb     %dx, %al
        rorl    $8, %eax
        loop    1b
        ret

error_text:
        .asciz  "linuxboot: fw_cfg DMA read failed\r\n"
