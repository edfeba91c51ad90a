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

**A Gaussian block integrated out as well.** The last ``k`` coordinates ``theta_b`` of
``theta = [theta_a; theta_b]`` (an Op input ``lam`` of length ``k``; ``k = 0`` is the density
above, with the same arithmetic) can carry a Gaussian prior ``theta_b ~ N(m, diag(lam))`` and be
integrated out too: the caller passes ``theta = [theta_a; m]`` and the Op returns the log
density of

    y ~ N(W_a theta_a + W_b m, Sigma + W_b diag(lam) W_b'),   Sigma = sigma^2 I + tau^2 Z Z'.

With ``D_j = tau^2 / v_j`` (so ``Sigma^-1 = (I - A' diag(D) A) / sigma^2``),

    Q = W_b' Sigma^-1 W_b = (G_bb - B_b' diag(D) B_b) / sigma^2,   P = diag(1/lam) + Q,
    c = W_b' Sigma^-1 (y - W theta) = (W'y - G theta)_b / sigma^2 - B_b' (D S1(theta)) / sigma^2,

the block's conditional mean offset is ``mu = P^-1 c`` and, with ``theta* = theta + [0; mu]``
and ``log p_0`` the density above,

    log p = log p_0(theta*) - 1/2 mu' diag(1/lam) mu - 1/2 sum log(lam) - 1/2 log|P|.

Gradients: ``mu`` maximises the integrand, so (envelope theorem) d/dtheta, d/dsigma and d/dtau
are those of ``log p_0`` at ``theta*`` plus, for sigma and tau, ``-1/2 tr(P^-1 dQ)``:

    d/dsigma += tr(P^-1 Q) / sigma - sigma tau^2 / sigma^2 tr(P^-1 R),   d/dtau += tau tr(P^-1 R),
    d/dlam    = ((mu^2 + diag(P^-1)) / lam^2 - 1/lam) / 2,

with ``R = B_b' diag(1/v^2) B_b`` and ``tr(P^-1 Q) = k - sum diag(P^-1)/lam``. ``D_j`` and
``1/v_j^2`` depend on the level only through its size ``n_j``, so ``B_b' diag(D) B_b`` and ``R``
are sums over the distinct sizes of data-only ``k x k`` matrices (:func:`block_groups`, two
more Op inputs; InstEval: 86 sizes against 2,972 levels), and so do ``D_j``, ``1/v_j``, ``1/n_j``
and ``log v_j``: with the levels sorted by size (:func:`logp` sorts them when ``k > 0``; a
third input holds the groups' boundaries) the kernel's sweeps over ``B`` run group by group,
those numbers constants of the group, with no division or logarithm per level and the row
lengths of ``B`` (which grow with the level size) easy to predict (InstEval: about 35 us
less). ``B``'s block columns ``B_b`` are an Op input of their own, dense ``(J, k)`` (``B``'s
CSR vectors then hold the other columns), unless that is more than four times their non-zeros
and over 2**21 numbers (then they stay in ``B``'s CSR rows, which they close, the column
indices being sorted): the block's gathers and scatters are then short dense loops instead of
a search of every row's end and a scatter into ``k`` entries (InstEval, k = 16: about 80 us
less). One sweep over ``B`` gathers
``S1(theta)`` and ``c``; a hand-written Cholesky factorisation solves the ``k x k`` system;
``G theta`` and ``S1`` are then updated by ``mu`` (``G`` symmetric: its block rows give
``G_{:,b} mu``; ``S1`` from ``B_b``) and a second sweep scatters ``-B' c`` (``k = 0`` does both
in one sweep). With ``k = 0`` the numba kernel is the one from before blocks (the same draws;
the block's inputs are empty); when ``lam``'s length is static (it is for :func:`logp` without
``lam``, and for a block's variances of known size) only the kernel that runs is compiled: the
block kernel takes a few seconds to compile on an empty cache.

:class:`MarginalLogp` returns the value and the four gradient pieces from one call; its
``pullback`` uses those outputs, so a compiled log density and gradient runs the kernel once. The
data (``y'y``, ``W'y``, ``A y``, the counts, ``G`` and ``B`` as their CSR vectors and the
block's size groups) are Op inputs, not Op parameters: lmmformula's nutpie path
(:mod:`lmmformula._nutpie`) turns them into run-time data, so a model refitted on other data of
the same shapes compiles nothing again.

Backends: a numba implementation registered with a PyTensor numba cache key (the Op has no
parameters; the key holds :data:`NUMBA_CACHE_VERSION` and a hash of the kernel's source),
``perform`` (numpy/scipy) for the C and Python backends, and a JAX implementation registered by
:func:`register_jax` (called before sampling with ``sampler="numpyro"`` or ``"blackjax"``;
importing JAX on every ``import lmmformula`` would cost most of a second). The module is
imported (and the numba implementation registered, which imports numba) only when a model
uses the Op.

:func:`statistics` computes the statistics from ``y``, ``W`` and the level index; ``theta`` is
shifted by a least-squares fit ``theta0`` of the response on chosen columns (so ``y'y`` is of
the size of the residual sum of squares and no precision is lost to cancellation for responses
far from zero).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt
import scipy.linalg
import scipy.sparse
from pytensor.gradient import DisconnectedType, grad_not_implemented, grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

__all__ = [
    "NUMBA_CACHE_VERSION",
    "MarginalLogp",
    "MarginalStatistics",
    "block_groups",
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
    y: np.ndarray,
    w,
    index: np.ndarray,
    n_levels: int,
    n_dense: int = 0,
    *,
    dense_columns: np.ndarray | None = None,
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
    dense_columns : numpy.ndarray, optional
        The columns of ``w`` fitted by least squares instead (indices, anywhere in ``w``;
        e.g. the population design placed last, in the integrated block); not together with
        ``n_dense``.
    """
    y = np.asarray(y, dtype=float)
    n = y.size
    w = scipy.sparse.csr_matrix(w, dtype=float)
    index = np.asarray(index)
    if dense_columns is None:
        dense_columns = np.arange(n_dense)
    elif n_dense:
        raise ValueError("statistics: give n_dense or dense_columns, not both")
    dense_columns = np.asarray(dense_columns, dtype=np.int64).reshape(-1)
    theta0 = np.zeros(w.shape[1])
    if dense_columns.size:
        x = w[:, dense_columns].toarray()
        theta0[dense_columns] = np.linalg.lstsq(x, y, rcond=None)[0]
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
def _kernel_numpy(
    theta, sigma, tau, lam, yy, wy, ay, counts, gd, gi, gp, bd, bi, bp, bb, hn, hm, hg
):
    """Value and gradient (numpy/scipy); the reference ``perform`` uses. Returns ``(value,
    d/dtheta, d/dsigma, d/dtau, d/dlam)``; ``-inf`` (and NaN gradients) where ``diag(1/lam) +
    Q`` is not positive definite (``lam`` not positive)."""
    p, j, k = theta.size, counts.size, lam.size
    if wy.size != p or gp.size != p + 1 or bp.size != j + 1 or ay.size != j or k > p:
        raise ValueError("MarginalLogp: theta and the statistics do not match")
    if k and (hm.shape != (hn.size, k, k) or hg.size != hn.size + 1):
        raise ValueError("MarginalLogp: lam and the block's count-group Gram do not match")
    if k and bb.shape[1] and bb.shape != (j, k):
        raise ValueError("MarginalLogp: lam and the block's columns of B do not match")
    g = scipy.sparse.csr_matrix((gd, gi, gp), shape=(p, p))
    if k and bb.shape[1]:  # B's block columns given apart, dense
        b = scipy.sparse.csr_matrix((bd, bi, bp), shape=(j, p - k))
        b = scipy.sparse.hstack([b, scipy.sparse.csr_matrix(bb)], format="csr")
    else:
        b = scipy.sparse.csr_matrix((bd, bi, bp), shape=(j, p))
    s2, t2 = sigma * sigma, tau * tau
    extra, d_lam = 0.0, np.zeros(k)
    d_sigma_extra = d_tau_extra = 0.0
    if k:  # the block: its conditional mean offset ``mu`` and covariance ``cov`` given the rest
        blk = slice(p - k, p)
        v = s2 + counts * t2
        dd = t2 / v  # Sigma^-1 = (I - A' diag(dd) A) / sigma^2
        bb = b[:, blk].toarray()  # (J, k)
        s1 = ay - b @ theta
        c = (wy[blk] - (g @ theta)[blk] - bb.T @ (dd * s1)) / s2
        vg = s2 + hn * t2  # v of each count group
        q = (g[blk][:, blk].toarray() - np.einsum("g,gab->ab", t2 / vg, hm)) / s2
        try:
            chol = np.linalg.cholesky(np.diag(1.0 / lam) + q)
        except np.linalg.LinAlgError:
            return -np.inf, np.full(p, np.nan), np.nan, np.nan, np.full(k, np.nan)
        cov = scipy.linalg.cho_solve((chol, True), np.eye(k))
        mu = cov @ c
        theta = theta.copy()
        theta[blk] += mu
        tr_cov_r = np.sum(cov * np.einsum("g,gab->ab", 1.0 / (vg * vg), hm))  # tr(cov R)
        extra = -0.5 * np.sum(mu * mu / lam) - 0.5 * np.sum(np.log(lam))
        extra -= np.sum(np.log(np.diag(chol)))
        tr_cov_q = k - np.sum(np.diag(cov) / lam)  # tr(cov Q) = tr(cov (P - Lambda^-1))
        # -1/2 tr(cov dQ/dsigma), -1/2 tr(cov dQ/dtau)
        d_sigma_extra = tr_cov_q / sigma - sigma * t2 / s2 * tr_cov_r
        d_tau_extra = tau * tr_cov_r
        d_lam = 0.5 * ((mu * mu + np.diag(cov)) / (lam * lam) - 1.0 / lam)
    g_theta = g @ theta
    rss = yy - 2.0 * (theta @ wy) + theta @ g_theta
    value, c, d_sigma, d_tau = _density_from_sums(np, rss, ay - b @ theta, counts, sigma, tau)
    d_theta = (wy - g_theta) / (sigma * sigma) - b.T @ c
    return (
        float(value + extra),
        np.asarray(d_theta, dtype=float),
        float(d_sigma + d_sigma_extra),
        float(d_tau + d_tau_extra),
        np.asarray(d_lam, dtype=float),
    )


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
    """``(theta, sigma, tau, lam, yy, wy, ay, counts, G data/indices/indptr, B
    data/indices/indptr, B's block columns, group counts, group gram, level groups) -> (log
    density, d/dtheta, d/dsigma, d/dtau, d/dlam)``; ``lam`` holds the prior variances of the
    last ``len(lam)`` coordinates of ``theta`` (integrated out, ``theta`` holding their prior
    means there; empty: none). B's block columns are ``(J, k)`` dense, B's CSR vectors then
    holding its other ``P - k`` columns, or ``(J, 0)``/``(0, 0)`` with all of ``B`` in its CSR
    vectors. The group counts are the distinct level sizes ``n``, the group gram
    (``(groups, k, k)``) the sums of ``b_j b_j'`` over the levels of each size (``b_j`` the
    block part of row ``j`` of ``B``) and the level groups ``(groups + 1,)`` pointers: the
    levels (``ay``, ``counts``, the rows of ``B``) sorted by size, group ``g`` is the levels
    ``ptr[g] .. ptr[g + 1] - 1``; all three empty when ``k = 0``. See the module docstring."""

    __props__ = ()

    def make_node(
        self, theta, sigma, tau, lam, yy, wy, ay, counts, gd, gi, gp, bd, bi, bp, bb, hn, hm, hg
    ):
        floats = [theta, sigma, tau, lam, yy, wy, ay, counts, gd, bd, bb, hn, hm]
        theta, sigma, tau, lam, yy, wy, ay, counts, gd, bd, bb, hn, hm = (
            pt.as_tensor_variable(x).astype("float64") for x in floats
        )
        gi, gp, bi, bp, hg = (pt.as_tensor_variable(x) for x in (gi, gp, bi, bp, hg))
        for name, x, ndim in [
            ("theta", theta, 1),
            ("sigma", sigma, 0),
            ("tau", tau, 0),
            ("lam", lam, 1),
            ("yy", yy, 0),
            ("wy", wy, 1),
            ("ay", ay, 1),
            ("counts", counts, 1),
            ("gram data", gd, 1),
            ("level design data", bd, 1),
            ("dense block of the level design", bb, 2),
            ("group counts", hn, 1),
            ("group gram", hm, 3),
        ]:
            if x.type.ndim != ndim:
                raise TypeError(f"{name} must have {ndim} dimension(s), got {x.type.ndim}")
        for name, x in [("gi", gi), ("gp", gp), ("bi", bi), ("bp", bp), ("hg", hg)]:
            if x.type.ndim != 1 or x.type.dtype[:3] not in ("int", "uin"):
                raise TypeError(f"{name} must be an integer vector, got {x.type}")
        inputs = [
            theta,
            sigma,
            tau,
            lam,
            yy,
            wy,
            ay,
            counts,
            gd,
            gi,
            gp,
            bd,
            bi,
            bp,
            bb,
            hn,
            hm,
            hg,
        ]
        outputs = [pt.dscalar(), theta.type(), pt.dscalar(), pt.dscalar(), lam.type()]
        return Apply(self, inputs, outputs)

    def perform(self, node, inputs, output_storage):
        value, d_theta, d_sigma, d_tau, d_lam = _kernel_numpy(*(np.asarray(x) for x in inputs))
        output_storage[0][0] = np.asarray(value, dtype="float64")
        output_storage[1][0] = d_theta
        output_storage[2][0] = np.asarray(d_sigma, dtype="float64")
        output_storage[3][0] = np.asarray(d_tau, dtype="float64")
        output_storage[4][0] = d_lam

    def infer_shape(self, node, input_shapes):
        return [(), input_shapes[0], (), (), input_shapes[3]]

    def connection_pattern(self, node):
        return [[True, i == 0, i == 1, i == 2, i == 3] for i in range(len(node.inputs))]

    def pullback(self, inputs, outputs, output_grads):
        for g in output_grads[1:]:
            if not isinstance(g.type, DisconnectedType):
                raise NotImplementedError("second derivatives of MarginalLogp are not available")
        g = output_grads[0]
        out = [g * outputs[1], g * outputs[2], g * outputs[3], g * outputs[4]]
        for i, x in enumerate(inputs[4:], start=4):
            if x.type.dtype.startswith("float"):
                out.append(grad_not_implemented(self, i, x, "gradient with respect to data"))
            else:
                out.append(grad_undefined(self, i, x))
        return out

    L_op = pullback  # PyTensor releases before ``pullback`` call ``L_op``


marginal_logp = MarginalLogp()


def logp(theta, sigma, tau, stats: MarginalStatistics, lam=None, *, dense_block=None):
    """The marginal log density (a PyTensor scalar) at the coefficients ``theta`` (the
    statistics' ``theta0`` is subtracted here). ``lam`` (a vector of ``k`` prior variances,
    ``k`` known when the graph is built; ``None``: no block) integrates the last ``k``
    coordinates of ``theta`` out as well, ``theta`` holding their prior means there (module
    docstring). ``dense_block``: pass the block's columns of ``B`` as a dense ``(J, k)`` input
    apart from the others (faster), or leave them in ``B``'s CSR vectors; ``None`` chooses
    dense unless it holds more than four times the block's non-zeros and over 2**21 numbers."""

    def ints(a):  # the smallest type (column indices of a few thousand columns: uint16)
        a = np.asarray(a)
        return pt.as_tensor_variable(a.astype(np.min_scalar_type(max(int(a.max(initial=0)), 1))))

    theta = pt.as_tensor_variable(theta) - pt.as_tensor_variable(stats.theta0)
    lam = pt.as_tensor_variable(np.zeros(0) if lam is None else lam)
    if lam.type.ndim != 1:
        raise ValueError("logp: lam must be a vector")
    k = lam.type.shape[0]
    if k is None:  # a length PyTensor can still work out (repeat, concatenate, ...)
        from pytensor.tensor.basic import get_underlying_scalar_constant_value
        from pytensor.tensor.exceptions import NotScalarConstantError

        try:
            k = int(get_underlying_scalar_constant_value(lam.shape[0]))
        except NotScalarConstantError:
            raise ValueError("logp: lam must have a static length (the block's size)") from None
        lam = pt.specify_shape(lam, (k,))
    group_counts, group_gram = block_groups(stats, k)
    b, ay, counts = stats.level_design, stats.ay, stats.counts
    n_levels, p = b.shape
    dense = np.zeros((0, 0))
    group_ptr = np.zeros(0, dtype=np.int64)
    if k:  # levels sorted by size (the density sums over levels): group g is ptr[g]..ptr[g+1]
        order = np.argsort(counts, kind="stable")
        b, ay, counts = b[order].tocsr(), ay[order], counts[order]
        b.sort_indices()
        group_ptr = np.r_[np.searchsorted(counts, group_counts), n_levels]
        if dense_block is None:
            nnz_block = int(np.count_nonzero(b.indices >= p - k))
            dense_block = n_levels * k <= max(4 * nnz_block, 2**21)
        if dense_block:  # B = [B_a | dense]
            dense = np.ascontiguousarray(b[:, p - k :].toarray())
            b = b[:, : p - k].tocsr()
            b.sort_indices()
    return marginal_logp(
        theta,
        sigma,
        tau,
        lam,
        pt.as_tensor_variable(np.asarray(stats.yy, dtype=float)),
        pt.as_tensor_variable(stats.wy),
        pt.as_tensor_variable(ay),
        pt.as_tensor_variable(counts),
        pt.as_tensor_variable(np.asarray(stats.gram.data, dtype=float)),
        ints(stats.gram.indices),
        ints(stats.gram.indptr),
        pt.as_tensor_variable(np.asarray(b.data, dtype=float)),
        ints(b.indices),
        ints(b.indptr),
        pt.as_tensor_variable(dense),
        pt.as_tensor_variable(group_counts),
        pt.as_tensor_variable(group_gram),
        ints(group_ptr),
    )[0]


def block_groups(stats: MarginalStatistics, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct level sizes ``n`` and, for each, the sum of ``b_j b_j'`` over the levels of
    that size (``b_j``: the last ``k`` entries of row ``j`` of ``B = A W``); ``(groups, k, k)``.
    Data only: the block's ``B_b' diag(f(n_j)) B_b`` is then a sum over the groups."""
    if k == 0:
        return np.zeros(0), np.zeros((0, 0, 0))
    p = stats.level_design.shape[1]
    if not 0 < k <= p:
        raise ValueError(f"block of {k} coordinates for {p} coefficients")
    bb = stats.level_design[:, p - k :].toarray()
    sizes, group = np.unique(stats.counts, return_inverse=True)
    gram = np.stack([bb[group == g].T @ bb[group == g] for g in range(sizes.size)])
    return np.asarray(sizes, dtype=float), gram


# -- numba ------------------------------------------------------------------------------------
def _register_numba() -> None:
    from pytensor.link.numba.dispatch import basic as numba_basic

    @numba_basic.register_funcify_default_op_cache_key(MarginalLogp)
    def numba_funcify_marginal_logp(op, node=None, **kwargs):
        @numba_basic.numba_njit  # no block: the kernel from before blocks (lam unused)
        def plain_kernel(
            theta, sigma, tau, lam, yy, wy, ay, counts, gd, gi, gp, bd, bi, bp, bb, hn, hm, hg
        ):
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
            return (
                np.asarray(value),
                d_theta,
                np.asarray(d_sigma),
                np.asarray(d_tau),
                np.zeros(0),
            )

        @numba_basic.numba_njit  # a block of nb = len(lam) >= 1 coordinates integrated out
        def block_kernel(
            theta, sigma, tau, lam, yy, wy, ay, counts, gd, gi, gp, bd, bi, bp, bb, hn, hm, hg
        ):
            p = theta.size
            n_levels = counts.size
            nb = lam.size
            n_groups = hn.size
            dense = bb.shape[1] > 0  # B's block columns in bb, not in (bd, bi, bp)
            if (
                wy.size != p
                or gp.size != p + 1
                or bp.size != n_levels + 1
                or ay.size != n_levels
                or nb > p
            ):
                raise ValueError("MarginalLogp: theta and the statistics do not match")
            if hm.shape[0] != n_groups or hm.shape[1] != nb or hm.shape[2] != nb:
                raise ValueError("MarginalLogp: lam and the block's count-group Gram do not match")
            if dense and (bb.shape[0] != n_levels or bb.shape[1] != nb):
                raise ValueError("MarginalLogp: lam and the block's columns of B do not match")
            if hg.size != n_groups + 1 or hg[0] != 0 or hg[n_groups] != n_levels:
                raise ValueError("MarginalLogp: the levels' size groups do not match")
            for g in range(n_groups):  # levels sorted by size: group g is hg[g] .. hg[g + 1] - 1
                if hg[g + 1] < hg[g]:
                    raise ValueError("MarginalLogp: the levels' size groups do not match")
            s2 = sigma * sigma
            t2 = tau * tau
            d_theta = np.empty(p)
            d_lam = np.zeros(nb)
            quad = 0.0
            lin = 0.0
            extra = 0.0
            d_sigma_extra = 0.0
            b0 = p - nb  # the block's first column
            mu = np.zeros(nb)
            g_theta = np.empty(p)
            for k in range(p):
                acc = 0.0
                for m in range(gp[k], gp[k + 1]):
                    acc += gd[m] * theta[gi[m]]
                g_theta[k] = acc
            # per size group: D = tau^2 / v, 1/v, 1/n (no division or log per level)
            tab_d = np.empty(n_groups)
            tab_inv_v = np.empty(n_groups)
            tab_inv_n = np.empty(n_groups)
            for g in range(n_groups):
                v = s2 + hn[g] * t2
                tab_d[g] = t2 / v
                tab_inv_v[g] = 1.0 / v
                tab_inv_n[g] = 1.0 / hn[g]
            # lower triangles of G_bb - B_b' D B_b (then P) and R = B_b' diag(1/v^2) B_b
            pm = np.zeros((nb, nb))
            rm = np.zeros((nb, nb))
            cb = np.zeros(nb)  # B_b' D S1
            for r in range(b0, p):  # block rows of G: block columns close the row
                m = gp[r + 1] - 1
                while m >= gp[r] and gi[m] >= b0:
                    if gi[m] <= r:
                        pm[r - b0, gi[m] - b0] += gd[m]
                    m -= 1
            s1 = np.empty(n_levels)
            theta_b = theta[b0:]
            # S1 at theta and cb; dense and CSR block apart (one branch per level is slower)
            if dense:
                for g in range(n_groups):
                    dg = tab_d[g]
                    for j in range(hg[g], hg[g + 1]):
                        s = ay[j]
                        for m in range(bp[j], bp[j + 1]):
                            s -= bd[m] * theta[bi[m]]
                        row = bb[j]
                        for a in range(nb):
                            s -= row[a] * theta_b[a]
                        s1[j] = s
                        ds = s * dg
                        for a in range(nb):
                            cb[a] += ds * row[a]
            else:
                for g in range(n_groups):
                    dg = tab_d[g]
                    for j in range(hg[g], hg[g + 1]):
                        s = ay[j]
                        for m in range(bp[j], bp[j + 1]):
                            s -= bd[m] * theta[bi[m]]
                        s1[j] = s
                        ds = s * dg
                        m = bp[j + 1] - 1
                        while m >= bp[j] and bi[m] >= b0:  # the block entries close the row
                            cb[bi[m] - b0] += ds * bd[m]
                            m -= 1
            for g in range(n_groups):  # B_b' D B_b and R from the count groups' sums
                dg = tab_d[g]
                wg = tab_inv_v[g] * tab_inv_v[g]
                for a in range(nb):
                    for b in range(a + 1):
                        x = hm[g, a, b]
                        pm[a, b] -= dg * x
                        rm[a, b] += wg * x
            chol = np.zeros((nb, nb))  # P = L L' (lower)
            log_det = 0.0
            for a in range(nb):
                for b in range(a + 1):
                    acc = pm[a, b] / s2
                    if a == b:
                        acc += 1.0 / lam[a]
                    for q in range(b):
                        acc -= chol[a, q] * chol[b, q]
                    if a == b:
                        if not acc > 0.0:  # lam not positive (or not finite)
                            return (
                                np.asarray(-np.inf),
                                np.full(p, np.nan),
                                np.asarray(np.nan),
                                np.asarray(np.nan),
                                np.full(nb, np.nan),
                            )
                        chol[a, a] = np.sqrt(acc)
                        log_det += np.log(chol[a, a])
                    else:
                        chol[a, b] = acc / chol[b, b]
            inv = np.zeros((nb, nb))  # L^-1 (lower)
            for a in range(nb):
                inv[a, a] = 1.0 / chol[a, a]
                for b in range(a):
                    acc = 0.0
                    for q in range(b, a):
                        acc += chol[a, q] * inv[q, b]
                    inv[a, b] = -acc / chol[a, a]
            cov = np.zeros((nb, nb))  # P^-1 = L^-T L^-1
            for a in range(nb):
                for b in range(a + 1):
                    acc = 0.0
                    for q in range(a, nb):
                        acc += inv[q, a] * inv[q, b]
                    cov[a, b] = acc
                    cov[b, a] = acc
            for a in range(nb):  # mu = P^-1 c
                acc = 0.0
                for b in range(nb):
                    cr = (wy[b0 + b] - g_theta[b0 + b] - cb[b]) / s2
                    acc += cov[a, b] * cr
                mu[a] = acc
            tr_cov_r = 0.0
            sum_log_lam = 0.0
            for a in range(nb):
                tr_cov_r += cov[a, a] * rm[a, a]
                for b in range(a):
                    tr_cov_r += 2.0 * cov[a, b] * rm[a, b]
                il = 1.0 / lam[a]
                extra -= 0.5 * mu[a] * mu[a] * il
                sum_log_lam += np.log(lam[a])
                d_sigma_extra -= cov[a, a] * il
                d_lam[a] = 0.5 * ((mu[a] * mu[a] + cov[a, a]) * il * il - il)
            extra -= 0.5 * sum_log_lam + log_det
            # -1/2 tr(P^-1 dQ/dsigma) with tr(P^-1 Q) = k - sum diag(P^-1)/lam
            d_sigma_extra = (nb + d_sigma_extra) / sigma - sigma * t2 / s2 * tr_cov_r
            d_tau_extra = tau * tr_cov_r
            for r in range(b0, p):  # G theta* = G theta + G_{:,b} mu (G symmetric)
                mr = mu[r - b0]
                for m in range(gp[r], gp[r + 1]):
                    g_theta[gi[m]] += gd[m] * mr
            for k in range(p):
                th = theta[k] if k < b0 else theta[k] + mu[k - b0]
                acc = g_theta[k]
                quad += th * acc
                lin += th * wy[k]
                d_theta[k] = (wy[k] - acc) / s2
            rss = yy - 2.0 * lin + quad
            sum_sq_n = 0.0
            sum_sq_nv = 0.0
            sum_sq_nvv = 0.0
            sum_sq_vv = 0.0
            n_in_group = np.zeros(n_groups)
            d_theta_b = np.zeros(nb)  # -B_b' c (dense)
            for g in range(n_groups):  # the density at theta*, and -B' c into the gradient
                cg = tab_d[g] / s2
                sq_g = 0.0  # sum of S1^2 over the group's levels, S1 at theta* = S1 - B_b mu
                if dense:
                    for j in range(hg[g], hg[g + 1]):
                        s = s1[j]
                        row = bb[j]
                        for a in range(nb):
                            s -= row[a] * mu[a]
                        sq_g += s * s
                        c = s * cg
                        for m in range(bp[j], bp[j + 1]):
                            d_theta[bi[m]] -= c * bd[m]
                        for a in range(nb):
                            d_theta_b[a] += c * row[a]
                else:
                    for j in range(hg[g], hg[g + 1]):
                        s = s1[j]
                        m = bp[j + 1] - 1
                        while m >= bp[j] and bi[m] >= b0:
                            s -= bd[m] * mu[bi[m] - b0]
                            m -= 1
                        sq_g += s * s
                        c = s * cg
                        for m in range(bp[j], bp[j + 1]):
                            d_theta[bi[m]] -= c * bd[m]
                n_in_group[g] = hg[g + 1] - hg[g]
                inv_v = tab_inv_v[g]
                inv_n = tab_inv_n[g]
                sum_sq_n += sq_g * inv_n
                sum_sq_nv += sq_g * inv_v * inv_n
                sum_sq_nvv += sq_g * inv_v * inv_v * inv_n
                sum_sq_vv += sq_g * inv_v * inv_v
            for a in range(nb):
                d_theta[b0 + a] -= d_theta_b[a]
            n_total = 0.0
            sum_log_v = 0.0
            sum_inv_v = 0.0
            sum_n_v = 0.0
            for g in range(n_groups):  # the sums over levels that depend on n alone
                ng = n_in_group[g]
                n_total += ng * hn[g]
                sum_log_v += ng * np.log(s2 + hn[g] * t2)
                sum_inv_v += ng * tab_inv_v[g]
                sum_n_v += ng * hn[g] * tab_inv_v[g]
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
            return (
                np.asarray(value + extra),
                d_theta,
                np.asarray(d_sigma + d_sigma_extra),
                np.asarray(d_tau + d_tau_extra),
                d_lam,
            )

        @numba_basic.numba_njit
        def marginal_logp_kernel(
            theta, sigma, tau, lam, yy, wy, ay, counts, gd, gi, gp, bd, bi, bp, bb, hn, hm, hg
        ):
            if lam.size == 0:
                return plain_kernel(
                    theta,
                    sigma,
                    tau,
                    lam,
                    yy,
                    wy,
                    ay,
                    counts,
                    gd,
                    gi,
                    gp,
                    bd,
                    bi,
                    bp,
                    bb,
                    hn,
                    hm,
                    hg,
                )
            return block_kernel(
                theta, sigma, tau, lam, yy, wy, ay, counts, gd, gi, gp, bd, bi, bp, bb, hn, hm, hg
            )

        # The block's length is usually static: compile only the kernel that runs (the block
        # kernel takes seconds to compile; a model without block compiles what it did before).
        # Each choice has its own cache key.
        version = 3 * _numba_cache_version()
        k = None if node is None else node.inputs[3].type.shape[0]
        if k == 0:
            return plain_kernel, version
        if k is not None:
            return block_kernel, version + 1
        return marginal_logp_kernel, version + 2


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
    import jax.scipy.linalg
    from pytensor.link.jax.dispatch import jax_funcify

    @jax_funcify.register(MarginalLogp)
    def jax_funcify_marginal_logp(op, **kwargs):
        def marginal_logp_jax(
            theta, sigma, tau, lam, yy, wy, ay, counts, gd, gi, gp, bd, bi, bp, bb, hn, hm, hg
        ):
            p, n_levels, nb = theta.shape[0], counts.shape[0], lam.shape[0]
            g_rows = jnp.repeat(jnp.arange(p), jnp.diff(gp), total_repeat_length=gd.shape[0])
            b_rows = jnp.repeat(jnp.arange(n_levels), jnp.diff(bp), total_repeat_length=bd.shape[0])
            g_theta = jax.ops.segment_sum(gd * theta[gi], g_rows, num_segments=p)
            s1 = ay - jax.ops.segment_sum(bd * theta[bi], b_rows, num_segments=n_levels)
            dense = nb > 0 and bb.shape[1] > 0  # B's block columns given apart in bb
            if dense:
                s1 = s1 - bb @ theta[p - nb :]
            if nb:  # the block (module docstring); static shapes: masks, not row slices
                b0 = p - nb
                s2, t2 = sigma * sigma, tau * tau
                v = s2 + counts * t2
                dd = t2 / v
                if not dense:
                    in_b = bi >= b0
                    bb = (
                        jnp.zeros((n_levels, nb))
                        .at[b_rows, jnp.where(in_b, bi - b0, 0)]
                        .add(jnp.where(in_b, bd, 0.0))
                    )
                in_g = (g_rows >= b0) & (gi >= b0)
                gbb = (
                    jnp.zeros((nb, nb))
                    .at[jnp.where(in_g, g_rows - b0, 0), jnp.where(in_g, gi - b0, 0)]
                    .add(jnp.where(in_g, gd, 0.0))
                )
                c = (wy[b0:] - g_theta[b0:] - bb.T @ (dd * s1)) / s2
                vg = s2 + hn * t2  # v of each count group
                q = (gbb - jnp.einsum("g,gab->ab", t2 / vg, hm)) / s2
                chol = jnp.linalg.cholesky(jnp.diag(1.0 / lam) + q)
                cov = jax.scipy.linalg.cho_solve((chol, True), jnp.eye(nb))
                mu = cov @ c
                mu_full = jnp.concatenate([jnp.zeros(b0), mu])
                theta = theta + mu_full
                g_theta = g_theta + jax.ops.segment_sum(gd * mu_full[gi], g_rows, num_segments=p)
                s1 = s1 - bb @ mu
                tr_cov_r = jnp.sum(cov * jnp.einsum("g,gab->ab", 1.0 / (vg * vg), hm))
                extra = (
                    -0.5 * jnp.sum(mu * mu / lam)
                    - 0.5 * jnp.sum(jnp.log(lam))
                    - jnp.sum(jnp.log(jnp.diag(chol)))
                )
                tr_cov_q = nb - jnp.sum(jnp.diag(cov) / lam)
                d_sigma_extra = tr_cov_q / sigma - sigma * t2 / s2 * tr_cov_r
                d_tau_extra = tau * tr_cov_r
                d_lam = 0.5 * ((mu * mu + jnp.diag(cov)) / (lam * lam) - 1.0 / lam)
            rss = yy - 2.0 * jnp.dot(theta, wy) + jnp.dot(theta, g_theta)
            value, c, d_sigma, d_tau = _density_from_sums(jnp, rss, s1, counts, sigma, tau)
            d_theta = (wy - g_theta) / (sigma * sigma) - jax.ops.segment_sum(
                c[b_rows] * bd, bi, num_segments=p
            )
            if dense:
                d_theta = d_theta.at[p - nb :].add(-(bb.T @ c))
            if nb:
                return (
                    value + extra,
                    d_theta,
                    d_sigma + d_sigma_extra,
                    d_tau + d_tau_extra,
                    d_lam,
                )
            return value, d_theta, d_sigma, d_tau, jnp.zeros(0)

        return marginal_logp_jax

    _JAX_REGISTERED = True


_register_numba()
if "pytensor.link.jax.dispatch" in sys.modules:  # JAX already loaded: nothing to save
    register_jax()
