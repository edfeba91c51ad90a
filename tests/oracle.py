"""Log densities of the models lmmformula builds, written from the model's equations.

numpy and scipy (stats, special) only: nothing here calls Bambi, PyMC or lmmformula. A test
describes a model in the terms of its equations (the fixed design, the group-level columns and
their grouping, the priors) built from the data frame by the test itself, and :func:`log_density`
evaluates the joint log density at a point of the PyMC model's free variables in PyMC's
transformed (unconstrained) space, Jacobians included, so it can be compared with
``pymc_model.compile_logp()(point)``.

The model::

    eta = Intercept + (X - mean(X)) b + sum over group terms of Z_t u_t[level]
    y ~ family(link^-1(eta))

Bambi centres the non-intercept fixed columns when the model has an intercept
(``center_predictors=True``): the free variable ``Intercept`` is the intercept of the centred
design, and the intercept Bambi reports is ``Intercept - mean(X) @ b``. The group-level columns
are not centred.

Group-level effects, per grouping factor:

* uncorrelated term ``t`` (one column): ``u = sigma_t * offset`` with ``offset ~ N(0, 1)``
  (non-centred; free variables ``{t}_sigma_log__`` and ``{t}_offset``) or ``u ~ N(0, sigma_t)``
  (centred; ``{t}_sigma_log__`` and ``{t}``);
* correlated block on factor ``g`` with k columns: the covariance's Cholesky factor ``L``
  (``pm.LKJCholeskyCov``: packed lower triangle, row-major, the diagonal log-transformed, free
  variable ``{g}_lkj_cholesky-cov-packed__``), and ``u_j = L z_j`` with ``z_j ~ N(0, I)``
  (non-centred, ``{g}_offset`` of shape (levels, k)) or ``u_j ~ MvN(0, L L')`` (centred,
  ``{g}_block``).

The density of ``L``: with ``s_i = ||L_i.||`` the standard deviations and ``C = diag(1/s) L``
the Cholesky factor of the correlation matrix ``R = C C'``,

    p(L) = prod_i p_i(s_i) * p_LKJ(C | eta) * prod_i C_ii / s_i^i        (i = 0, ..., k-1)

where the last factor is the Jacobian of ``L -> (s, C)``: row i of L is ``s_i`` times a unit
vector whose first i entries are free, ``|dL_i / d(s_i, C_i,<i)| = s_i^i / C_ii``. The LKJ
density of the correlation Cholesky factor is the LKJ density of R (Lewandowski, Kurowicka &
Joe 2009, J. Multivariate Anal. 100, eq. 16), ``det(R)^(eta-1) / c_k(eta)``, times the Jacobian
of ``C -> R``, ``prod_i C_ii^(k-1-i)`` (Stan Reference Manual, "Cholesky factors of correlation
matrices").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special, stats

__all__ = [
    "Block",
    "Fixed",
    "OracleModel",
    "Uncorrelated",
    "half",
    "indicators",
    "level_codes",
    "lkj_cholesky_cov_logpdf",
    "lkj_corr_cholesky_logpdf",
    "lkj_log_normalizer",
    "log_density",
    "unpack_lower",
]


# -- data -> design ------------------------------------------------------------------------
def level_codes(values: Any) -> tuple[np.ndarray, list[str]]:
    """Sorted levels of a grouping column and every row's index into them."""
    levels, codes = np.unique(np.asarray(values).astype(str), return_inverse=True)
    return codes.reshape(-1), [str(v) for v in levels]


def indicators(values: Any, levels: list[str]) -> np.ndarray:
    """(n, len(levels)) 0/1 columns, one per level (a factor's dummy columns)."""
    values = np.asarray(values).astype(str)
    return np.column_stack([(values == lev).astype(float) for lev in levels])


# -- priors --------------------------------------------------------------------------------
class half:
    """A distribution folded at 0 (brms' half priors): density ``2 p(x)`` for ``x > 0``."""

    def __init__(self, dist: Any) -> None:
        self.dist = dist

    def logpdf(self, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return np.where(x > 0, np.log(2.0) + self.dist.logpdf(x), -np.inf)


# -- the LKJ pieces ------------------------------------------------------------------------
def unpack_lower(packed: np.ndarray, k: int) -> np.ndarray:
    """A k x k lower-triangular matrix from its packed row-major lower triangle
    ``[L00, L10, L11, L20, L21, L22, ...]`` (PyMC's packing)."""
    packed = np.asarray(packed, dtype=float)
    if packed.shape != (k * (k + 1) // 2,):
        raise ValueError(f"a packed {k}x{k} lower triangle has {k * (k + 1) // 2} entries")
    out = np.zeros((k, k))
    pos = 0
    for i in range(k):
        out[i, : i + 1] = packed[pos : pos + i + 1]
        pos += i + 1
    return out


def lkj_log_normalizer(eta: float, k: int) -> float:
    """``log c_k(eta)``, the integral of ``det(R)^(eta - 1)`` over k x k correlation matrices.

    Lewandowski, Kurowicka & Joe (2009), eq. 16::

        c_k = 2^(sum_{i=1}^{k-1} (2 eta - 2 + k - i)(k - i))
              * prod_{i=1}^{k-1} B(eta + (k - i - 1)/2, eta + (k - i - 1)/2)^(k - i)
    """
    out = 0.0
    for i in range(1, k):
        a = eta + (k - i - 1) / 2.0
        out += (2 * eta - 2 + k - i) * (k - i) * np.log(2.0)
        out += (k - i) * special.betaln(a, a)
    return float(out)


def lkj_corr_cholesky_logpdf(c: np.ndarray, eta: float) -> float:
    """Log density of the Cholesky factor C of an LKJ(eta) correlation matrix, with respect to
    its strictly lower entries."""
    k = c.shape[0]
    diag = np.diag(c)
    log_det_r = 2.0 * np.sum(np.log(diag))
    jacobian = sum((k - 1 - i) * np.log(diag[i]) for i in range(k))
    return float((eta - 1.0) * log_det_r - lkj_log_normalizer(eta, k) + jacobian)


def lkj_cholesky_cov_logpdf(chol: np.ndarray, eta: float, sd_priors: list[Any]) -> float:
    """Log density of a covariance Cholesky factor L with respect to its lower entries, for
    standard deviations with the priors ``sd_priors`` (one per row) and an LKJ(eta)
    correlation."""
    k = chol.shape[0]
    sds = np.sqrt(np.sum(chol**2, axis=1))
    corr_chol = chol / sds[:, None]
    log_sd = sum(float(prior.logpdf(s)) for prior, s in zip(sd_priors, sds, strict=True))
    jacobian = sum(np.log(corr_chol[i, i]) - i * np.log(sds[i]) for i in range(k))
    return log_sd + lkj_corr_cholesky_logpdf(corr_chol, eta) + float(jacobian)


# -- model description ---------------------------------------------------------------------
@dataclass
class Fixed:
    """The population-level part: ``columns`` (n, p) without the intercept, their names as
    PyMC names the coefficients, and one scipy prior per coefficient."""

    columns: np.ndarray
    names: list[str]
    priors: list[Any]
    intercept_prior: Any | None = None  # None: no intercept

    def eta(self, point: dict[str, np.ndarray], used: set[str]) -> tuple[np.ndarray, float]:
        n = self.columns.shape[0]
        x = np.asarray(self.columns, dtype=float).reshape(n, -1)
        eta = np.zeros(n)
        logp = 0.0
        if self.intercept_prior is not None:
            b0 = float(point["Intercept"])
            used.add("Intercept")
            eta += b0
            logp += float(self.intercept_prior.logpdf(b0))
            x = x - x.mean(axis=0)  # Bambi's centring (see the module notes)
        for j, (name, prior) in enumerate(zip(self.names, self.priors, strict=True)):
            b = float(point[name])
            used.add(name)
            eta += b * x[:, j]
            logp += float(prior.logpdf(b))
        return eta, logp


@dataclass
class Uncorrelated:
    """One group-level term with its own standard deviation: ``u ~ N(0, sigma)`` per level."""

    name: str  # Bambi's name: "1|g", "x|g", "1|a:b"
    column: np.ndarray  # (n,)
    codes: np.ndarray  # (n,) level of every row
    sd_prior: Any

    def eta(
        self, point: dict[str, np.ndarray], used: set[str], noncentered: bool
    ) -> tuple[np.ndarray, float]:
        log_sigma = float(point[f"{self.name}_sigma_log__"])
        used.add(f"{self.name}_sigma_log__")
        sigma = np.exp(log_sigma)
        # prior of sigma plus the log-Jacobian of sigma = exp(value)
        logp = float(self.sd_prior.logpdf(sigma)) + log_sigma
        if noncentered:
            offset = np.asarray(point[f"{self.name}_offset"], dtype=float)
            used.add(f"{self.name}_offset")
            u = sigma * offset
            logp += float(stats.norm.logpdf(offset).sum())
        else:
            u = np.asarray(point[self.name], dtype=float)
            used.add(self.name)
            logp += float(stats.norm.logpdf(u, scale=sigma).sum())
        return u[self.codes] * self.column, logp


@dataclass
class Block:
    """A correlated block on one grouping factor: k columns, ``u_j ~ MvN(0, L L')``."""

    factor: str  # as in the PyMC names: "g" -> "g_lkj", "g_offset", "g_block"
    columns: np.ndarray  # (n, k), in the block's order
    codes: np.ndarray  # (n,)
    sd_priors: list[Any]  # one per column
    eta_lkj: float = 2.0

    def eta(
        self, point: dict[str, np.ndarray], used: set[str], noncentered: bool
    ) -> tuple[np.ndarray, float]:
        k = self.columns.shape[1]
        key = f"{self.factor}_lkj_cholesky-cov-packed__"
        packed = np.asarray(point[key], dtype=float).copy()
        used.add(key)
        diag_pos = np.cumsum(np.arange(1, k + 1)) - 1  # positions of L_ii in the packing
        log_diag = packed[diag_pos]
        packed[diag_pos] = np.exp(log_diag)
        chol = unpack_lower(packed, k)
        # density of L plus the log-Jacobian of L_ii = exp(value)
        logp = lkj_cholesky_cov_logpdf(chol, self.eta_lkj, self.sd_priors) + float(log_diag.sum())
        if noncentered:
            z = np.asarray(point[f"{self.factor}_offset"], dtype=float)
            used.add(f"{self.factor}_offset")
            u = z @ chol.T  # row j: L z_j
            logp += float(stats.norm.logpdf(z).sum())
        else:
            u = np.asarray(point[f"{self.factor}_block"], dtype=float)
            used.add(f"{self.factor}_block")
            cov = chol @ chol.T
            logp += float(stats.multivariate_normal(np.zeros(k), cov).logpdf(u).sum())
        return np.sum(u[self.codes] * self.columns, axis=1), logp


@dataclass
class OracleModel:
    """A whole model: response, family, fixed part, group terms and the family's priors."""

    y: np.ndarray
    family: str  # "gaussian", "binomial", "poisson"
    fixed: Fixed
    groups: list[Uncorrelated | Block] = field(default_factory=list)
    sigma_prior: Any | None = None  # gaussian only
    trials: np.ndarray | None = None  # binomial only

    def parts(
        self, point: dict[str, np.ndarray], noncentered: bool
    ) -> tuple[float, float, np.ndarray]:
        """``(log-likelihood, log prior with Jacobians, linear predictor)``; every free
        variable of ``point`` must be used."""
        used: set[str] = set()
        eta, log_prior = self.fixed.eta(point, used)
        for term in self.groups:
            contribution, lp = term.eta(point, used, noncentered)
            eta = eta + contribution
            log_prior += lp
        y = np.asarray(self.y, dtype=float)
        if self.family == "gaussian":
            log_sigma = float(point["sigma_log__"])
            used.add("sigma_log__")
            sigma = np.exp(log_sigma)
            log_prior += float(self.sigma_prior.logpdf(sigma)) + log_sigma
            loglik = stats.norm.logpdf(y, loc=eta, scale=sigma).sum()
        elif self.family == "binomial":
            # logit link: log p = log_expit(eta), log(1 - p) = log_expit(-eta), stable where
            # expit(eta) rounds to 1
            n = np.asarray(self.trials, dtype=float)
            log_choose = (
                special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)
            )
            loglik = np.sum(
                log_choose + y * special.log_expit(eta) + (n - y) * special.log_expit(-eta)
            )
        elif self.family == "poisson":
            # log link: rate exp(eta)
            loglik = np.sum(y * eta - np.exp(eta) - special.gammaln(y + 1))
        else:  # pragma: no cover - a test's mistake
            raise ValueError(self.family)
        unused = set(point) - used
        if unused:
            raise AssertionError(f"free variables the equations do not have: {sorted(unused)}")
        return float(loglik), float(log_prior), eta


def log_density(model: OracleModel, point: dict[str, np.ndarray], noncentered: bool) -> float:
    """The joint log density (transformed space, Jacobians included) at ``point``."""
    loglik, log_prior, _ = model.parts(point, noncentered)
    return loglik + log_prior


def printed_table(text: str, section: str) -> dict[str, list[str]]:
    """The rows of one table of a printed summary, ``{label: [Estimate, Est.Error, l-95% CI,
    u-95% CI, ...]}`` as printed (the section title, then a column header, then rows)."""
    lines = text.splitlines()
    start = lines.index(section) + 2
    rows = {}
    for line in lines[start:]:
        if not line.strip():
            break
        label, *values = line.split()
        rows[label] = values
    return rows
