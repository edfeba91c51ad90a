"""Rank-normalised split R-hat and bulk/tail ESS, vectorised over parameters.

ArviZ (``arviz_stats``) computes these one parameter at a time through a Python-level ufunc
loop: about 5 ms per parameter, so 20 s for the 4,120 parameters of a crossed model such as
InstEval's. The functions here compute exactly the same quantities (Vehtari et al. 2021,
https://arxiv.org/abs/1903.08008, as written in ``arviz_stats.base.diagnostics``) on one
stacked ``(chain, draw, parameter)`` array: the ranks with one ``scipy.stats.rankdata`` call per
block of columns, the autocovariances with one FFT, and Geyer's initial positive and monotone
sequences as masked array operations over the parameters. ``tests/test_postprocess.py`` checks
them against ArviZ to 1e-8.

Conventions kept from ArviZ: a column with any NaN gives NaN; R-hat needs 2 chains and 4
draws, ESS 1 chain and 4 draws (else NaN); a constant column gives NaN R-hat and an ESS equal
to the number of draws; the tail ESS is the smaller of the quantile ESS at ``(1 - p, p)`` with
``p = arviz_base.rcParams["stats.ci_prob"]`` (ArviZ's default for ``az.ess(method="tail")``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import fft as sp_fft
from scipy import special

__all__ = ["BLOCK", "diagnostics_arrays", "ess_bulk_tail_rhat", "stack_draws"]

BLOCK = 64
"""Parameters processed at once: small blocks keep the temporary arrays in cache."""

_RANK_C = 3.0 / 8.0


def stack_draws(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """Stack ``(chain, draw, ...)`` arrays into one ``(chain, draw, parameter)`` float array."""
    pieces = []
    for values in arrays.values():
        values = np.asarray(values, dtype=float)
        pieces.append(values.reshape(values.shape[0], values.shape[1], -1))
    if not pieces:
        return np.zeros((1, 1, 0))
    return np.concatenate(pieces, axis=2)


def _split(ary: np.ndarray) -> np.ndarray:
    """(p, chain, draw) -> (p, 2 chain, draw // 2): ArviZ's ``_split_chains``."""
    half = ary.shape[2] // 2
    return np.concatenate([ary[:, :, :half], ary[:, :, ary.shape[2] - half :]], axis=1)


def _ranks_from_sorted(order: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ``scipy.stats.rankdata(method="average")``) of the rows of a
    (p, n) array, given their sort order and sorted values: tied values share the mean of
    the first and last position of their run."""
    p, n = order.shape
    position = np.broadcast_to(np.arange(n), (p, n))
    differs = sorted_values[:, 1:] != sorted_values[:, :-1]
    edge = np.ones((p, 1), dtype=bool)
    first = np.where(np.concatenate([edge, differs], axis=1), position, 0)
    np.maximum.accumulate(first, axis=1, out=first)
    last = np.where(np.concatenate([differs, edge], axis=1), position, n)[:, ::-1]
    last = np.minimum.accumulate(last, axis=1)[:, ::-1]
    ranks = np.empty((p, n))
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=1)
    return ranks


def _normal_scores(ranks: np.ndarray) -> np.ndarray:
    """Blom's normal scores ``ndtri((r - 3/8) / (n - 3/4 + 1))`` of average ranks ``r``.

    Average ranks are multiples of 1/2, so the scores are looked up in a table of the
    ``2 n + 1`` possible values (each computed with the same expression)."""
    n = ranks.shape[-1]
    table = special.ndtri((np.arange(2 * n + 1) / 2.0 - _RANK_C) / (n - 2 * _RANK_C + 1))
    return table[(2.0 * ranks).astype(np.intp)]


def _rhat_basic(ary: np.ndarray) -> np.ndarray:
    """Gelman-Rubin R-hat of each row of (p, chain, draw)."""
    n = ary.shape[2]
    chain_mean = ary.mean(axis=2)
    chain_var = ary.var(axis=2, ddof=1)
    between = n * chain_mean.var(axis=1, ddof=1)
    within = chain_var.mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt((between / within + n - 1) / n)


def _mean_autocov(ary: np.ndarray) -> np.ndarray:
    """Autocovariances along the last axis of (p, chain, draw), ArviZ's FFT estimate, averaged
    over the chains: (p, draw). The average is taken before the inverse transform (which is
    linear), so one inverse FFT per parameter instead of one per chain."""
    n = ary.shape[2]
    m = sp_fft.next_fast_len(2 * n)
    centred = ary - ary.mean(axis=2, keepdims=True)
    f = sp_fft.rfft(centred, n=m, axis=2)
    power = (f.real**2 + f.imag**2).mean(axis=1)
    return sp_fft.irfft(power, n=m, axis=1)[:, :n] / n


def _ess(ary: np.ndarray) -> np.ndarray:
    """ESS of each row of (p, chain, draw): ArviZ's ``_ess`` with Geyer's initial positive
    and initial monotone sequences, the per-parameter loops run as masked array operations."""
    ary = np.asarray(ary, dtype=float)
    p, n_chain, n_draw = ary.shape
    total = n_chain * n_draw
    constant = (ary.max(axis=(1, 2)) - ary.min(axis=(1, 2))) < np.finfo(float).resolution
    chain_mean = ary.mean(axis=2)
    mean_acov = _mean_autocov(ary).T  # (draw, p)
    mean_var = mean_acov[0] * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus = var_plus + chain_mean.var(axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = 1.0 - (mean_var - mean_acov) / var_plus  # (draw, p), every lag

    rho_t = np.zeros((n_draw, p))
    rho_t[0] = 1.0
    rho_t[1] = rho[1]
    even = np.ones(p)
    odd = rho[1].copy()
    t = np.ones(p, dtype=int)
    # Geyer's initial positive sequence: every parameter steps t by 2 while its last pair is
    # positive; all share the same t until they stop, so one pair of lags per iteration
    active = (even + odd) > 0.0
    step = 1
    while step < n_draw - 3 and active.any():
        e, o = rho[step + 1], rho[step + 2]
        even = np.where(active, e, even)
        odd = np.where(active, o, odd)
        keep = active & ((e + o) >= 0)
        rho_t[step + 1] = np.where(keep, e, rho_t[step + 1])
        rho_t[step + 2] = np.where(keep, o, rho_t[step + 2])
        t = np.where(active, step + 2, t)
        step += 2
        active = active & ((e + o) > 0.0)
    max_t = t - 2
    cols = np.arange(p)
    set_even = even > 0
    rho_t[max_t[set_even] + 1, cols[set_even]] = even[set_even]
    # Geyer's initial monotone sequence
    step = 1
    top = int(max_t.max()) if p else -1
    while step <= top - 2:
        on = step <= max_t - 2
        pair = rho_t[step + 1] + rho_t[step + 2]
        prev = rho_t[step - 1] + rho_t[step]
        fix = on & (pair > prev)
        rho_t[step + 1] = np.where(fix, prev / 2.0, rho_t[step + 1])
        rho_t[step + 2] = np.where(fix, rho_t[step + 1], rho_t[step + 2])
        step += 2
    lags = np.arange(n_draw)[:, None]
    body = np.where(lags <= max_t, rho_t, 0.0).sum(axis=0)
    last = np.where(lags == max_t + 1, rho_t, 0.0).sum(axis=0)
    tau = -1.0 + 2.0 * body + last
    tau = np.maximum(tau, 1.0 / np.log10(total))
    ess = total / tau
    ess = np.where(np.isnan(rho_t).any(axis=0), np.nan, ess)
    return np.where(constant, float(total), ess)


def _tail_prob() -> float:
    try:
        from arviz_base import rcParams

        return float(rcParams["stats.ci_prob"])
    except (ImportError, KeyError):  # pragma: no cover - arviz_base ships with arviz
        return 0.89


def _sorted_quantile(sorted_values: np.ndarray, q: float) -> np.ndarray:
    """``np.quantile(rows, q, axis=1)`` (method "linear") of rows already sorted, with
    numpy's own interpolation formula."""
    n = sorted_values.shape[1]
    virtual = q * (n - 1)
    lo = int(np.floor(virtual))
    hi = min(lo + 1, n - 1)
    t = virtual - lo
    a, b = sorted_values[:, lo], sorted_values[:, hi]
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def _block(ary: np.ndarray, prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R-hat, bulk ESS and tail ESS of the rows of a (p, chain, draw) block."""
    p = ary.shape[0]
    split = _split(ary)
    shape = split.shape
    flat = split.reshape(p, -1)
    order = np.argsort(flat, axis=1)
    sorted_values = np.take_along_axis(flat, order, axis=1)
    z = _normal_scores(_ranks_from_sorted(order, sorted_values)).reshape(shape)
    rhat_bulk = _rhat_basic(z)
    ess_bulk = _ess(z)
    # folded draws |x - median|: in the sorted order they fall then rise, two runs that the
    # stable (tim)sort merges in linear time; their ranks go back through ``order``
    n = sorted_values.shape[1]
    k = n // 2  # np.median of the sorted rows: the middle value, or the mean of the two
    if n % 2:
        median = sorted_values[:, k : k + 1]
    else:
        median = np.mean(sorted_values[:, k - 1 : k + 1], axis=1, keepdims=True)
    folded_sorted = np.abs(sorted_values - median)
    order_f = np.argsort(folded_sorted, axis=1, kind="stable")
    ranks_f = _ranks_from_sorted(order_f, np.take_along_axis(folded_sorted, order_f, axis=1))
    ranks = np.empty_like(ranks_f)
    np.put_along_axis(ranks, order, ranks_f, axis=1)
    rhat_tail = _rhat_basic(_normal_scores(ranks).reshape(shape))
    rhat = np.where(rhat_tail > rhat_bulk, rhat_tail, rhat_bulk)  # Python's max(bulk, tail)
    # quantiles of all draws; the split draws are all of them when the draws are even, and
    # are sorted already
    ess_q = []
    for q in sorted((prob, 1.0 - prob)):
        if ary.shape[2] % 2 == 0:
            quantile = _sorted_quantile(sorted_values, q)
        else:
            quantile = np.quantile(ary.reshape(p, -1), q, axis=1)
        ess_q.append(_ess(_split((ary <= quantile[:, None, None]).astype(float))))
    ess_tail = np.where(ess_q[1] < ess_q[0], ess_q[1], ess_q[0])  # Python's min(low, high)
    return rhat, ess_bulk, ess_tail


def ess_bulk_tail_rhat(
    ary: np.ndarray, prob: float | None = None, threads: int | None = None
) -> dict[str, np.ndarray]:
    """Rank-normalised split R-hat, bulk ESS and tail ESS of every column.

    Parameters
    ----------
    ary : numpy.ndarray
        (chain, draw, parameter) draws.
    prob : float, optional
        The tail ESS is the smaller quantile ESS at ``1 - prob`` and ``prob``; default
        ArviZ's ``rcParams["stats.ci_prob"]``.
    threads : int, optional
        Threads over blocks of parameters (default: one per CPU).

    Returns
    -------
    dict
        ``rhat``, ``ess_bulk``, ``ess_tail``: arrays of length ``parameter``, equal to
        ``az.rhat``, ``az.ess(method="bulk")`` and ``az.ess(method="tail")``.
    """
    ary = np.asarray(ary, dtype=float)
    n_chain, n_draw, p = ary.shape
    prob = _tail_prob() if prob is None else float(prob)
    out = {k: np.full(p, np.nan) for k in ("rhat", "ess_bulk", "ess_tail")}
    if n_draw < 4 or p == 0:
        return out
    valid = ~np.isnan(ary).any(axis=(0, 1))
    index = np.flatnonzero(valid)
    blocks = [index[start : start + BLOCK] for start in range(0, index.size, BLOCK)]

    def run(cols: np.ndarray) -> None:
        block = np.ascontiguousarray(np.moveaxis(ary[:, :, cols], 2, 0))
        rhat, ess_bulk, ess_tail = _block(block, prob)
        if n_chain >= 2:
            out["rhat"][cols] = rhat
        out["ess_bulk"][cols] = ess_bulk
        out["ess_tail"][cols] = ess_tail

    workers = min(threads or os.cpu_count() or 1, len(blocks))
    if workers <= 1:
        for cols in blocks:
            run(cols)
    else:  # numpy's sorts, FFTs and ufuncs release the GIL: blocks run in parallel
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(run, blocks))
    return out


def diagnostics_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """:func:`ess_bulk_tail_rhat` of named ``(chain, draw, ...)`` arrays, stacked."""
    return ess_bulk_tail_rhat(stack_draws(arrays))
