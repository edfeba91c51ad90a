"""Getting the user's data ready for a model without ever changing it.

Everything here works on a copy: the caller's data frame is never mutated. lme4's default
``na.action = na.omit`` is followed: incomplete rows of the variables the formula uses are
dropped, with a warning that says how many and why.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lmmformula.errors import DataError
from lmmformula.formula import Translation

__all__ = ["MissingDataWarning", "PreparedData", "as_pandas", "prepare_data"]


class MissingDataWarning(UserWarning):
    """Rows with missing values in the formula's variables were dropped."""


@dataclass(frozen=True)
class PreparedData:
    """The rows and columns a model uses, and what was done to get them.

    Attributes
    ----------
    frame : pandas.DataFrame
        A fresh copy holding only the formula's columns and complete rows.
    rows : numpy.ndarray
        Positions (0-based) of the kept rows in the caller's data.
    n_dropped : int
        How many rows were dropped for missing values.
    """

    frame: pd.DataFrame
    rows: np.ndarray
    n_dropped: int


def as_pandas(data: Any) -> pd.DataFrame:
    """A pandas DataFrame from a pandas or polars data frame (or anything with ``to_pandas``)."""
    if isinstance(data, pd.DataFrame):
        return data
    module = type(data).__module__
    if module.startswith("polars") and hasattr(data, "to_pandas"):
        try:
            return data.to_pandas()
        except ModuleNotFoundError:  # polars needs pyarrow for to_pandas
            return pd.DataFrame({name: data[name].to_list() for name in data.columns})
    if hasattr(data, "to_pandas") and callable(data.to_pandas):
        return data.to_pandas()
    raise DataError(
        f"data must be a pandas (or polars) DataFrame, got {type(data).__name__}. "
        "Wrap it with pandas.DataFrame(...) first."
    )


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in candidates}
        if name.lower() in lowered:
            close = [lowered[name.lower()]]
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _plain_dtype(series: pd.Series) -> pd.Series:
    """Extension dtypes as the numpy dtypes formulae and Bambi read."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return series
    if pd.api.types.is_bool_dtype(dtype):
        return series.astype(bool)
    if pd.api.types.is_integer_dtype(dtype):
        return series.astype(np.int64)
    if pd.api.types.is_float_dtype(dtype):
        return series.astype(np.float64)
    if pd.api.types.is_string_dtype(dtype) or dtype == object:
        return series.astype(object)
    return series


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
    """
    if na_action not in ("drop", "fail"):
        raise DataError(f"na_action must be 'drop' or 'fail', got {na_action!r}.")
    frame = as_pandas(data)
    columns = [str(c) for c in frame.columns]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise DataError(
            f"the data has duplicate column names: {', '.join(map(repr, duplicated))}. "
            "Rename them so that each column name is unique."
        )
    if len(frame) == 0:
        raise DataError("the data frame is empty (0 rows).")

    needed = list(dict.fromkeys([*translation.variables, *extra_columns]))
    missing = [name for name in needed if name not in frame.columns]
    if missing:
        name = missing[0]
        raise DataError(
            f"the formula uses the column {name!r}, which is not in the data."
            f"{_suggest(name, columns)}"
        )

    used = frame.loc[:, needed].copy(deep=True)
    used.columns = [str(c) for c in used.columns]
    for name in used.columns:
        used[name] = _plain_dtype(used[name])

    incomplete = used.isna()
    n_bad = int(incomplete.any(axis=1).sum())
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
            stacklevel=3,
        )
    keep = ~incomplete.any(axis=1).to_numpy()
    rows = np.flatnonzero(keep)
    clean = used.iloc[rows].reset_index(drop=True)
    for name in clean.columns:
        if pd.api.types.is_float_dtype(clean[name].dtype) and pd.api.types.is_integer_dtype(
            frame[name].dtype
        ):
            clean[name] = clean[name].astype(np.int64)
    return PreparedData(frame=clean, rows=rows, n_dropped=n_bad)
