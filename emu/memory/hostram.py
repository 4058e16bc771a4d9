"""Guest RAM in host memory: a page-aligned anonymous mapping, and what the host's
kernel knows about its pages.

- ``allocate``: a private anonymous mapping (mmap(2) MAP_PRIVATE|MAP_ANONYMOUS) as a
  numpy byte array. It reads as zeros and takes host memory only where touched, as a
  calloc'ed buffer does, but starts on a page boundary, so each guest page is one host
  page (a buffer 16 bytes off a boundary spreads every guest page over two).
- ``untouched``: the pages of such a mapping that certainly hold zeros, from
  /proc/self/pagemap (the kernel's Documentation/admin-guide/mm/pagemap.rst: one 64-bit
  entry per page, bit 63 "page present", bit 62 "page swapped"). A private anonymous
  page that is neither was never written (or was discarded): it reads as the zero page.
  A page only read is present (it maps the shared zero page), and so is every page of a
  transparent huge page once any of it is touched, so they count as touched: the answer
  errs only towards scanning a page.
- ``zero``: zero whole pages of such a mapping at once with madvise(2) MADV_DONTNEED,
  after which private anonymous memory reads as zero-fill, instead of writing zeros
  over the pages that hold something (what it does for any other array).
- ``touched``: the pages ``untouched`` leaves in doubt; ``nonzero``: which of them hold
  something other than zeros.
"""

from __future__ import annotations

import ctypes
import mmap
import os

import numpy as np

PAGE = 4096  # the guest's page, and the host's: pagemap counts x86-64 host pages
PAGEMAP = "/proc/self/pagemap"
PRESENT_OR_SWAPPED = np.uint64(3 << 62)
SCAN_PAGES = 4096  # compare 16 MiB at a time: bounded temporaries
GAP = 64  # untouched pages read rather than skipped between two touched ones

_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_MADV_DONTNEED, _MADV_HUGEPAGE = 4, 14  # <sys/mman.h>, Linux
HUGE_PAGE = 2 << 20


def allocate(size: int, *, sparse: bool = False) -> np.ndarray:
    """``size`` bytes (a multiple of the page size) of zeros, aligned to 2 MiB and
    offered to the kernel for transparent huge pages, as numpy does for its own large
    arrays (madvise MADV_HUGEPAGE): fewer faults, fewer TLB misses. ``sparse``: not
    offered, for memory written a few scattered pages at a time (a migration's copy of
    what it sent), where each first touch would zero a whole 2 MiB."""
    if size <= 0 or size % PAGE:
        raise ValueError(f"RAM size {size} is not a positive multiple of {PAGE}")
    mapping = mmap.mmap(-1, size + HUGE_PAGE, flags=mmap.MAP_PRIVATE)
    whole = np.frombuffer(mapping, dtype=np.uint8)
    offset = -whole.ctypes.data % HUGE_PAGE
    ram = whole[offset:offset + size]
    if not sparse:
        _libc.madvise(ram.ctypes.data, size, _MADV_HUGEPAGE)  # a hint: refused is fine
    return ram


def _ours(ram: np.ndarray) -> bool:
    """Whether ``ram`` is whole pages of a mapping ``allocate`` made (the calls below
    act on its address range, which must be private anonymous memory)."""
    base: object = ram
    while isinstance(base, np.ndarray):
        base = base.base
    base = base.obj if isinstance(base, memoryview) else base
    return (isinstance(base, mmap.mmap) and ram.flags.c_contiguous and ram.nbytes > 0
            and ram.ctypes.data % PAGE == 0 and ram.nbytes % PAGE == 0)


def untouched(ram: np.ndarray) -> np.ndarray | None:
    """One bool per page of ``ram`` (whole pages from ``allocate``): True where the page
    certainly holds zeros. None when the kernel does not say (no pagemap): scan every page."""
    if not _ours(ram):
        return None
    first = ram.ctypes.data // PAGE
    pages = ram.nbytes // PAGE
    try:
        fd = os.open(PAGEMAP, os.O_RDONLY)
    except OSError:
        return None
    try:
        raw = os.pread(fd, pages * 8, first * 8)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(raw) != pages * 8:
        return None
    return (np.frombuffer(raw, dtype=np.uint64) & PRESENT_OR_SWAPPED) == 0


def _scan(ram: np.ndarray, maybe: np.ndarray | None) -> np.ndarray:
    """One bool per page: not all zeros; pages ``maybe`` leaves False are not read.
    Each stretch of pages is OR-reduced in place, row by row: no temporary as large as
    what is read (fresh memory for one costs a page fault per 4 KiB, in a VM several
    microseconds each, more than reading the pages)."""
    r = ram.view(np.uint64).reshape(-1, PAGE // 8)
    out = np.zeros(len(r), dtype=bool)
    words = np.empty(min(len(r), SCAN_PAGES), dtype=np.uint64)
    for first, end in _stretches(maybe, len(r)):
        for i in range(first, end, SCAN_PAGES):
            j = min(i + SCAN_PAGES, end)
            np.bitwise_or.reduce(r[i:j], axis=1, out=words[:j - i])
            np.not_equal(words[:j - i], 0, out=out[i:j])
    return out


def _stretches(maybe: np.ndarray | None, pages: int) -> list[tuple[int, int]]:
    """The runs of pages to read: all of them without ``maybe``, else the runs it marks,
    joined across gaps of up to GAP pages (reading a few more pages is cheaper than a
    call per run when touched pages are scattered)."""
    if maybe is None:
        return [(0, pages)]
    edges = np.flatnonzero(np.diff(maybe.astype(np.int8), prepend=0, append=0))
    starts, ends = edges[0::2], edges[1::2]
    if not len(starts):
        return []
    keep = np.flatnonzero(starts[1:] - ends[:-1] > GAP)  # gaps that stay gaps
    return list(zip(starts[np.r_[0, keep + 1]].tolist(), ends[np.r_[keep, -1]].tolist(),
                    strict=True))


def touched(ram: np.ndarray) -> np.ndarray:
    """One bool per page of ``ram``: it may hold something other than zeros (every page
    when the kernel does not say)."""
    clean = untouched(ram)
    return np.ones(ram.nbytes // PAGE, dtype=bool) if clean is None else ~clean


def nonzero(ram: np.ndarray) -> np.ndarray:
    """One bool per page of ``ram``: it holds something other than zeros."""
    return _scan(ram, touched(ram))


def zero(ram: np.ndarray) -> None:
    """Make all of ``ram`` zeros: whole pages from ``allocate`` are given back to the
    kernel; otherwise only the pages that are not zero are written."""
    if _ours(ram) and _libc.madvise(ram.ctypes.data, ram.nbytes, _MADV_DONTNEED) == 0:
        return
    r = ram.view(np.uint64).reshape(-1, PAGE // 8)
    r[_scan(ram, None)] = 0
