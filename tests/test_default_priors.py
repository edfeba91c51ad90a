"""lmmformula's default priors: the rule, the prior check on every shipped data set, flat
priors in the check, a quiet check, and one posterior against glmer.

The lme4/glmer figures come from ``Rscript benchmarks/priors_vs_lme4.R`` (lme4 1.1.31,
R 4.2.2), which writes ``benchmarks/priors_vs_lme4_lme4.csv``; they are copied here so the
tests do not need R.
"""

from __future__ import annotations

import logging
import warnings

import bambi as bmb
import numpy as np
import pytest

import lmmformula as lf
from lmmformula.errors import ModelError

# The standard formula of every shipped data set (README, vignettes, issue 16).
STANDARD = [
    ("sleepstudy", "Reaction ~ Days + (Days|Subject)"),
    ("sleepstudy", "log(Reaction) ~ Days + (Days|Subject)"),
    ("cbpp", "cbind(incidence, size - incidence) ~ period + (1|herd)"),
    ("beijing_ozone", "log_ozone ~ TEMP + (TEMP|station)"),
    ("pastes", "strength ~ 1 + (1|batch/cask)"),
    ("penicillin", "diameter ~ 1 + (1|plate) + (1|sample)"),
    ("nwo_grants", "awards | trials(applications) ~ 0 + gender + (1|discipline)"),
]

# glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial)
GLMER_CBPP = {
    "Intercept": -1.39834,
    "period[2]": -0.991925,
    "period[3]": -1.12822,
    "period[4]": -1.57975,
    "sd_herd": 0.64207,
}


