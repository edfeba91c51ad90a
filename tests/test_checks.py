"""Prior predictive checks: prior draws only (no MCMC); the lecture's ozone priors, full data."""

from __future__ import annotations

import warnings

import bambi as bmb
import matplotlib
import numpy as np
import pytest
from scipy import stats

matplotlib.use("Agg")

import lmmformula as lf
from lmmformula.checks import PriorCheck, _predict, prior_check
from lmmformula.errors import DataError, ModelError

NARROW = {
    "Intercept": bmb.Prior("Normal", mu=0, sigma=2),
    "TEMP": bmb.Prior("Normal", mu=0, sigma=0.1),
    "sigma": bmb.Prior("HalfCauchy", beta=1),
}
WIDE = {
    "Intercept": bmb.Prior("Normal", mu=0, sigma=3),
    "TEMP": bmb.Prior("Normal", mu=0, sigma=1),
    "sigma": bmb.Prior("HalfCauchy", beta=1),
}


def _model(formula, data, priors=None, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lf.model(formula, data, priors=priors, **kwargs)


@pytest.fixture(scope="module")
def narrow_model(ozone):
    return _model("log_ozone ~ TEMP", ozone, NARROW)


@pytest.fixture(scope="module")
def wide_model(ozone):
    return _model("log_ozone ~ TEMP", ozone, WIDE)


@pytest.fixture(scope="module")
def narrow_check(narrow_model):
    return narrow_model.prior_check(random_seed=1, at={"TEMP": 30})


@pytest.fixture(scope="module")
def wide_check(wide_model):
    return wide_model.prior_check(random_seed=1, at={"TEMP": [0, 30]})


# -- the lecture's verdicts -----------------------------------------------------------------
def test_narrow_lecture_priors_are_not_flagged(narrow_check):
    assert isinstance(narrow_check, PriorCheck)
    assert not narrow_check.flagged
    assert narrow_check.flags == []
    row = narrow_check.table.query("scale == 'log_ozone' and quantity == 'implied mean'")
    assert float(row["outside"].iloc[0]) < 0.02
    assert "No flags" in str(narrow_check)


def test_wide_lecture_priors_are_flagged_and_blamed_on_temp(wide_check):
    assert wide_check.flagged
    first = wide_check.flags[0]
    assert first.startswith("Implied mean of log_ozone")
    assert "prior on TEMP (Normal(mu: 0.0, sigma: 1.0))" in first
    row = wide_check.table.query("scale == 'log_ozone' and quantity == 'implied mean'")
    assert 0.2 < float(row["outside"].iloc[0]) < 0.4
    attr = wide_check.attribution.query("check == 'implied mean'").set_index("parameter")
    # Fixing TEMP removes nearly all the absurd mass; fixing the intercept barely matters.
    assert attr.loc["TEMP", "share_fixed"] < 0.05
    assert attr.loc["Intercept", "share_fixed"] > 0.2
    # the 30 degree day is flagged too, again because of TEMP
    hot = [f for f in wide_check.flags if f.startswith("At TEMP=30")]
    assert len(hot) == 1 and "prior on TEMP" in hot[0]


def test_report_reads_as_a_report(wide_check):
    text = str(wide_check)
    assert text.startswith("Prior predictive check: log_ozone ~ TEMP")
    assert "plausible band" in text and "FLAGGED (" in text
    assert "Bambi centres the predictors" in text and "TEMP = 18.7" in text
    assert "q05" in text and "exp(log_ozone)" in text
    assert wide_check._repr_html_().startswith("<pre")


def test_implied_means_by_hand_with_centred_intercept(wide_check, ozone):
    """Bambi's intercept prior is at the mean of TEMP: mean_i = a + b (TEMP_i - mean TEMP)."""
    prior = wide_check.idata["prior"].to_dataset()
    a = prior["Intercept"].values.ravel()
    b = prior["TEMP"].values.ravel()
    x = ozone["TEMP"].to_numpy()
    expected = a[:, None] + b[:, None] * (x - x.mean())
    np.testing.assert_allclose(wide_check.implied_mean, expected, rtol=1e-10, atol=1e-8)
    # Bambi's predict on the un-centred draws reproduces PyMC's means
    params = prior.drop_vars([n for n, v in prior.data_vars.items() if "__obs__" in v.dims])
    again = _predict(wide_check.model.bambi, params)
    np.testing.assert_allclose(again, expected, rtol=1e-10, atol=1e-8)


def test_at_values_match_the_closed_form(wide_check, ozone):
    """At TEMP = t the implied mean is Normal(0, sqrt(3^2 + (t - mean)^2 * 1^2))."""
    xbar = ozone["TEMP"].mean()
    for t in (0, 30):
        draws = wide_check.at_means[f"TEMP={t}"]
        expected_sd = np.sqrt(3**2 + (t - xbar) ** 2)
        assert np.std(draws) == pytest.approx(expected_sd, rel=0.12)
    # and the note gives the lecture's uncentred reading: sd sqrt(9 + 900) ~ 30 at 30 degrees
    note = next(n for n in wide_check.notes if n.startswith("Were the Intercept prior"))
    sd30 = float(note.split("at TEMP=30 a mean with sd ")[1].split(",")[0])
    assert sd30 == pytest.approx(np.sqrt(9 + 900), rel=0.12)


def test_original_scale_rows_are_the_observed_ozone(wide_check, ozone):
    table = wide_check.table
    observed = table.query("scale == 'exp(log_ozone)' and quantity == 'observed'").iloc[0]
    assert observed["q50"] == pytest.approx(np.quantile(ozone["O3"], 0.5), rel=1e-6)
    assert observed["q95"] == pytest.approx(np.quantile(ozone["O3"], 0.95), rel=1e-6)
    assert set(table["quantity"]) >= {
        "observed",
        "implied mean",
        "prior predictive",
        "implied mean at TEMP=30",
    }


def test_plot_shows_prior_predictive_against_observed(wide_check, tmp_path):
    fig = wide_check.plot(ndraws=20)
    fig.savefig(tmp_path / "prior_check.png")
    assert (tmp_path / "prior_check.png").stat().st_size > 0
    axes = fig.axes
    assert len(axes) == 3  # outcome scale, implied means, original scale
    assert len(axes[0].lines) == 21  # 20 replicates + the observed
    assert axes[0].get_xlabel() == "log_ozone"
    labels = axes[1].get_legend_handles_labels()[1]
    assert "implied mean at TEMP=30" in labels and "plausible band" in labels
    assert axes[2].get_xscale() == "log"


# -- thresholds and options -----------------------------------------------------------------
def test_thresholds_can_be_set(narrow_model, wide_model):
    strict = narrow_model.prior_check(random_seed=2, k=0.25)
    assert strict.flagged  # a band of a quarter range is too tight even for the narrow priors
    assert strict.settings["k"] == 0.25
    lenient = wide_model.prior_check(random_seed=2, k=3.0)
    assert not lenient.flagged


def test_log_transform_in_formula_is_detected(ozone):
    small = ozone.iloc[::20]
    check = prior_check(_model("np.log(O3) ~ TEMP", small, NARROW), draws=100, random_seed=3)
    scales = set(check.table["scale"])
    assert scales == {"np.log(O3)", "O3"}
    observed = check.table.query("scale == 'O3' and quantity == 'observed'").iloc[0]
    assert observed["q50"] == pytest.approx(np.median(small["O3"]), rel=1e-6)
    off = prior_check(
        _model("np.log(O3) ~ TEMP", small, NARROW),
        draws=100,
        random_seed=3,
        original_scale=False,
    )
    assert set(off.table["scale"]) == {"np.log(O3)"}
    custom = prior_check(
        _model("log_ozone ~ TEMP", small, NARROW),
        draws=100,
        random_seed=3,
        original_scale=lambda v: 10 * v,
    )
    obs = custom.table.query("quantity == 'observed'")
    assert obs["q50"].iloc[1] == pytest.approx(10 * obs["q50"].iloc[0])


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"draws": 0}, ModelError, "draws must be"),
        ({"tol": 1.5}, ModelError, "tol must be"),
        ({"k": -1}, ModelError, "k must be"),
        ({"original_scale": "sqrt"}, ModelError, "original_scale must be"),
        ({"at": {"PRES": 1000}}, DataError, "'PRES', which is not a predictor"),
    ],
)
def test_bad_options_are_refused(ozone, kwargs, error, pattern):
    m = _model("log_ozone ~ TEMP", ozone.iloc[::50], NARROW)
    with pytest.raises(error, match=pattern):
        prior_check(m, **{"draws": 50, **kwargs})


