"""Debian's own kernels, as Debian ships them (tests/guests/debian/fetch.sh), booted by
pyemu's Linux loader on the serial console:

- linux-image-amd64, the generic 64-bit kernel (XZ-compressed), with the Linux guest's
  busybox initramfs (tests/guests/build/linux/rootfs.gz; its IDE modules belong to the
  cloud kernel and do not load here, quietly);
- linux-image-686, the 32-bit kernel, with the same /init over i386 busybox-static
  (build/debian/rootfs32.gz);
- the generic kernel again through Debian's SeaBIOS, which runs pyemu's linuxboot ROM
  from fw_cfg as it does under QEMU;
- the netboot installer (debian-installer-12-netboot-amd64, text frontend: its `linux`
  and `initrd.gz`), to its first question screen, which it draws on the serial console
  by itself (newt): the language selection.

They boot at once, started by one module-wide fixture, so that their boots share the
machine's cores (each pyemu runs its guest on one); each test then waits for its own
guest. Each guest's time beside QEMU's is bench/guests_boot.py's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from serialguest import SerialGuest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tests" / "guests" / "build"
DEBIAN = BUILD / "debian"
INIT_MARKER = rb"pyemu-linux: init started"
# printed by the installer's own start-up (rootskel's init scripts), after the kernel
# unpacked its 137 MB initramfs and udev loaded the drivers
INSTALLER_STARTED = rb"Starting system log daemon: syslogd, klogd\."
# its first question, a newt dialog drawn with escape sequences between the words
INSTALLER_QUESTION = rb"\[!!\] Select a language"
INSTALLER_PROMPT = rb"Choose the language to be used for the installation process"
# each boot takes 10-30 s of one core (QEMU's time or a little more); four share two
# cores, and a slow machine or PyPI's unpatched engine takes several times longer
BOOT_TIMEOUT = 280
APPEND = "console=ttyS0"
SEABIOS = Path("/usr/share/seabios/bios.bin")

GUESTS = {
    "amd64": ("-m", "256", "-kernel", DEBIAN / "vmlinuz-amd64",
              "-initrd", BUILD / "linux" / "rootfs.gz"),
    "amd64-seabios": ("-m", "256", "-kernel", DEBIAN / "vmlinuz-amd64",
                      "-initrd", BUILD / "linux" / "rootfs.gz", "-bios", SEABIOS),
    "686": ("-m", "256", "-kernel", DEBIAN / "vmlinuz-686", "-initrd", DEBIAN / "rootfs32.gz"),
    "installer": ("-m", "1024", "-kernel", DEBIAN / "installer" / "linux",
                  "-initrd", DEBIAN / "installer" / "initrd.gz"),
}

pytestmark = pytest.mark.linux


@pytest.fixture(scope="module")
def guests() -> Iterator[dict[str, SerialGuest]]:
    for args in GUESTS.values():
        for path in (a for a in args if isinstance(a, Path)):
            if not path.exists():
                pytest.fail(f"{path} is missing: 'make test' fetches it (tests/guests/"
                            "debian/fetch.sh, linux/fetch.sh, the seabios package)")
    started: dict[str, SerialGuest] = {}
    try:
        for name, args in GUESTS.items():
            started[name] = SerialGuest(*map(str, args), "-append", APPEND, "-no-reboot")
        yield started
    finally:
        for guest in started.values():
            guest.close()


def shell(guest: SerialGuest, command: str) -> str:
    """What ``command`` printed on the busybox shell, between marks the shell computes (so
    the echo of the typed line cannot match them)."""
    start = guest.type(f"echo =$((1+1))=; {command}; echo =$((2+2))=")
    begin = guest.wait_for(rb"\n=2=\r?\n", 60, start)
    end = guest.wait_for(rb"\n=4=", 60, begin.end())
    return guest.out[begin.end():end.start()].decode(errors="replace").replace("\r", "")


def reaches_the_shell(guests: dict[str, SerialGuest], name: str, flavour: str) -> str:
    """Waits for the kernel's banner, /init's marker and the prompt of guest ``name``;
    the kernel's release."""
    guest = guests[name]
    banner = guest.wait_for(rb"Linux version (6\.1\.0-\d+-%s) " % flavour.encode(), BOOT_TIMEOUT)
    marker = guest.wait_for(INIT_MARKER, BOOT_TIMEOUT, banner.end())
    guest.wait_for(rb"# ", 30, marker.end())
    print(f"{name}: init marker after {guest.seconds_to(marker):.1f} s")
    return banner.group(1).decode()


def test_generic_amd64_kernel_runs_busybox(guests: dict[str, SerialGuest]) -> None:
    guest = guests["amd64"]
    release = reaches_the_shell(guests, "amd64", "amd64")
    assert shell(guest, "uname -r -m").split() == [release, "x86_64"]
    assert b"Kernel command line: console=ttyS0" in guest.out


def test_generic_amd64_kernel_through_seabios(guests: dict[str, SerialGuest]) -> None:
    guest = guests["amd64-seabios"]
    release = reaches_the_shell(guests, "amd64-seabios", "amd64")
    out = guest.out
    assert out.index(b"SeaBIOS") < out.index(b"Booting from ROM") < out.index(b"Linux version")
    assert shell(guest, "uname -r -m").split() == [release, "x86_64"]
    # setup took the memory map from the firmware's INT 15h E820
    assert b"BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable" in out


def test_686_kernel_runs_32_bit_busybox(guests: dict[str, SerialGuest]) -> None:
    guest = guests["686"]
    release = reaches_the_shell(guests, "686", "686")
    assert shell(guest, "uname -r -m").split() == [release, "i686"]
    # a 32-bit kernel: 256 MiB fit below its 896 MiB direct map, all of it low memory
    assert re.search(rb"\n\[ *[\d.]+\] 0MB HIGHMEM available", guest.out), guest.out[:5000]
    assert re.search(rb"25[56]MB LOWMEM available", guest.out), guest.out[:5000]


def test_installer_starts(guests: dict[str, SerialGuest]) -> None:
    guest = guests["installer"]
    banner = guest.wait_for(rb"Linux version 6\.1\.0-\d+-amd64 ", BOOT_TIMEOUT)
    init = guest.wait_for(rb"Run /init as init process", BOOT_TIMEOUT, banner.end())
    started = guest.wait_for(INSTALLER_STARTED, BOOT_TIMEOUT, init.end())
    question = guest.wait_for(INSTALLER_QUESTION, BOOT_TIMEOUT, started.end())
    guest.wait_for(INSTALLER_PROMPT, 30, question.end())
    print(f"installer: its first line after {guest.seconds_to(started):.1f} s, "
          f"its first question after {guest.seconds_to(question):.1f} s")
    # the kernel unpacked the whole initramfs (an error there is printed, not fatal)
    assert b"Initramfs unpacking failed" not in guest.out
