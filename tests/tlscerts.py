"""Certificates for TLS tests, made on the spot with the ``openssl`` command.

``make_certificates(root)`` lays out directories as QEMU's ``-object
tls-creds-x509,dir=`` expects them (ca-cert.pem, server-*.pem, client-*.pem):

    server/   the CA, and a server certificate for localhost, 127.0.0.1 and ::1
    client/   the CA, and a client certificate the CA signed
    rogue/    the CA (so it trusts the server), and a client certificate another CA signed
    anonymous/  the CA alone: a client without a certificate
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    _openssl("req", "-x509", *KEY, "-keyout", key, "-out", cert, "-days", "2",
             "-subj", f"/CN=pyemu test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def _leaf(ca: tuple[Path, Path], cert: Path, key: Path, name: str, *extensions: str) -> None:
    _openssl("req", "-x509", "-CA", ca[0], "-CAkey", ca[1], *KEY, "-keyout", key,
             "-out", cert, "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:FALSE",
             *(arg for ext in extensions for arg in ("-addext", ext)))


def make_certificates(root: Path) -> Path:
    """The directories above under ``root``; fails the test where openssl is missing."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make certificates (apt-get install "
                    "openssl)")
    cas = root / "cas"
    cas.mkdir(parents=True)
    ca, rogue_ca = _ca(cas, "ca"), _ca(cas, "rogue-ca")
    for name in ("server", "client", "rogue", "anonymous"):
        (root / name).mkdir()
        shutil.copy(ca[0], root / name / "ca-cert.pem")
    _leaf(ca, root / "server/server-cert.pem", root / "server/server-key.pem", "localhost",
          "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1", "extendedKeyUsage=serverAuth")
    _leaf(ca, root / "client/client-cert.pem", root / "client/client-key.pem", "source",
          "extendedKeyUsage=clientAuth")
    _leaf(rogue_ca, root / "rogue/client-cert.pem", root / "rogue/client-key.pem", "source",
          "extendedKeyUsage=clientAuth")
    return root
