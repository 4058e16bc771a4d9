"""Compat filters: old streams keep loading, through data-declared upgrades chained by
version; the corpus of streams saved by earlier releases must load forever."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from debugexit import DEBUG_EXIT, PASS_STATUS
from test_snapshot import build, state_tree
from test_tool import tool

from emu.devices.port92 import Port92
from emu.migration import compat
from emu.migration.compat.description import DESCRIPTION_VERSION, upgrade_description
from emu.migration.compat.filters import Add, Call, CompatError, Drop, Rename, Retype, Upgrade
from emu.migration.schema import compare, schema
from emu.migration.stream import decode_section, read_stream
from emu.qom.visitor import DecodeError

CORPUS = Path(__file__).resolve().parent / "corpus"
# Every stream in the corpus, and the guest whose RAM it holds: the test builds that
# machine, loads the stream and lets the guest run on to its own verdict.
STREAMS = {"format1-pit-kbd-ed.pyemu": "pit"}


@pytest.fixture
def machine():
    made = []

    def make(guest: str):
        # the corpus was saved when an isa-debug-exit always sat at F4h
        made.append(build(guest, devices=(DEBUG_EXIT,)))
        return made[-1]

    yield make
    for m in made:
        m.cpu.close()


# -- the filter vocabulary ------------------------------------------------------------

def test_each_step_edits_the_tree():
    tree = {"a": 1, "b": 300, "c": True, "d": b"\x01\x02", "gone": 5}
    for step in (Rename("a", "alpha"), Retype("c", "u8"), Retype("d", "u8[2]"),
                 Add("fresh", 7), Drop("gone"),
                 Call(lambda t: t.update(b=t["b"] // 2))):
        step.apply(tree)
    assert tree == {"alpha": 1, "b": 150, "c": 1, "d": [1, 2], "fresh": 7}


def test_retype_converts_between_python_forms():
    tree = {"flag": 2, "list": [65, 66], "n": False}
    Retype("flag", "bool").apply(tree)
    Retype("list", "bytes[4]").apply(tree)
    Retype("n", "i32").apply(tree)
    assert tree == {"flag": True, "list": b"AB", "n": 0}
    with pytest.raises(ValueError, match="bytes b'AB' does not convert to u8"):
        Retype("list", "u8").apply(tree)


def _pad(tree):
    tree["pad"] = 0


def test_upgrade_errors_name_type_versions_and_step():
    up = Upgrade("port92", 1, layout="value:u8", steps=(Rename("valu", "value"),))
    with pytest.raises(CompatError, match=r"port92 v1 -> v2: Rename\(old='valu'.*no field"):
        up.apply({"value": 1})
    up = Upgrade("port92", 1, layout="value:u8", steps=(Call(_pad), Retype("value", "u8[2]")))
    with pytest.raises(CompatError, match=r"Retype.*: int 1 does not convert to u8\[2\]"):
        up.apply({"value": 1})
    assert str(Call(_pad)) == "Call(_pad)"


# -- chained upgrades through the loader ----------------------------------------------

@pytest.fixture
def port92_v3(monkeypatch):
    """port92 as if its state had changed twice: v1 saved ``latch`` as a u16 beside a
    flag since dropped; v2 saved ``latch`` as a u8; v3 (here) calls it ``value``."""
    monkeypatch.setattr(Port92, "STATE_VERSION", 3)
    monkeypatch.setitem(compat.UPGRADES, ("port92", 1), Upgrade(
        "port92", 1, layout="latch:u16 fast_a20:bool",
        steps=(Retype("latch", "u8"), Drop("fast_a20"))))
    monkeypatch.setitem(compat.UPGRADES, ("port92", 2), Upgrade(
        "port92", 2, layout="latch:u8", steps=(Rename("latch", "value"),)))


def decode(version: int, payload: bytes) -> dict:
    return decode_section("/machine/port92", "port92", version, payload,
                          {"/machine/port92": Port92})


def test_versions_chain_to_the_current_one(port92_v3):
    assert decode(1, struct.pack("<HB", 0x02, 1)) == {"value": 0x02}
    assert decode(2, bytes([0x03])) == {"value": 0x03}
    assert decode(3, bytes([0x01])) == {"value": 0x01}


def test_an_upgraded_value_is_checked_against_the_new_declaration(port92_v3):
    with pytest.raises(DecodeError, match="/machine/port92/value: 300 does not fit u8"):
        decode(1, struct.pack("<HB", 300, 0))


def test_old_sections_are_checked_against_their_old_layout(port92_v3):
    with pytest.raises(DecodeError, match="/machine/port92/fast_a20: truncated"):
        decode(1, struct.pack("<H", 2))
    with pytest.raises(DecodeError, match="/machine/port92: 1 bytes of trailing data"):
        decode(2, bytes([1, 2]))


def test_versions_without_a_filter_and_newer_versions_are_refused(port92_v3, monkeypatch):
    with pytest.raises(DecodeError, match="/machine/port92: state version 4 is newer than "
                                          "this pyemu's 3 for port92"):
        decode(4, bytes([1]))
    monkeypatch.delitem(compat.UPGRADES, ("port92", 2))
    with pytest.raises(DecodeError, match="no compat filter for port92 from v1"):
        decode(1, struct.pack("<HB", 2, 0))


def test_a_field_the_filters_leave_over_is_refused(port92_v3, monkeypatch):
    monkeypatch.setitem(compat.UPGRADES, ("port92", 1), Upgrade(
        "port92", 1, layout="latch:u8 fast_a20:bool", steps=()))
    with pytest.raises(DecodeError, match="field fast_a20 left over after upgrading port92 "
                                          "v1 -> v3"):
        decode(1, bytes([1, 0]))


# -- the corpus -----------------------------------------------------------------------

def test_every_corpus_stream_is_listed():
    assert sorted(p.name for p in CORPUS.glob("*.pyemu")) == sorted(STREAMS)


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_corpus_streams_load_and_their_guests_run_on(machine, name):
    m = machine(STREAMS[name])
    m.load_snapshot((CORPUS / name).read_bytes())
    m.run_until(m.clock.now_ns() + 500_000_000)
    assert m.exit_status == PASS_STATUS


def test_the_renamed_keyboard_latch_keeps_its_meaning(machine):
    """The corpus stream was saved right after a guest sent EDh (set LEDs) to the
    keyboard, as ps2-kbd v1 with the latch called ``expect``: the LED byte that follows
    must still be taken as the command's argument."""
    m = machine("pit")
    m.load_snapshot((CORPUS / "format1-pit-kbd-ed.pyemu").read_bytes())
    kbd = m.resolve("/machine/i8042/kbd")
    assert kbd.pending_cmd == 0xED
    m.io.write(0x60, 1, 0x07)
    assert kbd.leds == 0x07 and kbd.pending_cmd == 0


