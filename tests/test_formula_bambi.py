"""Every translated formula builds as a Bambi model with exactly the group terms it promises.

No sampling and no ``.build()``: ``bmb.Model`` construction already runs formulae on the data,
which is where the terms, their names and their columns are decided.
"""

from __future__ import annotations

import warnings

import bambi as bmb
import numpy as np
import pandas as pd
import pytest
from test_formula import TABLE  # tests/ is on sys.path under pytest's default import mode

from lmmformula._frame import add_interaction_factors
from lmmformula.formula import Translation, bambi_namespace, translate

N = 48


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(20240601)
    s = rng.integers(0, 8, N)
    f2 = rng.integers(1, 8, N)
    return pd.DataFrame(
        {
            "y": rng.uniform(1.0, 5.0, N),
            "x": rng.normal(size=N),
            "z": rng.normal(size=N),
            "w": rng.uniform(0.5, 2.0, N),
            "f": np.tile(["lo", "mid", "hi"], N // 3),
            "g": np.repeat(["g1", "g2", "g3", "g4"], N // 4),
            "h": np.tile(["h1", "h2", "h3"], N // 3),
            "a": np.repeat(["a1", "a2", "a3"], N // 3),
            "b": np.tile(["b1", "b2"], N // 2),
            "c": np.tile(np.repeat(["c1", "c2"], 2), N // 4),
            "s": s,
            "f2": f2,
            "n": s + f2,
            "st": np.where(rng.uniform(size=N) < 0.2, "right", "none"),
            "station": np.repeat(["Aotizhongxin", "Changping", "Dingling"], N // 3),
            "TEMP": rng.normal(15, 8, N),
            "log_ozone": rng.normal(4, 0.5, N),
            "PM2.5": rng.uniform(10, 200, N),
            "awards": s,
            "applications": s + f2,
            "gender": np.tile(["f", "m"], N // 2),
            "discipline": np.repeat(["chem", "phys", "bio", "med"], N // 4),
        }
    )


def _model(t: Translation, data: pd.DataFrame):
    data = data.copy()
    add_interaction_factors(data, t)  # the model layer's derived grouping columns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bmb.Model(
            t.bambi_formula,
            data,
            family=t.family or "gaussian",
            extra_namespace=bambi_namespace(),
        )


def _group_terms(model) -> dict:
    return model.parameters[model.family.likelihood.parent].group_specific_terms


@pytest.mark.parametrize("formula", list(TABLE))
def test_table_formula_builds_with_the_promised_group_terms(formula: str, data) -> None:
    t = translate(formula)
    model = _model(t, data)
    assert set(_group_terms(model)) == {g.name for g in t.group_terms}
    assert set(t.variables) <= set(data.columns)


def _columns(formula: str, data: pd.DataFrame) -> dict[str, np.ndarray]:
    model = _model(translate(formula), data)
    return {name: _dense(term.data) for name, term in _group_terms(model).items()}


def _dense(matrix) -> np.ndarray:
    return matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("y ~ (x||g)", "y ~ (1|g) + (0 + x|g)"),
        ("y ~ (x + z||g)", "y ~ (1|g) + (0 + x|g) + (0 + z|g)"),
        ("y ~ (1|a/b)", "y ~ (1|a) + (1|a:b)"),
        ("y ~ (x|a/b)", "y ~ (x|a) + (x|a:b)"),
        ("y ~ (-1 + x|g)", "y ~ (0 + x|g)"),
    ],
)
def test_equivalent_formulas_give_the_same_columns(a: str, b: str, data) -> None:
    ca, cb = _columns(a, data), _columns(b, data)
    assert ca.keys() == cb.keys()
    for name in ca:
        np.testing.assert_array_equal(ca[name], cb[name])


def test_factor_double_vert_is_intercept_plus_contrasts(data) -> None:
    # (f||g), brms/glmmTMB diag(): 1 + (K - 1) columns per group, K = 3 levels of f
    cols = _columns("y ~ (f||g)", data)
    n_groups = data["g"].nunique()
    assert cols["1|g"].shape == (N, n_groups)
    assert cols["f|g"].shape == (N, 2 * n_groups)


def test_factor_without_intercept_has_all_levels(data) -> None:
    # (0 + f|g): a KxK block in lme4, all K levels coded
    cols = _columns("y ~ (0 + f|g)", data)
    assert cols["f|g"].shape == (N, 3 * data["g"].nunique())


@pytest.mark.parametrize(
    ("formula", "trials"),
    [("cbind(s, f2) ~ x", "n"), ("s | trials(n) ~ x", "n"), ("cbind(s, n - s) ~ x", "n")],
)
def test_binomial_trials_reach_bambi(formula: str, trials: str, data) -> None:
    model = _model(translate(formula), data)
    assert model.family.name == "binomial"
    response = np.asarray(model.response_term.data)
    np.testing.assert_array_equal(response[:, 0], data["s"])
    np.testing.assert_array_equal(response[:, 1], data[trials])


def test_weights_reach_bambi(data) -> None:
    model = _model(translate("y | weights(w) ~ x"), data)
    assert model.response_term.is_weighted
