#!/usr/bin/env bash
# Fetches Debian's cloud kernel (bzImage) and busybox-static with apt-get and builds the
# initramfs the Linux guest tests boot: tests/guests/build/linux/{vmlinuz,rootfs.gz}.
# The IDE disk and CD drivers (ata_piix, sd_mod, sr_mod and what they depend on) are
# modules in that kernel: they are taken from the same package into the initramfs,
# which /init loads.
# The kernel version is discovered from the linux-image-cloud-amd64 metapackage.
# Idempotent; exits non-zero with one clear line when a package cannot be had.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$HERE/../build/linux
PYTHON=${PYTHON:-python3}
LOG=/tmp/fetch-linux-guest.log
MODULES=$OUT/pkgs/modules
[ -f "$OUT/vmlinuz" ] && [ -f "$MODULES/order" ] && [ -f "$OUT/rootfs.gz" ] \
    && [ "$OUT/rootfs.gz" -nt "$HERE/mkinitramfs.py" ] && [ "$OUT/rootfs.gz" -nt "$HERE/init" ] \
    && [ "$MODULES/order" -nt "$HERE/pickmodules.py" ] && [ "$MODULES/order" -nt "$HERE/fetch.sh" ] \
    && exit 0
fail() { echo "fetch-linux: $*; see $LOG" >&2; exit 1; }
command -v apt-get >/dev/null || { echo "fetch-linux: apt-get is needed to fetch the kernel and busybox" >&2; exit 1; }
: >"$LOG"
mkdir -p "$OUT/pkgs"
cd "$OUT/pkgs"

# apt-cache knows nothing until the lists were fetched once.
if ! apt-cache show linux-image-cloud-amd64 >>"$LOG" 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >>"$LOG" 2>&1 || fail "'apt-get update' failed (no network?)"
fi
IMAGE=$(apt-cache depends linux-image-cloud-amd64 2>>"$LOG" \
        | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n1)
[ -n "$IMAGE" ] || fail "no linux-image-*-cloud-amd64 behind the linux-image-cloud-amd64 package"

if [ ! -f "$OUT/vmlinuz" ] || [ ! -f "$MODULES/order" ] || [ "$HERE/pickmodules.py" -nt "$MODULES/order" ] \
        || [ "$HERE/fetch.sh" -nt "$MODULES/order" ]; then
    rm -f ./"$IMAGE"_*.deb
    apt-get download "$IMAGE" >>"$LOG" 2>&1 || fail "'apt-get download $IMAGE' failed (no network or package?)"
    rm -rf kernel && mkdir kernel
    dpkg-deb --fsys-tarfile ./"$IMAGE"_*.deb | tar -x -C kernel ./boot ./lib/modules >>"$LOG" 2>&1 \
        || fail "$IMAGE could not be unpacked"
    cp kernel/boot/vmlinuz-* "$OUT/vmlinuz.tmp" >>"$LOG" 2>&1 || fail "$IMAGE holds no /boot/vmlinuz-*"
    rm -rf "$MODULES.tmp"
    "$PYTHON" "$HERE/pickmodules.py" kernel/lib/modules/*/ ata_piix sd_mod sr_mod -o "$MODULES.tmp" >>"$LOG" 2>&1 \
        || fail "could not take the IDE and CD modules out of $IMAGE"
    rm -rf "$MODULES" && mv "$MODULES.tmp" "$MODULES"
    mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
    rm -rf kernel ./"$IMAGE"_*.deb
fi

if [ ! -x busybox/bin/busybox ]; then
    rm -f ./busybox-static_*.deb
    apt-get download busybox-static >>"$LOG" 2>&1 || fail "'apt-get download busybox-static' failed (no network or package?)"
    rm -rf busybox && mkdir busybox
    dpkg-deb -x ./busybox-static_*.deb busybox
    rm -f ./busybox-static_*.deb
fi
BUSYBOX=$PWD/busybox/bin/busybox
"$PYTHON" "$HERE/mkinitramfs.py" --busybox "$BUSYBOX" --init "$HERE/init" --modules "$MODULES" \
    -o "$OUT/rootfs.gz.tmp"
mv "$OUT/rootfs.gz.tmp" "$OUT/rootfs.gz"
