"""PIIX3 functions: reset control at 0xCF9, IDE bus-master BAR4, PM timer and APM."""

from __future__ import annotations

import pytest

from emu.devices.pci import PciHost
from emu.devices.piix3 import PM_TIMER_HZ, Piix3Ide, Piix3Isa, Piix4Pm


class Channel:
    def __init__(self):
        self.regs = bytearray(8)

    def bm_read(self, off, size):
        return int.from_bytes(self.regs[off:off + size], "little")

    def bm_write(self, off, size, value):
        self.regs[off:off + size] = value.to_bytes(size, "little")


@pytest.fixture
def piix(board):
    host = PciHost("pci", None)
    isa = Piix3Isa("piix3", None, devfn=8)
    ide = Piix3Ide("ide", None, devfn=9)
    pm = Piix4Pm("pm", None, devfn=11)
    host.attach([isa, ide, pm])
    host.reset_control = (isa.rcr_read, isa.rcr_write)
    for obj in (host, isa, ide, pm):
        obj.realize(board)
        obj.reset()
    ide.channels = [Channel(), Channel()]  # stand-ins for the two IDE channels
    return isa, ide, pm


def cfg(board, devfn, reg, size=4, value=None):
    board.outl(0xCF8, 0x80000000 | devfn << 8 | (reg & 0xFC))
    port = 0xCFC + (reg & 3)
    if value is None:
        return board.io.read(port, size)
    board.io.write(port, size, value)
    return None


def test_identities(board, piix):
    assert cfg(board, 8, 0) == 0x70008086 and cfg(board, 8, 0x0E, 1) == 0x80
    assert cfg(board, 9, 0) == 0x70108086 and cfg(board, 9, 8) >> 8 == 0x010180
    assert cfg(board, 11, 0) == 0x71138086
    assert cfg(board, 8, 0x60) == 0x80808080  # PIRQ routing disabled at reset


def test_reset_control_register(board, piix):
    board.outb(0xCF9, 0x02)
    assert board.resets == [] and board.inb(0xCF9) == 0x02
    board.outb(0xCF9, 0x06)
    assert board.resets == ["reset through the PIIX3 reset control register"]
    board.outl(0xCF8, 0x80000800)  # a dword at 0xCF8 is still CONFIG_ADDRESS
    assert board.inl(0xCF8) == 0x80000800


def test_bus_master_registers_at_bar4(board, piix):
    _, ide, _ = piix
    cfg(board, 9, 0x20, 4, 0xC040)
    cfg(board, 9, 0x04, 2, 0x5)  # I/O space and bus master enable
    board.outb(0xC042, 0x60)
    board.outl(0xC04C, 0x12340)
    assert ide.channels[0].regs[2] == 0x60
    assert ide.channels[1].bm_read(4, 4) == 0x12340
    assert board.inl(0xC04C) == 0x12340


def test_pm_timer_where_seabios_puts_it(board, piix):
    assert board.inl(0x608) == 0xFFFFFFFF  # not decoded until enabled
    cfg(board, 11, 0x40, 4, 0x601)         # PMBA = 0x600
    cfg(board, 11, 0x80, 1, 0x01)          # PMREGMISC: I/O enable
    t0 = board.inl(0x608)
    board.advance(1_000_000_000)
    t1 = board.inl(0x608)
    assert (t1 - t0) & 0xFFFFFF == PM_TIMER_HZ & 0xFFFFFF
    assert t1 < 1 << 24
    cfg(board, 11, 0x80, 1, 0x00)
    assert board.inl(0x608) == 0xFFFFFFFF


def test_apm_acpi_enable_and_soft_off(board, piix):
    cfg(board, 11, 0x40, 4, 0x601)
    cfg(board, 11, 0x80, 1, 0x01)
    board.outb(0xB2, 0xF1)                 # ACPI_ENABLE
    assert board.inw(0x604) & 1 == 1 and board.inb(0xB2) == 0xF1
    board.outb(0xB3, 0x5A)
    assert board.inb(0xB3) == 0x5A
    board.outw(0x604, 0x2001)              # SLP_TYP 0 (S5) with SLP_EN
    assert board.shutdowns == [(0, "ACPI power off (S5)")]


def test_pm_state_round_trip(board, piix):
    _, _, pm = piix
    cfg(board, 11, 0x40, 4, 0x701)
    cfg(board, 11, 0x80, 1, 0x01)
    board.outb(0xB2, 0xF1)
    board.outw(0x702, 0x0120)
    other = type(board)()
    other.advance(5)
    copy = Piix4Pm("pm", None, devfn=11)
    copy.realize(other)
    copy.reset()
    for name in ("config", "pm1_sts", "pm1_en", "pm1_cnt", "apm_cnt", "apm_sts"):
        setattr(copy, name, getattr(pm, name))
    copy.rebuild()
    assert other.inw(0x702) == 0x0120 and other.inw(0x704) & 1 == 1


def test_power_button_raises_sci_once_acpi_enables_it(board, piix):
    _, _, pm = piix
    cfg(board, 11, 0x40, 4, 0x601)
    cfg(board, 11, 0x80, 1, 0x01)
    pm.press_power_button()               # ACPI off: the status latches, no interrupt
    assert board.inw(0x600) & 0x100 and not board.irqs[9].level
    board.outw(0x600, 0x100)              # write 1 to clear
    board.outb(0xB2, 0xF1)                # ACPI_ENABLE: SCI_EN
    board.outw(0x602, 0x100)              # PWRBTN_EN
    pm.press_power_button()
    assert board.inw(0x600) & 0x100 and board.irqs[9].level
    board.outw(0x600, 0x100)              # the guest acknowledges: SCI falls
    assert not board.irqs[9].level


