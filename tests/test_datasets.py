"""The shipped data sets: names, shapes, dtypes, errors, and re-derivation from the raw files."""

from __future__ import annotations

import doctest
import importlib.util
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmformula.datasets as ds
from lmmformula.datasets import describe_dataset, list_datasets, load_dataset
from lmmformula.errors import DataError, LmmFormulaError

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DERIVE = REPO / "data" / "scripts" / "derive.py"

NAMES = ["beijing_ozone", "cbpp", "nwo_grants", "pastes", "penicillin", "sleepstudy"]
STATIONS = [
    "Aotizhongxin",
    "Changping",
    "Dingling",
    "Dongsi",
    "Guanyuan",
    "Gucheng",
    "Huairou",
    "Nongzhanguan",
    "Shunyi",
    "Tiantan",
    "Wanliu",
    "Wanshouxigong",
]
NUMERIC = ["PM2.5", "PM10", "SO2", "NO2", "CO", "O3", "TEMP", "PRES", "DEWP", "RAIN", "WSPM"]

# name -> (rows, {column: kind}) with kind "str", "int" or "float"
EXPECTED = {
    "beijing_ozone": (
        16_966,
        {
            "station": "str",
            "date": "str",
            **dict.fromkeys(NUMERIC, "float"),
            "log_ozone": "float",
            "lat": "float",
            "lon": "float",
        },
    ),
    "cbpp": (56, {"herd": "str", "incidence": "int", "size": "int", "period": "str"}),
    "nwo_grants": (
        18,
        {"discipline": "str", "gender": "str", "applications": "int", "awards": "int"},
    ),
    "pastes": (60, {"strength": "float", "batch": "str", "cask": "str", "sample": "str"}),
    "penicillin": (144, {"diameter": "int", "plate": "str", "sample": "str"}),
    "sleepstudy": (180, {"Reaction": "float", "Days": "int", "Subject": "str"}),
}


def _kind(series: pd.Series) -> str:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_string_dtype(series.dtype):
        return "str"
    if series.dtype == np.int64:
        return "int"
    if series.dtype == np.float64:
        return "float"
    return str(series.dtype)


def test_list_datasets_names_sorted():
    assert list_datasets() == NAMES


def test_every_file_has_a_description_and_no_stale_entries():
    assert sorted(ds._SPECS) == list_datasets()


@pytest.mark.parametrize("name", NAMES)
def test_shape_columns_and_dtypes(name):
    rows, columns = EXPECTED[name]
    frame = load_dataset(name)
    assert isinstance(frame, pd.DataFrame)
    assert frame.shape == (rows, len(columns))
    assert list(frame.columns) == list(columns)
    assert {col: _kind(frame[col]) for col in frame} == columns
    assert not frame.isna().any().any()
    assert isinstance(frame.index, pd.RangeIndex) and frame.index[0] == 0


