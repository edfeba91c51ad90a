"""The PyMC graph's log density against numpy written from the model's equations.

For every term shape, family, likelihood path (row by row or sufficient statistics) and
parameterisation (centred or not), the joint log density of the built PyMC model at random
points of its free variables (transformed space, Jacobians included) equals the one
:mod:`tests.oracle` computes from the data frame, the priors as written and the equations of the
model. The design (fixed columns, Bambi's centring, group columns, level codes) is built here
from the data frame, not read from Bambi or lmmformula.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from oracle import (
    Block,
    Fixed,
    OracleModel,
    Uncorrelated,
    half,
    indicators,
    level_codes,
    lkj_log_normalizer,
    log_density,
    unpack_lower,
)
from scipy import integrate, special, stats

import lmmformula as lf

RTOL = 1e-8
# Compile the log density with PyTensor's Python linker: no C compilation per graph, the same
# graph and arithmetic.
MODE = "FAST_COMPILE"

# -- priors: as the user writes them (brms spelling) and as scipy densities ---------------------
INTERCEPT = ("normal(0.5, 3)", stats.norm(0.5, 3))
B = ("normal(0, 2)", stats.norm(0, 2))
SD = ("normal(0, 1.5)", half(stats.norm(0, 1.5)))  # brms: a normal sd prior is half-normal
SD_X = ("student_t(3, 0, 0.8)", half(stats.t(3, 0, 0.8)))
SD_Z = ("cauchy(0, 1)", half(stats.cauchy(0, 1)))
SD_G2 = ("normal(0, 0.7)", half(stats.norm(0, 0.7)))
SIGMA = ("exponential(2)", stats.expon(scale=0.5))
ETA = 1.5


def _frame(n: int, seed: int, n_groups: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, n_groups, n)
    g[:n_groups] = np.arange(n_groups)  # every level present
    x = rng.normal(size=n)
    z = rng.uniform(-1, 1, size=n)
    f = rng.choice(list("ABC"), n)
    eta = 0.3 + 0.4 * x - 0.2 * z + rng.normal(scale=0.5, size=n_groups)[g]
    trials = rng.integers(5, 20, n)
    return pd.DataFrame(
        {
            "y": eta + rng.normal(scale=0.7, size=n),
            "count": rng.poisson(np.exp(eta)),
            "s": rng.binomial(trials, special.expit(eta)),
            "trials": trials,
            "x": x,
            "z": z,
            "f": f,
            "g": [f"g{i:02d}" for i in g],
            "g2": rng.choice([f"h{i}" for i in range(5)], n),
            "a": rng.choice(["p", "q", "r"], n),
            "b": rng.choice(["u", "v"], n),
        }
    )


@dataclass(frozen=True)
class Shape:
    """A right-hand side, the priors it takes, and the oracle's reading of it."""

    rhs: str
    sd_priors: tuple[tuple[str, str, str], ...]  # (prior, group, coef) for cls="sd"
    fixed: tuple[str, ...]  # fixed slopes (the intercept is always in)
    groups: Callable[[pd.DataFrame], list[Uncorrelated | Block]]


def _block(df: pd.DataFrame, factor: str, columns: list[np.ndarray], priors: list) -> Block:
    codes, _ = level_codes(df[factor])
    return Block(factor, np.column_stack(columns), codes, [p[1] for p in priors], ETA)


def _single(df: pd.DataFrame, name: str, factor: str, column, prior) -> Uncorrelated:
    codes, _ = level_codes(df[factor])
    return Uncorrelated(name, np.asarray(column, dtype=float), codes, prior[1])


def _ones(df: pd.DataFrame) -> np.ndarray:
    return np.ones(len(df))


