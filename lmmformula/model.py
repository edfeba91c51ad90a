"""The model layer: a formula's description and the data in, a Bambi model with LKJ blocks out."""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from lmmformula import _bambi
from lmmformula._families import BRMS_COMPLEMENT_NAMES, BRMS_PARAMETER_NAMES
from lmmformula._frame import (
    R_FAMILY_NAMES,
    MissingDataWarning,
    PreparedData,
    check_design,
    check_prior_names,
    check_response,
    prepare_data,
)
from lmmformula.errors import LmmFormulaError, ModelError
from lmmformula.formula import Translation, bambi_namespace, translate

__all__ = ["Model", "model"]

SAMPLERS = ("nutpie", "pymc", "numpyro", "blackjax")


def _family_name(family: Any) -> str:
    return family if isinstance(family, str) else getattr(family, "name", str(family))


class Model:
    """A Bayesian multilevel model read from an lme4/brms formula.

    Build one with :func:`lmmformula.model`. The underlying ``bambi.Model`` is
    :attr:`bambi`; its PyMC model (after :meth:`build`) is :attr:`pymc_model`.

    Attributes
    ----------
    formula : str
        The formula as written.
    translation : Translation
        How the formula was read.
    data : pandas.DataFrame
        The rows and columns the model uses (a copy; the caller's data is untouched).
    family : str
        The response family.
    blocks : dict of str to BlockSpec
        The correlated blocks that get an LKJ prior, keyed as
        :attr:`Translation.correlated` (the grouping factor; ``factor__2`` ... for a second
        and further block on one factor).
    lkj_eta : float
        The LKJ shape of every block.
    bambi : bambi.Model
        The Bambi model (a subclass whose ``build`` adds the LKJ blocks).
    likelihood : str
        How the response enters the PyMC graph: ``"sufficient statistics"`` (exact per-cell
        sufficient statistics, gaussian identity-link models where they pay), ``"full data"``
        (Bambi's row-by-row likelihood) or ``"full data, 1|g integrated out"`` (row by row with
        the effects of ``1|g`` integrated out; see ``marginalize``).
    likelihood_reason : str
        Why that likelihood was chosen.
    marginal : str or None
        The varying intercept integrated out of the likelihood (``"1|g"``), if any;
        ``marginal_reason`` says why or why not.
    marginal_block : tuple of str
        The terms integrated out together with ``marginal`` (the population coefficients with
        normal priors and uncorrelated group-level terms of at most 50 levels, Bambi names);
        like its effects, they are drawn after sampling from their exact conditional.
    marginal_nested : dict of str to str
        Varying intercepts nested in a factor of that block (``{"1|d": "1|dept"}``) that are
        sampled as their sum with its effects, centered (levels with at least 10 rows, factors
        not named in ``noncentered``); both terms' effects are drawn after sampling.
    """

    def __init__(
        self,
        formula: str | Translation,
        data: Any,
        family: str | _bambi.Family | None = None,
        priors: Any = None,
        *,
        lkj_eta: float = _bambi.DEFAULT_LKJ_ETA,
        noncentered: bool | Mapping[str, bool] = True,
        link: str | None = None,
        weights: str | None = None,
        na_action: str = "drop",
        suffstats: bool | str = "auto",
        marginalize: bool | str = "auto",
        data2: Mapping[str, Any] | None = None,
        **bambi_kwargs: Any,
    ) -> None:
        if isinstance(suffstats, (bool, np.bool_)):
            suffstats = bool(suffstats)
        if not isinstance(suffstats, bool) and not (
            isinstance(suffstats, str) and suffstats == "auto"
        ):
            raise ModelError(f"suffstats must be True, False or 'auto', got {suffstats!r}.")
        self.suffstats = suffstats
        self.translation = formula if isinstance(formula, Translation) else translate(formula)
        self.formula = self.translation.formula
        self._check_eta(lkj_eta)
        self.lkj_eta = float(lkj_eta)
        self.na_action = na_action
        self.weights = weights
        self.link = link
        self.bambi_kwargs = dict(bambi_kwargs)
        if "dropna" in self.bambi_kwargs:
            raise ModelError("use na_action='drop' or 'fail' instead of Bambi's dropna.")

        extra = (weights,) if weights else ()
        self._prepared: PreparedData = prepare_data(
            data, self.translation, extra_columns=extra, na_action=na_action
        )
        self.data = self._prepared.frame
        spelled = (
            _family_name(family) if family is not None else (self.translation.family or "gaussian")
        )
        self.family_spelled = spelled
        self.family = self._bambi_family(spelled)
        self._family_arg = self.family if isinstance(family, str) or family is None else family
        self._check_ordered_columns()
        try:
            check_response(
                self.data, self.translation, self._family_arg, labels=self._prepared.labels
            )
        except LmmFormulaError as exc:
            if spelled != "binomial" or self.family != "bernoulli":
                raise
            raise ModelError(
                f"family='binomial' with a plain response is R's binary regression, so the "
                f"response {self.translation.response.text!r} must be 0/1 or have two levels "
                f"({exc}). For successes out of trials write 'successes | trials(n) ~ ...' "
                "(brms), 'cbind(successes, failures) ~ ...' (lme4) or 'p(successes, n) ~ ...'."
            ) from exc
        self._check_dpars()
        self.user_priors = priors
        self._noncentered_arg = noncentered
        self.noncentered = self._resolve_noncentered(noncentered)

        self.block_eta: dict[str, float] = {}
        direct = dict(priors) if isinstance(priors, Mapping) else None
        self.bambi = self._make_bambi(direct)
        check_prior_names(direct, self.bambi)
        check_design(self.bambi, self.translation, self._family_arg, labels=self._prepared.labels)
        from lmmformula.priors import resolve_priors  # lmmformula's defaults, then the user's

        self.resolved_priors = resolve_priors(self, priors)
        _bambi.set_priors(self.bambi, self.resolved_priors.bambi_priors)
        self.block_eta = dict(self.resolved_priors.block_eta)
        self._apply_term_noncentered(self.bambi)
        self.blocks = self._effective_blocks()
        from lmmformula._gp import plan_specials  # brms' gp() and gr(g, cov = K)

        self.data2 = data2
        self.specials = plan_specials(self, data2)
        self.gp_plans = self.specials.plans
        self.cov_frames = self.specials.cov_frames
        self.likelihood, self.likelihood_reason = self._choose_likelihood(suffstats)
        # integrate the largest gaussian (1|g) out exactly (lmmformula._marginal)
        self.marginalize = _marginal_option(marginalize)
        self.marginal, self.marginal_reason = _bambi.choose_marginal(
            self.bambi,
            self.marginalize,
            self.likelihood,
            self.blocks,
            exclude=tuple(self.specials.builders),
        )
        block = _bambi.choose_marginal_block(
            self.bambi, self.marginal, self.blocks, exclude=tuple(self.specials.builders)
        )
        explicit = (
            tuple(self._noncentered_arg) if isinstance(self._noncentered_arg, Mapping) else ()
        )
        self.marginal_nested, self.marginal_block, self._nested_intercept = (
            _bambi.choose_marginal_nested(self.bambi, self.marginal, block, explicit)
        )
        if self.marginal is not None:
            self.likelihood = "full data, " + self.marginal + " integrated out"
            if self.marginal_block:
                joint = ", ".join(self.marginal_block)
                self.marginal_reason += f"; with it {joint} (drawn after sampling)"
            for i, (inner, outer) in enumerate(self.marginal_nested.items()):
                with_intercept = "the intercept, " if i == 0 and self._nested_intercept else ""
                self.marginal_reason += (
                    f"; {inner} is nested in {outer}: the sums of {with_intercept}their "
                    f"effects are sampled (centered), {outer} and {inner} drawn after sampling"
                )
        self.bambi.set_plan(self._build_plan())
        self.build_seconds: float | None = None

    def _build_plan(self) -> _bambi.BuildPlan:
        """What the seam builds on Bambi's terms: the blocks and the likelihood chosen."""
        from lmmformula._gp import gp_predictor

        return _bambi.BuildPlan(
            blocks=dict(self.blocks),
            eta=self.lkj_eta,
            suffstats=self.likelihood == "sufficient statistics",
            marginal=self.marginal,
            marginal_block=self.marginal_block,
            marginal_nested=dict(self.marginal_nested),
            marginal_nested_intercept=self._nested_intercept,
            special=dict(self.specials.builders),
            cov_chol=dict(self.specials.cov_chol),
            predict_wrapper=gp_predictor(self.specials.plans),
            simo=dict(self.resolved_priors.simo),  # mo() simplexes (lmmformula._mono)
        )

    # -- construction helpers -------------------------------------------------------------
    @staticmethod
    def _check_eta(eta: float) -> None:
        try:
            ok = float(eta) > 0 and np.isfinite(float(eta))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ModelError(f"lkj_eta must be a positive number, got {eta!r}.")

    def _check_dpars(self) -> None:
        """Each formula of a ``bf()`` must model a parameter of the family."""
        if not self.translation.dpar_formulas:
            return
        try:
            parent, others = _bambi.family_parameters(self._family_arg)
        except Exception:  # a family Bambi does not know is refused when Bambi builds it
            return
        brms_names = {**BRMS_PARAMETER_NAMES, **BRMS_COMPLEMENT_NAMES}
        for dpar in self.translation.dpar_formulas:
            named = [b for b in brms_names.get(dpar, ()) if b in others]
            if dpar not in others and named:
                flip = ""
                if dpar in BRMS_COMPLEMENT_NAMES:
                    flip = f" ({named[0]} = 1 - {dpar}: its coefficients are {dpar}'s, negated)"
                raise ModelError(
                    f"bf() has a formula for brms' {dpar!r}, which the "
                    f"{self.family_spelled!r} family calls {named[0]!r}{flip}; write "
                    f"{named[0]} ~ ... instead."
                )
            if dpar not in others:
                raise ModelError(
                    f"bf() has a formula for {dpar!r}, which is not a parameter of the "
                    f"{self.family_spelled!r} family; its parameters besides {parent!r}: "
                    f"{', '.join(map(repr, others)) or 'none'}."
                )

    def _bambi_family(self, spelled: str) -> str:
        """Bambi's family for the name the user gave: R's and brms' names (``negbinomial``,
        ``student``, ``Gamma``) are aliases, and ``binomial`` with a plain response is R's
        binary regression (``glmer(y ~ ..., family = binomial)`` with a 0/1 ``y``), Bambi's
        ``bernoulli``."""
        name = R_FAMILY_NAMES.get(spelled, spelled)
        if name == "binomial" and self.translation.response.kind == "plain":
            name = "bernoulli"
        return name

    def _check_ordered_columns(self) -> None:
        """An ordinal family's response as an ordered categorical (whole-number codes are
        converted) and every ``mo()`` column an ordered predictor; a DataError otherwise."""
        from lmmformula import _mono, _ordinal

        if _ordinal.is_ordinal(self.family) and self.translation.response.kind == "plain":
            column = self.translation.response.text.strip("`")
            if column in self.data.columns:
                self.data = _ordinal.as_ordinal_response(self.data, column, self.family)
        _mono.check_mo_columns(self.data, self.translation.bambi_formula)

    def _resolve_noncentered(self, noncentered: bool | Mapping[str, bool]) -> dict[str, bool]:
        factors = self.translation.grouping_factors
        if isinstance(noncentered, (bool, np.bool_)):
            return {factor: bool(noncentered) for factor in factors}
        if isinstance(noncentered, Mapping):
            unknown = [k for k in noncentered if k not in factors]
            if unknown:
                raise ModelError(
                    f"noncentered names {', '.join(map(repr, unknown))}, which is not a grouping "
                    f"factor of the formula; the grouping factors are "
                    f"{', '.join(map(repr, factors)) or 'none'}."
                )
            return {factor: bool(noncentered.get(factor, True)) for factor in factors}
        raise ModelError(
            f"noncentered must be True, False or a dict of grouping factor -> bool, "
            f"got {noncentered!r}."
        )

    @property
    def weights_kind(self) -> str | None:
        """How ``weights=`` enter the model: ``"precision"`` (gaussian: lme4's meaning, the
        residual variance of row i is sigma^2 / w_i) or ``"likelihood"`` (other families:
        each row's log-likelihood times w_i, lme4's prior weights of a GLM); ``None``
        without weights. brms' ``y | weights(w)`` in the formula is always ``"likelihood"``."""
        if not self.weights:
            return None
        return "precision" if self.family == "gaussian" else "likelihood"

    def _bambi_formula(self) -> str | tuple[str, ...]:
        """The Bambi formula; with brms' ``bf()``, the main formula and one per parameter."""
        formula = self.translation.bambi_formula
        if self.weights_kind == "likelihood":
            lhs, rhs = formula.split("~", 1)
            formula = f"weighted({lhs.strip()}, {self.weights}) ~{rhs}"
        if self.translation.dpar_formulas:
            return (formula, *self.translation.dpar_formulas.values())
        return formula

    def precision_weights(self) -> np.ndarray | None:
        """The precision weights per model row (``weights=`` of a gaussian model), else None."""
        if self.weights_kind != "precision":
            return None
        return self.data[self.weights].to_numpy(dtype=float)

    def _make_bambi(self, priors: dict | None) -> _bambi.LkjBambiModel:
        kwargs = dict(self.bambi_kwargs)
        namespace = bambi_namespace()
        namespace.update(kwargs.pop("extra_namespace", None) or {})
        kwargs["extra_namespace"] = namespace
        kwargs.setdefault(
            "noncentered", all(self.noncentered.values()) if self.noncentered else True
        )
        if self.translation.intercept_as_b:  # brms' 0 + Intercept: no centring
            kwargs["center_predictors"] = False
        # Bambi's own switch only reaches uncorrelated terms; per-factor choices go on priors.
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=FutureWarning, module="bambi")
                # unknown prior names: check_prior_names raises instead of Bambi's warning
                warnings.filterwarnings("ignore", message="Unused name", category=UserWarning)
                model = _bambi.LkjBambiModel(
                    self._bambi_formula(),
                    self.data,
                    bars=self.translation.bar_terms(),
                    precision_weights=self.precision_weights(),
                    family=self._family_arg,
                    priors=priors,
                    link=self.link,
                    **kwargs,
                )
        except LmmFormulaError:
            raise
        except Exception as exc:  # Bambi and formulae raise bare ValueErrors and the like
            raise ModelError(f"Bambi could not build the model: {exc}") from exc
        return model

    def _apply_term_noncentered(self, model: _bambi.LkjBambiModel) -> None:
        """Carry per-factor centered/non-centered choices to Bambi's uncorrelated terms."""
        for name, term in _bambi.group_specific_terms(model).items():
            factor = name.split("|", 1)[1]
            prior = term.prior
            if isinstance(prior, _bambi.Prior) and prior.noncentered is None:
                prior.noncentered = self.noncentered.get(factor, True)

    def _effective_blocks(self) -> dict[str, _bambi.BlockSpec]:
        """The correlated blocks of the translation that span two or more columns (a
        one-column block has no correlation to model), with their LKJ shapes."""
        blocks = {}
        for key, terms in self.translation.correlated.items():
            if _bambi.block_size(self.bambi, tuple(terms)) < 2:
                continue
            factor = self.translation.block_factor(key)
            blocks[key] = _bambi.BlockSpec(
                factor,
                tuple(terms),
                self.noncentered.get(factor, True),
                self.block_eta.get(factor),
                key=key,
            )
        return blocks

    def _choose_likelihood(self, suffstats: bool | str) -> tuple[str, str]:
        if suffstats is False:
            return "full data", "suffstats=False"
        reason = _bambi.suffstats_unsupported(self.bambi)
        if reason is not None:
            if suffstats is True:
                raise ModelError(
                    f"suffstats=True, but the sufficient-statistics likelihood does not apply: "
                    f"{reason}. Use suffstats='auto' or False."
                )
            return "full data", reason
        plan = _bambi.suffstats_plan(self.bambi)
        detail = (
            f"{plan.n} rows in {plan.n_cells} cells, at most {plan.max_rows} pseudo-observations"
        )
        if suffstats == "auto" and not plan.pays():
            return "full data", detail + "; too many to pay"
        return "sufficient statistics", detail

    # -- public API -------------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return bool(self.bambi.built)

    def build(self, fresh: bool = False) -> Model:
        """Build the PyMC model (idempotent unless ``fresh``). Returns ``self``.

        ``fresh=True`` builds a new PyMC graph even if one exists. ``fit`` does so because
        compiling a PyMC graph changes it in place (PyMC folds the constants of the LKJ
        transform), which moves the gradient in its last bits: without a fresh graph a second
        ``fit`` of the same model with the same seed would give different draws.
        """
        if fresh or not self.bambi.built:
            start = time.perf_counter()
            try:
                self.bambi.build()
            except LmmFormulaError:
                raise
            except NotImplementedError as exc:
                raise ModelError(str(exc)) from exc
            self.build_seconds = time.perf_counter() - start
        return self

    @property
    def pymc_model(self):
        """The PyMC model (built on first access)."""
        self.build()
        return self.bambi.backend.model

    @property
    def n_obs(self) -> int:
        return len(self.data)

    @property
    def group_sizes(self) -> dict[str, int]:
        """Number of levels of each grouping factor."""
        info = _bambi.term_info(self.bambi)
        return {t.factor: len(t.levels) for t in info.values()}

    @property
    def link_name(self) -> str:
        parent = _bambi.parent_name(self.bambi)
        return self.bambi.family.link[parent].name

    @property
    def links_text(self) -> str:
        """The links as brms prints them: ``mu = identity; sigma = log``."""
        parent = _bambi.parent_name(self.bambi)
        parts = [f"{parent} = {self.link_name}"]
        parts += [f"{d} = {_bambi.dpar_link(self.bambi, d)}" for d in self.dpars]
        return "; ".join(parts)

    @property
    def dpars(self) -> tuple[str, ...]:
        """The distributional parameters modelled by their own formula (brms' ``bf()``)."""
        return tuple(self.translation.dpar_formulas)

    def fit(
        self,
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        cores: int | None = None,
        sampler: str = "nutpie",
        random_seed: int | None = None,
        target_accept: float | None = None,
        progressbar: bool = True,
        **kwargs: Any,
    ):
        """Sample the posterior.

        Parameters
        ----------
        draws, tune : int
            Draws kept and tuning steps, per chain.
        chains : int
            Number of chains.
        cores : int, optional
            Chains run in parallel (default: as many as the machine allows).
        sampler : {"nutpie", "pymc", "numpyro", "blackjax"}
            NUTS implementation; nutpie is the default.
        random_seed : int, optional
            Seed; the same seed gives identical draws.
        target_accept : float, optional
            NUTS target acceptance rate (raise it, e.g. to 0.95, against divergences). With
            nutpie and a correlated block the default is 0.9 and the mass matrix is adapted
            from the draws' variances as Stan does (``lmmformula.fit.LKJ_NUTS_DEFAULTS``;
            pass ``nuts={...}`` to change either); with a ``gp()`` term it is 0.99
            (``lmmformula.fit.GP_TARGET_ACCEPT``, as brms' GP fits need); otherwise
            nutpie's defaults (0.8).
        progressbar : bool
            Show the sampler's progress bar.
        **kwargs
            Passed to ``bambi.Model.fit``.

        Returns
        -------
        Fit
        """
        from lmmformula.fit import sample

        return sample(
            self,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            sampler=sampler,
            random_seed=random_seed,
            target_accept=target_accept,
            progressbar=progressbar,
            **kwargs,
        )

    def design(self):
        """The design matrices: ``X``, ``Z``, their columns and the covariance blocks, as lme4's
        ``getME(m, "X")``, ``getME(m, "Z")`` and ``cnms``; see :class:`lmmformula.design.Design`.

        Examples
        --------
        >>> import lmmformula as lf
        >>> m = lf.model("strength ~ 1 + (1|batch) + (0 + cask|batch)", lf.load_dataset("pastes"))
        >>> [len(cols) for _, cols in m.design().blocks]  # the intercept, and all 3 casks
        [1, 3]
        """
        from lmmformula.design import design

        return design(self)

    def prior_summary(self):
        """Every parameter class and coefficient with the prior in force and whether it is
        the default or the user's (brms' ``prior_summary``)."""
        from lmmformula.priors import prior_summary

        return prior_summary(self)

    def prior_check(self, draws: int = 500, random_seed: int | None = None, **options: Any):
        """Prior predictive check: what the priors imply for the outcome; see
        :func:`lmmformula.checks.prior_check`."""
        from lmmformula.checks import prior_check

        return prior_check(self, draws=draws, random_seed=random_seed, **options)

    def spec(self) -> dict[str, Any]:
        """The arguments that rebuild this model from the same data (used by ``save``)."""
        return {
            "formula": self.formula,
            "family": self.family_spelled,
            "link": self.link,
            "lkj_eta": self.lkj_eta,
            "noncentered": dict(self.noncentered),
            "weights": self.weights,
            "na_action": self.na_action,
            "suffstats": self.suffstats,
            "marginalize": self.marginalize,
        } | self._data2_spec()

    def _data2_spec(self) -> dict[str, Any]:
        """brms' data2 matrices that gr(g, cov = K) uses, as plain lists (saved with a fit)."""
        from lmmformula._gp import encode_data2

        used = encode_data2(getattr(self, "cov_frames", {}))
        return {"data2": used} if used else {}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], data: Any, priors: Any = None) -> Model:
        """Rebuild a model from :meth:`spec` (plus ``bambi_kwargs`` and ``priors``, which
        ``priors=`` overrides) on ``data``, whose rows are complete already (used by
        ``load_fit`` and by refits)."""
        spec = dict(spec)
        bambi_kwargs = dict(spec.pop("bambi_kwargs", None) or {})
        formula, family = spec.pop("formula"), spec.pop("family")
        stored = spec.pop("priors", None)
        priors = copy.deepcopy(stored) if priors is None else priors
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MissingDataWarning)
            return cls(formula, data, family, priors, **spec, **bambi_kwargs)

    def __repr__(self) -> str:
        blocks = ", ".join(f"{k}: {' + '.join(v.terms)}" for k, v in self.blocks.items())
        return (
            f"<lmmformula.Model {self.formula!r} family={self.family_spelled} n={self.n_obs}"
            + (f" LKJ blocks [{blocks}]" if blocks else "")
            + f" likelihood={self.likelihood}>"
        )


