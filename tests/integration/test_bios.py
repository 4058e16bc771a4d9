"""pyemu's own BIOS (firmware/): it builds reproducibly, boots our disks and CDs, and each
BIOS service a boot loader uses answers as the PC interfaces say.

The services are checked from inside the guest by tests/guests/bios/ (a boot sector with a
partition table that loads a second stage with INT 13h extensions); it prints one
PASS/FAIL line per check and INFO lines with values compared here with the command line.
The keyboard and video services real loaders call are compared with SeaBIOS instead: the
same probe prints their answers under both firmwares, in pyemu and in QEMU. And Debian's
SYSLINUX boots from an IDE disk through both.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from debugexit import DEBUG_EXIT_ARGS
from serialguest import boot_until, find_on_screen

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
GUESTS = ROOT / "tests" / "guests" / "build"
SERVICES_IMG = GUESTS / "bios" / "services.img"
SERVICES_ISO = GUESTS / "bios" / "services.iso"
SECTOR = 512
ACPI_AREA = 0x10000  # the board's ACPI tables at the top of low RAM (firmware/acpi.c)


def _make(out_dir: Path | None = None) -> Path:
    args = ["make", "-s", "-C", str(FIRMWARE)]
    if out_dir is not None:
        args.append(f"B={out_dir}")
    subprocess.run(args, check=True, capture_output=True, timeout=120)
    return (out_dir or FIRMWARE / "build") / "bios.bin"


@pytest.fixture(scope="session")
def bios() -> str:
    """firmware/build/bios.bin, brought up to date with its sources."""
    return str(_make())


@pytest.fixture
def media(tmp_path):
    """Private copies of the test guests' disk images (the services test writes)."""
    def copy(path: Path) -> str:
        if not path.exists():
            pytest.fail(f"{path} is missing: 'make guests' builds the test guests")
        dest = tmp_path / path.name
        shutil.copyfile(path, dest)
        return str(dest)
    return copy


def _read_until(proc: subprocess.Popen, marker: bytes, out: bytearray, timeout: float) -> None:
    """Append the process's stdout to ``out`` until ``marker`` appears in it."""
    os.set_blocking(proc.stdout.fileno(), False)
    deadline = time.monotonic() + timeout
    while marker not in out:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {marker!r} in {bytes(out)!r}")
        chunk = proc.stdout.read()
        if chunk:
            out += chunk
        elif proc.poll() is not None:
            raise AssertionError(f"pyemu exited ({proc.returncode}) before {marker!r}: "
                                 f"{bytes(out)!r}")
        else:
            time.sleep(0.02)


def _verdicts(text: str) -> tuple[list[str], list[str]]:
    # The console sends cursor moves (a new line here) and colours as ANSI escapes
    # (firmware/video.c).
    text = re.sub(r"\x1b\[[0-9;]*H", "\n", text)
    lines = re.sub(r"\x1b(\[[0-9;?]*[A-Za-z]|c)", "", text).replace("\r", "").splitlines()
    return ([ln for ln in lines if ln.startswith("PASS ")],
            [ln for ln in lines if ln.startswith("FAIL ")])


@pytest.mark.parametrize("name", ["bios.bin", "linuxboot.bin"])
def test_build_is_reproducible(bios, tmp_path, name):
    first = (_make(tmp_path / "a").parent / name).read_bytes()
    second = (_make(tmp_path / "b").parent / name).read_bytes()
    assert first == second == (Path(bios).parent / name).read_bytes()
    if name == "bios.bin":
        # 64 KiB whose reset vector at F000:FFF0 is a far jump into segment F000h.
        assert len(first) == 64 * 1024
        assert first[0xFFF0] == 0xEA and first[0xFFF3:0xFFF5] == b"\x00\xf0"
    else:
        # an option ROM: 55h AAh, its length in 512-byte blocks, all bytes summing to 0
        assert first[:2] == b"\x55\xaa" and len(first) == first[2] * 512
        assert sum(first) % 256 == 0


def test_boots_our_mbr_from_ide(bios, media, pyemu):
    disk = media(GUESTS / "mbr.img")
    start = time.monotonic()
    r = pyemu("-bios", bios, "-hda", disk, "-nographic", *DEBUG_EXIT_ARGS, timeout=60)
    elapsed = time.monotonic() - start
    out = r.stdout.decode(errors="replace")
    assert "pyemu BIOS" in out
    assert "ata0-0: PYEMU HARDDISK, 1 MiB, drive 80" in out
    assert "PASS mbr: booted by the BIOS from drive 80" in out, out
    assert r.returncode == 1
    print(f"\npyemu BIOS to MBR verdict: {elapsed:.2f} s from process start")