# -- other families ----------------------------------------------------------------------------
def test_binomial_priors_piling_at_zero_and_one_are_flagged():
    grants = lf.load_dataset("nwo_grants")
    formula = "awards | trials(applications) ~ 0 + gender"
    fine = _model(formula, grants, {"gender": bmb.Prior("Normal", mu=0, sigma=2)})
    wide = _model(formula, grants, {"gender": bmb.Prior("Normal", mu=0, sigma=10)})
    ok = fine.prior_check(random_seed=1)
    bad = wide.prior_check(random_seed=1)
    assert not ok.flagged
    assert bad.flagged and "prior on gender" in bad.flags[0] and "piles" in bad.flags[0]
    # Normal(0, 10) on the logit scale: P(|z| > logit(0.99) / 10) ~ 65% of probabilities piled
    share = bad.table.query("quantity == 'implied probability'")["outside"].iloc[0]
    assert share == pytest.approx(2 * stats.norm.sf(np.log(99) / 10), abs=0.07)
    observed = bad.table.query("quantity == 'observed'").iloc[0]
    assert observed["q50"] == pytest.approx(
        np.median(grants["awards"] / grants["applications"]), rel=1e-6
    )


def test_poisson_magnitudes_are_judged_on_the_log_scale():
    cbpp = lf.load_dataset("cbpp")
    period = bmb.Prior("Normal", mu=0, sigma=0.5)
    wild = _model(
        "incidence ~ period",
        cbpp,
        {"Intercept": bmb.Prior("Normal", mu=0, sigma=10), "period": period},
        family="poisson",
    )
    tame = _model(
        "incidence ~ period",
        cbpp,
        {"Intercept": bmb.Prior("Normal", mu=1, sigma=0.5), "period": period},
        family="poisson",
    )
    bad = wild.prior_check(random_seed=1)
    good = tame.prior_check(random_seed=1)
    assert bad.kind == "positive" and bad.flagged and "prior on Intercept" in bad.flags[0]
    assert not good.flagged
    assert bad.band[0] == 0.0  # the counts include zeros: no lower edge
    assert bad.band[1] == pytest.approx(np.exp(2 * np.log(cbpp["incidence"].max())))
