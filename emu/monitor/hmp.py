"""The human monitor front end: a line-oriented console on any chardev.

It reads lines (with backspace editing and an up/down history when the other end is a
terminal), runs them through the command registry and prints the output and a prompt,
as QEMU's monitor does. Bad input never ends the monitor: it prints one error line.

Whatever arrives is handled in one loop over a bounded queue, one byte at a time, a
line's command run before the next byte is looked at: a paste of any size uses no stack,
and a command that answers later (``Pending``) holds the rest of the queue, and through
``can_receive()`` the chardev, until it is done. A line is capped at MAX_LINE bytes (a
longer one is refused whole when it ends), control bytes other than the editing keys
are ignored, and escape sequences are consumed whole, however long, so binary garbage
ends in at most one error line per line.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from emu import __version__
from emu.host.chardev import Chardev
from emu.monitor import (  # noqa: F401  (register commands)
    hotplug_commands,
    info,
    keyboard,
    media_commands,
    memory,
    qom_commands,
)
from emu.monitor.commands import CommandError, Pending, execute

if TYPE_CHECKING:
    from emu.machine.machine import Machine

log = logging.getLogger("emu.monitor")

PROMPT = b"(pyemu) "
MAX_LINE = 4096  # bytes in one line; commands.execute() refuses longer ones too
MAX_QUEUED = 64 << 10  # typed-ahead bytes held while a command runs
HISTORY = 100
ESC, CR, LF, BS, DEL = 0x1B, 0x0D, 0x0A, 0x08, 0x7F


_session: list[HumanMonitor] = []  # the monitor whose command runs now (machine thread)


def current_session() -> HumanMonitor | None:
    """The monitor session running the current command; None for other callers (QMP)."""
    return _session[-1] if _session else None


class HumanMonitor:
    """One monitor session bound to a chardev (as its frontend)."""

    def __init__(self, machine: Machine, chardev: Chardev, *, echo: bool) -> None:
        self.machine, self.chardev, self.echo = machine, chardev, echo
        self._line = bytearray()
        self._overlong = False  # the line went past MAX_LINE: refused when it ends
        self._last_was_cr = False
        self._history: list[str] = []
        self._hist_pos = 0
        self._esc = 0  # in an escape sequence: ESC, or its "[" (CSI) or "O" (SS3)
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
        # typed-ahead input waits in the chardev while a command is busy
        return 0 if self._busy else MAX_QUEUED - len(self._typed)

    def receive(self, data: bytes) -> None:
        room = MAX_QUEUED - len(self._typed)
        if len(data) > room:  # only a caller that ignores can_receive() gets here
            self._out(f"monitor input queue full: {len(data) - room} bytes dropped\n")
            data = data[:room]
        self._typed += data
        self._process()

    def _process(self) -> None:
        """Handle the queued bytes until they run out or a command answers later."""
        while self._typed and not self._busy:
            byte = self._typed[0]
            del self._typed[0]  # cheap: a bytearray gives up its head without copying
            self._key(byte)

    def _key(self, byte: int) -> None:
        if self._esc and self._escape(byte):
            return
        if byte in (CR, LF):
            if not (byte == LF and self._last_was_cr):  # CR LF is one Enter
                self._enter()
            self._last_was_cr = byte == CR
            return
        self._last_was_cr = False
        if byte == ESC:
            self._esc = ESC
        elif byte in (BS, DEL):
            if self._line:
                del self._line[-1]
                self._echo(b"\b \b")
        elif byte >= 0x20:
            self._type(byte)

    def _type(self, byte: int) -> None:
        if len(self._line) < MAX_LINE and not self._overlong:
            self._line.append(byte)
            self._echo(bytes((byte,)))
        else:
            self._overlong = True

    def _escape(self, byte: int) -> bool:
        """Continue the escape sequence in progress with ``byte`` (ECMA-48: ESC [ params
        final, ESC O final, ESC char); False if ``byte`` cannot belong to it, which ends
        the sequence and leaves ``byte`` an ordinary key. Up and down walk the history."""
        if self._esc == ESC and byte in b"[O":
            self._esc = byte
            return True
        if self._esc == ord("[") and 0x20 <= byte <= 0x3F:
            return True  # a parameter or intermediate byte: consumed, however many
        intro, self._esc = self._esc, 0
        if intro == ESC:
            return 0x20 <= byte < DEL  # ESC and a key (Alt-key): ignored
        if not 0x40 <= byte <= 0x7E:
            return False
        if byte in b"AB":
            self._walk_history(-1 if byte == ord("A") else 1)
        return True

    def _walk_history(self, step: int) -> None:
        if not self._history:
            return
        self._hist_pos = max(0, min(len(self._history), self._hist_pos + step))
        text = self._history[self._hist_pos] if self._hist_pos < len(self._history) else ""
        self._echo(b"\b \b" * len(self._line))
        self._line = bytearray(text.encode())
        self._overlong = False
        self._echo(bytes(self._line))

    def _echo(self, data: bytes) -> None:
        if self.echo:
            self.chardev.write(data)

    def _enter(self) -> None:
        self._echo(b"\r\n")
        line = _printable(self._line.decode("utf-8", "replace")).strip()
        overlong, self._overlong = self._overlong, False
        self._line.clear()
        if line and not overlong:
            self._history = (self._history + [line])[-HISTORY:]
        self._hist_pos = len(self._history)
        if overlong:
            self._done(f"line too long: over {MAX_LINE} bytes; ignored")
        else:
            self.run_line(line)

    def run_line(self, line: str) -> None:
        """Run one command line; its output and the prompt follow, now or once a
        ``Pending`` command is done."""
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
        self.machine.post(lambda: self._resume(text))

    def _resume(self, output: str) -> None:
        self._busy = False
        self._done(output)
        self._process()  # what was typed meanwhile

    def _done(self, output: str) -> None:
        if output:
            self._out(output + "\n")
        if self.machine.exit_status is None:
            self.chardev.write(PROMPT)

    def _out(self, text: str) -> None:
        self.chardev.write(text.replace("\n", "\r\n").encode())


def _printable(text: str) -> str:
    """``text`` with what a terminal would act on (C1 controls, bidirectional overrides)
    as U+FFFD, so an error line that quotes it is only text."""
    return "".join(c if c.isprintable() else "\ufffd" for c in text)
