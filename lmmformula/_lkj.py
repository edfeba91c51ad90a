"""The LKJ prior of a correlated block as one hand-written kernel.

PyMC's ``LKJCholeskyCov`` builds the Cholesky factor, its transform and the LKJ density out
of about ninety generic PyTensor operations (subtensors, cumulative sums, joins, ...); numba
compiles each of them separately on a machine without compile caches, which made the first
fit of a model with a correlated block cost about 20 s of compiling. Here the correlation
part is one operation, :class:`CorrCholesky`, with its vector-Jacobian product,
:class:`CorrCholeskyGrad`, each implemented once in numba (cached on disk by PyTensor under a
fixed key) and in numpy (``perform``, for PyMC's C and Python backends).

Parametrisation (Stan's, Lewandowski, Kurowicka and Joe's canonical partial correlations)
-----------------------------------------------------------------------------------------
The unconstrained vector ``y`` has ``k (k - 1) / 2`` entries, one per strictly lower element
``(i, j)`` of the ``k x k`` correlation Cholesky factor ``L``, row by row (``(1, 0), (2, 0),
(2, 1), (3, 0), ...``). With ``z_ij = tanh(y_ij)`` (a canonical partial correlation) and
``w_i0 = 1``, ``w_i,j+1 = w_ij sqrt(1 - z_ij^2) = w_ij sech(y_ij)``::

    L_ij = z_ij w_ij  (j < i),    L_ii = w_ii,    L_00 = 1.

Every row of ``L`` has unit norm, so ``L L'`` is a correlation matrix. The log density on the
unconstrained scale is the LKJ(eta) density of ``L`` (PyMC's ``LKJCorr`` density, with its
normalising constant)::

    log p(L) = c(eta, k) + sum_i (k - i - 1 + 2 (eta - 1)) log L_ii     (i from 0)

plus the log absolute Jacobian determinant of ``y -> (L_ij)_{j < i}``::

    log |J| = sum_{j < i} [ log(1 - z_ij^2) + log w_ij ]

(the map is triangular within a row: ``dL_ij / dy_ij = (1 - z_ij^2) w_ij``). Both are sums
of ``log sech(y_ij)`` terms: with ``log L_ii = sum_{j < i} log sech(y_ij)`` and
``log w_ij = sum_{m < j} log sech(y_im)`` the density of ``y`` is
``c + sum_{j < i} (k - j - 2 + 2 eta) log sech(y_ij)``: the canonical partial correlations
are independent, ``(z_ij + 1) / 2 ~ Beta(b_j, b_j)`` with ``b_j = eta + (k - 2 - j) / 2``,
which is how :func:`random_corr_cholesky` draws from the prior (the C-vine method of
Lewandowski et al. 2009, section 2.4).

Backends
--------
numba (nutpie; PyTensor's default): registered at import with PyTensor numba cache keys
(class and :data:`_KERNEL_VERSION`), so graphs holding the kernels stay cacheable and a process
that unpickles a compiled graph (nutpie's compile child) finds the same implementation. numpy:
``perform`` (PyMC's C and Python backends). JAX (``sampler="numpyro"`` / ``"blackjax"``):
:func:`register_jax`, called before a JAX fit. Prior draws: :class:`LKJCorrCholeskyRV` has a
numpy ``rng_fn`` and a numba sampler, both the C-vine draw above.

PyMC side
---------
:func:`corr_cholesky` adds the block's correlation Cholesky factor to a model as a
random variable (:class:`LKJCorrCholesky`) with value ``L`` (``k x k``), prior draws from LKJ,
``logp`` (PyMC's LKJCorr density of ``L``) and the :class:`CorrCholeskyTransform`
whose ``backward`` and ``log_jac_det`` are outputs of one :class:`CorrCholesky` node. When
PyMC asks for the density at the transform's output (the model's logp), ``logp`` returns the
kernel's own density output, so the correlation's share of the log density and its gradient
are two nodes.
"""

from __future__ import annotations

import math

