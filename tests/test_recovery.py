"""Simulation recovery with informative intervals.

Data are simulated from the model with known standard deviations and correlations, on enough
groups that the posterior pins each of them down: every sd's posterior sd is below
``0.2 * truth / K`` and every correlation's below ``2 * 0.5 / K`` (asserted), so a reported sd
that is 20% off, or a correlation of size 0.5 with its sign flipped, is more than ``K``
posterior sds from the truth and fails ``|estimate - truth| < K * posterior sd``. Both designs
are large enough that ``suffstats="auto"`` samples on sufficient statistics.

The reported values come from ``fit.varcorr()``, which is also checked against direct
reductions (mean, sd, 2.5% and 97.5% quantiles) of the posterior draws of the named variables.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest

import lmmformula as lf
from lmmformula.fit import SamplingWarning

pytestmark = pytest.mark.sampling

K = 3.5  # posterior sds allowed between the estimate and the truth
N_GROUPS = 300
PER_GROUP = 24
SIGMA = 0.5
SAMPLER = {"draws": 400, "tune": 400, "chains": 2, "progressbar": False}


def _simulate(columns, sds, corr, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """``y = 1 + 0.5 x - 0.3 z + W u[g] + e``, ``u[g] ~ MvN(0, diag(sds) corr diag(sds))``;
    ``columns(x, z, f)`` gives the group-level design W."""
    rng = np.random.default_rng(seed)
    cov = np.outer(sds, sds) * np.asarray(corr, dtype=float)
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    u = rng.multivariate_normal(np.zeros(len(sds)), cov, size=N_GROUPS)
    g = np.repeat(np.arange(N_GROUPS), PER_GROUP)
    n = g.size
    x = rng.normal(size=n)
    z = rng.normal(size=n)
    f = np.tile(np.array(["A", "B", "C"]), n // 3)  # every level in every group
    w = columns(x, z, f)
    y = 1.0 + 0.5 * x - 0.3 * z + np.sum(u[g] * w, axis=1) + rng.normal(scale=SIGMA, size=n)
    frame = pd.DataFrame({"y": y, "x": x, "z": z, "f": f, "g": [f"g{i:03d}" for i in g]})
    return frame, u


CASES = {
    # (f|g): intercept and the treatment contrasts of B and C against A, one 3x3 block
    "factor block (f|g)": (
        "y ~ x + z + (f|g)",
        lambda x, z, f: np.column_stack([np.ones_like(x), f == "B", f == "C"]).astype(float),
        ["Intercept", "f[B]", "f[C]"],
        [1.0, 0.6, 0.9],
        [[1.0, -0.5, 0.3], [-0.5, 1.0, 0.5], [0.3, 0.5, 1.0]],
    ),
    "multi-term block (1 + x + z|g)": (
        "y ~ x + z + (1 + x + z|g)",
        lambda x, z, f: np.column_stack([np.ones_like(x), x, z]),
        ["Intercept", "x", "z"],
        [1.0, 0.6, 0.8],
        [[1.0, -0.5, 0.3], [-0.5, 1.0, 0.5], [0.3, 0.5, 1.0]],
    ),
}


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def recovered(request):
    formula, columns, names, sds, corr = CASES[request.param]
    data, _ = _simulate(columns, sds, corr, seed=2026)
    m = lf.model(formula, data, noncentered=False)
    assert m.likelihood == "sufficient statistics", m.likelihood_reason
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        fit = m.fit(random_seed=17, **SAMPLER)
    return fit, names, np.asarray(sds), np.asarray(corr)


def _rows(vc: pd.DataFrame):
    block = vc[vc.grp == "g"]
    return block[block.var2.isna()], block[block.var2.notna()]


def test_sds_and_correlations_are_recovered(recovered):
    fit, names, sds, corr = recovered
    sd_rows, cor_rows = _rows(fit.varcorr())
    assert sd_rows.var1.tolist() == names
    pairs = [(names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))]
    assert list(zip(cor_rows.var1, cor_rows.var2, strict=True)) == pairs
    for (_, row), truth in zip(sd_rows.iterrows(), sds, strict=True):
        assert row.sd < 0.2 * truth / K, ("not informative enough", row)
        assert abs(row.estimate - truth) < K * row.sd, row
    for _, row in cor_rows.iterrows():
        truth = corr[names.index(row.var1), names.index(row.var2)]
        assert row.sd < 2 * 0.5 / K, ("not informative enough", row)
        assert abs(row.estimate - truth) < K * row.sd, row
    resid = fit.varcorr().query("grp == 'Residual'").iloc[0]
    assert abs(resid.estimate - SIGMA) < K * resid.sd and resid.sd < 0.05 * SIGMA / K
    assert fit.diagnostics().divergences == 0


def test_varcorr_is_the_reduction_of_the_draws(recovered):
    """Every varcorr row is the mean, sd and 2.5%/97.5% quantiles of the draws it names: the
    sds of ``1|g_sigma`` and of each column of a multi-column term's sigma, the correlations
    of ``g_corr``; and those draws mixed well (R-hat < 1.02, ESS > 200), so the posterior sd
    used as the yardstick above is trustworthy."""
    fit, names, _, _ = recovered
    post = fit.posterior
    draws = {}
    for name in names:
        if name == "Intercept":
            draws[name] = post["1|g_sigma"]
        elif "[" in name:  # f[B] -> column "B" of f|g_sigma
            expr, level = name[:-1].split("[")
            sigma = post[f"{expr}|g_sigma"]
            draws[name] = sigma.sel({sigma.dims[-1]: level})
        else:
            draws[name] = post[f"{name}|g_sigma"]
    corr = post["g_corr"]
    rows, cols = corr.dims[-2:]
    labels = [str(v) for v in corr[rows].values]
    sd_rows, cor_rows = _rows(fit.varcorr())

    def check(row, draws):
        # the posterior sd is the test's yardstick: it must come from well-mixed chains
        assert float(az.rhat(np.asarray(draws))) < 1.02, row
        assert float(az.ess(np.asarray(draws))) > 200, row
        values = np.asarray(draws).reshape(-1)
        np.testing.assert_allclose(row.estimate, values.mean(), rtol=1e-10)
        np.testing.assert_allclose(row.sd, values.std(ddof=1), rtol=1e-10)
        np.testing.assert_allclose(
            [row.lower, row.upper], np.quantile(values, [0.025, 0.975]), rtol=1e-10
        )

    for _, row in sd_rows.iterrows():
        check(row, draws[row.var1].transpose("chain", "draw").values)
    for _, row in cor_rows.iterrows():
        i = labels.index(_label(row.var1))
        j = labels.index(_label(row.var2))
        check(row, corr.isel({rows: i, cols: j}).transpose("chain", "draw").values)


def _label(name: str) -> str:
    """The block coordinate of a varcorr name: ``Intercept`` -> ``1|g``, ``x`` -> ``x|g``."""
    return ("1" if name == "Intercept" else name) + "|g"
