"""Object state through visitors: the field tables of emu/qom walked in one place.

``save_state(obj, v)`` visits every ``state`` field of ``obj`` under its wire name;
``load_state(obj, v)`` decodes them all first and assigns them only if every one
decoded, then calls ``rebuild()``: a failed load leaves the object as it was. Objects
whose state no table can express implement ``visit(v)`` themselves (the CPU).
"""

from __future__ import annotations

from typing import Any

from emu.migration.visitor import DecodeError, Visitor
from emu.qom import Object, fields_of
from emu.qom.fields import Field


def visit_field(v: Visitor, f: Field, value: Any) -> Any:
    """One declared field through ``v``; returns the value visited (decoded on load)."""
    t, name = f.type, f.wire or f.attr
    if t.name == "bool":
        return v.boolean(name, value)
    if t.bits:
        return (v.sint if t.signed else v.uint)(name, value, t.bits)
    if t.name == "bytes":
        return v.blob(name, value, t.max_len)
    if t.name == "str":
        return v.text(name, value, t.max_len)
    assert t.name == "array" and t.elem is not None
    got = v.uints(name, value, t.elem.bits, t.elem.signed, t.max_len)
    if not v.saving and len(got) != t.max_len:
        raise v.fail(name, f"{len(got)} elements where the array has {t.max_len}")
    return got


def visit_fields(v: Visitor, obj: Object) -> dict[str, Any]:
    """Every state field of ``obj`` (attribute -> value as visited), without assigning."""
    obj.sync_state()
    return {f.attr: visit_field(v, f, f.__get__(obj)) for f in fields_of(type(obj), "state")}


def save_state(obj: Object, v: Visitor) -> None:
    """Visit the state of ``obj`` into a saving visitor."""
    v.begin_struct(obj.name)
    visit_fields(v, obj)
    v.end_struct()


def load_state(obj: Object, v: Visitor) -> None:
    """Decode the state of ``obj``; assign it only when all of it decoded, then rebuild."""
    if v.saving:
        raise ValueError("load_state needs a loading visitor")
    v.begin_struct(obj.name)
    values = visit_fields(v, obj)
    v.end_struct()
    apply_state(obj, values)


def apply_state(obj: Object, values: dict[str, Any]) -> None:
    """Assign decoded state and recompute derived fields."""
    for attr, value in values.items():
        setattr(obj, attr, value)
    obj.rebuild()


__all__ = ["DecodeError", "apply_state", "load_state", "save_state", "visit_field",
           "visit_fields"]
