"""Trainer mappings on token sequences: the aggregation and the penalty placement each
mapping writes into ``GRPO``, checked against the trainers' own per-token formulas.

The oracle is a brute force written here from the trainers' source (verl 0.9.1
ray_trainer.py:78-117 and core_algos.py:304, OpenRLHF 0.11.2 experience_maker.py:268-311
and models/utils.py:131-159, TRL 1.16 rloo_trainer.py:1664-1690 and 1822-1833): every group
of G (output, reward level) draws enumerated, the trainer's per-token advantage formed as it
does, and the surrogate's per-token gradient at theta = theta_old accumulated in per-prefix
logits. It is compared with the engine's ``expected_gradient_tree`` for the ``GRPO`` the
mapping returns: equal where the mapping claims exactness, different where its notes say
the trainer does something the engine does not model.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import grpo_align as ga
import seq_brute as brute
from grpo_align.errors import InputError
from grpo_align.mappings.openrlhf import describe_openrlhf_mapping
from grpo_align.mappings.verl import describe_verl_mapping
from grpo_align.theory.sequence_gradient import expected_gradient_tree

TREE = [(1, 2, 9), (1, 3, 4, 5, 9), (4, 9), (5, 6, 7, 9)]  # shared branching prefixes
FLAT = [(1, 9), (2, 3, 4, 5, 9), (6, 9), (7, 3, 4, 5, 9)]  # each answer decided by its first token
REF = [0.1, 0.2, 0.3, 0.4]
SUCCESS = [0.9, 0.2, 0.4, 0.7]
PI = [0.25, 0.15, 0.35, 0.25]
G = 3

#: per-token penalty values as the trainers compute them, x = logp - logp_ref per token
_K = {"k1": lambda x: x, "k2": lambda x: x * x / 2, "k3": lambda x: math.exp(-x) + x - 1}


def _trainer_gradient(seqs, normalization, ddof, eps, aggregation, *, reward_k=None, rtg_beta=0.0, beta=0.0):
    """{prefix: {token: expected gradient}} of a trainer's per-token surrogate.

    reward_k: verl's use_kl_in_reward / TRL RLOO: beta * sum_t k(x_t) subtracted from each
    answer's reward before the group normalisation. rtg_beta: OpenRLHF without
    --use_kl_loss: -beta * x_t per token added after the normalisation and summed into a
    reward-to-go, so token j's advantage is A_i - beta sum_{s >= j} x_s.
    """
    pi, ref = np.asarray(PI), np.asarray(REF)
    cond, rcond = brute.conditionals(seqs, pi), brute.conditionals(seqs, ref)
    xs = [[math.log(cond[s[:j]][s[j]] / rcond[s[:j]][s[j]]) for j in range(len(s))] for s in seqs]
    draws = [(o, lv, pi[o] * (SUCCESS[o] if lv else 1 - SUCCESS[o])) for o in range(len(seqs)) for lv in (0, 1)]
    grad = {u: {t: 0.0 for t in ch} for u, ch in cond.items() if len(rcond[u]) >= 2}
    for group in itertools.product(draws, repeat=G):
        prob = math.prod(d[2] for d in group)
        rewards = [float(lv) for _, lv, _ in group]
        if reward_k is not None:
            rewards = [
                r - beta * sum(_K[reward_k](x) for x in xs[o]) for r, (o, _, _) in zip(rewards, group, strict=True)
            ]
        adv = brute.advantages(rewards, normalization, ddof, eps)
        for i, (o, _, _) in enumerate(group):
            s = seqs[o]
            w = 1 / (G * len(s)) if aggregation == "sequence_mean" else 1 / G
            for j in range(len(s)):
                u, tok = s[:j], s[j]
                if u not in grad:
                    continue
                coef = adv[i] - rtg_beta * sum(xs[o][j:])
                for t, q in cond[u].items():
                    grad[u][t] += prob * w * coef * ((t == tok) - q)
    return grad


def _engine_gradient(seqs, algo):
    prob = ga.Problem.from_bernoulli(REF, SUCCESS, sequences=seqs)
    return expected_gradient_tree(prob, algo, PI)


def _gap(a, b):
    assert a.keys() == b.keys()
    return max(abs(a[u][t] - b[u][t]) for u in a for t in a[u])


def _size(a):
    return max(abs(v) for ch in a.values() for v in ch.values())


# ---------------------------------------------------------------------------- verl
def _verl(**over):
    cfg = {
        "algorithm.adv_estimator": "grpo",
        "actor_rollout_ref.rollout.n": G,
        "actor_rollout_ref.actor.use_kl_loss": False,
    }
    cfg.update(over)
    return cfg


@pytest.mark.parametrize(
    ("kind", "penalty"),
    [("kl", "k1"), ("k1", "k1"), ("mse", "k2"), ("k2", "k2"), ("low_var_kl", "k3"), ("k3", "k3"), ("k3+", "k3")],
)
def test_verl_use_kl_in_reward_is_the_penalty_in_the_reward(kind, penalty):
    report = describe_verl_mapping(
        _verl(**{"algorithm.use_kl_in_reward": True, "algorithm.kl_penalty": kind, "algorithm.kl_ctrl.kl_coef": 0.2})
    )
    algo = report.algo
    assert (algo.penalty_in, algo.penalty, algo.beta) == ("reward", penalty, 0.2)
    assert "penalty_in reward" in report.row("algorithm.use_kl_in_reward").maps_to
    assert any("penalty_in='reward'" in n for n in report.notes)
    assert any("not on trees" in n for n in report.notes) == (penalty != "k1")


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean"])
def test_verl_k1_in_the_reward_is_exact_on_a_tree(mode):
    """verl subtracts beta x per token and sums the tokens: the sequence log-ratio, so the
    engine's k1 in the reward, exact with shared prefixes too."""
    algo = describe_verl_mapping(
        _verl(
            **{
                "algorithm.use_kl_in_reward": True,
                "algorithm.kl_ctrl.kl_coef": 0.4,
                "actor_rollout_ref.actor.loss_agg_mode": mode,
            }
        )
    ).algo
    verl = _trainer_gradient(TREE, "shift_scale", 1, 1e-6, algo.aggregation, reward_k="k1", beta=0.4)
    assert _gap(_engine_gradient(TREE, algo), verl) < 1e-13 * max(1.0, _size(verl))


