"""Motorola MC146818A real-time clock and CMOS RAM, as wired on the PC (ports 70h/71h, IRQ8).

References followed:
- Motorola MC146818A datasheet: "Address Map" (14 clock and control bytes, then general
  RAM), "Time, Calendar and Alarm Locations" (table of binary/BCD ranges, the 12-hour PM
  bit, alarm "don't care" codes C0h-FFh), "Register A" (UIP; DV2-DV0 time-base and divider
  reset selections; RS3-RS0 and the periodic interrupt rate table, where rates 1 and 2
  give 256 and 128 Hz with a 32.768 kHz time base), "Register B" (SET, PIE, AIE, UIE,
  SQWE, DM, 24/12, DSE; SET high clears UIE), "Register C" (IRQF, PF, AF, UF: flags set
  whether or not enabled, all cleared by a read), "Register D" (VRT), "Update Cycle" (UIP
  rises 244 us before the update; the first update comes 500 ms after the divider chain
  leaves reset), "Interrupts" and "RESET" (clears PIE, AIE, UIE, SQWE, IRQF, PF, AF, UF).
- IBM PC/AT Technical Reference, "CMOS RAM Address Map": index port 70h whose bit 7
  masks NMI, data port 71h, the equipment and memory-size bytes, the checksum of 10h-2Dh
  kept at 2Eh-2Fh, the century at 32h.
- QEMU's PC CMOS layout (facts only): 15h-18h, 30h/31h, 34h/35h, 5Bh-5Dh memory sizes,
  5Fh CPU count minus one, 3Dh/38h boot order as SeaBIOS reads it, 12h/19h-2Ch hard disk
  types and geometry, 39h translation hints.

Time model. Nothing ticks. While the divider chain runs, guest calendar time is
``base_seconds + floor((now - base_ns) / 1 s)``: ``base_ns`` is a virtual instant at which
an update happened, so it also anchors the 32.768 kHz divider grid that the update cycle,
UIP and the periodic interrupt are derived from (tick ``j`` at ``base_ns + ceil(j * 1e9 /
32768)`` ns; every period divides one second, so periodic edges never drift). Seconds
count from 1970-01-01 in a proleptic Gregorian calendar with no time zone and no leap
seconds. While the clock is halted (SET, or a divider selection other than 010) the time
registers are ordinary bytes of ``cmos`` that the guest may rewrite; they are frozen there
when the clock halts and decoded back when it resumes.

PF, AF and UF are latched lazily: ``synced_ns`` records up to when the flags account for
events, and every register access (and the timer) first adds what happened since. The
timer is armed only for an event whose flag is enabled and only while IRQF is clear,
since IRQF (and the IRQ line it drives) can then only fall through a read of register C.

Modelling choices:
- Only DV = 010 (32.768 kHz, the PC's crystal) runs the clock. 11x holds the divider in
  reset; every other selection is treated as stopped as well. Leaving a stopped state for
  010 starts the chain half a second before the next update.
- The day of week is kept as an offset from the weekday of the date (1 = Sunday), so a
  guest-written weekday keeps counting 1-7 from what was written.
- Invalid time values written by a guest are normalised the way ``mktime`` would (61
  seconds carry into the minute, day 31 of June is July 1st); BCD digits above 9 weigh
  as written.
- Changing DM or 24/12 while the clock runs changes how the time reads at once (the
  hardware leaves the old bytes until the guest rewrites them; every guest does).
- DSE (daylight saving) and SQWE (square-wave pin, not wired on the PC) are kept as
  written and otherwise ignored.
- Reset: the clock, register A, the alarm and B's SET/DM/24-12/DSE are battery-backed
  and survive; the RESET pin clears PIE/AIE/UIE/SQWE and the flags. The general RAM
  (0Eh-7Fh except the century at 32h) is reloaded from ``nvram_init`` at every reset, so
  the board's layout (memory sizes, boot order) is what firmware finds after a reboot.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from emu.clock import NS_PER_SEC, Timer
from emu.devices.base import Board, Device
from emu.irq import IrqLine
from emu.qom import prop, register_type, state

TIMEBASE_HZ = 32_768
UIP_TICKS = 8  # UIP rises 244 us (eight time-base cycles) before each update
SECONDS_PER_DAY = 86_400
CMOS_SIZE = 128

# Clock and control bytes, datasheet address map; 32h is the PC/AT century byte.
SEC, SEC_ALARM, MIN, MIN_ALARM, HOUR, HOUR_ALARM, WDAY, MDAY, MONTH, YEAR = range(10)
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
CLOCK_BYTES = 0x0E
CENTURY = 0x32
TIME_REGS = (SEC, MIN, HOUR, WDAY, MDAY, MONTH, YEAR, CENTURY)

A_UIP, A_DV, A_RS = 0x80, 0x70, 0x0F
DV_NORMAL = 0x20  # 010: 32.768 kHz time base, chain running
B_SET, B_PIE, B_AIE, B_UIE, B_SQWE, B_DM, B_24H, B_DSE = (0x80, 0x40, 0x20, 0x10, 0x08, 0x04,
                                                          0x02, 0x01)
B_RESET_CLEARS = B_PIE | B_AIE | B_UIE | B_SQWE
C_IRQF, C_PF, C_AF, C_UF = 0x80, 0x40, 0x20, 0x10
C_FLAGS = C_PF | C_AF | C_UF  # each sits at the same bit as its enable in register B
D_VRT = 0x80
DONT_CARE = 0xC0

POWER_ON_A = DV_NORMAL | 0x06  # 1024 Hz, as PC firmware programs it
POWER_ON_B = B_24H


def _power_on_cmos() -> bytes:
    cmos = bytearray(CMOS_SIZE)
    cmos[REG_A], cmos[REG_B] = POWER_ON_A, POWER_ON_B
    return bytes(cmos)


# -- calendar arithmetic -------------------------------------------------------------

def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date. Out-of-range months and days
    carry into the next year/month (month 13 is January, day 0 the previous month's last)."""
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    y = year - (month <= 2)
    era, yoe = divmod(y, 400)
    doy = (153 * ((month + 9) % 12) + 2) // 5  # days since March 1st
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468 + day - 1


def civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day count since 1970-01-01."""
    era, doe = divmod(days + 719_468, 146_097)
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def weekday(days: int) -> int:
    """RTC day of week (1 = Sunday) of a day count since 1970-01-01 (a Thursday)."""
    return (days + 4) % 7 + 1


# -- register formats ----------------------------------------------------------------

@dataclass(frozen=True)
class RegisterFormat:
    """How the time bytes are coded, from register B: DM (binary) and 24/12."""

    binary: bool
    h24: bool

    @classmethod
    def of(cls, reg_b: int) -> RegisterFormat:
        return cls(bool(reg_b & B_DM), bool(reg_b & B_24H))

    def encode(self, value: int) -> int:
        if self.binary:
            return value & 0xFF
        return (value // 10 % 10) << 4 | value % 10

    def decode(self, raw: int) -> int:
        return raw if self.binary else (raw >> 4) * 10 + (raw & 0x0F)

    def encode_hour(self, hour: int) -> int:
        if self.h24:
            return self.encode(hour)
        return self.encode(hour % 12 or 12) | (0x80 if hour >= 12 else 0)

    def decode_hour(self, raw: int) -> int:
        if self.h24:
            return self.decode(raw)
        return self.decode(raw & 0x7F) % 12 + (12 if raw & 0x80 else 0)

    def time_registers(self, seconds: int, wday_delta: int) -> dict[int, int]:
        """The time bytes showing ``seconds`` since 1970-01-01."""
        days, sod = divmod(seconds, SECONDS_PER_DAY)
        year, month, mday = civil_from_days(days)
        return {SEC: self.encode(sod % 60), MIN: self.encode(sod // 60 % 60),
                HOUR: self.encode_hour(sod // 3600),
                WDAY: self.encode((days + 4 + wday_delta) % 7 + 1),
                MDAY: self.encode(mday), MONTH: self.encode(month),
                YEAR: self.encode(year % 100), CENTURY: self.encode(year // 100 % 100)}

    def time_of(self, regs: Callable[[int], int]) -> tuple[int, int]:
        """(seconds since 1970-01-01, weekday offset) shown by the time bytes ``regs(i)``."""
        year = self.decode(regs(CENTURY)) * 100 + self.decode(regs(YEAR))
        days = days_from_civil(year, self.decode(regs(MONTH)), self.decode(regs(MDAY)))
        seconds = (days * SECONDS_PER_DAY + self.decode_hour(regs(HOUR)) * 3600
                   + self.decode(regs(MIN)) * 60 + self.decode(regs(SEC)))
        wday_delta = (self.decode(regs(WDAY)) - weekday(days)) % 7
        return seconds, wday_delta

    def alarm_values(self, raw: int, count: int, hours: bool) -> list[int]:
        """The values 0..count-1 an alarm byte matches, ascending (all for "don't care")."""
        if raw & DONT_CARE == DONT_CARE:
            return list(range(count))
        enc = self.encode_hour if hours else self.encode
        return [v for v in range(count) if enc(v) == raw]


def _first_at_or_after(target: tuple[int, ...], choices: list[list[int]]) -> tuple[int, ...] | None:
    """Smallest tuple of the product of ``choices`` (each ascending) that is >= ``target``."""
    if not choices:
        return ()
    for v in choices[0]:
        if v > target[0]:
            return (v, *(c[0] for c in choices[1:]))
        if v == target[0]:
            tail = _first_at_or_after(target[1:], choices[1:])
            if tail is not None:
                return (v, *tail)
    return None


def next_alarm_second(after: int, hours: list[int], minutes: list[int],
                      seconds: list[int]) -> int | None:
    """First second > ``after`` (since 1970) whose time of day is in the given sets."""
    choices = [hours, minutes, seconds]
    if not all(choices):
        return None
    day, sod = divmod(after + 1, SECONDS_PER_DAY)
    hit = _first_at_or_after((sod // 3600, sod // 60 % 60, sod % 60), choices)
    if hit is None:
        day, hit = day + 1, (hours[0], minutes[0], seconds[0])
    return day * SECONDS_PER_DAY + hit[0] * 3600 + hit[1] * 60 + hit[2]


def periodic_ticks(reg_a: int) -> int:
    """Periodic interrupt period in 32.768 kHz cycles for RS3-RS0; 0 for none."""
    rs = reg_a & A_RS
    if rs == 0:
        return 0
    if rs <= 2:
        rs += 7  # rates 1 and 2 alias 256 and 128 Hz with a 32.768 kHz time base
    return 1 << (rs - 1)


# -- the -rtc base= option -------------------------------------------------------------

_DATE_RE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:T(\d{1,2}):(\d{1,2}):(\d{1,2}))?")


def parse_rtc_base(text: str) -> str | datetime:
    """``-rtc base=`` as QEMU accepts it: "utc", "localtime", or a date "2006-06-17" or
    date and time "2006-06-17T16:01:21". ValueError with a one-line message otherwise."""
    if text in ("utc", "localtime"):
        return text
    m = _DATE_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"invalid RTC base {text!r}: expected utc, localtime, "
                         "YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS")
    try:
        return datetime(*(int(g) for g in m.groups() if g is not None))
    except ValueError as e:
        raise ValueError(f"invalid RTC base {text!r}: {e}") from None


def initial_time(base: str | datetime) -> tuple[int, int]:
    """(seconds since 1970-01-01 of the guest's wall clock, ns already into that second)."""
    if isinstance(base, datetime):
        days = days_from_civil(base.year, base.month, base.day)
        return days * SECONDS_PER_DAY + base.hour * 3600 + base.minute * 60 + base.second, 0
    seconds, frac = divmod(time.time_ns(), NS_PER_SEC)
    if base == "localtime":
        tm = time.localtime(seconds)
        seconds = (days_from_civil(tm.tm_year, tm.tm_mon, tm.tm_mday) * SECONDS_PER_DAY
                   + tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec)
    return seconds, frac


# -- the device ------------------------------------------------------------------------

@register_type("mc146818")
class Rtc(Device):
    """MC146818A RTC with 128 bytes of CMOS at 70h/71h, driving ISA IRQ8."""

    iobase = prop.u16(reset=0x70, doc="I/O base: index port, data port at +1")
    irq = prop.u8(reset=8, doc="ISA IRQ driven by IRQF")
    base = prop.str(reset="utc", max_len=64, doc="initial guest time: utc, localtime, "
                    "YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS (as -rtc base=)")
    nvram_init = prop.bytes(max_len=CMOS_SIZE, reset=b"", doc="CMOS contents by address as the "
                            "board lays them out; bytes 0Eh-7Fh but 32h load at every reset")

    index = state.u8(reset=0, doc="register selected by port 70h bits 0-6")
    nmi_masked = state.bool(reset=False, doc="port 70h bit 7: NMI disabled")
    cmos = state.bytes(max_len=CMOS_SIZE, reset=_power_on_cmos(), doc="the 128 bytes by "
                       "address: time bytes (meaningful while halted), alarm, A (no UIP), B, "
                       "C's PF/AF/UF as latched up to synced_ns, general RAM")
    base_seconds = state.i64(reset=0, doc="guest time, seconds since 1970-01-01, at base_ns")
    base_ns = state.i64(reset=0, doc="virtual ns of an update; anchors the divider grid")
    wday_delta = state.u8(reset=0, doc="day of week minus the weekday of the date, mod 7")
    synced_ns = state.i64(reset=0, doc="virtual ns up to which PF/AF/UF account for events")
    irq_out = state.bool(reset=False, doc="level last driven onto the IRQ line (IRQF)")
    deadline = state.i64(reset=-1, doc="virtual ns of the next enabled interrupt event; "
                         "-1 when none is due or IRQF is already set")

    _line: IrqLine | None = None
    _timer: Timer | None = None

    def realize(self, board: Board) -> None:  # type: ignore[override]
        super().realize(board)
        try:
            base = parse_rtc_base(self.base)
        except ValueError as e:
            raise ValueError(f"{self.path}: property 'base': {e}") from None
        self._line = board.isa_irq(self.irq)
        self._timer = board.clock.timer(self._on_timer, self.path)
        board.io.register(self.iobase, 2, self._port_read, self._port_write, owner=self.path,
                          byte_wide=True)
        now = board.clock.now_ns()
        self.base_seconds, into_second = initial_time(base)
        self.base_ns = now - into_second
        self.synced_ns = now

    def reset(self) -> None:
        """The RESET pin, with the battery-backed clock kept and the RAM reloaded."""
        cmos = self._bytes()
        kept = (self.base_seconds, self.base_ns, self.wday_delta)
        super().reset()
        self.base_seconds, self.base_ns, self.wday_delta = kept
        ram = bytearray(self.nvram_init.ljust(CMOS_SIZE, b"\0"))
        ram[:CLOCK_BYTES] = cmos[:CLOCK_BYTES]
        ram[CENTURY] = cmos[CENTURY]
        ram[REG_B] &= ~B_RESET_CLEARS
        ram[REG_C] = 0
        self.cmos = bytes(ram)
        now = self._now()
        self.synced_ns = now
        if self._line is not None:
            self._line.lower()
        self._settle(now)

    def rebuild(self) -> None:
        self._arm()

    # -- views of the state -----------------------------------------------------------
    def _bytes(self) -> bytearray:
        """``cmos`` as exactly 128 bytes (a loaded state may be short)."""
        return bytearray(self.cmos[:CMOS_SIZE].ljust(CMOS_SIZE, b"\0"))

    def _peek(self, i: int) -> int:
        return self.cmos[i] if i < len(self.cmos) else 0

    def _poke(self, i: int, value: int) -> None:
        cmos = self._bytes()
        cmos[i] = value & 0xFF
        self.cmos = bytes(cmos)

    @property
    def _running(self) -> bool:
        """The divider chain counts (DV = 010)."""
        return self._peek(REG_A) & A_DV == DV_NORMAL

    @property
    def _updating(self) -> bool:
        """Update cycles happen: the chain runs and SET is clear."""
        return self._running and not self._peek(REG_B) & B_SET

    @property
    def _format(self) -> RegisterFormat:
        return RegisterFormat.of(self._peek(REG_B))

    def _now(self) -> int:
        return self.board.clock.now_ns()

    def _seconds_index(self, t: int) -> int:
        """Number of updates since base_ns at virtual time ``t`` (negative before it)."""
        return (t - self.base_ns) // NS_PER_SEC

    def _ticks(self, t: int) -> int:
        """Time-base cycles since base_ns that have occurred at virtual time ``t``."""
        return (t - self.base_ns) * TIMEBASE_HZ // NS_PER_SEC

    def _tick_ns(self, tick: int) -> int:
        return self.base_ns - (-tick * NS_PER_SEC // TIMEBASE_HZ)

    def _guest_seconds(self, t: int) -> int:
        return self.base_seconds + self._seconds_index(t)

    def _time_registers(self, t: int) -> dict[int, int]:
        """The time bytes as the guest reads them at ``t``."""
        if self._updating:
            return self._format.time_registers(self._guest_seconds(t), self.wday_delta)
        return {i: self._peek(i) for i in TIME_REGS}

    def _uip(self, t: int) -> bool:
        return self._updating and self._ticks(t) % TIMEBASE_HZ >= TIMEBASE_HZ - UIP_TICKS

    def _irqf(self) -> bool:
        return bool(self._peek(REG_C) & self._peek(REG_B) & C_FLAGS)

    # -- events -------------------------------------------------------------------------
    def _next_alarm_ns(self, t: int) -> int | None:
        """Virtual ns of the first update after ``t`` whose new time matches the alarm."""
        fmt = self._format
        second = next_alarm_second(
            self._guest_seconds(t),
            fmt.alarm_values(self._peek(HOUR_ALARM), 24, hours=True),
            fmt.alarm_values(self._peek(MIN_ALARM), 60, hours=False),
            fmt.alarm_values(self._peek(SEC_ALARM), 60, hours=False))
        if second is None:
            return None
        return self.base_ns + (second - self.base_seconds) * NS_PER_SEC

    def _flags_between(self, a: int, b: int) -> int:
        """PF/AF/UF raised by events in the virtual time interval (a, b]."""
        if b <= a or not self._running:
            return 0
        flags = 0
        period = periodic_ticks(self._peek(REG_A))
        if period and self._ticks(a) // period < self._ticks(b) // period:
            flags |= C_PF
        if self._updating:
            if self._seconds_index(a) < self._seconds_index(b):
                flags |= C_UF
            alarm = self._next_alarm_ns(a)
            if alarm is not None and alarm <= b:
                flags |= C_AF
        return flags

    def _sync(self, now: int) -> None:
        """Latch the flags of everything that happened up to ``now``."""
        flags = self._flags_between(self.synced_ns, now)
        if flags:
            self._poke(REG_C, self._peek(REG_C) | flags)
        self.synced_ns = max(self.synced_ns, now)

    def _next_event(self, now: int) -> int:
        """Virtual ns at which an enabled flag next rises; -1 if none or IRQF is set."""
        if self._irqf() or not self._running:
            return -1
        reg_b, due = self._peek(REG_B), []
        period = periodic_ticks(self._peek(REG_A))
        if reg_b & B_PIE and period:
            due.append(self._tick_ns((self._ticks(now) // period + 1) * period))
        if self._updating and reg_b & B_UIE:
            due.append(self.base_ns + (self._seconds_index(now) + 1) * NS_PER_SEC)
        if self._updating and reg_b & B_AIE:
            alarm = self._next_alarm_ns(now)
            if alarm is not None:
                due.append(alarm)
        return min(due, default=-1)

    def _settle(self, now: int) -> None:
        """After a change at ``now``: arm the next event, then drive IRQF onto the line
        (last, so that a handler reading register C finds the device consistent)."""
        self.deadline = self._next_event(now)
        self._arm()
        level = self._irqf()
        if level != self.irq_out and self._line is not None:
            self.irq_out = level
            self._line.set(level)

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.arm(self.deadline)

    def _on_timer(self) -> None:
        now = self._now()
        self._sync(now)
        self._settle(now)

    # -- clock halting ------------------------------------------------------------------
    def _freeze(self, now: int) -> None:
        """Copy the running time into the time bytes (the clock is about to halt)."""
        cmos = self._bytes()
        for i, value in self._time_registers(now).items():
            cmos[i] = value
        self.cmos = bytes(cmos)

    def _set_time(self, now: int, regs: Callable[[int], int]) -> None:
        """The running clock shows the time bytes ``regs`` from ``now`` on; the divider
        phase is kept, so the next update still comes on the grid."""
        self.base_seconds, self.wday_delta = self._format.time_of(regs)
        self.base_ns += self._seconds_index(now) * NS_PER_SEC

    # -- registers ----------------------------------------------------------------------
    def _read_register(self, i: int) -> int:
        now = self._now()
        self._sync(now)
        if i == REG_A:
            return self._peek(REG_A) & ~A_UIP | (A_UIP if self._uip(now) else 0)
        if i == REG_C:
            value = self._peek(REG_C) & C_FLAGS | (C_IRQF if self._irqf() else 0)
            self._poke(REG_C, 0)
            self._settle(now)
            return value
        if i == REG_D:
            return D_VRT
        if i in TIME_REGS:
            return self._time_registers(now)[i]
        return self._peek(i)

    def _write_register(self, i: int, value: int) -> None:
        now = self._now()
        self._sync(now)
        if i == REG_A:
            self._write_a(now, value)
        elif i == REG_B:
            self._write_b(now, value)
        elif i in (REG_C, REG_D):
            return  # read-only
        elif i in TIME_REGS and self._updating:
            regs = self._time_registers(now)
            regs[i] = value
            self._set_time(now, regs.__getitem__)
        else:
            self._poke(i, value)
        self._settle(now)

    def _write_a(self, now: int, value: int) -> None:
        was_running, was_updating = self._running, self._updating
        if was_updating and value & A_DV != DV_NORMAL:
            self._freeze(now)
        self._poke(REG_A, value & ~A_UIP)
        if self._running and not was_running:
            # Out of divider reset: the first update comes 500 ms later.
            self.base_ns = now - NS_PER_SEC // 2
            if self._updating:
                self._set_time(now, self._peek)

    def _write_b(self, now: int, value: int) -> None:
        was_updating = self._updating
        if value & B_SET:
            value &= ~B_UIE
            if was_updating:
                self._freeze(now)  # in the format the bytes were kept in so far
        self._poke(REG_B, value)
        if self._updating and not was_updating:
            self._set_time(now, self._peek)

    # -- ports ----------------------------------------------------------------------------
    def _port_read(self, offset: int, _size: int) -> int:
        if offset == 0:
            return 0xFF  # the index register is write-only
        return self._read_register(self.index)

    def _port_write(self, offset: int, _size: int, value: int) -> None:
        if offset == 0:
            self.index = value & 0x7F
            self.nmi_masked = bool(value & 0x80)
        else:
            self._write_register(self.index, value)


# -- the PC's CMOS layout --------------------------------------------------------------

BOOT_DEVICES = {"a": 1, "b": 1, "c": 2, "d": 3, "n": 4}  # floppy, hard disk, CD-ROM, network
MAX_BOOT_DEVICES = 3
EXTENDED_DISK_TYPE = 47  # "user defined": geometry follows in the disk parameter block
KIB, MIB = 1024, 1024 * 1024


@dataclass(frozen=True)
class DiskGeometry:
    """An ATA disk's BIOS geometry, and the translation hint SeaBIOS reads from 39h."""

    cylinders: int
    heads: int
    sectors: int
    translation: int = 0  # 0 none (firmware chooses), 1 LBA, 2 large


def boot_order_nibbles(order: str) -> list[int]:
    """The CMOS boot device codes for ``-boot`` letters; ValueError for a bad string."""
    if not order:  # firmware needs a first device (fw_cfg's BOOT_DEVICE is its letter)
        raise ValueError("empty boot order")
    if len(order) > MAX_BOOT_DEVICES:
        raise ValueError(f"too many boot devices for PC: {order!r} (at most 3)")
    for letter in order:
        if letter not in BOOT_DEVICES:
            raise ValueError(f"invalid boot device for PC: {letter!r}")
    return [BOOT_DEVICES[letter] for letter in order] + [0] * (MAX_BOOT_DEVICES - len(order))


def cmos_checksum(cmos: bytes) -> int:
    """The PC/AT checksum: the 16-bit sum of bytes 10h-2Dh, stored big-endian at 2Eh."""
    return sum(cmos[0x10:0x2E]) & 0xFFFF


def _put(cmos: bytearray, at: int, value: int, width: int) -> None:
    cmos[at:at + width] = value.to_bytes(width, "little")


def _put_disk(cmos: bytearray, unit: int, geo: DiskGeometry) -> None:
    """Type nibble in 12h, extended type and the 9-byte parameter block of disk 0 or 1."""
    cmos[0x12] |= 0xF0 >> (4 * unit)
    cmos[0x19 + unit] = EXTENDED_DISK_TYPE
    block = (0x1B, 0x24)[unit]
    _put(cmos, block, geo.cylinders & 0xFFFF, 2)
    cmos[block + 2] = geo.heads & 0xFF
    _put(cmos, block + 3, 0xFFFF, 2)  # no write precompensation
    cmos[block + 5] = 0xC0 | (0x08 if geo.heads > 8 else 0)
    _put(cmos, block + 6, geo.cylinders & 0xFFFF, 2)  # landing zone
    cmos[block + 8] = geo.sectors & 0xFF


def pc_nvram(ram_below_4g: int, ram_above_4g: int = 0, boot_order: str = "cad", cpus: int = 1,
             disks: Sequence[DiskGeometry | None] = ()) -> bytes:
    """The 128 CMOS bytes PC firmware expects (give them to ``nvram_init``).

    ``disks`` are the IDE units in order primary master, primary slave, secondary master,
    secondary slave; None for an absent or non-disk unit. No floppy drives.
    """
    if cpus < 1:
        raise ValueError(f"cpus must be at least 1, not {cpus}")
    if len(disks) > 4:
        raise ValueError(f"at most 4 IDE units, not {len(disks)}")
    boot = boot_order_nibbles(boot_order)
    cmos = bytearray(CMOS_SIZE)
    kib = ram_below_4g // KIB
    _put(cmos, 0x15, min(kib, 640), 2)
    extended = min(max(kib - 1024, 0), 0xFFFF)
    _put(cmos, 0x17, extended, 2)
    _put(cmos, 0x30, extended, 2)
    _put(cmos, 0x34, min(max(ram_below_4g - 16 * MIB, 0) // (64 * KIB), 0xFFFF), 2)
    _put(cmos, 0x5B, min(ram_above_4g // (64 * KIB), 0xFFFFFF), 3)
    cmos[0x5F] = cpus - 1 if cpus <= 0x100 else 0  # 0: firmware asks fw_cfg instead
    cmos[0x3D] = boot[1] << 4 | boot[0]
    cmos[0x38] = boot[2] << 4  # bit 0 clear: check the floppy boot signature
    cmos[0x10] = 0x00  # no floppy drives
    cmos[0x14] = 0x06  # equipment: math coprocessor, PS/2 mouse; 00 in bits 4-5 = EGA/VGA
    translation = 0
    for unit, geo in enumerate(disks):
        if geo is None:
            continue
        if unit < 2:
            _put_disk(cmos, unit, geo)
        translation |= (geo.translation & 3) << (2 * unit)
    cmos[0x39] = translation
    cmos[0x2E:0x30] = cmos_checksum(cmos).to_bytes(2, "big")
    return bytes(cmos)
