"""Debian's Linux 6.1 (cloud kernel) with a busybox initramfs, booted by pyemu's own
Linux loader (-kernel bzImage -initrd -append), or with -bios through the firmware and
fw_cfg, and used on the serial console as a person would: commands typed on stdin, their
output read back.

One guest is booted for the whole module (boot time dominates); each test types a
command and waits for its output followed by a numbered end mark.
"""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from serialguest import SerialGuest, pyemu_argv, start

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tests" / "guests" / "build" / "linux"
MARKER = b"pyemu-linux: init started"
APPEND = "console=ttyS0 acpi=off"
APPEND_ACPI = "console=ttyS0"  # with the ACPI tables pyemu (or SeaBIOS) builds
BOOT_TIMEOUT = 90

pytestmark = pytest.mark.linux


class Console(SerialGuest):
    """pyemu's stdio serial console around a process its caller started (also used by
    test_linux_migration and test_debdisk), waiting 30 s unless told otherwise."""

    def __init__(self, proc: subprocess.Popen) -> None:
        super().__init__(proc=proc)

    def wait_for(self, pattern: bytes, start: int = 0, timeout: float = 30) -> re.Match:
        return super().wait_for(pattern, timeout, start)


@contextmanager
def booted(append: str, *extra: str) -> Iterator[Console]:
    """A guest booted with ``append`` (and ``extra`` pyemu options), at its shell prompt;
    -no-reboot turns the guest's reboot into exit."""
    for name in ("vmlinuz", "rootfs.gz"):
        if not (BUILD / name).exists():
            pytest.fail(f"{BUILD / name} is missing: tests/guests/linux/fetch.sh builds it "
                        "('make linux-guest')")
    console = Console(start(pyemu_argv(
        "-m", "256", "-kernel", str(BUILD / "vmlinuz"), "-initrd", str(BUILD / "rootfs.gz"),
        "-append", append, "-nographic", "-rtc", "base=2020-01-01T00:00:00", "-no-reboot",
        *extra)))
    with console:
        m = console.wait_for(re.escape(MARKER), timeout=BOOT_TIMEOUT)
        console.boot_seconds = console.seconds_to(m)
        console.wait_for(rb"# ", timeout=30)
        yield console


@pytest.fixture(scope="module")
def linux() -> Iterator[Console]:
    with booted(APPEND) as console:
        yield console


def test_boots_to_the_shell(linux: Console) -> None:
    assert b"Linux version 6.1" in linux.out
    print(f"boot to the init marker: {linux.boot_seconds:.1f} s")


def test_shell_arithmetic(linux: Console) -> None:
    assert linux.run("echo hello-$((6*7))").strip() == "hello-42"


def test_proc_cpuinfo(linux: Console) -> None:
    info = linux.run("cat /proc/cpuinfo")
    assert re.search(r"^processor\s*:\s*0$", info, re.M), info
    # QEMU's qemu64, as QEMU's TCG presents it; fast string operations (rep_good)
    assert re.search(r"^vendor_id\s*:\s*AuthenticAMD$", info, re.M), info
    assert re.search(r"^model name\s*:\s*QEMU Virtual CPU version 2\.5\+$", info, re.M), info
    assert re.search(r"^flags\s*:.* rep_good .*\bsvm\b", info, re.M), info


def test_no_page_table_isolation(linux: Console) -> None:
    # an AMD-vendor CPU is not affected by Meltdown, so Linux keeps one page table for
    # kernel and user (PTI would cost every system call and interrupt a CR3 switch)
    assert linux.run("cat /sys/devices/system/cpu/vulnerabilities/meltdown").strip() == \
        "Not affected"
    # a count, not dmesg's lines: the console's own kernel messages may come between
    # the typed command and its output (CI: "clocksource: Switched to clocksource tsc")
    assert linux.run("dmesg | grep -ci 'page tables isolation'").strip() == "0"


def test_proc_interrupts_count_timer_and_serial(linux: Console) -> None:
    text = linux.run("cat /proc/interrupts")
    timer = re.search(r"^\s*0:\s+(\d+)\s.*timer", text, re.M)
    serial = re.search(r"^\s*4:\s+(\d+)\s.*ttyS0", text, re.M)
    assert timer and int(timer.group(1)) > 100, text
    assert serial and int(serial.group(1)) > 0, text


def test_date_comes_from_the_rtc(linux: Console) -> None:
    assert linux.run("date -u +%Y").strip() == "2020"


def test_sleep_takes_a_second(linux: Console) -> None:
    linux.run("true")  # the console is idle from here
    started = time.monotonic()
    linux.run("sleep 1")
    took = time.monotonic() - started
    assert 0.9 <= took <= 2.5, took


def test_reboot_exits_under_no_reboot(linux: Console) -> None:
    # Last: the guest goes away. Without ACPI tables (acpi=off) Linux has no power-off
    # method and 'poweroff -f' halts; its reboot resets through the keyboard controller,
    # which -no-reboot turns into a clean exit.
    linux.type("reboot -f")
    assert linux.proc.wait(30) == 0


def powers_off(linux: Console) -> None:
    """``poweroff -f`` ends pyemu with status 0, and the kernel's last words say it was a
    power-off (status 0 is also what -no-reboot gives a reboot)."""
    start = linux.type("poweroff -f")
    assert linux.proc.wait(30) == 0
    deadline = time.monotonic() + 5  # the reader thread may still be draining the pipe
    while b"reboot: Power down" not in linux.out[start:] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert b"reboot: Power down" in linux.out[start:], linux.out[start:]


