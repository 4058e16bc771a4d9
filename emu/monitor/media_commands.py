"""HMP ``change`` and ``eject`` over the board's removable media (machine/pc/media.py,
which QMP's blockdev-change-medium, eject and blockdev-*-tray use too)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from emu.machine.pc import media
from emu.monitor.commands import CommandError, command, human, split_flags

if TYPE_CHECKING:
    from emu.machine.machine import Machine


@command("change", "device filename [format]",
         "change the medium of a removable device (format: raw or qcow2, else probed)",
         max_args=3, min_args=2)
def _change(machine: Machine, args: list[str]) -> str:
    fmt = args[2] if len(args) > 2 else None
    return human(lambda: media.change_medium(machine, args[0], args[1], fmt),  # type: ignore[arg-type]
                 media.MediaError)


@command("eject", "[-f] device", "eject the medium of a removable device (-f: even if the "
         "guest locked it)", max_args=2, min_args=1)
def _eject(machine: Machine, args: list[str]) -> str:
    flags, rest = split_flags(args, "f")
    if len(rest) != 1:
        raise CommandError("eject: usage: eject [-f] device")
    return human(lambda: media.eject(machine, rest[0], "f" in flags),  # type: ignore[arg-type]
                 media.MediaError)
