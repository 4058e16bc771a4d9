"""Intel 82371SB PIIX3 functions on bus 0, device 1, and the PIIX4 power-management
function QEMU's pc machine puts beside them.

- 00:01.0 ISA bridge (82371SB datasheet 2.2): identity 8086:7000, PIRQ route control
  60h-63h (2.2.11: bit 7 disables the route, bits 3-0 name the ISA IRQ; 0-2, 8 and 13
  are reserved), which steers PCI INTx to the ISA IRQs: device D's pin P (0 = INTA#)
  reaches PIRQ (D + P - 1) mod 4, as QEMU's pc wires its slots; and the reset control
  register at I/O 0xCF9 (2.7.4): writing bit 2 (RST_CPU) resets the machine.
- 00:01.1 IDE (2.3): 8086:7010, class 010180 (legacy-mode IDE, bus master). The legacy
  ports belong to the IDE channels; BAR4 decodes the 16 bus-master registers (SFF-8038i).
- 00:01.3 power management (82371AB PIIX4 datasheet 3.4 and 7): 8086:7113. PMBA (40h) with
  PMREGMISC bit 0 (80h) places the ACPI registers: PM1 status/enable/control and the 24-bit
  PM timer at 3.579545 MHz (PMBASE+8), which SeaBIOS uses as its clock. APM control and
  status ports 0xB2/0xB3: ACPI_ENABLE (F1h) and ACPI_DISABLE (F0h) written to 0xB2 set and
  clear SCI_EN, as QEMU's firmware interface expects. SLP_EN with SLP_TYP 0 powers off.
  The SMBus function is inert: its base register is stored, nothing decodes it.
- QEMU's fixed ACPI ports beside the PIIX4 (hw/acpi/piix4.c, pcihp.c, cpu_hotplug.c),
  which pyemu's DSDT and SeaBIOS's own read: the GPE0 block at AFE0h (two status bytes,
  write 1 to clear, then two enable bytes; ACPI 6.x 4.8.4.1), PCI hotplug at AE00h and
  the CPU-present bitmap at AF00h (CPU 0). The hotplug registers: PCIU (00h) the
  slots with a new card; PCID (04h) the slots whose card the host wants ejected; B0EJ
  (08h) written with slot bits to eject their cards (the board takes them away); RMVB
  (0Ch) the hot-pluggable slots; SEL (10h) the bus the others refer to (bus 0 is the
  only one). A plug or unplug request sets GPE0 status bit 1, which raises the SCI
  when enabled: the DSDT's \\_GPE._E01 reads PCIU and PCID and notifies the slots.
  Reading does not clear PCIU, as on QEMU's pc before its own DSDT read each register
  once: SeaBIOS's built-in DSDT reads it again for every slot. A slot's bit stays
  until its card is asked back or ejected, so a later event notifies it again, which
  an OS takes as a rescan that finds nothing new.
"""

from __future__ import annotations

import struct

from emu.devices.base import Board
from emu.devices.pci import COMMAND, INTERRUPT_LINE, PciDevice
from emu.memory.ioport import PortRead, PortWrite
from emu.qom import prop, register_type, state

PM_TIMER_HZ = 3_579_545
NS_PER_SEC = 1_000_000_000
PMBA, PMREGMISC, SMBBA, SMBHSTCFG = 0x40, 0x80, 0x90, 0xD2
PM_SIZE = 64
SCI_EN, SLP_EN = 1, 1 << 13
PWRBTN_STS = 1 << 8  # PM1 status: the power button was pressed
SCI_EVENTS = PWRBTN_STS  # the PM1 events this model raises (no timer overflow)
SCI_IRQ = 9
ACPI_ENABLE, ACPI_DISABLE = 0xF1, 0xF0
# QEMU's fixed ports: (base, length) of the GPE0 block, PCI hotplug and CPU hotplug
GPE0_BLOCK, PCI_HOTPLUG, CPU_HOTPLUG = (0xAFE0, 4), (0xAE00, 0x14), (0xAF00, 32)
CPU0_PRESENT = 1
GPE_PCI_HOTPLUG = 1 << 1  # QEMU's GPE0 status bit for PCI hotplug
PCIU, PCID, B0EJ, RMVB, SEL = 0x00, 0x04, 0x08, 0x0C, 0x10
HOTPLUG_SLOTS = tuple(range(2, 32))  # 0: the host bridge, 1: the PIIX3 functions
PIRQ_ROUTE, PIRQ_DISABLED = 0x60, 0x80
PIRQ_IRQS = (10, 10, 11, 11)  # what firmware programs into 60h-63h, as SeaBIOS does
RESERVED_IRQS = (0, 1, 2, 8, 13)


