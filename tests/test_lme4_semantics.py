"""Formulas mean what they mean in lme4/brms, checked on numbers.

* ``(0 + x:z|g)``: an interaction inside a bar recovers its simulated sd (the term used to be
  applied to every row of a group, scaled by the group's size);
* ``weights=``: lme4's precision weights (sigma and the doubling under 4x weights against lme4);
  brms' ``y | weights(w)``: the log-likelihood times w (log density against numpy);
* two multi-term bars on one factor are two LKJ blocks, uncorrelated with each other;
* multi-column terms (``poly``, ``bs``, ``C(x, contr.sum)``, ``I(x^2)``) survive fit, summary,
  fixef, predict on new data, loo and save/load with nutpie.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lmmformula as lf
from lmmformula._frame import prepare_new_data
from lmmformula.fit import Fit

DATA = Path(__file__).parent / "conformance" / "data"
SMALL = {"draws": 400, "tune": 400, "chains": 2, "progressbar": False}


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# -- interactions inside a bar ------------------------------------------------------------------
def _interaction_data(seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    groups, per = 40, 25
    g = np.repeat(np.arange(groups), per)
    x, z = rng.normal(size=groups * per), rng.normal(size=groups * per)
    b = rng.normal(0.0, 1.0, groups)  # true sd of the x:z slopes: 1
    y = 1 + 0.5 * x - 0.3 * z + 0.2 * x * z + b[g] * x * z + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": [f"g{i:02d}" for i in g]})


@pytest.mark.sampling
def test_interaction_in_a_bar_recovers_its_sd() -> None:
    fit = _quiet(lf.fit, "y ~ x*z + (0 + x:z|g)", _interaction_data(), random_seed=7, **SMALL)
    sd = fit.posterior["x:z|g_sigma"].values
    assert 0.6 < sd.mean() < 1.6, sd.mean()
    assert fit.diagnostics().divergences <= 5
    # the population-level interaction, which the broken build absorbed into the slopes
    assert abs(fit.fixef().loc["x:z", "estimate"] - 0.2) < 3 * fit.fixef().loc["x:z", "sd"] + 0.1


# -- weights ------------------------------------------------------------------------------------
# lme4 1.1-31, REML, `Rscript tests/conformance/weights_reference.R` on sim_weights.csv:
#   weights=w  sigma=1.180880 sd(g)=1.363057 fixef=0.869458,0.576397
#   weights=w4 sigma=2.361759 sd(g)=1.363057 fixef=0.869458,0.576397
LME4_SIGMA = {"w": 1.180880, "w4": 2.361759}
LME4_FIXEF = np.array([0.869458, 0.576397])


@pytest.fixture(scope="module")
def weighted_fits():
    data = pd.read_csv(DATA / "sim_weights.csv")
    return {
        w: _quiet(lf.fit, "y ~ x + (1|g)", data, weights=w, random_seed=3, **SMALL)
        for w in ("w", "w4")
    }


@pytest.mark.sampling
def test_precision_weights_reproduce_lme4(weighted_fits) -> None:
    sigma = {w: float(f.posterior["sigma"].mean()) for w, f in weighted_fits.items()}
    for w, fit in weighted_fits.items():
        assert sigma[w] == pytest.approx(LME4_SIGMA[w], rel=0.10)
        fixef = fit.fixef()
        assert np.all(np.abs(fixef["estimate"].to_numpy() - LME4_FIXEF) < 2 * fixef["sd"])
    assert sigma["w4"] / sigma["w"] == pytest.approx(2.0, rel=0.05)


def test_precision_weights_in_the_log_density() -> None:
    """The graph's gaussian density has sd sigma / sqrt(w) on both likelihood paths."""
    data = pd.read_csv(DATA / "sim_weights.csv")
    for suffstats in (True, False):
        m = _quiet(lf.model, "y ~ x + (1|g)", data, weights="w", suffstats=suffstats)
        assert m.likelihood == ("sufficient statistics" if suffstats else "full data")
        pm_model = m.pymc_model
        point = pm_model.initial_point()
        rng = np.random.default_rng(0)
        point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in point.items()}
        names = ["Intercept", "x", "1|g", "sigma"]
        fn = pm_model.compile_fn(
            pm_model.replace_rvs_by_values([pm_model[n] for n in names]),
            inputs=pm_model.value_vars,
            on_unused_input="ignore",
        )
        values = dict(zip(names, fn(point), strict=True))
        codes = pd.Categorical(data["g"]).codes
        xc = data["x"] - data["x"].mean()  # Bambi samples the intercept of centred predictors
        mu = values["Intercept"] + values["x"] * xc + values["1|g"][codes]
        sd = values["sigma"] / np.sqrt(data["w"])
        expected = stats.norm.logpdf(data["y"], mu, sd).sum()
        likelihood = [v for v in (*pm_model.observed_RVs, *pm_model.potentials)]
        got = pm_model.compile_logp(vars=likelihood, jacobian=False)(point)
        np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_brms_weights_multiply_the_log_likelihood() -> None:
    data = pd.read_csv(DATA / "sim_weights.csv")
    m = _quiet(lf.model, "y | weights(w) ~ x + (1|g)", data)
    assert m.likelihood == "full data"
    pm_model = m.pymc_model
    rng = np.random.default_rng(1)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in pm_model.initial_point().items()}
    names = ["mu", "sigma"]
    fn = pm_model.compile_fn(
        pm_model.replace_rvs_by_values([pm_model[n] for n in names]),
        inputs=pm_model.value_vars,
        on_unused_input="ignore",
    )
    mu, sigma = fn(point)
    expected = (data["w"] * stats.norm.logpdf(data["y"], mu, sigma)).sum()
    got = pm_model.compile_logp(vars=pm_model.observed_RVs, jacobian=False)(point)
    np.testing.assert_allclose(got, expected, rtol=1e-9)


