#!/usr/bin/env python3
"""Build the SYSLINUX test disk with Debian's syslinux, syslinux-common and mtools.

Usage: mkdisk.py --kernel KERNEL --out DIR

DIR/disk.img: sector 0 is SYSLINUX's mbr.bin with a partition table of one bootable
FAT16 partition (type 06h) from LBA 2048 to the end, formatted by mformat (16 heads,
63 sectors, 2048 hidden sectors, 2 KiB clusters) and made bootable by
`syslinux --install --offset`; the partition holds syslinux.cfg and the kernel.

KERNEL is either a Linux bzImage (booted with SYSLINUX's KERNEL, on the serial console
with earlyprintk, so its first line comes at once) or a Multiboot ELF (booted through
mboot.c32, which needs libcom32.c32), told apart by the bzImage's "HdrS" signature.

syslinux.cfg talks on COM1 (SERIAL 0 115200) and boots the default entry at once
(PROMPT 0, TIMEOUT 0) after a SAY line. DIR/markers says what a test waits for: the SAY
line ("say ..."), the kernel's first line ("first ...") and the kernel used ("kernel ...").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from imagetools import (  # noqa: E402
    HEADS,
    SECTOR,
    SPT,
    chs,  # noqa: F401  (debdisk/mkimage.py uses it from here)
    need_tools,
    partition_entry,
    run,
    write_markers,
)

PART_LBA = 2048
SYSLINUX = Path("/usr/lib/syslinux")
MBR = SYSLINUX / "mbr" / "mbr.bin"
MODULES = SYSLINUX / "modules" / "bios"
SAY = "pyemu-syslinux: SAY line from syslinux.cfg"
LINUX_FIRST = "Linux version"
MULTIBOOT_FIRST = "Hello from pyemu guest"  # tests/guests/hello.c


def master_boot_record(total_sectors: int) -> bytes:
    code = MBR.read_bytes()
    if len(code) > 440:
        raise ValueError(f"{MBR} is larger than the 440 bytes of boot code an MBR has")
    count = total_sectors - PART_LBA
    entry = partition_entry(0x06, PART_LBA, count)
    # boot code, disk signature, 2 reserved bytes, 4 entries, 55AAh
    mbr = code.ljust(440, b"\0") + b"PYEM" + bytes(2) + entry + bytes(48) + b"\x55\xaa"
    assert len(mbr) == SECTOR
    return mbr


def is_bzimage(kernel: Path) -> bool:
    with kernel.open("rb") as f:
        head = f.read(0x206)
    return len(head) == 0x206 and head[0x202:0x206] == b"HdrS"


def build(kernel: Path, out: Path) -> None:
    linux = is_bzimage(kernel)
    # Room for the kernel and SYSLINUX, in whole MiB, at least 32 MiB (FAT16 with 2 KiB
    # clusters needs more than 4084 of them).
    mib = max(32, (kernel.stat().st_size + (4 << 20)) // (1 << 20) + 1)
    total = mib * 2048
    image = out / "disk.img.tmp"
    image.unlink(missing_ok=True)
    with image.open("wb") as f:
        f.write(master_boot_record(total))
        f.truncate(total * SECTOR)
    part = f"{image}@@{PART_LBA * SECTOR}"
    run("mformat", "-i", part, "-T", str(total - PART_LBA), "-h", str(HEADS), "-s", str(SPT),
        "-H", str(PART_LBA), "-c", "4", "-v", "SYSLINUX", "::")
    with image.open("rb") as f:
        f.seek(PART_LBA * SECTOR + 54)
        if f.read(8) != b"FAT16   ":
            raise SystemExit("mformat did not make a FAT16 file system")
    run("syslinux", "--install", "--offset", str(PART_LBA * SECTOR), str(image))

    if linux:
        files = {"vmlinuz": kernel}
        entry = ("  KERNEL vmlinuz\n"
                 "  APPEND console=ttyS0 earlyprintk=serial,ttyS0,115200 noapic nolapic acpi=off\n")
        first = LINUX_FIRST
    else:
        files = {"mboot.c32": MODULES / "mboot.c32", "libcom32.c32": MODULES / "libcom32.c32",
                 "kernel.elf": kernel}
        entry = "  KERNEL mboot.c32\n  APPEND kernel.elf syslinux\n"
        first = MULTIBOOT_FIRST
    cfg = out / "syslinux.cfg"
    cfg.write_text("SERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\n"
                   f"SAY {SAY}\nDEFAULT guest\nLABEL guest\n{entry}")
    files["syslinux.cfg"] = cfg
    for name, path in files.items():
        run("mcopy", "-i", part, str(path), f"::{name}")
    image.replace(out / "disk.img")
    write_markers(out, say=SAY, first=first, kernel=str(kernel))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    need_tools("mkdisk.py", ("mformat", "mcopy", "syslinux"), "syslinux and mtools")
    args.out.mkdir(parents=True, exist_ok=True)
    build(args.kernel, args.out)


if __name__ == "__main__":
    main()
