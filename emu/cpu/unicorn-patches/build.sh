#!/bin/sh
# Build pyemu's CPU engine and install it into a venv: unicorn 2.1.4 from its PyPI
# source distribution, with this folder's patches applied in order (each says what it
# changes and why; notes/speed.md has the measurements), only the x86 target built.
#
# Usage: build.sh VENV_PYTHON
#
# Everything is kept under the venv (VENV/src/unicorn-pyemu): the source archive, and a
# wheel per patch set (named by the patches' hash). Run again with the same patches, it
# only reinstalls that wheel (a second); `make` runs it once per patch set (stamp
# VENV/.unicorn-pyemu). Needs gcc, cmake (from PyPI when the machine
# has none), git (to apply the patches) and PyPI. Each failure is one line on stderr;
# the tools' own output goes to WORK/build.log.
set -eu

PY=${1:?usage: build.sh VENV_PYTHON}
HERE=$(cd "$(dirname "$0")" && pwd)
VENV=$(cd "$(dirname "$PY")/.." && pwd)
WORK=$VENV/src/unicorn-pyemu
LOG=$WORK/build.log
SDIST=$WORK/unicorn-2.1.4.tar.gz

die() {
    echo "unicorn-pyemu: $*" >&2
    exit 1
}

mkdir -p "$WORK"
: > "$LOG"
KEY=$(cat "$HERE"/*.patch | sha256sum | cut -c1-16)
WHEELS=$WORK/wheel-$KEY

if ! ls "$WHEELS"/unicorn-*.whl > /dev/null 2>&1; then
    if [ ! -f "$SDIST" ]; then
        "$PY" -m pip download --quiet --disable-pip-version-check --no-deps \
            --no-binary :all: --dest "$WORK" unicorn==2.1.4 >> "$LOG" 2>&1 \
            || die "cannot download unicorn 2.1.4's source from PyPI (see $LOG)"
    fi
    CMAKE=$(command -v cmake || true)
    if [ -z "$CMAKE" ]; then
        "$PY" -m pip install --quiet --disable-pip-version-check cmake >> "$LOG" 2>&1 \
            || die "no cmake on this machine and none from PyPI (see $LOG)"
        CMAKE=$VENV/bin/cmake
    fi
    command -v git > /dev/null || die "git is needed to apply the patches in $HERE"
    rm -rf "$WORK/tree" "$WORK/build"
    mkdir "$WORK/tree"
    tar -xzf "$SDIST" -C "$WORK/tree" || die "cannot unpack $SDIST"
    SRC=$WORK/tree/unicorn-2.1.4
    for patch in "$HERE"/*.patch; do
        # the ceiling keeps git from taking the project's own repository for this tree's
        (cd "$SRC" && GIT_CEILING_DIRECTORIES="$WORK/tree" git apply -p1 "$patch") \
            >> "$LOG" 2>&1 \
            || die "$(basename "$patch") does not apply to unicorn 2.1.4 (see $LOG)"
    done
    "$CMAKE" -S "$SRC/src" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release \
        -DUNICORN_ARCH=x86 -DUNICORN_BUILD_TESTS=off >> "$LOG" 2>&1 \
        || die "cmake could not configure unicorn (see $LOG)"
    "$CMAKE" --build "$WORK/build" -j "$(nproc)" >> "$LOG" 2>&1 \
        || die "unicorn did not compile (see $LOG)"
    # setup.py packs a library found in prebuilt/ instead of building its own
    cp "$WORK/build/libunicorn.so.2" "$SRC/prebuilt/"
    rm -rf "$WHEELS.tmp"
    "$PY" -m pip wheel --quiet --disable-pip-version-check --no-deps \
        --wheel-dir "$WHEELS.tmp" "$SRC" >> "$LOG" 2>&1 \
        || die "cannot package the engine as a wheel (see $LOG)"
    rm -rf "$WHEELS" "$WORK/tree" "$WORK/build"
    mv "$WHEELS.tmp" "$WHEELS"
fi

"$PY" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall \
    "$WHEELS"/unicorn-*.whl >> "$LOG" 2>&1 || die "cannot install the engine (see $LOG)"
