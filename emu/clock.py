"""Virtual time and timers.

Two modes (DESIGN.md, "Threads and time"):
- realtime: virtual time follows the host's monotonic clock while the machine runs and
  stands still while it is stopped;
- icount: virtual time is derived from the number of guest instructions executed
  (``2**shift`` ns each, as QEMU's ``-icount shift=N``), so a run is reproducible
  instruction for instruction.
Timers fire on the machine thread, at the end of the CPU slice that reaches them.

Virtual time and deadlines stay below ``HORIZON_NS``: a stream may not set the clock
beyond it, and a timer due after it is pending but never fires. The host times derived
from virtual ones (origin + virtual, the TSC, the CPU's slice deadline) are int64 in the
C helper; the horizon keeps them there, whatever a loaded state asks for.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable

NS_PER_SEC = 1_000_000_000
HORIZON_NS = 1 << 62  # about 146 years of virtual time


class Timer:
    """A one-shot timer; ``mod()`` re-arms it, ``cancel()`` disarms it."""

    def __init__(self, clock: Clock, callback: Callable[[], None], name: str) -> None:
        self.clock, self.callback, self.name = clock, callback, name
        self.deadline: int | None = None
        self._gen = 0

    @property
    def pending(self) -> bool:
        return self.deadline is not None

    def mod(self, deadline_ns: int) -> None:
        """Arm for ``deadline_ns``; one past the horizon stays pending and never fires."""
        self.deadline = deadline_ns
        self._gen += 1
        if deadline_ns <= HORIZON_NS:
            self.clock._push(self)

    def cancel(self) -> None:
        self.deadline = None
        self._gen += 1

    def arm(self, deadline_ns: int) -> None:
        """Follow a deadline as devices keep it in state: armed at ``deadline_ns``, or not
        armed when it is -1. A rebuild() after a load calls this to re-arm."""
        if deadline_ns >= 0:
            self.mod(deadline_ns)
        else:
            self.cancel()


class Clock:
    """The machine's virtual clock (nanoseconds since the machine was created)."""

    def __init__(self, icount_shift: int | None = None) -> None:
        self.icount_shift = icount_shift
        self.insn_count: Callable[[], int] = lambda: 0  # bound to the CPU in icount mode
        self._heap: list[tuple[int, int, int, Timer]] = []
        # The end of the CPU slice now running, and who shortens it when a timer is armed
        # to fire before that (set by the machine around each slice).
        self.slice_end: int | None = None
        self.shorten_slice: Callable[[int], None] = lambda deadline_ns: None
        self._seq = itertools.count()
        self._warp = 0  # icount: virtual ns skipped while the CPU idled
        self._origin = time.monotonic_ns()
        self._stopped_at: int | None = self._origin  # time stands still until start()

    @property
    def icount(self) -> bool:
        return self.icount_shift is not None

    def now_ns(self) -> int:
        if self.icount_shift is not None:
            return (self.insn_count() << self.icount_shift) + self._warp
        host = self._stopped_at if self._stopped_at is not None else time.monotonic_ns()
        return host - self._origin

    def set_now(self, virtual_ns: int) -> None:
        """Make virtual time read ``virtual_ns`` from here on (a loaded snapshot)."""
        if self.icount_shift is not None:
            self._warp = virtual_ns - (self.insn_count() << self.icount_shift)
        elif self._stopped_at is not None:
            self._origin = self._stopped_at - virtual_ns
        else:
            self._origin = time.monotonic_ns() - virtual_ns

    def time_base(self) -> tuple[int, int]:
        """How code outside Python (the CPU's TSC) computes virtual time while running:
        ``(shift, base)`` with now = (instructions << shift) + base in icount mode, or
        ``(-1, base)`` with now = CLOCK_MONOTONIC ns - base in realtime mode. Valid until
        the next set_now/start/warp, i.e. for one CPU slice."""
        if self.icount_shift is not None:
            return self.icount_shift, self._warp
        return -1, self._origin

    def warp_to(self, virtual_ns: int) -> None:
        """icount: jump idle time forward to ``virtual_ns`` (the CPU executed nothing)."""
        self._warp += max(0, virtual_ns - self.now_ns())

    def insns_until(self, virtual_ns: int) -> int:
        """icount: instructions to execute before virtual time reaches ``virtual_ns``."""
        assert self.icount_shift is not None
        delta = virtual_ns - self.now_ns()
        return max(0, -(-delta >> self.icount_shift))

    def start(self) -> None:
        """Let realtime virtual time advance again after ``stop()``."""
        if self._stopped_at is not None:
            self._origin += time.monotonic_ns() - self._stopped_at
            self._stopped_at = None

    def stop(self) -> None:
        if self._stopped_at is None:
            self._stopped_at = time.monotonic_ns()

    def host_deadline(self, virtual_ns: int) -> int:
        """The host monotonic time at which realtime virtual time reaches ``virtual_ns``."""
        return virtual_ns + self._origin

    def timer(self, callback: Callable[[], None], name: str) -> Timer:
        return Timer(self, callback, name)

    def _push(self, t: Timer) -> None:
        assert t.deadline is not None
        heapq.heappush(self._heap, (t.deadline, next(self._seq), t._gen, t))
        if self.slice_end is not None and t.deadline < self.slice_end:
            self.slice_end = t.deadline
            self.shorten_slice(t.deadline)

    def _prune(self) -> None:
        while self._heap and self._heap[0][2] != self._heap[0][3]._gen:
            heapq.heappop(self._heap)

    def next_deadline(self) -> int | None:
        self._prune()
        return self._heap[0][0] if self._heap else None

    def run_expired(self) -> int:
        """Fire every timer whose deadline has passed; returns how many fired."""
        fired = 0
        now = self.now_ns()
        while True:
            self._prune()
            if not self._heap or self._heap[0][0] > now:
                return fired
            _, _, _, t = heapq.heappop(self._heap)
            t.deadline = None
            t._gen += 1
            t.callback()
            fired += 1
