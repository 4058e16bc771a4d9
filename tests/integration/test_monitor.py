"""The human monitor on its chardev spellings, driven as a person or a script would."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest
from test_migration import DIRTY, rounds, wait_for

BANNER = b"pyemu demo guest: the machine is alive."


def _wait_for_banner(out: Path, count: int = 1, timeout: float = 20) -> None:
    """Until the default guest (BIOS, then the demo from its disk) has printed its banner
    ``count`` times on the serial port written to ``out``."""
    deadline = time.monotonic() + timeout
    while not out.exists() or out.read_bytes().count(BANNER) < count:
        assert time.monotonic() < deadline, out.read_bytes() if out.exists() else "no output"
        time.sleep(0.05)


@pytest.fixture
def monitor(start_with_monitor):
    proc, client = start_with_monitor("-serial", "null")
    yield client, proc
    client.sock.close()


def test_status_stop_cont(monitor):
    mon, _ = monitor
    assert mon.cmd("info status") == "VM status: running"
    assert mon.cmd("stop") == ""
    assert mon.cmd("info status") == "VM status: paused"
    assert mon.cmd("cont") == ""
    assert mon.cmd("info status") == "VM status: running"


def test_registers_show_a_stopped_cpu_that_does_not_move(tmp_path, start_with_monitor):
    out = tmp_path / "serial.txt"
    _, mon = start_with_monitor("-serial", f"file:{out}")
    _wait_for_banner(out)  # the demo runs in protected mode
    mon.cmd("stop")
    first = mon.cmd("info registers")
    time.sleep(0.2)
    assert mon.cmd("info registers") == first  # paused means paused
    assert "EIP=" in first and "CS =0008" in first and "CR0=60000011" in first  # as QEMU
    mon.cmd("cont")
    time.sleep(0.2)


def test_bad_input_gets_one_line_and_the_monitor_survives(monitor):
    mon, _ = monitor
    assert mon.cmd("frobnicate now") == "unknown command: 'frobnicate'"
    assert mon.cmd("info nothing") == "unknown info command: 'nothing'"
    assert mon.cmd("stop extra args") .startswith("stop: too many arguments")
    assert mon.cmd("x" * 10000) == "line too long: over 4096 bytes; ignored"
    assert mon.cmd("\x00\xff garbage") != ""
    assert mon.cmd("info status") == "VM status: running"
    assert "info registers" in mon.cmd("help")


def test_a_paste_of_anything_leaves_the_monitor_and_the_guest_alive(tmp_path, guest,
                                                                   start_with_monitor):
    out = tmp_path / "serial.txt"
    proc, mon = start_with_monitor("-kernel", guest("dirty"), *DIRTY, "-serial", f"file:{out}")
    wait_for(lambda: rounds(out), what="the guest's first round")
    garbage = bytes(b for b in range(256) if b not in b"\r\n") * 4
    paste = [(b"\n" * 300, ""), (b"info status\r\n" * 300, "VM status: running"),
             (b"x" * 100_000 + b"\n", "line too long: over 4096 bytes; ignored"),
             (b"\x1b[" + b"1;" * 10_000 + b"A\n", "VM status: running"),  # up: history
             (garbage + b"\n", "unknown command: '.*'")]
    mon.sock.sendall(b"".join(keys for keys, _ in paste))  # one write, once fatal
    for keys, reply in paste:
        for _ in range(keys.count(b"\n")):
            assert re.fullmatch(reply, mon.until_prompt(), re.S)
    assert mon.cmd("info status") == "VM status: running"
    before = rounds(out)[-1]
    wait_for(lambda: rounds(out)[-1] >= before + 2, what="the guest's rounds to advance")
    assert proc.poll() is None


def test_system_reset_restarts_the_guest(tmp_path, start_with_monitor):
    out = tmp_path / "serial.txt"
    proc, mon = start_with_monitor("-serial", f"file:{out}")
    _wait_for_banner(out)
    mon.cmd("system_reset")
    _wait_for_banner(out, 2)  # through the BIOS and the disk again
    time.sleep(0.5)
    text = out.read_bytes()
    assert text.count(BANNER) == 2 and text.count(b"pyemu BIOS") == 2


def test_quit_ends_the_process(monitor):
    mon, proc = monitor
    mon.sock.sendall(b"quit\n")
    assert proc.wait(15) == 0


def test_start_paused_then_cont(tmp_path, start_with_monitor):
    out = tmp_path / "serial.txt"
    proc, mon = start_with_monitor("-S", "-serial", f"file:{out}")
    assert mon.cmd("info status") == "VM status: paused (prelaunch)"
    time.sleep(0.3)
    assert out.read_bytes() == b""  # the CPU has not run
    mon.cmd("cont")
    _wait_for_banner(out)


def test_tcp_monitor(pyemu_proc, connect_monitor):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = pyemu_proc("-serial", "null", "-monitor", f"tcp:127.0.0.1:{port},server,nowait")
    mon = connect_monitor(("127.0.0.1", port), proc)
    mon.until_prompt()
    assert mon.cmd("info version").endswith("(pyemu)")
    mon.sock.sendall(b"quit\n")
    assert proc.wait(15) == 0


def test_muxed_console_switches_to_monitor(pyemu_proc, type_into):
    proc = pyemu_proc("-serial", "mon:stdio")
    type_into(proc, 1.5, b"\x01cinfo status\r", 0.5, b"quit\r")
    out, _ = proc.communicate(timeout=15)
    assert b"VM status: running" in out
    assert proc.returncode == 0


def test_monitor_on_stdio(pyemu):
    r = pyemu("-S", "-serial", "null", "-monitor", "stdio",
              stdin=b"info status\ncont\ninfo status\nquit\n", timeout=30)
    out = r.stdout.decode().replace("\r\n", "\n")
    assert out.startswith("pyemu ")
    assert "VM status: paused (prelaunch)\n" in out
    assert "VM status: running\n" in out
    assert r.returncode == 0


def test_savevm_and_loadvm_on_a_running_guest(tmp_path, start_with_monitor, monkeypatch):
    monkeypatch.setenv("PYEMU_SNAPSHOT_DIR", str(tmp_path / "snaps"))
    out = tmp_path / "serial.txt"
    proc, mon = start_with_monitor("-serial", f"file:{out}")
    time.sleep(0.5)
    assert mon.cmd("savevm first") == ""
    assert "first" in mon.cmd("info snapshots")
    time.sleep(0.3)
    assert mon.cmd("loadvm first") == ""
    assert mon.cmd("info status") == "VM status: running"
    assert mon.cmd("loadvm nosuch").startswith("Error: snapshot 'nosuch' cannot be read")
    assert mon.cmd("savevm ../escape").startswith("Error: invalid snapshot name")
    (tmp_path / "snaps" / "broken.pyemu").write_bytes(b"PYEMUSTR garbage")
    assert mon.cmd("loadvm broken").startswith("Error: snapshot 'broken': end: checksum")
    assert mon.cmd("info status") == "VM status: running"  # the guest was not harmed
    assert mon.cmd("delvm first") == ""
    assert "first" not in mon.cmd("info snapshots")
    mon.sock.sendall(b"quit\n")
    assert proc.wait(15) == 0


def test_savevm_refuses_a_writable_disk(tmp_path, start_with_monitor, monkeypatch):
    monkeypatch.setenv("PYEMU_SNAPSHOT_DIR", str(tmp_path / "snaps"))
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    proc, mon = start_with_monitor(
        "-kernel", str(Path(__file__).parents[1] / "guests/build/hlt.elf"),
        "-serial", "null", "-hda", str(disk))
    reply = mon.cmd("savevm s")
    assert reply == (f"Error: drive ide0-hd0 ({disk}) is a writable raw image, which cannot "
                     "hold its state at the snapshot; use a qcow2 image or readonly=on")
    assert not (tmp_path / "snaps" / "s.pyemu").exists()
    mon.sock.sendall(b"quit\n")
    proc.wait(15)
