"""Writes the Linux test guest's initramfs: a gzip'd cpio "newc" archive.

Format facts from the kernel's Documentation/driver-api/early-userspace/buffer-format.rst:
each entry is a 110-byte ASCII header ("070701", then 13 fields of 8 hex digits), the
NUL-terminated name, padding to 4 bytes, the data, padding to 4 bytes; the archive ends
with an entry named "TRAILER!!!". Device nodes are entries whose mode says so (rdev
fields give major/minor), so no root privileges are needed to describe /dev/console.
"""

from __future__ import annotations

import argparse
import gzip
import stat
from pathlib import Path

MAGIC = b"070701"


class Cpio:
    """Builds a newc archive in memory, one entry at a time."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.ino = 1

    def entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0),
              nlink: int = 1) -> None:
        raw = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(raw), 0)
        self.ino += 1
        self.out += MAGIC + b"".join(b"%08X" % f for f in fields) + raw
        self._pad()
        self.out += data
        self._pad()

    def _pad(self) -> None:
        self.out += b"\0" * (-len(self.out) % 4)

    def directory(self, name: str) -> None:
        self.entry(name, stat.S_IFDIR | 0o755, nlink=2)

    def file(self, name: str, data: bytes, perm: int = 0o755) -> None:
        self.entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self.entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self.entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self) -> bytes:
        self.entry("TRAILER!!!", 0)
        self.out += b"\0" * (-len(self.out) % 512)
        return bytes(self.out)


def build(busybox: bytes, init: bytes, modules: Path | None = None) -> bytes:
    """The archive: busybox, /init, the directories init mounts on, console nodes, and
    the kernel modules pickmodules.py chose (lib/modules/<name>.ko and their load
    'order')."""
    c = Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "root", "etc", "lib", "lib/modules"):
        c.directory(d)
    if modules is not None:
        order = (modules / "order").read_text()
        c.file("lib/modules/order", order.encode(), 0o644)
        for name in order.split():
            c.file(f"lib/modules/{name}.ko", (modules / f"{name}.ko").read_bytes(), 0o644)
    c.file("bin/busybox", busybox)
    c.symlink("bin/sh", "busybox")
    c.file("init", init)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/ttyS0", 4, 64, 0o660)
    c.chardev("dev/null", 1, 3, 0o666)
    return c.finish()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busybox", required=True, type=Path)
    ap.add_argument("--init", required=True, type=Path)
    ap.add_argument("--modules", type=Path, help="directory pickmodules.py wrote")
    ap.add_argument("-o", "--output", required=True, type=Path)
    args = ap.parse_args()
    archive = build(args.busybox.read_bytes(), args.init.read_bytes(), args.modules)
    # mtime=0: the same inputs give the same bytes.
    args.output.write_bytes(gzip.compress(archive, compresslevel=9, mtime=0))


if __name__ == "__main__":
    main()
