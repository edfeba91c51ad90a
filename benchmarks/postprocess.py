"""Time the sampler-health diagnostics after a fit: ArviZ against ``lmmformula._diagnostics``.

Both compute rank-normalised split R-hat and bulk/tail ESS of every stored parameter (what
``Fit.diagnostics`` reports); the script prints both times and the largest relative difference.

    .venv/bin/python benchmarks/postprocess.py                    # synthetic InstEval-sized draws
    .venv/bin/python benchmarks/postprocess.py --idata fit.nc     # a saved fit's posterior

The synthetic draws have InstEval's shape: 4 chains x 1000 draws x 4,120 parameters.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idata", help="a netCDF file with a posterior group")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import arviz as az
    import xarray as xr

    from lmmformula._diagnostics import diagnostics_arrays

    if args.idata:
        post = xr.open_datatree(args.idata)["posterior"].to_dataset().load()
        names = [n for n, da in post.data_vars.items() if "__obs__" not in da.dims]
        post = post[names]
        source = args.idata
    else:
        rng = np.random.default_rng(0)
        draws = rng.normal(size=(4, 1000, 4120)).cumsum(axis=1) * 0.05
        draws += rng.normal(size=draws.shape)
        post = xr.Dataset({"x": (("chain", "draw", "p"), draws)})
        names = ["x"]
        source = "synthetic (4, 1000, 4120)"
    n_params = sum(int(np.prod(post[n].shape[2:])) for n in names)
    load_start = os.getloadavg()
    ours, theirs = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        arrays = {n: post[n].transpose("chain", "draw", ...).values for n in names}
        got = diagnostics_arrays(arrays)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        ref = {
            "rhat": az.rhat(post),
            "ess_bulk": az.ess(post, method="bulk"),
            "ess_tail": az.ess(post, method="tail"),
        }
        theirs.append(time.perf_counter() - start)
    worst = 0.0
    for key, ds in ref.items():
        r = np.concatenate(
            [np.asarray(ds[n].values, dtype=float).ravel() for n in names]
        )  # same (parameter) order as the stacked array
        ok = np.isfinite(r)
        worst = max(worst, float(np.max(np.abs(got[key][ok] - r[ok]) / np.abs(r[ok]))))
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    command = " ".join(["python benchmarks/postprocess.py", *(argv or sys.argv[1:])])
    print(f"Command: `{command}`; {source}, {n_params} parameters")
    print(f"load at start {load_start[0]:.2f}; at end `{uptime}`")
    print(f"vectorised: {', '.join(f'{t:.2f}' for t in ours)} s")
    print(f"ArviZ:      {', '.join(f'{t:.2f}' for t in theirs)} s")
    print(f"largest relative difference: {worst:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
