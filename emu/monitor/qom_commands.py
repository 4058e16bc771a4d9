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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emu.monitor.commands import CommandError, command
from emu.qom import Object, fields_of, links_of
from emu.qom.fields import Field, FieldType

if TYPE_CHECKING:
    from emu.machine.machine import Machine

PSEUDO = {"type": "string", "realized": "bool"}  # QEMU's properties of every object


class QomError(CommandError):
    """A qom command's one-line error, with the error class QMP replies with."""

    def __init__(self, text: str, error_class: str = "GenericError") -> None:
        super().__init__(text)
        self.error_class = error_class


# -- one implementation, for HMP (below) and QMP (qmp.py) ----------------------------------

def find_object(machine: Machine, path: str) -> Object:
    try:
        return machine.resolve(path)
    except KeyError:
        raise QomError(f"Device '{path}' not found", "DeviceNotFound") from None


def _field(obj: Object, name: str) -> Field:
    try:
        return obj.field(name)
    except KeyError:
        raise QomError(f"Property '{obj.TYPE_NAME}.{name}' not found") from None


def qom_type(t: FieldType) -> str:
    """A field type as QOM names property types (uint8, bool, string, list<...>)."""
    if t.elem is not None:
        return f"list<{qom_type(t.elem)}>"
    if t.bits:
        return f"{'int' if t.signed else 'uint'}{t.bits}"
    return {"bool": "bool", "str": "string", "bytes": "string"}[t.name]


def qom_list(machine: Machine, path: str) -> list[dict[str, str]]:
    """The object's properties as QMP's ObjectPropertyInfo: QEMU's pseudo properties,
    the children, then every declared field (its kind and doc as the description)."""
    if path == "/":
        return [{"name": machine.name, "type": f"child<{machine.TYPE_NAME}>"}]
    obj = find_object(machine, path)
    out = [{"name": name, "type": kind} for name, kind in PSEUDO.items()]
    out += [{"name": name, "type": f"child<{child.TYPE_NAME}>"}
            for name, child in obj.children.items()]
    out += [{"name": f.wire, "type": qom_type(f.type), "description": f"{f.kind}: {f.doc}"}
            for f in fields_of(type(obj))]
    out += [{"name": b.attr, "type": f"link<{b.kind}>", "description": f"binding: {b.doc}"}
            for b in links_of(type(obj))]
    return out


def bound_to(value: Any) -> str | None:
    """What a host binding is bound to, by name: an image's path, a chardev's spec."""
    if value is None:
        return None
    for attr in ("path", "spec"):
        if isinstance(getattr(value, attr, None), str):
            return getattr(value, attr)
    return type(value).__name__


def json_value(value: Any) -> Any:
    """A field value as JSON carries it; bytes as a hex string."""
    return value.hex() if isinstance(value, bytes) else value


def qom_get(machine: Machine, path: str, name: str) -> Any:
    """A property's value as JSON carries it."""
    obj = find_object(machine, path)
    if name == "type":
        return obj.TYPE_NAME
    if name == "realized":
        return obj.realized
    binding = next((b for b in links_of(type(obj)) if b.attr == name), None)
    if binding is not None:
        return bound_to(binding.__get__(obj))
    f = _field(obj, name)
    if f.kind == "state":
        obj.sync_state()  # state cached elsewhere for speed comes home first
    return json_value(f.__get__(obj))


def qom_set(machine: Machine, path: str, name: str, value: Any) -> None:
    """A prop before realize (read-only after it, as in QEMU), or a state field at any
    time, checked against its declared type (bytes as a hex string); then the object
    and the machine recompute what follows from state, as after a load. Never a
    derived field."""
    obj = find_object(machine, path)
    if name in PSEUDO:
        raise QomError(f"Property '{name}' is read-only")
    if any(b.attr == name for b in links_of(type(obj))):
        raise QomError(f"Property '{name}' is a host binding: the command line (or "
                       "change, for a CD) binds it")
    f = _field(obj, name)
    if f.kind == "derived":
        raise QomError(f"Property '{name}' is derived from state by {obj.path}'s rebuild "
                       "and cannot be set")
    if f.kind == "prop" and obj.realized:
        raise QomError(f"Attempt to set property '{name}' on '{obj.path}' after it was "
                       "realized")
    try:
        if f.type.name == "bytes" and isinstance(value, str):
            value = _hex(value)
        value = f.type.check(value)
    except ValueError as e:
        raise QomError(f"Property '{name}': {e}") from None
    if f.kind == "prop":
        obj.set_prop(name, value)
        return
    obj.sync_state()
    f.assign(obj, value)
    obj.rebuild()
    # As after a load: outputs no rebuild may drive (the CPU's INTR) and code the engine
    # translated from the old state are brought up to date.
    after_load = getattr(machine, "after_load", None)
    if after_load is not None:
        after_load()


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex("" if text == '""' else text)
    except ValueError:
        raise ValueError(f"expected hex bytes, not '{text}'") from None


# -- the human monitor ---------------------------------------------------------------------

def _human(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except QomError as e:
        raise CommandError(f"Error: {e}") from None


@command("qom-list", "path", "list the children and properties of the object at path",
         max_args=1, min_args=1)
def _qom_list(machine: Machine, args: list[str]) -> str:
    return "\n".join(f"{p['name']} ({p['type']})"
                     for p in _human(lambda: qom_list(machine, args[0])))


@command("qom-get", "path property", "print a property of the object at path",
         max_args=2, min_args=2)
def _qom_get(machine: Machine, args: list[str]) -> str:
    return json.dumps(_human(lambda: qom_get(machine, *args)))


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
        return _hex(text)
    if ftype.name == "array":
        return [_int(t) for t in text.strip("[]").split(",") if t]
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

    def typed_set() -> None:
        obj = find_object(machine, path)
        untyped = name in PSEUDO or any(b.attr == name for b in links_of(type(obj)))
        ftype = None if untyped else _field(obj, name).type  # qom_set refuses the untyped
        try:
            value = text if ftype is None else parse_value(ftype, text)
        except ValueError as e:
            raise QomError(f"Property '{name}': {e}") from None
        qom_set(machine, path, name, value)

    _human(typed_set)
    return ""


# -- machine-export -----------------------------------------------------------------------

def machine_description(machine: Machine) -> dict[str, Any]:
    """What a migration stream carries to build this machine: every object with its
    type, path and props, and the configuration it was built from."""
    from emu.migration.stream import describe_machine

    desc = describe_machine(machine)
    stream_config = getattr(machine, "stream_config", None)
    if stream_config is not None:
        desc["config"] = stream_config()
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


def export_machine(machine: Machine, file: str) -> None:
    """Write the machine description as JSON to ``file`` (whole, or not at all)."""
    path = Path(file)
    if path.is_dir():
        raise QomError(f"could not write '{file}': Is a directory")
    text = json.dumps(machine_description(machine), indent=2, sort_keys=True) + "\n"
    try:
        write_atomically(path, text)
    except OSError as e:
        raise QomError(f"could not write '{file}': {e.strerror or e}") from None


@command("machine-export", "file", "write the machine description as JSON to file",
         max_args=1, min_args=1)
def _machine_export(machine: Machine, args: list[str]) -> str:
    _human(lambda: export_machine(machine, args[0]))
    return ""
