"""Numeric and API edges of issue 18 item 9, each checked against an independent route.

The closed forms (THEORY.md sections 5-6) against the formulas evaluated in 60-digit
decimal arithmetic or summed in full; the Jeffreys estimate against its definition; the
KL of a subnormal p0 and RLHF's pooling of +-1e308 rewards against the formulas in
decimals; ``GRPO``'s keywords and the sequence messages against the field names.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
from decimal import Decimal, localcontext
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import beta as beta_dist
from scipy.stats import binom

import grpo_align as ga
from grpo_align.io_toml import load_problem_toml
from grpo_align.predict.engine import binary_end_points, kl_to_reference
from grpo_align.predict.estimate import MAX_COUNT, jeffreys_interval, jeffreys_mean
from grpo_align.theory.closed_form import MAX_BINARY_GROUP_SIZE

DIGITS = 60


def _one_line_error(call, field: str) -> str:
    """The InputError of ``call``: names ``field`` first, on one line; returns the message."""
    with pytest.raises(ga.InputError) as info:
        call()
    err = info.value
    assert isinstance(err, ValueError)
    assert err.field == field, str(err)
    message = str(err)
    assert message.startswith(f"{field}: ") and "\n" not in message
    return message


# ---------------------------------------------------------------------------- binary_policy
@pytest.mark.parametrize(
    "group_size", [0, -3, 2.7, "8", True, None, math.nan, -math.inf, 10**400, MAX_BINARY_GROUP_SIZE + 1]
)
def test_binary_policy_refuses_a_group_size_that_is_not_a_group(group_size):
    """G 0 and -3 returned p0, 2.7 was truncated to 2: each is now refused, naming group_size."""
    message = _one_line_error(lambda: ga.binary_policy(0.3, 0.5, group_size), "group_size")
    assert "math.inf" in message  # the fix for a large G, and the limit for every G


def test_a_group_size_above_the_cap_says_what_to_pass_instead():
    message = _one_line_error(lambda: ga.binary_policy(0.3, 0.5, 10**8), "group_size")
    assert f"{MAX_BINARY_GROUP_SIZE:,}" in message and "math.inf" in message and "100000000" in message


@pytest.mark.parametrize("ddof", ["1", "0", 2, -1, 0.5, True, False, None])
def test_binary_policy_refuses_a_ddof_other_than_0_or_1(ddof):
    """ddof "1" and 2 were read as 0; bools are refused although True == 1."""
    _one_line_error(lambda: ga.binary_policy(0.3, 0.5, 8, ddof=ddof), "ddof")
    _one_line_error(lambda: ga.binary_g2_policy(0.3, 0.5, ddof=ddof), "ddof")
    _one_line_error(lambda: ga.binary_direct_kl_g2_policy(0.3, 0.5, ddof=ddof), "ddof")


def test_a_group_of_one():
    """G = 1: the one reward is the group's mean, so A = 0 and P_correct = P_wrong = 0 and
    the stationary p is p0 (ddof 0); the sample std of one reward divides by G - 1 = 0, so
    ddof 1 is refused (it raised ZeroDivisionError)."""
    assert ga.binary_preference(0.37, 1) == (0.0, 0.0)
    assert ga.binary_policy(0.3, 0.5, 1) == 0.3
    assert ga.binary_shift_policy(0.3, 0.5, 1) == pytest.approx(0.3, rel=1e-15)  # a = (G-1)/G = 0
    message = _one_line_error(lambda: ga.binary_policy(0.3, 0.5, 1, ddof=1), "group_size")
    assert ">= 2" in message and "ddof 1" in message


@pytest.mark.parametrize("ddof", [0, 1])
def test_group_size_inf_is_the_large_group_limit(ddof):
    """G = math.inf raised OverflowError; it is the section 6 limit, where ddof drops out."""
    for p0, beta in [(0.3, 0.5), (0.5, 1.0), (0.1, 0.5), (1e-300, 0.04)]:
        assert ga.binary_policy(p0, beta, math.inf, ddof=ddof) == ga.binary_limit_policy(p0, beta)
    assert ga.binary_policy(0.3, 0.5, math.inf) == pytest.approx(0.9, abs=1e-15)  # section 6: 0.9 exactly
    p_corr, p_wrong = ga.binary_preference(0.2, math.inf)
    assert p_corr == pytest.approx(math.sqrt(0.8 / 0.2), rel=1e-15)  # sqrt((1-p)/p)
    assert p_wrong == pytest.approx(-math.sqrt(0.2 / 0.8), rel=1e-15)


def test_integral_group_sizes_of_other_types_are_the_integer():
    want = ga.binary_policy(0.3, 0.5, 8)
    assert ga.binary_policy(0.3, 0.5, 8.0) == want
    assert ga.binary_policy(0.3, 0.5, np.int64(8)) == want
    assert want == pytest.approx(0.853564, abs=5e-7)  # THEORY.md section 6


def _full_sum(p: float, g: int) -> tuple[float, float]:
    """Section 6's sums over every count k = 0..G-1, as written."""
    k = np.arange(g)
    pmf = binom.pmf(k, g - 1, p)
    return float(np.sum(pmf * np.sqrt((g - 1 - k) / (k + 1)))), float(-np.sum(pmf * np.sqrt(k / (g - k))))


