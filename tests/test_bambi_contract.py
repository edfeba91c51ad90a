"""Contract with Bambi's internals: fails loudly when a Bambi release moves what _bambi.py uses.

``lmmformula/_bambi.py`` copies two short Bambi functions (``PyMCModel.build`` and
``DistributionalComponent.build_group_specific_terms``) with one change each, and relies on the
names, dims and attributes checked here. When this test fails after a Bambi upgrade, re-read
those functions in the new release, port the change into ``_bambi.py``, then update the hashes.
"""

from __future__ import annotations

import hashlib
import inspect
from importlib.metadata import version

import bambi as bmb
import numpy as np
import pandas as pd
import pytest
from bambi.backend import model_components, pymc, terms, utils

from lmmformula import _bambi

# sha256 (first 16 hex digits) of the source of the Bambi functions _bambi.py mirrors.
MIRRORED = {
    (pymc.PyMCModel, "build"): "1f1da74b25123931",
    (model_components.DistributionalComponent, "build_group_specific_terms"): "9b983c1ec25f5fea",
    (pymc.PyMCModel, "_clean_results"): "cf158c772e7686dd",
    # _bambi.sampled_var_names: the trace's variables as _run_mcmc chooses them
    (pymc.PyMCModel, "_run_mcmc"): "5b6de6445b560ea2",
    # mirrored for mo() terms (lmmformula._mono)
    (model_components.DistributionalComponent, "build_common_terms"): "5f0b8d147140d046",
}


def test_bambi_minor_version_is_the_pinned_one():
    assert version("bambi").startswith(_bambi.BAMBI_SERIES + ".")


@pytest.mark.parametrize(("owner", "name"), list(MIRRORED), ids=lambda x: getattr(x, "__name__", x))
def test_mirrored_bambi_functions_are_unchanged(owner, name):
    source = inspect.getsource(getattr(owner, name))
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    assert digest == MIRRORED[(owner, name)], (
        f"Bambi changed {owner.__name__}.{name}; port the change into lmmformula/_bambi.py"
    )


def test_internal_names_used_by_lmmformula_exist():
    assert callable(utils.noncentered_default_for)
    assert callable(utils.get_distribution_from_prior)
    for cls in (model_components.ConstantComponent, model_components.ResponseComponent):
        assert hasattr(cls, "build")
    assert {"term", "noncentered"} <= set(inspect.signature(terms.GroupSpecificTerm).parameters)
    assert "spec" in inspect.signature(pymc.PyMCModel.build).parameters
    params = inspect.signature(pymc.PyMCModel._clean_results).parameters
    assert list(params) == ["self", "idata", "omit_offsets", "include_response_params"]


@pytest.fixture(scope="module")
def plain_bambi():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "y": rng.normal(size=60),
            "x": rng.normal(size=60),
            "f": np.tile(list("abc"), 20),
            "g": np.repeat(list("pqrstu"), 10),
        }
    )
    model = bmb.Model("y ~ x + (1 + x|g) + (0 + f|g)", df)
    model.build()
    return model


def test_group_term_attributes_and_dims(plain_bambi):
    gs = plain_bambi.parameters["mu"].group_specific_terms
    assert list(gs) == ["1|g", "x|g", "f|g"]
    term = gs["f|g"]
    for attr in ("predictor", "group_index", "groups", "prior", "hyperprior_alias", "categorical"):
        assert hasattr(term, attr)
    assert list(term.coords) == ["g__factor_dim", "f__expr_dim"]
    # formulae codes f against the intercept already on g: contrasts, not all three levels
    assert term.categorical and list(term.term.expr.levels) == ["b", "c"]
    assert term.prior.name == "Normal" and isinstance(term.prior.args["sigma"], bmb.Prior)


def test_bambi_names_the_noncentered_variables_as_assumed(plain_bambi):
    model = plain_bambi.backend.model
    free = {rv.name for rv in model.free_RVs}
    assert {"1|g_offset", "x|g_offset", "1|g_sigma", "x|g_sigma"} <= free
    assert {d.name for d in model.deterministics} >= {"1|g", "x|g", "f|g"}
    assert tuple(model.named_vars_to_dims["f|g"]) == ("g__factor_dim", "f__expr_dim")
