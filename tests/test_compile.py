"""The compile path (``lmmformula/_nutpie.py``): the compiled log density is the model's, its
code does not depend on the data's values, and the shortcuts it takes (shapes from dims, the
LKJ starting point given as numbers) agree with what PyMC and nutpie compute."""

from __future__ import annotations

import ctypes
import warnings

import numpy as np
import pandas as pd
import pytest

import lmmformula as lf
from lmmformula import _nutpie

OZONE = "log_ozone ~ TEMP + (TEMP|station)"
SLEEP = "Reaction ~ Days + (Days|Subject)"


def _built(formula, data, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lf.model(formula, data, **kwargs)
        m.build()
    return m


@pytest.fixture(scope="module")
def binary():
    rng = np.random.default_rng(3)
    n = 240
    g = rng.integers(0, 8, n)
    x = rng.normal(size=n)
    f = rng.choice(["a", "b", "c"], n)
    eta = -0.3 + 0.8 * x + rng.normal(0, 0.7, 8)[g]
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "x": x, "f": f, "g": [f"g{i}" for i in g]})


def _reference(model):
    """Log density and gradient of the model in PyTensor's Python linker (no numba, no C)."""
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import Mode

    logp = model.logp()
    grads = pt.grad(logp, model.value_vars)
    fn = pytensor.function(
        model.value_vars, [logp, *grads], mode=Mode(linker="py", optimizer="fast_compile")
    )
    return fn


def _call(compiled, x):
    fn = compiled.compiled_logp_func.ctypes
    n = compiled.n_dim
    x = np.ascontiguousarray(x, dtype=float)
    out = np.zeros(n)
    logp = np.zeros(1)

    def ptr(a):
        return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))

    code = fn(n, ptr(x), ptr(out), ptr(logp), compiled.user_data.ctypes.data)
    assert code == 0
    return logp[0], out


MODELS = {
    "ozone, sufficient statistics": (OZONE, "ozone", {}),
    "sleepstudy, full data": (SLEEP, "sleepstudy", {"suffstats": False}),
    "sleepstudy, sufficient statistics": (SLEEP, "sleepstudy", {}),
    "bernoulli, categorical block": ("y ~ x + (0 + f|g)", "binary", {"family": "bernoulli"}),
    "bernoulli, intercept only": ("y ~ x + (1|g)", "binary", {"family": "bernoulli"}),
    # a response with three categories: group effects per non-reference category
    "categorical, group intercepts": ("f ~ x + (1|g)", "binary", {"family": "categorical"}),
}


@pytest.mark.parametrize("label", list(MODELS))
def test_compiled_density_and_gradient_are_the_models(label, request):
    formula, dataset, kwargs = MODELS[label]
    m = _built(formula, request.getfixturevalue(dataset), **kwargs)
    model = m.pymc_model
    compiled, info = _nutpie.compile_model(model)
    assert info.path == "lmmformula"
    assert info.lifted_constants > 0  # the data are inputs, not constants in the code
    reference = _reference(model)
    names, slices, shapes = compiled.shape_info
    free = [model.rvs_to_values[rv].name for rv in model.free_RVs]
    rng = np.random.default_rng(0)
    start = compiled.initial_point_func(1)
    for _ in range(5):
        x = start + rng.normal(0, 0.3, compiled.n_dim)
        logp, grad = _call(compiled, x)
        values = [x[slices[names.index(n)]].reshape(shapes[names.index(n)]) for n in free]
        ref_logp, *ref_grads = reference(*values)
        ref_grad = np.concatenate([np.ravel(g) for g in ref_grads])
        np.testing.assert_allclose(logp, ref_logp, rtol=1e-10)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-8, atol=1e-10)


def _keys(m):
    from pymc.initial_point import make_initial_point_fn
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

    model = m.pymc_model
    fns = _nutpie._make_functions_lifted(
        model, pymc_initial_point_fn=make_initial_point_fn(model=model)
    )
    return tuple(
        CACHED_SRC_FUNCTIONS.get(f.vm.jit_fn.py_func) for f in (fns.logp_fn_pt, fns.expand_fn_pt)
    )


