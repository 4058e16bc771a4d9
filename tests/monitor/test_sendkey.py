"""sendkey: QEMU key names typed on the PS/2 keyboard, read back through port 60h."""

from __future__ import annotations

import pytest

ST_OBF = 0x01


def typed(m) -> bytes:
    """Everything the controller has for the guest, as the guest reads it."""
    out = bytearray()
    while m.io.read(0x64, 1) & ST_OBF:
        out.append(m.io.read(0x60, 1))
    return bytes(out)


@pytest.mark.parametrize(("keys", "codes"), [
    ("a", "1c f0 1c"),
    ("shift-a", "12 1c f0 1c f0 12"),
    ("ret", "5a f0 5a"),
    ("spc", "29 f0 29"),
    ("f1", "05 f0 05"),
    ("ctrl-alt-delete", "14 11 e0 71 e0 f0 71 f0 11 f0 14"),
])
def test_sendkey_sends_set2_codes(machine, run, keys, codes):
    assert run(machine, f"sendkey {keys}") == ""
    assert typed(machine) == bytes.fromhex(codes)


def test_sendkey_with_translation_on(machine, run):
    machine.io.write(0x64, 1, 0x60)  # write the command byte: translate to set 1
    machine.io.write(0x60, 1, 0x41)
    run(machine, "sendkey ctrl-c 100")
    assert typed(machine) == bytes.fromhex("1d 2e ae 9d")


@pytest.mark.parametrize(("line", "message"), [
    ("sendkey x1", "unknown key: 'x1'"),
    ("sendkey ctrl--a", "unknown key: ''"),
    ("sendkey A", "unknown key: 'A'"),
    ("sendkey " + "-".join(["a"] * 17), "too many keys (at most 16)"),
    ("sendkey a soon", "invalid hold time: 'soon' (0-60000 ms)"),
    ("sendkey", "sendkey: missing argument (usage: sendkey keys [hold_ms])"),
])
def test_bad_keys_send_nothing(machine, error, line, message):
    assert error(machine, line) == message
    assert typed(machine) == b""
