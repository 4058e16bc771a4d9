"""El Torito: Debian's SeaBIOS boots a no-emulation CD of ours from the ATAPI drive.

The ISO comes from tests/guests/mkiso.py with our MBR as its boot image (4 virtual
sectors at 0:7C00); the MBR prints the drive number the BIOS passed in DL. SeaBIOS
numbers the first CD drive E0h in no-emulation mode."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
from debugexit import DEBUG_EXIT_ARGS

SEABIOS = Path("/usr/share/seabios/bios.bin")
MKISO = Path(__file__).resolve().parents[1] / "guests" / "mkiso.py"


def _mkiso():
    spec = importlib.util.spec_from_file_location("mkiso", MKISO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def seabios() -> str:
    if not SEABIOS.exists():
        pytest.fail(f"{SEABIOS} is missing: 'make test' installs Debian's seabios package")
    return str(SEABIOS)


@pytest.fixture
def boot_iso(guest, tmp_path) -> Path:
    mbr = Path(guest("hello")).parent / "mbr.bin"
    iso = tmp_path / "boot.iso"
    iso.write_bytes(_mkiso().build_iso(mbr.read_bytes(), load_sectors=4))
    return iso


def test_the_iso_is_el_torito_bootable(boot_iso):
    data = boot_iso.read_bytes()
    sector = 2048
    assert data[16 * sector:16 * sector + 6] == b"\x01CD001"
    brvd = data[17 * sector:18 * sector]
    assert brvd[:7] == b"\x00CD001\x01" and brvd[7:30] == b"EL TORITO SPECIFICATION"
    catalog_lba = int.from_bytes(brvd[0x47:0x4B], "little")
    catalog = data[catalog_lba * sector:catalog_lba * sector + 64]
    words = [int.from_bytes(catalog[i:i + 2], "little") for i in range(0, 32, 2)]
    assert sum(words) & 0xFFFF == 0 and catalog[30:32] == b"\x55\xaa"
    assert catalog[32] == 0x88 and catalog[33] == 0  # bootable, no emulation
    load_rba = int.from_bytes(catalog[40:44], "little")
    assert data[load_rba * sector + 510:load_rba * sector + 512] == b"\x55\xaa"  # our MBR
    assert data[18 * sector:18 * sector + 7] == b"\xffCD001\x01"  # terminator


def test_seabios_boots_our_cd(seabios, boot_iso, pyemu, tmp_path):
    log = tmp_path / "seabios.log"
    start = time.monotonic()
    r = pyemu("-bios", seabios, "-cdrom", str(boot_iso), "-boot", "d", "-nographic",
              "-debugcon", f"file:{log}", *DEBUG_EXIT_ARGS, timeout=60)
    elapsed = time.monotonic() - start
    out = r.stdout.decode(errors="replace")
    assert "Booting from DVD/CD" in out, out
    assert "PASS mbr: booted by the BIOS from drive E0" in out, out
    assert r.returncode == 1
    text = log.read_text(errors="replace")
    assert "ata1-0: PYEMU DVD-ROM ATAPI-4 DVD/CD" in text, text
    print(f"\nSeaBIOS to CD boot verdict: {elapsed:.2f} s from process start")


@pytest.mark.parametrize(("order", "drive"), [("c", "80"), ("d", "E0"), ("dc", "E0")])
def test_boot_order_chooses_between_disk_and_cd(seabios, boot_iso, guest, pyemu, tmp_path,
                                                order, drive):
    disk = tmp_path / "disk.img"
    disk.write_bytes(Path(guest("hello")).parent.joinpath("mbr.img").read_bytes())
    r = pyemu("-bios", seabios, "-hda", str(disk), "-cdrom", str(boot_iso), "-boot", order,
              "-nographic", *DEBUG_EXIT_ARGS, timeout=60)
    out = r.stdout.decode(errors="replace")
    assert f"PASS mbr: booted by the BIOS from drive {drive}" in out, out
    assert r.returncode == 1
