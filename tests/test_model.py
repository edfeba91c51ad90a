"""Build tests: the PyMC graph of correlated blocks, without sampling."""

from __future__ import annotations

import warnings

import bambi as bmb
import numpy as np
import pandas as pd
import pymc as pm
import pytest
import xarray as xr

import lmmformula as lf
from lmmformula.errors import ModelError
from lmmformula.fit import Fit


@pytest.fixture(scope="module")
def sim():
    rng = np.random.default_rng(1)
    n_groups, per = 15, 8
    g = np.repeat(np.arange(n_groups), per)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n_groups * per),
            "x": rng.normal(size=n_groups * per),
            "z": rng.normal(size=n_groups * per),
            "f": np.tile(list("abcd"), n_groups * per // 4),
            "g": [f"g{i:02d}" for i in g],
            "h": [f"h{i % 3}" for i in g],
        }
    )


def _vars(model):
    pm_model = model.build().pymc_model
    free = {rv.name: rv for rv in pm_model.free_RVs}
    det = {d.name: d for d in pm_model.deterministics}
    return pm_model, free, det


def _shape(pm_model, name):
    return (
        tuple(pm_model.initial_point().get(name, np.empty(0)).shape)
        if name in {v.name for v in pm_model.value_vars}
        else tuple(pm_model[name].shape.eval())
    )


GRAPHS = [
    # formula, block factor -> (block size, term names), factors without block
    ("y ~ x + (x|g)", {"g": (2, ("1|g", "x|g"))}, []),
    ("y ~ x + (1 + x + z|g)", {"g": (3, ("1|g", "x|g", "z|g"))}, []),
    ("y ~ (0 + f|g)", {"g": (4, ("f|g",))}, []),
    ("y ~ (f|g)", {"g": (4, ("1|g", "f|g"))}, []),
    ("y ~ x + (x||g)", {}, ["g"]),
    ("y ~ x + (1|g) + (0 + x|g)", {}, ["g"]),
    ("y ~ x + (0 + x|g)", {}, ["g"]),
    ("y ~ x + (x|g) + (1|h)", {"g": (2, ("1|g", "x|g"))}, ["h"]),
    ("y ~ x + (x|g) + (z|h)", {"g": (2, ("1|g", "x|g")), "h": (2, ("1|h", "z|h"))}, []),
    ("y ~ x + (x|h/g)", {"h": (2, ("1|h", "x|h")), "h:g": (2, ("1|h:g", "x|h:g"))}, []),
]


@pytest.mark.parametrize(("formula", "blocks", "independent"), GRAPHS)
def test_block_variables_and_shapes(sim, formula, blocks, independent):
    model = lf.model(formula, sim)
    pm_model, free, det = _vars(model)
    assert set(model.blocks) == set(blocks)
    for factor, (size, term_names) in blocks.items():
        # an interaction factor has the combinations present in the data as levels (lme4)
        n_levels = len(sim[factor.split(":")].drop_duplicates())
        assert model.blocks[factor].terms == term_names
        assert f"{factor}_lkj" in free
        assert f"{factor}_offset" in free
        assert pm_model.initial_point()[f"{factor}_offset"].shape == (n_levels, size)
        assert tuple(pm_model.named_vars_to_dims[f"{factor}_corr"]) == (
            f"{factor}__block_dim",
            f"{factor}__block_dim_bis",
        )
        assert len(pm_model.coords[f"{factor}__block_dim"]) == size
        for name in term_names:
            assert name in det and f"{name}_sigma" in det
            assert pm_model.named_vars_to_dims[name][0] == f"{factor}__factor_dim"
    for factor in independent:
        assert f"{factor}_lkj" not in free and f"{factor}_corr" not in det
        names = [t.name for t in model.translation.group_terms if t.factor == factor]
        for name in names:
            assert f"{name}_sigma" in free  # Bambi's own independent sd


def test_correlation_axes_are_the_block_columns(sim):
    model = lf.model("y ~ (f|g)", sim)
    coords = model.build().pymc_model.coords
    assert list(coords["g__block_dim"]) == ["1|g", "f[b]|g", "f[c]|g", "f[d]|g"]
    assert list(coords["g__block_dim_bis"]) == list(coords["g__block_dim"])


def test_centered_switch_changes_the_graph(sim):
    nc = lf.model("y ~ x + (x|g) + (z|h)", sim)
    c = lf.model("y ~ x + (x|g) + (z|h)", sim, noncentered=False)
    mixed = lf.model("y ~ x + (x|g) + (z|h)", sim, noncentered={"g": False})
    _, free_nc, _ = _vars(nc)
    _, free_c, _ = _vars(c)
    _, free_mixed, _ = _vars(mixed)
    assert {"g_offset", "h_offset"} <= set(free_nc) and "g_block" not in free_nc
    assert {"g_block", "h_block"} <= set(free_c) and "g_offset" not in free_c
    assert isinstance(
        free_c["g_block"].owner.op, type(pm.MvNormal.dist(np.zeros(2), np.eye(2)).owner.op)
    )
    assert "g_block" in free_mixed and "h_offset" in free_mixed


def test_centered_switch_reaches_uncorrelated_terms(sim):
    c = lf.model("y ~ x + (x||g)", sim, noncentered=False)
    _, free, _ = _vars(c)
    assert "1|g" in free and "1|g_offset" not in free
    nc = lf.model("y ~ x + (x||g)", sim)
    _, free, _ = _vars(nc)
    assert "1|g_offset" in free


def test_unknown_factor_in_noncentered_dict(sim):
    with pytest.raises(ModelError, match="'station'.*grouping factors are 'g'"):
        lf.model("y ~ x + (x|g)", sim, noncentered={"station": False})


@pytest.mark.parametrize("eta", [0, -1, float("nan"), "two"])
def test_lkj_eta_must_be_positive(sim, eta):
    with pytest.raises(ModelError, match="lkj_eta"):
        lf.model("y ~ x + (x|g)", sim, lkj_eta=eta)


def _hand_written_logp(sim, point, eta, noncentered=True):
    """The lecture's model written directly in PyMC, with the same names and priors."""
    codes, levels = pd.factorize(sim["g"], sort=True)
    x = sim["x"].to_numpy()
    xc = x - x.mean()
    with pm.Model(coords={"g__factor_dim": levels}) as hand:
        intercept = pm.Normal("Intercept", 0, 2)
        slope = pm.Normal("x", 0, 0.1)
        sigma = pm.HalfCauchy("sigma", 1)
        sd_dist = pm.HalfCauchy.dist(beta=np.array([1.0, 0.5]), shape=2)
        chol, _, _ = pm.LKJCholeskyCov("g_lkj", n=2, eta=eta, sd_dist=sd_dist, compute_corr=True)
        if noncentered:
            z = pm.Normal("g_offset", 0, 1, shape=(len(levels), 2))
            u = z @ chol.T
        else:
            u = pm.MvNormal("g_block", mu=np.zeros(2), chol=chol, shape=(len(levels), 2))
        mu = intercept + slope * xc + u[codes, 0] + u[codes, 1] * x
        pm.Normal("y", mu, sigma, observed=sim["y"].to_numpy())
    return hand.compile_logp(mode="FAST_COMPILE")(point)


LIKELIHOODS = {True: "sufficient statistics", False: "full data"}


@pytest.mark.parametrize("suffstats", [True, False], ids=["suffstats", "full-data"])
@pytest.mark.parametrize("noncentered", [True, False], ids=["noncentered", "centered"])
def test_logp_equals_the_hand_written_lkj_model(sim, noncentered, suffstats):
    priors = {
        "Intercept": bmb.Prior("Normal", mu=0, sigma=2),
        "x": bmb.Prior("Normal", mu=0, sigma=0.1),
        "sigma": bmb.Prior("HalfCauchy", beta=1),
        "1|g": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfCauchy", beta=1)),
        "x|g": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfCauchy", beta=0.5)),
    }
    model = lf.model(
        "y ~ x + (x|g)",
        sim,
        priors=priors,
        lkj_eta=3.0,
        noncentered=noncentered,
        suffstats=suffstats,
    )
    assert model.likelihood == LIKELIHOODS[suffstats]
    pm_model = model.build().pymc_model
    rng = np.random.default_rng(3)
    ours = pm_model.compile_logp(mode="FAST_COMPILE")
    for _ in range(3):
        point = {
            k: rng.normal(scale=0.5, size=v.shape) for k, v in pm_model.initial_point().items()
        }
        assert ours(point) == pytest.approx(
            _hand_written_logp(sim, point, 3.0, noncentered), rel=1e-9
        )


