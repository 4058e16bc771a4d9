#!/usr/bin/env python3
"""Build the BIOS services test media from stage1.bin and stage2.bin.

Usage: mkdisk.py STAGE1 STAGE2 DISK.img CD.iso

The disk (4 MiB, 8192 sectors): sector 0 is stage 1 with a partition table of one
bootable FAT32-LBA (0Ch) partition from LBA 2048 to the end, the second stage at LBA
1-48, and every other sector starts "PYEMU LBA " and its LBA in 8 hex digits (the
partition's first sector starts "PYEMU-PART" instead). CHS fields of the partition entry
use the 16-head, 63-sector geometry pyemu's IDE disk reports.

The CD (El Torito, no emulation, via ../mkiso.py): the boot image is stage 1, a pad
sector and the second stage, so the BIOS loads the second stage at 0:8000 with it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from imagetools import SECTOR, partition_entry  # noqa: E402

DISK_SECTORS = 8192
STAGE2_SECTORS = 48
PART_LBA = 2048


def build_disk(stage1: bytes, stage2: bytes) -> bytes:
    if len(stage1) != SECTOR or stage1[510:] != b"\x55\xaa":
        raise ValueError("stage 1 must be a 512-byte boot sector")
    if len(stage2) > STAGE2_SECTORS * SECTOR:
        raise ValueError("stage 2 is larger than stage 1 loads")
    mbr = bytearray(stage1)
    mbr[446:462] = partition_entry(0x0C, PART_LBA, DISK_SECTORS - PART_LBA)
    sectors = [bytes(mbr), stage2.ljust(STAGE2_SECTORS * SECTOR, b"\0")]
    for lba in range(1 + STAGE2_SECTORS, DISK_SECTORS):
        tag = b"PYEMU-PART" if lba == PART_LBA else b"PYEMU LBA %08X" % lba
        sectors.append(tag.ljust(SECTOR, b"\0"))
    return b"".join(sectors)


def build_cd(stage1: bytes, stage2: bytes) -> bytes:
    mkiso_py = Path(__file__).resolve().parent.parent / "mkiso.py"
    spec = importlib.util.spec_from_file_location("mkiso", mkiso_py)
    mkiso = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mkiso)
    image = stage1 + bytes(SECTOR) + stage2.ljust(STAGE2_SECTORS * SECTOR, b"\0")
    return mkiso.build_iso(image, load_sectors=len(image) // SECTOR)


def main() -> None:
    if len(sys.argv) != 5:
        sys.exit(__doc__.splitlines()[2])
    stage1 = Path(sys.argv[1]).read_bytes()
    stage2 = Path(sys.argv[2]).read_bytes()
    Path(sys.argv[3]).write_bytes(build_disk(stage1, stage2))
    Path(sys.argv[4]).write_bytes(build_cd(stage1, stage2))


if __name__ == "__main__":
    main()
