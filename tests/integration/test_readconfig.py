"""-readconfig: a machine-export file builds the same machine in another process, which
exports the same bytes, runs the same guest and takes a migration from the original."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_migration import DIRTY, Pair, free_port, info, rounds, wait_for

from emu.migration.compat.description import DESCRIPTION_VERSION


@pytest.fixture
def pair(tmp_path, start_with_monitor, connect_monitor, pyemu_proc):
    return Pair(tmp_path, start_with_monitor, connect_monitor, pyemu_proc)


def export(mon, path: Path) -> bytes:
    assert mon.cmd(f"machine-export {path}") == ""
    return path.read_bytes()


def test_an_exported_machine_is_built_again_from_its_file(pair, guest, start_with_monitor):
    smon = pair.source(guest("dirty"), *DIRTY, "-m", "64", "-cpu", "max", "-device",
                       "isa-debug-exit,iobase=0xf4,iosize=0x04")
    original = export(smon, pair.tmp / "vm.json")
    assert json.loads(original)["version"] == DESCRIPTION_VERSION
    out = pair.tmp / "copy.txt"
    _, cmon = start_with_monitor("-readconfig", str(pair.tmp / "vm.json"),
                                 "-serial", f"file:{out}")
    assert export(cmon, pair.tmp / "again.json") == original  # byte for byte
    # the same guest runs, checking its memory round after round
    wait_for(lambda: len(rounds(out)) >= 3, what="the guest's rounds in the copy")
    assert cmon.cmd("info status") == "VM status: running"


def test_a_destination_started_from_the_file_takes_the_original(pair, guest):
    smon = pair.source(guest("dirty"), *DIRTY)
    export(smon, pair.tmp / "vm.json")
    port = free_port()
    pair.destination(f"tcp:127.0.0.1:{port}", "-readconfig", str(pair.tmp / "vm.json"),
                     allow=False)  # the file, not the stream, names the guest's files
    assert smon.cmd(f"migrate tcp:127.0.0.1:{port}") == ""
    assert info(smon)["Migration status"] == "completed"
    last = rounds(pair.src_out)[-1]
    wait_for(lambda: (r := rounds(pair.dst_out)) and r[-1] >= last + 3,
             what="rounds on the destination")


def edited(pair: Pair, guest, change) -> Path:
    """A machine-export of the dirty guest, passed through ``change`` (text -> text)."""
    smon = pair.source(guest("dirty"), *DIRTY)
    text = export(smon, pair.tmp / "vm.json").decode()
    path = pair.tmp / "edited.json"
    path.write_text(change(text))
    return path


def newer(text: str) -> str:
    return text.replace(f'"version": {DESCRIPTION_VERSION}', '"version": 7')


def other_uart(text: str) -> str:
    desc = json.loads(text)
    for obj in desc["objects"]:
        if obj["path"] == "/machine/serial0":
            obj["props"]["iobase"] = 0x2F8
    return json.dumps(desc)


@pytest.mark.parametrize("change, message", [
    (lambda t: t[:len(t) // 2], "description: not JSON"),
    (lambda t: t.replace('"machine": "pc",', '"machine": "pc", "machine": "pc",', 1),
     "description: not JSON (duplicate key 'machine')"),
    (lambda t: t.replace('"ram_size": 134217728', '"ram_size": NaN'),
     "description: not JSON ('NaN' is not a JSON value)"),
    (newer, f"description/version: 7 is newer than this pyemu's {DESCRIPTION_VERSION}"),
    (lambda t: json.dumps({k: v for k, v in json.loads(t).items() if k != "config"}),
     "description/config: missing (not a machine-export file?)"),
    (other_uart, "/machine/serial0: properties differ"),
], ids=["cut", "duplicate-key", "nan", "newer", "no-config", "edited-object"])
def test_a_bad_file_is_one_line_naming_the_fault(pair, guest, pyemu, change, message):
    path = edited(pair, guest, change)
    done = pyemu("-readconfig", str(path), "-display", "none", "-serial", "null",
                 timeout=30)
    err = done.stderr.decode()
    assert done.returncode == 1 and err.startswith(f"pyemu: -readconfig {path}: "), err
    assert message in err, err
    if message != "/machine/serial0: properties differ":
        assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("args, message", [
    (("-readconfig", "/nonexistent/vm.json"), "-readconfig /nonexistent/vm.json: No such file"),
    (("-readconfig", "/dev/zero"), "-readconfig /dev/zero: larger than 16 MiB"),
    (("-readconfig", "/etc/hostname", "-m", "256"),
     "-readconfig /etc/hostname: the machine comes from the file"),
])
def test_a_bad_readconfig_option_is_refused_at_once(pyemu, args, message):
    done = pyemu(*args, "-display", "none", timeout=30)
    err = done.stderr.decode()
    assert done.returncode != 0 and message in err and len(err.strip().splitlines()) == 1, err
