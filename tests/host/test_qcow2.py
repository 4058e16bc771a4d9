"""qcow2 images against QEMU's own tools: reading what qemu-img/qemu-io write, writing
what qemu-img check/compare/convert accept, crash safety under SIGKILL, snapshots both
ways, and one-line errors for hostile headers."""

from __future__ import annotations

import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emu.host import qcow2
from emu.host.qcow2 import Qcow2Error, Qcow2Image

QEMU_IMG = "/usr/bin/qemu-img"
QEMU_IO = "/usr/bin/qemu-io"
ROOT = Path(__file__).resolve().parents[2]



@pytest.fixture(autouse=True)
def _qemu_img() -> None:
    if not os.path.exists(QEMU_IMG):
        pytest.fail(f"{QEMU_IMG} is missing: 'make test' installs qemu-utils")


def tool(*args: str, cwd: Path | None = None, ok: tuple[int, ...] = (0,)) -> str:
    r = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=cwd)
    assert r.returncode in ok, f"{args}: {r.returncode} {r.stdout} {r.stderr}"
    return r.stdout


def check(path: Path, leaks_ok: bool = False) -> None:
    r = subprocess.run([QEMU_IMG, "check", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode in ((0, 3) if leaks_ok else (0,)), r.stdout + r.stderr


def pattern(size: int, seed: int) -> bytes:
    """Random data with whole zero stretches, so qemu-img leaves clusters unallocated."""
    rnd = random.Random(seed)
    data = bytearray(rnd.randbytes(size))
    for _ in range(8):
        at = rnd.randrange(size)
        data[at:at + rnd.randrange(1 << 18)] = bytes(len(data[at:at + (1 << 18)]))
    return bytes(data[:size])


def same_as_raw(image: Path, shadow: bytes, tmp: Path) -> None:
    """qemu-img check, compare and convert all agree with the bytes we wrote."""
    check(image)
    raw = tmp / "shadow.raw"
    raw.write_bytes(shadow)
    tool(QEMU_IMG, "compare", "-f", "qcow2", "-F", "raw", str(image), str(raw))
    out = tmp / "converted.raw"
    tool(QEMU_IMG, "convert", "-O", "raw", str(image), str(out))
    assert out.read_bytes() == shadow


def read_all(path: Path) -> bytes:
    with Qcow2Image(str(path), readonly=True) as img:
        return img.read(0, img.size)


def random_writes(img: Qcow2Image, shadow: bytearray, count: int, seed: int,
                  span: int = 200_000) -> None:
    rnd = random.Random(seed)
    for _ in range(count):
        n = rnd.randrange(1, span)
        at = rnd.randrange(0, img.size - n)
        data = rnd.randbytes(n)
        img.write(at, data)
        shadow[at:at + n] = data


# -- reading what QEMU writes ---------------------------------------------------------

@pytest.mark.parametrize("cluster_size,compat", [
    (512, "1.1"), (512, "0.10"), (4096, "1.1"), (65536, "0.10"), (65536, "1.1"),
    (2 << 20, "1.1")])
def test_reads_qemu_img_images(tmp_path, cluster_size, compat):
    data = pattern(3 << 20, cluster_size)
    (tmp_path / "src.raw").write_bytes(data)
    tool(QEMU_IMG, "convert", "-O", "qcow2", "-o", f"cluster_size={cluster_size},"
         f"compat={compat}", str(tmp_path / "src.raw"), str(tmp_path / "a.qcow2"))
    with Qcow2Image(str(tmp_path / "a.qcow2"), readonly=True) as img:
        assert img.version == (2 if compat == "0.10" else 3)
        assert img.size == len(data)
        assert img.read(0, img.size) == data
        assert img.read(12345, 70001) == data[12345:12345 + 70001]


@pytest.mark.parametrize("ctype", ["zlib", "zstd"])
def test_compressed_read_and_cow(tmp_path, ctype):
    data = pattern(2 << 20, 7)
    (tmp_path / "src.raw").write_bytes(data)
    image = tmp_path / "c.qcow2"
    tool(QEMU_IMG, "convert", "-c", "-O", "qcow2", "-o", f"compression_type={ctype}",
         str(tmp_path / "src.raw"), str(image))
    assert read_all(image) == data
    shadow = bytearray(data)
    with Qcow2Image(str(image)) as img:
        random_writes(img, shadow, 20, 8, span=5000)  # copy-on-write of compressed clusters
    same_as_raw(image, bytes(shadow), tmp_path)


def test_zero_clusters_plain_and_allocated(tmp_path):
    image = tmp_path / "z.qcow2"
    base = tmp_path / "base.raw"
    base.write_bytes(b"\x55" * (1 << 20))
    tool(QEMU_IMG, "create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", str(image),
         cwd=tmp_path)
    tool(QEMU_IO, "-c", "write -P 0xaa 0 512k", "-c", "write -z 0 64k",
         "-c", "write -z 256k 64k", str(image))
    shadow = bytearray(b"\xaa" * (512 << 10) + b"\x55" * (512 << 10))
    shadow[0:64 << 10] = bytes(64 << 10)  # allocated zero cluster
    shadow[256 << 10:320 << 10] = bytes(64 << 10)
    with Qcow2Image(str(image)) as img:
        assert img.read(0, img.size) == shadow
        for at in (100, (256 << 10) + 7, (600 << 10) + 3):  # into zero/unallocated clusters
            img.write(at, b"xyz")
            shadow[at:at + 3] = b"xyz"
        assert img.read(0, img.size) == shadow
    same_as_raw(image, bytes(shadow), tmp_path)


# -- writing --------------------------------------------------------------------

@pytest.mark.parametrize("cluster_size", [512, 4096, 65536, 2 << 20])
def test_written_images_pass_qemu_img(tmp_path, cluster_size):
    image = tmp_path / "w.qcow2"
    qcow2.create(str(image), 8 << 20, cluster_size=cluster_size)
    check(image)
    assert '"virtual-size": 8388608' in tool(QEMU_IMG, "info", "--output=json", str(image))
    shadow = bytearray(8 << 20)
    with Qcow2Image(str(image)) as img:
        random_writes(img, shadow, 60, cluster_size)
        assert img.read(0, img.size) == shadow
    same_as_raw(image, bytes(shadow), tmp_path)


def test_refcount_table_grows(tmp_path):
    image = tmp_path / "g.qcow2"
    qcow2.create(str(image), 32 << 20, cluster_size=512)
    shadow = bytearray(32 << 20)
    with Qcow2Image(str(image)) as img:
        before = img.reftable_clusters
        random_writes(img, shadow, 40, 3, span=600_000)
        assert img.reftable_clusters > before
    same_as_raw(image, bytes(shadow), tmp_path)


@pytest.mark.parametrize("bits", [1, 4, 8, 32, 64])
def test_refcount_widths(tmp_path, bits):
    image = tmp_path / "r.qcow2"
    tool(QEMU_IMG, "create", "-f", "qcow2", "-o", f"cluster_size=4096,refcount_bits={bits}",
         str(image), "4M")
    shadow = bytearray(4 << 20)
    with Qcow2Image(str(image)) as img:
        random_writes(img, shadow, 30, bits)
    same_as_raw(image, bytes(shadow), tmp_path)


def test_v2_image_writes(tmp_path):
    image = tmp_path / "v2.qcow2"
    tool(QEMU_IMG, "create", "-f", "qcow2", "-o", "compat=0.10", str(image), "4M")
    shadow = bytearray(4 << 20)
    with Qcow2Image(str(image)) as img:
        random_writes(img, shadow, 30, 2)
    same_as_raw(image, bytes(shadow), tmp_path)


def test_readonly_and_bounds(tmp_path):
    image = tmp_path / "b.qcow2"
    qcow2.create(str(image), 1 << 20)
    with Qcow2Image(str(image), readonly=True) as img:
        with pytest.raises(ValueError, match="read-only"):
            img.write(0, b"x")
        with pytest.raises(ValueError, match="beyond its size"):
            img.read((1 << 20) - 1, 2)
    with Qcow2Image(str(image)) as img, pytest.raises(OSError, match="in use"):
        Qcow2Image(str(image))


# -- backing files ----------------------------------------------------------------

def test_raw_backing_relative_and_shorter(tmp_path):
    base = pattern(1 << 20, 11)
    (tmp_path / "base.raw").write_bytes(base)
    image = tmp_path / "ov.qcow2"
    tool(QEMU_IMG, "create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "ov.qcow2", "2M",
         cwd=tmp_path)
    shadow = bytearray(base + bytes(1 << 20))  # past the shorter backing: zeros
    assert read_all(image) == shadow
    with Qcow2Image(str(image)) as img:
        assert img.backing_name == "base.raw"
        random_writes(img, shadow, 20, 12, span=30_000)  # partial clusters: copy-on-write
    assert (tmp_path / "base.raw").read_bytes() == base
    same_as_raw(image, bytes(shadow), tmp_path)


def test_qcow2_backing_chain(tmp_path):
    data = pattern(2 << 20, 13)
    (tmp_path / "src.raw").write_bytes(data)
    tool(QEMU_IMG, "convert", "-O", "qcow2", "src.raw", "base.qcow2", cwd=tmp_path)
    tool(QEMU_IMG, "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "mid.qcow2",
         cwd=tmp_path)
    tool(QEMU_IO, "-c", "write -P 0x11 100k 200k", str(tmp_path / "mid.qcow2"))
    sub = tmp_path / "sub"
    sub.mkdir()
    tool(QEMU_IMG, "create", "-f", "qcow2", "-b", "../mid.qcow2", "-F", "qcow2",
         "top.qcow2", cwd=sub)
    tool(QEMU_IO, "-c", "write -P 0x22 1M 4k", str(sub / "top.qcow2"))
    shadow = bytearray(data)
    shadow[100 << 10:300 << 10] = b"\x11" * (200 << 10)
    shadow[1 << 20:(1 << 20) + 4096] = b"\x22" * 4096
    assert read_all(sub / "top.qcow2") == shadow
    # our own overlay on top, format probed from the magic
    qcow2.create(str(sub / "mine.qcow2"), backing="top.qcow2")
    with Qcow2Image(str(sub / "mine.qcow2")) as img:
        assert img.backing_format == "qcow2"
        random_writes(img, shadow, 10, 14, span=70_000)
    info = tool(QEMU_IMG, "info", str(sub / "mine.qcow2"))
    assert "backing file: top.qcow2" in info
    same_as_raw(sub / "mine.qcow2", bytes(shadow), tmp_path)


# -- crash safety ----------------------------------------------------------------------

CHILD = """
import random, sys
from emu.host.qcow2 import Qcow2Image
img = Qcow2Image(sys.argv[1])
rnd = random.Random(int(sys.argv[2]))
print("ready", flush=True)
while True:
    op = rnd.random()
    if op < 0.03:
        img.create_snapshot(f"s{rnd.random()}", vmstate=rnd.randbytes(rnd.randrange(1, 9000)))
    elif op < 0.05 and img.snapshots:
        img.delete_snapshot(rnd.choice(img.snapshots).name)
    elif op < 0.06 and img.snapshots:
        img.apply_snapshot(rnd.choice(img.snapshots).name)
    else:
        n = rnd.randrange(1, 3000)
        img.write(rnd.randrange(0, img.size - n), rnd.randbytes(n))
"""


@pytest.mark.timeout(120)
def test_sigkill_at_random_points_leaves_consistent_image(tmp_path):
    (tmp_path / "base.raw").write_bytes(pattern(1 << 20, 15))
    image = tmp_path / "k.qcow2"
    qcow2.create(str(image), 2 << 20, cluster_size=512, backing="base.raw",
                 backing_fmt="raw")
    rnd = random.Random(16)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for kill in range(30):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(image), str(kill)],
                                 stdout=subprocess.PIPE, env=env)
        try:
            assert child.stdout is not None and child.stdout.readline() == b"ready\n"
            time.sleep(rnd.uniform(0, 0.3))
            assert child.poll() is None, "the writer died on its own"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
            child.stdout.close()  # type: ignore[union-attr]
        check(image, leaks_ok=True)
    read_all(image)


