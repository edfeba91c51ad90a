"""The hand-written LKJ kernel (lmmformula._lkj) against numpy written from its equations,
PyMC's own LKJ density, finite differences, PyMC's LKJCholeskyCov model, and the LKJ law of
its prior draws."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from oracle import (  # tests/ is on sys.path under pytest
    corr_cholesky_from_unconstrained,
    lkj_corr_cholesky_logpdf,
    log_abs_det_jacobian,
)
from pymc_points import lkj_packed_point
from scipy import stats

import lmmformula as lf
from lmmformula import _lkj

MODES = ["NUMBA", "FAST_COMPILE"]  # numba kernels; numpy ``perform`` (Python linker)


def _kernel(mode: str):
    y = pt.dvector("y")
    eta = pt.dscalar("eta")
    chol, log_jac, log_dens = _lkj.CorrCholesky()(y, eta)
    return pytensor.function([y, eta], [chol, log_jac, log_dens], mode=mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k", [2, 3, 4])
def test_kernel_equals_the_equations_and_pymcs_lkj_density(mode, k):
    fn = _kernel(mode)
    rng = np.random.default_rng(k)
    rows, cols = np.tril_indices(k, -1)
    for eta in (0.7, 1.0, 2.0, 3.5):
        y = rng.normal(scale=1.5, size=k * (k - 1) // 2)
        chol, log_jac, log_dens = fn(y, eta)
        np.testing.assert_allclose(chol, corr_cholesky_from_unconstrained(y, k), atol=1e-14)
        np.testing.assert_allclose(np.sum(chol**2, axis=1), 1.0, atol=1e-14)
        # the LKJ density of L, normalising constant included: PyMC's and LKJ (2009) eq. 16
        pymc_logp = pm.logp(pm.LKJCorr.dist(n=k, eta=eta), chol).eval()
        assert float(log_dens) == pytest.approx(float(pymc_logp), rel=1e-12, abs=1e-12)
        assert float(log_dens) == pytest.approx(lkj_corr_cholesky_logpdf(chol, eta), rel=1e-10)
        # log |det| of y -> strictly lower L, by central differences
        numeric = log_abs_det_jacobian(
            lambda v: corr_cholesky_from_unconstrained(v, k)[rows, cols], y
        )
        assert float(log_jac) == pytest.approx(numeric, abs=1e-7)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("k", [2, 3, 4])
def test_gradient_equals_central_differences(mode, k):
    rng = np.random.default_rng(10 + k)
    weights = rng.normal(size=(k, k))
    y = pt.dvector("y")
    chol, log_jac, log_dens = _lkj.CorrCholesky()(y, 2.5)
    target = (weights * chol).sum() + 0.7 * log_jac - 1.3 * log_dens
    f = pytensor.function([y], target, mode=mode)
    grad = pytensor.function([y], pytensor.grad(target, y), mode=mode)
    for _ in range(3):
        point = rng.normal(scale=1.2, size=k * (k - 1) // 2)
        step = 1e-6
        numeric = [
            (f(point + step * e) - f(point - step * e)) / (2 * step) for e in np.eye(point.size)
        ]
        np.testing.assert_allclose(grad(point), numeric, rtol=1e-6, atol=1e-8)


def test_inverse_recovers_the_unconstrained_vector():
    rng = np.random.default_rng(5)
    y = rng.normal(size=6)
    chol = corr_cholesky_from_unconstrained(y, 4)
    for mode in MODES:
        fn = pytensor.function([], _lkj.CorrCholeskyInverse()(pt.as_tensor(chol)), mode=mode)
        np.testing.assert_allclose(fn(), y, rtol=1e-10)


def test_the_kernels_have_pytensor_numba_cache_keys():
    """An operation without a cache key makes the whole compiled graph uncacheable: every
    fit would compile it again."""
    from pytensor.link.numba.dispatch.basic import numba_funcify_and_cache_key

    y = pt.dvector("y")
    outs = _lkj.CorrCholesky()(y, 2.0)
    g = pytensor.grad(outs[1] + outs[2] + outs[0].sum(), y)
    for var in [outs[0], g]:
        node = var.owner
        _, key = numba_funcify_and_cache_key(node.op, node=node)
        assert key is not None, node.op


@pytest.fixture(scope="module")
def sim() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(6), 5)
    x = rng.normal(size=g.size)
    y = 1 + 0.5 * x + rng.normal(size=6)[g] + 0.3 * rng.normal(size=6)[g] * x
    return pd.DataFrame({"y": y + rng.normal(scale=0.5, size=g.size), "x": x, "g": g})


def _old_way_logp(sim: pd.DataFrame, point: dict, eta: float, noncentered: bool) -> float:
    """``y ~ x + (1 + x|g)`` with PyMC's LKJCholeskyCov (the block as it was built before)."""
    codes, levels = pd.factorize(sim["g"], sort=True)
    x = sim["x"].to_numpy()
    with pm.Model():
        intercept = pm.Normal("Intercept", 0, 2)
        slope = pm.Normal("x", 0, 0.5)
        sigma = pm.HalfNormal("sigma", 1)
        sd_dist = pm.HalfNormal.dist(sigma=np.array([1.0, 0.5]), shape=2)
        chol, _, _ = pm.LKJCholeskyCov("g_lkj", n=2, eta=eta, sd_dist=sd_dist, compute_corr=True)
        if noncentered:
            u = pm.Normal("g_offset", 0, 1, shape=(len(levels), 2)) @ chol.T
        else:
            u = pm.MvNormal("g_block", mu=np.zeros(2), chol=chol, shape=(len(levels), 2))
        mu = intercept + slope * (x - x.mean()) + u[codes, 0] + u[codes, 1] * x
        pm.Normal("y", mu, sigma, observed=sim["y"].to_numpy())
        return pm.modelcontext(None).compile_logp(mode="FAST_COMPILE")(point)


