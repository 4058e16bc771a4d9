"""Block backends: raw and qcow2 images behind one interface, format probing, locks and
the migration hand-over, the -snapshot overlay, and the -drive spellings."""

from __future__ import annotations

import errno
import shutil
import subprocess
import tempfile

import pytest

from emu.host import qcow2
from emu.host.block import (
    CHUNK,
    DriveSpec,
    ImageLockedError,
    assign_indexes,
    drive_for_option,
    open_image,
    parse_drive,
)

QEMU_IMG = shutil.which("qemu-img")


@pytest.fixture
def needs_qemu_img() -> None:
    if QEMU_IMG is None:
        pytest.fail("qemu-img is missing: 'make test' installs qemu-utils")


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(range(256)) * 16)  # 4 KiB, 8 sectors
    return path


def test_raw_read_write_flush_close(image):
    be = open_image(str(image), readonly=False, snapshot=False)
    assert be.size == 4096
    assert be.read(0x100, 4) == b"\x00\x01\x02\x03"
    be.write(0x201, b"hello")
    assert be.read(0x200, 7) == b"\x00hello\x06"
    be.flush()
    assert image.read_bytes()[0x201:0x206] == b"hello"
    be.write(4090, b"end!!!")
    be.close()
    assert image.read_bytes()[4090:] == b"end!!!"
    be.close()  # harmless
    with pytest.raises(ValueError, match="closed"):
        be.read(0, 1)


def test_bounds_are_checked(image):
    be = open_image(str(image), readonly=False, snapshot=False)
    for off, n in ((4095, 2), (-1, 1), (4096, 1)):
        with pytest.raises(ValueError, match="beyond"):
            be.read(off, n)
        with pytest.raises(ValueError, match="beyond"):
            be.write(off, bytes(n))
    assert be.read(4096, 0) == b""
    be.close()


def test_readonly_refuses_writes(image):
    be = open_image(str(image), readonly=True, snapshot=False)
    with pytest.raises(ValueError, match="read-only"):
        be.write(0, b"x")
    be.close()
    assert image.read_bytes()[0] == 0


def test_second_writer_is_refused(image):
    first = open_image(str(image), readonly=False, snapshot=False)
    with pytest.raises(ImageLockedError, match=f"image {image} is in use by another process"):
        open_image(str(image), readonly=False, snapshot=False)
    with pytest.raises(OSError, match="in use"):
        open_image(str(image), readonly=True, snapshot=False)
    first.close()
    open_image(str(image), readonly=False, snapshot=False).close()


def test_readers_share_and_keep_writers_out(image):
    a = open_image(str(image), readonly=True, snapshot=False)
    b = open_image(str(image), readonly=False, snapshot=True)
    with pytest.raises(ImageLockedError):
        open_image(str(image), readonly=False, snapshot=False)
    a.close()
    b.close()


def test_snapshot_overlay_vanishes(image):
    be = open_image(str(image), readonly=False, snapshot=True)
    be.write(510, b"ABCD")  # straddles two sectors, partial in both
    be.write(1024, b"Z" * 512)
    assert be.read(508, 8) == b"\xfc\xfdABCD\x02\x03"
    assert be.read(1024, 513) == b"Z" * 512 + b"\x00"
    be.flush()
    be.close()
    assert image.read_bytes() == bytes(range(256)) * 16


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.img"
    with pytest.raises(OSError, match=f"cannot open image {path}"):
        open_image(str(path), readonly=True, snapshot=False)
    with pytest.raises(OSError, match="directory"):
        open_image(str(tmp_path), readonly=True, snapshot=False)


def test_parse_drive_full_spelling():
    spec = parse_drive("file=a,,b.img,format=raw,if=ide,index=1,media=disk,"
                       "readonly=on,snapshot=off,id=hd1")
    assert spec == DriveSpec(file="a,b.img", index=1, media="disk", readonly=True,
                             snapshot=False, id="hd1", format="raw")
    assert (spec.channel, spec.unit) == (0, 1)
    cd = parse_drive("file=x.iso,media=cdrom")
    assert cd.readonly and cd.media == "cdrom" and cd.index is None
    assert parse_drive("file=d.img,snapshot").snapshot


