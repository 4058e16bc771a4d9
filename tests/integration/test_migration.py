"""Live migration between two pyemu processes, driven from the human monitor as a user
would: the guest carries on on the destination, or the source carries on as before."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from debugexit import DEBUG_EXIT_ARGS

DIRTY = ("-append", "mib=4 period=20")
GUESTS = Path(__file__).resolve().parents[1] / "guests" / "build"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """Whether some process listens on TCP ``port`` (without connecting: a destination
    takes the first connection as its migration)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def listening_unix(path: str) -> bool:
    """Whether some process listens on the unix socket ``path`` (its file appears at
    bind(2), a moment before listen(2): a connection in between is refused)."""
    with open("/proc/net/unix") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return any(len(cols) == 8 and cols[7] == path and int(cols[3], 16) & 0x10000  # ACCEPTCON
               for cols in rows)


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def rounds(*paths: Path) -> list[int]:
    """The rounds the dirty guest reported, across its outputs joined in order.

    Joined, because a migration can cut a line in two: "round 10 o" on the source,
    "k" on the destination."""
    text = b"".join(p.read_bytes() for p in paths if p.exists()).decode(errors="replace")
    assert "FAIL" not in text, text[-500:]
    return [int(n) for n in re.findall(r"round (\d+) ok", text)]


def carried_on(src_out: Path, dst_out: Path, last: int) -> None:
    """The destination goes on from where the source stopped: one unbroken sequence
    of rounds across both outputs, none lost or repeated, the last five on the
    destination."""
    wait_for(lambda: rounds(dst_out) and rounds(dst_out)[-1] >= last + 5,
             what="rounds on the destination")
    got = rounds(src_out, dst_out)
    assert got == list(range(got[0], got[0] + len(got))), got


class Pair:
    """A source running the dirty guest and a destination waiting for it."""

    def __init__(self, tmp_path: Path, start_with_monitor, connect_monitor, pyemu_proc):
        self.tmp = tmp_path
        self.start_with_monitor = start_with_monitor
        self.connect_monitor = connect_monitor
        self.pyemu_proc = pyemu_proc
        self.src_out = tmp_path / "src.txt"
        self.dst_out = tmp_path / "dst.txt"

    def source(self, guest: str, *args: str):
        self.src, self.smon = self.start_with_monitor(
            "-kernel", guest, *args, "-serial", f"file:{self.src_out}")
        wait_for(lambda: len(rounds(self.src_out)) >= 2, what="the source guest's rounds")
        return self.smon

    def destination(self, uri: str, *args: str, allow: bool = True):
        """Start a destination and wait until it listens on ``uri``; ``allow``: it lets
        the stream name files among the test guests and in the test's directory."""
        sock = self.tmp / "dst.sock"
        grants = ("-allow-files", str(GUESTS), "-allow-files", str(self.tmp)) if allow else ()
        self.dst = self.pyemu_proc("-incoming", uri, *grants, *args, "-serial",
                                   f"file:{self.dst_out}", "-monitor",
                                   f"unix:{sock},server,nowait")
        if uri.startswith("tcp:"):
            port = int(uri.rsplit(":", 1)[1])
            wait_for(lambda: listening(port) or self.dst.poll() is not None,
                     what="the destination to listen")
        elif uri.startswith("unix:"):
            wait_for(lambda: listening_unix(uri[5:]) or self.dst.poll() is not None,
                     what="the destination to listen")
        return sock

    def dst_monitor(self, sock: Path):
        mon = self.connect_monitor(sock, self.dst)
        mon.until_prompt()
        return mon


@pytest.fixture
def pair(tmp_path, start_with_monitor, connect_monitor, pyemu_proc):
    return Pair(tmp_path, start_with_monitor, connect_monitor, pyemu_proc)


def info(mon, what: str = "migrate") -> dict[str, str]:
    out = mon.cmd(f"info {what}")
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


