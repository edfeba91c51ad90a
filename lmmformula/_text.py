"""Text shared by the printed reports and the error messages: numbers, term names, carets.

One place for three small jobs that several modules do:

* :func:`format_number` writes a number (in general, positional or fixed notation) and
  :func:`column_format` picks one format for a whole table column, as brms and R print one;
* :func:`term_label` names the coefficient of a group-level term as lme4 and brms print it;
* :func:`point_at` writes a message with the offending text and carets under its span, for the
  formula's errors and the prior parser's alike.

Imports only the standard library (numpy on demand), so the formula layer can use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable
from decimal import Decimal
from functools import partial
from typing import Any, Literal

__all__ = [
    "caret_lines",
    "clamp_span",
    "coef_label",
    "column_format",
    "format_number",
    "point_at",
    "table_decimals",
    "term_label",
]

MOST_DECIMALS = 6
"""More decimals than this in a table column and the column is written in scientific notation."""

Notation = Literal["general", "positional", "fixed", "scientific"]


# -- numbers ----------------------------------------------------------------------------------
def format_number(
    value: Any, digits: int = 3, *, notation: Notation = "general", decimals: int | None = None
) -> str:
    """A number as text, to ``digits`` significant digits.

    Parameters
    ----------
    value : float or array-like
        The number. An array whose elements are all equal shows as that one number, any
        other array as ``[a, b, ...]``.
    digits : int
        Significant digits.
    notation : {"general", "positional", "fixed", "scientific"}
        ``"general"``: Python's ``g`` format (trailing zeros dropped; scientific from
        ``10**digits`` up and below ``1e-4``), for numbers in sentences.
        ``"positional"``: rounded to ``digits`` significant digits, never scientific, zero as
        ``0``, for numbers a user may copy (priors).
        ``"fixed"``: ``decimals`` decimals, trailing zeros kept; without ``decimals``, as many
        as give ``digits`` significant digits, at least 2 (:func:`table_decimals`).
        ``"scientific"``: ``digits`` significant digits in scientific notation.
    decimals : int, optional
        The decimals of the fixed notation.

    Returns
    -------
    str
        Non-finite values show as ``nan``, ``inf`` and ``-inf``.

    Examples
    --------
    >>> format_number(0.05333), format_number(1234.5), format_number(float("nan"))
    ('0.0533', '1.23e+03', 'nan')
    >>> format_number(0.0000123456, 4, notation="positional"), format_number(12345678, 4,
    ...     notation="positional")
    ('0.00001235', '12350000')
    >>> format_number(0.72, notation="fixed"), format_number(12.345, notation="fixed")
    ('0.720', '12.35')
    >>> format_number([2.5, 2.5], 4, notation="positional"), format_number([1, 2])
    ('2.5', '[1, 2]')
    """
    if not isinstance(value, (int, float)):
        import numpy as np

        arr = np.asarray(value, dtype=float)
        if arr.ndim and arr.size:
            flat = arr.ravel()
            if (flat == flat[0]).all():
                return format_number(flat[0], digits, notation=notation, decimals=decimals)
            inner = (format_number(v, digits, notation=notation, decimals=decimals) for v in flat)
            return "[" + ", ".join(inner) + "]"
    x = float(value)
    if not math.isfinite(x):
        return str(x)
    if notation == "general":
        return f"{x:.{digits}g}"
    if notation == "positional":
        if x == 0:
            return "0"
        rounded = float(f"{x:.{digits}g}")
        if not math.isfinite(rounded):  # rounding up past the largest float
            return str(rounded)
        text = format(Decimal(repr(rounded)), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if notation == "fixed":
        if decimals is None:
            decimals = table_decimals([x], digits)
            if decimals is None:
                return f"{x:.{digits - 1}e}"
        return f"{x:.{decimals}f}"
    if notation == "scientific":
        return f"{x:.{digits - 1}e}"
    raise ValueError(f"unknown notation {notation!r}")


def table_decimals(
    values: Iterable[float], digits: int = 3, *, least: int = 2, most: int = MOST_DECIMALS
) -> int | None:
    """The decimals that show every value with at least ``digits`` significant digits.

    At least ``least``; ``None`` when more than ``most`` would be needed (the caller then
    writes the numbers in scientific notation). Zero and non-finite values need ``least``.

    Examples
    --------
    >>> table_decimals([0.715, 0.72]), table_decimals([298.5, 0.0533]), table_decimals([12.3])
    (3, 4, 2)
    >>> table_decimals([1e-9]) is None
    True
    """
    needed = least
    for value in values:
        v = float(value)
        if math.isfinite(v) and v != 0:
            needed = max(needed, digits - 1 - math.floor(math.log10(abs(v))))
    return needed if needed <= most else None


def column_format(values: Iterable[float], digits: int = 3) -> Callable[[float], str]:
    """One format for every number of a table column, so that the decimals line up.

    The column gets the decimals its smallest number needs for ``digits`` significant digits
    (at least 2, as brms prints; trailing zeros kept): ``0.720`` next to ``0.715``, not
    ``0.72``. A column that would need more than :data:`MOST_DECIMALS` is written in
    scientific notation throughout.

    Examples
    --------
    >>> shown = column_format([0.72, 0.715, 12.0])
    >>> [shown(v) for v in (0.72, 0.715, 12.0)]
    ['0.720', '0.715', '12.000']
    >>> [column_format([1e-9, 2.0])(v) for v in (1e-9, 2.0)]
    ['1.00e-09', '2.00e+00']
    """
    decimals = table_decimals(values, digits)
    if decimals is None:
        return partial(format_number, digits=digits, notation="scientific")
    return partial(format_number, digits=digits, notation="fixed", decimals=decimals)


# -- terms ------------------------------------------------------------------------------------
def coef_label(expr: str) -> str:
    """The name of a group-level coefficient: ``1`` -> ``Intercept``, others unchanged."""
    return "Intercept" if expr.strip() == "1" else expr


def term_label(name: str, dpars: Collection[str] = ()) -> str:
    """The coefficient of a group-level term (or of one of its columns), as brms prints it.

    ``dpars`` are the distributional parameters modelled by formulas: Bambi names the varying
    intercept of ``sigma ~ (1|g)`` ``sigma_1|g``, brms ``sigma_Intercept``.

    Examples
    --------
    >>> term_label("1|Subject"), term_label("Days|Subject"), term_label("f[b]|g")
    ('Intercept', 'Days', 'f[b]')
    >>> term_label("sigma_1|g", dpars=("sigma",)), term_label("sigma_z|g", dpars=("sigma",))
    ('sigma_Intercept', 'sigma_z')
    """
    expr = name.split("|", 1)[0]
    for dpar in dpars:
        if expr.startswith(f"{dpar}_"):
            return f"{dpar}_{coef_label(expr[len(dpar) + 1 :])}"
    return coef_label(expr)


# -- carets -----------------------------------------------------------------------------------
_ONE_LINE = {ord("\t"): " ", ord("\n"): " ", ord("\r"): " "}


def clamp_span(text: str, start: int, end: int) -> tuple[int, int]:
    """``(start, end)`` moved inside ``text``, at least one character wide.

    The end may stand one past the text, to point just after it (at what is missing)."""
    start = max(0, min(start, len(text)))
    end = max(start + 1, min(end, len(text) + 1))
    return start, end


def caret_lines(text: str, start: int, end: int, indent: str = "    ") -> list[str]:
    """``text`` on one line (tabs and line breaks as spaces) and carets under its span.

    Examples
    --------
    >>> print("\\n".join(caret_lines("y ~ x +", 6, 8)))
        y ~ x +
              ^^
    """
    start, end = clamp_span(text, start, end)
    return [indent + text.translate(_ONE_LINE), indent + " " * start + "^" * (end - start)]


def point_at(message: str, text: str, start: int, end: int, hint: str | None = None) -> str:
    """A message, the text with carets under ``text[start:end]``, and the fix where known.

    Examples
    --------
    >>> print(point_at("unexpected ')'.", "y ~ x)", 5, 6, "Remove it."))
    unexpected ')'.
    <BLANKLINE>
        y ~ x)
             ^
    <BLANKLINE>
    Remove it.
    """
    lines = [message, "", *caret_lines(text, start, end)]
    if hint:
        lines += ["", hint]
    return "\n".join(lines)
