"""QMP, the QEMU Machine Protocol: the JSON front end to the monitor's actions.

The protocol as QEMU specifies it (docs/interop/qmp-spec.rst) and as its client library
``qemu.qmp`` speaks it:
- the server greets first: ``{"QMP": {"version": ..., "capabilities": ["oob"]}}``;
- a session starts in capabilities negotiation mode, where only ``qmp_capabilities`` is
  accepted (anything else: CommandNotFound); after it, every command, and events;
- the client sends a stream of JSON objects, split anywhere or several to a read, with
  no line ends needed; ``{"execute": NAME, "arguments": {...}, "id": ANY}`` gets one
  reply, ``{"return": ...}`` or ``{"error": {"class": ..., "desc": ...}}``, with the id
  echoed;
- events: ``{"event": NAME, "data": {...}, "timestamp": {"seconds", "microseconds"}}``.

Listening: ``-qmp unix:PATH,server[,nowait]`` or ``tcp:HOST:PORT,server[,nowait]``; an
empty HOST means loopback (``sockaddr.control_listen_host``, as for a monitor's chardev
server). The chardev socket backend serves one client at a time and
QMP serves many, so the listener here uses emu/host/sockaddr.py directly. Each
connection is a session with a reader thread (splits and checks messages, runs commands
on the machine thread through ``machine.post`` and waits for their result) and a writer
thread (sends replies and events from a capped queue). The machine thread never waits
for a client: one that reads too slowly is dropped, one that vanishes leaves nothing.
A client hung up on (too many clients, a message too big or too deep, not reading) is
sent one error line saying why first, which it gets if it still reads.

Commands keep QEMU's names, arguments and reply shapes; the actions they share with the
human monitor are the functions of emu/monitor/commands.py.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emu import __version__
from emu.host import sockaddr
from emu.monitor import commands
from emu.monitor.commands import CommandError, Pending
from emu.monitor.qom_commands import (
    QomError,
    export_machine,
    find_object,
    qom_get,
    qom_list,
    qom_set,
)
from emu.qom import jsontext

if TYPE_CHECKING:
    from emu.host.chardev import Chardev
    from emu.machine.machine import Machine
    from emu.qom import Object

log = logging.getLogger("emu.monitor")

MAX_MESSAGE = 1 << 20  # bytes in one JSON value before the connection is dropped
MAX_DEPTH = 128  # nesting of one JSON value
MAX_OUTPUT = 16 << 20  # bytes queued for a client that does not read before it is dropped
MAX_SESSIONS = 32
BACKLOG = 8
READ_CHUNK = 64 << 10
WAIT_SLICE = 0.2  # seconds between looks at whether the server is closing
FLUSH_TIMEOUT = 2.0  # seconds a closing server gives its clients to take the last words
PAGE = 4096


class QmpError(Exception):
    """An error reply: QEMU's error class and a one-line description."""

    def __init__(self, desc: str, error_class: str = "GenericError") -> None:
        super().__init__(desc)
        self.desc, self.error_class = desc, error_class

    def reply(self) -> dict[str, Any]:
        return {"error": {"class": self.error_class, "desc": self.desc}}


# -- the input stream ------------------------------------------------------------------

class JsonStreamError(Exception):
    """Input the session cannot resynchronise after (too big, too deep): it ends."""


_BLANK = re.compile(rb"[ \t\r\n]*")
_IN_STRING = re.compile(rb'["\\]')
_STRUCTURE = re.compile(rb'[{}\[\]"]')
_BARE_END = re.compile(rb'[ \t\r\n{}\[\]"]')


class JsonSplitter:
    """Cuts a byte stream into top-level JSON texts, as QEMU's JSON streamer does: by
    bracket depth, outside strings. Whether a text is valid JSON is the parser's
    business; a stray closing bracket or a bare scalar comes out as a text of its own.
    Structure characters are ASCII, which never occurs inside a UTF-8 sequence, so the
    bytes can be scanned undecoded."""

    def __init__(self, max_size: int = MAX_MESSAGE, max_depth: int = MAX_DEPTH) -> None:
        self.max_size, self.max_depth = max_size, max_depth
        self._buf = bytearray()
        self._pos = 0  # scanned up to here
        self._start: int | None = None  # where the value being scanned began
        self._depth = 0
        self._in_string = False
        self._bare = False  # scanning a top-level scalar such as 123 or true

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The texts ``data`` completes, each as soon as it is found, so that those before
        a value too big or too deep are answered before its JsonStreamError."""
        self._buf += data
        return self._texts()

    def _texts(self) -> Iterator[bytes]:
        while (text := self._scan()) is not None:
            yield text
        if self._start is None:
            del self._buf[:self._pos]
            self._pos = 0
        elif len(self._buf) - self._start > self.max_size:
            raise JsonStreamError(f"JSON message exceeds {self.max_size} bytes")

    def _scan(self) -> bytes | None:
        buf = self._buf
        if self._start is None:
            self._pos = _BLANK.match(buf, self._pos).end()
            if self._pos >= len(buf):
                return None
            self._start, c = self._pos, buf[self._pos]
            if c in b"}]":
                self._pos += 1
                return self._take()
            self._bare = c not in b'{["'
            if not self._bare:
                self._pos += 1
                self._depth, self._in_string = int(c != ord('"')), c == ord('"')
        while True:
            if self._in_string:
                m = _IN_STRING.search(buf, self._pos)
                if m is None or (m.group() == b"\\" and m.end() >= len(buf)):
                    self._pos = len(buf) if m is None else m.start()
                    return None
                if m.group() == b"\\":
                    self._pos = m.end() + 1  # the escaped character, whatever it is
                    continue
                self._in_string, self._pos = False, m.end()
                if self._depth == 0:
                    return self._take()
                continue
            pattern = _BARE_END if self._bare else _STRUCTURE
            m = pattern.search(buf, self._pos)
            if m is None:
                self._pos = len(buf)
                return None
            if self._bare:
                self._pos, self._bare = m.start(), False
                return self._take()
            self._pos = m.end()
            c = m.group()
            if c == b'"':
                self._in_string = True
            elif c in (b"{", b"["):
                self._depth += 1
                if self._depth > self.max_depth:
                    raise JsonStreamError(f"JSON nesting deeper than {self.max_depth} levels")
            else:
                self._depth -= 1
                if self._depth == 0:
                    return self._take()

    def _take(self) -> bytes:
        assert self._start is not None
        text = bytes(self._buf[self._start:self._pos])
        del self._buf[:self._pos]
        self._pos, self._start, self._depth = 0, None, 0
        if len(text) > self.max_size:
            raise JsonStreamError(f"JSON message exceeds {self.max_size} bytes")
        return text


def parse_request(text: bytes) -> dict[str, Any]:
    """One client message, checked as QEMU checks it before dispatch. The JSON is strict
    (RFC 8259): Python's extensions NaN and Infinity are refused, and so are a number too
    big for a double and a key given twice in one object, which Python would silently
    turn into inf or the last value. So anything parsed, an id included, is valid JSON
    again when echoed."""
    try:
        msg = jsontext.loads(text)
    except (ValueError, RecursionError) as e:
        raise QmpError(f"JSON parse error, {e}") from None
    if not isinstance(msg, dict):
        raise QmpError("QMP input must be a JSON object")
    return msg


def encode(msg: dict[str, Any]) -> bytes:
    """``msg`` as one line of strict JSON; ValueError or TypeError if it has a value JSON
    cannot carry (NaN, a Python object)."""
    return (json.dumps(msg, allow_nan=False) + "\r\n").encode()


def _request_parts(msg: dict[str, Any]) -> tuple[str, dict[str, Any], bool]:
    """(command name, arguments, out-of-band?) of a checked message."""
    for key in msg:
        if key not in ("execute", "exec-oob", "arguments", "id"):
            raise QmpError(f"QMP input member '{key}' is unexpected")
    oob = "exec-oob" in msg
    if oob == ("execute" in msg):
        raise QmpError("QMP input lacks member 'execute'" if not oob else
                       "QMP input must not have both 'execute' and 'exec-oob'")
    key = "exec-oob" if oob else "execute"
    if not isinstance(msg[key], str):
        raise QmpError(f"QMP input member '{key}' must be a string")
    args = msg.get("arguments", {})
    if not isinstance(args, dict):
        raise QmpError("QMP input member 'arguments' must be an object")
    return msg[key], args, oob


# -- argument checking -------------------------------------------------------------------

# An argument schema maps names to types, QAPI-style: "*name" is optional; a type is
# "str", "int", "bool", "any", a nested schema (an object) or [type] (an array).
Schema = dict[str, Any]
_EXPECTED = {"str": ("string", str), "int": ("integer", int), "bool": ("boolean", bool)}


def check_args(schema: Schema, args: dict[str, Any], prefix: str = "") -> None:
    """QEMU's errors, naming the parameter: missing, of the wrong type, unexpected."""
    for key, spec in schema.items():
        name = key.lstrip("*")
        if name in args:
            _check_value(spec, args[name], prefix + name)
        elif not key.startswith("*"):
            raise QmpError(f"Parameter '{prefix}{name}' is missing")
    known = {key.lstrip("*") for key in schema}
    if "" in known:  # "**": the command takes further arguments and checks them itself
        return
    for name in args:
        if name not in known:
            raise QmpError(f"Parameter '{prefix}{name}' is unexpected")


def _check_value(spec: Any, value: Any, where: str) -> None:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise QmpError(f"Invalid parameter type for '{where}', expected: object")
        check_args(spec, value, where + ".")
    elif isinstance(spec, list):
        if not isinstance(value, list):
            raise QmpError(f"Invalid parameter type for '{where}', expected: array")
        for i, item in enumerate(value):
            _check_value(spec[0], item, f"{where}[{i}]")
    elif spec != "any":
        expected, kind = _EXPECTED[spec]
        # bool is an int in Python; JSON keeps the two apart
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise QmpError(f"Invalid parameter type for '{where}', expected: {expected}")


# -- the command table -------------------------------------------------------------------

QmpHandler = Callable[["Machine", dict[str, Any]], Any]


@dataclass(frozen=True)
class QmpCommand:
    name: str
    args: Schema
    fn: QmpHandler


QMP_COMMANDS: dict[str, QmpCommand] = {}


def qmp_command(name: str, args: Schema | None = None):
    """Register a QMP command: ``fn(machine, args)`` runs on the machine thread with its
    arguments checked against ``args`` and returns the JSON value of the reply (or a
    ``Pending`` whose ``wait()`` gives it, waited for off the machine thread)."""

    def deco(fn: QmpHandler) -> QmpHandler:
        if name in QMP_COMMANDS:
            raise ValueError(f"QMP command {name!r} registered twice")
        QMP_COMMANDS[name] = QmpCommand(name, args or {}, fn)
        return fn

    return deco


def version() -> dict[str, Any]:
    numbers = [int(n) for n in re.findall(r"\d+", __version__)[:3]]
    major, minor, micro = numbers + [0] * (3 - len(numbers))
    return {"qemu": {"major": major, "minor": minor, "micro": micro},
            "package": f"pyemu {__version__}"}


