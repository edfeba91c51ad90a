"""Integrating a gaussian varying intercept out of a gaussian identity-link model, exactly.

For a gaussian model with identity link, write the linear predictor as ``eta + u_{f[i]}`` where
``u_f ~ N(0, tau^2)`` independently per level of a grouping factor ``f`` and ``eta`` holds
everything else (fixed effects, offsets, every other group-level term). Given ``eta``, the
residuals ``r_j = y_j - eta_j`` of the ``n_j`` rows of level ``j`` are multivariate normal with
covariance ``sigma^2 I + tau^2 11'``. By the matrix determinant lemma and Sherman-Morrison, with
``S1_j = sum r_j``, ``S2_j = sum r_j^2`` and ``v_j = sigma^2 + n_j tau^2``,

    log p(r_j) = -n_j/2 log(2 pi) - (n_j - 1) log(sigma) - 1/2 log(v_j)
                 - (S2_j - S1_j^2 / n_j) / (2 sigma^2) - S1_j^2 / (2 n_j v_j),

one pass over the rows for all levels. The sampler then never sees the ``J`` effects of ``f``
(InstEval: 2,972 of 4,120 dimensions). After sampling, each draw's effects are drawn from their
exact conditional,

    u_j | y, rest ~ N(tau^2 S1_j / v_j, sigma^2 tau^2 / v_j),

so the posterior keeps Bambi's variables (``1|f`` and ``1|f_sigma``) and ``ranef``, ``coef``,
``predict`` and ``loo`` work unchanged; the joint draws have the full model's distribution.

When it applies (:func:`marginal_unsupported`, :func:`candidates`): the model qualifies for the
sufficient-statistics likelihood (gaussian family, identity link, ``sigma`` not modelled by a
formula, plain response without weights, censoring or truncation, no HSGP terms) and has no
precision weights; the term is a varying intercept ``(1|f)`` (its predictor is 1 on every row)
that is not in a correlated block, with Bambi's ``Normal(mu=0, sigma=Prior(...))`` prior (any
prior on ``sigma``). Other uncorrelated terms on the same factor (``(1|f) + (0 + x|f)``, or
``(1 + x||f)``) stay sampled and do not prevent it, since they enter ``eta``. With
``marginalize="auto"`` the factor with the most levels is integrated out when it has at least
:data:`MIN_LEVELS` levels and the sufficient-statistics likelihood is not used.

With the factor, a small block can be integrated out as well (:func:`draw_block`; chosen by
``lmmformula._bambi.choose_marginal_block``): the population coefficients with ``Normal`` priors
and the uncorrelated group-level terms with at most :data:`BLOCK_MAX_LEVELS` levels. Given the
scales they are jointly Gaussian a posteriori, so the density of ``y`` with them integrated out
is exact (a Woodbury step of the block's size, :mod:`lmmformula._marginal_op`), and after
sampling each draw's block is drawn from its Gaussian conditional, then the factor's effects
given it. The sampler is left with the scales and the large factors: with few groups, a
factor's sd and its effects form a funnel and the intercept a ridge with the effects' mean
(InstEval's 14 departments), which the sampler then never sees. A varying intercept nested in
a factor of the block (InstEval's lecturers in departments) is sampled as the sums of the
intercept, the outer and its own effects (:func:`nested_logp` is their prior given the scales;
:func:`nested_intercept` and :func:`conditional` draw the intercept and the outer effects
afterwards): the sums are what the data fix.

Pure numpy and pytensor: the density, the conditional and the draws of the effects.
:mod:`lmmformula._bambi` (the seam to Bambi) says which term qualifies, builds the graph (with
:mod:`lmmformula._marginal_op`, the same density on statistics computed once from the data,
when ``eta`` is linear in the population coefficients and the other group effects; with
:func:`logp`, row by row, otherwise) and adds the effects after sampling with
:func:`draw_effects`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt
import scipy.sparse as sp

__all__ = [
    "BLOCK_MAX_LEVELS",
    "BLOCK_MAX_SIZE",
    "CHUNK",
    "MIN_LEVELS",
    "LevelSums",
    "MarginalTerm",
    "conditional",
    "draw_block",
    "draw_effects",
    "draws",
    "logp",
    "logp_numpy",
    "nested_intercept",
    "nested_logp",
    "seed_from",
]

MIN_LEVELS = 100
"""``marginalize="auto"`` integrates out a factor with at least this many levels."""


@dataclass(frozen=True)
class MarginalTerm:
    """The varying intercept that is integrated out."""

    name: str
    factor: str
    sigma_name: str
    levels: tuple[str, ...]


# -- the density ----------------------------------------------------------------------------
def logp(resid, index, counts: np.ndarray, sigma, tau):
    """Log density of the residuals with the level effects integrated out (pytensor).

    Parameters
    ----------
    resid : TensorVariable
        (n,) ``y - eta``.
    index : numpy.ndarray
        (n,) level of every row, ``0 .. J-1``.
    counts : numpy.ndarray
        (J,) rows per level (all positive).
    sigma, tau : TensorVariable
        Residual sd and the effects' sd.
    """
    return _logp_parts(resid, index, counts, sigma, tau)[0]


def _logp_parts(resid, index, counts, sigma, tau):
    """:func:`logp`, with the level sums ``S1`` and ``v = sigma^2 + n tau^2`` it computed."""
    counts = np.asarray(counts, dtype=float)
    n, n_levels = float(counts.sum()), counts.size
    # the smallest unsigned type that holds the codes (uint16 for a few thousand levels): the
    # scatter and gather loops read a quarter of int64's memory traffic
    index = np.asarray(index).astype(np.min_scalar_type(max(n_levels - 1, 0)))
    s1 = pt.inc_subtensor(pt.zeros(n_levels)[pt.as_tensor_variable(index)], resid)
    s2 = pt.sum(pt.square(resid))
    sigma2 = pt.square(sigma)
    v = sigma2 + counts * pt.square(tau)
    within = s2 - pt.sum(pt.square(s1) / counts)
    value = (
        -0.5 * n * np.log(2 * np.pi)
        - (n - n_levels) * pt.log(sigma)
        - 0.5 * pt.sum(pt.log(v))
        - 0.5 * within / sigma2
        - 0.5 * pt.sum(pt.square(s1) / (counts * v))
    )
    return value, s1, v


def logp_numpy(resid, index, counts, sigma: float, tau: float) -> float:
    """:func:`logp` in numpy (for checks)."""
    resid = np.asarray(resid, dtype=float)
    counts = np.asarray(counts, dtype=float)
    s1 = np.bincount(index, weights=resid, minlength=counts.size)
    v = sigma**2 + counts * tau**2
    within = np.sum(resid**2) - np.sum(s1**2 / counts)
    return float(
        -0.5 * counts.sum() * np.log(2 * np.pi)
        - (counts.sum() - counts.size) * np.log(sigma)
        - 0.5 * np.sum(np.log(v))
        - 0.5 * within / sigma**2
        - 0.5 * np.sum(s1**2 / (counts * v))
    )


def conditional(s1, counts, sigma, tau) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd of the level effects given the residual sums ``s1`` (broadcasting: ``s1``
    (draws, J), ``counts`` (J,), ``sigma`` and ``tau`` (draws, 1))."""
    counts = np.asarray(counts, dtype=float)
    v = sigma**2 + counts * tau**2
    return tau**2 * s1 / v, np.sqrt(sigma**2 * tau**2 / v)


def draws(posterior, name: str, factor_first: bool = False) -> np.ndarray:
    """(chain * draw, k) values of a posterior variable, its factor dimension first."""
    da = posterior[name]
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    if factor_first:
        dims = sorted(dims, key=lambda d: not d.endswith("__factor_dim"))
    values = da.transpose("chain", "draw", *dims).values
    return values.reshape(values.shape[0] * values.shape[1], -1)


def seed_from(posterior, names: list[str]) -> int:
    """A seed derived from the draws themselves: the same draws give the same effects."""
    h = hashlib.sha256()
    for name in names:
        h.update(np.ascontiguousarray(posterior[name].values).tobytes())
    return int.from_bytes(h.digest()[:8], "little")


@dataclass(frozen=True)
class LevelSums:
    """Per draw and level, the sums of the residuals ``y - eta`` (``eta`` without the
    integrated term), kept as their pieces so that a block of draws is formed on demand:

        sums[d] = base - ax @ coefs[d] - az @ effects[d]

    ``base`` (J,) holds the level sums of ``y`` (minus offsets), ``ax`` (J, p) those of the
    population-level columns, ``az`` (J, K, sparse) those of every other group-level column;
    ``coefs`` (draws, p) and ``effects`` (draws, K) are the posterior draws in the same column
    order. InstEval: J = 2,972, K = 1,142, 4,000 draws.
    """

    base: np.ndarray
    ax: np.ndarray
    coefs: np.ndarray
    az: sp.sparray | None
    effects: np.ndarray | None

    @property
    def shape(self) -> tuple[int, int]:
        return self.coefs.shape[0], self.base.size

    def rows(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """``sums[start:stop]`` written into ``out`` (stop - start, J)."""
        out[:] = self.base
        if self.ax.shape[1]:
            out -= self.coefs[start:stop] @ self.ax.T
        if self.az is not None and self.effects is not None:
            out -= (self.az @ self.effects[start:stop].T).T
        return out


CHUNK = 256
"""Draws per block when the effects are drawn (a block's temporaries stay in cache)."""


def _run_blocks(block, n_blocks: int, threads: int | None = None) -> None:
    """``block(i)`` for every block, on one thread per CPU (or ``threads``); the blocks write
    apart and take their own seeds, so the result does not depend on the threads."""
    from concurrent.futures import ThreadPoolExecutor

    workers = min(threads or os.cpu_count() or 1, n_blocks)
    if workers <= 1:
        for i in range(n_blocks):
            block(i)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(block, range(n_blocks)))


def draw_effects(
    sums: LevelSums, counts, sigma, tau, seed: int, threads: int | None = None
) -> np.ndarray:
    """Effects drawn from their exact conditional ``N(tau^2 S1 / v, sigma^2 tau^2 / v)`` per
    draw (rows) and level (columns). ``sigma`` and ``tau`` are (draws, 1).

    Blocks of :data:`CHUNK` draws are formed and drawn on one thread per CPU (scipy's sparse
    products and numpy's normal generator release the GIL); block ``i`` takes its normals from
    the ``i``-th child of ``SeedSequence(seed)``, so the result does not depend on the number
    of threads.
    """
    n_draws, n_levels = sums.shape
    counts = np.asarray(counts, dtype=float)
    effects = np.empty((n_draws, n_levels))
    starts = list(range(0, n_draws, CHUNK))
    children = np.random.SeedSequence(seed).spawn(len(starts))

    def block(i: int) -> None:
        start = starts[i]
        stop = min(start + CHUNK, n_draws)
        out = sums.rows(start, stop, effects[start:stop])
        sigma2, tau2 = np.square(sigma[start:stop]), np.square(tau[start:stop])
        inv_v = np.multiply(tau2, counts)
        inv_v += sigma2
        np.reciprocal(inv_v, out=inv_v)
        out *= inv_v
        out *= tau2  # conditional mean tau^2 S1 / v
        inv_v *= sigma2 * tau2
        np.sqrt(inv_v, out=inv_v)  # conditional sd sqrt(sigma^2 tau^2 / v)
        noise = np.random.default_rng(children[i]).standard_normal(out.shape)
        noise *= inv_v
        out += noise

    _run_blocks(block, len(starts), threads)
    return effects


# -- a small Gaussian block integrated out with the factor ----------------------------------
BLOCK_MAX_LEVELS = 50
"""A varying intercept (or an uncorrelated varying slope) with at most this many levels is
integrated out together with the largest factor (:func:`draw_block`)."""

BLOCK_MAX_SIZE = 100
"""At most this many coefficients are integrated out in the block."""


def draw_block(
    stats,
    thetas: np.ndarray,
    k: int,
    sigma,
    tau,
    lam: np.ndarray,
    seed: int,
    threads: int | None = None,
) -> np.ndarray:
    """Draws of the block's coefficients from their exact conditional given each draw.

    With the largest factor integrated out, the last ``k`` coefficients of
    ``theta = [theta_a; theta_b]`` (prior ``N(m, diag(lam))``) are, given ``theta_a`` and the
    scales, ``N(m + mu, P^-1)`` with ``P = diag(1 / lam) + W_b' Sigma^-1 W_b`` and
    ``mu = P^-1 W_b' Sigma^-1 (y - W_a theta_a - W_b m)``, ``Sigma = sigma^2 I + tau^2 Z Z'``
    (:mod:`lmmformula._marginal_op` holds the statistics and the matching density).

    Blocks of :data:`CHUNK` draws are drawn on one thread per CPU, block ``i`` with the
    ``i``-th child of ``SeedSequence(seed)`` (the result does not depend on the threads).

    Parameters
    ----------
    stats : lmmformula._marginal_op.MarginalStatistics
        The statistics the likelihood was built on (``theta`` measured from ``stats.theta0``).
    thetas : numpy.ndarray
        (draws, P) ``[theta_a; m]`` per draw (the prior means in the block's place).
    k : int
        Size of the block (the last ``k`` columns).
    sigma, tau : numpy.ndarray
        (draws,) residual sd and the integrated factor's sd.
    lam : numpy.ndarray
        (draws, k) the block's prior variances.
    seed : int
        Seed of the normal draws.
    threads : int, optional
        Threads (default: one per CPU).

    Returns
    -------
    numpy.ndarray
        (draws, k) the block's coefficients.
    """
    from lmmformula._marginal_op import block_groups

    n_draws, p = thetas.shape
    blk = slice(p - k, p)
    counts = np.asarray(stats.counts, dtype=float)[:, None]
    design = stats.level_design
    b_blk_t = design[:, blk].T.tocsr()  # (k, J)
    # B_b' diag(dd) B_b, with dd a function of the level size: a sum over the distinct sizes
    sizes, group_gram = block_groups(stats, k)
    sizes = sizes[:, None]
    group_gram = group_gram.reshape(sizes.size, k * k)
    g_bb = stats.gram[blk][:, blk].toarray().reshape(k * k, 1)
    g_b = stats.gram[blk].tocsr()
    wy_b = np.asarray(stats.wy[blk], dtype=float)[:, None]
    ay = np.asarray(stats.ay, dtype=float)[:, None]
    sigma = np.asarray(sigma, dtype=float).ravel()
    tau = np.asarray(tau, dtype=float).ravel()
    out = np.empty((n_draws, k))
    starts = list(range(0, n_draws, CHUNK))
    children = np.random.SeedSequence(seed).spawn(len(starts))
    diag = np.arange(k)

    def block(i: int) -> None:
        start = starts[i]
        stop = min(start + CHUNK, n_draws)
        theta = np.ascontiguousarray((thetas[start:stop] - stats.theta0).T)  # (P, c)
        s2 = np.square(sigma[start:stop])
        t2 = np.square(tau[start:stop])
        dd = counts * t2
        dd += s2
        np.divide(t2, dd, out=dd)  # (J, c): Sigma^-1 = (I - A' diag(dd) A) / sigma^2
        s1 = design @ theta
        np.subtract(ay, s1, out=s1)
        s1 *= dd
        c = (wy_b - g_b @ theta - b_blk_t @ s1) / s2  # (k, c)
        q = (g_bb - group_gram.T @ (t2 / (s2 + sizes * t2))) / s2  # (k * k, c)
        prec = np.ascontiguousarray(q.T).reshape(stop - start, k, k)
        prec[:, diag, diag] += 1.0 / lam[start:stop]
        chol = np.linalg.cholesky(prec)
        mu = np.linalg.solve(prec, c.T[:, :, None])[:, :, 0]
        z = np.random.default_rng(children[i]).standard_normal((stop - start, k, 1))
        noise = np.linalg.solve(np.swapaxes(chol, 1, 2), z)[:, :, 0]  # N(0, P^-1)
        out[start:stop] = thetas[start:stop, blk] + mu + noise

    _run_blocks(block, len(starts), threads)
    return out


def nested_logp(total, index, counts, tau_inner, tau_outer, mean=0.0, lam=None):
    """Log density (pytensor) of the sums ``w = a + u_outer[index] + u_inner`` of a varying
    intercept nested in another (each level of the inner factor in one level of the outer),
    given the scales: ``N(mean 1, tau_inner^2 I + tau_outer^2 Z Z' + lam 11')`` with ``Z`` the
    outer levels of the inner ones and ``a ~ N(mean, lam)`` an intercept (``lam=None``: none,
    ``a = mean``). :func:`logp` with the outer effects integrated out, and a Sherman-Morrison
    step for the intercept: with ``S_k`` the sums of ``w - mean`` per outer level and
    ``v_k = tau_inner^2 + n_k tau_outer^2``, ``a = sum n_k / v_k`` and ``b = sum S_k / v_k``,
    the intercept adds ``-1/2 log(1 + lam a) + lam b^2 / (2 (1 + lam a))``.
    """
    value, s1, v = _logp_parts(total - mean, index, counts, tau_inner, tau_outer)
    if lam is None:
        return value
    a = pt.sum(np.asarray(counts, dtype=float) / v)
    b = pt.sum(s1 / v)
    return value - 0.5 * pt.log1p(lam * a) + 0.5 * lam * pt.square(b) / (1.0 + lam * a)


def nested_intercept(sums, counts, tau_inner, tau_outer, mean: float, lam: float):
    """Mean and sd of the intercept given the sums of :func:`nested_logp` (``sums``: per draw
    and outer level, the sums of ``w``; ``tau_*`` (draws, 1))."""
    counts = np.asarray(counts, dtype=float)
    v = np.square(tau_inner) + counts * np.square(tau_outer)
    precision = 1.0 / lam + np.sum(counts / v, axis=1)
    return (mean / lam + np.sum(sums / v, axis=1)) / precision, 1.0 / np.sqrt(precision)
