"""The human monitor's line reader against hostile input: pastes of any size, huge lines,
binary garbage, escape sequences. Each bad line gets one error line; the monitor (and so
the machine thread it runs on) carries on."""

from __future__ import annotations

import queue
import threading

import pytest

from emu.host.chardev import BufferChardev
from emu.monitor import hmp
from emu.monitor.commands import COMMANDS, Command, Pending
from emu.monitor.hmp import MAX_LINE, MAX_QUEUED, HumanMonitor

PROMPT = "(pyemu) "


@pytest.fixture
def console(machine):
    """A monitor on an in-memory chardev, without echo (as on a socket)."""
    cd = BufferChardev()
    return HumanMonitor(machine, cd, echo=False), cd


def type_in(cd: BufferChardev, data: bytes) -> None:
    """Bytes from the host, handed over as the machine thread does (``pump()``)."""
    cd.feed(data)
    cd.pump()


def replies(cd: BufferChardev) -> list[str]:
    """What the monitor printed, as the text before each prompt."""
    text = cd.take_output().decode().replace("\r\n", "\n")
    assert text.endswith(PROMPT)
    return [part.strip("\n") for part in text.split(PROMPT)[:-1]]


def test_a_paste_of_thousands_of_lines_runs_each_in_turn(console):
    mon, cd = console
    type_in(cd, b"\n" * 300)  # once a RecursionError that ended pyemu
    assert replies(cd) == [""] * 300
    type_in(cd, b"info status\r\n" * 5000)
    assert replies(cd) == ["VM status: paused (prelaunch)"] * 5000
    assert len(mon.history) == hmp.HISTORY


def test_a_line_over_the_cap_is_refused_whole_and_the_next_line_runs(console):
    mon, cd = console
    type_in(cd, b"info " + b"x" * (4 * MAX_LINE) + b"\ninfo status\n")
    assert replies(cd) == [f"line too long: over {MAX_LINE} bytes; ignored",
                           "VM status: paused (prelaunch)"]
    assert mon.history == ("info status",)
    type_in(cd, b"y" * MAX_LINE + b"\n")  # exactly the cap is a line like any other
    assert replies(cd) == [f"unknown command: '{'y' * MAX_LINE}'"]


def test_binary_garbage_gets_one_error_line_of_plain_text(console):
    mon, cd = console
    garbage = bytes(b for b in range(256) if b not in (0x0A, 0x0D))
    # UTF-8 for a C1 CSI and a right-to-left override: text a terminal would act on
    type_in(cd, b"\xc2\x9b31m\xe2\x80\xae" + garbage * 3 + b"\r\ninfo status\r\n")
    error, status = replies(cd)
    assert error.startswith("unknown command: '") and "\n" not in error
    assert all(c.isprintable() for c in error)
    assert status == "VM status: paused (prelaunch)"


@pytest.mark.parametrize("keys", [
    b"\x1b[A", b"\x1bOA", b"\x1b[1;5A",  # up: plain, application mode, with a modifier
    b"\x1b[" + b"9;" * 100_000 + b"A",  # a sequence of any length is consumed whole
])
def test_escape_sequences_are_consumed_whole(console, keys):
    mon, cd = console
    type_in(cd, b"info name\n")
    type_in(cd, b"\x1b[2~\x1bx" + keys + b"\n")  # Insert and Alt-x do nothing
    assert replies(cd) == ["", ""]
    assert mon.history == ("info name", "info name")  # up recalled the line


def test_an_unfinished_escape_sequence_does_not_eat_the_line_end(console):
    mon, cd = console
    type_in(cd, b"info status\x1b[12\ninfo status\x1b\r")
    assert replies(cd) == ["VM status: paused (prelaunch)"] * 2


class Loop:
    """The machine thread in miniature: what is posted runs when ``run_posted()`` says."""

    exit_status = None

    def __init__(self) -> None:
        self.posted: queue.SimpleQueue = queue.SimpleQueue()

    def post(self, fn) -> None:
        self.posted.put(fn)

    def run_posted(self) -> None:
        self.posted.get(timeout=5)()


@pytest.fixture
def slow_command(monkeypatch):
    """``wait``: a command that answers "done" once the returned event is set."""
    release = threading.Event()

    def wait(machine, args):
        return Pending(lambda: (release.wait(5), "done")[1])

    monkeypatch.setitem(COMMANDS, "wait", Command("wait", "", "", wait, 0))
    return release


def test_input_typed_during_a_busy_command_waits_in_a_bounded_queue(slow_command):
    loop, cd = Loop(), BufferChardev()
    mon = HumanMonitor(loop, cd, echo=False)
    mon.receive(b"wait\n" + b"\n" * 10)
    assert mon.can_receive() == 0  # the chardev keeps the rest meanwhile
    mon.receive(b"x" * MAX_QUEUED)  # from a caller that did not ask
    assert cd.take_output() == b"monitor input queue full: 10 bytes dropped\r\n"
    slow_command.set()
    loop.run_posted()  # the answer, then what waited, in order
    assert cd.take_output().decode() == "done\r\n" + PROMPT * 11
    assert mon.can_receive() == MAX_QUEUED
    mon.receive(b"\n")
    assert replies(cd) == [f"line too long: over {MAX_LINE} bytes; ignored"]
