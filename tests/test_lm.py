"""The language-model path: tokenizer, task, exact answer probabilities, the LM trainer.

Fast (a few seconds each on 2 cores): a 1-layer, 32-wide GPT-2 fitted for a moment to the
noisy labels of a handful of questions. Statistical checks draw their tolerances from
standard errors.
"""

from __future__ import annotations

import copy
import json
import math
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import grpo_align as ga
from grpo_align.errors import InputError
from grpo_align.lm.experiment import LMExperimentConfig, predict, run_experiment
from grpo_align.lm.model import ModelConfig, build_model
from grpo_align.lm.probs import (
    answer_probabilities,
    encode_prompts,
    sample_completions,
    token_logprobs,
)
from grpo_align.lm.sft import SFTConfig, supervised_finetune
from grpo_align.lm.task import ANSWER_TOKENS, Task, build_task, noisy_labels, task_words
from grpo_align.lm.tokenizer import EOS, UNK, build_tokenizer
from grpo_align.lm.trainer import LMTrainConfig, train_lm
from grpo_align.training.loss import grpo_loss
from tolerances import sequence_probability_rtol

TINY = ModelConfig(n_layer=1, n_embd=32, n_head=2)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def setup():
    """(task, tokenizer, reference model): 3 + 3 questions, 120 SFT steps."""
    torch.set_num_threads(1)
    task = build_task(3, 3, seed=1)
    tok = build_tokenizer(task_words())
    model = build_model(tok, TINY, seed=1)
    supervised_finetune(
        model,
        tok,
        task,
        noisy_labels(task, 20, low=0.2, high=0.8, junk_rate=0.3, seed=1),
        SFTConfig(steps=120, lr=1e-2),
    )
    return task, tok, model


# ---------------------------------------------------------------- tokenizer and task
def test_tokenizer_round_trip_and_save_load(tmp_path):
    from transformers import AutoTokenizer

    tok = build_tokenizer(task_words())
    text = "is ant eats bee ? :"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 6 and UNK not in tok.convert_ids_to_tokens(ids)
    assert tok.decode(ids) == text
    tok.save_pretrained(tmp_path)
    back = AutoTokenizer.from_pretrained(tmp_path)
    assert back(text, add_special_tokens=False)["input_ids"] == ids
    assert back.eos_token == EOS and back.pad_token_id == back.eos_token_id
    eos, unk, yes = back.eos_token_id, back.convert_tokens_to_ids(UNK), back.convert_tokens_to_ids("yes")
    # exactly one token sequence decodes to a candidate's text
    assert back.decode([yes, eos], skip_special_tokens=True) == "yes"
    assert back.decode([yes, unk], skip_special_tokens=True) != "yes"
    assert back.decode([yes, yes], skip_special_tokens=True) != "yes"
    assert back("blorp", add_special_tokens=False)["input_ids"] == [unk]


def test_tokenizer_rejects_words_with_spaces():
    with pytest.raises(InputError, match="words"):
        build_tokenizer(["two words"])


def test_task_rewards_and_shapes():
    task = build_task(4, 5, seed=3)
    assert len(task) == 9 and len(set(task.prompts)) == 9
    for q in task.questions:
        best = q.candidates[q.correct]
        assert q.reward(best) == 1.0
        assert all(q.reward(c) == 0.0 for c in q.candidates if c != best)
        assert q.reward(best + " " + best) == 0.0 and q.reward("") == 0.0 and q.reward("maybe") == 0.0
    with pytest.raises(InputError):
        build_task(0, 0)


# ---------------------------------------------------------------- exact probabilities
def _all_completions(tok, n_tokens=2):
    """Every distinct completion of at most 2 tokens: [<eos>] and [a, b] for a != <eos>."""
    eos = tok.eos_token_id
    vocab = range(len(tok))
    rows = [[eos, eos]] + [[a, b] for a in vocab if a != eos for b in vocab]
    mask = [[1, 0]] + [[1, 1]] * (len(rows) - 1)
    return torch.tensor(rows), torch.tensor(mask, dtype=torch.float64)


