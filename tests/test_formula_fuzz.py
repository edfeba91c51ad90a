"""Property tests: whatever the string, ``translate`` returns or raises an LmmFormulaError."""

from __future__ import annotations

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


def _check(formula: str) -> None:
    try:
        result = translate(formula)
    except LmmFormulaError as err:
        if isinstance(err, FormulaSyntaxError):
            # The caret span lies inside (or just after) the formula that was given.
            assert 0 <= err.start < err.end <= len(err.formula) + 1
            assert err.formula == formula
            # formulae never reads our Bambi formula with other group terms than we promise
            assert "please report" not in err.message, err.message
        return
    assert isinstance(result, Translation)
    assert "~" in result.bambi_formula
    # Every term of a block is a group term on the block's factor, marked with that block.
    by_name = {t.name: t for t in result.group_terms}
    for factor, names in result.correlated.items():
        assert all(by_name[n].factor == factor and by_name[n].block == factor for n in names)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FORMULA_ISH)
@example("y ~ (((((x|g)))))")
@example("y ~ " + "(" * 200 + "x" + ")" * 200)
@example("y ~ (x|g) | h")
@example("`y ~ x")
@example("y ~ x + (1|g)) + (1|h")
def test_random_strings_raise_only_lmmformula_errors(formula: str) -> None:
    _check(formula)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    base = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(base)))
        op = draw(st.sampled_from(["delete", "insert", "duplicate"]))
        if op == "delete" and pos < len(base):
            base = base[:pos] + base[pos + 1 :]
        elif op == "insert":
            base = base[:pos] + draw(st.sampled_from(ALPHABET)) + base[pos:]
        elif pos < len(base):
            base = base[:pos] + base[pos] + base[pos:]
    return base


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_formulas_raise_only_lmmformula_errors(formula: str) -> None:
    _check(formula)


@pytest.mark.parametrize("formula", VALID)
def test_the_seed_formulas_translate(formula: str) -> None:
    # The mutation test starts from these; they must be valid or it tests nothing useful.
    assert isinstance(translate(formula), Translation)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.integers(), st.none(), st.binary(), st.lists(st.text())))
def test_non_strings_raise_formula_syntax_error(value: object) -> None:
    with pytest.raises(FormulaSyntaxError, match="must be a string"):
        translate(value)  # type: ignore[arg-type]
