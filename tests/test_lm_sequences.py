"""Answers of different token lengths with a shared prefix on the tiny LM (THEORY.md section 10).

Quick checks: the tokenizer's ids make the tree (``yes`` shared by two answers), the
teacher-forced probabilities of answers of different lengths sum with "anything else" to 1
and match a token-by-token product, the prediction is made before training with the
sequences, and ``train_lm`` runs each aggregation and the penalty in the reward (the
penalised rewards change the advantages).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import grpo_align as ga
from grpo_align.lm.model import ModelConfig, build_model
from grpo_align.lm.probs import answer_ids, answer_probabilities, encode_prompts, token_logprobs
from grpo_align.lm.sequences import SEQUENCE_RUNS, sequence_problem
from grpo_align.lm.sft import SFTConfig, supervised_finetune
from grpo_align.lm.task import build_sequence_task, noisy_labels, task_words
from grpo_align.lm.tokenizer import build_tokenizer
from grpo_align.lm.trainer import LMTrainConfig, train_lm

TINY = ModelConfig(n_layer=1, n_embd=16, n_head=2)


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
    assert probs.probs[0, 1] == pytest.approx(math.exp(float(lp.sum())), rel=1e-10)
    assert probs.probs[0, 0] == pytest.approx(math.exp(float(lp2.sum())), rel=1e-10)
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


@pytest.mark.parametrize("algo", SEQUENCE_RUNS, ids=["sequence_mean", "group_token_mean", "constant", "k1_reward"])
def test_train_lm_runs_each_setting(seq_setup, algo):
    task, tok, model = seq_setup
    cfg = LMTrainConfig(steps=4, eval_every=1, n_batches=2, tail_fraction=0.5, warmup_steps=0, max_new_tokens=3)
    res = train_lm(copy.deepcopy(model), model, tok, task, algo, cfg)
    assert res.trajectory.shape == (5, len(task), 4)
    assert np.allclose(res.trajectory.sum(axis=2), 1.0)
    assert all(np.isfinite(m["losses/loss"]) for m in res.metrics)
