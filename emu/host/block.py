"""Block backends: the host files behind emulated disks. Never part of saved state.

DESIGN.md, "Layout": host backends stay outside the machine state; a disk device holds
a ``BlockBackend`` as a plain attribute bound by the board before realize.

- Raw images only. A read-write image is locked exclusively (``flock`` LOCK_EX), a
  read-only one shared (LOCK_SH), so a second pyemu cannot write an image another one
  uses, nor open for writing one another is reading.
- Writes go to the file at once (``pwrite``); ``flush()`` makes them durable (``fsync``)
  and ``close()`` flushes. With ``snapshot=True`` the image is opened read-only and
  written sectors live in an in-memory overlay that vanishes on close (QEMU's
  ``-snapshot``).
- ``parse_drive`` reads QEMU's ``-drive`` option (``key=value`` pairs separated by
  commas, a literal comma in a value written ``,,``); ``drive_for_option`` maps
  ``-hda``..``-hdd`` and ``-cdrom`` the way QEMU does (index 0-3, cdrom at index 2).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
from dataclasses import dataclass, replace

from emu.host.files import kind_of

OVERLAY_SECTOR = 512  # granularity of the snapshot overlay
CHUNK = 64 << 10  # granularity of the written-since tracking of block migration


class ImageLockedError(OSError):
    """Another process holds a conflicting lock on the image."""


class BlockBackend:
    """A raw image file opened by ``open_image``; offsets and lengths are in bytes."""

    def __init__(self, path: str, fd: int, size: int, *, readonly: bool,
                 snapshot: bool, active: bool = True) -> None:
        self.path = path
        self.active = active  # holds its lock: this process may run a guest on it
        self.size = size
        self.readonly = readonly  # the guest may not write (a snapshot is writable)
        self.snapshot = snapshot
        self._fd: int | None = fd
        self._overlay: dict[int, bytes] = {}  # sector index -> OVERLAY_SECTOR bytes
        self._written: set[int] | None = None  # CHUNKs written since take_written()
        self._written_lock = threading.Lock()  # the guest writes, a migration takes

    def __repr__(self) -> str:
        mode = "snapshot" if self.snapshot else ("ro" if self.readonly else "rw")
        return f"BlockBackend({self.path!r}, {self.size} bytes, {mode})"

    @property
    def closed(self) -> bool:
        return self._fd is None

    def _check(self, offset: int, length: int) -> int:
        if self._fd is None:
            raise ValueError(f"image {self.path} is closed")
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"image {self.path}: access {offset:#x}+{length:#x} beyond "
                             f"its size {self.size:#x}")
        return self._fd

    def _pread(self, fd: int, offset: int, length: int) -> bytes:
        data = os.pread(fd, length, offset)
        if len(data) < length:  # the file shrank under us: read the hole as zeros
            data += bytes(length - len(data))
        return data

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset``; ValueError when outside the image."""
        fd = self._check(offset, length)
        if not self._overlay:
            return self._pread(fd, offset, length)
        out = bytearray()
        pos, end = offset, offset + length
        while pos < end:
            sector, skip = divmod(pos, OVERLAY_SECTOR)
            n = min(OVERLAY_SECTOR - skip, end - pos)
            block = self._overlay.get(sector)
            out += block[skip:skip + n] if block is not None else self._pread(fd, pos, n)
            pos += n
        return bytes(out)

    def write(self, offset: int, data: bytes) -> None:
        """Store ``data`` at ``offset``; ValueError when outside or read-only."""
        fd = self._check(offset, len(data))
        if self.readonly:
            raise ValueError(f"image {self.path} is read-only")
        with self._written_lock:
            if self._written is not None and data:
                self._written.update(range(offset // CHUNK,
                                           (offset + len(data) - 1) // CHUNK + 1))
        if not self.snapshot:
            view = memoryview(data)
            while view:
                n = os.pwrite(fd, view, offset)
                view, offset = view[n:], offset + n
            return
        pos, end, src = offset, offset + len(data), 0
        while pos < end:
            sector, skip = divmod(pos, OVERLAY_SECTOR)
            n = min(OVERLAY_SECTOR - skip, end - pos)
            if n == OVERLAY_SECTOR:
                block = bytes(data[src:src + n])
            else:
                old = bytearray(self.read(sector * OVERLAY_SECTOR, self._sector_len(sector)))
                old[skip:skip + n] = data[src:src + n]
                block = bytes(old)
            self._overlay[sector] = block
            pos, src = pos + n, src + n

    def _sector_len(self, sector: int) -> int:
        # the last sector of an image whose size is not a multiple of 512 is short
        return min(OVERLAY_SECTOR, self.size - sector * OVERLAY_SECTOR)

    def flush(self) -> None:
        """Make written data durable in the file (a snapshot overlay is never written)."""
        if self._fd is not None and not self.readonly and not self.snapshot:
            os.fsync(self._fd)

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

    def inactivate(self) -> None:
        """Flush and let go of the lock: another process (a migration's destination) may
        now take the image. Nothing may be written until ``activate()``."""
        fd = self._check(0, 0)
        self.flush()
        fcntl.flock(fd, fcntl.LOCK_UN)
        self.active = False

    def activate(self) -> None:
        """Take the image's lock (again); ImageLockedError if another process holds it."""
        _lock(self._check(0, 0), self.path, self.lock_mode)
        self.active = True

    def close(self) -> None:
        """Flush, drop the lock and the overlay. Closing twice is harmless."""
        if self._fd is None:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)  # releases the flock with the last descriptor
            self._fd = None
            self._overlay.clear()


def _lock(fd: int, path: str, mode: int) -> None:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ImageLockedError(errno.EBUSY, f"image {path} is in use by another process") from None


def open_image(path: str, *, readonly: bool = False, snapshot: bool = False,
               lock: bool = True) -> BlockBackend:
    """Open raw image ``path``; OSError naming the path when it cannot be used. With
    ``lock=False`` the image is opened inactive (an incoming migration's destination,
    whose source still holds it) and ``activate()`` takes the lock later."""
    writable = not readonly and not snapshot
    try:
        # O_NONBLOCK: a FIFO given as an image must be refused, not wait for a writer
        fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_NONBLOCK |
                     os.O_CLOEXEC)
    except OSError as e:
        raise OSError(e.errno, f"cannot open image {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            raise OSError(errno.EINVAL, f"image {path} is {kind_of(st.st_mode)}, "
                                        "not a file or a block device")
        os.set_blocking(fd, True)
        size = st.st_size if stat.S_ISREG(st.st_mode) else os.lseek(fd, 0, os.SEEK_END)
        if lock:
            _lock(fd, path, fcntl.LOCK_EX if writable else fcntl.LOCK_SH)
    except BaseException:
        os.close(fd)
        raise
    return BlockBackend(path, fd, size, readonly=readonly, snapshot=snapshot, active=lock)


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
        return open_image(self.file, readonly=self.readonly,
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
            if value != "raw":
                raise ValueError(f"-drive format={value}: only format=raw is supported")
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
    fields.pop("format", None)
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
