"""Prior predictive checks: what a model's priors say about the outcome before seeing it.

:func:`prior_check` draws the parameters from their priors (Bambi's ``prior_predictive``),
computes the outcome's mean that every draw implies for every observed row (and, on request,
for chosen predictor values), and compares both with the observed data. Priors that put
substantial mass on impossible or absurd outcomes are flagged, and each flag names the
parameter whose prior drives it.
"""

from __future__ import annotations

import functools
import logging
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from lmmformula import _bambi
from lmmformula._families import LOG_LOCATION, NOT_ONE_NUMBER, POSITIVE_MEAN
from lmmformula._text import format_number
from lmmformula.errors import DataError, ModelError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lmmformula.model import Model

__all__ = ["PriorCheck", "prior_check"]

ATTRIBUTION_ROWS = 500
"""Largest number of observed rows on which flags are attributed (a seeded random subset)."""

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
QUANTILE_COLUMNS = [f"q{round(q * 100):02d}" for q in QUANTILES]

PROBABILITY_LINKS = {"logit", "probit", "cloglog", "cauchit"}

# Inverses of the response transforms that are recognised in a formula's left-hand side.
_INVERSES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "log": np.exp,
    "log10": lambda v: np.power(10.0, v),
    "log2": lambda v: np.power(2.0, v),
    "log1p": np.expm1,
}
_TRANSFORM_RE = re.compile(r"^\s*(?:np\.|numpy\.)?(log|log10|log2|log1p)\(\s*([^()]+?)\s*\)\s*$")


