"""-kernel as QEMU users give it, end to end: a Multiboot kernel that relies on the entry
state QEMU's loader leaves (checked beside QEMU itself where it is installed), and
Debian's iPXE (ipxe.lkrn), a Linux boot protocol 2.07 image that only enters through its
real-mode setup, at several memory sizes."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from debugexit import DEBUG_EXIT_ARGS, PASS_STATUS

QEMU = shutil.which("qemu-system-x86_64")
SEABIOS = Path("/usr/share/seabios/bios.bin")
IPXE = Path("/boot/ipxe.lkrn")
# mbstate's lines that say what both emulators must agree on (tests/guests/mbstate.c);
# its "at:" lines hold addresses each loader chooses for itself.
SHARED = ("entry:", "gdt:", "info:", "cmdline:", "module ", "PASS ", "FAIL ")


def _shared_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(SHARED)]


def test_multiboot_kernel_takes_interrupts_on_the_loaders_gdt(guest, pyemu, tmp_path):
    """mbstate loads no GDT of its own, checks the entry state and the information
    structure, then takes PIT interrupts through the loader's GDT; under QEMU it prints
    the same state lines and verdict."""
    module = tmp_path / "module.txt"
    module.write_bytes(b"MBSTATE-MODULE\n")
    args = ("-kernel", guest("mbstate"), "-append", "mbstate-args x=1", "-initrd",
            f"{module} modarg", "-m", "128", "-serial", "stdio", "-display", "none",
            "-no-reboot", *DEBUG_EXIT_ARGS)
    start = time.monotonic()
    r = pyemu(*args)
    ours = time.monotonic() - start
    out = r.stdout.decode(errors="replace")
    assert "PASS mbstate" in out and "BAD" not in out, out + r.stderr.decode(errors="replace")
    assert r.returncode == PASS_STATUS
    assert 'cmdline: "' + guest("mbstate") + ' mbstate-args x=1"' in out
    if QEMU is None:
        pytest.fail("qemu-system-x86_64 is missing: 'make qemu' installs it")
    start = time.monotonic()
    q = subprocess.run([QEMU, "-accel", "tcg", "-nodefaults", "-no-user-config", *args],
                       capture_output=True, timeout=60)
    theirs = time.monotonic() - start
    assert _shared_lines(out) == _shared_lines(q.stdout.decode(errors="replace"))
    print(f"mbstate: {ours:.2f} s under pyemu, {theirs:.2f} s under QEMU")


class SerialConsole:
    """A running emulator's stdio serial console, read with a deadline."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.out = b""

    def expect(self, text: bytes, start: int = 0, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.out[start:]:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                tail = self.out[-1500:].decode(errors="replace")
                raise AssertionError(f"no {text!r} on the console; it ends with:\n{tail}")
            if select.select([self.proc.stdout], [], [], min(left, 0.5))[0]:
                self.out += os.read(self.proc.stdout.fileno(), 65536)

    def type(self, keys: bytes) -> None:
        """Key by key, each after the last one's echo: a 16550 FIFO holds 16 bytes and
        iPXE reads its console between other work."""
        for key in keys:
            start = len(self.out)
            self.proc.stdin.write(bytes([key]))
            self.proc.stdin.flush()
            if key >= 0x20:
                self.expect(bytes([key]), start, timeout=10)


@pytest.mark.parametrize("mib, bios", [(128, None), (256, None), (1024, None),
                                       (256, SEABIOS)],
                         ids=["128M", "256M", "1G", "256M-seabios"])
def test_ipxe_reaches_its_prompt(mib, bios, pyemu_proc):
    """The banner, then Ctrl-B for its command line, where a typed command runs (iPXE
    expands ${platform} itself)."""
    for needed in (IPXE, bios):
        if needed is not None and not needed.exists():
            pytest.fail(f"{needed} is missing: 'make firmware' installs Debian's "
                        f"{'ipxe' if needed == IPXE else 'seabios'} package")
    extra = ("-bios", str(bios)) if bios else ()
    start = time.monotonic()
    console = SerialConsole(pyemu_proc("-kernel", str(IPXE), "-m", str(mib), "-nographic",
                                       *extra))
    console.expect(b"iPXE initialising devices...ok")
    console.expect(b"Press Ctrl-B for the iPXE command line")
    banner = time.monotonic() - start
    console.type(b"\x02")
    console.expect(b"iPXE> ")
    console.type(b"echo hello-${platform}\r")
    console.expect(b"hello-pcbios")
    print(f"ipxe -m {mib}{' seabios' if bios else ''}: banner after {banner:.2f} s")