def test_answer_probabilities_agree_with_full_enumeration(setup):
    """Candidates + 'anything else' = 1, and each candidate's mass is that of its one sequence."""
    task, tok, model = setup
    # a check of logic (every completion enumerated, candidates found among them): in float64,
    # so that the float32 rounding of two batch shapes is not in it
    model = copy.deepcopy(model).double()
    probs = answer_probabilities(model, tok, task)
    assert np.all(probs.probs >= 0) and np.all(probs.other >= 0)
    assert np.all(probs.probs.sum(axis=1) <= 1 + 1e-12)
    with torch.no_grad():
        scale = float(model(input_ids=torch.arange(len(tok))[:, None]).logits.abs().max())
    rel = sequence_probability_rtol(ANSWER_TOKENS, TINY.n_layer, TINY.n_embd, torch.float64, scale)
    rows, mask = _all_completions(tok)
    prompts = encode_prompts(tok, task)
    texts = tok.batch_decode(rows, skip_special_tokens=True)
    for c, q in enumerate(task.questions):
        with torch.no_grad():
            lp = (token_logprobs(model, prompts[c].expand(len(rows), -1), rows) * mask).sum(1).exp().numpy()
        assert lp.sum() == pytest.approx(1.0, abs=1e-9)  # the enumeration is complete
        for k, cand in enumerate(q.candidates):
            assert probs.probs[c, k] == pytest.approx(lp[[t == cand for t in texts]].sum(), rel=rel)
        assert probs.other[c] == pytest.approx(lp[[t not in q.candidates for t in texts]].sum(), abs=1e-9)


