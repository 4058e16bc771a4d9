"""Byte transports for migration and snapshots, spelled as QEMU's migration URIs.

DESIGN.md, "The stream": one stream format travels over any transport, and "transport is
distinct from serialisation": this module moves bytes and knows nothing of the stream or
the machine. The URI forms are the ones QEMU documents for ``migrate`` and ``-incoming``
(docs/devel/migration/main.rst, "Transports"; qemu-options.hx, ``-incoming``):

    tcp:HOST:PORT     HOST a name, an IPv4 address or a bracketed IPv6 address
                      (``tcp:[::1]:4444``); when listening, an empty HOST, ``0`` or
                      ``[::]`` means every address (IPv6 and IPv4 where the host has both)
    unix:PATH         a unix-domain stream socket
    file:PATH         the source writes the file, the destination reads it
    exec:COMMAND      ``/bin/sh -c COMMAND``: its stdin takes the bytes on the source,
                      its stdout gives them on the destination
    fd:N              a file descriptor the process inherited (a number; QEMU's names
                      registered with ``getfd`` are a monitor matter, not supported here)

Addresses, binding and connecting are emu/host/sockaddr.py's, shared with the chardev
sockets; its faults come back as TransportErrors naming the URI.

Outgoing: ``connect(uri, timeout)`` gives a ``Channel``. Incoming: ``listen(uri)`` acquires
the resource at once (binds the socket, opens the file, starts the command, checks the
descriptor), so a fault such as an address in use is reported before anything waits; then
``Listener.accept()`` gives the ``Channel``.

TLS (DESIGN.md, "Trust"): ``connect(uri, timeout, tls)`` and ``listen(uri, tls)`` with the
credentials of emu/host/tls.py run a TLS session over a tcp: or unix: socket; the other
schemes refuse it. The client checks the server's certificate and name (``tls.hostname``,
else the URI's host); the listener completes the handshake inside ``accept()``, within
HANDSHAKE_TIMEOUT, so a peer without the credentials (a plain client, a certificate from
another CA, a client that says nothing) is a TransportError there, never a Channel. The
records are made and read in memory (ssl.MemoryBIO): the socket is still written and read
by the code below, with MSG_NOSIGNAL and waits that abort() ends. A listener beyond
loopback without TLS logs a warning: whoever reaches it can send a stream.

Failure is always a ``TransportError`` whose one-line message starts with the URI: a peer
that goes away, a command that exits non-zero, a truncated read. ``file:`` writes a
temporary file next to the target and renames it only when ``close()`` succeeds, so a
failed or cancelled migration never leaves a truncated image under the target's name.

Threads (DESIGN.md, "Threads and time"): every blocking wait polls the descriptor together
with a wake-up pipe, so ``Channel.abort()`` and ``Listener.close()`` called from another
thread (``migrate_cancel``) unblock a read, write or accept in progress at once.
SIGPIPE never kills the process: sockets (and the socket pair an ``exec:`` command talks
through) are written with MSG_NOSIGNAL, and a pipe given as ``fd:N`` is written with
SIGPIPE blocked when its disposition is the default.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import os
import secrets
import select
import signal
import socket
import ssl
import stat
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType

from emu.host import sockaddr
from emu.host.sockaddr import AddressError, SocketError
from emu.host.tls import Tls, describe_failure

log = logging.getLogger("emu.migration")

SCHEMES = ("tcp", "unix", "file", "exec", "fd")
WRITE_BUFFER = 64 * 1024  # smaller writes are gathered up to this before a system call
READ_BUFFER = 64 * 1024  # reads are served from a buffer refilled this much at a time
MAX_IO = 1 << 20  # bytes per system call, so an abort never waits for a huge write
DRAIN_LIMIT = 5.0  # seconds abort() waits for a woken thread to leave the descriptor
EXIT_WAIT = 1.0  # seconds to let a command that stopped talking finish, for its status
HANDSHAKE_TIMEOUT = 10.0  # seconds a listener gives a peer to complete the TLS handshake
MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
PEER_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ESHUTDOWN)


class TransportError(Exception):
    """A transport fault; the message is one line: the URI, then what went wrong."""

    def __init__(self, uri: str, fault: str) -> None:
        super().__init__(f"{uri!r}: {fault}")
        self.uri, self.fault = uri, fault


@dataclass(frozen=True)
class Uri:
    """A parsed migration URI. Only the fields of its scheme are set."""

    text: str
    scheme: str
    host: str = ""  # tcp: a name or address, without brackets; "" or "0" = any address
    port: int = 0  # tcp:
    path: str = ""  # unix:, file:
    command: str = ""  # exec:
    fd: int = -1  # fd:

    def __str__(self) -> str:
        return self.text

    @property
    def socket_address(self) -> sockaddr.Address:
        """tcp: ``(host, port)``, unix: the path, as emu.host.sockaddr takes them."""
        return self.path if self.scheme == "unix" else (self.host, self.port)


# -- parsing --------------------------------------------------------------------------------

def parse_uri(uri: str) -> Uri:
    """Split ``uri`` into its parts; TransportError names the URI and what is wrong with it.

    Parsing resolves no name and touches no file: that happens in connect() and listen().
    """
    if not uri:
        raise TransportError(uri, "empty URI")
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme not in SCHEMES:
        what = f"unknown scheme {scheme!r}" if sep else "no scheme"
        raise TransportError(uri, f"{what} (expected tcp:, unix:, file:, exec: or fd:)")
    return _PARSERS[scheme](uri, rest)


def _parse_tcp(uri: str, rest: str) -> Uri:
    with _address_faults(uri):
        host, port = sockaddr.parse_host_port(rest)
    return Uri(uri, "tcp", host=host, port=port)


def _parse_unix(uri: str, path: str) -> Uri:
    with _address_faults(uri):
        return Uri(uri, "unix", path=sockaddr.check_unix_path(path))


@contextmanager
def _address_faults(uri: str) -> Iterator[None]:
    """An address or socket fault from emu.host.sockaddr, as this URI's TransportError."""
    try:
        yield
    except (AddressError, SocketError) as e:
        raise TransportError(uri, str(e)) from None


