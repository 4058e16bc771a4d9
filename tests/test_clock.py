"""Clock and Timer: deadline order, re-arming, realtime stop/start, icount time arithmetic,
and slice shortening when a timer is armed inside the running CPU slice."""

from __future__ import annotations

import time

import pytest

from emu.clock import HORIZON_NS, Clock


class InsnCounter:
    """Stands in for the CPU's instruction counter in icount mode."""

    def __init__(self, clock: Clock) -> None:
        self.n = 0
        clock.insn_count = lambda: self.n


def icount_clock(shift: int) -> tuple[Clock, InsnCounter]:
    clock = Clock(icount_shift=shift)
    return clock, InsnCounter(clock)


# -- timers ------------------------------------------------------------------------------------
def test_timers_fire_in_deadline_order_only_once_expired() -> None:
    clock, insns = icount_clock(0)
    fired: list[str] = []
    timers = {name: clock.timer(lambda name=name: fired.append(name), name)
              for name in ("a", "b", "c", "d")}
    timers["a"].mod(300)
    timers["b"].mod(100)
    timers["c"].mod(200)
    timers["d"].mod(301)
    insns.n = 99
    assert clock.run_expired() == 0 and fired == []
    insns.n = 300
    assert clock.run_expired() == 3
    assert fired == ["b", "c", "a"]
    assert not timers["a"].pending and timers["d"].pending
    assert clock.next_deadline() == 301


def test_equal_deadlines_fire_in_arming_order() -> None:
    clock, insns = icount_clock(0)
    fired: list[int] = []
    for i in range(5):
        clock.timer(lambda i=i: fired.append(i), f"t{i}").mod(50)
    insns.n = 50
    assert clock.run_expired() == 5
    assert fired == [0, 1, 2, 3, 4]


def test_cancel_disarms() -> None:
    clock, insns = icount_clock(0)
    fired: list[str] = []
    t = clock.timer(lambda: fired.append("t"), "t")
    t.mod(10)
    assert t.pending and t.deadline == 10
    t.cancel()
    assert not t.pending and t.deadline is None
    assert clock.next_deadline() is None
    insns.n = 100
    assert clock.run_expired() == 0 and fired == []


def test_mod_rearms_replacing_the_old_deadline() -> None:
    clock, insns = icount_clock(0)
    fired: list[int] = []
    t = clock.timer(lambda: fired.append(insns.n), "t")
    t.mod(100)
    t.mod(500)  # later: the 100 ns deadline is gone
    assert clock.next_deadline() == 500
    insns.n = 200
    assert clock.run_expired() == 0
    insns.n = 500
    assert clock.run_expired() == 1
    t.mod(900)
    t.mod(600)  # earlier: fires at 600 and not again at 900
    insns.n = 1000
    assert clock.run_expired() == 1
    assert fired == [500, 1000]
    assert clock.next_deadline() is None


def test_callback_may_rearm_its_own_timer() -> None:
    clock, insns = icount_clock(0)
    fired: list[int] = []

    def tick() -> None:
        fired.append(insns.n)
        t.mod(insns.n + 100)  # periodic: the next period is in the future

    t = clock.timer(tick, "tick")
    t.mod(100)
    for n in (100, 150, 200, 300):
        insns.n = n
        clock.run_expired()
    assert fired == [100, 200, 300]
    assert t.deadline == 400


def test_callback_cancelling_a_later_timer() -> None:
    clock, insns = icount_clock(0)
    fired: list[str] = []
    late = clock.timer(lambda: fired.append("late"), "late")
    early = clock.timer(lambda: (fired.append("early"), late.cancel()), "early")
    late.mod(20)
    early.mod(10)
    insns.n = 30
    assert clock.run_expired() == 1
    assert fired == ["early"]


@pytest.mark.parametrize("deadline", [HORIZON_NS + 1, (1 << 63) - 1, 1 << 64])
def test_a_deadline_past_the_horizon_is_pending_but_never_due(deadline: int) -> None:
    """A device asking for a deadline a loaded state put past the horizon: the timer is
    pending, but no slice ever ends for it (the CPU's slice deadline is an int64 of
    host time, which such a deadline would wrap round to the past)."""
    clock, insns = icount_clock(0)
    fired: list[str] = []
    t = clock.timer(lambda: fired.append("t"), "t")
    t.mod(deadline)
    assert t.pending and clock.next_deadline() is None
    insns.n = HORIZON_NS
    assert clock.run_expired() == 0 and fired == []
    t.mod(HORIZON_NS)  # the horizon itself is still within reach
    assert clock.next_deadline() == HORIZON_NS and clock.run_expired() == 1