def _hand_written_factor_logp(sim, point, eta):
    """``y ~ x + (0 + f|g)`` written directly in PyMC: a 4 x 4 LKJ block, one column per level
    of f, each row taking the coefficient of its own level."""
    codes, levels = pd.factorize(sim["g"], sort=True)
    f_codes = pd.Categorical(sim["f"], categories=list("abcd")).codes
    x = sim["x"].to_numpy()
    with pm.Model() as hand:
        intercept = pm.Normal("Intercept", 0, 2)
        slope = pm.Normal("x", 0, 0.1)
        sigma = pm.HalfCauchy("sigma", 1)
        sd_dist = pm.HalfNormal.dist(sigma=np.array([1.0, 1.0, 1.0, 1.0]), shape=4)
        chol, _, _ = pm.LKJCholeskyCov("g_lkj", n=4, eta=eta, sd_dist=sd_dist, compute_corr=True)
        z = pm.Normal("g_offset", 0, 1, shape=(len(levels), 4))
        u = z @ chol.T
        mu = intercept + slope * (x - x.mean()) + u[codes, f_codes]
        pm.Normal("y", mu, sigma, observed=sim["y"].to_numpy())
    return hand.compile_logp(mode="FAST_COMPILE")(point)


@pytest.mark.parametrize("suffstats", [True, False], ids=["suffstats", "full-data"])
def test_factor_block_logp_on_both_likelihood_paths(sim, suffstats):
    """A multi-column group term (a factor's K columns) enters both likelihoods whole."""
    priors = {
        "Intercept": bmb.Prior("Normal", mu=0, sigma=2),
        "x": bmb.Prior("Normal", mu=0, sigma=0.1),
        "sigma": bmb.Prior("HalfCauchy", beta=1),
        "f|g": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=1)),
    }
    model = lf.model("y ~ x + (0 + f|g)", sim, priors=priors, lkj_eta=2.0, suffstats=suffstats)
    assert model.likelihood == LIKELIHOODS[suffstats]
    pm_model = model.build().pymc_model
    ours = pm_model.compile_logp(mode="FAST_COMPILE")
    rng = np.random.default_rng(4)
    for _ in range(2):
        point = {
            k: rng.normal(scale=0.5, size=v.shape) for k, v in pm_model.initial_point().items()
        }
        assert ours(point) == pytest.approx(_hand_written_factor_logp(sim, point, 2.0), rel=1e-9)


def test_mixed_sd_prior_families_in_one_block(sim):
    priors = {
        "1|g": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=2)),
        "x|g": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("Exponential", lam=1)),
    }
    model = lf.model("y ~ x + (x|g)", sim, priors=priors)
    pm_model = model.build().pymc_model
    draws = pm.draw([pm_model["1|g_sigma"], pm_model["x|g_sigma"]], draws=4000, random_seed=1)
    # HalfNormal(2) has mean 2*sqrt(2/pi) = 1.596; Exponential(1) has mean 1.
    assert draws[0].mean() == pytest.approx(2 * np.sqrt(2 / np.pi), rel=0.06)
    assert draws[1].mean() == pytest.approx(1.0, rel=0.06)


def test_prior_mean_of_a_block_term_is_honoured(sim):
    priors = {"1|g": bmb.Prior("Normal", mu=5.0, sigma=bmb.Prior("HalfNormal", sigma=0.1))}
    model = lf.model("y ~ x + (x|g)", sim, priors=priors)
    pm_model = model.build().pymc_model
    draws = pm.draw(pm_model["1|g"], draws=500, random_seed=2)
    assert draws.mean() == pytest.approx(5.0, abs=0.05)
    slope = pm.draw(pm_model["x|g"], draws=500, random_seed=2)
    assert abs(slope.mean()) < 0.5


def test_prior_predictive_has_block_variables_under_bambi_names(sim):
    model = lf.model("y ~ x + (x|g)", sim)
    model.build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prior = model.bambi.prior_predictive(draws=20, random_seed=1)
    names = set(prior["prior"].to_dataset().data_vars)
    assert {"1|g", "x|g", "1|g_sigma", "x|g_sigma", "g_corr"} <= names
    assert "g_offset" not in names


