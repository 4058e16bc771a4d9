"""The vocabulary of compat filters: steps that turn one STATE_VERSION's tree into the next.

A tree here is one section's state as a dict keyed by wire name (DESIGN.md, "Visitors,
formats, compat"). Each step is data — rename, retype, add with a default, drop — or a
named function for what data cannot say. An ``Upgrade`` pairs the steps with the wire
layout the older version had, so that a binary section of that version decodes without
the code that wrote it.

The same declaration runs backwards, for a destination of an earlier release: each
step has an ``undo`` (a rename renames back, a retype converts to the old layout's type
and checks its range, an added field goes away -- if it holds what the older version
meant without it --, a dropped field comes back with its declared ``back`` value, a
function with its declared inverse). A step with no way back (a Drop without ``back``,
a Call without ``undo``) makes the version change one-way; ``pyemu-state schema
--compare`` names it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emu.qom.fields import Field, FieldType
from emu.qom.visitor import DecodeError


class CompatError(DecodeError):
    """A tree the filters cannot upgrade (or revert); the message names the type,
    versions and step."""


class _OneWay(Exception):
    """A step declared with no way back."""


def _take(tree: dict[str, Any], name: str) -> Any:
    if name not in tree:
        raise KeyError(name)
    return tree.pop(name)


@dataclass(frozen=True)
class Rename:
    """The wire name changed; the meaning did not."""

    old: str
    new: str

    def apply(self, tree: dict[str, Any]) -> None:
        tree[self.new] = _take(tree, self.old)

    def undo(self, tree: dict[str, Any], old: dict[str, FieldType]) -> None:
        tree[self.old] = _take(tree, self.new)


@dataclass(frozen=True)
class Retype:
    """The type changed (width, sign, bool and integer, bytes and an array of u8); the
    value converts here and the new declaration checks its range afterwards."""

    name: str
    to: str  # a FieldType spec: "u32", "bool", "bytes[16]", "u8[16]"

    def apply(self, tree: dict[str, Any]) -> None:
        tree[self.name] = convert(_take(tree, self.name), FieldType.parse(self.to))

    def undo(self, tree: dict[str, Any], old: dict[str, FieldType]) -> None:
        t = old[self.name]
        tree[self.name] = t.check(convert(_take(tree, self.name), t))


@dataclass(frozen=True)
class Add:
    """A new field; ``value`` is what streams without it meant."""

    name: str
    value: Any

    def apply(self, tree: dict[str, Any]) -> None:
        tree[self.name] = self.value

    def undo(self, tree: dict[str, Any], old: dict[str, FieldType]) -> None:
        value = _take(tree, self.name)
        if value != self.value:  # the older version would take it for self.value
            raise ValueError(f"{self.name} is {value!r}, which the older version cannot "
                             f"express (it means {self.value!r})")


@dataclass(frozen=True)
class Drop:
    """A field that no longer exists (its meaning is gone or derived now)."""

    name: str
    back: Any = None  # what the older version reads in its place; None: no way back

    def apply(self, tree: dict[str, Any]) -> None:
        _take(tree, self.name)

    def undo(self, tree: dict[str, Any], old: dict[str, FieldType]) -> None:
        if self.back is None:
            raise _OneWay(f"{self.name} was dropped with no value to give it back")
        tree[self.name] = self.back


@dataclass(frozen=True)
class Call:
    """A named function editing the tree in place, for changes data cannot describe."""

    fn: Callable[[dict[str, Any]], None]
    back: Callable[[dict[str, Any]], None] | None = None  # the inverse; None: one-way

    def apply(self, tree: dict[str, Any]) -> None:
        self.fn(tree)

    def undo(self, tree: dict[str, Any], old: dict[str, FieldType]) -> None:
        if self.back is None:
            raise _OneWay(f"{self.fn.__name__} has no inverse")
        self.back(tree)

    def __str__(self) -> str:
        return f"Call({self.fn.__name__})"


Step = Rename | Retype | Add | Drop | Call


def convert(value: Any, to: FieldType) -> Any:
    """``value`` in the Python form of type ``to``; ValueError if it has no such form."""
    if to.name == "bool":
        if isinstance(value, (bool, int)):
            return bool(value)
    elif to.bits:
        if isinstance(value, (bool, int)):
            return int(value)
    elif to.name == "bytes":
        if isinstance(value, (bytes, list)):
            return bytes(value)
    elif to.name == "array":
        if isinstance(value, (bytes, list)):
            return list(value)
    elif to.name == "str" and isinstance(value, str):
        return value
    raise ValueError(f"{type(value).__name__} {value!r} does not convert to {to.spec}")


@dataclass(frozen=True)
class Upgrade:
    """From ``from_version`` of ``type_name`` to the next version."""

    type_name: str
    from_version: int
    layout: str  # the wire layout of from_version, in order: "name:spec ?opt:spec ..."
    steps: tuple[Step, ...]

    def fields(self) -> list[Field]:
        """The old layout as fields a visitor can decode ("?name:spec": optional)."""
        out = []
        for item in self.layout.split():
            name, _, spec = item.partition(":")
            out.append(Field("state", FieldType.parse(spec), doc="", wire=name.lstrip("?"),
                             optional=name.startswith("?")))
        return out

    def apply(self, tree: dict[str, Any]) -> None:
        for step in self.steps:
            try:
                step.apply(tree)
            except KeyError as e:
                raise CompatError(f"{self}: {step}: no field {e}") from None
            except (ValueError, TypeError) as e:
                raise CompatError(f"{self}: {step}: {e}") from None

    def revert(self, tree: dict[str, Any]) -> None:
        """A tree of ``from_version + 1`` back to ``from_version`` (the steps undone in
        reverse order); CompatError names the step with no way back or the value the
        older version cannot hold."""
        old = {f.wire: f.type for f in self.fields()}
        for step in reversed(self.steps):
            try:
                step.undo(tree, old)
            except _OneWay as e:
                raise CompatError(f"{self.type_name} v{self.from_version + 1} -> "
                                  f"v{self.from_version}: one-way: {e}") from None
            except KeyError as e:
                raise CompatError(f"{self.type_name} v{self.from_version + 1} -> "
                                  f"v{self.from_version}: {step}: no field {e}") from None
            except (ValueError, TypeError) as e:
                raise CompatError(f"{self.type_name} v{self.from_version + 1} -> "
                                  f"v{self.from_version}: {e}") from None

    @property
    def one_way(self) -> str:
        """Why this change cannot be undone, or "" if it can (for any value)."""
        for step in self.steps:
            if isinstance(step, Drop) and step.back is None:
                return f"{step.name} is dropped with no value to give it back"
            if isinstance(step, Call) and step.back is None:
                return f"{step.fn.__name__} has no inverse"
        return ""

    def __str__(self) -> str:
        return f"{self.type_name} v{self.from_version} -> v{self.from_version + 1}"
