"""Ordinal models: brms' ``family = cumulative`` (issue 12, item 7).

brms' model and Bambi's: ``P(y <= k) = F(Intercept[k] - eta)``, ``F`` the logistic or normal
distribution function, ``eta`` without an intercept. The oracles are scipy written from that
equation; the recovery test samples simulated data with known thresholds and slope.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytensor.tensor as pt
import pytest
from scipy import stats

import lmmformula as lf
from lmmformula.errors import DataError

MODE = "FAST_COMPILE"
CDF = {"logit": stats.logistic.cdf, "probit": stats.norm.cdf}
PRIORS = [
    lf.prior("normal(0, 2)", cls="Intercept"),
    lf.prior("normal(0, 1)", cls="b"),
    lf.prior("normal(0, 0.8)", cls="sd"),
]


def _frame(n: int = 90, seed: int = 2, link: str = "logit") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.arange(n) % 9
    x = rng.normal(size=n)
    noise = rng.logistic(size=n) if link == "logit" else rng.normal(size=n)
    latent = 0.8 * x + rng.normal(scale=0.6, size=9)[g] + noise
    y = 1 + np.digitize(latent, [-1.0, 0.2, 1.5])
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


def _probabilities(thresholds: np.ndarray, eta: np.ndarray, link: str) -> np.ndarray:
    """P(y = k) = F(theta_k - eta) - F(theta_{k-1} - eta), theta_0 = -inf, theta_K = inf."""
    cdf = CDF[link](thresholds[..., None, :] - eta[..., :, None])
    zeros, ones = np.zeros_like(cdf[..., :1]), np.ones_like(cdf[..., :1])
    return np.diff(np.concatenate([zeros, cdf, ones], axis=-1), axis=-1)


def _point(pm_model, values):
    out = {}
    for rv in pm_model.free_RVs:
        value = pt.as_tensor(np.asarray(values[rv.name], dtype=float))
        transform = pm_model.rvs_to_transforms.get(rv)
        if transform is not None:
            value = transform.forward(value, *rv.owner.inputs)
        out[pm_model.rvs_to_values[rv].name] = np.asarray(value.eval(), dtype=float)
    return out


def _model(formula, frame, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lf.model(formula, frame, family="cumulative", **kwargs)


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_log_density_equals_numpy(link: str) -> None:
    frame = _frame(link=link)
    m = _model("y ~ x + (1|g)", frame, priors=PRIORS, link=link)
    pm_model = m.pymc_model
    assert {rv.name for rv in pm_model.free_RVs} == {"threshold", "x", "1|g_sigma", "1|g_offset"}
    codes = frame["y"].to_numpy() - 1
    level = np.array([int(s[1:]) for s in frame["g"]])  # g0..g8 sort as 0..8
    rng = np.random.default_rng(5)
    for _ in range(3):
        values = {
            "threshold": np.sort(rng.normal(scale=1.5, size=3)),
            "x": rng.normal(),
            "1|g_sigma": rng.uniform(0.2, 1.5),
            "1|g_offset": rng.normal(size=9),
        }
        got = pm_model.compile_logp(jacobian=False, mode=MODE)(_point(pm_model, values))
        eta = (
            values["x"] * frame["x"].to_numpy()
            + (values["1|g_sigma"] * values["1|g_offset"])[level]
        )
        p = _probabilities(values["threshold"], eta, link)
        want = (
            stats.norm(0, 2).logpdf(values["threshold"]).sum()  # brms: each threshold
            + stats.norm(0, 1).logpdf(values["x"])
            + stats.halfnorm(scale=0.8).logpdf(values["1|g_sigma"])
            + stats.norm.logpdf(values["1|g_offset"]).sum()
            + np.log(p[np.arange(len(codes)), codes]).sum()
        )
        # Bambi's inverse probit is 0.5 + 0.5 erf(eta / sqrt(2)) kept inside (0, 1): a few
        # 1e-6 of log density apart from scipy's normal cdf over 90 rows
        np.testing.assert_allclose(got, want, rtol=1e-8 if link == "logit" else 1e-7)


def test_priors_of_the_thresholds() -> None:
    frame = _frame()
    m = _model("y ~ x + (1|g)", frame, priors=PRIORS)
    table = m.prior_summary()
    row = table[table["class"] == "Intercept"].iloc[0]
    assert (row["prior"], row["source"]) == ("normal(0, 2)", "user")
    assert "threshold" not in set(table["class"])  # Bambi's name is not a class of its own
    prior = m.bambi.parameters["threshold"].prior
    assert prior.args["sigma"] == 2.0 and "transform" in prior.args  # ordered
    default = _model("y ~ x + (1|g)", frame).prior_summary()
    default = default.set_index("class")
    # lmmformula's default: normal(0, 2.5) per threshold on the link scale (as the intercept
    # of a logit model); b and sd scaled as for any logit model
    assert default.loc["Intercept", "prior"] == "normal(0, 2.5)"
    brms = _model("y ~ x + (1|g)", frame, priors="brms").prior_summary()
    assert brms.set_index("class").loc["Intercept", "prior"] == "student_t(3, 0, 2.5)"


def test_response_forms_and_refusals() -> None:
    frame = _frame()
    # whole-number codes are the categories min..max, unobserved ones included (brms' 1..max)
    coded = frame.assign(y=frame["y"].replace({2: 3}))
    m = _model("y ~ x", coded)
    assert list(m.bambi.response_term.levels) == ["1", "2", "3", "4"]
    labels = np.array(["low", "mid", "high", "top"])
    ordered = frame.assign(
        y=pd.Categorical(labels[frame["y"] - 1], categories=list(labels), ordered=True)
    )
    assert list(_model("y ~ x", ordered).bambi.response_term.levels) == list(labels)
    with pytest.raises(DataError, match=r"needs an ordered response.*unordered categorical"):
        _model("y ~ x", frame.assign(y=pd.Categorical(labels[frame["y"] - 1])))
    with pytest.raises(DataError, match=r"holds text .*order is not known"):
        _model("y ~ x", frame.assign(y=labels[frame["y"] - 1]))
    with pytest.raises(DataError, match=r"not whole numbers"):
        _model("y ~ x", frame.assign(y=frame["y"] + 0.5))


@pytest.fixture(scope="module")
def block_fit():
    """A correlated block (1 + x|g) on simulated data: thresholds (-1, 0.2, 1.5), slope 0.8."""
    rng = np.random.default_rng(20261127)
    n_g, n_per = 30, 20
    g = np.repeat(np.arange(n_g), n_per)
    x = rng.normal(size=n_g * n_per)
    u0, u1 = rng.normal(scale=0.5, size=n_g), rng.normal(scale=0.3, size=n_g)
    latent = (0.8 + u1[g]) * x + u0[g] + rng.logistic(size=len(g))
    y = 1 + np.digitize(latent, [-1.0, 0.2, 1.5])
    frame = pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lf.fit(
            "y ~ x + (1 + x|g)",
            frame,
            family="cumulative",
            draws=300,
            tune=400,
            chains=2,
            random_seed=4,
            progressbar=False,
        )
    return fit, frame


def test_recovery_with_a_correlated_block(block_fit) -> None:
    fit, _ = block_fit
    assert fit.model.blocks["g"].terms == ("1|g", "x|g")
    fixef = fit.fixef()
    assert list(fixef.index) == ["Intercept[1]", "Intercept[2]", "Intercept[3]", "x"]
    truth = pd.Series({"Intercept[1]": -1.0, "Intercept[2]": 0.2, "Intercept[3]": 1.5, "x": 0.8})
    z = (fixef["estimate"] - truth) / fixef["sd"]
    assert (z.abs() < 4).all(), z
    assert (fixef["sd"] < 0.25).all()  # informative: a sign error would be far off
    summary = str(fit.summary())
    assert "Intercept[1]" in summary and "cor(Intercept,x)" in summary


def test_predict_and_log_likelihood_equal_numpy(block_fit) -> None:
    fit, frame = block_fit
    post = fit.posterior
    thresholds = post["threshold"].transpose("chain", "draw", ...).values
    level = np.array([int(s[1:]) for s in frame["g"]])
    u0 = post["1|g"].transpose("chain", "draw", ...).values[..., level]
    u1 = post["x|g"].transpose("chain", "draw", ...).values[..., level]
    x = frame["x"].to_numpy()
    eta = post["x"].values[..., None] * x + u0 + u1 * x
    p = _probabilities(thresholds, eta, "logit")  # (chain, draw, obs, K)
    got = fit.predict(summary=False).transpose("chain", "draw", "__obs__", ...).values
    np.testing.assert_allclose(got, p, rtol=1e-6, atol=1e-10)
    table = fit.predict()
    assert table.index.names == ["obs", "category"] and len(table) == 4 * len(frame)
    np.testing.assert_allclose(table["estimate"].to_numpy(), p.mean(axis=(0, 1)).ravel(), rtol=1e-6)
    codes = frame["y"].to_numpy() - 1
    ll = fit.log_likelihood().transpose("chain", "draw", ...).values
    np.testing.assert_allclose(ll, np.log(p[..., np.arange(len(codes)), codes]), rtol=1e-6)
    assert np.isfinite(fit.loo().elpd)
