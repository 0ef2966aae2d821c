"""TRL parity: one identical batch through TRL's GRPO loss and ours gives the same value
and gradient; the GRPOConfig -> GRPO mapping. Skipped when trl is not installed."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("trl")
torch = pytest.importorskip("torch")

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grpo_align as ga
from grpo_align.errors import InputError
from grpo_align.integrations.trl import PredictionGapCallback
from grpo_align.lm.model import ModelConfig, build_model, save_pretrained
from grpo_align.lm.probs import encode_prompts, token_logprobs
from grpo_align.lm.task import build_task, task_words
from grpo_align.lm.tokenizer import build_tokenizer
from grpo_align.mappings.trl import grpo_from_trl, trl_aggregation, trl_kwargs_from_grpo
from grpo_align.training.loss import grpo_loss
from tolerances import gamma, logit_error

# transformers and trl warn about their own deprecations while building a trainer
pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.filterwarnings("ignore::UserWarning")]


def _config(tmp_path, **kw):
    from trl import GRPOConfig

    base = dict(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        report_to="none",
        max_completion_length=2,
        per_device_train_batch_size=8,
        num_generations=4,
        beta=0.3,
        use_bias_correction_kl=False,
    )
    base.update(kw)
    return GRPOConfig(**base)


def test_trl_defaults_are_what_the_docs_say(tmp_path):
    """The facts docs/lm.md relies on, read from the installed TRL."""
    from trl import GRPOConfig

    c = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    assert (c.beta, c.loss_type, c.scale_rewards, c.num_generations) == (0.0, "dapo", "group", 8)
    assert (c.temperature, c.top_p) == (1.0, 1.0) and c.top_k in (0, None)
    spec = ga.from_trl(c)
    assert (spec.group_size, spec.beta, spec.normalization, spec.ddof, spec.eps) == (8, 0.0, "shift_scale", 1, 1e-4)
    assert spec.penalty == ("k2" if getattr(c, "use_bias_correction_kl", False) else "k3")
    assert spec.aggregation == "constant" == ga.GRPO.preset("trl").aggregation  # loss_type "dapo"
    assert ga.stationary_policy(ga.Problem.from_rewards([0.3, 0.7], [1.0, 0.0]), spec).status[0] != "interior"


def test_spec_mapping_and_refusals(tmp_path):
    spec = grpo_from_trl(_config(tmp_path, scale_rewards="none", loss_type="dr_grpo"))
    assert (spec.normalization, spec.penalty, spec.beta, spec.group_size) == ("shift", "k3", 0.3, 4)
    assert spec.aggregation == "constant"
    assert trl_aggregation(_config(tmp_path, loss_type="grpo")) == ("sequence_mean", "max_length")
    assert grpo_from_trl(_config(tmp_path, loss_type="grpo")).aggregation == "sequence_mean"
    assert grpo_from_trl(_config(tmp_path, use_bias_correction_kl=True)).penalty == "k2"
    refused = [
        (dict(scale_rewards="batch"), "scale_rewards"),
        (dict(temperature=0.7), "temperature"),
        (dict(top_p=0.9), "top_p"),
        (dict(top_k=5), "top_k"),
        (dict(loss_type="vespo"), "loss_type"),
        (dict(sync_ref_model=True), "sync_ref_model"),
        (dict(generation_kwargs={"temperature": 0.5}), "generation_kwargs.temperature"),
        (dict(importance_sampling_level="sequence", use_bias_correction_kl=True), "importance_sampling_level"),
        (dict(mask_truncated_completions=True), "mask_truncated_completions"),
        (dict(top_entropy_quantile=0.2), "top_entropy_quantile"),
        (dict(multi_objective_aggregation="normalize_then_sum"), "multi_objective_aggregation"),
    ]
    for bad, field in refused:
        with pytest.raises(InputError) as info:
            grpo_from_trl(_config(tmp_path, **bad))
        assert info.value.field == field, bad


def test_mapping_tables_are_trl_facts():
    """TRL_KEYS' defaults and the known-key list are those of the installed TRL's dataclasses
    (the `trl grpo` script's: GRPOScriptArguments, GRPOConfig, ModelConfig, DatasetMixtureConfig)."""
    import dataclasses

    import trl
    from trl import DatasetMixtureConfig, GRPOConfig, ModelConfig
    from trl.scripts.grpo import GRPOScriptArguments

    from grpo_align.mappings.trl import TRL_INERT_KEYS, TRL_KEYS, TRL_VERSION

    if trl.__version__ != TRL_VERSION:
        pytest.skip(f"tables checked against TRL {TRL_VERSION}, installed {trl.__version__}")
    fields = {
        f.name: f
        for cls in (GRPOScriptArguments, GRPOConfig, ModelConfig, DatasetMixtureConfig)
        for f in dataclasses.fields(cls)
    }
    assert set(TRL_KEYS) | TRL_INERT_KEYS == set(fields) | {"env"}
    for key, entry in TRL_KEYS.items():
        assert fields[key].default == entry.default, key


_GRID = [
    ga.GRPO(group_size=g, beta=b, normalization=n, ddof=d, eps=e, penalty=p, aggregation=a)
    for g, b, (n, d, e), p, a in [
        (2, 0.0, ("shift_scale", 1, 1e-4), "k2", "constant"),
        (3, 0.04, ("shift", 0, 0.0), "k3", "sequence_mean"),
        (8, 1.0, ("shift_scale", 1, 1e-4), "k3", "constant"),
        (16, 0.2, ("shift", 0, 0.0), "k2", "sequence_mean"),
    ]
]


@pytest.mark.parametrize(
    "algo",
    [
        ga.GRPO.preset("trl"),
        ga.GRPO.preset("trl", beta=0.3),
        ga.GRPO.preset("trl", beta=0.5, penalty="k3", group_size=4),
        ga.GRPO.preset("dr_grpo", beta=0.1),
        *_GRID,
    ],
    ids=repr,
)
def test_realgrpo_config_round_trip(tmp_path, algo):
    from trl import GRPOConfig

    kwargs = trl_kwargs_from_grpo(algo)
    batch = kwargs["num_generations"]  # TRL wants whole groups in a batch
    config = GRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", per_device_train_batch_size=batch, **kwargs
    )
    assert grpo_from_trl(config) == algo
    assert grpo_from_trl(kwargs) == algo  # the same keys in a config file
    report = ga.mappings.describe_trl_mapping(config)
    assert report.seen_version == report.checked_version and report.row("output_dir").source == "given"


