"""Answers of different token lengths with a shared prefix on the tiny LM (THEORY.md section 10).

Quick checks: the tokenizer's ids make the tree (``yes`` shared by two answers), the
teacher-forced probabilities of answers of different lengths sum with "anything else" to 1
and match a token-by-token product, the prediction is made before training with the
sequences, and ``train_lm`` runs each aggregation and the penalty in the reward (the
penalised rewards change the advantages).
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

import grpo_align as ga
from grpo_align.errors import InputError
from grpo_align.lm.model import ModelConfig, build_model
from grpo_align.lm.probs import answer_ids, answer_probabilities, encode_prompts, token_logprobs
from grpo_align.lm.sequences import (
    NO_MASSES,
    SEQUENCE_RUNS,
    YES_MASSES,
    SequenceExperimentConfig,
    run_sequence_experiment,
    sequence_problem,
)
from grpo_align.lm.sft import SFTConfig, supervised_finetune
from grpo_align.lm.task import (
    LONG_ANSWER,
    build_sequence_task,
    noisy_labels,
    sequence_labels,
    sequence_task_words,
    task_words,
)
from grpo_align.lm.tokenizer import build_tokenizer
from grpo_align.lm.trainer import LMTrainConfig, train_lm
from tolerances import sequence_probability_rtol

TINY = ModelConfig(n_layer=1, n_embd=16, n_head=2)


def _logit_scale(model, tok) -> float:
    """The magnitude of the model's logits (of every vocabulary word as a one-token input)."""
    with torch.no_grad():
        ids = torch.arange(len(tok))[:, None]
        return float(model(input_ids=ids).logits.abs().max())


@pytest.fixture(scope="module")
def seq_setup():
    torch.set_num_threads(1)
    task = build_sequence_task(4, seed=2)
    tok = build_tokenizer(task_words())
    model = build_model(tok, TINY, seed=2)
    labels = noisy_labels(task, 20, low=0.2, high=0.8, junk_rate=0.0, seed=2)
    supervised_finetune(model, tok, task, labels, SFTConfig(steps=80, lr=1e-2))
    return task, tok, model


def test_answers_form_a_tree(seq_setup):
    task, tok, model = seq_setup
    # a check of logic (the tree, the product over each answer's own tokens): in float64, so
    # that two batch shapes' float32 rounding (2e-10 apart on one CPU, 0 on another) is not in it
    model = copy.deepcopy(model).double()
    yes, yes_indeed, no = (answer_ids(tok, c) for c in task.questions[0].candidates)
    assert len(yes) == 2 and len(yes_indeed) == 3 and len(no) == 2
    assert yes[0] == yes_indeed[0] != no[0]  # the shared prefix
    probs = answer_probabilities(model, tok, task)
    prob = sequence_problem(tok, task, probs)
    assert prob.has_sequences and prob.sequences[0][1] == tuple(yes_indeed)
    np.testing.assert_allclose(prob.ref.sum(axis=1), 1.0)
    # teacher forcing of answers of different lengths: the product of the answer's own tokens
    prompts = encode_prompts(tok, task)
    with torch.no_grad():
        lp = token_logprobs(model, prompts[:1], torch.tensor([yes_indeed]))[0]
        lp2 = token_logprobs(model, prompts[:1], torch.tensor([yes]))[0]
    rel = sequence_probability_rtol(len(yes_indeed), TINY.n_layer, TINY.n_embd, torch.float64, _logit_scale(model, tok))
    assert probs.probs[0, 1] == pytest.approx(math.exp(float(lp.sum())), rel=rel)
    assert probs.probs[0, 0] == pytest.approx(math.exp(float(lp2.sum())), rel=rel)
    assert np.all(probs.other >= 0) and np.allclose(probs.probs.sum(1) + probs.other, 1.0)


def test_predictions_differ_between_settings(seq_setup):
    task, tok, model = seq_setup
    prob = sequence_problem(tok, task, answer_probabilities(model, tok, task))
    preds = [ga.stationary_policy(prob, algo) for algo in SEQUENCE_RUNS]
    assert all(np.all(p.success) for p in preds)
    pols = np.stack([p.policy for p in preds])
    # the aggregation moves the split between "yes" and "yes indeed" (same reward, lengths 2 and 3)
    assert np.max(np.abs(pols[0] - pols[1])) > 1e-3
    assert np.max(np.abs(pols[0] - pols[2])) > 1e-3


