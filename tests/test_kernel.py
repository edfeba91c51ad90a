"""The whole-model kernel (lmmformula._kernel) against the model's equations and PyMC's graph.

The kernel is a second implementation of the log density of gaussian mixed models (one numba
callback instead of PyTensor's graph). Its value is compared with :mod:`tests.oracle` (numpy
and scipy written from the model's equations, nothing from lmmformula) at random points of
every gaussian, non-centered term shape the oracle knows, on both likelihood paths; its
gradient with central differences of the oracle and with PyMC's gradient; its stored
variables with PyMC's deterministics. A model the kernel does not cover goes down PyTensor's
path, and a kernel that disagrees with PyMC is refused before sampling.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from oracle import log_density
from test_oracle_logp import DATA, SHAPES, _model, _oracle, _points

import lmmformula as lf
from lmmformula import _bambi, _kernel, _nutpie

CASES = [
    *[(s, "gaussian", ss) for s in SHAPES for ss in (False, True)],
    *[
        (s, family, False)
        for s in ("(x|g)", "(f|g)", "(x||g)", "nested")
        for family in ("binomial", "poisson")
    ],
]
# the gradient and the stored draws against PyMC: every shape for the gaussian family, the
# likelihood's part for the others
PYMC_CASES = [
    *[(s, "gaussian") for s in ("(x|g)", "(1 + x + z|g)", "(x||g)", "nested")],
    ("(f|g)", "binomial"),
    ("crossed", "poisson"),
]


def _flat(plan, point: dict) -> np.ndarray:
    x = np.zeros(plan.n_dim)
    for name, (sl, _shape) in plan.value_slices.items():
        x[sl] = np.ravel(point[name])
    return x


def _point(plan, x: np.ndarray) -> dict:
    return {name: x[sl].reshape(shape) for name, (sl, shape) in plan.value_slices.items()}


@pytest.mark.parametrize(
    ("shape", "family", "suffstats"),
    CASES,
    ids=[f"{s}-{f}-{'suffstats' if ss else 'rows'}" for s, f, ss in CASES],
)
def test_kernel_log_density_equals_the_equations(shape, family, suffstats):
    m = _model(SHAPES[shape], family, DATA, suffstats=suffstats, noncentered=True)
    m.build()
    plan, logp_cf, _ = _nutpie.kernel_functions(m.bambi)
    oracle = _oracle(SHAPES[shape], family, DATA)
    # binomial and poisson: smaller steps keep the linear predictor moderate (see the oracle)
    scales = (0.3, 0.8, 1.2) if family == "gaussian" else (0.2, 0.4, 0.6)
    seed = CASES.index((shape, family, suffstats))
    for k, point in enumerate(_points(m.pymc_model, 3, seed=seed, scales=scales)):
        x = _flat(plan, point)
        lp, grad, status = _kernel.call_logp(logp_cf, plan, x)
        assert status == 0
        assert lp == pytest.approx(log_density(oracle, point, noncentered=True), rel=1e-9)
        if k > 0:
            continue
        # the gradient: central differences of the oracle, every coordinate of the scales and
        # the Cholesky factors, two of each larger variable (offsets)
        rng = np.random.default_rng(3)
        for name, (sl, _s) in plan.value_slices.items():
            coords = np.arange(sl.start, sl.stop)
            if coords.size > 6:
                coords = rng.choice(coords, size=2, replace=False)
            for i in coords:
                h = 1e-5
                up, down = x.copy(), x.copy()
                up[i] += h
                down[i] -= h
                fd = (
                    log_density(oracle, _point(plan, up), True)
                    - log_density(oracle, _point(plan, down), True)
                ) / (2 * h)
                assert grad[i] == pytest.approx(fd, rel=1e-5, abs=1e-5), (name, i)


@pytest.mark.parametrize(("shape", "family"), PYMC_CASES, ids=[f"{s}-{f}" for s, f in PYMC_CASES])
def test_kernel_gradient_and_draws_equal_pymc(shape, family):
    """Every gradient element and every stored variable (coefficients, sds, correlations)
    against PyMC's graph of the same model, in PyTensor's Python mode."""
    m = _model(SHAPES[shape], family, DATA, noncentered=True)
    m.build()
    plan, logp_cf, expand_cf = _nutpie.kernel_functions(m.bambi)
    logp_grad, expanded = _kernel.reference_functions(m.pymc_model, plan)
    scales = (0.3, 0.8) if family == "gaussian" else (0.2, 0.4)
    for point in _points(m.pymc_model, 2, seed=11, scales=scales):
        x = _flat(plan, point)
        ref_lp, ref_grad = logp_grad(x)
        lp, grad, _ = _kernel.call_logp(logp_cf, plan, x)
        assert lp == pytest.approx(ref_lp, rel=1e-10)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-9)
        out, status = _kernel.call_expand(expand_cf, plan, x)
        assert status == 0
        np.testing.assert_allclose(out, expanded(x), rtol=1e-10, atol=1e-12)
    stored = [v.name for v in plan.expanded_vars]
    assert any("sigma" in name for name in stored)


def test_kernel_bernoulli_with_an_offset_equals_pymc():
    """A 0/1 response (logit link) with an offset in the linear predictor."""
    df = DATA.assign(y01=(DATA["y"] > DATA["y"].median()).astype(int), off=0.1 * DATA["z"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lf.model("y01 ~ x + offset(off) + (1 + x|g)", df, "bernoulli")
        m.build()
    plan, logp_cf, expand_cf = _nutpie.kernel_functions(m.bambi)
    assert plan.ints[22] == 1 and np.any(plan.floats[plan.ints[24] :][: len(df)] != 0)
    for seed in (1, 2):
        x0 = _flat(plan, _points(m.pymc_model, 1, seed=seed, scales=(0.3,))[0])
        _kernel.verify(m.pymc_model, plan, logp_cf, expand_cf, x0, seed=seed)


def _sleep_model(formula="Reaction ~ Days + (Days|Subject)", **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lf.model(formula, lf.load_dataset("sleepstudy"), **kwargs)
        m.build()
    return m


@pytest.mark.parametrize(
    ("priors", "kinds"),
    [
        (None, {_kernel.NORMAL, _kernel.EXPONENTIAL, _kernel.HALFNORMAL}),
        ("brms", {_kernel.STUDENTT, _kernel.HALFSTUDENTT, _kernel.NORMAL}),
        (
            [
                lf.prior("cauchy(250, 50)", cls="Intercept"),
                lf.prior("gamma(2, 0.1)", cls="sd"),
                lf.prior("student_t(5, 0, 20)", cls="sigma"),
            ],
            {_kernel.CAUCHY, _kernel.GAMMA, _kernel.HALFSTUDENTT},
        ),
        (
            [lf.prior("cauchy(0, 30)", cls="sd"), lf.prior("flat", cls="b")],
            {_kernel.HALFCAUCHY, _kernel.FLAT},
        ),
    ],
    ids=["default", "brms", "cauchy-gamma-t", "halfcauchy-flat"],
)
def test_kernel_priors_against_pymc(priors, kinds):
    m = _sleep_model(priors=priors)
    plan, logp_cf, expand_cf = _nutpie.kernel_functions(m.bambi)
    h = plan.ints
    segs = h[h[4] : h[4] + 7 * h[3]].reshape(-1, 7)
    assert kinds <= set(segs[:, 2].tolist())
    x0 = _flat(plan, m.pymc_model.initial_point())
    _kernel.verify(m.pymc_model, plan, logp_cf, expand_cf, x0, seed=5)


def test_kernel_is_used_for_the_first_fits_and_checked():
    m = _sleep_model()
    model = m.pymc_model
    compiled, info = _nutpie.compile_model(
        model, var_names=_bambi.sampled_var_names(m.bambi), backend=m.bambi.backend
    )
    assert (info.path, info.kernel) == ("kernel", "used")
    assert {"numba", "check"} <= set(info.seconds)
    assert compiled.n_dim == sum(np.size(v) for v in model.initial_point().values())


@pytest.mark.parametrize(
    ("formula", "kwargs", "reason"),
    [
        ("Reaction ~ Days + (Days|Subject)", {"noncentered": False}, "centered"),
        ("Reaction ~ Days + (1|Subject)", {"family": "negativebinomial"}, "gaussian"),
        (
            "Reaction ~ Days + (Days|Subject)",
            {"priors": [lf.prior("lognormal(0, 1)", cls="sigma")]},
            "LogNormal",
        ),
    ],
    ids=["centered", "negativebinomial", "lognormal-sigma"],
)
def test_kernel_refuses_what_it_does_not_cover(formula, kwargs, reason):
    data = lf.load_dataset("sleepstudy").assign(Reaction=lambda d: (d.Reaction // 10).astype(int))
    family = kwargs.pop("family", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = (
            lf.model(formula, data, family, **kwargs)
            if family
            else lf.model(formula, data, **kwargs)
        )
        m.build()
    with pytest.raises(_kernel.Unsupported, match=reason):
        _nutpie.kernel_functions(m.bambi)
    if reason != "centered":  # one fallback compile is enough
        return
    model = m.pymc_model
    _, info = _nutpie.compile_model(
        model, var_names=_bambi.sampled_var_names(m.bambi), backend=m.bambi.backend
    )
    assert info.path != "kernel" and info.kernel.startswith("not used")


@pytest.mark.parametrize("where", ["prior", "data", "lkj"])
def test_a_kernel_that_disagrees_with_pymc_is_refused(where, monkeypatch):
    """The check before sampling fails when the kernel's tables describe another model: a
    prior scale, one pseudo response, the LKJ shape."""
    m = _sleep_model()
    plan, logp_cf, expand_cf = _nutpie.kernel_functions(m.bambi)
    f = plan.floats.copy()
    h = plan.ints
    if where == "prior":
        segs = h[h[4] : h[4] + 7 * h[3]].reshape(-1, 7)
        fo = segs[segs[:, 2] == _kernel.EXPONENTIAL][0, 4]
        f[fo] *= 1.01
    elif where == "data":
        f[h[12] + 3] += 0.5
    else:
        blk = h[h[6] : h[6] + 8]
        f[blk[4] + 1 + blk[1]] += 0.5  # eta
    plan.floats = f
    x0 = _flat(plan, m.pymc_model.initial_point())
    with pytest.raises(_kernel.KernelMismatch):
        _kernel.verify(m.pymc_model, plan, logp_cf, expand_cf, x0)
    if where != "prior":
        return
    # and compile_model falls back to PyTensor's path (or raises in strict mode)
    monkeypatch.setattr(_kernel, "plan_model", lambda *a, **k: plan)
    monkeypatch.setattr(_kernel, "STRICT", False)
    _, info = _nutpie.compile_model(
        m.pymc_model, var_names=_bambi.sampled_var_names(m.bambi), backend=m.bambi.backend
    )
    assert info.path != "kernel" and "not used" in info.kernel


@pytest.mark.parametrize("rhs", ["(1 | gr(Subject, cov = K))", "(1 + Days | gr(Subject, cov = K))"])
def test_kernel_refuses_known_covariances(rhs):
    """``gr(g, cov = K)`` multiplies the effects by chol(K): not the kernel's model."""
    data = lf.load_dataset("sleepstudy")
    levels = sorted(data["Subject"].astype(str).unique())
    rng = np.random.default_rng(2)
    a = rng.normal(size=(len(levels), len(levels)))
    k = pd.DataFrame(a @ a.T / len(levels) + np.eye(len(levels)), index=levels, columns=levels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lf.model(f"Reaction ~ Days + {rhs}", data, data2={"K": k})
        m.build()
    with pytest.raises(_kernel.Unsupported, match="cov = K"):
        _nutpie.kernel_functions(m.bambi)
