"""Benchmark: lmmformula against plain Bambi and a hand-written PyMC model, all sampled by nutpie.

Run from the repository root (``make bench`` does)::

    .venv/bin/python benchmarks/run.py                      # every case, every implementation
    .venv/bin/python benchmarks/run.py --cases ozone --impls lmmformula,bambi

Cases
    ozone       ``log_ozone ~ TEMP + (TEMP|station)`` on the shipped Beijing table (16,966 rows)
    sleepstudy  ``Reaction ~ Days + (Days|Subject)`` (180 rows)
    insteval    ``y ~ service + (1|s) + (1|d) + (1|dept)`` (73,421 rows, crossed); read from
                ``../shared/data/lme4/insteval.csv.gz`` relative to the repository and skipped
                with a message when that file is absent

Implementations
    lmmformula       ``lf.model(formula, data).fit()`` (correlated LKJ block, non-centered;
                     sufficient statistics where valid, the default)
    lmmformula-full  the same with ``suffstats=False`` (full-data likelihood), to separate the
                     two speed-ups; skipped where lmmformula already uses the full data
    lmmformula-joint the same with ``marginalize=False`` (every group-level effect sampled);
                     skipped where lmmformula integrates nothing out
    bambi            plain ``bambi.Model(formula, data)`` (drops the correlation), sampled the way
                     ``bambi.Model.fit(inference_method="nutpie")`` samples: Bambi's graph,
                     ``nutpie.compile_pymc_model``, ``nutpie.sample``, Bambi's result cleaning
    pymc             the lecture's hand-written model: ``pm.LKJCholeskyCov`` non-centered,
                     written directly in PyMC, ``nutpie.compile_pymc_model`` + ``nutpie.sample``
    brms             ``brm(formula, data)`` (brms' default priors, Stan's NUTS, the same chains,
                     draws and seed) in R through ``Rscript`` when R with brms is installed (said
                     in the output when not); compiling the Stan model (about a minute) and
                     sampling timed apart. Not in the default list: ``--impls ...,brms``
    lme4             ``lmer(formula, data)`` (REML) in R through ``Rscript``, when R with lme4 is
                     installed (said in the output when not): two fits in one R process, each
                     timed inside R; its variance components are set against lmmformula's

Every measurement runs in its own Python process (one process tree, one run): the import is
timed apart and excluded from the end-to-end figure, which is build + compile + sample. Before
each measured process a compile-only process for the same case and implementation fills the
on-disk compile caches (PyTensor's numba cache, and lmmformula's cached nutpie callbacks), so
the table shows the warm-cache cost of re-running an analysis; ``--cold`` measures with an empty
PyTensor compile directory, ``NUMBA_CACHE_DIR`` and ``HOME`` for every process instead (a first
run on a fresh machine: it includes compiling PyTensor's C helpers and lmmformula's kernel).
Wall and CPU seconds are both recorded; the machine load (``os.getloadavg``) is recorded before
and after every process, because other work on the machine inflates wall times.

``--fresh-data`` drops a few rows from each measured process's data after the warm-up: the cost
of the first fit of a model on new data on a machine that has compiled the model before.
lmmformula's compiled code does not depend on the data's values, so it comes from the cache;
Bambi's and the hand-written model's hold the data as constants and are compiled again.

Output: a table on stdout and Markdown in ``--out`` (default ``benchmarks/_out/results.md``)
with the exact command, versions and load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_T0 = time.perf_counter()
_C0 = time.process_time()

ROOT = Path(__file__).resolve().parent.parent
INSTEVAL = ROOT.parent / "shared" / "data" / "lme4" / "insteval.csv.gz"

CASES = {
    "ozone": {
        "formula": "log_ozone ~ TEMP + (TEMP|station)",
        "y": "log_ozone",
        "x": "TEMP",
        "factors": {"station": True},  # factor -> has a varying slope (correlated with intercept)
    },
    "sleepstudy": {
        "formula": "Reaction ~ Days + (Days|Subject)",
        "y": "Reaction",
        "x": "Days",
        "factors": {"Subject": True},
    },
    "insteval": {
        "formula": "y ~ service + (1|s) + (1|d) + (1|dept)",
        "y": "y",
        "x": "service",
        "factors": {"s": False, "d": False, "dept": False},
    },
}
IMPLS = ("lmmformula", "lmmformula-full", "lmmformula-joint", "bambi", "pymc", "lme4", "brms")
DEFAULT_IMPLS = IMPLS[:-1]  # brms compiles a Stan model (about a minute): asked for by name
R_FACTORS = {"ozone": ["station"], "sleepstudy": ["Subject"], "insteval": ["s", "d", "dept"]}
LME4_SCRIPT = r"""
args <- commandArgs(TRUE)
suppressMessages(library(lme4))
df <- read.csv(args[1])
for (f in strsplit(args[3], ",")[[1]]) df[[f]] <- factor(df[[f]])
for (i in seq_len(as.integer(args[4]))) {
  t0 <- proc.time()
  m <- lmer(as.formula(args[2]), data = df)
  t <- proc.time() - t0
  cat(sprintf("time\t%.4f\t%.4f\n", t[["elapsed"]], t[["user.self"]] + t[["sys.self"]]))
}
vc <- as.data.frame(VarCorr(m))
for (i in seq_len(nrow(vc))) {
  cat(sprintf("vc\t%s\t%s\t%s\t%.10g\n", vc$grp[i], vc$var1[i], vc$var2[i], vc$sdcor[i]))
}
cat(sprintf("fixef\t%s\t%.10g\n", names(fixef(m)), fixef(m)), sep = "")
"""
BRMS_SCRIPT = r"""
args <- commandArgs(TRUE)
suppressMessages(library(brms))
# Debian's r-cran-bh ships no headers: point rstan at the system Boost (as
# tests/reference/brms/make_brms_refs.R does)
if (!nzchar(rstan::rstan_options("boost_lib")) && dir.exists("/usr/include/boost")) {
  boost_dir <- file.path(tempdir(), "boost_include")
  dir.create(boost_dir, showWarnings = FALSE)
  file.symlink("/usr/include/boost", file.path(boost_dir, "boost"))
  rstan::rstan_options(boost_lib = boost_dir)
}
df <- read.csv(args[1])
for (f in strsplit(args[3], ",")[[1]]) df[[f]] <- factor(df[[f]])
n_chains <- as.integer(args[4]); n_iter <- as.integer(args[5]); n_warm <- as.integer(args[6])
t0 <- proc.time()
m0 <- brm(as.formula(args[2]), data = df, chains = 0, silent = 2, refresh = 0)
t1 <- proc.time()
fit <- update(m0, recompile = FALSE, chains = n_chains, cores = min(n_chains, 2),
              iter = n_iter, warmup = n_warm, seed = as.integer(args[7]), silent = 2,
              refresh = 0)
