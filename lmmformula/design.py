"""The model's design matrices, as lme4's ``getME(m, "X")``, ``getME(m, "Z")`` and ``cnms``.

:meth:`lmmformula.Model.design` returns a :class:`Design`: what the model multiplies its
coefficients with. The linear predictor of every row is ``X @ beta + Z @ b (+ offset)``, where
``beta`` are the population-level coefficients in the order of ``X``'s columns (uncentred, as
:meth:`lmmformula.Fit.fixef` reports them) and ``b`` the group-level coefficients in the order
of ``Z``'s columns. The conformance suite compares it with lme4's ``lFormula()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse

from lmmformula import _bambi

if TYPE_CHECKING:  # pragma: no cover
    from lmmformula.model import Model

__all__ = ["Design", "design"]


@dataclass(frozen=True)
class Design:
    """The design of a model, in lme4's terms.

    Attributes
    ----------
    X : pandas.DataFrame
        One row per model row, one column per population-level coefficient, uncentred (lme4's
        ``getME(m, "X")``). Offsets are not columns of ``X``; they are in :attr:`offset`.
    Z : scipy.sparse.csr_matrix
        The (rows x group-level coefficients) design (lme4's ``getME(m, "Z")``).
    Z_columns : pandas.DataFrame
        One row per column of ``Z``: ``factor`` (the grouping factor), ``level`` (its level),
        ``term`` (the Bambi term, e.g. ``"Days|Subject"``), ``column`` (the column of the term,
        e.g. ``"Days"``, ``"f[b]"``, ``"Intercept"``), ``position`` (the column's position in
        the term) and ``block`` (index into :attr:`blocks`).
    blocks : list of (str, tuple of str)
        One entry per covariance block, in lme4's ``cnms`` sense: the grouping factor and the
        columns whose coefficients share one covariance matrix. ``(x||g)`` gives two entries
        for ``g`` of one column each; ``(f|g)`` with a 3-level factor one entry of 3 columns;
        ``(1|g) + (0 + f|g)`` an entry of 1 column and one of K columns.
    X_columns : pandas.DataFrame
        One row per column of ``X``: ``column``, the Bambi ``term`` it belongs to and its
        ``position`` in that term.
    offset : numpy.ndarray or None
        The sum of the formula's offsets per row, if it has any.
    rows : numpy.ndarray
        Positions (0-based) in the caller's data of the rows the model uses.

    Examples
    --------
    >>> import lmmformula as lf
    >>> m = lf.model("Reaction ~ Days + (Days|Subject)", lf.load_dataset("sleepstudy"))
    >>> d = m.design()
    >>> list(d.X.columns), d.Z.shape
    (['Intercept', 'Days'], (180, 36))
    >>> d.blocks[0]
    ('Subject', ('Intercept', 'Days'))
    """

    X: pd.DataFrame
    Z: scipy.sparse.csr_matrix
    Z_columns: pd.DataFrame
    blocks: list[tuple[str, tuple[str, ...]]]
    X_columns: pd.DataFrame
    offset: np.ndarray | None
    rows: np.ndarray

    def linear_predictor(self, beta: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``X @ beta + Z @ b (+ offset)`` for coefficient vectors in the column orders."""
        eta = self.X.to_numpy() @ np.asarray(beta, dtype=float)
        eta = eta + self.Z @ np.asarray(b, dtype=float)
        if self.offset is not None:
            eta = eta + self.offset
        return eta


def design(model: Model) -> Design:
    """The design of ``model`` (see :class:`Design`)."""
    parts = _bambi.design_parts(model.bambi)
    x = pd.DataFrame(parts.x, columns=[c[0] for c in parts.x_columns])
    x_columns = pd.DataFrame(parts.x_columns, columns=["column", "term", "position"])
    z_columns = pd.DataFrame(
        parts.z_columns, columns=["factor", "level", "term", "column", "position"]
    )
    block_of_term = {t: key for key, spec in model.blocks.items() for t in spec.terms}
    blocks: list[tuple[str, tuple[str, ...]]] = []
    entry: dict[tuple[str, int], int] = {}  # (block key or term, position) -> entry
    for term, sub in z_columns.groupby("term", sort=False):
        factor = str(sub["factor"].iloc[0])
        positions = sub.drop_duplicates("position")
        key = block_of_term.get(term)
        if key is None:  # independent: every column its own 1x1 block
            for pos, col in zip(positions["position"], positions["column"], strict=True):
                entry[(term, int(pos))] = len(blocks)
                blocks.append((factor, (str(col),)))
            continue
        if (key, -1) not in entry:
            entry[(key, -1)] = len(blocks)
            blocks.append((factor, ()))
        k = entry[(key, -1)]
        factor, cols = blocks[k]
        blocks[k] = (factor, cols + tuple(str(c) for c in positions["column"]))
        for pos in positions["position"]:
            entry[(term, int(pos))] = k
    z_columns["block"] = [
        entry[(t, int(p))] for t, p in zip(z_columns["term"], z_columns["position"], strict=True)
    ]
    return Design(
        X=x,
        Z=parts.z,
        Z_columns=z_columns,
        blocks=blocks,
        X_columns=x_columns,
        offset=parts.offset,
        rows=np.asarray(model._prepared.rows),
    )
