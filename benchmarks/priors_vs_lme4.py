"""Default priors, measured: prior checks on every shipped data set and posteriors against lme4.

Run from the repository root (after ``Rscript benchmarks/priors_vs_lme4.R``, which writes the
lme4/glmer reference ``benchmarks/priors_vs_lme4_lme4.csv``)::

    .venv/bin/python benchmarks/priors_vs_lme4.py checks      # prior_check, every scheme
    .venv/bin/python benchmarks/priors_vs_lme4.py posterior   # fits against lme4
    .venv/bin/python benchmarks/priors_vs_lme4.py counts      # log-link multiplier
    .venv/bin/python benchmarks/priors_vs_lme4.py tables      # the tables, from the CSVs

``checks`` runs ``prior_check(draws=500, random_seed=s)`` for seeds 1-3 on the standard formula
of every shipped data set under each default scheme below, and the lecture's wide and narrow
priors on the ozone models; it writes ``benchmarks/priors_checks.csv``. ``posterior`` fits
(nutpie, 2 chains x 1000 draws after 1000 tuning steps, seed 1) and compares posterior means
with lme4's estimates; it writes ``benchmarks/priors_posterior.csv``. Both print the markdown
tables that ``docs/priors.md`` shows.

Schemes:

* ``lmmformula``: the defaults (no ``priors=``): ``DefaultRule()``.
* ``bambi``: Bambi's own auto-scaled defaults (``priors="bambi"``).
* ``brms``: brms' defaults (``priors="brms"``; the flat ``b`` are held at 0 in the check).
* ``rstanarm-like``: rstanarm's autoscaled ``normal(0, 2.5 s / sd(x))`` on every column
  (dummies included), ``normal(location, 2.5 s)`` on the intercept, ``exponential(1 / sd(y))``
  on sigma, and ``exponential(1 / s)`` on every group-level sd, unscaled by the predictor
  (an approximation of ``decov()``, whose sds are ``sigma * tau``, ``tau ~ gamma(1, 1)``, in
  the predictor's own units).
* ``sd x2.5``: the lmmformula rule with ``halfnormal(2.5 s)`` group-level sds (Bambi's width).
* ``sd half-t``: the lmmformula rule with ``halfstudent_t(3, s)`` group-level sds (brms' shape).
* ``b x1``: the lmmformula rule with ``normal(0, s / sd(x))`` on numeric columns and
  ``normal(0, s)`` on indicators (Bambi's logit choice for a factor's columns) instead of 2.5.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import lmmformula as lf
from lmmformula import priors as P

HERE = Path(__file__).resolve().parent
LME4_CSV = HERE / "priors_vs_lme4_lme4.csv"
CHECKS_CSV = HERE / "priors_checks.csv"
POSTERIOR_CSV = HERE / "priors_posterior.csv"

CASES = [
    ("sleepstudy", "Reaction ~ Days + (Days|Subject)"),
    ("sleepstudy", "log(Reaction) ~ Days + (Days|Subject)"),
    ("cbpp", "cbind(incidence, size - incidence) ~ period + (1|herd)"),
    ("beijing_ozone", "log_ozone ~ TEMP + (TEMP|station)"),
    ("pastes", "strength ~ 1 + (1|batch/cask)"),
    ("penicillin", "diameter ~ 1 + (1|plate) + (1|sample)"),
    ("nwo_grants", "awards | trials(applications) ~ 0 + gender + (1|discipline)"),
]
SEEDS = (1, 2, 3)
FIT = {"draws": 1000, "tune": 1000, "chains": 2, "random_seed": 1, "progressbar": False}

LECTURE_WIDE = [
    lf.prior("normal(0, 3)", cls="Intercept"),
    lf.prior("normal(0, 1)", cls="b", coef="TEMP"),
    lf.prior("halfcauchy(1)", cls="sigma"),
]
LECTURE_NARROW = [
    lf.prior("normal(0, 2)", cls="Intercept"),
    lf.prior("normal(0, 0.1)", cls="b", coef="TEMP"),
    lf.prior("halfcauchy(1)", cls="sigma"),
]
LECTURE_SD = [lf.prior("halfcauchy(1)", cls="sd"), lf.prior("lkj(2)", cls="cor")]


def _quiet_model(formula, data, priors=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lf.model(formula, data, priors=priors)


def _rule_priors(rule: P.DefaultRule):
    """A scheme: lmmformula's rule with other multipliers, as a Bambi dict per model."""

    def make(formula, data):
        base = _quiet_model(formula, data)
        defaults = P.lmmformula_default_priors(base, rule=rule)
        return P._bambi_dict({slot: d.value for slot, d in defaults.items()})

    return make


