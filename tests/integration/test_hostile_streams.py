"""A hostile peer against a real destination: streams made by hand (the stream module's
own writer, a plain socket), sent to `pyemu -incoming` as anyone who can reach its port
could. DESIGN.md, "Trust: who decides what", and the README's security model: the
destination's owner grants every host file; nothing a stream carries reaches a host
file before the stream is proven whole; every hostile input ends in one line and an
exit, never a hang; a listening destination outlives stray connections.

Every test looks at what a user would see: the bytes of the host files, the exit
status, the destination's one stderr line, the source's `info migrate`, the guest's
serial output going on."""

from __future__ import annotations

import ctypes
import io
import os
import re
import socket
import struct
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from test_migration import (
    DIRTY,
    free_port,
    info,
    listening,
    pair,  # noqa: F401  (the fixture, by its name)
    rounds,
    wait_for,
)

from emu.host.block import DriveSpec, open_image
from emu.machine.config import MachineConfig
from emu.machine.pc.pc import PcMachine
from emu.migration.compat.releases import destination_versions, state_versions
from emu.migration.live import (
    ABORT,
    ACCEPT,
    FAILED,
    GO,
    READY,
    REFUSE,
    RUNNING,
    describe_for_migration,
)
from emu.migration.stream import DISK_CHUNK, MAGIC, StreamWriter, capture_sections

ROOT = Path(__file__).resolve().parents[2]
GUESTS = ROOT / "tests" / "guests" / "build"
HLT = GUESTS / "hlt.elf"
IMAGE_SIZE = 1 << 20
RAM = 8 << 20
CODES = {ACCEPT: "ACCEPT", REFUSE: "REFUSE", READY: "READY", FAILED: "FAILED",
         RUNNING: "RUNNING"}
NOT_GRANTED = ("is not granted here (a stream names host files only as hints: allow its "
               "directory with -allow-files DIR, or re-bind it with this destination's own "
               "options)")


# -- a stream made by hand -------------------------------------------------------------------

@dataclass
class Captured:
    """A real machine's description, RAM and sections: the hlt guest, 1 ms in, with a
    writable drive ``data`` (the description is the one a source pyemu sends)."""

    desc: dict
    ram: np.ndarray
    sections: list


def capture(image: Path | None) -> Captured:
    specs = [DriveSpec(file=str(image), index=0, id="data")] if image else []
    blocks = {0: open_image(str(image))} if image else {}
    m = PcMachine(MachineConfig(kernel=str(HLT), ram_size=RAM, drives=specs), {}, blocks)
    try:
        m.run_until(1_000_000)
        desc = describe_for_migration(m, reply=True, block=True, switchover=10_000)
        return Captured(desc, m.mem.ram.copy(), capture_sections(m))
    finally:
        m.cpu.close()
        for backend in blocks.values():
            backend.close()


@pytest.fixture(scope="module")
def captured(tmp_path_factory) -> Captured:
    scratch = tmp_path_factory.mktemp("source") / "src.img"
    scratch.write_bytes(bytes(IMAGE_SIZE))
    return capture(scratch)


@pytest.fixture(scope="module")
def captured_diskless() -> Captured:
    """The same guest on a machine without drives."""
    return capture(None)


@dataclass
class Stream:
    """A stream's bytes, cut where a peer would pause: after the head (to read the
    destination's ACCEPT or REFUSE), after the disk records, at the end."""

    head: bytes
    disks: bytes
    rest: bytes


def make_stream(cap: Captured, *, config: dict | None = None, reply: bool = True,
                block: bool = True, disks: Sequence[tuple[str, int, bytes]] = (),
                bad_checksum: bool = False) -> Stream:
    """The captured machine's stream with its configuration changed by ``config``
    (``drives`` given whole), the migration flags, and block migration's ``disks``
    records (drive, offset, bytes) before the RAM."""
    desc = dict(cap.desc, config=dict(cap.desc["config"], **(config or {})),
                migration=dict(cap.desc["migration"], reply=reply, block=block))
    out = io.BytesIO()
    w = StreamWriter(out)
    w.head(desc)
    head_end = out.tell()
    for drive, offset, data in disks:
        w.disk(drive, offset, data)
    disks_end = out.tell()
    w.pages(cap.ram, None, False)
    w.finish(cap.sections)
    data = out.getvalue()
    if bad_checksum:
        data = data[:-4] + struct.pack("<I", (w.crc + 1) & 0xFFFFFFFF)
    return Stream(data[:head_end], data[head_end:disks_end], data[disks_end:])


