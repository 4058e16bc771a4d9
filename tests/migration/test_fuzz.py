"""Property-based fuzzing of every reader of hostile snapshot and migration input.

Streams: a real stream, written by a small PC running a test guest, is mutated by
hypothesis — bytes flipped, overwritten, inserted, duplicated, deleted, the stream cut
short; RAM records, state sections and the machine description rewritten field by field,
sections dropped, repeated, moved and spliced — with the trailing CRC of the whole left as
it was or recomputed, and the section CRCs recomputed where a payload changed, so that the
mutations get past the checksums into the deeper parsers (stream.py's docstring gives the
layout). Whatever comes in, ``parse_stream`` returns a Snapshot or raises a DecodeError
(StreamError is one) whose message is one line saying where the fault is; it never raises
anything else, never takes memory out of proportion to the stream and the machine, and
never changes the machine it checks against.

Visitors: for every registered type with state, arbitrary bytes go into BinaryReader and
arbitrary JSON-like trees into TreeReader and JsonReader through ``visit_fields``: only a
DecodeError naming the field may escape, whatever decodes fits the declaration, and valid
random values come back unchanged through every format.

Loading: every state value of a real stream -- each field of each section, the CPU's
and the clock's too, edited on the wire -- set to the edges of its width or anything in
it, and the machine configuration a bare destination builds from mutated field by field.
Loading either works, and the machine then lives on (its timers fire across a jump of
virtual time, it runs, it saves again), or it is refused with one line (StreamError or
ValueError); nothing else escapes, and an example that hangs fails by its time limit.

Runs are reproducible: every test is derandomized and keeps no example database.
"""

from __future__ import annotations

import io
import json
import re
import signal
import struct
import threading
import tracemalloc
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from test_snapshot import GUESTS, MS, state_tree
from test_visitors import DEVICE_TYPES, decode, encode

import emu.monitor.hmp  # noqa: F401  (registers the info commands)
from emu.clock import HORIZON_NS
from emu.cpu.state import CPU_PATH
from emu.host.block import DriveSpec, open_image
from emu.host.chardev import NullChardev
from emu.machine.config import MachineConfig, from_stream, to_stream
from emu.machine.pc.pc import PcMachine
from emu.migration.compat import UPGRADES
from emu.migration.stream import (
    DATA_RUN,
    END,
    MAGIC,
    MAX_RAM,
    MAX_SECTION,
    PAGE,
    RAM_END,
    SECTION,
    ZERO_RUN,
    Snapshot,
    StreamError,
    apply_snapshot,
    decode_stream,
    matches,
    parse_stream,
    read_stream,
    write_stream,
)
from emu.monitor.commands import execute
from emu.qom import TYPES, fields_of
from emu.qom.fields import FieldType
from emu.qom.stateio import visit_field
from emu.qom.visitor import BinaryReader, BinaryWriter, DecodeError, Visitor