def test_qemus_fixed_acpi_ports_with_nothing_plugged(board, piix):
    # SeaBIOS's DSDT reads these too; all ones made Linux eject slot 1 (PIIX3, IDE, PM)
    assert board.inl(0xAE00) == 0 and board.inl(0xAE04) == 0  # no slot up, none down
    assert board.inl(0xAE0C) == 0xFFFFFFFC         # removable: every slot but 0 and 1
    assert board.inw(0xAFE0) == 0                  # GPE0 status: no event
    assert board.inb(0xAF00) == 1 and board.inb(0xAF01) == 0  # CPU 0 present, alone
    board.outl(0xAE08, 0x2)                        # an eject of slot 1 is refused
    assert board.ejected == [] and cfg(board, 8, 0) == 0x70008086


def acpi_on(board):
    cfg(board, 11, 0x40, 4, 0x601)
    cfg(board, 11, 0x80, 1, 0x01)
    board.outb(0xB2, 0xF1)                         # ACPI_ENABLE: SCI_EN


def test_a_plugged_card_is_announced_by_gpe_and_pciu(board, piix):
    _, _, pm = piix
    acpi_on(board)
    pm.request_plug(3)
    assert board.inb(0xAFE0) == 0x02 and not board.irqs[9].level  # GPE 1 not enabled yet
    board.outb(0xAFE2, 0x02)                       # the OS enables GPE 1: SCI
    assert board.irqs[9].level
    assert board.inl(0xAE00) == 1 << 3             # _E01 reads PCIU, as often as it
    assert board.inl(0xAE00) == 1 << 3             # likes (SeaBIOS's: once per slot)
    board.outb(0xAFE0, 0x02)                       # the OS acknowledges the GPE
    assert board.inb(0xAFE0) == 0 and not board.irqs[9].level
    assert board.inb(0xAFE2) == 0x02               # the enable stays
    pm.request_plug(4)                             # a second card: both bits stand
    assert board.inl(0xAE00) == 1 << 3 | 1 << 4
    pm.request_unplug(3)                           # asked back: no longer "new"
    assert board.inl(0xAE00) == 1 << 4 and board.inl(0xAE04) == 1 << 3
    board.outl(0xAE08, 1 << 4)                     # the guest ejects slot 4 itself
    assert board.ejected == [4] and board.inl(0xAE00) == 0


def test_an_unplug_request_waits_for_the_guests_eject(board, piix):
    _, _, pm = piix
    acpi_on(board)
    board.outb(0xAFE2, 0x02)
    pm.request_unplug(5)
    assert board.irqs[9].level
    assert board.inl(0xAE04) == 1 << 5 and board.inl(0xAE04) == 1 << 5  # PCID stays
    assert board.ejected == []
    board.outl(0xAE10, 1)                          # SEL: another bus, which is not there
    board.outl(0xAE08, 1 << 5)
    assert board.ejected == [] and board.inl(0xAE10) == 1
    board.outl(0xAE10, 0)
    board.outl(0xAE08, 1 << 5)                     # _EJ0 of slot 5
    assert board.ejected == [5] and board.inl(0xAE04) == 0


def test_sci_needs_acpi_mode_for_gpe_events_too(board, piix):
    _, _, pm = piix
    board.outb(0xAFE2, 0x02)
    pm.request_plug(2)
    assert not board.irqs[9].level                 # SCI_EN clear: no SCI
    acpi_on(board)
    assert board.irqs[9].level


class IntxSource:
    """A PCI function that only drives its INTA# (config through the real class)."""

    def __init__(self, board, devfn):
        from emu.devices.pci import PciDevice

        class Card(PciDevice):
            INTX_PIN = 1
        self.dev = Card("card", None, devfn=devfn)
        self.dev.realize(board)
        self.dev.reset()


def test_pirq_routing_steers_intx_to_the_programmed_isa_irq(board, piix):
    isa, _, _ = piix
    board.router = isa
    card = IntxSource(board, devfn=3 << 3).dev     # slot 3 INTA# -> PIRQC (60h + 2)
    board.pci = [isa, card]
    card.set_intx(True)
    assert not any(line.level for line in board.irqs)   # routes disabled at reset
    cfg(board, 8, 0x62, 1, 11)
    assert board.irqs[11].level
    assert card.config_read(0x06, 2) & 0x08        # status: interrupt pending
    cfg(board, 8, 0x62, 1, 10)                     # re-routed: 11 falls, 10 rises
    assert board.irqs[10].level and not board.irqs[11].level
    card.config_write(0x04, 2, 0x0400)             # the driver sets Interrupt Disable
    assert not board.irqs[10].level
    card.config_write(0x04, 2, 0)
    assert board.irqs[10].level
    card.set_intx(False)
    assert not board.irqs[10].level and not card.config_read(0x06, 2) & 0x08
    cfg(board, 8, 0x62, 1, 0x80 | 10)              # disabled again
    card.set_intx(True)
    assert not board.irqs[10].level


def test_pirq_routes_to_reserved_irqs_are_ignored(board, piix):
    isa, _, _ = piix
    board.router = isa
    card = IntxSource(board, devfn=2 << 3).dev     # slot 2 INTA# -> PIRQB (61h)
    board.pci = [isa, card]
    card.set_intx(True)
    for irq in (0, 2, 8, 13):
        cfg(board, 8, 0x61, 1, irq)
        assert not any(line.level for line in board.irqs)
