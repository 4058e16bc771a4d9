"""The pyemu stream: one format for snapshots and migration (DESIGN.md, "The stream").

Layout, all integers little-endian:
  header   "PYEMUSTR" magic, u16 format version, str emulator version, u8 section encoding
  desc     u32 length + JSON: machine type, RAM size, every object's path, type and props
  RAM      records: ZERO_RUN (u64 first page, u32 pages) or DATA_RUN (u64 first page,
           u32 pages, u8 compressed, u32 length, bytes), then RAM_END; a live migration
           sends pages in several passes (the last record of a page wins), and with
           block migration also DISK_DATA (str drive id, u64 offset, u32 length, bytes)
           and DISK_ZERO (str drive id, u64 offset, u32 length)
  state    SECTION records: str path, str type, u16 version, u32 length, payload (the
           object's state through the binary visitor), u32 CRC-32 of the payload
  end      END tag and the CRC-32 of every byte before it

Reading is in two steps: ``parse_stream`` checks and decodes everything into a ``Snapshot``
without touching any machine; ``apply_snapshot`` then installs it. A stream is hostile
input: every length is capped, every page number bounds-checked, every CRC verified.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
from zlib_ng.zlib_ng import crc32

from emu import __version__
from emu.clock import HORIZON_NS
from emu.cpu.state import CPU_PATH
from emu.memory import hostram
from emu.memory.address_space import MAX_RAM
from emu.migration.compat import UPGRADES, CompatError, downgrade_section, upgrade_section
from emu.migration.compat.description import (
    DESCRIPTION_VERSION,
    implied_sections,
    upgrade_description,
)
from emu.migration.ram import copy_changed
from emu.qom import Object, fields_of, jsontext
from emu.qom.stateio import visit_fields
from emu.qom.visitor import BinaryReader, BinaryWriter, DecodeError, TreeReader, TreeWriter

MAGIC = b"PYEMUSTR"
FORMAT_VERSION = 1
ENCODING_BINARY = 0
PAGE = 4096
ZERO_RUN, DATA_RUN, RAM_END, SECTION, END = 0x01, 0x02, 0x03, 0x10, 0xFF
# Block migration: a drive's contents, CHUNK by CHUNK, among the RAM records.
DISK_DATA, DISK_ZERO = 0x04, 0x05
DISK_CHUNK = 64 << 10
MAX_DESC = 16 << 20
MAX_SECTION = 16 << 20
MAX_NAME = 1024
RUN_PAGES = 256  # data runs of at most 1 MiB, so compression works on bounded pieces


class StreamError(DecodeError):
    """A stream that cannot be loaded; the message names the section and field."""


@dataclass
class Snapshot:
    """A decoded stream, ready to apply: RAM and each object's state by path."""

    description: dict[str, Any]
    ram: np.ndarray
    states: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)


def describe_machine(machine: Object) -> dict[str, Any]:
    """The machine description: what must match (or be built) on the receiving side."""
    objects = []
    for obj in machine.walk():
        if obj is machine or type(obj).IMPLIED:
            continue
        props = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in obj.props().items()}
        objects.append({"path": obj.path, "type": obj.TYPE_NAME, "props": props})
    drives = {name: {"size": b.size, "readonly": b.readonly, "snapshot": b.snapshot,
                     "format": b.format}
              for name, b in getattr(machine, "drive_backends", dict)().items()}
    return {"version": DESCRIPTION_VERSION, "machine": machine.TYPE_NAME,
            "ram_size": int(machine.mem.ram.size),
            "cpu": machine.cpu.model.name, "objects": objects, "drives": drives}


def stateful(machine: Object) -> list[Object]:
    """The objects every stream has a section of, in the order they are installed (the
    CPU and the clock first: they are the machine's first children)."""
    return [o for o in machine.walk() if o is not machine and type(o).has_state()]


# -- writing ------------------------------------------------------------------------------

