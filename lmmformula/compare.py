"""PSIS-LOO comparison of fits (brms' ``loo_compare``), on ArviZ's ``compare``."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import arviz as az
import numpy as np
import pandas as pd

from lmmformula import _bambi
from lmmformula.errors import FitError, ModelError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lmmformula.fit import Fit

__all__ = ["BAD_PARETO_K", "compare", "plot_compare"]

BAD_PARETO_K = 0.7
"""Pareto k above which an observation's PSIS-LOO estimate is unreliable."""

COLUMNS = ["rank", "elpd_loo", "p_loo", "elpd_diff", "weight", "se", "dse", "warning", "n_bad_k"]
METHODS = ("stacking", "BB-pseudo-BMA", "pseudo-BMA")


class ParetoKWarning(UserWarning):
    """Some observations have a Pareto k above 0.7: their PSIS-LOO estimates are unreliable."""


def _named_fits(fits: Any) -> dict[str, Fit]:
    """``{name: Fit}`` from a dict, or from a list named by the formulas."""
    from lmmformula.fit import Fit

    if isinstance(fits, Mapping):
        named = {str(k): v for k, v in fits.items()}
    elif isinstance(fits, Sequence) and not isinstance(fits, str):
        named = {}
        for i, fit in enumerate(fits):
            model = getattr(getattr(fit, "fit", fit), "model", None)
            name = getattr(model, "formula", None) or f"model{i + 1}"
            if name in named:
                name = f"{name} [{i + 1}]"
            named[name] = fit
    else:
        raise FitError(
            "compare needs a dict of name -> Fit, e.g. compare({'simple': fit1, "
            f"'multilevel': fit2}}); got {type(fits).__name__}."
        )
    for name, fit in named.items():
        if not isinstance(fit, (Fit, *_cross_validations())):
            raise FitError(
                f"{name!r} is a {type(fit).__name__}, not a fit: compare needs the results of "
                "lf.fit() or Model.fit() (or of Fit.kfold() / Fit.reloo())."
            )
    if len(named) < 2:
        raise FitError(f"compare needs at least two fits; got {len(named)}.")
    return named


def _cross_validations() -> tuple[type, ...]:
    """Results of exact refits that compare takes next to fits (K-fold, reloo)."""
    from lmmformula.kfold import KFold, Reloo

    return (KFold, Reloo)


def _elpd(entry: Any):
    """ArviZ ELPD data of a fit (its PSIS-LOO) or of a K-fold / reloo result."""
    return entry.elpd_data() if isinstance(entry, _cross_validations()) else entry.loo()


def _response(fit: Fit) -> np.ndarray:
    """The values the likelihood is evaluated on, row by row."""
    fit = getattr(fit, "fit", fit)  # a K-fold or reloo result: the fit it cross-validated
    try:
        values = _bambi.response_values(fit.model.bambi)
    except AttributeError:  # pragma: no cover - a loaded fit without a Bambi model
        obs = fit.idata["observed_data"].to_dataset()
        values = obs[next(iter(obs.data_vars))].values
    return np.asarray(values, dtype=float)


def _check_same_data(named: dict[str, Fit]) -> None:
    """Refuse fits made on different rows, or the same rows in another order."""
    names = list(named)
    ref_name = names[0]
    ref = _response(named[ref_name])
    ref_col = getattr(named[ref_name], "fit", named[ref_name]).model.translation.response.text
    for name in names[1:]:
        fit = named[name]
        values = _response(fit)
        col = getattr(fit, "fit", fit).model.translation.response.text
        if values.shape != ref.shape:
            raise FitError(
                f"cannot compare fits made on different data: {ref_name!r} has "
                f"{ref.shape[0]} observations of {ref_col!r} and {name!r} has {values.shape[0]} "
                f"of {col!r}. PSIS-LOO compares models of the same observations; refit them on "
                "the same rows."
            )
        same = np.isclose(values, ref, rtol=1e-9, atol=0.0, equal_nan=True)
        if not same.all():
            bad = np.flatnonzero(~same.reshape(len(same), -1).all(axis=1))
            also_sorted = np.allclose(np.sort(values, axis=0), np.sort(ref, axis=0))
            why = (
                "the same values in a different order"
                if also_sorted
                else f"different response values ({col!r} against {ref_col!r})"
            )
            raise FitError(
                f"cannot compare fits made on different data: {name!r} and {ref_name!r} have "
                f"{why}, first at row {int(bad[0])} of {len(ref)} ({len(bad)} rows differ). "
                "PSIS-LOO compares models of the same observations in the same order."
            )


