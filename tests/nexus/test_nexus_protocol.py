"""NEXUS client/server protocol (refimpl.nexus.protocol: wire, transport, models, server, client):
wire format, byte counts, an encrypted query in process and over TCP between two processes, and
what the server can (not) decrypt; the command line's help names the library's constants.

Settings: the `toy` stand-in model (affine, 4-piece GELU, linear classifier) on the insecure
deep toy ring toy-2^10-deep with real bootstrapping (two per query). Oracles: the float64
model of the same circuit (ToyModel.plain_logits) and refimpl.ckks.serialize's real bytes.
"""

import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from refimpl.bert.config import BertConfig
from refimpl.bert.model import init_params
from refimpl.cli import main as cli_main, nexus as nexus_cli
from refimpl.ckks import Ciphertext, Decryptor, Encoder, Encryptor, EvaluationKeys, Evaluator, Plaintext, preset
from refimpl.ckks import serialize as ser
from refimpl.ckks.bootstrap.bootstrapper import BOOTSTRAP_PRESETS
from refimpl.ckks.keys import KeyGenerator
from refimpl.nexus.bert import pack_input
from refimpl.nexus.compression import subs_elements
from refimpl.nexus.matmul import chunk_counts
from refimpl.nexus.protocol.client import Client
from refimpl.nexus.protocol.models import CALIBRATION_SENTENCES, CALIBRATION_TOKENS, RANGES_FILE, NexusBert
from refimpl.nexus.protocol.keycache import ClientKeys
from refimpl.nexus.protocol.listener import DEFAULT_SESSIONS
from refimpl.nexus.protocol.server import Server
from refimpl.nexus.protocol.tls import CERT_FILE
from refimpl.nexus.protocol.transport import DEFAULT_TIMEOUT, LocalTransport
from refimpl.nexus.protocol.wire import (
    FRAME_HEAD, SECRET_BYTES, SERVER_KINDS, TAG_BYTES, TYPES, ProtocolError, blob_kind, ciphertext_nbytes, decode_message,
    encode_message, public_key_nbytes, seal, session_key, switching_key_nbytes,
)
from refimpl.ring.sampling import RandomSource

MODEL, PARAMS = "toy", "toy-2^10-deep"
SENTENCES = ("a gripping , moving and beautifully acted film", "dull")
LOGIT_TOL = 1e-3  # bootstrapping here keeps ~25 bits; the logits sum 64 GELU outputs


# ----------------------------------------------------------------------------- wire format
@settings(max_examples=30, deadline=None)
@given(st.sampled_from(sorted(TYPES)), st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=8), max_size=4),
       st.lists(st.binary(max_size=40), max_size=4))
def test_message_roundtrip(kind, header, blobs):
    """NEXUS-PROTO-WIRE: decode(encode(m)) = m for any header and blobs."""
    assert decode_message(encode_message(kind, header, blobs)) == (kind, header, blobs)


def _frame():
    return encode_message("query", {"client_id": "c", "n": 8}, [b"abc", b"defgh"])


@pytest.mark.parametrize("mutate, msg", [
    (lambda f: b"XXXX" + f[4:], "not a refimpl NEXUS message"),
    (lambda f: f[:4] + struct.pack("<H", 9) + f[6:], "protocol version 9"),
    (lambda f: f[:-9] + bytes([f[-9] ^ 1]) + f[-8:], "checksum mismatch"),
    (lambda f: f[:10], "truncated"),
    (lambda f: f[:6] + bytes([99]) + f[7:], "unknown message type 99"),
])
def test_malformed_messages_raise(mutate, msg):
    with pytest.raises(ProtocolError, match=msg):
        decode_message(mutate(_frame()))


def test_length_fields_are_checked():
    """A blob length beyond the frame and trailing bytes are caught even with a valid CRC."""
    f = _frame()
    body = bytearray(f[:-4])
    hlen = struct.unpack_from("<I", body, 7)[0]
    struct.pack_into("<Q", body, FRAME_HEAD.size + hlen, 10**6)  # first blob claims 1 MB
    with pytest.raises(ProtocolError, match="claims 1000000 bytes"):
        decode_message(bytes(body) + struct.pack("<I", zlib.crc32(body)))
    body = bytearray(f[:-4]) + b"zz"
    with pytest.raises(ProtocolError, match="2 unexpected trailing bytes"):
        decode_message(bytes(body) + struct.pack("<I", zlib.crc32(body)))
    with pytest.raises(ProtocolError, match="expected a result message, got query"):
        decode_message(f, "result")
    err = encode_message("error", {"error": "boom"})
    with pytest.raises(ProtocolError, match="the peer reports: boom"):
        decode_message(err, "result")


