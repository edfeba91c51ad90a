"""lmmformula against brms on the same data, model and priors: mo() and cumulative models.

The references (``tests/reference/brms/{name}.json`` with the data ``{name}.csv``) were made by
``tests/reference/brms/make_brms_refs.R`` (brms 2.18, rstan; 4 chains of 2000 kept draws): brms'
``posterior_summary``, the priors it used and its default priors. Each test fits lmmformula with
the same formula, family and priors and compares the posteriors.

The rule: for every parameter brms reports, the posterior means differ by less than
``4 * MCSE + 0.1 * sd``, where ``MCSE = sqrt(sd_brms^2 / ESS_brms + sd_lf^2 / ESS_lf)`` is the
Monte Carlo standard error of the difference (bulk ESS) and ``sd`` brms' posterior sd: Monte
Carlo error plus a tenth of a posterior sd for what differs by construction (brms puts its
``Intercept`` prior on centred predictors and leaves ``mo()`` terms uncentred; Bambi centres
every population-level column of a model with an intercept and none of an ordinal one), and the
posterior sds agree within 25%. A wrong parameterisation (a simplex in reverse, ``D`` off by one,
a threshold sign) moves the means by many posterior sds.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmformula as lf

REFERENCE = Path(__file__).parent / "reference" / "brms"

MODELS = {
    # name: (lmmformula formula, family, link)
    "mo": ("y ~ mo(x) + (1 | g)", "gaussian", None),
    "mo_group": ("y ~ mo(x) + (1 + mo(x) | g)", "gaussian", None),
    "cumulative_logit": ("y ~ x + (1 | g)", "cumulative", "logit"),
    "cumulative_probit": ("y ~ x + (1 | g)", "cumulative", "probit"),
}
MODELS = {k: v for k, v in MODELS.items() if (REFERENCE / f"{k}.json").exists()}


def _reference(name: str) -> tuple[dict, pd.DataFrame]:
    ref = json.loads((REFERENCE / f"{name}.json").read_text())
    data = pd.read_csv(REFERENCE / ref["data_file"])
    return ref, data


def _user_priors(ref: dict) -> list[lf.PriorSpec]:
    """brms' priors of the reference fit that the user set, as lf.prior specifications."""
    out = []
    for row in ref["prior"]:
        if row["source"] != "user" or not row["prior"] or row["class"] == "L":
            continue  # brms lists its lkj(2) on cor again as lkj_corr_cholesky(2) on L
        out.append(lf.prior(row["prior"], cls=row["class"], coef=row["coef"], group=row["group"]))
    return out


def _lmmformula_name(brms: str) -> tuple[str, str]:
    """(table, row) of lmmformula's summary that holds brms' parameter ``brms``."""
    if brms.startswith("b_"):
        return "fixef", brms[2:]
    if brms.startswith(("bsp_", "simo_")):
        return "fixef", brms
    if brms.startswith("sd_"):
        group, term = brms[3:].split("__", 1)
        return "varcorr", f"{group}:sd({term})"
    if brms.startswith("cor_"):
        group, pair = brms[4:].split("__", 1)
        a, b = pair.split("__")
        return "varcorr", f"{group}:cor({a},{b})"
    return "family", brms


@pytest.fixture(scope="module", params=sorted(MODELS))
def compared(request):
    name = request.param
    formula, family, link = MODELS[name]
    ref, data = _reference(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = lf.fit(
            formula,
            data,
            family=family,
            link=link,
            priors=_user_priors(ref),
            draws=1000,
            tune=1000,
            chains=2,
            random_seed=20261127,
            progressbar=False,
        )
    return name, ref, fit


def _tables(fit) -> dict[str, pd.DataFrame]:
    varcorr = fit._varcorr_table()
    varcorr.index = varcorr["grp"].astype(str) + ":" + varcorr["label"].astype(str)
    summary = fit.summary()
    return {"fixef": fit.fixef(), "varcorr": varcorr, "family": summary.family_specific}


def test_posterior_agrees_with_brms(compared) -> None:
    name, ref, fit = compared
    tables = _tables(fit)
    rows = []
    for rec in ref["posterior_summary"]:
        brms = rec["parameter"]
        if brms.startswith(("r_", "lp", "lprior", "Intercept", "z_", "L_")) or brms == "disc":
            continue  # per-level effects, log density, centred intercepts, disc fixed at 1
        table, row = _lmmformula_name(brms)
        assert row in tables[table].index, f"{name}: no {row!r} for brms' {brms}"
        mine = tables[table].loc[row]
        mcse = np.sqrt(rec["Est.Error"] ** 2 / rec["ess_bulk"] + mine["sd"] ** 2 / mine["ess_bulk"])
        diff = mine["estimate"] - rec["Estimate"]
        rows.append(
            (brms, rec["Estimate"], mine["estimate"], diff, 4 * mcse + 0.1 * rec["Est.Error"])
        )
        ratio = mine["sd"] / rec["Est.Error"]
        assert 0.8 < ratio < 1.25, f"{name} {brms}: posterior sd {mine['sd']:.4g} vs brms' " + (
            f"{rec['Est.Error']:.4g}"
        )
    table = pd.DataFrame(rows, columns=["parameter", "brms", "lmmformula", "diff", "allowed"])
    bad = table[table["diff"].abs() > table["allowed"]]
    assert bad.empty, f"{name}:\n{table.to_string()}"
    assert fit.diagnostics().divergences == 0


@pytest.mark.parametrize("name", sorted(MODELS))
def test_brms_default_priors(name: str) -> None:
    """``priors="brms"`` puts brms' own defaults (``get_prior``) on the mo() and ordinal
    parameters: the simplex, the thresholds, the sds."""
    formula, family, link = MODELS[name]
    ref, data = _reference(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lf.model(formula, data, family=family, link=link, priors="brms")
    mine = m.prior_summary()
    for row in ref["default_prior"]:
        if not row["prior"] or row["class"] not in ("Intercept", "simo", "sd", "b"):
            continue
        if row["class"] == "sd" and (row["coef"] or row["group"]):
            continue
        hits = mine[(mine["class"] == row["class"]) & (mine["coef"] == row["coef"])]
        assert len(hits) >= 1, (name, row)
        got = hits.iloc[0]["prior"]
        want = row["prior"]
        if row["class"] == "sd":  # brms: student_t on sd >= 0, here its half form
            want = want.replace("student_t(3, 0, ", "halfstudent_t(3, ")
        assert got.replace(" ", "") == want.replace(" ", ""), (name, row, got)
