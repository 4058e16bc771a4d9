#!/bin/sh
# Smoke-test guests under QEMU (not the target emulator; a cross-check of the guests).
# Usage: tests/guests/qemu-smoke.sh [name...]; prints each guest's output and exit status.
# QEMU_EXTRA adds options (e.g. "-icount shift=auto" for guest-independent timing).
# isa-debug-exit turns the guest's write of V to 0xF4 into status (V<<1)|1: 1 = PASS, 3 = FAIL.
cd "$(dirname "$0")" || exit 2
make -s || exit 2
[ $# -gt 0 ] || set -- hello exceptions32 exceptions64 pit uart longmode stringio hlt reset mbstate
rc=0
for g in "$@"; do
    reboot=-no-reboot
    [ "$g" = reset ] && reboot=
    out=$(timeout 30 qemu-system-x86_64 -kernel "build/$g.elf" -append "smoke $g" -m 128 \
        -display none -serial stdio -monitor none -no-user-config -nodefaults \
        -debugcon "file:build/$g.debugcon.txt" \
        -device isa-debug-exit,iobase=0xf4,iosize=0x04 $reboot $QEMU_EXTRA 2>&1)
    st=$?
    printf '%s\n' "$out" | sed 's/^/    /'
    [ -s "build/$g.debugcon.txt" ] && sed 's/^/    debugcon: /' "build/$g.debugcon.txt"
    echo "== $g: qemu exit status $st"
    [ $st -eq 1 ] || rc=1
done
exit $rc
