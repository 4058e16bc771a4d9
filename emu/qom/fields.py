"""Field descriptors: the one declaration of every device's configuration and state.

DESIGN.md, "The object model": each field is declared once, in one of three kinds —
``prop`` (configuration, fixed at realize), ``state`` (guest-visible, saved and
migrated) and ``derived`` (recomputed by ``rebuild()`` after reset and load). The same
table gives reset values, the wire names and the help text.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

KINDS = ("prop", "state", "derived")


@dataclass(frozen=True)
class FieldType:
    """A wire type: its name, and how a value is checked and copied."""

    name: str
    bits: int = 0  # width for integers; 0 for non-integers
    signed: bool = False
    max_len: int = 0  # for bytes and arrays
    elem: FieldType | None = None  # for arrays
    bounded: bool = False  # an array of up to max_len elements (else exactly max_len)
    members: tuple[Field, ...] = ()  # for structs: the member fields, by wire name
    # for integers: the largest value allowed, where it is below the width's (virtual
    # time's horizon in a 64-bit field), with what lies past it named in messages
    limit: int | None = None
    past: str = ""

    def check_limit(self, value: int) -> None:
        """ValueError if ``value`` is past this integer type's declared limit."""
        if self.limit is not None and value > self.limit:
            raise ValueError(f"{value} is past {self.past or 'the limit'} ({self.limit})")

    def check(self, value: Any) -> Any:
        """Return ``value`` coerced to this type, or raise ValueError naming the fault."""
        if self.name == "bool":
            if not isinstance(value, (bool, int)):
                raise ValueError(f"expected bool, got {type(value).__name__}")
            return bool(value)
        if self.bits:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"expected {self.name}, got {type(value).__name__}")
            lo = -(1 << (self.bits - 1)) if self.signed else 0
            hi = (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1
            if not lo <= value <= hi:
                raise ValueError(f"{value} out of range for {self.name}")
            self.check_limit(value)
            return value
        if self.name == "bytes":
            if not isinstance(value, (bytes, bytearray)):
                raise ValueError(f"expected bytes, got {type(value).__name__}")
            if len(value) > self.max_len:
                raise ValueError(f"{len(value)} bytes exceeds the cap of {self.max_len}")
            return bytes(value)
        if self.name == "str":
            if not isinstance(value, str):
                raise ValueError(f"expected str, got {type(value).__name__}")
            if len(value) > self.max_len:
                raise ValueError(f"string of {len(value)} exceeds the cap of {self.max_len}")
            return value
        if self.name == "array":
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"expected a list, got {type(value).__name__}")
            if len(value) > self.max_len or (not self.bounded and len(value) != self.max_len):
                raise ValueError(f"{len(value)} elements where the array takes "
                                 f"{'up to ' if self.bounded else ''}{self.max_len}")
            assert self.elem is not None
            return [self.elem.check(v) for v in value]
        if self.name == "struct":
            if not isinstance(value, dict) or set(value) != {m.wire for m in self.members}:
                raise ValueError(f"expected a mapping of {[m.wire for m in self.members]}")
            return {m.wire: m.type.check(value[m.wire]) for m in self.members}
        raise ValueError(f"unknown field type {self.name}")

    @property
    def spec(self) -> str:
        """The short notation of schema dumps and compat layouts: ``u8``, ``bool``,
        ``bytes[16]``, ``str[64]``, ``u16[3]`` (an array)."""
        if self.elem is not None:
            return f"{self.elem.spec}[{'..' if self.bounded else ''}{self.max_len}]"
        if self.name == "struct":
            return "{" + " ".join(f"{m.wire}:{m.type.spec}" for m in self.members) + "}"
        return f"{self.name}[{self.max_len}]" if self.name in ("bytes", "str") else self.name

    @staticmethod
    def parse(spec: str) -> FieldType:
        """The inverse of ``spec``; ValueError names a spec it cannot read."""
        base, bracket, rest = spec.partition("[")
        if not bracket:
            if base not in SCALARS:
                raise ValueError(f"unknown field type {spec!r}")
            return SCALARS[base]
        bounded = rest.startswith("..")
        digits = rest[2:-1] if bounded else rest[:-1]
        if not rest.endswith("]") or not digits.isdigit() or int(digits) == 0:
            raise ValueError(f"bad length in field type {spec!r}")
        n = int(digits)
        if base in ("bytes", "str") and not bounded:
            return FieldType(base, max_len=n)
        if base not in SCALARS or base == "bool":
            raise ValueError(f"unknown element type in {spec!r}")
        return FieldType("array", max_len=n, elem=SCALARS[base], bounded=bounded)


def _int(name: str, bits: int, signed: bool = False) -> FieldType:
    return FieldType(name, bits=bits, signed=signed)


U8, U16, U32, U64 = _int("u8", 8), _int("u16", 16), _int("u32", 32), _int("u64", 64)
I8, I16, I32, I64 = (_int(f"i{b}", b, True) for b in (8, 16, 32, 64))
BOOL = FieldType("bool")
SCALARS = {t.name: t for t in (U8, U16, U32, U64, I8, I16, I32, I64, BOOL)}


