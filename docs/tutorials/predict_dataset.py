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
# # Predict my dataset's accuracy after GRPO
#
# Measure, predict, then check by training. `examples/pass_rates.jsonl` holds 32 prompts:
# 16 completions sampled from the reference model per prompt, and how many were right.
# From the counts, each prompt's reference pass rate p0 gets a Jeffreys estimate and a 95%
# interval; each p0 is a binary question whose end point under a GRPO specification the
# engine solves exactly (`grpo_align.predict`, the library behind `grpo-align predict`).

# %%
# %matplotlib inline
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import grpo_align as ga
from grpo_align.predict import binary_end_points, load_spec, open_stats, predict_chunk

ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "examples" / "pass_rates.jsonl").is_file())
STATS = ROOT / "examples" / "pass_rates.jsonl"
print(STATS.read_text().splitlines()[:2])

# %% [markdown]
# ## Measure: the reference pass rates

# %%
chunks = list(open_stats(STATS))
print(len(chunks), "chunk(s),", sum(len(c) for c in chunks), "prompts")

# %% [markdown]
# ## Predict: two specifications
#
# TRL's defaults at beta = 0.04 (the direct-KL penalty of TRL 1.x) and the paper's k3 with
# G = 64.

# %%
specs = {"trl, beta 0.04": load_spec("trl", {"beta": 0.04}), "paper": load_spec("paper")}
columns = {}
for label, algo in specs.items():
    cols = predict_chunk(chunks[0], algo)
    columns[label] = cols
    p0, pred = np.asarray(cols["p0"]), np.asarray(cols["predicted"])
    lo, hi = np.asarray(cols["predicted_low"]), np.asarray(cols["predicted_high"])
    print(f"{label:15s} {algo}")
    print(
        f"   mean p0 {p0.mean():.4f} -> mean predicted {pred.mean():.4f} "
        f"(interval ends {lo.mean():.4f} – {hi.mean():.4f}), mean RLHF {np.mean(cols['rlhf']):.4f}, "
        f"mean KL {np.mean(cols['kl']):.4f} nats"
    )

# %% [markdown]
# Per prompt, with the curve every binary prompt lies on:

# %%
grid = np.linspace(0.005, 0.995, 100)
fig, ax = plt.subplots(figsize=(6, 4))
for i, (label, cols) in enumerate(columns.items()):
    p0 = np.asarray(cols["p0"])
    ax.errorbar(
        p0,
        cols["predicted"],
        yerr=[
            np.asarray(cols["predicted"]) - cols["predicted_low"],
            np.asarray(cols["predicted_high"]) - cols["predicted"],
        ],
        fmt="o",
        ms=4,
        color=f"C{i}",
        label=label,
    )
    ax.plot(grid, binary_end_points(grid, specs[label]).predicted, color=f"C{i}", lw=1)
ax.plot(grid, grid, "k:", lw=0.8, label="no change")
ax.set_xlabel("reference p(correct), p0")
ax.set_ylabel("predicted p(correct) after GRPO")
ax.legend()
plt.show()

# %% [markdown]
# ## Planning beta and G
#
# The mean predicted accuracy over the dataset against beta for several group sizes, with
# the paper's normalisation and k3:

# %%
p0 = np.asarray(columns["paper"]["p0"])
betas = np.geomspace(0.02, 2.0, 12)
for g in (2, 8, 64):
    means = [binary_end_points(p0, ga.GRPO(group_size=g, beta=float(b))).predicted.mean() for b in betas]
    print(f"G = {g:3d}: " + " ".join(f"{m:.3f}" for m in means))
print("beta:    " + " ".join(f"{b:.3f}" for b in betas))

# %% [markdown]
# ## Check by training (the built-in task)
#
# The prediction is a claim about where training settles. With the `train` extra, a
# tabular GRPO run on one of the prompts lands on it (the gap is in standard errors of the
# tail average; `grpo-align train` and `grpo-align lm` do this at scale, see
# [Train and check](../howto/train.md)).

# %%
try:
    import torch  # noqa: F401  (the train extra)
except ImportError:
    print("the train extra is not installed: skipped")
else:
    prob = ga.Problem.from_bernoulli(ref=[0.3, 0.7], success=[1.0, 0.0])
    algo = ga.GRPO(group_size=4, beta=0.5)
    res = ga.train(prob, algo, ga.TrainConfig(steps=600, groups_per_step=64, lr=1.0, seed=0))
    c = res[0]
    print("predicted ", np.round(res.predicted.policy[0], 4))
    print("measured  ", np.round(c.mean_policy, 4), "+-", np.round(c.stderr, 4))
    print("gap / stderr", np.round(c.z, 2))