@pytest.mark.parametrize("noncentered", [True, False], ids=["noncentered", "centered"])
def test_model_log_density_equals_the_lkjcholeskycov_model(sim, noncentered):
    """Same model as PyMC's LKJCholeskyCov block: at random points the log densities agree
    once the point is mapped to LKJCholeskyCov's coordinates (plus that map's Jacobian)."""
    import bambi as bmb

    priors = {
        "Intercept": bmb.Prior("Normal", mu=0, sigma=2),
        "x": bmb.Prior("Normal", mu=0, sigma=0.5),
        "sigma": bmb.Prior("HalfNormal", sigma=1),
        "1|g": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=1)),
        "x|g": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=0.5)),
    }
    model = lf.model(
        "y ~ x + (x|g)", sim, priors=priors, lkj_eta=1.5, noncentered=noncentered
    ).build()
    pm_model = model.pymc_model
    ours = pm_model.compile_logp(mode="FAST_COMPILE")
    ours_numba = pm_model.compile_logp(mode="NUMBA")
    rng = np.random.default_rng(8)
    for _ in range(3):
        point = {
            k: rng.normal(scale=0.6, size=np.shape(v)) for k, v in pm_model.initial_point().items()
        }
        old, log_jac = lkj_packed_point(point, "g", 2)
        expected = _old_way_logp(sim, old, 1.5, noncentered) + log_jac
        assert ours(point) == pytest.approx(expected, rel=1e-9)
        assert ours_numba(point) == pytest.approx(expected, rel=1e-9)


def _prior_corr(data: pd.DataFrame, formula: str, eta: float, draws: int) -> np.ndarray:
    model = lf.model(formula, data, lkj_eta=eta).build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = pm.sample_prior_predictive(
            draws=draws, model=model.pymc_model, var_names=["g_corr"], random_seed=11
        )
    return idata.prior["g_corr"].values.reshape(draws, *idata.prior["g_corr"].shape[2:])


@pytest.mark.parametrize("eta", [1.0, 3.0])
def test_prior_draws_of_a_2x2_correlation_are_beta_eta_eta(sim, eta):
    corr = _prior_corr(sim, "y ~ x + (x|g)", eta, 4000)
    r = corr[:, 1, 0]
    assert stats.kstest((r + 1) / 2, stats.beta(eta, eta).cdf).pvalue > 0.01
    # a wrong shape would not pass
    assert stats.kstest((r + 1) / 2, stats.beta(eta + 1, eta + 1).cdf).pvalue < 1e-4


@pytest.mark.parametrize("k", [3, 4])
def test_prior_draws_in_larger_blocks_have_lkjs_marginals(k):
    """Every correlation of a k x k LKJ(eta) matrix is Beta(b, b) on [-1, 1] with
    b = eta - 1 + k / 2 (Lewandowski, Kurowicka & Joe 2009): numba's and numpy's samplers."""
    eta = 2.0
    b = eta - 1 + k / 2
    rv = _lkj.LKJCorrCholesky.dist(eta, k=k)
    for mode in MODES:
        chol = pm.draw(rv, draws=4000, random_seed=k, mode=mode)
        corr = chol @ np.swapaxes(chol, -1, -2)
        rows, cols = np.tril_indices(k, -1)
        for i, j in zip(rows, cols, strict=True):
            r = corr[:, i, j]
            assert stats.kstest((r + 1) / 2, stats.beta(b, b).cdf).pvalue > 0.001, (mode, i, j)
        np.testing.assert_allclose(np.diagonal(corr, axis1=1, axis2=2), 1.0, atol=1e-12)


def test_jax_implementation_equals_numpys():
    pytest.importorskip("jax")
    _lkj.register_jax()
    rng = np.random.default_rng(21)
    for k in (2, 3, 4):
        weights = rng.normal(size=(k, k))
        y = pt.dvector("y")
        chol, log_jac, log_dens = _lkj.CorrCholesky()(y, 1.7)
        target = (weights * chol).sum() + 0.7 * log_jac - 1.3 * log_dens
        outs = [target, chol, pytensor.grad(target, y)]
        jax_fn = pytensor.function([y], outs, mode="JAX")
        np_fn = pytensor.function([y], outs, mode="FAST_COMPILE")
        point = rng.normal(size=k * (k - 1) // 2)
        for ours, ref in zip(jax_fn(point), np_fn(point), strict=True):
            np.testing.assert_allclose(np.asarray(ours), ref, rtol=1e-12, atol=1e-12)
