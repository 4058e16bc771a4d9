"""Intel 8042 keyboard controller of the PC/AT, with a PS/2 keyboard behind it.

References followed:
- IBM PS/2 Hardware Interface Technical Reference, "Keyboard/Auxiliary Device
  Controller": the status register (OBF, IBF, system flag, command/data, inhibit switch,
  auxiliary OBF, time-out, parity), the controller command byte, the commands 20h, 60h,
  A7h-A9h, AAh, ABh, ADh, AEh, C0h, D0h-D4h and F0h-FFh, and the output port (bit 0
  system reset, bit 1 A20 gate, bits 4/5 the IRQ1/IRQ12 outputs).
- Same, "Keyboards (101- and 102-Key)": the keyboard commands EDh, EEh, F0h, F2h-F6h,
  FFh, their ACK (FAh), BAT completion (AAh), Resend (FEh), the keyboard ID (ABh 83h),
  scan code set 2, and the controller's translation of set 2 into set 1 (a fixed table;
  a break prefix F0h is swallowed and sets bit 7 of the next translated code).
- Commands DDh/DFh (A20 off/on) are the extension many AT-compatible controllers and
  BIOSes use.

Modelling choices, matched to QEMU's i8042 where the documents leave room:
- The controller works in zero time: a write is consumed at once (IBF always reads 0),
  and a byte the keyboard has ready moves into the output buffer as soon as it is free,
  i.e. at once after the host reads port 60h. Bytes the controller itself answers wait
  in a one-byte latch for the output buffer and go before keyboard data.
- Self-test (AAh) answers 55h and sets the system flag; it leaves the command byte and
  the output port alone (Linux saves and restores the command byte around it anyway).
- No auxiliary device (mouse) is attached. The interface test (A9h) passes (00h) and
  A7h/A8h work on the command byte, so the port itself is found; a byte sent to it with
  D4h is answered by the controller with FEh marked as auxiliary data with the time-out
  bit set, as an 8042 does when no device clocks the byte in. D3h loops back as usual.
- Bits 4/5 of the output port read as the IRQ1/IRQ12 outputs; writes to them are
  ignored. The input port reads 80h: keyboard not inhibited, colour display.
- Commands 21h-3Fh/61h-7Fh (controller RAM beyond the command byte) and other vendor
  commands are ignored.
- The keyboard holds at most 16 bytes of scan codes, as the PS/2 protocol requires of
  it (a key whose whole sequence does not fit is dropped); 8 more bytes are kept for
  command replies. There is no typematic repeat: injected keys are single events.
  Scan code sets 1 and 2 are supported; set 3 is refused with Resend.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from emu.devices.base import Board, Device
from emu.irq import IrqLine
from emu.qom import Object, derived, register_type, state

log = logging.getLogger("emu.devices.i8042")

DATA_PORT, STATUS_PORT = 0x60, 0x64
KBD_IRQ, AUX_IRQ = 1, 12

# Status register.
ST_OBF, ST_IBF, ST_SYS, ST_CMD = 0x01, 0x02, 0x04, 0x08
ST_UNLOCKED, ST_AUX, ST_TIMEOUT = 0x10, 0x20, 0x40

# Controller command byte.
CB_KBD_INT, CB_AUX_INT, CB_SYS = 0x01, 0x02, 0x04
CB_KBD_DISABLE, CB_AUX_DISABLE, CB_XLAT = 0x10, 0x20, 0x40

# Output port.
OP_RESET, OP_A20, OP_IRQ1, OP_IRQ12 = 0x01, 0x02, 0x10, 0x20
OUTPORT_RESET = 0xCF  # reset and A20 high, keyboard clock/data lines idle high
INPORT = 0x80

# Controller commands.
C_READ_CB, C_WRITE_CB = 0x20, 0x60
C_AUX_DISABLE, C_AUX_ENABLE, C_AUX_TEST = 0xA7, 0xA8, 0xA9
C_SELF_TEST, C_KBD_TEST, C_KBD_DISABLE, C_KBD_ENABLE = 0xAA, 0xAB, 0xAD, 0xAE
C_READ_INPORT, C_READ_OUTPORT, C_WRITE_OUTPORT = 0xC0, 0xD0, 0xD1
C_WRITE_KBD_OBUF, C_WRITE_AUX_OBUF, C_WRITE_AUX = 0xD2, 0xD3, 0xD4
C_A20_OFF, C_A20_ON, C_PULSE = 0xDD, 0xDF, 0xF0
DATA_COMMANDS = (C_WRITE_CB, C_WRITE_OUTPORT, C_WRITE_KBD_OBUF, C_WRITE_AUX_OBUF, C_WRITE_AUX)
SELF_TEST_OK, INTERFACE_OK = 0x55, 0x00

# Keyboard protocol.
K_LEDS, K_ECHO, K_SCANCODE_SET, K_IDENTIFY, K_TYPEMATIC = 0xED, 0xEE, 0xF0, 0xF2, 0xF3
K_ENABLE, K_DISABLE, K_DEFAULTS, K_RESET = 0xF4, 0xF5, 0xF6, 0xFF
FIRST_COMMAND = K_LEDS  # a byte below this, while an argument is due, is the argument
ACK, BAT_OK, RESEND, ECHO = 0xFA, 0xAA, 0xFE, 0xEE
KBD_ID = bytes((0xAB, 0x83))
BREAK, EXTEND = 0xF0, 0xE0
TYPEMATIC_DEFAULT = 0x2B  # 10.9 characters/s after 500 ms
KEY_ROOM = 16  # scan code bytes the keyboard buffers
QUEUE_CAP = KEY_ROOM + 8  # plus room for command replies

# The 8042's set 2 -> set 1 table for codes 00h-84h; codes above translate to themselves.
_XLAT_LOW = bytes.fromhex(
    "ff 43 41 3f 3d 3b 3c 58 64 44 42 40 3e 0f 29 59"
    "65 38 2a 70 1d 10 02 5a 66 71 2c 1f 1e 11 03 5b"
    "67 2e 2d 20 12 05 04 5c 68 39 2f 21 14 13 06 5d"
    "69 31 30 23 22 15 07 5e 6a 72 32 24 16 08 09 5f"
    "6b 33 25 17 18 0b 0a 60 6c 34 35 26 27 19 0c 61"
    "6d 73 28 74 1a 0d 62 6e 3a 36 1c 1b 75 2b 63 76"
    "55 56 77 78 79 7a 0e 7b 7c 4f 7d 4b 47 7e 7f 6f"
    "52 53 50 4c 4d 48 01 45 57 4e 51 4a 37 49 46 54"
    "80 81 82 41 54")
XLAT = _XLAT_LOW + bytes(range(len(_XLAT_LOW), 256))

# QEMU ``sendkey`` key names -> set 2 make codes.
_PLAIN_KEYS = {
    "esc": 0x76, "1": 0x16, "2": 0x1E, "3": 0x26, "4": 0x25, "5": 0x2E, "6": 0x36,
    "7": 0x3D, "8": 0x3E, "9": 0x46, "0": 0x45, "minus": 0x4E, "equal": 0x55,
    "backspace": 0x66, "tab": 0x0D, "q": 0x15, "w": 0x1D, "e": 0x24, "r": 0x2D, "t": 0x2C,
    "y": 0x35, "u": 0x3C, "i": 0x43, "o": 0x44, "p": 0x4D, "bracket_left": 0x54,
    "bracket_right": 0x5B, "ret": 0x5A, "ctrl": 0x14, "a": 0x1C, "s": 0x1B, "d": 0x23,
    "f": 0x2B, "g": 0x34, "h": 0x33, "j": 0x3B, "k": 0x42, "l": 0x4B, "semicolon": 0x4C,
    "apostrophe": 0x52, "grave_accent": 0x0E, "shift": 0x12, "backslash": 0x5D, "z": 0x1A,
    "x": 0x22, "c": 0x21, "v": 0x2A, "b": 0x32, "n": 0x31, "m": 0x3A, "comma": 0x41,
    "dot": 0x49, "slash": 0x4A, "shift_r": 0x59, "kp_multiply": 0x7C, "asterisk": 0x7C,
    "alt": 0x11, "spc": 0x29, "caps_lock": 0x58, "f1": 0x05, "f2": 0x06, "f3": 0x04,
    "f4": 0x0C, "f5": 0x03, "f6": 0x0B, "f7": 0x83, "f8": 0x0A, "f9": 0x01, "f10": 0x09,
    "f11": 0x78, "f12": 0x07, "num_lock": 0x77, "scroll_lock": 0x7E, "kp_7": 0x6C,
    "kp_8": 0x75, "kp_9": 0x7D, "kp_subtract": 0x7B, "kp_4": 0x6B, "kp_5": 0x73,
    "kp_6": 0x74, "kp_add": 0x79, "kp_1": 0x69, "kp_2": 0x72, "kp_3": 0x7A, "kp_0": 0x70,
    "kp_decimal": 0x71, "less": 0x61, "sysrq": 0x84, "kp_equals": 0x0F,
}
_EXTENDED_KEYS = {
    "kp_enter": 0x5A, "ctrl_r": 0x14, "kp_divide": 0x4A, "alt_r": 0x11, "altgr": 0x11,
    "altgr_r": 0x11, "home": 0x6C, "up": 0x75, "pgup": 0x7D, "left": 0x6B, "right": 0x74,
    "end": 0x69, "down": 0x72, "pgdn": 0x7A, "insert": 0x70, "delete": 0x71,
    "meta_l": 0x1F, "meta_r": 0x27, "menu": 0x2F,
}
# Keys whose make and break sequences are not a code with an optional E0 prefix.
_SEQUENCE_KEYS = {
    "print": (bytes((0xE0, 0x12, 0xE0, 0x7C)), bytes((0xE0, 0xF0, 0x7C, 0xE0, 0xF0, 0x12))),
    "pause": (bytes((0xE1, 0x14, 0x77, 0xE1, 0xF0, 0x14, 0xF0, 0x77)), b""),  # no break
}


def _plain(code: int, prefix: bytes = b"") -> tuple[bytes, bytes]:
    return prefix + bytes((code,)), prefix + bytes((BREAK, code))


KEYMAP: dict[str, tuple[bytes, bytes]] = {
    **{name: _plain(code) for name, code in _PLAIN_KEYS.items()},
    **{name: _plain(code, bytes((EXTEND,))) for name, code in _EXTENDED_KEYS.items()},
    **_SEQUENCE_KEYS,
}


def key_codes(name: str) -> tuple[bytes, bytes]:
    """Set 2 (make, break) sequences of the QEMU key ``name``; ValueError if unknown."""
    try:
        return KEYMAP[name]
    except KeyError:
        raise ValueError(f"unknown key {name!r}") from None


def translate(codes: bytes) -> bytes:
    """Set 2 codes as the 8042 translation turns them into set 1."""
    out = bytearray()
    broken = False
    for byte in codes:
        if byte == BREAK:
            broken = True
            continue
        out.append(XLAT[byte] | (0x80 if broken else 0))
        broken = False
    return bytes(out)


def _ignore() -> None:
    """Default sink for the keyboard's data-ready signal until a controller wires it."""