t2 <- proc.time()
cat(sprintf("compile\t%.4f\n", (t1 - t0)[["elapsed"]]))
cat(sprintf("sample\t%.4f\n", (t2 - t1)[["elapsed"]]))
np <- nuts_params(fit)
cat(sprintf("divergences\t%d\n", sum(np$Value[np$Parameter == "divergent__"])))
s <- posterior::summarise_draws(posterior::as_draws_array(fit), "rhat", "ess_bulk")
s <- s[s$variable != "lp__" & s$variable != "lprior", ]
cat(sprintf("min_ess_bulk\t%.1f\n", min(s$ess_bulk, na.rm = TRUE)))
cat(sprintf("max_rhat\t%.4f\n", max(s$rhat, na.rm = TRUE)))
"""


# -- data -------------------------------------------------------------------------------------
def load_case(case: str):
    import pandas as pd

    import lmmformula as lf

    if case == "ozone":
        return lf.load_dataset("beijing_ozone")
    if case == "sleepstudy":
        return lf.load_dataset("sleepstudy")
    if case == "insteval":
        df = pd.read_csv(INSTEVAL)
        for col in ("s", "d", "dept"):
            df[col] = df[col].astype(str)
        return df
    raise ValueError(case)


# -- the hand-written PyMC model ---------------------------------------------------------------
def hand_pymc_model(case: str, df):
    """The lecture's model written directly in PyMC: non-centered LKJCholeskyCov blocks."""
    import numpy as np
    import pymc as pm
    import pytensor.tensor as pt

    spec = CASES[case]
    y = df[spec["y"]].to_numpy(dtype=float)
    x = df[spec["x"]].to_numpy(dtype=float)
    coords = {}
    idx = {}
    for factor in spec["factors"]:
        codes, levels = pd_factorize(df[factor])
        idx[factor] = codes
        coords[factor] = levels
    if case == "ozone":  # the lecture's priors
        prior = {"a": (0.0, 2.0), "b": (0.0, 0.1), "sd": 1.0, "sigma": 1.0}
    else:  # weakly informative, on the data's scale
        sy, sx = float(np.std(y)), float(np.std(x)) or 1.0
        prior = {
            "a": (float(np.mean(y)), 2.5 * sy),
            "b": (0.0, 2.5 * sy / sx),
            "sd": sy,
            "sigma": sy,
        }
    coords["effect"] = ["Intercept", spec["x"]]
    with pm.Model(coords=coords) as model:
        a = pm.Normal("Intercept", *prior["a"])
        b = pm.Normal(spec["x"], *prior["b"])
        sigma = pm.HalfCauchy("sigma", prior["sigma"])
        mu = a + b * x
        for factor, slope in spec["factors"].items():
            if slope:
                chol, corr, sds = pm.LKJCholeskyCov(
                    f"{factor}_chol",
                    n=2,
                    eta=2.0,
                    sd_dist=pm.HalfCauchy.dist(prior["sd"], shape=2),
                    compute_corr=True,
                    store_in_trace=False,
                )
                pm.Deterministic(f"{factor}_corr", corr[0, 1])
                pm.Deterministic(f"{factor}_sds", sds, dims="effect")
                z = pm.Normal(f"{factor}_offset", 0.0, 1.0, dims=(factor, "effect"))
                ab = pm.Deterministic(
                    f"{factor}_effects", pt.dot(z, chol.T), dims=(factor, "effect")
                )
                mu = mu + ab[idx[factor], 0] + ab[idx[factor], 1] * x
            else:
                sd = pm.HalfCauchy(f"{factor}_sd", prior["sd"])
                z = pm.Normal(f"{factor}_offset", 0.0, 1.0, dims=factor)
                u = pm.Deterministic(f"{factor}_effects", z * sd, dims=factor)
                mu = mu + u[idx[factor]]
        pm.Normal("y", mu, sigma, observed=y)
    return model