class Field:
    """A declared field. Its value lives in the instance's ``__dict__`` under the
    field's own name; the descriptor has no ``__set__``, so reading and writing a field
    is a plain attribute access (devices touch theirs on every port access)."""

    def __init__(self, kind: str, ftype: FieldType, *, reset: Any = None,
                 doc: str, wire: str | None = None, optional: bool = False) -> None:
        assert kind in KINDS
        self.kind, self.type, self.doc = kind, ftype, doc
        self.reset_value = ftype.check(reset) if reset is not None else _zero(ftype)
        self.wire = wire  # declared wire name; defaults to the attribute name
        self.attr = ""
        # sent only when it differs from its reset value (as QEMU's subsections are
        # sent only when needed): a big buffer that is usually empty costs one byte
        self.optional = optional

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name
        self.wire = self.wire or name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj.__dict__[self.attr]  # not set yet: KeyError

    def assign(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.attr] = value

    def fresh(self) -> Any:
        """The reset value, copied so that instances never share a list or a mapping
        (an int, bool, str or bytes is shared as it is: no copy to make per build)."""
        value = self.reset_value
        return copy.deepcopy(value) if isinstance(value, list | dict) else value


def _zero(ftype: FieldType) -> Any:
    if ftype.name == "bool":
        return False
    if ftype.bits:
        return 0
    if ftype.name == "bytes":
        return b""
    if ftype.name == "str":
        return ""
    if ftype.name == "array":
        return [] if ftype.bounded else [_zero(ftype.elem)] * ftype.max_len
    if ftype.name == "struct":
        return {m.wire: m.fresh() for m in ftype.members}
    raise ValueError(ftype.name)


class _Kind:
    """``prop.u8(...)``, ``state.bytes(max_len=16, ...)``: the declaration vocabulary."""

    def __init__(self, kind: str) -> None:
        self._kind = kind

    def _make(self, ftype: FieldType) -> Callable[..., Field]:
        def make(*, limit: int | None = None, past: str = "", **kw: Any) -> Field:
            """``limit``: the largest value allowed (``past`` names what lies beyond)."""
            t = ftype if limit is None else replace(ftype, limit=limit, past=past)
            return Field(self._kind, t, **kw)
        return make

    def __getattr__(self, tname: str) -> Callable[..., Field]:
        if tname not in SCALARS:
            raise AttributeError(tname)
        return self._make(SCALARS[tname])

    def bytes(self, *, max_len: int, **kw: Any) -> Field:
        return Field(self._kind, FieldType("bytes", max_len=max_len), **kw)

    def str(self, *, max_len: int = 4096, **kw: Any) -> Field:
        return Field(self._kind, FieldType("str", max_len=max_len), **kw)

    def array(self, elem: str, *, length: int = 0, max_len: int = 0, **kw: Any) -> Field:
        """An array of integers: ``length`` of them exactly (reset: zeros), or up to
        ``max_len`` (reset: empty)."""
        assert bool(length) != bool(max_len), "an array has a length or a max_len"
        et = getattr(self, elem)(doc="").type
        ft = FieldType("array", max_len=length or max_len, elem=et, bounded=bool(max_len))
        return Field(self._kind, ft, **kw)

    def struct(self, members: type, **kw: Any) -> Field:
        """A nested struct whose members are the fields declared on class ``members``;
        its value is a mapping by the members' wire names."""
        fields = tuple(fields_of(members))
        assert fields and all(f.kind == self._kind for f in fields)
        return Field(self._kind, FieldType("struct", members=fields), **kw)


prop = _Kind("prop")
state = _Kind("state")
derived = _Kind("derived")


class link:  # noqa: N801  (a declaration, written like prop.u8 and state.bytes)
    """A host binding declared on a type, as QEMU's ``link<>`` properties: the host
    resource the board gives an object from outside (a chardev, an image, the CPU
    engine). Never state: not saved, not reset, not in the schema; ``qom-list`` shows it
    as ``link<KIND>`` and ``qom-get`` names what it is bound to. None until bound."""

    def __init__(self, kind: str, *, doc: str) -> None:
        self.kind, self.doc = kind, doc
        self.attr = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj.__dict__.get(self.attr)

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.attr] = value


@cache
def links_of(cls: type) -> tuple[link, ...]:
    """The host bindings ``cls`` declares (base classes first)."""
    seen: dict[str, link] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, link):
                seen[name] = value
    return tuple(seen.values())


def fields_of(cls: type, kind: str | None = None) -> list[Field]:
    """Declared fields of ``cls`` (base classes first), optionally of one kind."""
    return list(_declared(cls, kind))


@cache
def _declared(cls: type, kind: str | None) -> tuple[Field, ...]:
    # Fields are declared in class bodies, so a class's list never changes: found once
    # (every save and load of every object asks, the switchover's capture included).
    seen: dict[str, Field] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, Field):
                seen[name] = value
    return tuple(f for f in seen.values() if kind is None or f.kind == kind)
