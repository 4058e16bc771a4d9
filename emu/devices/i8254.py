"""Intel 8254 programmable interval timer, as wired on the PC, and system control port B.

References followed:
- Intel 8254 Programmable Interval Timer datasheet (order no. 231164): "Control Word
  Format", "Write Operations", "Read Operations" (simple read, Counter Latch Command,
  Read-Back Command, Status Byte and its NULL COUNT bit), "Mode Definitions" (modes
  0-5; modes 6 and 7 are modes 2 and 3) and "Gate" (table of GATE pin operations).
- IBM PC/AT Technical Reference, "System Timers" and "I/O Address Map"; Intel 82371AB
  (PIIX4) datasheet, "NMI Status and Control Register" (port 61h): bit 0 timer 2 gate,
  bit 1 speaker data enable, bits 2-3 parity/IOCHK check enables, bit 4 refresh
  toggle, bit 5 timer 2 OUT, bits 6-7 IOCHK/SERR status (read-only).

On the PC the three counters run from one 1.193182 MHz clock. Channel 0's OUT is ISA
IRQ0; channel 1 used to pace DRAM refresh; channel 2 feeds the speaker and its GATE
is port 61h bit 0. Channels 0 and 1 have GATE tied high.

Nothing here ticks. The counter clock is an absolute grid derived from virtual time
(CLK edge ``k`` falls at ``k * 1e9 / 1193182`` ns), and each counter keeps the CLK edge
at which its counting element (CE) was last loaded and the value it was loaded with;
counts and OUT levels are computed from those on demand. A load that the datasheet
says happens "on the next CLK pulse" (a count written in modes 0/2/3/4, a trigger in
modes 1/5, a reload at the end of a period in modes 2/3) is kept as a pending load
with its CLK edge and applied lazily the first time the counter is looked at on or
after that edge. Only a counter wired to an interrupt line arms a timer, at each edge
of OUT, so the line follows OUT exactly -- up to CATCHUP_PERIODS periods of a wave
behind; earlier periods are skipped whole (see ``_advance``), so that a timer however
late, a clock loaded far ahead or a deadline loaded far back costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from emu.clock import HORIZON_NS, NS_PER_SEC, Timer
from emu.devices.base import Board, Device
from emu.irq import IrqLine
from emu.qom import Object, prop, register_type, state

PIT_HZ = 1_193_182
# Channel 1's count on the PC BIOS (18): the refresh request period that port 61h
# bit 4 toggles with, about 15.09 us.
REFRESH_TICKS = 18

# Periods of a mode 2/3 wave that a late timer still emits edge by edge (a slow CPU
# slice is a few); periods before these are skipped whole.
CATCHUP_PERIODS = 64


def ns_to_ticks(ns: int) -> int:
    """Number of counter CLK edges that have occurred at virtual time ``ns``."""
    return ns * PIT_HZ // NS_PER_SEC


def ticks_to_ns(tick: int) -> int:
    """The first virtual nanosecond at which CLK edge ``tick`` has occurred."""
    return -(-tick * NS_PER_SEC // PIT_HZ)


def to_bcd(value: int) -> int:
    """0..9999 as four BCD digits."""
    return int(str(value), 16)


def from_bcd(raw: int) -> int:
    """Four BCD digits as an integer; out-of-range digits weigh as written."""
    return ((raw >> 12) & 0xF) * 1000 + ((raw >> 8) & 0xF) * 100 + ((raw >> 4) & 0xF) * 10 + (
        raw & 0xF)


def square_wave_count(n: int, r: int) -> int:
    """Mode 3 CE value ``r`` CLKs into a period of ``n``.

    Even ``n``: the CE goes down by two per CLK in each half. Odd ``n``: the first CLK
    after a reload takes one off in the high half and three in the low half, then two
    per CLK, which makes the high half one CLK longer (datasheet, mode 3).
    """
    high = (n + 1) // 2
    h, low_half = (r, False) if r < high else (r - high, True)
    if n % 2 == 0 or h == 0:
        return n - 2 * h
    return n - 1 - 2 * h if low_half else n + 1 - 2 * h


@register_type("i8254-channel")
class PitChannel(Device):
    """One 8254 counter: control word, count register, counting element, latches, OUT."""

    gate_tied_high = prop.bool(reset=True, doc="GATE wired high (PC channels 0 and 1)")
    irq = prop.i8(reset=-1, doc="ISA IRQ that OUT drives; -1 for none")

    mode = state.u8(reset=0, doc="M2-M0 as programmed (6 and 7 alias 2 and 3)")
    rw = state.u8(reset=3, doc="RW1-RW0 as programmed: 1 LSB, 2 MSB, 3 LSB then MSB")
    bcd = state.bool(reset=False, doc="count in BCD (modulus 10000) instead of binary")
    cr = state.u16(reset=0, doc="count register, as written (BCD digits in BCD mode)")
    count_written = state.bool(reset=False, doc="a whole count was written since the control word")
    write_msb_next = state.bool(reset=False, doc="write flip-flop: LSB written, MSB expected")
    read_msb_next = state.bool(reset=False, doc="read flip-flop: LSB read, MSB next")
    count_latched = state.bool(reset=False, doc="output latch holds a latched count")
    latch_value = state.u16(reset=0, doc="latched count, as read (BCD in BCD mode)")
    status_latched = state.bool(reset=False, doc="a status byte is latched for the next read")
    status_value = state.u8(reset=0, doc="latched status byte")
    null_count = state.bool(reset=False, doc="count register not yet loaded into the CE")
    gate = state.bool(reset=False, doc="GATE input level when not tied high")
    load_tick = state.i64(reset=-1, doc="CLK edge at which the CE was loaded; -1 while "
                          "not counting")
    count_start = state.u32(reset=0, doc="CE value at load_tick (1..modulus); the held "
                            "CE value while not counting")
    terminal = state.bool(reset=False, doc="one-shot modes: terminal count already passed "
                          "before load_tick")
    pending_tick = state.i64(reset=-1, doc="CLK edge of a pending CE load from the count "
                             "register; -1 for none")
    out_driven = state.bool(reset=False, doc="level last driven onto the IRQ line")
    deadline = state.i64(reset=-1, doc="virtual ns of the next OUT edge on the IRQ line; "
                         "-1 when idle")

    _line: IrqLine | None = None
    _timer: Timer | None = None

    def realize(self, board: Board) -> None:  # type: ignore[override]
        super().realize(board)
        if self.irq >= 0:
            self._line = board.isa_irq(self.irq)
            self._timer = board.clock.timer(self._on_timer, self.path)

    def rebuild(self) -> None:
        self._arm()

    # -- derived views ----------------------------------------------------------
    @property
    def op_mode(self) -> int:
        """Operating mode 0-5 (modes 6 and 7 are 2 and 3: M2 is a don't-care there)."""
        return self.mode - 4 if self.mode >= 6 else self.mode

    @property
    def modulus(self) -> int:
        return 10000 if self.bcd else 0x10000

    @property
    def gate_high(self) -> bool:
        return self.gate_tied_high or self.gate

    @property
    def _ce_start(self) -> int:
        """``count_start`` while counting: 1..modulus, as every load leaves it. Only a
        loaded state can put 0 there; like an initial count of 0 it stands for the
        modulus (datasheet, "Minimum and Maximum Initial Counts"), rather than divide
        by zero."""
        return self.count_start or self.modulus

    def _cr_count(self) -> int:
        """The count register as a CE value: 0 stands for the modulus."""
        value = from_bcd(self.cr) % 10000 if self.bcd else self.cr
        return value or self.modulus

    def _out(self, t: int) -> bool:
        """OUT at CLK edge ``t`` (after ``_sync(t)``)."""
        m = self.op_mode
        if self.load_tick < 0:
            return self.terminal if m == 0 else True
        e, n = t - self.load_tick, self._ce_start
        if m in (0, 1):
            return self.terminal or e >= n
        if m in (4, 5):
            return self.terminal or e != n
        if m == 2:
            return e % n != n - 1
        return e % n < (n + 1) // 2

    def _count(self, t: int) -> int:
        """CE value at CLK edge ``t`` (after ``_sync(t)``), 0..modulus-1."""
        if self.load_tick < 0:
            return self.count_start % self.modulus
        e, n = t - self.load_tick, self._ce_start
        m = self.op_mode
        if m == 2:
            value = n - e % n
        elif m == 3:
            value = square_wave_count(n, e % n)
        else:
            value = n - e
        return value % self.modulus

    def _read_value(self, t: int) -> int:
        count = self._count(t)
        return to_bcd(count) if self.bcd else count

    def _status(self, t: int) -> int:
        return (self._out(t) << 7 | self.null_count << 6 | self.rw << 4 | self.mode << 1
                | self.bcd)

    def _next_change(self, t: int) -> int | None:
        """First CLK edge after ``t`` at which OUT changes or a pending load happens."""
        candidates = [self.pending_tick] if self.pending_tick > t else []
        if self.load_tick >= 0:
            e, n, m = t - self.load_tick, self._ce_start, self.op_mode
            if m in (0, 1) and not self.terminal and e < n:
                candidates.append(self.load_tick + n)
            elif m in (4, 5) and not self.terminal and e <= n:
                candidates.append(self.load_tick + n + (e == n))
            elif m == 2 and n > 1:
                r = e % n
                candidates.append(t + n - 1 - r if r < n - 1 else t + 1)
            elif m == 3 and n > 1:
                candidates.append(self._reload_tick(t))
        return min(candidates, default=None)

    def _reload_tick(self, t: int) -> int:
        """Next CLK edge after ``t`` at which a running mode 2/3 counter reloads from the
        count register: the end of the period (mode 2) or of the half-period (mode 3)."""
        n = self._ce_start
        r = (t - self.load_tick) % n
        if self.op_mode == 3 and r < (n + 1) // 2:
            return t + (n + 1) // 2 - r
        return t + n - r

    # -- counting element transitions -------------------------------------------
    def _sync(self, t: int) -> None:
        if 0 <= self.pending_tick <= t:
            self._load(self.pending_tick, run=True)

    def _load(self, tick: int, run: bool) -> None:
        """Load the CE from the count register at CLK edge ``tick``."""
        n = self._cr_count()
        start = tick
        if run and self.op_mode == 3 and self.load_tick >= 0 and not self._out(tick):
            # A count written mid-wave takes over at the end of the half-cycle; when
            # that half was high the new wave starts with its low half.
            start = tick - (n + 1) // 2
        self.load_tick = start if run else -1
        self.count_start = n
        self.terminal = False
        self.pending_tick = -1
        self.null_count = False

    def _hold(self, t: int) -> None:
        """Stop counting at CLK edge ``t``, keeping the CE value (and OUT in mode 0)."""
        if self.load_tick < 0:
            return
        e, n = t - self.load_tick, self._ce_start
        if self.op_mode in (2, 3):
            self.count_start = self._count(t)
        else:
            self.terminal = self.terminal or e >= n
            self.count_start = (n - e - 1) % self.modulus + 1
        self.load_tick = -1

    # -- IRQ line ---------------------------------------------------------------
    def _now(self) -> int:
        return ns_to_ticks(self.board.clock.now_ns())

    def _advance(self, t: int) -> None:
        """Bring the counter to CLK edge ``t``, emitting the OUT edges due on the way.

        A timer can fire late (at the end of a CPU slice); each edge is still emitted,
        in order, and the next deadline follows from the edge, not from the late now.
        Of a mode 2/3 wave more than CATCHUP_PERIODS periods behind, the earlier periods
        are skipped whole: no guest instruction runs between these edges, and the
        8259 latches one request for any number of them (8259A datasheet, "Edge and
        level triggered modes"), so the guest sees the same and the cost is bounded.
        """
        while self.deadline >= 0 and ns_to_ticks(self.deadline) <= t:
            edge = ns_to_ticks(self.deadline)
            self._sync(edge)
            edge = self._skip_periods(edge, t)
            self._drive(self._out(edge))
            self._set_deadline(self._next_change(edge))
        self._sync(t)

    def _skip_periods(self, edge: int, t: int) -> int:
        """``edge``, or for a running mode 2/3 wave the edge a whole number of periods
        later (same phase: same OUT, same next change) that leaves CATCHUP_PERIODS
        periods before ``t`` -- or before a pending load, which changes the wave."""
        if self.load_tick < 0 or self.op_mode not in (2, 3):
            return edge
        n = self._ce_start
        until = t if self.pending_tick < 0 else min(t, self.pending_tick)
        periods = (until - edge) // n - CATCHUP_PERIODS
        return edge + periods * n if periods > 0 else edge

    def _settle(self, t: int) -> None:
        """After a change at ``t``: put OUT on the line and arm the next edge."""
        if self._line is None:
            return
        self._drive(self._out(t))
        self._set_deadline(self._next_change(t))
        self._arm()

    def _set_deadline(self, tick: int | None) -> None:
        deadline = -1 if tick is None else ticks_to_ns(tick)
        # An edge past the clock's horizon never comes (a loaded state's far tick); -1
        # also keeps the field inside its 64 bits.
        self.deadline = -1 if deadline > HORIZON_NS else deadline

    def _drive(self, level: bool) -> None:
        if level != self.out_driven and self._line is not None:
            self.out_driven = level
            self._line.set(level)

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.arm(self.deadline)

    def _on_timer(self) -> None:
        self._advance(self._now())
        self._arm()

    def _operate(self, op: Callable[[int], int | None]) -> int | None:
        """Run ``op`` at the current CLK edge with the counter brought up to date."""
        t = self._now()
        self._advance(t)
        result = op(t)
        self._settle(t)
        return result

    # -- guest-visible operations -------------------------------------------------
    def program(self, rw: int, mode: int, bcd: bool) -> None:
        """Control word for this counter: all control logic resets, OUT to its initial level."""
        def op(t: int) -> None:
            self._hold(t)
            self.mode, self.rw, self.bcd = mode, rw, bool(bcd)
            self.write_msb_next = self.read_msb_next = False
            self.count_latched = self.status_latched = False
            self.pending_tick = -1
            self.null_count = True
            self.count_written = False
            # OUT goes low for mode 0 and high for all other modes.
            self.terminal = self.op_mode != 0
        self._operate(op)

    def write_count(self, value: int) -> None:
        """A byte written to the counter's data port."""
        def op(t: int) -> None:
            if self.rw == 3 and not self.write_msb_next:
                self.cr = (self.cr & 0xFF00) | value
                self.write_msb_next = True
                if self.op_mode == 0:
                    # Writing the first byte stops counting and sets OUT low at once.
                    self._hold(t)
                    self.terminal = False
                    self.pending_tick = -1
                return
            if self.rw == 1:
                self.cr = value
            elif self.rw == 2:
                self.cr = value << 8
            else:
                self.cr = (self.cr & 0xFF) | value << 8
                self.write_msb_next = False
            self._count_complete(t)
        self._operate(op)

    def _count_complete(self, t: int) -> None:
        self.count_written = True
        self.null_count = True
        m = self.op_mode
        if m in (1, 5):
            return  # the CE is loaded by the next GATE trigger
        if m == 0:
            self._hold(t)
            self.terminal = False
        if not self.gate_high:
            self._hold(t)
            self._load(t, run=False)  # loaded, but counting waits for GATE
        elif m in (2, 3) and self.load_tick >= 0:
            self.pending_tick = self._reload_tick(t)
        else:
            self.pending_tick = t + 1

    def set_gate(self, level: bool) -> None:
        """Drive the GATE input (only effective on a counter whose GATE is not tied high)."""
        def op(t: int) -> None:
            rising = self.gate_high
            self.gate = bool(level)
            if rising == self.gate_high:
                return
            if self.gate_high:
                self._gate_rise(t)
            else:
                self._gate_fall(t)
        self._operate(op)

    def _gate_rise(self, t: int) -> None:
        if not self.count_written:
            return
        if self.op_mode in (0, 4):
            if self.load_tick < 0 and not (self.op_mode == 0 and self.write_msb_next):
                self.load_tick = t  # counting resumes from the held CE value
        else:
            self.pending_tick = t + 1  # trigger: (re)load from the count register

    def _gate_fall(self, t: int) -> None:
        m = self.op_mode
        if m in (0, 4):
            if self.pending_tick >= 0:
                self._load(t, run=False)
            self._hold(t)
        elif m in (2, 3):
            # Counting stops and OUT goes high; the next rising edge reloads the CE.
            self._hold(t)
            self.pending_tick = -1

    def latch_count(self) -> None:
        """Counter Latch Command (or read-back COUNT): a second latch before reading is ignored."""
        def op(t: int) -> None:
            if not self.count_latched:
                self.latch_value = self._read_value(t)
                self.count_latched = True
        self._operate(op)

    def latch_status(self) -> None:
        """Read-back STATUS: ignored while a status byte is still latched."""
        def op(t: int) -> None:
            if not self.status_latched:
                self.status_value = self._status(t)
                self.status_latched = True
        self._operate(op)

    def read_byte(self) -> int:
        """A byte read from the data port: latched status, else latched count, else live count."""
        def op(t: int) -> int:
            if self.status_latched:
                self.status_latched = False
                return self.status_value
            value = self.latch_value if self.count_latched else self._read_value(t)
            if self.rw == 3 and not self.read_msb_next:
                self.read_msb_next = True
                return value & 0xFF
            self.read_msb_next = False
            self.count_latched = False
            return value & 0xFF if self.rw == 1 else value >> 8
        result = self._operate(op)
        assert result is not None
        return result

    def poll_out(self, t: int) -> tuple[bool, int | None]:
        """OUT at CLK edge ``t`` (now), and the first edge after it at which OUT may
        change or the counter's state would (None: never, as things stand)."""
        self._advance(t)
        return self._out(t), self._next_change(t)


@register_type("i8254")
class Pit8254(Device):
    """The PC's 8254 at 40h-43h plus system control port B (61h)."""

    iobase = prop.u16(reset=0x40, doc="I/O base of counters 0-2 and the control word")
    irq = prop.u8(reset=0, doc="ISA IRQ driven by counter 0's OUT")
    port_b = prop.u16(reset=0x61, doc="I/O port of system control port B")

    port61 = state.u8(reset=0, doc="port 61h writable bits 0-3: timer 2 gate, speaker data "
                      "enable, parity and IOCHK check enables")

    PORT61_WRITABLE = 0x0F

    def __init__(self, name: str, parent: Object | None = None, **props: object) -> None:
        super().__init__(name, parent, **props)
        self.channels = [PitChannel(f"ch{i}", self, gate_tied_high=(i != 2)) for i in range(3)]

    def realize(self, board: Board) -> None:  # type: ignore[override]
        super().realize(board)
        self.channels[0].set_prop("irq", self.irq)  # before the channels realize
        board.io.register(self.iobase, 4, self._read_byte, self._write_byte, owner=self.path,
                          byte_wide=True)
        board.io.register(self.port_b, 1, self._port_b_read, self._port_b_write,
                          owner=self.path)

    def rebuild(self) -> None:
        if self.realized:  # a loaded or reset counter 2 may differ from what the CPU holds
            self._port_b_changes()

    # -- 40h-43h ------------------------------------------------------------------
    def _read_byte(self, offset: int, _size: int) -> int:
        if offset >= 3:
            return 0xFF  # the control word register cannot be read
        return self.channels[offset].read_byte()

    def _write_byte(self, offset: int, _size: int, value: int) -> None:
        self._port_b_changes()
        if offset < 3:
            self.channels[offset].write_count(value)
        elif offset == 3:
            self._control(value)

    def _control(self, value: int) -> None:
        select, rw = value >> 6, (value >> 4) & 3
        if select == 3:
            self._read_back(value)
        elif rw == 0:
            self.channels[select].latch_count()
        else:
            self.channels[select].program(rw, (value >> 1) & 7, bool(value & 1))

    def _read_back(self, value: int) -> None:
        """Read-back: bit 5 low latches counts, bit 4 low latches status, bits 1-3 pick counters."""
        for i, ch in enumerate(self.channels):
            if value & (2 << i):
                if not value & 0x20:
                    ch.latch_count()
                if not value & 0x10:
                    ch.latch_status()

    # -- 61h ------------------------------------------------------------------------
    def _port_b_read(self, offset: int, size: int) -> int:
        t = ns_to_ticks(self.board.clock.now_ns())
        out2, change = self.channels[2].poll_out(t)
        value = self.port61 | ((t // REFRESH_TICKS) & 1) << 4 | out2 << 5
        # Linux polls this port for OUT2 (pit_calibrate_tsc): ~10^6 reads a boot under
        # -icount, where PIT time moves only with the poll loop's own instructions. The
        # value holds until the refresh bit flips or counter 2 changes (an OUT edge or a
        # pending load: the only state a read touches), so the CPU answers until then
        # without calling back; any write here or to 40h-43h takes that back.
        until = (t // REFRESH_TICKS + 1) * REFRESH_TICKS
        if change is not None:
            until = min(until, change)
        self.board.port_constant(self.port_b, value, ticks_to_ns(until))
        return value

    def _port_b_changes(self) -> None:
        """Port 61h's value may change now: reads go to the device again."""
        self.board.port_constant(-1, 0, 0)

    def _port_b_write(self, offset: int, size: int, value: int) -> None:
        self._port_b_changes()
        self.port61 = value & self.PORT61_WRITABLE
        self.channels[2].set_gate(bool(value & 1))
