"""Finish an option ROM image: pad it to whole 512-byte blocks, store the block count at
offset 2, make the PnP expansion header (pointer at 1Ah) sum to zero, then the whole
image (its last byte is the adjustment), as the BIOS Boot Specification 1.01 requires.
Usage: romsum.py IN OUT
"""

import struct
import sys

BLOCK = 512
PNP_POINTER = 0x1A
PNP_CHECKSUM = 9  # within the header; the header's length is byte 5, in 16-byte units


def _fix(data: bytearray, start: int, length: int, at: int) -> None:
    data[at] = 0
    data[at] = -sum(data[start:start + length]) & 0xFF


def finish(rom: bytes) -> bytes:
    data = bytearray(rom)
    if data[:2] != b"\x55\xaa":
        raise SystemExit("romsum: not an option ROM (no 55h AAh at the start)")
    data += bytes(-(len(data) + 1) % BLOCK + 1)  # room for the checksum byte
    if len(data) // BLOCK > 255:
        raise SystemExit(f"romsum: {len(data)} bytes is over 255 blocks")
    data[2] = len(data) // BLOCK
    pnp = struct.unpack_from("<H", data, PNP_POINTER)[0]
    if pnp:
        if data[pnp:pnp + 4] != b"$PnP":
            raise SystemExit(f"romsum: no $PnP header at {pnp:#x}")
        _fix(data, pnp, data[pnp + 5] * 16, pnp + PNP_CHECKSUM)
    _fix(data, 0, len(data), len(data) - 1)
    return bytes(data)


if __name__ == "__main__":
    src, dst = sys.argv[1:]
    with open(src, "rb") as f:
        image = finish(f.read())
    with open(dst, "wb") as f:
        f.write(image)
