"""The object tree: every board, chip and CPU is an ``Object`` with a path.

DESIGN.md, "The object model". An object is configured through its ``prop`` fields
before ``realize()``; ``reset()`` puts every ``state`` field back to its declared reset
value and then calls ``rebuild()`` to recompute the ``derived`` ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from emu.qom.fields import Field, fields_of

if TYPE_CHECKING:
    from emu.qom.visitor import Visitor

TYPES: dict[str, type[Object]] = {}


def implied_objects(root: str = "machine") -> dict[str, type]:
    """The types every machine has (``IMPLIED``), by their path under ``root``."""
    return {f"/{root}/{cls.IMPLIED}": cls for cls in TYPES.values() if cls.IMPLIED}


def register_type(name: str):
    """Class decorator: make ``cls`` creatable by its type name."""

    def deco(cls: type[Object]) -> type[Object]:
        if name in TYPES:
            raise ValueError(f"type {name!r} registered twice")
        cls.TYPE_NAME = name
        TYPES[name] = cls
        return cls

    return deco


class Object:
    """A node of the machine tree, with declared prop/state/derived fields."""

    TYPE_NAME = "object"
    STATE_VERSION = 1
    # The name of an object every machine has under its root whatever its options (the
    # CPU, the clock): the machine description does not list it, so it says the same to
    # every release, and a reader adds it back (``implied_objects``). "" for the rest.
    IMPLIED = ""

    def __init__(self, name: str, parent: Object | None = None, **props: Any) -> None:
        self.name = name
        self.parent = parent
        self.children: dict[str, Object] = {}
        self.realized = False
        for f in fields_of(type(self)):
            f.assign(self, f.fresh())
        for key, value in props.items():
            self.set_prop(key, value)
        if parent is not None:
            parent.add_child(self)

    # -- tree ---------------------------------------------------------------
    def add_child(self, child: Object) -> None:
        if child.name in self.children:
            raise ValueError(f"{self.path}: a child named {child.name!r} exists already")
        self.children[child.name] = child
        child.parent = self

    @property
    def path(self) -> str:
        if self.parent is None:
            return "/" + self.name
        return f"{self.parent.path}/{self.name}"

    def walk(self) -> Iterator[Object]:
        """This object and all its descendants, parents before children."""
        yield self
        for child in self.children.values():
            yield from child.walk()

    def resolve(self, path: str) -> Object:
        """Find a descendant by absolute or relative path; KeyError names what is missing."""
        node: Object = self
        parts = [p for p in path.split("/") if p]
        if path.startswith("/"):
            if not parts or parts[0] != self.name:
                raise KeyError(f"no object at {path}")
            parts = parts[1:]
        for part in parts:
            if part not in node.children:
                raise KeyError(f"no object at {path}")
            node = node.children[part]
        return node

    # -- fields -------------------------------------------------------------
    @classmethod
    def field(cls, name: str) -> Field:
        for f in fields_of(cls):
            if f.attr == name or f.wire == name:
                return f
        raise KeyError(f"{cls.TYPE_NAME} has no property {name!r}")

    def set_prop(self, name: str, value: Any) -> None:
        f = self.field(name)
        if f.kind != "prop":
            raise ValueError(f"{self.path}: {name!r} is {f.kind}, not a property")
        if self.realized:
            raise ValueError(f"{self.path}: property {name!r} is read-only after realize")
        try:
            f.assign(self, f.type.check(value))
        except ValueError as e:
            raise ValueError(f"{self.path}: property {name!r}: {e}") from None

    def props(self) -> dict[str, Any]:
        return {f.wire: f.__get__(self) for f in fields_of(type(self), "prop")}

    # -- saved state (DESIGN.md, "Declaration and visitors") ----------------
    # Declared state fields drive all three; a type whose state no table expresses
    # (the CPU's registers) overrides them with an imperative visit, and everything
    # that saves, loads, shows or compares state goes through these alone.
    @classmethod
    def has_state(cls) -> bool:
        """Whether objects of this type are saved (a section in every stream)."""
        return bool(fields_of(cls, "state"))

    @classmethod
    def visit_values(cls, v: Visitor, values: dict[str, Any] | None = None) -> dict[str, Any]:
        """This type's state through ``v``: ``values`` (from ``state_values``) when
        saving, decoded when loading (``values`` None); returns the values visited."""
        from emu.qom.stateio import visit_state

        return visit_state(v, cls, values)

    def state_values(self) -> dict[str, Any]:
        """The state as it is now, for ``visit_values`` to save."""
        self.sync_state()
        return {f.attr: f.__get__(self) for f in fields_of(type(self), "state")}

    def install_state(self, values: dict[str, Any]) -> None:
        """Take decoded values (all checked already) and recompute what derives from
        them."""
        for attr, value in values.items():
            setattr(self, attr, value)
        self.rebuild()

    # -- life cycle ---------------------------------------------------------
    def realize(self) -> None:
        """Bind to buses and host resources; props are frozen from here on."""
        self.realized = True

    def reset(self) -> None:
        """Return state fields to their declared reset values and rebuild derived ones."""
        self.reset_state()
        self.rebuild()

    def reset_state(self) -> None:
        """State fields to their reset values; a reset value the table cannot express
        (computed from props) is set by an override."""
        for f in fields_of(type(self), "state"):
            f.assign(self, f.fresh())

    def rebuild(self) -> None:
        """Recompute derived fields from state; must not touch other objects."""

    def sync_state(self) -> None:
        """Bring state fields up to date with what lives elsewhere for speed (a PIO
        window the CPU serves); called before state is read for saving."""

    def unrealize(self) -> None:
        """Release host resources (files, sockets, threads)."""
