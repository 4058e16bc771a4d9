"""Character device backends: where a serial port's or monitor's bytes go on the host.

DESIGN.md, "Layout": host backends never enter saved state. A backend carries bytes
between one *frontend* (a UART, the monitor) and the host: null, stdio, a file, a TCP
or unix socket. Spellings follow QEMU's ``-serial``/``-chardev`` shorthand:

    null | none | stdio | file:PATH | tcp:HOST:PORT[,server][,nowait] |
    unix:PATH[,server][,nowait] | mon:BACKEND

Socket addresses are parsed, bound and connected by emu/host/sockaddr.py (shared with
the migration transports): an IPv6 HOST goes in brackets, a server with an empty HOST
(``tcp::4444,server``) listens on loopback only, as QMP does (any of them may carry a
monitor; ``0.0.0.0`` or ``[::]`` listens everywhere), a client with one connects to this host.

Threads (DESIGN.md, "Threads and time"): every backend with input runs one reader
thread that collects host bytes into a capped, thread-safe buffer and then calls the
notify callback, so the machine can wake its CPU. The machine thread calls ``pump()``,
which hands buffered bytes to the frontend no faster than ``can_receive()`` allows.
Input is never dropped: when the buffer is full the reader thread waits. Output
(``write()``) comes from the machine thread and never waits long: a socket with no
client discards it, and a client that stops reading loses what overflows a capped
output buffer.

Escape sequences: ``mon:BACKEND`` multiplexes one backend between the serial port
(frontend 0) and the monitor (frontend 1), switched with Ctrl-a c, as QEMU does.
``stdio`` is always wrapped in a ``MuxChardev`` too (with ``monitor=False``), so that
Ctrl-a x quits a guest whose console owns the terminal in raw mode; Ctrl-a Ctrl-a
sends a literal Ctrl-a. Use ``StdioChardev`` directly for a stdio without escapes.
"""

from __future__ import annotations

import atexit
import os
import selectors
import socket
import sys
import threading
from collections.abc import Callable
from typing import Protocol

from emu.host import sockaddr
from emu.host.sockaddr import AddressError

INPUT_CAP = 1 << 20  # bytes a backend buffers before its reader thread waits
OUTPUT_CAP = 1 << 20  # bytes a socket buffers for a slow client before dropping
READ_CHUNK = 4096


class Frontend(Protocol):
    """What a backend delivers input to (a UART, the monitor)."""

    def receive(self, data: bytes) -> None: ...

    def can_receive(self) -> int: ...


class InputBuffer:
    """Bytes from a reader thread to the machine thread; the writer waits when full."""

    def __init__(self, cap: int = INPUT_CAP) -> None:
        self.cap = cap
        self._data = bytearray()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, data: bytes) -> int:
        """Append as much of ``data`` as fits, waiting for room; 0 once closed."""
        with self._cond:
            while len(self._data) >= self.cap and not self._closed:
                self._cond.wait()
            if self._closed:
                return 0
            n = min(len(data), self.cap - len(self._data))
            self._data += data[:n]
            return n

    def take(self, n: int) -> bytes:
        """Remove and return up to ``n`` bytes."""
        with self._cond:
            chunk = bytes(self._data[:n])
            del self._data[:n]
            self._cond.notify_all()
            return chunk

    def __len__(self) -> int:
        with self._cond:
            return len(self._data)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Chardev:
    """A backend with one frontend. Subclasses provide ``write()`` and a reader thread."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.attached: Frontend | None = None
        self._notify: Callable[[], None] | None = None
        self._input = InputBuffer()
        self.closed = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"

    def write(self, data: bytes) -> None:
        """Send frontend output to the host; never blocks for long."""

    def attach(self, frontend: Frontend | None) -> None:
        """Deliver input to ``frontend`` from now on (None detaches; input stays buffered)."""
        self.attached = frontend

    def set_notify(self, callback: Callable[[], None] | None) -> None:
        """``callback`` is called from the reader thread whenever input arrived."""
        self._notify = callback

    def pending_input(self) -> int:
        """Bytes received from the host and not yet handed to the frontend."""
        return len(self._input)

    def pump(self) -> None:
        """On the machine thread: hand buffered input to the frontend as room allows."""
        fe = self.attached
        while fe is not None:
            room = fe.can_receive()
            if room <= 0:
                return
            chunk = self._input.take(room)
            if not chunk:
                return
            fe.receive(chunk)

    def close(self) -> None:
        self.closed = True
        self._input.close()

    def _deliver(self, data: bytes) -> bool:
        """From a reader thread: buffer ``data``, waiting for room; False once closed."""
        view = memoryview(data)
        while view:
            n = self._input.put(view)
            if n == 0:
                return False
            view = view[n:]
            notify = self._notify
            if notify is not None:
                notify()
        return True


class NullChardev(Chardev):
    """Discards output, never has input (``null``, ``none``)."""


class BufferChardev(Chardev):
    """In memory: output collects in ``output``; ``feed()`` plays the host's keyboard."""

    def __init__(self, spec: str = "buffer") -> None:
        super().__init__(spec)
        self.output = bytearray()

    def write(self, data: bytes) -> None:
        self.output += data

    def feed(self, data: bytes) -> None:
        """Queue ``data`` as if it arrived from the host (calls the notify callback)."""
        self._deliver(data)

    def take_output(self) -> bytes:
        out = bytes(self.output)
        self.output.clear()
        return out


