"""``sendkey``: type a key combination on the guest's PS/2 keyboard, as QEMU does.

Keys are QEMU's names (qcodes) joined by '-' (``ctrl-alt-delete``, ``shift-a``, ``ret``,
``spc``, ``f1``): pressed in order, released in reverse, through the i8042's keyboard
(emu/devices/i8042.py), which turns them into the scan code set the guest chose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emu.devices.i8042 import I8042, key_codes
from emu.monitor.commands import CommandError, command

if TYPE_CHECKING:
    from emu.machine.machine import Machine

MAX_KEYS = 16  # QEMU's limit; more keys at once is a typo
MAX_HOLD_MS = 60_000


@command("sendkey", "keys [hold_ms]", "send keys to the VM (e.g. 'sendkey ctrl-alt-f1')",
         max_args=2, min_args=1)
def _sendkey(machine: Machine, args: list[str]) -> str:
    names = args[0].split("-")
    if len(names) > MAX_KEYS:
        raise CommandError(f"too many keys (at most {MAX_KEYS})")
    for name in names:
        try:
            key_codes(name)
        except ValueError:
            raise CommandError(f"unknown key: '{name}'") from None
    if len(args) > 1 and not (args[1].isdigit() and int(args[1]) <= MAX_HOLD_MS):
        # The keyboard has no typematic repeat, so how long keys are held changes nothing
        # the guest sees; the argument is checked and accepted for QEMU's syntax.
        raise CommandError(f"invalid hold time: '{args[1]}' (0-{MAX_HOLD_MS} ms)")
    controller = next((o for o in machine.walk() if isinstance(o, I8042)), None)
    if controller is None:
        raise CommandError("sendkey: this machine has no keyboard")
    controller.send_keys(args[0])
    return ""