def _parse_file(uri: str, path: str) -> Uri:
    _check_path(uri, path)
    return Uri(uri, "file", path=path)


def _check_path(uri: str, path: str) -> None:
    if not path:
        raise TransportError(uri, "empty path")
    if "\0" in path:
        raise TransportError(uri, "path contains a NUL byte")


def _parse_exec(uri: str, command: str) -> Uri:
    if not command.strip():
        raise TransportError(uri, "empty command")
    if "\0" in command:
        raise TransportError(uri, "command contains a NUL byte")
    return Uri(uri, "exec", command=command)


def _parse_fd(uri: str, number: str) -> Uri:
    if not number:
        raise TransportError(uri, "missing file descriptor number")
    if not number.isascii() or not number.isdigit():
        raise TransportError(uri, f"bad file descriptor {number!r} (a decimal number)")
    return Uri(uri, "fd", fd=int(number))


_PARSERS = {"tcp": _parse_tcp, "unix": _parse_unix, "file": _parse_file,
            "exec": _parse_exec, "fd": _parse_fd}


def format_tcp(host: str, port: int) -> str:
    """The ``tcp:`` URI for an address, with IPv6 in brackets."""
    return f"tcp:{sockaddr.format_host_port(host, port)}"


# -- waiting that another thread can cancel --------------------------------------------------