@pytest.mark.parametrize("text, fault", [
    ("file=a.img,format=vmdk", "-drive format=vmdk: only raw and qcow2 are supported"),
    ("file=a.img,if=virtio", "if=virtio"),
    ("file=a.img,index=4", "index=4"),
    ("file=a.img,index=x", "index=x"),
    ("file=a.img,media=floppy", "media=floppy"),
    ("file=a.img,cache=none", "unknown option 'cache'"),
    ("file=a.img,readonly=maybe", "readonly=maybe"),
    ("format=raw,if=ide", "file= is missing"),
    ("file=a.img,file=b.img", "given twice"),
    ("file=a.iso,media=cdrom,readonly=off", "cdrom is read-only"),
])
def test_parse_drive_errors(text, fault):
    with pytest.raises(ValueError, match=fault) as info:
        parse_drive(text)
    assert "\n" not in str(info.value)


def test_short_options_map_like_qemu():
    assert [drive_for_option(o, "f").index for o in ("-hda", "-hdb", "-hdc", "-hdd")] == \
        [0, 1, 2, 3]
    cd = drive_for_option("-cdrom", "x.iso")
    assert (cd.index, cd.media, cd.readonly) == (2, "cdrom", True)
    with pytest.raises(ValueError, match="-hde"):
        drive_for_option("-hde", "f")


def test_assign_indexes():
    specs = assign_indexes([parse_drive("file=a"), drive_for_option("hda", "b"),
                            parse_drive("file=c")])
    assert [s.index for s in specs] == [1, 0, 2]
    with pytest.raises(ValueError, match="index=2"):
        assign_indexes([drive_for_option("cdrom", "x"), parse_drive("file=y,index=2")])


def test_drivespec_open_global_snapshot(image):
    be = DriveSpec(file=str(image), index=0).open(snapshot=True)
    be.write(0, b"\xff")
    be.close()
    assert image.read_bytes()[0] == 0


# -- formats ---------------------------------------------------------------------

MIB = 1 << 20


def qemu_img(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=60)


