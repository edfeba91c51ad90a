"""The marginal likelihood of :mod:`lmmformula._marginal` on precomputed statistics, as one Op.

:func:`lmmformula._marginal.logp` reads every row at every evaluation (a scatter-add of the
residuals ``y - eta`` into the levels, gathers of every other group effect to build ``eta``).
When ``eta`` is linear in one coefficient vector,

    eta = W theta,   theta = [population coefficients; every other group effect vector],

with ``W = [X | Z_other]`` (n x P, sparse) the design of everything that is not integrated out,
the density only needs ``theta`` and statistics computed once from the data. With ``A`` the
(J x n) level incidence of the integrated factor:

    RSS(theta) = y'y - 2 theta' W'y + theta' G theta,   G = W'W   (P x P, sparse),
    S1(theta)  = A y - B theta,                          B = A W   (J x P, sparse),

and with ``v_j = sigma^2 + n_j tau^2`` and ``N = sum n_j`` (:mod:`lmmformula._marginal`)

    log p = -N/2 log(2 pi) - (N - J) log(sigma) - 1/2 sum log(v_j)
            - (RSS - sum S1_j^2 / n_j) / (2 sigma^2) - sum S1_j^2 / (2 n_j v_j).

Its gradient is closed form: with ``c_j = S1_j tau^2 / (sigma^2 v_j)``,

    d/dtheta = -(G theta - W'y) / sigma^2 - B' c,
    d/dsigma = -(N - J)/sigma - sigma sum 1/v_j + within/sigma^3 + sigma sum S1_j^2/(n_j v_j^2),
    d/dtau   = -tau sum n_j/v_j + tau sum S1_j^2 / v_j^2,

where ``within = RSS - sum S1_j^2 / n_j``. One evaluation reads ``G`` once and ``B`` once
(InstEval: about 95,000 non-zeros of ``B`` against 73,421 rows times four gathers and four
scatter-adds for the row-wise graph).

:class:`MarginalLogp` returns the value and the three gradient pieces from one call; its
``pullback`` uses those outputs, so a compiled log density and gradient runs the kernel once. The
data (``y'y``, ``W'y``, ``A y``, the counts and ``G`` and ``B`` as their CSR vectors) are Op
inputs, not Op parameters: lmmformula's nutpie path (:mod:`lmmformula._nutpie`) turns them into
run-time data, so a model refitted on other data of the same shapes compiles nothing again.

Backends: a numba implementation registered with a PyTensor numba cache key (the Op has no
parameters; the key holds :data:`NUMBA_CACHE_VERSION` and a hash of the kernel's source),
``perform`` (numpy/scipy) for the C and Python backends, and a JAX implementation registered by
:func:`register_jax` (called before sampling with ``sampler="numpyro"`` or ``"blackjax"``;
importing JAX on every ``import lmmformula`` would cost most of a second). The module is
imported (and the numba implementation registered, which imports numba) only when a model
uses the Op.

:func:`statistics` computes the statistics from ``y``, ``W`` and the level index; ``theta`` is
shifted by a least-squares fit ``theta0`` of the response (so ``y'y`` is of the size of the
residual sum of squares and no precision is lost to cancellation for responses far from zero).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt
import scipy.sparse
from pytensor.gradient import DisconnectedType, grad_not_implemented, grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

__all__ = [
    "NUMBA_CACHE_VERSION",
    "MarginalLogp",
    "MarginalStatistics",
    "logp",
    "marginal_logp",
    "register_jax",
    "statistics",
]

NUMBA_CACHE_VERSION = 1
"""Part of the numba cache key of :class:`MarginalLogp` (with a hash of the kernel's source)."""

_LOG_2PI = float(np.log(2 * np.pi))


@dataclass(frozen=True)
class MarginalStatistics:
    """What the marginal density needs from the data (computed once).

    ``theta0`` is the point the coefficients are measured from (the statistics are those of
    ``y - W theta0``); ``gram`` is ``W'W`` and ``level_design`` ``A W``, both CSR with sorted
    indices; ``wy`` is ``W'(y - W theta0)``, ``ay`` ``A (y - W theta0)``, ``yy`` the squared
    norm of ``y - W theta0``.
    """

    theta0: np.ndarray
    yy: float
    wy: np.ndarray
    ay: np.ndarray
    counts: np.ndarray
    gram: scipy.sparse.csr_matrix
    level_design: scipy.sparse.csr_matrix


def statistics(
    y: np.ndarray, w, index: np.ndarray, n_levels: int, n_dense: int = 0
) -> MarginalStatistics:
    """The statistics of :class:`MarginalStatistics`.

    Parameters
    ----------
    y : numpy.ndarray
        (n,) response (offsets already subtracted).
    w : scipy.sparse matrix or numpy.ndarray
        (n, P) design of everything not integrated out, columns in ``theta``'s order.
    index : numpy.ndarray
        (n,) level of the integrated factor of every row, ``0 .. n_levels - 1``.
    n_levels : int
        Levels of the integrated factor (all present).
    n_dense : int
        The first ``n_dense`` columns of ``w`` (the population design) are fitted to ``y`` by
        least squares to give ``theta0``; the others start at zero.
    """
    y = np.asarray(y, dtype=float)
    n = y.size
    w = scipy.sparse.csr_matrix(w, dtype=float)
    index = np.asarray(index)
    theta0 = np.zeros(w.shape[1])
    if n_dense:
        x = w[:, :n_dense].toarray()
        theta0[:n_dense] = np.linalg.lstsq(x, y, rcond=None)[0]
    r = y - w @ theta0
    a = scipy.sparse.csr_matrix((np.ones(n), (index, np.arange(n))), shape=(n_levels, n))
    gram = (w.T @ w).tocsr()
    level_design = (a @ w).tocsr()
    for m in (gram, level_design):
        m.sum_duplicates()
        m.sort_indices()
    counts = np.bincount(index, minlength=n_levels).astype(float)
    return MarginalStatistics(
        theta0=theta0,
        yy=float(r @ r),
        wy=np.asarray(w.T @ r, dtype=float),
        ay=np.asarray(a @ r, dtype=float),
        counts=counts,
        gram=gram,
        level_design=level_design,
    )


# -- the kernel in numpy ----------------------------------------------------------------------
def _kernel_numpy(theta, sigma, tau, yy, wy, ay, counts, gd, gi, gp, bd, bi, bp):
    """Value and gradient (numpy/scipy); the reference ``perform`` uses."""
    p, j = theta.size, counts.size
    if wy.size != p or gp.size != p + 1 or bp.size != j + 1 or ay.size != j:
        raise ValueError("MarginalLogp: theta and the statistics do not match")
    g = scipy.sparse.csr_matrix((gd, gi, gp), shape=(p, p))
    b = scipy.sparse.csr_matrix((bd, bi, bp), shape=(j, p))
    g_theta = g @ theta
    rss = yy - 2.0 * (theta @ wy) + theta @ g_theta
    value, c, d_sigma, d_tau = _density_from_sums(np, rss, ay - b @ theta, counts, sigma, tau)
    d_theta = (wy - g_theta) / (sigma * sigma) - b.T @ c
    return float(value), np.asarray(d_theta, dtype=float), float(d_sigma), float(d_tau)


def _density_from_sums(xp, rss, s1, counts, sigma, tau):
    """Value, ``c`` (the weights of ``-B' c`` in d/dtheta), d/dsigma and d/dtau from the
    residual sum of squares and the level sums (module docstring); ``xp`` is numpy or
    jax.numpy, so the ``perform`` and JAX implementations share the formulas."""
    n_levels = counts.shape[0]
    s2, t2 = sigma * sigma, tau * tau
    v = s2 + counts * t2
    n_total = xp.sum(counts)
    sq = s1 * s1
    within = rss - xp.sum(sq / counts)
    value = (
        -0.5 * n_total * _LOG_2PI
        - (n_total - n_levels) * xp.log(sigma)
        - 0.5 * xp.sum(xp.log(v))
        - 0.5 * within / s2
        - 0.5 * xp.sum(sq / (counts * v))
    )
    c = s1 * t2 / (s2 * v)
    d_sigma = (
        -(n_total - n_levels) / sigma
        - sigma * xp.sum(1.0 / v)
        + within / (s2 * sigma)
        + sigma * xp.sum(sq / (counts * v * v))
    )
    d_tau = tau * (xp.sum(sq / (v * v)) - xp.sum(counts / v))
    return value, c, d_sigma, d_tau


# -- the Op -----------------------------------------------------------------------------------
class MarginalLogp(Op):
    """``(theta, sigma, tau, yy, wy, ay, counts, G data/indices/indptr, B data/indices/indptr)
    -> (log density, d/dtheta, d/dsigma, d/dtau)``; see the module docstring."""

    __props__ = ()

    def make_node(self, theta, sigma, tau, yy, wy, ay, counts, gd, gi, gp, bd, bi, bp):
        floats = [theta, sigma, tau, yy, wy, ay, counts, gd, bd]
        theta, sigma, tau, yy, wy, ay, counts, gd, bd = (
            pt.as_tensor_variable(x).astype("float64") for x in floats
        )
        gi, gp, bi, bp = (pt.as_tensor_variable(x) for x in (gi, gp, bi, bp))
        for name, x, ndim in [
            ("theta", theta, 1),
            ("sigma", sigma, 0),
            ("tau", tau, 0),
            ("yy", yy, 0),
            ("wy", wy, 1),
            ("ay", ay, 1),
            ("counts", counts, 1),
            ("gram data", gd, 1),
            ("level design data", bd, 1),
        ]:
            if x.type.ndim != ndim:
                raise TypeError(f"{name} must have {ndim} dimension(s), got {x.type.ndim}")
        for name, x in [("gi", gi), ("gp", gp), ("bi", bi), ("bp", bp)]:
            if x.type.ndim != 1 or x.type.dtype[:3] not in ("int", "uin"):
                raise TypeError(f"{name} must be an integer vector, got {x.type}")
        inputs = [theta, sigma, tau, yy, wy, ay, counts, gd, gi, gp, bd, bi, bp]
        outputs = [pt.dscalar(), theta.type(), pt.dscalar(), pt.dscalar()]
        return Apply(self, inputs, outputs)

    def perform(self, node, inputs, output_storage):
        value, d_theta, d_sigma, d_tau = _kernel_numpy(*(np.asarray(x) for x in inputs))
        output_storage[0][0] = np.asarray(value, dtype="float64")
        output_storage[1][0] = d_theta
        output_storage[2][0] = np.asarray(d_sigma, dtype="float64")
        output_storage[3][0] = np.asarray(d_tau, dtype="float64")

    def infer_shape(self, node, input_shapes):
        return [(), input_shapes[0], (), ()]

    def connection_pattern(self, node):
        return [[True, i == 0, i == 1, i == 2] for i in range(len(node.inputs))]

    def pullback(self, inputs, outputs, output_grads):
        for g in output_grads[1:]:
            if not isinstance(g.type, DisconnectedType):
                raise NotImplementedError("second derivatives of MarginalLogp are not available")
        g = output_grads[0]
        out = [g * outputs[1], g * outputs[2], g * outputs[3]]
        for i, x in enumerate(inputs[3:], start=3):
            if x.type.dtype.startswith("float"):
                out.append(grad_not_implemented(self, i, x, "gradient with respect to data"))
            else:
                out.append(grad_undefined(self, i, x))
        return out

    L_op = pullback  # PyTensor releases before ``pullback`` call ``L_op``


marginal_logp = MarginalLogp()


def logp(theta, sigma, tau, stats: MarginalStatistics):
    """The marginal log density (a PyTensor scalar) at the coefficients ``theta`` (the
    statistics' ``theta0`` is subtracted here)."""

    def ints(a):  # the smallest type (column indices of a few thousand columns: uint16)
        a = np.asarray(a)
        return pt.as_tensor_variable(a.astype(np.min_scalar_type(max(int(a.max(initial=0)), 1))))

    theta = pt.as_tensor_variable(theta) - pt.as_tensor_variable(stats.theta0)
    return marginal_logp(
        theta,
        sigma,
        tau,
        pt.as_tensor_variable(np.asarray(stats.yy, dtype=float)),
        pt.as_tensor_variable(stats.wy),
        pt.as_tensor_variable(stats.ay),
        pt.as_tensor_variable(stats.counts),
        pt.as_tensor_variable(np.asarray(stats.gram.data, dtype=float)),
        ints(stats.gram.indices),
        ints(stats.gram.indptr),
        pt.as_tensor_variable(np.asarray(stats.level_design.data, dtype=float)),
        ints(stats.level_design.indices),
        ints(stats.level_design.indptr),
    )[0]


# -- numba ------------------------------------------------------------------------------------
def _register_numba() -> None:
    from pytensor.link.numba.dispatch import basic as numba_basic

    @numba_basic.register_funcify_default_op_cache_key(MarginalLogp)
    def numba_funcify_marginal_logp(op, node=None, **kwargs):
        @numba_basic.numba_njit
        def marginal_logp_kernel(theta, sigma, tau, yy, wy, ay, counts, gd, gi, gp, bd, bi, bp):
            p = theta.size
            n_levels = counts.size
            if wy.size != p or gp.size != p + 1 or bp.size != n_levels + 1 or ay.size != n_levels:
                raise ValueError("MarginalLogp: theta and the statistics do not match")
            s2 = sigma * sigma
            t2 = tau * tau
            d_theta = np.empty(p)
            quad = 0.0
            lin = 0.0
            for k in range(p):  # G theta, theta' G theta, theta' W'y
                acc = 0.0
                for m in range(gp[k], gp[k + 1]):
                    acc += gd[m] * theta[gi[m]]
                quad += theta[k] * acc
                lin += theta[k] * wy[k]
                d_theta[k] = (wy[k] - acc) / s2
            rss = yy - 2.0 * lin + quad
            n_total = 0.0
            sum_log_v = 0.0
            sum_sq_n = 0.0
            sum_sq_nv = 0.0
            sum_inv_v = 0.0
            sum_sq_nvv = 0.0
            sum_n_v = 0.0
            sum_sq_vv = 0.0
            for j in range(n_levels):  # S1 = A y - B theta, and -B' c into the gradient
                s = ay[j]
                for m in range(bp[j], bp[j + 1]):
                    s -= bd[m] * theta[bi[m]]
                n = counts[j]
                v = s2 + n * t2
                inv_v = 1.0 / v
                sq = s * s
                n_total += n
                sum_log_v += np.log(v)
                sum_sq_n += sq / n
                sum_sq_nv += sq * inv_v / n
                sum_inv_v += inv_v
                sum_sq_nvv += sq * inv_v * inv_v / n
                sum_n_v += n * inv_v
                sum_sq_vv += sq * inv_v * inv_v
                c = s * t2 * inv_v / s2
                for m in range(bp[j], bp[j + 1]):
                    d_theta[bi[m]] -= c * bd[m]
            within = rss - sum_sq_n
            value = (
                -0.5 * n_total * 1.8378770664093453
                - (n_total - n_levels) * np.log(sigma)
                - 0.5 * sum_log_v
                - 0.5 * within / s2
                - 0.5 * sum_sq_nv
            )
            d_sigma = (
                -(n_total - n_levels) / sigma
                - sigma * sum_inv_v
                + within / (s2 * sigma)
                + sigma * sum_sq_nvv
            )
            d_tau = tau * (sum_sq_vv - sum_n_v)
            return np.asarray(value), d_theta, np.asarray(d_sigma), np.asarray(d_tau)

        return marginal_logp_kernel, _numba_cache_version()


def _numba_cache_version() -> int:
    """:data:`NUMBA_CACHE_VERSION` and a hash of the kernel's source: an edited kernel gets
    a new PyTensor numba cache key even when the version is not bumped."""
    import hashlib
    import inspect

    try:
        source = inspect.getsource(_register_numba)
    except (OSError, TypeError):  # pragma: no cover - no source (frozen install)
        source = ""
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    return NUMBA_CACHE_VERSION * 10**15 + int(digest, 16) % 10**15


# -- JAX --------------------------------------------------------------------------------------
_JAX_REGISTERED = False


def register_jax() -> None:
    """Register the JAX implementation of :class:`MarginalLogp` (imports JAX; once)."""
    global _JAX_REGISTERED
    if _JAX_REGISTERED:
        return
    import jax
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify

    @jax_funcify.register(MarginalLogp)
    def jax_funcify_marginal_logp(op, **kwargs):
        def marginal_logp_jax(theta, sigma, tau, yy, wy, ay, counts, gd, gi, gp, bd, bi, bp):
            p, n_levels = theta.shape[0], counts.shape[0]
            g_rows = jnp.repeat(jnp.arange(p), jnp.diff(gp), total_repeat_length=gd.shape[0])
            b_rows = jnp.repeat(jnp.arange(n_levels), jnp.diff(bp), total_repeat_length=bd.shape[0])
            g_theta = jax.ops.segment_sum(gd * theta[gi], g_rows, num_segments=p)
            rss = yy - 2.0 * jnp.dot(theta, wy) + jnp.dot(theta, g_theta)
            s1 = ay - jax.ops.segment_sum(bd * theta[bi], b_rows, num_segments=n_levels)
            value, c, d_sigma, d_tau = _density_from_sums(jnp, rss, s1, counts, sigma, tau)
            d_theta = (wy - g_theta) / (sigma * sigma) - jax.ops.segment_sum(
                c[b_rows] * bd, bi, num_segments=p
            )
            return value, d_theta, d_sigma, d_tau

        return marginal_logp_jax

    _JAX_REGISTERED = True


_register_numba()
if "pytensor.link.jax.dispatch" in sys.modules:  # JAX already loaded: nothing to save
    register_jax()
