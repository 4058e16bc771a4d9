"""Every registered type's state through every format and back, from its declaration;
hostile encodings are rejected with a DecodeError naming the field, never a crash."""

from __future__ import annotations

import random

import pytest

import emu.machine.pc.pc  # noqa: F401  (registers every device type of the pc board)
from emu.qom import TYPES, Object, fields_of
from emu.qom.fields import FieldType, state
from emu.qom.stateio import visit_fields, visit_state
from emu.qom.visitor import (
    BinaryReader,
    BinaryWriter,
    DecodeError,
    JsonReader,
    JsonWriter,
    TreeReader,
    TreeWriter,
)

DEVICE_TYPES = sorted(name for name, cls in TYPES.items() if fields_of(cls, "state"))


def random_value(t: FieldType, rng: random.Random):
    if t.name == "bool":
        return rng.random() < 0.5
    if t.bits:
        lo, hi = ((-(1 << (t.bits - 1)), (1 << (t.bits - 1)) - 1) if t.signed
                  else (0, (1 << t.bits) - 1))
        hi = hi if t.limit is None else min(hi, t.limit)
        return rng.choice([lo, hi, rng.randint(lo, hi)])
    if t.name == "bytes":
        return rng.randbytes(rng.choice([0, t.max_len, rng.randint(0, t.max_len)]))
    if t.name == "str":
        return "".join(rng.choice("abcé€ ") for _ in range(rng.randint(0, min(t.max_len, 40))))
    assert t.elem is not None
    return [random_value(t.elem, rng) for _ in range(t.max_len)]


def randomised(type_name: str, seed: int):
    obj = TYPES[type_name]("obj", None)
    rng = random.Random(seed)
    for f in fields_of(type(obj), "state"):
        f.assign(obj, random_value(f.type, rng))
    return obj


def encode(obj, fmt: str):
    writer = {"tree": TreeWriter, "binary": BinaryWriter, "json": JsonWriter}[fmt]()
    writer.begin_struct("obj")
    values = visit_fields(writer, obj)
    writer.end_struct()
    data = {"tree": lambda: writer.root, "binary": lambda: bytes(writer.out),
            "json": lambda: writer.dumps()}[fmt]()
    return values, data


def decode(type_name: str, data, fmt: str) -> dict:
    reader = {"tree": TreeReader, "binary": BinaryReader, "json": JsonReader}[fmt](data)
    reader.begin_struct("obj")
    values = visit_fields(reader, TYPES[type_name]("fresh", None))
    reader.end_struct()
    if fmt == "binary":
        reader.finish()
    return values


@pytest.mark.parametrize("fmt", ["tree", "binary", "json"])
@pytest.mark.parametrize("type_name", DEVICE_TYPES)
def test_random_state_survives_every_format(type_name, fmt):
    for seed in range(3):
        obj = randomised(type_name, seed)
        values, data = encode(obj, fmt)
        assert decode(type_name, data, fmt) == values


