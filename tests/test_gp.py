"""brms' gp(): the formula, brms' data constants and priors, the graph against numpy written from
brms' equations, recovery of a smooth truth, the approximation against the exact form, and a
brms fit of the same model.

The oracles here are written from brms' source (R/data-predictor.R ``.data_gp``, R/priors.R
``def_lscale_prior``, the Stan chunks ``fun_gp_exp_quad.stan`` and ``fun_spd_gp_exp_quad.stan``)
with numpy and scipy only; none of them calls :mod:`lmmformula._gp`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import lmmformula as lf
from lmmformula.errors import DataError, FormulaSyntaxError, UnsupportedSyntaxError

REF = Path(__file__).parent / "reference" / "brms"
NUGGET = 1e-8  # lmmformula._gp.GP_NUGGET, on the correlation matrix's diagonal

# the priors of the brms reference fits (tests/reference/brms/make_brms_refs.R, gp_prior)
BRMS_GP_PRIORS = [
    lf.prior("normal(0, 2)", cls="Intercept"),
    lf.prior("normal(0, 1)", cls="sdgp"),
    lf.prior("inv_gamma(5, 1)", cls="lscale", coef="gpx"),
    lf.prior("normal(0, 1)", cls="sigma"),
]
SAMPLER = {"draws": 500, "tune": 700, "chains": 2, "progressbar": False, "target_accept": 0.95}


def gp1d() -> pd.DataFrame:
    """brms' reference data: 30 distinct x in [0, 10], each 4 times; y = 2 + sin(x) + noise."""
    return pd.read_csv(REF / "gp1d.csv")


# -- the formula -------------------------------------------------------------------------------
def test_translate_gp_terms():
    t = lf.translate("y ~ z + gp(x) + gp(lat, lon, k = 10, c = 3/2)")
    assert t.bambi_formula == "y ~ z + (1|gpx) + (1|gplatlon)"
    assert t.variables == ("y", "z", "x", "lat", "lon")
    exact, approx = t.gp_terms
    assert (exact.label, exact.covariates, exact.k, exact.c) == ("gpx", ("x",), None, (1.25,))
    assert (approx.label, approx.covariates, approx.k, approx.c) == (
        "gplatlon",
        ("lat", "lon"),
        10,
        (1.5, 1.5),
    )
    assert lf.translate("y ~ gp(x, by = f)").gp_terms[0].label == "gpxf"  # brms' label
    assert lf.translate("y ~ gp(x)").fixed == "1"
    assert lf.translate("y ~ 0 + gp(x)").fixed == "0"


@pytest.mark.parametrize(
    ("formula", "error", "message", "caret"),
    [
        ("y ~ (gp(x)|g)", UnsupportedSyntaxError, "gp() is not supported here", "gp(x)"),
        (
            "y ~ gp(x, cov = 'matern32')",
            UnsupportedSyntaxError,
            "squared-exponential",
            "'matern32'",
        ),
        ("y ~ gp(x, k = 0)", FormulaSyntaxError, "positive whole number", "0"),
        ("y ~ gp(x, k = 2.5)", FormulaSyntaxError, "positive whole number", "2.5"),
        ("y ~ gp(x, c = -1)", FormulaSyntaxError, "must be positive", "-1"),
        ("y ~ gp(log(x))", UnsupportedSyntaxError, "takes column names", "log(x)"),
        ("y ~ gp()", FormulaSyntaxError, "needs one or more covariates", "gp()"),
        ("y ~ gp(x, gr = FALSE)", UnsupportedSyntaxError, "gr = FALSE", "FALSE"),
        ("y ~ gp(x, a, iso = FALSE)", UnsupportedSyntaxError, "iso = FALSE", "FALSE"),
        ("y ~ gp(x, m = 3)", UnsupportedSyntaxError, "no argument 'm'", "m = 3"),
        ("y ~ x - gp(x)", FormulaSyntaxError, "cannot be subtracted", "gp(x)"),
        ("y ~ gp(x) + gp(x)", UnsupportedSyntaxError, "appears twice", "gp(x)"),
        ("y ~ s(x)", UnsupportedSyntaxError, "s() is not supported", "s(x)"),
    ],
)
def test_gp_refusals(formula, error, message, caret):
    with pytest.raises(error) as info:
        lf.translate(formula)
    assert message in info.value.message
    assert info.value.snippet.strip() == caret