def pd_factorize(series):
    import pandas as pd

    codes, levels = pd.factorize(series, sort=True)
    return codes, [str(v) for v in levels]


# -- one measurement (worker process) ----------------------------------------------------------
def _interesting(name: str) -> bool:
    """Parameters that enter the ESS minimum: not the internal offsets, Cholesky factors or
    transformed values, not per-observation quantities."""
    return not (
        name.endswith("__") or name.endswith("_offset") or name.endswith("_chol") or name == "mu"
    )


def _diagnostics(idata) -> dict:
    import warnings

    import arviz as az
    import numpy as np

    post = idata["posterior"].to_dataset()
    names = [n for n in post.data_vars if _interesting(n) and "__obs__" not in post[n].dims]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess = az.ess(post[names], method="bulk")
        rhat = az.rhat(post[names])
    values = np.concatenate([np.ravel(ess[n].values) for n in names])
    rhats = np.concatenate([np.ravel(rhat[n].values) for n in names])
    stats = idata["sample_stats"].to_dataset()
    return {
        "divergences": int(stats["diverging"].sum()),
        "min_ess_bulk": float(np.nanmin(values)),
        "max_rhat": float(np.nanmax(rhats)),
        "grad_evals": int(stats["n_steps"].sum()) if "n_steps" in stats else None,
        "ess_parameters": names,
    }