@pytest.fixture(scope="module")
def trl_setup(tmp_path_factory):
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("model")
    task = build_task(2, 0, seed=2)
    tok = build_tokenizer(task_words())
    save_pretrained(build_model(tok, ModelConfig(n_layer=1, n_embd=32, n_head=2), seed=3), tok, path)
    return task, tok, path


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "bnpo", "dr_grpo"])
def test_one_batch_same_loss_and_gradient_as_trl(trl_setup, tmp_path, loss_type):
    from datasets import Dataset
    from trl import GRPOTrainer

    task, tok, path = trl_setup
    args = _config(tmp_path, loss_type=loss_type, epsilon=0.2, epsilon_high=0.28)
    trainer = GRPOTrainer(
        model=str(path),
        reward_funcs=lambda completions, **kw: [0.0] * len(completions),
        args=args,
        train_dataset=Dataset.from_list([{"prompt": p} for p in task.prompts]),
        processing_class=tok,
    )
    model = trainer.model
    model.train()
    trainer.current_gradient_accumulation_steps = 1
    g = torch.Generator().manual_seed(0)
    prompts = encode_prompts(tok, task).repeat_interleave(4, 0)  # (8, P)
    completions = torch.randint(1, len(tok), (8, 2), generator=g)
    completions[1, 0] = tok.eos_token_id  # an empty answer: one valid token
    completions[1, 1] = tok.eos_token_id
    completions[2, 1] = tok.eos_token_id
    mask = torch.ones(8, 2, dtype=torch.long)
    mask[1, 1] = 0
    with torch.no_grad():
        base = token_logprobs(model, prompts, completions).float()
    # old and reference log-probs away from the current ones, so clip and penalty both act
    old = base + 0.4 * torch.randn(base.shape, generator=g)
    ref = base + 0.5 * torch.randn(base.shape, generator=g)
    adv = torch.randn(8, generator=g)
    inputs = dict(
        prompt_ids=prompts,
        prompt_mask=torch.ones_like(prompts),
        completion_ids=completions,
        completion_mask=mask,
        advantages=adv,
        old_per_token_logps=old,
        ref_per_token_logps=ref,
        num_items_in_batch=mask.sum(),
    )
    model.zero_grad()
    trl_loss = trainer._compute_loss(model, inputs)
    trl_loss.backward()
    trl_grads = [p.grad.clone() for p in model.parameters()]

    model.zero_grad()
    # loss_type -> (aggregation, normaliser of "constant"): dapo/bnpo divide by the batch's
    # valid tokens (constant in the many-groups limit), dr_grpo by B * max_completion_length
    agg, constant_by = {
        "grpo": ("sequence_mean", "max_length"),
        "dapo": ("constant", "batch_tokens"),
        "bnpo": ("constant", "batch_tokens"),
        "dr_grpo": ("constant", "max_length"),
    }[loss_type]
    assert trl_aggregation(args) == (agg, constant_by)
    spec = grpo_from_trl(args).replace(aggregation=agg)
    logp = token_logprobs(model, prompts, completions)
    out = grpo_loss(
        logp,
        old.double(),
        ref.double(),
        adv.double(),
        mask.double(),
        spec,
        clip_eps_low=args.epsilon,
        clip_eps_high=args.epsilon_high,
        max_length=args.max_completion_length,
        constant_by=constant_by,
    )
    out.loss.backward()
    assert float(out.clip_fraction) > 0  # the clip is active in this batch
    # TRL's log-softmax, ratios and mean are float32, ours float64 after the same float32
    # logits: Higham's bound for a reduction over the vocabulary and the batch's tokens, in
    # units of the terms (advantages and ratios of order 1, logits of order ``scale``)
    with torch.no_grad():
        scale = float(model(input_ids=torch.cat([prompts, completions], 1)).logits.abs().max())
    loss_tol = 4 * gamma(len(tok) + mask.numel(), torch.float32) * (1 + scale)
    assert out.loss.item() == pytest.approx(trl_loss.item(), rel=0, abs=loss_tol)
    # the backward pass is float32 in both through the same network: the logits' bound, twice
    grad_rtol = 2 * logit_error(1, 32, torch.float32)
    for ours, theirs in zip([p.grad for p in model.parameters()], trl_grads, strict=False):
        atol = grad_rtol * float(theirs.abs().max())
        assert torch.allclose(ours.double(), theirs.double(), rtol=grad_rtol, atol=atol)


