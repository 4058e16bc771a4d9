"""Visitors: one walk over an object's state, many encodings (DESIGN.md, "Visitors").

A visit calls ``v.uint("ier", self.ier, 8)`` and friends for each field and takes back
the value the visitor returns: when saving it is the value given; when loading it is the
value decoded. The same code path therefore saves and loads, and every encoding (the
in-memory tree, a compact binary form, JSON) is just another ``Visitor``.

Decoders treat their input as hostile: every length is capped by the declaration, every
integer checked against its width, and any fault is a ``DecodeError`` naming the field
path, never another exception.
"""

from __future__ import annotations

import json
import struct
from abc import ABC, abstractmethod
from typing import Any


class DecodeError(ValueError):
    """Input that does not decode; the message names the field path at fault."""


class Visitor(ABC):
    """The interface. ``saving`` tells which way values flow."""

    saving = True

    def __init__(self) -> None:
        self._path: list[str] = []

    @property
    def path(self) -> str:
        return "/".join(self._path) or "/"

    def fail(self, name: str, why: str) -> DecodeError:
        return DecodeError(f"{'/'.join([*self._path, name])}: {why}")

    # structure
    def begin_struct(self, name: str) -> None:
        self._path.append(name)

    def end_struct(self) -> None:
        self._path.pop()

    def present(self, name: str, present: bool) -> bool:
        """Whether the optional member ``name`` follows: ``present`` when saving (the
        tree and JSON simply leave it out), what the input says when loading."""
        return present

    # values: each returns the value to use (given when saving, decoded when loading)
    @abstractmethod
    def uint(self, name: str, value: int, bits: int) -> int:
        """One value; see the module docstring."""

    @abstractmethod
    def sint(self, name: str, value: int, bits: int) -> int:
        """One value; see the module docstring."""

    @abstractmethod
    def boolean(self, name: str, value: bool) -> bool:
        """One value; see the module docstring."""

    @abstractmethod
    def blob(self, name: str, value: bytes, max_len: int) -> bytes:
        """One value; see the module docstring."""

    @abstractmethod
    def text(self, name: str, value: str, max_len: int) -> str:
        """One value; see the module docstring."""

    @abstractmethod
    def uints(self, name: str, values: list[int], bits: int, signed: bool,
              max_len: int) -> list[int]:
        """A list of integers of one width, at most ``max_len`` long."""


def _check_int(v: Visitor, name: str, value: Any, bits: int, signed: bool) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise v.fail(name, f"expected an integer, got {type(value).__name__}")
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= value <= hi:
        raise v.fail(name, f"{value} does not fit {'i' if signed else 'u'}{bits}")
    return value


# -- the tree: plain dicts, lists, ints, bools, bytes, str ------------------------------

class TreeWriter(Visitor):
    """Saving into nested dicts: the pivot for inspection, editing, compat and JSON."""

    def __init__(self) -> None:
        super().__init__()
        self.root: dict[str, Any] = {}
        self._stack = [self.root]

    def _put(self, name: str, value: Any) -> Any:
        self._stack[-1][name] = value
        return value

    def begin_struct(self, name: str) -> None:
        super().begin_struct(name)
        node: dict[str, Any] = {}
        self._stack[-1][name] = node
        self._stack.append(node)

    def end_struct(self) -> None:
        super().end_struct()
        self._stack.pop()

    def uint(self, name, value, bits):
        return self._put(name, value)

    def sint(self, name, value, bits):
        return self._put(name, value)

    def boolean(self, name, value):
        return self._put(name, bool(value))

    def blob(self, name, value, max_len):
        return self._put(name, bytes(value))

    def text(self, name, value, max_len):
        return self._put(name, value)

    def uints(self, name, values, bits, signed, max_len):
        return self._put(name, list(values))


class TreeReader(Visitor):
    """Loading from nested dicts, checking every value against its declaration."""

    saving = False

    def __init__(self, root: dict[str, Any]) -> None:
        super().__init__()
        if not isinstance(root, dict):
            raise DecodeError("/: expected a mapping")
        self._stack = [root]

    def _get(self, name: str) -> Any:
        node = self._stack[-1]
        if name not in node:
            raise self.fail(name, "missing")
        return node[name]

    def begin_struct(self, name: str) -> None:
        node = self._get(name)
        if not isinstance(node, dict):
            raise self.fail(name, "expected a mapping")
        super().begin_struct(name)
        self._stack.append(node)

    def end_struct(self) -> None:
        super().end_struct()
        self._stack.pop()

    def present(self, name, present):
        return name in self._stack[-1]

    def uint(self, name, value, bits):
        return _check_int(self, name, self._get(name), bits, False)

    def sint(self, name, value, bits):
        return _check_int(self, name, self._get(name), bits, True)

    def boolean(self, name, value):
        got = self._get(name)
        if not isinstance(got, bool):
            raise self.fail(name, f"expected a boolean, got {type(got).__name__}")
        return got

    def blob(self, name, value, max_len):
        got = self._get(name)
        if not isinstance(got, (bytes, bytearray)):
            raise self.fail(name, f"expected bytes, got {type(got).__name__}")
        if len(got) > max_len:
            raise self.fail(name, f"{len(got)} bytes exceed the cap of {max_len}")
        return bytes(got)

    def text(self, name, value, max_len):
        got = self._get(name)
        if not isinstance(got, str):
            raise self.fail(name, f"expected a string, got {type(got).__name__}")
        if len(got) > max_len:
            raise self.fail(name, f"{len(got)} characters exceed the cap of {max_len}")
        return got

    def uints(self, name, values, bits, signed, max_len):
        got = self._get(name)
        if not isinstance(got, list):
            raise self.fail(name, f"expected a list, got {type(got).__name__}")
        if len(got) > max_len:
            raise self.fail(name, f"{len(got)} elements exceed the cap of {max_len}")
        return [_check_int(self, f"{name}[{i}]", x, bits, signed) for i, x in enumerate(got)]


