"""Progress reports (refimpl.progress) from the library and their bars on stderr (refimpl.cli.progress).

The library calls progress(what, done, total) at step boundaries and never prints; the top layer
draws bars only on a terminal (or REFIMPL_PROGRESS=1) and never with -q.
"""

import io
import sys

import numpy as np

from refimpl.bert.config import BertConfig
from refimpl.bert.model import init_params
from refimpl.ckks import Encoder, Encryptor, Evaluator, KeyGenerator
from refimpl.ckks.bootstrap import bootstrapping_context
from refimpl.ckks.bootstrap.bootstrapper import bootstrap_parameters
from refimpl.ckks.bootstrap.oracle import OracleBootstrapper
from refimpl.ckks.params import preset
from refimpl.cli.progress import Bars, progress_enabled
from refimpl.nexus import bert as nb
from refimpl.ring.sampling import RandomSource


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, what, done, total):
        self.calls.append((what, done, total))

    def task(self, name):
        return [c for c in self.calls if c[0].partition(": ")[0] == name]


def check_task(calls, total):
    """Steps of one task: 0 .. total, never backwards, the last call done == total."""
    assert calls and all(t == total for _, _, t in calls)
    done = [d for _, d, _ in calls]
    assert done == sorted(done) and done[0] == 0 and done[-1] == total


def test_evaluation_keys_report_each_key():
    kg = KeyGenerator(preset("toy-1024"), RandomSource.insecure_seeded(0))
    rec = Recorder()
    keys = kg.evaluation_keys(kg.secret_key(), rotations=[1, 2, 3], progress=rec)
    assert len(keys.galois) == 3
    check_task(rec.task("evaluation keys"), 4)  # relinearization + three Galois keys
    assert sum("Galois" in w for w, _, _ in rec.calls) == 3


def test_each_bootstrap_reports_its_four_stages():
    rec = Recorder()
    ctx = bootstrapping_context("toy-2^10-dense", insecure_seed=1, progress=rec)
    check_task(rec.task("evaluation keys"), len(ctx.evaluator.keys.galois) + 1)
    rec.calls.clear()
    ctx.bootstrapper.progress = rec
    x = np.linspace(-0.5, 0.5, ctx.slots)
    out = ctx.decrypt(ctx.bootstrap(ctx.evaluator.drop_level(ctx.encrypt(x), 0)))
    assert np.max(np.abs(out - x)) < 1e-2
    check_task(rec.task("bootstrap"), 4)
    stages = [w.partition(": ")[2] for w, d, _ in rec.calls if d < 4]
    assert stages == ["ModRaise", "CoeffsToSlots", "EvalMod", "SlotsToCoeffs"]


def test_encrypted_forward_reports_every_piece_of_the_plan():
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=16, attention="2quad-freediv", activation="quad")
    model = nb.NexusModel(cfg, init_params(cfg, np.random.default_rng(1), dtype=np.float64))
    ids, mask = np.array([3, 7, 11, 2]), np.array([1, 1, 1, 0])
    params, _ = bootstrap_parameters(1024, levels_after=19, encapsulation_h=32, num_p=3, insecure=True)
    kg = KeyGenerator(params, RandomSource.insecure_seeded(3))
    sk = kg.secret_key()
    ev = Evaluator(params, kg.evaluation_keys(sk, rotations=nb.rotation_steps(cfg, len(ids), params.slots)))
    bts = OracleBootstrapper(sk, output_level=19, rng=RandomSource.insecure_seeded(5))
    lay = nb.input_layout(cfg, len(ids), params.slots)
    enc, E = Encoder(params), Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(4))
    x = nb.client_embed(cfg, model.params, ids, mask)
    cts = [E.encrypt(enc.encode(v, level=bts.output_level)) for v in nb.pack_input(x, lay)]
    rec, trace = Recorder(), []
    nb.encrypted_forward(ev, bts, model, cts, len(ids), mask, trace=trace, progress=rec)
    check_task(rec.calls, len(trace))
    # each call names the piece that runs next: the trace's blocks in order
    assert [w.partition(": ")[2] for w, d, t in rec.calls if d < t] == [t["block"] for t in trace]


def test_bars_draw_on_stderr_and_close_when_done(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    bars = Bars(enabled=True)
    bars("bootstrap: ModRaise", 0, 4)
    bars("bootstrap: EvalMod", 2, 4)
    assert "bootstrap" in bars.bars and bars.bars["bootstrap"].n == 2
    bars("bootstrap", 4, 4)
    assert not bars.bars and "bootstrap" in err.getvalue() and "ModRaise" in err.getvalue()  # later redraws: rate-limited
    quiet = io.StringIO()
    monkeypatch.setattr(sys, "stderr", quiet)
    off = Bars(enabled=False)
    off("bootstrap: ModRaise", 0, 4)
    assert not off.bars and quiet.getvalue() == ""


def test_progress_only_on_a_terminal_and_never_with_quiet(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.delenv("REFIMPL_PROGRESS", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    assert not progress_enabled()
    monkeypatch.setenv("REFIMPL_PROGRESS", "1")
    assert progress_enabled()
    monkeypatch.setenv("TQDM_DISABLE", "1")  # what `refimpl -q` sets
    assert not progress_enabled()
