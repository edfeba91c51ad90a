"""The pieces of ``prior_check`` one at a time, from tables of hand-computed expectations.

No model and no sampling: bands, shares, attribution and the wording of the flags are plain
functions of numbers (``tests/test_checks.py`` runs the whole check on real models).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from lmmformula.checks import (
    Attribution,
    _check_settings,
    _flat_note,
    _log_outcome,
    _quantile_table,
    at_flag_text,
    attribute,
    band_text,
    driver_text,
    interval_text,
    mean_flag_text,
    mean_kind,
    plausible_band,
    predictive_flag_text,
    share_judged,
)
from lmmformula.errors import DataError, ModelError


# -- which rule judges the mean ------------------------------------------------------------
@pytest.mark.parametrize(
    ("link", "family", "kind"),
    [
        ("identity", "gaussian", "real"),
        ("identity", "t", "real"),
        ("log", "gaussian", "positive"),  # a log link makes any mean positive
        ("log", "poisson", "positive"),
        ("identity", "poisson", "positive"),  # the family's mean is positive whatever the link
        ("inverse", "gamma", "positive"),
        ("log", "hurdle_gamma", "positive"),
        ("identity", "lognormal", "log-location"),
        ("identity", "hurdle_lognormal", "log-location"),
        ("logit", "bernoulli", "probability"),
        ("probit", "binomial", "probability"),
        ("cloglog", "binomial", "probability"),
        ("logit", "beta", "probability"),
    ],
)
def test_mean_kind(link, family, kind):
    assert mean_kind(link, family) == kind


# -- the plausible band --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("observed", "kind", "k", "band", "predictive_band"),
    [
        # range [1, 5], width 4, widened by 1 width each side
        ([1, 3, 5], "real", 1.0, (-3.0, 9.0), (-3.0, 9.0)),
        ([1, 3, 5], "real", 0.5, (-1.0, 7.0), (-1.0, 7.0)),
        # a constant outcome: the width is max(|value|, 1)
        ([2, 2], "real", 1.0, (0.0, 4.0), (0.0, 4.0)),
        ([0.5, 0.5], "real", 2.0, (-1.5, 2.5), (-1.5, 2.5)),
        # log scale: [log 1, log 100] widened by log 100 each side -> [0.01, 10^4]
        ([1, 10, 100], "positive", 1.0, (0.01, 1e4), (-np.inf, 1e4)),
        # zeros in the data: no lower edge; width at least log 10: 20 * 10 = 200
        ([0, 2, 20], "positive", 1.0, (0.0, 200.0), (-np.inf, 200.0)),
        # [5, 6] is narrower than a factor of 10: half of log 10 each side
        ([5, 6], "positive", 0.5, (5 / math.sqrt(10), 6 * math.sqrt(10)), None),
        ([0.1, 0.9], "probability", 1.0, (0.0, 1.0), (0.0, 1.0)),
    ],
)
def test_plausible_band(observed, kind, k, band, predictive_band):
    got, got_predictive = plausible_band(np.asarray(observed, dtype=float), kind, k)
    np.testing.assert_allclose(got, band, rtol=1e-12)
    if predictive_band is not None:
        np.testing.assert_allclose(got_predictive, predictive_band, rtol=1e-12)


def test_plausible_band_needs_a_positive_value():
    with pytest.raises(DataError, match="'count' has no positive values"):
        plausible_band(np.zeros(3), "positive", 1.0, "count")


# -- the share the rule judges -------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "kind", "band", "share"),
    [
        ([-5, 0, 5, 10], "real", (-3, 9), 0.5),
        ([-3, 9], "real", (-3, 9), 0.0),  # the edges are inside
        ([-5, 0, 5, 10, np.nan], "real", (-3, 9), 0.5),  # missing values do not count
        ([1, 2, 1e6], "positive", (0.01, 1e4), 1 / 3),
        # probabilities: within 0.01 of 0 or 1, whatever the band
        ([0.001, 0.5, 0.995, 0.2], "probability", (0, 1), 0.5),
        ([0.01, 0.99], "probability", (0, 1), 0.0),
        ([np.nan, np.nan], "real", (0, 1), np.nan),
    ],
)
def test_share_judged(values, kind, band, share):
    got = share_judged(np.asarray(values, dtype=float), kind, band, p_edge=0.01)
    if np.isnan(share):
        assert np.isnan(got)
    else:
        assert got == pytest.approx(share)


# -- attribution ---------------------------------------------------------------------------
def _draws(**columns: list[float]) -> xr.Dataset:
    return xr.Dataset(
        {k: (("chain", "draw"), np.asarray([v], dtype=float)) for k, v in columns.items()}
    )


def _share_above_5(ds: xr.Dataset) -> float:
    return float(np.mean((ds["a"] + ds["b"]).values > 5))


def test_attribute_finds_the_parameter_whose_fixing_lowers_the_share_most():
    # a + b = [-1, 1, 2, 13]: 1 of 4 above 5. a at its median 0: b alone, none above 5;
    # b at its median 1.5: a + 1.5 = [1.5, 1.5, 1.5, 11.5], still 1 of 4.
    prior = _draws(a=[0, 0, 0, 10], b=[-1, 1, 2, 3])
    found = attribute("implied mean", prior, ["a", "b"], _share_above_5, {"a": "N(0, 10)"})
    assert (found.driver, found.share, found.share_fixed) == ("a", 0.25, 0.0)
    assert found.rows == [
        {"check": "implied mean", "parameter": "a", "prior": "N(0, 10)", "share": 0.25,
         "share_fixed": 0.0},
        {"check": "implied mean", "parameter": "b", "prior": "?", "share": 0.25,
         "share_fixed": 0.25},
    ]  # fmt: skip


def test_attribute_names_no_driver_when_no_parameter_lowers_the_share():
    # a + b = [6, 7, 8, 9]: all above 5; a at its median 7.5 or b at 0 leaves all above 5
    prior = _draws(a=[6, 7, 8, 9], b=[0, 0, 0, 0])
    found = attribute("prior predictive", prior, ["a", "b"], _share_above_5, {})
    assert found.driver is None
    assert found.share == found.share_fixed == 1.0
    assert [r["share_fixed"] for r in found.rows] == [1.0, 1.0]
    assert attribute("x", prior, [], _share_above_5, {}) == Attribution(None, 1.0, 1.0, [])


def test_attribute_keeps_the_first_of_equal_drivers():
    # a + b = [15, 15, 5, 5]: half above 5; a at its median 5 raises it to all (10 each),
    # b is constant: neither lowers it
    prior = _draws(a=[10, 10, 0, 0], b=[5, 5, 5, 5])
    found = attribute("x", prior, ["b", "a"], _share_above_5, {})
    assert (found.driver, found.share, found.share_fixed) == (None, 0.5, 0.5)
    assert [r["share_fixed"] for r in found.rows] == [0.5, 1.0]
    # a + b = 10 everywhere: all above 5; either at its median 5 leaves half: the first wins
    prior = _draws(a=[10, 10, 0, 0], b=[0, 0, 10, 10])
    found = attribute("x", prior, ["b", "a"], _share_above_5, {})
    assert (found.driver, found.share, found.share_fixed) == ("b", 1.0, 0.5)


# -- the wording ---------------------------------------------------------------------------
PRIORS = {"TEMP": "Normal(0, 1)", "1|station": "Normal(0, sd), sd ~ HalfNormal(2)"}


@pytest.mark.parametrize(
    ("found", "text"),
    [
        (
            Attribution("TEMP", 0.3, 0.025, []),
            "Driven by the prior on TEMP (Normal(0, 1)): with TEMP fixed at its prior median "
            "the share would be 2.5%.",
        ),
        (
            Attribution("1|station", 0.4, 0.2, []),  # exactly half is enough
            "Driven by the sd prior of the group-level term 1|station (Normal(0, sd), "
            "sd ~ HalfNormal(2)): with 1|station fixed at its prior median the share would be "
            "20.0%.",
        ),
        (
            Attribution("TEMP", 0.3, 0.2, []),
            "No single parameter's prior explains it: fixing any one of them at its prior "
            "median leaves more than half of the share (fixing TEMP lowers it most, to 20.0%); "
            "the priors act jointly.",
        ),
        (
            Attribution(None, 0.3, 0.3, []),
            "No single parameter's prior explains it: fixing any one of them at its prior "
            "median leaves more than half of the share; the priors act jointly.",
        ),
    ],
)
def test_driver_text(found, text):
    assert driver_text(found, PRIORS) == text


@pytest.mark.parametrize(
    ("made", "text"),
    [
        (
            mean_flag_text("y", 0.3, "real", band="B", interval="I", tol=0.1),
            "Implied mean of y: 30% of the prior draws over the observed rows fall outside B, "
            "more than 10%; 90% of them lie in I.",
        ),
        (
            mean_flag_text("y", 0.3, "positive", band="B", interval="I", tol=0.2),
            "Implied mean of y: 30% of the prior draws over the observed rows fall outside B, "
            "more than 20%; 90% of them lie in I.",
        ),
        (
            mean_flag_text("y", 0.654, "probability", band="B", interval="I", p_edge=0.01,
                           p_tol=0.5),
            "Implied probability of y: 65% of the prior draws are below 0.01 or above 0.99 "
            "(more than 50%); the prior piles the outcome at 0 or 1.",
        ),
        (
            predictive_flag_text("y", 0.4, band="B", interval="I", tol_predictive=0.25),
            "Prior predictive draws of y: 40% fall outside B, more than 25%; 90% of them lie "
            "in I.",
        ),
        (
            at_flag_text("TEMP=30", "y", 0.37, band="B", interval="I"),
            "At TEMP=30: 37% of the implied means of y fall outside B; 90% of them lie in I.",
        ),
    ],
)  # fmt: skip
def test_flag_wording(made, text):
    assert made == text


@pytest.mark.parametrize(
    ("band", "observed", "k", "kind", "text"),
    [
        (
            (-3.0, 9.0),
            [1, 3, 5],
            1.0,
            "real",
            "the plausible band [-3, 9] (observed range [1, 5] widened by k = 1 times its width)",
        ),
        (
            (0.01, 1e4),
            [1, 10, 100],
            0.5,
            "positive",
            "the plausible band [0.01, 1e+04] (observed range [1, 100] widened by k = 0.5 times "
            "its width on the log scale)",
        ),
    ],
)
def test_band_text(band, observed, k, kind, text):
    assert band_text(band, np.asarray(observed, dtype=float), k, kind) == text


def test_interval_text_is_the_central_90_percent_on_both_scales():
    values = np.arange(101.0)  # q05 = 5, q95 = 95
    assert interval_text(values) == "[5, 95]"
    # exp(5) = 148.41..., exp(95) = 1.811...e+41
    assert interval_text(values, np.exp, "ozone") == "[5, 95] (ozone: [148, 1.81e+41])"


# -- the pieces around the rule ------------------------------------------------------------
@pytest.mark.parametrize(
    ("draws", "settings", "pattern"),
    [
        (9, {}, "draws must be an integer of at least 10, got 9"),
        (True, {}, "draws must be an integer"),
        (10.0, {}, "draws must be an integer"),
        (10, {"tol": 1}, r"tol must be a number >= 0 and below 1, got 1\."),
        (10, {"tol": -0.1}, "tol must be a number >= 0"),
        (10, {"tol": "0.1"}, "tol must be a number"),
        (10, {"p_edge": 0.5}, "p_edge must be a number >= 0 and below 0.5"),
        (10, {"k": math.inf}, r"k must be a number >= 0, got inf\."),
    ],
)
def test_bad_settings_are_refused(draws, settings, pattern):
    with pytest.raises(ModelError, match=pattern):
        _check_settings(draws, **settings)


def test_good_settings_pass():
    _check_settings(10, k=1e9, tol=0.0, tol_predictive=0.999, p_edge=0.49, p_tol=0.5)
    _check_settings(np.int64(500), k=0)


def test_log_outcome_drops_observed_zeros_and_blanks_predictive_ones():
    observed, predictive, label = _log_outcome(
        np.array([0.0, 1.0, math.e]), np.array([[0.0, 1.0, -2.0, math.e]]), "y"
    )
    np.testing.assert_allclose(observed, [0.0, 1.0])
    np.testing.assert_allclose(predictive, [[np.nan, 0.0, np.nan, 1.0]])
    assert label == "log(y)"


def test_quantile_table_on_both_scales():
    values = np.arange(101.0)  # the q-th quantile is 100 q
    table = _quantile_table(
        [("log_y", None), ("y", np.exp)],
        [("observed", values, np.nan), ("implied mean", values + 1, 0.25)],
    )
    assert list(table["scale"]) == ["log_y", "log_y", "y", "y"]
    assert list(table["quantity"]) == ["observed", "implied mean"] * 2
    np.testing.assert_allclose(table.loc[0, ["q01", "q50", "q99"]].astype(float), [1, 50, 99])
    np.testing.assert_allclose(table.loc[1, ["q05", "q95"]].astype(float), [6, 96])
    np.testing.assert_allclose(table.loc[2, "q50"], math.exp(50))
    assert np.isnan(table.loc[0, "outside"]) and table.loc[3, "outside"] == 0.25


@pytest.mark.parametrize(
    ("flat", "text"),
    [
        (
            {"TEMP": "b TEMP"},
            "Flat (improper) priors cannot be drawn from: b TEMP is held at 0 in the prior "
            "draws (left out of the implied means), so the check judges the other priors only. "
            "Give it a proper prior, e.g. lf.prior('normal(0, 10)', cls='b'), to check it too.",
        ),
        (
            {"TEMP": "b TEMP", "1|g_sigma": "the sd of 1|g"},
            "Flat (improper) priors cannot be drawn from: b TEMP, the sd of 1|g are held at 0 "
            "in the prior draws (left out of the implied means), so the check judges the other "
            "priors only. Give them a proper prior, e.g. lf.prior('normal(0, 10)', cls='b'), "
            "to check them too.",
        ),
    ],
)
def test_flat_note(flat, text):
    assert _flat_note(flat) == text
