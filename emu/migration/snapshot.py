"""The snapshot store behind savevm, loadvm and delvm: one file per tag in one directory.

The file of a tag is ``DIR/TAG.pyemu``, DIR being $PYEMU_SNAPSHOT_DIR, else the XDG state
directory. Several pyemu processes may share DIR, so a save is
- atomic: written to a temporary file of a unique name beside the target, flushed to
  disk, renamed over the target, and the rename flushed too. A reader (loadvm, another
  pyemu) finds the previous file or the new one, whole; a failure at any point (a full
  disk, an exception mid-write, a crash) leaves the previous file as it was;
- exclusive per tag: the saver holds the flock of ``DIR/.TAG.lock``, taken without
  waiting, so a second saver of the tag, or a delete, is refused instead of racing it.
  Saves of different tags do not wait for each other.
Files whose names begin with a dot are the store's own (temporary and lock files); a tag
cannot begin with one, nor leave the directory.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

# One path component: no '/', no NUL, no '..' or other leading dot, bounded length.
TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SUFFIX = ".pyemu"


class SnapshotError(Exception):
    """A snapshot that cannot be saved, read or deleted, with the reason in one line."""


def snapshot_dir() -> Path:
    """Where snapshots live: $PYEMU_SNAPSHOT_DIR, else the XDG state directory."""
    if os.environ.get("PYEMU_SNAPSHOT_DIR"):
        return Path(os.environ["PYEMU_SNAPSHOT_DIR"])
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "pyemu" / "snapshots"


def snapshot_path(tag: str) -> Path:
    """The file of snapshot ``tag``; SnapshotError for a tag that is no plain name."""
    if not TAG.fullmatch(tag):
        raise SnapshotError(f"invalid snapshot name {tag!r} (up to 64 letters, digits, "
                            ". _ -, not starting with a dot)")
    return snapshot_dir() / (tag + SUFFIX)


def save(tag: str, write: Callable[[BinaryIO], object]) -> Path:
    """Write snapshot ``tag`` with ``write(file)``, published whole or not at all.

    SnapshotError if another process is saving the tag or the file system refuses
    (naming the directory); whatever ``write`` raises propagates. Either way the
    previous snapshot of the tag is untouched and no temporary file is left."""
    path = snapshot_path(tag)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _tag_lock(path, tag):
            _publish(path, write)
    except OSError as e:
        raise SnapshotError(f"snapshot '{tag}' cannot be saved in {path.parent}: "
                            f"{_reason(e)}") from None
    return path


def read(tag: str) -> bytes:
    """The bytes of snapshot ``tag``. No lock: a published file is always whole."""
    path = snapshot_path(tag)
    try:
        return path.read_bytes()
    except OSError as e:
        raise SnapshotError(f"snapshot '{tag}' cannot be read from {path.parent}: "
                            f"{_reason(e)}") from None


def delete(tag: str) -> None:
    """Remove snapshot ``tag``; refused while another process is saving it."""
    path = snapshot_path(tag)
    try:
        with _tag_lock(path, tag):
            path.unlink()
    except FileNotFoundError:  # no such file, or no directory to hold one
        raise SnapshotError(f"snapshot '{tag}' not found") from None
    except OSError as e:
        raise SnapshotError(f"snapshot '{tag}' cannot be deleted from {path.parent}: "
                            f"{_reason(e)}") from None


def list_snapshots() -> list[tuple[str, os.stat_result]]:
    """Every published snapshot as (tag, stat), by tag; one deleted meanwhile is left out."""
    found = []
    with contextlib.suppress(OSError):  # no directory (yet): no snapshots
        for entry in os.scandir(snapshot_dir()):
            tag = entry.name.removesuffix(SUFFIX)
            if tag != entry.name and TAG.fullmatch(tag):
                with contextlib.suppress(FileNotFoundError):
                    found.append((tag, entry.stat()))
    return sorted(found, key=lambda t: t[0])


def _publish(path: Path, write: Callable[[BinaryIO], object]) -> None:
    # A unique name, so that nothing else ever writes into our temporary file (a saver
    # that outlived its lock, a crashed save's leftovers), in the target's directory so
    # that the rename is atomic. mkstemp makes it 0600: a snapshot holds guest memory.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the rename must never publish blocks not yet on disk
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # the first error is the one to report
            os.unlink(tmp)
        raise
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOTSUP):  # a file system that cannot
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def _tag_lock(path: Path, tag: str) -> Iterator[None]:
    """Hold the lock of the snapshot at ``path`` (``.TAG.lock`` beside it); SnapshotError
    at once if another process holds it. The lock file goes away on release."""
    lock = path.with_name(f".{tag}.lock")
    fd = _take_lock(lock, tag)
    try:
        yield
    finally:
        # Unlinked while still held: whoever opened the old file and locks it after us
        # sees that it is no longer the one at ``lock`` and starts over (_take_lock).
        with contextlib.suppress(OSError):  # a lock file left behind is harmless
            lock.unlink()
        os.close(fd)


def _take_lock(lock: Path, tag: str) -> int:
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SnapshotError(f"snapshot '{tag}' is being saved by another process") \
                from None
        except BaseException:
            os.close(fd)
            raise
        if _is_linked_at(fd, lock):
            return fd
        os.close(fd)  # its holder released and removed it between our open and flock


def _is_linked_at(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _reason(e: OSError) -> str:
    return e.strerror or str(e)
