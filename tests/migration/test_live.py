"""The pieces of live migration in one process: passes of pages against what was sent,
and a destination that ends up with exactly the source's last RAM."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest

from emu.memory import hostram
from emu.migration.ram import PAGE, RamTracker, copy_changed
from emu.migration.stream import (
    DATA_RUN,
    RAM_END,
    ZERO_RUN,
    StreamError,
    StreamWriter,
    Target,
    receive_stream,
    write_parts,
)

PAGES = 64


class Pipe:
    """A channel reading from bytes, as transports do (read_exact)."""

    def __init__(self, data: bytes) -> None:
        self.buf = io.BytesIO(data)

    def read_exact(self, n: int) -> bytes:
        data = self.buf.read(n)
        if len(data) < n:
            raise EOFError(f"connection closed after {len(data)} of {n} bytes")
        return data

    def read_into(self, view: memoryview) -> None:
        view[:] = self.read_exact(len(view))


def description(size: int) -> dict:
    return {"machine": "pc", "ram_size": size, "clock_ns": 0, "objects": []}


def migrate(ram: np.ndarray, passes, target: np.ndarray) -> np.ndarray:
    """Send ``ram`` in passes; each pass first lets ``passes[i](ram)`` change it."""
    out = io.BytesIO()
    w = StreamWriter(out)
    w.head(description(ram.size))
    tracker = RamTracker(ram)
    for change in passes:
        change(ram)
        dirty = tracker.dirty()
        tracker.take(dirty)
        w.pages(tracker.source, dirty, False, moving=tracker.moving)
    w.pages(tracker.source, tracker.sync(), False)
    w.finish([])
    raw = receive_stream(Pipe(out.getvalue()), EOFError, lambda desc: Target(target))
    return raw.ram


def test_the_destination_gets_the_last_contents_of_every_page():
    rng = np.random.default_rng(1)
    ram = np.zeros(PAGES * PAGE, np.uint8)
    target = np.zeros_like(ram)

    def fill(r):
        r[: 32 * PAGE] = rng.integers(1, 256, 32 * PAGE, np.uint8)

    def rewrite_some(r):
        r[5 * PAGE:6 * PAGE] = 7
        r[40 * PAGE] = 1

    def zero_some(r):  # pages sent with data, then zeroed: the destination must zero them
        r[0:3 * PAGE] = 0

    got = migrate(ram, [fill, rewrite_some, zero_some], target)
    assert got is target
    assert (target == ram).all()


def test_a_tracker_sends_only_what_changed_since_it_was_sent():
    ram = np.zeros(PAGES * PAGE, np.uint8)
    t = RamTracker(ram)
    assert not t.dirty().any()  # zero pages: the destination has them already
    ram[3 * PAGE] = 1
    ram[9 * PAGE + 100] = 2
    assert np.flatnonzero(t.dirty()).tolist() == [3, 9]
    t.take(t.dirty())
    assert not t.dirty().any()
    ram[3 * PAGE] = 0  # zeroed after it was sent: dirty again
    assert np.flatnonzero(t.sync()).tolist() == [3]
    assert not t.dirty().any() and (t.sent == ram).all()


def test_copy_changed_makes_one_ram_the_other():
    a = np.zeros(PAGES * PAGE, np.uint8)
    b = a.copy()
    b[7 * PAGE + 1] = 5
    b[63 * PAGE] = 9
    copy_changed(a, b)
    assert (a == b).all()


def records(pages: bytes) -> list[tuple[str, int, int]]:
    """The RAM records of ``pages`` (what StreamWriter.pages wrote, then RAM_END):
    ("data" or "zero", first page, pages)."""
    out, at = [], 0
    while pages[at] != RAM_END:
        if pages[at] == ZERO_RUN:
            first, count = struct.unpack_from("<QI", pages, at + 1)
            out.append(("zero", first, count))
            at += 13
        else:
            assert pages[at] == DATA_RUN
            first, count, _, length = struct.unpack_from("<QIBI", pages, at + 1)
            out.append(("data", first, count))
            at += 18 + length
    return out


def sent(ram: np.ndarray, which: np.ndarray | None, **how) -> list[tuple[str, int, int]]:
    out = io.BytesIO()
    w = StreamWriter(out)
    w.pages(ram, which, False, **how)
    w.finish([])
    return records(out.getvalue())


def test_a_whole_image_has_the_same_records_however_its_pages_were_touched():
    """A snapshot of the same RAM is the same bytes: zero pages run as long as they
    go, touched or not, and data stretches end only at a zero page or a window."""
    a, b = hostram.allocate(1024 * PAGE), hostram.allocate(1024 * PAGE)
    for ram in a, b:
        ram[3 * PAGE:300 * PAGE] = 1  # across the window at page 256
        ram[700 * PAGE + 5] = 2
    a[600 * PAGE:640 * PAGE] = 0  # written with zeros: touched, zero
    b[1000 * PAGE] = 0
    images = []
    for ram in a, b:
        out = io.BytesIO()
        write_parts(out, description(ram.size), ram, [])
        images.append(out.getvalue())
    assert images[0] == images[1]
    assert sent(a, None) == [("zero", 0, 3), ("data", 3, 253), ("data", 256, 44),
                             ("zero", 300, 400), ("data", 700, 1), ("zero", 701, 323)]


def test_a_first_pass_sends_no_record_for_a_zero_page():
    ram = hostram.allocate(1024 * PAGE)
    ram[10 * PAGE:20 * PAGE] = 3
    ram[20 * PAGE:30 * PAGE] = 0  # touched, zero: the destination has it already
    ram[900 * PAGE] = 4
    assert sent(ram, hostram.touched(ram), moving=True, fresh=True) == [
        ("data", 10, 10), ("data", 900, 1)]


@pytest.mark.parametrize("moving", [False, True])
def test_scattered_pages_go_as_stretches_within_their_window(moving):
    ram = np.zeros(1024 * PAGE, np.uint8)
    for page in (1, 2, 3, 6, 255, 256, 257):
        ram[page * PAGE + 7] = page % 200 + 1
    which = np.zeros(1024, bool)
    which[[1, 2, 3, 4, 5, 6, 255, 256, 257, 600]] = True
    assert sent(ram, which, moving=moving) == [
        ("data", 1, 3), ("zero", 4, 2), ("data", 6, 1), ("data", 255, 1), ("data", 256, 2),
        ("zero", 600, 1)]
    target = np.full_like(ram, 9)
    out = io.BytesIO()
    w = StreamWriter(out)
    w.head(description(ram.size))
    w.pages(ram, which, False, moving=moving)
    w.finish([])
    receive_stream(Pipe(out.getvalue()), EOFError, lambda desc: Target(target))
    assert (target.reshape(-1, PAGE)[which] == ram.reshape(-1, PAGE)[which]).all()


def test_disk_records_need_a_drive_that_takes_them():
    out = io.BytesIO()
    w = StreamWriter(out)
    w.head(description(PAGES * PAGE))
    w.disk("data", 0, b"\1" * 512)
    w.finish([])
    with pytest.raises(StreamError, match="disk/data@0: no writable drive of that id"):
        receive_stream(Pipe(out.getvalue()), EOFError,
                       lambda desc: Target(np.zeros(PAGES * PAGE, np.uint8)))


class FakeClock:
    """time.monotonic for live.py, moved only by waits (the pacer's sleeps)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.now += seconds
        return False  # not cancelled


class PacedJob:
    """What _Paced needs of an outgoing migration: a channel, a cancel flag, a deadline."""

    def __init__(self, clock: FakeClock) -> None:
        self.cancelled = type("Flag", (), {"is_set": lambda _s: False,
                                           "wait": lambda _s, t: clock.wait(t)})()
        self.channel = self
        self.writes: list[tuple[float, int]] = []
        self.clock = clock

    def time_left(self) -> None:
        return None

    def write(self, data: bytes) -> None:
        self.writes.append((self.clock.now, len(data)))


@pytest.fixture
def paced(monkeypatch):
    from emu.migration import live

    clock = FakeClock()
    monkeypatch.setattr(live, "time", clock)
    job = PacedJob(clock)
    return live._Paced(job), job, clock


def test_max_bandwidth_paces_in_windows_as_qemu_does(paced):
    out, job, clock = paced
    start = clock.now
    out.pace(10 * PAGE * 10)  # 10 pages per 100 ms window
    for _ in range(35):
        out.write(b"\0" * PAGE)
    # the first window's 10 pages go at once; the rest wait for windows of their own
    assert {t for t, _ in job.writes[:10]} == {start}
    by_window = np.bincount([int((t - start) / 0.1 + 1e-9) for t, _ in job.writes])
    assert by_window.tolist() == [10, 10, 10, 5]
    # the windows go on across passes: pacing again at the same limit is no fresh burst
    out.pace(10 * PAGE * 10)
    out.write(b"\0" * PAGE * 5)
    assert clock.now - start == pytest.approx(0.4)


def test_no_bandwidth_limit_never_waits(paced):
    out, job, clock = paced
    out.pace(0)
    for _ in range(100):
        out.write(b"\0" * PAGE * 256)
    assert clock.now == 1000.0 and len(job.writes) == 100
