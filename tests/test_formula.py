"""The formula layer, as tables: formula -> expected reading; formula -> expected error."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from lmmformula.errors import FormulaSyntaxError, LmmFormulaError, UnsupportedSyntaxError
from lmmformula.formula import (
    Bar,
    Translation,
    expand_double_verts,
    expand_nested,
    find_bars,
    no_bars,
    tokenize,
    translate,
)


@dataclass(frozen=True)
class Row:
    """What a formula must translate to; ``None`` fields are not checked."""

    terms: tuple[str, ...]
    correlated: dict[str, tuple[str, ...]] = field(default_factory=dict)
    family: str | None = None
    response: dict[str, str | None] = field(default_factory=dict)
    fixed: str | None = None
    bambi: str | None = None


PLAIN = {"kind": "plain", "source": "plain"}
ST = ("1|station", "TEMP|station")

# formula -> expected. Group term names are Bambi's; blocks are keyed by Bambi's factor name.
TABLE: dict[str, Row] = {
    # correlated blocks
    "log_ozone ~ TEMP + (TEMP|station)": Row(
        ST,
        {"station": ST},
        response={**PLAIN, "bambi": "log_ozone"},
        fixed="TEMP",
        bambi="log_ozone ~ TEMP + (1 + TEMP|station)",
    ),
    "log_ozone ~ TEMP + (1 + TEMP|station)": Row(ST, {"station": ST}),
    "y ~ x + (1 + x + z|g)": Row(("1|g", "x|g", "z|g"), {"g": ("1|g", "x|g", "z|g")}),
    "y ~ (x*z|g)": Row(
        ("1|g", "x|g", "z|g", "x:z|g"), {"g": ("1|g", "x|g", "z|g", "x:z|g")}, fixed="1"
    ),
    "y ~ (1 + f|g)": Row(("1|g", "f|g"), {"g": ("1|g", "f|g")}),
    "y ~ ((x|g))": Row(("1|g", "x|g"), {"g": ("1|g", "x|g")}),
    "y ~ (x | g)": Row(("1|g", "x|g"), {"g": ("1|g", "x|g")}, bambi="y ~ 1 + (1 + x|g)"),
    "y ~ (x|g) + (z|h)": Row(
        ("1|g", "x|g", "1|h", "z|h"), {"g": ("1|g", "x|g"), "h": ("1|h", "z|h")}
    ),
    "y ~ (scale(x)|g)": Row(("1|g", "scale(x)|g"), {"g": ("1|g", "scale(x)|g")}),
    "y ~ (`PM2.5`|g)": Row(("1|g", "PM2.5|g"), {"g": ("1|g", "PM2.5|g")}),
    # no intercept in the bar: a one-term block (KxK for a factor)
    "y ~ (0 + x|g)": Row(("x|g",), {"g": ("x|g",)}, bambi="y ~ 1 + (0 + x|g)"),
    "y ~ (-1 + x|g)": Row(("x|g",), {"g": ("x|g",)}, bambi="y ~ 1 + (0 + x|g)"),
    "y ~ (x - 1|g)": Row(("x|g",), {"g": ("x|g",)}, bambi="y ~ 1 + (0 + x|g)"),
    "y ~ (0 + f|g)": Row(("f|g",), {"g": ("f|g",)}),
    "y ~ (0 + x + z|g)": Row(("x|g", "z|g"), {"g": ("x|g", "z|g")}),
    "y ~ (1 + 0 + x|g)": Row(("x|g",), {"g": ("x|g",)}),  # R: the last of 1/0 wins
    # independent
    "y ~ x + (1|g)": Row(("1|g",), {}, fixed="x", bambi="y ~ x + (1|g)"),
    "y ~ (x||g)": Row(("1|g", "x|g"), {}, bambi="y ~ 1 + (1 + x|g)"),
    "log_ozone ~ TEMP + (TEMP||station)": Row(ST, {}),
    "y ~ (x + z||g)": Row(("1|g", "x|g", "z|g"), {}),
    "y ~ (0 + x + z||g)": Row(("x|g", "z|g"), {}),
    "y ~ (f||g)": Row(("1|g", "f|g"), {}, bambi="y ~ 1 + (1 + f|g)"),
    "y ~ (x*z||g)": Row(("1|g", "x|g", "z|g", "x:z|g"), {}),
    "y ~ (1|g) + (0 + x|g)": Row(("1|g", "x|g"), {"g": ("x|g",)}),
    # every bar is its own block (lme4): one-column blocks are independent in the model
    "y ~ (0 + x|g) + (0 + z|g)": Row(("x|g", "z|g"), {"g": ("x|g",), "g__2": ("z|g",)}),
    "y ~ (1 + x|g) + (0 + z|g)": Row(
        ("1|g", "x|g", "z|g"), {"g": ("1|g", "x|g"), "g__2": ("z|g",)}
    ),
    "y ~ (1 + x|g) + (0 + z + w|g)": Row(
        ("1|g", "x|g", "z|g", "w|g"), {"g": ("1|g", "x|g"), "g__2": ("z|g", "w|g")}
    ),
    "y ~ (x||g) + (0 + z|g)": Row(("1|g", "x|g", "z|g"), {"g": ("z|g",)}),
    # nesting, interactions, crossing
    "y ~ (1|a/b)": Row(("1|a", "1|a:b"), {}, bambi="y ~ 1 + (1|a) + (1|`a:b`)"),
    "y ~ (x|a/b)": Row(
        ("1|a", "x|a", "1|a:b", "x|a:b"), {"a": ("1|a", "x|a"), "a:b": ("1|a:b", "x|a:b")}
    ),
    "y ~ (1|a/b/c)": Row(("1|a", "1|a:b", "1|a:b:c"), {}),
    "y ~ (1|a:b/c)": Row(("1|a:b", "1|a:b:c"), {}),
    "y ~ (1|a:b)": Row(("1|a:b",), {}, bambi="y ~ 1 + (1|`a:b`)"),
    "y ~ (1 | a : b)": Row(("1|a:b",), {}),
    "y ~ (1|a) + (1|b)": Row(("1|a", "1|b"), {}),
    "y ~ x + (x|g) + (1|a) + (1|a:b)": Row(("1|g", "x|g", "1|a", "1|a:b"), {"g": ("1|g", "x|g")}),
    # the fixed part passes through
    "y ~ x*z + C(f) + (1|g)": Row(("1|g",), fixed="x*z + C(f)"),
    "y ~ scale(x) + offset(z) + (1|g)": Row(("1|g",), fixed="scale(x) + offset(z)"),
    "y ~ 0 + f + (1|g)": Row(("1|g",), fixed="0 + f"),
    "y ~ -1 + x + (1|g)": Row(("1|g",), fixed="-1 + x"),
    "y ~ x - 1": Row((), fixed="x - 1", bambi="y ~ x - 1"),
    "y ~ np.log(w) + I(x**2) + {x + 1} + (1|g)": Row(
        ("1|g",), fixed="np.log(w) + I(x**2) + {x + 1}"
    ),
    "y ~ `PM2.5` + x": Row((), fixed="`PM2.5` + x"),
    "y ~ (1|g)": Row(("1|g",), fixed="1", bambi="y ~ 1 + (1|g)"),
    "y ~ 0 + (1|g)": Row(("1|g",), fixed="0", bambi="y ~ 0 + (1|g)"),
    "y ~ (x + z)^2 + (1|g)": Row(("1|g",), fixed="(x + z)**2"),
    # R spellings: ^ is a power inside calls too; factor() is C(); R's contrast functions
    "y ~ x + I(x^2) + (1|g)": Row(("1|g",), fixed="x + I(x**2)"),
    "y ~ factor(x) + (1|g)": Row(("1|g",), fixed="C(x)"),
    "y ~ as.factor(x) + (0 + factor(x)|g)": Row(("C(x)|g",), {"g": ("C(x)|g",)}, fixed="C(x)"),
    "y ~ C(f, contr.sum) + (1|g)": Row(("1|g",), fixed="C(f, contr_sum)"),
    "y ~ poly(x, 2) + (1|g)": Row(("1|g",), fixed="poly(x, 2)"),
    # responses
    "log(y) ~ x + (1|g)": Row(
        ("1|g",), response={**PLAIN, "text": "log(y)", "bambi": "log(y)"}, family=None
    ),
    "np.log(y) ~ x": Row((), response={**PLAIN, "bambi": "np.log(y)"}),
    "sqrt(y) ~ x": Row((), response={**PLAIN, "bambi": "sqrt(y)"}),
    "censored(y, st) ~ x": Row((), response={**PLAIN, "bambi": "censored(y, st)"}),
    "truncated(y, lb=0) ~ x": Row((), response={**PLAIN, "bambi": "truncated(y, lb=0)"}),
    "weighted(y, w) ~ x": Row((), response={**PLAIN, "bambi": "weighted(y, w)", "weights": None}),
    "cbind(s, f2) ~ x + (1|g)": Row(
        ("1|g",),
        family="binomial",
        response={
            "kind": "binomial",
            "source": "cbind",
            "text": "cbind(s, f2)",
            "successes": "s",
            "failures": "f2",
            "trials": None,
            "bambi": "p(s, s + f2)",
        },
        bambi="p(s, s + f2) ~ x + (1|g)",
    ),
    "cbind(s, n - s) ~ x": Row(
        (),
        family="binomial",
        response={"successes": "s", "failures": "n - s", "bambi": "p(s, (s) + (n - s))"},
    ),
    "s | trials(n) ~ x + (1|g)": Row(
        ("1|g",),
        family="binomial",
        response={
            "kind": "binomial",
            "source": "trials",
            "text": "s | trials(n)",
            "successes": "s",
            "trials": "n",
            "failures": None,
            "bambi": "p(s, n)",
        },
    ),
    "s | trials(10) ~ x": Row(
        (), family="binomial", response={"trials": "10", "bambi": "p(s, 10)"}
    ),
    "awards | trials(applications) ~ 0 + gender + (1|discipline)": Row(
        ("1|discipline",),
        family="binomial",
        response={"source": "trials", "successes": "awards", "trials": "applications"},
        fixed="0 + gender",
        bambi="p(awards, applications) ~ 0 + gender + (1|discipline)",
    ),
    "y | weights(w) ~ x": Row(
        (),
        family=None,
        response={**PLAIN, "weights": "w", "bambi": "weighted(y, w)", "text": "y | weights(w)"},
    ),
    "p(s, n) ~ x + (x|g)": Row(
        ("1|g", "x|g"),
        {"g": ("1|g", "x|g")},
        family="binomial",
        response={"kind": "binomial", "source": "p", "successes": "s", "trials": "n"},
    ),
}


def test_table_is_large_enough() -> None:
    assert len(TABLE) >= 40


@pytest.mark.parametrize("formula", list(TABLE))
def test_translate_table(formula: str) -> None:
    row = TABLE[formula]
    t = translate(formula)
    assert tuple(g.name for g in t.group_terms) == row.terms
    assert t.correlated == row.correlated
    assert t.family == row.family
    for key, value in row.response.items():
        assert getattr(t.response, key) == value, key
    if row.fixed is not None:
        assert t.fixed == row.fixed
    if row.bambi is not None:
        assert t.bambi_formula == row.bambi
    # every term's block agrees with the correlated dict
    for g in t.group_terms:
        assert (g.block is not None) == any(g.name in names for names in t.correlated.values())
        assert g.name == f"{g.expr}|{g.factor}"


# ---------------------------------------------------------------------------------------------
# Equivalences, in the style of lme4/reformulas' own tests
# ---------------------------------------------------------------------------------------------


def _terms(t: Translation) -> set[str]:
    return {g.name for g in t.group_terms}


def _no_correlation(t: Translation) -> bool:
    """No two distinct terms share a block (one-term blocks correlate nothing)."""
    return all(len(names) == 1 for names in t.correlated.values())


UNCORRELATED_EQUIVALENT = [
    ("y ~ (x||g)", "y ~ (1|g) + (0 + x|g)"),
    ("y ~ (x + z||g)", "y ~ (1|g) + (0 + x|g) + (0 + z|g)"),
    ("y ~ (0 + x + z||g)", "y ~ (0 + x|g) + (0 + z|g)"),
    ("y ~ (x*z||g)", "y ~ (1|g) + (0 + x|g) + (0 + z|g) + (0 + x:z|g)"),
]


@pytest.mark.parametrize(("double", "expanded"), UNCORRELATED_EQUIVALENT)
def test_double_vert_is_separate_bars(double: str, expanded: str) -> None:
    a, b = translate(double), translate(expanded)
    assert _terms(a) == _terms(b)
    assert a.correlated == {}
    assert _no_correlation(b)


EXACTLY_EQUIVALENT = [
    ("y ~ (1|a/b)", "y ~ (1|a) + (1|a:b)"),
    ("y ~ (x|a/b)", "y ~ (x|a) + (x|a:b)"),
    ("y ~ (1|a/b/c)", "y ~ (1|a) + (1|a:b) + (1|a:b:c)"),
    ("y ~ (-1 + x|g)", "y ~ (0 + x|g)"),
    ("y ~ (x - 1|g)", "y ~ (0 + x|g)"),
    ("y ~ (x|g)", "y ~ (1 + x|g)"),
    ("y ~ (x | g)", "y ~ (1+x|g)"),
    ("s | trials(n) ~ x", "p(s, n) ~ x"),
    ("cbind(s, f2) ~ x", "p(s, s + f2) ~ x"),
    ("y | weights(w) ~ x", "weighted(y, w) ~ x"),
]


@pytest.mark.parametrize(("a", "b"), EXACTLY_EQUIVALENT)
def test_equivalent_formulas(a: str, b: str) -> None:
    ta, tb = translate(a), translate(b)
    assert ta.group_terms == tb.group_terms
    assert ta.correlated == tb.correlated
    assert ta.bambi_formula == tb.bambi_formula
    assert ta.family == tb.family
    assert (ta.response.successes, ta.response.kind) == (tb.response.successes, tb.response.kind)


def test_trials_and_p_agree_on_binomial_parts() -> None:
    a, b = translate("s | trials(n) ~ x"), translate("p(s, n) ~ x")
    assert (a.response.successes, a.response.trials) == (b.response.successes, b.response.trials)
    assert (a.response.source, b.response.source) == ("trials", "p")


def test_correlated_and_independent_differ() -> None:
    # the whole point of lmmformula: | and || give the same terms but not the same blocks
    a, b = translate("y ~ (x|g)"), translate("y ~ (x||g)")
    assert _terms(a) == _terms(b)
    assert a.correlated != b.correlated


# ---------------------------------------------------------------------------------------------
# The lme4-named helpers
# ---------------------------------------------------------------------------------------------


def test_find_bars_as_written() -> None:
    bars = find_bars("y ~ x + (x||g) + (1 + z|a/b)")
    assert [(b.lhs, b.op, b.factor) for b in bars] == [("x", "||", "g"), ("1 + z", "|", "a/b")]
    formula = "y ~ x + (x||g) + (1 + z|a/b)"
    assert [formula[b.start : b.end] for b in bars] == ["(x||g)", "(1 + z|a/b)"]


def test_find_bars_none() -> None:
    assert find_bars("y ~ x*z") == ()


def test_no_bars() -> None:
    assert no_bars("y ~ x + (x|g) + z") == "y ~ x + z"
    assert no_bars("y ~ (1|g)") == "y ~ 1"
    assert no_bars("y ~ 0 + (1|g)") == "y ~ 0"
    assert no_bars("cbind(s, f) ~ (1|g) - 1") == "cbind(s, f) ~ -1"


def test_expand_nested() -> None:
    bars = expand_nested(find_bars("y ~ (x|a/b/c) + (1|h)"))
    assert [(b.lhs, b.factor) for b in bars] == [
        ("x", "a"),
        ("x", "a:b"),
        ("x", "a:b:c"),
        ("1", "h"),
    ]


def test_expand_nested_on_a_bar_built_by_hand() -> None:
    assert [b.factor for b in expand_nested([Bar("1", "a / b")])] == ["a", "a:b"]


def test_expand_double_verts() -> None:
    bars = expand_double_verts(find_bars("y ~ (x||g) + (z|h)"))
    assert [(b.op, b.independent) for b in bars] == [("|", True), ("|", False)]


def test_tokens_keep_offsets() -> None:
    formula = "log(y) ~ `PM2.5` + (x||g)"
    for tok in tokenize(formula):
        assert formula[tok.start : tok.end] == tok.text
    assert [t.kind for t in tokenize("np.log(x) + 1.5e3")] == [
        "name",
        "op",
        "name",
        "op",
        "op",
        "number",
    ]


def test_variables_in_order_response_first() -> None:
    assert translate("log_ozone ~ TEMP + (TEMP|station)").variables == (
        "log_ozone",
        "TEMP",
        "station",
    )
    assert translate("s | trials(n) ~ x + (1|a/b)").variables == ("s", "n", "x", "a", "b")
    assert translate("cbind(s, f2) ~ `PM2.5` + offset(z)").variables == ("s", "f2", "PM2.5", "z")
    assert translate("y ~ C(f, Treatment) + np.log(x)").variables == ("y", "f", "x")


def test_grouping_factors() -> None:
    assert translate("y ~ (x|g) + (1|a/b) + (0 + z|g)").grouping_factors == ("g", "a", "a:b")


def test_notes() -> None:
    (note,) = translate("y ~ (f||g)").notes
    assert "brms" in note and "diag()" in note and "KxK" in note
    assert any("lme4" in n and "multivariate" in n for n in translate("cbind(s, f) ~ x").notes)
    assert any("(1|a) + (1|a:b)" in n for n in translate("y ~ (1|a/b)").notes)
    assert any("z|g" in n for n in translate("y ~ (1 + x|g) + (0 + z|g)").notes)
    assert translate("y ~ x + (x|g)").notes == ()


def test_translation_is_frozen() -> None:
    t = translate("y ~ x")
    with pytest.raises(AttributeError):
        t.fixed = "z"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Errors: class, message, and where the caret goes
# ---------------------------------------------------------------------------------------------

FSE, USE = FormulaSyntaxError, UnsupportedSyntaxError

# formula, error class, message pattern, the text the caret is under, which occurrence of it
ERRORS: list[tuple[str, type[FormulaSyntaxError], str, str, int]] = [
    ("y ~ (x|g", FSE, r"unmatched '\(': it is never closed", "(", 0),
    ("y ~ x + (1|g))", FSE, r"unmatched '\)'", ")", 1),
    ("y ~ x + I(", FSE, r"unmatched '\('", "(", 0),
    ("y ~ (x]", FSE, r"'\]' cannot close '\('", "]", 0),
    ("y ~ (|g)", FSE, r"nothing on the left of '\|'", "|", 0),
    ("y ~ (x|)", FSE, r"nothing on the right of '\|'.*grouping factor", "|", 0),
    ("y ~ (x||)", FSE, r"nothing on the right of '\|\|'", "||", 0),
    ("y ~ (x|||g)", FSE, r"'\|\|\|' is not an operator", "|||", 0),
    ("y x", FSE, r"missing '~'", "y x", 0),
    ("y ~ x ~ z", FSE, r"more than one '~'", "~", 1),
    ("y ~   ", FSE, r"nothing on the right of '~'", "~", 0),
    ("~ x", FSE, r"no response", "~", 0),
    ("", FSE, r"the formula is empty", "", 0),
    ("   ", FSE, r"the formula is empty", "   ", 0),
    ("s | trials() ~ x", FSE, r"trials\(\) needs the number of trials", "trials()", 0),
    ("s | trials(n, m) ~ x", FSE, r"trials\(\) takes 1 argument, got 2", "trials(n, m)", 0),
    ("y | weights() ~ x", FSE, r"weights\(\) needs the column of weights", "weights()", 0),
    ("cbind(s) ~ x", FSE, r"cbind\(\) takes 2 arguments, got 1", "cbind(s)", 0),
    ("cbind(s, f, w) ~ x", FSE, r"cbind\(\) takes 2 arguments, got 3", "cbind(s, f, w)", 0),
    ("p(s) ~ x", FSE, r"p\(\) takes 2 arguments, got 1", "p(s)", 0),
    ("foo(y) ~ x", FSE, r"unknown function 'foo' in the response", "foo", 0),
    ("log(bar(y)) ~ x", FSE, r"unknown function 'bar' in the response", "bar", 0),
    ("log(cbind(s, f)) ~ x", FSE, r"cbind\(\.\.\.\) must be the whole left side", "cbind", 0),
    ("y | foo(n) ~ x", FSE, r"unknown addition term 'foo\(\)'", "foo", 0),
    ("y || weights(w) ~ x", FSE, r"'\|\|' in the response", "||", 0),
    ("cbind(s, f) | trials(n) ~ x", FSE, r"cbind\(\.\.\.\) already says", "trials(n)", 0),
    ("y ~ x | g", FSE, r"'\|' outside parentheses", "|", 0),
    ("y ~ (x|g) | h", FSE, r"'\|' outside parentheses", "|", 1),
    ("y ~ log((x|g))", FSE, r"'\|' inside the function call log", "|", 0),
    ("y ~ x (1|g)", FSE, r"inside the function call x.*", "|", 0),
    ("y ~ x*(1|g)", FSE, r"cannot be part of another term", "|", 0),
    ("y ~ x - (1|g)", FSE, r"cannot be subtracted", "(1|g)", 0),
    ("y ~ x +", FSE, r"expected a term after '\+'", "+", 0),
    ("y ~ x * * z", FSE, r"expected a term after '\*', found '\*'", "*", 1),
    ("y ~ x z", FSE, r"unexpected 'z' after 'x'", "z", 0),
    ("y ~ ()", FSE, r"empty parentheses", "()", 0),
    ("y ~ `x", FSE, r"unterminated backtick", "`x", 0),
    ("y ~ df$x", FSE, r"unexpected character '\$'", "$", 0),
    ("y ~ (0|g)", FSE, r"has no terms", "0", 0),
    ("y ~ (2 + x|g)", FSE, r"'2' in the terms of a bar", "2", 0),
    ("y ~ (x|1)", FSE, r"grouping factor must be a variable", "1", 0),
    ("y ~ 2 + x", FSE, r"the number '2' cannot be a term", "2", 0),
    ("y ~ x:3", FSE, r"the number '3' cannot be a term or part of one", "3", 0),
    ("y ~ (x + z)^2.5", FSE, r"power of '\^' must be a whole number", "2.5", 0),
    ("y ~ (x|a - b)", FSE, r"'-' cannot be used in a grouping factor", "-", 0),
    ("y ~ I(a | b)", FSE, r"formulae.*cannot read the fixed part", "I(a | b)", 0),
    ("y + z ~ x", FSE, r"formulae.*cannot read the response", "y + z ", 0),
    ("y ~ (1|g) + (1|g)", USE, r"1\|g appears twice", "(1|g)", 1),
    ("y ~ (x|g) + (1|g)", USE, r"1\|g appears twice \(first in '\(x\|g\)'\)", "(1|g)", 0),
    ("y ~ (1|a/b) + (1|a)", USE, r"1\|a appears twice", "(1|a)", 0),
    ("y ~ (1 + x || ID | g)", USE, r"'\|\|' in a bar with an ID", "|| ID |", 0),
    ("y ~ (1 | a | b | g)", FSE, r"more than three parts", "| a | b |", 0),
    ("y ~ (1 | p + q | g)", FSE, r"brms' ID, a plain name", "p + q", 0),
    ("y ~ (1|p|g) + (x|p|h)", USE, r"different grouping factors", "(x|p|h)", 0),
    ("bf(y ~ x, sigma ~ z +)", FSE, r"expected a term after", "+", 0),
    ("bf(y ~ x, nl = TRUE)", USE, r"nl= of bf\(\) is not supported", "nl = TRUE", 0),
    ("bf(y ~ x, log(s) ~ z)", FSE, r"names a distributional parameter", "log(s)", 0),
    ("bf(y ~ x, sigma ~ z, sigma ~ w)", FSE, r"two formulas for 'sigma'", "sigma ~ w", 0),
    ("bf(y ~ x, mu ~ z)", USE, r"the main formula is the mean's", "mu ~ z", 0),
    ("bf(y ~ x) + z", FSE, r"text after bf", "+ z", 0),
    ("y ~ x + s(z)", USE, r"s\(\) is not supported", "s(z)", 0),
    ("y ~ t2(x, z)", USE, r"t2\(\) is not supported", "t2(x, z)", 0),
    ("y ~ me(x, sdx)", USE, r"me\(\) is not supported", "me(x, sdx)", 0),
    ("y ~ mi(x)", USE, r"mi\(\) is not supported", "mi(x)", 0),
    ("y ~ cs(x)", USE, r"cs\(\) is not supported", "cs(x)", 0),
    ("y ~ gp(x, gr = FALSE)", USE, r"gp\(\.\.\., gr = FALSE\) is not supported", "FALSE", 0),
    ("y ~ (1|gr(g, by = h))", USE, r"gr\(\.\.\., by = \) is not supported", "h", 0),
    ("y ~ (1|mm(a, b))", USE, r"mm\(\) is not supported", "mm(a, b)", 0),
    ("y ~ diag(x|g)", USE, r"diag\(\) is not supported", "diag(x|g)", 0),
    ("y | cens(c) ~ x", USE, r"cens\(\) is not supported", "cens(c)", 0),
    ("y | trunc(lb = 0) ~ x", USE, r"trunc\(\) is not supported", "trunc(lb = 0)", 0),
    ("y | se(sey) ~ x", USE, r"se\(\) is not supported", "se(sey)", 0),
    ("y | rate(t) ~ x", USE, r"rate\(\) is not supported", "rate(t)", 0),
    (
        "s | trials(n) + weights(w) ~ x",
        USE,
        r"trials\(\) and weights\(\) together",
        "weights(w)",
        0,
    ),
    ("y ~ (1|a*b)", USE, r"'\*' in a grouping factor", "*", 0),
    ("y ~ (1|a + b)", USE, r"'\+' in a grouping factor", "+", 0),
    ("y ~ (x|a:(b/c))", USE, r"'/' \(nesting\) inside an interaction", ":", 0),
    ("y ~ .", USE, r"'\.' \(all other columns\)", ".", 0),
]


def _span(formula: str, text: str, nth: int) -> tuple[int, int]:
    if not text.strip():
        return 0, len(formula)
    starts = [m.start() for m in re.finditer(re.escape(text), formula)]
    return starts[nth], starts[nth] + len(text)


def test_error_table_is_large_enough() -> None:
    assert len(ERRORS) >= 15


@pytest.mark.parametrize(("formula", "cls", "pattern", "caret", "nth"), ERRORS)
def test_errors(
    formula: str, cls: type[FormulaSyntaxError], pattern: str, caret: str, nth: int
) -> None:
    with pytest.raises(cls) as info:
        translate(formula)
    err = info.value
    assert type(err) is cls  # a plain syntax error is not reported as unsupported, or back
    assert re.search(pattern, err.message), err.message
    start, end = _span(formula, caret, nth)
    if not formula:
        start, end = 0, 1  # an empty formula: the caret sits at column 0
    assert (err.start, err.end) == (start, end), str(err)
    # the rendered message puts the carets under exactly that span
    lines = str(err).splitlines()
    at = lines.index("    " + formula)
    caret_line = lines[at + 1]
    assert caret_line == "    " + " " * start + "^" * (end - start)


HINTS = [
    ("y | cens(c) ~ x", "censored(y, status)"),
    ("y | trunc(lb = 0) ~ x", "truncated("),
    ("y ~ s(x)", "bs(x"),
    ("y ~ (1 + x || ID | g)", "(1 + x | p | g)"),
    ("y ~ (1|a*b)", "(1|a) + (1|b) + (1|a:b)"),
    ("y ~ diag(x|g)", "(x||g)"),
    ("foo(y) ~ x", "log"),
    ("y ~ x (1|g)", "x + (1|g)"),
    ("y ~ x +", "Remove the trailing '+'"),
]


@pytest.mark.parametrize(("formula", "hint"), HINTS)
def test_hints_name_the_fix(formula: str, hint: str) -> None:
    with pytest.raises(FormulaSyntaxError) as info:
        translate(formula)
    assert info.value.hint is not None and hint in info.value.hint


@pytest.mark.parametrize("value", [None, 3, b"y ~ x", ["y ~ x"]])
def test_non_string_formula(value: object) -> None:
    with pytest.raises(FormulaSyntaxError, match="must be a string") as info:
        translate(value)  # type: ignore[arg-type]
    assert isinstance(info.value, LmmFormulaError)


# ---------------------------------------------------------------------------------------------
# The module itself
# ---------------------------------------------------------------------------------------------


def test_docstring_examples_run() -> None:
    import doctest

    import lmmformula.formula

    result = doctest.testmod(lmmformula.formula)
    assert result.attempted >= 10
    assert result.failed == 0


def test_formula_layer_imports_neither_pandas_nor_bambi() -> None:
    import ast

    import lmmformula.formula

    with open(lmmformula.formula.__file__, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert "formulae" in imported  # the walk sees the imports at all
    assert not imported & {"pandas", "bambi", "pymc"}
