"""Tolerances derived from a floating-point format and the size of the computation.

Two routes to one value computed in floating point (another batch shape, another kernel,
another order of summation) differ by the rounding each accumulates, and that depends on the
format: float32's unit roundoff is 6e-8, float64's 1.1e-16. A comparison of a value that a
float32 network computed must allow for float32's, whatever the machine that wrote the test
happened to produce; a check of logic (masks, products over tokens) runs the network in
float64 so that float32 rounding does not enter at all.

The bound is Higham's (Accuracy and Stability of Numerical Algorithms, 2nd ed., Lemma 3.1 and
eq. 3.5): a sum or dot product of n terms has error at most gamma_n = n u / (1 - n u) times the
sum of the terms' magnitudes, u = eps / 2.
"""

from __future__ import annotations

import numpy as np


def unit_roundoff(dtype) -> float:
    """u = eps / 2 of a floating-point format (``np.float32``, ``torch.float64``, ...)."""
    name = str(dtype).removeprefix("torch.")
    return float(np.finfo(np.dtype(name)).eps) / 2


def gamma(n: int, dtype) -> float:
    """Higham's gamma_n = n u / (1 - n u) (Lemma 3.1): the relative error bound of n roundings."""
    nu = n * unit_roundoff(dtype)
    if nu >= 1:
        raise ValueError(f"gamma_{n} is unbounded in {dtype}")
    return nu / (1 - nu)


def logit_error(n_layer: int, n_embd: int, dtype, logit_scale: float = 1.0) -> float:
    """Bound on the error of a GPT-2 logit, in units of ``logit_scale`` (the logits' magnitude).

    Each block has four products along the residual stream (attention in and out, MLP in
    and out, the widest of width 4 n_embd), then the tied head; layer norm rescales, so the
    chain is treated as accumulating roundings rather than amplifying them.
    """
    return gamma((4 * n_layer + 1) * 4 * n_embd, dtype) * logit_scale


def sequence_probability_rtol(tokens: int, n_layer: int, n_embd: int, dtype, logit_scale: float = 1.0) -> float:
    """Relative tolerance between two computations of pi(answer) = exp(sum of ``tokens`` log-probs).

    A log-softmax moves by at most twice its logits' error; the probability of the answer
    by the sum over its tokens; two routes, each with its own rounding: 2 x 2 x tokens x
    ``logit_error``.
    """
    return 4 * tokens * logit_error(n_layer, n_embd, dtype, logit_scale)
