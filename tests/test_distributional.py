"""brms' distributional formulas, bf(y ~ ..., sigma ~ ...), and |ID| blocks.

The oracle is numpy and scipy written from the model's equations (tests/oracle.py for the LKJ
pieces): the PyMC graph's joint log density at random points must equal it. The sampling test
recovers a simulation's truth; the brms test compares with brms' own fit of the same data and
priors (tests/reference/brms/dpar_id.json, made by tests/reference/brms/make_brms_refs.R).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from oracle import half, level_codes, lkj_cholesky_cov_logpdf, unpack_lower
from scipy import stats

import lmmformula as lf
from lmmformula.errors import FormulaSyntaxError, ModelError, PriorError

REFERENCE = Path(__file__).parent / "reference" / "brms"


def _simulate(seed: int = 11, groups: int = 40, per: int = 30, z_mean: float = 1.0):
    """y = 1 + 0.5 x + u_mu + e, e ~ N(0, exp(-0.3 + 0.4 z + u_sigma)); (u_mu, u_sigma) with
    sds 0.5, 0.3 and correlation 0.7. z has mean ``z_mean`` so an intercept that Bambi does not
    un-centre would show (-0.3 + 0.4 z_mean instead of -0.3)."""
    rng = np.random.default_rng(seed)
    sd = np.array([0.5, 0.3])
    cov = np.outer(sd, sd) * np.array([[1.0, 0.7], [0.7, 1.0]])
    u = rng.multivariate_normal(np.zeros(2), cov, size=groups)
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(size=g.size)
    z = rng.normal(loc=z_mean, size=g.size)
    y = 1 + 0.5 * x + u[g, 0] + rng.normal(size=g.size) * np.exp(-0.3 + 0.4 * z + u[g, 1])
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": [f"g{i:02d}" for i in g]})


# -- the formula -------------------------------------------------------------------------------
TRANSLATIONS = [
    # formula, dpar formulas, blocks
    (
        "bf(y ~ x + (1|p|g), sigma ~ z + (1|p|g))",
        {"sigma": "sigma ~ z + (1|g)"},
        {"g": ("1|g", "sigma_1|g")},
    ),
    (
        "bf(y ~ x + (1 + x|p|g), sigma ~ (1|p|g))",
        {"sigma": "sigma ~ 1 + (1|g)"},
        {"g": ("1|g", "x|g", "sigma_1|g")},
    ),
    (  # without an ID every bar is its own block, and a lone intercept is no block
        "bf(y ~ x + (1 + x|g), sigma ~ z + (1|g))",
        {"sigma": "sigma ~ z + (1|g)"},
        {"g": ("1|g", "x|g")},
    ),
    (  # a block of the sigma formula alone is the second block on g
        "brmsformula(y ~ (1 + x|g), sigma ~ (1 + z|g))",
        {"sigma": "sigma ~ 1 + (1 + z|g)"},
        {"g": ("1|g", "x|g"), "g__2": ("sigma_1|g", "sigma_z|g")},
    ),
    (  # an ID inside one formula joins its bars
        "y ~ (1|p|g) + (0 + x|p|g) + (1|h)",
        {},
        {"g": ("1|g", "x|g")},
    ),
    ("bf(y ~ x)", {}, {}),
]


@pytest.mark.parametrize(("formula", "dpars", "blocks"), TRANSLATIONS)
def test_translation(formula, dpars, blocks):
    t = lf.translate(formula)
    assert t.dpar_formulas == dpars
    assert t.correlated == blocks
    assert t.bambi_formulas[1:] == tuple(dpars.values())


def test_python_spelling_and_its_errors():
    assert lf.bf("y ~ x", sigma="z") == "bf(y ~ x, sigma ~ z)"
    assert lf.bf("y ~ x", sigma="sigma ~ z", nu="1") == "bf(y ~ x, sigma ~ z, nu ~ 1)"
    with pytest.raises(FormulaSyntaxError, match="models 'nu'"):
        lf.bf("y ~ x", sigma="nu ~ z")
    with pytest.raises(FormulaSyntaxError, match="expected a term"):
        lf.bf("y ~ x", sigma="z +")


def test_a_parameter_the_family_lacks_is_refused():
    df = _simulate(groups=5, per=4)
    with pytest.raises(ModelError, match="'foo', which is not a parameter of the 'gaussian'"):
        lf.model("bf(y ~ x, foo ~ z)", df)
    with pytest.raises(ModelError, match="besides 'mu': 'sigma'"):
        lf.model("bf(y ~ x, nu ~ z)", df)


@pytest.mark.parametrize(
    ("formula", "family", "pattern"),
    [
        ("bf(c ~ x, zi ~ z)", "zero_inflated_poisson", "calls 'psi' \\(psi = 1 - zi"),
        ("bf(c ~ x, shape ~ z)", "negbinomial", "calls 'alpha'; write alpha ~"),
    ],
)
def test_brms_names_of_parameters_point_to_bambis(formula, family, pattern):
    df = _simulate(groups=4, per=5).assign(c=np.arange(20) % 4)
    with pytest.raises(ModelError, match=pattern):
        lf.model(formula, df, family=family)


def test_likelihood_says_why_not_sufficient_statistics():
    m = lf.model("bf(y ~ x + (1|g), sigma ~ z)", _simulate(groups=5, per=4))
    assert m.likelihood == "full data"
    assert "sigma is modelled by a formula" in m.likelihood_reason
    assert m.links_text == "mu = identity; sigma = log"


# -- priors ----------------------------------------------------------------------------------
def test_priors_by_dpar_reach_the_parameter_formula_only():
    df = _simulate(groups=6, per=5)
    m = lf.model(
        "bf(y ~ x + (1|p|g), sigma ~ z + (1|p|g))",
        df,
        priors=[
            lf.prior("normal(0, 0.5)", cls="b", dpar="sigma"),
            lf.prior("normal(0, 3)", cls="b"),
            lf.prior("normal(0, 0.25)", cls="sd", dpar="sigma"),
        ],
    )
    table = m.prior_summary()
    sigma_b = table[(table["class"] == "b") & (table["coef"] == "z")]
    assert list(sigma_b["dpar"]) == ["sigma"] and list(sigma_b["prior"]) == ["normal(0, 0.5)"]
    main_b = table[(table["class"] == "b") & (table["coef"] == "x")]
    assert list(main_b["dpar"]) == [""] and list(main_b["prior"]) == ["normal(0, 3)"]
    sd_sigma = table[(table["class"] == "sd") & (table["dpar"] == "sigma") & (table["coef"] != "")]
    assert list(sd_sigma["prior"]) == ["halfnormal(0.25)"]
    sd_main = table[(table["class"] == "sd") & (table["dpar"] == "") & (table["coef"] != "")]
    assert list(sd_main["source"]) == ["default"]


def test_a_bambi_dict_for_a_parameter_keeps_the_defaults_it_does_not_name():
    import bambi as bmb

    df = _simulate(groups=6, per=5)
    given = bmb.Prior("Normal", mu=0, sigma=0.3)
    m = lf.model("bf(y ~ x + (1|g), sigma ~ z)", df, priors={"sigma": {"z": given}})
    table = m.prior_summary().set_index(["class", "coef", "dpar"])
    assert table.loc[("b", "z", "sigma"), "prior"] == "normal(0, 0.3)"
    assert table.loc[("b", "z", "sigma"), "source"] == "user"
    # the sigma formula's intercept keeps lmmformula's default, not Bambi's normal(0, 1)
    intercept = table.loc[("Intercept", "", "sigma"), "prior"]
    assert intercept == f"normal({np.log(df['y'].std()):.4g}, 1)"
    with pytest.raises(PriorError, match="the model of 'sigma' has no term 'w'"):
        lf.model("bf(y ~ x + (1|g), sigma ~ z)", df, priors={"sigma": {"w": given}})


@pytest.mark.parametrize(
    ("spec", "pattern"),
    [
        (lf.prior("normal(0, 1)", cls="b", dpar="nu"), "no formula for the distributional"),
        (lf.prior("normal(0, 1)", cls="b", coef="w", dpar="sigma"), "no population-level"),
        (lf.prior("normal(0, 1)", cls="b", coef="z"), "no population-level coefficient 'z'"),
    ],
)
def test_prior_targets_are_checked_per_formula(spec, pattern):
    with pytest.raises(PriorError, match=pattern):
        lf.model("bf(y ~ x, sigma ~ z)", _simulate(groups=4, per=4), priors=[spec])


def test_dpar_goes_with_term_classes_only():
    with pytest.raises(PriorError, match="dpar='sigma' applies to the classes"):
        lf.prior("lkj(2)", cls="cor", dpar="sigma")
    spec = lf.prior("normal(0, 1)", cls="b", dpar="sigma")
    assert lf.PriorSpec.from_dict(spec.to_dict()) == spec
    assert spec != lf.prior("normal(0, 1)", cls="b")


def test_default_priors_of_the_sigma_formula():
    df = _simulate(groups=6, per=5)
    m = lf.model("bf(y ~ x, sigma ~ z + (1|g))", df)
    table = m.prior_summary().set_index(["class", "coef", "group", "dpar"])
    sd_y = df["y"].std()
    intercept = table.loc[("Intercept", "", "", "sigma"), "prior"]
    assert intercept == f"normal({np.log(sd_y):.4g}, 1)"
    slope = table.loc[("b", "z", "", "sigma"), "prior"]
    assert slope == f"normal(0, {1 / df['z'].std():.4g})"
    assert table.loc[("sd", "Intercept", "g", "sigma"), "prior"] == "halfnormal(1)"
    brms = lf.model("bf(y ~ x, sigma ~ z + (1|g))", df, priors="brms").prior_summary()
    rows = brms[brms["dpar"] == "sigma"].set_index(["class", "coef", "group"])["prior"]
    assert rows[("Intercept", "", "")] == "student_t(3, 0, 2.5)"
    assert rows[("b", "z", "")] == "(flat)"  # brms prints a flat prior so


# -- the graph against the equations ----------------------------------------------------------
PRIORS = [
    lf.prior("normal(1, 2)", cls="Intercept"),
    lf.prior("normal(0, 1)", cls="b"),
    lf.prior("normal(0, 0.7)", cls="sd", group="g"),
    lf.prior("normal(-0.5, 1.5)", cls="Intercept", dpar="sigma"),
    lf.prior("normal(0, 0.5)", cls="b", dpar="sigma"),
    lf.prior("normal(0, 0.4)", cls="sd", group="g", dpar="sigma"),
    lf.prior("lkj(3)", cls="cor"),
]


def _oracle_logp(df: pd.DataFrame, point: dict[str, np.ndarray]) -> float:
    """The joint log density of bf(y ~ x + (1|p|g), sigma ~ z + (1|p|g)) with PRIORS, in
    PyMC's unconstrained space: predictors centred in both formulas (each has an intercept),
    the 2x2 block's Cholesky factor packed with a log diagonal, z_j ~ N(0, I), u_j = L z_j."""
    norm = stats.norm
    used = set(point)
    y, x, z = (df[c].to_numpy(float) for c in ("y", "x", "z"))
    codes, _ = level_codes(df["g"])
    xc, zc = x - x.mean(), z - z.mean()
    lp = norm(1, 2).logpdf(point["Intercept"]) + norm(0, 1).logpdf(point["x"])
    lp += norm(-0.5, 1.5).logpdf(point["sigma_Intercept"]) + norm(0, 0.5).logpdf(point["sigma_z"])
    packed = np.asarray(point["g_lkj_cholesky-cov-packed__"], dtype=float).copy()
    log_diag = packed[[0, 2]]
    packed[[0, 2]] = np.exp(log_diag)
    chol = unpack_lower(packed, 2)
    sd_priors = [half(norm(0, 0.7)), half(norm(0, 0.4))]  # block order: 1|g, sigma_1|g
    lp += lkj_cholesky_cov_logpdf(chol, 3.0, sd_priors) + log_diag.sum()
    offsets = np.asarray(point["g_offset"], dtype=float)
    lp += norm.logpdf(offsets).sum()
    u = offsets @ chol.T
    mu = point["Intercept"] + point["x"] * xc + u[codes, 0]
    log_sigma = point["sigma_Intercept"] + point["sigma_z"] * zc + u[codes, 1]
    used -= {
        "Intercept",
        "x",
        "sigma_Intercept",
        "sigma_z",
        "g_lkj_cholesky-cov-packed__",
        "g_offset",
    }
    assert not used, f"free variables the equations do not have: {sorted(used)}"
    return float(lp + norm.logpdf(y, mu, np.exp(log_sigma)).sum())


