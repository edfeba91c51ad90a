"""The same ``random_seed`` gives the same draws: twice in one process and in another process.

One tiny model (sleepstudy, ``Reaction ~ Days + (Days|Subject)``, 2 chains of 100 draws) is
fitted four times here and once in a fresh Python process started first, so that it runs
while the in-process fits do:

* two ``lf.fit`` calls with the same seed (two models built from the same data);
* the first model fitted again with the same seed: compiling a PyMC graph changes it in place
  (PyMC folds the LKJ transform's constants), which used to move the gradient in its last bits
  and so every draw after the first few;
* the first model fitted with another seed, to show that the seed is what decides the draws.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import xarray as xr

import lmmformula as lf

pytestmark = pytest.mark.sampling

FORMULA = "Reaction ~ Days + (Days|Subject)"
SEED = 20260417
SETTINGS = {"draws": 100, "tune": 100, "chains": 2, "progressbar": False}

SCRIPT = textwrap.dedent(
    f"""
    import sys
    import warnings

    import numpy as np

    import lmmformula as lf

    warnings.simplefilter("ignore")
    fit = lf.fit({FORMULA!r}, lf.load_dataset("sleepstudy"), random_seed={SEED}, **{SETTINGS!r})
    np.savez(sys.argv[1], **{{name: da.values for name, da in fit.posterior.data_vars.items()}})
    """
)


def _fit(model_or_formula, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if isinstance(model_or_formula, str):
            return lf.fit(
                model_or_formula, lf.load_dataset("sleepstudy"), random_seed=seed, **SETTINGS
            )
        return model_or_formula.fit(random_seed=seed, **SETTINGS)


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reproducibility")
    out = tmp / "other_process.npz"
    fresh_out = tmp / "fresh_process.npz"
    # a process on a machine that never compiled anything: its first fit compiles the model
    # (lmmformula's kernel for this one) and must draw what every later process draws
    fresh_env = dict(
        os.environ,
        PYTENSOR_FLAGS=f"base_compiledir={tmp / 'compiledir'}",
        NUMBA_CACHE_DIR=str(tmp / "numba"),
    )
    others = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for path, env in ((out, None), (fresh_out, fresh_env))
    ]
    try:
        first = _fit(FORMULA, SEED)
        second = _fit(FORMULA, SEED)
        refit = _fit(first.model, SEED)
        other_seed = _fit(first.model, SEED + 1)
        errors = [other.communicate(timeout=600)[1] for other in others]
    finally:
        for other in others:
            if other.poll() is None:
                other.kill()
    for other, stderr in zip(others, errors, strict=True):
        assert other.returncode == 0, stderr[-3000:]
    stored = {}
    for key, path in (("elsewhere", out), ("fresh", fresh_out)):
        with np.load(path) as data:
            stored[key] = {name: data[name] for name in data.files}
    return {
        "first": first,
        "second": second,
        "refit": refit,
        "other_seed": other_seed,
        **stored,
    }


def _draws(fit) -> dict[str, np.ndarray]:
    return {name: da.values for name, da in fit.posterior.data_vars.items()}


def test_the_same_seed_gives_identical_draws_in_one_process(fits):
    xr.testing.assert_equal(fits["first"].posterior, fits["second"].posterior)
    a, b = fits["first"].idata["sample_stats"], fits["second"].idata["sample_stats"]
    for name in ("diverging", "step_size", "tree_depth"):
        if name in a:
            np.testing.assert_array_equal(a[name].values, b[name].values)


def test_refitting_the_same_model_gives_identical_draws(fits):
    xr.testing.assert_equal(fits["first"].posterior, fits["refit"].posterior)


def test_the_same_seed_gives_identical_draws_in_another_process(fits):
    here = _draws(fits["first"])
    elsewhere = fits["elsewhere"]
    assert sorted(here) == sorted(elsewhere)
    for name, values in here.items():
        np.testing.assert_array_equal(values, elsewhere[name], err_msg=name)


def test_a_first_fit_with_empty_compile_caches_draws_the_same(fits):
    """The first fit on a fresh machine (empty PyTensor and numba caches, so the model is
    compiled in that process's run) gives the draws every other process gives."""
    here = _draws(fits["first"])
    fresh = fits["fresh"]
    assert sorted(here) == sorted(fresh)
    for name, values in here.items():
        np.testing.assert_array_equal(values, fresh[name], err_msg=name)


def test_another_seed_gives_other_draws(fits):
    a, b = _draws(fits["first"]), _draws(fits["other_seed"])
    assert sorted(a) == sorted(b)
    for name in ("Intercept", "Days", "sigma"):
        assert not np.array_equal(a[name], b[name]), name
    # the chains of one fit differ too: the draws are not a constant the seed cannot change
    assert not np.array_equal(a["Days"][0], a["Days"][1])


def test_the_seed_is_recorded_with_the_fit(fits):
    assert fits["first"].settings["random_seed"] == SEED
    assert fits["other_seed"].settings["random_seed"] == SEED + 1
