"""Snapshots of a whole machine: exact continuation after a load, hostile files refused
before anything changes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from emu.machine.config import MachineConfig
from emu.machine.pc.pc import PcMachine
from emu.migration.stream import StreamError, compare_descriptions, describe_machine, stateful
from emu.qom.stateio import visit_fields
from emu.qom.visitor import TreeWriter

GUESTS = Path(__file__).resolve().parents[1] / "guests" / "build"
US, MS = 1_000, 1_000_000


def build(guest: str, devices: tuple[str, ...] = ()) -> PcMachine:
    return PcMachine(MachineConfig(kernel=str(GUESTS / f"{guest}.elf"), icount_shift=2,
                                   rtc_base="2020-01-01T00:00:00",  # a fixed clock
                                   devices=list(devices)), {})


def state_tree(m: PcMachine) -> dict:
    """Every object's state (the CPU's and the clock's included), by path."""
    tree = {}
    for obj in stateful(m):
        w = TreeWriter()
        tree[obj.path] = visit_fields(w, obj)
    return tree


@pytest.fixture
def machines():
    made: list[PcMachine] = []

    def make(guest: str) -> PcMachine:
        made.append(build(guest))
        return made[-1]

    yield make
    for m in made:
        m.cpu.close()


# Virtual times inside each guest's life (exceptions64 is done in ~1 ms at shift=2).
@pytest.mark.parametrize("guest, total_us", [("pit", 40_000), ("uart", 5_000),
                                             ("exceptions64", 800), ("longmode", 300),
                                             ("hlt", 100_000)])  # idles: time warps
def test_save_and_load_continue_exactly(machines, guest, total_us):
    straight = machines(guest)
    straight.run_until(total_us * US)
    assert straight.exit_status is None, "the guest finished: pick an earlier instant"
    for k_us in (total_us // 4, total_us // 2, total_us - 1):
        first = machines(guest)
        first.run_until(k_us * US)
        buf = io.BytesIO()
        first.save_snapshot(buf)
        second = machines(guest)
        second.load_snapshot(buf.getvalue())
        second.run_until(total_us * US)
        assert state_tree(second) == state_tree(straight), f"split at {k_us} us"
        assert (second.mem.ram == straight.mem.ram).all()


def test_corrupt_streams_are_refused_and_change_nothing(machines):
    m = machines("pit")
    m.run_until(3 * MS)
    buf = io.BytesIO()
    m.save_snapshot(buf)
    good = buf.getvalue()
    target = machines("pit")
    target.run_until(1 * MS)
    before, ram = state_tree(target), target.mem.ram.copy()
    bad = {
        "truncated": good[:len(good) // 2],
        "flipped byte": good[:100] + bytes([good[100] ^ 0xFF]) + good[101:],
        "empty": b"",
        "not a stream": b"hello world" * 10,
    }
    for what, data in bad.items():
        with pytest.raises(StreamError):
            target.load_snapshot(data)
        assert state_tree(target) == before, what
        assert (target.mem.ram == ram).all(), what


def test_a_different_machine_is_refused_by_path(machines):
    m = machines("pit")
    buf = io.BytesIO()
    m.save_snapshot(buf)
    other = PcMachine(MachineConfig(kernel=str(GUESTS / "pit.elf"), icount_shift=2,
                                    ram_size=64 << 20, serial=["null"]), {})
    try:
        with pytest.raises(StreamError, match="ram_size is 134217728 in the stream, 67108864"):
            other.load_snapshot(buf.getvalue())
    finally:
        other.cpu.close()


def test_a_different_cpu_model_is_refused(machines):
    # the guest has read its CPUID: it must not wake on a CPU that answers differently
    m = machines("pit")
    buf = io.BytesIO()
    m.save_snapshot(buf)
    other = PcMachine(MachineConfig(kernel=str(GUESTS / "pit.elf"), icount_shift=2,
                                    ram_size=m.mem.ram.size, serial=["null"], cpu="max"), {})
    try:
        assert other.cpu.model.name != m.cpu.model.name
        with pytest.raises(StreamError, match="/machine/cpu: model 'qemu64' in the stream, "
                                              "'max' here"):
            other.load_snapshot(buf.getvalue())
    finally:
        other.cpu.close()


@pytest.mark.parametrize("crafted", [["qemu64"], 64, None, "q" * 100_000])
def test_a_crafted_cpu_model_is_one_short_line(machines, crafted):
    m = machines("pit")
    theirs = dict(describe_machine(m), cpu=crafted)
    assert compare_descriptions(theirs, describe_machine(m)) == [
        "/machine/cpu: the stream's model is not a model name"]