def test_boots_el_torito_cd(bios, pyemu):
    r = pyemu("-bios", bios, "-cdrom", str(GUESTS / "mbr.iso"), "-boot", "d", "-nographic",
              *DEBUG_EXIT_ARGS, timeout=60)
    out = r.stdout.decode(errors="replace")
    assert "ata1-0: PYEMU DVD-ROM, CD-ROM, drive e0" in out
    assert "Booting from CD-ROM e0" in out
    assert "PASS mbr: booted by the BIOS from drive E0" in out, out
    assert r.returncode == 1


@pytest.mark.parametrize(("order", "drive"), [("c", "80"), ("d", "E0"), ("dc", "E0"),
                                              ("cd", "80")])
def test_boot_order_follows_boot_option(bios, media, pyemu, order, drive):
    r = pyemu("-bios", bios, "-hda", media(GUESTS / "mbr.img"), "-cdrom",
              str(GUESTS / "mbr.iso"), "-boot", order, "-nographic", *DEBUG_EXIT_ARGS,
              timeout=60)
    out = r.stdout.decode(errors="replace")
    assert f"PASS mbr: booted by the BIOS from drive {drive}" in out, out
    assert r.returncode == 1


def test_falls_back_to_the_next_boot_device(bios, pyemu, tmp_path):
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(1 << 20))
    r = pyemu("-bios", bios, "-hda", str(blank), "-cdrom", str(GUESTS / "mbr.iso"),
              "-boot", "cd", "-nographic", *DEBUG_EXIT_ARGS, timeout=60)
    out = r.stdout.decode(errors="replace")
    assert "Boot failed: not a bootable disk" in out
    assert "PASS mbr: booted by the BIOS from drive E0" in out, out


@pytest.mark.parametrize("drives", [["-hda", "blank"], []], ids=["blank-disk", "no-drives"])
def test_no_bootable_device_is_reported(bios, pyemu_proc, tmp_path, drives):
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(1 << 20))  # no 55AA signature
    args = [str(blank) if a == "blank" else a for a in drives]
    p = pyemu_proc("-bios", bios, *args, "-nographic")
    out = bytearray()
    _read_until(p, b"No bootable device.", out, timeout=30)


def test_services_from_a_partitioned_disk(bios, media, start_with_monitor):
    disk = media(SERVICES_IMG)
    proc, mon = start_with_monitor("-bios", bios, "-hda", disk, "-m", "64",
                                   "-rtc", "base=2020-01-02T13:14:15", "-nographic",
                                   *DEBUG_EXIT_ARGS)
    out = bytearray()
    _read_until(proc, b"WAIT int16: type a key on the serial console", out, timeout=60)
    proc.stdin.write(b"k")
    proc.stdin.flush()
    _read_until(proc, b"WAIT int16: send shift-a to the keyboard", out, timeout=30)
    mon.cmd("sendkey shift-a")
    _read_until(proc, b"DONE bios:", out, timeout=30)
    _read_until(proc, b"failed\r\n", out, timeout=10)
    assert proc.wait(10) == 1
    text = out.decode(errors="replace")
    passed, failed = _verdicts(text)
    assert not failed, text
    assert "stage1: running" in text
    # -m 64, less the top 64 KiB that hold the board's ACPI tables
    assert f"INFO e820 ram_end={(64 << 20) - ACPI_AREA:08X}" in text
    assert "INFO e820 0000000003FF0000 0000000000010000 3" in text
    assert "INFO rtc date 2020-01-02" in text
    assert "INFO int16 key from serial: ascii 6B scan 25" in text
    assert "INFO int16 key from keyboard: ascii 41 scan 1E" in text
    for service in ("int10 ", "int11 ", "int12 ", "int13 02h", "int13 03h", "int13 41h",
                    "int13 42h", "int13 43h", "int13 48h", "int15 E820", "int15 E801h",
                    "int15 88h", "int15 2400h", "int15 86h", "int16 00h", "int16 05h",
                    "int1a 00h", "int1a 04h", "int1a 00h counts from the RTC time"):
        assert any(line.startswith("PASS " + service) for line in passed), (service, text)
    assert f"DONE bios: {len(passed)} passed, 0 failed" in text
    # What INT 13h AH=03h and AH=43h wrote is in the image.
    image = Path(disk).read_bytes()
    assert image[200 * SECTOR:200 * SECTOR + 13] == b"CHS-WRITE 200"
    assert image[201 * SECTOR:201 * SECTOR + 13] == b"EDD-WRITE 201"
    assert image[202 * SECTOR:202 * SECTOR + 13] == b"EDD-WRITE 202"
    assert image[203 * SECTOR:203 * SECTOR + 13] == b"PYEMU LBA 000"


