"""Everything that touches Bambi internals lives here, pinned to one Bambi minor version.

Bambi builds each group-level term with its own independent prior. lmmformula keeps Bambi's
model specification (terms, priors, design matrices, names, dims) and replaces only the step
that turns the group-level terms of a correlated block into PyMC variables:

* the block's standard deviations and correlation come from one ``pm.LKJCholeskyCov``
  (``eta = lkj_eta``); each term's standard deviation keeps the prior Bambi (or the user) gave
  the term's ``sigma``;
* non-centered (default): ``z ~ Normal(0, 1)`` of shape (groups, block size) and
  ``coefficients = mu + z @ L.T``; centered: ``coefficients ~ MvNormal(mu, chol=L)``;
* the coefficients are stored under Bambi's names and dims (``1|g``, ``x|g`` with dims
  ``g__factor_dim``, ...), the standard deviations as ``1|g_sigma``, ``x|g_sigma``, and the
  correlation matrix as ``g_corr`` with dims ``g__block_dim`` x ``g__block_dim_bis`` whose
  coordinates are the block's column names. Bambi's ``predict``, ``interpret`` and
  ``compute_log_likelihood`` read only those names, so they keep working unchanged.

For gaussian identity-link models whose linear predictor is linear in per-row design columns,
the response can be built on exact sufficient statistics (:mod:`lmmformula._suffstats`)
instead of Bambi's n-sized ``ResponseComponent``: :func:`suffstats_unsupported` says whether it
may be, :func:`suffstats_plan` whether it pays, and ``_LkjPyMCModel`` then adds the likelihood
as one ``pm.Potential`` named ``{response}_suffstats``. The n-sized ``mu`` deterministic is not
built; Bambi's ``predict`` and ``compute_log_likelihood`` recompute it from the draws with
numpy, and :meth:`LkjBambiModel.prior_predictive` builds a full-data graph for prior
predictive draws.

The contract test ``tests/test_bambi_contract.py`` fails loudly when a Bambi release moves any
of the internals used here.

What the next Bambi release will need
-------------------------------------
Bambi's development tree (``bambi/backend/pymc/``, read in November 2026) replaces the classes
this module subclasses with free functions:

* ``DistributionalComponent`` goes; ``parameters/conditional/build.py`` has
  ``build_conditional_parameter(parameter_info, family, group_specific_state, model)``, which
  builds every group-level term through ``terms/group_specific.py``'s
  ``build_group_specific_term_idx(term_info, param_spec, model)`` (dense) or
  ``build_group_specific_term_dot`` (sparse). The correlated blocks then need a hook there:
  a registry that returns the block's coefficients for a term (what ``_Blocks.coef`` does)
  instead of ``build_distribution``'s independent prior, or a patch of that one function.
* Group indices and predictors become ``pm.Data`` (``{factor}__idx``, one per factor, shared
  by the terms); the marginal and sufficient-statistics likelihoods read ``term.group_index``
  and ``term.predictor`` as numpy and keep working, but the graph's own indices are then data
  that nutpie's compiled code takes as inputs (``_nutpie`` lifts constants itself today).
* Prediction re-uses the graph's state (``GroupSpecificGraphState``: per parameter the
  contribution, the term graphs or the sparse matrix); a block's terms must register there
  like Bambi's own, or ``predict`` on new data misses them.
* Offsets to drop from results are listed in ``model.__bambi_attrs__["offset_names"]``
  (``_clean_results`` reads it): the blocks' ``{key}_offset`` and ``{key}_lkj`` belong there.
* Terms are named by ``term.label`` (alias or prefixed name), as ``_aliased`` does here.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import bambi as bmb
import bambi.families as bambi_families
import bambi.models as bambi_models
import bambi.priors as bambi_priors
import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
import scipy as sp
from bambi.backend.model_components import (
    ConstantComponent,
    DistributionalComponent,
    ResponseComponent,
)
from bambi.backend.pymc import PyMCModel
from bambi.backend.terms import CommonTerm
from bambi.backend.terms import GroupSpecificTerm as _BambiGroupSpecificTerm
from bambi.backend.terms import ResponseTerm as _BambiResponseTerm
from bambi.backend.utils import get_distribution_from_prior, noncentered_default_for
from bambi.config import config as bambi_config
from bambi.families.multivariate import MultivariateFamily
from bambi.families.univariate import Categorical
from bambi.priors import Prior
from bambi.utils import as_dataset
from formulae import categorical as _formulae_categorical
from formulae.terms import terms as _formulae_terms
from formulae.terms import variable as _formulae_variable
from pytensor import sparse as ps

from lmmformula import _kernel, _marginal, _mono, _suffstats
from lmmformula.errors import ModelError, PriorError, UnsupportedSyntaxError

SUFFSTATS_Y = "suffstats_y"
SUFFSTATS_RSS = "suffstats_rss"

BAMBI_SERIES = "0.21"
"""The Bambi minor version whose internals this module was written against."""

DEFAULT_LKJ_ETA = 2.0
"""The LKJ shape of every correlated block unless the model or a ``cor`` prior says otherwise."""

__all__ = [
    "BAMBI_SERIES",
    "DEFAULT_LKJ_ETA",
    "BlockSpec",
    "DesignParts",
    "Family",
    "LkjBambiModel",
    "Prior",
    "block_column_labels",
    "check_bambi_version",
    "design_parts",
    "internal_var_names",
    "suffstats_data",
    "suffstats_plan",
    "suffstats_unsupported",
]


def check_bambi_version(installed: str | None = None) -> None:
    """Refuse to build a model on a Bambi release this module was not written against.

    Called when a model is built, not at import: the formula layer (``lf.translate``) works
    with any Bambi, or none.
    """
    installed = version("bambi") if installed is None else installed
    if not installed.startswith(BAMBI_SERIES + ".") and installed != BAMBI_SERIES:
        raise ModelError(
            f"lmmformula needs bambi {BAMBI_SERIES}.x (it builds correlated blocks on Bambi "
            f"internals), but bambi {installed} is installed. "
            f"Install 'bambi>={BAMBI_SERIES},<0.{int(BAMBI_SERIES.split('.')[1]) + 1}'."
        )


@dataclass(frozen=True)
class BlockSpec:
    """A correlated block of group-level terms on one grouping factor.

    Attributes
    ----------
    factor : str
        The grouping factor as Bambi names it.
    terms : tuple of str
        Bambi names of the block's terms, in order.
    noncentered : bool
        Non-centered (``z`` times the Cholesky factor) or centered (``MvNormal``).
    eta : float, optional
        LKJ shape for this block; ``None`` uses the model's ``lkj_eta``.
    key : str, optional
        The block's key (:attr:`lmmformula.formula.Translation.correlated`): the factor for
        the first block on it, ``factor__2`` ... for further ones. Variable names derive
        from it (``g_corr``, ``g__2_corr``).
    """

    factor: str
    terms: tuple[str, ...]
    noncentered: bool = True
    eta: float | None = None
    key: str | None = None

    @property
    def name(self) -> str:
        return self.key or self.factor

    @property
    def corr_name(self) -> str:
        return f"{self.name}_corr"

    @property
    def dims(self) -> tuple[str, str]:
        return (f"{self.name}__block_dim", f"{self.name}__block_dim_bis")

    @property
    def chol_name(self) -> str:
        return f"{self.name}_lkj"

    @property
    def offset_name(self) -> str:
        return f"{self.name}_offset"

    @property
    def centered_name(self) -> str:
        return f"{self.name}_block"


# -- Bambi's prior scaling of multi-column numeric terms in logit/probit models -----------------
@dataclass(frozen=True)
class BuildPlan:
    """What the seam builds on top of Bambi's terms, handed to :class:`LkjBambiModel` once,
    before its PyMC graph is built (:meth:`LkjBambiModel.set_plan`), as a value.

    Attributes
    ----------
    blocks : dict of str to BlockSpec
        The correlated blocks (each one ``LKJCholeskyCov``), keyed as
        ``Translation.correlated``.
    eta : float
        The LKJ shape of blocks whose own ``eta`` is ``None``.
    suffstats : bool
        Sample on exact per-cell sufficient statistics (gaussian identity link).
    marginal : str or None
        The Bambi name of a ``1|g`` integrated out of the likelihood.
    marginal_block : tuple of str
        With ``marginal``, the Bambi names of the population terms (``Intercept`` and common
        terms with normal priors) and small uncorrelated group-level terms integrated out
        jointly with it (:func:`choose_marginal_block`).
    marginal_nested : dict of str to str
        With ``marginal``, varying intercepts nested in a small factor's, sampled as their sum
        (Bambi names, ``{"1|d": "1|dept"}``; :func:`choose_marginal_nested`).
    marginal_nested_intercept : bool
        The intercept is in the first nested pair's sums too.
    suffstats_shared : bool
        With ``suffstats``, keep the response's statistics as shared data so that a compiled
        model can take another response (the SBC benchmark).
    special : dict of str to callable
        brms' ``gp()`` and ``gr(g, cov = K)`` terms outside blocks (:mod:`lmmformula._gp`):
        term name -> ``builder(term, dims)`` returning the term's coefficients.
    cov_chol : dict of str to numpy.ndarray
        For terms on ``gr(g, cov = K)``: the Cholesky factor of K over the term's levels.
    predict_wrapper : callable, optional
        ``(predict_group_specific, component) -> predict_group_specific``: wraps Bambi's
        group-specific predictions of the main formula (``gp()`` terms: new GP points from the
        GP's conditional, :func:`lmmformula._gp.gp_predictor`).
    simo : dict of str to float
        The Dirichlet concentration of each ``mo()`` term's simplex, by Bambi term name
        (:mod:`lmmformula._mono`; brms' default 1 for a term not named).
    """

    blocks: dict[str, BlockSpec] = field(default_factory=dict)
    eta: float = DEFAULT_LKJ_ETA
    suffstats: bool = False
    marginal: str | None = None
    marginal_block: tuple[str, ...] = ()
    marginal_nested: dict[str, str] = field(default_factory=dict)
    marginal_nested_intercept: bool = False
    suffstats_shared: bool = False
    special: dict[str, Any] = field(default_factory=dict)
    predict_wrapper: Any = None
    cov_chol: dict[str, np.ndarray] = field(default_factory=dict)
    simo: dict[str, float] = field(default_factory=dict)


class _PriorScaler(bambi_priors.PriorScaler):
    """Bambi's ``PriorScaler``, with multi-column numeric terms (``poly(x, 2)``, ``bs(x)``) of
    logit/probit binomial and bernoulli models scaled column by column: Bambi 0.21 assigns
    the whole vector ``1 / std(columns)`` to one element there and fails with "setting an
    array element with a sequence"."""

    def scale_common(self, term):
        family = self.model.family
        data = np.asarray(term.data)
        if (
            term.prior.name == "Normal"
            and data.ndim == 2
            and data.shape[1] > 1
            and term.kind != "interaction"
            and not term.categorical
            and isinstance(
                family, (bambi_families.univariate.Bernoulli, bambi_families.univariate.Binomial)
            )
            and family.link["p"].name in ("logit", "probit")
        ):
            term.prior.update(mu=np.zeros(data.shape[1]), sigma=1 / np.std(data, axis=0))
            return
        super().scale_common(term)


bambi_models.PriorScaler = _PriorScaler


# -- each bar coded as R codes it ---------------------------------------------------------------
_BAR_CODING = threading.local()


def _r_bar_encodings(model, bars) -> dict[str, object]:
    """Per group-level term, the coding R's ``model.matrix`` gives it in its own bar.

    ``bars`` holds, per bar, whether it has an intercept and the Bambi names of its terms.
    The terms of one bar are coded as the common terms of the formula ``~ [0 +] terms`` would
    be: formulae's own full-rank rule, applied to the bar alone.
    """
    from formulae.terms.terms import Intercept
    from formulae.terms.terms import Model as _FormulaeModel

    by_name = {term.name: term for term in model.group_terms}
    out: dict[str, object] = {}
    for intercept, names in bars:
        terms = [by_name[n] for n in names if n in by_name]
        exprs = [t.expr for t in terms if not isinstance(t.expr, Intercept)]
        if not exprs:
            continue
        bar_model = _FormulaeModel(*([Intercept()] if intercept else []), *exprs)
        encodings = bar_model._get_encoding_bools()
        for term in terms:
            if isinstance(term.expr, Intercept):
                continue
            encoding = encodings.get(term.expr.name)
            if encoding is None:
                out[term.name] = False
            elif len(encoding) > 1:
                raise UnsupportedSyntaxError(
                    f"the group-level term {term.name} cannot be coded with full rank inside "
                    "its bar without terms the bar does not have",
                    term.name,
                    0,
                    len(term.name),
                    hint="Write the bar with the lower-order terms too, e.g. (0 + f*h|g), or "
                    "with 0 + so that every level gets its own column.",
                )
            else:
                out[term.name] = encoding[0]
    return out


def _formulae_eval_r_bars(self, data, env):
    """formulae's ``Model.eval``, then each group-level term re-coded as R codes its bar.

    The grouping factors' one-hot rows are built as int8 (:func:`_eval_categoric_compact`)."""
    for term in self.group_terms:
        for component in term.factor.components:
            if isinstance(component, _formulae_variable.Variable):
                component._lmmformula_group_factor = True
    _FORMULAE_EVAL(self, data, env)
    bars = getattr(_BAR_CODING, "bars", None)
    if not bars:
        return
    for name, encoding in _r_bar_encodings(self, bars).items():
        term = next(t for t in self.group_terms if t.name == name)
        term.set_data(encoding)


_FORMULAE_EVAL = _formulae_terms.Model.eval
_formulae_terms.Model.eval = _formulae_eval_r_bars


def _eval_categoric_compact(self, x, spans_intercept):
    """formulae's ``Variable.eval_categoric``; for a grouping factor (``(...|g)``: full-rank
    treatment coding, one 1 per row) the same rows and contrast matrix as int8 instead of
    int64. formulae and Bambi only take their ``argmax``, and formulae builds the group-level
    design itself as a sparse matrix; as int64 the rows of InstEval's students are 1.75 GB
    and most of the build time (73,421 rows x 2,972 levels)."""
    if (
        not getattr(self, "_lmmformula_group_factor", False)
        or not spans_intercept
        or self.is_response
    ):
        return _FORMULAE_EVAL_CATEGORIC(self, x, spans_intercept)
    if not hasattr(x.dtype, "ordered") or not x.dtype.ordered:  # as formulae orders them
        categories = sorted(np.unique(x).tolist())
        dtype = pd.api.types.CategoricalDtype(categories=categories, ordered=True)
        x = pd.Categorical(x).astype(dtype)
    else:
        x = pd.Categorical(x)
    self.levels = x.categories.tolist()
    labels = [str(level) for level in self.levels]
    eye = np.eye(len(self.levels), dtype=np.int8)  # formulae accepts signed kinds only
    self.contrast_matrix = _formulae_categorical.ContrastMatrix(eye, labels)
    self.value = eye[x.codes]
    self.spans_intercept = spans_intercept


_FORMULAE_EVAL_CATEGORIC = _formulae_variable.Variable.eval_categoric
_formulae_variable.Variable.eval_categoric = _eval_categoric_compact


@contextmanager
def r_bar_coding(bars):
    """Within the block, formulae codes group-level terms bar by bar as lme4 does."""
    previous = getattr(_BAR_CODING, "bars", None)
    _BAR_CODING.bars = list(bars)
    try:
        yield
    finally:
        _BAR_CODING.bars = previous


def internal_var_names(blocks: dict[str, BlockSpec]) -> set[str]:
    """Names of the block variables that are kept out of the returned posterior.

    They carry no information the stored variables lack: ``z`` and the packed Cholesky factor
    are functions of the coefficients, standard deviations and correlations.
    """
    names = set()
    for spec in blocks.values():
        names |= {spec.chol_name, spec.offset_name, spec.centered_name}
    return names


def term_predictor(term) -> np.ndarray:
    """The per-row values of a group-specific term's expression, shaped as its coefficients.

    A one-column term whose coefficients have no expression dimension (``x:z|g``: formulae
    hands over an (n, 1) matrix for an interaction) gets an (n,) vector; multiplying the
    (n,) coefficients by an (n, 1) matrix would broadcast to (n, n) and sum every group's
    coefficient into every row.
    """
    predictor = np.asarray(term.predictor)
    if predictor.ndim == 2 and predictor.shape[1] == 1:
        expr_dims = [d for d in term.coords if not d.endswith("__factor_dim")]
        if not expr_dims:
            return predictor[:, 0]
    return predictor


def _term_columns(term) -> tuple[int, list[str]]:
    """Number of columns of a Bambi group-specific term and their labels."""
    name = term.alias or term.name
    mo_label = _mono.group_label(name)
    if mo_label is not None:  # one varying slope of mo(x), brms' r_g[, mox] (lmmformula._mono)
        return 1, [mo_label]
    predictor = term_predictor(term)
    ncol = 1 if predictor.ndim == 1 else predictor.shape[1]
    if ncol == 1:
        return 1, [name]
    expr, factor = name.split("|", 1)
    if term.categorical:
        levels = [str(level) for level in term.term.expr.levels]
    else:
        levels = [str(i) for i in range(ncol)]
    return ncol, [f"{expr}[{level}]|{factor}" for level in levels]


def block_column_labels(block_terms) -> list[str]:
    """Labels of the columns of a block, as used on the axes of ``{factor}_corr``."""
    labels: list[str] = []
    for term in block_terms:
        labels += _term_columns(term)[1]
    return labels


def block_size(bambi_model: bmb.Model, terms: tuple[str, ...]) -> int:
    """Number of columns a block of terms spans (1 means no correlation to model)."""
    gs = group_specific_terms(bambi_model)
    return sum(_term_columns(gs[name])[0] for name in terms)


def _sd_dist(sd_priors: list[tuple[Prior, int]]):
    """One distribution over the block's standard deviations, each keeping its own prior.

    The priors' parameters are the distribution's inputs (not constants inside its graph), so
    they appear in the model as data and the compiled code does not depend on their values.
    """
    pieces, params = [], []
    for prior, ncol in sd_priors:
        dist = get_distribution_from_prior(prior)
        names = list(prior.args)
        for name in names:
            params.append(np.broadcast_to(np.asarray(prior.args[name], dtype=float), (ncol,)))
        pieces.append((dist, names, ncol))

    def generate(*args):
        *values, _size = args
        out, i = [], 0
        for dist, names, ncol in pieces:
            kwargs = dict(zip(names, values[i : i + len(names)], strict=True))
            i += len(names)
            out.append(dist.dist(**kwargs, shape=(ncol,)))
        return pt.concatenate(out)

    return pm.CustomDist.dist(*params, dist=generate, ndim_supp=1, class_name="BlockSD")


def _build_block(
    pymc_backend,
    spec: BlockSpec,
    terms: dict,
    eta: float,
    mo: dict | None = None,
    cov_chol: np.ndarray | None = None,
) -> dict[str, pt.TensorVariable]:
    """One correlated block as one ``LKJCholeskyCov``: the coefficients of its terms (of
    any component: brms' ``|ID|`` joins terms of several formulas), by term name. ``mo``:
    the population-level ``mo()`` terms a group-level ``mo(x)|g`` multiplies."""
    model = pymc_backend.model
    block_terms = [terms[name] for name in spec.terms]
    for term in block_terms:
        for name, values in _BambiGroupSpecificTerm(term, spec.noncentered).coords.items():
            if name not in model.coords:
                model.add_coords({name: values})
    group_sizes = {len(t.groups) for t in block_terms}
    if len(group_sizes) != 1:  # pragma: no cover - a Bambi invariant
        raise ModelError(f"terms of the block on {spec.factor!r} disagree on the groups")

    sd_priors: list[tuple[Prior, int]] = []
    means: list[np.ndarray] = []
    slices: dict[str, slice] = {}
    start = 0
    for term in block_terms:
        name = term.alias or term.name
        prior = term.prior
        if not isinstance(prior, Prior) or prior.name != "Normal":
            raise PriorError(
                f"the group-level term {name!r} is in a correlated block, which needs a "
                f"Normal prior with a prior on its sigma; got {prior}. Give it "
                "Prior('Normal', mu=0, sigma=Prior('HalfNormal', sigma=...)), or write "
                "the term with '||' to keep it uncorrelated."
            )
        sigma_prior = prior.args.get("sigma")
        if not isinstance(sigma_prior, Prior):
            raise PriorError(
                f"the sigma of the group-level term {name!r} must have a prior (a Prior), "
                f"got {sigma_prior!r}."
            )
        if _mono.group_label(name) is not None:
            sigma_prior = _mono.scalar_prior(sigma_prior, f"the sd of {name}")
        mu = prior.args.get("mu", 0.0)
        if isinstance(mu, Prior):
            raise PriorError(
                f"a prior on the mean of the group-level term {name!r} is not supported in "
                "a correlated block; give a fixed mean (usually 0)."
            )
        ncol, _ = _term_columns(term)
        sd_priors.append((sigma_prior, ncol))
        means.append(np.broadcast_to(np.asarray(mu, dtype=float), (ncol,)))
        slices[name] = slice(start, start + ncol)
        start += ncol

    size = start
    labels = block_column_labels(block_terms)
    factor_dim = f"{spec.factor}__factor_dim"
    row_dim, col_dim = spec.dims
    model.add_coords({row_dim: labels, col_dim: labels})

    chol, corr, stds = pm.LKJCholeskyCov(
        spec.chol_name,
        n=size,
        eta=eta if spec.eta is None else spec.eta,
        sd_dist=_sd_dist(sd_priors),
        compute_corr=True,
        store_in_trace=False,
    )
    pm.Deterministic(spec.corr_name, corr, dims=(row_dim, col_dim))
    mean = np.concatenate(means)
    # what the whole-model kernel needs to know of the block (lmmformula._kernel)
    pymc_backend.__dict__.setdefault("kernel_blocks", {})[spec.chol_name] = {
        "spec": spec,
        "n": size,
        "eta": eta if spec.eta is None else spec.eta,
        "sd_priors": sd_priors,
        "mean": mean,
        "slices": slices,
        "noncentered": spec.noncentered,
        "special": cov_chol is not None
        or any(_mono.group_label(name) is not None for name in slices),
    }
    has_mean = bool(np.any(mean != 0))

    if cov_chol is not None and not spec.noncentered:  # gr(g, cov = K)
        raise ModelError(
            f"the block on gr({spec.factor}, cov = ...) is built non-centered "
            f"(chol(K) z L'); leave noncentered on for {spec.factor!r}."
        )
    if spec.noncentered:
        z = pm.Normal(spec.offset_name, mu=0.0, sigma=1.0, dims=(factor_dim, row_dim))
        coefs = pt.dot(z, chol.T)
        if cov_chol is not None:
            coefs = pt.dot(cov_chol, coefs)
        if has_mean:
            coefs = coefs + mean
    else:
        coefs = pm.MvNormal(spec.centered_name, mu=mean, chol=chol, dims=(factor_dim, row_dim))

    out = {}
    for term in block_terms:
        name = term.alias or term.name
        sl = slices[name]
        sigma_key = term.hyperprior_alias.get("sigma", "sigma")
        term_dims = list(_BambiGroupSpecificTerm(term, spec.noncentered).coords)
        expr_dims = [d for d in term_dims if not d.endswith("__factor_dim")]
        if _mono.group_label(name) is not None:  # r_g * D * simo (lmmformula._mono)
            info = _mono.population_term(name, mo or {})
            out[name] = _mono.build_group_mo(
                info, name, coefs[:, sl.start], term_dims, factor_dim, stds[sl.start]
            )
        elif sl.stop - sl.start == 1 and not expr_dims:
            out[name] = pm.Deterministic(name, coefs[:, sl.start], dims=term_dims)
            pm.Deterministic(f"{name}_{sigma_key}", stds[sl.start])
        else:
            out[name] = pm.Deterministic(name, coefs[:, sl], dims=term_dims)
            pm.Deterministic(f"{name}_{sigma_key}", stds[sl], dims=expr_dims)
    return out


class _Blocks:
    """The correlated blocks of a model, each built once, when the first component that has
    one of its terms builds its group-specific terms."""

    def __init__(
        self,
        specs: dict[str, BlockSpec],
        eta: float,
        special: dict[str, Any] | None = None,
        cov_chol: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.specs = specs
        self.eta = eta
        self.special = dict(special or {})  # brms' gp() and gr(g, cov = K): lmmformula._gp
        self.cov_chol = dict(cov_chol or {})
        self.coefs: dict[str, pt.TensorVariable] = {}
        self.of_term = {name: key for key, spec in specs.items() for name in spec.terms}

    def coef(self, name: str, pymc_backend, bmb_model) -> pt.TensorVariable:
        if name not in self.coefs:
            spec = self.specs[self.of_term[name]]
            terms = group_specific_terms(bmb_model)
            mo = _mono.mo_terms(parent_component(bmb_model))
            cov_chol = self.cov_chol.get(spec.terms[0])  # gr(g, cov = K)
            self.coefs.update(
                _build_block(pymc_backend, spec, terms, self.eta, mo, cov_chol=cov_chol)
            )
        return self.coefs[name]


class _LkjDistributionalComponent(DistributionalComponent):
    """Bambi's distributional component with correlated blocks built jointly."""

    def __init__(
        self,
        component,
        blocks: _Blocks,
        marginal: str | None = None,
        integrated=(),
        nested: dict[str, str] | None = None,
        absorbed=(),
    ):
        super().__init__(component)
        self.blocks = blocks
        self.marginal = marginal  # issue 14: a (1|g) integrated out (lmmformula._marginal)
        self.marginal_sigma = None
        self.integrated = frozenset(integrated)  # terms integrated out with it
        self.block_sigmas: dict[str, Any] = {}  # their group-level sds, by Bambi key
        self.nested = dict(nested or {})  # (1|g) nested in (1|h), sampled as sums
        self.nested_totals: dict[str, Any] = {}  # the sums, by the inner term's key
        self.absorbed = frozenset(absorbed)  # the intercept, when in the sums

    def build_intercept(self, bmb_model):
        """Bambi's, unless the intercept is integrated out (its prior enters the likelihood)."""
        term = self.component.intercept_term
        if term is not None and (term.name in self.integrated or term.name in self.absorbed):
            return
        super().build_intercept(bmb_model)

    def build_common_terms(self, pymc_backend, bmb_model):
        """Bambi's ``build_common_terms``; the coefficients of a ``mo(x)`` term are brms'
        ``bsp * D * simo`` (:mod:`lmmformula._mono`) instead of independent priors."""
        from lmmformula import _mono

        mo = _mono.mo_terms(self.component)
        if any(key in self.integrated for key in self.component.common_terms):
            return self._build_common_terms_integrated(pymc_backend, bmb_model)
        if not mo:
            return super().build_common_terms(pymc_backend, bmb_model)
        simo_alpha = getattr(getattr(bmb_model, "plan", None), "simo", None) or {}
        coefs, columns = [], []
        for key, term in self.component.common_terms.items():
            common_term = CommonTerm(term)
            for name, values in common_term.coords.items():
                pymc_backend.model.add_coords({name: values})
            if key in mo:
                alpha = simo_alpha.get(key, _mono.DEFAULT_SIMO_ALPHA)
                dims = list(common_term.coords)
                dist = get_distribution_from_prior(term.prior)
                coefs.append(_mono.build_mo_coefficients(mo[key], term.prior, dist, alpha, dims))
            else:
                coefs.append(common_term.build(bmb_model))
            columns.append(term.data)
        data = np.column_stack(columns)
        if self.has_intercept and bmb_model.center_predictors:  # as Bambi: centre, keep X
            self.design_matrix_without_intercept = data
            data = data - data.mean(0)
        self.output += pt.dot(data, pt.concatenate([pt.atleast_1d(c) for c in coefs], axis=0))

    def _build_common_terms_integrated(self, pymc_backend, bmb_model):
        """Bambi's common terms where some are integrated out: their coordinates and the
        design Bambi un-centres the intercept with, no variables (the likelihood is on the
        statistics' path, :func:`_marginal_design`; ``output`` is not used)."""
        columns = []
        for key, term in self.component.common_terms.items():
            common_term = CommonTerm(term)
            for name, values in common_term.coords.items():
                pymc_backend.model.add_coords({name: values})
            if key not in self.integrated:
                common_term.build(bmb_model)
            columns.append(term.data)
        if self.has_intercept and bmb_model.center_predictors:
            self.design_matrix_without_intercept = np.column_stack(columns)

    def build_group_specific_terms(self, pymc_backend, bmb_model):
        """Bambi's ``build_group_specific_terms`` with correlated blocks built jointly."""
        if not self.component.group_specific_terms:
            return

        as_multivariate = isinstance(bmb_model.family, (MultivariateFamily, Categorical))
        if as_multivariate and self.blocks.specs:
            raise ModelError(
                f"correlated group-level blocks are not available for the "
                f"{bmb_model.family.name!r} family; write the terms with '||' (uncorrelated)."
            )

        noncentered_default = noncentered_default_for(bmb_model, self.component.name)
        for term in self.component.group_specific_terms.values():
            for name, values in _BambiGroupSpecificTerm(term, noncentered_default).coords.items():
                if name not in pymc_backend.model.coords:
                    pymc_backend.model.add_coords({name: values})

        coefs, columns, predictors, group_indexes = [], [], [], []
        for key, term in self.component.group_specific_terms.items():
            name = term.alias or term.name
            if key == self.marginal:  # issue 14: only its sd; the effects are integrated out
                self.marginal_sigma = _marginal_sigma(term, noncentered_default)
                continue
            if key in self.integrated or key in self.nested.values():  # only its sd
                self.block_sigmas[key] = _marginal_sigma(term, noncentered_default)
                continue
            if key in self.nested:  # its sd, and the sums with the outer factor's effects
                self.block_sigmas[key] = _marginal_sigma(term, noncentered_default)
                dims = [d for d in _BambiGroupSpecificTerm(term, True).coords]
                self.nested_totals[key] = pm.Flat(nested_total_name(term), dims=dims)
                continue
            if name in self.blocks.of_term:
                coefs.append(self.blocks.coef(name, pymc_backend, bmb_model))
            elif key in self.blocks.special:
                dims = list(_BambiGroupSpecificTerm(term, noncentered_default).coords)
                coefs.append(self.blocks.special[key](term, dims))
            elif _mono.group_label(name) is not None:  # (0 + mo(x)|g), (mo(x)||g)
                info = _mono.population_term(name, _mono.mo_terms(self.component))
                gs = _BambiGroupSpecificTerm(term, noncentered_default)
                noncentered = term.prior.noncentered
                noncentered = noncentered_default if noncentered is None else noncentered
                coefs.append(
                    _mono.build_uncorrelated_group_mo(
                        info, name, term, list(gs.coords), bool(noncentered)
                    )
                )
            else:
                coefs.append(_BambiGroupSpecificTerm(term, noncentered_default).build(bmb_model))
            columns.append(term.data)
            predictors.append(term_predictor(term))
            group_indexes.append(term.group_index)

        if not coefs:  # every group-level term integrated out
            return
        if bambi_config["SPARSE_DOT"]:
            reshaped = []
            for c in coefs:
                if as_multivariate and c.ndim == 3:  # (f_j, e_j, k) -> (f_j * e_j, k)
                    c = c.reshape((-1, c.shape[-1]))
                elif not as_multivariate and c.ndim == 2:  # (f_j, e_j) -> (f_j * e_j,)
                    c = c.flatten()
                reshaped.append(c)
            data = sp.sparse.hstack(columns, format="csr")
            stacked = pt.concatenate(reshaped, axis=0)
            if not as_multivariate:
                stacked = stacked[:, np.newaxis]
            contribution = ps.structured_dot(data, stacked).squeeze()
        else:
            contribution = 0
            for coef, predictor, group_index in zip(coefs, predictors, group_indexes, strict=True):
                # index with a tensor: a numpy index array makes PyTensor inspect every
                # element in Python (0.2 s per 73,000 rows), for the same graph
                coef = coef[pt.as_tensor_variable(group_index)]
                ndim = predictor.ndim
                if as_multivariate:  # (n, [e_j,] k) * (n, [e_j,] 1)
                    predictor = predictor[:, np.newaxis]
                term_contribution = coef * predictor
                if ndim > 1:
                    term_contribution = term_contribution.sum(axis=1)
                contribution += term_contribution

        self.output += contribution


class _PrecisionWeightedResponse(_BambiResponseTerm):
    """Bambi's gaussian response with lme4's precision weights: sd ``sigma / sqrt(w_i)``."""

    def __init__(self, term, family, weights: np.ndarray):
        super().__init__(term, family)
        self.weights = np.asarray(weights, dtype=float)

    def build_distribution(self, kwargs, pymc_backend):
        if "sigma" not in kwargs:  # pragma: no cover - only gaussian models get here
            raise ModelError("precision weights need a family with a sigma")
        kwargs = dict(kwargs)
        kwargs["sigma"] = kwargs["sigma"] / np.sqrt(self.weights)
        return super().build_distribution(kwargs, pymc_backend)


def precision_weighted_loglik(loglik, weights, sigma):
    """Turn Bambi's unweighted gaussian pointwise log-likelihood into the precision-weighted
    one: ``log N(y | mu, sigma / sqrt(w)) = w * log N(y | mu, sigma)
    + (w - 1) * (log(2 pi) / 2 + log sigma) + log(w) / 2``.

    ``loglik`` is a DataArray ``(chain, draw, obs)``, ``sigma`` the posterior's
    ``(chain, draw)`` sigma and ``weights`` one number per row; the result has ``loglik``'s
    dims and coordinates."""
    import xarray as xr

    obs = [d for d in loglik.dims if d not in ("chain", "draw")]
    w = xr.DataArray(np.asarray(weights, dtype=float), dims=obs)
    out = w * loglik + (w - 1.0) * (0.5 * np.log(2 * np.pi) + np.log(sigma)) + 0.5 * np.log(w)
    return out.transpose(*loglik.dims)


class _LkjPyMCModel(PyMCModel):
    """Bambi's PyMC backend whose parent component builds correlated blocks."""

    def __init__(
        self,
        blocks: dict[str, BlockSpec],
        eta: float,
        suffstats: bool = False,
        suffstats_shared: bool = False,
        marginal: str | None = None,
        marginal_block: tuple[str, ...] = (),
        marginal_nested: dict[str, str] | None = None,
        marginal_nested_intercept: bool = False,
    ):
        super().__init__()
        self.blocks = blocks
        self.eta = eta
        self.suffstats = suffstats
        self.marginal = marginal
        self.marginal_block = tuple(marginal_block) if marginal else ()
        self.marginal_nested = dict(marginal_nested or {}) if marginal else {}
        self.marginal_nested_intercept = bool(marginal_nested_intercept and self.marginal_nested)
        self.marginal_design: tuple[MarginalDesign, Any] | None = None
        self.suffstats_shared = suffstats_shared
        self.reduction: _suffstats.Reduction | None = None

    def build(self, spec):
        """Bambi's ``PyMCModel.build`` with the parent component swapped for ours."""
        parent = spec.family.likelihood.parent
        self.model = pm.Model()
        self.components = {}
        self.kernel_blocks: dict[str, dict] = {}
        for name, values in spec.response_term.coords.items():
            if name not in self.model.coords:
                self.model.add_coords({name: values})
        with self.model:
            for name, component in spec.marginal_parameters.items():
                self.components[name] = ConstantComponent(component)
                self.components[name].build(self, spec)
            plan = getattr(spec, "plan", None)  # gp() and gr(cov =) terms: lmmformula._gp
            blocks = _Blocks(
                self.blocks, self.eta, getattr(plan, "special", {}), getattr(plan, "cov_chol", {})
            )
            for name, component in spec.conditional_parameters.items():
                marginal = self.marginal if name == parent else None
                integrated = self.marginal_block if name == parent else ()
                nested = self.marginal_nested if name == parent else None
                absorbed = ()
                if name == parent and self.marginal_nested_intercept:
                    absorbed = (component.intercept_term.name,)
                built = _LkjDistributionalComponent(
                    component, blocks, marginal, integrated, nested, absorbed
                )
                self.components[name] = built
                built.build(self, spec)
            weights = getattr(spec, "lkj_precision_weights", None)
            if self.suffstats:
                self._build_suffstats_response(spec)
            elif self.marginal:  # issue 14: the (1|g) effects integrated out exactly
                term = spec.parameters[parent].group_specific_terms[self.marginal]
                parent_built = self.components[parent]
                sigma = self.components["sigma"].output
                for i, (inner, outer) in enumerate(self.marginal_nested.items()):
                    pm.Potential(
                        f"{nested_total_name(parent_built.component.group_specific_terms[inner])}"
                        "_prior",
                        _nested_prior(
                            spec,
                            inner,
                            outer,
                            parent_built.nested_totals[inner],
                            parent_built.block_sigmas[inner],
                            parent_built.block_sigmas[outer],
                            intercept=i == 0 and self.marginal_nested_intercept,
                        ),
                    )
                self.marginal_design = _marginal_response(
                    spec,
                    parent_built.output,
                    sigma,
                    parent_built.marginal_sigma,
                    term,
                    blocks,
                    self.marginal_block,
                    parent_built.block_sigmas,
                    parent_built.nested_totals,
                    (*self.marginal_nested.values(), *parent_built.absorbed),
                )
            elif weights is not None:
                _PrecisionWeightedResponse(spec.response_term, spec.family, weights).build(
                    self, spec
                )
            else:
                self.response_component = ResponseComponent(spec.response_term)
                self.response_component.build(self, spec)
            self.build_potentials(spec)
        self.spec = spec

    def _build_suffstats_response(self, spec):
        """The gaussian likelihood on exact per-cell sufficient statistics, as one Potential."""
        reason = suffstats_unsupported(spec)
        if reason is not None:
            raise ModelError(f"the sufficient-statistics likelihood does not apply: {reason}.")
        y, x, groups = _suffstats_inputs(spec)
        reduction = _suffstats.reduce_cells(y, x, groups)
        self.reduction = reduction
        parent = spec.family.likelihood.parent
        component = spec.parameters[parent]
        model = self.model

        coefs = []
        if component.intercept_term is not None:
            coefs.append(pt.atleast_1d(model[_aliased(component.intercept_term)]).flatten())
        for term in component.common_terms.values():
            coefs.append(pt.atleast_1d(model[_aliased(term)]).flatten())
        eta = 0.0
        if coefs:
            eta = pt.dot(reduction.x, pt.concatenate(coefs))
        for name, z, index in zip(reduction.names, reduction.z, reduction.group_index, strict=True):
            contribution = model[name][pt.as_tensor_variable(index)] * z
            if z.ndim > 1:
                contribution = contribution.sum(axis=1)
            eta = eta + contribution
        sigma = self.components["sigma"].output
        pseudo_y, rss = reduction.y, reduction.rss
        if self.suffstats_shared:
            # the parts that depend on the response, as shared data: nutpie's ``with_data`` can
            # then swap in another response (``suffstats_data``) without compiling again
            pseudo_y = pytensor.shared(reduction.y, name=SUFFSTATS_Y, shape=(None,))
            rss = pytensor.shared(np.array(reduction.rss, dtype=float), name=SUFFSTATS_RSS)
        resid = pseudo_y - eta
        response = spec.response_term.alias or spec.response_term.name
        logp = _suffstats.gaussian_logp(pt.sum(pt.square(resid)), rss, reduction.n, sigma)
        weights = getattr(spec, "lkj_precision_weights", None)
        if weights is not None:  # the Jacobian of the rows scaled by sqrt(w): a constant
            logp = logp + 0.5 * float(np.sum(np.log(weights)))
        pm.Potential(f"{response}_suffstats", logp)

    @property
    def row_wise(self) -> bool:
        """Whether the graph has Bambi's row-by-row response (not sufficient statistics, no
        integrated-out intercept)."""
        return not (self.suffstats or self.marginal)

    def _clean_results(self, idata, omit_offsets, include_response_params):
        drop = internal_var_names(self.blocks)
        posterior = as_dataset(idata["posterior"])
        present = [name for name in drop if name in posterior.data_vars]
        if present:
            idata["posterior"] = posterior.drop_vars(present)
        if self.marginal_block:  # drawn in the sampler's parametrisation, before Bambi's
            # cleaning (which un-centres the intercept)
            posterior = as_dataset(idata["posterior"])
            idata["posterior"] = add_marginal_block_draws(posterior, self)
        if self.marginal_nested:
            posterior = as_dataset(idata["posterior"])
            idata["posterior"] = add_marginal_nested_draws(posterior, self)
        idata = super()._clean_results(idata, omit_offsets, include_response_params)
        if self.marginal:  # issue 14: the integrated effects drawn from their conditional
            posterior = as_dataset(idata["posterior"])
            idata["posterior"] = add_marginal_effect_draws(posterior, self.spec, self.marginal)
        return idata


class LkjBambiModel(bmb.Model):
    """A ``bambi.Model`` whose correlated group-level blocks get an LKJ prior.

    Everything else (terms, priors, families, ``predict``, ``interpret``, ``plot_priors``) is
    Bambi's own.

    Parameters
    ----------
    formula, data, family, priors, link, noncentered, **kwargs
        As for ``bambi.Model``.
    plan : BuildPlan, optional
        What to build on Bambi's terms (the correlated blocks, their LKJ shape, the
        likelihood); the model layer hands it over with :meth:`set_plan` once it has
        resolved the priors.
    precision_weights : numpy.ndarray, optional
        Per row, lme4's precision weights of a gaussian model: the response's sd is
        ``sigma / sqrt(w)``.
    bars : sequence of (bool, tuple of str)
        Per bar of the formula, whether it has an intercept and its terms' Bambi names
        (:meth:`lmmformula.formula.Translation.bar_terms`): each bar's factors are coded as
        R codes the bar's own formula.
    """

    def __init__(
        self,
        formula,
        data,
        *,
        plan: BuildPlan | None = None,
        bars=(),
        precision_weights: np.ndarray | None = None,
        **kwargs,
    ):
        check_bambi_version()
        self.lkj_precision_weights = (
            None if precision_weights is None else np.asarray(precision_weights, dtype=float)
        )
        self.plan = plan or BuildPlan()
        if isinstance(formula, tuple):  # brms' bf(): the main formula, then one per dpar
            formula = bmb.Formula(*formula)
        with r_bar_coding(bars):
            super().__init__(formula, data, **kwargs)
        _mono.check_terms(self)
        name = self.response_term.name
        if "/" in name and self.response_term.alias is None:
            # PyMC refuses '/' in variable names (I(awards / applications) ~ ...); the
            # division slash U+2215 reads the same
            self.set_alias({name: name.replace("/", "\u2215")})

    def set_plan(self, plan: BuildPlan) -> None:
        """Hand over what to build on Bambi's terms (the model layer does so once, after it
        has resolved the priors and chosen the likelihood, before the graph exists)."""
        if not isinstance(plan, BuildPlan):  # pragma: no cover - a programming error
            raise TypeError(f"a BuildPlan, not {type(plan).__name__}")
        self.plan = plan
        self.built = False
        component = parent_component(self)
        original = getattr(component, "_lkj_predict_group_specific", None)
        if plan.predict_wrapper is not None:
            if original is None:  # Bambi's own, kept once so that a new plan rewraps it
                original = component.predict_group_specific
                component._lkj_predict_group_specific = original
            component.predict_group_specific = plan.predict_wrapper(original, component)
        elif original is not None:
            component.predict_group_specific = original

    def build(self):
        plan = self.plan
        self.backend = _LkjPyMCModel(
            plan.blocks,
            plan.eta,
            plan.suffstats,
            plan.suffstats_shared,
            plan.marginal,
            plan.marginal_block,
            plan.marginal_nested,
            plan.marginal_nested_intercept,
        )
        self.backend.build(self)
        self.built = True

    def full_data_backend(self) -> _LkjPyMCModel:
        """A backend whose graph has Bambi's n-sized response (built afresh when the model
        samples on sufficient statistics, otherwise the model's own backend)."""
        self._check_built()
        if getattr(self.backend, "row_wise", True):
            return self.backend
        backend = _LkjPyMCModel(self.plan.blocks, self.plan.eta, suffstats=False)
        backend.build(self)
        return backend

    def prior_predictive(self, draws=500, var_names=None, omit_offsets=True, random_seed=None):
        """Bambi's ``prior_predictive``; on a sufficient-statistics model the draws come from a
        full-data graph, so the response is drawn row by row as usual."""
        if getattr(self.backend, "row_wise", True):
            return super().prior_predictive(draws, var_names, omit_offsets, random_seed)
        backend = self.backend
        try:
            self.backend = self.full_data_backend()
            return super().prior_predictive(draws, var_names, omit_offsets, random_seed)
        finally:
            self.backend = backend


Family = bmb.Family
"""Bambi's family class (for the model layer's signatures)."""


def builtin_families() -> list[str]:
    """The names of Bambi's built-in families, sorted."""
    from bambi.defaults.families import BUILTIN_FAMILIES

    return sorted(BUILTIN_FAMILIES)


def model_keywords() -> set[str]:
    """The keyword arguments ``bambi.Model`` takes (``center_predictors``, ...)."""
    import inspect

    params = inspect.signature(bmb.Model.__init__).parameters.items()
    return {n for n, p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def pointwise_loglik(bambi_model: bmb.Model, posterior, data, random_seed=None):
    """Each posterior draw's log-likelihood of the rows of ``data`` (new data allowed; new
    grouping levels take a fitted level's effects at random, Bambi's ``sample_new_groups``):
    a DataArray ``(chain, draw, __obs__)``, before any precision weights."""
    import xarray as xr

    idata = xr.DataTree.from_dict({"posterior": posterior})
    idata = bambi_model._compute_likelihood_params(
        idata,
        data=data,
        include_group_specific=True,
        sample_new_groups=True,
        random_seed=random_seed,
    )
    return bambi_model.family.log_likelihood(
        model=bambi_model, posterior=idata["posterior"].to_dataset(), data=data
    )


def response_values(bambi_model: bmb.Model) -> np.ndarray:
    """The response as the likelihood sees it, row by row (successes and trials for ``p()``)."""
    return np.asarray(bambi_model.response_term.data)


def set_priors(bambi_model: bmb.Model, priors: dict) -> None:
    """Hand resolved priors to a Bambi model that is not built yet (Bambi's ``set_priors``)."""
    if priors:
        bambi_model.set_priors(priors=dict(priors))


def parent_name(bambi_model: bmb.Model) -> str:
    """The name of the family's parameter the linear predictor models (``mu``, ``p``, ...)."""
    return bambi_model.family.likelihood.parent


def parent_component(bambi_model: bmb.Model):
    """The Bambi component of that parameter (its intercept, common, group and offset terms)."""
    return bambi_model.parameters[parent_name(bambi_model)]


def group_specific_terms(bambi_model: bmb.Model) -> dict:
    """The group-specific terms (Bambi objects) of every component, by name: the parent's
    under their keys (``1|g``), a distributional parameter's under Bambi's prefixed names
    (``sigma_1|g``)."""
    out = dict(parent_component(bambi_model).group_specific_terms)
    for component in dpar_components(bambi_model).values():
        for term in component.group_specific_terms.values():
            out[term.alias or term.name] = term
    return out


def parent_group_specific_terms(bambi_model: bmb.Model) -> dict:
    """The parent component's group-specific terms only, by Bambi key."""
    return dict(parent_component(bambi_model).group_specific_terms)


def dpar_components(bambi_model: bmb.Model) -> dict:
    """The components of the distributional parameters modelled by a formula (``sigma`` in
    ``bf(y ~ x, sigma ~ z)``), by parameter name, in formula order."""
    parent = parent_name(bambi_model)
    return {n: c for n, c in bambi_model.conditional_parameters.items() if n != parent}


def family_parameters(family) -> tuple[str, tuple[str, ...]]:
    """The parameter a family's linear predictor models and its other (distributional)
    parameters: ``("mu", ("sigma",))`` for the gaussian family. ``family`` is a name of a
    Bambi family or a ``bambi.Family``."""
    if isinstance(family, str):
        from bambi.defaults.families import get_builtin_family

        family = get_builtin_family(family)
    likelihood = family.likelihood
    return likelihood.parent, tuple(p for p in likelihood.params if p != likelihood.parent)


def dpar_link(bambi_model: bmb.Model, dpar: str) -> str:
    """The link of a distributional parameter's formula (``log`` for sigma)."""
    return bambi_model.family.link[dpar].name


@dataclass
class TermInfo:
    """What the results layer needs to know about a group-level term."""

    name: str
    expr: str
    factor: str
    columns: list[str] = field(default_factory=list)
    levels: list[str] = field(default_factory=list)
    expr_dim: str | None = None
    sigma_name: str = ""


def term_info(bambi_model: bmb.Model) -> dict[str, TermInfo]:
    """Names, columns, levels and dims of every group-level term of the parent component."""
    out = {}
    for name, term in group_specific_terms(bambi_model).items():
        name = term.alias or name
        mo_label = _mono.group_label(name)
        if mo_label is not None:  # the varying slope of mo(x): mox|g, sd mox|g_sigma
            name = mo_label
        expr, factor = name.split("|", 1)
        _, labels = _term_columns(term)
        coords = list(term.coords)
        expr_dims = [d for d in coords if not d.endswith("__factor_dim")]
        if mo_label is not None:
            expr_dims = []
        sigma_key = term.hyperprior_alias.get("sigma", "sigma")
        out[name] = TermInfo(
            name=name,
            expr=expr,
            factor=factor,
            columns=labels,
            levels=[str(g) for g in term.groups],
            expr_dim=expr_dims[0] if expr_dims else None,
            sigma_name=f"{name}_{sigma_key}",
        )
    return out


# -- a read-only view of the Bambi model -----------------------------------------------------
@dataclass(frozen=True)
class TermView:
    """One term of a Bambi model, read once: what the rest of the package may know of it.

    Attributes
    ----------
    name : str
        The term's name in the posterior (Bambi's alias or name: ``Intercept``, ``x``,
        ``1|g``, ``sigma_z``).
    kind : {"intercept", "common", "group"}
    dpar : str
        The distributional parameter whose formula has the term; ``""`` for the main one.
    prior : object
        The term's prior (for a group-level term the ``Normal`` whose ``sigma`` has the sd's
        prior).
    data : numpy.ndarray or None
        Common terms: the design columns ``(n, p)`` before centring; group-level terms: the
        predictor (ones for an intercept); intercepts: None.
    """

    name: str
    kind: str
    dpar: str
    prior: Any
    data: np.ndarray | None = None
    key: str = ""  # Bambi's key of the term in its component ("z" for sigma_z)
    intercept_only: bool = False  # a group-level term that is a varying intercept
    levels: tuple[str, ...] = ()  # a group-level term's levels, in Bambi's order

    @property
    def factor(self) -> str:
        """The grouping factor of a group-level term (``""`` otherwise)."""
        return self.name.split("|", 1)[1] if self.kind == "group" else ""

    @property
    def sd_prior(self) -> Any:
        """The prior of a group-level term's sd (None when it has none)."""
        args = getattr(self.prior, "args", None)
        return args.get("sigma") if isinstance(args, dict) else None


@dataclass(frozen=True)
class ModelView:
    """What the package reads of a Bambi model, as values (``view(bambi_model)``)."""

    family: str
    parent: str
    link: str
    center_predictors: bool
    terms: tuple[TermView, ...]
    auxiliary: dict[str, Any]  # the family's constant parameters (sigma, ...) -> prior
    response: np.ndarray
    response_categorical: bool = False
    offsets: tuple[np.ndarray, ...] = ()  # the main formula's offset columns
    parameters: tuple[str, ...] = ()  # the family's parameters, in the likelihood's order
    auxiliary_names: tuple[str, ...] = ()  # Bambi's auxiliary parameters of the family
    default_priors: dict[str, Any] = field(default_factory=dict)  # the family's, by parameter
    components: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> term keys

    def term(self, key: str, dpar: str = "") -> TermView:
        """The term with Bambi's ``key`` in the formula of ``dpar`` (``""``: the main one)."""
        return next(t for t in self.terms if t.key == key and t.dpar == dpar)

    def intercept(self, dpar: str = "") -> TermView | None:
        return next((t for t in self.terms if t.kind == "intercept" and t.dpar == dpar), None)

    def common(self, dpar: str = "") -> list[TermView]:
        return [t for t in self.terms if t.kind == "common" and t.dpar == dpar]

    def group(self) -> list[TermView]:
        return [t for t in self.terms if t.kind == "group"]

    @property
    def centred(self) -> bool:
        """Whether Bambi samples the main formula's intercept of centred predictors."""
        return self.intercept() is not None and bool(self.common()) and self.center_predictors


def view(bambi_model: bmb.Model) -> ModelView:
    """A read-only view of a Bambi model (its terms, priors, family and response)."""
    terms: list[TermView] = []
    components = {"": parent_component(bambi_model), **dpar_components(bambi_model)}
    for dpar, component in components.items():
        if component.intercept_term is not None:
            term = component.intercept_term
            terms.append(TermView(_aliased(term), "intercept", dpar, term.prior, key="Intercept"))
        for key, term in component.common_terms.items():
            data = np.asarray(term.data, dtype=float).reshape(len(term.data), -1)
            terms.append(TermView(_aliased(term), "common", dpar, term.prior, data, key))
        for key, term in component.group_specific_terms.items():
            predictor = np.asarray(term_predictor(term), dtype=float)
            only = term.kind == "intercept"
            levels = tuple(str(g) for g in term.groups)
            terms.append(
                TermView(_aliased(term), "group", dpar, term.prior, predictor, key, only, levels)
            )
    family = bambi_model.family
    parent = family.likelihood.parent
    auxiliary = {
        name: getattr(component, "prior", None)
        for name, component in bambi_model.marginal_parameters.items()
    }
    response = bambi_model.response_term
    try:
        response_values = np.asarray(response.data)
    except Exception:  # Bambi cannot read some responses back; its families checked them
        response_values = np.empty(0)
    offsets = tuple(
        np.asarray(t.data, dtype=float) for t in parent_component(bambi_model).offset_terms.values()
    )
    return ModelView(
        family=family.name,
        parent=parent,
        link=family.link[parent].name,
        center_predictors=bool(bambi_model.center_predictors),
        terms=tuple(terms),
        auxiliary=auxiliary,
        response=response_values,
        response_categorical=bool(response.categorical),
        offsets=offsets,
        parameters=tuple(family.likelihood.params),
        auxiliary_names=tuple(family.auxiliary_parameters),
        default_priors=dict(family.default_priors),
        components={
            name: tuple(getattr(c, "terms", None) or ())
            for name, c in bambi_model.parameters.items()
        },
    )


def mo_terms(bambi_model: bmb.Model) -> dict:
    """The main formula's ``mo()`` terms (:class:`lmmformula._mono.MoTerm`), by Bambi key."""
    return _mono.mo_terms(parent_component(bambi_model))


def uncenter_intercept(bambi_model: bmb.Model, draws):
    """Draws (an xarray Dataset) whose main intercept is Bambi's sampled intercept of the
    centred predictors moved to zero predictors, as Bambi's own results report it."""
    v = view(bambi_model)
    intercept = v.intercept()
    if not v.centred or intercept is None:
        return draws
    shift = 0.0
    n_chain, n_draw = draws.sizes["chain"], draws.sizes["draw"]
    for term in v.common():
        coef = draws[term.name].transpose("chain", "draw", ...).values.reshape(n_chain, n_draw, -1)
        shift = shift + (coef * term.data.mean(axis=0)).sum(axis=-1)
    out = draws.copy()
    out[intercept.name] = draws[intercept.name] - shift
    return out


# -- sufficient statistics ---------------------------------------------------------------------
def _aliased(term) -> str:
    return term.alias or term.name


def suffstats_unsupported(bambi_model: bmb.Model) -> str | None:
    """Why the sufficient-statistics likelihood cannot be used (``None`` when it can).

    It needs a gaussian family with identity link on ``mu``, ``sigma`` not modelled by a
    formula, a plain response (no weights, censoring, truncation or constraints) and a linear
    predictor made only of an intercept, offsets, common terms and group-specific terms.
    """
    family = bambi_model.family
    if family.name != "gaussian":
        return f"the family is {family.name!r}, not gaussian"
    parent = family.likelihood.parent
    if parent != "mu" or family.link[parent].name != "identity":
        return f"the link is {family.link[parent].name!r}, not identity"
    if set(bambi_model.conditional_parameters) != {parent}:
        others = sorted(set(bambi_model.conditional_parameters) - {parent})
        return f"{', '.join(others)} is modelled by a formula"
    if "sigma" not in bambi_model.marginal_parameters:  # pragma: no cover - gaussian has sigma
        return "the family has no constant sigma"
    response = bambi_model.response_term
    for kind in ("weighted", "censored", "truncated", "constrained"):
        if getattr(response, f"is_{kind}", False):
            return f"the response is {kind}"
    if np.ndim(np.squeeze(response.data)) != 1:
        return "the response is not one column"
    component = bambi_model.parameters[parent]
    if component.hsgp_terms:
        return "the model has HSGP terms"
    if hasattr(family, "transform_backend_eta"):  # pragma: no cover - not for gaussian
        return "the family transforms the linear predictor"
    return None


def _suffstats_inputs(bambi_model: bmb.Model):
    """``(y - offsets, fixed design as it enters the linear predictor, group columns)``."""
    y = np.asarray(np.squeeze(bambi_model.response_term.data), dtype=float)
    y = y - _offsets(bambi_model, y.size)
    weights = getattr(bambi_model, "lkj_precision_weights", None)
    scale = np.ones(y.size) if weights is None else np.sqrt(weights)
    # precision weights: row i's sd is sigma / sqrt(w_i), so sqrt(w_i) times the row (response
    # and every design column) has sd sigma, and the reduction applies as it is
    x, groups = _design_inputs(bambi_model, y.size, scale)
    return y * scale, x, groups


def _offsets(bambi_model: bmb.Model, n: int) -> np.ndarray:
    """The sum of the linear predictor's offset terms, row by row."""
    total = np.zeros(n)
    for offset in parent_component(bambi_model).offset_terms.values():
        total = total + np.asarray(offset.data, dtype=float).squeeze()
    return total


def _design_inputs(bambi_model: bmb.Model, n: int, scale: np.ndarray):
    """``(fixed design as it enters the linear predictor, group columns)``, rows times
    ``scale``."""
    component = parent_component(bambi_model)
    columns = []
    if component.common_terms:
        data = np.column_stack([term.data for term in component.common_terms.values()])
        data = np.asarray(data, dtype=float).reshape(n, -1)
        if component.intercept_term is not None and bambi_model.center_predictors:
            data = data - data.mean(0)
        columns.append(data)
    if component.intercept_term is not None:
        columns.insert(0, np.ones((n, 1)))
    x = np.concatenate(columns, axis=1) if columns else np.zeros((n, 0))
    groups = [
        _suffstats.GroupColumns(
            _aliased(term),
            _scale_rows(np.asarray(term_predictor(term), dtype=float), scale),
            np.asarray(term.group_index),
        )
        for term in component.group_specific_terms.values()
    ]
    return _scale_rows(x, scale), groups


def kernel_model(backend) -> _kernel.KernelModel:
    """A built gaussian model as lmmformula's whole-model kernel needs it
    (:mod:`lmmformula._kernel`); raises ``_kernel.Unsupported`` saying what it does not
    cover."""
    spec = backend.spec
    family = spec.family.name
    glm = _KERNEL_GLMS.get(family)
    reason = suffstats_unsupported(spec) if glm is None else _glm_unsupported(spec, *glm)
    if reason is not None:
        raise _kernel.Unsupported(reason)
    if getattr(spec, "lkj_precision_weights", None) is not None:
        raise _kernel.Unsupported("precision weights")
    if getattr(backend, "marginal", None):
        raise _kernel.Unsupported("a group-level term is integrated out")
    plan = getattr(spec, "plan", None)
    if getattr(plan, "special", None) or getattr(plan, "cov_chol", None):
        raise _kernel.Unsupported("gp() or gr(g, cov = K) terms")
    reduction = backend.reduction
    trials = offset = None
    if glm is not None:
        if not backend.row_wise:
            raise _kernel.Unsupported("the likelihood is not row by row")
        response = np.asarray(spec.response_term.data, dtype=float)
        y = response[:, 0] if response.ndim == 2 else response.ravel()
        if family == "binomial":
            if response.ndim != 2 or response.shape[1] != 2:
                raise _kernel.Unsupported("the binomial response has no trials column")
            trials = response[:, 1]
        offset = _offsets(spec, y.size)
        x, groups = _design_inputs(spec, y.size, np.ones(y.size))
        reduction = _suffstats.rows_as_reduction(y, x, groups)
        likelihood = "rows"
    elif reduction is not None:
        if backend.suffstats_shared:
            raise _kernel.Unsupported("the sufficient statistics are shared data")
        likelihood = "potential"
    else:
        if not backend.row_wise:
            raise _kernel.Unsupported("the likelihood is neither row by row nor on statistics")
        y, x, groups = _suffstats_inputs(spec)
        reduction = _suffstats.rows_as_reduction(y, x, groups)
        likelihood = "rows"
    component = parent_component(spec)
    population = []
    if component.intercept_term is not None:
        population.append(_aliased(component.intercept_term))
    population += [_aliased(term) for term in component.common_terms.values()]
    gs = component.group_specific_terms
    by_name = {_aliased(term): term for term in gs.values()}
    blocks = []
    for info in backend.kernel_blocks.values():
        bspec = info["spec"]
        if info["special"] or not info["noncentered"]:
            raise _kernel.Unsupported("a centered block, gr(cov =) or mo()")
        sds = {}
        for name, sl in info["slices"].items():
            term = by_name.get(name)
            key = term.hyperprior_alias.get("sigma", "sigma") if term is not None else "sigma"
            sds[f"{name}_{key}"] = sl
        blocks.append(
            _kernel.KernelBlock(
                chol=bspec.chol_name,
                offsets=bspec.offset_name,
                corr=bspec.corr_name,
                n=int(info["n"]),
                eta=float(info["eta"]),
                mean=np.asarray(info["mean"], dtype=float),
                sd_dists=[
                    (get_distribution_from_prior(prior).dist(**prior.args, shape=(ncol,)), ncol)
                    for prior, ncol in info["sd_priors"]
                ],
                columns=dict(info["slices"]),
                sds=sds,
            )
        )
    in_blocks = {name for b in blocks for name in b.columns}
    uncorrelated = {}
    for name, term in by_name.items():
        if name in in_blocks:
            continue
        if _mono.group_label(name) is not None:
            raise _kernel.Unsupported(f"the monotonic group-level term {name}")
        prior = term.prior
        mu = prior.args.get("mu", 0.0) if isinstance(prior, Prior) else None
        if mu is None or isinstance(mu, Prior) or np.any(np.asarray(mu) != 0):
            raise _kernel.Unsupported(f"the group-level term {name} has a mean")
        sigma_key = term.hyperprior_alias.get("sigma", "sigma")
        uncorrelated[name] = (f"{name}_{sigma_key}", f"{name}_offset")
    return _kernel.KernelModel(
        reduction=reduction,
        population=population,
        sigma=backend.components["sigma"].output.name if glm is None else "",
        blocks=blocks,
        uncorrelated=uncorrelated,
        likelihood=likelihood,
        family=family,
        trials=trials,
        offset=offset,
    )


_KERNEL_GLMS = {"bernoulli": ("p", "logit"), "binomial": ("p", "logit"), "poisson": ("mu", "log")}
"""Families beside the gaussian that the kernel covers, with the parameter and link."""


def _glm_unsupported(bambi_model: bmb.Model, parent: str, link: str) -> str | None:
    """Why the kernel cannot take this bernoulli, binomial or poisson model (``None``: it can)."""
    family = bambi_model.family
    if family.likelihood.parent != parent or family.link[parent].name != link:
        return f"the link is {family.link[family.likelihood.parent].name!r}, not {link}"
    if set(bambi_model.conditional_parameters) != {parent}:
        return "a parameter other than the mean is modelled by a formula"
    response = bambi_model.response_term
    for kind in ("weighted", "censored", "truncated", "constrained"):
        if getattr(response, f"is_{kind}", False):
            return f"the response is {kind}"
    if parent_component(bambi_model).hsgp_terms:
        return "the model has HSGP terms"
    if hasattr(family, "transform_backend_eta"):
        return "the family transforms the linear predictor"
    return None


def _scale_rows(a: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return a * (scale if a.ndim == 1 else scale[:, None])


def suffstats_data(bambi_model: bmb.Model, y) -> dict[str, np.ndarray]:
    """Shared-data updates that put another response ``y`` (same rows, same design) into a
    sufficient-statistics model built with ``BuildPlan(suffstats_shared=True)``; pass them to
    ``compiled.with_data(**updates)`` of a nutpie-compiled model."""
    _, x, groups = _suffstats_inputs(bambi_model)
    component = parent_component(bambi_model)
    y = np.asarray(y, dtype=float).reshape(-1)
    for offset in component.offset_terms.values():
        y = y - np.asarray(offset.data, dtype=float).squeeze()
    weights = getattr(bambi_model, "lkj_precision_weights", None)
    if weights is not None:
        y = y * np.sqrt(weights)
    reduction = _suffstats.reduce_cells(y, x, groups)
    return {SUFFSTATS_Y: reduction.y, SUFFSTATS_RSS: np.array(reduction.rss, dtype=float)}


def suffstats_plan(bambi_model: bmb.Model) -> _suffstats.CellPlan:
    """The cells of a model that :func:`suffstats_unsupported` accepts, and how many
    pseudo-observations they leave at most."""
    _, x, groups = _suffstats_inputs(bambi_model)
    return _suffstats.plan_cells(x, groups)


# -- the design matrices -----------------------------------------------------------------------
@dataclass(frozen=True)
class DesignParts:
    """The population- and group-level design of the parent component, read from Bambi.

    ``x`` holds the uncentred common columns (offsets left out, as in lme4's ``X``) and
    ``x_columns`` rows ``(label, term, position)``: the coefficient ``position`` of the Bambi
    variable ``term``. ``z`` is the (n, q) sparse group-level design, its columns in Bambi's
    order (term by term; within a term level by level, the term's columns within a level), and
    ``z_columns`` rows ``(factor, level, term, column, position)``.
    """

    x: np.ndarray
    x_columns: list[tuple[str, str, int]]
    z: sp.sparse.csr_matrix
    z_columns: list[tuple[str, str, str, str, int]]
    offset: np.ndarray | None


def design_parts(bambi_model: bmb.Model) -> DesignParts:
    """The design matrices of a Bambi model's parent component (no PyMC graph needed)."""
    component = parent_component(bambi_model)
    design = component.design
    n = len(bambi_model.data)
    xs, x_columns, offsets = [], [], []
    if design.common:
        common = design.common
        matrix = np.asarray(common.design_matrix, dtype=float)
        for name, term in common.terms.items():
            block = matrix[:, common.slices[name]]
            if getattr(term, "kind", None) == "offset":
                offsets.append(block.sum(axis=1))
                continue
            xs.append(block)
            labels = list(term.labels) if term.labels else [name]
            x_columns += [(label, name, j) for j, label in enumerate(labels)]
    x = np.column_stack(xs) if xs else np.zeros((n, 0))
    zs, z_columns = [], []
    for name, term in component.group_specific_terms.items():
        name = term.alias or name
        expr, factor = name.split("|", 1)
        ncol, labels = _term_columns(term)
        columns = [label.split("|", 1)[0] for label in labels]
        if expr == "1":
            columns = ["Intercept"]
        zs.append(sp.sparse.csr_matrix(term.data, dtype=float))
        for level in term.groups:
            z_columns += [(factor, str(level), name, columns[j], j) for j in range(ncol)]
    z = sp.sparse.hstack(zs, format="csr") if zs else sp.sparse.csr_matrix((n, 0))
    offset = np.sum(offsets, axis=0) if offsets else None
    return DesignParts(x, x_columns, z, z_columns, offset)


# -- a gaussian varying intercept integrated out (lmmformula._marginal holds the math) ---------
def marginal_unsupported(bambi_model: bmb.Model) -> str | None:
    """Why no term of the model can be integrated out (``None`` when one may be)."""
    reason = suffstats_unsupported(bambi_model)
    if reason is not None:
        return reason
    if getattr(bambi_model, "lkj_precision_weights", None) is not None:
        return "the model has precision weights"
    return None


def _zero_mean_normal(prior) -> bool:
    """Whether a group-level term's prior is Bambi's ``Normal(mu=0, sigma=Prior(...))``, the
    prior under which its effects can be integrated out (any prior on ``sigma``)."""
    if not isinstance(prior, Prior) or prior.name != "Normal":
        return False
    if set(prior.args) - {"mu", "sigma"} or not isinstance(prior.args.get("sigma"), Prior):
        return False
    mu = prior.args.get("mu", 0.0)
    return not (isinstance(mu, Prior) or np.any(np.asarray(mu, dtype=float) != 0))


def marginal_candidates(
    bambi_model: bmb.Model, blocks: dict[str, BlockSpec] | None = None, exclude=()
) -> dict[str, _marginal.MarginalTerm]:
    """The varying intercepts that may be integrated out, by Bambi name (outside the
    ``blocks``, by default those of the model's build plan, and not in ``exclude``: the
    gp() and gr(cov =) terms)."""
    if marginal_unsupported(bambi_model) is not None:
        return {}
    if blocks is None:
        blocks = (getattr(bambi_model, "plan", None) or BuildPlan()).blocks
    in_blocks = {t for spec in blocks.values() for t in spec.terms} | set(exclude)
    out = {}
    for key, term in parent_group_specific_terms(bambi_model).items():
        name = term.alias or key
        if key in in_blocks or name in in_blocks or not name.startswith("1|"):
            continue
        predictor = np.asarray(term_predictor(term), dtype=float)
        if predictor.ndim != 1 or not np.all(predictor == 1.0):
            continue
        if not _zero_mean_normal(term.prior):
            continue
        sigma_key = term.hyperprior_alias.get("sigma", "sigma")
        out[key] = _marginal.MarginalTerm(
            name=name,
            factor=name.split("|", 1)[1],
            sigma_name=f"{name}_{sigma_key}",
            levels=tuple(str(g) for g in term.groups),
        )
    return out


def choose_marginal(
    bambi_model: bmb.Model,
    marginalize: bool | str,
    likelihood: str,
    blocks: dict[str, BlockSpec] | None = None,
    exclude=(),
) -> tuple[str | None, str]:
    """The Bambi name of the term to integrate out (or ``None``) and why.

    ``marginalize=True`` integrates out the varying intercept with the most levels (an error
    when there is none, even over a sufficient-statistics likelihood); ``"auto"`` does so when
    the model samples on the full data and that factor has at least
    :data:`lmmformula._marginal.MIN_LEVELS` levels; ``False`` never.
    """
    if marginalize is False:
        return None, "marginalize=False"
    found = marginal_candidates(bambi_model, blocks, exclude)
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
        if n_levels < _marginal.MIN_LEVELS:
            return None, f"{found[key].name} has {n_levels} levels (< {_marginal.MIN_LEVELS})"
    return key, f"{found[key].name} ({n_levels} levels) integrated out"


MARGINAL_STATISTICS = True
"""Build the marginal likelihood on precomputed statistics (:mod:`lmmformula._marginal_op`)
when the linear predictor allows it; ``False`` keeps the row-wise graph (for comparisons)."""

MARGINAL_BLOCK = True
"""Integrate the population coefficients with normal priors and the small uncorrelated
group-level terms out together with the largest factor (:func:`choose_marginal_block`);
``False`` samples them (for comparisons)."""


def _normal_prior_moments(prior, width: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and sd (each ``(width,)``) of a population term's ``Normal(mu, sigma)`` prior with
    numbers for arguments, else ``None``."""
    if not isinstance(prior, Prior) or prior.name != "Normal" or set(prior.args) != {"mu", "sigma"}:
        return None
    if any(isinstance(a, Prior) for a in prior.args.values()):
        return None
    try:
        mu = np.broadcast_to(np.asarray(prior.args["mu"], dtype=float), (width,))
        sd = np.broadcast_to(np.asarray(prior.args["sigma"], dtype=float), (width,))
    except (TypeError, ValueError):
        return None
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sd)) and np.all(sd > 0)):
        return None
    return mu.copy(), sd.copy()


def _population_width(term) -> int:
    data = np.asarray(term.data)
    return 1 if data.ndim == 1 else int(data.shape[1])


def choose_marginal_block(
    bambi_model: bmb.Model,
    marginal: str | None,
    blocks: dict[str, BlockSpec] | None = None,
    exclude=(),
) -> tuple[str, ...]:
    """The terms integrated out jointly with the factor ``marginal`` (Bambi names, intercept
    first, then common terms, then group-level terms), or ``()``.

    Given the scales, the population coefficients with ``Normal(mu, sigma)`` priors (numbers
    for both) and the uncorrelated group-level terms with one column and at most
    :data:`lmmformula._marginal.BLOCK_MAX_LEVELS` levels are jointly Gaussian a posteriori:
    :mod:`lmmformula._marginal_op` integrates them out with a Woodbury step of their size
    (at most :data:`lmmformula._marginal.BLOCK_MAX_SIZE`), and they are drawn after sampling
    like the factor's effects. With few groups the sd of a factor and the intercept form a
    funnel and a ridge for the sampler (InstEval's 14 departments); integrated out, the sampler
    sees neither. Only when the linear predictor is linear in its coefficients on the
    statistics' path: no correlated block, gp()/gr(cov =), mo() or HSGP term on the parent.
    """
    if marginal is None or not (MARGINAL_STATISTICS and MARGINAL_BLOCK):
        return ()
    component = parent_component(bambi_model)
    if component.hsgp_terms or _mono.mo_terms(component):
        return ()
    in_blocks = {t for spec in (blocks or {}).values() for t in spec.terms}
    out: list[str] = []
    size = 0
    population = []
    if component.intercept_term is not None:
        population.append(component.intercept_term)
    population.extend(component.common_terms.values())
    for term in population:
        width = 1 if term is component.intercept_term else _population_width(term)
        if _normal_prior_moments(term.prior, width) is not None:
            out.append(term.name)
            size += width
    small = []
    for key, term in parent_group_specific_terms(bambi_model).items():
        name = term.alias or key
        if key == marginal:
            continue
        if key in in_blocks or name in in_blocks or key in exclude or name in exclude:
            return ()  # the statistics' path does not apply: nothing joins the factor
        if _mono.group_label(name) is not None:
            return ()
        if (
            np.asarray(term_predictor(term)).ndim != 1
            or len(term.groups) > _marginal.BLOCK_MAX_LEVELS
        ):
            continue
        if not _zero_mean_normal(term.prior):
            continue
        small.append((len(term.groups), key))
    for n_levels, key in sorted(small):
        if size + n_levels > _marginal.BLOCK_MAX_SIZE:
            break
        out.append(key)
        size += n_levels
    return tuple(out) if size <= _marginal.BLOCK_MAX_SIZE else ()


@dataclass
class MarginalDesign:
    """The parent's linear predictor without the integrated factor as ``W @ theta`` (plus the
    offsets), in Bambi's parametrisation (centred common columns when Bambi centres them).

    ``theta`` (a PyTensor vector) is ``[sampled coefficients; block prior means]``: the last
    ``k`` columns of ``w`` belong to the block integrated out with the factor, whose prior
    variances are ``lam`` (``k``,; ``None`` without a block); ``block_var`` holds, per block
    term, its prior variances when they are numbers (population terms) or ``None`` (a
    group-level term: its sd's square). ``dense_columns`` are the
    population columns (fitted by least squares for the statistics' origin); ``block`` lists
    the block's terms as ``(Bambi key, posterior name, width)`` in column order.
    """

    theta: Any
    w: sp.sparse.csr_matrix
    y: np.ndarray
    dense_columns: np.ndarray
    lam: Any = None
    block: list[tuple[str, str, int]] = field(default_factory=list)
    block_mean: np.ndarray | None = None
    block_var: list[np.ndarray | None] = field(default_factory=list)
    sampled: list[tuple[str, int]] = field(default_factory=list)

    @property
    def k(self) -> int:
        return int(sum(width for _, _, width in self.block))


def _marginal_design(
    spec,
    marginal_term,
    blocks: _Blocks | None,
    integrated=(),
    block_sigmas=None,
    nested_totals=None,
    skip=(),
) -> MarginalDesign | None:
    """:class:`MarginalDesign` of the parent, or ``None`` when its linear predictor is not of
    that form (correlated blocks, gp()/gr(cov =)/mo() terms on the parent, a coefficient of
    an unexpected shape): the caller keeps the row-wise graph. ``integrated`` (Bambi keys,
    :func:`choose_marginal_block`) go last, with their prior means in ``theta`` and their
    prior variances in ``lam``; ``block_sigmas`` holds the sds of the integrated group-level
    terms; ``nested_totals`` the sums sampled for nested terms (their columns take the
    sums; the outer factors, ``skip``, have none)."""
    component = parent_component(spec)
    if component.hsgp_terms or _mono.mo_terms(component):
        return None
    model = pm.modelcontext(None)
    integrated = tuple(integrated)
    nested_totals = nested_totals or {}
    block_sigmas = block_sigmas or {}
    y = np.asarray(np.squeeze(spec.response_term.data), dtype=float)
    n = y.size
    for offset in component.offset_terms.values():
        y = y - np.asarray(offset.data, dtype=float).squeeze()
    # pieces: (key, posterior name, columns (n, width) csr, coefficient or None, is population)
    pieces: list[tuple[str, str, Any, Any, bool]] = []
    population = [component.intercept_term, *component.common_terms.values()]
    for t in population:
        if t is None or t.name in integrated or t.name in skip:
            continue
        if _aliased(t) not in model.named_vars:
            return None  # a coefficient fixed to a number, or built otherwise
    if component.intercept_term is not None and component.intercept_term.name not in skip:
        t = component.intercept_term
        coef = None if t.name in integrated else pt.atleast_1d(model[_aliased(t)]).flatten()
        pieces.append((t.name, _aliased(t), sp.sparse.csr_matrix(np.ones((n, 1))), coef, True))
    if component.common_terms:
        data = np.column_stack([term.data for term in component.common_terms.values()])
        data = np.asarray(data, dtype=float).reshape(n, -1)
        if component.intercept_term is not None and spec.center_predictors:  # as Bambi
            data = data - data.mean(0)
        at = 0
        for key, term in component.common_terms.items():
            width = _population_width(term)
            cols = sp.sparse.csr_matrix(data[:, at : at + width])
            at += width
            coef = None if key in integrated else pt.atleast_1d(model[_aliased(term)]).flatten()
            pieces.append((key, _aliased(term), cols, coef, True))
    for key, term in component.group_specific_terms.items():
        name = _aliased(term)
        if term is marginal_term or key in skip:
            continue
        if blocks is not None and (name in blocks.of_term or key in blocks.special):
            return None
        if _mono.group_label(name) is not None:
            return None
        predictor = np.asarray(term_predictor(term), dtype=float)
        n_levels, width = len(term.groups), (1 if predictor.ndim == 1 else predictor.shape[1])
        coef = None
        if key in nested_totals:  # the sums sampled in its place (choose_marginal_nested)
            name, coef = nested_total_name(term), nested_totals[key]
        elif key not in integrated:
            if name not in model.named_vars:
                return None
            coef = model[name]
            expected = (n_levels,) if predictor.ndim == 1 else (n_levels, width)
            if coef.type.ndim != len(expected) or any(
                s is not None and s != e for s, e in zip(coef.type.shape, expected, strict=True)
            ):
                return None
            coef = coef.flatten()
        index = np.asarray(term.group_index)
        rows = np.repeat(np.arange(n), width)
        cols = (index[:, None] * width + np.arange(width)[None, :]).ravel()
        pieces.append(
            (
                key,
                name,
                sp.sparse.csr_matrix(
                    (predictor.reshape(n, width).ravel(), (rows, cols)),
                    shape=(n, n_levels * width),
                ),
                coef,
                False,
            )
        )
    if not pieces:
        return None
    order = {key: i for i, key in enumerate(integrated)}
    sampled = [p for p in pieces if p[3] is not None]
    in_block = sorted((p for p in pieces if p[3] is None), key=lambda p: order[p[0]])
    if len(in_block) != len(integrated):  # pragma: no cover - the plan and the terms disagree
        raise ModelError(f"the terms to integrate out ({integrated}) are not all in the model")
    coefs = [pt.cast(p[3], "float64") for p in sampled]
    means, lams, block_var = [], [], []
    for key, _name, cols, _coef, is_population in in_block:
        width = cols.shape[1]
        if is_population:
            term = (
                component.intercept_term
                if key == getattr(component.intercept_term, "name", None)
                else component.common_terms[key]
            )
            mu, sd = _normal_prior_moments(term.prior, width)
            means.append(mu)
            block_var.append(sd * sd)
            lams.append(pt.as_tensor_variable(sd * sd))
        else:
            means.append(np.zeros(width))
            block_var.append(None)
            lams.append(pt.repeat(pt.square(block_sigmas[key]), width))
    mean = np.concatenate(means) if means else np.zeros(0)
    if mean.size:
        coefs.append(pt.as_tensor_variable(mean))
    if not coefs:
        return None
    ordered = sampled + in_block
    widths = [p[2].shape[1] for p in ordered]
    starts = np.concatenate([[0], np.cumsum(widths)])
    dense = np.concatenate(
        [np.arange(starts[i], starts[i + 1]) for i, p in enumerate(ordered) if p[4]]
        or [np.zeros(0, dtype=int)]
    )
    return MarginalDesign(
        theta=pt.concatenate(coefs) if len(coefs) > 1 else coefs[0],
        w=sp.sparse.hstack([p[2] for p in ordered], format="csr"),
        y=y,
        dense_columns=dense.astype(int),
        lam=pt.concatenate(lams) if lams else None,
        block=[(p[0], p[1], p[2].shape[1]) for p in in_block],
        block_mean=mean,
        block_var=block_var,
        sampled=[(p[1], p[2].shape[1]) for p in sampled],
    )


def _marginal_sigma(term, noncentered: bool):
    """The term's sd, ``1|g_sigma``, with its own prior (the effects are not built)."""
    name = term.alias or term.name
    sigma_key = term.hyperprior_alias.get("sigma", "sigma")
    return _BambiGroupSpecificTerm(term, noncentered).build_distribution(
        prior=term.prior.args["sigma"], label=f"{name}_{sigma_key}", dims=None
    )


def _marginal_response(
    spec,
    eta,
    sigma,
    tau,
    term,
    blocks: _Blocks | None = None,
    integrated=(),
    block_sigmas=None,
    nested_totals=None,
    skip=(),
):
    """Add the marginal likelihood as one ``pm.Potential`` named ``{response}_marginal``: on
    precomputed statistics when :func:`_marginal_design` gives the linear predictor as one
    coefficient vector (integrating out ``integrated`` too), else row by row from ``eta``.
    Returns ``(design, statistics)`` on the statistics' path (the block's draws after sampling
    need them), else ``None``."""
    index = np.asarray(term.group_index)
    response = spec.response_term.alias or spec.response_term.name
    design = None
    if MARGINAL_STATISTICS:
        design = _marginal_design(spec, term, blocks, integrated, block_sigmas, nested_totals, skip)
    if design is not None:
        from lmmformula import _marginal_op  # imports numba's dispatch: only when used

        stats = _marginal_op.statistics(
            design.y, design.w, index, len(term.groups), dense_columns=design.dense_columns
        )
        value = _marginal_op.logp(design.theta, sigma, tau, stats, design.lam)
        pm.Potential(f"{response}_marginal", value)
        return design, stats
    if integrated or skip:  # pragma: no cover - choose_marginal_block checks the same
        raise ModelError("the terms to integrate out need the statistics' likelihood")
    y = np.asarray(np.squeeze(spec.response_term.data), dtype=float)
    counts = np.bincount(index, minlength=len(term.groups))
    pm.Potential(f"{response}_marginal", _marginal.logp(y - eta, index, counts, sigma, tau))
    return None


def marginal_level_sums(bambi_model: bmb.Model, posterior, key: str) -> _marginal.LevelSums:
    """Per draw and level, the sum of the residuals ``y - eta`` (eta without the integrated
    term), from the uncentred posterior, as the pieces :class:`lmmformula._marginal.LevelSums`
    forms a block of draws from (level sums of the data, sparse level sums of the columns)."""
    draws = _marginal.draws
    parts = design_parts(bambi_model)
    term = parent_group_specific_terms(bambi_model)[key]
    index = np.asarray(term.group_index)
    n, n_levels = index.size, len(term.groups)
    a = sp.sparse.csr_matrix((np.ones(n), (index, np.arange(n))), shape=(n_levels, n))
    y = np.asarray(np.squeeze(bambi_model.response_term.data), dtype=float)
    if parts.offset is not None:
        y = y - parts.offset
    n_draws = posterior.sizes["chain"] * posterior.sizes["draw"]
    aliases = {k: (t.alias or k) for k, t in parent_component(bambi_model).common_terms.items()}
    coefs = np.zeros((n_draws, 0))
    if parts.x.shape[1]:
        coefs = np.column_stack(
            [draws(posterior, aliases.get(t, t))[:, j] for _, t, j in parts.x_columns]
        )
    name = term.alias or term.name
    keep = [i for i, col in enumerate(parts.z_columns) if col[2] != name]
    az = effects = None
    if keep:
        az = (a @ parts.z[:, keep]).tocsr()
        order: list[str] = []
        for col in (parts.z_columns[i] for i in keep):
            if not order or order[-1] != col[2]:
                order.append(col[2])
        effects = np.concatenate([draws(posterior, t, factor_first=True) for t in order], axis=1)
    return _marginal.LevelSums(
        base=a @ y, ax=np.asarray(a @ parts.x), coefs=coefs, az=az, effects=effects
    )


def marginal_effect_names(bambi_model: bmb.Model, key: str | None) -> list[str]:
    """The posterior names of the effects drawn after sampling (none when ``key`` is None)."""
    if key is None:
        return []
    term = parent_group_specific_terms(bambi_model)[key]
    return [term.alias or term.name]


def _draws_array(posterior, values: np.ndarray, coords: dict):
    """``values`` (chain * draw, ...) as a DataArray with the posterior's chain and draw and
    Bambi's ``coords`` (a term's ``.coords``: name -> levels) for the other dims."""
    import xarray as xr

    dims = list(coords)
    shape = [posterior.sizes["chain"], posterior.sizes["draw"], *(len(coords[d]) for d in dims)]
    return xr.DataArray(
        values.reshape(shape),
        dims=("chain", "draw", *dims),
        coords={
            "chain": posterior["chain"].values,
            "draw": posterior["draw"].values,
            **{d: list(coords[d]) for d in dims},
        },
    )


def _marginal_sigma_name(term) -> str:
    return f"{term.alias or term.name}_{term.hyperprior_alias.get('sigma', 'sigma')}"


NESTED_MIN_ROWS = 10
"""A varying intercept is sampled as its sum with the factor it is nested in
(:func:`choose_marginal_nested`) when its levels have at least this many rows (median): with
that much data per level, the centered sum is the better geometry."""


def nesting(bambi_model: bmb.Model, inner: str, outer: str) -> np.ndarray | None:
    """For each level of the term ``inner``, the level of ``outer`` it lies in (each level of
    ``inner`` in exactly one of ``outer``), or ``None`` when ``inner`` is not nested in it."""
    terms = parent_group_specific_terms(bambi_model)
    g = np.asarray(terms[inner].group_index)
    h = np.asarray(terms[outer].group_index)
    of = np.full(len(terms[inner].groups), -1)
    of[g] = h
    if np.any(of < 0) or not np.array_equal(of[g], h):
        return None
    return of


def choose_marginal_nested(
    bambi_model: bmb.Model, marginal: str | None, block: tuple[str, ...], explicit=()
) -> tuple[dict[str, str], tuple[str, ...], bool]:
    """Sampled varying intercepts ``(1|g)`` nested in a small factor ``(1|h)`` of the block,
    to be sampled as their sum ``w_g = u_g + u_h[g]`` (centered), and the block without those
    factors, and whether the block's intercept joins the first pair's sums
    (``w_g = a + u_h[g] + u_g``, the intercept's normal prior folded into ``w``'s).

    Given the scales, ``w`` has the exact prior ``N(0, tau_g^2 I + tau_h^2 Z Z')`` (``Z``: the
    levels of ``h`` holding each level of ``g``), the density of :func:`lmmformula._marginal.logp`
    with ``h`` integrated out; after sampling ``u_h`` is drawn from its conditional given ``w``
    and ``u_g = w - u_h[g]``. With ``h`` integrated out of the likelihood instead, the mean of
    ``g``'s effects within each level of ``h`` (which the data cannot tell from ``u_h``) drifts
    with ``tau_h`` and mixes slowly (InstEval's lecturers within departments); the sums ``w``
    are what the data fix. Only for factors with at least :data:`NESTED_MIN_ROWS` rows per
    level (median) whose centering the user did not set (``explicit``: factor names given to
    ``noncentered``), one inner factor per outer one, and only when the intercept is in the
    block (or absent): a sampled intercept and the sums' mean would form a ridge.
    """
    intercept = parent_component(bambi_model).intercept_term
    if marginal is None or not block or (intercept is not None and intercept.name not in block):
        # a sampled intercept (a prior that is not normal) would form a ridge with the sums
        return {}, block, False
    terms = parent_group_specific_terms(bambi_model)
    outers = [k for k in block if k in terms and np.all(term_predictor(terms[k]) == 1.0)]
    nested: dict[str, str] = {}
    for key, term in terms.items():
        name = term.alias or key
        if key == marginal or key in block or not name.startswith("1|"):
            continue
        if name.split("|", 1)[1] in explicit or np.any(term_predictor(term) != 1.0):
            continue
        if not _zero_mean_normal(term.prior):
            continue
        rows = np.bincount(np.asarray(term.group_index), minlength=len(term.groups))
        if np.median(rows) < NESTED_MIN_ROWS:
            continue
        for outer in outers:
            if outer not in nested.values() and nesting(bambi_model, key, outer) is not None:
                nested[key] = outer
                break
    absorbed = bool(nested) and intercept is not None
    drop = set(nested.values()) | ({intercept.name} if absorbed else set())
    return nested, tuple(k for k in block if k not in drop), absorbed


def _nested_prior(
    bambi_model: bmb.Model, inner: str, outer: str, total, tau_inner, tau_outer, intercept=False
):
    """The prior density of the sums ``w`` (:func:`choose_marginal_nested`), with the
    intercept's normal prior folded in when ``intercept``."""
    of = nesting(bambi_model, inner, outer)
    counts = np.bincount(of, minlength=len(parent_group_specific_terms(bambi_model)[outer].groups))
    mean, lam = 0.0, None
    if intercept:
        mu, sd = _intercept_moments(bambi_model)
        mean, lam = mu, sd * sd
    return _marginal.nested_logp(total, of, counts, tau_inner, tau_outer, mean, lam)


def _intercept_moments(bambi_model: bmb.Model) -> tuple[float, float]:
    """Mean and sd of the intercept's normal prior."""
    mu, sd = _normal_prior_moments(parent_component(bambi_model).intercept_term.prior, 1)
    return float(mu[0]), float(sd[0])


def nested_total_name(term) -> str:
    """The sampler's name of a nested term's sums (left out of the returned posterior)."""
    return f"{term.alias or term.name}_total"


def add_marginal_nested_draws(posterior, backend: _LkjPyMCModel):
    """The posterior with each nested pair's ``u_h`` drawn from its exact conditional given
    the sums ``w`` and ``u_g = w - u_h[g]``, under Bambi's names and dims, without ``w``."""
    spec = backend.spec
    terms = parent_group_specific_terms(spec)
    draws = _marginal.draws
    new, drop = {}, []
    for i, (inner, outer) in enumerate(backend.marginal_nested.items()):
        of = nesting(spec, inner, outer)
        n_outer = len(terms[outer].groups)
        counts = np.bincount(of, minlength=n_outer)
        total_name = nested_total_name(terms[inner])
        total = draws(posterior, total_name, factor_first=True)
        sums = total @ np.eye(n_outer)[of]  # per draw and outer level, the sums of w
        scales = [_marginal_sigma_name(terms[inner]), _marginal_sigma_name(terms[outer])]
        tau_inner, tau_outer = (draws(posterior, name) for name in scales)
        rng = np.random.default_rng(_marginal.seed_from(posterior, scales) ^ 0x0E57ED)
        if i == 0 and backend.marginal_nested_intercept:  # the intercept first, given w
            a_mean, a_sd = _marginal.nested_intercept(
                sums, counts, tau_inner, tau_outer, *_intercept_moments(spec)
            )
            a = a_mean + a_sd * rng.standard_normal(a_mean.shape)
            total = total - a[:, None]
            sums = sums - counts * a[:, None]
            new[_aliased(parent_component(spec).intercept_term)] = _draws_array(posterior, a, {})
        mean, sd = _marginal.conditional(sums, counts, tau_inner, tau_outer)
        u_outer = mean + sd * rng.standard_normal(mean.shape)
        u_inner = total - u_outer[:, of]
        for key, values in ((outer, u_outer), (inner, u_inner)):
            coords = _BambiGroupSpecificTerm(terms[key], True).coords
            new[terms[key].alias or key] = _draws_array(posterior, values, coords)
        drop.append(total_name)
    return posterior.drop_vars(drop).assign(new)


def add_marginal_block_draws(posterior, backend: _LkjPyMCModel):
    """The posterior (the sampler's parametrisation) with the block integrated out with the
    factor (:func:`choose_marginal_block`) drawn from its exact conditional given each draw
    (:func:`lmmformula._marginal.draw_block`), under Bambi's names and dims."""
    design, stats = backend.marginal_design
    spec = backend.spec
    component = parent_component(spec)
    terms = parent_group_specific_terms(spec)
    draws = _marginal.draws
    parts = [draws(posterior, name, factor_first=True) for name, _ in design.sampled]
    n_draws = posterior.sizes["chain"] * posterior.sizes["draw"]
    mean = np.broadcast_to(design.block_mean, (n_draws, design.block_mean.size))
    thetas = np.concatenate([*parts, mean], axis=1)
    tau_name = _marginal_sigma_name(terms[backend.marginal])
    lam = []
    for (key, _name, width), var in zip(design.block, design.block_var, strict=True):
        if var is None:  # a group-level term: its sd's draws
            sd = draws(posterior, _marginal_sigma_name(terms[key]))
            lam.append(np.repeat(np.square(sd), width, axis=1))
        else:
            lam.append(np.broadcast_to(var, (n_draws, width)))
    values = _marginal.draw_block(
        stats,
        thetas,
        design.k,
        draws(posterior, "sigma")[:, 0],
        draws(posterior, tau_name)[:, 0],
        np.concatenate(lam, axis=1),
        _marginal.seed_from(posterior, ["sigma", tau_name]) ^ 0x5EEDB10C,
    )
    at = 0
    new = {}
    for key, name, width in design.block:
        if key in terms:
            coords = _BambiGroupSpecificTerm(terms[key], True).coords
        elif key in component.common_terms:
            coords = CommonTerm(component.common_terms[key]).coords
        else:
            coords = {}
        new[name] = _draws_array(posterior, values[:, at : at + width], coords)
        at += width
    return posterior.assign(new)


def add_marginal_effect_draws(posterior, bambi_model: bmb.Model, key: str):
    """The posterior with ``1|g`` drawn from its exact conditional given each draw."""
    term = parent_group_specific_terms(bambi_model)[key]
    found = marginal_candidates(bambi_model)[key]
    counts = np.bincount(np.asarray(term.group_index), minlength=len(term.groups))
    effects = _marginal.draw_effects(
        marginal_level_sums(bambi_model, posterior, key),
        counts,
        _marginal.draws(posterior, "sigma"),
        _marginal.draws(posterior, found.sigma_name),
        _marginal.seed_from(posterior, ["sigma", found.sigma_name]),
    )
    # Bambi's dim for the levels (``g__factor_dim``), as the full model's ``1|g`` has it
    dim = next(d for d in _BambiGroupSpecificTerm(term, True).coords if d.endswith("__factor_dim"))
    return posterior.assign(
        {found.name: _draws_array(posterior, effects, {dim: list(term.groups)})}
    )


# Sampling without ``bambi.Model.fit`` (``lmmformula._nutpie.sample_bambi``): what Bambi's
# ``PyMCModel._run_mcmc`` stores and how it cleans the result (both pinned in
# ``tests/test_bambi_contract.py``).


def pymc_model(bambi_model: bmb.Model) -> pm.Model:
    """The built PyMC model."""
    return bambi_model.backend.model


def full_data_pymc_model(bambi_model: bmb.Model) -> pm.Model:
    """A PyMC model with Bambi's row-by-row response (the built one, or one built afresh
    when the model samples on sufficient statistics or an integrated-out intercept)."""
    return bambi_model.full_data_backend().model


def sampled_var_names(bambi_model: bmb.Model) -> list[str]:
    """The variables ``PyMCModel._run_mcmc`` puts in the trace (not the likelihood's
    deterministic parameters), without lmmformula's internal block variables (which
    ``_clean_results`` would drop)."""
    from pymc.util import get_default_varnames

    backend = bambi_model.backend
    model = backend.model
    names = [
        v.name for v in get_default_varnames(model.unobserved_value_vars, include_transformed=False)
    ]
    params = bambi_model.family.likelihood.params
    likelihood = {
        n for n, v in model.named_vars.items() if n in params and v in model.deterministics
    }
    drop = internal_var_names(getattr(backend, "blocks", {}))
    return [n for n in names if n not in likelihood and n not in drop]


def finish_fit(bambi_model: bmb.Model, idata):
    """Bambi's own result cleaning (``PyMCModel._clean_results``: the intercept un-centred,
    offsets dropped), and the model marked fitted, as ``bambi.Model.fit`` leaves them."""
    backend = bambi_model.backend
    idata = backend._clean_results(idata, omit_offsets=True, include_response_params=False)
    backend.fit = True
    return idata
