"""refimpl: secure transformer inference, NEXUS (RNS-CKKS) and freeDiv (ABY3), from scratch.

The library, bottom up (each package's docstring says where to start reading it):
    ring/            polynomial rings in RNS form: primes, NTT, base conversion, sampling
    ckks/            RNS-CKKS; ckks/bootstrap/ its bootstrapping and the bootstrap placement
    nexus/           NEXUS's blocks; nexus/bert/ the encrypted BERT; nexus/protocol/ client and server
    bert/            the plaintext BERT, training, MPCFormer distillation, freeDiv's f(n) fit
    aby3/            three-party replicated secret sharing and freeDiv's secure BERT on it
    constants.py, csprng.py, errors.py, measure.py, progress.py: the base every package may import
The top layer runs things and is imported by none of the above: cli/, demo.py, reproduce/,
bench/, experiments/, spec/. Start with README.md and docs/; for the code, refimpl.ckks.context
(CKKS in a few calls) or refimpl.bert.pretrained (a model and a sentence).
"""

__version__ = "0.1.0"