def test_gp_needs_numeric_covariate():
    d = pd.DataFrame({"y": [1.0, 2, 3, 4], "x": ["a", "b", "c", "d"]})
    with pytest.raises(DataError, match="must be numeric"):
        lf.model("y ~ gp(x)", d)


def test_gp_needs_two_points():
    d = pd.DataFrame({"y": [1.0, 2, 3, 4, 5], "x": [1.0, 2, 3, 3, 3], "f": list("aabbb")})
    with pytest.raises(DataError, match="within f = b, so the GP cannot be scaled"):
        lf.model("y ~ gp(x, by = f)", d)


# -- brms' default prior of lscale -------------------------------------------------------------
def test_lscale_default_is_brms_inverse_gamma():
    """brms' def_lscale_prior: on the scaled unique points, P(l < lb) = P(l > ub) = 0.01, with
    ub the largest and lb the smallest distance (30 points evenly spaced: 1 and 1/29)."""
    d = gp1d()
    summary = lf.model("y ~ gp(x)", d).prior_summary()
    row = summary[summary["class"] == "lscale"].iloc[0]
    a, b = (float(v) for v in row["prior"][len("inv_gamma(") : -1].split(","))
    dist = stats.invgamma(a, scale=b)
    assert dist.cdf(1 / 29) == pytest.approx(0.01, rel=2e-3)
    assert dist.sf(1.0) == pytest.approx(0.01, rel=2e-3)
    assert row["coef"] == "gpx"


def test_lscale_default_matches_brms_reference():
    # brms 2.18.0: get_prior(y ~ gp(x), gp1d.csv) gives lscale coef gpx inv_gamma(2.423833,
    # 0.25544); the reference JSON, where present, is checked too
    want = [2.423833, 0.25544]
    if (REF / "gp1d.json").exists():
        ref = _reference("gp1d")
        rows = [r for r in ref["default_prior"] if r["class"] == "lscale" and r["coef"] == "gpx"]
        want = [float(v) for v in rows[0]["prior"][len("inv_gamma(") : -1].split(",")]
    m = lf.model("y ~ gp(x)", gp1d())
    got = m.gp_plans["1|gpx"].groups[0].lscale_prior
    assert got[0] == "inv_gamma"
    np.testing.assert_allclose(got[1:], want, rtol=1e-4)


