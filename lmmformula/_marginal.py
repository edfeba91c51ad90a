"""Integrating a gaussian varying intercept out of a gaussian identity-link model, exactly.

For a gaussian model with identity link, write the linear predictor as ``eta + u_{f[i]}`` where
``u_f ~ N(0, tau^2)`` independently per level of a grouping factor ``f`` and ``eta`` holds
everything else (fixed effects, offsets, every other group-level term). Given ``eta``, the
residuals ``r_j = y_j - eta_j`` of the ``n_j`` rows of level ``j`` are multivariate normal with
covariance ``sigma^2 I + tau^2 11'``. By the matrix determinant lemma and Sherman-Morrison, with
``S1_j = sum r_j``, ``S2_j = sum r_j^2`` and ``v_j = sigma^2 + n_j tau^2``,

    log p(r_j) = -n_j/2 log(2 pi) - (n_j - 1) log(sigma) - 1/2 log(v_j)
                 - (S2_j - S1_j^2 / n_j) / (2 sigma^2) - S1_j^2 / (2 n_j v_j),

one pass over the rows for all levels. The sampler then never sees the ``J`` effects of ``f``
(InstEval: 2,972 of 4,120 dimensions). After sampling, each draw's effects are drawn from their
exact conditional,

    u_j | y, rest ~ N(tau^2 S1_j / v_j, sigma^2 tau^2 / v_j),

so the posterior keeps Bambi's variables (``1|f`` and ``1|f_sigma``) and ``ranef``, ``coef``,
``predict`` and ``loo`` work unchanged; the joint draws have the full model's distribution.

When it applies (:func:`marginal_unsupported`, :func:`candidates`): the model qualifies for the
sufficient-statistics likelihood (gaussian family, identity link, ``sigma`` not modelled by a
formula, plain response without weights, censoring or truncation, no HSGP terms) and has no
precision weights; the term is a varying intercept ``(1|f)`` (its predictor is 1 on every row)
that is not in a correlated block, with Bambi's ``Normal(mu=0, sigma=Prior(...))`` prior (any
prior on ``sigma``). Other uncorrelated terms on the same factor (``(1|f) + (0 + x|f)``, or
``(1 + x||f)``) stay sampled and do not prevent it, since they enter ``eta``. With
``marginalize="auto"`` the factor with the most levels is integrated out when it has at least
:data:`MIN_LEVELS` levels and the sufficient-statistics likelihood is not used.

Pure numpy and pytensor; :mod:`lmmformula._bambi` calls :func:`build_sigma` and
:func:`build_response` while building, and :func:`add_effect_draws` after sampling.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt
import scipy as sp

__all__ = [
    "MIN_LEVELS",
    "MarginalTerm",
    "add_effect_draws",
    "build_response",
    "build_sigma",
    "candidates",
    "choose",
    "conditional",
    "level_sums",
    "logp",
    "logp_numpy",
    "marginal_unsupported",
]

MIN_LEVELS = 100
"""``marginalize="auto"`` integrates out a factor with at least this many levels."""


@dataclass(frozen=True)
class MarginalTerm:
    """The varying intercept that is integrated out."""

    name: str
    factor: str
    sigma_name: str
    levels: tuple[str, ...]


# -- the density ----------------------------------------------------------------------------
def logp(resid, index, counts: np.ndarray, sigma, tau):
    """Log density of the residuals with the level effects integrated out (pytensor).

    Parameters
    ----------
    resid : TensorVariable
        (n,) ``y - eta``.
    index : numpy.ndarray
        (n,) level of every row, ``0 .. J-1``.
    counts : numpy.ndarray
        (J,) rows per level (all positive).
    sigma, tau : TensorVariable
        Residual sd and the effects' sd.
    """
    counts = np.asarray(counts, dtype=float)
    n, n_levels = float(counts.sum()), counts.size
    # the smallest unsigned type that holds the codes (uint16 for a few thousand levels): the
    # scatter and gather loops read a quarter of int64's memory traffic
    index = np.asarray(index).astype(np.min_scalar_type(max(n_levels - 1, 0)))
    s1 = pt.inc_subtensor(pt.zeros(n_levels)[pt.as_tensor_variable(index)], resid)
    s2 = pt.sum(pt.square(resid))
    sigma2 = pt.square(sigma)
    v = sigma2 + counts * pt.square(tau)
    within = s2 - pt.sum(pt.square(s1) / counts)
    return (
        -0.5 * n * np.log(2 * np.pi)
        - (n - n_levels) * pt.log(sigma)
        - 0.5 * pt.sum(pt.log(v))
        - 0.5 * within / sigma2
        - 0.5 * pt.sum(pt.square(s1) / (counts * v))
    )


def logp_numpy(resid, index, counts, sigma: float, tau: float) -> float:
    """:func:`logp` in numpy (for checks)."""
    resid = np.asarray(resid, dtype=float)
    counts = np.asarray(counts, dtype=float)
    s1 = np.bincount(index, weights=resid, minlength=counts.size)
    v = sigma**2 + counts * tau**2
    within = np.sum(resid**2) - np.sum(s1**2 / counts)
    return float(
        -0.5 * counts.sum() * np.log(2 * np.pi)
        - (counts.sum() - counts.size) * np.log(sigma)
        - 0.5 * np.sum(np.log(v))
        - 0.5 * within / sigma**2
        - 0.5 * np.sum(s1**2 / (counts * v))
    )


def conditional(s1, counts, sigma, tau) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd of the level effects given the residual sums ``s1`` (broadcasting: ``s1``
    (draws, J), ``counts`` (J,), ``sigma`` and ``tau`` (draws, 1))."""
    counts = np.asarray(counts, dtype=float)
    v = sigma**2 + counts * tau**2
    return tau**2 * s1 / v, np.sqrt(sigma**2 * tau**2 / v)


