# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Is there a direct gender bias in NWO grant awards?
#
# The Netherlands Organisation for Scientific Research (NWO) funded 467 of 2,823 applications
# for personal grants in 2010-2012 (van der Lee & Ellemers 2015, *PNAS* 112: 12349). Men
# were funded more often than women. This vignette fits the three binomial models of the
# lecture with **lmmformula**, written the way brms writes them, and asks what the posterior
# says about the gender gap in the probability of an award: in total, and within
# disciplines.
#
# **Settings.** Every fit uses nutpie's NUTS with 4 chains of 1,000 tuning and 1,000 kept
# draws and the seed below. When the environment variable `LMMFORMULA_SMOKE` is set (the
# test suite does this), the same code runs with 2 chains of 100 + 100 draws: the numbers are
# then rough and the text below describes the full run.

# %%
import logging
import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import lmmformula as lf

SMOKE = bool(os.environ.get("LMMFORMULA_SMOKE"))
SEED = 20240611
DRAWS, TUNE, CHAINS = (100, 100, 2) if SMOKE else (1000, 1000, 4)  # draws, tune per chain
SAMPLER = {"draws": DRAWS, "tune": TUNE, "chains": CHAINS, "random_seed": SEED}
SAMPLER |= {"sampler": "nutpie", "progressbar": False}
if SMOKE:  # a handful of draws trips the sampler-health warnings; they mean nothing here
    warnings.filterwarnings("ignore", message="sampling problems")

pd.set_option("display.precision", 3)
logging.getLogger("pymc").setLevel(logging.WARNING)  # no "NUTS[nutpie]: ..." info lines
print(f"lmmformula {lf.__version__}; sampler settings: {SAMPLER}")

# %% [markdown]
# ## The data
#
# One row per discipline and gender: the number of applications and of awards.

# %%
nwo = lf.load_dataset("nwo_grants")
nwo["rate"] = nwo["awards"] / nwo["applications"]
nwo

# %% [markdown]
# Pooled over disciplines, men were funded more often than women:

# %%
by_gender = nwo.groupby("gender")[["applications", "awards"]].sum()
by_gender["rate"] = by_gender["awards"] / by_gender["applications"]
by_gender

# %% [markdown]
# ## What to estimate: total and direct effect of gender
#
# The causal story of the lecture is a small DAG: **gender → discipline → award**, and
# possibly **gender → award**.
#
# * Gender influences *which discipline* a person applies in: 34% of the women's applications
#   but 26% of the men's are in the social sciences, 22% against 15% in the medical
#   sciences; men apply relatively more often in physics and the physical, chemical and
#   technical sciences.
# * Disciplines differ in their funding rates: about 14% in the social and the medical
#   sciences, about 26% in physics and the chemical sciences.
# * A *direct* effect of gender on the award, within a discipline, is what a bias of the
#   reviewers would produce.
#
# The **total effect** of gender runs through both paths; a model with gender alone estimates
# it (model 1). The **direct effect** is the path gender → award that does not run through
# discipline; to estimate it we condition on discipline, either with a coefficient per
# discipline (model 2) or with a varying intercept per discipline (model 3). The two answer
# different questions, and a gap in the total effect is no evidence of a biased review by
# itself: it can arise entirely from men and women applying in disciplines with different
# funding rates. (One caveat from the lecture: conditioning on discipline identifies the
# direct effect only if nothing unobserved, such as the quality of applications, drives both
# the choice of discipline and the award; discipline is a collider on the path
# gender → discipline ← quality → award.)

# %%
fig, ax = plt.subplots(figsize=(5, 2.2))
nodes = {"gender": (0.0, 0.0), "discipline": (1.0, 0.8), "award": (2.0, 0.0)}
for name, (x, y) in nodes.items():
    ax.text(
        x,
        y,
        name,
        ha="center",
        va="center",
        fontsize=12,
        bbox={"boxstyle": "round", "fc": "white", "ec": "0.3"},
    )
for a, b, label in [
    ("gender", "discipline", ""),
    ("discipline", "award", ""),
    ("gender", "award", "direct effect?"),
]:
    (x0, y0), (x1, y1) = nodes[a], nodes[b]
    ax.annotate(
        "",
        xy=(x1 - 0.25 * np.sign(x1 - x0), y1 - 0.15 * np.sign(y1 - y0)),
        xytext=(x0 + 0.25 * np.sign(x1 - x0), y0 + 0.15 * np.sign(y1 - y0)),
        arrowprops={"arrowstyle": "->", "lw": 1.5},
    )
    if label:
        ax.text((x0 + x1) / 2, (y0 + y1) / 2 - 0.18, label, ha="center", fontsize=10, color="0.3")