@pytest.mark.parametrize("g", [2, 8, 201, 401, 2000, 100_000])
@pytest.mark.parametrize("p", [0.0, 1e-12, 0.01, 0.3, 0.9, 1 - 1e-9, 1.0])
def test_the_windowed_preference_is_the_full_sum(g, p):
    """binary_preference sums only the counts within 20 sd + 200 of the mean: the same
    number as the full sum (for G <= 201 the same terms)."""
    got = ga.binary_preference(p, g)
    want = _full_sum(p, g)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-300)


def test_a_large_group_is_fast_and_within_1_over_g_of_the_limit():
    """G 1e5 ran out of memory in the API (numpy's MemoryError); up to the cap the sum over
    O(sqrt(G)) counts takes milliseconds per evaluation, and the answer approaches the
    G -> infinity closed form at rate 1/G (THEORY.md eq. 10.15)."""
    start = time.perf_counter()
    gaps = {}
    for g in (10**5, 10**6, MAX_BINARY_GROUP_SIZE):
        gaps[g] = ga.binary_limit_policy(0.3, 0.5) - ga.binary_policy(0.3, 0.5, g)
    assert time.perf_counter() - start < 30  # about 0.3 s on one core
    for g, gap in gaps.items():
        assert 0 < gap < 1 / g
    # O(1/G): ten times the group, a tenth of the gap
    assert gaps[10**5] / gaps[10**6] == pytest.approx(10, rel=1e-2)


def test_a_tiny_p0_at_a_large_group_still_brackets_its_root():
    """p0 1e-300 left excess(lo) >= 0 by rounding at the edge of the valid region (brentq
    raised 'f(a) and f(b) must have different signs'); the root sits at that edge."""
    for g in (64, 10**4, 10**6):
        p = ga.binary_policy(1e-300, 0.04, g)
        p_corr = ga.binary_preference(p, g)[0]
        assert p_corr == pytest.approx(0.04, rel=1e-12)  # p (1 - P/beta) = p0 ~ 0: P = beta


# ---------------------------------------------------------------------------- other closed forms
def _decimal(x: float) -> Decimal:
    return Decimal(x)  # exact: every double is a finite decimal


def _limit_exact(p0: float, beta: float) -> Decimal:
    """Section 6, G -> infinity, in 60 digits."""
    with localcontext() as ctx:
        ctx.prec = DIGITS
        p, b = _decimal(p0), _decimal(beta)
        b2 = b * b
        return (2 * p * b2 + 1 + (1 + 4 * p * (1 - p) * b2).sqrt()) / (2 * (b2 + 1))


@settings(max_examples=300, deadline=None)
@given(
    st.floats(min_value=1e-300, max_value=1 - 2**-53),
    st.floats(min_value=1e-300, max_value=1e300),
)
def test_the_limit_policy_is_its_formula_for_every_beta(p0, beta):
    """beta^2 overflowed above 1e154 (NaN) and p rounded to 1.0000000000000002 at beta 1e-3;
    p and 1 - p are now within a few ulps of the formula in 60 digits, and p <= 1."""
    got = ga.binary_limit_policy(p0, beta)
    want = _limit_exact(p0, beta)
    assert 0 < got <= 1
    assert abs(_decimal(got) - want) <= Decimal("4e-16") * want
    assert abs((1 - _decimal(got)) - (1 - want)) <= Decimal("4e-16") * (1 - want) + Decimal(2**-53)