def test_brms_constants_irregular_and_2d():
    """Figures from brms 2.18.0 (Debian r-cran-brms), written here:

    get_prior(y ~ gp(x), data.frame(x = rep(c(0, 1, 1.5, 4, 7.25, 9), 2), y = 1:12 / 3))
        lscale coef gpx: inv_gamma(3.120783, 0.4783)
    d2 <- data.frame(lat = c(39.9, 40.0, 39.8, 40.3, 39.95, 40.1),
                     lon = c(116.4, 116.2, 116.5, 116.3, 116.35, 116.6), y = 1:6 / 2)
    get_prior(y ~ gp(lat, lon), d2): lscale coef gplatlon: inv_gamma(5.804861, 1.68317)
    sd <- standata(brm(y ~ gp(lat, lon, k = 5, c = 5/4), d2, empty = TRUE))
    sd$slambda_1[1:3, ], sd$Xgp_1[1:2, 1:4] as below
    """
    x = [0, 1, 1.5, 4, 7.25, 9]
    d = pd.DataFrame({"x": x * 2, "y": np.arange(1, 13) / 3})
    plan = lf.model("y ~ gp(x)", d).gp_plans["1|gpx"]
    assert plan.groups[0].lscale_prior == ("inv_gamma", 3.120783, 0.4783)
    d2 = pd.DataFrame(
        {
            "lat": [39.9, 40.0, 39.8, 40.3, 39.95, 40.1],
            "lon": [116.4, 116.2, 116.5, 116.3, 116.35, 116.6],
            "y": np.arange(1, 7) / 2,
        }
    )
    assert lf.model("y ~ gp(lat, lon)", d2).gp_plans["1|gplatlon"].groups[0].lscale_prior == (
        "inv_gamma",
        5.804861,
        1.68317,
    )
    plan = lf.model("y ~ gp(lat, lon, k = 5, c = 5/4)", d2).gp_plans["1|gplatlon"]
    group = plan.groups[0]
    phi, slambda = plan.basis(group, group.x_raw)
    np.testing.assert_allclose(
        slambda[:3], [[1.256637, 1.256637], [2.513274, 1.256637], [3.769911, 1.256637]], atol=1e-6
    )
    np.testing.assert_allclose(
        phi[:2, :4],
        [
            [0.7744267, 0.38738937, -0.5806440, -0.67784334],
            [0.7211730, 0.02804605, -0.7200823, -0.05604968],
        ],
        atol=1e-7,
    )


# -- the graph against numpy ------------------------------------------------------------------
def _point_logp(m, point):
    return float(m.pymc_model.compile_logp()(point))


def _prior_logp(intercept, sdgp, lscale, sigma, z, lscale_ab=(5.0, 1.0)):
    """Priors of BRMS_GP_PRIORS on PyMC's unconstrained scale (log-Jacobians included)."""
    return (
        stats.norm(0, 2).logpdf(intercept)
        + stats.halfnorm(scale=1).logpdf(sdgp)
        + np.log(sdgp)
        + stats.invgamma(lscale_ab[0], scale=lscale_ab[1]).logpdf(lscale)
        + np.log(lscale)
        + stats.halfnorm(scale=1).logpdf(sigma)
        + np.log(sigma)
        + stats.norm.logpdf(z).sum()
    )


def test_exact_gp_log_density_equals_numpy():
    d = gp1d()
    m = lf.model("y ~ gp(x)", d, priors=BRMS_GP_PRIORS, suffstats=False)
    rng = np.random.default_rng(3)
    intercept, sdgp, lscale, sigma = 1.7, 0.9, 0.15, 0.4
    z = rng.normal(size=30)
    point = {
        "Intercept": intercept,
        "1|gpx_sigma_log__": np.log(sdgp),
        "gpx_lscale_log__": np.log(lscale),
        "sigma_log__": np.log(sigma),
        "gpx_zgp": z,
    }
    # brms: the unique x (in order of appearance, here increasing) divided by the largest
    # distance between two of them; f = chol(K) z on them; each row takes its point's f
    xs, row_point = np.unique(d["x"].to_numpy(), return_inverse=True)
    xs = xs / (xs.max() - xs.min())
    corr = np.exp(-((xs[:, None] - xs[None, :]) ** 2) / (2 * lscale**2))
    f = sdgp * np.linalg.cholesky(corr + NUGGET * np.eye(30)) @ z
    loglik = stats.norm(intercept + f[row_point], sigma).logpdf(d["y"]).sum()
    want = loglik + _prior_logp(intercept, sdgp, lscale, sigma, z)
    assert _point_logp(m, point) == pytest.approx(want, rel=1e-9)
    # the sufficient-statistics likelihood gives the same density
    m_ss = lf.model("y ~ gp(x)", d, priors=BRMS_GP_PRIORS, suffstats=True)
    assert _point_logp(m_ss, point) == pytest.approx(want, rel=1e-9)


