"""Integrating a varying intercept out of a gaussian model (issue 14, ``lmmformula._marginal``).

Oracles: the dense multivariate normal density (scipy), the dense conditional of gaussian
effects given the residuals (linear algebra written from the model's equations), and the full
model's posterior sampled without integrating anything out.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest
import scipy.stats as st
import xarray as xr

import lmmformula as lf
from lmmformula import _bambi, _marginal
from lmmformula.errors import ModelError


def _crossed(n=600, n_s=120, n_d=12, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    s = rng.integers(0, n_s, n)
    d = rng.integers(0, n_d, n)
    x = rng.normal(size=n)
    y = 2.0 + 0.5 * x + rng.normal(0, 0.7, n_s)[s] + rng.normal(0, 0.5, n_d)[d]
    y = y + rng.normal(0, 1.0, n)
    return pd.DataFrame(
        {"y": y, "x": x, "s": [f"s{i:03d}" for i in s], "d": [f"d{i:02d}" for i in d]}
    )


def _dense_logp(resid, index, sigma, tau) -> float:
    total = 0.0
    for j in np.unique(index):
        r = resid[index == j]
        cov = sigma**2 * np.eye(r.size) + tau**2 * np.ones((r.size, r.size))
        total += st.multivariate_normal(np.zeros(r.size), cov).logpdf(r)
    return total


@pytest.mark.parametrize(("sigma", "tau"), [(1.0, 0.5), (0.3, 2.0), (2.0, 1e-3)])
def test_density_equals_dense_mvn(sigma, tau):
    rng = np.random.default_rng(1)
    index = np.repeat(np.arange(7), [1, 2, 3, 5, 8, 1, 4])
    rng.shuffle(index)
    resid = rng.normal(0, 1.5, index.size) + 0.7
    counts = np.bincount(index)
    expected = _dense_logp(resid, index, sigma, tau)
    assert _marginal.logp_numpy(resid, index, counts, sigma, tau) == pytest.approx(expected)
    r, s, t = pt.vector("r"), pt.scalar("s"), pt.scalar("t")
    fn = pytensor.function([r, s, t], _marginal.logp(r, index, counts, s, t))
    assert float(fn(resid, sigma, tau)) == pytest.approx(expected, rel=1e-10)


def test_conditional_equals_dense_posterior_of_the_effects():
    rng = np.random.default_rng(2)
    index = rng.integers(0, 5, 40)
    resid = rng.normal(size=40)
    sigma, tau = 0.8, 1.3
    z = np.eye(5)[index]
    precision = z.T @ z / sigma**2 + np.eye(5) / tau**2
    cov = np.linalg.inv(precision)
    mean_dense = cov @ z.T @ resid / sigma**2
    s1 = np.bincount(index, weights=resid, minlength=5)
    mean, sd = _marginal.conditional(s1, np.bincount(index, minlength=5), sigma, tau)
    np.testing.assert_allclose(mean, mean_dense, rtol=1e-12)
    np.testing.assert_allclose(sd, np.sqrt(np.diag(cov)), rtol=1e-12)


def test_which_term_and_when():
    df = _crossed()
    m = lf.model("y ~ x + (1|s) + (1|d)", df)
    assert m.marginal == "1|s" and "1|s" in m.likelihood  # 120 levels >= MIN_LEVELS
    assert lf.model("y ~ x + (1|s) + (1|d)", df, marginalize=False).marginal is None
    assert lf.model("y ~ x + (1|d)", df).marginal is None  # 12 levels: auto leaves it
    assert lf.model("y ~ x + (1|d)", df, marginalize=True).marginal == "1|d"
    # the intercept of a correlated block stays sampled; an uncorrelated slope does not stop it
    assert lf.model("y ~ x + (x|s) + (1|d)", df, marginalize=True).marginal == "1|d"
    assert lf.model("y ~ x + (x||s) + (1|d)", df).marginal == "1|s"
    with pytest.raises(ModelError, match="marginalize=True"):
        lf.model("y ~ x + (x|s)", df, marginalize=True)
    df["k"] = np.random.default_rng(0).poisson(3, len(df))
    with pytest.raises(ModelError, match="gaussian"):
        lf.model("k ~ x + (1|s)", df, family="poisson", marginalize=True)
    with pytest.raises(ModelError):
        lf.model("y ~ x + (1|s)", df, marginalize="yes")


def _fixed_posterior(m, draws: int, values: dict) -> xr.Dataset:
    """A posterior whose every draw holds the same parameter values."""
    data = {}
    for name, value in values.items():
        value = np.asarray(value, dtype=float)
        dims = ("chain", "draw", *(f"{name}__factor_dim" for _ in value.shape))
        data[name] = (dims, np.broadcast_to(value, (1, draws, *value.shape)).copy())
    return xr.Dataset(data, coords={"chain": [0], "draw": np.arange(draws)})


def test_recovered_effects_have_the_exact_conditional():
    """At fixed parameters the drawn (1|s) effects have the closed-form conditional mean and
    sd, computed here from y, x and the other parameters with dense linear algebra."""
    df = _crossed(n=300, n_s=110, n_d=6, seed=3)
    m = lf.model("y ~ x + (1|s) + (1|d)", df)
    assert m.marginal == "1|s"
    levels_d = list(_lf_levels(m, "1|d"))
    levels_s = list(_lf_levels(m, "1|s"))
    u_d = np.linspace(-0.6, 0.6, len(levels_d))
    values = {"Intercept": 1.7, "x": 0.4, "sigma": 0.9, "1|s_sigma": 0.6, "1|d_sigma": 0.5}
    values["1|d"] = u_d
    draws = 4000
    post = _fixed_posterior(m, draws, values)
    out = _bambi.add_marginal_effect_draws(post, m.bambi, "1|s")
    got = out["1|s"].values.reshape(draws, -1)
    # oracle: residuals from the data, level by level
    d_index = pd.Index(levels_d).get_indexer(df["d"])
    s_index = pd.Index(levels_s).get_indexer(df["s"])
    resid = df["y"].to_numpy() - 1.7 - 0.4 * df["x"].to_numpy() - u_d[d_index]
    z = np.eye(len(levels_s))[s_index]
    cov = np.linalg.inv(z.T @ z / 0.9**2 + np.eye(len(levels_s)) / 0.6**2)
    mean = cov @ z.T @ resid / 0.9**2
    sd = np.sqrt(np.diag(cov))
    se = sd / np.sqrt(draws)
    assert np.all(np.abs(got.mean(axis=0) - mean) < 4.5 * se)
    np.testing.assert_allclose(got.std(axis=0), sd, rtol=0.08)
    # the same draws give the same effects
    again = _bambi.add_marginal_effect_draws(post, m.bambi, "1|s")["1|s"].values
    np.testing.assert_array_equal(again, out["1|s"].values)
    # blocks of draws take their own seeds: one thread or several give the same effects
    sums = _bambi.marginal_level_sums(m.bambi, post, "1|s")
    scale = [_marginal.draws(post, n) for n in ("sigma", "1|s_sigma")]
    counts = np.bincount(s_index, minlength=len(levels_s))
    serial = _marginal.draw_effects(sums, counts, *scale, seed=7, threads=1)
    parallel = _marginal.draw_effects(sums, counts, *scale, seed=7, threads=3)
    np.testing.assert_array_equal(serial, parallel)


def _lf_levels(m, name):
    from lmmformula import _bambi

    return [str(g) for g in _bambi.group_specific_terms(m.bambi)[name].groups]


@pytest.mark.sampling
def test_same_posterior_as_the_full_model(fast, tmp_path):
    """Marginal and full model agree on every parameter within Monte Carlo error, the
    recovered effects included."""
    df = _crossed(n=500, n_s=100, n_d=10, seed=4)
    settings = dict(fast, draws=600, tune=600)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = lf.model("y ~ x + (1|s) + (1|d)", df, marginalize=False).fit(
            random_seed=5, **settings
        )
        marg = lf.model("y ~ x + (1|s) + (1|d)", df).fit(random_seed=5, **settings)
    assert marg.model.marginal == "1|s" and full.model.marginal is None
    assert marg.diagnostics().divergences == 0
    # the sampler-health check covers what the sampler moved, not the effects drawn after
    assert "1|s" in full._parameter_names() and "1|s" not in marg._parameter_names()
    assert "1|d" in marg._parameter_names()
    for name in ("Intercept", "x", "sigma", "1|s_sigma", "1|d_sigma", "1|d", "1|s"):
        a = full.posterior[name].values.reshape(-1, *full.posterior[name].shape[2:])
        b = marg.posterior[name].values.reshape(-1, *marg.posterior[name].shape[2:])
        # Monte Carlo se of each mean with an effective size of a quarter of the draws
        se = np.sqrt((a.var(axis=0) + b.var(axis=0)) / (a.shape[0] / 4))
        assert np.all(np.abs(a.mean(axis=0) - b.mean(axis=0)) < 4.5 * se), name
        np.testing.assert_allclose(b.std(axis=0), a.std(axis=0), rtol=0.25, err_msg=name)
    # accessors work on the recovered effects, and a saved fit rebuilds the same model
    assert len(marg.ranef()["s"]) == 100
    assert full.posterior["1|s"].dims == marg.posterior["1|s"].dims  # Bambi's dim names
    new = df.head(4).assign(s=["s000", "new", "s001", "new"])
    np.testing.assert_allclose(  # predictions with a new student, as the full model gives
        marg.predict(new, allow_new_levels=True, random_seed=1)["estimate"],
        full.predict(new, allow_new_levels=True, random_seed=1)["estimate"],
        atol=0.15,
    )
    assert np.isfinite(marg.log_likelihood().values).all()
    marg.save(tmp_path / "marg.lmmfit")
    loaded = lf.load_fit(tmp_path / "marg.lmmfit")
    assert loaded.model.marginal == "1|s"
    pd.testing.assert_frame_equal(loaded.ranef()["s"], marg.ranef()["s"])
