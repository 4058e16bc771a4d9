"""System control port A (port 0x92), the PS/2-era "fast A20" and reset port.

IBM PS/2 Technical Reference, system control port A: bit 0 (write 1) resets the CPU,
bit 1 gates address line 20. Bit 0 reads back 0 after the reset pulse.
"""

from __future__ import annotations

from emu.devices.base import Board, Device
from emu.qom import register_type, state


@register_type("port92")
class Port92(Device):
    """Fast A20 gate and fast CPU reset."""

    value = state.u8(reset=0x02, doc="last value written; bit 1 is the A20 gate")

    def realize(self, board: Board) -> None:
        super().realize(board)
        board.io.register(0x92, 1, self._read, self._write, self.path)

    def rebuild(self) -> None:
        self.board.set_a20(self.path, bool(self.value & 2))

    def _read(self, _off: int, _size: int) -> int:
        return self.value & ~1

    def _write(self, _off: int, _size: int, value: int) -> None:
        self.value = value & 0xFF & ~1
        self.board.set_a20(self.path, bool(value & 2))
        if value & 1:
            self.board.request_reset("reset through port 0x92")
