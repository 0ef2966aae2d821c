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
# # Sequences and loss aggregation
#
# A language model's outputs are token sequences and its trainer weights per-token losses
# (see [Sequences and loss aggregation](../concepts/aggregation.md)). `Problem(...,
# sequences=...)` gives each output as a token tuple; `GRPO(aggregation=...)` picks the
# weighting: `sequence_mean` (GRPO, TRL "grpo"), `group_token_mean` (DAPO's token mean
# over the group) or `constant` (Dr. GRPO; TRL "dapo"/"bnpo"). The cases below are those
# of THEORY.md section 10.7.

# %%
import numpy as np

import grpo_align as ga

AGGREGATIONS = ("sequence_mean", "group_token_mean", "constant")


def end_points(prob, **fields):
    out = {}
    for agg in AGGREGATIONS:
        res = ga.stationary_policy(prob, ga.GRPO(aggregation=agg, **fields))[0]
        assert res.success, res.message
        out[agg] = res.policy
    return out


def show(title, prob, **fields):
    print(title)
    atomic = ga.stationary_policy(ga.Problem(ref=prob.ref, levels=prob.levels, dist=prob.dist), ga.GRPO(**fields))
    print(f"  {'atomic (paper)':17s}", np.round(atomic.policy[0], 4))
    for agg, pol in end_points(prob, **fields).items():
        print(f"  {agg:17s}", np.round(pol, 4))


# %% [markdown]
# ## No shared prefixes
#
# Each output is decided by its first token, the rest is deterministic. Two correct answers
# (short and long) and two wrong ones, lengths 2/5/2/5, G = 3, beta = 0.3. With k3,
# `sequence_mean` and `constant` give the paper's policy exactly; `group_token_mean` moves
# it:

# %%
seqs = [(1, 9), (2, 7, 7, 7, 9), (3, 9), (4, 7, 7, 7, 9)]
prob = ga.Problem.from_rewards(ref=[0.1, 0.3, 0.4, 0.2], rewards=[1, 1, 0, 0], sequences=seqs)
show("k3", prob, group_size=3, beta=0.3)
show("k2 (direct KL)", prob, group_size=3, beta=0.3, penalty="k2")

# %% [markdown]
# ## Shared prefixes
#
# Outputs (1,2,9), (1,3,4,5,9), (4,9), (5,6,7,9) share the first token 1; reference
# .1/.2/.3/.4, rewards 1/0/0/1, G = 3, beta = 0.4. All three aggregations differ, and the
# per-token k3 is not the sequence-level k3:

# %%
tree = [(1, 2, 9), (1, 3, 4, 5, 9), (4, 9), (5, 6, 7, 9)]
prob = ga.Problem.from_rewards(ref=[0.1, 0.2, 0.3, 0.4], rewards=[1, 0, 0, 1], sequences=tree)
for penalty in ("k3", "k2", "kl"):
    show(penalty, prob, group_size=3, beta=0.4, penalty=penalty)

# %% [markdown]
# ## The penalty in the reward
#
# `penalty_in="reward"` subtracts beta times the sequence's k1 from the reward before the
# group normalisation (verl's `use_kl_in_reward`, OpenRLHF without `--use_kl_loss`). With
# a linear normalisation this is RLHF on the expected rewards, for any G:

# %%
prob = ga.Problem.from_bernoulli(ref=[0.2, 0.3, 0.5], success=[0.8, 0.5, 0.1])
for g in (2, 4):
    res = ga.stationary_policy(
        prob, ga.GRPO(group_size=g, beta=0.5, normalization="shift", penalty="k1", penalty_in="reward")
    )[0]
    print(f"G = {g}:", np.round(res.policy, 4), res.status)
print("RLHF:  ", np.round(ga.rlhf_policy(prob, beta=0.5), 4))
