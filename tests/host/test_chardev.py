"""Chardev backends: spellings, sockets, files, the Ctrl-a multiplexer, flow control."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
from hostnet import needs_ipv6

from emu.host.chardev import (
    BufferChardev,
    Chardev,
    FileChardev,
    InputBuffer,
    MuxChardev,
    NullChardev,
    SocketChardev,
    StdioChardev,
    parse_chardev,
)


class Sink:
    """A frontend that takes ``room`` bytes, then is full until given more room."""

    def __init__(self, room: int = 1 << 20) -> None:
        self.data = bytearray()
        self.room = room
        self.breaks = 0
        self.focus: list[bool] = []

    def can_receive(self) -> int:
        return self.room

    def receive(self, data: bytes) -> None:
        assert len(data) <= self.room, "a backend handed over more than can_receive()"
        self.data += data
        self.room -= len(data)

    def receive_break(self) -> None:
        self.breaks += 1

    def mux_focus(self, focused: bool) -> None:
        self.focus.append(focused)


def wait_for(cond, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def pump_until(cd: Chardev, sink: Sink, expected: bytes) -> None:
    def done() -> bool:
        cd.pump()
        return bytes(sink.data) == expected

    wait_for(done)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    sock.settimeout(5)
    got = b""
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        assert chunk, "connection closed early"
        got += chunk
    return got


@pytest.fixture
def opened():
    """Chardevs a test opens are closed after it, even when it fails."""
    devs: list[Chardev] = []

    def open_(spec: str) -> Chardev:
        cd = parse_chardev(spec)
        devs.append(cd)
        return cd

    yield open_
    for cd in devs:
        cd.close()


# -- spellings ----------------------------------------------------------------------

def test_null_and_none(opened):
    for spec in ("null", "none"):
        cd = opened(spec)
        assert isinstance(cd, NullChardev)
        cd.write(b"discarded")
        sink = Sink()
        cd.attach(sink)
        cd.pump()
        assert sink.data == b""


@pytest.mark.parametrize("spec,part", [
    ("bogus", "bogus"),
    ("bogus:1", "bogus"),
    ("null:x", "null"),
    ("file:", "path"),
    ("file:/tmp/x,server", "file"),
    ("tcp:127.0.0.1", "HOST:PORT"),
    ("tcp:127.0.0.1:http", "'http'"),
    ("tcp:127.0.0.1:70000", "'70000'"),
    ("tcp:127.0.0.1:0,server,bogus", "'bogus'"),
    ("tcp:127.0.0.1:0,server=maybe", "server=maybe"),
    ("unix:", "path"),
    ("stdio:x", "stdio"),
    ("mon:mon:null", "nested"),
    ("mon:bogus", "bogus"),
])
def test_bad_spellings_name_the_bad_part(spec, part):
    with pytest.raises(ValueError) as err:
        parse_chardev(spec)
    msg = str(err.value)
    assert "\n" not in msg and part in msg and spec in msg


def test_mon_wraps_backend_with_monitor(opened):
    cd = opened("mon:null")
    assert isinstance(cd, MuxChardev) and cd.monitor
    assert isinstance(cd.backend, NullChardev)


@pytest.mark.skipif(os.isatty(0), reason="would put the terminal running pytest in raw mode")
def test_stdio_is_a_mux_without_monitor(opened):
    cd = opened("stdio")
    assert isinstance(cd, MuxChardev) and not cd.monitor
    assert isinstance(cd.backend, StdioChardev)
    with pytest.raises(ValueError, match="already used"):
        parse_chardev("mon:stdio")


def test_stdio_reads_a_pipe_until_eof(tmp_path):
    in_r, in_w = os.pipe()
    out_path = tmp_path / "out"
    out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT)
    cd = StdioChardev("stdio", in_fd=in_r, out_fd=out_fd)
    try:
        sink = Sink()
        cd.attach(sink)
        os.write(in_w, b"typed")
        os.close(in_w)  # EOF stops reading, nothing else
        pump_until(cd, sink, b"typed")
        cd.write(b"shown")
        assert out_path.read_bytes() == b"shown"
    finally:
        cd.close()
        os.close(in_r)
        os.close(out_fd)


# -- file -----------------------------------------------------------------------------

def test_file_is_truncated_and_written(opened, tmp_path):
    path = tmp_path / "serial.log"
    path.write_bytes(b"old contents")
    cd = opened(f"file:{path}")
    assert isinstance(cd, FileChardev)
    cd.write(b"boot\r\n")
    cd.write(b"ok")
    assert path.read_bytes() == b"boot\r\nok"


def test_file_open_error_names_spec(tmp_path):
    spec = f"file:{tmp_path}/missing/dir/log"
    with pytest.raises(OSError, match="missing/dir"):
        parse_chardev(spec)


# -- sockets --------------------------------------------------------------------------

def exchange(cd: Chardev, client: socket.socket) -> None:
    """Bytes go both ways between a connected client and the chardev's frontend."""
    sink = Sink()
    cd.attach(sink)
    notified = threading.Event()
    cd.set_notify(notified.set)
    cd.write(b"to client")
    assert recv_exactly(client, 9) == b"to client"
    client.sendall(b"from client")
    assert notified.wait(5)
    pump_until(cd, sink, b"from client")