def test_the_g2_and_direct_kl_forms_do_not_overflow():
    """exp(gamma/beta) overflowed below beta 1/709 (OverflowError); b^2 overflowed above 1e154."""
    with localcontext() as ctx:
        ctx.prec = DIGITS
        for p0, beta in [(0.25, 1.0), (0.3, 0.01), (1e-300, 1e-3), (0.25, 1e-5)]:
            odds = _decimal(p0) / (1 - _decimal(p0)) * (1 / _decimal(beta)).exp()
            want = odds / (1 + odds)
            got = ga.binary_direct_kl_g2_policy(p0, beta)
            assert abs(_decimal(got) - want) <= Decimal("4e-16") * want
    assert ga.binary_direct_kl_g2_policy(0.25, 1.0) == pytest.approx(0.475367, abs=5e-7)  # section 6
    for beta in (1e200, 1e300, 1.7e308):
        assert ga.binary_g2_policy(0.3, beta) == pytest.approx(0.3, rel=1e-15)  # p0 + O(1/beta)
        assert ga.binary_shift_policy(0.3, beta, 8) == pytest.approx(0.3, rel=1e-15)


@pytest.mark.parametrize("beta", [1e-300, 1e-8, 0.5, 3.0])
def test_the_shift_policy_is_its_quadratic_for_small_beta(beta):
    """(a/beta) p^2 + (1 - a/beta) p - p0 = 0 overflowed at beta 1e-300 (NaN); its root in
    60 digits."""
    p0, g = 0.3, 8
    with localcontext() as ctx:
        ctx.prec = DIGITS
        q = Decimal(g - 1) / g / _decimal(beta)
        want = (-(1 - q) + ((1 - q) ** 2 + 4 * q * _decimal(p0)).sqrt()) / (2 * q)
    got = ga.binary_shift_policy(p0, beta, g)
    assert abs(_decimal(got) - want) <= Decimal("4e-16") * want


@pytest.mark.parametrize(
    ("field", "call"),
    [
        ("beta", lambda: ga.binary_policy(0.3, "0.5", 8)),
        ("beta", lambda: ga.binary_policy(0.3, True, 8)),
        ("beta", lambda: ga.binary_limit_policy(0.3, math.inf)),
        ("p0", lambda: ga.binary_policy("0.3", 0.5, 8)),
        ("p0", lambda: ga.binary_policy(math.nan, 0.5, 8)),
        ("p", lambda: ga.binary_preference(1.5, 8)),
        ("p", lambda: ga.binary_preference(math.nan, 8)),
        ("group_size", lambda: ga.binary_preference(0.3, 0)),
        ("group_size", lambda: ga.binary_shift_policy(0.3, 0.5, 0)),
        ("group_size", lambda: ga.binary_shift_policy(0.3, 0.5, 2.5)),
        ("gamma", lambda: ga.binary_g2_policy(0.3, 0.5, gamma="1")),
        ("gamma", lambda: ga.binary_direct_kl_g2_policy(0.3, 0.5, gamma=0.0)),
        ("beta", lambda: ga.rlhf_policy(ga.Problem.from_rewards([0.3, 0.7], [1.0, 0.0]), True)),
        ("beta", lambda: ga.rlhf_policy(ga.Problem.from_rewards([0.3, 0.7], [1.0, 0.0]), "0.5")),
        ("beta", lambda: ga.rlhf_policy(ga.Problem.from_rewards([0.3, 0.7], [1.0, 0.0]), math.nan)),
        ("scale", lambda: ga.pairwise_policy([0.5, 0.5], [[0.0, 0.6], [0.4, 0.0]], 0.5, scale="1")),
        ("tol", lambda: ga.pairwise_policy([0.5, 0.5], [[0.0, 0.6], [0.4, 0.0]], 0.5, tol=-1.0)),
        ("max_iter", lambda: ga.pairwise_policy([0.5, 0.5], [[0.0, 0.6], [0.4, 0.0]], 0.5, max_iter=True)),
        ("tau", lambda: ga.nash_policy([0.5, 0.5], [[0.0, 0.6], [0.4, 0.0]], "0.1")),
        ("beta", lambda: ga.pairwise_policy([0.5, 0.5], [[0.0, 0.6], [0.4, 0.0]], math.inf)),
    ],
)
def test_the_other_closed_forms_validate_their_arguments(field, call):
    _one_line_error(call, field)


