"""The command line as a user meets it: QEMU spellings, one-line errors, exit status 1."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
from debugexit import DEBUG_EXIT_ARGS
from elftools.elf.elffile import ELFFile

QEMU = shutil.which("qemu-system-x86_64")


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
    (["-d", "int,mmu"], "pyemu: -d int,mmu: mmu: not supported: the engine walks page "
     "tables with no hook to log them ('info tlb' shows the mappings)"),
    (["-serial", "stdio", "-monitor", "stdio"], "pyemu: stdio is used by more than one device"),
    # QEMU options for what pyemu does not have: one line saying what is missing
    (["-accel", "kvm"], "pyemu: -accel kvm: no KVM here: pyemu runs on TCG"),
    (["-enable-kvm"], "pyemu: -enable-kvm: no KVM here: pyemu runs on TCG"),
    (["-machine", "pc,accel=kvm"], "pyemu: -machine pc,accel=kvm: no KVM here: pyemu runs on TCG"),
    (["-accel", "hvf"], "pyemu: -accel hvf: no HVF here: pyemu runs on TCG"),
    (["-cpu", "host"], "pyemu: -cpu host: no KVM here: pyemu runs on TCG ('-cpu max' has all"),
    (["-cpu", "Haswell"], "pyemu: -cpu Haswell: invalid value: unknown CPU model 'Haswell' "
                          "('-cpu help' lists them)"),
    (["-cpu", "qemu64,+ssse3"], "pyemu: -cpu qemu64,+ssse3: pyemu's CPU models take no feature"),
    (["-smp", "2"], "pyemu: -smp 2: pyemu has one CPU"),
    (["-smp", "cpus=1,cores=2"], "pyemu: -smp cpus=1,cores=2: pyemu has one CPU"),
    (["-vga", "std"], "pyemu: -vga std: pyemu has no VGA (-vga none)"),
    (["-nic", "user,model=e1000"], "pyemu: -nic user,model=e1000: pyemu has no network devices"),
    (["-net", "nic"], "pyemu: -net nic: pyemu has no network devices (-net none)"),
    (["-M", "pc,usb=on"], "pyemu: -M pc,usb=on: pyemu's pc has no usb"),
    (["-device", "e1000"], "pyemu: -device e1000: unknown device 'e1000': pyemu's -device adds "
                           "isa-debug-exit, pci-serial ('-device help')"),
    (["-device", "isa-debug-exit,iobase=0x10000"],
     "pyemu: -device isa-debug-exit,iobase=0x10000: iobase=0x10000: 65536 out of range for u16"),
    (["-device", "isa-debug-exit,size=4"],
     "pyemu: -device isa-debug-exit,size=4: isa-debug-exit has no property 'size'"),
    (["-global", "isa-debug-exit.iobase=0x501"], "pyemu: -global isa-debug-exit.iobase=0x501: "
                                                 "pyemu's -global sets no device properties"),
    (["-chardev", "pty,id=p0"], "pyemu: -chardev pty,id=p0: no chardev backend 'pty' here"),
    (["-chardev", "file,path=x"], "pyemu: -chardev file,path=x: needs id=ID"),
    (["-serial", "chardev:c9"], "pyemu: -serial chardev:c9: no -chardev with id 'c9'"),
    (["-chardev", "null,id=c0", "-serial", "chardev:c0", "-serial", "chardev:c0"],
     "pyemu: chardev 'c0' is used by -serial chardev:c0 and -serial chardev:c0; mux=on shares"),
    (["-d", "int,bogus"], "pyemu: -d int,bogus: unknown log item 'bogus'"),
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
    r = pyemu("-cpu", "help")
    assert r.returncode == 0 and r.stdout.startswith(b"Available CPUs:\n  qemu64 ")
    assert b"\n  max " in r.stdout
    r = pyemu("-device", "help")
    assert r.returncode == 0 and r.stdout.startswith(b'name "isa-debug-exit", bus ISA')
    r = pyemu("-d", "help")
    assert r.returncode == 0 and b"\nint " in r.stdout


# What QEMU users type (tests/guests/qemu-smoke.sh runs the same under QEMU).
QEMU_LINE = ("-accel", "tcg", "-machine", "pc,accel=tcg", "-cpu", "qemu64", "-smp", "1",
             "-m", "128", "-display", "none", "-vga", "none", "-nic", "none", "-net", "none",
             "-no-user-config", "-nodefaults", "-serial", "stdio", "-monitor", "none",
             "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-no-reboot")


def test_a_qemu_command_line_runs(guest, pyemu):
    r = pyemu("-kernel", guest("hello"), *QEMU_LINE)
    assert b"PASS hello" in r.stdout, r.stderr
    assert r.returncode == 1 and r.stderr == b""  # the guest's verdict through the device


def test_port_f4_ends_pyemu_only_with_isa_debug_exit(guest, pyemu_proc):
    # As in QEMU: without -device isa-debug-exit, the guest's write to F4h goes nowhere.
    p = pyemu_proc("-kernel", guest("hello"), "-serial", "stdio", "-display", "none")
    out = bytearray()
    _read_until(p, b"PASS hello", out, timeout=30)
    time.sleep(1.0)
    assert p.poll() is None
    p = pyemu_proc("-kernel", guest("hello"), "-serial", "stdio", "-display", "none",
                   "-device", "isa-debug-exit",  # QEMU's default: 0x501
                   "-device", "isa-debug-exit,id=verdict,iobase=0xf4,iosize=4")
    out = bytearray()
    _read_until(p, b"PASS hello", out, timeout=30)
    assert p.wait(30) == 1


def test_a_guests_poweroff_ends_pyemu(guest, tmp_path, pyemu):
    out = tmp_path / "serial.txt"
    r = pyemu("-kernel", guest("poweroff"), "-serial", f"file:{out}", "-monitor", "none")
    assert r.returncode == 0, r.stderr  # ACPI S5: pyemu exits
    assert out.read_text().count("PASS poweroff") == 1


def test_no_shutdown_pauses_at_the_guests_poweroff(guest, tmp_path, start_with_monitor):
    out = tmp_path / "serial.txt"
    proc, mon = start_with_monitor("-kernel", guest("poweroff"), "-serial", f"file:{out}",
                                   "-no-shutdown")
    deadline = time.monotonic() + 30
    while mon.cmd("info status") != "VM status: paused (shutdown)":
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    assert out.read_text().count("PASS poweroff") == 1
    assert mon.cmd("system_reset") == ""  # as QEMU: from shutdown to prelaunch
    assert mon.cmd("info status") == "VM status: paused (prelaunch)"
    assert mon.cmd("cont") == ""
    while out.read_text().count("PASS poweroff") < 2:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    mon.sock.sendall(b"quit\n")
    assert proc.wait(15) == 0


def test_chardevs_serve_serial_ports_and_the_monitor(guest, tmp_path, pyemu_proc, type_into):
    out = tmp_path / "com2.txt"
    p = pyemu_proc("-kernel", guest("hello"), "-display", "none",
                   "-chardev", "stdio,id=con,mux=on,signal=off", "-serial", "chardev:con",
                   "-mon", "chardev=con,mode=readline",
                   "-chardev", f"file,id=f2,path={out}", "-serial", "chardev:f2")
    type_into(p, 2.0, b"\x01cinfo status\r", 0.5, b"quit\r")
    stdout, _ = p.communicate(timeout=15)
    assert b"Hello from pyemu guest" in stdout  # COM1 on the mux's guest side
    assert b"VM status: running" in stdout  # its monitor side (Ctrl-a c)
    assert p.returncode == 0 and out.exists()


def test_mon_control_is_qmp_on_a_socket_chardev(guest, tmp_path, pyemu_proc):
    import socket

    sock = tmp_path / "qmp.sock"
    p = pyemu_proc("-kernel", guest("hello"), "-serial", "null", "-display", "none",
                   "-chardev", f"socket,id=q,path={sock},server=on,wait=off",
                   "-mon", "chardev=q,mode=control")
    deadline = time.monotonic() + 30
    while not sock.exists():
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.05)
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        assert b'"QMP"' in s.recv(4096)


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
    while True:
        # whether it had exited, before reading: what it wrote until then is in the pipe
        # (a guest that exits through isa-debug-exit may finish before the first read)
        exited = proc.poll() is not None
        out += proc.stdout.read() or b""
        if marker in out:
            return
        assert time.monotonic() < deadline and not exited, (marker, bytes(out))
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


def _log_lines(path: Path) -> list[str]:
    return [line.rstrip() for line in path.read_text().splitlines()]


def _qemu_log(kernel: str, items: str, tmp_path: Path, *extra: str) -> list[str]:
    """QEMU's own -d log of the same guest, booted by SeaBIOS and its Multiboot loader."""
    if QEMU is None:
        pytest.fail("qemu-system-x86_64 is missing: 'make qemu' installs it")
    log = tmp_path / "qemu.log"
    subprocess.run([QEMU, "-accel", "tcg", "-nodefaults", "-no-user-config", "-kernel", kernel,
                    "-serial", "null", "-display", "none", "-d", items, "-D", str(log), *extra,
                    *DEBUG_EXIT_ARGS], capture_output=True, timeout=60, check=False)
    return [line for line in _log_lines(log) if not line.startswith("Linking TBs")]


