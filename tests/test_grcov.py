"""brms' ``(1 | gr(g, cov = K))``: a known covariance between the levels of a grouping factor.

brms builds the effects as ``r = sd * t(chol(K)) z`` (``R/stan-predictor.R``, ``Lcov``); the
oracles below write that with numpy and scipy only. The data are brms' reference data
(``tests/reference/brms/grcov.csv``: 20 levels x 10 rows, ``K[i, j] = exp(-|i - j| / 4)``,
sd 0.8, sigma 0.5, intercept 1).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import lmmformula as lf
from lmmformula.errors import DataError, ModelError, UnsupportedSyntaxError

REF = Path(__file__).parent / "reference" / "brms"
PRIORS = [  # the brms reference fit's priors (make_brms_refs.R, make_grcov)
    lf.prior("normal(0, 2)", cls="Intercept"),
    lf.prior("normal(0, 1)", cls="sd"),
    lf.prior("normal(0, 1)", cls="sigma"),
]


def grcov() -> tuple[pd.DataFrame, pd.DataFrame]:
    data = pd.read_csv(REF / "grcov.csv")
    k = pd.read_csv(REF / "grcov_K.csv", index_col=0)
    return data, k


def shuffled(k: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The same matrix with rows and columns in another (random) order: matched by name."""
    order = np.random.default_rng(seed).permutation(len(k))
    return k.iloc[order, order]


def test_translate_gr():
    t = lf.translate("y ~ x + (1 | gr(g, cov = K))")
    assert t.bambi_formula == "y ~ x + (1|g)"
    assert t.cov_terms["1|g"].key == "K" and t.cov_terms["1|g"].factor == "g"
    plain = lf.translate("y ~ x + (1 | gr(g))")  # gr() without cov is the factor itself
    assert plain.bambi_formula == "y ~ x + (1|g)" and plain.cov_terms == {}


def test_log_density_equals_numpy():
    data, k = grcov()
    m = lf.model(
        "y ~ 1 + (1 | gr(g, cov = K))",
        data,
        priors=PRIORS,
        data2={"K": shuffled(k)},
        suffstats=False,
        marginalize=False,
    )
    rng = np.random.default_rng(1)
    intercept, sd, sigma, z = 0.9, 0.7, 0.45, rng.normal(size=20)
    point = {
        "Intercept": intercept,
        "1|g_sigma_log__": np.log(sd),
        "sigma_log__": np.log(sigma),
        "1|g_offset": z,
    }
    levels = sorted(data["g"].unique())  # R's factor order, the order of the offsets
    k_sorted = k.loc[levels, levels].to_numpy()
    u = sd * np.linalg.cholesky(k_sorted) @ z
    row = np.searchsorted(levels, data["g"])
    want = (
        stats.norm(intercept + u[row], sigma).logpdf(data["y"]).sum()
        + stats.norm(0, 2).logpdf(intercept)
        + stats.halfnorm(scale=1).logpdf(sd)
        + np.log(sd)
        + stats.halfnorm(scale=1).logpdf(sigma)
        + np.log(sigma)
        + stats.norm.logpdf(z).sum()
    )
    got = float(m.pymc_model.compile_logp()(point))
    assert got == pytest.approx(want, rel=1e-9)
    # the sufficient-statistics likelihood gives the same density
    m_ss = lf.model(
        "y ~ 1 + (1 | gr(g, cov = K))", data, priors=PRIORS, data2={"K": k}, suffstats=True
    )
    assert m_ss.likelihood == "sufficient statistics"
    assert float(m_ss.pymc_model.compile_logp()(point)) == pytest.approx(want, rel=1e-9)


def test_block_on_known_covariance():
    """``(1 + x | gr(g, cov = K))``: brms' ``r = chol(K) z (diag(sd) L)'``, the same z and L as
    the plain block, pre-multiplied by chol(K)."""
    data, k = grcov()
    data = data.assign(x=np.random.default_rng(2).normal(size=len(data)))
    plain = lf.model("y ~ x + (1 + x | g)", data, suffstats=False)
    known = lf.model("y ~ x + (1 + x | gr(g, cov = K))", data, data2={"K": k}, suffstats=False)
    point = plain.pymc_model.initial_point()
    rng = np.random.default_rng(3)
    point = {name: rng.normal(size=np.shape(v)) for name, v in point.items()}

    def coefs(model):
        pm_model = model.pymc_model
        outs = pm_model.replace_rvs_by_values([pm_model["1|g"], pm_model["x|g"]])
        fn = pm_model.compile_fn(outs, inputs=pm_model.value_vars, on_unused_input="ignore")
        return np.column_stack(fn(point))

    levels = sorted(data["g"].unique())
    chol_k = np.linalg.cholesky(k.loc[levels, levels].to_numpy())
    np.testing.assert_allclose(coefs(known), chol_k @ coefs(plain), rtol=1e-9, atol=1e-12)


