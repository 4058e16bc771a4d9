"""Intel 8259A programmable interrupt controller, and the cascaded pair of the PC.

References followed:
- Intel 8259A datasheet: "Interrupt sequence" (the two INTA cycles; a request that is
  gone by then gets the default IR7 vector with no in-service bit set), "Initialization
  command words" (ICW1-ICW4, and what writing ICW1 resets), "Operation command words"
  (OCW1 mask; OCW2 EOI, rotation and priority commands; OCW3 read register, poll and
  special mask mode), "Fully nested mode", "Special fully nested mode", "Automatic
  rotation", "Specific rotation", "Special mask mode", "Poll command", "Edge and level
  triggered modes", "Cascade mode".
- Intel 82371SB (PIIX3) datasheet, ELCR1/ELCR2 at 4D0h/4D1h: one edge(0)/level(1) bit
  per IRQ, with IRQ0, 1, 2, 8 and 13 hard-wired to edge; ICW1's LTIM bit has no effect.
- The PC/AT wiring: master at 20h/21h, slave at A0h/A1h, the slave's INT on master IR2,
  and the bus's IRQ2 pin redirected to IRQ9.

Only the 8086 mode of the chip is modelled (ICW4 uPM=1): the MCS-80/85 CALL sequence,
buffered mode and the cascade address lines have no use in a PC.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emu.devices.base import Board, Device
from emu.irq import IrqLine
from emu.qom import Object, derived, prop, register_type, state

CASCADE_IR = 2  # the master input driven by the slave's INT on the PC
SPURIOUS_IR = 7  # the level a chip answers with when the request vanished before INTA

ICW1_IC4 = 0x01  # an ICW4 follows
ICW1_SNGL = 0x02  # single chip: no ICW3
ICW1_SELECT = 0x10  # at the command port, bit 4 set means ICW1
OCW3_SELECT = 0x08  # otherwise bit 3 set means OCW3, clear means OCW2
ICW4_AEOI = 0x02
ICW4_SFNM = 0x10
OCW2_EOI, OCW2_SL, OCW2_R = 0x20, 0x40, 0x80
OCW3_RIS, OCW3_RR, OCW3_POLL, OCW3_SMM, OCW3_ESMM = 0x01, 0x02, 0x04, 0x20, 0x40
POLL_REQUEST = 0x80  # poll word bit "I": an interrupt was pending
# HIGHEST[priority_add][mask]: the IR of ``mask`` with the highest priority when IR
# ``priority_add`` ranks first (rotation), -1 for none; a lookup, as every interrupt
# resolves priorities several times
HIGHEST = tuple(
    tuple(next((ir for ir in ((rank + add) & 7 for rank in range(8)) if mask >> ir & 1), -1)
          for mask in range(256))
    for add in range(8))


def _ignore(level: bool) -> None:
    """Default output sink until a board wires the pin."""


@register_type("i8259")
class Pic8259(Device):
    """One 8259A. Input pins arrive through ``set_input``; INT changes go to ``on_int``."""

    iobase = prop.u16(reset=0x20, doc="command port (A0=0); the data port is iobase+1")
    elcr_base = prop.u16(reset=0x4D0, doc="port of this chip's PIIX edge/level control register")
    elcr_mask = prop.u8(reset=0xF8, doc="writable ELCR bits; the others are hard-wired to edge")
    master = prop.bool(reset=True, doc="master of the cascade (special fully nested mode on IR2)")

    irr = state.u8(reset=0, doc="interrupt request register")
    isr = state.u8(reset=0, doc="in-service register")
    # The chip has no reset pin, so its power-on mask is undefined; masked is the safe
    # choice until firmware initialises it (ICW1 then clears the mask).
    imr = state.u8(reset=0xFF, doc="interrupt mask register (OCW1)")
    last_irr = state.u8(reset=0, doc="input pin levels as last seen, for edge detection")
    elcr = state.u8(reset=0, doc="edge/level control: a 1 bit makes that input level-triggered")
    vector_base = state.u8(reset=0, doc="ICW2: vector of IR0 (T7-T3; low three bits zero)")
    icw_step = state.u8(reset=0, doc="ICW expected next at the data port (2-4); 0 = operating")
    init4 = state.bool(reset=False, doc="ICW1 IC4: an ICW4 follows")
    single = state.bool(reset=False, doc="ICW1 SNGL: no cascade, and so no ICW3")
    auto_eoi = state.bool(reset=False, doc="ICW4 AEOI: INTA leaves no in-service bit")
    sfnm = state.bool(reset=False, doc="ICW4 SFNM: special fully nested mode")
    rotate_on_aeoi = state.bool(reset=False, doc="OCW2: rotate priorities on each auto-EOI")
    priority_add = state.u8(reset=0, doc="IR level holding the highest priority (rotation)")
    special_mask = state.bool(reset=False, doc="OCW3 SMM: masked levels stop holding others off")
    read_isr = state.bool(reset=False, doc="OCW3 RR/RIS: the command port reads ISR, not IRR")
    poll = state.bool(reset=False, doc="OCW3 P: the next read is a poll (an acknowledge)")

    int_level = derived.bool(doc="INT output: an unmasked request outranks those in service")

    def __init__(self, name: str, parent: Object | None = None, **props: Any) -> None:
        self.on_int: Callable[[bool], None] = _ignore
        # Rising edges seen on each input pin, masked or not, for the monitor's
        # ``info irq`` (QEMU counts the same): host statistics, never saved.
        self.rises = [0] * 8
        super().__init__(name, parent, **props)

    def realize(self, board: Board) -> None:  # type: ignore[override]
        super().realize(board)
        board.io.register(self.iobase, 2, self._port_read, self._port_write, owner=self.path,
                          byte_wide=True)
        board.io.register(self.elcr_base, 1, self._elcr_read, self._elcr_write,
                          owner=self.path, byte_wide=True)

    def rebuild(self) -> None:
        self.int_level = self.pending_ir() >= 0

    # -- input pins -----------------------------------------------------------
    def set_input(self, ir: int, level: bool) -> None:
        """Drive input pin IR``ir`` to ``level``."""
        bit = 1 << ir
        rising = level and not self.last_irr & bit
        self.rises[ir] += rising
        self.last_irr = self.last_irr | bit if level else self.last_irr & ~bit
        if self.elcr & bit:
            self.irr = self.irr | bit if level else self.irr & ~bit
        elif rising:
            # The latch outlives the line falling again: devices signal an edge as an
            # instantaneous pulse, which must not be lost before the CPU acknowledges.
            self.irr |= bit
        self._update()

    # -- priority resolution --------------------------------------------------
    def _highest(self, mask: int) -> int:
        """The IR of ``mask`` with the highest priority under the current rotation; -1 if none."""
        return HIGHEST[self.priority_add & 7][mask & 0xFF]

    def _rank(self, ir: int) -> int:
        return (ir - self.priority_add) & 7

    def _in_service(self) -> int:
        """In-service levels holding off lower ones; in special mask mode masked ones do not."""
        return self.isr & ~self.imr if self.special_mask else self.isr

    def pending_ir(self) -> int:
        """The request the chip would signal on INT now, or -1."""
        ir = self._highest(self.irr & ~self.imr)
        if ir < 0:
            return -1
        current = self._highest(self._in_service())
        if current < 0 or self._rank(ir) < self._rank(current):
            return ir
        # Special fully nested: the slave arbitrates among its own requests, so the master
        # lets a new one through on the cascade input while the slave is in service.
        if self.sfnm and self.master and ir == current == CASCADE_IR:
            return ir
        return -1

    # -- acknowledge ----------------------------------------------------------
    def intack(self, ir: int) -> None:
        """The first INTA cycle for IR``ir``: request to in-service (or auto-EOI)."""
        bit = 1 << ir
        if not self.auto_eoi:
            self.isr |= bit
        elif self.rotate_on_aeoi:
            self.priority_add = (ir + 1) & 7
        # A level-triggered request is back at once while its line stays high.
        self.irr = (self.irr & ~bit) | (self.last_irr & self.elcr & bit)

    def inta(self) -> int:
        """An INTA sequence this chip answers itself: the vector it puts on the bus."""
        ir = self.pending_ir()
        if ir < 0:
            return self.vector_base | SPURIOUS_IR
        self.intack(ir)
        self._update()
        return self.vector_base | ir

    def _poll(self) -> int:
        """A read after the poll command: acknowledges, returns I and W2-W0."""
        self.poll = False
        ir = self.pending_ir()
        if ir < 0:
            return 0
        self.intack(ir)
        return POLL_REQUEST | ir

    # -- ports ----------------------------------------------------------------
    def _port_read(self, off: int, size: int) -> int:
        if self.poll:
            value = self._poll()
            self._update()
            return value
        if off == 0:
            return self.isr if self.read_isr else self.irr
        return self.imr

    def _port_write(self, off: int, size: int, value: int) -> None:
        if off == 1:
            self._write_data(value)
        elif value & ICW1_SELECT:
            self._icw1(value)
        elif value & OCW3_SELECT:
            self._ocw3(value)
        else:
            self._ocw2(value)
        self._update()

    def _elcr_read(self, off: int, size: int) -> int:
        return self.elcr

    def _elcr_write(self, off: int, size: int, value: int) -> None:
        self.elcr = value & self.elcr_mask
        # A level-triggered request is the line itself, from now on.
        self.irr = (self.irr & ~self.elcr) | (self.last_irr & self.elcr)
        self._update()

    # -- command words --------------------------------------------------------
    def _icw1(self, value: int) -> None:
        self.single = bool(value & ICW1_SNGL)
        self.init4 = bool(value & ICW1_IC4)
        self.icw_step = 2
        self.imr = 0
        self.priority_add = 0  # IR7 lowest
        self.special_mask = False
        self.read_isr = False
        self.poll = False
        self.rotate_on_aeoi = False
        # ICW4 functions are zero unless an ICW4 sets them.
        self.auto_eoi = False
        self.sfnm = False
        # The datasheet leaves the ISR unspecified here; clearing it keeps a re-initialised
        # chip from being blocked by a level nobody will EOI.
        self.isr = 0
        # Edge sense reset: an edge input needs a new low-to-high transition; a level input
        # still requests while its line is high.
        self.irr = self.last_irr & self.elcr

    def _write_data(self, value: int) -> None:
        step = self.icw_step
        if step == 0:
            self.imr = value
        elif step == 2:
            self.vector_base = value & 0xF8
            self.icw_step = self._next_icw(2)
        elif step == 3:
            # The board fixes the cascade wiring; ICW3 only moves the sequence on.
            self.icw_step = self._next_icw(3)
        else:
            self.auto_eoi = bool(value & ICW4_AEOI)
            self.sfnm = bool(value & ICW4_SFNM)
            self.icw_step = 0

    def _next_icw(self, done: int) -> int:
        if done < 3 and not self.single:
            return 3
        if done < 4 and self.init4:
            return 4
        return 0

    def _ocw2(self, value: int) -> None:
        level = value & 7
        rotate = bool(value & OCW2_R)
        if value & OCW2_EOI:
            ir = level if value & OCW2_SL else self._highest(self._in_service())
            if ir >= 0:
                self.isr &= ~(1 << ir)
                if rotate:
                    self.priority_add = (ir + 1) & 7
        elif value & OCW2_SL:
            if rotate:  # set priority: ``level`` becomes the lowest
                self.priority_add = (level + 1) & 7
        else:
            self.rotate_on_aeoi = rotate

    def _ocw3(self, value: int) -> None:
        if value & OCW3_ESMM:
            self.special_mask = bool(value & OCW3_SMM)
        if value & OCW3_RR:
            self.read_isr = bool(value & OCW3_RIS)
        self.poll = bool(value & OCW3_POLL)

    # -- output ---------------------------------------------------------------
    def _update(self) -> None:
        level = self.pending_ir() >= 0
        if level != self.int_level:
            self.int_level = level
            self.on_int(level)


@register_type("isa-pic")
class IsaPic(Device):
    """The PC/AT pair: master at 20h, slave at A0h whose INT drives master IR2.

    The board sets ``on_intr`` to receive the master's INT level whenever it changes, and
    calls ``acknowledge()`` for the CPU's INTA sequence when it delivers the interrupt.
    """

    def __init__(self, name: str, parent: Object | None = None, **props: Any) -> None:
        self.on_intr: Callable[[bool], None] = _ignore
        super().__init__(name, parent, **props)
        self.master = Pic8259("master", self, iobase=0x20, elcr_base=0x4D0, elcr_mask=0xF8,
                              master=True)
        self.slave = Pic8259("slave", self, iobase=0xA0, elcr_base=0x4D1, elcr_mask=0xDE,
                             master=False)
        self.master.on_int = self._master_int
        self.slave.on_int = self._slave_int
        self._lines = [IrqLine(self._input_handler(n), name=f"{name}.irq{n}") for n in range(16)]

    def _input_handler(self, n: int) -> Callable[[bool], None]:
        chip, ir = (self.master, n) if n < 8 else (self.slave, n - 8)
        return lambda level: chip.set_input(ir, level)

    @property
    def irq_counts(self) -> list[int]:
        """Rising inputs per ISA line (IRQ2: the slave's INT), for ``info irq``."""
        return self.master.rises + self.slave.rises

    def _master_int(self, level: bool) -> None:
        self.on_intr(level)

    def _slave_int(self, level: bool) -> None:
        self.master.set_input(CASCADE_IR, level)

    def irq_line(self, n: int) -> IrqLine:
        """ISA interrupt line ``n`` (0-15)."""
        if not 0 <= n < 16:
            raise ValueError(f"{self.path}: no ISA IRQ {n}")
        # IR2 carries the cascade, so the AT routes the bus's IRQ2 pin to IRQ9.
        return self._lines[9 if n == CASCADE_IR else n]

    def reset(self) -> None:
        super().reset()
        self.on_intr(self.intr_level())  # the chips, reset before us, decide the output

    def intr_level(self) -> bool:
        """The master's INT output, i.e. the CPU's INTR input."""
        return self.master.int_level

    def acknowledge(self) -> int:
        """The CPU's INTA sequence: returns the vector and updates INT."""
        master, slave = self.master, self.slave
        ir = master.pending_ir()
        if ir != CASCADE_IR or master.single:
            return master.inta()
        master.intack(CASCADE_IR)
        vector = slave.inta()
        # The slave's INT falls while it is being acknowledged, so a request it still
        # signals afterwards (auto-EOI, special fully nested) is a fresh edge on IR2.
        master.set_input(CASCADE_IR, False)
        master.set_input(CASCADE_IR, slave.int_level)
        return vector
