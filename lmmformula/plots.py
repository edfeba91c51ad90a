"""Plots of a fit; every function returns a matplotlib Figure.

* :func:`plot_shrinkage`: no-pooling against partially pooled group estimates, with the
  population ellipse;
* :func:`plot_ranef`: caterpillar plot of the group-level effects;
* :func:`plot_correlation`: posterior of each correlation in a block against its LKJ prior;
* :func:`pp_check`: posterior predictive densities over the observed one (brms' default).

They read the model's terms and the posterior through :class:`lmmformula.Fit`, never the
formula string.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from lmmformula import _bambi
from lmmformula._text import term_label
from lmmformula.errors import FitError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lmmformula.fit import Fit

__all__ = ["plot_correlation", "plot_ranef", "plot_shrinkage", "pp_check"]

ELLIPSE_LEVELS = (0.5, 0.9)


def _factors(fit: Fit) -> list[str]:
    return list(dict.fromkeys(info.factor for info in _bambi.term_info(fit.model.bambi).values()))


def _check_factor(
    fit: Fit, factor: str | None, candidates: list[str], function: str, need: str
) -> list[str]:
    """The factors to draw: the one asked for, or every candidate."""
    if factor is None:
        if not candidates:
            raise FitError(f"{function} needs {need}; the model {fit.model.formula!r} has none.")
        return candidates
    if factor not in candidates:
        raise FitError(
            f"{factor!r} is not a grouping factor with {need}; "
            f"choose from {', '.join(map(repr, candidates)) or 'none'}."
        )
    return [factor]


# -- shrinkage ------------------------------------------------------------------------------
def _ellipse(mean: np.ndarray, cov: np.ndarray, level: float, n: int = 200) -> np.ndarray:
    """Points of the ``level`` contour of a bivariate normal."""
    radius = np.sqrt(stats.chi2.ppf(level, df=2))
    vals, vecs = np.linalg.eigh(cov)
    vals = np.clip(vals, 0.0, None)
    t = np.linspace(0.0, 2.0 * np.pi, n)
    circle = np.stack([np.cos(t), np.sin(t)])
    return (mean[:, None] + vecs @ (np.sqrt(vals)[:, None] * circle) * radius).T


def _no_pooling(x: np.ndarray, y: np.ndarray, groups: np.ndarray, levels: list[str]):
    """Per-group least-squares intercept and slope (NaN where a group cannot fit a line)."""
    out = np.full((len(levels), 2), np.nan)
    for i, level in enumerate(levels):
        rows = groups == level
        xs, ys = x[rows], y[rows]
        if rows.sum() < 2 or np.ptp(xs) == 0:
            continue
        design = np.column_stack([np.ones_like(xs), xs])
        out[i] = np.linalg.lstsq(design, ys, rcond=None)[0]
    return out


def plot_shrinkage(fit: Fit, factor: str | None = None, term: str | None = None) -> Figure:
    """Shrinkage of group-level intercepts and slopes towards the population.

    For each level of the grouping factor, an open circle marks the no-pooling estimate (a
    separate least-squares line of the response on the slope's variable, fitted to that
    group's rows alone; other predictors are ignored) and a filled circle the partially pooled
    estimate (:meth:`Fit.coef`), joined by an arrow. The cross is the population mean
    (:meth:`Fit.fixef`) and the ellipses the 50% and 90% contours of the population
    distribution of (intercept, slope), from the posterior means of the standard deviations
    and of the correlation (0 for terms written with ``||``).

    Parameters
    ----------
    fit : Fit
        A gaussian fit with identity link whose grouping factor has a group-level intercept
        and slope.
    factor : str, optional
        The grouping factor; required when several qualify.
    term : str, optional
        The slope to show when the factor has several (e.g. ``"Days"``); default the first.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; its collections hold the no-pooling and the partially pooled points.

    Examples
    --------
    >>> import lmmformula as lf
    >>> fit = lf.fit("Reaction ~ Days + (Days|Subject)", lf.load_dataset("sleepstudy"))
    ... # doctest: +SKIP
    >>> fig = lf.plot_shrinkage(fit)  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    m = fit.model
    if m.family != "gaussian" or m.link_name != "identity":
        raise FitError(
            "plot_shrinkage needs a gaussian model with identity link (its no-pooling "
            f"estimates are least-squares lines); this fit is {m.family} with "
            f"{m.link_name} link. Use plot_ranef for the group-level effects."
        )
    infos = _bambi.term_info(m.bambi)
    qualifying: dict[str, list[str]] = {}
    for f in _factors(fit):
        cols = [c for info in infos.values() if info.factor == f for c in info.columns]
        pretty = [term_label(c) for c in cols]
        slopes = [p for p in pretty if p != "Intercept" and p in m.data.columns]
        if "Intercept" in pretty and slopes:
            qualifying[f] = slopes
    if factor is None:
        if len(qualifying) != 1:
            _refuse_factor_choice(fit, qualifying)
        factor = next(iter(qualifying))
    elif factor not in qualifying:
        raise FitError(
            f"{factor!r} is not a grouping factor with a group-level intercept and slope; "
            f"choose from {', '.join(map(repr, qualifying)) or 'none'}."
        )
    slopes = qualifying[factor]
    if term is None:
        term = slopes[0]
    elif term not in slopes:
        raise FitError(
            f"{term!r} is not a group-level slope on {factor!r}; choose from "
            f"{', '.join(map(repr, slopes))}."
        )

    levels = _bambi_levels(fit, factor)
    groups = m.data[factor].astype(str).to_numpy() if factor in m.data.columns else None
    if groups is None:  # an interaction factor a:b
        parts = factor.split(":")
        groups = m.data[parts].astype(str).agg(":".join, axis=1).to_numpy()
    x = m.data[term].to_numpy(dtype=float)
    y = np.asarray(_bambi.response_values(m.bambi), dtype=float).ravel()
    raw = _no_pooling(x, y, groups, levels)
    pooled = fit.coef()[factor].loc[levels, ["Intercept", term]].to_numpy(dtype=float)

    fixef = fit.fixef()["estimate"]
    mean = np.array([fixef["Intercept"], fixef[term]], dtype=float)
    varcorr = fit.varcorr()
    rows = varcorr[(varcorr["grp"] == factor) & varcorr["var2"].isna()].set_index("var1")
    sds = np.array([rows.loc["Intercept", "estimate"], rows.loc[term, "estimate"]], dtype=float)
    cor_rows = varcorr[(varcorr["grp"] == factor) & varcorr["var2"].notna()]
    rho = 0.0
    for _, r in cor_rows.iterrows():
        if {r["var1"], r["var2"]} == {"Intercept", term}:
            rho = float(r["estimate"])
    cov = np.array([[sds[0] ** 2, rho * sds[0] * sds[1]], [rho * sds[0] * sds[1], sds[1] ** 2]])

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for level_prob, style in zip(ELLIPSE_LEVELS, ("-", "--"), strict=True):
        pts = _ellipse(mean, cov, level_prob)
        ax.plot(
            pts[:, 0],
            pts[:, 1],
            color="0.45",
            ls=style,
            lw=1,
            label=f"population {level_prob:.0%} contour",
        )
    ok = np.isfinite(raw).all(axis=1)
    for (x0, y0), (x1, y1) in zip(raw[ok], pooled[ok], strict=True):
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops={"arrowstyle": "->", "color": "0.6", "lw": 0.8},
        )
    ax.scatter(
        raw[ok, 0],
        raw[ok, 1],
        facecolors="white",
        edgecolors="C0",
        s=36,
        label="no pooling (per-group least squares)",
        zorder=3,
    )
    ax.scatter(
        pooled[:, 0],
        pooled[:, 1],
        color="C1",
        s=36,
        label="partial pooling (posterior mean)",
        zorder=4,
    )
    ax.plot(
        [mean[0]],
        [mean[1]],
        marker="X",
        color="k",
        ms=10,
        ls="none",
        label="population mean",
        zorder=5,
    )
    ax.set_xlabel(f"Intercept ({factor})")
    ax.set_ylabel(f"{term} slope ({factor})")
    ax.set_title(f"Shrinkage of {factor} intercepts and {term} slopes")
    ax.legend(loc="best", fontsize="x-small")
    fig.tight_layout()
    return fig