def test_sampling_frequencies_match_exact_probabilities(setup):
    """Our sampler and transformers' generate(do_sample, top_k=0, top_p=1) both draw from pi."""
    task, tok, model = setup
    probs = answer_probabilities(model, tok, task)
    table = np.concatenate([probs.probs, probs.other[:, None]], axis=1)
    n = 3000
    comp = sample_completions(
        model, encode_prompts(tok, task), n, 2, tok.eos_token_id, torch.Generator().manual_seed(5)
    )
    texts = tok.batch_decode(comp.tokens, skip_special_tokens=True)
    torch.manual_seed(6)
    prompts = encode_prompts(tok, task)
    gen = model.generate(
        input_ids=prompts.repeat_interleave(n, 0),
        attention_mask=torch.ones_like(prompts.repeat_interleave(n, 0)),
        do_sample=True,
        top_k=0,
        top_p=1.0,
        temperature=1.0,
        max_new_tokens=2,
        pad_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    gen_texts = tok.batch_decode(gen[:, prompts.shape[1] :], skip_special_tokens=True)
    for source in (texts, gen_texts):
        freq = np.zeros_like(table)
        for c, q in enumerate(task.questions):
            for t in source[c * n : (c + 1) * n]:
                freq[c, q.candidates.index(t) if t in q.candidates else -1] += 1.0 / n
        se = np.sqrt(table * (1 - table) / n)
        # 4.5 standard errors: a false alarm over ~24 cells has probability < 2e-4
        assert np.all(np.abs(freq - table) <= 4.5 * se + 1e-12), np.max(np.abs(freq - table) / (se + 1e-12))


# ---------------------------------------------------------------- prediction
def test_prediction_of_binary_questions_matches_closed_form(setup):
    """Wrong answers and 'anything else' share reward 0, so the binary closed form applies."""
    task, tok, model = setup
    probs = answer_probabilities(model, tok, task)
    for beta, g in ((0.5, 8), (1.0, 2)):
        pred = predict(task, probs, ga.GRPO(group_size=g, beta=beta))
        assert pred.success
        for c, q in enumerate(task.questions):
            p0 = probs.probs[c, q.correct]
            assert pred.grpo[c, q.correct] == pytest.approx(ga.binary_policy(p0, beta, g), abs=1e-8)
            assert pred.grpo[c].sum() == pytest.approx(1.0, abs=1e-9)
            # the zero-reward outputs keep their reference ratios (THEORY.md section 5)
            zero = [k for k in range(len(q.candidates)) if k != q.correct]
            ratios = pred.grpo[c, [*zero, -1]] / pred.reference[c, [*zero, -1]]
            assert np.allclose(ratios, ratios[0], rtol=1e-6)


# ---------------------------------------------------------------- the loss on the LM
def _binary_preference(p, g):
    """P_G(correct), P_G(wrong) for rewards 1/0, shift_scale, ddof 0 (THEORY.md section 6), by hand."""
    pc = sum(math.comb(g - 1, k) * p**k * (1 - p) ** (g - 1 - k) * math.sqrt((g - 1 - k) / (k + 1)) for k in range(g))
    pw = -sum(math.comb(g - 1, k) * p**k * (1 - p) ** (g - 1 - k) * math.sqrt(k / (g - k)) for k in range(g))
    return pc, pw


@pytest.mark.parametrize("aggregation", ["sequence_mean", "constant"])
def test_loss_gradient_at_theta_old_matches_expected_gradient(setup, aggregation):
    """Mean sampled gradient of grpo_loss at theta = theta_old equals the exact expectation.

    The expectation is built by enumerating every completion o: policy part
    -sum_o pi(o) P_G(o) w(o) grad log pi(o), k3 part sum_o pi(o) w(o) sum_t (1 - pi_ref_t/pi_t) grad log pi_t,
    with w(o) = 1/|o| (sequence mean) or 1/T (constant). Not a line of the trainer is used.
    """
    task, tok, ref = setup
    task = Task(task.questions[:2])
    policy = copy.deepcopy(ref)
    with torch.no_grad():  # move the policy away from the reference so the penalty acts
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    algo = ga.GRPO(group_size=4, beta=0.3, aggregation=aggregation)
    params = [p for p in policy.parameters()]
    prompts = encode_prompts(tok, task)
    rows, mask = _all_completions(tok)
    texts = tok.batch_decode(rows, skip_special_tokens=True)
    expected = [torch.zeros_like(p) for p in params]
    for c, q in enumerate(task.questions):
        pr = prompts[c].expand(len(rows), -1)
        lp = token_logprobs(policy, pr, rows)
        with torch.no_grad():
            lref = token_logprobs(ref, pr, rows)
            seq_p = (lp.detach() * mask).sum(1).exp()
            correct = torch.tensor([t == q.candidates[q.correct] for t in texts])
            p_corr = float(seq_p[correct].sum())
            pc, pw = _binary_preference(p_corr, 4)
            pref = torch.where(correct, pc, pw).double()
            w = (
                1.0 / mask.sum(1)
                if aggregation == "sequence_mean"
                else torch.full((len(rows),), 0.5, dtype=torch.float64)
            )
            tok_w = (seq_p * w)[:, None] * mask
            pen = 1.0 - torch.exp(lref - lp.detach())
        objective = -(tok_w * pref[:, None] * lp).sum() + algo.beta * (tok_w * pen * lp).sum()
        # the loss averages over the questions' sequences: each question weighs 1/C
        grads = torch.autograd.grad(objective / len(task), params)
        expected = [e + g for e, g in zip(expected, grads, strict=False)]
    expected_vec = torch.cat([e.reshape(-1) for e in expected])

    gen = torch.Generator().manual_seed(11)
    samples = []
    for _ in range(150):
        comp = sample_completions(policy, prompts, 4 * 8, 2, tok.eos_token_id, gen)  # 8 groups of 4 per question
        texts_s = tok.batch_decode(comp.tokens, skip_special_tokens=True)
        rewards = task.rewards(comp.question.tolist(), texts_s).reshape(-1, 4)
        adv = torch.as_tensor(ga.group_advantages(rewards, algo).reshape(-1))
        lp = token_logprobs(policy, prompts[comp.question], comp.tokens)
        with torch.no_grad():
            lref = token_logprobs(ref, prompts[comp.question], comp.tokens)
        out = grpo_loss(lp, lp.detach(), lref, adv, comp.mask, algo, max_length=2)
        samples.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(out.loss, params)]))
    s = torch.stack(samples)  # (N, P)
    n = s.shape[0]
    mean = s.mean(0)
    unit = expected_vec / expected_vec.norm()
    proj = s @ unit
    # along the expected direction: unbiased within 4 standard errors
    assert abs(float(proj.mean() - expected_vec.norm())) < 4 * float(proj.std() / math.sqrt(n))
    # and overall: ||mean - expected||^2 is of the order of the noise, trace(cov)/N
    noise = float(s.var(0).sum() / n)
    assert float((mean - expected_vec).pow(2).sum()) < 2.0 * noise
    assert float(expected_vec.norm() ** 2) > 5 * noise  # the test can see a wrong direction


