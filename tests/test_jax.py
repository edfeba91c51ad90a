"""The JAX route: ``sampler="numpyro"`` on an LKJ model agrees with nutpie; ``"blackjax"`` is
refused before sampling where PyMC's loop cannot drive it.

Runs when the ``jax`` extra is installed (``pip install 'lmmformula[jax]'``; CI installs it).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lmmformula as lf
from lmmformula import _jax
from lmmformula.errors import LmmFormulaError, ModelError

pytest.importorskip("jax")
pytest.importorskip("numpyro")

FORMULA = "Reaction ~ Days + (Days|Subject)"


@pytest.fixture(scope="module")
def numpyro_fit(sleepstudy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lf.fit(
            FORMULA,
            sleepstudy,
            sampler="numpyro",
            draws=500,
            tune=500,
            chains=2,
            random_seed=20261127,
            progressbar=False,
        )


@pytest.mark.sampling
def test_numpyro_reproduces_nutpie_sds_and_correlation(numpyro_fit, sleep_fit):
    assert numpyro_fit.sampler == "numpyro"
    assert numpyro_fit.model.blocks["Subject"].terms == ("1|Subject", "Days|Subject")
    jax_vc = numpyro_fit.varcorr().set_index(["grp", "var1", "var2"])["estimate"]
    ref_vc = sleep_fit.varcorr().set_index(["grp", "var1", "var2"])["estimate"]
    assert list(jax_vc.index) == list(ref_vc.index)
    for key in [("Subject", "Intercept", None), ("Subject", "Days", None)]:
        assert jax_vc[key] == pytest.approx(ref_vc[key], rel=0.10), key
    assert jax_vc[("Residual", None, None)] == pytest.approx(
        ref_vc[("Residual", None, None)], rel=0.10
    )
    corr = ("Subject", "Intercept", "Days")
    assert abs(jax_vc[corr] - ref_vc[corr]) < 0.15
    # the fixed effects too, and lme4's estimates (REML: 251.41, 10.47) as an outside reference
    fixef = numpyro_fit.fixef()["estimate"]
    np.testing.assert_allclose(fixef, sleep_fit.fixef()["estimate"], rtol=0.02)
    np.testing.assert_allclose(fixef[["Intercept", "Days"]], [251.41, 10.47], rtol=0.03)
    assert numpyro_fit.diagnostics().divergences == 0


def test_blackjax_with_a_broken_pair_is_refused_before_sampling(sleepstudy, monkeypatch):
    """blackjax >= 1.6 under a PyMC that passes progress_bar to window_adaptation: a
    ModelError that names the working versions, raised before the model is compiled."""
    pytest.importorskip("blackjax")
    monkeypatch.setattr(_jax.importlib.metadata, "version", _fake_version({"blackjax": "1.6.2"}))
    monkeypatch.setattr(_jax, "_pymc_passes_progress_bar", lambda: True)
    model = lf.model(FORMULA, sleepstudy)

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampling started")

    monkeypatch.setattr(model.bambi, "fit", no_sampling)
    with pytest.raises(ModelError, match=r"blackjax 1\.6\.2 .*progress_bar") as info:
        model.fit(sampler="blackjax", draws=10, tune=10, chains=1, progressbar=False)
    assert isinstance(info.value, LmmFormulaError)
    assert f"blackjax{_jax.BLACKJAX_WORKS}" in str(info.value)
    assert "sampler='numpyro'" in str(info.value)


@pytest.mark.parametrize(
    "version, pymc_bug, refused",
    [("1.5", True, False), ("1.6", True, True), ("1.7.1", True, True), ("1.7.1", False, False)],
)
def test_blackjax_versions_that_are_refused(monkeypatch, version, pymc_bug, refused):
    monkeypatch.setattr(_jax.importlib.metadata, "version", _fake_version({"blackjax": version}))
    monkeypatch.setattr(_jax, "_pymc_passes_progress_bar", lambda: pymc_bug)
    assert (_jax.blackjax_problem() is not None) == refused


def test_the_installed_pymc_loop_is_read_correctly():
    """PyMC 6.4's loop pops progress_bar after calling window_adaptation (the bug)."""
    import inspect

    from pymc.sampling import jax as pmjax

    source = inspect.getsource(pmjax._blackjax_inference_loop)
    buggy = source.index('pop("progress_bar"') > source.index("window_adaptation(")
    assert _jax._pymc_passes_progress_bar() == buggy


def test_blackjax_chains_are_vectorized_on_fewer_devices():
    pytest.importorskip("blackjax")
    if _jax.blackjax_problem() is not None:
        pytest.skip("the installed blackjax is refused")
    import jax

    many = jax.local_device_count() + 1
    out = _jax.jax_sampler_kwargs("blackjax", many, {})
    assert out["nuts_sampler_kwargs"] == {"chain_method": "vectorized"}
    mine = {"nuts_sampler_kwargs": {"chain_method": "parallel"}}
    assert _jax.jax_sampler_kwargs("blackjax", many, mine) == mine
    assert _jax.jax_sampler_kwargs("numpyro", many, {}) == {}


def _fake_version(fake: dict[str, str]):
    real = _jax.importlib.metadata.version

    def version(name: str) -> str:
        return fake.get(name) or real(name)

    return version