def drive_config(path: str | Path, **changes) -> list[dict]:
    return [dict({"id": "data", "file": str(path), "index": 0, "media": "disk",
                  "readonly": False, "snapshot": False, "format": "raw"}, **changes)]


class Peer:
    """A plain socket client that speaks the stream and the return path by hand."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)

    def send(self, data: bytes) -> bool:
        """Send ``data``; False if the destination had already hung up."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def reply(self, raw: bool = False) -> tuple[str, str]:
        """The destination's next control message: (its name, its text, unprefixed
        unless ``raw``)."""
        head = self._exact(5)
        code, n = struct.unpack("<BI", head)
        text = self._exact(n).decode()
        return CODES.get(code, str(code)), text if raw else unprefixed(text)

    def say(self, code: int, text: str = "") -> None:
        raw = text.encode()
        self.sock.sendall(struct.pack("<BI", code, len(raw)) + raw)

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"the destination hung up after {buf!r}")
            buf += chunk
        return buf

    def close(self) -> None:
        self.sock.close()


def bare(pyemu_proc, *args: str) -> tuple[subprocess.Popen, int]:
    """`pyemu -incoming tcp:127.0.0.1:PORT ARGS -serial null`, listening."""
    port = free_port()
    proc = pyemu_proc("-incoming", f"tcp:127.0.0.1:{port}", *args, "-serial", "null")
    wait_for(lambda: listening(port) or proc.poll() is not None, what="it to listen")
    assert proc.poll() is None, proc.stderr.read().decode()
    return proc, port


ERRNO = re.compile(r"\[Errno \d+\] ")


def unprefixed(text: str) -> str:
    """``text`` without Python's "[Errno N] " (a refusal raised as an OSError carries
    it today: test_refusals_name_the_field_without_an_errno_prefix is the one test that
    holds the lines to that; the others look at the rest)."""
    return ERRNO.sub("", text, count=1)


def one_line(proc: subprocess.Popen, timeout: float = 20) -> str:
    """The exit status must be 1 and stderr one line, no traceback; returns that line
    (unprefixed)."""
    assert proc.wait(timeout) == 1
    err = proc.stderr.read().decode()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return unprefixed(lines[0])


def failed_line(reason: str) -> str:
    return f"pyemu: incoming migration failed: {reason}"


