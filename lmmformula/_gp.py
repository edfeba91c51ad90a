"""brms' Gaussian processes ``gp()`` and known covariances ``gr(g, cov = K)``, in numpy.

The formula layer reads ``gp(x1, ..., xk, k = , c = , by = )`` into a
:class:`lmmformula.formula.GPTerm` and ``(1 | gr(g, cov = K))`` into a
:class:`lmmformula.formula.CovTerm`. This module holds the rest, with brms' meaning
(``R/formula-gp.R``, ``R/data-predictor.R``, ``R/priors.R``, ``R/predictor.R`` and the Stan
chunks ``fun_gp_exp_quad.stan``, ``fun_spd_gp_exp_quad.stan`` of brms 2.23.1, commit
29ccd23; the tests check the numbers against brms 2.18.0):

- **Auto-grouping** (``gp(..., gr = TRUE)``, brms' default): the GP is evaluated on the unique
  covariate combinations only. The model layer adds a derived grouping column (one label per
  combination, :func:`combo_labels`) and the Bambi formula a ``(1|<label>)`` term whose
  coefficients the seam builds as the GP's values (:func:`build_gp`), so Bambi's predict,
  log-likelihood and ``Model.design()`` see an ordinary indicator design.
- **Scaling** (``scale = TRUE``): covariates divided by ``dmax``, the largest Euclidean distance
  between two unique points (``.data_gp``), so the length-scale is in units of that distance.
- **Kernel**: squared exponential, isotropic: ``k(x, x') = sdgp^2 exp(-|x - x'|^2 / (2
  lscale^2))``. Exact form, non-centered: ``f = chol(K + nugget I) z``, ``z ~ N(0, 1)``.
- **Approximate form** (``k`` basis functions per dimension, boundary factor ``c``): covariates
  also centred on the unique points' means, ``L = c * max(1, range)`` (``choose_L``), basis
  ``phi_m(x) = prod_d L_d^-1/2 sin(m_d pi (x_d + L_d) / (2 L_d))``, ``f = Phi (sqrt(spd) z)``
  with the squared-exponential spectral density ``spd(w) = sdgp^2 sqrt(2 pi)^D lscale^D
  exp(-lscale^2 |w|^2 / 2)`` at ``w_m = m pi / (2 L)``.
- **Priors**: ``sdgp`` gets the prior of a group-level sd (brms: "the same as for standard
  deviations of group-level effects"); ``lscale`` brms' tuned inverse gamma
  (:func:`lscale_prior`, brms' ``def_lscale_prior``).
- **Prediction** at new covariate values (exact form): the GP's conditional given the fitted
  values at the training points, per draw (brms' ``.predictor_gp_new``); the approximate form
  evaluates its basis at the new points. ``include_group_effects=False`` leaves the GP out
  too (it is a group-level term of the Bambi model), unlike brms' ``re_formula = NA``.
- **gr(g, cov = K)**: ``b = sd * chol(K) z`` for an uncorrelated term; ``chol(K) z (diag(sd)
  L)'`` for a correlated block (brms' ``Lcov``), K's rows and columns matched to the levels by
  name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lmmformula._text import point_at
from lmmformula.errors import DataError, ModelError

__all__ = [
    "GP_NUGGET",
    "GPPlan",
    "combo_labels",
    "conditional_mean_cov",
    "cov_cholesky",
    "exp_quad",
    "hs_basis",
    "lscale_prior",
    "plan_gp",
    "spd_exp_quad",
]

GP_NUGGET = 1e-8
"""Added to the diagonal of the kernel's correlation matrix before its Cholesky factor (brms adds
``1e-12`` to ``K`` in Stan and ``1e-8`` to new points' covariance; float64 PyTensor needs a
little more than Stan at long length-scales)."""


# -- numpy pieces ------------------------------------------------------------------------------
def sq_dist(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``a`` and ``b`` (brms' ``diff_quad``)."""
    a = np.atleast_2d(np.asarray(a, dtype=float))
    b = a if b is None else np.atleast_2d(np.asarray(b, dtype=float))
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)


def exp_quad(a: np.ndarray, b: np.ndarray | None, sdgp: float, lscale: float) -> np.ndarray:
    """brms' ``cov_gp_exp_quad``: ``sdgp^2 exp(-|a - b|^2 / (2 lscale^2))``."""
    return sdgp**2 * np.exp(-sq_dist(a, b) / (2 * lscale**2))


