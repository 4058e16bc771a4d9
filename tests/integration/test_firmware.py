"""Third-party firmware on our chipset: Debian's SeaBIOS boots a disk of ours from IDE."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from debugexit import DEBUG_EXIT_ARGS

SEABIOS = Path("/usr/share/seabios/bios.bin")


@pytest.fixture
def seabios() -> str:
    if not SEABIOS.exists():
        pytest.fail(f"{SEABIOS} is missing: 'make test' installs Debian's seabios package")
    return str(SEABIOS)


def test_seabios_boots_our_mbr_from_ide(seabios, guest, pyemu, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(Path(guest("hello")).parent.joinpath("mbr.img").read_bytes())
    start = time.monotonic()
    r = pyemu("-bios", seabios, "-hda", str(disk), "-nographic", *DEBUG_EXIT_ARGS, timeout=60)
    elapsed = time.monotonic() - start
    out = r.stdout.decode(errors="replace")
    assert "SeaBIOS (version 1.16" in out
    assert "Booting from Hard Disk" in out
    assert "PASS mbr: booted by the BIOS from drive 80" in out, out
    assert r.returncode == 1  # the MBR's isa-debug-exit verdict
    print(f"\nSeaBIOS to MBR verdict: {elapsed:.2f} s from process start")


def test_seabios_sees_the_drive_and_the_memory(seabios, guest, pyemu, tmp_path):
    disk = tmp_path / "disk.img"
    disk.write_bytes(Path(guest("hello")).parent.joinpath("mbr.img").read_bytes())
    log = tmp_path / "seabios.log"
    r = pyemu("-bios", seabios, "-m", "256", "-hda", str(disk), "-nographic",
              "-debugcon", f"file:{log}", *DEBUG_EXIT_ARGS, timeout=60)
    assert r.returncode == 1
    text = log.read_text(errors="replace")
    assert "ata0-0: PYEMU HARDDISK ATA-6 Hard-Disk (1 MiBytes)" in text
    assert "0000000000100000 - 000000000fffe000 = 1 RAM" in text  # from fw_cfg etc/e820
    assert "Booting from 0000:7c00" in text


def test_no_bootable_disk_is_reported(seabios, pyemu_proc, tmp_path):
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(1 << 20))  # no 55AA signature
    p = pyemu_proc("-bios", seabios, "-hda", str(blank), "-nographic")
    deadline = time.monotonic() + 30
    out = b""
    os.set_blocking(p.stdout.fileno(), False)
    while time.monotonic() < deadline and b"No bootable device" not in out:
        chunk = p.stdout.read()
        if chunk:
            out += chunk
        time.sleep(0.1)
    assert b"No bootable device" in out, out