ax.set_xlim(-0.5, 2.5)
ax.set_ylim(-0.45, 1.1)
ax.axis("off")
ax.set_title("The lecture's DAG")
plt.show()

# %% [markdown]
# ## Model 1: the total effect, `awards | trials(applications) ~ 0 + gender`
#
# brms' `trials()` on the left-hand side makes this a binomial model with a logit link. With
# `0 + gender` each gender gets its own log-odds of an award, `a[f]` and `a[m]`, with the
# lecture's prior Normal(0, 2) (`lf.prior("normal(0, 2)", cls="b")` is brms'
# `prior(normal(0, 2), class = b)`).

# %%
priors_1 = [lf.prior("normal(0, 2)", cls="b")]
m1 = lf.model("awards | trials(applications) ~ 0 + gender", nwo, priors=priors_1)
m1.prior_summary()

# %%
fit1 = m1.fit(**SAMPLER)
print(fit1.summary())

# %% [markdown]
# ## Model 2: the direct effect, `~ 0 + gender + discipline`
#
# Discipline enters as a factor: with `0 + gender` carrying the two baselines, discipline
# gets treatment contrasts (one coefficient for each discipline but the first, alphabetical
# one, *Chemical sciences*), each with the prior Normal(0, 1). The genders keep Normal(0, 2).

# %%
priors_2 = [
    lf.prior("normal(0, 2)", cls="b", coef="gender"),
    lf.prior("normal(0, 1)", cls="b", coef="discipline"),
]
m2 = lf.model("awards | trials(applications) ~ 0 + gender + discipline", nwo, priors=priors_2)
m2.prior_summary()

# %%
fit2 = m2.fit(**SAMPLER)
print(fit2.summary())

# %% [markdown]
# ## Model 3: discipline as a varying intercept, `~ 0 + gender + (1|discipline)`
#
# Instead of nine unrelated discipline effects, `(1|discipline)` draws them from a common
# normal distribution whose standard deviation is learnt from the data (prior
# HalfCauchy(5), brms' `prior(cauchy(0, 5), class = sd)`). Disciplines then borrow strength
# from each other, and those with few applications are pulled towards the average.

# %%
priors_3 = [
    lf.prior("normal(0, 2)", cls="b"),
    lf.prior("halfcauchy(5)", cls="sd", group="discipline"),
]
m3 = lf.model("awards | trials(applications) ~ 0 + gender + (1|discipline)", nwo, priors=priors_3)
m3.prior_summary()

# %% [markdown]
# Nine disciplines say little about their standard deviation, and the wide HalfCauchy(5)
# prior leaves a funnel near sd = 0 that gives NUTS a few divergent transitions at the
# default step-size adaptation, even non-centered. As the sampler's warning advises, a higher
# target acceptance rate (smaller steps; brms' `adapt_delta`) removes them:

# %%
fit3 = m3.fit(**SAMPLER, target_accept=0.95)
print(fit3.summary())

# %% [markdown]
# The estimated discipline effects, as deviations from the population on the log-odds scale
# (lme4's `ranef()`), and lme4's `VarCorr()`:

# %%
fit3.ranef(long=True)

# %%
fit3.varcorr()

# %% [markdown]
# ## The gender gap in award probability
#
# The coefficients live on the log-odds scale. The question is asked on the probability
# scale: how many percentage points more often are men funded than women? Each posterior
# draw gives one answer, so the answer is a distribution.
#
# * **Model 1 (total effect):** `inv_logit(a[m]) - inv_logit(a[f])`, which is what
#   `fit.predict()` returns for a man and a woman (`kind="mean"` is the probability of an
#   award; `summary=False` gives the draws).
# * **Models 2 and 3 (direct effect):** the gap depends on the discipline, because the
#   logit is not linear. We compute it in every discipline and average the nine gaps,
#   weighting each discipline by its number of applications, i.e. the gap for an applicant
#   drawn at random from the pool of applications. For model 3 the disciplines' own
#   (partially pooled) intercepts are included.


# %%
def gap_draws(fit, by_discipline):
    """Posterior draws of P(award | man) - P(award | woman), in percentage points."""
    if not by_discipline:
        grid = pd.DataFrame({"gender": ["f", "m"], "applications": 1})
        p = fit.predict(grid, summary=False).stack(sample=("chain", "draw")).values
        return 100 * (p[1] - p[0])
    disciplines = sorted(nwo["discipline"].unique())
    grid = pd.DataFrame(
        [(d, g) for d in disciplines for g in ("f", "m")], columns=["discipline", "gender"]
    ).assign(applications=1)
    p = fit.predict(grid, summary=False).stack(sample=("chain", "draw")).values
    gaps = p[1::2] - p[0::2]  # one row per discipline
    weights = nwo.groupby("discipline")["applications"].sum().loc[disciplines].to_numpy()
    return 100 * (weights @ gaps) / weights.sum()