def fuzz(examples: int) -> settings:
    """Reproducible runs (derandomized, no example database) of a bounded length."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.large_base_example])


# Values at the edges of every width the format uses, and the format's own caps.
CLOCK_PATH = "/machine/clock"  # the virtual clock, an object of every machine

EDGES = sorted({0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x3FF, 0x400, 0x401, 0x7FFF, 0x8000,
                0xFFFF, 0x10000, PAGE - 1, PAGE, PAGE + 1, MAX_SECTION, MAX_SECTION + 1,
                0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, MAX_RAM // PAGE, (1 << 63) - 1,
                1 << 63, (1 << 64) - 1})
PACKED_EDGES = sorted({v.to_bytes(w, "little") for v in EDGES for w in (1, 2, 4, 8)
                       if v < 1 << (8 * w)})
CHUNKS = st.one_of(st.binary(min_size=1, max_size=16), st.sampled_from(PACKED_EDGES))
BYTE_OPS = ("flip", "overwrite", "truncate", "insert", "duplicate", "delete")


# -- the subject: one small machine and the streams it writes ----------------------------

class Subject:
    """The machine parse_stream checks against, its streams, and its state to compare."""

    def __init__(self, machine: PcMachine, streams: dict[str, bytes]) -> None:
        self.machine, self.streams = machine, streams  # streams: "plain", "compressed"
        self.tree, self.ram = state_tree(machine), machine.mem.ram.tobytes()

    def __repr__(self) -> str:  # hypothesis prints it with every failing example
        return f"Subject({self.machine.TYPE_NAME}, {self.machine.mem.ram.size} bytes of RAM)"

    def assert_unchanged(self) -> None:
        assert state_tree(self.machine) == self.tree
        assert self.machine.mem.ram.tobytes() == self.ram


@pytest.fixture(scope="module")
def subject():
    m = PcMachine(MachineConfig(kernel=str(GUESTS / "pit.elf"), icount_shift=2,
                                ram_size=2 << 20, rtc_base="2020-01-01T00:00:00"), {})
    try:
        m.run_until(2 * MS)
        assert m.exit_status is None
        streams = {}
        for kind, compress in (("plain", False), ("compressed", True)):
            buf = io.BytesIO()
            write_stream(m, buf, compress=compress)
            streams[kind] = buf.getvalue()
        yield Subject(m, streams)
    finally:
        m.cpu.close()


# -- the stream's layout, as named raw parts ----------------------------------------------

def seal(body: bytes) -> bytes:
    """A body with the CRC-32 of the whole appended, as the writer ends a stream."""
    return body + struct.pack("<I", zlib.crc32(body))


def split(stream: bytes) -> list[tuple[str, bytes]]:
    """A well-formed stream cut into its records: header, description, each RAM record,
    RAM end, each state section, end tag (the trailing CRC left off)."""
    parts: list[tuple[str, bytes]] = []
    pos = 0

    def cut(name: str, size: int) -> None:
        nonlocal pos
        parts.append((name, stream[pos:pos + size]))
        pos += size

    (n,) = struct.unpack_from("<H", stream, len(MAGIC) + 2)
    cut("header", len(MAGIC) + 4 + n + 1)
    cut("description", 4 + struct.unpack_from("<I", stream, pos)[0])
    while stream[pos] != RAM_END:
        size = 13 if stream[pos] == ZERO_RUN else 18 + struct.unpack_from("<I", stream, pos + 14)[0]
        cut(f"ram@{struct.unpack_from('<Q', stream, pos + 1)[0]}", size)
    cut("ram-end", 1)
    while stream[pos] == SECTION:
        path, type_name, _, payload = unpack_section(stream[pos:])
        size = 1 + 4 + len(path.encode()) + len(type_name.encode()) + 6 + len(payload) + 4
        cut(f"section {path}", size)
    cut("end", 1)
    assert pos == len(stream) - 4 and stream[pos - 1] == END
    return parts


def join(parts: list[tuple[str, bytes]]) -> bytes:
    return b"".join(rec for _, rec in parts)


def section(path: str, type_name: str, version: int, payload: bytes,
            crc: int | None = None) -> bytes:
    def name(s: str) -> bytes:
        raw = s.encode()
        return struct.pack("<H", len(raw)) + raw

    crc = zlib.crc32(payload) if crc is None else crc
    return (bytes([SECTION]) + name(path) + name(type_name) +
            struct.pack("<HI", version, len(payload)) + payload + struct.pack("<I", crc))


def unpack_section(record: bytes) -> tuple[str, str, int, bytes]:
    pos, names = 1, []
    for _ in range(2):
        (n,) = struct.unpack_from("<H", record, pos)
        names.append(record[pos + 2:pos + 2 + n].decode())
        pos += 2 + n
    version, length = struct.unpack_from("<HI", record, pos)
    return names[0], names[1], version, record[pos + 6:pos + 6 + length]


# -- mutations ----------------------------------------------------------------------------

def mutate_bytes(data: st.DataObject, buf: bytes, max_ops: int = 3) -> bytes:
    """``buf`` after 1..max_ops byte-level edits drawn from ``data``."""
    for _ in range(data.draw(st.integers(1, max_ops))):
        op = data.draw(st.sampled_from(BYTE_OPS))
        i = data.draw(st.integers(0, len(buf)))
        if op == "flip" and i < len(buf):
            buf = buf[:i] + bytes([buf[i] ^ (1 << data.draw(st.integers(0, 7)))]) + buf[i + 1:]
        elif op == "overwrite":
            chunk = data.draw(CHUNKS)
            buf = buf[:i] + chunk + buf[i + len(chunk):]
        elif op == "truncate":
            buf = buf[:i]
        elif op == "insert":
            buf = buf[:i] + data.draw(CHUNKS) + buf[i:]
        else:  # a range [i, j) repeated at k, or deleted
            j = data.draw(st.integers(i, min(len(buf), i + 2 * PAGE)))
            if op == "delete":
                buf = buf[:i] + buf[j:]
            else:
                k = data.draw(st.integers(0, len(buf)))
                buf = buf[:k] + buf[i:j] + buf[k:]
    return buf


def edge_or_any(bits: int) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([v for v in EDGES if v < 1 << bits]),
                     st.integers(0, (1 << bits) - 1))


def names(subject: Subject) -> st.SearchStrategy[str]:
    """Section paths and type names: real ones, each other's, and any text at all."""
    real = [p for name, rec in split(subject.streams["plain"]) if name.startswith("section")
            for p in unpack_section(rec)[:2]]
    return st.one_of(st.sampled_from(real), st.text(max_size=24),
                     st.sampled_from(["", "/", "\n", CPU_PATH + "/", "é" * 600]))


def _nested(kids: st.SearchStrategy) -> st.SearchStrategy:
    """Lists and objects of ``kids`` (a named function: hypothesis misreads a lambda
    spread over lines as not using its argument)."""
    return st.one_of(st.lists(kids, max_size=4),
                     st.dictionaries(st.text(max_size=8), kids, max_size=4))


JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(EDGES),
              st.integers(-(1 << 80), -1), st.floats(), st.text(max_size=12)),
    _nested, max_leaves=16)


# -- the property ---------------------------------------------------------------------------

# "where: why" on one line; where is a section or field, e.g. "header/format-version",
# "ram/data-run@3", "/machine/pit/ch0/count" (stream paths are hostile text themselves).
WHERE = re.compile(r"[^\n]+?: [^\n]+")
MISMATCH = "description: the machine does not match:\n"  # then one line per object path

def _message_fault(msg: str) -> str | None:
    lines = msg[len(MISMATCH):].split("\n") if msg.startswith(MISMATCH) else [msg]
    bad = [line for line in lines if not WHERE.fullmatch(line)]
    return f"message does not say where: {msg!r}" if bad else None


def note(outcome: str) -> None:
    """Count an outcome for --hypothesis-show-statistics (outside a fuzz test, nothing)."""
    if currently_in_test_context():
        event(outcome)


def _where(msg: str) -> str:
    """Which part of the stream a refusal is about (--hypothesis-show-statistics)."""
    where = msg.split(": ")[0].split("@")[0]
    if where.split("/")[0] in ("header", "description", "ram", "sections", "section", "end"):
        return where.split("/")[0]
    return "the CPU section" if where.startswith(CPU_PATH) else "an object's section"


def memory_cap(subject: Subject, data: bytes) -> int:
    """What parsing may take: the RAM image, a few copies of the stream, a little more."""
    ram_size = subject.machine.mem.ram.size
    return 3 * ram_size + 16 * len(data) + (4 << 20)


def parse_or_refuse(subject: Subject, data: bytes) -> Snapshot | None:
    """parse_stream's verdict on ``data``, checking the property around it."""
    snap = None
    tracemalloc.start()
    try:
        try:
            snap = parse_stream(data, subject.machine)
            note("parsed")
        except DecodeError as e:
            note(f"refused at {_where(str(e))}")
            assert not _message_fault(str(e)), _message_fault(str(e))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= memory_cap(subject, data), f"parsing {len(data)} bytes took {peak} bytes"
    subject.assert_unchanged()
    return snap


def stream_of(data: st.DataObject, subject: Subject) -> tuple[str, list[tuple[str, bytes]]]:
    kind = data.draw(st.sampled_from(sorted(subject.streams)))
    return kind, split(subject.streams[kind])


