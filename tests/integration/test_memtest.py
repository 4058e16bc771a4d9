"""memtest86+ 6 from Debian's package (tests/guests/debian/fetch.sh), its x64 and ia32
Linux-boot-protocol images booted by pyemu's Linux loader with a serial console, each
through its first complete test.

memtest draws its screen on the serial port with cursor moves and redraws what changed
about once a second, so the test number shows as "#N  [name]": test 0 has completed once
a later test's number is drawn. `nopause` skips the 3 s in which it waits for a key
before testing (a busy loop of 3000 `usleep(1000)`s polling the keyboard). 32 MiB is
enough: memtest relocates itself and tests all of it in two windows. The full pass, and
the time each engine takes, are bench/guests_boot.py's.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from serialguest import SerialGuest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tests" / "guests" / "build" / "debian"
APPEND = "console=ttyS0,115200 nopause"
BANNER = rb"Memtest86\+ v6\.\d+"
FIRST_TEST = rb"#0 +\[Address test, walking ones, no cache\]"
LATER_TEST = rb"#(?:[1-9]|1[0-9]) +\["
TIMEOUT = 120


@pytest.mark.parametrize("arch", ["x64", "ia32"])
def test_memtest_completes_its_first_test(arch: str) -> None:
    image = BUILD / f"memtest86+{arch}.bin"
    if not image.exists():
        pytest.fail(f"{image} is missing: tests/guests/debian/fetch.sh fetches it "
                    "('make debian-guests')")
    with SerialGuest("-m", "32", "-kernel", str(image), "-append", APPEND) as guest:
        banner = guest.wait_for(BANNER, TIMEOUT)
        first = guest.wait_for(FIRST_TEST, TIMEOUT, banner.end())
        done = guest.wait_for(LATER_TEST, TIMEOUT, first.end())
        print(f"memtest {arch}: test 0 complete after {guest.seconds_to(done):.1f} s")
        screen = guest.out
    # the screen as memtest found the machine: QEMU's CPU model, one CPU, all of the RAM
    # (less what the loader's E820 map reserves at the top)
    assert b"QEMU Virtual CPU version 2.5+" in screen
    assert re.search(rb"CPU: +1 Cores? +1 Threads?", screen), screen[-2000:]
    assert re.search(rb"Memory  : +3[12]MB", screen), screen[-2000:]
    # and found the memory good
    assert re.search(rb"Errors: +0", screen)
    assert not re.search(rb"Errors: +[1-9]", screen), screen[-2000:]