class _Waiter:
    """Blocking waits on descriptors that ``cancel()`` from any thread ends at once.

    ``busy()`` brackets every use of the owner's descriptors, so the canceller can wait
    for the woken thread to leave them before they are closed (closing a descriptor
    another thread is still polling could hand its number to an unrelated file).
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.reason = ""  # set when cancelled: what the woken operation reports
        self._cond = threading.Condition()
        self._busy = 0
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._closed = False

    @property
    def cancelled(self) -> bool:
        return bool(self.reason)

    @contextmanager
    def busy(self) -> Iterator[None]:
        with self._cond:
            if self.reason:
                raise TransportError(self.uri, self.reason)
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    def wait(self, fd: int, events: int, timeout: float | None) -> None:
        """Until ``fd`` is ready for ``events`` (or hung up); TransportError if cancelled."""
        poll = select.poll()
        poll.register(fd, events)
        poll.register(self._wake_r, select.POLLIN)
        ready = poll.poll(None if timeout is None else max(0, int(timeout * 1000)))
        if self.reason:
            raise TransportError(self.uri, self.reason)
        if not ready:
            raise TransportError(self.uri, f"no progress for {timeout:g} s")

    def cancel(self, reason: str) -> bool:
        """Wake every wait with ``reason``; False if already cancelled or closed."""
        with self._cond:
            if self.reason or self._closed:
                return False
            self.reason = reason
            os.write(self._wake_w, b"x")
            return True

    def drain(self) -> bool:
        """Wait (a bounded time) until no thread is inside ``busy()``; False if one still is."""
        with self._cond:
            return self._cond.wait_for(lambda: self._busy == 0, timeout=DRAIN_LIMIT)

    def close(self) -> None:
        with self._cond:
            if not self._closed:
                self._closed = True
                os.close(self._wake_r)
                os.close(self._wake_w)


# -- descriptors -----------------------------------------------------------------------------

class _Descriptor:
    """One owned, non-blocking descriptor: a socket, a pipe or a regular file."""

    def __init__(self, handle: socket.socket | int) -> None:
        if isinstance(handle, socket.socket):
            # Through the socket object: a socket with a timeout would wait inside send().
            handle.setblocking(False)
            self.sock, self.fd = handle, handle.fileno()
        else:
            # For an inherited fd this changes the open file description it shares.
            os.set_blocking(handle, False)
            self.sock, self.fd = None, handle

    def unsent(self) -> int:
        """Bytes send() accepted but has not handed to the system yet (TLS records)."""
        return 0

    def handshake(self) -> int:
        """TLS: go on with the handshake (_TlsDescriptor); a plain descriptor has none."""
        return 0

    def send(self, view: memoryview) -> int:
        if self.sock is not None:
            return self.sock.send(view, MSG_NOSIGNAL)
        return _write_no_sigpipe(self.fd, view)

    def recv_into(self, view: memoryview) -> int:
        if self.sock is not None:
            return self.sock.recv_into(view)
        return os.readv(self.fd, [view])

    def end_output(self) -> None:
        """Tell a socket peer no more bytes follow (it reads EOF even if we stay open)."""
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the peer is gone already; close() reports nothing new

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        else:
            os.close(self.fd)


TlsWrap = Callable[[ssl.MemoryBIO, ssl.MemoryBIO], ssl.SSLObject]


class _TlsDescriptor(_Descriptor):
    """A socket with a TLS session on it, run over memory buffers.

    send() takes plaintext and returns once TLS has made it into records; records the
    socket does not take at once wait in ``_unsent`` and go first on the next send()
    (Channel._send_all keeps calling until ``unsent`` is 0). recv_into() reads the socket
    only when TLS has no plaintext buffered, so a poll never waits for bytes already read.
    Both raise BlockingIOError as a socket does, and ssl.SSLError when the session fails.
    """

    def __init__(self, sock: socket.socket, wrap: TlsWrap) -> None:
        super().__init__(sock)
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = wrap(self._in, self._out)
        self._unsent = bytearray()

    def unsent(self) -> int:
        return len(self._unsent) + self._out.pending

    def handshake(self) -> int:
        """Go on with the handshake: 0 once it is done, else the poll event it waits for."""
        while True:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                if self._push():
                    return select.POLLOUT
                if not self._pull():
                    return select.POLLIN
                continue
            except ssl.SSLError:
                self._push_what_fits()  # the alert that tells the peer why
                raise
            return select.POLLOUT if self._push() else 0

    def send(self, view: memoryview) -> int:
        try:
            if self._push():
                raise BlockingIOError(errno.EAGAIN, "records still unsent")
            if not view:
                return 0
            n = self._tls.write(view)
            self._push()
        except OSError as e:
            if _peer_gone(e):
                self._raise_alert()
            raise
        return n

    def _raise_alert(self) -> None:
        """A peer that refused the session sent an alert before it left: raise it as the
        ssl.SSLError it is, rather than let the write's broken pipe hide the reason."""
        while True:
            try:
                self._tls.read(READ_BUFFER)  # an alert raises here; plaintext is of no use
                continue
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return
            try:
                if not self._pull():
                    return
            except OSError:
                return

    def recv_into(self, view: memoryview) -> int:
        while True:
            try:
                return self._tls.read(len(view), view)
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                # close_notify, or a peer gone without one: either way the end of the
                # bytes; a stream cut short is the reader's to notice (lengths, checksums)
                return 0
            if not self._pull():
                raise BlockingIOError(errno.EAGAIN, "no TLS record yet")

    def end_output(self) -> None:
        try:
            self._tls.unwrap()  # queues close_notify; the peer's is not awaited
        except ssl.SSLError:
            pass
        self._push_what_fits()
        super().end_output()

    def _push(self) -> bool:
        """Hand the records made so far to the socket; True if it would not take them all."""
        self._unsent += self._out.read()
        while self._unsent:
            try:
                n = self.sock.send(self._unsent, MSG_NOSIGNAL)
            except BlockingIOError:
                return True
            del self._unsent[:n]
        return False

    def _push_what_fits(self) -> None:
        """A last record (an alert, close_notify) without waiting: a peer that does not
        read gets a plain end of the connection instead."""
        try:
            self._push()
        except OSError:
            pass

    def _pull(self) -> bool:
        """Feed what the socket has to TLS; False if nothing has arrived yet."""
        try:
            data = self.sock.recv(READ_BUFFER)
        except BlockingIOError:
            return False
        if data:
            self._in.write(data)
        else:
            self._in.write_eof()
        return True


