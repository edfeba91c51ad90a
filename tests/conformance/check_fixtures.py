"""Self-check of the lme4 conformance fixtures (a script, not a pytest test).

Loads every ``tests/conformance/fixtures/*.json`` with json + numpy + scipy and asserts that each
is internally consistent (field set, shapes, Z triplets, Z column labels against the blocks) and
consistent with the data file it names (row indices in range; plain data columns, bare-name
responses and random-intercept indicator columns equal the data at those rows).

Run from the repository root::

    .venv/bin/python tests/conformance/check_fixtures.py
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FIELDS = [
    "id",
    "data",
    "formula",
    "family",
    "lme4_version",
    "r_version",
    "Matrix_version",
    "rows",
    "X",
    "Z",
    "Z_columns",
    "blocks",
    "y",
    "offset",
]

# Shipped columns read as text although their labels look like numbers (as load_dataset and
# make_fixtures.R read them): their levels sort as strings ("1", "10", "11", ..., "2").
TEXT = {"cbpp": {"herd", "period"}, "sleepstudy": {"Subject"}}


def read_table(name: str) -> dict[str, list[str]]:
    """Read a data set's CSV as columns of strings (``"NA"`` kept as the text ``NA``)."""
    path = (
        HERE / "data" / f"{name}.csv" if name.startswith("sim_") else REPO / "data" / f"{name}.csv"
    )
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    return {col: [r[i] for r in body] for i, col in enumerate(header)}


def as_float(values: list[str]) -> np.ndarray:
    """Numeric column of a CSV (``NA`` becomes NaN)."""
    return np.array([math.nan if v == "NA" else float(v) for v in values])


def check(fx: dict, tables: dict[str, dict[str, list[str]]]) -> None:
    """Assert the consistency of one fixture; raise AssertionError on the first problem."""
    assert list(fx) == FIELDS, f"fields {list(fx)}"
    assert fx["family"] in ("gaussian", "binomial")
    data = tables.setdefault(fx["data"], read_table(fx["data"]))
    nrow_data = len(next(iter(data.values())))

    rows = np.asarray(fx["rows"], dtype=int)
    n = rows.size
    assert n > 0 and rows.min() >= 0 and rows.max() < nrow_data, "rows out of range"
    assert np.all(np.diff(rows) > 0), "rows not increasing"

    cols = fx["X"]["columns"]
    X = np.asarray(fx["X"]["values"], dtype=float).reshape(n, len(cols))
    assert np.isfinite(X).all()

    zs = fx["Z"]
    q = zs["ncol"]
    assert zs["nrow"] == n
    i, j, x = (np.asarray(zs[k]) for k in ("i", "j", "x"))
    assert i.size == j.size == x.size
    assert (i >= 0).all() and (i < n).all() and (j >= 0).all() and (j < q).all()
    assert np.isfinite(x).all() and (x != 0).all(), "explicit zeros or non-finite values in Z"
    assert len(set(zip(i.tolist(), j.tolist(), strict=True))) == i.size, "duplicate Z triplets"
    Z = sp.coo_matrix((x, (i, j)), shape=(n, q)).toarray()

    blocks, zcols = fx["blocks"], fx["Z_columns"]
    assert len(zcols) == q, "Z_columns length != ncol"
    assert sum(len(b["terms"]) * b["nlevels"] for b in blocks) == q
    start = 0
    for bi, b in enumerate(blocks):
        nt, nl = len(b["terms"]), b["nlevels"]
        mine = zcols[start : start + nt * nl]
        assert all(c["block"] == bi and c["factor"] == b["factor"] for c in mine)
        assert [c["term"] for c in mine] == b["terms"] * nl, "terms not level-major"
        levels = [c["level"] for c in mine[::nt]]
        assert len(set(levels)) == nl and all(
            c["level"] == levels[k // nt] for k, c in enumerate(mine)
        )
        if len(b["factor_vars"]) == 1:  # R's sort: numbers numerically, text by code point (C)
            var = b["factor_vars"][0]
            numeric = var not in TEXT.get(fx["data"], set()) and all(v.isdigit() for v in levels)
            assert levels == sorted(levels, key=int if numeric else None), "level order"
        # Every nonzero of a column lies in rows of its level (known from the intercept column).
        if len(b["factor_vars"]) == 1 and b["factor_vars"][0] == b["factor"]:
            g = [data[b["factor"]][r] for r in rows]
            for k, c in enumerate(mine):
                col = Z[:, start + k]
                in_level = np.array([v == c["level"] for v in g])
                assert not col[~in_level].any(), f"column {start + k} outside its level"
                if c["term"] == "(Intercept)":
                    assert np.array_equal(col, in_level.astype(float)), "intercept column"
                elif c["term"] in data:
                    want = np.where(in_level, as_float(data[c["term"]])[rows], 0.0)
                    assert np.allclose(col, want, rtol=1e-12, atol=0), f"slope column {c['term']}"
        start += nt * nl
    assert start == q

    # Plain data columns of X equal the data.
    for k, name in enumerate(cols):
        if name in data:
            assert np.allclose(X[:, k], as_float(data[name])[rows], rtol=1e-12, atol=0), name

    y = np.asarray(fx["y"], dtype=float)
    assert y.shape[0] == n and np.isfinite(y).all()
    lhs = fx["formula"].split("~")[0].strip()
    if lhs.startswith("cbind("):
        assert fx["family"] == "binomial" and y.shape == (n, 2)
    else:
        assert y.ndim == 1
    if lhs in data:
        assert np.allclose(y, as_float(data[lhs])[rows], rtol=1e-12, atol=0), "response"
    if fx["offset"] is not None:
        off = np.asarray(fx["offset"], dtype=float)
        assert off.shape == (n,) and np.isfinite(off).all()
    else:
        assert "offset(" not in fx["formula"]


def main() -> int:
    """Check every fixture; print a summary and return the process exit status."""
    tables: dict[str, dict[str, list[str]]] = {}
    ids = set()
    for name in ("corpus.tsv", "holdout.tsv"):
        with (HERE / name).open(newline="", encoding="utf-8") as fh:
            ids |= {r["id"] for r in csv.DictReader(fh, delimiter="\t")}
    paths = sorted((HERE / "fixtures").glob("*.json"))
    found = {p.stem for p in paths}
    bad = 0
    if found != ids:
        print(
            f"fixtures without formula: {sorted(found - ids)}; formulas without fixture: "
            f"{sorted(ids - found)}"
        )
        bad += 1
    versions = set()
    for path in paths:
        fx = json.loads(path.read_text(encoding="utf-8"))
        versions.add((fx["lme4_version"], fx["Matrix_version"], fx["r_version"]))
        try:
            check(fx, tables)
        except AssertionError as err:
            bad += 1
            print(f"FAIL {path.name}: {err}")
    size = sum(p.stat().st_size for p in paths)
    print(
        f"{len(paths)} fixtures, {size / 1e6:.2f} MB, versions {sorted(versions)}: {bad} problems"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
