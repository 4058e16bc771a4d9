"""Object state through visitors: the field tables of emu/qom walked in one place.

``visit_state(v, cls, values)`` visits every ``state`` field of type ``cls`` under its
wire name and returns the values (``values`` when saving, decoded when ``v`` loads);
``visit_fields(v, obj)`` does it for a live object without assigning anything; a loader
decodes everything first and only then calls each object's ``install_state``, which
assigns and calls ``rebuild()``: a failed load leaves every object as it was. These
are the defaults of Object's ``visit_values`` / ``state_values`` / ``install_state``;
the CPU, whose state no table expresses, overrides them (emu/cpu/state.py).
"""

from __future__ import annotations

from typing import Any

from emu.qom import Object, fields_of
from emu.qom.fields import Field, FieldType
from emu.qom.visitor import DecodeError, Visitor


def visit_field(v: Visitor, f: Field, value: Any) -> Any:
    """One declared field through ``v``; returns the value visited (decoded on load). An
    optional field is sent only when it differs from its reset value."""
    name = f.wire or f.attr
    if f.optional and not v.present(name, v.saving and value != f.reset_value):
        return f.fresh()
    return _visit_value(v, name, f.type, value)


def _visit_value(v: Visitor, name: str, t: FieldType, value: Any) -> Any:
    if t.name == "bool":
        return v.boolean(name, value)
    if t.bits:
        got = (v.sint if t.signed else v.uint)(name, value, t.bits)
        if not v.saving:
            try:
                t.check_limit(got)
            except ValueError as e:
                raise v.fail(name, str(e)) from None
        return got
    if t.name == "bytes":
        return v.blob(name, value, t.max_len)
    if t.name == "str":
        return v.text(name, value, t.max_len)
    if t.name == "struct":
        v.begin_struct(name)
        got = {m.wire: visit_field(v, m, value[m.wire] if v.saving else None)
               for m in t.members}
        v.end_struct()
        return got
    assert t.name == "array" and t.elem is not None
    got = v.uints(name, value, t.elem.bits, t.elem.signed, t.max_len)
    if not v.saving and not t.bounded and len(got) != t.max_len:
        raise v.fail(name, f"{len(got)} elements where the array has {t.max_len}")
    return got


def visit_state(v: Visitor, cls: type, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every state field of type ``cls`` (attribute -> value as visited); ``values`` is
    read when saving and may be None when loading."""
    return {f.attr: visit_field(v, f, values[f.attr] if values is not None else f.fresh())
            for f in fields_of(cls, "state")}


def visit_fields(v: Visitor, obj: Object) -> dict[str, Any]:
    """The state of ``obj`` through saving visitor ``v`` (attribute -> value), without
    assigning: its type's ``visit_values`` of its ``state_values``."""
    return type(obj).visit_values(v, obj.state_values())


__all__ = ["DecodeError", "visit_field", "visit_fields", "visit_state"]