@register_type("ps2-kbd")
class Ps2Keyboard(Device):
    """A PS/2 (MF2) keyboard: takes commands, answers and sends scan codes in a queue.

    The controller sets ``on_output``, called whenever bytes are queued, and takes them
    with ``take()``.
    """

    # 2: ``expect`` became ``pending_cmd``, the controller's name for the same latch
    # (emu/migration/compat/i8042.py).
    STATE_VERSION = 2

    queue = state.bytes(max_len=QUEUE_CAP, doc="bytes for the controller, oldest first")
    scancode_set = state.u8(reset=2, doc="scan code set in use (1 or 2)")
    scanning = state.bool(reset=True, doc="key events are sent (F4h enable / F5h disable)")
    leds = state.u8(reset=0, doc="LED state from EDh: bit 0 scroll, 1 num, 2 caps lock")
    typematic = state.u8(reset=TYPEMATIC_DEFAULT, doc="typematic rate/delay from F3h")
    pending_cmd = state.u8(reset=0, doc="command whose argument byte is due next; 0 = none")

    def __init__(self, name: str, parent: Object | None = None, **props: Any) -> None:
        self.on_output: Callable[[], None] = _ignore
        super().__init__(name, parent, **props)

    # -- output to the controller -------------------------------------------------
    def has_output(self) -> bool:
        return bool(self.queue)

    def take(self) -> int:
        """The oldest queued byte, removed."""
        byte = self.queue[0]
        self.queue = self.queue[1:]
        return byte

    def _send(self, data: bytes, room: int = QUEUE_CAP) -> None:
        """Queue ``data`` whole if it fits within ``room`` bytes, else drop it."""
        if len(self.queue) + len(data) > room:
            log.debug("%s: queue full, dropped %s", self.path, data.hex())
            return
        self.queue += data
        self.on_output()

    # -- keys -----------------------------------------------------------------------
    def press(self, key: str) -> None:
        """Key ``key`` (a QEMU key name) goes down."""
        self._key_event(key_codes(key)[0])

    def release(self, key: str) -> None:
        """Key ``key`` (a QEMU key name) comes up."""
        self._key_event(key_codes(key)[1])

    def _key_event(self, codes: bytes) -> None:
        if not self.scanning or not codes:
            return
        self._send(translate(codes) if self.scancode_set == 1 else codes, KEY_ROOM)

    # -- commands from the host ---------------------------------------------------
    def write(self, value: int) -> None:
        """A byte from the host, through the controller."""
        pending = self.pending_cmd
        self.pending_cmd = 0
        # A command byte where an argument was due aborts the waiting command.
        if pending and value < FIRST_COMMAND:
            self._argument(pending, value)
        else:
            self._command(value)

    def _command(self, cmd: int) -> None:
        if cmd in (K_LEDS, K_SCANCODE_SET, K_TYPEMATIC):
            self.pending_cmd = cmd
            self._send(bytes((ACK,)))
        elif cmd == K_ECHO:
            self._send(bytes((ECHO,)))
        elif cmd == K_IDENTIFY:
            self._send(bytes((ACK,)) + KBD_ID)
        elif cmd in (K_ENABLE, K_DISABLE, K_DEFAULTS, K_RESET):
            self._restart(cmd)
        else:
            self._send(bytes((RESEND,)))

    def _restart(self, cmd: int) -> None:
        """F4h-F6h and FFh: the keyboard empties its buffer first, then answers."""
        self.queue = b""
        if cmd != K_ENABLE:
            self.scancode_set, self.leds, self.typematic = 2, 0, TYPEMATIC_DEFAULT
        self.scanning = cmd != K_DISABLE
        self._send(bytes((ACK, BAT_OK)) if cmd == K_RESET else bytes((ACK,)))

    def _argument(self, cmd: int, value: int) -> None:
        if cmd == K_LEDS:
            self.leds = value & 7
        elif cmd == K_TYPEMATIC:
            self.typematic = value & 0x7F
        elif value == 0:  # scan code set: 0 asks which one is in use
            self._send(bytes((ACK, self.scancode_set)))
            return
        elif value in (1, 2):
            self.scancode_set = value
        else:
            self._send(bytes((RESEND,)))
            return
        self._send(bytes((ACK,)))


