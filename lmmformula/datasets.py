"""Data sets shipped with lmmformula.

The CSV files live in the package ``lmmformula._data`` (the repository's ``data/`` folder, whose
``README.md`` gives every file's source, licence and columns). They are read with
:mod:`importlib.resources`, so they load the same from any working directory, in editable and in
normal installs.

================  ===========  =============================================================
name              rows x cols  what
================  ===========  =============================================================
``beijing_ozone`` 16,966 x 16  daily maxima of air quality and weather, 12 Beijing stations
``cbpp``          56 x 4       contagious bovine pleuropneumonia incidence by herd and period
``nwo_grants``    18 x 4       NWO grant applications and awards by discipline and gender
``pastes``        60 x 4       paste strength, casks nested in batches (lme4 ``Pastes``)
``penicillin``    144 x 3      penicillin assay, plates crossed with samples (lme4 ``Penicillin``)
``sleepstudy``    180 x 3      reaction times over days of sleep deprivation, 18 subjects
================  ===========  =============================================================
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import resources

import pandas as pd

from lmmformula.errors import DataError

__all__ = ["describe_dataset", "list_datasets", "load_dataset"]

_PACKAGE = "lmmformula._data"


@dataclass(frozen=True)
class _Spec:
    title: str
    source: str
    licence: str
    # column -> dtype given to pandas.read_csv; ``str`` for R factors and other labels
    dtypes: dict[str, object]


_FLOAT = "float64"
_INT = "int64"
_LME4 = "as shipped with R's lme4 package"
_LME4_LICENCE = "GPL-2 | GPL-3, the licence of R's lme4 package (DESCRIPTION: GPL (>= 2))"

_SPECS: dict[str, _Spec] = {
    "beijing_ozone": _Spec(
        title=(
            "Daily maxima of hourly air quality and weather at 12 Beijing stations, "
            "2013-03-01 to 2017-02-28, with log_ozone = log(O3); days with any missing value "
            "dropped; each station's latitude and longitude (lat, lon)"
        ),
        source=(
            "UCI Machine Learning Repository, 'Beijing Multi-Site Air-Quality Data' "
            "(Zhang et al. 2017, Proc. R. Soc. A 473: 20170457); derived by "
            "data/scripts/derive.py. Station coordinates (WGS84, good to about 1-5 km) compiled "
            "from the Beijing Municipal Environmental Monitoring Center's public station list"
        ),
        licence="CC BY 4.0",
        dtypes={
            "station": str,
            "date": str,
            **{
                col: _FLOAT
                for col in (
                    "PM2.5",
                    "PM10",
                    "SO2",
                    "NO2",
                    "CO",
                    "O3",
                    "TEMP",
                    "PRES",
                    "DEWP",
                    "RAIN",
                    "WSPM",
                    "log_ozone",
                    "lat",
                    "lon",
                )
            },
        },
    ),
    "cbpp": _Spec(
        title="Contagious bovine pleuropneumonia: new serological cases out of herd size",
        source=f"Lesnoff et al. (2004), Preventive Veterinary Medicine 64, 27-40; {_LME4}",
        licence=_LME4_LICENCE,
        dtypes={"herd": str, "incidence": _INT, "size": _INT, "period": str},
    ),
    "nwo_grants": _Spec(
        title="NWO grant applications and awards 2010-2012 by discipline and applicant gender",
        source=(
            "van der Lee & Ellemers (2015), PNAS 112(40); as distributed with R's rethinking "
            "package (NWOGrants)"
        ),
        licence="GPL-3, the licence of R's rethinking package",
        dtypes={"discipline": str, "gender": str, "applications": _INT, "awards": _INT},
    ),
    "pastes": _Spec(
        title="Paste strength: two assays per sample, casks nested in delivery batches",
        source=f"Davies & Goldsmith (1972), section 6.5; {_LME4} (as Pastes)",
        licence=_LME4_LICENCE,
        dtypes={"strength": _FLOAT, "batch": str, "cask": str, "sample": str},
    ),
    "penicillin": _Spec(
        title="Penicillin assay: diameter (mm) of the inhibition zone, plates crossed with samples",
        source=f"Davies & Goldsmith (1972), section 6.6; {_LME4} (as Penicillin)",
        licence=_LME4_LICENCE,
        dtypes={"diameter": _INT, "plate": str, "sample": str},
    ),
    "sleepstudy": _Spec(
        title="Average reaction time (ms) over days of sleep deprivation, 18 subjects",
        source=f"Belenky et al. (2003), Journal of Sleep Research 12, 1-12; {_LME4}",
        licence=_LME4_LICENCE,
        dtypes={"Reaction": _FLOAT, "Days": _INT, "Subject": str},
    ),
}


def list_datasets() -> list[str]:
    """Names of the shipped data sets, sorted.

    Returns
    -------
    list of str
        File names in the package's data folder without the ``.csv`` suffix.

    Examples
    --------
    >>> from lmmformula.datasets import list_datasets
    >>> list_datasets()
    ['beijing_ozone', 'cbpp', 'nwo_grants', 'pastes', 'penicillin', 'sleepstudy']
    """
    root = resources.files(_PACKAGE)
    return sorted(
        entry.name.removesuffix(".csv")
        for entry in root.iterdir()
        if entry.name.endswith(".csv") and entry.is_file()
    )


def _unknown(name: str, available: list[str]) -> DataError:
    lowered = {n.lower(): n for n in available}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
    hint = f" Did you mean {lowered[close[0]]!r}?" if close else ""
    return DataError(f"No data set named {name!r}.{hint} Available: {', '.join(available)}.")


def load_dataset(name: str) -> pd.DataFrame:
    """Load one of the data sets shipped with lmmformula.

    Parameters
    ----------
    name : str
        One of :func:`list_datasets` (``"beijing_ozone"``, ``"cbpp"``, ``"nwo_grants"``,
        ``"pastes"``, ``"penicillin"``, ``"sleepstudy"``).

    Returns
    -------
    pandas.DataFrame
        A new frame on every call, so it may be modified freely. Column types are those an R
        user gets from ``read.csv`` with factors as text: labels and R factors are strings
        (the default string dtype of :func:`pandas.read_csv`: ``object`` in pandas 2, ``str``
        in pandas 3), never ``category``; counts are ``int64``; measurements are ``float64``.
        Factors whose labels look like numbers stay strings: ``sleepstudy.Subject`` (``"308"``),
        ``cbpp.herd`` and ``cbpp.period``. ``beijing_ozone.date`` is an ISO ``yyyy-mm-dd``
        string, not a datetime.

        ``beijing_ozone``: station, date, PM2.5, PM10, SO2, NO2, CO, O3 (all ug/m3), TEMP
        (deg C), PRES (hPa), DEWP (dew point, deg C), RAIN (mm), WSPM (wind speed, m/s), each
        the day's maximum over the hourly readings, log_ozone = log(O3), and the station's
        lat and lon (WGS84 degrees; good to about 0.01-0.05 degree, 1-5 km: fine for the
        distances between stations, 4-60 km).
        ``cbpp``: herd, incidence, size, period. ``nwo_grants``: discipline, gender (``"m"`` /
        ``"f"``), applications, awards. ``pastes``: strength, batch, cask, sample.
        ``penicillin``: diameter (mm), plate, sample. ``sleepstudy``: Reaction (ms), Days,
        Subject.

    Raises
    ------
    DataError
        If there is no data set of that name; the message lists the available names and
        suggests the closest one.

    See Also
    --------
    list_datasets, describe_dataset

    Examples
    --------
    >>> from lmmformula.datasets import load_dataset
    >>> ozone = load_dataset("beijing_ozone")
    >>> ozone.shape
    (16966, 16)
    >>> ozone.groupby("station")[["lat", "lon"]].first().loc["Dongsi"].tolist()
    [39.929, 116.417]
    >>> sleep = load_dataset("sleepstudy")
    >>> sleep.groupby("Subject")["Reaction"].mean().round(1).head(2).tolist()
    [342.1, 215.2]
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    available = list_datasets()
    if name not in available:
        raise _unknown(name, available)
    spec = _SPECS.get(name)
    resource = resources.files(_PACKAGE).joinpath(f"{name}.csv")
    with resource.open("rb") as handle:
        frame = pd.read_csv(handle, dtype=spec.dtypes if spec else None)
    if spec is not None and list(frame.columns) != list(spec.dtypes):
        raise DataError(
            f"The shipped file {name}.csv has columns {list(frame.columns)}, expected "
            f"{list(spec.dtypes)}; the installation is damaged (re-run data/scripts/derive.py)."
        )
    return frame


def describe_dataset(name: str) -> str:
    """A short description of a shipped data set: what it is, its source and licence.

    Parameters
    ----------
    name : str
        One of :func:`list_datasets`.

    Returns
    -------
    str
        Three lines: the name and what the data are, the source, the licence.

    Raises
    ------
    DataError
        If there is no data set of that name.

    Examples
    --------
    >>> from lmmformula.datasets import describe_dataset
    >>> print(describe_dataset("nwo_grants").splitlines()[-1])
    licence: GPL-3, the licence of R's rethinking package
    """
    available = list_datasets()
    if name not in available:
        raise _unknown(str(name), available)
    spec = _SPECS.get(name)
    if spec is None:
        return f"{name}: no description recorded"
    return f"{name}: {spec.title}\nsource: {spec.source}\nlicence: {spec.licence}"
