#!/usr/bin/env bash
# Builds the bootloader CDs from Debian's packages (installed with apt-get when missing):
# tests/guests/build/grub/grub.iso, a GRUB 2 hybrid ISO made by grub-mkrescue (packages
# grub-pc-bin, grub-common, xorriso, mtools), and tests/guests/build/isolinux/
# isolinux.iso, an ISOLINUX hybrid ISO made by xorriso (packages isolinux,
# syslinux-common). Both boot the Linux guest (tests/guests/build/linux/vmlinuz and
# rootfs.gz) on the serial console at once after a marker line of their own; mkisos.py
# does the work and writes a `markers` file beside each ISO.
# Idempotent; exits non-zero with one clear line when a package cannot be had.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "$HERE/.." && pwd)/build
PYTHON=${PYTHON:-python3}
LOG=/tmp/fetch-grub-guest.log
LINUX=$BUILD/linux
for f in vmlinuz rootfs.gz; do
    [ -f "$LINUX/$f" ] || { echo "fetch-grub: $LINUX/$f is missing: run 'make linux-guest' first" >&2; exit 1; }
done

up_to_date() {
    local iso
    for iso in "$BUILD/grub/grub.iso" "$BUILD/isolinux/isolinux.iso"; do
        [ -f "$iso" ] && [ -f "$(dirname "$iso")/markers" ] || return 1
        for input in "$LINUX/vmlinuz" "$LINUX/rootfs.gz" "$HERE/mkisos.py" "$HERE/../imagetools.py" \
                     "$HERE/fetch.sh"; do
            [ "$iso" -nt "$input" ] || return 1
        done
    done
}
up_to_date && exit 0

fail() { echo "fetch-grub: $*; see $LOG" >&2; exit 1; }
: >"$LOG"
PACKAGES="grub-pc-bin grub-common xorriso mtools isolinux syslinux-common"
if ! command -v grub-mkrescue >/dev/null || ! command -v xorriso >/dev/null \
        || ! command -v mformat >/dev/null || [ ! -d /usr/lib/grub/i386-pc ] \
        || [ ! -f /usr/lib/ISOLINUX/isolinux.bin ] \
        || [ ! -f /usr/lib/syslinux/modules/bios/ldlinux.c32 ]; then
    command -v apt-get >/dev/null || { echo "fetch-grub: apt-get is needed to install $PACKAGES" >&2; exit 1; }
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    # shellcheck disable=SC2086 # PACKAGES is a list of words
    if ! apt-cache show $PACKAGES >>"$LOG" 2>&1; then
        $SUDO apt-get update -qq >>"$LOG" 2>&1 || fail "'apt-get update' failed (no network?)"
    fi
    # Another apt-get (make's other fetchers) may hold the lock for a while: wait for it.
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 \
        $PACKAGES >>"$LOG" 2>&1 \
        || fail "'apt-get install $PACKAGES' failed (no network or package?)"
fi
"$PYTHON" "$HERE/mkisos.py" --linux "$LINUX" --out "$BUILD" >>"$LOG" 2>&1 \
    || fail "could not build the GRUB and ISOLINUX CDs"
