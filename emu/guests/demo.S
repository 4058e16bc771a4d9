/*
 * pyemu's bundled demo guest: a Multiboot kernel that shows the machine is alive.
 * It prints a banner on COM1, counts PIT ticks (IRQ0 at 100 Hz) and reports the
 * uptime every 5 seconds, and echoes what you type through the UART's receive
 * interrupt (IRQ4). Between interrupts it idles in HLT.
 */
        .include "multiboot32.inc"
        .set COM1, 0x3F8
        .set PIT_DIVISOR, 11932          /* 1193182 Hz / 100 */

        .text
        .code32
        .globl _start
_start:
        MB32_START stack_top
        call    serial_init
        mov     $banner, %esi
        call    puts
        call    idt_init
        call    pic_init
        mov     $0x34, %al               /* channel 0, lo/hi, mode 2 */
        out     %al, $0x43
        mov     $PIT_DIVISOR & 0xFF, %al
        out     %al, $0x40
        mov     $PIT_DIVISOR >> 8, %al
        out     %al, $0x40
        mov     $0x01, %al               /* IER: received data available */
        mov     $COM1 + 1, %dx
        out     %al, %dx
        mov     $0x0B, %al               /* MCR: DTR, RTS, OUT2 (IRQ enable) */
        mov     $COM1 + 4, %dx
        out     %al, %dx
        sti
idle:   hlt
        jmp     idle

serial_init:
        mov     $COM1 + 3, %dx
        mov     $0x80, %al               /* DLAB */
        out     %al, %dx
        mov     $COM1, %dx
        mov     $1, %al                  /* 115200 baud */
        out     %al, %dx
        inc     %dx
        xor     %al, %al
        out     %al, %dx
        mov     $COM1 + 3, %dx
        mov     $0x03, %al               /* 8N1 */
        out     %al, %dx
        mov     $COM1 + 2, %dx
        mov     $0xC7, %al               /* FIFO on, cleared, trigger 14 */
        out     %al, %dx
        ret

/* putc: %al, polled on THRE */
putc:   push    %eax
        mov     $COM1 + 5, %dx
2:      in      %dx, %al
        test    $0x20, %al
        jz      2b
        pop     %eax
        mov     $COM1, %dx
        out     %al, %dx
        ret

/* puts: NUL-terminated string at %esi */
puts:   lodsb
        test    %al, %al
        jz      3f
        call    putc
        jmp     puts
3:      ret

/* putdec: %eax as decimal */
putdec: mov     $10, %ecx
        xor     %ebx, %ebx
4:      xor     %edx, %edx
        div     %ecx
        push    %edx
        inc     %ebx
        test    %eax, %eax
        jnz     4b
5:      pop     %eax
        add     $'0', %al
        call    putc
        dec     %ebx
        jnz     5b
        ret

pic_init:
        mov     $0x11, %al               /* ICW1: edge, cascade, ICW4 */
        out     %al, $0x20
        out     %al, $0xA0
        mov     $0x20, %al               /* ICW2: vectors 0x20 and 0x28 */
        out     %al, $0x21
        mov     $0x28, %al
        out     %al, $0xA1
        mov     $0x04, %al               /* ICW3: slave on IR2 */
        out     %al, $0x21
        mov     $0x02, %al
        out     %al, $0xA1
        mov     $0x01, %al               /* ICW4: 8086 mode */
        out     %al, $0x21
        out     %al, $0xA1
        mov     $0xEE, %al               /* unmask IRQ0 and IRQ4 */
        out     %al, $0x21
        mov     $0xFF, %al
        out     %al, $0xA1
        ret

/* set_gate: vector %ecx, handler %eax */
set_gate:
        lea     idt(,%ecx,8), %edi
        mov     %ax, (%edi)
        movw    $0x08, 2(%edi)
        movw    $0x8E00, 4(%edi)         /* present, DPL0, 32-bit interrupt gate */
        shr     $16, %eax
        mov     %ax, 6(%edi)
        ret

idt_init:
        xor     %ecx, %ecx
6:      mov     $unexpected, %eax
        call    set_gate
        inc     %ecx
        cmp     $48, %ecx
        jne     6b
        mov     $0x20, %ecx
        mov     $timer_isr, %eax
        call    set_gate
        mov     $0x24, %ecx
        mov     $com1_isr, %eax
        call    set_gate
        lidt    idt_desc
        ret

timer_isr:
        pusha
        incl    ticks
        mov     ticks, %eax
        xor     %edx, %edx
        mov     $500, %ecx
        div     %ecx
        test    %edx, %edx
        jnz     7f
        mov     %eax, %ecx
        mov     $uptime_msg, %esi
        push    %ecx
        call    puts
        pop     %eax
        imul    $5, %eax
        call    putdec
        mov     $uptime_end, %esi
        call    puts
7:      mov     $0x20, %al
        out     %al, $0x20
        popa
        iret

com1_isr:
        pusha
8:      mov     $COM1 + 5, %dx
        in      %dx, %al
        test    $0x01, %al
        jz      9f
        mov     $COM1, %dx
        in      %dx, %al
        cmp     $'\r', %al
        jne     10f
        mov     $'\n', %al
        call    putc
        mov     $'\r', %al
10:     call    putc
        jmp     8b
9:      mov     $0x20, %al
        out     %al, $0x20
        popa
        iret

unexpected:
        mov     $unexpected_msg, %esi
        call    puts
        cli
11:     hlt
        jmp     11b

        .data
banner:
        .ascii  "\r\npyemu demo guest: the machine is alive.\r\n"
        .ascii  "Type and your keys echo back through the UART interrupt.\r\n"
        .asciz  "Ctrl-a c: monitor (try 'info registers'), Ctrl-a x: quit.\r\n"
uptime_msg:     .asciz "[demo] uptime "
uptime_end:     .asciz " s\r\n"
unexpected_msg: .asciz "\r\n[demo] unexpected exception; halting\r\n"
        MB32_GDT
idt_desc:
        .word   48 * 8 - 1
        .long   idt
ticks:  .long   0

        .bss
        .align 8
idt:    .space  48 * 8
        .space  4096
stack_top:
