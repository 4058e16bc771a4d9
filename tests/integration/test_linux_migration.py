"""Debian's Linux guest (see test_linux.py) snapshotted and live-migrated from the human
monitor, as a user would: the shell at the serial console carries on where it was.

The live test runs a shell loop that rewrites MIB MiB in tmpfs and checks its md5 on every
pass, and migrates it HOPS times in a row over TCP loopback, each time to a fresh bare
destination (``pyemu -incoming``, the machine comes from the stream). The serial console
is each process's stdio: a pipe loses nothing between the switchover and the moment the
test reads it, and the test types into the destination's stdin. The consoles of all the
processes, joined in order, must read as one console: every pass numbered once, in order,
none missing, every one OK.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from test_linux import APPEND, BUILD, MARKER, SEABIOS, Console
from test_migration import free_port, info, listening, wait_for

HOPS = 4  # migrations in a row (each from the last destination); about 6 s each
MIB = 32  # what the loop rewrites each pass (about 1.2 s a pass under pyemu)
LOOP = (f"dd if=/dev/urandom of=/tmp/a bs=1M count={MIB} 2>/dev/null; s=$(md5sum < /tmp/a); "
        "n=0; while true; do cp /tmp/a /tmp/b; t=$(md5sum < /tmp/b); "
        '[ "$s" = "$t" ] && echo "pass $n OK" || echo "pass $n BAD"; n=$((n+1)); done &')
PASS = re.compile(rb"pass (\d+) (\w+)\r?\n")

pytestmark = pytest.mark.linux


class Serial(Console):
    """A console that also tells when its process's output has ended."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.ended = False
        super().__init__(proc)

    def _read(self) -> None:
        super()._read()
        with self.cond:
            self.ended = True
            self.cond.notify_all()

    def all_output(self) -> bytes:
        with self.cond:
            self.cond.wait_for(lambda: self.ended, timeout=10)
            assert self.ended, "the console's output never ended"
            return self.out


class Process:
    """One pyemu: its serial console on stdio and its human monitor on a unix socket."""

    def __init__(self, start, connect_monitor, sock, *args: str) -> None:
        self.proc = start(*args, "-serial", "stdio", "-monitor", f"unix:{sock},server,nowait")
        self.console = Serial(self.proc)
        self.sock = sock
        self.connect_monitor = connect_monitor
        self.mon = None

    def monitor(self):
        """The monitor, once the process has opened it (a destination does so only when
        its machine has arrived)."""
        if self.mon is None:
            self.mon = self.connect_monitor(self.sock, self.proc)
            self.mon.until_prompt()
        return self.mon

    def passes(self, start: int = 0) -> list[tuple[int, bytes]]:
        with self.console.cond:
            return [(int(n), verdict) for n, verdict in PASS.findall(self.console.out, start)]

    def quit(self) -> bytes:
        """End the process; all it wrote to its console."""
        self.mon.sock.sendall(b"quit\n")
        assert self.proc.wait(15) == 0
        return self.console.all_output()

    def alive(self) -> None:
        """The shell answers a command typed now (its answer is computed, so the echo of
        the typed line cannot match)."""
        start = self.console.type("echo alive-$((40+2))")
        self.console.wait_for(rb"\nalive-42\r?\n", start, timeout=30)


@pytest.fixture
def boot(tmp_path, pyemu_proc, connect_monitor):
    """``boot()``: a Linux guest at its shell prompt; ``boot.process(*ARGS)`` another."""
    count = 0

    def process(*args: str) -> Process:
        nonlocal count
        count += 1
        return Process(pyemu_proc, connect_monitor, tmp_path / f"mon{count}.sock", *args)

    def start(*extra: str) -> Process:
        for name in ("vmlinuz", "rootfs.gz"):
            if not (BUILD / name).exists():
                pytest.fail(f"{BUILD / name} is missing: 'make linux-guest' builds it")
        p = process("-m", "256", "-kernel", str(BUILD / "vmlinuz"), "-initrd",
                    str(BUILD / "rootfs.gz"), "-append", APPEND, *extra)
        p.console.wait_for(re.escape(MARKER), timeout=90)
        p.console.wait_for(rb"# ", timeout=30)
        p.monitor()
        return p

    start.process = process
    return start


