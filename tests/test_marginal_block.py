"""A small Gaussian block integrated out together with the largest factor (issue 14).

With ``(1|s)`` integrated out, the population coefficients with normal priors and the
uncorrelated group-level terms with few levels (``(1|d)``) are integrated out with it and drawn
after sampling. Oracles: the dense multivariate normal density of ``y`` with every integrated
coefficient's covariance written out (scipy), the dense Gaussian conditional of the block given
the scales (linear algebra from the model's equations), and the full model's posterior.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytensor
import pytest
import scipy.stats as st
import xarray as xr
from test_marginal_op import _crossed as _crossed_data  # tests/ is on sys.path under pytest

import lmmformula as lf
from lmmformula import _bambi, _marginal


def _crossed(n=300, n_s=110, n_d=6, seed=3) -> pd.DataFrame:
    """Students crossed with departments, a slope and an offset (test_marginal_op's data)."""
    return _crossed_data(n=n, n_s=n_s, n_d=n_d, seed=seed)


def _levels(m, name):
    return [str(g) for g in _bambi.group_specific_terms(m.bambi)[name].groups]


def _dense(m, df):
    """``y - offset``, the block's design ``[1, x - mean(x), Z_d]`` (Bambi centres ``x``),
    its prior means and sds of the population columns, ``Z_s``."""
    y = df["y"].to_numpy() - df["off"].to_numpy()
    z_d = np.eye(len(_levels(m, "1|d")))[pd.Index(_levels(m, "1|d")).get_indexer(df["d"])]
    z_s = np.eye(len(_levels(m, "1|s")))[pd.Index(_levels(m, "1|s")).get_indexer(df["s"])]
    x = df["x"].to_numpy()
    w = np.column_stack([np.ones(len(df)), x - x.mean(), z_d])
    component = m.bambi.parameters["mu"]
    priors = [component.intercept_term.prior.args, component.common_terms["x"].prior.args]
    mean = np.array([float(p["mu"]) for p in priors])
    sd = np.array([float(p["sigma"]) for p in priors])
    return y, w, mean, sd, z_s


def test_which_terms_join_the_factor():
    df = _crossed()
    m = lf.model("y ~ x + (1|s) + (1|d)", df)
    assert (m.marginal, m.marginal_block) == ("1|s", ("Intercept", "x", "1|d"))
    assert "Intercept, x, 1|d" in m.marginal_reason
    assert [v.name for v in m.pymc_model.free_RVs] == ["sigma", "1|s_sigma", "1|d_sigma"]
    # a prior that is not normal keeps its coefficient sampled
    m = lf.model("y ~ x + (1|s) + (1|d)", df, priors=[lf.prior("student_t(3, 0, 1)", coef="x")])
    assert m.marginal_block == ("Intercept", "1|d")
    assert "x" in [v.name for v in m.pymc_model.free_RVs]
    # a factor with more than BLOCK_MAX_LEVELS levels stays sampled
    df2 = df.assign(d=[f"e{i % (_marginal.BLOCK_MAX_LEVELS + 1)}" for i in range(len(df))])
    assert lf.model("y ~ x + (1|s) + (1|d)", df2).marginal_block == ("Intercept", "x")
    # nothing joins when nothing is integrated out, or when the statistics' path does not
    # apply (a correlated block on the parent)
    assert lf.model("y ~ x + (1|s) + (1|d)", df, marginalize=False).marginal_block == ()
    assert lf.model("y ~ x + (1|s) + (x|d)", df).marginal_block == ()


def _potential(m):
    model = m.pymc_model
    (expr,) = model.replace_rvs_by_values([model.potentials[0]])
    fn = pytensor.function(model.value_vars, expr, on_unused_input="ignore", mode="FAST_COMPILE")
    return lambda values: fn(*[values[v.name] for v in model.value_vars])


@pytest.mark.parametrize(("sigma", "tau_s", "tau_d"), [(1.0, 0.7, 0.5), (0.6, 1.3, 0.05)])
def test_density_is_the_dense_normal_of_y(sigma, tau_s, tau_d):
    """The likelihood term equals log N(y | X m, sigma^2 I + tau_s^2 Z_s Z_s' + tau_d^2 Z_d Z_d'
    + X diag(sd^2) X'): every integrated coefficient's prior covariance written out."""
    df = _crossed()
    m = lf.model("y ~ x + (1|s) + (1|d) + offset(off)", df)
    assert m.marginal_block == ("Intercept", "x", "1|d")
    y, w, mean, sd, z_s = _dense(m, df)
    lam = np.concatenate([sd**2, np.full(w.shape[1] - 2, tau_d**2)])
    cov = sigma**2 * np.eye(y.size) + tau_s**2 * z_s @ z_s.T + (w * lam) @ w.T
    expected = st.multivariate_normal(w[:, :2] @ mean, cov).logpdf(y)
    values = {"sigma_log__": np.log(sigma), "1|s_sigma_log__": np.log(tau_s)}
    values["1|d_sigma_log__"] = np.log(tau_d)
    assert _potential(m)(values) == pytest.approx(expected, rel=1e-10)


def _fixed_posterior(draws, values):
    data = {n: (("chain", "draw"), np.full((1, draws), v)) for n, v in values.items()}
    return xr.Dataset(data, coords={"chain": [0], "draw": np.arange(draws)})


def test_block_draws_have_the_exact_conditional():
    """At fixed scales the drawn intercept (centred, as the sampler's parametrisation), slope
    and (1|d) effects have the dense Gaussian conditional given y."""
    df = _crossed()
    m = lf.model("y ~ x + (1|s) + (1|d) + offset(off)", df)
    m.build()
    sigma, tau_s, tau_d = 0.9, 0.6, 0.5
    draws = 4000
    post = _fixed_posterior(draws, {"sigma": sigma, "1|s_sigma": tau_s, "1|d_sigma": tau_d})
    out = _bambi.add_marginal_block_draws(post, m.bambi.backend)
    got = np.column_stack(
        [out["Intercept"].values.ravel(), out["x"].values.ravel(), out["1|d"].values[0]]
    )
    assert out["1|d"].dims == ("chain", "draw", "d__factor_dim")
    assert list(out["1|d"]["d__factor_dim"].values) == _levels(m, "1|d")
    y, w, mean, sd, z_s = _dense(m, df)
    lam = np.concatenate([sd**2, np.full(w.shape[1] - 2, tau_d**2)])
    prior_mean = np.concatenate([mean, np.zeros(w.shape[1] - 2)])
    sigma_inv = np.linalg.inv(sigma**2 * np.eye(y.size) + tau_s**2 * z_s @ z_s.T)
    cov = np.linalg.inv(np.diag(1 / lam) + w.T @ sigma_inv @ w)
    expected = prior_mean + cov @ w.T @ sigma_inv @ (y - w @ prior_mean)
    sd_post = np.sqrt(np.diag(cov))
    assert np.all(np.abs(got.mean(axis=0) - expected) < 4.5 * sd_post / np.sqrt(draws))
    np.testing.assert_allclose(got.std(axis=0), sd_post, rtol=0.08)
    np.testing.assert_allclose(np.cov(got.T), cov, atol=0.1 * sd_post.max() ** 2)
    again = _bambi.add_marginal_block_draws(post, m.bambi.backend)  # the same draws again
    np.testing.assert_array_equal(again["1|d"].values, out["1|d"].values)


def test_block_draws_do_not_depend_on_the_threads():
    df = _crossed()
    m = lf.model("y ~ x + (1|s) + (1|d)", df)
    m.build()
    design, stats = m.bambi.backend.marginal_design
    rng = np.random.default_rng(0)
    n_draws = 3 * _marginal.CHUNK + 5
    thetas = np.broadcast_to(design.block_mean, (n_draws, design.k)).copy()
    scales = [rng.uniform(0.5, 1.5, n_draws) for _ in range(2)]
    lam = np.column_stack(
        [np.full((n_draws, 2), 9.0), rng.uniform(0.1, 1, (n_draws, design.k - 2))]
    )
    one = _marginal.draw_block(stats, thetas, design.k, *scales, lam, seed=7, threads=1)
    three = _marginal.draw_block(stats, thetas, design.k, *scales, lam, seed=7, threads=3)
    np.testing.assert_array_equal(one, three)


# -- a varying intercept nested in a small factor: sampled as sums --------------------------
def _nested(n=900, n_s=100, n_dept=6, per_dept=10, seed=5) -> pd.DataFrame:
    """Students crossed with lecturers; every lecturer in one department (60 lecturers, more
    than BLOCK_MAX_LEVELS, ~15 rows each)."""
    rng = np.random.default_rng(seed)
    n_d = n_dept * per_dept
    s = np.concatenate([np.arange(n_s), rng.integers(0, n_s, n - n_s)])
    d = np.concatenate([np.arange(n_d), rng.integers(0, n_d, n - n_d)])
    rng.shuffle(d)
    dept = d // per_dept
    x = rng.normal(size=n)
    y = 3.0 + 0.4 * x + rng.normal(0, 0.6, n_s)[s] + rng.normal(0, 0.5, n_d)[d]
    y = y + rng.normal(0, 0.4, n_dept)[dept] + rng.normal(0, 1.0, n)
    return pd.DataFrame(
        {
            "y": y,
            "x": x,
            "s": [f"s{i:03d}" for i in s],
            "d": [f"d{i:02d}" for i in d],
            "dept": [f"k{i}" for i in dept],
        }
    )


NESTED = "y ~ x + (1|s) + (1|d) + (1|dept)"


def test_nested_factor_is_sampled_as_sums():
    df = _nested()
    m = lf.model(NESTED, df)
    assert m.marginal == "1|s" and m.marginal_nested == {"1|d": "1|dept"}
    assert m.marginal_block == ("x",)  # the intercept is in the sums too
    names = [v.name for v in m.pymc_model.free_RVs]
    assert names == ["sigma", "1|s_sigma", "1|d_sigma", "1|d_total", "1|dept_sigma"]
    # the user's own centering choice for the factor, too few rows per level, or a factor
    # that is not nested keep the block as it was
    m = lf.model(NESTED, df, noncentered={"d": True})
    assert m.marginal_nested == {} and m.marginal_block == ("Intercept", "x", "1|dept")
    few = df.assign(d=[f"{d}_{i % 3}" for i, d in enumerate(df["d"])])  # ~5 rows per level
    assert lf.model(NESTED, few).marginal_nested == {}
    crossed = df.assign(dept=np.random.default_rng(0).permutation(df["dept"].to_numpy()))
    assert lf.model(NESTED, crossed).marginal_nested == {}
    # brms' priors: the intercept's student_t keeps it sampled, and a sampled intercept with
    # the sums would be a ridge (measured: R-hat 1.7), so nothing is nested
    m = lf.model(NESTED, df, priors="brms")
    assert m.marginal_nested == {} and "1|dept" in m.marginal_block


def test_nested_logp_is_the_dense_normal():
    rng = np.random.default_rng(2)
    of = np.array([0, 0, 1, 1, 1, 2, 0, 2, 2, 2, 1])
    counts = np.bincount(of)
    z = np.eye(3)[of]
    w = rng.normal(3, 1, of.size)
    for tau_in, tau_out, lam in [(0.5, 0.3, None), (0.8, 1.4, 4.0), (0.2, 0.05, 0.3)]:
        cov = tau_in**2 * np.eye(of.size) + tau_out**2 * z @ z.T
        mean = 2.5 if lam is not None else 0.0
        if lam is not None:
            cov = cov + lam * np.ones((of.size, of.size))
        expected = st.multivariate_normal(np.full(of.size, mean), cov).logpdf(w)
        got = _marginal.nested_logp(w, of, counts, tau_in, tau_out, mean, lam).eval()
        assert got == pytest.approx(expected, rel=1e-9)


def test_nested_density_is_the_dense_normal_of_y_and_the_sums():
    """The model's log density terms: log N(y | x m_x + Z_d w, sigma^2 I + tau_s^2 Z_s Z_s' +
    sd_x^2 x x') + log N(w | m_a 1, tau_d^2 I + tau_dept^2 Z Z' + sd_a^2 11'), dense."""
    df = _nested()
    m = lf.model(NESTED, df)
    model = m.pymc_model
    sigma, tau_s, tau_d, tau_k = 0.9, 0.6, 0.5, 0.35
    lv = {n: _levels(m, n) for n in ("1|s", "1|d", "1|dept")}
    z_s = np.eye(len(lv["1|s"]))[pd.Index(lv["1|s"]).get_indexer(df["s"])]
    z_d = np.eye(len(lv["1|d"]))[pd.Index(lv["1|d"]).get_indexer(df["d"])]
    dept_of_d = df.groupby("d")["dept"].first().loc[lv["1|d"]]
    z_k = np.eye(len(lv["1|dept"]))[pd.Index(lv["1|dept"]).get_indexer(dept_of_d)]
    w = np.random.default_rng(1).normal(3, 0.7, len(lv["1|d"]))
    component = m.bambi.parameters["mu"]
    ia, xa = component.intercept_term.prior.args, component.common_terms["x"].prior.args
    x = df["x"].to_numpy() - df["x"].mean()
    y = df["y"].to_numpy()
    cov_y = sigma**2 * np.eye(len(y)) + tau_s**2 * z_s @ z_s.T
    cov_y += float(xa["sigma"]) ** 2 * np.outer(x, x)
    expected = st.multivariate_normal(z_d @ w + float(xa["mu"]) * x, cov_y).logpdf(y)
    cov_w = tau_d**2 * np.eye(w.size) + tau_k**2 * z_k @ z_k.T + float(ia["sigma"]) ** 2
    expected += st.multivariate_normal(np.full(w.size, float(ia["mu"])), cov_w).logpdf(w)
    terms = model.replace_rvs_by_values(model.potentials)
    fn = pytensor.function(model.value_vars, sum(terms), on_unused_input="ignore")
    values = {
        "sigma_log__": np.log(sigma),
        "1|s_sigma_log__": np.log(tau_s),
        "1|d_sigma_log__": np.log(tau_d),
        "1|dept_sigma_log__": np.log(tau_k),
        "1|d_total": w,
    }
    assert fn(*[values[v.name] for v in model.value_vars]) == pytest.approx(expected, rel=1e-10)


def test_nested_draws_have_the_exact_conditional():
    """Given the sums w and the scales, the intercept and the department effects are drawn
    from their dense Gaussian conditional, and the lecturers' effects are w minus both."""
    df = _nested()
    m = lf.model(NESTED, df)
    m.build()
    tau_d, tau_k = 0.5, 0.35
    lv_d, lv_k = _levels(m, "1|d"), _levels(m, "1|dept")
    w = np.random.default_rng(4).normal(3, 0.7, len(lv_d))
    draws = 4000
    post = _fixed_posterior(draws, {"1|d_sigma": tau_d, "1|dept_sigma": tau_k})
    post["1|d_total"] = (("chain", "draw", "d__factor_dim"), np.broadcast_to(w, (1, draws, w.size)))
    post = post.assign_coords(d__factor_dim=lv_d)
    out = _bambi.add_marginal_nested_draws(post, m.bambi.backend)
    assert "1|d_total" not in out and out["1|dept"].dims == ("chain", "draw", "dept__factor_dim")
    got = np.column_stack([out["Intercept"].values.ravel(), out["1|dept"].values[0]])
    dept_of_d = df.groupby("d")["dept"].first().loc[lv_d]
    h = np.column_stack([np.ones(w.size), np.eye(len(lv_k))[pd.Index(lv_k).get_indexer(dept_of_d)]])
    ia = m.bambi.parameters["mu"].intercept_term.prior.args
    prior_var = np.concatenate([[float(ia["sigma"]) ** 2], np.full(len(lv_k), tau_k**2)])
    prior_mean = np.concatenate([[float(ia["mu"])], np.zeros(len(lv_k))])
    cov = np.linalg.inv(np.diag(1 / prior_var) + h.T @ h / tau_d**2)
    mean = cov @ (prior_mean / prior_var + h.T @ w / tau_d**2)
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(got.mean(axis=0) - mean) < 4.5 * sd / np.sqrt(draws))
    np.testing.assert_allclose(got.std(axis=0), sd, rtol=0.08)
    np.testing.assert_allclose(np.cov(got.T), cov, atol=0.1 * sd.max() ** 2)
    lecturers = out["1|d"].values[0]
    np.testing.assert_allclose(
        lecturers + got[:, 1:] @ h[:, 1:].T + got[:, :1], w[None, :] + 0 * lecturers
    )


