"""Block migration's incoming drive contents, held aside until the stream is proven.

DESIGN.md, "Trust": nothing a stream carries is written to a host file before the
stream is proven whole. Chunks arrive among the RAM records (stream.py, DISK_DATA and
DISK_ZERO) and a later record of a chunk replaces an earlier one, so each drive's
chunks go to an anonymous temporary file (unlinked from the start: a failed or killed
destination leaves nothing behind) and reach the image only in ``commit()``, after the
end checksum matched.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

ZERO = -1  # a chunk's place in the staging file when the chunk is all zeros


class DiskStaging:
    """One drive's chunks on their way to its image (``backend``)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.size = backend.size
        self._file = tempfile.TemporaryFile(prefix="pyemu-block-")
        self._end = 0
        self._chunks: dict[int, tuple[int, int]] = {}  # offset -> (place, length)

    def write(self, offset: int, data: bytes) -> None:
        fd = self._file.fileno()
        view = memoryview(data)
        place = self._end
        while view:
            n = os.pwrite(fd, view, self._end)
            view, self._end = view[n:], self._end + n
        self._chunks[offset] = (place, len(data))

    def zero(self, offset: int, length: int) -> None:
        self._chunks[offset] = (ZERO, length)

    def commit(self) -> None:
        """Write every chunk into the image, then make it durable."""
        fd = self._file.fileno()
        for offset, (place, length) in sorted(self._chunks.items()):
            self.backend.write(offset, bytes(length) if place == ZERO
                               else os.pread(fd, length, place))
        self.backend.flush()
        self.close()

    def close(self) -> None:
        """Drop what was staged (a failed stream's chunks never reach the image)."""
        self._file.close()
        self._chunks.clear()