def _rstanarm_like(formula, data):
    import bambi as bmb

    base = _quiet_model(formula, data)
    scale = P._outcome_scale(base)
    parent = P._parent(base)
    out = {}
    for slot in P._slots(base):
        if slot.cls == "Intercept":
            out[slot] = bmb.Prior("Normal", mu=scale.location, sigma=2.5 * scale.scale)
        elif slot.cls == "b":
            cols = P._columns(parent.common_terms[slot.term].data)
            sds = np.array([np.std(c, ddof=1) for c in cols.T])
            sig = 2.5 * scale.scale / sds
            out[slot] = bmb.Prior("Normal", mu=P._squeeze(0 * sig), sigma=P._squeeze(sig))
        elif slot.cls == "sd":
            out[slot] = bmb.Prior("Exponential", lam=1 / scale.scale)
        elif slot.cls == "sigma":
            out[slot] = bmb.Prior("Exponential", lam=1 / scale.scale)
    return P._bambi_dict(out)


SCHEMES = {
    "lmmformula": None,
    "bambi": "bambi",
    "brms": "brms",
    "rstanarm-like": _rstanarm_like,
    "sd x2.5": _rule_priors(P.DefaultRule(sd=2.5)),
    "sd half-t": _rule_priors(P.DefaultRule(sd_dist="halfstudent_t")),
    "b x1": _rule_priors(P.DefaultRule(b=1.0)),
}


def _priors_for(scheme, formula, data):
    value = SCHEMES[scheme]
    return value(formula, data) if callable(value) else value


def _check_row(dataset, formula, scheme, priors, seed):
    data = lf.load_dataset(dataset)
    model = _quiet_model(formula, data, priors)
    start = time.perf_counter()
    check = model.prior_check(random_seed=seed)
    mean_row = check.table.iloc[1]
    pred_row = check.table.iloc[2]
    drivers = [f.split("Driven by ")[1].split(" (")[0] for f in check.flags if "Driven by" in f]
    drivers += ["jointly" for f in check.flags if "act jointly" in f]
    return {
        "dataset": dataset,
        "formula": formula,
        "scheme": scheme,
        "seed": seed,
        "kind": check.kind,
        "share_mean": float(mean_row["outside"]),
        "share_predictive": float(pred_row["outside"]),
        "flagged": check.flagged,
        "driver": "; ".join(drivers),
        "seconds": round(time.perf_counter() - start, 1),
    }


def run_checks() -> pd.DataFrame:
    rows = []
    for dataset, formula in CASES:
        data = lf.load_dataset(dataset)
        for scheme in SCHEMES:
            priors = _priors_for(scheme, formula, data)
            for seed in SEEDS:
                rows.append(_check_row(dataset, formula, scheme, priors, seed))
                print(rows[-1], flush=True)
    lecture = [
        ("log_ozone ~ TEMP", "lecture wide", LECTURE_WIDE),
        ("log_ozone ~ TEMP", "lecture narrow", LECTURE_NARROW),
        ("log_ozone ~ TEMP + (TEMP|station)", "lecture wide + default sd", LECTURE_WIDE),
        ("log_ozone ~ TEMP + (TEMP|station)", "lecture narrow + default sd", LECTURE_NARROW),
        (
            "log_ozone ~ TEMP + (TEMP|station)",
            "lecture narrow + halfcauchy(1) sd",
            LECTURE_NARROW + LECTURE_SD,
        ),
    ]
    for formula, scheme, priors in lecture:
        for seed in SEEDS:
            rows.append(_check_row("beijing_ozone", formula, scheme, priors, seed))
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(CHECKS_CSV, index=False)
    return table


# -- posteriors against lme4 --------------------------------------------------------------------
def _lme4_key(term: str) -> tuple[str, str, str, str]:
    """lme4's row name -> (kind, group, var1, var2) in lmmformula's vocabulary."""
    if term == "sigma":
        return ("sigma", "Residual", "", "")
    if term.startswith("sd(") or term.startswith("cor("):
        kind = term.split("(", 1)[0]
        inner = term[len(kind) + 1 : -1]
        variables, group = inner.rsplit("|", 1)
        group = ":".join(sorted(group.split(":")))
        names = [v.replace("(Intercept)", "Intercept") for v in variables.split(",")]
        return (kind, group, names[0], names[1] if len(names) > 1 else "")
    return ("b", "", term.replace("(Intercept)", "Intercept"), "")


