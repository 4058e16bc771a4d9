"""Strict JSON (RFC 8259) for text that comes from outside: QMP commands, machine
descriptions in streams and in -readconfig files.

Python's json module also accepts NaN, Infinity and -Infinity, and keeps the last of
duplicate keys; RFC 8259 section 6 has no such numbers, and section 4 leaves duplicate
names unpredictable. Both are refused here, each with a message naming what it saw.
"""

from __future__ import annotations

import json
import math
from typing import Any


def loads(text: str | bytes) -> Any:
    """``text`` as JSON; ValueError (or RecursionError, nested too deep) when it is not
    strictly JSON."""
    return json.loads(text, parse_constant=_not_json, parse_float=_finite,
                      object_pairs_hook=_unique_keys)


def _not_json(word: str) -> Any:
    raise ValueError(f"'{word}' is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number '{text}' is out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key '{key}'")
        obj[key] = value
    return obj