import numpy as np
import pytensor.tensor as pt
from pymc.distributions.distribution import Continuous, _support_point
from pymc.distributions.transforms import _default_transform
from pymc.logprob.abstract import _logprob
from pymc.logprob.transforms import Transform
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.tensor.random.op import RandomVariable

__all__ = [
    "CorrCholesky",
    "CorrCholeskyGrad",
    "CorrCholeskyInverse",
    "CorrCholeskyTransform",
    "LKJCorrCholesky",
    "LKJCorrCholeskyRV",
    "corr_cholesky",
    "lkj_log_normaliser",
    "random_corr_cholesky",
    "register_jax",
]

_LOG2 = math.log(2.0)
_KERNEL_VERSION = 2
"""Part of the numba cache keys of the operations. The keys do not see the kernels' code:
bump it whenever a kernel changes, or PyTensor's on-disk cache serves the old machine code
(versions 1 and 902 were used during development: do not reuse them)."""


# -- kernels: plain Python on numpy arrays, compiled by numba as they are -----------------------
def _size(m: int) -> int:
    """``k`` for a vector of ``k (k - 1) / 2`` entries."""
    return int((1.0 + math.sqrt(1.0 + 8.0 * m)) / 2.0 + 0.5)


def _log_sech(y: float) -> float:
    a = abs(y)
    return _LOG2 - a - math.log1p(math.exp(-2.0 * a))


def _lkj_log_normaliser(eta: float, k: int) -> float:
    """PyMC's ``_lkj_normalizing_constant(eta, k)``."""
    out = (k - 1) * math.lgamma(eta + 0.5 * (k - 1))
    for j in range(1, k):
        out -= 0.5 * j * math.log(math.pi) + math.lgamma(eta + 0.5 * (k - 1 - j))
    return out


def _forward(y, eta):
    """``(L, log |J|, log p(L))`` for the unconstrained vector ``y`` (module notes)."""
    m = y.shape[0]
    k = _size(m)
    chol = np.zeros((k, k))
    chol[0, 0] = 1.0
    log_jac = 0.0
    log_dens = _lkj_log_normaliser(eta, k)
    pos = 0
    for i in range(1, k):
        lw = 0.0
        for j in range(i):
            yij = y[pos]
            ls = _log_sech(yij)
            chol[i, j] = math.tanh(yij) * math.exp(lw)
            log_jac += 2.0 * ls + lw
            lw += ls
            pos += 1
        chol[i, i] = math.exp(lw)
        log_dens += (k - i - 1 + 2.0 * (eta - 1.0)) * lw
    return chol, log_jac, log_dens


def _vjp(y, eta, g_chol, g_jac, g_dens):
    """``g_chol . dL/dy + g_jac . dlog|J|/dy + g_dens . dlog p/dy`` (module notes)."""
    m = y.shape[0]
    k = _size(m)
    out = np.zeros(m)
    z = np.zeros(k)
    lws = np.zeros(k + 1)
    start = 0
    for i in range(1, k):
        lw = 0.0
        for j in range(i):
            z[j] = math.tanh(y[start + j])
            lws[j] = lw
            lw += _log_sech(y[start + j])
        lws[i] = lw
        a_i = k - i - 1 + 2.0 * (eta - 1.0)
        # s = sum_{j' > j} g_chol[i, j'] L_ij' (the diagonal included), walking j down
        s = g_chol[i, i] * math.exp(lws[i])
        for j in range(i - 1, -1, -1):
            w = math.exp(lws[j])
            sech2 = math.exp(2.0 * _log_sech(y[start + j]))
            out[start + j] = (
                g_chol[i, j] * sech2 * w - z[j] * s - z[j] * (g_jac * (i + 1 - j) + g_dens * a_i)
            )
            s += g_chol[i, j] * z[j] * w
        start += i
    return out