@qmp_command("query-version")
def _query_version(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    return version()


@qmp_command("query-commands")
def _query_commands(machine: Machine, args: dict[str, Any]) -> list[dict[str, str]]:
    return [{"name": name} for name in ["qmp_capabilities", *sorted(QMP_COMMANDS)]]


@qmp_command("query-status")
def _query_status(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    return {"status": machine.runstate, "running": machine.runstate == "running",
            "singlestep": False}


@qmp_command("query-name")
def _query_name(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    name = getattr(getattr(machine, "cfg", None), "name", "")
    return {"name": name} if name else {}


@qmp_command("stop")
def _stop(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    machine.stop()
    return {}


@qmp_command("cont", {"*x-force": "bool"})
def _cont(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    commands.resume(machine, bool(args.get("x-force")))
    return {}


@qmp_command("system_reset")
def _system_reset(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    machine.reset_now("system_reset from QMP", "host-qmp-system-reset")
    return {}


@qmp_command("system_powerdown")
def _system_powerdown(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    commands.press_power_button(machine)
    return {}


@qmp_command("quit")
def _quit(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    machine.request_shutdown(0, "quit from QMP", "host-qmp-quit")
    return {}


@qmp_command("query-cpus-fast")
def _query_cpus_fast(machine: Machine, args: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"cpu-index": 0, "qom-path": f"{machine.path}/cpu",
             "thread-id": threading.get_native_id(),  # the machine thread runs the CPU
             "props": {"core-id": 0, "thread-id": 0, "socket-id": 0},
             "target": "x86_64"}]


@qmp_command("query-block")
def _query_block(machine: Machine, args: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, _, drive in machine.drives():
        backend = drive.backend
        info: dict[str, Any] = {"device": name, "qdev": drive.path,
                                "locked": drive.medium_locked, "removable": drive.is_cd,
                                "type": "unknown"}
        if drive.is_cd:
            info["tray_open"] = drive.tray_open
        if backend is not None:
            info["inserted"] = {
                "file": backend.path, "ro": backend.readonly, "drv": backend.format,
                "encrypted": False, "backing_file_depth": 0, "detect_zeroes": "off",
                "bps": 0, "bps_rd": 0, "bps_wr": 0, "iops": 0, "iops_rd": 0, "iops_wr": 0,
                "write_threshold": 0,
                "cache": {"writeback": True, "direct": False, "no-flush": False},
                "image": {"filename": backend.path, "format": backend.format,
                          "virtual-size": backend.size}}
        out.append(info)
    return out


def _chardevs(machine: Machine) -> dict[str, Chardev]:
    """The host backends by label: -chardev and chardev-add ones by id, then the
    devices' own: serial0.., debugcon (bound to two ports)."""
    found: dict[str, Chardev] = dict(getattr(machine, "chardevs", {}))
    for obj in machine.walk():
        cd = getattr(obj, "chardev", None)
        if cd is not None and all(cd is not seen for seen in found.values()):
            found[obj.name.split("-")[0]] = cd
    return found


@qmp_command("query-chardev")
def _query_chardev(machine: Machine, args: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"label": label, "filename": cd.spec,
             "frontend-open": bool(getattr(cd, "connected", True))}
            for label, cd in _chardevs(machine).items()]


# -- migration ------------------------------------------------------------------------------

@qmp_command("migrate", {"uri": "str", "*detach": "bool", "*blk": "bool", "*inc": "bool"})
def _migrate(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("inc"):
        raise QmpError("incremental block migration is not supported")
    # QMP returns at once: query-migrate follows it
    commands.start_migration(machine, args["uri"], block=bool(args.get("blk")))
    return {}


@qmp_command("migrate-incoming", {"uri": "str"})
def _migrate_incoming(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    commands.start_incoming_migration(machine, args["uri"])
    return {}


@qmp_command("migrate_cancel")
def _migrate_cancel(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    commands.cancel_migration(machine)
    return {}


@qmp_command("query-migrate")
def _query_migrate(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    settings = machine.migration
    job = settings.job
    if job is None:  # QEMU says nothing until a migration has happened
        status = settings.incoming_status
        return {} if status == "none" else {"status": status}
    st = job.stats
    running = job.status in ("setup", "active", "device", "cancelling")
    elapsed = st.total_ms if job.done.is_set() else \
        int((time.monotonic() - st.started) * 1000)
    info: dict[str, Any] = {"status": job.status, "total-time": elapsed,
                            "setup-time": st.setup_ms}
    if job.status == "completed":
        info["downtime"] = st.downtime_ms
        info["x-stream-sent-time"] = st.sent_ms
    elif running:
        info["expected-downtime"] = st.expected_downtime_ms
    pages = st.normal + st.duplicate
    info["ram"] = {"transferred": st.transferred, "remaining": st.remaining,
                   "total": st.total, "duplicate": st.duplicate, "skipped": 0,
                   "normal": st.normal, "normal-bytes": st.normal * PAGE,
                   "dirty-pages-rate": st.dirty_pages_rate, "mbps": st.mbps,
                   "dirty-sync-count": st.dirty_sync_count, "page-size": PAGE,
                   "pages-per-second": int(pages * 1000 / max(elapsed, 1))}
    if st.throttle:
        info["cpu-throttle-percentage"] = st.throttle
    if job.status == "failed":
        info["error-desc"] = job.error
    return info


def _parameters_schema() -> Schema:
    from emu.migration.live import PARAMETERS

    return {f"*{name}": "str" if isinstance(default, str) else "int"
            for name, default in PARAMETERS.items()}


@qmp_command("query-migrate-parameters")
def _query_migrate_parameters(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    return dict(machine.migration.parameters)


@qmp_command("migrate-set-parameters", _parameters_schema())
def _migrate_set_parameters(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    settings = machine.migration
    before = dict(settings.parameters)
    try:
        for name, value in args.items():
            settings.set_parameter(name, value)
    except ValueError as e:
        settings.parameters.update(before)  # all or nothing
        raise QmpError(str(e)) from None
    return {}


@qmp_command("query-migrate-capabilities")
def _query_migrate_capabilities(machine: Machine, args: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"capability": name, "state": on}
            for name, on in machine.migration.capabilities.items()]


@qmp_command("migrate-set-capabilities",
             {"capabilities": [{"capability": "str", "state": "bool"}]})
def _migrate_set_capabilities(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    settings = machine.migration
    before = dict(settings.capabilities)
    try:
        for item in args["capabilities"]:
            settings.set_capability(item["capability"], item["state"])
    except ValueError as e:
        settings.capabilities.update(before)  # all or nothing
        raise QmpError(str(e)) from None
    return {}


# -- snapshots: QEMU's job-based snapshot-* in a synchronous form ---------------------------

@qmp_command("snapshot-save", {"tag": "str"})
def _snapshot_save(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    commands.save_snapshot(machine, args["tag"])
    return {}


@qmp_command("snapshot-load", {"tag": "str"})
def _snapshot_load(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    commands.load_snapshot(machine, args["tag"])
    return {}


@qmp_command("snapshot-delete", {"tag": "str"})
def _snapshot_delete(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    commands.delete_snapshot(machine, args["tag"])
    return {}


# -- the object tree ----------------------------------------------------------------------

def _qom(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except QomError as e:
        raise QmpError(str(e), e.error_class) from None


@qmp_command("qom-list", {"path": "str"})
def _qom_list(machine: Machine, args: dict[str, Any]) -> list[dict[str, Any]]:
    return _qom(lambda: qom_list(machine, args["path"]))


@qmp_command("qom-get", {"path": "str", "property": "str"})
def _qom_get(machine: Machine, args: dict[str, Any]) -> Any:
    return _qom(lambda: qom_get(machine, args["path"], args["property"]))


@qmp_command("qom-set", {"path": "str", "property": "str", "value": "any"})
def _qom_set(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    _qom(lambda: qom_set(machine, args["path"], args["property"], args["value"]))
    return {}


def _board(fn: Callable[[], Any], refusal: type[Exception]) -> dict[str, Any]:
    """Run a board operation: an empty reply, or its ``refusal`` (which carries QEMU's
    error class) as the error reply."""
    try:
        fn()
    except refusal as e:
        raise QmpError(str(e), e.error_class) from None  # type: ignore[attr-defined]
    return {}


def _media(args: dict[str, Any], fn: Callable[[str], None]) -> dict[str, Any]:
    """Run a removable-media operation on the drive ``device`` (or ``id``) names."""
    from emu.machine.pc.media import MediaError

    names = [args[k] for k in ("device", "id") if k in args]
    if len(names) != 1:
        raise QmpError("Need exactly one of 'device' and 'id'")
    return _board(lambda: fn(names[0]), MediaError)


_DRIVE_ARGS: Schema = {"*device": "str", "*id": "str"}


@qmp_command("blockdev-change-medium", {**_DRIVE_ARGS, "filename": "str", "*format": "str",
                                        "*force": "bool", "*read-only-mode": "str"})
def _blockdev_change_medium(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    from emu.machine.pc import media

    if args.get("read-only-mode", "retain") not in ("retain", "read-only"):
        raise QmpError("read-only-mode: a cdrom is read-only")
    return _media(args, lambda dev: media.change_medium(
        machine, dev, args["filename"], args.get("format"), args.get("force", False)))


@qmp_command("eject", {**_DRIVE_ARGS, "*force": "bool"})
def _eject(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    from emu.machine.pc import media

    return _media(args, lambda dev: media.eject(machine, dev, args.get("force", False)))


@qmp_command("blockdev-open-tray", {**_DRIVE_ARGS, "*force": "bool"})
def _blockdev_open_tray(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    from emu.machine.pc import media

    return _media(args, lambda dev: media.open_tray(machine, dev, args.get("force", False)))


@qmp_command("blockdev-close-tray", _DRIVE_ARGS)
def _blockdev_close_tray(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    from emu.machine.pc import media

    return _media(args, lambda dev: media.close_tray(machine, dev))


# -- hotplug (machine/pc/hotplug.py, as HMP's commands) -----------------------------------

def _hotplug(fn: Callable[[], Any]) -> dict[str, Any]:
    from emu.machine.pc.hotplug import HotplugError

    return _board(fn, HotplugError)


def _option_text(name: str, value: Any) -> str:
    """A device_add argument in -device spelling; commas would split it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int) or (isinstance(value, str) and "," not in value):
        return str(value)
    raise QmpError(f"Parameter '{name}' expects a string, number or boolean without ','")


@qmp_command("device_add", {"driver": "str", "*id": "str", "**": "any"})
def _device_add(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    from emu.machine.pc import hotplug

    spec = ",".join([_option_text("driver", args["driver"])] +
                    [f"{k}={_option_text(k, v)}" for k, v in args.items() if k != "driver"])
    return _hotplug(lambda: hotplug.device_add(machine, spec))  # type: ignore[arg-type]


@qmp_command("device_del", {"id": "str"})
def _device_del(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    from emu.machine.pc import hotplug

    return _hotplug(lambda: hotplug.device_del(machine, args["id"]))  # type: ignore[arg-type]


def _backend_text(chardev_id: str, backend: dict[str, Any]) -> str:
    """qapi/char.json's ChardevBackend as -chardev text: null, file (out), socket (a
    unix path or an inet host and port, server, wait, nodelay)."""
    kind, data = backend["type"], backend.get("data", {})
    if not isinstance(data, dict):
        raise QmpError("Invalid parameter type for 'backend.data', expected: object")
    head = f"{kind},id={_option_text('id', chardev_id)}"
    if kind == "null":
        return head
    if kind == "file" and isinstance(data.get("out"), str):
        return f"{head},path={_option_text('backend.data.out', data['out'])}"
    addr = data.get("addr")
    if kind != "socket" or not isinstance(addr, dict) or not isinstance(addr.get("data"), dict):
        raise QmpError(f"chardev-add: backend '{kind}' with these arguments is not "
                       "supported (null, file with out, socket with addr)")
    where = addr["data"]
    if addr.get("type") == "unix" and "path" in where:
        text = f"{head},path={_option_text('path', where['path'])}"
    elif addr.get("type") == "inet" and "port" in where:
        text = (f"{head},host={_option_text('host', where.get('host', ''))}"
                f",port={_option_text('port', where['port'])}")
    else:
        raise QmpError("chardev-add: a socket's addr is unix (path) or inet (host, port)")
    for key in ("server", "wait", "nodelay"):
        if key in data:
            text += f",{key}={_option_text(key, data[key])}"
    return text


@qmp_command("chardev-add", {"id": "str", "backend": {"type": "str", "*data": "any"}})
def _chardev_add(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    from emu.machine.pc import hotplug

    text = _backend_text(args["id"], args["backend"])
    return _hotplug(lambda: hotplug.chardev_add(machine, text))  # type: ignore[arg-type]


@qmp_command("chardev-remove", {"id": "str"})
def _chardev_remove(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    from emu.machine.pc import hotplug

    return _hotplug(lambda: hotplug.chardev_remove(machine, args["id"]))  # type: ignore[arg-type]


@qmp_command("machine-export", {"file": "str"})
def _machine_export(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    _qom(lambda: export_machine(machine, args["file"]))
    return {}


def _state_tree(obj: Object, recursive: bool) -> dict[str, Any]:
    from emu.qom.stateio import visit_fields
    from emu.qom.visitor import JsonWriter

    w = JsonWriter()
    visit_fields(w, obj)
    node: dict[str, Any] = {"path": obj.path, "type": obj.TYPE_NAME,
                            "version": obj.STATE_VERSION, "state": w.root}
    if recursive:
        node["children"] = {name: _state_tree(child, True)
                            for name, child in obj.children.items()}
    return node


@qmp_command("x-query-state", {"path": "str", "*recursive": "bool"})
def _x_query_state(machine: Machine, args: dict[str, Any]) -> dict[str, Any]:
    """The state of an object as its migration sees it (bytes as hex), with its
    children's if ``recursive``."""
    obj = _qom(lambda: find_object(machine, args["path"]))
    return _state_tree(obj, args.get("recursive", False))


@qmp_command("human-monitor-command", {"command-line": "str", "*cpu-index": "int"})
def _human_monitor_command(machine: Machine, args: dict[str, Any]) -> str | Pending:
    """The line through the human monitor's registry; its output (errors included) is
    the reply, with QEMU's line ends."""

    def text(out: str) -> str:
        return out.replace("\n", "\r\n") + "\r\n" if out else ""

    try:
        out = commands.execute(machine, args["command-line"])
    except CommandError as e:
        return text(str(e))
    if isinstance(out, Pending):
        return Pending(lambda: text(out.wait()))
    return text(out)


# -- sessions -------------------------------------------------------------------------------

_NO_ID = object()


def _with_id(reply: dict[str, Any], ident: Any) -> dict[str, Any]:
    return reply if ident is _NO_ID else {**reply, "id": ident}


class Session:
    """One client connection: a reader thread and a writer thread."""

    def __init__(self, server: QmpServer, sock: socket.socket) -> None:
        self.server, self.sock = server, sock
        self.negotiated = False
        self._splitter = JsonSplitter()
        self._out: deque[bytes] = deque()
        self._out_size = 0
        self._cond = threading.Condition()
        self._closed = False
        self._busy = False  # a command is running: its reply is still to come
        self._reader = threading.Thread(target=self._read_loop, name="qmp-read", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="qmp-write",
                                        daemon=True)

    def start(self) -> None:
        self.send({"QMP": {"version": version(), "capabilities": ["oob"]}})
        self._writer.start()
        self._reader.start()

    # -- output: from any thread, never waiting ----------------------------------------
    def send(self, msg: dict[str, Any]) -> None:
        try:
            data = encode(msg)
        except (ValueError, TypeError) as e:  # a command or event bug: never a bad line
            log.error("QMP %s not sent, not JSON: %s", "event" if "event" in msg else "reply", e)
            if "event" in msg:
                return
            # the id came from strict JSON, so it encodes
            data = encode(_with_id(QmpError(f"internal error: reply is not JSON: {e}").reply(),
                                   msg.get("id", _NO_ID)))
        with self._cond:
            if self._closed:
                return
            if self._out_size + len(data) > MAX_OUTPUT:
                self._out.clear()  # it does not read them: its last line goes first
                self._out_size = 0
                self.hang_up(f"QMP client does not read its replies ({MAX_OUTPUT} bytes "
                             "waiting)")
                return
            self._out.append(data)
            self._out_size += len(data)
            self._cond.notify_all()

    def hang_up(self, why: str) -> None:
        """Close with an error saying ``why`` as the client's last line; the writer gets
        FLUSH_TIMEOUT to deliver it after what is queued, for a client that reads."""
        log.warning("QMP client dropped: %s", why)
        line = encode(QmpError(f"{why}; closing the connection").reply())
        with self._cond:
            if self._closed:
                return
            self._out.append(line)
            self._out_size += len(line)
            self._closed = True
            self._cond.notify_all()
        timer = threading.Timer(FLUSH_TIMEOUT, self._shutdown)  # a stalled send ends
        timer.daemon = True
        timer.start()

    def event(self, msg: dict[str, Any]) -> None:
        if self.negotiated:
            self.send(msg)

    def close(self) -> None:
        """No more output after what is queued; the writer then hangs up."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def finish(self, deadline: float) -> None:
        """For a closing server: let a running command reply, flush, hang up."""
        with self._cond:
            self._cond.wait_for(lambda: not self._busy, max(0.0, deadline - time.monotonic()))
        self.close()
        self._writer.join(max(0.0, deadline - time.monotonic()))
        self._shutdown()

    def _shutdown(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a reader blocked in recv
        except OSError:
            pass

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._out or self._closed)
                if not self._out:
                    break
                data = b"".join(self._out)
                self._out.clear()
                self._out_size = 0
            try:
                self.sock.sendall(data)
            except OSError:
                break
        self._shutdown()
        with self._cond:
            self._closed = True
        self.sock.close()

    # -- input ---------------------------------------------------------------------------
    def _read_loop(self) -> None:
        try:
            while not self._closed:
                data = self.sock.recv(READ_CHUNK)
                if not data:
                    break
                try:
                    for text in self._splitter.feed(data):
                        self._handle(text)
                except JsonStreamError as e:
                    self.hang_up(str(e))
                    break
        except OSError:
            pass  # the client went away: nothing of ours depends on it
        finally:
            self.close()
            self.server.forget(self)

    def _handle(self, text: bytes) -> None:
        ident: Any = _NO_ID
        with self._cond:
            self._busy = True
        try:
            msg = parse_request(text)
            ident = msg.get("id", _NO_ID)
            reply = {"return": self._execute(msg)}
        except QmpError as e:
            reply = e.reply()
        except CommandError as e:
            reply = QmpError(str(e).removeprefix("Error: ")).reply()
        except Exception as e:  # a bug in a command must not end the session
            log.exception("QMP command failed")
            reply = QmpError(f"internal error: {e}").reply()
        self.send(_with_id(reply, ident))
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def _execute(self, msg: dict[str, Any]) -> Any:
        name, args, oob = _request_parts(msg)
        if name == "qmp_capabilities":
            return self._capabilities(args)
        if not self.negotiated:
            raise QmpError("Expecting capabilities negotiation with 'qmp_capabilities'",
                           "CommandNotFound")
        cmd = QMP_COMMANDS.get(name)
        if cmd is None:
            raise QmpError(f"The command {name} has not been found", "CommandNotFound")
        if oob:
            raise QmpError(f"The command {name} does not support OOB")
        check_args(cmd.args, args)
        result = self.server.on_machine(lambda: cmd.fn(self.server.machine, args))
        return result.wait() if isinstance(result, Pending) else result

    def _capabilities(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.negotiated:
            raise QmpError("Capabilities negotiation is already complete, command ignored",
                           "CommandNotFound")
        check_args({"*enable": ["str"]}, args)
        for i, cap in enumerate(args.get("enable", [])):
            if cap != "oob":
                raise QmpError(f"Parameter 'enable[{i}]' does not accept value '{cap}'")
        self.negotiated = True
        return {}


# -- the listener ----------------------------------------------------------------------------

def parse_spec(spec: str) -> tuple[sockaddr.Address, bool]:
    """``unix:PATH,server[,nowait]`` or ``tcp:HOST:PORT,server[,nowait]`` (``server=on``,
    ``wait=off`` too) as (address, wait); an empty HOST is loopback. ValueError names
    the fault."""
    head, *opts = spec.split(",")
    kind, _, where = head.partition(":")
    flags = {"server": False, "wait": True}
    for opt in opts:
        name, eq, value = opt.partition("=")
        if not eq:
            name, value = (name[2:], "off") if name in ("nowait", "noserver") else (name, "on")
        if name not in flags or value not in ("on", "off"):
            raise ValueError(f"unknown option {opt!r}")
        flags[name] = value == "on"
    if kind not in ("unix", "tcp"):
        raise ValueError("QMP listens on unix:PATH,server or tcp:HOST:PORT,server")
    if not flags["server"]:
        raise ValueError("pyemu's QMP only listens: add ',server'")
    if kind == "unix":
        return sockaddr.check_unix_path(where), flags["wait"]
    host, port = sockaddr.parse_host_port(where)
    return (sockaddr.control_listen_host(host), port), flags["wait"]


class QmpServer:
    """A QMP listener: bound at once (so a busy port fails at start), serving clients
    once ``start()`` gives it the machine."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        address, self.wait = parse_spec(spec)
        self.listener = sockaddr.listen(address, BACKLOG)
        self.address = self.listener.address
        self.machine: Any = None
        self.sessions: list[Session] = []
        self._lock = threading.Lock()
        self._closing = False
        self._thread = threading.Thread(target=self._accept_loop, name=f"qmp-{spec}",
                                        daemon=True)

    def start(self, machine: Machine) -> None:
        self.machine = machine
        machine.listeners.append(self._machine_event)
        machine.migration.listeners.append(self._migration_event)
        if self.wait:
            print(f"pyemu: waiting for connection on {self.spec}", file=sys.stderr,
                  flush=True)
            self._serve(self.listener.accept()[0])
        self.listener.sock.settimeout(WAIT_SLICE)  # the accept loop looks at _closing
        self._thread.start()

    def on_machine(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on the machine thread; its result, or QmpError if pyemu is ending."""
        fut = self.machine.post(fn)
        while True:
            try:
                return fut.result(WAIT_SLICE)
            except FutureTimeout:
                if self._closing:
                    raise QmpError("pyemu is shutting down") from None

    def forget(self, session: Session) -> None:
        with self._lock:
            if session in self.sessions:
                self.sessions.remove(session)

    def close(self) -> None:
        """Stop listening; each client gets the reply to a running command and the
        events so far, then is hung up on."""
        if self._closing:
            return
        self._closing = True
        if self._thread.is_alive():
            self._thread.join(2 * WAIT_SLICE)
        self.listener.close()
        deadline = time.monotonic() + FLUSH_TIMEOUT
        with self._lock:
            sessions = list(self.sessions)
        for s in sessions:
            s.finish(deadline)

    # -- events ---------------------------------------------------------------------------
    def _machine_event(self, event: str, data: dict[str, Any]) -> None:
        self.broadcast(event, data)

    def _migration_event(self, event: str, data: dict[str, Any]) -> None:
        if self.machine.migration.capabilities.get("events"):  # as in QEMU
            self.broadcast(event, data)

    def broadcast(self, event: str, data: dict[str, Any]) -> None:
        now = time.time()
        seconds = int(now)
        msg = {"event": event, "data": data, "timestamp": {
            "seconds": seconds, "microseconds": int((now - seconds) * 1e6)}}
        with self._lock:
            sessions = list(self.sessions)
        for s in sessions:
            s.event(msg)

    # -- accepting ----------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closing:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._closing:
                    return
                time.sleep(WAIT_SLICE)  # out of descriptors, say: try again later
                continue
            self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(None)
        with self._lock:
            full = len(self.sessions) >= MAX_SESSIONS
            session = None if full else Session(self, conn)
            if session is not None:
                self.sessions.append(session)
        if session is None:
            log.warning("QMP %s: %d clients already, one more refused", self.spec,
                        MAX_SESSIONS)
            _refuse(conn, f"too many QMP clients ({MAX_SESSIONS}); try later")
            return
        session.start()


def _refuse(conn: socket.socket, why: str) -> None:
    """Hang up on a client with one error line saying ``why``, in place of the greeting,
    if its socket takes the line at once (the accept loop never waits for a client)."""
    try:
        conn.setblocking(False)
        conn.send(encode(QmpError(why).reply()))
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # it went away already: nobody to tell
    conn.close()


def open_servers(specs: list[str]) -> list[QmpServer]:
    """A bound listener for each -qmp SPEC; on a fault, the ones opened are closed and
    ValueError names the spec."""
    servers: list[QmpServer] = []
    try:
        for spec in specs:
            try:
                servers.append(QmpServer(spec))
            except (ValueError, OSError) as e:
                raise ValueError(f"-qmp {spec}: {e}") from None
    except BaseException:
        for s in servers:
            s.close()
        raise
    return servers
