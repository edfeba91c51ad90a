"""Write every CSV shipped in ``data/`` from the raw files in ``../shared/data``.

Usage::

    python data/scripts/derive.py [--shared PATH] [--out PATH]

``PATH`` defaults to ``<repo>/../shared/data``; ``--out`` defaults to ``<repo>/data``.
``make data`` runs this script. The output is deterministic: running it twice gives
byte-identical files.

What it writes (see ``data/README.md``):

- ``beijing_ozone.csv``: the daily ozone table derived from the hourly UCI "Beijing Multi-Site
  Air-Quality" files (rule in :func:`derive_beijing_ozone`), with each station's latitude and
  longitude from ``beijing_prsa/stations.csv``;
- ``nwo_grants.csv``, ``sleepstudy.csv``, ``cbpp.csv``, ``pastes.csv``, ``penicillin.csv``:
  byte-for-byte copies of the raw files, after checking their columns and row counts.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SHARED = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "data"

STATIONS = (
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
)
NUMERIC = ("PM2.5", "PM10", "SO2", "NO2", "CO", "O3", "TEMP", "PRES", "DEWP", "RAIN", "WSPM")
OZONE_COLUMNS = ("station", "date", *NUMERIC, "log_ozone", "lat", "lon")
OZONE_ROWS = 16_966

# Files copied as they are: relative source path -> (expected columns, expected rows).
COPIED = {
    "nwo_grants.csv": (
        "nwo_grants.csv",
        ("discipline", "gender", "applications", "awards"),
        18,
    ),
    "sleepstudy.csv": ("lme4/sleepstudy.csv", ("Reaction", "Days", "Subject"), 180),
    "cbpp.csv": ("lme4/cbpp.csv", ("herd", "incidence", "size", "period"), 56),
    "pastes.csv": ("lme4/pastes.csv", ("strength", "batch", "cask", "sample"), 60),
    "penicillin.csv": ("lme4/penicillin.csv", ("diameter", "plate", "sample"), 144),
}


def _read_station(path: Path, station: str) -> pd.DataFrame:
    raw = pd.read_csv(path)
    stations = set(raw["station"].unique())
    if stations != {station}:
        raise SystemExit(f"{path.name}: station column holds {sorted(stations)}, not {station}")
    return raw


def read_stations(shared: Path) -> pd.DataFrame:
    """The 12 stations' coordinates, ``beijing_prsa/stations.csv``: station, lat, lon.

    WGS84 degrees with three decimals; the raw file's README states the accuracy (about
    0.01-0.05 degree, 1-5 km). Checked: exactly the 12 stations, once each, inside Beijing.
    """
    path = shared / "beijing_prsa" / "stations.csv"
    coords = pd.read_csv(path, dtype={"station": str, "lat": "float64", "lon": "float64"})
    if tuple(coords.columns) != ("station", "lat", "lon"):
        raise SystemExit(f"{path}: expected columns station, lat, lon; got {tuple(coords.columns)}")
    if sorted(coords["station"]) != list(STATIONS) or coords["station"].duplicated().any():
        raise SystemExit(f"{path}: expected the 12 stations once each, got {list(coords.station)}")
    inside = coords["lat"].between(39.4, 41.1) & coords["lon"].between(115.4, 117.6)
    if coords[["lat", "lon"]].isna().any().any() or not inside.all():
        raise SystemExit(f"{path}: a coordinate is missing or outside Beijing")
    return coords


def derive_beijing_ozone(shared: Path) -> pd.DataFrame:
    """The daily ozone table of BRIEF.md.

    For each of the 12 stations and each calendar date (from ``year``/``month``/``day``):
    the maximum over the day's hours of every numeric column, ignoring missing hours (a column
    with no observed hour that day is missing); ``log_ozone = log(O3)``; then every row with
    any missing value is dropped. Rows are sorted by station (alphabetical), then date.
    Last, each row gets its station's ``lat`` and ``lon`` (:func:`read_stations`).
    """
    folder = shared / "beijing_prsa"
    frames = []
    for station in STATIONS:
        path = folder / f"PRSA_Data_{station}_20130301-20170228.csv.gz"
        frames.append(_read_station(path, station))
    hourly = pd.concat(frames, ignore_index=True)
    hourly["date"] = (
        hourly["year"].map("{:04d}".format)
        + "-"
        + hourly["month"].map("{:02d}".format)
        + "-"
        + hourly["day"].map("{:02d}".format)
    )
    daily = hourly.groupby(["station", "date"], sort=True)[list(NUMERIC)].max().reset_index()
    daily = daily.astype({col: "float64" for col in NUMERIC})
    if (daily["O3"].dropna() <= 0).any():
        raise SystemExit("O3 has a non-positive daily maximum; log(O3) is undefined")
    daily["log_ozone"] = np.log(daily["O3"])
    daily = daily.dropna(how="any").reset_index(drop=True)
    daily["station"] = daily["station"].astype(str)
    coords = read_stations(shared).set_index("station")
    daily["lat"] = daily["station"].map(coords["lat"])
    daily["lon"] = daily["station"].map(coords["lon"])

    assert tuple(daily.columns) == OZONE_COLUMNS, tuple(daily.columns)
    assert len(daily) == OZONE_ROWS, f"expected {OZONE_ROWS} rows, got {len(daily)}"
    assert tuple(daily["station"].unique()) == STATIONS, daily["station"].unique()
    assert not daily.duplicated(["station", "date"]).any()
    assert not daily[["lat", "lon"]].isna().any().any()
    return daily


def write_beijing_ozone(daily: pd.DataFrame, out: Path) -> Path:
    """Write the table; floats use Python's shortest round-trip repr, so the file is lossless."""
    path = out / "beijing_ozone.csv"
    daily.to_csv(path, index=False, lineterminator="\n", float_format=None)
    back = pd.read_csv(path, dtype={"station": str, "date": str})
    pd.testing.assert_frame_equal(back, daily, check_dtype=False, check_exact=True)
    return path


def copy_checked(shared: Path, out: Path) -> list[Path]:
    """Copy the small tables byte for byte after checking columns and row counts."""
    written = []
    for name, (source, columns, rows) in COPIED.items():
        src = shared / source
        frame = pd.read_csv(src)
        if tuple(frame.columns) != columns or len(frame) != rows:
            raise SystemExit(
                f"{src}: expected columns {columns} and {rows} rows, "
                f"got {tuple(frame.columns)} and {len(frame)} rows"
            )
        if frame.isna().any().any():
            raise SystemExit(f"{src}: has missing values")
        dest = out / name
        shutil.copyfile(src, dest)
        written.append(dest)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shared", type=Path, default=DEFAULT_SHARED, help="folder with the raw data"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder to write into")
    args = parser.parse_args(argv)
    shared, out = args.shared.resolve(), args.out.resolve()
    if not (shared / "beijing_prsa").is_dir():
        print(f"raw data not found under {shared}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)

    written = [write_beijing_ozone(derive_beijing_ozone(shared), out)]
    written += copy_checked(shared, out)
    for path in written:
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
