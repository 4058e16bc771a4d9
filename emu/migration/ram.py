"""Which guest pages the destination does not have yet: compare against what was sent.

DESIGN.md, "Threads and time": a migration thread reads RAM while the CPU runs, so
correctness comes from keeping a copy of every page as it was sent and, at each pass,
sending the pages that differ from that copy; the last pass runs with the CPU stopped.
unicorn gives no cheap write tracking (../shared/notes/unicorn-2.1.4.md: a memory write
hook halves compute speed, write protection breaks), and a scan of 256 MiB takes ~25 ms.
"""

from __future__ import annotations

import numpy as np

PAGE = 4096
SCAN_PAGES = 4096  # compare 16 MiB at a time: bounded temporaries


class RamTracker:
    """The destination's copy of guest RAM as this side has sent it (all zero at first:
    a destination starts with zeroed RAM, so zero pages need no first pass)."""

    def __init__(self, ram: np.ndarray) -> None:
        self.ram = ram
        self.sent = np.zeros(ram.shape, ram.dtype)  # calloc: untouched pages cost nothing
        self._ram64 = ram.view(np.uint64).reshape(-1, PAGE // 8)
        self._sent64 = self.sent.view(np.uint64).reshape(-1, PAGE // 8)
        self.pages = len(self._ram64)

    def dirty(self) -> np.ndarray:
        """One bool per page: it differs from what was sent."""
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

    def take(self, which: np.ndarray) -> None:
        """Record the pages ``which`` selects as sent, copied from RAM as they are now;
        the sender then sends ``self.sent`` (a page written meanwhile shows as dirty at
        the next scan)."""
        for i in range(0, self.pages, SCAN_PAGES):
            j = min(i + SCAN_PAGES, self.pages)
            mask = which[i:j]
            if mask.any():
                self._sent64[i:j][mask] = self._ram64[i:j][mask]


def copy_changed(dst: np.ndarray, src: np.ndarray) -> int:
    """Make ``dst`` equal ``src`` writing only the pages that differ (a page never
    written costs a fault and a zeroing when first touched; reading it costs neither);
    returns how many pages were written."""
    d = dst.view(np.uint64).reshape(-1, PAGE // 8)
    s = src.view(np.uint64).reshape(-1, PAGE // 8)
    written = 0
    for i in range(0, len(d), SCAN_PAGES):
        j = min(i + SCAN_PAGES, len(d))
        mask = np.any(d[i:j] != s[i:j], axis=1)
        if mask.any():
            d[i:j][mask] = s[i:j][mask]
            written += int(mask.sum())
    return written


def clear(ram: np.ndarray) -> None:
    """Zero ``ram``, writing only the pages that are not zero already."""
    r = ram.view(np.uint64).reshape(-1, PAGE // 8)
    for i in range(0, len(r), SCAN_PAGES):
        chunk = r[i:i + SCAN_PAGES]
        mask = np.any(chunk != 0, axis=1)
        if mask.any():
            chunk[mask] = 0