@pytest.mark.parametrize("scheme", ["tcp", "unix"])
def test_the_guest_carries_on_at_a_bare_destination(pair, guest, scheme):
    uri = (f"tcp:127.0.0.1:{free_port()}" if scheme == "tcp"
           else f"unix:{pair.tmp / 'mig.sock'}")
    smon = pair.source(guest("dirty"), *DIRTY)
    sock = pair.destination(uri)
    assert smon.cmd(f"migrate {uri}") == ""
    status = info(smon)
    assert status["Migration status"] == "completed", status
    assert int(status["downtime"].split()[0]) < 300
    assert smon.cmd("info status") == "VM status: paused (postmigrate)"
    last = rounds(pair.src_out)[-1]
    time.sleep(0.3)
    assert rounds(pair.src_out)[-1] == last  # the source guest stopped for good
    carried_on(pair.src_out, pair.dst_out, last)
    dmon = pair.dst_monitor(sock)
    assert dmon.cmd("info status") == "VM status: running"
    assert info(dmon)["Migration status"] == "completed"


def test_a_snapshot_through_exec_and_file(pair, guest):
    smon = pair.source(guest("dirty"), *DIRTY)
    image = pair.tmp / "state.bin"
    assert smon.cmd("stop") == ""
    assert smon.cmd(f"migrate exec:cat>{image}") == ""
    assert info(smon)["Migration status"] == "completed"
    last = rounds(pair.src_out)[-1]
    pair.destination(f"file:{image}")
    wait_for(lambda: (r := rounds(pair.dst_out)) and r[-1] >= last + 3,
             what="rounds after loading the file")


@pytest.mark.parametrize("append", [DIRTY[1], "mib=64 period=1000"], ids=["small", "large"])
def test_a_mismatched_destination_is_refused_and_the_source_runs_on(pair, guest, append):
    # The first pass goes out before the destination's answer: 4 MiB waits in the
    # connection, 64 MiB does not fit and the destination's close cuts the write, and
    # either way the refusal is what the source reports.
    port = free_port()
    smon = pair.source(guest("dirty"), "-append", append)
    pair.destination(f"tcp:127.0.0.1:{port}", "-m", "256", "-kernel", guest("dirty"))
    reply = smon.cmd(f"migrate tcp:127.0.0.1:{port}")
    assert reply.startswith("Error: migration failed: the destination refused: "
                            "description: the machine does not match:")
    assert "/machine: ram_size is 134217728 in the stream, 268435456 here" in reply
    assert info(smon)["Migration status"].startswith("failed (the destination refused")
    assert smon.cmd("info status") == "VM status: running"
    before = rounds(pair.src_out)[-1]
    wait_for(lambda: rounds(pair.src_out)[-1] > before + 2, what="the source running on")
    assert pair.dst.wait(15) == 1
    err = pair.dst.stderr.read().decode()
    assert "incoming migration failed: description: the machine does not match" in err


def test_a_killed_destination_leaves_the_source_running_and_ready_again(pair, guest):
    smon = pair.source(guest("dirty"), "-append", "mib=16 period=5")
    port = free_port()
    pair.destination(f"tcp:127.0.0.1:{port}")
    assert smon.cmd("migrate_set_parameter max-bandwidth 4M") == ""  # a slow transfer
    assert smon.cmd(f"migrate -d tcp:127.0.0.1:{port}") == ""
    wait_for(lambda: info(smon)["Migration status"] == "active", what="an active migration")
    time.sleep(0.5)
    pair.dst.kill()
    status = wait_for(lambda: (s := info(smon))["Migration status"].startswith("failed") and s,
                      what="the migration to fail")
    assert "peer closed the connection" in status["Migration status"] or \
        "reset" in status["Migration status"]
    assert smon.cmd("info status") == "VM status: running"
    before = rounds(pair.src_out)[-1]
    wait_for(lambda: rounds(pair.src_out)[-1] > before + 2, what="the source running on")
    # and a new migration goes through
    assert smon.cmd("migrate_set_parameter max-bandwidth 0") == ""
    port = free_port()
    pair.dst_out = pair.tmp / "dst2.txt"
    pair.destination(f"tcp:127.0.0.1:{port}")
    assert smon.cmd(f"migrate tcp:127.0.0.1:{port}") == ""
    last = rounds(pair.src_out)[-1]
    wait_for(lambda: (r := rounds(pair.dst_out)) and r[-1] >= last + 3,
             what="rounds on the second destination")