def _int_lines(lines: list[str]) -> list[str]:
    """The deliveries of a -d int log ("     3: v=0d e=1230 i=0 cpl=0 IP=..."); for an
    INT n (i=1) without its IP and pc: unicorn has moved EIP past the instruction when
    the helper sees it."""
    found = [line.removeprefix("pyemu: ") for line in lines]
    found = [line for line in found if re.match(r" *\d+: v=", line)]
    return [re.sub(r"IP=\S+ pc=\S+", "IP=- pc=-", line) if " i=1 " in line else line
            for line in found]


def test_d_int_logs_every_exception_as_qemu(guest, pyemu, tmp_path):
    """#DE, #UD, #GP with a selector's error code, #PF with CR2 and error bits, #DF, INT n
    from ring 3: each delivery as QEMU logs it for the same guest in the same run."""
    kernel = guest("exceptions32")
    log = tmp_path / "int.log"
    r = pyemu("-kernel", kernel, "-serial", "null", "-d", "int", "-D", str(log),
              *DEBUG_EXIT_ARGS)
    assert r.returncode == 1 and r.stderr == b""
    ours = _int_lines(_log_lines(log))
    theirs = _int_lines(_qemu_log(kernel, "int", tmp_path))
    assert len(theirs) > 10 and ours == theirs, "\n".join(ours)
    assert any(" v=80 e=0000 i=1 cpl=3 " in line for line in ours)