def lscale_prior(x: np.ndarray, plb: float = 0.01, pub: float = 0.01) -> tuple[str, float, float]:
    """brms' default prior of ``lscale`` for the (scaled, unique) points ``x``.

    brms' ``def_lscale_prior``: ``ub`` the largest and ``lb`` the smallest non-zero distance
    between two points (``lb`` at least ``0.01 ub``); an inverse gamma with ``P(l < lb) = plb``
    and ``P(l > ub) = pub``, solved on the log scale from ``(shape, scale) = (1, 1)`` and rounded
    to 6 digits; ``normal(0, 0.5)`` (on ``lscale > 0``) if the solve fails.

    Returns
    -------
    tuple
        ``("inv_gamma", shape, scale)`` or ``("normal", 0.0, 0.5)``.
    """
    from scipy import optimize, stats

    dq = sq_dist(x)
    ub = float(np.sqrt(dq.max()))
    positive = dq[dq > 0]
    if ub <= 0 or positive.size == 0:
        return ("normal", 0.0, 0.5)
    lb = max(float(np.sqrt(positive.min())), 0.01 * ub)

    def equations(v: np.ndarray) -> list[float]:
        a, b = np.exp(v)
        return [
            stats.invgamma.logcdf(lb, a, scale=b) - np.log(plb),
            stats.invgamma.logsf(ub, a, scale=b) - np.log(pub),
        ]

    # brms solves with nleqslv (Broyden, double dogleg); the solution is unique, and
    # Levenberg-Marquardt reaches it from brms' start where scipy's hybrid method stalls
    sol = optimize.root(equations, x0=[0.0, 0.0], method="lm")
    if not np.all(np.isfinite(sol.x)) or not np.all(np.abs(equations(sol.x)) < 1e-6):
        return ("normal", 0.0, 0.5)
    a, b = np.round(np.exp(sol.x), 6)
    return ("inv_gamma", float(a), float(b))


def hs_basis(x: np.ndarray, k: int, L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """brms' Hilbert-space basis at centred points ``x`` (n x D): ``Phi`` (n x k^D) and
    ``slambda`` (k^D x D, the square roots of the eigenvalues), with the basis indices in
    R's ``expand.grid(1:k, ..., 1:k)`` order (first dimension fastest)."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    d = x.shape[1]
    grids = np.meshgrid(*[np.arange(1, k + 1)] * d, indexing="ij")
    ms = np.stack([g.ravel(order="F") for g in grids], axis=1)  # expand.grid order
    L = np.broadcast_to(np.asarray(L, dtype=float), (d,))
    slambda = ms * np.pi / (2 * L)
    phi = np.ones((x.shape[0], ms.shape[0]))
    for j in range(d):
        phi *= np.sin(slambda[None, :, j] * (x[:, j : j + 1] + L[j])) / np.sqrt(L[j])
    return phi, slambda


def spd_exp_quad(slambda: np.ndarray, sdgp: Any, lscale: Any, xp: Any = np) -> Any:
    """brms' ``spd_gp_exp_quad``, isotropic: ``sdgp^2 sqrt(2 pi)^D lscale^D exp(-lscale^2
    |w|^2 / 2)`` at each row ``w`` of ``slambda``; ``xp`` is numpy or ``pytensor.tensor``."""
    d = slambda.shape[1]
    w2 = (slambda**2).sum(axis=1)
    return sdgp**2 * np.sqrt(2 * np.pi) ** d * lscale**d * xp.exp(-0.5 * lscale**2 * w2)


def conditional_mean_cov(
    x_old: np.ndarray, f_old: np.ndarray, x_new: np.ndarray, sdgp: float, lscale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the GP at ``x_new`` given its values ``f_old`` at ``x_old``
    (brms' ``.predictor_gp_new``, with the nugget of :data:`GP_NUGGET` on both kernels)."""
    k_oo = exp_quad(x_old, None, sdgp, lscale) + GP_NUGGET * sdgp**2 * np.eye(len(x_old))
    k_on = exp_quad(x_old, x_new, sdgp, lscale)
    k_nn = exp_quad(x_new, None, sdgp, lscale)
    chol = np.linalg.cholesky(k_oo)
    v = np.linalg.solve(chol, k_on)
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, f_old))
    mean = k_on.T @ alpha
    cov = k_nn - v.T @ v + GP_NUGGET * sdgp**2 * np.eye(len(x_new))
    return mean, cov