# -- two blocks on one factor -------------------------------------------------------------------
def test_two_multi_term_bars_are_two_blocks() -> None:
    data = pd.read_csv(DATA / "sim_main.csv")
    m = _quiet(lf.model, "y ~ x + z + w + (1 + x|g) + (0 + z + w|g)", data)
    assert {k: b.terms for k, b in m.blocks.items()} == {
        "g": ("1|g", "x|g"),
        "g__2": ("z|g", "w|g"),
    }
    names = set(m.pymc_model.named_vars)
    assert {"g_corr", "g__2_corr"} <= names
    assert [cols for _, cols in m.design().blocks] == [("Intercept", "x"), ("z", "w")]


# -- multi-column terms end to end --------------------------------------------------------------
@pytest.mark.sampling
@pytest.mark.parametrize(
    "formula",
    [
        "y ~ poly(x, 2) + bs(z, df = 4) + (1|g)",
        "y ~ C(f, contr.sum) + I(x^2) + (x|g)",
    ],
)
def test_multi_column_terms_survive_the_workflow(formula: str, tmp_path) -> None:
    data = pd.read_csv(DATA / "sim_main.csv")
    fit = _quiet(lf.fit, formula, data, random_seed=5, **SMALL)
    text = str(fit.summary())
    fixef = fit.fixef()
    design = fit.model.design()
    assert list(fixef.index) == list(design.X.columns)
    for name in fixef.index:
        assert name in text
    new = data.sample(7, random_state=1).reset_index(drop=True)
    pred = _quiet(fit.predict, new)
    assert pred.shape == (7, 4) and np.isfinite(pred.to_numpy()).all()
    # the predicted means are X beta + Z b at the posterior means, up to averaging nonlinearity
    # (identity link: exactly linear)
    same = _quiet(fit.predict, data)["estimate"].to_numpy()
    ranef = fit.posterior
    b = np.concatenate(
        [
            ranef[t].mean(("chain", "draw")).values.reshape(-1)
            for t in design.Z_columns["term"].unique()
        ]
    )
    np.testing.assert_allclose(same, design.linear_predictor(fixef["estimate"], b), rtol=1e-8)
    loo = _quiet(fit.loo)
    assert np.isfinite(loo.elpd)
    path = tmp_path / "fit.nc"
    fit.save(path)
    back = _quiet(lf.load_fit, path)
    pd.testing.assert_frame_equal(back.fixef(), fixef)


# -- brms' 0 + Intercept ------------------------------------------------------------------------
def test_brms_explicit_intercept_is_an_uncentred_b_coefficient(sleepstudy) -> None:
    m = _quiet(
        lf.model,
        "Reaction ~ 0 + Intercept + Days + (Days|Subject)",
        sleepstudy,
        priors=[lf.prior("normal(0, 100)", cls="b")],
        suffstats=False,
    )
    summary = m.prior_summary()
    assert summary.loc[summary["class"] == "Intercept", "prior"].tolist() == ["normal(0, 100)"]
    design = m.design()
    assert list(design.X.columns) == ["Intercept", "Days"]
    pm_model = m.pymc_model
    names = ["mu", "Intercept", "Days", "1|Subject", "Days|Subject"]
    fn = pm_model.compile_fn(
        pm_model.replace_rvs_by_values([pm_model[n] for n in names]),
        inputs=pm_model.value_vars,
        on_unused_input="ignore",
    )
    rng = np.random.default_rng(4)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in pm_model.initial_point().items()}
    v = dict(zip(names, fn(point), strict=True))
    b = np.concatenate([np.asarray(v["1|Subject"]), np.asarray(v["Days|Subject"])])
    # no centring: the sampled Intercept is the intercept at Days = 0
    expected = design.linear_predictor([v["Intercept"], v["Days"]], b)
    np.testing.assert_allclose(v["mu"], expected, rtol=1e-10)


