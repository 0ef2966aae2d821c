# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # What does my trainer's config optimise?
#
# A trainer's config fixes a GRPO *specification*: the group size G, the penalty weight
# beta, the advantage normalisation, the KL estimator, the loss aggregation. Each
# specification has its own stationary policy (see [Concepts](../concepts/index.md)).
# `grpo_align.mappings.read_trainer_config` reads a TRL, verl or OpenRLHF config by name,
# without importing the trainer, and returns a `MappingReport`: the `GRPO` it trains and
# one row per setting. Everything below is computed when this page is built.

# %%
from pathlib import Path

import numpy as np

import grpo_align as ga
from grpo_align.mappings import read_trainer_config

ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "examples" / "trl_grpo.yaml").is_file())
EXAMPLES = ROOT / "examples"

# %% [markdown]
# ## TRL, verl and OpenRLHF examples

# %%
reports = {}
for name in ("trl_grpo.yaml", "verl_grpo.yaml", "openrlhf_grpo.flags"):
    report = read_trainer_config(EXAMPLES / name)
    reports[name] = report
    print(f"{name}: {report.trainer} (checked against {report.checked_version})")
    print("   ", report.algo)

# %% [markdown]
# The full mapping of the TRL config, setting by setting (value, given or defaulted, what
# it maps to):

# %%
print("\n".join(reports["trl_grpo.yaml"].lines()))

# %% [markdown]
# ## What each one does to a binary prompt
#
# A prompt whose correct answer the reference model gives with probability p0 (reward 1,
# else 0): where does each config's training end? RLHF's logarithmic pooling at the same
# beta is the comparison.

# %%
p0 = np.array([0.1, 0.3, 0.5, 0.7])
prob = ga.Problem.from_rewards(ref=[[p, 1 - p] for p in p0], rewards=[[1.0, 0.0]] * len(p0))
print("p0                 ", "  ".join(f"{p:8.3f}" for p in p0))
for name, report in reports.items():
    res = ga.stationary_policy(prob, report.algo)
    print(f"{name:20s}", "  ".join(f"{x:8.5f}" for x in res.policy[:, 0]), " status:", set(res.status))
    if report.algo.beta > 0:
        rlhf = ga.rlhf_policy(prob, beta=report.algo.beta)[:, 0]
        print(f"{'  RLHF same beta':20s}", "  ".join(f"{x:8.5f}" for x in rlhf))

# %% [markdown]
# ## From a `GRPOConfig`'s keys
#
# `ga.from_trl` takes a `GRPOConfig` object or its keys. TRL 1.x's default
# `use_bias_correction_kl=True` multiplies the k3 term by the importance ratio, whose
# per-token gradient at ratio 1 is log(pi/pi_ref), k2's (`penalty="k2"`; for one-token
# answers the same end point as the direct KL, `penalty="kl"`); TRL 0.2x's plain k3 is
# `penalty="k3"`.

# %%
trl = ga.from_trl({"beta": 0.04, "num_generations": 8})
binary = ga.Problem.from_rewards(ref=[0.3, 0.7], rewards=[1.0, 0.0])
print(trl)
print("TRL 1.x  (direct-KL gradient):", ga.stationary_policy(binary, trl).policy[0])
print("TRL 0.2x (plain k3):          ", ga.stationary_policy(binary, trl.replace(penalty="k3")).policy[0])

# %% [markdown]
# The same from the command line: `grpo-align explain examples/trl_grpo.yaml`
# ([how-to](../howto/explain.md)); every table the mappings use, with the trainer releases
# they were checked against: [Trainer mappings](../reference/mappings.md).
