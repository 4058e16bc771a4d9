"""The command line as a user meets it: QEMU spellings, one-line errors, exit status 1."""

from __future__ import annotations

import os
import struct
import subprocess
import time
from pathlib import Path

import pytest

from debugexit import DEBUG_EXIT_ARGS

@pytest.mark.parametrize("args, message", [
    (["-frobnicate"], "pyemu: -frobnicate: invalid option"),
    (["-m", "lots"], "pyemu: -m lots: invalid value"),
    (["-m", "1M"], "pyemu: -m 1M: invalid value: at least 2 MiB of RAM is needed"),
    (["-M", "q35"], "pyemu: -M q35: invalid value: unsupported machine type 'q35'"),
    (["-kernel"], "pyemu: -kernel: requires an argument"),
    (["-kernel", "/nonexistent.elf", "-serial", "null"],
     "pyemu: -kernel /nonexistent.elf: No such file or directory"),
    (["-serial", "bogus:thing"], "pyemu: -serial bogus:thing: chardev 'bogus:thing': unknown"),
    (["-icount", "shift=99"], "pyemu: -icount shift=99: invalid value"),
    (["-d", "nonsense"], "pyemu: -d nonsense: unknown log item 'nonsense'"),
    (["-serial", "stdio", "-monitor", "stdio"], "pyemu: stdio is used by more than one device"),
])
def test_bad_command_line_is_one_line_error(args, message, pyemu):
    r = pyemu(*args)
    err = r.stderr.decode()
    assert r.returncode == 1
    assert err.startswith(message), err
    assert err.count("\n") == 1, f"one line expected, got:\n{err}"
    assert r.stdout == b""


def test_not_a_multiboot_kernel(tmp_path, pyemu):
    bad = tmp_path / "plain.bin"
    bad.write_bytes(b"\x90" * 10000)
    r = pyemu("-kernel", str(bad), "-serial", "null")
    assert r.returncode == 1
    assert r.stderr.decode().strip() == f"pyemu: {bad}: no multiboot header in the first 8192 bytes"


def test_kernel_too_big_for_ram(guest, pyemu, tmp_path):
    r = pyemu("-kernel", guest("hello"), "-m", "2", "-initrd", guest("hello") + "," +
              guest("exceptions32") + "," + guest("exceptions64"), "-serial", "stdio",
              *DEBUG_EXIT_ARGS)
    assert r.returncode == 1 or b"PASS hello" in r.stdout  # fits or refuses, never crashes
    assert b"Traceback" not in r.stderr


def test_help_and_version(pyemu):
    r = pyemu("-h")
    assert r.returncode == 0 and b"-kernel FILE" in r.stdout
    r = pyemu("-version")
    assert r.returncode == 0 and r.stdout.startswith(b"pyemu version ")
    r = pyemu("-M", "help")
    assert r.returncode == 0 and b"pc " in r.stdout


DEMO_BANNER = b"pyemu demo guest: the machine is alive."
DEMO_IMG = Path(__file__).resolve().parents[2] / "emu" / "guests" / "demo.img"


def test_default_guest_boots_and_ctrl_a_x_quits(pyemu_proc, type_into):
    # no guest options: the bundled demo guest; Ctrl-a x on the console ends pyemu
    p = pyemu_proc()
    type_into(p, 2.0, b"abc\r", 1.0, b"\x01x")
    out, err = p.communicate(timeout=20)
    assert b"pyemu BIOS" in out and DEMO_BANNER in out
    assert out.index(b"pyemu BIOS") < out.index(DEMO_BANNER)  # booted by the firmware
    assert b"abc" in out  # typed keys echoed by the guest's UART interrupt handler
    assert b"pyemu: terminated" in out
    assert p.returncode == 0, err


def _read_until(proc: subprocess.Popen, marker: bytes, out: bytearray, timeout: float) -> None:
    os.set_blocking(proc.stdout.fileno(), False)
    deadline = time.monotonic() + timeout
    while marker not in out:
        assert time.monotonic() < deadline and proc.poll() is None, (marker, bytes(out))
        out += proc.stdout.read() or b""
        time.sleep(0.02)


def test_default_guest_comes_from_its_disk_through_the_bios(pyemu_proc):
    # the MBR of demo.img loads the demo with INT 13h extensions and enters it at 0x10000
    p = pyemu_proc("-nographic")
    out = bytearray()
    _read_until(p, DEMO_BANNER, out, timeout=30)
    assert out.index(b"Booting from hard disk 80...") < out.index(DEMO_BANNER)
    assert b"Boot failed" not in out and b"demo.img:" not in out
    mark = len(out)
    p.stdin.write(b"hi there\r")
    p.stdin.flush()
    _read_until(p, b"hi there\n\r", out, timeout=10)  # echoed, Enter as a new line
    p.stdin.write(b"\x01cinfo block\n")
    p.stdin.flush()
    _read_until(p, b"Attached to:", out, timeout=10)
    assert f"ide0-hd0: {DEMO_IMG} (raw, read-only)".encode() in out[mark:]


def test_demo_image_is_a_partitioned_disk():
    image = DEMO_IMG.read_bytes()
    assert len(image) % 512 == 0 and len(image) <= 8192
    assert image[510:512] == b"\x55\xaa"
    entry = image[0x1BE:0x1CE]
    assert entry[0] == 0x80 and entry[4] == 0xDA  # active, non-file-system data
    first, count = struct.unpack_from("<II", entry, 8)
    assert first == 1 and first + count == len(image) // 512
    assert image[0x1CE:0x1FE] == bytes(48)  # the other three entries unused


def test_log_items_go_to_the_log_file(guest, pyemu, tmp_path):
    log = tmp_path / "pyemu.log"
    r = pyemu("-kernel", guest("stringio"), "-serial", "null", "-d", "guest_errors,cpu_reset",
              "-D", str(log), *DEBUG_EXIT_ARGS)
    assert r.returncode == 1 and r.stderr == b""
    text = log.read_text()
    assert "read of unassigned port 0x218 (size 4)" in text
    assert "machine reset: power on" in text
