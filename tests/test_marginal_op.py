"""The marginal likelihood on precomputed statistics (issue 14, ``lmmformula._marginal_op``).

Oracles: ``_marginal.logp_numpy`` (written from the model's equations row by row, checked in
tests/test_marginal.py against scipy's dense multivariate normal) on residuals ``y - W theta``
with the design ``W`` built here from the data; central finite differences of it for the
gradient; the row-wise marginal graph of the same model (``MARGINAL_STATISTICS = False``); and,
with a trailing block of ``theta`` integrated out too, scipy's dense multivariate normal with
covariance ``sigma^2 I + tau^2 Z Z' + W_b diag(lam) W_b'`` and its central finite differences.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest
import scipy.stats

import lmmformula as lf
from lmmformula import _bambi, _marginal, _marginal_op


def _crossed(n=500, n_s=60, n_d=9, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    s = np.concatenate([np.arange(n_s), rng.integers(0, n_s, n - n_s)])  # every level present
    d = rng.integers(0, n_d, n)
    x = rng.normal(size=n)
    off = rng.normal(0, 0.5, n)
    y = 40.0 + 0.5 * x + off + rng.normal(0, 0.7, n_s)[s] + rng.normal(0, 0.5, n_d)[d]
    y = y + rng.normal(0, 1.0, n)
    return pd.DataFrame(
        {
            "y": y,
            "x": x,
            "off": off,
            "s": [f"s{i:03d}" for i in s],
            "d": [f"d{i:02d}" for i in d],
        }
    )


def _design(df: pd.DataFrame):
    """``y - offset``, the dense design ``[1, x, Z_d, Z_d * x]``, the student codes."""
    d = pd.Index(sorted(df["d"].unique())).get_indexer(df["d"])
    s = pd.Index(sorted(df["s"].unique())).get_indexer(df["s"])
    z_d = np.eye(d.max() + 1)[d]
    x = df["x"].to_numpy()
    w = np.column_stack([np.ones(len(df)), x, z_d, z_d * x[:, None]])
    return df["y"].to_numpy() - df["off"].to_numpy(), w, s


def _oracle(y, w, s, theta, sigma, tau) -> float:
    counts = np.bincount(s)
    return _marginal.logp_numpy(y - w @ theta, s, counts, sigma, tau)


def _compiled(stats, mode):
    theta, sigma, tau = pt.dvector("theta"), pt.dscalar("sigma"), pt.dscalar("tau")
    value = _marginal_op.logp(theta, sigma, tau, stats)
    grads = pt.grad(value, [theta, sigma, tau])
    return pytensor.function([theta, sigma, tau], [value, *grads], mode=mode)


@pytest.mark.parametrize("mode", ["CVM", "FAST_COMPILE", "NUMBA"])  # perform: C/py VMs
def test_value_and_gradient_equal_the_row_wise_density(mode):
    """Value and closed-form gradient (perform and numba) against the row-wise numpy density
    and its central finite differences, at random points."""
    y, w, s = _design(_crossed())
    stats = _marginal_op.statistics(y, w, s, s.max() + 1, n_dense=2)
    f = _compiled(stats, mode)
    rng = np.random.default_rng(1)
    h = 1e-5
    for _ in range(3):
        theta = rng.normal(0, 1, w.shape[1])
        theta[0] += 40.0
        sigma, tau = rng.uniform(0.3, 2.5, 2)
        value, d_theta, d_sigma, d_tau = f(theta, sigma, tau)
        expected = _oracle(y, w, s, theta, sigma, tau)
        np.testing.assert_allclose(value, expected, rtol=1e-10)
        fd = np.array(
            [
                (_oracle(y, w, s, theta + h * e, sigma, tau))
                - _oracle(y, w, s, theta - h * e, sigma, tau)
                for e in np.eye(theta.size)
            ]
        ) / (2 * h)
        fd_sigma = (
            _oracle(y, w, s, theta, sigma + h, tau) - _oracle(y, w, s, theta, sigma - h, tau)
        ) / (2 * h)
        fd_tau = (
            _oracle(y, w, s, theta, sigma, tau + h) - _oracle(y, w, s, theta, sigma, tau - h)
        ) / (2 * h)
        np.testing.assert_allclose(d_theta, fd, rtol=1e-6, atol=1e-6 * np.abs(fd).max())
        np.testing.assert_allclose([d_sigma, d_tau], [fd_sigma, fd_tau], rtol=1e-6)


def test_one_kernel_call_gives_value_and_gradient():
    """The compiled log density and gradient hold one MarginalLogp node."""
    y, w, s = _design(_crossed(n=200, n_s=30))
    f = _compiled(_marginal_op.statistics(y, w, s, 30, n_dense=2), "NUMBA")
    nodes = [n for n in f.maker.fgraph.apply_nodes if isinstance(n.op, _marginal_op.MarginalLogp)]
    assert len(nodes) == 1


def test_jax_implementation_equals_numpy():
    """The JAX implementation (registered before a JAX sampler runs) against perform."""
    pytest.importorskip("jax")
    from pytensor.link.jax.dispatch import jax_funcify

    from lmmformula._jax import jax_sampler_kwargs

    jax_sampler_kwargs("numpyro", 1, {})  # what a fit with sampler="numpyro" calls first
    assert jax_funcify.dispatch(_marginal_op.MarginalLogp) is not jax_funcify.dispatch(object)
    y, w, s = _design(_crossed(n=200, n_s=30))
    stats = _marginal_op.statistics(y, w, s, 30, n_dense=2)
    theta = (
        np.random.default_rng(2).normal(0, 1, w.shape[1]) + np.r_[40.0, np.zeros(w.shape[1] - 1)]
    )
    expected = _compiled(stats, "CVM")(theta, 1.3, 0.6)
    got = _compiled(stats, "JAX")(theta, 1.3, 0.6)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


FORMULAS = [
    "y ~ x + offset(off) + (1|s) + (1|d) + (0 + x||d)",
    "y ~ 0 + x + offset(off) + (1|s) + (1|d)",
]


def _built(formula, df, statistics: bool, block: bool = False):
    """The model with the factor integrated out on the statistics' path or row by row; the
    block integrated with it only when ``block`` (tests/test_marginal_block.py), so that both
    graphs have the same variables."""
    old = _bambi.MARGINAL_STATISTICS, _bambi.MARGINAL_BLOCK
    _bambi.MARGINAL_STATISTICS, _bambi.MARGINAL_BLOCK = statistics, block
    try:
        m = lf.model(formula, df, marginalize=True)
        m.build(fresh=True)
    finally:
        _bambi.MARGINAL_STATISTICS, _bambi.MARGINAL_BLOCK = old
    return m.pymc_model


def _uses_op(model) -> bool:
    from pytensor.graph.traversal import ancestors

    return any(
        v.owner is not None and isinstance(v.owner.op, _marginal_op.MarginalLogp)
        for v in ancestors(model.potentials)
    )


@pytest.mark.parametrize("formula", FORMULAS)
def test_model_log_density_equals_the_row_wise_graph(formula):
    """The whole model's log density and gradient (C backend and numba) equal the row-wise
    marginal graph's at random points (Bambi's centred intercept, an offset, a slope)."""
    df = _crossed()
    new, old = _built(formula, df, True), _built(formula, df, False)
    assert _uses_op(new) and not _uses_op(old)
    rng = np.random.default_rng(3)
    start = new.initial_point()
    fns = {
        mode: [
            pytensor.function(m.value_vars, [m.logp(), *pt.grad(m.logp(), m.value_vars)], mode=mode)
            for m in (new, old)
        ]
        for mode in ("CVM", "NUMBA")  # the Op's perform, its numba kernel
    }
    for _ in range(3):
        point = {k: v + rng.normal(0, 0.7, np.shape(v)) for k, v in start.items()}
        for f_new, f_old in fns.values():
            got = f_new(*[point[v.name] for v in new.value_vars])
            expected = f_old(*[point[v.name] for v in old.value_vars])
            np.testing.assert_allclose(got[0], expected[0], rtol=1e-9)
            for a, b in zip(got[1:], expected[1:], strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-7)


def test_falls_back_to_the_row_wise_graph():
    """A correlated block on the other factor keeps the row-wise graph."""
    df = _crossed()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lf.model("y ~ x + (1|s) + (x|d)", df, marginalize=True)
        m.build()
    assert m.marginal == "1|s" and not _uses_op(m.pymc_model)
    # the model of tests/test_marginal.py's comparison with the full posterior uses the Op
    assert _uses_op(_built("y ~ x + (1|s) + (1|d)", df, True))


def test_nutpie_compiles_with_the_data_as_inputs():
    """nutpie's path lifts the statistics to run-time data and PyTensor can cache it."""
    from lmmformula import _nutpie

    if not _nutpie.nutpie_internals_available():
        pytest.skip("nutpie internals unavailable")
    df = _crossed(n=300, n_s=40)
    m = lf.model("y ~ x + (1|s) + (1|d)", df, marginalize=True)
    m.build()
    assert _uses_op(m.pymc_model)
    _, info = _nutpie.compile_model(m.pymc_model, var_names=_bambi.sampled_var_names(m.bambi))
    assert info.path == "lmmformula" and info.cached_wrappers
    assert info.lifted_constants >= 9  # y'y, W'y, A y, counts, G and B vectors, theta0, ...


