"""Removable media at run time, seen by Debian's Linux guest (see test_linux.py): the
monitor changes and ejects the CD, Linux reads the new disc, and a migration to a bare
destination carries the changed drive; a destination started with the old disc is
refused in the preflight."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from test_linux import BUILD
from test_linux_migration import boot  # noqa: F401  (fixture)
from test_migration import free_port, info, listening, wait_for

pytestmark = pytest.mark.linux
SECTOR = 2048
WAIT_SR0 = "for i in $(seq 100); do [ -b /dev/sr0 ] && break; sleep 0.1; done; "


def disc(tmp: Path, name: str, sectors: int) -> Path:
    """A CD image whose every sector says which disc and which sector it is."""
    path = tmp / f"{name}.iso"
    path.write_bytes(b"".join(f"{name} sector {i}\n".encode().ljust(SECTOR, b".")
                              for i in range(sectors)))
    return path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def seen(console) -> tuple[str, str]:
    """What Linux reads on /dev/sr0 now: its size in 512-byte sectors and its md5 (or
    the error dd gives)."""
    out = console.run(WAIT_SR0 + "dd if=/dev/sr0 bs=2048 2>&1 >/tmp/cd | tail -n1; "
                      "md5sum < /tmp/cd; cat /sys/block/sr0/size", timeout=60)
    lines = out.strip().splitlines()
    return lines[-1].strip(), (lines[-2].split()[0] if "records" in lines[0] else lines[0])


def test_linux_sees_the_discs_the_monitor_puts_in_and_a_migration_carries_them(
        boot, tmp_path):  # noqa: F811
    a, b = disc(tmp_path, "alpha", 50), disc(tmp_path, "bravo", 70)
    src = boot("-cdrom", str(a))
    sh = src.console
    assert seen(sh) == ("200", md5(a))
    assert src.mon.cmd(f"change ide1-cd0 {b}") == ""
    assert seen(sh) == ("280", md5(b))  # the unit attention told Linux: new size too
    block = src.mon.cmd("info block")
    assert f"ide1-cd0: {b} (raw, read-only)" in block and "tray closed" in block
    # ejected: the tray stays open and empty, and Linux finds no medium
    assert src.mon.cmd("eject ide1-cd0") == ""
    assert "ide1-cd0: [not inserted]" in src.mon.cmd("info block")
    assert "No medium found" in sh.run("dd if=/dev/sr0 of=/dev/null bs=2048 2>&1 | head -n1")
    assert src.mon.cmd("change ide1-cd0 /nonexistent.iso") == \
        "Error: Could not open '/nonexistent.iso': cannot open image /nonexistent.iso: " \
        "No such file or directory"
    assert src.mon.cmd("change ide0-hd0 x") == "Error: Device 'ide0-hd0' not found"
    assert src.mon.cmd(f"change ide1-cd0 {b}") == ""
    assert seen(sh) == ("280", md5(b))

    # a destination with a fixed configuration that still has the old disc: refused
    port = free_port()
    old = boot.process("-m", "256", "-kernel", str(BUILD / "vmlinuz"), "-initrd",
                       str(BUILD / "rootfs.gz"), "-cdrom", str(a),
                       "-incoming", f"tcp:127.0.0.1:{port}")
    wait_for(lambda: listening(port) or old.proc.poll() is not None,
             what="the old destination to listen")
    reply = src.mon.cmd(f"migrate tcp:127.0.0.1:{port}")
    assert reply.startswith("Error: migration failed: the destination refused"), reply
    assert "drive ide1-cd0: size is 143360 in the stream, 102400 here" in reply, reply
    assert src.mon.cmd("info status") == "VM status: running"

    # a bare destination builds the changed machine: the guest reads the new disc there
    port = free_port()
    dst = boot.process("-incoming", f"tcp:127.0.0.1:{port}", "-allow-files", str(BUILD),
                       "-allow-files", str(tmp_path))
    wait_for(lambda: listening(port) or dst.proc.poll() is not None,
             what="the destination to listen")
    assert src.mon.cmd(f"migrate tcp:127.0.0.1:{port}") == ""
    assert info(src.mon)["Migration status"] == "completed"
    assert seen(dst.console) == ("280", md5(b))
    assert f"ide1-cd0: {b} (raw, read-only)" in dst.monitor().cmd("info block")
    src.quit()
    dst.quit()


def test_the_guest_locks_and_opens_the_tray_itself(boot, tmp_path):  # noqa: F811
    a = disc(tmp_path, "alpha", 50)
    src = boot("-cdrom", str(a))
    sh = src.console
    assert seen(sh) == ("200", md5(a))
    # while a reader holds /dev/sr0 open, Linux keeps the tray locked
    sh.type("sleep 30 < /dev/sr0 &")
    wait_for(lambda: "Removable device: locked" in src.mon.cmd("info block"),
             what="Linux to lock the tray")
    assert src.mon.cmd("eject ide1-cd0") == "Error: Device 'ide1-cd0' is locked and force " \
        "was not specified, wait for tray to open and try again"
    assert "ide1-cd0: " + str(a) in src.mon.cmd("info block")
    assert src.mon.cmd("eject -f ide1-cd0") == ""
    assert "ide1-cd0: [not inserted]" in src.mon.cmd("info block")
    sh.run("kill %1; wait")
    # the guest's own eject (START STOP UNIT, sent by Linux's cdrom autoeject when the
    # device is closed) opens the tray; the disc stays in it, unreadable
    assert src.mon.cmd(f"change ide1-cd0 {a}") == ""
    assert seen(sh) == ("200", md5(a))
    sh.run("echo 1 > /proc/sys/dev/cdrom/autoeject; dd if=/dev/sr0 of=/dev/null count=1")
    assert "No medium found" in sh.run("dd if=/dev/sr0 of=/dev/null count=1 2>&1")
    block = src.mon.cmd("info block")
    assert f"ide1-cd0: {a}" in block and "tray open" in block, block
    # the monitor's close-tray (QMP's blockdev-close-tray; HMP's change does it too)
    # brings it back with a unit attention, and Linux reads the disc again
    assert src.mon.cmd(f"change ide1-cd0 {a}") == ""
    sh.run("echo 0 > /proc/sys/dev/cdrom/autoeject")
    assert seen(sh) == ("200", md5(a))
    src.quit()
