"""QMP as management software speaks it: pyemu driven through the real client library
``qemu.qmp`` (its asyncio QMPClient and the synchronous legacy QEMUMonitorProtocol), and
through a raw socket for what no well-behaved client sends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
from pathlib import Path

import pytest
from qemu.qmp import ExecuteError, QMPClient
from qemu.qmp.legacy import QEMUMonitorProtocol
from test_migration import DIRTY, carried_on, free_port, listening, rounds, wait_for

COMMANDS = ("query-status", "query-version", "query-commands", "query-name", "stop", "cont",
            "system_reset", "system_powerdown", "quit", "query-cpus-fast", "query-block",
            "query-chardev", "migrate", "migrate-incoming", "migrate_cancel",
            "query-migrate", "migrate-set-parameters", "query-migrate-parameters",
            "migrate-set-capabilities", "query-migrate-capabilities", "snapshot-save",
            "snapshot-load", "snapshot-delete", "qom-list", "qom-get", "qom-set",
            "machine-export", "blockdev-change-medium", "eject", "blockdev-open-tray",
            "blockdev-close-tray", "human-monitor-command", "x-query-state", "qmp_capabilities")


class Guest:
    """A pyemu process running the dirty guest with a QMP socket."""

    def __init__(self, tmp: Path, pyemu_proc, guest, *args: str, name: str = "vm",
                 kernel: bool = True) -> None:
        self.sock = tmp / f"{name}.qmp"
        self.out = tmp / f"{name}.txt"
        boot = ("-kernel", guest("dirty"), *DIRTY) if kernel else ()
        self.proc = pyemu_proc(*boot, *args, "-serial", f"file:{self.out}",
                               "-monitor", "none", "-qmp", f"unix:{self.sock},server,nowait")
        wait_for(lambda: self.sock.exists() or self.proc.poll() is not None,
                 what="the QMP socket")
        assert self.proc.poll() is None, self.proc.stderr.read().decode()

    def legacy(self) -> QEMUMonitorProtocol:
        qmp = QEMUMonitorProtocol(str(self.sock))
        qmp.connect()
        return qmp

    def raw(self) -> RawClient:
        return RawClient(self.sock)

    def running_on(self) -> None:
        """The guest's rounds still advance."""
        before = rounds(self.out)[-1] if rounds(self.out) else 0
        wait_for(lambda: rounds(self.out) and rounds(self.out)[-1] >= before + 2,
                 what="the guest's rounds to advance")


@pytest.fixture
def vm(tmp_path, pyemu_proc, guest):
    g = Guest(tmp_path, pyemu_proc, guest)
    wait_for(lambda: len(rounds(g.out)) >= 1, what="the guest's first round")
    return g


