# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # From lme4 to lmmformula: the sleep study
#
# The sleep-deprivation study of Belenky et al. (2003), as shipped with R's lme4: the
# reaction time of 18 subjects on each of ten days of restricted sleep. The model of the
# lme4 paper (Bates, Mächler, Bolker & Walker 2015, *Journal of Statistical Software* 67(1))
# gives every subject its own intercept and slope for `Days`, correlated:
#
# ```r
# library(lme4)
# fm1 <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy)
# ```
#
# This vignette fits the same formula with lmmformula and walks through the lme4 accessors
# one by one: `summary`, `fixef`, `ranef`, `coef`, `VarCorr`, `predict` with
# `re.form = NA`, and new subjects. The migration table for every call is in
# *Migrating from R* (`migrating_from_r.md`).
#
# **Settings.** nutpie's NUTS, 4 chains of 1,000 tuning and 1,000 kept draws, the seed below;
# with `LMMFORMULA_SMOKE` set (the test suite), 2 chains of 100 + 100 draws, and the numbers
# are then rough.

# %%
import logging
import os
import tempfile
import warnings
from pathlib import Path

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

sleep = lf.load_dataset("sleepstudy")
sleep.head()

# %% [markdown]
# ## lme4's output
#
# `summary(fm1)` in R (lme4 1.1; the estimates are those published in Bates et al. 2015):
#
# ```text
# Linear mixed model fit by REML ['lmerMod']
# Formula: Reaction ~ Days + (Days | Subject)
#    Data: sleepstudy
#
# REML criterion at convergence: 1743.6
#
# Scaled residuals:
#     Min      1Q  Median      3Q     Max
# -3.9536 -0.4634  0.0231  0.4634  5.1793
#
# Random effects:
#  Groups   Name        Variance Std.Dev. Corr
#  Subject  (Intercept) 612.10   24.741
#           Days         35.07    5.922   0.07
#  Residual             654.94   25.592
# Number of obs: 180, groups:  Subject, 18
#
# Fixed effects:
#             Estimate Std. Error t value
# (Intercept)  251.405      6.825  36.838
# Days          10.467      1.546   6.771
#
# Correlation of Fixed Effects:
#      (Intr)
# Days -0.138
# ```
#
# ## The same model in lmmformula
#
# ```python
# fit = lf.fit("Reaction ~ Days + (Days|Subject)", sleep)
# ```
#
# The formula is the same string. `(Days|Subject)` means what it means in lme4: an
# intercept and a slope per subject from a bivariate normal with a free correlation (here
# with an LKJ(2) prior on the correlation matrix). The fit is Bayesian: every number below is
# a summary of posterior draws, not a REML optimum. `lf.model(...)` builds the model without
# sampling (lme4's `lFormula`), so the priors can be inspected first (brms' `prior_summary`):

# %%
m = lf.model("Reaction ~ Days + (Days|Subject)", sleep)
m

# %%
m.prior_summary()

# %% [markdown]
# The defaults are lmmformula's weakly informative priors on the outcome's scale
# (`normal(mean(y), 2.5 sd(y))` on the intercept, rstanarm-scaled coefficients, `halfnormal(sd(y))`
# on the sds; `docs/priors.md`); the `basis` column says how each was scaled. `priors="brms"`
# uses brms' defaults (see below), `priors="bambi"` Bambi's. Fit:

# %%
fit = m.fit(**SAMPLER)
fit

# %% [markdown]
# ### `summary(fm1)` → `fit.summary()`
#
# brms' layout: the group-level standard deviations and correlation, the population-level
# effects, the residual sd, each with its posterior mean, posterior sd (`Est.Error`), 95%
# interval and convergence diagnostics.

# %%
print(fit.summary())

# %% [markdown]
# ### Side by side
#
# lme4's REML estimates next to the posterior means and 95% intervals. The fixed effects
# agree closely; their posterior sds are a little larger than lme4's standard errors, which
# treat the estimated variance components as known. The posterior mean of a standard
# deviation is a little larger than its REML estimate: with 18 subjects the posterior of a
# between-subject sd is right-skewed, and its mean sits above its mode. The correlation,
# which lme4 estimates at 0.07, is barely identified by 18 subjects: its posterior is wide.

# %%
lme4 = pd.DataFrame(
    {
        "lme4 estimate": [251.405, 10.467, 24.741, 5.922, 0.066, 25.592],
        "lme4 std. error": [6.825, 1.546, None, None, None, None],
    },
    index=[
        "(Intercept)",
        "Days",
        "sd(Intercept | Subject)",
        "sd(Days | Subject)",
        "cor(Intercept, Days | Subject)",
        "sigma (Residual)",
    ],
)
fe = fit.fixef()
vc = fit.varcorr()
ours = pd.concat(
    [
        fe.loc[["Intercept", "Days"], ["estimate", "sd", "lower", "upper"]],
        vc[["estimate", "sd", "lower", "upper"]],
    ]
)
ours.index = lme4.index
pd.concat([lme4, ours.add_prefix("lmmformula ")], axis=1).style.format(precision=3, na_rep="")

