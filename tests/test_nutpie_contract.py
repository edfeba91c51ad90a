"""Contract with nutpie's internals: fails loudly when a nutpie release changes what
``lmmformula/_nutpie.py`` mirrors or calls.

The compile path (data lifted to run-time inputs, cached callbacks compiled in a child process)
re-does part of ``nutpie.compile_pymc``'s private numba path and calls a few of its private
helpers. Each is pinned here by a hash of its source. When a hash changes after a nutpie
upgrade, re-read that function in the new release, port the change into the lmmformula function
named in the failure message (or stop using it), then update the hash. The same holds for the
numba and PyTensor internals the cached callbacks rely on.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from nutpie import compile_pymc as ncp

from lmmformula import _bambi, _nutpie

# name in nutpie.compile_pymc -> (sha256 of its source, first 16 hex digits; what uses it)
NUTPIE = {
    "compile_pymc_model": (
        "a6afdcae0fab8701",
        "_nutpie._initial_point_fn mirrors its starting point (initial_points=, support point "
        "default, every free variable jittered); the fallback calls it",
    ),
    "_compile_pymc_model_numba": (
        "89222a7ba1f2efba",
        "_nutpie._compile_lifted mirrors it (user_data, CompiledPyMCModel's fields)",
    ),
    "_make_functions": (
        "a4da1ec180d1c8f7",
        "_nutpie._make_functions_lifted mirrors it (flat layout, rewrites, gradient, expansion)",
    ),
    "_make_c_logp_func": (
        "8540ecc018f613c6",
        "_nutpie._LOGP_SRC mirrors its callback (signature and return codes)",
    ),
    "_make_c_expand_func": (
        "544e9ff7f33d5ada",
        "_nutpie._EXPAND_SRC mirrors its callback (signature and return codes)",
    ),
    "_rv_dict_to_flat_array_wrapper": ("cfcea86e4bd30d26", "_nutpie._make_functions_lifted"),
    "_prepare_dims_and_coords": ("96f7328e3ca41d81", "_nutpie._compile_lifted"),
    "_wrap_with_lock": ("8c3d8452332e2e64", "_nutpie._initial_point_fn"),
    "_compute_shapes": (
        "5aa91dc3b480c65f",
        "_nutpie._static_shapes computes the same shapes without compiling; "
        "_make_functions_lifted calls it when the dims do not say",
    ),
    "CompiledPyMCModel": (
        "4e4d3e2a61a74e1f",
        "_nutpie._compile_lifted builds it; its _make_model passes compiled_*_func.address and "
        "user_data to nuts-rs and ignores nutpie.sample's init_mean",
    ),
}


def _numba_and_pytensor():
    from numba.core.ccallback import CFunc
    from pytensor.link.numba import cache

    return {
        "numba CFunc.compile": (
            CFunc.compile,
            "08edc561907b33be",
            "_nutpie._load_cached does its cache-loading half",
        ),
        "pytensor compile_numba_function_src": (
            cache.compile_numba_function_src,
            "ffbe477586a70de9",
            "_nutpie._Callback.python_function registers the callbacks with it",
        ),
        "pytensor NumbaPyTensorCacheLocator": (
            cache.NumbaPyTensorCacheLocator,
            "a8e1ec3636270b66",
            "the child process finds the same cache entries through it (key, not the function)",
        ),
    }


def _digest(obj) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


def test_nutpie_minor_version_is_the_pinned_one():
    assert version("nutpie").startswith("0.16."), (
        f"nutpie {version('nutpie')} is installed; lmmformula/_nutpie.py was written against "
        "0.16 (see pyproject.toml)"
    )


@pytest.mark.parametrize("name", list(NUTPIE))
def test_mirrored_and_called_nutpie_functions_are_unchanged(name):
    expected, used_by = NUTPIE[name]
    assert hasattr(ncp, name), f"nutpie.compile_pymc.{name} is gone; used by {used_by}"
    assert _digest(getattr(ncp, name)) == expected, (
        f"nutpie {version('nutpie')} changed nutpie.compile_pymc.{name}: re-read it, port the "
        f"change into lmmformula ({used_by}), then update the hash in this file"
    )


@pytest.mark.parametrize(
    "label",
    [
        "numba CFunc.compile",
        "pytensor compile_numba_function_src",
        "pytensor NumbaPyTensorCacheLocator",
    ],
)
def test_numba_and_pytensor_internals_are_unchanged(label):
    obj, expected, used_by = _numba_and_pytensor()[label]
    assert _digest(obj) == expected, (
        f"{label} changed: re-read it and check {used_by}, then update the hash in this file"
    )


def test_every_nutpie_name_the_module_uses_is_pinned():
    """Every ``ncp.<name>`` in lmmformula/_nutpie.py (private or not) is hashed above, and the
    module's own list of the names it calls agrees."""
    tree = ast.parse(Path(_nutpie.__file__).read_text())
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "ncp"
    }
    assert used, "the module no longer reaches nutpie through `ncp`: update this test"
    assert used <= set(NUTPIE), f"not pinned here: {sorted(used - set(NUTPIE))}"
    assert set(_nutpie.NUTPIE_PRIVATE_NAMES) == {n for n in used if n != "compile_pymc_model"}
    assert _nutpie.nutpie_internals_available()


def test_compiled_model_fields_are_the_ones_filled_in():
    import dataclasses

    fields = {f.name for f in dataclasses.fields(ncp.CompiledPyMCModel)}
    source = inspect.getsource(_nutpie._compiled_pymc_model)
    filled = {f for f in fields if f"{f}=" in source}
    assert fields - filled <= {"_transform_adapt_args"}, sorted(fields - filled)
    for function in (_nutpie._compile_lifted, _nutpie._compile_kernel):
        assert "_compiled_pymc_model(" in inspect.getsource(function)


def test_the_trace_holds_the_variables_bambis_own_fit_would_store(monkeypatch):
    """``_bambi.sampled_var_names`` against the names Bambi's ``PyMCModel._run_mcmc`` passes
    to ``pm.sample`` (caught before any sampling), for a plain Bambi model and an lmmformula
    model (whose internal block variables are left out)."""
    import bambi as bmb
    import pymc as pm

    import lmmformula as lf

    class Caught(Exception):
        pass

    def catch(**kwargs):
        raise Caught(kwargs["var_names"])

    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "y": rng.normal(size=40),
            "x": rng.normal(size=40),
            "g": np.repeat(list("abcd"), 10),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = bmb.Model("y ~ x + (1 + x|g)", df)
        plain.build()
        ours = lf.model("y ~ x + (1 + x|g)", df, suffstats=False)
        ours.build()
    monkeypatch.setattr(pm, "sample", catch)
    for model, drop in [(plain.backend, set()), (ours.bambi.backend, None)]:
        if drop is None:
            drop = _bambi.internal_var_names(model.blocks)
        with pytest.raises(Caught) as caught:
            model.run(draws=1, tune=1, chains=1, inference_method="pymc")
        expected = [name for name in caught.value.args[0] if name not in drop]
        spec = plain if model is plain.backend else ours.bambi
        assert _bambi.sampled_var_names(spec) == expected
    assert "mu" not in _bambi.sampled_var_names(ours.bambi)
