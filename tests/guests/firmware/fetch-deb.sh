#!/usr/bin/env bash
# Installs a Debian package the tests boot (third-party firmware or guest) when the file
# the tests use from it is missing: fetch-deb.sh PACKAGE FILE.
# Idempotent; exits non-zero with one clear line when the package cannot be had.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: fetch-deb.sh PACKAGE FILE" >&2; exit 2; }
PKG=$1 FILE=$2
[ -f "$FILE" ] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "fetch-deb: $FILE is missing and apt-get is not available to install '$PKG'" >&2
    exit 1
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
LOG=/tmp/fetch-$PKG.log
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "$PKG"; } >"$LOG" 2>&1; then
    echo "fetch-deb: 'apt-get install $PKG' failed (no network or package?); see $LOG" >&2
    exit 1
fi
[ -f "$FILE" ] || { echo "fetch-deb: package '$PKG' installed but $FILE is absent" >&2; exit 1; }
