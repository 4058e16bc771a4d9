"""What the scripts building boot media share (bios/mkdisk.py, syslinux/mkdisk.py,
grub/mkisos.py, and debdisk/ through syslinux/mkdisk.py): MBR partition entries in the
16-head, 63-sector geometry pyemu's IDE disk reports, running the build tools, checking
they are installed, and the `markers` file telling a test what the guest prints.

A script imports it after putting this directory on sys.path (``sys.path.insert(0,
str(Path(__file__).resolve().parent.parent))``), so that it works wherever it is run or
loaded from.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

SECTOR = 512
HEADS, SPT = 16, 63


def chs(lba: int) -> bytes:
    """A partition entry's 3-byte CHS address (cylinders above 1023 saturate)."""
    cyl, rest = divmod(lba, HEADS * SPT)
    head, sec = divmod(rest, SPT)
    if cyl > 1023:
        cyl, head, sec = 1023, HEADS - 1, SPT - 1
    return bytes([head, (sec + 1) | (cyl >> 2 & 0xC0), cyl & 0xFF])


def partition_entry(kind: int, lba: int, count: int) -> bytes:
    """A bootable MBR partition entry of type ``kind`` over ``count`` sectors at ``lba``."""
    return (b"\x80" + chs(lba) + bytes([kind]) + chs(lba + count - 1)
            + struct.pack("<II", lba, count))


def run(*args: str) -> None:
    """Run a build tool, showing its command line; its failure stops the build."""
    print("+", " ".join(args))
    subprocess.run(args, check=True)


def need_tools(script: str, tools: tuple[str, ...], packages: str) -> None:
    """Exit with one line naming the first of ``tools`` missing from PATH."""
    for tool in tools:
        if not shutil.which(tool):
            sys.exit(f"{script}: {tool} is missing (Debian packages {packages})")


def write_markers(out: Path, **markers: str) -> None:
    """out/markers: one "name text" line per marker."""
    (out / "markers").write_text("".join(f"{k} {v}\n" for k, v in markers.items()))
