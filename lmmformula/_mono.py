"""brms' monotonic effects ``mo(x)`` of an ordered predictor (issue 12, item 6).

brms' parameterisation (Bürkner & Charpentier 2020; brms' ``R/formula-sp.R`` and the Stan
function ``mo``): a predictor ``x`` with categories coded ``0, 1, ..., D`` enters the linear
predictor as

    mo(x) = b * D * sum_{i <= x} zeta_i,    zeta ~ Dirichlet(alpha),

so ``b`` (brms' ``bsp_mox``) is the average difference between adjacent categories and ``b * D``
the difference between the highest and the lowest; ``zeta`` (brms' ``simo_mox1``) is the share
of that total each step takes.

The term is linear in the vector ``c = b * D * zeta``: ``mo(x) = sum_j 1{x >= j} c_j``. In the
design it is a multi-column common term whose columns are the indicators ``1{x >= j}``,
``j = 1..D`` (:class:`Mo`, a formulae stateful transform named ``mo`` in
:func:`lmmformula.formula.bambi_namespace`, which keeps the levels for new data), and the Bambi
seam (``lmmformula._bambi``) builds the coefficient vector of that term as the deterministic
``b * D * zeta`` under the term's own name, instead of Bambi's independent priors. Bambi's
``predict``, the pointwise log-likelihood, the sufficient statistics and ``Model.design()``
then work as for any common term.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from lmmformula.errors import DataError, ModelError

__all__ = [
    "MO_CALL",
    "Mo",
    "MoTerm",
    "check_mo_columns",
    "mo_codes",
    "mo_name",
    "mo_terms",
    "mo_variables",
]

MO_CALL = re.compile(r"\bmo\(\s*`?([A-Za-z_.][A-Za-z0-9_.]*)`?\s*\)")
"""``mo(x)`` with a single column as its argument."""

DEFAULT_SIMO_ALPHA = 1.0
"""brms' default prior on each simplex: ``dirichlet(1)``, uniform on the simplex."""


def mo_name(variable: str) -> str:
    """brms' name of the coefficient of ``mo(variable)``: ``mo`` and the name without
    characters other than letters, digits, ``.`` and ``_`` (``mo(x)`` -> ``mox``)."""
    return "mo" + re.sub(r"[^A-Za-z0-9._]", "", variable)


def mo_variables(formula: str) -> tuple[str, ...]:
    """The columns inside ``mo(...)`` in a (Bambi) formula, in order of appearance."""
    return tuple(dict.fromkeys(MO_CALL.findall(formula)))


def _levels_of(values: Any, name: str) -> tuple[list[Any], np.ndarray]:
    """(the categories in their order, the codes 0..D of the rows) of an ordered predictor;
    a :class:`~lmmformula.errors.DataError` that says why for anything else."""
    import pandas as pd

    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values))
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        if not dtype.ordered:
            raise DataError(
                f"mo({name}) needs an ordered predictor, but {name!r} is an unordered "
                f"categorical, whose order of levels means nothing. Make it ordered: "
                f"data[{name!r}] = pd.Categorical(data[{name!r}], categories=[...], "
                "ordered=True) with the levels from lowest to highest."
            )
        levels = list(dtype.categories)
        if len(levels) < 2:
            raise DataError(f"mo({name}) needs two or more levels; {name!r} has {len(levels)}.")
        return levels, series.cat.codes.to_numpy()
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        held = "booleans" if pd.api.types.is_bool_dtype(dtype) else "text"
        raise DataError(
            f"mo({name}) needs an ordered predictor: an ordered pandas Categorical or whole "
            f"numbers, but {name!r} holds {held} (dtype {dtype}), whose order is not known. "
            "Make it ordered: "
            f"data[{name!r}] = pd.Categorical(data[{name!r}], categories=[...], ordered=True)."
        )
    x = series.to_numpy(dtype=float)
    if not np.all(np.isfinite(x)) or not np.all(x == np.round(x)):
        raise DataError(
            f"mo({name}) needs an ordered predictor (an ordered Categorical or whole numbers), "
            f"but {name!r} has values that are not whole numbers (e.g. "
            f"{x[np.isfinite(x) & (x != np.round(x))][:3].tolist()}). A continuous predictor "
            f"enters as it is: write {name} instead of mo({name})."
        )
    observed = np.unique(x)
    lo, hi = observed[0], observed[-1]
    if len(observed) < 2:
        raise DataError(f"mo({name}) needs two or more distinct values; {name!r} has one.")
    missing = np.setdiff1d(np.arange(lo, hi + 1), observed)
    if missing.size:
        raise DataError(
            f"mo({name}) reads whole numbers as consecutive categories from the smallest "
            f"({lo:g}) to the largest ({hi:g}), but {name!r} has gaps: no rows with "
            f"{', '.join(f'{v:g}' for v in missing[:5])}"
            + (" ..." if missing.size > 5 else "")
            + ". Give it as an ordered pd.Categorical whose categories list every level "
            "(unobserved ones too), or recode it to consecutive numbers."
        )
    levels = [int(v) if float(v).is_integer() else v for v in np.arange(lo, hi + 1)]
    return levels, (x - lo).astype(int)