# -- snapshots ----------------------------------------------------------------------

def test_qemu_img_snapshots_open_list_and_apply(tmp_path):
    image = tmp_path / "s.qcow2"
    tool(QEMU_IMG, "create", "-f", "qcow2", "-o", "cluster_size=4096", str(image), "1M")
    tool(QEMU_IO, "-c", "write -P 0x61 0 300k", str(image))
    tool(QEMU_IMG, "snapshot", "-c", "first", str(image))
    tool(QEMU_IO, "-c", "write -P 0x62 100k 300k", str(image))
    with Qcow2Image(str(image)) as img:
        (sn,) = img.snapshots
        assert (sn.id, sn.name, sn.vm_state_size) == ("1", "first", 0)
        assert sn.date_sec > 0 and img.read_vmstate("first") == b""
        img.write(0, b"z" * 5000)  # into clusters shared with the snapshot
        img.apply_snapshot("first")
        assert img.read(0, 1 << 20) == b"a" * (300 << 10) + bytes(724 << 10)
    check(image)
    with Qcow2Image(str(image)) as img:
        img.delete_snapshot("first")
        assert img.snapshots == []
    check(image)
    assert "first" not in tool(QEMU_IMG, "snapshot", "-l", str(image))


@pytest.mark.parametrize("compat", ["1.1", "0.10"])
def test_our_snapshots_in_qemu_img(tmp_path, compat):
    image = tmp_path / "o.qcow2"
    tool(QEMU_IMG, "create", "-f", "qcow2", "-o", f"cluster_size=4096,compat={compat}",
         str(image), "1M")
    state = random.Random(17).randbytes(100_000)
    with Qcow2Image(str(image)) as img:
        img.write(0, b"\x01" * 200_000)
        sn = img.create_snapshot("saved", vmstate=state, vm_clock_ns=5 * 10**9)
        img.write(100_000, b"\x02" * 200_000)
        assert img.read_vmstate("saved") == state
    check(image)
    listing = tool(QEMU_IMG, "snapshot", "-l", str(image))
    assert "saved" in listing and "00:00:05.000" in listing
    assert sn.vm_state_size == len(state)
    with Qcow2Image(str(image), readonly=True) as img:
        assert [s.name for s in img.snapshots] == ["saved"]
        assert img.read_vmstate("saved") == state  # survives reopening
    tool(QEMU_IMG, "snapshot", "-a", "saved", str(image))
    check(image)
    assert read_all(image) == b"\x01" * 200_000 + bytes((1 << 20) - 200_000)
    with Qcow2Image(str(image)) as img:
        assert img.read_vmstate("saved") == state
        img.delete_snapshot("saved")
    check(image)
    assert "saved" not in tool(QEMU_IMG, "snapshot", "-l", str(image))


