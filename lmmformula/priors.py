"""Priors written the way brms users write them, and the table of priors in force.

A prior is a distribution in Stan's spelling plus the parameters it applies to, as in brms'
``set_prior``::

    lf.prior("normal(0, 0.1)", cls="b", coef="TEMP")
    lf.prior("halfcauchy(1)", cls="sd", group="station")
    lf.prior("lkj(2)", cls="cor")

A list of them is the ``priors=`` argument of :func:`lmmformula.model` and
:func:`lmmformula.fit`. Parameters no prior names get lmmformula's defaults
(:func:`lmmformula_default_priors`: weakly informative on the outcome's scale, measured against
the prior check and lme4 in ``docs/priors.md``); ``priors="brms"`` reproduces brms' own default
priors and ``priors="bambi"`` keeps Bambi's. A more specific
prior overrides a more general one (brms' rule), every prior must name something the model has,
and :func:`prior_summary` / :func:`get_prior` show every prior in force, read back from the Bambi
model, in Stan's spelling.

Classes
-------
``b``          population-level coefficients: all of them, or one term with ``coef``
``Intercept``  the intercept (of the centred design when Bambi centres predictors, as in brms)
``sd``         group-level standard deviations: all, per ``group``, or per ``group`` and ``coef``
``cor``        the LKJ prior of a correlated block: all blocks, or one ``group``; ``lkj(eta)`` only
``sigma`` ...  any auxiliary parameter of the family (``sigma``, ``nu``, ``alpha``, ``kappa``,
               ...); brms' ``shape`` and ``phi`` are accepted for Bambi's ``alpha``/``lam`` and
               ``kappa``

``sd``, ``sigma`` and the other positive parameters take a ``normal``, ``student_t`` or
``cauchy`` prior as its half distribution, as brms does (it truncates them at 0): this needs a
location of 0.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pymc as pm

from lmmformula import _bambi, _mono, _ordinal
from lmmformula._families import BRMS_PARAMETER_NAMES
from lmmformula._text import coef_label, format_number, point_at
from lmmformula.errors import PriorError

if TYPE_CHECKING:
    from lmmformula.model import Model

__all__ = [
    "DefaultRule",
    "PriorSpec",
    "ResolvedPriors",
    "apply_priors",
    "lmmformula_default_priors",
    "prior",
    "prior_summary",
    "resolve_priors",
]

SUMMARY_COLUMNS = ["prior", "class", "coef", "group", "dpar", "source", "basis"]
BAMBI_BASIS = "Bambi's default"
"""``basis`` of a prior that lmmformula leaves to Bambi (e.g. a negative binomial's alpha)."""
AUTO_SCALED = "(auto-scaled)"
"""Text of a class-level row whose coefficients each carry their own auto-scaled Bambi prior."""

BRMS = "brms"
BAMBI = "bambi"
LMMFORMULA = "lmmformula"
_BASES = (BRMS, BAMBI)
_CLASS_LEVELS = ("b", "Intercept", "sd", "cor")


# -- distributions: Stan spelling <-> PyMC ---------------------------------------------------
@dataclass(frozen=True)
class _StanDist:
    """A distribution in Stan's spelling and how it maps onto PyMC."""

    stan: str
    pymc: str | None  # None for lkj, which is not a Bambi prior
    stan_args: tuple[str, ...]
    pymc_args: tuple[str, ...]
    support: str  # "real", "positive", "unit", "interval", "cor"
    positive_args: tuple[int, ...] = ()
    half: str | None = None  # the half form, for real distributions symmetric about a location
    location_arg: int | None = None  # index of the location argument that must be 0 for `half`


_DISTRIBUTIONS: dict[str, _StanDist] = {
    d.stan: d
    for d in (
        _StanDist(
            "normal", "Normal", ("mu", "sigma"), ("mu", "sigma"), "real", (1,), "halfnormal", 0
        ),
        _StanDist(
            "student_t",
            "StudentT",
            ("nu", "mu", "sigma"),
            ("nu", "mu", "sigma"),
            "real",
            (0, 2),
            "halfstudent_t",
            1,
        ),
        _StanDist(
            "cauchy",
            "Cauchy",
            ("location", "scale"),
            ("alpha", "beta"),
            "real",
            (1,),
            "halfcauchy",
            0,
        ),
        _StanDist("double_exponential", "Laplace", ("mu", "sigma"), ("mu", "b"), "real", (1,)),
        _StanDist("logistic", "Logistic", ("mu", "sigma"), ("mu", "s"), "real", (1,)),
        _StanDist("flat", "Flat", (), (), "real", (), "halfflat", None),
        _StanDist("halfnormal", "HalfNormal", ("sigma",), ("sigma",), "positive", (0,)),
        _StanDist("halfcauchy", "HalfCauchy", ("scale",), ("beta",), "positive", (0,)),
        _StanDist(
            "halfstudent_t", "HalfStudentT", ("nu", "sigma"), ("nu", "sigma"), "positive", (0, 1)
        ),
        _StanDist("halfflat", "HalfFlat", (), (), "positive"),
        _StanDist("exponential", "Exponential", ("rate",), ("lam",), "positive", (0,)),
        _StanDist("gamma", "Gamma", ("shape", "rate"), ("alpha", "beta"), "positive", (0, 1)),
        _StanDist(
            "inv_gamma", "InverseGamma", ("shape", "scale"), ("alpha", "beta"), "positive", (0, 1)
        ),
        _StanDist("lognormal", "LogNormal", ("mu", "sigma"), ("mu", "sigma"), "positive", (1,)),
        _StanDist("weibull", "Weibull", ("shape", "scale"), ("alpha", "beta"), "positive", (0, 1)),
        _StanDist("chi_square", "ChiSquared", ("nu",), ("nu",), "positive", (0,)),
        _StanDist("beta", "Beta", ("a", "b"), ("alpha", "beta"), "unit", (0, 1)),
        _StanDist("uniform", "Uniform", ("lower", "upper"), ("lower", "upper"), "interval"),
        _StanDist("lkj", None, ("eta",), ("eta",), "cor", (0,)),
        # mo() simplexes (class simo): one concentration for every element, brms' dirichlet(1)
        _StanDist("dirichlet", "Dirichlet", ("alpha",), ("a",), "simplex", (0,)),
    )
}
_ALIASES = {
    "lkj_corr": "lkj",
    "lkj_corr_cholesky": "lkj",
    "half_normal": "halfnormal",
    "half_cauchy": "halfcauchy",
    "half_student_t": "halfstudent_t",
    "halfstudent": "halfstudent_t",
    "student": "student_t",
    "laplace": "double_exponential",
}
_BY_PYMC = {d.pymc: d for d in _DISTRIBUTIONS.values() if d.pymc}
_POSITIVE_PYMC = {d.pymc for d in _DISTRIBUTIONS.values() if d.support == "positive"}

# brms' names for auxiliary parameters that Bambi names differently (same parameterisation)

_NAME = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_TRUNCATION = re.compile(r"\s*T\[\s*(?P<lo>[^,\]]*?)\s*,\s*(?P<hi>[^,\]]*?)\s*\]\s*")


@dataclass(frozen=True)
class _Parsed:
    """A parsed prior string: a known distribution and its numeric arguments."""

    dist: _StanDist
    args: tuple[float, ...]
    text: str
    lower: float | None = None  # Stan's truncation T[lower, upper]
    upper: float | None = None

    @property
    def truncated(self) -> bool:
        return self.lower is not None or self.upper is not None


def _parse_error(text: str, message: str, start: int, end: int, hint: str | None = None):
    message = f"cannot read the prior {text!r}: {message}"
    return PriorError(point_at(message, text, start, end, hint))


def _known_names() -> str:
    return ", ".join(sorted(_DISTRIBUTIONS))


def _parse(text: str) -> _Parsed:
    """Read ``name(arg, ...)`` in Stan's spelling; numbers only as arguments."""
    if not isinstance(text, str):
        raise PriorError(f"a prior must be a string such as 'normal(0, 1)', got {text!r}.")
    stripped = text.strip()
    if stripped in ("", "(flat)"):
        if stripped == "":
            raise PriorError(
                "the prior is empty; write a distribution such as 'normal(0, 1)' (or 'flat')."
            )
        return _Parsed(_DISTRIBUTIONS["flat"], (), text)
    match = _NAME.match(text)
    if not match:
        raise _parse_error(text, "expected a distribution name such as 'normal'.", 0, len(text))
    raw_name = match.group(1)
    name = _ALIASES.get(raw_name.lower(), raw_name.lower())
    name_span = (match.start(1), match.end(1))
    rest = match.end()
    if name not in _DISTRIBUTIONS:
        close = difflib.get_close_matches(name, list(_DISTRIBUTIONS), n=1)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        raise _parse_error(
            text,
            f"unknown distribution {raw_name!r}.",
            *name_span,
            hint + f"Known distributions: {_known_names()}.",
        )
    dist = _DISTRIBUTIONS[name]
    if rest >= len(text) and not dist.stan_args:
        return _Parsed(dist, (), text)  # 'flat' without parentheses
    if rest >= len(text) or text[rest] != "(":
        raise _parse_error(
            text,
            f"expected '(' after {raw_name!r}.",
            rest,
            rest + 1,
            f"Write it as {_signature(dist)}.",
        )
    close_at = text.find(")", rest)
    if close_at < 0:
        raise _parse_error(
            text,
            "expected the arguments to end with ')'.",
            len(text),
            len(text) + 1,
            f"Write it as {_signature(dist)}.",
        )
    tail = text[close_at + 1 :]
    truncation = _TRUNCATION.fullmatch(tail) if tail.strip() else None
    if tail.strip() and truncation is None:
        start = close_at + 1 + (len(tail) - len(tail.lstrip()))
        raise _parse_error(
            text,
            f"unexpected {tail.strip()!r} after the arguments.",
            start,
            len(text.rstrip()),
            "Only Stan's truncation may follow, e.g. 'normal(1, 2) T[0, ]'.",
        )
    inner_start = rest + 1
    inner = text[inner_start:close_at]
    pieces: list[tuple[str, int, int]] = []
    if inner.strip():
        pos = inner_start
        for piece in inner.split(","):
            lead = len(piece) - len(piece.lstrip())
            pieces.append((piece.strip(), pos + lead, pos + lead + len(piece.strip())))
            pos += len(piece) + 1
    if len(pieces) != len(dist.stan_args):
        n = len(dist.stan_args)
        raise _parse_error(
            text,
            f"{dist.stan} takes {n} argument{'s' if n != 1 else ''} "
            f"({', '.join(dist.stan_args) or 'none'}), got {len(pieces)}.",
            inner_start - 1,
            close_at + 1,
            f"Write it as {_signature(dist)}.",
        )
    args = []
    for i, (piece, start, end) in enumerate(pieces):
        if not _NUMBER.fullmatch(piece):
            raise _parse_error(
                text,
                f"argument {i + 1} ({dist.stan_args[i]}) of {dist.stan} must be a number, "
                f"got {piece!r}.",
                start,
                max(end, start + 1),
            )
        value = float(piece)
        if not math.isfinite(value):
            raise _parse_error(text, f"argument {i + 1} of {dist.stan} must be finite.", start, end)
        if i in dist.positive_args and value <= 0:
            raise _parse_error(
                text,
                f"the {dist.stan_args[i]} of {dist.stan} must be positive, got {piece}.",
                start,
                end,
            )
        args.append(value)
    if dist.stan == "uniform" and not args[0] < args[1]:
        raise _parse_error(
            text, "uniform(lower, upper) needs lower < upper.", inner_start, close_at
        )
    bounds: list[float | None] = [None, None]
    if truncation is not None:
        offset = close_at + 1
        if dist.stan in ("lkj", "flat", "halfflat"):
            raise _parse_error(
                text, f"{dist.stan} cannot be truncated.", offset, len(text.rstrip())
            )
        for i, key in enumerate(("lo", "hi")):
            piece = truncation.group(key)
            if not piece:
                continue
            start, end = offset + truncation.start(key), offset + truncation.end(key)
            if not _NUMBER.fullmatch(piece):
                raise _parse_error(
                    text, f"a truncation bound must be a number, got {piece!r}.", start, end
                )
            bounds[i] = float(piece)
        if bounds == [None, None]:
            raise _parse_error(
                text,
                "T[, ] truncates nothing; give a lower or upper bound.",
                offset,
                len(text.rstrip()),
            )
        if None not in bounds and not bounds[0] < bounds[1]:
            raise _parse_error(
                text, "T[lower, upper] needs lower < upper.", offset, len(text.rstrip())
            )
    return _Parsed(dist, tuple(args), text, bounds[0], bounds[1])


def _signature(dist: _StanDist) -> str:
    return f"{dist.stan}({', '.join(dist.stan_args)})"


# -- number and prior formatting ---------------------------------------------------------------
def _fmt(value: Any, digits: int = 4) -> str:
    """A number rounded to ``digits`` significant digits, without scientific notation."""
    return format_number(value, digits, notation="positional")


def _stan_text(value: Any) -> str:
    """A Bambi prior (or a constant) in Stan's spelling, e.g. ``halfnormal(2.25)``."""
    if value is None:
        return ""
    if isinstance(value, (int, float, np.number)):
        return f"constant({_fmt(value)})"
    if not isinstance(value, _bambi.Prior):
        return str(value)
    args = {k: v for k, v in value.args.items() if k not in ("transform", "initval")}
    name = value.name
    if name in ("Flat", "HalfFlat"):
        text = "(flat)"
    elif name == "StudentT" and "sigma" not in args and "lam" in args:
        args["sigma"] = 1 / np.sqrt(np.asarray(args.pop("lam"), dtype=float))
        return _stan_text(_bambi.Prior(name, dist=value.dist, **args))
    elif name == "Exponential" and set(args) == {"scale"}:
        args["lam"] = 1 / np.asarray(args.pop("scale"), dtype=float)
        return _stan_text(_bambi.Prior(name, dist=value.dist, **args))
    else:
        dist = _BY_PYMC.get(name)
        if name == "StudentT":
            args.setdefault("mu", 0.0)
        if name == "Gamma" and "mu" in args and "sigma" in args and "alpha" not in args:
            mu = np.asarray(args.pop("mu"), dtype=float)
            sd = np.asarray(args.pop("sigma"), dtype=float)
            args["alpha"], args["beta"] = mu**2 / sd**2, mu / sd**2
        if (
            dist is not None
            and set(args) == set(dist.pymc_args)
            and not any(isinstance(v, _bambi.Prior) for v in args.values())
        ):
            text = f"{dist.stan}({', '.join(_fmt(args[a]) for a in dist.pymc_args)})"
        else:
            inner = ", ".join(
                f"{k}={_stan_text(v) if isinstance(v, _bambi.Prior) else _fmt(v)}"
                for k, v in args.items()
            )
            text = f"{name}({inner})"
    if isinstance(value.dist, _Truncated):
        text += value.dist.stan_suffix()
    return text


@dataclass(frozen=True)
class _Truncated:
    """A PyMC distribution truncated to ``[lower, upper]``, usable as a Bambi ``Prior.dist``."""

    name: str
    lower: float | None = None
    upper: float | None = None

    def _base(self):
        return getattr(pm, self.name)

    def __call__(self, label, *, dims=None, shape=None, **args):
        return pm.Truncated(
            label,
            self._base().dist(**args),
            lower=self.lower,
            upper=self.upper,
            dims=dims,
            shape=shape,
        )

    def dist(self, shape=None, **args):
        return pm.Truncated.dist(
            self._base().dist(**args), lower=self.lower, upper=self.upper, shape=shape
        )

    def stan_suffix(self) -> str:
        lo = "" if self.lower is None else _fmt(self.lower)
        hi = "" if self.upper is None else _fmt(self.upper)
        return f" T[{lo}, {hi}]"


# -- the user's specification ------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PriorSpec:
    """A prior and the parameters it applies to, as brms' ``set_prior`` writes it.

    Build one with :func:`prior`; a list of them is the ``priors=`` argument of
    :func:`lmmformula.model`.

    Parameters
    ----------
    prior : str or bambi.Prior
        The distribution in Stan's spelling, e.g. ``"normal(0, 0.1)"``, or a ``bambi.Prior``
        used as it is.
    cls : str
        Parameter class: ``"b"`` (default), ``"Intercept"``, ``"sd"``, ``"cor"``, or an
        auxiliary parameter of the family such as ``"sigma"``.
    coef : str
        For ``b``, the population-level term (e.g. ``"TEMP"``); for ``sd``, the group-level
        term's expression (``"Intercept"`` or e.g. ``"TEMP"``). Empty: the whole class.
    group : str
        For ``sd`` and ``cor``, the grouping factor. Empty: every grouping factor.
    dpar : str
        brms' distributional parameter whose formula has the parameters (``"sigma"`` in
        ``bf(y ~ x, sigma ~ z)``); empty for the main formula.

    Examples
    --------
    >>> import lmmformula as lf
    >>> spec = lf.prior("normal(0, 0.1)", cls="b", coef="TEMP")
    >>> spec
    PriorSpec(prior='normal(0, 0.1)', cls='b', coef='TEMP', group='')
    >>> lf.PriorSpec.from_dict(spec.to_dict()) == spec
    True
    """

    prior: Any
    cls: str = "b"
    coef: str = ""
    group: str = ""
    dpar: str = ""
    _parsed: _Parsed | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for attr in ("cls", "coef", "group", "dpar"):
            value = getattr(self, attr)
            if value is None:
                object.__setattr__(self, attr, "")
            elif not isinstance(value, str):
                raise PriorError(f"{attr} must be a string, got {value!r}.")
        if not self.cls:
            raise PriorError("cls must name a parameter class such as 'b', 'sd' or 'sigma'.")
        if isinstance(self.prior, _bambi.Prior):
            if self.cls == "cor":
                raise PriorError("class 'cor' takes an 'lkj(eta)' string, not a bambi.Prior.")
        else:
            object.__setattr__(self, "_parsed", _parse(self.prior))
            is_lkj = self._parsed.dist.stan == "lkj"
            if self.cls == "cor" and not is_lkj:
                raise PriorError(
                    f"class 'cor' (the correlations of a block) takes only 'lkj(eta)', got "
                    f"{self.prior!r}."
                )
            if is_lkj and self.cls != "cor":
                raise PriorError(
                    f"{self.prior!r} is a prior for correlation matrices; give it cls='cor', "
                    f"not {self.cls!r}."
                )
        if self.coef and self.cls not in ("b", "sd", "simo", "sdgp", "lscale"):
            raise PriorError(
                f"class {self.cls!r} has no coefficients; coef={self.coef!r} applies only to "
                "classes 'b', 'sd', 'simo', 'sdgp' and 'lscale'."
            )
        if self.group and self.cls not in ("sd", "cor"):
            raise PriorError(
                f"class {self.cls!r} has no groups; group={self.group!r} applies only to "
                "classes 'sd' and 'cor'."
            )
        if self.dpar and self.cls not in ("Intercept", "b", "sd"):
            raise PriorError(
                f"dpar={self.dpar!r} applies to the classes 'Intercept', 'b' and 'sd' of that "
                f"parameter's formula, not to {self.cls!r}."
            )
        if self.cls == "sd" and self.coef and not self.group:
            raise PriorError(
                f"a prior on the sd of coef={self.coef!r} needs group=...: the grouping factor "
                "whose term it is (brms' rule)."
            )

    # identity ------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        """The prior as written (a ``bambi.Prior`` in Bambi's own spelling)."""
        return self.prior if isinstance(self.prior, str) else str(self.prior)

    def _key(self) -> tuple:
        prior = self.prior if isinstance(self.prior, str) else repr(_encode_bambi(self.prior))
        return (prior, self.cls, self.coef, self.group, self.dpar)

    def _target(self) -> tuple[str, str, str, str]:
        return (self.cls, self.coef, self.group, self.dpar)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PriorSpec):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        dpar = f", dpar={self.dpar!r}" if self.dpar else ""
        return (
            f"PriorSpec(prior={self.prior!r}, cls={self.cls!r}, coef={self.coef!r}, "
            f"group={self.group!r}{dpar})"
        )

    def __str__(self) -> str:
        parts = [repr(self.text), f"cls={self.cls!r}"]
        parts += [
            f"{k}={getattr(self, k)!r}" for k in ("coef", "group", "dpar") if getattr(self, k)
        ]
        return f"prior({', '.join(parts)})"

    # serialization -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` restores an equal spec.

        Examples
        --------
        >>> import lmmformula as lf
        >>> lf.prior("halfcauchy(1)", cls="sd", group="station").to_dict()
        {'prior': 'halfcauchy(1)', 'class': 'sd', 'coef': '', 'group': 'station'}
        """
        prior = self.prior if isinstance(self.prior, str) else {"bambi": _encode_bambi(self.prior)}
        out = {"prior": prior, "class": self.cls, "coef": self.coef, "group": self.group}
        if self.dpar:
            out["dpar"] = self.dpar
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PriorSpec:
        """Rebuild a spec from :meth:`to_dict`'s output."""
        try:
            prior = d["prior"]
            klass = d.get("class", d.get("cls", "b"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise PriorError(f"not a stored prior specification: {d!r}") from exc
        if isinstance(prior, Mapping) and "bambi" in prior:
            prior = _decode_bambi(prior["bambi"])
        return cls(
            prior,
            cls=klass,
            coef=d.get("coef", ""),
            group=d.get("group", ""),
            dpar=d.get("dpar", ""),
        )


def _encode_bambi(value: _bambi.Prior) -> dict[str, Any]:
    if value.dist is not None:
        raise PriorError(
            f"the bambi.Prior {value} has a custom 'dist' and cannot be stored; give the "
            "distribution by name."
        )

    def enc(v):
        if isinstance(v, _bambi.Prior):
            return {"bambi": _encode_bambi(v)}
        arr = np.asarray(v)
        if arr.dtype.kind in "biuf":
            return arr.tolist()
        raise PriorError(f"the bambi.Prior {value} has an argument that cannot be stored: {v!r}")

    return {"name": value.name, "args": {k: enc(v) for k, v in value.args.items()}}


def _decode_bambi(d: Mapping[str, Any]) -> _bambi.Prior:
    def dec(v):
        if isinstance(v, Mapping) and "bambi" in v:
            return _decode_bambi(v["bambi"])
        return np.asarray(v, dtype=float) if isinstance(v, list) else v

    return _bambi.Prior(d["name"], **{k: dec(v) for k, v in d["args"].items()})


def prior(
    prior: str | _bambi.Prior, cls: str = "b", coef: str = "", group: str = "", dpar: str = ""
) -> PriorSpec:
    """A prior on a class of parameters, brms style (``set_prior``/``prior_string``).

    Parameters
    ----------
    prior : str or bambi.Prior
        A distribution in Stan's spelling: ``normal(mu, sigma)``,
        ``student_t(nu, mu, sigma)``, ``cauchy(location, scale)``, ``exponential(rate)``,
        ``gamma(shape, rate)``, ``lognormal(mu, sigma)``, ``beta(a, b)``,
        ``uniform(lower, upper)``, ``lkj(eta)``, ``halfnormal(sigma)``, ``halfcauchy(scale)``,
        ``halfstudent_t(nu, sigma)``; also ``double_exponential``, ``logistic``,
        ``inv_gamma``, ``weibull``, ``chi_square`` and ``flat``. Or a ``bambi.Prior``, used as
        it is.
    cls : str
        ``"b"`` (population-level coefficients, the default), ``"Intercept"``, ``"sd"``,
        ``"cor"``, or an auxiliary parameter of the family (``"sigma"``, ``"nu"``,
        ``"alpha"``, ``"kappa"``, ...).
    coef : str
        One term of the class: a population-level term (``cls="b"``) or a group-level term's
        expression such as ``"Intercept"`` or ``"TEMP"`` (``cls="sd"``, with ``group``).
    group : str
        A grouping factor (``cls="sd"`` or ``"cor"``).
    dpar : str
        The distributional parameter whose formula has the parameters, brms' ``dpar``:
        ``lf.prior("normal(0, 1)", cls="b", dpar="sigma")`` is a prior on the coefficients of
        ``sigma ~ ...`` in ``bf(y ~ x, sigma ~ z)`` (on the log scale of sigma). Empty: the main
        formula. Classes ``Intercept``, ``b`` and ``sd`` take a ``dpar``.

    Returns
    -------
    PriorSpec

    Raises
    ------
    PriorError
        When the string does not read as a distribution, or the class, coef and group do not
        fit together. Whether they exist in the model is checked when the model is built.

    Notes
    -----
    On ``sd``, ``sigma`` and other positive parameters, ``normal(0, s)``,
    ``student_t(nu, 0, s)`` and ``cauchy(0, s)`` mean their half distributions, as in brms;
    a non-zero location is refused. More specific priors override more general ones.

    Examples
    --------
    >>> import lmmformula as lf
    >>> data = lf.load_dataset("beijing_ozone")
    >>> m = lf.model(
    ...     "log_ozone ~ TEMP + (1|station)",
    ...     data,
    ...     priors=[
    ...         lf.prior("normal(0, 2)", cls="Intercept"),
    ...         lf.prior("normal(0, 0.1)", cls="b", coef="TEMP"),
    ...         lf.prior("halfcauchy(1)", cls="sigma"),
    ...         lf.prior("cauchy(0, 1)", cls="sd", group="station"),
    ...     ],
    ... )
    >>> user = m.prior_summary().query("source == 'user'")
    >>> user[["prior", "class", "coef", "group"]]  # doctest: +NORMALIZE_WHITESPACE
                prior      class       coef    group
    0    normal(0, 2)  Intercept
    2  normal(0, 0.1)          b       TEMP
    4   halfcauchy(1)         sd             station
    5   halfcauchy(1)         sd  Intercept  station
    6   halfcauchy(1)      sigma
    """
    return PriorSpec(prior, cls=cls, coef=coef, group=group, dpar=dpar)


# -- what the model has priors on ------------------------------------------------------------
@dataclass(frozen=True)
class _Slot:
    """One parameter (or set of parameters) of the model that takes one prior."""

    cls: str
    coef: str
    group: str
    term: str  # Bambi term name, auxiliary parameter name, or the factor (cor)
    support: str  # "real", "positive", "unit", "cor"
    dpar: str = ""  # the distributional parameter's formula (bf()), "" for the main one


def _aux_support(model: Model, name: str) -> str:
    default = _bambi.view(model.bambi).default_priors.get(name)
    dist = getattr(default, "name", None)
    if dist in _POSITIVE_PYMC or dist in ("Gamma", "HalfStudentT"):
        return "positive"
    if dist == "Beta":
        return "unit"
    return "real"


def _aux_names(model: Model) -> list[str]:
    """Auxiliary parameters of the family with a prior of their own (not modelled by formula)."""
    v = _bambi.view(model.bambi)
    return [p for p in v.parameters if p in v.auxiliary_names]


def _is_constant(model: Model, name: str) -> bool:
    return name in _bambi.view(model.bambi).auxiliary


def _slots(model: Model) -> list[_Slot]:
    """Every parameter a prior can be put on, in the order of the summary table."""
    v = _bambi.view(model.bambi)
    out: list[_Slot] = []
    if v.intercept() is not None:
        out.append(_Slot("Intercept", "", "", "Intercept", "real"))
    ordinal = _ordinal.is_ordinal(v.family)
    if ordinal:  # brms' class Intercept is the thresholds of an ordinal model (lmmformula._ordinal)
        out.append(_Slot("Intercept", "", "", _ordinal.THRESHOLD, "real"))
    mo = _bambi.mo_terms(model.bambi)
    for name in (t.key for t in v.common()):
        out.append(_Slot("b", mo[name].coef if name in mo else name, "", name, "real"))
    for name, info in mo.items():  # brms' simo_mox1: the simplex of mo(x)
        out.append(_Slot("simo", info.coef + "1", "", name, "simplex"))
    gp_terms = {gp.term: gp for gp in getattr(model.translation, "gp_terms", ())}
    for name in (t.key for t in v.group() if not t.dpar):
        if name in gp_terms:  # brms' gp(): classes sdgp and lscale, coef = the GP's label
            label = gp_terms[name].label
            out.append(_Slot("sdgp", label, "", name, "positive"))
            out.append(_Slot("lscale", label, "", f"{label}_lscale", "positive"))
            continue
        expr, factor = (_mono.group_label(name) or name).split("|", 1)  # mo(x)|g: brms' mox
        out.append(_Slot("sd", coef_label(expr), factor, name, "positive"))
    for dpar in dict.fromkeys(t.dpar for t in v.terms if t.dpar):
        if v.intercept(dpar) is not None:
            out.append(_Slot("Intercept", "", "", "Intercept", "real", dpar))
        for name in (t.key for t in v.common(dpar)):
            out.append(_Slot("b", name, "", name, "real", dpar))
        for name in (t.key for t in v.group() if t.dpar == dpar):
            expr, factor = name.split("|", 1)
            out.append(_Slot("sd", coef_label(expr), factor, name, "positive", dpar))
    cor_factors: dict[str, None] = {}
    for key, terms in model.translation.correlated.items():
        if _bambi.block_size(model.bambi, tuple(terms)) > 1:
            cor_factors.setdefault(model.translation.block_factor(key))
    for factor in cor_factors:  # one class per factor: it covers every block on it, as in brms
        out.append(_Slot("cor", "", factor, factor, "cor"))
    for name in _aux_names(model):
        # an auxiliary parameter named like a class (asymmetric Laplace's "b") keeps Bambi's
        # default: it cannot be told apart from the class
        if ordinal and name == _ordinal.THRESHOLD:
            continue
        if _is_constant(model, name) and name not in _CLASS_LEVELS:
            out.append(_Slot(name, "", "", name, _aux_support(model, name)))
    return out


def _join(names) -> str:
    names = list(dict.fromkeys(names))
    return ", ".join(names) if names else "none"


def _canonical_class(spec: PriorSpec, model: Model, slots: list[_Slot]) -> str:
    """The class name as the model knows it; brms' ``shape``/``phi`` map to Bambi's names."""
    if spec.dpar:
        dpars = list(_bambi.dpar_components(model.bambi))
        if spec.dpar not in dpars:
            raise PriorError(
                f"{spec}: the model has no formula for the distributional parameter "
                f"{spec.dpar!r}; modelled by a formula: {_join(dpars)} (write them in "
                "bf(y ~ ..., sigma ~ ...))."
            )
        present = {s.cls for s in slots if s.dpar == spec.dpar}
        if spec.cls not in present:
            raise PriorError(
                f"{spec}: the formula of {spec.dpar!r} has no parameters of class "
                f"{spec.cls!r}; valid classes: {_join(c for c in _CLASS_LEVELS if c in present)}."
            )
        return spec.cls
    slots = [s for s in slots if not s.dpar]
    present = {s.cls for s in slots}
    if spec.cls in present:
        return spec.cls
    for bambi_name in BRMS_PARAMETER_NAMES.get(spec.cls, ()):
        if bambi_name in present:
            return bambi_name
    aux = _aux_names(model)
    if spec.cls in aux:
        raise PriorError(
            f"the auxiliary parameter {spec.cls!r} is modelled by its own formula; give the "
            "priors of its terms as a Bambi dict instead."
        )
    valid = [c for c in ("Intercept", "b", "sd", "cor") if c in present]
    valid += [s.cls for s in slots if s.cls not in _CLASS_LEVELS]
    if spec.cls in _CLASS_LEVELS:
        what = {
            "Intercept": "no intercept",
            "b": "no population-level coefficients",
            "sd": "no group-level terms",
            "cor": "no correlated blocks (a block needs two or more terms in one (...|g))",
        }[spec.cls]
        raise PriorError(
            f"{spec} cannot apply: the model has {what}; valid classes: {_join(valid)}."
        )
    raise PriorError(
        f"{spec}: the model has no parameter class {spec.cls!r}; valid classes: {_join(valid)}."
    )


def _check_targets(spec: PriorSpec, cls: str, slots: list[_Slot]) -> None:
    """Refuse a coef or group the model does not have, listing the valid ones."""
    slots = [s for s in slots if s.dpar == spec.dpar]
    mine = [s for s in slots if s.cls == cls]
    if cls == "b" and spec.coef:
        has_intercept = any(s.cls == "Intercept" for s in slots)
        valid = (["Intercept"] if has_intercept else []) + [s.coef for s in mine]
        if spec.coef not in valid:
            raise PriorError(
                f"{spec}: the model has no population-level coefficient {spec.coef!r}; "
                f"valid: {_join(valid)}."
            )
    if cls == "simo" and spec.coef and spec.coef not in [s.coef for s in mine]:
        raise PriorError(
            f"{spec}: the model has no monotonic simplex {spec.coef!r}; valid: "
            f"{_join(s.coef for s in mine)}."
        )
    if cls in ("sd", "cor") and spec.group:
        groups = [s.group for s in mine]
        if spec.group not in groups:
            if cls == "cor":
                raise PriorError(
                    f"{spec}: the model has no correlated block on {spec.group!r}; blocks: "
                    f"{_join(groups)}."
                )
            raise PriorError(
                f"{spec}: the model has no grouping factor {spec.group!r}; valid: {_join(groups)}."
            )
        if cls == "sd" and spec.coef:
            coefs = [s.coef for s in mine if s.group == spec.group]
            if coef_label(spec.coef) not in coefs:
                raise PriorError(
                    f"{spec}: the grouping factor {spec.group!r} has no group-level term "
                    f"{spec.coef!r}; valid: {_join(coefs)}."
                )


def _specificity(
    spec: PriorSpec, cls: str, slot: _Slot, intercept_as_b: bool = False
) -> int | None:
    """How specifically ``spec`` names ``slot`` (higher wins), or None if it does not.

    With brms' ``0 + Intercept`` (``intercept_as_b``) the intercept is one of the ``b``
    coefficients, so a prior on the whole class ``b`` covers it too."""
    if spec.dpar != slot.dpar:
        return None
    if slot.cls == "Intercept":
        if cls == "Intercept":
            return 0
        if cls == "b" and spec.coef == "Intercept":
            return 1
        if cls == "b" and not spec.coef and intercept_as_b:
            return 0
        return None
    if cls != slot.cls:
        return None
    if slot.cls == "b":
        if not spec.coef:
            return 0
        return 1 if spec.coef == slot.coef else None
    if slot.cls in ("sdgp", "lscale"):
        if spec.coef and spec.coef != slot.coef:
            return None
        return int(bool(spec.coef))
    if slot.cls == "simo" and spec.coef and spec.coef != slot.coef:
        return None
    if slot.cls in ("sd", "cor"):
        if spec.group and spec.group != slot.group:
            return None
        if spec.coef and coef_label(spec.coef) != slot.coef:
            return None
        return int(bool(spec.group)) + int(bool(spec.coef))
    return 0


# -- turning a spec into the prior in force ----------------------------------------------------
def _bambi_prior(dist: _StanDist, args: tuple[float, ...], parsed: _Parsed | None = None):
    kwargs = dict(zip(dist.pymc_args, args, strict=True))
    if parsed is not None and parsed.truncated:
        truncated = _Truncated(dist.pymc, parsed.lower, parsed.upper)
        return _bambi.Prior(dist.pymc, dist=truncated, **kwargs)
    return _bambi.Prior(dist.pymc, **kwargs)


def _resolve_value(spec: PriorSpec, slot: _Slot) -> Any:
    """The Bambi prior (or LKJ eta) that ``spec`` puts on ``slot``."""
    if isinstance(spec.prior, _bambi.Prior):
        return spec.prior
    parsed = spec._parsed
    assert parsed is not None
    dist, args = parsed.dist, parsed.args
    if slot.support == "cor":
        return float(args[0])
    if (slot.support == "simplex") != (dist.support == "simplex"):
        if slot.support == "simplex":
            raise PriorError(
                f"{spec}: the simplex of a mo() term takes a dirichlet(alpha) prior (brms' "
                "default dirichlet(1) is uniform on the simplex)."
            )
        raise PriorError(f"{spec}: dirichlet() is the prior of a mo() simplex (class 'simo').")
    if slot.support == "simplex":
        return _bambi.Prior("Dirichlet", a=float(args[0]))
    if slot.support == "real":
        return _bambi_prior(dist, args, parsed)
    what = {"sd": "a standard deviation"}.get(slot.cls, f"the {slot.cls} parameter")
    if parsed.truncated:
        lo, hi = parsed.lower, parsed.upper
        low_ok = dist.support in ("positive", "unit") or (lo is not None and lo >= 0)
        if slot.support == "unit":
            low_ok = dist.support == "unit" or (lo is not None and lo >= 0)
            low_ok = low_ok and (dist.support == "unit" or (hi is not None and hi <= 1))
        if not low_ok:
            bounds = "[0, 1]" if slot.support == "unit" else "lower >= 0"
            raise PriorError(
                f"{spec}: {what} is {'between 0 and 1' if slot.support == 'unit' else 'positive'}"
                f"; the truncation must keep it there ({bounds})."
            )
        return _bambi_prior(dist, args, parsed)
    if slot.support == "positive":
        if dist.support == "real":
            if dist.half is None:
                raise PriorError(
                    f"{spec}: {what} is positive and {dist.stan} has no half form; use e.g. "
                    "halfnormal(s), halfcauchy(s), exponential(rate) or gamma(shape, rate)."
                )
            if dist.location_arg is not None and args[dist.location_arg] != 0:
                raise PriorError(
                    f"{spec}: {what} is positive, so {dist.stan} is read as its half "
                    f"distribution (truncated at 0, as brms does), which needs a location of "
                    f"0, got {_fmt(args[dist.location_arg])}. Write e.g. "
                    f"'{dist.half}(...)', truncate it explicitly as in "
                    f"'{parsed.text.strip()} T[0, ]', or use a positive distribution such as "
                    "lognormal(mu, sigma) or gamma(shape, rate)."
                )
            half = _DISTRIBUTIONS[dist.half]
            kept = tuple(a for i, a in enumerate(args) if i != dist.location_arg)
            return _bambi_prior(half, kept)
        if dist.support == "interval" and args[0] < 0:
            raise PriorError(f"{spec}: {what} is positive; uniform(lower, upper) needs lower >= 0.")
        return _bambi_prior(dist, args)
    # unit interval
    if dist.support == "unit" or (dist.support == "interval" and 0 <= args[0] and args[1] <= 1):
        return _bambi_prior(dist, args)
    raise PriorError(
        f"{spec}: the {slot.cls} parameter lies between 0 and 1; use beta(a, b) or "
        "uniform(lower, upper) within [0, 1]."
    )


@dataclass
class _Resolved:
    value: Any  # _bambi.Prior, a number, or an LKJ eta
    source: str  # "user" or "default"
    spec: PriorSpec | None = None
    basis: str = ""  # where a default came from (the rule and its numbers)


def _normalize(priors: Any) -> tuple[str, list[PriorSpec]]:
    """(whose defaults, the user's specs) from the ``priors=`` argument: ``"lmmformula"``
    unless ``"brms"`` or ``"bambi"`` is in the list."""
    if priors is None:
        return LMMFORMULA, []
    if isinstance(priors, (str, PriorSpec)):
        priors = [priors]
    if isinstance(priors, Mapping) or not isinstance(priors, Sequence):
        raise PriorError(
            "priors must be a dict of Bambi priors, an lf.prior(...) specification, a list of "
            f"them, 'brms' or 'bambi'; got {type(priors).__name__}."
        )
    base, specs = LMMFORMULA, []
    for item in priors:
        if isinstance(item, str) and item.strip().lower() in _BASES:
            name = item.strip().lower()
            if base not in (LMMFORMULA, name):
                raise PriorError(
                    f"priors names both {base!r} and {name!r} defaults; keep one of them."
                )
            base = name
        elif isinstance(item, PriorSpec):
            specs.append(item)
        elif isinstance(item, str):
            raise PriorError(
                f"{item!r} in priors: write lf.prior({item!r}, cls=...) to say which "
                "parameters it is for ('brms' and 'bambi' are the only bare strings accepted)."
            )
        else:
            raise PriorError(
                "each entry of priors must be an lf.prior(...) specification or 'brms' (or "
                "'bambi'); got "
                f"{item!r}."
            )
    seen: dict[tuple[str, str, str], PriorSpec] = {}
    for spec in specs:
        target = spec._target()
        if target in seen:
            raise PriorError(
                f"two priors for the same parameters: {seen[target]} and {spec}; keep one."
            )
        seen[target] = spec
    return base, specs


def _resolve(model: Model, priors: Any) -> tuple[list[_Slot], dict[_Slot, _Resolved], dict]:
    """The winning prior of every slot, plus the specs keyed by (class, coef, group)."""
    base, specs = _normalize(priors)
    slots = _slots(model)
    canonical = []
    for spec in specs:
        cls = _canonical_class(spec, model, slots)
        _check_targets(spec, cls, slots)
        canonical.append((spec, cls))
    resolved: dict[_Slot, _Resolved] = {}
    if base == BRMS:
        for slot, value in brms_default_priors(model, slots).items():
            resolved[slot] = _Resolved(value, "default", basis=_brms_basis(slot))
    elif base == LMMFORMULA:
        for slot, default in lmmformula_default_priors(model, slots).items():
            resolved[slot] = _Resolved(default.value, "default", basis=default.basis)
    else:  # Bambi has no prior for mo()'s one slope and simplex: lmmformula's (_mono)
        mo_slots = [s for s in slots if s.cls == "simo" or _mono.is_mo_slot(s.term)]
        for slot, default in lmmformula_default_priors(model, mo_slots).items():
            resolved[slot] = _Resolved(default.value, "default", basis=default.basis)
    for slot in slots:
        best, best_score = None, -1
        for spec, cls in canonical:
            score = _specificity(
                spec, cls, slot, model.translation.intercept_as_b and not slot.dpar
            )
            if score is not None and score > best_score:
                best, best_score = spec, score
        if best is not None:
            resolved[slot] = _Resolved(_resolve_value(best, slot), "user", best, str(best))
    by_level = {
        (cls, spec.coef if cls != "sd" else coef_label(spec.coef), spec.group, spec.dpar): spec
        for spec, cls in canonical
    }
    return slots, resolved, by_level


@dataclass(frozen=True)
class ResolvedPriors:
    """The priors of a model, resolved before it is built: a value the build is handed.

    Attributes
    ----------
    bambi_priors : dict
        Bambi's ``priors`` dict (term or parameter name -> ``bambi.Prior``) for
        ``set_priors``: lmmformula's, brms' or Bambi's defaults with the user's on top.
    block_eta : dict of str to float
        The LKJ shape of the correlated blocks of each grouping factor that a ``cor`` prior
        names; the others keep the model's ``lkj_eta``.
    base : str
        Whose defaults fill what the user did not name: ``"lmmformula"``, ``"brms"`` or
        ``"bambi"``.
    slots : tuple
        Every parameter (or set of parameters) that takes one prior, in the summary's order.
    entries : dict
        Per slot, the prior in force with its source (``"user"`` or ``"default"``) and basis
        (the rule and its numbers, or the specification); slots left to Bambi are absent.
    by_level : dict
        The user's specifications by (class, coef, group, dpar), for the summary's class rows.
    mapping : dict or None
        A Bambi dict of priors given instead of specifications, and ``sources``: which slots
        it names.
    """

    bambi_priors: dict[str, Any]
    block_eta: dict[str, float]
    base: str = "lmmformula"
    slots: tuple[Any, ...] = ()
    entries: dict[Any, Any] = field(default_factory=dict)
    by_level: dict[tuple[str, str, str, str], Any] = field(default_factory=dict)
    mapping: Mapping[str, Any] | None = None
    sources: dict[Any, str] = field(default_factory=dict)
    simo: dict[str, float] = field(default_factory=dict)  # mo() simplexes: term -> alpha
    lscale: dict[str, Any] = field(default_factory=dict)  # brms' gp(): label -> user's prior


def resolve_priors(model: Model, priors: Any) -> ResolvedPriors:
    """Resolve brms-style priors (or a Bambi dict) against a model's parameters.

    Reads the model (its translation, data and the terms of its Bambi model) and changes
    nothing: :class:`lmmformula.Model` hands the result to the Bambi seam before the PyMC
    graph is built, and keeps it as ``Model.resolved_priors``.

    Parameters
    ----------
    model : Model
        The model being constructed (its Bambi model exists, not built).
    priors : None, PriorSpec, list of PriorSpec, "brms", "bambi", or dict
        As ``priors=`` of :func:`lmmformula.model`.

    Returns
    -------
    ResolvedPriors

    Raises
    ------
    PriorError
        As :func:`apply_priors`.
    """
    if isinstance(priors, Mapping):
        slots, resolved, by_level = _resolve(model, None)
        sources = _mapping_sources(model, slots, priors)
        unnamed = {s: r.value for s, r in resolved.items() if sources.get(s) == "default"}
        simo = {s.term: float(v.args["a"]) for s, v in unnamed.items() if s.cls == "simo"}
        kept = {s: v for s, v in unnamed.items() if s.cls not in ("simo", "lscale")}
        merged = _ordinal_thresholds(model, _bambi_dict(kept))
        for key, value in priors.items():  # a dpar's nested dict adds to its defaults
            if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
        return ResolvedPriors(
            merged,
            {},
            base=LMMFORMULA,
            slots=tuple(slots),
            entries=resolved,
            by_level=by_level,
            mapping=dict(priors),
            sources=sources,
            simo=simo,
        )
    base, _ = _normalize(priors)
    slots, resolved, by_level = _resolve(model, priors)
    block_eta = {
        slot.group: float(res.value) for slot, res in resolved.items() if slot.cls == "cor"
    }
    kept = {s: r.value for s, r in resolved.items() if s.cls not in ("cor", "simo", "lscale")}
    bambi_priors = _ordinal_thresholds(model, _bambi_dict(kept))
    simo = {s.term: float(r.value.args["a"]) for s, r in resolved.items() if s.cls == "simo"}
    lscale = {  # brms' gp(): the user's lscale priors, by the GP's label (lmmformula._gp)
        slot.coef: res.value
        for slot, res in resolved.items()
        if slot.cls == "lscale" and res.source == "user"
    }
    return ResolvedPriors(
        bambi_priors,
        block_eta,
        base=base,
        slots=tuple(slots),
        entries=resolved,
        by_level=by_level,
        simo=simo,
        lscale=lscale,
    )


def _ordinal_thresholds(model: Model, bambi_priors: dict[str, Any]) -> dict[str, Any]:
    """An ordinal model's threshold prior as an ordered vector (lmmformula._ordinal)."""
    prior = bambi_priors.get(_ordinal.THRESHOLD)
    family = _bambi.view(model.bambi).family
    if prior is None or not _ordinal.is_ordinal(family):
        return bambi_priors
    if family != "cumulative":  # sratio's thresholds are not ordered
        return bambi_priors
    n = _ordinal.n_thresholds(model.bambi)
    return {**bambi_priors, _ordinal.THRESHOLD: _ordinal.ordered_prior(prior, n)}


def apply_priors(model: Model, priors: Any) -> None:
    """Put brms-style priors (or brms' defaults) on a model's Bambi terms.

    Changes the model: sets the priors on ``model.bambi`` with ``set_priors`` and per-block LKJ
    shapes in ``model.block_eta``. :class:`lmmformula.Model` itself uses
    :func:`resolve_priors`, a value handed to the build, and does not call this. Parameters that no
    prior names get lmmformula's defaults (:func:`lmmformula_default_priors`), brms'
    (``"brms"`` in the list) or keep Bambi's auto-scaled ones (``"bambi"``).

    Parameters
    ----------
    model : Model
        The model; its Bambi model must not be built yet.
    priors : None, PriorSpec, list of PriorSpec, "brms", "bambi", or dict
        The specifications; ``"brms"`` or ``"bambi"`` (alone or in the list) starts from brms'
        or Bambi's default priors instead of lmmformula's. A dict is handed to Bambi's
        ``set_priors`` unchanged, with lmmformula's defaults on the parameters it does not
        name.

    Raises
    ------
    PriorError
        When a prior names a class, coefficient or group the model lacks (the message lists
        the valid ones), when two priors name the same parameters, or when a distribution
        does not fit the parameter (e.g. a non-zero location on a standard deviation).

    Examples
    --------
    >>> import lmmformula as lf
    >>> from lmmformula.priors import apply_priors
    >>> m = lf.model("Reaction ~ Days + (Days|Subject)", lf.load_dataset("sleepstudy"))
    >>> apply_priors(m, [lf.prior("lkj(1)", cls="cor", group="Subject")])
    >>> m.block_eta
    {'Subject': 1.0}
    """
    resolved = resolve_priors(model, priors)
    model.block_eta.update(resolved.block_eta)
    if resolved.bambi_priors:
        _bambi.set_priors(model.bambi, resolved.bambi_priors)
    if hasattr(model, "blocks"):  # applied after construction: keep the model consistent
        model.user_priors = priors
        model.resolved_priors = resolved
        model.blocks = model._effective_blocks()
        model.bambi.set_plan(model._build_plan())


def _bambi_dict(values: Mapping[_Slot, Any]) -> dict[str, Any]:
    """Bambi's ``priors`` dict for slot -> prior (an ``sd`` prior is the sigma of a Normal)."""
    out: dict[str, Any] = {}
    for slot, value in values.items():
        if slot.cls in ("sd", "sdgp"):
            value = _bambi.Prior("Normal", mu=0.0, sigma=value)
        if slot.dpar:  # Bambi's nested dict for a distributional parameter's terms
            out.setdefault(slot.dpar, {})[slot.term] = value
        else:
            out[slot.term] = value
    return out


# -- brms' default priors ----------------------------------------------------------------------
def _r_mad(x: np.ndarray) -> float:
    """R's ``mad()``: 1.4826 times the median absolute deviation from the median."""
    med = np.median(x)
    return float(1.4826 * np.median(np.abs(x - med)))


def _apply_link(y: np.ndarray, link: str) -> np.ndarray | None:
    """``link(y)`` for the links brms scales its defaults on; None for the others."""
    with np.errstate(all="ignore"):
        if link == "identity":
            return y
        if link in ("log", "inverse", "inverse_squared"):
            y = np.where(y == 0, y + 0.1, y)  # brms: avoid Inf in link(y)
            if link == "log":
                return np.log(y)
            return 1 / y if link == "inverse" else 1 / y**2
        if link == "sqrt":
            return np.sqrt(y)
    return None


def brms_scale_location(model: Model, link: str | None = None) -> tuple[float, float]:
    """brms' default (location, scale) for a model's response (``def_scale_prior``).

    ``scale = max(2.5, round(mad(link(y)), 1))`` and ``location = round(median(link(y)), 1)``
    minus the mean offset, for identity, log, inverse, sqrt and inverse-squared links and a
    numeric response; location 0 and scale 2.5 otherwise (e.g. logit and probit links).
    """
    link = link or model.link_name
    v = _bambi.view(model.bambi)
    if v.family in ("hurdle_lognormal",):
        link = "log"  # brms' has_logscale()
    location, scale = 0.0, 2.5
    y = np.asarray(v.response, dtype=float) if not v.response_categorical else None
    if y is not None and y.ndim == 2:
        y = y[:, 0]  # binomial: brms scales on the successes
    y_link = _apply_link(y, link) if y is not None else None
    if y_link is not None:
        scale_y = round(_r_mad(y_link), 1)
        if math.isfinite(scale_y):
            scale = max(scale, scale_y)
        location_y = round(float(np.median(y_link)), 1)
        if math.isfinite(location_y):
            location = location_y
            offsets = v.offsets
            if offsets:
                mean_offset = float(np.mean(np.sum(offsets, axis=0)))
                if math.isfinite(mean_offset):
                    location -= mean_offset
    return location, scale


_GP_LSCALE_BASIS = (
    "brms: inv_gamma tuned so that P(lscale < smallest distance) = P(lscale > largest) = 0.01 "
    "(def_lscale_prior; normal(0, 0.5) on lscale > 0 where the tuning fails)"
)


_BRMS_BASIS = {
    "Intercept": "brms: student_t(3, round(median(link(y)), 1), max(2.5, round(mad(link(y)), 1)))",
    "b": "brms: flat (improper)",
    "sd": "brms: student_t(3, 0, max(2.5, round(mad(link(y)), 1))) on sd >= 0",
    "cor": "brms: lkj(1)",
    "simo": "brms: dirichlet(1)",
    "sigma": "brms: student_t(3, 0, max(2.5, round(mad(y), 1))) on sigma >= 0",
    "sdgp": "brms: the sd's default, student_t(3, 0, max(2.5, round(mad(link(y)), 1))) >= 0",
    "lscale": _GP_LSCALE_BASIS,
}


def _brms_basis(slot: _Slot) -> str:
    if slot.cls in _BRMS_BASIS:
        return _BRMS_BASIS[slot.cls]
    if slot.cls in _BRMS_AUX:
        return f"brms: {_BRMS_AUX[slot.cls][1]}"
    return BAMBI_BASIS


_BRMS_AUX = {
    # Bambi name -> (families, brms default), the brms class named in the comment
    "nu": (("t",), "gamma(2, 0.1) T[1, ]"),  # student: nu, lower bound 1
    "alpha": (
        (
            "negativebinomial",
            "gamma",
            "weibull",
            "zero_inflated_negativebinomial",
            "hurdle_negativebinomial",
            "hurdle_gamma",
        ),
        "gamma(0.01, 0.01)",
    ),  # shape
    "kappa": (("beta", "beta_binomial"), "gamma(0.01, 0.01)"),  # phi
    "lam": (("wald",), "gamma(0.01, 0.01)"),  # inverse.gaussian shape
    "psi": (
        (
            "zero_inflated_poisson",
            "zero_inflated_negativebinomial",
            "zero_inflated_binomial",
            "hurdle_poisson",
            "hurdle_negativebinomial",
            "hurdle_gamma",
            "hurdle_lognormal",
        ),
        "beta(1, 1)",
    ),  # zi / hu: beta(1, 1) is symmetric, so it is the same prior on psi = 1 - zi
}


def brms_default_priors(model: Model, slots: list[_Slot] | None = None) -> dict[_Slot, Any]:
    """brms' default priors for the model's parameters, as Bambi priors (LKJ eta for cor).

    From brms' ``R/priors.R`` (``def_scale_prior``, ``def_dpar_prior``, ``prior_fe``,
    ``prior_re``): Intercept ``student_t(3, location, scale)``; ``b`` flat; ``sd`` and
    ``sigma`` ``student_t(3, 0, scale)`` with a lower bound of 0 (here ``halfstudent_t``);
    ``cor`` ``lkj(1)``; Student-t ``nu`` ``gamma(2, 0.1)`` truncated at 1; ``shape`` (Bambi's
    ``alpha``/``lam``) and ``phi`` (Bambi's ``kappa``) ``gamma(0.01, 0.01)``. The scale of
    ``sigma`` is computed on the identity scale, the others on the link scale.
    """
    slots = _slots(model) if slots is None else slots
    location, scale = brms_scale_location(model)
    _, sigma_scale = brms_scale_location(model, link="identity")
    family = _bambi.view(model.bambi).family
    out: dict[_Slot, Any] = {}
    for slot in slots:
        if slot.dpar:  # brms' def_dpar_prior: student_t(3, 0, 2.5) on the link scale, b flat
            if slot.cls == "Intercept":
                out[slot] = _bambi.Prior("StudentT", nu=3.0, mu=0.0, sigma=2.5)
            elif slot.cls == "b":
                out[slot] = _bambi.Prior("Flat")
            else:
                out[slot] = _bambi.Prior("HalfStudentT", nu=3.0, sigma=2.5)
            continue
        if slot.cls == "Intercept":
            out[slot] = _bambi.Prior("StudentT", nu=3.0, mu=location, sigma=scale)
        elif slot.cls == "b":
            out[slot] = _bambi.Prior("Flat")
        elif slot.cls in ("sd", "sdgp"):  # brms: sdgp's default is the sd's
            out[slot] = _bambi.Prior("HalfStudentT", nu=3.0, sigma=scale)
        elif slot.cls == "lscale":
            out[slot] = _gp_lscale_default(model, slot)
        elif slot.cls == "cor":
            out[slot] = 1.0
        elif slot.cls == "simo":
            out[slot] = _bambi.Prior("Dirichlet", a=_mono.DEFAULT_SIMO_ALPHA)
        elif slot.cls == "sigma":
            out[slot] = _bambi.Prior("HalfStudentT", nu=3.0, sigma=sigma_scale)
        elif slot.cls in _BRMS_AUX and family in _BRMS_AUX[slot.cls][0]:
            parsed = _parse(_BRMS_AUX[slot.cls][1])
            out[slot] = _bambi_prior(parsed.dist, parsed.args, parsed)
    return out


# -- lmmformula's default priors ---------------------------------------------------------------
@dataclass(frozen=True)
class DefaultRule:
    """Multipliers of lmmformula's default priors, in units of the outcome scale ``s``.

    ``s`` is ``sd(y)`` for an identity link and 1 (one unit of the linear predictor) for
    the logit, probit, cloglog, cauchit and log links; the location of the intercept is
    ``mean(y)``, 0 and ``log(mean(y))`` for these. The measurements behind the multipliers
    are in ``docs/priors.md`` (``benchmarks/priors_vs_lme4.py``).

    Attributes
    ----------
    intercept : float
        Intercept (of the centred design): ``normal(location, intercept * s)``.
    b : float
        A population-level column: ``normal(0, b * s / sd(x))``; an indicator column (0/1,
        e.g. a factor level) ``normal(0, b * s)``.
    sd : float
        A group-level sd: ``halfnormal(sd * s)`` for an intercept or indicator column,
        ``halfnormal(sd * s / rms(x))`` for a numeric column ``x`` (rms, not sd: group-level
        columns are not centred, so ``rms(x)`` is the size of what the slope multiplies).
    sigma : float
        The residual sd of a gaussian or Student-t model: ``exponential(1 / (sigma * sd(y)))``.
    log_link : float
        For a log link, the multiplier of the intercept and ``b`` instead of ``intercept`` and
        ``b``: 2.5 on the log scale (a factor of 12 per sd) puts 10-16% of a count model's
        implied means beyond the prior check's band, 1.5 (a factor of 4.5) 2-6%.
    sd_dist : str
        The group-level sds' distribution: ``"halfnormal"``, ``"halfstudent_t"`` (3 degrees of
        freedom) or ``"exponential"``, with the scale above.
    """

    intercept: float = 2.5
    b: float = 2.5
    sd: float = 1.0
    sigma: float = 1.0
    log_link: float = 1.5
    sd_dist: str = "halfnormal"


DEFAULT_RULE = DefaultRule()

_SCALED_LINKS = {"identity", "log", "logit", "probit", "cloglog", "cauchit"}
_REAL_FAMILIES = {"gaussian", "t"}


@dataclass(frozen=True)
class _Default:
    """A default prior and the rule that produced it (the ``basis`` column of the summary)."""

    value: Any
    basis: str


@dataclass(frozen=True)
class _OutcomeScale:
    location: float
    scale: float
    location_text: str  # e.g. "mean(y) = 298.5"
    scale_text: str  # e.g. "sd(y) = 56.17"; "" when s = 1


def _outcome_scale(model: Model) -> _OutcomeScale | None:
    """The location and scale the defaults are expressed in; None for unscaled links."""
    link = model.link_name
    if link not in _SCALED_LINKS:
        return None
    v = _bambi.view(model.bambi)
    if v.response_categorical:  # ordinal: the thresholds and eta are on the link's scale
        return _OutcomeScale(0.0, 1.0, "0", "") if _ordinal.is_ordinal(model.family) else None
    y = np.asarray(v.response, dtype=float)
    if y.ndim == 2 and y.shape[1] == 2:  # binomial: successes, trials
        y = y[:, 0] / y[:, 1]
    elif y.ndim != 1:
        return None
    offsets = v.offsets
    shift = float(np.mean(np.sum(offsets, axis=0))) if offsets else 0.0
    minus = f" - mean(offset) = {_fmt(shift)}" if shift else ""
    if link == "identity":
        sd = float(np.std(y, ddof=1)) if y.size > 1 else 0.0
        if not (math.isfinite(sd) and sd > 0):
            return None
        mean = float(np.mean(y)) - shift
        text = f"mean(y){minus.split(' = ')[0]} = {_fmt(mean)}"
        return _OutcomeScale(mean, sd, text, f"sd(y) = {_fmt(sd)}")
    if link == "log":
        mean = float(np.mean(y))
        location = (math.log(mean) if mean > 0 else 0.0) - shift
        text = f"log(mean(y)){minus.split(' = ')[0]} = {_fmt(location)}"
        return _OutcomeScale(location, 1.0, text, "")
    return _OutcomeScale(0.0, 1.0, "0", "")


def _columns(data: Any) -> np.ndarray:
    arr = np.asarray(data, dtype=float)
    return arr.reshape(arr.shape[0], -1)


def _is_indicator(col: np.ndarray) -> bool:
    return bool(np.all((col == 0) | (col == 1)))


def _times(k: float, s: _OutcomeScale) -> str:
    """``k * s`` as text, e.g. ``2.5 sd(y)`` or ``2.5``."""
    if not s.scale_text:
        return _fmt(k)
    unit = s.scale_text.split(" = ")[0]
    return unit if k == 1 else f"{_fmt(k)} {unit}"


def _sd_of(col: np.ndarray) -> float:
    return float(np.std(col, ddof=1)) if col.size > 1 else 0.0


def _rms_of(col: np.ndarray) -> float:
    return float(np.sqrt(np.mean(col**2)))


def _column_sizes(cols: np.ndarray, size_of, label: str) -> tuple[list[float], list[str]]:
    """Per column, what a default prior's scale is divided by (its sd or rms; 1 for an
    indicator or constant column) and how the basis says it."""
    sizes, texts = [], []
    for j in range(cols.shape[1]):
        col = cols[:, j]
        size = size_of(col)
        if _is_indicator(col) or not size > 0:
            sizes.append(1.0)
            texts.append("indicator")
        else:
            sizes.append(size)
            texts.append(f"{label} = {_fmt(size)}")
    return sizes, texts


def lmmformula_default_priors(
    model: Model, slots: list[_Slot] | None = None, rule: DefaultRule = DEFAULT_RULE
) -> dict[_Slot, _Default]:
    """lmmformula's default priors for a model's parameters, each with the rule behind it.

    With ``s`` the outcome scale (``sd(y)`` for an identity link, 1 for logit, probit, log and
    the like) and ``x`` a column of the design (see :class:`DefaultRule`):

    ======================  ===================================================================
    Intercept               ``normal(mean(y), 2.5 s)``; ``normal(0, 2.5)`` for logit/probit,
                            ``normal(log(mean(y)), 1.5)`` for a log link
    b, numeric column       ``normal(0, 2.5 s / sd(x))`` (rstanarm's autoscaling); 1.5 instead
                            of 2.5 for a log link (also for indicators)
    b, indicator column     ``normal(0, 2.5 s)`` (a factor's level against the reference)
    b, ``0 + f`` columns    the intercept's prior (each column is a level's mean)
    sd, intercept/indicator ``halfnormal(s)``
    sd, numeric column      ``halfnormal(s / rms(x))``
    cor                     ``lkj(lkj_eta)`` (2 unless the model says otherwise)
    sigma                   ``exponential(1 / sd(y))`` (rstanarm's)
    ======================  ===================================================================

    Links outside identity, log, logit, probit, cloglog and cauchit, categorical responses
    and the other auxiliary parameters keep Bambi's defaults (no entry in the result).

    Parameters
    ----------
    model : Model
        The model whose data scale the priors.
    slots : list, optional
        The parameters to give defaults (all of them by default).
    rule : DefaultRule
        The multipliers.

    Returns
    -------
    dict
        Parameter -> ``_Default(value, basis)``: the Bambi prior and the rule with its numbers.

    Examples
    --------
    >>> import lmmformula as lf
    >>> from lmmformula.priors import lmmformula_default_priors
    >>> m = lf.model("Reaction ~ Days + (Days|Subject)", lf.load_dataset("sleepstudy"))
    >>> for slot, default in lmmformula_default_priors(m).items():
    ...     print(slot.cls, slot.coef, "|", default.basis.split(";")[0])
    Intercept  | normal(mean(y), 2.5 sd(y))
    b Days | normal(0, 2.5 sd(y) / sd(Days)), sd(Days) = 2.88
    sd Intercept | halfnormal(sd(y))
    sd Days | halfnormal(sd(y) / rms(Days)), rms(Days) = 5.339
    sigma  | exponential(1 / sd(y))
    """
    slots = _slots(model) if slots is None else slots
    scale = _outcome_scale(model)
    out: dict[_Slot, _Default] = {}
    if scale is None:
        return out
    s = scale.scale
    v = _bambi.view(model.bambi)
    if model.link_name == "log":
        rule = replace(rule, intercept=rule.log_link, b=rule.log_link)

    def normal(mu: Any, sigma: Any) -> _bambi.Prior:
        return _bambi.Prior("Normal", mu=mu, sigma=sigma, auto_scale=False)

    def half(sigma: Any) -> _bambi.Prior:
        sigma = _squeeze(np.asarray(sigma, dtype=float))
        if rule.sd_dist == "exponential":
            return _bambi.Prior("Exponential", scale=sigma, auto_scale=False)
        if rule.sd_dist == "halfstudent_t":
            return _bambi.Prior("HalfStudentT", nu=3.0, sigma=sigma, auto_scale=False)
        return _bambi.Prior("HalfNormal", sigma=sigma, auto_scale=False)

    intercept_sd = rule.intercept * s
    intercept_basis = (
        f"normal({scale.location_text.split(' = ')[0]}, {_times(rule.intercept, scale)})"
    )
    has_intercept = v.intercept() is not None
    mo = _bambi.mo_terms(model.bambi)
    for slot in slots:
        if slot.dpar:
            out[slot] = _dpar_default(model, slot, scale, half)
            continue
        if slot.cls == "simo":
            value = _bambi.Prior("Dirichlet", a=_mono.DEFAULT_SIMO_ALPHA)
            out[slot] = _Default(value, "dirichlet(1): uniform on the simplex (brms' default)")
        elif slot.cls == "b" and slot.term in mo:  # bsp: a slope per category step
            codes = _columns(v.term(slot.term).data).sum(axis=1)
            size = _sd_of(codes)
            unit = _times(rule.b, scale)
            text = (
                f"normal(0, {unit} / sd(x)), x the category codes 0..{mo[slot.term].n_steps} "
                f"of {slot.term}, sd(x) = {_fmt(size)}"
            )
            value = normal(0.0, rule.b * s / size if size > 0 else rule.b * s)
            out[slot] = _Default(value, _basis(text, scale))
        elif slot.cls == "Intercept":
            out[slot] = _Default(
                normal(scale.location, intercept_sd), _basis(intercept_basis, scale)
            )
        elif slot.cls == "b":
            cols = _columns(v.term(slot.term).data)
            cell_means = not has_intercept and cols.shape[1] > 1 and _is_indicator(cols)
            cell_means = cell_means and bool(np.allclose(cols.sum(axis=1), 1))
            if cell_means:
                mu = np.full(cols.shape[1], scale.location)
                sig = np.full(cols.shape[1], intercept_sd)
                value = normal(_squeeze(mu), _squeeze(sig))
                out[slot] = _Default(value, _basis(intercept_basis + ", each level", scale))
                continue
            sizes, parts = _column_sizes(cols, _sd_of, f"sd({slot.coef})")
            sigmas = [rule.b * s / size for size in sizes]
            unit = _times(rule.b, scale)
            if all(p == "indicator" for p in parts):
                text = f"normal(0, {unit}): indicator column{'s' if len(parts) > 1 else ''}"
            elif len(parts) == 1:
                text = f"normal(0, {unit} / sd({slot.coef})), {parts[0]}"
            else:
                text = f"normal(0, {unit} / sd(x)) per column, {unit} for indicator columns"
            value = normal(_squeeze(np.zeros(len(sigmas))), _squeeze(np.asarray(sigmas)))
            out[slot] = _Default(value, _basis(text, scale))
        elif slot.cls == "sdgp":  # as a varying intercept's sd
            text = f"{rule.sd_dist}({_times(rule.sd, scale)}), as a varying intercept's sd"
            out[slot] = _Default(half(rule.sd * s), _basis(text, scale))
        elif slot.cls == "lscale":
            out[slot] = _Default(_gp_lscale_default(model, slot), _GP_LSCALE_BASIS)
        elif slot.cls == "sd":
            term = v.term(slot.term)
            unit = _times(rule.sd, scale)
            name = f"{rule.sd_dist}"
            if term.intercept_only:
                out[slot] = _Default(half(rule.sd * s), _basis(f"{name}({unit})", scale))
                continue
            if _mono.group_label(slot.term) is not None:  # mo(x)|g: one slope per step
                size = _rms_of(_columns(term.data).sum(axis=1))
                text = (
                    f"{name}({unit} / rms(x)), x the category codes of {slot.term.split('|')[0]}"
                    f", rms(x) = {_fmt(size)}"
                )
                value = half(rule.sd * s / size if size > 0 else rule.sd * s)
                out[slot] = _Default(value, _basis(text, scale))
                continue
            cols = _columns(term.data)
            sizes, texts = _column_sizes(cols, _rms_of, f"rms({slot.coef})")
            sigmas = [rule.sd * s / size for size in sizes]
            if all(t == "indicator" for t in texts):
                text = f"{name}({unit}): indicator column{'s' if len(texts) > 1 else ''}"
            elif len(texts) == 1:
                text = f"{name}({unit} / rms({slot.coef})), {texts[0]}"
            else:
                text = f"{name}({unit} / rms(x)) per column, {name}({unit}) for indicators"
            out[slot] = _Default(half(np.asarray(sigmas)), _basis(text, scale))
        elif slot.cls == "sigma" and v.family in _REAL_FAMILIES:
            # scale, not rate: PyMC folds 1 / lam into a constant of the compiled code, while
            # a scale stays a lifted input (the compiled code does not depend on the data)
            text = f"exponential(1 / {_times(rule.sigma, scale)})"
            value = _bambi.Prior("Exponential", scale=rule.sigma * s, auto_scale=False)
            out[slot] = _Default(value, _basis(text, scale))
    return out


def _dpar_default(model: Model, slot: _Slot, scale: _OutcomeScale, half) -> _Default:
    """lmmformula's default prior for a term of a distributional parameter's formula, on the
    scale of that parameter's link (log for sigma):

    - Intercept: ``normal(log(sd(y)), 1)`` for ``sigma`` of a real-valued family (the
      residual sd within a factor of e^2 of sd(y) with 95% prior mass), ``normal(0, 2.5)``
      otherwise;
    - b: ``normal(0, 1 / sd(x))`` per numeric column, ``normal(0, 1)`` per indicator (one
      sd of x multiplies the parameter by e^{+-2} at two prior sds);
    - sd: ``halfnormal(1)``, ``halfnormal(1 / rms(x))`` per numeric column.
    """
    v = _bambi.view(model.bambi)
    link = _bambi.dpar_link(model.bambi, slot.dpar)

    def normal(mu: Any, sigma: Any) -> _bambi.Prior:
        return _bambi.Prior("Normal", mu=mu, sigma=sigma, auto_scale=False)

    if slot.cls == "Intercept":
        real = v.family in _REAL_FAMILIES
        if slot.dpar == "sigma" and link == "log" and real and model.link_name == "identity":
            s = float(scale.scale)
            text = f"normal(log(sd(y)), 1), {slot.dpar} on the log scale; sd(y) = {_fmt(s)}"
            return _Default(normal(float(np.log(s)), 1.0), text)
        return _Default(normal(0.0, 2.5), f"normal(0, 2.5) on the {link} scale of {slot.dpar}")
    if slot.cls == "b":
        cols = _columns(v.term(slot.term, slot.dpar).data)
        sizes, parts = _column_sizes(cols, _sd_of, f"sd({slot.coef})")
        sigmas = np.asarray([1.0 / size for size in sizes])
        value = normal(_squeeze(np.zeros(len(sigmas))), _squeeze(sigmas))
        detail = ", ".join(parts)
        return _Default(value, f"normal(0, 1 / sd(x)) on the {link} scale of {slot.dpar}; {detail}")
    term = v.term(slot.term, slot.dpar)
    if term.intercept_only:
        return _Default(half(1.0), f"halfnormal(1) on the {link} scale of {slot.dpar}")
    sizes, texts = _column_sizes(_columns(term.data), _rms_of, f"rms({slot.coef})")
    value = half(np.asarray([1.0 / size for size in sizes]))
    return _Default(
        value, f"halfnormal(1 / rms(x)) on the {link} scale of {slot.dpar}; {', '.join(texts)}"
    )


def _gp_lscale_default(model: Model, slot: _Slot) -> Any:
    """brms' tuned default prior of a GP's length-scale (:func:`lmmformula._gp.lscale_prior`);
    with ``by``, the prior of the first level (each level keeps its own in the model)."""
    from lmmformula._gp import plan_gp

    gp = next(g for g in model.translation.gp_terms if g.label == slot.coef)
    kind, p1, p2 = plan_gp(model.data, gp).groups[0].lscale_prior
    if kind == "inv_gamma":
        return _bambi.Prior("InverseGamma", alpha=p1, beta=p2)
    return _bambi.Prior("HalfNormal", sigma=p2)


def _squeeze(arr: np.ndarray) -> Any:
    arr = np.asarray(arr, dtype=float)
    return float(arr.ravel()[0]) if arr.size == 1 else arr


def _basis(text: str, scale: _OutcomeScale) -> str:
    """The rule with the numbers it used, e.g. ``normal(mean(y), 2.5 sd(y)); sd(y) = 56.17``."""
    numbers = [t for t in (scale.location_text if "(" in scale.location_text else "",) if t]
    if scale.scale_text:
        numbers.append(scale.scale_text)
    used = [n for n in numbers if n.split(" = ")[0] in text]
    return text + (f"; {', '.join(used)}" if used else "")


# -- the summary table -------------------------------------------------------------------------
def _lkj_eta_default() -> float:
    return _bambi.DEFAULT_LKJ_ETA


def _mapping_sources(
    model: Model, slots: list[_Slot], mapping: Mapping[str, Any]
) -> dict[_Slot, str]:
    """Which slots a Bambi dict of priors (``priors={...}``) sets."""
    priors = dict(mapping)
    parent_name = _bambi.parent_name(model.bambi)
    nested = priors.get(parent_name) if isinstance(priors.get(parent_name), Mapping) else {}
    keys = set(priors) | set(nested)
    out = {}
    for slot in slots:
        if slot.cls == "cor":
            continue
        if slot.dpar:
            sub = priors.get(slot.dpar)
            sub = sub if isinstance(sub, Mapping) else {}
            hit = slot.term in sub or (slot.cls == "b" and "common" in sub)
            hit |= slot.cls == "sd" and "group_specific" in sub
            out[slot] = "user" if hit else "default"
            continue
        hit = slot.term in keys
        hit |= slot.cls == "b" and "common" in keys
        hit |= slot.cls == "sd" and "group_specific" in keys
        out[slot] = "user" if hit else "default"
    return out


def _in_force(model: Model, slot: _Slot, v: Any = None) -> Any:
    """The prior Bambi holds for ``slot`` (for ``sd``: the prior on the term's sigma); ``v``
    is the model's view (``_bambi.view``), read afresh when not given."""
    v = _bambi.view(model.bambi) if v is None else v
    if slot.cls == "Intercept" and slot.term == _ordinal.THRESHOLD:
        return v.auxiliary[slot.term]
    if slot.cls == "Intercept":
        return v.intercept(slot.dpar).prior
    if slot.cls == "simo":
        resolved = getattr(model, "resolved_priors", None)
        alpha = (getattr(resolved, "simo", None) or {}).get(slot.term)
        return _bambi.Prior("Dirichlet", a=_mono.DEFAULT_SIMO_ALPHA if alpha is None else alpha)
    if slot.cls == "b":
        return v.term(slot.term, slot.dpar).prior
    if slot.cls == "lscale":  # brms' gp(): the user's, else brms' tuned default
        override = getattr(model, "resolved_priors", None)
        override = getattr(override, "lscale", {}).get(slot.coef)
        return override if override is not None else _gp_lscale_default(model, slot)
    if slot.cls in ("sd", "sdgp"):
        term = v.term(slot.term, slot.dpar)
        return term.sd_prior if isinstance(term.sd_prior, _bambi.Prior) else term.prior
    if slot.cls == "cor":
        blocks = getattr(model, "blocks", None) or {}
        spec = next((b for b in blocks.values() if b.factor == slot.group), None)
        eta = spec.eta if spec is not None and spec.eta is not None else None
        if eta is None:
            eta = model.block_eta.get(slot.group, model.lkj_eta)
        return eta
    return v.auxiliary[slot.term]


def _lkj(eta: float) -> str:
    return f"lkj({_fmt(eta)})"


def prior_summary(model: Model) -> pd.DataFrame:
    """Every parameter class and term with the prior in force, like brms' ``prior_summary``.

    The priors are read from the Bambi model, so the ones shown are the ones in force:
    lmmformula's defaults (:func:`lmmformula_default_priors`; brms' with ``priors="brms"``,
    Bambi's with ``priors="bambi"``) merged with the user's, in Stan's spelling and rounded
    to 4 significant digits.

    Parameters
    ----------
    model : Model

    Returns
    -------
    pandas.DataFrame
        Columns ``prior``, ``class``, ``coef``, ``group``, ``source`` (``"user"`` or
        ``"default"``) and ``basis``: where the prior came from (for a default, the rule and
        the numbers it used, e.g. ``halfnormal(sd(y)); sd(y) = 56.33``; for a user's prior,
        the specification that set it). One row per class (``b``, ``sd``, ``cor``), per
        grouping factor (``sd``, ``cor``), per term (``b`` and ``sd``), and for the intercept
        and each auxiliary parameter. Class rows whose terms each have their own auto-scaled default
        read ``(auto-scaled)``.

    Examples
    --------
    >>> import lmmformula as lf
    >>> m = lf.model("Reaction ~ Days + (Days|Subject)", lf.load_dataset("sleepstudy"))
    >>> table = m.prior_summary()
    >>> table[["prior", "class", "coef", "group", "source"]]  # doctest: +NORMALIZE_WHITESPACE
                      prior      class       coef    group   source
    0  normal(298.5, 140.8)  Intercept                      default
    1         (auto-scaled)          b                      default
    2      normal(0, 48.89)          b       Days           default
    3         (auto-scaled)         sd                      default
    4         (auto-scaled)         sd             Subject  default
    5     halfnormal(56.33)         sd  Intercept  Subject  default
    6     halfnormal(10.55)         sd       Days  Subject  default
    7                lkj(2)        cor                      default
    8                lkj(2)        cor             Subject  default
    9  exponential(0.01775)      sigma                      default
    >>> print(table.loc[2, "basis"])
    normal(0, 2.5 sd(y) / sd(Days)), sd(Days) = 2.88; sd(y) = 56.33
    """
    rp = model.resolved_priors  # what the model was built with: nothing is resolved again
    view = _bambi.view(model.bambi)
    user = rp.mapping
    mapping = user is not None
    slots, resolved, by_level = list(rp.slots), rp.entries, rp.by_level
    brms = rp.base == BRMS
    brms_values = brms_default_priors(model, slots) if brms else {}
    sources = rp.sources
    rows: list[tuple[str, ...]] = []
    per_term = "scaled per term: see the rows below"

    def source_of(slot: _Slot) -> str:
        if mapping:
            return sources.get(slot, "default")
        res = resolved.get(slot)
        return res.source if res is not None else "default"

    def basis_of(slot: _Slot) -> str:
        if mapping and sources.get(slot) == "user":
            return "priors dict"
        res = resolved.get(slot)
        return res.basis if res is not None and res.basis else BAMBI_BASIS

    def add(prior: str, cls: str, coef: str, group: str, dpar: str, source: str, basis: str):
        rows.append((prior, cls, coef, group, dpar, source, basis))

    def level_row(
        cls: str,
        group: str,
        members: list[_Slot],
        brms_text: str | None,
        default_text: str,
        dpar: str = "",
    ) -> None:
        """A class row (group "") or a per-group row: the most specific prior at that level."""
        for key in ([(cls, "", group, dpar)] if group else []) + [(cls, "", "", dpar)]:
            spec = by_level.get(key)
            if spec is not None:
                # render through the first member so the half rule shows (normal -> halfnormal)
                value = _resolve_value(spec, members[0])
                text = _lkj(value) if cls == "cor" else _stan_text(value)
                add(text, cls, "", group, dpar, "user", str(spec))
                return
        if mapping and cls in ("b", "sd"):
            key = "common" if cls == "b" else "group_specific"
            level = dict(user).get(dpar) if dpar else dict(user)
            bambi_level = level.get(key) if isinstance(level, Mapping) else None
            if bambi_level is not None:
                add(_stan_text(bambi_level), cls, "", group, dpar, "user", f"priors dict ({key!r})")
                return
        if brms_text is not None:
            add(brms_text, cls, "", group, dpar, "default", _brms_basis(members[0]))
        else:
            basis = per_term if default_text == AUTO_SCALED else ""
            add(default_text, cls, "", group, dpar, "default", basis)

    def brms_text(members: list[_Slot]) -> str | None:
        if not brms or not members or members[0] not in brms_values:
            return None
        value = brms_values[members[0]]
        return _lkj(value) if members[0].cls == "cor" else _stan_text(value)

    def slot_row(slot: _Slot, coef: str = "", group: str = "") -> None:
        text = _stan_text(_in_force(model, slot, view))
        add(text, slot.cls, coef, group, slot.dpar, source_of(slot), basis_of(slot))

    def term_rows(dpar: str) -> None:
        """The Intercept, b and sd rows of one formula (brms' ``dpar``; "" for the main one)."""
        by_cls: dict[str, list[_Slot]] = {}
        for slot in slots:
            if slot.dpar == dpar:
                by_cls.setdefault(slot.cls, []).append(slot)
        for slot in by_cls.get("Intercept", []):
            slot_row(slot)
        if by_cls.get("b"):
            members = by_cls["b"]
            level_row("b", "", members, brms_text(members), AUTO_SCALED, dpar)
            for slot in members:
                slot_row(slot, slot.coef)
        if by_cls.get("sd"):
            members = by_cls["sd"]
            level_row("sd", "", members, brms_text(members), AUTO_SCALED, dpar)
            for group in dict.fromkeys(s.group for s in members):
                in_group = [s for s in members if s.group == group]
                level_row("sd", group, in_group, brms_text(in_group), AUTO_SCALED, dpar)
                for slot in in_group:
                    slot_row(slot, slot.coef, group)

    term_rows("")
    for dpar in dict.fromkeys(s.dpar for s in slots if s.dpar):
        term_rows(dpar)
    cors = [s for s in slots if s.cls == "cor"]
    if cors:
        members = cors
        # lkj_eta= is the user's choice when it differs from its default
        eta_user = model.lkj_eta != _lkj_eta_default()
        eta_source = "user" if eta_user else "default"
        eta_basis = (
            f"lkj_eta={_fmt(model.lkj_eta)}"
            if eta_user
            else f"lmmformula: lkj({_fmt(model.lkj_eta)}), the lkj_eta default"
        )
        level_row("cor", "", members, brms_text(members), _lkj(model.lkj_eta))
        if rows[-1][5] == "default" and not brms:
            rows[-1] = (*rows[-1][:5], eta_source, eta_basis)
        for slot in members:
            res = resolved.get(slot)
            source = res.source if res is not None else eta_source
            basis = res.basis if res is not None else eta_basis
            add(_lkj(_in_force(model, slot, view)), "cor", "", slot.group, "", source, basis)
    for slot in slots:
        if slot.cls not in _CLASS_LEVELS:
            slot_row(slot, slot.coef)  # a mo() simplex has brms' coef (mox1), a GP its label
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
