"""Graph equals design: the sampled PyMC graph computes ``X beta + Z b`` from ``Model.design()``.

For every formula of the lme4 conformance corpus (whose design is checked against lme4's in
``test_conformance.py``), at random values of the model's free variables:

* full-data likelihood: the graph's mean parameter (``mu``, ``p``, ...) put through the link is
  ``X beta + Z b + offset`` up to one constant (the intercept, which Bambi samples centred),
  and exactly that when the model has no intercept; ``beta`` and ``b`` are read from the
  graph's coefficient variables in the column orders of ``X`` and ``Z`` (this is what catches a
  term applied to the wrong rows, such as an interaction inside a bar);
* the same with centered blocks (``noncentered=False``);
* sufficient statistics (gaussian identity-link models where they apply): the likelihood the
  graph adds equals a numpy gaussian log density of the response around that linear
  predictor.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import special, stats
from test_conformance import CORPUS, _model

import lmmformula as lf
from lmmformula.errors import ModelError

LINKS = {
    "identity": lambda m: m,
    "logit": special.logit,
    "log": np.log,
    "probit": special.ndtri,
}


def _compile(pymc_model, names: list[str]):
    """A function of the free variables' values (a point) to the named variables' values."""
    outs = pymc_model.replace_rvs_by_values([pymc_model[n] for n in names])
    fn = pymc_model.compile_fn(
        outs, inputs=pymc_model.value_vars, mode="FAST_COMPILE", on_unused_input="ignore"
    )
    return lambda point: dict(zip(names, fn(point), strict=True))


def _point(pymc_model, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    start = pymc_model.initial_point()
    return {k: v + rng.normal(0.0, 0.4, size=np.shape(v)) for k, v in start.items()}


def _coefficients(model: lf.Model, values: dict[str, np.ndarray], design):
    """(beta without the intercept, mask of non-intercept X columns, b) from graph values."""
    beta, keep = [], []
    for term, pos in zip(design.X_columns["term"], design.X_columns["position"], strict=True):
        if term == "Intercept":
            keep.append(False)
            continue
        keep.append(True)
        beta.append(np.atleast_1d(values[term]).reshape(-1)[pos])
    b = []
    for term, sub in design.Z_columns.groupby("term", sort=False):
        value = np.asarray(values[term])
        b.append(value.reshape(-1))  # levels x columns, row-major: Z's column order
        assert value.size == len(sub), term
    b = np.concatenate(b) if b else np.zeros(0)
    return np.asarray(beta), np.asarray(keep, dtype=bool), b


def _eta_without_intercept(design, beta, keep, b) -> np.ndarray:
    x = design.X.to_numpy()[:, keep]
    eta = x @ beta + design.Z @ b
    if design.offset is not None:
        eta = eta + design.offset
    return eta


def _check_full_data(row: dict[str, str], noncentered: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = _model(row, suffstats=False, noncentered=noncentered)
    design = m.design()
    pm_model = m.pymc_model
    parent = m.bambi.family.likelihood.parent
    names = [parent, *dict.fromkeys(design.X_columns["term"]), *design.Z_columns["term"].unique()]
    names = list(dict.fromkeys(names))
    fn = _compile(pm_model, names)
    for seed in (1, 2):
        values = fn(_point(pm_model, seed))
        beta, keep, b = _coefficients(m, values, design)
        eta = LINKS[m.link_name](np.asarray(values[parent], dtype=float))
        rest = eta - _eta_without_intercept(design, beta, keep, b)
        if keep.all():  # no intercept: nothing may be left over
            np.testing.assert_allclose(rest, 0.0, atol=1e-7)
        else:
            assert np.ptp(rest) < 1e-7 * max(1.0, np.abs(eta).max()), np.ptp(rest)


@pytest.mark.parametrize("row", CORPUS, ids=[r["id"] for r in CORPUS])
def test_graph_equals_design(row: dict[str, str]) -> None:
    _check_full_data(row, noncentered=True)


@pytest.mark.parametrize("row", CORPUS[::3], ids=[r["id"] for r in CORPUS[::3]])
def test_graph_equals_design_centered(row: dict[str, str]) -> None:
    _check_full_data(row, noncentered=False)


GAUSSIAN = [r for r in CORPUS if r["family"] == "gaussian"]


@pytest.mark.parametrize("row", GAUSSIAN, ids=[r["id"] for r in GAUSSIAN])
def test_sufficient_statistics_equal_the_gaussian_density(row: dict[str, str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            m = _model(row, suffstats=True)
        except ModelError as exc:  # e.g. a transformed response: the full-data path only
            assert "does not apply" in str(exc)
            pytest.skip(f"sufficient statistics do not apply: {exc}")
        full = _model(row, suffstats=False)
    design = m.design()
    pm_model = m.pymc_model
    response = m.bambi.response_term
    potential = pm_model[f"{response.alias or response.name}_suffstats"]
    names = ["mu", *dict.fromkeys(design.X_columns["term"]), *design.Z_columns["term"].unique()]
    names = list(dict.fromkeys(names))
    fn_full = _compile(full.pymc_model, names)
    # the density the sampler sees: the potential's term of the model's log density
    logp_ss = pm_model.compile_logp(vars=[potential], jacobian=False, mode="FAST_COMPILE")
    fn_sigma = _compile(pm_model, ["sigma"])
    y = np.asarray(response.data, dtype=float).reshape(-1)
    for seed in (1, 2):
        point = _point(pm_model, seed)
        assert set(point) == set(full.pymc_model.initial_point())
        values = fn_full(point)
        beta, keep, b = _coefficients(full, values, design)
        # the intercept as the full-data graph has it (checked against the design above)
        intercept = np.mean(values["mu"] - _eta_without_intercept(design, beta, keep, b))
        mu = _eta_without_intercept(design, beta, keep, b) + (0.0 if keep.all() else intercept)
        logp, sigma = logp_ss(point), fn_sigma(point)["sigma"]
        expected = stats.norm.logpdf(y, mu, sigma).sum()
        np.testing.assert_allclose(logp, expected, rtol=1e-9)
