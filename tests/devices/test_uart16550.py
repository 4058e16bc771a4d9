"""NS16550A UART, driven through its ports as a guest driver would (PC16550D datasheet)."""

from __future__ import annotations

import pytest

from emu.devices.uart16550 import Uart16550
from emu.host.chardev import BufferChardev
from emu.qom import fields_of

BASE = 0x3F8
RBR = THR = DLL = BASE
IER = DLM = BASE + 1
IIR = FCR = BASE + 2
LCR, MCR, LSR, MSR, SCR = BASE + 3, BASE + 4, BASE + 5, BASE + 6, BASE + 7

DLAB, OUT2, LOOP = 0x80, 0x08, 0x10
NO_INT = 0x01


def make_uart(board, chardev=None) -> Uart16550:
    dev = Uart16550("serial0", None)
    dev.chardev = chardev if chardev is not None else BufferChardev()
    dev.realize(board)
    dev.reset()
    return dev


@pytest.fixture
def uart(board) -> Uart16550:
    return make_uart(board)


def irq(board) -> bool:
    return board.irqs[4].level


def feed(dev: Uart16550, data: bytes) -> None:
    """Host bytes arriving on the chardev, handed over as the machine thread would."""
    dev.chardev.feed(data)
    dev.chardev.pump()


def fifo_mode(board, trigger_bits: int = 0) -> None:
    board.outb(FCR, 0x01 | trigger_bits)


# -- registers ----------------------------------------------------------------------

def test_divisor_latch_is_behind_dlab(board, uart):
    board.outb(IER, 0x05)
    board.outb(LCR, DLAB | 0x03)
    board.outb(DLL, 0x01)
    board.outb(DLM, 0x02)
    assert (board.inb(DLL), board.inb(DLM)) == (0x01, 0x02)
    assert uart.divisor == 0x0201
    board.outb(LCR, 0x03)
    assert board.inb(IER) == 0x05  # IER was not overwritten by the DLM write
    assert board.inb(LSR) & 0x01 == 0  # offset 0 is RBR again: nothing received
    board.outb(LCR, DLAB | 0x03)
    board.outb(DLL, 0x01)
    board.outb(DLM, 0x00)
    board.outb(LCR, 0x03)
    assert uart.divisor == 1 and board.inb(LCR) == 0x03  # 115200 baud, 8N1


def test_scratch_register_holds_any_value(board, uart):
    for value in (0x00, 0x5A, 0xA5, 0xFF):
        board.outb(SCR, value)
        assert board.inb(SCR) == value


def test_reset_values(board, uart):
    assert board.inb(IER) == 0
    assert board.inb(IIR) == NO_INT
    assert board.inb(LCR) == 0 and board.inb(MCR) == 0
    assert board.inb(LSR) == 0x60  # THRE | TEMT
    assert board.inb(MSR) == 0xB0  # a host chardev shows CTS, DSR, DCD


# -- transmit -----------------------------------------------------------------------

def test_transmit_goes_to_chardev_and_leaves_thr_empty(board, uart):
    for ch in b"hi\n":
        board.outb(THR, ch)
        assert board.inb(LSR) & 0x60 == 0x60
    assert uart.chardev.take_output() == b"hi\n"


def test_thre_interrupt_is_set_on_enable_and_cleared_by_iir_read(board, uart):
    board.outb(MCR, OUT2)
    board.outb(IER, 0x02)
    assert board.inb(IIR) == 0x02
    assert board.inb(IIR) == NO_INT  # reading IIR with THRE as the source cleared it
    assert not irq(board)
    board.outb(IER, 0x02)  # already enabled: not a rising edge, no new interrupt
    assert board.inb(IIR) == NO_INT
    board.outb(IER, 0x00)
    board.outb(IER, 0x02)  # 0 -> 1 while THR is empty interrupts again
    assert irq(board)


def test_thr_write_gives_a_fresh_edge_per_byte(board, uart):
    levels = []
    board.irqs[4].handler = levels.append
    board.outb(MCR, OUT2)
    board.outb(IER, 0x02)
    assert levels == [True]
    board.outb(THR, ord("a"))
    assert levels == [True, False, True]  # the PIC sees a new rising edge
    assert board.inb(IIR) == 0x02