# -- the result ------------------------------------------------------------------------------
@dataclass
class PriorCheck:
    """The result of :func:`prior_check`: a printable report with the numbers behind it.

    Attributes
    ----------
    flagged : bool
        Whether any finding was flagged.
    flags : list of str
        Plain-language findings; each names the parameter whose prior drives it.
    table : pandas.DataFrame
        Quantiles (``q01`` ... ``q99``) of the observed outcome, of the implied means and of
        the prior predictive draws, on the outcome's scale and, where the response is a
        transform, on the original scale; ``outside`` is the share of draws outside the
        plausible band (or piled at 0/1 for probabilities) that the flag rule judges.
    attribution : pandas.DataFrame
        For every check and parameter: the share judged by the rule when that parameter is
        fixed at its prior median (``share_fixed``) against the share with all priors free
        (``share``). The parameter with the lowest ``share_fixed`` drives the finding.
    band : tuple of float
        The plausible band of the outcome's mean (on the outcome's scale; for positive
        families, the band of the mean itself).
    notes : list of str
        How to read the numbers (e.g. what the intercept's prior is the prior of).
    idata : xarray.DataTree
        Bambi's prior predictive draws (``prior``, ``prior_predictive``, ``observed_data``).
    """

    model: Model
    response: str
    family: str
    kind: str
    draws: int
    observed: np.ndarray
    implied_mean: np.ndarray
    predictive: np.ndarray
    band: tuple[float, float]
    table: pd.DataFrame
    flags: list[str]
    attribution: pd.DataFrame
    settings: dict[str, float]
    priors: dict[str, str]
    notes: list[str] = field(default_factory=list)
    at_means: dict[str, np.ndarray] = field(default_factory=dict)
    original_label: str | None = None
    original: Callable[[np.ndarray], np.ndarray] | None = None
    idata: Any = None

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def __str__(self) -> str:
        s = self.settings
        lines = [
            f"Prior predictive check: {self.model.formula}",
            f"  family {self.family}; {self.draws} prior draws; {len(self.observed)} rows",
            "  priors: " + "; ".join(f"{k} ~ {v}" for k, v in self.priors.items()),
        ]
        lo, hi = float(np.min(self.observed)), float(np.max(self.observed))
        if self.kind == "probability":
            lines.append(
                f"  rule: flag when more than {s['p_tol']:.0%} of the implied probabilities are "
                f"below {s['p_edge']:g} or above {1 - s['p_edge']:g}"
            )
        else:
            what = "on the log scale " if self.kind == "positive" else ""
            lines.append(
                f"  observed {self.response}: [{format_number(lo)}, {format_number(hi)}]; "
                f"plausible band for the mean (observed range widened {what}by k = {s['k']:g} "
                "times its width): "
                f"[{format_number(self.band[0])}, {format_number(self.band[1])}]"
            )
            lines.append(
                f"  rule: flag when more than {s['tol']:.0%} of the implied means (or "
                f"{s['tol_predictive']:.0%} of the prior predictive draws) fall outside the band"
            )
        lines += ["", _format_table(self.table), ""]
        if self.flags:
            lines.append(f"FLAGGED ({len(self.flags)}):")
            lines += [f"  - {f}" for f in self.flags]
        else:
            lines.append("No flags: the priors keep the implied outcomes within plausible values.")
        if self.notes:
            lines += ["", "Notes:"]
            lines += [f"  - {n}" for n in self.notes]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:  # notebooks
        text = str(self).replace("&", "&amp;").replace("<", "&lt;")
        return f'<pre style="font-family: monospace">{text}</pre>'

    def plot(self, ndraws: int = 50, random_seed: int | None = 0) -> Figure:
        """The prior predictive against the observed distribution.

        Left: the observed outcome's density (thick) over the densities of ``ndraws`` prior
        predictive replicates (thin). Right: the distribution of the implied means (and at the
        ``at=`` values) against the observed range (shaded) and the plausible band (dashed).
        A third panel shows the implied means on the original scale when there is one.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        n_panels = 3 if self.original is not None else 2
        fig, axes = plt.subplots(1, n_panels, figsize=(5.2 * n_panels, 4.0))
        rng = np.random.default_rng(random_seed)
        scale_obs = self.observed
        lo, hi = float(np.min(scale_obs)), float(np.max(scale_obs))

        # Panel 1: prior predictive replicates over the observed distribution.
        ax = axes[0]
        pred = self.predictive
        pick = rng.choice(pred.shape[0], size=min(ndraws, pred.shape[0]), replace=False)
        lim = _limits(np.concatenate([pred[pick].ravel(), scale_obs]), q=0.02)
        bins = np.linspace(lim[0], lim[1], 81)
        centers = 0.5 * (bins[1:] + bins[:-1])
        for i, j in enumerate(pick):
            dens, _ = np.histogram(pred[j], bins=bins, density=True)
            ax.plot(
                centers,
                dens,
                color="C0",
                alpha=0.25,
                lw=0.8,
                label="prior predictive" if i == 0 else None,
            )
        dens, _ = np.histogram(scale_obs, bins=bins, density=True)
        ax.plot(centers, dens, color="k", lw=2.0, label="observed")
        ax.set_xlabel(self.response)
        ax.set_ylabel("density")
        ax.set_title(f"Prior predictive ({len(pick)} draws) vs observed")
        ax.legend(loc="best", fontsize="x-small")

        # Panel 2: implied means against the observed range and the band.
        ax = axes[1]
        means = [("implied mean, observed rows", self.implied_mean.ravel())]
        means += [(f"implied mean at {k}", v.ravel()) for k, v in self.at_means.items()]
        lim = _limits(np.concatenate([m for _, m in means] + [scale_obs]))
        if self.kind == "real":
            lim = (min(lim[0], self.band[0]), max(lim[1], self.band[1]))
            lim = (lim[0] - 0.05 * (lim[1] - lim[0]), lim[1] + 0.05 * (lim[1] - lim[0]))
        elif self.kind == "positive":
            lim = (max(lim[0], 0.0), lim[1])
        bins = np.linspace(lim[0], lim[1], 61)
        for i, (label, values) in enumerate(means):
            ax.hist(
                values, bins=bins, density=True, histtype="step", color=f"C{i}", lw=1.5, label=label
            )
        ax.axvspan(lo, hi, color="0.8", alpha=0.5, label="observed range")
        if self.kind != "probability":
            for edge in self.band:
                if np.isfinite(edge):
                    ax.axvline(edge, color="C3", ls="--", lw=1.2)
            ax.plot([], [], color="C3", ls="--", label="plausible band")
        else:
            for edge in (self.settings["p_edge"], 1 - self.settings["p_edge"]):
                ax.axvline(edge, color="C3", ls="--", lw=1.2)
        ax.set_xlabel(f"implied mean of {self.response}")
        ax.set_ylabel("density")
        ax.set_title("Implied means vs observed range")
        ax.legend(loc="best", fontsize="x-small")

        # Panel 3: the same on the original scale (log axis: magnitudes).
        if self.original is not None:
            ax = axes[2]
            with np.errstate(over="ignore", invalid="ignore"):
                orig_obs = self.original(scale_obs)
                orig_means = self.original(self.implied_mean.ravel())
            orig_means = orig_means[np.isfinite(orig_means) & (orig_means > 0)]
            orig_obs = orig_obs[np.isfinite(orig_obs) & (orig_obs > 0)]
            both = np.log10(np.concatenate([orig_means, orig_obs]))
            lims = _limits(both)
            bins = np.logspace(lims[0], lims[1], 61)
            ax.hist(
                orig_means,
                bins=bins,
                density=False,
                weights=np.full(orig_means.size, 1.0 / max(orig_means.size, 1)),
                histtype="step",
                color="C0",
                lw=1.5,
                label="implied mean",
            )
            ax.hist(
                orig_obs,
                bins=bins,
                weights=np.full(orig_obs.size, 1.0 / orig_obs.size),
                histtype="step",
                color="k",
                lw=2.0,
                label="observed",
            )
            ax.set_xscale("log")
            ax.set_xlabel(f"{self.original_label} (original scale)")
            ax.set_ylabel("share")
            ax.set_title("Original scale")
            ax.legend(loc="best", fontsize="x-small")
        fig.tight_layout()
        return fig


def _limits(values: np.ndarray, q: float = 0.005) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (0.0, 1.0)
    lo, hi = np.quantile(values, [q, 1 - q])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return float(lo), float(hi)


def _format_table(table: pd.DataFrame) -> str:
    shown = table.copy()
    shown["outside"] = shown["outside"].map(lambda v: "" if pd.isna(v) else f"{v:.1%}")
    return shown.to_string(
        index=False,
        float_format=format_number,
    )


# -- helpers on the Bambi model ------------------------------------------------------------
def _prior_text(prior: Any) -> str:
    return str(prior) if prior is not None else "?"


def _candidates(bm) -> dict[str, str]:
    """Parameters of the mean that a flag can be attributed to: name -> what to call its prior."""
    out: dict[str, str] = {}
    v = _bambi.view(bm)
    intercept = v.intercept()
    if intercept is not None:
        out[intercept.name] = _prior_text(intercept.prior)
    for term in v.common():
        out[term.name] = _prior_text(term.prior)
    for term in v.group():
        out[term.name] = f"Normal(0, sd), sd ~ {_prior_text(term.sd_prior)}"
    return out


def _auxiliary(bm, prior: xr.Dataset) -> dict[str, str]:
    """The family's scalar auxiliary parameters (e.g. sigma) with their priors."""
    out = {}
    for name, aux_prior in _bambi.view(bm).auxiliary.items():
        if name in prior and set(prior[name].dims) <= {"chain", "draw"}:
            out[name] = _prior_text(aux_prior)
    return out


FLAT_PRIORS = ("Flat", "HalfFlat")