# -- realtime ----------------------------------------------------------------------------------
def test_realtime_stands_still_until_started_and_while_stopped() -> None:
    clock = Clock()
    assert not clock.icount
    time.sleep(0.002)
    assert clock.now_ns() == 0  # a new clock is stopped
    clock.start()
    time.sleep(0.002)
    running = clock.now_ns()
    assert running >= 2_000_000
    clock.stop()
    frozen = clock.now_ns()
    assert frozen >= running
    time.sleep(0.02)
    assert clock.now_ns() == frozen
    clock.start()
    resumed = clock.now_ns()
    assert frozen <= resumed < frozen + 20_000_000  # the stopped 20 ms are not counted


def test_realtime_host_deadline_tracks_stop_and_start() -> None:
    clock = Clock()
    clock.start()
    clock.stop()
    time.sleep(0.003)
    clock.start()
    before = time.monotonic_ns()
    v = clock.now_ns()
    after = time.monotonic_ns()
    # virtual time v is reached on the host between the two readings
    assert before <= clock.host_deadline(v) <= after
    assert clock.host_deadline(v + 1_000_000) - clock.host_deadline(v) == 1_000_000


# -- icount ------------------------------------------------------------------------------------
@pytest.mark.parametrize("shift", [0, 3, 7])
def test_icount_time_is_insns_shifted_plus_warp(shift: int) -> None:
    clock, insns = icount_clock(shift)
    assert clock.icount
    insns.n = 10
    assert clock.now_ns() == 10 << shift
    clock.warp_to(5000 << shift)
    assert clock.now_ns() == 5000 << shift
    insns.n = 12
    assert clock.now_ns() == (5000 << shift) + (2 << shift)
    clock.warp_to(0)  # never backwards
    assert clock.now_ns() == (5002 << shift)


def test_icount_time_ignores_the_host_clock() -> None:
    clock, insns = icount_clock(2)
    clock.start()
    insns.n = 7
    time.sleep(0.002)
    assert clock.now_ns() == 28
    clock.stop()
    assert clock.now_ns() == 28


def test_insns_until_rounds_up() -> None:
    clock, insns = icount_clock(3)  # 8 ns per instruction
    insns.n = 2  # now = 16
    assert clock.insns_until(16) == 0
    assert clock.insns_until(17) == 1
    assert clock.insns_until(24) == 1
    assert clock.insns_until(25) == 2
    assert clock.insns_until(0) == 0  # already past
    clock.warp_to(21)  # warp need not land on an instruction boundary
    assert clock.insns_until(24) == 1
    assert clock.insns_until(29) == 1
    assert clock.insns_until(30) == 2


def test_insns_until_deadline_reaches_it() -> None:
    clock, insns = icount_clock(5)
    for deadline in (1, 31, 32, 33, 1000, 12345):
        insns.n = 0
        n = clock.insns_until(deadline)
        insns.n = n
        assert clock.now_ns() >= deadline
        insns.n = n - 1
        assert clock.now_ns() < deadline


# -- slice shortening --------------------------------------------------------------------------
def test_timer_armed_before_slice_end_shortens_the_slice() -> None:
    clock, _ = icount_clock(0)
    calls: list[int] = []
    clock.shorten_slice = calls.append
    t = clock.timer(lambda: None, "t")
    t.mod(500)  # no slice running
    assert calls == []
    clock.slice_end = 1000
    t.mod(1000)  # at the end of the slice: the slice already stops there
    t.mod(2000)
    assert calls == []
    t.mod(700)
    assert calls == [700] and clock.slice_end == 700
    clock.timer(lambda: None, "u").mod(800)  # later than the shortened end
    assert calls == [700]
    clock.timer(lambda: None, "v").mod(600)
    assert calls == [700, 600] and clock.slice_end == 600
    clock.slice_end = None
    t.mod(1)
    assert calls == [700, 600]