@pytest.mark.parametrize("mib", [64, 256])
def test_services_from_an_el_torito_cd(bios, pyemu, mib):
    r = pyemu("-bios", bios, "-cdrom", str(SERVICES_ISO), "-boot", "d", "-m", str(mib),
              "-rtc", "base=2020-01-02", "-nographic", *DEBUG_EXIT_ARGS, timeout=60)
    text = r.stdout.decode(errors="replace")
    passed, failed = _verdicts(text)
    assert not failed, text
    assert any(line.startswith("PASS int13 42h reads 2048-byte CD sectors") for line in passed)
    assert any(line.startswith("PASS int13 4B01h") for line in passed)
    assert f"INFO e820 ram_end={(mib << 20) - ACPI_AREA:08X}" in text
    assert f"DONE bios: {len(passed)} passed, 0 failed" in text
    assert r.returncode == 1


# -- the services real loaders call, answered as SeaBIOS answers them -----------------
SEABIOS = Path("/usr/share/seabios/bios.bin")
QEMU = shutil.which("qemu-system-x86_64")
# Where pyemu's BIOS answers otherwise on purpose (firmware/video.c): INT 10h AH=08h
# returns a blank in AX where SeaBIOS's serial console puts it in BH, and AH=0Ah/13h
# write to the console where SeaBIOS's serial console drops them (so the cursor after
# AH=13h differs too). Each maps to what pyemu's BIOS answers.
OWN_ANSWERS = {
    "int10 08h read character": "AX=0720 BX=0000",
    "int10 03h after AH=13h": "DX=0602",
}
# What pyemu's BIOS sends for the probe's AH=0Ah and AH=13h calls: AH=0Ah as AH=09h
# sends it (one character held, three at once), AH=13h as teletype in its attributes.
OWN_VIDEO_PART2 = (b"VIDEO PART 2\r\nA\x1b[05;02HBBB\x1b[05;02H\x1b[06;03H\x1b[0;32;1m"
                   b"str13 moves\r\n\x1b[0;31;1ma\x1b[0;35;1mb\r\n\x1b[0mcursor stays\r\n\n")


@pytest.fixture(scope="session")
def seabios() -> str:
    if not SEABIOS.exists():
        pytest.fail(f"{SEABIOS} is missing: 'make test' installs Debian's seabios package")
    return str(SEABIOS)


def _machine(emulator: str, firmware: str, disk: str, mib: int = 64) -> list[str]:
    if emulator == "qemu":
        # -vga none: no VGA BIOS, so SeaBIOS's serial console is the display, as in pyemu
        return [QEMU, "-nographic", "-vga", "none", "-bios", firmware, "-m", str(mib),
                "-drive", f"file={disk},format=raw,if=ide"]
    return [sys.executable, "-m", "emu.cli", "-bios", firmware, "-m", str(mib), "-hda", disk,
            "-nographic"]


_probe_cache: dict[tuple[str, str], bytes] = {}


def _probe(emulator: str, firmware: str, tmp_path: Path) -> bytes:
    """The services probe's output up to "ANSWERS END" (one run per emulator and
    firmware in this session)."""
    key = (emulator, firmware)
    if key not in _probe_cache:
        if not SERVICES_IMG.exists():
            pytest.fail(f"{SERVICES_IMG} is missing: 'make guests' builds the test guests")
        disk = tmp_path / f"probe-{emulator}-{Path(firmware).stem}.img"
        shutil.copyfile(SERVICES_IMG, disk)
        _probe_cache[key], _ = boot_until(_machine(emulator, firmware, str(disk)),
                                          [b"ANSWERS END"], timeout=60)
    return _probe_cache[key]


