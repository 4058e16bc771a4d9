"""Debug ports that guests and firmware write to on a PC.

- debugcon (ports 0x402 and 0xE9, as Bochs/QEMU): bytes written go to a host chardev;
  a read returns 0xE9 so a guest can detect the port (the Bochs "port e9 hack").
- isa-debug-exit (QEMU's device, only with ``-device isa-debug-exit``; at 0x501 unless
  told otherwise, as QEMU's; the test guests use iobase=0xf4,iosize=0x04): a write of V
  ends pyemu with exit status (V << 1) | 1, so tests can tell a guest's verdict from a
  clean exit.
- port 0x80, the POST code port: the last value written is kept and shown.
"""

from __future__ import annotations

from emu.devices.base import Board, Device
from emu.qom import link, prop, register_type, state


@register_type("isa-debugcon")
class DebugCon(Device):
    """Bochs/QEMU debug console: an output-only byte port."""

    iobase = prop.u16(reset=0xE9, doc="I/O port")
    chardev = link("chardev", doc="the host backend the bytes go to (set by the board)")

    def realize(self, board: Board) -> None:
        super().realize(board)
        board.io.register(self.iobase, 1, self._read, self._write, self.path)

    def _read(self, _off: int, _size: int) -> int:
        return 0xE9

    def _write(self, _off: int, size: int, value: int) -> None:
        if self.chardev is not None:
            self.chardev.write(value.to_bytes(size, "little")[:1])


@register_type("isa-debug-exit")
class DebugExit(Device):
    """Lets a guest end the emulator with a status of its choosing."""

    iobase = prop.u16(reset=0x501, doc="I/O port (QEMU's default)")
    iosize = prop.u8(reset=2, doc="number of ports decoded (QEMU's default)")

    def realize(self, board: Board) -> None:
        super().realize(board)
        board.io.register(self.iobase, self.iosize, None, self._write, self.path)

    def _write(self, _off: int, _size: int, value: int) -> None:
        status = ((value << 1) | 1) & 0xFF
        self.board.request_shutdown(status, f"guest wrote {value:#x} to isa-debug-exit",
                                    immediate=True)


@register_type("isa-post-port")
class PostPort(Device):
    """Port 0x80: firmware writes progress codes here; also used as an I/O delay."""

    iobase = prop.u16(reset=0x80, doc="I/O port")
    code = state.u8(reset=0, doc="last POST code written")

    def realize(self, board: Board) -> None:
        super().realize(board)
        board.io.register(self.iobase, 1, self._read, self._write, self.path)

    def _read(self, _off: int, _size: int) -> int:
        return self.code

    def _write(self, _off: int, _size: int, value: int) -> None:
        self.code = value & 0xFF