def compare(
    fits: Mapping[str, Fit] | Sequence[Fit],
    ic: str = "loo",
    method: str = "stacking",
) -> pd.DataFrame:
    """Compare fits by PSIS-LOO (brms' ``loo_compare``), best first.

    Parameters
    ----------
    fits : dict of str to Fit
        The fits, keyed by the names to show (a list is named by the formulas). They must be
        made on the same observations in the same order. A result of :meth:`Fit.kfold` or
        :meth:`Fit.reloo` may stand next to them: its elpd is used in place of PSIS-LOO (the
        ``elpd_loo`` and ``p_loo`` columns then hold ``elpd_kfold`` and ``p_kfold``).
    ic : {"loo"}
        The information criterion; only PSIS-LOO is supported.
    method : {"stacking", "BB-pseudo-BMA", "pseudo-BMA"}
        How the model weights are computed (ArviZ's ``compare``).

    Returns
    -------
    pandas.DataFrame
        One row per fit, best first, indexed by name, with columns ``rank`` (0 is best),
        ``elpd_loo``, ``p_loo``, ``elpd_diff`` (against the best, so <= 0), ``weight``,
        ``se``, ``dse`` (standard error of the difference), ``warning`` (True when some
        observation has Pareto k > 0.7) and ``n_bad_k`` (how many). A
        :class:`ParetoKWarning` names the fits with bad Pareto k values.

    Raises
    ------
    FitError
        When an entry is not a Fit, fewer than two fits are given, or the fits were made on
        different data (number, values or order of the observations).
    ModelError
        When ``ic`` is not ``"loo"`` or ``method`` is unknown.

    Examples
    --------
    >>> import lmmformula as lf
    >>> ozone = lf.load_dataset("beijing_ozone")
    >>> fits = {f: lf.fit(f, ozone, random_seed=1)
    ...         for f in ("log_ozone ~ TEMP", "log_ozone ~ TEMP + (TEMP|station)")}
    ... # doctest: +SKIP
    >>> lf.compare(fits)  # doctest: +SKIP
    """
    if ic != "loo":
        raise ModelError(
            f"ic must be 'loo' (PSIS-LOO), got {ic!r}; WAIC and other criteria are not supported."
        )
    if method not in METHODS:
        raise ModelError(f"method must be one of {', '.join(METHODS)}; got {method!r}.")
    named = _named_fits(fits)
    _check_same_data(named)

    loos = {name: _elpd(fit) for name, fit in named.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.compare(loos, method=method, round_to="none")
    n_bad = {
        name: int(np.sum(np.asarray(loo.pareto_k) > BAD_PARETO_K))
        if loo.pareto_k is not None
        else 0
        for name, loo in loos.items()
    }
    out = pd.DataFrame(
        {
            "rank": table["rank"].astype(int),
            "elpd_loo": table["elpd"].astype(float),
            "p_loo": table["p"].astype(float),
            "elpd_diff": table["elpd_diff"].astype(float),
            "weight": table["weight"].astype(float),
            "se": table["se"].astype(float),
            "dse": table["dse"].astype(float),
        },
        index=table.index,
    )
    out["warning"] = [n_bad[name] > 0 for name in out.index]
    out["n_bad_k"] = [n_bad[name] for name in out.index]
    out = out.sort_values("rank")[COLUMNS]
    out.index.name = "model"
    bad = {name: n for name, n in n_bad.items() if n}
    if bad:
        n_obs = len(_response(next(iter(named.values()))))
        warnings.warn(
            "PSIS-LOO may be unreliable: "
            + "; ".join(
                f"{name}: {n} of {n_obs} observations with Pareto k > {BAD_PARETO_K}"
                for name, n in bad.items()
            )
            + ". Their elpd_loo is likely too optimistic; consider more draws, or exact "
            "leave-one-out for those observations.",
            ParetoKWarning,
            stacklevel=2,
        )
    return out


def plot_compare(
    comparison: pd.DataFrame | Mapping[str, Fit] | Sequence[Fit],
    ax: Any = None,
) -> Figure:
    """Plot a PSIS-LOO comparison: each model's ELPD with its standard error, and its
    difference to the best model with the standard error of the difference.

    Parameters
    ----------
    comparison : pandas.DataFrame or dict of str to Fit
        The result of :func:`compare`, or the fits to compare.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; by default a new figure.

    Returns
    -------
    matplotlib.figure.Figure
        One axes: models from best (top) to worst; filled circles are ``elpd_loo`` +- ``se``,
        open triangles ``elpd_loo`` of the best plus ``elpd_diff`` +- ``dse``; the dashed line
        marks the best model's ELPD. Models with bad Pareto k values are marked with ``*``.

    Examples
    --------
    >>> fig = lf.plot_compare(lf.compare(fits))  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    table = comparison if isinstance(comparison, pd.DataFrame) else compare(comparison)
    missing = [c for c in ("elpd_loo", "se", "elpd_diff", "dse") if c not in table.columns]
    if missing:
        raise FitError(
            f"plot_compare needs the table of lf.compare(); the columns {missing} are missing."
        )
    table = table.sort_values("elpd_loo", ascending=False)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 0.6 * len(table) + 1.6))
    else:
        fig = ax.figure
    n = len(table)
    y = np.arange(n)[::-1].astype(float)
    best = float(table["elpd_loo"].iloc[0])
    ax.errorbar(
        table["elpd_loo"],
        y,
        xerr=table["se"],
        fmt="o",
        color="C0",
        capsize=3,
        label="elpd_loo ± se",
    )
    diff_y = y[1:] - 0.25
    ax.errorbar(
        best + table["elpd_diff"].iloc[1:],
        diff_y,
        xerr=table["dse"].iloc[1:],
        fmt="^",
        color="0.4",
        mfc="white",
        capsize=3,
        label="difference to best ± dse",
    )
    ax.axvline(best, color="0.5", ls="--", lw=1)
    labels = []
    for name, row in table.iterrows():
        flag = " *" if bool(row.get("warning", False)) else ""
        labels.append(f"{name}{flag}")
    ax.set_yticks(y)
    ax.set_yticklabels(labels)
    xlabel = "ELPD (PSIS-LOO); higher is better"
    if "warning" in table.columns and table["warning"].astype(bool).any():
        xlabel += f"\n* some observations with Pareto k > {BAD_PARETO_K}"
    ax.set_xlabel(xlabel)
    ax.set_title("Model comparison")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig
