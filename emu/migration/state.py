"""Object state through visitors: the field tables of emu/qom walked in one place.

``visit_state(v, cls, values)`` visits every ``state`` field of type ``cls`` under its
wire name and returns the values (``values`` when saving, decoded when ``v`` loads);
``visit_fields(v, obj)`` does it for a live object without assigning anything; a loader
decodes everything first and only then calls ``apply_state``, which assigns and calls
``rebuild()``: a failed load leaves every object as it was. The CPU, whose state no
table expresses, has its own visit in emu/cpu/state.py.
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
        return (v.sint if t.signed else v.uint)(name, value, t.bits)
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
    """Every state field of ``obj`` (attribute -> value as visited), without assigning."""
    obj.sync_state()
    return visit_state(v, type(obj), {f.attr: f.__get__(obj) for f in fields_of(type(obj),
                                                                              "state")})


def apply_state(obj: Object, values: dict[str, Any]) -> None:
    """Assign decoded state and recompute derived fields."""
    for attr, value in values.items():
        setattr(obj, attr, value)
    obj.rebuild()


__all__ = ["DecodeError", "apply_state", "visit_field", "visit_fields", "visit_state"]
