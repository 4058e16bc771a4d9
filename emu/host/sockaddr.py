"""Stream socket addresses on the host: parsing, listening, connecting, socket files.

One implementation for everything that opens a ``tcp:`` or ``unix:`` socket: the chardev
backends (emu/host/chardev.py: serial ports and monitors) and the migration transports
(emu/migration/transport.py). The spellings are QEMU's (qemu-options.hx, ``-chardev
socket`` and ``-incoming``):

    HOST:PORT   HOST is a name, an IPv4 address or an IPv6 address in brackets
                (``[::1]:4444``); PORT is a decimal number, 0 to 65535
    PATH        a unix-domain socket file; its name must fit sun_path

An address is ``(host, port)`` (the host without brackets) or a path (``str``). When
listening, an empty host, ``0`` or ``::`` means every address: one dual-stack IPv6
socket that takes IPv4 clients too, or plain IPv4 on a host without IPv6. When
connecting, an empty host means this host. A name is resolved when the socket is opened,
and every address it resolves to is tried in turn, so ``localhost`` finds a server bound
to either 127.0.0.1 or ::1.

A unix listener replaces a socket file left behind by an earlier run (never any other
kind of file), and on close removes its own file, unless another listener has bound a
new one at that path since.

Faults: ``AddressError`` (a ValueError) for an address that is malformed or does not
resolve, ``SocketError`` (an OSError, errno kept) for a bind or connect the system
refused. Their message names the fault alone (``bad port 'x' (0 to 65535)``); each
caller puts its own context in front: the chardev spec, the migration URI.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import stat
import time

UNIX_PATH_MAX = 107  # sun_path holds 108 bytes including the terminating NUL
ANY_HOSTS = ("", "0", "::")  # listening on one of these means every address
LOOPBACK = "127.0.0.1"
BACKLOG = 1  # both users serve one peer at a time
# Binding the IPv4 fallback cannot help with these: the port is taken or forbidden.
NO_FALLBACK = (errno.EADDRINUSE, errno.EACCES)

Address = tuple[str, int] | str


class AddressError(ValueError):
    """An address that is malformed or does not resolve; the message is the fault alone."""


class SocketError(OSError):
    """The system refused a bind or connect; ``errno`` is kept, the message is the fault."""

    def __init__(self, code: int | None, fault: str) -> None:
        super().__init__(code, fault)

    def __str__(self) -> str:
        return self.strerror


# -- parsing ------------------------------------------------------------------------------

def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` as ``(host, port)``, IPv6 brackets removed; nothing is resolved yet."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise AddressError("tcp: wants HOST:PORT")
    if not port_text:
        raise AddressError("missing port")
    if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 0xFFFF:
        raise AddressError(f"bad port {port_text!r} (0 to 65535)")
    return _parse_host(host), int(port_text)


def _parse_host(host: str) -> str:
    if host.startswith("[") or host.endswith("]"):
        inner = host[1:-1]
        if not (host.startswith("[") and host.endswith("]")) or "[" in inner or "]" in inner:
            raise AddressError(f"unbalanced brackets in host {host!r}")
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise AddressError(f"bad IPv6 address {inner!r}") from None
        return inner
    if ":" in host:
        raise AddressError(f"IPv6 address {host!r} must be in brackets: tcp:[{host}]:PORT")
    if any(c.isspace() or not c.isprintable() for c in host):
        raise AddressError(f"bad host {host!r}")
    return host


def control_listen_host(host: str) -> str:
    """Where a control socket (QMP, a monitor's chardev server) listens for ``host``:
    loopback when it is empty, since whoever reaches it commands the machine; an
    explicit ``0.0.0.0``, ``[::]`` or name listens where it says."""
    return host or LOOPBACK


def check_unix_path(path: str) -> str:
    """``path`` if it can name a unix socket: not empty, no NUL, short enough for sun_path."""
    if not path:
        raise AddressError("empty path")
    if "\0" in path:
        raise AddressError("path contains a NUL byte")
    size = len(os.fsencode(path))
    if size > UNIX_PATH_MAX:
        raise AddressError(f"socket path is {size} bytes; at most {UNIX_PATH_MAX} fit")
    return path


def format_host_port(host: str, port: int) -> str:
    """The ``HOST:PORT`` text for an address, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _describe(address: object) -> str:
    if isinstance(address, tuple):
        return format_host_port(*address[:2])
    return str(address)


def _resolve(host: str, port: int, *, passive: bool) -> list[tuple[int, tuple]]:
    """Every ``(family, sockaddr)`` that ``host`` names, in the resolver's order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE if passive else 0)
    except socket.gaierror as e:
        raise AddressError(f"cannot resolve host {host!r}: {e.strerror}") from None
    except UnicodeError as e:  # a name IDNA cannot encode
        raise AddressError(f"cannot resolve host {host!r}: {e}") from None
    return [(family, address) for family, _, _, _, address in infos]


def warm_resolver() -> None:
    """The C library's resolver reads its configuration and loads its modules at its
    first use, milliseconds here: done at start-up, so that a migration's connect (the
    source waits on it) does not pay for it."""
    try:
        socket.getaddrinfo("localhost", 0, type=socket.SOCK_STREAM)
    except OSError:
        pass  # no resolver here: the real lookup will say so


def _joined(faults: list[SocketError]) -> SocketError:
    """One error for all the addresses tried: each distinct fault once, in order."""
    text = "; ".join(dict.fromkeys(str(f) for f in faults))
    return SocketError(faults[-1].errno, text)


# -- listening ----------------------------------------------------------------------------

class ListeningSocket:
    """A bound, listening stream socket.

    ``address`` is what it listens on: ``(host, port)`` with the real port when 0 was
    asked for, or the socket path. ``close()`` also removes the socket file of a unix
    listener if it is still ours.
    """

    def __init__(self, sock: socket.socket, own_file: tuple[str, int] | None = None) -> None:
        self.sock = sock
        name = sock.getsockname()
        self.address: Address = name if isinstance(name, str) else name[:2]
        self._own_file = own_file  # (absolute path, inode) of the socket file we created

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self) -> tuple[socket.socket, object]:
        """The next connection and its peer address; OSError (BlockingIOError...) as is."""
        conn, peer = self.sock.accept()
        if conn.family != socket.AF_UNIX:
            _no_delay(conn)
        return conn, peer

    def close(self) -> None:
        self.sock.close()
        own, self._own_file = self._own_file, None
        if own is not None:
            _remove_own_socket_file(*own)


def listen(address: Address, backlog: int = BACKLOG) -> ListeningSocket:
    """Bind and listen on a ``(host, port)`` or a unix socket path."""
    if isinstance(address, str):
        return listen_unix(address, backlog)
    return listen_tcp(*address, backlog=backlog)


def listen_tcp(host: str, port: int, backlog: int = BACKLOG) -> ListeningSocket:
    """Listen on ``host`` (any address for ``""``, ``0``, ``::``), SO_REUSEADDR set."""
    if host in ANY_HOSTS:
        try:
            return ListeningSocket(_bind(socket.AF_INET6, ("::", port), backlog,
                                         dual_stack=True))
        except SocketError as e:
            if host == "::" or e.errno in NO_FALLBACK:
                raise
        return ListeningSocket(_bind(socket.AF_INET, ("0.0.0.0", port), backlog))
    faults = []
    for family, address in _resolve(host, port, passive=True):
        try:
            return ListeningSocket(_bind(family, address, backlog))
        except SocketError as e:
            faults.append(e)
    raise _joined(faults)


def listen_unix(path: str, backlog: int = BACKLOG) -> ListeningSocket:
    """Listen on a unix socket file, replacing a stale one left by an earlier run."""
    check_unix_path(path)
    remove_stale_socket_file(path)
    sock = _bind(socket.AF_UNIX, path, backlog)
    try:
        inode = os.lstat(path).st_ino
    except OSError as e:
        sock.close()
        raise SocketError(e.errno, f"cannot listen on {path}: {e.strerror}") from None
    return ListeningSocket(sock, (os.path.abspath(path), inode))


def _bind(family: int, address: object, backlog: int, *,
          dual_stack: bool = False) -> socket.socket:
    where = _describe(address)
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        raise SocketError(e.errno, f"cannot listen on {where}: {e.strerror}") from None
    try:
        if family != socket.AF_UNIX:
            # A new listener may take over the port of one that just ended (TIME_WAIT).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if dual_stack:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise SocketError(e.errno, f"cannot listen on {where}: {e.strerror}") from None
    return sock


# -- connecting ---------------------------------------------------------------------------

def connect(address: Address, timeout: float | None = None) -> socket.socket:
    """A blocking socket connected to a ``(host, port)`` or a unix socket path.

    ``timeout`` (seconds, None = as long as the system takes) bounds all attempts together.
    """
    if isinstance(address, str):
        return connect_unix(address, timeout)
    return connect_tcp(*address, timeout=timeout)


def connect_tcp(host: str, port: int, timeout: float | None = None) -> socket.socket:
    """Connect to each address ``host`` resolves to until one answers; TCP_NODELAY set."""
    if port == 0:
        raise AddressError("port 0 is only for listening")
    deadline = None if timeout is None else time.monotonic() + timeout
    faults = []
    for family, address in _resolve(host or "localhost", port, passive=False):
        try:
            sock = _connect(family, address, deadline, timeout)
        except SocketError as e:
            faults.append(e)
            continue
        _no_delay(sock)
        return sock
    raise _joined(faults)


def connect_unix(path: str, timeout: float | None = None) -> socket.socket:
    check_unix_path(path)
    deadline = None if timeout is None else time.monotonic() + timeout
    return _connect(socket.AF_UNIX, path, deadline, timeout)


def _connect(family: int, address: object, deadline: float | None,
             timeout: float | None) -> socket.socket:
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        raise SocketError(e.errno, f"cannot connect: {e.strerror}") from None
    try:
        if deadline is not None:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
        sock.connect(address)
        sock.settimeout(None)
    except OSError as e:
        sock.close()
        if isinstance(e, TimeoutError) and e.errno is None:  # our deadline, not the kernel's
            raise SocketError(errno.ETIMEDOUT, f"cannot connect within {timeout:g} s") from None
        raise SocketError(e.errno, f"cannot connect: {e.strerror}") from None
    return sock


def _no_delay(sock: socket.socket) -> None:
    # Both users send small interactive messages or do their own batching.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# -- socket files -------------------------------------------------------------------------

def remove_stale_socket_file(path: str) -> None:
    """Remove a socket file at ``path`` so bind() can create it again; other files stay."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


def _remove_own_socket_file(path: str, inode: int) -> None:
    """Remove our socket file, unless someone has since bound another at that path."""
    try:
        if os.lstat(path).st_ino == inode:
            os.unlink(path)
    except FileNotFoundError:
        pass