def mo_codes(values: Any, name: str = "x") -> tuple[list[Any], np.ndarray]:
    """The categories and the 0-based codes of an ordered predictor (see :class:`Mo`).

    Examples
    --------
    >>> import pandas as pd
    >>> mo_codes(pd.Series([2, 3, 5, 4]), "x")[1].tolist()
    [0, 1, 3, 2]
    """
    return _levels_of(values, name)


def indicators(codes: np.ndarray, n_steps: int) -> np.ndarray:
    """The columns ``1{code >= j}``, ``j = 1..n_steps`` (rows x ``n_steps``)."""
    codes = np.asarray(codes)
    return (codes[:, None] >= np.arange(1, n_steps + 1)[None, :]).astype(float)


class Mo:
    """formulae stateful transform ``mo(x)``: the cumulative indicator columns of ``x``.

    On the data the model is built from it learns the categories (an ordered Categorical's
    categories, or every whole number from the smallest to the largest); on new data it
    codes the rows by those categories and refuses a value it has not seen.
    """

    __stateful_transform__ = True

    def __init__(self) -> None:
        self.levels: list[Any] | None = None
        self.categorical = False

    def __call__(self, x: Any) -> np.ndarray:
        import pandas as pd

        series = x if isinstance(x, pd.Series) else pd.Series(np.asarray(x))
        name = str(series.name) if series.name is not None else "x"
        if self.levels is None:
            self.levels, codes = _levels_of(series, name)
            self.categorical = isinstance(series.dtype, pd.CategoricalDtype)
        else:
            codes = self._codes_new(series, name)
        return indicators(codes, len(self.levels) - 1)

    def _codes_new(self, series: Any, name: str) -> np.ndarray:
        import pandas as pd

        assert self.levels is not None
        if isinstance(series.dtype, pd.CategoricalDtype):
            values = series.astype(object).to_numpy()
        else:
            values = series.to_numpy()
        lookup = {self._key(v): i for i, v in enumerate(self.levels)}
        codes = np.empty(len(values), dtype=int)
        for i, v in enumerate(values):
            key = self._key(v)
            if key not in lookup:
                v = v.item() if isinstance(v, np.generic) else v
                raise DataError(
                    f"mo({name}): the value {v!r} was not a level of {name!r} in the fit "
                    f"(levels: {', '.join(map(repr, self.levels))})."
                )
            codes[i] = lookup[key]
        return codes

    @staticmethod
    def _key(value: Any) -> Any:
        try:
            f = float(value)
        except (TypeError, ValueError):
            return str(value)
        return f if np.isfinite(f) else str(value)


@dataclass(frozen=True)
class MoTerm:
    """A ``mo(x)`` common term of a built Bambi model.

    Attributes
    ----------
    term : str
        Bambi's term name, ``mo(x)``.
    variable : str
        The column, ``x``.
    n_steps : int
        D, the number of categories minus one (the simplex's length).
    """

    term: str
    variable: str
    n_steps: int

    @property
    def bsp(self) -> str:
        """brms' name of the coefficient: ``bsp_mox``."""
        return f"bsp_{mo_name(self.variable)}"

    @property
    def simo(self) -> str:
        """brms' name of the simplex: ``simo_mox1``."""
        return f"simo_{mo_name(self.variable)}1"

    @property
    def coef(self) -> str:
        """The coefficient's name in brms' prior specifications: ``mox``."""
        return mo_name(self.variable)


def mo_term_of(name: str, term: Any) -> MoTerm | None:
    """The :class:`MoTerm` of a Bambi common term named ``name``, or None if it is not one."""
    match = MO_CALL.fullmatch(name)
    if match is None:
        if MO_CALL.search(name):
            raise ModelError(
                f"the term {name!r} combines mo() with other variables; only mo(x) on its own "
                "is supported in the population-level part (a main effect)."
            )
        return None
    data = np.asarray(term.data)
    n_steps = 1 if data.ndim == 1 else data.shape[1]
    return MoTerm(name, match.group(1), n_steps)


