"""Which guest pages the destination does not have yet.

DESIGN.md, "Threads and time": a migration thread reads RAM while the CPU runs, and
each pass sends the pages written since the one before. The last pass runs with the CPU
stopped. Two ways to know what was written:
- DirtyLog, with pyemu's engine (patch 0007, QEMU's DIRTY_MEMORY_MIGRATION): the engine
  sets a byte per page at the first store after each sync, and AddressSpace does for
  writes from Python (DMA, loaders, the gdb stub); a sync reads and clears ~64 KiB.
  Pages are sent from RAM itself (``moving``: the writer copies each run aside before
  it checksums and sends it); a page written meanwhile is in the next sync.
- RamTracker, with any other engine: each pass copies what it sends into ``sent`` and
  the next compares RAM against it, ~15-25 ms per 256 MiB at each pass and inside the
  downtime (stock unicorn has no write tracking: ../shared/notes/unicorn-2.1.4.md, a
  memory write hook halves compute speed). Pages are sent from the copy.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from emu.memory import hostram

log = logging.getLogger("emu.migration")

PAGE = hostram.PAGE
SCAN_PAGES = hostram.SCAN_PAGES


class RamTracker:
    """The destination's copy of guest RAM as this side has sent it (all zero at first:
    a destination starts with zeroed RAM, so zero pages need no first pass)."""

    moving = False  # whether ``source`` may change while it is sent

    def __init__(self, ram: np.ndarray) -> None:
        self.ram = ram
        self.sent = hostram.allocate(ram.size, sparse=True)  # untouched pages cost nothing
        self._ram64 = ram.view(np.uint64).reshape(-1, PAGE // 8)
        self._sent64 = self.sent.view(np.uint64).reshape(-1, PAGE // 8)
        self.pages = len(self._ram64)

    def dirty(self) -> np.ndarray:
        """One bool per page: it differs from what was sent (the first time: it is not
        zero)."""
        out = np.empty(self.pages, dtype=bool)
        for i in range(0, self.pages, SCAN_PAGES):
            j = min(i + SCAN_PAGES, self.pages)
            np.any(self._ram64[i:j] != self._sent64[i:j], axis=1, out=out[i:j])
        return out

    def sync(self) -> np.ndarray:
        """``dirty()`` and ``take()`` of its result in one scan (the last pass, with the
        guest stopped and every millisecond downtime)."""
        out = np.empty(self.pages, dtype=bool)
        for i in range(0, self.pages, SCAN_PAGES):
            j = min(i + SCAN_PAGES, self.pages)
            ram, sent = self._ram64[i:j], self._sent64[i:j]
            mask = out[i:j]
            np.any(ram != sent, axis=1, out=mask)
            if mask.any():
                sent[mask] = ram[mask]
        return out

    @property
    def source(self) -> np.ndarray:
        """Where the pages ``take`` recorded are sent from."""
        return self.sent

    def take(self, which: np.ndarray) -> None:
        """Record the pages ``which`` selects as sent, copied from RAM as they are now;
        the sender then sends them from ``source`` (a page written meanwhile shows as
        dirty at the next scan)."""
        for i in range(0, self.pages, SCAN_PAGES):
            j = min(i + SCAN_PAGES, self.pages)
            mask = which[i:j]
            if mask.any():
                self._sent64[i:j][mask] = self._ram64[i:j][mask]

    def close(self) -> None:
        """Stop tracking (the compare keeps no state outside this object)."""


class DirtyLog:
    """RamTracker's interface over the engine's dirty log of ``machine`` (its CPU must
    have one), with no copy of RAM: ``dirty()`` and ``sync()`` run on the machine
    thread, between slices."""

    moving = True

    def __init__(self, machine: Any) -> None:
        self.ram = machine.mem.ram
        self.pages = self.ram.size // PAGE
        self.machine = machine
        self.log = np.zeros(self.pages, dtype=np.uint8)
        self.unsent = np.zeros(self.pages, dtype=bool)  # written, not taken since
        self.started = False

    def _restart(self) -> np.ndarray:
        """On the machine thread: the pages written since the last restart, and a new
        log (clear, then every TLB entry back to the slow path that marks pages)."""
        written = self.log.astype(bool)
        self.log[:] = 0
        mem = self.machine.mem
        mem.dirty_log = self.log
        self.machine.cpu.dirty_log(self.ram.ctypes.data, self.ram.size, self.log.ctypes.data)
        return written

    def _stop(self) -> None:
        self.machine.mem.dirty_log = None
        self.machine.cpu.dirty_log(self.ram.ctypes.data, self.ram.size, None)

    def dirty(self) -> np.ndarray:
        """The pages written and not taken since; the first call starts the log and
        answers the pages that may not be zero (the destination starts all zero; the
        writer reads each once and skips those that are)."""
        written = self.machine.post(self._restart).result()
        if not self.started:
            self.started = True
            written = hostram.touched(self.ram)
        self.unsent |= written
        return self.unsent.copy()

    @property
    def source(self) -> np.ndarray:
        """RAM itself: no copy (a first touch of each page of one costs more than
        sending the page), the log catches what changes."""
        return self.ram

    def take(self, which: np.ndarray) -> None:
        self.unsent &= ~which

    def sync(self) -> np.ndarray:
        """The last pass (the guest stopped): what is left to send, taken."""
        written = self.dirty()
        self.take(written)
        return written

    def close(self) -> None:
        if self.started:
            self.machine.post(self._stop).result()


Tracker = RamTracker | DirtyLog


def tracker_for(machine: Any) -> Tracker:
    """The engine's dirty log where it has one, else the compare (one line says so)."""
    if machine.cpu.has_dirty_log:
        return DirtyLog(machine)
    log.warning("migration: the unicorn engine keeps no dirty log (not pyemu's build: run "
                "'make'); comparing all of RAM at each pass, the downtime grows with RAM")
    return RamTracker(machine.mem.ram)


def copy_changed(dst: np.ndarray, src: np.ndarray) -> None:
    """Make ``dst`` equal ``src`` writing only the pages that differ (a page never
    written costs a fault and a zeroing when first touched; reading it costs neither).
    A 16 MiB chunk where the kernel vouches ``src`` is all zeros is zeroed in ``dst``
    by giving its pages back (hostram.zero) instead of being read."""
    d = dst.view(np.uint64).reshape(-1, PAGE // 8)
    s = src.view(np.uint64).reshape(-1, PAGE // 8)
    clean = hostram.untouched(src)
    for i in range(0, len(d), SCAN_PAGES):
        j = min(i + SCAN_PAGES, len(d))
        if clean is not None and clean[i:j].all():
            hostram.zero(dst[i * PAGE:j * PAGE])
            continue
        mask = np.any(d[i:j] != s[i:j], axis=1)
        if mask.any():
            d[i:j][mask] = s[i:j][mask]
