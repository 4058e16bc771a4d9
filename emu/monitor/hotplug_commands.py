"""HMP ``device_add``, ``device_del``, ``chardev-add`` and ``chardev-remove`` over the
board's run-time changes (machine/pc/hotplug.py, which QMP's commands of the same names
use too)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from emu.machine.pc import hotplug
from emu.monitor.commands import command, human

if TYPE_CHECKING:
    from emu.machine.machine import Machine


@command("device_add", "driver[,prop=value][,...]",
         "add a device, as -device does (pci-serial: hot-plugged, the guest is told)",
         max_args=1, min_args=1)
def _device_add(machine: Machine, args: list[str]) -> str:
    return human(lambda: hotplug.device_add(machine, args[0]),  # type: ignore[arg-type]
                 hotplug.HotplugError)


@command("device_del", "device", "ask the guest to eject a hot-plugged device (id or QOM "
         "path); DEVICE_DELETED follows when it does", max_args=1, min_args=1)
def _device_del(machine: Machine, args: list[str]) -> str:
    return human(lambda: hotplug.device_del(machine, args[0]),  # type: ignore[arg-type]
                 hotplug.HotplugError)


@command("chardev-add", "args", "add a chardev, as -chardev does (null, file, socket)",
         max_args=1, min_args=1)
def _chardev_add(machine: Machine, args: list[str]) -> str:
    return human(lambda: hotplug.chardev_add(machine, args[0]),  # type: ignore[arg-type]
                 hotplug.HotplugError)


@command("chardev-remove", "id", "remove a chardev no device uses", max_args=1, min_args=1)
def _chardev_remove(machine: Machine, args: list[str]) -> str:
    return human(lambda: hotplug.chardev_remove(machine, args[0]),  # type: ignore[arg-type]
                 hotplug.HotplugError)
