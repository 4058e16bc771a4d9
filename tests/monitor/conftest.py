"""Fixtures for monitor commands run in-process against a real PcMachine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import emu.monitor.hmp  # noqa: F401  (registers every monitor command)
from emu.machine.config import MachineConfig
from emu.machine.pc.pc import PcMachine
from emu.monitor.commands import CommandError, execute

GUESTS = Path(__file__).resolve().parents[1] / "guests" / "build"


@pytest.fixture
def make_machine() -> Callable[..., PcMachine]:
    """``make_machine(guest="hlt", chardevs=None, blocks=None, **config)``: a PcMachine
    booting a test guest in icount mode (deterministic), closed after the test."""
    made: list[PcMachine] = []

    def make(guest: str = "hlt", chardevs: dict | None = None, blocks: dict | None = None,
             **config) -> PcMachine:
        config.setdefault("icount_shift", 2)
        config.setdefault("rtc_base", "2020-01-01T00:00:00")
        cfg = MachineConfig(kernel=str(GUESTS / f"{guest}.elf"), **config)
        made.append(PcMachine(cfg, chardevs or {}, blocks))
        return made[-1]

    yield make
    for m in made:
        m.cpu.close()


@pytest.fixture
def machine(make_machine) -> PcMachine:
    return make_machine()


def _run(machine: PcMachine, line: str) -> str:
    out = execute(machine, line)
    assert isinstance(out, str)
    return out


def _error(machine: PcMachine, line: str) -> str:
    with pytest.raises(CommandError) as e:
        execute(machine, line)
    text = str(e.value)
    assert text and "\n" not in text
    return text


@pytest.fixture
def run() -> Callable[[PcMachine, str], str]:
    """``run(machine, line)``: the output of one monitor line."""
    return _run


@pytest.fixture
def error() -> Callable[[PcMachine, str], str]:
    """``error(machine, line)``: the one-line error a bad monitor line gets."""
    return _error
