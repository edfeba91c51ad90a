"""Sampling tests: small seeded runs checked against independent references."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import lmmformula as lf
from lmmformula.fit import Diagnostics, SamplingWarning

pytestmark = pytest.mark.sampling

# lme4 REML fit of lmer(Reaction ~ Days + (Days | Subject), sleepstudy), as printed in
# Bates, Maechler, Bolker & Walker (2015), "Fitting Linear Mixed-Effects Models Using lme4",
# J. Stat. Softw. 67(1), section 5.
LME4_SLEEPSTUDY = {
    "Intercept": 251.405,
    "Days": 10.467,
    "sd(Intercept)": 24.741,
    "sd(Days)": 5.922,
    "cor": 0.066,
    "sigma": 25.592,
}


def test_sleepstudy_close_to_lme4(sleep_fit):
    fe = sleep_fit.fixef()
    for name in ("Intercept", "Days"):
        row = fe.loc[name]
        assert row.lower < LME4_SLEEPSTUDY[name] < row.upper
        assert abs(row.estimate - LME4_SLEEPSTUDY[name]) < 0.5 * row.sd
    vc = sleep_fit.varcorr()
    sd_int = vc[(vc.grp == "Subject") & (vc.var1 == "Intercept") & vc.var2.isna()].iloc[0]
    sd_days = vc[(vc.grp == "Subject") & (vc.var1 == "Days") & vc.var2.isna()].iloc[0]
    cor = vc[(vc.grp == "Subject") & (vc.var2 == "Days")].iloc[0]
    resid = vc[vc.grp == "Residual"].iloc[0]
    for row, key in ((sd_int, "sd(Intercept)"), (sd_days, "sd(Days)"), (cor, "cor")):
        assert row.lower < LME4_SLEEPSTUDY[key] < row.upper
    # posterior means of sds sit above REML's estimates, but not far above
    assert LME4_SLEEPSTUDY["sd(Days)"] < sd_days.estimate < 1.25 * LME4_SLEEPSTUDY["sd(Days)"]
    assert resid.estimate == pytest.approx(LME4_SLEEPSTUDY["sigma"], rel=0.03)
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
    assert (long["lower"] < long["estimate"]).all() and (long["estimate"] < long["upper"]).all()


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
    loo = sleep_fit.loo()
    assert np.isfinite(loo.elpd)
    assert sleep_fit.log_likelihood().sizes["__obs__"] == 180


def _simulate(n_groups, per_group, sds, corr, seed):
    rng = np.random.default_rng(seed)
    d = len(sds)
    cov = np.outer(sds, sds) * np.asarray(corr)
    u = rng.multivariate_normal(np.zeros(d), cov, size=n_groups)
    g = np.repeat(np.arange(n_groups), per_group)
    n = n_groups * per_group
    x = rng.normal(size=n)
    z = rng.normal(size=n)
    cols = [np.ones(n), x, z][:d]
    eta = 1.0 + 0.5 * x + sum(u[g, j] * cols[j] for j in range(d))
    y = eta + rng.normal(scale=0.5, size=n)
    frame = pd.DataFrame({"y": y, "x": x, "z": z, "g": [f"g{i:03d}" for i in g]})
    return frame, u.std(axis=0, ddof=1), np.corrcoef(u, rowvar=False)


@pytest.mark.parametrize(
    ("formula", "sds", "corr"),
    [
        ("y ~ x + (x|g)", [1.0, 0.6], [[1, -0.6], [-0.6, 1]]),
        (
            "y ~ x + z + (1 + x + z|g)",
            [1.0, 0.6, 0.8],
            [[1, -0.5, 0.3], [-0.5, 1, 0.4], [0.3, 0.4, 1]],
        ),
    ],
    ids=["2x2", "3x3"],
)
def test_simulated_block_is_recovered(formula, sds, corr, fast):
    data, realized_sds, realized_corr = _simulate(60, 25, sds, corr, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        fit = lf.fit(formula, data, random_seed=11, **fast)
    vc = fit.varcorr()
    block = vc[vc.grp == "g"]
    sd_rows = block[block.var2.isna()]
    cor_rows = block[block.var2.notna()]
    assert len(sd_rows) == len(sds) and len(cor_rows) == len(sds) * (len(sds) - 1) // 2
    # The 95% interval holds the effects' realized sds and correlations (what 60 groups can
    # tell), and the data-generating values lie within 3 posterior sds.
    for (_, row), truth, realized in zip(sd_rows.iterrows(), sds, realized_sds, strict=True):
        assert row.lower < realized < row.upper, row
        assert abs(row.estimate - truth) < 3 * row.sd, row
    names = ["Intercept", "x", "z"]
    for _, row in cor_rows.iterrows():
        i, j = names.index(row.var1), names.index(row.var2)
        assert row.lower < realized_corr[i, j] < row.upper, row
        assert abs(row.estimate - corr[i][j]) < 3 * row.sd, row
    assert fit.diagnostics().divergences == 0


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
