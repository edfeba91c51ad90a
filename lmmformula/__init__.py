"""lmmformula: lme4/brms-style mixed-model formulas as Bayesian multilevel models.

Write the formula the way R users write it for lme4 and brms and get a Bambi model whose
group-level blocks mean what they mean in R: ``(x|g)`` gives correlated intercepts and slopes
with an LKJ prior, non-centered by default.
"""

from lmmformula import errors
from lmmformula._frame import MissingDataWarning
from lmmformula.checks import PriorCheck, prior_check
from lmmformula.compare import compare, plot_compare
from lmmformula.datasets import describe_dataset, list_datasets, load_dataset
from lmmformula.fit import Fit, SamplingWarning, fit
from lmmformula.formula import Translation, translate
from lmmformula.io import load_fit
from lmmformula.model import Model, model
from lmmformula.plots import plot_correlation, plot_ranef, plot_shrinkage, pp_check
from lmmformula.priors import PriorSpec, get_prior, prior

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