def _write_no_sigpipe(fd: int, view: memoryview) -> int:
    """os.write, but a reader that went away is EPIPE even where SIGPIPE is not ignored.

    Python ignores SIGPIPE at start-up, so normally this is a plain write. If a program
    restored the default (which kills), block the signal for this thread around the
    write and consume the one a broken pipe raises before unblocking.
    """
    handler = signal.getsignal(signal.SIGPIPE)
    if handler is signal.SIG_IGN or callable(handler):
        return os.write(fd, view)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
    try:
        return os.write(fd, view)
    except BrokenPipeError:
        signal.sigtimedwait({signal.SIGPIPE}, 0)
        raise
    finally:
        if signal.SIGPIPE not in old:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _peer_gone(e: OSError) -> bool:
    return e.errno in PEER_GONE


# -- channels --------------------------------------------------------------------------------

OPEN, CLOSING, CLOSED, ABORTED = "open", "closing", "closed", "aborted"


class Channel:
    """A byte pipe to or from the other side of a migration.

    ``write()`` gathers small writes in a buffer (``flush()`` sends it); ``bytes_sent``
    and ``bytes_received`` count bytes at this API: written by the caller, handed to the
    caller. ``timeout`` (seconds, None = forever) bounds every wait for the peer.
    ``close()`` finishes the transfer and reports any fault (file rename, command exit
    status); ``abort()`` drops it, from any thread, and is a no-op after close().
    """

    def __init__(self, uri: str, handle: socket.socket | int, *,
                 readable: bool, writable: bool, peer: object = None,
                 tls: TlsWrap | None = None) -> None:
        self.uri = uri
        self.peer = peer  # the remote address of an accepted socket, for messages and logs
        self.timeout: float | None = None
        self.bytes_sent = 0
        self.bytes_received = 0
        self.readable, self.writable = readable, writable
        self._io = _Descriptor(handle) if tls is None else _TlsDescriptor(handle, tls)
        self._waiter = _Waiter(uri)
        self._lock = threading.Lock()
        self._state = OPEN
        self._released = False
        self._wbuf = bytearray()
        self._rbuf = bytearray()
        self._rpos = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uri} {self._state}>"

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    @property
    def closed(self) -> bool:
        return self._state in (CLOSED, ABORTED)

    # -- writing ------------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data`` (or buffer it, if small); TransportError if the peer left."""
        self._require(self.writable, "is read-only")
        view = memoryview(data).cast("B")
        if len(self._wbuf) + len(view) > WRITE_BUFFER:
            self.flush()
        if len(view) < WRITE_BUFFER:
            self._wbuf += view
        else:
            self._send_all(view)
        self.bytes_sent += len(view)

    def flush(self) -> None:
        """Hand every buffered byte to the operating system."""
        if self._wbuf:
            # A fresh buffer, not clear(): a view of the old one may outlive a failed send.
            pending, self._wbuf = self._wbuf, bytearray()
            self._send_all(memoryview(pending))

    def _send_all(self, view: memoryview) -> None:
        with self._waiter.busy():
            while view or self._io.unsent():
                try:
                    view = view[self._io.send(view[:MAX_IO]):]
                except BlockingIOError:
                    self._waiter.wait(self._io.fd, select.POLLOUT, self.timeout)
                except ssl.SSLError as e:
                    raise self._error(f"TLS: {describe_failure(e)}") from None
                except OSError as e:
                    raise self._write_error(e) from None

    def _write_error(self, e: OSError) -> TransportError:
        if _peer_gone(e):
            return self._error(f"peer closed the connection ({self.bytes_sent} bytes written)"
                               f"{self._peer_note()}")
        return self._error(f"write failed: {e.strerror}")

    # -- reading ------------------------------------------------------------------------
    def read_exact(self, n: int) -> bytes:
        """Exactly ``n`` bytes; TransportError if the stream ends first."""
        out = bytearray(n)
        self.read_into(memoryview(out))
        return bytes(out)

    def read_into(self, view: memoryview) -> None:
        """Fill ``view`` exactly (bulk data lands where it belongs, with no copy in
        between); TransportError if the stream ends first."""
        self._require(self.readable, "is write-only")
        n = len(view)
        got = self._take_buffered(view)
        while got < n:
            if n - got >= READ_BUFFER:
                k = self._recv_into(view[got:])
            elif self._refill():
                k = self._take_buffered(view[got:])
            else:
                k = 0
            if k == 0:
                self.bytes_received += got
                raise self._error(f"connection closed after {got} of {n} bytes"
                                  f"{self._peer_note()}")
            got += k
        self.bytes_received += n

    def read_some(self, max_bytes: int) -> bytes:
        """Between 1 and ``max_bytes`` bytes as soon as any arrive; b"" at the end."""
        self._require(self.readable, "is write-only")
        if self._rpos == len(self._rbuf) and max_bytes > 0:
            self._refill()
        end = min(len(self._rbuf), self._rpos + max_bytes)
        data = bytes(self._rbuf[self._rpos:end])
        self._rpos = end
        self.bytes_received += len(data)
        return data

    def _take_buffered(self, view: memoryview) -> int:
        k = min(len(view), len(self._rbuf) - self._rpos)
        view[:k] = self._rbuf[self._rpos:self._rpos + k]
        self._rpos += k
        return k

    def _refill(self) -> int:
        """Read what is available (at least one byte, or 0 at the end) into the buffer."""
        self._rbuf = bytearray(READ_BUFFER)
        self._rpos = 0
        k = self._recv_into(memoryview(self._rbuf))
        del self._rbuf[k:]
        return k

    def _recv_into(self, view: memoryview) -> int:
        with self._waiter.busy():
            while True:
                try:
                    return self._io.recv_into(view[:MAX_IO])
                except BlockingIOError:
                    self._waiter.wait(self._io.fd, select.POLLIN, self.timeout)
                except ssl.SSLError as e:
                    raise self._error(f"TLS: {describe_failure(e)}") from None
                except OSError as e:
                    if _peer_gone(e):
                        raise self._error("connection reset by peer after "
                                          f"{self.bytes_received} bytes"
                                          f"{self._peer_note()}") from None
                    raise self._error(f"read failed: {e.strerror}") from None

    def handshake(self, timeout: float) -> None:
        """Complete the TLS handshake of a channel made with ``tls``, within ``timeout``
        seconds; TransportError says why it failed."""
        deadline = time.monotonic() + timeout
        with self._waiter.busy():
            while True:
                try:
                    events = self._io.handshake()
                except ssl.SSLError as e:
                    raise self._error(f"TLS handshake{self._with_peer()} failed: "
                                      f"{describe_failure(e)}") from None
                except OSError as e:
                    raise self._error(f"TLS handshake{self._with_peer()} failed: "
                                      f"{e.strerror}") from None
                if not events:
                    return
                try:
                    self._waiter.wait(self._io.fd, events, deadline - time.monotonic())
                except TransportError:
                    if self._waiter.cancelled:
                        raise
                    raise self._error(f"no TLS handshake{self._with_peer()} within "
                                      f"{timeout:g} s") from None

    def _with_peer(self) -> str:
        if isinstance(self.peer, tuple):
            return f" with {sockaddr.format_host_port(*self.peer[:2])}"
        return ""

    # -- finishing ----------------------------------------------------------------------
    def close(self) -> None:
        """Send what is buffered and finish; TransportError if the transfer failed."""
        with self._lock:
            if self._state != OPEN:
                if self._state == ABORTED:
                    raise self._error("aborted")
                return
            self._state = CLOSING
        try:
            with self._waiter.busy():
                self.flush()
                self._before_release()
        except BaseException:
            self.abort()
            raise
        self._release()
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise
        with self._lock:
            if self._state == CLOSING:
                self._state = CLOSED

    def abort(self) -> None:
        """Drop the transfer, from any thread: wake blocked calls, discard partial results."""
        with self._lock:
            if self._state in (CLOSED, ABORTED):
                return
            self._state = ABORTED
        self._waiter.cancel("aborted")
        self._interrupt()
        if self._waiter.drain():
            self._release()
        # else a thread is stuck in a system call on the descriptor (a hung NFS write):
        # leaking the descriptor is better than closing a number it may still use.
        self._discard()

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._io.close()
        self._waiter.close()

    # Hooks for the schemes that need more than closing a descriptor.
    def _before_release(self) -> None:
        """On close, while the descriptor is still open."""
        self._io.end_output()

    def _finish(self) -> None:
        """On close, after the descriptor is closed: commit the result or raise."""

    def _interrupt(self) -> None:
        """On abort, before waiting for blocked threads: stop what could keep them."""

    def _discard(self) -> None:
        """On abort, after the descriptor is closed: remove partial results."""

    def _peer_note(self) -> str:
        """Extra words for a peer that went away (a command's exit status)."""
        return ""

    def _require(self, allowed: bool, fault: str) -> None:
        if self._state in (CLOSED, ABORTED):
            raise self._error("aborted" if self._state == ABORTED else "this channel is closed")
        if not allowed:
            raise self._error(f"this channel {fault}")

    def _error(self, fault: str) -> TransportError:
        return TransportError(self.uri, fault)


