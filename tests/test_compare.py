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


def hand_log_likelihood(post, data: pd.DataFrame, x: str, y: str, group: str) -> np.ndarray:
    """Pointwise gaussian log-likelihood (chain, draw, obs) written from the model's equation,
    ``y_i ~ Normal(a + b x_i + u0[g_i] + u1[g_i] x_i, sigma)``, with the draws read by Bambi's
    names (terms the model lacks are 0)."""
    xs = data[x].to_numpy(dtype=float)
    ys = data[y].to_numpy(dtype=float)
    mu = post["Intercept"].values[..., None] + post[x].values[..., None] * xs
    for name, column in ((f"1|{group}", 1.0), (f"{x}|{group}", xs)):
        if name in post:
            da = post[name].transpose("chain", "draw", f"{group}__factor_dim")
            levels = [str(v) for v in da[f"{group}__factor_dim"].values]
            codes = pd.Categorical(data[group].astype(str), categories=levels).codes
            assert (codes >= 0).all()
            mu = mu + da.values[..., codes] * column
    return stats.norm.logpdf(ys, mu, post["sigma"].values[..., None])


def arviz_loo_of(ll: np.ndarray, posterior: xr.Dataset):
    """ArviZ's PSIS-LOO of a log-likelihood array computed here (not by the library); the
    posterior only sets the relative efficiency of the draws."""
    tree = xr.DataTree.from_dict(
        {
            "posterior": posterior,
            "log_likelihood": xr.Dataset({"y": (("chain", "draw", "__obs__"), ll)}),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.loo(tree, pointwise=True)


@pytest.mark.sampling
def test_elpd_from_hand_computed_likelihoods(comparison, ozone_fits, ozone_small):
    """Every model's elpd_loo, p_loo and se, and the differences with their standard errors,
    from PSIS-LOO of a pointwise log-likelihood computed here with numpy and scipy."""
    refs = {}
    for name, fit in ozone_fits.items():
        ll = hand_log_likelihood(fit.posterior, ozone_small, "TEMP", "log_ozone", "station")
        # the library's stored log-likelihood is the same numbers
        got = fit.log_likelihood().transpose("chain", "draw", "__obs__").values
        np.testing.assert_allclose(got, ll, rtol=1e-8, atol=1e-10)
        refs[name] = arviz_loo_of(ll, fit.posterior)
    n = len(ozone_small)
    best = comparison.index[0]
    elpd_i = {name: np.asarray(ref.elpd_i).ravel() for name, ref in refs.items()}
    for name, ref in refs.items():
        row = comparison.loc[name]
        assert row["elpd_loo"] == pytest.approx(elpd_i[name].sum(), rel=1e-9)
        assert row["elpd_loo"] == pytest.approx(ref.elpd, rel=1e-9)
        assert row["p_loo"] == pytest.approx(ref.p, rel=1e-6)
        assert row["se"] == pytest.approx(np.sqrt(n * np.var(elpd_i[name], ddof=1)), rel=1e-6)
        diff = elpd_i[name] - elpd_i[best]
        assert row["elpd_diff"] == pytest.approx(diff.sum(), rel=1e-9, abs=1e-9)
        # ArviZ: se with ddof=1, dse with ddof=0
        assert row["dse"] == pytest.approx(np.sqrt(n * np.var(diff)), rel=1e-6, abs=1e-12)
        n_bad = int(np.sum(np.asarray(ref.pareto_k) > 0.7))
        assert row["n_bad_k"] == n_bad
        assert row["warning"] == (n_bad > 0)
    # best first: the ranking is the hand-computed elpd's
    assert list(comparison.index) == sorted(refs, key=lambda k: -elpd_i[k].sum())


@pytest.mark.sampling
def test_loo_of_a_correlated_fit_from_a_hand_computed_likelihood(sleep_fit, sleepstudy):
    ll = hand_log_likelihood(sleep_fit.posterior, sleepstudy, "Days", "Reaction", "Subject")
    ref = arviz_loo_of(ll, sleep_fit.posterior)
    loo = sleep_fit.loo()
    assert loo.elpd == pytest.approx(ref.elpd, rel=1e-9)
    assert loo.p == pytest.approx(ref.p, rel=1e-6)
    assert loo.se == pytest.approx(ref.se, rel=1e-6)
    np.testing.assert_allclose(np.asarray(loo.pareto_k), np.asarray(ref.pareto_k), rtol=1e-8)


def _heavy_tailed(fit: Fit, k_true: dict[int, float], seed: int) -> tuple[Fit, np.ndarray]:
    """The fit's draws with a log-likelihood in which observation i has importance ratios
    1 / p(y_i | theta) with a Pareto tail of shape ``k_true[i]`` (PSIS then finds k near it)."""
    ll = hand_log_likelihood(fit.posterior, fit.model.data, "TEMP", "log_ozone", "station")
    rng = np.random.default_rng(seed)
    for i, k in k_true.items():
        u = rng.uniform(size=ll.shape[:2])
        ll[..., i] = ll[..., i].mean() + k * np.log(u)  # ratios exp(-ll) = c * u^-k
    idata = fit.idata.copy()
    idata["log_likelihood"] = xr.Dataset({"log_ozone": (("chain", "draw", "__obs__"), ll)})
    return Fit(fit.model, idata, sampler=fit.sampler), ll


@pytest.mark.sampling
def test_bad_pareto_k_is_reported(ozone_fits):
    """A fit with observations of known bad Pareto k: counted, flagged and named."""
    heavy, ll = _heavy_tailed(ozone_fits["pooled"], {3: 0.9, 50: 0.85, 120: 1.3}, seed=4)
    ref = arviz_loo_of(ll, heavy.posterior)
    k = np.asarray(ref.pareto_k).ravel()
    bad = np.flatnonzero(k > 0.7)
    assert {3, 50, 120} <= set(bad), k[[3, 50, 120]]
    assert np.sum((k > 0.7) & (k <= 1.0)) >= 1  # some between 0.7 and 1: the threshold matters
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = compare({"heavy": heavy, "pooled": ozone_fits["pooled"]})
    assert table.loc["heavy", "n_bad_k"] == len(bad)
    assert bool(table.loc["heavy", "warning"])
    good = int(np.sum(np.asarray(ozone_fits["pooled"].loo().pareto_k) > 0.7))
    assert table.loc["pooled", "n_bad_k"] == good
    messages = [str(w.message) for w in caught if issubclass(w.category, ParetoKWarning)]
    assert len(messages) == 1
    assert f"heavy: {len(bad)} of 180 observations with Pareto k > 0.7" in messages[0]
    assert ("pooled:" in messages[0]) == (good > 0)
    # and the plot stars it
    fig = plot_compare(table)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "heavy *" in labels


@pytest.mark.sampling
def test_no_warning_without_bad_pareto_k(ozone_fits):
    """Fits whose log-likelihood varies little between draws have small k: no warning, no
    count, no star."""
    tame = {}
    for name in ("pooled", "intercepts"):
        fit = ozone_fits[name]
        ll = hand_log_likelihood(fit.posterior, fit.model.data, "TEMP", "log_ozone", "station")
        ll = ll.mean(axis=(0, 1)) + 0.05 * (ll - ll.mean(axis=(0, 1)))
        idata = fit.idata.copy()
        idata["log_likelihood"] = xr.Dataset({"log_ozone": (("chain", "draw", "__obs__"), ll)})
        tame[name] = Fit(fit.model, idata, sampler=fit.sampler)
        assert np.max(np.asarray(arviz_loo_of(ll, fit.posterior).pareto_k)) < 0.7
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = compare(tame)
    assert not [w for w in caught if issubclass(w.category, ParetoKWarning)]
    assert list(table["n_bad_k"]) == [0, 0] and not table["warning"].any()
    labels = [t.get_text() for t in plot_compare(table).axes[0].get_yticklabels()]
    assert sorted(labels) == ["intercepts", "pooled"]


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
