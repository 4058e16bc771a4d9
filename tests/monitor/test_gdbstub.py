"""The gdb stub's packet layer, target description and packets against a real machine
(GDB manual, Remote Protocol: Overview, Packets, Stop Reply Packets, General Query
Packets, Interrupts; Target Descriptions)."""

from __future__ import annotations

import re
import subprocess
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from emu.cli import UsageError, parse_args
from emu.monitor.gdbstub import (
    Debugger,
    Event,
    GdbSession,
    PacketReader,
    checksum,
    escape,
    frame,
    parse_spec,
    register_file,
    target_xml,
    unescape,
)

GUESTS = Path(__file__).resolve().parents[1] / "guests" / "build"

def _symbol(name: str, guest: str = "hello") -> int:
    out = subprocess.run(["nm", str(GUESTS / f"{guest}.elf")], capture_output=True,
                         text=True, check=True).stdout
    return int(re.search(rf"^([0-9a-f]+) \w {name}$", out, re.M).group(1), 16)


# -- packets ---------------------------------------------------------------------------

def test_frame_has_the_checksum_and_escapes_the_special_bytes():
    assert frame("OK") == b"$OK#9a"
    assert frame("") == b"$#00"
    assert escape(b"a#b$c}d*") == b"a}\x03b}\x04c}]d}\x0a"
    assert unescape(escape(b"#$}*x")) == b"#$}*x"
    assert frame(b"}") == b"$}]#" + f"{checksum(b'}]'):02x}".encode()


def test_reader_splits_packets_acks_and_interrupts_across_reads():
    r = PacketReader()
    assert r.feed(b"+$qSupp") == [Event("+")]
    assert r.feed(b"orted#37\x03-") == [Event("packet", b"qSupported"), Event("interrupt"),
                                         Event("-")]
    assert r.feed(b"$m0,4#fe") == [Event("bad")]  # the sum is 0xfd
    assert r.feed(b"$X}]#" + f"{checksum(b'X}]'):02x}".encode()) == [Event("packet", b"X}")]
    assert r.feed(b"junk$g#6") == []
    assert r.feed(b"7") == [Event("packet", b"g")]


# -- target description ----------------------------------------------------------------

@pytest.mark.parametrize("wide", [True, False])
def test_target_description_lists_the_register_file_in_g_order(wide):
    root = ET.fromstring(target_xml(wide).split("\n", 2)[2])  # after <?xml and DOCTYPE
    assert root.find("architecture").text == ("i386:x86-64" if wide else "i386")
    features = [f.get("name") for f in root.findall("feature")]
    assert features[:2] == ["org.gnu.gdb.i386.core", "org.gnu.gdb.i386.sse"]
    names = [r.get("name") for f in root.findall("feature") for r in f.findall("reg")]
    assert names == [r.name for r in register_file(wide)]
    pc = "rip" if wide else "eip"
    assert names[names.index(pc) + 1:names.index(pc) + 8] == ["eflags", "cs", "ss", "ds",
                                                             "es", "fs", "gs"]
    assert ("fs_base" in names) == wide
    # each feature defines the types its registers use
    sse = root.findall("feature")[1]
    assert sse.find("union").get("id") == "vec128"


# -- -gdb DEV and -s ----------------------------------------------------------------

def test_gdb_device_spellings():
    assert parse_spec("tcp::1234") == ("127.0.0.1", 1234)  # no host: loopback
    assert parse_spec("tcp:0.0.0.0:5,server,nowait") == ("0.0.0.0", 5)
    assert parse_spec("1234") == ("127.0.0.1", 1234)
    assert parse_spec("unix:/tmp/g.sock,server") == "/tmp/g.sock"
    for bad in ("tcp::99999", "tcp:nohost", "unix:/tmp/x,telnet"):
        with pytest.raises(ValueError):
            parse_spec(bad)


def test_cli_s_is_gdb_on_port_1234():
    assert parse_args(["-kernel", "k", "-s"]).gdb == "tcp::1234"
    assert parse_args(["-kernel", "k", "-gdb", "unix:/tmp/s,server"]).gdb == "unix:/tmp/s,server"
    assert parse_args(["-kernel", "k", "-gdb", "none"]).gdb is None
    with pytest.raises(UsageError, match="-gdb tcp::x: bad port"):
        parse_args(["-kernel", "k", "-gdb", "tcp::x"])


