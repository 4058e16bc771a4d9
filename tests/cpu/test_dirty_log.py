"""The engine's migration dirty log (patch 0007, QEMU's DIRTY_MEMORY_MIGRATION): a byte
per RAM page, set at the first store after each restart, whoever writes: the CPU through
a TLB entry filled long before, the page walker setting accessed/dirty bits (Intel SDM
vol. 3A, 4.8), and Python (AddressSpace.write, as DMA and loaders do).
"""

from __future__ import annotations

import struct

import numpy as np
from test_x86 import PAGE_DIR, PAGE_TABLE, Rig, _paging_then

PAGE = 4096
# mov [ebx],eax; hlt; jmp back: each run() makes one store to [ebx] and halts
STORE_LOOP = bytes([0x89, 0x03, 0xF4, 0xEB, 0xFB])


def _rig(rigs: list[Rig]) -> Rig:
    rigs.append(Rig())
    assert rigs[-1].cpu.has_dirty_log, "the engine has no dirty log: run 'make'"
    return rigs[-1]


def _restart(rig: Rig, log: np.ndarray | None) -> None:
    """Clear ``log`` and (re)start the engine's log into it; None stops it."""
    ram = rig.mem.ram
    if log is not None:
        log[:] = 0
    rig.mem.dirty_log = log
    rig.cpu.dirty_log(ram.ctypes.data, ram.size, None if log is None else log.ctypes.data)


def _store(rig: Rig, addr: int) -> None:
    rig.set_reg("rbx", addr)
    assert rig.run().halted


def _written(log: np.ndarray) -> set[int]:
    return {int(p) * PAGE for p in np.flatnonzero(log)}


def test_stores_through_warm_tlb_entries_are_logged_once_per_restart(rigs: list[Rig]) -> None:
    rig = _rig(rigs)
    rig.flat32(STORE_LOOP)
    _store(rig, 0x150000)  # the entry for that page is filled and fast before the log
    log = np.zeros(rig.mem.ram.size // PAGE, dtype=np.uint8)
    _restart(rig, log)
    assert _written(log) == set()
    _store(rig, 0x150000)
    _store(rig, 0x150800)
    assert _written(log) == {0x150000}
    _restart(rig, log)
    _store(rig, 0x160000)
    _store(rig, 0x150004)  # fast again after the first store, slow again after restart
    assert _written(log) == {0x150000, 0x160000}
    rig.mem.write(0x170FFE, b"abcd")  # from Python, across a page boundary
    assert _written(log) == {0x150000, 0x160000, 0x170000, 0x171000}
    _restart(rig, None)
    _store(rig, 0x180000)
    assert _written(log) == {0x150000, 0x160000, 0x170000, 0x171000}


def test_accessed_and_dirty_bits_the_page_walker_sets_are_logged(rigs: list[Rig]) -> None:
    rig = _rig(rigs)
    _paging_then(rig, bytes([0xA3, *struct.pack("<I", 0x150000),  # mov [150000h],eax
                             0xF4]))                               # hlt
    log = np.zeros(rig.mem.ram.size // PAGE, dtype=np.uint8)
    _restart(rig, log)
    assert rig.run().halted
    assert rig.mem.read_u32(PAGE_TABLE + (0x150000 >> 12) * 4) & 0x60 == 0x60  # A and D
    assert {PAGE_DIR, PAGE_TABLE, 0x150000} <= _written(log)
