"""Migration transports: every URI scheme carries megabytes intact, faults are one-line
TransportErrors, file: is atomic, exec: reports exit status, and abort()/close() from
another thread unblock a read, write or accept."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hostnet import has_ipv6_loopback, needs_ipv6
from tlscerts import make_certificates

from emu.host.tls import Credentials, Tls
from emu.migration import transport
from emu.migration.transport import (
    Channel,
    TransportError,
    Uri,
    connect,
    listen,
    parse_uri,
)

ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = random.Random(7).randbytes(3 << 20 | 12345)  # odd size: no chunk boundary lines up




def send_payload(ch: Channel, payload: bytes = PAYLOAD) -> None:
    """Small writes (buffered), a memoryview slice, then one large write."""
    view = memoryview(payload)
    for i in range(0, 1000, 10):
        ch.write(payload[i:i + 10])
    ch.write(view[1000:300_000])
    ch.write(view[300_000:])


def receive_payload(ch: Channel, size: int = len(PAYLOAD)) -> bytes:
    """read_exact of small and large pieces, then read_some to the end."""
    got = bytearray(ch.read_exact(7))
    got += ch.read_exact(200_000)
    while len(got) < size:
        chunk = ch.read_some(size - len(got))
        assert chunk, f"stream ended at {len(got)} of {size}"
        got += chunk
    assert ch.read_some(100) == b"", "bytes after the payload"
    return bytes(got)


class Thread(threading.Thread):
    """Runs ``fn`` and keeps its exception to re-raise in the test."""

    def __init__(self, fn) -> None:
        super().__init__(daemon=True)
        self.fn, self.error, self.result = fn, None, None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            self.error = e

    def finish(self, timeout: float = 10.0):
        self.join(timeout)
        assert not self.is_alive(), "thread still blocked"
        if self.error is not None:
            raise self.error
        return self.result


def exchange_over(listen_uri: str, connect_uri: str | None = None) -> None:
    with listen(listen_uri) as listener:
        target = connect_uri or listener.bound_uri

        def source() -> int:
            with connect(target, timeout=5) as ch:
                send_payload(ch)
            return ch.bytes_sent

        writer = Thread(source)
        with listener.accept(timeout=5) as ch:
            assert receive_payload(ch) == PAYLOAD
            assert ch.bytes_received == len(PAYLOAD)
        assert writer.finish() == len(PAYLOAD)


# -- parsing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, fields", [
    ("tcp:127.0.0.1:4444", dict(host="127.0.0.1", port=4444)),
    ("tcp:localhost:4444", dict(host="localhost", port=4444)),
    ("tcp:0:4444", dict(host="0", port=4444)),
    ("tcp::4444", dict(host="", port=4444)),
    ("tcp:[::]:4444", dict(host="::", port=4444)),
    ("tcp:[::1]:65535", dict(host="::1", port=65535)),
    ("unix:/run/mig.sock", dict(path="/run/mig.sock")),
    ("file:/tmp/a:b,c", dict(path="/tmp/a:b,c")),
    ("exec:gzip -c > /tmp/x.gz", dict(command="gzip -c > /tmp/x.gz")),
    ("fd:7", dict(fd=7)),
])
def test_parse_good(text, fields):
    u = parse_uri(text)
    assert u == Uri(text, text.split(":")[0], **fields)
    assert str(u) == text


LONG = "/tmp/" + "s" * 103


@pytest.mark.parametrize("text, message", [
    ("", "'': empty URI"),
    ("/tmp/x", "'/tmp/x': no scheme (expected tcp:, unix:, file:, exec: or fd:)"),
    ("rdma:host:4444", "'rdma:host:4444': unknown scheme 'rdma' "
                       "(expected tcp:, unix:, file:, exec: or fd:)"),
    ("tcp:4444", "'tcp:4444': tcp: wants HOST:PORT"),
    ("tcp:host:", "'tcp:host:': missing port"),
    ("tcp:host:65536", "'tcp:host:65536': bad port '65536' (0 to 65535)"),
    ("tcp:host:http", "'tcp:host:http': bad port 'http' (0 to 65535)"),
    ("tcp:host:-1", "'tcp:host:-1': bad port '-1' (0 to 65535)"),
    ("tcp:::1:4444", "'tcp:::1:4444': IPv6 address '::1' must be in brackets: "
                     "tcp:[::1]:PORT"),
    ("tcp:[::1:4444", "'tcp:[::1:4444': unbalanced brackets in host '[::1'"),
    ("tcp:[1::2::3]:4444", "'tcp:[1::2::3]:4444': bad IPv6 address '1::2::3'"),
    ("tcp:[1.2.3.4]:4444", "'tcp:[1.2.3.4]:4444': bad IPv6 address '1.2.3.4'"),
    ("tcp:[[::1]]:4444", "'tcp:[[::1]]:4444': unbalanced brackets in host '[[::1]]'"),
    ("tcp:a b:4444", "'tcp:a b:4444': bad host 'a b'"),
    ("unix:", "'unix:': empty path"),
    (f"unix:{LONG}", f"'unix:{LONG}': socket path is 108 bytes; at most 107 fit"),
    ("file:", "'file:': empty path"),
    ("file:a\0b", "'file:a\\x00b': path contains a NUL byte"),
    ("exec:", "'exec:': empty command"),
    ("exec:   ", "'exec:   ': empty command"),
    ("fd:", "'fd:': missing file descriptor number"),
    ("fd:three", "'fd:three': bad file descriptor 'three' (a decimal number)"),
    ("fd:-1", "'fd:-1': bad file descriptor '-1' (a decimal number)"),
])
def test_parse_bad(text, message):
    with pytest.raises(TransportError) as e:
        parse_uri(text)
    assert str(e.value) == message
    assert "\n" not in str(e.value)
    assert e.value.uri == text


# -- sockets ---------------------------------------------------------------------------------

def test_tcp_ipv4():
    exchange_over("tcp:127.0.0.1:0")


@needs_ipv6
def test_tcp_ipv6():
    exchange_over("tcp:[::1]:0")


def test_tcp_localhost():
    exchange_over("tcp:localhost:0")


@pytest.mark.parametrize("any_host", ["0", "", "[::]", "0.0.0.0"])
def test_tcp_any_address_accepts_loopback(any_host):
    with listen(f"tcp:{any_host}:0") as listener:
        port = listener.address[1]
    families = ["127.0.0.1"] + (["[::1]"] if has_ipv6_loopback() and any_host != "0.0.0.0"
                                else [])
    for host in families:
        exchange_over(f"tcp:{any_host}:{port}", f"tcp:{host}:{port}")


def test_listener_reports_real_port():
    with listen("tcp:127.0.0.1:0") as listener:
        host, port = listener.address
        assert host == "127.0.0.1" and port > 0
        assert listener.bound_uri == f"tcp:127.0.0.1:{port}"


def test_unix(tmp_path):
    path = tmp_path / "mig.sock"
    exchange_over(f"unix:{path}")
    assert not path.exists(), "listener left its socket file"


def test_unix_replaces_stale_socket_file(tmp_path):
    path = tmp_path / "mig.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, as after a crash
    exchange_over(f"unix:{path}")


def test_sockets_carry_both_directions():
    with listen("tcp:127.0.0.1:0") as listener:
        with connect(listener.bound_uri, 5) as out, listener.accept(5) as inc:
            out.write(b"ping")
            out.flush()
            assert inc.read_exact(4) == b"ping"
            inc.write(b"pong")
            inc.flush()
            assert out.read_exact(4) == b"pong"


def test_address_in_use_fails_at_listen():
    with listen("tcp:127.0.0.1:0") as first:
        port = first.address[1]
        with pytest.raises(TransportError) as e:
            listen(f"tcp:127.0.0.1:{port}")
    assert str(e.value) == (f"'tcp:127.0.0.1:{port}': cannot listen on 127.0.0.1:{port}: "
                            "Address already in use")


def test_connect_refused():
    with listen("tcp:127.0.0.1:0") as listener:
        port = listener.address[1]
    with pytest.raises(TransportError) as e:
        connect(f"tcp:127.0.0.1:{port}", 5)
    assert str(e.value) == f"'tcp:127.0.0.1:{port}': cannot connect: Connection refused"


def test_connect_needs_a_port_and_a_socket(tmp_path):
    with pytest.raises(TransportError, match=r"': port 0 is only for listening$"):
        connect("tcp:127.0.0.1:0", 5)
    with pytest.raises(TransportError) as e:
        connect(f"unix:{tmp_path}/none", 5)
    assert str(e.value) == f"'unix:{tmp_path}/none': cannot connect: No such file or directory"


def test_unresolvable_host():
    with pytest.raises(TransportError, match=r"^'tcp:no-such-host\.invalid:1': cannot resolve "
                                             r"host 'no-such-host\.invalid': "):
        connect("tcp:no-such-host.invalid:1", 5)


# -- file: -----------------------------------------------------------------------------------

def test_file_is_written_under_a_temporary_name_then_renamed(tmp_path):
    target = tmp_path / "image.pyemu"
    ch = connect(f"file:{target}", 5)
    send_payload(ch)
    ch.flush()
    assert not target.exists(), "the target name appeared before close()"
    [temp] = list(tmp_path.iterdir())
    assert temp.name.startswith(".image.pyemu.")
    ch.close()
    assert list(tmp_path.iterdir()) == [target]
    assert target.read_bytes() == PAYLOAD
    with listen(f"file:{target}") as listener, listener.accept() as inc:
        assert receive_payload(inc) == PAYLOAD


def test_file_abort_leaves_nothing_and_keeps_the_old_image(tmp_path):
    target = tmp_path / "image.pyemu"
    ch = connect(f"file:{target}", 5)
    ch.write(PAYLOAD)
    ch.abort()
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"old image")
    with pytest.raises(RuntimeError), connect(f"file:{target}", 5) as ch:
        ch.write(PAYLOAD)
        raise RuntimeError("migration failed")
    assert list(tmp_path.iterdir()) == [target]
    assert target.read_bytes() == b"old image"


def test_file_gets_ordinary_permissions(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    target = tmp_path / "image.pyemu"
    with connect(f"file:{target}", 5) as ch:
        ch.write(b"x")
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_file_errors(tmp_path):
    with pytest.raises(TransportError) as e:
        connect(f"file:{tmp_path}/no/dir/x", 5)
    assert str(e.value) == (f"'file:{tmp_path}/no/dir/x': cannot create a file in "
                            f"{tmp_path}/no/dir: No such file or directory")
    with pytest.raises(TransportError) as e:
        listen(f"file:{tmp_path}/missing")
    assert str(e.value) == f"'file:{tmp_path}/missing': cannot open: No such file or directory"
    for way in (lambda u: connect(u, 5), listen):
        with pytest.raises(TransportError) as e:
            way(f"file:{tmp_path}")
        assert str(e.value) == f"'file:{tmp_path}': is a directory"


def test_truncated_file_names_the_shortfall(tmp_path):
    target = tmp_path / "short"
    target.write_bytes(b"x" * 100)
    with listen(f"file:{target}") as listener:
        inc = listener.accept()
        with pytest.raises(TransportError) as e:
            inc.read_exact(4096)
        assert str(e.value) == f"'file:{target}': connection closed after 100 of 4096 bytes"
        inc.close()
        with pytest.raises(TransportError, match="already accepted or closed"):
            listener.accept()


def test_one_way_channels_refuse_the_other_way(tmp_path):
    with connect(f"file:{tmp_path}/f", 5) as ch:
        with pytest.raises(TransportError, match=r"': this channel is write-only$"):
            ch.read_exact(1)
    with listen(f"file:{tmp_path}/f") as listener, listener.accept() as ch:
        with pytest.raises(TransportError, match=r"': this channel is read-only$"):
            ch.write(b"x")
    with pytest.raises(TransportError, match=r"': this channel is closed$"):
        ch.read_some(1)


# -- exec: -----------------------------------------------------------------------------------

def test_exec_both_directions(tmp_path):
    out = tmp_path / "out"
    with connect(f"exec:cat > '{out}'", 5) as ch:
        send_payload(ch)
    assert out.read_bytes() == PAYLOAD
    with listen(f"exec:cat '{out}'") as listener, listener.accept() as ch:
        assert receive_payload(ch) == PAYLOAD


def test_exec_exit_status_is_an_error_at_close():
    ch = connect("exec:cat > /dev/null; exit 3", 5)
    ch.write(b"some bytes")
    with pytest.raises(TransportError) as e:
        ch.close()
    assert str(e.value) == "'exec:cat > /dev/null; exit 3': the command exited with status 3"
    with listen("exec:printf abc; exit 4") as listener:
        ch = listener.accept()
        assert ch.read_exact(3) == b"abc"
        with pytest.raises(TransportError) as e:
            ch.close()
    assert str(e.value) == "'exec:printf abc; exit 4': the command exited with status 4"


def test_exec_command_that_does_not_read():
    ch = connect("exec:exit 3", 5)
    with pytest.raises(TransportError) as e:
        ch.write(PAYLOAD)
    ch.abort()
    assert str(e.value) == ("'exec:exit 3': peer closed the connection (0 bytes written) "
                            "(the command exited with status 3)")


def test_exec_command_that_gives_nothing():
    with listen("exec:exit 3") as listener:
        ch = listener.accept()
        with pytest.raises(TransportError) as e:
            ch.read_exact(10)
        ch.abort()
    assert str(e.value) == ("'exec:exit 3': connection closed after 0 of 10 bytes "
                            "(the command exited with status 3)")


def test_exec_keeps_off_our_stdin_and_stdout():
    """Our stdin may be the monitor and our stdout a console: a command gets neither."""
    proc = subprocess.run([sys.executable, "-c",
                           "from emu.migration.transport import connect, listen\n"
                           "with connect('exec:echo to-stderr', 5):\n"
                           "    pass\n"
                           "with listen('exec:cat') as listener, listener.accept() as ch:\n"
                           "    print(repr(ch.read_some(100)))\n"],
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          input="monitor input\n", capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert (proc.stdout, proc.stderr) == ("b''\n", "to-stderr\n")


# -- fd: -------------------------------------------------------------------------------------

def test_fd_pipe():
    r, w = os.pipe()
    writer = Thread(lambda: (ch := connect(f"fd:{w}", 5), send_payload(ch), ch.close()))
    with listen(f"fd:{r}") as listener, listener.accept() as ch:
        assert receive_payload(ch) == PAYLOAD
    writer.finish()
    for fd in (r, w):
        with pytest.raises(OSError):
            os.fstat(fd)  # the channel owned and closed it


def test_fd_socket():
    a, b = socket.socketpair()
    writer = Thread(lambda: (ch := connect(f"fd:{a.detach()}", 5), send_payload(ch),
                             ch.close()))
    with listen(f"fd:{b.detach()}") as listener, listener.accept() as ch:
        assert receive_payload(ch) == PAYLOAD
    writer.finish()


def test_fd_is_validated():
    r, w = os.pipe()
    os.close(w)
    try:
        with pytest.raises(TransportError) as e:
            connect(f"fd:{r}", 5)
        assert str(e.value) == f"'fd:{r}': file descriptor {r} is not open for writing"
        with pytest.raises(TransportError) as e:
            listen(f"fd:{w}")
        assert str(e.value) == f"'fd:{w}': file descriptor {w} is not open"
    finally:
        os.close(r)


# -- a peer that dies ------------------------------------------------------------------------

def child(script: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_writer_killed_mid_transfer():
    with listen("tcp:127.0.0.1:0") as listener:
        proc = child(
            "import os, signal\n"
            "from emu.migration.transport import connect\n"
            f"ch = connect({listener.bound_uri!r}, 5)\n"
            "ch.write(bytes(1 << 20))\n"
            "ch.flush()\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
        with listener.accept(10) as ch:
            with pytest.raises(TransportError) as e:
                ch.read_exact(8 << 20)
        assert proc.wait(10) == -signal.SIGKILL
    assert str(e.value) == (f"'{listener.uri}': connection closed after 1048576 of 8388608 "
                            "bytes")


def test_reader_killed_mid_transfer():
    with listen("tcp:127.0.0.1:0") as listener:
        proc = child(
            "import os, signal, socket\n"
            f"s = socket.create_connection(('127.0.0.1', {listener.address[1]}))\n"
            "got = 0\n"
            "while got < 100000:\n"
            "    got += len(s.recv(65536))\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
        with listener.accept(10) as ch:
            ch.timeout = 10
            with pytest.raises(TransportError) as e:
                for _ in range(64):
                    ch.write(PAYLOAD)
        assert proc.wait(10) == -signal.SIGKILL
    assert str(e.value).startswith(f"'{listener.uri}': peer closed the connection (")


def test_sigpipe_default_does_not_kill():
    """Even a program that restored SIGPIPE's default survives a reader going away."""
    proc = subprocess.run([sys.executable, "-c",
                           "import os, signal\n"
                           "signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n"
                           "from emu.migration.transport import connect, TransportError\n"
                           "r, w = os.pipe()\n"
                           "os.close(r)\n"
                           "for uri in (f'fd:{w}', 'exec:exit 0'):\n"
                           "    try:\n"
                           "        with connect(uri, 5) as ch:\n"
                           "            ch.write(bytes(4 << 20))\n"
                           "    except TransportError as e:\n"
                           "        print(e.fault)\n"
                           "print('alive')\n"],
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["peer closed the connection (0 bytes written)"] * 2 \
        + ["alive"]


# -- cancelling from another thread ----------------------------------------------------------

def blocked_then_cancelled(blocking, cancel) -> TransportError:
    """Start ``blocking`` in a thread, check it blocks, ``cancel()``, and time the wake-up."""
    t = Thread(blocking)
    time.sleep(0.2)
    assert t.is_alive(), "the call did not block"
    start = time.monotonic()
    cancel()
    t.join(1.0)
    assert not t.is_alive(), "still blocked a second after the cancel"
    assert time.monotonic() - start < 1.0
    assert isinstance(t.error, TransportError), t.error
    return t.error


def test_abort_unblocks_a_read():
    with listen("tcp:127.0.0.1:0") as listener, connect(listener.bound_uri, 5):
        inc = listener.accept(5)
        e = blocked_then_cancelled(lambda: inc.read_exact(10), inc.abort)
    assert str(e) == f"'{listener.uri}': aborted"
    with pytest.raises(TransportError, match=r"': aborted$"):
        inc.close()


def test_abort_unblocks_a_write():
    with listen("tcp:127.0.0.1:0") as listener:
        out = connect(listener.bound_uri, 5)
        with listener.accept(5):  # accepted but never read
            e = blocked_then_cancelled(lambda: [out.write(PAYLOAD) for _ in range(64)],
                                       out.abort)
    assert e.fault == "aborted"


def test_close_unblocks_accept(tmp_path):
    for uri in ("tcp:127.0.0.1:0", f"unix:{tmp_path}/s"):
        listener = listen(uri)
        e = blocked_then_cancelled(listener.accept, listener.close)
        assert str(e) == f"'{uri}': listener closed"
    assert list(tmp_path.iterdir()) == []


def test_abort_kills_an_exec_command():
    ch = connect("exec:sleep 30", 5)
    e = blocked_then_cancelled(lambda: [ch.write(PAYLOAD) for _ in range(64)], ch.abort)
    assert e.fault == "aborted"
    assert ch.process.returncode == -signal.SIGKILL


def test_timeouts():
    with listen("tcp:127.0.0.1:0") as listener:
        with pytest.raises(TransportError) as e:
            listener.accept(timeout=0.1)
        assert str(e.value) == f"'{listener.uri}': no connection within 0.1 s"
        with connect(listener.bound_uri, 5), listener.accept(5) as inc:
            inc.timeout = 0.1
            with pytest.raises(TransportError) as e:
                inc.read_exact(1)
        assert e.value.fault == "no progress for 0.1 s"


# -- TLS -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def server(certs) -> Tls:
    return Tls(Credentials("server", str(certs / "server"), "server"))


@pytest.fixture(scope="module")
def client(certs) -> Tls:
    return Tls(Credentials("client", str(certs / "client"), "client"))


def tls_client(certs: Path, name: str, hostname: str = "") -> Tls:
    return Tls(Credentials(name, str(certs / name), "client"), hostname)


@pytest.mark.parametrize("where", ["tcp", "unix"])
def test_tls_carries_both_directions(tmp_path, server, client, where):
    uri = "tcp:127.0.0.1:0" if where == "tcp" else f"unix:{tmp_path}/s"
    with listen(uri, server) as listener:
        def source() -> bytes:
            with connect(listener.bound_uri, 5, client) as ch:
                send_payload(ch)
                ch.flush()
                return ch.read_exact(6)

        writer = Thread(source)
        with listener.accept(5) as ch:
            assert ch.read_exact(len(PAYLOAD)) == PAYLOAD
            ch.write(b"thanks")
            ch.flush()
            assert ch.read_some(100) == b""  # the source's close_notify
        assert writer.finish() == b"thanks"


def test_tls_listener_drops_a_plain_client_and_keeps_listening(server, client):
    with listen("tcp:127.0.0.1:0", server) as listener:
        def plain_source() -> None:
            ch = connect(listener.bound_uri, 5)
            ch.write(b"PYEMU stream head")
            ch.flush()
            ch.read_exact(5)

        plain = Thread(plain_source)
        with pytest.raises(TransportError) as e:
            listener.accept(5)
        assert re.fullmatch(rf"'{listener.uri}': TLS handshake with 127\.0\.0\.1:\d+ failed: "
                            "the peer does not speak TLS", str(e.value))
        with pytest.raises(TransportError) as e:
            plain.finish()
        # the source's one line says what a silent hang-up may mean
        assert str(e.value) == (f"'{listener.bound_uri}': connection closed after 0 of 5 "
                                "bytes without a word (a destination that requires TLS drops "
                                "a source without tls-creds)")
        good = Thread(lambda: connect(listener.bound_uri, 5, client).close())
        listener.accept(5).close()
        good.finish()


@pytest.mark.parametrize("name, server_says, client_says", [
    ("rogue", "the peer's certificate is not accepted: unable to get local issuer certificate",
     "the peer refused the session: unknown ca"),
    ("anonymous", "the peer sent no certificate (verify-peer is on here)",
     "the peer refused the session: certificate required"),
])
def test_tls_listener_refuses_a_client_without_a_good_certificate(certs, server, name,
                                                                   server_says, client_says):
    with listen("tcp:127.0.0.1:0", server) as listener:
        def source() -> None:
            with connect(listener.bound_uri, 5, tls_client(certs, name)) as ch:
                ch.write(PAYLOAD)  # more than the socket buffers: the refusal comes first
                ch.read_exact(1)

        rejected = Thread(source)
        with pytest.raises(TransportError) as e:
            listener.accept(5)
        assert str(e.value).endswith(f" failed: {server_says}")
        with pytest.raises(TransportError) as e:
            rejected.finish()
        assert str(e.value) == f"'{listener.bound_uri}': TLS: {client_says}"


@pytest.mark.parametrize("name, hostname, fault", [
    ("client", "other.example", "Hostname mismatch, certificate is not valid for "
     "'other.example'."),
    ("rogue-ca", "", "self-signed certificate in certificate chain"),
])
def test_tls_client_refuses_a_server_it_cannot_trust(certs, tmp_path, server, name, hostname,
                                                     fault):
    if name == "rogue-ca":  # a client that trusts another CA only
        (tmp_path / name).mkdir()
        (tmp_path / name / "ca-cert.pem").write_bytes((certs / "cas/rogue-ca-cert.pem")
                                                      .read_bytes())
        certs = tmp_path
    with listen("tcp:127.0.0.1:0", server) as listener:
        refused = Thread(lambda: listener.accept(5))
        with pytest.raises(TransportError) as e:
            connect(listener.bound_uri, 5, tls_client(certs, name, hostname))
        assert str(e.value) == (f"'{listener.bound_uri}': TLS handshake failed: the peer's "
                                f"certificate is not accepted: {fault}")
        with pytest.raises(TransportError, match="TLS handshake with .* failed"):
            refused.finish()


def test_tls_client_names_the_host_of_the_uri(server, client):
    """Connecting to localhost checks the name localhost, to ::1 the address ::1."""
    with listen("tcp:127.0.0.1:0", server) as listener:
        for uri in (f"tcp:localhost:{listener.address[1]}", listener.bound_uri):
            t = Thread(lambda: listener.accept(5).close())
            connect(uri, 5, client).close()
            t.finish()


def test_tls_client_facing_a_plain_listener(client):
    with listen("tcp:127.0.0.1:0") as listener:
        def plain_destination() -> None:
            with listener.accept(5) as ch:
                ch.read_exact(5)  # the start of a ClientHello, not a stream: hang up

        t = Thread(plain_destination)
        with pytest.raises(TransportError) as e:
            connect(listener.bound_uri, 5, client)
        t.finish()
    assert str(e.value) == (f"'{listener.bound_uri}': TLS handshake failed: the peer closed "
                            "the connection")


def test_tls_handshake_has_a_deadline(server, monkeypatch):
    monkeypatch.setattr(transport, "HANDSHAKE_TIMEOUT", 0.2)
    with listen("tcp:127.0.0.1:0", server) as listener:
        with socket.create_connection(listener.address):  # says nothing
            with pytest.raises(TransportError) as e:
                listener.accept(5)
    assert re.fullmatch(rf"'{listener.uri}': no TLS handshake with 127\.0\.0\.1:\d+ within "
                        r"0\.2 s", str(e.value))


def test_close_unblocks_accept_in_a_handshake(server):
    listener = listen("tcp:127.0.0.1:0", server)
    with socket.create_connection(listener.address):
        e = blocked_then_cancelled(listener.accept, listener.close)
    assert e.fault == "aborted"


def test_abort_unblocks_a_tls_read(server, client):
    with listen("tcp:127.0.0.1:0", server) as listener:
        t = Thread(lambda: connect(listener.bound_uri, 5, client))
        inc = listener.accept(5)
        out = t.finish()
        e = blocked_then_cancelled(lambda: inc.read_exact(10), inc.abort)
        out.abort()
    assert e.fault == "aborted"


def test_tls_wants_a_socket_and_the_right_endpoint(tmp_path, server, client):
    for uri in (f"file:{tmp_path}/image", "exec:cat", "fd:1"):
        with pytest.raises(TransportError) as e:
            connect(uri, 5, client)
        assert str(e.value) == f"'{uri}': TLS (tls-creds) is for tcp: and unix: only"
        with pytest.raises(TransportError, match="TLS \\(tls-creds\\) is for tcp: and unix:"):
            listen(uri, server)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TransportError) as e:
        listen("tcp:127.0.0.1:0", client)
    assert e.value.fault == ("tls-creds 'client' has endpoint=client; listening needs "
                             "endpoint=server")
    with pytest.raises(TransportError) as e:
        connect("tcp:127.0.0.1:1", 5, server)  # refused before connecting
    assert e.value.fault == ("tls-creds 'server' has endpoint=server; connecting needs "
                             "endpoint=client")


@pytest.mark.parametrize("host, tls, warned", [
    ("0", False, True), ("0.0.0.0", False, True), ("127.0.0.1", False, False),
    ("0", True, False),
])
def test_a_listener_beyond_loopback_without_tls_warns(caplog, server, host, tls, warned):
    uri = f"tcp:{host}:0"
    with listen(uri, server if tls else None):
        pass
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert lines == ([f"'{uri}': listening beyond loopback without TLS: the migration stream "
                      "is unauthenticated and unencrypted (tls-creds turns TLS on)"]
                     if warned else [])