def test_savevm_and_loadvm_at_the_shell_prompt(boot, tmp_path, monkeypatch):
    monkeypatch.setenv("PYEMU_SNAPSHOT_DIR", str(tmp_path / "snapshots"))
    guest = boot()
    sh = guest.console
    assert sh.run("echo before > /tmp/x; cat /tmp/x").strip() == "before"
    assert guest.mon.cmd("savevm s1") == ""
    assert sh.run("echo after > /tmp/x; cat /tmp/x").strip() == "after"
    assert guest.mon.cmd("loadvm s1") == ""
    assert guest.mon.cmd("info status") == "VM status: running"
    assert sh.run("cat /tmp/x").strip() == "before"
    assert sh.run("echo after-$((6*7)) > /tmp/x; cat /tmp/x").strip() == "after-42"


@pytest.mark.timeout(HOPS * 30 + 120)
def test_a_loop_rewriting_tmpfs_survives_live_migrations_in_a_row(boot):
    src = boot()
    src.console.type(LOOP)
    wait_for(lambda: len(src.passes()) >= 2, timeout=60, what="the loop's first passes")
    consoles: list[bytes] = []
    figures: list[str] = []
    for hop in range(1, HOPS + 1):
        port = free_port()
        dst = boot.process("-incoming", f"tcp:127.0.0.1:{port}", "-allow-files", str(BUILD))
        wait_for(lambda: listening(port) or dst.proc.poll() is not None,  # noqa: B023
                 what="the destination to listen")
        assert src.mon.cmd(f"migrate tcp:127.0.0.1:{port}") == ""
        status = info(src.mon)
        assert status["Migration status"] == "completed", (hop, status)
        figures.append(f"hop {hop}: total {status['total time']}, "
                       f"downtime {status['downtime']}")
        assert src.mon.cmd("info status") == "VM status: paused (postmigrate)"
        last = src.passes()[-1][0]
        # the loop goes on at the destination, and the shell answers there
        wait_for(lambda: any(n >= last + 2 for n, _ in dst.passes()),  # noqa: B023
                 timeout=60, what=f"passes on destination {hop}")
        dst.alive()
        assert dst.monitor().cmd("info status") == "VM status: running"
        consoles.append(src.quit())
        src = dst
    src.alive()
    wait_for(lambda: len(src.passes()) >= 2, what="passes after the last hop")
    consoles.append(src.quit())

    passes = [(int(n), verdict) for n, verdict in PASS.findall(b"".join(consoles))]
    numbers = [n for n, _ in passes]
    assert numbers == list(range(len(numbers))), numbers  # none lost, none repeated
    assert [n for n, verdict in passes if verdict != b"OK"] == []
    print(f"{len(passes)} passes of {MIB} MiB checked over {HOPS} hops;", "; ".join(figures))


def test_a_guest_booted_through_seabios_migrates_and_reboots_there(boot):
    # Booted through SeaBIOS and pyemu's fw_cfg option ROM; the bare destination builds
    # the same machine from the stream (firmware, fw_cfg items, option ROM), so a reboot
    # there goes through SeaBIOS and the ROM again and reaches the shell.
    if not SEABIOS.exists():
        pytest.fail(f"{SEABIOS} is missing: 'make test' installs Debian's seabios package")
    src = boot("-bios", str(SEABIOS))
    assert src.console.run("echo kept > /tmp/k; cat /tmp/k").strip() == "kept"
    port = free_port()
    dst = boot.process("-incoming", f"tcp:127.0.0.1:{port}", "-allow-files", str(BUILD))
    wait_for(lambda: listening(port) or dst.proc.poll() is not None,
             what="the destination to listen")
    assert src.mon.cmd(f"migrate tcp:127.0.0.1:{port}") == ""
    assert info(src.mon)["Migration status"] == "completed"
    assert dst.console.run("cat /tmp/k").strip() == "kept"
    start = dst.console.type("reboot -f")
    dst.console.wait_for(rb"SeaBIOS \(version", start, timeout=30)
    dst.console.wait_for(rb"Booting from ROM", start, timeout=30)
    marker = dst.console.wait_for(re.escape(MARKER), start, timeout=90)
    dst.console.wait_for(rb"# ", marker.end(), timeout=30)
    dst.alive()
    src.quit()
    dst.monitor()
    dst.quit()
