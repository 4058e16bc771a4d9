"""-device: the devices a user plugs into the pc board, spelled as in QEMU.

``-device DRIVER[,id=ID][,addr=SLOT[.FN]][,chardev=ID][,PROP=VALUE...]``: DRIVER is a
device type's QOM name and the props are its declared ``prop`` fields (numbers in C
notation, booleans on/off). ``addr`` places a PCI device (hex slot and function, as
QEMU's ``pci_devfn`` property reads them; by default the first free hot-pluggable
slot); ``chardev`` names its host backend (a ``-chardev`` or ``chardev-add`` id), a
binding that is never part of the description. The object sits at /machine/ID, or
without an id at /machine/<the type's usual name>.

The same spec, in its canonical spelling (``canonical``), is what the machine's
configuration keeps for every plugged device -- at start or hot-plugged --, so a
description, a savevm file and a migration's destination build the machine as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from emu.devices.base import Device
from emu.devices.isa_debug import DebugExit
from emu.devices.pci import PciDevice
from emu.devices.pci_serial import PciSerial
from emu.devices.piix3 import HOTPLUG_SLOTS
from emu.qom import Object


@dataclass(frozen=True)
class Pluggable:
    cls: type[Device]
    name: str  # the object's name without id=
    bus: str  # "ISA" or "PCI"; PCI devices are hot-pluggable
    desc: str


PLUGGABLE: dict[str, Pluggable] = {
    "isa-debug-exit": Pluggable(DebugExit, "debug-exit", "ISA",
                                "a guest's write of V to iobase ends pyemu with status "
                                "(V << 1) | 1"),
    "pci-serial": Pluggable(PciSerial, "pci-serial", "PCI",
                            "PCI 16550A adapter (QEMU's, 1b36:0002); chardev=ID"),
}
MAX_DEVICES = 16
ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")  # QEMU's id_wellformed, bounded
ADDR_RE = re.compile(r"(?:0[xX])?([0-9a-fA-F]{1,2})(?:\.([0-7]))?")
BOOLS = {"on": True, "yes": True, "true": True, "off": False, "no": False, "false": False}


@dataclass(frozen=True)
class DeviceOption:
    """One checked -device."""

    driver: str
    id: str | None
    props: dict[str, Any]
    chardev: str | None = None  # the host backend's id (a binding)

    @property
    def kind(self) -> Pluggable:
        return PLUGGABLE[self.driver]

    @property
    def devfn(self) -> int | None:
        return self.props.get("devfn")

    def canonical(self) -> str:
        """The spec that plugs this device again, as it is plugged now."""
        parts = [self.driver] + ([f"id={self.id}"] if self.id else [])
        for key, value in self.props.items():
            if key == "devfn":
                parts.append(f"addr={value >> 3:#x}.{value & 7}")
            elif isinstance(value, bool):
                parts.append(f"{key}={'on' if value else 'off'}")
            else:
                parts.append(f"{key}={value}")
        if self.chardev is not None:
            parts.append(f"chardev={self.chardev}")
        return ",".join(parts)


def devices_help() -> str:
    """-device help: the device types pyemu can add."""
    return "".join(f'name "{name}", bus {p.bus}, desc "{p.desc}"\n'
                   for name, p in PLUGGABLE.items())


def parse_device(spec: str) -> DeviceOption:
    """A -device value as a checked option; ValueError naming what is wrong."""
    driver, *parts = spec.split(",")
    if driver not in PLUGGABLE:
        raise ValueError(f"unknown device '{driver}': pyemu's -device adds "
                         f"{', '.join(PLUGGABLE)} ('-device help')")
    kind = PLUGGABLE[driver]
    dev_id: str | None = None
    chardev: str | None = None
    props: dict[str, Any] = {}
    for part in parts:
        key, eq, text = part.partition("=")
        if not eq:
            raise ValueError(f"'{part}': expected PROP=VALUE")
        if key in ("id", "chardev"):
            if not ID_RE.fullmatch(text):
                raise ValueError(f"{key} '{text}': an id is a letter, then letters, "
                                 "digits, '-', '.' or '_'")
            if key == "id":
                dev_id = text
            elif issubclass(kind.cls, PciSerial):
                chardev = text
            else:
                raise ValueError(f"{driver} has no property 'chardev'")
            continue
        if key == "addr" and kind.bus == "PCI":
            props["devfn"] = _devfn(text)
            continue
        props[key] = _prop(kind.cls, driver, key, text)
    return DeviceOption(driver, dev_id, props, chardev)


def _devfn(text: str) -> int:
    """QEMU's PCI address: hex slot, optionally '.function'; only hot-pluggable slots."""
    m = ADDR_RE.fullmatch(text)
    slot = int(m.group(1), 16) if m else -1
    if slot not in HOTPLUG_SLOTS:
        raise ValueError(f"addr={text}: expected a PCI slot from {HOTPLUG_SLOTS[0]:#x} to "
                         f"{HOTPLUG_SLOTS[-1]:#x} (0 and 1 hold the chipset), optionally "
                         "'.FUNCTION'")
    return slot << 3 | int(m.group(2) or 0)  # type: ignore[union-attr]


def _prop(cls: type[Device], driver: str, key: str, text: str) -> Any:
    try:
        field = cls.field(key)
    except KeyError:
        field = None
    if field is None or field.kind != "prop" or key == "devfn":
        raise ValueError(f"{driver} has no property '{key}'")
    if field.type.name == "bool":
        if text not in BOOLS:
            raise ValueError(f"{key}={text}: expected on or off")
        value: Any = BOOLS[text]
    else:
        try:
            value = int(text, 0)
        except ValueError:
            raise ValueError(f"{key}={text}: not a number") from None
    try:
        field.type.check(value)
    except ValueError as e:
        raise ValueError(f"{key}={text}: {e}") from None
    return value


def free_name(board: Object, option: DeviceOption) -> str:
    """The object's name: its id, else the type's usual name, numbered when taken."""
    if option.id is not None:
        return option.id
    name, n = option.kind.name, 0
    while (name + (str(n) if n else "")) in board.children:
        n += 1
    return name + (str(n) if n else "")


def place(option: DeviceOption, taken: set[int]) -> DeviceOption:
    """A PCI option with its devfn: as given, else function 0 of the first free
    hot-pluggable slot; ValueError when none is free or the given one is taken."""
    if option.kind.bus != "PCI":
        return option
    devfn = option.devfn
    if devfn is None:
        free = [slot << 3 for slot in HOTPLUG_SLOTS if slot << 3 not in taken]
        if not free:
            raise ValueError(f"{option.driver}: no free PCI slot")
        devfn = free[0]
    elif devfn in taken:
        raise ValueError(f"{option.driver}: PCI slot {devfn >> 3:#x} function {devfn & 7} "
                         "is in use")
    return DeviceOption(option.driver, option.id, {**option.props, "devfn": devfn},
                        option.chardev)


def make_device(board: Object, option: DeviceOption, chardev: Any) -> Device:
    """Create the device of a placed option as a child of ``board`` (not yet realized),
    bound to ``chardev`` (or nothing)."""
    dev = option.kind.cls(free_name(board, option), board, **option.props)
    if chardev is not None:
        dev.chardev = chardev  # type: ignore[attr-defined]
    return dev


def is_pci(dev: Object) -> bool:
    return isinstance(dev, PciDevice)
