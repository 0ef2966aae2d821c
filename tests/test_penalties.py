"""The penalty records (theory/penalties.py) against their definitions, and the torch mirrors
in training/loss.py against the records.

Each property a record states is checked from its formulas here, not read back: phi against
psi at the log-ratio, psi against torch's derivative of the loss term, the boundary pull
from phi near pi = 0, the stationary map from the stationarity conditions of THEORY.md
section 5.
"""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest
import torch

import grpo_align as ga
from grpo_align.errors import InputError
from grpo_align.theory import spec
from grpo_align.theory.penalties import PENALTIES, Penalty, penalty
from grpo_align.training import loss

EPS = np.finfo(float).eps
RNG = np.random.default_rng(19)


def _positive(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Random pi and pi_ref entries in (1e-6, 1): log-ratios up to about 14 in size."""
    return 10.0 ** RNG.uniform(-6, 0, n), 10.0 ** RNG.uniform(-6, 0, n)


def test_names_are_the_literal_and_the_spec() -> None:
    assert tuple(PENALTIES) == get_args(Penalty) == ("k3", "k2", "k1", "abs", "kl")
    assert spec.PENALTIES is PENALTIES and ga.PENALTIES is PENALTIES
    for name in PENALTIES:
        assert penalty(name) is PENALTIES[name] and penalty(name).name == name
    with pytest.raises(InputError, match="unknown 'k4'; expected one of k3, k2, k1, abs, kl"):
        penalty("k4")
    with pytest.raises(InputError, match="penalty"):
        ga.GRPO(penalty=["k3"])  # type: ignore[arg-type]


def test_aggregations_defined_once() -> None:
    from grpo_align import training
    from grpo_align.integrations import trl
    from grpo_align.report import sequences

    assert loss.AGGREGATIONS is spec.AGGREGATIONS
    assert training.AGGREGATIONS is spec.AGGREGATIONS
    assert sequences.AGGREGATIONS is spec.AGGREGATIONS and trl.AGGREGATIONS is spec.AGGREGATIONS


@pytest.mark.parametrize("name", list(PENALTIES))
def test_phi_is_psi_at_the_log_ratio(name: str) -> None:
    """THEORY.md section 3 and eq. 10.3: phi(o) = psi(x(o)), x = log pi/pi_ref."""
    rec = penalty(name)
    pi, ref = _positive(2000)
    x = np.log(pi) - np.log(ref)
    phi, psi = rec.phi(pi, ref), rec.psi(x)
    # rounding of x (eps |x| each log) through psi' (at most max(1, pi_ref/pi) for k3)
    slope = np.maximum(1.0, ref / pi) if name == "k3" else 1.0
    tol = 8 * EPS * (1.0 + np.abs(x)) * slope + 4 * EPS * np.abs(phi)
    if name == "abs":
        assert np.array_equal(phi, psi)
    else:
        assert np.all(np.abs(phi - psi) <= tol)


@pytest.mark.parametrize("name", list(PENALTIES))
def test_phi_offset_form(name: str) -> None:
    """phi = a - u with u = pi_ref/pi (reciprocal map) or log(pi_ref/pi) (exponential map)."""
    rec = penalty(name)
    if rec.stationary_map is None:
        return
    pi, ref = _positive(500)
    u = ref / pi if rec.stationary_map == "reciprocal" else np.log(ref / pi)
    assert np.allclose(rec.phi(pi, ref), rec.phi_offset - u, rtol=8 * EPS, atol=8 * EPS * np.max(np.abs(u)))


@pytest.mark.parametrize("name", list(PENALTIES))
def test_boundary_and_regularisation_flags(name: str) -> None:
    """repels_boundary: phi -> -inf as pi -> 0 < pi_ref (section 11); regularises: phi is
    not constant (k1's sums to 0 against sum_o grad pi(o) = 0)."""
    rec = penalty(name)
    ref = np.full(4, 0.5)
    near = rec.phi(np.array([1e-300, 1e-200, 1e-100, 1e-50]), ref)
    assert rec.repels_boundary == bool(np.all(near < -100) and np.all(np.diff(near) > 0))
    spread = np.ptp(rec.phi(np.array([0.1, 0.3, 0.6, 0.9]), ref))
    assert rec.regularises == (spread > 0)
    # abs alone has a set-valued subgradient: its phi jumps at pi = pi_ref
    jump = (
        rec.phi(np.array([0.5 * (1 + 1e-12)]), np.array([0.5]))[0]
        - rec.phi(np.array([0.5 * (1 - 1e-12)]), np.array([0.5]))[0]
    )
    assert rec.smooth == (abs(jump) < 1e-6)


@pytest.mark.parametrize("name", list(PENALTIES))
def test_monotone_is_a_strictly_increasing_value(name: str) -> None:
    x = np.linspace(-30.0, 30.0, 6001)
    assert penalty(name).monotone == bool(np.all(np.diff(penalty(name).value(x)) > 0))


@pytest.mark.parametrize("name", list(PENALTIES))
def test_in_reward_is_what_grpo_accepts(name: str) -> None:
    rec = penalty(name)
    if rec.in_reward:
        ga.GRPO(penalty=rec.name, penalty_in="reward")
    else:
        with pytest.raises(InputError, match="cannot be put in the reward"):
            ga.GRPO(penalty=rec.name, penalty_in="reward")


@pytest.mark.parametrize("name", list(PENALTIES))
def test_stationary_map_solves_the_conditions(name: str) -> None:
    """THEORY.md section 5: with P frozen, the map's policy makes P - beta phi constant."""
    rec = penalty(name)
    if rec.stationary_map is None:
        return
    ref = RNG.dirichlet(np.ones(6))
    pref = RNG.uniform(-1, 1, 6)
    beta = 0.7
    if rec.stationary_map == "reciprocal":
        c = np.max(pref) - beta + 0.3  # any c with every denominator positive
        pi = ref / (1.0 - (pref - c) / beta)
    else:
        pi = ref * np.exp(pref / beta)
    g = pref - beta * rec.phi(pi, ref)
    assert np.ptp(g) <= 32 * EPS * (1.0 + np.max(np.abs(pref)) + beta * np.max(np.abs(rec.phi(pi, ref))))


def _logps(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    shape = (n, 7)
    new = torch.tensor(RNG.uniform(-8, 0, shape), dtype=torch.float64)
    old = new + torch.tensor(RNG.normal(0, 0.3, shape), dtype=torch.float64)
    ref = torch.tensor(RNG.uniform(-8, 0, shape), dtype=torch.float64)
    return new, old, ref


@pytest.mark.parametrize("name", list(PENALTIES))
def test_torch_value_mirrors_the_record(name: str) -> None:
    """``loss.penalty_per_token`` (torch) against the record's ``value`` (numpy), float64."""
    new, old, ref = _logps(64)
    got = loss.penalty_per_token(name, new, old, ref).numpy()
    x = (new - ref).numpy()
    rho = torch.exp(new - old).numpy()
    want = penalty(name).value(x, rho)
    # k3: exp(-x) + x - 1 against expm1(-x) + x: a few roundings of terms of size exp(-x) + |x| + 1
    size = np.exp(-x) + np.abs(x) + 1.0 if name == "k3" else np.abs(want) + 1e-300
    assert np.all(np.abs(got - want) <= 8 * EPS * size)


@pytest.mark.parametrize("name", list(PENALTIES))
def test_torch_gradient_is_the_record_psi(name: str) -> None:
    """d D / d logp_new at logp_new = logp_old (theta = theta_old) is psi(x) (eq. 10.3), by
    torch's autograd of the loss term."""
    _, _, ref = _logps(64)
    new = torch.tensor(RNG.uniform(-8, 0, ref.shape), dtype=torch.float64)
    if name == "abs":  # away from the kink x = 0
        new = torch.where((new - ref).abs() < 1e-3, new + 0.01, new)
    new.requires_grad_(True)
    loss.penalty_per_token(name, new, new.detach(), ref).sum().backward()
    assert new.grad is not None
    x = (new - ref).detach().numpy()
    want = penalty(name).psi(x)
    assert np.all(np.abs(new.grad.numpy() - want) <= 8 * EPS * (np.exp(-x) + np.abs(x) + 1.0))


def test_penalised_rewards_use_the_reward_form() -> None:
    """``loss.penalised_rewards``: r - beta k(x(o)), x the masked sum of the log-ratios (eq. 10.7)."""
    new, old, ref = _logps(8)
    mask = torch.tensor(RNG.integers(0, 2, new.shape), dtype=torch.float64)
    rewards = RNG.uniform(0, 1, 8)
    x = ((old - ref) * mask).sum(dim=1).numpy()
    for name, rec in PENALTIES.items():
        if not rec.in_reward:
            continue
        algo = ga.GRPO(group_size=4, beta=0.3, penalty=rec.name, penalty_in="reward")
        got = loss.penalised_rewards(rewards, old, ref, mask, algo)
        k = {"k1": x, "k2": x * x / 2, "k3": np.exp(-x) + x - 1}[name]
        assert np.allclose(got, rewards - 0.3 * k, rtol=0, atol=64 * EPS * (1 + np.max(np.exp(-x) + np.abs(x))))
