"""Booting the bootloader CDs (tests/guests/grub/fetch.sh) as a user would, and
watching their serial console for markers.

The GRUB 2 and ISOLINUX hybrid ISOs boot as a CD (`-cdrom ISO -boot d`) or as a disk
(`-drive file=ISO,format=raw,snapshot=on`: nothing written reaches the file, so runs may
share it), through pyemu's own BIOS or Debian's SeaBIOS. tests/integration/test_grub.py
and test_isolinux.py use this; bench/bootloaders.py runs the same command lines under
pyemu and QEMU.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "tests" / "guests" / "build"
SEABIOS = Path("/usr/share/seabios/bios.bin")
ISOS = {"grub": BUILD / "grub" / "grub.iso", "isolinux": BUILD / "isolinux" / "isolinux.iso"}


def markers(loader: str) -> dict[str, str]:
    """The markers file mkisos.py wrote beside the loader's ISO (name -> text)."""
    path = ISOS[loader].parent / "markers"
    if not path.exists() or not ISOS[loader].exists():
        pytest.fail(f"{ISOS[loader]} is missing: 'make grub-guest' builds it "
                    "(tests/guests/grub/fetch.sh)")
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


def machine_args(loader: str, medium: str, firmware: str) -> list[str]:
    """pyemu's (and QEMU's) options for the loader's ISO on ``medium`` ("cd" or "disk")
    through ``firmware`` ("pyemu-bios": the default, none given; "seabios")."""
    iso = ISOS[loader]
    media = (["-cdrom", str(iso), "-boot", "d"] if medium == "cd"
             else ["-drive", f"file={iso},format=raw,snapshot=on"])
    args = ["-m", "256", "-nographic", "-vga", "none", "-nic", "none", "-no-reboot", *media]
    if firmware == "seabios":
        if not SEABIOS.exists():
            pytest.fail(f"{SEABIOS} is missing: 'make firmware' installs Debian's seabios")
        args += ["-bios", str(SEABIOS)]
    return args


def pyemu_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "emu.cli", *args]


def boot_until(argv: list[str], wanted: list[bytes], timeout: float,
               stop: tuple[bytes, ...] = ()) -> tuple[bytes, list[float]]:
    """Start ``argv`` and read its console until each of ``wanted`` has shown, in
    order; then kill it. Returns the output and the seconds from process start to each
    marker. A ``stop`` string, a timeout or an early exit fails, with the output's end."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    os.set_blocking(proc.stdout.fileno(), False)
    out, times = bytearray(), []
    try:
        while len(times) < len(wanted):
            if wanted[len(times)] in out:
                times.append(time.monotonic() - start)
                continue
            tail = bytes(out[-2000:]).decode(errors="replace")
            for bad in stop:
                if bad in out:
                    raise AssertionError(f"{bad!r} before {wanted[len(times)]!r}:\n{tail}")
            if time.monotonic() - start > timeout:
                raise AssertionError(f"no {wanted[len(times)]!r} after {timeout} s:\n{tail}")
            chunk = proc.stdout.read()
            if chunk:
                out += chunk
            elif proc.poll() is not None:
                raise AssertionError(f"exited ({proc.returncode}) before "
                                     f"{wanted[len(times)]!r}:\n{tail}")
            else:
                time.sleep(0.02)
        return bytes(out), times
    finally:
        proc.kill()
        proc.wait(10)
        for f in (proc.stdin, proc.stdout):
            f.close()


def timeline(wanted: list[bytes], times: list[float]) -> str:
    """``'marker' at 1.23 s, ...``: when each marker showed."""
    return ", ".join(f"{w.decode()!r} at {t:.2f} s" for w, t in zip(wanted, times, strict=True))
