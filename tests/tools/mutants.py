"""Mutation check: plausible bugs put into a copy of the library must make the tests fail.

Run it with ``make mutants`` (or ``.venv/bin/python tests/tools/mutants.py``). For every mutant
in :data:`MUTANTS` the script copies ``lmmformula/``, ``tests/``, ``data/`` and
``pyproject.toml`` into a fresh temporary directory, makes one exact textual replacement in
one library file, and runs the mutant's pytest node ids there with the project's ``.venv``
python (``-x -q -p no:cacheprovider``), importing the copied package (``PYTHONPATH`` is the
copy, and a small pytest plugin stops the run if ``lmmformula`` is imported from anywhere
else). A mutant is *caught* when the tests fail, *survived* when they pass. First the same
tests run once on an unmutated copy: a mutant only counts as caught if those tests pass
without it.

Output: one line per mutant, then exactly ``mutants: K caught of N``. The exit status is 0
only when every mutant was caught (a survivor, an error, or a mutant whose old text is not
found exactly once makes it 1).

Options: ``mutants.py NAME ...`` runs only those mutants; ``--list`` prints them;
``--jobs`` (default 2, at most 2) runs that many at a time; ``--no-baseline`` skips the
unmutated run; ``--keep`` leaves the temporary copies in place.

How to add a mutant
-------------------
Append a :class:`Mutant` to :data:`MUTANTS`:

* ``name``: short and unique, in kebab-case, saying what the bug is;
* ``file``: the library file, relative to the repository root;
* ``old``: text that occurs *exactly once* in that file (copy it, with its indentation; add
  surrounding lines until it is unique). If the library changes and the text is gone, the run
  fails with ``mutant not applicable: <name>``: update the text, do not delete the mutant;
* ``new``: the buggy replacement. Keep it a bug someone could plausibly write (a sign, an
  index, a swapped pair, a dropped term), not a crash: an exception is not what the test
  suite should be trusted to notice;
* ``tests``: pytest node ids (``tests/test_x.py::test_name`` or a whole file) that should
  catch it. Prefer the few fast tests that check the number the bug changes against an
  independent oracle; the mutant must then show as ``caught``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
COPIED = ("lmmformula", "tests", "data", "pyproject.toml")
TIMEOUT = 1200  # seconds per pytest run
MAX_JOBS = 2  # a shared two-core machine
ORACLE = "tests/test_oracle_logp.py::"  # log densities against numpy written from the equations

GUARD = '''"""Loaded with -p: the run must test the copied package, not the installed one."""
from pathlib import Path

import pytest


def pytest_sessionstart(session):
    import lmmformula

    where = Path(lmmformula.__file__).resolve()
    root = Path(__file__).resolve().parent
    if root not in where.parents:
        raise pytest.UsageError(f"lmmformula imported from {where}, not from the copy {root}")
'''


@dataclass(frozen=True)
class Mutant:
    """One plausible bug: replace ``old`` (found exactly once in ``file``) by ``new``."""

    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS: list[Mutant] = [
    Mutant(
        "suffstats-first-column-only",
        "lmmformula/_suffstats.py",
        "        z.append(block[:, 0] if g.predictor.ndim == 1 else block)\n",
        "        z.append(block[:, 0] if g.predictor.ndim == 1 "
        "else block * (np.arange(ncol) == 0))\n",
        (
            ORACLE + "test_auto_sufficient_statistics_on_a_multi_column_block[(f|g)]",
            ORACLE + "test_log_density_equals_the_equations[(f|g)-gaussian-suffstats-nc]",
            "tests/test_model.py::test_factor_block_logp_on_both_likelihood_paths",
        ),
    ),
    Mutant(
        "summary-ci-columns-swapped",
        "lmmformula/fit.py",
        '                    "lower": "l-95% CI",\n                    "upper": "u-95% CI",\n',
        '                    "lower": "u-95% CI",\n                    "upper": "l-95% CI",\n',
        ("tests/test_results.py::test_summary_table_is_the_draws",),
    ),
    Mutant(
        "factor-sds-all-first-level",
        "lmmformula/fit.py",
        "                    values = sd if info.expr_dim is None else sd[:, :, j]\n",
        "                    values = sd if info.expr_dim is None else sd[:, :, 0]\n",
        ("tests/test_results.py::test_factor_term_sds_are_each_levels_draws",),
    ),
    Mutant(
        "correlation-sign-flipped",
        "lmmformula/fit.py",
        "(factor, labels[i], labels[j], label, arr[:, :, i, j]))\n",
        "(factor, labels[i], labels[j], label, -arr[:, :, i, j]))\n",
        (
            "tests/test_results.py::test_varcorr_is_the_draws",
            "tests/test_plots.py::test_shrinkage_points_arrows_and_ellipses",
        ),
    ),
    Mutant(
        "group-term-dropped-from-predictor",
        "lmmformula/_bambi.py",
        "            for coef, predictor, group_index in zip(coefs, predictors, group_indexes, "
        "strict=True):\n",
        "            for coef, predictor, group_index in zip(\n"
        "                coefs[:-1], predictors[:-1], group_indexes[:-1], strict=True\n"
        "            ):\n",
        (
            ORACLE + "test_log_density_equals_the_equations[(x|g)-gaussian-rows-nc]",
            ORACLE + "test_linear_predictor_equals_the_equations[(x|g)]",
            "tests/test_model.py::test_logp_equals_the_hand_written_lkj_model",
        ),
    ),
    Mutant(
        "centered-noncentered-swapped",
        "lmmformula/_bambi.py",
        "        if spec.noncentered:\n            z = pm.Normal(",
        "        if not spec.noncentered:\n            z = pm.Normal(",
        (
            ORACLE + "test_log_density_equals_the_equations[(x|g)-gaussian-rows-centered]",
            ORACLE + "test_log_density_equals_the_equations[(x|g)-gaussian-rows-nc]",
            "tests/test_model.py::test_centered_switch_changes_the_graph",
            "tests/test_model.py::test_logp_equals_the_hand_written_lkj_model",
        ),
    ),
    Mutant(
        "cholesky-not-transposed",
        "lmmformula/_bambi.py",
        "            coefs = pt.dot(z, chol.T)\n",
        "            coefs = pt.dot(z, chol)\n",
        (
            ORACLE + "test_log_density_equals_the_equations[(x|g)-gaussian-rows-nc]",
            "tests/test_model.py::test_logp_equals_the_hand_written_lkj_model",
        ),
    ),
    Mutant(
        "suffstats-design-not-centred",
        "lmmformula/_bambi.py",
        "        if component.intercept_term is not None and bambi_model.center_predictors:\n"
        "            data = data - data.mean(0)\n",
        "        if component.intercept_term is not None and bambi_model.center_predictors:\n"
        "            data = data - 0.0\n",
        (
            ORACLE + "test_log_density_equals_the_equations[(x|g)-gaussian-suffstats-nc]",
            "tests/test_model.py::test_logp_equals_the_hand_written_lkj_model",
        ),
    ),
    Mutant(
        "coef-subtracts-ranef",
        "lmmformula/fit.py",
        "                table[key] = table[key] + arr if key in table else arr\n",
        "                table[key] = table[key] - arr if key in table else arr\n",
        ("tests/test_results.py::test_ranef_and_coef_are_the_draws",),
    ),
    Mutant(
        "ranef-interval-of-first-level",
        "lmmformula/fit.py",
        '                            "lower": lower[i],\n',
        '                            "lower": lower[0],\n',
        ("tests/test_results.py::test_ranef_and_coef_are_the_draws",),
    ),
    Mutant(
        "pareto-k-threshold-one",
        "lmmformula/compare.py",
        "np.asarray(loo.pareto_k) > BAD_PARETO_K)",
        "np.asarray(loo.pareto_k) > 1.0)",
        ("tests/test_compare.py::test_bad_pareto_k_is_reported",),
    ),
    Mutant(
        "compare-se-and-dse-swapped",
        "lmmformula/compare.py",
        '"se": table["se"].astype(float),\n            "dse": table["dse"].astype(float),\n',
        '"se": table["dse"].astype(float),\n            "dse": table["se"].astype(float),\n',
        ("tests/test_compare.py::test_elpd_from_hand_computed_likelihoods",),
    ),
    Mutant(
        "shrinkage-plots-ranef-not-coef",
        "lmmformula/plots.py",
        '    pooled = fit.coef()[factor].loc[levels, ["Intercept", term]]',
        '    pooled = fit.ranef()[factor].loc[levels, ["Intercept", term]]',
        ("tests/test_plots.py::test_shrinkage_points_arrows_and_ellipses",),
    ),
    Mutant(
        "block-numba-tau-trace-sign",
        "lmmformula/_marginal_op.py",
        "            d_tau_extra = tau * tr_cov_r\n            for r in range(b0, p):",
        "            d_tau_extra = -tau * tr_cov_r\n            for r in range(b0, p):",
        ("tests/test_marginal_op.py::test_block_value_and_gradient_equal_the_dense_normal",),
    ),
    Mutant(
        "block-draws-without-noise",
        "lmmformula/_marginal.py",
        "        out[start:stop] = thetas[start:stop, blk] + mu + noise\n",
        "        out[start:stop] = thetas[start:stop, blk] + mu\n",
        ("tests/test_marginal_block.py::test_block_draws_have_the_exact_conditional",),
    ),
    Mutant(
        "nested-intercept-logdet-sign",
        "lmmformula/_marginal.py",
        "    return value - 0.5 * pt.log1p(lam * a) + 0.5 * lam",
        "    return value + 0.5 * pt.log1p(lam * a) + 0.5 * lam",
        ("tests/test_marginal_block.py::test_nested_logp_is_the_dense_normal",),
    ),
    Mutant(
        "nested-outer-ignores-intercept",
        "lmmformula/_bambi.py",
        "            sums = sums - counts * a[:, None]\n",
        "            sums = sums\n",
        ("tests/test_marginal_block.py::test_nested_draws_have_the_exact_conditional",),
    ),
    Mutant(
        "kernel-lkj-exponent-off-by-one",
        "lmmformula/_kernel.py",
        "            ai = 2.0 * eta - 2.0 + n - i\n",
        "            ai = 2.0 * eta - 3.0 + n - i\n",
        ("tests/test_kernel.py::test_kernel_log_density_equals_the_equations",),
    ),
    Mutant(
        "kernel-student-t-gradient-without-nu",
        "lmmformula/_kernel.py",
        "                dj = -(a + 1.0) * dd / (a * c * c + dd * dd)\n",
        "                dj = -(a + 1.0) * dd / (c * c + dd * dd)\n",
        ("tests/test_kernel.py::test_kernel_log_density_equals_the_equations",),
    ),
    Mutant(
        "kernel-uncorrelated-sd-chain-rule",
        "lmmformula/_kernel.py",
        "                out[sdx + cc * sds] += gv * x[xo + g * e + cc] * sd\n",
        "                out[sdx + cc * sds] += gv * x[xo + g * e + cc]\n",
        ("tests/test_kernel.py::test_kernel_log_density_equals_the_equations",),
    ),
    Mutant(
        "kernel-cholesky-gradient-transposed",
        "lmmformula/_kernel.py",
        "                    S[dl + cc * n + k] += gv * x[zs + g * n + k]\n",
        "                    S[dl + k * n + cc] += gv * x[zs + g * n + k]\n",
        ("tests/test_kernel.py::test_kernel_log_density_equals_the_equations",),
    ),
    Mutant(
        "kernel-binomial-gradient-without-trials",
        "lmmformula/_kernel.py",
        "            S[rs + t] = yt - F[tf + t] * prob\n",
        "            S[rs + t] = yt - prob\n",
        ("tests/test_kernel.py::test_kernel_log_density_equals_the_equations",),
    ),
]


class NotApplicable(Exception):
    """The mutant's old text is not in its file exactly once."""


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "_build")
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    # the datasets package (``lmmformula._data`` is ``data/`` in the source tree)
    shutil.copytree(ROOT / "data", dest / "lmmformula" / "_data", ignore=ignore)
    (dest / "_mutant_guard.py").write_text(GUARD, encoding="utf-8")