@pytest.fixture
def victim(tmp_path) -> tuple[Path, bytes]:
    """A writable host file of the drive's size, with content that must survive."""
    path = tmp_path / "precious" / "victim.img"
    path.parent.mkdir()
    content = (b"precious data, do not overwrite\n" * (IMAGE_SIZE // 32 + 1))[:IMAGE_SIZE]
    path.write_bytes(content)
    return path, content


class Watch:
    """inotify on one file: which of IN_OPEN, IN_ACCESS (read), IN_MODIFY (written)
    happened to it, in any process, since the watch began."""

    NAMES = {0x20: "opened", 0x1: "read", 0x2: "written"}

    def __init__(self, path: Path, mask: int = 0x20 | 0x1 | 0x2) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, os.fsencode(path), mask) < 0:
            pytest.fail(f"inotify: {os.strerror(ctypes.get_errno())}")

    def seen(self) -> set[str]:
        """What happened so far (and stop watching)."""
        data = b""
        try:
            while chunk := os.read(self.fd, 65536):
                data += chunk
        except BlockingIOError:
            pass
        finally:
            os.close(self.fd)
        seen, at = set(), 0
        while at < len(data):
            _, mask, _, n = struct.unpack_from("iIII", data, at)
            seen |= {name for bit, name in self.NAMES.items() if mask & bit}
            at += 16 + n
        return seen


HOSTILE = [("data", 0, b"\xAA" * DISK_CHUNK), ("data", DISK_CHUNK, bytes(DISK_CHUNK)),
           ("data", IMAGE_SIZE - DISK_CHUNK, b"\x55" * DISK_CHUNK)]


# -- a. a stream that names a writable host file, to a destination that did not grant it ----

@pytest.mark.timeout(60)
@pytest.mark.parametrize("reply", [True, False], ids=["return-path", "no-return-path"])
def test_a_stream_naming_a_host_file_is_refused_before_it_is_opened(captured, victim,
                                                                    pyemu_proc, reply):
    path, content = victim
    stream = make_stream(captured, config={"drives": drive_config(path)}, reply=reply,
                         disks=HOSTILE)
    dst, port = bare(pyemu_proc)
    watch = Watch(path)
    peer = Peer(port)
    try:
        peer.send(stream.head)
        reason = f"description/config/drives/data: {path} {NOT_GRANTED}"
        if reply:
            assert peer.reply() == ("REFUSE", reason)
        peer.send(stream.disks + stream.rest)  # as if nothing happened
        assert one_line(dst) == failed_line(reason)
    finally:
        peer.close()
    assert watch.seen() == set()  # not even opened
    assert path.read_bytes() == content


@pytest.mark.timeout(60)
def test_refusals_name_the_field_without_an_errno_prefix(captured, victim, pyemu_proc):
    """The line a user reads (and the text the source's `info migrate` shows) starts
    with the field at fault, as every other refusal does, not with Python's
    "[Errno 13] "."""
    path, _ = victim
    stream = make_stream(captured, config={"drives": drive_config(path)})
    dst, port = bare(pyemu_proc)
    peer = Peer(port)
    try:
        assert peer.send(stream.head)
        reason = f"description/config/drives/data: {path} {NOT_GRANTED}"
        assert peer.reply(raw=True) == ("REFUSE", reason)
    finally:
        peer.close()
    assert dst.wait(20) == 1
    assert dst.stderr.read().decode().splitlines() == [failed_line(reason)]


@pytest.mark.timeout(60)
def test_a_stream_cannot_reach_an_image_through_another_drive_id(captured, victim, tmp_path,
                                                                 pyemu_proc):
    """The destination re-binds drive ``data`` to its own image; the stream adds a
    second drive, ``other``, naming the host file: that one is still not granted."""
    path, content = victim
    own = tmp_path / "own.img"
    own.write_bytes(bytes(IMAGE_SIZE))
    drives = drive_config("/nonexistent/whatever.img") + drive_config(path, id="other",
                                                                      index=1)
    stream = make_stream(captured, config={"drives": drives},
                         disks=[("other", 0, b"\xAA" * DISK_CHUNK)])
    dst, port = bare(pyemu_proc, "-drive", f"id=data,file={own}", "-allow-files",
                     str(GUESTS))
    peer = Peer(port)
    try:
        peer.send(stream.head)
        reason = f"description/config/drives/other: {path} {NOT_GRANTED}"
        assert peer.reply() == ("REFUSE", reason)
        assert one_line(dst) == failed_line(reason)
    finally:
        peer.close()
    assert path.read_bytes() == content
    assert own.read_bytes() == bytes(IMAGE_SIZE)


# -- b. granted, but the stream is not whole: nothing reaches the file ---------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("reply, damage", [(True, "checksum"), (False, "checksum"),
                                           (True, "cut"), (False, "cut")])
