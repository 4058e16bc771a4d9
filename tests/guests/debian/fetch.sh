#!/usr/bin/env bash
# Fetches the public Debian guests that tests/integration/test_memtest.py and
# test_debian_kernels.py boot (and bench/guests_boot.py times beside QEMU) into
# tests/guests/build/debian/:
#   memtest86+x64.bin, memtest86+ia32.bin  memtest86+'s Linux-boot-protocol images
#   vmlinuz-amd64                          the kernel of linux-image-amd64 (XZ bzImage)
#   vmlinuz-686                            the kernel of linux-image-686 (32-bit, i386)
#   rootfs32.gz                            the Linux guest's /init with i386 busybox-static
#                                          (the 686 kernel cannot run the amd64 busybox)
#   installer/{linux,initrd.gz}            the text netboot installer, links into the
#                                          installed debian-installer-12-netboot-amd64
#   versions                               each package used and its version
# The 64-bit kernel boots with the Linux guest's own initramfs (build/linux/rootfs.gz).
# Packages are downloaded with apt-get and only the files above are kept, except the
# installer (133 MB of images), which is installed as the firmware packages are, so a
# machine downloads it once. i386 packages come through a private apt state with its own
# lists (build/debian/apt-i386): the host's dpkg architectures stay as they are.
# Idempotent; exits non-zero with one clear line when a package cannot be had.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
GUESTS=$(cd "$HERE/.." && pwd)
OUT=$GUESTS/build/debian
PYTHON=${PYTHON:-python3}
LOG=/tmp/fetch-debian-guests.log
INIT=$GUESTS/linux/init
MKINITRAMFS=$GUESTS/linux/mkinitramfs.py
DI_PACKAGE=debian-installer-12-netboot-amd64
DI_IMAGES=/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64
OUTPUTS=(memtest86+x64.bin memtest86+ia32.bin vmlinuz-amd64 vmlinuz-686 rootfs32.gz
         installer/linux installer/initrd.gz versions)

up_to_date() {
    local name
    for name in "${OUTPUTS[@]}"; do
        [ -e "$OUT/$name" ] || return 1
    done
    for name in "$HERE/fetch.sh" "$INIT" "$MKINITRAMFS"; do
        [ "$OUT/versions" -nt "$name" ] || return 1
    done
}
up_to_date && exit 0

fail() { echo "fetch-debian: $*; see $LOG" >&2; exit 1; }
command -v apt-get >/dev/null || { echo "fetch-debian: apt-get is needed to fetch the Debian guests" >&2; exit 1; }
: >"$LOG"
mkdir -p "$OUT/pkgs" "$OUT/installer"
cd "$OUT/pkgs"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

# The same apt-get and apt-cache with i386 as the only architecture and lists of their own.
I386=(-o APT::Architecture=i386 -o APT::Architectures::=i386
      -o "Dir::State::Lists=$OUT/apt-i386/lists" -o "Dir::Cache=$OUT/apt-i386/cache")

# apt-cache knows nothing until the lists were fetched once.
if ! apt-cache show memtest86+ linux-image-amd64 >>"$LOG" 2>&1; then
    $SUDO apt-get update -qq >>"$LOG" 2>&1 || fail "'apt-get update' failed (no network?)"
fi
# The private lists are fetched with each fetch, so they are never stale.
mkdir -p "$OUT/apt-i386/lists/partial" "$OUT/apt-i386/cache/archives/partial"
apt-get "${I386[@]}" update -qq >>"$LOG" 2>&1 || fail "'apt-get update' of the i386 lists failed (no network?)"

# The package a metapackage depends on, e.g. linux-image-amd64 -> linux-image-6.1.0-N-amd64.
behind() {
    local meta=$1 pattern=$2; shift 2
    apt-cache "$@" depends "$meta" 2>>"$LOG" | sed -n "s/^ *Depends: \($pattern\)\$/\1/p" | head -n1
}

# download PACKAGE [apt options]: PACKAGE's .deb here, its name and version in versions.
download() {
    local pkg=$1; shift
    rm -f ./"${pkg}"_*.deb
    apt-get "$@" download "$pkg" >>"$LOG" 2>&1 || fail "'apt-get download $pkg' failed (no network or package?)"
    echo "$pkg $(dpkg-deb -f ./"${pkg}"_*.deb Version)" >>"$OUT/versions.tmp"
}

# unpack PACKAGE DEST [tar member patterns]: the downloaded .deb (or those members) into DEST.
unpack() {
    local pkg=$1 dest=$2; shift 2
    rm -rf "$dest" && mkdir -p "$dest"
    dpkg-deb --fsys-tarfile ./"${pkg}"_*.deb | tar -x -C "$dest" --wildcards "$@" >>"$LOG" 2>&1 \
        || fail "$pkg could not be unpacked${*:+ (looked for $*)}"
    rm -f ./"${pkg}"_*.deb
}

# kernel META PATTERN NAME [apt options]: the bzImage of the package behind META as NAME.
kernel() {
    local meta=$1 pattern=$2 name=$3; shift 3
    local image
    image=$(behind "$meta" "$pattern" "$@")
    [ -n "$image" ] || fail "no $pattern behind the $meta package"
    download "$image" "$@"
    unpack "$image" kernel './boot/vmlinuz-*'
    mv kernel/boot/vmlinuz-* "$OUT/$name"
    rm -rf kernel
}

: >"$OUT/versions.tmp"
download memtest86+
unpack memtest86+ memtest './boot/memtest86+x64.bin' './boot/memtest86+ia32.bin'
mv memtest/boot/memtest86+*.bin "$OUT/"
rm -rf memtest

kernel linux-image-amd64 'linux-image-[0-9.]*-[0-9]*-amd64' vmlinuz-amd64
kernel linux-image-686 'linux-image-[0-9.]*-[0-9]*-686' vmlinuz-686 "${I386[@]}"

download busybox-static "${I386[@]}"
unpack busybox-static busybox32 './bin/busybox'
"$PYTHON" "$MKINITRAMFS" --busybox busybox32/bin/busybox --init "$INIT" -o "$OUT/rootfs32.gz.tmp" >>"$LOG" 2>&1 \
    || fail "could not build rootfs32.gz"
mv "$OUT/rootfs32.gz.tmp" "$OUT/rootfs32.gz"
rm -rf busybox32

"$GUESTS/firmware/fetch-deb.sh" "$DI_PACKAGE" "$DI_IMAGES/initrd.gz"
for name in linux initrd.gz; do
    [ -f "$DI_IMAGES/$name" ] || fail "$DI_PACKAGE holds no $DI_IMAGES/$name"
    ln -sfn "$DI_IMAGES/$name" "$OUT/installer/$name"
done
echo "$DI_PACKAGE $(dpkg-query -W -f '${Version}' "$DI_PACKAGE")" >>"$OUT/versions.tmp"
mv "$OUT/versions.tmp" "$OUT/versions"
