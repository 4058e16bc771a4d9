"""QMP sessions against hostile clients, in-process: strict JSON in, valid JSON out, and a
line saying why whenever the server hangs up on a client."""

from __future__ import annotations

import json
import logging
import socket
import time
from concurrent.futures import Future
from types import SimpleNamespace

import pytest

from emu.monitor import qmp
from emu.monitor.qmp import MAX_MESSAGE, MAX_SESSIONS, QmpCommand, QmpError, QmpServer


class StubMachine:
    """What a QMP server needs of a machine; posted functions run at once."""

    runstate = "running"

    def __init__(self) -> None:
        self.listeners: list = []
        self.migration = SimpleNamespace(listeners=[], capabilities={})

    def post(self, fn) -> Future:
        fut: Future = Future()
        fut.set_result(fn())
        return fut


@pytest.fixture
def server(tmp_path):
    srv = QmpServer(f"unix:{tmp_path}/qmp.sock,server,nowait")
    srv.start(StubMachine())
    yield srv
    srv.close()


class Client:
    def __init__(self, srv: QmpServer) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(srv.address)
        self.file = self.sock.makefile("rb")

    def recv(self) -> dict | None:
        """The next message, strictly parsed; None once the server has hung up."""
        try:
            line = self.file.readline()
        except ConnectionResetError:  # it hung up on input it had not read
            return None
        return json.loads(line, parse_constant=pytest.fail) if line else None

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def negotiate(self) -> None:
        assert "QMP" in self.recv()
        self.send(b'{"execute": "qmp_capabilities"}')
        assert self.recv() == {"return": {}}

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def connect(server):
    clients: list[Client] = []

    def make() -> Client:
        clients.append(Client(server))
        return clients[-1]

    yield make
    for c in clients:
        c.close()


# -- strict JSON in ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, desc", [
    (b'{"execute": "x", "id": NaN}', "JSON parse error, 'NaN' is not a JSON value"),
    (b'{"execute": "x", "arguments": {"v": [Infinity]}}',
     "JSON parse error, 'Infinity' is not a JSON value"),
    (b'{"execute": "x", "id": -Infinity}', "JSON parse error, '-Infinity' is not a JSON value"),
    (b'{"execute": "x", "id": 1e999}', "JSON parse error, number '1e999' is out of range"),
    (b'{"execute": "stop", "execute": "quit"}', "JSON parse error, duplicate key 'execute'"),
    (b'{"execute": "x", "arguments": {"a": {"b": 1, "b": 2}}}',
     "JSON parse error, duplicate key 'b'"),
])
def test_requests_are_strict_json(text, desc):
    with pytest.raises(QmpError) as e:
        qmp.parse_request(text)
    assert (e.value.error_class, e.value.desc) == ("GenericError", desc)


def test_a_session_refuses_non_json_numbers_and_duplicate_keys(connect):
    c = connect()
    c.negotiate()
    c.send(b'{"execute": "query-status", "id": NaN}')
    assert c.recv() == {"error": {"class": "GenericError",
                                  "desc": "JSON parse error, 'NaN' is not a JSON value"}}
    c.send(b'{"execute": "query-status", "id": 1, "id": 2}')
    assert c.recv()["error"]["desc"] == "JSON parse error, duplicate key 'id'"
    c.send(b'{"execute": "query-status", "id": [1.5, {"k": null}]}')
    assert c.recv()["id"] == [1.5, {"k": None}]  # valid ids are echoed as sent


# -- valid JSON out ----------------------------------------------------------------------------

def test_a_reply_json_cannot_carry_becomes_an_error_with_its_id(connect, monkeypatch):
    monkeypatch.setitem(qmp.QMP_COMMANDS, "x-nan", QmpCommand(
        "x-nan", {}, lambda machine, args: {"ratio": float("nan")}))
    c = connect()
    c.negotiate()
    c.send(b'{"execute": "x-nan", "id": 7}')
    reply = c.recv()
    assert reply["id"] == 7 and reply["error"]["class"] == "GenericError"
    assert reply["error"]["desc"].startswith("internal error: reply is not JSON")


def test_an_event_json_cannot_carry_is_not_sent(server, connect):
    c = connect()
    c.negotiate()
    server.broadcast("BAD", {"v": float("inf")})
    server.broadcast("GOOD", {})
    assert c.recv()["event"] == "GOOD"


# -- a line saying why, then the hang-up --------------------------------------------------------

def test_a_client_past_the_cap_is_told_why(connect):
    clients = []
    for _ in range(MAX_SESSIONS):  # one at a time: the listen backlog is short
        clients.append(connect())
        assert "QMP" in clients[-1].recv()
    extra = connect()
    assert extra.recv() == {"error": {"class": "GenericError",
                                      "desc": f"too many QMP clients ({MAX_SESSIONS}); "
                                              "try later"}}
    assert extra.recv() is None
    clients[0].close()  # a place frees up
    for _ in range(50):
        late = connect()
        if "QMP" in late.recv():
            break
        time.sleep(0.05)
    else:
        pytest.fail("no room after a client left")


@pytest.mark.parametrize("data, why", [
    (b'{"execute": "' + b"x" * MAX_MESSAGE + b'"}', f"exceeds {MAX_MESSAGE} bytes"),
    (b"[" * 200, "nesting deeper than 128 levels"),
])
def test_a_client_sending_too_much_is_told_why(connect, data, why):
    c = connect()
    c.negotiate()
    c.send(b'{"execute": "query-status", "id": "before"}')
    try:
        c.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # hung up before taking all of it
    assert c.recv()["id"] == "before"  # what was asked before is answered
    error = c.recv()["error"]
    assert why in error["desc"] and error["desc"].endswith("; closing the connection")
    assert c.recv() is None


def test_a_client_that_stops_reading_is_told_why_when_it_reads_again(server, connect,
                                                                     monkeypatch, caplog):
    monkeypatch.setattr(qmp, "MAX_OUTPUT", 64 << 10)
    caplog.set_level(logging.WARNING, "emu.monitor")
    c = connect()
    c.negotiate()
    sent = 0
    while "does not read" not in caplog.text:  # until socket buffers and queue are full
        assert sent < 100_000, "never dropped"
        server.broadcast("TICK", {"n": sent, "pad": "x" * 200})
        sent += 1
    messages = []
    while (msg := c.recv()) is not None:
        messages.append(msg)
    *events, last = messages
    assert [e["data"]["n"] for e in events] == list(range(len(events)))  # whole, in order
    assert len(events) < sent
    assert last == {"error": {"class": "GenericError", "desc": (
        f"QMP client does not read its replies ({64 << 10} bytes waiting); "
        "closing the connection")}}
