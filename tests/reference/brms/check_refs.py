"""Self-check of the brms reference fits (a script, not a pytest test).

For every ``tests/reference/brms/<name>.json`` written by ``make_brms_refs.R``: the fields are
there; the data file has ``nrow`` rows and the columns the formula needs; the fit kept has no
divergent transition and max Rhat <= 1.01; every prior row was set by the script (``user`` or
``(vectorized)``), apart from brms' empty class-level rows; the Stan program exists; and the
posterior recovers the simulation's truth (the truth inside a widened 95% interval). Facts that
do not need R are re-derived from the CSV files with numpy (gp1d's ``f`` is sin(x) on 30
distinct x each repeated 4 times, grcov_K.csv is exp(-|i - j| / 4) with the level names, the
cumulative outcome counts).

Run from the repository root::

    .venv/bin/python tests/reference/brms/check_refs.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
MODELS = [
    "dpar_id",
    "gp1d",
    "gp1d_approx",
    "grcov",
    "mo",
    "mo_group",
    "cumulative_logit",
    "cumulative_probit",
]
FIELDS = {
    "name",
    "versions",
    "formula",
    "family",
    "data_file",
    "nrow",
    "sampler",
    "attempts",
    "divergences",
    "max_treedepth_hits",
    "max_rhat",
    "truth",
    "notes",
    "prior",
    "default_prior",
    "posterior_summary",
    "summary_text",
}
COLUMNS = {
    "dpar_id": ["y", "x", "z", "g"],
    "gp1d": ["y", "x", "f"],
    "gp1d_approx": ["y", "x", "f"],
    "grcov": ["y", "g"],
    "mo": ["y", "x", "g"],
    "mo_group": ["y", "x", "g"],
    "cumulative_logit": ["y", "x", "g"],
    "cumulative_probit": ["y", "x", "g"],
}
# brms parameter -> true value the posterior must cover (interval widened by half its width)
RECOVER = {
    "dpar_id": {
        "b_x": 0.5,
        "b_sigma_z": 0.4,
        "b_sigma_Intercept": -0.3,
        "sd_g__Intercept": 0.5,
        "sd_g__sigma_Intercept": 0.3,
        "cor_g__Intercept__sigma_Intercept": 0.7,
    },
    "gp1d": {"sigma": 0.3},
    "gp1d_approx": {"sigma": 0.3},
    "grcov": {"sd_g__Intercept": 0.8, "sigma": 0.5, "b_Intercept": 1.0},
    "mo": {
        "bsp_mox": 0.5,
        "sigma": 0.5,
        "simo_mox1[1]": 0.1,
        "simo_mox1[2]": 0.2,
        "simo_mox1[3]": 0.3,
        "simo_mox1[4]": 0.4,
    },
    "mo_group": {"sd_g__Intercept": 0.5, "sigma": 0.5, "sd_g__mox": 0.1},
    "cumulative_logit": {
        "b_x": 0.8,
        "sd_g__Intercept": 0.7,
        "b_Intercept[1]": -1.0,
        "b_Intercept[2]": 0.2,
        "b_Intercept[3]": 1.5,
    },
    "cumulative_probit": {
        "b_x": 0.8,
        "sd_g__Intercept": 0.7,
        "b_Intercept[1]": -1.0,
        "b_Intercept[2]": 0.2,
        "b_Intercept[3]": 1.5,
    },
}


def check_model(name: str) -> list[str]:
    problems: list[str] = []
    ref = json.loads((HERE / f"{name}.json").read_text(encoding="utf-8"))
    missing = FIELDS - set(ref)
    if missing:
        problems.append(f"missing fields {sorted(missing)}")
    data = pd.read_csv(HERE / ref["data_file"])
    if len(data) != ref["nrow"] or list(data.columns) != COLUMNS[name]:
        problems.append(f"data: {len(data)} rows, columns {list(data.columns)}")
    if ref["divergences"] != 0 or ref["max_rhat"] > 1.01:
        problems.append(f"divergences {ref['divergences']}, max Rhat {ref['max_rhat']}")
    for row in ref["prior"]:
        if row["source"] not in ("user", "(vectorized)") and row["prior"] not in ("", "(flat)"):
            problems.append(f"prior not set by the script: {row}")
    if not (HERE / f"{name}.stan").read_text(encoding="utf-8").strip():
        problems.append("empty Stan program")
    summary = {row["parameter"]: row for row in ref["posterior_summary"]}
    for par, truth in RECOVER[name].items():
        row = summary[par]
        lo, hi = row["Q2.5"], row["Q97.5"]
        pad = (hi - lo) / 2
        if not lo - pad <= truth <= hi + pad:
            problems.append(f"{par}: truth {truth} outside [{lo:.3f}, {hi:.3f}] (+/- {pad:.3f})")
    return problems


def check_data_facts() -> list[str]:
    problems: list[str] = []
    gp = pd.read_csv(HERE / "gp1d.csv")
    counts = gp["x"].value_counts()
    if len(counts) != 30 or (counts != 4).any() or not np.allclose(gp["f"], np.sin(gp["x"])):
        problems.append("gp1d.csv: expected 30 distinct x each 4 times and f = sin(x)")
    fitted = json.loads((HERE / "gp1d.json").read_text(encoding="utf-8"))["fitted_at_unique_x"]
    est = np.array([r["Estimate"] for r in fitted])
    truth = 2 + np.sin(np.array([r["x"] for r in fitted]))
    if np.corrcoef(est, truth)[0, 1] < 0.95:
        problems.append("gp1d: fitted mean does not follow 2 + sin(x)")

    K = pd.read_csv(HERE / "grcov_K.csv", index_col="g")
    idx = np.arange(20)
    expect = np.exp(-np.abs(idx[:, None] - idx[None, :]) / 4)
    levels = [f"g{i:02d}" for i in range(1, 21)]
    if list(K.index) != levels or list(K.columns) != levels:
        problems.append("grcov_K.csv: row/column names are not g01..g20")
    if not np.allclose(K.to_numpy(), expect, rtol=0, atol=1e-13):
        problems.append("grcov_K.csv: not exp(-|i - j| / 4)")
    if np.linalg.eigvalsh(K.to_numpy()).min() <= 0:
        problems.append("grcov_K.csv: not positive definite")
    grcov = pd.read_csv(HERE / "grcov.csv")
    if sorted(grcov["g"].unique()) != levels or (grcov["g"].value_counts() != 10).any():
        problems.append("grcov.csv: expected 10 rows for each of g01..g20")

    for name in ("mo", "mo_group"):
        x = pd.read_csv(HERE / f"{name}.csv")["x"]
        if sorted(x.unique()) != [0, 1, 2, 3, 4]:
            problems.append(f"{name}.csv: x is not 0..4")
    for name in ("cumulative_logit", "cumulative_probit"):
        y = pd.read_csv(HERE / f"{name}.csv")["y"]
        ref = json.loads((HERE / f"{name}.json").read_text(encoding="utf-8"))
        counts = {str(k): int(v) for k, v in y.value_counts().sort_index().items()}
        if counts != ref["truth"]["counts"]:
            problems.append(f"{name}.csv: outcome counts {counts} != {ref['truth']['counts']}")
    return problems


def main() -> int:
    failures = 0
    for name in MODELS:
        problems = check_model(name)
        failures += bool(problems)
        print(f"{name}: {'ok' if not problems else '; '.join(problems)}")
    problems = check_data_facts()
    failures += bool(problems)
    print(f"data facts: {'ok' if not problems else '; '.join(problems)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
