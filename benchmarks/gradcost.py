"""Cost of one log-density-and-gradient evaluation, the unit of NUTS work.

Calls each compiled model's C callback (the function nutpie calls at every leapfrog step)
through ctypes in a tight loop and reports the best of several repetitions, in microseconds per
call. The ctypes call itself costs about a microsecond; a one-parameter model is timed as the
floor. For InstEval a hand-written numba kernel of the joint log density and gradient (every
effect sampled: one pass over the rows, scatter-adds into the three effect vectors) is timed as
what a row-by-row likelihood costs at best; lmmformula integrates the students out and
evaluates the rest on statistics computed once (``lmmformula._marginal_op``), which does not
touch the rows.

    .venv/bin/python benchmarks/gradcost.py
    .venv/bin/python benchmarks/gradcost.py --cases ozone,sleepstudy
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import CASES, INSTEVAL, load_case


def per_call(compiled, calls: int, repeats: int = 7) -> float:
    fn = compiled.compiled_logp_func.ctypes
    n = compiled.n_dim
    x = np.ascontiguousarray(compiled.initial_point_func(1))
    out = np.zeros(n)
    logp = np.zeros(1)

    def ptr(a):
        return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))

    px, pout, plogp = ptr(x), ptr(out), ptr(logp)
    user = compiled.user_data.ctypes.data
    fn(n, px, pout, plogp, user)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn(n, px, pout, plogp, user)
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def insteval_kernel_us(df, repeats: int = 7) -> float:
    """A hand-written numba log density and gradient of ``y ~ service + (1|s) + (1|d) +
    (1|dept)`` (likelihood part only, the part that touches the rows)."""
    import numba

    @numba.njit(cache=False, fastmath=True)
    def kernel(a, b, us, ud, ue, sigma, y, x, s, d, e, gs, gd, ge):
        gs[:] = 0.0
        gd[:] = 0.0
        ge[:] = 0.0
        inv = 1.0 / (sigma * sigma)
        ss = 0.0
        ga = 0.0
        gb = 0.0
        for i in range(y.size):
            r = y[i] - (a + b * x[i] + us[s[i]] + ud[d[i]] + ue[e[i]])
            ss += r * r
            w = r * inv
            ga += w
            gb += w * x[i]
            gs[s[i]] += w
            gd[d[i]] += w
            ge[e[i]] += w
        return -y.size * np.log(sigma) - 0.5 * ss * inv, ga, gb

    codes = {c: np.unique(df[c].to_numpy(), return_inverse=True)[1] for c in ("s", "d", "dept")}
    y = df["y"].to_numpy(float)
    x = df["service"].to_numpy(float)
    rng = np.random.default_rng(0)
    us = rng.normal(size=codes["s"].max() + 1)
    ud = rng.normal(size=codes["d"].max() + 1)
    ue = rng.normal(size=codes["dept"].max() + 1)
    gs, gd, ge = np.zeros_like(us), np.zeros_like(ud), np.zeros_like(ue)
    args = (3.0, 0.1, us, ud, ue, 1.2, y, x, codes["s"], codes["d"], codes["dept"], gs, gd, ge)
    kernel(*args)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(50):
            kernel(*args)
        best = min(best, (time.perf_counter() - start) / 50)
    return best * 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import bambi as bmb
    import pymc as pm

    import lmmformula as lf
    from lmmformula import _bambi, _nutpie

    load_start = os.getloadavg()
    rows = []
    with pm.Model() as floor:
        pm.Normal("a")
    rows.append(
        (
            "-",
            "one-parameter model (call overhead)",
            1,
            per_call(_nutpie.compile_model(floor)[0], 20000),
        )
    )
    for case in [c for c in args.cases.split(",") if c]:
        if case == "insteval" and not INSTEVAL.exists():
            print(f"insteval skipped: {INSTEVAL} is absent")
            continue
        df = load_case(case)
        calls = 300 if case == "insteval" else 5000
        formula = CASES[case]["formula"]
        variants = [("lmmformula (auto)", {})]
        if case != "insteval":
            variants.append(("lmmformula full data", {"suffstats": False}))
        else:
            variants.append(("lmmformula marginalize=False", {"marginalize": False}))
        for label, kwargs in variants:
            m = lf.model(formula, df, **kwargs)
            m.build()
            compiled, _ = _nutpie.compile_model(
                m.pymc_model, var_names=_bambi.sampled_var_names(m.bambi)
            )
            rows.append(
                (case, f"{label}: {m.likelihood}", compiled.n_dim, per_call(compiled, calls))
            )
        b = bmb.Model(formula, df)
        b.build()
        compiled, _ = _nutpie.compile_model(b.backend.model)
        rows.append((case, "plain Bambi (uncorrelated)", compiled.n_dim, per_call(compiled, calls)))
        if case == "insteval":
            rows.append(
                (case, "hand-written numba kernel (likelihood only)", "-", insteval_kernel_us(df))
            )
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    command = " ".join(["python benchmarks/gradcost.py", *(argv or sys.argv[1:])])
    print(f"Command: `{command}`; load average at start {load_start[0]:.2f}; at end: `{uptime}`")
    print()
    print("| case | model | parameters | microseconds per logp+gradient call |")
    print("|---|---|---|---|")
    for case, label, ndim, us in rows:
        print(f"| {case} | {label} | {ndim} | {us:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
