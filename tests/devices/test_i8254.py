"""8254 PIT and port 61h, driven through their I/O ports as a PC guest drives them."""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING

import pytest

from emu.devices import i8254
from emu.devices.i8254 import PIT_HZ, Pit8254, ns_to_ticks, square_wave_count
from emu.qom import fields_of

if TYPE_CHECKING:
    from conftest import BenchBoard

CLK_NS = 1e9 / PIT_HZ  # one counter clock, about 838.1 ns
CTRL, CH0, CH1, CH2, PORT_B = 0x43, 0x40, 0x41, 0x42, 0x61


def tick_ns(k: int) -> int:
    """Virtual ns of counter CLK edge ``k`` (edge 0 at time 0)."""
    return -(-k * 1_000_000_000 // PIT_HZ)


def goto(board: BenchBoard, k: int) -> None:
    """Move virtual time to just after CLK edge ``k``."""
    target = tick_ns(k) + 100
    assert target >= board.clock.now_ns()
    board.advance(target - board.clock.now_ns())


def make_pit(board: BenchBoard) -> Pit8254:
    pit = Pit8254("pit", None)
    pit.realize_all(board)
    pit.reset_all()
    return pit


@pytest.fixture
def pit(board: BenchBoard) -> Pit8254:
    return make_pit(board)


def record_edges(board: BenchBoard, irq: int = 0) -> list[tuple[int, bool]]:
    """(virtual ns, level) for every level change the device puts on ``irq``."""
    events: list[tuple[int, bool]] = []

    def handler(level: bool) -> None:
        if not events or events[-1][1] != level:
            events.append((board.clock.now_ns(), level))

    board.irqs[irq].handler = handler
    return events


def rising(events: list[tuple[int, bool]], after: int = -1) -> list[int]:
    return [t for t, level in events if level and t > after]


def program(board: BenchBoard, control: int, port: int, count: int) -> None:
    board.outb(CTRL, control)
    board.outb(port, count & 0xFF)
    board.outb(port, count >> 8)


def read16(board: BenchBoard, port: int) -> int:
    lsb = board.inb(port)
    return lsb | board.inb(port) << 8


def latched16(board: BenchBoard, channel: int) -> int:
    board.outb(CTRL, channel << 6)
    return read16(board, CH0 + channel)


def out2(board: BenchBoard) -> bool:
    return bool(board.inb(PORT_B) & 0x20)


# -- mode 2: rate generator on IRQ0 ------------------------------------------------

@pytest.mark.parametrize("control", [0x34, 0x3C])  # mode 2, and mode 6 (its alias)
def test_mode2_1000hz_gives_1000_irq0_edges_per_second_without_drift(board, pit, control):
    events = record_edges(board)
    board.advance(12_345)
    t0 = board.clock.now_ns()
    program(board, control, CH0, 1193)  # 1193182 / 1000
    board.advance(1_000_000_000)
    edges = rising(events, after=t0)
    assert abs(len(edges) - 1000) <= 1
    period = 1193 * CLK_NS
    # Edge k is k periods after the CE load (on the CLK after the write), to the ns.
    load = tick_ns(t0 * PIT_HZ // 1_000_000_000 + 1)
    for k, t in enumerate(edges, start=1):
        assert abs(t - (load + k * period)) <= 1
    deltas = [b - a for a, b in pairwise(edges)]
    assert max(deltas) - min(deltas) <= 1
    assert abs((edges[-1] - edges[0]) - (len(edges) - 1) * period) <= 1
    # OUT is low for exactly one CLK before each wrap.
    falls = [t for t, level in events if not level and t > t0]
    assert len(falls) == len(edges)
    assert all(abs(r - f - CLK_NS) <= 1 for f, r in zip(falls, edges, strict=True))


def test_mode2_edges_are_all_emitted_when_the_timer_fires_late(board, pit):
    events = record_edges(board)
    program(board, 0x34, CH0, 1193)  # at CLK 0: loaded at CLK 1
    # A long CPU slice: 10 ms pass before the timers get to run.
    board._now = 10_000_000
    board.clock.run_expired()
    assert len(rising(events, after=0)) == 10  # CLK 1 + k * 1193 < 10 ms for k <= 10
    board.advance(20_000_000)
    later = rising(events, after=10_000_000)
    assert len(later) == 20
    # Back on the original grid: catching up did not shift the period.
    assert later == [tick_ns(1 + k * 1193) for k in range(11, 31)]


def test_mode2_new_count_takes_effect_at_end_of_period(board, pit):
    events = record_edges(board)
    program(board, 0x34, CH0, 1000)  # loaded at CLK 1
    goto(board, 300)
    board.outb(CH0, 0x00)
    board.outb(CH0, 0x02)  # 512
    board.outb(CTRL, 0xE2)
    assert board.inb(CH0) & 0x40  # null count until the period ends
    goto(board, 5000)
    edges = rising(events, after=0)
    assert edges[:3] == [tick_ns(1001), tick_ns(1001 + 512), tick_ns(1001 + 1024)]
    board.outb(CTRL, 0xE2)
    assert board.inb(CH0) & 0x40 == 0


def test_mode2_gate_low_forces_out_high_and_rising_gate_restarts(board, pit):
    board.outb(PORT_B, 0x01)
    program(board, 0xB4, CH2, 100)  # counter 2, mode 2: loaded at CLK 1
    goto(board, 51)
    assert read16(board, CH2) == 50
    goto(board, 100)
    assert read16(board, CH2) == 1 and not out2(board)  # the one-CLK low pulse
    board.outb(PORT_B, 0x00)
    assert out2(board)
    goto(board, 200)
    assert read16(board, CH2) == 1 and out2(board)  # stopped
    board.outb(PORT_B, 0x01)  # reloaded on the next CLK
    goto(board, 201)
    assert read16(board, CH2) == 100
    goto(board, 300)
    assert read16(board, CH2) == 1 and not out2(board)


# -- mode 3: square wave -------------------------------------------------------------

def test_mode3_square_wave_on_irq0(board, pit):
    events = record_edges(board)
    program(board, 0x36, CH0, 1000)  # loaded at CLK 1
    board.advance(10_000_000)
    changes = [(t, level) for t, level in events if t > 0]
    assert [level for _, level in changes[:4]] == [False, True, False, True]
    assert [t for t, _ in changes[:4]] == [tick_ns(1 + 500 * k) for k in range(1, 5)]
    times = [t for t, _ in changes]
    halves = {round((b - a) / CLK_NS) for a, b in pairwise(times)}
    assert halves == {500}


def test_mode3_odd_count_is_high_one_clock_longer_and_counts_by_two(board, pit):
    board.outb(PORT_B, 0x01)
    program(board, 0xB6, CH2, 5)  # loaded at CLK 1
    wave, counts = "", []
    for k in range(1, 21):
        goto(board, k)
        wave += "H" if out2(board) else "L"
        counts.append(latched16(board, 2))
    assert wave == "HHHLL" * 4
    assert counts == [5, 4, 2, 5, 2] * 4
    program(board, 0xB6, CH2, 8)  # at CLK 20: loaded at CLK 21
    even = []
    for k in range(21, 30):
        goto(board, k)
        even.append(latched16(board, 2))
        wave += "H" if out2(board) else "L"
    assert even == [8, 6, 4, 2, 8, 6, 4, 2, 8]
    assert wave.endswith("HHHHLLLLH")


# -- mode 0 on counter 2: Linux TSC calibration ------------------------------------

def test_mode0_channel2_linux_pit_calibration_poll(board, pit):
    board.advance(5_000)
    latch = PIT_HZ // 20  # 50 ms, as arch/x86/kernel/tsc.c pit_calibrate_tsc
    board.outb(PORT_B, (board.inb(PORT_B) & ~0x02) | 0x01)
    board.outb(CTRL, 0xB0)
    assert not out2(board)  # mode 0: OUT low from the control word
    board.outb(CH2, latch & 0xFF)
    board.outb(CH2, latch >> 8)
    t0 = board.clock.now_ns()
    polls = 0
    while not board.inb(PORT_B) & 0x20:
        polls += 1
        board.advance(1_000)
        assert polls < 60_000
    elapsed = board.clock.now_ns() - t0
    # OUT rises N CLKs after the CE load, which is on the CLK after the write.
    assert latch * CLK_NS <= elapsed <= (latch + 1) * CLK_NS + 1_000
    assert polls > 49_000
    board.advance(100_000_000)
    assert out2(board)  # and stays high while the counter wraps


def test_mode0_msb_decrements_every_256_clocks(board, pit):
    """The quick_pit_calibrate pattern: count 0xFFFF, then read LSB and MSB pairs."""
    board.outb(PORT_B, 0x01)
    program(board, 0xB0, CH2, 0xFFFF)  # loaded at CLK 1
    msbs = []
    for j in range(1, 6):
        goto(board, 1 + 256 * j + 128)
        board.inb(CH2)
        msbs.append(board.inb(CH2))
    assert msbs == [0xFE, 0xFD, 0xFC, 0xFB, 0xFA]


def test_mode0_gate_low_pauses_counting(board, pit):
    board.outb(PORT_B, 0x01)
    program(board, 0xB0, CH2, 1000)  # loaded at CLK 1
    goto(board, 401)
    board.outb(PORT_B, 0x00)
    assert read16(board, CH2) == 600
    goto(board, 2000)
    assert read16(board, CH2) == 600 and not out2(board)
    board.outb(PORT_B, 0x01)
    goto(board, 2599)
    assert read16(board, CH2) == 1 and not out2(board)
    goto(board, 2600)
    assert read16(board, CH2) == 0 and out2(board)


def test_mode0_irq0_rises_at_terminal_count_and_stays(board, pit):
    events = record_edges(board)
    goto(board, 7)
    program(board, 0x30, CH0, 500)  # loaded at CLK 8
    board.advance(100_000_000)
    assert rising(events) == [tick_ns(508)]
    assert board.irqs[0].level


def test_mode0_first_byte_of_new_count_stops_counting_and_lowers_out(board, pit):
    events = record_edges(board)
    program(board, 0x30, CH0, 10)
    goto(board, 30)
    assert board.irqs[0].level
    board.outb(CH0, 0x20)
    assert not board.irqs[0].level
    goto(board, 2000)
    assert not board.irqs[0].level  # no counting until the MSB arrives
    board.outb(CH0, 0x00)  # loaded at CLK 2001
    goto(board, 3000)
    assert rising(events, after=tick_ns(30)) == [tick_ns(2001 + 0x20)]


# -- modes 1, 4, 5 -------------------------------------------------------------------

def test_mode1_one_shot_triggered_and_retriggered_by_gate(board, pit):
    program(board, 0xB2, CH2, 100)
    goto(board, 1000)
    assert out2(board)  # nothing happens before a trigger
    board.outb(PORT_B, 0x01)  # trigger: CE loaded and OUT low on the next CLK
    assert out2(board)
    goto(board, 1001)
    assert not out2(board) and read16(board, CH2) == 100
    goto(board, 1050)
    board.outb(PORT_B, 0x00)  # GATE level itself does not stop mode 1
    board.outb(PORT_B, 0x01)  # retrigger: a full count again from CLK 1051
    goto(board, 1150)
    assert not out2(board)
    goto(board, 1151)
    assert out2(board)
    goto(board, 100_000)
    assert out2(board)


def test_mode5_gate_trigger_gives_one_clock_strobe(board, pit):
    program(board, 0xBA, CH2, 20)
    goto(board, 100)
    assert out2(board)
    board.outb(PORT_B, 0x01)  # loaded at CLK 101
    low = []
    for k in range(101, 200):
        goto(board, k)
        if not out2(board):
            low.append(k)
    assert low == [121]


def test_mode4_software_strobe_on_irq0(board, pit):
    events = record_edges(board)
    board.outb(CTRL, 0x38)
    assert board.irqs[0].level  # mode 4: OUT high from the control word
    board.outb(CH0, 50)
    board.outb(CH0, 0)  # loaded at CLK 1
    board.advance(200_000_000)
    assert events == [(0, True), (tick_ns(51), False), (tick_ns(52), True)]


# -- reading -------------------------------------------------------------------------

def test_counter_latch_freezes_value_until_read(board, pit):
    program(board, 0x34, CH0, 30000)  # loaded at CLK 1
    goto(board, 1001)
    board.outb(CTRL, 0x00)
    goto(board, 1501)
    board.outb(CTRL, 0x00)  # a second latch before reading is ignored
    assert read16(board, CH0) == 29000
    assert read16(board, CH0) == 28500  # latch released: live count
    board.outb(CTRL, 0x00)
    assert board.inb(CH0) == 28500 & 0xFF
    goto(board, 1800)
    assert board.inb(CH0) == 28500 >> 8  # the MSB still comes from the latch
    assert read16(board, CH0) == 30000 - 1799  # live again


def test_read_back_status_and_count(board, pit):
    board.outb(CTRL, 0x34)
    board.outb(CTRL, 0xE2)  # status of counter 0
    assert board.inb(CH0) == 0x80 | 0x40 | 0x34  # OUT high, null count, rw/mode/bcd
    board.outb(CH0, 0x10)
    board.outb(CH0, 0x27)  # 10000, loaded at CLK 1
    board.outb(CTRL, 0xE2)
    assert board.inb(CH0) & 0x40  # written, not yet loaded
    goto(board, 2)
    board.outb(PORT_B, 0x01)
    program(board, 0xB0, CH2, 5)  # loaded at CLK 3, terminal at CLK 8
    goto(board, 12)
    board.outb(CTRL, 0xCA)  # count and status of counters 0 and 2
    board.outb(CTRL, 0xCA)  # ignored: both are still latched
    assert board.inb(CH0) == 0x80 | 0x34  # status first: OUT high, count loaded
    assert read16(board, CH0) == 10000 - 11
    assert board.inb(CH2) == 0x80 | 0x30  # mode 0 after terminal count: OUT high
    assert read16(board, CH2) == (5 - 9) & 0xFFFF
    board.outb(CTRL, 0xD2)  # count only, counter 0, at CLK 12
    goto(board, 17)
    assert read16(board, CH0) == 10000 - 11
    assert read16(board, CH0) == 10000 - 16  # the latch is read once


def test_bcd_counting(board, pit):
    board.outb(PORT_B, 0x01)
    program(board, 0xB1, CH2, 0x1000)  # mode 0, BCD 1000, loaded at CLK 1
    goto(board, 3)
    assert read16(board, CH2) == 0x0998
    goto(board, 1000)
    assert read16(board, CH2) == 0x0001 and not out2(board)
    goto(board, 1001)
    assert read16(board, CH2) == 0x0000 and out2(board)
    goto(board, 1002)
    assert read16(board, CH2) == 0x9999  # wraps through 9999, not 0xFFFF
    board.outb(CTRL, 0xE8)
    assert board.inb(CH2) & 0x01
    program(board, 0xB5, CH2, 0x0010)  # mode 2, BCD 10
    goto(board, 1013)
    assert read16(board, CH2) == 0x0010
    goto(board, 1020)
    assert read16(board, CH2) == 0x0003


def test_lsb_only_msb_only_and_interleaved_access(board, pit):
    # Counter 2 with GATE low: the count is loaded but stands still.
    board.outb(CTRL, 0x90)  # LSB only
    board.outb(CH2, 0x42)
    assert board.inb(CH2) == 0x42 and board.inb(CH2) == 0x42
    board.outb(CTRL, 0xA0)  # MSB only
    board.outb(CH2, 0x12)
    assert board.inb(CH2) == 0x12 and board.inb(CH2) == 0x12
    board.outb(CTRL, 0xB0)  # LSB then MSB
    board.outb(CH2, 0x34)
    board.outb(CH2, 0x12)
    # Read and write flip-flops are separate: read LSB, write LSB, read MSB, write MSB.
    assert board.inb(CH2) == 0x34
    board.outb(CH2, 0x78)
    assert board.inb(CH2) == 0x12
    board.outb(CH2, 0x56)
    assert read16(board, CH2) == 0x5678
    board.inb(CH2)
    board.outb(CH2, 0x01)
    board.outb(CTRL, 0xB0)  # a control word resets both flip-flops
    board.outb(CH2, 0xCD)
    board.outb(CH2, 0xAB)
    assert board.inb(CH2) == 0xCD and board.inb(CH2) == 0xAB
    assert board.inw(CH2) == 0xFF00 | 0xCD  # a word access reads 42h, then 43h (no data)


def test_port_b_bits(board, pit):
    board.outb(PORT_B, 0xFF)
    assert board.inb(PORT_B) & 0xCF == 0x0F  # bits 0-3 as written; 6-7 read-only, clear
    board.outb(PORT_B, 0x02)
    assert board.inb(PORT_B) & 0x0F == 0x02
    samples = []
    for _ in range(300):
        samples.append(board.inb(PORT_B) & 0x10)
        board.advance(1_000)
    runs, length = [], 1
    for a, b in pairwise(samples):
        if a == b:
            length += 1
        else:
            runs.append(length)
            length = 1
    # Refresh toggles every 18 CLKs (15.09 us): interior runs of 15 or 16 samples.
    assert len(runs) >= 18 and set(runs[1:]) <= {15, 16}


@pytest.mark.parametrize("control", [0xB0, 0xB2, 0xB4, 0xB6, 0xB8, 0xBA, 0xB7])
def test_port_b_answered_by_the_cpu_matches_the_device_at_every_poll(board, pit, control):
    """Port 61h is answered by the CPU while its value holds (BenchBoard.inb does it as
    the C hook does): every read gives what the device itself gives, and leaves the
    counter's state as the device's own reads leave it, through gate changes, new counts
    and the refresh toggle, in every mode of counter 2."""
    ref_board = type(board)()
    ref = make_pit(ref_board)
    count = 37 if control != 0xB7 else 0x0037  # BCD 37

    def both(action):
        action(board)
        action(ref_board)

    both(lambda b: b.outb(PORT_B, 0x01))
    both(lambda b: program(b, control, CH2, count))
    step = 97  # ns: co-prime with the CLK, so polls land at every phase
    for i in range(6_000):
        if i % 1_500 == 700:
            both(lambda b: b.outb(PORT_B, 0x00))  # gate low
        elif i % 1_500 == 900:
            both(lambda b: b.outb(PORT_B, 0x01))  # gate high: a trigger in modes 1, 5
        elif i == 3_000:
            both(lambda b: (b.outb(CH2, 11), b.outb(CH2, 0)))
        assert board.inb(PORT_B) == ref_board.io.read(PORT_B, 1), f"poll {i}"
        both(lambda b: b.advance(step))
    assert board.constant_reads > 3_000  # most polls never reached the device
    for mine, theirs in zip(pit.walk(), ref.walk(), strict=True):
        for f in fields_of(type(mine), "state"):
            assert f.__get__(mine) == f.__get__(theirs), f"{mine.path}.{f.name}"


def test_reset_resets_channels(board, pit):
    board.outb(PORT_B, 0x03)
    program(board, 0x34, CH0, 1193)
    board.advance(1_000_000)
    ch0, ch2 = pit.channels[0], pit.channels[2]
    assert (ch0.mode, ch0.cr) == (2, 1193) and ch2.gate_high
    pit.reset_all()
    assert board.inb(PORT_B) & 0x0F == 0
    assert ch0.mode == 0
    events = record_edges(board)
    board.advance(10_000_000)
    assert events == []


# -- state table completeness --------------------------------------------------------

def clone(board: BenchBoard, pit: Pit8254) -> tuple[BenchBoard, Pit8254]:
    """A fresh board at the same virtual time with a PIT holding a copy of the state."""
    other = type(board)()
    other.advance(board.clock.now_ns())
    copy = make_pit(other)
    for src, dst in zip(pit.walk(), copy.walk(), strict=True):
        assert src.path == dst.path
        for f in fields_of(type(src), "state"):
            value = f.__get__(src)
            f.assign(dst, list(value) if isinstance(value, list) else value)
    for obj in copy.walk():
        obj.rebuild()
    return other, copy


def test_state_round_trip(board, pit):
    program(board, 0x34, CH0, 1193)
    board.advance(2_500_000)  # mid-period: the IRQ0 timer is pending
    board.outb(CH0, 0x00)
    board.outb(CH0, 0x04)  # new count, loaded at the end of this period
    board.outb(PORT_B, 0x03)
    program(board, 0xB0, CH2, 40000)
    board.outb(CTRL, 0x76)  # counter 1, mode 3
    board.outb(0x41, 0x00)
    board.outb(0x41, 0x10)
    board.advance(333_333)
    board.outb(CTRL, 0x40)  # latch counter 1
    board.inb(0x41)  # half of the latched count read
    board.outb(CTRL, 0xE4)  # status of counter 1 latched
    board.outb(CTRL, 0xB0)
    board.outb(CH2, 0x11)  # counter 2 half-way through a new count, stopped

    other, copy = clone(board, pit)
    assert pit.channels[0].deadline >= 0
    assert copy.channels[0]._timer.deadline == pit.channels[0].deadline

    ev_a, ev_b = record_edges(board), record_edges(other)
    for b in (board, other):
        b.advance(30_000_000)
    assert ev_a == ev_b and len(rising(ev_a)) >= 20
    periods = {round((y - x) / CLK_NS) for x, y in pairwise(rising(ev_a))}
    assert periods == {1024}

    def probe(b: BenchBoard) -> list[int]:
        reads = [b.inb(0x41), b.inb(0x41), b.inb(0x41), b.inb(PORT_B)]
        b.outb(CH2, 0x22)
        b.advance(5_000)
        reads += [read16(b, CH2), read16(b, CH0), b.inb(PORT_B)]
        b.outb(CTRL, 0xEE)
        reads += [b.inb(CH0), b.inb(0x41), b.inb(CH2)]
        return reads

    assert probe(board) == probe(other)


# -- time far ahead: catching up costs nothing -----------------------------------------
# A clock loaded hours or years ahead (pyemu-state set FILE /machine/clock/ns=...), a
# host that stalled, a deadline loaded far back: the IRQ0 timer fires that late. The
# catch-up must take no longer than for a timer late by one CPU slice, and leave what
# the guest can see -- the count, OUT, the next edges on the same grid -- as it would.

HOUR_NS, YEAR_NS = 3_600 * 1_000_000_000, 365 * 86_400 * 1_000_000_000


def fire_late(board: BenchBoard, control: int, count: int, late_ns: int) -> list[tuple[int, bool]]:
    """Program counter 0 at CLK 0 (loaded at CLK 1); its timer then fires only at
    ``late_ns``. Returns the IRQ0 level changes."""
    events = record_edges(board)
    program(board, control, CH0, count)
    board.jump(late_ns)
    return events


def expected_count(control: int, n: int, tick: int) -> int:
    """Counter 0's CE at CLK ``tick`` when loaded with ``n`` at CLK 1 and never late."""
    r = (tick - 1) % n
    return n - r if control == 0x34 else square_wave_count(n, r)


def out0(board: BenchBoard) -> bool:
    """OUT of counter 0, from a read-back status."""
    board.outb(CTRL, 0xE2)
    return bool(board.inb(CH0) & 0x80)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("late_ns", [HOUR_NS, 10 * YEAR_NS], ids=["an-hour", "ten-years"])
@pytest.mark.parametrize("control", [0x34, 0x36], ids=["mode2", "mode3"])
def test_a_timer_hours_or_years_late_catches_up_at_once_on_the_grid(board, pit, control,
                                                                    late_ns):
    events = fire_late(board, control, 1193, late_ns)
    # IRQ0 rose (the 8259 latches the request), a bounded number of times.
    assert 1 <= len(rising(events, after=late_ns - 1)) <= i8254.CATCHUP_PERIODS + 1
    tick = ns_to_ticks(board.clock.now_ns())
    assert latched16(board, 0) == expected_count(control, 1193, tick)
    assert board.irqs[0].level == out0(board)
    board.advance(10_000_000)
    later = rising(events, after=late_ns)
    assert len(later) == 10
    assert all((ns_to_ticks(t) - 1) % 1193 == 0 for t in later)  # the grid of CLK 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize("control", [0x34, 0x36], ids=["mode2", "mode3"])
def test_skipping_periods_leaves_what_edge_by_edge_catch_up_leaves(board, pit, control,
                                                                   monkeypatch):
    late = 3_000_000_000  # 3000 periods late: edge by edge is still quick
    skipped = fire_late(board, control, 1193, late)
    monkeypatch.setattr(i8254, "CATCHUP_PERIODS", 1 << 62, raising=False)
    other = type(board)()
    make_pit(other)
    one_by_one = fire_late(other, control, 1193, late)
    caught_up = [e for e in skipped if e[0] == late]  # after the edge of programming
    assert len(one_by_one) > len(skipped) and one_by_one[-len(caught_up):] == caught_up
    assert board.irqs[0].level == other.irqs[0].level
    assert [latched16(b, 0) for b in (board, other)] == [expected_count(
        control, 1193, ns_to_ticks(late))] * 2


def channel_state(ch: i8254.PitChannel) -> dict[str, object]:
    return {f.attr: f.__get__(ch) for f in fields_of(type(ch), "state")}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("field, value", [
    ("deadline", 0), ("deadline", (1 << 63) - 1), ("count_start", 0),
    ("load_tick", -(1 << 63)), ("load_tick", (1 << 63) - 2), ("pending_tick", (1 << 63) - 1),
])
@pytest.mark.parametrize("control", [0x30, 0x34], ids=["mode0", "mode2"])
def test_loaded_state_values_at_their_limits_cost_nothing(board, pit, control, field, value):
    """A state field set to an edge of its width (a hostile or edited snapshot) and the
    clock an hour on: no hang, no exception, and every field still fits its width."""
    program(board, control, CH0, 1193)
    board.advance(2_500_000)
    ch0 = pit.channels[0]
    setattr(ch0, field, value)
    ch0.rebuild()  # as a load does
    board.jump(HOUR_NS)
    board.advance(10_000_000)
    # a guest reading the counter live sees what it latches at the same instant
    assert read16(board, CH0) == latched16(board, 0)
    out0(board)
    for f in fields_of(type(ch0), "state"):
        f.type.check(f.__get__(ch0))
