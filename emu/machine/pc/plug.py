"""-device: the devices a user plugs into the pc board, spelled as in QEMU.

``-device DRIVER[,id=ID][,PROP=VALUE...]``: DRIVER is a device type's QOM name and the
props are its declared ``prop`` fields (numbers in C notation, booleans on/off). The
object sits at /machine/ID, or without an id at /machine/<the type's usual name>.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from emu.devices.base import Device
from emu.devices.isa_debug import DebugExit
from emu.qom import Object

# type name -> (class, object name without id=, what it is for -device help)
PLUGGABLE: dict[str, tuple[type[Device], str, str]] = {
    "isa-debug-exit": (DebugExit, "debug-exit",
                       "a guest's write of V to iobase ends pyemu with status (V << 1) | 1"),
}
MAX_DEVICES = 16
ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")  # QEMU's id_wellformed, bounded
BOOLS = {"on": True, "yes": True, "true": True, "off": False, "no": False, "false": False}


@dataclass(frozen=True)
class DeviceOption:
    """One checked -device."""

    driver: str
    id: str | None
    props: dict[str, Any]


def devices_help() -> str:
    """-device help: the device types pyemu can add."""
    return "".join(f'name "{name}", bus ISA, desc "{desc}"\n'
                   for name, (_, _, desc) in PLUGGABLE.items())


def parse_device(spec: str) -> DeviceOption:
    """A -device value as a checked option; ValueError naming what is wrong."""
    driver, *parts = spec.split(",")
    if driver not in PLUGGABLE:
        raise ValueError(f"unknown device '{driver}': pyemu's -device adds "
                         f"{', '.join(PLUGGABLE)} ('-device help')")
    cls = PLUGGABLE[driver][0]
    dev_id: str | None = None
    props: dict[str, Any] = {}
    for part in parts:
        key, eq, text = part.partition("=")
        if not eq:
            raise ValueError(f"'{part}': expected PROP=VALUE")
        if key == "id":
            if not ID_RE.fullmatch(text):
                raise ValueError(f"id '{text}': an id is a letter, then letters, digits, "
                                 "'-', '.' or '_'")
            dev_id = text
            continue
        try:
            field = cls.field(key)
        except KeyError:
            field = None
        if field is None or field.kind != "prop":
            raise ValueError(f"{driver} has no property '{key}'")
        props[key] = _value(field.type.name, text, key)
        try:
            field.type.check(props[key])
        except ValueError as e:
            raise ValueError(f"{key}={text}: {e}") from None
    return DeviceOption(driver, dev_id, props)


def _value(type_name: str, text: str, key: str) -> Any:
    if type_name == "bool":
        if text not in BOOLS:
            raise ValueError(f"{key}={text}: expected on or off")
        return BOOLS[text]
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"{key}={text}: not a number") from None


def plug_devices(board: Object, specs: list[str]) -> list[Device]:
    """Create the -device objects as children of ``board`` (not yet realized)."""
    made: list[Device] = []
    for spec in specs:
        option = parse_device(spec)
        cls, name, _ = PLUGGABLE[option.driver]
        if option.id is None:  # debug-exit, debug-exit1, ...
            n = 0
            while (name + (str(n) if n else "")) in board.children:
                n += 1
            name += str(n) if n else ""
        made.append(cls(option.id or name, board, **option.props))
    return made