def test_approximate_gp_log_density_equals_numpy():
    d = gp1d()
    m = lf.model("y ~ gp(x, k = 20, c = 5/4)", d, priors=BRMS_GP_PRIORS, suffstats=False)
    rng = np.random.default_rng(4)
    intercept, sdgp, lscale, sigma = 2.1, 0.7, 0.2, 0.35
    z = rng.normal(size=20)
    point = {
        "Intercept": intercept,
        "1|gpx_sigma_log__": np.log(sdgp),
        "gpx_lscale_log__": np.log(lscale),
        "sigma_log__": np.log(sigma),
        "gpx_zgp": z,
    }
    # brms' .data_gp for k = 20: x / dmax, centred on the unique points' mean; L = c * range;
    # phi_m(x) = sin(m pi (x + L) / (2 L)) / sqrt(L); spd of the squared-exponential kernel
    xs, row_point = np.unique(d["x"].to_numpy(), return_inverse=True)
    xs = xs / (xs.max() - xs.min())
    xc = xs - xs.mean()
    L = 1.25 * max(1.0, xc.max() - xc.min())
    m_idx = np.arange(1, 21)
    w = m_idx * np.pi / (2 * L)
    phi = np.sin(w[None, :] * (xc[:, None] + L)) / np.sqrt(L)
    spd = sdgp**2 * np.sqrt(2 * np.pi) * lscale * np.exp(-0.5 * lscale**2 * w**2)
    f = phi @ (np.sqrt(spd) * z)
    loglik = stats.norm(intercept + f[row_point], sigma).logpdf(d["y"]).sum()
    want = loglik + _prior_logp(intercept, sdgp, lscale, sigma, z)
    assert _point_logp(m, point) == pytest.approx(want, rel=1e-9)


def test_gp_by_factor_one_gp_per_level():
    """gp(x, by = f): each level its own sdgp, lscale and points, scaled within the level."""
    rng = np.random.default_rng(5)
    xa, xb = np.linspace(0, 4, 6), np.linspace(0, 9, 7)
    d = pd.DataFrame(
        {
            "x": np.r_[xa, xa, xb],
            "f": ["a"] * 12 + ["b"] * 7,
        }
    )
    d["y"] = rng.normal(size=len(d))
    m = lf.model("y ~ gp(x, by = f)", d, priors="brms", suffstats=False)
    names = {v.name for v in m.pymc_model.free_RVs}
    assert {"1|gpxf_sigma", "gpxf_lscale", "gpxf_zgp_0", "gpxf_zgp_1"} <= names
    sd, ls = np.array([0.8, 1.3]), np.array([0.3, 0.5])
    z0, z1 = rng.normal(size=6), rng.normal(size=7)
    pm_model = m.pymc_model
    names = ["1|gpxf_sigma_log__", "gpxf_lscale_log__", "gpxf_zgp_0", "gpxf_zgp_1"]
    (values_of,) = pm_model.replace_rvs_by_values([pm_model["1|gpxf"]])
    fn = pm_model.compile_fn(values_of, inputs=pm_model.value_vars, on_unused_input="ignore")
    point = pm_model.initial_point()
    point.update(dict(zip(names, [np.log(sd), np.log(ls), z0, z1], strict=True)))
    levels = pm_model.coords["gpxf__factor_dim"]
    values = dict(zip(levels, fn(point), strict=True))
    for level, xs, z, s, l_ in (("a", xa, z0, sd[0], ls[0]), ("b", xb, z1, sd[1], ls[1])):
        xsc = xs / (xs.max() - xs.min())
        corr = np.exp(-((xsc[:, None] - xsc[None, :]) ** 2) / (2 * l_**2))
        f = s * np.linalg.cholesky(corr + NUGGET * np.eye(len(xs))) @ z
        got = [values[f"{level}|{float(v)!r}"] for v in xs]
        np.testing.assert_allclose(got, f, rtol=1e-9, atol=1e-12)


# -- sampling ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exact_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lf.fit("y ~ gp(x)", gp1d(), priors=BRMS_GP_PRIORS, random_seed=11, **SAMPLER)


