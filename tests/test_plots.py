"""Plots of a fit: rendered to PNG, then checked for what they draw (sleepstudy fit of conftest)."""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pymc as pm
import pytest
from matplotlib.collections import LineCollection, PathCollection
from scipy import integrate, stats

matplotlib.use("Agg")

import lmmformula as lf
from lmmformula.errors import FitError
from lmmformula.fit import Fit
from lmmformula.plots import (
    lkj_marginal_pdf,
    plot_correlation,
    plot_ranef,
    plot_shrinkage,
    pp_check,
)

N_SUBJECTS = 18


def _render(fig, tmp_path, name):
    path = tmp_path / f"{name}.png"
    fig.savefig(path)
    assert path.stat().st_size > 1000
    return fig


def _other_model(formula, data, fit, **kwargs):
    """A fit object whose model differs (no sampling: refusals happen before the draws)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lf.model(formula, data, **kwargs)
    return Fit(model, fit.idata, sampler=fit.sampler)


# -- shrinkage --------------------------------------------------------------------------------
@pytest.mark.sampling
def test_shrinkage_points_arrows_and_ellipses(sleep_fit, sleepstudy, tmp_path):
    fig = _render(plot_shrinkage(sleep_fit), tmp_path, "shrinkage")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Intercept (Subject)"
    assert ax.get_ylabel() == "Days slope (Subject)"
    raw, pooled = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(raw.get_offsets()) == len(pooled.get_offsets()) == N_SUBJECTS
    # no pooling: one least-squares line per subject, computed independently here
    post = sleep_fit.posterior
    levels = [str(v) for v in post["Subject__factor_dim"].values]
    by_subject = {
        str(s): np.polyfit(g["Days"], g["Reaction"], 1)[::-1]
        for s, g in sleepstudy.groupby(sleepstudy["Subject"].astype(str))
    }
    expected = np.array([by_subject[str(level)] for level in levels])
    np.testing.assert_allclose(np.asarray(raw.get_offsets()), expected, rtol=1e-8)
    # partial pooling: posterior means of the subject's intercept and slope, from the draws
    coef = np.column_stack(
        [
            (post["Intercept"] + post["1|Subject"]).mean(("chain", "draw")).values,
            (post["Days"] + post["Days|Subject"]).mean(("chain", "draw")).values,
        ]
    )
    np.testing.assert_allclose(np.asarray(pooled.get_offsets()), coef, rtol=1e-8)
    # one arrow per subject, from the raw to the pooled estimate
    arrows = [t for t in ax.texts if hasattr(t, "xyann")]
    assert len(arrows) == N_SUBJECTS
    np.testing.assert_allclose([a.xyann for a in arrows], expected, rtol=1e-8)
    np.testing.assert_allclose([a.xy for a in arrows], coef, rtol=1e-8)
    # partial pooling pulls towards the population: smaller spread than no pooling
    assert np.std(coef[:, 1]) < np.std(expected[:, 1])
    # the 50% and 90% ellipses: Mahalanobis radius^2 equals the chi-square(2) quantiles of the
    # normal with the posterior means of the sds and of the correlation (from the draws)
    sd_i = float(post["1|Subject_sigma"].mean())
    sd_d = float(post["Days|Subject_sigma"].mean())
    corr = post["Subject_corr"].sel(
        Subject__block_dim="1|Subject", Subject__block_dim_bis="Days|Subject"
    )
    rho = float(corr.mean())
    cov = np.array([[sd_i**2, rho * sd_i * sd_d], [rho * sd_i * sd_d, sd_d**2]])
    mean = np.array([float(post["Intercept"].mean()), float(post["Days"].mean())])
    contours = [
        line
        for line in ax.lines
        if line.get_label().startswith("population ") and "contour" in line.get_label()
    ]
    assert [c.get_label() for c in contours] == ["population 50% contour", "population 90% contour"]
    for line, level in zip(contours, (0.5, 0.9), strict=True):
        pts = np.column_stack([line.get_xdata(), line.get_ydata()]) - mean
        d2 = np.einsum("ij,jk,ik->i", pts, np.linalg.inv(cov), pts)
        np.testing.assert_allclose(d2, stats.chi2.ppf(level, 2), rtol=1e-6)
    marker = next(line for line in ax.lines if line.get_label() == "population mean")
    np.testing.assert_allclose([marker.get_xdata()[0], marker.get_ydata()[0]], mean)


@pytest.mark.sampling
def test_shrinkage_refuses_what_it_cannot_draw(sleep_fit, sleepstudy):
    intercepts = _other_model("Reaction ~ Days + (1|Subject)", sleepstudy, sleep_fit)
    with pytest.raises(FitError, match="group-level intercept and slope"):
        plot_shrinkage(intercepts)
    gamma = _other_model("Reaction ~ Days + (Days|Subject)", sleepstudy, sleep_fit, family="gamma")
    with pytest.raises(FitError, match="gaussian model with identity link"):
        plot_shrinkage(gamma)
    with pytest.raises(FitError, match="'Days' is not a grouping factor"):
        plot_shrinkage(sleep_fit, factor="Days")
    with pytest.raises(FitError, match="'Reaction' is not a group-level slope"):
        plot_shrinkage(sleep_fit, term="Reaction")


# -- caterpillar ------------------------------------------------------------------------------
@pytest.mark.sampling
def test_ranef_caterpillar_one_panel_per_term_sorted(sleep_fit, tmp_path):
    fig = _render(plot_ranef(sleep_fit), tmp_path, "ranef")
    assert [ax.get_title() for ax in fig.axes] == ["Intercept | Subject", "Days | Subject"]
    post = sleep_fit.posterior
    levels = np.array([str(v) for v in post["Subject__factor_dim"].values])
    for ax, name in zip(fig.axes, ("1|Subject", "Days|Subject"), strict=True):
        # each subject's deviation: posterior mean and 95% interval of its draws
        draws = post[name].transpose("chain", "draw", "Subject__factor_dim").values
        flat = draws.reshape(-1, len(levels))
        means = flat.mean(axis=0)
        lower, upper = np.quantile(flat, [0.025, 0.975], axis=0)
        order = np.argsort(means, kind="stable")
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert labels == list(levels[order])
        (intervals,) = [c for c in ax.collections if isinstance(c, LineCollection)]
        segments = intervals.get_segments()
        assert len(segments) == N_SUBJECTS
        np.testing.assert_allclose([s[0][0] for s in segments], lower[order])
        np.testing.assert_allclose([s[1][0] for s in segments], upper[order])
        np.testing.assert_allclose([s[0][1] for s in segments], np.arange(N_SUBJECTS))
        points = next(line for line in ax.lines if line.get_marker() == "o")
        np.testing.assert_allclose(points.get_xdata(), means[order], rtol=1e-10)
    with pytest.raises(FitError, match="'Days' is not a grouping factor"):
        plot_ranef(sleep_fit, factor="Days")


# -- correlations -----------------------------------------------------------------------------
def test_lkj_marginal_is_the_known_beta():
    grid = np.linspace(-1, 1, 5)
    np.testing.assert_allclose(lkj_marginal_pdf(grid, eta=1.0, d=2), 0.5)  # uniform
    for eta, d in ((2.0, 2), (2.0, 3), (0.8, 4)):
        total = integrate.quad(lkj_marginal_pdf, -1, 1, args=(eta, d))[0]
        var = integrate.quad(
            lambda r, e, n: r**2 * lkj_marginal_pdf(r, e, n), -1, 1, args=(eta, d)
        )[0]
        assert total == pytest.approx(1.0, abs=1e-6)
        assert var == pytest.approx(1.0 / (2 * eta + d - 1), rel=1e-6)  # Var r_ij of LKJ
    # and against PyMC's own LKJ draws for a 3 x 3 block
    draws = np.asarray(pm.draw(pm.LKJCorr.dist(n=3, eta=2.0), draws=4000, random_seed=1))
    if draws.ndim == 3 and np.allclose(np.triu(draws[0], 1), 0):  # PyMC 6: Cholesky factors
        draws = np.einsum("nij,nkj->nik", draws, draws)
    r = draws[:, 0, 1]
    assert np.var(r) == pytest.approx(1.0 / (2 * 2.0 + 3 - 1), rel=0.1)
    hist, edges = np.histogram(r, bins=10, range=(-1, 1), density=True)
    centers = 0.5 * (edges[1:] + edges[:-1])
    np.testing.assert_allclose(hist, lkj_marginal_pdf(centers, 2.0, 3), atol=0.06)


@pytest.mark.sampling
def test_correlation_posterior_against_lkj_prior(sleep_fit, tmp_path):
    fig = _render(plot_correlation(sleep_fit), tmp_path, "correlation")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_title() == "cor(Intercept, Days) | Subject"
    assert len(ax.patches) == 40  # histogram bars
    prior = next(line for line in ax.lines if line.get_label().startswith("LKJ("))
    assert prior.get_label() == "LKJ(2) prior"
    np.testing.assert_allclose(
        prior.get_ydata(), lkj_marginal_pdf(prior.get_xdata(), 2.0, 2), rtol=1e-12
    )
    draws = (
        sleep_fit.posterior["Subject_corr"]
        .sel(Subject__block_dim="1|Subject", Subject__block_dim_bis="Days|Subject")
        .values.ravel()
    )
    mean_line = next(line for line in ax.lines if line.get_label() == "posterior mean")
    assert mean_line.get_xdata()[0] == pytest.approx(draws.mean(), rel=1e-12)
    heights = np.array([p.get_height() for p in ax.patches])
    expected, _ = np.histogram(draws, bins=np.linspace(-1, 1, 41), density=True)
    np.testing.assert_allclose(heights, expected, rtol=1e-12)
    assert np.sum(heights * 0.05) == pytest.approx(1.0)  # a density over (-1, 1)


@pytest.mark.sampling
def test_correlation_needs_a_block(sleep_fit, sleepstudy):
    intercepts = _other_model("Reaction ~ Days + (1|Subject)", sleepstudy, sleep_fit)
    with pytest.raises(FitError, match="needs a correlated block"):
        plot_correlation(intercepts)


# -- posterior predictive check ---------------------------------------------------------------
@pytest.mark.sampling
def test_pp_check_draws_replicates_over_the_observed(sleep_fit, sleepstudy, tmp_path):
    fig = _render(sleep_fit.pp_check(ndraws=12, random_seed=3), tmp_path, "pp_check")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.lines) == 13
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["y_rep", "y"]
    assert ax.get_xlabel() == "Reaction"
    observed = ax.lines[-1]
    grid = observed.get_xdata()
    expected = stats.gaussian_kde(sleepstudy["Reaction"].to_numpy())(grid)
    np.testing.assert_allclose(observed.get_ydata(), expected, rtol=1e-8)
    # seeded: the same replicates again
    again = pp_check(sleep_fit, ndraws=12, random_seed=3).axes[0].lines
    np.testing.assert_allclose(again[0].get_ydata(), ax.lines[0].get_ydata())
    # replicates come from the posterior: their spread matches the data's
    means = [
        np.trapezoid(line.get_xdata() * line.get_ydata(), line.get_xdata())
        for line in ax.lines[:-1]
    ]
    assert np.mean(means) == pytest.approx(sleepstudy["Reaction"].mean(), rel=0.05)
    with pytest.raises(FitError, match="ndraws must be a positive integer"):
        pp_check(sleep_fit, ndraws=0)
