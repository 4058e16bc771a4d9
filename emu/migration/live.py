"""Live migration: precopy of a running guest to another pyemu, and its receiving side.

DESIGN.md, "The stream" and "Threads and time"; QEMU's migration as its users know it
(docs/devel/migration.rst: precopy passes, downtime-limit, max-bandwidth,
auto-converge, the return path). The source sends the stream of stream.py: head and
machine description first; the destination builds or checks its machine and answers on
the return path before anything else happens; then RAM in passes while the guest runs
(each pass sends the pages that differ from what was sent, ram.py), until what is left
fits the downtime limit at the measured bandwidth; then the CPU stops, the rest of RAM
and every section follow, the source lets go of its disk images, and the destination
loads everything, takes the images, answers DONE and runs the guest. Any failure before
DONE leaves the source running as it was.

Return-path messages (destination to source, on duplex transports only): u8 code, u32
length, UTF-8 text.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emu.migration.ram import PAGE, RamTracker, clear
from emu.migration.stream import (
    DISK_CHUNK,
    RawStream,
    StreamError,
    StreamWriter,
    Target,
    apply_snapshot,
    capture_sections,
    decode_stream,
    describe_machine,
    receive_stream,
)
from emu.migration.transport import Channel, TransportError, connect, listen

log = logging.getLogger("emu.migration")

ACCEPT, REFUSE, DONE, FAILED = 1, 2, 3, 4
MAX_REPLY = 64 << 10
CONNECT_TIMEOUT = 10.0
REPLY_TIMEOUT = 120.0  # the destination loads everything before it answers DONE

# QEMU's parameter names and defaults (query-migrate-parameters).
PARAMETERS: dict[str, int] = {
    "downtime-limit": 300,  # ms
    "max-bandwidth": 128 << 20,  # bytes per second
    "cpu-throttle-initial": 20,  # percent
    "cpu-throttle-increment": 10,
    "max-cpu-throttle": 99,
}
_RANGES = {"downtime-limit": (0, 2_000_000), "max-bandwidth": (0, 1 << 50),
           "cpu-throttle-initial": (1, 99), "cpu-throttle-increment": (1, 99),
           "max-cpu-throttle": (1, 99)}
# QEMU's capability names; the ones pyemu implements can be switched on.
CAPABILITIES = ("xbzrle", "rdma-pin-all", "auto-converge", "zero-blocks", "compress",
                "events", "postcopy-ram", "x-colo", "release-ram", "block", "return-path",
                "pause-before-switchover", "multifd", "dirty-bitmaps", "postcopy-blocktime",
                "late-block-activate", "x-ignore-shared", "validate-uuid",
                "background-snapshot", "zero-copy-send", "postcopy-preempt")
SUPPORTED = ("auto-converge", "compress", "events", "block")


class MigrationError(Exception):
    """Why a migration failed, in one line."""


@dataclass
class Stats:
    """What ``info migrate`` and query-migrate report (QEMU's names in comments)."""

    started: float = 0.0
    setup_ms: int = 0
    total_ms: int = 0
    downtime_ms: int = 0
    expected_downtime_ms: int = 0
    transferred: int = 0  # ram transferred, bytes
    remaining: int = 0  # ram remaining, bytes
    total: int = 0  # ram total, bytes
    duplicate: int = 0  # zero pages sent as markers
    normal: int = 0  # pages sent whole
    dirty_sync_count: int = 0  # scans of RAM for pages to send
    dirty_pages_rate: int = 0  # pages per second dirtied during the last pass
    mbps: float = 0.0
    throttle: int = 0  # percent of CPU time taken away by auto-converge
    disk_transferred: int = 0  # block migration: bytes of drive contents sent
    bandwidth: float = 0.0  # bytes per second over the last pass
    stalled: int = 0  # passes in a row whose leftover would not fit the downtime limit


@dataclass
class Migration:
    """A machine's migration settings and its current (or last) outgoing migration."""

    parameters: dict[str, int] = field(default_factory=lambda: dict(PARAMETERS))
    capabilities: dict[str, bool] = field(
        default_factory=lambda: {c: False for c in CAPABILITIES})
    job: Outgoing | None = None
    incoming_status: str = "none"  # the destination's side: active, completed, failed
    listeners: list[Callable[[str, dict[str, Any]], None]] = field(default_factory=list)

    def set_parameter(self, name: str, value: int) -> None:
        if name not in self.parameters:
            raise ValueError(f"unknown migration parameter '{name}'")
        lo, hi = _RANGES[name]
        if not lo <= value <= hi:
            raise ValueError(f"parameter '{name}' expects a value from {lo} to {hi}")
        self.parameters[name] = value

    def set_capability(self, name: str, on: bool) -> None:
        if name not in self.capabilities:
            raise ValueError(f"unknown migration capability '{name}'")
        if on and name not in SUPPORTED:
            raise ValueError(f"migration capability '{name}' is not supported by pyemu")
        if self.active():
            raise ValueError("there is a migration in progress")
        self.capabilities[name] = on

    def active(self) -> bool:
        return self.job is not None and self.job.status in ("setup", "active", "cancelling",
                                                            "device")

    def emit(self, event: str, data: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener(event, data)


# -- the return path ---------------------------------------------------------------------

def send_reply(channel: Channel, code: int, text: str = "") -> None:
    raw = text.encode()[:MAX_REPLY]
    channel.write(struct.pack("<BI", code, len(raw)) + raw)
    channel.flush()


def read_reply(channel: Channel, timeout: float) -> tuple[int, str]:
    channel.timeout = timeout
    try:
        code, n = struct.unpack("<BI", channel.read_exact(5))
        if code not in (ACCEPT, REFUSE, DONE, FAILED) or n > MAX_REPLY:
            raise MigrationError(f"return path: unknown reply {code} of {n} bytes")
        return code, channel.read_exact(n).decode("utf-8", "replace")
    finally:
        channel.timeout = None


# -- the source ----------------------------------------------------------------------------

def describe_for_migration(machine: Any, *, reply: bool, block: bool) -> dict[str, Any]:
    """The description a migration sends first: the machine, its configuration (to build
    it from), whether the source waits for answers on the return path, and whether
    disk contents follow (block migration)."""
    from emu.machine.config import to_stream

    return dict(describe_machine(machine), clock_ns=machine.clock.now_ns(),
                config=to_stream(machine.cfg), migration={"reply": reply, "block": block})


def _backends(machine: Any) -> list[Any]:
    return list(machine.drive_backends().values())


def copied_drives(machine: Any) -> dict[str, Any]:
    """The drives block migration copies: those the guest can write to the image of."""
    return {name: b for name, b in machine.drive_backends().items()
            if not b.readonly and not b.snapshot}


class _Paced:
    """The channel as the stream writer sees it: paced to max-bandwidth (0: unpaced),
    and refusing to go on once the migration is cancelled."""

    def __init__(self, job: Outgoing) -> None:
        self.job = job
        self.limit = 0
        self._t0 = time.monotonic()
        self._sent = 0

    def write(self, data: bytes | memoryview) -> None:
        if self.job.cancelled.is_set():
            raise MigrationError("cancelled")
        self.job.channel.write(data)
        self._sent += len(data)
        if self.limit:
            ahead = self._sent / self.limit - (time.monotonic() - self._t0)
            if ahead > 0:
                self.job.cancelled.wait(ahead)

    def pace(self, limit: int) -> None:
        self.limit, self._t0, self._sent = limit, time.monotonic(), 0


class Outgoing:
    """One outgoing migration, run by its own thread; the machine thread only stops,
    captures and resumes (through ``machine.post``)."""

    def __init__(self, machine: Any, settings: Migration, uri: str) -> None:
        self.machine, self.settings, self.uri = machine, settings, uri
        self.params = dict(settings.parameters)
        self.caps = dict(settings.capabilities)
        self.status = "setup"
        self.error = ""
        self.stats = Stats(total=int(machine.mem.ram.size))
        self.cancelled = threading.Event()
        self.done = threading.Event()
        self.channel: Channel | None = None
        self._stopped: bool | None = None  # was running when stopped for the switchover
        self._released = False
        self.disks: dict[str, Any] = {}  # block migration: drive id -> image to copy
        self._thread = threading.Thread(target=self._run, name="migration", daemon=True)

    def start(self) -> None:
        self.stats.started = time.monotonic()
        self._set_status("setup")
        self._thread.start()

    def cancel(self) -> None:
        """migrate_cancel: from any thread; the source carries on as before."""
        if self.status in ("setup", "active", "device"):
            self._set_status("cancelling")
            self.cancelled.set()
            if self.channel is not None:
                self.channel.abort()

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def _set_status(self, status: str) -> None:
        self.status = status
        self.settings.emit("MIGRATION", {"status": status})

    # -- the thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._migrate()
        except (TransportError, MigrationError, StreamError, OSError) as e:
            self._fail("cancelled" if self.cancelled.is_set() else str(e))
        except Exception as e:  # a bug must not leave the guest stopped
            log.exception("migration to %s", self.uri)
            self._fail(f"internal error: {e}")
        finally:
            self.stats.total_ms = int((time.monotonic() - self.stats.started) * 1000)
            self.machine.post(lambda: setattr(self.machine, "throttle", 0))
            self.done.set()

    def _fail(self, reason: str) -> None:
        if self.channel is not None:
            self.channel.abort()
        resumed = self._undo_switchover()
        if not resumed:
            reason += "; the guest stays paused"
        self.error = reason
        self._set_status("cancelled" if self.cancelled.is_set() else "failed")
        log.warning("migration to %s %s: %s", self.uri, self.status, reason)

    def _migrate(self) -> None:
        self.channel = connect(self.uri, CONNECT_TIMEOUT)
        if self.cancelled.is_set():
            raise MigrationError("cancelled")
        duplex = self.channel.readable and self.channel.writable
        block = self.caps["block"]
        desc = self.machine.post(lambda: describe_for_migration(
            self.machine, reply=duplex, block=block)).result()
        out = _Paced(self)
        writer = StreamWriter(out)
        writer.head(desc)
        self.channel.flush()
        if duplex:
            self._expect(ACCEPT, "the destination refused")
        self.stats.setup_ms = int((time.monotonic() - self.stats.started) * 1000)
        self._set_status("active")
        self.disks = copied_drives(self.machine) if block else {}
        for backend in self.disks.values():
            backend.track_writes(True)
        try:
            tracker = RamTracker(self.machine.mem.ram)
            dirty = tracker.dirty()
            chunks = {name: list(range(b.chunks)) for name, b in self.disks.items()}
            while True:
                dirty, chunks = self._pass(writer, out, tracker, dirty, chunks)
                if self._converged(dirty, chunks):
                    break
            self._switchover(writer, out, tracker, duplex, chunks)
        finally:
            for backend in self.disks.values():
                backend.track_writes(False)

    def _pass(self, writer: StreamWriter, out: _Paced, tracker: RamTracker, dirty: Any,
              chunks: dict[str, list[int]]) -> tuple[Any, dict[str, list[int]]]:
        """Send the disk chunks and pages selected; returns the next selection."""
        t0, sent0 = time.monotonic(), self.channel.bytes_sent
        out.pace(self.params["max-bandwidth"])
        self._send_disks(writer, chunks)
        tracker.take(dirty)
        counts = writer.pages(tracker.sent, dirty, self.caps["compress"])
        self.channel.flush()
        self._count(counts)
        dirty = tracker.dirty()
        self.stats.dirty_sync_count += 1
        seconds = max(time.monotonic() - t0, 1e-3)
        sent = self.channel.bytes_sent - sent0
        redirtied = int(dirty.sum())
        chunks = {name: b.take_written() for name, b in self.disks.items()}
        self.stats.dirty_pages_rate = int(redirtied / seconds)
        self.stats.mbps = sent * 8 / seconds / 1e6
        self.stats.remaining = redirtied * PAGE + DISK_CHUNK * sum(map(len, chunks.values()))
        bandwidth = self.stats.bandwidth = max(sent / seconds, 1.0)
        self.stats.expected_downtime_ms = int(self.stats.remaining / bandwidth * 1000)
        fits = self.stats.expected_downtime_ms <= self.params["downtime-limit"]
        self.stats.stalled = 0 if fits else self.stats.stalled + 1
        self.settings.emit("MIGRATION_PASS", {"pass": self.stats.dirty_sync_count})
        self._throttle(self.stats.remaining, sent)
        return dirty, chunks

    def _send_disks(self, writer: StreamWriter, chunks: dict[str, list[int]]) -> None:
        for name, indexes in chunks.items():
            backend = self.disks[name]
            for i in indexes:
                offset = i * DISK_CHUNK
                data = backend.read(offset, min(DISK_CHUNK, backend.size - offset))
                self.stats.disk_transferred += len(data)
                writer.disk(name, offset, data)

    def convergence(self) -> str:
        """Why an active migration is not finishing, once it has gone round a while."""
        st = self.stats
        if self.status != "active" or st.stalled < 3:
            return ""
        return (f"not converging: {st.stalled} passes in a row left "
                f"{st.remaining >> 20} MiB, {st.expected_downtime_ms} ms at "
                f"{st.bandwidth / (1 << 20):.1f} MiB/s against a downtime limit of "
                f"{self.params['downtime-limit']} ms (auto-converge, a higher "
                "downtime-limit or max-bandwidth would let it finish)")

    def _converged(self, dirty: Any, chunks: dict[str, list[int]]) -> bool:
        return ((not dirty.any() and not any(chunks.values())) or
                self.stats.expected_downtime_ms <= self.params["downtime-limit"])

    def _throttle(self, dirtied: int, sent: int) -> None:
        """auto-converge: a guest that dirties more than half of what a pass could send
        loses CPU time, in steps, until what it dirties fits."""
        if not self.caps["auto-converge"] or dirtied <= sent // 2:
            return
        now = self.stats.throttle
        step = self.params["cpu-throttle-increment"] if now else \
            self.params["cpu-throttle-initial"]
        self.stats.throttle = min(now + step, self.params["max-cpu-throttle"])
        pct = self.stats.throttle
        self.machine.post(lambda: setattr(self.machine, "throttle", pct))

    def _count(self, counts: Any) -> None:
        self.stats.normal += counts.normal
        self.stats.duplicate += counts.zero
        self.stats.transferred = self.channel.bytes_sent

    def _switchover(self, writer: StreamWriter, out: _Paced, tracker: RamTracker,
                    duplex: bool, chunks: dict[str, list[int]]) -> None:
        """Stop the guest, send the rest, let go of the disks, wait for the verdict."""
        self._stopped = self.machine.post(self._stop_for_switchover).result()
        t_down = time.monotonic()
        self._set_status("device")
        out.pace(0)  # the guest is stopped: no reason to hold back now
        for name, backend in self.disks.items():
            chunks[name] = sorted(set(chunks[name]) | set(backend.take_written()))
        self._send_disks(writer, chunks)
        dirty = tracker.sync()
        self._count(writer.pages(tracker.sent, dirty, self.caps["compress"]))
        self.stats.dirty_sync_count += 1
        sections = self.machine.post(lambda: capture_sections(self.machine)).result()
        self.machine.post(self._release_disks).result()
        writer.finish(sections)
        self.channel.flush()
        if duplex:
            self._expect(DONE, "the destination could not load the guest")
        self.channel.close()
        self.stats.transferred = self.channel.bytes_sent
        self.stats.remaining = 0
        self.stats.downtime_ms = int((time.monotonic() - t_down) * 1000)
        self.machine.post(lambda: self.machine.set_runstate("postmigrate"))
        self._set_status("completed")

    def _expect(self, code: int, failure: str) -> None:
        got, text = read_reply(self.channel, REPLY_TIMEOUT)
        if got != code:
            raise MigrationError(f"{failure}: {text}")

    def _stop_for_switchover(self) -> bool:
        was_running = self.machine.runstate == "running"
        self.machine.set_runstate("finish-migrate")
        return was_running

    def _release_disks(self) -> None:
        for backend in _backends(self.machine):
            backend.inactivate()
        self._released = True

    def _undo_switchover(self) -> bool:
        """After a failure: take the disks back and run the guest if it ran; False if
        the disks are held elsewhere now (the destination may run the guest)."""
        if self._stopped is None:
            return True
        return self.machine.post(self._resume).result()

    def _resume(self) -> bool:
        if self._released:
            try:
                for backend in _backends(self.machine):
                    backend.activate()
            except OSError as e:
                log.error("migration: cannot take the disks back: %s", e)
                self.machine.set_runstate("paused")
                return False
            self._released = False
        self.machine.set_runstate("running" if self._stopped else "paused")
        return True


# -- the destination -----------------------------------------------------------------------

class Incoming:
    """The receiving side: bound at once (so a bad URI or a busy port fails at start),
    then ``receive()`` takes one migration."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.listener = listen(uri)
        self.channel: Channel | None = None
        self.error = ""
        self.ready = threading.Event()  # a machine exists now, or the migration failed

    def receive(self, on_description: Callable[[dict[str, Any]], Any]) -> tuple[RawStream, Any]:
        """The whole stream, checked, and the machine it went into: ``on_description``
        builds or checks the machine (raising StreamError or ValueError to refuse) and
        returns it, before any RAM arrives. RAM goes straight into the machine, which
        has never run and never will if anything fails."""
        try:
            self.channel = self.listener.accept()
        finally:
            self.listener.close()
        ch = self.channel
        duplex = ch.readable and ch.writable

        def check(desc: dict[str, Any]) -> None:
            answer = duplex and isinstance(desc.get("migration"), dict) and \
                desc["migration"].get("reply") is True
            try:
                machines.append(on_description(desc))
            except (StreamError, ValueError, OSError) as e:
                if answer:
                    send_reply(ch, REFUSE, str(e))
                raise StreamError(str(e)) from None
            machine = machines[0]
            disks = {}
            if isinstance(desc.get("migration"), dict) and desc["migration"].get("block"):
                disks = copied_drives(machine)
                try:  # our own images now; the source's, if it is the same file, fails
                    for backend in disks.values():
                        backend.activate()
                except OSError as e:
                    text = f"block migration needs images of its own here: {e}"
                    if answer:
                        send_reply(ch, REFUSE, text)
                    raise StreamError(text) from None
            if answer:
                send_reply(ch, ACCEPT)
            self.answer = answer
            clear(machine.mem.ram)  # what booting it wrote
            return Target(machine.mem.ram, disks)

        self.answer = False
        machines: list[Any] = []
        return receive_stream(ch, TransportError, check), machines[0]

    def finish(self, ok: bool, text: str = "") -> None:
        """Tell the source how loading went (if it listens), and close."""
        ch = self.channel
        if ch is None:
            return
        try:
            if self.answer:
                send_reply(ch, DONE if ok else FAILED, text)
            ch.close()
        except TransportError as e:
            log.warning("incoming migration: %s", e)
            ch.abort()

    def fail(self, machine: Any, reason: str) -> None:
        self.error = reason
        self.finish(False, reason)
        log.error("incoming migration failed: %s", reason)
        if machine is not None:
            machine.migration.incoming_status = "failed"
            machine.post(lambda: machine.request_shutdown(
                1, f"incoming migration failed: {reason}", "host-error"))
        self.ready.set()

    def close(self) -> None:
        self.listener.close()
        if self.channel is not None:
            self.channel.abort()


def install(machine: Any, raw: RawStream) -> None:
    """On the destination's machine thread: decode everything, take the disks (the
    source let go of them before it sent the end), then install the guest."""
    snap = decode_stream(raw, machine)
    for backend in _backends(machine):
        backend.activate()
        backend.flush()  # what block migration wrote
    apply_snapshot(machine, snap)
    machine.after_load()


def run_incoming(incoming: Incoming, on_description: Callable[[dict[str, Any]], Any],
                 machine_of: Callable[[], Any]) -> None:
    """The incoming thread: receive, install on the machine thread, answer, then run
    the guest (or leave it paused with -S). A failure is logged, answered if the source
    listens, and ends the process: a partly loaded guest never runs."""
    machine = None
    try:
        raw, machine = incoming.receive(on_description)
        machine.post(lambda: install(machine, raw)).result()
    except (StreamError, TransportError, MigrationError, OSError, ValueError) as e:
        incoming.fail(machine_of(), str(e))
        return
    incoming.finish(True)
    machine.migration.incoming_status = "completed"
    paused = machine.cfg.start_paused
    machine.post(lambda: machine.set_runstate("paused" if paused else "running"))
