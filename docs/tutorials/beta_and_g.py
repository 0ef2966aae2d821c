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
# # Choosing beta and G
#
# beta weighs the penalty against the advantage and G sets the group size; together they
# decide how far GRPO moves a policy from the reference. This page computes the stationary
# accuracy of a binary question (correct answer with reference probability p0, reward 1,
# else 0) over a grid of beta and G, and reads off the beta that reaches a target.

# %%
# %matplotlib inline
import math

import matplotlib.pyplot as plt
import numpy as np
from scipy.optimize import brentq

import grpo_align as ga

p0 = 0.3
prob = ga.Problem.from_rewards(ref=[p0, 1 - p0], rewards=[1.0, 0.0])


def accuracy(beta: float, g: float, **fields) -> float:
    """Stationary pi(correct) of the binary question."""
    res = ga.stationary_policy(prob, ga.GRPO(group_size=g, beta=beta, **fields))[0]
    assert res.success, res.message
    return float(res.policy[0])


# %% [markdown]
# ## The paper's worked numbers (THEORY.md section 6)
#
# At beta = 0.5: G = 2, 8 and G → ∞ with std scaling, G = 8 without it, and RLHF.

# %%
for g in (2, 8, math.inf):
    print(f"G = {g}: {accuracy(0.5, g):.6f}")
print(f"G = 8, shift (no std scaling): {accuracy(0.5, 8, normalization='shift'):.6f}")
print(f"RLHF, beta = 0.5: {ga.rlhf_policy(prob, beta=0.5)[0]:.6f}")

# %% [markdown]
# ## Accuracy against beta for several G

# %%
betas = np.geomspace(0.05, 5, 30)
groups = (2, 4, 8, 16, 64, math.inf)
table = {g: np.array([accuracy(b, g) for b in betas]) for g in groups}
fig, ax = plt.subplots(figsize=(6.5, 4))
for g in groups:
    ax.plot(betas, table[g], label=f"G = {g}")
ax.plot(betas, [ga.rlhf_policy(prob, beta=b)[0] for b in betas], "k--", label="RLHF")
ax.set_xscale("log")
ax.set_xlabel("beta")
ax.set_ylabel("stationary pi(correct)")
ax.legend()
plt.show()

# %% [markdown]
# ## The beta that reaches a target accuracy
#
# The stationary accuracy falls with beta, so a target between p0 and the beta → 0 limit
# is reached at exactly one beta, found by bracketing.

# %%
target = 0.8
print(f"target pi(correct) = {target} from p0 = {p0}")
for g in groups:
    b = brentq(lambda beta, g=g: accuracy(beta, g) - target, 1e-3, 50.0, xtol=1e-10)
    print(f"  G = {g!s:>4}: beta = {b:.4f}")
b_rlhf = brentq(lambda beta: ga.rlhf_policy(prob, beta=beta)[0] - target, 1e-3, 50.0, xtol=1e-10)
print(f"  RLHF:     beta = {b_rlhf:.4f}")

# %% [markdown]
# Larger groups reach the target at a larger beta, i.e. with a stronger pull toward the
# reference. The same holds prompt by prompt over a dataset: the
# [prediction tutorial](predict_dataset.py) plans beta and G for a file of pass rates.
#
# ## The trainers' defaults
#
# With each preset's own beta (TRL's default beta = 0 has no interior stationary policy:
# status `limit`, all mass on the correct answer):

# %%
for name in ga.PRESETS:
    algo = ga.GRPO.preset(name)
    res = ga.stationary_policy(prob, algo)[0]
    print(
        f"{name:9s} G={algo.group_size!s:>3} beta={algo.beta:<6g} penalty={algo.penalty:3s} in the {algo.penalty_in:6s} "
        f"-> pi(correct) = {res.policy[0]:.6f} ({res.status})"
    )
