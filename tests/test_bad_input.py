"""The catalogue of bad input: every case ends in one clear ``LmmFormulaError``.

Each row is a call that a person with a messy data frame or half-remembered R syntax might
make, the error class it must raise, and patterns its message must contain: the column, term
or value at fault and, where there is one, the fix. Nothing here samples; the ``draws``/
``chains`` checks run before the model is built, and the prediction cases stop at the
new-data checks, before any draw is read.
"""

from __future__ import annotations

import functools
import re
import warnings

import bambi as bmb
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import lmmformula as lf
from lmmformula.errors import (
    DataError,
    FitError,
    FormulaSyntaxError,
    LmmFormulaError,
    ModelError,
    PriorError,
    UnsupportedSyntaxError,
)
from lmmformula.fit import Fit

N = 40


def _base() -> pd.DataFrame:
    rng = np.random.default_rng(2026)
    return pd.DataFrame(
        {
            "y": rng.normal(10.0, 2.0, N),
            "x": rng.normal(size=N),
            "f": np.tile(["a", "b", "c", "d"], N // 4),
            "g": np.repeat([f"g{i}" for i in range(8)], N // 8),
            "h": np.tile(["p", "q"], N // 2),
            "count": rng.poisson(3.0, N),
            "s": rng.binomial(10, 0.3, N),
            "n": np.full(N, 10),
            "b": np.tile([0, 1], N // 2),
            "pos": rng.gamma(2.0, 1.0, N),
            "prop": rng.uniform(0.05, 0.95, N),
            "w": rng.uniform(0.5, 2.0, N),
        }
    )


BASE = _base()


def data(**changes) -> pd.DataFrame:
    """A fresh copy of the base frame with some columns replaced."""
    return BASE.copy(deep=True).assign(**changes)


def first(values, value, k: int = 1):
    """``values`` with the first ``k`` entries set to ``value`` (as a list, any dtype)."""
    out = list(values)
    out[:k] = [value] * k
    return out


def model(formula, frame=None, **kwargs):
    return lf.model(formula, data() if frame is None else frame, **kwargs)


@functools.cache
def stub_fit() -> Fit:
    """A fit without draws: enough for the new-data checks, which run before any draw is read."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lf.model("y ~ x + f + (1|g)", data())
    return Fit(m, xr.DataTree(), sampler="nutpie")


def predict(**changes):
    new = data().head(4)
    for name, value in changes.items():
        if value is None:
            new = new.drop(columns=name)
        else:
            new[name] = value
    return stub_fit().predict(new)


def case(id, call, error, *patterns):
    return pytest.param(call, error, patterns, id=id)


CASES = [
    # -- half-remembered R syntax (the formula tests have the full table) ------------------
    case(
        "unclosed-bracket",
        lambda: model("y ~ x + (x|g"),
        FormulaSyntaxError,
        r"unmatched '\('",
        r"\n            \^\n",  # the caret sits under the '('
    ),
    case(
        "brms-id-with-double-bar",
        lambda: model("y ~ x + (1 + x || ID | g)"),
        UnsupportedSyntaxError,
        r"'\|\|' in a bar with an ID",
        r"Write \(1 \+ x \| p \| g\) to correlate",
    ),
    case(
        "trials-without-its-argument",
        lambda: model("s | trials() ~ x"),
        FormulaSyntaxError,
        r"trials\(\) needs the number of trials",
        r"s \| trials\(n\) ~ x",
    ),
    case(
        "cbind-with-one-argument",
        lambda: model("cbind(s) ~ x"),
        FormulaSyntaxError,
        r"cbind\(\) takes 2 arguments, got 1",
    ),
    # -- the formula names columns the data lacks -------------------------------------------
    case(
        "missing-column-suggests-close-name",
        lambda: model("y ~ xx + (1|g)"),
        DataError,
        r"column 'xx'",
        r"Did you mean 'x'",
    ),
    case(
        "missing-column-other-case",
        lambda: model("Y ~ x + (1|g)"),
        DataError,
        r"'Y'",
        r"Did you mean 'y'",
    ),
    case(
        "missing-grouping-column",
        lambda: model("y ~ x + (1|group)"),
        DataError,
        r"'group'",
        r"not in the data",
    ),
    case(
        "missing-weights-column",
        lambda: model("y ~ x", weights="ww"),
        DataError,
        r"weights names the column 'ww'",
        r"Did you mean 'w'",
    ),
    # -- grouping factors ------------------------------------------------------------------
    case(
        "grouping-factor-one-level",
        lambda: model("y ~ x + (1|one)", data(one="only")),
        DataError,
        r"grouping factor 'one' has a single level \('only'\)",
        r"> 1 sampled level",
    ),
    case(
        "grouping-factor-one-level-after-na-drop",
        lambda: model("y ~ x + (1|g)", data(g=["g0"] * 5 + [None] * (N - 5))),
        DataError,
        r"grouping factor 'g' has a single level",
    ),
    case(
        "grouping-factor-as-many-levels-as-rows",
        lambda: model("y ~ x + (1|id)", data(id=[f"r{i}" for i in range(N)])),
        DataError,
        r"'id' has 40 levels for 40 observations",
        r"must be < number of observations",
    ),
    case(
        "interaction-factor-as-many-levels-as-rows",
        lambda: model("y ~ x + (1|g:k)", data(k=np.tile(range(5), N // 5))),
        DataError,
        r"'g:k' has 40 levels for 40 observations",
    ),
    # -- columns of the wrong kind ---------------------------------------------------------
    case(
        "numbers-stored-as-text",
        lambda: model("y ~ xs + (1|g)", data(xs=BASE["x"].round(3).astype(str))),
        DataError,
        r"predictor 'xs' holds numbers stored as text",
        r"pd\.to_numeric\(data\['xs'\]",
        r"astype\('category'\)",
    ),
    case(
        "numbers-with-decimal-commas",
        lambda: model(
            "y ~ xs + (1|g)", data(xs=BASE["x"].round(3).astype(str).str.replace(".", ","))
        ),
        DataError,
        r"'xs' holds numbers stored as text",
        r"str\.replace\(',', '\.'\)",
    ),
    case(
        "numbers-as-text-with-na-markers",
        lambda: model(
            "y ~ xs + (1|g)",
            data(xs=first(BASE["x"].round(1).astype(str), "n/a", 2)),
        ),
        DataError,
        r"'xs' holds numbers stored as text",
        r"'n/a'",
        r"missing-value markers",
    ),
    case(
        "mixed-types-in-object-column",
        lambda: model("y ~ m + (1|g)", data(m=pd.Series([1, "a"] * (N // 2), dtype=object))),
        DataError,
        r"'m' mixes values of different types \(int, str\)",
    ),
    case(
        "datetime-predictor",
        lambda: model("y ~ day + (1|g)", data(day=pd.date_range("2024-01-01", periods=N))),
        DataError,
        r"'day' holds dates/times",
        r"\.dt\.days",
    ),
    case(
        "complex-predictor",
        lambda: model("y ~ c + (1|g)", data(c=np.arange(N) + 1j)),
        DataError,
        r"'c' holds complex numbers",
    ),
    case(
        "constant-predictor",
        lambda: model("y ~ x + k + (1|g)", data(k=2.5)),
        DataError,
        r"predictor 'k' has the same value \(2\.5\) in every row",
    ),
    case(
        "single-level-factor",
        lambda: model("y ~ x + lvl + (1|g)", data(lvl="only")),
        DataError,
        r"predictor 'lvl' has a single level \('only'\)",
        r"2 or more levels",
    ),
    # -- the data frame itself -------------------------------------------------------------
    case(
        "empty-data-frame",
        lambda: model("y ~ x + (1|g)", BASE.iloc[:0]),
        DataError,
        r"empty \(0 rows\)",
    ),
    case(
        "every-row-incomplete",
        lambda: model("y ~ x + (1|g)", data(x=np.nan)),
        DataError,
        r"every row has a missing value",
        r"x \(40\)",
    ),
    case(
        "na-action-fail",
        lambda: model("y ~ x + (1|g)", data(x=first(BASE["x"], np.nan, 3)), na_action="fail"),
        DataError,
        r"3 of 40 rows have missing values",
        r"x \(3\)",
        r"na_action='drop'",
    ),
    case(
        "na-action-unknown",
        lambda: model("y ~ x + (1|g)", na_action="omit"),
        ModelError,
        r"na_action must be 'drop' or 'fail', got 'omit'",
    ),
    case(
        "not-a-data-frame",
        lambda: lf.model("y ~ x", {"y": [1.0, 2.0], "x": [0.0, 1.0]}),
        DataError,
        r"got dict",
        r"pandas\.DataFrame",
    ),
    case(
        "a-series-not-a-frame",
        lambda: lf.model("y ~ x", BASE["y"]),
        DataError,
        r"pandas Series",
        r"to_frame",
    ),
    case(
        "duplicate-column-names",
        lambda: lf.model("y ~ x", BASE[["y", "x", "x"]]),
        DataError,
        r"duplicate column names: 'x'",
    ),
    case(
        "infinite-predictor",
        lambda: model("y ~ x + (1|g)", data(x=first(BASE["x"], np.inf, 2))),
        DataError,
        r"column 'x' has infinite values in 2 rows",
    ),
    case(
        "infinite-response",
        lambda: model("y ~ x + (1|g)", data(y=first(BASE["y"], -np.inf))),
        DataError,
        r"column 'y' has infinite values in 1 row \(first at index 0\)",
    ),
    case(
        "log-of-zero-in-a-predictor",
        lambda: model("y ~ log(pz) + (1|g)", data(pz=first(BASE["pos"], 0.0))),
        DataError,
        r"term 'log\(pz\)' is not a finite number",
    ),
    case(
        "log-of-negative-response",
        lambda: model("log(y) ~ x + (1|g)", data(y=first(BASE["y"], -1.0))),
        DataError,
        r"response 'log\(y\)' is not a finite number in 1 row",
    ),
    # -- binomial responses ----------------------------------------------------------------
    case(
        "binomial-successes-exceed-trials",
        lambda: model("s | trials(n) ~ x + (1|g)", data(s=first(BASE["s"], 12))),
        DataError,
        r"successes 's' exceed the trials 'n'",
        r"12 successes out of 10",
    ),
    case(
        "binomial-negative-successes",
        lambda: model("s | trials(n) ~ x + (1|g)", data(s=first(BASE["s"], -1))),
        DataError,
        r"successes 's' has negative values in 1 row",
    ),
    case(
        "binomial-non-integer-successes",
        lambda: model("s | trials(n) ~ x + (1|g)", data(s=first(BASE["s"], 2.5))),
        DataError,
        r"successes 's' must be whole numbers, but has 2\.5",
    ),
    case(
        "binomial-zero-trials",
        lambda: model(
            "s | trials(n) ~ x + (1|g)", data(s=first(BASE["s"], 0), n=first(BASE["n"], 0))
        ),
        DataError,
        r"trials 'n' is 0 in 1 row",
    ),
    case(
        "cbind-zero-successes-and-failures",
        lambda: model(
            "cbind(s, fl) ~ x + (1|g)",
            data(s=first(BASE["s"], 0), fl=first(BASE["n"] - BASE["s"], 0)),
        ),
        DataError,
        r"'cbind\(s, fl\)' have 0 successes and 0 failures",
    ),
    case(
        "cbind-negative-failures",
        lambda: model("cbind(s, n - s) ~ x + (1|g)", data(s=first(BASE["s"], 11))),
        DataError,
        r"failures 'n - s' has negative values",
    ),
    case(
        "binomial-counts-stored-as-text",
        lambda: model("s | trials(n) ~ x + (1|g)", data(n=BASE["n"].astype(str))),
        DataError,
        r"trials 'n' must be counts",
        r"pd\.to_numeric",
    ),
    case(
        "binomial-family-with-a-plain-non-binary-response",
        lambda: model("y ~ x + (1|g)", family="binomial"),
        ModelError,
        r"family='binomial' with a plain response is R's binary regression.*'y' must be 0/1",
        r"cbind\(successes, failures\)",
    ),
    case(
        "cbind-with-gaussian-family",
        lambda: model("cbind(s, n - s) ~ x", family="gaussian"),
        ModelError,
        r"'cbind\(s, n - s\)' gives successes out of trials, which family='gaussian'",
    ),
    # -- bernoulli -------------------------------------------------------------------------
    case(
        "bernoulli-response-not-0-1",
        lambda: model("count ~ x + (1|g)", family="bernoulli"),
        DataError,
        r"family='bernoulli' needs a response of 0s and 1s",
        r"'count' has other values",
    ),
    case(
        "bernoulli-three-levels",
        lambda: model(
            "f3 ~ x + (1|g)",
            data(f3=np.tile(["lo", "mid", "hi", "hi"], N // 4)),
            family="bernoulli",
        ),
        DataError,
        r"'f3' has 3: 'hi', 'lo', 'mid'",
        r"family='categorical'",
    ),
    # -- a family that cannot take the response ----------------------------------------------
    case(
        "gaussian-response-without-variance",
        lambda: model("y ~ x + (1|g)", data(y=3.0)),
        DataError,
        r"response 'y' has the same value \(3\) in every row",
    ),
    case(
        "gaussian-text-response",
        lambda: model("h ~ x + (1|g)"),
        DataError,
        r"needs a numeric response, but 'h' is categorical with 2 levels \('p', 'q'\)",
        r"family='bernoulli'",
    ),
    case(
        "gaussian-response-numbers-as-text",
        lambda: model("ys ~ x + (1|g)", data(ys=BASE["y"].round(2).astype(str))),
        DataError,
        r"'ys' holds numbers stored as text",
        r"pd\.to_numeric\(data\['ys'\]",
    ),
    case(
        "poisson-negative-counts",
        lambda: model("count ~ x + (1|g)", data(count=first(BASE["count"], -2)), family="poisson"),
        DataError,
        r"family='poisson' needs counts",
        r"'count' has negative values in 1 row",
    ),
    case(
        "poisson-non-integer-counts",
        lambda: model("pos ~ x + (1|g)", family="poisson"),
        DataError,
        r"'pos' has non-integer values",
    ),
    case(
        "negativebinomial-negative-counts",
        lambda: model("y ~ x + (1|g)", data(y=first(BASE["count"], -1)), family="negativebinomial"),
        DataError,
        r"family='negativebinomial' needs counts",
    ),
    case(
        "gamma-zero-response",
        lambda: model("pos ~ x + (1|g)", data(pos=first(BASE["pos"], 0.0)), family="gamma"),
        DataError,
        r"family='gamma' needs a response greater than 0, but 'pos'",
        r"the smallest is 0",
    ),
    case(
        "lognormal-negative-response",
        lambda: model("x ~ y + (1|g)", family="lognormal"),
        DataError,
        r"family='lognormal' needs a response greater than 0, but 'x'",
    ),
    case(
        "beta-response-at-the-bounds",
        lambda: model("prop ~ x + (1|g)", data(prop=first(BASE["prop"], 1.0)), family="beta"),
        DataError,
        r"strictly between 0 and 1, but 'prop'",
        r"to 1\b",
    ),
    case(
        "categorical-family-numeric-response",
        lambda: model("count ~ x", family="categorical"),
        DataError,
        r"family='categorical' needs a categorical response, but 'count' is numeric",
    ),
    case(
        "cumulative-family-numeric-response",  # whole-number codes are accepted (brms')
        lambda: model("pos ~ x", family="cumulative"),
        DataError,
        r"not whole numbers",
        r"pd\.Categorical\(data\['pos'\], ordered=True\)",
    ),
    case(
        "cumulative-family-text-response",
        lambda: model("f ~ x", family="cumulative"),
        DataError,
        r"family='cumulative' needs an ordered response",
        r"order is not known",
    ),
    case(
        "mo-on-a-continuous-column",
        lambda: model("y ~ mo(x)"),
        DataError,
        r"mo\(x\) needs an ordered predictor",
        r"write x instead of mo\(x\)",
    ),
    case(
        "mo-on-text",
        lambda: model("y ~ mo(f)"),
        DataError,
        r"mo\(f\) needs an ordered predictor",
        r"pd\.Categorical\(data\['f'\], categories=\[\.\.\.\], ordered=True\)",
    ),
    case(
        "mo-on-numbers-with-gaps",
        lambda: model("y ~ mo(c)", data(c=np.tile([1, 2, 4, 5], N // 4))),
        DataError,
        r"has gaps: no rows with 3",
    ),
    case(
        "unknown-family-lists-valid-ones",
        lambda: model("y ~ x", family="gausian"),
        ModelError,
        r"unknown family 'gausian'",
        r"Did you mean 'gaussian'",
        r"The families are: .*poisson",
    ),
    case(
        "brms-family-name",
        lambda: model("y ~ x", family="student_t"),
        ModelError,
        r"unknown family 'student_t'",
        r"Did you mean 't'",
    ),
    case(
        "r-family-call",
        lambda: model("b ~ x", family="binomial(link = 'logit')"),
        ModelError,
        r"family='binomial', link='logit'",
    ),
    case(
        "negative-weights",
        lambda: model("y ~ x", data(w=first(BASE["w"], -1.0)), weights="w"),
        DataError,
        r"weights column 'w' has zero or negative weights in 1 row",
    ),
    # -- priors ----------------------------------------------------------------------------
    case(
        "bambi-prior-for-a-term-not-in-the-model",
        lambda: model("y ~ x + (1|g)", priors={"xx": bmb.Prior("Normal", mu=0, sigma=1)}),
        PriorError,
        r"prior is given for 'xx'",
        r"Did you mean 'x'",
        r"'1\|g'",
    ),
    case(
        "lmm-prior-for-a-coefficient-not-in-the-model",
        lambda: model("y ~ x + (1|g)", priors=[lf.prior("normal(0, 1)", cls="b", coef="z")]),
        PriorError,
        r"'z'",
    ),
    # -- arguments out of range ------------------------------------------------------------
    case(
        "lkj-eta-zero",
        lambda: model("y ~ x + (x|g)", lkj_eta=0),
        ModelError,
        r"lkj_eta must be a positive number, got 0",
    ),
    case(
        "lkj-eta-negative",
        lambda: model("y ~ x + (x|g)", lkj_eta=-1.5),
        ModelError,
        r"got -1\.5",
    ),
    case(
        "lkj-eta-not-a-number",
        lambda: model("y ~ x + (x|g)", lkj_eta="two"),
        ModelError,
        r"got 'two'",
    ),
    case(
        "draws-zero",
        lambda: lf.fit("y ~ x + (1|g)", data(), draws=0),
        ModelError,
        r"draws must be a positive integer, got 0",
    ),
    case(
        "chains-negative",
        lambda: lf.fit("y ~ x + (1|g)", data(), chains=-1),
        ModelError,
        r"chains must be a positive integer, got -1",
    ),
    case(
        "draws-not-an-integer",
        lambda: lf.fit("y ~ x + (1|g)", data(), draws=100.5),
        ModelError,
        r"draws must be a positive integer, got 100\.5",
    ),
    case(
        "noncentered-names-an-unknown-factor",
        lambda: model("y ~ x + (x|g)", noncentered={"grp": False}),
        ModelError,
        r"noncentered names 'grp'",
        r"'g'",
    ),
    # -- new data at prediction time -------------------------------------------------------
    case(
        "new-data-lacks-a-column",
        lambda: predict(x=None),
        DataError,
        r"new data lacks the column 'x'",
    ),
    case(
        "new-level-of-a-fixed-factor",
        lambda: predict(f=["a", "b", "e", "a"]),
        DataError,
        r"column 'f' has levels not seen in the fit: 'e'",
    ),
    case(
        "new-level-of-a-fixed-factor-even-with-allow-new-levels",
        lambda: stub_fit().predict(data().head(2).assign(f="zz"), allow_new_levels=True),
        DataError,
        r"'f' has levels not seen in the fit: 'zz'",
    ),
    case(
        "new-level-of-a-grouping-factor",
        lambda: predict(g=["g0", "g1", "new", "g0"]),
        DataError,
        r"grouping factor 'g' has levels not seen in the fit: 'new'",
        r"allow_new_levels=True",
    ),
    case(
        "new-data-numbers-as-text",
        lambda: predict(x=["0.5", "1.5", "2", "3"]),
        DataError,
        r"'x' was numeric in the fit but holds text",
        r"pd\.to_numeric",
    ),
    case(
        "new-data-empty",
        lambda: stub_fit().predict(data().iloc[:0]),
        DataError,
        r"new data is empty",
    ),
    case(
        "new-data-infinite",
        lambda: predict(x=[0.0, np.inf, 1.0, 2.0]),
        DataError,
        r"'x' of the new data has infinite values in 1 row \(first at index 1\)",
    ),
    # -- files -----------------------------------------------------------------------------
    case(
        "load-a-missing-file",
        lambda: lf.load_fit("/nonexistent/dir/fit.nc"),
        FitError,
        r"no such file: '/nonexistent/dir/fit\.nc'",
    ),
]


def test_the_catalogue_is_large_enough():
    assert len(CASES) >= 40
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(("call", "error", "patterns"), CASES)
def test_bad_input_fails_clearly(call, error, patterns):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(LmmFormulaError) as info:
            call()
    exc = info.value
    assert type(exc) is error, f"{type(exc).__name__}: {exc}"
    message = str(exc)
    for pattern in patterns:
        assert re.search(pattern, message), f"{pattern!r} not in: {message}"
    # the error is ours, not a re-labelled traceback from deep inside Bambi or formulae
    assert "Bambi could not build the model" not in message
