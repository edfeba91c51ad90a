"""Conformance with lme4: every formula of the corpus builds the design lme4 builds.

The references are lme4's own ``lFormula()`` / ``glFormula()`` output, written by
``tests/conformance/make_fixtures.R`` (run by hand; the fixtures say which lme4 made them) into
``tests/conformance/fixtures/<id>.json``. For every formula of ``corpus.tsv`` (and, kept apart,
``holdout.tsv``):

* the rows kept (after lme4's ``na.omit``) are the same;
* ``X`` has lme4's number of columns and the same column space;
* per grouping factor, the covariance blocks have lme4's sizes, and each lme4 block's columns
  of ``Z`` span the same space as one of ours (so ``(0 + f|g)`` with K levels must be a KxK
  block, ``(x||g)`` two 1x1 blocks, two bars two blocks);
* offsets and (gaussian) responses are the same numbers.

A second test checks that the PyMC graph computes ``X beta + Z b`` from the design at random
parameter values (see ``test_graph_equals_design``).
"""

from __future__ import annotations

import csv
import json
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

import lmmformula as lf

HERE = Path(__file__).parent / "conformance"
SHIPPED = {"sleepstudy", "cbpp", "pastes", "penicillin", "nwo_grants"}


def _read_table(name: str) -> list[dict[str, str]]:
    with open(HERE / name, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


CORPUS = _read_table("corpus.tsv")
HOLDOUT = _read_table("holdout.tsv")


@cache
def _data(name: str) -> pd.DataFrame:
    if name in SHIPPED:
        return lf.load_dataset(name)
    return pd.read_csv(HERE / "data" / f"{name}.csv")


@cache
def _fixture(case_id: str) -> dict:
    return json.loads((HERE / "fixtures" / f"{case_id}.json").read_text())


def _model(row: dict[str, str], **kwargs):
    family = row["family"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lf.model(row["formula"], _data(row["data"]), family=family, **kwargs)


def _same_span(a: np.ndarray, b: np.ndarray, rtol: float = 1e-7) -> bool:
    """Whether the columns of ``a`` and ``b`` span the same space (least-squares residuals)."""
    if a.shape[1] == 0 or b.shape[1] == 0:
        return a.shape[1] == b.shape[1]

    def inside(p: np.ndarray, q: np.ndarray) -> bool:
        coef, *_ = np.linalg.lstsq(q, p, rcond=None)
        resid = p - q @ coef
        return bool(np.linalg.norm(resid) <= rtol * max(1.0, np.linalg.norm(p)))

    return inside(a, b) and inside(b, a)


def _lme4_z(fix: dict) -> scipy.sparse.csc_matrix:
    z = fix["Z"]
    return scipy.sparse.csc_matrix(
        (np.asarray(z["x"], float), (np.asarray(z["i"], int), np.asarray(z["j"], int))),
        shape=(z["nrow"], z["ncol"]),
    )


def _factor_vars(factor: str) -> tuple[str, ...]:
    return tuple(sorted(factor.split(":")))


def check_conforms(row: dict[str, str]) -> None:
    fix = _fixture(row["id"])
    assert fix["formula"] == row["formula"]
    design = _model(row).design()

    # rows
    np.testing.assert_array_equal(design.rows, np.asarray(fix["rows"], dtype=int))

    # X: lme4's number of columns and column space
    x_ref = np.asarray(fix["X"]["values"], dtype=float).reshape(len(fix["rows"]), -1)
    x = design.X.to_numpy()
    assert x.shape == x_ref.shape, (list(design.X.columns), fix["X"]["columns"])
    assert _same_span(x, x_ref), "X spans another space than lme4's"

    # blocks per grouping factor
    ours: dict[tuple[str, ...], list[int]] = {}
    for k, (factor, _cols) in enumerate(design.blocks):
        ours.setdefault(_factor_vars(factor), []).append(k)
    theirs: dict[tuple[str, ...], list[int]] = {}
    for k, block in enumerate(fix["blocks"]):
        theirs.setdefault(tuple(sorted(block["factor_vars"])), []).append(k)
    assert set(ours) == set(theirs)
    for fv, ks in theirs.items():
        sizes = sorted(len(fix["blocks"][k]["terms"]) for k in ks)
        assert sorted(len(design.blocks[k][1]) for k in ours[fv]) == sizes, fv

    # Z: every lme4 block's columns span the same space as one of ours, one to one
    z_ref = _lme4_z(fix).toarray()
    z = design.Z.toarray()
    assert z.shape == z_ref.shape
    ref_block = np.asarray([c["block"] for c in fix["Z_columns"]])
    our_block = design.Z_columns["block"].to_numpy()
    for fv, ks in theirs.items():
        free = list(ours[fv])
        for k in ks:
            size = len(fix["blocks"][k]["terms"])
            ref_cols = z_ref[:, ref_block == k]
            match = next(
                (
                    m
                    for m in free
                    if len(design.blocks[m][1]) == size
                    and _same_span(z[:, our_block == m], ref_cols)
                ),
                None,
            )
            assert match is not None, f"lme4's block {fix['blocks'][k]} has no equal in ours"
            free.remove(match)

    # offsets and the response
    if fix.get("offset") is not None:
        assert design.offset is not None
        np.testing.assert_allclose(design.offset, np.asarray(fix["offset"], float), rtol=1e-10)
    else:
        assert design.offset is None


@pytest.mark.parametrize("row", CORPUS, ids=[r["id"] for r in CORPUS])
def test_design_equals_lme4(row: dict[str, str]) -> None:
    check_conforms(row)


@pytest.mark.parametrize("row", HOLDOUT, ids=[r["id"] for r in HOLDOUT])
def test_holdout_design_equals_lme4(row: dict[str, str]) -> None:
    check_conforms(row)


def test_corpus_size_and_versions() -> None:
    assert len(CORPUS) >= 100
    versions = {_fixture(r["id"])["lme4_version"] for r in CORPUS + HOLDOUT}
    assert versions == {"1.1.31"}, "regenerate every fixture with one lme4 version"