gaps = {
    "1: gender only (total effect)": gap_draws(fit1, by_discipline=False),
    "2: + discipline (direct effect)": gap_draws(fit2, by_discipline=True),
    "3: + (1|discipline) (direct effect)": gap_draws(fit3, by_discipline=True),
}
gap_table = pd.DataFrame(
    {
        "gap_pp": [g.mean() for g in gaps.values()],
        "sd": [g.std() for g in gaps.values()],
        "lower_95": [np.quantile(g, 0.025) for g in gaps.values()],
        "upper_95": [np.quantile(g, 0.975) for g in gaps.values()],
        "P(gap > 0)": [(g > 0).mean() for g in gaps.values()],
    },
    index=pd.Index(list(gaps), name="model"),
)
gap_table

# %%
fig, ax = plt.subplots(figsize=(7, 3.6))
bins = np.linspace(min(g.min() for g in gaps.values()), max(g.max() for g in gaps.values()), 60)
for i, (name, g) in enumerate(gaps.items()):
    ax.hist(
        g, bins=bins, density=True, histtype="stepfilled", alpha=0.35, color=f"C{i}", label=name
    )
ax.axvline(0, color="k", lw=1)
ax.set_xlabel("P(award | man) - P(award | woman), percentage points")
ax.set_ylabel("posterior density")
ax.set_title("Posterior gender gap in award probability")
ax.legend(fontsize="small")
plt.show()

# %%
for name, g in gaps.items():
    lo, hi = np.quantile(g, [0.025, 0.975])
    print(
        f"{name:38s} {g.mean():4.1f} percentage points (95% interval {lo:4.1f} to {hi:4.1f});"
        f" P(gap > 0) = {(g > 0).mean():.2f}"
    )

# %% [markdown]
# Model 1 reproduces the raw difference of the table above: men about 3 percentage points
# ahead, with an interval that excludes zero. That is the *total* effect. Once discipline is
# in the model the gap shrinks to about 2 percentage points and its 95% interval includes
# zero: part of the total gap runs through the disciplines men and women apply in, and the
# data cannot tell a small direct effect from none (in model 2 the two genders' log-odds
# differ by about 0.14). Within disciplines the observed gaps even differ in
# sign (in four of the nine, the humanities, the physical and the technical sciences and the
# interdisciplinary panel, women were funded *more* often); model 3 has a single gender
# effect on the log-odds scale, so its per-discipline gaps differ only through the
# discipline's baseline rate:

# %%
disciplines = sorted(nwo["discipline"].unique())
grid = pd.DataFrame(
    [(d, g) for d in disciplines for g in ("f", "m")], columns=["discipline", "gender"]
).assign(applications=1)
p3 = fit3.predict(grid, summary=False).stack(sample=("chain", "draw")).values
per_discipline = 100 * (p3[1::2] - p3[0::2])
pd.DataFrame(
    {
        "applications": nwo.groupby("discipline")["applications"].sum().loc[disciplines],
        "observed_gap_pp": 100
        * nwo.pivot(index="discipline", columns="gender", values="rate")
        .loc[disciplines]
        .pipe(lambda t: t["m"] - t["f"]),
        "model3_gap_pp": per_discipline.mean(axis=1),
        "lower_95": np.quantile(per_discipline, 0.025, axis=1),
        "upper_95": np.quantile(per_discipline, 0.975, axis=1),
    },
    index=pd.Index(disciplines, name="discipline"),
)

# %% [markdown]
# The observed gaps scatter widely around the model's, as expected from a few dozen
# applications per cell.
#
# ## Shrinkage of the discipline effects
#
# How much does partial pooling move the disciplines? Below, for each discipline, the
# observed funding rate (both genders), the rate implied by model 2 (a separate coefficient
# per discipline: no pooling, apart from the Normal(0, 1) prior) and by model 3 (partial
# pooling). The estimates are the posterior means of the expected awards on the data's own
# rows, summed per discipline and divided by the applications.


# %%
def discipline_rates(fit):
    p = fit.predict(summary=False).stack(sample=("chain", "draw")).values  # rows x draws
    expected = p * nwo["applications"].to_numpy()[:, None]
    frame = pd.DataFrame(expected).groupby(nwo["discipline"].to_numpy()).sum()
    return frame.mean(axis=1) / nwo.groupby("discipline")["applications"].sum()