def test_log_density_equals_the_equations():
    df = _simulate(groups=7, per=6)
    m = lf.model("bf(y ~ x + (1|p|g), sigma ~ z + (1|p|g))", df, priors=PRIORS)
    pm_model = m.pymc_model
    logp = pm_model.compile_logp()
    rng = np.random.default_rng(3)
    for _ in range(3):
        point = {
            v.name: rng.normal(scale=0.6, size=np.shape(val))
            for v, val in zip(
                pm_model.value_vars, pm_model.initial_point().values(), strict=True
            )
        }
        assert logp(point) == pytest.approx(_oracle_logp(df, point), rel=1e-9, abs=1e-8)


def test_an_id_block_across_formulas_is_one_lkj_block():
    m = lf.model("bf(y ~ x + (1 + x|p|g), sigma ~ (1|p|g))", _simulate(groups=5, per=4))
    free = {v.name for v in m.pymc_model.free_RVs}
    assert {"g_lkj", "g_offset"} <= free
    assert not any(name.endswith("_sigma") for name in free)  # no separate sds
    assert m.pymc_model["g_offset"].eval().shape == (5, 3)
    assert m.blocks["g"].terms == ("1|g", "x|g", "sigma_1|g")


# -- sampling --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recovered():
    df = _simulate()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lf.fit(
            "bf(y ~ x + (1|p|g), sigma ~ z + (1|p|g))",
            df,
            draws=500,
            tune=500,
            chains=2,
            random_seed=5,
            progressbar=False,
        )


