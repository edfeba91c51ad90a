"""Property tests: whatever the string, ``translate`` returns or raises an LmmFormulaError."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lmmformula.errors import FormulaSyntaxError, LmmFormulaError
from lmmformula.formula import Translation, translate

VALID = [
    "log_ozone ~ TEMP + (TEMP|station)",
    "log_ozone ~ TEMP + (TEMP||station)",
    "y ~ x*z + (1 + x + z|g) + (1|a/b)",
    "cbind(s, f2) ~ x + (0 + x|g)",
    "awards | trials(applications) ~ 0 + gender + (1|discipline)",
    "y | weights(w) ~ C(f) + scale(x) + offset(z)",
    "p(s, n) ~ np.log(x) + I(x**2) + {x+1} + (x - 1|a:b)",
    "log(y) ~ (x + z)^2 + `PM2.5` + (x*z||h)",
]

ALPHABET = "yxzgfabs ~+-*/:|()01{}`,.^\"'ntrialscbindpw"
FORMULA_ISH = st.text(alphabet=ALPHABET, max_size=40)


def _check(formula: str) -> bool:
    """Translate or raise an LmmFormulaError; ``True`` when the formula translated."""
    try:
        result = translate(formula)
    except LmmFormulaError as err:
        if isinstance(err, FormulaSyntaxError):
            # The caret span lies inside (or just after) the formula that was given.
            assert 0 <= err.start < err.end <= len(err.formula) + 1
            assert err.formula == formula
            # formulae never reads our Bambi formula with other group terms than we promise
            assert "please report" not in err.message, err.message
        return False
    assert isinstance(result, Translation)
    assert "~" in result.bambi_formula
    # Every term of a block is a group term on the block's factor, marked with that block.
    by_name = {t.name: t for t in result.group_terms}
    for factor, names in result.correlated.items():
        assert all(by_name[n].factor == factor and by_name[n].block == factor for n in names)
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FORMULA_ISH)
@example("y ~ (((((x|g)))))")
@example("y ~ " + "(" * 200 + "x" + ")" * 200)
@example("y ~ (x|g) | h")
@example("`y ~ x")
@example("y ~ x + (1|g)) + (1|h")
def test_random_strings_raise_only_lmmformula_errors(formula: str) -> None:
    _check(formula)


def _mutate(base: str, n_edits: int, pick) -> str:
    """``n_edits`` one-character edits (delete, insert, duplicate); ``pick(options)`` chooses."""
    for _ in range(n_edits):
        pos = pick(range(len(base) + 1))
        op = pick(["delete", "insert", "duplicate"])
        if op == "delete" and pos < len(base):
            base = base[:pos] + base[pos + 1 :]
        elif op == "insert":
            base = base[:pos] + pick(ALPHABET) + base[pos:]
        elif pos < len(base):
            base = base[:pos] + base[pos] + base[pos:]
    return base


@st.composite
def mutated(draw: st.DrawFn) -> str:
    base = draw(st.sampled_from(VALID))
    return _mutate(base, draw(st.integers(1, 3)), lambda options: draw(st.sampled_from(options)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_formulas_raise_only_lmmformula_errors(formula: str) -> None:
    _check(formula)


def test_mutated_formulas_both_translate_and_fail():
    """The mutation test reaches both branches: a seeded sample of the same edits leaves a fair
    share of formulas that still translate (and pass every check of ``_check``) and a fair
    share that raise."""
    rng = np.random.default_rng(2026)

    def pick(options):
        return options[int(rng.integers(len(options)))]

    formulas = [_mutate(VALID[i % len(VALID)], 1 + i % 3, pick) for i in range(400)]
    translated = [f for f in formulas if _check(f)]
    share = len(translated) / len(formulas)
    assert 0.15 < share < 0.85, share
    # among the survivors, formulas with a correlated block
    assert sum(bool(translate(f).correlated) for f in translated) >= 20


@pytest.mark.parametrize("formula", VALID)
def test_the_seed_formulas_translate(formula: str) -> None:
    # The mutation test starts from these; they must be valid or it tests nothing useful.
    assert isinstance(translate(formula), Translation)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.integers(), st.none(), st.binary(), st.lists(st.text())))
def test_non_strings_raise_formula_syntax_error(value: object) -> None:
    with pytest.raises(FormulaSyntaxError, match="must be a string"):
        translate(value)  # type: ignore[arg-type]
