#!/usr/bin/env python3
"""Build the GRUB 2 and ISOLINUX test CDs from Debian's packages.

Usage: mkisos.py --linux DIR --out BUILD

Both CDs carry the Linux guest (DIR/vmlinuz and DIR/rootfs.gz, tests/guests/linux/)
as /boot/vmlinuz and /boot/rootfs.gz, talk on COM1 and boot it at once with
console=ttyS0, after printing a marker line of their own:

- BUILD/grub/grub.iso: `grub-mkrescue` (grub-pc-bin, grub-common, xorriso) with a
  grub.cfg that puts GRUB's terminal on the serial port (serial --unit=0
  --speed=115200, terminal_input/terminal_output serial), echoes the marker with the
  device it found its files on, and boots its one menu entry (timeout 0). The image is
  hybrid: an El Torito no-emulation CD (eltorito.img, loaded at 0:7C00) and a disk
  whose MBR (boot_hybrid.img) loads GRUB's core image by INT 13h extensions.
- BUILD/isolinux/isolinux.iso: `xorriso -as mkisofs` with ISOLINUX (isolinux.bin as the
  no-emulation boot image with a boot info table, ldlinux.c32 beside it) and
  isohdpfx.bin as its MBR, so it boots as a CD and as a disk; isolinux.cfg says SERIAL
  0 115200, its SAY line, PROMPT 0, TIMEOUT 0.

Each loader prints its marker line twice. Both BIOSes send INT 10h text to COM1 as
SeaBIOS's serial console does, holding the last character back until a timer tick;
the loaders' banners go through INT 10h, their marker lines straight to COM1, so the
banner's last character comes out among later lines (ISOLINUX's just before its SAY
line here) and, with other timing, inside one marker line, never inside both. (Once in
some forty runs under QEMU the single SAY line did not show whole.)

Each directory gets a `markers` file, one "name text" line each: the loader's own
marker (the start of its line), where GRUB says it found its files when booted from a
disk and from a CD (QEMU with SeaBIOS names them so), and the Linux guest's first line
from /init.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from imagetools import need_tools, run, write_markers  # noqa: E402

LINUX_MARKER = "pyemu-linux: init started"  # tests/guests/linux/init
APPEND = "console=ttyS0"
GRUB_MARKER = "pyemu-grub: grub.cfg running from"
SAY = "pyemu-isolinux: SAY line from isolinux.cfg"
GRUB_PC = Path("/usr/lib/grub/i386-pc")  # BIOS GRUB only, whatever else is installed
ISOLINUX = Path("/usr/lib/ISOLINUX")
LDLINUX = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")

GRUB_CFG = f"""\
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set default=0
set timeout=0
echo "{GRUB_MARKER} ($root)"
echo "{GRUB_MARKER} ($root)"
menuentry "Linux guest" {{
    linux /boot/vmlinuz {APPEND}
    initrd /boot/rootfs.gz
}}
"""

ISOLINUX_CFG = f"""\
SERIAL 0 115200
SAY {SAY}
SAY {SAY}
PROMPT 0
TIMEOUT 0
DEFAULT guest
LABEL guest
  KERNEL /boot/vmlinuz
  INITRD /boot/rootfs.gz
  APPEND {APPEND}
"""


def stage_linux(linux: Path, root: Path) -> None:
    """The Linux guest under root/boot/."""
    boot = root / "boot"
    boot.mkdir(parents=True)
    for name in ("vmlinuz", "rootfs.gz"):
        shutil.copyfile(linux / name, boot / name)


def build_grub(linux: Path, out: Path, tmp: Path) -> None:
    root = tmp / "grub"
    stage_linux(linux, root)
    (root / "boot" / "grub").mkdir()
    (root / "boot" / "grub" / "grub.cfg").write_text(GRUB_CFG)
    out.mkdir(parents=True, exist_ok=True)
    iso = out / "grub.iso.tmp"
    iso.unlink(missing_ok=True)
    run("grub-mkrescue", "--directory", str(GRUB_PC), "-o", str(iso), str(root))
    iso.replace(out / "grub.iso")
    write_markers(out, loader=GRUB_MARKER, disk_root="(hd0)", cd_root="(hd96)",
                  linux=LINUX_MARKER)


def build_isolinux(linux: Path, out: Path, tmp: Path) -> None:
    root = tmp / "isolinux"
    stage_linux(linux, root)
    (root / "isolinux").mkdir()
    shutil.copyfile(ISOLINUX / "isolinux.bin", root / "isolinux" / "isolinux.bin")
    shutil.copyfile(LDLINUX, root / "isolinux" / "ldlinux.c32")
    (root / "isolinux" / "isolinux.cfg").write_text(ISOLINUX_CFG)
    out.mkdir(parents=True, exist_ok=True)
    iso = out / "isolinux.iso.tmp"
    iso.unlink(missing_ok=True)
    run("xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso), "-V", "PYEMU_ISOLINUX",
        "-isohybrid-mbr", str(ISOLINUX / "isohdpfx.bin"),
        "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
        "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", str(root))
    iso.replace(out / "isolinux.iso")
    write_markers(out, loader=SAY, linux=LINUX_MARKER)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--linux", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    need_tools("mkisos.py", ("grub-mkrescue", "xorriso", "mformat"),
               "grub-common, xorriso, mtools")
    for path in (ISOLINUX / "isolinux.bin", ISOLINUX / "isohdpfx.bin", LDLINUX):
        if not path.exists():
            sys.exit(f"mkisos.py: {path} is missing (Debian packages isolinux, "
                     "syslinux-common)")
    with tempfile.TemporaryDirectory() as tmp:
        build_grub(args.linux, args.out / "grub", Path(tmp))
        build_isolinux(args.linux, args.out / "isolinux", Path(tmp))


if __name__ == "__main__":
    main()
