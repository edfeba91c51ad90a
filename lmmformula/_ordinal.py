"""Ordinal responses: brms' ``family = cumulative`` on Bambi's cumulative family (issue 12,
item 7).

Bambi's cumulative model and brms' are the same model with the same signs:

    P(y <= k) = F(theta_k - eta),    k = 1..K-1,

``F`` the inverse link (logistic or normal), ``theta_1 < ... < theta_{K-1}`` the thresholds
and ``eta`` the linear predictor *without* an intercept (the thresholds take its place; brms
has no separate intercept either). A positive coefficient moves the response to higher
categories. Bambi calls the thresholds ``threshold``; lmmformula reports them under brms'
names ``Intercept[1]``, ..., ``Intercept[K-1]`` and a brms prior of class ``Intercept`` puts
its distribution on each of them (restricted to ordered vectors, as brms' ``ordered``).

This module holds what the rest of the package asks about ordinal models: which families
are ordinal, the response check (an ordered categorical, or whole-number codes), the
thresholds' draws under brms' names, and their prior as an ordered vector.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmmformula.errors import DataError

__all__ = [
    "ORDINAL_FAMILIES",
    "THRESHOLD",
    "as_ordinal_response",
    "is_ordinal",
    "ordered_prior",
    "threshold_draws",
]

ORDINAL_FAMILIES = frozenset({"cumulative", "sratio"})
"""Bambi's ordinal families: a threshold vector instead of an intercept."""

THRESHOLD = "threshold"
"""Bambi's name of the thresholds."""


def is_ordinal(family: Any) -> bool:
    """Whether ``family`` (a name or a Bambi family) is one of Bambi's ordinal families."""
    name = family if isinstance(family, str) else getattr(family, "name", None)
    return name in ORDINAL_FAMILIES


def as_ordinal_response(frame: Any, column: str, family: str) -> Any:
    """The frame with an ordinal family's response as an ordered categorical.

    An ordered pandas Categorical is kept; whole numbers are brms' integer codes, read as the
    categories ``min(y), min(y) + 1, ..., max(y)`` (every whole number in between is a
    category, observed or not, as brms reads ``1..max(y)``). Anything else is refused with a
    :class:`~lmmformula.errors.DataError`: text and unordered categoricals (their order of
    levels is not known), numbers that are not whole.

    Parameters
    ----------
    frame : pandas.DataFrame
        The model's copy of the data (changed in place and returned).
    column : str
        The response column.
    family : str
        The family's name, for the messages.
    """
    import pandas as pd

    series = frame[column]
    what = f"family={family!r}"
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        if dtype.ordered:
            return frame
        raise DataError(
            f"{what} needs an ordered response, but {column!r} is an unordered categorical. "
            f"Make it ordered, with the levels from lowest to highest: data[{column!r}] = "
            f"pd.Categorical(data[{column!r}], categories=[...], ordered=True)."
        )
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        raise DataError(
            f"{what} needs an ordered response (an ordered pandas Categorical, or whole-number "
            f"codes), but {column!r} holds text (dtype {dtype}), whose order is not known. "
            f"Make it ordered: data[{column!r}] = pd.Categorical(data[{column!r}], "
            "categories=[...], ordered=True), the levels from lowest to highest."
        )
    y = series.to_numpy(dtype=float)
    bad = ~np.isfinite(y) | (y != np.round(y))
    if bad.any():
        raise DataError(
            f"{what} needs an ordered response: an ordered pandas Categorical or whole-number "
            f"codes, but {column!r} has values that are not whole numbers (e.g. "
            f"{y[bad][:3].tolist()}). Make it one: data[{column!r}] = "
            f"pd.Categorical(data[{column!r}], ordered=True) (the levels in their order)."
        )
    lo, hi = int(y.min()), int(y.max())
    if hi == lo:
        raise DataError(f"{what} needs a response with two or more levels; {column!r} has one.")
    categories = list(range(lo, hi + 1))
    frame[column] = pd.Categorical(y.astype(int), categories=categories, ordered=True)
    return frame


def n_thresholds(bambi_model: Any) -> int:
    """K - 1 for a response with K categories."""
    return len(bambi_model.response_term.levels) - 1


def ordered_prior(prior: Any, n: int) -> Any:
    """A Bambi prior on each threshold, as an ordered vector of ``n`` (brms' ``ordered``).

    The density is the prior's on each threshold, restricted to increasing vectors (PyMC's
    ordered transform with its Jacobian: the same target as Stan's ``ordered`` parameter). The
    initial values are spread over (-2, 2) so the sampler starts on an ordered vector."""
    from lmmformula._bambi import Prior

    if not isinstance(prior, Prior) or "transform" in prior.args:
        return prior
    import pymc as pm

    args = dict(prior.args)
    args.pop("auto_scale", None)
    init = np.linspace(-2.0, 2.0, n) if n > 1 else np.zeros(1)
    return Prior(
        prior.name,
        dist=prior.dist,
        auto_scale=False,
        transform=pm.distributions.transforms.ordered,
        initval=init,
        **args,
    )


def threshold_draws(bambi_model: Any, posterior: Any) -> dict[str, np.ndarray]:
    """The thresholds' ``(chain, draw)`` draws under brms' names ``Intercept[1]``, ...
    (empty for other families)."""
    if not is_ordinal(bambi_model.family):
        return {}
    component = bambi_model.parameters.get(THRESHOLD)
    name = getattr(component, "alias", None) or THRESHOLD
    if name not in posterior:
        return {}
    da = posterior[name]
    extra = [d for d in da.dims if d not in ("chain", "draw")]
    values = da.transpose("chain", "draw", *extra).values
    return {f"Intercept[{k + 1}]": values[:, :, k] for k in range(values.shape[-1])}