# ---------------------------------------------------------------- training, resume, experiment
def test_training_smoke_and_resume_is_bit_for_bit(setup, tmp_path):
    task, tok, ref = setup
    algo = ga.GRPO(group_size=4, beta=0.5)
    config = LMTrainConfig(
        steps=6, eval_every=2, n_batches=2, tail_fraction=0.5, checkpoint_every=3, warmup_steps=2, inner_iterations=2
    )
    full = train_lm(copy.deepcopy(ref), ref, tok, task, algo, config, out_dir=tmp_path / "a")
    first = copy.deepcopy(ref)
    part = train_lm(first, ref, tok, task, algo, config, out_dir=tmp_path / "b", stop_after=3)
    assert part.record_steps[-1] == 2
    resumed_model = copy.deepcopy(ref)
    resumed = train_lm(resumed_model, ref, tok, task, algo, config, out_dir=tmp_path / "b")
    assert np.array_equal(full.trajectory, resumed.trajectory)
    assert full.metrics == resumed.metrics
    assert [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()] == full.metrics
    assert full.trajectory.shape == (4, len(task), task.max_candidates + 1)
    assert np.allclose(full.trajectory.sum(axis=2), 1.0)
    assert any(m["charts/clip_fraction"] >= 0 for m in full.metrics)
    assert all(np.isfinite(m["losses/loss"]) for m in full.metrics)
    # a checkpoint of another run is refused, not silently continued
    with pytest.raises(InputError, match="different run"):
        train_lm(copy.deepcopy(ref), ref, tok, task, algo.replace(beta=0.1), config, out_dir=tmp_path / "b")


def test_learning_rate_schedule():
    """Warm-up, constant, then the linear decay: over the tail by default, or over
    ``decay_steps`` before it with the tail at lr * lr_final (values by hand)."""
    over_tail = LMTrainConfig(steps=100, lr=1e-3, tail_fraction=0.4, lr_final=0.2, warmup_steps=4, eval_every=5)
    assert over_tail.tail_start == 60
    assert over_tail.lr_at(0) == pytest.approx(1e-3 / 5) and over_tail.lr_at(4) == pytest.approx(1e-3)
    assert over_tail.lr_at(59) == pytest.approx(1e-3)
    assert over_tail.lr_at(80) == pytest.approx(1e-3 * (1 - 0.8 * 20 / 40))
    before = LMTrainConfig(
        steps=100, lr=1e-3, tail_fraction=0.4, lr_final=0.2, warmup_steps=4, eval_every=5, decay_steps=20
    )
    assert before.lr_at(39) == pytest.approx(1e-3)
    assert before.lr_at(50) == pytest.approx(1e-3 * (1 - 0.8 * 10 / 20))
    assert before.lr_at(60) == pytest.approx(2e-4) and before.lr_at(99) == pytest.approx(2e-4)
    with pytest.raises(InputError, match="decay_steps"):
        LMTrainConfig(steps=100, tail_fraction=0.4, warmup_steps=4, eval_every=5, decay_steps=57)


def test_several_groups_per_question(setup):
    """groups_per_question samples that many groups of G per question per step (the
    metrics count the tokens of all of them) and trains."""
    task, tok, ref = setup
    algo = ga.GRPO(group_size=4, beta=0.5, aggregation="group_token_mean")
    config = LMTrainConfig(steps=2, eval_every=1, n_batches=2, tail_fraction=1.0, warmup_steps=0, groups_per_question=3)
    res = train_lm(copy.deepcopy(ref), ref, tok, task, algo, config)
    # every sampled answer has at least 1 and at most max_new_tokens valid tokens
    assert all(len(task) * 12 <= m["charts/tokens"] <= len(task) * 12 * config.max_new_tokens for m in res.metrics)
    assert all(np.isfinite(m["losses/loss"]) for m in res.metrics)
    with pytest.raises(InputError, match="groups_per_question"):
        LMTrainConfig(groups_per_question=0)