@register_type("i8042")
class I8042(Device):
    """The keyboard controller at ports 60h/64h, IRQ1 (keyboard) and IRQ12 (aux)."""

    cmd_byte = state.u8(reset=CB_KBD_INT | CB_AUX_INT, doc="controller command byte")
    sys_flag = state.bool(reset=False, doc="status bit 2: set by self-test or command byte")
    last_was_command = state.bool(reset=True, doc="status bit 3: last write went to port 64h")
    obuf = state.u8(reset=0, doc="output buffer; reads of port 60h return it")
    obf = state.bool(reset=False, doc="output buffer full")
    obuf_flags = state.u8(reset=0, doc="status bits 5/6 (aux, time-out) of the byte in obuf")
    reply = state.u8(reset=0, doc="a byte the controller answered, waiting for the buffer")
    reply_pending = state.bool(reset=False, doc="reply holds a byte")
    reply_flags = state.u8(reset=0, doc="status bits 5/6 that go with reply")
    pending_cmd = state.u8(reset=0, doc="command whose data byte goes to port 60h next; 0 none")
    outport = state.u8(reset=OUTPORT_RESET, doc="output port latch (bit 0 reset, bit 1 A20)")

    irq1_out = derived.bool(doc="IRQ1 output: keyboard byte in obuf and interrupt enabled")
    irq12_out = derived.bool(doc="IRQ12 output: aux byte in obuf and interrupt enabled")

    def __init__(self, name: str, parent: Object | None = None, **props: Any) -> None:
        super().__init__(name, parent, **props)
        self.kbd = Ps2Keyboard("kbd", self)
        self.kbd.on_output = self._sync

    # -- life cycle -----------------------------------------------------------------
    def realize(self, board: Board) -> None:  # type: ignore[override]
        super().realize(board)
        board.io.register(DATA_PORT, 1, self._data_read, self._data_write, owner=self.path,
                          byte_wide=True)
        board.io.register(STATUS_PORT, 1, self._status_read, self._command_write,
                          owner=self.path, byte_wide=True)
        self._irqs = {KBD_IRQ: board.isa_irq(KBD_IRQ), AUX_IRQ: board.isa_irq(AUX_IRQ)}

    def unrealize(self) -> None:
        self.board.io.unregister(DATA_PORT, 1)
        self.board.io.unregister(STATUS_PORT, 1)

    def reset(self) -> None:
        super().reset()
        if self.realized:
            for line, level in self._levels():
                line.set(level)  # our output pins; they may have been high before the reset

    def rebuild(self) -> None:
        self._compute_irqs()
        if self.realized:
            self.board.set_a20(self.path, bool(self.outport & OP_A20))

    # -- host injection -------------------------------------------------------------
    def send_keys(self, spec: str) -> None:
        """QEMU ``sendkey`` syntax ("ctrl-alt-delete"): press in order, release reversed."""
        names = spec.split("-")
        for name in names:
            key_codes(name)  # all names checked before any key goes down
        for name in names:
            self.kbd.press(name)
        for name in reversed(names):
            self.kbd.release(name)

    # -- ports ----------------------------------------------------------------------
    def status(self) -> int:
        value = ST_UNLOCKED
        if self.obf:
            value |= ST_OBF | self.obuf_flags
        if self.sys_flag:
            value |= ST_SYS
        if self.last_was_command:
            value |= ST_CMD
        return value

    def _status_read(self, _off: int, _size: int) -> int:
        return self.status()

    def _data_read(self, _off: int, _size: int) -> int:
        # Reading an empty buffer returns the stale byte, as the latch still holds it.
        value = self.obuf
        if self.obf:
            self.obf = False
            self.obuf_flags = 0
            self._drive_irqs()  # the line falls, so the next byte raises a fresh edge
            self._sync()
        return value

    def _data_write(self, _off: int, _size: int, value: int) -> None:
        self.last_was_command = False
        cmd, self.pending_cmd = self.pending_cmd, 0
        if cmd == C_WRITE_CB:
            self._set_cmd_byte(value)
        elif cmd == C_WRITE_OUTPORT:
            self._write_outport(value)
        elif cmd == C_WRITE_KBD_OBUF:
            self._answer(value)
        elif cmd == C_WRITE_AUX_OBUF:
            self._answer(value, ST_AUX)
        elif cmd == C_WRITE_AUX:
            self.cmd_byte &= ~CB_AUX_DISABLE  # sending enables the interface, as for kbd
            self._answer(RESEND, ST_AUX | ST_TIMEOUT)  # nobody clocked the byte in
        else:
            self.cmd_byte &= ~CB_KBD_DISABLE
            self.kbd.write(value)
        self._sync()

    def _command_write(self, _off: int, _size: int, cmd: int) -> None:
        self.last_was_command = True
        self.pending_cmd = 0
        if cmd in DATA_COMMANDS:
            self.pending_cmd = cmd
        elif cmd >= C_PULSE:
            if not cmd & OP_RESET:  # a 0 bit in the mask pulses that line low
                self.board.request_reset("reset through the keyboard controller")
        else:
            self._simple_command(cmd)
        self._sync()

    def _simple_command(self, cmd: int) -> None:
        """The commands without a data byte (and not pulses)."""
        if cmd == C_READ_CB:
            self._answer(self.cmd_byte)
        elif cmd in (C_AUX_DISABLE, C_AUX_ENABLE):
            self._set_bit(CB_AUX_DISABLE, cmd == C_AUX_DISABLE)
        elif cmd in (C_KBD_DISABLE, C_KBD_ENABLE):
            self._set_bit(CB_KBD_DISABLE, cmd == C_KBD_DISABLE)
        elif cmd in (C_AUX_TEST, C_KBD_TEST):
            self._answer(INTERFACE_OK)
        elif cmd == C_SELF_TEST:
            self.sys_flag = True
            self._answer(SELF_TEST_OK)
        elif cmd == C_READ_INPORT:
            self._answer(INPORT)
        elif cmd == C_READ_OUTPORT:
            self._answer(self._outport_pins())
        elif cmd in (C_A20_OFF, C_A20_ON):
            self._write_outport(self.outport & ~OP_A20 | (OP_A20 if cmd == C_A20_ON else 0))
        else:
            log.debug("%s: ignored controller command %#04x", self.path, cmd)

    # -- controller internals -------------------------------------------------------
    def _set_cmd_byte(self, value: int) -> None:
        self.cmd_byte = value
        self.sys_flag = bool(value & CB_SYS)

    def _set_bit(self, bit: int, on: bool) -> None:
        self.cmd_byte = self.cmd_byte | bit if on else self.cmd_byte & ~bit

    def _write_outport(self, value: int) -> None:
        self.outport = value & ~(OP_IRQ1 | OP_IRQ12)
        self.board.set_a20(self.path, bool(value & OP_A20))
        if not value & OP_RESET:
            self.board.request_reset("reset through the keyboard controller output port")

    def _outport_pins(self) -> int:
        return (self.outport | (OP_IRQ1 if self.irq1_out else 0)
                | (OP_IRQ12 if self.irq12_out else 0))

    def _answer(self, value: int, flags: int = 0) -> None:
        """A byte from the controller itself; a previous unread answer is replaced."""
        self.reply, self.reply_flags, self.reply_pending = value, flags, True

    def _sync(self) -> None:
        """Fill the output buffer if it is free, then drive the IRQ outputs."""
        if not self.obf:
            self._fill()
        self._drive_irqs()

    def _fill(self) -> None:
        if self.reply_pending:
            self.reply_pending = False
            self._load(self.reply, self.reply_flags)
            return
        if self.cmd_byte & CB_KBD_DISABLE:
            return  # the controller holds the clock line low: the keyboard keeps its data
        # The keyboard queues each key's sequence whole, so a break prefix always has its
        # code behind it: translation never has to remember a swallowed F0h across calls.
        broken = False
        while self.kbd.has_output():
            byte = self.kbd.take()
            if self.cmd_byte & CB_XLAT:
                if byte == BREAK:
                    broken = True
                    continue
                byte = XLAT[byte] | (0x80 if broken else 0)
            self._load(byte, 0)
            return

    def _load(self, value: int, flags: int) -> None:
        self.obuf, self.obuf_flags, self.obf = value, flags, True

    def _levels(self) -> list[tuple[IrqLine, bool]]:
        return [(self._irqs[KBD_IRQ], self.irq1_out), (self._irqs[AUX_IRQ], self.irq12_out)]

    def _drive_irqs(self) -> None:
        self._compute_irqs()
        for line, level in self._levels():
            if line.level != level:
                line.set(level)

    def _compute_irqs(self) -> None:
        from_aux = bool(self.obuf_flags & ST_AUX)
        self.irq1_out = self.obf and not from_aux and bool(self.cmd_byte & CB_KBD_INT)
        self.irq12_out = self.obf and from_aux and bool(self.cmd_byte & CB_AUX_INT)