class _FileWriter(Channel):
    """``file:`` on the source: a temporary file beside the target, renamed on close."""

    def __init__(self, uri: str, path: str) -> None:
        self.path = os.path.abspath(path)
        if os.path.isdir(self.path):
            raise TransportError(uri, "is a directory")
        self.temp, fd = _create_temp(uri, self.path)
        super().__init__(uri, fd, readable=False, writable=True)

    def _before_release(self) -> None:
        try:
            os.fsync(self._io.fd)  # the rename must never publish blocks not yet on disk
        except OSError as e:
            raise self._error(f"cannot write {self.temp}: {e.strerror}") from None

    def _finish(self) -> None:
        with self._lock:  # abort() must not remove the temporary file under a rename
            if self._state == ABORTED:
                raise self._error("aborted")
            try:
                os.replace(self.temp, self.path)
            except OSError as e:
                raise self._error(f"cannot rename {self.temp}: {e.strerror}") from None
            self._state = CLOSED
        _sync_directory(os.path.dirname(self.path))

    def _discard(self) -> None:
        try:
            os.unlink(self.temp)
        except FileNotFoundError:
            pass


def _create_temp(uri: str, path: str) -> tuple[str, int]:
    """A new file ``.NAME.<random>.part`` in the target's directory (so rename is atomic)."""
    directory, name = os.path.split(path)
    while True:
        temp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.part")
        try:
            # 0o666 so that, after umask, the image gets the permissions a plain open gives.
            return temp, os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                                 0o666)
        except FileExistsError:
            continue
        except OSError as e:
            raise TransportError(uri, f"cannot create a file in {directory}: {e.strerror}") \
                from None