def test_the_unmutated_streams_parse(subject):
    for stream in subject.streams.values():
        assert join(split(stream)) == stream[:-4]
        snap = parse_or_refuse(subject, stream)
        assert snap is not None and CPU_PATH in snap.states
        assert snap.ram.tobytes() == subject.ram


def is_section(part: tuple[str, bytes]) -> bool:
    return part[0].startswith("section ")


@fuzz(300)
@given(data=st.data())
@pytest.mark.parametrize("fix_crc", [False, True], ids=["stale-crc", "recomputed-crc"])
@pytest.mark.timeout(120)
def test_byte_mutations_are_refused_cleanly(subject, fix_crc, data):
    """Bytes edited anywhere in the stream, or inside one record; the trailing CRC kept
    (only a checksum error may come out) or recomputed (the parsers behind it see it)."""
    kind, parts = stream_of(data, subject)
    where = data.draw(st.sampled_from(["anywhere", *range(len(parts))]), label="where")
    if where == "anywhere":
        body = mutate_bytes(data, join(parts))
    else:
        parts[where] = (parts[where][0], mutate_bytes(data, parts[where][1]))
        body = join(parts)
    stream = seal(body) if fix_crc else body + subject.streams[kind][-4:]
    if not fix_crc and where == "anywhere" and data.draw(st.booleans(), label="edit crc too"):
        stream = mutate_bytes(data, stream, max_ops=1)
    snap = parse_or_refuse(subject, stream)
    if not fix_crc:
        assert snap is None or stream == subject.streams[kind]


SECTION_OPS = ("payload", "payload-stale-crc", "rename", "retype", "version", "old-version",
               "drop", "duplicate", "move", "splice")


def mutate_sections(data: st.DataObject, subject: Subject, records: list[bytes]) -> None:
    op = data.draw(st.sampled_from(SECTION_OPS))
    if not records:
        return
    i = data.draw(st.integers(0, len(records) - 1))
    path, type_name, version, payload = unpack_section(records[i])
    if op == "payload":
        records[i] = section(path, type_name, version, mutate_bytes(data, payload))
    elif op == "payload-stale-crc":
        records[i] = section(path, type_name, version, mutate_bytes(data, payload),
                             crc=zlib.crc32(payload))
    elif op == "rename":
        records[i] = section(data.draw(names(subject)), type_name, version, payload)
    elif op == "retype":
        records[i] = section(path, data.draw(names(subject)), version, payload)
    elif op == "version":
        records[i] = section(path, type_name, data.draw(edge_or_any(16)), payload)
    elif op == "old-version":  # through the compat filters, from a valid old payload or not
        version = data.draw(st.integers(0, max(version - 1, 0)))
        upgrade = UPGRADES.get((type_name, version))
        if upgrade is not None:
            w = BinaryWriter()
            for f in upgrade.fields():
                visit_field(w, f, data.draw(valid(f.type)))
            payload = bytes(w.out)
        if upgrade is None or data.draw(st.booleans(), label="edit old payload"):
            payload = mutate_bytes(data, payload)
        records[i] = section(path, type_name, version, payload)
    elif op == "drop":
        del records[i]
    elif op in ("duplicate", "move"):
        rec = records[i] if op == "duplicate" else records.pop(i)
        records.insert(data.draw(st.integers(0, len(records))), rec)
    else:  # one section's header over the head of another's payload and its tail
        donor = data.draw(st.sampled_from(
            [rec for name, rec in split(subject.streams["plain"]) if name.startswith("section ")]))
        _, d_type, d_version, d_payload = unpack_section(donor)
        cut_a = data.draw(st.integers(0, len(payload)))
        cut_b = data.draw(st.integers(0, len(d_payload)))
        whole = data.draw(st.booleans())
        records[i] = (section(path, d_type, d_version, d_payload) if whole else
                      section(path, type_name, version, payload[:cut_a] + d_payload[cut_b:]))


@fuzz(500)
@given(data=st.data())
@pytest.mark.timeout(120)
def test_section_mutations_are_refused_cleanly(subject, data):
    """State sections edited field by field with their CRCs (and the stream's) fixed up,
    so that the edits reach the section framing and the binary visitor behind it."""
    _, parts = stream_of(data, subject)
    first = next(i for i, part in enumerate(parts) if is_section(part))
    records = [rec for part in parts if is_section(part) for rec in [part[1]]]
    for _ in range(data.draw(st.integers(1, 3))):
        mutate_sections(data, subject, records)
    body = join(parts[:first]) + b"".join(records) + bytes([END])
    parse_or_refuse(subject, seal(body))


RAM_OPS = ("field", "payload", "recompress", "zero-run", "drop", "duplicate", "move")
ZERO_FMT, DATA_FMT = "<BQI", "<BQIBI"  # tag, first page, pages[, compressed, length]
WIDTHS = {ZERO_FMT: (8, 64, 32), DATA_FMT: (8, 64, 32, 8, 32)}
RamRecord = tuple[str, list[int], bytes]


def ram_record(rec: bytes) -> RamRecord:
    fmt = ZERO_FMT if rec[0] == ZERO_RUN else DATA_FMT
    return fmt, list(struct.unpack_from(fmt, rec)), rec[struct.calcsize(fmt):]