def test_tcp_server_nowait(opened):
    cd = opened("tcp:127.0.0.1:0,server,nowait")
    assert isinstance(cd, SocketChardev)
    cd.write(b"nobody listens")  # no client: dropped, never blocks
    host, port = cd.address
    with socket.create_connection((host, port)) as client:
        wait_for(lambda: cd.connected)
        exchange(cd, client)
    wait_for(lambda: not cd.connected)
    with socket.create_connection((host, port)) as client:  # a new client after one left
        wait_for(lambda: cd.connected)
        cd.write(b"again")
        assert recv_exactly(client, 5) == b"again"


def test_tcp_server_with_no_host_listens_on_loopback_only(opened):
    cd = opened("tcp::0,server,nowait")
    assert cd.address == ("127.0.0.1", cd.address[1])  # as -qmp tcp::PORT does
    with socket.create_connection(cd.address) as client:
        wait_for(lambda: cd.connected)
        exchange(cd, client)


@pytest.mark.parametrize("host, bound", [
    ("0.0.0.0", "0.0.0.0"),
    pytest.param("[::]", "::", marks=needs_ipv6),
])
def test_tcp_server_on_an_explicit_any_address_listens_everywhere(opened, host, bound):
    cd = opened(f"tcp:{host}:0,server,nowait")
    assert cd.address[0] == bound


def test_a_tcp_client_with_no_host_still_connects_to_this_host(opened):
    with socket.create_server(("127.0.0.1", 0)) as server:
        cd = opened(f"tcp::{server.getsockname()[1]}")
        server.accept()[0].close()
        assert cd.address[0] == ""


def test_tcp_modern_spelling(opened):
    cd = opened("tcp:127.0.0.1:0,server=on,wait=off")
    assert cd.server and not cd.connected


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


def connect_retrying(port: int) -> socket.socket:
    """Connect once the listener is up (it is opened on another thread)."""
    end = time.monotonic() + 5
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=1)
        except ConnectionRefusedError:
            assert time.monotonic() < end, "nobody listened"
            time.sleep(0.01)


def test_tcp_server_waits_for_first_client():
    port = free_port()
    result: list[Chardev] = []
    opener = threading.Thread(
        target=lambda: result.append(parse_chardev(f"tcp:127.0.0.1:{port},server")))
    opener.start()
    time.sleep(0.2)
    assert not result  # still waiting: nobody has connected
    with connect_retrying(port) as client:
        opener.join(5)
        assert result and result[0].connected
        try:
            exchange(result[0], client)
        finally:
            result[0].close()


def test_tcp_client_mode(opened):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        cd = opened(f"tcp:127.0.0.1:{port}")
        conn, _ = listener.accept()
        with conn:
            exchange(cd, conn)


def test_tcp_port_in_use_names_spec(opened):
    first = opened("tcp:127.0.0.1:0,server,nowait")
    spec = f"tcp:127.0.0.1:{first.address[1]},server,nowait"
    with pytest.raises(OSError, match=spec):
        parse_chardev(spec)


def test_tcp_connect_refused_names_spec():
    port = free_port()
    with pytest.raises(OSError, match=f"tcp:127.0.0.1:{port}"):
        parse_chardev(f"tcp:127.0.0.1:{port}")


def test_unix_server_nowait(opened, tmp_path):
    path = str(tmp_path / "serial.sock")
    cd = opened(f"unix:{path},server,nowait")
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(path)
        wait_for(lambda: cd.connected)
        exchange(cd, client)
    cd.close()
    assert not os.path.exists(path)


def test_socket_output_to_a_stalled_client_does_not_block(opened):
    cd = opened("tcp:127.0.0.1:0,server,nowait")
    with socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(cd.address)
        wait_for(lambda: cd.connected)
        start = time.monotonic()
        for _ in range(128):
            cd.write(bytes(64 * 1024))  # 8 MiB nobody reads
        assert time.monotonic() - start < 2
        assert cd.dropped > 0


# -- flow control -------------------------------------------------------------------

def test_input_is_never_dropped_when_frontend_is_full():
    cd = BufferChardev()
    sink = Sink(room=3)
    cd.attach(sink)
    cd.feed(b"0123456789")
    cd.pump()
    assert sink.data == b"012" and cd.pending_input() == 7
    cd.pump()
    assert sink.data == b"012"
    sink.room = 100
    cd.pump()
    assert sink.data == b"0123456789" and cd.pending_input() == 0


def test_input_before_attach_waits():
    cd = BufferChardev()
    cd.feed(b"early")
    sink = Sink()
    cd.attach(sink)
    cd.pump()
    assert sink.data == b"early"