def test_acpi_poweroff_exits_with_status_0() -> None:
    # Without acpi=off: Linux finds the FADT and DSDT pyemu builds, learns \_S5 and
    # powers off through PM1a_CNT's SLP_EN, which ends pyemu with status 0. In icount
    # mode: the TSC's refinement against the PM timer must not depend on the host's
    # scheduling (a host stall in realtime mode can make Linux mark the TSC unstable).
    with booted(APPEND_ACPI, "-icount", "shift=3") as linux:
        assert re.search(rb"ACPI: FACP 0x[0-9A-F]+ 000114 \(v06 PYEMU", linux.out), linux.out
        assert b"ACPI: PM: (supports S0 S5)" in linux.out
        # the PM timer is the reference of the TSC's calibration: the virtual TSC's 1 GHz
        linux.wait_for(rb"Refined TSC clocksource calibration: (1000\.0|999\.9)\d\d MHz")
        # ACPI found the PCI root bridge: bus 0 is scanned, IDE included.
        assert "0000:00:01.1" in linux.run("ls /sys/bus/pci/devices")
        powers_off(linux)


SEABIOS = Path("/usr/share/seabios/bios.bin")


@pytest.mark.parametrize("bios, banner", [("bios.bin", b"pyemu BIOS"),
                                          (str(SEABIOS), b"SeaBIOS")], ids=["own", "seabios"])
def test_firmware_boots_the_kernel_through_fw_cfg(bios: str, banner: bytes) -> None:
    # With -bios, -kernel goes through the firmware: it runs pyemu's linuxboot option ROM
    # from fw_cfg (genroms/, first in bootorder), which loads setup, kernel, command line
    # and initrd by fw_cfg DMA and enters setup in real mode; setup takes the memory map
    # from the firmware's INT 15h E820. "bios.bin" is pyemu's own, found by name.
    if banner == b"SeaBIOS" and not SEABIOS.exists():
        pytest.fail(f"{SEABIOS} is missing: 'make test' installs Debian's seabios package")
    with booted(APPEND_ACPI, "-bios", bios) as linux:
        out = linux.out
        assert out.index(banner) < out.index(b"Booting from ROM") < out.index(b"Linux version")
        assert linux.run("cat /proc/cmdline").strip() == APPEND_ACPI
        e820 = linux.run("dmesg | grep BIOS-e820", kernel_lines=True)
        assert "[mem 0x0000000000000000-0x000000000009fbff] usable" in e820, e820
        if banner == b"pyemu BIOS":
            # the BIOS's own reservations (E and F segments; the board's ACPI tables,
            # which it installs at the top of low RAM), not the board's direct map
            assert "[mem 0x00000000000e0000-0x00000000000fffff] reserved" in e820, e820
            assert "[mem 0x000000000fff0000-0x000000000fffffff] ACPI data" in e820, e820
            assert re.search(rb"ACPI: FACP 0x000000000FFF[0-9A-F]{4} 000114 \(v06 PYEMU",
                             linux.out), linux.out
        # ACPI either way (SeaBIOS builds tables of its own) and so a power-off
        assert b"ACPI: PM: (supports S0 S5)" in linux.out
        # and every PCI function stays: SeaBIOS's DSDT reads QEMU's PCI hotplug ports,
        # and ports reading all ones had Linux eject slot 1 (PIIX3, IDE, PM)
        functions = linux.run("ls /sys/bus/pci/devices").split()
        assert functions == ["0000:00:00.0", "0000:00:01.0", "0000:00:01.1",
                             "0000:00:01.3"], functions
        powers_off(linux)


MIB = 1 << 20
SECTOR = 512


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_ide_disk_reads_and_writes_reach_the_image(tmp_path: Path) -> None:
    # A raw 16 MiB image on the primary master, driven by Debian's ata_piix + sd_mod
    # (modules in the initramfs, loaded by /init). The guest reads what the host wrote,
    # and what the guest writes and syncs is in the file once pyemu has exited.
    image = tmp_path / "disk.img"
    first = random.Random(7).randbytes(MIB)
    image.write_bytes(first + bytes(15 * MIB))
    big_at, big_size = 4 * MIB, 8 * MIB
    with booted(APPEND, "-drive", f"file={image},format=raw,if=ide") as linux:
        # sd_mod attaches the disk asynchronously after insmod.
        found = linux.run("for i in $(seq 100); do [ -b /dev/sda ] && break; sleep 0.1; done; "
                          "cat /sys/block/sda/size")
        assert found.strip() == str(16 * MIB // SECTOR), found + linux.run(
            "dmesg | tail -20", kernel_lines=True)
        assert linux.run("head -c 1048576 /dev/sda | md5sum", timeout=60).split()[0] == md5(first)
        linux.run("printf pyemu-disk-ok | dd of=/dev/sda bs=512 seek=100 conv=notrunc")
        # A large file made in tmpfs, its md5 taken by the guest, then written to the disk.
        # (Short command lines: the shell's line editor redraws long ones.)
        linux.run(f"head -c {big_size} /dev/urandom >/tmp/big", timeout=120)
        summed = linux.run("md5sum </tmp/big", timeout=120)
        guest_md5 = re.search(r"\b[0-9a-f]{32}\b", summed)
        assert guest_md5, summed
        linux.run(f"dd if=/tmp/big of=/dev/sda bs=1M seek={big_at // MIB} conv=notrunc",
                  timeout=120)
        linux.run("sync", timeout=120)
        linux.type("reboot -f")
        assert linux.proc.wait(30) == 0
    data = image.read_bytes()
    assert len(data) == 16 * MIB
    assert data[100 * SECTOR:100 * SECTOR + 13] == b"pyemu-disk-ok"
    assert data[:100 * SECTOR] == first[:100 * SECTOR]  # the neighbours are untouched
    assert data[100 * SECTOR + 13:MIB] == first[100 * SECTOR + 13:]
    assert md5(data[big_at:big_at + big_size]) == guest_md5.group()