def test_d_int_says_servicing_hardware_int(guest, pyemu, tmp_path):
    log = tmp_path / "int.log"
    pyemu("-kernel", guest("pit"), "-serial", "null", "-d", "int", "-D", str(log),
          "-icount", "shift=3", *DEBUG_EXIT_ARGS)
    text = log.read_text()
    assert "Servicing hardware INT=0x20" in text  # IRQ0 at the guest's PIC base 20h
    assert " v=20 e=0000 i=0 cpl=0 " in text


def test_d_cpu_reset_dumps_the_state_before_a_reset(guest, pyemu, tmp_path):
    log = tmp_path / "reset.log"
    r = pyemu("-kernel", guest("reset"), "-serial", "null", "-d", "cpu_reset", "-D", str(log),
              *DEBUG_EXIT_ARGS)
    assert r.returncode == 1 and r.stderr == b""
    lines = log.read_text().splitlines()
    at = lines.index("CPU Reset (CPU 0)")  # QEMU's header, then its dump (FPU and CCOP)
    assert lines[at + 1].startswith("EAX=") and lines[at + 3].startswith("EIP=")
    assert lines[at + 5].startswith("CS =0008 00000000 ffffffff ")  # in protected mode
    assert [line[:4] for line in lines[at + 17:at + 20]] == ["CCS=", "EFER", "FCW="]
    assert lines.count("CPU Reset (CPU 0)") == 1  # the triple fault's; none at power on


def test_d_help_lists_every_item_and_what_is_not_supported(pyemu):
    r = pyemu("-d", "help")
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "Log items (comma separated):"
    names = [line.split()[0] for line in lines[1:]]
    assert names == ["in_asm", "int", "exec", "cpu", "cpu_reset", "unimp", "guest_errors",
                     "mmu", "pcall"]
    assert all(len(line.split(None, 1)) == 2 and line[15] == " " for line in lines[1:])
    assert [line[16:].startswith("not supported: ") for line in lines[-2:]] == [True, True]


# Where pyemu's state at the guest's entry is the same as QEMU's in the -d cpu dump (the
# rest differs by what the boot path left: SeaBIOS's registers, the Multiboot info
# address, CS's accessed bit, the reset values of LDTR/TR).
SAME_AS_QEMU = (2, 3, 5, 6, 7, 8, 13, 14, 15, 17)


