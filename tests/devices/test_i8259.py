"""The PC's 8259A pair, driven through its ports as BIOS and Linux drive it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from emu.devices.i8259 import IsaPic, Pic8259
from emu.qom import fields_of

if TYPE_CHECKING:
    from conftest import BenchBoard

MASTER, SLAVE = 0x20, 0xA0
ELCR1, ELCR2 = 0x4D0, 0x4D1
NS_EOI = 0x20
READ_IRR, READ_ISR, POLL = 0x0A, 0x0B, 0x0C


def init_pair(board: BenchBoard, master_icw4: int = 0x01, slave_icw4: int = 0x01) -> None:
    """The PC initialisation sequence: vectors 08h and 70h, slave on IR2."""
    for port, base, icw3, icw4 in ((MASTER, 0x08, 0x04, master_icw4),
                                   (SLAVE, 0x70, 0x02, slave_icw4)):
        board.outb(port, 0x11)
        board.outb(port + 1, base)
        board.outb(port + 1, icw3)
        board.outb(port + 1, icw4)


def make_pic(board: BenchBoard) -> IsaPic:
    pic = IsaPic("pic", None)
    pic.realize_all(board)
    pic.reset_all()
    return pic


@pytest.fixture
def pic(board: BenchBoard) -> IsaPic:
    p = make_pic(board)
    init_pair(board)
    return p


def read_isr(board: BenchBoard, port: int) -> int:
    board.outb(port, READ_ISR)
    value = board.inb(port)
    board.outb(port, READ_IRR)
    return value


def read_irr(board: BenchBoard, port: int) -> int:
    board.outb(port, READ_IRR)
    return board.inb(port)


def eoi(board: BenchBoard, irq: int) -> None:
    if irq >= 8:
        board.outb(SLAVE, NS_EOI)
    board.outb(MASTER, NS_EOI)


def test_reset_masks_everything_until_initialised(board: BenchBoard) -> None:
    pic = make_pic(board)
    assert board.inb(0x21) == 0xFF and board.inb(0xA1) == 0xFF
    pic.irq_line(0).raise_()
    assert not pic.intr_level()


def test_icw1_clears_mask_and_reads_irr(pic: IsaPic, board: BenchBoard) -> None:
    assert board.inb(0x21) == 0x00 and board.inb(0xA1) == 0x00
    pic.irq_line(3).raise_()
    assert board.inb(MASTER) == 0x08  # IRR by default


def test_single_interrupt_delivery_and_eoi(pic: IsaPic, board: BenchBoard) -> None:
    pic.irq_line(0).raise_()
    assert pic.intr_level()
    assert pic.acknowledge() == 0x08
    assert not pic.intr_level()
    assert read_isr(board, MASTER) == 0x01
    assert read_irr(board, MASTER) == 0x00
    board.outb(MASTER, NS_EOI)
    assert read_isr(board, MASTER) == 0x00


def test_fully_nested_priority(pic: IsaPic, board: BenchBoard) -> None:
    pic.irq_line(3).raise_()
    pic.irq_line(1).raise_()
    assert pic.acknowledge() == 0x09
    assert not pic.intr_level()  # IRQ3 waits behind IRQ1 in service
    pic.irq_line(0).raise_()
    assert pic.intr_level()  # but IRQ0 outranks it and nests
    assert pic.acknowledge() == 0x08
    assert read_isr(board, MASTER) == 0x03
    board.outb(MASTER, NS_EOI)  # ends IRQ0, the highest in service
    assert read_isr(board, MASTER) == 0x02
    assert not pic.intr_level()
    board.outb(MASTER, NS_EOI)
    assert pic.intr_level()
    assert pic.acknowledge() == 0x0B


def test_mask_register(pic: IsaPic, board: BenchBoard) -> None:
    board.outb(0x21, 0x02)
    assert board.inb(0x21) == 0x02
    pic.irq_line(1).raise_()
    assert not pic.intr_level()
    assert read_irr(board, MASTER) == 0x02  # requested, only masked
    board.outb(0x21, 0x00)
    assert pic.intr_level()
    assert pic.acknowledge() == 0x09


def test_cascade_to_slave(pic: IsaPic, board: BenchBoard) -> None:
    pic.irq_line(12).raise_()
    assert pic.intr_level()
    assert pic.acknowledge() == 0x74
    assert read_isr(board, MASTER) == 0x04
    assert read_isr(board, SLAVE) == 0x10
    board.outb(SLAVE, NS_EOI)
    assert read_isr(board, MASTER) == 0x04  # the master needs its own EOI
    board.outb(MASTER, NS_EOI)
    assert read_isr(board, MASTER) == 0 and read_isr(board, SLAVE) == 0


def test_slave_waits_for_its_eoi(pic: IsaPic, board: BenchBoard) -> None:
    pic.irq_line(8).raise_()
    pic.irq_line(9).raise_()
    assert pic.acknowledge() == 0x70
    eoi(board, 8)
    assert pic.acknowledge() == 0x71


def test_cascade_masked_at_master_or_slave(pic: IsaPic, board: BenchBoard) -> None:
    board.outb(0x21, 0x04)
    pic.irq_line(10).raise_()
    assert not pic.intr_level()
    board.outb(0x21, 0x00)
    assert pic.intr_level()
    board.outb(0xA1, 0x04)
    pic.irq_line(10).lower()
    pic.irq_line(11).raise_()
    board.outb(0xA1, 0x0C)  # masking the slave's only request drops its INT...
    assert pic.acknowledge() == 0x77  # ...but the master's IR2 edge is latched: spurious 15


def test_isa_irq2_is_redirected_to_irq9(pic: IsaPic) -> None:
    assert pic.irq_line(2) is pic.irq_line(9)
    pic.irq_line(2).raise_()
    assert pic.acknowledge() == 0x71
    with pytest.raises(ValueError):
        pic.irq_line(16)


def test_elcr_forced_edge_bits(pic: IsaPic, board: BenchBoard) -> None:
    board.outb(ELCR1, 0xFF)
    board.outb(ELCR2, 0xFF)
    assert board.inb(ELCR1) == 0xF8  # IRQ0, 1, 2 always edge
    assert board.inb(ELCR2) == 0xDE  # IRQ8 and 13 always edge
    board.outw(ELCR1, 0x0C20)
    assert board.inw(ELCR1) == 0x0C20


def test_edge_needs_a_new_rising_edge(pic: IsaPic, board: BenchBoard) -> None:
    line = pic.irq_line(4)
    line.raise_()
    assert pic.acknowledge() == 0x0C
    board.outb(MASTER, NS_EOI)
    assert not pic.intr_level()  # still high, but no new edge
    line.raise_()
    assert not pic.intr_level()
    line.lower()
    line.raise_()
    assert pic.acknowledge() == 0x0C


def test_edge_pulse_is_latched(pic: IsaPic) -> None:
    pic.irq_line(0).pulse()
    assert pic.intr_level()
    assert pic.acknowledge() == 0x08


def test_level_triggered_repeats_until_lowered(pic: IsaPic, board: BenchBoard) -> None:
    board.outb(ELCR2, 0x08)  # IRQ11 level
    line = pic.irq_line(11)
    line.raise_()
    assert pic.acknowledge() == 0x73
    assert read_irr(board, SLAVE) == 0x08  # the line is still high
    eoi(board, 11)
    assert pic.intr_level()
    assert pic.acknowledge() == 0x73
    line.lower()
    eoi(board, 11)
    assert not pic.intr_level()
    assert read_irr(board, SLAVE) == 0


def test_switching_to_level_samples_the_line(pic: IsaPic, board: BenchBoard) -> None:
    line = pic.irq_line(5)
    line.raise_()
    assert pic.acknowledge() == 0x0D
    board.outb(MASTER, NS_EOI)
    assert not pic.intr_level()
    board.outb(ELCR1, 0x20)
    assert pic.intr_level()  # level mode: the high line is a request


def test_spurious_irq7_when_level_request_vanishes(pic: IsaPic, board: BenchBoard) -> None:
    board.outb(ELCR1, 0x20)
    pic.irq_line(5).raise_()
    assert pic.intr_level()
    pic.irq_line(5).lower()
    assert not pic.intr_level()
    assert pic.acknowledge() == 0x0F
    assert read_isr(board, MASTER) == 0  # no in-service bit for the default vector


def test_spurious_irq15_when_slave_request_vanishes(pic: IsaPic, board: BenchBoard) -> None:
    board.outb(ELCR2, 0x04)
    pic.irq_line(10).raise_()
    pic.irq_line(10).lower()
    assert pic.acknowledge() == 0x77
    assert read_isr(board, SLAVE) == 0
    assert read_isr(board, MASTER) == 0x04  # the OS must EOI the master only
    board.outb(MASTER, NS_EOI)
    assert not pic.intr_level()


def test_specific_eoi(pic: IsaPic, board: BenchBoard) -> None:
    pic.irq_line(3).raise_()
    pic.acknowledge()
    pic.irq_line(1).raise_()
    pic.acknowledge()
    assert read_isr(board, MASTER) == 0x0A
    board.outb(MASTER, 0x63)  # specific EOI for IR3, not the highest
    assert read_isr(board, MASTER) == 0x02


def test_rotate_on_non_specific_eoi(pic: IsaPic, board: BenchBoard) -> None:
    pic.irq_line(0).raise_()
    pic.irq_line(4).raise_()
    assert pic.acknowledge() == 0x08
    board.outb(MASTER, 0xA0)  # IR0 becomes the lowest priority
    pic.irq_line(0).lower()
    pic.irq_line(0).raise_()
    assert pic.acknowledge() == 0x0C
    board.outb(MASTER, 0xA0)  # IR4 lowest: order is now 5,6,7,0,...
    assert pic.acknowledge() == 0x08


def test_set_priority_and_rotate_on_specific_eoi(pic: IsaPic, board: BenchBoard) -> None:
    board.outb(MASTER, 0xC4)  # IR4 lowest, IR5 highest
    for irq in (1, 3, 6):
        pic.irq_line(irq).raise_()
    assert pic.acknowledge() == 0x0E
    board.outb(MASTER, 0xE6)  # rotate on specific EOI of IR6: IR7 highest
    assert read_isr(board, MASTER) == 0
    pic.irq_line(7).raise_()
    assert pic.acknowledge() == 0x0F
    board.outb(MASTER, 0xE0)  # IR0 lowest, IR1 highest (IR7 not in service: EOI is a no-op)
    assert pic.intr_level()  # IR1 outranks IR7 in service now
    assert pic.acknowledge() == 0x09


def test_ocw2_nop_changes_nothing(pic: IsaPic, board: BenchBoard) -> None:
    pic.irq_line(3).raise_()
    pic.acknowledge()
    board.outb(MASTER, 0x40)
    assert read_isr(board, MASTER) == 0x08


def test_auto_eoi(board: BenchBoard) -> None:
    pic = make_pic(board)
    init_pair(board, master_icw4=0x03, slave_icw4=0x03)
    pic.irq_line(1).raise_()
    pic.irq_line(3).raise_()
    assert pic.acknowledge() == 0x09
    assert read_isr(board, MASTER) == 0
    assert pic.acknowledge() == 0x0B  # no EOI needed


def test_auto_eoi_cascade_keeps_later_slave_request(board: BenchBoard) -> None:
    pic = make_pic(board)
    init_pair(board, master_icw4=0x03, slave_icw4=0x03)
    pic.irq_line(9).raise_()
    pic.irq_line(10).raise_()
    assert pic.acknowledge() == 0x71
    assert pic.intr_level()  # the slave still signals IRQ10
    assert pic.acknowledge() == 0x72
    assert not pic.intr_level()


def test_rotate_in_auto_eoi_mode(board: BenchBoard) -> None:
    pic = make_pic(board)
    init_pair(board, master_icw4=0x03)
    board.outb(MASTER, 0x80)  # rotate in AEOI mode: set
    for irq in (0, 4):
        pic.irq_line(irq).raise_()
    assert pic.acknowledge() == 0x08
    pic.irq_line(0).lower()
    pic.irq_line(0).raise_()
    assert pic.acknowledge() == 0x0C  # IR0 went to the bottom
    board.outb(MASTER, 0x00)  # clear: priorities stay where they are (5..7,0..4)
    for irq in (0, 4):
        pic.irq_line(irq).lower()
        pic.irq_line(irq).raise_()
    assert pic.acknowledge() == 0x08
    pic.irq_line(0).lower()
    pic.irq_line(0).raise_()
    assert pic.acknowledge() == 0x08  # IR0 was not sent to the bottom this time
    assert pic.acknowledge() == 0x0C


def test_poll_command(pic: IsaPic, board: BenchBoard) -> None:
    board.outb(MASTER, POLL)
    assert board.inb(MASTER) == 0x00  # nothing pending
    assert board.inb(0x21) == 0x00  # the poll was one-shot: IMR again
    pic.irq_line(6).raise_()
    pic.irq_line(3).raise_()
    board.outb(MASTER, POLL)
    assert board.inb(0x21) == 0x83  # either port answers the poll
    assert read_isr(board, MASTER) == 0x08
    assert read_irr(board, MASTER) == 0x40
    board.outb(MASTER, NS_EOI)
    assert pic.acknowledge() == 0x0E


def test_poll_master_then_slave(pic: IsaPic, board: BenchBoard) -> None:
    pic.irq_line(13).raise_()
    board.outb(MASTER, POLL)
    assert board.inb(MASTER) == 0x82
    board.outb(SLAVE, POLL)
    assert board.inb(SLAVE) == 0x85
    assert read_isr(board, SLAVE) == 0x20
    eoi(board, 13)
    assert not pic.intr_level()


def test_read_register_select_is_sticky(pic: IsaPic, board: BenchBoard) -> None:
    pic.irq_line(1).raise_()
    pic.acknowledge()
    pic.irq_line(3).raise_()
    board.outb(MASTER, READ_ISR)
    assert board.inb(MASTER) == 0x02
    assert board.inb(MASTER) == 0x02
    board.outb(MASTER, 0x08)  # OCW3 with RR=0 keeps the selection
    assert board.inb(MASTER) == 0x02
    board.outb(MASTER, READ_IRR)
    assert board.inb(MASTER) == 0x08


def test_special_mask_mode(pic: IsaPic, board: BenchBoard) -> None:
    pic.irq_line(3).raise_()
    assert pic.acknowledge() == 0x0B
    board.outb(0x21, 0x08)  # the handler masks its own level...
    pic.irq_line(5).raise_()
    assert not pic.intr_level()  # ...which alone does not let IR5 through
    board.outb(MASTER, 0x68)  # set special mask mode
    assert pic.intr_level()
    assert pic.acknowledge() == 0x0D
    assert read_isr(board, MASTER) == 0x28
    board.outb(MASTER, NS_EOI)  # skips IR3: masked in-service levels are not ended
    assert read_isr(board, MASTER) == 0x08
    board.outb(MASTER, 0x48)  # reset special mask mode
    pic.irq_line(6).raise_()
    assert not pic.intr_level()


def test_special_fully_nested_mode(board: BenchBoard) -> None:
    pic = make_pic(board)
    init_pair(board, master_icw4=0x11)
    pic.irq_line(11).raise_()
    assert pic.acknowledge() == 0x73
    pic.irq_line(9).raise_()  # higher priority inside the slave
    assert pic.intr_level()
    assert pic.acknowledge() == 0x71
    assert read_isr(board, SLAVE) == 0x0A
    pic.irq_line(12).raise_()  # lower than the slave's in-service level: held by the slave
    assert not pic.intr_level()


def test_fully_nested_blocks_slave_while_in_service(pic: IsaPic) -> None:
    pic.irq_line(11).raise_()
    assert pic.acknowledge() == 0x73
    pic.irq_line(9).raise_()
    assert not pic.intr_level()  # master IR2 is in service
    assert not pic.master.sfnm


def test_reinitialisation_resets_modes(board: BenchBoard) -> None:
    pic = make_pic(board)
    init_pair(board, master_icw4=0x03)
    board.outb(0x21, 0xF0)
    board.outb(MASTER, 0xC4)
    board.outb(MASTER, 0x68)
    line = pic.irq_line(1)
    line.raise_()
    board.outb(MASTER, 0x11)
    board.outb(0x21, 0x20)
    board.outb(0x21, 0x04)
    board.outb(0x21, 0x01)
    assert board.inb(0x21) == 0x00
    assert not pic.intr_level()  # edge sense reset: IR1's high line is not a new edge
    line.lower()
    line.raise_()
    pic.irq_line(0).raise_()
    assert pic.acknowledge() == 0x20  # priority back to IR0 first, new base
    assert read_isr(board, MASTER) == 0x01  # no longer auto-EOI


def test_single_mode_skips_icw3(pic: IsaPic, board: BenchBoard) -> None:
    board.outb(MASTER, 0x13)  # single, ICW4 needed
    board.outb(0x21, 0x40)
    board.outb(0x21, 0x03)  # this is ICW4 already: auto-EOI
    board.outb(0x21, 0xFE)  # and this is OCW1
    assert board.inb(0x21) == 0xFE
    pic.irq_line(0).raise_()
    assert pic.acknowledge() == 0x40
    assert read_isr(board, MASTER) == 0


def test_icw4_omitted_clears_its_functions(pic: IsaPic, board: BenchBoard) -> None:
    board.outb(MASTER, 0x10)  # cascade, no ICW4
    board.outb(0x21, 0x08)
    board.outb(0x21, 0x04)
    board.outb(0x21, 0x01)  # OCW1 now
    assert board.inb(0x21) == 0x01
    pic.irq_line(1).raise_()
    assert pic.acknowledge() == 0x09
    assert read_isr(board, MASTER) == 0x02


def test_word_access_splits_into_bytes(pic: IsaPic, board: BenchBoard) -> None:
    board.outw(0x20, 0x350A)  # OCW3 read IRR, then OCW1 = 35h
    pic.irq_line(1).raise_()
    assert board.inw(0x20) == 0x3502


def test_intr_callback_only_on_change(board: BenchBoard) -> None:
    pic = make_pic(board)
    seen: list[bool] = []
    pic.on_intr = seen.append
    init_pair(board)
    board.outb(0x21, 0x00)
    board.outb(0x21, 0x00)
    assert seen == []
    pic.irq_line(12).raise_()
    assert seen == [True]
    board.outb(0xA1, 0x10)
    board.outb(0xA1, 0x10)
    assert seen == [True]  # the master's IR2 edge is latched; nothing changed on INT
    pic.acknowledge()
    assert seen == [True, False]
    pic.reset_all()
    assert seen == [True, False, False]


def test_reset_resets_both_chips(pic: IsaPic, board: BenchBoard) -> None:
    board.outb(ELCR2, 0x08)
    pic.irq_line(12).raise_()
    pic.acknowledge()
    pic.reset_all()
    for chip in (pic.master, pic.slave):
        assert (chip.irr, chip.isr, chip.imr, chip.elcr) == (0, 0, 0xFF, 0)
    assert not pic.intr_level()


def test_each_chip_keeps_its_own_registers(pic: IsaPic, board: BenchBoard) -> None:
    board.outb(0xA1, 0x81)
    pic.irq_line(3).raise_()
    m, s = pic.master, pic.slave
    assert (m.irr, m.imr, m.isr, m.vector_base) == (0x08, 0x00, 0x00, 0x08)
    assert (s.irr, s.imr, s.isr, s.vector_base) == (0x00, 0x81, 0x00, 0x70)


# -- the state table is complete --------------------------------------------------


def _program(pic: IsaPic, board: BenchBoard) -> None:
    """Leave both chips in a busy, non-default state."""
    init_pair(board, slave_icw4=0x13)  # slave: auto-EOI and SFNM
    board.outb(ELCR2, 0x0C)  # IRQ10, 11 level
    board.outb(MASTER, 0xC5)  # IR6 highest
    board.outb(0xA1, 0x40)
    board.outb(MASTER, 0x80)  # rotate in AEOI (the master is not in AEOI: latent)
    board.outb(SLAVE, 0x80)
    for irq in (6, 3, 9, 11, 12):
        pic.irq_line(irq).raise_()
    pic.acknowledge()  # IR6 in service, its line stays high
    pic.irq_line(3).lower()  # edge latch kept, pin now low
    board.outb(MASTER, 0x68)  # special mask mode
    board.outb(0x21, 0x40)
    board.outb(SLAVE, READ_ISR)
    board.outb(MASTER, POLL)  # the next read of the master is a poll


def _copy_state(src: IsaPic, dst: IsaPic) -> None:
    for name in ("master", "slave"):
        a, b = getattr(src, name), getattr(dst, name)
        for f in fields_of(type(a), "state"):
            f.assign(b, f.type.check(f.__get__(a)))
        b.rebuild()
    dst.rebuild()


def _registers(pic: IsaPic) -> list[object]:
    """Every state field of both chips and their INT outputs."""
    return [[f.__get__(chip) for f in fields_of(type(chip), "state")] + [chip.int_level]
            for chip in (pic.master, pic.slave)]


def _observe(pic: IsaPic, board: BenchBoard) -> list[object]:
    """Port reads and INTA results through a fixed script; equal iff the behaviour is."""
    out: list[object] = [pic.intr_level()]
    for port in (0x20, 0x21, 0xA0, 0xA1, ELCR1, ELCR2):
        out.append(board.inb(port))
    pic.irq_line(6).raise_()  # held high since before the snapshot: not an edge
    for step, irq in enumerate((3, 10, 11, 12, 13, 0, 9, 14, 12, 10)):
        out += [pic.acknowledge(), pic.intr_level(), _registers(pic)]
        pic.irq_line(irq).raise_()
        pic.irq_line(irq ^ 1).lower()
        board.outb(SLAVE, NS_EOI)
        board.outb(MASTER, NS_EOI)
        if step % 2:  # poll the pair, as a polling driver would: master, then slave
            board.outb(MASTER, POLL)
            board.outb(SLAVE, POLL)
        out += [board.inb(MASTER), board.inb(SLAVE), pic.intr_level()]
    return out


@pytest.mark.parametrize("mid_init", [False, True])
def test_state_round_trip(board: BenchBoard, mid_init: bool) -> None:
    boards = [board, type(board)()]
    pics = [make_pic(b) for b in boards]
    _program(pics[0], boards[0])
    if mid_init:
        boards[0].outb(SLAVE, 0x13)  # single, ICW4 follows: ICW2 and ICW4 still to come
    _copy_state(pics[0], pics[1])
    assert _registers(pics[1]) == _registers(pics[0])
    if mid_init:
        for b in boards:
            b.outb(0xA1, 0x78)
            b.outb(0xA1, 0x03)
            b.outb(0xA1, 0x01)
    assert _observe(pics[0], boards[0]) == _observe(pics[1], boards[1])


def test_state_fields_are_declared_once() -> None:
    names = [f.attr for f in fields_of(Pic8259, "state")]
    assert len(names) == len(set(names))
    assert {"irr", "isr", "imr", "last_irr", "elcr", "vector_base", "icw_step"} <= set(names)
