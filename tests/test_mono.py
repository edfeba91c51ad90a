"""brms' monotonic effects ``mo(x)`` (issue 12, item 6).

brms' parameterisation: with the categories of ``x`` coded ``0..D``,
``mo(x) = bsp * D * sum_{i <= x} simo_i``, ``simo ~ Dirichlet(alpha)``. The oracles here are
numpy and scipy written from that equation and the data frame (the cumulative sums taken
from the codes, not from lmmformula's indicator columns); recovery tests sample simulated data
with a known simplex and ``bsp``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import stats

import lmmformula as lf
from lmmformula.errors import DataError, ModelError, PriorError

MODE = "FAST_COMPILE"
PRIORS = [
    lf.prior("normal(0.5, 3)", cls="Intercept"),
    lf.prior("normal(0, 1.5)", cls="b"),
    lf.prior("normal(0, 0.7)", cls="b", coef="mox"),
    lf.prior("dirichlet(2)", cls="simo", coef="mox1"),
    lf.prior("exponential(2)", cls="sigma"),
]


def _frame(n: int = 60, seed: int = 1, categorical: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 4, n)  # D = 3
    x[:4] = np.arange(4)
    z = rng.normal(size=n)
    y = 1 + 0.6 * np.array([0, 1.0, 1.3, 3.0])[x] + 0.3 * z + rng.normal(scale=0.5, size=n)
    frame = pd.DataFrame({"y": y, "x": x, "z": z})
    if categorical:
        labels = np.array(["none", "some", "most", "all"])
        frame["x"] = pd.Categorical(labels[x], categories=list(labels), ordered=True)
    return frame


def _mo_numpy(codes: np.ndarray, bsp: float, simo: np.ndarray) -> np.ndarray:
    """brms' ``mo()``: ``bsp * D * sum_{i <= x} simo_i`` from the 0-based codes."""
    partial = np.concatenate([[0.0], np.cumsum(simo)])
    return bsp * len(simo) * partial[codes]