# -- the plan: what the model layer and the seam need ------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (int, np.integer)):
        return repr(float(value))
    return str(value)


def combo_labels(frame: pd.DataFrame, covariates: tuple[str, ...], by: str | None) -> np.ndarray:
    """One label per row naming its covariate combination (and ``by`` level): the derived
    grouping column of a GP term. Equal values give equal labels in the fitted and new data.

    Raises
    ------
    DataError
        When a covariate is not numeric.
    """
    for c in covariates:
        if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]):
            raise DataError(
                f"gp(): the covariate {c!r} must be numeric (brms: 'Predictors of Gaussian "
                "processes should be numeric vectors')."
            )
    cols = [frame[c].to_numpy(dtype=float) for c in covariates]
    parts = [np.array([_fmt(v) for v in col], dtype=object) for col in cols]
    labels = parts[0]
    for p in parts[1:]:
        labels = labels + "," + p
    if by is not None:
        labels = frame[by].astype(str).to_numpy(dtype=object) + "|" + labels
    return labels.astype(object)


@dataclass
class GPGroup:
    """One GP (the whole term, or one level of ``by``) over its unique points."""

    level: str | None  # the by-level, or None
    labels: list[str]  # combo labels of its unique points
    x_raw: np.ndarray  # unique points, original units (n x D)
    dmax: float
    cmeans: np.ndarray
    L: np.ndarray | None
    lscale_prior: tuple[str, float, float]

    def scaled(self, x_raw: np.ndarray) -> np.ndarray:
        return np.atleast_2d(np.asarray(x_raw, dtype=float)) / self.dmax

    @property
    def x(self) -> np.ndarray:
        return self.scaled(self.x_raw)


@dataclass
class GPPlan:
    """A GP term fitted to the data: the derived column, its groups (one per ``by`` level),
    brms' scaling constants and default ``lscale`` priors."""

    term: Any  # formula.GPTerm
    groups: list[GPGroup] = field(default_factory=list)
    lscale_override: Any = None  # the user's prior of lscale (a bambi.Prior), if any

    @property
    def label(self) -> str:
        return self.term.label

    @property
    def column(self) -> str:
        return self.term.column

    @property
    def approximate(self) -> bool:
        return self.term.k is not None

    def sd_names(self) -> list[str]:
        """brms' names of the GP's sd parameters: ``sdgp(gpx)``, ``sdgp(gpxfacA)``, ..."""
        return [f"sdgp({self.label}{g.level or ''})" for g in self.groups]

    def lscale_names(self) -> list[str]:
        return [f"lscale({self.label}{g.level or ''})" for g in self.groups]

    def basis(self, group: GPGroup, x_raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The approximate GP's basis at the points ``x_raw`` (original units)."""
        x = group.scaled(x_raw) - group.cmeans
        return hs_basis(x, int(self.term.k), group.L)


def plan_gp(frame: pd.DataFrame, term: Any) -> GPPlan:
    """Fit brms' data constants of a GP term (``.data_gp``) on the model's data.

    Raises
    ------
    DataError
        When a covariate is not numeric, or the points cannot be scaled (all equal).
    """
    for c in term.covariates:
        if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]):
            raise DataError(
                f"{term.text}: the covariate {c!r} must be numeric (brms: 'Predictors of "
                "Gaussian processes should be numeric vectors')."
            )
    labels = combo_labels(frame, term.covariates, term.by)
    x_all = np.column_stack([frame[c].to_numpy(dtype=float) for c in term.covariates])
    if term.by is None:
        levels: list[str | None] = [None]
        masks = [np.ones(len(frame), dtype=bool)]
    else:
        by = frame[term.by]
        if pd.api.types.is_numeric_dtype(by) and not pd.api.types.is_bool_dtype(by):
            raise DataError(
                f"{term.text}: by = {term.by} is numeric; brms multiplies the GP by a numeric "
                "'by', which lmmformula does not support yet. Make it a factor for one GP per "
                f"level: C({term.by}) in a new column."
            )
        values = by.astype(str)
        levels = sorted(values.unique())
        masks = [(values == lev).to_numpy() for lev in levels]
    plan = GPPlan(term)
    for level, mask in zip(levels, masks, strict=True):
        uniq_labels, first = np.unique(labels[mask], return_index=True)
        order = np.argsort(first)
        rows = np.flatnonzero(mask)[first[order]]
        x_raw = x_all[rows]
        dmax = float(np.sqrt(sq_dist(x_raw).max())) if term.scale else 1.0
        if not dmax > 0:
            where = f" within {term.by} = {level}" if level is not None else ""
            raise DataError(
                f"{term.text}: every point has the same covariate values{where}, so the GP "
                "cannot be scaled (brms: 'Could not scale GP covariates'); a GP needs two or "
                "more distinct points."
            )
        xs = x_raw / dmax
        cmeans = xs.mean(axis=0)
        L = None
        if term.k is not None:
            xc = xs - cmeans
            span = max(1.0, float(xc.max() - xc.min()))
            L = np.broadcast_to(np.asarray(term.c, dtype=float), (xs.shape[1],)) * span
        group = GPGroup(
            level=level,
            labels=[str(v) for v in uniq_labels[order]],
            x_raw=x_raw,
            dmax=dmax,
            cmeans=cmeans,
            L=L,
            lscale_prior=lscale_prior(xs),
        )
        plan.groups.append(group)
    return plan