def patterned(size: int) -> bytes:
    return bytes((i * 7 + i // 4096) & 0xFF for i in range(size))


def make(tmp_path, fmt: str, data: bytes):
    """An image holding ``data`` in ``fmt``: raw bytes, or qemu-img's conversion of them."""
    raw = tmp_path / "data.raw"
    raw.write_bytes(data)
    if fmt == "raw":
        return raw
    image = tmp_path / "data.qcow2"
    r = qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(image))
    assert r.returncode == 0, r.stderr
    return image


def as_raw(image) -> bytes:
    """The guest's bytes of ``image`` as qemu-img reads them."""
    out = image.parent / (image.name + ".out")
    r = qemu_img("convert", "-O", "raw", str(image), str(out))
    assert r.returncode == 0, r.stderr
    return out.read_bytes()


def test_parse_drive_formats():
    assert parse_drive("file=a.qcow2,format=qcow2").format == "qcow2"
    assert parse_drive("file=a.img,format=raw").format == "raw"
    assert parse_drive("file=a.img").format is None  # probed when opened
    assert drive_for_option("-hda", "a.qcow2").format is None
    assert drive_for_option("-cdrom", "a.iso").format is None


@pytest.mark.usefixtures("needs_qemu_img")
def test_probing_picks_qcow2_by_its_header(tmp_path):
    data = patterned(MIB)
    image = make(tmp_path, "qcow2", data)
    for spec in (DriveSpec(file=str(image)), drive_for_option("-hda", str(image)),
                 drive_for_option("-cdrom", str(image)),
                 parse_drive(f"file={image},format=qcow2")):
        be = spec.open()
        assert (be.format, be.size, be.notice) == ("qcow2", MIB, None)
        assert be.probed == (spec.format is None)
        assert be.read(0, MIB) == data
        be.close()


def test_probing_a_raw_image_is_noted(image):
    be = open_image(str(image))
    assert (be.format, be.probed, be.qcow2) == ("raw", True, None)
    assert str(image) in be.notice and "format=raw" in be.notice
    be.close()
    be = open_image(str(image), format="raw")
    assert (be.format, be.probed, be.notice) == ("raw", False, None)
    be.close()


def test_format_qcow2_on_a_raw_image_names_both(image):
    with pytest.raises(OSError, match=f"image {image}: format=qcow2 but ") as info:
        open_image(str(image), format="qcow2")
    assert "\n" not in str(info.value)


@pytest.mark.usefixtures("needs_qemu_img")
def test_a_raw_disk_holding_a_qcow2_header_stays_raw_with_format_raw(tmp_path):
    # The guest wrote a valid qcow2 image into its raw disk's first sectors: the disk is
    # still raw, its bytes are the guest's, whatever its first sector says.
    header = make(tmp_path, "qcow2", patterned(MIB)).read_bytes()[:64 << 10]
    disk = tmp_path / "guest.raw"
    disk.write_bytes(bytes(2 * MIB))
    be = open_image(str(disk), format="raw")
    be.write(0, header)  # allowed: the user said raw
    be.close()
    be = open_image(str(disk), format="raw")
    assert (be.format, be.size) == ("raw", 2 * MIB)
    assert be.read(0, len(header)) == header
    assert be.read(MIB, 4) == bytes(4)
    be.close()


def test_a_probed_raw_image_refuses_a_qcow2_header_in_sector_0(image):
    before = image.read_bytes()
    be = open_image(str(image))
    for offset, data in ((0, qcow2.MAGIC + bytes(508)), (1, b"FI\xfb")):
        if offset:
            be.write(0, b"Q")  # with byte 0 already 'Q' the rest completes the magic
        with pytest.raises(OSError, match="refusing to write a qcow2 header") as info:
            be.write(offset, data)
        assert info.value.errno == errno.EPERM
    be.write(0, b"QFI!")  # anything else in sector 0 is fine
    be.write(512, qcow2.MAGIC)  # and the magic elsewhere
    be.close()
    after = image.read_bytes()
    assert after[:4] == b"QFI!" and after[512:516] == qcow2.MAGIC
    assert after[516:] == before[516:]


@pytest.mark.usefixtures("needs_qemu_img")
@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_both_formats_behind_one_interface(tmp_path, fmt):
    data = patterned(2 * MIB)
    image = make(tmp_path, fmt, data)
    be = open_image(str(image), format=fmt)
    assert (be.format, be.size, be.chunks, be.path) == (fmt, 2 * MIB, 2 * MIB // CHUNK,
                                                         str(image))
    assert (be.readonly, be.snapshot, be.active, be.closed) == (False, False, True, False)
    assert (be.qcow2 is not None) == (fmt == "qcow2")
    assert be.read(12345, 100) == data[12345:12345 + 100]
    be.track_writes(True)
    be.write(CHUNK - 2, b"ABCD")  # straddles chunks 0 and 1
    be.write(5 * CHUNK + 7, b"xyz")
    assert be.take_written() == [0, 1, 5]
    assert be.take_written() == []
    be.write(2 * MIB - 3, b"end")
    assert be.take_written() == [2 * MIB // CHUNK - 1]
    be.track_writes(False)
    with pytest.raises(ValueError, match="beyond"):
        be.write(2 * MIB - 2, b"xyz")
    with pytest.raises(ImageLockedError):
        open_image(str(image), format=fmt)
    be.flush()
    be.close()
    assert be.closed
    with pytest.raises(ValueError, match="closed"):
        be.read(0, 1)
    want = bytearray(data)
    want[CHUNK - 2:CHUNK + 2] = b"ABCD"
    want[5 * CHUNK + 7:5 * CHUNK + 10] = b"xyz"
    want[-3:] = b"end"
    assert as_raw(image) == want
    if fmt == "qcow2":
        r = qemu_img("check", str(image))
        assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.usefixtures("needs_qemu_img")
@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_activate_rereads_what_the_other_process_wrote(tmp_path, fmt):
    # A migration over shared storage: the destination opens the image inactive and
    # reads it (caching qcow2 metadata), the source goes on writing -- allocating
    # clusters, L2 tables and refcounts -- then hands over; the destination then sees
    # the source's writes and its own land consistently.
    data = patterned(MIB) + bytes(3 * MIB)  # qemu-img leaves the zeros unallocated
    image = make(tmp_path, fmt, data)
    source = open_image(str(image), format=fmt)
    dest = open_image(str(image), format=fmt, lock=False)
    assert not dest.active
    assert dest.read(3 * MIB, 16) == data[3 * MIB:3 * MIB + 16]
    with pytest.raises(ImageLockedError):
        dest.activate()  # the source still runs
    source.write(3 * MIB, b"from the source")
    source.write(MIB + 100, b"S" * 70000)
    source.inactivate()
    assert not source.active
    dest.activate()
    assert dest.active and dest.lock_mode
    assert dest.read(3 * MIB, 15) == b"from the source"
    assert dest.read(MIB + 100, 70000) == b"S" * 70000
    dest.write(2 * MIB, b"from the destination")  # allocates past the source's clusters
    source.close()
    dest.close()
    got = as_raw(image)
    assert got[3 * MIB:3 * MIB + 15] == b"from the source"
    assert got[MIB + 100:MIB + 70100] == b"S" * 70000
    assert got[2 * MIB:2 * MIB + 20] == b"from the destination"
    if fmt == "qcow2":
        r = qemu_img("check", str(image))
        assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """tempfile's directory, watched for what the snapshot overlay leaves behind."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


@pytest.mark.usefixtures("needs_qemu_img")
@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_snapshot_overlay_leaves_the_image_unchanged(tmp_path, private_tmp, fmt):
    data = patterned(MIB)
    image = make(tmp_path, fmt, data)
    copy = tmp_path / ("copy." + fmt)
    shutil.copyfile(image, copy)
    before = image.read_bytes()
    be = open_image(str(image), snapshot=True)
    assert (be.format, be.snapshot, be.readonly, be.size) == (fmt, True, False, MIB)
    assert list(private_tmp.iterdir()) == []  # the overlay is unlinked once open
    assert be.qcow2 is not None and be.qcow2.backing_format == fmt
    be.track_writes(True)
    be.write(510, b"ABCD")
    be.write(200000, b"Z" * 70000)
    assert be.take_written() == [0, 3, 4]
    assert be.read(508, 8) == data[508:510] + b"ABCD" + data[514:516]
    assert be.read(200000, 70001) == b"Z" * 70000 + data[270000:270001]
    with pytest.raises(ImageLockedError):
        open_image(str(image))  # the image is in use, read-only
    be.inactivate()
    be.activate()
    assert be.read(508, 8) == data[508:510] + b"ABCD" + data[514:516]
    be.flush()
    be.close()
    assert list(private_tmp.iterdir()) == []
    assert image.read_bytes() == before
    r = qemu_img("compare", str(copy), str(image))
    assert r.returncode == 0, r.stdout + r.stderr


def test_snapshot_over_an_odd_sized_raw_image(tmp_path, private_tmp):
    image = tmp_path / "odd.img"
    image.write_bytes(b"\xaa" * 1000)
    be = open_image(str(image), format="raw", snapshot=True)
    assert be.size == 1000
    be.write(996, b"1234")
    assert be.read(990, 10) == b"\xaa" * 6 + b"1234"
    with pytest.raises(ValueError, match="beyond"):
        be.read(996, 5)
    be.close()
    assert image.read_bytes() == b"\xaa" * 1000
    assert list(private_tmp.iterdir()) == []


def test_snapshot_of_an_image_in_use_is_refused_and_leaves_nothing(image, private_tmp):
    writer = open_image(str(image), format="raw")
    with pytest.raises(ImageLockedError, match=f"image {image} is in use"):
        open_image(str(image), format="raw", snapshot=True)
    assert list(private_tmp.iterdir()) == []
    writer.close()


def test_snapshot_opened_inactive_waits_for_the_writer(image, private_tmp):
    # a migration's destination with -snapshot: it holds no lock until activate()
    dest = open_image(str(image), format="raw", snapshot=True, lock=False)
    source = open_image(str(image), format="raw")  # not refused: the source still runs
    source.write(0, b"HELLO")
    source.inactivate()
    dest.activate()
    assert dest.read(0, 6) == b"HELLO\x05"
    dest.write(0, b"x")
    assert dest.read(0, 2) == b"xE"
    with pytest.raises(ImageLockedError):
        source.activate()  # the destination reads it now
    dest.close()
    source.close()
    assert image.read_bytes()[:6] == b"HELLO\x05"
