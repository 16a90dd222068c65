"""TLS for the NEXUS server and client (ours): a self-signed server certificate, TLS 1.3.

`make_server_keys(out)` (the `refimpl nexus keys --out DIR` step) writes `server.pem` (a
self-signed certificate for the name SERVER_NAME) and `server.key` (its private key, mode
0600). The server needs both; each client needs `server.pem` only, and checks that the server
it reaches holds the matching key. TLS keeps the client's secret (which its id and every MAC
derive from, refimpl.nexus.protocol.wire) and the frames away from anyone on the wire.
"""

from __future__ import annotations

import datetime
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .wire import ProtocolError

SERVER_NAME = "refimpl-nexus-server"  # the certificate's DNS name; the client checks it whatever the address
CERT_FILE, KEY_FILE = "server.pem", "server.key"


def make_server_keys(out: str | os.PathLike, days: int = 365) -> list[Path]:
    """A fresh self-signed server certificate and its key in `out`; returns the files written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    kpath = out / KEY_FILE
    fd = os.open(kpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    (out / CERT_FILE).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return [out / CERT_FILE, kpath]


def server_context(keys_dir: str | os.PathLike) -> ssl.SSLContext:
    """The server's TLS 1.3 context from `keys_dir` (server.pem, server.key)."""
    d = Path(keys_dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        ctx.load_cert_chain(d / CERT_FILE, d / KEY_FILE)
    except (OSError, ssl.SSLError) as e:
        raise ProtocolError(f"{d}: no usable {CERT_FILE} and {KEY_FILE} ({e}); make them with "
                            "`refimpl nexus keys --out DIR`") from None
    return ctx


def client_context(server_cert: str | os.PathLike) -> ssl.SSLContext:
    """The client's TLS 1.3 context trusting exactly the server certificate `server_cert`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        ctx.load_verify_locations(cafile=str(server_cert))
    except (OSError, ssl.SSLError) as e:
        raise ProtocolError(f"{server_cert}: not a usable server certificate ({e}); copy the server's "
                            f"{CERT_FILE} made by `refimpl nexus keys`") from None
    return ctx
