"""The inspecting monitor commands (info, x/xp, qom-*, sendkey, machine-export) over a
real monitor socket of a running pyemu."""

from __future__ import annotations

import json
import re

import pytest


@pytest.fixture
def monitor(start_with_monitor):
    proc, client = start_with_monitor("-serial", "null")
    yield client, proc
    client.sock.close()


def test_inspect_a_running_guest(monitor, tmp_path):
    mon, proc = monitor
    assert re.fullmatch(r"\* CPU #0: thread_id=\d+", mon.cmd("info cpus"))
    pic = mon.cmd("info pic").splitlines()
    assert [line[:5] for line in pic] == ["pic0:", "pic1:"]
    # the default guest boots through pyemu's BIOS: its reset vector jumps into F000h
    assert re.fullmatch(r"00000000fffffff0: 0xea( 0x[0-9a-f]{2}){2} 0x00 0xf0",
                        mon.cmd("xp /5xb 0xfffffff0"))
    mon.cmd("stop")
    code = mon.cmd("x /3i $pc").splitlines()
    assert len(code) == 3 and all(re.match(r"0x[0-9a-f]{8}:  [0-9a-f]{2}", c) for c in code)
    mon.cmd("cont")
    assert "(i/o): /machine/pic/master" in mon.cmd("info mtree")
    assert "IDE controller: PCI device 8086:7010" in mon.cmd("info pci")
    chardevs = mon.cmd("info chardev").splitlines()
    assert chardevs[0] == "serial0: filename=null"
    assert re.fullmatch(r"compat_monitor0: filename=unix:.*mon1\.sock,server,nowait",
                        chardevs[1])
    assert mon.cmd("qom-get /machine/pic/master iobase") == "32"
    assert mon.cmd("sendkey ctrl-alt-delete") == ""
    out = tmp_path / "machine.json"
    assert mon.cmd(f"machine-export {out}") == ""
    assert json.loads(out.read_text())["machine"] == "pc"
    history = mon.cmd("info history").splitlines()
    assert history[0] == "0: 'info cpus'" and history[-1] == f"{len(history) - 1}: 'info history'"
    assert mon.cmd("info status") == "VM status: running"


def test_garbage_never_takes_the_monitor_down(monitor):
    mon, proc = monitor
    for line in ("x", "x /", "x /4q 0", "x $nosuch", "x 0x10000000000000000", "xp -1",
                 "xp /9999999x 0", "x /i 0xffffffffffffffff", "qom-get", "qom-set a b c",
                 "qom-list /\x01", "sendkey", "sendkey ctrl-nokey", "machine-export /",
                 "info irq extra", "info qtree x", "x \xff\xfe", "xp $esp+$esp+"):
        reply = mon.cmd(line)
        assert reply and len(reply.splitlines()) == 1, (line, reply)
    assert mon.cmd("info status") == "VM status: running"
    assert proc.poll() is None


def test_info_block_over_the_socket(start_with_monitor, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    proc, mon = start_with_monitor("-serial", "null", "-snapshot",
                                   "-drive", f"file={disk},format=raw")
    assert mon.cmd("info block").splitlines() == [
        f"ide0-hd0: {disk} (raw)",
        "    Attached to:      /machine/ide/ide0/master",
        "    Cache mode:       writeback",
        "    Snapshot:         writes kept in a temporary overlay, dropped at exit"]
    mon.sock.close()