class FileChardev(Chardev):
    """``file:PATH``: output only, to a file created or truncated at open."""

    def __init__(self, spec: str, path: str) -> None:
        super().__init__(spec)
        try:
            self._file = open(path, "wb", buffering=0)
        except OSError as e:
            raise OSError(e.errno, f"chardev {spec}: {e.strerror}") from None

    def write(self, data: bytes) -> None:
        if not self.closed:
            self._file.write(data)

    def close(self) -> None:
        super().close()
        self._file.close()


class _FdReader(threading.Thread):
    """Reads one fd until EOF or ``stop()``, handing chunks to ``deliver``."""

    def __init__(self, fd: int, deliver: Callable[[bytes], bool], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.fd, self.deliver = fd, deliver
        self._wake_r, self._wake_w = os.pipe()

    def run(self) -> None:
        # poll, not epoll: stdin may be a regular file, which epoll refuses.
        with selectors.PollSelector() as sel:
            sel.register(self.fd, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select():
                    if key.fd == self._wake_r:
                        return
                    try:
                        data = os.read(self.fd, READ_CHUNK)
                    except BlockingIOError:
                        continue
                    except OSError:
                        return
                    if not data or not self.deliver(data):
                        return  # EOF stops reading; it does not quit the machine

    def stop(self) -> None:
        os.write(self._wake_w, b"x")
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=2.0)
        os.close(self._wake_r)
        os.close(self._wake_w)


class StdioChardev(Chardev):
    """``stdio``: the terminal. A tty is put in raw mode and restored on close or exit."""

    _in_use = False
    _lock = threading.Lock()

    def __init__(self, spec: str = "stdio", *, signal: bool = True,
                 in_fd: int = 0, out_fd: int = 1) -> None:
        super().__init__(spec)
        self.in_fd, self.out_fd = in_fd, out_fd
        self._owns_stdio = in_fd == 0
        if self._owns_stdio:
            with StdioChardev._lock:
                if StdioChardev._in_use:
                    raise ValueError(f"chardev {spec}: stdio is already used by another chardev")
                StdioChardev._in_use = True
        self._saved_tty: list | None = None
        if os.isatty(in_fd):
            self._enter_raw_mode(signal)
        self._reader = _FdReader(in_fd, self._deliver, f"chardev-{spec}")
        self._reader.start()

    def _enter_raw_mode(self, signal: bool) -> None:
        import termios

        self._saved_tty = termios.tcgetattr(self.in_fd)
        iflag, oflag, cflag, lflag, ispeed, ospeed, cc = termios.tcgetattr(self.in_fd)
        # The guest sees every key: no line editing, echo, flow control or CR mapping.
        iflag &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP
                   | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON)
        oflag |= termios.OPOST
        lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.IEXTEN)
        if not signal:
            lflag &= ~termios.ISIG
        cflag = (cflag & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
        cc[termios.VMIN], cc[termios.VTIME] = 1, 0
        atexit.register(self._restore_tty)
        termios.tcsetattr(self.in_fd, termios.TCSANOW,
                          [iflag, oflag, cflag, lflag, ispeed, ospeed, cc])

    def _restore_tty(self) -> None:
        if self._saved_tty is None:
            return
        import termios

        try:
            termios.tcsetattr(self.in_fd, termios.TCSADRAIN, self._saved_tty)
        except termios.error:
            pass  # the terminal went away; nothing left to restore
        self._saved_tty = None
        atexit.unregister(self._restore_tty)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.closed:
            try:
                view = view[os.write(self.out_fd, view):]
            except (BlockingIOError, BrokenPipeError):
                return  # a stalled or closed stdout loses output rather than the guest time
            except InterruptedError:
                continue

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        self._reader.stop()
        self._restore_tty()
        if self._owns_stdio:
            with StdioChardev._lock:
                StdioChardev._in_use = False


class SocketChardev(Chardev):
    """``tcp:`` and ``unix:``, as a listening server (one client at a time) or a client.

    ``address`` is ``(host, port)`` or a socket path, as emu.host.sockaddr takes them.
    One I/O thread per socket accepts clients, reads input and flushes the output
    buffer; output written while no client is connected is dropped.
    """

    def __init__(self, spec: str, address: sockaddr.Address, *,
                 server: bool, wait: bool) -> None:
        super().__init__(spec)
        # Called on the I/O thread when a client arrives (the monitor greets it).
        self.on_connect: Callable[[], None] | None = None
        self.server = server
        self._listener: sockaddr.ListeningSocket | None = None
        self._client: socket.socket | None = None
        self._out = bytearray()
        self._out_lock = threading.Lock()
        self.dropped = 0  # output bytes lost to no client or a stalled one
        self._stop = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        # The bound address once listening (port 0 picks one), else the one connected to.
        self.address: sockaddr.Address = address
        try:
            self._start(address, wait)
        except BaseException as e:
            self._close_fds()  # also removes a unix socket file we bound
            if isinstance(e, OSError):
                raise OSError(e.errno, f"chardev {spec}: {e.strerror or e}") from None
            raise  # AddressError: parse_chardev puts the spec in front
        self._thread = threading.Thread(target=self._run, name=f"chardev-{spec}", daemon=True)
        self._thread.start()

    # -- setup ----------------------------------------------------------------
    def _start(self, address: sockaddr.Address, wait: bool) -> None:
        if not self.server:
            self._set_client(sockaddr.connect(address))
            return
        self._listener = sockaddr.listen(address)
        self.address = self._listener.address
        if wait:
            print(f"pyemu: waiting for connection on {self.spec}", file=sys.stderr)
            self._set_client(self._listener.accept()[0])

    def _set_client(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        with self._out_lock:
            self._client = conn
            self._out.clear()
        if self.on_connect is not None:
            self.on_connect()

    @property
    def connected(self) -> bool:
        return self._client is not None

    # -- machine thread ---------------------------------------------------------
    def write(self, data: bytes) -> None:
        with self._out_lock:
            conn = self._client
            if conn is None:
                self.dropped += len(data)
                return
            if not self._out:  # nothing queued: try the kernel buffer first
                try:
                    data = data[conn.send(data):]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    return  # the I/O thread notices the broken connection
                if not data:
                    return
            room = OUTPUT_CAP - len(self._out)
            self.dropped += max(0, len(data) - room)
            was_empty = not self._out
            self._out += data[:room]
        if was_empty:
            self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # the pipe is full, so the thread will wake anyway

    # -- I/O thread -------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop:
            if self._client is None:
                if not self.server or not self._accept():
                    return
            self._serve_client()

    def _accept(self) -> bool:
        assert self._listener is not None
        with selectors.PollSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stop:
                for key, _ in sel.select():
                    if key.fd == self._wake_r:
                        self._drain_wake()
                        continue
                    try:
                        conn, _ = self._listener.accept()
                    except OSError:
                        continue
                    self._set_client(conn)
                    return True
        return False

    def _serve_client(self) -> None:
        conn = self._client
        assert conn is not None
        with selectors.PollSelector() as sel:
            sel.register(self._wake_r, selectors.EVENT_READ)
            sel.register(conn, selectors.EVENT_READ)
            while not self._stop:
                with self._out_lock:
                    want = selectors.EVENT_READ | (selectors.EVENT_WRITE if self._out else 0)
                sel.modify(conn, want)
                for key, mask in sel.select():
                    if key.fd == self._wake_r:
                        self._drain_wake()
                        continue
                    if mask & selectors.EVENT_WRITE and not self._flush(conn):
                        return self._drop_client()
                    if mask & selectors.EVENT_READ and not self._receive(conn):
                        return self._drop_client()

    def _receive(self, conn: socket.socket) -> bool:
        try:
            data = conn.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        return bool(data) and self._deliver(data)

    def _flush(self, conn: socket.socket) -> bool:
        with self._out_lock:
            try:
                del self._out[:conn.send(self._out)]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                return False
        return True

    def _drop_client(self) -> None:
        with self._out_lock:
            conn, self._client = self._client, None
            self._out.clear()
        if conn is not None:
            conn.close()

    def _drain_wake(self) -> None:
        try:
            os.read(self._wake_r, READ_CHUNK)
        except BlockingIOError:
            pass

    # -- teardown -----------------------------------------------------------------
    def close(self) -> None:
        if self.closed:
            return
        super().close()
        self._stop = True
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)
        self._drop_client()
        self._close_fds()

    def _close_fds(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


# -- multiplexer --------------------------------------------------------------------

CTRL_A = 0x01
MUX_QUEUE_CAP = 64 * 1024  # input a mux holds for its frontends before the backend waits
MUX_HELP = (
    "\r\n"
    "C-a h    print this help\r\n"
    "C-a x    exit pyemu\r\n"
    "C-a c    switch between serial console and monitor\r\n"
    "C-a b    send break\r\n"
    "C-a C-a  send C-a\r\n"
)


class MuxFrontend(Chardev):
    """One of a mux's two inputs: looks like an ordinary Chardev to its user."""

    def __init__(self, mux: MuxChardev, index: int) -> None:
        super().__init__(f"{mux.spec}#{index}")
        self.mux, self.index = mux, index

    def write(self, data: bytes) -> None:
        self.mux.backend.write(data)

    def attach(self, frontend: Frontend | None) -> None:
        super().attach(frontend)
        self.mux.flush()

    def pending_input(self) -> int:
        return len(self.mux.queues[self.index])

    def pump(self) -> None:
        self.mux.pump()

    def close(self) -> None:
        self.attach(None)  # the other frontend may still use the backend


class MuxChardev(Chardev):
    """Shares one backend between the serial port (focus 0) and the monitor (focus 1).

    Input goes to the focused frontend, with Ctrl-a escapes handled on the way; output
    from both frontends goes to the backend. ``on_quit`` is called on the machine thread
    for Ctrl-a x. A frontend object may offer ``mux_focus(bool)`` to hear about focus
    changes (the monitor prints its prompt) and ``receive_break()`` for Ctrl-a b.
    Used as a plain Chardev, a mux behaves as its frontend 0.
    """

    def __init__(self, backend: Chardev, *, monitor: bool = True, spec: str | None = None) -> None:
        super().__init__(spec or (f"mon:{backend.spec}" if monitor else backend.spec))
        self.backend, self.monitor = backend, monitor
        self.on_quit: Callable[[], None] | None = None
        self.focus = 0
        self.queues = [bytearray(), bytearray()]
        self._escape = False
        self._fronts = [MuxFrontend(self, 0), MuxFrontend(self, 1)]
        backend.attach(_MuxInput(self))
        backend.set_notify(self._notify_all)

    def frontend(self, index: int) -> MuxFrontend:
        return self._fronts[index]

    # A mux used directly is its serial frontend.
    def write(self, data: bytes) -> None:
        self.backend.write(data)

    def attach(self, frontend: Frontend | None) -> None:
        self._fronts[0].attach(frontend)

    def set_notify(self, callback: Callable[[], None] | None) -> None:
        self._fronts[0].set_notify(callback)

    def pending_input(self) -> int:
        return self._fronts[0].pending_input()

    def pump(self) -> None:
        self.flush()
        self.backend.pump()
        self.flush()

    def close(self) -> None:
        super().close()
        self.backend.close()

    def _notify_all(self) -> None:
        for fe in self._fronts:
            if fe._notify is not None:
                fe._notify()

    # -- input path ---------------------------------------------------------------
    def can_receive(self) -> int:
        return max(0, MUX_QUEUE_CAP - sum(len(q) for q in self.queues))

    def receive(self, data: bytes) -> None:
        i = 0
        while i < len(data):
            if self._escape:
                self._escape = False
                self._command(data[i])
                i += 1
            elif data[i] == CTRL_A:
                self._escape = True
                i += 1
            else:
                end = data.find(CTRL_A, i)
                end = len(data) if end < 0 else end
                self.queues[self.focus] += data[i:end]
                i = end
        self.flush()

    def flush(self) -> None:
        """Give each frontend as much of its queued input as it can take."""
        for fe, queue in zip(self._fronts, self.queues, strict=True):
            consumer = fe.attached
            if consumer is None or not queue:
                continue
            n = min(consumer.can_receive(), len(queue))
            if n > 0:
                chunk = bytes(queue[:n])
                del queue[:n]
                consumer.receive(chunk)

    def _command(self, key: int) -> None:
        if key == CTRL_A:
            self.queues[self.focus].append(CTRL_A)
        elif key == ord("x"):
            self.backend.write(b"\r\npyemu: terminated\r\n")
            if self.on_quit is not None:
                self.on_quit()
        elif key == ord("c"):
            self._switch_focus()
        elif key in (ord("h"), ord("?")):
            self.backend.write(MUX_HELP.encode())
        elif key == ord("b"):
            consumer = self._fronts[self.focus].attached
            send_break = getattr(consumer, "receive_break", None)
            if send_break is not None:
                send_break()
        # other keys after C-a are swallowed, as in QEMU

    def _switch_focus(self) -> None:
        other = 1 - self.focus
        if self._fronts[other].attached is None:
            self.backend.write(b"\r\n[pyemu: no monitor on this console]\r\n")
            return
        self._tell_focus(self.focus, False)
        self.focus = other
        name = "monitor" if other == 1 else "serial console"
        self.backend.write(f"\r\n[pyemu: input to {name}; C-a c switches]\r\n".encode())
        self._tell_focus(other, True)

    def _tell_focus(self, index: int, focused: bool) -> None:
        hook = getattr(self._fronts[index].attached, "mux_focus", None)
        if hook is not None:
            hook(focused)


class _MuxInput:
    """The mux as its backend's frontend."""

    def __init__(self, mux: MuxChardev) -> None:
        self.receive, self.can_receive = mux.receive, mux.can_receive


# -- parsing ------------------------------------------------------------------------

def parse_chardev(spec: str) -> Chardev:
    """Open the backend QEMU would for ``spec``; ValueError/OSError name the bad part."""
    if spec.startswith("mon:"):
        inner = spec[4:]
        if inner.startswith("mon:"):
            raise ValueError(f"chardev {spec!r}: mon: cannot be nested")
        backend = _open(inner, spec)
        if isinstance(backend, MuxChardev):  # mon:stdio: stdio is a mux already
            backend.monitor, backend.spec = True, spec
            return backend
        return MuxChardev(backend, monitor=True, spec=spec)
    return _open(spec, spec)


def _open(spec: str, whole: str) -> Chardev:
    head, *opts = spec.split(",")
    kind, sep, arg = head.partition(":")
    if kind in ("null", "none"):
        _no_options(kind, arg, opts, whole)
        return NullChardev(whole)
    if kind == "stdio":
        if sep:
            raise ValueError(f"chardev {whole!r}: stdio takes no argument")
        signal = _options(opts, whole, {"signal"}).get("signal", True)
        return MuxChardev(StdioChardev(whole, signal=signal), monitor=False, spec=whole)
    if kind == "file":
        if not arg:
            raise ValueError(f"chardev {whole!r}: file: needs a path")
        _no_options(kind, "", opts, whole)
        return FileChardev(whole, arg)
    if kind in ("tcp", "unix"):
        flags = _options(opts, whole, {"server", "wait", "nodelay"})
        try:
            server = flags.get("server", False)
            address = _tcp_address(arg, server) if kind == "tcp" else \
                sockaddr.check_unix_path(arg)
            return SocketChardev(whole, address, server=server, wait=flags.get("wait", True))
        except AddressError as e:
            raise ValueError(f"chardev {whole!r}: {e}") from None
    raise ValueError(f"chardev {whole!r}: unknown backend {kind!r} "
                     "(null, none, stdio, file:, tcp:, unix:, mon:)")


def _tcp_address(text: str, server: bool) -> tuple[str, int]:
    """``HOST:PORT``; a server with an empty HOST listens where QMP's would."""
    host, port = sockaddr.parse_host_port(text)
    return (sockaddr.control_listen_host(host) if server else host), port


def _no_options(kind: str, arg: str, opts: list[str], whole: str) -> None:
    if arg or opts:
        raise ValueError(f"chardev {whole!r}: {kind} takes no argument or option")


def _options(opts: list[str], whole: str, known: set[str]) -> dict[str, bool]:
    """``server``, ``nowait``, ``server=on``, ``wait=off``... as booleans."""
    flags: dict[str, bool] = {}
    for opt in opts:
        name, eq, value = opt.partition("=")
        if not eq and name.startswith("no") and name[2:] in known:
            name, value = name[2:], "off"
        elif not eq:
            value = "on"
        if name not in known:
            raise ValueError(f"chardev {whole!r}: unknown option {opt!r}")
        if value not in ("on", "off"):
            raise ValueError(f"chardev {whole!r}: option {opt!r} wants on or off")
        flags[name] = value == "on"
    return flags


def chardev_option(value: str) -> tuple[str, str, bool]:
    """QEMU's ``-chardev BACKEND,id=ID,...`` (and HMP's ``chardev-add``) as (ID, the spec
    ``parse_chardev`` opens, mux); ValueError names the part at fault."""
    backend, *parts = value.split(",")
    opts: dict[str, str] = {}
    for part in parts:
        key, eq, text = part.partition("=")
        if not eq:
            raise ValueError(f"'{part}': expected KEY=VALUE")
        opts[key] = text
    chardev_id = opts.pop("id", "")
    if not chardev_id:
        raise ValueError("needs id=ID")
    mux = _switch(opts.pop("mux", "off"), "mux")
    if backend == "null" and not opts:
        return chardev_id, "null", mux
    if backend == "stdio" and set(opts) <= {"signal"}:
        signal_off = "signal" in opts and not _switch(opts["signal"], "signal")
        return chardev_id, "stdio,signal=off" if signal_off else "stdio", mux
    if backend == "file" and set(opts) == {"path"}:
        return chardev_id, f"file:{opts['path']}", mux
    if backend == "socket":
        flags = "".join(f",{k}={opts.pop(k)}" for k in ("server", "wait", "nodelay")
                        if k in opts)
        if opts.pop("telnet", "off") != "off":
            raise ValueError("pyemu's sockets speak no telnet")
        if set(opts) == {"path"}:
            return chardev_id, f"unix:{opts['path']}{flags}", mux
        if "port" in opts and set(opts) <= {"host", "port"}:
            return chardev_id, f"tcp:{opts.get('host', '')}:{opts['port']}{flags}", mux
    if backend not in ("null", "stdio", "file", "socket"):
        raise ValueError(f"no chardev backend '{backend}' here: pyemu has null, stdio, "
                         "file and socket")
    raise ValueError(f"a {backend} chardev takes id, mux" + {
        "stdio": ", signal", "file": " and path", "null": "",
        "socket": ", path or host and port, server, wait, nodelay"}[backend])


def _switch(value: str, key: str) -> bool:
    if value not in ("on", "off"):
        raise ValueError(f"{key}={value}: expected on or off")
    return value == "on"