@pytest.mark.parametrize("old", sorted(CORPUS.glob("schema-*.json")), ids=lambda p: p.name)
def test_every_released_schema_still_loads(old):
    import emu.machine.pc.pc  # noqa: F401

    assert compare(json.loads(old.read_text()), schema()) == []


def test_upgrade_tool_writes_current_versions_that_load_the_same(machine, tmp_path):
    src = CORPUS / "format1-pit-kbd-ed.pyemu"
    out = tmp_path / "up.pyemu"
    r = tool("upgrade", str(src), str(out))
    assert r.returncode == 0, r.stderr
    assert "/machine/i8042/kbd: ps2-kbd v1 -> ps2-kbd v2" in r.stdout
    versions = {p: v for p, _, v, _ in read_stream(out.read_bytes()).sections}
    assert versions["/machine/i8042/kbd"] == 2
    a, b = machine("pit"), machine("pit")
    a.load_snapshot(src.read_bytes())
    b.load_snapshot(out.read_bytes())
    assert state_tree(a) == state_tree(b) and (a.mem.ram == b.mem.ram).all()
    again = tmp_path / "again.pyemu"
    assert tool("upgrade", str(out), str(again)).returncode == 0
    assert again.read_bytes() == out.read_bytes()  # nothing left to upgrade, nothing lost


