#!/usr/bin/env python3
"""Build a minimal bootable ISO 9660 image: El Torito, no emulation, one boot image.

Usage: mkiso.py BOOT_IMAGE OUT.iso [--load-sectors N]

Layout (2048-byte logical sectors): 0-15 system area (zeros); 16 primary volume
descriptor; 17 boot record volume descriptor; 18 volume descriptor set terminator;
19 boot catalog; 20 root directory; 21 L path table; 22 M path table; 23.. the boot
image, padded to whole sectors.

References: ECMA-119 (ISO 9660) 2nd ed. -- 6.2 logical sectors and the system area,
8.1/8.4 volume descriptors (type, "CD001", version; PVD byte positions 9.x-8.4.x),
8.3 the terminator, 9.1 directory records, 9.4 path table records, 7.2.3/7.3.3 both-byte
orders, 8.4.26.1 the 17-byte date/time format. El Torito "Bootable CD-ROM Format
Specification" 1.0 -- 2.0 boot record volume descriptor (sector 17, "EL TORITO
SPECIFICATION", catalog pointer at byte 47h), 2.1 validation entry (header ID 01h,
platform 0 = 80x86, checksum word making the 16 words sum to 0, key bytes 55h AAh),
2.2 initial/default entry (88h bootable, media 0 = no emulation, load segment 0 means
7C0h, sector count in 512-byte virtual sectors, load RBA).
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

SECTOR = 2048
PVD_LBA, BRVD_LBA, TERM_LBA, CATALOG_LBA, ROOT_LBA, LPATH_LBA, MPATH_LBA, BOOT_LBA = range(
    16, 24)
STANDARD_ID = b"CD001"
EL_TORITO_ID = b"EL TORITO SPECIFICATION"


def both16(value: int) -> bytes:
    """ECMA-119 7.2.3: little-endian then big-endian."""
    return struct.pack("<H", value) + struct.pack(">H", value)


def both32(value: int) -> bytes:
    """ECMA-119 7.3.3: little-endian then big-endian."""
    return struct.pack("<I", value) + struct.pack(">I", value)


def text(value: str, length: int) -> bytes:
    return value.encode("ascii").ljust(length, b" ")


def _sector(body: bytes) -> bytes:
    if len(body) > SECTOR:
        raise ValueError("descriptor longer than a sector")
    return body.ljust(SECTOR, b"\0")


def _descriptor(kind: int, body: bytes) -> bytes:
    """A volume descriptor: type, standard identifier, version 1, then its fields."""
    return _sector(bytes([kind]) + STANDARD_ID + b"\x01" + body)


def dir_record(identifier: bytes, extent: int, size: int, directory: bool) -> bytes:
    """ECMA-119 9.1: a directory record, padded to an even length."""
    record = (b"\0"                                  # extended attribute record length
              + both32(extent) + both32(size)
              + bytes([100, 1, 1, 0, 0, 0, 0])        # 2000-01-01 00:00:00 GMT
              + bytes([0x02 if directory else 0x00, 0, 0])  # flags, unit size, gap
              + both16(1)                             # volume sequence number
              + bytes([len(identifier)]) + identifier)
    record = bytes([len(record) + 1]) + record
    return record + b"\0" * (len(record) & 1)


def _date() -> bytes:
    """ECMA-119 8.4.26.1: digits for year..hundredths, then the GMT offset byte."""
    return b"2000010100000000" + b"\0"


def primary_volume_descriptor(total_sectors: int, path_table_size: int) -> bytes:
    root = dir_record(b"\0", ROOT_LBA, SECTOR, directory=True)
    assert len(root) == 34
    body = (b"\0"                                  # unused (byte 7)
            + text("", 32)                         # system identifier
            + text("PYEMU_BOOT", 32)               # volume identifier
            + b"\0" * 8
            + both32(total_sectors)                # volume space size
            + b"\0" * 32                           # escape sequences (none)
            + both16(1) + both16(1)                # volume set size, sequence number
            + both16(SECTOR)                       # logical block size
            + both32(path_table_size)
            + struct.pack("<II", LPATH_LBA, 0)      # L path table, optional L table
            + struct.pack(">II", MPATH_LBA, 0)      # M path table, optional M table
            + root
            + text("", 128) + text("", 128) + text("", 128)  # set, publisher, preparer
            + text("PYEMU MKISO", 128)             # application identifier
            + text("", 37) * 3                     # copyright, abstract, bibliographic
            + _date() * 2                          # creation, modification
            + b"0" * 16 + b"\0"                    # expiration: not specified
            + b"0" * 16 + b"\0"                    # effective: not specified
            + b"\x01")                             # file structure version
    assert len(body) == 882 - 7
    return _descriptor(1, body)


def boot_record_descriptor() -> bytes:
    body = (EL_TORITO_ID.ljust(32, b"\0")          # boot system identifier
            + b"\0" * 32                           # boot identifier
            + struct.pack("<I", CATALOG_LBA))      # absolute pointer to the catalog
    return _descriptor(0, body)


def boot_catalog(load_sectors: int, load_segment: int = 0) -> bytes:
    validation = bytearray(struct.pack("<BBH24sHBB", 0x01, 0x00, 0, b"PYEMU", 0, 0x55, 0xAA))
    checksum = -sum(struct.unpack("<16H", validation)) & 0xFFFF
    struct.pack_into("<H", validation, 28, checksum)
    default = struct.pack("<BBHBBHI20x", 0x88, 0x00, load_segment, 0, 0, load_sectors,
                          BOOT_LBA)
    return _sector(bytes(validation) + default)


def root_directory() -> bytes:
    return _sector(dir_record(b"\0", ROOT_LBA, SECTOR, directory=True)
                   + dir_record(b"\1", ROOT_LBA, SECTOR, directory=True))


def path_table(big_endian: bool) -> bytes:
    """ECMA-119 9.4: one record, the root (identifier 00h, parent 1)."""
    order = ">" if big_endian else "<"
    return struct.pack(f"{order}BBIHBx", 1, 0, ROOT_LBA, 1, 0)


def build_iso(boot_image: bytes, load_sectors: int = 4) -> bytes:
    """The whole image; ``load_sectors`` 512-byte sectors of ``boot_image`` get loaded."""
    length = max(len(boot_image), load_sectors * 512)
    boot = boot_image.ljust(-(-length // SECTOR) * SECTOR, b"\0")
    total = BOOT_LBA + len(boot) // SECTOR
    table_size = len(path_table(False))
    parts = [b"\0" * (16 * SECTOR),
             primary_volume_descriptor(total, table_size),
             boot_record_descriptor(),
             _descriptor(255, b""),
             boot_catalog(load_sectors),
             root_directory(),
             _sector(path_table(False)),
             _sector(path_table(True)),
             boot]
    image = b"".join(parts)
    assert len(image) == total * SECTOR
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("boot_image", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--load-sectors", type=int, default=4,
                        help="512-byte sectors the BIOS loads (default 4)")
    args = parser.parse_args()
    args.output.write_bytes(build_iso(args.boot_image.read_bytes(), args.load_sectors))


if __name__ == "__main__":
    main()
