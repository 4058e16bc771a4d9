"""Socket addresses: HOST:PORT parsing, any-address listening, connecting to every resolved
address, unix socket paths and socket files; and the chardev behaviours that rest on it."""

from __future__ import annotations

import errno
import os
import socket

import pytest
from hostnet import has_ipv6_loopback, needs_ipv6

from emu.host import sockaddr
from emu.host.chardev import parse_chardev
from emu.host.sockaddr import AddressError, SocketError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def round_trip(listening: sockaddr.ListeningSocket, client: socket.socket) -> None:
    conn, _ = listening.accept()
    with conn, client:
        client.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        conn.sendall(b"pong")
        assert client.recv(4) == b"pong"


# -- parsing ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:4444", ("127.0.0.1", 4444)),
    ("localhost:0", ("localhost", 0)),
    (":4444", ("", 4444)),
    ("0:4444", ("0", 4444)),
    ("[::]:4444", ("::", 4444)),
    ("[::1]:65535", ("::1", 65535)),
    ("[fe80::1%lo]:22", ("fe80::1%lo", 22)),
])
def test_parse_host_port(text, expected):
    assert sockaddr.parse_host_port(text) == expected
    host, port = expected
    if host:
        assert sockaddr.format_host_port(host, port) == text


@pytest.mark.parametrize("text, fault", [
    ("4444", "tcp: wants HOST:PORT"),
    ("host:", "missing port"),
    ("host:65536", "bad port '65536' (0 to 65535)"),
    ("host:http", "bad port 'http' (0 to 65535)"),
    ("host:-1", "bad port '-1' (0 to 65535)"),
    ("host:４４", "bad port '４４' (0 to 65535)"),  # digits, but not ASCII ones
    ("::1:4444", "IPv6 address '::1' must be in brackets: tcp:[::1]:PORT"),
    ("[::1:4444", "unbalanced brackets in host '[::1'"),
    ("::1]:4444", "unbalanced brackets in host '::1]'"),
    ("[[::1]]:4444", "unbalanced brackets in host '[[::1]]'"),
    ("[]:4444", "bad IPv6 address ''"),
    ("[1::2::3]:4444", "bad IPv6 address '1::2::3'"),
    ("[1.2.3.4]:4444", "bad IPv6 address '1.2.3.4'"),
    ("a b:4444", "bad host 'a b'"),
    ("a\tb:4444", "bad host 'a\\tb'"),
])
def test_parse_host_port_faults_name_only_the_fault(text, fault):
    with pytest.raises(AddressError) as e:
        sockaddr.parse_host_port(text)
    assert str(e.value) == fault
    assert isinstance(e.value, ValueError)


def test_unix_path_limit_counts_bytes():
    assert sockaddr.check_unix_path("/" + "s" * 106) == "/" + "s" * 106  # 107 bytes fit
    with pytest.raises(AddressError, match=r"^socket path is 108 bytes; at most 107 fit$"):
        sockaddr.check_unix_path("/" + "s" * 107)
    with pytest.raises(AddressError, match=r"^socket path is 108 bytes"):
        sockaddr.check_unix_path("/" + "é" * 53 + "s")  # 54 characters, 108 bytes


@pytest.mark.parametrize("path, fault", [("", "empty path"),
                                         ("/tmp/a\0b", "path contains a NUL byte")])
def test_unix_path_faults(path, fault):
    with pytest.raises(AddressError) as e:
        sockaddr.check_unix_path(path)
    assert str(e.value) == fault


def test_socket_error_keeps_errno_and_prints_the_fault():
    e = SocketError(errno.EADDRINUSE, "cannot listen on 1.2.3.4:5: Address already in use")
    assert isinstance(e, OSError) and e.errno == errno.EADDRINUSE
    assert str(e) == "cannot listen on 1.2.3.4:5: Address already in use"


# -- TCP ----------------------------------------------------------------------------------

def test_listen_reports_the_real_port_and_sets_nodelay():
    listening = sockaddr.listen(("127.0.0.1", 0))
    try:
        host, port = listening.address
        assert host == "127.0.0.1" and port > 0
        assert listening.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        with sockaddr.connect(("127.0.0.1", port), 5) as client:
            assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert client.gettimeout() is None, "connect() must hand back a blocking socket"
            conn, peer = listening.accept()
            with conn:
                assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                assert peer == client.getsockname()
    finally:
        listening.close()


@pytest.mark.parametrize("host", ["", "0", "::"])
def test_any_address_takes_ipv4_and_ipv6_clients(host):
    listening = sockaddr.listen_tcp(host, 0)
    try:
        port = listening.address[1]
        round_trip(listening, sockaddr.connect_tcp("127.0.0.1", port, 5))
        if has_ipv6_loopback():
            round_trip(listening, sockaddr.connect_tcp("::1", port, 5))
        round_trip(listening, sockaddr.connect_tcp("", port, 5))  # no host: this host
    finally:
        listening.close()


def test_port_in_use():
    with sockaddr.listen_tcp("127.0.0.1", 0).sock as first:
        port = first.getsockname()[1]
        with pytest.raises(SocketError) as e:
            sockaddr.listen_tcp("127.0.0.1", port)
    assert e.value.errno == errno.EADDRINUSE
    assert str(e.value) == f"cannot listen on 127.0.0.1:{port}: Address already in use"