totals = nwo.groupby("discipline")[["awards", "applications"]].sum()
shrinkage = pd.DataFrame(
    {
        "applications": totals["applications"],
        "observed": totals["awards"] / totals["applications"],
        "model 2 (no pooling)": discipline_rates(fit2),
        "model 3 (partial pooling)": discipline_rates(fit3),
    }
).sort_values("observed")
shrinkage["moved (pp)"] = 100 * (shrinkage["model 3 (partial pooling)"] - shrinkage["observed"])
shrinkage

# %%
overall = nwo["awards"].sum() / nwo["applications"].sum()
fig, ax = plt.subplots(figsize=(7.5, 4.2))
y = np.arange(len(shrinkage))
ax.scatter(
    shrinkage["observed"],
    y,
    s=shrinkage["applications"] / 4,
    facecolors="white",
    edgecolors="k",
    label="observed (area ~ applications)",
    zorder=3,
)
ax.scatter(
    shrinkage["model 2 (no pooling)"],
    y + 0.15,
    marker="s",
    color="C0",
    s=25,
    label="model 2: discipline as fixed effects",
    zorder=3,
)
ax.scatter(
    shrinkage["model 3 (partial pooling)"],
    y - 0.15,
    color="C1",
    s=25,
    label="model 3: (1|discipline)",
    zorder=3,
)
for i, (_, row) in enumerate(shrinkage.iterrows()):
    ax.annotate(
        "",
        xy=(row["model 3 (partial pooling)"], i - 0.15),
        xytext=(row["observed"], i),
        arrowprops={"arrowstyle": "->", "color": "C1", "lw": 0.8},
    )
ax.axvline(overall, color="0.5", ls="--", lw=1, label="overall rate")
ax.set_yticks(y)
ax.set_yticklabels(shrinkage.index)
ax.set_xlabel("probability of an award")
ax.set_title("Discipline funding rates: observed, no pooling, partial pooling")
ax.legend(fontsize="x-small", loc="lower right")
fig.tight_layout()
plt.show()

# %% [markdown]
# Model 2 reproduces the observed rates; model 3 moves every discipline towards the overall
# rate, by a share of its distance that is larger the fewer applications it has. Physics (76
# applications) and the chemical sciences (122), the two farthest from the overall rate, move
# by more than four percentage points, about half their distance; the social sciences (834
# applications) by less than one, about a quarter of theirs. `lf.plot_ranef` draws the
# discipline effects on the log-odds scale with their 95% intervals:

# %%
fig = lf.plot_ranef(fit3, "discipline")

# %% [markdown]
# ## Model comparison by PSIS-LOO
#
# `lf.compare` is brms' `loo_compare`: the expected log predictive density of each model
# estimated by Pareto-smoothed importance sampling leave-one-out, best first. With only 18
# rows, each a whole discipline-gender cell, leaving one out removes a large share of the
# information about a discipline, and Pareto k values above 0.7 are likely for the models
# with discipline effects: the `warning` column says so, and their `elpd_loo` should be read
# with care.

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the Pareto k warning is shown in the table
    comparison = lf.compare(
        {"1: gender": fit1, "2: gender + discipline": fit2, "3: gender + (1|discipline)": fit3}
    )
comparison

# %%
fig = lf.plot_compare(comparison)

# %% [markdown]
# The gender-only model and the multilevel model are tied: the difference between them
# (`elpd_diff`) is far smaller than its standard error (`dse`). The model with a separate
# coefficient per discipline comes last: with two rows per discipline, leaving one out leaves
# a single row to estimate that discipline's coefficient, and the prediction of the held-out
# row suffers; partial pooling protects model 3 from that. Note what LOO answers: how well
# each model predicts a held-out cell. Whether gender has a direct effect is a causal
# question, answered by the contrast above, not by the ranking.

# %% [markdown]
# ## Summary
#
# * The **total** effect of gender (model 1) is a gap of about 3 percentage points in favour
#   of men, with a 95% interval just above zero.
# * Conditioning on discipline (models 2 and 3) shrinks the **direct** effect to about two
#   percentage points, with a 95% interval that includes zero: the data are compatible with
#   no direct bias as well as with a small one.
# * Partial pooling (model 3) pulls the nine discipline rates towards the overall rate,
#   strongest for small disciplines far from it.
# * PSIS-LOO cannot separate the gender-only and the multilevel model and puts the model
#   with nine separate discipline coefficients last; with 18 aggregated rows many Pareto k
#   values are high, so the comparison is rough, and it answers a predictive question, not
#   the causal one.
