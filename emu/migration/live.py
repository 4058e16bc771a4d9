"""Live migration: precopy of a running guest to another pyemu, and its receiving side.

DESIGN.md, "The stream", "Trust" and "Threads and time"; QEMU's migration as its users
know it (docs/devel/migration.rst: precopy passes, downtime-limit, max-bandwidth,
auto-converge, the return path). The source sends the stream of stream.py: head and
machine description first; the destination builds or checks its machine and answers on
the return path, while the first pass of RAM waits in the connection (it reads nothing
more before it has answered, and the source does nothing more before it has read the
answer); then RAM in passes while the guest runs (each pass sends the pages written
since, ram.py), until what is left fits the downtime limit at the measured bandwidth;
then the CPU stops, the rest of RAM and every section follow, and the source lets go of
its disk images.

The switchover is a handshake, so that one guest never runs in two places:
  destination  READY    it has the whole stream, checked, loaded, and holds the images
  source       GO       sent only after the source committed never to run the guest
                        again (it stays "postmigrate"; ``cont`` refuses)
  destination  RUNNING  the guest runs there
The destination runs the guest only on GO. A source that gets no READY takes the guest
back (telling the destination ABORT, which then exits without running it); once it has
sent GO it never runs the guest on its own, and if RUNNING does not come it stays
paused, saying that the guest may run on the destination (``cont -f`` is the operator's
override). Every write and wait from the stop on has one deadline: downtime-limit plus
x-switchover-grace.

Control messages in both directions: u8 code, u32 length, UTF-8 text.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emu.host import tls
from emu.memory import hostram
from emu.migration.compat import CompatError
from emu.migration.compat.releases import announcement, destination_versions
from emu.migration.ram import PAGE, Tracker, tracker_for
from emu.migration.staging import DiskStaging
from emu.migration.stream import (
    DISK_CHUNK,
    Head,
    RawStream,
    StreamError,
    StreamWriter,
    Target,
    apply_snapshot,
    capture_sections,
    check_sendable,
    decode_stream,
    describe_machine,
    matches,
    receive_head,
    receive_rest,
    stateful,
)
from emu.migration.transport import (
    Channel,
    TransportError,
    connect,
    format_tcp,
    listen,
    parse_uri,
)

log = logging.getLogger("emu.migration")

# Destination to source: ACCEPT/REFUSE the description, READY/FAILED the stream, RUNNING.
# Source to destination, after the stream: GO or ABORT.
ACCEPT, REFUSE, READY, FAILED, GO, ABORT, RUNNING = 1, 2, 3, 4, 5, 6, 7
MAX_REPLY = 64 << 10
CONNECT_TIMEOUT = 10.0
PREFLIGHT_TIMEOUT = 60.0  # the destination builds its machine before it answers
STALL_TIMEOUT = 60.0  # no progress at all while the guest still runs at the source
HEAD_TIMEOUT = 10.0  # a listening destination's wait for a connection's first bytes
ABORT_TIMEOUT = 1.0  # the least a last control message (ABORT, a late GO) may take

# QEMU's parameter names and defaults (query-migrate-parameters).
PARAMETERS: dict[str, int | str] = {
    "downtime-limit": 300,  # ms
    "max-bandwidth": 128 << 20,  # bytes per second
    "cpu-throttle-initial": 20,  # percent
    "cpu-throttle-increment": 10,
    "max-cpu-throttle": 99,
    # pyemu's: what the switchover may take beyond downtime-limit (the destination
    # checks and loads everything before it says READY), ms
    "x-switchover-grace": 10_000,
    # TLS (emu/host/tls.py): the id of a -object tls-creds-x509 ("": none), and the name
    # the destination's certificate must carry ("": the URI's host)
    "tls-creds": "",
    "tls-hostname": "",
}
_RANGES = {"downtime-limit": (0, 2_000_000), "max-bandwidth": (0, 1 << 50),
           "cpu-throttle-initial": (1, 99), "cpu-throttle-increment": (1, 99),
           "max-cpu-throttle": (1, 99), "x-switchover-grace": (100, 600_000)}
MAX_SWITCHOVER_MS = 2_000_000 + 600_000
# QEMU's capability names; the ones pyemu implements can be switched on.
CAPABILITIES = ("xbzrle", "rdma-pin-all", "auto-converge", "zero-blocks", "compress",
                "events", "postcopy-ram", "x-colo", "release-ram", "block", "return-path",
                "pause-before-switchover", "multifd", "dirty-bitmaps", "postcopy-blocktime",
                "late-block-activate", "x-ignore-shared", "validate-uuid",
                "background-snapshot", "zero-copy-send", "postcopy-preempt")
SUPPORTED = ("auto-converge", "compress", "events", "block")


class MigrationError(Exception):
    """Why a migration failed, in one line."""


class RunRefused(Exception):
    """Why this copy of the guest must not run now, in one line."""


@dataclass(frozen=True)
class Hold:
    """Why a machine must not run its guest, set by a migration: the guest was handed to
    another process (``forceable`` False), or may have been and nobody can tell which
    copy runs (``forceable``: the operator, who can look at both sides, may say this
    one, with ``cont -f``)."""

    reason: str
    forceable: bool = False


@dataclass
class Stats:
    """What ``info migrate`` and query-migrate report (QEMU's names in comments)."""

    started: float = 0.0
    setup_ms: int = 0
    total_ms: int = 0
    downtime_ms: int = 0  # stop until the guest runs on the destination
    sent_ms: int = 0  # stop until the stream's last byte is sent (QEMU's downtime)
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

    parameters: dict[str, int | str] = field(default_factory=lambda: dict(PARAMETERS))
    capabilities: dict[str, bool] = field(
        default_factory=lambda: {c: False for c in CAPABILITIES})
    job: Outgoing | None = None
    incoming_status: str = "none"  # the destination's side: active, completed, failed
    listeners: list[Callable[[str, dict[str, Any]], None]] = field(default_factory=list)

    def set_parameter(self, name: str, value: int | str) -> None:
        if name not in self.parameters:
            raise ValueError(f"unknown migration parameter '{name}'")
        if name in tls.PARAMETERS:
            self.parameters[name] = tls.check_parameter(name, value)
            return
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
    """One control message (either direction), flushed."""
    raw = text.encode()[:MAX_REPLY]
    channel.write(struct.pack("<BI", code, len(raw)) + raw)
    channel.flush()


def read_reply(channel: Channel, timeout: float | None) -> tuple[int, str]:
    """The next control message, within ``timeout`` seconds."""
    channel.timeout = timeout
    try:
        code, n = struct.unpack("<BI", channel.read_exact(5))
        if not ACCEPT <= code <= RUNNING or n > MAX_REPLY:
            raise MigrationError(f"control message: unknown code {code} of {n} bytes")
        return code, channel.read_exact(n).decode("utf-8", "replace")
    finally:
        channel.timeout = None


# -- the source ----------------------------------------------------------------------------

def describe_for_migration(machine: Any, *, reply: bool, block: bool,
                           switchover: int) -> dict[str, Any]:
    """The description a migration sends first: the machine, its configuration (to build
    it from), whether the source waits for answers on the return path (and hands over
    with the switchover's handshake, within ``switchover`` ms), and whether disk
    contents follow (block migration)."""
    return dict(describe_machine(machine), clock_ns=machine.clock.now_ns(),
                config=machine.stream_config(),
                migration={"reply": reply, "block": block, "switchover_ms": switchover})


def switchover_ms(parameters: dict[str, int]) -> int:
    """The deadline of the switchover, from the guest's stop to RUNNING."""
    return parameters["downtime-limit"] + parameters["x-switchover-grace"]


def _backends(machine: Any) -> list[Any]:
    return list(machine.drive_backends().values())


def copied_drives(machine: Any) -> dict[str, Any]:
    """The drives block migration copies: those the guest can write to the image of."""
    return {name: b for name, b in machine.drive_backends().items()
            if not b.readonly and not b.snapshot}


class _Paced:
    """The channel as the stream writer sees it: paced to max-bandwidth (0: unpaced),
    and refusing to go on once the migration is cancelled. Pacing is QEMU's
    (migration.c, BUFFER_DELAY): each 100 ms window may carry a tenth of a second's
    bandwidth at full speed, then the writer waits for the next window; so a small
    stream is not slowed at all, and the average stays within the limit."""

    WINDOW = 0.1  # seconds

    def __init__(self, job: Outgoing) -> None:
        self.job = job
        self.limit = 0
        self._window_end = 0.0
        self._room = 0.0

    def write(self, data: bytes | memoryview) -> None:
        if self.job.cancelled.is_set():
            raise MigrationError("cancelled")
        self.job.channel.timeout = self.job.time_left()
        self.job.channel.write(data)
        if not self.limit:
            return
        self._room -= len(data)
        while self._room <= 0:  # this window's share is used up: wait for the next
            wait = self._window_end - time.monotonic()
            if wait > 0 and self.job.cancelled.wait(wait):
                return  # the next write says so
            self._new_window()

    def _new_window(self) -> None:
        self._window_end = time.monotonic() + self.WINDOW
        self._room += self.limit * self.WINDOW

    def pace(self, limit: int) -> None:
        """Pace to ``limit`` bytes per second from now on (each pass says it again:
        the windows go on unless the limit changed)."""
        if limit != self.limit:
            self.limit, self._room = limit, 0.0
            if limit:
                self._new_window()


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
        self._deadline: float | None = None  # of the switchover, once the guest stopped
        self._committed = False  # GO may have been sent: never run the guest here again
        # the destination's state versions (its ACCEPT); None: a one-way stream (file:,
        # exec:), written at this pyemu's
        self._versions: dict[str, int] | None = None
        # the objects whose state is sent, as described: fixed until the migration ends
        # (device_add and device_del refuse while it is active)
        self._objects: list[Any] = []
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
            late = self._deadline is not None and time.monotonic() >= self._deadline
            self._fail("cancelled" if self.cancelled.is_set() else
                       self._late() if late and isinstance(e, TransportError) else str(e))
        except Exception as e:  # a bug must not leave the guest stopped
            log.exception("migration to %s", self.uri)
            self._fail(f"internal error: {e}")
        finally:
            self.stats.total_ms = int((time.monotonic() - self.stats.started) * 1000)
            self.machine.post(lambda: setattr(self.machine, "throttle", 0))
            self.done.set()

    def _fail(self, reason: str) -> None:
        """Before GO: the guest is still this process's; take it back."""
        self.error = reason
        if self._committed:  # past the point of no return: _hand_over said it all
            self._set_status("failed")
            return
        why = self._take_back()
        if self.channel is not None:
            self.channel.abort()
        if why:
            self.machine.post(lambda: self.machine.set_runstate("paused")).result()
            self.error = reason = f"{reason}; the guest stays paused: {why}"
        self._set_status("cancelled" if self.cancelled.is_set() else "failed")
        log.warning("migration to %s %s: %s", self.uri, self.status, reason)

    def _migrate(self) -> None:
        self.channel = connect(self.uri, CONNECT_TIMEOUT, tls.from_parameters(self.params))
        if self.cancelled.is_set():
            raise MigrationError("cancelled")
        duplex = self.channel.readable and self.channel.writable
        block = self.caps["block"]
        desc, self._objects = self.machine.post(lambda: (describe_for_migration(
            self.machine, reply=duplex, block=block,
            switchover=switchover_ms(self.params)), stateful(self.machine))).result()
        out = _Paced(self)
        writer = StreamWriter(out)
        writer.head(desc)
        self.channel.flush()
        # The first pass is chosen and sent while the destination checks the
        # description (a bare one builds the machine meanwhile): its bytes wait in the
        # connection until the destination answers. A refusal stops it all, before
        # anything else: the guest has not stopped, sections are not sent yet.
        self.disks = copied_drives(self.machine) if block else {}
        for backend in self.disks.values():
            backend.track_writes(True)
        tracker = tracker_for(self.machine)
        try:
            chunks = {name: list(range(b.chunks)) for name, b in self.disks.items()}
            dirty, chunks = self._first_pass(writer, out, tracker, chunks, duplex)
            if duplex:
                self._versions = self._accepted(self._expect(ACCEPT, "the destination refused"))
            self.stats.setup_ms = int((time.monotonic() - self.stats.started) * 1000)
            self._set_status("active")  # "setup" until the destination took the machine
            while not self._converged(dirty, chunks):
                dirty, chunks = self._pass(writer, out, tracker, dirty, chunks)
            self._switchover(writer, out, tracker, duplex, chunks)
        finally:
            tracker.close()
            for backend in self.disks.values():
                backend.track_writes(False)

    def _first_pass(self, writer: StreamWriter, out: _Paced, tracker: Tracker,
                    chunks: dict[str, list[int]], duplex: bool,
                    ) -> tuple[Any, dict[str, list[int]]]:
        """The first pass, before the destination's answer. A destination that refuses
        closes the connection, which may fail a write of it: then its reason, if it
        gave one, is the error."""
        try:
            return self._pass(writer, out, tracker, tracker.dirty(), chunks, fresh=True)
        except TransportError:
            if duplex:
                self._raise_refusal()
            raise

    def _raise_refusal(self) -> None:
        """MigrationError with the destination's REFUSE text, if one is waiting."""
        try:
            code, text = read_reply(self.channel, ABORT_TIMEOUT)
        except (TransportError, MigrationError):
            return
        if code == REFUSE:
            raise MigrationError(f"the destination refused: {text}" if text
                                 else "the destination refused")

    def _pass(self, writer: StreamWriter, out: _Paced, tracker: Tracker, dirty: Any,
              chunks: dict[str, list[int]], *, fresh: bool = False,
              ) -> tuple[Any, dict[str, list[int]]]:
        """Send the disk chunks and pages selected; returns the next selection.
        ``fresh``: the first pass, to a destination that holds zeros (its zero pages
        need no record)."""
        t0, sent0 = time.monotonic(), self.channel.bytes_sent
        out.pace(self.params["max-bandwidth"])
        self._send_disks(writer, chunks)
        tracker.take(dirty)
        counts = writer.pages(tracker.source, dirty, self.caps["compress"],
                              moving=tracker.moving, fresh=fresh)
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

    def _switchover(self, writer: StreamWriter, out: _Paced, tracker: Tracker,
                    duplex: bool, chunks: dict[str, list[int]]) -> None:
        """Stop the guest, send the rest, let go of the disks, then the handshake."""
        self._stopped = self.machine.post(self._stop_for_switchover).result()
        t_down = time.monotonic()
        self._deadline = t_down + switchover_ms(self.params) / 1000
        self._set_status("device")
        out.pace(0)  # the guest is stopped: no reason to hold back now
        for name, backend in self.disks.items():
            chunks[name] = sorted(set(chunks[name]) | set(backend.take_written()))
        self._send_disks(writer, chunks)
        dirty = tracker.sync()
        self._count(writer.pages(tracker.source, dirty, self.caps["compress"]))  # stopped
        self.stats.dirty_sync_count += 1
        try:
            sections = self.machine.post(
                lambda: capture_sections(self.machine, self._versions)).result()
        except CompatError as e:  # a value the destination's version cannot hold
            raise MigrationError(f"the destination cannot take this machine: {e}") from None
        self.machine.post(self._release_disks).result()
        writer.finish(sections)
        self.channel.timeout = self.time_left()
        if not duplex:  # file:, exec: and the like: a stream, nobody to hand over to
            self.channel.close()
            self.stats.sent_ms = int((time.monotonic() - t_down) * 1000)
            self.machine.post(lambda: self.machine.set_runstate("postmigrate"))
            self._completed(t_down)
            return
        self.channel.flush()
        self.stats.sent_ms = int((time.monotonic() - t_down) * 1000)
        self._expect(READY, "the destination could not load the guest")
        self.machine.post(self._commit).result()
        self._hand_over(t_down)

    def time_left(self) -> float | None:
        """How long the next write or wait may take: STALL_TIMEOUT while the guest runs
        here, what is left of the switchover's deadline once it stopped."""
        if self._deadline is None:
            return STALL_TIMEOUT
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise MigrationError(self._late())
        return left

    def _late(self) -> str:
        return (f"the switchover did not finish within {switchover_ms(self.params)} ms "
                "(downtime-limit plus x-switchover-grace): the destination stalled")

    def _accepted(self, said: str) -> dict[str, int]:
        """The destination's state versions, from its ACCEPT; MigrationError, before the
        guest stops, if some object of this machine cannot be written at them."""
        try:
            versions = destination_versions(said)
            for obj in self._objects:  # types and paths only: no trip to the machine thread
                check_sendable(obj, versions)
        except CompatError as e:
            raise MigrationError(f"the destination cannot take this machine: {e}") from None
        return versions

    def _expect(self, code: int, failure: str) -> str:
        """Wait for reply ``code`` and return its text; MigrationError(``failure``) on
        another reply."""
        timeout = PREFLIGHT_TIMEOUT if self._deadline is None else self.time_left()
        try:
            got, text = read_reply(self.channel, timeout)
        except TransportError:
            if self._deadline is not None and time.monotonic() >= self._deadline:
                raise MigrationError(self._late()) from None
            raise
        if got != code:
            raise MigrationError(f"{failure}: {text}" if text else failure)
        return text

    def _commit(self) -> None:
        """On the machine thread, the point of no return: from here on this process
        never runs the guest on its own."""
        self._committed = True
        self.machine.hold = Hold(f"the guest was migrated to {self.uri}: it runs there")
        self.machine.set_runstate("postmigrate")

    def _hand_over(self, t_down: float) -> None:
        """GO, then wait for RUNNING. Without RUNNING nobody knows where the guest
        runs: it stays paused here, and the operator decides."""
        try:
            # committed even if READY came at the very end: GO still gets a moment
            self.channel.timeout = max(self._deadline - time.monotonic(), ABORT_TIMEOUT)
            send_reply(self.channel, GO)
            self._expect(RUNNING, "the destination did not start the guest")
            self.channel.close()
        except (TransportError, MigrationError, OSError) as e:
            self.channel.abort()
            hold = Hold(f"the migration to {self.uri} was not confirmed ({e}): the guest "
                        "may be running on the destination", forceable=True)
            self.machine.post(lambda: setattr(self.machine, "hold", hold)).result()
            self.error = (f"{e}; the go-ahead was sent but not confirmed: the guest stays "
                          "paused here and may be running on the destination")
            self._set_status("failed")
            log.error("migration to %s: %s", self.uri, self.error)
            return
        self._completed(t_down)

    def _completed(self, t_down: float) -> None:
        self.stats.transferred = self.channel.bytes_sent
        self.stats.remaining = 0
        self.stats.downtime_ms = int((time.monotonic() - t_down) * 1000)
        self._set_status("completed")

    def _stop_for_switchover(self) -> bool:
        was_running = self.machine.runstate == "running"
        self.machine.set_runstate("finish-migrate")
        return was_running

    def _release_disks(self) -> None:
        for backend in _backends(self.machine):
            backend.inactivate()

    def _take_back(self) -> str:
        """After a failure before GO: tell the destination (which then never runs the
        guest), take the disks back -- waiting, up to the switchover's deadline, for a
        destination that still holds them -- and run the guest if it ran. Returns why
        it stays paused, or ""."""
        if self._stopped is None:
            return ""
        self._tell_abort()
        until = time.monotonic() + switchover_ms(self.params) / 1000
        while True:
            why = self.machine.post(self._resume).result()
            if not why or time.monotonic() >= until:
                return why
            time.sleep(0.1)

    def _tell_abort(self) -> None:
        channel = self.channel
        if channel is None or channel.closed or not channel.writable:
            return
        try:
            channel.timeout = ABORT_TIMEOUT
            send_reply(channel, ABORT, self.error)
        except (TransportError, OSError):
            pass  # it will not get GO either way: ABORT only lets it exit sooner
        channel.abort()

    def _resume(self) -> str:
        if self.machine.runstate != "finish-migrate":
            return ""  # quit or reset meanwhile: nothing to take back
        try:
            self.machine.claim_images()
        except RunRefused as e:
            return f"{e}; 'cont' once it lets go"
        self.machine.set_runstate("running" if self._stopped else "paused")
        return ""


# -- the destination -----------------------------------------------------------------------

class Incoming:
    """The receiving side: bound at once (so a bad URI or a busy port fails at start),
    then ``receive()`` takes one migration. A socket listener outlives connections
    that do not start with a pyemu stream (a port scan, a health check): each is
    dropped with a log line, and it goes on listening for the source."""

    def __init__(self, uri: str, parameters: dict[str, int | str] | None = None) -> None:
        """``parameters``: the machine's migration parameters (tls-creds); None: this
        process's defaults (``-global migration.tls-creds``, for a bare -incoming)."""
        self.uri = uri
        self.listener = listen(uri, tls.from_parameters(
            PARAMETERS if parameters is None else parameters))
        self.repeats = parse_uri(uri).scheme in ("tcp", "unix")
        self.channel: Channel | None = None
        self.error = ""
        self.answer = False  # the source listens on the return path and hands over
        self.switchover = 0.0  # seconds the source gives the handshake
        self.staged: dict[str, DiskStaging] = {}
        self.ready = threading.Event()  # a machine exists now, or the migration failed

    def _accept(self) -> tuple[Channel, Head]:
        """The first connection that starts like a pyemu stream, and its head."""
        while True:
            ch = late = None
            try:
                ch = self.listener.accept()  # with TLS, the handshake too
                if self.repeats:  # the whole head in time, not just some byte of it
                    late = threading.Timer(HEAD_TIMEOUT, ch.abort)
                    late.start()
                head = receive_head(ch, TransportError)
            except (StreamError, TransportError) as e:
                why = f"no pyemu stream header within {HEAD_TIMEOUT:g} s" \
                    if late is not None and not late.is_alive() else str(e)
                if ch is not None:
                    ch.abort()
                if not self.repeats or self.listener.closed:
                    raise StreamError(why) from None
                log.warning("incoming migration: dropped a connection%s: %s",
                            f" from {_peer(ch)}" if ch is not None else "", why)
                continue
            finally:
                if late is not None:
                    late.cancel()
            ch.timeout = STALL_TIMEOUT
            return ch, head

    def receive(self, on_description: Callable[[dict[str, Any]], Any]) -> tuple[RawStream, Any]:
        """The whole stream, checked, and the machine it went into: ``on_description``
        builds or checks the machine (raising StreamError or ValueError to refuse) and
        returns it, before any RAM arrives. RAM goes straight into the machine, which
        has never run and never will if anything fails; drive contents wait aside."""
        try:
            ch, head = self._accept()
        finally:
            self.listener.close()
        self.channel = ch
        duplex = ch.readable and ch.writable
        machines: list[Any] = []

        def check(desc: dict[str, Any]) -> Target:
            how = desc.get("migration") if isinstance(desc.get("migration"), dict) else {}
            answer = duplex and how.get("reply") is True
            try:
                self.switchover = _switchover_seconds(how) if answer else 0.0
                machines.append(on_description(desc))
            except (StreamError, ValueError, OSError) as e:
                if answer:
                    send_reply(ch, REFUSE, one_line(e))
                raise StreamError(one_line(e)) from None
            machine = machines[0]
            try:
                self.staged = self._staging(machine, how.get("block") is True)
            except OSError as e:
                text = f"block migration needs images of its own here: {one_line(e)}"
                if answer:
                    send_reply(ch, REFUSE, text)
                raise StreamError(text) from None
            if answer:
                send_reply(ch, ACCEPT, announcement())  # a source writes at our versions
            self.answer = answer
            hostram.zero(machine.mem.ram)  # what booting it wrote
            return Target(machine.mem.ram, dict(self.staged))

        return receive_rest(head, check), machines[0]

    @staticmethod
    def _staging(machine: Any, block: bool) -> dict[str, DiskStaging]:
        """Block migration: where each copied drive's chunks wait. The images are ours
        (locked now: the source's, if it is the same file, fails) and unwritten."""
        if not block:
            return {}
        disks = copied_drives(machine)
        for backend in disks.values():
            backend.activate()
        return {name: DiskStaging(backend) for name, backend in disks.items()}

    def hand_over(self) -> str:
        """READY, then the source's word: "" on GO; otherwise why the guest must not
        run here."""
        ch = self.channel
        try:
            send_reply(ch, READY)
            code, text = read_reply(ch, self.switchover)
        except (TransportError, MigrationError) as e:
            return f"the source did not hand the guest over ({e})"
        if code == ABORT:
            return f"the source took the guest back ({text or 'no reason given'})"
        if code != GO:
            return f"the source sent message {code} instead of the go-ahead"
        return ""

    def confirm(self) -> None:
        """RUNNING (the guest runs here now), and close; the source stays paused if
        this does not reach it, and says so."""
        try:
            self.channel.timeout = self.switchover  # a stalled source cannot hold us
            send_reply(self.channel, RUNNING)
            self.channel.close()
        except TransportError as e:
            log.warning("incoming migration: the source may not know the guest runs "
                        "here: %s", e)
            self.channel.abort()

    def fail(self, machine: Any, reason: str) -> None:
        """Say FAILED (if the source listens and the stream did not get that far),
        and end this process: a partly loaded or unreleased guest never runs."""
        self.error = reason
        for stage in self.staged.values():
            stage.close()
        ch = self.channel
        if ch is not None:
            try:
                if self.answer:
                    send_reply(ch, FAILED, reason)
                ch.close()
            except TransportError:
                ch.abort()
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


def one_line(e: Exception) -> str:
    """An error as a message line: an OSError's text without its "[Errno N]"."""
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e)