@pytest.mark.parametrize("mode", ["FAST_COMPILE", "NUMBA"])
def test_mismatched_coefficients_are_refused(mode):
    """A coefficient vector of the wrong length raises in the kernel (perform and numba)
    instead of reading past its end."""
    y, w, s = _design(_crossed(n=200, n_s=30))
    stats = _marginal_op.statistics(y, w, s, 30, n_dense=2)
    theta = pt.dvector("theta")
    data = [
        np.asarray(stats.yy),
        stats.wy,
        stats.ay,
        stats.counts,
        stats.gram.data,
        stats.gram.indices,
        stats.gram.indptr,
        stats.level_design.data,
        stats.level_design.indices,
        stats.level_design.indptr,
    ]
    no_block = [np.zeros(0), np.zeros((0, 0, 0)), np.zeros(0, dtype=np.uint8)]
    value = _marginal_op.marginal_logp(
        theta, 1.0, 1.0, np.zeros(0), *data, np.zeros((0, 0)), *no_block
    )[0]
    f = pytensor.function([theta], value, mode=mode)
    assert np.isfinite(f(np.zeros(w.shape[1])))
    with pytest.raises(ValueError, match="do not match"):
        f(np.zeros(w.shape[1] - 1))


# -- a trailing Gaussian block integrated out as well ------------------------------------------
def _block_design(df: pd.DataFrame):
    """``y - offset``, the design ``[Z_d, Z_d * x, 1, x]`` (population columns last, as in a
    block), the student codes."""
    y, w, s = _design(df)
    return y, np.column_stack([w[:, 2:], w[:, :2]]), s


