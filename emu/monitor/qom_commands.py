"""``qom-list``, ``qom-get``, ``qom-set`` over the object tree, and ``machine-export``.

DESIGN.md, "The object model": every field is declared once as prop, state or derived,
and that table is what these commands show and edit. ``qom-set`` writes ``state`` fields
only (checked by the field's type), then lets the object recompute its derived fields
as after a load; props are frozen once realized and derived fields follow from state.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emu.monitor.commands import CommandError, command
from emu.qom import Object, fields_of
from emu.qom.fields import Field, FieldType

if TYPE_CHECKING:
    from emu.machine.machine import Machine

PSEUDO = {"type": "string", "realized": "bool"}  # QEMU's properties of every object


def resolve(machine: Machine, path: str) -> Object:
    try:
        return machine.resolve(path)
    except KeyError:
        raise CommandError(f"Error: Device '{path}' not found") from None


def _field(obj: Object, name: str) -> Field:
    try:
        return obj.field(name)
    except KeyError:
        raise CommandError(f"Error: Property '{name}' not found") from None


def json_value(value: Any) -> Any:
    """A field value as JSON carries it; bytes as a hex string."""
    return value.hex() if isinstance(value, bytes) else value


@command("qom-list", "path", "list the children and properties of the object at path",
         max_args=1, min_args=1)
def _qom_list(machine: Machine, args: list[str]) -> str:
    if args[0] == "/":
        return f"{machine.name} (child<{machine.TYPE_NAME}>)"
    obj = resolve(machine, args[0])
    lines = [f"{name} ({kind})" for name, kind in PSEUDO.items()]
    lines += [f"{name} (child<{child.TYPE_NAME}>)" for name, child in obj.children.items()]
    lines += [f"{f.wire} ({f.kind}<{f.type.spec}>)" for f in fields_of(type(obj))]
    return "\n".join(lines)


@command("qom-get", "path property", "print a property of the object at path",
         max_args=2, min_args=2)
def _qom_get(machine: Machine, args: list[str]) -> str:
    obj = resolve(machine, args[0])
    if args[1] == "type":
        return json.dumps(obj.TYPE_NAME)
    if args[1] == "realized":
        return json.dumps(obj.realized)
    f = _field(obj, args[1])
    if f.kind == "state":
        obj.sync_state()  # state cached elsewhere for speed comes home first
    return json.dumps(json_value(f.__get__(obj)))


_TRUE, _FALSE = ("true", "on", "yes", "1"), ("false", "off", "no", "0")


def parse_value(ftype: FieldType, text: str) -> Any:
    """VALUE as the field's type reads it: an integer in base 0 (0x.., 0o.., 0b..,
    decimal), true/false, hex digits for bytes, comma-separated integers for an array."""
    if ftype.name == "bool":
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ValueError(f"expected true or false, not '{text}'")
    if ftype.bits:
        return _int(text)
    if ftype.name == "bytes":
        try:
            return bytes.fromhex("" if text == '""' else text)
        except ValueError:
            raise ValueError(f"expected hex bytes, not '{text}'") from None
    if ftype.name == "array":
        items = [t for t in text.strip("[]").split(",") if t]
        if len(items) != ftype.max_len:
            raise ValueError(f"expected {ftype.max_len} comma-separated integers, "
                             f"got {len(items)}")
        return [_int(t) for t in items]
    return text  # str


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"expected an integer (0x.. or decimal), not '{text}'") from None


@command("qom-set", "path property value", "set a state field of the object at path",
         max_args=3, min_args=3)
def _qom_set(machine: Machine, args: list[str]) -> str:
    path, name, text = args
    obj = resolve(machine, path)
    if name in PSEUDO:
        raise CommandError(f"Error: Property '{name}' is read-only")
    f = _field(obj, name)
    if f.kind == "derived":
        raise CommandError(f"Error: Property '{name}' is derived from state by {path}'s "
                           "rebuild and cannot be set")
    if f.kind == "prop" and obj.realized:
        raise CommandError(f"Error: Attempt to set property '{name}' on '{path}' after "
                           "it was realized")
    try:
        value = f.type.check(parse_value(f.type, text))
    except ValueError as e:
        raise CommandError(f"Error: Property '{name}': {e}") from None
    if f.kind == "prop":
        obj.set_prop(name, value)
        return ""
    obj.sync_state()
    f.__set__(obj, value)
    obj.rebuild()
    # As after a load: outputs no rebuild may drive (the CPU's INTR) and code the engine
    # translated from the old state are brought up to date.
    after_load = getattr(machine, "after_load", None)
    if after_load is not None:
        after_load()
    return ""


# -- machine-export -----------------------------------------------------------------------

def machine_description(machine: Machine) -> dict[str, Any]:
    """What a migration stream carries to build this machine: every object with its
    type, path and props, and the configuration it was built from."""
    from emu.machine.config import to_stream
    from emu.migration.stream import describe_machine

    desc = describe_machine(machine)
    cfg = getattr(machine, "cfg", None)
    if cfg is not None:
        desc["config"] = to_stream(cfg)
    return desc


def write_atomically(path: Path, text: str) -> None:
    """The file appears whole or not at all (a temporary file renamed over it)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@command("machine-export", "file", "write the machine description as JSON to file",
         max_args=1, min_args=1)
def _machine_export(machine: Machine, args: list[str]) -> str:
    path = Path(args[0])
    if path.is_dir():
        raise CommandError(f"Error: could not write '{args[0]}': Is a directory")
    text = json.dumps(machine_description(machine), indent=2, sort_keys=True) + "\n"
    try:
        write_atomically(path, text)
    except OSError as e:
        raise CommandError(f"Error: could not write '{args[0]}': "
                           f"{e.strerror or e}") from None
    return ""