def _sync_directory(directory: str) -> None:
    """Make the rename itself durable; some filesystems cannot, which is no error here."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _CommandChannel(Channel):
    """``exec:``: a shell command at the other end of a socket pair.

    A socket pair rather than a pipe, so writes use MSG_NOSIGNAL. The command runs in a
    session of its own so abort() can kill a whole pipeline (``gzip | ssh ...``), not just
    the shell. Its other standard stream goes to our stderr (stdout may be a console),
    and on the destination its stdin is /dev/null (stdin may be the monitor).
    """

    def __init__(self, uri: str, command: str, *, outgoing: bool) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        stdio = {"stdin": theirs, "stdout": 2} if outgoing else \
            {"stdin": subprocess.DEVNULL, "stdout": theirs}
        try:
            self.process = subprocess.Popen(["/bin/sh", "-c", command], start_new_session=True,
                                            **stdio)  # type: ignore[call-overload]
        except OSError as e:
            ours.close()
            raise TransportError(uri, f"cannot start the command: {e.strerror}") from None
        finally:
            theirs.close()
        super().__init__(uri, ours, readable=not outgoing, writable=outgoing)

    def _finish(self) -> None:
        try:
            status = self.process.wait(self.timeout)
        except subprocess.TimeoutExpired:
            raise self._error(f"the command did not exit within {self.timeout:g} s") from None
        if self._state == ABORTED:
            raise self._error("aborted")
        if status != 0:
            raise self._error(f"the command {_describe_status(status)}")

    def _interrupt(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # the group is gone already

    def _discard(self) -> None:
        self.process.wait()

    def _peer_note(self) -> str:
        try:
            status = self.process.wait(EXIT_WAIT)
        except subprocess.TimeoutExpired:
            return ""
        return f" (the command {_describe_status(status)})" if status else ""


def _describe_status(status: int) -> str:
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = str(-status)
        return f"was killed by signal {name}"
    return f"exited with status {status}"


# -- outgoing --------------------------------------------------------------------------------

class _PlainClient(Channel):
    """tcp: or unix: on the sending side, without TLS."""

    def _peer_note(self) -> str:
        # A TLS listener ends a connection whose first bytes are no TLS handshake, silently.
        return "" if self.bytes_received else \
            " without a word (a destination that requires TLS drops a source without tls-creds)"


def connect(uri: str, timeout: float, tls: Tls | None = None) -> Channel:
    """Open the sending side of a migration to ``uri``; ``timeout`` bounds connecting
    (and the TLS handshake, with ``tls``)."""
    u = parse_uri(uri)
    _check_tls(u, tls, server_side=False)
    if u.scheme in ("tcp", "unix"):
        with _address_faults(uri):
            sock = sockaddr.connect(u.socket_address, timeout)
        if tls is None:
            return _PlainClient(uri, sock, readable=True, writable=True)
        # The name the server's certificate must carry: tls-hostname, else the URI's host.
        hostname = tls.hostname or ((u.host or "localhost") if u.scheme == "tcp" else "")
        channel = _tls_channel(uri, sock, tls, server_side=False, hostname=hostname)
        _secure(channel, timeout)
        return channel
    if u.scheme == "file":
        return _FileWriter(uri, u.path)
    if u.scheme == "exec":
        return _CommandChannel(uri, u.command, outgoing=True)
    return _fd_channel(u, outgoing=True)


def _check_tls(u: Uri, tls: Tls | None, *, server_side: bool) -> None:
    """Before anything is opened: TLS only over a socket, with credentials for this side."""
    if tls is None:
        return
    if u.scheme not in ("tcp", "unix"):
        raise TransportError(u.text, "TLS (tls-creds) is for tcp: and unix: only")
    try:
        tls.credentials.check_endpoint(server_side=server_side)
    except ValueError as e:
        raise TransportError(u.text, str(e)) from None


def _tls_channel(uri: str, sock: socket.socket, tls: Tls, *, server_side: bool,
                 hostname: str = "", peer: object = None) -> Channel:
    """A Channel with a TLS session over ``sock``, before its handshake."""
    def wrap(incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO) -> ssl.SSLObject:
        return tls.credentials.wrap(incoming, outgoing, server_side=server_side,
                                    hostname=hostname)

    try:
        return Channel(uri, sock, readable=True, writable=True, peer=peer, tls=wrap)
    except ValueError as e:  # a host name TLS cannot carry
        sock.close()
        raise TransportError(uri, str(e)) from None


def _secure(channel: Channel, timeout: float) -> None:
    """Complete the handshake of a new TLS channel, or drop it."""
    try:
        channel.handshake(timeout)
    except TransportError:
        channel.abort()
        raise


def _fd_channel(u: Uri, *, outgoing: bool) -> Channel:
    """An inherited descriptor, checked to be open and open in the right direction."""
    try:
        mode = os.fstat(u.fd).st_mode
        access = fcntl.fcntl(u.fd, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError:
        raise TransportError(u.text, f"file descriptor {u.fd} is not open") from None
    if stat.S_ISDIR(mode):
        raise TransportError(u.text, f"file descriptor {u.fd} is a directory")
    unusable = os.O_RDONLY if outgoing else os.O_WRONLY
    if access == unusable:
        way = "writing" if outgoing else "reading"
        raise TransportError(u.text, f"file descriptor {u.fd} is not open for {way}")
    handle: socket.socket | int = socket.socket(fileno=u.fd) if stat.S_ISSOCK(mode) else u.fd
    return Channel(u.text, handle, readable=not outgoing or access == os.O_RDWR,
                   writable=outgoing or access == os.O_RDWR)


# -- incoming --------------------------------------------------------------------------------

class Listener(ABC):
    """The receiving side before the transfer starts; ``accept()`` gives the Channel.

    ``address`` is what was bound or opened: ``(host, port)`` for tcp: (the real port when
    0 was asked for), the socket path for unix:, the file path, the command, the fd.
    ``bound_uri`` is a URI for it that connect() on this host can use.
    """

    def __init__(self, uri: str, address: object, bound_uri: str) -> None:
        self.uri, self.address, self.bound_uri = uri, address, bound_uri

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def accept(self, timeout: float | None = None) -> Channel:
        """The channel of the one transfer this listener takes."""

    @abstractmethod
    def close(self) -> None:
        """Stop listening, from any thread; a blocked accept() raises TransportError."""

    @property
    def closed(self) -> bool:
        """Whether close() was called (an accept() that failed for that is final)."""
        return False


class _SocketListener(Listener):
    """tcp: and unix:: a bound, listening socket; accept() waits for one connection.

    With ``tls``, accept() also runs the handshake: a peer without the credentials is a
    TransportError, and the listener can accept again.
    """

    def __init__(self, uri: str, listening: sockaddr.ListeningSocket,
                 tls: Tls | None = None) -> None:
        address = listening.address
        bound = f"unix:{address}" if isinstance(address, str) else format_tcp(*address)
        super().__init__(uri, address, bound)
        self._listening = listening
        self.sock = listening.sock
        self.sock.setblocking(False)
        self._waiter = _Waiter(uri)
        self._closed = False
        self._tls = tls
        self._lock = threading.Lock()
        self._handshaking: Channel | None = None  # close() aborts it

    @property
    def closed(self) -> bool:
        return self._waiter.cancelled

    def accept(self, timeout: float | None = None) -> Channel:
        channel = self._accept(timeout)
        if self._tls is None:
            return channel
        with self._lock:
            self._handshaking = channel
        try:
            if self._waiter.cancelled:  # close() came before it could see the channel
                channel.abort()
            _secure(channel, HANDSHAKE_TIMEOUT)
        finally:
            with self._lock:
                self._handshaking = None
        return channel

    def _accept(self, timeout: float | None) -> Channel:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._waiter.busy():
            while True:
                try:
                    conn, peer = self._listening.accept()
                except BlockingIOError:
                    left = None if deadline is None else deadline - time.monotonic()
                    try:
                        self._waiter.wait(self.sock.fileno(), select.POLLIN, left)
                    except TransportError as e:
                        if self._waiter.cancelled:
                            raise
                        raise TransportError(self.uri, f"no connection within {timeout:g} s") \
                            from e
                    continue
                except OSError as e:
                    raise TransportError(self.uri, f"accept failed: {e.strerror}") from None
                if self._tls is None:
                    return Channel(self.uri, conn, readable=True, writable=True, peer=peer)
                return _tls_channel(self.uri, conn, self._tls, server_side=True, peer=peer)

    def close(self) -> None:
        if not self._waiter.cancel("listener closed"):
            return
        with self._lock:
            if self._handshaking is not None:
                self._handshaking.abort()
        if not self._waiter.drain():
            return
        self._waiter.close()
        self._listening.close()


class _OneShotListener(Listener):
    """file:, exec:, fd:: the source is opened by listen(); accept() hands it over once."""

    def __init__(self, uri: str, address: object, channel: Channel) -> None:
        super().__init__(uri, address, uri)
        self._channel: Channel | None = channel
        self._lock = threading.Lock()

    def accept(self, timeout: float | None = None) -> Channel:
        with self._lock:
            channel, self._channel = self._channel, None
        if channel is None:
            raise TransportError(self.uri, "already accepted or closed")
        return channel

    def close(self) -> None:
        with self._lock:
            channel, self._channel = self._channel, None
        if channel is not None:
            channel.abort()


def listen(uri: str, tls: Tls | None = None) -> Listener:
    """Prepare the receiving side: bind, open or start now, so faults show at once.
    With ``tls``, only a peer that completes the handshake is accepted."""
    u = parse_uri(uri)
    _check_tls(u, tls, server_side=True)
    if u.scheme in ("tcp", "unix"):
        with _address_faults(uri):
            listening = sockaddr.listen(u.socket_address)
        if tls is None and not _loopback(listening.address):
            log.warning("%r: listening beyond loopback without TLS: the migration stream is "
                        "unauthenticated and unencrypted (tls-creds turns TLS on)", uri)
        return _SocketListener(uri, listening, tls)
    if u.scheme == "file":
        return _OneShotListener(uri, u.path, _open_file(u))
    if u.scheme == "exec":
        return _OneShotListener(uri, u.command, _CommandChannel(uri, u.command, outgoing=False))
    return _OneShotListener(uri, u.fd, _fd_channel(u, outgoing=False))


def _loopback(address: sockaddr.Address) -> bool:
    """Whether only this host can reach ``address`` (a unix socket, a loopback address)."""
    if isinstance(address, str):
        return True
    try:
        return ipaddress.ip_address(address[0]).is_loopback
    except ValueError:
        return False


def _open_file(u: Uri) -> Channel:
    try:
        fd = os.open(u.path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise TransportError(u.text, f"cannot open: {e.strerror}") from None
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        raise TransportError(u.text, "is a directory")
    return Channel(u.text, fd, readable=True, writable=False)
