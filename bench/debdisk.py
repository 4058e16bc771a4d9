"""Debian disk benchmark: power-on to the login prompt of a real Debian system, pyemu beside
QEMU.

Boots tests/guests/build/debdisk/disk.img (tests/guests/debdisk/build.sh, `make
debian-disk`: Debian 12, GRUB, the cloud kernel, sysvinit) from the IDE disk with writes
kept apart (-snapshot) under pyemu with its own BIOS, pyemu through Debian's SeaBIOS
(--seabios) and `qemu-system-x86_64 -accel tcg` when it is installed, one run each, one
after the other, and prints when each stage of the boot showed on the serial console:
wall seconds from spawning the process, with the CPU seconds it had used by then (which
other load on the machine disturbs less), then pyemu's ratio to QEMU at the login
prompt. With --login it also logs in as root and times `poweroff` to the process's exit.
A run that stops short (a hang, the initramfs giving up) is reported as such.
Usage: python bench/debdisk.py [--seabios] [--login] [--timeout S]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from console import QEMU_NAME, cpu_seconds, engines
from serialguest import SerialGuest

ROOT = Path(__file__).resolve().parents[1]
DISK = ROOT / "tests" / "guests" / "build" / "debdisk" / "disk.img"
GUEST_ARGS = ["-m", "256", "-drive", f"file={DISK},format=raw,if=ide", "-snapshot",
              "-nographic", "-no-reboot"]
# What the console shows, in order: GRUB's core image, the line grub.cfg echoes, the
# kernel, its initramfs's /init, sysvinit, runlevel 2, the marker service, the getty.
STAGES = [
    ("GRUB", b"GRUB loading"),
    ("grub.cfg", b"pyemu-debdisk: GRUB is loading Linux"),
    ("kernel", b"Linux version"),
    ("initramfs", b"Run /init as init process"),
    ("sysvinit", b"INIT: version"),
    ("runlevel 2", b"INIT: Entering runlevel: 2"),
    ("marker", b"pyemu-debdisk: marker service started"),
    ("login", b"login: "),
]
STOP = [b"Gave up waiting for root file system", b"Kernel panic"]


def boot(argv: list[str], login: bool, timeout: float) -> tuple[dict[str, tuple], str]:
    """Stage name -> (wall, CPU) seconds from process start, and why the run stopped
    short ("" when it did not); with ``login`` also the root shell and the exit after
    `poweroff`."""
    times: dict[str, tuple] = {}
    with SerialGuest(argv=argv, stop=STOP) as guest:
        def mark(name: str, pattern: bytes, at: int) -> int:
            left = timeout - (time.monotonic() - guest.started)
            m = guest.wait_for(re.escape(pattern), max(left, 0.0), at)
            times[name] = (guest.seconds_to(m), cpu_seconds(guest.proc.pid))
            return m.end()

        try:
            at = 0
            for name, marker in STAGES:
                at = mark(name, marker, at)
            if login:
                guest.type("root")
                at = mark("shell", b"# ", at)
                guest.type("poweroff")
                mark("power down", b"reboot: Power down", at)
                guest.proc.wait(60)
                times["exit"] = (time.monotonic() - guest.started, float("nan"))
            return times, ""
        except AssertionError as err:
            return times, str(err).splitlines()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seabios", action="store_true")
    ap.add_argument("--login", action="store_true")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    if not DISK.exists():
        sys.exit(f"{DISK} is missing: run tests/guests/debdisk/build.sh (make debian-disk)")
    results = {name: boot([*cmd, *GUEST_ARGS], args.login, args.timeout)
               for name, cmd in engines(args.seabios).items()}
    stages = [name for name, _ in STAGES] + (["shell", "power down", "exit"] if args.login
                                             else [])
    print("Debian 12 disk (GRUB, cloud kernel, sysvinit), -m 256, one run each: wall (CPU) "
          "seconds from start to each console line")
    print(f"{'stage':<11}" + "".join(f"{name:>20}" for name in results))
    for stage in stages:
        cells = []
        for times, _ in results.values():
            wall, cpu = times.get(stage, (None, None))
            cells.append("-" if wall is None else f"{wall:.1f} ({cpu:.1f})")
        print(f"{stage:<11}" + "".join(f"{c:>20}" for c in cells))
    for name, (_, why) in results.items():
        if why:
            print(f"{name} stopped short: {why}")
    qemu = results.get(QEMU_NAME, ({}, ""))[0].get("login")
    for name, (times, _) in results.items():
        if name != QEMU_NAME and qemu and "login" in times:
            print(f"{name} / qemu to the login prompt: {times['login'][0] / qemu[0]:.1f}x wall, "
                  f"{times['login'][1] / qemu[1]:.1f}x CPU")


if __name__ == "__main__":
    main()