def _dense_oracle(y, w, s, k, theta, sigma, tau, lam) -> float:
    """log N(y; W theta, sigma^2 I + tau^2 Z Z' + W_b diag(lam) W_b'), W_b the last k columns."""
    z = np.eye(s.max() + 1)[s]
    w_b = w[:, w.shape[1] - k :]
    cov = sigma**2 * np.eye(y.size) + tau**2 * z @ z.T + (w_b * lam) @ w_b.T
    return scipy.stats.multivariate_normal(w @ theta, cov).logpdf(y)


def _compiled_block(stats, mode, k, static=True, dense_block=None):
    """Value and gradient; ``lam`` of static length ``k`` (as :func:`logp` needs; numba then
    compiles the block kernel alone), or not (``static=False``: the Op called with a vector
    of unknown length, numba's kernel choosing by ``len(lam)``); ``dense_block`` as in
    :func:`logp` (the block's columns of B dense and apart, or in B's CSR vectors)."""
    theta, sigma, tau = pt.dvector("theta"), pt.dscalar("sigma"), pt.dscalar("tau")
    lam = pt.tensor("lam", shape=(k,), dtype="float64")
    value = _marginal_op.logp(theta, sigma, tau, stats, lam, dense_block=dense_block)
    if not static:
        lam = pt.dvector("lam")
        inputs = list(value.owner.inputs)
        inputs[3] = lam
        value = _marginal_op.marginal_logp(*inputs)[0]
    grads = pt.grad(value, [theta, sigma, tau, lam])
    return pytensor.function([theta, sigma, tau, lam], [value, *grads], mode=mode)


