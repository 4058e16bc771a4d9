"""Fixtures for the board's tests: machines built in-process from a configuration."""

from __future__ import annotations

import pytest

from emu.machine.config import MachineConfig
from emu.machine.pc.pc import PcMachine


@pytest.fixture
def machine():
    """``machine(**cfg)``: a PcMachine of that MachineConfig, closed after the test."""
    made = []

    def build(**cfg) -> PcMachine:
        m = PcMachine(MachineConfig(**cfg), {})
        made.append(m)
        return m

    yield build
    for m in made:
        m.cpu.close()
