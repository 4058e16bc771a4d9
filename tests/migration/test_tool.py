"""pyemu-state on snapshot files, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from unicorn.x86_const import UC_X86_REG_RBX

from emu.machine.config import MachineConfig
from emu.machine.pc.pc import PcMachine

ROOT = Path(__file__).resolve().parents[2]
PIT = ROOT / "tests" / "guests" / "build" / "pit.elf"


def tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emu.state_tool", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory):
    d = tmp_path_factory.mktemp("snaps")
    m = PcMachine(MachineConfig(kernel=str(PIT), icount_shift=2, rtc_base="2020-01-01"), {})
    try:
        for name, until in (("a", 1_000_000), ("b", 3_000_000)):
            m.run_until(until)
            with open(d / f"{name}.pyemu", "wb") as f:
                m.save_snapshot(f)
    finally:
        m.cpu.close()
    return d / "a.pyemu", d / "b.pyemu"


def test_show(snapshots):
    r = tool("show", str(snapshots[0]))
    assert r.returncode == 0, r.stderr
    assert "machine pc, RAM 128 MiB" in r.stdout and "virtual time 0.001000 s" in r.stdout
    assert "/machine/cpu" in r.stdout and "/machine/pit/ch0" in r.stdout


def test_dump_is_the_whole_tree_as_json(snapshots):
    r = tool("dump", str(snapshots[0]))
    tree = json.loads(r.stdout)
    assert tree["description"]["machine"] == "pc"
    assert tree["state"]["/machine/cpu"]["segments"]["cs"]["selector"] == 0x08
    assert "irr" in tree["state"]["/machine/pic/master"]
    assert tree["ram"]["nonzero_pages"] > 0


def test_diff_names_what_changed(snapshots):
    r = tool("diff", *map(str, snapshots))
    assert r.returncode == 0
    assert "/machine/cpu/icount:" in r.stdout
    assert tool("diff", str(snapshots[0]), str(snapshots[0])).stdout.strip() == "no differences"


def test_schema_and_compare(tmp_path):
    r = tool("schema")
    dump = json.loads(r.stdout)
    assert "isa-serial" in dump
    dump["isa-serial"]["fields"][0]["bits"] = 64
    old = tmp_path / "old.json"
    old.write_text(json.dumps(dump))
    r = tool("schema", "--compare", str(old))
    assert "isa-serial/" in r.stdout and "STATE_VERSION 1 unchanged" in r.stdout


def test_bad_files_get_one_line(tmp_path, snapshots):
    bad = tmp_path / "bad.pyemu"
    bad.write_bytes(snapshots[0].read_bytes()[:1000])
    for path, message in ((bad, "checksum of the stream does not match"),
                          (tmp_path / "missing", "No such file")):
        r = tool("show", str(path))
        assert r.returncode == 1
        assert r.stderr.startswith(f"pyemu-state: {path}: ") and message in r.stderr
        assert r.stderr.count("\n") == 1


def test_set_edits_fields_and_a_machine_loads_them(snapshots, tmp_path):
    out = tmp_path / "edited.pyemu"
    r = tool("set", str(snapshots[0]), "/machine/cpu/rbx=0x1234", "/machine/pic/master/imr=0xa5",
             "/machine/cpu/segments/ds/base=0x10000", str(out))
    assert r.returncode == 0, r.stderr
    diff = tool("diff", str(snapshots[0]), str(out)).stdout
    assert "/machine/cpu/segments/ds/base: 0 -> 65536" in diff
    assert "/machine/pic/master/imr: " in diff and "-> 165" in diff
    assert "/machine/cpu/rbx: " in diff and "-> 4660" in diff
    m = PcMachine(MachineConfig(kernel=str(PIT), icount_shift=2, rtc_base="2020-01-01"), {})
    try:
        m.load_snapshot(out.read_bytes())
        assert m.cpu.uc.reg_read(UC_X86_REG_RBX) == 0x1234
        assert m.io.read(0x21, 1) == 0xA5  # OCW1 reads back the interrupt mask
    finally:
        m.cpu.close()


@pytest.mark.parametrize("edit, message", [
    ("/machine/port92/value=300", "/machine/port92/value: 300 does not fit u8"),
    ("/machine/port92/nope=1", "/machine/port92/nope: no such field"),
    ("/machine/cpu/rax=zz", "/machine/cpu/rax: 'zz' is not a value of this field (int)"),
    ("/machine/nothing/x=1", "/machine/nothing/x: no state section holds this path"),
    ("/machine/cpu/rax", "/machine/cpu/rax: expected PATH=VALUE"),
    ("/machine/cpu/icount=0xffffffffffffffff",
     "/machine/cpu/icount: 18446744073709551615 is past the horizon of the instruction "
     "counter (2^63-1)"),
])
def test_bad_edits_get_one_line_and_write_nothing(snapshots, tmp_path, edit, message):
    out = tmp_path / "out.pyemu"
    r = tool("set", str(snapshots[0]), edit, str(out))
    assert r.returncode == 1 and r.stderr == f"pyemu-state: {message}\n"
    assert not out.exists() and not list(tmp_path.iterdir())


def test_dump_ram_on_request(snapshots):
    plain = json.loads(tool("dump", "--json", str(snapshots[0])).stdout)
    assert "pages_in_use" not in plain["ram"]
    full = json.loads(tool("dump", "--json", "--ram", str(snapshots[0])).stdout)
    pages = full["ram"]["pages_in_use"]
    assert len(pages) == full["ram"]["nonzero_pages"]
    assert all(len(text) == 8192 and text.strip("0") for text in pages.values())


def test_a_qcow2_image_shows_its_snapshots_and_the_state_savevm_kept(tmp_path):
    from emu.host import qcow2
    from emu.host.block import DriveSpec, open_image
    from emu.migration import savevm

    image = tmp_path / "disk.qcow2"
    qcow2.create(str(image), 1 << 20)
    backend = open_image(str(image), format="qcow2")
    cfg = MachineConfig(kernel=str(PIT), icount_shift=2,
                        drives=[DriveSpec(file=str(image), index=0, format="qcow2")])
    m = PcMachine(cfg, {}, {0: backend})
    try:
        m.run_until(1_000_000)
        savevm.save(m, "s1")
    finally:
        m.cpu.close()
        backend.close()
    r = tool("show", str(image))
    assert r.returncode == 0, r.stderr
    assert f"{image}: qcow2 image, 1048576 bytes, 1 snapshots" in r.stdout
    assert " s1 " in r.stdout and "machine state" in r.stdout
    r = tool("show", str(image), "s1")
    assert r.returncode == 0, r.stderr
    assert "virtual time 0.001000 s" in r.stdout
    assert "  ide0-hd0: (qcow2, read-write, 1048576 bytes)" in r.stdout
    assert "/machine/cpu" in json.loads(tool("dump", str(image), "s1").stdout)["state"]
    r = tool("show", str(image), "nope")
    assert r.returncode == 1 and r.stderr == (
        f"pyemu-state: {image}: a qcow2 image: no snapshot 'nope' with machine state; "
        "its snapshots with machine state: s1\n")
    r = tool("show", str(tmp_path), "s1")
    assert r.returncode == 1 and "pyemu-state: " in r.stderr