@pytest.mark.parametrize("kind", ["mse", "low_var_kl"])
def test_verl_k2_k3_in_the_reward_exact_without_shared_prefixes_only(kind):
    """verl sums per-token k2/k3; the engine takes k of the summed log-ratio. Equal when every
    answer passes one branching prefix (FLAT), not on TREE: the report's note."""
    cfg = _verl(**{"algorithm.use_kl_in_reward": True, "algorithm.kl_penalty": kind, "algorithm.kl_ctrl.kl_coef": 0.4})
    report = describe_verl_mapping(cfg)
    algo = report.algo
    pen = algo.penalty
    flat = _trainer_gradient(FLAT, "shift_scale", 1, 1e-6, algo.aggregation, reward_k=pen, beta=0.4)
    assert _gap(_engine_gradient(FLAT, algo), flat) < 1e-13
    tree = _trainer_gradient(TREE, "shift_scale", 1, 1e-6, algo.aggregation, reward_k=pen, beta=0.4)
    assert _gap(_engine_gradient(TREE, algo), tree) > 1e-4
    assert any("not on trees" in n for n in report.notes)


@pytest.mark.parametrize(
    ("over", "key", "word"),
    [
        ({"algorithm.kl_penalty": "abs"}, "algorithm.kl_penalty", "reward"),
        ({"algorithm.kl_penalty": "full"}, "algorithm.kl_penalty", "reward"),
        ({"algorithm.kl_ctrl.type": "adaptive"}, "algorithm.kl_ctrl.type", "beta"),
        ({"algorithm.kl_ctrl.kl_coef": -1}, "algorithm.kl_ctrl.kl_coef", ">= 0"),
        (
            {"actor_rollout_ref.actor.use_kl_loss": True, "actor_rollout_ref.actor.kl_loss_coef": 0.01},
            "actor_rollout_ref.actor.use_kl_loss",
            "both",
        ),
    ],
)
def test_verl_reward_penalty_refusals_name_the_key(over, key, word):
    with pytest.raises(InputError) as info:
        describe_verl_mapping(_verl(**{"algorithm.use_kl_in_reward": True, **over}))
    assert info.value.field == key and word in str(info.value) and "\n" not in str(info.value)


