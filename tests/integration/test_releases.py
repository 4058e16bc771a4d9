"""Live migration between the previous release and this tree, both ways, in real
processes: releases/pyemu-0.1.0.tar.gz (``git archive`` of the release's commit) is
unpacked into a directory of its own, its C helper built, and run with this
interpreter (the unicorn engine and its patches are the same).

0.1.0 announces nothing in its ACCEPT, so a source of this tree writes each section at
0.1.0's versions (emu/migration/compat/releases.py) through the compat filters run
backwards; 0.1.0's streams come in through them forwards. The guest is the dirty test
guest with a CD in its drive, so the IDE drive's state (v1 there, v2 here) travels."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from qemu.qmp.legacy import QEMUMonitorProtocol
from test_migration import DIRTY, GUESTS, free_port, info, listening, rounds, wait_for

ROOT = Path(__file__).resolve().parents[2]
ARCHIVE = ROOT / "releases" / "pyemu-0.1.0.tar.gz"


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """The 0.1.0 source tree, unpacked, with its C helper built."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the previous release's C helper")
    where = tmp_path_factory.mktemp("release")
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(where, filter="data")
    tree = where / "pyemu-0.1.0"
    subprocess.run(["gcc", "-O2", "-fPIC", "-shared", "-o", "emu/cpu/_cpuhelper.so",
                    "emu/cpu/cpuhelper.c", "-lpthread"], cwd=tree, check=True)
    return tree


class Side:
    """One pyemu process of either tree, with its monitor on a unix socket."""

    def __init__(self, tree: Path, tmp: Path, name: str, connect_monitor, *args: str) -> None:
        self.out, self.sock = tmp / f"{name}.txt", tmp / f"{name}.sock"
        env = dict(os.environ, PYTHONPATH=str(tree))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "emu.cli", *args, "-display", "none", "-serial",
             f"file:{self.out}", "-monitor", f"unix:{self.sock},server,nowait"],
            cwd=tree, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self.connect_monitor = connect_monitor
        self._mon = None

    @property
    def mon(self):
        if self._mon is None:
            self._mon = self.connect_monitor(self.sock, self.proc)
            self._mon.until_prompt()
        return self._mon

    def version(self) -> str:
        return self.mon.cmd("info version")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


@pytest.fixture
def sides(tmp_path, connect_monitor):
    made: list[Side] = []

    def start(tree: Path, name: str, *args: str) -> Side:
        made.append(Side(tree, tmp_path, name, connect_monitor, *args))
        return made[-1]

    yield start
    for side in made:
        side.close()


def disc(tmp: Path) -> Path:
    path = tmp / "disc.iso"
    path.write_bytes(bytes(range(256)) * 8 * 40)  # 40 CD sectors
    return path


def source(sides, tree: Path, tmp: Path, *extra: str) -> Side:
    src = sides(tree, "src", "-kernel", str(GUESTS / "dirty.elf"), *DIRTY, "-cdrom",
                str(disc(tmp)), *extra)
    wait_for(lambda: len(rounds(src.out)) >= 2, what="the source guest's rounds")
    return src


def destination(sides, tree: Path, tmp: Path) -> tuple[Side, int]:
    port = free_port()
    dst = sides(tree, "dst", "-incoming", f"tcp:127.0.0.1:{port}", "-allow-files",
                str(GUESTS), "-allow-files", str(tmp))
    wait_for(lambda: listening(port) or dst.proc.poll() is not None,
             what="the destination to listen")
    return dst, port


def carries_on(src: Side, dst: Side) -> None:
    """The source stopped for good and the guest checks its memory on at the
    destination, round after round."""
    assert info(src.mon)["Migration status"] == "completed"
    last = rounds(src.out)[-1]
    wait_for(lambda: (r := rounds(dst.out)) and r[-1] >= last + 3,
             what="rounds on the destination")
    assert "ide1-cd0" in dst.mon.cmd("info block")


def test_the_previous_release_migrates_to_this_tree(release, sides, tmp_path):
    src = source(sides, release, tmp_path)
    assert src.version().startswith("0.1.0")
    dst, port = destination(sides, ROOT, tmp_path)
    assert src.mon.cmd(f"migrate tcp:127.0.0.1:{port}") == ""
    carries_on(src, dst)


def test_this_tree_migrates_to_the_previous_release(release, sides, tmp_path):
    src = source(sides, ROOT, tmp_path)
    dst, port = destination(sides, release, tmp_path)
    assert src.mon.cmd(f"migrate tcp:127.0.0.1:{port}") == ""
    carries_on(src, dst)
    assert dst.version().startswith("0.1.0")


def test_state_the_previous_release_cannot_hold_is_refused(release, sides, tmp_path):
    # the tray open with the disc in it: ide-drive v1 had no tray, so 0.1.0 would close
    # it; the source says so and runs on
    src = source(sides, ROOT, tmp_path, "-qmp", f"unix:{tmp_path / 'src.qmp'},server,nowait")
    qmp = QEMUMonitorProtocol(str(tmp_path / "src.qmp"))
    qmp.connect()
    assert qmp.cmd("blockdev-open-tray", device="ide1-cd0") == {}
    qmp.close()
    dst, port = destination(sides, release, tmp_path)
    reply = src.mon.cmd(f"migrate tcp:127.0.0.1:{port}")
    assert reply.startswith("Error: migration failed: the destination cannot take this "
                            "machine: ide-drive v2 -> v1: tray_open is True"), reply
    assert src.mon.cmd("info status") == "VM status: running"
    before = rounds(src.out)[-1]
    wait_for(lambda: rounds(src.out)[-1] > before + 2, what="the source running on")
