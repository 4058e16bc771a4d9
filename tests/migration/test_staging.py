"""Block migration's staging (emu/migration/staging.py): what a stream carries for a drive
reaches its image only in commit(), after the end checksum matched; a failed stream's
chunks vanish with close(). DESIGN.md, "Trust": nothing the stream carries is written to
a host file before the stream is proven whole."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from emu.host.block import open_image
from emu.migration.staging import DiskStaging
from emu.migration.stream import DISK_CHUNK

SIZE = 4 * DISK_CHUNK + 1536  # a short last chunk too


class Spy:
    """A backend that records every call reaching the image, passing them on."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.size = backend.size
        self.calls: list[tuple] = []

    def write(self, offset: int, data: bytes) -> None:
        self.calls.append(("write", offset, len(data)))
        self.backend.write(offset, data)

    def flush(self) -> None:
        self.calls.append(("flush",))
        self.backend.flush()


@pytest.fixture
def image(tmp_path):
    """(path, original bytes, a spied writable backend on it) with staging files kept in
    the test's own temporary directory."""
    path = tmp_path / "disk.img"
    original = os.urandom(SIZE)
    path.write_bytes(original)
    backend = open_image(str(path))
    yield path, original, Spy(backend)
    backend.close()


@pytest.fixture(autouse=True)
def own_tmpdir(tmp_path, monkeypatch):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def staging_files() -> list[tuple[str, int]]:
    """(target, size) of each staging file this process holds open: the files it has
    open in the test's temporary directory (O_TMPFILE or unlinked, they have no name
    to list)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(tempfile.tempdir + "/"):
                found.append((target, os.stat(f"/proc/self/fd/{fd}").st_size))
        except OSError:
            continue
    return found


def chunk(byte: int, n: int = DISK_CHUNK) -> bytes:
    return bytes([byte]) * n


def test_nothing_reaches_the_image_before_commit(image):
    path, original, spy = image
    stage = DiskStaging(spy)
    stage.write(0, chunk(1))
    stage.write(2 * DISK_CHUNK, chunk(2))
    stage.zero(DISK_CHUNK, DISK_CHUNK)
    stage.write(4 * DISK_CHUNK, chunk(3, 1536))
    assert spy.calls == []
    assert path.read_bytes() == original
    stage.commit()
    want = bytearray(original)
    want[0:DISK_CHUNK] = chunk(1)
    want[DISK_CHUNK:2 * DISK_CHUNK] = bytes(DISK_CHUNK)
    want[2 * DISK_CHUNK:3 * DISK_CHUNK] = chunk(2)
    want[4 * DISK_CHUNK:] = chunk(3, 1536)
    assert path.read_bytes() == bytes(want)  # the untouched chunk 3 is the original's
    assert spy.calls[-1] == ("flush",)  # made durable once written


def test_the_staged_chunks_live_in_an_unlinked_file(image, own_tmpdir):
    """A killed destination leaves nothing behind: no staging file has a name."""
    _, _, spy = image
    stage = DiskStaging(spy)
    stage.write(0, chunk(1))
    assert os.listdir(own_tmpdir) == []
    held = staging_files()
    assert len(held) == 1 and held[0][0].endswith(" (deleted)")
    stage.close()
    assert staging_files() == []


def test_later_chunks_replace_earlier_ones(image):
    path, original, spy = image
    stage = DiskStaging(spy)
    stage.write(0, chunk(1))
    stage.write(0, chunk(2))  # data over data
    stage.write(DISK_CHUNK, chunk(3))
    stage.zero(DISK_CHUNK, DISK_CHUNK)  # zero over data
    stage.zero(2 * DISK_CHUNK, DISK_CHUNK)
    stage.write(2 * DISK_CHUNK, chunk(4))  # data over zero
    assert path.read_bytes() == original
    stage.commit()
    got = path.read_bytes()
    assert got[:DISK_CHUNK] == chunk(2)
    assert got[DISK_CHUNK:2 * DISK_CHUNK] == bytes(DISK_CHUNK)
    assert got[2 * DISK_CHUNK:3 * DISK_CHUNK] == chunk(4)
    assert got[3 * DISK_CHUNK:] == original[3 * DISK_CHUNK:]
    # each chunk reached the image once, in order, whatever the stream repeated
    assert [c for c in spy.calls if c[0] == "write"] == [
        ("write", 0, DISK_CHUNK), ("write", DISK_CHUNK, DISK_CHUNK),
        ("write", 2 * DISK_CHUNK, DISK_CHUNK)]


def test_zero_chunks_take_no_staging_space_and_zero_the_image(image):
    path, original, spy = image
    stage = DiskStaging(spy)
    for i in range(4):
        stage.zero(i * DISK_CHUNK, DISK_CHUNK)
    stage.zero(4 * DISK_CHUNK, 1536)
    assert spy.calls == [] and path.read_bytes() == original
    assert [size for _, size in staging_files()] == [0]
    stage.commit()
    assert path.read_bytes() == bytes(SIZE)


def test_close_discards_what_was_staged(image):
    path, original, spy = image
    stage = DiskStaging(spy)
    for i in range(4):
        stage.write(i * DISK_CHUNK, chunk(0xEE))
    stage.zero(4 * DISK_CHUNK, 1536)
    stage.close()
    assert spy.calls == []
    assert path.read_bytes() == original
    assert staging_files() == []
    stage.close()  # twice is harmless (a failure path may close again)
    assert path.read_bytes() == original


def test_an_empty_staging_commits_nothing_but_the_flush(image):
    path, original, spy = image
    DiskStaging(spy).commit()
    assert spy.calls == [("flush",)]
    assert path.read_bytes() == original


def test_a_chunk_sent_again_and_again_does_not_grow_the_staging_file(image):
    """A guest that rewrites one sector all through a long block migration has that
    chunk sent in every pass (and a hostile peer can repeat one chunk for as long as it
    likes): the staging file, in $TMPDIR (a tmpfs, RAM, on many hosts), must stay
    within the image's size, as the destination's RAM stays within ram_size however
    often a page is sent."""
    _, _, spy = image
    stage = DiskStaging(spy)
    try:
        for n in range(64):
            stage.write(0, chunk(n % 255 + 1))
        (_, size), = staging_files()
        assert size <= SIZE, f"{size} bytes staged for an image of {SIZE}"
    finally:
        stage.close()


def test_staging_a_real_image_end_to_end(tmp_path):
    """Without the spy: a raw image of a size that is no multiple of the chunk."""
    path = tmp_path / "d.img"
    path.write_bytes(bytes(100_000))
    backend = open_image(str(path))
    try:
        stage = DiskStaging(backend)
        stage.write(DISK_CHUNK, chunk(7, 100_000 - DISK_CHUNK))
        assert Path(path).read_bytes() == bytes(100_000)
        stage.commit()
    finally:
        backend.close()
    assert path.read_bytes() == bytes(DISK_CHUNK) + chunk(7, 100_000 - DISK_CHUNK)
