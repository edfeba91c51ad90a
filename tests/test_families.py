"""The families table: every name is one of Bambi's, every Bambi family has a response group."""

from __future__ import annotations

import itertools

import pytest
from bambi.defaults.families import BUILTIN_FAMILIES

from lmmformula import _families as F

RESPONSE_GROUPS = {
    "REAL_RESPONSE": F.REAL_RESPONSE,
    "COUNT_RESPONSE": F.COUNT_RESPONSE,
    "BINOMIAL_RESPONSE": F.BINOMIAL_RESPONSE,
    "POSITIVE_RESPONSE": F.POSITIVE_RESPONSE,
    "NONNEGATIVE_RESPONSE": F.NONNEGATIVE_RESPONSE,
    "UNIT_RESPONSE": F.UNIT_RESPONSE,
    "LEVEL_RESPONSE": F.LEVEL_RESPONSE,
    "VECTOR_RESPONSE": F.VECTOR_RESPONSE,
}


@pytest.mark.parametrize("name", [n for n in F.__all__ if isinstance(getattr(F, n), frozenset)])
def test_every_grouped_name_is_a_bambi_family(name):
    assert getattr(F, name) <= set(BUILTIN_FAMILIES), name


@pytest.mark.parametrize("table", [F.R_FAMILY_NAMES, F.FAMILY_ALIASES])
def test_the_names_people_type_point_to_bambi_families(table):
    assert set(table.values()) <= set(BUILTIN_FAMILIES)
    assert not set(table) & set(BUILTIN_FAMILIES)  # an alias never hides a Bambi name


def test_every_bambi_family_has_exactly_one_response_group():
    for family in BUILTIN_FAMILIES:
        groups = [name for name, members in RESPONSE_GROUPS.items() if family in members]
        assert len(groups) == 1, (family, groups)
    for (a, x), (b, y) in itertools.combinations(RESPONSE_GROUPS.items(), 2):
        assert not x & y, (a, b)


# The groups of the mean, as the prior predictive check used them before the table was shared.
@pytest.mark.parametrize(
    ("group", "members"),
    [
        (
            F.POSITIVE_MEAN,
            {
                "poisson",
                "negativebinomial",
                "gamma",
                "exponential",
                "wald",
                "weibull",
                "zero_inflated_poisson",
                "zero_inflated_negativebinomial",
                "hurdle_poisson",
                "hurdle_negativebinomial",
                "hurdle_gamma",
            },
        ),
        (F.LOG_LOCATION, {"lognormal", "hurdle_lognormal"}),
        (
            F.NOT_ONE_NUMBER,
            {"categorical", "multinomial", "dirichlet_multinomial", "cumulative", "sratio"},
        ),
        (F.LEVEL_RESPONSE, {"bernoulli", "categorical", "cumulative", "sratio"}),
    ],
)
def test_the_mean_groups(group, members):
    assert group == members