def test_a_granted_image_is_untouched_by_a_stream_that_is_not_whole(captured, victim,
                                                                    pyemu_proc, reply,
                                                                    damage):
    path, content = victim
    stream = make_stream(captured, config={"drives": drive_config(path)}, reply=reply,
                         disks=HOSTILE, bad_checksum=damage == "checksum")
    dst, port = bare(pyemu_proc, "-allow-files", str(path.parent), "-allow-files",
                     str(GUESTS))
    watch = Watch(path, mask=0x2)  # IN_MODIFY: any write, even of the same bytes
    peer = Peer(port)
    try:
        assert peer.send(stream.head)
        if reply:
            assert accepted(peer.reply())  # granted: the image is open
        if damage == "checksum":
            assert peer.send(stream.disks + stream.rest)
            reason = "end: checksum of the stream does not match (corrupt)"
            if reply:
                assert peer.reply() == ("FAILED", reason)
            line = one_line(dst)
            assert line == failed_line(reason)
        else:
            # every disk record and most of the RAM, then the connection drops
            assert peer.send(stream.disks + stream.rest[:len(stream.rest) // 2])
            time.sleep(0.5)  # the records are in: staged, not written
            assert path.read_bytes() == content
            peer.sock.shutdown(socket.SHUT_WR)
            line = one_line(dst)
            assert re.fullmatch(re.escape(failed_line("ram/")) + r".*connection closed "
                                r"after \d+ of \d+ bytes.*", line), line
    finally:
        peer.close()
    assert watch.seen() == set()  # never written
    assert path.read_bytes() == content
    assert dst.poll() == 1


def accepted(reply: tuple[str, str]) -> bool:
    """An ACCEPT, announcing the destination's state versions (compat/releases.py): the
    IDE drive's among them, each as this tree has it (this process may know more types:
    tests register their own)."""
    kind, text = reply
    versions = destination_versions(text)
    mine = state_versions()
    return kind == "ACCEPT" and "ide-drive" in versions and all(
        mine.get(name) == version for name, version in versions.items())


def until_ready(peer, stream) -> None:
    """Play a source up to the destination's READY: the whole stream, accepted."""
    assert peer.send(stream.head)
    assert accepted(peer.reply())
    assert peer.send(stream.disks + stream.rest)
    assert peer.reply() == ("READY", "")


@pytest.mark.timeout(60)
def test_a_whole_stream_writes_a_granted_image_only_after_the_checksum(captured, victim,
                                                                       pyemu_proc):
    """The control for the two above: the very same records in a whole stream reach
    the granted image (so they would have reached it, had the destination not held
    them back); the peer plays a source's part of the handshake."""
    path, content = victim
    stream = make_stream(captured, config={"drives": drive_config(path)}, disks=HOSTILE)
    dst, port = bare(pyemu_proc, "-allow-files", str(path.parent), "-allow-files",
                     str(GUESTS))
    watch = Watch(path, mask=0x2)
    peer = Peer(port)
    try:
        until_ready(peer, stream)
        peer.say(GO)
        assert peer.reply() == ("RUNNING", "")
    finally:
        peer.close()
    want = bytearray(content)
    for _, offset, data in HOSTILE:
        want[offset:offset + len(data)] = data
    wait_for(lambda: path.read_bytes() == bytes(want), what="the image to be written")
    assert watch.seen() == {"written"}  # the watch the tests above rely on sees writes
    assert dst.poll() is None  # the guest runs there


def test_the_watch_sees_another_process_open_and_read_a_file(victim):
    """The other half of the watch's own check: an open and a read elsewhere."""
    path, content = victim
    watch = Watch(path)
    assert subprocess.run(["cat", str(path)], capture_output=True).stdout == content
    assert watch.seen() == {"opened", "read"}


@pytest.mark.timeout(60)
def test_an_aborted_handshake_runs_nothing(captured, victim, pyemu_proc):
    """A peer that sends a whole stream and then ABORT: the destination exits without
    running the guest, saying why."""
    path, _ = victim
    stream = make_stream(captured, config={"drives": drive_config(path)}, disks=HOSTILE)
    dst, port = bare(pyemu_proc, "-allow-files", str(path.parent), "-allow-files",
                     str(GUESTS))
    peer = Peer(port)
    try:
        until_ready(peer, stream)
        peer.say(ABORT, "changed my mind")
        assert one_line(dst) == failed_line(
            "the source took the guest back (changed my mind): not running it here")
    finally:
        peer.close()


# -- c. devices, FIFOs and links as kernel, firmware, initrd, image ------------------------------

def _fifo(tmp: Path) -> str:
    os.mkfifo(tmp / "kernel.fifo")
    return str(tmp / "kernel.fifo")


def _link_out(tmp: Path) -> str:
    (tmp / "k.elf").symlink_to("/etc/passwd")
    return str(tmp / "k.elf")


# (case, description/config changes, -allow-files, the field, what is said of it)
DEVICE_CASES = [
    ("kernel-zero", {"kernel": "/dev/zero"}, [], "kernel", "/dev/zero " + NOT_GRANTED),
    ("kernel-zero-allowed", {"kernel": "/dev/zero"}, ["/dev"], "kernel",
     "/dev/zero is a character device, not a regular file"),
    ("bios-urandom", {"kernel": None, "bios": "/dev/urandom"}, [], "bios",
     "/dev/urandom " + NOT_GRANTED),
    ("bios-urandom-allowed", {"kernel": None, "bios": "/dev/urandom"}, ["/dev"], "bios",
     "/dev/urandom is a character device, not a regular file"),
    ("initrd-zero-allowed", {"initrd": "/dev/zero"}, ["/dev", str(GUESTS)], "initrd",
     "/dev/zero is a character device, not a regular file"),
    ("drive-zero-allowed", {"drives": drive_config("/dev/zero")}, ["/dev", str(GUESTS)],
     "drives/data", "/dev/zero is a character device, not a regular file"),
    ("kernel-fifo", {"kernel": _fifo}, ["TMP"], "kernel",
     "TMP/kernel.fifo is a FIFO, not a regular file"),
    ("kernel-link-out", {"kernel": _link_out}, ["TMP"], "kernel",
     "TMP/k.elf " + NOT_GRANTED),
    ("kernel-dotdot", {"kernel": "TMP/../../../../../../etc/passwd"}, ["TMP"], "kernel",
     "TMP/../../../../../../etc/passwd " + NOT_GRANTED),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("changes, allow, where, said",
                         [c[1:] for c in DEVICE_CASES], ids=[c[0] for c in DEVICE_CASES])
def test_devices_fifos_and_links_are_refused_at_once(captured, tmp_path, pyemu_proc,
                                                     changes, allow, where, said):
    """kernel=/dev/zero once grew the destination's memory without bound, and
    bios=/dev/urandom hung it: refused at once, with or without -allow-files /dev."""
    config = {k: (v(tmp_path) if callable(v) else
                  v.replace("TMP", str(tmp_path)) if isinstance(v, str) else v)
              for k, v in changes.items()}
    grants = [a.replace("TMP", str(tmp_path)) for a in allow]
    stream = make_stream(captured, config={"drives": [], **config}, block=False)
    dst, port = bare(pyemu_proc, *(arg for d in grants for arg in ("-allow-files", d)))
    peer = Peer(port)
    t0 = time.monotonic()
    try:
        assert peer.send(stream.head)
        reason = f"description/config/{where}: {said.replace('TMP', str(tmp_path))}"
        assert peer.reply() == ("REFUSE", reason)
        assert one_line(dst, timeout=10) == failed_line(reason)
    finally:
        peer.close()
    assert time.monotonic() - t0 < 10


# -- d. a destination whose disk differs ------------------------------------------------------

DISK_MISMATCHES = {
    "size": ({}, {"size": 2 * IMAGE_SIZE}, (),
             ["drive data: size is 1048576 in the stream, 2097152 here"]),
    "readonly": ({}, {"readonly": True}, (),
                 ["drive data: readonly is False in the stream, True here"]),
    "size-and-ram": ({}, {"size": 2 * IMAGE_SIZE}, ("-m", "256"),
                     ["/machine: ram_size is 134217728 in the stream, 268435456 here",
                      "drive data: size is 1048576 in the stream, 2097152 here"]),
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("case", sorted(DISK_MISMATCHES) + ["bare-rebind"])
def test_a_destination_with_another_disk_is_refused_in_the_preflight(pair, guest,  # noqa: F811
                                                                     tmp_path, case):
    """The same machine options but an image of another size or mode; and a bare
    destination re-binding the drive to an image of another size."""
    if case == "bare-rebind":
        dst_change, lines = {"size": 2 * IMAGE_SIZE}, DISK_MISMATCHES["size"][3]
    else:
        _, dst_change, extra, lines = DISK_MISMATCHES[case]
    src_img, dst_img = tmp_path / "src.img", tmp_path / "dst.img"
    src_img.write_bytes(bytes(IMAGE_SIZE))
    dst_img.write_bytes(bytes(dst_change.get("size", IMAGE_SIZE)))
    ro = ",readonly=on" if dst_change.get("readonly") else ""
    smon = pair.source(guest("dirty"), *DIRTY, "-drive", f"file={src_img},id=data")
    port = free_port()
    if case == "bare-rebind":
        pair.destination(f"tcp:127.0.0.1:{port}", "-drive", f"id=data,file={dst_img}")
    else:
        pair.destination(f"tcp:127.0.0.1:{port}", "-kernel", guest("dirty"), *DIRTY,
                         *extra, "-drive", f"file={dst_img},id=data{ro}", allow=False)
    reply = smon.cmd(f"migrate tcp:127.0.0.1:{port}")
    assert reply.startswith("Error: migration failed: the destination refused: "
                            "description: the machine does not match:"), reply
    status = info(smon)["Migration status"]
    assert status.startswith("failed (the destination refused: description: the machine "
                             "does not match:"), status
    full = smon.cmd("info migrate")
    for line in lines:
        assert line in reply and line in full, (line, full)
    assert smon.cmd("info status") == "VM status: running"
    before = rounds(pair.src_out)[-1]
    wait_for(lambda: rounds(pair.src_out)[-1] > before + 2, what="the source running on")
    assert pair.dst.wait(15) == 1
    err = pair.dst.stderr.read().decode()
    assert "Traceback" not in err
    assert "pyemu: incoming migration failed: description: the machine does not match:" \
        in err
    for line in lines:
        assert line in err.splitlines(), err
    assert rounds(pair.dst_out) == []
    assert src_img.read_bytes() == bytes(IMAGE_SIZE)


# -- e. stray connections to a listening destination ------------------------------------------

def _connect(uri: str) -> socket.socket:
    if uri.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX)
        s.connect(uri[5:])
    else:
        s = socket.create_connection(("127.0.0.1", int(uri.rsplit(":", 1)[1])))
    s.settimeout(20)
    return s


def hung_up(s: socket.socket) -> bool:
    """Whether the destination closed this connection (EOF or reset), reading what it
    may have sent."""
    try:
        while True:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True


def _sending(uri: str, data: bytes) -> None:
    s = _connect(uri)
    try:
        s.sendall(data)
    except OSError:
        pass  # dropped while we were still sending: what should happen
    assert hung_up(s)
    s.close()


STRAYS = {
    "connect-and-close": lambda uri: _connect(uri).close(),
    "reset": lambda uri: _reset(uri),
    "http": lambda uri: _sending(uri, b"GET / HTTP/1.1\r\nHost: pyemu\r\nUser-Agent: "
                                      b"health-check\r\n\r\n"),
    "random-1MB": lambda uri: _sending(uri, b"\0" + os.urandom((1 << 20) - 1)),
    "bad-version": lambda uri: _sending(uri, MAGIC + b"\xff\xff"),
    "garbage-description": lambda uri: _sending(uri, _head_with_description(b"{not json")),
    "huge-description": lambda uri: _sending(uri, _head_with_length(0xFFFFFFFF)),
}


def _reset(uri: str) -> None:
    s = _connect(uri)
    s.sendall(MAGIC[:4])
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # RST


def _head_with_length(n: int) -> bytes:
    out = io.BytesIO()
    StreamWriter(out).head({})
    head = out.getvalue()
    prefix = head[:len(head) - len(b"{}") - 4]
    return prefix + struct.pack("<I", n)


def _head_with_description(text: bytes) -> bytes:
    return _head_with_length(len(text)) + text


@pytest.mark.timeout(120)
@pytest.mark.parametrize("scheme", ["tcp", "unix"])
def test_stray_connections_are_dropped_and_the_source_still_gets_through(
        pair, guest, scheme):  # noqa: F811
    uri = (f"tcp:127.0.0.1:{free_port()}" if scheme == "tcp"
           else f"unix:{pair.tmp / 'mig.sock'}")
    smon = pair.source(guest("dirty"), *DIRTY)
    sock = pair.destination(uri)
    for name, stray in STRAYS.items():
        stray(uri)
        assert pair.dst.poll() is None, f"the destination ended after {name}"
    if scheme == "tcp":
        # one that connects and says nothing: dropped after the header timeout (10 s),
        # and the source, arriving meanwhile, waits its turn
        silent = _connect(uri)
        time.sleep(0.5)
    smon.sock.settimeout(60)  # migrate answers when done: after the silent one's 10 s
    assert smon.cmd(f"migrate {uri}") == "", info(smon)
    status = info(smon)
    assert status["Migration status"] == "completed", status
    if scheme == "tcp":
        assert hung_up(silent)
        silent.close()
    last = rounds(pair.src_out)[-1]
    wait_for(lambda: (r := rounds(pair.dst_out)) and r[-1] >= last + 5,
             what="rounds on the destination")
    dmon = pair.dst_monitor(sock)
    assert dmon.cmd("info status") == "VM status: running"
    dmon.sock.sendall(b"quit\n")
    assert pair.dst.wait(15) == 0
    err = pair.dst.stderr.read().decode()
    assert "Traceback" not in err
    dropped = [line for line in err.splitlines()
               if line.startswith("pyemu: incoming migration: dropped a connection from ")]
    assert len(dropped) == len(STRAYS) + (scheme == "tcp"), err
    assert any("bad magic" in line for line in dropped), dropped


@pytest.mark.timeout(60)
def test_a_peer_trickling_its_header_is_dropped_within_the_header_timeout(pyemu_proc):
    """A connection that never completes a header is a stray however slowly it sends:
    one byte every 2.5 s (each within the 10 s a read may wait) must not hold the
    destination, which serves one connection at a time, much past the header timeout;
    the source arriving meanwhile would otherwise wait until its own preflight gives up
    (60 s), and the trickler can go on for as long as it likes."""
    dst, port = bare(pyemu_proc)
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(0.1)
    t0 = time.monotonic()
    closed = False
    try:
        for byte in (MAGIC * 2)[:7]:  # a header that never ends
            time.sleep(2.5)
            try:
                closed = s.recv(1) == b""
            except TimeoutError:
                pass
            except OSError:
                closed = True
            if closed:
                break
            try:
                s.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
    finally:
        s.close()
    held = time.monotonic() - t0
    assert closed, f"still held after {held:.0f} s of a header that never ends"
    assert held <= 16
    assert dst.poll() is None


# -- f. a savevm snapshot given as a migration stream ------------------------------------------

@pytest.mark.timeout(90)
def test_a_snapshot_file_to_a_bare_destination_says_what_to_do(tmp_path, guest,
                                                               start_with_monitor, pyemu,
                                                               monkeypatch):
    snaps = tmp_path / "snaps"
    monkeypatch.setenv("PYEMU_SNAPSHOT_DIR", str(snaps))
    out = tmp_path / "src.txt"
    proc, mon = start_with_monitor("-kernel", guest("dirty"), *DIRTY, "-serial",
                                   f"file:{out}")
    wait_for(lambda: len(rounds(out)) >= 2, what="the guest's rounds")
    assert mon.cmd("savevm s1") == ""
    mon.sock.sendall(b"quit\n")
    assert proc.wait(15) == 0
    snapshot = snaps / "s1.pyemu"
    r = pyemu("-incoming", f"file:{snapshot}", "-allow-files", str(GUESTS), "-serial",
              "null", timeout=30)
    assert r.returncode == 1
    err = r.stderr.decode()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.strip() == failed_line(
        "description: no machine configuration to build from (a savevm snapshot is not a "
        "migration stream): give this destination the machine's options, or use -loadvm")
    # and what it says to do works: the machine's options and the same file
    dst_out = tmp_path / "dst.txt"
    dst, _ = start_with_monitor("-kernel", guest("dirty"), *DIRTY, "-incoming",
                                f"file:{snapshot}", "-serial", f"file:{dst_out}")
    last = rounds(out)[-1]
    wait_for(lambda: (r := rounds(dst_out)) and r[-1] >= last + 3,
             what="the snapshot's guest running on")


# -- what else a hostile or a merely ordinary peer can do ------------------------------------------

@pytest.mark.timeout(60)
def test_a_multiboot_module_list_cannot_smuggle_a_path_out_of_the_allowed_dir(
        captured_diskless, tmp_path, pyemu_proc):
    """A Multiboot -initrd is "mod1 args,mod2": the loader reads each comma-separated
    path. Whoever can make directories in an allowed directory (shared storage, where
    the source side writes its images) makes ALLOWED/a,/OUTSIDE/secret a file there:
    the grant then holds for that one path, while the loader reads ALLOWED/a and
    /OUTSIDE/secret -- a host file outside every allowed directory, put in guest RAM
    (and again at every reset, for the guest to read)."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    secret = outside / "secret"
    secret.write_bytes(b"root:$6$secret-hash:19000:0:99999:7:::\n")
    kernel = allowed / "hlt.elf"
    kernel.write_bytes(HLT.read_bytes())
    (allowed / "a").write_bytes(b"module")
    trick = Path(f"{allowed}/a,{secret}")
    trick.parent.mkdir(parents=True)
    trick.write_bytes(b"decoy")
    stream = make_stream(captured_diskless, config={"kernel": str(kernel),
                                                    "initrd": str(trick)}, block=False)
    dst, port = bare(pyemu_proc, "-allow-files", str(allowed))
    peer = Peer(port)
    try:
        assert peer.send(stream.head)
        code, text = peer.reply()
        assert (code, text) == ("REFUSE", f"description/config/initrd: {secret} "
                                          f"{NOT_GRANTED}")
    finally:
        peer.close()
        if dst.poll() is None:
            dst.kill()


@pytest.mark.timeout(90)
def test_a_source_started_with_relative_paths_migrates_to_an_allowed_destination(
        tmp_path, start_with_monitor, pyemu_proc):
    """The README's own example: `pyemu -kernel k.elf ...` at the source, `pyemu
    -incoming tcp:0:4444 -allow-files /srv/vm` at the destination. The source names its
    kernel as it was given, relative to its own directory; the destination must get a
    path it can check against its grants (or the source must send an absolute one), not
    refuse a kernel that lies in the allowed directory."""
    src_out, dst_out = tmp_path / "src.txt", tmp_path / "dst.txt"
    relative = str((GUESTS / "dirty.elf").relative_to(ROOT))  # pyemu runs in ROOT
    _, smon = start_with_monitor("-kernel", relative, *DIRTY, "-serial", f"file:{src_out}")
    wait_for(lambda: len(rounds(src_out)) >= 2, what="the source's rounds")
    port = free_port()
    dst = pyemu_proc("-incoming", f"tcp:127.0.0.1:{port}", "-allow-files", str(GUESTS),
                     "-serial", f"file:{dst_out}")
    wait_for(lambda: listening(port) or dst.poll() is not None, what="it to listen")
    reply = smon.cmd(f"migrate tcp:127.0.0.1:{port}")
    assert reply == "", reply
    last = rounds(src_out)[-1]
    wait_for(lambda: (r := rounds(dst_out)) and r[-1] >= last + 3,
             what="rounds on the destination")



@pytest.mark.timeout(120)
def test_a_tls_destination_outlives_stray_connections_too(pair, guest, tmp_path):  # noqa: F811
    """TLS is what the README says to use beyond loopback, where port scans and health
    checks come from: a plain connection that closes, one that sends HTTP, and a TLS
    client with a certificate from another CA fail the handshake; each must be dropped
    and logged like any stray, and the real source (with the credentials) still get
    through."""
    from tlscerts import make_certificates

    certs = make_certificates(tmp_path / "certs")
    port = free_port()
    uri = f"tcp:127.0.0.1:{port}"
    smon = pair.source(guest("dirty"), *DIRTY, "-object",
                       f"tls-creds-x509,id=tls0,dir={certs / 'client'},endpoint=client")
    assert smon.cmd("migrate_set_parameter tls-creds tls0") == ""
    sock = pair.destination(uri, "-object",
                            f"tls-creds-x509,id=tls0,dir={certs / 'server'},endpoint=server",
                            "-global", "migration.tls-creds=tls0")
    strays = {"connect-and-close": lambda: _connect(uri).close(),
              "http": lambda: _sending(uri, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")}
    for name, stray in strays.items():
        stray()
        time.sleep(0.5)
        assert pair.dst.poll() is None, (
            f"the destination ended after a stray ({name}): "
            f"{pair.dst.stderr.read().decode()}")
    assert smon.cmd(f"migrate {uri}") == "", info(smon)
    last = rounds(pair.src_out)[-1]
    wait_for(lambda: (r := rounds(pair.dst_out)) and r[-1] >= last + 3,
             what="rounds on the destination")
    dmon = pair.dst_monitor(sock)
    assert dmon.cmd("info status") == "VM status: running"