def test_sizes_match_serialized_bytes():
    """The size formulas used to extrapolate bandwidth equal the real serialized bytes."""
    p = preset("toy-1024")
    kg = KeyGenerator(p, RandomSource.insecure_seeded(1))
    sk = kg.secret_key()
    pk = kg.public_key(sk)
    assert len(ser.serialize_public_key(pk)) == public_key_nbytes(p)
    assert len(ser.serialize_switching_key(kg.relin_key(sk))) == switching_key_nbytes(p)
    E, enc = Encryptor(pk, RandomSource.insecure_seeded(2)), Encoder(p)
    for lvl in range(p.L + 1):
        ct = E.encrypt(enc.encode([1.0, 2.0], level=lvl))
        assert len(ser.serialize_ciphertext(ct)) == ciphertext_nbytes(p, lvl)


# ----------------------------------------------------------------------------- in process
@pytest.fixture(scope="module")
def inproc():
    """One server, one client (keys generated once), one compressed and one slot-packed query."""
    server = Server(MODEL, PARAMS, reveal_logits=True)
    client = Client(LocalTransport(server.session()), MODEL, PARAMS, compress=True, seed=7, reveal_logits=True)
    r_comp = client.classify(SENTENCES[0])
    client.compress = False
    r_plain = client.classify(SENTENCES[0])
    return server, client, r_comp, r_plain


def test_encrypted_logits_match_the_float64_model(inproc):
    """NEXUS-PROTO-E2E: both input encodings decrypt to the plaintext circuit's logits."""
    _, client, r_comp, r_plain = inproc
    x, mask = client.model.embed(SENTENCES[0])
    ref = client.model.plain_logits(x, mask)
    for r in (r_comp, r_plain):
        np.testing.assert_allclose(r["logits"], ref, atol=LOGIT_TOL)
        assert r["label"] == client.model.labels[int(np.argmax(ref))]
        assert r["bootstraps"] == 2
        assert [b["block"] for b in r["trace"]] == ["affine", "bootstrap", "gelu", "bootstrap", "classifier"]
    assert (r_comp["input_bootstraps"], r_plain["input_bootstraps"]) == (1, 0)  # the level-1 input is bootstrapped


def test_keys_are_sent_once_per_client_and_counted(inproc):
    """NEXUS-PROTO-BYTES: keys once per client; the query bytes are the ciphertext blobs plus framing."""
    server, client, r_comp, r_plain = inproc
    p = client.params
    held = server.clients[client.client_id]
    need = server.needed_levels(r_comp["n"], True, argmax=False)  # the fixture asks for logits
    assert {g: k.level for g, k in held.galois.items()} == need  # each Galois key over Q_level P only
    assert min(need.values()) == server.compressed_level and max(need.values()) == p.L
    expected_keys = (public_key_nbytes(p) + 2 * switching_key_nbytes(p) + switching_key_nbytes(p, 0)
                     + sum(switching_key_nbytes(p, lv) for lv in need.values()))
    assert held.key_bytes == expected_keys  # public + relin + 2 encapsulation (down at level 0) + Galois
    assert r_comp["bytes"]["keys"] > expected_keys > 0
    assert r_plain["bytes"]["keys"] < 200  # second query: only the (empty) keys_done message
    assert server.compressed_level == 1  # default expand="bootstrap": two limbs on the wire
    assert r_comp["bytes"]["query_compressed"] == ciphertext_nbytes(p, 1)
    assert r_plain["bytes"]["query_uncompressed"] == ciphertext_nbytes(p, server.output_level)
    assert 0 < r_comp["bytes"]["query"] - r_comp["bytes"]["query_compressed"] < 200
    assert r_comp["bytes"]["result"] < r_comp["bytes"]["result_at_computed_level"]  # dropped to level 0
    assert r_comp["bytes"]["result"] >= 2 * ciphertext_nbytes(p, 0)


def _candidates(keys):
    """Every polynomial the server holds (public key, switching keys' b_j and a_j), and zero."""
    out = [keys.public.b, keys.public.a]
    sks = [keys.relin, keys.enc_down, keys.enc_up, *keys.galois.values()]
    for k in sks:
        for j in range(len(k.b)):
            out += [k.b[j], k.a(j)]
    return out


def _decrypt_with(poly, ct: Ciphertext):
    p = ct.params
    rows = p.q_basis(ct.level)
    m = p.ctx.add(ct.c[0], p.ctx.mul(ct.c[1], np.ascontiguousarray(poly[: ct.level + 1]), rows), rows)
    pt = Plaintext(m, ct.level, ct.scale, p)
    enc = Encoder(p)
    return enc.decode(pt).real, enc.decode_coeffs(pt)


