"""Compat filters of the i8042 keyboard controller and its PS/2 keyboard."""

from emu.migration.compat.filters import Rename, Upgrade

UPGRADES = [
    # The keyboard's "argument byte due for this command" latch was saved as ``expect``;
    # the controller names the same latch ``pending_cmd``, and so does the keyboard now.
    Upgrade("ps2-kbd", 1,
            layout="queue:bytes[24] scancode_set:u8 scanning:bool leds:u8 typematic:u8 "
                   "expect:u8",
            steps=(Rename("expect", "pending_cmd"),)),
]