def test_beijing_ozone_table():
    oz = load_dataset("beijing_ozone")
    assert oz.shape == (16_966, 16)
    assert list(pd.unique(oz["station"])) == STATIONS
    assert oz["station"].nunique() == 12
    # stations in alphabetical order, then dates; one row per station-day
    assert oz.equals(oz.sort_values(["station", "date"], kind="stable").reset_index(drop=True))
    assert not oz.duplicated(["station", "date"]).any()
    assert oz["date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert oz["date"].min() == "2013-03-01" and oz["date"].max() == "2017-02-28"
    pd.to_datetime(oz["date"], format="%Y-%m-%d")  # every date is a real date
    assert not oz.isna().any().any()
    assert (oz["O3"] > 0).all()
    np.testing.assert_allclose(oz["log_ozone"], np.log(oz["O3"]), rtol=0, atol=1e-9)


def _km(lat1, lon1, lat2, lon2):
    """Great-circle distance in km (haversine, Earth radius 6371 km)."""
    p1, p2, dl = np.radians(lat1), np.radians(lat2), np.radians(lon2 - lon1)
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * 6371.0 * np.arcsin(np.sqrt(h))


def test_beijing_ozone_station_coordinates():
    oz = load_dataset("beijing_ozone")
    per_station = oz.groupby("station")[["lat", "lon"]].nunique()
    assert (per_station == 1).all().all()  # one location per station
    coords = oz.groupby("station")[["lat", "lon"]].first()
    assert list(coords.index) == STATIONS
    assert not coords.duplicated().any()
    # inside Beijing municipality (39.4-41.1 N, 115.4-117.5 E)
    assert coords["lat"].between(39.4, 41.1).all() and coords["lon"].between(115.4, 117.5).all()
    # the six urban-core stations lie within ~15 km of Tiananmen (39.908 N, 116.397 E); the
    # suburban ones (Changping, Dingling, Huairou, Shunyi) 25-60 km north
    centre = _km(coords["lat"], coords["lon"], 39.908, 116.397)
    urban = ["Aotizhongxin", "Dongsi", "Guanyuan", "Nongzhanguan", "Tiantan", "Wanshouxigong"]
    assert (centre[urban] < 15).all(), centre
    assert centre[["Changping", "Dingling", "Huairou", "Shunyi"]].between(25, 60).all(), centre
    lat, lon = coords["lat"].to_numpy(), coords["lon"].to_numpy()
    dist = _km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    off = dist[~np.eye(12, dtype=bool)]
    assert off.min() > 2 and off.max() < 70


@pytest.mark.skipif(
    not (SHARED / "beijing_prsa" / "stations.csv").is_file(),
    reason="../shared/data/beijing_prsa/stations.csv not found",
)
def test_beijing_ozone_coordinates_match_the_raw_station_list():
    raw = pd.read_csv(SHARED / "beijing_prsa" / "stations.csv").set_index("station")
    oz = load_dataset("beijing_ozone")
    coords = oz.groupby("station")[["lat", "lon"]].first()
    pd.testing.assert_frame_equal(coords, raw.loc[coords.index], check_exact=True)


def test_r_factors_are_strings_with_r_levels():
    sleep = load_dataset("sleepstudy")
    assert sleep["Subject"].nunique() == 18
    assert "308" in set(sleep["Subject"])
    assert sorted(sleep["Days"].unique()) == list(range(10))
    cbpp = load_dataset("cbpp")
    assert sorted(cbpp["herd"].unique(), key=int) == [str(i) for i in range(1, 16)]
    assert sorted(cbpp["period"].unique()) == ["1", "2", "3", "4"]
    assert (cbpp["incidence"] <= cbpp["size"]).all()
    pastes = load_dataset("pastes")
    assert pastes["batch"].nunique() == 10 and pastes["sample"].nunique() == 30
    assert (pastes["sample"] == pastes["batch"] + ":" + pastes["cask"]).all()
    pen = load_dataset("penicillin")
    assert pen["plate"].nunique() == 24 and pen["sample"].nunique() == 6
    nwo = load_dataset("nwo_grants")
    assert set(nwo["gender"]) == {"m", "f"}
    assert (nwo["awards"] <= nwo["applications"]).all()
    for frame in (sleep, cbpp, pastes, pen, nwo):
        assert not any(isinstance(t, pd.CategoricalDtype) for t in frame.dtypes)


def test_each_call_returns_a_fresh_frame():
    first = load_dataset("sleepstudy")
    first.loc[0, "Reaction"] = -1.0
    first["extra"] = 1
    second = load_dataset("sleepstudy")
    assert second.loc[0, "Reaction"] == pytest.approx(249.56)
    assert "extra" not in second
    assert first is not second


def test_unknown_name_suggests_the_closest():
    with pytest.raises(DataError) as info:
        load_dataset("sleepstudi")
    message = str(info.value)
    assert "'sleepstudi'" in message
    assert "Did you mean 'sleepstudy'?" in message
    for name in NAMES:
        assert name in message
    assert isinstance(info.value, LmmFormulaError) and isinstance(info.value, ValueError)


def test_unknown_name_is_case_sensitive_but_suggests_the_right_case():
    with pytest.raises(DataError, match="Did you mean 'sleepstudy'"):
        load_dataset("SleepStudy")
    with pytest.raises(DataError, match="Did you mean 'beijing_ozone'"):
        load_dataset("beijing")


def test_hopeless_name_lists_without_suggestion():
    with pytest.raises(DataError) as info:
        load_dataset("qqqqqqqq")
    assert "Did you mean" not in str(info.value)
    assert "Available: beijing_ozone, cbpp" in str(info.value)


def test_non_string_name_is_a_type_error():
    with pytest.raises(TypeError):
        load_dataset(3)  # type: ignore[arg-type]


def test_loads_from_another_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert list_datasets() == NAMES
    assert load_dataset("penicillin").shape == (144, 3)


@pytest.mark.parametrize("name", NAMES)
def test_describe_dataset(name):
    text = describe_dataset(name)
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{name}: ")
    assert lines[1].startswith("source: ") and lines[2].startswith("licence: ")


def test_describe_dataset_attributions():
    assert "CC BY 4.0" in describe_dataset("beijing_ozone")
    assert "20170457" in describe_dataset("beijing_ozone")
    assert "PNAS 112(40)" in describe_dataset("nwo_grants")
    assert "rethinking" in describe_dataset("nwo_grants")
    assert "lme4" in describe_dataset("cbpp")
    with pytest.raises(DataError, match="Did you mean 'cbpp'"):
        describe_dataset("cbp")


def test_docstring_examples_run():
    result = doctest.testmod(ds, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5
    assert result.failed == 0


def test_readme_lists_every_shipped_file():
    readme = (REPO / "data" / "README.md").read_text(encoding="utf-8")
    for name in NAMES:
        assert f"`{name}.csv`" in readme


def test_shipped_files_are_plain_text_with_unix_newlines():
    for name in NAMES:
        raw = (REPO / "data" / f"{name}.csv").read_bytes()
        assert b"\r" not in raw
        assert raw.endswith(b"\n")
        assert len(raw) < 2_000_000


def _load_derive_module():
    spec = importlib.util.spec_from_file_location("lmmformula_derive", DERIVE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(
    not (SHARED / "beijing_prsa").is_dir(),
    reason=f"raw data not found at {SHARED / 'beijing_prsa'} (re-derivation needs ../shared/data)",
)
def test_rederive_matches_shipped_files(tmp_path):
    derive = _load_derive_module()
    daily = derive.derive_beijing_ozone(SHARED)
    pd.testing.assert_frame_equal(daily, load_dataset("beijing_ozone"), check_exact=True)

    out = tmp_path / "data"
    assert derive.main(["--shared", str(SHARED), "--out", str(out)]) == 0
    written = sorted(p.name for p in out.glob("*.csv"))
    assert written == [f"{name}.csv" for name in NAMES]
    for name in written:
        assert (out / name).read_bytes() == (REPO / "data" / name).read_bytes(), name


def test_derive_script_refuses_a_missing_raw_folder(tmp_path, capsys):
    derive = _load_derive_module()
    assert derive.main(["--shared", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "raw data not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_readme_states_the_ozone_rule():
    readme = (REPO / "data" / "README.md").read_text(encoding="utf-8")
    assert re.search(r"maximum", readme)
    assert "16,966" in readme
    assert "log_ozone = log(O3)" in readme
