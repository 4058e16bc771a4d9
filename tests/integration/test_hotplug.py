"""PCI hotplug seen by Debian's Linux guest (see test_linux.py), as on QEMU's ``-M pc``:
``chardev-add`` and ``device_add pci-serial`` at the monitor, Linux's acpiphp finds the
card through the GPE and the DSDT's slots, 8250_pci makes it a tty the guest writes;
a live migration to a bare destination carries the card and its state, the guest
writes on there; ``device_del`` makes Linux eject it. A destination whose fixed
configuration lacks the card is refused in the preflight, naming it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from qemu.qmp.legacy import QEMUMonitorProtocol
from test_linux import APPEND_ACPI, BUILD, MARKER, SEABIOS
from test_linux_migration import Process, boot  # noqa: F401  (fixture)
from test_migration import free_port, info, listening, wait_for

pytestmark = pytest.mark.linux
CARD = "/sys/bus/pci/devices/0000:00:02.0"


def start(boot, *extra: str) -> Process:  # noqa: F811
    p = boot.process("-m", "256", "-kernel", str(BUILD / "vmlinuz"), "-initrd",
                     str(BUILD / "rootfs.gz"), "-append", APPEND_ACPI, *extra)
    p.console.wait_for(re.escape(MARKER), timeout=90)
    p.console.wait_for(rb"# ", timeout=30)
    p.monitor()
    return p


def wait_in_guest(sh, test: str, what: str) -> None:
    out = sh.run(f"for i in $(seq 100); do {test} && break; sleep 0.1; done; "
                 f"{test} && echo yes || echo no", timeout=60)
    assert out.strip().endswith("yes"), f"the guest never saw {what}: {out!r}"


def tty_of_card(sh) -> str:
    wait_in_guest(sh, f"[ -d {CARD}/tty ]", "the card's tty")
    return sh.run(f"ls {CARD}/tty").strip()


def written(path: Path, text: str) -> bool:
    return path.exists() and text.encode() in path.read_bytes()


def test_linux_uses_a_hot_added_serial_card_across_a_migration(boot, tmp_path,  # noqa: F811
                                                              monkeypatch):
    monkeypatch.setenv("PYEMU_SNAPSHOT_DIR", str(tmp_path / "snapshots"))
    src = start(boot)
    sh, mon = src.console, src.mon
    assert sh.run("ls /sys/bus/pci/slots | wc -l").strip() == "30"  # acpiphp: slots 2-31
    out1, out2 = tmp_path / "card-src.out", tmp_path / "card-dst.out"
    assert mon.cmd(f"chardev-add file,id=c1,path={out1}") == ""
    assert mon.cmd("device_add pci-serial,id=ps0,chardev=c1") == ""
    tty = tty_of_card(sh)
    assert sh.run(f"cat {CARD}/vendor {CARD}/device").split() == ["0x1b36", "0x0002"]
    sh.run(f"stty -F /dev/{tty} raw; echo before-migration > /dev/{tty}")
    wait_for(lambda: written(out1, "before-migration"), what="the card's output")
    assert mon.cmd("savevm hot") == ""  # the snapshot's description has the card
    qtree = mon.cmd("info qtree")
    assert "ps0" in qtree and "pci-serial" in qtree
    assert mon.cmd("device_add pci-serial,id=ps1,chardev=c1") == \
        "Error: Property 'pci-serial.chardev' can't take value 'c1', it's in use"
    assert mon.cmd("chardev-remove c1") == "Error: Chardev 'c1' is busy"

    # a destination with a fixed configuration that lacks the card: refused, named
    port = free_port()
    old = boot.process("-m", "256", "-kernel", str(BUILD / "vmlinuz"), "-initrd",
                       str(BUILD / "rootfs.gz"), "-append", APPEND_ACPI,
                       "-incoming", f"tcp:127.0.0.1:{port}")
    wait_for(lambda: listening(port) or old.proc.poll() is not None,
             what="the old destination to listen")
    reply = mon.cmd(f"migrate tcp:127.0.0.1:{port}")
    assert reply.startswith("Error: migration failed: the destination refused"), reply
    assert "/machine/ps0: present in the stream, absent here" in reply, reply
    assert mon.cmd("info status") == "VM status: running"

    # a bare destination builds the changed machine, binding c1 to its own file
    port = free_port()
    qmp_sock = tmp_path / "dst.qmp"
    dst = boot.process("-incoming", f"tcp:127.0.0.1:{port}", "-allow-files", str(BUILD),
                       "-chardev", f"file,id=c1,path={out2}",
                       "-qmp", f"unix:{qmp_sock},server,nowait")
    wait_for(lambda: listening(port) or dst.proc.poll() is not None,
             what="the destination to listen")
    assert mon.cmd(f"migrate tcp:127.0.0.1:{port}") == ""
    assert info(mon)["Migration status"] == "completed"
    src.quit()
    dmon, dsh = dst.monitor(), dst.console
    dsh.run(f"echo after-migration > /dev/{tty}")
    wait_for(lambda: written(out2, "after-migration"), what="the card's output there")
    assert not written(out1, "after-migration")

    # device_del (over QMP): Linux ejects the card, DEVICE_DELETED says it is gone
    qmp = QEMUMonitorProtocol(str(qmp_sock))
    qmp.connect()
    try:
        assert qmp.cmd("device_del", id="ps0") == {}
        wait_in_guest(dsh, f"[ ! -d {CARD} ]", "the card go")
        deleted = qmp.pull_event(wait=10)
        assert deleted["event"] == "DEVICE_DELETED"
        assert deleted["data"] == {"device": "ps0", "path": "/machine/ps0"}
        assert "ps0" not in dmon.cmd("info qtree")
        assert qmp.cmd("chardev-remove", id="c1") == {}
        assert qmp.cmd_obj({"execute": "device_del", "arguments": {"id": "ps0"}})["error"] == {
            "class": "DeviceNotFound", "desc": "Device 'ps0' not found"}
        # the machine without the card cannot take the snapshot made with it
        assert dmon.cmd("loadvm hot").startswith("Error: snapshot 'hot': ")
        assert "/machine/ps0: present in the stream, absent here" in dmon.cmd("loadvm hot")
    finally:
        qmp.close()
    dst.quit()

    # started with the card on the command line, -loadvm goes on from the snapshot
    out3 = tmp_path / "card-loadvm.out"
    again = boot.process("-m", "256", "-kernel", str(BUILD / "vmlinuz"), "-initrd",
                         str(BUILD / "rootfs.gz"), "-append", APPEND_ACPI,
                         "-chardev", f"file,id=c1,path={out3}",
                         "-device", "pci-serial,id=ps0,chardev=c1", "-loadvm", "hot")
    again.monitor()
    again.console.run(f"echo after-loadvm > /dev/{tty}")
    wait_for(lambda: written(out3, "after-loadvm"), what="the card's output after loadvm")
    again.quit()


def test_a_cold_plugged_card_interrupts_through_the_prt(boot, tmp_path):  # noqa: F811
    import socket

    sock_path = tmp_path / "card.sock"
    guest = start(boot, "-chardev", f"socket,id=c0,path={sock_path},server=on,wait=off",
                  "-device", "pci-serial,id=cold,chardev=c0")
    sh = guest.console
    tty = tty_of_card(sh)
    irq = sh.run(f"cat {CARD}/irq").strip()
    assert irq in ("10", "11"), irq  # the _PRT's answer for slot 2 INTA#: PIRQB
    host = socket.socket(socket.AF_UNIX)
    host.connect(str(sock_path))
    try:
        sh.type(f"stty -F /dev/{tty} raw -echo; cat /dev/{tty} > /tmp/got &\n")
        wait_in_guest(sh, f"grep -q {tty} /proc/interrupts", "the port opened")
        host.sendall(b"hello\n")
        wait_in_guest(sh, "[ -s /tmp/got ] && grep -q hello /tmp/got", "the host's bytes")
        counts = sh.run(f"grep {tty} /proc/interrupts").split()
        assert counts[0] == f"{irq}:" and int(counts[1]) > 0, counts
        # cat gone before echo opens the port, so echo's close is the port's last one and
        # drains the output (not a close racing with the killed cat's shutdown of the port)
        sh.run(f"kill %1; wait; echo from-guest > /dev/{tty}")
        host.settimeout(10)
        got = b""
        while b"from-guest" not in got:
            got += host.recv(100)
    finally:
        host.close()
    guest.quit()


def test_hotplug_through_seabios_own_dsdt(boot, tmp_path):  # noqa: F811
    """SeaBIOS builds its own ACPI tables here (no QEMU table loader): its DSDT reads
    the same registers, PCIU once per slot."""
    out = tmp_path / "card.out"
    guest = start(boot, "-bios", str(SEABIOS))
    sh, mon = guest.console, guest.mon
    assert mon.cmd(f"chardev-add file,id=c1,path={out}") == ""
    assert mon.cmd("device_add pci-serial,id=ps0,chardev=c1") == ""
    tty = tty_of_card(sh)
    sh.run(f"echo through-seabios > /dev/{tty}")
    wait_for(lambda: written(out, "through-seabios"), what="the card's output")
    assert mon.cmd("device_del ps0") == ""
    wait_in_guest(sh, f"[ ! -d {CARD} ]", "the card go")
    wait_for(lambda: "ps0" not in mon.cmd("info qtree"), what="the card to leave the tree")
    guest.quit()
