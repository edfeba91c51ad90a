"""An exact sufficient-statistics likelihood for gaussian identity-link models.

For a gaussian model with identity link and a linear predictor that is linear in per-row design
columns, the rows sharing one combination of grouping-factor levels (a *cell*) share one
coefficient vector ``theta_c = [b, u_{f, level_f(c)}, ...]``. With ``W_c`` the cell's design
(fixed columns, with Bambi's centering, then every group-level term's columns) and ``y_c`` its
responses, the gaussian log-likelihood of the cell is

    -n_c log(sigma) - n_c/2 log(2 pi) - ||y_c - W_c theta_c||^2 / (2 sigma^2),

and only ``W_c'W_c``, ``W_c'y_c`` and ``y_c'y_c`` enter it. Rather than forming those Gram
matrices (which squares the condition number and loses digits to cancellation in
``y'y - 2 theta'W'y + theta'W'W theta``), each cell is reduced by a thin SVD
``W_c = U S V'`` of numerical rank ``r_c``:

    ||y_c - W_c theta||^2 = ||U_r'y_c - S_r V_r' theta||^2 + ||y_c - U_r U_r'y_c||^2.

So a cell becomes ``r_c <= min(n_c, k)`` *pseudo-observations* with design rows ``S_r V_r'``
(split back into fixed and group-level parts, so they keep the cell's group indexes) and
responses ``U_r'y_c``, plus a residual sum of squares that does not depend on the parameters.
The pseudo data have exactly the structure of the real data, so the linear predictor of the
pseudo rows is built the same way Bambi builds it for the real rows, only shorter. A one-row
cell is kept as it is.

The module is pure numpy plus a small pytensor graph; :mod:`lmmformula._bambi` reads Bambi's
terms and calls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_MAX_FRACTION",
    "CellPlan",
    "GroupColumns",
    "Reduction",
    "gaussian_logp",
    "plan_cells",
    "reduce_cells",
    "rows_as_reduction",
]

DEFAULT_MAX_FRACTION = 0.5
"""``suffstats="auto"`` reduces only when at most this fraction of the rows would remain."""


@dataclass(frozen=True)
class GroupColumns:
    """One group-level term's data: ``predictor`` (n,) or (n, e) and the level of every row."""

    name: str
    predictor: np.ndarray
    group_index: np.ndarray

    @property
    def ncol(self) -> int:
        return 1 if self.predictor.ndim == 1 else int(self.predictor.shape[1])


@dataclass(frozen=True)
class CellPlan:
    """How the rows fall into cells (unique combinations of every term's group level).

    Attributes
    ----------
    n : int
        Number of observations.
    k : int
        Number of design columns (fixed plus group-level).
    cell_of_row : numpy.ndarray
        Cell index of every row.
    cell_sizes : numpy.ndarray
        Rows per cell.
    max_rows : int
        Upper bound on the pseudo-observations, ``sum_c min(n_c, rank(W))``; the exact count
        (``sum_c rank(W_c)``) is known after :func:`reduce_cells`.
    """

    n: int
    k: int
    cell_of_row: np.ndarray
    cell_sizes: np.ndarray
    max_rows: int

    @property
    def n_cells(self) -> int:
        return int(self.cell_sizes.size)

    def pays(self, max_fraction: float = DEFAULT_MAX_FRACTION) -> bool:
        """Whether the reduction leaves at most ``max_fraction`` of the rows."""
        return self.max_rows <= max_fraction * self.n


@dataclass(frozen=True)
class Reduction:
    """Pseudo-observations that give the same gaussian likelihood as the data.

    Attributes
    ----------
    n : int
        Number of real observations (the ``n`` in ``-n log(sigma)``).
    n_cells : int
        Number of cells.
    x : numpy.ndarray
        (rows, p) pseudo design of the fixed columns.
    z : tuple of numpy.ndarray
        Per group-level term, the (rows,) or (rows, e) pseudo predictor.
    group_index : tuple of numpy.ndarray
        Per group-level term, the level of every pseudo row (its cell's level).
    y : numpy.ndarray
        (rows,) pseudo responses.
    rss : float
        Sum over cells of the within-cell residual sum of squares, ``||y_c - U_r U_r'y_c||^2``.
    names : tuple of str
        Names of the group-level terms, in the order of ``z`` and ``group_index``.
    """

    n: int
    n_cells: int
    x: np.ndarray
    z: tuple[np.ndarray, ...]
    group_index: tuple[np.ndarray, ...]
    y: np.ndarray
    rss: float
    names: tuple[str, ...]

    @property
    def rows(self) -> int:
        return int(self.y.size)


def plan_cells(x: np.ndarray, groups: Sequence[GroupColumns]) -> CellPlan:
    """Group the rows into cells and bound the number of pseudo-observations.

    A cell's rank is at most ``min(n_c, rank(W))`` with ``W`` the whole design, so the bound
    is ``sum_c min(n_c, rank(W))``; it is exact for the usual designs, where every cell spans
    the design's columns.
    """
    x = np.asarray(x, dtype=float)
    n = x.shape[0]
    w = _design(x, groups)
    k = w.shape[1]
    rank = int(np.linalg.matrix_rank(w)) if n and k else 0
    if groups:
        keys = np.column_stack([np.asarray(g.group_index, dtype=np.int64) for g in groups])
        _, cell_of_row, sizes = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        cell_of_row = np.asarray(cell_of_row, dtype=np.int64).reshape(-1)
    else:
        cell_of_row = np.zeros(n, dtype=np.int64)
        sizes = np.array([n], dtype=np.int64)
    max_rows = int(np.minimum(sizes, rank).sum())
    return CellPlan(n=n, k=k, cell_of_row=cell_of_row, cell_sizes=sizes, max_rows=max_rows)