# -- which term ------------------------------------------------------------------------------
def marginal_unsupported(bambi_model) -> str | None:
    """Why no term of the model can be integrated out (``None`` when one may be)."""
    from lmmformula import _bambi

    reason = _bambi.suffstats_unsupported(bambi_model)
    if reason is not None:
        return reason
    if getattr(bambi_model, "lkj_precision_weights", None) is not None:
        return "the model has precision weights"
    return None


def candidates(bambi_model) -> dict[str, MarginalTerm]:
    """The varying intercepts that may be integrated out, by Bambi name."""
    from bambi.priors import Prior

    from lmmformula import _bambi

    if marginal_unsupported(bambi_model) is not None:
        return {}
    in_blocks = {t for spec in getattr(bambi_model, "lkj_blocks", {}).values() for t in spec.terms}
    out = {}
    for key, term in _bambi.group_specific_terms(bambi_model).items():
        name = term.alias or key
        if key in in_blocks or name in in_blocks or not name.startswith("1|"):
            continue
        predictor = np.asarray(_bambi.term_predictor(term), dtype=float)
        if predictor.ndim != 1 or not np.all(predictor == 1.0):
            continue
        prior = term.prior
        if not isinstance(prior, Prior) or prior.name != "Normal":
            continue
        if set(prior.args) - {"mu", "sigma"} or not isinstance(prior.args.get("sigma"), Prior):
            continue
        mu = prior.args.get("mu", 0.0)
        if isinstance(mu, Prior) or np.any(np.asarray(mu, dtype=float) != 0):
            continue
        sigma_key = term.hyperprior_alias.get("sigma", "sigma")
        out[key] = MarginalTerm(
            name=name,
            factor=name.split("|", 1)[1],
            sigma_name=f"{name}_{sigma_key}",
            levels=tuple(str(g) for g in term.groups),
        )
    return out


def choose(bambi_model, marginalize: bool | str, likelihood: str) -> tuple[str | None, str]:
    """The Bambi name of the term to integrate out (or ``None``) and why.

    ``marginalize=True`` integrates out the varying intercept with the most levels (an error
    when there is none, even over a sufficient-statistics likelihood); ``"auto"`` does so when
    the model samples on the full data and that factor has at least :data:`MIN_LEVELS`
    levels; ``False`` never.
    """
    from lmmformula.errors import ModelError

    if marginalize is False:
        return None, "marginalize=False"
    found = candidates(bambi_model)
    if not found:
        reason = marginal_unsupported(bambi_model) or "no varying intercept (1|g) qualifies"
        if marginalize is True:
            raise ModelError(
                f"marginalize=True, but no group-level effect can be integrated out: {reason}. "
                "It needs a gaussian identity-link model and a varying intercept (1|g) outside "
                "any correlated block; use marginalize='auto' or False."
            )
        return None, reason
    key = max(found, key=lambda k: len(found[k].levels))
    n_levels = len(found[key].levels)
    if marginalize == "auto":
        if likelihood != "full data":
            return None, f"the {likelihood} likelihood is used"
        if n_levels < MIN_LEVELS:
            return None, f"{found[key].name} has {n_levels} levels (< {MIN_LEVELS})"
    return key, f"{found[key].name} ({n_levels} levels) integrated out"


# -- building -------------------------------------------------------------------------------
def build_sigma(term, noncentered: bool):
    """The term's sd, ``1|g_sigma``, with its own prior (the effects are not built)."""
    from bambi.backend.terms import GroupSpecificTerm

    name = term.alias or term.name
    sigma_key = term.hyperprior_alias.get("sigma", "sigma")
    return GroupSpecificTerm(term, noncentered).build_distribution(
        prior=term.prior.args["sigma"], label=f"{name}_{sigma_key}", dims=None
    )


