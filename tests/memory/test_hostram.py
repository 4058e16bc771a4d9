"""Guest RAM's host mapping: alignment, the pages the kernel says were never touched,
and zeroing by giving pages back."""

from __future__ import annotations

import numpy as np
import pytest

from emu.memory import hostram

PAGE = hostram.PAGE
PAGES = 1024


def test_ram_is_page_aligned_zeros_that_cost_nothing_until_touched():
    ram = hostram.allocate(PAGES * PAGE)
    assert ram.ctypes.data % PAGE == 0 and ram.nbytes == PAGES * PAGE and ram.flags.writeable
    assert hostram.untouched(ram).all()  # nothing read or written yet
    assert not ram.any()


@pytest.mark.parametrize("size", [0, PAGE + 1, -PAGE])
def test_a_size_that_is_not_whole_pages_is_refused(size):
    with pytest.raises(ValueError, match="not a positive multiple"):
        hostram.allocate(size)


def test_untouched_pages_and_nonzero_follow_what_was_written_and_read():
    ram = hostram.allocate(PAGES * PAGE)
    ram[10 * PAGE + 7] = 1
    ram[PAGES * PAGE - 1] = 2
    assert int(ram[500 * PAGE]) == 0  # read only: present (the zero page), still zero
    ram[600 * PAGE] = 3
    ram[600 * PAGE] = 0  # written back to zero: touched, and zero
    untouched = hostram.untouched(ram)
    assert np.flatnonzero(~untouched).tolist() == [10, 500, 600, PAGES - 1]
    assert np.flatnonzero(hostram.nonzero(ram)).tolist() == [10, PAGES - 1]


def test_nonzero_reads_every_page_of_an_array_the_kernel_cannot_vouch_for():
    plain = np.zeros(PAGES * PAGE, np.uint8)
    plain[3 * PAGE] = 1
    plain[900 * PAGE + 4095] = 1
    assert hostram.untouched(plain) is None
    assert hostram.untouched(hostram.allocate(PAGES * PAGE)[PAGE:]) is None  # a part of it
    assert np.flatnonzero(hostram.nonzero(plain)).tolist() == [3, 900]


def test_zero_gives_the_pages_back_and_the_ram_reads_zeros_again():
    ram = hostram.allocate(PAGES * PAGE)
    ram[:] = 0xAA  # every page touched
    hostram.zero(ram)
    assert hostram.untouched(ram).all()
    assert not ram.any()
    ram[5 * PAGE] = 1  # still usable, at the same address
    assert np.flatnonzero(hostram.nonzero(ram)).tolist() == [5]


def test_zero_on_any_other_array_writes_only_the_pages_that_need_it():
    plain = np.ones(PAGES * PAGE, np.uint8)
    hostram.zero(plain[PAGE:3 * PAGE])
    assert not plain[PAGE:3 * PAGE].any() and plain[:PAGE].all() and plain[3 * PAGE:].all()
