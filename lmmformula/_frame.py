"""Getting the user's data ready for a model without ever changing it.

Everything here works on a copy: the caller's data frame is never mutated. lme4's default
``na.action = na.omit`` is followed: incomplete rows of the variables the formula uses are
dropped, with a warning that says how many and why; a column the formula does not use never
drops a row.

The checks run in three places, each as soon as what it needs is known:

* :func:`prepare_data` (formula and data): the data frame itself, the columns the formula
  names, missing values, dtypes, infinite values, numbers stored as text, constant predictors
  and grouping factors with a single level;
* :func:`check_response` (plus the family): the family's name and whether the response is
  something that family can take (counts for poisson, 0/1 for bernoulli, successes <= trials
  for binomial, ...), and lme4's "fewer levels than observations" rule;
* :func:`check_design` (plus the Bambi model): values that only exist after the formula's
  transformations, such as ``log(x)`` of zero.

:func:`prepare_new_data` does the same for the new data given to ``Fit.predict``, and
:func:`check_prior_names` refuses a Bambi priors dict naming a term the model lacks (Bambi only
warns and ignores it).
"""

from __future__ import annotations

import difflib
import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lmmformula._families import (
    BINOMIAL_RESPONSE,
    COUNT_RESPONSE,
    FAMILY_ALIASES,
    LEVEL_RESPONSE,
    NONNEGATIVE_RESPONSE,
    POSITIVE_RESPONSE,
    R_FAMILY_NAMES,
    RESIDUAL_SCALE,
    UNIT_RESPONSE,
    VECTOR_RESPONSE,
)
from lmmformula._text import format_number
from lmmformula.errors import DataError, ModelError
from lmmformula.formula import Translation

if TYPE_CHECKING:  # pragma: no cover
    import bambi as bmb

__all__ = [
    "MissingDataWarning",
    "PreparedData",
    "as_pandas",
    "check_design",
    "check_family",
    "check_prior_names",
    "check_response",
    "prepare_data",
    "prepare_new_data",
]

NA_ACTIONS = ("drop", "fail")
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

# Functions of the formula that need numbers (formulae's stateful transforms, Bambi's and
# numpy's math); a text or categorical column inside one fails deep in formulae otherwise.
_NUMERIC_FUNCTIONS = frozenset(
    {
        "scale",
        "center",
        "standardize",
        "offset",
        "log",
        "log2",
        "log10",
        "log1p",
        "exp",
        "exp2",
        "expm1",
        "sqrt",
        "abs",
    }
)
_CALL = re.compile(r"(?<![\w.])((?:np\.|numpy\.)?[A-Za-z_]\w*)\(([^()]*)\)")

_NA_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none", "-", "--", ".", "?", "missing"})


class MissingDataWarning(UserWarning):
    """Rows with missing values in the formula's variables were dropped."""


@dataclass(frozen=True)
class PreparedData:
    """The rows and columns a model uses, and what was done to get them.

    Attributes
    ----------
    frame : pandas.DataFrame
        A fresh copy holding only the formula's columns and complete rows, with a 0-based
        ``RangeIndex`` and plain numpy / categorical dtypes.
    rows : numpy.ndarray
        Positions (0-based) of the kept rows in the caller's data.
    n_dropped : int
        How many rows were dropped for missing values.
    labels : pandas.Index
        The caller's index labels of the kept rows (used to point at rows in messages).
    """

    frame: pd.DataFrame
    rows: np.ndarray
    n_dropped: int
    labels: pd.Index | None = None


@dataclass(frozen=True)
class _Roles:
    """What each column the formula uses is for."""

    response: tuple[str, ...]
    groups: tuple[str, ...]
    weights: tuple[str, ...]
    predictors: tuple[str, ...]
    offset_only: tuple[str, ...]


# -- small helpers ------------------------------------------------------------------------------
def as_pandas(data: Any) -> pd.DataFrame:
    """A pandas DataFrame from a pandas or polars data frame (or anything with ``to_pandas``).

    A pandas DataFrame is returned as it is (callers copy before changing anything); a polars
    DataFrame (or LazyFrame) is converted.
    """
    if isinstance(data, pd.DataFrame):
        return data
    module = type(data).__module__
    if module.startswith("polars"):
        if hasattr(data, "collect") and not hasattr(data, "to_pandas"):  # LazyFrame
            data = data.collect()
        if hasattr(data, "to_pandas"):
            try:
                return data.to_pandas()
            except ModuleNotFoundError:  # polars needs pyarrow for to_pandas
                return pd.DataFrame({name: data[name].to_list() for name in data.columns})
    if hasattr(data, "to_pandas") and callable(data.to_pandas):
        try:
            out = data.to_pandas()
        except Exception as exc:
            raise DataError(
                f"could not convert the {type(data).__name__} to a pandas DataFrame: {exc}"
            ) from exc
        if isinstance(out, pd.DataFrame):
            return out
    if isinstance(data, pd.Series):
        raise DataError(
            "data is a pandas Series; the formula needs a DataFrame with named columns. "
            "Use series.to_frame() or pandas.DataFrame({...})."
        )
    raise DataError(
        f"data must be a pandas (or polars) DataFrame, got {type(data).__name__}. "
        "Wrap it with pandas.DataFrame(...) first."
    )


