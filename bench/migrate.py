"""Live migration benchmark: pyemu against QEMU TCG over loopback TCP, in one run.

Each case starts a source and a destination process of one emulator, lets the guest run
about a second, migrates, and reads the emulator's own figures (pyemu: ``info migrate``
on its human monitor; QEMU: ``query-migrate`` over QMP). Medians of --repeat runs, at
QEMU's defaults (downtime-limit 300 ms, max-bandwidth 128 MiB/s) unless the row says
otherwise. Both emulators run the same Multiboot guests: pyemu's bundled demo guest
(idle, HLT between timer ticks) and tests/guests' dirty.elf, which rewrites and checks a
buffer every round and prints "round N ok". After each migration the destination's
serial output must go on from where the source's stopped, with no FAIL; anything else
is reported as a corruption. Downtime: QEMU's runs from the stop until the source has
sent the last byte; pyemu prints that figure and then its own, until the destination
has loaded the guest and answered that it runs ("sent / running"). Totals likewise:
QEMU's migration (without its return-path capability, off by default) completes once
the source has sent the last byte, pyemu's once the destination answered that the
guest runs there (the handshake that keeps one running copy). The ratios: pyemu's total
over QEMU's; pyemu's total up to its last byte sent (total - running + sent) over
QEMU's, like with like; downtimes to the last byte. pyemu's destination is bare
(`pyemu -incoming`: it builds the machine from the stream's description, ~5 ms for
the demo guest) except in the rows marked "shaped", where it gets the source's machine
options as QEMU's destination always does.

The Linux rows boot Debian's cloud kernel with the busybox initramfs (tests/guests/linux,
`make linux-guest`) with the same kernel, initrd and command line on both emulators; the
serial console is a unix socket the bench types into. Idle, the guest sits at its shell
prompt; otherwise a shell loop rewrites MIB MiB in tmpfs and checks its md5 every pass,
printing "pass N OK" (or BAD). The destination must go on passing, never BAD, and its
shell must answer a command typed there.
Usage: python bench/migrate.py [--repeat N] [--cases a,b,...]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from qmp import (  # noqa: E402
    QEMU,
    Hmp,
    Qmp,
    QmpError,
    _connect_unix,
    free_port,
    listening,
    qemu_argv,
    stop,
)

ROOT = Path(__file__).resolve().parent.parent
PYEMU = ROOT / ".venv" / "bin" / "pyemu"
DEMO = ROOT / "emu" / "guests" / "demo.elf"
DEMO_IMG = ROOT / "emu" / "guests" / "demo.img"
DIRTY = ROOT / "tests" / "guests" / "build" / "dirty.elf"
MIB = 1 << 20
DEFAULT_BANDWIDTH = 128 * MIB
NO_CAP_QEMU = 1 << 40  # QEMU has no "unlimited": 1 TiB/s
ROUND = re.compile(r"round (\d+) ok")
LINUX = ROOT / "tests" / "guests" / "build" / "linux"
LINUX_APPEND = "console=ttyS0 noapic nolapic acpi=off"
LINUX_PROMPT = "/ # "
OOPS = re.compile(r"(BUG: |general protection fault|Oops|Kernel panic)[^\r\n]*")
PASS = re.compile(r"pass (\d+) (\w+)\r?\n")
LOOP = ("dd if=/dev/urandom of=/tmp/a bs=1M count={mib} 2>/dev/null; s=$(md5sum < /tmp/a); "
        "n=0; while true; do cp /tmp/a /tmp/b; t=$(md5sum < /tmp/b); "
        '[ "$s" = "$t" ] && echo "pass $n OK" || echo "pass $n BAD"; n=$((n+1)); done &')


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    append: str | None  # None: the demo guest; else dirty.elf with this command line
    ram_mib: int = 128
    capped: bool = True
    auto_converge: bool = False
    linux_mib: int | None = None  # Linux instead: 0 idle, else the loop's MiB per pass
    # pyemu's destination started with the source's machine options, as QEMU's always
    # is, instead of bare (building the machine from the stream's description)
    shaped: bool = False

    @property
    def linux(self) -> bool:
        return self.linux_mib is not None


CASES = (
    Case("a", "idle demo guest, 128 MiB", None),
    Case("a-shaped", "idle demo guest, 128 MiB, shaped destination", None, shaped=True),
    Case("a-nocap", "idle demo guest, 128 MiB, no cap", None, capped=False),
    Case("a-dirty", "dirty mib=1 period=1000, 128 MiB", "mib=1 period=1000"),
    Case("a-dirty-shaped", "dirty mib=1 period=1000, shaped destination", "mib=1 period=1000",
         shaped=True),
    Case("b", "rewrite 32 MiB/20 ms, 128 MiB", "mib=32 period=20"),
    Case("b-ac", "rewrite 32 MiB, 128 MiB, auto-converge", "mib=32 period=20",
         auto_converge=True),
    Case("c", "rewrite 128 MiB/20 ms, 512 MiB", "mib=128 period=20", ram_mib=512),
    Case("c-nocap", "rewrite 128 MiB, 512 MiB, no cap", "mib=128 period=20", ram_mib=512,
         capped=False),
    Case("linux", "Linux idle at the shell, 256 MiB", None, ram_mib=256, linux_mib=0),
    Case("linux-loop", "Linux rewriting 32 MiB in tmpfs, 256 MiB", None, ram_mib=256,
         linux_mib=32),
)


class SerialLink:
    """A client of an emulator's serial unix socket: what arrives is appended to a file
    (so the checks read it like a file backend's), and lines can be typed."""

    def __init__(self, path: Path, out: Path, proc: subprocess.Popen) -> None:
        self.sock = _connect_unix(path, 30, proc)
        self.out = out.open("ab", buffering=0)
        self.thread = threading.Thread(target=self._copy, daemon=True)
        self.thread.start()

    def _copy(self) -> None:
        try:
            while chunk := self.sock.recv(65536):
                self.out.write(chunk)
        except OSError:
            pass

    def type(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)
        self.out.close()


@dataclass
class Run:
    total_ms: int = 0
    downtime_ms: int = 0
    sent_ms: int = 0  # stop to the last byte sent: QEMU's downtime
    mib_sent: float = 0.0
    rewrite_mibs: float = 0.0  # how fast the guest rewrote memory before the migration
    error: str = ""  # "did not converge", "failed: ...": no figures
    corruption: str = ""  # what the destination's guest showed wrong

    @property
    def last_byte_ms(self) -> int:
        """From the start to the last byte sent: where QEMU's total ends."""
        return self.total_ms - self.downtime_ms + self.sent_ms


class Side:
    """One emulator's source and destination processes for one migration."""

    name = ""

    def __init__(self, case: Case, tmp: Path, timeout: float) -> None:
        self.case, self.tmp, self.timeout = case, tmp, timeout
        self.port = free_port()
        self.src_serial, self.dst_serial = tmp / "src.serial", tmp / "dst.serial"
        self.procs: list[subprocess.Popen] = []
        self.links: dict[str, SerialLink] = {}
        self.log = (tmp / "emulator.log").open("ab")

    def serial(self, end: str) -> str:
        """The -serial of the source or the destination (``end``): a file, or for Linux a
        unix socket server; a source waits for the bench to connect, so nothing of its
        boot is lost."""
        if not self.case.linux:
            return f"file:{self.tmp / (end + '.serial')}"
        wait = "on" if end == "src" else "off"
        return f"unix:{self.tmp / (end + '.sock')},server=on,wait={wait}"

    def attach(self, end: str, proc: subprocess.Popen) -> None:
        if self.case.linux:
            self.links[end] = SerialLink(self.tmp / f"{end}.sock",
                                         self.tmp / f"{end}.serial", proc)

    def spawn(self, argv: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                stderr=subprocess.STDOUT, cwd=self.tmp)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            stop(proc)
        for link in self.links.values():
            link.close()
        self.log.close()

    def wait_listening(self, proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + 30
        while not listening(self.port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise QmpError(f"{self.name} destination not listening on {self.port}")
            time.sleep(0.02)

    def wait_guest_started(self) -> float:
        """Until the guest has printed something (it is past boot), then ~1 s more, and
        for dirty.elf until a second round: returns how fast it rewrote memory, MiB/s."""
        if self.case.linux:
            return self._linux_started()
        first = "alive" if self.case.append is None else "round 1 ok"
        t1 = self._wait_for(first)
        time.sleep(1.0)
        if self.case.append is None:
            return 0.0
        self._wait_for("round 2 ok")
        rounds = len(ROUND.findall(read(self.src_serial)))
        mib = int(re.search(r"mib=(\d+)", self.case.append).group(1))
        return (rounds - 1) * mib / (time.monotonic() - t1)

    def _linux_started(self) -> float:
        """At the shell prompt, then with the loop started and past its second pass."""
        self._wait_for(LINUX_PROMPT)
        mib = self.case.linux_mib
        if not mib:
            time.sleep(1.0)
            return 0.0
        self.links["src"].type(LOOP.format(mib=mib))
        t1 = self._wait_for("pass 0 OK")
        time.sleep(1.0)
        self._wait_for("pass 1 OK")
        passes = len(PASS.findall(read(self.src_serial)))
        return (passes - 1) * mib / (time.monotonic() - t1)

    def _wait_for(self, marker: str, path: Path | None = None) -> float:
        deadline = time.monotonic() + 60
        while marker not in read(path or self.src_serial):
            if time.monotonic() > deadline:
                raise QmpError(f"{self.name} guest printed no '{marker}' in 60 s")
            time.sleep(0.02)
        return time.monotonic()

    def check_linux(self) -> str:
        """'' if the loop goes on at the destination with no BAD pass and its shell
        answers, else what went wrong."""
        before = read(self.src_serial)
        if (bad := re.search(r"pass \d+ BAD", before)):  # not the migration's doing
            return f"source guest: {bad.group()}"
        last = max((int(n) for n, _ in PASS.findall(before)), default=-1)
        if last >= 0:  # the destination's passes go on beyond the source's
            try:
                self._wait_for(f"pass {last + 2} ", self.dst_serial)
            except QmpError:
                oops = OOPS.search(read(self.dst_serial))
                return (f"destination stopped passing after the source's pass {last}"
                        + (f"; its kernel: {oops.group().strip()}" if oops else ""))
        self.links["dst"].type("echo alive-$((40+2))")  # the echo of the line differs
        try:
            self._wait_for("\nalive-42", self.dst_serial)
        except QmpError:
            return "the destination's shell does not answer"
        bad = re.search(r"pass \d+ BAD", read(self.dst_serial))
        return f"destination guest: {bad.group()}" if bad else ""

    def check_destination(self, running: bool) -> str:
        """'' if the destination's guest goes on as the source's left off, else what
        went wrong."""
        if not running:
            return "destination not running after the migration"
        if self.case.linux:
            return self.check_linux()
        if self.case.append is None:
            return ""
        before = read(self.src_serial)
        if "FAIL" in before:  # not the migration's doing
            return "source guest failed: " + before[before.index("FAIL"):].splitlines()[0]
        last = max((int(n) for n in ROUND.findall(before)), default=0)
        deadline = time.monotonic() + 60
        while True:
            text = before + read(self.dst_serial)
            rounds = [int(n) for n in ROUND.findall(text)]
            if "FAIL" in text:
                return "destination guest: " + text[text.index("FAIL"):].splitlines()[0]
            if rounds != list(range(1, len(rounds) + 1)):
                return f"rounds out of order: ...{rounds[-8:]}"
            if rounds and rounds[-1] >= last + 2:
                return ""
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                return (f"destination stopped advancing: source reached round {last}, "
                        f"destination round {rounds[-1] if rounds else 0}")
            time.sleep(0.1)


def read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


class PyemuSide(Side):
    name = "pyemu"

    def machine_argv(self) -> list[str]:
        argv = [str(PYEMU), "-M", "pc", "-m", str(self.case.ram_mib), "-display", "none"]
        if self.case.linux:
            argv += ["-kernel", str(LINUX / "vmlinuz"), "-initrd", str(LINUX / "rootfs.gz"),
                     "-append", LINUX_APPEND]
        elif self.case.append is not None:
            argv += ["-kernel", str(DIRTY), "-append", self.case.append]
        else:  # the demo guest's disk, as pyemu gives it by default, named for both ends
            argv += ["-drive", f"file={DEMO_IMG},index=0,readonly=on"]
        return argv

    def migrate(self) -> Run:
        src = self.spawn([*self.machine_argv(), "-serial", self.serial("src"),
                          "-monitor", f"unix:{self.tmp / 'src.mon'},server,nowait"])
        self.attach("src", src)
        shape = self.machine_argv()[1:] if self.case.shaped else []
        # what the stream names is granted, no more: a demo row runs without the
        # Linux guest built (pyemu refuses to grant a directory that is not there)
        granted = LINUX if self.case.linux else DIRTY.parent
        dst = self.spawn([str(PYEMU), *shape, "-incoming", f"tcp:127.0.0.1:{self.port}",
                          "-allow-files", str(granted), "-serial", self.serial("dst"),
                          "-monitor", f"unix:{self.tmp / 'dst.mon'},server,nowait"])
        mon = Hmp(self.tmp / "src.mon", proc=src)
        self.wait_listening(dst)  # its monitor comes with the machine the stream brings
        bandwidth = f"{DEFAULT_BANDWIDTH // MIB}M" if self.case.capped else "0"
        for line in ("migrate_set_parameter downtime-limit 300",
                     f"migrate_set_parameter max-bandwidth {bandwidth}",
                     f"migrate_set_capability auto-converge "
                     f"{'on' if self.case.auto_converge else 'off'}"):
            expect_silence(mon, line)
        rate = self.wait_guest_started()
        expect_silence(mon, f"migrate -d tcp:127.0.0.1:{self.port}")
        deadline = time.monotonic() + self.timeout
        while True:
            info = mon.cmd("info migrate")
            status = field(info, r"Migration status: (\S+)")
            if status in ("completed", "failed", "cancelled"):
                break
            if time.monotonic() > deadline:
                mon.cmd("migrate_cancel")
                return Run(error="did not converge", rewrite_mibs=rate)
            time.sleep(0.05)
        if status != "completed":
            return Run(error=info.split("Migration status: ", 1)[1].splitlines()[0])
        run = Run(int(field(info, r"total time: (\d+) ms")),
                  int(field(info, r"downtime: (\d+) ms")),
                  int(field(info, r"stream sent: (\d+) ms")),
                  int(field(info, r"transferred ram: (\d+) kbytes")) / 1024, rate)
        running = _pyemu_running(Hmp(self.tmp / "dst.mon", proc=dst))
        self.attach("dst", dst)  # a bare destination opens it with the machine
        run.corruption = self.check_destination(running)
        return run


def _pyemu_running(mon: Hmp) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if "running" in mon.cmd("info status"):
            return True
        time.sleep(0.05)
    return False


def expect_silence(mon: Hmp, line: str) -> None:
    out = mon.cmd(line)
    if out:
        raise QmpError(f"pyemu monitor: {line!r}: {out}")


def field(text: str, pattern: str) -> str:
    m = re.search(pattern, text)
    if not m:
        raise QmpError(f"no {pattern!r} in: {text}")
    return m.group(1)


class QemuSide(Side):
    name = "qemu"

    def argv(self, end: str) -> list[str]:
        qmp, serial = self.tmp / f"{end}.qmp", self.serial(end)
        if self.case.linux:
            return qemu_argv(self.case.ram_mib, LINUX / "vmlinuz", qmp, serial,
                             LINUX_APPEND) + ["-initrd", str(LINUX / "rootfs.gz")]
        kernel = DEMO if self.case.append is None else DIRTY
        return qemu_argv(self.case.ram_mib, kernel, qmp, serial, self.case.append)

    def migrate(self) -> Run:
        src = self.spawn(self.argv("src"))
        self.attach("src", src)
        dst = self.spawn(self.argv("dst") + ["-incoming", f"tcp:127.0.0.1:{self.port}"])
        self.attach("dst", dst)
        qmp, dqmp = Qmp(self.tmp / "src.qmp", proc=src), Qmp(self.tmp / "dst.qmp", proc=dst)
        self.wait_listening(dst)
        qmp.cmd("migrate-set-parameters", **{
            "downtime-limit": 300,
            "max-bandwidth": DEFAULT_BANDWIDTH if self.case.capped else NO_CAP_QEMU})
        qmp.cmd("migrate-set-capabilities", capabilities=[
            {"capability": "auto-converge", "state": self.case.auto_converge}])
        rate = self.wait_guest_started()
        qmp.cmd("migrate", uri=f"tcp:127.0.0.1:{self.port}")
        deadline = time.monotonic() + self.timeout
        while True:
            info = qmp.cmd("query-migrate")
            if info.get("status") in ("completed", "failed", "cancelled"):
                break
            if time.monotonic() > deadline:
                qmp.cmd("migrate_cancel")
                return Run(error="did not converge", rewrite_mibs=rate)
            time.sleep(0.05)
        if info["status"] != "completed":
            return Run(error=f"{info['status']}: {info.get('error-desc', '')}")
        run = Run(info["total-time"], info["downtime"], info["downtime"],
                  info["ram"]["transferred"] / MIB, rate)
        run.corruption = self.check_destination(_qemu_running(dqmp))
        return run


def _qemu_running(qmp: Qmp) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if qmp.cmd("query-status")["status"] == "running":
            return True
        time.sleep(0.05)
    return False


def one_run(side_type: type[Side], case: Case, timeout: float) -> Run:
    with tempfile.TemporaryDirectory(prefix=f"migrate-{side_type.name}-") as tmp:
        side = side_type(case, Path(tmp), timeout)
        try:
            run = side.migrate()
        except (QmpError, OSError) as e:
            run = Run(error=f"error: {e}")
        finally:
            side.close()
        if run.corruption or run.error:
            tail = read(Path(tmp) / "emulator.log")[-2000:]
            print(f"!! {side_type.name} '{case.label}': {run.corruption or run.error}"
                  + (f"\n   emulator output: {tail.strip()}" if tail.strip() else ""),
                  file=sys.stderr, flush=True)
        return run


@dataclass
class Cell:
    """A case's medians on one emulator, or why there are none."""

    runs: list[Run]

    @property
    def good(self) -> list[Run]:
        return [r for r in self.runs if not r.error]

    def median(self, attr: str) -> float | None:
        good = self.good
        return statistics.median(getattr(r, attr) for r in good) if good else None

    def rewrite_rate(self) -> float:
        rates = [r.rewrite_mibs for r in self.runs if r.rewrite_mibs]
        return statistics.median(rates) if rates else 0.0

    def complete(self) -> bool:
        """Every run converged and the guest went on correctly after each."""
        return all(not r.error and not r.corruption for r in self.runs)

    def columns(self) -> list[str]:
        """Medians of the runs that completed; '(2/3)': how many did, 'N bad': how many
        of those delivered a guest that failed its check."""
        good = self.good
        if not good:
            return [self.runs[0].error[:24], "-", "-"]
        notes = [f"{len(good)}/{len(self.runs)}"] if len(good) < len(self.runs) else []
        bad = sum(1 for r in good if r.corruption)
        notes += [f"{bad} bad"] if bad else []
        mark = f" ({', '.join(notes)})" if notes else ""
        down = f"{self.median('sent_ms'):.0f}"
        if self.median("downtime_ms") != self.median("sent_ms"):
            down += f" / {self.median('downtime_ms'):.0f}"
        return [f"{self.median('total_ms'):.0f}{mark}", down, f"{self.median('mib_sent'):.2f}"]


def _line(cells: list[str], widths: list[int]) -> str:
    return cells[0].ljust(widths[0]) + "".join(
        c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per case; medians count")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per migration")
    ap.add_argument("--cases", default=",".join(c.key for c in CASES),
                    help="comma-separated: " + ", ".join(c.key for c in CASES))
    ap.add_argument("--no-qemu", action="store_true", help="pyemu's columns only")
    args = ap.parse_args()
    keys = args.cases.split(",")
    cases = [c for c in CASES if c.key in keys]
    qemu = QEMU is not None and not args.no_qemu
    sides: list[type[Side]] = [PyemuSide] + ([QemuSide] if qemu else [])
    head = ["case", "pyemu total ms", "pyemu down sent/run", "pyemu MiB sent"]
    if qemu:
        head += ["qemu total ms", "qemu downtime ms", "qemu MiB sent", "ratio total",
                 "ratio to last byte", "ratio down"]
    widths = [40] + [max(len(h) + 2, 20) for h in head[1:]]
    print(f"live migration over loopback TCP, median of {args.repeat}, "
          f"{os.cpu_count()} cores; defaults: downtime-limit 300 ms, max-bandwidth 128 MiB/s"
          + ("" if qemu else "; pyemu only (no qemu-system-x86_64, or --no-qemu)"), flush=True)
    print(_line(head, widths), flush=True)
    corrupt = 0
    for case in cases:
        cells = {s.name: Cell([]) for s in sides}
        for _ in range(args.repeat):  # interleaved, so both see the same machine load
            for side in sides:
                cells[side.name].runs.append(one_run(side, case, args.timeout))
        row = [case.label] + cells["pyemu"].columns()
        if qemu:
            row += cells["qemu"].columns()
            both = cells["pyemu"].complete() and cells["qemu"].complete()
            for mine, theirs in (("total_ms", "total_ms"), ("last_byte_ms", "total_ms"),
                                 ("sent_ms", "sent_ms")):
                p, q = cells["pyemu"].median(mine), cells["qemu"].median(theirs)
                row.append(f"{p / q:.1f}" if both and p and q else "-")
        print(_line(row, widths), flush=True)
        if case.append is not None or case.linux_mib:
            speeds = ", ".join(f"{n} {c.rewrite_rate():.0f} MiB/s" for n, c in cells.items())
            print(f"   guest rewrite rate before migrating: {speeds}", flush=True)
        for name, cell in cells.items():
            for r in cell.runs:
                if r.corruption:
                    corrupt += 1
                    print(f"   ** CORRUPTION ({name}): {r.corruption}", flush=True)
    if corrupt:
        print(f"** {corrupt} migration(s) delivered a guest that did not go on correctly **")


if __name__ == "__main__":
    main()