class RawClient:
    """A QMP client on a plain socket, for what the library would never send."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.buf = b""

    def recv(self) -> dict | None:
        """The next message, or None once the server has hung up."""
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:  # it hung up on input it had not read
                return None
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)

    def send(self, data: bytes | dict) -> None:
        self.sock.sendall(data if isinstance(data, bytes) else json.dumps(data).encode())

    def negotiate(self) -> None:
        assert "QMP" in self.recv()
        self.send({"execute": "qmp_capabilities"})
        assert self.recv() == {"return": {}}


def error(reply: dict) -> tuple[str, str]:
    return reply["error"]["class"], reply["error"]["desc"]


def test_legacy_client_queries_and_stops_the_guest(vm):
    qmp = vm.legacy()
    try:
        assert qmp.cmd("query-status") == {"status": "running", "running": True,
                                           "singlestep": False}
        version = qmp.cmd("query-version")
        assert set(version["qemu"]) == {"major", "minor", "micro"}
        assert version["package"].startswith("pyemu ")
        names = {c["name"] for c in qmp.cmd("query-commands")}
        assert names >= set(COMMANDS)
        assert qmp.cmd("stop") == {}
        event = qmp.pull_event(wait=5.0)
        assert event["event"] == "STOP" and event["data"] == {}
        assert abs(event["timestamp"]["seconds"] - time.time()) < 30
        assert 0 <= event["timestamp"]["microseconds"] < 1_000_000
        assert qmp.cmd("query-status")["status"] == "paused"
        last = rounds(vm.out)[-1]
        time.sleep(0.3)
        assert rounds(vm.out)[-1] == last
        assert qmp.cmd("cont") == {}
        assert qmp.pull_event(wait=5.0)["event"] == "RESUME"
        vm.running_on()
        assert qmp.cmd("query-cpus-fast")[0]["cpu-index"] == 0
        assert qmp.cmd("query-chardev") == [
            {"label": "serial0", "filename": f"file:{vm.out}", "frontend-open": True}]
        assert qmp.cmd("query-block") == []
        assert qmp.cmd("query-name") == {}
    finally:
        qmp.close()


def test_async_client_commands_errors_and_events(vm):
    async def session() -> None:
        qmp = QMPClient("test")
        await qmp.connect(str(vm.sock))
        try:
            assert (await qmp.execute("query-status"))["running"] is True
            with pytest.raises(ExecuteError) as e:
                await qmp.execute("no-such-command")
            assert e.value.error_class == "CommandNotFound"
            assert str(e.value) == "The command no-such-command has not been found"
            with pytest.raises(ExecuteError) as e:
                await qmp.execute("qom-get", {"path": 7, "property": "lcr"})
            assert str(e.value) == "Invalid parameter type for 'path', expected: string"
            with pytest.raises(ExecuteError) as e:
                await qmp.execute("qom-get", {"path": "/machine/serial0"})
            assert str(e.value) == "Parameter 'property' is missing"
            with pytest.raises(ExecuteError) as e:
                await qmp.execute("query-status", {"verbose": True})
            assert str(e.value) == "Parameter 'verbose' is unexpected"
            with qmp.listener(("STOP", "RESUME")) as events:
                await qmp.execute("stop")
                assert (await asyncio.wait_for(events.get(), 5))["event"] == "STOP"
                await qmp.execute("cont")
                assert (await asyncio.wait_for(events.get(), 5))["event"] == "RESUME"
        finally:
            await qmp.disconnect()

    asyncio.run(session())
    vm.running_on()


def test_qom_state_and_the_human_monitor(vm):
    qmp = vm.legacy()
    try:
        children = {p["name"]: p["type"] for p in qmp.cmd("qom-list", path="/machine")}
        assert children["serial0"] == "child<isa-serial>"
        props = {p["name"]: p["type"] for p in qmp.cmd("qom-list", path="/machine/serial0")}
        assert props["iobase"] == "uint16" and props["rx_fifo"] == "string"
        assert qmp.cmd("qom-get", path="/machine/serial0", property="iobase") == 0x3F8
        assert qmp.cmd("qom-get", path="/machine/serial0", property="type") == "isa-serial"
        # a state field, type-checked; the guest sees it through the port
        assert qmp.cmd("qom-set", path="/machine/serial0", property="scr", value=0x5A) == {}
        assert qmp.cmd("qom-get", path="/machine/serial0", property="scr") == 0x5A
        cls, desc = error(qmp.cmd_obj({"execute": "qom-set", "arguments": {
            "path": "/machine/serial0", "property": "scr", "value": 256}}))
        assert cls == "GenericError" and "out of range" in desc
        cls, desc = error(qmp.cmd_obj({"execute": "qom-set", "arguments": {
            "path": "/machine/serial0", "property": "iir", "value": 1}}))
        assert "derived" in desc
        cls, desc = error(qmp.cmd_obj({"execute": "qom-set", "arguments": {
            "path": "/machine/serial0", "property": "iobase", "value": 0x2F8}}))
        assert desc == ("Attempt to set property 'iobase' on '/machine/serial0' after it "
                        "was realized")
        cls, desc = error(qmp.cmd_obj({"execute": "qom-get", "arguments": {
            "path": "/machine/nowhere", "property": "x"}}))
        assert (cls, desc) == ("DeviceNotFound", "Device '/machine/nowhere' not found")
        cls, desc = error(qmp.cmd_obj({"execute": "qom-get", "arguments": {
            "path": "/machine/serial0", "property": "nothing"}}))
        assert desc == "Property 'isa-serial.nothing' not found"
        # the state tree, as the migration sees it
        uart = qmp.cmd("x-query-state", path="/machine/serial0")
        assert uart["type"] == "isa-serial" and uart["state"]["scr"] == 0x5A
        cpu = qmp.cmd("x-query-state", path="/machine/cpu")
        assert cpu["state"]["rip"] > 0 and "segments" in cpu["state"]
        tree = qmp.cmd("x-query-state", path="/machine", recursive=True)
        assert tree["children"]["serial0"]["state"]["scr"] == 0x5A
        assert "cpu" in tree["children"]
        # the machine description, as HMP's machine-export writes it
        out = vm.out.with_name("vm.json")
        assert qmp.cmd("machine-export", file=str(out)) == {}
        assert qmp.cmd("human-monitor-command", **{"command-line": f"machine-export {out}2"}) \
            == ""
        assert out.read_bytes() == out.with_name("vm.json2").read_bytes()
        # the CPU and the clock are objects of the tree, which every machine has: the
        # description leaves them implied
        objects = json.loads(out.read_text())["objects"]
        assert objects[0]["path"] == "/machine/pci"
        assert {"/machine/cpu", "/machine/clock"}.isdisjoint(o["path"] for o in objects)
        kids = {p["name"]: p["type"] for p in qmp.cmd("qom-list", path="/machine")}
        assert kids["cpu"] == "child<x86-cpu>" and kids["clock"] == "child<virtual-clock>"
        clock = qmp.cmd("x-query-state", path="/machine/clock")
        assert clock["type"] == "virtual-clock" and clock["state"]["ns"] > 0
        cls, desc = error(qmp.cmd_obj({"execute": "machine-export", "arguments": {
            "file": str(out.parent)}}))
        assert (cls, desc) == ("GenericError", f"could not write '{out.parent}': Is a directory")
        # the human monitor, errors included, with QEMU's line ends
        assert qmp.cmd("human-monitor-command", **{"command-line": "info status"}) == \
            "VM status: running\r\n"
        assert qmp.cmd("human-monitor-command", **{"command-line": "bogus"}) == \
            "unknown command: 'bogus'\r\n"
        assert qmp.cmd("human-monitor-command", **{"command-line": "stop"}) == ""
        assert qmp.cmd("query-status")["status"] == "paused"
        assert qmp.cmd("human-monitor-command", **{"command-line": "cont"}) == ""
    finally:
        qmp.close()
    vm.running_on()


def test_negotiation_ids_and_a_stream_split_anywhere(vm):
    c = vm.raw()
    greeting = c.recv()
    assert greeting["QMP"]["capabilities"] == ["oob"]
    c.send({"execute": "query-status", "id": 1})
    assert c.recv() == {"id": 1, "error": {
        "class": "CommandNotFound",
        "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}
    for byte in b'{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}':
        c.send(bytes([byte]))  # one byte at a time
    assert c.recv() == {"return": {}}
    # two messages in one write, ids of any JSON type, echoed as sent
    c.send(b'{"execute":"query-status","id":{"a":[1,"}"]}} {"execute":"query-name","id":"x"}')
    first, second = c.recv(), c.recv()
    assert first["id"] == {"a": [1, "}"]} and first["return"]["running"] is True
    assert second == {"id": "x", "return": {}}
    c.send({"execute": "qmp_capabilities", "id": 2})
    assert error(c.recv())[0] == "CommandNotFound"
    # malformed input gets an error and the session goes on
    c.send(b'{"execute": "query-status", "id": 3,}')
    cls, desc = error(c.recv())
    assert cls == "GenericError" and desc.startswith("JSON parse error, ")
    c.send(b"[1, 2]")
    assert error(c.recv()) == ("GenericError", "QMP input must be a JSON object")
    c.send(b'{"arguments": {}}')
    assert error(c.recv()) == ("GenericError", "QMP input lacks member 'execute'")
    c.send(b'{"execute": "stop", "arguments": []}')
    assert error(c.recv())[1] == "QMP input member 'arguments' must be an object"
    c.send(b'}{"execute": "query-status", "id": "after"}')
    assert error(c.recv())[1].startswith("JSON parse error")
    assert c.recv()["id"] == "after"
    c.sock.close()
    vm.running_on()


def test_huge_messages_and_abrupt_disconnects_leave_the_guest_running(vm):
    c = vm.raw()
    c.negotiate()
    try:
        c.send(b'{"execute": "query-status", "arguments": {"x": "' + b"A" * (2 << 20) + b'"}}')
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server hung up before taking it all
    cls, desc = error(c.recv())
    assert cls == "GenericError" and "exceeds" in desc
    assert c.recv() is None  # and the connection is dropped
    # clients that vanish: mid-message, mid-command, with a reset
    for partial in (b'{"execute": "query-st', b'{"execute": "query-migrate"}'):
        d = vm.raw()
        d.negotiate()
        d.send(partial)
        d.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        d.sock.close()
    silent = vm.raw()  # connected, never negotiating, never reading
    qmp = vm.legacy()
    try:
        assert qmp.cmd("query-status")["running"] is True
    finally:
        qmp.close()
    vm.running_on()
    silent.sock.close()


def test_only_strict_json_is_taken(vm):
    c = vm.raw()
    c.negotiate()
    for text, desc in [
            (b'{"execute": "stop", "id": NaN}', "'NaN' is not a JSON value"),
            (b'{"execute": "stop", "arguments": {"x": -Infinity}}',
             "'-Infinity' is not a JSON value"),
            (b'{"execute": "stop", "id": 1e400}', "number '1e400' is out of range"),
            (b'{"execute": "stop", "execute": "query-status"}', "duplicate key 'execute'")]:
        c.send(text)
        assert error(c.recv()) == ("GenericError", f"JSON parse error, {desc}")
    c.send(b'{"execute": "query-status", "id": 1}')
    assert c.recv() == {"id": 1, "return": {"status": "running", "running": True,
                                            "singlestep": False}}  # nothing was stopped
    c.sock.close()


def test_a_client_past_the_cap_is_told_why_it_is_closed(vm):
    from emu.monitor.qmp import MAX_SESSIONS

    clients = []
    try:
        for _ in range(MAX_SESSIONS):  # one at a time: the listen backlog is short
            clients.append(vm.raw())
            assert "QMP" in clients[-1].recv()
        extra = vm.raw()
        clients.append(extra)
        assert extra.recv() == {"error": {
            "class": "GenericError", "desc": f"too many QMP clients ({MAX_SESSIONS}); try later"}}
        assert extra.recv() is None
    finally:
        for c in clients:
            c.sock.close()

    def greeted() -> bool:
        c = vm.raw()
        try:
            return "QMP" in (c.recv() or {})
        finally:
            c.sock.close()

    wait_for(greeted, what="the places to be free again")
    vm.running_on()


def test_several_clients_and_events_only_after_negotiation(vm):
    clients = [vm.legacy() for _ in range(3)]
    waiting = vm.raw()
    assert "QMP" in waiting.recv()
    try:
        assert clients[0].cmd("stop") == {}
        for qmp in clients:
            assert qmp.pull_event(wait=5.0)["event"] == "STOP"
        assert clients[1].cmd("cont") == {}
        for qmp in clients:
            assert qmp.pull_event(wait=5.0)["event"] == "RESUME"
        assert clients[2].cmd("system_reset") == {}
        for qmp in clients:
            event = qmp.pull_event(wait=5.0)
            assert event["event"] == "RESET"
            assert event["data"] == {"guest": False, "reason": "host-qmp-system-reset"}
        assert clients[0].cmd("system_powerdown") == {}
        assert clients[0].pull_event(wait=5.0)["event"] == "POWERDOWN"
        waiting.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            waiting.recv()  # a session still negotiating hears no events
    finally:
        for qmp in clients:
            qmp.close()
        waiting.sock.close()
    vm.running_on()


def test_quit_sends_shutdown_and_ends_the_process(vm):
    qmp = vm.legacy()
    try:
        assert qmp.cmd("quit") == {}
        event = qmp.pull_event(wait=5.0)
        assert event["event"] == "SHUTDOWN"
        assert event["data"] == {"guest": False, "reason": "host-qmp-quit"}
    finally:
        # after quit the server hangs up; when that reaches qemu.qmp's reader before
        # close(), close() raises it again as EOFError, as the library documents
        with contextlib.suppress(EOFError):
            qmp.close()
    assert vm.proc.wait(15) == 0


def test_snapshots(tmp_path, pyemu_proc, guest, monkeypatch):
    monkeypatch.setenv("PYEMU_SNAPSHOT_DIR", str(tmp_path / "snapshots"))
    vm = Guest(tmp_path, pyemu_proc, guest)
    wait_for(lambda: len(rounds(vm.out)) >= 1, what="the guest's first round")
    qmp = vm.legacy()
    tag = "qmp-test"
    try:
        assert qmp.cmd("snapshot-save", tag=tag) == {}
        assert (tmp_path / "snapshots" / f"{tag}.pyemu").exists()
        assert qmp.cmd("snapshot-load", tag=tag) == {}
        assert qmp.cmd("query-status")["running"] is True
        assert qmp.cmd("snapshot-delete", tag=tag) == {}
        cls, desc = error(qmp.cmd_obj({"execute": "snapshot-delete",
                                       "arguments": {"tag": tag}}))
        assert desc == f"snapshot '{tag}' not found"
        cls, desc = error(qmp.cmd_obj({"execute": "snapshot-load",
                                       "arguments": {"tag": "../x"}}))
        assert cls == "GenericError" and "invalid snapshot name" in desc
    finally:
        qmp.close()
    vm.running_on()


def test_migration_settings(vm):
    qmp = vm.legacy()
    try:
        assert qmp.cmd("query-migrate") == {}
        assert qmp.cmd("migrate-set-parameters", **{"downtime-limit": 50,
                                                     "max-bandwidth": 1 << 30}) == {}
        params = qmp.cmd("query-migrate-parameters")
        assert params["downtime-limit"] == 50 and params["max-bandwidth"] == 1 << 30
        cls, desc = error(qmp.cmd_obj({"execute": "migrate-set-parameters", "arguments": {
            "downtime-limit": 10, "cpu-throttle-initial": 500}}))
        assert "cpu-throttle-initial" in desc
        assert qmp.cmd("query-migrate-parameters")["downtime-limit"] == 50  # all or nothing
        cls, desc = error(qmp.cmd_obj({"execute": "migrate-set-parameters",
                                       "arguments": {"downtime-limit": "1"}}))
        assert desc == "Invalid parameter type for 'downtime-limit', expected: integer"
        assert qmp.cmd("migrate-set-capabilities", capabilities=[
            {"capability": "events", "state": True},
            {"capability": "auto-converge", "state": True}]) == {}
        caps = {c["capability"]: c["state"] for c in qmp.cmd("query-migrate-capabilities")}
        assert caps["events"] and caps["auto-converge"] and not caps["xbzrle"]
        cls, desc = error(qmp.cmd_obj({"execute": "migrate-set-capabilities", "arguments": {
            "capabilities": [{"capability": "events", "state": "on"}]}}))
        assert desc == "Invalid parameter type for 'capabilities[0].state', expected: boolean"
        cls, desc = error(qmp.cmd_obj({"execute": "migrate", "arguments": {"uri": "bogus:x"}}))
        assert cls == "GenericError"
        cls, desc = error(qmp.cmd_obj({"execute": "migrate-incoming",
                                       "arguments": {"uri": "tcp:127.0.0.1:1"}}))
        assert "only allowed once" in desc
    finally:
        qmp.close()


def test_a_live_migration_driven_only_over_qmp(tmp_path, pyemu_proc, guest):
    src = Guest(tmp_path, pyemu_proc, guest, name="src")
    dst = Guest(tmp_path, pyemu_proc, guest, "-incoming", "defer", name="dst")
    wait_for(lambda: len(rounds(src.out)) >= 2, what="the source guest's rounds")
    sq, dq = src.legacy(), dst.legacy()
    try:
        assert dq.cmd("query-status") == {"status": "inmigrate", "running": False,
                                          "singlestep": False}
        events_on = [{"capability": "events", "state": True}]
        assert dq.cmd("migrate-set-capabilities", capabilities=events_on) == {}
        assert sq.cmd("migrate-set-capabilities", capabilities=events_on) == {}
        port = free_port()
        uri = f"tcp:127.0.0.1:{port}"
        assert dq.cmd("migrate-incoming", uri=uri) == {}
        wait_for(lambda: listening(port), what="the destination to listen")
        assert sq.cmd("migrate", uri=uri) == {}  # returns at once
        seen = []
        while not seen or seen[-1] not in ("completed", "failed", "cancelled"):
            event = sq.pull_event(wait=30.0)
            if event["event"] == "MIGRATION":
                seen.append(event["data"]["status"])
        assert seen[0] == "setup" and "active" in seen and seen[-1] == "completed", seen
        info = sq.cmd("query-migrate")
        assert info["status"] == "completed" and info["downtime"] < 300
        ram = info["ram"]
        assert ram["total"] == 128 << 20 and ram["transferred"] > 0
        assert ram["remaining"] == 0 and ram["page-size"] == 4096
        assert ram["normal-bytes"] == ram["normal"] * 4096 and ram["dirty-sync-count"] >= 2
        assert sq.cmd("query-status")["status"] == "postmigrate"
        last = rounds(src.out)[-1]
        wait_for(lambda: dq.cmd("query-status")["status"] == "running",
                 what="the destination to run")
        carried_on(src.out, dst.out, last)
        assert dq.cmd("query-migrate")["status"] == "completed"
        dst_events = [e["event"] for e in dq.get_events()]
        assert "MIGRATION" in dst_events and "RESUME" in dst_events
    finally:
        sq.close()
        dq.close()


def test_bad_qmp_options_are_refused(pyemu):
    r = pyemu("-qmp", "tcp:127.0.0.1:4444")
    assert r.returncode == 1
    assert b"-qmp tcp:127.0.0.1:4444: pyemu's QMP only listens: add ',server'" in r.stderr
    r = pyemu("-qmp", "stdio")
    assert r.returncode == 1 and b"QMP listens on unix:PATH,server" in r.stderr


def test_tcp_listens_on_loopback_by_default(pyemu_proc, guest, tmp_path):
    port = free_port()
    proc = pyemu_proc("-kernel", guest("dirty"), *DIRTY, "-serial", "null",
                      "-monitor", "none", "-qmp", f"tcp::{port},server,nowait")
    wait_for(lambda: listening(port) or proc.poll() is not None, what="QMP to listen")
    qmp = QEMUMonitorProtocol(("127.0.0.1", port))
    try:
        qmp.connect()
        assert qmp.cmd("query-status")["running"] is True
    finally:
        qmp.close()
    for table in ("/proc/net/tcp",):
        with open(table) as f:
            rows = [line.split() for line in f.readlines()[1:]]
        bound = [r[1] for r in rows if r[3] == "0A" and int(r[1].rsplit(":", 1)[1], 16) == port]
        assert bound == [f"0100007F:{port:04X}"]


# -- the stream splitter on its own ------------------------------------------------------------

def test_the_splitter_finds_values_wherever_the_stream_is_cut():
    from emu.monitor.qmp import JsonSplitter

    stream = (b' {"a": "x}\\"]{", "b": [1, {"c": "\\\\"}]}\r\n[2]{"d":"\xc3\xa9"}'
              b' true "s p" }')
    want = [b'{"a": "x}\\"]{", "b": [1, {"c": "\\\\"}]}', b"[2]", b'{"d":"\xc3\xa9"}',
            b"true", b'"s p"', b"}"]
    for cut in range(len(stream) + 1):
        s = JsonSplitter()
        got = [*s.feed(stream[:cut]), *s.feed(stream[cut:])]
        assert got == want, cut
    s = JsonSplitter()
    assert [t for byte in stream for t in s.feed(bytes([byte]))] == want


def test_the_splitter_refuses_values_too_big_or_too_deep():
    from emu.monitor.qmp import JsonSplitter, JsonStreamError

    s = JsonSplitter(max_size=100)
    assert list(s.feed(b'{"a": "' + b"x" * 90)) == []
    with pytest.raises(JsonStreamError):
        list(s.feed(b"x" * 20))
    with pytest.raises(JsonStreamError):
        list(JsonSplitter(max_size=100).feed(b"[" + b"1," * 60 + b"1]"))
    texts = JsonSplitter(max_depth=8).feed(b"[1] " + b"[" * 9)
    assert next(texts) == b"[1]"  # what came before is found first
    with pytest.raises(JsonStreamError):
        next(texts)


def test_removable_media_over_qmp(tmp_path, pyemu_proc, guest):
    discs = []
    for name, sectors in (("one", 3), ("two", 5)):
        discs.append(tmp_path / f"{name}.iso")
        discs[-1].write_bytes(name.encode() * (2048 * sectors // len(name) + 1))
        discs[-1].write_bytes(discs[-1].read_bytes()[:2048 * sectors])
    g = Guest(tmp_path, pyemu_proc, guest, "-drive", f"if=ide,index=2,media=cdrom,file={discs[0]}",
              "-drive", "if=ide,index=3,media=cdrom,id=empty")
    qmp = g.legacy()
    try:
        def cd(name: str) -> dict:
            return next(b for b in qmp.cmd("query-block") if b["device"] == name)

        assert cd("ide1-cd0")["inserted"]["image"]["virtual-size"] == 3 * 2048
        assert cd("empty")["tray_open"] is False and "inserted" not in cd("empty")
        assert qmp.cmd("blockdev-open-tray", device="ide1-cd0") == {}
        assert cd("ide1-cd0")["tray_open"] is True
        moved = qmp.pull_event(wait=5)
        assert moved["event"] == "DEVICE_TRAY_MOVED"
        assert moved["data"] == {"device": "ide1-cd0", "id": "/machine/ide/ide1/master",
                                 "tray-open": True}
        assert qmp.cmd("blockdev-close-tray", id="ide1-cd0") == {}
        assert qmp.cmd("blockdev-change-medium", device="empty", filename=str(discs[1])) == {}
        assert cd("empty")["inserted"]["file"] == str(discs[1])
        assert qmp.cmd("eject", device="ide1-cd0") == {}
        assert cd("ide1-cd0")["tray_open"] is True and "inserted" not in cd("ide1-cd0")
        for args, want in (
                ({"device": "nope"}, ("DeviceNotFound", "Device 'nope' not found")),
                ({}, ("GenericError", "Need exactly one of 'device' and 'id'")),
                ({"device": "ide0-hd0"}, ("DeviceNotFound", "Device 'ide0-hd0' not found"))):
            assert error(qmp.cmd_obj({"execute": "eject", "arguments": args})) == want
        assert error(qmp.cmd_obj({"execute": "blockdev-change-medium", "arguments": {
            "device": "empty", "filename": str(discs[0]), "format": "vmdk"}})) == \
            ("GenericError", "format 'vmdk' is not supported: only raw and qcow2")
        assert error(qmp.cmd_obj({"execute": "blockdev-change-medium", "arguments": {
            "device": "empty", "filename": str(discs[0]), "format": "qcow2"}}))[1].endswith(
            "format=qcow2 but the file does not start with the qcow2 magic (raw data? give "
            "format=raw)")
        # the description (what a migration carries) holds the drives as they are now
        out = tmp_path / "vm.json"
        assert qmp.cmd("machine-export", file=str(out)) == {}
        drives = {d["id"]: d for d in json.loads(out.read_text())["config"]["drives"]}
        assert drives["ide1-cd0"]["file"] == "" and drives["empty"]["file"] == str(discs[1])
    finally:
        qmp.close()
    g.running_on()


def test_hotplug_commands_over_qmp(tmp_path, pyemu_proc, guest):
    g = Guest(tmp_path, pyemu_proc, guest)
    qmp = g.legacy()
    out = tmp_path / "card.out"
    try:
        def call(name: str, **args) -> tuple[str, str]:
            return error(qmp.cmd_obj({"execute": name, "arguments": args}))

        assert qmp.cmd("chardev-add", id="c1", backend={
            "type": "file", "data": {"out": str(out)}}) == {}
        assert qmp.cmd("chardev-add", id="c2", backend={"type": "socket", "data": {
            "addr": {"type": "unix", "data": {"path": str(tmp_path / "c2.sock")}},
            "server": True, "wait": False}}) == {}
        labels = {c["label"]: c["filename"] for c in qmp.cmd("query-chardev")}
        assert labels["c1"] == f"file:{out}" and labels["c2"].startswith("unix:")
        assert call("chardev-add", id="c1", backend={"type": "null"}) == (
            "GenericError", "attempt to add duplicate property 'c1' to object "
                            "(type 'container')")
        assert call("chardev-add", id="c3", backend={"type": "pty"}) == (
            "GenericError", "chardev-add: backend 'pty' with these arguments is not "
                            "supported (null, file with out, socket with addr)")
        assert qmp.cmd("device_add", driver="pci-serial", id="ps0", chardev="c1",
                       addr="0x5") == {}
        card = {p["name"]: p["type"] for p in qmp.cmd("qom-list", path="/machine/ps0")}
        assert card["chardev"] == "link<chardev>"
        assert qmp.cmd("qom-get", path="/machine/ps0", property="devfn") == 5 << 3
        for args, want in (
                ({"driver": "pci-serial", "id": "ps0"}, "Duplicate device ID 'ps0'"),
                ({"driver": "pci-serial", "addr": "5"}, "pci-serial: PCI slot 0x5 function "
                                                        "0 is in use"),
                ({"driver": "pci-serial", "chardev": "c1"},
                 "Property 'pci-serial.chardev' can't take value 'c1', it's in use"),
                ({"driver": "pci-serial", "chardev": "nope"},
                 "Property 'pci-serial.chardev' can't find value 'nope'"),
                ({"driver": "isa-debug-exit"}, "Bus 'isa.0' does not support hotplugging "
                                               "(isa-debug-exit)"),
                ({"driver": "e1000"}, "unknown device 'e1000': pyemu's -device adds "
                                      "isa-debug-exit, pci-serial ('-device help')"),
                ({"driver": "pci-serial", "addr": "1"}, "addr=1: expected a PCI slot from "
                 "0x2 to 0x1f (0 and 1 hold the chipset), optionally '.FUNCTION'"),
                ({"driver": "pci-serial", "speed": "a,b"},
                 "Parameter 'speed' expects a string, number or boolean without ','")):
            assert call("device_add", **args) == ("GenericError", want), args
        assert call("device_del", id="nope") == ("DeviceNotFound", "Device 'nope' not found")
        assert call("chardev-remove", id="c1") == ("GenericError", "Chardev 'c1' is busy")
        assert qmp.cmd("chardev-remove", id="c2") == {}
        # the guest runs no ACPI: the card stays until a guest ejects it, as on QEMU
        assert qmp.cmd("device_del", id="ps0") == {}
        assert qmp.cmd("qom-get", path="/machine/ps0", property="devfn") == 5 << 3
        export = tmp_path / "vm.json"
        assert qmp.cmd("machine-export", file=str(export)) == {}
        assert json.loads(export.read_text())["config"]["devices"] == [
            "pci-serial,id=ps0,addr=0x5.0,chardev=c1"]
    finally:
        qmp.close()
    g.running_on()
