"""Block migration's incoming drive contents, held aside until the stream is proven.

DESIGN.md, "Trust": nothing a stream carries is written to a host file before the
stream is proven whole. Chunks arrive among the RAM records (stream.py, DISK_DATA and
DISK_ZERO) and a later record of a chunk replaces an earlier one, so each drive's
chunks go to an anonymous temporary file (unlinked from the start: a failed or killed
destination leaves nothing behind) and reach the image only in ``commit()``, after the
end checksum matched. The staging file mirrors the image's layout (sparse: a chunk lies
at its own offset), so a chunk sent again replaces itself and the file never outgrows
the image, however often a peer repeats one.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

ZERO = -1  # a zero chunk of n bytes is recorded as ZERO - n


class DiskStaging:
    """One drive's chunks on their way to its image (``backend``)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.size = backend.size
        self._file = tempfile.TemporaryFile(prefix="pyemu-block-")
        self._chunks: dict[int, int] = {}  # offset -> length, or ZERO - length for zeros

    def write(self, offset: int, data: bytes) -> None:
        """Stage ``data`` for ``offset`` (inside the image: the stream checked that)."""
        fd = self._file.fileno()
        view, at = memoryview(data), offset
        while view:
            n = os.pwrite(fd, view, at)
            view, at = view[n:], at + n
        self._chunks[offset] = len(data)

    def zero(self, offset: int, length: int) -> None:
        self._chunks[offset] = ZERO - length  # negative: nothing in the file to read

    def commit(self) -> None:
        """Write every chunk into the image, then make it durable."""
        fd = self._file.fileno()
        for offset, length in sorted(self._chunks.items()):
            self.backend.write(offset, bytes(ZERO - length) if length < 0
                               else os.pread(fd, length, offset))
        self.backend.flush()
        self.close()

    def close(self) -> None:
        """Drop what was staged (a failed stream's chunks never reach the image)."""
        self._file.close()
        self._chunks.clear()
