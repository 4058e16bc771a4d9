"""Guest RAM's host mapping: alignment, the pages the kernel says were never touched,
and zeroing by giving pages back."""

from __future__ import annotations

import numpy as np
import pytest

from emu.memory import hostram

PAGE = hostram.PAGE
PAGES = 1024


HUGE = hostram.HUGE_PAGE // PAGE  # pages per transparent huge page


def test_ram_is_aligned_zeros_that_cost_nothing_until_touched():
    ram = hostram.allocate(PAGES * PAGE)
    assert ram.ctypes.data % hostram.HUGE_PAGE == 0 and ram.nbytes == PAGES * PAGE
    assert ram.flags.writeable
    assert hostram.untouched(ram).all()  # nothing read or written yet
    assert not ram.any()


@pytest.mark.parametrize("size", [0, PAGE + 1, -PAGE])
def test_a_size_that_is_not_whole_pages_is_refused(size):
    with pytest.raises(ValueError, match="not a positive multiple"):
        hostram.allocate(size)


def test_untouched_pages_and_nonzero_follow_what_was_written_and_read():
    # 16 huge pages' worth: with transparent huge pages a touch makes the whole 2 MiB
    # present, without them only its 4 KiB; either way the far ones stay untouched
    pages = 16 * HUGE
    ram = hostram.allocate(pages * PAGE)
    ram[10 * PAGE + 7] = 1
    ram[pages * PAGE - 1] = 2
    assert int(ram[5 * HUGE * PAGE]) == 0  # read only: present (a zero page), still zero
    ram[8 * HUGE * PAGE] = 3
    ram[8 * HUGE * PAGE] = 0  # written back to zero: touched, and zero
    touched = set(np.flatnonzero(~hostram.untouched(ram)).tolist())
    assert {10, 5 * HUGE, 8 * HUGE, pages - 1} <= touched
    for far in (2 * HUGE, 3 * HUGE + 7, 11 * HUGE):
        assert far not in touched
    assert np.flatnonzero(hostram.nonzero(ram)).tolist() == [10, pages - 1]
    # whole pages of it count as its own; a view that cuts a page does not
    assert hostram.untouched(ram[HUGE * PAGE:2 * HUGE * PAGE]).all()
    assert hostram.untouched(ram[1:PAGE + 1]) is None


@pytest.mark.parametrize("seed", range(6))
def test_nonzero_finds_every_written_page_among_scattered_touched_ones(seed):
    # without huge pages each touch is one page: runs of touched pages with gaps of
    # every size around the scan's joining distance, pages written back to zero among
    # them, a written byte anywhere in its page
    rng = np.random.default_rng(seed)
    pages = 4 * PAGES
    ram = hostram.allocate(pages * PAGE, sparse=True)
    page, written = int(rng.integers(0, 3)), set()
    while page < pages:
        for p in range(page, min(page + int(rng.integers(1, 40)), pages)):
            where = p * PAGE + int(rng.integers(0, PAGE))
            ram[where] = 1
            if rng.random() < 0.3:
                ram[where] = 0  # touched, and zero again
            else:
                written.add(p)
        page = p + 1 + int(rng.choice([1, hostram.GAP - 1, hostram.GAP, hostram.GAP + 1,
                                        int(rng.integers(1, 400))]))
    assert np.flatnonzero(hostram.nonzero(ram)).tolist() == sorted(written)


def test_nonzero_reads_every_page_of_an_array_the_kernel_cannot_vouch_for():
    plain = np.zeros(PAGES * PAGE, np.uint8)
    plain[3 * PAGE] = 1
    plain[900 * PAGE + 4095] = 1
    assert hostram.untouched(plain) is None
    assert np.flatnonzero(hostram.nonzero(plain)).tolist() == [3, 900]


def test_zero_gives_the_pages_back_and_the_ram_reads_zeros_again():
    ram = hostram.allocate(PAGES * PAGE)
    ram[:] = 0xAA  # every page touched
    hostram.zero(ram)
    assert hostram.untouched(ram).all()
    assert not ram.any()
    ram[5 * PAGE] = 1  # still usable, at the same address
    assert np.flatnonzero(hostram.nonzero(ram)).tolist() == [5]


def test_zero_of_some_pages_gives_back_those_pages_only():
    ram = hostram.allocate(PAGES * PAGE)
    ram[:] = 0x55
    hostram.zero(ram[PAGE:3 * PAGE])
    assert not ram[PAGE:3 * PAGE].any() and (ram[:PAGE] == 0x55).all()
    assert (ram[3 * PAGE:] == 0x55).all()


def test_zero_on_any_other_array_writes_only_the_pages_that_need_it():
    plain = np.ones(PAGES * PAGE, np.uint8)
    hostram.zero(plain[PAGE:3 * PAGE])
    assert not plain[PAGE:3 * PAGE].any() and plain[:PAGE].all() and plain[3 * PAGE:].all()


def test_copy_changed_gives_back_chunks_the_source_never_touched():
    from emu.migration.ram import copy_changed

    chunk = hostram.SCAN_PAGES
    dst, src = hostram.allocate(3 * chunk * PAGE), hostram.allocate(3 * chunk * PAGE)
    dst[:] = 7  # every page of the machine's RAM holds something
    src[chunk * PAGE + 5] = 9  # the snapshot: one page in the middle chunk
    copy_changed(dst, src)
    # the first and last chunks went back to the kernel, the middle one was copied
    clean = hostram.untouched(dst)
    assert clean[:chunk].all() and clean[2 * chunk:].all() and not clean[chunk:2 * chunk].any()
    assert (dst == src).all()