def _design(x: np.ndarray, groups: Sequence[GroupColumns]) -> np.ndarray:
    n = x.shape[0]
    cols = [np.asarray(x, dtype=float).reshape(n, -1)]
    for g in groups:
        cols.append(np.asarray(g.predictor, dtype=float).reshape(n, -1))
    return np.concatenate(cols, axis=1)


def reduce_cells(
    y: np.ndarray,
    x: np.ndarray,
    groups: Sequence[GroupColumns],
    plan: CellPlan | None = None,
) -> Reduction:
    """Reduce gaussian data to pseudo-observations cell by cell (exact; see the module notes).

    Parameters
    ----------
    y : numpy.ndarray
        (n,) responses (any offset already subtracted).
    x : numpy.ndarray
        (n, p) fixed design, exactly as it enters the linear predictor (intercept column and
        centering included).
    groups : sequence of GroupColumns
        The group-level terms.
    plan : CellPlan, optional
        The cells, if already computed.
    """
    y = np.asarray(y, dtype=float).reshape(-1)
    n = y.size
    x = np.asarray(x, dtype=float).reshape(n, -1)
    p = x.shape[1]
    if plan is None:
        plan = plan_cells(x, groups)
    w = _design(x, groups)
    k = w.shape[1]
    order = np.argsort(plan.cell_of_row, kind="stable")
    starts = np.concatenate([[0], np.cumsum(plan.cell_sizes)])
    eps = np.finfo(float).eps

    kept_rows: list[np.ndarray] = []  # row indices kept as they are (small cells)
    pseudo_w: list[np.ndarray] = []
    pseudo_y: list[np.ndarray] = []
    pseudo_cell_row: list[np.ndarray] = []  # a representative real row, for group indexes
    rss = 0.0

    # A one-row cell is already as small as it gets; every other cell is reduced to its rank.
    small = plan.cell_sizes <= 1
    for c in np.flatnonzero(small):
        kept_rows.append(order[starts[c] : starts[c + 1]])

    # Large cells: batch the SVDs of cells of equal size.
    large = np.flatnonzero(~small)
    sizes = plan.cell_sizes[large]
    for size in np.unique(sizes):
        cells = large[sizes == size]
        idx = np.stack([order[starts[c] : starts[c] + size] for c in cells])  # (m, size)
        wc = w[idx]  # (m, size, k)
        yc = y[idx]  # (m, size)
        u, s, vt = np.linalg.svd(wc, full_matrices=False)  # (m,size,q), (m,q), (m,q,k)
        tol = s[:, :1] * max(size, k) * eps
        keep = s > tol  # (m, q)
        uty = np.einsum("msq,ms->mq", u, yc)
        fitted = np.einsum("msq,mq->ms", u, np.where(keep, uty, 0.0))
        rss += float(np.sum((yc - fitted) ** 2))
        b = s[:, :, None] * vt  # rows S V'
        for j in range(len(cells)):
            kj = keep[j]
            pseudo_w.append(b[j][kj])
            pseudo_y.append(uty[j][kj])
            pseudo_cell_row.append(np.full(int(kj.sum()), idx[j, 0], dtype=np.int64))

    kept = np.concatenate(kept_rows) if kept_rows else np.zeros(0, dtype=np.int64)
    kept.sort()
    rep = np.concatenate([kept, *pseudo_cell_row]) if pseudo_cell_row else kept
    w_all = np.concatenate([w[kept], *pseudo_w]) if pseudo_w else w[kept]
    y_all = np.concatenate([y[kept], *pseudo_y]) if pseudo_y else y[kept]

    z = []
    gidx = []
    start = p
    for g in groups:
        ncol = g.ncol
        block = w_all[:, start : start + ncol]
        z.append(block[:, 0] if g.predictor.ndim == 1 else block)
        gidx.append(np.asarray(g.group_index)[rep])
        start += ncol
    return Reduction(
        n=n,
        n_cells=plan.n_cells,
        x=np.ascontiguousarray(w_all[:, :p]),
        z=tuple(np.ascontiguousarray(a) for a in z),
        group_index=tuple(gidx),
        y=np.ascontiguousarray(y_all),
        rss=rss,
        names=tuple(g.name for g in groups),
    )


def rows_as_reduction(y: np.ndarray, x: np.ndarray, groups: Sequence[GroupColumns]) -> Reduction:
    """The rows themselves in a :class:`Reduction`'s layout (every row its own cell, no
    residual sum of squares): for code that reads a reduction and the rows alike."""
    return Reduction(
        n=int(y.size),
        n_cells=int(y.size),
        x=x,
        z=tuple(g.predictor for g in groups),
        group_index=tuple(np.asarray(g.group_index) for g in groups),
        y=y,
        rss=0.0,
        names=tuple(g.name for g in groups),
    )


def gaussian_logp(resid_sq_sum, rss, n: int, sigma):
    """The gaussian log-likelihood of all data from the pseudo residuals.

    ``-n log(sigma) - n/2 log(2 pi) - (sum of squared pseudo residuals + rss) / (2 sigma^2)``;
    works on numpy values and pytensor tensors alike.
    """
    import pytensor.tensor as pt

    n = np.float64(n)  # a float64: held as data by the compile path, not folded into the code
    return (
        -n * pt.log(sigma)
        - 0.5 * n * np.log(2 * np.pi)
        - (resid_sq_sum + rss) / (2.0 * pt.square(sigma))
    )