@pytest.mark.parametrize(
    ("mode", "dense_block"),
    [(m, True) for m in ["CVM", "FAST_COMPILE", "NUMBA", "NUMBA-dynamic", "JAX"]]
    + [("NUMBA", False), ("JAX", False)],  # perform's CSR layout is the one from before
)
def test_block_value_and_gradient_equal_the_dense_normal(mode, dense_block):
    """With the last k coordinates integrated out (prior N(m, diag(lam)), m in theta): value
    and gradient in theta, sigma, tau and lam (perform, numba, JAX) against scipy's dense
    multivariate normal and its central finite differences, at random points; numba with
    ``lam`` of static and of unknown length; the block's columns of B passed dense and apart
    or left in B's CSR vectors."""
    if mode == "JAX":
        pytest.importorskip("jax")
        _marginal_op.register_jax()
    df = _crossed(n=120, n_s=20, n_d=5, seed=4)
    y, w_last, s = _block_design(df)
    _, w_first, _ = _design(df)
    p = w_last.shape[1]
    rng = np.random.default_rng(5)
    h = 1e-5
    for w, k, dense in [
        (w_last, 8, [p - 2, p - 1]),  # 1 column of Z_d, Z_d * x, intercept, slope
        (w_first, 1, [0, 1]),  # 1 slope: levels without an entry in the block
        (w_last, p, [p - 2, p - 1]),  # everything
    ]:
        stats = _marginal_op.statistics(y, w, s, s.max() + 1, dense_columns=dense)
        if mode == "NUMBA-dynamic":
            f = _compiled_block(stats, "NUMBA", k, static=False, dense_block=dense_block)
        else:
            f = _compiled_block(stats, mode, k, dense_block=dense_block)
        for _ in range(2):
            theta = rng.normal(0, 1, p)
            theta[dense[0]] += 40.0
            sigma, tau = rng.uniform(0.3, 2.5, 2)
            lam = rng.uniform(0.1, 2.0, k)
            value, d_theta, d_sigma, d_tau, d_lam = f(theta, sigma, tau, lam)

            def oracle(th=theta, sg=sigma, ta=tau, la=lam, w=w, k=k):
                return _dense_oracle(y, w, s, k, th, sg, ta, la)

            np.testing.assert_allclose(value, oracle(), rtol=1e-8)
            fd_theta = [
                (oracle(th=theta + h * e) - oracle(th=theta - h * e)) / (2 * h) for e in np.eye(p)
            ]
            fd_lam = [
                (oracle(la=lam + h * e) - oracle(la=lam - h * e)) / (2 * h) for e in np.eye(k)
            ]
            fd_sigma = (oracle(sg=sigma + h) - oracle(sg=sigma - h)) / (2 * h)
            fd_tau = (oracle(ta=tau + h) - oracle(ta=tau - h)) / (2 * h)
            scale = np.abs(fd_theta).max()
            np.testing.assert_allclose(d_theta, fd_theta, rtol=1e-5, atol=1e-6 * scale)
            np.testing.assert_allclose(d_lam, fd_lam, rtol=1e-5, atol=1e-6 * np.abs(fd_lam).max())
            np.testing.assert_allclose([d_sigma, d_tau], [fd_sigma, fd_tau], rtol=1e-5)


@pytest.mark.parametrize("mode", ["CVM", "NUMBA", "JAX"])
def test_empty_block_is_the_density_without_block(mode):
    """``lam`` empty (k = 0) as an input vector: the row-wise oracle's value, and the same
    numbers as ``logp`` without ``lam``."""
    if mode == "JAX":
        pytest.importorskip("jax")
        _marginal_op.register_jax()
    y, w, s = _design(_crossed(n=200, n_s=30))
    stats = _marginal_op.statistics(y, w, s, 30, n_dense=2)
    theta = (
        np.random.default_rng(6).normal(0, 1, w.shape[1]) + np.r_[40.0, np.zeros(w.shape[1] - 1)]
    )
    got = _compiled_block(stats, mode, 0, static=False)(theta, 1.3, 0.6, np.zeros(0))
    np.testing.assert_allclose(got[0], _oracle(y, w, s, theta, 1.3, 0.6), rtol=1e-10)
    assert got[4].shape == (0,)
    for a, b in zip(got[:4], _compiled(stats, mode)(theta, 1.3, 0.6), strict=True):
        np.testing.assert_array_equal(a, b)


def test_statistics_fit_the_chosen_columns():
    """``dense_columns``: theta0 is the least-squares fit on those columns (numpy's lstsq on
    the dense columns), zero elsewhere; ``n_dense`` is ``dense_columns=range(n_dense)``."""
    y, w, s = _block_design(_crossed(n=200, n_s=30))
    p = w.shape[1]
    stats = _marginal_op.statistics(y, w, s, 30, dense_columns=np.array([p - 2, p - 1]))
    expected = np.zeros(p)
    expected[p - 2 :] = np.linalg.lstsq(w[:, p - 2 :], y, rcond=None)[0]
    np.testing.assert_allclose(stats.theta0, expected, rtol=1e-12, atol=1e-12)
    r = y - w @ expected
    np.testing.assert_allclose(stats.yy, r @ r, rtol=1e-10)
    np.testing.assert_allclose(stats.wy, w.T @ r, rtol=1e-9, atol=1e-9)
    first = _marginal_op.statistics(y, w, s, 30, n_dense=3)
    same = _marginal_op.statistics(y, w, s, 30, dense_columns=[0, 1, 2])
    np.testing.assert_array_equal(first.theta0, same.theta0)
    with pytest.raises(ValueError, match="not both"):
        _marginal_op.statistics(y, w, s, 30, n_dense=2, dense_columns=[0, 1])
    with pytest.raises(ValueError, match="static length"):
        _marginal_op.logp(pt.dvector(), 1.0, 1.0, stats, pt.dvector())
    lam = pt.repeat(pt.dscalar(), 3)  # a length PyTensor works out
    assert _marginal_op.logp(pt.dvector(), 1.0, 1.0, stats, lam).owner.inputs[3].type.shape == (3,)
