"""qom-list / qom-get / qom-set over the object tree, and machine-export."""

from __future__ import annotations

import json

import pytest

from emu.monitor.qom_commands import parse_value
from emu.qom.fields import BOOL, U8, FieldType


def init_master_pic(m, mask: int) -> None:
    for port, value in ((0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0x21, mask)):
        m.io.write(port, 1, value)


def test_qom_list(machine, run):
    assert run(machine, "qom-list /") == "machine (child<pc>)"
    top = run(machine, "qom-list /machine").splitlines()
    assert top[:2] == ["type (string)", "realized (bool)"]
    assert "pic (child<isa-pic>)" in top and "i8042 (child<i8042>)" in top
    master = run(machine, "qom-list /machine/pic/master").splitlines()  # as QEMU's HMP
    assert "iobase (uint16)" in master
    assert "imr (uint8)" in master and "auto_eoi (bool)" in master
    assert run(machine, "qom-list pic/master") == run(machine, "qom-list /machine/pic/master")


def test_qom_get(machine, run):
    init_master_pic(machine, 0xFB)
    assert run(machine, "qom-get /machine/pic/master type") == '"i8259"'
    assert run(machine, "qom-get /machine/pic/master realized") == "true"
    assert run(machine, "qom-get /machine/pic/master iobase") == "32"
    assert run(machine, "qom-get /machine/pic/master imr") == "251"
    assert run(machine, "qom-get /machine/pic/master vector_base") == "32"
    assert run(machine, "qom-get /machine/pic/master int_level") == "false"
    assert run(machine, "qom-get /machine/rtc base") == '"2020-01-01T00:00:00"'
    config = json.loads(run(machine, "qom-get /machine/ide config"))
    assert config[:8] == "86801070"  # vendor 8086, device 7010, little-endian


def test_qom_set_state_is_what_the_guest_sees(machine, run):
    init_master_pic(machine, 0xFF)
    assert run(machine, "qom-set /machine/pic/master imr 0xfe") == ""
    assert machine.io.read(0x21, 1) == 0xFE
    # A request latched behind the guest's back: derived INT and the CPU's INTR follow.
    assert run(machine, "qom-set /machine/pic/master irr 1") == ""
    assert machine.pic.master.int_level and machine.cpu.helper.p.intr == 1
    assert machine.acknowledge_interrupt() == 0x20
    run(machine, "qom-set /machine/pic/master auto_eoi true")
    assert run(machine, "qom-get /machine/pic/master auto_eoi") == "true"
    run(machine, "qom-set /machine/pic/master auto_eoi off")
    assert machine.pic.master.auto_eoi is False
    run(machine, "qom-set /machine/i8042/kbd queue 1cf01c")
    assert machine.i8042.kbd.queue == b"\x1c\xf0\x1c"
    run(machine, 'qom-set /machine/i8042/kbd queue ""')
    assert machine.i8042.kbd.queue == b""


@pytest.mark.parametrize(("line", "message"), [
    ("qom-set /machine/pic/master int_level 1",
     "Error: Property 'int_level' is derived from state by /machine/pic/master's rebuild "
     "and cannot be set"),
    ("qom-set /machine/pic/master iobase 0x30",
     "Error: Attempt to set property 'iobase' on '/machine/pic/master' after it was realized"),
    ("qom-set /machine/pic/master type x", "Error: Property 'type' is read-only"),
    ("qom-set /machine/pic/master imr 256", "Error: Property 'imr': 256 out of range for u8"),
    ("qom-set /machine/pic/master imr -1", "Error: Property 'imr': -1 out of range for u8"),
    ("qom-set /machine/pic/master imr zz",
     "Error: Property 'imr': expected an integer (0x.. or decimal), not 'zz'"),
    ("qom-set /machine/pic/master auto_eoi maybe",
     "Error: Property 'auto_eoi': expected true or false, not 'maybe'"),
    ("qom-set /machine/i8042/kbd queue xyz",
     "Error: Property 'queue': expected hex bytes, not 'xyz'"),
    ("qom-set /machine/i8042/kbd queue " + "00" * 25,
     "Error: Property 'queue': 25 bytes exceeds the cap of 24"),
    ("qom-set /machine/nothing imr 1", "Error: Device '/machine/nothing' not found"),
    ("qom-set /machine/pic/master nothing 1", "Error: Property 'i8259.nothing' not found"),
    ("qom-get /machine/pic/master nothing", "Error: Property 'i8259.nothing' not found"),
    ("qom-get /elsewhere/pic imr", "Error: Device '/elsewhere/pic' not found"),
    ("qom-list /machine/../..", "Error: Device '/machine/../..' not found"),
    ("qom-set /machine/pic/master imr", "qom-set: missing argument (usage: qom-set path "
     "property value)"),
])
def test_bad_qom_lines_get_one_error_line(machine, error, line, message):
    before = machine.pic.master.imr
    assert error(machine, line) == message
    assert machine.pic.master.imr == before


