"""The sufficient-statistics likelihood: when it is chosen, that it is exact, and that the
posterior and Bambi's tools are unchanged by it."""

from __future__ import annotations

import warnings

import arviz as az
import bambi as bmb
import numpy as np
import pandas as pd
import pytest
from oracle import Block, Fixed, OracleModel, Uncorrelated, level_codes
from scipy import stats

import lmmformula as lf
from lmmformula import _bambi, _nutpie, _suffstats
from lmmformula.errors import ModelError

OZONE = "log_ozone ~ TEMP + (TEMP|station)"
SLEEP = "Reaction ~ Days + (Days|Subject)"


@pytest.fixture(scope="module")
def sleep_weighted(sleepstudy):
    df = sleepstudy.copy()
    df["w"] = 1.0 + (df["Days"] % 3)
    df["status"] = np.where(df["Reaction"] > 400, "right", "none")
    return df


def _quiet_model(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lf.model(*args, **kwargs)


# -- which likelihood --------------------------------------------------------------------------
CHOSEN = {
    # formula, dataset, model kwargs -> likelihood under suffstats="auto"
    "ozone correlated": (OZONE, "beijing_ozone", {}, "sufficient statistics"),
    "ozone uncorrelated": (
        "log_ozone ~ TEMP + (TEMP||station)",
        "beijing_ozone",
        {},
        "sufficient statistics",
    ),
    "ozone fixed only": ("log_ozone ~ TEMP", "beijing_ozone", {}, "sufficient statistics"),
    "sleepstudy": (SLEEP, "sleepstudy", {}, "sufficient statistics"),
    # offsets are subtracted from the response, which keeps the reduction exact
    "offset": (
        "Reaction ~ Days + offset(Days) + (Days|Subject)",
        "sleepstudy",
        {},
        "sufficient statistics",
    ),
    "nested": ("strength ~ 1 + (1|batch/cask)", "pastes", {}, "sufficient statistics"),
    # every (plate, sample) cell holds one row: nothing to gain
    "crossed, one row per cell": (
        "diameter ~ 1 + (1|plate) + (1|sample)",
        "penicillin",
        {},
        "full data",
    ),
    "binomial": ("cbind(incidence, size - incidence) ~ period + (1|herd)", "cbpp", {}, "full data"),
    "gaussian, log link": (SLEEP, "sleepstudy", {"link": "log"}, "full data"),
    "switched off": (SLEEP, "sleepstudy", {"suffstats": False}, "full data"),
}


@pytest.mark.parametrize("case", list(CHOSEN), ids=list(CHOSEN))
def test_likelihood_is_chosen_where_valid_and_paying(case):
    formula, dataset, kwargs, expected = CHOSEN[case]
    m = _quiet_model(formula, lf.load_dataset(dataset), **kwargs)
    assert m.likelihood == expected, m.likelihood_reason
    assert m.bambi.plan.suffstats == (expected == "sufficient statistics")
    assert f"likelihood={expected}" in repr(m)


def test_weighted_and_censored_models_keep_the_full_likelihood(sleep_weighted):
    # brms' weights(w): each row's log-likelihood times w, kept row by row
    weighted = _quiet_model(
        "Reaction | weights(w) ~ Days + (Days|Subject)", sleep_weighted, suffstats="auto"
    )
    assert weighted.likelihood == "full data"
    assert "weighted" in weighted.likelihood_reason
    censored = _quiet_model("censored(Reaction, status) ~ Days + (1|Subject)", sleep_weighted)
    assert censored.likelihood == "full data"
    assert "censored" in censored.likelihood_reason


def test_modelled_sigma_keeps_the_full_likelihood(sleepstudy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bmb.Model(bmb.Formula("Reaction ~ Days", "sigma ~ Days"), sleepstudy)
    assert "sigma is modelled" in _bambi.suffstats_unsupported(model)


def test_forcing_an_invalid_model_is_an_error(sleep_weighted):
    with pytest.raises(ModelError, match="suffstats=True.*binomial"):
        _quiet_model(
            "cbind(incidence, size - incidence) ~ period + (1|herd)",
            lf.load_dataset("cbpp"),
            suffstats=True,
        )
    with pytest.raises(ModelError, match="suffstats must be"):
        _quiet_model(SLEEP, sleep_weighted, suffstats="yes")


def test_forcing_a_model_that_does_not_pay_uses_it(sleepstudy):
    m = _quiet_model(
        "diameter ~ 1 + (1|plate) + (1|sample)", lf.load_dataset("penicillin"), suffstats=True
    )
    assert m.likelihood == "sufficient statistics"


# -- the reduction itself ----------------------------------------------------------------------
def test_pseudo_observations_reproduce_every_sum_of_squares():
    rng = np.random.default_rng(1)
    n = 400
    g = rng.integers(0, 7, n)
    h = rng.integers(0, 3, n)
    g[:5] = 6  # a few one-row cells
    h[:5] = np.arange(5) % 3
    x1 = rng.normal(size=n)
    x = np.column_stack([np.ones(n), x1 - x1.mean()])
    groups = [
        _suffstats.GroupColumns("1|g", np.ones(n), g),
        _suffstats.GroupColumns("x1|g", x1, g),
        _suffstats.GroupColumns("f|h", np.column_stack([x1, x1**2]), h),
    ]
    y = rng.normal(size=n) * 3 + 10
    red = _suffstats.reduce_cells(y, x, groups)
    assert red.rows < n
    for _ in range(5):
        beta = rng.normal(size=2)
        u_g0, u_g1 = rng.normal(size=7), rng.normal(size=7)
        u_h = rng.normal(size=(3, 2))
        eta = x @ beta + u_g0[g] + u_g1[g] * x1 + (u_h[h] * groups[2].predictor).sum(1)
        full = np.sum((y - eta) ** 2)
        zg0, zg1, zh = red.z
        ig0, ig1, ih = red.group_index
        eta_p = red.x @ beta + u_g0[ig0] * zg0 + u_g1[ig1] * zg1 + (u_h[ih] * zh).sum(1)
        reduced = np.sum((red.y - eta_p) ** 2) + red.rss
        np.testing.assert_allclose(reduced, full, rtol=1e-10)


def test_plan_bounds_rows_by_the_rank_of_the_design():
    n = 60
    g = np.repeat(np.arange(6), 10)
    x = np.ones((n, 1))
    plan = _suffstats.plan_cells(x, [_suffstats.GroupColumns("1|g", np.ones(n), g)])
    assert (plan.n_cells, plan.max_rows) == (6, 6)  # rank 1: one pseudo row per cell
    assert plan.pays()


# -- exactness: the logp of the two graphs -----------------------------------------------------
EXACT = {
    "ozone": (OZONE, "beijing_ozone"),
    "sleepstudy": (SLEEP, "sleepstudy"),
    "sleepstudy centered": (SLEEP, "sleepstudy"),
    "offset": ("Reaction ~ Days + offset(Days) + (Days|Subject)", "sleepstudy"),
    "nested": ("strength ~ 1 + (1|batch/cask)", "pastes"),
    "crossed": ("diameter ~ 1 + (1|plate) + (1|sample)", "penicillin"),
}


def _oracle_likelihood(case: str, df: pd.DataFrame) -> OracleModel:
    """The gaussian likelihood of an EXACT case from the equations (tests/oracle.py); only its
    log-likelihood is compared, so the priors are placeholders."""
    flat = stats.norm(0, 1)

    def block(factor, columns):
        codes, _ = level_codes(df[factor])
        return Block(factor, np.column_stack(columns), codes, [flat] * len(columns))

    def single(name, values):
        codes, _ = level_codes(values)
        return Uncorrelated(name, np.ones(len(df)), codes, flat)

    ones = np.ones(len(df))
    if case == "ozone":
        y, fixed = df["log_ozone"], ["TEMP"]
        groups = [block("station", [ones, df["TEMP"].to_numpy(float)])]
    elif case in ("sleepstudy", "sleepstudy centered", "offset"):
        y, fixed = df["Reaction"], ["Days"]
        if case == "offset":  # y ~ N(eta + Days, sigma) is (y - Days) ~ N(eta, sigma)
            y = df["Reaction"] - df["Days"]
        groups = [block("Subject", [ones, df["Days"].to_numpy(float)])]
    elif case == "nested":
        y, fixed = df["strength"], []
        groups = [single("1|batch", df["batch"]), single("1|batch:cask", df.batch + ":" + df.cask)]
    else:  # crossed
        y, fixed = df["diameter"], []
        groups = [single("1|plate", df["plate"]), single("1|sample", df["sample"])]
    x = np.column_stack([df[c].to_numpy(float) for c in fixed]) if fixed else np.zeros((len(df), 0))
    return OracleModel(
        y=y.to_numpy(float),
        family="gaussian",
        fixed=Fixed(x, fixed, [flat] * len(fixed), flat),
        groups=groups,
        sigma_prior=flat,
    )


@pytest.mark.parametrize("case", list(EXACT), ids=list(EXACT))
def test_logp_and_gradient_equal_the_full_data_model(case):
    formula, dataset = EXACT[case]
    kwargs = {"noncentered": False} if "centered" in case else {}
    df = lf.load_dataset(dataset)
    reduced = _quiet_model(formula, df, suffstats=True, **kwargs)
    full = _quiet_model(formula, df, suffstats=False, **kwargs)
    pr, pf = reduced.pymc_model, full.pymc_model
    assert [v.name for v in pr.free_RVs] == [v.name for v in pf.free_RVs]
    assert [v.name for v in pr.observed_RVs] == []
    assert [v.name for v in pr.potentials][-1].endswith("_suffstats")
    assert reduced.bambi.backend.reduction.rows < full.n_obs or case == "crossed"
    assert "mu" not in pr.named_vars and "mu" in pf.named_vars
    logp_r, logp_f = pr.compile_logp(), pf.compile_logp()
    dlogp_r, dlogp_f = pr.compile_dlogp(), pf.compile_dlogp()
    rng = np.random.default_rng(2)
    start = pf.initial_point()
    # and both likelihoods equal the one written from the equations, independent of either
    oracle = _oracle_likelihood(case, reduced.data)
    loglik_r = pr.compile_logp(vars=pr.potentials, mode="FAST_COMPILE")
    for scale in (0.1, 1.0, 3.0):
        point = {k: v + scale * rng.normal(size=np.shape(v)) for k, v in start.items()}
        np.testing.assert_allclose(logp_r(point), logp_f(point), rtol=1e-10, atol=1e-6)
        np.testing.assert_allclose(dlogp_r(point), dlogp_f(point), rtol=1e-8, atol=1e-6)
        expected, _, _ = oracle.parts(point, noncentered="centered" not in case)
        np.testing.assert_allclose(loglik_r(point), expected, rtol=1e-8)


# -- Bambi's tools on a sufficient-statistics model, without sampling ---------------------------
def test_prior_predictive_predict_and_log_likelihood_still_work(sleepstudy):
    m = _quiet_model(SLEEP, sleepstudy)
    m.build()
    bm = m.bambi
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prior = bm.prior_predictive(draws=50, random_seed=3)
    pp = prior["prior_predictive"].to_dataset()
    assert pp["Reaction"].shape == (1, 50, m.n_obs)
    assert bm.backend.suffstats  # the model's own graph is untouched
    # Bambi's predict and log-likelihood read the draws, not the graph
    fake = prior.copy()
    fake["posterior"] = prior["prior"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = bm.predict(fake, kind="response", inplace=False, random_seed=1)
        ll = bm.compute_log_likelihood(fake, inplace=False)
    assert out["posterior_predictive"]["Reaction"].shape == (1, 50, m.n_obs)
    # the expectation from the draws and the data, with numpy: the reported Intercept is the
    # un-centred one, so eta = Intercept + Days b + u0[subject] + u1[subject] Days
    post = fake["posterior"].to_dataset()
    levels = [str(v) for v in post["Subject__factor_dim"].values]
    assert levels == sorted(sleepstudy["Subject"].astype(str).unique())
    codes = pd.Categorical(sleepstudy["Subject"].astype(str), categories=levels).codes
    days = sleepstudy["Days"].to_numpy(float)
    mu = (
        post["Intercept"].values[..., None]
        + post["Days"].values[..., None] * days
        + post["1|Subject"].values[..., codes]
        + post["Days|Subject"].values[..., codes] * days
    )
    sigma = post["sigma"].values[..., None]
    y = sleepstudy["Reaction"].to_numpy()
    expected = stats.norm.logpdf(y, loc=mu, scale=sigma)
    np.testing.assert_allclose(ll["log_likelihood"]["Reaction"].values, expected, rtol=1e-8)
    np.testing.assert_allclose(out["posterior"]["mu"].values, mu, rtol=1e-10)


def test_nutpie_internals_used_by_the_compile_path_exist():
    assert _nutpie.nutpie_internals_available()


# -- one small sampling comparison -------------------------------------------------------------
@pytest.fixture(scope="module")
def sleep_pair(sleepstudy):
    fits = {}
    for flag in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits[flag] = lf.fit(
                SLEEP,
                sleepstudy,
                suffstats=flag,
                draws=300,
                tune=300,
                chains=2,
                random_seed=11,
                progressbar=False,
            )
    return fits


@pytest.mark.sampling
def test_posterior_is_the_same_within_monte_carlo_error(sleep_pair):
    names = ["Intercept", "Days", "sigma", "1|Subject_sigma", "Days|Subject_sigma"]
    post = {k: f.posterior[names] for k, f in sleep_pair.items()}
    mean = {k: p.mean(("chain", "draw")) for k, p in post.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mcse = {k: az.mcse(p, method="mean") for k, p in post.items()}
    for name in names:
        diff = abs(float(mean[True][name]) - float(mean[False][name]))
        se = float(np.hypot(mcse[True][name], mcse[False][name]))
        assert diff < 4 * se, (name, diff, se)


@pytest.mark.sampling
def test_fit_reports_likelihood_timings_and_pointwise_log_likelihood(sleep_pair):
    fit = sleep_pair[True]
    assert "Likelihood: sufficient statistics" in str(fit.summary())
    assert "Likelihood: full data" in str(sleep_pair[False].summary())
    assert {"build", "compile", "sample"} <= set(fit.timings)
    assert all(v >= 0 for v in fit.timings.values())
    ll = fit.log_likelihood()
    assert ll.shape == (2, 300, 180)
    obs = fit.idata["observed_data"].to_dataset()
    np.testing.assert_array_equal(obs["Reaction"].values, fit.model.data["Reaction"].values)
    # the same result layout as sampling through bambi.Model.fit
    m = _quiet_model(SLEEP, fit.model.data)
    m.build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = m.bambi.fit(
            draws=300,
            tune=300,
            chains=2,
            random_seed=11,
            inference_method="nutpie",
            progressbar=False,
        )
    theirs = idata["posterior"].to_dataset()
    for name in ("Intercept", "Days", "sigma", "Subject_corr", "1|Subject"):
        assert fit.posterior[name].dims == theirs[name].dims, name
        assert fit.posterior[name].shape == theirs[name].shape, name
    pd.testing.assert_index_equal(
        fit.posterior.indexes["Subject__factor_dim"],
        idata["posterior"].to_dataset().indexes["Subject__factor_dim"],
    )