def test_numpy_matrix_follows_sorted_levels():
    data, k = grcov()
    by_name = lf.model("y ~ (1 | gr(g, cov = K))", data, data2={"K": k})
    by_position = lf.model("y ~ (1 | gr(g, cov = K))", data, data2={"K": k.to_numpy()})
    np.testing.assert_array_equal(
        by_name.specials.cov_chol["1|g"], by_position.specials.cov_chol["1|g"]
    )


@pytest.mark.parametrize(
    ("data2", "message"),
    [
        (None, "'K' is not in data2"),
        ("other", "'K' is not in data2"),
        ("drop", "no row or column for the level(s) 'g20'"),
        ("asym", "is not symmetric"),
        ("neg", "is not positive definite"),
        ("shape", "has 19 rows but 'g' has 20 levels"),
        ("nan", "non-finite values"),
    ],
)
def test_bad_matrices_are_refused(data2, message):
    data, k = grcov()
    bad = {
        "drop": {"K": k.iloc[:19, :19]},
        "asym": {"K": k + np.triu(np.full(k.shape, 0.1), 1)},
        "neg": {"K": k - 2 * np.eye(20)},
        "shape": {"K": k.to_numpy()[:19, :19]},
        "nan": {"K": k.where(k < 0.99, np.nan)},
    }.get(data2, data2)
    with pytest.raises(DataError) as info:
        lf.model("y ~ (1 | gr(g, cov = K))", data, data2=bad)
    text = str(info.value)
    assert message in text
    assert "y ~ (1 | gr(g, cov = K))" in text and "^" in text  # the caret under K


def test_gr_refusals():
    with pytest.raises(UnsupportedSyntaxError, match=r"gr\(\.\.\., by = \) is not supported"):
        lf.translate("y ~ (1 | gr(g, by = h))")
    with pytest.raises(UnsupportedSyntaxError, match="grouping factor of a bar"):
        lf.translate("y ~ gr(g)")
    data, k = grcov()
    with pytest.raises(ModelError, match="non-centered"):
        lf.model("y ~ (1 | gr(g, cov = K))", data, data2={"K": k}, noncentered=False)


@pytest.fixture(scope="module")
def grcov_fit():
    data, k = grcov()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lf.fit(
            "y ~ 1 + (1 | gr(g, cov = K))",
            data,
            priors=PRIORS,
            data2={"K": shuffled(k, 5)},
            random_seed=7,
            draws=500,
            tune=500,
            chains=2,
            progressbar=False,
        )


def test_recovers_simulated_sd(grcov_fit):
    row = grcov_fit.varcorr().iloc[0]
    assert row["grp"] == "g"
    assert row["lower"] < 0.8 < row["upper"]  # the simulated sd
    sigma = grcov_fit.varcorr().iloc[-1]
    assert sigma["lower"] < 0.5 < sigma["upper"]


def test_same_posterior_as_brms(grcov_fit):
    path = REF / "grcov.json"
    if not path.exists():
        pytest.skip("no brms reference grcov.json")
    ref = json.loads(path.read_text())
    brms = {r["parameter"]: (r["Estimate"], r["Est.Error"]) for r in ref["posterior_summary"]}
    post = grcov_fit.posterior
    for ours, theirs in (
        ("Intercept", "b_Intercept"),
        ("1|g_sigma", "sd_g__Intercept"),
        ("sigma", "sigma"),
    ):
        draws = post[ours].values
        mean, sd = brms[theirs]
        # same data, model and priors: means within 0.3 brms posterior sds (Monte Carlo
        # error of either fit is below 0.1 sd at these ESS), sds within 30%
        assert abs(draws.mean() - mean) < 0.3 * sd, (ours, draws.mean(), mean, sd)
        assert abs(draws.std(ddof=1) / sd - 1) < 0.3, (ours, draws.std(), sd)


def test_saved_fit_keeps_the_matrix(grcov_fit, tmp_path):
    """data2's matrix is saved with the fit (level-named), so the model is rebuilt on load."""
    path = tmp_path / "grcov.nc"
    grcov_fit.save(path)
    loaded = lf.load_fit(path)
    np.testing.assert_allclose(
        loaded.model.specials.cov_chol["1|g"], grcov_fit.model.specials.cov_chol["1|g"]
    )
    np.testing.assert_allclose(loaded.predict()["estimate"], grcov_fit.predict()["estimate"])
