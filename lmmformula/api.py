"""The cross-layer calls: build, fit, read back, and list priors in one step.

Each function here strings the layers together (formula -> model -> fit); the layers themselves
never import this module, so the package's imports have no cycles: ``model`` builds, ``fit``
holds results, ``io`` reads and writes files, ``kfold`` refits through the model's own class.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import pandas as pd

from lmmformula import _bambi
from lmmformula.fit import Fit
from lmmformula.io import read_fit
from lmmformula.model import Model, model
from lmmformula.priors import prior_summary

__all__ = ["fit", "get_prior", "load_fit", "model"]


def _model_keywords() -> set[str]:
    """Keywords that build the model (lmmformula's and bambi.Model's); the rest sample it."""
    ours = {
        name
        for name, p in inspect.signature(model).parameters.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    return (ours | _bambi.model_keywords()) - {"self", "formula", "data", "family", "priors"}


def fit(formula, data, family=None, priors=None, **kwargs: Any) -> Fit:
    """Build and fit a model in one call: ``lf.fit("y ~ x + (x|g)", data)``.

    Keyword arguments of :func:`lmmformula.model` (``lkj_eta``, ``noncentered``, ``link``,
    ``weights``, ``na_action``, ``suffstats``, ...) and of ``bambi.Model`` build the model; the
    rest (``draws``, ``tune``, ``chains``, ``sampler``, ``random_seed``, ``nuts``, ...) go to
    :meth:`Model.fit`.

    Examples
    --------
    >>> import lmmformula as lf
    >>> fit = lf.fit("Reaction ~ Days + (Days|Subject)", lf.load_dataset("sleepstudy"),
    ...              draws=200, tune=200, chains=2, random_seed=1, progressbar=False)
    ... # doctest: +SKIP
    """
    keys = _model_keywords()
    model_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in keys}
    return model(formula, data, family, priors, **model_kwargs).fit(**kwargs)


def get_prior(formula: str, data: Any, family: Any = None, **model_kwargs: Any) -> pd.DataFrame:
    """The priors a model would use, before fitting (brms' ``get_prior``/``default_prior``).

    Parameters
    ----------
    formula : str
        An lme4/brms formula.
    data : pandas.DataFrame
        The data.
    family : str or bambi.Family, optional
        The response family.
    **model_kwargs
        Passed to :func:`lmmformula.model`; ``priors="brms"`` shows brms' defaults, a list of
        :func:`lmmformula.prior` specifications shows them merged with the defaults.

    Returns
    -------
    pandas.DataFrame
        As :func:`lmmformula.priors.prior_summary`.

    Examples
    --------
    >>> import lmmformula as lf
    >>> table = lf.get_prior("log_ozone ~ TEMP + (TEMP|station)",
    ...                      lf.load_dataset("beijing_ozone"))
    >>> list(table["class"].unique())
    ['Intercept', 'b', 'sd', 'cor', 'sigma']
    """
    return prior_summary(Model(formula, data, family, **model_kwargs))


def load_fit(path: str | os.PathLike) -> Fit:
    """Read a fit written by :meth:`Fit.save`; the model is rebuilt around the stored draws.

    Raises
    ------
    lmmformula.errors.FitError
        When the file is missing, truncated, not an lmmformula fit, or its model cannot be
        rebuilt.
    """
    from lmmformula.errors import FitError, LmmFormulaError

    stored = read_fit(path)
    try:
        m = Model.from_spec(stored.spec, stored.data, stored.priors)
    except (KeyError, TypeError, ValueError, LmmFormulaError) as exc:
        raise FitError(
            f"{str(path)!r} holds an lmmformula fit whose model cannot be rebuilt "
            f"({type(exc).__name__}: {exc})."
        ) from exc
    return Fit(
        m,
        stored.idata,
        sampler=stored.sampler,
        settings=stored.settings,
        timings=stored.timings,
    )