def test_verl_reward_penalty_at_zero_coefficient_leaves_the_loss_penalty():
    cfg = _verl(
        **{
            "algorithm.use_kl_in_reward": True,
            "algorithm.kl_ctrl.kl_coef": 0,
            "algorithm.kl_penalty": "abs",  # never read at coefficient 0
            "actor_rollout_ref.actor.use_kl_loss": True,
            "actor_rollout_ref.actor.kl_loss_coef": 0.01,
        }
    )
    algo = describe_verl_mapping(cfg).algo
    assert (algo.penalty_in, algo.penalty, algo.beta) == ("loss", "k3", 0.01)


@pytest.mark.parametrize(
    ("mode", "agg"),
    [
        ("token-mean", "constant"),
        ("token-sum", "constant"),
        ("seq-mean-token-sum", "constant"),
        ("seq-mean-token-sum-norm", "constant"),
        ("seq-mean-token-mean", "sequence_mean"),
    ],
)
def test_verl_loss_agg_mode_sets_the_aggregation(mode, agg):
    """core_algos.py:1172-1203 agg_loss: seq-mean-token-mean averages each sequence's tokens
    (1/|o|); the others weight every token by one batch-wide number."""
    report = describe_verl_mapping(_verl(**{"actor_rollout_ref.actor.loss_agg_mode": mode}))
    assert report.algo.aggregation == report.aggregation == agg


def test_verl_k3_loss_penalty_under_each_aggregation_on_a_tree():
    """The k3 loss penalty aggregated like the policy term (losses.py:131-141): the engine's
    per-token k3 with the same weights (seq_brute, the loss-side brute force)."""
    for mode in ("token-mean", "seq-mean-token-mean"):
        cfg = _verl(
            **{
                "actor_rollout_ref.actor.use_kl_loss": True,
                "actor_rollout_ref.actor.kl_loss_coef": 0.3,
                "actor_rollout_ref.actor.loss_agg_mode": mode,
            }
        )
        algo = describe_verl_mapping(cfg).algo
        ref = brute.gradient(
            TREE, np.asarray(REF), [0.0, 1.0], [[1 - s, s] for s in SUCCESS], np.asarray(PI), G, 0.3,
            normalization="shift_scale", ddof=1, eps=1e-6, penalty="k3", aggregation=algo.aggregation,
        )  # fmt: skip
        assert _gap(_engine_gradient(TREE, algo), ref) < 1e-13


# ---------------------------------------------------------------------------- OpenRLHF
def _openrlhf(**over):
    flags = {"rollout.n_samples_per_prompt": G, "algo.advantage.estimator": "group_norm", "algo.kl.init_coef": 0.4}
    flags.update(over)
    return flags


@pytest.mark.parametrize(("mode", "agg"), [("token-mean", "constant"), ("seq-mean-token-mean", "sequence_mean")])
def test_openrlhf_loss_agg_mode_sets_the_aggregation(mode, agg):
    report = describe_openrlhf_mapping(_openrlhf(**{"actor.loss_agg_mode": mode}))
    assert report.algo.aggregation == report.aggregation == agg
    assert report.algo.penalty_in == "loss"


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean"])
def test_openrlhf_k1_reward_to_go_is_k2_in_the_loss_without_shared_prefixes(mode):
    """Without --use_kl_loss: A_i - beta sum_{s >= j} x_s per token (after the group
    normalisation). Without shared prefixes it is the engine's k2 in the loss for either
    aggregation; with shared prefixes the later tokens' log-ratios make it differ (the note)."""
    report = describe_openrlhf_mapping(_openrlhf(**{"actor.loss_agg_mode": mode}))
    algo = report.algo
    assert (algo.penalty, algo.penalty_in, algo.beta) == ("k2", "loss", 0.4)
    flat = _trainer_gradient(FLAT, "shift_scale", 1, 1e-9, algo.aggregation, rtg_beta=0.4)
    assert _gap(_engine_gradient(FLAT, algo), flat) < 1e-13
    tree = _trainer_gradient(TREE, "shift_scale", 1, 1e-9, algo.aggregation, rtg_beta=0.4)
    assert _gap(_engine_gradient(TREE, algo), tree) > 1e-4
    assert any("no shared prefixes" in n for n in report.notes)
    assert any("0.9.10" in n and "after the group normalisation" in n for n in report.notes)
    # not the penalty normalised with the reward either
    as_reward = algo.replace(penalty="k1", penalty_in="reward")
    assert _gap(_engine_gradient(FLAT, as_reward), flat) > 1e-4


