"""TLS credentials (-object tls-creds-x509): QEMU's spelling, every file read at creation,
and one line naming the property or the file for anything wrong."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tlscerts import make_certificates

from emu.host import tls
from emu.host.tls import Credentials, check_parameter, from_parameters, parse_object


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def spec(directory: Path | str, endpoint: str = "server", extra: str = "") -> str:
    return f"tls-creds-x509,id=tls0,dir={directory},endpoint={endpoint}{extra}"


def test_parse_object(certs):
    creds = parse_object(spec(certs / "server"))
    assert (creds.id, creds.endpoint, creds.verify_peer) == ("tls0", "server", True)
    for text, on in (("on", True), ("yes", True), ("off", False), ("false", False)):
        assert parse_object(spec(certs / "client", "client",
                                 f",verify-peer={text}")).verify_peer is on


@pytest.mark.parametrize("text, message", [
    ("secret,id=s", "unsupported object type 'secret' (pyemu has tls-creds-x509)"),
    ("tls-creds-x509,id=t,dir=/,endpoint=server,priority=NORMAL",
     "unsupported property 'priority' (pyemu has id, dir, endpoint, verify-peer)"),
    ("tls-creds-x509,id=t,dir=/,endpoint", "'endpoint': properties are KEY=VALUE"),
    ("tls-creds-x509,id=t,id=u,dir=/,endpoint=server", "property 'id' given twice"),
    ("tls-creds-x509,dir=/,endpoint=server", "property 'id' is required"),
    ("tls-creds-x509,id=t,endpoint=server", "property 'dir' is required"),
    ("tls-creds-x509,id=t,dir=/", "property 'endpoint' is required"),
    ("tls-creds-x509,id=t,dir=/,endpoint=both", "endpoint 'both' is not one of server, client"),
    ("tls-creds-x509,id=t,dir=/,endpoint=server,verify-peer=maybe",
     "verify-peer=maybe: expected on or off"),
    ("tls-creds-x509,id=0t,dir=/,endpoint=server",
     "id '0t' is not a valid object id (a letter, then letters, digits, '-', '.' or '_')"),
    ("tls-creds-x509,id=t,dir=/nonexistent,endpoint=server", "dir=/nonexistent: not a directory"),
])
def test_bad_objects(text, message):
    with pytest.raises(ValueError) as e:
        parse_object(text)
    assert str(e.value) == message


def copy_of(certs: Path, tmp_path: Path, name: str) -> Path:
    directory = tmp_path / name
    shutil.copytree(certs / name, directory)
    return directory


@pytest.mark.parametrize("endpoint, missing", [
    ("server", "server-cert.pem"), ("server", "server-key.pem"), ("server", "ca-cert.pem"),
    ("client", "ca-cert.pem"), ("client", "client-key.pem"), ("client", "client-cert.pem"),
])
def test_a_missing_file_is_named(certs, tmp_path, endpoint, missing):
    directory = copy_of(certs, tmp_path, endpoint)
    (directory / missing).unlink()
    with pytest.raises(ValueError) as e:
        parse_object(spec(directory, endpoint))
    assert str(e.value) == f"{directory / missing}: No such file or directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_named(certs, tmp_path):
    directory = copy_of(certs, tmp_path, "server")
    (directory / "server-key.pem").chmod(0)
    with pytest.raises(ValueError) as e:
        parse_object(spec(directory))
    assert str(e.value) == f"{directory / 'server-key.pem'}: Permission denied"


def test_files_that_are_not_what_their_names_say(certs, tmp_path):
    directory = copy_of(certs, tmp_path, "server")
    key, cert, ca = (directory / n for n in ("server-key.pem", "server-cert.pem",
                                             "ca-cert.pem"))
    cases = [
        (ca, key.read_bytes(), f"{ca}: no PEM certificate in it"),
        (cert, b"junk\n", f"{cert}: no PEM certificate in it"),
        (key, b"junk\n", f"{key}: no PEM private key in it"),
        (key, (certs / "client/client-key.pem").read_bytes(), f"{key}: not the key of {cert}"),
    ]
    for path, content, message in cases:
        good = path.read_bytes()
        path.write_bytes(content)
        with pytest.raises(ValueError) as e:
            parse_object(spec(directory))
        assert str(e.value) == message
        path.write_bytes(good)


def test_an_encrypted_key_is_refused_without_a_prompt(certs, tmp_path):
    directory = copy_of(certs, tmp_path, "server")
    key = directory / "server-key.pem"
    plain = tmp_path / "plain-key.pem"
    key.rename(plain)
    subprocess.run(["openssl", "pkey", "-in", plain, "-out", key, "-aes-128-cbc",
                    "-passout", "pass:secret"], check=True, capture_output=True,
                   stdin=subprocess.DEVNULL)
    with pytest.raises(ValueError) as e:
        parse_object(spec(directory))
    assert str(e.value) == f"{key}: the key is encrypted; pyemu takes only unencrypted keys"


def test_what_verify_peer_off_needs(certs, tmp_path):
    """No CA to check the peer with; a client without a certificate of its own."""
    server = copy_of(certs, tmp_path, "server")
    (server / "ca-cert.pem").unlink()
    assert parse_object(spec(server, extra=",verify-peer=off")).verify_peer is False
    client = copy_of(certs, tmp_path, "anonymous")
    (client / "ca-cert.pem").unlink()
    parse_object(spec(client, "client", ",verify-peer=off"))


def test_the_object_table_and_the_parameters(certs):
    creds = Credentials("tls-test", str(certs / "client"), "client")
    with pytest.raises(ValueError) as e:
        check_parameter("tls-creds", "tls-test")
    assert str(e.value) == ("no TLS credentials with id 'tls-test' (-object tls-creds-x509,"
                            "id=tls-test,... creates them)")
    tls.add(creds)
    try:
        with pytest.raises(ValueError, match="an object with id 'tls-test' already exists"):
            tls.add(creds)
        assert check_parameter("tls-creds", "tls-test") == "tls-test"
        assert from_parameters({"tls-creds": "tls-test", "tls-hostname": "h.example"}) == \
            tls.Tls(creds, "h.example")
    finally:
        tls.remove("tls-test")
    assert from_parameters({"tls-creds": "", "tls-hostname": "h.example"}) is None
    assert check_parameter("tls-creds", "") == ""
    with pytest.raises(ValueError, match="parameter 'tls-creds' expects a string"):
        check_parameter("tls-creds", 1)
    assert check_parameter("tls-hostname", "::1") == "::1"
    with pytest.raises(ValueError, match="parameter 'tls-hostname' expects a host name"):
        check_parameter("tls-hostname", "a b")
