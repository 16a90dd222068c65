"""Bad input on the facades (ours): each raises one error that names what was expected, at the call.

Before these checks, a float step became a silent rotation by its integer part, a raw ABY3 input
of fractions was silently truncated, a window smaller than a row gave key lists whose fold mixes
rows, and a non-ciphertext operand or a missing vocab.txt ended in an AttributeError or a
tokenizers exception deep inside.
"""

import json
import shutil

import numpy as np
import pytest

from refimpl.aby3 import arith, run
from refimpl.bert import load_model
from refimpl.bert.shipped import available, model_dir
from refimpl.ckks import CKKSError, Context, ParameterError
from refimpl.nexus import BlockContext, keys_for

SHIPPED = "sst2-small-softmax-gelu"


@pytest.fixture(scope="module")
def ctx():
    return Context.create("toy-1024", rotations=[1], insecure_seed=1)


def test_ckks_context_refuses_foreign_parameters_and_steps(ctx):
    """PROJ-FACADE-CKKS: parameters of the wrong type, fractional or string rotation steps are refused by name."""
    with pytest.raises(ParameterError, match="preset name .* or a Parameters"):
        Context.create(13)
    with pytest.raises(ParameterError, match="must be an integer, got 1.5"):
        Context.create("toy-1024", rotations=[1.5], insecure_seed=1)
    with pytest.raises(ParameterError, match="list of integer steps"):
        Context.create("toy-1024", rotations="3", insecure_seed=1)
    with pytest.raises(ParameterError, match="insecure_seed must be an integer"):
        Context.create("toy-1024", insecure_seed="a")
    ct = ctx.encrypt([1.0, 2.0])
    with pytest.raises(ParameterError, match="must be an integer, got 1.5"):
        ctx.rotate(ct, 1.5)
    assert np.allclose(ctx.decrypt(ctx.rotate(ct, np.int64(1)))[:1], [2.0], atol=1e-6)


def test_ckks_context_refuses_what_is_not_numbers_or_ciphertexts(ctx):
    """PROJ-FACADE-CKKS: strings as values or constants, plain arrays as operands: one CKKSError naming the expected type."""
    ct = ctx.encrypt([0.5])
    with pytest.raises(ParameterError, match="values must be numbers"):
        ctx.encrypt("abc")
    with pytest.raises(ParameterError, match="scalar or a vector"):
        ctx.encrypt(np.ones((2, 3)))
    with pytest.raises(ParameterError, match="constant must be numbers"):
        ctx.multiply(ct, "2")
    for op in (lambda: ctx.add(ct, np.ones(4)), lambda: ctx.add(ct, 3.0), lambda: ctx.decrypt(np.ones(4))):
        with pytest.raises(CKKSError, match="expected a refimpl.ckks Ciphertext"):
            op()
    with pytest.raises(CKKSError, match="scale is a finite number >= 1"):
        ctx.encrypt([0.5], scale=-5.0)


def test_nexus_keys_refuse_windows_that_cannot_hold_a_row():
    """PROJ-FACADE-NEXUS: a window below 2n (and not n), a window that is not a power of two, a fractional n,
    a layout that does not fit the ring."""
    with pytest.raises(ValueError, match="cannot hold a row of 8"):
        keys_for("softmax", 8, window=4)
    with pytest.raises(ValueError, match="n must be an integer"):
        keys_for("argmax", 4.0)
    assert keys_for("layernorm", 8, window=16).rotations == (1, 2, 4, -8)
    for w in (12, 24, 0, -8):
        with pytest.raises(ValueError, match=f"window must be a power of two, got {w}"):
            keys_for("softmax", 4, window=w)
    with pytest.raises(ValueError, match="do not tile the 512 slots"):
        BlockContext.create("softmax", n=4096, window=8192, insecure_seed=1)
    with pytest.raises(ValueError, match="fill all 512 slots"):
        BlockContext.create("argmax", n=4, insecure_seed=1)


def test_aby3_run_refuses_owners_inputs_and_outputs_it_cannot_use():
    """PROJ-FACADE-ABY3: owners outside 0..2, fractions with raw=True, strings, and fn results that are not
    arithmetic shares are refused before (or instead of) a deep error or a silently truncated input."""
    a = np.ones((2, 2))
    with pytest.raises(ValueError, match="owners must be parties 0, 1 or 2"):
        run(arith.fxp_matmul, a, a, owners=(0, 5), insecure_seed=1)
    with pytest.raises(ValueError, match="integer ring elements"):
        run(arith.add, np.array([1.5]), np.array([2]), raw=True, insecure_seed=1)
    with pytest.raises(ValueError, match="input 0 must hold real numbers"):
        run(arith.add, "ab", a, insecure_seed=1)
    with pytest.raises(TypeError, match="must return an AShare"):
        run(lambda p, x: x.a, a, insecure_seed=1)
    with pytest.raises(TypeError, match="fn must be a protocol"):
        run(3, a)
    out, _ = run(arith.add, np.array([5], np.uint64), np.array([7], np.uint64), raw=True, insecure_seed=1)
    assert out.tolist() == [12]


@pytest.mark.skipif(not available(SHIPPED), reason="the shipped model is not built")
def test_load_model_refuses_bad_arguments_and_incomplete_directories(tmp_path):
    """PROJ-FACADE-BERT: a non-path argument, a directory without vocab.txt, a config that does not fit the
    weights: each refused by load_model itself, not at the first sentence or inside the tokenizer."""
    with pytest.raises(TypeError, match="shipped model's name or a model directory"):
        load_model(None)
    no_vocab = tmp_path / "no_vocab"
    shutil.copytree(model_dir(SHIPPED), no_vocab)
    (no_vocab / "vocab.txt").unlink()
    with pytest.raises(FileNotFoundError, match="no vocab.txt"):
        load_model(no_vocab)
    three = tmp_path / "three"
    shutil.copytree(model_dir(SHIPPED), three)
    cfg = json.loads((three / "config.json").read_text())
    cfg["num_labels"] = 3
    for k in ("id2label", "label2id"):
        cfg.pop(k, None)
    (three / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="classifier.weight"):
        load_model(three)
