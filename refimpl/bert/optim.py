"""AdamW with decoupled weight decay and the linear warmup/decay learning-rate schedule.

AdamW (Loshchilov & Hutter, ICLR 2019, Alg. 2), as PyTorch's `torch.optim.AdamW` and the
Hugging Face trainers that MPCFormer uses: for each parameter w with gradient g at step t,

    m = beta1 m + (1 - beta1) g
    v = beta2 v + (1 - beta2) g^2
    w = w - lr wd w - lr (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

Weight decay is not applied to biases and LayerNorm parameters (BERT's fine-tuning recipe).
The state (m, v, t) is plain numpy and can be saved and restored for resumable training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

Params = dict[str, np.ndarray]


def decays(name: str) -> bool:
    """True if weight decay applies: not on biases or LayerNorm gamma/beta (BERT, HF `no_decay`)."""
    return not (name.endswith(".bias") or "LayerNorm" in name)


def linear_schedule(step: int, total: int, warmup: int) -> float:
    """LR multiplier: t / warmup for t < warmup, then linearly down to 0 at `total` (HF get_linear_schedule_with_warmup)."""
    if total < 1 or warmup < 0:
        raise ValueError(f"need total >= 1 and warmup >= 0, got total={total}, warmup={warmup}")
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def constant_schedule(step: int, total: int, warmup: int = 0) -> float:
    """LR multiplier 1 after an optional linear warmup (MPCFormer stage 1: constant lr)."""
    if step < warmup:
        return step / max(1, warmup)
    return 1.0


@dataclass
class AdamW:
    """AdamW with decoupled weight decay, no decay on bias/LayerNorm (Loshchilov & Hutter 2019, Alg. 2)."""

    lr: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8  # HF AdamW default for BERT fine-tuning (1e-6 in the original BERT code)
    weight_decay: float = 0.01
    t: int = 0
    m: Params = field(default_factory=dict)
    v: Params = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Reject hyperparameters outside their domain."""
        b1, b2 = self.betas
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        if self.lr < 0 or self.eps <= 0 or self.weight_decay < 0:
            raise ValueError(f"need lr >= 0, eps > 0, weight_decay >= 0; got {self.lr}, {self.eps}, {self.weight_decay}")

    def step(self, params: Params, grads: Params, lr_scale: float = 1.0) -> None:
        """One in-place update of every parameter that has a gradient; lr_scale from the schedule."""
        self.t += 1
        b1, b2 = self.betas
        lr = self.lr * lr_scale  # Python float: float32 parameters stay float32
        bc1 = 1.0 - b1 ** self.t
        bc2 = 1.0 - b2 ** self.t
        step_size = lr / bc1
        inv_sqrt_bc2 = 1.0 / math.sqrt(bc2)
        for name, g in grads.items():
            if name not in params:
                raise KeyError(f"gradient for unknown parameter {name!r}")
            w = params[name]
            if g.shape != w.shape:
                raise ValueError(f"gradient of {name!r} has shape {g.shape}, parameter {w.shape}")
            g = g.astype(w.dtype, copy=False)
            if name not in self.m:
                self.m[name] = np.zeros_like(w)
                self.v[name] = np.zeros_like(w)
            m, v = self.m[name], self.v[name]
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            if self.weight_decay and decays(name):
                w *= 1.0 - lr * self.weight_decay  # decoupled decay, before the Adam step (PyTorch order)
            denom = np.sqrt(v)
            denom *= inv_sqrt_bc2
            denom += self.eps
            w -= step_size * (m / denom)

    def state(self) -> dict[str, np.ndarray]:
        """Flat arrays for a checkpoint: `m/<name>`, `v/<name>` and the step count `t`."""
        out = {f"m/{k}": v for k, v in self.m.items()} | {f"v/{k}": v for k, v in self.v.items()}
        out["t"] = np.array([self.t], np.int64)
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Inverse of `state`."""
        if "t" not in state:
            raise KeyError("optimizer state lacks the step count 't'")
        self.t = int(np.asarray(state["t"]).reshape(-1)[0])
        self.m = {k[2:]: np.array(v) for k, v in state.items() if k.startswith("m/")}
        self.v = {k[2:]: np.array(v) for k, v in state.items() if k.startswith("v/")}