# %% [markdown]
# (lme4 prints the correlation rounded to 0.07; its unrounded value is 0.066.)
#
# ### `fixef(fm1)` → `fit.fixef()`

# %%
fit.fixef()

# %% [markdown]
# ### `ranef(fm1)` → `fit.ranef()`
#
# lme4's conditional modes become posterior means, one row per subject, one column per
# term (`ranef(fm1)$Subject` is `fit.ranef()["Subject"]`). `ranef(long=True)` adds
# intervals, in the layout of `as.data.frame(ranef(fm1, condVar = TRUE))`.

# %%
fit.ranef()["Subject"].head()

# %%
fit.ranef(long=True).head()

# %% [markdown]
# ### `coef(fm1)` → `fit.coef()`
#
# Population plus subject effects: each subject's own intercept and slope.

# %%
fit.coef()["Subject"].head()

# %% [markdown]
# ### `VarCorr(fm1)` → `fit.varcorr()`
#
# The layout of `as.data.frame(VarCorr(fm1))`, with standard deviations (`sdcor`) as
# `estimate`, and posterior sds and intervals added.

# %%
fit.varcorr()

# %% [markdown]
# ### `predict(fm1, newdata, re.form = NA)` → `fit.predict(newdata, include_group_effects=False)`
#
# Population-level predictions ignore the subjects: the average reaction time on each day.
# With the subjects' effects (lme4's default `re.form = NULL`) the prediction for a known
# subject follows that subject's own line.

# %%
days = pd.DataFrame({"Days": [0, 5, 9], "Subject": "308"})
pd.concat(
    {
        "re.form = NA": fit.predict(days, include_group_effects=False),
        "subject 308": fit.predict(days),
    },
    axis=1,
).set_index(days["Days"])

# %% [markdown]
# ### New subjects: `allow.new.levels = TRUE` → `allow_new_levels=True`
#
# A subject the model has not seen is refused, as in lme4, with a message that says what to
# do:

# %%
newcomer = pd.DataFrame({"Days": [0, 5, 9], "Subject": "new subject"})
try:
    fit.predict(newcomer)
except lf.errors.LmmFormulaError as err:
    print(f"{type(err).__name__}: {err}")

# %% [markdown]
# With `allow_new_levels=True` its effects are drawn from the fitted population of subjects
# (brms' `sample_new_levels = "uncertainty"`), so the prediction has the population's mean
# and the between-subject spread in its interval; lme4 would return the population
# prediction with no extra uncertainty.

# %%
pd.concat(
    {
        "population (re.form = NA)": fit.predict(newcomer, include_group_effects=False),
        "new subject": fit.predict(newcomer, allow_new_levels=True, random_seed=SEED),
    },
    axis=1,
).set_index(newcomer["Days"])

# %% [markdown]
# ## Plots R users know
#
# The subjects' lines shrink towards the population line (lme4's classic figure, here from
# the posterior): open circles are each subject's own least-squares line, filled ones the
# model's estimates.

# %%
fig = lf.plot_shrinkage(fit, "Subject")

# %% [markdown]
# brms' `pp_check(fit)`: replicated data sets from the posterior over the observed
# distribution.

# %%
fig = fit.pp_check(ndraws=50, random_seed=SEED)

# %% [markdown]
# ## brms' default priors
#
# brms would fit this model with its own defaults (flat on the coefficients,
# Student-t(3, 0, scale) on the sds, LKJ(1)). `priors="brms"` asks for them:

# %%
m_brms = lf.model("Reaction ~ Days + (Days|Subject)", sleep, priors="brms")
m_brms.prior_summary()

# %%
fit_brms = m_brms.fit(**SAMPLER)
pd.concat(
    {
        "Bambi defaults": fit.varcorr().set_index(["grp", "var1", "var2"])["estimate"],
        "brms defaults": fit_brms.varcorr().set_index(["grp", "var1", "var2"])["estimate"],
    },
    axis=1,
)

# %% [markdown]
# ## `loo(fit)` and `save` / `readRDS`
#
# PSIS-LOO from the stored draws (`loo::loo` in R), and the whole fit in one netCDF file
# (R's `saveRDS` / `readRDS`): `lf.load_fit` rebuilds the model around the stored draws.

# %%
fit.loo()

# %%
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "sleep_fit.nc"
    fit.save(path)
    again = lf.load_fit(path)
    print(repr(again))
    same = (again.fixef()["estimate"] == fit.fixef()["estimate"]).all()
    print(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB; same fixef after loading: {same}")

# %% [markdown]
# ## What to remember
#
# * The formula string carries over unchanged; `(Days|Subject)` is a correlated block.
# * `fixef`, `ranef`, `coef`, `VarCorr`, `summary` become methods of the fit that return
#   pandas DataFrames; the numbers are posterior means with intervals, not REML estimates.
# * `re.form = NA` is `include_group_effects=False`; `allow.new.levels = TRUE` is
#   `allow_new_levels=True`, and new levels carry the between-group uncertainty.
# * The priors are lmmformula's weakly informative defaults unless you give your own
#   (`lf.prior(...)`) or ask for brms' (`priors="brms"`) or Bambi's (`priors="bambi"`).