@pytest.mark.parametrize("type_name", DEVICE_TYPES)
def test_truncated_and_corrupted_binary_is_rejected_cleanly(type_name):
    values, data = encode(randomised(type_name, 7), "binary")
    for cut in sorted({0, 1, len(data) // 2, max(0, len(data) - 1)}):
        if cut < len(data):
            with pytest.raises(DecodeError):
                decode(type_name, data[:cut], "binary")
    with pytest.raises(DecodeError, match="trailing data"):
        decode(type_name, data + b"\0", "binary")
    rng = random.Random(11)
    for _ in range(50):  # flipped bytes: either decodes to valid values or is refused
        corrupt = bytearray(data)
        if corrupt:
            corrupt[rng.randrange(len(corrupt))] ^= 1 << rng.randrange(8)
        try:
            decoded = decode(type_name, bytes(corrupt), "binary")
        except DecodeError:
            continue
        obj = TYPES[type_name]("check", None)
        for f in fields_of(type(obj), "state"):  # whatever decoded fits the declaration
            f.type.check(decoded[f.attr])


@pytest.mark.parametrize("type_name", DEVICE_TYPES)
def test_bad_trees_name_the_field(type_name):
    _, tree = encode(randomised(type_name, 3), "tree")
    fields = fields_of(TYPES[type_name], "state")
    first = fields[0].wire
    missing = {"obj": {k: v for k, v in tree["obj"].items() if k != first}}
    with pytest.raises(DecodeError, match=f"obj/{first}: missing"):
        decode(type_name, missing, "tree")
    wrong = {"obj": dict(tree["obj"], **{first: object()})}
    with pytest.raises(DecodeError, match=f"obj/{first}"):
        decode(type_name, wrong, "tree")


def test_caps_and_widths_are_enforced():
    with pytest.raises(DecodeError, match="x: 300 does not fit u8"):
        TreeReader({"x": 300}).uint("x", 0, 8)
    with pytest.raises(DecodeError, match="b: 5 bytes exceed the cap of 4"):
        TreeReader({"b": b"12345"}).blob("b", b"", 4)
    with pytest.raises(DecodeError, match="b: length 4294967295 exceeds the cap of 16"):
        BinaryReader(b"\xff\xff\xff\xff").blob("b", b"", 16)
    with pytest.raises(DecodeError, match="flag: boolean byte 7"):
        BinaryReader(b"\x07").boolean("flag", False)
    with pytest.raises(DecodeError, match="not JSON"):
        JsonReader("{nope")
    with pytest.raises(DecodeError, match="h: not a hex string"):
        JsonReader('{"h": "zz"}').blob("h", b"", 8)


# -- the declaration's compound forms: nested structs, bounded arrays, optional members --

class _Latch:
    value = state.u16(reset=0xFFFF, doc="latched count")
    valid = state.bool(doc="a count is latched")


class _Compound(Object):
    TYPE_NAME = "test-compound"  # not registered: nothing else sees it
    latch = state.struct(_Latch, doc="a nested struct")
    history = state.array("u16", max_len=4, doc="up to four values")
    buffer = state.bytes(max_len=4096, optional=True, doc="usually empty, then not sent")
    pair = state.array("i8", length=2, optional=True, reset=[1, -1], doc="optional array")


def _roundtrip(obj: Object, fmt: str):
    w = {"tree": TreeWriter, "binary": BinaryWriter, "json": JsonWriter}[fmt]()
    w.begin_struct("obj")
    visit_fields(w, obj)
    w.end_struct()
    data = {"tree": lambda: w.root, "binary": lambda: bytes(w.out),
            "json": lambda: w.dumps()}[fmt]()
    r = {"tree": TreeReader, "binary": BinaryReader, "json": JsonReader}[fmt](data)
    r.begin_struct("obj")
    got = visit_state(r, _Compound)
    if fmt == "binary":
        r.finish()
    return data, got


@pytest.mark.parametrize("fmt", ["tree", "binary", "json"])
def test_structs_bounded_arrays_and_optional_members_round_trip(fmt):
    obj = _Compound("c")
    data, got = _roundtrip(obj, fmt)
    assert got == {"latch": {"value": 0xFFFF, "valid": False}, "history": [],
                   "buffer": b"", "pair": [1, -1]}
    if fmt == "tree":
        assert set(data["obj"]) == {"latch", "history"}  # the optional ones stay out
        assert data["obj"]["latch"] == {"value": 0xFFFF, "valid": False}
    if fmt == "binary":
        assert len(data) == 3 + 4 + 1 + 1  # u16 + bool, a count, two presence bytes
    obj.latch = {"value": 7, "valid": True}
    obj.history = [1, 2, 3]
    obj.buffer = b"data"
    obj.pair = [0, 5]
    data, got = _roundtrip(obj, fmt)
    assert got == {"latch": {"value": 7, "valid": True}, "history": [1, 2, 3],
                   "buffer": b"data", "pair": [0, 5]}


def test_compound_values_are_checked_on_load():
    tree = {"obj": {"latch": {"value": 70000, "valid": True}, "history": [1, 2, 3, 4, 5]}}
    r = TreeReader(tree)
    r.begin_struct("obj")
    with pytest.raises(DecodeError, match="obj/latch/value: 70000 does not fit u16"):
        visit_state(r, _Compound)
    tree["obj"]["latch"]["value"] = 1
    r = TreeReader(tree)
    r.begin_struct("obj")
    with pytest.raises(DecodeError, match="obj/history: 5 elements exceed the cap of 4"):
        visit_state(r, _Compound)
    r = BinaryReader(bytes([1, 0, 1, 0, 0, 0, 0, 2]))
    r.begin_struct("obj")
    with pytest.raises(DecodeError, match="obj/buffer: boolean byte 2"):
        visit_state(r, _Compound)


def test_compound_types_in_the_schema_and_their_notation():
    from emu.migration.schema import type_schema

    fields = {f["name"]: f for f in type_schema(_Compound)["fields"]}
    assert fields["latch"]["members"][0]["name"] == "value"
    assert fields["history"]["bounded"] and fields["buffer"]["optional"]
    types = {f.wire: f.type.spec for f in fields_of(_Compound, "state")}
    assert types == {"latch": "{value:u16 valid:bool}", "history": "u16[..4]",
                     "buffer": "bytes[4096]", "pair": "i8[2]"}
    assert FieldType.parse("u16[..4]") == fields_of(_Compound, "state")[1].type
