"""Migration over TLS between pyemu processes, with certificates the test makes: a source
holding the credentials migrates; a source without them, or with a certificate another CA
signed, is refused with the reason and runs on; bad credentials are one line at startup
or at the monitor (HMP and QMP alike)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_migration import DIRTY, Pair, free_port, info, listening, rounds, wait_for
from test_qmp import Guest, error
from tlscerts import make_certificates

GLOBAL = ("-global", "migration.tls-creds=tls0")


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def tls_object(certs: Path, name: str, endpoint: str, id: str = "tls0") -> tuple[str, str]:
    return "-object", f"tls-creds-x509,id={id},dir={certs / name},endpoint={endpoint}"


@pytest.fixture
def pair(tmp_path, start_with_monitor, connect_monitor, pyemu_proc) -> Pair:
    return Pair(tmp_path, start_with_monitor, connect_monitor, pyemu_proc)


def test_a_guest_migrates_over_tls_to_a_bare_destination(pair, guest, certs):
    uri = f"tcp:127.0.0.1:{free_port()}"
    smon = pair.source(guest("dirty"), *DIRTY, *tls_object(certs, "client", "client"))
    assert smon.cmd("migrate_set_parameter tls-creds tls0") == ""
    sock = pair.destination(uri, *tls_object(certs, "server", "server"), *GLOBAL)
    assert smon.cmd(f"migrate {uri}") == ""
    assert info(smon)["Migration status"] == "completed"
    last = rounds(pair.src_out)[-1]
    wait_for(lambda: (r := rounds(pair.dst_out)) and r[-1] >= last + 3,
             what="rounds on the destination")
    dmon = pair.dst_monitor(sock)
    assert info(dmon, "migrate_parameters")["tls-creds"] == "'tls0'"  # from -global


def test_a_tls_destination_refuses_a_source_without_its_trust(pair, guest, certs):
    """A plain source, then one whose certificate another CA signed: each fails with the
    reason in one line and runs on; the destination (tls-creds set at its monitor before
    migrate_incoming) logs each peer it dropped and goes on listening, so the source
    holding the credentials then migrates to it."""
    smon = pair.source(guest("dirty"), *DIRTY, *tls_object(certs, "rogue", "client"),
                       *tls_object(certs, "client", "client", id="good"))
    dst, dmon = pair.start_with_monitor("-kernel", guest("dirty"), *DIRTY, "-incoming",
                                        "defer", "-serial", f"file:{pair.dst_out}",
                                        *tls_object(certs, "server", "server"))
    port = free_port()
    uri = f"tcp:127.0.0.1:{port}"
    assert dmon.cmd("migrate_set_parameter tls-creds tls0") == ""
    assert dmon.cmd(f"migrate_incoming {uri}") == ""
    wait_for(lambda: listening(port), what="the destination to listen")
    for creds, reason in (
            ('""', "without a word (a destination that requires TLS drops a source without "
                   "tls-creds)"),
            ("tls0", "TLS: the peer refused the session: unknown ca")):
        assert smon.cmd(f"migrate_set_parameter tls-creds {creds}") == ""
        reply = smon.cmd(f"migrate {uri}")
        assert reply.startswith("Error: migration failed: ") and reason in reply, reply
        status = info(smon)["Migration status"]
        assert status.startswith("failed (") and reason in status, status
        assert smon.cmd("info status") == "VM status: running"
        before = rounds(pair.src_out)[-1]
        wait_for(lambda before=before: rounds(pair.src_out)[-1] > before + 2,
                 what="the source running on")
        assert dst.poll() is None
    assert smon.cmd("migrate_set_parameter tls-creds good") == ""
    assert smon.cmd(f"migrate {uri}") == ""
    assert info(smon)["Migration status"] == "completed"
    assert dmon.cmd("info status") == "VM status: running"
    dmon.sock.sendall(b"quit\n")
    dst.wait(10)
    err = dst.stderr.read().decode()
    assert err.count("incoming migration: dropped a connection") == 2, err
    assert "does not speak TLS" in err and "certificate is not accepted" in err, err


SERVER = "tls-creds-x509,id=tls0,dir={certs}/server,endpoint=server"


@pytest.mark.parametrize("args, message", [
    (("-object", "tls-creds-x509,id=tls0,dir=/nonexistent,endpoint=server"),
     "-object tls-creds-x509,id=tls0,dir=/nonexistent,endpoint=server: dir=/nonexistent: "
     "not a directory"),
    (("-object", "tls-creds-x509,id=tls0,dir={certs}/client,endpoint=server"),
     "-object tls-creds-x509,id=tls0,dir={certs}/client,endpoint=server: "
     "{certs}/client/server-cert.pem: No such file or directory"),
    (("-object", "tls-creds-x509,id=tls0,dir={certs}/server,endpoint=sideways"),
     "-object tls-creds-x509,id=tls0,dir={certs}/server,endpoint=sideways: endpoint "
     "'sideways' is not one of server, client"),
    (("-object", SERVER, "-object", SERVER),
     f"-object {SERVER}: an object with id 'tls0' already exists"),
    (("-global", "migration.tls-creds=tls9"),
     "-global migration.tls-creds=tls9: no TLS credentials with id 'tls9' "
     "(-object tls-creds-x509,id=tls9,... creates them)"),
    (("-global", "migration.downtime-limit=5"),
     "-global migration.downtime-limit=5: pyemu's -global sets no device properties, "
     "only migration.tls-creds=ID and "
     "migration.tls-hostname=NAME"),
    (("-object", SERVER, *GLOBAL, "-incoming", "file:/nonexistent"),
     "-incoming 'file:/nonexistent': TLS (tls-creds) is for tcp: and unix: only"),
    (("-object", SERVER.replace("=server", "=client").replace("/client", "/server"), *GLOBAL,
      "-incoming", "tcp:127.0.0.1:1"),
     "-incoming 'tcp:127.0.0.1:1': tls-creds 'tls0' has endpoint=client; listening needs "
     "endpoint=server"),
])
def test_bad_credentials_are_one_line_at_startup(pyemu, certs, args, message):
    r = pyemu(*(a.format(certs=certs) for a in args), "-display", "none")
    assert r.returncode == 1
    assert r.stderr.decode() == f"pyemu: {message.format(certs=certs)}\n"


def test_tls_parameters_at_both_monitors(tmp_path, pyemu_proc, guest, certs):
    """migrate_set_parameter (HMP) and migrate-set-parameters (QMP) check alike."""
    vm = Guest(tmp_path, pyemu_proc, guest, *tls_object(certs, "client", "client"))
    qmp = vm.legacy()
    unknown = ("no TLS credentials with id 'nosuch' (-object tls-creds-x509,id=nosuch,... "
               "creates them)")

    def hmp(line: str) -> str:
        return qmp.cmd("human-monitor-command", **{"command-line": line}).strip()

    try:
        assert hmp("migrate_set_parameter tls-creds nosuch") == f"Error: {unknown}"
        assert error(qmp.cmd_obj({"execute": "migrate-set-parameters",
                                  "arguments": {"tls-creds": "nosuch"}})) == \
            ("GenericError", unknown)
        cls, desc = error(qmp.cmd_obj({"execute": "migrate-set-parameters",
                                       "arguments": {"tls-creds": 1}}))
        assert desc == "Invalid parameter type for 'tls-creds', expected: string"
        assert qmp.cmd("query-migrate-parameters")["tls-creds"] == ""
        assert hmp("migrate_set_parameter tls-creds tls0") == ""
        assert qmp.cmd("migrate-set-parameters", **{"tls-hostname": "dst.example"}) == {}
        params = qmp.cmd("query-migrate-parameters")
        assert (params["tls-creds"], params["tls-hostname"]) == ("tls0", "dst.example")
        assert "tls-hostname: 'dst.example'" in hmp("info migrate_parameters").splitlines()
        image = tmp_path / "state"
        assert hmp(f"migrate file:{image}") == (f"Error: migration failed: 'file:{image}': "
                                                "TLS (tls-creds) is for tcp: and unix: only")
        assert not image.exists()
    finally:
        qmp.close()
    vm.running_on()
