"""Sampling tests: small seeded runs checked against independent references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmmformula as lf
from lmmformula.fit import Diagnostics, SamplingWarning

pytestmark = pytest.mark.sampling

# lme4 1.1 REML fit, checked with
#   Rscript -e 'library(lme4); m <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy);
#               print(fixef(m), digits = 7); print(sqrt(diag(vcov(m))), digits = 7);
#               print(as.data.frame(VarCorr(m)), digits = 7)'
# (the same numbers as Bates, Maechler, Bolker & Walker 2015, J. Stat. Softw. 67(1), sec. 5).
LME4_SLEEPSTUDY = {
    "Intercept": 251.405,
    "Days": 10.467,
    "sd(Intercept)": 24.741,
    "sd(Days)": 5.922,
    "cor": 0.066,
    "sigma": 25.592,
}
LME4_SE = {"Intercept": 6.8246, "Days": 1.5458}  # sqrt(diag(vcov(m)))


def test_sleepstudy_close_to_lme4(sleep_fit):
    """Posterior means against lme4's REML estimates, with bands a wrong answer cannot meet.

    Measured spread (this model, default priors and sampler; 18 seeds: 15 with 2 x 500 draws,
    3 with 4 x 1000 or 4 x 2000 draws):

    * Fixed effects: the priors are flat on this scale, so the posterior mean is lme4's
      estimate up to Monte Carlo error; measured |difference| <= 0.11 standard errors.
      Bound: 0.2 SE.
    * Standard deviations: with 18 subjects the posterior of an sd is right-skewed and its mean
      sits above REML's estimate: 1.067 to 1.107 times it for sd(Intercept), 1.069 to 1.109
      for sd(Days). Bound: 0.97 to 1.15 times REML. A reported sd 20% off (0.8 or 1.2 times
      the right value) cannot land in that band while the right value does: that would need
      the right value in [0.81, 0.96] or [1.21, 1.44] times REML.
    * Correlation: REML gives 0.066; the posterior mean (LKJ(2) pulls it slightly towards 0;
      Monte Carlo error about 0.012) measured 0.043 to 0.110. Bound: 0.066 +/- 0.06, i.e.
      (0.006, 0.126), so the same value with its sign flipped cannot pass.
    * sigma: posterior mean 1.009 to 1.013 times REML's. Bound: 3%.
    """
    fe = sleep_fit.fixef()
    for name in ("Intercept", "Days"):
        row = fe.loc[name]
        assert abs(row.estimate - LME4_SLEEPSTUDY[name]) < 0.2 * LME4_SE[name], row
        assert row.lower < LME4_SLEEPSTUDY[name] < row.upper
    vc = sleep_fit.varcorr()
    sd_int = vc[(vc.grp == "Subject") & (vc.var1 == "Intercept") & vc.var2.isna()].iloc[0]
    sd_days = vc[(vc.grp == "Subject") & (vc.var1 == "Days") & vc.var2.isna()].iloc[0]
    cor = vc[(vc.grp == "Subject") & (vc.var2 == "Days")].iloc[0]
    resid = vc[vc.grp == "Residual"].iloc[0]
    for row, key in ((sd_int, "sd(Intercept)"), (sd_days, "sd(Days)")):
        ratio = row.estimate / LME4_SLEEPSTUDY[key]
        assert 0.97 < ratio < 1.15, (key, ratio)
    assert abs(cor.estimate - LME4_SLEEPSTUDY["cor"]) < 0.06, cor
    assert resid.estimate == pytest.approx(LME4_SLEEPSTUDY["sigma"], rel=0.03)
    # the reported values are the posterior means of the variables they name
    post = sleep_fit.posterior
    corr = post["Subject_corr"].transpose("chain", "draw", ...).values[..., 0, 1]
    for row, draws in (
        (sd_int, post["1|Subject_sigma"].values),
        (sd_days, post["Days|Subject_sigma"].values),
        (cor, corr),
        (resid, post["sigma"].values),
    ):
        np.testing.assert_allclose(row.estimate, draws.mean(), rtol=1e-10)
    assert list(post["Subject_corr"].coords["Subject__block_dim"].values) == [
        "1|Subject",
        "Days|Subject",
    ]
    assert sleep_fit.diagnostics().divergences == 0


def test_varcorr_shape_matches_lme4(sleep_fit):
    vc = sleep_fit.varcorr()
    assert list(vc.columns) == ["grp", "var1", "var2", "estimate", "sd", "lower", "upper"]
    assert vc["grp"].tolist() == ["Subject", "Subject", "Subject", "Residual"]
    assert vc["var1"].tolist() == ["Intercept", "Days", "Intercept", None]
    assert vc["var2"].tolist() == [None, None, "Days", None]


def test_ranef_coef_fixef_agree(sleep_fit):
    re = sleep_fit.ranef()["Subject"]
    co = sleep_fit.coef()["Subject"]
    fe = sleep_fit.fixef()["estimate"]
    assert re.shape == (18, 2) and list(re.columns) == ["Intercept", "Days"]
    np.testing.assert_allclose(co["Days"], fe["Days"] + re["Days"], rtol=1e-10)
    np.testing.assert_allclose(co["Intercept"], fe["Intercept"] + re["Intercept"], rtol=1e-10)
    # ranef are deviations: they average out near zero
    assert abs(re["Days"].mean()) < 1.0
    long = sleep_fit.ranef(long=True)
    assert len(long) == 36 and set(long["term"]) == {"Intercept", "Days"}
    assert list(long.columns[:5]) == ["grpvar", "term", "grp", "condval", "condsd"]  # lme4's
    assert (long["lower"] < long["condval"]).all() and (long["condval"] < long["upper"]).all()


def test_summary_prints_the_brms_sections(sleep_fit):
    text = str(sleep_fit.summary())
    for piece in (
        "Formula: Reaction ~ Days + (Days|Subject)",
        "Subject (18)",
        "sd(Intercept)",
        "cor(Intercept,Days)",
        "Regression Coefficients:",
        "sigma",
        "LKJ(eta = 2)",
        "non-centered",
    ):
        assert piece in text


def test_predictions_by_hand_from_posterior_draws(sleep_fit, sleepstudy):
    post = sleep_fit.posterior
    levels = list(post["Subject__factor_dim"].values)
    codes = pd.Categorical(sleepstudy["Subject"], categories=levels).codes
    days = sleepstudy["Days"].to_numpy()
    expected = (
        post["Intercept"].values[..., None]
        + post["Days"].values[..., None] * days
        + post["1|Subject"].values[..., codes]
        + post["Days|Subject"].values[..., codes] * days
    )
    got = sleep_fit.predict(summary=False).transpose("chain", "draw", "__obs__").values
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    table = sleep_fit.predict()
    np.testing.assert_allclose(table["estimate"], expected.mean(axis=(0, 1)), rtol=1e-10)


def test_new_levels_need_permission(sleep_fit, sleepstudy):
    new = sleepstudy.head(3).assign(Subject="999")
    with pytest.raises(lf.errors.DataError, match="Subject.*'999'.*allow_new_levels"):
        sleep_fit.predict(new)
    pred = sleep_fit.predict(new, allow_new_levels=True, random_seed=1)
    pop = sleep_fit.predict(new, include_group_effects=False)
    # a new subject is uncertain: wider than the population-level prediction
    assert (pred["sd"] > pop["sd"]).all()


def test_loo_runs_from_stored_draws(sleep_fit):
    from scipy.special import logsumexp

    loo = sleep_fit.loo()
    ll = sleep_fit.log_likelihood().transpose("chain", "draw", "__obs__").values
    assert ll.shape[-1] == 180
    flat = ll.reshape(-1, 180)
    lppd = float(np.sum(logsumexp(flat, axis=0) - np.log(flat.shape[0])))
    # leaving an observation out costs something, and no more than the model's ~40 parameters
    # (18 subjects x 2 effects, 2 fixed effects, 2 sds, a correlation, sigma) can buy
    assert 0.0 < lppd - loo.elpd < 42.0
    assert loo.p == pytest.approx(lppd - loo.elpd, rel=1e-6)


def test_problems_are_reported_in_words():
    ok = Diagnostics(
        divergences=0, max_rhat=1.003, min_ess_bulk=900, min_ess_tail=800, draws=1000, chains=4
    )
    bad = Diagnostics(
        divergences=12, max_rhat=1.05, min_ess_bulk=150, min_ess_tail=380, draws=1000, chains=4
    )
    assert ok.problems() == []
    text = "; ".join(bad.problems())
    assert "12 divergent" in text and "1.050" in text and "150" in text and "380" in text


def test_one_sampling_warning_says_what_to_do(sleepstudy):
    with pytest.warns(SamplingWarning, match="more draws"):
        lf.fit(
            "Reaction ~ Days + (Days|Subject)",
            sleepstudy,
            draws=20,
            tune=20,
            chains=2,
            random_seed=3,
            progressbar=False,
        )


class _Health:
    """A fit's diagnostics with divergences, for the sampler-health advice."""

    divergences, chains, max_rhat, min_ess_bulk, min_ess_tail = 3, 2, 1.0, 1e4, 1e4

    def problems(self) -> list[str]:
        return ["3 divergent transitions"]


@pytest.mark.parametrize(("used", "suggested"), [(None, 0.9), (0.9, 0.95), (0.99, 0.995)])
def test_divergence_advice_suggests_a_higher_target_accept(used, suggested):
    from types import SimpleNamespace

    from lmmformula.fit import _warn_if_unhealthy

    stub = SimpleNamespace(
        diagnostics=_Health,
        settings={"target_accept": used},
        model=SimpleNamespace(noncentered={}),
    )
    with pytest.warns(lf.SamplingWarning, match=rf"fit\(target_accept={suggested:g}\)"):
        _warn_if_unhealthy(stub)
