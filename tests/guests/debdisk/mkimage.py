#!/usr/bin/env python3
"""Make pyemu's Debian disk image from a root file system directory, without mounting.

Usage: mkimage.py --root DIR --out disk.img

The image is a raw MBR disk: one bootable Linux partition (type 83h) from LBA 2048 to
the end, an ext4 file system that `mke2fs -d DIR` fills from the directory (owners,
modes, links and device nodes as they are), big enough for the files with room to spare.
It boots through GRUB as grub-install and grub-bios-setup would have set it up: the
first 440 bytes of the MBR are GRUB's boot.img (its "boot drive check" jump turned into
NOPs, as grub-bios-setup does for a hard disk), and GRUB's core.img sits right behind it
from sector 1, where boot.img and core.img's first sector (diskboot) look for it by
default. Both come from DIR/boot/grub/i386-pc (customize.sh puts them there); core.img's
prefix names the partition, so it loads its modules and grub.cfg from the file system.

The partition entry (CHS addresses in pyemu's disk geometry) and running the tools come
from tests/guests/imagetools.py, shared with the other boot-media builders.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from imagetools import SECTOR, need_tools, partition_entry, run  # noqa: E402

GRUB_DIR = Path("boot/grub/i386-pc")
PART_LBA = 2048          # the partition starts at 1 MiB, as the SYSLINUX disk's does
LINUX = 0x83             # partition type
BOOT_CODE = 440          # boot.img bytes that go in the MBR (the rest is the table)
DRIVE_CHECK = 0x66       # boot.img's jmp over its "use drive 80h" workaround
SPARE = 1.25             # file system size over the files' size
SPARE_MIB = 128


def used_bytes(root: Path) -> int:
    """What the tree takes on disk (allocated blocks; inodes are counted by mke2fs)."""
    total = 0
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            total += os.lstat(os.path.join(top, name)).st_blocks * 512
    return total


def partition_sectors(root: Path) -> int:
    mib = int(used_bytes(root) * SPARE) // (1 << 20) + SPARE_MIB
    return mib * 2048


def master_boot_record(boot_img: bytes, start: int, count: int) -> bytes:
    if len(boot_img) != SECTOR:
        raise ValueError(f"GRUB's boot.img has {len(boot_img)} bytes, not {SECTOR}")
    code = bytearray(boot_img[:BOOT_CODE])
    code[DRIVE_CHECK:DRIVE_CHECK + 2] = b"\x90\x90"
    entry = partition_entry(LINUX, start, count)
    # boot code, disk signature, 2 reserved bytes, 4 entries, 55AAh
    return bytes(code) + b"PYDD" + bytes(2) + entry + bytes(48) + b"\x55\xaa"


def build(root: Path, out: Path) -> None:
    boot_img = (root / GRUB_DIR / "boot.img").read_bytes()
    core_img = (root / GRUB_DIR / "core.img").read_bytes()
    start = PART_LBA
    if len(core_img) > (start - 1) * SECTOR:
        raise SystemExit(f"GRUB's core.img ({len(core_img)} bytes) does not fit before LBA {start}")
    count = partition_sectors(root)
    image = out.with_name(out.name + ".tmp")
    image.unlink(missing_ok=True)
    with image.open("wb") as f:
        f.truncate((start + count) * SECTOR)
    run("mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-L", "debian", "-d", str(root),
             "-E", f"offset={start * SECTOR}", str(image), f"{count // 2}k")
    with image.open("r+b") as f:
        f.write(master_boot_record(boot_img, start, count))
        f.write(core_img)
    image.replace(out)
    print(f"{out}: {(start + count) // 2048} MiB, ext4 on sda1 from LBA {start}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    need_tools("mkimage.py", ("mke2fs",), "e2fsprogs")
    for name in ("boot.img", "core.img"):
        if not (args.root / GRUB_DIR / name).is_file():
            sys.exit(f"mkimage.py: {args.root / GRUB_DIR / name} is missing "
                     "(customize.sh makes it)")
    build(args.root, args.out)


if __name__ == "__main__":
    main()