def model(
    formula: str | Translation,
    data: Any,
    family: str | _bambi.Family | None = None,
    priors: Any = None,
    *,
    lkj_eta: float = _bambi.DEFAULT_LKJ_ETA,
    noncentered: bool | Mapping[str, bool] = True,
    link: str | None = None,
    weights: str | None = None,
    na_action: str = "drop",
    suffstats: bool | str = "auto",
    marginalize: bool | str = "auto",
    data2: Mapping[str, Any] | None = None,
    **bambi_kwargs: Any,
) -> Model:
    """Read an lme4/brms formula and build the Bayesian multilevel model it means.

    Parameters
    ----------
    formula : str
        An lme4/brms formula, e.g. ``"log_ozone ~ TEMP + (TEMP|station)"``.
    data : pandas.DataFrame or polars.DataFrame
        The data; never modified. Rows with missing values in the formula's variables are
        dropped with a warning (lme4's default), or refused with ``na_action="fail"``.
    family : str or bambi.Family, optional
        Response family; by default binomial for ``cbind()``/``trials()``/``p()`` responses
        and gaussian otherwise.
    priors : dict or list, optional
        Bambi priors keyed by term name, or a list of :func:`lmmformula.prior` specifications.
    lkj_eta : float
        Shape of the LKJ prior on the correlation matrix of every correlated block.
    noncentered : bool or dict of str to bool
        Non-centered group-level effects (default), or centered; a dict chooses per grouping
        factor, e.g. ``{"station": False}``.
    link : str, optional
        Link function (default: the family's).
    weights : str, optional
        Column of weights, with lme4's meaning (``lmer(weights = w)``): for a gaussian model
        precision weights, the residual variance of row i being ``sigma^2 / w_i`` (weights
        4 times as large halve sigma's scale: lme4's sigma doubles, the fixed effects stay);
        for other families lme4's prior weights, each row's log-likelihood multiplied by
        ``w_i``. brms' ``y | weights(w) ~ ...`` in the formula always multiplies the
        log-likelihood (brms' meaning), whatever the family.
    na_action : {"drop", "fail"}
        What to do with incomplete rows.
    suffstats : {"auto", True, False}
        Gaussian identity-link models can sample on exact per-cell sufficient statistics
        instead of row by row (same posterior, much less work per gradient). ``"auto"`` does
        so where valid and where it pays, ``True`` wherever valid (an error otherwise),
        ``False`` never. :attr:`Model.likelihood` says which was used.
    marginalize : {"auto", True, False}
        Gaussian identity-link models: integrate the varying intercept ``(1|g)`` with the most
        levels (outside any correlated block) out of the likelihood exactly and draw its effects
        afterwards from their exact conditional (same posterior, far fewer dimensions to
        sample; :mod:`lmmformula._marginal`). ``"auto"`` does so on the full-data likelihood
        when that factor has at least 100 levels, ``True`` whenever possible (an error
        otherwise), ``False`` never.
    data2 : dict, optional
        brms' ``data2``: the matrices named by ``gr(g, cov = K)`` in the formula, each a
        pandas DataFrame whose index and columns are the levels of ``g`` (matched by name), or
        a numpy array whose rows and columns follow the sorted levels of ``g``.
    **bambi_kwargs
        Passed to ``bambi.Model``.

    Returns
    -------
    Model

    Examples
    --------
    >>> import lmmformula as lf
    >>> m = lf.model("Reaction ~ Days + (Days|Subject)", lf.load_dataset("sleepstudy"))
    >>> m.blocks["Subject"].terms
    ('1|Subject', 'Days|Subject')
    """
    return Model(
        formula,
        data,
        family,
        priors,
        lkj_eta=lkj_eta,
        noncentered=noncentered,
        link=link,
        weights=weights,
        na_action=na_action,
        suffstats=suffstats,
        marginalize=marginalize,
        data2=data2,
        **bambi_kwargs,
    )


def _marginal_option(value: Any) -> bool | str:
    """Validate ``marginalize`` (issue 14)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value == "auto":
        return value
    raise ModelError(f"marginalize must be True, False or 'auto', got {value!r}.")