# ---------------------------------------------------------------------------- Jeffreys
@pytest.mark.parametrize(
    ("n", "correct", "field", "says"),
    [
        (4, 9, "correct", "9 > n = 4; expected 0 <= correct <= n"),  # returned 1.9
        (4, -1, "correct", "got -1"),
        (-4, 0, "n", "got -4"),
        (4.5, 1, "n", "whole number"),
        (4, 1.5, "correct", "whole number"),
        (True, 0, "n", "type bool"),
        ("4", 1, "n", "whole number"),
        (math.nan, 1, "n", "got nan"),
        (math.inf, 1, "n", "got inf"),
        (1e308, 1, "n", "2**53"),  # gave p0_low > p0
        (2**53 + 2, 1, "n", "2**53"),
        (10**30, 1, "n", "an integer of 31 digits"),
        ([4, 10, 3], [1, 11, 0], "correct[1]", "11 > n = 10"),
        (np.array([4, 10]), np.array([1, -2]), "correct[1]", "got -2"),
        ([4, 10], [1, 2, 3], "correct", "one count per n"),
    ],
)
def test_jeffreys_refuses_what_is_not_a_count(n, correct, field, says):
    assert says in _one_line_error(lambda: jeffreys_mean(n, correct), field)
    assert says in _one_line_error(lambda: jeffreys_interval(n, correct), field)


def test_jeffreys_of_no_samples_is_the_prior():
    """n = 0: Beta(1/2, 1/2), mean 1/2 and its quantiles sin^2(pi q / 2) (the arcsine law)."""
    assert jeffreys_mean(0, 0) == 0.5
    low, high = jeffreys_interval(0, 0)
    assert low == pytest.approx(math.sin(math.pi * 0.025 / 2) ** 2, rel=1e-12)
    assert high == pytest.approx(math.sin(math.pi * 0.975 / 2) ** 2, rel=1e-12)


@st.composite
def _counts(draw):
    n = draw(st.one_of(st.integers(0, 100), st.integers(0, MAX_COUNT)))
    correct = draw(st.one_of(st.integers(0, min(n, 5)), st.integers(max(0, n - 5), n), st.integers(0, n)))
    return n, correct


@settings(max_examples=500, deadline=None)
@given(_counts())
def test_jeffreys_interval_holds_its_mean(counts):
    """For every count up to 2**53: low <= mean <= high, the mean is (correct + 1/2)/(n + 1)
    and, where the Beta cdf is accurate, the ends are its 2.5% and 97.5% quantiles."""
    n, correct = counts
    mean = float(jeffreys_mean(n, correct))
    low, high = (float(x) for x in jeffreys_interval(n, correct))
    assert mean == (correct + 0.5) / (n + 1)
    assert 0 <= low <= mean <= high <= 1
    if n <= 10**6:
        a, b = correct + 0.5, n - correct + 0.5
        assert beta_dist.cdf(low, a, b) == pytest.approx(0.025, rel=1e-6)
        assert beta_dist.sf(high, a, b) == pytest.approx(0.025, rel=1e-6)


def test_predict_names_the_prompt_whose_n_is_too_large():
    from grpo_align.predict.engine import predict_chunk
    from grpo_align.predict.stats import StatsChunk

    nan = np.full(2, np.nan)
    chunk = StatsChunk("counts", ["a", "b"], np.array([1, 2]), np.array([10.0, 1e308]), np.array([3.0, 3.0]), nan)
    message = _one_line_error(lambda: predict_chunk(chunk, ga.GRPO()), "prompt_id 'b', column n")
    assert "2**53" in message


# ---------------------------------------------------------------------------- KL
def _binary_kl(p: float, p0: float) -> Decimal:
    """KL(pi || pi_ref) = p log(p/p0) + (1-p) log((1-p)/(1-p0)) in 60 digits."""
    with localcontext() as ctx:
        ctx.prec = DIGITS
        p_, q_ = _decimal(p), _decimal(p0)
        return p_ * (p_ / q_).ln() + (1 - p_) * ((1 - p_) / (1 - q_)).ln()


