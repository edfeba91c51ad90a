"""Compiling and sampling a PyMC model with nutpie, with the fixed costs cut.

``nutpie.compile_pymc_model`` (numba backend) spends most of its time in two places that do
not depend on the model's size:

* PyTensor turns the logp-and-gradient graph into a numba function. PyTensor caches those
  functions on disk across processes (``~/.pytensor/numba``), keyed by the graph and its
  constants, so a model compiled once compiles from the cache afterwards.
* nutpie wraps that function in a C callback (``numba.cfunc``) that it cannot cache (the
  wrapper is a closure), so numba links the whole logp function's bitcode into the wrapper and
  runs LLVM over it again in every process; the wrapper's ``out[...] = grad`` and
  ``np.all(np.isfinite(out))`` also make numba compile its generic array machinery.

:func:`compile_model` does what ``compile_pymc_model`` does with two changes: the wrappers are
written as plain loops, and when the model has no shared data (Bambi's graphs hold their data
as constants) the wrapper is generated from source and registered under a key derived from
PyTensor's own cache key, so numba caches the finished callback too. A second process that
compiles the same model and data then loads everything from disk. Any mismatch with nutpie's
internals falls back to ``nutpie.compile_pymc_model``.

Pinned to nutpie 0.16 (``pyproject.toml``); ``tests/test_suffstats.py`` checks the internals
used here.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CompileInfo", "compile_model", "nutpie_internals_available"]

_WRAPPER_VERSION = "lmmformula-nutpie-wrapper-1"

_LOGP_SRC = """
def lmmformula_logp_{key}(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    try:
        x = numba.carray(x_, ({n_dim},))
        logp_arr, grad = inner(x)
        logp_val = logp_arr.item()
        logp_[0] = logp_val
        finite = True
        for i in range({n_dim}):
            g = grad[i]
            out_[i] = g
            if not math.isfinite(g):
                finite = False
        if not finite:
            return 3
        if not math.isfinite(logp_val):
            return 4
    except Exception:
        return 1
    return 0
"""

_EXPAND_SRC = """
def lmmformula_expand_{key}(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim}:
        return -1
    if expanded != {n_expanded}:
        return -1
    try:
        x = numba.carray(x_, ({n_dim},))
        (values,) = inner(x)
        for i in range({n_expanded}):
            out_[i] = values[i]
    except Exception:
        return -2
    return 0
"""


@dataclass
class CompileInfo:
    """How a model was compiled: the path taken and where the seconds went."""

    path: str = "nutpie"
    seconds: dict[str, float] = field(default_factory=dict)
    cached_wrappers: bool = False


def nutpie_internals_available() -> bool:
    """Whether the nutpie, PyTensor and numba internals :func:`compile_model` uses exist."""
    try:
        import numba  # noqa: F401
        from nutpie import compile_pymc as ncp
        from pytensor.link.numba.cache import (  # noqa: F401
            CACHED_SRC_FUNCTIONS,
            compile_numba_function_src,
        )
    except ImportError:
        return False
    names = (
        "_make_functions",
        "_wrap_with_lock",
        "make_user_data",
        "_make_c_logp_func",
        "_make_c_expand_func",
        "_prepare_dims_and_coords",
        "CompiledPyMCModel",
    )
    return all(hasattr(ncp, name) for name in names)


def _signatures():
    import numba

    logp_sig = numba.types.int64(
        numba.types.uint64,
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.voidptr,
    )
    expand_sig = numba.types.int64(
        numba.types.uint64,
        numba.types.uint64,
        numba.types.CPointer(numba.types.double),
        numba.types.CPointer(numba.types.double),
        numba.types.voidptr,
    )
    return logp_sig, expand_sig


def _cached_cfunc(src_template: str, inner, sig, **fmt):
    """A ``numba.cfunc`` generated from source and cached under PyTensor's key for ``inner``.

    Returns ``None`` when ``inner`` has no PyTensor cache key (an uncacheable graph).
    """
    import math

    import numba
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, compile_numba_function_src

    inner_key = CACHED_SRC_FUNCTIONS.get(getattr(inner, "py_func", None))
    if inner_key is None:
        return None
    text = src_template.format(key="K", **fmt)
    digest = hashlib.sha256("\n".join([_WRAPPER_VERSION, inner_key, text]).encode()).hexdigest()
    src = src_template.format(key=digest[:16], **fmt)
    name = src.split("(", 1)[0].split()[-1]
    fn = compile_numba_function_src(
        src,
        name,
        global_env={"__name__": __name__, "numba": numba, "math": math, "inner": inner},
        cache_key=f"lmmformula_{digest}",
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=numba.NumbaWarning)
        try:
            return numba.cfunc(sig, cache=True)(fn)
        except Exception:  # an unreadable cache entry: compile without the cache
            return numba.cfunc(sig)(fn)


def compile_model(model, var_names=None) -> tuple[Any, CompileInfo]:
    """Compile a PyMC model for nutpie (numba backend); see the module notes.

    Parameters
    ----------
    model : pymc.Model
    var_names : list of str, optional
        Variables to store in the trace (default: all).

    Returns
    -------
    compiled : nutpie compiled model
    info : CompileInfo
    """
    import nutpie

    info = CompileInfo()
    if not nutpie_internals_available():
        start = time.perf_counter()
        compiled = nutpie.compile_pymc_model(model, var_names=var_names)
        info.seconds["total"] = time.perf_counter() - start
        return compiled, info

    import numba
    from nutpie import compile_pymc as ncp
    from pymc.initial_point import make_initial_point_fn

    info.path = "lmmformula"
    t0 = time.perf_counter()
    initial_point_fn = make_initial_point_fn(
        model=model,
        overrides=None,
        default_strategy="support_point",
        jitter_rvs=set(model.free_RVs),
        return_transformed=True,
    )
    initial_point_fn = ncp._wrap_with_lock(initial_point_fn)
    (
        n_dim,
        n_expanded,
        logp_fn_pt,
        expand_fn_pt,
        initial_point_fn,
        shape_info,
        reparameterized_names,
    ) = ncp._make_functions(
        model,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=True,
        pymc_initial_point_fn=initial_point_fn,
        var_names=var_names,
    )
    t1 = time.perf_counter()
    info.seconds["graph"] = t1 - t0

    logp_fn = logp_fn_pt.vm.jit_fn
    expand_fn = expand_fn_pt.vm.jit_fn
    shared_data: dict[str, np.ndarray] = {}
    shared_var_keys: dict[Any, str] = {}
    for val in [*logp_fn_pt.get_shared(), *expand_fn_pt.get_shared()]:
        if val in shared_var_keys:
            continue
        key = hashlib.sha256(str(id(val)).encode()).hexdigest()[:32]
        shared_data[key] = np.array(val.get_value(), order="C", copy=True)
        shared_data[key].flags.writeable = False
        shared_var_keys[val] = key
    user_data = ncp.make_user_data(shared_var_keys, shared_data)

    logp_sig, expand_sig = _signatures()
    logp_cfunc = expand_cfunc = None
    if not shared_var_keys:
        logp_cfunc = _cached_cfunc(_LOGP_SRC, logp_fn, logp_sig, n_dim=n_dim)
        expand_cfunc = _cached_cfunc(
            _EXPAND_SRC, expand_fn, expand_sig, n_dim=n_dim, n_expanded=n_expanded
        )
    info.cached_wrappers = logp_cfunc is not None and expand_cfunc is not None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=numba.NumbaWarning)
        if logp_cfunc is None:
            keys = [shared_var_keys[v] for v in logp_fn_pt.get_shared()]
            raw, sig = ncp._make_c_logp_func(n_dim, logp_fn, user_data, keys, shared_data)
            logp_cfunc = numba.cfunc(sig)(raw)
        if expand_cfunc is None:
            keys = [shared_var_keys[v] for v in expand_fn_pt.get_shared()]
            raw, sig = ncp._make_c_expand_func(
                n_dim, n_expanded, expand_fn, user_data, keys, shared_data
            )
            expand_cfunc = numba.cfunc(sig)(raw)
    t2 = time.perf_counter()
    info.seconds["numba"] = t2 - t1

    dims, coords = ncp._prepare_dims_and_coords(model, shape_info, reparameterized_names)
    compiled = ncp.CompiledPyMCModel(
        _n_dim=n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info, strict=True)},
        compiled_logp_func=logp_cfunc,
        compiled_expand_func=expand_cfunc,
        initial_point_func=initial_point_fn,
        shared_data=shared_data,
        shared_var_keys=shared_var_keys,
        user_data=user_data,
        n_expanded=n_expanded,
        shape_info=shape_info,
        logp_func=logp_fn_pt,
        expand_func=expand_fn_pt,
        reparameterized_names=reparameterized_names,
    )
    info.seconds["total"] = time.perf_counter() - t0
    return compiled, info


def _trace_var_names(backend, spec) -> list[str]:
    """The variables Bambi's ``PyMCModel._run_mcmc`` stores, without lmmformula's internal
    block variables (``_clean_results`` would drop them anyway)."""
    from pymc.util import get_default_varnames

    model = backend.model
    names = [
        v.name for v in get_default_varnames(model.unobserved_value_vars, include_transformed=False)
    ]
    for name, variable in model.named_vars.items():
        if name in spec.family.likelihood.params and variable in model.deterministics:
            if name in names:
                names.remove(name)
    drop = set()
    if hasattr(backend, "blocks"):
        from lmmformula._bambi import internal_var_names

        drop = internal_var_names(backend.blocks)
    return [name for name in names if name not in drop]


def sample_bambi(
    bambi_model,
    *,
    draws: int,
    tune: int,
    chains: int,
    cores: int | None,
    random_seed,
    nuts: dict | None,
    progressbar: bool,
):
    """Sample a built Bambi model with nutpie directly (not through ``bambi.Model.fit``).

    Seeds, cores and the returned data follow ``pm.sample(nuts_sampler="nutpie")`` and Bambi's
    result cleaning (``PyMCModel._clean_results``: the intercept is un-centered, offsets are
    dropped), so the draws equal those of ``bambi.Model.fit(inference_method="nutpie")`` for
    the same seed.

    Returns
    -------
    idata : xarray.DataTree
    timings : dict
        ``compile`` and ``sample`` seconds, plus the compile stages.
    """
    import os

    import nutpie
    from pymc.backends.arviz import patch_nutpie_idata
    from pymc.util import get_random_generator

    backend = bambi_model.backend
    model = backend.model
    var_names = _trace_var_names(backend, bambi_model)
    start = time.perf_counter()
    compiled, info = compile_model(model, var_names=var_names)
    compiled_at = time.perf_counter()

    if cores is None:
        cores = min(4, os.cpu_count() or 1)
    cores = min(cores, chains)
    rngs = get_random_generator(random_seed).spawn(chains)
    seed = int(rngs[0].integers(2**30))
    settings = dict(nuts or {})
    if "max_treedepth" in settings:
        settings["maxdepth"] = settings.pop("max_treedepth")
    idata = nutpie.sample(
        compiled,
        draws=draws,
        tune=max(int(tune), 1),  # nuts-rs needs at least one tuning step
        chains=chains,
        cores=cores,
        seed=seed,
        save_warmup=False,
        progress_bar=progressbar,
        **settings,
    )
    sampled_at = time.perf_counter()
    patch_nutpie_idata(idata, model, sampling_time=sampled_at - compiled_at)
    _add_observed_data(idata, bambi_model)
    idata = backend._clean_results(idata, omit_offsets=True, include_response_params=False)
    backend.fit = True
    timings = {
        "compile": compiled_at - start,
        "sample": sampled_at - compiled_at,
        **{f"compile_{k}": v for k, v in info.seconds.items() if k != "total"},
    }
    return idata, timings


def _add_observed_data(idata, bambi_model) -> None:
    """Put the response in ``observed_data`` when the graph has no observed variable (the
    sufficient-statistics likelihood), as a full-data fit would."""
    import xarray as xr

    if not hasattr(idata, "children"):  # e.g. an approximation from inference_method="vi"
        return
    group = idata["observed_data"].to_dataset() if "observed_data" in idata.children else None
    if group is not None and len(group.data_vars):
        return
    response = bambi_model.response_term
    name = response.alias or response.name
    values = np.squeeze(np.asarray(response.data))
    if values.ndim != 1:
        return
    attrs = dict(group.attrs) if group is not None else {}
    ds = xr.Dataset(
        {name: (("__obs__",), values)},
        coords={"__obs__": np.arange(values.size)},
        attrs=attrs,
    )
    idata["observed_data"] = xr.DataTree(ds)