# -- packets against a machine (its thread is this one: nothing runs but what we ask) ---

@pytest.fixture
def session(make_machine):
    machine = make_machine("hello")
    sent: list[bytes] = []
    s = GdbSession(Debugger(machine), lambda fn: fn(), sent.append)
    s.sent = sent
    return s


def _ask(s: GdbSession, pkt: str) -> str | None:
    return s.dispatch(pkt)


def test_queries_and_acknowledgments(session):
    supported = _ask(session, "qSupported:multiprocess+;swbreak+")
    for feature in ("PacketSize=4000", "qXfer:features:read+", "swbreak+", "hwbreak+",
                    "vContSupported+"):
        assert feature in supported.split(";")
    assert _ask(session, "?") == "T05thread:01;"
    assert _ask(session, "vMustReplyEmpty") == ""
    assert _ask(session, "vCont?") == "vCont;c;C;s;S"
    assert _ask(session, "qAttached") == "1"
    session.handle(Event("packet", b"qC"))
    assert session.sent == [b"+", frame("QC1")]
    session.handle(Event("bad"))
    assert session.sent[-1] == b"-"
    session.handle(Event("packet", b"QStartNoAckMode"))
    assert session.sent[-2:] == [b"+", frame("OK")]
    session.sent.clear()
    session.handle(Event("packet", b"Hg0"))
    session.handle(Event("bad"))
    assert session.sent == [frame("OK")]  # no acks any more


def test_target_xml_is_read_in_pieces(session):
    text, offset = "", 0
    while True:
        reply = _ask(session, f"qXfer:features:read:target.xml:{offset:x},100")
        text += reply[1:]
        offset += 0x100
        if reply[0] == "l":
            break
        assert reply[0] == "m"
    assert text == target_xml(True)
    assert _ask(session, "qXfer:features:read:other.xml:0,100") == "E00"


