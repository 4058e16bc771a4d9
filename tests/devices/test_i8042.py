"""The 8042 keyboard controller and its PS/2 keyboard, driven through ports 60h/64h."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from emu.devices.i8042 import I8042, KEY_ROOM, KEYMAP, OP_A20
from emu.qom import fields_of

if TYPE_CHECKING:
    from conftest import BenchBoard

DATA, CMD = 0x60, 0x64
OBF, SYS, CMD_BIT, UNLOCKED, AUX, TIMEOUT = 0x01, 0x04, 0x08, 0x10, 0x20, 0x40
KBD_INT, AUX_INT, KBD_DIS, XLAT = 0x01, 0x02, 0x10, 0x40
ACK = 0xFA


def make_kbc(board: BenchBoard) -> I8042:
    dev = I8042("i8042", None)
    dev.realize_all(board)
    dev.reset_all()
    return dev


@pytest.fixture
def kbc(board: BenchBoard) -> I8042:
    return make_kbc(board)


def command(board: BenchBoard, cmd: int, *data: int) -> None:
    board.outb(CMD, cmd)
    for byte in data:
        board.outb(DATA, byte)


def drain(board: BenchBoard) -> bytes:
    """Every byte the controller has for the host, read as a polling driver does."""
    out = bytearray()
    for _ in range(64):
        if not board.inb(CMD) & OBF:
            break
        out.append(board.inb(DATA))
    return bytes(out)


def ask(board: BenchBoard, cmd: int, *data: int) -> bytes:
    command(board, cmd, *data)
    return drain(board)


def to_kbd(board: BenchBoard, *data: int) -> bytes:
    for byte in data:
        board.outb(DATA, byte)
    return drain(board)


def set_cmd_byte(board: BenchBoard, value: int) -> None:
    command(board, 0x60, value)


# -- controller commands --------------------------------------------------------------

def test_self_test_answers_55_and_sets_system_flag(board, kbc):
    assert not board.inb(CMD) & SYS
    assert ask(board, 0xAA) == b"\x55"
    assert board.inb(CMD) & SYS


def test_interface_tests_pass(board, kbc):
    assert ask(board, 0xAB) == b"\x00"
    assert ask(board, 0xA9) == b"\x00"


def test_command_byte_write_and_read_back(board, kbc):
    assert ask(board, 0x20) == b"\x03"  # both interrupts enabled after reset
    set_cmd_byte(board, 0x65)
    assert ask(board, 0x20) == b"\x65"
    assert board.inb(CMD) & SYS  # bit 2 of the command byte is the system flag
    set_cmd_byte(board, 0x61)
    assert not board.inb(CMD) & SYS


def test_enable_disable_commands_edit_the_command_byte(board, kbc):
    command(board, 0xAD)
    command(board, 0xA7)
    assert ask(board, 0x20)[0] & (KBD_DIS | 0x20) == KBD_DIS | 0x20
    command(board, 0xAE)
    command(board, 0xA8)
    assert ask(board, 0x20)[0] & (KBD_DIS | 0x20) == 0


def test_status_register_bits(board, kbc):
    assert board.inb(CMD) == UNLOCKED | CMD_BIT  # empty, last write was a command
    board.outb(DATA, 0xEE)  # echo, through the data port
    status = board.inb(CMD)
    assert status & OBF and not status & CMD_BIT and not status & 0x02  # IBF consumed
    assert not status & (AUX | TIMEOUT | 0x80)
    assert board.inb(DATA) == 0xEE
    assert board.inb(CMD) & (OBF | CMD_BIT) == 0
    board.outb(CMD, 0x20)
    assert board.inb(CMD) & (OBF | CMD_BIT) == OBF | CMD_BIT


def test_reading_empty_buffer_returns_last_byte(board, kbc):
    assert ask(board, 0xAA) == b"\x55"
    assert board.inb(DATA) == 0x55
    assert not board.inb(CMD) & OBF


def test_new_command_cancels_awaited_data_byte(board, kbc):
    board.outb(CMD, 0x60)  # write command byte: data expected ...
    assert ask(board, 0x20) == b"\x03"  # ... but another command comes first
    board.outb(DATA, 0xF2)  # so this goes to the keyboard
    assert drain(board) == bytes((ACK, 0xAB, 0x83))
    assert ask(board, 0x20) == b"\x03"


def test_input_port_reads_keyboard_not_inhibited(board, kbc):
    assert ask(board, 0xC0)[0] & 0x80


# -- A20 and reset --------------------------------------------------------------------

def test_a20_through_output_port(board, kbc):
    assert board.a20 == {kbc.path: True}  # enabled from reset
    command(board, 0xD1, 0xDD)
    assert board.a20[kbc.path] is False
    assert ask(board, 0xD0)[0] & 0x03 == 0x01
    command(board, 0xD1, 0xDF)
    assert board.a20[kbc.path] is True
    assert ask(board, 0xD0)[0] & 0x03 == 0x03
    assert board.resets == []  # bit 0 stayed high


def test_a20_commands_dd_df(board, kbc):
    command(board, 0xDD)
    assert board.a20[kbc.path] is False
    assert ask(board, 0xD0)[0] & 0x02 == 0
    command(board, 0xDF)
    assert board.a20[kbc.path] is True
    assert ask(board, 0xD0)[0] & 0x02


def test_output_port_bit4_shows_irq1(board, kbc):
    board.outb(DATA, 0xEE)  # a keyboard byte sits in the buffer, IRQ1 enabled
    command(board, 0xD0)
    assert board.inb(DATA) == 0xEE
    assert board.inb(DATA) & 0x10  # the reply was latched while IRQ1 was high


def test_pulse_fe_resets_the_cpu(board, kbc):
    board.outb(CMD, 0xFF)  # pulse nothing
    assert board.resets == []
    board.outb(CMD, 0xFE)
    assert board.resets == ["reset through the keyboard controller"]
    board.outb(CMD, 0xF0)  # any mask with bit 0 low pulses reset
    assert len(board.resets) == 2


def test_output_port_bit0_low_resets_the_cpu(board, kbc):
    command(board, 0xD1, 0xDE)
    assert len(board.resets) == 1
    assert board.a20[kbc.path] is True


# -- keyboard protocol ----------------------------------------------------------------

def test_keyboard_reset_answers_ack_then_bat(board, kbc):
    assert to_kbd(board, 0xFF) == bytes((ACK, 0xAA))


def test_keyboard_identify_raw_and_translated(board, kbc):
    assert to_kbd(board, 0xF2) == bytes((ACK, 0xAB, 0x83))
    set_cmd_byte(board, XLAT | KBD_INT)
    assert to_kbd(board, 0xF2) == bytes((ACK, 0xAB, 0x41))


def test_keyboard_echo_and_unknown_command(board, kbc):
    assert to_kbd(board, 0xEE) == b"\xee"
    assert to_kbd(board, 0xFD) == b"\xfe"
    assert to_kbd(board, 0x42) == b"\xfe"


def test_keyboard_leds(board, kbc):
    assert to_kbd(board, 0xED) == bytes((ACK,))
    assert to_kbd(board, 0x05) == bytes((ACK,))
    assert kbc.kbd.leds == 5
    assert to_kbd(board, 0xED, 0xF2) == bytes((ACK, ACK, 0xAB, 0x83))  # a command aborts
    assert kbc.kbd.leds == 5


def test_keyboard_typematic(board, kbc):
    assert to_kbd(board, 0xF3, 0x00) == bytes((ACK, ACK))
    assert kbc.kbd.typematic == 0


def test_scancode_set_get_and_set(board, kbc):
    assert to_kbd(board, 0xF0, 0x00) == bytes((ACK, ACK, 2))
    assert to_kbd(board, 0xF0, 0x01) == bytes((ACK, ACK))
    assert to_kbd(board, 0xF0, 0x00) == bytes((ACK, ACK, 1))
    kbc.send_keys("a")
    assert drain(board) == b"\x1e\x9e"  # set 1 from the keyboard itself
    assert to_kbd(board, 0xF0, 0x03) == bytes((ACK, 0xFE))  # set 3 is not offered
    assert to_kbd(board, 0xF6) == bytes((ACK,))  # defaults: back to set 2
    set_cmd_byte(board, XLAT | KBD_INT)
    assert to_kbd(board, 0xF0, 0x00) == bytes((ACK, ACK, 0x41))  # 2, as translated


def test_disable_scanning_drops_keys_and_enable_resumes(board, kbc):
    assert to_kbd(board, 0xF5) == bytes((ACK,))
    kbc.send_keys("a")
    assert drain(board) == b""
    assert to_kbd(board, 0xF4) == bytes((ACK,))
    kbc.send_keys("a")
    assert drain(board) == b"\x1c\xf0\x1c"


# -- interrupts -----------------------------------------------------------------------

def test_irq1_follows_command_byte_and_is_lowered_by_read(board, kbc):
    set_cmd_byte(board, 0x00)
    board.outb(DATA, 0xEE)
    assert board.inb(CMD) & OBF and not board.irqs[1].level
    board.inb(DATA)
    set_cmd_byte(board, KBD_INT)
    board.outb(DATA, 0xEE)
    assert board.irqs[1].level and not board.irqs[12].level
    assert board.inb(DATA) == 0xEE
    assert not board.irqs[1].level


def test_each_byte_raises_a_fresh_edge(board, kbc):
    edges: list[bool] = []
    board.irqs[1].handler = edges.append
    set_cmd_byte(board, XLAT | KBD_INT)
    kbc.send_keys("a")
    assert board.irqs[1].level
    assert drain(board) == b"\x1e\x9e"
    assert edges == [True, False, True, False]


def test_aux_loopback_and_absent_device(board, kbc):
    command(board, 0xD3, 0x5A)
    assert board.inb(CMD) & (OBF | AUX | TIMEOUT) == OBF | AUX
    assert board.irqs[12].level and not board.irqs[1].level
    assert board.inb(DATA) == 0x5A and not board.irqs[12].level
    command(board, 0xD4, 0xF2)  # to the mouse: nobody there
    assert board.inb(CMD) & (OBF | AUX | TIMEOUT) == OBF | AUX | TIMEOUT
    assert board.inb(DATA) == 0xFE
    assert not board.inb(CMD) & (AUX | TIMEOUT)


def test_write_keyboard_output_buffer(board, kbc):
    set_cmd_byte(board, XLAT | KBD_INT)
    command(board, 0xD2, 0x1C)
    assert board.irqs[1].level and not board.inb(CMD) & AUX
    assert board.inb(DATA) == 0x1C  # not translated


# -- key injection --------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "raw", "translated"), [
    ("a", "1c f0 1c", "1e 9e"),
    ("shift-a", "12 1c f0 1c f0 12", "2a 1e 9e aa"),
    ("ctrl-alt-delete", "14 11 e0 71 e0 f0 71 f0 11 f0 14", "1d 38 e0 53 e0 d3 b8 9d"),
    ("right", "e0 74 e0 f0 74", "e0 4d e0 cd"),
])
def test_send_keys_with_and_without_translation(board, kbc, spec, raw, translated):
    kbc.send_keys(spec)
    assert drain(board) == bytes.fromhex(raw)
    set_cmd_byte(board, XLAT | KBD_INT)
    kbc.send_keys(spec)
    assert drain(board) == bytes.fromhex(translated)


def test_translation_matches_set1_codes(board, kbc):
    set1 = {"esc": 0x01, "1": 0x02, "0": 0x0B, "backspace": 0x0E, "tab": 0x0F, "q": 0x10,
            "ret": 0x1C, "ctrl": 0x1D, "shift": 0x2A, "z": 0x2C, "slash": 0x35,
            "kp_multiply": 0x37, "alt": 0x38, "spc": 0x39, "caps_lock": 0x3A, "f1": 0x3B,
            "f7": 0x41, "f10": 0x44, "num_lock": 0x45, "scroll_lock": 0x46, "kp_7": 0x47,
            "kp_subtract": 0x4A, "kp_0": 0x52, "kp_decimal": 0x53, "f11": 0x57,
            "f12": 0x58, "up": 0x48, "pgdn": 0x51, "kp_enter": 0x1C, "meta_l": 0x5B}
    set_cmd_byte(board, XLAT | KBD_INT)
    for name, code in set1.items():
        kbc.kbd.press(name)
        assert drain(board)[-1] == code, name


def test_print_and_pause_sequences(board, kbc):
    set_cmd_byte(board, XLAT | KBD_INT)
    kbc.send_keys("pause")
    assert drain(board) == bytes.fromhex("e1 1d 45 e1 9d c5")
    kbc.send_keys("print")
    assert drain(board) == bytes.fromhex("e0 2a e0 37 e0 b7 e0 aa")


def test_unknown_key_is_refused_before_anything_is_pressed(board, kbc):
    with pytest.raises(ValueError, match="unknown key 'bogus'"):
        kbc.send_keys("shift-bogus")
    with pytest.raises(ValueError, match="unknown key ''"):
        kbc.send_keys("a--b")
    assert drain(board) == b""


def test_every_named_key_has_a_break_unless_pause(kbc):
    for name, (make, brk) in KEYMAP.items():
        assert make, name
        assert brk or name == "pause", name


def test_disabled_keyboard_interface_holds_bytes(board, kbc):
    command(board, 0xAD)
    kbc.send_keys("a")
    assert drain(board) == b""
    assert ask(board, 0x20) == bytes((0x03 | KBD_DIS,))  # controller replies still flow
    command(board, 0xAE)
    assert drain(board) == b"\x1c\xf0\x1c"


def test_keyboard_buffer_keeps_whole_sequences_up_to_16_bytes(board, kbc):
    command(board, 0xAD)
    for _ in range(6):
        kbc.send_keys("right")  # 5 bytes each: three fit in 16
    assert len(kbc.kbd.queue) == 15 <= KEY_ROOM
    command(board, 0xAE)
    assert drain(board) == bytes.fromhex("e0 74 e0 f0 74") * 3


def test_controller_reply_goes_before_queued_keys(board, kbc):
    kbc.send_keys("a")  # 1c in the buffer, f0 1c waiting in the keyboard
    command(board, 0x20)
    assert drain(board) == bytes((0x1C, 0x03, 0xF0, 0x1C))


def test_device_reset_empties_everything(board, kbc):
    set_cmd_byte(board, XLAT | KBD_INT)
    kbc.send_keys("a")
    assert board.irqs[1].level
    kbc.reset_all()
    assert not board.irqs[1].level and not board.inb(CMD) & OBF
    assert ask(board, 0x20) == b"\x03"


def test_registers_while_output_port_data_is_awaited(board, kbc):
    command(board, 0xD1)
    assert kbc.cmd_byte == 0x03 and kbc.pending_cmd == 0xD1
    assert kbc.kbd.scancode_set == 2 and kbc.outport & OP_A20


# -- saved state ----------------------------------------------------------------------

def _copy_state(src: I8042, dst: I8042) -> None:
    for a, b in zip(src.walk(), dst.walk(), strict=True):
        for f in fields_of(type(a), "state"):
            f.assign(b, f.type.check(f.__get__(a)))
    for obj in dst.walk():
        obj.rebuild()


def _registers(dev: I8042) -> list[object]:
    """Every state field of the controller and its keyboard, in tree order."""
    return [f.__get__(obj) for obj in dev.walk() for f in fields_of(type(obj), "state")]


def _script(board: BenchBoard, dev: I8042) -> list[object]:
    seen: list[object] = [dev.irq1_out, dev.irq12_out, board.inb(CMD), _registers(dev)]
    board.outb(DATA, KBD_INT | XLAT)  # the awaited command byte, or else the LED argument
    for _ in range(6):
        seen.append((board.inb(CMD), board.inb(DATA), board.irqs[1].level,
                     board.irqs[12].level))
    board.outb(DATA, 0x07)
    seen += [drain(board), dev.kbd.leds, ask(board, 0xD0), ask(board, 0x20)]
    dev.send_keys("a")  # dropped while scanning is off
    seen += [drain(board), to_kbd(board, 0xF4)]
    dev.send_keys("ctrl-alt-delete")  # in the scan code set carried over
    seen += [drain(board), board.a20, board.resets, _registers(dev)]
    return seen


@pytest.mark.parametrize("last_write", ["command", "data"])
def test_state_round_trip(board, kbc, last_write):
    set_cmd_byte(board, 0x25)  # system flag, keyboard interrupt, aux disabled
    command(board, 0xD1, 0xDD)  # A20 off
    command(board, 0xD3, 0x99)  # an aux byte in the output buffer
    # Scanning off, scan code set 1, typematic, LEDs, and an LED argument due; the ACKs
    # wait in the keyboard behind the aux byte.
    for byte in (0xF5, 0xF0, 0x01, 0xF3, 0x20, 0xED, 0x02, 0xED):
        board.outb(DATA, byte)
    command(board, 0xD4, 0xF2)  # the no-mouse answer waits in the reply latch
    if last_write == "command":
        board.outb(CMD, 0x60)  # a command byte is due at port 60h
    assert kbc.obf and kbc.reply_pending and kbc.kbd.pending_cmd and kbc.kbd.queue

    fresh = type(board)()
    new = make_kbc(fresh)
    _copy_state(kbc, new)
    assert (new.irq1_out, new.irq12_out) == (kbc.irq1_out, kbc.irq12_out)
    assert _script(board, kbc) == _script(fresh, new)
