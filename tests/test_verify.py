"""The one rule of "training matches the theory" (``grpo_align.verify``), and that ``train``,
the sequence summary and the report's training section all judge by it."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from grpo_align.errors import InputError
from grpo_align.verify import ALPHA, family_wise_bound, sequence_summary, z_scores, z_verdict


def test_z_scores_edges():
    z = z_scores([0.1, 0.0, 0.2, -0.2, np.nan], [0.05, 0.0, 0.0, 0.0, 0.1])
    assert z[0] == pytest.approx(2.0)
    assert z[1] == 0.0  # no gap, no noise: no evidence against the prediction
    assert z[2] == math.inf and z[3] == -math.inf  # a gap without noise fails any bound
    assert math.isnan(z[4])


def test_bound_is_student_t_bonferroni():
    # an independent route: the t quantile from scipy's CDF, solved by bisection
    n, dof = 96, 9
    lo, hi = 0.0, 100.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if 2 * stats.t.sf(mid, dof) > ALPHA / n else (lo, mid)
    assert family_wise_bound(n, dof) == pytest.approx(lo, rel=1e-9)
    assert family_wise_bound(n, dof) == pytest.approx(8.78, abs=5e-3)  # docs/lm.md
    with pytest.raises(InputError):
        family_wise_bound(1, 0)


def test_z_verdict():
    v = z_verdict([np.array([1.0, -2.0]), np.array([]), np.array([[0.5, 9.0]])], n_batches=20)
    assert (v.n_tests, v.dof, v.worst, v.max_abs_z) == (4, 19, 2, 9.0)
    assert v.bound == pytest.approx(float(stats.t.isf(ALPHA / 8, 19)))
    assert v.passed == (v.bound >= 9.0)
    assert z_verdict([np.array([np.inf])], 20).passed is False
    assert z_verdict([np.array([np.nan])], 20).passed is False


def _train_result(z, ok=True):
    z = np.asarray(z, dtype=float)
    return SimpleNamespace(
        z=z, problem=SimpleNamespace(ref=np.full(z.shape, 0.5)), predicted=SimpleNamespace(success=ok)
    )


@pytest.mark.parametrize("n_batches", [5, 20])
def test_train_and_sequence_summary_judge_alike(n_batches):
    """At the edge of the bound ``grpo-align train`` and the sequence summary agree, and both
    state the bound ``verify.family_wise_bound`` gives."""
    pytest.importorskip("rich")
    from grpo_align.commands.train import verdict

    bound = family_wise_bound(4, n_batches - 1)
    for z_max, expected in ((bound * 0.999, True), (bound * 1.001, False)):
        ok, line = verdict([("a", _train_result([[0.1, z_max], [0.0, -1.0]]))], n_batches)
        assert ok is expected and f"{bound:.2f}" in line
        summary = sequence_summary(
            trainer="grpo_align",
            config={},
            questions=[{}],
            predicted={"own": np.zeros((1, 4)), "other": np.ones((1, 4))},
            runs=[
                {"name": "own", "measured": np.array([[0.1, z_max, 0.0, -1.0]]) * 1e-3, "stderr": np.full((1, 4), 1e-3)}
            ],
            n_batches=n_batches,
        )
        assert summary["verdict"]["bound"] == pytest.approx(bound)
        assert summary["runs"][0]["within_bound"] is expected
    failed = verdict([("a", _train_result([[0.0]], ok=False))], n_batches)
    assert failed[0] is False and "no prediction" in failed[1]


def test_report_training_section_uses_the_rule():
    """The report's training section states the t bound (it used a normal quantile, which
    with 20 batch means rejected right predictions far more often than alpha)."""
    from grpo_align.report import training

    assert training.FAMILY_ALPHA == ALPHA
    assert not hasattr(training, "norm")
    assert training.family_wise_bound is family_wise_bound
