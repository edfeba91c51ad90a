"""InstEval's sampling geometry: which parametrisations let every parameter reach ESS 400.

Hand-written PyMC models of ``y ~ service + (1|s) + (1|d) + (1|dept)`` (not lmmformula's),
sampled by nutpie with 4 chains x (1000 + 1000), seed 1; prints gradient evaluations,
divergences and the bulk ESS of the scales (benchmarks/RESULTS.md, section 8). The data are read
as benchmarks/run.py reads them (``../shared/data/lme4/insteval.csv.gz``).

    .venv/bin/python benchmarks/insteval_geometry.py noncentered   # (1|d) + (1|dept), no students
    .venv/bin/python benchmarks/insteval_geometry.py rotated       # intercept rotated out
    .venv/bin/python benchmarks/insteval_geometry.py centered-dept
    .venv/bin/python benchmarks/insteval_geometry.py centered-both
    .venv/bin/python benchmarks/insteval_geometry.py block-nc      # students and (intercept,
    .venv/bin/python benchmarks/insteval_geometry.py block-centered  # service, dept) integrated

The two ``block`` variants integrate the students out (per-student Sherman-Morrison) and the
16 coefficients gamma = (intercept, service, 14 department effects) with their normal prior
N(m0, S0) by the Woodbury identity: with V the students' block-diagonal covariance and r0 =
y - X m0 - Z_d b_d, log p = log N(r0; 0, V) - 1/2 log|S0| - 1/2 log|M| + 1/2 w' M^-1 w, where
M = S0^-1 + X'V^-1 X and w = X'V^-1 r0.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import arviz as az
import numpy as np
import nutpie
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import load_case


def helmert_rest(u, k: int):
    """Q u[1:], Q the k x (k-1) Helmert columns orthogonal to the ones vector."""
    j = np.arange(1, k)
    c = pt.concatenate([pt.zeros(1), u[1:] / np.sqrt(j * (j + 1.0))])
    rev = pt.cumsum(c[::-1])[::-1]
    return pt.concatenate([rev[1:], pt.zeros(1)]) - np.arange(k) * c


def main(variant: str) -> None:
    df = load_case("insteval")
    y = df["y"].to_numpy(float)
    n = y.size
    s_idx = pd.factorize(df["s"])[0]
    d = pd.factorize(df["d"])[0]
    dept = pd.factorize(df["dept"])[0]
    serv = (df["service"].astype(str) == "1").to_numpy(float)
    n_s, n_d, n_p = int(s_idx.max() + 1), int(d.max() + 1), int(dept.max() + 1)
    with pm.Model() as model:
        td = pm.HalfNormal("td", 1)
        tp = pm.HalfNormal("tp", 1)
        sigma = pm.HalfNormal("sigma", 2)
        if variant.startswith("block"):
            ts = pm.HalfNormal("ts", 1)
            if variant == "block-centered":
                bd = pm.Normal("bd", 0, td, shape=n_d)
            else:
                bd = td * pm.Normal("zd", 0, 1, shape=n_d)
            x = np.column_stack([np.ones(n), serv, np.eye(n_p)[dept]])
            m0 = np.zeros(x.shape[1])
            m0[0] = 3.0
            a = sp.csr_matrix((np.ones(n), (s_idx, np.arange(n))), shape=(n_s, n))
            s_sums = np.asarray(a @ x)
            gram = x.T @ x
            zd = sp.csr_matrix((np.ones(n), (np.arange(n), d)), shape=(n, n_d))
            x_zd = np.asarray((zd.T @ x).T)
            y0 = y - x @ m0
            counts = np.bincount(s_idx, minlength=n_s).astype(float)
            r0 = y0 - bd[d.astype(np.uint16)]
            ar0 = pt.inc_subtensor(pt.zeros(n_s)[s_idx.astype(np.uint16)], r0)
            s2, t2 = pt.square(sigma), pt.square(ts)
            v = s2 + counts * t2
            c = t2 / v
            logdet_v = pt.sum((counts - 1) * pt.log(s2) + pt.log(v))
            quad0 = (pt.sum(pt.square(r0)) - pt.sum(c * pt.square(ar0))) / s2
            xvx = (gram - pt.dot(s_sums.T * c, s_sums)) / s2
            s0 = pt.concatenate([pt.as_tensor([2.5**2, 1.0]), pt.square(tp) * pt.ones(n_p)])
            m = pt.diag(1.0 / s0) + xvx
            w = (x.T @ y0 - pt.dot(x_zd, bd) - pt.dot(s_sums.T, c * ar0)) / s2
            logp = (
                -0.5 * n * np.log(2 * np.pi)
                - 0.5 * logdet_v
                - 0.5 * pt.sum(pt.log(s0))
                - 0.5 * pt.log(pt.linalg.det(m))
                - 0.5 * (quad0 - pt.dot(w, pt.dot(pt.linalg.inv(m), w)))
            )
            pm.Potential("lik", logp)
            names = ["sigma", "ts", "td", "tp", "bd" if variant == "block-centered" else "zd"]
        else:
            b = pm.Normal("b", 0, 1)
            if variant == "rotated":
                ud = pm.Normal("ud", 0, 1, shape=n_d)
                up = pm.Normal("up", 0, 1, shape=n_p)
                shift = td * ud[0] / np.sqrt(n_d) + tp * up[0] / np.sqrt(n_p)
                v_int = pm.Normal("v", 3 + shift, 2.5)
                pm.Deterministic("a", v_int - shift)
                eta = (
                    v_int
                    + b * serv
                    + td * helmert_rest(ud, n_d)[d]
                    + tp * helmert_rest(up, n_p)[dept]
                )
            else:
                a_int = pm.Normal("a", 3, 2.5)
                centered_d = variant == "centered-both"
                centered_p = variant in ("centered-dept", "centered-both")
                bd = (
                    pm.Normal("bd", 0, td, shape=n_d)
                    if centered_d
                    else (td * pm.Normal("zd", 0, 1, shape=n_d))
                )
                bp = (
                    pm.Normal("bp", 0, tp, shape=n_p)
                    if centered_p
                    else (tp * pm.Normal("zp", 0, 1, shape=n_p))
                )
                eta = a_int + b * serv + bd[d] + bp[dept]
            pm.Normal("y", eta, sigma, observed=y)
            names = ["a", "b", "td", "tp", "sigma"]
    compiled = nutpie.compile_pymc_model(model)
    start = time.time()
    idata = nutpie.sample(compiled, chains=4, draws=1000, tune=1000, seed=1, progress_bar=False)
    seconds = time.time() - start
    stats = idata.sample_stats
    ess = az.ess(idata.posterior.to_dataset()[names])
    print(
        f"{variant}: sampling {seconds:.1f} s, gradient evals {int(stats['n_steps'].sum())}, "
        f"divergences {int(stats['diverging'].sum())}, min bulk ESS "
        + ", ".join(f"{k} {float(ess[k].min()):.0f}" for k in names)
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "noncentered")
