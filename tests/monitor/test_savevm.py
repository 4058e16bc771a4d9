"""savevm, loadvm and delvm against the snapshot directory: a save is atomic and durable,
one saver per tag at a time, the previous snapshot survives any failure, and every
refusal is one line."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from emu.monitor.commands import CommandError, delete_snapshot, load_snapshot, save_snapshot

OLD, NEW = b"old snapshot " * 1000, b"new snapshot " * 1000


class Saver:
    """Stands in for a machine: its snapshot is ``data``, and ``midway()`` runs between
    the two halves (another saver, a failure...)."""

    def __init__(self, data: bytes, midway: Callable[[], None] = lambda: None) -> None:
        self.data, self.midway = data, midway

    def check_snapshot_allowed(self) -> None:
        pass

    def drive_backends(self) -> dict:
        return {}  # no disks: the snapshot directory holds the snapshot

    def save_snapshot(self, out) -> int:
        half = len(self.data) // 2
        out.write(self.data[:half])
        out.flush()
        self.midway()
        out.write(self.data[half:])
        return len(self.data)


@pytest.fixture
def snaps(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "snaps"
    monkeypatch.setenv("PYEMU_SNAPSHOT_DIR", str(path))
    return path


def refusal(action: Callable[[], object]) -> str:
    with pytest.raises(CommandError) as e:
        action()
    text = str(e.value)
    assert text.startswith("Error: ") and "\n" not in text
    return text


def test_a_save_is_flushed_before_its_rename_and_the_rename_after(snaps, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace

    def record_fsync(fd: int) -> None:
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        fsync(fd)

    def record_replace(src, dst) -> None:
        events.append("rename")
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    save_snapshot(Saver(NEW), "t")
    assert events == ["fsync file", "rename", "fsync dir"]
    assert (snaps / "t.pyemu").read_bytes() == NEW


def test_a_second_saver_of_a_tag_is_refused_while_the_first_finishes(snaps):
    """The second saver holds its own open file description of the lock, as another
    process would: flock refuses it although it is the same process."""
    save_snapshot(Saver(OLD), "t")
    seen = {}

    def meanwhile() -> None:
        seen["save"] = refusal(lambda: save_snapshot(Saver(b"intruder"), "t"))
        seen["delete"] = refusal(lambda: delete_snapshot(Saver(NEW), "t"))
        save_snapshot(Saver(b"other"), "u")  # another tag does not wait
        assert (snaps / "t.pyemu").read_bytes() == OLD  # still the previous one

    save_snapshot(Saver(NEW, meanwhile), "t")
    assert seen == {"save": "Error: snapshot 't' is being saved by another process",
                    "delete": "Error: snapshot 't' is being saved by another process"}
    assert (snaps / "t.pyemu").read_bytes() == NEW
    assert sorted(p.name for p in snaps.iterdir()) == ["t.pyemu", "u.pyemu"]
    delete_snapshot(Saver(NEW), "t")  # once the save is over, the tag is free again
    assert sorted(p.name for p in snaps.iterdir()) == ["u.pyemu"]


def test_a_lock_file_removed_under_a_saver_is_not_trusted(snaps, monkeypatch):
    """A saver may open the lock file just before its holder removes it and then get its
    lock: that file is no longer the lock, and a third saver must still be refused."""
    snaps.mkdir()
    flock = fcntl.flock
    raced = []

    def flock_after_the_holder_left(fd: int, op: int) -> None:
        if not raced:  # the first open's file is removed by its holder before our flock
            raced.append(fd)
            os.unlink(snaps / ".t.lock")
        flock(fd, op)

    def meanwhile() -> None:
        refusal(lambda: save_snapshot(Saver(b"third"), "t"))

    monkeypatch.setattr(fcntl, "flock", flock_after_the_holder_left)
    save_snapshot(Saver(NEW, meanwhile), "t")
    assert raced and (snaps / "t.pyemu").read_bytes() == NEW


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"),
                                     RuntimeError("a bug mid-write"), KeyboardInterrupt()])
def test_a_save_that_fails_midway_keeps_the_previous_snapshot(snaps, failure):
    save_snapshot(Saver(OLD), "t")

    def fail() -> None:
        raise failure

    if isinstance(failure, OSError):
        assert refusal(lambda: save_snapshot(Saver(NEW, fail), "t")) == \
            f"Error: snapshot 't' cannot be saved in {snaps}: No space left on device"
    else:
        with pytest.raises(type(failure)):
            save_snapshot(Saver(NEW, fail), "t")
    assert [p.name for p in snaps.iterdir()] == ["t.pyemu"]  # no temporary, no lock left
    assert (snaps / "t.pyemu").read_bytes() == OLD


def test_an_unusable_directory_is_one_line_naming_it(tmp_path, monkeypatch):
    """Tests run as root, whom permissions do not stop: a directory under a regular file
    cannot exist for anyone."""
    (tmp_path / "file").write_bytes(b"")
    where = tmp_path / "file" / "snaps"
    monkeypatch.setenv("PYEMU_SNAPSHOT_DIR", str(where))
    assert refusal(lambda: save_snapshot(Saver(NEW), "t")) == \
        f"Error: snapshot 't' cannot be saved in {where}: Not a directory"
    assert refusal(lambda: delete_snapshot(Saver(NEW), "t")) == \
        f"Error: snapshot 't' cannot be deleted from {where}: Not a directory"
    assert refusal(lambda: load_snapshot(Saver(NEW), "t")) == \
        f"Error: snapshot 't' cannot be read from {where}: Not a directory"


def test_a_missing_directory_is_created_by_save_only(snaps):
    assert refusal(lambda: delete_snapshot(Saver(NEW), "t")) == "Error: snapshot 't' not found"
    assert not snaps.exists()
    save_snapshot(Saver(NEW), "t")
    assert (snaps / "t.pyemu").read_bytes() == NEW


@pytest.mark.parametrize("tag", ["", ".", "..", "../x", "a/b", "/etc/passwd", ".hidden",
                                 "a\0b", "x" * 65, "a b", "a\n"])
def test_tags_cannot_leave_the_directory_or_name_its_hidden_files(snaps, tag):
    for action in (lambda: save_snapshot(Saver(NEW), tag), lambda: delete_snapshot(Saver(NEW), tag),
                   lambda: load_snapshot(Saver(NEW), tag)):
        assert refusal(action).startswith(f"Error: invalid snapshot name {tag!r}")
    assert not snaps.exists()


def test_savevm_info_loadvm_delvm_on_a_machine(snaps, machine, run, error):
    run(machine, "savevm first")
    assert stat.S_IMODE((snaps / "first.pyemu").stat().st_mode) == 0o600  # guest memory
    assert run(machine, "info snapshots").splitlines()[1].startswith("first ")
    assert run(machine, "loadvm first") == ""
    assert run(machine, "delvm first") == ""
    assert run(machine, "info snapshots") == "There is no snapshot available."
    assert error(machine, "delvm first") == "Error: snapshot 'first' not found"
    assert list(snaps.iterdir()) == []