def _flat_parameters(model: Model, bm) -> dict[str, str]:
    """Variables of the PyMC graph whose prior is flat (improper): name -> what it is."""
    out: dict[str, str] = {}
    v = _bambi.view(bm)
    intercept = v.intercept()
    if intercept is not None and getattr(intercept.prior, "name", None) in FLAT_PRIORS:
        out[intercept.name] = "the Intercept"
    for term in v.common():
        if getattr(term.prior, "name", None) in FLAT_PRIORS:
            out[term.name] = f"b {term.name}"
    blocks = getattr(model, "blocks", None) or {}
    in_blocks = {t for spec in blocks.values() for t in spec.terms}
    for term in v.group():
        if getattr(term.sd_prior, "name", None) not in FLAT_PRIORS:
            continue
        if term.name in in_blocks:
            raise ModelError(
                f"the sd of {term.name} has a flat (improper) prior inside a correlated block, "
                "which prior_check cannot draw from nor hold out; give it a proper prior, e.g. "
                f"lf.prior('student_t(3, 0, 2.5)', cls='sd', group={term.factor!r})."
            )
        out[f"{term.name}_sigma"] = f"the sd of {term.name}"
    for name, aux_prior in v.auxiliary.items():
        if getattr(aux_prior, "name", None) in FLAT_PRIORS:
            out[name] = name
    return out


@contextmanager
def _pymc_quiet(verbose: bool) -> Iterator[None]:
    """Silence PyMC's INFO log lines ("Sampling: [...]") unless ``verbose``."""
    logger = logging.getLogger("pymc")
    level = logger.level
    if not verbose:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _quiet_unless_verbose(func: Callable[..., PriorCheck]) -> Callable[..., PriorCheck]:
    """Run ``func`` with PyMC's log lines silenced unless it is called with ``verbose=True``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> PriorCheck:
        with _pymc_quiet(bool(kwargs.get("verbose", False))):
            return func(*args, **kwargs)

    return wrapper


def _prior_draws(bm, draws: int, random_seed: int | None, held: list[str]):
    """Bambi's prior predictive draws, with the ``held`` (flat-prior) variables fixed at 0."""
    if not held:
        return bm.prior_predictive(draws=draws, random_seed=random_seed)
    import pymc as pm

    full = _bambi.full_data_pymc_model(bm)
    zeros = {name: np.zeros(tuple(full[name].shape.eval())) for name in held}
    fixed = pm.do(full, zeros)
    names = [v.name for v in fixed.unobserved_RVs + fixed.observed_RVs]
    names = pm.util.get_default_varnames(names, include_transformed=False)
    names = [n for n in names if not n.endswith("_offset")]
    idata = pm.sample_prior_predictive(
        draws=draws, var_names=names, model=fixed, random_seed=random_seed
    )
    prior = idata["prior"].to_dataset()
    n_chain, n_draw = prior.sizes["chain"], prior.sizes["draw"]
    for name, value in zeros.items():
        dims = list(full.named_vars_to_dims.get(name, ()))
        dims += [f"{name}_dim_{i}" for i in range(len(dims), value.ndim)]
        coords = {d: list(full.coords[d]) for d in dims if full.coords.get(d) is not None}
        prior[name] = xr.DataArray(
            np.zeros((n_chain, n_draw, *value.shape)),
            dims=("chain", "draw", *dims),
            coords=coords,
        )
    idata["prior"] = xr.DataTree(prior)
    return idata


def _freeze(prior: xr.Dataset, name: str | None) -> xr.Dataset:
    """The prior draws with one parameter replaced by its prior median (per element)."""
    if name is None:
        return prior
    out = prior.copy()
    med = prior[name].median(dim=("chain", "draw"))
    out[name] = xr.broadcast(med, prior[name])[0].transpose(*prior[name].dims)
    return out


def _predict(
    bm, centred: xr.Dataset, *, data=None, response=False, group=True, seed=None, raw=False
):
    """Implied means (or predictive draws) ``(draws, rows)`` from parameter draws.

    ``raw=True`` reads the sampled intercept as the intercept at zero predictors (what the
    same priors would mean without Bambi's centring)."""
    post = centred if raw else _bambi.uncenter_intercept(bm, centred)
    idata = xr.DataTree.from_dict({"posterior": post})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = bm.predict(
            idata,
            kind="response" if response else "response_params",
            data=data,
            inplace=False,
            include_group_specific=group,
            random_seed=seed,
        )
    if response:
        ds = out["posterior_predictive"].to_dataset()
        da = ds[next(iter(ds.data_vars))]
    else:
        da = out["posterior"].to_dataset()[_bambi.parent_name(bm)]
    da = da.transpose("chain", "draw", ...)
    return np.asarray(da.values, dtype=float).reshape(da.sizes["chain"] * da.sizes["draw"], -1)


# -- scales and rules ----------------------------------------------------------------------
def mean_kind(link: str, family: str) -> str:
    """How the rule judges a family's mean: ``probability``, ``log-location``, ``positive``
    or ``real`` (the first that applies, in this order)."""
    if link in PROBABILITY_LINKS:
        return "probability"
    if family in LOG_LOCATION:
        return "log-location"
    if family in POSITIVE_MEAN or link == "log":
        return "positive"
    return "real"


def _kind(bm, family: str) -> str:
    return mean_kind(_bambi.view(bm).link, family)