def test_reopen_reads_what_another_process_wrote(tmp_path):
    # A migration's destination on shared storage: it opened the image without the lock
    # and cached its metadata; the source wrote, snapshotted and rebased it meanwhile.
    (tmp_path / "one.raw").write_bytes(b"1" * (1 << 20))
    (tmp_path / "two.raw").write_bytes(b"2" * (1 << 20))
    image = tmp_path / "r.qcow2"
    tool(QEMU_IMG, "create", "-f", "qcow2", "-o", "cluster_size=4096", "-b", "one.raw",
         "-F", "raw", "r.qcow2", "1M", cwd=tmp_path)
    tool(QEMU_IO, "-c", "write -P 0x61 0 8k", str(image))
    with Qcow2Image(str(image), lock=False) as mine:
        assert mine.read(0, 12 << 10) == b"a" * (8 << 10) + b"1" * (4 << 10)
        tool(QEMU_IO, "-c", "write -P 0x62 8k 8k", str(image))
        tool(QEMU_IMG, "snapshot", "-c", "theirs", str(image))
        tool(QEMU_IO, "-c", "write -P 0x63 0 4k", str(image))
        tool(QEMU_IMG, "rebase", "-u", "-b", "two.raw", "-F", "raw", "r.qcow2", cwd=tmp_path)
        mine.reopen()
        assert [sn.name for sn in mine.snapshots] == ["theirs"]
        assert mine.read(0, 20 << 10) == b"c" * (4 << 10) + b"a" * (4 << 10) + \
            b"b" * (8 << 10) + b"2" * (4 << 10)
        mine.write(100 << 10, b"d" * 10000)  # allocates with the refcounts re-read
    check(image)
    tool(QEMU_IMG, "snapshot", "-a", "theirs", str(image))
    assert read_all(image)[:20 << 10] == b"a" * (8 << 10) + b"b" * (8 << 10) + b"2" * (4 << 10)