def _peer(ch: Channel) -> str:
    peer = ch.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return format_tcp(str(peer[0]), int(peer[1]))[4:]
    return str(peer or ch.uri)


def _switchover_seconds(how: dict[str, Any]) -> float:
    ms = how.get("switchover_ms")
    if isinstance(ms, bool) or not isinstance(ms, int) or not 0 < ms <= MAX_SWITCHOVER_MS:
        raise StreamError(f"description/migration/switchover_ms: {ms!r} is not a deadline")
    return ms / 1000


def install(machine: Any, raw: RawStream, staged: dict[str, DiskStaging]) -> None:
    """On the destination's machine thread: decode everything, take the disks (the
    source let go of them before it sent the end), write what block migration
    brought, then install the guest."""
    snap = decode_stream(raw, machine)
    machine.claim_images()
    for stage in staged.values():
        stage.commit()
    apply_snapshot(machine, snap)
    machine.after_load()


def run_incoming(incoming: Incoming, on_description: Callable[[dict[str, Any]], Any],
                 machine_of: Callable[[], Any]) -> None:
    """The incoming thread: receive, install on the machine thread, hand over, then run
    the guest (or leave it paused with -S). Any failure is answered if the source
    listens, and ends the process with one line: the guest never runs here unless
    the source said GO."""
    machine = None
    try:
        raw, machine = incoming.receive(on_description)
        machine.post(lambda: install(machine, raw, incoming.staged)).result()
        why = incoming.hand_over() if incoming.answer else ""
    except (StreamError, TransportError, MigrationError, RunRefused, OSError,
            ValueError) as e:
        incoming.fail(machine_of(), str(e))
        return
    except Exception as e:  # a bug: still one line and an exit, never a hung process
        log.debug("incoming migration", exc_info=True)
        incoming.fail(machine_of(), f"internal error: {type(e).__name__}: {e}")
        return
    if why:
        incoming.answer = False  # past READY: FAILED would mean nothing to the source
        incoming.fail(machine, f"{why}: not running it here")
        return
    paused = machine.cfg.start_paused
    machine.post(lambda: machine.set_runstate("paused" if paused else "running")).result()
    machine.migration.incoming_status = "completed"
    if incoming.answer:
        incoming.confirm()
    else:
        incoming.channel.close()


def start_incoming(machine: Any, incoming: Incoming) -> None:
    """Receive a migration into ``machine`` (waiting in "inmigrate") on its own thread;
    MIGRATION events tell its start and its outcome."""
    settings = machine.migration
    settings.incoming_status = "active"
    check = matches(machine)

    def on_description(desc: dict[str, Any]) -> Any:
        check(desc)
        return machine

    def receive() -> None:
        run_incoming(incoming, on_description, lambda: machine)
        settings.emit("MIGRATION", {"status": settings.incoming_status})

    settings.emit("MIGRATION", {"status": "active"})
    threading.Thread(target=receive, name="migration-incoming", daemon=True).start()