def test_long_answer_task_words_and_labels():
    task = build_sequence_task(4, seed=0, long_answer=LONG_ANSWER)
    words = sequence_task_words(task)
    assert words[: len(task_words())] == task_words()  # appended: every other id unchanged
    assert set(LONG_ANSWER.split()) <= set(words) and len(set(words)) == len(words)
    tok = build_tokenizer(words)
    ids = [answer_ids(tok, c) for c in task.questions[0].candidates]
    assert [len(i) for i in ids] == [2, len(LONG_ANSWER.split()) + 1, 2] and ids[0][0] == ids[1][0]
    labels = sequence_labels(task, 20, YES_MASSES, NO_MASSES)
    yes_q = [i for i, q in enumerate(task.questions) if q.rewards[0] == 1.0]
    no_q = [i for i, q in enumerate(task.questions) if q.rewards[2] == 1.0]
    assert len(yes_q) == len(no_q) == 2
    # the i-th question of each kind gets the i-th frequencies, counted out of 20
    for kind, masses in ((yes_q, YES_MASSES), (no_q, NO_MASSES)):
        for i, c in enumerate(kind):
            cands = task.questions[c].candidates
            assert [labels[c].get(a, 0) for a in cands] == [round(20 * m) for m in masses[i % len(masses)]]
    for bad in ([], [(0.5, 0.5)], [(0.6, 0.6, -0.2)], [(0.2, 0.2, 0.2)]):
        with pytest.raises(InputError) as info:
            sequence_labels(task, 20, bad, NO_MASSES)
        assert info.value.field == "yes_masses"
    for bad_answer in ("no indeed", "yes", ""):
        with pytest.raises(InputError) as info:
            build_sequence_task(2, long_answer=bad_answer)
        assert info.value.field == "long_answer"


def test_designed_task_separates_the_aggregations():
    """On the designed references (no model: the frequencies themselves), the settings'
    predictions differ by several times a run's standard error (about 0.003): the mean
    |difference| between sequence_mean and constant is above 0.05, each pair above 0.02."""
    task = build_sequence_task(8, seed=0, long_answer=LONG_ANSWER)
    tok = build_tokenizer(sequence_task_words(task))
    labels = sequence_labels(task, 20, YES_MASSES, NO_MASSES)
    ref = np.array([[lab.get(c, 0) / 20 for c in q.candidates] for q, lab in zip(task.questions, labels, strict=True)])
    seqs = [[tuple(answer_ids(tok, c)) for c in q.candidates] for q in task.questions]
    prob = ga.Problem.from_rewards(ref, [list(q.rewards) for q in task.questions], sequences=seqs)
    pols = [np.asarray(ga.stationary_policy(prob, algo).policy) for algo in SEQUENCE_RUNS]
    gaps = {(i, j): float(np.mean(np.abs(pols[i] - pols[j]))) for i in range(4) for j in range(i + 1, 4)}
    assert gaps[(0, 2)] > 0.05
    assert min(gaps.values()) > 0.02, gaps


def test_sequence_experiment_writes_a_summary_and_resumes(tmp_path):
    """Two short runs end to end: the summary holds every setting's prediction, each run's
    measurement and z-scores, and a rerun reuses the checkpoints (same numbers)."""
    torch.set_num_threads(1)
    train = LMTrainConfig(steps=6, eval_every=1, n_batches=2, tail_fraction=0.5, warmup_steps=0, max_new_tokens=6)
    config = SequenceExperimentConfig(
        n_questions=2, model=TINY, sft=SFTConfig(steps=80, lr=1e-2), train=train, runs=SEQUENCE_RUNS[:2]
    )
    runs = run_sequence_experiment(config, tmp_path)
    summary = json.loads((tmp_path / "sequences.json").read_text())
    assert summary["kind"] == "lm-sequences" and summary["trainer"] == "grpo_align"
    assert list(summary["predicted"]) == ["sequence_mean", "group_token_mean"]
    for run, entry in zip(runs, summary["runs"], strict=True):
        np.testing.assert_allclose(entry["measured"], run.measured, rtol=1e-12)
        se = np.asarray(entry["stderr"])
        gap = np.asarray(entry["measured"]) - np.asarray(summary["predicted"][entry["name"]])
        finite = se > 0  # a 6-step run can leave an answer's probability unchanged
        assert finite.any()
        np.testing.assert_allclose(np.asarray(entry["z"], dtype=object)[finite].astype(float), (gap / se)[finite])
    again = run_sequence_experiment(config, tmp_path)  # resumed from the finished checkpoints
    for a, b in zip(runs, again, strict=True):
        np.testing.assert_array_equal(a.measured, b.measured)


@pytest.mark.parametrize("algo", SEQUENCE_RUNS, ids=["sequence_mean", "group_token_mean", "constant", "k1_reward"])
def test_train_lm_runs_each_setting(seq_setup, algo):
    task, tok, model = seq_setup
    cfg = LMTrainConfig(steps=4, eval_every=1, n_batches=2, tail_fraction=0.5, warmup_steps=0, max_new_tokens=3)
    res = train_lm(copy.deepcopy(model), model, tok, task, algo, cfg)
    assert res.trajectory.shape == (5, len(task), 4)
    assert np.allclose(res.trajectory.sum(axis=2), 1.0)
    assert all(np.isfinite(m["losses/loss"]) for m in res.metrics)