def test_kl_against_a_subnormal_p0_is_finite():
    """p0 1e-320 (subnormal): pi/pi_ref = 1e320 overflowed and the KL came out inf; it is
    about 732.7 nats (the paper preset), the formula at the closed form's p in decimals."""
    algo = ga.GRPO.preset("paper")
    p0 = 1e-320
    ends = binary_end_points(np.array([p0, 1e-300, 0.3]), algo)
    assert ends.status == ["interior"] * 3
    p = ga.binary_policy(p0, algo.beta, algo.group_size)  # independent of the solver
    assert float(ends.predicted[0]) == pytest.approx(p, abs=1e-10)
    want = _binary_kl(p, p0)
    # dKL/dp = log(p/p0) - log((1-p)/(1-p0)) ~ 742: 1e-10 in p is 1e-7 in the KL
    assert float(ends.kl[0]) == pytest.approx(float(want), abs=1e-6)
    assert float(ends.kl[0]) == pytest.approx(732.7, abs=0.05)  # the number
    for i, q in ((1, 1e-300), (2, 0.3)):
        p_i = ga.binary_policy(q, algo.beta, algo.group_size)
        assert float(ends.kl[i]) == pytest.approx(float(_binary_kl(p_i, q)), rel=1e-9)


def test_kl_rows():
    """0 log 0 = 0; mass where pi_ref has none is an infinite KL; normal rows the formula."""
    policy = np.array([[0.0, 1.0], [0.5, 0.5], [0.9, 0.1], [1.0, 0.0]])
    ref = np.array([[0.2, 0.8], [0.0, 1.0], [0.3, 0.7], [5e-324, 1.0]])
    got = kl_to_reference(policy, ref)
    assert got[0] == pytest.approx(math.log(1 / 0.8), rel=1e-15)
    assert got[1] == math.inf
    assert got[2] == pytest.approx(float(_binary_kl(0.9, 0.3)), rel=1e-14)
    assert got[3] == pytest.approx(-math.log(5e-324), rel=1e-15)  # 744.44, not inf


# ---------------------------------------------------------------------------- RLHF
def _pooled(ref: list[float], rewards: list[float], beta: float) -> list[Decimal]:
    """pi(o) prop. to pi_ref(o) exp(r(o)/beta) in 60 digits (section 5)."""
    with localcontext() as ctx:
        ctx.prec = DIGITS
        top = max(_decimal(r) for r in rewards)
        w = [_decimal(q) * ((_decimal(r) - top) / _decimal(beta)).exp() for q, r in zip(ref, rewards, strict=True)]
        total = sum(w)
        return [x / total for x in w]


@pytest.mark.parametrize(
    ("rewards", "beta"),
    [
        ([1e308, -1e308], 0.5),  # gave NaN
        ([1e308, -1e308], 1e308),  # the gap 2e308 overflows, the logit gap 2 does not
        ([-1e308, 1e308], 1.7e308),
        ([1.7e308, 1.6e308], 1e307),
        ([1.0, 0.0], 0.5),
        ([1e-300, 0.0], 1e-301),
    ],
)
def test_rlhf_pools_rewards_of_any_scale(rewards, beta):
    ref = [0.3, 0.7]
    got = ga.rlhf_policy(ga.Problem.from_rewards(ref, rewards), beta)
    assert np.all(np.isfinite(got))
    want = _pooled(ref, rewards, beta)
    for g, w in zip(got, want, strict=True):
        assert abs(_decimal(float(g)) - w) <= Decimal("1e-15") * max(w, Decimal("1e-300"))


def test_rlhf_is_invariant_under_a_common_power_of_two():
    """pi depends on r/beta only: scaling both by 2^k (exact) changes nothing, 1e-300 to 1e300."""
    problem = ga.Problem.from_rewards([[0.2, 0.3, 0.5]], [[1.0, 0.5, 0.0]])
    want = ga.rlhf_policy(problem, 0.5)
    for k in (-990, -500, -1, 1, 500, 1000):
        scaled = ga.Problem.from_rewards([[0.2, 0.3, 0.5]], [[2.0**k, 2.0 ** (k - 1), 0.0]])
        np.testing.assert_allclose(ga.rlhf_policy(scaled, math.ldexp(0.5, k)), want, rtol=1e-15)


