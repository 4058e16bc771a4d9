"""Internal snapshots of qcow2 disks with Debian's Linux guest (see test_linux.py), as
QEMU keeps them: savevm puts a snapshot of the tag in the image and the machine's state
in its VM state area; loadvm rolls disk and machine back together; qemu-img lists,
applies and checks what pyemu wrote, and pyemu opens what qemu-img made."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from test_linux import APPEND, BUILD, MARKER
from test_linux_migration import Process, boot  # noqa: F401  (fixture)

pytestmark = pytest.mark.linux
QEMU_IMG = "/usr/bin/qemu-img"
DISK_MIB = 16
WAIT_SDA = "for i in $(seq 100); do [ -b /dev/sda ] && break; sleep 0.1; done; "


def qemu_img(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([QEMU_IMG, *args], capture_output=True, text=True, timeout=60)


def start(boot, disk: Path, *extra: str) -> Process:  # noqa: F811
    p = boot.process("-m", "256", "-kernel", str(BUILD / "vmlinuz"), "-initrd",
                     str(BUILD / "rootfs.gz"), "-append", APPEND,
                     "-drive", f"file={disk},format=qcow2,if=ide,index=0", *extra)
    if "-loadvm" not in extra:
        p.console.wait_for(re.escape(MARKER), timeout=90)
        p.console.wait_for(rb"# ", timeout=30)
    p.monitor()
    return p


def disk_md5(sh) -> str:
    return sh.run(WAIT_SDA + f"dd if=/dev/sda bs=1M count={DISK_MIB} 2>/dev/null | md5sum",
                  timeout=60).split()[0]


def write_pattern(sh, word: str) -> None:
    sh.run(f"yes {word} | head -c 3000000 | dd of=/dev/sda bs=64k conv=fsync 2>/dev/null; "
           "sync; echo 3 > /proc/sys/vm/drop_caches", timeout=60)


def test_savevm_loadvm_roll_disk_and_machine_back_together(boot, tmp_path):  # noqa: F811
    if not Path(QEMU_IMG).exists():
        pytest.fail(f"{QEMU_IMG} is missing: 'make test' installs qemu-utils")
    disk = tmp_path / "data.qcow2"
    assert qemu_img("create", "-f", "qcow2", str(disk), f"{DISK_MIB}M").returncode == 0
    vm = start(boot, disk)
    sh, mon = vm.console, vm.mon
    write_pattern(sh, "alpha")
    sh.run("echo before > /tmp/mark")
    at_snapshot = disk_md5(sh)
    assert mon.cmd("savevm s1") == ""
    write_pattern(sh, "bravo")
    sh.run("echo after > /tmp/mark")
    assert disk_md5(sh) != at_snapshot
    assert re.search(r"^s1 +\d+\.\d MiB", mon.cmd("info snapshots"), re.M)
    assert mon.cmd("loadvm s1") == ""
    assert sh.run("echo 3 > /proc/sys/vm/drop_caches; cat /tmp/mark").strip() == "before"
    assert disk_md5(sh) == at_snapshot  # the disk as at the snapshot, read by Linux
    assert mon.cmd("loadvm nope") == "Error: Snapshot 'nope' does not exist on drive ide0-hd0"
    vm.quit()

    # qemu-img sees pyemu's snapshot, with its machine state, in an image it accepts
    listed = qemu_img("snapshot", "-l", str(disk)).stdout
    assert re.search(r"\bs1\b", listed), listed
    assert qemu_img("check", str(disk)).returncode == 0
    # qemu-img's own snapshot (no machine state) opens; loadvm of it is refused, named
    assert qemu_img("snapshot", "-c", "disk-only", str(disk)).returncode == 0
    vm = start(boot, disk, "-loadvm", "s1")  # disk and machine restored at start
    sh, mon = vm.console, vm.mon
    assert sh.run("cat /tmp/mark").strip() == "before"
    assert disk_md5(sh) == at_snapshot
    assert mon.cmd("loadvm disk-only") == (
        "Error: snapshot 'disk-only' of drive ide0-hd0 holds no machine state (a "
        "disk-only snapshot, as qemu-img snapshot -c makes)")
    assert mon.cmd("delvm s1") == ""
    assert "s1" not in mon.cmd("info snapshots")
    vm.quit()
    assert qemu_img("check", str(disk)).returncode == 0
    assert "s1" not in qemu_img("snapshot", "-l", str(disk)).stdout


def test_qemu_img_snapshot_apply_is_what_loadvm_does_to_the_disk(boot, tmp_path):  # noqa: F811
    disk = tmp_path / "data.qcow2"
    assert qemu_img("create", "-f", "qcow2", str(disk), f"{DISK_MIB}M").returncode == 0
    vm = start(boot, disk)
    sh, mon = vm.console, vm.mon
    write_pattern(sh, "first")
    assert mon.cmd("savevm s1") == ""
    write_pattern(sh, "second")
    vm.quit()
    raw_before = tmp_path / "before.raw"
    applied = tmp_path / "applied.qcow2"
    applied.write_bytes(disk.read_bytes())
    assert qemu_img("snapshot", "-a", "s1", str(applied)).returncode == 0
    vm = start(boot, disk, "-loadvm", "s1")
    vm.quit()  # loadvm applied s1 to the disk
    assert qemu_img("convert", "-O", "raw", str(applied), str(raw_before)).returncode == 0
    assert qemu_img("compare", str(disk), str(raw_before)).returncode == 0


def test_a_writable_raw_disk_still_refuses_savevm(boot, tmp_path):  # noqa: F811
    raw = tmp_path / "data.img"
    raw.write_bytes(bytes(DISK_MIB << 20))
    vm = boot.process("-m", "256", "-kernel", str(BUILD / "vmlinuz"), "-initrd",
                      str(BUILD / "rootfs.gz"), "-append", APPEND,
                      "-drive", f"file={raw},format=raw,if=ide,index=0")
    mon = vm.monitor()
    assert mon.cmd("savevm s1") == (
        f"Error: drive ide0-hd0 ({raw}) is a writable raw image, which cannot hold its "
        "state at the snapshot; use a qcow2 image or readonly=on")
    vm.quit()