def pirq_of(devfn: int, pin: int) -> int:
    """The PIRQ line (0-3) of ``pin`` (1 = INTA#) of the function at ``devfn``."""
    return ((devfn >> 3) + pin - 2) & 3


@register_type("PIIX3")
class Piix3Isa(PciDevice):
    """The PCI-to-ISA bridge function and the reset control register."""

    device_id = prop.u16(reset=0x7000, doc="82371SB ISA bridge")
    class_code = prop.u32(reset=0x060100, doc="ISA bridge")
    header_type = prop.u8(reset=0x80, doc="multi-function device")
    reset_control = state.u8(reset=0, doc="RCR (I/O CF9h): bits 1 (SRST) and 3 (FULL_RST)")

    WRITABLE = ((COMMAND, b"\x0f\x01"), (0x4C, b"\xff" * 0xB4))

    def initial_config(self) -> bytes:
        cfg = bytearray(super().initial_config())
        cfg[0x4C], cfg[0x4E] = 0x4D, 0x03       # ISA recovery timer, X-bus chip select
        cfg[0x60:0x64] = b"\x80" * 4            # PIRQA-D routing disabled
        cfg[0x69], cfg[0x70] = 0x02, 0x80       # top of memory, MBIRQ0 disabled
        cfg[0x76:0x79] = b"\x0c\x0c\x02"        # MBDMA0/1 disabled, PCSC
        cfg[0xA0] = 0x08                        # SMI control
        return bytes(cfg)

    def realize(self, board: Board) -> None:  # type: ignore[override]
        super().realize(board)
        self._driven: dict[int, bool] = {}  # ISA IRQ -> level the PIRQ routes put on it

    def config_written(self, offset: int, size: int, old: bytes) -> None:
        super().config_written(offset, size, old)
        if offset < PIRQ_ROUTE + 4 and offset + size > PIRQ_ROUTE:
            self.route_intx()

    def rebuild(self) -> None:
        super().rebuild()
        if self.realized:
            self._driven.clear()  # a loaded machine: the PIC holds the lines' levels

    def route_intx(self) -> None:
        """Drive each ISA IRQ that a PIRQ route names with the OR of the PCI INTx
        levels reaching it; lower an IRQ a changed route left."""
        levels: dict[int, bool] = {}
        for pirq in range(4):
            route = self.config_read(PIRQ_ROUTE + pirq, 1)
            if not route & PIRQ_DISABLED and route & 0xF not in RESERVED_IRQS:
                levels.setdefault(route & 0xF, False)
        for dev in self.board.pci_functions():
            if dev.INTX_PIN and dev.intx_level():
                route = self.config_read(PIRQ_ROUTE + pirq_of(dev.devfn, dev.INTX_PIN), 1)
                if route & 0xF in levels and not route & PIRQ_DISABLED:
                    levels[route & 0xF] = True
        for irq in set(self._driven) - set(levels):
            if self._driven.pop(irq):
                self.board.isa_irq(irq).set(False)
        for irq, level in levels.items():
            if self._driven.get(irq) != level:
                self._driven[irq] = level
                self.board.isa_irq(irq).set(level)

    def rcr_read(self) -> int:
        return self.reset_control

    def rcr_write(self, value: int) -> None:
        self.reset_control = value & 0x0A
        if value & 0x04:
            self.board.request_reset("reset through the PIIX3 reset control register")


@register_type("piix3-ide")
class Piix3Ide(PciDevice):
    """The IDE function: bus-master registers at BAR4 for the two legacy channels."""

    device_id = prop.u16(reset=0x7010, doc="82371SB IDE")
    class_code = prop.u32(reset=0x010180, doc="IDE controller, bus master, legacy ports")
    WRITABLE = ((COMMAND, b"\x07\x01"), (INTERRUPT_LINE, b"\xff"), (0x40, b"\xff" * 5))
    IO_BARS = {4: 16}

    def realize(self, board: Board) -> None:  # type: ignore[override]
        self.channels = list(self.children.values())  # ide0, ide1, added by the board
        super().realize(board)

    def bar_handlers(self, index: int) -> tuple[PortRead, PortWrite]:
        def read(off: int, size: int) -> int:
            return self.channels[off >> 3].bm_read(off & 7, size)

        def write(off: int, size: int, value: int) -> None:
            self.channels[off >> 3].bm_write(off & 7, size, value)

        return read, write


