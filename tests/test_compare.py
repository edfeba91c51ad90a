"""PSIS-LOO comparison: the lecture's four ozone models on a small subsample, fitted once."""

from __future__ import annotations

import warnings

import arviz as az
import bambi as bmb
import matplotlib
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

matplotlib.use("Agg")

import lmmformula as lf
from lmmformula.compare import COLUMNS, ParetoKWarning, compare, plot_compare
from lmmformula.errors import FitError, ModelError
from lmmformula.fit import Fit

SETTINGS = {"draws": 200, "tune": 300, "chains": 2, "progressbar": False}

FIXED = {
    "Intercept": bmb.Prior("Normal", mu=0, sigma=2),
    "TEMP": bmb.Prior("Normal", mu=0, sigma=0.1),
    "sigma": bmb.Prior("HalfCauchy", beta=1),
}
TAU = bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfCauchy", beta=1))

FORMULAS = {
    "pooled": ("log_ozone ~ TEMP", {}),
    "intercepts": ("log_ozone ~ TEMP + (1|station)", {"1|station": TAU}),
    "uncorrelated": ("log_ozone ~ TEMP + (TEMP||station)", {"1|station": TAU, "TEMP|station": TAU}),
    "correlated": ("log_ozone ~ TEMP + (TEMP|station)", {"1|station": TAU, "TEMP|station": TAU}),
}


@pytest.fixture(scope="module")
def ozone_small(ozone):
    """3 stations x 60 days spread over the four years."""
    stations = sorted(ozone["station"].unique())[:3]
    parts = [ozone[ozone["station"] == s].iloc[::20].head(60) for s in stations]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def ozone_fits(ozone_small):
    fits = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, (name, (formula, extra)) in enumerate(FORMULAS.items()):
            fits[name] = lf.fit(
                formula,
                ozone_small,
                priors={**FIXED, **extra},
                lkj_eta=2,
                random_seed=100 + i,
                **SETTINGS,
            )
    return fits


@pytest.fixture(scope="module")
def comparison(ozone_fits):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParetoKWarning)
        return compare(ozone_fits)


@pytest.mark.sampling
def test_table_has_the_lecture_columns_best_first(comparison, ozone_fits):
    assert list(comparison.columns) == COLUMNS
    assert list(comparison.columns[:8]) == [
        "rank",
        "elpd_loo",
        "p_loo",
        "elpd_diff",
        "weight",
        "se",
        "dse",
        "warning",
    ]
    assert set(comparison.index) == set(ozone_fits)
    assert list(comparison["rank"]) == [0, 1, 2, 3]
    assert comparison["elpd_loo"].is_monotonic_decreasing
    assert comparison["elpd_diff"].iloc[0] == 0.0
    assert (comparison["elpd_diff"].iloc[1:] <= 0).all()
    np.testing.assert_allclose(
        comparison["elpd_diff"],
        comparison["elpd_loo"] - comparison["elpd_loo"].max(),
        atol=1e-8,
    )
    assert comparison["weight"].sum() == pytest.approx(1.0, abs=1e-6)
    assert (comparison["se"] > 0).all() and comparison["dse"].iloc[0] == 0.0
    assert (comparison["dse"].iloc[1:] > 0).all()


@pytest.mark.sampling
def test_numbers_are_arviz_loo_of_each_fit(comparison, ozone_fits):
    for name, fit in ozone_fits.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = az.loo(fit.idata)
        assert comparison.loc[name, "elpd_loo"] == pytest.approx(ref.elpd, rel=1e-9)
        assert comparison.loc[name, "se"] == pytest.approx(ref.se, rel=1e-9)
        assert comparison.loc[name, "p_loo"] == pytest.approx(ref.p, rel=1e-9)
        n_bad = int(np.sum(np.asarray(ref.pareto_k) > 0.7))
        assert comparison.loc[name, "n_bad_k"] == n_bad
        assert comparison.loc[name, "warning"] == (n_bad > 0)