def mo_terms(component: Any) -> dict[str, MoTerm]:
    """The ``mo()`` terms among a Bambi component's common terms, by term name."""
    out = {}
    for name, term in component.common_terms.items():
        info = mo_term_of(name, term)
        if info is not None:
            out[name] = info
    return out


def check_mo_columns(frame: Any, formula: str) -> None:
    """Refuse, before Bambi sees the data, a ``mo()`` call on anything but one column
    (a ModelError) and a ``mo()`` column that is not an ordered predictor (a
    :class:`~lmmformula.errors.DataError` naming the column and the fix)."""
    for match in re.finditer(r"\bmo\(", formula):
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(formula)):
            depth += {"(": 1, ")": -1}.get(formula[end], 0)
            if depth == 0:
                break
        call = formula[match.start() : end + 1]
        if not MO_CALL.fullmatch(call):
            raise ModelError(
                f"{call}: mo() takes one column of the data, as in mo(x) (brms' id= and "
                "other arguments are not supported; transform the column first)."
            )
    for name in mo_variables(formula):
        if name in frame.columns:
            _levels_of(frame[name], name)


def build_mo_coefficients(info: MoTerm, prior: Any, distribution: Any, alpha: Any, dims: list[str]):
    """The PyMC graph of a ``mo()`` term: ``bsp`` (the term's prior, whose PyMC distribution
    is ``distribution``), ``simo`` (Dirichlet) and the deterministic coefficient vector
    ``bsp * D * simo`` under the term's name.

    Called inside the PyMC model by the Bambi seam."""
    import pymc as pm

    model = pm.modelcontext(None)
    simo_dim = f"{info.simo}_dim"
    if simo_dim not in model.coords:
        model.add_coords({simo_dim: np.arange(1, info.n_steps + 1)})
    kwargs = {k: v for k, v in prior.args.items() if k != "auto_scale"}
    for key, value in kwargs.items():
        arr = np.asarray(value) if not hasattr(value, "name") else None
        if arr is not None and arr.ndim > 0:
            if arr.size != 1:
                raise ModelError(
                    f"the prior of {info.term} is on its one coefficient {info.bsp} (the average "
                    f"difference between adjacent categories); {key} must be one number, got "
                    f"{arr.tolist()}."
                )
            kwargs[key] = float(arr.ravel()[0])
    bsp = distribution(info.bsp, **kwargs)
    a = np.broadcast_to(np.asarray(alpha, dtype=float), (info.n_steps,)).copy()
    simo = pm.Dirichlet(info.simo, a=a, dims=simo_dim)
    return pm.Deterministic(info.term, bsp * info.n_steps * simo, dims=dims)


def mo_draws(info: MoTerm, posterior: Any) -> dict[str, np.ndarray]:
    """The ``(chain, draw)`` draws of a ``mo()`` term under brms' names: ``bsp_mox`` and
    ``simo_mox1[1]``, ..., ``simo_mox1[D]``."""
    out = {info.bsp: posterior[info.bsp].values}
    simo = posterior[info.simo].transpose("chain", "draw", ...).values
    for k in range(simo.shape[-1]):
        out[f"{info.simo}[{k + 1}]"] = simo[:, :, k]
    return out


# -- group-level mo(x): (1 + mo(x) | g) ---------------------------------------------------------
# brms: mu += (bsp + r_g) * mo(x), the varying slope r_g multiplying the population's monotonic
# transform (the same simplex). Bambi's group-level term keeps its D indicator columns (so its
# predict and log-likelihood work), with the (levels, D) coefficients r_g * D * simo; the results
# layer reads the one varying slope r_g, stored as ``mox|g`` (brms' ``r_g[, mox]``).
def group_term_of(name: str) -> str | None:
    """The population-level term (``mo(x)``) of a group-level term named ``mo(x)|g``, or None;
    refuses mo() combined with other variables inside a bar."""
    expr, _, _factor = name.partition("|")
    if MO_CALL.fullmatch(expr):
        return expr
    if MO_CALL.search(expr):
        raise ModelError(
            f"the group-level term {name!r} combines mo() with other variables; only mo(x) on "
            "its own is supported inside a bar, as in (1 + mo(x) | g)."
        )
    return None


def group_label(name: str) -> str | None:
    """The results layer's name of a group-level ``mo(x)|g`` term: ``mox|g`` (else None)."""
    expr = group_term_of(name)
    if expr is None:
        return None
    match = MO_CALL.fullmatch(expr)
    assert match is not None
    return f"{mo_name(match.group(1))}|{name.partition('|')[2]}"