def _str(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("<H", len(raw)) + raw


def write_stream(machine: Object, out: BinaryIO, *, compress: bool = False) -> int:
    """Write the machine (stopped) as a stream; returns the number of bytes written."""
    desc = dict(describe_machine(machine), clock_ns=machine.clock.now_ns())
    return write_parts(out, desc, machine.mem.ram, capture_sections(machine),
                       compress=compress)


def capture_sections(machine: Object, versions: dict[str, int] | None = None,
                     ) -> list[tuple[str, str, int, bytes]]:
    """A section of every stateful object of a stopped machine (the CPU and the clock
    among them); with ``versions`` (a destination's), each at that version, older ones
    through the compat filters run backwards. CompatError names what cannot be sent."""
    sections = []
    for obj in stateful(machine):
        version = obj.STATE_VERSION
        if versions is not None:
            check_sendable(obj, versions)
            version = min(version, versions[obj.TYPE_NAME])
        if version == obj.STATE_VERSION:
            w = BinaryWriter()
            visit_fields(w, obj)
            payload = bytes(w.out)
        else:
            tree = TreeWriter()
            visit_fields(tree, obj)
            payload = downgrade_section(obj.path, obj.TYPE_NAME, obj.STATE_VERSION, version,
                                        tree.root)
        sections.append((obj.path, obj.TYPE_NAME, version, payload))
    return sections


def check_sendable(obj: Object, versions: dict[str, int]) -> None:
    """CompatError unless a destination of ``versions`` can take ``obj``'s state: it
    knows the type, and the filters lead back to its version (values aside)."""
    theirs = versions.get(obj.TYPE_NAME)
    if theirs is None:
        raise CompatError(f"{obj.path}: the destination has no {obj.TYPE_NAME}")
    for n in range(theirs, obj.STATE_VERSION):
        up = UPGRADES.get((obj.TYPE_NAME, n))
        if up is None or up.one_way:
            why = up.one_way if up is not None else "no compat filter"
            raise CompatError(f"{obj.path}: {obj.TYPE_NAME} v{obj.STATE_VERSION} cannot go "
                              f"back to the destination's v{n}: {why}")


def write_parts(out: BinaryIO, description: dict[str, Any], ram: np.ndarray,
                sections: list[tuple[str, str, int, bytes]], *, compress: bool = False) -> int:
    """Write a stream from its parts (a machine's, or a file's being upgraded or edited);
    returns the number of bytes written."""
    w = StreamWriter(out)
    w.head(description)
    w.pages(ram, None, compress)
    w.finish(sections)
    return w.total


class StreamWriter:
    """The stream written piece by piece to anything with ``write`` (a file, a
    migration channel): the head, RAM in as many passes as the sender likes (later
    records of a page replace earlier ones), then the sections and the end."""

    def __init__(self, out: Any) -> None:
        self.out, self.crc, self.total = out, 0, 0
        self._still: np.ndarray | None = None  # where a batch of pages is gathered

    def put(self, data: bytes | memoryview) -> None:
        self.out.write(data)
        self.crc = crc32(data, self.crc)
        self.total += len(data)

    def head(self, description: dict[str, Any]) -> None:
        self.put(MAGIC + struct.pack("<H", FORMAT_VERSION) + _str(__version__) +
                 bytes([ENCODING_BINARY]))
        desc = json.dumps(description).encode()
        self.put(struct.pack("<I", len(desc)) + desc)

    def pages(self, ram: np.ndarray, which: np.ndarray | None, compress: bool, *,
              moving: bool = False, fresh: bool = False) -> RunCounts:
        """Records for the pages ``which`` selects (a bool per page; None: all of them,
        those never touched marked zero without being read); returns what was sent.
        Selected pages are read once, window by window of RUN_PAGES pages: gathered
        into a buffer if ``moving`` (the guest may write ``ram`` meanwhile, so what is
        checksummed must be a copy) or not consecutive, else in place. Data pages go as
        DATA_RUNs, one per stretch within a window; zero pages as ZERO_RUNs as long as
        they run (so the same RAM always gives the same records), or not at all if
        ``fresh`` (the destination holds zeros wherever nothing was sent yet: a first
        pass)."""
        rows = ram.view(np.uint64).reshape(-1, PAGE // 8)
        chosen = np.flatnonzero(hostram.touched(ram) if which is None else which)
        out = _Records(self, compress, fresh, zero_gaps=which is None)
        windows = np.flatnonzero(np.diff(chosen // RUN_PAGES)) + 1
        for index in np.split(chosen, windows) if len(chosen) else ():
            self._window(rows, index, moving, out)
        out.end(len(rows))
        return out.counts

    def _window(self, rows: np.ndarray, index: np.ndarray, moving: bool,
                out: _Records) -> None:
        """Pages ``index`` (ascending, in one window) of ``rows``, read once."""
        n, first = len(index), int(index[0])
        if not moving and int(index[-1]) - first == n - 1:
            data = rows[first:first + n]
        else:
            if self._still is None:  # reused: one first touch of fresh memory per writer
                self._still = np.empty((RUN_PAGES, PAGE // 8), np.uint64)
            # "clip": the indices are in range, and "raise" would gather into a buffered
            # copy of ``out`` first
            data = np.take(rows, index, axis=0, out=self._still[:n], mode="clip")
        used = np.bitwise_or.reduce(data, axis=1) != 0
        cuts = np.flatnonzero((np.diff(index) != 1) | (used[1:] != used[:-1])) + 1
        bounds = [0, *cuts.tolist(), n]
        pages, kinds = index.tolist(), used.tolist()
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            if kinds[a]:
                out.data(pages[a], data[a:b])
            else:
                out.zero(pages[a], pages[a] + b - a)

    def disk(self, drive: str, offset: int, data: bytes) -> bool:
        """One chunk of a drive (block migration); returns whether it was all zero."""
        if not any(data):
            self.put(bytes([DISK_ZERO]) + _str(drive) + struct.pack("<QI", offset, len(data)))
            return True
        self.put(bytes([DISK_DATA]) + _str(drive) + struct.pack("<QI", offset, len(data)))
        self.put(data)
        return False

    def finish(self, sections: list[tuple[str, str, int, bytes]]) -> None:
        self.put(bytes([RAM_END]))
        for path, type_name, version, payload in sections:
            self.put(_section(path, type_name, version, payload))
        self.put(bytes([END]))
        self.out.write(struct.pack("<I", self.crc))
        self.total += 4


@dataclass
class RunCounts:
    """Pages sent as data and as zero markers (QEMU's "normal" and "duplicate")."""

    normal: int = 0
    zero: int = 0


class _Records:
    """What StreamWriter.pages sends, in page order: a DATA_RUN as each comes, zero
    pages joined into one run until something else comes. Pages between those read
    were not selected, or, with ``zero_gaps`` (a whole image), never touched: zero."""

    def __init__(self, writer: StreamWriter, compress: bool, fresh: bool,
                 zero_gaps: bool) -> None:
        self.writer, self.compress, self.fresh, self.zero_gaps = \
            writer, compress, fresh, zero_gaps
        self.counts = RunCounts()
        self.done = 0  # the pages before this one have their records (or are pending)
        self.zeros: int | None = None  # where the pending zero run starts; it ends at done

    def data(self, first: int, rows: np.ndarray) -> None:
        self._skip_to(first)
        if self.zeros is not None:
            self._flush()
        piece = memoryview(rows).cast("B")
        if self.compress:  # what is checksummed and sent is the compressor's output
            piece = memoryview(zlib.compress(piece, 1))
        self.writer.put(struct.pack("<BQIBI", DATA_RUN, first, len(rows), int(self.compress),
                                    len(piece)))
        self.writer.put(piece)
        self.counts.normal += len(rows)
        self.done = first + len(rows)

    def zero(self, first: int, end: int) -> None:
        self._skip_to(first)
        if self.zeros is None:
            self.zeros = first
        self.counts.zero += end - first
        self.done = end

    def end(self, pages: int) -> None:
        self._skip_to(pages)
        self._flush()

    def _skip_to(self, first: int) -> None:
        """Pages from ``done`` to ``first`` were not read: zero in a whole image, else
        not selected (a gap that ends the pending zero run)."""
        if first == self.done:
            return
        if self.zero_gaps:
            self.zero(self.done, first)
        else:
            self._flush()
            self.done = first

    def _flush(self) -> None:
        if self.zeros is not None and not self.fresh:
            self.writer.put(struct.pack("<BQI", ZERO_RUN, self.zeros, self.done - self.zeros))
        self.zeros = None


def _section(path: str, type_name: str, version: int, payload: bytes) -> bytes:
    return (bytes([SECTION]) + _str(path) + _str(type_name) +
            struct.pack("<HI", version, len(payload)) + payload +
            struct.pack("<I", crc32(payload)))


# -- reading ------------------------------------------------------------------------------

class _Input:
    """A whole stream in memory."""

    def __init__(self, data: bytes | memoryview) -> None:
        self.data, self.pos = memoryview(data), 0

    def view(self, n: int, what: str) -> memoryview:
        """The next ``n`` bytes without copying them (RAM runs are most of a stream)."""
        if n < 0 or self.pos + n > len(self.data):
            raise StreamError(f"{what}: truncated stream at byte {self.pos}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def at_end(self) -> bool:
        return self.pos == len(self.data)

    def take(self, n: int, what: str) -> bytes:
        return bytes(self.view(n, what))

    def read_into(self, dest: memoryview, what: str) -> None:
        """The next ``len(dest)`` bytes, into ``dest``."""
        dest[:] = self.view(len(dest), what)

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def string(self, what: str) -> str:
        (n,) = self.unpack("<H", what)
        if n > MAX_NAME:
            raise StreamError(f"{what}: name of {n} bytes")
        try:
            text = self.take(n, what).decode()
        except UnicodeDecodeError:
            raise StreamError(f"{what}: not UTF-8") from None
        if not text.isprintable():  # names go into one-line messages
            raise StreamError(f"{what}: {text!r} has unprintable characters")
        return text


class _ChannelInput(_Input):
    """A stream arriving through a migration channel (``read_exact``); the checksum of
    the whole grows as it comes, and is checked at the end."""

    def __init__(self, channel: Any, error: type[Exception]) -> None:
        super().__init__(b"")
        self.channel, self.error, self.crc = channel, error, 0

    def view(self, n: int, what: str) -> memoryview:
        try:
            chunk = self.channel.read_exact(n)
        except self.error as e:
            raise StreamError(f"{what}: {e}") from None
        self.crc = crc32(chunk, self.crc)
        self.pos += n
        return memoryview(chunk)

    def read_into(self, dest: memoryview, what: str) -> None:
        try:
            self.channel.read_into(dest)
        except self.error as e:
            raise StreamError(f"{what}: {e}") from None
        self.crc = crc32(dest, self.crc)
        self.pos += len(dest)

    def at_end(self) -> bool:
        return True


@dataclass
class RawStream:
    """A checked stream, before any section is decoded (what the offline tool reads)."""

    emulator: str
    description: dict[str, Any]
    ram: np.ndarray
    sections: list[tuple[str, str, int, bytes]]  # path, type, version, payload


def read_stream(data: bytes,
                check: Callable[[dict[str, Any]], None] | None = None) -> RawStream:
    """Check framing, lengths and checksums and decode the RAM; no machine needed.
    ``check`` sees the description before any RAM is allocated (and may refuse it)."""
    body = memoryview(data)[:-4]  # no copy: a stream is mostly RAM
    if len(data) < 4 or crc32(body) != struct.unpack("<I", data[-4:])[0]:
        raise StreamError("end: checksum of the stream does not match (corrupt or truncated)")
    inp = _Input(body)
    raw = _read(inp, check)
    if not inp.at_end():
        raise StreamError("end: data after the end marker")
    return raw


def receive_stream(channel: Any, error: type[Exception],
                   check: Callable[[dict[str, Any]], Target | None]) -> RawStream:
    """``read_stream`` of a stream arriving through ``channel`` (its failures are of type
    ``error``), checked as it comes and in full at the end. ``check`` may return the
    Target that RAM pages and disk chunks go to as they arrive: an incoming
    migration's machine, which never runs unless the whole stream checks out."""
    return receive_rest(receive_head(channel, error), check)


@dataclass
class Head:
    """The start of a stream arriving through a channel: its header and description,
    read before anything else is decided (a stray connection fails here)."""

    inp: _ChannelInput
    emulator: str
    description: dict[str, Any]


def receive_head(channel: Any, error: type[Exception]) -> Head:
    """The header and description from ``channel``; StreamError if they are not a
    pyemu stream's."""
    inp = _ChannelInput(channel, error)
    return Head(inp, *_read_head(inp))


def receive_rest(head: Head, check: Callable[[dict[str, Any]], Target | None]) -> RawStream:
    """The rest of the stream whose ``head`` was read (``receive_stream``)."""
    inp = head.inp
    raw = _read_body(inp, head.emulator, head.description, check(head.description))
    crc = inp.crc
    (want,) = inp.unpack("<I", "end/checksum")
    if crc != want:
        raise StreamError("end: checksum of the stream does not match (corrupt)")
    return raw


def _read(inp: _Input, check: Callable[[dict[str, Any]], Any] | None) -> RawStream:
    emulator, desc = _read_head(inp)
    return _read_body(inp, emulator, desc, check(desc) if check is not None else None)


def _read_head(inp: _Input) -> tuple[str, dict[str, Any]]:
    if inp.take(len(MAGIC), "header") != MAGIC:
        raise StreamError("header: not a pyemu stream (bad magic)")
    (version,) = inp.unpack("<H", "header/format-version")
    if version != FORMAT_VERSION:
        raise StreamError(f"header/format-version: {version}, this pyemu reads {FORMAT_VERSION}")
    emulator = inp.string("header/emulator-version")
    if inp.take(1, "header/encoding")[0] != ENCODING_BINARY:
        raise StreamError("header/encoding: unknown section encoding")
    return emulator, _read_description(inp)


def _read_body(inp: _Input, emulator: str, desc: dict[str, Any],
               target: Target | None) -> RawStream:
    ram = _parse_ram(inp, desc["ram_size"], target)
    sections, seen = [], set()
    while True:
        tag = inp.take(1, "sections")[0]
        if tag == END:
            break
        if tag != SECTION:
            raise StreamError(f"sections: unknown record tag {tag:#x} at byte {inp.pos - 1}")
        sections.append(_read_section(inp))
        if sections[-1][0] in seen:
            raise StreamError(f"{sections[-1][0]}: a second section for this path")
        seen.add(sections[-1][0])
    return RawStream(emulator, desc, ram, sections)


def parse_stream(data: bytes, machine: Object) -> Snapshot:
    """Check and decode a whole stream against ``machine`` without changing it."""
    return decode_stream(read_stream(data, matches(machine)), machine)


def matches(machine: Object) -> Callable[[dict[str, Any]], None]:
    """A description check: StreamError listing every difference from ``machine``."""
    ours = describe_machine(machine)

    def check(theirs: dict[str, Any]) -> None:
        problems = compare_descriptions(theirs, ours)
        if problems:
            raise StreamError("description: the machine does not match:\n" +
                              "\n".join(problems))

    return check


def decode_stream(raw: RawStream, machine: Object) -> Snapshot:
    """Every section of a checked stream decoded against ``machine`` (unchanged)."""
    snap = Snapshot(raw.description, raw.ram)
    types = {o.path: type(o) for o in stateful(machine)}
    for path, type_name, version, payload in raw.sections:
        values = decode_section(path, type_name, version, payload, types)
        snap.states[path] = (type_name, values)
    for path, implied in implied_sections(raw.description).items():
        snap.states.setdefault(path, implied)
    missing = sorted(set(types) - set(snap.states))
    if missing:
        raise StreamError(f"{missing[0]}: no state section in the stream")
    _check_time(snap, machine.clock.icount_shift)
    return snap


def _check_time(snap: Snapshot, icount_shift: int | None) -> None:
    """The instruction count icount mode derives time from, within the clock's horizon
    (emu/clock.py) at this machine's shift: the host times computed from it must fit
    the C helper's 64 bits (the clock's own time is checked as it is decoded)."""
    icount = snap.states[CPU_PATH][1]["icount"]
    if icount << (icount_shift or 0) > HORIZON_NS:
        raise StreamError(f"{CPU_PATH}/icount: {icount} instructions take the clock past "
                          "its horizon")


def _read_description(inp: _Input) -> dict[str, Any]:
    (n,) = inp.unpack("<I", "description")
    if n > MAX_DESC:
        raise StreamError(f"description: {n} bytes exceed the cap")
    desc = load_description(inp.take(n, "description"))
    clock_ns = desc.get("clock_ns")
    if isinstance(clock_ns, bool) or not isinstance(clock_ns, int) or \
            not 0 <= clock_ns <= HORIZON_NS:
        raise StreamError("description/clock_ns: missing or not a time")
    return desc


def load_description(text: bytes, where: str = "description") -> dict[str, Any]:
    """A machine description from its JSON text (a stream's, or a machine-export file's
    given to -readconfig), checked and upgraded to this pyemu's version; StreamError
    names what is wrong, starting with ``where``."""
    try:
        desc = jsontext.loads(text)
    except (ValueError, RecursionError) as e:
        raise StreamError(f"{where}: not JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(desc, dict):
        raise StreamError(f"{where}: not a mapping")
    try:
        upgrade_description(desc, where)
    except CompatError as e:
        raise StreamError(str(e)) from None
    size = desc.get("ram_size")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_RAM \
            or size % PAGE:
        raise StreamError(f"{where}/ram_size: {size!r} is not a RAM size")
    _check_objects(desc.get("objects"))
    return desc


def _check_objects(objects: Any) -> None:
    """The description's objects: a list of {path, type, props} with printable names."""
    if not isinstance(objects, list):
        raise StreamError("description/objects: not a list")
    for i, obj in enumerate(objects):
        where = f"description/objects[{i}]"
        if not isinstance(obj, dict) or not isinstance(obj.get("props"), dict):
            raise StreamError(f"{where}: not an object with props")
        for key in ("path", "type"):
            value = obj.get(key)
            if not isinstance(value, str) or not value.isprintable() or \
                    not 0 < len(value) <= MAX_NAME or \
                    (key == "path" and not value.startswith("/")):
                raise StreamError(f"{where}/{key}: not a printable name")


MAX_MODEL_NAME = 32  # a -cpu name; longer is a crafted stream, not a model


def compare_descriptions(theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """One line per difference, by object path."""
    lines = []
    for key in ("machine", "ram_size"):
        if theirs.get(key) != ours.get(key):
            lines.append(f"/machine: {key} is {theirs.get(key)!r} in the stream, "
                         f"{ours.get(key)!r} here")
    # the guest has seen its CPUID; a stream from before models were described has none
    cpu = theirs.get("cpu", ours.get("cpu"))
    if not isinstance(cpu, str) or len(cpu) > MAX_MODEL_NAME:
        lines.append("/machine/cpu: the stream's model is not a model name")
    elif cpu != ours.get("cpu"):
        lines.append(f"/machine/cpu: model {cpu!r} in the stream, {ours.get('cpu')!r} here")
    a = {o["path"]: o for o in theirs.get("objects", []) if isinstance(o, dict) and "path" in o}
    b = {o["path"]: o for o in ours["objects"]}
    for path in sorted(set(a) | set(b)):
        if path not in b:
            lines.append(f"{path}: present in the stream, absent here")
        elif path not in a:
            lines.append(f"{path}: absent in the stream, present here")
        elif a[path].get("type") != b[path]["type"]:
            lines.append(f"{path}: type {a[path].get('type')} in the stream, {b[path]['type']} "
                         f"here")
        elif a[path].get("props") != b[path]["props"]:
            lines.append(f"{path}: properties differ: {a[path].get('props')} in the stream, "
                         f"{b[path]['props']} here")
    return lines + _compare_drives(theirs.get("drives"), ours.get("drives", {}))


def _compare_drives(theirs: Any, ours: dict[str, dict[str, Any]]) -> list[str]:
    """The images behind the drives: the same size and mode on both sides (a stream
    from before drives were described, with none, is not compared)."""
    if theirs is None:
        return []
    if not isinstance(theirs, dict):
        return ["description/drives: not a mapping"]
    lines = []
    for name in sorted(set(theirs) | set(ours), key=str):
        a, b = theirs.get(name), ours.get(name)
        if b is None:
            lines.append(f"drive {name}: present in the stream, absent here")
        elif not isinstance(a, dict):
            lines.append(f"drive {name}: absent in the stream, present here")
        else:
            lines += [f"drive {name}: {key} is {a.get(key)!r} in the stream, {b[key]!r} here"
                      for key in ("size", "readonly", "snapshot", "format")
                      if a.get(key) != b[key]]
    return lines


@dataclass
class Target:
    """Where an incoming migration's RAM and disk contents go as they arrive."""

    ram: np.ndarray  # all zero at first
    # drive id -> where its chunks wait (a DiskStaging: nothing reaches the image
    # before the whole stream is proven)
    disks: dict[str, Any] = field(default_factory=dict)


def _parse_ram(inp: _Input, ram_size: int, target: Target | None) -> np.ndarray:
    """The RAM image (in the target's, if given), and disk chunks into its drives."""
    pages = ram_size // PAGE
    if target is not None:
        if target.ram.size != ram_size:
            raise StreamError(f"description/ram_size: {ram_size}, here {target.ram.size}")
        ram = target.ram
    else:
        try:
            ram = hostram.allocate(ram_size)
        except (MemoryError, OSError):
            raise StreamError(f"description/ram_size: cannot allocate {ram_size} bytes") \
                from None
    while True:
        tag = inp.take(1, "ram")[0]
        if tag == RAM_END:
            return ram
        if tag == ZERO_RUN:
            first, count = inp.unpack("<QI", "ram/zero-run")
            _check_run(first, count, pages)
            hostram.zero(ram[first * PAGE:(first + count) * PAGE])  # a page zeroed since sent
        elif tag in (DISK_DATA, DISK_ZERO):
            _disk_record(inp, tag, target.disks if target is not None else {})
        elif tag == DATA_RUN:
            first, count, packed, length = inp.unpack("<QIBI", "ram/data-run")
            _check_run(first, count, pages)
            if count > RUN_PAGES or length > count * PAGE + 1024:
                raise StreamError(f"ram/data-run@{first}: {count} pages in {length} bytes")
            pages_at = memoryview(ram[first * PAGE:(first + count) * PAGE])
            if not packed and length == count * PAGE:  # straight into the guest's RAM
                inp.read_into(pages_at, f"ram/data-run@{first}")
                continue
            chunk = inp.view(length, f"ram/data-run@{first}")
            if packed:
                chunk = _inflate(chunk, count * PAGE, f"ram/data-run@{first}")
            if len(chunk) != count * PAGE:
                raise StreamError(f"ram/data-run@{first}: {len(chunk)} bytes for {count} pages")
            pages_at[:] = chunk
        else:
            raise StreamError(f"ram: unknown record tag {tag:#x} at byte {inp.pos - 1}")


def _disk_record(inp: _Input, tag: int, disks: dict[str, Any]) -> None:
    drive = inp.string("disk/drive")
    offset, length = inp.unpack("<QI", f"disk/{drive}")
    where = f"disk/{drive}@{offset}"
    backend = disks.get(drive)
    if backend is None:
        raise StreamError(f"{where}: no writable drive of that id takes block migration here")
    if offset % DISK_CHUNK or not 0 < length <= DISK_CHUNK or offset + length > backend.size:
        raise StreamError(f"{where}: {length} bytes outside the image of {backend.size}")
    try:
        if tag == DISK_DATA:
            backend.write(offset, inp.take(length, where))
        else:
            backend.zero(offset, length)
    except (OSError, ValueError) as e:
        raise StreamError(f"{where}: {e}") from None


def _inflate(packed: memoryview, size: int, where: str) -> bytes:
    """Exactly ``size`` bytes from one whole zlib stream, and nothing after it."""
    d = zlib.decompressobj()
    try:
        out = d.decompress(packed, size)
    except zlib.error as e:
        raise StreamError(f"{where}: {e}") from None
    if d.unconsumed_tail or d.unused_data or not d.eof:
        raise StreamError(f"{where}: compressed data does not end with its {size} bytes")
    return out


def _check_run(first: int, count: int, pages: int) -> None:
    if count == 0 or first + count > pages:
        raise StreamError(f"ram: pages {first}+{count} outside the {pages} pages of RAM")


def _read_section(inp: _Input) -> tuple[str, str, int, bytes]:
    path = inp.string("section/path")
    if not path.startswith("/"):
        raise StreamError(f"section/path: {path!r} is not an object path")
    type_name = inp.string(f"{path}/type")
    version, length = inp.unpack("<HI", f"{path}/header")
    if length > MAX_SECTION:
        raise StreamError(f"{path}: section of {length} bytes exceeds the cap")
    payload = inp.take(length, path)
    (crc,) = inp.unpack("<I", f"{path}/checksum")
    if crc32(payload) != crc:
        raise StreamError(f"{path}: section checksum does not match")
    return path, type_name, version, payload


def decode_section(path: str, type_name: str, version: int, payload: bytes,
                   types: dict[str, type]) -> dict[str, Any]:
    """A section's values, decoded against the type of that path here; a section of an
    older STATE_VERSION goes through the compat filters first."""
    cls = types.get(path)
    if cls is None:
        raise StreamError(f"{path}: no such object here")
    _check_type(path, type_name, cls.TYPE_NAME)
    if version == cls.STATE_VERSION:
        reader = BinaryReader(payload)
        reader.begin_struct(path)
        values = cls.visit_values(reader)
        reader.finish()
        return values
    wires = [f.wire for f in fields_of(cls, "state")]
    tree = upgrade_section(path, type_name, version, cls.STATE_VERSION, payload, wires)
    reader = TreeReader({path: tree})
    reader.begin_struct(path)
    return cls.visit_values(reader)


def _check_type(path: str, type_name: str, want: str) -> None:
    if type_name != want:
        raise StreamError(f"{path}: type {type_name} in the stream, {want} here")


def _check_version(path: str, type_name: str, version: int, want: int) -> None:
    if version != want:
        raise StreamError(f"{path}: state version {version} of {type_name}, this pyemu has "
                          f"{want} (no compat filter)")


def apply_snapshot(machine: Object, snap: Snapshot) -> None:
    """Install a parsed snapshot: RAM and virtual time first, so that the objects'
    rebuild() re-arms their timers at the same guest instants, then every object."""
    if snap.ram is not machine.mem.ram:
        copy_changed(machine.mem.ram, snap.ram)
    # in tree order: the CPU first (icount mode's clock counts its instructions), then
    # the clock, then the devices, whose memory map changes (PAM, BARs) reach the CPU's
    # region cache at once, after the CPU's own state is in
    objects = stateful(machine)
    objects[0].install_state(snap.states[objects[0].path][1])
    with machine.cpu.map_batch():
        for obj in objects[1:]:
            obj.install_state(snap.states[obj.path][1])