SHAPES = {
    "(1|g)": Shape(
        "x + (1|g)",
        ((SD[0], "", ""),),
        ("x",),
        lambda df: [_single(df, "1|g", "g", _ones(df), SD)],
    ),
    "(x|g)": Shape(
        "x + (x|g)",
        ((SD[0], "", ""), (SD_X[0], "g", "x")),
        ("x",),
        lambda df: [_block(df, "g", [_ones(df), df["x"].to_numpy()], [SD, SD_X])],
    ),
    "(1 + x + z|g)": Shape(
        "x + z + (1 + x + z|g)",
        ((SD[0], "", ""), (SD_X[0], "g", "x"), (SD_Z[0], "g", "z")),
        ("x", "z"),
        lambda df: [
            _block(df, "g", [_ones(df), df["x"].to_numpy(), df["z"].to_numpy()], [SD, SD_X, SD_Z])
        ],
    ),
    # treatment coding inside the bar: an intercept and K - 1 = 2 indicator columns (B, C)
    "(f|g)": Shape(
        "x + (f|g)",
        ((SD[0], "", ""), (SD_X[0], "g", "f")),
        ("x",),
        lambda df: [
            _block(df, "g", [_ones(df), *indicators(df["f"], ["B", "C"]).T], [SD, SD_X, SD_X])
        ],
    ),
    # no intercept: K = 3 indicator columns
    "(0 + f|g)": Shape(
        "x + (0 + f|g)",
        ((SD_X[0], "g", "f"),),
        ("x",),
        lambda df: [_block(df, "g", list(indicators(df["f"], ["A", "B", "C"]).T), [SD_X] * 3)],
    ),
    # lme4: (1|g) + (0 + x|g), independent
    "(x||g)": Shape(
        "x + (x||g)",
        ((SD[0], "", ""), (SD_X[0], "g", "x")),
        ("x",),
        lambda df: [
            _single(df, "1|g", "g", _ones(df), SD),
            _single(df, "x|g", "g", df["x"], SD_X),
        ],
    ),
    "crossed": Shape(
        "x + (1|g) + (1|g2)",
        ((SD[0], "", ""), (SD_G2[0], "g2", "")),
        ("x",),
        lambda df: [
            _single(df, "1|g", "g", _ones(df), SD),
            _single(df, "1|g2", "g2", _ones(df), SD_G2),
        ],
    ),
    # (1|a/b) = (1|a) + (1|a:b): the second groups by the interaction's observed levels
    "nested": Shape(
        "1 + (1|a/b)",
        ((SD[0], "", ""), (SD_G2[0], "a", "")),
        (),
        lambda df: [
            _single(df, "1|a", "a", _ones(df), SD_G2),
            Uncorrelated(
                "1|a:b",
                _ones(df),
                level_codes(df["a"] + ":" + df["b"])[0],
                SD[1],
            ),
        ],
    ),
}

RESPONSES = {
    "gaussian": "y",
    "binomial": "cbind(s, trials - s)",
    "poisson": "count",
}


def _lf_priors(shape: Shape, family: str) -> list:
    priors = [lf.prior(INTERCEPT[0], cls="Intercept"), lf.prior(SD[0], cls="sd")]
    if shape.fixed:
        priors.append(lf.prior(B[0], cls="b"))
    for text, group, coef in shape.sd_priors:
        if group:
            priors.append(lf.prior(text, cls="sd", group=group, coef=coef))
    if family == "gaussian":
        priors.append(lf.prior(SIGMA[0], cls="sigma"))
    if any(isinstance(t, Block) for t in shape.groups(_frame(20, 0))):
        priors.append(lf.prior(f"lkj({ETA})", cls="cor"))
    return priors


def _oracle(shape: Shape, family: str, df: pd.DataFrame) -> OracleModel:
    fixed = Fixed(
        np.column_stack([df[c].to_numpy(float) for c in shape.fixed])
        if shape.fixed
        else np.zeros((len(df), 0)),
        list(shape.fixed),
        [B[1]] * len(shape.fixed),
        INTERCEPT[1],
    )
    response = {"gaussian": "y", "binomial": "s", "poisson": "count"}[family]
    return OracleModel(
        y=df[response].to_numpy(float),
        family=family,
        fixed=fixed,
        groups=shape.groups(df),
        sigma_prior=SIGMA[1] if family == "gaussian" else None,
        trials=df["trials"].to_numpy() if family == "binomial" else None,
    )


def _model(shape: Shape, family: str, df: pd.DataFrame, **kwargs) -> lf.Model:
    formula = f"{RESPONSES[family]} ~ {shape.rhs}"
    family_arg = "poisson" if family == "poisson" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lf.model(formula, df, family_arg, priors=_lf_priors(shape, family), **kwargs)


def _points(
    pymc_model, n: int, seed: int, scales: tuple[float, ...] = (0.3, 0.8, 1.2)
) -> list[dict[str, np.ndarray]]:
    """``n`` points: the model's initial point plus seeded normal noise in the transformed
    space, at the given scales in turn."""
    rng = np.random.default_rng(seed)
    start = pymc_model.initial_point()
    out = []
    for i in range(n):
        scale = scales[i % len(scales)]
        out.append({k: v + scale * rng.normal(size=np.shape(v)) for k, v in start.items()})
    return out


def _check(m: lf.Model, oracle: OracleModel, noncentered: bool, seed: int, n_points: int = 3):
    pm_model = m.pymc_model
    # one function: the joint log density (Jacobians included) and the likelihood's part
    logps = pm_model.compile_fn(
        [pm_model.logp(), pm_model.logp(vars=pm_model.observed_RVs + pm_model.potentials)],
        inputs=pm_model.value_vars,
        mode=MODE,
    )
    # binomial: Bambi's graph goes through p = expit(eta), which rounds to 1 in float64 for
    # eta > ~36.7; beyond that its log-likelihood loses digits (at a point with max |eta| =
    # 37.7 it was 40 too high, in every compile mode). Smaller steps keep |eta| < 15.
    scales = (0.3, 0.8, 1.2) if oracle.family == "gaussian" else (0.2, 0.4, 0.6)
    for point in _points(pm_model, n_points, seed, scales):
        expected_loglik, expected_prior, eta = oracle.parts(point, noncentered)
        if oracle.family != "gaussian":
            assert np.abs(eta).max() < 15
        logp, loglik = logps(point)
        np.testing.assert_allclose(loglik, expected_loglik, rtol=RTOL)
        np.testing.assert_allclose(logp, expected_loglik + expected_prior, rtol=RTOL)
        assert log_density(oracle, point, noncentered) == pytest.approx(
            expected_loglik + expected_prior
        )