def test_compiled_code_does_not_depend_on_the_data_values(ozone, sleepstudy):
    base = _keys(_built(OZONE, ozone))
    assert None not in base
    # other rows (the same stations), another response, other prior scales: the same code
    fewer = ozone.iloc[37:].reset_index(drop=True)
    assert _keys(_built(OZONE, fewer)) == base
    shifted = ozone.assign(log_ozone=ozone["log_ozone"] * 1.1 + 0.2)
    assert _keys(_built(OZONE, shifted)) == base
    # the full-data likelihood: same number of rows, other values
    full = _keys(_built(SLEEP, sleepstudy, suffstats=False))
    noisy = sleepstudy.assign(Reaction=sleepstudy["Reaction"] + np.arange(len(sleepstudy)) % 7)
    assert _keys(_built(SLEEP, noisy, suffstats=False)) == full
    # a different structure compiles different code
    assert _keys(_built("log_ozone ~ TEMP + (1|station)", ozone)) != base


def test_user_prior_values_do_not_change_the_code(ozone):
    a = _built(OZONE, ozone, priors=[lf.prior("normal(0, 0.1)", cls="b", coef="TEMP")])
    b = _built(OZONE, ozone, priors=[lf.prior("normal(0, 0.3)", cls="b", coef="TEMP")])
    assert _keys(a) == _keys(b)


@pytest.mark.parametrize("label", list(MODELS))
def test_shapes_from_dims_equal_nutpies_shape_function(label, request):
    from nutpie import compile_pymc as ncp

    formula, dataset, kwargs = MODELS[label]
    model = _built(formula, request.getfixturevalue(dataset), **kwargs).pymc_model
    ours = _nutpie._static_shapes(model)
    assert ours is not None
    theirs = {k: tuple(int(s) for s in v) for k, v in ncp._compute_shapes(model).items()}
    assert ours == theirs


def test_lkj_starting_point_is_pymcs_support_point(sleepstudy):
    from pymc.initial_point import make_initial_point_fn

    model = _built(SLEEP, sleepstudy).pymc_model
    overrides = _nutpie._support_point_overrides(model)
    assert list(overrides) == ["Subject_lkj"]
    ours = make_initial_point_fn(model=model, overrides=overrides, jitter_rvs=set())(0)
    pymcs = make_initial_point_fn(model=model, jitter_rvs=set())(0)
    assert sorted(ours) == sorted(pymcs)
    for name in ours:
        np.testing.assert_array_equal(ours[name], pymcs[name], err_msg=name)


def test_data_checks_are_decided_at_compile_time(sleepstudy):
    """Checks on the data alone (a prior's scale > 0) leave the compiled graph; checks that
    involve parameters stay."""
    from pymc.initial_point import make_initial_point_fn
    from pymc.logprob.utils import CheckParameterValue

    model = _built(SLEEP, sleepstudy).pymc_model
    fns = _nutpie._make_functions_lifted(
        model, pymc_initial_point_fn=make_initial_point_fn(model=model)
    )
    nodes = fns.logp_fn_pt.maker.fgraph.toposort()
    assert not [n for n in nodes if isinstance(n.op, CheckParameterValue)]