# -- the machine description ---------------------------------------------------------

def test_a_description_without_a_version_is_upgraded_from_version_0():
    old = {"machine": "pc", "config": {"machine": "pc", "kernel": None}}
    got = upgrade_description(old)
    assert got["version"] == DESCRIPTION_VERSION
    assert got["config"]["cpu"] == "max"
    assert got["config"]["devices"] == ["isa-debug-exit,iobase=0xf4,iosize=0x04"]
    # what a version-0 description says stays as it is
    said = upgrade_description({"config": {"cpu": "qemu64", "devices": []}})
    assert said["config"] == {"cpu": "qemu64", "devices": []}


def test_a_version_1_description_had_only_raw_images():
    got = upgrade_description({"version": 1, "drives": {"ide0-hd0": {"size": 512}},
                               "config": {"drives": [{"id": "ide0-hd0", "file": "/d"}]}})
    assert got["drives"]["ide0-hd0"]["format"] == "raw"
    assert got["config"]["drives"][0]["format"] == "raw"


@pytest.mark.parametrize("version, message", [
    (DESCRIPTION_VERSION + 1, f"is newer than this pyemu's {DESCRIPTION_VERSION}"),
    (-1, "-1 is not a description version"),
    ("1", "'1' is not a description version"),
    (True, "True is not a description version"),
])
def test_a_description_version_this_pyemu_cannot_read_is_named(version, message):
    with pytest.raises(CompatError, match="description/version: ") as e:
        upgrade_description({"version": version})
    assert message in str(e.value)


# -- the other way: sections for a destination of an earlier release --------------------

def test_every_registered_filter_reverts_what_it_upgrades():
    """Each real compat filter, run backwards and forwards again over the reset state of
    its type, gives back the same tree; the reverted payload decodes with the old layout."""
    import emu.machine.pc.pc  # noqa: F401  (registers the board's types)
    from emu.qom import TYPES, fields_of

    for (type_name, version), up in sorted(compat.UPGRADES.items()):
        assert not up.one_way, f"{up}: {up.one_way}"
        cls = TYPES[type_name]
        tree = {f.wire: f.fresh() for f in fields_of(cls, "state")}
        payload = compat.downgrade_section("/x", type_name, version + 1, version, tree)
        again = compat.upgrade_section("/x", type_name, version, version + 1, payload,
                                       [f.wire for f in fields_of(cls, "state")])
        assert again == tree, up


def test_a_value_the_older_version_cannot_hold_is_named():
    from emu.devices.ide import IdeDrive
    from emu.qom import fields_of

    tree = {f.wire: f.fresh() for f in fields_of(IdeDrive, "state")}
    tree["tray_open"] = True  # ide-drive v1 had no tray: it would read as closed
    with pytest.raises(CompatError, match=r"ide-drive v2 -> v1: tray_open is True, which "
                                          r"the older version cannot express"):
        compat.downgrade_section("/machine/ide/ide1/master", "ide-drive", 2, 1, tree)


