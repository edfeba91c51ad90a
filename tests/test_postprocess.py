"""The vectorised sampler-health diagnostics equal ArviZ's (issue 14).

``lmmformula._diagnostics`` re-implements rank-normalised split R-hat and bulk/tail ESS over a
stacked (chain, draw, parameter) array; the oracle is ArviZ itself, parameter by parameter.
"""

from __future__ import annotations

import time
import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr

from lmmformula._diagnostics import diagnostics_arrays, ess_bulk_tail_rhat

RTOL = 1e-8


def _arviz(ds: xr.Dataset) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {
            "rhat": az.rhat(ds),
            "ess_bulk": az.ess(ds, method="bulk"),
            "ess_tail": az.ess(ds, method="tail"),
        }
    return {
        k: np.concatenate([np.asarray(v[n].values, dtype=float).ravel() for n in ds.data_vars])
        for k, v in out.items()
    }


def _assert_same(ref: dict, got: dict) -> None:
    for key in ("rhat", "ess_bulk", "ess_tail"):
        np.testing.assert_allclose(got[key], ref[key], rtol=RTOL, equal_nan=True, err_msg=key)


def _awkward_draws(chains: int, draws: int, rng) -> np.ndarray:
    """Columns that exercise every branch: autocorrelated, anticorrelated, constant, ties,
    binary, NaN, stuck chains, a trend."""
    a = rng.normal(size=(chains, draws, 16))
    for t in range(1, draws):
        a[:, t, :4] = 0.9 * a[:, t - 1, :4] + a[:, t, :4]  # slow mixing
        a[:, t, 4] = -0.7 * a[:, t - 1, 4] + a[:, t, 4]  # antithetic
    a[:, :, 5] = 2.5  # constant
    a[:, :, 6] = np.round(a[:, :, 6])  # many ties
    a[:, :, 7] = (a[:, :, 7] > 1.6).astype(float)  # rare binary
    a[0, 3, 8] = np.nan
    a[:, :, 9] += 3.0 * np.arange(chains)[:, None]  # chains disagree
    a[:, :, 10] = np.linspace(0, 1, draws)[None, :] + 0.01 * a[:, :, 10]  # trend
    a[:, : draws // 3, 11] = a[:, :1, 11]  # stuck at the start
    return a


@pytest.mark.parametrize(("chains", "draws"), [(4, 200), (3, 101), (2, 9), (1, 50)])
def test_equals_arviz_on_awkward_draws(chains, draws):
    a = _awkward_draws(chains, draws, np.random.default_rng(chains * 1000 + draws))
    ds = xr.Dataset({"x": (("chain", "draw", "p"), a)})
    _assert_same(_arviz(ds), ess_bulk_tail_rhat(a))


def test_threads_and_blocks_do_not_change_the_result():
    a = np.random.default_rng(3).normal(size=(2, 60, 300)).cumsum(axis=1)
    one = ess_bulk_tail_rhat(a, threads=1)
    two = ess_bulk_tail_rhat(a, threads=2)
    for key in one:
        np.testing.assert_array_equal(one[key], two[key])


def test_fit_diagnostics_equal_arviz(sleep_fit):
    """Fit.diagnostics on a real (small) fit: the same extremes ArviZ gives over every stored
    parameter, including the correlation matrix's constant diagonal (NaN, left out)."""
    post = sleep_fit.posterior
    names = sleep_fit._parameter_names()
    ref = _arviz(post[names])
    arrays = {n: post[n].transpose("chain", "draw", ...).values for n in names}
    _assert_same(ref, diagnostics_arrays(arrays))
    d = sleep_fit._compute_diagnostics()
    assert d.max_rhat == pytest.approx(np.nanmax(ref["rhat"]), rel=RTOL)
    assert d.min_ess_bulk == pytest.approx(np.nanmin(ref["ess_bulk"]), rel=RTOL)
    assert d.min_ess_tail == pytest.approx(np.nanmin(ref["ess_tail"]), rel=RTOL)


def test_thousands_of_parameters_take_little_time():
    """4 chains x 1000 draws x 4,120 parameters (InstEval's posterior) well under ArviZ's
    ~12 s on this machine; generous bound for a busy machine."""
    a = np.random.default_rng(5).normal(size=(4, 1000, 4120))
    start = time.perf_counter()
    out = ess_bulk_tail_rhat(a)
    assert time.perf_counter() - start < 8.0
    assert np.all(np.isfinite(out["ess_bulk"]))
