"""TLS credentials, spelled as QEMU's ``-object tls-creds-x509``, for migration peers.

DESIGN.md, "Trust": peers are authenticated when they are not on loopback, with TLS and
x509 certificates in QEMU's spelling (qemu-options.hx, ``-object tls-creds-x509``;
docs/system/tls.rst):

    -object tls-creds-x509,id=ID,dir=DIR,endpoint=server|client[,verify-peer=on|off]

DIR holds PEM files under QEMU's names: ``ca-cert.pem``, the CA that signed the peer's
certificate (needed unless verify-peer=off); ``server-cert.pem`` and ``server-key.pem``
for endpoint=server; ``client-cert.pem`` and ``client-key.pem`` for endpoint=client
(optional, as in QEMU, but a server that verifies its peers refuses a client without
them). verify-peer is on unless turned off, as in QEMU: a server asks for the client's
certificate and checks it against its CA; a client checks the server's certificate
against its CA and that it names the host connected to (or ``tls-hostname``).

Every file is read when the object is created, so a missing, unreadable or malformed
file is a one-line error at startup naming it. Objects live in one table per process,
as QEMU's /objects do; the migration parameter ``tls-creds`` names one by id
(``migrate_set_parameter tls-creds ID``, or ``-global migration.tls-creds=ID`` for a bare
``-incoming``). Nothing here does I/O on a connection: emu/migration/transport.py runs
the sessions these contexts make.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

TYPE = "tls-creds-x509"
ENDPOINTS = ("server", "client")
CA_CERT = "ca-cert.pem"
PAIRS = {"server": ("server-cert.pem", "server-key.pem"),
         "client": ("client-cert.pem", "client-key.pem")}
PROPERTIES = ("id", "dir", "endpoint", "verify-peer")
BOOLEANS = {"on": True, "yes": True, "true": True, "off": False, "no": False, "false": False}
# QEMU's migration parameters for TLS (migrate-set-parameters); "" means unset.
PARAMETERS = ("tls-creds", "tls-hostname")
_ID = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")  # QEMU's id_wellformed()
_HOSTNAME = re.compile(r"[A-Za-z0-9_.:-]{1,253}")  # a DNS name or an IPv4/IPv6 address
# OpenSSL reasons a TLS peer gives when the other side sent something that is not TLS.
_NOT_TLS = ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST", "UNKNOWN_PROTOCOL",
            "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG")


class _EncryptedKey(Exception):
    """Raised from the password callback: OpenSSL would otherwise prompt on the terminal."""


class Credentials:
    """One tls-creds-x509 object: its properties and the ssl contexts made from its files.

    ``wrap()`` starts a TLS session over memory buffers for one connection.
    """

    def __init__(self, id: str, directory: str, endpoint: str, verify_peer: bool = True) -> None:
        if not _ID.fullmatch(id):
            raise ValueError(f"id '{id}' is not a valid object id (a letter, then letters, "
                             "digits, '-', '.' or '_')")
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint '{endpoint}' is not one of server, client")
        if not os.path.isdir(directory):
            raise ValueError(f"dir={directory}: not a directory")
        self.id, self.directory, self.endpoint = id, directory, endpoint
        self.verify_peer = verify_peer
        # A client checks the server's name when it has one (tcp:, or tls-hostname); over
        # unix: without tls-hostname there is no name, only the chain to check (as QEMU).
        checks = (True, False) if endpoint == "client" and verify_peer else (False,)
        self._contexts = {check: self._context(check) for check in checks}

    def __repr__(self) -> str:
        return f"<{TYPE} {self.id} endpoint={self.endpoint} dir={self.directory}>"

    def check_endpoint(self, *, server_side: bool) -> None:
        """ValueError unless these credentials are for that side (listening: a server)."""
        want = "server" if server_side else "client"
        if self.endpoint != want:
            doing = "listening" if server_side else "connecting"
            raise ValueError(f"tls-creds '{self.id}' has endpoint={self.endpoint}; "
                             f"{doing} needs endpoint={want}")

    def wrap(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, *, server_side: bool,
             hostname: str = "") -> ssl.SSLObject:
        """A TLS session over the two buffers: as the server (listening) or as a client
        that expects ``hostname`` in the server's certificate ("": no name to check).
        ValueError for the wrong endpoint, or a host name TLS cannot carry."""
        self.check_endpoint(server_side=server_side)
        context = self._contexts[bool(hostname) and self.verify_peer and not server_side]
        return context.wrap_bio(incoming, outgoing, server_side=server_side,
                                server_hostname=hostname or None)

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def _context(self, check_hostname: bool) -> ssl.SSLContext:
        server = self.endpoint == "server"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.options |= ssl.OP_NO_RENEGOTIATION  # a session never needs more than one handshake
        if server:
            # No TLS 1.3 session tickets: sessions are never resumed, and a ticket the
            # client leaves unread makes its close() a reset that cuts our last reads.
            ctx.num_tickets = 0
        ctx.check_hostname = check_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED if self.verify_peer else ssl.CERT_NONE
        if self.verify_peer:
            ca = self._readable(CA_CERT)
            try:
                ctx.load_verify_locations(cafile=ca)
            except ssl.SSLError:
                raise ValueError(f"{ca}: no PEM certificate in it") from None
        cert, key = PAIRS[self.endpoint]
        if server or os.path.lexists(self._path(cert)) or os.path.lexists(self._path(key)):
            _load_pair(ctx, self._readable(cert), self._readable(key))
        return ctx

    def _readable(self, name: str) -> str:
        """The path of ``name`` in dir=, opened once so that a fault names the file."""
        path = self._path(name)
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            raise ValueError(f"{path}: {e.strerror}") from None
        return path


def _is_certificate(path: str) -> bool:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except ssl.SSLError:
        return False
    return True


def _no_password() -> bytes:
    raise _EncryptedKey


def _load_pair(ctx: ssl.SSLContext, cert: str, key: str) -> None:
    """Load a certificate and its key; ValueError names the file at fault."""
    try:
        ctx.load_cert_chain(cert, key, password=_no_password)
    except _EncryptedKey:
        raise ValueError(f"{key}: the key is encrypted; pyemu takes only unencrypted "
                         "keys") from None
    except ssl.SSLError as e:
        if e.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(f"{key}: not the key of {cert}") from None
        if not _is_certificate(cert):
            raise ValueError(f"{cert}: no PEM certificate in it") from None
        raise ValueError(f"{key}: no PEM private key in it") from None


# -- -object ------------------------------------------------------------------------------

def parse_object(spec: str) -> Credentials:
    """``tls-creds-x509,id=ID,dir=DIR,endpoint=...`` (the argument of ``-object``) as its
    Credentials, its files read; ValueError names the property or the file at fault."""
    kind, _, rest = spec.partition(",")
    if kind.removeprefix("qom-type=") != TYPE:
        raise ValueError(f"unsupported object type '{kind}' (pyemu has {TYPE})")
    props: dict[str, str] = {}
    for part in rest.split(",") if rest else []:
        key, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"'{part}': properties are KEY=VALUE")
        if key not in PROPERTIES:
            raise ValueError(f"unsupported property '{key}' (pyemu has {', '.join(PROPERTIES)})")
        if key in props:
            raise ValueError(f"property '{key}' given twice")
        props[key] = value
    for key in PROPERTIES[:3]:
        if not props.get(key):
            raise ValueError(f"property '{key}' is required")
    verify = props.get("verify-peer", "on")
    if verify not in BOOLEANS:
        raise ValueError(f"verify-peer={verify}: expected on or off")
    return Credentials(props["id"], props["dir"], props["endpoint"], BOOLEANS[verify])


# QEMU's /objects: every object of this process by id. The command line adds them; they
# live as long as the process (pyemu has no object-add/object-del).
_objects: dict[str, Credentials] = {}


def add(creds: Credentials) -> None:
    if creds.id in _objects:
        raise ValueError(f"an object with id '{creds.id}' already exists")
    _objects[creds.id] = creds


def remove(id: str) -> None:
    _objects.pop(id, None)


def find(id: str) -> Credentials:
    """The credentials of that id; ValueError names the id."""
    creds = _objects.get(id)
    if creds is None:
        raise ValueError(f"no TLS credentials with id '{id}' (-object {TYPE},id={id},... "
                         "creates them)")
    return creds


# -- the migration parameters -------------------------------------------------------------

def check_parameter(name: str, value: object) -> str:
    """``value`` if it may be set as the TLS migration parameter ``name``; ValueError
    says why not (an unknown tls-creds id, a malformed host name)."""
    if not isinstance(value, str):
        raise ValueError(f"parameter '{name}' expects a string")
    if name == "tls-creds" and value:
        find(value)
    if name == "tls-hostname" and value and not _HOSTNAME.fullmatch(value):
        raise ValueError(f"parameter '{name}' expects a host name or an address")
    return value


@dataclass(frozen=True)
class Tls:
    """TLS for the connection of one migration: the credentials, and for a client the
    name the server's certificate must carry ("": the host of the URI, if it has one)."""

    credentials: Credentials
    hostname: str = ""


def from_parameters(params: Mapping[str, object]) -> Tls | None:
    """The TLS that migration parameters ask for; None without ``tls-creds``."""
    creds = params.get("tls-creds")
    if not creds:
        return None
    return Tls(find(str(creds)), str(params.get("tls-hostname") or ""))


# -- faults -------------------------------------------------------------------------------

def describe_failure(e: ssl.SSLError) -> str:
    """What went wrong in a TLS session, in words (no OpenSSL source positions)."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"the peer's certificate is not accepted: {e.verify_message}"
    if isinstance(e, ssl.SSLEOFError):
        return "the peer closed the connection"
    reason = e.reason or ""
    if reason in _NOT_TLS:
        return "the peer does not speak TLS"
    if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
        return "the peer sent no certificate (verify-peer is on here)"
    if "ALERT_" in reason:  # the peer's verdict, e.g. TLSV1_ALERT_UNKNOWN_CA
        words = reason.split("ALERT_", 1)[1].lower().replace("_", " ")
        return f"the peer refused the session: {words}"
    return reason.lower().replace("_", " ") or str(e)