def worker(args) -> dict:
    import warnings

    warnings.simplefilter("ignore")
    imported = {}
    t, c = time.perf_counter(), time.process_time()
    import bambi as bmb
    import nutpie
    import pymc as pm

    import lmmformula as lf
    from lmmformula import _bambi, _nutpie

    imported["import"] = (time.perf_counter() - _T0, time.process_time() - _C0)
    t, c = time.perf_counter(), time.process_time()
    df = load_case(args.case)
    if args.drop_rows:
        df = df.iloc[: len(df) - args.drop_rows].reset_index(drop=True)
    data_s = (time.perf_counter() - t, time.process_time() - c)
    spec = CASES[args.case]
    out = {
        "case": args.case,
        "impl": args.impl,
        "n": len(df),
        "dropped_rows": args.drop_rows,
        "load_start": os.getloadavg(),
        "data": data_s,
        "import": imported["import"],
        "compile_only": args.compile_only,
    }
    sample_kwargs = {"draws": args.draws, "tune": args.tune, "chains": args.chains}

    def clock():
        return time.perf_counter(), time.process_time()

    def since(t0):
        t1 = clock()
        return (t1[0] - t0[0], t1[1] - t0[1])

    if args.impl.startswith("lmmformula"):
        suffstats = False if args.impl == "lmmformula-full" else "auto"
        marginalize = False if args.impl == "lmmformula-joint" else "auto"
        t0 = clock()
        m = lf.model(spec["formula"], df, suffstats=suffstats, marginalize=marginalize)
        m.build()
        out["build"] = since(t0)
        out["likelihood"] = m.likelihood
        if args.compile_only:
            t0 = clock()
            _nutpie.compile_model(m.pymc_model, var_names=_bambi.sampled_var_names(m.bambi))
            out["compile"] = since(t0)
        else:
            t0 = clock()
            fit = m.fit(random_seed=args.seed, progressbar=False, **sample_kwargs)
            total = since(t0)
            out["compile"] = (fit.timings["compile"], None)
            out["sample"] = (fit.timings["sample"], None)
            out["post"] = (total[0] - fit.timings["compile"] - fit.timings["sample"], None)
            out["fit_cpu"] = total[1]
            t0 = clock()
            fit.diagnostics()  # already computed inside fit: shows it is cached
            out["diagnostics_again"] = since(t0)
            out.update(_diagnostics(fit.idata))
            out["varcorr"] = [
                (row.grp, row.var1, row.var2, float(row.estimate))
                for row in fit.varcorr().itertuples()
            ]
    elif args.impl == "bambi":
        from pymc.backends.arviz import patch_nutpie_idata

        t0 = clock()
        model = bmb.Model(spec["formula"], df)
        model.build()
        out["build"] = since(t0)
        out["likelihood"] = "full data"
        backend = model.backend
        var_names = _bambi_var_names(model)
        t0 = clock()
        compiled = nutpie.compile_pymc_model(backend.model, var_names=var_names)
        out["compile"] = since(t0)
        if not args.compile_only:
            t0 = clock()
            idata = nutpie.sample(
                compiled, seed=args.seed, progress_bar=False, save_warmup=False, **sample_kwargs
            )
            out["sample"] = since(t0)
            t0 = clock()
            patch_nutpie_idata(idata, backend.model, sampling_time=out["sample"][0])
            idata = backend._clean_results(idata, True, False)
            out["post"] = since(t0)
            out.update(_diagnostics(idata))
    elif args.impl == "pymc":
        t0 = clock()
        model = hand_pymc_model(args.case, df)
        out["build"] = since(t0)
        out["likelihood"] = "full data"
        names = [
            v.name
            for v in model.unobserved_value_vars
            if _interesting(v.name) or v.name.endswith("_offset")
        ]
        t0 = clock()
        compiled = nutpie.compile_pymc_model(model, var_names=names)
        out["compile"] = since(t0)
        if not args.compile_only:
            t0 = clock()
            idata = nutpie.sample(
                compiled, seed=args.seed, progress_bar=False, save_warmup=False, **sample_kwargs
            )
            out["sample"] = since(t0)
            out["post"] = (0.0, 0.0)
            out.update(_diagnostics(idata))
    else:
        raise ValueError(args.impl)
    del pm
    out["load_end"] = os.getloadavg()
    return out


def _bambi_var_names(model) -> list[str]:
    """What ``bambi``'s ``PyMCModel._run_mcmc`` asks ``pm.sample`` to store."""
    from pymc.util import get_default_varnames

    pm_model = model.backend.model
    names = [
        v.name
        for v in get_default_varnames(pm_model.unobserved_value_vars, include_transformed=False)
    ]
    for name, variable in pm_model.named_vars.items():
        if name in model.family.likelihood.params and variable in pm_model.deterministics:
            if name in names:
                names.remove(name)
    return names