def test_iir_priority_order(board, uart):
    board.outb(MCR, LOOP)  # inputs all drop: CTS, DSR, DCD deltas latch
    board.outb(MCR, OUT2)
    board.outb(IER, 0x0F)  # also latches THRE
    uart.receive(b"xy")  # 16450 mode: the second byte overruns the first
    assert irq(board)
    assert board.inb(IIR) == 0x06  # receiver line status first
    assert board.inb(LSR) & 0x03 == 0x03  # OE and DR; the read clears OE
    assert board.inb(IIR) == 0x04  # then received data
    assert board.inb(RBR) == ord("y")  # the overrunning byte replaced RBR
    assert board.inb(IIR) == 0x02  # then THR empty, cleared by this read
    assert board.inb(IIR) == 0x00  # then modem status
    assert board.inb(MSR) & 0x0F == 0x0B  # DCTS, DDSR, DDCD; the read clears them
    assert board.inb(IIR) == NO_INT
    assert not irq(board)


def test_disabled_sources_do_not_interrupt(board, uart):
    board.outb(MCR, OUT2)
    uart.receive(b"z")
    assert board.inb(IIR) == NO_INT
    board.outb(IER, 0x01)
    assert board.inb(IIR) == 0x04 and irq(board)


# -- receive ------------------------------------------------------------------------

@pytest.mark.parametrize("bits,level", [(0x00, 1), (0x40, 4), (0x80, 8), (0xC0, 14)])
def test_rx_data_interrupt_at_trigger_level(board, uart, bits, level):
    fifo_mode(board, bits)
    board.outb(MCR, OUT2)
    board.outb(IER, 0x01)
    feed(uart, bytes(range(level - 1)))
    assert board.inb(IIR) == 0xC1 and not irq(board)
    feed(uart, b"\xAA")
    assert board.inb(IIR) == 0xC4 and irq(board)
    expected = bytes(range(level - 1)) + b"\xAA"
    assert board.inb(RBR) == expected[0]
    assert board.inb(IIR) == 0xC1  # below the trigger level again
    assert not irq(board)


def test_character_timeout_after_four_character_times(board, uart):
    board.outb(LCR, DLAB | 0x03)
    board.outb(DLL, 1)
    board.outb(DLM, 0)
    board.outb(LCR, 0x03)
    assert uart.char_time_ns() == 86805  # 10 bits at 115200 baud
    four = 4 * uart.char_time_ns()
    fifo_mode(board, 0x80)  # trigger 8
    board.outb(MCR, OUT2)
    board.outb(IER, 0x01)
    feed(uart, b"abc")
    board.advance(four - 1000)
    assert board.inb(IIR) == 0xC1
    feed(uart, b"d")  # a new character restarts the timer
    board.advance(four - 1000)
    assert board.inb(IIR) == 0xC1
    board.advance(2000)
    assert board.inb(IIR) == 0xCC and irq(board)
    assert board.inb(RBR) == ord("a")  # reading a character clears the timeout
    assert board.inb(IIR) == 0xC1 and not irq(board)
    board.advance(four + 1000)
    assert board.inb(IIR) == 0xCC  # still data waiting: it times out again
    for ch in b"bcd":
        assert board.inb(RBR) == ch
    board.advance(10 * four)
    assert board.inb(IIR) == 0xC1  # empty FIFO: no timeout


def test_timeout_follows_the_baud_rate(board, uart):
    fifo_mode(board, 0xC0)
    board.outb(IER, 0x01)
    feed(uart, b"a")  # reset divisor 12 (9600 baud), 5N1: 7 bits
    assert uart.char_time_ns() == 7 * 16 * 12 * 10**9 // 1_843_200
    board.advance(4 * uart.char_time_ns() - 1)
    assert board.inb(IIR) == 0xC1
    board.advance(2)
    assert board.inb(IIR) == 0xCC


