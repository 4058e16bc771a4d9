"""Snapshots across processes: a guest saved in one pyemu and loaded by a new one carries
on exactly where it was; pyemu processes sharing the snapshot directory never tear a
snapshot between them."""

from __future__ import annotations

from debugexit import DEBUG_EXIT_ARGS
from qemu.qmp.legacy import QEMUMonitorProtocol
from test_migration import rounds, wait_for


def test_a_run_split_across_processes_prints_the_same_bytes(tmp_path, guest, pyemu,
                                                            start_with_monitor, monkeypatch):
    """Under -icount the ticks guest's transcript (TSC and checksums at every PIT tick) is
    a function of the instruction count: stopping it at a random instant, saving,
    quitting, and loading the snapshot in a new process must continue the very same
    transcript, byte for byte. (It caught a monitor command's kick, delivered from the
    deadline thread, losing one instruction of the count.)"""
    monkeypatch.setenv("PYEMU_SNAPSHOT_DIR", str(tmp_path / "snaps"))
    args = ("-kernel", guest("ticks"), "-icount", "shift=2", "-rtc", "base=2020-01-01",
            *DEBUG_EXIT_ARGS)
    straight = pyemu(*args, "-serial", "stdio").stdout
    assert straight.endswith(b"PASS ticks\r\n")

    first = tmp_path / "first.txt"
    # The whole guest runs in ~0.1 s of host time: watching its output for a point to
    # stop at would let host speed decide the verdict. It starts paused instead, and
    # "cont" and "stop" arrive together: it stops a few slices in, wherever it then is.
    proc, mon = start_with_monitor(*args, "-serial", f"file:{first}", "-S")
    mon.sock.sendall(b"cont\nstop\n")
    assert [mon.until_prompt(), mon.until_prompt()] == ["", ""]
    assert mon.cmd("savevm split") == ""
    mon.sock.sendall(b"quit\n")
    assert proc.wait(15) == 0
    head = first.read_bytes()
    assert b"PASS" not in head, "stop while the guest is mid-run"

    tail = pyemu(*args, "-serial", "stdio", "-loadvm", "split").stdout
    assert head + tail == straight


def test_two_processes_saving_one_tag_leave_one_whole_snapshot(tmp_path, guest,
                                                               start_with_monitor,
                                                               monkeypatch):
    """Two pyemu sharing the snapshot directory save one tag at the same instant, round
    after round: each save succeeds or is refused with the reason (it once published a
    torn file while both said it succeeded). In the end one snapshot is there, whole: it
    loads in both, and both still run."""
    snaps = tmp_path / "snaps"
    monkeypatch.setenv("PYEMU_SNAPSHOT_DIR", str(snaps))
    outs = [tmp_path / f"vm{i}.txt" for i in range(2)]
    # 64 MiB of guest data, so that a save takes long enough (~0.1 s) for both to overlap.
    vms = [start_with_monitor("-kernel", guest("dirty"), "-append", "mib=64 period=500",
                              "-serial", f"file:{out}") for out in outs]
    for out in outs:
        wait_for(lambda out=out: rounds(out), timeout=60, what="the guest's first round")
    refused = "Error: snapshot 'shared' is being saved by another process"
    replies = []
    for _ in range(5):
        for _, mon in vms:
            mon.sock.sendall(b"savevm shared\n")
        replies.append(sorted(mon.until_prompt() for _, mon in vms))
        assert replies[-1] in (["", ""], ["", refused]), replies
    assert ["", refused] in replies, "the saves never overlapped: make them longer"
    assert [p.name for p in snaps.iterdir()] == ["shared.pyemu"]
    for (proc, mon), out in zip(vms, outs, strict=True):
        assert mon.cmd("loadvm shared") == ""
        assert mon.cmd("info status") == "VM status: running"
        after = rounds(out)[-1]
        wait_for(lambda out=out, after=after: rounds(out)[-1] > after, timeout=30,
                 what="the guest's rounds to advance after loadvm")
        mon.sock.sendall(b"quit\n")
        assert proc.wait(15) == 0


def test_an_unusable_snapshot_directory_is_one_line_on_both_monitors(tmp_path, guest,
                                                                     start_with_monitor,
                                                                     monkeypatch):
    """A directory under a regular file (root, who runs the tests, ignores permissions):
    savevm and snapshot-save name it and the reason, with no traceback."""
    (tmp_path / "file").write_bytes(b"")
    where = tmp_path / "file" / "snaps"
    monkeypatch.setenv("PYEMU_SNAPSHOT_DIR", str(where))
    qmp_path = tmp_path / "qmp.sock"
    proc, mon = start_with_monitor("-kernel", guest("hlt"), "-serial", "null",
                                   "-qmp", f"unix:{qmp_path},server,nowait")
    line = f"snapshot 't' cannot be saved in {where}: Not a directory"
    assert mon.cmd("savevm t") == f"Error: {line}"
    qmp = QEMUMonitorProtocol(str(qmp_path))
    qmp.connect()
    try:
        reply = qmp.cmd_obj({"execute": "snapshot-save", "arguments": {"tag": "t"}})
    finally:
        qmp.close()
    assert reply["error"] == {"class": "GenericError", "desc": line}
    assert mon.cmd("info status") == "VM status: running"
    mon.sock.sendall(b"quit\n")
    assert proc.wait(15) == 0
    assert b"Traceback" not in proc.stderr.read()