def test_full_buffer_blocks_the_reader_instead_of_dropping():
    cd = BufferChardev()
    cd._input = InputBuffer(cap=4)
    data = bytes(range(64))
    reader = threading.Thread(target=cd.feed, args=(data,))
    reader.start()
    wait_for(lambda: cd.pending_input() == 4)
    assert reader.is_alive()  # waiting for room, not dropping
    sink = Sink()
    cd.attach(sink)
    pump_until(cd, sink, data)
    reader.join(5)


# -- multiplexer --------------------------------------------------------------------

def make_mux() -> tuple[BufferChardev, MuxChardev, Sink, Sink]:
    backend = BufferChardev()
    mux = MuxChardev(backend)
    serial, monitor = Sink(), Sink()
    mux.frontend(0).attach(serial)
    mux.frontend(1).attach(monitor)
    return backend, mux, serial, monitor


def test_mux_ctrl_a_c_switches_focus():
    backend, mux, serial, monitor = make_mux()
    backend.feed(b"ab\x01cinfo\x01cz")
    mux.frontend(0).pump()
    assert serial.data == b"abz"
    assert monitor.data == b"info"
    assert monitor.focus == [True, False] and serial.focus == [False, True]
    assert b"monitor" in backend.output


def test_mux_output_of_both_frontends_reaches_backend():
    backend, mux, _, _ = make_mux()
    mux.frontend(0).write(b"serial ")
    mux.frontend(1).write(b"(qemu) ")
    assert backend.take_output() == b"serial (qemu) "


def test_mux_ctrl_a_x_quits():
    backend, mux, serial, _ = make_mux()
    quits = []
    mux.on_quit = lambda: quits.append(True)
    backend.feed(b"ls\x01x")
    mux.pump()
    assert quits == [True]
    assert serial.data == b"ls"
    assert b"pyemu: terminated" in backend.output


def test_mux_ctrl_a_x_works_while_guest_reads_nothing():
    backend, mux, serial, _ = make_mux()
    serial.room = 0
    quits = []
    mux.on_quit = lambda: quits.append(True)
    backend.feed(b"a" * 1000 + b"\x01x")
    mux.pump()
    assert quits == [True]
    serial.room = 2000
    mux.pump()
    assert serial.data == b"a" * 1000  # the typed-ahead bytes were kept


def test_mux_escapes_literal_help_and_break():
    backend, mux, serial, _ = make_mux()
    backend.feed(b"\x01\x01\x01h\x01b\x01q!")
    mux.pump()
    assert serial.data == b"\x01!"  # C-a C-a is a literal; unknown C-a q is swallowed
    assert b"C-a x" in backend.output
    assert serial.breaks == 1


def test_mux_escape_split_across_reads():
    backend, mux, serial, monitor = make_mux()
    backend.feed(b"1\x01")
    mux.pump()
    backend.feed(b"c2")
    mux.pump()
    assert serial.data == b"1" and monitor.data == b"2"


def test_mux_without_monitor_stays_on_serial():
    backend = BufferChardev()
    mux = MuxChardev(backend, monitor=False)
    serial = Sink()
    mux.attach(serial)  # a mux used directly is its serial frontend
    backend.feed(b"\x01cx")
    mux.pump()
    assert serial.data == b"x" and mux.focus == 0


def test_mux_flow_control_keeps_input():
    backend, mux, serial, _ = make_mux()
    serial.room = 2
    backend.feed(b"abcdef")
    mux.frontend(0).pump()
    assert serial.data == b"ab"
    serial.room = 10
    mux.frontend(0).pump()
    assert serial.data == b"abcdef"


def test_mux_notify_reaches_frontends():
    backend, mux, _, _ = make_mux()
    calls = []
    mux.frontend(0).set_notify(lambda: calls.append(0))
    mux.frontend(1).set_notify(lambda: calls.append(1))
    backend.feed(b"x")
    assert sorted(calls) == [0, 1]


# -- terminals ----------------------------------------------------------------------

def test_tty_goes_raw_and_is_restored_on_close():
    termios = pytest.importorskip("termios")
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        cd = StdioChardev("stdio", in_fd=slave, out_fd=slave, signal=False)
        lflag = termios.tcgetattr(slave)[3]
        assert not lflag & (termios.ICANON | termios.ECHO | termios.ISIG)
        sink = Sink()
        cd.attach(sink)
        os.write(master, b"\x03\r")  # Ctrl-C and CR reach the guest untranslated
        pump_until(cd, sink, b"\x03\r")
        cd.close()
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_tty_is_restored_when_the_interpreter_dies_of_an_exception():
    import subprocess
    import sys

    termios = pytest.importorskip("termios")
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        script = ("from emu.host.chardev import parse_chardev\n"
                  "cd = parse_chardev('stdio')\n"
                  "import termios, sys\n"
                  "assert not termios.tcgetattr(0)[3] & termios.ICANON\n"
                  "raise RuntimeError('boom')\n")
        proc = subprocess.run([sys.executable, "-c", script], stdin=slave,
                              capture_output=True, timeout=30,
                              cwd=Path(__file__).resolve().parents[2])
        assert b"RuntimeError: boom" in proc.stderr
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)
