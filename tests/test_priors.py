"""brms-style priors: spec strings, class/coef/group targeting, brms' defaults, prior_summary.

Everything here builds models without sampling, except one small Flat-prior smoke fit.
"""

from __future__ import annotations

import doctest
import json
import re
import warnings

import bambi as bmb
import numpy as np
import pandas as pd
import pymc as pm
import pytest

import lmmformula as lf
import lmmformula.priors as priors_module
from lmmformula.api import get_prior
from lmmformula.errors import LmmFormulaError, PriorError
from lmmformula.priors import PriorSpec, apply_priors, prior, prior_summary

NWO_RESPONSE = "awards | trials(applications)"


# -- helpers and fixtures -----------------------------------------------------------------------
def make(formula, data, priors=None, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lf.model(formula, data, priors=priors, **kwargs)


def terms(model):
    parent = model.bambi.parameters[model.bambi.family.likelihood.parent]
    out = dict(parent.common_terms)
    out.update(parent.group_specific_terms)
    if parent.intercept_term is not None:
        out["Intercept"] = parent.intercept_term
    return out


def sd_prior(model, term):
    return terms(model)[term].prior.args["sigma"]


def args_of(p: bmb.Prior) -> dict[str, float]:
    return {k: float(np.asarray(v)) for k, v in p.args.items()}


def assert_prior(p, name, **expected):
    assert isinstance(p, bmb.Prior), p
    assert p.name == name, f"{p} is not {name}"
    assert args_of(p) == pytest.approx(expected), f"{p} args != {expected}"
    assert set(p.args) == set(expected), f"{p} has args {set(p.args)}, expected {set(expected)}"


def row(table, cls, coef="", group=""):
    hit = table[(table["class"] == cls) & (table["coef"] == coef) & (table["group"] == group)]
    assert len(hit) == 1, f"expected one row {cls}/{coef}/{group}, got\n{table}"
    return hit.iloc[0]


def rv_kind(pymc_model, name):
    return type(pymc_model[name].owner.op).__name__


@pytest.fixture(scope="module")
def ozone():
    return lf.load_dataset("beijing_ozone")


@pytest.fixture(scope="module")
def nwo():
    return lf.load_dataset("nwo_grants")


@pytest.fixture(scope="module")
def sleep():
    return lf.load_dataset("sleepstudy")


def test_datasets_have_the_columns_used_here(ozone, nwo, sleep):
    assert {"log_ozone", "TEMP", "PRES", "station"} <= set(ozone.columns)
    assert {"awards", "applications", "gender", "discipline"} <= set(nwo.columns)
    assert {"Reaction", "Days", "Subject"} <= set(sleep.columns)


# -- spec string -> Bambi prior -----------------------------------------------------------------
# on a real-valued parameter (a population-level coefficient)
REAL = [
    ("normal(0, 0.1)", "Normal", {"mu": 0, "sigma": 0.1}),
    ("normal( -1.5 ,2e-1 )", "Normal", {"mu": -1.5, "sigma": 0.2}),
    ("student_t(3, 0, 2.5)", "StudentT", {"nu": 3, "mu": 0, "sigma": 2.5}),
    ("cauchy(0, 1)", "Cauchy", {"alpha": 0, "beta": 1}),
    ("double_exponential(1, 2)", "Laplace", {"mu": 1, "b": 2}),
    ("logistic(0, 1)", "Logistic", {"mu": 0, "s": 1}),
    ("uniform(-1, 1)", "Uniform", {"lower": -1, "upper": 1}),
    ("flat", "Flat", {}),
    ("(flat)", "Flat", {}),
    ("Normal(0, 1)", "Normal", {"mu": 0, "sigma": 1}),
]

# on a positive parameter (sigma): real distributions become their half forms, as in brms
POSITIVE = [
    ("normal(0, 2)", "HalfNormal", {"sigma": 2}),
    ("student_t(3, 0, 2.5)", "HalfStudentT", {"nu": 3, "sigma": 2.5}),
    ("cauchy(0, 5)", "HalfCauchy", {"beta": 5}),
    ("halfnormal(1)", "HalfNormal", {"sigma": 1}),
    ("halfcauchy(1)", "HalfCauchy", {"beta": 1}),
    ("halfstudent_t(4, 1)", "HalfStudentT", {"nu": 4, "sigma": 1}),
    ("exponential(2)", "Exponential", {"lam": 2}),
    ("gamma(2, 0.5)", "Gamma", {"alpha": 2, "beta": 0.5}),
    ("inv_gamma(3, 2)", "InverseGamma", {"alpha": 3, "beta": 2}),
    ("lognormal(0, 1)", "LogNormal", {"mu": 0, "sigma": 1}),
    ("weibull(2, 1)", "Weibull", {"alpha": 2, "beta": 1}),
    ("chi_square(3)", "ChiSquared", {"nu": 3}),
    ("beta(2, 3)", "Beta", {"alpha": 2, "beta": 3}),
    ("uniform(0, 10)", "Uniform", {"lower": 0, "upper": 10}),
    ("flat", "HalfFlat", {}),
]


@pytest.mark.parametrize(("text", "name", "args"), REAL, ids=[r[0] for r in REAL])
def test_spec_on_a_coefficient(ozone, text, name, args):
    model = make("log_ozone ~ TEMP", ozone, [prior(text, cls="b", coef="TEMP")])
    assert_prior(terms(model)["TEMP"].prior, name, **args)


@pytest.mark.parametrize(("text", "name", "args"), POSITIVE, ids=[r[0] for r in POSITIVE])
def test_spec_on_sigma(ozone, text, name, args):
    model = make("log_ozone ~ TEMP", ozone, [prior(text, cls="sigma")])
    assert_prior(model.bambi.parameters["sigma"].prior, name, **args)


@pytest.mark.parametrize(
    ("text", "name", "args"),
    [POSITIVE[0], POSITIVE[1], POSITIVE[2], POSITIVE[6]],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_spec_on_a_group_sd_wraps_it_as_the_sigma_of_a_zero_mean_normal(ozone, text, name, args):
    model = make("log_ozone ~ TEMP + (1|station)", ozone, [prior(text, cls="sd")])
    term_prior = terms(model)["1|station"].prior
    assert term_prior.name == "Normal"
    assert float(term_prior.args["mu"]) == 0
    assert_prior(term_prior.args["sigma"], name, **args)


def test_truncated_prior_on_an_sd_with_a_nonzero_location(sleep):
    model = make(
        "Reaction ~ Days + (Days|Subject)",
        sleep,
        [prior("normal(10, 20) T[0, ]", cls="sd", group="Subject", coef="Days")],
    )
    sd = sd_prior(model, "Days|Subject")
    assert_prior(sd, "Normal", mu=10, sigma=20)
    assert (sd.dist.lower, sd.dist.upper) == (0.0, None)
    point = model.pymc_model.initial_point()
    logps = model.pymc_model.point_logps(point)
    assert np.isfinite(logps["Subject_lkj"])
    # the sd's prior density is scipy's normal(10, 20) truncated to [0, inf)
    from scipy import stats

    from lmmformula._bambi import _sd_dist

    values = np.array([0.5, 10.0, 42.0])
    logp = [pm.logp(_sd_dist([(sd, 1)]), np.array([v])).eval().sum() for v in values]
    truth = stats.truncnorm((0 - 10) / 20, np.inf, loc=10, scale=20)
    np.testing.assert_allclose(logp, truth.logpdf(values), rtol=1e-7)


def test_a_bambi_prior_object_can_be_targeted_brms_style(ozone):
    model = make(
        "log_ozone ~ TEMP + (1|station)",
        ozone,
        [
            prior(bmb.Prior("Normal", mu=0, sigma=0.3), cls="b", coef="TEMP"),
            prior(bmb.Prior("Exponential", lam=2), cls="sd", group="station"),
        ],
    )
    assert_prior(terms(model)["TEMP"].prior, "Normal", mu=0, sigma=0.3)
    assert_prior(sd_prior(model, "1|station"), "Exponential", lam=2)


# -- spec errors (model-independent) ------------------------------------------------------------
SPEC_ERRORS = [
    (("normal(0, 1",), r"cannot read the prior 'normal\(0, 1'.*end with '\)'"),
    (("normal(0,1) x",), r"unexpected 'x' after the arguments"),
    (("norml(0, 1)",), r"unknown distribution 'norml'.*Did you mean 'normal'"),
    (("normal(0)",), r"normal takes 2 arguments \(mu, sigma\), got 1"),
    (("student_t(0, 1)",), r"student_t takes 3 arguments \(nu, mu, sigma\), got 2"),
    (("lkj()",), r"lkj takes 1 argument \(eta\), got 0"),
    (("normal(0, x)",), r"argument 2 \(sigma\) of normal must be a number, got 'x'"),
    (("normal(0, -1)",), r"the sigma of normal must be positive, got -1"),
    (("gamma(0, 1)",), r"the shape of gamma must be positive"),
    (("uniform(2, 1)",), r"needs lower < upper"),
    (("",), r"the prior is empty"),
    (("normal",), r"expected '\(' after 'normal'"),
    (("42",), r"expected a distribution name"),
    (("normal(0,1) T[,]",), r"truncates nothing"),
    (("normal(0,1) T[a,]",), r"truncation bound must be a number, got 'a'"),
    (("lkj(2) T[0,]",), r"lkj cannot be truncated"),
    ((3.0,), r"a prior must be a string"),
    (("lkj(2)", "b"), r"prior for correlation matrices; give it cls='cor'"),
    (("normal(0, 1)", "cor"), r"class 'cor' .* takes only 'lkj\(eta\)'"),
    (("halfcauchy(1)", "sigma", "x"), r"class 'sigma' has no coefficients"),
    (("normal(0, 1)", "b", "", "station"), r"class 'b' has no groups"),
    (("lkj(2)", "cor", "TEMP", "station"), r"class 'cor' has no coefficients"),
    (("halfcauchy(1)", "sd", "TEMP"), r"needs group=\.\.\."),
    (("normal(0, 1)", ""), r"cls must name a parameter class"),
    (("normal(0, 1)", "b", 3), r"coef must be a string"),
]


@pytest.mark.parametrize(("args", "pattern"), SPEC_ERRORS, ids=[str(a) for a, _ in SPEC_ERRORS])
def test_spec_errors(args, pattern):
    with pytest.raises(PriorError, match=re.compile(pattern, re.S)):
        prior(*args)


def test_parse_errors_show_the_string_with_a_caret_under_the_problem():
    with pytest.raises(PriorError) as info:
        prior("normal(0, x)")
    lines = str(info.value).splitlines()
    assert lines[2] == "    normal(0, x)"
    assert lines[3] == "              ^"
    assert isinstance(info.value, LmmFormulaError) and isinstance(info.value, ValueError)


# -- errors that depend on the model -------------------------------------------------------------
MODEL_ERRORS = [
    (
        [prior("normal(0, 1)", coef="TEMPP")],
        r"no population-level coefficient 'TEMPP'; valid: Intercept, TEMP\.",
    ),
    (
        [prior("halfcauchy(1)", cls="sd", group="stationn")],
        r"no grouping factor 'stationn'; valid: station\.",
    ),
    (
        [prior("halfcauchy(1)", cls="sd", group="station", coef="TEMP")],
        r"'station' has no group-level term 'TEMP'; valid: Intercept\.",
    ),
    ([prior("lkj(2)", cls="cor")], r"no correlated blocks.*valid classes: Intercept, b, sd, sigma"),
    (
        [prior("halfcauchy(1)", cls="sigmaa")],
        r"no parameter class 'sigmaa'; valid classes: "
        r"Intercept, b, sd, sigma\.",
    ),
    ([prior("gamma(2, 0.1)", cls="nu")], r"no parameter class 'nu'"),
    ([prior("normal(1, 2)", cls="sd")], r"needs a location of 0, got 1.*'normal\(1, 2\) T\[0, \]'"),
    ([prior("student_t(3, 1, 2)", cls="sigma")], r"needs a location of 0, got 1"),
    ([prior("logistic(0, 1)", cls="sigma")], r"logistic has no half form"),
    ([prior("uniform(-1, 1)", cls="sd")], r"uniform\(lower, upper\) needs lower >= 0"),
    ([prior("normal(0, 1) T[-1, ]", cls="sd")], r"the truncation must keep it there"),
    (
        [prior("normal(0, 1)", coef="TEMP"), prior("normal(0, 2)", coef="TEMP")],
        r"two priors for the same parameters",
    ),
    (["normal(0, 1)"], r"write lf.prior\('normal\(0, 1\)', cls=\.\.\.\)"),
    ([42], r"must be an lf.prior\(\.\.\.\) specification or 'brms'"),
    (42, r"priors must be a dict of Bambi priors"),
]


@pytest.mark.parametrize(("priors", "pattern"), MODEL_ERRORS, ids=[p for _, p in MODEL_ERRORS])
def test_model_errors_name_the_valid_choices(ozone, priors, pattern):
    with pytest.raises(PriorError, match=re.compile(pattern, re.S)):
        make("log_ozone ~ TEMP + (1|station)", ozone, priors)


def test_class_without_members_is_refused(nwo):
    with pytest.raises(PriorError, match=r"no intercept; valid classes: b\."):
        make(f"{NWO_RESPONSE} ~ 0 + gender", nwo, [prior("normal(0, 2)", cls="Intercept")])
    with pytest.raises(PriorError, match=r"no group-level terms"):
        make(f"{NWO_RESPONSE} ~ 0 + gender", nwo, [prior("halfcauchy(1)", cls="sd")])


def test_cor_on_a_group_without_a_block(sleep):
    data = sleep.assign(half=np.where(sleep["Days"] < 5, "early", "late"))
    with pytest.raises(PriorError, match=r"no correlated block on 'half'; blocks: Subject\."):
        make(
            "Reaction ~ Days + (Days|Subject) + (1|half)",
            data,
            [prior("lkj(2)", cls="cor", group="half")],
        )


def test_unit_interval_parameter(nwo):
    family = "zero_inflated_poisson"
    with pytest.raises(PriorError, match=r"psi parameter lies between 0 and 1"):
        make("awards ~ gender", nwo, [prior("normal(0, 1)", cls="psi")], family=family)
    model = make("awards ~ gender", nwo, [prior("beta(2, 2)", cls="psi")], family=family)
    assert_prior(model.bambi.parameters["psi"].prior, "Beta", alpha=2, beta=2)


def test_brms_aux_names_shape_and_phi(nwo):
    model = make(
        "awards ~ gender", nwo, [prior("gamma(0.01, 0.01)", cls="shape")], family="negativebinomial"
    )
    assert_prior(model.bambi.parameters["alpha"].prior, "Gamma", alpha=0.01, beta=0.01)
    data = nwo.assign(rate=(nwo["awards"] + 0.5) / (nwo["applications"] + 1))
    model = make("rate ~ gender", data, [prior("gamma(2, 0.1)", cls="phi")], family="beta")
    assert_prior(model.bambi.parameters["kappa"].prior, "Gamma", alpha=2, beta=0.1)


# -- specificity: the more specific prior wins --------------------------------------------------
def test_coef_prior_overrides_class_prior_in_any_order(ozone):
    specs = [
        prior("normal(0, 1)", cls="b"),
        prior("normal(0, 0.1)", cls="b", coef="TEMP"),
        prior("halfnormal(1)", cls="sd"),
        prior("halfcauchy(0.5)", cls="sd", group="station", coef="TEMP"),
    ]
    for order in (specs, specs[::-1]):
        model = make("log_ozone ~ TEMP + PRES + (TEMP|station)", ozone, order)
        assert_prior(terms(model)["TEMP"].prior, "Normal", mu=0, sigma=0.1)
        assert_prior(terms(model)["PRES"].prior, "Normal", mu=0, sigma=1)
        assert_prior(sd_prior(model, "1|station"), "HalfNormal", sigma=1)
        assert_prior(sd_prior(model, "TEMP|station"), "HalfCauchy", beta=0.5)


def test_group_prior_overrides_class_prior(nwo):
    model = make(
        f"{NWO_RESPONSE} ~ 1 + (1|discipline) + (1|gender)",
        nwo,
        [prior("halfnormal(1)", cls="sd"), prior("halfcauchy(2)", cls="sd", group="gender")],
    )
    assert_prior(sd_prior(model, "1|discipline"), "HalfNormal", sigma=1)
    assert_prior(sd_prior(model, "1|gender"), "HalfCauchy", beta=2)


def test_cor_group_prior_overrides_cor_class_prior(sleep):
    data = sleep.assign(half=np.where(sleep["Days"] < 5, "early", "late"))
    model = make(
        "Reaction ~ Days + (Days|Subject) + (Days|half)",
        data,
        [prior("lkj(3)", cls="cor"), prior("lkj(1.5)", cls="cor", group="Subject")],
    )
    assert model.block_eta == {"Subject": 1.5, "half": 3.0}
    assert model.blocks["Subject"].eta == 1.5
    assert model.blocks["half"].eta == 3.0
    table = model.prior_summary()
    assert row(table, "cor")["prior"] == "lkj(3)"
    assert row(table, "cor", group="Subject")["prior"] == "lkj(1.5)"
    assert row(table, "cor", group="half")["prior"] == "lkj(3)"


def test_b_coef_intercept_overrides_the_intercept_class(ozone):
    model = make(
        "log_ozone ~ TEMP",
        ozone,
        [prior("normal(0, 5)", cls="Intercept"), prior("normal(4, 1)", cls="b", coef="Intercept")],
    )
    assert_prior(terms(model)["Intercept"].prior, "Normal", mu=4, sigma=1)


def test_class_b_leaves_the_intercept_alone_and_others_keep_bambi_defaults(ozone):
    plain = make("log_ozone ~ TEMP", ozone)
    model = make("log_ozone ~ TEMP", ozone, [prior("normal(0, 0.1)", cls="b")])
    assert_prior(terms(model)["TEMP"].prior, "Normal", mu=0, sigma=0.1)
    for name in ("Intercept",):
        assert terms(model)[name].prior.name == terms(plain)[name].prior.name
        assert args_of(terms(model)[name].prior) == pytest.approx(args_of(terms(plain)[name].prior))
    assert args_of(model.bambi.parameters["sigma"].prior) == pytest.approx(
        args_of(plain.bambi.parameters["sigma"].prior)
    )


# -- the reference analyses, each in one call ---------------------------------------------------
def test_nwo_1_gender_only(nwo):
    model = make(f"{NWO_RESPONSE} ~ 0 + gender", nwo, [prior("normal(0, 2)", cls="b")])
    assert model.family == "binomial"
    assert_prior(terms(model)["gender"].prior, "Normal", mu=0, sigma=2)
    table = model.prior_summary()
    assert row(table, "b", "gender")[["prior", "source"]].tolist() == ["normal(0, 2)", "user"]
    assert "Intercept" not in set(table["class"])


@pytest.mark.parametrize(
    "specs",
    [
        [prior("normal(0, 2)", coef="gender"), prior("normal(0, 1)", coef="discipline")],
        [prior("normal(0, 2)"), prior("normal(0, 1)", coef="discipline")],
    ],
    ids=["per-coef", "class-plus-coef"],
)
def test_nwo_2_discipline_effects(nwo, specs):
    model = make(f"{NWO_RESPONSE} ~ 0 + gender + discipline", nwo, specs)
    assert_prior(terms(model)["gender"].prior, "Normal", mu=0, sigma=2)
    assert_prior(terms(model)["discipline"].prior, "Normal", mu=0, sigma=1)
    table = model.prior_summary()
    assert row(table, "b", "discipline")["prior"] == "normal(0, 1)"
    assert row(table, "b", "gender")["prior"] == "normal(0, 2)"


def test_nwo_3_varying_discipline_with_brms_cauchy_spelling(nwo):
    model = make(
        f"{NWO_RESPONSE} ~ 0 + gender + (1|discipline)",
        nwo,
        [prior("normal(0, 2)", cls="b"), prior("cauchy(0, 5)", cls="sd")],
    )
    assert_prior(sd_prior(model, "1|discipline"), "HalfCauchy", beta=5)
    assert rv_kind(model.pymc_model, "1|discipline_sigma") == "HalfCauchyRV"
    table = model.prior_summary()
    assert row(table, "sd")["prior"] == "halfcauchy(5)"
    assert row(table, "sd", "Intercept", "discipline")[["prior", "source"]].tolist() == [
        "halfcauchy(5)",
        "user",
    ]


OZONE_1 = [
    prior("normal(0, 2)", cls="Intercept"),
    prior("normal(0, 0.1)", cls="b", coef="TEMP"),
    prior("halfcauchy(1)", cls="sigma"),
]


def test_ozone_1_pooled(ozone):
    model = make("log_ozone ~ TEMP", ozone, OZONE_1)
    assert_prior(terms(model)["Intercept"].prior, "Normal", mu=0, sigma=2)
    assert_prior(terms(model)["TEMP"].prior, "Normal", mu=0, sigma=0.1)
    assert_prior(model.bambi.parameters["sigma"].prior, "HalfCauchy", beta=1)
    pymc_model = model.pymc_model
    assert rv_kind(pymc_model, "sigma") == "HalfCauchyRV"
    assert rv_kind(pymc_model, "TEMP") == "NormalRV"
    table = model.prior_summary()
    assert table[["prior", "class", "coef", "source"]].values.tolist() == [
        ["normal(0, 2)", "Intercept", "", "user"],
        ["(auto-scaled)", "b", "", "default"],
        ["normal(0, 0.1)", "b", "TEMP", "user"],
        ["halfcauchy(1)", "sigma", "", "user"],
    ]


def test_ozone_2_varying_intercepts(ozone):
    model = make(
        "log_ozone ~ TEMP + (1|station)",
        ozone,
        [*OZONE_1, prior("halfcauchy(1)", cls="sd", group="station")],
    )
    assert_prior(sd_prior(model, "1|station"), "HalfCauchy", beta=1)
    assert rv_kind(model.pymc_model, "1|station_sigma") == "HalfCauchyRV"
    assert row(model.prior_summary(), "sd", "Intercept", "station")["prior"] == "halfcauchy(1)"


def test_ozone_3_uncorrelated_slopes(ozone):
    model = make(
        "log_ozone ~ TEMP + (TEMP||station)", ozone, [*OZONE_1, prior("halfcauchy(1)", cls="sd")]
    )
    assert rv_kind(model.pymc_model, "TEMP|station_sigma") == "HalfCauchyRV"
    assert "station_lkj" not in model.pymc_model.named_vars
    assert "cor" not in set(model.prior_summary()["class"])


def test_ozone_4_correlated_block(ozone):
    model = make(
        "log_ozone ~ TEMP + (TEMP|station)",
        ozone,
        [*OZONE_1, prior("lkj(2)", cls="cor"), prior("halfcauchy(1)", cls="sd")],
        lkj_eta=5.0,  # the cor prior wins over the model-wide shape
    )
    assert model.blocks["station"].eta == 2.0
    for term in ("1|station", "TEMP|station"):
        assert_prior(sd_prior(model, term), "HalfCauchy", beta=1)
    names = model.pymc_model.named_vars
    assert "station_lkj" in names and "station_corr" in names
    table = model.prior_summary()
    assert row(table, "cor", group="station")[["prior", "source"]].tolist() == ["lkj(2)", "user"]
    assert row(table, "sd", "TEMP", "station")["prior"] == "halfcauchy(1)"


# -- prior_summary and get_prior ----------------------------------------------------------------
def test_summary_defaults_are_read_from_the_bambi_terms(ozone):
    model = make("log_ozone ~ TEMP + (TEMP|station)", ozone)
    table = prior_summary(model)
    assert list(table.columns) == ["prior", "class", "coef", "group", "dpar", "source", "basis"]
    assert set(table["source"]) == {"default"}
    assert [tuple(r) for r in table[["class", "coef", "group"]].values] == [
        ("Intercept", "", ""),
        ("b", "", ""),
        ("b", "TEMP", ""),
        ("sd", "", ""),
        ("sd", "", "station"),
        ("sd", "Intercept", "station"),
        ("sd", "TEMP", "station"),
        ("cor", "", ""),
        ("cor", "", "station"),
        ("sigma", "", ""),
    ]

    def g4(x):
        return np.format_float_positional(float(f"{float(x):.4g}"), trim="-")

    intercept = terms(model)["Intercept"].prior.args
    assert row(table, "Intercept")["prior"] == (
        f"normal({g4(intercept['mu'])}, {g4(intercept['sigma'])})"
    )
    temp_sd = sd_prior(model, "TEMP|station").args["sigma"]
    assert row(table, "sd", "TEMP", "station")["prior"] == f"halfnormal({g4(temp_sd)})"
    assert row(table, "cor", group="station")["prior"] == "lkj(2)"
    sigma = model.bambi.parameters["sigma"].prior.args
    assert row(table, "sigma")["prior"] == f"exponential({g4(1 / sigma['scale'])})"
    assert row(table, "b")["prior"] == priors_module.AUTO_SCALED
    # it reads the Bambi model: a prior changed there shows up
    model.bambi.set_priors(priors={"TEMP": bmb.Prior("Normal", mu=0, sigma=7)})
    assert row(prior_summary(model), "b", "TEMP")["prior"] == "normal(0, 7)"


def test_model_method_and_get_prior_give_the_same_table(ozone):
    specs = [prior("normal(0, 0.1)", coef="TEMP")]
    formula = "log_ozone ~ TEMP + (1|station)"
    via_model = make(formula, ozone, specs).prior_summary()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        via_get = get_prior(formula, ozone, priors=specs)
    pd.testing.assert_frame_equal(via_model, via_get)
    assert row(via_get, "b", "TEMP")["source"] == "user"


def test_summary_marks_bambi_dict_priors_as_user(ozone):
    model = make(
        "log_ozone ~ TEMP + (1|station)",
        ozone,
        {
            "TEMP": bmb.Prior("Normal", mu=0, sigma=0.1),
            "1|station": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfCauchy", beta=1)),
        },
    )
    table = model.prior_summary()
    assert row(table, "b", "TEMP")[["prior", "source"]].tolist() == ["normal(0, 0.1)", "user"]
    assert row(table, "sd", "Intercept", "station")[["prior", "source"]].tolist() == [
        "halfcauchy(1)",
        "user",
    ]
    assert row(table, "Intercept")["source"] == "default"


def test_lkj_eta_argument_shows_as_the_users(sleep):
    table = make("Reaction ~ Days + (Days|Subject)", sleep, lkj_eta=3).prior_summary()
    assert row(table, "cor")[["prior", "source"]].tolist() == ["lkj(3)", "user"]
    assert row(table, "cor", group="Subject")[["prior", "source"]].tolist() == ["lkj(3)", "user"]


RENDER = [
    (bmb.Prior("HalfNormal", sigma=2.25), "halfnormal(2.25)"),
    (bmb.Prior("HalfNormal", sigma=2.2500001), "halfnormal(2.25)"),
    (bmb.Prior("Normal", mu=4.4651234, sigma=0.000123456), "normal(4.465, 0.0001235)"),
    (bmb.Prior("Normal", mu=0, sigma=12345.6), "normal(0, 12350)"),
    (bmb.Prior("Normal", mu=np.zeros(2), sigma=np.array([1.0, 2.5])), "normal(0, [1, 2.5])"),
    (bmb.Prior("StudentT", nu=3, mu=288.7, sigma=59.3), "student_t(3, 288.7, 59.3)"),
    (bmb.Prior("StudentT", nu=1, lam=4), "student_t(1, 0, 0.5)"),
    (bmb.Prior("HalfStudentT", nu=4, sigma=0.85912), "halfstudent_t(4, 0.8591)"),
    (bmb.Prior("Cauchy", alpha=0, beta=1), "cauchy(0, 1)"),
    (bmb.Prior("HalfCauchy", beta=5), "halfcauchy(5)"),
    (bmb.Prior("Gamma", alpha=2, beta=0.1), "gamma(2, 0.1)"),
    (bmb.Prior("Gamma", mu=2, sigma=1), "gamma(4, 2)"),
    (bmb.Prior("Exponential", lam=1), "exponential(1)"),
    (bmb.Prior("Exponential", scale=4), "exponential(0.25)"),
    (bmb.Prior("Flat"), "(flat)"),
    (bmb.Prior("HalfFlat"), "(flat)"),
    (bmb.Prior("Beta", alpha=2, beta=2), "beta(2, 2)"),
    (bmb.Prior("Horseshoe", beta=1), "Horseshoe(beta=1)"),
    (1.5, "constant(1.5)"),
]


@pytest.mark.parametrize(("value", "text"), RENDER, ids=[t for _, t in RENDER])
def test_rendering_in_stan_spelling(value, text):
    assert priors_module._stan_text(value) == text


READ_BACK = [(text, "b", "TEMP") for text, _, _ in REAL] + [
    (text, "sigma", "") for text, _, _ in POSITIVE
]


@pytest.mark.parametrize(("text", "cls", "coef"), READ_BACK, ids=[r[0] for r in READ_BACK])
def test_rendered_text_reads_back_to_the_same_prior(ozone, text, cls, coef):
    def in_force(model):
        return model.bambi.parameters["sigma"].prior if cls == "sigma" else terms(model)[coef].prior

    first = make("log_ozone ~ TEMP", ozone, [prior(text, cls=cls, coef=coef)])
    rendered = row(first.prior_summary(), cls, coef)["prior"]
    again = make("log_ozone ~ TEMP", ozone, [prior(rendered, cls=cls, coef=coef)])
    assert in_force(again).name == in_force(first).name
    assert args_of(in_force(again)) == pytest.approx(args_of(in_force(first)))


# -- priors="brms" ------------------------------------------------------------------------------
def r_mad(x):
    """R's mad(): constant 1.4826 times the median absolute deviation."""
    x = np.asarray(x, dtype=float)
    return 1.4826 * np.median(np.abs(x - np.median(x)))


def test_brms_defaults_on_sleepstudy(sleep):
    y = sleep["Reaction"].to_numpy()
    location = round(float(np.median(y)), 1)
    scale = max(2.5, round(r_mad(y), 1))
    assert (location, scale) == (288.7, 59.3)  # brms: student_t(3, 288.7, 59.3)
    model = make("Reaction ~ Days + (Days|Subject)", sleep, "brms")
    assert_prior(terms(model)["Intercept"].prior, "StudentT", nu=3, mu=location, sigma=scale)
    assert_prior(terms(model)["Days"].prior, "Flat")
    for term in ("1|Subject", "Days|Subject"):
        assert_prior(sd_prior(model, term), "HalfStudentT", nu=3, sigma=scale)
    assert_prior(model.bambi.parameters["sigma"].prior, "HalfStudentT", nu=3, sigma=scale)
    assert model.blocks["Subject"].eta == 1.0
    table = model.prior_summary()
    assert set(table["source"]) == {"default"}
    assert row(table, "Intercept")["prior"] == "student_t(3, 288.7, 59.3)"
    assert row(table, "b")["prior"] == "(flat)"
    assert row(table, "sd")["prior"] == "halfstudent_t(3, 59.3)"
    assert row(table, "cor")["prior"] == "lkj(1)"
    assert rv_kind(model.pymc_model, "Days") == "FlatRV"


def test_brms_defaults_for_logit_links_use_2_5(nwo):
    model = make(f"{NWO_RESPONSE} ~ 1 + (1|discipline)", nwo, "brms")
    assert_prior(terms(model)["Intercept"].prior, "StudentT", nu=3, mu=0, sigma=2.5)
    assert_prior(sd_prior(model, "1|discipline"), "HalfStudentT", nu=3, sigma=2.5)
    no_intercept = make(f"{NWO_RESPONSE} ~ 0 + gender", nwo, "brms")
    assert_prior(terms(no_intercept)["gender"].prior, "Flat")


def test_brms_defaults_for_a_log_link_scale_on_log_y_minus_the_offset(nwo):
    y = nwo["awards"].to_numpy(dtype=float)
    log_y = np.log(np.where(y == 0, 0.1, y))
    scale = max(2.5, round(r_mad(log_y), 1))
    location = round(float(np.median(log_y)), 1)
    model = make("awards ~ 1 + (1|discipline)", nwo, "brms", family="poisson")
    assert_prior(terms(model)["Intercept"].prior, "StudentT", nu=3, mu=location, sigma=scale)
    offset = make("awards ~ 1 + offset(log(applications))", nwo, "brms", family="poisson")
    shifted = location - float(np.mean(np.log(nwo["applications"])))
    assert_prior(terms(offset)["Intercept"].prior, "StudentT", nu=3, mu=shifted, sigma=scale)


def test_brms_sigma_is_scaled_on_y_and_the_rest_on_the_link_scale(sleep):
    y = sleep["Reaction"].to_numpy()
    link_scale = max(2.5, round(r_mad(np.log(y)), 1))
    sigma_scale = max(2.5, round(r_mad(y), 1))
    assert link_scale != sigma_scale
    model = make("Reaction ~ Days + (1|Subject)", sleep, "brms", link="log")
    assert_prior(
        terms(model)["Intercept"].prior,
        "StudentT",
        nu=3,
        mu=round(float(np.median(np.log(y))), 1),
        sigma=link_scale,
    )
    assert_prior(sd_prior(model, "1|Subject"), "HalfStudentT", nu=3, sigma=link_scale)
    assert_prior(model.bambi.parameters["sigma"].prior, "HalfStudentT", nu=3, sigma=sigma_scale)


def test_brms_family_parameters(sleep, nwo):
    model = make("Reaction ~ Days", sleep, "brms", family="t")
    nu = model.bambi.parameters["nu"].prior
    assert_prior(nu, "Gamma", alpha=2, beta=0.1)
    assert nu.dist.lower == 1.0  # brms: lb = 1
    assert row(model.prior_summary(), "nu")["prior"] == "gamma(2, 0.1) T[1, ]"
    assert rv_kind(model.pymc_model, "nu") == "TruncatedRV"
    negbin = make("awards ~ gender", nwo, "brms", family="negativebinomial")
    assert_prior(negbin.bambi.parameters["alpha"].prior, "Gamma", alpha=0.01, beta=0.01)


def test_user_priors_override_brms_defaults(sleep):
    model = make(
        "Reaction ~ Days + (Days|Subject)", sleep, ["brms", prior("normal(0, 10)", coef="Days")]
    )
    assert_prior(terms(model)["Days"].prior, "Normal", mu=0, sigma=10)
    table = model.prior_summary()
    assert row(table, "b", "Days")["source"] == "user"
    assert row(table, "b")[["prior", "source"]].tolist() == ["(flat)", "default"]


@pytest.mark.sampling
def test_flat_brms_priors_sample(sleep):
    model = make("Reaction ~ Days", sleep, "brms")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = pm.sample(
            draws=200,
            tune=300,
            chains=1,
            random_seed=11,
            progressbar=False,
            compute_convergence_checks=False,
            model=model.pymc_model,
        )
    days = idata.posterior["Days"].values
    assert np.all(np.isfinite(days))
    # flat priors: the posterior of the slope centres on least squares (10.47) with a spread
    # near its standard error (1.24); the bound on the mean is about 3 Monte Carlo errors
    slope, intercept = np.polyfit(sleep["Days"], sleep["Reaction"], 1)
    resid = sleep["Reaction"] - (intercept + slope * sleep["Days"])
    sxx = ((sleep["Days"] - sleep["Days"].mean()) ** 2).sum()
    se = np.sqrt((resid**2).sum() / (len(sleep) - 2) / sxx)
    assert abs(days.mean() - slope) < 0.3 * se
    assert days.std() == pytest.approx(se, rel=0.25)


# -- PriorSpec ----------------------------------------------------------------------------------
ROUND_TRIP = [
    prior("normal(0, 0.1)", cls="b", coef="TEMP"),
    prior("halfcauchy(1)", cls="sd", group="station"),
    prior("cauchy(0, 5)", cls="sd", group="station", coef="Intercept"),
    prior("lkj(2)", cls="cor"),
    prior("normal(1, 2) T[0, ]", cls="sd", group="g", coef="x"),
    prior(bmb.Prior("Normal", mu=0, sigma=np.array([1.0, 2.0])), cls="b", coef="gender"),
    prior(bmb.Prior("HalfNormal", sigma=bmb.Prior("Exponential", lam=1)), cls="sigma"),
]


@pytest.mark.parametrize("spec", ROUND_TRIP, ids=str)
def test_prior_spec_round_trips_through_json(spec):
    stored = json.loads(json.dumps(spec.to_dict()))
    back = PriorSpec.from_dict(stored)
    assert back == spec and hash(back) == hash(spec)
    assert back.to_dict() == spec.to_dict()


def test_prior_spec_through_the_io_codec():
    from lmmformula.io import _decode_prior, _encode_prior

    specs = ROUND_TRIP[:3]
    assert _decode_prior(json.loads(json.dumps(_encode_prior(specs)))) == specs


def test_prior_spec_identity_and_text():
    spec = prior("normal(0, 0.1)", cls="b", coef="TEMP")
    assert spec == PriorSpec("normal(0, 0.1)", cls="b", coef="TEMP")
    assert spec != prior("normal(0, 0.1)", cls="b")
    assert str(spec) == "prior('normal(0, 0.1)', cls='b', coef='TEMP')"
    assert repr(spec) == "PriorSpec(prior='normal(0, 0.1)', cls='b', coef='TEMP', group='')"
    assert spec.to_dict() == {"prior": "normal(0, 0.1)", "class": "b", "coef": "TEMP", "group": ""}
    assert prior("flat").cls == "b"


def test_prior_spec_storage_errors():
    with pytest.raises(PriorError, match="not a stored prior specification"):
        PriorSpec.from_dict({"class": "b"})
    custom = bmb.Prior("Normal", mu=0, sigma=1, dist=lambda *a, **k: None)
    with pytest.raises(PriorError, match="custom 'dist' and cannot be stored"):
        prior(custom).to_dict()


# -- apply_priors directly ----------------------------------------------------------------------
def test_apply_priors_after_construction_updates_blocks_and_summary(sleep):
    model = make("Reaction ~ Days + (Days|Subject)", sleep)
    apply_priors(
        model, [prior("lkj(1)", cls="cor", group="Subject"), prior("normal(0, 5)", coef="Days")]
    )
    assert model.blocks["Subject"].eta == 1.0
    assert model.bambi.plan.blocks["Subject"].eta == 1.0
    assert_prior(terms(model)["Days"].prior, "Normal", mu=0, sigma=5)
    assert row(model.prior_summary(), "b", "Days")["source"] == "user"


def test_apply_priors_with_a_bambi_dict(sleep):
    model = make("Reaction ~ Days", sleep)
    apply_priors(model, {"Days": bmb.Prior("Normal", mu=0, sigma=3)})
    assert_prior(terms(model)["Days"].prior, "Normal", mu=0, sigma=3)


def test_single_spec_is_accepted(sleep):
    model = make("Reaction ~ Days", sleep, prior("normal(0, 3)", coef="Days"))
    assert_prior(terms(model)["Days"].prior, "Normal", mu=0, sigma=3)


# -- docs -----------------------------------------------------------------------------------------
def test_docstring_examples_run(monkeypatch):
    for name in priors_module.__all__:  # the names lmmformula exports
        if not hasattr(lf, name):
            monkeypatch.setattr(lf, name, getattr(priors_module, name), raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = doctest.testmod(priors_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 10 and result.failed == 0
