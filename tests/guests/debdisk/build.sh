#!/usr/bin/env bash
# Builds pyemu's Debian disk, tests/guests/build/debdisk/disk.img: Debian 12 (bookworm)
# made by mmdebstrap (--variant=minbase) with the cloud kernel, initramfs-tools,
# sysvinit-core (a real init running Debian's rc scripts, smaller and quicker to boot
# than systemd), rsyslog and GRUB, on one ext4 partition of a raw MBR disk that boots
# through GRUB to a root login on the serial console. No loop device or mount: mke2fs
# fills the partition from the directory (mkimage.py), GRUB's boot.img and core.img are
# written to the first track as grub-install would. The files in overlay/ go in before
# the kernel is installed (so its initramfs already holds only the IDE modules),
# customize.sh runs last. Downloaded packages stay in build/debdisk/cache, so a rebuild
# needs only the package lists from the network.
# Needs root (mmdebstrap's root mode) and apt-get; installs mmdebstrap and e2fsprogs
# when missing. Idempotent: does nothing when disk.img is newer than every input.
# Exits non-zero with one clear line when something cannot be had.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(cd "$HERE/.." && pwd)/build/debdisk  # canonical: compared with /proc/mounts
CACHE=$OUT/cache
PYTHON=${PYTHON:-python3}
LOG=/tmp/build-debdisk.log
# orphan-sysvinit-scripts: the init scripts Debian's packages (rsyslog) no longer ship.
PACKAGES=sysvinit-core,orphan-sysvinit-scripts,linux-image-cloud-amd64,initramfs-tools,e2fsprogs,rsyslog,grub-pc-bin

up_to_date() {
    [ -f "$OUT/disk.img" ] || return 1
    [ -z "$(find "$HERE" "$HERE/../imagetools.py" -newer "$OUT/disk.img" -print -quit)" ]
}
up_to_date && exit 0

fail() { echo "build-debdisk: $*; see $LOG" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "build-debdisk: must run as root (mmdebstrap's root mode chroots and mounts /proc)" >&2; exit 1; }
: >"$LOG"
if ! command -v mmdebstrap >/dev/null || ! command -v mke2fs >/dev/null; then
    command -v apt-get >/dev/null || { echo "build-debdisk: apt-get is needed to install mmdebstrap and e2fsprogs" >&2; exit 1; }
    if ! apt-cache show mmdebstrap e2fsprogs >>"$LOG" 2>&1; then
        apt-get update -qq >>"$LOG" 2>&1 || fail "'apt-get update' failed (no network?)"
    fi
    apt-get install -y -qq mmdebstrap e2fsprogs >>"$LOG" 2>&1 \
        || fail "'apt-get install mmdebstrap e2fsprogs' failed (no network or package?)"
fi

ROOTFS=$OUT/root.tmp
# mmdebstrap unmounts what it mounted in the chroot (/proc, /sys, /dev); one that was busy
# at that moment (a process on the host walking it) stays mounted, and neither rm nor
# mke2fs may walk into it: detached here.
unmount_leftovers() {
    awk -v root="$ROOTFS/" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r \
        | while read -r mnt; do umount --lazy "$mnt" >>"$LOG" 2>&1 || fail "cannot unmount $mnt"; done
}
unmount_leftovers
rm -rf "$ROOTFS" "$OUT/disk.img"
mkdir -p "$CACHE"
# The cache goes into the chroot before apt downloads and comes back out after it ran.
# Documentation, manuals and translations are left out (dpkg path-exclude).
mmdebstrap --mode=root --variant=minbase --include="$PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --skip=download/empty \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives' \
    --setup-hook="sync-in $CACHE /var/cache/apt/archives" \
    --essential-hook="sync-in $HERE/overlay /" \
    --customize-hook="sync-out /var/cache/apt/archives $CACHE" \
    --customize-hook="$HERE/customize.sh" \
    bookworm "$ROOTFS" >>"$LOG" 2>&1 || fail "mmdebstrap could not make the Debian root file system"
unmount_leftovers
PYTHONDONTWRITEBYTECODE=1 "$PYTHON" "$HERE/mkimage.py" --root "$ROOTFS" --out "$OUT/disk.img" \
    >>"$LOG" 2>&1 || fail "could not make the disk image from $ROOTFS"
rm -rf "$ROOTFS"
