"""MC146818 RTC/CMOS, driven through ports 70h/71h as PC firmware and Linux drive it."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from emu.devices.mc146818 import (
    DiskGeometry,
    Rtc,
    cmos_checksum,
    parse_rtc_base,
    pc_nvram,
)
from emu.qom import fields_of

if TYPE_CHECKING:
    from conftest import BenchBoard

INDEX, DATA = 0x70, 0x71
SEC, SEC_ALARM, MIN, MIN_ALARM, HOUR, HOUR_ALARM, WDAY, MDAY, MONTH, YEAR = range(10)
REG_A, REG_B, REG_C, REG_D, CENTURY = 0x0A, 0x0B, 0x0C, 0x0D, 0x32
SET, PIE, AIE, UIE, DM, H24 = 0x80, 0x40, 0x20, 0x10, 0x04, 0x02
IRQF, PF, AF, UF = 0x80, 0x40, 0x20, 0x10
UIP = 0x80
S = 1_000_000_000
BASE = "2006-06-17T16:01:21"  # a Saturday; realized at virtual time 0, so updates fall on k * 1 s


def make_rtc(board: BenchBoard, **props: object) -> Rtc:
    props.setdefault("base", BASE)
    rtc = Rtc("rtc", None, **props)
    rtc.realize(board)
    rtc.reset()
    return rtc


@pytest.fixture
def rtc(board: BenchBoard) -> Rtc:
    return make_rtc(board)


def rd(board: BenchBoard, reg: int) -> int:
    board.outb(INDEX, reg)
    return board.inb(DATA)


def wr(board: BenchBoard, reg: int, value: int) -> None:
    board.outb(INDEX, reg)
    board.outb(DATA, value)


def goto(board: BenchBoard, t: int) -> None:
    board.advance(t - board.clock.now_ns())


def clock(board: BenchBoard) -> list[int]:
    """century, year, month, day, hours, minutes, seconds, weekday as read."""
    return [rd(board, r) for r in (CENTURY, YEAR, MONTH, MDAY, HOUR, MIN, SEC, WDAY)]


def guest_datetime(board: BenchBoard) -> datetime:
    """The date and time a guest reads, in the power-on BCD 24-hour format."""
    cent, year, month, day, hour, minute, sec, _ = (int(f"{v:x}") for v in clock(board))
    return datetime(cent * 100 + year, month, day, hour, minute, sec)


def service(board: BenchBoard, until: int, irq: int = 8) -> list[int]:
    """Run until ``until`` as a guest whose IRQ8 handler reads register C; returns the
    virtual times of the rising edges of the line."""
    edges: list[int] = []
    board.irqs[irq].handler = lambda level: edges.append(board.clock.now_ns()) if level else None
    while (nxt := board.clock.next_deadline()) is not None and nxt <= until:
        goto(board, max(nxt, board.clock.now_ns()))
        if board.irqs[irq].level:
            rd(board, REG_C)
    goto(board, until)
    return edges


# -- reading the time --------------------------------------------------------------------

def test_power_on_registers_and_bcd_24h_time(board, rtc):
    assert rd(board, REG_A) == 0x26 and rd(board, REG_B) == H24
    assert rd(board, REG_C) == 0 and rd(board, REG_D) == 0x80
    assert clock(board) == [0x20, 0x06, 0x06, 0x17, 0x16, 0x01, 0x21, 7]


def test_binary_mode(board, rtc):
    wr(board, REG_B, H24 | DM)
    assert clock(board) == [20, 6, 6, 17, 16, 1, 21, 7]


@pytest.mark.parametrize("base,reg_b,hour", [
    (BASE, 0x00, 0x84),                     # 16h BCD 12-hour: 4 PM
    (BASE, DM, 0x84),                       # binary 12-hour
    ("2006-06-17T00:30:00", 0x00, 0x12),    # 12 AM
    ("2006-06-17T12:30:00", 0x00, 0x92),    # 12 PM
    ("2006-06-17T23:30:00", DM, 0x8B),      # 11 PM binary
    ("2006-06-17T23:30:00", H24 | DM, 23),
])
def test_hours_in_12_and_24_hour_modes(board, base, reg_b, hour):
    make_rtc(board, base=base)
    wr(board, REG_B, reg_b)
    assert rd(board, HOUR) == hour


@pytest.mark.parametrize("base,expect", [
    ("2006-06-17T23:59:58", [0x20, 0x06, 0x06, 0x18, 0x00, 0x00, 0x00, 1]),
    ("1999-12-31T23:59:58", [0x20, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 7]),
    ("2023-12-31T23:59:58", [0x20, 0x24, 0x01, 0x01, 0x00, 0x00, 0x00, 2]),
    ("2024-02-28T23:59:58", [0x20, 0x24, 0x02, 0x29, 0x00, 0x00, 0x00, 5]),
    ("2024-02-29T23:59:58", [0x20, 0x24, 0x03, 0x01, 0x00, 0x00, 0x00, 6]),
    ("2023-02-28T23:59:58", [0x20, 0x23, 0x03, 0x01, 0x00, 0x00, 0x00, 4]),
    ("2000-02-28T23:59:58", [0x20, 0x00, 0x02, 0x29, 0x00, 0x00, 0x00, 3]),
    ("2100-02-28T23:59:58", [0x21, 0x00, 0x03, 0x01, 0x00, 0x00, 0x00, 2]),
    ("2023-04-30T23:59:58", [0x20, 0x23, 0x05, 0x01, 0x00, 0x00, 0x00, 2]),
])
def test_date_advances_across_midnight_month_and_year_ends(board, base, expect):
    make_rtc(board, base=base)
    goto(board, 2 * S - 1)
    assert clock(board)[4:7] == [0x23, 0x59, 0x59]
    goto(board, 2 * S)
    assert clock(board) == expect


def test_base_utc_and_localtime_follow_the_host_clock(board):
    for base, convert in (("utc", time.gmtime), ("localtime", time.localtime)):
        guest_board = type(board)()
        make_rtc(guest_board, base=base)
        host = datetime(*convert(time.time())[:6])
        assert abs((guest_datetime(guest_board) - host).total_seconds()) <= 2


# -- the update cycle -------------------------------------------------------------------

def test_uip_only_in_the_244us_before_each_update(board, rtc):
    for k in (1, 2, 7):
        goto(board, k * S - 245_000)
        assert not rd(board, REG_A) & UIP
        goto(board, k * S - 244_000)
        assert rd(board, REG_A) & UIP
        assert rd(board, SEC) == 0x20 + k  # the old time is still valid to read
        goto(board, k * S - 1)
        assert rd(board, REG_A) & UIP
        goto(board, k * S)
        assert not rd(board, REG_A) & UIP
        assert rd(board, SEC) == 0x21 + k
    wr(board, REG_B, H24 | SET)
    goto(board, 9 * S - 100_000)
    assert not rd(board, REG_A) & UIP


def test_set_halts_updates_and_guest_writes_the_new_time(board, rtc):
    wr(board, REG_B, H24 | UIE)
    goto(board, 1_300_000_000)
    wr(board, REG_B, H24 | SET | UIE)
    assert rd(board, REG_B) == H24 | SET  # SET clears UIE
    goto(board, 5 * S)
    assert rd(board, SEC) == 0x22
    for reg, value in ((CENTURY, 0x20), (YEAR, 0x30), (MONTH, 0x01), (MDAY, 0x02),
                       (HOUR, 0x03), (MIN, 0x04), (SEC, 0x05), (WDAY, 0x06)):
        wr(board, reg, value)
    goto(board, 7_250_000_000)
    assert clock(board) == [0x20, 0x30, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06]
    wr(board, REG_B, H24)
    assert rd(board, SEC) == 0x05
    goto(board, 8 * S - 1)  # the divider kept running: the update stays on the 1 s grid
    assert rd(board, SEC) == 0x05
    goto(board, 8 * S)
    assert clock(board) == [0x20, 0x30, 0x01, 0x02, 0x03, 0x04, 0x06, 0x06]
    goto(board, 8 * S + 86400 * S)  # the written weekday keeps counting, 1-7
    assert rd(board, WDAY) == 0x07 and rd(board, MDAY) == 0x03
    goto(board, 8 * S + 2 * 86400 * S)
    assert rd(board, WDAY) == 0x01 and rd(board, MDAY) == 0x04


def test_time_register_write_while_running_keeps_the_phase(board, rtc):
    goto(board, 2_400_000_000)
    wr(board, MIN, 0x45)
    assert [rd(board, HOUR), rd(board, MIN), rd(board, SEC)] == [0x16, 0x45, 0x23]
    goto(board, 3 * S)
    assert rd(board, SEC) == 0x24


@pytest.mark.parametrize("stop", [0x70, 0x60, 0x00, 0x10])
def test_divider_stop_holds_the_clock_and_restart_updates_500ms_later(board, rtc, stop):
    wr(board, REG_B, H24 | UIE)
    goto(board, 1_700_000_000)
    wr(board, REG_A, stop | 0x06)
    assert rd(board, REG_C) == IRQF | PF | UF
    goto(board, 10 * S)
    assert rd(board, SEC) == 0x22 and not rd(board, REG_A) & UIP
    assert service(board, 11 * S) == []
    assert rd(board, REG_C) == 0  # no updates and no periodic ticks while stopped
    wr(board, SEC, 0x40)
    goto(board, 12_100_000_000)
    wr(board, REG_A, 0x26)
    assert rd(board, SEC) == 0x40
    assert service(board, 14 * S) == [12_600_000_000, 13_600_000_000]
    assert rd(board, SEC) == 0x42


# -- interrupts ---------------------------------------------------------------------------

@pytest.mark.parametrize("rs,hz", [(3, 8192), (6, 1024), (9, 128), (15, 2), (1, 256), (2, 128)])
def test_periodic_interrupt_rate_is_exact_over_one_second(board, rtc, rs, hz):
    wr(board, REG_A, 0x20 | rs)
    wr(board, REG_B, H24 | PIE)
    edges = service(board, S)
    assert len(edges) == hz
    period = 32768 // hz
    assert edges == [-(-k * period * S // 32768) for k in range(1, hz + 1)]
    assert len(service(board, 3 * S)) == 2 * hz  # and the same in later seconds: no drift


def test_flags_are_set_whether_or_not_enabled(board, rtc):
    goto(board, 1_500_000_000)
    assert not board.irqs[8].level
    assert rd(board, REG_C) == PF | UF  # 1024 Hz and the update, no IRQF
    goto(board, 1_600_000_000)
    assert rd(board, REG_C) == PF
    goto(board, 1_700_000_000)
    wr(board, REG_B, H24 | PIE)  # PF already set: IRQF and the line rise at once
    assert board.irqs[8].level
    assert rd(board, REG_C) == IRQF | PF
    assert not board.irqs[8].level
    assert rd(board, REG_C) == 0


def test_register_c_read_clears_flags_and_lowers_irq8(board, rtc):
    wr(board, REG_B, H24 | UIE)
    goto(board, S)
    assert board.irqs[8].level
    goto(board, 3 * S)
    assert board.irqs[8].level  # IRQF holds until register C is read
    assert rd(board, REG_C) == IRQF | PF | UF
    assert not board.irqs[8].level
    assert rd(board, REG_C) == 0


def test_update_ended_interrupt_once_per_second(board, rtc):
    wr(board, REG_B, H24 | UIE)
    assert service(board, 5 * S + 500_000_000) == [k * S for k in range(1, 6)]


def bcd(value: int) -> int:
    return int(str(value), 16)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("late_s", [3_600, 10 * 365 * 86_400], ids=["an-hour", "ten-years"])
def test_a_clock_hours_or_years_ahead_costs_nothing(board, rtc, late_s):
    """Virtual time jumps (a snapshot's clock set far ahead) with every interrupt on:
    the flags of the whole gap latch at once, the date is the one that far on, and the
    periodic interrupt keeps its grid."""
    for alarm in (SEC_ALARM, MIN_ALARM, HOUR_ALARM):
        wr(board, alarm, 0xFF)  # "don't care": the alarm matches every second
    wr(board, REG_B, H24 | PIE | AIE | UIE)
    rd(board, REG_C)
    board.jump(late_s * S)
    assert board.irqs[8].level
    assert rd(board, REG_C) == IRQF | PF | AF | UF
    when = datetime(2006, 6, 17, 16, 1, 21) + timedelta(seconds=late_s)
    assert clock(board) == [bcd(v) for v in (when.year // 100, when.year % 100, when.month,
                                             when.day, when.hour, when.minute, when.second,
                                             when.isoweekday() % 7 + 1)]
    start = board.clock.now_ns()
    edges = service(board, start + S // 4)  # 1024 Hz, no update before start + 1 s
    assert edges == [start - (-k * 32 * S // 32768) for k in range(1, 257)]


def test_alarm_with_exact_fields_fires_once_a_day(board, rtc):
    wr(board, HOUR_ALARM, 0x16)
    wr(board, MIN_ALARM, 0x01)
    wr(board, SEC_ALARM, 0x25)
    wr(board, REG_B, H24 | AIE)
    edges = service(board, 4 * S)
    assert edges == [4 * S]
    assert rd(board, SEC) == 0x25
    assert service(board, 86400 * S + 5 * S) == [86404 * S]


def test_alarm_in_12_hour_binary_mode(board, rtc):
    wr(board, REG_B, DM)
    wr(board, HOUR_ALARM, 0x84)  # 4 PM
    wr(board, MIN_ALARM, 2)
    wr(board, SEC_ALARM, 0)
    wr(board, REG_B, DM | AIE)
    assert service(board, 60 * S) == [39 * S]


def test_alarm_dont_care_fields(board, rtc):
    wr(board, HOUR_ALARM, 0xFF)
    wr(board, MIN_ALARM, 0xC0)
    wr(board, SEC_ALARM, 0x30)
    wr(board, REG_B, H24 | AIE)
    assert service(board, 130 * S) == [9 * S, 69 * S, 129 * S]  # every minute at :30
    wr(board, SEC_ALARM, 0xC5)
    assert service(board, 133 * S) == [131 * S, 132 * S, 133 * S]  # every second
    wr(board, SEC_ALARM, 0x75)  # never matches
    assert service(board, 3000 * S) == []


def test_alarm_flag_latched_without_aie(board, rtc):
    wr(board, SEC_ALARM, 0x23)
    wr(board, MIN_ALARM, 0xC0)
    wr(board, HOUR_ALARM, 0xC0)
    goto(board, 2 * S + 1)
    assert rd(board, REG_C) & AF
    goto(board, 2 * S + 2)
    assert not rd(board, REG_C) & AF
    assert not board.irqs[8].level


def test_nmi_mask_bit_is_kept_and_index_port_reads_ones(board, rtc):
    board.outb(INDEX, 0x80 | SEC)
    assert rtc.nmi_masked and board.inb(DATA) == 0x21
    assert board.inb(INDEX) == 0xFF
    board.outb(INDEX, MIN)
    assert not rtc.nmi_masked and board.inb(DATA) == 0x01


# -- NVRAM ------------------------------------------------------------------------------------

def test_nvram_read_write_and_reset_reapplies_nvram_init(board):
    init = bytes(range(128))
    rtc = make_rtc(board, nvram_init=init)
    assert [rd(board, i) for i in (0x0E, 0x40, 0x7F)] == [0x0E, 0x40, 0x7F]
    assert rd(board, CENTURY) == 0x20  # the clock owns the century byte
    wr(board, 0x40, 0x5A)
    wr(board, 0x7F, 0xA5)
    assert rd(board, 0x40) == 0x5A and rd(board, 0x7F) == 0xA5
    wr(board, SEC_ALARM, 0x33)
    wr(board, REG_A, 0x2A)
    wr(board, REG_B, H24 | DM | PIE | UIE)
    goto(board, 3 * S)
    assert board.irqs[8].level
    rtc.reset()
    assert not board.irqs[8].level
    assert rd(board, 0x40) == 0x40 and rd(board, 0x7F) == 0x7F
    # Battery-backed: time, alarm, A, B's format; the RESET pin clears the enables and flags.
    assert rd(board, SEC_ALARM) == 0x33 and rd(board, REG_A) == 0x2A
    assert rd(board, REG_B) == H24 | DM and rd(board, REG_C) == 0
    assert rd(board, SEC) == 24
    assert service(board, 10 * S) == []


def test_pc_nvram_layout():
    mib = 1 << 20
    cmos = pc_nvram(512 * mib, 1024 * mib, boot_order="cd", cpus=4)
    assert len(cmos) == 128
    assert cmos[0x15:0x17] == (640).to_bytes(2, "little")
    assert cmos[0x17:0x19] == cmos[0x30:0x32] == b"\xff\xff"  # capped
    assert cmos[0x34:0x36] == (496 * 16).to_bytes(2, "little")  # 64 KiB units above 16 MiB
    assert cmos[0x5B:0x5E] == (1024 * 16).to_bytes(3, "little")
    assert cmos[0x5F] == 3
    assert cmos[0x3D] == 0x32 and cmos[0x38] == 0x00  # hard disk, then CD-ROM
    assert cmos[0x10] == 0 and cmos[0x12] == 0 and cmos[0x14] & 0x31 == 0  # no floppy, VGA
    assert int.from_bytes(cmos[0x2E:0x30], "big") == sum(cmos[0x10:0x2E]) == cmos_checksum(cmos)

    small = pc_nvram(32 * mib, boot_order="dcn",
                     disks=[DiskGeometry(1024, 16, 63, translation=1), None, None,
                            DiskGeometry(20, 2, 10, translation=2)])
    assert small[0x17:0x19] == (31 * 1024).to_bytes(2, "little")
    assert small[0x34:0x36] == (256).to_bytes(2, "little")
    assert small[0x5B:0x5F] == bytes(4)
    assert small[0x3D] == 0x23 and small[0x38] == 0x40
    assert small[0x12] == 0xF0 and small[0x19] == 47 and small[0x1A] == 0
    assert small[0x1B:0x24] == bytes([0x00, 0x04, 16, 0xFF, 0xFF, 0xC8, 0x00, 0x04, 63])
    assert small[0x39] == 0x81
    assert int.from_bytes(small[0x2E:0x30], "big") == sum(small[0x10:0x2E])
    assert pc_nvram(512 * 1024)[0x15:0x19] == bytes([0x00, 0x02, 0, 0])


@pytest.mark.parametrize("order,message", [("cdna", "too many"), ("cx", "invalid boot device")])
def test_pc_nvram_rejects_bad_boot_orders(order, message):
    with pytest.raises(ValueError, match=message):
        pc_nvram(1 << 27, boot_order=order)


def test_firmware_reads_pc_nvram_through_the_ports(board):
    make_rtc(board, nvram_init=pc_nvram(128 << 20, boot_order="c"))
    total = sum(rd(board, i) for i in range(0x10, 0x2E))
    assert (rd(board, 0x2E) << 8 | rd(board, 0x2F)) == total
    assert rd(board, 0x34) | rd(board, 0x35) << 8 == 112 * 16
    assert rd(board, 0x3D) == 0x02


# -- configuration ----------------------------------------------------------------------------

def test_parse_rtc_base_accepts_qemu_forms():
    assert parse_rtc_base("utc") == "utc" and parse_rtc_base("localtime") == "localtime"
    assert parse_rtc_base("2006-06-17").isoformat() == "2006-06-17T00:00:00"
    assert parse_rtc_base("2006-06-17T16:01:21").isoformat() == "2006-06-17T16:01:21"


@pytest.mark.parametrize("text", ["", "now", "UTC ", "2006-13-01", "2006-02-30",
                                  "2006-06-17T24:00:00", "2006-06-17 16:01:21", "06-06-17"])
def test_parse_rtc_base_errors_are_one_line(text):
    with pytest.raises(ValueError) as e:
        parse_rtc_base(text)
    assert "\n" not in str(e.value) and repr(text) in str(e.value)


def test_bad_base_is_refused_at_realize_naming_the_device(board):
    with pytest.raises(ValueError, match="/rtc: property 'base'.*2006-02-30"):
        Rtc("rtc", None, base="2006-02-30").realize(board)


def test_time_runs_then_set_halts_updates(board, rtc):
    goto(board, 2_500_000_000)
    assert guest_datetime(board) == datetime(2006, 6, 17, 16, 1, 23)
    assert (rd(board, REG_A), rd(board, REG_B)) == (0x26, 0x02)
    wr(board, REG_B, H24 | SET)
    goto(board, 5 * S)
    assert guest_datetime(board) == datetime(2006, 6, 17, 16, 1, 23)


# -- state table completeness -------------------------------------------------------------------

def clone(board: BenchBoard, rtc: Rtc) -> tuple[BenchBoard, Rtc]:
    """A fresh board at the same virtual time with an RTC holding a copy of the state."""
    other = type(board)()
    other.advance(board.clock.now_ns())
    copy = make_rtc(other, base="2030-01-01", nvram_init=b"\x11" * 128)
    for f in fields_of(Rtc, "state"):
        f.assign(copy, f.__get__(rtc))
    copy.rebuild()
    return other, copy


def record_levels(board: BenchBoard) -> list[tuple[int, bool]]:
    """Every level the device drives onto IRQ8, with its virtual time."""
    events: list[tuple[int, bool]] = []
    board.irqs[8].handler = lambda level: events.append((board.clock.now_ns(), level))
    return events


@pytest.mark.parametrize("irq_high", [False, True])
def test_state_round_trip(board, rtc, irq_high):
    board.outb(INDEX, 0x80 | 0x50)
    board.outb(DATA, 0x77)
    wr(board, REG_B, H24 | DM)
    wr(board, REG_A, 0x2A)  # 64 Hz
    wr(board, SEC_ALARM, 50)
    wr(board, MIN_ALARM, 0xFF)
    wr(board, HOUR_ALARM, 0xFF)
    goto(board, 1_234_567_891)
    wr(board, REG_B, H24 | DM | SET)
    wr(board, MIN, 30)
    wr(board, WDAY, 2)
    wr(board, REG_B, H24 | DM | AIE | UIE)
    goto(board, 2_345_678_912)
    rd(board, REG_C)
    # PF latches lazily until the update at 3 s; after it, IRQ8 stays high.
    goto(board, 3_200_000_000 if irq_high else 2_900_000_000)
    board.outb(INDEX, 0x80 | HOUR)

    other, copy = clone(board, rtc)
    # The interrupt controller's view of the line travels with the controller's state.
    other.irqs[8].level = board.irqs[8].level
    assert board.irqs[8].level == irq_high and copy.nmi_masked
    assert (rtc.deadline >= 0) != irq_high and copy._timer.deadline == rtc._timer.deadline

    def run(b: BenchBoard) -> list[object]:
        levels = record_levels(b)
        reads = [b.inb(DATA)]
        reads += [rd(b, r) for r in (REG_C, SEC, MIN, HOUR, WDAY, REG_A, REG_B, 0x50, 0x60)]
        wr(b, REG_B, H24 | DM | PIE | AIE | UIE)
        edges = service(b, 40 * S)
        reads += [rd(b, r) for r in (SEC, MIN, HOUR, WDAY, REG_A, REG_C)]
        return [levels[:4], edges, reads]

    result = run(board)
    assert result == run(other)
    edges = result[1]
    assert len(edges) > 64 * 35 and 39 * S <= edges[-1] <= 40 * S