@needs_ipv6
def test_any_address_does_not_fall_back_to_ipv4_when_the_port_is_taken():
    # Someone holds [::]:PORT for IPv6 only; quietly listening on IPv4 alone would hide it.
    with socket.socket(socket.AF_INET6) as holder:
        holder.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        holder.bind(("::", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(SocketError) as e:
            sockaddr.listen_tcp("", port)
    assert e.value.errno == errno.EADDRINUSE
    assert str(e.value) == f"cannot listen on [::]:{port}: Address already in use"


def test_connect_tries_every_resolved_address(monkeypatch):
    listening = sockaddr.listen_tcp("127.0.0.1", 0)
    good, refused = listening.address[1], free_port()
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", refused)),
               (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", good))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: answers)
    try:
        round_trip(listening, sockaddr.connect_tcp("twice.example", good, 5))
    finally:
        listening.close()


def test_connect_fault_names_each_distinct_fault_once(monkeypatch):
    port = free_port()
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))] * 2
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: answers)
    with pytest.raises(SocketError) as e:
        sockaddr.connect_tcp("twice.example", port, 5)
    assert e.value.errno == errno.ECONNREFUSED
    assert str(e.value) == "cannot connect: Connection refused"


def test_localhost_client_finds_a_server_on_127_0_0_1():
    listening = sockaddr.listen_tcp("127.0.0.1", 0)
    try:
        round_trip(listening, sockaddr.connect_tcp("localhost", listening.address[1]))
    finally:
        listening.close()


def test_connect_faults():
    with pytest.raises(AddressError, match=r"^port 0 is only for listening$"):
        sockaddr.connect_tcp("127.0.0.1", 0)
    with pytest.raises(AddressError, match=r"^cannot resolve host 'no-such-host\.invalid': "):
        sockaddr.connect_tcp("no-such-host.invalid", 1)
    with pytest.raises(AddressError, match=r"^cannot resolve host 'no-such-host\.invalid': "):
        sockaddr.listen_tcp("no-such-host.invalid", 0)


# -- unix sockets -------------------------------------------------------------------------

def test_unix_round_trip_and_own_file_removed_on_close(tmp_path):
    path = str(tmp_path / "s.sock")
    listening = sockaddr.listen(path)
    assert listening.address == path
    round_trip(listening, sockaddr.connect(path, 5))
    listening.close()
    listening.close()  # twice is harmless
    assert not os.path.exists(path)


def test_stale_socket_file_is_replaced(tmp_path):
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(path)  # the file outlives the socket, as after a crash
    listening = sockaddr.listen_unix(path)
    try:
        round_trip(listening, sockaddr.connect_unix(path))
    finally:
        listening.close()


def test_a_file_that_is_not_a_socket_is_never_removed(tmp_path):
    path = tmp_path / "precious"
    path.write_text("data")
    with pytest.raises(SocketError) as e:
        sockaddr.listen_unix(str(path))
    assert e.value.errno == errno.EADDRINUSE
    assert str(e.value) == f"cannot listen on {path}: Address already in use"
    assert path.read_text() == "data"


def test_close_leaves_a_socket_file_someone_else_bound_since(tmp_path):
    path = str(tmp_path / "s.sock")
    first = sockaddr.listen_unix(path)
    second = sockaddr.listen_unix(path)  # replaces first's file, as a second run would
    first.close()
    assert os.path.exists(path), "closing the first listener removed the second's file"
    round_trip(second, sockaddr.connect_unix(path))
    second.close()
    assert not os.path.exists(path)


def test_relative_path_removed_after_chdir(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    listening = sockaddr.listen_unix("s.sock")
    monkeypatch.chdir(tmp_path / "b")
    listening.close()
    assert not (tmp_path / "a" / "s.sock").exists()


def test_unix_faults(tmp_path):
    with pytest.raises(SocketError) as e:
        sockaddr.connect_unix(str(tmp_path / "none"))
    assert e.value.errno == errno.ENOENT
    assert str(e.value) == "cannot connect: No such file or directory"
    with pytest.raises(AddressError, match="at most 107 fit"):
        sockaddr.listen_unix("/" + "s" * 200)


# -- through the chardev spellings ---------------------------------------------------------

@pytest.fixture
def opened():
    devices = []

    def open_(spec):
        cd = parse_chardev(spec)
        devices.append(cd)
        return cd

    yield open_
    for cd in devices:
        cd.close()


def test_chardev_server_on_any_address_listens_everywhere(opened):
    cd = opened("tcp:0:0,server,nowait")  # an empty host is loopback: see test_chardev
    port = cd.address[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    if has_ipv6_loopback():
        with socket.create_connection(("::1", port), timeout=5):
            pass


def test_chardev_localhost_client_reaches_an_ipv4_server(opened):
    with socket.create_server(("127.0.0.1", 0)) as server:
        cd = opened(f"tcp:localhost:{server.getsockname()[1]}")
        conn, _ = server.accept()
        with conn:
            cd.write(b"hi")
            assert conn.recv(2) == b"hi"


@pytest.mark.parametrize("spec, fault", [
    ("tcp:::1:4444", "IPv6 address '::1' must be in brackets"),
    ("tcp:[::1:4444,server", "unbalanced brackets"),
    ("tcp:127.0.0.1:0", "port 0 is only for listening"),
    ("tcp:no-such-host.invalid:1", "cannot resolve host 'no-such-host.invalid'"),
    ("unix:/" + "s" * 200 + ",server,nowait", "at most 107 fit"),
])
def test_chardev_wraps_address_faults_with_its_spec(spec, fault):
    with pytest.raises(ValueError) as e:
        parse_chardev(spec)
    assert str(e.value).startswith(f"chardev {spec!r}: ")
    assert fault in str(e.value)


def test_chardev_unix_server_removes_its_socket_file(opened, tmp_path):
    path = tmp_path / "mon.sock"
    cd = opened(f"unix:{path},server,nowait")
    assert path.exists()
    cd.close()
    assert not path.exists()
