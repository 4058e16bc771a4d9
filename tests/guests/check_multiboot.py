#!/usr/bin/env python3
"""Check built guests: ELF32 i386 executables whose PT_LOAD segments sit at >= 1 MiB and
whose Multiboot v1 header (magic 0x1BADB002, 4-byte aligned, in the first 8192 bytes,
magic + flags + checksum == 0 mod 2**32, flags bit 16 clear) is where a loader looks.
Usage: check_multiboot.py build/*.elf   (exit status 1 if any file fails)."""

import struct
import sys

MB_MAGIC = 0x1BADB002
PT_LOAD = 1


def problems(path: str) -> list[str]:
    data = open(path, "rb").read()
    errs = []
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        return ["not a little-endian ELF32 file"]
    e_type, e_machine, _, e_entry, e_phoff = struct.unpack_from("<HHIII", data, 16)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 42)
    if e_type != 2 or e_machine != 3:
        errs.append(f"type {e_type} machine {e_machine}, want EXEC / i386")
    loads = []
    for i in range(e_phnum):
        p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz = struct.unpack_from(
            "<IIIIII", data, e_phoff + i * e_phentsize)
        if p_type == PT_LOAD:
            loads.append((p_paddr, p_memsz))
            if p_paddr < 0x100000:
                errs.append(f"PT_LOAD at {p_paddr:#x} below 1 MiB")
    if not any(a <= e_entry < a + n for a, n in loads):
        errs.append(f"entry {e_entry:#x} outside the loaded segments")
    for off in range(0, min(len(data), 8192) - 11, 4):
        magic, flags, csum = struct.unpack_from("<III", data, off)
        if magic == MB_MAGIC:
            if (magic + flags + csum) & 0xFFFFFFFF:
                errs.append(f"multiboot header at {off:#x}: bad checksum")
            if flags & (1 << 16):
                errs.append("multiboot flags request the a.out kludge")
            break
    else:
        errs.append("no multiboot header in the first 8192 bytes")
    return errs


def main() -> int:
    bad = 0
    for path in sys.argv[1:]:
        errs = problems(path)
        print(f"{path}: {'ok' if not errs else '; '.join(errs)}")
        bad |= bool(errs)
    return bad


if __name__ == "__main__":
    sys.exit(main())
