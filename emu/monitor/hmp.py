"""The human monitor front end: a line-oriented console on any chardev.

It reads lines (with backspace editing and an up/down history when the other end is a
terminal), runs them through the command registry and prints the output and a prompt,
as QEMU's monitor does. Bad input never ends the monitor: it prints one error line.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from emu import __version__
from emu.host.chardev import Chardev
from emu.monitor import info, keyboard, memory, qom_commands  # noqa: F401  (register commands)
from emu.monitor.commands import CommandError, Pending, execute

if TYPE_CHECKING:
    from emu.machine.machine import Machine

log = logging.getLogger("emu.monitor")

PROMPT = b"(pyemu) "
MAX_LINE = 4096
HISTORY = 100


_session: list[HumanMonitor] = []  # the monitor whose command runs now (machine thread)


def current_session() -> HumanMonitor | None:
    """The monitor session running the current command; None for other callers (QMP)."""
    return _session[-1] if _session else None


class HumanMonitor:
    """One monitor session bound to a chardev (as its frontend)."""

    def __init__(self, machine: Machine, chardev: Chardev, *, echo: bool) -> None:
        self.machine, self.chardev, self.echo = machine, chardev, echo
        self._line = bytearray()
        self._history: list[str] = []
        self._hist_pos = 0
        self._esc = b""
        self._busy = False
        self._typed = bytearray()
        chardev.attach(self)

    @property
    def history(self) -> tuple[str, ...]:
        """This session's command lines, oldest first (at most HISTORY)."""
        return tuple(self._history)

    def greet(self) -> None:
        self._out(f"pyemu {__version__} monitor - type 'help' for more information\n")
        self.chardev.write(PROMPT)

    # mux focus changes: show a fresh prompt when the monitor gets the console
    def mux_focus(self, focused: bool) -> None:
        if focused:
            self.chardev.write(b"\r\n" + PROMPT + bytes(self._line))

    def can_receive(self) -> int:
        return 0 if self._busy else MAX_LINE  # typed-ahead input waits for a busy command

    def receive(self, data: bytes) -> None:
        self._typed += data
        while self._typed and not self._busy:  # a busy command holds the rest back
            byte = self._typed.pop(0)
            self._key(byte)

    def _key(self, byte: int) -> None:
        if self._esc or byte == 0x1B:
            self._escape(byte)
        elif byte in (0x0D, 0x0A):
            if byte == 0x0A and self._last_was_cr:
                self._last_was_cr = False
                return
            self._last_was_cr = byte == 0x0D
            self._enter()
        elif byte in (0x08, 0x7F):
            if self._line:
                del self._line[-1]
                self._echo(b"\b \b")
        elif byte >= 0x20 and len(self._line) < MAX_LINE:
            self._line.append(byte)
            self._echo(bytes((byte,)))

    _last_was_cr = False

    def _escape(self, byte: int) -> None:
        """ANSI cursor keys: up/down walk the history."""
        self._esc += bytes((byte,))
        if len(self._esc) < 3:
            return
        seq, self._esc = self._esc, b""
        if seq in (b"\x1b[A", b"\x1b[B") and self._history:
            step = -1 if seq == b"\x1b[A" else 1
            self._hist_pos = max(0, min(len(self._history), self._hist_pos + step))
            text = (self._history[self._hist_pos] if self._hist_pos < len(self._history)
                    else "")
            self._echo(b"\b \b" * len(self._line))
            self._line = bytearray(text.encode())
            self._echo(bytes(self._line))

    def _echo(self, data: bytes) -> None:
        if self.echo:
            self.chardev.write(data)

    def _enter(self) -> None:
        self._echo(b"\r\n")
        line = self._line.decode("utf-8", "replace").strip()
        self._line.clear()
        if line:
            self._history = (self._history + [line])[-HISTORY:]
        self._hist_pos = len(self._history)
        self.run_line(line)

    def run_line(self, line: str) -> None:
        _session.append(self)
        try:
            output = execute(self.machine, line)
        except CommandError as e:
            output = str(e)
        except Exception as e:  # a bug in a command must not take the monitor down
            log.exception("monitor command %r failed", line)
            output = f"internal error: {e}"
        finally:
            _session.pop()
        if isinstance(output, Pending):
            self._busy = True
            threading.Thread(target=self._await, args=(output,), daemon=True,
                             name="monitor-wait").start()
        else:
            self._done(output)

    def _await(self, pending: Pending) -> None:
        text = pending.wait()
        self.machine.post(lambda: self._done(text))

    def _done(self, output: str) -> None:
        self._busy = False
        if output:
            self._out(output + "\n")
        if self.machine.exit_status is None:
            self.chardev.write(PROMPT)
        self.receive(b"")  # what was typed meanwhile

    def _out(self, text: str) -> None:
        self.chardev.write(text.replace("\n", "\r\n").encode())
