"""After the fit: sampling, diagnostics and the R-style accessors.

The accessors read the model's terms and the posterior draws, never the formula string:
``fixef`` / ``ranef`` / ``coef`` / ``varcorr`` / ``summary`` / ``predict`` / ``loo``.
"""

from __future__ import annotations

import gc
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from lmmformula import _bambi, _mono, _ordinal
from lmmformula._text import column_format
from lmmformula._text import term_label as _pretty_term
from lmmformula.errors import DataError, LmmFormulaError, ModelError, SamplingWarning

if TYPE_CHECKING:
    from lmmformula.model import Model

__all__ = ["Fit", "SamplingWarning", "sample"]

CI_PROB = 0.95
SAMPLERS = ("nutpie", "pymc", "numpyro", "blackjax")


# -- summaries of draws ---------------------------------------------------------------------
def _describe(draws: dict[str, np.ndarray]) -> pd.DataFrame:
    """Mean, sd, 95% equal-tailed interval, R-hat and ESS of named (chain, draw) arrays."""
    if not draws:
        return pd.DataFrame(
            columns=["estimate", "sd", "lower", "upper", "rhat", "ess_bulk", "ess_tail"]
        )
    keys = list(draws)
    ds = xr.Dataset(
        {f"v{i}": (("chain", "draw"), np.asarray(draws[k])) for i, k in enumerate(keys)}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.summary(
            xr.DataTree.from_dict({"posterior": ds}),
            ci_prob=CI_PROB,
            ci_kind="eti",
            round_to="none",
        )
    lo, hi = (c for c in table.columns if c.startswith("eti"))
    table = table.rename(columns={"mean": "estimate", lo: "lower", hi: "upper", "r_hat": "rhat"})[
        ["estimate", "sd", "lower", "upper", "rhat", "ess_bulk", "ess_tail"]
    ]
    table.index = keys
    return table.astype(float)


def _columns_of(da: xr.DataArray) -> dict[str, np.ndarray]:
    """Split a variable with extra dims into (chain, draw) arrays labelled ``name[level]``."""
    extra = [d for d in da.dims if d not in ("chain", "draw")]
    if not extra:
        return {str(da.name): da.values}
    stacked = da.stack(__col__=extra).transpose("chain", "draw", "__col__")
    out = {}
    for i, idx in enumerate(stacked["__col__"].values):
        label = idx if not isinstance(idx, tuple) else ",".join(map(str, idx))
        out[f"{da.name}[{label}]"] = stacked.values[:, :, i]
    return out


@dataclass
class Diagnostics:
    """Sampler health: divergences, worst R-hat and smallest effective sample sizes."""

    divergences: int
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    draws: int
    chains: int

    def problems(self) -> list[str]:
        out = []
        if self.divergences:
            out.append(f"{self.divergences} divergent transitions")
        if self.max_rhat > 1.01:
            out.append(f"R-hat up to {self.max_rhat:.3f} (> 1.01)")
        threshold = 100 * self.chains
        if self.min_ess_bulk < threshold:
            out.append(f"bulk ESS as low as {self.min_ess_bulk:.0f} (< {threshold})")
        if self.min_ess_tail < threshold:
            out.append(f"tail ESS as low as {self.min_ess_tail:.0f} (< {threshold})")
        return out


@dataclass
class Summary:
    """A printable, brms-like summary; the tables are pandas DataFrames."""

    header: list[str]
    group_level: dict[str, pd.DataFrame]
    population: pd.DataFrame
    family_specific: pd.DataFrame
    diagnostics: Diagnostics
    notes: list[str] = field(default_factory=list)
    gp_terms: pd.DataFrame | None = None  # brms' "Gaussian Process Terms": sdgp(), lscale()

    def __str__(self) -> str:
        def fmt(table: pd.DataFrame) -> str:
            shown = table.rename(
                columns={
                    "estimate": "Estimate",
                    "sd": "Est.Error",
                    "lower": "l-95% CI",
                    "upper": "u-95% CI",
                    "rhat": "Rhat",
                    "ess_bulk": "Bulk_ESS",
                    "ess_tail": "Tail_ESS",
                }
            )
            # one format a column (its decimals line up, as in brms); ESS whole, Rhat 2 decimals
            formats = {c: column_format(shown[c]) for c in shown if shown[c].dtype.kind == "f"}
            formats["Bulk_ESS"] = formats["Tail_ESS"] = lambda v: f"{v:.0f}"
            formats["Rhat"] = lambda v: f"{v:.2f}"
            return shown.rename_axis(None).to_string(formatters=formats)

        lines = list(self.header)
        if self.group_level:
            lines += ["", "Multilevel Hyperparameters:"]
            for factor, table in self.group_level.items():
                lines += [f"~{factor}", fmt(table), ""]
        if self.gp_terms is not None and len(self.gp_terms):
            if not self.group_level:
                lines.append("")
            lines += ["Gaussian Process Terms:", fmt(self.gp_terms), ""]
        lines += ["Regression Coefficients:", fmt(self.population)]
        if len(self.family_specific):
            lines += ["", "Further Distributional Parameters:", fmt(self.family_specific)]
        d = self.diagnostics
        lines += [
            "",
            f"Diagnostics: {d.divergences} divergences; max R-hat {d.max_rhat:.3f}; "
            f"min bulk ESS {d.min_ess_bulk:.0f}; min tail ESS {d.min_ess_tail:.0f}.",
        ]
        lines += self.notes
        return "\n".join(lines)

    def _repr_html_(self) -> str:  # notebooks
        text = str(self).replace("&", "&amp;").replace("<", "&lt;")
        return f'<pre style="font-family: monospace">{text}</pre>'

    __repr__ = __str__


class Fit:
    """A fitted lmmformula model: the posterior and R-style ways to read it.

    Attributes
    ----------
    model : Model
        The model that was fitted.
    idata : xarray.DataTree
        ArviZ data: ``posterior``, ``sample_stats``, ``observed_data`` (and ``log_likelihood``
        once :meth:`loo` or :meth:`log_likelihood` has run).
    sampler : str
        The NUTS implementation used.
    timings : dict
        Seconds spent: ``build`` (the PyMC graph), ``compile`` and ``sample`` (nutpie; other
        samplers report compiling as part of ``sample``).
    """

    def __init__(
        self,
        model: Model,
        idata: xr.DataTree,
        *,
        sampler: str,
        settings: dict[str, Any] | None = None,
        timings: dict[str, float] | None = None,
    ) -> None:
        self.model = model
        self.idata = idata
        self.sampler = sampler
        self.settings = dict(settings or {})
        self.timings = dict(timings or {})
        self._loo = None
        self._diagnostics: Diagnostics | None = None

    # -- raw access --------------------------------------------------------------------
    @property
    def posterior(self) -> xr.Dataset:
        return self.idata["posterior"].to_dataset()

    @property
    def bambi(self):
        return self.model.bambi

    def _terms(self) -> dict[str, _bambi.TermInfo]:
        return _bambi.term_info(self.model.bambi)

    def _label(self, name: str) -> str:
        """A group-level column's coefficient as brms prints it (``sigma_Intercept``)."""
        return _pretty_term(name, self.model.translation.dpar_formulas)

    # -- diagnostics -------------------------------------------------------------------
    def diagnostics(self) -> Diagnostics:
        """Divergences, max R-hat and min bulk/tail ESS over every stored parameter (computed
        once; the draws do not change)."""
        if self._diagnostics is None:
            self._diagnostics = self._compute_diagnostics()
        return self._diagnostics

    def _compute_diagnostics(self) -> Diagnostics:
        post = self.posterior
        stats = self.idata["sample_stats"].to_dataset() if "sample_stats" in self.idata else None
        divergences = 0
        if stats is not None and "diverging" in stats:
            divergences = int(stats["diverging"].sum())
        names = self._parameter_names()
        # issue 14: az.rhat/az.ess vectorised over one stacked (chain, draw, parameter) array
        from lmmformula._diagnostics import diagnostics_arrays

        arrays = {n: post[n].transpose("chain", "draw", ...).values for n in names}
        stats_ = diagnostics_arrays(arrays)

        def extreme(values: np.ndarray, fn) -> float:
            values = values[np.isfinite(values)]
            return float(fn(values)) if values.size else float("nan")

        return Diagnostics(
            divergences=divergences,
            max_rhat=extreme(stats_["rhat"], np.max),
            min_ess_bulk=extreme(stats_["ess_bulk"], np.min),
            min_ess_tail=extreme(stats_["ess_tail"], np.min),
            draws=int(post.sizes["draw"]),
            chains=int(post.sizes["chain"]),
        )

    def _parameter_names(self) -> list[str]:
        """Stored parameters (not the per-observation ones). A correlation matrix's constant
        diagonal gives NaN R-hat/ESS, which :meth:`diagnostics` leaves out.

        Effects integrated out of the likelihood (``marginalize``) are left out too: the
        sampler never moved them; each of their draws is an exact draw from the conditional
        given that posterior draw, whose parameters (the sds, sigma, the other effects) are
        checked. InstEval: 1,148 sampled parameters instead of 4,120."""
        drawn = set(_bambi.marginal_effect_names(self.model.bambi, self.model.marginal))
        return [
            name
            for name, da in self.posterior.data_vars.items()
            if "__obs__" not in da.dims and name not in drawn
        ]

    # -- R-style accessors -------------------------------------------------------------
    def _fixed_draws(self) -> dict[str, np.ndarray]:
        """``{coefficient: (chain, draw) array}`` for the population-level effects."""
        post = self.posterior
        draws: dict[str, np.ndarray] = _ordinal.threshold_draws(self.model.bambi, post)
        v = _bambi.view(self.model.bambi)
        intercept = v.intercept()
        if intercept is not None:
            draws["Intercept"] = post[intercept.name].values
        mo = _bambi.mo_terms(self.model.bambi)
        for term in v.common():
            if term.key in mo:  # brms' bsp_mox and simo_mox1[k]
                draws.update(_mono.mo_draws(mo[term.key], post))
                continue
            if term.name in post:
                draws.update(_columns_of(post[term.name]))
        for term in v.terms:  # the formulas of distributional parameters: sigma_z, ...
            if term.dpar and term.kind != "group" and term.name in post:
                draws.update(_columns_of(post[term.name]))
        return draws

    def fixef(self) -> pd.DataFrame:
        """Population-level effects: one row per coefficient (``fixef(m)`` in lme4/brms).

        Columns: ``estimate`` (posterior mean), ``sd``, ``lower``, ``upper`` (95% interval),
        ``rhat``, ``ess_bulk``, ``ess_tail``.
        """
        return _describe(self._fixed_draws())

    def _group_draws(self) -> dict[str, dict[str, np.ndarray]]:
        """Per factor: ``{column label: (chain, draw, level) array}``."""
        post = self.posterior
        out: dict[str, dict[str, np.ndarray]] = {}
        for info in self._terms().values():
            da = post[info.name]
            factor_dim = next(d for d in da.dims if d.endswith("__factor_dim"))
            if info.expr_dim is None:
                out.setdefault(info.factor, {})[info.name] = da.transpose(
                    "chain", "draw", factor_dim
                ).values
            else:
                arr = da.transpose("chain", "draw", factor_dim, info.expr_dim).values
                for j, col in enumerate(info.columns):
                    out.setdefault(info.factor, {})[col] = arr[:, :, :, j]
        return out

    def _levels(self) -> dict[str, list[str]]:
        return {info.factor: info.levels for info in self._terms().values()}

    def ranef(self, long: bool = False) -> dict[str, pd.DataFrame] | pd.DataFrame:
        """Group-level effects (deviations from the population-level effects).

        Parameters
        ----------
        long : bool
            ``False`` (default): a dict keyed by grouping factor of DataFrames with one row per
            level and one column per term, holding posterior means (``ranef(m)$g`` in lme4).
            ``True``: one tidy DataFrame shaped like lme4's
            ``as.data.frame(ranef(m, condVar = TRUE))``: ``grpvar`` (the grouping factor),
            ``term``, ``grp`` (the level), ``condval`` (posterior mean), ``condsd`` (posterior
            sd), plus the 95% interval ``lower``, ``upper``.
        """
        levels = self._levels()
        if not long:
            out = {}
            for factor, cols in self._group_draws().items():
                out[factor] = pd.DataFrame(
                    {self._label(c): arr.mean(axis=(0, 1)) for c, arr in cols.items()},
                    index=pd.Index(levels[factor], name=factor),
                )
            return out
        rows = []
        for factor, cols in self._group_draws().items():
            for col, arr in cols.items():
                flat = arr.reshape(-1, arr.shape[-1])
                lower, upper = np.quantile(flat, [(1 - CI_PROB) / 2, (1 + CI_PROB) / 2], axis=0)
                for i, level in enumerate(levels[factor]):
                    rows.append(
                        {
                            "grpvar": factor,
                            "term": self._label(col),
                            "grp": level,
                            "condval": flat[:, i].mean(),
                            "condsd": flat[:, i].std(ddof=1),
                            "lower": lower[i],
                            "upper": upper[i],
                        }
                    )
        return pd.DataFrame(rows)

    def coef(self) -> dict[str, pd.DataFrame]:
        """Population-level plus group-level effects per level (``coef(m)$g`` in lme4).

        For each grouping factor, a DataFrame with one row per level and one column per
        population-level coefficient: the posterior mean of ``fixef + ranef`` (terms without a
        group-level part on that factor are the population value).
        """
        fixed = self._fixed_draws()
        levels = self._levels()
        out = {}
        for factor, cols in self._group_draws().items():
            n_levels = len(levels[factor])
            table = {}
            for key, arr in fixed.items():
                table[key] = np.broadcast_to(arr[..., None], (*arr.shape, n_levels))
            for col, arr in cols.items():
                key = self._label(col)
                key = f"bsp_{key}" if f"bsp_{key}" in table else key  # mo(x): bsp + r_g
                table[key] = table[key] + arr if key in table else arr
            out[factor] = pd.DataFrame(
                {k: v.mean(axis=(0, 1)) for k, v in table.items()},
                index=pd.Index(levels[factor], name=factor),
            )
        return out

    def _variance_draws(self) -> list[tuple[str, str | None, str | None, str, np.ndarray]]:
        """``(grp, var1, var2, brms label, draws)`` for every sd, correlation and sigma."""
        post = self.posterior
        out: list[tuple[str, str | None, str | None, str, np.ndarray]] = []
        by_factor: dict[str, list[_bambi.TermInfo]] = {}
        for info in self._terms().values():
            by_factor.setdefault(info.factor, []).append(info)
        gp_plans = {p.column: (n, p) for n, p in getattr(self.model, "gp_plans", {}).items()}
        for factor, infos in by_factor.items():
            if factor in gp_plans:  # brms' sdgp(gpx), lscale(gpx) (lmmformula._gp)
                from lmmformula._gp import summary_draws

                out += summary_draws(post, *gp_plans[factor])
                continue
            for info in infos:
                sd = post[info.sigma_name].transpose("chain", "draw", ...).values
                columns = [info.name] if info.expr_dim is None else info.columns
                for j, col in enumerate(columns):
                    term = self._label(col)
                    values = sd if info.expr_dim is None else sd[:, :, j]
                    out.append((factor, term, None, f"sd({term})", values))
            for block in self.model.blocks.values():
                if block.factor != factor:
                    continue
                corr = post[block.corr_name]
                labels = [self._label(str(v)) for v in corr[block.dims[0]].values]
                arr = corr.transpose("chain", "draw", *block.dims).values
                for i in range(len(labels)):
                    for j in range(i + 1, len(labels)):
                        label = f"cor({labels[i]},{labels[j]})"
                        out.append((factor, labels[i], labels[j], label, arr[:, :, i, j]))
        if self.model.family == "gaussian" and "sigma" in post and post["sigma"].ndim == 2:
            out.append(("Residual", None, None, "sigma", post["sigma"].values))
        return out

    def varcorr(self) -> pd.DataFrame:
        """Standard deviations and correlations, shaped like lme4's ``as.data.frame(VarCorr(m))``.

        Columns ``grp``, ``var1``, ``var2`` (``None`` on sd rows), ``estimate`` (posterior mean
        of the sd or correlation), ``sd``, ``lower``, ``upper``; a ``Residual`` row holds
        sigma for gaussian models.
        """
        return self._varcorr_table(full=False)

    def _varcorr_table(self, full: bool = True) -> pd.DataFrame:
        rows = self._variance_draws()
        table = _describe({str(i): r[4] for i, r in enumerate(rows)}).reset_index(drop=True)
        head = pd.DataFrame(
            {
                "grp": [r[0] for r in rows],
                "var1": pd.Series([r[1] for r in rows], dtype=object),
                "var2": pd.Series([r[2] for r in rows], dtype=object),
            }
        )
        if full:
            head["label"] = [r[3] for r in rows]
            return pd.concat([head, table], axis=1)
        return pd.concat([head, table[["estimate", "sd", "lower", "upper"]]], axis=1)

    def summary(self) -> Summary:
        """A brms-like summary: formula, family, data, group-level sds and correlations,
        population-level effects, family parameters, with 95% intervals, R-hat and ESS."""
        m = self.model
        post = self.posterior
        d = self.diagnostics()
        gp_columns = {p.column for p in getattr(m, "gp_plans", {}).values()}  # brms' gp()
        groups = {g: n for g, n in m.group_sizes.items() if g not in gp_columns}
        header = [
            f" Family: {m.family_spelled} (links: {m.links_text})",
            f"Formula: {m.formula}",
            f"   Data: {m.n_obs} observations"
            + ("; groups: " + ", ".join(f"{g} ({n})" for g, n in groups.items()) if groups else ""),
            f"  Draws: {d.chains} chains, each with {self.settings.get('tune', '?')} tuning and "
            f"{d.draws} kept draws; sampler {self.sampler}",
        ]
        header.append(f"Likelihood: {m.likelihood}")
        if m.blocks:
            header.append(
                "  Prior: "
                + ", ".join(
                    f"LKJ(eta = {m.lkj_eta if b.eta is None else b.eta:g}) on the correlations "
                    f"of {b.factor}"
                    + (
                        f" [{', '.join(self._label(t) for t in b.terms)}]"
                        if sum(o.factor == b.factor for o in m.blocks.values()) > 1
                        else ""
                    )
                    + f" ({'non-centered' if b.noncentered else 'centered'})"
                    for b in m.blocks.values()
                )
            )
        full = self._varcorr_table()
        group_level = {}
        for factor in groups:
            sub = full[full["grp"] == factor]
            if len(sub):
                group_level[factor] = sub.drop(columns=["grp", "var1", "var2"]).set_index("label")
        population = self.fixef()
        family_draws = {}
        for name in _bambi.view(m.bambi).auxiliary_names:
            if name in post and set(post[name].dims) <= {"chain", "draw"}:
                family_draws[name] = post[name].values
        family_specific = _describe(family_draws)
        gp_rows = full[full["grp"].isin(gp_columns)]
        gp_terms = gp_rows.drop(columns=["grp", "var1", "var2"]).set_index("label")
        return Summary(
            header,
            group_level,
            population,
            family_specific,
            d,
            gp_terms=gp_terms if len(gp_rows) else None,
        )

    # -- prediction --------------------------------------------------------------------
    def predict(
        self,
        data: pd.DataFrame | None = None,
        kind: str = "mean",
        include_group_effects: bool = True,
        allow_new_levels: bool = False,
        random_seed: int | None = None,
        summary: bool = True,
        dpar: str | None = None,
    ) -> pd.DataFrame | xr.DataArray:
        """Predictions for the fitted or new data, following Bambi's ``predict``.

        Parameters
        ----------
        data : pandas.DataFrame, optional
            New data; default the data the model was fitted on.
        kind : {"mean", "response"}
            ``"mean"``: the expected value (brms' ``posterior_epred``); ``"response"``: draws of
            new observations (brms' ``posterior_predict``). For an ordinal (cumulative) or
            categorical model ``"mean"`` is the probability of each category, as brms'
            ``posterior_epred``: the summary has one row per observation and category
            (a ``(obs, category)`` index), the draws a category dimension; ``"response"``
            draws the category's position, 0 for the first (Bambi's), where brms' draws
            count from 1.
        include_group_effects : bool
            ``False`` predicts from population-level effects only (``re_formula = NA``);
            as in brms a ``gp()`` term is population-level and stays.
        allow_new_levels : bool
            Allow grouping-factor levels not seen in the fit; their effects are drawn from the
            posterior of a random existing level per draw, the same level for every term of
            a factor so correlations are kept (brms' ``sample_new_levels = "uncertainty"``).
        random_seed : int, optional
            Seed for ``kind="response"`` and new levels.
        summary : bool
            ``True``: a DataFrame with ``estimate, sd, lower, upper`` per row; ``False``: the
            draws as a DataArray with dims ``(chain, draw, __obs__)``.
        dpar : str, optional
            With ``kind="mean"``, a distributional parameter modelled by its own formula
            instead of the mean: ``dpar="sigma"`` gives each row's residual sd in
            ``bf(y ~ x, sigma ~ z)`` (brms' ``posterior_epred(dpar = "sigma")``).
        """
        if kind not in ("mean", "response"):
            raise ModelError(f"kind must be 'mean' or 'response', got {kind!r}.")
        if dpar is not None:
            if dpar not in self.model.dpars:
                raise ModelError(
                    f"dpar={dpar!r}: the model has no formula for it; modelled by a formula: "
                    f"{', '.join(map(repr, self.model.dpars)) or 'none'}."
                )
            if kind != "mean":
                raise ModelError("dpar= goes with kind='mean' (the parameter's value per row).")
        new = None
        if data is not None:
            from lmmformula._frame import prepare_new_data

            new = prepare_new_data(data, self.model)  # a checked copy
            self._check_new_levels(new, allow_new_levels, include_group_effects)
        draws = self._predict_draws(
            new, kind, include_group_effects, allow_new_levels, random_seed, dpar
        )
        if not summary:
            return draws
        index = None
        extra = [d for d in draws.dims if d not in ("chain", "draw", "__obs__")]
        if extra:  # ordinal/categorical "mean": a probability per row and category
            draws = draws.stack(__row__=("__obs__", *extra))
            index = pd.MultiIndex.from_tuples(
                list(draws["__row__"].values), names=["obs", "category"]
            )
            draws = draws.drop_vars(["__row__", "__obs__", *extra]).rename({"__row__": "__obs__"})
        flat = draws.stack(__sample__=("chain", "draw")).transpose("__obs__", "__sample__").values
        lower, upper = np.quantile(flat, [(1 - CI_PROB) / 2, (1 + CI_PROB) / 2], axis=1)
        return pd.DataFrame(
            {
                "estimate": flat.mean(axis=1),
                "sd": flat.std(axis=1, ddof=1),
                "lower": lower,
                "upper": upper,
            },
            index=index,
        )

    def _check_new_levels(
        self, data: pd.DataFrame, allow_new_levels: bool, include_group_effects: bool
    ) -> None:
        model_data = self.model.data
        for name in self.model.translation.variables[1:]:
            if name not in data.columns:
                continue
            col = model_data[name]
            if col.dtype == object or isinstance(col.dtype, pd.CategoricalDtype):
                seen = set(col.astype(str))
                unseen = sorted(set(data[name].dropna().astype(str)) - seen)
                if not unseen:
                    continue
                factors = set()
                for info in self._terms().values():
                    factors |= set(info.factor.split(":"))
                if name in factors:
                    if include_group_effects and not allow_new_levels:
                        raise DataError(
                            f"the grouping factor {name!r} has levels not seen in the fit: "
                            f"{', '.join(map(repr, unseen[:5]))}. Pass allow_new_levels=True "
                            "to draw their effects from the fitted population, or "
                            "include_group_effects=False."
                        )
                else:
                    raise DataError(
                        f"the column {name!r} has levels not seen in the fit: "
                        f"{', '.join(map(repr, unseen[:5]))}; a population-level effect cannot "
                        "be predicted for them."
                    )
        # an interaction grouping factor (a:b) can meet a new combination of seen levels
        for name in self.model.translation.interaction_factors:
            if name not in data.columns or not include_group_effects or allow_new_levels:
                continue
            unseen = sorted(set(data[name].dropna().astype(str)) - set(model_data[name]))
            if unseen:
                raise DataError(
                    f"the grouping factor {name!r} has combinations not seen in the fit: "
                    f"{', '.join(map(repr, unseen[:5]))}. Pass allow_new_levels=True to draw "
                    "their effects from the fitted population, or include_group_effects=False."
                )

    def _predict_draws(
        self, data, kind, include_group_effects, allow_new_levels, random_seed, dpar=None
    ):
        bm = self.model.bambi
        idata = self.idata.copy()
        parent = dpar or _bambi.parent_name(bm)
        include = include_group_effects
        gp_terms = {g.term for g in getattr(self.model.translation, "gp_terms", ())}
        if gp_terms and not include_group_effects:
            # brms' re_formula = NA drops the group-level terms but keeps gp(), which is a
            # population-level term there: predict with the other group-level effects at 0
            # (new levels of their factors too)
            post = idata["posterior"].to_dataset()
            for info in self._terms().values():
                if info.name not in gp_terms and info.name in post:
                    post[info.name] = xr.zeros_like(post[info.name])
            idata["posterior"] = xr.DataTree(post)
            include, allow_new_levels = True, True
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                # formulae codes unseen levels through a pandas idiom pandas 3 deprecates
                warnings.filterwarnings("ignore", message="Constructing a Categorical with a dtype")
                out = bm.predict(
                    idata,
                    kind="response" if kind == "response" else "response_params",
                    data=data,
                    inplace=False,
                    include_group_specific=include,
                    sample_new_groups=True if allow_new_levels else None,
                    random_seed=random_seed,
                )
        except LmmFormulaError:
            raise
        except Exception as exc:
            raise DataError(f"prediction failed: {exc}") from exc
        if kind == "response":
            pp = out["posterior_predictive"].to_dataset()
            name = next(iter(pp.data_vars))
            draws = pp[name]
            weights = self._precision_weights_of(data)
            if weights is not None:  # draws around mu with sd sigma / sqrt(w)
                mean = self._predict_draws(
                    data, "mean", include_group_effects, allow_new_levels, random_seed
                )
                scale = xr.DataArray(1 / np.sqrt(weights), dims=("__obs__",))
                draws = mean + (draws - mean.values) * scale.values
            return draws
        return out["posterior"].to_dataset()[parent]

    def _precision_weights_of(self, data: pd.DataFrame | None) -> np.ndarray | None:
        """The precision weights of the rows predicted (1 where new data lack the column)."""
        weights = self.model.precision_weights()
        if weights is None or data is None:
            return weights
        column = self.model.weights
        if column in data.columns:
            return data[column].to_numpy(dtype=float)
        return np.ones(len(data))

    # -- log-likelihood and LOO --------------------------------------------------------
    def log_likelihood(self) -> xr.DataArray:
        """Pointwise log-likelihood ``(chain, draw, __obs__)``, computed from the draws once and
        kept in ``idata["log_likelihood"]``."""
        if "log_likelihood" not in self.idata.children:
            bm = self.model.bambi
            post = self.posterior
            # Bambi holds several (chain, draw, obs) arrays at once, in graphs whose reference
            # cycles keep them alive until the garbage collector runs: work through the draws
            # in slices of about 5e6 values each, collecting after each, so memory stays near
            # the size of the result (ozone, 4 x 1000 draws: 1.0 GB instead of 5 GB more per
            # fit, which a vignette comparing four fits did not survive).
            cells = max(1, post.sizes["chain"] * self.model.n_obs)
            step = max(1, int(5e6 // cells))
            parts = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for start in range(0, post.sizes["draw"], step):
                    sub = xr.DataTree.from_dict(
                        {"posterior": post.isel(draw=slice(start, start + step))}
                    )
                    out = bm.compute_log_likelihood(sub, inplace=False)
                    parts.append(out["log_likelihood"].to_dataset().copy(deep=True))
                    del out, sub
                    gc.collect()
            ll = xr.concat(parts, dim="draw")
            weights = self.model.precision_weights()
            if weights is not None:
                ll = ll.map(_bambi.precision_weighted_loglik, args=(weights, post["sigma"]))
            self.idata["log_likelihood"] = ll
        ll = self.idata["log_likelihood"].to_dataset()
        return ll[next(iter(ll.data_vars))]

    def loo(self):
        """PSIS-LOO (ArviZ ``loo``) with the count of observations whose Pareto k is bad."""
        if self._loo is None:
            self.log_likelihood()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._loo = az.loo(self.idata, pointwise=True)
        return self._loo

    def pp_check(self, **kwargs: Any):
        """Posterior predictive check plot (brms' ``pp_check``); see
        :func:`lmmformula.plots.pp_check`."""
        from lmmformula.plots import pp_check

        return pp_check(self, **kwargs)

    # -- exact cross-validation by refitting --------------------------------------------
    def kfold(
        self,
        K: int = 10,
        folds: str | Any = None,
        group: str | None = None,
        executor: Any = None,
        random_seed: int | None = None,
        *,
        timeout: float | None = None,
        progressbar: bool = True,
    ):
        """K-fold cross-validation by refitting (brms' ``kfold``).

        Each fold's rows are held out, the model is refitted on the others with this fit's
        formula, family, priors, LKJ shape, centering and sampler settings, and the held-out
        rows' log-likelihood is averaged over the refit's draws (log mean exp).

        Parameters
        ----------
        K : int
            Number of folds.
        folds : {None, "random", "stratified", "grouped", "loo"} or array of fold ids
            ``None``: random folds, or leave-one-group-out when ``group`` is given (brms).
            ``"stratified"``: every level of ``group`` spread evenly over the folds.
            ``"grouped"``: whole levels of ``group`` held out together; their effects are
            then drawn from the fitted levels (brms' ``allow_new_levels = TRUE``).
            ``"loo"``: one row per fold. An array gives each row's fold.
        group : str, optional
            Column of the data to stratify or group by.
        executor : concurrent.futures.Executor, optional
            Where the refits run: serially in this process by default, or e.g. a
            ``ProcessPoolExecutor`` or Dask's ``Client(...).get_executor()``.
        random_seed : int, optional
            Seed of the folds and of every refit: the same seed gives the same result on any
            executor.
        timeout : float, optional
            Seconds allowed for all refits; a ``FitError`` after that.
        progressbar : bool
            A progress bar over the refits.

        Returns
        -------
        lmmformula.kfold.KFold
            ``elpd_kfold``, ``se``, ``p_kfold``, ``pointwise``, ``folds``, ``K``; accepted
            by :func:`lmmformula.compare`.

        Examples
        --------
        >>> cv = fit.kfold(K=5, random_seed=1)  # doctest: +SKIP
        >>> cv = fit.kfold(K=5, folds="grouped", group="Subject", random_seed=1)  # doctest: +SKIP
        """
        from lmmformula.kfold import kfold

        return kfold(
            self,
            K=K,
            folds=folds,
            group=group,
            executor=executor,
            random_seed=random_seed,
            timeout=timeout,
            progressbar=progressbar,
        )

    def reloo(
        self,
        k_threshold: float = 0.7,
        executor: Any = None,
        random_seed: int | None = None,
        *,
        timeout: float | None = None,
        progressbar: bool = True,
    ):
        """PSIS-LOO with exact leave-one-out refits for the observations whose Pareto k is
        above ``k_threshold`` (loo's ``reloo``); ``executor`` as in :meth:`kfold`.

        Returns
        -------
        lmmformula.kfold.Reloo
            The corrected ``loo`` (ArviZ ELPD data), ``elpd_loo``, ``se``, ``p_loo`` and the
            rows that were refitted; accepted by :func:`lmmformula.compare`.
        """
        from lmmformula.kfold import reloo

        return reloo(
            self,
            k_threshold=k_threshold,
            executor=executor,
            random_seed=random_seed,
            timeout=timeout,
            progressbar=progressbar,
        )

    # -- persistence -------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the fit (posterior, sampler stats, data and model spec) to one netCDF file."""
        from lmmformula.io import save_fit

        save_fit(self, path)

    def __repr__(self) -> str:
        d = self.diagnostics()
        return (
            f"<lmmformula.Fit {self.model.formula!r} {d.chains}x{d.draws} draws, "
            f"{d.divergences} divergences, sampler {self.sampler}>"
        )

    def __str__(self) -> str:
        return str(self.summary())


#: nutpie settings used by default for models with a correlated (LKJ) block.
LKJ_NUTS_DEFAULTS = {"target_accept": 0.9, "use_grad_based_mass_matrix": False}
GP_TARGET_ACCEPT = 0.99
"""nutpie's target acceptance for models with a ``gp()`` term (brms' reference fit of
``y ~ gp(x)`` needed ``adapt_delta = 0.99``; the spatial ozone model has 58 divergences in
4 x 1000 draws at 0.9, 27 at 0.95 and 2 at 0.99)."""


def sample(
    model: Model,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int | None = None,
    sampler: str = "nutpie",
    random_seed: int | None = None,
    target_accept: float | None = None,
    progressbar: bool = True,
    **kwargs: Any,
) -> Fit:
    """Sample a model's posterior; see :meth:`lmmformula.Model.fit`."""
    for name, value in (("draws", draws), ("chains", chains)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
            raise ModelError(f"{name} must be a positive integer, got {value!r}.")
    if not isinstance(tune, (int, np.integer)) or isinstance(tune, bool) or tune < 0:
        raise ModelError(f"tune must be a non-negative integer, got {tune!r}.")
    if sampler not in SAMPLERS:
        raise ModelError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}.")
    if target_accept is not None and not 0 < float(target_accept) < 1:
        raise ModelError(f"target_accept must be between 0 and 1, got {target_accept!r}.")
    if sampler in ("numpyro", "blackjax"):
        import importlib.util

        if importlib.util.find_spec(sampler) is None:
            raise ModelError(f"sampler={sampler!r} needs the {sampler} package; install it first.")
        from lmmformula._jax import jax_sampler_kwargs

        kwargs = jax_sampler_kwargs(sampler, int(chains), kwargs)

    start = time.perf_counter()
    model.build(fresh=True)  # a compiled graph differs in its last bits: same seed, same draws
    built = time.perf_counter()
    nuts = dict(kwargs.pop("nuts", None) or {})
    if target_accept is not None:
        nuts["target_accept"] = float(target_accept)
    if sampler == "nutpie" and not kwargs and getattr(model, "gp_plans", None):
        nuts.setdefault("target_accept", GP_TARGET_ACCEPT)  # the GP/intercept ridge
    if sampler == "nutpie" and not kwargs and model.blocks:
        # correlated blocks: smaller steps and Stan-style (variance-based) mass-matrix
        # adaptation; measured in benchmarks/RESULTS.md (no divergences, higher ESS)
        for key, value in LKJ_NUTS_DEFAULTS.items():
            nuts.setdefault(key, value)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*BLAS.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        if sampler == "nutpie" and not kwargs:
            # nutpie directly: compile and sample timed apart, compile caches kept warm
            from lmmformula._nutpie import sample_bambi

            idata, sampler_timings = sample_bambi(
                model.bambi,
                draws=int(draws),
                tune=int(tune),
                chains=int(chains),
                cores=cores,
                random_seed=random_seed,
                nuts=nuts or None,
                progressbar=progressbar,
            )
        else:
            idata = model.bambi.fit(
                draws=int(draws),
                tune=int(tune),
                chains=int(chains),
                cores=cores,
                inference_method=sampler,
                random_seed=random_seed,
                nuts=nuts or None,
                progressbar=progressbar,
                **kwargs,
            )
            sampler_timings = {"sample": time.perf_counter() - built}
            from lmmformula._nutpie import _add_observed_data

            _add_observed_data(idata, model.bambi)  # a sufficient-statistics graph has none
    settings = {
        "draws": int(draws),
        "tune": int(tune),
        "chains": int(chains),
        "random_seed": random_seed,
        "target_accept": nuts.get("target_accept", target_accept),
    }
    build_seconds = model.build_seconds if model.build_seconds is not None else built - start
    timings = {"build": build_seconds, **sampler_timings}
    result = Fit(model, idata, sampler=sampler, settings=settings, timings=timings)
    _warn_if_unhealthy(result)
    return result


def _warn_if_unhealthy(result: Fit) -> None:
    d = result.diagnostics()
    problems = d.problems()
    if not problems:
        return
    advice = []
    if d.divergences:
        centered = [f for f, nc in result.model.noncentered.items() if not nc]
        if centered:
            advice.append(
                "use the non-centered form for "
                + ", ".join(map(repr, centered))
                + " (noncentered=True, the default)"
            )
        used = result.settings.get("target_accept")
        used = 0.8 if used is None else float(used)  # nutpie's and PyMC's default
        higher = min(0.999, round(1 - (1 - used) / 2, 3))  # half the distance to 1
        advice.append(
            f"raise target_accept (it was {used:g}; e.g. fit(target_accept={higher:g}))"
            if used < 0.999
            else "reparameterise or give the priors more information (target_accept is 0.999)"
        )
    if d.max_rhat > 1.01 or d.min_ess_bulk < 100 * d.chains or d.min_ess_tail < 100 * d.chains:
        advice.append("run more draws (and tuning steps)")
    warnings.warn(
        "sampling problems: " + "; ".join(problems) + ". To fix: " + "; ".join(advice) + ".",
        SamplingWarning,
        skip_file_prefixes=(str(Path(__file__).parent),),
    )