def _cannot_decrypt(candidates, ct, truth_slots, truth_coeffs):
    for poly in [np.zeros_like(candidates[0])] + candidates:
        for sign in (1, -1):
            cand = poly if sign == 1 else (ct.params.ctx.q[: poly.shape[0], None] - poly) % ct.params.ctx.q[: poly.shape[0], None]
            slots, coeffs = _decrypt_with(cand, ct)
            err = min(np.max(np.abs(slots[: truth_slots.size] - truth_slots)),
                      np.max(np.abs(coeffs[: truth_coeffs.size] - truth_coeffs)))
            assert err > 0.5, "a polynomial the server holds decrypts the query"


def test_server_holds_nothing_that_decrypts(inproc):
    """NEXUS-PROTO-KEYS: with the client's secret key the query decrypts; with any polynomial
    the server holds (or its negative, or zero) it does not."""
    server, client, _, _ = inproc
    keys = server.clients[client.client_id]
    x, _ = client.model.embed(SENTENCES[0])
    ct = client.encryptor.encrypt(client.enc.encode(x.ravel(), level=server.output_level))
    slots, _ = _decrypt_with(client.sk.s_ntt, ct)
    assert np.max(np.abs(slots[: x.size] - x.ravel())) < 1e-6  # control: the check can pass
    _cannot_decrypt(_candidates(keys), ct, x.ravel(), x.ravel())


def test_server_refuses_non_public_blobs(inproc):
    server, client, _, _ = inproc
    s = server.session()
    secret = os.urandom(SECRET_BYTES)
    setup = decode_message(s.handle(encode_message("hello", {"model": MODEL, "params": PARAMS, "n": 8, "mask": [1] * 8,
                                                             "client_secret": secret.hex()})), "setup")[1]
    key = session_key(secret, bytes.fromhex(setup["nonce"]))
    ct = ser.serialize_ciphertext(client.encryptor.encrypt(client.enc.encode([1.0])))
    for seq, (role, blob) in enumerate((("public", ct), ("galois", ser.serialize_public_key(client.pk)))):
        reply = s.handle(seal(encode_message("key", {"role": role, "element": 3}, [blob]), key, seq))
        with pytest.raises(ProtocolError, match="the server takes only public key material"):
            decode_message(reply, "setup")
    reply = server.session().handle(encode_message("hello", {"model": "other", "params": PARAMS, "n": 8, "mask": []}))
    with pytest.raises(ProtocolError, match="this server runs model 'toy'"):
        decode_message(reply, "setup")
    reply = server.session().handle(b"garbage-frame-of-some-length")
    with pytest.raises(ProtocolError, match="not a refimpl NEXUS message"):
        decode_message(reply, "setup")


# ----------------------------------------------------------------------------- two processes
def test_two_processes_over_loopback(tmp_path, inproc):
    """NEXUS-PROTO-TCP: `refimpl nexus serve` and `refimpl nexus query` as two processes; the
    label equals the in-process one; every blob the server received is public material, and
    nothing in it decrypts the query."""
    _, client, r_comp, _ = inproc
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    rec, out_json = tmp_path / "received", tmp_path / "out.json"
    cmd = [sys.executable, "-m", "refimpl", "nexus"]
    common = ["--model", MODEL, "--params", PARAMS]
    assert cli_main(["nexus", "keys", "--out", str(tmp_path / "keys")]) == 0
    srv = subprocess.Popen(cmd + ["serve", "--port", "0", "--record-dir", str(rec), "--max-connections", "1",
                                  "--tls-dir", str(tmp_path / "keys"), "--reveal-logits"] + common,
                           stdout=subprocess.PIPE, text=True, env=env)
    try:
        first = srv.stdout.readline()
        assert first.startswith("INSECURE"), first
        line = first
        while not line.startswith("listening on"):
            line = srv.stdout.readline()
            assert line, "server exited before listening"
        port = int(line.rsplit(":", 1)[1])
        q = subprocess.run(cmd + ["query", "--port", str(port), "--sentence", SENTENCES[0], "--json", str(out_json),
                                  "--insecure-seed", "11", "--server-cert", str(tmp_path / "keys" / "server.pem"),
                                  "--reveal-logits"] + common, capture_output=True, text=True, env=env, timeout=300)
        assert q.returncode == 0, q.stderr
        assert srv.wait(timeout=60) == 0
    finally:
        if srv.poll() is None:
            srv.kill()
    lines = q.stdout.splitlines()
    assert lines[0].startswith("INSECURE")
    assert lines[1].split("\t")[0] == r_comp["label"]
    res = json.loads(out_json.read_text())[0]
    np.testing.assert_allclose(res["logits"], r_comp["logits"], atol=2 * LOGIT_TOL)

    # what the server process received
    frames = [decode_message(f.read_bytes()) for f in sorted(rec.iterdir())]
    kinds = {blob_kind(b) for _, _, blobs in frames for b in blobs}
    assert kinds <= set(SERVER_KINDS) and "ciphertext" in kinds
    p = client.params
    keys = ClientKeys()
    for kind, h, blobs in frames:
        if kind == "key":
            if h["role"] == "public":
                keys.public = ser.deserialize_public_key(blobs[0], p)
            else:
                k = ser.deserialize_switching_key(blobs[0], p)
                if h["role"] == "galois":
                    keys.galois[h["element"]] = k
                else:
                    setattr(keys, h["role"], k)
    received = sum(len(f.read_bytes()) + 8 + TAG_BYTES for f in rec.iterdir())  # recorded after the tag's check
    assert received == sum(res["bytes"][k] for k in ("keys", "query")) + sum(
        len(f.read_bytes()) + 8 + TAG_BYTES for f in rec.iterdir() if "hello" in f.name)  # HELLO: control, not keys
    (query,) = [blobs for kind, _, blobs in frames if kind == "query"]
    ct = ser.deserialize_ciphertext(query[0], p)
    x, _ = client.model.embed(SENTENCES[0])
    _cannot_decrypt(_candidates(keys), ct, x.ravel(), x.ravel())


