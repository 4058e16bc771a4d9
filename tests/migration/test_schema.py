"""The schema dump covers every saved field; the comparison names incompatible changes."""

from __future__ import annotations

import copy
import json

import emu.machine.pc.pc  # noqa: F401  (registers the pc board's types)
from emu.migration.schema import compare, schema
from emu.qom import TYPES, fields_of


def test_schema_lists_every_state_field_of_every_type():
    dump = json.loads(json.dumps(schema()))  # it is plain JSON
    for name, cls in TYPES.items():
        state = fields_of(cls, "state")
        if state:
            assert [f["name"] for f in dump[name]["fields"]] == [f.wire for f in state]
            assert dump[name]["version"] == cls.STATE_VERSION
    assert dump["isa-serial"]["fields"][0]["doc"]  # docs travel with the schema


def test_compare_names_each_incompatible_change():
    old = schema()
    assert compare(old, schema()) == []
    new = copy.deepcopy(old)
    uart = new["isa-serial"]["fields"]
    divisor = next(f for f in uart if f["name"] == "divisor")
    divisor["bits"] = 32
    uart.append({"name": "fresh", "doc": "", "type": "bool"})
    del new["i8259"]["fields"][0]
    first_pic_field = old["i8259"]["fields"][0]["name"]
    lines = compare(old, new)
    assert "isa-serial/divisor: u16 -> u32 (STATE_VERSION 1 unchanged)" in lines
    assert "isa-serial/fresh: field added (STATE_VERSION 1 unchanged)" in lines
    assert f"i8259/{first_pic_field}: field removed (STATE_VERSION 1 unchanged)" in lines
    new["isa-serial"]["version"] = 2
    assert "isa-serial/divisor: u16 -> u32 (version 1 -> 2: needs a compat filter from v1)" in \
        compare(old, new)
    del new["mc146818"]
    assert "mc146818: type removed" in compare(old, new)