DATA = _frame(240, seed=17)

CASES = [
    # shape, family, suffstats, noncentered
    *[(s, "gaussian", False, nc) for s in SHAPES for nc in (True, False)],
    *[(s, "gaussian", True, nc) for s in SHAPES for nc in (True, False)],
    *[(s, "binomial", False, True) for s in SHAPES],
    *[(s, "binomial", False, False) for s in ("(x|g)", "(f|g)", "(x||g)", "nested")],
    *[(s, "poisson", False, True) for s in SHAPES],
    *[(s, "poisson", False, False) for s in ("(1|g)", "(1 + x + z|g)", "(0 + f|g)", "crossed")],
]


@pytest.mark.parametrize(
    ("shape", "family", "suffstats", "noncentered"),
    CASES,
    ids=[
        f"{s}-{f}-{'suffstats' if ss else 'rows'}-{'nc' if nc else 'centered'}"
        for s, f, ss, nc in CASES
    ],
)
def test_log_density_equals_the_equations(shape, family, suffstats, noncentered):
    df = DATA
    m = _model(SHAPES[shape], family, df, suffstats=suffstats, noncentered=noncentered)
    assert m.likelihood == ("sufficient statistics" if suffstats else "full data")
    # the grouping levels are the data's sorted levels, as the oracle codes them
    for term in SHAPES[shape].groups(df):
        factor = term.factor if isinstance(term, Block) else term.name.split("|")[1]
        values = df["a"] + ":" + df["b"] if factor == "a:b" else df[factor]
        assert list(m.pymc_model.coords[f"{factor}__factor_dim"]) == level_codes(values)[1]
    seed = CASES.index((shape, family, suffstats, noncentered))
    _check(m, _oracle(SHAPES[shape], family, df), noncentered, seed)


@pytest.mark.parametrize("shape", ["(x|g)", "(f|g)", "(x||g)"])
def test_linear_predictor_equals_the_equations(shape):
    """The model's ``mu`` (row by row) against the oracle's X b + Z u at random points."""
    m = _model(SHAPES[shape], "gaussian", DATA, suffstats=False)
    pm_model = m.pymc_model
    # the deterministic as a function of the free variables' values (not of random draws)
    (mu_of_values,) = pm_model.replace_rvs_by_values([pm_model["mu"]])
    mu = pm_model.compile_fn(
        mu_of_values, inputs=pm_model.value_vars, mode=MODE, on_unused_input="ignore"
    )
    oracle = _oracle(SHAPES[shape], "gaussian", DATA)
    for point in _points(pm_model, 2, seed=5):
        _, _, eta = oracle.parts(point, noncentered=True)
        np.testing.assert_allclose(mu(point), eta, rtol=RTOL)


# -- sufficient statistics chosen by "auto" on a multi-column group term ------------------------
@pytest.mark.parametrize("shape", ["(f|g)", "(1 + x + z|g)"])
def test_auto_sufficient_statistics_on_a_multi_column_block(shape):
    """1,200 rows in 20 groups: ``suffstats="auto"`` reduces them, and the reduced likelihood
    is the full data's, all of a multi-column group term included (a reduction that kept only
    a term's first column moves it by more than a hundred here)."""
    df = _frame(1200, seed=23, n_groups=20)
    m = _model(SHAPES[shape], "gaussian", df)
    assert m.likelihood == "sufficient statistics", m.likelihood_reason
    _check(m, _oracle(SHAPES[shape], "gaussian", df), noncentered=True, seed=31)
    assert m.bambi.backend.reduction.rows < len(df) // 2


# -- the oracle's own pieces against closed forms ------------------------------------------------
def test_lkj_normalizer_against_closed_forms():
    # k = 2: the correlation r has density proportional to (1 - r^2)^(eta - 1) on (-1, 1)
    for eta in (0.7, 1.0, 1.5, 4.0):
        total, _ = integrate.quad(lambda r, e=eta: (1 - r * r) ** (e - 1), -1, 1)
        assert lkj_log_normalizer(eta, 2) == pytest.approx(np.log(total), rel=1e-9)
    # k = 3, eta = 1: the volume of the 3 x 3 correlation matrices is pi^2 / 2
    assert lkj_log_normalizer(1.0, 3) == pytest.approx(np.log(np.pi**2 / 2), rel=1e-12)


def test_unpack_lower_is_row_major():
    np.testing.assert_array_equal(
        unpack_lower(np.arange(1.0, 7.0), 3), [[1, 0, 0], [2, 3, 0], [4, 5, 6]]
    )


def test_oracle_refuses_a_free_variable_it_does_not_know():
    shape = SHAPES["(1|g)"]
    m = _model(shape, "gaussian", DATA, suffstats=False)
    point = m.pymc_model.initial_point()
    point["stray"] = np.zeros(1)
    with pytest.raises(AssertionError, match="stray"):
        _oracle(shape, "gaussian", DATA).parts(point, noncentered=True)
