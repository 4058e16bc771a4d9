"""The switchover's promise under a hostile network: whatever message of a migration is
cut, reset, stalled or dropped, the guest never runs in two places, and a side that
does not run it says why. A proxy between two real pyemu processes does the harm
(switchover_proxy.py); the guest itself is the witness: it prints a numbered round on
its serial port every few milliseconds wherever it runs."""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time

import pytest
from switchover_proxy import ACTIONS, STAGES, Proxy
from test_migration import (
    DIRTY,
    free_port,
    info,
    pair,  # noqa: F401  (the fixture, by its name)
    rounds,
    wait_for,
)

from emu.migration.live import ACCEPT

GRACE_MS = 3000  # x-switchover-grace: the deadline of every stalled case
# How each fault ends: does the source run the guest, does the destination?
OUTCOME = {
    **{("accept", a): (True, False) for a in ACTIONS},
    **{("precopy", a): (True, False) for a in ACTIONS},
    **{("tail", a): (True, False) for a in ACTIONS},
    **{("ready", a): (True, False) for a in ACTIONS},
    **{("go", a): (False, False) for a in ACTIONS},  # sent GO: paused, unconfirmed
    **{("running", a): (False, True) for a in ACTIONS},
}
# Faults where the source would wait for its peer as long as the guest runs there
# (before the switchover nothing has a deadline but the stall timeout): the operator
# cancels, as a user would.
CANCELLED = {("accept", "stall"), ("accept", "drop"), ("precopy", "stall")}
FINISHED = ("completed", "failed", "cancelled")


def growing(path, seconds: float = 1.0) -> bool:
    """Whether the guest behind the serial file ``path`` is running: a new round within
    ``seconds`` (it says so at the first one; only a stopped guest takes the whole
    window)."""
    before = len(rounds(path))
    deadline = time.monotonic() + seconds
    while len(rounds(path)) == before:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("action", ACTIONS)
def test_a_fault_at_any_message_never_leaves_two_running_copies(pair, guest, stage,  # noqa: F811
                                                                action):
    smon = pair.source(guest("dirty"), *DIRTY)
    assert smon.cmd(f"migrate_set_parameter x-switchover-grace {GRACE_MS}") == ""
    port = free_port()
    dsock = pair.destination(f"tcp:127.0.0.1:{port}")
    proxy = Proxy(port, stage, action)
    try:
        assert smon.cmd(f"migrate -d tcp:127.0.0.1:{proxy.port}") == ""
        wait_for(proxy.hit.is_set, timeout=30, what=f"the proxy to reach {stage}")
        if (stage, action) in CANCELLED:
            time.sleep(0.3)
            assert smon.cmd("migrate_cancel") == ""
        try:
            status = wait_for(lambda: (s := info(smon))["Migration status"].split()[0]
                              in FINISHED and s, timeout=30, what="the migration to end")
        except AssertionError:
            pair.dst.kill()
            raise AssertionError(f"{info(smon)}\n{pair.dst.stderr.read().decode()}") from None
        src_runs, dst_runs = OUTCOME[stage, action]
        where = f"{stage}/{action}: {status['Migration status']}"
        # the destination that must not run has exited, or will when its deadline
        # passes; the one that runs keeps running
        if not dst_runs:
            wait_for(lambda: pair.dst.poll() is not None or not growing(pair.dst_out, 0.3),
                     timeout=30, what="the destination to stop")
        assert growing(pair.src_out) == src_runs, where
        assert growing(pair.dst_out) == dst_runs, where
        state = smon.cmd("info status")
        if src_runs:
            assert state == "VM status: running", where
            assert status["Migration status"].split()[0] in ("failed", "cancelled"), where
        else:
            assert state == "VM status: paused (postmigrate)", where
            _check_unconfirmed(pair, smon, status["Migration status"], dst_runs)
        if dst_runs:
            assert pair.dst_monitor(dsock).cmd("info status") == "VM status: running"
    finally:
        proxy.close()
    if not dst_runs:
        try:
            code = pair.dst.wait(GRACE_MS / 1000 + 30)
        except subprocess.TimeoutExpired:
            pair.dst.kill()
            code = pair.dst.wait()
        err = pair.dst.stderr.read().decode()
        assert code == 1, f"{where}: the destination went on: {err}"
        assert err.count("incoming migration failed") == 1, err
        assert "Traceback" not in err, err


