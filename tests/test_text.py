"""The shared text helpers: numbers, term labels and carets, from tables of expected text."""

from __future__ import annotations

import numpy as np
import pytest

import lmmformula as lf
from lmmformula._text import (
    caret_lines,
    column_format,
    format_number,
    point_at,
    table_decimals,
    term_label,
)
from lmmformula.errors import FormulaSyntaxError, PriorError

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("value", "digits", "notation", "text"),
    [
        # general: Python's g, for sentences
        (0.0533, 3, "general", "0.0533"),
        (0.72, 3, "general", "0.72"),
        (1234.5, 3, "general", "1.23e+03"),
        (100000.0, 3, "general", "1e+05"),
        (0.00001, 3, "general", "1e-05"),
        (0.0, 3, "general", "0"),
        (NAN, 3, "general", "nan"),
        (-INF, 3, "general", "-inf"),
        (3.14159, 6, "general", "3.14159"),
        (np.float32(0.25), 3, "general", "0.25"),
        # positional: never scientific, for priors a user may copy
        (0.0, 4, "positional", "0"),
        (0.0000123456, 4, "positional", "0.00001235"),
        (12345678.0, 4, "positional", "12350000"),
        (1e22, 4, "positional", "1" + "0" * 22),
        (-3.14159, 4, "positional", "-3.142"),
        (2.5, 4, "positional", "2.5"),
        (1.7976931348623157e308, 4, "positional", "inf"),  # rounds past the largest float
        (np.array([2.5, 2.5]), 4, "positional", "2.5"),
        (np.array([1.0, 2.5]), 4, "positional", "[1, 2.5]"),
        ([0.1, 0.2], 3, "general", "[0.1, 0.2]"),
        # fixed: the decimals three significant digits need, at least 2, zeros kept
        (0.72, 3, "fixed", "0.720"),
        (0.0533, 3, "fixed", "0.0533"),
        (12.345, 3, "fixed", "12.35"),
        (0.0, 3, "fixed", "0.00"),
        (1e-9, 3, "fixed", "1.00e-09"),  # more than 6 decimals: scientific
        (NAN, 3, "fixed", "nan"),
        (1234.5, 3, "scientific", "1.23e+03"),
    ],
)
def test_format_number(value, digits, notation, text):
    assert format_number(value, digits, notation=notation) == text


def test_unknown_notation_is_refused():
    with pytest.raises(ValueError, match="unknown notation"):
        format_number(1.0, notation="roman")


@pytest.mark.parametrize(
    ("values", "decimals"),
    [
        ([0.72, 0.715], 3),
        ([298.51, 9.1, 0.0533], 4),  # 0.0533: three significant digits need 4 decimals
        ([1.0, 250.0], 2),
        ([0.0, NAN, INF, 1.5], 2),  # zero and non-finite need nothing
        ([0.00999], 5),
        ([-0.0001], 6),
        ([0.00001], None),  # 7 > 6: scientific
    ],
)
def test_table_decimals(values, decimals):
    assert table_decimals(values) == decimals


@pytest.mark.parametrize(
    ("values", "texts"),
    [
        ([0.72, 0.715, 12.0], ["0.720", "0.715", "12.000"]),
        ([298.51, -0.0533], ["298.5100", "-0.0533"]),
        ([1.0, 2.5], ["1.00", "2.50"]),
        ([1e-9, 2.0], ["1.00e-09", "2.00e+00"]),
    ],
)
def test_a_column_shares_one_format(values, texts):
    shown = column_format(values)
    assert [shown(v) for v in values] == texts


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("1|Subject", "Intercept"),
        ("Days|Subject", "Days"),
        ("f[b]|g", "f[b]"),
        ("1|a:b", "Intercept"),
        ("1", "Intercept"),
        (" 1 ", "Intercept"),
        ("x", "x"),
        ("log(x)|g", "log(x)"),
    ],
)
def test_term_label(name, label):
    assert term_label(name) == label


# -- carets: one renderer for the formula's errors and the prior parser's ----------------------
@pytest.mark.parametrize(
    ("text", "start", "end", "carets"),
    [
        ("y ~ x +", 6, 7, "          ^"),
        ("y ~ x +", 6, 8, "          ^^"),  # one past the end: what is missing
        ("y ~ x +", 40, 50, "           ^"),  # clamped to just past the end
        ("y ~ x", 2, 2, "      ^"),  # at least one caret
        ("y ~ x", -3, 1, "    ^"),
    ],
)
def test_caret_lines(text, start, end, carets):
    assert caret_lines(text, start, end) == ["    " + text, carets]


def test_caret_lines_keep_a_multiline_text_on_one_line():
    assert caret_lines("y ~\tx +\n z", 4, 5) == ["    y ~ x +  z", "        ^"]


def test_point_at():
    assert point_at("bad.", "a b", 2, 3) == "bad.\n\n    a b\n      ^"
    assert point_at("bad.", "a b", 2, 3, "Fix.") == "bad.\n\n    a b\n      ^\n\nFix."


def test_formula_and_prior_errors_point_the_same_way():
    formula = FormulaSyntaxError("unexpected 'x'.", "normal(0, x)", 10, 11, "A hint.")
    assert str(formula) == "unexpected 'x'.\n\n    normal(0, x)\n              ^\n\nA hint."
    assert (formula.start, formula.end, formula.snippet) == (10, 11, "x")
    with pytest.raises(PriorError) as caught:
        lf.prior("normal(0, x)")
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("cannot read the prior 'normal(0, x)': argument 2 (sigma)")
    assert lines[1:4] == ["", "    normal(0, x)", "              ^"]


def test_formula_errors_keep_their_clamped_span():
    error = FormulaSyntaxError("m", "y ~", 5, 2)
    assert (error.start, error.end) == (3, 4) and error.snippet == ""
    assert str(error).splitlines()[-1] == "       ^"  # 4 of indent, 3 of text, then the caret
