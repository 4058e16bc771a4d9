"""Snapshots across processes: a guest saved in one pyemu and loaded by a new one carries
on exactly where it was."""

from __future__ import annotations

import time


def test_a_run_split_across_processes_prints_the_same_bytes(tmp_path, guest, pyemu,
                                                            start_with_monitor, monkeypatch):
    """Under -icount the ticks guest's transcript (TSC and checksums at every PIT tick) is
    a function of the instruction count: stopping it at a random instant, saving,
    quitting, and loading the snapshot in a new process must continue the very same
    transcript, byte for byte. (It caught a monitor command's kick, delivered from the
    deadline thread, losing one instruction of the count.)"""
    monkeypatch.setenv("PYEMU_SNAPSHOT_DIR", str(tmp_path / "snaps"))
    args = ("-kernel", guest("ticks"), "-icount", "shift=2", "-rtc", "base=2020-01-01")
    straight = pyemu(*args, "-serial", "stdio").stdout
    assert straight.endswith(b"PASS ticks\r\n")

    first = tmp_path / "first.txt"
    proc, mon = start_with_monitor(*args, "-serial", f"file:{first}")
    deadline = time.monotonic() + 30
    while b"tick 20 " not in first.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)  # stop a little after tick 20, wherever the guest then is
    assert mon.cmd("stop") == ""
    assert mon.cmd("savevm split") == ""
    mon.sock.sendall(b"quit\n")
    assert proc.wait(15) == 0
    head = first.read_bytes()
    assert b"tick 20 " in head and b"PASS" not in head, "stop while the guest is mid-run"

    tail = pyemu(*args, "-serial", "stdio", "-loadvm", "split").stdout
    assert head + tail == straight