@pytest.fixture(scope="module")
def approx_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lf.fit("y ~ gp(x, k = 20)", gp1d(), priors=BRMS_GP_PRIORS, random_seed=12, **SAMPLER)


GRID = pd.DataFrame({"x": np.linspace(0.1, 9.9, 43)})  # none of them a fitted x


def test_exact_gp_recovers_smooth_truth(exact_fit):
    d = gp1d()
    inside = exact_fit.predict()
    assert np.corrcoef(inside["estimate"], 2 + d["f"])[0, 1] > 0.95
    new = exact_fit.predict(GRID)  # the GP's conditional at new points
    truth = 2 + np.sin(GRID["x"])
    assert np.corrcoef(new["estimate"], truth)[0, 1] > 0.95
    assert np.abs(new["estimate"] - truth).max() < 0.35
    assert (new["upper"] > new["lower"]).all()


def test_approximate_gp_agrees_with_exact(exact_fit, approx_fit):
    exact = exact_fit.predict(GRID)["estimate"].to_numpy()
    approx = approx_fit.predict(GRID)["estimate"].to_numpy()
    assert np.corrcoef(exact, approx)[0, 1] > 0.99
    assert np.abs(exact - approx).max() < 0.15  # the noise sd is 0.3


def test_summary_rows_are_brms(exact_fit):
    summary = exact_fit.summary()
    assert list(summary.gp_terms.index) == ["sdgp(gpx)", "lscale(gpx)"]  # as brms prints them
    assert "gpx" not in summary.group_level
    text = str(summary)
    assert "Gaussian Process Terms:" in text and "groups" not in text.splitlines()[2]
    loglik = exact_fit.log_likelihood()  # brms' log_lik: one column per row, GP included
    assert loglik.sizes["__obs__"] == 120 and np.isfinite(loglik.values).all()


def _reference(name: str) -> dict:
    path = REF / f"{name}.json"
    if not path.exists():
        pytest.skip(f"no brms reference {path.name}")
    return json.loads(path.read_text())


def _brms_posterior(ref: dict) -> dict[str, tuple[float, float]]:
    return {r["parameter"]: (r["Estimate"], r["Est.Error"]) for r in ref["posterior_summary"]}


def _agrees(ours_draws: np.ndarray, brms_mean: float, brms_sd: float, tol: float = 0.3) -> bool:
    """Same data, model and priors, so the posteriors agree up to Monte Carlo error: means
    within ``tol`` brms posterior sds (our bulk ESS is >= 100, brms' 4000 draws, so the Monte
    Carlo error of the difference is below 0.11 sd: 0.3 is about 3 standard errors), sds
    within 25% (the relative error of an sd at ESS 100 is about 7%)."""
    mean, sd = float(np.mean(ours_draws)), float(np.std(ours_draws, ddof=1))
    return abs(mean - brms_mean) < tol * brms_sd and abs(sd / brms_sd - 1) < 0.25


@pytest.mark.parametrize("name", ["gp1d", "gp1d_approx"])
def test_same_posterior_as_brms(name, exact_fit, approx_fit):
    ref = _reference(name)
    fit = exact_fit if name == "gp1d" else approx_fit
    brms = _brms_posterior(ref)
    post = fit.posterior
    pairs = {
        "b_Intercept": post["Intercept"].values,
        "sdgp_gpx": post["1|gpx_sigma"].values,
        "lscale_gpx": post["gpx_lscale"].values,
        "sigma": post["sigma"].values,
    }
    for par, draws in pairs.items():
        mean, sd = brms[par]
        assert _agrees(draws, mean, sd), (par, float(draws.mean()), float(draws.std()), mean, sd)