def test_train_config_rejects_bad_values():
    with pytest.raises(TypeError):
        LMTrainConfig(aggregation="constant")  # type: ignore[call-arg]  # the GRPO spec carries it
    with pytest.raises(InputError, match="lr"):
        LMTrainConfig(lr=0)
    with pytest.raises(InputError, match="steps"):
        LMTrainConfig(steps=10, eval_every=10, n_batches=6)


def test_experiment_writes_summary(tmp_path):
    config = LMExperimentConfig(
        n_binary=2,
        n_choice=2,
        n_labels=10,
        model=TINY,
        sft=SFTConfig(steps=20),
        train=LMTrainConfig(steps=8, eval_every=2, n_batches=2, tail_fraction=0.5, warmup_steps=1),
        runs=(ga.GRPO(group_size=2, beta=0.5), ga.GRPO(group_size=4, beta=1.0)),
    )
    result = run_experiment(config, tmp_path, plots=True)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary) == 2
    for entry, algo in zip(summary, config.runs, strict=True):
        assert {"algo", "beta", "group_size", "mae", "mae_rlhf", "mae_reference", "questions", "steps"} <= set(entry)
        assert (entry["beta"], entry["group_size"], entry["questions"], entry["steps"]) == (
            algo.beta,
            algo.group_size,
            4,
            8,
        )
        assert ga.GRPO(**entry["algo"]) == algo
        assert all(0 <= entry[k] <= 1 for k in ("mae", "mae_rlhf", "mae_reference"))
    assert all(f.exists() for f in result.figures)
    assert (tmp_path / "reference" / "tokenizer.json").exists()


def test_cli_rejects_bad_steps(capsys):
    from grpo_align.cli import main

    assert main(["lm", "--steps", "3"]) == 2
    assert "--steps" in capsys.readouterr().err


def test_too_short_a_run_says_how_many_steps_it_needs():
    """The tail's record count, not an arbitrary floor: the message names the minimum, and
    that minimum is accepted while one step fewer is not."""
    from grpo_align.lm.trainer import LMTrainConfig

    with pytest.raises(InputError, match=r"use steps >= (\d+)") as info:
        LMTrainConfig(steps=100)
    need = int(re.search(r"use steps >= (\d+)", str(info.value)).group(1))
    assert LMTrainConfig(steps=need).tail_records >= LMTrainConfig().n_batches
    with pytest.raises(InputError):
        LMTrainConfig(steps=need - 1)


def test_cached_reference_is_refitted_when_what_it_is_made_of_changes(tmp_path, monkeypatch):
    """The cache's stamp holds a fingerprint of vocabulary, questions and labels, so a model
    fitted by an older release (same settings, another vocabulary) is not reused."""
    import json

    from grpo_align.lm import experiment

    fits = []
    monkeypatch.setattr(experiment, "supervised_finetune", lambda *a, **k: fits.append(1))
    config = experiment.LMExperimentConfig(n_labels=41)  # not the shipped reference's settings: fitted
    experiment.build_reference(config, tmp_path)
    experiment.build_reference(config, tmp_path)
    assert len(fits) == 1  # fitted once, then reloaded
    stamp_file = tmp_path / "reference" / "grpo_align.json"
    stamp = json.loads(stamp_file.read_text())
    stamp["fingerprint"] = "0" * 64  # as if another vocabulary had been fitted
    stamp_file.write_text(json.dumps(stamp, sort_keys=True))
    experiment.build_reference(config, tmp_path)
    assert len(fits) == 2
    del stamp["fingerprint"]  # a stamp from before fingerprints
    stamp_file.write_text(json.dumps(stamp, sort_keys=True))
    experiment.build_reference(config, tmp_path)
    assert len(fits) == 3
