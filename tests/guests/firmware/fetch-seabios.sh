#!/usr/bin/env bash
# Installs Debian's SeaBIOS (third-party firmware the tests boot) when it is missing.
# Idempotent; exits non-zero with one clear line when the package cannot be had.
set -euo pipefail
BIOS=/usr/share/seabios/bios.bin
[ -f "$BIOS" ] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "fetch-seabios: $BIOS is missing and apt-get is not available to install 'seabios'" >&2
    exit 1
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq seabios; } >/tmp/fetch-seabios.log 2>&1; then
    echo "fetch-seabios: 'apt-get install seabios' failed (no network or package?); see /tmp/fetch-seabios.log" >&2
    exit 1
fi
[ -f "$BIOS" ] || { echo "fetch-seabios: package 'seabios' installed but $BIOS is absent" >&2; exit 1; }