def test_callback_measures_gap(trl_setup):
    task, tok, path = trl_setup
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    cb = PredictionGapCallback(tok, task, [0.5] * len(task), every=2)
    from types import SimpleNamespace

    state = SimpleNamespace(global_step=0)
    cb.on_train_begin(None, state, None, model=model)
    state.global_step = 1
    cb.on_step_end(None, state, None, model=model)  # not a multiple of every: nothing measured
    state.global_step = 2
    cb.on_step_end(None, state, None, model=model)
    assert [r.step for r in cb.history] == [0, 2]
    logs: dict = {}
    cb.on_log(None, state, None, logs=logs)
    assert logs["charts/prediction_gap"] == pytest.approx(np.mean(np.abs(np.array(cb.history[-1].correct) - 0.5)))
    with pytest.raises(InputError):
        PredictionGapCallback(tok, task, [0.5], every=2)


@pytest.mark.slow
def test_two_processes_under_torchrun(tmp_path):
    """Data-parallel on CPU (gloo): the same command, two processes, one gap log from rank 0."""
    import json
    import shutil
    import subprocess

    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            "torchrun",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "grpo_align.cli",
            "lm",
            "--trl",
            "--steps",
            "2",
            "--out",
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "trl_summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 2
    lines = (tmp_path / "trl_gap.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0]  # rank 0 alone writes; every=10 > 2 steps


def _tiny_sequence_config(n_questions: int = 2):
    from grpo_align.lm.sequences import SequenceExperimentConfig
    from grpo_align.lm.sft import SFTConfig

    return SequenceExperimentConfig(
        n_questions=n_questions, model=ModelConfig(n_layer=1, n_embd=32, n_head=2), sft=SFTConfig(steps=20)
    )


def test_sequence_task_under_trl_default_loss_type(tmp_path):
    """A handful of TRL steps on yes / yes indeed it is true / no with TRL's default
    loss_type: the config reads back as "dapo" and as the spec, completions may be 6 tokens
    long, the learning rate decays over the tail, and the callback measures distributions
    over the three answers."""
    from grpo_align.integrations.trl import AGGREGATIONS, run_trl_sequence_experiment
    from grpo_align.lm.probs import answer_probabilities
    from grpo_align.lm.sequences import sequence_task

    torch.set_num_threads(1)
    algo = ga.GRPO.preset("trl", beta=0.5, group_size=4, penalty="k3")
    config = _tiny_sequence_config()
    res = run_trl_sequence_experiment(tmp_path, algo, steps=4, every=2, experiment=config)
    settings = res.trl_settings
    assert settings["loss_type"] == "dapo" and settings["max_completion_length"] == 6  # yes indeed it is true <eos>
    assert grpo_from_trl(settings) == algo  # round trip of what trained
    assert [r.step for r in res.history] == [0, 2, 4]
    task, tok = sequence_task(config)
    for rec in res.history:
        probs = np.array(rec.probs)
        assert probs.shape == (2, 3) and np.all(probs >= 0) and np.all(probs.sum(axis=1) <= 1 + 1e-12)
    # the first record is the reference's own teacher-forced probabilities, independently recomputed
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(tmp_path / "reference")
    direct = answer_probabilities(ref, tok, task).probs
    np.testing.assert_allclose(res.history[0].probs, direct, rtol=1e-10)
    np.testing.assert_allclose(res.reference, direct / direct.sum(axis=1, keepdims=True), rtol=1e-10)
    assert res.measured.shape == res.stderr.shape == (2, 3) and res.other.shape == (2,)
    np.testing.assert_allclose(res.measured.sum(axis=1), 1.0)
    assert set(res.predicted) == set(AGGREGATIONS)
    for p in res.predicted.values():
        np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert res.nearest in AGGREGATIONS and np.isfinite(res.mae())
    with pytest.raises(InputError) as info:  # TRL has no loss_type for the per-group token mean
        run_trl_sequence_experiment(tmp_path, algo.replace(aggregation="group_token_mean"), steps=1)
    assert info.value.field == "aggregation"


def test_trl_schedule_decays_over_the_tail(tmp_path):
    """The sequence runs' GRPOConfig: warm-up, constant, then a linear decay over the last
    ``decay_steps`` to lr * lr_final, as train_lm's (read from the scheduler TRL builds)."""
    from transformers.optimization import get_scheduler

    from grpo_align.integrations.trl import grpo_config

    algo = ga.GRPO.preset("trl", beta=0.5, group_size=4, penalty="k3", aggregation="sequence_mean")
    args = grpo_config(
        tmp_path, trl_kwargs_from_grpo(algo), n_ctx=2, max_completion_length=6, steps=100,
        learning_rate=1e-3, seed=0, decay_steps=40, lr_final=0.1,
    )  # fmt: skip
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=args.learning_rate)
    sched = get_scheduler(
        args.lr_scheduler_type, opt, num_warmup_steps=args.warmup_steps, num_training_steps=args.max_steps,
        scheduler_specific_kwargs=args.lr_scheduler_kwargs,
    )  # fmt: skip
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[40] == pytest.approx(1e-3) and lrs[59] == pytest.approx(1e-3)
    assert lrs[80] == pytest.approx(1e-3 * (1 - 0.9 * 20 / 40))
    assert lrs[99] == pytest.approx(1e-3 * (1 - 0.9 * 39 / 40))