def test_recovers_the_sigma_slope_and_the_cross_parameter_correlation(recovered):
    fixef = recovered.fixef()
    # truth: sigma_z = 0.4 and sigma_Intercept = -0.3 (at z = 0: the intercept is un-centred)
    for name, truth in [("sigma_z", 0.4), ("sigma_Intercept", -0.3), ("x", 0.5)]:
        row = fixef.loc[name]
        assert row["lower"] < truth < row["upper"], (name, row.to_dict())
    vc = recovered.varcorr().set_index(["var1", "var2"])
    cor = vc.loc[("Intercept", "sigma_Intercept")]
    assert cor["lower"] < 0.7 < cor["upper"] and cor["estimate"] > 0.3
    sd = vc.loc[("sigma_Intercept", None)]
    assert sd["lower"] < 0.3 < sd["upper"]
    assert "Residual" not in set(recovered.varcorr()["grp"])


def test_results_name_the_parameters_as_brms(recovered):
    text = str(recovered.summary())
    for label in ("sd(sigma_Intercept)", "cor(Intercept,sigma_Intercept)", "sigma_z"):
        assert label in text
    assert "links: mu = identity; sigma = log" in text
    assert list(recovered.ranef()["g"].columns) == ["Intercept", "sigma_Intercept"]


def test_predict_sigma_is_the_exponentiated_linear_predictor(recovered):
    new = pd.DataFrame({"x": [0.0, 0.0], "z": [0.0, 2.0], "g": ["g00", "g00"]})
    draws = recovered.predict(new, dpar="sigma", summary=False)
    post = recovered.posterior
    expected = np.exp(
        post["sigma_Intercept"].values[..., None]
        + post["sigma_z"].values[..., None] * new["z"].to_numpy()
        + post["sigma_1|g"].sel(g__factor_dim="g00").values[..., None]
    )
    np.testing.assert_allclose(draws.values, expected, rtol=1e-9)
    with pytest.raises(ModelError, match="no formula for it"):
        recovered.predict(new, dpar="nu")
    loo = recovered.loo()
    assert np.isfinite(loo.elpd)


