"""NEXUS-SEC-WIRE: every malformed frame, header, blob and TCP stream of tests/security/wire_fuzz.py
gets a clean error from the server (never an exception out of the session, a server-side bug
report or a hang), and the server keeps serving; against a weakened server that decodes frames
without their checks, the judge sees the failures."""

import json

import pytest

from refimpl.nexus.protocol import server as server_module
from refimpl.nexus.protocol.server import Server
from .wire_fuzz import MODEL, PARAMS, Material, run_session_case, run_tcp_cases, session_cases


@pytest.fixture(scope="module")
def server():
    return Server(MODEL, PARAMS)


@pytest.fixture(scope="module")
def cases():
    return session_cases(Material())


def test_every_malformed_frame_is_a_clean_error(server, cases):
    results = [(c[:2], run_session_case(server, c[2])) for c in cases]
    bad = [(name, r) for name, r in results if r[0] != "clean"]
    assert len(results) > 100 and not bad, bad


def test_tcp_streams_are_refused_and_the_server_keeps_serving(server):
    rows = run_tcp_cases(server, timeout=0.5)
    assert len(rows) >= 7 and all(r["outcome"] == "clean" for r in rows), rows


def _naive_decode(data, expect=None, max_header=None):
    """The weakened decoder: no magic, length or CRC checks, the header trusted."""
    hlen = int.from_bytes(data[7:11], "little")
    return {1: "hello", 3: "key", 4: "keys_done", 5: "query"}[data[6]], json.loads(data[15:15 + hlen]), []


def test_judge_sees_a_weakened_decoder_fail(server, cases, monkeypatch):
    monkeypatch.setattr(server_module, "decode_message", _naive_decode)
    outcomes = [run_session_case(server, c[2])[0] for c in cases if c[0] == "wire frames"]
    assert outcomes.count("traceback") >= 10