# -- interaction grouping factors -----------------------------------------------------------------
def test_interaction_factor_levels_are_the_observed_combinations() -> None:
    data = pd.read_csv(DATA / "sim_main.csv")
    data = data[~((data["g"] == "g01") & (data["g2"] == "r1"))]  # one combination never seen
    m = _quiet(lf.model, "y ~ x + (1|g:g2)", data)
    observed = set(data["g"] + ":" + data["g2"])
    assert set(m.design().Z_columns["level"]) == observed
    assert len(m.pymc_model.initial_point()["1|g:g2_offset"]) == len(observed)
    stub = Fit(m, None, sampler="nutpie")  # no draws: the check runs before any is read
    new = pd.DataFrame({"x": [0.0], "g": ["g01"], "g2": ["r1"]})
    prepared = _quiet(prepare_new_data, new, m)
    with pytest.raises(lf.errors.DataError, match="combinations not seen in the fit: 'g01:r1'"):
        stub._check_new_levels(prepared, allow_new_levels=False, include_group_effects=True)


def test_held_out_rows_use_the_precision_weights() -> None:
    """kfold's held-out log-likelihood of a gaussian model with lme4's weights is
    ``log N(y | mu, sigma / sqrt(w))`` (numpy from prior draws standing in for a posterior)."""
    import pymc as pm
    import xarray as xr

    from lmmformula.kfold import heldout_loglik

    data = pd.read_csv(DATA / "sim_weights.csv")
    m = _quiet(lf.model, "y ~ x + (1|g)", data, weights="w", suffstats=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prior = pm.sample_prior_predictive(
            draws=40,
            model=m.pymc_model,
            var_names=["Intercept", "x", "sigma", "1|g"],
            random_seed=3,
        )
    posterior = prior["prior"].to_dataset()
    # Bambi's posterior intercept is uncentred: un-centre the prior draws as Bambi does
    posterior["Intercept"] = posterior["Intercept"] - posterior["x"] * data["x"].mean()
    fit = Fit(m, xr.DataTree.from_dict({"posterior": posterior}), sampler="prior draws")
    rows = data.iloc[:25].reset_index(drop=True)
    got = heldout_loglik(fit, rows, random_seed=1)
    codes = pd.Categorical(rows["g"], categories=list(posterior["g__factor_dim"].values)).codes
    post = {k: posterior[k].values.reshape(40, *posterior[k].shape[2:]) for k in posterior}
    mu = (
        post["Intercept"][:, None]
        + post["x"][:, None] * rows["x"].to_numpy()
        + post["1|g"][:, codes]
    )
    sd = post["sigma"][:, None] / np.sqrt(rows["w"].to_numpy())
    np.testing.assert_allclose(got, stats.norm.logpdf(rows["y"].to_numpy(), mu, sd), rtol=1e-9)


def test_pointwise_log_likelihood_uses_the_precision_weights() -> None:
    """``Fit.log_likelihood`` (LOO's input) of a gaussian model with lme4's weights is
    ``log N(y | mu, sigma / sqrt(w))`` row by row (numpy, prior draws as the posterior)."""
    import pymc as pm
    import xarray as xr

    data = pd.read_csv(DATA / "sim_weights.csv")
    m = _quiet(lf.model, "y ~ x + (1|g)", data, weights="w")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prior = pm.sample_prior_predictive(
            draws=30,
            model=m.pymc_model,
            var_names=["Intercept", "x", "sigma", "1|g"],
            random_seed=4,
        )
    posterior = prior["prior"].to_dataset()
    posterior["Intercept"] = posterior["Intercept"] - posterior["x"] * data["x"].mean()
    fit = Fit(m, xr.DataTree.from_dict({"posterior": posterior}), sampler="prior draws")
    got = fit.log_likelihood().transpose("chain", "draw", ...).values.reshape(30, -1)
    codes = pd.Categorical(data["g"], categories=list(posterior["g__factor_dim"].values)).codes
    post = {k: posterior[k].values.reshape(30, *posterior[k].shape[2:]) for k in posterior}
    mu = (
        post["Intercept"][:, None]
        + post["x"][:, None] * data["x"].to_numpy()
        + post["1|g"][:, codes]
    )
    sd = post["sigma"][:, None] / np.sqrt(data["w"].to_numpy())
    np.testing.assert_allclose(got, stats.norm.logpdf(data["y"].to_numpy(), mu, sd), rtol=1e-9)