def test_trl_sequence_summary_resumes_finished_runs(tmp_path):
    """``run_trl_sequence_summary`` writes the summary of both TRL runs ("grpo" and the
    default "dapo") and, run again, reuses each stored run instead of training it again."""
    from grpo_align.commands.lm_sequences import sequence_markdown
    from grpo_align.integrations.trl import run_trl_sequence_summary

    torch.set_num_threads(1)
    config = _tiny_sequence_config()
    path = run_trl_sequence_summary(tmp_path, steps=20, experiment=config)
    data = json.loads(path.read_text())
    assert data["trainer"] == "trl" and [r["name"] for r in data["runs"]] == ["sequence_mean", "constant"]
    assert [r["loss_type"] for r in data["runs"]] == ["grpo", "dapo"]
    assert set(data["predicted"]) == {"sequence_mean", "group_token_mean", "constant"}
    stored = (tmp_path / "runs" / "trl_constant" / "result.json").stat().st_mtime_ns
    again = run_trl_sequence_summary(tmp_path, steps=20, experiment=config)
    assert (tmp_path / "runs" / "trl_constant" / "result.json").stat().st_mtime_ns == stored
    assert json.loads(again.read_text()) == data
    assert "| sequence_mean |" in sequence_markdown(data)


def test_dapo_finite_batch_shift():
    """One group per batch: the whole gap to group_token_mean; K groups: 1/K of it."""
    from grpo_align.integrations.trl import dapo_finite_batch_shift

    pred = {"constant": np.array([[0.2, 0.8]]), "group_token_mean": np.array([[0.3, 0.7]])}
    assert dapo_finite_batch_shift(pred, 1) == pytest.approx(0.1)
    assert dapo_finite_batch_shift(pred, 8) == pytest.approx(0.1 / 8)
    with pytest.raises(InputError):
        dapo_finite_batch_shift(pred, 0)


@pytest.mark.slow
def test_trl_default_loss_type_lands_on_the_constant_prediction(tmp_path):
    """TRL's GRPOTrainer (loss_type "dapo", k3, beta 0.5, G 4, 4 groups per question) on the
    8 sequence questions: every answer within the family-wise Student-t bound of the
    `constant` prediction (docs/lm.md), and the run nearer it than any other aggregation's."""
    from grpo_align.integrations.trl import run_trl_sequence_experiment
    from grpo_align.verify import family_wise_bound

    torch.set_num_threads(1)
    res = run_trl_sequence_experiment(tmp_path)
    z = (res.measured - res.predicted["constant"]) / res.stderr
    assert np.max(np.abs(z)) < family_wise_bound(z.size, 9)
    assert res.nearest == "constant"
    assert np.all(res.other < 0.02)
