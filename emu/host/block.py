"""Block backends: the host files behind emulated disks. Never part of saved state.

DESIGN.md, "Layout": host backends stay outside the machine state; a disk device holds
a ``BlockBackend`` as a plain attribute bound by the board before realize.

- One backend, two formats. ``BlockBackend`` does the bookkeeping every disk needs
  (bounds, read-only, written-chunk tracking for block migration, the lock hand-over of
  a migration); the bytes come from a format object: ``RawFile`` (the guest's bytes are
  the file's) or ``emu.host.qcow2.Qcow2Image`` (QEMU's docs/interop/qcow2.txt).
- Format selection follows QEMU's ``-drive format=``: ``raw`` and ``qcow2`` are
  accepted. Without it the format is probed: a file starting with the qcow2 magic
  ("Header", bytes 0-3) opens as qcow2, anything else as raw. A probed raw image is
  allowed, but as in QEMU the guest may not write a qcow2 magic into its first sector
  (the next probe would read guest data as a qcow2 header); ``notice`` says so for the
  user. With ``format=raw`` the first sector is plain data.
- A read-write image is locked exclusively (``flock`` LOCK_EX), a read-only one shared
  (LOCK_SH), so a second pyemu cannot write an image another one uses, nor open for
  writing one another is reading.
- Writes go to the image at once; ``flush()`` makes them durable (``fsync``) and
  ``close()`` flushes. With ``snapshot=True`` (QEMU's ``-snapshot``) the image is opened
  read-only and writes go to a temporary qcow2 overlay whose backing file is the image;
  the overlay is created 0600 in a private temporary directory and unlinked as soon as
  it is open, so nothing of it outlives the process.
- ``parse_drive`` reads QEMU's ``-drive`` option (``key=value`` pairs separated by
  commas, a literal comma in a value written ``,,``); ``drive_for_option`` maps
  ``-hda``..``-hdd`` and ``-cdrom`` the way QEMU does (index 0-3, cdrom at index 2).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import tempfile
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from emu.host.files import kind_of

if TYPE_CHECKING:
    from emu.host.qcow2 import Qcow2Image

CHUNK = 64 << 10  # granularity of the written-since tracking of block migration
FORMATS = ("raw", "qcow2")
QCOW2_MAGIC = b"QFI\xfb"  # qcow2.txt "Header", bytes 0-3: what probing looks for


class ImageLockedError(OSError):
    """Another process holds a conflicting lock on the image."""


class RawFile:
    """The raw format: guest byte ``n`` is the file's byte ``n``."""

    def __init__(self, path: str, fd: int, size: int) -> None:
        self.path = path
        self.size = size
        self._fd: int | None = fd

    @property
    def closed(self) -> bool:
        return self._fd is None

    def fileno(self) -> int:
        if self._fd is None:
            raise ValueError(f"image {self.path} is closed")
        return self._fd

    def read(self, offset: int, length: int) -> bytes:
        data = os.pread(self.fileno(), length, offset)
        if len(data) < length:  # the file shrank under us: read the hole as zeros
            data += bytes(length - len(data))
        return data

    def write(self, offset: int, data: bytes) -> None:
        fd, view = self.fileno(), memoryview(data)
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n

    def flush(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def reopen(self) -> None:
        """Nothing to re-read: a raw file has no metadata (the format interface)."""

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock with the last descriptor
            self._fd = None


def _lock(fd: int, path: str, mode: int) -> None:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ImageLockedError(errno.EBUSY, f"image {path} is in use by another process") from None


def _open_fd(path: str, flags: int) -> int:
    try:
        # O_NONBLOCK: a FIFO given as an image must be refused, not wait for a writer
        return os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise OSError(e.errno, f"cannot open image {path}: {e.strerror}") from None


def open_raw(path: str, *, readonly: bool, lock: bool = True) -> RawFile:
    """Open ``path`` as a raw image (a file or a block device) and lock it (LOCK_EX
    read-write, LOCK_SH read-only) unless ``lock=False``; OSError naming the path."""
    fd = _open_fd(path, os.O_RDONLY if readonly else os.O_RDWR)
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise OSError(errno.EINVAL, f"image {path} is {kind_of(st.st_mode)}, "
                                        "not a file or a block device")
        os.set_blocking(fd, True)
        size = st.st_size if stat.S_ISREG(st.st_mode) else os.lseek(fd, 0, os.SEEK_END)
        if lock:
            _lock(fd, path, fcntl.LOCK_SH if readonly else fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return RawFile(path, fd, size)


class BlockBackend:
    """An image opened by ``open_image``, whatever its format; offsets and lengths are
    guest bytes. ``image`` is the format object the bytes come from: the image itself,
    or with ``snapshot`` the temporary overlay whose backing file the image is."""

    def __init__(self, path: str, image: RawFile | Qcow2Image, *, format: str, size: int,
                 readonly: bool, snapshot: bool, probed: bool = False,
                 active: bool = True) -> None:
        self.path = path
        self.format = format  # "raw" or "qcow2": the image's, not the overlay's
        self.active = active  # holds its lock: this process may run a guest on it
        self.size = size
        self.readonly = readonly  # the guest may not write (a snapshot is writable)
        self.snapshot = snapshot
        self.probed = probed  # the format was guessed, not given with format=
        self._image: RawFile | Qcow2Image | None = image
        # the qcow2 image on top, where internal snapshots go (QEMU's savevm writes the
        # top image): the image itself or a -snapshot overlay; None for a plain raw image
        self.qcow2: Qcow2Image | None = None if isinstance(image, RawFile) else image
        self._written: set[int] | None = None  # CHUNKs written since take_written()
        self._written_lock = threading.Lock()  # the guest writes, a migration takes
        # a migration's thread reads while the machine's writes: a qcow2 lookup must not
        # see a mapping half changed, nor a cluster freed and reused under it
        self._io_lock = threading.Lock()

    def __repr__(self) -> str:
        mode = "snapshot" if self.snapshot else ("ro" if self.readonly else "rw")
        return f"BlockBackend({self.path!r}, {self.format}, {self.size} bytes, {mode})"

    @property
    def closed(self) -> bool:
        return self._image is None

    @property
    def notice(self) -> str | None:
        """A warning for the user when the format of a raw image was probed."""
        if not (self.probed and self.format == "raw") or self.readonly:  # nothing to write
            return None
        return (f"image {self.path}: no format= given, probed as raw; the guest may not "
                "write a qcow2 header into its first sector (give format=raw to allow it)")

    def _check(self, offset: int, length: int) -> RawFile | Qcow2Image:
        if self._image is None:
            raise ValueError(f"image {self.path} is closed")
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"image {self.path}: access {offset:#x}+{length:#x} beyond "
                             f"its size {self.size:#x}")
        return self._image

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset``; ValueError when outside the image."""
        image = self._check(offset, length)
        with self._io_lock:
            return image.read(offset, length)

    def write(self, offset: int, data: bytes) -> None:
        """Store ``data`` at ``offset``; ValueError when outside or read-only, OSError
        (EPERM) for a qcow2 header written into a probed raw image."""
        image = self._check(offset, len(data))
        if self.readonly:
            raise ValueError(f"image {self.path} is read-only")
        if self.probed and self.format == "raw" and offset < len(QCOW2_MAGIC) and data:
            self._refuse_probe_header(offset, data)
        with self._written_lock:
            if self._written is not None and data:
                self._written.update(range(offset // CHUNK,
                                           (offset + len(data) - 1) // CHUNK + 1))
        with self._io_lock:
            image.write(offset, data)

    def _refuse_probe_header(self, offset: int, data: bytes) -> None:
        head = bytearray(self.read(0, min(len(QCOW2_MAGIC), self.size)))
        head[offset:offset + len(data)] = data[:len(head) - offset]
        if bytes(head) == QCOW2_MAGIC:
            raise OSError(errno.EPERM, f"image {self.path}: refusing to write a qcow2 "
                                       "header into a raw image whose format was probed")

    def flush(self) -> None:
        """Make written data durable (a snapshot overlay dies with us: never synced)."""
        if self._image is not None and not self.readonly and not self.snapshot:
            self._image.flush()

    def track_writes(self, on: bool) -> None:
        """Block migration: remember which CHUNKs the guest writes from now on."""
        with self._written_lock:
            self._written = set() if on else None

    def take_written(self) -> list[int]:
        """The CHUNKs written since the last call (tracking goes on), in order."""
        with self._written_lock:
            taken, self._written = self._written or set(), set()
        return sorted(taken)

    @property
    def chunks(self) -> int:
        return -(-self.size // CHUNK)

    @property
    def lock_mode(self) -> int:
        return fcntl.LOCK_EX if not self.readonly and not self.snapshot else fcntl.LOCK_SH

    def _lock_fd(self) -> int:
        """The descriptor of the image (below a snapshot overlay) carrying its lock."""
        image = self._check(0, 0)
        if self.snapshot:
            assert self.qcow2 is not None and self.qcow2.backing is not None
            image = self.qcow2.backing
        return image.fileno()

    def inactivate(self) -> None:
        """Flush and let go of the lock: another process (a migration's destination) may
        now take the image. Nothing may be written until ``activate()``."""
        fd = self._lock_fd()
        self.flush()
        fcntl.flock(fd, fcntl.LOCK_UN)
        self.active = False

    def activate(self) -> None:
        """Take the image's lock (again), then re-read its metadata: while we were
        inactive another process (a migration's source) wrote the image.
        ImageLockedError if another process holds the lock."""
        _lock(self._lock_fd(), self.path, self.lock_mode)
        self._check(0, 0).reopen()
        self.active = True

    def close(self) -> None:
        """Flush, drop the lock (and a snapshot overlay). Closing twice is harmless."""
        image = self._image
        if image is None:
            return
        try:
            self.flush()
        finally:
            self._image = None
            image.close()


def probe(path: str, format: str | None = None) -> tuple[str, bool]:
    """(format, probed): ``format`` checked against the file, or the file's format when
    it is None (qcow2 magic or raw). OSError naming the image and the problem."""
    fd = _open_fd(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        # other kinds are refused by the opener, with the kind named
        head = os.pread(fd, len(QCOW2_MAGIC), 0) if stat.S_ISREG(st.st_mode) else b""
    finally:
        os.close(fd)
    if format == "qcow2" and head != QCOW2_MAGIC:
        raise OSError(errno.EINVAL, f"image {path}: format=qcow2 but the file does not "
                                    "start with the qcow2 magic (raw data? give format=raw)")
    if format is not None:
        return format, False
    return ("qcow2" if head == QCOW2_MAGIC else "raw"), True


def _snapshot_overlay(path: str, format: str, lock: bool) -> Qcow2Image:
    """A read-write qcow2 overlay over ``path`` (opened read-only, backing_fmt set), in a
    private directory, unlinked once open: it dies with its descriptor."""
    from emu.host import qcow2  # here: qcow2 builds on this module (RawFile, open_raw)

    tmpdir = tempfile.mkdtemp(prefix="pyemu-snapshot-")  # 0700: private
    try:
        fd, overlay = tempfile.mkstemp(suffix=".qcow2", dir=tmpdir)  # 0600
        os.close(fd)
        # absolute: the overlay's directory is not the image's
        qcow2.create(overlay, backing=os.path.abspath(path), backing_fmt=format)
        image = qcow2.Qcow2Image(overlay, readonly=False)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    if not lock:  # inactive: the backing was locked shared on open
        assert image.backing is not None
        fcntl.flock(image.backing.fileno(), fcntl.LOCK_UN)
    return image


def load_formats() -> None:
    """Import what ``open_image`` needs beyond this module (the qcow2 driver, which
    builds on this module, so it comes in at first use otherwise): a migration's
    destination does it before its stream names an image, not while the source waits."""
    from emu.host import qcow2  # noqa: F401


def open_image(path: str, *, format: str | None = None, readonly: bool = False,
               snapshot: bool = False, lock: bool = True) -> BlockBackend:
    """Open image ``path`` as ``format`` ("raw", "qcow2"; None: probe it); OSError naming
    the path when it cannot be used. With ``lock=False`` the image is opened inactive
    (an incoming migration's destination, whose source still holds it) and
    ``activate()`` takes the lock later."""
    from emu.host.qcow2 import Qcow2Image  # here: qcow2 builds on this module

    fmt, probed = probe(path, format)
    image: RawFile | Qcow2Image
    if snapshot:
        image = _snapshot_overlay(path, fmt, lock)
        assert image.backing is not None
        size = image.backing.size
    else:
        image = (Qcow2Image(path, readonly=readonly, lock=lock) if fmt == "qcow2"
                 else open_raw(path, readonly=readonly, lock=lock))
        size = image.size
    return BlockBackend(path, image, format=fmt, size=size, readonly=readonly,
                        snapshot=snapshot, probed=probed, active=lock)


# -- command line ------------------------------------------------------------------

MEDIA = ("disk", "cdrom")
MAX_INDEX = 3  # two IDE channels, two drives each
_TRUE = ("on", "yes", "true", "y")
_FALSE = ("off", "no", "false", "n")


@dataclass(frozen=True)
class DriveSpec:
    """One IDE drive as the command line describes it."""

    file: str  # "": a CD drive with no medium
    index: int | None = None  # None: the board gives it the first free index
    media: str = "disk"
    readonly: bool = False
    snapshot: bool = False
    id: str | None = None
    format: str | None = None  # "raw" or "qcow2"; None: probed when opened, as QEMU does
    option: str = "-drive"  # the option the user typed: -drive, -hda..-hdd, -cdrom

    @property
    def origin(self) -> str:
        """The drive as the command line named it, for error messages."""
        if self.option == "-drive":
            return f"-drive file={self.file}"
        return f"{self.option} {self.file}"

    @property
    def channel(self) -> int:
        assert self.index is not None
        return self.index // 2

    @property
    def unit(self) -> int:
        assert self.index is not None
        return self.index % 2

    def open(self, *, snapshot: bool = False, lock: bool = True) -> BlockBackend | None:
        """Open the image (None: an empty CD drive); ``snapshot`` is the global
        ``-snapshot`` flag."""
        if not self.file:
            return None
        return open_image(self.file, format=self.format, readonly=self.readonly,
                          snapshot=(self.snapshot or snapshot) and not self.readonly, lock=lock)


def _split_options(text: str) -> list[str]:
    """Split at single commas; ``,,`` stands for a literal comma."""
    parts, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == ",":
            if text[i + 1:i + 2] == ",":
                cur.append(",")
                i += 2
                continue
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _bool(key: str, value: str) -> bool:
    v = value.lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"-drive {key}={value}: expected on or off")


def parse_drive(text: str) -> DriveSpec:
    """Parse a ``-drive`` argument; ValueError naming the part at fault."""
    fields: dict[str, object] = {}
    for part in _split_options(text):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq:
            if key in ("readonly", "snapshot"):
                value = "on"  # QEMU's bare boolean flag
            else:
                raise ValueError(f"-drive {part}: expected key=value")
        if key in fields or (key == "if" and "interface" in fields):
            raise ValueError(f"-drive {key}: given twice")
        if key == "file":
            if not value:
                raise ValueError("-drive file=: empty file name")
            fields["file"] = value
        elif key == "format":
            if value not in FORMATS:
                raise ValueError(f"-drive format={value}: only raw and qcow2 are supported")
            fields["format"] = value
        elif key == "if":
            if value != "ide":
                raise ValueError(f"-drive if={value}: only if=ide is supported")
            fields["interface"] = value
        elif key == "index":
            if not value.isdigit() or int(value) > MAX_INDEX:
                raise ValueError(f"-drive index={value}: expected 0 to {MAX_INDEX}")
            fields["index"] = int(value)
        elif key == "media":
            if value not in MEDIA:
                raise ValueError(f"-drive media={value}: expected disk or cdrom")
            fields["media"] = value
        elif key in ("readonly", "snapshot"):
            fields[key] = _bool(key, value)
        elif key == "id":
            fields["id"] = value
        else:
            raise ValueError(f"-drive {key}: unknown option {key!r}")
    if "file" not in fields:
        if fields.get("media") != "cdrom":
            raise ValueError(f"-drive {text}: file= is missing")
        fields["file"] = ""  # a CD drive with an empty tray, as QEMU allows
    fields.pop("interface", None)
    if fields.get("media") == "cdrom":
        if fields.get("readonly") is False:
            raise ValueError("-drive readonly=off: a cdrom is read-only")
        fields["readonly"] = True
    return DriveSpec(**fields)  # type: ignore[arg-type]


_SHORT_OPTIONS = {"hda": 0, "hdb": 1, "hdc": 2, "hdd": 3}


def drive_for_option(option: str, path: str) -> DriveSpec:
    """``-hda FILE`` .. ``-hdd FILE`` and ``-cdrom FILE`` as QEMU maps them."""
    name = option.lstrip("-")
    if name == "cdrom":
        return DriveSpec(file=path, index=2, media="cdrom", readonly=True, option="-cdrom")
    if name not in _SHORT_OPTIONS:
        raise ValueError(f"-{name}: not a drive option")
    return DriveSpec(file=path, index=_SHORT_OPTIONS[name], option=f"-{name}")


def assign_indexes(specs: list[DriveSpec]) -> list[DriveSpec]:
    """Give drives without ``index=`` the lowest free one; ValueError on clashes."""
    used: dict[int, DriveSpec] = {}
    for spec in specs:
        if spec.index is not None:
            if spec.index in used:
                raise ValueError(f"-drive index={spec.index}: used by {used[spec.index].file} "
                                 f"and {spec.file}")
            used[spec.index] = spec
    out = []
    for spec in specs:
        if spec.index is None:
            free = [i for i in range(MAX_INDEX + 1) if i not in used]
            if not free:
                raise ValueError(f"-drive file={spec.file}: no free IDE slot")
            spec = replace(spec, index=free[0])
            used[free[0]] = spec
        out.append(spec)
    return out