@pytest.mark.timeout(10)
def test_a_clock_years_ahead_times_out_once(board, uart):
    """The character timeout armed, then virtual time jumps ten years (a snapshot's clock
    set far ahead): it fires once, late, and nothing else is due."""
    fifo_mode(board, 0xC0)
    board.outb(MCR, OUT2)
    board.outb(IER, 0x01)
    feed(uart, b"a")
    board.jump(10 * 365 * 86_400 * 10**9)
    assert board.inb(IIR) == 0xCC and irq(board)
    assert board.clock.next_deadline() is None
    assert board.inb(RBR) == ord("a") and board.inb(IIR) == 0xC1


def test_no_timeout_in_16450_mode(board, uart):
    board.outb(IER, 0x01)
    feed(uart, b"a")
    board.advance(10**9)
    assert board.inb(IIR) == 0x04


def test_fifo_overrun_keeps_fifo_and_loses_new_byte(board, uart):
    fifo_mode(board)
    board.outb(MCR, LOOP)
    for i in range(17):
        board.outb(THR, i)
    lsr = board.inb(LSR)
    assert lsr & 0x03 == 0x03
    assert board.inb(LSR) & 0x02 == 0  # OE clears on read
    assert bytes(board.inb(RBR) for _ in range(16)) == bytes(range(16))
    assert board.inb(LSR) & 0x01 == 0


def test_host_input_is_paced_by_fifo_room(board, uart):
    fifo_mode(board)
    uart.chardev.feed(bytes(range(40)))
    uart.chardev.pump()
    assert uart.chardev.pending_input() == 24
    assert board.inb(LSR) & 0x02 == 0  # host input never overruns
    got = bytearray()
    while board.inb(LSR) & 0x01:
        got.append(board.inb(RBR))
    assert bytes(got) == bytes(range(40))  # the UART pulled the rest as room appeared


def test_break_reports_line_status(board, uart):
    fifo_mode(board)
    board.outb(IER, 0x04)
    uart.receive_break()
    assert board.inb(IIR) == 0xC6
    assert board.inb(LSR) & 0x91 == 0x91  # BI, FIFO error, DR
    assert board.inb(IIR) == 0xC1
    assert board.inb(RBR) == 0


# -- FIFO control -------------------------------------------------------------------

def test_fifo_enable_and_reset(board, uart):
    fifo_mode(board, 0x80)
    assert board.inb(IIR) & 0xC0 == 0xC0
    board.outb(MCR, LOOP)
    for ch in b"hello":
        board.outb(THR, ch)
    board.outb(FCR, 0xC1)  # a new trigger level alone keeps the data
    assert board.inb(LSR) & 0x01 and len(uart.rx_fifo) == 5
    board.outb(FCR, 0x83)  # keep FIFOs on, clear the receiver
    assert board.inb(LSR) & 0x01 == 0
    assert uart.fcr == 0x81
    board.outb(THR, ord("x"))
    board.outb(FCR, 0x00)  # leaving FIFO mode clears the FIFOs as well
    assert board.inb(LSR) & 0x01 == 0
    assert board.inb(IIR) & 0xC0 == 0
    board.outb(FCR, 0xC0)  # without FCR0 the trigger bits are not programmed
    assert uart.fcr == 0


# -- modem control and loopback -----------------------------------------------------

def test_loopback_bytes_stay_inside(board, uart):
    uart.chardev.feed(b"host")
    board.outb(MCR, LOOP)
    uart.chardev.pump()
    board.outb(THR, ord("A"))
    assert uart.chardev.take_output() == b""
    assert board.inb(LSR) & 0x01
    assert board.inb(RBR) == ord("A")  # the serial input is cut off from the host
    assert board.inb(LSR) & 0x01 == 0
    board.outb(MCR, 0)
    assert board.inb(RBR) == ord("h")  # host input waited, was not dropped


@pytest.mark.parametrize("mcr_bit,msr_bit", [(0x01, 0x20), (0x02, 0x10), (0x04, 0x40),
                                             (0x08, 0x80)])