# -- hostile images -------------------------------------------------------------------

def patched(tmp_path: Path, at: int, fmt: str, *values: int) -> Path:
    image = tmp_path / "bad.qcow2"
    qcow2.create(str(image), 1 << 20)
    with open(image, "r+b") as f:
        f.seek(at)
        f.write(struct.pack(fmt, *values))
    return image


@pytest.mark.parametrize("at,fmt,value,message", [
    (0, ">I", 0x12345678, "bad magic"),
    (4, ">I", 4, "version 4"),
    (20, ">I", 30, "cluster_bits 30"),
    (36, ">I", 0x10000000, "L1 table of .* exceeds"),
    (40, ">Q", 1 << 40, "L1 table at .* past the end"),
    (48, ">Q", 1 << 40, "refcount table at .* past the end"),
    (60, ">I", 1 << 20, "nb_snapshots"),
    (72, ">Q", 1 << 40, "incompatible feature bit 40"),
    (72, ">Q", 1, "'dirty'"),
    (72, ">Q", 2, "'corrupt'"),
    (72, ">Q", 4, "external data file"),
    (16, ">I", 2000, "backing file name too long"),
    (96, ">I", 9, "refcount_order 9"),
    (32, ">I", 1, "encrypted"),
])
def test_hostile_headers(tmp_path, at, fmt, value, message):
    image = patched(tmp_path, at, fmt, value)
    if at == 16:  # a backing name needs an offset as well
        with open(image, "r+b") as f:
            f.seek(8)
            f.write(struct.pack(">Q", 200))
    with pytest.raises(Qcow2Error, match=message) as info:
        Qcow2Image(str(image), readonly=True)
    text = str(info.value)
    assert "\n" not in text and str(image) in text