# -- compact binary: values in declaration order, little-endian, no names --------------

_LEN = struct.Struct("<I")


class BinaryWriter(Visitor):
    """Saving to bytes: fixed-width integers, u32 lengths before blobs and lists."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()

    def present(self, name, present):
        self.out.append(1 if present else 0)
        return present

    def uint(self, name, value, bits):
        self.out += value.to_bytes(bits // 8, "little")
        return value

    def sint(self, name, value, bits):
        self.out += value.to_bytes(bits // 8, "little", signed=True)
        return value

    def boolean(self, name, value):
        self.out.append(1 if value else 0)
        return value

    def blob(self, name, value, max_len):
        self.out += _LEN.pack(len(value)) + value
        return value

    def text(self, name, value, max_len):
        self.blob(name, value.encode(), 4 * max_len)
        return value

    def uints(self, name, values, bits, signed, max_len):
        self.out += _LEN.pack(len(values))
        for x in values:
            self.out += x.to_bytes(bits // 8, "little", signed=signed)
        return values


class BinaryReader(Visitor):
    """Loading from bytes written by ``BinaryWriter``; ``finish()`` rejects trailing data."""

    saving = False

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = memoryview(data)
        self.pos = 0

    def _take(self, name: str, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail(name, f"truncated: {n} bytes needed, {len(self.data) - self.pos} left")
        chunk = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return chunk

    def _length(self, name: str, cap: int) -> int:
        (n,) = _LEN.unpack(self._take(name, 4))
        if n > cap:
            raise self.fail(name, f"length {n} exceeds the cap of {cap}")
        return n

    def present(self, name, present):
        return self.boolean(name, False)

    def uint(self, name, value, bits):
        return int.from_bytes(self._take(name, bits // 8), "little")

    def sint(self, name, value, bits):
        return int.from_bytes(self._take(name, bits // 8), "little", signed=True)

    def boolean(self, name, value):
        b = self._take(name, 1)[0]
        if b > 1:
            raise self.fail(name, f"boolean byte {b}")
        return bool(b)

    def blob(self, name, value, max_len):
        return self._take(name, self._length(name, max_len))

    def text(self, name, value, max_len):
        raw = self.blob(name, b"", 4 * max_len)
        try:
            got = raw.decode()
        except UnicodeDecodeError:
            raise self.fail(name, "not UTF-8") from None
        if len(got) > max_len:
            raise self.fail(name, f"{len(got)} characters exceed the cap of {max_len}")
        return got

    def uints(self, name, values, bits, signed, max_len):
        n = self._length(name, max_len)
        raw = self._take(name, n * (bits // 8))
        w = bits // 8
        return [int.from_bytes(raw[i * w:(i + 1) * w], "little", signed=signed)
                for i in range(n)]

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise DecodeError(f"{self.path}: {len(self.data) - self.pos} bytes of trailing data")


# -- JSON: the tree, with blobs as hex strings (the declaration says where) -------------

class JsonWriter(TreeWriter):
    """Saving to JSON text (``dumps()``); bytes become lowercase hex strings."""

    def blob(self, name, value, max_len):
        self._put(name, bytes(value).hex())
        return value

    def dumps(self) -> str:
        return json.dumps(self.root, indent=1, sort_keys=True)


class JsonReader(TreeReader):
    """Loading from JSON text written by ``JsonWriter`` (or by a person editing it)."""

    def __init__(self, text: str | bytes) -> None:
        try:
            root = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise DecodeError(f"/: not JSON ({e})") from None
        super().__init__(root)

    def blob(self, name, value, max_len):
        got = self._get(name)
        if not isinstance(got, str):
            raise self.fail(name, f"expected a hex string, got {type(got).__name__}")
        if len(got) > 2 * max_len:
            raise self.fail(name, f"{len(got) // 2} bytes exceed the cap of {max_len}")
        try:
            return bytes.fromhex(got)
        except ValueError:
            raise self.fail(name, "not a hex string") from None