def test_d_in_asm_exec_cpu_as_qemu(guest, pyemu, tmp_path):
    """The first block at the Multiboot entry, its trace line and the registers, as QEMU
    logs them for the same guest in the same run."""
    kernel = guest("hello")
    with open(kernel, "rb") as f:
        entry = ELFFile(f).header.e_entry
    log = tmp_path / "trace.log"
    r = pyemu("-kernel", kernel, "-serial", "null", "-d", "in_asm,exec,cpu", "-D", str(log),
              *DEBUG_EXIT_ARGS)
    assert r.returncode == 1 and r.stderr == b""
    lines = _log_lines(log)
    theirs = _qemu_log(kernel, "in_asm,exec,cpu", tmp_path, "-dfilter", f"{entry:#x}+0x20")
    first = f"0x{entry:08x}:  "
    at = next(i for i, line in enumerate(lines) if line.startswith(first))
    q = next(i for i, line in enumerate(theirs) if line.startswith(first))
    assert lines[at - 2:at + 6] == theirs[q - 2:q + 6]  # the block, as QEMU disassembles it
    trace, their_trace = lines[at + 6], theirs[q + 6]
    assert trace.startswith("Trace 0: 0x") and trace.split(" [")[1].rsplit("/", 1)[0] == \
        their_trace.split(" [")[1].rsplit("/", 1)[0]  # CS base, PC, flags
    their_dump = theirs[q + 7:next(i for i in range(q, len(theirs))
                                   if theirs[i].startswith("EFER=")) + 1]
    dump = lines[at + 7:at + 7 + len(their_dump)]
    assert [line.split("=")[0] for line in dump] == [line.split("=")[0] for line in their_dump]
    for i in SAME_AS_QEMU:
        assert dump[i] == their_dump[i]
    assert dump[16].startswith("CCS=") and " CCO=" in dump[16]
    # every block is traced, each first run of its code shown once
    blocks = sum(line.startswith("Trace 0: ") for line in lines)
    shown = lines.count("IN:")
    assert 0 < shown < blocks and lines.count(their_dump[2]) == 1


def test_d_in_asm_follows_the_cpu_into_64_bit_code(guest, pyemu, tmp_path):
    log = tmp_path / "in_asm.log"
    r = pyemu("-kernel", guest("longmode"), "-serial", "null", "-d", "in_asm",
              "-D", str(log), *DEBUG_EXIT_ARGS)
    assert r.returncode == 1 and r.stderr == b""
    text = log.read_text()
    assert "movl     %eax, %ds" in text  # 32-bit code
    assert "leaq     3(%rip), %rax" in text  # 64-bit code: RIP-relative
    assert "Trace 0:" not in text and "EAX=" not in text  # only what was asked


def test_d_unimp_logs_each_port_once(guest, pyemu, tmp_path):
    log = tmp_path / "unimp.log"
    r = pyemu("-kernel", guest("stringio"), "-serial", "null", "-d", "unimp", "-D", str(log),
              *DEBUG_EXIT_ARGS)
    assert r.returncode == 1 and r.stderr == b""
    lines = log.read_text().splitlines()
    assert "unimplemented I/O port 0x218: read (size 1); not logged again" in lines
    ports = [line.split()[3].rstrip(":") for line in lines if line.startswith("unimpl")]
    assert ports and len(ports) == len(set(ports))
    assert not any("unassigned port" in line for line in lines)  # guest_errors is off


def test_a_triple_fault_shows_the_exceptions_that_led_to_it(guest, pyemu):
    # reset.elf: int3 with an IDT of limit 0 -> #GP(IDT vector 3) -> #DF -> shutdown
    r = pyemu("-kernel", guest("reset"), "-serial", "null", "-no-reboot")
    err = r.stderr.decode()
    want = ["pyemu: triple fault; the last exceptions and interrupts before it:",
            "v=03 e=0000 i=1 cpl=0 IP=0008:", "v=0d e=001a i=0 cpl=0 IP=0008:",
            "v=08 e=0000 i=0 cpl=0 IP=0008:", "triple fault: resetting the machine"]
    at = [err.find(w) for w in want]
    assert -1 not in at and at == sorted(at), err