def _fit_estimates(fit) -> dict[tuple[str, str, str, str], float]:
    out = {}
    for name, row in fit.fixef().iterrows():
        out[("b", "", name.replace("[", "").replace("]", ""), "")] = float(row["estimate"])
    for _, row in fit.varcorr().iterrows():
        group = ":".join(sorted(str(row["grp"]).split(":")))
        if row["grp"] == "Residual":
            out[("sigma", "Residual", "", "")] = float(row["estimate"])
        elif row["var2"] is None or pd.isna(row["var2"]):
            out[("sd", group, row["var1"], "")] = float(row["estimate"])
        else:
            out[("cor", group, row["var1"], row["var2"])] = float(row["estimate"])
    return out


POSTERIOR_CASES = [*CASES, ("cbpp", "incidence ~ period + (1|herd)")]
POSTERIOR_RUNS = [
    (case, scheme)
    for case in POSTERIOR_CASES
    for scheme in (
        ("lmmformula", "bambi", "brms")
        if case[0] in ("cbpp", "sleepstudy", "beijing_ozone")
        else ("lmmformula",)
    )
]


def run_posterior() -> pd.DataFrame:
    lme4 = pd.read_csv(LME4_CSV)
    rows = []
    for (dataset, formula), scheme in POSTERIOR_RUNS:
        data = lf.load_dataset(dataset)
        family = "poisson" if formula.startswith("incidence") else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = lf.model(formula, data, family=family, priors=SCHEMES[scheme])
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = model.fit(**FIT)
        seconds = time.perf_counter() - start
        estimates = _fit_estimates(fit)
        for _, ref in lme4[lme4["formula"] == formula].iterrows():
            key = _lme4_key(ref["term"])
            post = estimates.get(key, np.nan)
            diff = post - ref["estimate"]
            rows.append(
                {
                    "dataset": dataset,
                    "formula": formula,
                    "scheme": scheme,
                    "term": ref["term"],
                    "lme4": ref["estimate"],
                    "posterior_mean": post,
                    "difference": diff,
                    "relative": diff / abs(ref["estimate"]) if key[0] != "cor" else np.nan,
                    "seconds": round(seconds, 1),
                }
            )
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(POSTERIOR_CSV, index=False)
    return table


STANDARD_SCHEMES = ["lmmformula", "bambi", "brms", "rstanarm-like", "sd x2.5", "sd half-t", "b x1"]


def _share_cell(group: pd.DataFrame) -> str:
    lo, hi = group["share_mean"].min(), group["share_mean"].max()
    flagged = int(group["flagged"].sum())
    text = f"{lo:.1%}-{hi:.1%}"
    return text + (f" **flagged {flagged}/{len(group)}**" if flagged else "")


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown_checks(table: pd.DataFrame) -> str:
    """The two check tables of docs/priors.md: schemes by data set, then the lecture's priors."""
    standard = table[table["scheme"].isin(STANDARD_SCHEMES)]
    cells = standard.groupby(["formula", "scheme"], sort=False).apply(_share_cell).unstack()
    kinds = standard.groupby("formula", sort=False)["kind"].first()
    names = dict((f, d) for d, f in CASES)
    lines = [
        "| data set, formula | " + " | ".join(STANDARD_SCHEMES) + " |",
        "|" + " --- |" * (len(STANDARD_SCHEMES) + 1),
    ]
    for formula, row in cells[STANDARD_SCHEMES].iterrows():
        mark = " (p)" if kinds[formula] == "probability" else ""
        label = f"{names[formula]} `{_escape(formula)}`{mark}"
        lines.append(f"| {label} | " + " | ".join(row.values) + " |")
    lines += [
        "",
        "| formula | priors | share outside (seeds) | driven by |",
        "| --- | --- | --- | --- |",
    ]
    lecture = table[~table["scheme"].isin(STANDARD_SCHEMES)]
    for (formula, scheme), group in lecture.groupby(["formula", "scheme"], sort=False):
        drivers = [d for d in group["driver"] if isinstance(d, str) and d]
        driver = _escape(drivers[0].split(" (")[0]) if drivers else ""
        lines.append(f"| `{_escape(formula)}` | {scheme} | {_share_cell(group)} | {driver} |")
    return "\n".join(lines)


