"""Shared fixtures of the CPU tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def rigs() -> Iterator[list[Any]]:
    """A list a test appends its rigs (anything with a ``cpu``) to; their engines are
    closed at the end."""
    made: list[Any] = []
    yield made
    for r in made:
        r.cpu.close()
