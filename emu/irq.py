"""Interrupt request lines: wires from a device output to a controller input."""

from __future__ import annotations

from collections.abc import Callable


class IrqLine:
    """One wire. Level-triggered by nature; an edge is a raise after a lower."""

    def __init__(self, handler: Callable[[bool], None] | None = None, name: str = "") -> None:
        self.handler = handler
        self.name = name
        self.level = False

    def set(self, level: bool) -> None:
        self.level = bool(level)
        if self.handler is not None:
            self.handler(self.level)

    def raise_(self) -> None:
        self.set(True)

    def lower(self) -> None:
        self.set(False)

    def pulse(self) -> None:
        self.set(True)
        self.set(False)