def test_backing_loop_is_refused(tmp_path):
    qcow2.create(str(tmp_path / "a.qcow2"), 1 << 20)
    qcow2.create(str(tmp_path / "b.qcow2"), 1 << 20, backing="a.qcow2")
    shutil.copy(tmp_path / "b.qcow2", tmp_path / "c.qcow2")
    # make a's backing b: patch the name into a's header cluster (same layout)
    with open(tmp_path / "b.qcow2", "rb") as f:
        header = f.read(512)
    loop = header.replace(b"a.qcow2", b"b.qcow2")
    with open(tmp_path / "a.qcow2", "r+b") as f:
        f.write(loop)
    with pytest.raises(Qcow2Error, match="loops back"):
        Qcow2Image(str(tmp_path / "c.qcow2"), readonly=True)


def test_deep_chain_is_refused(tmp_path):
    qcow2.create(str(tmp_path / "0.qcow2"), 1 << 20)
    for i in range(1, 19):
        qcow2.create(str(tmp_path / f"{i}.qcow2"), 1 << 20, backing=f"{i - 1}.qcow2",
                     backing_fmt="qcow2")
    with pytest.raises(Qcow2Error, match="deeper than 16"):
        Qcow2Image(str(tmp_path / "18.qcow2"), readonly=True)


