"""lmmformula: lme4/brms-style mixed-model formulas as Bayesian multilevel models.

Write the formula the way R users write it for lme4 and brms and get a Bambi model whose
group-level blocks mean what they mean in R: ``(x|g)`` gives correlated intercepts and slopes
with an LKJ prior, non-centered by default.
"""

import sys
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lmmformula import errors
from lmmformula.datasets import describe_dataset, list_datasets, load_dataset
from lmmformula.formula import Translation, bf, translate

if TYPE_CHECKING:  # pragma: no cover
    from lmmformula._frame import MissingDataWarning
    from lmmformula.api import fit, get_prior, load_fit
    from lmmformula.checks import PriorCheck, prior_check
    from lmmformula.compare import compare, plot_compare
    from lmmformula.fit import Fit, SamplingWarning
    from lmmformula.model import Model, model
    from lmmformula.plots import plot_correlation, plot_ranef, plot_shrinkage, pp_check
    from lmmformula.priors import PriorSpec, prior

# The formula layer (translate) needs neither Bambi nor PyMC; everything that builds or reads a
# model is imported on first use, so `lf.translate` works wherever formulae does.
_LAZY = {
    "MissingDataWarning": "lmmformula._frame",
    "PriorCheck": "lmmformula.checks",
    "prior_check": "lmmformula.checks",
    "compare": "lmmformula.compare",
    "plot_compare": "lmmformula.compare",
    "Fit": "lmmformula.fit",
    "SamplingWarning": "lmmformula.fit",
    "fit": "lmmformula.api",
    "load_fit": "lmmformula.api",
    "Model": "lmmformula.model",
    "model": "lmmformula.model",
    "plot_correlation": "lmmformula.plots",
    "plot_ranef": "lmmformula.plots",
    "plot_shrinkage": "lmmformula.plots",
    "pp_check": "lmmformula.plots",
    "PriorSpec": "lmmformula.priors",
    "get_prior": "lmmformula.api",
    "prior": "lmmformula.priors",
}


class _Package(ModuleType):
    """The package module: importing the submodules ``model``, ``fit`` and ``compare`` must not
    replace the functions of the same names (Python's import sets the submodule as an
    attribute of the package)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lmmformula' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0.dev0"

__all__ = [
    "Fit",
    "MissingDataWarning",
    "Model",
    "PriorCheck",
    "PriorSpec",
    "SamplingWarning",
    "Translation",
    "__version__",
    "bf",
    "compare",
    "describe_dataset",
    "errors",
    "fit",
    "get_prior",
    "list_datasets",
    "load_dataset",
    "load_fit",
    "model",
    "plot_compare",
    "plot_correlation",
    "plot_ranef",
    "plot_shrinkage",
    "pp_check",
    "prior",
    "prior_check",
    "translate",
]