def _refuse_factor_choice(fit: Fit, qualifying: dict[str, list[str]]) -> None:
    if not qualifying:
        raise FitError(
            "plot_shrinkage needs a grouping factor with a group-level intercept and slope, "
            f"as in (x|g); the model {fit.model.formula!r} has none."
        )
    raise FitError(
        "several grouping factors have a group-level intercept and slope: "
        f"{', '.join(map(repr, qualifying))}; pass factor=..."
    )


def _bambi_levels(fit: Fit, factor: str) -> list[str]:
    for info in _bambi.term_info(fit.model.bambi).values():
        if info.factor == factor:
            return list(info.levels)
    raise FitError(f"{factor!r} is not a grouping factor of the model.")  # pragma: no cover


# -- caterpillar ----------------------------------------------------------------------------
def plot_ranef(fit: Fit, factor: str | None = None) -> Figure:
    """Caterpillar plot of the group-level effects (:meth:`Fit.ranef` with ``long=True``).

    One panel per grouping factor and term; the levels are sorted by their posterior mean,
    with 95% intervals; the vertical line marks 0 (the population value).

    Parameters
    ----------
    fit : Fit
    factor : str, optional
        Only this grouping factor (default: all).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per (factor, term); each holds one point and one interval per level.

    Examples
    --------
    >>> fig = lf.plot_ranef(fit, "Subject")  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    factors = _check_factor(fit, factor, _factors(fit), "plot_ranef", "group-level effects")
    table = fit.ranef(long=True)
    table = table[table["grpvar"].isin(factors)]
    panels = list(dict.fromkeys(zip(table["grpvar"], table["term"], strict=True)))
    n_levels = max(int(((table["grpvar"] == g) & (table["term"] == t)).sum()) for g, t in panels)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(3.6 * len(panels), 0.22 * n_levels + 1.6), squeeze=False
    )
    for ax, (grp, term) in zip(axes[0], panels, strict=True):
        sub = table[(table["grpvar"] == grp) & (table["term"] == term)].sort_values("condval")
        y = np.arange(len(sub))
        ax.hlines(y, sub["lower"], sub["upper"], color="C0", lw=1.2)
        ax.plot(sub["condval"], y, "o", color="C0", ms=4)
        ax.axvline(0.0, color="0.5", ls="--", lw=1)
        ax.set_yticks(y)
        ax.set_yticklabels(sub["grp"].astype(str), fontsize="x-small")
        ax.set_title(f"{term} | {grp}")
        ax.set_xlabel("deviation from population (95% interval)")
    fig.tight_layout()
    return fig


# -- correlations ---------------------------------------------------------------------------
def lkj_marginal_pdf(r: np.ndarray, eta: float, d: int) -> np.ndarray:
    """Density of one correlation of a ``d x d`` LKJ(eta) matrix:
    ``(r + 1) / 2 ~ Beta(eta - 1 + d/2, eta - 1 + d/2)``."""
    a = eta - 1.0 + d / 2.0
    return stats.beta.pdf((np.asarray(r) + 1.0) / 2.0, a, a) / 2.0


def plot_correlation(fit: Fit, factor: str | None = None) -> Figure:
    """Posterior of each group-level correlation against its LKJ prior.

    One panel per correlation of the correlated block(s): a histogram of the posterior draws
    and the marginal density of the LKJ(eta) prior for a ``d x d`` block, under which
    ``(r + 1) / 2 ~ Beta(eta - 1 + d/2, eta - 1 + d/2)``; the vertical line is the
    posterior mean.

    Parameters
    ----------
    fit : Fit
    factor : str, optional
        Only this grouping factor's block (default: every block).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per correlation, each with a histogram and the prior's density line.

    Examples
    --------
    >>> fig = lf.plot_correlation(fit)  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    blocks = fit.model.blocks
    factors = _check_factor(
        fit, factor, list(blocks), "plot_correlation", "a correlated block such as (x|g)"
    )
    post = fit.posterior
    panels = []
    for f in factors:
        block = blocks[f]
        corr = post[block.corr_name].transpose("chain", "draw", *block.dims)
        labels = [term_label(str(v)) for v in corr[block.dims[0]].values]
        arr = corr.values.reshape(-1, len(labels), len(labels))
        eta = fit.model.lkj_eta if block.eta is None else block.eta
        for i in range(len(labels)):
            for j in range(i + 1, len(labels)):
                panels.append((f, labels[i], labels[j], arr[:, i, j], eta, len(labels)))
    ncols = min(3, len(panels))
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    grid = np.linspace(-0.999, 0.999, 300)
    for ax, (f, a, b, draws, eta, d) in zip(axes.ravel(), panels, strict=False):
        ax.hist(
            draws,
            bins=np.linspace(-1, 1, 41),
            density=True,
            color="C0",
            alpha=0.6,
            label="posterior",
        )
        ax.plot(
            grid, lkj_marginal_pdf(grid, eta, d), color="k", lw=1.5, label=f"LKJ({eta:g}) prior"
        )
        ax.axvline(float(np.mean(draws)), color="C3", lw=1.2, ls="--", label="posterior mean")
        ax.set_xlim(-1, 1)
        ax.set_xlabel("correlation")
        ax.set_ylabel("density")
        ax.set_title(f"cor({a}, {b}) | {f}")
        ax.legend(loc="best", fontsize="x-small")
    for ax in axes.ravel()[len(panels) :]:
        fig.delaxes(ax)
    fig.tight_layout()
    return fig


