"""Response families grouped by what they mean, in Bambi 0.21's names; one table for the package.

Two questions are asked of a family, and each has its own groups:

* **What may the response be?** (the data checks of ``_frame``): any real number, counts,
  successes out of trials, positive or non-negative numbers, numbers in (0, 1), levels of a
  factor, vectors of counts. :data:`REAL_RESPONSE`, :data:`COUNT_RESPONSE`,
  :data:`BINOMIAL_RESPONSE`, :data:`POSITIVE_RESPONSE`, :data:`NONNEGATIVE_RESPONSE`,
  :data:`UNIT_RESPONSE`, :data:`LEVEL_RESPONSE`, :data:`VECTOR_RESPONSE`; every Bambi family
  is in exactly one.
* **What is the mean parameter?** (the prior predictive check): a positive mean,
  the location of ``log(y)``, or not one number a row. :data:`POSITIVE_MEAN`,
  :data:`LOG_LOCATION`, :data:`NOT_ONE_NUMBER`.

Plus the families with a residual scale (:data:`RESIDUAL_SCALE`) and the names R and brms
users type (:data:`R_FAMILY_NAMES`, :data:`FAMILY_ALIASES`; brms' names of parameters that
Bambi names otherwise, :data:`BRMS_PARAMETER_NAMES`, :data:`BRMS_COMPLEMENT_NAMES`). A new
family goes into one response group and every other group that describes it;
``tests/test_families.py`` checks that each name is one of Bambi's and that every Bambi family
has its response group.
"""

from __future__ import annotations

__all__ = [
    "BINOMIAL_RESPONSE",
    "BRMS_COMPLEMENT_NAMES",
    "BRMS_PARAMETER_NAMES",
    "CATEGORY_RESPONSE",
    "COUNT_RESPONSE",
    "FAMILY_ALIASES",
    "LEVEL_RESPONSE",
    "LOG_LOCATION",
    "NONNEGATIVE_RESPONSE",
    "NOT_ONE_NUMBER",
    "POSITIVE_MEAN",
    "POSITIVE_RESPONSE",
    "REAL_RESPONSE",
    "RESIDUAL_SCALE",
    "R_FAMILY_NAMES",
    "UNIT_RESPONSE",
    "VECTOR_RESPONSE",
]

# -- what the response must be (every Bambi family is in exactly one of these) ---------------
REAL_RESPONSE = frozenset(
    {"gaussian", "t", "laplace", "asymmetriclaplace", "exgaussian", "vonmises"}
)
"""Any real number (an angle for vonmises); nothing to check in the values."""

COUNT_RESPONSE = frozenset(
    {
        "poisson",
        "negativebinomial",
        "zero_inflated_poisson",
        "zero_inflated_negativebinomial",
        "hurdle_poisson",
        "hurdle_negativebinomial",
    }
)
"""Non-negative whole numbers."""

BINOMIAL_RESPONSE = frozenset({"binomial", "beta_binomial", "zero_inflated_binomial"})
"""Successes out of trials (``cbind(s, f)``, ``s | trials(n)``, ``p(s, n)``)."""

POSITIVE_RESPONSE = frozenset({"gamma", "lognormal", "wald", "weibull", "exponential"})
"""Numbers above zero."""

NONNEGATIVE_RESPONSE = frozenset({"hurdle_gamma", "hurdle_lognormal"})
"""Numbers above zero, or zero (the hurdle)."""

UNIT_RESPONSE = frozenset({"beta"})
"""Numbers strictly between 0 and 1."""

CATEGORY_RESPONSE = frozenset({"categorical", "cumulative", "sratio"})
"""One level of a factor with several levels (ordered for cumulative and sratio)."""

LEVEL_RESPONSE = frozenset({"bernoulli"}) | CATEGORY_RESPONSE
"""Levels of a factor: two for bernoulli (0/1, or a two-level factor), several otherwise."""

VECTOR_RESPONSE = frozenset({"multinomial", "dirichlet_multinomial"})
"""A vector of counts a row."""

RESIDUAL_SCALE = frozenset(
    {"gaussian", "t", "laplace", "asymmetriclaplace", "exgaussian", "lognormal"}
)
"""Families with a residual scale: an observation-level effect cannot be told apart from it,
and a response without variance leaves it undefined (lme4's lmer rules)."""

# -- what the mean parameter is ---------------------------------------------------------------
LOG_LOCATION = frozenset({"lognormal", "hurdle_lognormal"})
"""The mean parameter is the location of ``log(y)``, not a mean of ``y``."""

POSITIVE_MEAN = (COUNT_RESPONSE | POSITIVE_RESPONSE | NONNEGATIVE_RESPONSE) - LOG_LOCATION
"""The mean parameter is the (positive) mean of the response, whatever the link."""

NOT_ONE_NUMBER = CATEGORY_RESPONSE | VECTOR_RESPONSE
"""The outcome of a row is a level or a vector, not one number."""

# -- names people type --------------------------------------------------------------------------
R_FAMILY_NAMES = {
    "negbinomial": "negativebinomial",  # brms
    "student": "t",  # brms
    "Gamma": "gamma",  # R's glm family (inverse link by default, as Bambi's)
    "inverse.gaussian": "wald",  # R's glm family
    "von_mises": "vonmises",  # brms
    "zero_inflated_negbinomial": "zero_inflated_negativebinomial",  # brms
    "hurdle_negbinomial": "hurdle_negativebinomial",  # brms
}
"""R's and brms' names of families that are exactly one of Bambi's (same distribution, same
parameters), accepted as they are; the R spelling is kept for display
(``Model.family_spelled``)."""

FAMILY_ALIASES = {
    "normal": "gaussian",
    "student": "t",
    "student_t": "t",
    "studentt": "t",
    "negbinomial": "negativebinomial",
    "negative_binomial": "negativebinomial",
    "negative.binomial": "negativebinomial",
    "nbinom": "negativebinomial",
    "zero_inflated_negbinomial": "zero_inflated_negativebinomial",
    "hurdle_negbinomial": "hurdle_negativebinomial",
    "inverse.gaussian": "wald",
    "inverse_gaussian": "wald",
    "von_mises": "vonmises",
    "logistic": "bernoulli",
    "binary": "bernoulli",
    "quasipoisson": "negativebinomial",
    "quasibinomial": "beta_binomial",
    "ordinal": "cumulative",
}
"""Names people type (lower-cased, ``-`` and spaces as ``_``) and the Bambi family an unknown
name is pointed to in the error message ("Did you mean ...?"); not accepted silently."""

# brms' names of a family's parameters that Bambi names otherwise. The same parameter, with the
# same parameterisation: negative binomial, gamma, Weibull shape (Bambi: alpha; inverse
# Gaussian: lam) and beta, beta-binomial phi (kappa). The complement: brms' zero-inflation and
# hurdle probabilities zi and hu are 1 - Bambi's psi.
BRMS_PARAMETER_NAMES = {"shape": ("alpha", "lam"), "phi": ("kappa",)}
BRMS_COMPLEMENT_NAMES = {"zi": ("psi",), "hu": ("psi",)}