def _inverse(chol):
    """The unconstrained vector of a correlation Cholesky factor (the inverse of ``_forward``)."""
    k = chol.shape[0]
    out = np.zeros(k * (k - 1) // 2)
    pos = 0
    for i in range(1, k):
        lw = 0.0
        for j in range(i):
            zij = chol[i, j] / math.exp(lw)
            zij = min(max(zij, -1.0), 1.0)
            yij = math.atanh(zij) if abs(zij) < 1.0 else math.copysign(20.0, zij)
            out[pos] = yij
            lw += _log_sech(yij)
            pos += 1
    return out


def lkj_log_normaliser(eta: float, k: int) -> float:
    """The log normalising constant of the LKJ(eta) density of a ``k x k`` correlation matrix
    (PyMC's)."""
    return _lkj_log_normaliser(float(eta), int(k))


# -- operations -----------------------------------------------------------------------------------
def _static_k(y) -> int | None:
    m = y.type.shape[0]
    return None if m is None else _size(m)


class CorrCholesky(Op):
    """``y, eta -> (L, log |J|, log p(L))``: the correlation Cholesky factor of the unconstrained
    vector ``y``, the log Jacobian determinant of the map and the LKJ(eta) log density of
    ``L`` with its normalising constant (module notes)."""

    __props__ = ()

    def make_node(self, y, eta):
        y = pt.as_tensor_variable(y).astype("float64")
        eta = pt.as_tensor_variable(eta).astype("float64")
        if y.type.ndim != 1 or eta.type.ndim != 0:
            raise TypeError("CorrCholesky takes a vector and a scalar")
        k = _static_k(y)
        chol = pt.tensor(dtype="float64", shape=(k, k))
        return Apply(self, [y, eta], [chol, pt.dscalar(), pt.dscalar()])

    def perform(self, node, inputs, outputs):
        y, eta = inputs
        chol, log_jac, log_dens = _forward(np.asarray(y, dtype=float), float(eta))
        outputs[0][0] = chol
        outputs[1][0] = np.asarray(log_jac)
        outputs[2][0] = np.asarray(log_dens)

    def infer_shape(self, node, shapes):
        (m,) = shapes[0]
        k = (1 + pt.sqrt(1 + 8 * m).astype("int64")) // 2
        return [(k, k), (), ()]

    def pullback(self, inputs, outputs, output_grads):
        y, eta = inputs
        g_chol, g_jac, g_dens = output_grads
        if isinstance(g_chol.type, DisconnectedType):
            g_chol = pt.zeros_like(outputs[0])
        if isinstance(g_jac.type, DisconnectedType):
            g_jac = pt.zeros(())
        if isinstance(g_dens.type, DisconnectedType):
            g_dens = pt.zeros(())
        return [
            CorrCholeskyGrad()(y, eta, g_chol, g_jac, g_dens),
            grad_not_implemented(self, 1, eta, "the LKJ shape is not a model parameter"),
        ]


class CorrCholeskyGrad(Op):
    """The vector-Jacobian product of :class:`CorrCholesky` with respect to ``y``."""

    __props__ = ()

    def make_node(self, y, eta, g_chol, g_jac, g_dens):
        inputs = [pt.as_tensor_variable(v).astype("float64") for v in (y, eta, g_chol, g_jac)]
        inputs.append(pt.as_tensor_variable(g_dens).astype("float64"))
        return Apply(self, inputs, [inputs[0].type()])

    def perform(self, node, inputs, outputs):
        y, eta, g_chol, g_jac, g_dens = inputs
        outputs[0][0] = _vjp(
            np.asarray(y, dtype=float), float(eta), np.asarray(g_chol), float(g_jac), float(g_dens)
        )

    def infer_shape(self, node, shapes):
        return [shapes[0]]


class CorrCholeskyInverse(Op):
    """``L -> y``: the unconstrained vector of a correlation Cholesky factor (starting points;
    no gradient)."""

    __props__ = ()

    def make_node(self, chol):
        chol = pt.as_tensor_variable(chol).astype("float64")
        k = chol.type.shape[-1]
        m = None if k is None else k * (k - 1) // 2
        return Apply(self, [chol], [pt.tensor(dtype="float64", shape=(m,))])

    def perform(self, node, inputs, outputs):
        outputs[0][0] = _inverse(np.asarray(inputs[0], dtype=float))

    def infer_shape(self, node, shapes):
        k = shapes[0][-1]
        return [(k * (k - 1) // 2,)]


def _register_numba() -> None:
    """numba implementations, registered with a PyTensor cache key (the Ops have no
    properties: the key is the class and :data:`_KERNEL_VERSION`)."""
    from pytensor.link.numba.dispatch.basic import (
        numba_njit,
        register_funcify_default_op_cache_key,
    )
    from pytensor.link.numba.dispatch.random import numba_core_rv_funcify

    size = numba_njit(_size)
    log_sech = numba_njit(_log_sech)
    globals_ = {"_size": size, "_log_sech": log_sech}
    normaliser = numba_njit(_rebind(_lkj_log_normaliser, globals_))
    globals_["_lkj_log_normaliser"] = normaliser
    forward = numba_njit(_rebind(_forward, globals_))
    vjp = numba_njit(_rebind(_vjp, globals_))
    inverse = numba_njit(_rebind(_inverse, globals_))

    @numba_core_rv_funcify.register(LKJCorrCholeskyRV)
    def _core_random(op, node):
        k = op.k

        @numba_njit
        def lkj_corr_cholesky_random(rng, eta):
            out = np.zeros((k, k))
            out[0, 0] = 1.0
            for i in range(1, k):
                w = 1.0
                for j in range(i):
                    b = eta + (k - 2 - j) / 2.0
                    z = 2.0 * rng.beta(b, b) - 1.0
                    out[i, j] = z * w
                    w *= math.sqrt(max(1.0 - z * z, 0.0))
                out[i, i] = w
            return out

        return lkj_corr_cholesky_random, _KERNEL_VERSION

    @register_funcify_default_op_cache_key(CorrCholesky)
    def _funcify_forward(op, node=None, **kwargs):
        @numba_njit
        def corr_cholesky(y, eta):
            chol, log_jac, log_dens = forward(y, eta.item())
            return chol, np.asarray(log_jac), np.asarray(log_dens)

        return corr_cholesky, _KERNEL_VERSION

    @register_funcify_default_op_cache_key(CorrCholeskyGrad)
    def _funcify_grad(op, node=None, **kwargs):
        @numba_njit
        def corr_cholesky_grad(y, eta, g_chol, g_jac, g_dens):
            return vjp(y, eta.item(), g_chol, g_jac.item(), g_dens.item())

        return corr_cholesky_grad, _KERNEL_VERSION

    @register_funcify_default_op_cache_key(CorrCholeskyInverse)
    def _funcify_inverse(op, node=None, **kwargs):
        @numba_njit
        def corr_cholesky_inverse(chol):
            return inverse(chol)

        return corr_cholesky_inverse, _KERNEL_VERSION


def _rebind(func, names: dict):
    """``func`` with the module-level helpers it calls replaced by their numba versions."""
    import types

    return types.FunctionType(
        func.__code__, {**func.__globals__, **names}, func.__name__, func.__defaults__
    )


def register_jax() -> None:
    """JAX implementations of :class:`CorrCholesky` (the kernel in ``jax.numpy``, unrolled
    over the block's static size) and of :class:`CorrCholeskyGrad` (``jax.vjp`` of it), for
    the JAX samplers (``sampler="numpyro"`` / ``"blackjax"``). Called before a JAX fit;
    importing JAX costs about a second, so it is not done at import."""
    global _JAX_REGISTERED
    if _JAX_REGISTERED:
        return
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import gammaln
    from pytensor.link.jax.dispatch import jax_funcify

    def log_sech(y):
        a = jnp.abs(y)
        return _LOG2 - a - jnp.log1p(jnp.exp(-2.0 * a))

    def forward(y, eta):
        k = _size(y.shape[0])
        chol = jnp.zeros((k, k), dtype=y.dtype).at[0, 0].set(1.0)
        log_jac = jnp.zeros((), dtype=y.dtype)
        log_dens = (k - 1) * gammaln(eta + 0.5 * (k - 1))
        for j in range(1, k):
            log_dens = log_dens - (0.5 * j * math.log(math.pi) + gammaln(eta + 0.5 * (k - 1 - j)))
        pos = 0
        for i in range(1, k):
            lw = jnp.zeros((), dtype=y.dtype)
            for j in range(i):
                ls = log_sech(y[pos])
                chol = chol.at[i, j].set(jnp.tanh(y[pos]) * jnp.exp(lw))
                log_jac = log_jac + 2.0 * ls + lw
                lw = lw + ls
                pos += 1
            chol = chol.at[i, i].set(jnp.exp(lw))
            log_dens = log_dens + (k - i - 1 + 2.0 * (eta - 1.0)) * lw
        return chol, log_jac, log_dens

    @jax_funcify.register(CorrCholesky)
    def _jax_corr_cholesky(op, **kwargs):
        return forward

    @jax_funcify.register(CorrCholeskyGrad)
    def _jax_corr_cholesky_grad(op, **kwargs):
        def corr_cholesky_grad(y, eta, g_chol, g_jac, g_dens):
            _, vjp = jax.vjp(lambda v: forward(v, eta), y)
            return vjp((g_chol, g_jac, g_dens))[0]

        return corr_cholesky_grad

    _JAX_REGISTERED = True


_JAX_REGISTERED = False


# -- PyMC: the block's correlation Cholesky factor as a random variable -------------------------
def random_corr_cholesky(k: int, eta: float, rng: np.random.Generator, size=None) -> np.ndarray:
    """Draws of the Cholesky factor of a ``k x k`` LKJ(eta) correlation matrix, shaped
    ``size + (k, k)``: independent canonical partial correlations ``z_ij = 2 u - 1``,
    ``u ~ Beta(b_j, b_j)``, ``b_j = eta + (k - 2 - j) / 2`` (module notes), mapped to ``L``."""
    size = () if size is None else tuple(np.atleast_1d(size))
    k, eta = int(k), float(eta)
    chol = np.zeros((*size, k, k))
    chol[..., 0, 0] = 1.0
    for i in range(1, k):
        w = np.ones(size)
        for j in range(i):
            b = eta + (k - 2 - j) / 2.0
            z = 2.0 * rng.beta(b, b, size=size) - 1.0
            chol[..., i, j] = z * w
            w = w * np.sqrt(np.clip(1.0 - z * z, 0.0, None))
        chol[..., i, i] = w
    return chol


class CorrCholeskyTransform(Transform):
    """The block's correlation Cholesky factor ``L`` (``k x k``) from the unconstrained
    vector of ``k (k - 1) / 2`` canonical-partial-correlation logits (module notes);
    ``backward`` and ``log_jac_det`` are outputs of one :class:`CorrCholesky` node (PyTensor
    merges the two calls). The distribution's last input is ``eta``."""

    name = "corr_cholesky"
    ndim_supp = 2

    def forward(self, value, *inputs):
        return CorrCholeskyInverse()(value)

    def backward(self, value, *inputs):
        return CorrCholesky()(value, inputs[-1])[0]

    def log_jac_det(self, value, *inputs):
        return CorrCholesky()(value, inputs[-1])[1]


def _kernel_node(value, eta):
    """The :class:`CorrCholesky` node whose ``L`` output ``value`` is (seen through PyMC's
    ``TransformedValue`` wrapper), when its ``eta`` is ``eta``; else ``None``."""
    from pymc.logprob.transform_value import TransformedValue
    from pytensor.graph.basic import equal_computations

    node = value.owner
    if node is not None and isinstance(node.op, TransformedValue):
        value = node.inputs[0]
        node = value.owner
    if node is None or not isinstance(node.op, CorrCholesky) or value is not node.outputs[0]:
        return None
    eta = pt.as_tensor(eta).astype("float64")
    return node if equal_computations([node.inputs[1]], [eta]) else None


def _logp(value, eta):
    """PyMC's LKJCorr log density of the Cholesky factor ``value`` (normalising constant
    included); at the transform's output, the kernel's own density output (the same
    number, no further nodes)."""
    node = _kernel_node(value, eta)
    if node is not None:
        return node.outputs[2]
    from pymc.distributions.multivariate import _lkj_normalizing_constant

    k = value.type.shape[-1]
    log_diag = pt.log(pt.diagonal(value, axis1=-2, axis2=-1))
    exponents = 2.0 * eta - 2.0 + k - pt.arange(1, k + 1)
    return _lkj_normalizing_constant(eta, k) + (exponents * log_diag).sum(axis=-1)


class LKJCorrCholeskyRV(RandomVariable):
    """The Cholesky factor of a ``k x k`` LKJ(eta) correlation matrix (``k`` is a property:
    the support's shape does not follow from ``eta``)."""

    name = "lkj_corr_cholesky"
    signature = "()->(k,k)"
    dtype = "float64"
    _print_name = ("LKJCorrCholesky", "\\operatorname{LKJCorrCholesky}")
    __props__ = (*RandomVariable.__props__, "k")

    def __init__(self, k: int, **kwargs):
        self.k = int(k)
        super().__init__(**kwargs)

    def _supp_shape_from_params(self, dist_params, param_shapes=None):
        return (self.k, self.k)

    def rng_fn(self, rng, eta, size):
        eta = np.asarray(eta, dtype=float)
        if eta.ndim:
            if np.any(eta != eta.flat[0]):  # pragma: no cover - one eta per block
                raise NotImplementedError("one LKJ shape per block")
            eta = eta.flat[0]
        return random_corr_cholesky(self.k, float(eta), rng, size)


class LKJCorrCholesky(Continuous):
    """The Cholesky factor of a ``k x k`` LKJ(eta) correlation matrix as a PyMC distribution:
    ``LKJCorrCholesky(name, eta, k=k)``; sampled on the unconstrained scale through
    :class:`CorrCholeskyTransform` (module notes)."""

    rv_type = LKJCorrCholeskyRV

    @classmethod
    def rv_op(cls, eta, *, k: int, size=None, rng=None):
        from pymc.pytensorf import normalize_rng_param

        op = LKJCorrCholeskyRV(k)
        eta = pt.as_tensor(eta, dtype="float64")
        return op(eta, size=size, rng=normalize_rng_param(rng), return_next_rng=True)[1]

    @classmethod
    def dist(cls, eta, *, k: int, **kwargs):
        return super().dist([eta], k=int(k), **kwargs)


@_logprob.register(LKJCorrCholeskyRV)
def _lkj_corr_cholesky_logp(op, values, rng, size, eta, **kwargs):
    return _logp(values[0], eta)


@_support_point.register(LKJCorrCholeskyRV)
def _lkj_corr_cholesky_support_point(op, rv, *inputs):
    return pt.eye(op.k)


@_default_transform.register(LKJCorrCholeskyRV)
def _lkj_corr_cholesky_transform(op, rv):
    return CorrCholeskyTransform()


def corr_cholesky(name: str, k: int, eta: float, **kwargs):
    """Add the Cholesky factor of a ``k x k`` LKJ(eta) correlation matrix to the current PyMC
    model as the random variable ``name`` (``k x k``, sampled through
    :class:`CorrCholeskyTransform`, drawn by :func:`random_corr_cholesky`).

    Parameters
    ----------
    name : str
    k : int
        Size of the correlation matrix (at least 2).
    eta : float
        LKJ shape (> 0).
    **kwargs
        Passed to the distribution (``initval``, ...).

    Returns
    -------
    pytensor.tensor.TensorVariable
        The ``k x k`` lower-triangular factor ``L`` with ``L L'`` the correlation matrix.
    """
    return LKJCorrCholesky(name, float(eta), k=int(k), **kwargs)


_register_numba()  # at import: a process that unpickles a compiled graph imports this module