def make(formula, data, priors=None, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lf.model(formula, data, priors=priors, **kwargs)


def parent(model):
    bambi_model = model if isinstance(model, bmb.Model) else model.bambi
    return bambi_model.parameters[bambi_model.family.likelihood.parent]


def term_prior(model, name):
    p = parent(model)
    if name == "Intercept":
        return p.intercept_term.prior
    if name in p.common_terms:
        return p.common_terms[name].prior
    return p.group_specific_terms[name].prior.args["sigma"]


def assert_prior(p, name, **expected):
    assert p.name == name, f"{p} is not {name}"
    assert set(p.args) == set(expected), p
    for key, value in expected.items():
        np.testing.assert_allclose(np.asarray(p.args[key], dtype=float), value, rtol=1e-10)


@pytest.fixture(scope="module")
def data():
    cache = {}

    def load(name):
        if name not in cache:
            cache[name] = lf.load_dataset(name)
        return cache[name]

    return load


# -- the rule, recomputed with numpy ------------------------------------------------------------
def test_gaussian_defaults_follow_the_rule(data):
    sleep = data("sleepstudy")
    y, days = sleep["Reaction"].to_numpy(float), sleep["Days"].to_numpy(float)
    s = np.std(y, ddof=1)
    model = make("Reaction ~ Days + (Days|Subject)", sleep)
    assert_prior(term_prior(model, "Intercept"), "Normal", mu=y.mean(), sigma=2.5 * s)
    assert_prior(term_prior(model, "Days"), "Normal", mu=0, sigma=2.5 * s / np.std(days, ddof=1))
    assert_prior(term_prior(model, "1|Subject"), "HalfNormal", sigma=s)
    # group-level columns are not centred: the slope's sd is scaled by the rms of Days
    assert_prior(
        term_prior(model, "Days|Subject"), "HalfNormal", sigma=s / np.sqrt(np.mean(days**2))
    )
    # exponential(1 / sd(y)), given by its scale (PyMC would fold a rate into the compiled code)
    assert_prior(model.bambi.parameters["sigma"].prior, "Exponential", scale=s)
    assert model.blocks["Subject"].eta is None and model.lkj_eta == 2.0


def test_logit_defaults_follow_the_rule(data):
    cbpp = make("cbind(incidence, size - incidence) ~ period + (1|herd)", data("cbpp"))
    assert_prior(term_prior(cbpp, "Intercept"), "Normal", mu=0, sigma=2.5)
    assert_prior(term_prior(cbpp, "period"), "Normal", mu=np.zeros(3), sigma=np.full(3, 2.5))
    assert_prior(term_prior(cbpp, "1|herd"), "HalfNormal", sigma=1.0)
    # 0 + gender: each column is a level's log-odds, so it takes the intercept's prior
    nwo = make("awards | trials(applications) ~ 0 + gender + (1|discipline)", data("nwo_grants"))
    assert_prior(term_prior(nwo, "gender"), "Normal", mu=np.zeros(2), sigma=np.full(2, 2.5))


def test_cell_means_and_log_link_locations(data):
    sleep = data("sleepstudy").assign(
        half=lambda d: np.where(d["Days"] < 5, "early", "late"),
        x=lambda d: d["Days"] - 4.5,
    )
    y = sleep["Reaction"].to_numpy(float)
    s = np.std(y, ddof=1)
    cells = make("Reaction ~ 0 + half + x + (1|Subject)", sleep)
    assert_prior(term_prior(cells, "half"), "Normal", mu=np.full(2, y.mean()), sigma=2.5 * s)
    assert_prior(term_prior(cells, "x"), "Normal", mu=0, sigma=2.5 * s / sleep["x"].std())
    cbpp = data("cbpp")
    counts = make("incidence ~ period", cbpp, family="poisson")
    location = np.log(cbpp["incidence"].mean())
    # a log link takes 1.5 on the log scale, not 2.5 (measured in docs/priors.md)
    assert_prior(term_prior(counts, "Intercept"), "Normal", mu=location, sigma=1.5)
    assert_prior(term_prior(counts, "period"), "Normal", mu=np.zeros(3), sigma=np.full(3, 1.5))
    # an offset moves the intercept's location by its mean, as brms does
    nwo = data("nwo_grants")
    rates = make("awards ~ gender + offset(np.log(applications))", nwo, family="poisson")
    location = np.log(nwo["awards"].mean()) - np.log(nwo["applications"]).mean()
    assert_prior(term_prior(rates, "Intercept"), "Normal", mu=location, sigma=1.5)


def test_summary_shows_the_defaults_and_their_basis(data):
    sleep = data("sleepstudy")
    s = np.std(sleep["Reaction"], ddof=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = lf.get_prior("Reaction ~ Days + (Days|Subject)", sleep)
    by = {(r["class"], r["coef"], r["group"]): r for _, r in table.iterrows()}
    assert by[("Intercept", "", "")]["prior"] == f"normal(298.5, {2.5 * s:.4g})"
    assert by[("Intercept", "", "")]["basis"].startswith("normal(mean(y), 2.5 sd(y))")
    assert f"sd(y) = {s:.4g}" in by[("sd", "Intercept", "Subject")]["basis"]
    assert by[("sd", "Days", "Subject")]["basis"].startswith("halfnormal(sd(y) / rms(Days))")
    assert by[("cor", "", "Subject")]["basis"].startswith("lmmformula: lkj(2)")
    assert set(table["source"]) == {"default"}
    user = make(
        "Reaction ~ Days + (Days|Subject)", sleep, [lf.prior("normal(0, 5)", coef="Days")]
    ).prior_summary()
    days = user[(user["class"] == "b") & (user["coef"] == "Days")].iloc[0]
    assert (days["source"], days["basis"]) == (
        "user",
        "prior('normal(0, 5)', cls='b', coef='Days')",
    )


def test_bambi_option_keeps_bambis_own_defaults(data):
    """priors="bambi" is the old behaviour: the priors a plain Bambi model gets."""
    sleep = data("sleepstudy")
    ours = make("Reaction ~ Days + (Days|Subject)", sleep, "bambi")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = bmb.Model("Reaction ~ Days + (Days|Subject)", sleep)
    for name in ("Intercept", "Days", "1|Subject", "Days|Subject"):
        mine, theirs = term_prior(ours, name), term_prior(plain, name)
        assert mine.name == theirs.name
        for key in theirs.args:
            np.testing.assert_allclose(mine.args[key], theirs.args[key])
    table = ours.prior_summary()
    assert set(table.loc[table["class"] == "Intercept", "basis"]) == {"Bambi's default"}


def test_a_bambi_dict_gets_defaults_for_what_it_does_not_name(data):
    sleep = data("sleepstudy")
    s = np.std(sleep["Reaction"], ddof=1)
    model = make(
        "Reaction ~ Days + (Days|Subject)",
        sleep,
        {"Days": bmb.Prior("Normal", mu=0, sigma=3)},
    )
    assert_prior(term_prior(model, "Days"), "Normal", mu=0, sigma=3)
    assert_prior(term_prior(model, "1|Subject"), "HalfNormal", sigma=s)
    table = model.prior_summary()
    days = table[(table["class"] == "b") & (table["coef"] == "Days")].iloc[0]
    assert (days["source"], days["basis"]) == ("user", "priors dict")


# -- prior_check on every shipped data set -----------------------------------------------------
@pytest.fixture(scope="module")
def default_checks(data):
    checks = {}
    for name, formula in STANDARD:
        draws = 200 if name == "beijing_ozone" else 500
        checks[formula] = make(formula, data(name)).prior_check(draws=draws, random_seed=1)
    return checks


@pytest.mark.parametrize(("name", "formula"), STANDARD, ids=[f for _, f in STANDARD])
def test_defaults_pass_the_prior_check(default_checks, name, formula):
    check = default_checks[formula]
    assert not check.flagged, check.flags
    share = float(check.table.iloc[1]["outside"])
    # margins measured in docs/priors.md (seeds 1-3): real-valued outcomes at most 6.7% of
    # the 10% allowed (log(Reaction)); probabilities piled at 0/1 at most 16.4% of the 50%
    # allowed (cbpp)
    assert share < (0.25 if check.kind == "probability" else 0.08), share


def test_penicillin_share_matches_a_numpy_simulation(default_checks, data):
    """Draw the default priors of diameter ~ 1 + (1|plate) + (1|sample) with numpy and count
    the implied means outside the band; the check must report the same share."""
    pen = data("penicillin")
    y = pen["diameter"].to_numpy(float)
    s = np.std(y, ddof=1)
    rng = np.random.default_rng(0)
    n = 20_000
    intercept = rng.normal(y.mean(), 2.5 * s, n)
    plate_codes = pen["plate"].astype("category").cat.codes.to_numpy()
    sample_codes = pen["sample"].astype("category").cat.codes.to_numpy()
    plate = np.abs(rng.normal(0, s, n))[:, None] * rng.normal(size=(n, plate_codes.max() + 1))
    sample = np.abs(rng.normal(0, s, n))[:, None] * rng.normal(size=(n, sample_codes.max() + 1))
    mean = intercept[:, None] + plate[:, plate_codes] + sample[:, sample_codes]
    width = y.max() - y.min()
    outside = np.mean((mean < y.min() - width) | (mean > y.max() + width))
    check = default_checks["diameter ~ 1 + (1|plate) + (1|sample)"]
    assert check.band == pytest.approx((y.min() - width, y.max() + width))
    assert float(check.table.iloc[1]["outside"]) == pytest.approx(outside, abs=0.015)


# -- the lecture's priors on the correlated ozone model -----------------------------------------
WIDE = [
    lf.prior("normal(0, 3)", cls="Intercept"),
    lf.prior("normal(0, 1)", cls="b", coef="TEMP"),
    lf.prior("halfcauchy(1)", cls="sigma"),
]
NARROW = [
    lf.prior("normal(0, 2)", cls="Intercept"),
    lf.prior("normal(0, 0.1)", cls="b", coef="TEMP"),
    lf.prior("halfcauchy(1)", cls="sigma"),
]


def test_lecture_priors_on_the_correlated_ozone_model(data):
    ozone = data("beijing_ozone")
    formula = "log_ozone ~ TEMP + (TEMP|station)"
    wide = make(formula, ozone, WIDE).prior_check(draws=200, random_seed=1)
    narrow = make(formula, ozone, NARROW).prior_check(draws=200, random_seed=1)
    assert wide.flagged
    assert "Driven by the prior on TEMP" in wide.flags[0]
    attribution = wide.attribution.query("check == 'implied mean'").set_index("parameter")
    assert attribution.loc["TEMP", "share_fixed"] < 0.05
    assert not narrow.flagged, narrow.flags


# -- flat priors and log lines -------------------------------------------------------------------
def test_brms_flat_b_is_held_at_zero_with_a_note(data):
    sleep = data("sleepstudy")
    check = make("Reaction ~ Days + (Days|Subject)", sleep, "brms").prior_check(
        draws=100, random_seed=1
    )
    prior = check.idata["prior"]
    assert np.all(prior["Days"].values == 0)
    assert np.std(prior["Intercept"].values) > 0
    assert check.priors["Days"] == "flat (improper): held at 0"
    assert "Days" not in set(check.attribution["parameter"])
    assert any("b Days is held at 0" in n for n in check.notes)
    # with Days held at 0 the implied mean is the intercept plus the subject's deviations
    intercept = prior["Intercept"].values.reshape(-1)
    subject = prior["1|Subject"].transpose("chain", "draw", ...).values.reshape(100, -1)
    slope = prior["Days|Subject"].transpose("chain", "draw", ...).values.reshape(100, -1)
    codes = sleep["Subject"].astype("category").cat.codes.to_numpy()
    expected = intercept[:, None] + subject[:, codes] + slope[:, codes] * sleep["Days"].to_numpy()
    np.testing.assert_allclose(check.implied_mean, expected, rtol=1e-8, atol=1e-6)
    assert "Flat (improper) priors" in str(check)


def test_a_flat_sd_inside_a_correlated_block_is_refused_clearly(data):
    model = make(
        "Reaction ~ Days + (Days|Subject)", data("sleepstudy"), ["brms", lf.prior("flat", cls="sd")]
    )
    with pytest.raises(ModelError, match="flat .improper. prior inside a correlated block"):
        model.prior_check(draws=50, random_seed=1)


def test_prior_check_is_quiet_unless_verbose(data, caplog):
    model = make("strength ~ 1 + (1|batch/cask)", data("pastes"))
    before = logging.getLogger("pymc").level
    with caplog.at_level(logging.INFO, logger="pymc"):
        model.prior_check(draws=50, random_seed=1)
        assert not [r for r in caplog.records if "Sampling" in r.getMessage()]
        model.prior_check(draws=50, random_seed=1, verbose=True)
        assert [r for r in caplog.records if "Sampling" in r.getMessage()]
        assert logging.getLogger("pymc").level == logging.INFO  # restored after each check
    assert logging.getLogger("pymc").level == before


# -- one posterior against glmer -----------------------------------------------------------------
@pytest.mark.sampling
def test_cbpp_defaults_agree_with_glmer(data, fast):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lf.fit(
            "cbind(incidence, size - incidence) ~ period + (1|herd)",
            data("cbpp"),
            random_seed=20261127,
            **fast,
        )
    fixef = fit.fixef()["estimate"]
    for term in ("period[2]", "period[3]", "period[4]"):
        assert fixef[term] == pytest.approx(GLMER_CBPP[term], rel=0.10), term
    sd_herd = float(fit.varcorr()["estimate"].iloc[0])
    assert sd_herd == pytest.approx(GLMER_CBPP["sd_herd"], rel=0.20)
