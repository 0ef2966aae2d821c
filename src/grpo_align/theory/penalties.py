"""The penalty estimators, one record each (THEORY.md section 3, eqs. 10.3 and 10.7).

Every property of a penalty that the engine asks about lives here, on its record, instead
of being a comparison of its name:

    name  D(x), x = log pi/pi_ref  phi(o): grad E[D] =      psi(x)       repels    in the  stationary
                                   sum_o phi grad pi(o)     (eq. 10.3)   boundary  reward  map
    k3    exp(-x) + x - 1          1 - pi_ref/pi            1 - exp(-x)  yes       yes     reciprocal
    k2    x^2 / 2                  log(pi/pi_ref)           x            yes       yes     exponential
    kl    rho x                    log(pi/pi_ref) + 1       x + 1        yes       no      exponential
    k1    x                        1                        1            no        yes     (none)
    abs   |x|                      sign(log(pi/pi_ref))     sign(x)      no        no      (none)

phi(o) is psi evaluated at the output's log-ratio: at theta = theta_old the gradient of
E_{pi_old}[D] is sum_o pi(o) psi(x(o)) grad log pi(o) = sum_o psi(x(o)) grad pi(o). The two
are kept as separate functions because the engine evaluates them differently (phi from the
ratio pi_ref/pi for k3, psi from the log-ratio) and their last bits are part of its results.

This module is numpy only: the torch mirrors of ``value`` in ``training.loss`` are tested
against it (``tests/test_penalties.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np

from grpo_align.errors import InputError

__all__ = ["PENALTIES", "Penalty", "PenaltyRecord", "StationaryMap", "penalty"]

#: The name of a penalty estimator: the type of ``GRPO.penalty``.
Penalty = Literal["k3", "k2", "k1", "abs", "kl"]

#: The closed form of a stationary policy given P_G (THEORY.md section 5):
#: "reciprocal" pi(o) = pi_ref(o) / (1 - (P_G(o) - c)/beta) (k3);
#: "exponential" pi(o) proportional to pi_ref(o) exp(P_G(o)/beta) (k2, kl).
StationaryMap = Literal["reciprocal", "exponential"]


@dataclass(frozen=True, eq=False)
class PenaltyRecord:
    """One penalty estimator: its formulas and the properties the engine branches on.

    Attributes
    ----------
    name : Penalty
    section : str
        Where THEORY.md states it.
    value : callable (x, rho) -> D
        The per-token (or per-output) penalty D as a function of x = log pi/pi_ref and the
        importance ratio rho = pi_theta/pi_old (read by ``kl`` only; 1 at theta = theta_old).
        For k1, k2 and k3 this is also k(x) of the penalty in the reward (eq. 10.7).
    phi : callable (pi, ref) -> phi
        The coefficient of grad pi(o) in the gradient of the expected penalty (section 3),
        for pi > 0. An output off pi_ref's support (ref = 0) reads its log-ratio as log pi.
    psi : callable (x) -> psi
        A token's penalty has gradient psi(x) grad log pi(t | u) at theta = theta_old
        (eq. 10.3); phi(o) = psi(x(o)).
    regularises : bool
        Whether the penalty in the loss pulls toward pi_ref at all (phi not constant; k1's
        phi = 1 sums to 0 against sum_o grad pi(o) = 0, section 3).
    repels_boundary : bool
        Whether phi -> -inf as pi(o) -> 0 < pi_ref(o): an infinite restoring force, so with
        beta > 0 in the loss every stationary policy of bounded P_G is interior (section 11,
        "Boundary policies"; the faces of 10.6).
    smooth : bool
        Whether phi is a function of pi (False for abs: the stationary conditions are
        set-valued, eq. 10.16; solved by the proximal / forward-backward solvers, stability
        not computed).
    in_reward : bool
        Whether it may be put in the reward (``penalty_in="reward"``, eq. 10.7).
    stationary_map : StationaryMap or None
        The closed form of the stationary policy given P_G (section 5), where one exists.
    phi_offset : float
        The constant a in phi = a + s u, u = pi_ref/pi (k3, s = -1) or log(pi_ref/pi)
        (k2, kl, s = -1): 1 for k3 and kl, 0 for k2 (k1: phi = 1; abs: 0, unused).
    monotone : bool
        Whether D(x) (at rho = 1) is strictly increasing in x (k1, kl): in the reward, equal
        penalties then mean equal log-ratios, so outputs with one reward keep their reference
        ratios at a stationary policy (k2 and k3 are not: x and -x, or two x of one k3 value,
        tie too; ``stationary.reward_tie``).
    """

    name: Penalty
    section: str
    value: Callable[..., np.ndarray]
    phi: Callable[[np.ndarray, np.ndarray], np.ndarray]
    psi: Callable[[np.ndarray], np.ndarray]
    regularises: bool
    repels_boundary: bool
    smooth: bool
    in_reward: bool
    stationary_map: StationaryMap | None
    phi_offset: float
    monotone: bool

    def __repr__(self) -> str:
        return f"PenaltyRecord({self.name!r})"


def _log_ratio(pi: np.ndarray, ref: np.ndarray) -> np.ndarray:
    # ref = 0 (an output off pi_ref's support) reads as 1: the convention the residual had
    return np.log(pi / np.where(ref > 0, ref, 1.0))


# ---------------------------------------------------------------- k3 (THEORY.md section 3)
def _k3_value(x: np.ndarray, rho: np.ndarray | float = 1.0) -> np.ndarray:
    """k3: D = exp(-x) + x - 1 = pi_ref/pi - log(pi_ref/pi) - 1 (THEORY.md section 3; eq.
    10.7 in the reward), as expm1(-x) + x (no cancellation near x = 0)."""
    x = np.asarray(x, dtype=float)
    with np.errstate(over="ignore"):
        return np.expm1(-x) + x


def _k3_phi(pi: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """k3: phi = 1 - pi_ref/pi (THEORY.md section 3): the reverse KL's gradient."""
    return 1.0 - ref / pi