def test_piix4_pm_v1_has_no_gpe_and_a_pending_hotplug_event_cannot_go_back():
    from emu.devices.piix3 import Piix4Pm
    from emu.qom import fields_of

    wires = [f.wire for f in fields_of(Piix4Pm, "state")]
    tree = {f.wire: f.fresh() for f in fields_of(Piix4Pm, "state")}
    tree.update(config=bytes(256), pm1_sts=0x100, pm1_cnt=1, apm_cnt=0xF1)
    v1 = compat.downgrade_section("/machine/pm", "piix4-pm", 2, 1, tree)
    assert len(v1) == 4 + 256 + 8  # the v1 layout: config, PM1 and APM, nothing more
    assert compat.upgrade_section("/machine/pm", "piix4-pm", 1, 2, v1, wires) == tree
    # Linux enables GPE 1 at boot: v1 dropped such writes, so the enable goes quietly
    tree["gpe_en"] = 2
    assert compat.downgrade_section("/machine/pm", "piix4-pm", 2, 1, tree) == v1
    # a card the guest has not been told about yet would be lost: refused, named
    tree["pci_up"] = 1 << 3
    with pytest.raises(CompatError, match=r"piix4-pm v2 -> v1: pci_up is 8, which the "
                                          r"older version cannot express"):
        compat.downgrade_section("/machine/pm", "piix4-pm", 2, 1, tree)


def test_a_chain_reverts_through_every_step(port92_v3):
    # v3 {value} -> v2 {latch} -> v1 {latch: u16, fast_a20}: the drop comes back only
    # with a declared value
    with pytest.raises(CompatError, match="port92 v2 -> v1: one-way: fast_a20 was dropped"):
        compat.downgrade_section("/machine/port92", "port92", 3, 1, {"value": 2})
    compat.UPGRADES[("port92", 1)] = Upgrade(
        "port92", 1, layout="latch:u16 fast_a20:bool",
        steps=(Retype("latch", "u8"), Drop("fast_a20", back=True)))
    payload = compat.downgrade_section("/machine/port92", "port92", 3, 1, {"value": 2})
    assert payload == struct.pack("<HB", 2, 1)
    assert decode(1, payload) == {"value": 2}
    assert compat.downgrade_section("/machine/port92", "port92", 3, 2, {"value": 7}) == b"\x07"
    with pytest.raises(CompatError, match="no compat filter takes port92 from v3 back to v0"):
        compat.downgrade_section("/machine/port92", "port92", 3, 0, {"value": 2})


def test_schema_compare_names_a_change_that_cannot_go_back(monkeypatch):
    old = {"port92": {"version": 1, "fields": [{"name": "value", "type": "u8", "bits": 8,
                                                "signed": False, "doc": ""},
                                               {"name": "junk", "type": "bool", "doc": ""}]}}
    new = {"port92": {"version": 2, "fields": [{"name": "value", "type": "u8", "bits": 8,
                                                "signed": False, "doc": ""}]}}
    monkeypatch.setitem(compat.UPGRADES, ("port92", 1), Upgrade(
        "port92", 1, layout="value:u8 junk:bool", steps=(Drop("junk"),)))
    assert compare(old, new) == ["port92: v1 -> v2 cannot go back to v1: junk is dropped "
                                 "with no value to give it back"]
    monkeypatch.setitem(compat.UPGRADES, ("port92", 1), Upgrade(
        "port92", 1, layout="value:u8 junk:bool", steps=(Drop("junk", back=False),)))
    assert compare(old, new) == []


def test_a_destinations_announcement_is_checked_like_any_input():
    import emu.machine.pc.pc  # noqa: F401  (registers the board's types)
    from emu.migration.compat.releases import (
        RELEASE_0_1_0,
        announcement,
        destination_versions,
        state_versions,
    )

    assert destination_versions("") == RELEASE_0_1_0  # 0.1.0 says nothing
    assert destination_versions(announcement()) == state_versions()
    assert state_versions()["ide-drive"] == 2 and state_versions()["x86-cpu"] == 1
    for bad in ("{", "[]", '{"versions": 3}', '{"versions": {"a": "1"}}',
                '{"versions": {"a": 0}}', '{"versions": {"a": true}}',
                json.dumps({"versions": {"x" * 65: 1}}),
                json.dumps({"versions": {str(i): 1 for i in range(1025)}})):
        with pytest.raises(CompatError, match="does not announce its state versions"):
            destination_versions(bad)