# -- lme4 through Rscript ----------------------------------------------------------------------
def r_package_missing(package: str) -> str | None:
    """Why ``package`` cannot be timed here (``None`` when ``Rscript`` with it is present)."""
    import shutil

    if shutil.which("Rscript") is None:
        return "Rscript is not on the PATH"
    proc = subprocess.run(
        ["Rscript", "-e", f"suppressMessages(library({package}))"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        return (
            f"R is present but the {package} package is not "
            f"(apt-get install r-cran-{package.lower()})"
        )
    return None


def case_csv(case: str, tmp: str) -> str:
    """A CSV file of the case's data for R (InstEval's own file; the others written to ``tmp``)."""
    if case == "insteval":
        return str(INSTEVAL)
    path = str(Path(tmp) / f"{case}.csv")
    load_case(case).to_csv(path, index=False)
    return path


def _run_r(script: str, case: str, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    """``Rscript -e script <case CSV> <formula> <factors> *args``, and its wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        path = case_csv(case, tmp)
        cmd = ["Rscript", "-e", script, path, CASES[case]["formula"], ",".join(R_FACTORS[case])]
        start = time.perf_counter()
        proc = subprocess.run([*cmd, *args], capture_output=True, text=True)
        return proc, time.perf_counter() - start


def run_lme4(case: str, repeats: int = 2) -> dict:
    """Time ``lmer`` on the case's data in R (REML, lme4's default), ``repeats`` fits in one R
    process; the data are written to CSV first (reading excluded from the time)."""
    out: dict = {"case": case, "impl": "lme4", "load_start": os.getloadavg()}
    proc, out["process"] = _run_r(LME4_SCRIPT, case, str(repeats))
    if proc.returncode != 0:
        out["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return out
    out["fits"], out["varcorr"], out["fixef"] = [], [], {}
    for line in proc.stdout.splitlines():
        parts = line.split("\t")
        if parts[0] == "time":
            out["fits"].append((float(parts[1]), float(parts[2])))
        elif parts[0] == "vc":
            var1 = None if parts[2] == "NA" else parts[2]
            var2 = None if parts[3] == "NA" else parts[3]
            out["varcorr"].append((parts[1], var1, var2, float(parts[4])))
        elif parts[0] == "fixef":
            out["fixef"][parts[1]] = float(parts[2])
    out["load_end"] = os.getloadavg()
    return out


def run_brms(case: str, args) -> dict:
    """Time ``brm`` on the case's data in R (brms' default priors, Stan's NUTS): compiling the
    Stan model and sampling apart, both timed inside R (reading the data excluded), with the
    benchmark's chains, draws and seed; divergences, min bulk ESS and max R-hat from
    ``posterior::summarise_draws`` over every parameter but ``lp__``/``lprior``."""
    out: dict = {"case": case, "impl": "brms", "load_start": os.getloadavg()}
    proc, _ = _run_r(
        BRMS_SCRIPT,
        case,
        *map(str, (args.chains, args.tune + args.draws, args.tune, args.seed)),
    )
    out["load_end"] = os.getloadavg()
    if proc.returncode != 0:
        out["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return out
    for line in proc.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[0] in (
            "compile",
            "sample",
            "divergences",
            "min_ess_bulk",
            "max_rhat",
        ):
            out[parts[0]] = float(parts[1])
    return out


def brms_table(results: list[dict], brms: list[dict]) -> list[str]:
    """brms' compile and sampling times against lmmformula's, in the same run."""
    ours = {r["case"]: r for r in results if r.get("impl") == "lmmformula" and "error" not in r}
    lines = [
        "| case | brms compile s | brms sample s | brms total s | divergences | min bulk ESS "
        "| max R-hat | lmmformula end to end s | brms / lmmformula | load 1-min (start-end) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in brms:
        if "error" in r:
            lines.append(f"| {r['case']} | error: {r['error']} | | | | | | | | |")
            continue
        total = r["compile"] + r["sample"]
        mine = ours.get(r["case"])
        e2e = mine["build"][0] + mine["compile"][0] + mine["sample"][0] if mine else None
        lines.append(
            f"| {r['case']} | {r['compile']:.1f} | {r['sample']:.1f} | {total:.1f} | "
            f"{r['divergences']:.0f} | {r['min_ess_bulk']:.0f} | {r['max_rhat']:.3f} | "
            f"{_fmt(e2e)} | "
            + (f"{total / e2e:.1f}x" if e2e else "-")
            + f" | {r['load_start'][0]:.2f}-{r['load_end'][0]:.2f} |"
        )
    return lines


def lme4_table(results: list[dict], lme4: list[dict]) -> list[str]:
    """lme4's fit times against lmmformula's end-to-end time, and the variance components
    (lme4's REML sd estimates against lmmformula's posterior means)."""
    ours = {r["case"]: r for r in results if r.get("impl") == "lmmformula" and "error" not in r}
    lines = [
        "| case | lme4 lmer s (each fit, wall) | lmmformula end to end s | ratio (lmmformula / "
        "lme4, first fit) | load 1-min (start-end) |",
        "|---|---|---|---|---|",
    ]
    vc_lines = [
        "| case | group | term | lme4 sd (REML) | lmmformula posterior mean | difference |",
        "|---|---|---|---|---|---|",
    ]
    for r in lme4:
        if "error" in r:
            lines.append(f"| {r['case']} | error: {r['error']} | | | |")
            continue
        mine = ours.get(r["case"])
        fits = ", ".join(f"{w:.2f}" for w, _ in r["fits"])
        e2e = None
        if mine is not None:
            e2e = mine["build"][0] + mine["compile"][0] + mine["sample"][0]
        lines.append(
            f"| {r['case']} | {fits} | {_fmt(e2e)} | "
            + (f"{e2e / r['fits'][0][0]:.2f}x" if e2e else "-")
            + f" | {r['load_start'][0]:.2f}-{r['load_end'][0]:.2f} |"
        )
        theirs_vc = {(g, v1, v2): v for g, v1, v2, v in r["varcorr"]}
        for g, v1, v2, est in (mine or {}).get("varcorr", []):
            key = (g, v1 if v1 != "Intercept" else "(Intercept)", v2)
            if g == "Residual":
                key = ("Residual", None, None)
            if v2 is not None:
                key = (g, "(Intercept)" if v1 == "Intercept" else v1, v2)
            ref = theirs_vc.get(key)
            diff = f"{100 * (est - ref) / abs(ref):+.1f}%" if ref else "-"
            vc_lines.append(
                f"| {r['case']} | {g} | {v1 or ''}{',' + v2 if v2 else ''} | "
                f"{_fmt(ref, 4)} | {est:.4f} | {diff} |"
            )
    return [
        *lines,
        "",
        "Variance components (standard deviations and correlations):",
        "",
        *vc_lines,
    ]


# -- the driver --------------------------------------------------------------------------------
def run_worker(args, case: str, impl: str, *, compile_only: bool, env: dict) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--case",
        case,
        "--impl",
        impl,
        "--draws",
        str(args.draws),
        "--tune",
        str(args.tune),
        "--chains",
        str(args.chains),
        "--seed",
        str(args.seed),
    ]
    if compile_only:
        cmd.append("--compile-only")
    elif args.fresh_data:
        # new data for the measured process: its compiled graph is not in any cache yet
        cmd += ["--drop-rows", str(1 + int(time.time() * 1000) % 97)]
    with tempfile.NamedTemporaryFile("r", suffix=".json") as fh:
        cmd += ["--json", fh.name]
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            return {
                "case": case,
                "impl": impl,
                "error": (proc.stderr.strip().splitlines() or ["?"])[-1],
                "process": time.perf_counter() - start,
            }
        result = json.loads(Path(fh.name).read_text())
    result["process"] = time.perf_counter() - start
    return result


def _fmt(v, digits=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(results: list[dict]) -> list[str]:
    head = (
        "| case | implementation | likelihood | build s | compile s | sample s | end to end s "
        "| divergences | min bulk ESS | ESS/s (sampling) | ESS/s (end to end) | max R-hat "
        "| gradient evals | load 1-min (start-end) |"
    )
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['case']} | {r['impl']} | error: {r['error']} |" + " |" * 11)
            continue
        build, comp, samp = r["build"][0], r["compile"][0], r["sample"][0]
        e2e = build + comp + samp
        ess = r["min_ess_bulk"]
        lines.append(
            "| "
            + " | ".join(
                [
                    r["case"],
                    r["impl"],
                    r.get("likelihood", "-"),
                    _fmt(build),
                    _fmt(comp),
                    _fmt(samp),
                    _fmt(e2e),
                    str(r["divergences"]),
                    f"{ess:.0f}",
                    f"{ess / samp:.0f}",
                    f"{ess / e2e:.0f}",
                    f"{r['max_rhat']:.3f}",
                    str(r["grad_evals"]),
                    f"{r['load_start'][0]:.2f}-{r['load_end'][0]:.2f}",
                ]
            )
            + " |"
        )
    return lines


def ratios(results: list[dict]) -> list[str]:
    by = {(r["case"], r["impl"]): r for r in results if "error" not in r}
    lines = [
        "| case | alternative | end-to-end speed-up (alternative / lmmformula) "
        "| sampling speed-up | ESS/s speed-up (sampling) |",
        "|---|---|---|---|---|",
    ]
    for case in CASES:
        ours = by.get((case, "lmmformula"))
        if ours is None:
            continue
        e2e_ours = ours["build"][0] + ours["compile"][0] + ours["sample"][0]
        for impl in ("lmmformula-full", "lmmformula-joint", "bambi", "pymc"):
            alt = by.get((case, impl))
            if alt is None:
                continue
            e2e_alt = alt["build"][0] + alt["compile"][0] + alt["sample"][0]
            ess_ours = ours["min_ess_bulk"] / ours["sample"][0]
            ess_alt = alt["min_ess_bulk"] / alt["sample"][0]
            lines.append(
                f"| {case} | {impl} | {e2e_alt / e2e_ours:.1f}x | "
                f"{alt['sample'][0] / ours['sample'][0]:.1f}x | {ess_ours / ess_alt:.1f}x |"
            )
    return lines


def cpu_table(results: list[dict]) -> list[str]:
    lines = [
        "| case | implementation | import s | build s (wall / CPU) | compile s (wall / CPU) "
        "| warm-up compile s (wall / CPU) | post s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            continue
        warm = r.get("warmup_compile")
        comp_cpu = r["compile"][1]
        lines.append(
            f"| {r['case']} | {r['impl']} | {r['import'][0]:.2f} | "
            f"{r['build'][0]:.2f} / {r['build'][1]:.2f} | "
            f"{r['compile'][0]:.2f} / {_fmt(comp_cpu)} | "
            + (f"{warm[0]:.2f} / {warm[1]:.2f}" if warm else "-")
            + f" | {_fmt(r['post'][0])} |"
        )
    return lines


def versions() -> str:
    from importlib.metadata import version

    pkgs = ["lmmformula", "bambi", "pymc", "pytensor", "nutpie", "numba", "numpy"]
    return ", ".join(f"{p} {version(p)}" for p in pkgs)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:  # pragma: no cover
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--impls", default=",".join(DEFAULT_IMPLS))
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--cold",
        action="store_true",
        help="measure with an empty PyTensor compile cache (no warm-up)",
    )
    parser.add_argument(
        "--fresh-data",
        action="store_true",
        help="drop a few rows (1-97) from the data of each measured process, so that it fits "
        "data the warm-up (which used the full data) never saw",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "_out" / "results.md"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--compile-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--drop-rows", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = worker(args)
        Path(args.json).write_text(json.dumps(result))
        return 0

    command = (
        "python benchmarks/run.py"
        + (
            " " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
        ).rstrip()
    )
    cases = [c for c in args.cases.split(",") if c]
    impls = [i for i in args.impls.split(",") if i]
    for name in cases:
        if name not in CASES:
            parser.error(f"unknown case {name!r}; choose from {', '.join(CASES)}")
    for name in impls:
        if name not in IMPLS:
            parser.error(f"unknown implementation {name!r}; choose from {', '.join(IMPLS)}")
    notes = []
    if "insteval" in cases and not INSTEVAL.exists():
        msg = f"insteval skipped: {INSTEVAL} is absent (the raw lme4 file is not shipped)"
        print(msg)
        notes.append(msg)
        cases.remove("insteval")

    up_start = uptime()
    print(f"{command}\nstart: {up_start}", flush=True)
    results = []
    for case in cases:
        for impl in impls:
            ours = next(
                (r for r in results if (r.get("case"), r.get("impl")) == (case, "lmmformula")), None
            )
            if (
                impl == "lmmformula-full"
                and ours
                and ours.get("likelihood", "").startswith("full data")
            ):
                print(f"{case:>10} {impl:>16}: skipped (lmmformula already uses the full data)")
                continue
            if impl == "lmmformula-joint" and ours and "integrated" not in ours.get("likelihood"):
                print(f"{case:>10} {impl:>16}: skipped (lmmformula integrates nothing out)")
                continue
            if impl in ("lme4", "brms"):
                continue  # timed after the Python implementations, below
            env = dict(os.environ)
            tmp = None
            if args.cold:
                tmp = tempfile.TemporaryDirectory(prefix="lmmformula-bench-")
                env["PYTENSOR_FLAGS"] = ",".join(
                    filter(None, [env.get("PYTENSOR_FLAGS"), f"base_compiledir={tmp.name}"])
                )
                # numba's own cache and anything kept under HOME start empty too
                env["NUMBA_CACHE_DIR"] = os.path.join(tmp.name, "numba-cache")
                env["HOME"] = os.path.join(tmp.name, "home")
                os.makedirs(env["HOME"])
                warm = None
            else:
                warm = run_worker(args, case, impl, compile_only=True, env=env)
                if "error" in warm:
                    results.append(warm)
                    print(f"{case:>10} {impl:>16}: warm-up failed: {warm['error']}", flush=True)
                    continue
            r = run_worker(args, case, impl, compile_only=False, env=env)
            if warm is not None and "error" not in r:
                r["warmup_compile"] = warm["compile"]
            if tmp is not None:
                tmp.cleanup()
            results.append(r)
            if "error" in r:
                print(f"{case:>10} {impl:>16}: error: {r['error']}", flush=True)
            else:
                e2e = r["build"][0] + r["compile"][0] + r["sample"][0]
                print(
                    f"{case:>10} {impl:>16}: build {r['build'][0]:.2f}s compile "
                    f"{r['compile'][0]:.2f}s sample {r['sample'][0]:.2f}s e2e {e2e:.2f}s "
                    f"div {r['divergences']} minESS {r['min_ess_bulk']:.0f} "
                    f"load {r['load_start'][0]:.2f}-{r['load_end'][0]:.2f}",
                    flush=True,
                )
    r_results: dict[str, list[dict]] = {"lme4": [], "brms": []}
    runners = {"lme4": run_lme4, "brms": lambda case: run_brms(case, args)}
    for package, runner in runners.items():
        if package not in impls:
            continue
        reason = r_package_missing(package)
        if reason is not None:
            msg = f"{package} not timed: {reason}"
            print(msg)
            notes.append(msg)
            continue
        for case in cases:
            r = runner(case)
            r_results[package].append(r)
            shown = r.get("fits", r.get("error")) if package == "lme4" else r
            print(f"{case:>10} {package:>16}: {shown}", flush=True)
    lme4_results, brms_results = r_results["lme4"], r_results["brms"]
    up_end = uptime()
    lines = [
        "# lmmformula benchmark",
        "",
        f"Command: `{command}` (from the repository root)",
        "",
        f"- settings: {args.chains} chains x ({args.tune} tune + {args.draws} draws), seed "
        f"{args.seed}, nutpie (numba backend) for every implementation; "
        + (
            "**cold** caches (empty PyTensor compile directory, NUMBA_CACHE_DIR and HOME per "
            "process)"
            if args.cold
            else "warm compile caches (a compile-only process ran first for each row)"
        )
        + (
            "; **fresh data**: each measured process drops 1-97 rows, so it fits data the "
            "warm-up never saw"
            if args.fresh_data
            else ""
        ),
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}",
        f"- versions: {versions()}",
        f"- load at start: `{up_start}`",
        f"- load at end: `{up_end}`",
        *[f"- {n}" for n in notes],
        "",
        "End to end = build + compile + sample (Python import excluded; data loading excluded).",
        "",
        *table(results),
        "",
        "Speed-ups of lmmformula (alternative's time / lmmformula's time):",
        "",
        *ratios(results),
        "",
        "Wall and CPU seconds of the fixed costs:",
        "",
        *cpu_table(results),
        "",
    ]
    if lme4_results:
        lines += [
            "lme4 (`lmer`, REML, through `Rscript`; each fit timed in R, reading the data "
            "excluded), in the same run:",
            "",
            *lme4_table(results, lme4_results),
            "",
        ]
    if brms_results:
        lines += [
            "brms (`brm`, its default priors, Stan's NUTS through rstan; compiling the Stan model "
            "and sampling timed apart in R, reading the data excluded), in the same run:",
            "",
            *brms_table(results, brms_results),
            "",
        ]
    text = "\n".join(lines)
    print()
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    (out.with_suffix(".json")).write_text(
        json.dumps(results + lme4_results + brms_results, indent=1)
    )
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