def build_response(spec, eta, sigma, tau, term) -> None:
    """Add the marginal likelihood as one ``pm.Potential`` named ``{response}_marginal``."""
    import pymc as pm

    y = np.asarray(np.squeeze(spec.response_term.data), dtype=float)
    index = np.asarray(term.group_index)
    counts = np.bincount(index, minlength=len(term.groups))
    response = spec.response_term.alias or spec.response_term.name
    pm.Potential(f"{response}_marginal", logp(y - eta, index, counts, sigma, tau))


# -- after sampling -------------------------------------------------------------------------
def _draws(posterior, name: str, factor_first: bool = False) -> np.ndarray:
    """(chain * draw, k) values of a posterior variable, its factor dimension first."""
    da = posterior[name]
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    if factor_first:
        dims = sorted(dims, key=lambda d: not d.endswith("__factor_dim"))
    values = da.transpose("chain", "draw", *dims).values
    return values.reshape(values.shape[0] * values.shape[1], -1)


def level_sums(bambi_model, posterior, key: str) -> np.ndarray:
    """Per draw and level, the sum of the residuals ``y - eta`` (eta without the integrated
    term): (chain * draw, J), from the uncentred posterior through sparse level sums."""
    from lmmformula import _bambi

    parts = _bambi.design_parts(bambi_model)
    term = _bambi.group_specific_terms(bambi_model)[key]
    index = np.asarray(term.group_index)
    n, n_levels = index.size, len(term.groups)
    a = sp.sparse.csr_matrix((np.ones(n), (index, np.arange(n))), shape=(n_levels, n))
    y = np.asarray(np.squeeze(bambi_model.response_term.data), dtype=float)
    if parts.offset is not None:
        y = y - parts.offset
    sums = np.empty((posterior.sizes["chain"] * posterior.sizes["draw"], n_levels))
    sums[:] = a @ y
    aliases = {
        k: (t.alias or k)
        for k, t in _bambi.common_terms(bambi_model).items()
        if t is not None  # pragma: no branch
    }
    if parts.x.shape[1]:
        coefs = np.column_stack(
            [_draws(posterior, aliases.get(t, t))[:, j] for _, t, j in parts.x_columns]
        )
        sums -= coefs @ (a @ parts.x).T
    name = term.alias or term.name
    keep = [i for i, col in enumerate(parts.z_columns) if col[2] != name]
    if keep:
        z = parts.z[:, keep]
        order: list[str] = []
        for col in (parts.z_columns[i] for i in keep):
            if not order or order[-1] != col[2]:
                order.append(col[2])
        u = np.concatenate([_draws(posterior, t, factor_first=True) for t in order], axis=1)
        az_other = (a @ z).tocsr()
        sums -= (az_other @ u.T).T
    return sums


def _seed(posterior, names: list[str]) -> int:
    """A seed derived from the draws themselves: the same draws give the same effects."""
    h = hashlib.sha256()
    for name in names:
        h.update(np.ascontiguousarray(posterior[name].values).tobytes())
    return int.from_bytes(h.digest()[:8], "little")


def add_effect_draws(posterior, bambi_model, key: str):
    """The posterior with ``1|g`` drawn from its exact conditional given each draw."""
    import xarray as xr

    from lmmformula import _bambi

    term = _bambi.group_specific_terms(bambi_model)[key]
    found = candidates(bambi_model)[key]
    counts = np.bincount(np.asarray(term.group_index), minlength=len(term.groups))
    effects = level_sums(bambi_model, posterior, key)  # (draws, J), turned in place into
    sigma2 = np.square(_draws(posterior, "sigma"))  # the effects (arrays of 12M values for
    tau2 = np.square(_draws(posterior, found.sigma_name))  # InstEval: no temporaries)
    inv_v = np.multiply(tau2, counts.astype(float))
    inv_v += sigma2
    np.reciprocal(inv_v, out=inv_v)
    effects *= inv_v
    effects *= tau2  # conditional mean tau^2 S1 / v
    inv_v *= sigma2 * tau2
    np.sqrt(inv_v, out=inv_v)  # conditional sd sqrt(sigma^2 tau^2 / v)
    rng = np.random.default_rng(_seed(posterior, ["sigma", found.sigma_name]))
    noise = rng.standard_normal(effects.shape)
    noise *= inv_v
    effects += noise
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    from bambi.backend.terms import GroupSpecificTerm

    # Bambi's dim for the levels (``g__factor_dim``), as the full model's ``1|g`` has it
    dim = next(d for d in GroupSpecificTerm(term, True).coords if d.endswith("__factor_dim"))
    da = xr.DataArray(
        effects.reshape(chains, draws, -1),
        dims=("chain", "draw", dim),
        coords={
            "chain": posterior["chain"].values,
            "draw": posterior["draw"].values,
            dim: list(term.groups),
        },
    )
    return posterior.assign({found.name: da})