@pytest.mark.sampling
def test_nested_same_posterior_as_the_full_model(fast):
    """Sampled as sums (with the students, intercept and slope integrated out) and with every
    effect sampled, the posteriors agree within Monte Carlo error, every effect included."""
    import warnings

    df = _nested()
    settings = dict(fast, draws=600, tune=600)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the reference mixes slowly (intercept ESS about 30 per 600 draws): longer chains
        full = lf.model(NESTED, df, marginalize=False).fit(
            random_seed=5, **dict(settings, draws=1500, tune=1000)
        )
        marg = lf.model(NESTED, df).fit(random_seed=5, **settings)
    assert marg.model.marginal_nested == {"1|d": "1|dept"}
    assert marg.diagnostics().divergences == 0
    for name in ("Intercept", "x", "sigma", "1|s_sigma", "1|d_sigma", "1|dept_sigma"):
        a = full.posterior[name].values.ravel()
        b = marg.posterior[name].values.ravel()
        se = np.sqrt((a.var() + b.var()) / (a.size / 4))
        assert abs(a.mean() - b.mean()) < 4.5 * se, name
        np.testing.assert_allclose(b.std(), a.std(), rtol=0.25, err_msg=name)
    for name in ("1|d", "1|dept", "1|s"):
        a = full.posterior[name].values.reshape(-1, full.posterior[name].shape[-1])
        b = marg.posterior[name].values.reshape(-1, marg.posterior[name].shape[-1])
        assert full.posterior[name].dims == marg.posterior[name].dims
        se = np.sqrt((a.var(axis=0) + b.var(axis=0)) / (a.shape[0] / 4))
        assert np.all(np.abs(a.mean(axis=0) - b.mean(axis=0)) < 4.5 * se), name
        np.testing.assert_allclose(b.std(axis=0), a.std(axis=0), rtol=0.3, err_msg=name)
    assert len(marg.ranef()["dept"]) == 6 and len(marg.ranef()["d"]) == 60