def _point(pm_model, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """PyMC's value-variable point from constrained values of the free variables."""
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
        return lf.model(formula, frame, **kwargs)


@pytest.mark.parametrize("suffstats", [False, True])
@pytest.mark.parametrize("categorical", [False, True])
def test_log_density_equals_numpy(suffstats: bool, categorical: bool) -> None:
    frame = _frame(categorical=categorical)
    m = _model("y ~ mo(x) + z", frame, priors=PRIORS, suffstats=suffstats)
    assert m.likelihood == ("sufficient statistics" if suffstats else "full data")
    pm_model = m.pymc_model
    assert {rv.name for rv in pm_model.free_RVs} == {
        "Intercept",
        "bsp_mox",
        "simo_mox1",
        "z",
        "sigma",
    }
    rng = np.random.default_rng(7)
    for _ in range(3):
        values = {
            "Intercept": rng.normal(),
            "bsp_mox": rng.normal(),
            "simo_mox1": rng.dirichlet([1.0, 1.0, 1.0]),
            "z": rng.normal(),
            "sigma": rng.uniform(0.3, 2.0),
        }
        got = pm_model.compile_logp(jacobian=False, mode=MODE)(_point(pm_model, values))

        codes = np.asarray(_frame()["x"])  # the same rows, coded 0..3 whatever the dtype
        # Bambi centres the population-level columns (the intercept is at their means)
        mo = _mo_numpy(codes, values["bsp_mox"], values["simo_mox1"])
        z = frame["z"].to_numpy()
        mu = values["Intercept"] + (mo - mo.mean()) + values["z"] * (z - z.mean())
        want = (
            stats.norm(0.5, 3).logpdf(values["Intercept"])
            + stats.norm(0, 0.7).logpdf(values["bsp_mox"])
            + stats.norm(0, 1.5).logpdf(values["z"])
            + stats.dirichlet([2.0, 2.0, 2.0]).logpdf(values["simo_mox1"])
            + stats.expon(scale=0.5).logpdf(values["sigma"])
            + stats.norm(mu, values["sigma"]).logpdf(frame["y"]).sum()
        )
        np.testing.assert_allclose(got, want, rtol=1e-8)


def test_default_priors_and_summary_names() -> None:
    frame = _frame()
    m = _model("y ~ mo(x) + z", frame)
    table = m.prior_summary().set_index(["class", "coef"])
    codes = frame["x"].to_numpy()
    # bsp: a slope per category step, scaled like a numeric column of the codes 0..D
    sd_codes = np.std(codes, ddof=1)
    want = 2.5 * np.std(frame["y"], ddof=1) / sd_codes
    assert table.loc[("b", "mox"), "prior"] == f"normal(0, {want:.4g})"
    assert table.loc[("simo", "mox1"), "prior"] == "dirichlet(1)"
    brms = _model("y ~ mo(x) + z", frame, priors="brms").prior_summary()
    brms = brms.set_index(["class", "coef"])
    assert brms.loc[("b", "mox"), "prior"] == "(flat)"
    assert brms.loc[("simo", "mox1"), "prior"] == "dirichlet(1)"
    # Bambi has no prior for mo()'s one slope: priors="bambi" keeps lmmformula's there
    bambi = _model("y ~ mo(x) + z", frame, priors="bambi")
    bambi.build()
    assert bambi.prior_summary().set_index(["class", "coef"]).loc[("b", "mox"), "prior"] == (
        f"normal(0, {want:.4g})"
    )


def test_prior_errors() -> None:
    frame = _frame()
    with pytest.raises(PriorError, match=r"no monotonic simplex 'moz1'; valid: mox1"):
        _model("y ~ mo(x)", frame, priors=[lf.prior("dirichlet(2)", cls="simo", coef="moz1")])
    with pytest.raises(PriorError, match=r"takes a dirichlet\(alpha\) prior"):
        _model("y ~ mo(x)", frame, priors=[lf.prior("normal(0, 1)", cls="simo")])
    with pytest.raises(PriorError, match=r"dirichlet\(\) is the prior of a mo\(\) simplex"):
        _model("y ~ mo(x)", frame, priors=[lf.prior("dirichlet(2)", cls="b")])


def test_refusals() -> None:
    frame = _frame()
    frame["xs"] = frame["x"].map({0: "a", 1: "b", 2: "c", 3: "d"})
    frame["xu"] = pd.Categorical(frame["xs"])  # unordered
    frame["xg"] = frame["x"].map({0: 0, 1: 1, 2: 3, 3: 4})  # no 2: a gap
    with pytest.raises(DataError, match=r"mo\(xs\) needs an ordered predictor.*holds text"):
        _model("y ~ mo(xs)", frame)
    with pytest.raises(DataError, match=r"mo\(xu\) needs an ordered predictor.*unordered"):
        _model("y ~ mo(xu)", frame)
    with pytest.raises(DataError, match=r"has gaps: no rows with 2"):
        _model("y ~ mo(xg)", frame)
    with pytest.raises(DataError, match=r"write z instead of mo\(z\)"):
        _model("y ~ mo(z)", frame)
    with pytest.raises(ModelError, match=r"only mo\(x\) on its own"):
        _model("y ~ mo(x):z", frame)
    with pytest.raises(ModelError, match=r"mo\(x, id = 'a'\): mo\(\) takes one column"):
        _model("y ~ mo(x, id = 'a')", frame)
    with pytest.raises(ModelError, match=r"mo\(np.log\(x \+ 1\)\): mo\(\) takes one column"):
        _model("y ~ mo(np.log(x + 1))", frame)


def test_design_has_the_cumulative_indicators() -> None:
    frame = _frame(categorical=True)
    m = _model("y ~ mo(x) + z", frame)
    X = np.asarray(m.design().X)
    codes = frame["x"].cat.codes.to_numpy()
    want = (codes[:, None] >= np.arange(1, 4)[None, :]).astype(float)
    np.testing.assert_array_equal(X[:, 1:4], want)


@pytest.fixture(scope="module")
def recovery_fit():
    """y = 1 + mo(x) + e, x in 0..4 (D = 4), simplex (0.1, 0.2, 0.3, 0.4), bsp 0.5."""
    rng = np.random.default_rng(20261127)
    n = 500
    x = rng.integers(0, 5, n)
    simo, bsp = np.array([0.1, 0.2, 0.3, 0.4]), 0.5
    y = 1 + _mo_numpy(x, bsp, simo) + rng.normal(scale=0.4, size=n)
    frame = pd.DataFrame({"y": y, "x": x})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lf.fit(
            "y ~ mo(x)", frame, draws=400, tune=400, chains=2, random_seed=3, progressbar=False
        )
    return fit, frame, simo, bsp


def test_recovers_a_known_simplex(recovery_fit) -> None:
    fit, _, simo, bsp = recovery_fit
    fixef = fit.fixef()
    assert list(fixef.index) == [
        "Intercept",
        "bsp_mox",
        "simo_mox1[1]",
        "simo_mox1[2]",
        "simo_mox1[3]",
        "simo_mox1[4]",
    ]
    truth = pd.Series(
        {"Intercept": 1.0, "bsp_mox": bsp} | {f"simo_mox1[{k + 1}]": s for k, s in enumerate(simo)}
    )
    z = (fixef["estimate"] - truth) / fixef["sd"]
    assert (z.abs() < 4).all(), z
    # informative: a reversed simplex (0.4, ..., 0.1) would be many sds away
    assert (fixef.loc[[f"simo_mox1[{k}]" for k in range(1, 5)], "sd"] < 0.05).all()
    assert fit.diagnostics().divergences == 0


def test_predict_and_log_likelihood_equal_numpy(recovery_fit) -> None:
    fit, frame, _, _ = recovery_fit
    post = fit.posterior
    a = post["Intercept"].values[..., None]
    bsp = post["bsp_mox"].values[..., None]
    simo = post["simo_mox1"].transpose("chain", "draw", ...).values
    partial = np.concatenate([np.zeros((*simo.shape[:2], 1)), np.cumsum(simo, axis=-1)], -1)
    codes = frame["x"].to_numpy()
    mu = a + bsp * 4 * partial[..., codes]
    got = fit.predict(summary=False).transpose("chain", "draw", "__obs__").values
    np.testing.assert_allclose(got, mu, rtol=1e-6, atol=1e-9)
    sigma = post["sigma"].values[..., None]
    ll = fit.log_likelihood().transpose("chain", "draw", ...).values
    np.testing.assert_allclose(ll, stats.norm(mu, sigma).logpdf(frame["y"].to_numpy()), rtol=1e-6)
    # new data: the levels of the fit are kept (x = 4 alone is still the top category)
    new = pd.DataFrame({"x": [4, 0, 2]})
    got_new = fit.predict(new, summary=False).transpose("chain", "draw", "__obs__").values
    np.testing.assert_allclose(got_new, mu[..., [codes.tolist().index(v) for v in (4, 0, 2)]])
    with pytest.raises(DataError, match=r"mo\(x\): the value 7 was not a level of 'x'"):
        fit.predict(pd.DataFrame({"x": [7]}))
    assert np.isfinite(fit.loo().elpd)


# -- group-level mo(x) -----------------------------------------------------------------------
GROUP_PRIORS = [
    *PRIORS,
    lf.prior("normal(0, 0.9)", cls="sd", group="g", coef="Intercept"),
    lf.prior("normal(0, 0.4)", cls="sd", group="g", coef="mox"),
]


def _group_frame(n: int = 72, seed: int = 3) -> pd.DataFrame:
    frame = _frame(n=n, seed=seed).drop(columns="z")
    frame["g"] = [f"g{i}" for i in np.arange(n) % 6]  # g0..g5 sort as 0..5
    return frame


def test_group_level_log_density_equals_numpy() -> None:
    """brms: mu += (bsp + r_g) * mo(x); (mo(x)||g) is (1|g) + (0 + mo(x)|g), non-centred."""
    frame = _group_frame()
    m = _model("y ~ mo(x) + (mo(x)||g)", frame, priors=GROUP_PRIORS, suffstats=False)
    pm_model = m.pymc_model
    assert {rv.name for rv in pm_model.free_RVs} == {
        "Intercept",
        "bsp_mox",
        "simo_mox1",
        "sigma",
        "1|g_sigma",
        "1|g_offset",
        "mox|g_sigma",
        "mox|g_offset",
    }
    codes = frame["x"].to_numpy()
    level = np.array([int(s[1:]) for s in frame["g"]])
    rng = np.random.default_rng(11)
    for _ in range(3):
        values = {
            "Intercept": rng.normal(),
            "bsp_mox": rng.normal(),
            "simo_mox1": rng.dirichlet([1.0, 1.0, 1.0]),
            "sigma": rng.uniform(0.3, 2.0),
            "1|g_sigma": rng.uniform(0.2, 1.0),
            "1|g_offset": rng.normal(size=6),
            "mox|g_sigma": rng.uniform(0.1, 0.5),
            "mox|g_offset": rng.normal(size=6),
        }
        got = pm_model.compile_logp(jacobian=False, mode=MODE)(_point(pm_model, values))
        mo_pop = _mo_numpy(codes, values["bsp_mox"], values["simo_mox1"])
        r = values["mox|g_sigma"] * values["mox|g_offset"]
        u0 = values["1|g_sigma"] * values["1|g_offset"]
        mu = (
            values["Intercept"]
            + (mo_pop - mo_pop.mean())
            + u0[level]
            + r[level] * _mo_numpy(codes, 1.0, values["simo_mox1"])
        )
        want = (
            stats.norm(0.5, 3).logpdf(values["Intercept"])
            + stats.norm(0, 0.7).logpdf(values["bsp_mox"])
            + stats.dirichlet([2.0, 2.0, 2.0]).logpdf(values["simo_mox1"])
            + stats.expon(scale=0.5).logpdf(values["sigma"])
            + stats.halfnorm(scale=0.9).logpdf(values["1|g_sigma"])
            + stats.halfnorm(scale=0.4).logpdf(values["mox|g_sigma"])
            + stats.norm.logpdf(values["1|g_offset"]).sum()
            + stats.norm.logpdf(values["mox|g_offset"]).sum()
            + stats.norm(mu, values["sigma"]).logpdf(frame["y"]).sum()
        )
        np.testing.assert_allclose(got, want, rtol=1e-8)


@pytest.mark.parametrize("suffstats", [False, True])
def test_group_level_block_likelihood_equals_numpy(suffstats: bool) -> None:
    """(1 + mo(x)|g): one 2x2 LKJ block (intercept, the varying slope of mo(x)); the
    likelihood at a point from the block's own effects (the LKJ block is tested elsewhere)."""
    frame = _group_frame()
    m = _model("y ~ mo(x) + (1 + mo(x)|g)", frame, priors=GROUP_PRIORS, suffstats=suffstats)
    assert m.blocks["g"].terms == ("1|g", "mo(x)|g")
    pm_model = m.pymc_model
    assert pm_model["g_corr"].eval().shape == (2, 2)  # one slope, not D columns
    codes = frame["x"].to_numpy()
    level = np.array([int(s[1:]) for s in frame["g"]])
    rng = np.random.default_rng(12)
    point = {
        k: v + rng.normal(scale=0.3, size=np.shape(v)) for k, v in pm_model.initial_point().items()
    }
    names = ["1|g", "mox|g", "Intercept", "bsp_mox", "simo_mox1", "sigma"]
    outs = pm_model.replace_rvs_by_values([pm_model[n] for n in names])
    fn = pytensor.function(pm_model.value_vars, outs, on_unused_input="ignore", mode=MODE)
    u0, r, a, bsp, simo, sigma = fn(*[point[v.name] for v in pm_model.value_vars])
    likelihood = [pm_model[n] for n in pm_model.named_vars if n.endswith("_suffstats")]
    likelihood = likelihood or pm_model.observed_RVs
    got = pm_model.compile_logp(vars=likelihood, jacobian=False, mode=MODE)(point)
    mo_pop = _mo_numpy(codes, bsp, simo)
    mu = a + (mo_pop - mo_pop.mean()) + u0[level] + r[level] * _mo_numpy(codes, 1.0, simo)
    want = stats.norm(mu, sigma).logpdf(frame["y"]).sum()
    np.testing.assert_allclose(got, want, rtol=1e-8)


def test_group_level_refusals() -> None:
    frame = _group_frame()
    with pytest.raises(ModelError, match=r"lacks: add mo\(x\) to the population-level part"):
        _model("y ~ (1 + mo(x)|g)", frame)
    frame["z"] = np.linspace(0, 1, len(frame))
    with pytest.raises(ModelError, match=r"combines mo\(\) with other variables"):
        _model("y ~ mo(x) + (1 + mo(x):z|g)", frame)
    with pytest.raises(ModelError, match=r"distributional parameter 'sigma' is not supported"):
        _model("bf(y ~ mo(x), sigma ~ mo(x))", frame)


def test_group_level_accessors() -> None:
    """ranef, coef and varcorr of (1 + mo(x)|g) name the varying slope mox, as brms does;
    coef adds it to bsp_mox (brms' coef: bsp + r_g)."""
    frame = _group_frame(n=120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lf.fit(
            "y ~ mo(x) + (1 + mo(x)|g)",
            frame,
            draws=60,
            tune=60,
            chains=1,
            random_seed=1,
            progressbar=False,
        )
    post = fit.posterior
    r = post["mox|g"].transpose("chain", "draw", ...).values
    np.testing.assert_allclose(fit.ranef()["g"]["mox"], r.mean(axis=(0, 1)))
    bsp = post["bsp_mox"].values[..., None]
    np.testing.assert_allclose(fit.coef()["g"]["bsp_mox"], (bsp + r).mean(axis=(0, 1)))
    labels = set(fit._varcorr_table()["label"])
    assert {"sd(Intercept)", "sd(mox)", "cor(Intercept,mox)"} <= labels
    # the term's (levels, D) coefficients are r_g * D * simo
    simo = post["simo_mox1"].transpose("chain", "draw", ...).values
    coefs = post["mo(x)|g"].transpose("chain", "draw", "g__factor_dim", ...).values
    np.testing.assert_allclose(coefs, r[..., None] * 3 * simo[:, :, None, :], rtol=1e-10)