def _k3_psi(x: np.ndarray) -> np.ndarray:
    """k3: psi = 1 - exp(-x) (THEORY.md eq. 10.3)."""
    with np.errstate(over="ignore"):
        return -np.expm1(-x)


# ---------------------------------------------------------------- k2
def _k2_value(x: np.ndarray, rho: np.ndarray | float = 1.0) -> np.ndarray:
    """k2: D = x^2 / 2 (THEORY.md section 3; eq. 10.7 in the reward)."""
    x = np.asarray(x, dtype=float)
    return 0.5 * x * x


def _k2_phi(pi: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """k2: phi = log(pi/pi_ref) (THEORY.md section 3): the direct KL's gradient."""
    return _log_ratio(pi, ref)


def _k2_psi(x: np.ndarray) -> np.ndarray:
    """k2: psi = x (THEORY.md eq. 10.3); also TRL's bias-corrected k3 (rho k3)."""
    return np.asarray(x, dtype=float)


# ---------------------------------------------------------------- kl (rho x)
def _kl_value(x: np.ndarray, rho: np.ndarray | float = 1.0) -> np.ndarray:
    """kl: D = rho x, importance-weighted: its expectation over pi_old is the exact direct
    KL(pi_theta || pi_ref) (THEORY.md section 3 and eq. 10.3)."""
    return rho * np.asarray(x, dtype=float)


def _kl_phi(pi: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """kl: phi = log(pi/pi_ref) + 1 (THEORY.md eq. 10.3 at one token): the direct KL's
    gradient plus a constant, which sum_o grad pi(o) = 0 removes."""
    return _log_ratio(pi, ref) + 1.0


def _kl_psi(x: np.ndarray) -> np.ndarray:
    """kl: psi = x + 1 (THEORY.md eq. 10.3)."""
    return x + 1.0


# ---------------------------------------------------------------- k1
def _k1_value(x: np.ndarray, rho: np.ndarray | float = 1.0) -> np.ndarray:
    """k1: D = x (THEORY.md section 3; eq. 10.7 in the reward)."""
    return np.asarray(x, dtype=float)


def _k1_phi(pi: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """k1: phi = 1 (THEORY.md section 3): in the loss it regularises nothing."""
    return np.ones_like(pi)


def _k1_psi(x: np.ndarray) -> np.ndarray:
    """k1: psi = 1 (THEORY.md eq. 10.3)."""
    return np.ones_like(x)


# ---------------------------------------------------------------- abs
def _abs_value(x: np.ndarray, rho: np.ndarray | float = 1.0) -> np.ndarray:
    """abs: D = |x| (THEORY.md section 3 and 10.10)."""
    return np.abs(np.asarray(x, dtype=float))


def _abs_phi(pi: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """abs: phi = sign(log(pi/pi_ref)) (THEORY.md section 3); 0 at pi = pi_ref, the
    subgradient torch takes."""
    return np.sign(_log_ratio(pi, ref))


def _abs_psi(x: np.ndarray) -> np.ndarray:
    """abs: psi = sign(x) (THEORY.md eqs. 10.3 and 10.16)."""
    return np.sign(x)


_RECORDS = (
    PenaltyRecord(
        "k3", "THEORY.md section 3 (k3), eqs. 10.3, 10.7", _k3_value, _k3_phi, _k3_psi,
        regularises=True, repels_boundary=True, smooth=True, in_reward=True,
        stationary_map="reciprocal", phi_offset=1.0, monotone=False,
    ),
    PenaltyRecord(
        "k2", "THEORY.md section 3 (k2), eqs. 10.3, 10.7", _k2_value, _k2_phi, _k2_psi,
        regularises=True, repels_boundary=True, smooth=True, in_reward=True,
        stationary_map="exponential", phi_offset=0.0, monotone=False,
    ),
    PenaltyRecord(
        "k1", "THEORY.md section 3 (k1), eqs. 10.3, 10.7", _k1_value, _k1_phi, _k1_psi,
        regularises=False, repels_boundary=False, smooth=True, in_reward=True,
        stationary_map=None, phi_offset=1.0, monotone=True,
    ),
    PenaltyRecord(
        "abs", "THEORY.md section 3 (abs), sections 10.3, 10.10", _abs_value, _abs_phi, _abs_psi,
        regularises=True, repels_boundary=False, smooth=False, in_reward=False,
        stationary_map=None, phi_offset=0.0, monotone=False,
    ),
    PenaltyRecord(
        "kl", "THEORY.md section 3, eq. 10.3 (kl = rho x)", _kl_value, _kl_phi, _kl_psi,
        regularises=True, repels_boundary=True, smooth=True, in_reward=False,
        stationary_map="exponential", phi_offset=1.0, monotone=True,
    ),
)  # fmt: skip

#: Every penalty by name, in the order of ``Penalty`` (iterating gives the names;
#: tests/test_penalties.py checks the two agree).
PENALTIES: Mapping[str, PenaltyRecord] = MappingProxyType({rec.name: rec for rec in _RECORDS})


def penalty(name: str) -> PenaltyRecord:
    """The record of penalty ``name``; an unknown name is an ``InputError`` naming the field.

    >>> penalty("k3").stationary_map
    'reciprocal'
    """
    rec = PENALTIES.get(name) if isinstance(name, str) else None
    if rec is None:
        raise InputError("penalty", f"unknown {name!r}; expected one of {', '.join(PENALTIES)}")
    return rec