def test_hostile_tables_fail_on_access(tmp_path):
    data = pattern(1 << 20, 19)
    (tmp_path / "src.raw").write_bytes(data)
    image = tmp_path / "c.qcow2"
    tool(QEMU_IMG, "convert", "-c", "-O", "qcow2", str(tmp_path / "src.raw"), str(image))
    with Qcow2Image(str(image), readonly=True) as img:
        l2_offset = img.l1[0] & qcow2.OFFSET_MASK
        index = next(i for i in range(16) if img._l2_entry(img.l1, i) & qcow2.COMPRESSED)
        data_at, _ = img._compressed_span(img._l2_entry(img.l1, index))
        l1_offset = img.l1_offset
    with open(image, "r+b") as f:  # garbage instead of deflate data
        f.seek(data_at)
        f.write(b"\xff" * 64)
    with Qcow2Image(str(image), readonly=True) as img, \
            pytest.raises(Qcow2Error, match="compressed cluster at"):
        img.read(index << 16, 512)
    with open(image, "r+b") as f:  # L1 entry pointing past the end of the file
        f.seek(l1_offset)
        f.write(struct.pack(">Q", (l2_offset + (1 << 40)) | (1 << 63)))
    with Qcow2Image(str(image), readonly=True) as img, \
            pytest.raises(Qcow2Error, match="L2 table offset .* past the end"):
        img.read(0, 512)


class Crash(Exception):
    """Stands for kill -9 between two writes to the image."""


def crash_sequence(img: Qcow2Image) -> Iterator[None]:
    """Each phase ends at a recorded write count: refcount table growth, snapshot
    create with VM state (L1 growth, commit), copy-on-write of shared tables, apply,
    delete."""
    rnd = random.Random(21)
    for _ in range(8):
        img.write(rnd.randrange(0, 3 << 20), rnd.randbytes(40_000))
    yield
    img.create_snapshot("one", vmstate=rnd.randbytes(3000))
    yield
    img.write(1000, rnd.randbytes(5000))
    yield
    img.apply_snapshot("one")
    yield
    img.delete_snapshot("one")
    yield


@pytest.mark.timeout(120)
def test_crash_between_any_two_writes(tmp_path, monkeypatch):
    template = tmp_path / "t.qcow2"
    tool(QEMU_IMG, "create", "-f", "qcow2", "-o", "cluster_size=512,refcount_bits=64",
         str(template), "4M")
    tool(QEMU_IO, "-c", "write -P 7 0 1950k", str(template))  # near the table's reach
    real_write = qcow2._pwrite_all
    count = [0, -1]  # writes so far, the write that "kills"

    def counting_write(fd, offset, data):
        if count[0] == count[1]:
            raise Crash
        count[0] += 1
        real_write(fd, offset, data)

    monkeypatch.setattr(qcow2, "_pwrite_all", counting_write)
    image = tmp_path / "x.qcow2"
    shutil.copy(template, image)
    bounds = [0]
    with Qcow2Image(str(image)) as img:
        before = img.reftable_clusters
        for _ in crash_sequence(img):
            bounds.append(count[0])
        assert img.reftable_clusters > before
    rnd = random.Random(22)
    points = [p for a, b in zip(bounds, bounds[1:], strict=False)
              for p in rnd.sample(range(a, b), min(25, b - a))]
    for point in points:
        shutil.copy(template, image)
        count[:] = [0, point]
        img = Qcow2Image(str(image))
        with pytest.raises(Crash):
            for _ in crash_sequence(img):
                pass
        os.close(img._fd)  # dies: no flush, no further writes
        img._fd = None
        check(image, leaks_ok=True)
