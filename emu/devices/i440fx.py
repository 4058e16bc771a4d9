"""Intel 82441FX PCI and memory controller (PMC), the host bridge at 00:00.0.

82441FX datasheet, section 3.2 (configuration registers): identity 8086:1237, class
060000; PAM0-PAM6 at 59h-5Fh (3.2.16) decide for each segment of 0xC0000-0xFFFFF whether
reads and writes go to DRAM (shadow) or to the PCI bus, where the BIOS ROM answers.
SeaBIOS shadows itself through them. Other chipset registers (DRAM rows, SMRAM, error
reporting) are stored as written; nothing behind them is emulated.
"""

from __future__ import annotations

from emu.devices.base import Board
from emu.devices.pci import COMMAND, INTERRUPT_LINE, PciDevice
from emu.memory.address_space import PAM_SEGMENTS
from emu.qom import prop, register_type

PAM0 = 0x59


@register_type("i440FX-pcihost")
class I440fx(PciDevice):
    """The host bridge: PCI configuration identity and the PAM shadow-RAM switches."""

    device_id = prop.u16(reset=0x1237, doc="82441FX")
    class_code = prop.u32(reset=0x060000, doc="host bridge")
    revision = prop.u8(reset=0x02, doc="revision as QEMU reports it")

    # Stored-as-written chipset registers (50h-5Fh, DRBs 60h-67h, SMRAM 72h) and PAM.
    WRITABLE = ((COMMAND, b"\x07\x01"), (INTERRUPT_LINE, b"\xff"),
                (0x50, b"\xff" * 9), (PAM0, b"\x30" + b"\x33" * 6),
                (0x60, b"\xff" * 8), (0x72, b"\x7f"))

    def realize(self, board: Board) -> None:  # type: ignore[override]
        super().realize(board)
        self.set_pam = board.mem.set_pam  # type: ignore[attr-defined]

    def rebuild(self) -> None:
        super().rebuild()
        if self.realized:
            self._apply_pam()

    def config_written(self, offset: int, size: int, old: bytes) -> None:
        super().config_written(offset, size, old)
        if offset < PAM0 + 7 and offset + size > PAM0:
            self._apply_pam()

    def pam_mode(self, segment: int) -> int:
        """PAM_RE/PAM_WE bits of segment ``segment`` (0-11: 16 KiB from 0xC0000, 12: F)."""
        if segment == 12:
            return (self.config_read(PAM0, 1) >> 4) & 3
        byte = self.config_read(PAM0 + 1 + segment // 2, 1)
        return (byte >> (4 * (segment % 2))) & 3

    def _apply_pam(self) -> None:
        for i, (base, size) in enumerate(PAM_SEGMENTS):
            self.set_pam(base, size, self.pam_mode(i))
