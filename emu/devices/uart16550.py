"""NS16550A UART: the chip (``Ns16550``) and its ISA wiring on the PC (``isa-serial``:
COM1 at 0x3F8, IRQ 4). pci_serial.py puts the same chip behind a PCI function.

Ref: National Semiconductor PC16550D datasheet — "Registers" (Table II, summary of
registers and DLAB), "Programmable Baud Generator", "Line Control Register",
"Line Status Register", "FIFO Control Register", "Interrupt Identification Register"
(Table IV, interrupt priorities and reset control), "Interrupt Enable Register",
"Modem Control Register" (loopback), "Modem Status Register", "Scratchpad Register"
and "FIFO Interrupt Mode Operation" (character timeout).

Modelling choices:
- Transmission is instantaneous: a byte written to THR goes to the chardev at once,
  so THR and the transmitter are always empty (THRE and TEMT stay set) and the
  transmitter FIFO never holds anything; FCR bit 2 has nothing to clear.
- Reception is paced by the host: the chardev hands over no more than the receiver
  FIFO has room for, so host input never overruns; overrun happens in loopback or
  when ``receive()`` is called past ``can_receive()``.
- Framing and parity errors are never generated; a break (``receive_break()``) is.
- On the PC the OUT2 bit enables the IRQ driver. The datasheet keeps the receiver and
  transmitter interrupts "fully operational" in loopback, and guests (and QEMU's
  model) rely on that for self-tests, so the IRQ follows MCR.OUT2 in loopback too.
- The modem inputs of a host chardev read as CTS, DSR and DCD asserted, RI not.
"""

from __future__ import annotations

from emu.devices.base import Board, Device
from emu.irq import IrqLine
from emu.qom import derived, link, prop, register_type, state

FIFO_SIZE = 16
XTAL_HZ = 1_843_200  # the PC's UART clock: divisor 1 = 115200 baud
TIMEOUT_CHARS = 4

# Register offsets from iobase (DLAB=1 maps DLL/DLM over 0 and 1).
RBR_THR, IER, IIR_FCR, LCR, MCR, LSR, MSR, SCR = range(8)

IER_RDA, IER_THRE, IER_RLS, IER_MS = 0x01, 0x02, 0x04, 0x08

IIR_NONE, IIR_MS, IIR_THRE, IIR_RDA, IIR_RLS, IIR_CTI = 0x01, 0x00, 0x02, 0x04, 0x06, 0x0C
IIR_FIFO_ON = 0xC0

FCR_ENABLE, FCR_RX_RESET, FCR_DMA, FCR_TRIGGER = 0x01, 0x02, 0x08, 0xC0
TRIGGER_LEVELS = (1, 4, 8, 14)

LCR_STOP2, LCR_PARITY, LCR_DLAB = 0x04, 0x08, 0x80

MCR_DTR, MCR_RTS, MCR_OUT1, MCR_OUT2, MCR_LOOP = 0x01, 0x02, 0x04, 0x08, 0x10
MCR_MASK = 0x1F

LSR_DR, LSR_OE, LSR_PE, LSR_FE, LSR_BI = 0x01, 0x02, 0x04, 0x08, 0x10
LSR_THRE, LSR_TEMT, LSR_FIFO_ERR = 0x20, 0x40, 0x80
LSR_LINE_STATUS = LSR_OE | LSR_PE | LSR_FE | LSR_BI

MSR_DCTS, MSR_DDSR, MSR_TERI, MSR_DDCD = 0x01, 0x02, 0x04, 0x08
MSR_CTS, MSR_DSR, MSR_RI, MSR_DCD = 0x10, 0x20, 0x40, 0x80
MSR_DELTAS = 0x0F
HOST_LINES = MSR_CTS | MSR_DSR | MSR_DCD

# Loopback wiring of MCR outputs to MSR inputs.
LOOP_WIRING = ((MCR_DTR, MSR_DSR), (MCR_RTS, MSR_CTS), (MCR_OUT1, MSR_RI), (MCR_OUT2, MSR_DCD))


