"""Debian's gdb drives pyemu's gdb stub (-gdb, -s, -S) as QEMU users drive QEMU's: in
protected mode (a Multiboot guest with symbols), long mode and real mode (the BIOS
booting a disk), and the guest still prints its own verdict afterwards."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from debugexit import DEBUG_EXIT_ARGS, PASS_STATUS


@pytest.fixture(autouse=True)
def _gdb_present() -> None:
    if shutil.which("gdb") is None:
        pytest.fail("gdb is missing: 'make qemu' installs it with QEMU")


def _symbol(elf: str, name: str) -> int:
    out = subprocess.run(["nm", elf], capture_output=True, text=True, check=True).stdout
    return int(re.search(rf"^([0-9a-f]+) \w {name}$", out, re.M).group(1), 16)


def _gdb(target: str, *commands: str, elf: str | None = None) -> str:
    """gdb in batch mode, connected to ``target``; its whole output. gdb takes the
    architecture from the stub (i386:x86-64); a 32-bit ELF's own would be refused,
    so it is set first, as QEMU users do. gdb gives a reply 2 s by default, then
    retransmits and falls out of step: a loaded host must not decide the verdict."""
    args = ["gdb", "-nx", "-batch", "-ex", "set architecture i386:x86-64",
            "-ex", "set confirm off", "-ex", "set remotetimeout 20"]
    if elf:
        args += ["-ex", f"file {elf}"]
    args += ["-ex", f"target remote {target}"]
    for c in commands:
        args += ["-ex", c]
    r = subprocess.run(args, capture_output=True, text=True, timeout=30)
    return r.stdout + r.stderr


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 10
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_break_read_step_monitor_and_run_to_the_end(guest, pyemu_proc):
    """Protected mode: -S holds the guest; break at main, registers zero-extended,
    memory, a step, a monitor command; the guest's exit reaches gdb as its exit code."""
    elf = guest("hello")
    main = _symbol(elf, "main")
    port = _free_port()
    proc = pyemu_proc("-kernel", elf, "-serial", "stdio", "-display", "none", "-S",
                      "-gdb", f"tcp::{port}", *DEBUG_EXIT_ARGS)
    exiting = _symbol(elf, "exiting.0")  # exit_verdict's "static int exiting"
    out = _gdb(f":{port}", "p/x $pc", "break main", "continue", "p/x $rip", "p/x $cs",
               "p/x $rsi", "x/2xb main", "stepi", "p/x $rip", "monitor info status",
               f"watch *(int *){exiting:#x}", "continue", "delete", "continue", elf=elf)
    first_pc = _symbol(elf, "_start")
    assert f"$1 = {first_pc:#x}" in out, out  # -S: not one instruction ran
    assert f"Breakpoint 1, {main:#018x} in main" in out, out
    assert f"$2 = {main:#x}" in out and "$3 = 0x8" in out, out
    assert "$4 = 0x2badb002" in out, out  # Multiboot's magic, zero-extended to 64 bits
    assert re.search(rf"{main:#x} <main>:\s+0x55\s+0x89", out), out  # push %ebp; mov
    assert f"$5 = {main + 1:#x}" in out, out
    assert "VM status: paused" in out, out
    assert "Hardware watchpoint 2" in out and "New value = 1" in out, out
    assert re.search(r"0x[0-9a-f]+ in exit_verdict \(\)", out), out
    assert "exited with code 01" in out, out
    stdout, _ = proc.communicate(timeout=10)
    assert b"PASS hello" in stdout
    assert proc.returncode == PASS_STATUS


def test_long_mode_registers_and_memory_then_detach(guest, pyemu_proc, tmp_path):
    """Long mode: 64-bit values in registers, a linear address above 4 GiB read
    through the guest's page tables; after detach the guest runs on to its verdict."""
    elf = guest("longmode")
    sock = tmp_path / "gdb.sock"
    proc = pyemu_proc("-kernel", elf, "-serial", "stdio", "-display", "none", "-S",
                      "-gdb", f"unix:{sock},server", *DEBUG_EXIT_ARGS)
    _wait_for(sock, proc)
    # 7 instructions into lm_test64: rdx = 0xFFFFFFFF + 1 in a 64-bit register; 7 more:
    # the store through linear 4 GiB + 0x1238
    out = _gdb(str(sock), "break lm_test64", "continue", "p/x $cs", "stepi 7", "p/x $rdx",
               "stepi 7", "x/gx 0x100001238", "detach", elf=elf)
    assert "Breakpoint 1, " in out and "$1 = 0x28" in out, out
    assert "$2 = 0x100000000" in out, out
    assert "0x100001238:\t0x1122334455667788" in out, out
    assert "[Inferior 1 (Remote target) detached]" in out, out
    stdout, _ = proc.communicate(timeout=20)
    assert b"PASS longmode" in stdout, stdout
    assert proc.returncode == PASS_STATUS


def test_real_mode_boot_sector_and_kill(pyemu_proc, tmp_path):
    """Real mode: from the reset vector to the boot sector at 0:7C00 through the BIOS;
    'kill' ends pyemu."""
    sock = tmp_path / "gdb.sock"
    proc = pyemu_proc("-serial", "stdio", "-display", "none", "-S",
                      "-gdb", f"unix:{sock}")
    _wait_for(sock, proc)
    out = _gdb(str(sock), "p/x $cs", "p/x $pc", "break *0x7c00", "continue", "p/x $cs",
               "p/x $rip", "x/2xb 0x7dfe", "stepi", "p/x $rip", "kill")
    assert "$1 = 0xf000" in out and "$2 = 0xfff0" in out, out  # the reset vector
    assert "$3 = 0x0" in out and "$4 = 0x7c00" in out, out
    assert "0x7dfe:\t0x55\t0xaa" in out, out  # the boot signature, loaded by the BIOS
    assert "$5 = 0x7c01" in out, out  # past the one-byte CLI
    proc.communicate(timeout=10)
    assert proc.returncode == 0