def test_loopback_wires_modem_lines(board, uart, mcr_bit, msr_bit):
    board.outb(MCR, LOOP)
    board.inb(MSR)
    board.outb(MCR, LOOP | mcr_bit)
    msr = board.inb(MSR)
    assert msr & 0xF0 == msr_bit
    delta = {0x10: 0x01, 0x20: 0x02, 0x40: 0x00, 0x80: 0x08}[msr_bit]  # RI: trailing edge
    assert msr & 0x0F == delta
    board.outb(MCR, LOOP)
    msr = board.inb(MSR)
    assert msr & 0xF0 == 0
    assert msr & 0x0F == (0x04 if msr_bit == 0x40 else delta)


def test_modem_status_interrupt(board, uart):
    board.outb(IER, 0x08)
    board.outb(MCR, LOOP)
    assert board.inb(IIR) == 0x00
    board.inb(MSR)
    assert board.inb(IIR) == NO_INT


def test_out2_gates_the_irq_line(board, uart):
    board.outb(IER, 0x02)
    assert board.inb(IIR) == 0x02 and not irq(board)
    board.outb(IER, 0x00)
    board.outb(IER, 0x02)
    board.outb(MCR, OUT2)
    assert irq(board)
    board.outb(MCR, 0)
    assert not irq(board)
    board.outb(MCR, LOOP)  # loopback without OUT2: still gated
    assert not irq(board)
    board.outb(MCR, OUT2 | LOOP)  # interrupts stay operational in loopback
    assert irq(board)
    assert board.inb(IIR) == 0x02
    assert not irq(board)  # that IIR read cleared it


def test_reset_lowers_irq(board, uart):
    board.outb(MCR, OUT2)
    board.outb(IER, 0x02)
    assert irq(board)
    uart.reset()
    assert not irq(board)
    assert board.inb(IIR) == NO_INT


def test_word_access_splits_into_bytes(board, uart):
    board.outb(LCR, DLAB)
    board.outw(DLL, 0x0180)
    assert uart.divisor == 0x0180
    assert board.inw(DLL) == 0x0180


# -- state table ----------------------------------------------------------------------

@pytest.mark.parametrize("latched", [True, False], ids=["timeout-latched", "timeout-armed"])
def test_state_fields_are_complete(board, latched):
    old = make_uart(board)
    board.outb(LCR, DLAB | 0x03)
    board.outb(DLL, 3)
    board.outb(DLM, 0)
    board.outb(LCR, 0x1B)  # 8E1
    board.outb(FCR, 0x81)  # FIFO, trigger 8
    board.outb(MCR, LOOP | 0x03)
    board.outb(THR, 0x41)
    board.outb(THR, 0x42)
    board.outb(MCR, OUT2 | 0x01)  # leaves MSR deltas latched
    board.outb(SCR, 0x5C)
    board.outb(IER, 0x0F)
    old.receive(b"XY")
    board.advance(4 * old.char_time_ns() + (1 if latched else -1))
    old.receive(b"Z")  # re-arms the character timeout
    old.receive_break()

    fresh_board = type(board)()
    fresh_board.advance(board.clock.now_ns())
    new = make_uart(fresh_board)
    for f in fields_of(Uart16550, "state"):
        setattr(new, f.attr, getattr(old, f.attr))
    new.rebuild()
    assert (new.iir, new.irq_out) == (old.iir, old.irq_out)
    assert old.timeout_pending == latched and old.timeout_deadline > 0 and old.line_errors

    def script(b, dev):
        seen = []
        for port in (IIR, LSR, IIR, MSR, IIR, SCR, LCR, MCR, IER):
            seen.append((b.inb(port), dev.irq_out))
        for _ in range(6):  # the timeout fires at the deadline carried over
            b.advance(dev.char_time_ns())
            seen.append((b.inb(IIR), dev.irq_out))
        for _ in range(8):
            seen.append((b.inb(RBR), b.inb(IIR), b.inb(LSR), dev.irq_out))
        b.outb(LCR, DLAB | 0x1B)
        seen.append((b.inb(DLL), b.inb(DLM)))
        seen.append(b.irqs[4].level)
        return seen

    assert script(board, old) == script(fresh_board, new)