def test_an_invalid_fixed_parameter_is_refused_with_the_variables_name(sleepstudy):
    import bambi as bmb

    from lmmformula.errors import ModelError

    priors = {"Days": bmb.Prior("Normal", mu=0, sigma=-1.0)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lf.model(SLEEP, sleepstudy, priors=priors)
    with pytest.raises(ModelError, match=r"of 'Days' has a fixed parameter .*\(sigma > 0\)"):
        m.fit(draws=10, tune=10, chains=1, progressbar=False)


def test_group_codes_travel_in_the_smallest_integer_type(binary):
    from pymc.initial_point import make_initial_point_fn

    model = _built("y ~ x + (1|g)", binary, family="bernoulli").pymc_model
    fns = _nutpie._make_functions_lifted(
        model, pymc_initial_point_fn=make_initial_point_fn(model=model)
    )
    ints = {d.dtype: d for d in fns.logp_data if d.dtype.kind in "iu"}
    # the group codes (an index) are narrowed; the 0/1 response (used in arithmetic) is not
    assert sorted(np.unique(ints[np.dtype(np.uint8)])) == list(range(8))
    np.testing.assert_array_equal(ints[np.dtype(np.int64)], binary["y"].to_numpy())


def test_correlated_blocks_sample_with_the_lkj_defaults(sleepstudy):
    from lmmformula.fit import LKJ_NUTS_DEFAULTS

    kwargs = {"draws": 20, "tune": 20, "chains": 1, "random_seed": 1, "progressbar": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        block = lf.fit(SLEEP, sleepstudy, **kwargs)
        own = lf.fit(SLEEP, sleepstudy, target_accept=0.95, **kwargs)
        plain = lf.fit("Reaction ~ Days + (1|Subject)", sleepstudy, **kwargs)
    assert block.settings["target_accept"] == LKJ_NUTS_DEFAULTS["target_accept"] == 0.9
    assert own.settings["target_accept"] == 0.95
    assert plain.settings["target_accept"] is None


def test_a_failed_compile_with_data_inputs_falls_back_to_constants(sleepstudy, monkeypatch):
    """If numba cannot compile the callbacks with the data as inputs (the child process
    fails), the model is compiled with the data as constants, and is still the model."""
    m = _built(SLEEP, sleepstudy)
    calls = []

    def failing_child(jobs, meanwhile=None):
        if meanwhile is not None:
            meanwhile()
        calls.append(len(jobs))
        return False if len(calls) == 1 else None  # the data-input compile fails once

    monkeypatch.setattr(_nutpie, "_compile_in_child", failing_child)
    monkeypatch.setattr(_nutpie, "_load_cached", lambda fn, sig: None)
    compiled, info = _nutpie.compile_model(m.pymc_model)
    assert calls[0] == 2 and info.lifted_constants == 0
    reference = _reference(m.pymc_model)
    names, slices, shapes = compiled.shape_info
    free = [m.pymc_model.rvs_to_values[rv].name for rv in m.pymc_model.free_RVs]
    x = compiled.initial_point_func(2)
    logp, _ = _call(compiled, x)
    values = [x[slices[names.index(n)]].reshape(shapes[names.index(n)]) for n in free]
    np.testing.assert_allclose(logp, reference(*values)[0], rtol=1e-10)


def test_a_cache_miss_is_compiled_in_a_fresh_process_and_loaded_here(sleepstudy, monkeypatch):
    """On a cache miss the callbacks are compiled by a new interpreter (this process is not
    forked) and this process runs the machine code the child saved, as every later process
    does; the loaded callback is still the model's density."""
    import os
    import uuid

    from pytensor.link.numba.cache import NUMBA_CACHE_PATH

    m = _built(SLEEP, sleepstudy)
    monkeypatch.setattr(_nutpie, "_WRAPPER_VERSION", f"test-child-{uuid.uuid4().hex}")

    def no_fork():
        raise AssertionError("the compile path forked this process")

    monkeypatch.setattr(os, "fork", no_fork)
    statuses, keys = [], []
    compile_in_child = _nutpie._compile_in_child

    def spy(jobs, meanwhile=None):
        keys.extend(job.cache_key for job in jobs)
        statuses.append(compile_in_child(jobs, meanwhile))
        return statuses[-1]

    monkeypatch.setattr(_nutpie, "_compile_in_child", spy)
    try:
        compiled, info = _nutpie.compile_model(m.pymc_model)
    finally:  # the callbacks of this one-off wrapper version are of no use to anyone
        for path in NUMBA_CACHE_PATH.iterdir():
            if any(key in path.name for key in keys):
                path.unlink(missing_ok=True)
    assert statuses == [True] and len(keys) == 2
    assert info.path == "lmmformula" and info.cached_wrappers
    for cfunc in (compiled.compiled_logp_func, compiled.compiled_expand_func):
        assert cfunc.cache_hits == 1  # loaded from the child's cache entry, not compiled here
    reference = _reference(m.pymc_model)
    names, slices, shapes = compiled.shape_info
    free = [m.pymc_model.rvs_to_values[rv].name for rv in m.pymc_model.free_RVs]
    x = compiled.initial_point_func(3)
    logp, grad = _call(compiled, x)
    ref_logp, *ref_grads = reference(
        *[x[slices[names.index(n)]].reshape(shapes[names.index(n)]) for n in free]
    )
    np.testing.assert_allclose(logp, ref_logp, rtol=1e-10)
    np.testing.assert_allclose(grad, np.concatenate([np.ravel(g) for g in ref_grads]), rtol=1e-8)