def _suggest(name: str, candidates: Iterable[str]) -> str:
    candidates = [str(c) for c in candidates]
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in candidates}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _show(value: Any) -> str:
    """A value as a message shows it: strings quoted, floats to 6 significant digits."""
    value = _scalar(value)
    if isinstance(value, float):
        return format_number(value, 6)
    return repr(value)


def _names(values: Iterable[Any], limit: int = 5) -> str:
    values = list(values)
    shown = ", ".join(_show(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _where(labels: pd.Index | None, mask: np.ndarray) -> str:
    """``"3 rows (first at index 17)"`` for the rows where ``mask`` holds."""
    positions = np.flatnonzero(mask)
    count = f"{len(positions)} row{'s' if len(positions) != 1 else ''}"
    if not len(positions):
        return count
    first = positions[0] if labels is None else labels[positions[0]]
    return f"{count} (first at index {_scalar(first)!r})"


def _mentions(text: str, name: str) -> bool:
    """Whether ``text`` (a piece of formula) uses the column ``name``."""
    if f"`{name}`" in text:
        return True
    return re.search(rf"(?<![\w.`]){re.escape(name)}(?![\w.`])", text) is not None


def _is_textual(series: pd.Series) -> bool:
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return False
    return pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)


def _is_numeric(series: pd.Series) -> bool:
    dtype = series.dtype
    return (
        pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
        and not isinstance(dtype, pd.CategoricalDtype)
    )


def add_interaction_factors(frame: pd.DataFrame, translation: Translation) -> None:
    """Add to ``frame`` (the model's own copy) a column per interaction grouping factor: the
    levels of its columns joined by ``:``, so that only combinations present are levels (lme4's
    ``interaction(a, b, drop = TRUE)``)."""
    for name, parts in translation.interaction_factors.items():
        if all(p in frame.columns for p in parts):
            joined = frame[parts[0]].astype(str)
            for part in parts[1:]:
                joined = joined + ":" + frame[part].astype(str)
            frame[name] = joined.to_numpy(dtype=object)
    for gp in translation.gp_terms:  # brms' gp(): a level per unique covariate combination
        if all(c in frame.columns for c in (*gp.covariates, *([gp.by] if gp.by else []))):
            from lmmformula._gp import combo_labels

            frame[gp.column] = combo_labels(frame, gp.covariates, gp.by)


def _roles(translation: Translation, columns: Iterable[str], extra: Iterable[str]) -> _Roles:
    columns = list(columns)
    response_text = translation.response.text
    response = tuple(c for c in columns if _mentions(response_text, c))
    parts: list[str] = []
    for term in translation.group_terms:
        parts += term.factor.split(":")
    groups = tuple(c for c in columns if c in parts)
    weights = tuple(
        c for c in columns if c in extra or c == (translation.response.weights or "").strip("`")
    )
    predictors = tuple(c for c in columns if c not in (*response, *groups, *weights))
    fixed = translation.fixed
    offsets = " ".join(re.findall(r"offset\(([^()]*)\)", fixed))
    without = re.sub(r"offset\([^()]*\)", "", fixed)
    slopes = " ".join(t.expr for t in translation.group_terms)
    offset_only = tuple(
        c
        for c in predictors
        if _mentions(offsets, c) and not _mentions(without, c) and not _mentions(slopes, c)
    )
    return _Roles(response, groups, weights, predictors, offset_only)


# -- dtypes -------------------------------------------------------------------------------------
def _unsupported_dtype(name: str, series: pd.Series) -> None:
    dtype = series.dtype
    kind = None
    if pd.api.types.is_datetime64_any_dtype(dtype):
        kind = "dates/times"
        fix = (
            f"turn it into numbers first, e.g. (data[{name!r}] - data[{name!r}].min()).dt.days,"
            f" or into a category with data[{name!r}].astype(str)"
        )
    elif pd.api.types.is_timedelta64_dtype(dtype):
        kind, fix = "time spans", f"turn it into numbers first, e.g. data[{name!r}].dt.days"
    elif pd.api.types.is_complex_dtype(dtype):
        kind, fix = "complex numbers", "use the real and imaginary parts as two columns"
    elif isinstance(dtype, (pd.PeriodDtype, pd.IntervalDtype, pd.SparseDtype)):
        kind, fix = f"{dtype}", f"convert it with data[{name!r}].astype(str) or to numbers"
    if kind is not None:
        raise DataError(f"the column {name!r} holds {kind} (dtype {dtype}); {fix}.")


def _plain_dtype(name: str, series: pd.Series) -> pd.Series:
    """Extension and object dtypes as the numpy dtypes formulae and Bambi read.

    ``series`` has no missing values (they were dropped before).
    """
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return series.cat.remove_unused_categories()  # lme4 drops unused levels too
    if isinstance(dtype, pd.ArrowDtype):
        numpy_dtype = dtype.numpy_dtype
        if numpy_dtype.kind in "iufb":
            return series.astype(numpy_dtype)
        if numpy_dtype.kind in "mMc":
            return series.astype(numpy_dtype)
        series = series.astype(object)
        dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return series.astype(bool)
    if pd.api.types.is_integer_dtype(dtype):
        if pd.api.types.is_unsigned_integer_dtype(dtype) and series.max() > np.iinfo(np.int64).max:
            return series.astype(np.float64)
        return series.astype(np.int64)
    if pd.api.types.is_float_dtype(dtype):
        return series.astype(np.float64)
    if _is_textual(series):
        return _object_column(name, series.astype(object))
    return series


def _object_column(name: str, series: pd.Series) -> pd.Series:
    """An object column as strings, numbers or booleans; refuses mixtures formulae cannot sort."""
    inferred = pd.api.types.infer_dtype(series, skipna=True)
    if inferred in ("string", "empty", "categorical"):
        return series
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return pd.to_numeric(series)
    if inferred == "boolean":
        return series.astype(bool)
    if inferred == "bytes":
        raise DataError(
            f"the column {name!r} holds bytes; decode it first, e.g. "
            f"data[{name!r}].str.decode('utf-8')."
        )
    kinds = sorted({type(v).__name__ for v in series})
    if inferred in (
        "datetime",
        "datetime64",
        "date",
        "time",
        "timedelta",
        "timedelta64",
        "period",
        "interval",
    ):
        raise DataError(
            f"the column {name!r} holds {inferred} values; turn them into numbers or into "
            f"strings (data[{name!r}].astype(str)) first."
        )
    raise DataError(
        f"the column {name!r} mixes values of different types ({', '.join(kinds)}), so its "
        f"levels cannot be ordered. Make them one type, e.g. data[{name!r}].astype(str) for "
        f"a categorical or pd.to_numeric(data[{name!r}]) for numbers."
    )


def _numbers_as_text(series: pd.Series) -> tuple[float, bool, bool, list[str]]:
    """For a text column: share of values that read as numbers (decimal point or comma),
    whether any has a fractional part, whether decimal commas were seen, and the values that
    look like missing-value markers."""
    text = series.astype(str).str.strip()
    plain = pd.to_numeric(text, errors="coerce")
    comma = text.str.fullmatch(r"[+-]?\d+,\d+")
    with_comma = pd.to_numeric(text.where(~comma, text.str.replace(",", ".")), errors="coerce")
    parsed = plain.where(plain.notna(), with_comma)
    share = float(parsed.notna().mean()) if len(text) else 0.0
    finite = parsed[np.isfinite(parsed)]
    fractional = bool((finite != np.round(finite)).any())
    markers = sorted({v for v in text[parsed.isna()] if v.lower() in _NA_MARKERS})
    return share, fractional, bool(comma.any()), markers


def _check_numbers_as_text(name: str, series: pd.Series, role: str) -> None:
    share, fractional, comma, markers = _numbers_as_text(series)
    n_levels = series.nunique()
    if share < 0.9 or not (fractional or markers or n_levels > 20):
        return
    examples = _names(series.drop_duplicates().head(3))
    convert = (
        f"pd.to_numeric(data[{name!r}].str.replace(',', '.'), errors='coerce')"
        if comma
        else f"pd.to_numeric(data[{name!r}], errors='coerce')"
    )
    extra = ""
    if markers:
        extra = (
            f" Its values {_names(markers)} look like missing-value markers (read the file "
            "with na_values=[...] or let pd.to_numeric turn them into NaN)."
        )
    raise DataError(
        f"the {role} {name!r} holds numbers stored as text ({examples}, ...); as text the "
        f"formula would treat it as a categorical with {n_levels} levels.{extra} Convert it "
        f"with data[{name!r}] = {convert}; if it really is a categorical, say so with "
        f"data[{name!r}].astype('category')."
    )


# -- the data and the formula -------------------------------------------------------------------
def prepare_data(
    data: Any,
    translation: Translation,
    *,
    extra_columns: tuple[str, ...] = (),
    na_action: str = "drop",
) -> PreparedData:
    """Check the data against the formula and return a clean copy of the columns it uses.

    Parameters
    ----------
    data : pandas.DataFrame or polars.DataFrame
        The caller's data; never modified.
    translation : Translation
        The formula as read by :func:`lmmformula.translate`.
    extra_columns : tuple of str
        Other columns the model needs (e.g. ``weights``).
    na_action : {"drop", "fail"}
        ``"drop"`` (lme4's default) drops incomplete rows with a :class:`MissingDataWarning`;
        ``"fail"`` raises :class:`DataError`.

    Raises
    ------
    DataError
        When the data cannot be used with the formula; the message names the column.
    ModelError
        When ``na_action`` is not one of the choices.
    """
    if na_action not in NA_ACTIONS:
        raise ModelError(f"na_action must be 'drop' or 'fail', got {na_action!r}.")
    frame = as_pandas(data)
    columns = [str(c) for c in frame.columns]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise DataError(
            f"the data has duplicate column names: {', '.join(map(repr, duplicated))}. "
            "Rename them so that each column name is unique."
        )
    if len(frame) == 0:
        raise DataError("the data frame is empty (0 rows); there is nothing to fit.")

    extra = tuple(str(c) for c in extra_columns if c)
    for name in extra:
        if name not in columns:
            raise DataError(
                f"weights names the column {name!r}, which is not in the data."
                f"{_suggest(name, columns)}"
            )
    needed = list(dict.fromkeys([*translation.variables, *extra]))
    missing = [name for name in needed if name not in columns]
    if missing:
        name = missing[0]
        raise DataError(
            f"the formula uses the column {name!r}, which is not in the data."
            f"{_suggest(name, columns)}"
        )

    positions = [columns.index(name) for name in needed]
    used = frame.iloc[:, positions].copy(deep=True)
    used.columns = needed
    for name in needed:
        _unsupported_dtype(name, used[name])

    incomplete = used.isna()
    bad = incomplete.any(axis=1).to_numpy()
    n_bad = int(bad.sum())
    if n_bad:
        per_column = incomplete.sum()
        detail = ", ".join(f"{col} ({int(k)})" for col, k in per_column.items() if k)
        if na_action == "fail":
            raise DataError(
                f"{n_bad} of {len(used)} rows have missing values in the formula's variables: "
                f"{detail}. Drop them first, or use na_action='drop' (lme4's default)."
            )
        if n_bad == len(used):
            raise DataError(
                f"every row has a missing value in the formula's variables ({detail}); "
                "nothing is left to fit."
            )
        warnings.warn(
            f"dropped {n_bad} of {len(used)} rows with missing values in the formula's "
            f"variables: {detail} (lme4's na.omit; use na_action='fail' to refuse instead).",
            MissingDataWarning,
            skip_file_prefixes=(_PACKAGE_DIR,),  # point at the caller's line
        )
    rows = np.flatnonzero(~bad)
    labels = frame.index[rows]
    clean = used.iloc[rows].reset_index(drop=True)
    for name in needed:
        clean[name] = _plain_dtype(name, clean[name])
    add_interaction_factors(clean, translation)

    roles = _roles(translation, needed, extra)
    for name in needed:
        column = clean[name]
        if _is_numeric(column):
            values = column.to_numpy(dtype=float)
            infinite = np.isinf(values)
            if infinite.any():
                raise DataError(
                    f"the column {name!r} has infinite values in {_where(labels, infinite)}. "
                    "Replace them (e.g. with NaN, so the rows are dropped) or fix the "
                    "calculation that made them."
                )
    for name in roles.predictors:
        column = clean[name]
        if _is_textual(column):
            _check_numbers_as_text(name, column, "predictor")
        if name in roles.offset_only:
            continue
        if column.nunique() < 2:
            value = _scalar(column.iloc[0])
            if _is_numeric(column) or pd.api.types.is_bool_dtype(column.dtype):
                raise DataError(
                    f"the predictor {name!r} has the same value ({value!r}) in every row used, "
                    "so its effect cannot be told apart from the intercept. Drop it from the "
                    "formula."
                )
            raise DataError(
                f"the predictor {name!r} has a single level ({value!r}) in the rows used; a "
                "categorical predictor needs two or more levels (R: 'contrasts can be applied "
                "only to factors with 2 or more levels'). Drop it from the formula."
            )
    for name in roles.weights:
        column = clean[name]
        if not _is_numeric(column):
            raise DataError(
                f"the weights column {name!r} must hold numbers, but its dtype is {column.dtype}."
            )
        values = column.to_numpy(dtype=float)
        if (values <= 0).any():
            raise DataError(
                f"the weights column {name!r} has zero or negative weights in "
                f"{_where(labels, values <= 0)}; weights must be positive (drop the rows "
                "with weight 0)."
            )
    _check_numeric_functions(clean, translation)
    _check_grouping_factors(clean, translation)
    return PreparedData(frame=clean, rows=rows, n_dropped=n_bad, labels=labels)


def _check_numeric_functions(frame: pd.DataFrame, translation: Translation) -> None:
    texts = [
        translation.response.text,
        translation.fixed,
        *(t.expr for t in translation.group_terms),
    ]
    for text in texts:
        for match in _CALL.finditer(text):
            func, args = match.group(1), match.group(2)
            numpy = func.startswith(("np.", "numpy."))
            if not numpy and func not in _NUMERIC_FUNCTIONS:
                continue
            for name in frame.columns:
                column = frame[name]
                if not _mentions(args, name):
                    continue
                if _is_textual(column) or isinstance(column.dtype, pd.CategoricalDtype):
                    what = "text" if _is_textual(column) else "categories"
                    raise DataError(
                        f"{match.group(0)} needs numbers, but the column {name!r} holds {what} "
                        f"({_names(column.drop_duplicates().head(3))}). Convert it with "
                        f"pd.to_numeric(data[{name!r}]), or drop {func}() from the formula."
                    )


def _factor_levels(frame: pd.DataFrame, factor: str) -> pd.DataFrame | None:
    """The distinct levels of a grouping factor (``a:b`` is the pairs of ``a`` and ``b``)."""
    parts = factor.split(":")
    if not all(p in frame.columns for p in parts):
        return None
    return frame[parts].drop_duplicates()


def _check_grouping_factors(frame: pd.DataFrame, translation: Translation) -> None:
    gp_columns = {g.column for g in translation.gp_terms}  # not groups: GP points
    for factor in translation.grouping_factors:
        if factor in gp_columns:
            continue
        levels = _factor_levels(frame, factor)
        if levels is None:
            continue
        if len(levels) < 2:
            level = ":".join(str(_scalar(v)) for v in levels.iloc[0])
            raise DataError(
                f"the grouping factor {factor!r} has a single level ({level!r}) "
                "in the rows used; lme4 refuses it ('grouping factors must have > 1 sampled "
                f"level'): with one group there is no group-to-group variation to estimate. "
                f"Drop the group-level terms on {factor!r}, or use it as a population-level "
                "predictor."
            )


# -- the data, the formula and the family -------------------------------------------------------
def _builtin_families() -> list[str]:
    from lmmformula import _bambi

    return _bambi.builtin_families()


def check_family(family: Any) -> str:
    """The family's name; refuses a name Bambi does not know, listing the valid ones."""
    if family is None:
        return "gaussian"
    if not isinstance(family, str):
        name = getattr(family, "name", None)
        if not isinstance(name, str):
            raise ModelError(
                f"family must be a family name such as 'gaussian' or a bambi.Family, got "
                f"{type(family).__name__}."
            )
        return name
    valid = _builtin_families()
    if family in valid:
        return family
    if family in R_FAMILY_NAMES:
        return R_FAMILY_NAMES[family]
    base = family.split("(", 1)[0].strip()
    hint = ""
    if "(" in family:
        hint = " Give the link separately: family='binomial', link='logit'."
    lowered = base.lower().replace("-", "_").replace(" ", "_")
    if lowered in valid and lowered != family:
        suggestion = f" Did you mean {lowered!r}?"
    elif lowered in FAMILY_ALIASES:
        suggestion = f" Did you mean {FAMILY_ALIASES[lowered]!r} (Bambi's name for it)?"
    else:
        suggestion = _suggest(lowered, valid)
    raise ModelError(
        f"unknown family {family!r}.{suggestion}{hint} The families are: {', '.join(valid)}."
    )


def _response_expr(translation: Translation) -> str | None:
    """The (plain) response as an expression of columns, without weights or backticks."""
    response = translation.response
    if response.kind != "plain":
        return None
    text = response.text
    if response.weights:
        text = response.bambi[len("weighted(") : -len(f", {response.weights})")]
    text = text.strip()
    if text.startswith("`") and text.endswith("`"):
        text = text[1:-1]
    return text


def _response_column(translation: Translation, frame: pd.DataFrame) -> str | None:
    """The response's column when the (plain) response is a bare column name."""
    text = _response_expr(translation)
    return text if text is not None and text in frame.columns else None


def _evaluate(expr: str, frame: pd.DataFrame) -> np.ndarray | None:
    """Values of a simple expression of columns (``n``, ``size - incidence``), else None."""
    name = expr.strip().strip("`")
    if name in frame.columns:
        column = frame[name]
        return column.to_numpy(dtype=float) if _is_numeric(column) else None
    if not all(_is_numeric(frame[c]) for c in frame.columns if _mentions(expr, c)):
        return None
    try:
        plain = re.sub(r"(?<![\w.])(?:np|numpy)\.", "", expr)  # pandas knows log, exp, sqrt...
        with np.errstate(all="ignore"):
            values = frame.eval(plain, engine="python")
        return np.asarray(values, dtype=float)
    except Exception:
        return None


def check_response(
    frame: pd.DataFrame,
    translation: Translation,
    family: Any,
    *,
    labels: pd.Index | None = None,
) -> None:
    """Whether ``family`` can take the formula's response in ``frame``.

    Called by :class:`~lmmformula.Model` once the family is known, before Bambi sees the data.

    Parameters
    ----------
    frame : pandas.DataFrame
        The prepared data (:attr:`PreparedData.frame`).
    translation : Translation
        The formula as read.
    family : str or bambi.Family
        The response family.
    labels : pandas.Index, optional
        The caller's index labels of the rows of ``frame`` (to point at rows in messages).

    Raises
    ------
    ModelError
        The family is unknown, or cannot take this kind of response at all.
    DataError
        A value of the response does not fit the family; the message names the column.
    """
    name = check_family(family)
    response = translation.response
    if response.kind == "binomial":
        if isinstance(family, str) and name not in BINOMIAL_RESPONSE:
            raise ModelError(
                f"the response {response.text!r} gives successes out of trials, which "
                f"family={name!r} cannot take. Leave family out (binomial is implied) or use "
                f"one of {', '.join(sorted(BINOMIAL_RESPONSE))}."
            )
        _check_binomial(frame, translation, labels)
    elif isinstance(family, str) and name in BINOMIAL_RESPONSE:
        column = _response_column(translation, frame)
        hint = ""
        if column is not None and _is_binary(frame[column]):
            hint = " For a 0/1 (or two-level) response use family='bernoulli'."
        raise ModelError(
            f"family={name!r} needs successes out of trials, but the response is "
            f"{response.text!r}. Write it as 'successes | trials(n) ~ ...' (brms), "
            f"'cbind(successes, failures) ~ ...' (lme4) or 'p(successes, n) ~ ...'.{hint}"
        )
    elif isinstance(family, str):
        column = _response_column(translation, frame)
        if column is not None:
            _check_response_values(frame[column], column, name, labels)
        else:  # a transformed response, e.g. log(y): checked once evaluated, where pandas can
            expr = _response_expr(translation)
            values = _evaluate(expr, frame) if expr else None
            if values is not None and values.shape == (len(frame),):
                _check_finite_response(values, response.text, labels)
                _check_response_values(pd.Series(values), response.text, name, labels)
    if isinstance(family, str) and name in RESIDUAL_SCALE:
        _check_levels_below_rows(frame, translation)


def _nonfinite_rows(values: np.ndarray) -> np.ndarray:
    """Rows (first axis) of ``values`` holding a NaN or an infinity."""
    bad = ~np.isfinite(values)
    return bad.any(axis=tuple(range(1, bad.ndim))) if bad.ndim > 1 else bad


def _check_finite_response(values: np.ndarray, text: str, labels: pd.Index | None) -> None:
    bad = _nonfinite_rows(values)
    if bad.any():
        raise DataError(
            f"the response {text!r} is not a finite number in {_where(labels, bad)} once the "
            "formula's transformation is applied (log or sqrt of zero or negative values?). "
            "Drop or fix those rows first."
        )


def _is_binary(series: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(series.dtype):
        return True
    if _is_numeric(series):
        return bool(series.isin([0, 1]).all())
    return series.nunique() == 2


def _check_response_values(
    series: pd.Series, name: str, family: str, labels: pd.Index | None
) -> None:
    what = f"family={family!r}"
    if family == "bernoulli":
        if pd.api.types.is_bool_dtype(series.dtype):
            return
        if _is_numeric(series):
            values = series.to_numpy(dtype=float)
            bad = ~np.isin(values, [0.0, 1.0])
            if bad.any():
                raise DataError(
                    f"{what} needs a response of 0s and 1s (or two levels), but {name!r} has "
                    f"other values ({_names(pd.unique(series[bad]))}) in {_where(labels, bad)}."
                    " For counts out of a number of trials use 'y | trials(n) ~ ...' with "
                    "the binomial family; for more than two categories, family='categorical'."
                )
            return
        levels = list(pd.unique(series))
        if len(levels) != 2:
            raise DataError(
                f"{what} needs a response with two levels, but {name!r} has {len(levels)}: "
                f"{_names(sorted(map(str, levels)))}. For more than two categories use "
                "family='categorical' (or 'cumulative' for ordered ones)."
            )
        return
    if family in LEVEL_RESPONSE:
        if _is_numeric(series):
            ordered = family != "categorical"
            raise DataError(
                f"{what} needs a categorical response, but {name!r} is numeric. Make it one: "
                f"data[{name!r}] = pd.Categorical(data[{name!r}]"
                + (", ordered=True)" if ordered else ")")
                + (" (the levels in their order)." if ordered else ".")
            )
        if series.nunique() < 2:
            raise DataError(
                f"{what} needs a response with two or more levels, but {name!r} has one "
                f"({_scalar(series.iloc[0])!r})."
            )
        return
    if family in VECTOR_RESPONSE:
        return
    if not _is_numeric(series) and not pd.api.types.is_bool_dtype(series.dtype):
        share, _, comma, _ = _numbers_as_text(series) if _is_textual(series) else (0, 0, 0, 0)
        if share >= 0.9:
            convert = (
                f"pd.to_numeric(data[{name!r}].str.replace(',', '.'), errors='coerce')"
                if comma
                else f"pd.to_numeric(data[{name!r}], errors='coerce')"
            )
            raise DataError(
                f"{what} needs a numeric response, but {name!r} holds numbers stored as text "
                f"({_names(series.drop_duplicates().head(3))}, ...). Convert it with "
                f"data[{name!r}] = {convert}."
            )
        levels = sorted(map(str, pd.unique(series)))
        raise DataError(
            f"{what} needs a numeric response, but {name!r} is categorical with "
            f"{len(levels)} levels ({_names(levels)}). For a two-level response use "
            "family='bernoulli'; for more levels family='categorical'."
        )
    values = series.to_numpy(dtype=float)
    if family in COUNT_RESPONSE:
        negative = values < 0
        if negative.any():
            raise DataError(
                f"{what} needs counts (0, 1, 2, ...), but the response {name!r} has negative "
                f"values in {_where(labels, negative)}. Use family='gaussian' (or another "
                "family for real numbers) if the response is not a count."
            )
        fractional = values != np.round(values)
        if fractional.any():
            raise DataError(
                f"{what} needs counts (0, 1, 2, ...), but the response {name!r} has "
                f"non-integer values (e.g. {_show(values[fractional][0])}) in "
                f"{_where(labels, fractional)}. Use family='gaussian', 'gamma' or "
                "'lognormal' for measurements."
            )
    elif family in POSITIVE_RESPONSE:
        bad = values <= 0
        if bad.any():
            raise DataError(
                f"{what} needs a response greater than 0, but {name!r} has zero or negative "
                f"values in {_where(labels, bad)}; the smallest is {_show(values.min())}. Use "
                f"family='gaussian', or a hurdle family when zeros are real outcomes."
            )
    elif family in NONNEGATIVE_RESPONSE:
        bad = values < 0
        if bad.any():
            raise DataError(
                f"{what} needs a response of 0 or more, but {name!r} has negative values in "
                f"{_where(labels, bad)}."
            )
    elif family in UNIT_RESPONSE:
        bad = (values <= 0) | (values >= 1)
        if bad.any():
            raise DataError(
                f"{what} needs a response strictly between 0 and 1, but {name!r} has values "
                f"outside (0, 1) in {_where(labels, bad)}; they range from {_show(values.min())} "
                f"to {_show(values.max())}. Squeeze 0s and 1s inward, e.g. "
                "(y * (n - 1) + 0.5) / n (Smithson & Verkuilen), or use a binomial model."
            )
    if family in RESIDUAL_SCALE and len(values) > 1 and np.ptp(values) == 0:
        raise DataError(
            f"the response {name!r} has the same value ({_show(values[0])}) in every row "
            f"used; family={family!r} needs a response that varies (its residual scale would "
            "be zero)."
        )


def _check_binomial(frame: pd.DataFrame, translation: Translation, labels: pd.Index | None) -> None:
    response = translation.response
    s_expr = response.successes or ""
    successes = _evaluate(s_expr, frame)
    if response.failures is not None:
        failures = _evaluate(response.failures, frame)
        trials = None if successes is None or failures is None else successes + failures
        n_expr = f"{s_expr} + {response.failures}"
    else:
        failures = None
        n_expr = response.trials or ""
        trials = _evaluate(n_expr, frame)
    for label, expr, values in (
        ("successes", s_expr, successes),
        ("failures", response.failures, failures),
        ("trials", n_expr, trials if failures is None else None),
    ):
        if expr is None:
            continue
        if values is None:
            name = expr.strip().strip("`")
            if name in frame.columns and not _is_numeric(frame[name]):
                raise DataError(
                    f"the binomial {label} {name!r} must be counts, but the column holds "
                    f"{frame[name].dtype} values ({_names(frame[name].drop_duplicates().head(3))}"
                    f"). Convert it with pd.to_numeric(data[{name!r}])."
                )
            continue
        negative = values < 0
        if negative.any():
            raise DataError(
                f"the binomial {label} {expr!r} has negative values in "
                f"{_where(labels, negative)}; counts cannot be negative."
            )
        fractional = values != np.round(values)
        if fractional.any():
            raise DataError(
                f"the binomial {label} {expr!r} must be whole numbers, but has "
                f"{_show(values[fractional][0])} in {_where(labels, fractional)}. For "
                "proportions use 'p | trials(n)' with p * n as successes, or family='beta'."
            )
    if successes is None or trials is None:
        return
    if failures is not None:
        zero = trials == 0
        if zero.any():
            raise DataError(
                f"{_where(labels, zero)} of the response {response.text!r} have 0 successes "
                "and 0 failures: no trials, so they carry no information. Drop those rows."
            )
        return
    zero = trials == 0
    if zero.any():
        raise DataError(
            f"the binomial trials {n_expr!r} is 0 in {_where(labels, zero)}: those rows carry "
            "no information. Drop them."
        )
    over = successes > trials
    if over.any():
        i = int(np.flatnonzero(over)[0])
        raise DataError(
            f"the binomial successes {s_expr!r} exceed the trials {n_expr!r} in "
            f"{_where(labels, over)}, e.g. {_show(successes[i])} successes out of "
            f"{_show(trials[i])}. trials() takes the number of trials, not of failures "
            "(for failures write cbind(successes, failures))."
        )


def _check_levels_below_rows(frame: pd.DataFrame, translation: Translation) -> None:
    n = len(frame)
    gp_columns = {g.column for g in translation.gp_terms}  # not groups: GP points
    for factor in translation.grouping_factors:
        if factor in gp_columns:
            continue
        levels = _factor_levels(frame, factor)
        if levels is None:
            continue
        n_levels = len(levels)
        if n_levels >= n:
            raise DataError(
                f"the grouping factor {factor!r} has {n_levels} levels for {n} observations: "
                "one observation per level, so its variance cannot be told apart from the "
                "residual variance. lme4 refuses this ('number of levels of each grouping "
                "factor must be < number of observations'). Drop the term, or check that "
                f"{factor!r} is the grouping column you meant."
            )


# -- after Bambi has evaluated the formula ------------------------------------------------------
def check_design(
    bambi_model: bmb.Model,
    translation: Translation,
    family: Any,
    *,
    labels: pd.Index | None = None,
) -> None:
    """Refuse non-finite values that only the formula's transformations produce.

    ``log(x)`` of a zero, ``sqrt`` of a negative number and the like give ``-inf`` or ``NaN``
    in the design matrix or the response, which the sampler cannot use.

    Raises
    ------
    DataError
        Naming the term (or response) whose values are not finite.
    """
    from lmmformula import _bambi

    v = _bambi.view(bambi_model)
    observed = v.response if v.response.size else None  # empty: Bambi cannot read it back
    if observed is not None and observed.dtype.kind in "fc":
        _check_finite_response(observed, translation.response.text, labels)
    for term in v.terms:
        name = term.key if not term.dpar else term.name
        values = np.asarray(term.data if term.data is not None else np.empty(0))
        if values.dtype.kind not in "fc":
            continue
        bad = _nonfinite_rows(values)
        if bad.any():
            raise DataError(
                f"the term {name!r} is not a finite number in {_where(labels, bad)} once the "
                "formula's transformation is applied (log or sqrt of zero or negative "
                "values?). Drop or fix those rows first."
            )
    # a transformed response (log(y), ...) is checked against the family here, once evaluated
    expr = _response_expr(translation)
    if expr is None or expr in translation.variables or observed is None:
        return
    if not isinstance(family, str):
        return
    name = check_family(family)
    if observed.ndim == 1 and observed.dtype.kind in "iuf" and name not in LEVEL_RESPONSE:
        _check_response_values(pd.Series(observed), translation.response.text, name, labels)


# -- new data for predictions -------------------------------------------------------------------
def prepare_new_data(data: Any, model: Any) -> pd.DataFrame:
    """New data for ``Fit.predict``: a checked copy whose columns match the model's dtypes.

    Parameters
    ----------
    data : pandas.DataFrame or polars.DataFrame
        The caller's new data; never modified.
    model : Model
        The fitted model (its :attr:`~lmmformula.Model.data` gives the dtypes).

    Raises
    ------
    DataError
        An empty frame, a missing column (with close names), a numeric column given as text,
        or infinite values.
    """
    frame = as_pandas(data)
    columns = [str(c) for c in frame.columns]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise DataError(
            f"the new data has duplicate column names: {', '.join(map(repr, duplicated))}."
        )
    if len(frame) == 0:
        raise DataError("the new data is empty (0 rows); there is nothing to predict.")
    fitted = model.data
    translation = model.translation
    derived = set(translation.interaction_factors) | {g.column for g in translation.gp_terms}
    fitted = fitted[[c for c in fitted.columns if c not in derived]]
    roles = _roles(translation, list(fitted.columns), (model.weights,) if model.weights else ())
    needed = [c for c in fitted.columns if c not in roles.response and c not in roles.weights]
    missing = [c for c in needed if c not in columns]
    if missing:
        name = missing[0]
        raise DataError(
            f"the new data lacks the column {name!r}, which the formula uses."
            f"{_suggest(name, columns)}"
        )
    out = frame.copy(deep=True)
    out.columns = columns
    out = out.reset_index(drop=True)
    for name in fitted.columns:
        if name not in columns:
            continue
        _unsupported_dtype(name, out[name])
        out[name] = column = _plain_new_dtype(name, out[name])
        want = fitted[name]
        numeric_now = _is_numeric(column) or pd.api.types.is_bool_dtype(column.dtype)
        if (_is_textual(want) or isinstance(want.dtype, pd.CategoricalDtype)) and numeric_now:
            examples = _names(column.dropna().drop_duplicates().head(3))
            raise DataError(
                f"the column {name!r} held text in the fit but holds numbers in the new data "
                f"({examples}); its levels would not match. Convert it with "
                f"new_data[{name!r}].astype(str)."
            )
        if _is_numeric(want) and not numeric_now and column.notna().any():
            kind = "text" if _is_textual(column) else str(column.dtype)
            examples = _names(column.dropna().drop_duplicates().head(3))
            raise DataError(
                f"the column {name!r} was numeric in the fit but holds {kind} values in the "
                f"new data ({examples}). Convert it with pd.to_numeric(new_data[{name!r}])."
            )
        if _is_numeric(column):
            infinite = np.isinf(column.to_numpy(dtype=float))
            if infinite.any():
                raise DataError(
                    f"the column {name!r} of the new data has infinite values in "
                    f"{_where(frame.index, infinite)}."
                )
    add_interaction_factors(out, translation)
    return out


def _plain_new_dtype(name: str, series: pd.Series) -> pd.Series:
    """Like :func:`_plain_dtype`, but missing values stay (as NaN; their predictions are NaN,
    R's ``na.pass``)."""
    if not series.isna().any():
        return _plain_dtype(name, series)
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return series
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        return series.astype(np.float64)
    out = series.astype(object)
    return out.where(out.notna(), np.nan)


# -- priors given as a Bambi dict ---------------------------------------------------------------
def check_prior_names(priors: Any, bambi_model: bmb.Model) -> None:
    """Refuse a Bambi priors dict that names a term or parameter the model does not have.

    Bambi only warns about such names and ignores the prior; a prior that silently does
    nothing is worse than an error.

    Raises
    ------
    PriorError
        Naming the unknown key, with close names and the model's terms.
    """
    from lmmformula import _bambi
    from lmmformula.errors import PriorError

    if not isinstance(priors, dict) or not priors:
        return
    components = _bambi.view(bambi_model).components
    parent = _bambi.parent_name(bambi_model)
    terms = list(components[parent])
    auxiliary = [name for name in components if name != parent]
    valid = [*terms, *auxiliary]
    allowed = {*valid, parent, "common", "group_specific"}
    for key, value in priors.items():
        if key not in allowed:
            raise PriorError(
                f"a prior is given for {key!r}, which is not a term or parameter of the model."
                f"{_suggest(str(key), valid)} The model's terms and parameters are: "
                f"{', '.join(map(repr, valid))}."
            )
        if isinstance(value, dict) and key in auxiliary:
            nested = list(components[key])
            unknown = [k for k in value if k not in {*nested, "common", "group_specific"}]
            if unknown:
                raise PriorError(
                    f"a prior is given for {key}.{unknown[0]}, but the model of {key!r} has no "
                    f"term {unknown[0]!r}.{_suggest(str(unknown[0]), nested)} Its terms are: "
                    f"{', '.join(map(repr, nested)) or 'none'}."
                )