def test_registers_read_zero_extended_and_written(session):
    regs = register_file(True)
    data = bytes.fromhex(_ask(session, "g"))
    assert len(data) == sum(r.bits // 8 for r in regs)
    rip = [r.name for r in regs].index("rip")
    start = _symbol("_start")
    assert _ask(session, f"p{rip:x}") == start.to_bytes(8, "little").hex()
    assert data[16 * 8:17 * 8] == start.to_bytes(8, "little")  # rip follows r15
    # 32-bit code: a write keeps the low 32 bits, R8-R15 read 0
    assert _ask(session, "P0=" + (0x1122334455667788).to_bytes(8, "little").hex()) == "OK"
    assert session.dbg.machine.cpu.registers()["rax"] == 0x55667788
    assert _ask(session, "p8") == "00" * 8
    assert _ask(session, "P12=" + "00" * 4) == "E01"  # cs (18): not writable here
    assert _ask(session, "p999") == "E01"


def test_memory_linear_with_faults_as_e14(session):
    main = _symbol("main")
    assert _ask(session, f"m{main:x},2") == "5589"  # push %ebp; mov %esp,%ebp
    assert _ask(session, "M200000,3:aabbcc") == "OK"
    assert _ask(session, "m200000,3") == "aabbcc"
    assert _ask(session, "me0000000,4") == "E14"  # no RAM there
    assert _ask(session, "Me0000000,1:00") == "E14"
    assert _ask(session, "M200000,2:aa") == "E01"  # length and data disagree


def test_breakpoints_and_single_step(session):
    start = _symbol("_start")
    assert _ask(session, f"Z0,{start:x},1") == "OK"
    assert _ask(session, f"Z5,{start:x},4") == ""  # no such type
    assert _ask(session, "s") == "T05thread:01;"  # steps off the breakpoint
    assert session.dbg.pc() > start
    assert _ask(session, "vCont;s:1") == "T05thread:01;"
    assert _ask(session, f"z0,{start:x},1") == "OK"
    assert session.dbg.breakpoints == {}


def test_monitor_commands_are_forwarded(session):
    reply = _ask(session, "qRcmd," + b"info status".hex())
    assert bytes.fromhex(reply).decode() == "VM status: paused (prelaunch)\n"
    reply = _ask(session, "qRcmd," + b"bogus".hex())
    assert "unknown command" in bytes.fromhex(reply).decode()
    session.handle(Event("packet", b"qRcmd,zz"))  # not hex: an error, the session lives
    assert session.sent[-1] == frame("E01")


# -- continue, breakpoint hits and Ctrl-C with the machine thread running ------------------

@pytest.fixture
def running(make_machine):
    """A session whose machine runs its loop on its own thread, as under pyemu."""
    machine = make_machine("hello")
    sent: list[bytes] = []
    got = threading.Condition()

    def send(data: bytes) -> None:
        with got:
            sent.append(data)
            got.notify_all()

    s = GdbSession(Debugger(machine), lambda fn: machine.post(fn).result(timeout=10), send)
    machine.listeners.append(s.on_event)
    thread = threading.Thread(target=machine.run, daemon=True)
    thread.start()

    def wait_for(data: bytes) -> None:
        with got:
            assert got.wait_for(lambda: data in sent, timeout=10), sent

    s.sent, s.wait_for = sent, wait_for
    yield s
    machine.post(lambda: machine.request_shutdown(0, "test over"))
    thread.join(10)


def test_continue_stops_at_a_breakpoint_then_runs_to_the_exit(running):
    main = _symbol("main")
    assert running.dispatch(f"Z1,{main:x},1") == "OK"
    assert running.dispatch("vCont;c") is None  # the stop reply comes later
    running.wait_for(frame("T05thread:01;swbreak:;"))
    assert running.call(running.dbg.pc) == main
    assert running.dispatch(f"z1,{main:x},1") == "OK"
    assert running.dispatch("c") is None
    running.handle(Event("interrupt"))  # Ctrl-C while it runs (hello halts at its end)
    running.wait_for(frame("T02thread:01;"))
    assert running.dbg.machine.runstate == "paused"


def test_watchpoint_stops_after_the_write(running):
    exiting = _symbol("exiting.0")  # exit_verdict's "static int exiting", set once
    assert running.dispatch(f"Z2,{exiting:x},4") == "OK"
    reply = frame(f"T05watch:{exiting:x};thread:01;")
    for _ in range(8):  # the start code clears .bss a byte at a time first
        running.sent.clear()
        assert running.dispatch("c") is None
        running.wait_for(reply)
        if running.call(lambda: running.dbg.read_memory(exiting, 4)) != bytes(4):
            break
    assert running.call(lambda: running.dbg.read_memory(exiting, 4)) == b"\1\0\0\0"
    assert _symbol("exit_verdict") < running.call(running.dbg.pc) < _symbol("guest_fail")
    assert running.dispatch(f"z2,{exiting:x},4") == "OK"
    assert running.dbg.watchpoints == {}


def test_detach_answers_before_the_guest_runs_and_then_says_nothing(running):
    """The OK goes while the guest is still stopped: a guest that ends at once must not
    close the connection before gdb has its answer (CI: "Can't detach process")."""
    machine = running.dbg.machine
    main = _symbol("main")
    assert running.dispatch(f"Z1,{main:x},1") == "OK"
    assert running.dispatch("c") is None
    running.wait_for(frame("T05thread:01;swbreak:;"))
    states: dict[bytes, str] = {}
    send = running._send

    def send_noting_runstate(data: bytes) -> None:
        states[data] = machine.runstate
        send(data)

    running._send = send_noting_runstate
    running.sent.clear()
    running.handle(Event("packet", b"D"))
    assert running.sent == [b"+", frame("OK")]
    assert states[frame("OK")] == "paused"
    assert running.dbg.breakpoints == {} and machine.runstate == "running"
    machine.post(lambda: machine.request_shutdown(1, "guest exit")).result(timeout=10)
    assert machine.exit_status == 1
    assert running.sent == [b"+", frame("OK")]  # no W: gdb has gone