# -- gr(g, cov = K) ----------------------------------------------------------------------------
def cov_cholesky(term: Any, levels: list[str], data2: Any, formula: str) -> np.ndarray:
    """The Cholesky factor of ``data2[term.key]`` restricted to ``levels`` (in that order).

    ``data2[key]`` is a pandas DataFrame whose index and columns are the level names, or a
    numpy array whose rows and columns follow the sorted levels of the grouping factor (R's
    factor order, which is also the order lmmformula reports levels in).

    Raises
    ------
    DataError
        The key is not in ``data2``, the matrix is not square, misses levels, is not symmetric
        or not positive definite; the message points at ``cov = K`` in the formula.
    """

    def fail(message: str, hint: str) -> DataError:
        return DataError(point_at(message, formula, term.start, term.end, hint))

    data2 = {} if data2 is None else data2
    if term.key not in data2:
        have = ", ".join(map(repr, data2)) or "nothing"
        return_hint = f"Pass data2={{{term.key!r}: K}} (data2 holds {have})."
        raise fail(f"gr(..., cov = {term.key}): {term.key!r} is not in data2", return_hint)
    matrix = data2[term.key]
    if isinstance(matrix, dict) and set(matrix) == {"index", "columns", "values"}:
        matrix = pd.DataFrame(matrix["values"], index=matrix["index"], columns=matrix["columns"])
    levels = [str(v) for v in levels]
    if isinstance(matrix, pd.DataFrame):
        index = [str(v) for v in matrix.index]
        columns = [str(v) for v in matrix.columns]
        missing = [lev for lev in levels if lev not in index or lev not in columns]
        if missing:
            raise fail(
                f"the covariance matrix {term.key!r} has no row or column for the level(s) "
                f"{', '.join(map(repr, missing[:5]))} of {term.factor!r}",
                "Name its rows and columns (index and columns) by the levels of the factor.",
            )
        rpos = [index.index(lev) for lev in levels]
        cpos = [columns.index(lev) for lev in levels]
        k = matrix.to_numpy(dtype=float)[np.ix_(rpos, cpos)]
    else:
        arr = np.asarray(matrix, dtype=float)
        if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
            raise fail(
                f"the covariance matrix {term.key!r} must be square, got shape {arr.shape}",
                "Pass a square matrix with one row and column per level.",
            )
        ordered = sorted(levels)
        if arr.shape[0] != len(ordered):
            raise fail(
                f"the covariance matrix {term.key!r} has {arr.shape[0]} rows but {term.factor!r} "
                f"has {len(ordered)} levels",
                "A numpy array's rows follow the sorted levels; or pass a DataFrame whose "
                "index and columns name the levels.",
            )
        pos = [ordered.index(lev) for lev in levels]
        k = arr[np.ix_(pos, pos)]
    if not np.all(np.isfinite(k)):
        raise fail(f"the covariance matrix {term.key!r} has non-finite values", "Fix the matrix.")
    if not np.allclose(k, k.T, rtol=1e-8, atol=1e-10 * max(1.0, float(np.abs(k).max()))):
        raise fail(
            f"the covariance matrix {term.key!r} is not symmetric",
            "A covariance matrix equals its transpose; e.g. use (K + K.T) / 2.",
        )
    try:
        return np.linalg.cholesky((k + k.T) / 2)
    except np.linalg.LinAlgError:
        smallest = float(np.linalg.eigvalsh((k + k.T) / 2).min())
        raise fail(
            f"the covariance matrix {term.key!r} is not positive definite (smallest eigenvalue "
            f"{smallest:.3g})",
            "brms needs a positive definite cov; add a small value to its diagonal.",
        ) from None


def encode_data2(frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """brms' data2 matrices as plain lists (``{"index", "columns", "values"}``, rows and columns
    named by level), so that a saved fit can rebuild its model."""
    return {
        key: {
            "index": [str(v) for v in frame.index],
            "columns": [str(v) for v in frame.columns],
            "values": frame.to_numpy(dtype=float).tolist(),
        }
        for key, frame in frames.items()
    }


def _as_frame(matrix: Any, levels: list[str]) -> pd.DataFrame | None:
    """A data2 matrix as a DataFrame named by level (a numpy array's rows follow the sorted
    levels); None when it cannot be read (cov_cholesky says why)."""
    if isinstance(matrix, dict) and set(matrix) == {"index", "columns", "values"}:
        return pd.DataFrame(matrix["values"], index=matrix["index"], columns=matrix["columns"])
    if isinstance(matrix, pd.DataFrame):
        return matrix
    arr = np.asarray(matrix, dtype=float)
    if arr.ndim != 2 or arr.shape != (len(levels), len(levels)):
        return None
    ordered = sorted(levels)
    return pd.DataFrame(arr, index=ordered, columns=ordered)


def check_cov_option(term: Any, noncentered: bool) -> None:
    if not noncentered:
        raise ModelError(
            f"gr({term.factor}, cov = {term.key}) is built non-centered (b = sd * chol(K) z); "
            f"leave noncentered on for {term.factor!r}."
        )


# -- PyMC --------------------------------------------------------------------------------------
def build_gp(plan: GPPlan, term: Any, levels: list[str], sd_prior: Any, dims: list[str]) -> Any:
    """The GP's values at the term's levels (the unique points), as a PyMC Deterministic named
    like the Bambi term; registers ``<term>_sigma`` (sdgp), ``<label>_lscale`` and
    ``<label>_zgp``. Call inside the PyMC model."""
    import pymc as pm
    import pytensor.tensor as pt

    from lmmformula._bambi import Prior, get_distribution_from_prior

    model = pm.modelcontext(None)
    name = term.alias or term.name
    n_groups = len(plan.groups)
    by_dim = None
    if plan.term.by is not None:
        by_dim = f"{plan.label}__by_dim"
        model.add_coords({by_dim: [g.level for g in plan.groups]})
    if not isinstance(sd_prior, Prior):
        raise ModelError(f"the sd of {plan.term.text} needs a prior distribution, got {sd_prior}.")
    dist = get_distribution_from_prior(sd_prior)
    kwargs = {k: v for k, v in sd_prior.args.items()}
    sdgp = dist(f"{name}_sigma", **kwargs, **({"dims": by_dim} if by_dim else {}))
    lscale = _lscale_variable(plan, by_dim)
    sd_v = sdgp if by_dim is None else None
    ls_v = lscale if by_dim is None else None

    label_pos = {str(lab): i for i, lab in enumerate(levels)}
    values = pt.zeros(len(levels))
    for j, g in enumerate(plan.groups):
        sd_j = sd_v if sd_v is not None else sdgp[j]
        ls_j = ls_v if ls_v is not None else lscale[j]
        idx = np.array([label_pos[lab] for lab in g.labels], dtype=int)
        suffix = "" if n_groups == 1 else f"_{j}"
        if plan.approximate:
            phi, slambda = plan.basis(g, g.x_raw)
            z = _zgp(model, f"{plan.label}_zgp{suffix}", phi.shape[1])
            spd = spd_exp_quad(slambda, sd_j, ls_j, xp=pt)
            f = pt.dot(phi, pt.sqrt(spd) * z)
        else:
            x = g.x
            d2 = sq_dist(x)
            corr = pt.exp(-d2 / (2 * ls_j**2)) + GP_NUGGET * np.eye(len(x))
            chol = pt.linalg.cholesky(corr)
            z = _zgp(model, f"{plan.label}_zgp{suffix}", len(x))
            f = sd_j * pt.dot(chol, z)
        values = pt.set_subtensor(values[idx], f)
    return pm.Deterministic(name, values, dims=dims)


def _zgp(model: Any, name: str, n: int) -> Any:
    """brms' ``zgp``: standard normals with a named dimension (so Bambi keeps the draws)."""
    import pymc as pm

    dim = f"{name}__dim"
    model.add_coords({dim: np.arange(n)})
    return pm.Normal(name, 0.0, 1.0, dims=dim)


def _lscale_variable(plan: GPPlan, by_dim: str | None) -> Any:
    """``<label>_lscale`` with brms' default prior of each GP (inverse gamma, or half-normal
    where brms' tuning fails)."""
    import pymc as pm
    import pytensor.tensor as pt

    name = f"{plan.label}_lscale"
    if plan.lscale_override is not None:
        from lmmformula._bambi import get_distribution_from_prior

        prior = plan.lscale_override
        dist = get_distribution_from_prior(prior)
        return dist(name, **prior.args, **({"dims": by_dim} if by_dim else {}))
    priors = [g.lscale_prior for g in plan.groups]
    if by_dim is None:
        kind, p1, p2 = priors[0]
        if kind == "inv_gamma":
            return pm.InverseGamma(name, alpha=p1, beta=p2)
        return pm.HalfNormal(name, sigma=p2)
    if all(k == "inv_gamma" for k, _, _ in priors):
        alpha = np.array([p1 for _, p1, _ in priors])
        beta = np.array([p2 for _, _, p2 in priors])
        return pm.InverseGamma(name, alpha=alpha, beta=beta, dims=by_dim)
    pieces = [
        pm.InverseGamma(f"{name}_{j}", alpha=p1, beta=p2)
        if k == "inv_gamma"
        else pm.HalfNormal(f"{name}_{j}", sigma=p2)
        for j, (k, p1, p2) in enumerate(priors)
    ]
    return pm.Deterministic(name, pt.stack(pieces), dims=by_dim)


def build_cov_term(term: Any, chol: np.ndarray, sd_prior: Any, dims: list[str]) -> Any:
    """``b = sd * chol(K) z`` for an uncorrelated group-level term on ``gr(g, cov = K)``."""
    import pymc as pm
    import pytensor.tensor as pt

    from lmmformula._bambi import Prior, get_distribution_from_prior

    name = term.alias or term.name
    if not isinstance(sd_prior, Prior):
        raise ModelError(f"the sd of {name} needs a prior distribution, got {sd_prior}.")
    expr_dims = dims[1:]
    dist = get_distribution_from_prior(sd_prior)
    sd = dist(f"{name}_sigma", **sd_prior.args, **({"dims": expr_dims} if expr_dims else {}))
    z = pm.Normal(f"{name}_offset", 0.0, 1.0, dims=dims)
    return pm.Deterministic(name, pt.dot(chol, z) * sd, dims=dims)


# -- prediction at new points ------------------------------------------------------------------
def gp_new_values(
    plan: GPPlan,
    f_levels: np.ndarray,
    level_labels: list[str],
    sdgp: np.ndarray,
    lscale: np.ndarray,
    new_labels: list[str],
    new_x: np.ndarray,
    new_by: list[str | None],
    rng: np.random.Generator,
) -> np.ndarray:
    """The GP at new points, per draw: ``(draws, n_new)``.

    ``f_levels`` (draws x levels) are the fitted values at the training points; ``sdgp`` and
    ``lscale`` are (draws,) or (draws, by-levels). Exact GPs draw from the conditional given
    the fitted values (brms' ``.predictor_gp_new``); approximate GPs evaluate the basis at the
    new points with the fitted basis coefficients, which needs the ``zgp`` draws and is done by
    :func:`hs_new_values` instead.
    """
    pos = {lab: i for i, lab in enumerate(level_labels)}
    n_draws = f_levels.shape[0]
    out = np.empty((n_draws, len(new_labels)))
    for j, g in enumerate(plan.groups):
        cols = [i for i, b in enumerate(new_by) if b == g.level]
        if not cols:
            continue
        x_old = g.x
        x_new = g.scaled(new_x[cols])
        old_idx = [pos[lab] for lab in g.labels]
        sd = sdgp if sdgp.ndim == 1 else sdgp[:, j]
        ls = lscale if lscale.ndim == 1 else lscale[:, j]
        for s in range(n_draws):
            mean, cov = conditional_mean_cov(x_old, f_levels[s, old_idx], x_new, sd[s], ls[s])
            w, v = np.linalg.eigh((cov + cov.T) / 2)
            draw = mean + v @ (np.sqrt(np.clip(w, 0, None)) * rng.standard_normal(len(w)))
            out[s, cols] = draw
    return out


def hs_new_values(
    plan: GPPlan,
    zgp: list[np.ndarray],
    sdgp: np.ndarray,
    lscale: np.ndarray,
    new_x: np.ndarray,
    new_by: list[str | None],
) -> np.ndarray:
    """The approximate GP at new points: the basis there times the fitted coefficients."""
    n_draws = sdgp.shape[0]
    out = np.zeros((n_draws, len(new_by)))
    for j, g in enumerate(plan.groups):
        cols = [i for i, b in enumerate(new_by) if b == g.level]
        if not cols:
            continue
        phi, slambda = plan.basis(g, new_x[cols])
        sd = sdgp if sdgp.ndim == 1 else sdgp[:, j]
        ls = lscale if lscale.ndim == 1 else lscale[:, j]
        spd = spd_exp_quad(slambda, sd[:, None], ls[:, None])
        out[:, cols] = (np.sqrt(spd) * zgp[j]) @ phi.T
    return out


# -- wiring into the model (called by lmmformula.model.Model) ---------------------------------
@dataclass(frozen=True)
class Specials:
    """The model's ``gp()`` and ``gr(g, cov = K)`` terms, planned (:func:`plan_specials`).

    Attributes
    ----------
    plans : dict of str to GPPlan
        Each GP by its Bambi term name (``1|gpx``).
    builders : dict of str to callable
        The seam's builders of those terms' coefficients (GPs, and ``gr(cov =)`` terms outside
        a correlated block), by Bambi term name.
    cov_chol : dict of str to numpy.ndarray
        For every ``gr(g, cov = K)`` term: the Cholesky factor of K over the term's levels.
    cov_frames : dict of str to pandas.DataFrame
        data2's matrices as level-named frames (saved with a fit).
    """

    plans: dict[str, GPPlan] = field(default_factory=dict)
    builders: dict[str, Any] = field(default_factory=dict)
    cov_chol: dict[str, np.ndarray] = field(default_factory=dict)
    cov_frames: dict[str, pd.DataFrame] = field(default_factory=dict)


def plan_specials(model: Any, data2: Any) -> Specials:
    """Plan the model's ``gp()`` and ``gr(cov =)`` terms (reads the model, changes nothing);
    the model hands the result to the seam in its build plan."""
    from lmmformula import _bambi

    translation = model.translation
    view = _bambi.view(model.bambi)
    in_blocks = {n for b in model.blocks.values() for n in b.terms}
    builders: dict[str, Any] = {}
    cov_chol: dict[str, np.ndarray] = {}
    cov_frames: dict[str, pd.DataFrame] = {}
    for name, cov in translation.cov_terms.items():
        levels = list(view.term(name).levels)
        chol = cov_cholesky(cov, levels, data2, translation.formula)
        cov_chol[name] = chol
        frame = _as_frame(data2[cov.key], levels)
        if frame is not None:
            cov_frames[cov.key] = frame
        if name not in in_blocks:
            check_cov_option(cov, model.noncentered.get(cov.factor, True))
            builders[name] = _CovBuilder(chol)
    plans: dict[str, GPPlan] = {}
    for gp in translation.gp_terms:
        plan = plan_gp(model.data, gp)
        resolved = getattr(model, "resolved_priors", None)
        plan.lscale_override = getattr(resolved, "lscale", {}).get(gp.label)
        plans[gp.term] = plan
        builders[gp.term] = _GPBuilder(plan)
    return Specials(plans, builders, cov_chol, cov_frames)


def gp_predictor(plans: dict[str, GPPlan]) -> Any:
    """``(predict_group_specific, component) -> wrapped``: Bambi's group-specific predictions
    with new GP points predicted from the GP's conditional (the seam installs it, through the
    build plan, when the model has GPs); None without GPs."""
    if not plans:
        return None
    return lambda original, component: _GPPredict(original, plans, component)


class _CovBuilder:
    def __init__(self, chol: np.ndarray) -> None:
        self.chol = chol

    def __call__(self, term: Any, dims: list[str]) -> Any:
        return build_cov_term(term, self.chol, term.prior.args.get("sigma"), dims)


class _GPBuilder:
    def __init__(self, plan: GPPlan) -> None:
        self.plan = plan

    def __call__(self, term: Any, dims: list[str]) -> Any:
        levels = [str(g) for g in term.groups]
        return build_gp(self.plan, term, levels, term.prior.args.get("sigma"), dims)


def _flat(da: Any) -> np.ndarray:
    """(chain, draw, ...) -> (chain * draw, ...)."""
    arr = da.transpose("chain", "draw", ...).to_numpy()
    return arr.reshape(arr.shape[0] * arr.shape[1], *arr.shape[2:])


class _GPPredict:
    """Bambi's ``predict_group_specific`` for new data whose GP points were not in the fit:
    those rows are predicted at a fitted point and corrected by the GP's difference there."""

    def __init__(self, original: Any, plans: dict[str, GPPlan], component: Any) -> None:
        self.original = original
        self.plans = plans
        self.component = component
        self.random_seed = None

    def __call__(self, posterior, data, in_sample, *args, **kwargs):
        if in_sample or data is None:
            return self.original(posterior, data, in_sample, *args, **kwargs)
        import xarray as xr

        data = data.copy()
        n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
        delta = np.zeros((n_chain * n_draw, len(data)))
        seed = kwargs.get("random_seed")
        rng = np.random.default_rng(seed)
        for name, plan in self.plans.items():
            term = self.component.group_specific_terms[name]
            levels = [str(g) for g in term.groups]
            labels = data[plan.column].astype(str).to_numpy()
            new = ~np.isin(labels, levels)
            if not new.any():
                continue
            term_draws = _flat(posterior[name])
            rows = np.flatnonzero(new)
            uniq, inverse = np.unique(labels[rows], return_inverse=True)
            first = rows[np.unique(inverse, return_index=True)[1]]
            x_new = np.column_stack(
                [data[c].to_numpy(dtype=float)[first] for c in plan.term.covariates]
            )
            by_new: list[str | None] = (
                [None] * len(first)
                if plan.term.by is None
                else [str(v) for v in data[plan.term.by].to_numpy()[first]]
            )
            known = {g.level for g in plan.groups}
            unknown = sorted({b for b in by_new if b not in known}, key=str)
            if unknown:
                raise DataError(
                    f"{plan.term.text}: by = {plan.term.by} has levels not in the fit: "
                    f"{', '.join(map(repr, unknown[:5]))}; there is no GP for them."
                )
            sdgp = _flat(posterior[f"{name}_sigma"])
            lscale = _flat(posterior[f"{plan.label}_lscale"])
            if plan.approximate:
                suffixes = (
                    [""] if len(plan.groups) == 1 else [f"_{j}" for j in range(len(plan.groups))]
                )
                zgp = [_flat(posterior[f"{plan.label}_zgp{sfx}"]) for sfx in suffixes]
                f_new = hs_new_values(plan, zgp, sdgp, lscale, x_new, by_new)
            else:
                f_new = gp_new_values(
                    plan, term_draws, levels, sdgp, lscale, list(uniq), x_new, by_new, rng
                )
            ref = levels[0]
            data.loc[new, plan.column] = ref
            delta[:, rows] += f_new[:, inverse] - term_draws[:, [0]]
        out = self.original(posterior, data, in_sample, *args, **kwargs)
        if not delta.any():
            return out
        correction = xr.DataArray(
            delta.reshape(n_chain, n_draw, len(data)), dims=("chain", "draw", "__obs__")
        )
        return out + correction


def summary_draws(post: Any, name: str, plan: GPPlan) -> list[tuple]:
    """Rows ``(grp, var1, var2, label, (chain, draw) draws)`` of the summary for a GP term:
    brms' ``sdgp(gpx)`` and ``lscale(gpx)`` (one of each per ``by`` level)."""
    sd = post[f"{name}_sigma"].transpose("chain", "draw", ...).to_numpy()
    ls = post[f"{plan.label}_lscale"].transpose("chain", "draw", ...).to_numpy()
    rows = []
    for j, (sd_name, ls_name) in enumerate(zip(plan.sd_names(), plan.lscale_names(), strict=True)):
        sd_j = sd if sd.ndim == 2 else sd[:, :, j]
        ls_j = ls if ls.ndim == 2 else ls[:, :, j]
        rows.append((plan.column, sd_name, None, sd_name, sd_j))
        rows.append((plan.column, ls_name, None, ls_name, ls_j))
    return rows