def test_openrlhf_legacy_flags_give_the_same_spec():
    legacy = {"n_samples_per_prompt": G, "advantage_estimator": "group_norm", "init_kl_coef": 0.4}
    assert describe_openrlhf_mapping(legacy).algo == describe_openrlhf_mapping(_openrlhf()).algo


# ---------------------------------------------------------------------------- RLOO preset
def test_rloo_preset_is_trl_rloo_on_a_tree():
    """TRL 1.16 RLOOTrainer: reward - beta sum_t (old - ref), leave-one-out baseline, one
    sequence-level ratio (token log-probs summed) averaged over sequences: the engine's k1 in
    the reward with the constant aggregation, exact with shared prefixes; with the
    sequence_mean aggregation, or modelled as k2 in the loss, it differs there."""
    algo = ga.GRPO.preset("rloo", group_size=G, beta=0.4)
    trl = _trainer_gradient(TREE, "rloo", 0, 0.0, "constant", reward_k="k1", beta=0.4)
    assert _gap(_engine_gradient(TREE, algo), trl) < 1e-13
    assert _gap(_engine_gradient(TREE, algo.replace(aggregation="sequence_mean")), trl) > 1e-4
    assert _gap(_engine_gradient(TREE, algo.replace(penalty="k2", penalty_in="loss")), trl) > 1e-4


# ---------------------------------------------------------------------------- TRL
def test_trl_loss_type_and_ratio_corrected_k3_on_answers_of_different_lengths():
    """TRL's loss_type moves the end point once answers differ in length, and its
    ratio-corrected k3 is k2 there, not the project's kl (docs/THEORY.md section 10.7:
    ref .1/.3/.4/.2, rewards 1/1/0/0, lengths 2/5/2/5, G 3, beta .3, population std)."""
    prob = ga.Problem.from_rewards([0.1, 0.3, 0.4, 0.2], [1, 1, 0, 0], sequences=FLAT)
    got = {}
    for loss_type in ("grpo", "dapo", "dr_grpo"):
        cfg = {"loss_type": loss_type, "beta": 0.3, "num_generations": 3, "use_bias_correction_kl": True}
        algo = ga.from_trl(cfg).replace(ddof=0, eps=0.0)
        assert algo.penalty == "k2"
        got[loss_type] = round(float(ga.stationary_policy(prob, algo).policy[0, 0]), 4)
    assert got == {"grpo": 0.1551, "dapo": 0.2467, "dr_grpo": 0.2467}
    # what reading the corrected k3 as kl (psi = x + 1) would have predicted for loss_type grpo
    kl = ga.GRPO(group_size=3, beta=0.3, penalty="kl", aggregation="sequence_mean")
    assert round(float(ga.stationary_policy(prob, kl).policy[0, 0]), 4) == 0.0874


@pytest.mark.parametrize(
    ("penalty", "flat", "tree"),
    [
        ("k3", [0.2210, 0.2336, 0.2210], [0.6320, 0.6591, 0.6754]),
        ("k2", [0.1551, 0.2114, 0.2467], [0.6280, 0.6159, 0.6101]),
        ("kl", [0.0874, 0.1755, 0.2467], [0.7096, 0.6440, 0.6101]),
    ],
)
def test_the_table_of_docs_trainers(penalty, flat, tree):
    """docs/trainers.md (THEORY.md 10.7): sequence_mean / group_token_mean / constant."""
    aggs = ("sequence_mean", "group_token_mean", "constant")
    p_flat = ga.Problem.from_rewards([0.1, 0.3, 0.4, 0.2], [1, 1, 0, 0], sequences=FLAT)
    p_tree = ga.Problem.from_rewards(REF, [1, 0, 0, 1], sequences=TREE)
    got_flat = [
        ga.stationary_policy(p_flat, ga.GRPO(group_size=3, beta=0.3, penalty=penalty, aggregation=a)) for a in aggs
    ]
    got_tree = [
        ga.stationary_policy(p_tree, ga.GRPO(group_size=3, beta=0.4, penalty=penalty, aggregation=a)) for a in aggs
    ]
    assert all(r.success[0] for r in got_flat + got_tree)
    assert [round(float(r.policy[0, 0]), 4) for r in got_flat] == flat
    assert [round(float(r.policy[0, 3]), 4) for r in got_tree] == tree