def test_compressed_input_lands_in_the_bert_layout():
    """NEXUS-PROTO-COMP: the server turns the compressed n x d input (NEXUS Alg. 5) into exactly
    the slot vectors of refimpl.nexus.bert.pack_input (broadcast x mask products, one level)."""
    cfg = BertConfig(vocab_size=50, hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128,
                     max_position_embeddings=16, num_labels=2)
    params = init_params(cfg, np.random.default_rng(0))
    model = NexusBert("tiny", cfg, params, lambda s: (np.arange(1, 7), np.ones(6, dtype=np.int64)))
    server = Server(model, "toy-2^10-dense", expand="direct")
    client = Client(LocalTransport(server.session()), model, "toy-2^10-dense", seed=3)
    p = server.params
    x, _ = model.embed("six tokens")
    layout = model.layout(6, p.slots)
    setup = {"chunks": chunk_counts(x.size, p.N), "compressed_level": server.compressed_level,
             "input_level": server.output_level}
    comp, packed = client.encrypt_query(x, layout, setup)
    assert len(comp) == 1 and len(packed) == len(pack_input(x, layout)) == 2  # 384 values: 1 ct vs 2
    kg = client.kg
    ev = Evaluator(p, EvaluationKeys(galois={g: kg.galois_key(client.sk, g) for g in subs_elements(p.N, 512)}))
    cts = server.session().expand_query(ev, [ser.deserialize_ciphertext(b, p) for b in comp], layout, 6)
    dec = Decryptor(client.sk)
    for ct, want in zip(cts, pack_input(x, layout)):
        assert ct.level == server.output_level and ct.scale == p.scale
        np.testing.assert_allclose(client.enc.decode(dec.decrypt(ct)).real, want, atol=1e-6)


def test_cli_help_names_the_library_constants(capsys):
    """`refimpl nexus` names the presets, the ranges file and the calibration sizes without importing
    the library (so that `refimpl --help` stays instant): the copies equal the library's."""
    assert nexus_cli.PRESET_NAMES == tuple(BOOTSTRAP_PRESETS)
    assert nexus_cli.RANGES_FILE == RANGES_FILE
    assert (nexus_cli.CALIBRATION_SENTENCES, nexus_cli.CALIBRATION_TOKENS) == (CALIBRATION_SENTENCES, CALIBRATION_TOKENS)
    with pytest.raises(SystemExit):
        cli_main(["nexus", "serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--record-dir" in out and "128-2^16-dense19" in out and RANGES_FILE in out
    assert (nexus_cli.DEFAULT_TIMEOUT, nexus_cli.DEFAULT_SESSIONS, nexus_cli.CERT_FILE) == (
        DEFAULT_TIMEOUT, DEFAULT_SESSIONS, CERT_FILE)
    assert cli_main(["nexus", "query", "--port", "1", "--sentence", "x", "--params", "nonsense", "--insecure-no-tls"]) == 2
    assert "unknown parameter set 'nonsense'" in capsys.readouterr().err