@pytest.mark.skipif(
    not (REFERENCE / "dpar_id.json").exists(), reason="brms reference not generated"
)
def test_agrees_with_brms(recovered):
    """Same data and priors as brms' fit (tests/reference/brms/dpar_id.json)."""
    ref = json.loads((REFERENCE / "dpar_id.json").read_text())
    df = pd.read_csv(REFERENCE / "dpar_id.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lf.fit(
            "bf(y ~ x + (1|p|g), sigma ~ z + (1|p|g))",
            df,
            priors=[
                lf.prior("normal(0, 1)", cls="b"),
                lf.prior("normal(0, 2)", cls="Intercept"),
                lf.prior("normal(0, 1)", cls="sd"),
                lf.prior("normal(0, 1)", cls="b", dpar="sigma"),
                lf.prior("normal(0, 2)", cls="Intercept", dpar="sigma"),
                lf.prior("normal(0, 1)", cls="sd", dpar="sigma"),
                lf.prior("lkj(2)", cls="cor"),
            ],
            draws=500,
            tune=500,
            chains=2,
            random_seed=2,
            progressbar=False,
        )
    summary = {row["parameter"]: row for row in ref["posterior_summary"]}
    fixef = fit.fixef()
    vc = fit.varcorr().set_index(["var1", "var2"])
    ours = {
        "b_Intercept": fixef.loc["Intercept"],
        "b_x": fixef.loc["x"],
        "b_sigma_Intercept": fixef.loc["sigma_Intercept"],
        "b_sigma_z": fixef.loc["sigma_z"],
        "sd_g__Intercept": vc.loc[("Intercept", None)],
        "sd_g__sigma_Intercept": vc.loc[("sigma_Intercept", None)],
        "cor_g__Intercept__sigma_Intercept": vc.loc[("Intercept", "sigma_Intercept")],
    }
    for name, row in ours.items():
        theirs = summary[name]
        # posterior means within 0.3 posterior sd of brms' (Monte Carlo error of both fits
        # with a few hundred effective draws is about 0.05-0.1 sd), posterior sds within 25%
        tol = 0.3 * theirs["Est.Error"]
        assert abs(row["estimate"] - theirs["Estimate"]) < tol, (name, row["estimate"], theirs)
        assert row["sd"] == pytest.approx(theirs["Est.Error"], rel=0.25), name
