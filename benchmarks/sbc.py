"""Simulation-based calibration of a 2x2 correlated block (Talts et al. 2018).

The model is lmmformula's ``y ~ x + (x|g)``: a correlated intercept/slope block with an LKJ prior,
non-centered, sampled by nutpie on the sufficient-statistics likelihood. One compiled model serves
every refit: the response enters the graph only through shared data (the pseudo-observations and
the residual sum of squares), which nutpie's ``with_data`` swaps without compiling again.

For each of ``--sims`` replications: draw the parameters and a data set from the prior (Bambi's
``prior_predictive``, i.e. the full-data generative model), refit, thin the posterior to
``--ranks`` draws and record the rank of the true value among them. If the model, the
likelihood and the sampler are right, every parameter's rank is uniform on 0..ranks; the script
bins the ranks and runs a chi-square test of uniformity per parameter.

    .venv/bin/python benchmarks/sbc.py                       # 100 refits, about a minute
    .venv/bin/python benchmarks/sbc.py --sims 200 --bins 10
    .venv/bin/python benchmarks/sbc.py --negative-control 1.3   # must fail
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from dataclasses import replace

import numpy as np
import pandas as pd

PARAMETERS = {
    # label: (posterior/prior variable, index into its non-sample dims)
    "Intercept": ("Intercept", ()),
    "x": ("x", ()),
    "sigma": ("sigma", ()),
    "sd(Intercept)": ("1|g_sigma", ()),
    "sd(x)": ("x|g_sigma", ()),
    "cor(Intercept,x)": ("g_corr", (0, 1)),
    "Intercept|g[0]": ("1|g", (0,)),
    "x|g[0]": ("x|g", (0,)),
}


def design(groups: int, per_group: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = np.tile(np.linspace(-1.0, 1.0, per_group), groups)
    x = x - x.mean()  # centred: Bambi's intercept centering is then the identity
    return pd.DataFrame(
        {
            "y": rng.normal(size=x.size),
            "x": x,
            "g": np.repeat([f"g{j:02d}" for j in range(groups)], per_group),
        }
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sims", type=int, default=100)
    parser.add_argument("--groups", type=int, default=12)
    parser.add_argument("--per-group", type=int, default=8)
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--tune", type=int, default=300)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--ranks", type=int, default=99, help="thinned draws per refit")
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument(
        "--negative-control",
        type=float,
        default=None,
        metavar="FACTOR",
        help="refit on the simulated response times FACTOR (a deliberately wrong model): the "
        "test must then report miscalibration",
    )
    args = parser.parse_args(argv)
    if (args.ranks + 1) % args.bins:
        parser.error("--bins must divide --ranks + 1")

    warnings.simplefilter("ignore")
    import bambi as bmb
    import nutpie
    from scipy import stats

    import lmmformula as lf
    from lmmformula import _bambi

    start = time.perf_counter()
    load_start = os.getloadavg()
    df = design(args.groups, args.per_group, args.seed)
    # Fixed, data-independent priors (Bambi's defaults would scale with the first data set).
    priors = {
        "Intercept": bmb.Prior("Normal", mu=0, sigma=1),
        "x": bmb.Prior("Normal", mu=0, sigma=1),
        "sigma": bmb.Prior("HalfNormal", sigma=1),
        "1|g": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=1)),
        "x|g": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=1)),
    }
    m = lf.model("y ~ x + (x|g)", df, priors=priors, lkj_eta=2.0, suffstats=True)
    m.bambi.set_plan(replace(m.bambi.plan, suffstats_shared=True))
    m.build()
    prior = m.bambi.prior_predictive(draws=args.sims, random_seed=args.seed)
    prior_post = prior["prior"].to_dataset()
    prior_y = prior["prior_predictive"].to_dataset()["y"].values[0]  # (sims, n)

    var_names = _bambi.sampled_var_names(m.bambi)
    compiled = nutpie.compile_pymc_model(m.pymc_model, var_names=var_names)
    compiled_at = time.perf_counter()

    ranks = {label: [] for label in PARAMETERS}
    divergences = 0
    for i in range(args.sims):
        y = prior_y[i] if args.negative_control is None else prior_y[i] * args.negative_control
        updates = _bambi.suffstats_data(m.bambi, y)
        trace = nutpie.sample(
            compiled.with_data(**updates),
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            seed=args.seed + 1 + i,
            progress_bar=False,
            save_warmup=False,
        )
        divergences += int(trace.sample_stats["diverging"].sum())
        post = trace.posterior
        for label, (name, index) in PARAMETERS.items():
            draws = post[name].values  # (chain, draw, ...)
            draws = draws.reshape(-1, *draws.shape[2:])
            draws = draws[(slice(None), *index)] if index else draws
            keep = np.linspace(0, draws.shape[0] - 1, args.ranks).round().astype(int)
            truth = prior_post[name].values[0, i]
            truth = truth[index] if index else truth
            ranks[label].append(int(np.sum(draws[keep] < truth)))
    done = time.perf_counter()

    command = " ".join(["python benchmarks/sbc.py", *(argv if argv is not None else sys.argv[1:])])
    expected = args.sims / args.bins
    width = (args.ranks + 1) // args.bins
    rows = []
    for label, values in ranks.items():
        counts = np.bincount(np.asarray(values) // width, minlength=args.bins)
        chi2, p = stats.chisquare(counts)
        rows.append((label, counts, chi2, p))
    lines = [
        "# Simulation-based calibration: y ~ x + (x|g), LKJ(2), non-centered, suff. statistics",
        "",
        f"Command: `{command}` (from the repository root)",
        "",
        f"- {args.sims} prior draws and refits; {args.groups} groups x {args.per_group} rows; "
        f"{args.chains} chains x ({args.tune} tune + {args.draws} draws) per refit, thinned to "
        f"{args.ranks} draws; ranks in {args.bins} bins (expected {expected:g} per bin)",
        f"- one compiled model for every refit (nutpie `with_data`); {divergences} divergent "
        f"transitions in all refits",
        *(
            [
                f"- **negative control**: every refit sees the simulated response times "
                f"{args.negative_control:g}, so the ranks must not be uniform"
            ]
            if args.negative_control is not None
            else []
        ),
        f"- time: {compiled_at - start:.1f} s to build, draw from the prior and compile, "
        f"{done - compiled_at:.1f} s for the refits; load average "
        f"{load_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end",
        "",
        "| parameter | rank counts per bin | chi-square | df | p-value |",
        "|---|---|---|---|---|",
    ]
    for label, counts, chi2, p in rows:
        cell = label.replace("|", "\\|")  # a bar inside a Markdown table cell
        lines.append(
            f"| {cell} | {' '.join(map(str, counts))} | {chi2:.1f} | {args.bins - 1} | {p:.3f} |"
        )
    pmin = min(r[3] for r in rows)
    calibrated = pmin * len(rows) > 0.05
    verdict = "no evidence of miscalibration" if calibrated else "miscalibration detected"
    lines += [
        "",
        f"Smallest p-value {pmin:.3f}; with a Bonferroni correction over {len(rows)} parameters "
        f"({pmin * len(rows):.3f} vs 0.05): {verdict}.",
    ]
    text = "\n".join(lines)
    print(text)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"\nuptime at end: {uptime}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