def _apply(dest: Path, mutant: Mutant) -> None:
    path = dest / mutant.file
    text = path.read_text(encoding="utf-8")
    count = text.count(mutant.old)
    if count != 1:
        raise NotApplicable(
            f"mutant not applicable: {mutant.name} ({mutant.file}: old text found {count} times)"
        )
    path.write_text(text.replace(mutant.old, mutant.new), encoding="utf-8")


def _pytest(dest: Path, tests: tuple[str, ...]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(dest), PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg")
    cmd = [str(PYTHON), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    cmd += ["-p", "_mutant_guard", *tests]
    return subprocess.run(
        cmd, cwd=dest, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    return lines[-1].strip("= ") if lines else ""


def run_one(mutant: Mutant | None, tests: tuple[str, ...], keep: bool) -> tuple[str, float, str]:
    """``(status, seconds, detail)``; status is caught, survived, error or not applicable (a
    ``None`` mutant is the unmutated baseline: passed or failed)."""
    start = time.perf_counter()
    dest = Path(tempfile.mkdtemp(prefix="lmmformula-mutant-"))
    try:
        _copy_tree(dest)
        if mutant is not None:
            try:
                _apply(dest, mutant)
            except NotApplicable as exc:
                return "not applicable", time.perf_counter() - start, str(exc)
        try:
            proc = _pytest(dest, tests)
        except subprocess.TimeoutExpired:
            return "error", time.perf_counter() - start, f"timed out after {TIMEOUT} s"
        seconds = time.perf_counter() - start
        if proc.returncode == 0:
            status = "passed" if mutant is None else "survived"
        elif proc.returncode == 1:  # tests ran and some failed
            status = "failed" if mutant is None else "caught"
        else:  # usage error, missing node id, collection error, guard tripped
            status = "error"
        detail = _last_line(proc)
        if status in ("error", "failed"):
            detail += "\n" + (proc.stdout + proc.stderr)[-3000:]
        return status, seconds, detail
    finally:
        if keep:
            print(f"  kept {dest}", file=sys.stderr)
        else:
            shutil.rmtree(dest, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="run only these mutants")
    parser.add_argument("--jobs", type=int, default=MAX_JOBS, help="parallel runs (1 or 2)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
    args = parser.parse_args(argv)

    names = [m.name for m in MUTANTS]
    if len(set(names)) != len(names):
        raise SystemExit("mutant names must be unique")
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:36s} {m.file:26s} {' '.join(m.tests)}")
        return 0
    unknown = sorted(set(args.names) - set(names))
    if unknown:
        raise SystemExit(f"unknown mutants: {', '.join(unknown)}; see --list")
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    jobs = max(1, min(MAX_JOBS, args.jobs))
    started = time.perf_counter()

    if not args.no_baseline:
        union = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        status, seconds, detail = run_one(None, union, args.keep)
        first = detail.splitlines()[0] if detail else ""
        print(f"{'baseline':16s} {'(unmutated)':36s} {seconds:6.1f} s  {first}", flush=True)
        if status != "passed":
            print(detail)
            print("the listed tests must pass on the unmutated copy; fix them first")
            print(f"mutants: 0 caught of {len(chosen)}")
            return 1

    results: dict[str, tuple[str, float, str]] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {m.name: pool.submit(run_one, m, m.tests, args.keep) for m in chosen}
        for m in chosen:
            status, seconds, detail = futures[m.name].result()
            results[m.name] = (status, seconds, detail)
            first = detail.splitlines()[0] if detail else ""
            print(f"{status:16s} {m.name:36s} {seconds:6.1f} s  {first}", flush=True)
            if status == "error":
                print(detail, flush=True)

    caught = sum(1 for s, _, _ in results.values() if s == "caught")
    print(f"wall time {time.perf_counter() - started:.0f} s")
    print(f"mutants: {caught} caught of {len(chosen)}")
    return 0 if caught == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