@pytest.mark.sampling
def test_pooled_elpd_from_a_hand_computed_likelihood(comparison, ozone_fits, ozone_small):
    """PSIS-LOO of Normal(y | a + b x, sigma) evaluated by hand on the pooled fit's draws."""
    post = ozone_fits["pooled"].posterior
    a, b, sigma = (post[v].values[..., None] for v in ("Intercept", "TEMP", "sigma"))
    x = ozone_small["TEMP"].to_numpy()
    y = ozone_small["log_ozone"].to_numpy()
    ll = stats.norm.logpdf(y, a + b * x, sigma)
    tree = xr.DataTree.from_dict(
        {
            "posterior": post[["Intercept", "TEMP", "sigma"]],
            "log_likelihood": xr.Dataset({"log_ozone": (("chain", "draw", "__obs__"), ll)}),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = az.loo(tree)
    assert comparison.loc["pooled", "elpd_loo"] == pytest.approx(ref.elpd, rel=1e-6)
    assert comparison.loc["pooled", "p_loo"] == pytest.approx(ref.p, rel=1e-5)


@pytest.mark.sampling
def test_pareto_k_warning_names_the_models_and_counts(ozone_fits):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = compare(ozone_fits)
    messages = [str(w.message) for w in caught if issubclass(w.category, ParetoKWarning)]
    bad = table[table["n_bad_k"] > 0]
    assert bool(messages) == (len(bad) > 0)
    for name, row in bad.iterrows():
        assert f"{name}: {row['n_bad_k']} of 180 observations with Pareto k > 0.7" in messages[0]


@pytest.mark.sampling
def test_list_of_fits_is_named_by_formula(ozone_fits):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = compare([ozone_fits["pooled"], ozone_fits["intercepts"]])
    assert set(table.index) == {"log_ozone ~ TEMP", "log_ozone ~ TEMP + (1|station)"}


# -- refusals ---------------------------------------------------------------------------------
def _refit_on(fit: Fit, data: pd.DataFrame) -> Fit:
    """The same posterior attached to a model of other rows (no sampling needed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lf.model(fit.model.formula, data)
    return Fit(model, fit.idata, sampler=fit.sampler)


@pytest.mark.sampling
def test_fits_on_other_rows_are_refused(ozone_fits, ozone_small):
    fewer = _refit_on(ozone_fits["pooled"], ozone_small.iloc[:150])
    with pytest.raises(FitError, match=r"different data: 'simple' has 180 .* 'fewer' has 150"):
        compare({"simple": ozone_fits["pooled"], "fewer": fewer})


@pytest.mark.sampling
def test_fits_on_reordered_rows_are_refused(ozone_fits, ozone_small):
    shuffled = ozone_small.sample(frac=1.0, random_state=1).reset_index(drop=True)
    other = _refit_on(ozone_fits["pooled"], shuffled)
    with pytest.raises(FitError, match="same values in a different order"):
        compare({"simple": ozone_fits["pooled"], "shuffled": other})


@pytest.mark.sampling
def test_fits_of_another_response_are_refused(ozone_fits, ozone_small):
    other = _refit_on(ozone_fits["pooled"], ozone_small.assign(log_ozone=ozone_small["TEMP"]))
    with pytest.raises(FitError, match="different response values"):
        compare({"simple": ozone_fits["pooled"], "other": other})


@pytest.mark.sampling
def test_non_fits_and_bad_arguments_are_refused(ozone_fits):
    fit = ozone_fits["pooled"]
    with pytest.raises(FitError, match="'b' is a str, not a fit"):
        compare({"a": fit, "b": "log_ozone ~ TEMP"})
    with pytest.raises(FitError, match="'idata' is a DataTree, not a fit"):
        compare({"a": fit, "idata": fit.idata})
    with pytest.raises(FitError, match="at least two fits"):
        compare({"a": fit})
    with pytest.raises(FitError, match="dict of name -> Fit"):
        compare(fit)
    with pytest.raises(ModelError, match="ic must be 'loo'"):
        compare({"a": fit, "b": ozone_fits["intercepts"]}, ic="waic")
    with pytest.raises(ModelError, match="method must be one of"):
        compare({"a": fit, "b": ozone_fits["intercepts"]}, method="best")


# -- plot -------------------------------------------------------------------------------------
@pytest.mark.sampling
def test_plot_compare_draws_every_model_best_on_top(comparison, tmp_path):
    fig = plot_compare(comparison)
    fig.savefig(tmp_path / "compare.png")
    assert (tmp_path / "compare.png").stat().st_size > 0
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    labels = [t.get_text().rstrip(" *") for t in ax.get_yticklabels()]
    ticks = list(ax.get_yticks())
    top_to_bottom = [label for _, label in sorted(zip(ticks, labels, strict=True), reverse=True)]
    assert top_to_bottom == list(comparison.index)
    points = [line for line in ax.lines if line.get_marker() in ("o", "^")]
    assert sum(len(p.get_xdata()) for p in points) == 4 + 3  # ELPDs and differences
    elpd = next(p for p in points if p.get_marker() == "o")
    assert sorted(elpd.get_xdata()) == pytest.approx(sorted(comparison["elpd_loo"]))
    assert "ELPD" in ax.get_xlabel()
    starred = [t.get_text() for t in ax.get_yticklabels() if t.get_text().endswith("*")]
    assert len(starred) == int(comparison["warning"].sum())


@pytest.mark.sampling
def test_plot_compare_accepts_fits(ozone_fits):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig = plot_compare({"pooled": ozone_fits["pooled"], "slopes": ozone_fits["correlated"]})
    assert len(fig.axes[0].get_yticklabels()) == 2