@register_type("piix4-pm")
class Piix4Pm(PciDevice):
    """ACPI power management: PM1 registers, the PM timer, APM ports, an inert SMBus."""

    device_id = prop.u16(reset=0x7113, doc="82371AB PIIX4 power management")
    class_code = prop.u32(reset=0x068000, doc="other bridge device")
    revision = prop.u8(reset=0x03, doc="revision as QEMU reports it")
    WRITABLE = ((COMMAND, b"\x07\x01"), (INTERRUPT_LINE, b"\xff"),
                (PMBA, b"\xc0\xff"), (PMREGMISC, b"\x01"), (SMBBA, b"\xf0\xff"),
                (SMBHSTCFG, b"\x01"))

    pm1_sts = state.u16(reset=0, doc="PM1a status (write 1 to clear)")
    pm1_en = state.u16(reset=0, doc="PM1a enable")
    pm1_cnt = state.u16(reset=0, doc="PM1a control: SCI_EN, SLP_TYP, SLP_EN")
    apm_cnt = state.u8(reset=0, doc="APM control port 0xB2, last value written")
    apm_sts = state.u8(reset=0, doc="APM status port 0xB3")
    gpe_sts = state.u16(reset=0, doc="GPE0 status (AFE0h, write 1 to clear); bit 1: PCI hotplug")
    gpe_en = state.u16(reset=0, doc="GPE0 enable (AFE2h)")
    pci_up = state.u32(reset=0, doc="PCIU (AE00h): slots with a new card")
    pci_down = state.u32(reset=0, doc="PCID (AE04h): slots whose card is to be ejected")
    hotplug_bus = state.u32(reset=0, doc="SEL (AE10h): the bus the hotplug registers mean")

    STATE_VERSION = 2

    def initial_config(self) -> bytes:
        cfg = bytearray(super().initial_config())
        struct.pack_into("<I", cfg, PMBA, 1)    # I/O space indicator
        struct.pack_into("<I", cfg, SMBBA, 1)
        cfg[0x3D], cfg[INTERRUPT_LINE] = 1, 9   # INTA#, SCI on IRQ 9
        return bytes(cfg)

    def realize(self, board: Board) -> None:  # type: ignore[override]
        super().realize(board)
        self._pm_base: int | None = None
        self.sci = board.isa_irq(SCI_IRQ)
        board.io.register(0xB2, 2, self._apm_read, self._apm_write, owner=f"{self.path}/apm")
        board.io.register(*GPE0_BLOCK, self._gpe_read, self._gpe_write, owner=f"{self.path}/gpe0")
        board.io.register(*PCI_HOTPLUG, self._pcihp_read, self._pcihp_write,
                          owner=f"{self.path}/pcihp")
        board.io.register(*CPU_HOTPLUG, _cpus_present, _drop, owner=f"{self.path}/cpuhp")

    def press_power_button(self) -> None:
        """The power button (``system_powerdown``): PWRBTN_STS, and an SCI if the guest
        enabled both the event and ACPI mode (ACPI 4.8.3.1; PIIX4 7.2.1)."""
        self.pm1_sts |= PWRBTN_STS
        self._update_sci()

    def sci_level(self) -> bool:
        return bool(self.pm1_cnt & SCI_EN and (self.pm1_sts & self.pm1_en & SCI_EVENTS
                                               or self.gpe_sts & self.gpe_en))

    # -- ACPI PCI hotplug ---------------------------------------------------------------
    def request_plug(self, slot: int) -> None:
        """A card went into ``slot``: tell the guest (PCIU, GPE0 bit 1)."""
        self.pci_up |= 1 << slot
        self._hotplug_event()

    def request_unplug(self, slot: int) -> None:
        """Ask the guest to let go of the card in ``slot`` (PCID, GPE0 bit 1); the card
        goes when the guest writes its slot to B0EJ."""
        self.pci_up &= ~(1 << slot)
        self.pci_down |= 1 << slot
        self._hotplug_event()

    def _hotplug_event(self) -> None:
        self.gpe_sts |= GPE_PCI_HOTPLUG
        self._update_sci()

    def _gpe_read(self, off: int, size: int) -> int:
        regs = struct.pack("<HH", self.gpe_sts, self.gpe_en)
        return int.from_bytes(regs[off:off + size].ljust(size, b"\0"), "little")

    def _gpe_write(self, off: int, size: int, value: int) -> None:
        for i, byte in enumerate(value.to_bytes(size, "little")):
            if off + i < 2:
                self.gpe_sts &= ~(byte << 8 * (off + i)) & 0xFFFF
            elif off + i < 4:
                shift = 8 * (off + i - 2)
                self.gpe_en = self.gpe_en & ~(0xFF << shift) | byte << shift
        self._update_sci()

    def _pcihp_read(self, off: int, size: int) -> int:
        reg, shift = off & ~3, 8 * (off & 3)
        if reg == PCIU:
            value = self.pci_up
        elif reg == PCID:
            value = self.pci_down
        elif reg == RMVB:
            value = sum(1 << slot for slot in HOTPLUG_SLOTS)
        elif reg == SEL:
            value = self.hotplug_bus
        else:  # B0EJ reads as zero
            value = 0
        return (value >> shift) & ((1 << 8 * size) - 1)

    def _pcihp_write(self, off: int, size: int, value: int) -> None:
        reg, shift = off & ~3, 8 * (off & 3)
        if reg == B0EJ and self.hotplug_bus == 0:
            slots = (value << shift) & sum(1 << slot for slot in HOTPLUG_SLOTS)
            self.pci_up &= ~slots
            self.pci_down &= ~slots
            for slot in HOTPLUG_SLOTS:
                if slots >> slot & 1:
                    self.board.pci_eject(slot)
        elif reg == SEL:
            self.hotplug_bus = (value << shift) & 0xFF

    def _update_sci(self) -> None:
        self.sci.set(self.sci_level())

    def rebuild(self) -> None:
        super().rebuild()
        if self.realized:
            self._decode_pm()

    def config_written(self, offset: int, size: int, old: bytes) -> None:
        super().config_written(offset, size, old)
        self._decode_pm()

    def _decode_pm(self) -> None:
        base = None
        if self.config_read(PMREGMISC, 1) & 1:
            base = self.config_read(PMBA, 4) & 0xFFC0 or None
        if base == self._pm_base:
            return
        if self._pm_base is not None:
            self.board.io.unregister(self._pm_base, PM_SIZE)
            self._pm_base = None
        if base is not None:
            try:
                self.board.io.register(base, PM_SIZE, self._pm_read, self._pm_write,
                                       owner=f"{self.path}/pm")
            except ValueError:
                return
            self._pm_base = base

    def pm_timer(self) -> int:
        """The 24-bit ACPI PM timer, from virtual time."""
        return (self.board.clock.now_ns() * PM_TIMER_HZ // NS_PER_SEC) & 0xFFFFFF

    def _pm_read(self, off: int, size: int) -> int:
        if 8 <= off < 12:
            return self.pm_timer() >> (8 * (off - 8))
        regs = struct.pack("<HHH", self.pm1_sts, self.pm1_en, self.pm1_cnt)
        return int.from_bytes(regs[off:off + size].ljust(size, b"\0"), "little")

    def _pm_write(self, off: int, size: int, value: int) -> None:
        if off == 0 and size >= 2:
            self.pm1_sts &= ~value & 0xFFFF
        elif off == 2 and size >= 2:
            self.pm1_en = value & 0xFFFF
        elif off == 4 and size >= 2:
            self._pm1_control(value & 0xFFFF)
        self._update_sci()

    def _pm1_control(self, value: int) -> None:
        self.pm1_cnt = value & ~SLP_EN
        if value & SLP_EN and (value >> 10) & 7 == 0:
            self.board.request_shutdown(0, "ACPI power off (S5)")

    def _apm_read(self, off: int, size: int) -> int:
        return self.apm_cnt if off == 0 else self.apm_sts

    def _apm_write(self, off: int, size: int, value: int) -> None:
        if off == 1:
            self.apm_sts = value & 0xFF
            return
        self.apm_cnt = value & 0xFF
        if self.apm_cnt == ACPI_ENABLE:
            self.pm1_cnt |= SCI_EN
        elif self.apm_cnt == ACPI_DISABLE:
            self.pm1_cnt &= ~SCI_EN
        self._update_sci()


def _cpus_present(off: int, size: int) -> int:
    return CPU0_PRESENT if off == 0 else 0  # byte 0 bit 0: the one CPU


def _drop(off: int, size: int, value: int) -> None:
    pass
