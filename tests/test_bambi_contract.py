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
# formulae's function _bambi._eval_categoric_compact mirrors for grouping factors
FORMULAE_EVAL_CATEGORIC = "de2a3c9a57920df2"


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


def test_formulae_eval_categoric_is_unchanged():
    from formulae.terms.variable import Variable

    source = inspect.getsource(_bambi._FORMULAE_EVAL_CATEGORIC)
    assert _bambi._FORMULAE_EVAL_CATEGORIC is not Variable.eval_categoric  # patched
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    assert digest == FORMULAE_EVAL_CATEGORIC, (
        "formulae changed Variable.eval_categoric; port it into _bambi._eval_categoric_compact"
    )


def test_grouping_factors_coded_compactly_as_formulae_codes_them(monkeypatch):
    """The int8 one-hot rows of the grouping factors give what formulae's own int64 coding
    gives: the same levels, group index and sparse group-level design, for a plain factor, an
    interaction of two and a nested bar, and on new data with an unseen level."""
    from formulae.terms.variable import Variable

    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "y": rng.normal(size=90),
            "x": rng.normal(size=90),
            "a": rng.choice(["p", "q", "r"], 90),
            "b": rng.choice(["u", "v", "w", "z"], 90),
        }
    )
    formula = "y ~ x + (1 + x|a) + (1|a:b) + (0 + x|b)"
    new = df.head(6).assign(a=["p", "q", "new", "r", "p", "q"])

    def terms(model):
        return model.parameters["mu"].group_specific_terms

    compact = bmb.Model(formula, df)
    with monkeypatch.context() as m:
        m.setattr(Variable, "eval_categoric", _bambi._FORMULAE_EVAL_CATEGORIC)
        original = bmb.Model(formula, df)
    assert list(terms(compact)) == list(terms(original))
    for name, term in terms(compact).items():
        ref = terms(original)[name]
        assert term.grouper.dtype == np.int8 and ref.grouper.dtype != np.int8
        np.testing.assert_array_equal(term.grouper, ref.grouper)
        np.testing.assert_array_equal(term.group_index, ref.group_index)
        assert list(term.groups) == list(ref.groups)
        np.testing.assert_array_equal(term.data.toarray(), ref.data.toarray())
    import formulae

    previous = formulae.config["EVAL_UNSEEN_CATEGORIES"]
    formulae.config["EVAL_UNSEEN_CATEGORIES"] = "silent"  # as Bambi's predict does
    try:
        for name, term in terms(compact).items():
            z_new = term.term.eval_new_data(new).toarray()
            ref = terms(original)[name].term.eval_new_data(new).toarray()
            np.testing.assert_array_equal(z_new, ref)
    finally:
        formulae.config["EVAL_UNSEEN_CATEGORIES"] = previous