def test_cancel_returns_the_source_to_normal(pair, guest):
    smon = pair.source(guest("dirty"), *DIRTY)
    port = free_port()
    pair.destination(f"tcp:127.0.0.1:{port}")
    assert smon.cmd("migrate_set_parameter max-bandwidth 1M") == ""
    assert smon.cmd(f"migrate -d tcp:127.0.0.1:{port}") == ""
    wait_for(lambda: info(smon)["Migration status"] == "active", what="an active migration")
    assert smon.cmd("migrate_cancel") == ""
    wait_for(lambda: info(smon)["Migration status"] == "cancelled", what="cancelled")
    assert smon.cmd("info status") == "VM status: running"
    assert pair.dst.wait(15) == 1  # the destination saw the stream end early
    err = pair.dst.stderr.read().decode()
    assert re.search(r"incoming migration failed: .*connection closed after", err), err


def test_a_truncated_stream_never_runs_at_the_destination(pair, guest):
    smon = pair.source(guest("dirty"), *DIRTY)
    image = pair.tmp / "state.bin"
    assert smon.cmd(f"migrate file:{image}") == ""
    data = image.read_bytes()
    image.write_bytes(data[:len(data) // 2])
    pair.destination(f"file:{image}")
    assert pair.dst.wait(15) == 1
    err = pair.dst.stderr.read().decode()
    assert re.search(r"incoming migration failed: ram/data-run@\d+: .*connection closed "
                     r"after \d+ of \d+ bytes", err), err
    assert rounds(pair.dst_out) == []  # the guest never ran there


def test_parameters_and_capabilities(monitor):
    mon, _ = monitor
    params = info(mon, "migrate_parameters")
    assert params["downtime-limit"] == "300 ms"
    assert params["max-bandwidth"] == "134217728 bytes/second"
    assert mon.cmd("migrate_set_parameter downtime-limit 50") == ""
    assert info(mon, "migrate_parameters")["downtime-limit"] == "50 ms"
    assert mon.cmd("migrate_set_parameter max-bandwidth 1G") == ""
    assert info(mon, "migrate_parameters")["max-bandwidth"] == "1073741824 bytes/second"
    assert mon.cmd("migrate_set_parameter nosuch 1") == \
        "Error: unknown migration parameter 'nosuch'"
    assert mon.cmd("migrate_set_parameter downtime-limit x") == \
        "Error: parameter 'downtime-limit' expects an integer"
    caps = info(mon, "migrate_capabilities")
    assert caps["auto-converge"] == "off" and caps["xbzrle"] == "off"
    assert mon.cmd("migrate_set_capability auto-converge on") == ""
    assert info(mon, "migrate_capabilities")["auto-converge"] == "on"
    assert mon.cmd("migrate_set_capability xbzrle on") == \
        "Error: migration capability 'xbzrle' is not supported by pyemu"
    assert mon.cmd("migrate_set_capability auto-converge maybe") == \
        "Error: expected 'on' or 'off', not 'maybe'"
    assert mon.cmd("migrate nosuch:x").startswith("Error: 'nosuch:x': ")


@pytest.fixture
def monitor(start_with_monitor):
    proc, client = start_with_monitor("-serial", "null")
    yield client, proc


def test_auto_converge_throttles_a_guest_that_dirties_too_fast(pair, guest):
    """The guest rewrites 2 MiB faster than 8 MiB/s can carry it within a 10 ms downtime:
    precopy alone goes round and round; auto-converge slows the guest until it fits."""
    smon = pair.source(guest("dirty"), "-append", "mib=2 period=0")
    port = free_port()
    pair.destination(f"tcp:127.0.0.1:{port}")
    for line in ("migrate_set_parameter max-bandwidth 8M", "migrate_set_parameter "
                 "downtime-limit 10", "migrate_set_parameter cpu-throttle-initial 50",
                 "migrate_set_parameter cpu-throttle-increment 25"):
        assert smon.cmd(line) == ""
    assert smon.cmd(f"migrate -d tcp:127.0.0.1:{port}") == ""
    time.sleep(2)
    status = info(smon)
    assert status["Migration status"] == "active", status  # it cannot converge alone
    assert int(status["dirty sync count"]) >= 3
    assert status["convergence"].startswith("not converging: ")
    assert smon.cmd("migrate_set_capability auto-converge on").startswith("Error: there is")
    assert smon.cmd("migrate_cancel") == ""
    wait_for(lambda: info(smon)["Migration status"] == "cancelled", what="cancelled")
    assert pair.dst.wait(15) == 1
    port = free_port()
    pair.destination(f"tcp:127.0.0.1:{port}")
    assert smon.cmd("migrate_set_capability auto-converge on") == ""
    assert smon.cmd(f"migrate tcp:127.0.0.1:{port}") == ""
    status = info(smon)
    assert status["Migration status"] == "completed"
    assert int(status["cpu throttle percentage"]) >= 50
    last = rounds(pair.src_out)[-1]
    wait_for(lambda: (r := rounds(pair.dst_out)) and r[-1] >= last + 2,
             what="rounds on the destination")


def test_shared_disk_changes_hands_at_switchover(pair, guest, tmp_path, pyemu):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    smon = pair.source(guest("dirty"), *DIRTY, "-drive", f"file={disk},id=data")
    port = free_port()
    sock = pair.destination(f"tcp:127.0.0.1:{port}")  # opens the image without its lock
    assert pair.dst.poll() is None
    assert smon.cmd(f"migrate tcp:127.0.0.1:{port}") == ""
    dmon = pair.dst_monitor(sock)
    assert dmon.cmd("info status") == "VM status: running"
    smon.sock.sendall(b"quit\n")
    assert pair.src.wait(15) == 0
    third = pyemu("-kernel", guest("hlt"), "-hda", str(disk), "-serial", "null", timeout=30)
    assert third.returncode == 1 and b"in use by another process" in third.stderr
    dmon.sock.sendall(b"quit\n")
    assert pair.dst.wait(15) == 0


def test_a_bare_destination_rebinds_a_drive(pair, guest, tmp_path, pyemu):
    disk, copy = tmp_path / "disk.img", tmp_path / "copy.img"
    for image in (disk, copy):
        image.write_bytes(bytes(1 << 20))
    smon = pair.source(guest("dirty"), *DIRTY, "-drive", f"file={disk},id=data,readonly=on")
    port = free_port()
    sock = pair.destination(f"tcp:127.0.0.1:{port}", "-drive", f"id=data,file={copy}")
    assert smon.cmd(f"migrate tcp:127.0.0.1:{port}") == ""
    dmon = pair.dst_monitor(sock)
    assert dmon.cmd("info status") == "VM status: running"
    smon.sock.sendall(b"quit\n")
    assert pair.src.wait(15) == 0

    def writer(image: Path) -> subprocess.CompletedProcess:
        return pyemu("-kernel", guest("hlt"), "-hda", str(image), "-serial", "null",
                     "-no-reboot", "-append", "", *DEBUG_EXIT_ARGS, timeout=30)

    # the destination holds copy.img (read-only, shared); nobody holds disk.img now
    assert b"copy.img is in use by another process" in writer(copy).stderr
    assert b"in use" not in writer(disk).stderr


def test_a_drive_id_the_stream_lacks_is_refused(pair, guest, tmp_path):
    smon = pair.source(guest("dirty"), *DIRTY)
    port = free_port()
    pair.destination(f"tcp:127.0.0.1:{port}", "-drive", f"id=nosuch,file={tmp_path}/x.img")
    reply = smon.cmd(f"migrate tcp:127.0.0.1:{port}")
    assert reply == ("Error: migration failed: the destination refused: -drive id=nosuch: "
                     "no drive of that id in the stream")
    assert smon.cmd("info status") == "VM status: running"


def test_block_migration_copies_a_disk_the_guest_keeps_writing(pair, guest, tmp_path):
    """No shared storage: the destination has an empty image of its own; the guest
    writes a sector every round (before, during and after the copy); afterwards the
    destination's image holds every round's sector and the untouched rest of the
    source's image."""
    src, dst = tmp_path / "src.img", tmp_path / "dst.img"
    rng = np.random.default_rng(7)
    src.write_bytes(bytes(1024 * 512) + rng.integers(0, 256, 1 << 20, np.uint8).tobytes())
    dst.write_bytes(bytes(src.stat().st_size))
    smon = pair.source(guest("dirty"), "-append", "mib=1 period=10 disk=1",
                       "-drive", f"file={src},id=data")
    port = free_port()
    sock = pair.destination(f"tcp:127.0.0.1:{port}", "-drive", f"id=data,file={dst}")
    for line in ("migrate_set_parameter max-bandwidth 2M",  # a copy of over a second
                 "migrate_set_parameter downtime-limit 2000"):
        assert smon.cmd(line) == ""
    assert smon.cmd(f"migrate -b tcp:127.0.0.1:{port}") == ""
    status = info(smon)
    assert status["Migration status"] == "completed", status
    assert int(status["dirty sync count"]) >= 2
    last = rounds(pair.src_out)[-1]
    wait_for(lambda: (r := rounds(pair.dst_out)) and r[-1] >= last + 5,
             what="rounds on the destination")
    dmon = pair.dst_monitor(sock)
    dmon.sock.sendall(b"quit\n")
    assert pair.dst.wait(15) == 0
    done = rounds(pair.dst_out)[-1]
    a, b = src.read_bytes(), dst.read_bytes()
    assert b[1024 * 512:] == a[1024 * 512:]  # the copy of what the guest never wrote
    assert b[:(last + 1) * 512] == a[:(last + 1) * 512]  # what it wrote on the source
    for n in range(1, done + 1):  # and every round's sector, wherever it was written
        assert int.from_bytes(b[n * 512:n * 512 + 4], "little") == n, f"sector {n}"


def test_incoming_defer_then_migrate_incoming_and_start_paused(pair, guest, tmp_path,
                                                               start_with_monitor):
    """A destination with its own machine options, told where to listen later, that
    stays paused after the migration (-S) until 'cont'."""
    smon = pair.source(guest("dirty"), *DIRTY)
    dst, dmon = start_with_monitor("-kernel", guest("dirty"), *DIRTY, "-incoming", "defer",
                                   "-S", "-serial", f"file:{pair.dst_out}")
    assert dmon.cmd("info status") == "VM status: paused (inmigrate)"
    port = free_port()
    assert dmon.cmd(f"migrate_incoming tcp:127.0.0.1:{port}") == ""
    assert dmon.cmd(f"migrate_incoming tcp:127.0.0.1:{port}").startswith("Error: ")
    wait_for(lambda: listening(port), what="the destination to listen")
    assert smon.cmd(f"migrate tcp:127.0.0.1:{port}") == ""
    wait_for(lambda: dmon.cmd("info status") == "VM status: paused", what="paused after")
    last = rounds(pair.src_out)[-1]
    time.sleep(0.3)
    assert rounds(pair.dst_out) == []  # -S: nothing ran yet
    assert dmon.cmd("cont") == ""
    wait_for(lambda: (r := rounds(pair.dst_out)) and r[-1] >= last + 3,
             what="rounds after cont")


def test_incoming_defer_needs_the_machine_options(pyemu):
    r = pyemu("-incoming", "defer")
    assert r.returncode == 1
    assert r.stderr.decode().startswith("pyemu: -incoming defer: a destination that builds "
                                        "its machine from the stream needs the URI")
    r = pyemu("-incoming", "tcp:127.0.0.1:99999")
    assert r.returncode == 1 and b"-incoming 'tcp:127.0.0.1:99999': " in r.stderr


def test_the_bundled_demo_migrates_to_a_destination_that_grants_nothing(pair,
                                                                          start_with_monitor):
    # pyemu's own read-only data (its BIOS, the demo's disk image) needs no -allow-files;
    # the same image named as a writable drive does
    demo = Path(__file__).resolve().parents[2] / "emu" / "guests" / "demo.img"
    src, smon = start_with_monitor("-drive", f"file={demo}", "-serial", "null")
    port = free_port()
    pair.destination(f"tcp:127.0.0.1:{port}", allow=False)
    reply = smon.cmd(f"migrate tcp:127.0.0.1:{port}")
    assert f"description/config/drives/ide0-hd0: {demo} is not granted here" in reply, reply
    assert smon.cmd("info status") == "VM status: running"
    smon.sock.sendall(b"quit\n")
    assert src.wait(15) == 0 and pair.dst.wait(15) == 1
    src, smon = start_with_monitor("-serial", "null")  # the demo, read-only
    port = free_port()
    sock = pair.destination(f"tcp:127.0.0.1:{port}", allow=False)
    assert smon.cmd(f"migrate tcp:127.0.0.1:{port}") == ""
    assert pair.dst_monitor(sock).cmd("info status") == "VM status: running"


def _qcow2(path: Path, data: bytes | None = None, size: int = 0) -> Path:
    """A qcow2 image made by qemu-img: of ``data``, or empty of ``size`` bytes."""
    if data is not None:
        raw = path.with_suffix(".raw")
        raw.write_bytes(data)
        args = ["convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)]
    else:
        args = ["create", "-f", "qcow2", str(path), str(size)]
    subprocess.run(["qemu-img", *args], check=True, capture_output=True, timeout=60)
    return path


def _raw_of(image: Path) -> bytes:
    """The guest's bytes of a qcow2 image, as qemu-img reads them; the image must
    pass qemu-img check first."""
    subprocess.run(["qemu-img", "check", str(image)], check=True, capture_output=True,
                   timeout=60)
    out = image.with_suffix(".out")
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(out)], check=True,
                   capture_output=True, timeout=60)
    return out.read_bytes()


@pytest.mark.parametrize("shared", [True, False], ids=["shared-qcow2", "block-into-qcow2"])
def test_a_qcow2_disk_the_guest_keeps_writing_migrates(pair, guest, tmp_path, shared):
    """Shared storage: the destination opens the same qcow2 image and re-reads its
    metadata at the switchover (the source wrote clusters meanwhile). No shared storage
    (migrate -b): the destination copies into an empty qcow2 image of its own."""
    rng = np.random.default_rng(8)
    data = bytes(1024 * 512) + rng.integers(0, 256, 1 << 20, np.uint8).tobytes()
    src = _qcow2(tmp_path / "src.qcow2", data)
    smon = pair.source(guest("dirty"), "-append", "mib=1 period=10 disk=1",
                       "-drive", f"file={src},format=qcow2,id=data")
    port = free_port()
    if shared:
        sock, image = pair.destination(f"tcp:127.0.0.1:{port}"), src
        migrate = f"migrate tcp:127.0.0.1:{port}"
    else:
        image = _qcow2(tmp_path / "dst.qcow2", size=len(data))
        sock = pair.destination(f"tcp:127.0.0.1:{port}", "-drive", f"id=data,file={image}")
        migrate = f"migrate -b tcp:127.0.0.1:{port}"
    assert smon.cmd(migrate) == ""
    assert info(smon)["Migration status"] == "completed"
    last = rounds(pair.src_out)[-1]
    wait_for(lambda: (r := rounds(pair.dst_out)) and r[-1] >= last + 5,
             what="rounds on the destination")
    dmon = pair.dst_monitor(sock)
    assert "(qcow2)" in dmon.cmd("info block")
    smon.sock.sendall(b"quit\n")
    assert pair.src.wait(15) == 0
    dmon.sock.sendall(b"quit\n")
    assert pair.dst.wait(15) == 0
    done, b = rounds(pair.dst_out)[-1], _raw_of(image)
    assert b[1024 * 512:] == data[1024 * 512:]  # what the guest never wrote
    for n in range(1, done + 1):  # every round's sector, written on either side
        assert int.from_bytes(b[n * 512:n * 512 + 4], "little") == n, f"sector {n}"
