"""IDE disks as a guest and a user see them: the ata guest drives the PIIX3 IDE function
(PIO, READ MULTIPLE, LBA48, bus-master DMA, errors) on a patterned image, and the host side
keeps its promises: writes reach the image file, -snapshot keeps it untouched, an image in
use is refused, bad drive options are one-line errors."""

from __future__ import annotations

import hashlib
import os
import re
import struct
import time
from pathlib import Path

import pytest
from debugexit import DEBUG_EXIT_ARGS

SECTOR = 512
MAGIC = b"PYEMU-ATA-TEST"
DEMO = Path(__file__).resolve().parents[2] / "emu" / "guests" / "demo.elf"
WRITE_LBA, WRITE_COUNT = 100, 2  # where the ata guest writes (tests/guests/ata.c)


def pattern_sector(lba: int) -> bytes:
    """What the ata guest expects in every sector it reads."""
    return (MAGIC + struct.pack("<I", lba)).ljust(SECTOR, b"\0")


def written_sector(k: int) -> bytes:
    """What the ata guest writes at WRITE_LBA + k (written_byte() in ata.c)."""
    return bytes((i * 7 + k * 13 + 1) & 0xFF for i in range(SECTOR))


def make_image(path: Path, sectors: int) -> Path:
    path.write_bytes(b"".join(pattern_sector(lba) for lba in range(sectors)))
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_ata(pyemu, guest, image: Path, sectors: int, *extra: str, mib: int = 1):
    r = pyemu("-kernel", guest("ata"), "-append", f"sectors={sectors} mib={mib}",
              "-hda", str(image), "-serial", "stdio", "-nographic", *extra, *DEBUG_EXIT_ARGS,
              timeout=120)
    return r, r.stdout.decode(errors="replace")


def test_ata_guest_passes_and_its_writes_reach_the_file(pyemu, guest, tmp_path):
    sectors, mib = 32768, 16  # a 16 MiB image; 16 MiB of PIO for the throughput figure
    image = make_image(tmp_path / "disk.img", sectors)
    r, out = run_ata(pyemu, guest, image, sectors, mib=mib)
    assert "PASS ata" in out, out + r.stderr.decode(errors="replace")
    assert r.returncode == 1
    pio = re.search(r"pio: \d+ MiB in \d+ ms \(\d+\.\d MB/s\)", out)
    assert pio, out
    print(f"\n{pio.group(0)}")

    data = image.read_bytes()
    assert len(data) == sectors * SECTOR
    for k in range(WRITE_COUNT):
        lba = WRITE_LBA + k
        assert data[lba * SECTOR:(lba + 1) * SECTOR] == written_sector(k), f"sector {lba}"
    for lba in (0, WRITE_LBA - 1, WRITE_LBA + WRITE_COUNT, sectors - 1):
        assert data[lba * SECTOR:(lba + 1) * SECTOR] == pattern_sector(lba), f"sector {lba}"


def test_snapshot_keeps_the_image_file_unchanged(pyemu, guest, tmp_path):
    sectors = 2048
    image = make_image(tmp_path / "disk.img", sectors)
    before = digest(image)
    r, out = run_ata(pyemu, guest, image, sectors, "-snapshot")
    # the guest read its own write back (the overlay serves it) ...
    assert "ok  the written sectors read back" in out, out
    assert "PASS ata" in out, out
    assert r.returncode == 1
    # ... and nothing of it reached the file
    assert digest(image) == before


def test_lba48_beyond_the_28_bit_limit(pyemu, guest, tmp_path):
    """A sparse image of 2^28 + 1024 sectors: IDENTIFY caps the 28-bit capacity, READ
    SECTORS EXT reaches the last sector."""
    sectors = (1 << 28) + 1024
    image = tmp_path / "big.img"
    with image.open("wb") as f:
        f.truncate(sectors * SECTOR)
        f.write(b"".join(pattern_sector(lba) for lba in range(2048)))
        f.seek((sectors - 1) * SECTOR)
        f.write(pattern_sector(sectors - 1))
    # the 128 GiB image must stay sparse (it does on ext4/tmpfs, where CI runs)
    allocated = image.stat().st_blocks * 512
    if allocated > 64 << 20:
        image.unlink()
        pytest.fail(f"{tmp_path} does not keep files sparse ({allocated} bytes allocated)")
    r, out = run_ata(pyemu, guest, image, sectors)
    assert "ok  LBA28 capacity 268435455 sectors" in out, out
    assert f"ok  READ SECTORS EXT of sector {sectors - 1:#x}" in out, out
    assert "PASS ata" in out, out
    assert r.returncode == 1


def _wait_for(proc, text: bytes, seconds: float) -> bytes:
    os.set_blocking(proc.stdout.fileno(), False)
    out = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and text not in out and proc.poll() is None:
        chunk = proc.stdout.read()
        if chunk:
            out += chunk
        time.sleep(0.05)
    return out


def test_an_image_in_use_is_refused(pyemu, pyemu_proc, guest, tmp_path):
    sectors = 2048
    image = make_image(tmp_path / "disk.img", sectors)
    # the bundled demo guest runs until it is killed: it holds the image meanwhile
    holder = pyemu_proc("-kernel", str(DEMO), "-hda", str(image), "-nographic")
    out = _wait_for(holder, b"machine is alive", 30)
    assert b"machine is alive" in out, out
    r = pyemu("-kernel", guest("ata"), "-append", f"sectors={sectors}", "-hda", str(image),
              "-serial", "stdio", "-nographic", timeout=60)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 1
    assert "in use by another process" in err, err
    assert str(image) in err
    assert len(err.strip().splitlines()) == 1, err
    assert b"PASS" not in r.stdout and b"FAIL" not in r.stdout  # the guest never ran
    assert holder.poll() is None  # the holder is untouched
    assert digest(image) == digest(make_image(tmp_path / "ref.img", sectors))


def _one_line_error(pyemu, *args: str) -> str:
    r = pyemu(*args, "-nographic", timeout=30)
    err = r.stderr.decode(errors="replace").strip()
    assert r.returncode == 1, err
    assert len(err.splitlines()) == 1, err
    assert not r.stdout.strip(), r.stdout
    return err


def test_missing_image_names_the_option_and_path(pyemu, tmp_path):
    missing = tmp_path / "missing.img"
    err = _one_line_error(pyemu, "-drive", f"file={missing},index=1")
    assert err.startswith(f"pyemu: -drive file={missing}"), err
    assert "No such file or directory" in err


@pytest.mark.parametrize("option", ["-hda", "-cdrom"])
def test_missing_image_names_the_short_option(pyemu, tmp_path, option):
    missing = tmp_path / "missing.img"
    err = _one_line_error(pyemu, option, str(missing))
    assert str(missing) in err and "No such file or directory" in err, err
    assert err.startswith(f"pyemu: {option} {missing}"), err


def test_an_unknown_or_wrong_format_is_refused(pyemu, tmp_path):
    image = make_image(tmp_path / "disk.img", 16)
    err = _one_line_error(pyemu, "-drive", f"file={image},format=vmdk")
    assert err == "pyemu: -drive format=vmdk: only raw and qcow2 are supported", err
    err = _one_line_error(pyemu, "-drive", f"file={image},format=qcow2")
    assert err == (f"pyemu: -drive file={image}: image {image}: format=qcow2 but the file "
                   "does not start with the qcow2 magic (raw data? give format=raw)"), err
