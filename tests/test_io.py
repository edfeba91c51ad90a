"""``Fit.save`` / ``lf.load_fit``: everything comes back identical, and bad files fail clearly.

Two fits go through a round trip: the shared sleepstudy fit (a correlated LKJ block, with its
pointwise log-likelihood computed) and a tiny cbpp binomial fit whose data hold categorical
columns and whose priors are brms-style specifications. After reloading, every ArviZ group,
variable, coordinate and attribute is identical, the model is rebuilt with the same
specification and data, and ``summary``/``varcorr``/``predict``/``loo`` give the same answers.
"""

from __future__ import annotations

import json
import shutil
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import lmmformula as lf
from lmmformula.errors import FitError
from lmmformula.fit import Fit

pytestmark = pytest.mark.sampling


def _copy(fit: Fit) -> Fit:
    """A fit sharing the model but not the draws (the session fit stays as it was)."""
    return Fit(
        fit.model,
        fit.idata.copy(deep=True),
        sampler=fit.sampler,
        settings=fit.settings,
        timings=fit.timings,
    )


@pytest.fixture(scope="module")
def round_trips(sleep_fit, tmp_path_factory):
    folder = tmp_path_factory.mktemp("io")
    sleep = _copy(sleep_fit)
    sleep.log_likelihood()
    cbpp = lf.load_dataset("cbpp")
    cbpp = cbpp.assign(herd=pd.Categorical(cbpp["herd"]), period=cbpp["period"].astype("category"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        binomial = lf.fit(
            "cbind(incidence, size - incidence) ~ period + (1|herd)",
            cbpp,
            priors=[lf.prior("normal(0, 1)", cls="b"), lf.prior("student_t(3, 0, 2.5)", cls="sd")],
            draws=100,
            tune=100,
            chains=2,
            random_seed=5,
            progressbar=False,
        )
    out = {}
    for name, fit in (("sleepstudy", sleep), ("cbpp", binomial)):
        path = folder / f"{name}.nc"
        fit.save(path)
        out[name] = (fit, lf.load_fit(path), path)
    return out


NAMES = ["sleepstudy", "cbpp"]


@pytest.mark.parametrize("name", NAMES)
def test_every_group_variable_and_attribute_is_identical(round_trips, name):
    fit, loaded, _ = round_trips[name]
    assert sorted(fit.idata.children) == sorted(loaded.idata.children)
    assert "log_likelihood" in loaded.idata.children or name != "sleepstudy"
    for group in fit.idata.children:
        before, after = fit.idata[group].to_dataset(), loaded.idata[group].to_dataset()
        xr.testing.assert_identical(before, after)
        for var in [*before.data_vars, *before.coords]:
            assert before[var].dtype == after[var].dtype, (group, var)
            assert before[var].attrs == after[var].attrs, (group, var)
        assert before.attrs == after.attrs, group
    assert fit.idata.attrs == loaded.idata.attrs


@pytest.mark.parametrize("name", NAMES)
def test_the_model_is_rebuilt_as_it_was(round_trips, name):
    fit, loaded, _ = round_trips[name]
    assert loaded.model.spec() == fit.model.spec()
    assert loaded.model.translation == fit.model.translation
    assert repr(loaded.model.user_priors) == repr(fit.model.user_priors)
    assert loaded.model.blocks == fit.model.blocks
    pd.testing.assert_frame_equal(loaded.model.data, fit.model.data, check_exact=True)
    assert loaded.model.data.dtypes.to_dict() == fit.model.data.dtypes.to_dict()
    assert (loaded.sampler, loaded.settings, loaded.timings) == (
        fit.sampler,
        fit.settings,
        fit.timings,
    )


@pytest.mark.parametrize("name", NAMES)
def test_the_reloaded_fit_answers_the_same(round_trips, name):
    fit, loaded, _ = round_trips[name]
    assert str(loaded.summary()) == str(fit.summary())
    pd.testing.assert_frame_equal(loaded.varcorr(), fit.varcorr())
    pd.testing.assert_frame_equal(loaded.fixef(), fit.fixef())
    for factor, table in fit.ranef().items():
        pd.testing.assert_frame_equal(loaded.ranef()[factor], table)
    pd.testing.assert_frame_equal(loaded.predict(), fit.predict())
    new = fit.model.data.iloc[[0, 5, 9]]
    pd.testing.assert_frame_equal(loaded.predict(new), fit.predict(new))
    assert loaded.diagnostics() == fit.diagnostics()


def test_loo_reads_the_stored_log_likelihood(round_trips):
    fit, loaded, _ = round_trips["sleepstudy"]
    xr.testing.assert_identical(loaded.log_likelihood(), fit.log_likelihood())
    assert loaded.loo().elpd == pytest.approx(fit.loo().elpd, abs=0, rel=0)


def test_text_and_none_in_an_object_variable_survive(round_trips, tmp_path):
    """nutpie's ``divergence_message`` is None, or a message for a divergent draw."""
    fit, _, _ = round_trips["cbpp"]
    copy = _copy(fit)
    messages = copy.idata["sample_stats"]["divergence_message"].values  # a view: edited in place
    assert messages.dtype == object and messages[0, 0] is None
    messages[0, 3] = "Divergence: energy error 1.2e+03"
    messages[1, 7] = ""
    copy.save(tmp_path / "messages.nc")
    after = lf.load_fit(tmp_path / "messages.nc").idata["sample_stats"]["divergence_message"]
    assert after.dtype == object
    assert after.values[0, 3] == "Divergence: energy error 1.2e+03"
    assert after.values[1, 7] == ""
    # None beside strings: xarray (with pandas 3's string inference) itself holds it as NaN
    assert pd.isna(after.values[0, 0])
    assert sum(isinstance(v, str) for v in after.values.ravel()) == 2


def test_a_reloaded_fit_saves_the_same_file_again(round_trips, tmp_path):
    fit, loaded, _ = round_trips["cbpp"]
    loaded.save(tmp_path / "again.nc")
    again = lf.load_fit(tmp_path / "again.nc")
    for group in fit.idata.children:
        xr.testing.assert_identical(again.idata[group].to_dataset(), fit.idata[group].to_dataset())
    pd.testing.assert_frame_equal(again.model.data, fit.model.data, check_exact=True)


def test_save_overwrites_and_leaves_no_partial_file(round_trips, tmp_path):
    fit, _, original = round_trips["cbpp"]
    target = tmp_path / "fit.nc"
    target.write_text("an old file in the way")
    fit.save(str(target))  # str paths as well as Paths
    assert [p.name for p in tmp_path.iterdir()] == ["fit.nc"]
    xr.testing.assert_identical(lf.load_fit(target).posterior, lf.load_fit(original).posterior)


# -- files that are not (or no longer) an lmmformula fit -----------------------------------------
def _truncated(fraction):
    def make(saved, path):
        raw = saved.read_bytes()
        path.write_bytes(raw[: int(len(raw) * fraction)])

    return make


def _text(saved, path):
    path.write_text("Reaction,Days,Subject\n249.56,0,308\n")


def _empty(saved, path):
    path.write_bytes(b"")


def _foreign_netcdf(saved, path):
    xr.Dataset({"temperature": ("time", np.arange(5.0))}).to_netcdf(path, engine="h5netcdf")


def _edit_spec(edit):
    def make(saved, path):
        shutil.copy(saved, path)
        with h5py.File(path, "r+") as f:
            raw = f.attrs["lmmformula"]
            f.attrs["lmmformula"] = edit(raw.decode() if isinstance(raw, bytes) else raw)

    return make


def _future_version(raw):
    meta = json.loads(raw)
    meta["format_version"] = 99
    return json.dumps(meta)


def _unbuildable(raw):
    meta = json.loads(raw)
    meta["model"]["formula"] = "incidence ~ nonexistent + (1|herd)"
    return json.dumps(meta)


def _no_model(raw):
    meta = json.loads(raw)
    del meta["model"]
    return json.dumps(meta)


BAD_FILES = [
    pytest.param(_truncated(0.5), r"truncated or not netCDF-4", id="cut-in-half"),
    pytest.param(_truncated(0.05), r"truncated or not netCDF-4", id="cut-near-the-start"),
    pytest.param(_truncated(0.99), r"truncated or not netCDF-4", id="cut-near-the-end"),
    pytest.param(_empty, r"truncated or not netCDF-4", id="empty-file"),
    pytest.param(_text, r"truncated or not netCDF-4", id="text-file"),
    pytest.param(_foreign_netcdf, r"netCDF file but not an lmmformula fit", id="foreign-netcdf"),
    pytest.param(_edit_spec(lambda raw: raw[:20]), r"damaged model specification", id="bad-json"),
    pytest.param(_edit_spec(_future_version), r"version 99", id="future-version"),
    pytest.param(_edit_spec(_unbuildable), r"cannot be rebuilt.*'nonexistent'", id="unbuildable"),
    pytest.param(_edit_spec(_no_model), r"cannot be rebuilt", id="spec-without-model"),
]


@pytest.mark.parametrize(("make", "pattern"), BAD_FILES)
def test_a_file_that_is_not_a_fit_gives_a_clear_fit_error(round_trips, tmp_path, make, pattern):
    _, _, saved = round_trips["cbpp"]
    path = tmp_path / "bad.nc"
    make(saved, path)
    with pytest.raises(FitError, match=pattern) as info:
        lf.load_fit(path)
    assert str(path) in str(info.value)


def test_a_directory_or_a_missing_file_gives_a_fit_error(tmp_path):
    with pytest.raises(FitError, match="not a readable lmmformula fit"):
        lf.load_fit(tmp_path)
    with pytest.raises(FitError, match="no such file"):
        lf.load_fit(tmp_path / "missing.nc")
