"""Block backends: raw images, locks, the snapshot overlay, and the -drive spellings."""

from __future__ import annotations

import pytest

from emu.host.block import (
    DriveSpec,
    ImageLockedError,
    assign_indexes,
    drive_for_option,
    open_image,
    parse_drive,
)


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
                             snapshot=False, id="hd1")
    assert (spec.channel, spec.unit) == (0, 1)
    cd = parse_drive("file=x.iso,media=cdrom")
    assert cd.readonly and cd.media == "cdrom" and cd.index is None
    assert parse_drive("file=d.img,snapshot").snapshot


@pytest.mark.parametrize("text, fault", [
    ("file=a.img,format=qcow2", "format=qcow2"),
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