class Ns16550(Device):
    """NS16550A UART with 16-byte FIFOs; ``chardev`` is bound by the board before realize.
    A subclass wires it: its eight registers on a bus (``read_reg``/``write_reg`` at
    offsets 0-7) and its interrupt output (``wire``)."""

    STATE_VERSION = 1

    divisor = state.u16(reset=0x000C, doc="DLL/DLM baud divisor")
    ier = state.u8(reset=0, doc="interrupt enable (bits 0-3)")
    lcr = state.u8(reset=0, doc="line control; bit 7 is DLAB")
    mcr = state.u8(reset=0, doc="modem control (bits 0-4; bit 4 is loopback)")
    fcr = state.u8(reset=0, doc="FIFO control as programmed: enable, DMA mode, trigger")
    scr = state.u8(reset=0, doc="scratch register")
    msr = state.u8(reset=HOST_LINES, doc="modem status: input lines (bits 4-7), deltas (0-3)")
    line_errors = state.u8(reset=0, doc="LSR bits OE/PE/FE/BI and 7, latched until LSR read")
    rx_fifo = state.bytes(max_len=FIFO_SIZE, reset=b"", doc="received, not yet read")
    thre_pending = state.bool(reset=False, doc="THR-empty interrupt latched")
    timeout_pending = state.bool(reset=False, doc="character timeout interrupt latched")
    timeout_deadline = state.i64(reset=-1, doc="character timeout, virtual ns; -1 = not armed")

    iir = derived.u8(reset=IIR_NONE, doc="interrupt identification, from latches and FCR")
    irq_out = derived.bool(reset=False, doc="level this UART drives onto its IRQ line")

    chardev = link("chardev", doc="the host backend of the port (set by the board)")

    # -- life cycle ---------------------------------------------------------------
    def realize(self, board: Board) -> None:  # type: ignore[override]
        super().realize(board)
        self._irq = self.wire(board)
        self._timer = board.clock.timer(self._char_timeout, f"{self.path}/char-timeout")
        if self.chardev is not None:
            self.chardev.attach(self)

    def unrealize(self) -> None:
        self._timer.cancel()
        if self.chardev is not None:
            self.chardev.attach(None)
        super().unrealize()

    def wire(self, board: Board) -> IrqLine:
        """Connect the registers to a bus; returns the line the interrupt drives."""
        raise NotImplementedError

    def reset(self) -> None:
        super().reset()
        if self.realized:
            self._irq.lower()  # our output pin; the line may have been high before reset

    def rebuild(self) -> None:
        super().rebuild()
        self.iir = self._compute_iir()
        self.irq_out = self._irq_wanted()
        timer = getattr(self, "_timer", None)
        if timer is not None:
            timer.arm(self.timeout_deadline)

    # -- frontend interface for the chardev ---------------------------------------
    def can_receive(self) -> int:
        """Room in the receiver; none in loopback, where the serial input is cut off."""
        if self.mcr & MCR_LOOP:
            return 0
        return self._rx_capacity() - len(self.rx_fifo)

    def receive(self, data: bytes) -> None:
        for byte in data:
            self._receive_byte(byte)
        self._restart_timeout()
        self._update()

    def receive_break(self) -> None:
        """A break condition on the line: a zero character with BI (datasheet LSR bit 4)."""
        self._receive_byte(0)
        self.line_errors |= LSR_BI | (LSR_FIFO_ERR if self._fifo_enabled else 0)
        self._restart_timeout()
        self._update()

    # -- port dispatch ------------------------------------------------------------
    def io_read(self, offset: int, size: int) -> int:
        value = 0
        for i in range(size):  # the ISA bus splits wide accesses into byte cycles
            byte = self._read_reg(offset + i) if offset + i < 8 else 0xFF
            value |= byte << (8 * i)
        return value

    def io_write(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            if offset + i < 8:
                self._write_reg(offset + i, (value >> (8 * i)) & 0xFF)

    def _read_reg(self, reg: int) -> int:
        dlab = self.lcr & LCR_DLAB
        if reg == RBR_THR:
            return self.divisor & 0xFF if dlab else self._read_rbr()
        if reg == IER:
            return self.divisor >> 8 if dlab else self.ier
        if reg == IIR_FCR:
            return self._read_iir()
        if reg == LCR:
            return self.lcr
        if reg == MCR:
            return self.mcr
        if reg == LSR:
            return self._read_lsr()
        if reg == MSR:
            return self._read_msr()
        return self.scr

    def _write_reg(self, reg: int, value: int) -> None:
        dlab = self.lcr & LCR_DLAB
        if reg == RBR_THR:
            if dlab:
                self.divisor = (self.divisor & 0xFF00) | value
            else:
                self._write_thr(value)
        elif reg == IER:
            if dlab:
                self.divisor = (self.divisor & 0x00FF) | (value << 8)
            else:
                self._write_ier(value)
        elif reg == IIR_FCR:
            self._write_fcr(value)
        elif reg == LCR:
            self.lcr = value
        elif reg == MCR:
            self._write_mcr(value)
        elif reg == SCR:
            self.scr = value
        # LSR and MSR writes are factory-test only; ignored.

    # -- receiver -----------------------------------------------------------------
    @property
    def _fifo_enabled(self) -> bool:
        return bool(self.fcr & FCR_ENABLE)

    def _rx_capacity(self) -> int:
        return FIFO_SIZE if self._fifo_enabled else 1

    def _trigger_level(self) -> int:
        return TRIGGER_LEVELS[self.fcr >> 6] if self._fifo_enabled else 1

    def _receive_byte(self, byte: int) -> None:
        if len(self.rx_fifo) < self._rx_capacity():
            self.rx_fifo += bytes((byte,))
            return
        self.line_errors |= LSR_OE
        if not self._fifo_enabled:
            self.rx_fifo = bytes((byte,))  # 16450 mode: the new character overwrites RBR
        # FIFO mode: the character in the shift register is lost, the FIFO kept

    def _read_rbr(self) -> int:
        if not self.rx_fifo:
            return 0
        byte, self.rx_fifo = self.rx_fifo[0], self.rx_fifo[1:]
        self.timeout_pending = False
        self._restart_timeout()
        self._update()
        if not self.rx_fifo:
            self._pull_input()
        return byte

    def _pull_input(self) -> None:
        """The receiver has room again: take what the host has buffered."""
        if self.chardev is not None:
            self.chardev.pump()

    def char_time_ns(self) -> int:
        """One character on the wire (start, data, parity, stop bits) at the set baud rate."""
        data_bits = 5 + (self.lcr & 0x03)
        half_bits = 2 * (1 + data_bits + (1 if self.lcr & LCR_PARITY else 0))
        if not self.lcr & LCR_STOP2:
            half_bits += 2
        else:
            half_bits += 3 if data_bits == 5 else 4  # 1.5 stop bits with 5-bit characters
        divisor = self.divisor or 1  # 0 is not a valid divisor; do not divide time by it
        return half_bits * 16 * divisor * 1_000_000_000 // (2 * XTAL_HZ)

    def _restart_timeout(self) -> None:
        """Character timeout: data waiting and no FIFO activity for 4 character times."""
        if self._fifo_enabled and self.rx_fifo:
            self.timeout_deadline = self.board.clock.now_ns() + TIMEOUT_CHARS * self.char_time_ns()
        else:
            self.timeout_deadline = -1
        self._timer.arm(self.timeout_deadline)

    def _char_timeout(self) -> None:
        self.timeout_deadline = -1
        if self._fifo_enabled and self.rx_fifo:
            self.timeout_pending = True
            self._update()

    # -- transmitter --------------------------------------------------------------
    def _write_thr(self, value: int) -> None:
        self.thre_pending = False
        # The line drops for the write, so the next THRE is a new edge; when it is low
        # already, the IIR in between is never seen and the recompute after will do.
        if self.irq_out:
            self._update()
        if self.mcr & MCR_LOOP:
            self._receive_byte(value)
            self._restart_timeout()
        elif self.chardev is not None:
            self.chardev.write(bytes((value,)))
        self.thre_pending = True  # sent at once: THR is empty again
        self._update()

    # -- control registers --------------------------------------------------------
    def _write_ier(self, value: int) -> None:
        rising = value & ~self.ier
        self.ier = value & 0x0F
        if rising & IER_THRE:
            self.thre_pending = True  # enabling ETBEI while THR is empty interrupts
        self._update()

    def _write_fcr(self, value: int) -> None:
        toggled = (value ^ self.fcr) & FCR_ENABLE
        clear = toggled or (value & FCR_ENABLE and value & FCR_RX_RESET)
        # The other bits are only programmed while FCR0 is (being) set.
        self.fcr = value & (FCR_ENABLE | FCR_DMA | FCR_TRIGGER) if value & FCR_ENABLE else 0
        if clear:
            self._clear_rx()
            self._restart_timeout()  # nothing left to time out
        self._update()
        if clear:
            self._pull_input()

    def _clear_rx(self) -> None:
        self.rx_fifo = b""
        self.timeout_pending = False
        self.line_errors &= ~LSR_FIFO_ERR

    def _write_mcr(self, value: int) -> None:
        was_loop = self.mcr & MCR_LOOP
        self.mcr = value & MCR_MASK
        self._set_modem_inputs(self._modem_inputs())
        self._update()
        if was_loop and not self.mcr & MCR_LOOP:
            self._pull_input()

    def _modem_inputs(self) -> int:
        if not self.mcr & MCR_LOOP:
            return HOST_LINES
        return sum(msr_bit for mcr_bit, msr_bit in LOOP_WIRING if self.mcr & mcr_bit)

    def _set_modem_inputs(self, lines: int) -> None:
        """Latch deltas: any change of CTS/DSR/DCD, and RI going inactive (TERI)."""
        old = self.msr
        delta = ((old ^ lines) >> 4) & (MSR_DCTS | MSR_DDSR | MSR_DDCD)
        if old & MSR_RI and not lines & MSR_RI:
            delta |= MSR_TERI
        self.msr = lines | (old & MSR_DELTAS) | delta

    # -- status registers ---------------------------------------------------------
    def _lsr(self) -> int:
        return (LSR_DR if self.rx_fifo else 0) | LSR_THRE | LSR_TEMT | self.line_errors

    def _read_lsr(self) -> int:
        value = self._lsr()
        if self.line_errors:  # reading clears them; only then can the IIR change
            self.line_errors = 0
            self._update()
        return value

    def _read_msr(self) -> int:
        value = self.msr
        self.msr &= ~MSR_DELTAS & 0xFF
        self._update()
        return value

    def _read_iir(self) -> int:
        value = self.iir
        if value & 0x0F == IIR_THRE:
            self.thre_pending = False  # reading IIR clears THRE when it is the source
            self._update()
        return value

    # -- interrupts ---------------------------------------------------------------
    def _pending_source(self) -> int:
        """The highest-priority enabled interrupt (datasheet Table IV), or IIR_NONE."""
        if self.ier & IER_RLS and self.line_errors & LSR_LINE_STATUS:
            return IIR_RLS
        if self.ier & IER_RDA:
            if len(self.rx_fifo) >= self._trigger_level():
                return IIR_RDA
            if self.timeout_pending:
                return IIR_CTI
        if self.ier & IER_THRE and self.thre_pending:
            return IIR_THRE
        if self.ier & IER_MS and self.msr & MSR_DELTAS:
            return IIR_MS
        return IIR_NONE

    def _compute_iir(self) -> int:
        return self._pending_source() | (IIR_FIFO_ON if self._fifo_enabled else 0)

    def _irq_wanted(self) -> bool:
        return bool(self.mcr & MCR_OUT2 and not self.iir & IIR_NONE)

    def _update(self) -> None:
        """Recompute IIR and drive the IRQ line when its level changes."""
        self.iir = self._compute_iir()
        want = self._irq_wanted()
        if want != self.irq_out:
            self.irq_out = want
            self._irq.set(want)


@register_type("isa-serial")
class Uart16550(Ns16550):
    """The PC's COM ports: the chip on ISA ports at ``iobase`` and ISA IRQ ``irq``."""

    iobase = prop.u16(reset=0x3F8, doc="I/O port base")
    irq = prop.u8(reset=4, doc="ISA IRQ line")

    def wire(self, board: Board) -> IrqLine:
        board.io.register(self.iobase, 8, self.io_read, self.io_write, owner=self.path)
        return board.isa_irq(self.irq)

    def unrealize(self) -> None:
        self.board.io.unregister(self.iobase, 8)
        super().unrealize()