def test_conditional_at_fitted_and_far_points(exact_fit):
    """The exact GP's conditional reproduces the fitted values at (almost) a fitted point and
    falls back to the prior mean (0: the Intercept alone) far from the data."""
    d = gp1d()
    x0 = float(d["x"].iloc[40])
    near = exact_fit.predict(pd.DataFrame({"x": [x0 + 1e-7]}), summary=False, random_seed=1)
    at = exact_fit.predict(pd.DataFrame({"x": [x0]}), summary=False)
    np.testing.assert_allclose(near.values, at.values, atol=1e-3)
    far = exact_fit.predict(pd.DataFrame({"x": [1000.0]}), summary=False, random_seed=2)
    intercept = exact_fit.posterior["Intercept"].values
    sdgp = exact_fit.posterior["1|gpx_sigma"].values
    spread = far.values[..., 0] - intercept  # per draw, f ~ N(0, sdgp^2) there
    assert abs(np.mean(spread / sdgp)) < 0.1
    assert np.std(spread / sdgp) == pytest.approx(1.0, abs=0.1)


def test_by_factor_fit_and_prediction():
    rng = np.random.default_rng(8)
    xs = np.linspace(0, 6, 11)
    d = pd.DataFrame({"x": np.tile(np.repeat(xs, 3), 2), "f": np.repeat(["a", "b"], 33)})
    truth = np.where(d["f"] == "a", np.sin(d["x"]), np.cos(d["x"]))
    d["y"] = truth + rng.normal(0, 0.2, len(d))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lf.fit(
            "y ~ gp(x, by = f)", d, random_seed=5, **{**SAMPLER, "draws": 150, "tune": 250}
        )
    rows = list(fit.summary().gp_terms.index)
    assert rows == ["sdgp(gpxfa)", "lscale(gpxfa)", "sdgp(gpxfb)", "lscale(gpxfb)"]
    grid = pd.DataFrame(
        {"x": np.tile(np.linspace(0.2, 5.8, 15), 2), "f": np.repeat(["a", "b"], 15)}
    )
    want = np.where(grid["f"] == "a", np.sin(grid["x"]), np.cos(grid["x"]))
    got = fit.predict(grid, random_seed=3)["estimate"]
    assert np.corrcoef(got, want)[0, 1] > 0.95
    with pytest.raises(DataError, match="has levels not seen in the fit: 'c'"):
        fit.predict(pd.DataFrame({"x": [1.0], "f": ["c"]}))


def test_population_predictions_keep_the_gp_and_drop_group_effects():
    """brms' re_formula = NA keeps gp() (a population-level term) and drops (1|g)."""
    rng = np.random.default_rng(3)
    x = np.repeat(np.linspace(0, 10, 20), 6)
    g = np.tile(np.arange(6), 20)
    u = rng.normal(size=6) * 0.5
    d = pd.DataFrame({"x": x, "g": [f"g{i}" for i in g]})
    d["y"] = 2 + np.sin(x) + u[g] + rng.normal(size=len(x)) * 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lf.fit("y ~ gp(x) + (1|g)", d, random_seed=1, **{**SAMPLER, "draws": 200})
    post = fit.posterior
    population = fit.predict(include_group_effects=False, summary=False)
    full = fit.predict(summary=False)
    # the difference is each row's (1|g) effect, draw by draw
    effects = post["1|g"].sel(g__factor_dim=xr.DataArray(d["g"].to_numpy(), dims="__obs__"))
    np.testing.assert_allclose(
        (full - population).values, effects.transpose("chain", "draw", "__obs__").values
    )
    # and what is left follows the smooth truth, at fitted and at new x, new levels too
    assert np.corrcoef(population.mean(("chain", "draw")), 2 + np.sin(x))[0, 1] > 0.95
    new = pd.DataFrame({"x": [2.5, 5.0, 7.5], "g": ["new", "g0", "g1"]})
    got = fit.predict(new, include_group_effects=False)["estimate"].to_numpy()
    assert np.abs(got - (2 + np.sin(new["x"].to_numpy()))).max() < 0.6