# -- posterior predictive check ---------------------------------------------------------------
def _density_lines(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    values = values[np.isfinite(values)]
    if values.size < 2 or np.ptp(values) == 0:
        return np.zeros_like(grid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return stats.gaussian_kde(values)(grid)


def pp_check(fit: Fit, ndraws: int = 50, random_seed: int | None = None) -> Figure:
    """Posterior predictive check (brms' ``pp_check`` default): the densities of ``ndraws``
    replicated data sets over the observed outcome's density.

    The replicates come from Bambi's ``predict`` on the stored posterior draws
    (:meth:`Fit.predict` with ``kind="response"``), so every parameter, including the
    correlated block's, keeps its posterior value. Integer outcomes (counts, successes) are
    drawn as histograms with unit bins instead of densities.

    Parameters
    ----------
    fit : Fit
    ndraws : int
        Number of posterior draws to replicate the data from.
    random_seed : int, optional
        Seed for the choice of draws and the replicated data.

    Returns
    -------
    matplotlib.figure.Figure
        One axes with ``ndraws`` thin lines (``y_rep``) and one thick line (``y``).

    Examples
    --------
    >>> fig = fit.pp_check(ndraws=30, random_seed=1)  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    if not isinstance(ndraws, (int, np.integer)) or isinstance(ndraws, bool) or ndraws < 1:
        raise FitError(f"ndraws must be a positive integer, got {ndraws!r}.")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]annot cache compiled function.*")
        draws = fit.predict(kind="response", summary=False, random_seed=random_seed)
    draws = draws.transpose("chain", "draw", ...)
    rep = np.asarray(draws.values, dtype=float).reshape(-1, draws.shape[-1])
    rng = np.random.default_rng(random_seed)
    n = min(int(ndraws), rep.shape[0])
    rep = rep[rng.choice(rep.shape[0], size=n, replace=False)]
    y = np.asarray(_bambi.response_values(fit.model.bambi), dtype=float)
    if y.ndim == 2:  # binomial: successes, trials
        y = y[:, 0]
    rep = rep.reshape(n, -1)[:, : y.size]

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    discrete = np.all(np.equal(np.mod(y, 1), 0)) and np.all(np.equal(np.mod(rep, 1), 0))
    lo, hi = np.nanquantile(np.concatenate([rep.ravel(), y]), [0.001, 0.999])
    if discrete:
        edges = np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.5)
        centers = 0.5 * (edges[1:] + edges[:-1])

        def curve(v):
            return np.histogram(v, bins=edges, density=True)[0]

        grid = centers
        draw = "steps-mid"
    else:
        pad = 0.05 * (hi - lo if hi > lo else 1.0)
        grid = np.linspace(lo - pad, hi + pad, 256)

        def curve(v):
            return _density_lines(v, grid)

        draw = "default"
    for i in range(n):
        ax.plot(
            grid,
            curve(rep[i]),
            color="C0",
            alpha=0.3,
            lw=0.8,
            drawstyle=draw,
            label="y_rep" if i == 0 else None,
        )
    ax.plot(grid, curve(y), color="k", lw=2.0, drawstyle=draw, label="y")
    response = fit.model.translation.response.text
    ax.set_xlabel(response)
    ax.set_ylabel("density")
    ax.set_title(f"Posterior predictive check ({n} draws)")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig
