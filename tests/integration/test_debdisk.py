"""A real Debian system on a real disk: tests/guests/build/debdisk/disk.img (Debian 12 by
mmdebstrap, tests/guests/debdisk/build.sh) booted by pyemu's BIOS from the IDE disk
through the disk's own GRUB, the cloud kernel and its initramfs (ata_piix, sd_mod) and
sysvinit, which checks and mounts the root file system from /dev/sda1, starts udev,
rsyslog and a marker service, and runs a getty on the serial console. The test logs in
as root (no password) and looks at the running system as a person would, then powers it
off and reads what the guest wrote out of the image file.

Two guests boot at once for the module, one per core (the boots are the cost: most of
it is sysvinit's shell scripts, which take QEMU 50 s too): the logged-in one, on a copy
of the image so the built disk stays as built, and one through Debian's SeaBIOS with
writes kept apart. The tests run in file order: the last of the first guest's powers it
off.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from serialguest import SerialGuest

ROOT = Path(__file__).resolve().parents[2]
DISK = ROOT / "tests" / "guests" / "build" / "debdisk" / "disk.img"
SEABIOS = Path("/usr/share/seabios/bios.bin")
PARTITION = 2048 * 512  # sda1's first byte (tests/guests/debdisk/mkimage.py)
BOOT_TIMEOUT = 420
PROMPT = rb"root@pyemu-debian:~# "
PROOF = "pyemu-debdisk: written by the guest"
# What the console shows, in order (tests/guests/debdisk/overlay): grub.cfg's echo, the
# kernel, sysvinit, the marker service at the end of runlevel 2, /etc/issue, the getty.
BOOT_LINES = [
    rb"pyemu-debdisk: GRUB is loading Linux",
    rb"Linux version 6\.1\.\S+-cloud-amd64",
    rb"INIT: version",
    rb"INIT: Entering runlevel: 2",
    rb"pyemu-debdisk: marker service started in runlevel 2",
    rb"pyemu-debdisk: Debian GNU/Linux 12 pyemu-debian ttyS0",
    rb"pyemu-debian login: ",
]
# The initramfs and the kernel giving up fail the boot at once.
STOP = [b"Gave up waiting for root file system", b"Kernel panic"]

pytestmark = [pytest.mark.linux, pytest.mark.timeout(900)]


def e2fs(tool: str, image: Path, *args: str) -> subprocess.CompletedProcess:
    """Run an e2fsprogs tool on the image's ext4 partition (unix_io's offset option)."""
    if not shutil.which(tool):
        pytest.fail(f"{tool} is missing (Debian package e2fsprogs; build.sh installs it)")
    return subprocess.run([tool, *args, f"{image}?offset={PARTITION}"], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def boots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SerialGuest]]:
    """Both guests, started at once: "own" on a copy of the disk by pyemu's own BIOS,
    "seabios" on the disk itself (snapshot=on) by Debian's SeaBIOS."""
    if not DISK.exists():
        pytest.fail(f"{DISK} is missing: tests/guests/debdisk/build.sh builds it "
                    "('make debian-disk')")
    if not SEABIOS.exists():
        pytest.fail(f"{SEABIOS} is missing: 'make firmware' installs Debian's seabios")
    image = tmp_path_factory.mktemp("debdisk") / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(DISK), str(image)], check=True)
    with SerialGuest("-m", "256", "-drive", f"file={image},format=raw,if=ide",
                     "-no-reboot", stop=STOP) as own, \
         SerialGuest("-m", "256", "-bios", str(SEABIOS), "-drive",
                     f"file={DISK},format=raw,if=ide,snapshot=on", "-no-reboot",
                     stop=STOP) as seabios:
        own.image = image
        yield {"own": own, "seabios": seabios}


@pytest.fixture(scope="module")
def debian(boots: dict[str, SerialGuest]) -> SerialGuest:
    """The guest booted by pyemu's own BIOS, logged in as root and at bash's prompt."""
    guest = boots["own"]
    at = 0
    for line in BOOT_LINES:
        m = guest.wait_for(line, BOOT_TIMEOUT, at)
        at = m.end()
    guest.boot_seconds = guest.seconds_to(m)
    guest.type("root")
    at = guest.wait_for(PROMPT, 120, at).end()
    # bash's line editor brackets each command's output in escapes: off
    guest.type("bind 'set enable-bracketed-paste off'")
    guest.wait_for(PROMPT, 30, at)
    return guest


def test_boots_from_its_own_grub_to_the_login_prompt(debian: SerialGuest) -> None:
    assert re.search(rb"Command line: BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro console=ttyS0",
                     debian.out), debian.out[-3000:]
    print(f"power-on to the login prompt: {debian.boot_seconds:.0f} s")


def test_root_is_the_ide_disk_mounted_read_write(debian: SerialGuest) -> None:
    mount = debian.run("findmnt -n -o SOURCE,FSTYPE,OPTIONS /")
    assert re.search(r"^/dev/sda1\s+ext4\s+rw,", mount, re.M), mount
    # sda1 hangs off the PIIX3 IDE function (00:01.1), port ata1, driven by ata_piix
    path = debian.run("readlink -f /sys/class/block/sda1")
    assert "/0000:00:01.1/ata1/" in path, path
    assert "ata_piix" in debian.run("readlink /sys/bus/pci/devices/0000:00:01.1/driver")
    assert "PYEMU HARDDISK" in debian.run("cat /sys/block/sda/device/model")


def test_sysvinit_started_the_services(debian: SerialGuest) -> None:
    assert debian.run("runlevel").split()[-1:] == ["2"]
    assert debian.run("cat /proc/1/comm").strip() == "init"
    for daemon in ("rsyslogd", "systemd-udevd"):
        assert debian.run(f"pidof {daemon}").strip(), f"no {daemon} running"
    # the getty's login recorded the session (utmp)
    assert re.search(r"^root\s+ttyS0\b", debian.run("who"), re.M)


def test_logs_and_journal_are_written(debian: SerialGuest) -> None:
    # rsyslog wrote the marker service's logger line to the disk
    log = debian.run("grep pyemu-marker /var/log/syslog")
    assert "pyemu-debdisk: marker service started in runlevel 2" in log, log
    debian.run(f"echo '{PROOF}' >/root/proof; sync")
    # ext4's journal (jbd2) has committed transactions, this one among them
    info = debian.run("cat /proc/fs/jbd2/sda1-8/info")
    committed = re.search(r"^(\d+) transactions \(\d+ requested\)", info, re.M)
    assert committed and int(committed.group(1)) > 0, info


def test_poweroff_leaves_a_clean_disk_with_the_guest_s_writes(debian: SerialGuest) -> None:
    # sysvinit's runlevel 0 ends in an ACPI power-off, and pyemu with status 0
    start = debian.type("poweroff")
    debian.wait_for(rb"reboot: Power down", 180, start)
    assert debian.proc.wait(30) == 0
    # it unmounted the root file system: e2fsck finds it clean, with the guest's file
    check = e2fs("e2fsck", debian.image, "-fn")
    assert check.returncode == 0, check.stdout + check.stderr
    proof = e2fs("debugfs", debian.image, "-R", "cat /root/proof")
    assert proof.stdout.strip() == PROOF, proof.stdout + proof.stderr


def test_seabios_boots_the_disk_to_the_login_prompt(boots: dict[str, SerialGuest]) -> None:
    # Debian's SeaBIOS builds ACPI tables of its own, whose DSDT reads QEMU's PCI
    # hotplug ports: read as all ones, they had Linux eject the IDE controller
    guest = boots["seabios"]
    at = guest.wait_for(rb"SeaBIOS", 60).end()
    for line in BOOT_LINES:
        at = guest.wait_for(line, BOOT_TIMEOUT, at).end()
