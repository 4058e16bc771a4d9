"""Copies kernel modules and everything they depend on out of a kernel package's module
tree, and writes the order to load them in (dependencies first).

A Debian kernel package carries no modules.dep (depmod makes it at install time), so the
dependencies are read from each module itself: the ``depends=`` string in its ELF
``.modinfo`` section (the kernel's scripts/mod/modpost.c writes it there). Layout facts
from the ELF-64 spec: e_shoff at 0x28, e_shentsize/e_shnum/e_shstrndx at 0x3A-0x3F;
section headers give sh_name (0), sh_offset (0x18), sh_size (0x20). Compressed modules
(.ko.xz) are decompressed, since busybox insmod may not read them.
"""

from __future__ import annotations

import argparse
import lzma
import struct
from pathlib import Path


def modinfo(ko: bytes) -> dict[str, str]:
    """The key=value strings of a little-endian ELF-64 module's .modinfo section."""
    shoff, = struct.unpack_from("<Q", ko, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", ko, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        base = shoff + i * shentsize
        name, = struct.unpack_from("<I", ko, base)
        offset, size = struct.unpack_from("<QQ", ko, base + 0x18)
        return name, offset, size

    _, stroff, _ = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        if ko[stroff + name:ko.index(b"\0", stroff + name)] == b".modinfo":
            pairs = (s.decode(errors="replace").partition("=")
                     for s in ko[offset:offset + size].split(b"\0") if b"=" in s)
            return {k: v for k, _, v in pairs}
    return {}


def index(tree: Path) -> dict[str, Path]:
    """Module name -> file; names treat '-' and '_' alike, as the kernel does."""
    found = {}
    for path in tree.rglob("*.ko*"):
        if path.name.endswith((".ko", ".ko.xz")):
            found[path.name.split(".ko")[0].replace("-", "_")] = path
    return found


def read(path: Path) -> bytes:
    data = path.read_bytes()
    return lzma.decompress(data) if path.name.endswith(".xz") else data


def load_order(tree: Path, wanted: list[str]) -> list[tuple[str, bytes]]:
    """(name, module bytes) for ``wanted`` and their dependencies, dependencies first.
    A wanted module that is not in the tree is taken to be built in and skipped."""
    files = index(tree)
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen or name not in files:
            return
        seen.add(name)
        ko = read(files[name])
        for dep in filter(None, modinfo(ko).get("depends", "").split(",")):
            visit(dep)
        order.append((name, ko))

    for name in wanted:
        visit(name)
    return order


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tree", type=Path, help="the package's /lib/modules/<version>")
    ap.add_argument("modules", nargs="+")
    ap.add_argument("-o", "--output", required=True, type=Path,
                    help="directory for <name>.ko files and 'order'")
    args = ap.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    order = load_order(args.tree, args.modules)
    for name, ko in order:
        (args.output / f"{name}.ko").write_bytes(ko)
    (args.output / "order").write_text("".join(f"{name}\n" for name, _ in order))


if __name__ == "__main__":
    main()
