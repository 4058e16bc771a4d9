"""qcow2 disks as Linux sees them: Debian's kernel (ata_piix + sd_mod from the
initramfs) reads qcow2 images qemu-img made -- empty, compressed, an overlay over a raw
backing file -- and writes to them; once pyemu has quit, ``qemu-img check`` finds the
image consistent and ``qemu-img convert -O raw`` returns the guest's bytes.

Each test boots its own guest (a few seconds) so that each image is written by exactly
one pyemu process and checked after it has exited.
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_linux import APPEND, booted

pytestmark = pytest.mark.linux


@pytest.fixture(autouse=True)
def _qemu_img() -> None:
    if shutil.which("qemu-img") is None:
        pytest.fail("qemu-img is missing: 'make test' installs qemu-utils")

MIB = 1 << 20
SECTOR = 512
DISK = 16 * MIB
MARK_AT = 100 * SECTOR + 3  # unaligned: the guest's write merges into a cluster
MARK = b"pyemu-qcow2-ok"
BLOB_AT, BLOB_SIZE = 6 * MIB, 2 * MIB


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def qemu_img(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"qemu-img {' '.join(args)}: {r.stdout}{r.stderr}"
    return r


def guest_bytes(image: Path, tmp_path: Path) -> bytes:
    """The disk as qemu-img reads it, after checking the image is consistent."""
    qemu_img("check", str(image))
    out = tmp_path / "converted.raw"
    qemu_img("convert", "-O", "raw", str(image), str(out))
    return out.read_bytes()


def use_disk(*drive: str) -> tuple[str, str]:
    """Boot with ``drive`` as the primary master; the guest takes the md5 of the whole
    disk, then writes MARK at MARK_AT and a random blob at BLOB_AT, syncs and reboots
    (pyemu quits). (disk md5, blob md5) as the guest computed them."""
    with booted(APPEND, *drive) as linux:
        # sd_mod attaches the disk asynchronously after insmod
        found = linux.run("for i in $(seq 100); do [ -b /dev/sda ] && break; sleep 0.1; "
                          "done; cat /sys/block/sda/size")
        assert found.strip() == str(DISK // SECTOR), found + linux.run(
            "dmesg | tail -20", kernel_lines=True)
        disk_md5 = re.search(r"\b[0-9a-f]{32}\b", linux.run("md5sum </dev/sda", timeout=60))
        assert disk_md5
        linux.run(f"printf {MARK.decode()} | dd of=/dev/sda bs=1 seek={MARK_AT} "
                  "conv=notrunc")
        linux.run(f"head -c {BLOB_SIZE} /dev/urandom >/tmp/blob")
        blob_md5 = re.search(r"\b[0-9a-f]{32}\b", linux.run("md5sum </tmp/blob"))
        assert blob_md5
        linux.run(f"dd if=/tmp/blob of=/dev/sda bs=1M seek={BLOB_AT // MIB} conv=notrunc",
                  timeout=60)
        linux.run("sync", timeout=60)
        linux.type("reboot -f")
        assert linux.proc.wait(30) == 0
    return disk_md5.group(), blob_md5.group()


def assert_written(data: bytes, before: bytes, blob_md5: str) -> None:
    """``data`` is ``before`` with the guest's two writes, and nothing else changed."""
    assert len(data) == DISK
    assert data[MARK_AT:MARK_AT + len(MARK)] == MARK
    assert md5(data[BLOB_AT:BLOB_AT + BLOB_SIZE]) == blob_md5
    assert data[:MARK_AT] == before[:MARK_AT]
    assert data[MARK_AT + len(MARK):BLOB_AT] == before[MARK_AT + len(MARK):BLOB_AT]
    assert data[BLOB_AT + BLOB_SIZE:] == before[BLOB_AT + BLOB_SIZE:]


def random_disk() -> bytes:
    """Random data in the first 4 MiB and at 12 MiB, zeros elsewhere (left unallocated
    by qemu-img, so the guest's blob lands in newly allocated clusters)."""
    rng = random.Random(11)
    data = bytearray(DISK)
    data[:4 * MIB] = rng.randbytes(4 * MIB)
    data[12 * MIB:13 * MIB] = rng.randbytes(MIB)
    return bytes(data)


def test_an_empty_qcow2_image_from_qemu_img(tmp_path: Path) -> None:
    image = tmp_path / "empty.qcow2"
    qemu_img("create", "-f", "qcow2", str(image), str(DISK))
    disk_md5, blob_md5 = use_disk("-drive", f"file={image},format=qcow2,if=ide")
    assert disk_md5 == md5(bytes(DISK))
    assert_written(guest_bytes(image, tmp_path), bytes(DISK), blob_md5)


def test_a_compressed_image_probed_by_hda(tmp_path: Path) -> None:
    raw = tmp_path / "data.raw"
    raw.write_bytes(before := random_disk())
    image = tmp_path / "compressed.qcow2"
    qemu_img("convert", "-c", "-f", "raw", "-O", "qcow2", str(raw), str(image))
    disk_md5, blob_md5 = use_disk("-hda", str(image))
    assert disk_md5 == md5(before)
    assert_written(guest_bytes(image, tmp_path), before, blob_md5)


def test_an_overlay_over_a_raw_backing_file(tmp_path: Path) -> None:
    base = tmp_path / "base.raw"
    base.write_bytes(before := random_disk())
    image = tmp_path / "overlay.qcow2"
    qemu_img("create", "-f", "qcow2", "-b", str(base), "-F", "raw", str(image))
    disk_md5, blob_md5 = use_disk("-drive", f"file={image},if=ide")
    assert disk_md5 == md5(before)
    assert_written(guest_bytes(image, tmp_path), before, blob_md5)
    assert base.read_bytes() == before  # the backing file is only read
