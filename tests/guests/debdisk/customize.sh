#!/bin/sh
# mmdebstrap's customize hook for pyemu's Debian disk (tests/guests/debdisk/build.sh):
# runs on the host with the finished root file system's directory as $1, after every
# package is installed and before apt's lists and caches are cleaned.
# - sysvinit's inittab: a getty on the serial console (ttyS0, 115200) instead of the six
#   virtual consoles (the board has no display);
# - root has no password: `root` at the login prompt is a login (login and PAM as on any
#   Debian system, without hashing a password, which costs seconds on an emulated CPU);
# - the marker service (overlay/etc/init.d/pyemu-marker) enabled in runlevels 2-5;
# - GRUB laid out as grub-install lays it: its modules in /boot/grub/i386-pc beside
#   boot.img and a core.img (grub-mkimage, run in the chroot) that finds them on the
#   first partition; mkimage.py writes boot.img and core.img to the disk's first track.
set -eu
ROOT=$1
sed -i -e '/^[1-6]:[0-9]*:respawn:\/sbin\/getty/d' "$ROOT/etc/inittab"
echo 'T0:2345:respawn:/sbin/getty -L ttyS0 115200 vt100' >>"$ROOT/etc/inittab"
chroot "$ROOT" passwd --delete root
chroot "$ROOT" update-rc.d pyemu-marker defaults
mkdir -p "$ROOT/boot/grub/i386-pc"
cp "$ROOT"/usr/lib/grub/i386-pc/*.mod "$ROOT"/usr/lib/grub/i386-pc/*.lst \
    "$ROOT"/usr/lib/grub/i386-pc/boot.img "$ROOT/boot/grub/i386-pc/"
chroot "$ROOT" grub-mkimage -O i386-pc -o /boot/grub/i386-pc/core.img \
    -p '(hd0,msdos1)/boot/grub' biosdisk part_msdos ext2