# ---------------------------------------------------------------------------- GRPO keywords
def test_an_unknown_grpo_keyword_names_it_and_the_nearest_field():
    """GRPO(foo=1) raised TypeError; it is an InputError naming foo (and the fields)."""
    message = _one_line_error(lambda: ga.GRPO(foo=1), "foo")
    assert "group_size" in message and "penalty_in" in message
    assert "did you mean 'beta'" in _one_line_error(lambda: ga.GRPO(bta=0.1), "bta")
    assert "did you mean 'group_size'" in _one_line_error(lambda: ga.GRPO(groupsize=4), "groupsize")
    assert "did you mean 'beta'" in _one_line_error(lambda: ga.GRPO().replace(bta=0.1), "bta")
    assert "did you mean 'beta'" in _one_line_error(lambda: dataclasses.replace(ga.GRPO(), bta=0.1), "bta")
    assert "did you mean 'beta'" in _one_line_error(lambda: ga.GRPO.preset("trl", bta=0.1), "bta")
    _one_line_error(lambda: ga.GRPO(4, group_size=8), "group_size")
    _one_line_error(lambda: ga.GRPO(*range(9)), "GRPO")


def test_grpo_stays_a_dataclass():
    names = [f.name for f in dataclasses.fields(ga.GRPO)]
    assert names == list(inspect.signature(ga.GRPO).parameters)
    assert names[:2] == ["group_size", "beta"]
    algo = ga.GRPO(4, 0.1)
    assert algo == ga.GRPO(group_size=4, beta=0.1) and hash(algo) == hash(ga.GRPO(group_size=4, beta=0.1))
    assert repr(algo).startswith("GRPO(group_size=4, beta=0.1, ")
    assert dataclasses.replace(algo, beta=0.2).beta == 0.2
    with pytest.raises(dataclasses.FrozenInstanceError):
        algo.beta = 0.3  # type: ignore[misc]


# ---------------------------------------------------------------------------- sequence messages
def test_sequence_errors_number_outputs_like_their_fields():
    """The prefix message said 'output 0 ... output 1' under the field problem.sequences,
    whose entries a TOML file counts from 1. Both outputs are now named as fields: by their
    Python index in the API, from 1 in a TOML file."""
    seqs = [("yes",), ("yes", "indeed", "<eos>"), ("no", "<eos>")]
    with pytest.raises(ga.InputError) as info:
        ga.Problem.from_rewards([0.3, 0.2, 0.5], [1, 1, 0], sequences=seqs)
    assert str(info.value) == (
        "sequences[0]: ('yes',) is a prefix of sequences[1] ('yes', 'indeed', '<eos>'); "
        "end every sequence with an end token"
    )
    with pytest.raises(ga.InputError) as info:
        ga.Problem.from_rewards([[0.3, 0.2, 0.5]], [[1, 1, 0]], sequences=[[seqs[1], seqs[2], seqs[0]]])
    assert str(info.value).startswith("sequences[0][2]: ('yes',) is a prefix of sequences[0][0] ")


def test_sequence_errors_in_a_toml_file_count_from_1(tmp_path: Path):
    path = tmp_path / "p.toml"
    algo = "\n[[algorithm]]\ngroup_size = 4\nbeta = 0.3\n"
    path.write_text(
        '[problem]\nref = [0.3, 0.2, 0.5]\nrewards = [1, 1, 0]\nsequences = [["yes"], ["yes", "x"], ["no"]]\n' + algo
    )
    with pytest.raises(ga.InputError) as info:
        load_problem_toml(path)
    assert info.value.field == "problem.sequences[1]"
    assert "is a prefix of problem.sequences[2] " in str(info.value)
    path.write_text(
        '[problem]\nref = [0.3, 0.2, 0.5]\nrewards = [1, 1, 0]\nsequences = [["no"], ["yes"], ["yes"]]\n' + algo
    )
    with pytest.raises(ga.InputError) as info:
        load_problem_toml(path)
    assert info.value.field == "problem.sequences[3]"
    assert "repeats problem.sequences[2] " in str(info.value)