# -- count models: the log-link multiplier ------------------------------------------------------
COUNTS_CSV = HERE / "priors_counts.csv"
LOG_LINK_RULES = {"2.5 (as logit)": 2.5, "1.5 (default)": 1.5, "1": 1.0}


def _count_data() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(1)
    n = 200
    sim = pd.DataFrame({"x": rng.normal(10, 3, n), "g": rng.choice(list("ABCDEFGH"), n)})
    sim["c"] = rng.poisson(3, n)
    sim["c2"] = rng.poisson(np.exp(1 + 0.2 * (sim["x"] - 10)), n)
    return {
        "simulated": sim,
        "cbpp": lf.load_dataset("cbpp"),
        "nwo_grants": lf.load_dataset("nwo_grants"),
    }


COUNT_CASES = [
    ("simulated", "c ~ x + (1|g)", "poisson"),
    ("simulated", "c2 ~ x + (1|g)", "poisson"),
    ("simulated", "c ~ x", "negativebinomial"),
    ("cbpp", "incidence ~ period + (1|herd)", "poisson"),
    ("nwo_grants", "awards ~ gender + offset(np.log(applications)) + (1|discipline)", "poisson"),
]


def run_counts() -> pd.DataFrame:
    """prior_check (seeds 1-3) of log-link count models under three log-link multipliers."""
    datasets = _count_data()
    rows = []
    for name, formula, family in COUNT_CASES:
        data = datasets[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base = lf.model(formula, data, family=family)
            for label, k in LOG_LINK_RULES.items():
                rule = P.DefaultRule(log_link=k)
                defaults = P.lmmformula_default_priors(base, rule=rule)
                priors = P._bambi_dict({slot: d.value for slot, d in defaults.items()})
                model = lf.model(formula, data, family=family, priors=priors)
                for seed in SEEDS:
                    check = model.prior_check(random_seed=seed)
                    rows.append(
                        {
                            "data": name,
                            "formula": formula,
                            "family": family,
                            "log_link": label,
                            "seed": seed,
                            "share_mean": float(check.table.iloc[1]["outside"]),
                            "flagged": check.flagged,
                        }
                    )
                    print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(COUNTS_CSV, index=False)
    return table


def _markdown_counts(table: pd.DataFrame) -> str:
    cells = table.groupby(["formula", "log_link"], sort=False).apply(_share_cell).unstack()
    labels = list(LOG_LINK_RULES)
    families = table.groupby("formula", sort=False)["family"].first()
    names = table.groupby("formula", sort=False)["data"].first()
    lines = [
        "| data, formula (family) | " + " | ".join(labels) + " |",
        "|" + " --- |" * (len(labels) + 1),
    ]
    for formula, row in cells[labels].iterrows():
        label = f"{names[formula]} `{_escape(formula)}` ({families[formula]})"
        lines.append(f"| {label} | " + " | ".join(row.values) + " |")
    return "\n".join(lines)


def _markdown_posterior(table: pd.DataFrame) -> str:
    """docs/priors.md's posterior table: lme4 against each scheme's posterior mean."""
    means = table.pivot_table(
        index=["formula", "term"], columns="scheme", values="posterior_mean", sort=False
    )
    lme4 = table.groupby(["formula", "term"], sort=False)["lme4"].first()

    def cell(value, ref, term):
        if np.isnan(value):
            return ""
        if term.startswith("cor"):
            return f"{value:.3g} ({value - ref:+.2f})"
        return f"{value:.4g} ({(value - ref) / abs(ref):+.1%})"

    lines = [
        "| formula | term | lme4 | lmmformula | bambi | brms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    previous = None
    for (formula, term), row in means.iterrows():
        ref = lme4[(formula, term)]
        cells = [cell(row.get(s, np.nan), ref, term) for s in ("lmmformula", "bambi", "brms")]
        shown = f"`{_escape(formula)}`" if formula != previous else ""
        previous = formula
        lines.append(f"| {shown} | {_escape(term)} | {ref:.4g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "checks"
    if what == "checks":
        print(_markdown_checks(run_checks()))
    elif what == "posterior":
        print(_markdown_posterior(run_posterior()))
    elif what == "counts":
        print(_markdown_counts(run_counts()))
    elif what == "tables":
        print(_markdown_checks(pd.read_csv(CHECKS_CSV)))
        print()
        print(_markdown_posterior(pd.read_csv(POSTERIOR_CSV)))
        print()
        print(_markdown_counts(pd.read_csv(COUNTS_CSV)))
    else:
        raise SystemExit("usage: priors_vs_lme4.py checks|posterior|counts|tables")
