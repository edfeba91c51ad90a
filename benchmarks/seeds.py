"""Sampler health of one model over several seeds: divergences, min bulk ESS, sampling time.

A single seeded run says little about divergences and ESS near a threshold; this script fits
the same model with seeds 1..N (compiled once, from the cache after the first fit) and prints
one row per seed and a summary. Run from the repository root::

    .venv/bin/python benchmarks/seeds.py                          # ozone, 8 seeds, defaults
    .venv/bin/python benchmarks/seeds.py --nuts '{"target_accept": 0.8}'

``--nuts`` passes nutpie settings (JSON) to ``Model.fit(nuts=...)``, which override
lmmformula's defaults for models with a correlated block (``LKJ_NUTS_DEFAULTS``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import CASES, load_case


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="ozone", choices=sorted(CASES))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--nuts", default="{}", help="nutpie settings as JSON")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import numpy as np

    import lmmformula as lf

    nuts = json.loads(args.nuts)
    m = lf.model(CASES[args.case]["formula"], load_case(args.case))
    load = os.getloadavg()[0]
    print(f"case {args.case}; nuts settings {nuts or 'defaults'}; load at start {load:.2f}")
    print("| seed | divergences | min bulk ESS | max R-hat | sampling s |")
    print("|---|---|---|---|---|")
    rows = []
    for seed in range(1, args.seeds + 1):
        fit = m.fit(
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            random_seed=seed,
            progressbar=False,
            nuts=nuts,
        )
        d = fit.diagnostics()
        rows.append((d.divergences, d.min_ess_bulk, d.max_rhat, fit.timings["sample"]))
        print(
            f"| {seed} | {d.divergences} | {d.min_ess_bulk:.0f} | {d.max_rhat:.3f} "
            f"| {fit.timings['sample']:.2f} |",
            flush=True,
        )
    div, ess, rhat, secs = (np.array(c) for c in zip(*rows, strict=True))
    print()
    print(
        f"seeds {len(rows)}: divergences {int(div.sum())} in all, "
        f"seeds with any {int((div > 0).sum())}; "
        f"min bulk ESS {ess.min():.0f} (median {np.median(ess):.0f}); max R-hat {rhat.max():.3f}; "
        f"sampling {np.median(secs):.2f} s median; load at end {os.getloadavg()[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