def _probe_results(out: bytes) -> tuple[list[str], dict[str, str], bytes, bytes]:
    """(ANSWER lines both firmwares must share, the OWN_ANSWERS lines by name, the bytes
    INT 10h sent from the first part of the video test, those of the second part)."""
    text = out.decode("utf-8", errors="replace").replace("\r", "")
    shared, own = [], {}
    for line in text.splitlines():
        if line.startswith("ANSWER "):
            what = line[len("ANSWER "):].split(":")[0]
            if what in OWN_ANSWERS:
                own[what] = line
            else:
                shared.append(line)
    begin = out.index(b"VIDEO BEGIN\r\n") + len(b"VIDEO BEGIN\r\n")
    part2 = out.index(b"VIDEO PART 2", begin)
    return shared, own, out[begin:part2], out[part2:out.index(b"VIDEO END", part2)]


@pytest.mark.parametrize("emulator", ["pyemu", "qemu"])
def test_services_answer_as_seabios_does(bios, seabios, tmp_path, emulator):
    """The probe (tests/guests/bios/stage2.c) asks INT 16h (00h-12h with scan codes
    sent through the 8042, AH=05h words, the shift flags) and INT 10h (mode, cursor,
    AH=09h/0Eh/06h on the serial console) under pyemu's BIOS and under SeaBIOS: the
    answers and every byte sent to COM1 are SeaBIOS's, except OWN_ANSWERS."""
    if emulator == "qemu" and not QEMU:
        pytest.fail("qemu-system-x86_64 is missing: 'make qemu' installs it")
    ours = _probe_results(_probe(emulator, bios, tmp_path))
    theirs = _probe_results(_probe(emulator, seabios, tmp_path))
    shared, own, video, video2 = ours
    # The bugs real loaders met: AH=12h left AH=12h (SYSLINUX took it for Alt held and
    # stopped at boot:), and AH=09h wrote nothing (SYSLINUX's SAY lines, GRUB's welcome).
    assert "ANSWER int16 12h extended flags: AX=0000 BX=5A5A CX=5A5A DX=5A5A CF=0 ZF=1" \
        in shared
    assert "ANSWER int16 12h of 4C 0F 18: AX=0B4C BX=5A5A CX=5A5A DX=5A5A CF=0 ZF=1" \
        in shared
    assert b"SAY line" in video and b"\x1b[0;33;44;1mcoloured" in video
    assert len(shared) > 90, shared
    assert shared == theirs[0]
    assert video == theirs[2]
    for what, expected in OWN_ANSWERS.items():
        assert expected in own[what], (own[what], theirs[1].get(what))
    assert video2 == OWN_VIDEO_PART2
    assert b"str13" not in theirs[3] and b"BBB" not in theirs[3]
    if emulator == "qemu":
        # ... and each firmware answers in QEMU as it does in pyemu.
        for firmware, result in ((bios, ours), (seabios, theirs)):
            in_pyemu = _probe_results(_probe("pyemu", firmware, tmp_path))
            assert result == in_pyemu, firmware


# -- SYSLINUX from an IDE disk ---------------------------------------------------------
SYSLINUX_DIR = GUESTS / "syslinux"


@pytest.mark.parametrize("firmware", ["pyemu-bios", "seabios"])
def test_syslinux_boots_its_default_entry(bios, seabios, tmp_path, firmware):
    """Debian's SYSLINUX (tests/guests/syslinux/fetch.sh: MBR + FAT16, PROMPT 0,
    TIMEOUT 0) prints its SAY line and boots the kernel, whose first line follows."""
    markers = SYSLINUX_DIR / "markers"
    if not markers.exists():
        pytest.fail(f"{markers} is missing: 'make syslinux-guest' builds the SYSLINUX disk")
    fields = dict(line.split(" ", 1) for line in markers.read_text().splitlines())
    say, first = fields["say"].encode(), fields["first"].encode()
    disk = tmp_path / "syslinux.img"
    shutil.copyfile(SYSLINUX_DIR / "disk.img", disk)
    argv = _machine("pyemu", bios if firmware == "pyemu-bios" else seabios, str(disk), mib=256)
    out, (elapsed,) = boot_until(argv, [first], timeout=120, stop=(b"boot:",))
    assert b"SYSLINUX 6" in out
    assert -1 < find_on_screen(out, say) < find_on_screen(out, first), out
    assert b"boot:" not in out
    print(f"\nSYSLINUX through {firmware} to {first.decode()!r}: {elapsed:.2f} s "
          "from process start")