def population_term(name: str, population: dict[str, MoTerm]) -> MoTerm:
    """The population-level ``mo()`` term a group-level one multiplies (a ModelError when the
    formula has none, as brms requires)."""
    expr = group_term_of(name)
    assert expr is not None
    if expr not in population:
        raise ModelError(
            f"the group-level term {name!r} varies the population-level {expr}, which the "
            f"formula lacks: add {expr} to the population-level part, as in "
            f"y ~ {expr} + (1 + {expr} | g) (brms' group-level mo() multiplies the population "
            "term's simplex)."
        )
    return population[expr]


def scalar_prior(prior: Any, what: str) -> Any:
    """``prior`` with array arguments reduced to one number (all equal), for a one-number
    parameter; a ModelError otherwise."""
    import copy

    out = copy.copy(prior)
    out.args = dict(prior.args)
    for key, value in prior.args.items():
        if hasattr(value, "args") or np.ndim(value) == 0:
            continue
        arr = np.asarray(value, dtype=float).ravel()
        if not np.all(arr == arr[0]):
            raise ModelError(
                f"{what} is one number, so its prior's {key} must be one number, got "
                f"{arr.tolist()}."
            )
        out.args[key] = float(arr[0])
    return out


def build_group_mo(
    info: MoTerm,
    name: str,
    r: Any,
    term_dims: list[str],
    factor_dim: str,
    sigma: Any = None,
    r_is_variable: bool = False,
):
    """The deterministics of a group-level ``mo(x)|g`` term from its varying slopes ``r``
    (one per level): ``mox|g`` (unless ``r`` is that variable already), its sd
    ``mox|g_sigma`` (when ``sigma`` is given) and the term's (levels, D) coefficients
    ``r * D * simo`` under the term's name. Called inside the PyMC model by the seam."""
    import pymc as pm

    model = pm.modelcontext(None)
    label = group_label(name)
    assert label is not None
    if not r_is_variable:
        pm.Deterministic(label, r, dims=factor_dim)
    if sigma is not None:
        pm.Deterministic(f"{label}_sigma", sigma)
    simo = model[info.simo]
    return pm.Deterministic(name, r[:, None] * info.n_steps * simo[None, :], dims=term_dims)


def build_uncorrelated_group_mo(
    info: MoTerm, name: str, term: Any, term_dims: list[str], noncentered: bool
):
    """A group-level ``mo(x)|g`` outside a correlated block: ``r ~ Normal(0, sd)``, the sd with
    the term's prior on sigma, non-centred (``r = sd * z``) or centred."""
    import pymc as pm

    label = group_label(name)
    assert label is not None
    factor_dim = next(d for d in term_dims if d.endswith("__factor_dim"))
    sigma_prior = scalar_prior(term.prior.args["sigma"], f"the sd of {label}")
    dist = sigma_prior.dist or getattr(pm, sigma_prior.name)
    sigma = dist(f"{label}_sigma", **sigma_prior.args)
    if noncentered:
        z = pm.Normal(f"{label}_offset", mu=0.0, sigma=1.0, dims=factor_dim)
        return build_group_mo(info, name, z * sigma, term_dims, factor_dim)
    r = pm.Normal(label, mu=0.0, sigma=sigma, dims=factor_dim)
    return build_group_mo(info, name, r, term_dims, factor_dim, r_is_variable=True)


def check_terms(bambi_model: Any) -> None:
    """Refuse, when the model is created, the mo() terms the seam cannot build: mo() combined
    with other variables, a group-level mo(x) without the population-level one, and mo() in
    the formula of a distributional parameter (``bf(..., sigma ~ mo(x))``)."""
    parent = bambi_model.family.likelihood.parent
    for name, other in bambi_model.parameters.items():
        terms = {**getattr(other, "common_terms", {}), **getattr(other, "group_specific_terms", {})}
        if name != parent and any(MO_CALL.search(key) for key in terms):
            raise ModelError(
                f"mo() in the formula of the distributional parameter {name!r} is not supported "
                "yet; use it in the formula of the mean."
            )
    component = bambi_model.parameters[parent]
    population = mo_terms(component)
    for name, term in component.group_specific_terms.items():
        if group_label(term.alias or name) is not None:
            population_term(term.alias or name, population)


def is_mo_slot(term: str) -> bool:
    """Whether a Bambi term name is a population-level ``mo(x)`` or a group-level
    ``mo(x)|g`` (whose priors are lmmformula's even with Bambi's defaults)."""
    return bool(MO_CALL.fullmatch(term)) or group_label(term) is not None
