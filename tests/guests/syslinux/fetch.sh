#!/usr/bin/env bash
# Builds the SYSLINUX test disk, tests/guests/build/syslinux/disk.img, from Debian's
# syslinux packages (installed with apt-get when missing): an MBR (SYSLINUX's mbr.bin)
# and one FAT16 partition holding SYSLINUX (`syslinux --install --offset`), a
# syslinux.cfg that talks on COM1 and boots at once with a SAY line first, and a kernel:
# the Linux guest (tests/guests/build/linux/vmlinuz) when it is there, else the
# Multiboot test guest build/hello.elf through mboot.c32. mkdisk.py does the work and
# writes build/syslinux/markers (the SAY line and the kernel's first line).
# Idempotent; exits non-zero with one clear line when a package cannot be had.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$HERE/../build
OUT=$BUILD/syslinux
PYTHON=${PYTHON:-python3}
LOG=/tmp/fetch-syslinux-guest.log
KERNEL=$BUILD/linux/vmlinuz
[ -f "$KERNEL" ] || KERNEL=$BUILD/hello.elf
[ -f "$KERNEL" ] || { echo "fetch-syslinux: neither build/linux/vmlinuz nor build/hello.elf: run 'make guests' or 'make linux-guest' first" >&2; exit 1; }
KERNEL=$(realpath "$KERNEL")

up_to_date() {
    [ -f "$OUT/disk.img" ] && [ -f "$OUT/markers" ] || return 1
    for input in "$KERNEL" "$HERE/mkdisk.py" "$HERE/../imagetools.py" "$HERE/fetch.sh"; do
        [ "$OUT/disk.img" -nt "$input" ] || return 1
    done
    grep -qx "kernel $KERNEL" "$OUT/markers"
}
up_to_date && exit 0

fail() { echo "fetch-syslinux: $*; see $LOG" >&2; exit 1; }
: >"$LOG"
# syslinux: the installer; syslinux-common: mbr.bin and the .c32 modules; mtools: the
# FAT formatter and copier the installer works through.
if ! command -v syslinux >/dev/null || ! command -v mformat >/dev/null \
        || [ ! -f /usr/lib/syslinux/mbr/mbr.bin ]; then
    command -v apt-get >/dev/null || { echo "fetch-syslinux: apt-get is needed to install syslinux, syslinux-common and mtools" >&2; exit 1; }
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    if ! apt-cache show syslinux syslinux-common mtools >>"$LOG" 2>&1; then
        $SUDO apt-get update -qq >>"$LOG" 2>&1 || fail "'apt-get update' failed (no network?)"
    fi
    $SUDO apt-get install -y -qq syslinux syslinux-common mtools >>"$LOG" 2>&1 \
        || fail "'apt-get install syslinux syslinux-common mtools' failed (no network or package?)"
fi
mkdir -p "$OUT"
"$PYTHON" "$HERE/mkdisk.py" --kernel "$KERNEL" --out "$OUT" >>"$LOG" 2>&1 \
    || fail "could not build the SYSLINUX disk"
