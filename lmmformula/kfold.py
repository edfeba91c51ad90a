"""Exact cross-validation by refitting: K-fold (brms' ``kfold``) and ``reloo``.

Every refit is independent of the others, so they can run on any
:class:`concurrent.futures.Executor`: one after another in this process (the default), on a
``ProcessPoolExecutor``, or on a Dask cluster (``distributed.Client(...).get_executor()``).
What is sent to a worker is a :class:`RefitTask`: the model's specification (formula, family,
priors, LKJ shape, centering, sampler settings), the training rows and the held-out rows as
data frames, and a seed. Compiled models never cross a process boundary; each worker builds and
compiles its own (from the compile cache when it has one).

Seeds are derived with :class:`numpy.random.SeedSequence`: one child of ``random_seed`` splits
the rows into folds, and the refit of fold ``k`` gets the ``k``-th child of another, so the same
``random_seed`` gives the same folds and the same draws on every executor.

The held-out rows' log-likelihood is evaluated draw by draw on the refit's posterior; the
pointwise ``elpd`` of a row is the log of its likelihood averaged over the draws (log mean
exp). Rows whose grouping-factor level is not in their training fold (grouped folds) are
predicted as brms' ``kfold`` does (``allow_new_levels = TRUE``): at each draw the new level
takes the group-level effects of a level drawn at random from the fitted ones (the same level
for every term of a factor, so the correlations are kept), which averages over the fitted
population of levels.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import logsumexp

from lmmformula import _bambi
from lmmformula.errors import DataError, FitError, LmmFormulaError, ModelError, SamplingWarning

if TYPE_CHECKING:
    from lmmformula.fit import Fit

__all__ = ["KFold", "KFoldPlan", "RefitTask", "Reloo", "kfold", "plan_kfold", "plan_reloo", "reloo"]

FOLD_TYPES = ("random", "stratified", "grouped", "loo")


# -- fold splits (loo's kfold_split_random / _stratified / _grouped) -------------------------
def split_random(K: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Fold ids 1..K for ``n`` rows in random order, fold sizes differing by at most one
    (``loo::kfold_split_random``)."""
    perm = rng.permutation(n)
    folds = np.empty(n, dtype=int)
    folds[perm] = np.ceil(np.arange(1, n + 1) / n * K).astype(int)
    return folds


def split_stratified(K: int, x: Any, rng: np.random.Generator) -> np.ndarray:
    """Fold ids 1..K such that every level of ``x`` is spread as evenly as possible over the
    folds (``loo::kfold_split_stratified``)."""
    codes = pd.factorize(pd.Series(x).astype(str), sort=True)[0]
    order = np.concatenate(
        [rng.permutation(np.flatnonzero(codes == level)) for level in range(codes.max() + 1)]
    )
    n = len(codes)
    folds = np.empty(n, dtype=int)
    folds[order] = np.tile(np.arange(1, K + 1), -(-n // K))[:n]
    return folds


def split_grouped(K: int, x: Any, rng: np.random.Generator) -> np.ndarray:
    """Fold ids 1..K with every level of ``x`` entirely in one fold
    (``loo::kfold_split_grouped``)."""
    codes, levels = pd.factorize(pd.Series(x).astype(str), sort=True)
    if len(levels) < K:
        raise ModelError(
            f"grouped folds need at least K levels: the grouping column has {len(levels)} levels "
            f"and K is {K}. Use K <= {len(levels)}."
        )
    level_folds = split_random(K, len(levels), rng)
    return level_folds[codes]


# -- what crosses a process boundary ----------------------------------------------------------
@dataclass(frozen=True)
class RefitTask:
    """One refit: everything a worker needs, all of it picklable.

    Attributes
    ----------
    index : int
        Fold number (1-based) or, for ``reloo``, the row left out.
    model_spec : dict
        Arguments of :func:`lmmformula.model` (formula, family, priors, ...).
    fit_settings : dict
        Arguments of :meth:`lmmformula.Model.fit` (draws, tune, chains, sampler, ...).
    train, test : pandas.DataFrame
        Training rows and held-out rows.
    model_class : type
        The class of the fitted model (:class:`lmmformula.Model`), whose ``from_spec`` builds
        the refit; pickled by reference, so a worker imports it.
    seed : int
        Seed of the refit's sampler.
    new_level_seed : int
        Seed of the draws of new levels' effects.
    """

    index: int
    model_spec: dict
    fit_settings: dict
    train: pd.DataFrame
    test: pd.DataFrame
    seed: int
    new_level_seed: int
    model_class: type


@dataclass(frozen=True)
class RefitResult:
    """What a worker sends back: the held-out rows' elpd and the refit's health."""

    index: int
    elpd: np.ndarray
    divergences: int
    max_rhat: float
    min_ess_bulk: float
    problems: tuple[str, ...]
    seconds: float


def model_spec(fit: Fit) -> dict[str, Any]:
    """The arguments that rebuild ``fit.model`` on other rows (formula, family, priors, ...)."""
    m = fit.model
    spec = m.spec()
    family = getattr(m, "_family_arg", None)
    spec["family"] = family if family is not None else spec["family"]
    spec["priors"] = m.user_priors
    spec["bambi_kwargs"] = dict(m.bambi_kwargs)
    return spec


def fit_settings(fit: Fit) -> dict[str, Any]:
    """The sampler settings of ``fit`` (draws, tune, chains, sampler, target_accept)."""
    s = fit.settings
    out: dict[str, Any] = {"sampler": fit.sampler, "progressbar": False}
    for key in ("draws", "tune", "chains"):
        if s.get(key) is not None:
            out[key] = int(s[key])
    if s.get("target_accept") is not None:
        out["target_accept"] = float(s["target_accept"])
    return out


def _without_unused_categories(frame: pd.DataFrame) -> pd.DataFrame:
    """A training frame whose categorical columns know only the levels present in it, so a
    left-out level is a new level and not an empty one."""
    frame = frame.reset_index(drop=True)
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].cat.remove_unused_categories()
    return frame


def _is_fit(obj: Any) -> bool:
    """A fit (duck-typed: the results layer is not imported here, it imports this module)."""
    return hasattr(obj, "model") and all(hasattr(type(obj), n) for n in ("posterior", "loo"))


def refit(task: RefitTask) -> Fit:
    """Build the model of ``task`` on its training rows and sample it (in this process)."""
    m = task.model_class.from_spec(task.model_spec, task.train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sampling problems are reported once, by the caller
        return m.fit(random_seed=task.seed, **task.fit_settings)


def heldout_loglik(fit: Fit, data: pd.DataFrame, random_seed: int | None = None) -> np.ndarray:
    """Log-likelihood of ``data``'s rows under each posterior draw of ``fit``: an array of
    shape ``(draws, rows)`` (chains stacked).

    New grouping-factor levels take, at each draw, the effects of a fitted level drawn at
    random (Bambi's ``sample_new_groups``; brms' ``allow_new_levels = TRUE``).
    """
    from lmmformula._frame import prepare_new_data

    new = prepare_new_data(data, fit.model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ll = _bambi.pointwise_loglik(fit.model.bambi, fit.posterior, new, random_seed)
    except LmmFormulaError:
        raise
    except Exception as exc:
        raise DataError(f"the held-out rows cannot be evaluated: {exc}") from exc
    if fit.model.precision_weights() is not None:  # lme4's weights of the held-out rows
        w = new[fit.model.weights].to_numpy(dtype=float)
        ll = _bambi.precision_weighted_loglik(ll, w, fit.posterior["sigma"])
    values = np.asarray(ll.transpose("chain", "draw", ...).values, dtype=float)
    return values.reshape(values.shape[0] * values.shape[1], -1)


def log_mean_exp(ll: np.ndarray) -> np.ndarray:
    """``log(mean(exp(ll), axis=0))`` computed stably: the pointwise elpd of each column."""
    return logsumexp(ll, axis=0) - np.log(ll.shape[0])


def run_refit(task: RefitTask) -> RefitResult:
    """Refit on the training rows and return the held-out rows' pointwise elpd (the function
    sent to the executor)."""
    start = time.perf_counter()
    fitted = refit(task)
    ll = heldout_loglik(fitted, task.test, random_seed=task.new_level_seed)
    d = fitted.diagnostics()
    return RefitResult(
        index=task.index,
        elpd=log_mean_exp(ll),
        divergences=int(d.divergences),
        max_rhat=float(d.max_rhat),
        min_ess_bulk=float(d.min_ess_bulk),
        problems=tuple(p for p in d.problems() if "divergent" in p or "R-hat" in p),
        seconds=time.perf_counter() - start,
    )


# -- running the refits -----------------------------------------------------------------------
class _Progress:
    """A one-line text progress bar over the refits, on stderr."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.done = 0
        self.start = time.perf_counter()
        self._show()

    def _show(self) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * self.done / max(self.total, 1))
        seconds = time.perf_counter() - self.start
        sys.stderr.write(
            f"\r{self.label}: [{'#' * filled}{'.' * (width - filled)}] "
            f"{self.done}/{self.total} refits, {seconds:.0f} s"
        )
        if self.done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def step(self) -> None:
        self.done += 1
        self._show()


def _check_executor(executor: Any) -> None:
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise ModelError(
            "executor must be a concurrent.futures.Executor (ProcessPoolExecutor, or Dask's "
            f"Client.get_executor()) or None; got {type(executor).__name__}."
        )


def run_refits(
    tasks: Sequence[RefitTask],
    executor: cf.Executor | None = None,
    *,
    timeout: float | None = None,
    progressbar: bool = True,
    label: str = "kfold",
) -> dict[int, RefitResult]:
    """Run the refits, serially (``executor=None``) or on ``executor``; ``{index: result}``.

    Raises
    ------
    FitError
        When a refit fails (the task is named) or the refits take longer than ``timeout``
        seconds in all.
    """
    _check_executor(executor)
    progress = _Progress(len(tasks), label, progressbar)
    results: dict[int, RefitResult] = {}
    if executor is None:
        start = time.perf_counter()
        for task in tasks:
            results[task.index] = _checked(task, lambda t=task: run_refit(t))
            progress.step()
            if timeout is not None and time.perf_counter() - start > timeout:
                if len(results) < len(tasks):
                    raise FitError(
                        f"{label}: {len(tasks) - len(results)} of {len(tasks)} refits not done "
                        f"after {timeout:g} s (timeout)."
                    )
        return results
    futures = {}
    try:
        for task in tasks:
            futures[executor.submit(run_refit, task)] = task
        for future in cf.as_completed(futures, timeout=timeout):
            task = futures[future]
            results[task.index] = _checked(task, future.result)
            progress.step()
    except TimeoutError as exc:
        raise FitError(
            f"{label}: {len(tasks) - len(results)} of {len(tasks)} refits not done after "
            f"{timeout:g} s (timeout); the unfinished ones were cancelled."
        ) from exc
    finally:
        for future in futures:
            future.cancel()
    return results


def _checked(task: RefitTask, call) -> RefitResult:
    try:
        return call()
    except Exception as exc:
        raise FitError(
            f"the refit {task.index} ({len(task.train)} training rows, {len(task.test)} held "
            f"out) failed: {type(exc).__name__}: {exc}"
        ) from exc


def _warn_about(results: dict[int, RefitResult], what: str) -> None:
    bad = {i: r.problems for i, r in sorted(results.items()) if r.problems}
    if bad:
        shown = "; ".join(f"{what} {i}: {', '.join(p)}" for i, p in list(bad.items())[:5])
        warnings.warn(
            f"{len(bad)} of {len(results)} refits had sampling problems ({shown}). Their "
            "held-out elpd may be off; rerun the original fit with more draws or a higher "
            "target_accept.",
            SamplingWarning,
            skip_file_prefixes=(str(Path(__file__).parent),),
        )


def _seeds(root: np.random.SeedSequence, n: int) -> list[tuple[int, int]]:
    out = []
    for child in root.spawn(n):
        a, b = child.generate_state(2, dtype=np.uint32)
        out.append((int(a), int(b)))
    return out


# -- results ----------------------------------------------------------------------------------
def _fmt_table(rows: list[tuple[str, float, float]]) -> str:
    width = max(len(r[0]) for r in rows)
    lines = [f"{'':{width}} {'Estimate':>9} {'SE':>6}"]
    for name, est, se in rows:
        se_text = f"{se:6.1f}" if np.isfinite(se) else f"{'NA':>6}"
        lines.append(f"{name:{width}} {est:9.1f} {se_text}")
    return "\n".join(lines)


@dataclass(repr=False)
class KFold:
    """K-fold cross-validation of a fit (brms' ``kfold``).

    Attributes
    ----------
    elpd_kfold, se : float
        Expected log pointwise predictive density of the held-out rows, and its standard error
        ``sqrt(n * var(pointwise))``.
    p_kfold, p_kfold_se : float
        Effective number of parameters: the full fit's log pointwise predictive density minus
        ``elpd_kfold`` (``nan`` when the full fit's log-likelihood cannot be computed).
    pointwise : pandas.DataFrame
        One row per observation (the order of ``fit.model.data``): ``fold``, ``elpd_kfold``,
        ``p_kfold`` and ``new_level`` (its grouping-factor level was not in its training rows).
    folds : numpy.ndarray
        Fold id (1..K) of every observation.
    K : int
        Number of folds.
    fold_type : str
        ``"random"``, ``"stratified"``, ``"grouped"``, ``"loo"`` or ``"user"``.
    group : str or None
        The column the folds were stratified or grouped by.
    random_seed : int
        The seed (the entropy of the ``SeedSequence``) that reproduces folds and refits.
    refits : pandas.DataFrame
        Per fold: training and held-out rows, divergences, max R-hat, min bulk ESS, seconds.
    fit : Fit
        The fit that was cross-validated.
    """

    elpd_kfold: float
    se: float
    p_kfold: float
    p_kfold_se: float
    pointwise: pd.DataFrame
    folds: np.ndarray
    K: int
    fold_type: str
    group: str | None
    random_seed: int
    refits: pd.DataFrame
    fit: Any = field(repr=False)

    @property
    def kfoldic(self) -> float:
        """``-2 * elpd_kfold``."""
        return -2.0 * self.elpd_kfold

    @property
    def n_new_level(self) -> int:
        """Held-out rows whose grouping-factor level was left out of their training rows."""
        return int(self.pointwise["new_level"].sum())

    @property
    def elpd_new_levels(self) -> float:
        """The part of ``elpd_kfold`` that comes from rows of new levels."""
        return float(self.pointwise.loc[self.pointwise["new_level"], "elpd_kfold"].sum())

    def estimates(self) -> pd.DataFrame:
        """brms' ``kfold(...)$estimates``: ``elpd_kfold``, ``p_kfold``, ``kfoldic`` with SEs."""
        return pd.DataFrame(
            {
                "Estimate": [self.elpd_kfold, self.p_kfold, self.kfoldic],
                "SE": [self.se, self.p_kfold_se, 2 * self.se],
            },
            index=["elpd_kfold", "p_kfold", "kfoldic"],
        )

    def elpd_data(self):
        """The result as ArviZ's ``ELPDDataLOOKFold`` (what ``arviz.compare`` reads)."""
        from arviz_stats.utils import ELPDDataLOOKFold

        n = len(self.pointwise)
        coords = {"__obs__": np.arange(n)}
        p_i = self.pointwise["p_kfold"].to_numpy()
        return ELPDDataLOOKFold(
            elpd=self.elpd_kfold,
            se=self.se,
            p=self.p_kfold,
            n_samples=int(self.refits["draws"].min()),
            n_data_points=n,
            scale="log",
            warning=False,
            good_k=None,
            elpd_i=xr.DataArray(self.pointwise["elpd_kfold"].to_numpy(), coords, ["__obs__"]),
            n_folds=self.K,
            p_kfold_i=xr.DataArray(p_i, coords, ["__obs__"]),
        )

    def __repr__(self) -> str:
        kind = {
            "random": "",
            "stratified": f", stratified by {self.group}",
            "grouped": f", grouped by {self.group}",
            "loo": " (leave-one-out)",
            "user": " (user-given folds)",
            "logo": f" (leave-one-group-out by {self.group})",
        }.get(self.fold_type, "")
        lines = [f"Based on {self.K}-fold cross-validation{kind}.", ""]
        lines.append(
            _fmt_table(
                [
                    ("elpd_kfold", self.elpd_kfold, self.se),
                    ("p_kfold", self.p_kfold, self.p_kfold_se),
                    ("kfoldic", self.kfoldic, 2 * self.se),
                ]
            )
        )
        if self.n_new_level:
            lines += [
                "",
                f"{self.n_new_level} of {len(self.pointwise)} held-out observations belong to "
                f"levels left out of their training folds (elpd {self.elpd_new_levels:.1f}); "
                "their group-level effects were drawn from the fitted levels "
                "(allow_new_levels = TRUE).",
            ]
        return "\n".join(lines)

    __str__ = __repr__


@dataclass(repr=False)
class Reloo:
    """PSIS-LOO with exact refits for the observations whose Pareto k is too high (loo's
    ``reloo``).

    Attributes
    ----------
    loo : arviz_stats.utils.ELPDDataLOO
        The corrected PSIS-LOO result (the refitted rows have Pareto k 0).
    refitted : numpy.ndarray
        Rows (0-based, in ``fit.model.data`` order) that were refitted.
    k_threshold : float
        Pareto k above which a row was refitted.
    random_seed : int
        The seed that reproduces the refits.
    refits : pandas.DataFrame
        Per refit: divergences, max R-hat, min bulk ESS, seconds.
    fit : Fit
        The fit that was cross-validated.
    """

    loo: Any
    refitted: np.ndarray
    k_threshold: float
    random_seed: int
    refits: pd.DataFrame
    fit: Any = field(repr=False)

    @property
    def elpd_loo(self) -> float:
        return float(self.loo.elpd)

    @property
    def se(self) -> float:
        return float(self.loo.se)

    @property
    def p_loo(self) -> float:
        return float(self.loo.p)

    def elpd_data(self):
        """The result as ArviZ's ``ELPDDataLOO`` (what ``arviz.compare`` reads)."""
        return self.loo

    def __repr__(self) -> str:
        lines = [
            f"PSIS-LOO with {len(self.refitted)} exact refits (Pareto k > "
            f"{self.k_threshold:g}) of {int(self.loo.n_data_points)} observations.",
            "",
            _fmt_table(
                [
                    ("elpd_loo", self.elpd_loo, self.se),
                    ("p_loo", self.p_loo, float("nan")),
                    ("looic", -2 * self.elpd_loo, 2 * self.se),
                ]
            ),
        ]
        return "\n".join(lines)

    __str__ = __repr__


# -- the public entry points ------------------------------------------------------------------
def _group_column(fit: Fit, group: str | None) -> pd.Series | None:
    if group is None:
        return None
    data = fit.model.data
    if not isinstance(group, str) or group not in data.columns:
        raise DataError(
            f"group must name a column of the fitted data; got {group!r}. The columns are "
            f"{', '.join(map(repr, data.columns))}."
        )
    return data[group]


def _make_folds(
    fit: Fit, K: int, folds: Any, group: str | None, rng: np.random.Generator
) -> tuple[np.ndarray, str]:
    n = fit.model.n_obs
    x = _group_column(fit, group)
    if folds is None:
        if x is not None:  # brms: leave-one-group-out
            codes = pd.factorize(x.astype(str), sort=True)[0]
            return codes + 1, "logo"
        return split_random(K, n, rng), "random"
    if isinstance(folds, str):
        if folds not in FOLD_TYPES:
            raise ModelError(
                f"folds must be None, one of {', '.join(map(repr, FOLD_TYPES))} or a vector "
                f"of fold ids; got {folds!r}."
            )
        if folds == "loo":
            return np.arange(1, n + 1), "loo"
        if folds == "random":
            return split_random(K, n, rng), "random"
        if x is None:
            raise ModelError(f'folds="{folds}" needs group=, the column to {folds[:-2]} by.')
        if folds == "stratified":
            return split_stratified(K, x, rng), "stratified"
        return split_grouped(K, x, rng), "grouped"
    ids = np.asarray(folds)
    if ids.ndim != 1 or len(ids) != n:
        raise ModelError(
            f"folds given as a vector must have one fold id per observation ({n}); got shape "
            f"{ids.shape}."
        )
    codes = pd.factorize(pd.Series(ids), sort=True)[0]
    return codes + 1, "user"


def _new_level_rows(fit: Fit, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """Held-out rows whose level of some grouping factor is absent from the training rows."""
    from lmmformula import _bambi

    out = np.zeros(len(test), dtype=bool)
    for info in _bambi.term_info(fit.model.bambi).values():
        columns = info.factor.split(":")
        if not all(c in test.columns for c in columns):
            continue
        key_test = test[columns].astype(str).agg(":".join, axis=1)
        key_train = set(train[columns].astype(str).agg(":".join, axis=1))
        out |= ~key_test.isin(key_train).to_numpy()
    return out


def _full_lpd(fit: Fit) -> np.ndarray | None:
    """The full fit's log pointwise predictive density, or None when it cannot be had."""
    try:
        ll = fit.log_likelihood().transpose("chain", "draw", ...)
    except Exception:  # a model whose log-likelihood Bambi cannot compute
        return None
    values = np.asarray(ll.values, dtype=float)
    return log_mean_exp(values.reshape(values.shape[0] * values.shape[1], -1))


def _check_K(K: Any, n: int) -> int:
    if not isinstance(K, (int, np.integer)) or isinstance(K, bool) or not 2 <= K <= n:
        raise ModelError(f"K must be an integer from 2 to the number of observations ({n}).")
    return int(K)


@dataclass(frozen=True)
class KFoldPlan:
    """The folds and the refits of a K-fold cross-validation, before anything runs."""

    tasks: list[RefitTask]
    folds: np.ndarray
    fold_type: str
    new_level: np.ndarray
    random_seed: int


def plan_kfold(
    fit: Fit,
    K: int = 10,
    folds: str | Sequence[int] | None = None,
    group: str | None = None,
    random_seed: int | None = None,
) -> KFoldPlan:
    """Split the rows into folds and write one :class:`RefitTask` per fold (deterministic
    given ``random_seed``)."""
    if not _is_fit(fit):
        raise FitError(f"kfold needs a Fit, got {type(fit).__name__}.")
    n = fit.model.n_obs
    leave_one_group_out = folds is None and group is not None
    if (folds is None or isinstance(folds, str)) and folds != "loo" and not leave_one_group_out:
        K = _check_K(K, n)
    root = np.random.SeedSequence(random_seed)
    split_seq, refit_seq = root.spawn(2)
    ids, fold_type = _make_folds(fit, K, folds, group, np.random.default_rng(split_seq))
    K = int(ids.max())
    data = fit.model.data.reset_index(drop=True)
    spec, settings = model_spec(fit), fit_settings(fit)
    tasks, new_level = [], np.zeros(n, dtype=bool)
    for k, (seed, level_seed) in zip(range(1, K + 1), _seeds(refit_seq, K), strict=True):
        held = ids == k
        train = _without_unused_categories(data.loc[~held])
        test = data.loc[held].reset_index(drop=True)
        new_level[held] = _new_level_rows(fit, train, test)
        tasks.append(RefitTask(k, spec, settings, train, test, seed, level_seed, type(fit.model)))
    return KFoldPlan(tasks, ids, fold_type, new_level, int(root.entropy))


def kfold(
    fit: Fit,
    K: int = 10,
    folds: str | Sequence[int] | None = None,
    group: str | None = None,
    executor: cf.Executor | None = None,
    random_seed: int | None = None,
    *,
    timeout: float | None = None,
    progressbar: bool = True,
) -> KFold:
    """K-fold cross-validation by refitting (brms' ``kfold``); see :meth:`Fit.kfold`."""
    _check_executor(executor)
    plan = plan_kfold(fit, K, folds, group, random_seed)
    ids, n, K = plan.folds, len(plan.folds), len(plan.tasks)
    results = run_refits(
        plan.tasks, executor, timeout=timeout, progressbar=progressbar, label=f"kfold (K={K})"
    )
    _warn_about(results, "fold")

    elpd = np.empty(n)
    for k, result in results.items():
        elpd[ids == k] = result.elpd
    lpd = _full_lpd(fit)
    p_i = lpd - elpd if lpd is not None else np.full(n, np.nan)
    pointwise = pd.DataFrame(
        {"fold": ids, "elpd_kfold": elpd, "p_kfold": p_i, "new_level": plan.new_level}
    )
    settings = plan.tasks[0].fit_settings
    refits = pd.DataFrame(
        [
            {
                "fold": k,
                "train": int((ids != k).sum()),
                "held_out": int((ids == k).sum()),
                "draws": settings.get("draws", 1000) * settings.get("chains", 4),
                "divergences": r.divergences,
                "max_rhat": r.max_rhat,
                "min_ess_bulk": r.min_ess_bulk,
                "seconds": r.seconds,
            }
            for k, r in sorted(results.items())
        ]
    ).set_index("fold")
    return KFold(
        elpd_kfold=float(elpd.sum()),
        se=float(np.sqrt(n * np.var(elpd, ddof=1))),
        p_kfold=float(p_i.sum()),
        p_kfold_se=float(np.sqrt(n * np.var(p_i, ddof=1))),
        pointwise=pointwise,
        folds=ids,
        K=K,
        fold_type=plan.fold_type,
        group=group,
        random_seed=plan.random_seed,
        refits=refits,
        fit=fit,
    )


def plan_reloo(
    fit: Fit, k_threshold: float = 0.7, random_seed: int | None = None
) -> tuple[list[RefitTask], np.ndarray, int]:
    """The leave-one-out refits of the rows whose Pareto k is above ``k_threshold``: the
    tasks, every row's Pareto k, and the seed's entropy."""
    if not _is_fit(fit):
        raise FitError(f"reloo needs a Fit, got {type(fit).__name__}.")
    try:
        k_threshold = float(k_threshold)
    except (TypeError, ValueError):
        k_threshold = float("nan")
    if not np.isfinite(k_threshold):
        raise ModelError("k_threshold must be a finite number (loo's default is 0.7).")
    k = np.asarray(fit.loo().pareto_k.values, dtype=float).ravel()
    bad = np.flatnonzero(k > k_threshold)
    root = np.random.SeedSequence(random_seed)
    data = fit.model.data.reset_index(drop=True)
    spec, settings = model_spec(fit), fit_settings(fit)
    tasks = []
    for i, (seed, level_seed) in zip(bad, _seeds(root, len(bad)), strict=True):
        train = _without_unused_categories(data.drop(index=i))
        test = data.loc[[i]].reset_index(drop=True)
        tasks.append(
            RefitTask(int(i), spec, settings, train, test, seed, level_seed, type(fit.model))
        )
    return tasks, k, int(root.entropy)


def reloo(
    fit: Fit,
    k_threshold: float = 0.7,
    executor: cf.Executor | None = None,
    random_seed: int | None = None,
    *,
    timeout: float | None = None,
    progressbar: bool = True,
) -> Reloo:
    """PSIS-LOO with exact leave-one-out refits where Pareto k > ``k_threshold`` (loo's
    ``reloo``); see :meth:`Fit.reloo`."""
    _check_executor(executor)
    tasks, k, entropy = plan_reloo(fit, k_threshold, random_seed)
    k_threshold = float(k_threshold)
    loo = copy.deepcopy(fit.loo())
    results = run_refits(
        tasks, executor, timeout=timeout, progressbar=progressbar and bool(tasks), label="reloo"
    )
    _warn_about(results, "row")

    elpd_i = np.asarray(loo.elpd_i.values, dtype=float).ravel().copy()
    k_new = k.copy()
    for i, result in results.items():
        elpd_i[i] = float(result.elpd[0])
        k_new[i] = 0.0  # exact: no importance sampling
    lpd = _full_lpd(fit)
    p_i = lpd - elpd_i if lpd is not None else np.full(len(elpd_i), np.nan)
    shape = loo.elpd_i.shape
    loo.elpd_i = loo.elpd_i.copy(data=elpd_i.reshape(shape))
    loo.pareto_k = loo.pareto_k.copy(data=k_new.reshape(loo.pareto_k.shape))
    loo.p_loo_i = loo.elpd_i.copy(data=p_i.reshape(shape))
    n = len(elpd_i)
    loo.elpd = float(elpd_i.sum())
    loo.se = float(np.sqrt(n * np.var(elpd_i, ddof=1)))
    if lpd is not None:
        loo.p = float(p_i.sum())
    loo.warning = bool(np.any(k_new > loo.good_k))
    refits = pd.DataFrame(
        [
            {
                "row": i,
                "pareto_k": k[i],
                "divergences": r.divergences,
                "max_rhat": r.max_rhat,
                "min_ess_bulk": r.min_ess_bulk,
                "seconds": r.seconds,
            }
            for i, r in sorted(results.items())
        ],
        columns=["row", "pareto_k", "divergences", "max_rhat", "min_ess_bulk", "seconds"],
    ).set_index("row")
    return Reloo(
        loo=loo,
        refitted=np.asarray(sorted(results), dtype=int),
        k_threshold=k_threshold,
        random_seed=entropy,
        refits=refits,
        fit=fit,
    )
