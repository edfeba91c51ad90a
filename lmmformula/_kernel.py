"""One compiled kernel for the log density of a whole gaussian mixed model.

PyTensor's numba backend compiles a model's log density and gradient one operation at a time:
about 300 small numba compilations for ``Reaction ~ Days + (Days|Subject)``, 20-30 s on a
machine whose compile caches are empty (benchmarks/RESULTS.md, sections 8 and 10). Most
first fits are of one shape: a gaussian response (on sufficient statistics,
:mod:`lmmformula._suffstats`, or row by row) or a bernoulli, binomial (logit) or poisson (log)
one, population coefficients and offsets, correlated blocks (one ``LKJCholeskyCov`` each,
non-centered) and uncorrelated non-centered group-level terms, with the usual priors. For
those the density and its gradient are written out here once, as loops over
arrays that describe the model (:class:`KernelPlan`), and compiled as one numba callback with
nutpie's signature. The source is fixed, so numba compiles it once per machine and every
later model of this shape, of any size, loads it from the cache.

Trust: the plan is read from the PyMC model lmmformula built (distributions, their
parameters, transforms, block structure), and before a kernel is used its log density, its
gradient and its expanded draws are compared with PyMC's own graph of the same model
(compiled in PyTensor's Python mode, which compiles nothing) at two points
(:func:`verify`). Any difference, or anything in the model the kernel does not know, sends
the model down the usual PyTensor path; :data:`STRICT` makes a difference an error (the test
suite sets it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["STRICT", "KernelPlan", "plan_model", "verify"]

KERNEL_VERSION = "lmmformula-model-kernel-1"

STRICT = False
"""Raise :class:`KernelMismatch` instead of falling back when a kernel disagrees with PyMC."""

ENABLED = True
"""Use the kernel for models it covers (off: always PyTensor's numba path)."""

# prior kinds (the kernel's ``dist``)
NORMAL, HALFNORMAL, EXPONENTIAL, STUDENTT, HALFSTUDENTT, CAUCHY, HALFCAUCHY, GAMMA = range(8)
FLAT, HALFFLAT = 8, 9

# where a prior segment's values are: x (identity or log scale) or the blocks' sds in S
IDENTITY, LOG, SCRATCH = 0, 1, 2

# likelihoods
_FAMILY_CODE = {"gaussian": 0, "bernoulli": 1, "binomial": 2, "poisson": 3}
_FAMILY_RV = {
    "gaussian": "NormalRV",
    "bernoulli": "BernoulliRV",
    "binomial": "BinomialRV",
    "poisson": "PoissonRV",
}

# expanded outputs
OUT_EXP, OUT_LKJ, OUT_CORR, OUT_STDS, OUT_COEF, OUT_COPY = range(6)

# The integer table I starts with a header of _HEADER slots (offsets are into I, F or the
# per-call scratch array S, as named):
#   0 n_dim, 1 rows, 2 population columns p, 3-4 prior segments (count, I offset),
#   5-6 blocks (count, I offset), 7-8 group-level terms (count, I offset),
#   9 I offset of the population coefficients' positions in x, 10 position of log sigma in x,
#   11 F offset of the (rows, p) design, 12 F offset of y, 13 F offset of (n, constant),
#   14 length of S, 15 S offset of the residuals, 16-18 the likelihood gradient's mirror of the
#   coefficients in S (start, length, start of the region mirrored), 19-20 stored outputs
#   (count, I offset), 21 n_expanded, 22 family, 23 F offset of binomial trials, 24 F offset
#   of the linear predictor's offsets. Records are _SEG, _BLK, _TRM and _OUT integers wide.
_HEADER = 32
_SEG = 7  # start, length, kind, transform, F offset of (a, b, c, const) rows, stride, gradient
_BLK = 8  # packed start, n, levels, offsets start, F offset (norm, mean[n], eta), sds S, -, L S
_TRM = 12  # kind, e, levels, gidx I, z F, coef S, stride, c0, offsets x, sd x, sd stride, block
_OUT = 6  # kind, a, b, c, d, length


class KernelMismatch(RuntimeError):
    """The kernel's density differs from PyMC's graph of the same model."""


class Unsupported(Exception):
    """The model has something the kernel does not cover (the message says what)."""


# --------------------------------------------------------------------------------------------
# The kernel's source (fixed: one compilation per machine)

# x, I, F, S in scope: the blocks' Cholesky factors and every term's coefficients into S
_COEFS = """
    n_blocks = I[5]
    blk = I[6]
    for bi in range(n_blocks):
        r = blk + 8 * bi
        start = I[r]
        n = I[r + 1]
        levels = I[r + 2]
        zs = I[r + 3]
        fo = I[r + 4]
        so = I[r + 7]
        for i in range(n * n):
            S[so + i] = 0.0
        idx = start
        for i in range(n):
            for k in range(i + 1):
                val = x[idx]
                if k == i:
                    val = math.exp(val)
                S[so + i * n + k] = val
                idx += 1
        co = so + 2 * n * n
        for g in range(levels):
            for cc in range(n):
                acc = F[fo + 1 + cc]
                for k in range(cc + 1):
                    acc += x[zs + g * n + k] * S[so + cc * n + k]
                S[co + g * n + cc] = acc
    n_terms = I[7]
    trm = I[8]
    for ti in range(n_terms):
        r = trm + 12 * ti
        if I[r] != 1:
            continue
        e = I[r + 1]
        levels = I[r + 2]
        cs = I[r + 5]
        xo = I[r + 8]
        sdx = I[r + 9]
        sds = I[r + 10]
        for g in range(levels):
            for cc in range(e):
                S[cs + g * e + cc] = x[xo + g * e + cc] * math.exp(x[sdx + cc * sds])
"""

_LOGP_SRC = (
    """
def lmmformula_kernel_logp(dim, x_, out_, logp_, user_data_):
    ptrs = numba.carray(user_data_, (4,), np.uint64)
    I = numba.carray(_as_void_ptr(ptrs[0]), (ptrs[1],), np.int64)
    F = numba.carray(_as_void_ptr(ptrs[2]), (ptrs[3],), np.float64)
    if dim != I[0]:
        return -1
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (dim,))
    S = np.zeros(I[14])
    for i in range(dim):
        out[i] = 0.0
    lp = 0.0
"""
    + _COEFS
    + """
    # the LKJ densities (PyMC's LKJCholeskyCov) without their sd priors; the sds into S
    for bi in range(n_blocks):
        r = blk + 8 * bi
        n = I[r + 1]
        fo = I[r + 4]
        sdo = I[r + 5]
        so = I[r + 7]
        dl = so + n * n
        lp += F[fo]
        eta = F[fo + 1 + n]
        for i in range(n):
            ss = 0.0
            for k in range(i + 1):
                ss += S[so + i * n + k] * S[so + i * n + k]
            sd = math.sqrt(ss)
            lsd = math.log(sd)
            ai = 2.0 * eta - 2.0 + n - i
            lii = S[so + i * n + i]
            lp += ai * (math.log(lii) - lsd) - i * lsd
            S[sdo + i] = sd
            common = -(ai + i) / (sd * sd)
            for k in range(i + 1):
                S[dl + i * n + k] = common * S[so + i * n + k]
            S[dl + i * n + i] += ai / lii
    # every prior: on slices of x (identity or log scale) and on the blocks' sds
    seg = I[4]
    for si in range(I[3]):
        r = seg + 7 * si
        start = I[r]
        kind = I[r + 2]
        tr = I[r + 3]
        fo = I[r + 4]
        fs = I[r + 5]
        gs = I[r + 6]
        for j in range(I[r + 1]):
            u = x[start + j] if tr != 2 else S[start + j]
            v = math.exp(u) if tr == 1 else u
            q = fo + j * fs
            a = F[q]
            b = F[q + 1]
            c = F[q + 2]
            lpj = F[q + 3]
            dj = 0.0
            if kind == 0:
                zz = (v - a) / b
                lpj -= 0.5 * zz * zz
                dj = -zz / b
            elif kind == 1:
                zz = v / b
                lpj -= 0.5 * zz * zz
                dj = -zz / b
            elif kind == 2:
                lpj -= a * v
                dj = -a
            elif kind == 3 or kind == 4:
                dd = v - b
                lpj -= 0.5 * (a + 1.0) * math.log1p(dd * dd / (a * c * c))
                dj = -(a + 1.0) * dd / (a * c * c + dd * dd)
            elif kind == 5 or kind == 6:
                dd = v - b
                lpj -= math.log1p((dd / c) * (dd / c))
                dj = -2.0 * dd / (c * c + dd * dd)
            elif kind == 7:
                lpj += (a - 1.0) * math.log(v) - b * v
                dj = (a - 1.0) / v - b
            if v < 0.0 and (kind == 1 or kind == 2 or kind == 4 or kind == 6 or kind == 9):
                lpj = -math.inf
            if tr == 1:
                lp += lpj + u
                out[gs + j] += dj * v + 1.0
            elif tr == 2:
                lp += lpj
                S[gs + j] += dj
            else:
                lp += lpj
                out[gs + j] += dj
    for bi in range(n_blocks):
        r = blk + 8 * bi
        n = I[r + 1]
        sdo = I[r + 5]
        so = I[r + 7]
        dl = so + n * n
        for i in range(n):
            w = S[sdo + n + i] / S[sdo + i]
            for k in range(i + 1):
                S[dl + i * n + k] += w * S[so + i * n + k]
    # the likelihood: gaussian on the (pseudo) observations, or bernoulli / binomial (logit)
    # and poisson (log) on the rows; S[rs + t] holds the residual (gaussian) or d loglik / d eta
    rows = I[1]
    p = I[2]
    bo = I[9]
    xf = I[11]
    yf = I[12]
    cf = I[13]
    rs = I[15]
    family = I[22]
    tf = I[23]
    of = I[24]
    ss = 0.0
    ll = F[cf + 1]
    for t in range(rows):
        eta_t = F[of + t]
        for j in range(p):
            eta_t += F[xf + t * p + j] * x[I[bo + j]]
        for ti in range(n_terms):
            r = trm + 12 * ti
            e = I[r + 1]
            g = I[I[r + 3] + t]
            zf = I[r + 4]
            cs = I[r + 5]
            st = I[r + 6]
            c0 = I[r + 7]
            for cc in range(e):
                eta_t += F[zf + t * e + cc] * S[cs + g * st + c0 + cc]
        yt = F[yf + t]
        if family == 0:
            res = yt - eta_t
            S[rs + t] = res
            ss += res * res
        elif family == 3:
            mu = math.exp(eta_t)
            ll += yt * eta_t - mu
            S[rs + t] = yt - mu
        else:
            if eta_t > 0.0:
                ex = math.exp(-eta_t)
                softplus = eta_t + math.log1p(ex)
                prob = 1.0 / (1.0 + ex)
            else:
                ex = math.exp(eta_t)
                softplus = math.log1p(ex)
                prob = ex / (1.0 + ex)
            ll += yt * eta_t - F[tf + t] * softplus
            S[rs + t] = yt - F[tf + t] * prob
    s2 = 1.0
    if family == 0:
        sig_pos = I[10]
        sigma = math.exp(x[sig_pos])
        s2 = sigma * sigma
        nobs = F[cf]
        rss = F[cf + 1]
        lp += -nobs * x[sig_pos] - 0.5 * nobs * math.log(2.0 * math.pi) - (ss + rss) / (2.0 * s2)
        out[sig_pos] += -nobs + (ss + rss) / s2
    else:
        lp += ll
    # gradient of the likelihood in the coefficients: into S, mirrored I[16] - I[18] further on
    shift = I[16] - I[18]
    for t in range(rows):
        w = S[rs + t] / s2
        for j in range(p):
            out[I[bo + j]] += F[xf + t * p + j] * w
        for ti in range(n_terms):
            r = trm + 12 * ti
            e = I[r + 1]
            g = I[I[r + 3] + t]
            zf = I[r + 4]
            cs = I[r + 5]
            st = I[r + 6]
            c0 = I[r + 7]
            for cc in range(e):
                S[shift + cs + g * st + c0 + cc] += F[zf + t * e + cc] * w
    # back to x: uncorrelated terms (coef = offset * exp(log sd))
    for ti in range(n_terms):
        r = trm + 12 * ti
        if I[r] != 1:
            continue
        e = I[r + 1]
        cs = I[r + 5]
        xo = I[r + 8]
        sdx = I[r + 9]
        sds = I[r + 10]
        for g in range(I[r + 2]):
            for cc in range(e):
                gv = S[shift + cs + g * e + cc]
                sd = math.exp(x[sdx + cc * sds])
                out[xo + g * e + cc] += gv * sd
                out[sdx + cc * sds] += gv * x[xo + g * e + cc] * sd
    # back to x: blocks (coef = z L' + mean; packed L with its diagonal on the log scale)
    for bi in range(n_blocks):
        r = blk + 8 * bi
        start = I[r]
        n = I[r + 1]
        zs = I[r + 3]
        so = I[r + 7]
        dl = so + n * n
        gc = shift + so + 2 * n * n
        for g in range(I[r + 2]):
            for cc in range(n):
                gv = S[gc + g * n + cc]
                for k in range(cc + 1):
                    out[zs + g * n + k] += gv * S[so + cc * n + k]
                    S[dl + cc * n + k] += gv * x[zs + g * n + k]
        idx = start
        for i in range(n):
            for k in range(i + 1):
                if k == i:
                    out[idx] += S[dl + i * n + i] * S[so + i * n + i] + 1.0
                    lp += x[idx]
                else:
                    out[idx] += S[dl + i * n + k]
                idx += 1
    logp_[0] = lp
    for i in range(dim):
        if not math.isfinite(out[i]):
            return 3
    if not math.isfinite(lp):
        return 4
    return 0
"""
)

_EXPAND_SRC = (
    """
def lmmformula_kernel_expand(dim, expanded, x_, out_, user_data_):
    ptrs = numba.carray(user_data_, (4,), np.uint64)
    I = numba.carray(_as_void_ptr(ptrs[0]), (ptrs[1],), np.int64)
    F = numba.carray(_as_void_ptr(ptrs[2]), (ptrs[3],), np.float64)
    if dim != I[0] or expanded != I[21]:
        return -1
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (expanded,))
    S = np.zeros(I[14])
"""
    + _COEFS
    + """
    pos = 0
    oo = I[20]
    for oi in range(I[19]):
        r = oo + 6 * oi
        kind = I[r]
        a = I[r + 1]
        b = I[r + 2]
        c = I[r + 3]
        length = I[r + 5]
        if kind == 5:
            for j in range(length):
                out[pos + j] = x[a + j]
        elif kind == 0:
            for j in range(length):
                out[pos + j] = math.exp(x[a + j])
        elif kind == 4:
            tr = trm + 12 * a
            e = I[tr + 1]
            cs = I[tr + 5]
            st = I[tr + 6]
            c0 = I[tr + 7]
            for g in range(I[tr + 2]):
                for cc in range(e):
                    out[pos + g * e + cc] = S[cs + g * st + c0 + cc]
        else:
            br = blk + 8 * a
            n = I[br + 1]
            so = I[br + 7]
            if kind == 1:
                j = 0
                for i in range(n):
                    for k in range(i + 1):
                        out[pos + j] = S[so + i * n + k]
                        j += 1
            else:
                for i in range(n):
                    ss = 0.0
                    for k in range(i + 1):
                        ss += S[so + i * n + k] * S[so + i * n + k]
                    S[so + n * n + i] = math.sqrt(ss)
                if kind == 3:
                    for j in range(c):
                        out[pos + j] = S[so + n * n + b + j]
                else:
                    for i in range(n):
                        for j in range(n):
                            acc = 0.0
                            for k in range(min(i, j) + 1):
                                acc += S[so + i * n + k] * S[so + j * n + k]
                            out[pos + i * n + j] = acc / (S[so + n * n + i] * S[so + n * n + j])
        pos += length
    return 0
"""
)


# --------------------------------------------------------------------------------------------
# The plan: arrays that describe one model to the kernel


@dataclass
class KernelPlan:
    """A model described to the kernel: integer and float tables (``I``, ``F``), and the
    layout nutpie needs (names, slices and shapes of the sampled vector and the draws)."""

    ints: np.ndarray
    floats: np.ndarray
    n_dim: int
    n_expanded: int
    shape_info: tuple
    reparameterized_names: list[str]
    value_slices: dict[str, tuple[slice, tuple[int, ...]]] = field(default_factory=dict)
    expanded_vars: list[Any] = field(default_factory=list)

    def pointers(self) -> np.ndarray:
        return np.array(
            [self.ints.ctypes.data, self.ints.size, self.floats.ctypes.data, self.floats.size],
            dtype=np.uint64,
        )


def _const(var) -> np.ndarray:
    """The value of a graph that depends on constants only (evaluated in Python mode)."""
    import pytensor
    from pytensor.compile.mode import Mode
    from pytensor.graph.basic import Constant
    from pytensor.graph.traversal import graph_inputs

    if isinstance(var, Constant):
        return np.asarray(var.data, dtype=float)
    if not all(isinstance(v, Constant) for v in graph_inputs([var])):
        raise Unsupported(f"a prior parameter ({var}) is not a number")
    fn = pytensor.function([], var, mode=Mode(linker="py", optimizer=None))
    return np.asarray(fn(), dtype=float)


_LOG_2PI = math.log(2 * math.pi)


def prior_rows(rv, shape: tuple[int, ...]) -> tuple[int, np.ndarray]:
    """The kernel's prior kind and (size, 4) rows ``(a, b, c, const)`` for a PyMC random
    variable of one of the supported distributions, broadcast to ``shape``."""
    op = rv.owner.op
    name = type(op).__name__
    params = [_const(p) for p in op.dist_params(rv.owner)]
    size = int(np.prod(shape))

    def bc(v):
        return np.broadcast_to(v, shape).reshape(size).astype(float)

    zero = np.zeros(size)
    positive = {
        "NormalRV": (1,),
        "HalfNormalRV": (1,),
        "ExponentialRV": (0,),
        "StudentTRV": (0, 2),
        "HalfStudentTRV": (0, 1),
        "CauchyRV": (1,),
        "HalfCauchyRV": (0,),
        "GammaRV": (0, 1),
    }.get(name, ())
    for i in positive:
        if not np.all(np.isfinite(params[i])) or np.any(params[i] <= 0):
            raise Unsupported(f"a parameter of the prior of {rv.name or name} is not positive")
    if name == "NormalRV":
        mu, sigma = map(bc, params)
        return NORMAL, np.column_stack([mu, sigma, zero, -np.log(sigma) - 0.5 * _LOG_2PI])
    if name == "HalfNormalRV":
        loc, sigma = map(bc, params)
        if np.any(loc != 0):
            raise Unsupported("a HalfNormal with a location")
        return HALFNORMAL, np.column_stack(
            [zero, sigma, zero, 0.5 * np.log(2 / np.pi) - np.log(sigma)]
        )
    if name == "ExponentialRV":
        (scale,) = map(bc, params)
        return EXPONENTIAL, np.column_stack([1 / scale, zero, zero, -np.log(scale)])
    if name in ("StudentTRV", "HalfStudentTRV"):
        if name == "StudentTRV":
            nu, mu, sigma = map(bc, params)
        else:
            nu, sigma = map(bc, params)
            mu = zero
        const = (
            np.array([math.lgamma((v + 1) / 2) - math.lgamma(v / 2) for v in nu])
            - 0.5 * np.log(nu * np.pi)
            - np.log(sigma)
        )
        if name == "HalfStudentTRV":
            return HALFSTUDENTT, np.column_stack([nu, mu, sigma, const + np.log(2.0)])
        return STUDENTT, np.column_stack([nu, mu, sigma, const])
    if name == "CauchyRV":
        loc, beta = map(bc, params)
        return CAUCHY, np.column_stack([zero, loc, beta, -np.log(np.pi * beta)])
    if name == "HalfCauchyRV":
        (beta,) = map(bc, params)
        return HALFCAUCHY, np.column_stack([zero, zero, beta, np.log(2 / (np.pi * beta))])
    if name == "GammaRV":
        alpha, scale = map(bc, params)
        rate = 1 / scale
        const = alpha * np.log(rate) - np.array([math.lgamma(a) for a in alpha])
        return GAMMA, np.column_stack([alpha, rate, zero, const])
    if name == "FlatRV":
        return FLAT, np.zeros((size, 4))
    if name == "HalfFlatRV":
        return HALFFLAT, np.zeros((size, 4))
    raise Unsupported(f"the prior of {rv.name or name} ({name})")


class _Tables:
    """Growing integer and float tables (numpy chunks, joined at the end) and the scratch
    array's layout; ``header`` is the integer table's first _HEADER slots."""

    def __init__(self) -> None:
        self.header = [0] * _HEADER
        self._ints: list[np.ndarray] = []
        self._floats: list[np.ndarray] = []
        self._n_ints = _HEADER
        self._n_floats = 0
        self.scratch = 0

    def put_ints(self, values) -> int:
        chunk = np.asarray(values, dtype=np.int64).ravel()
        self._ints.append(chunk)
        self._n_ints += chunk.size
        return self._n_ints - chunk.size

    def put_floats(self, values) -> int:
        chunk = np.asarray(values, dtype=np.float64).ravel()
        self._floats.append(chunk)
        self._n_floats += chunk.size
        return self._n_floats - chunk.size

    def take_scratch(self, size: int) -> int:
        at = self.scratch
        self.scratch += int(size)
        return at

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        ints = np.concatenate([np.array(self.header, dtype=np.int64), *self._ints])
        floats = np.concatenate([np.zeros(0), *self._floats]) if self._floats else np.zeros(1)
        return ints, floats


def _lkj_norm(eta: float, n: int) -> float:
    """PyMC's ``_lkj_normalizing_constant``."""
    k = np.arange(1, n)
    return float(
        (n - 1) * math.lgamma(eta + 0.5 * (n - 1))
        - np.sum(
            0.5 * k * np.log(np.pi) + np.array([math.lgamma(eta + 0.5 * (n - 1 - j)) for j in k])
        )
    )


@dataclass
class KernelBlock:
    """One correlated block as the kernel needs it (names of its PyMC variables)."""

    chol: str  # the LKJCholeskyCov
    offsets: str  # its (levels, n) standard normal offsets
    corr: str  # the correlation matrix's deterministic
    n: int
    eta: float
    mean: np.ndarray  # (n,)
    sd_dists: list  # (PyMC distribution of the sds, number of columns), in column order
    columns: dict[str, slice]  # group-level term -> its columns
    sds: dict[str, slice]  # deterministic of a term's sds -> its columns


@dataclass
class KernelModel:
    """A gaussian mixed model described for the kernel, read from lmmformula's backend by
    ``lmmformula._bambi.kernel_model``: the likelihood's (pseudo) observations and the names of
    the PyMC variables each part of the linear predictor comes from."""

    reduction: Any  # lmmformula._suffstats.Reduction (the rows themselves on the row path)
    population: list[str]  # coefficients, in the order of the design's columns
    sigma: str
    blocks: list[KernelBlock]
    uncorrelated: dict[str, tuple[str, str]]  # term -> (sd variable, offset variable)
    likelihood: str  # "potential" (statistics) or "rows" (an observed variable)
    family: str = "gaussian"  # or "bernoulli", "binomial" (logit link), "poisson" (log link)
    trials: np.ndarray | None = None  # binomial: trials per row
    offset: np.ndarray | None = None  # added to the linear predictor (not gaussian: in y)


def plan_model(desc: KernelModel, model, var_names, shapes: dict) -> KernelPlan:
    """The kernel's tables for ``model`` (its PyMC model) as ``desc`` describes it, or
    :class:`Unsupported` saying why not. ``var_names``: the variables stored in the trace;
    ``shapes``: every variable's shape by name."""
    from pymc.distributions.multivariate import _LKJCholeskyCovRV
    from pymc.distributions.transforms import CholeskyCovPacked
    from pymc.logprob.transforms import LogTransform

    reduction = desc.reduction
    if desc.likelihood == "potential":
        if model.observed_RVs or len(model.potentials) != 1:
            raise Unsupported("other likelihood terms or potentials")
    else:
        if model.potentials or len(model.observed_RVs) != 1:
            raise Unsupported("other likelihood terms or potentials")
        expected = _FAMILY_RV[desc.family]
        if type(model.observed_RVs[0].owner.op).__name__ != expected:
            raise Unsupported(f"the response is not a {expected}")

    tables = _Tables()
    # the sampled vector, laid out as nutpie lays it out
    free = list(model.free_RVs)
    layout: dict[str, tuple[int, tuple[int, ...]]] = {}
    joined_names, joined_slices, joined_shapes = [], [], []
    start = 0
    for rv in free:
        value = model.rvs_to_values[rv]
        shape = tuple(int(s) for s in shapes[value.name])
        size = int(np.prod(shape))
        layout[rv.name] = (start, shape)
        joined_names.append(value.name)
        joined_slices.append(slice(start, start + size))
        joined_shapes.append(shape)
        start += size
    n_dim = start

    sigma_rv = None
    if desc.family == "gaussian":
        sigma_rv = model[desc.sigma]
        if sigma_rv not in free or not isinstance(
            model.rvs_to_transforms.get(sigma_rv), LogTransform
        ):
            raise Unsupported("sigma is not a free scale with a log transform")

    # population coefficients, in the order of the pseudo design's columns
    beta_pos: list[int] = []
    population = [model[name] for name in desc.population]
    for var in population:
        if var not in free:
            raise Unsupported(f"the population coefficient {var.name} is not sampled")
        at, shape = layout[var.name]
        beta_pos.extend(range(at, at + (int(np.prod(shape)))))
    if len(beta_pos) != reduction.x.shape[1]:
        raise Unsupported("the population coefficients do not match the design")

    # blocks
    blocks = []
    block_of_chol = {}
    sd_segments: list[list[int]] = []
    for block in desc.blocks:
        chol = model[block.chol]
        if chol not in free:
            raise Unsupported(f"the block {block.chol} is not sampled")
        if not isinstance(chol.owner.op, _LKJCholeskyCovRV) or not isinstance(
            model.rvs_to_transforms.get(chol), CholeskyCovPacked
        ):
            raise Unsupported(f"the block {block.chol} is not an LKJCholeskyCov")
        z = model[block.offsets]
        if z not in free:
            raise Unsupported(f"the offsets {block.offsets} are not sampled")
        n = int(block.n)
        zstart, zshape = layout[z.name]
        if len(zshape) != 2 or zshape[1] != n:
            raise Unsupported(f"the offsets {z.name} have shape {zshape}")
        eta = float(block.eta)
        fo = tables.put_floats([_lkj_norm(eta, n), *np.asarray(block.mean, dtype=float), eta])
        levels = zshape[0]
        sdo = tables.take_scratch(2 * n)  # the sds and the log density's gradient in them
        so = tables.take_scratch(2 * n * n + levels * n)  # L, its gradient, coefficients
        c0 = 0
        for dist, ncol in block.sd_dists:
            kind, rows = prior_rows(dist, (ncol,))
            sd_segments.append(
                [sdo + c0, ncol, kind, SCRATCH, tables.put_floats(rows), 4, sdo + n + c0]
            )
            c0 += ncol
        if c0 != n:
            raise Unsupported(f"the sd priors of {block.chol}")
        record = [layout[chol.name][0], n, levels, zstart, fo, sdo, 0, so]
        block_of_chol[block.chol] = len(blocks)
        blocks.append((record, block, z))
    handled = {b[1].chol for b in blocks} | {b[2].name for b in blocks}

    # group-level terms, in the order of the reduction
    terms = []
    of_term = {}
    for bi, (_, block, _) in enumerate(blocks):
        for name, sl in block.columns.items():
            of_term[name] = (bi, sl)
    for name, zcol, index in zip(reduction.names, reduction.z, reduction.group_index, strict=True):
        e = 1 if zcol.ndim == 1 else zcol.shape[1]
        gidx = tables.put_ints(np.asarray(index, dtype=np.int64))
        zf = tables.put_floats(np.asarray(zcol, dtype=float).reshape(-1, e))
        if name in of_term:
            bi, sl = of_term[name]
            record = blocks[bi][0]
            if sl.stop - sl.start != e:
                raise Unsupported(f"the columns of {name}")
            n, levels = record[1], record[2]
            terms.append([0, e, levels, gidx, zf, record[7] + 2 * n * n, n, sl.start, 0, 0, 0, bi])
            continue
        if name not in desc.uncorrelated:
            raise Unsupported(f"the group-level term {name}")
        sigma_name, offset_name = desc.uncorrelated[name]
        if sigma_name not in model.named_vars or offset_name not in model.named_vars:
            raise Unsupported(f"the group-level term {name} is not non-centered")
        sd_rv, off_rv = model[sigma_name], model[offset_name]
        if sd_rv not in free or off_rv not in free:
            raise Unsupported(f"the group-level term {name} is not sampled")
        if not isinstance(model.rvs_to_transforms.get(sd_rv), LogTransform):
            raise Unsupported(f"the sd of {name} has no log transform")
        sd_at, sd_shape = layout[sd_rv.name]
        off_at, off_shape = layout[off_rv.name]
        levels = off_shape[0]
        if int(np.prod(off_shape)) != levels * e:
            raise Unsupported(f"the offsets of {name}")
        sd_size = int(np.prod(sd_shape))
        if sd_size not in (1, e):
            raise Unsupported(f"the sd of {name}")
        cs = tables.take_scratch(levels * e)
        terms.append(
            [1, e, levels, gidx, zf, cs, e, 0, off_at, sd_at, 0 if sd_size == 1 else 1, -1]
        )
        handled |= {sd_rv.name, off_rv.name}

    # priors on slices of x: everything sampled that is not a block's Cholesky factor
    segments = sd_segments
    for rv in free:
        if rv.name in block_of_chol:
            continue
        at, shape = layout[rv.name]
        transform = model.rvs_to_transforms.get(rv)
        if transform is None:
            tr = IDENTITY
        elif isinstance(transform, LogTransform):
            tr = LOG
        else:
            raise Unsupported(f"the transform of {rv.name}")
        if rv.name in desc.population or rv is sigma_rv or rv.name in handled:
            kind, rows = prior_rows(rv, shape)
            uniform = bool(np.all(rows == rows[0]))
            fo = tables.put_floats(rows[:1] if uniform else rows)
            segments.append([at, rows.shape[0], kind, tr, fo, 0 if uniform else 4, at])
        else:
            raise Unsupported(f"the parameter {rv.name}")

    # the trace: the sampled vector, then the other variables nutpie stores
    remaining = [v for v in model.unobserved_value_vars if v.name not in joined_names]
    if var_names is not None:
        keep = set(var_names)
        remaining = [v for v in remaining if v.name in keep]
    outputs = [[OUT_COPY, 0, 0, 0, 0, n_dim]]
    more_names, more_slices, more_shapes = [], [], []
    pos = n_dim
    term_index = {name: i for i, name in enumerate(reduction.names)}
    for var in remaining:
        name = var.name
        shape = tuple(int(s) for s in shapes[name])
        size = int(np.prod(shape))
        out = None
        if name in layout and model[name] in free:
            rv = model[name]
            if name in block_of_chol:
                out = [OUT_LKJ, block_of_chol[name], 0, 0, 0, size]
            elif isinstance(model.rvs_to_transforms.get(rv), LogTransform):
                out = [OUT_EXP, layout[name][0], 0, 0, 0, size]
        elif name in term_index:
            out = [OUT_COEF, term_index[name], 0, 0, 0, size]
        else:
            for bi, (_, block, _) in enumerate(blocks):
                if name == block.corr:
                    out = [OUT_CORR, bi, 0, 0, 0, size]
                elif name in block.sds:
                    sl = block.sds[name]
                    out = [OUT_STDS, bi, sl.start, sl.stop - sl.start, 0, size]
        if out is None:
            raise Unsupported(f"the stored variable {name}")
        outputs.append(out)
        more_names.append(name)
        more_slices.append(slice(pos, pos + size))
        more_shapes.append(shape)
        pos += size
    n_expanded = pos

    # the tables' header; the likelihood's gradient in the coefficients mirrors their region
    first = min([b[0][7] for b in blocks] + [t[5] for t in terms if t[0] == 1], default=0)
    gco = tables.scratch
    g_len = tables.scratch - first
    tables.scratch += g_len
    rows = reduction.rows
    resid = tables.take_scratch(rows)
    for records, width in ((segments, _SEG), ([b[0] for b in blocks], _BLK), (terms, _TRM)):
        assert all(len(r) == width for r in records)
    assert all(len(o) == _OUT for o in outputs)
    h = tables.header
    h[0] = n_dim
    h[1] = rows
    h[2] = reduction.x.shape[1]
    h[3] = len(segments)
    h[4] = tables.put_ints(np.array(segments, dtype=np.int64).ravel() if segments else [])
    h[5] = len(blocks)
    h[6] = tables.put_ints(np.array([b[0] for b in blocks]).ravel() if blocks else [])
    h[7] = len(terms)
    h[8] = tables.put_ints(np.array(terms).ravel() if terms else [])
    h[9] = tables.put_ints(beta_pos)
    h[10] = layout[sigma_rv.name][0] if sigma_rv is not None else -1
    h[11] = tables.put_floats(np.asarray(reduction.x, dtype=float))
    h[12] = tables.put_floats(np.asarray(reduction.y, dtype=float))
    y = np.asarray(reduction.y, dtype=float)
    trials = np.ones(rows) if desc.trials is None else np.asarray(desc.trials, dtype=float)
    if desc.family == "gaussian":
        const = float(reduction.rss)
    elif desc.family == "poisson":
        const = -float(np.sum([math.lgamma(v + 1.0) for v in y]))
    else:  # log binomial coefficients (0 for bernoulli)
        const = float(
            np.sum(
                [
                    math.lgamma(n + 1.0) - math.lgamma(k + 1.0) - math.lgamma(n - k + 1.0)
                    for n, k in zip(trials, y, strict=True)
                ]
            )
        )
    h[13] = tables.put_floats([float(reduction.n), const])
    h[22] = _FAMILY_CODE[desc.family]
    h[23] = tables.put_floats(trials)
    h[24] = tables.put_floats(np.zeros(rows) if desc.offset is None else desc.offset)
    h[14] = tables.scratch
    h[15] = resid
    h[16] = gco
    h[17] = g_len
    h[18] = first
    h[19] = len(outputs)
    h[20] = tables.put_ints(np.array(outputs).ravel())
    h[21] = n_expanded
    ints, floats = tables.arrays()
    reparameterized = [
        model.rvs_to_values[rv].name for rv in free if model.rvs_to_transforms.get(rv) is not None
    ]
    return KernelPlan(
        ints=ints,
        floats=floats,
        n_dim=n_dim,
        n_expanded=n_expanded,
        shape_info=(
            joined_names + more_names,
            joined_slices + more_slices,
            joined_shapes + more_shapes,
        ),
        reparameterized_names=reparameterized,
        value_slices={
            name: (sl, shape)
            for name, sl, shape in zip(joined_names, joined_slices, joined_shapes, strict=True)
        },
        expanded_vars=remaining,
    )


# --------------------------------------------------------------------------------------------
# Compiling (once per machine) and checking against PyMC


SOURCES = {"logp": _LOGP_SRC, "expand": _EXPAND_SRC}
"""The callbacks' sources (compiled by ``lmmformula._nutpie``, cached under their hash)."""


def call_logp(cfunc, plan: KernelPlan, x: np.ndarray) -> tuple[float, np.ndarray, int]:
    """Evaluate the compiled log density and gradient at ``x`` (through its C pointer)."""
    import ctypes

    x = np.ascontiguousarray(x, dtype=np.float64)
    grad = np.zeros(plan.n_dim)
    logp = np.zeros(1)
    ptrs = plan.pointers()
    dptr = ctypes.POINTER(ctypes.c_double)
    status = cfunc.ctypes(
        ctypes.c_uint64(plan.n_dim),
        x.ctypes.data_as(dptr),
        grad.ctypes.data_as(dptr),
        logp.ctypes.data_as(dptr),
        ctypes.c_void_p(ptrs.ctypes.data),
    )
    return float(logp[0]), grad, int(status)


def call_expand(cfunc, plan: KernelPlan, x: np.ndarray) -> tuple[np.ndarray, int]:
    import ctypes

    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.zeros(plan.n_expanded)
    ptrs = plan.pointers()
    dptr = ctypes.POINTER(ctypes.c_double)
    status = cfunc.ctypes(
        ctypes.c_uint64(plan.n_dim),
        ctypes.c_uint64(plan.n_expanded),
        x.ctypes.data_as(dptr),
        out.ctypes.data_as(dptr),
        ctypes.c_void_p(ptrs.ctypes.data),
    )
    return out, int(status)


def reference_functions(model, plan: KernelPlan):
    """PyMC's log density, gradient and stored variables of ``model`` as functions of the
    flat vector, compiled in PyTensor's Python mode (nothing is compiled to machine code)."""
    import pytensor
    from pytensor.compile.mode import Mode

    mode = Mode(linker="py", optimizer="fast_compile")
    values = [model.rvs_to_values[rv] for rv in model.free_RVs]
    logp = model.logp()
    grads = pytensor.grad(logp, values)
    fn = pytensor.function(values, [logp, *grads], mode=mode, on_unused_input="ignore")
    expand = (
        pytensor.function(values, plan.expanded_vars, mode=mode, on_unused_input="ignore")
        if plan.expanded_vars
        else None
    )

    def split(x):
        return [
            x[plan.value_slices[v.name][0]].reshape(plan.value_slices[v.name][1]) for v in values
        ]

    def logp_grad(x):
        out = fn(*split(x))
        return float(out[0]), np.concatenate([np.ravel(g) for g in out[1:]])

    def expanded(x):
        parts = [x] + ([np.ravel(v) for v in expand(*split(x))] if expand else [])
        return np.concatenate(parts)

    return logp_grad, expanded


def verify(
    model, plan: KernelPlan, logp_cfunc, expand_cfunc, x0: np.ndarray, seed: int = 0, reference=None
):
    """Compare the kernel with PyMC's graph at ``x0`` and at a point scattered around it;
    raise :class:`KernelMismatch` saying where they differ. ``reference``: the result of
    :func:`reference_functions`, when already made."""
    logp_grad, expanded = reference or reference_functions(model, plan)
    rng = np.random.default_rng(seed)
    for x in (x0, x0 + rng.normal(0.0, 0.3, size=x0.shape)):
        ref_lp, ref_grad = logp_grad(x)
        lp, grad, status = call_logp(logp_cfunc, plan, x)
        if status != 0 or not math.isclose(lp, ref_lp, rel_tol=1e-9, abs_tol=1e-8):
            raise KernelMismatch(f"log density {lp!r} (status {status}) against PyMC's {ref_lp!r}")
        scale = max(1.0, float(np.max(np.abs(ref_grad))))
        bad = np.abs(grad - ref_grad) > 1e-8 * scale
        if np.any(bad):
            i = int(np.argmax(bad))
            raise KernelMismatch(f"gradient element {i} {grad[i]!r} against PyMC's {ref_grad[i]!r}")
        out, status = call_expand(expand_cfunc, plan, x)
        ref = expanded(x)
        if (
            status != 0
            or out.shape != ref.shape
            or not np.allclose(out, ref, rtol=1e-9, atol=1e-10)
        ):
            raise KernelMismatch("the stored variables differ from PyMC's")
