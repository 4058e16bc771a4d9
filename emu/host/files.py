"""Host files a machine reads whole (kernels, initrds, modules, firmware) and the rule
for which host files a migration stream may name at all.

DESIGN.md, "Trust: who decides what": the destination's owner grants every host
resource. A stream's description names files only as hints; a bare destination opens
one only when it lies under a directory its owner allowed (``-allow-files DIR``), or
when its own command line re-binds it (``-drive id=ID,file=PATH``). What is only read
(firmware, kernels, read-only images) is also taken from where firmware is installed
and from pyemu's bundled guests (as QEMU takes firmware from its data directory).
Whatever names a file, it is read only if it is a regular file of bounded size: a
device node, a FIFO or a socket never stands in for a kernel or an image.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path

# Read-only data any destination may take: firmware where it lies on a host (pyemu's
# own build, Debian's seabios and qemu data) and pyemu's bundled demo guest.
_ROOT = Path(__file__).resolve().parents[2]
DATA_DIRS = (str(_ROOT / "firmware" / "build"), str(_ROOT / "emu" / "guests"),
             "/usr/share/seabios", "/usr/share/qemu")


def read_regular(path: str, limit: int) -> bytes:
    """The whole of regular file ``path``, at most ``limit`` bytes; OSError otherwise
    (opened without blocking, so a FIFO cannot hang the caller)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{kind_of(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"{st.st_size} bytes, more than the {limit} this "
                                       "machine can take")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew while we read
        raise OSError(errno.EFBIG, f"more than {limit} bytes")
    return data


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words for an error message."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def under(path: str, directories: Iterable[str]) -> bool:
    """Whether ``path``, with every symbolic link resolved, lies inside one of
    ``directories`` (also resolved): a link cannot lead a stream out of them."""
    real = os.path.realpath(path)
    for d in directories:
        top = os.path.realpath(d)
        if os.path.commonpath([real, top]) == top:
            return True
    return False


def check_granted(path: str, where: str, allowed: Iterable[str]) -> None:
    """PermissionError naming ``where`` (the description field) unless ``path`` lies
    under an allowed directory and is a regular file there."""
    allowed = list(allowed)
    if not path.isprintable():  # it goes into one-line messages, here and at the source
        raise PermissionError(errno.EACCES, f"{where}: {path!r} has unprintable characters")
    if not os.path.isabs(path) or not allowed or not under(path, allowed):
        raise PermissionError(
            errno.EACCES, f"{where}: {path} is not granted here (a stream names host files "
                          "only as hints: allow its directory with -allow-files DIR, or "
                          "re-bind it with this destination's own options)")
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise OSError(e.errno, f"{where}: {path}: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        raise PermissionError(errno.EACCES, f"{where}: {path} is {kind_of(mode)}, "
                                            "not a regular file")
