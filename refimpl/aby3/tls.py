"""Authenticated, encrypted channels between the three parties (ours): TLS 1.3, mutual certificates.

`make_keys(out)` (the `refimpl aby3 keys --out DIR` step) writes a fresh certificate authority's
certificate `ca.pem` and, per party i, a certificate `party{i}.pem` (subject alternative name
`refimpl-aby3-party-{i}`) with its private key `party{i}.key` (mode 0600). The authority's own
private key is never written: nobody can issue a fourth certificate later. Party i needs
ca.pem, party{i}.pem and party{i}.key on its host.

Each link is mutually authenticated: the connecting party checks that the listener's
certificate names the party it meant to reach (hostname check), the listener reads the
connecting party's id from its certificate. The channel runs TLS over memory buffers
(`ssl.MemoryBIO`), so the bytes that really cross the socket (records, handshake) are counted
apart from the protocol's payload: the TLS overhead is measured, not estimated.

`PlainChannel` is the same interface without TLS: INSECURE (anyone on the wire reads the
shares), kept for the weakened configuration of the eavesdropper test.
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def party_name(i: int) -> str:
    """The name in party i's certificate (a DNS subject alternative name)."""
    return f"refimpl-aby3-party-{i}"


def make_keys(out: str | os.PathLike, days: int = 365) -> list[Path]:
    """A fresh CA and one certificate + key per party in `out`; returns the files written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "refimpl aby3 session CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    written = [out / "ca.pem"]
    written[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for i in range(3):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party_name(i))]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(party_name(i))]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        kpath = out / f"party{i}.key"
        fd = os.open(kpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        (out / f"party{i}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        written += [out / f"party{i}.pem", kpath]
    return written


@dataclass(frozen=True)
class TLSConfig:
    """Party `me`'s TLS material: the CA certificate, its own certificate and key."""

    me: int
    ca: Path
    cert: Path
    key: Path

    @classmethod
    def from_dir(cls, keys_dir: str | os.PathLike, me: int) -> "TLSConfig":
        d = Path(keys_dir)
        cfg = cls(me, d / "ca.pem", d / f"party{me}.pem", d / f"party{me}.key")
        missing = [str(p.name) for p in (cfg.ca, cfg.cert, cfg.key) if not p.is_file()]
        if missing:
            raise ValueError(f"TLS keys directory {d} lacks {', '.join(missing)}: make them with "
                             "`refimpl aby3 keys --out DIR` and give party i ca.pem, party{i}.pem, party{i}.key")
        return cfg

    def context(self, server: bool) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(self.cert, self.key)
        ctx.load_verify_locations(self.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED  # the client's certificate too: mutual authentication
        return ctx


class PlainChannel:
    """A raw TCP socket with the channel interface: INSECURE, no confidentiality, no authentication."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.raw_sent = self.raw_recv = 0

    def sendall(self, data) -> None:
        self.sock.sendall(data)
        self.raw_sent += len(data)

    def recv(self, n: int) -> bytes:
        chunk = self.sock.recv(n)
        self.raw_recv += len(chunk)
        return chunk

    def settimeout(self, t) -> None:
        self.sock.settimeout(t)

    def gettimeout(self):
        return self.sock.gettimeout()

    def peer_party(self) -> int | None:
        return None  # unauthenticated

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class TLSChannel(PlainChannel):
    """TLS over a raw socket through memory buffers; raw_sent / raw_recv count what crossed the socket."""

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None):
        super().__init__(sock)
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=server_side, server_hostname=server_hostname)
        self.handshake_bytes = 0

    def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill():
                    raise ConnectionError("the peer closed the connection during the TLS handshake") from None
        self._flush()
        self.handshake_bytes = self.raw_sent + self.raw_recv

    def _flush(self) -> None:
        data = self.out.read()
        if data:
            self.sock.sendall(data)
            self.raw_sent += len(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            self.inc.write_eof()
            return False
        self.inc.write(chunk)
        self.raw_recv += len(chunk)
        return True

    def sendall(self, data) -> None:
        view = memoryview(data)
        while len(view):
            view = view[self.obj.write(view):]
            self._flush()

    def recv(self, n: int) -> bytes:
        while True:
            try:
                data = self.obj.read(n)
                self._flush()  # a read may produce records to send (e.g. a key update)
                return data
            except ssl.SSLWantReadError:
                if not self._fill():
                    return b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def peer_party(self) -> int | None:
        """The party id named in the peer's (verified) certificate."""
        cert = self.obj.getpeercert() or {}
        for kind, name in cert.get("subjectAltName", ()):
            for i in range(3):
                if kind == "DNS" and name == party_name(i):
                    return i
        return None

    def close(self) -> None:
        try:
            self.obj.unwrap()
            self._flush()
        except (ssl.SSLError, OSError, ValueError):
            pass
        super().close()