def mutate_ram(data: st.DataObject, records: list[RamRecord]) -> None:
    op = data.draw(st.sampled_from(RAM_OPS))
    i = data.draw(st.integers(0, len(records) - 1))
    fmt, head, payload = records[i]
    head = list(head)
    is_data = fmt == DATA_FMT
    if op == "field":  # the tag too: a zero run's fields read as a data run's, and back
        k = data.draw(st.integers(0, len(head) - 1))
        head[k] = data.draw(edge_or_any(WIDTHS[fmt][k]))
    elif op == "payload" and is_data:
        payload = mutate_bytes(data, payload)
        if data.draw(st.booleans(), label="fix length"):
            head[4] = min(len(payload), 0xFFFFFFFF)
    elif op == "recompress" and is_data and head[0] == DATA_RUN:
        try:
            pages = zlib.decompress(payload) if head[3] else payload
        except zlib.error:  # an earlier edit broke it
            pages = payload
        raw = data.draw(st.sampled_from(["same", "longer", "shorter", "other"]))
        raw = {"same": pages, "longer": pages + bytes(PAGE), "shorter": pages[:-1],
               "other": data.draw(st.binary(max_size=64))}[raw]
        payload = zlib.compress(mutate_bytes(data, raw) if data.draw(st.booleans()) else raw)
        head[3:] = [data.draw(st.integers(1, 255)), len(payload)]
    elif op == "zero-run":
        records.insert(i, (ZERO_FMT, [ZERO_RUN, data.draw(edge_or_any(64)),
                                      data.draw(edge_or_any(32))], b""))
        return
    elif op == "drop" and len(records) > 1:
        del records[i]
        return
    elif op in ("duplicate", "move"):
        if op == "move":
            del records[i]
        records.insert(data.draw(st.integers(0, len(records))), (fmt, head, payload))
        return
    records[i] = (fmt, head, payload)


@fuzz(400)
@given(data=st.data())
@pytest.mark.timeout(120)
def test_ram_mutations_are_refused_cleanly(subject, data):
    """RAM records edited field by field (page numbers, counts, lengths, compression),
    repeated, moved, dropped, recompressed; the stream's CRC fixed up."""
    _, parts = stream_of(data, subject)
    records = [ram_record(rec) for name, rec in parts if name.startswith("ram@")]
    for _ in range(data.draw(st.integers(1, 3))):
        mutate_ram(data, records)
    ram = b"".join(struct.pack(fmt, *head) + payload for fmt, head, payload in records)
    rest = [part for part in parts if not part[0].startswith("ram@")]
    parse_or_refuse(subject, seal(join(rest[:2]) + ram + join(rest[2:])))