def _original_scale(model: Model, option: Any, response: str):
    """``(label, inverse transform)`` for the original scale, or ``(None, None)``."""
    if option is False or (option is None and model.translation.response.kind != "plain"):
        return None, None
    if callable(option):
        return f"{getattr(option, '__name__', 'f')}({response})", option
    if isinstance(option, str):
        if option != "exp":
            raise ModelError(
                f"original_scale must be a callable, 'exp', True/None (detect) or False; "
                f"got {option!r}."
            )
        return f"exp({response})", np.exp
    if option not in (None, True):
        raise ModelError(
            "original_scale must be a callable, 'exp', True/None (detect) or False; "
            f"got {option!r}."
        )
    match = _TRANSFORM_RE.match(response)
    if match:
        return match.group(2), _INVERSES[match.group(1)]
    if response.startswith("log_") and len(response) > 4:
        return f"exp({response})", np.exp
    if option is True:
        raise ModelError(
            f"original_scale=True but the response {response!r} is not a recognised transform; "
            "pass original_scale='exp' or a callable."
        )
    return None, None


def _outside(values: np.ndarray, band: tuple[float, float]) -> float:
    """Share of the (non-missing) values outside the band."""
    n = values.size - int(np.count_nonzero(np.isnan(values)))
    if n == 0:
        return float("nan")
    out = np.count_nonzero(values < band[0]) + np.count_nonzero(values > band[1])
    return float(out / n)


def _piled(values: np.ndarray, edge: float) -> float:
    """Share of the (non-missing) probabilities within ``edge`` of 0 or 1."""
    return _outside(values, (edge, 1 - edge))


def _quantiles(values: np.ndarray) -> list[float]:
    values = np.asarray(values, dtype=float).ravel()
    values = values[~np.isnan(values)]
    if values.size == 0:
        return [float("nan")] * len(QUANTILES)
    return [float(v) for v in np.quantile(values, QUANTILES)]


