"""Data handling: missing values, dtypes, polars, and the caller's data frame left untouched.

lme4 drops the incomplete rows of the variables the formula uses (``na.omit``) and nothing
else; lmmformula does the same, says so in a :class:`MissingDataWarning`, and refuses with
``na_action="fail"``. The caller's frame is never changed, whatever its dtypes, through
translate, build, fit, predict and prior_check. A fuzz test feeds random dtypes and NaN
patterns to ``lf.model``: it builds or raises an ``LmmFormulaError``, nothing else.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import lmmformula as lf
from lmmformula._frame import MissingDataWarning
from lmmformula.errors import DataError, LmmFormulaError

N = 40


def _base() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "y": rng.normal(10.0, 2.0, N),
            "x": rng.normal(size=N),
            "z": rng.normal(size=N),
            "f": np.tile(["a", "b", "c", "d"], N // 4),
            "g": np.repeat([f"g{i}" for i in range(8)], N // 8),
            "unused": rng.normal(size=N),
        }
    )


BASE = _base()


def frame(**changes) -> pd.DataFrame:
    return BASE.copy(deep=True).assign(**changes)


def with_na(values, positions) -> pd.Series:
    out = pd.Series(values).copy()
    out.iloc[list(positions)] = None
    return out


def quiet_model(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lf.model(*args, **kwargs)


def assert_unchanged(data: pd.DataFrame, copy: pd.DataFrame) -> None:
    """``data`` is exactly its deep copy: values, dtypes, columns, index and attrs."""
    pd.testing.assert_frame_equal(data, copy, check_exact=True, check_categorical=True)
    assert list(data.columns) == list(copy.columns)
    assert data.dtypes.to_dict() == copy.dtypes.to_dict()
    assert data.index.equals(copy.index)
    assert data.attrs == copy.attrs


# -- missing values: lme4's na.omit on the formula's variables -----------------------------------
def test_incomplete_rows_are_dropped_and_the_warning_says_how_many_and_why():
    data = frame(x=with_na(BASE["x"], [0, 5, 9]), g=with_na(BASE["g"], [5, 20]))
    with pytest.warns(MissingDataWarning) as record:
        m = lf.model("y ~ x + (1|g)", data)
    message = str(record[0].message)
    assert "dropped 4 of 40 rows" in message
    assert "x (3)" in message and "g (2)" in message
    assert "na_action='fail'" in message
    assert record[0].filename == __file__  # the warning points at the caller's line
    kept = [i for i in range(N) if i not in (0, 5, 9, 20)]
    assert m.n_obs == 36
    np.testing.assert_array_equal(m._prepared.rows, kept)
    np.testing.assert_array_equal(m.data["y"], BASE["y"].iloc[kept])
    assert m.data.index.equals(pd.RangeIndex(36))


def test_a_missing_value_in_an_unused_column_drops_nothing():
    data = frame(unused=with_na(BASE["unused"], range(0, N, 2)), z=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingDataWarning)
        m = lf.model("y ~ x + (1|g)", data)
    assert m.n_obs == N
    assert list(m.data.columns) == ["y", "x", "g"]


@pytest.mark.parametrize(
    ("formula", "column", "kwargs"),
    [
        ("y ~ x + (1|g)", "y", {}),
        ("y ~ x + (1|g)", "g", {}),
        ("y ~ log(z2) + (1|g)", "z2", {}),
        ("y ~ x + offset(z) + (1|g)", "z", {}),
        ("y ~ x + (1|g)", "w", {"weights": "w"}),
        ("s | trials(n) ~ x + (1|g)", "n", {}),
        ("y ~ x + (x|g:f)", "f", {}),
    ],
    ids=["response", "grouping", "inside-log", "offset", "weights", "trials", "interaction"],
)
def test_every_role_of_a_variable_counts(formula, column, kwargs):
    data = frame(
        z2=BASE["z"].abs() + 1,
        w=np.linspace(0.5, 1.5, N),
        n=np.full(N, 10),
        s=np.tile([3, 4], N // 2),
    )
    data[column] = with_na(data[column], [1, 2])
    with pytest.warns(MissingDataWarning, match=rf"dropped 2 of 40 rows .*{column} \(2\)"):
        m = lf.model(formula, data, **kwargs)
    assert m.n_obs == N - 2


@pytest.mark.parametrize(
    "missing",
    [
        pd.array([pd.NA, *range(1, N)], dtype="Int64"),
        pd.array([pd.NA, 1.5, *np.linspace(0, 1, N - 2)], dtype="Float64"),
        pd.array([pd.NA, *([True, False] * (N // 2))][:N], dtype="boolean"),
        pd.array([pd.NA, *(["u", "v"] * (N // 2))][:N], dtype="string"),
        pd.Categorical([None, *(["u", "v"] * (N // 2))][:N]),
        pd.Series([None, *(["u", "v"] * (N // 2))][:N], dtype=object),
    ],
    ids=["Int64", "Float64", "boolean", "string", "category", "object-None"],
)
def test_pandas_missing_markers_of_every_dtype_count(missing):
    data = frame(v=missing)
    with pytest.warns(MissingDataWarning, match=r"dropped 1 of 40 rows .*v \(1\)"):
        m = lf.model("y ~ v + (1|g)", data)
    assert m.n_obs == N - 1
    assert not m.data["v"].isna().any()


def test_na_action_fail_refuses_and_names_the_columns():
    data = frame(x=with_na(BASE["x"], [3]), f=with_na(BASE["f"], [4, 7]))
    with pytest.raises(DataError, match=r"3 of 40 rows .*x \(1\), f \(2\)"):
        lf.model("y ~ x + f + (1|g)", data, na_action="fail")
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingDataWarning)
        assert lf.model("y ~ x + (1|g)", frame(), na_action="fail").n_obs == N


def test_rows_left_after_dropping_are_checked_again():
    """Dropping rows can leave a grouping factor with one level: refused, not fitted."""
    data = frame(x=with_na(BASE["x"], range(5, N)))
    with pytest.raises(DataError, match=r"grouping factor 'g' has a single level \('g0'\)"):
        quiet_model("y ~ x + (1|g)", data)


# -- dtypes the model reads ------------------------------------------------------------------------
def test_extension_dtypes_build_the_same_model_as_numpy_dtypes():
    plain = frame(k=np.tile([1, 2, 3, 4, 5], N // 5), flag=np.tile([True, False], N // 2))
    extension = plain.astype(
        {"y": "Float64", "x": "Float64", "k": "Int64", "flag": "boolean", "f": "string"}
    ).assign(g=pd.Categorical(plain["g"]))
    formula = "y ~ x + k + flag + f + (1|g)"
    a, b = lf.model(formula, plain), lf.model(formula, extension)
    assert b.data["y"].dtype == np.float64 and b.data["k"].dtype == np.int64
    assert b.data["flag"].dtype == bool and b.data["f"].dtype == object
    assert isinstance(b.data["g"].dtype, pd.CategoricalDtype)
    pd.testing.assert_frame_equal(a.data.astype({"g": "category"}), b.data)
    assert set(a.build().pymc_model.named_vars) == set(b.build().pymc_model.named_vars)


def test_unused_categories_are_dropped_as_lme4_does():
    g = pd.Categorical(BASE["g"], categories=[*sorted(set(BASE["g"])), "never", "gone"])
    m = lf.model("y ~ x + (1|g)", frame(g=g))
    assert list(m.data["g"].cat.categories) == sorted(set(BASE["g"]))
    assert m.group_sizes == {"g": 8}


def test_an_object_column_of_numbers_is_numeric():
    m = lf.model("y ~ xo + (1|g)", frame(xo=pd.Series(BASE["x"].tolist(), dtype=object)))
    assert m.data["xo"].dtype == np.float64
    assert "xo" in m.build().pymc_model.named_vars


def test_integer_codes_stored_as_text_stay_categorical():
    """cbpp's ``period`` is "1".."4": a categorical, as in lme4's reference analysis."""
    cbpp = lf.load_dataset("cbpp")
    m = lf.model("cbind(incidence, size - incidence) ~ period + (1|herd)", cbpp)
    assert m.data["period"].dtype == object
    pm_model = m.build().pymc_model
    assert pm_model.named_vars["period"].eval().shape == (3,)


def test_numbers_as_text_can_be_declared_a_category():
    xs = BASE["x"].round(3).astype(str)
    with pytest.raises(DataError, match="numbers stored as text"):
        lf.model("y ~ xs + (1|g)", frame(xs=xs))
    m = quiet_model("y ~ xs3 + (1|g)", frame(xs3=pd.Categorical(xs.iloc[np.arange(N) % 3])))
    assert m.n_obs == N


@pytest.mark.parametrize(
    ("response", "family"),
    [
        (np.tile(["yes", "no"], N // 2), "bernoulli"),
        (np.tile([True, False], N // 2), "bernoulli"),
        (np.tile([0, 1], N // 2), "bernoulli"),
        (np.arange(N) % 5, "poisson"),
        (np.linspace(0.1, 3, N), "gamma"),
        (np.linspace(0.01, 0.99, N), "beta"),
        (pd.Categorical(np.arange(N) % 3, ordered=True), "cumulative"),
    ],
    ids=["bernoulli-text", "bernoulli-bool", "bernoulli-01", "poisson", "gamma", "beta", "ordinal"],
)
def test_responses_that_fit_their_family_build(response, family):
    m = quiet_model("r ~ x + (1|g)", frame(r=response), family=family)
    (observed,) = m.build().pymc_model.observed_RVs
    expected = {
        "bernoulli": "bernoulli",
        "poisson": "poisson",
        "gamma": "gamma",
        "beta": "beta",
        "cumulative": "categorical",  # PyMC draws an ordered logistic as a categorical
    }[family]
    assert expected in observed.owner.op.__class__.__name__.lower().replace("_", "")


def test_an_observation_level_effect_is_allowed_for_counts():
    """glmer allows as many levels as rows (overdispersion); lmer does not."""
    data = frame(count=np.arange(N) % 6, obs=[f"o{i}" for i in range(N)])
    assert quiet_model("count ~ x + (1|obs)", data, family="poisson").n_obs == N
    with pytest.raises(DataError, match="number of levels of each grouping factor"):
        quiet_model("y ~ x + (1|obs)", data)


# -- polars ----------------------------------------------------------------------------------------
def test_a_polars_frame_is_converted_not_refused():
    pl = pytest.importorskip("polars")
    data = frame(x=with_na(BASE["x"], [2]))
    polars_frame = pl.from_pandas(data)
    with pytest.warns(MissingDataWarning, match=r"dropped 1 of 40"):
        from_polars = lf.model("y ~ x + f + (1|g)", polars_frame)
    with pytest.warns(MissingDataWarning):
        from_pandas = lf.model("y ~ x + f + (1|g)", data)
    pd.testing.assert_frame_equal(from_polars.data, from_pandas.data)
    with pytest.warns(MissingDataWarning):
        assert lf.model("y ~ x + f + (1|g)", polars_frame.lazy()).n_obs == N - 1
    with pytest.raises(DataError, match=r"column 'xx'.*Did you mean 'x'"):
        lf.model("y ~ xx", polars_frame)


def test_polars_categoricals_and_nulls():
    pl = pytest.importorskip("polars")
    polars_frame = pl.DataFrame(
        {
            "y": BASE["y"].tolist(),
            "k": [None, *range(1, N)],
            "g": pl.Series(BASE["g"].tolist(), dtype=pl.Categorical),
        }
    )
    with pytest.warns(MissingDataWarning, match=r"k \(1\)"):
        m = lf.model("y ~ k + (1|g)", polars_frame)
    assert m.n_obs == N - 1
    assert m.group_sizes == {"g": 8}


# -- the caller's frame is never changed ---------------------------------------------------------
_KINDS = ("float", "Float64", "int", "Int64", "boolean", "string", "category", "object")
# the dtypes each column usually has; now and then it gets any other
_NATURAL = {
    "y": ("float", "Float64", "int", "Int64"),
    "x": ("float", "Float64", "int", "Int64", "boolean"),
    "z": ("float", "Float64", "int", "Int64", "category"),
    "g": ("string", "category", "object", "int", "Int64"),
    "h": ("string", "category", "object"),
    "n": ("int", "Int64"),
}


def _column(name: str, kind: str, rng: np.random.Generator, n: int, levels: int) -> pd.Series:
    if kind in ("float", "Float64"):
        out = pd.Series(rng.normal(size=n))
    elif kind in ("int", "Int64"):
        low = 10 if name == "n" else 0  # trials above the successes, mostly
        out = pd.Series(rng.integers(low, low + min(levels, 9) + 1, n))
    elif kind == "boolean":
        out = pd.Series(rng.integers(0, 2, n).astype(bool))
    else:
        out = pd.Series(rng.choice([f"l{i}" for i in range(levels)], n))
    if kind in ("Float64", "Int64", "boolean", "string", "category"):
        out = out.astype(kind)
    elif kind == "object":
        out = out.astype(object)
    return out


def _choose(rng: np.random.Generator, weighted: dict):
    values = list(weighted)
    p = np.array(list(weighted.values()), dtype=float)
    return values[rng.choice(len(values), p=p / p.sum())]


@st.composite
def frames(draw, columns=("y", "x", "z", "g", "h", "n")):
    """Data frames of random dtypes and NaN patterns, most of them usable by most formulas.

    Hypothesis draws the seed; the seed draws the frame with the probabilities below (which
    hypothesis' own choices, biased towards the simplest value, would not give).
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = _choose(rng, {30: 70, 12: 15, 3: 7, 1: 4, 0: 4})
    data = {}
    for name in columns:
        if rng.random() < 0.04:
            continue  # a column the formula needs is missing
        kinds = _NATURAL[name] if rng.random() < 0.85 else _KINDS
        kind = kinds[rng.integers(len(kinds))]
        levels = _choose(rng, {5: 50, 3: 20, 2: 15, 1: 5, 30: 10})
        column = _column(name, kind, rng, n, levels)
        p_missing = _choose(rng, {0.0: 60, 0.05: 20, 0.3: 17, 1.0: 3})
        if p_missing and n:
            mask = rng.random(n) < p_missing
            if kind in ("int", "boolean") and mask.any():
                column = column.astype(object)
            column = column.mask(mask)
        if kind in ("float", "Float64") and n and rng.random() < 0.05:
            column = column.copy()
            column.iloc[rng.integers(n)] = np.inf
        data[name] = column
    out = pd.DataFrame(data, index=pd.RangeIndex(n))
    out.index = [pd.RangeIndex(n), pd.RangeIndex(10, 10 + 2 * n, 2), pd.Index(range(n))[::-1]][
        rng.integers(3)
    ]
    out.attrs["source"] = "hypothesis"
    return out


FORMULAS = [
    "y ~ x",
    "y ~ x + (1|g)",
    "y ~ x + (x|g)",
    "y ~ x * z + (1|g) + (1|h)",
    "y ~ 0 + z + (x||g)",
    "y ~ x + (1|g/h)",
    "log(y) ~ x + (1|g)",
    "y | trials(n) ~ x + (1|g)",
    "cbind(y, n) ~ x + (1|g)",
    "y ~ C(z) + (1|g)",
    "y ~ x + offset(z) + (1|g)",
    "y ~ scale(x) + (z|g)",
]
FAMILIES = [None, None, "gaussian", "bernoulli", "poisson", "binomial", "gamma", "beta", "t"]


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(frames(), st.sampled_from(FORMULAS), st.sampled_from(FAMILIES), st.booleans())
def test_fuzz_model_builds_or_raises_an_lmmformula_error(data, formula, family, build):
    """Random dtypes and NaN patterns: a model, or one LmmFormulaError; and the data unchanged."""
    copy = data.copy(deep=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            m = lf.model(formula, data, family=family)
            if build:
                m.build()
            event("built")
        except LmmFormulaError as exc:
            event(type(exc).__name__ + str(exc)[:50])
    assert_unchanged(data, copy)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames(columns=("y", "x", "g")), st.sampled_from(["y ~ x + (1|g)", "y ~ x + (x|g)"]))
def test_translate_model_and_build_never_change_the_data(data, formula):
    copy = data.copy(deep=True)
    lf.translate(formula)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            m = lf.model(formula, data)
            m.build()
            m.data.iloc[:, 0] = m.data.iloc[::-1, 0].to_numpy()  # changing the model's copy ...
        except LmmFormulaError:
            pass
    assert_unchanged(data, copy)  # ... leaves the caller's frame as it was


def _sleepstudy_with_extension_dtypes() -> pd.DataFrame:
    sleep = lf.load_dataset("sleepstudy")
    out = pd.DataFrame(
        {
            "Reaction": sleep["Reaction"].astype("Float64"),
            "Days": pd.array([pd.NA, *sleep["Days"].iloc[1:]], dtype="Int64"),
            "Subject": pd.Categorical(sleep["Subject"]),
            "note": pd.array([None, *(["ok"] * (len(sleep) - 1))], dtype="string"),
            "flag": pd.array(np.arange(len(sleep)) % 2 == 0, dtype="boolean"),
        }
    )
    out.index = pd.RangeIndex(100, 100 + len(sleep))  # not the default index
    return out


@pytest.mark.sampling
def test_fit_predict_and_prior_check_never_change_the_data():
    data = _sleepstudy_with_extension_dtypes()
    new = data.iloc[[3, 25, 50]].assign(Days=pd.array([0, 4, 9], dtype="Int64"))
    at = pd.DataFrame(
        {"Days": pd.array([0, 9], dtype="Int64"), "Subject": data["Subject"].iloc[[0, 30]]}
    )
    data_copy, new_copy, at_copy = (x.copy(deep=True) for x in (data, new, at))
    formula = "Reaction ~ Days + (Days|Subject)"
    lf.translate(formula)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lf.model(formula, data)
        m.build()
        fit = m.fit(draws=100, tune=100, chains=2, random_seed=11, progressbar=False)
        fit.predict()
        fit.predict(new)
        fit.predict(new, kind="response", random_seed=1)
        m.prior_check(draws=50, random_seed=1)
        m.prior_check(draws=50, random_seed=1, at=at)
    assert m.n_obs == len(data) - 1
    assert_unchanged(data, data_copy)
    assert_unchanged(new, new_copy)
    assert_unchanged(at, at_copy)


@pytest.mark.sampling
def test_predict_takes_polars_new_data(sleep_fit, sleepstudy):
    pl = pytest.importorskip("polars")
    new = sleepstudy.iloc[[0, 11, 22]]
    from_polars = sleep_fit.predict(pl.from_pandas(new))
    pd.testing.assert_frame_equal(from_polars, sleep_fit.predict(new))


@pytest.mark.sampling
def test_new_data_with_missing_values_predicts_nan_for_those_rows(sleep_fit, sleepstudy):
    """R's predict uses na.pass: rows with missing predictors get NA, the others are kept."""
    new = sleepstudy.iloc[[0, 11, 22]].assign(Days=pd.array([1, pd.NA, 3], dtype="Int64"))
    out = sleep_fit.predict(new)
    assert out["estimate"].isna().tolist() == [False, True, False]
    full = sleep_fit.predict(sleepstudy.iloc[[0, 22]].assign(Days=[1, 3]))
    np.testing.assert_allclose(out["estimate"].iloc[[0, 2]], full["estimate"])