DESC_KEYS = ("machine", "ram_size", "objects", "clock_ns")
RAM_SIZES = st.one_of(st.integers(1, MAX_RAM // PAGE).map(lambda p: p * PAGE),
                      st.sampled_from([2 << 20, 4 << 20, MAX_RAM, MAX_RAM + PAGE]))


def mutate_description(data: st.DataObject, subject: Subject, desc: dict) -> None:
    op = data.draw(st.sampled_from(["set", "delete", "object", "objects", "ram_size"]))
    key = data.draw(st.one_of(st.sampled_from(DESC_KEYS), st.text(max_size=8)))
    objects = desc.get("objects")
    if op == "ram_size":
        desc["ram_size"] = data.draw(RAM_SIZES)
    elif op == "set":
        desc[key] = data.draw(JSONISH)
    elif op == "delete":
        desc.pop(key, None)
    elif op == "object" and isinstance(objects, list) and objects:
        i = data.draw(st.integers(0, len(objects) - 1))
        field = data.draw(st.one_of(st.sampled_from(["path", "type", "props"]),
                                    st.text(max_size=8)))
        if not isinstance(objects[i], dict) or data.draw(st.booleans(), label="replace"):
            objects[i] = data.draw(JSONISH)
        else:
            objects[i][field] = data.draw(st.one_of(JSONISH, names(subject)))
    elif op == "objects" and isinstance(objects, list):
        objects.insert(data.draw(st.integers(0, len(objects))),
                       data.draw(st.one_of(JSONISH, st.sampled_from(objects or [None]))))


@fuzz(400)
@given(data=st.data())
@pytest.mark.timeout(120)
def test_description_mutations_are_refused_cleanly(subject, data):
    """The machine description as a JSON tree edited key by key, or replaced by any text
    at all, its length and the stream's CRC fixed up."""
    _, parts = stream_of(data, subject)
    text = parts[1][1][4:]
    how = data.draw(st.sampled_from(["tree", "tree", "tree", "bytes", "nested"]))
    if how == "tree":
        desc = json.loads(text)
        for _ in range(data.draw(st.integers(1, 3))):
            mutate_description(data, subject, desc)
        text = json.dumps(desc).encode()
    elif how == "bytes":
        text = mutate_bytes(data, text)
    else:  # nesting deeper than any recursion limit
        text = data.draw(st.sampled_from([b"[", b'{"a":', b'{"objects":['])) * data.draw(
            st.integers(1, 200_000))
    parts[1] = ("description", struct.pack("<I", len(text)) + text)
    parse_or_refuse(subject, seal(join(parts)))


# -- visitors ----------------------------------------------------------------------------

def int_bounds(bits: int, signed: bool) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def bounds(t: FieldType) -> tuple[int, int]:
    lo, hi = int_bounds(t.bits, t.signed)
    return lo, hi if t.limit is None else min(hi, t.limit)


def valid(t: FieldType) -> st.SearchStrategy:
    """Any value the declaration allows, edges first."""
    if t.name == "bool":
        return st.booleans()
    if t.bits:
        lo, hi = bounds(t)
        return st.one_of(st.sampled_from([lo, hi]), st.integers(lo, hi))
    if t.name == "bytes":
        return st.one_of(st.binary(min_size=t.max_len, max_size=t.max_len),
                         st.binary(max_size=t.max_len))
    if t.name == "str":
        return st.text(max_size=t.max_len)
    assert t.elem is not None
    return st.lists(valid(t.elem), min_size=t.max_len, max_size=t.max_len)


def near_miss(t: FieldType) -> st.SearchStrategy:
    """Values just outside the declaration."""
    if t.name == "bool":
        return st.sampled_from([0, 1, "true", None])
    if t.bits:
        lo, hi = bounds(t)
        return st.sampled_from([lo - 1, hi + 1, True, float(lo), str(hi), -(1 << 200)])
    if t.name in ("bytes", "str"):
        over = st.sampled_from([b"\xa5" * (t.max_len + 1), bytes(t.max_len + 2)])
        wrong = st.one_of(st.text(max_size=8), st.binary(max_size=8))
        return st.one_of(over, over.map(bytes.hex), over.map(bytearray),
                         over.map(lambda b: b.decode("latin-1")), wrong)
    assert t.elem is not None
    return st.one_of(st.lists(valid(t.elem), max_size=t.max_len + 1),
                     st.lists(near_miss(t.elem), min_size=1, max_size=t.max_len))


def state_values(type_name: str) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({f.attr: valid(f.type)
                                  for f in fields_of(TYPES[type_name], "state")})


def with_state(type_name: str, values: dict):
    obj = TYPES[type_name]("obj", None)
    for f in fields_of(type(obj), "state"):
        f.assign(obj, values[f.attr])
    return obj


def hostile_tree(type_name: str, hexed: bool) -> st.SearchStrategy:
    """A tree for ``TreeReader`` (bytes as bytes) or, ``hexed``, for JSON (as hex)."""
    def as_hex(v):
        return v.hex() if hexed and isinstance(v, (bytes, bytearray)) else v

    fields = {f.wire: st.one_of(valid(f.type), near_miss(f.type), JSONISH).map(as_hex)
              for f in fields_of(TYPES[type_name], "state")}
    body = st.fixed_dictionaries({}, optional=fields).flatmap(
        lambda d: st.dictionaries(st.text(max_size=6), JSONISH, max_size=2).map(
            lambda extra: {**extra, **d}))
    return st.one_of(body.map(lambda d: {"obj": d}),
                     st.fixed_dictionaries({"obj": JSONISH}), JSONISH)


# "obj/<field>: why" (or "/: why" for the root); trailing bytes concern the whole input.
FIELD_WHERE = re.compile(r"(/|obj(/[^\n:]+)?): [^\n]+|\d+ bytes of trailing data")


def decode_or_refuse(type_name: str, encoded, fmt: str) -> dict | None:
    try:
        values = decode(type_name, encoded, fmt)
    except DecodeError as e:
        assert FIELD_WHERE.fullmatch(str(e)), f"message does not name the field: {e}"
        return None
    for f in fields_of(TYPES[type_name], "state"):  # whatever decoded fits the declaration
        assert f.type.check(values[f.attr]) == values[f.attr]
    return values


@fuzz(40)
@given(data=st.data())
@pytest.mark.parametrize("type_name", DEVICE_TYPES)
def test_binary_reader_takes_any_bytes(type_name, data):
    _, good = encode(with_state(type_name, data.draw(state_values(type_name))), "binary")
    blob = data.draw(st.one_of(st.binary(max_size=2 * len(good) + 8),
                               st.just(good).map(lambda g: mutate_bytes(data, g))))
    decode_or_refuse(type_name, blob, "binary")


@fuzz(40)
@given(data=st.data())
@pytest.mark.parametrize("type_name", DEVICE_TYPES)
def test_tree_reader_takes_any_tree(type_name, data):
    tree = data.draw(hostile_tree(type_name, hexed=False))
    values = decode_or_refuse(type_name, tree, "tree")
    if values is not None:
        for f in fields_of(TYPES[type_name], "state"):
            assert values[f.attr] == tree["obj"][f.wire]


@fuzz(40)
@given(data=st.data())
@pytest.mark.parametrize("type_name", DEVICE_TYPES)
def test_json_reader_takes_any_text(type_name, data):
    text = json.dumps(data.draw(hostile_tree(type_name, hexed=True)))
    how = data.draw(st.sampled_from(["as is", "edited", "nested"]))
    if how == "edited":
        text = mutate_bytes(data, text.encode())
    elif how == "nested":
        text = "[" * data.draw(st.integers(1, 200_000)) + text
    decode_or_refuse(type_name, text, "json")


@fuzz(40)
@given(data=st.data())
@pytest.mark.parametrize("type_name", DEVICE_TYPES)
def test_valid_values_round_trip_through_every_format(type_name, data):
    values = data.draw(state_values(type_name))
    obj = with_state(type_name, values)
    for fmt in ("tree", "binary", "json"):
        written, encoded = encode(obj, fmt)
        assert written == values
        assert decode(type_name, encoded, fmt) == values, fmt


# -- loading: hostile state values and configurations --------------------------------------

EXAMPLE_SECONDS = 10  # a load, a run of the guest and a save take well under a second


def fuzz_loading(examples: int) -> settings:
    """``fuzz``, with a failing example reported as found: shrinking one that hangs would
    cost EXAMPLE_SECONDS a step (and pytest-timeout's failure counts as just another
    failing example to shrink)."""
    return settings(fuzz(examples), phases=(Phase.explicit, Phase.reuse, Phase.generate))
S = 1_000_000_000
HOUR_NS, YEAR_NS = 3_600 * S, 365 * 86_400 * S


class ExampleHung(Exception):
    """An example ran past its time limit: a hang fails the test, it never stalls it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """ExampleHung in this (the main) thread if the block runs longer than ``seconds``.
    SIGUSR1 from a timer thread: pytest-timeout keeps SIGALRM for the whole test."""
    running = True

    def interrupt(signum: int, frame: object) -> None:
        if running:
            raise ExampleHung(f"an example ran longer than {seconds} s")

    old = signal.signal(signal.SIGUSR1, interrupt)
    timer = threading.Timer(seconds, signal.pthread_kill,
                            (threading.main_thread().ident, signal.SIGUSR1))
    timer.start()
    try:
        yield
    finally:
        running = False
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGUSR1, old)


class Rewriter(Visitor):
    """A section payload read and written again value by value, ``edits`` (leaf path ->
    value) replacing some on the way: state edited on the wire, the CPU's too, with no
    engine to normalise it. The walk sees the values as they were (so that it takes the
    same course); ``leaves`` lists what it met as (path, kind, width)."""

    saving = False

    def __init__(self, payload: bytes, edits: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.src, self.dst = BinaryReader(payload), BinaryWriter()
        self.edits = edits or {}
        self.leaves: list[tuple[str, str, Any]] = []

    def present(self, name, present):
        return self.dst.present(name, self.src.present(name, present))

    def _copy(self, kind: str, name: str, width: Any, *args: Any) -> Any:
        value = getattr(self.src, kind)(name, None, *args)
        path = "/".join([*self._path, name])
        self.leaves.append((path, kind, width))
        getattr(self.dst, kind)(name, self.edits.get(path, value), *args)
        return value

    def uint(self, name, value, bits):
        return self._copy("uint", name, bits, bits)

    def sint(self, name, value, bits):
        return self._copy("sint", name, bits, bits)

    def boolean(self, name, value):
        return self._copy("boolean", name, None)

    def blob(self, name, value, max_len):
        return self._copy("blob", name, max_len, max_len)

    def text(self, name, value, max_len):
        return self._copy("text", name, max_len, max_len)

    def uints(self, name, values, bits, signed, max_len):
        return self._copy("uints", name, (bits, signed, max_len), bits, signed, max_len)


Leaf = tuple[int, str, str, Any]  # index of the section's part, path, kind, width


def rewrite(record: bytes, machine: PcMachine,
            edits: dict[str, Any] | None = None) -> tuple[bytes, list[tuple[str, str, Any]]]:
    """A section record with ``edits`` made to its values (its CRC recomputed), and the
    leaves of its payload."""
    path, type_name, version, payload = unpack_section(record)
    v = Rewriter(payload, edits)
    v.begin_struct(path)
    TYPES[type_name].visit_values(v)
    return section(path, type_name, version, bytes(v.dst.out)), v.leaves


def leaves_of(subject: Subject) -> list[Leaf]:
    """Every state value of the subject's plain stream."""
    parts = split(subject.streams["plain"])
    return [(i, path, kind, width) for i, part in enumerate(parts) if is_section(part)
            for path, kind, width in rewrite(part[1], subject.machine)[1]]


def int_edges(bits: int, signed: bool) -> list[int]:
    """0, 1, -1, the ends of the width and virtual times an hour, years and the clock's
    horizon away, where they fit."""
    lo, hi = int_bounds(bits, signed)
    wanted = {0, 1, -1, lo, hi, hi - 1, lo + 1, HOUR_NS, 10 * YEAR_NS, HORIZON_NS,
              HORIZON_NS + 1}
    return sorted(v for v in wanted if lo <= v <= hi)


def edge_values(kind: str, width: Any) -> list[Any]:
    """The values every leaf of this kind is tried with, one by one: 0 (or empty), the
    largest and the smallest of its width (or full)."""
    if kind == "boolean":
        return [False, True]
    if kind in ("uint", "sint"):
        return sorted({0, *int_bounds(width, kind == "sint")})
    if kind in ("blob", "text"):
        return [b"" if kind == "blob" else "", (b"\xff" if kind == "blob" else "\uffff") * width]
    bits, signed, max_len = width
    return [[], [int_bounds(bits, signed)[1]] * max_len]


def leaf_values(kind: str, width: Any) -> st.SearchStrategy:
    """Any value of a leaf's kind and width, edges first (short random buffers: the
    edges have the long ones)."""
    if kind == "boolean":
        return st.booleans()
    if kind in ("uint", "sint"):
        lo, hi = int_bounds(width, kind == "sint")
        return st.one_of(st.sampled_from(int_edges(width, kind == "sint")), st.integers(lo, hi))
    edges = st.sampled_from(edge_values(kind, width))
    if kind == "blob":
        return st.one_of(edges, st.binary(max_size=min(width, 64)))
    if kind == "text":
        return st.one_of(edges, st.text(max_size=min(width, 16)))
    bits, signed, max_len = width
    lo, hi = int_bounds(bits, signed)
    return st.one_of(edges, st.lists(st.integers(lo, hi), max_size=min(max_len, 16)))


def with_edits(subject: Subject, edits: dict[int, dict[str, Any]]) -> bytes:
    """The subject's plain stream with ``edits`` (part index -> leaf path -> value)."""
    parts = split(subject.streams["plain"])
    for i, changes in edits.items():
        parts[i] = (parts[i][0], rewrite(parts[i][1], subject.machine, changes)[0])
    return seal(join(parts))


@contextmanager
def full_machine(images: Path) -> Iterator[PcMachine]:
    """The pit guest's PC with a read-only disk, a CD-ROM and two serial ports: every
    kind of device there is, for their state to be fuzzed."""
    drives = [DriveSpec(file=str(images / "disk.img"), index=0, readonly=True),
              DriveSpec(file=str(images / "cd.iso"), index=2, media="cdrom", readonly=True)]
    blocks = {d.index: open_image(d.file, readonly=True) for d in drives}
    m = PcMachine(MachineConfig(kernel=str(GUESTS / "pit.elf"), icount_shift=2,
                                ram_size=2 << 20, rtc_base="2020-01-01T00:00:00",
                                drives=drives, serial=["null", "null"]),
                  {f"serial{i}": NullChardev("null") for i in range(2)}, blocks)
    try:
        yield m
    finally:
        m.cpu.close()
        for backend in blocks.values():
            backend.close()


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """(the subject: a full machine 2 ms into the pit guest, and its stream; the
    directory of its images, for the machines its streams load into)."""
    images = tmp_path_factory.mktemp("images")
    (images / "disk.img").write_bytes(bytes(1 << 20))
    (images / "cd.iso").write_bytes(bytes(32 * 2048))
    with full_machine(images) as m:
        m.run_until(2 * MS)
        buf = io.BytesIO()
        write_stream(m, buf)
        yield Subject(m, {"plain": buf.getvalue()}), images


def assert_one_line(e: Exception) -> None:
    """One line saying where, or the mismatch's one line per object path."""
    assert not _message_fault(str(e)), f"{type(e).__name__}: {e!r}"


# the monitor's views of every device and of the CPU, as a user would look after a load
MONITOR_VIEWS = ("info qtree", "info pic", "info irq", "info pci", "info block",
                 "info registers", "info mtree", "info chardev")


def live_on(m: PcMachine, run_guest: bool) -> None:
    """What a loaded machine goes through: its due timers fire, virtual time jumps an
    hour (as for a guest idle that long) and they fire again, the guest runs a
    millisecond, every port a device decodes is read once (a guest's IN), the monitor
    shows every device, the machine saves again."""
    m.clock.run_expired()
    m.clock.warp_to(m.clock.now_ns() + HOUR_NS)
    m.clock.run_expired()
    if run_guest:
        m.run_until(m.clock.now_ns() + MS)
    for rng in {id(r): r for r in m.io._slots if r is not None}.values():
        for port in range(rng.base, rng.base + rng.count):
            m.io.read(port, 1)
    for line in MONITOR_VIEWS:
        execute(m, line)
    m.save_snapshot(io.BytesIO())


def load_or_refuse(m: PcMachine, stream: bytes, run_guest: bool) -> str:
    """``m`` loads ``stream`` and lives on, or refuses it with one line; returns which."""
    with time_limit(EXAMPLE_SECONDS):
        try:
            m.load_snapshot(stream)
        except (StreamError, ValueError) as e:
            assert_one_line(e)
            return f"refused at {_where(str(e))}"
        live_on(m, run_guest)
    return "loaded"


@pytest.fixture(scope="module")
def state_leaves(full):
    return leaves_of(full[0])


@pytest.mark.timeout(120)
def test_every_state_value_at_the_edges_of_its_width_loads_or_is_refused(full,
                                                                         state_leaves):
    """Each value of each section alone at 0, the largest and the smallest of its width
    (the CPU's too: its instruction count, segment caches, MSRs...)."""
    subject, images = full
    outcomes: dict[str, int] = {}
    with full_machine(images) as m:
        for i, path, kind, width in state_leaves:
            for value in edge_values(kind, width):
                try:
                    outcome = load_or_refuse(m, with_edits(subject, {i: {path: value}}),
                                             run_guest=False)
                except Exception as e:
                    raise AssertionError(f"{path}={value!r}: {type(e).__name__}: {e}") from e
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(f"{len(state_leaves)} state values at their edges:", outcomes)
    assert outcomes.get("loaded", 0) > len(state_leaves)  # most edges are states to run


@fuzz_loading(120)
@given(data=st.data())
@pytest.mark.timeout(180)
def test_state_values_together_load_or_are_refused(full, state_leaves, data):
    """A few values of any sections at once, anywhere in their widths, edges first; the
    guest runs on after the load unless its CPU was edited."""
    subject, images = full
    picked = data.draw(st.lists(st.sampled_from(state_leaves), min_size=1, max_size=4,
                                unique_by=lambda leaf: leaf[1]))
    edits: dict[int, dict[str, Any]] = {}
    for i, path, kind, width in picked:
        edits.setdefault(i, {})[path] = data.draw(leaf_values(kind, width), label=path)
    with full_machine(images) as m:
        note(load_or_refuse(m, with_edits(subject, edits), run_guest=not any(
            leaf[1].startswith(CPU_PATH + "/") for leaf in picked)))


def config_text() -> st.SearchStrategy[str]:
    """Strings for configuration fields: the real kinds, the empty one, long ones,
    ones JSON allows and a host call does not."""
    return st.one_of(st.sampled_from(["", "pc", "q35", "cad", "dc", "cdnc", "x", "utc",
                                      "localtime", "2006-06-17", "2006-02-30", "\ud800",
                                      "\0", "é" * 2049, "x" * 5000, "/", "."]),
                     st.text(max_size=12))


CONFIG_VALUES = st.one_of(
    config_text(),
    st.sampled_from([0, -1, 1, 10, 11, 2 << 20, (2 << 20) + 1, 1 << 30, MAX_RAM,
                     MAX_RAM + PAGE, 1 << 64, True, None, [], {}]),
    st.integers(-(1 << 70), 1 << 70),
    JSONISH)
DRIVE = st.fixed_dictionaries({
    "id": config_text(), "file": st.sampled_from(["", "/nonexistent.img"]),
    "index": st.sampled_from([0, 1, 3, 4, -1, True]),
    "media": st.sampled_from(["disk", "cdrom", "floppy", ""]),
    "readonly": st.booleans(), "snapshot": st.booleans()})
# Per field, the values at the edges of what its option takes.
CONFIG_EDGES: dict[str, list[Any]] = {
    "machine": ["", "q35", "pc-i440fx"],
    "ram_size": [0, 1 << 20, (2 << 20) + 1, MAX_RAM, MAX_RAM + PAGE, 1 << 64, -PAGE],
    "boot_order": ["", "x", "cdnc", "n", "\ud800"],
    "rtc_base": ["", "2006-02-30", "localtime", "9999-12-31T23:59:59", "0000-01-01"],
    "icount_shift": [None, -1, 0, 10, 11, 1 << 64],
    "append": ["x" * 5000, "\u00e9" * 2049, "\ud800", "\0"],
    "kernel": [None, "", "/", "\ud800"],
    "no_reboot": [0, 1, None],
}


def mutate_config(data: st.DataObject, config: dict[str, Any]) -> None:
    """A field of the configuration set to another value or type, deleted, or a list
    (serial ports, drives) emptied, grown or filled with junk."""
    key = data.draw(st.one_of(st.sampled_from(sorted(config)), st.text(max_size=6)))
    op = data.draw(st.sampled_from(["set", "set", "delete", "list"]))
    if op == "set":
        config[key] = data.draw(st.one_of(st.sampled_from(CONFIG_EDGES.get(key, [None])),
                                          CONFIG_VALUES))
    elif op == "delete":
        config.pop(key, None)
    else:
        config[data.draw(st.sampled_from(["serial", "drives"]))] = data.draw(st.lists(
            st.one_of(DRIVE, config_text(), JSONISH), max_size=5))


def bare_destination(subject: Subject) -> tuple[list[PcMachine], Any]:
    """A destination started with nothing but -incoming, as it takes a stream's
    description: the configuration checked, the machine built from it (ValueError and
    OSError are what its launcher reports as one line), then compared with the
    description. Drives are left out: opening images is the destination's grant."""
    built: list[PcMachine] = []

    def on_description(desc: dict[str, Any]) -> None:
        cfg = from_stream(desc.get("config"), MachineConfig(incoming="tcp:127.0.0.1:4444"))
        if cfg.drives:
            raise ValueError("drives: not opened by this test")
        built.append(PcMachine(cfg, {}))
        matches(built[-1])(desc)

    return built, on_description


@fuzz_loading(150)
@given(data=st.data())
@pytest.mark.timeout(180)
def test_configuration_mutations_build_the_machine_or_are_refused(subject, data):
    """The description of a stream a source sends (with its configuration), mutated and
    taken by a bare destination: built, loaded and run, or refused with one line."""
    parts = split(subject.streams["plain"])
    desc = json.loads(parts[1][1][4:])
    desc["config"] = to_stream(subject.machine.cfg)
    for _ in range(data.draw(st.integers(1, 3))):
        if data.draw(st.booleans(), label="the description's own fields too"):
            mutate_description(data, subject, desc)
        else:
            mutate_config(data, desc["config"])
    text = json.dumps(desc).encode()
    parts[1] = ("description", struct.pack("<I", len(text)) + text)
    built, on_description = bare_destination(subject)
    try:
        with time_limit(EXAMPLE_SECONDS):
            try:
                raw = read_stream(seal(join(parts)), on_description)
                apply_snapshot(built[0], decode_stream(raw, built[0]))
            except (StreamError, ValueError, OSError) as e:
                assert_one_line(e)
                note(f"refused: {str(e).split(':')[0]}")
                return
            built[0].after_load()
            live_on(built[0], run_guest=True)
            note("built and loaded")
    finally:
        for m in built:
            m.cpu.close()


# -- bugs this fuzzing found (fixed): their minimal examples --------------------------------

def with_description_text(subject: Subject, text: bytes) -> bytes:
    parts = split(subject.streams["plain"])
    parts[1] = ("description", struct.pack("<I", len(text)) + text)
    return seal(join(parts))


def with_description(subject: Subject, **changes) -> bytes:
    desc = json.loads(split(subject.streams["plain"])[1][1][4:])
    return with_description_text(subject, json.dumps(dict(desc, **changes)).encode())


def with_section(subject: Subject, path: str, new_path: str, extra: bytes = b"") -> bytes:
    """The stream with ``path``'s section renamed and ``extra`` bytes after its payload
    (both CRCs recomputed)."""
    parts = split(subject.streams["plain"])
    i = parts.index(next(part for part in parts if part[0] == f"section {path}"))
    _, type_name, version, payload = unpack_section(parts[i][1])
    parts[i] = ("edited", section(new_path, type_name, version, payload + extra))
    return seal(join(parts))


def refusal(subject: Subject, stream: bytes) -> str:
    """The message parse_stream refuses ``stream`` with (nothing else may escape)."""
    with pytest.raises(DecodeError) as refused:
        parse_stream(stream, subject.machine)
    subject.assert_unchanged()
    return str(refused.value)


@pytest.mark.parametrize("objects", [None, [{"path": None}], [{"path": ["x"]}]],
                         ids=["null", "null-path", "list-path"])
def test_a_description_with_odd_objects_is_refused(subject, objects):
    assert refusal(subject, with_description(subject, objects=objects)).startswith(
        "description")


def test_a_deeply_nested_description_is_refused(subject):
    assert refusal(subject, with_description_text(subject, b"[" * 100_000)).startswith(
        "description: not JSON")


@pytest.mark.parametrize("ram_size", [1 << 30, MAX_RAM], ids=["1GiB", "64GiB"])
def test_a_larger_ram_size_is_refused_before_allocating_it(subject, ram_size):
    stream = with_description(subject, ram_size=ram_size)
    tracemalloc.start()
    try:
        assert "ram_size" in refusal(subject, stream)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"{peak} bytes to refuse a stream of {len(stream)}"


def test_trailing_bytes_in_a_section_name_the_section(subject):
    msg = refusal(subject, with_section(subject, "/machine/port92", "/machine/port92", b"\0"))
    assert msg.startswith("/machine/port92"), msg


@pytest.mark.parametrize("path", ["", "/machine/port92\n/machine/rtc"], ids=["empty", "newline"])
def test_a_hostile_section_path_still_gives_one_line_saying_where(subject, path):
    msg = refusal(subject, with_section(subject, "/machine/port92", path))
    assert not _message_fault(msg) and "\n" not in msg, msg


def edited(subject: Subject, path: str, value: Any) -> bytes:
    """The subject's stream with the state value at ``path`` set to ``value``."""
    part = {path: i for i, path, _, _ in leaves_of(subject)}[path]
    return with_edits(subject, {part: {path: value}})


@pytest.mark.timeout(60)
@pytest.mark.parametrize("ahead_ns", [HOUR_NS, 10 * YEAR_NS, HORIZON_NS - HOUR_NS],
                         ids=["an-hour", "ten-years", "near-the-horizon"])
def test_a_clock_set_far_ahead_loads_and_runs_at_once(subject, ahead_ns):
    """Issue 15, finding 5: ``pyemu-state set FILE /machine/clock/ns=3600000000000``, then
    loadvm (or -incoming file:FILE), froze the machine thread in the PIT's IRQ0 timer,
    which caught up period by period."""
    m = PcMachine(subject.machine.cfg, {})
    try:
        with time_limit(EXAMPLE_SECONDS):
            m.load_snapshot(edited(subject, f"{CLOCK_PATH}/ns", ahead_ns))
            assert m.clock.now_ns() == ahead_ns
            m.run_until(ahead_ns + 5 * MS)
        pit = m.pit.channels[0]
        assert 0 < pit.deadline - m.clock.now_ns() <= MS  # IRQ0 ticks on at 1 kHz
        m.save_snapshot(io.BytesIO())
    finally:
        m.cpu.close()


@pytest.mark.parametrize("path, value", [
    (f"{CLOCK_PATH}/ns", HORIZON_NS + 1), (f"{CLOCK_PATH}/ns", (1 << 64) - 1),
    (f"{CPU_PATH}/icount", (1 << 64) - 1), (f"{CPU_PATH}/icount", (HORIZON_NS >> 2) + 1)],
    ids=["clock-past-the-horizon", "clock-u64-max", "icount-u64-max", "icount-past-it"])
def test_a_time_past_the_clocks_horizon_is_refused(subject, path, value):
    """Virtual time the CPU's int64 host deadlines cannot hold (the subject runs at
    icount shift 2: its instruction count times 4 is virtual time)."""
    msg = refusal(subject, edited(subject, path, value))
    assert msg.startswith(f"{path}: {value}") and "horizon" in msg, msg
