"""Tests written for the mutants of `python tests/mutation.py sample ckks` that survived (docs/testing.md).
Expected values are computed independently (Python integer arithmetic, the documented messages)."""

import math

import numpy as np
import pytest

from refimpl.ckks import Encoder, Encryptor, Evaluator, KeyGenerator, Parameters
from refimpl.ckks.errors import ParameterError, ParameterMismatchError
from refimpl.ckks.keys import SwitchingKey
from refimpl.ring.sampling import RandomSource


@pytest.mark.parametrize("levels, log_q0, log_qi, log_p", [(6, 60, 40, 60), (4, 50, 30, 45), (0, 40, 40, 40)])
def test_create_with_dnum_splits_the_chain_into_equal_consecutive_digits(levels, log_q0, log_qi, log_p):
    """CKKS-PARAMS: with dnum given, the primes q_0..q_L fall into consecutive digits of ceil((L+1)/dnum)
    primes (the last one shorter), and num_p=None takes the fewest special primes whose nominal bits
    cover the widest digit's."""
    n = levels + 1
    nominal = [log_q0] + [log_qi] * levels
    for dnum in range(1, n + 1):
        p = Parameters.create(N=16, levels=levels, log_q0=log_q0, log_qi=log_qi, log_p=log_p, dnum=dnum, insecure=True)
        size = math.ceil(n / dnum)
        want = [list(range(i, min(i + size, n))) for i in range(0, n, size)]
        assert [list(d) for d in p.digits] == want
        widest = max(sum(nominal[i] for i in d) for d in want)
        assert len(p.p) == max(1, math.ceil(widest / log_p))


def test_switching_key_level_out_of_range_is_refused_with_the_range():
    """CKKS-CHECK-PARAMS: a switching key for a level outside [0, L] is refused, naming the range and the level."""
    p = Parameters.create(N=16, levels=3, insecure=True)
    for level in (-1, p.L + 1):
        with pytest.raises(ParameterError, match=rf"level must be in \[0, {p.L}\], got {level}"):
            SwitchingKey(b=(), a_seeds=(), params=p, level=level)


def test_binary_operations_name_the_operand_of_other_parameters():
    """CKKS-CHECK-PARAMS: add and multiply with one operand of another parameter set name which side it is."""
    def kit(N, seed):
        p = Parameters.create(N=N, levels=2, insecure=True)
        kg = KeyGenerator(p, RandomSource.insecure_seeded(seed))
        enc = Encryptor(kg.public_key(kg.secret_key()), RandomSource.insecure_seeded(seed + 1))
        return p, enc.encrypt(Encoder(p).encode(np.full(p.slots, 0.5)))

    p, mine = kit(32, 1)
    _, theirs = kit(16, 3)
    ev = Evaluator(p)
    for op in (ev.add, ev.multiply):
        with pytest.raises(ParameterMismatchError, match="right operand"):
            op(mine, theirs)
        with pytest.raises(ParameterMismatchError, match="left operand"):
            op(theirs, mine)