def _at_frame(model: Model, at: Any) -> tuple[pd.DataFrame, list[str]]:
    """New rows for ``at=``; predictors not given are held at their mean (or commonest value)."""
    if isinstance(at, pd.DataFrame):
        given = at.copy()
    elif isinstance(at, Mapping):
        values = {k: np.atleast_1d(v) for k, v in at.items()}
        n = max(len(v) for v in values.values()) if values else 0
        try:
            given = pd.DataFrame({k: np.broadcast_to(v, (n,)) for k, v in values.items()})
        except ValueError as exc:
            raise DataError(f"the values in at= must have matching lengths: {exc}") from exc
    else:
        raise DataError(f"at= must be a dict of predictor -> value(s) or a DataFrame; got {at!r}.")
    rhs = model.translation.bambi_formula.split("~", 1)[1]
    predictors = [
        v for v in model.translation.variables if re.search(rf"(?<![\w.]){re.escape(v)}(?!\w)", rhs)
    ]
    unknown = [c for c in given.columns if c not in predictors]
    if unknown:
        raise DataError(
            f"at= names {', '.join(map(repr, unknown))}, which is not a predictor of the model; "
            f"the predictors are {', '.join(map(repr, predictors)) or 'none'}."
        )
    labels = [
        ", ".join(
            f"{c}={format_number(v) if isinstance(v, (int, float, np.number)) else v}"
            for c, v in row.items()
        )
        for _, row in given.iterrows()
    ]
    frame = given.copy()
    for name in predictors:
        if name in frame.columns:
            continue
        col = model.data[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            frame[name] = float(col.mean())
        else:
            frame[name] = col.mode().iloc[0]
    return frame, labels


# -- the pieces of the check ----------------------------------------------------------------
def plausible_band(
    observed: np.ndarray, kind: str, k: float, response: str = "the outcome"
) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(band, predictive band)``: where the implied means, and the predictive draws, may lie.

    ``real``: the observed range ``[lo, hi]`` widened by ``k`` times its width ``w`` on each
    side (``w`` is ``max(|hi|, 1)`` when all values are equal). ``positive``: the same on the
    log scale, with ``w`` at least ``log 10``, no lower edge (0) when the data hold zeros, and
    only the upper edge for the predictive draws (zeros are ordinary draws of a count).
    ``probability``: ``[0, 1]`` (the rule looks at the edges instead, see :func:`share_judged`).
    """
    if kind == "real":
        lo, hi = float(np.min(observed)), float(np.max(observed))
        width = hi - lo if hi > lo else max(abs(hi), 1.0)
        band = (lo - k * width, hi + k * width)
        return band, band
    if kind == "positive":
        positive = observed[observed > 0]
        if positive.size == 0:
            raise DataError(f"the outcome {response!r} has no positive values.")
        llo, lhi = float(np.log(positive.min())), float(np.log(positive.max()))
        width = max(lhi - llo, float(np.log(10.0)))
        lower = 0.0 if np.any(observed <= 0) else float(np.exp(llo - k * width))
        band = (lower, float(np.exp(lhi + k * width)))
        return band, (-np.inf, band[1])
    return (0.0, 1.0), (0.0, 1.0)


def share_judged(
    values: np.ndarray, kind: str, band: tuple[float, float], p_edge: float = 0.01
) -> float:
    """The share of implied means the rule judges: outside ``band``, or for probabilities
    within ``p_edge`` of 0 or 1."""
    if kind == "probability":
        return _piled(values, p_edge)
    return _outside(values, band)


@dataclass(frozen=True)
class Attribution:
    """Which parameter drives a flag: the share with all priors free (``share``), and the
    lowest share with one parameter fixed at its prior median (``share_fixed``, by ``driver``;
    ``driver`` is None when no parameter lowers it). ``rows`` feed ``PriorCheck.attribution``.
    """

    driver: str | None
    share: float
    share_fixed: float
    rows: list[dict[str, Any]]


def attribute(
    check: str,
    prior: xr.Dataset,
    names: list[str],
    compute: Callable[[xr.Dataset], float],
    prior_texts: Mapping[str, str],
) -> Attribution:
    """Recompute a share with each named parameter in turn fixed at its prior median."""
    base = compute(prior)
    rows: list[dict[str, Any]] = []
    best, best_fixed = None, base
    for name in names:
        fixed = compute(_freeze(prior, name))
        rows.append(
            {
                "check": check,
                "parameter": name,
                "prior": prior_texts.get(name, "?"),
                "share": base,
                "share_fixed": fixed,
            }
        )
        if fixed < best_fixed:
            best, best_fixed = name, fixed
    return Attribution(best, base, best_fixed, rows)


def driver_text(found: Attribution, prior_texts: Mapping[str, str]) -> str:
    """The sentence that names what drives a flag.

    A driver must at least halve the share; otherwise no single prior explains it."""
    name, base, fixed = found.driver, found.share, found.share_fixed
    if name is None or fixed > 0.5 * base:
        top = f" (fixing {name} lowers it most, to {fixed:.1%})" if name else ""
        return (
            "No single parameter's prior explains it: fixing any one of them at its prior "
            f"median leaves more than half of the share{top}; the priors act jointly."
        )
    what = (
        f"the sd prior of the group-level term {name} ({prior_texts[name]})"
        if "|" in name
        else f"the prior on {name} ({prior_texts[name]})"
    )
    return (
        f"Driven by {what}: with {name} fixed at its prior median the share would be {fixed:.1%}."
    )


def interval_text(
    values: np.ndarray,
    original: Callable[[np.ndarray], np.ndarray] | None = None,
    original_label: str | None = None,
) -> str:
    """``[q05, q95]`` of the values, and the same on the original scale when there is one."""
    q05, q95 = np.nanquantile(values, [0.05, 0.95])
    text = f"[{format_number(q05)}, {format_number(q95)}]"
    if original is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            o05, o95 = original(np.array([q05, q95]))
        text += f" ({original_label}: [{format_number(o05)}, {format_number(o95)}])"
    return text


def band_text(band: tuple[float, float], observed: np.ndarray, k: float, kind: str) -> str:
    """The band as a flag names it, with the observed range it is made from."""
    lo, hi = float(np.min(observed)), float(np.max(observed))
    return (
        f"the plausible band [{format_number(band[0])}, {format_number(band[1])}] (observed "
        f"range [{format_number(lo)}, {format_number(hi)}] widened by k = {k:g} times its width"
        + (" on the log scale)" if kind == "positive" else ")")
    )


def mean_flag_text(
    response: str,
    share: float,
    kind: str,
    *,
    band: str,
    interval: str,
    tol: float = 0.10,
    p_edge: float = 0.01,
    p_tol: float = 0.5,
) -> str:
    """The finding on the implied means at the observed rows (without its driver)."""
    if kind == "probability":
        return (
            f"Implied probability of {response}: {share:.0%} of the prior draws are "
            f"below {p_edge:g} or above {1 - p_edge:g} (more than {p_tol:.0%}); the prior "
            "piles the outcome at 0 or 1."
        )
    return (
        f"Implied mean of {response}: {share:.0%} of the prior draws over the "
        f"observed rows fall outside {band}, more than {tol:.0%}; "
        f"90% of them lie in {interval}."
    )


def predictive_flag_text(
    response: str, share: float, *, band: str, interval: str, tol_predictive: float = 0.25
) -> str:
    """The finding on the prior predictive draws (without its driver)."""
    return (
        f"Prior predictive draws of {response}: {share:.0%} fall outside "
        f"{band}, more than {tol_predictive:.0%}; 90% of them lie in "
        f"{interval}."
    )


def at_flag_text(label: str, response: str, share: float, *, band: str, interval: str) -> str:
    """The finding on the implied means at one ``at=`` row (without its driver)."""
    return (
        f"At {label}: {share:.0%} of the implied means of {response} fall outside "
        f"{band}; 90% of them lie in {interval}."
    )


def _check_settings(draws: Any, **settings: Any) -> None:
    """Refuse a draw count below 10 and thresholds outside their ranges."""
    if not isinstance(draws, (int, np.integer)) or isinstance(draws, bool) or draws < 10:
        raise ModelError(f"draws must be an integer of at least 10, got {draws!r}.")
    upper = {"k": None, "tol": 1, "tol_predictive": 1, "p_edge": 0.5, "p_tol": 1}
    for name, value in settings.items():
        ok = isinstance(value, (int, float, np.number)) and np.isfinite(value) and value >= 0
        if not ok or (upper[name] is not None and value >= upper[name]):
            bound = f" and below {upper[name]}" if upper[name] is not None else ""
            raise ModelError(f"{name} must be a number >= 0{bound}, got {value!r}.")


def _outcome(bm, idata, draws: int, response: str) -> tuple[np.ndarray, np.ndarray, str]:
    """``(observed, predictive draws (draws, rows), label)`` on the scale of the mean:
    proportions for a binomial response."""
    y_data = np.asarray(_bambi.view(bm).response, dtype=float)
    pp = idata["prior_predictive"].to_dataset()
    pred_da = pp[next(iter(pp.data_vars))].transpose("chain", "draw", ...)
    predictive = np.asarray(pred_da.values, dtype=float).reshape(draws, -1)
    if y_data.ndim == 2 and y_data.shape[1] == 2:  # binomial: successes, trials
        trials = y_data[:, 1]
        return y_data[:, 0] / trials, predictive / trials, f"proportion {response}"
    if y_data.ndim == 2 and y_data.shape[1] > 1:
        raise ModelError(f"prior_check needs one outcome per row; {response!r} has several.")
    return y_data.ravel(), predictive, response


def _log_outcome(
    observed: np.ndarray, predictive: np.ndarray, response: str
) -> tuple[np.ndarray, np.ndarray, str]:
    """The outcome on the log scale (lognormal: the mean parameter is the location of
    ``log(y)``); observed zeros are dropped, predictive zeros become NaN."""
    observed = np.log(observed[observed > 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        predictive = np.where(
            predictive > 0, np.log(np.where(predictive > 0, predictive, 1)), np.nan
        )
    return observed, predictive, f"log({response})"


def _implied_means(bm, prior_all: xr.Dataset, prior: xr.Dataset, draws: int) -> np.ndarray:
    """The mean every prior draw implies at every observed row, ``(draws, rows)``."""
    parent = _bambi.parent_name(bm)
    if parent in prior_all and "__obs__" in prior_all[parent].dims:  # computed by PyMC
        da = prior_all[parent].transpose("chain", "draw", ...)
        return np.asarray(da.values, dtype=float).reshape(draws, -1)
    return _predict(bm, prior)  # pragma: no cover - Bambi stores the parent; kept for safety


def _attribution_data(model: Model) -> pd.DataFrame | None:
    """A seeded subset of ATTRIBUTION_ROWS rows (None: all rows) to recompute shares on."""
    n_rows = len(model.data)
    if n_rows <= ATTRIBUTION_ROWS:
        return None
    pick = np.sort(np.random.default_rng(0).choice(n_rows, ATTRIBUTION_ROWS, replace=False))
    return model.data.iloc[pick].reset_index(drop=True)


def _priors_shown(
    candidates: Mapping[str, str], aux: Mapping[str, str], flat: Mapping[str, str]
) -> dict[str, str]:
    """Every prior the report lists: the mean's parameters, then the auxiliary ones, then the
    flat ones (under the term's name for a flat sd)."""
    shown = {**candidates, **aux}
    for name, what in flat.items():
        shown[name.removesuffix("_sigma") if what.startswith("the sd") else name] = (
            "flat (improper): held at 0"
        )
    return shown


def _quantile_table(
    scales: list[tuple[str, Callable[[np.ndarray], np.ndarray] | None]],
    series: list[tuple[str, np.ndarray, float]],
) -> pd.DataFrame:
    """Quantiles of each ``(quantity, values, share outside)`` on each ``(scale, transform)``."""
    rows = []
    for scale, transform in scales:
        with np.errstate(over="ignore", invalid="ignore"):
            for quantity, values, share in series:
                shown = values if transform is None else transform(values)
                rows.append([scale, quantity, *_quantiles(shown), share])
    return pd.DataFrame(rows, columns=["scale", "quantity", *QUANTILE_COLUMNS, "outside"])


def _flat_note(flat: Mapping[str, str]) -> str:
    """What the check does with flat priors, and how to check them too."""
    one = len(flat) == 1
    return (
        f"Flat (improper) priors cannot be drawn from: {', '.join(flat.values())} "
        f"{'is' if one else 'are'} held at 0 in the prior draws (left out of the "
        "implied means), so the check judges the other priors only. Give "
        f"{'it' if one else 'them'} a proper prior, e.g. "
        "lf.prior('normal(0, 10)', cls='b'), to check "
        f"{'it' if one else 'them'} too."
    )


def _uncentred_note(
    labels: list[str],
    raw: np.ndarray,
    original: Callable[[np.ndarray], np.ndarray] | None = None,
    original_label: str | None = None,
) -> str:
    """What the same priors imply at the ``at=`` rows if the Intercept were not centred."""
    parts = []
    for j, label in enumerate(labels):
        sd = float(np.nanstd(raw[:, j]))
        interval = interval_text(raw[:, j], original, original_label)
        parts.append(f"at {label} a mean with sd {format_number(sd)}, 90% in {interval}")
    return (
        "Were the Intercept prior on the intercept at zero predictors (no centring, as in "
        "lme4 or a hand-written model), the same priors would imply " + "; ".join(parts) + "."
    )


# -- the check -----------------------------------------------------------------------------
@_quiet_unless_verbose
def prior_check(
    model: Model,
    draws: int = 500,
    random_seed: int | None = None,
    *,
    k: float = 1.0,
    tol: float = 0.10,
    tol_predictive: float = 0.25,
    p_edge: float = 0.01,
    p_tol: float = 0.5,
    at: Mapping[str, Any] | pd.DataFrame | None = None,
    original_scale: Callable[[np.ndarray], np.ndarray] | str | bool | None = None,
    verbose: bool = False,
) -> PriorCheck:
    """Prior predictive check: what the priors imply for the outcome, and whether it is absurd.

    The parameters are drawn from their priors (Bambi's ``prior_predictive``); every draw
    implies a mean of the outcome for every observed row (the model's own mean, computed
    in the PyMC graph; at ``at=`` values with Bambi's ``predict``), and the prior
    predictive draws add the family's noise. Both are compared with the observed data.

    **The flag rule.** Let ``[lo, hi]`` be the observed range of the outcome and
    ``w = hi - lo``. The plausible band for the mean is ``[lo - k*w, hi + k*w]``.

    * Real-valued outcomes (gaussian, t, ... with identity link): flag when more than ``tol``
      of the implied means (all draws times all rows) fall outside the band, or more than
      ``tol_predictive`` of the prior predictive draws do.
    * Positive outcomes (poisson, negative binomial, gamma, ... or a log link): negative
      values are impossible by construction, so the rule judges the magnitude: the same
      band on the log scale, ``[log lo - k*w, log hi + k*w]`` with ``w`` the width of the
      observed range in logs (at least ``log 10``, and no lower edge when the data hold
      zeros); only the upper edge applies to the predictive draws.
    * Probabilities (bernoulli, binomial, beta, ... with logit/probit/cloglog link): flag
      when more than ``p_tol`` of the implied probabilities are below ``p_edge`` or above
      ``1 - p_edge`` (the prior piles the outcome at 0 or 1).
    * ``at=`` values get the same rule for their implied means (population-level effects).

    A flag is attributed by recomputing the share with one parameter at a time fixed at its
    prior median (for a group-level term, each level's deviation at its median, about 0:
    the term's sd prior switched off), on a seeded subset of at most 500 observed rows;
    the parameter whose fixing lowers the share most drives the finding, provided it at
    least halves it (otherwise the report says the priors act jointly). A predictive flag
    with the same driver as the mean's flag is not repeated.

    **Why k = 1 and tol = 10%.** An implied mean one whole observed range beyond the data is
    absurd on any scale; a tenth of the prior mass there is substantial. On the lecture's
    Beijing ozone model ``log_ozone ~ TEMP`` (full data, 500 draws, seeds 1-3) the narrow
    priors Intercept ~ Normal(0, 2), TEMP ~ Normal(0, 0.1), sigma ~ HalfCauchy(1) leave
    0.0-0.2% of the implied means outside the band [-7.0, 14.0] (log O3), while the wide
    priors Normal(0, 3), Normal(0, 1) leave 29-32% outside, driven by TEMP. The verdicts
    stay the same for any k from about 0.5 (narrow: 7%) to 2 (wide: 12-14%), so the
    defaults sit far from both edges. The predictive threshold is looser (25%) because
    heavy-tailed scale priors such as HalfCauchy(1) put a few percent of draws far out (6%
    for the narrow priors, against 33-36% for the wide ones) without being absurd.

    **Flat priors.** A parameter with a flat (improper) prior, such as brms' default on
    ``b`` (``priors="brms"``), cannot be drawn from: it is held at 0 in the prior draws
    (its term drops out of the implied means), left out of the attribution, and a note says
    so; the check then judges the other priors only. A flat sd inside a correlated block
    cannot be held out and raises :class:`~lmmformula.errors.ModelError`.

    **Centring.** Bambi centres the predictors (``center_predictors=True``): the prior on
    ``Intercept`` is the prior of the mean outcome at the predictors' means (TEMP = 18.7),
    not at zero, and the report says so. ``at=`` shows what the priors imply at chosen
    predictor values: on a 30 degree day the wide priors give a mean of log O3 with 90% in
    about [-19, 19]; a note adds what the same priors would mean on an uncentred intercept,
    as in the lecture (Normal(0, 3) + 30 x Normal(0, 1): sd about 30, 90% in about
    [-49, 49], hence "log O3 around 33").

    Parameters
    ----------
    model : Model
        The model to check (:func:`lmmformula.model`); no sampling of the posterior happens.
    draws : int
        Number of prior draws.
    random_seed : int, optional
        Seed; the same seed gives the same report.
    k : float
        How many widths of the observed range the plausible band extends beyond it.
    tol : float
        Share of implied means outside the band above which a prior is flagged.
    tol_predictive : float
        The same for the prior predictive draws.
    p_edge, p_tol : float
        For probabilities: flag when more than ``p_tol`` of them are within ``p_edge`` of 0
        or 1.
    at : dict or pandas.DataFrame, optional
        Predictor values at which to report the implied mean, e.g. ``{"TEMP": 30}`` or
        ``{"TEMP": [0, 30]}``; predictors not given are held at their mean (numeric) or
        commonest value.
    original_scale : callable, "exp", bool, optional
        The inverse of the response's transform, to report on the original scale as well.
        Default (``None``): detected for responses written ``log(y)``, ``np.log(y)``
        (also ``log10``, ``log2``, ``log1p``) and for columns named ``log_<x>`` (taken as
        ``log(<x>)``); ``False`` turns it off.
    verbose : bool
        Let PyMC's log lines ("Sampling: [...]") through; by default the check is quiet.

    Returns
    -------
    PriorCheck
        Printable; ``.flagged``, ``.flags``, ``.table``, ``.attribution``, ``.plot()``.

    Examples
    --------
    >>> import bambi as bmb
    >>> import lmmformula as lf
    >>> ozone = lf.load_dataset("beijing_ozone")
    >>> wide = {"Intercept": bmb.Prior("Normal", mu=0, sigma=3),
    ...         "TEMP": bmb.Prior("Normal", mu=0, sigma=1),
    ...         "sigma": bmb.Prior("HalfCauchy", beta=1)}
    >>> check = lf.model("log_ozone ~ TEMP", ozone, priors=wide).prior_check(
    ...     random_seed=1, at={"TEMP": 30})
    >>> check.flagged
    True
    >>> print(check.flags[0])  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    Implied mean of log_ozone: 29% of the prior draws over the observed rows fall outside the
    plausible band [-6.98, 14] ... Driven by the prior on TEMP ...
    """
    _check_settings(draws, k=k, tol=tol, tol_predictive=tol_predictive, p_edge=p_edge, p_tol=p_tol)
    family = model.family
    if family in NOT_ONE_NUMBER:
        raise ModelError(
            f"prior_check does not support the {family!r} family (its outcome is not one "
            "number per row)."
        )
    model.build()
    bm = model.bambi
    kind = _kind(bm, family)
    response = model.translation.response.text
    original_label, original = (None, None)
    if kind == "log-location" and original_scale is not False:
        original_label, original = response, np.exp
    elif kind != "probability":
        original_label, original = _original_scale(model, original_scale, response)
    if at is not None:
        frame, labels = _at_frame(model, at)
    flat = _flat_parameters(model, bm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = _prior_draws(bm, int(draws), random_seed, list(flat))
    prior_all = idata["prior"].to_dataset()
    obs_vars = [n for n, da in prior_all.data_vars.items() if "__obs__" in da.dims]
    prior = prior_all.drop_vars(obs_vars)

    # Observed outcome and predictive draws on the mean's scale; the rule's bands.
    observed, predictive, response_label = _outcome(bm, idata, int(draws), response)
    if kind == "log-location":  # lognormal: judged as a real outcome on the log scale
        observed, predictive, response_label = _log_outcome(observed, predictive, response)
        kind = "real"
    band, predictive_band = plausible_band(observed, kind, k, response)
    settings = {
        "k": float(k),
        "tol": float(tol),
        "tol_predictive": float(tol_predictive),
        "p_edge": float(p_edge),
        "p_tol": float(p_tol),
    }
    limit = p_tol if kind == "probability" else tol

    mean_share = functools.partial(share_judged, kind=kind, band=band, p_edge=p_edge)
    pred_share = functools.partial(_outside, band=predictive_band)
    implied = _implied_means(bm, prior_all, prior, int(draws))
    rows_data = _attribution_data(model)  # attribution recomputes the shares many times
    candidates = {n: v for n, v in _candidates(bm).items() if n not in flat}
    aux = {n: v for n, v in _auxiliary(bm, prior).items() if n not in flat}
    priors_shown = _priors_shown(candidates, aux, flat)
    flags: list[str] = []
    attribution_rows: list[dict[str, Any]] = []
    judged_band = band_text(band, observed, k, kind)
    interval = functools.partial(interval_text, original=original, original_label=original_label)

    # 1. implied means at the observed rows
    share_mean = mean_share(implied)
    mean_driver: str | None = None
    if share_mean > limit:
        found = attribute(
            "implied mean",
            prior,
            list(candidates),
            lambda ds: mean_share(_predict(bm, ds, data=rows_data)),
            priors_shown,
        )
        mean_driver = found.driver
        text = mean_flag_text(
            response,
            share_mean,
            kind,
            band=judged_band,
            interval=interval(implied),
            tol=tol,
            p_edge=p_edge,
            p_tol=p_tol,
        )
        flags.append(f"{text} {driver_text(found, priors_shown)}")
        attribution_rows.extend(found.rows)

    # 2. prior predictive draws (noise included); not repeated with the same driver
    share_pred = float("nan")
    if kind != "probability":
        share_pred = pred_share(predictive)
        if share_pred > tol_predictive:
            seed = 0 if random_seed is None else random_seed
            found = attribute(
                "prior predictive",
                prior,
                list(candidates) + list(aux),
                lambda ds: pred_share(_predict(bm, ds, data=rows_data, response=True, seed=seed)),
                priors_shown,
            )
            if found.driver is None or found.driver != mean_driver:
                text = predictive_flag_text(
                    response,
                    share_pred,
                    band=judged_band,
                    interval=interval(predictive),
                    tol_predictive=tol_predictive,
                )
                flags.append(f"{text} {driver_text(found, priors_shown)}")
            attribution_rows.extend(found.rows)

    # 3. implied means at the at= values (population-level effects)
    at_means: dict[str, np.ndarray] = {}
    at_shares: dict[str, float] = {}
    if at is not None:
        values = _predict(bm, prior, data=frame, group=False)
        population = [n for n in candidates if "|" not in n]
        for j, label in enumerate(labels):
            at_means[label] = values[:, j]
            at_shares[label] = share = mean_share(values[:, j])
            if share > limit:
                found = attribute(
                    f"at {label}",
                    prior,
                    population,
                    lambda ds, j=j: mean_share(_predict(bm, ds, data=frame, group=False)[:, j]),
                    priors_shown,
                )
                text = at_flag_text(
                    label, response, share, band=judged_band, interval=interval(values[:, j])
                )
                flags.append(f"{text} {driver_text(found, priors_shown)}")
                attribution_rows.extend(found.rows)

    # The table: quantiles on the outcome's scale and the original scale.
    mean_label = "implied probability" if kind == "probability" else "implied mean"
    series = [
        ("observed", observed, np.nan),
        (mean_label, implied, share_mean),
        ("prior predictive", predictive, share_pred),
    ]
    series += [
        (f"{mean_label} at {label}", at_means[label], at_shares[label]) for label in at_means
    ]
    scales = [(response_label, None)]
    if original is not None:
        scales.append((original_label, original))
    table = _quantile_table(scales, series)

    notes = _notes(model, bm, kind, original_label)
    if flat:
        notes.insert(0, _flat_note(flat))
    if at is not None and _bambi.view(bm).centred:
        raw = _predict(bm, prior, data=frame, group=False, raw=True)
        notes.append(_uncentred_note(labels, raw, original, original_label))
    attribution = pd.DataFrame(
        attribution_rows, columns=["check", "parameter", "prior", "share", "share_fixed"]
    )
    return PriorCheck(
        model=model,
        response=response_label,
        family=family,
        kind=kind,
        draws=int(draws),
        observed=observed,
        implied_mean=implied,
        predictive=predictive,
        band=band,
        table=table,
        flags=flags,
        attribution=attribution,
        settings=settings,
        priors=priors_shown,
        notes=notes,
        at_means=at_means,
        original_label=original_label,
        original=original,
        idata=idata,
    )


def _notes(model: Model, bm, kind: str, original_label: str | None) -> list[str]:
    notes = []
    v = _bambi.view(bm)
    if v.centred:
        means = []
        for term in v.common():
            if term.data.shape[1] == 1:
                means.append(f"{term.name} = {format_number(float(term.data.mean()))}")
        at_means = f" ({', '.join(means)})" if means else ""
        notes.append(
            "Bambi centres the predictors, so the Intercept prior is the prior of the mean "
            f"outcome at the predictors' means{at_means}, not at zero; a slope's prior acts on "
            "the distance from that mean. Pass at={...} to see the implied mean at chosen "
            "predictor values."
        )
    if kind == "positive":
        notes.append(
            "Negative means are impossible for this family, so the band judges magnitudes "
            "on the log scale."
        )
    if original_label is not None and kind != "positive":
        notes.append(
            f"Rows on the {original_label} scale transform the draws back; the transform of an "
            "implied mean is the median, not the mean, on the original scale."
        )
    return notes