def _check_unconfirmed(pair, smon, status: str, dst_runs: bool) -> None:  # noqa: F811
    """A source that sent GO and heard nothing back: paused, saying the guest may run
    on the destination; plain cont refused; cont -f is the operator's word."""
    assert status.startswith("failed") and "may be running on the destination" in status
    reply = smon.cmd("cont")
    assert reply.startswith("Error: cannot continue:") and "cont -f" in reply, reply
    assert not growing(pair.src_out, 0.3)
    if not dst_runs:  # the destination exited: the operator takes the guest back here
        assert pair.dst.wait(GRACE_MS / 1000 + 30) == 1
        assert smon.cmd("cont -f") == ""
        assert growing(pair.src_out)


def test_the_proxy_itself_lets_a_migration_through(pair, guest):  # noqa: F811
    # the same path with no fault: the fault cases above owe their outcome to the fault
    smon = pair.source(guest("dirty"), *DIRTY)
    port = free_port()
    pair.destination(f"tcp:127.0.0.1:{port}")
    proxy = Proxy(port, None)
    try:
        assert smon.cmd(f"migrate tcp:127.0.0.1:{proxy.port}") == ""
        assert info(smon)["Migration status"] == "completed"
        assert smon.cmd("cont").startswith("Error: cannot continue: the guest was migrated")
        assert smon.cmd("cont -f").startswith("Error: cannot continue: the guest was migrated")
        assert smon.cmd(f"migrate tcp:127.0.0.1:{free_port()}").startswith(
            "Error: cannot migrate: the guest was migrated")
        assert not growing(pair.src_out)
        assert growing(pair.dst_out)
    finally:
        proxy.close()


@pytest.mark.parametrize("stage", ["ready", "running"])
def test_cont_never_runs_the_source_while_the_destination_holds_its_disk(
        pair, guest, tmp_path, stage):  # noqa: F811
    # ready: the destination took the shared image, the source took the guest back and
    # waits for the image; running: the destination runs on it, the source is unsure.
    # Either way the source runs only on an image it holds, whatever the operator says.
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    smon = pair.source(guest("dirty"), *DIRTY, "-drive", f"file={disk},id=data")
    assert smon.cmd(f"migrate_set_parameter x-switchover-grace {GRACE_MS}") == ""
    port = free_port()
    dsock = pair.destination(f"tcp:127.0.0.1:{port}")
    proxy = Proxy(port, stage, "stall")
    try:
        assert smon.cmd(f"migrate -d tcp:127.0.0.1:{proxy.port}") == ""
        status = wait_for(lambda: (s := info(smon))["Migration status"].split()[0]
                          in FINISHED and s, timeout=30, what="the migration to end")
        if stage == "running":
            assert "may be running on the destination" in status["Migration status"]
            assert pair.dst_monitor(dsock).cmd("info status") == "VM status: running"
            for cont in ("cont", "cont -f"):
                reply = smon.cmd(cont)
                assert reply.startswith("Error: cannot continue:"), reply
            assert "drive data: image" in reply and "in use by another process" in reply
            assert not growing(pair.src_out) and growing(pair.dst_out)
        else:  # the destination let go when its wait for GO ended: the source runs again
            assert status["Migration status"].startswith("failed"), status
            assert smon.cmd("info status") == "VM status: running"
            assert growing(pair.src_out) and not growing(pair.dst_out)
    finally:
        proxy.close()


class FakeDestination:
    """A destination that reads the source's head and answers ACCEPT with a crafted
    announcement of its state versions, then waits for the source to hang up."""

    def __init__(self, announcement: str) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.reply = struct.pack("<BI", ACCEPT, len(announcement.encode())) + \
            announcement.encode()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(10)
            conn.recv(65536)  # the head (magic, description)
            conn.sendall(self.reply)
            try:
                while conn.recv(65536):
                    pass
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        self.thread.join(15)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("announcement, message", [
    ("not json", "the destination's ACCEPT does not announce its state versions"),
    ('{"versions": {"x86-cpu": "1"}}', "does not announce its state versions"),
    ('{"versions": {}}', "/machine/cpu: the destination has no x86-cpu"),
], ids=["garbage", "bad-version", "no-types"])
def test_a_destination_whose_announcement_cannot_be_met_is_refused_before_the_stop(
        pair, guest, announcement, message):  # noqa: F811
    smon = pair.source(guest("dirty"), *DIRTY)
    fake = FakeDestination(announcement)
    try:
        reply = smon.cmd(f"migrate tcp:127.0.0.1:{fake.port}")
        assert reply.startswith("Error: migration failed: the destination cannot take "
                                "this machine: ") and message in reply, reply
        assert len(reply.splitlines()) == 1
        assert smon.cmd("info status") == "VM status: running"
        assert growing(pair.src_out)
    finally:
        fake.close()