def test_parse_value_by_type():
    assert parse_value(U8, "0x1f") == 31 and parse_value(U8, "0b101") == 5
    assert parse_value(U8, "0o17") == 15 and parse_value(U8, "12") == 12
    assert parse_value(BOOL, "TRUE") is True and parse_value(BOOL, "0") is False
    array = FieldType("array", max_len=3, elem=U8)
    assert parse_value(array, "[1,0x2,3]") == [1, 2, 3] == parse_value(array, "1,2,3")
    with pytest.raises(ValueError, match="2 elements where the array takes 3"):
        array.check(parse_value(array, "1,2"))  # what qom-set does with it


def test_machine_export(tmp_path, machine, run):
    out = tmp_path / "machine.json"
    out.write_text("old contents")
    assert run(machine, f"machine-export {out}") == ""
    desc = json.loads(out.read_text())
    assert desc["machine"] == "pc" and desc["ram_size"] == 128 << 20
    objects = {o["path"]: o for o in desc["objects"]}
    assert objects["/machine/pic/master"] == {
        "path": "/machine/pic/master", "type": "i8259",
        "props": {"iobase": 0x20, "elcr_base": 0x4D0, "elcr_mask": 0xF8, "master": True}}
    assert desc["config"]["icount_shift"] == 2
    assert desc["config"]["kernel"].endswith("hlt.elf")
    assert [p.name for p in tmp_path.iterdir()] == ["machine.json"]  # no leftovers


def test_machine_export_failure_leaves_nothing(tmp_path, machine, error):
    assert error(machine, f"machine-export {tmp_path}/missing/m.json") == \
        f"Error: could not write '{tmp_path}/missing/m.json': No such file or directory"
    assert error(machine, f"machine-export {tmp_path}").startswith(
        f"Error: could not write '{tmp_path}': ")
    assert list(tmp_path.iterdir()) == []


def test_qmp_and_hmp_qom_set_are_one_command(machine, run):
    # QMP's qom-set once skipped the recompute after a state change: the PIC's INT
    # output rose while the CPU's INTR line stayed low
    from emu.monitor.qmp import QMP_COMMANDS

    init_master_pic(machine, 0xFF)
    machine.isa_irq(4).pulse()
    assert not machine.cpu.helper.p.intr
    QMP_COMMANDS["qom-set"].fn(machine, {"path": "/machine/pic/master", "property": "imr",
                                         "value": 0xEF})
    assert machine.pic.master.int_level and machine.cpu.helper.p.intr
    assert run(machine, "qom-get /machine/pic/master imr") == "239"


def test_host_bindings_are_declared_links(make_machine, run, error, tmp_path):
    """A drive's image, a port's chardev, the CPU's engine and the clock are links: listed
    as link<KIND>, named by qom-get, never set by qom-set and never saved as state."""
    from emu.host.block import DriveSpec, open_image
    from emu.host.chardev import parse_chardev

    iso = tmp_path / "cd.iso"
    iso.write_bytes(bytes(2048))
    machine = make_machine(chardevs={"serial0": parse_chardev("null")},
                           blocks={2: open_image(str(iso), readonly=True)},
                           drives=[DriveSpec(file=str(iso), index=2, media="cdrom",
                                             readonly=True)])
    assert run(machine, "qom-get /machine/serial0 chardev") == '"null"'
    assert run(machine, "qom-get /machine/ide/ide1/master backend") == json.dumps(str(iso))
    cpu = run(machine, "qom-list /machine/cpu").splitlines()
    assert "cpu (link<engine>)" in cpu
    assert "clock (link<clock>)" in run(machine, "qom-list /machine/clock").splitlines()
    assert run(machine, "qom-get /machine/cpu cpu") == '"X86Cpu"'
    for obj in machine.walk():
        for name in ("chardev", "backend"):
            if name in run(machine, f"qom-list {obj.path}"):
                listed = run(machine, f"qom-list {obj.path}").splitlines()
                assert any(line.startswith(f"{name} (link<") for line in listed), obj.path
                bound = getattr(obj, name)
                want = "null" if bound is None else json.dumps(bound.path if name == "backend"
                                                               else bound.spec)
                assert run(machine, f"qom-get {obj.path} {name}") == want
                assert error(machine, f"qom-set {obj.path} {name} x") == (
                    f"Error: Property '{name}' is a host binding: the command line (or "
                    "change, for a CD) binds it")
    from emu.migration.schema import schema

    saved = json.dumps(schema())
    assert '"chardev"' not in saved and '"backend"' not in saved