@pytest.fixture(scope="module")
def mock_fit(sim):
    """A built model whose 'posterior' is a set of prior draws: predict without sampling."""
    model = lf.model("y ~ x + (x|g)", sim)
    pm_model = model.build().pymc_model
    names = ["Intercept", "x", "sigma", "1|g", "x|g", "1|g_sigma", "x|g_sigma", "g_corr"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prior = pm.sample_prior_predictive(draws=40, model=pm_model, var_names=names, random_seed=5)
    posterior = prior["prior"].to_dataset()
    idata = xr.DataTree.from_dict({"posterior": posterior})
    return Fit(model, idata, sampler="mock", settings={"tune": 0})


def test_predict_on_a_mock_sampled_model_matches_hand_computation(sim, mock_fit):
    post = mock_fit.posterior
    codes = pd.Categorical(sim["g"], categories=list(post["g__factor_dim"].values)).codes
    x = sim["x"].to_numpy()
    u0 = post["1|g"].values[..., codes]
    u1 = post["x|g"].values[..., codes]
    expected = post["Intercept"].values[..., None] + post["x"].values[..., None] * x + u0 + u1 * x
    got = mock_fit.predict(kind="mean", summary=False).transpose("chain", "draw", "__obs__")
    np.testing.assert_allclose(got.values, expected, rtol=1e-10, atol=1e-10)
    fixed_only = mock_fit.predict(include_group_effects=False, summary=False)
    np.testing.assert_allclose(
        fixed_only.transpose("chain", "draw", "__obs__").values,
        post["Intercept"].values[..., None] + post["x"].values[..., None] * x,
        rtol=1e-10,
    )


def test_log_likelihood_uses_the_block_draws(sim, mock_fit):
    from scipy import stats

    post = mock_fit.posterior
    codes = pd.Categorical(sim["g"], categories=list(post["g__factor_dim"].values)).codes
    x = sim["x"].to_numpy()
    mu = (
        post["Intercept"].values[..., None]
        + post["x"].values[..., None] * x
        + post["1|g"].values[..., codes]
        + post["x|g"].values[..., codes] * x
    )
    expected = stats.norm.logpdf(sim["y"].to_numpy(), mu, post["sigma"].values[..., None])
    got = mock_fit.log_likelihood().transpose("chain", "draw", "__obs__").values
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_response_draws_centre_on_the_mean(sim, mock_fit):
    mean = mock_fit.predict(kind="mean", summary=False).values
    resp = mock_fit.predict(kind="response", summary=False, random_seed=1).values
    sigma = mock_fit.posterior["sigma"].values[..., None]
    z = (resp - mean) / sigma
    assert abs(z.mean()) < 0.05 and z.std() == pytest.approx(1.0, abs=0.05)


def test_truncated_sd_prior_is_scipys_truncated_normal(sim):
    """brms' ``normal(10, 20) T[0, ]`` on a block sd: the sd's prior density is the truncated
    normal's (normalised over [0, inf)), and the built model draws from it."""
    from scipy import stats

    from lmmformula._bambi import _sd_dist

    spec = lf.prior("normal(10, 20) T[0, ]", cls="sd", group="g", coef="x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lf.model("y ~ x + (x|g)", sim, priors=[spec])
    sd_prior = model.bambi.parameters["mu"].group_specific_terms["x|g"].prior.args["sigma"]
    truth = stats.truncnorm(a=(0 - 10) / 20, b=np.inf, loc=10, scale=20)
    values = np.array([0.5, 3.0, 10.0, 42.0])
    dist = _sd_dist([(sd_prior, 1)])
    logp = [pm.logp(dist, np.array([v])).eval().sum() for v in values]
    np.testing.assert_allclose(logp, truth.logpdf(values), rtol=1e-7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba runs the truncated normal's sampler in object mode
        draws = pm.draw(model.build().pymc_model["x|g_sigma"], draws=4000, random_seed=3)
    assert draws.min() >= 0
    assert stats.kstest(draws, truth.cdf).pvalue > 0.01
    # a half-normal or an untruncated normal would not pass
    assert stats.kstest(draws, stats.halfnorm(scale=20).cdf).pvalue < 1e-6
