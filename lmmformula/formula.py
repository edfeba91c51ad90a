"""The formula layer: lme4/brms mixed-model formulas in, a small immutable description out.

This module reads formulas the way R's lme4 and brms read them and says what Bambi must be
given to build the same model. It imports neither pandas nor bambi; it uses formulae (the
formula parser Bambi itself uses) to expand the terms inside each bar exactly as Bambi will
name them and to check the Bambi formula it writes.

Three layers, each reaching only forwards:

1. :func:`tokenize` turns the string into tokens that keep their offsets in the formula, so
   every error can put a caret under the text at fault;
2. a small recursive-descent parser turns the tokens into a tree (R's operator precedence);
3. pure functions named after lme4's helpers work on the tree: :func:`find_bars`,
   :func:`no_bars`, :func:`expand_nested` (lme4's ``expandSlash``) and
   :func:`expand_double_verts`; :func:`translate` strings them together.

How formulas are read
---------------------
===============================  ============================================================
written                          read as
===============================  ============================================================
``(x|g)``, ``(1 + x|g)``         one correlated block on ``g``: ``1|g``, ``x|g`` (LKJ prior)
``(1 + x + z|g)``                one 3x3 block
``(0 + x|g)``, ``(-1 + x|g)``,   no intercept in the bar; a one-term block on ``g`` (a KxK
``(x - 1|g)``                    block when x is a factor, independent when x is numeric)
``(1|g)``                        an independent varying intercept (no block)
``(x||g)``, ``(x + z||g)``       the same terms as ``(x|g)``, all independent (no block)
``(1|g) + (0 + x|g)``            separate bars are separate blocks: independent
``(1|a/b)``, ``(x|a/b)``         ``(1|a) + (1|a:b)``; ``(x|a) + (x|a:b)`` (two blocks)
``(1|a:b)``                      grouped by the interaction (Bambi names the factor ``a:b``)
``cbind(s, f) ~ ...``            binomial, ``s`` successes out of ``s + f`` trials (lme4)
``s | trials(n) ~ ...``          binomial, Bambi's ``p(s, n)`` (brms)
``y | weights(w) ~ ...``         Bambi's ``weighted(y, w)`` (brms)
``p(s, n) ~ ...``                binomial (Bambi)
``(a + b)^2``                    ``(a + b)**2`` (formulae spells R's ``^`` as ``**``)
``gp(x1, ..., xk)``              brms' exact Gaussian process on the unique covariate
                                 combinations: ``(1|gpx1...)`` in the Bambi formula, built by
                                 :mod:`lmmformula._gp` (``k =``, ``c =``: brms' Hilbert-space
                                 approximation; ``by = f``: one GP per level of ``f``)
``(1|gr(g, cov = K))``           ``(1|g)`` with the levels correlated as ``data2["K"]`` (brms);
                                 ``gr(g)`` alone is ``g``
===============================  ============================================================

Everything else in the fixed part passes to Bambi untouched (``x*z``, ``C(x)``, ``scale(x)``,
``0 +``, ``-1``, ``offset(z)``, ``np.log(x)``, ``I(...)``, ``{...}``, backtick names).

Where lmmformula departs from R, or cannot tell
-----------------------------------------------
* ``(f||g)`` with a factor ``f`` follows brms, glmmTMB and lme4's newer ``diag()``: an
  intercept plus the usual contrasts of ``f``, every standard deviation separate, no
  correlations. lme4's classic ``||`` expanded to ``(1|g) + (0 + f|g)``, which leaves a full
  KxK correlated block on the levels of ``f``. A note says so whenever ``||`` is used.
* Each bar's terms are coded as R's ``model.matrix`` codes the bar's own formula (the model
  layer sees to it, since formulae would code ``f`` in ``(1|g) + (0 + f|g)`` with K - 1
  contrasts because ``g`` already has an intercept): ``(0 + f|g)`` gives all K levels, a
  KxK block, as in lme4.
* A single-term bar whose term is not the intercept, such as ``(0 + x|g)``, is recorded as a
  one-term block: it is a KxK block when ``x`` is a factor with K levels. The model layer
  treats a one-column block as independent.
* Every bar is its own block, as in lme4: ``(1 + x|g) + (0 + z + w|g)`` gives two correlated
  blocks on ``g`` (keys ``g`` and ``g__2``), uncorrelated with each other.
* The same group-level term twice (``(x|g) + (1|g)``) is refused; formulae would merge them.
* ``cbind(s, f)`` on the left follows lme4 (binomial). In brms it means a multivariate
  response.
* Bambi itself knows ``log``, ``log2``, ``log10``, ``exp``, ``exp2`` and ``abs``; formulas
  that use ``np.*``, ``sqrt``, ``log1p`` or ``expm1`` need :func:`bambi_namespace` passed to
  ``bmb.Model(..., extra_namespace=...)``.
* Each bar becomes one Bambi bar in canonical form (``(x|g)`` -> ``(1 + x|g)``,
  ``(x - 1|g)`` -> ``(0 + x|g)``); the Bambi formula does not say which terms are correlated,
  :attr:`Translation.correlated` does.
* Numbers in the fixed part are ``0`` and ``1`` on their own or whole-number powers:
  ``y ~ 2 + x`` is refused (formulae would add a constant column named ``2``).
* ``(1|a*b)`` and ``(1|a + b)`` are refused with the bars to write instead; ``factor(x)`` is
  refused in favour of formulae's ``C(x)``.
* brms' ``bf(y ~ ..., sigma ~ ...)`` gives each distributional parameter its own formula
  (:attr:`Translation.dpar_formulas`); brms' three-part bars ``(1 + x | p | g)`` join every
  term with the ID ``p`` (in any of the formulas) into one correlated block on ``g``.
* ``mm()``, ``cs()``, ``s()``/``t2()``, ``me()``, ``mi()``, glmmTMB's covariance structures
  and the brms addition terms other than ``trials()`` and ``weights()`` are refused with
  :class:`UnsupportedSyntaxError`, which names the alternative where there is one.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NoReturn

import formulae
from formulae.terms import GroupSpecificTerm

from lmmformula.errors import FormulaSyntaxError, UnsupportedSyntaxError

__all__ = [
    "Bar",
    "CovTerm",
    "GPTerm",
    "GroupTerm",
    "Response",
    "Token",
    "Translation",
    "bambi_namespace",
    "bf",
    "expand_double_verts",
    "expand_nested",
    "find_bars",
    "no_bars",
    "tokenize",
    "translate",
]


# ---------------------------------------------------------------------------------------------
# The contract with the model layer
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupTerm:
    """One group-level term as Bambi names it.

    Attributes
    ----------
    name : str
        Bambi's name of the term, e.g. ``"1|station"``, ``"TEMP|station"``, ``"x:z|g"``.
    expr : str
        The left side of the term as Bambi names it, e.g. ``"1"``, ``"TEMP"``, ``"x:z"``.
    factor : str
        The grouping factor as Bambi names it, e.g. ``"station"`` or ``"a:b"``.
    block : str or None
        Key of the correlated block in :attr:`Translation.correlated` that holds this term, or
        ``None`` when the term has independent priors.
    bar : int
        Index in :attr:`Translation.bars` of the bar the term comes from.
    dpar : str
        The distributional parameter whose formula has the term (``"sigma"`` in
        ``bf(y ~ x, sigma ~ (1|g))``); ``""`` for the main formula. A term of a parameter's
        formula is named as Bambi names it, with the parameter as prefix: ``"sigma_1|g"``.
    """

    name: str
    expr: str
    factor: str
    block: str | None
    bar: int = 0
    dpar: str = ""

    @property
    def formulae_name(self) -> str:
        """The term's name inside its own formula (without the parameter's prefix)."""
        return self.name[len(self.dpar) + 1 :] if self.dpar else self.name


@dataclass(frozen=True)
class GPTerm:
    """brms' ``gp(x1, ..., xk, by = , k = , c = )`` as written (built by :mod:`lmmformula._gp`).

    Attributes
    ----------
    text : str
        The call as written, e.g. ``"gp(x, k = 20)"``.
    label : str
        brms' label: ``gp`` followed by the covariates' (and ``by``'s) names, e.g. ``"gpx"``,
        ``"gplatlon"``; the summary's ``sdgp(gpx)`` and ``lscale(gpx)``.
    column : str
        The derived grouping column (one level per unique covariate combination) that the
        model layer adds to its copy of the data; the Bambi formula has ``(1|column)``.
    covariates : tuple of str
        The covariates.
    by : str or None
        A factor: one GP per level.
    k : int or None
        Number of basis functions per dimension of the approximate GP; ``None``: exact GP.
    c : tuple of float
        brms' boundary factor per covariate (approximate GP only; default 5/4).
    scale : bool
        brms' ``scale``: divide the covariates by the largest distance between two points.
    start, end : int
        The span of the call in the formula.
    """

    text: str
    label: str
    column: str
    covariates: tuple[str, ...]
    by: str | None = None
    k: int | None = None
    c: tuple[float, ...] = (1.25,)
    scale: bool = True
    start: int = 0
    end: int = 0

    @property
    def term(self) -> str:
        """Bambi's name of the derived group-level term."""
        return f"1|{self.column}"


@dataclass(frozen=True)
class CovTerm:
    """brms' ``gr(g, cov = K)``: the levels of ``g`` correlated as the known matrix K.

    Attributes
    ----------
    factor : str
        The grouping factor.
    key : str
        The name of the matrix in ``data2``.
    start, end : int
        The span of ``gr(...)`` in the formula.
    """

    factor: str
    key: str
    start: int = 0
    end: int = 0


@dataclass(frozen=True)
class Response:
    """What the left side of the formula is.

    Attributes
    ----------
    kind : {"plain", "binomial"}
        ``"binomial"`` for ``cbind(s, f)``, ``s | trials(n)`` and ``p(s, n)``.
    source : {"plain", "cbind", "trials", "p"}
        The notation the user wrote.
    text : str
        The left side as written.
    successes, failures, trials : str or None
        Expressions (column names in the simple case) for the binomial parts: ``cbind`` sets
        ``successes`` and ``failures`` (trials are their sum, lme4's meaning); ``trials()`` and
        ``p()`` set ``successes`` and ``trials``.
    weights : str or None
        brms' ``y | weights(w)``: the column of observation weights.
    bambi : str
        The left side in Bambi's notation.
    """

    kind: Literal["plain", "binomial"]
    source: Literal["plain", "cbind", "trials", "p"]
    text: str
    bambi: str
    successes: str | None = None
    failures: str | None = None
    trials: str | None = None
    weights: str | None = None


@dataclass(frozen=True)
class Translation:
    """A formula read with lme4/brms semantics and rewritten for Bambi.

    Attributes
    ----------
    formula : str
        The formula as written.
    bambi_formula : str
        A formula Bambi 0.21 parses, whose group-level terms are exactly those lme4 creates.
        Each bar of the formula (after ``a/b`` is expanded) is one Bambi bar in a canonical
        form, ``(1 + x|g)``, ``(0 + x|g)`` or ``(1|g)``; which terms are correlated is not
        written in it (Bambi gives every term its own prior) but in :attr:`correlated`.
    response : Response
        What the left side is.
    fixed : str
        The population-level (fixed) part of the right side, in Bambi's notation; ``"1"``
        when the right side has only group-level terms.
    group_terms : tuple of GroupTerm
        Every group-level term, in formula order.
    correlated : dict of str to tuple of str
        For each correlated block (each bar, as in lme4, but for ``||`` bars and bars with the
        intercept alone), the Bambi names of its terms, keyed by the grouping factor as Bambi
        names it for the first block on a factor and ``factor__2``, ``factor__3`` for further
        ones: ``{"station": ("1|station", "TEMP|station")}``; ``(1 + x|g) + (0 + z + w|g)``
        gives ``{"g": ("1|g", "x|g"), "g__2": ("z|g", "w|g")}``. A bar with a single term other
        than the intercept, such as ``(0 + x|g)``, is a one-term block (KxK when ``x`` is a
        factor with K levels); a one-column block is treated as independent by the model
        layer.
    family : str or None
        ``"binomial"`` where the response form implies it, else ``None``.
    variables : tuple of str
        The data columns the formula uses (as formulae finds them), response first, then in
        order of appearance; contrast names such as ``Sum`` in ``C(f, Sum)`` are left out.
    notes : tuple of str
        Plain-language remarks on how the formula was read (e.g. ``(f||g)`` with a factor).
    bars : tuple of str
        Each bar of the Bambi formula, in order (``(1 + x|g)``).
    interaction_factors : dict of str to tuple of str
        Grouping factors that are interactions (``a:b``, also from ``a/b``), with the columns
        they combine. As in lme4 their levels are the combinations present in the data: the
        model layer adds a column of that name to its copy of the data, and the Bambi formula
        names it in backticks.
    intercept_as_b : bool
        brms' ``0 + Intercept + ...``: the intercept is sampled as an ordinary
        population-level effect, the predictors uncentred.
    dpar_formulas : dict of str to str
        brms' distributional formulas, ``bf(y ~ x, sigma ~ z + (1|g))``: per distributional
        parameter, its formula in Bambi's notation (``{"sigma": "sigma ~ z + (1|g)"}``). The
        parameter's group-level terms are in :attr:`group_terms` (with ``dpar`` set) and its
        blocks in :attr:`correlated`, where terms that share a brms ID (``(1|p|g)``) in any of
        the formulas form one block.
    gp_terms : tuple of GPTerm
        brms' ``gp()`` terms; each is also a ``(1|column)`` term of the Bambi formula whose
        effects the model builds as the GP's values at the unique covariate combinations.
    cov_terms : dict of str to CovTerm
        Group-level terms on ``gr(g, cov = K)`` (by Bambi name, e.g. ``"1|g"``): their levels
        are correlated as the matrix ``data2[K]``.
    """

    formula: str
    bambi_formula: str
    response: Response
    fixed: str
    group_terms: tuple[GroupTerm, ...]
    correlated: dict[str, tuple[str, ...]]
    family: str | None
    variables: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())
    bars: tuple[str, ...] = field(default=())
    interaction_factors: dict[str, tuple[str, ...]] = field(default_factory=dict)
    intercept_as_b: bool = False
    dpar_formulas: dict[str, str] = field(default_factory=dict)
    gp_terms: tuple[GPTerm, ...] = ()
    cov_terms: dict[str, CovTerm] = field(default_factory=dict)

    @property
    def bambi_formulas(self) -> tuple[str, ...]:
        """The main Bambi formula followed by each distributional parameter's (``bmb.Formula``
        takes them in this order)."""
        return (self.bambi_formula, *self.dpar_formulas.values())

    def block_factor(self, key: str) -> str:
        """The grouping factor of the correlated block ``key``."""
        return next(g.factor for g in self.group_terms if g.block == key)

    def bar_terms(self) -> list[tuple[bool, tuple[str, ...]]]:
        """For each bar of :attr:`bars`: whether it has an intercept, and its terms' names.

        The model layer codes the factors of a bar's terms as R's ``model.matrix`` codes the
        bar's own formula: ``(0 + f|g)`` gives all K levels of ``f`` even next to ``(1|g)``.
        """
        out = []
        for k, text in enumerate(self.bars):
            names = tuple(g.formulae_name for g in self.group_terms if g.bar == k)
            out.append((text.startswith("(1"), names))
        return out

    @property
    def grouping_factors(self) -> tuple[str, ...]:
        """The grouping factors in formula order, each once."""
        return tuple(dict.fromkeys(t.factor for t in self.group_terms))


def bambi_namespace() -> dict[str, Any]:
    """Names a translated formula may use that Bambi does not define itself.

    Pass the result to ``bmb.Model(..., extra_namespace=bambi_namespace())`` so that
    ``np.log(y)``, ``sqrt(y)``, ``log1p(y)`` and ``expm1(y)`` work whatever the caller's
    globals hold.

    Returns
    -------
    dict of str to object
        ``np`` and ``numpy`` (the numpy module), numpy's ``sqrt``, ``log1p``, ``expm1``, and
        ``contr`` (R's contrasts for ``C(f, contr.sum)``; :mod:`lmmformula.contrasts`).

    Examples
    --------
    >>> sorted(bambi_namespace())[:6]
    ['contr', 'contr_helmert', 'contr_poly', 'contr_sum', 'contr_treatment', 'expm1']
    """
    import numpy

    from lmmformula._mono import Mo
    from lmmformula.contrasts import contr

    return {
        "mo": Mo,  # brms' monotonic effects (lmmformula._mono)
        "np": numpy,
        "numpy": numpy,
        "sqrt": numpy.sqrt,
        "log1p": numpy.log1p,
        "expm1": numpy.expm1,
        "contr": contr,
        **{f"contr_{name}": value for name, value in vars(contr).items()},
    }


# ---------------------------------------------------------------------------------------------
# Layer 1: tokens
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """One token of a formula, with its span ``formula[start:end]``.

    Attributes
    ----------
    kind : {"name", "number", "string", "backtick", "op"}
        What the token is. Names may contain dots (``np.log``, ``my.var``).
    text : str
        The token as written.
    start, end : int
        Its offsets in the formula.
    """

    kind: Literal["name", "number", "string", "backtick", "op"]
    text: str
    start: int
    end: int


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
    |(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<name>(?:[^\W\d]|\.)[\w.]*)
    |(?P<backtick>`[^`]*`)
    |(?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    |(?P<op>%in%|\*\*|\|{3,}|\|\||==|!=|<=|>=|//|[~+\-*/:^|(){}\[\],=<>!&%@])
    """,
    re.VERBOSE,
)

_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {v: k for k, v in _OPENERS.items()}
_MAX_DEPTH = 60


def tokenize(formula: str) -> tuple[Token, ...]:
    """Split a formula into tokens that keep their offsets.

    Parameters
    ----------
    formula : str
        The formula.

    Returns
    -------
    tuple of Token
        Every token but whitespace, in order.

    Raises
    ------
    FormulaSyntaxError
        For an unterminated backtick name or string, a character no formula uses, or ``|||``.

    Examples
    --------
    >>> [t.text for t in tokenize("y ~ (x||g)")]
    ['y', '~', '(', 'x', '||', 'g', ')']
    """
    tokens: list[Token] = []
    pos = 0
    while pos < len(formula):
        m = _TOKEN_RE.match(formula, pos)
        if m is None:
            _raise_bad_character(formula, pos)
        kind = m.lastgroup
        if kind == "op" and m.group().startswith("|||"):
            raise FormulaSyntaxError(
                f"'{m.group()}' is not an operator",
                formula,
                m.start(),
                m.end(),
                hint="Write | for correlated terms, (x|g), or || for uncorrelated ones, (x||g).",
            )
        if kind != "ws":
            tokens.append(Token(kind, m.group(), m.start(), m.end()))  # type: ignore[arg-type]
        pos = m.end()
    return tuple(tokens)


def _raise_bad_character(formula: str, pos: int) -> NoReturn:
    ch = formula[pos]
    if ch == "`":
        raise FormulaSyntaxError(
            "unterminated backtick name", formula, pos, len(formula), hint="Close it with `."
        )
    if ch in "\"'":
        raise FormulaSyntaxError(
            f"unterminated string: no closing {ch}", formula, pos, len(formula)
        )
    hint = None
    if ch == "$":
        hint = "Name the column directly: a formula is read against the data frame."
    raise FormulaSyntaxError(f"unexpected character {ch!r}", formula, pos, pos + 1, hint=hint)


def _match_brackets(formula: str, tokens: tuple[Token, ...]) -> dict[int, int]:
    """Map the index of every opening bracket token to the index of its closing one."""
    match: dict[int, int] = {}
    stack: list[int] = []
    for i, tok in enumerate(tokens):
        if tok.kind != "op":
            continue
        if tok.text in _OPENERS:
            stack.append(i)
            if len(stack) > _MAX_DEPTH:
                raise FormulaSyntaxError(
                    f"brackets nested more than {_MAX_DEPTH} deep", formula, tok.start, tok.end
                )
        elif tok.text in _CLOSERS:
            if not stack:
                raise FormulaSyntaxError(
                    f"unmatched '{tok.text}': there is no '{_CLOSERS[tok.text]}' to close",
                    formula,
                    tok.start,
                    tok.end,
                    hint="Remove it or add the opening bracket it closes.",
                )
            opener = tokens[stack[-1]]
            if _OPENERS[opener.text] != tok.text:
                raise FormulaSyntaxError(
                    f"'{tok.text}' cannot close '{opener.text}' (opened at column "
                    f"{opener.start + 1}); expected '{_OPENERS[opener.text]}'",
                    formula,
                    tok.start,
                    tok.end,
                )
            match[stack.pop()] = i
    if stack:
        tok = tokens[stack[-1]]
        raise FormulaSyntaxError(
            f"unmatched '{tok.text}': it is never closed",
            formula,
            tok.start,
            tok.end,
            hint=f"Add the '{_OPENERS[tok.text]}' that closes it.",
        )
    return match


# ---------------------------------------------------------------------------------------------
# Layer 2: the tree
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    start: int
    end: int


@dataclass(frozen=True)
class _Atom(_Node):
    kind: str  # name, number, string, backtick, brace
    text: str


@dataclass(frozen=True)
class _Call(_Node):
    func: str
    func_end: int
    lo: int  # token index of the first token inside the parentheses
    hi: int  # token index of the closing parenthesis
    args: tuple[tuple[int, int], ...]  # character spans of the comma-separated arguments


@dataclass(frozen=True)
class _Paren(_Node):
    inner: _Node


@dataclass(frozen=True)
class _Unary(_Node):
    op: str
    operand: _Node


@dataclass(frozen=True)
class _Binary(_Node):
    op: str
    left: _Node
    right: _Node
    op_start: int
    op_end: int


_BARS = ("|", "||")
# R's precedence, lowest first; unary + and - bind at 6. '^' and '**' are right-associative.
_BINARY = {"|": 1, "||": 1, "+": 2, "-": 2, "*": 3, "/": 3, "%in%": 4, ":": 5, "**": 7, "^": 7}
_UNARY_PREC = 6


def _is_bar(node: _Node) -> bool:
    return isinstance(node, _Binary) and node.op in _BARS


def _unparen(node: _Node) -> _Node:
    while isinstance(node, _Paren):
        node = node.inner
    return node


class _Parser:
    """Recursive descent over ``tokens[lo:hi]`` with R's operator precedence."""

    def __init__(
        self,
        formula: str,
        tokens: tuple[Token, ...],
        match: dict[int, int],
        lo: int,
        hi: int,
        *,
        bar_ok: bool,
        depth: int = 0,
        rewrites: dict[int, tuple[int, str]] | None = None,
    ) -> None:
        self.formula = formula
        self.tokens = tokens
        self.match = match
        self.i = lo
        self.hi = hi
        self.bar_ok = bar_ok
        self.depth = depth
        self.rewrites = rewrites if rewrites is not None else {}

    # -- helpers ----------------------------------------------------------------------------
    def _error(self, message: str, start: int, end: int, hint: str | None = None) -> NoReturn:
        raise FormulaSyntaxError(message, self.formula, start, end, hint=hint)

    def _peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < self.hi else None

    def _sub(self, lo: int, hi: int, *, bar_ok: bool) -> _Node:
        return _Parser(
            self.formula,
            self.tokens,
            self.match,
            lo,
            hi,
            bar_ok=bar_ok,
            depth=self.depth + 1,
            rewrites=self.rewrites,
        ).parse()

    # -- grammar ----------------------------------------------------------------------------
    def parse(self) -> _Node:
        node = self._expr(0, None)
        tok = self._peek()
        if tok is not None:
            self._error(
                f"unexpected '{tok.text}' after '{self.formula[node.start : node.end]}'",
                tok.start,
                tok.end,
                hint="Join terms with an operator such as + or :.",
            )
        return node

    def _expr(self, min_prec: int, after: Token | None) -> _Node:
        left = self._unary(after)
        while True:
            tok = self._peek()
            if tok is None or tok.kind != "op" or tok.text not in _BINARY:
                return left
            prec = _BINARY[tok.text]
            if prec < min_prec:
                return left
            if tok.text in _BARS and not self.bar_ok:
                self._error(
                    f"'{tok.text}' outside parentheses",
                    tok.start,
                    tok.end,
                    hint=(
                        "A group-level term is written in parentheses, e.g. (1 + x|g); "
                        "a bar cannot be part of another term or of a function call."
                    ),
                )
            self.i += 1
            if tok.text in ("^", "**"):
                right = self._expr(prec, tok)  # right-associative
                if tok.text == "^":
                    self.rewrites[tok.start] = (tok.end, "**")
            else:
                right = self._expr(prec + 1, tok)
            left = _Binary(left.start, right.end, tok.text, left, right, tok.start, tok.end)

    def _unary(self, after: Token | None) -> _Node:
        tok = self._peek()
        if tok is not None and tok.kind == "op" and tok.text in ("+", "-"):
            self.i += 1
            operand = self._expr(_UNARY_PREC, tok)
            return _Unary(tok.start, operand.end, tok.text, operand)
        return self._atom(after)

    def _atom(self, after: Token | None) -> _Node:
        tok = self._peek()
        if tok is None:
            if after is None:  # an empty range: callers check for it; keep a clear message
                at = self.tokens[self.hi - 1] if self.hi > 0 else None
                start = at.end if at else 0
                self._error("expected a term", start, start + 1)
            if after.text in _BARS:
                self._error(
                    f"nothing on the right of '{after.text}': the grouping factor is missing",
                    after.start,
                    after.end,
                    hint="Name the grouping factor after the bar, e.g. (1|g).",
                )
            self._error(
                f"expected a term after '{after.text}'",
                after.start,
                after.end,
                hint=f"Remove the trailing '{after.text}' or add the term it should join.",
            )
        if tok.kind == "op" and tok.text in _BARS:
            self._error(
                f"nothing on the left of '{tok.text}': the terms of the bar are missing",
                tok.start,
                tok.end,
                hint="Write (1|g) for a varying intercept, or (1 + x|g) for a slope too.",
            )
        if tok.kind in ("number", "string", "backtick"):
            self.i += 1
            return _Atom(tok.start, tok.end, tok.kind, tok.text)
        if tok.kind == "name":
            nxt = self.tokens[self.i + 1] if self.i + 1 < self.hi else None
            if nxt is not None and nxt.text == "(":
                return self._call(tok)
            if tok.text == ".":
                raise UnsupportedSyntaxError(
                    "'.' (all other columns) is not supported",
                    self.formula,
                    tok.start,
                    tok.end,
                    hint="List the columns you mean, e.g. y ~ x + z.",
                )
            self.i += 1
            return _Atom(tok.start, tok.end, "name", tok.text)
        if tok.text == "(":
            close = self.match[self.i]
            if close == self.i + 1:
                self._error("empty parentheses", tok.start, self.tokens[close].end)
            if self.depth >= _MAX_DEPTH:
                self._error("parentheses nested too deep", tok.start, tok.end)
            inner = self._sub(self.i + 1, close, bar_ok=True)
            self.i = close + 1
            return _Paren(tok.start, self.tokens[close].end, inner)
        if tok.text == "{":
            close = self.match[self.i]
            if close == self.i + 1:
                self._error("empty braces", tok.start, self.tokens[close].end)
            self.i = close + 1
            end = self.tokens[close].end
            return _Atom(tok.start, end, "brace", self.formula[tok.start : end])
        where = f" after '{after.text}'" if after is not None else ""
        self._error(f"expected a term{where}, found '{tok.text}'", tok.start, tok.end)

    def _call(self, name: Token) -> _Call:
        open_i = self.i + 1
        close = self.match[open_i]
        args: list[tuple[int, int]] = []
        lo = open_i + 1
        j = lo
        arg_start = lo
        while j < close:
            t = self.tokens[j]
            if t.text in _OPENERS and t.kind == "op":
                j = self.match[j] + 1
                continue
            if t.text == "," and t.kind == "op":
                args.append(self._arg_span(arg_start, j))
                arg_start = j + 1
            j += 1
        if close > lo:
            args.append(self._arg_span(arg_start, close))
        self.i = close + 1
        end = self.tokens[close].end
        return _Call(name.start, end, name.text, name.end, lo, close, tuple(args))

    def _arg_span(self, lo: int, hi: int) -> tuple[int, int]:
        if lo >= hi:  # an empty argument: point at the comma or bracket after it
            return (self.tokens[hi].start, self.tokens[hi].start)
        return (self.tokens[lo].start, self.tokens[hi - 1].end)


@dataclass(frozen=True)
class _Formula:
    text: str
    tokens: tuple[Token, ...]
    tilde: Token
    lhs: _Node
    rhs: _Node
    lhs_range: tuple[int, int]  # token index ranges
    rhs_range: tuple[int, int]
    rewrites: dict[int, tuple[int, str]]
    match: dict[int, int]

    def source(self, start: int, end: int) -> str:
        """``text[start:end]`` with the parser's rewrites (``^`` -> ``**``) applied."""
        out: list[str] = []
        pos = start
        for at in sorted(k for k in self.rewrites if start <= k < end):
            stop, new = self.rewrites[at]
            out += [self.text[pos:at], new]
            pos = stop
        out.append(self.text[pos:end])
        return "".join(out).strip()

    def node_text(self, node: _Node) -> str:
        return self.source(node.start, node.end)


_PLAIN_NAME = re.compile(r"[^\W\d][\w.]*")
_R_FUNCTIONS = {"factor": "C", "as.factor": "C"}
_R_CONTRASTS = {f"contr.{k}": f"contr_{k}" for k in ("sum", "treatment", "helmert", "poly")}


def _r_spellings(tokens: tuple[Token, ...]) -> dict[int, tuple[int, str]]:
    """Rewrites that give R's spellings their R meaning in formulae's notation.

    ``^`` is a power everywhere in R: in the formula (``(a + b)^2``, formulae's ``**``) and
    inside calls (``I(x^2)``, where Python's ``^`` would be a bitwise xor); ``factor(x)`` and
    ``as.factor(x)`` are formulae's ``C(x)``; ``contr.sum`` and the other R contrasts are
    :mod:`lmmformula.contrasts`' ``contr_sum``, .... Each rewrite maps a token's start to its
    end and the new text.
    """
    rewrites: dict[int, tuple[int, str]] = {}
    for i, tok in enumerate(tokens):
        if tok.kind == "op" and tok.text == "^":
            rewrites[tok.start] = (tok.end, "**")
        elif (
            tok.kind == "name"
            and tok.text in _R_FUNCTIONS
            and i + 1 < len(tokens)
            and tokens[i + 1].text == "("
        ):
            rewrites[tok.start] = (tok.end, _R_FUNCTIONS[tok.text])
        elif tok.kind == "name" and tok.text in _R_CONTRASTS:
            rewrites[tok.start] = (tok.end, _R_CONTRASTS[tok.text])
    return rewrites


def _parse(formula: object) -> _Formula:
    if not isinstance(formula, str):
        shown = repr(formula)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise FormulaSyntaxError(
            f"a formula must be a string, not {type(formula).__name__}",
            shown,
            0,
            len(shown),
            hint='Write it in quotes, e.g. "y ~ x + (1|g)".',
        )
    if not formula.strip():
        raise FormulaSyntaxError(
            "the formula is empty",
            formula,
            0,
            len(formula),
            hint='Write response ~ terms, e.g. "y ~ x + (1|g)".',
        )
    tokens = tokenize(formula)
    match = _match_brackets(formula, tokens)
    tildes = [i for i, t in enumerate(tokens) if t.text == "~" and t.kind == "op"]
    if not tildes:
        raise FormulaSyntaxError(
            "missing '~' between the response and the terms",
            formula,
            0,
            len(formula),
            hint='Write response ~ terms, e.g. "y ~ x + (1|g)".',
        )
    if len(tildes) > 1:
        t = tokens[tildes[1]]
        raise FormulaSyntaxError(
            "more than one '~'",
            formula,
            t.start,
            t.end,
            hint="A formula has one '~', between the response and the terms.",
        )
    k = tildes[0]
    tilde = tokens[k]
    depth = sum(1 for o, c in match.items() if o < k < c)
    if depth:
        raise FormulaSyntaxError(
            "'~' inside brackets", formula, tilde.start, tilde.end, hint="Remove the brackets."
        )
    if k == 0:
        raise FormulaSyntaxError(
            "no response on the left of '~'",
            formula,
            tilde.start,
            tilde.end,
            hint="lmmformula models a response: write y ~ x.",
        )
    if k == len(tokens) - 1:
        raise FormulaSyntaxError(
            "nothing on the right of '~'",
            formula,
            tilde.start,
            tilde.end,
            hint="Write y ~ 1 for an intercept-only model.",
        )
    rewrites = _r_spellings(tokens)
    lhs = _Parser(formula, tokens, match, 0, k, bar_ok=True, rewrites=rewrites).parse()
    rhs = _Parser(formula, tokens, match, k + 1, len(tokens), bar_ok=False, rewrites=rewrites)
    return _Formula(
        formula, tokens, tilde, lhs, rhs.parse(), (0, k), (k + 1, len(tokens)), rewrites, match
    )


# ---------------------------------------------------------------------------------------------
# Layer 3: lme4's helpers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One group-level bar of a formula.

    Attributes
    ----------
    lhs : str
        The terms on the left of the bar, as written, e.g. ``"1 + x"``, ``"0 + x"``.
    factor : str
        The grouping factor as written (``"g"``, ``"a/b"``); after :func:`expand_nested`, one
        factor each (``"a"``, ``"a:b"``).
    op : {"|", "||"}
        The bar as written; :func:`expand_double_verts` turns ``"||"`` into ``"|"`` with
        ``independent=True``.
    independent : bool
        Whether the terms of the bar get independent priors (from ``||``).
    id : str
        brms' ID of a three-part bar ``(terms | ID | factor)``: the terms of every bar with
        the same ID (in any formula of a ``bf()``) form one correlated block. ``""`` if none.
    start, end : int
        The span of the bar in the formula, parentheses included.
    lhs_node, factor_node, source
        The parse the bar came from (internal; ``None`` for a bar built by hand).
    """

    lhs: str
    factor: str
    op: Literal["|", "||"] = "|"
    independent: bool = False
    id: str = ""
    start: int = 0
    end: int = 0
    lhs_node: _Node | None = field(default=None, repr=False, compare=False)
    factor_node: _Node | None = field(default=None, repr=False, compare=False)
    source: str | None = field(default=None, repr=False, compare=False)


def _as_formula(formula: str | _Formula) -> _Formula:
    return formula if isinstance(formula, _Formula) else _parse(formula)


def _addends(node: _Node, sign: str = "+") -> list[tuple[str, _Node]]:
    """Flatten a sum into signed addends; parentheses around a sum are dropped, as in R."""
    if isinstance(node, _Binary) and node.op in ("+", "-"):
        right_sign = sign if node.op == "+" else _flip(sign)
        return _addends(node.left, sign) + _addends(node.right, right_sign)
    if isinstance(node, _Unary):
        return _addends(node.operand, sign if node.op == "+" else _flip(sign))
    if isinstance(node, _Paren):
        inner = _unparen(node)
        if _is_bar(inner):
            return [(sign, inner)]
        if isinstance(inner, _Binary | _Unary) and getattr(inner, "op", "") in ("+", "-"):
            return _addends(inner, sign)
    return [(sign, node)]


def _flip(sign: str) -> str:
    return "-" if sign == "+" else "+"


def _rhs_parts(f: _Formula) -> tuple[list[tuple[str, _Node]], list[tuple[str, _Node]]]:
    """Split the right side into fixed addends and bar addends, checking where bars are."""
    fixed: list[tuple[str, _Node]] = []
    bars: list[tuple[str, _Node]] = []
    for sign, node in _addends(f.rhs):
        if _is_bar(node):
            if sign == "-":
                raise FormulaSyntaxError(
                    "a group-level term cannot be subtracted",
                    f.text,
                    _paren_start(f, node),
                    _paren_end(f, node),
                    hint="Add it with + or leave it out.",
                )
            bars.append((sign, node))
        else:
            _reject_nested_bars(f, node)
            _check_numbers(f, node, addend=True)
            fixed.append((sign, node))
    return fixed, bars


def _check_numbers(f: _Formula, node: _Node, *, addend: bool) -> None:
    """Numbers in a term are 0 or 1 (the intercept) on their own, or powers: ``(a + b)^2``."""
    if isinstance(node, _Atom) and node.kind == "number":
        if not addend or node.text not in ("0", "1"):
            raise FormulaSyntaxError(
                f"the number '{node.text}' cannot be a term"
                + ("" if addend else " or part of one"),
                f.text,
                node.start,
                node.end,
                hint=(
                    "Numbers in a formula are 0 or 1 (with or without the intercept) or "
                    "powers such as (x + z)^2; write arithmetic inside I(...), e.g. I(2 * x)."
                ),
            )
    elif isinstance(node, _Paren | _Unary):
        _check_numbers(f, node.inner if isinstance(node, _Paren) else node.operand, addend=addend)
    elif isinstance(node, _Binary) and node.op in ("**", "^"):
        _check_numbers(f, node.left, addend=False)
        power = _unparen(node.right)
        if not (isinstance(power, _Atom) and power.kind == "number" and power.text.isdigit()):
            raise FormulaSyntaxError(
                f"the power of '{node.op}' must be a whole number, not "
                f"'{f.text[node.right.start : node.right.end]}'",
                f.text,
                node.right.start,
                node.right.end,
                hint="(x + z)^2 means all terms and two-way interactions; for arithmetic "
                "write I(x**2).",
            )
    elif isinstance(node, _Binary):
        _check_numbers(f, node.left, addend=False)
        _check_numbers(f, node.right, addend=False)


def _reject_nested_bars(f: _Formula, node: _Node) -> None:
    """Raise when a bar sits anywhere inside ``node`` (a term, not a bar itself)."""
    if isinstance(node, _Paren):
        inner = _unparen(node)
        if _is_bar(inner):
            assert isinstance(inner, _Binary)
            raise FormulaSyntaxError(
                f"a group-level term cannot be part of another term: "
                f"'{f.text[node.start : node.end]}'",
                f.text,
                inner.op_start,
                inner.op_end,
                hint="Add group-level terms on their own with +, e.g. y ~ x + (1|g).",
            )
        _reject_nested_bars(f, inner)
    elif isinstance(node, _Binary):
        _reject_nested_bars(f, node.left)
        _reject_nested_bars(f, node.right)
    elif isinstance(node, _Unary):
        _reject_nested_bars(f, node.operand)
    elif isinstance(node, _Call) and node.func != "I":
        for t in f.tokens[node.lo : node.hi]:
            if t.kind == "op" and t.text in _BARS:
                hint = "Group-level terms go in the formula itself, e.g. y ~ x + (1|g)."
                if f.text[node.func_end] != "(":  # 'x (1|g)': a call, as in R and Python
                    inside = f.text[f.tokens[node.lo - 1].start : node.end]
                    hint = f"Did you forget a '+'? Write {node.func} + {inside}."
                raise FormulaSyntaxError(
                    f"'{t.text}' inside the function call {node.func}(...)",
                    f.text,
                    t.start,
                    t.end,
                    hint=hint,
                )


def find_bars(formula: str | _Formula) -> tuple[Bar, ...]:
    """The group-level bars of a formula, as written (lme4's ``findbars``).

    Parameters
    ----------
    formula : str
        A formula such as ``"y ~ x + (x|g)"``.

    Returns
    -------
    tuple of Bar
        One per bar, in formula order; ``||`` and ``a/b`` are not expanded yet.

    Raises
    ------
    FormulaSyntaxError
        If the formula cannot be read, or a bar is not a term of its own.

    Examples
    --------
    >>> [(b.lhs, b.op, b.factor) for b in find_bars("y ~ x + (x||g) + (1|a/b)")]
    [('x', '||', 'g'), ('1', '|', 'a/b')]
    """
    f = _as_formula(formula)
    _, bar_nodes = _rhs_parts(f)
    bars = []
    for _, node in bar_nodes:
        assert isinstance(node, _Binary)
        lhs_node, bar_id = node.left, ""
        if _is_bar(_unparen(node.left)):
            lhs_node, bar_id = _three_part_bar(f, node)
        factor = _unparen(node.right)
        _check_factor(f, factor)
        bars.append(
            Bar(
                lhs=f.node_text(lhs_node),
                factor=f.node_text(factor),
                op=node.op,  # type: ignore[arg-type]
                independent=False,
                id=bar_id,
                start=_paren_start(f, node),
                end=_paren_end(f, node),
                lhs_node=lhs_node,
                factor_node=factor,
                source=f.text,
            )
        )
    return tuple(bars)


def _three_part_bar(f: _Formula, node: _Binary) -> tuple[_Node, str]:
    """brms' ``(terms | ID | factor)``: the terms' node and the ID."""
    left = _unparen(node.left)
    assert isinstance(left, _Binary)
    middle = _unparen(left.right)
    if _is_bar(_unparen(left.left)):
        inner = _unparen(left.left)
        assert isinstance(inner, _Binary)
        raise FormulaSyntaxError(
            "more than three parts in a bar",
            f.text,
            inner.op_start,
            node.op_end,
            hint="brms' bars are (terms | factor) or (terms | ID | factor).",
        )
    if not (isinstance(middle, _Atom) and middle.kind == "name"):
        raise FormulaSyntaxError(
            f"the middle of a three-part bar is brms' ID, a plain name; got "
            f"'{f.text[middle.start : middle.end]}'",
            f.text,
            middle.start,
            middle.end,
            hint="Write (1 + x | p | g): terms with the same ID p are correlated.",
        )
    if "||" in (left.op, node.op):
        raise UnsupportedSyntaxError(
            "'||' in a bar with an ID: brms' ID correlates terms, '||' makes them independent",
            f.text,
            left.op_start,
            node.op_end,
            hint="Write (1 + x | p | g) to correlate, or (1 + x || g) without the ID.",
        )
    return left.left, middle.text


def _paren_start(f: _Formula, node: _Node) -> int:
    i = node.start - 1
    while i >= 0 and f.text[i].isspace():
        i -= 1
    return i if i >= 0 and f.text[i] == "(" else node.start


def _paren_end(f: _Formula, node: _Node) -> int:
    i = node.end
    while i < len(f.text) and f.text[i].isspace():
        i += 1
    return i + 1 if i < len(f.text) and f.text[i] == ")" else node.end


def _check_factor(f: _Formula, node: _Node) -> None:
    """A grouping factor is variables joined by ':' (interaction) and '/' (nesting)."""
    if isinstance(node, _Paren):
        _check_factor(f, node.inner)
    elif isinstance(node, _Atom):
        if node.kind not in ("name", "backtick"):
            raise FormulaSyntaxError(
                f"the grouping factor must be a variable, not '{node.text}'",
                f.text,
                node.start,
                node.end,
                hint="Write the column that holds the groups, e.g. (1|g).",
            )
    elif isinstance(node, _Call):
        return  # e.g. C(g); formulae checks it
    elif isinstance(node, _Binary) and node.op in (":", "/"):
        _check_factor(f, node.left)
        _check_factor(f, node.right)
        if node.op == ":" and any(_contains_op(n, "/") for n in (node.left, node.right)):
            raise UnsupportedSyntaxError(
                "'/' (nesting) inside an interaction in a grouping factor",
                f.text,
                node.op_start,
                node.op_end,
                hint="Write the nesting outermost, e.g. (1|a/b) or (1|a:b/c).",
            )
    elif isinstance(node, _Binary) and node.op in ("+", "*"):
        a = f.text[node.left.start : node.left.end]
        b = f.text[node.right.start : node.right.end]
        both = f"(1|{a}) + (1|{b})"
        hint = f"Write {both}" + (f" + (1|{a}:{b})." if node.op == "*" else ".")
        raise UnsupportedSyntaxError(
            f"'{node.op}' in a grouping factor", f.text, node.op_start, node.op_end, hint=hint
        )
    elif isinstance(node, _Binary) and node.op in _BARS:
        raise FormulaSyntaxError(
            "a bar inside a grouping factor", f.text, node.op_start, node.op_end
        )
    elif isinstance(node, _Binary):
        raise FormulaSyntaxError(
            f"'{node.op}' cannot be used in a grouping factor",
            f.text,
            node.op_start,
            node.op_end,
            hint="Use ':' for an interaction of factors and '/' for nesting.",
        )
    else:
        raise FormulaSyntaxError(
            f"'{f.text[node.start : node.end]}' is not a grouping factor",
            f.text,
            node.start,
            node.end,
            hint="Write the column that holds the groups, e.g. (1|g).",
        )


def _contains_op(node: _Node, op: str) -> bool:
    node = _unparen(node)
    if isinstance(node, _Binary):
        return node.op == op or _contains_op(node.left, op) or _contains_op(node.right, op)
    return False


def no_bars(formula: str | _Formula) -> str:
    """The formula without its group-level terms (lme4's ``nobars``).

    Parameters
    ----------
    formula : str
        A formula such as ``"y ~ x + (x|g)"``.

    Returns
    -------
    str
        The response, ``~`` and the fixed part; the fixed part is ``1`` when the right side
        has only group-level terms.

    Examples
    --------
    >>> no_bars("y ~ x + (x|g)")
    'y ~ x'
    >>> no_bars("y ~ 0 + (1|g)")
    'y ~ 0'
    >>> no_bars("y ~ (1|g)")
    'y ~ 1'
    """
    f = _as_formula(formula)
    return f"{f.node_text(f.lhs)} ~ {_fixed_text(f)}"


def _fixed_text(f: _Formula) -> str:
    fixed, _ = _rhs_parts(f)
    if not fixed:
        return "1"
    parts = []
    for i, (sign, node) in enumerate(fixed):
        text = f.node_text(node)
        if i == 0:
            parts.append(("-" if sign == "-" else "") + text)
        else:
            parts.append(f" {sign} {text}")
    return "".join(parts)


def expand_nested(bars: tuple[Bar, ...] | list[Bar]) -> tuple[Bar, ...]:
    """Expand nesting in grouping factors (lme4's ``expandSlash``).

    ``(x|a/b)`` becomes ``(x|a)`` and ``(x|a:b)``; ``(1|a/b/c)`` becomes ``a``, ``a:b`` and
    ``a:b:c``.

    Parameters
    ----------
    bars : sequence of Bar
        Bars from :func:`find_bars`.

    Returns
    -------
    tuple of Bar
        The bars, each nested factor replaced by one bar per level of nesting.

    Examples
    --------
    >>> [b.factor for b in expand_nested(find_bars("y ~ (x|a/b/c)"))]
    ['a', 'a:b', 'a:b:c']
    """
    out: list[Bar] = []
    for bar in bars:
        node, source = bar.factor_node, bar.source
        if node is None or source is None:  # a Bar built by hand, or expanded already
            parsed = find_bars(f"y ~ (1|{bar.factor})")[0]
            node, source = parsed.factor_node, parsed.source
        assert node is not None and source is not None
        chain = _slash_chain(_unparen(node))
        if len(chain) == 1:
            out.append(bar)
            continue
        texts = [re.sub(r"\s*:\s*", ":", source[n.start : n.end].strip()) for n in chain]
        for k in range(len(chain)):
            out.append(replace(bar, factor=":".join(texts[: k + 1]), factor_node=None))
    return tuple(out)


def _slash_chain(node: _Node) -> list[_Node]:
    if isinstance(node, _Binary) and node.op == "/":
        return [*_slash_chain(_unparen(node.left)), _unparen(node.right)]
    return [node]


def expand_double_verts(bars: tuple[Bar, ...] | list[Bar]) -> tuple[Bar, ...]:
    """Read ``||`` bars as independent terms (lme4's ``expandDoubleVerts``).

    lme4 rewrites ``(x + z||g)`` as ``(1|g) + (0 + x|g) + (0 + z|g)``. lmmformula keeps the
    terms in one bar, marked ``independent``: for numeric terms Bambi creates exactly the same
    terms, and for a factor ``f`` the bar ``(f|g)`` gets the intercept plus contrasts that
    brms, glmmTMB and lme4's newer ``diag()`` give ``(f||g)``.

    Parameters
    ----------
    bars : sequence of Bar
        Bars from :func:`find_bars` or :func:`expand_nested`.

    Returns
    -------
    tuple of Bar
        The same bars; those written with ``||`` now have ``op="|"`` and
        ``independent=True``.

    Examples
    --------
    >>> [(b.lhs, b.op, b.independent) for b in expand_double_verts(find_bars("y ~ (x||g)"))]
    [('x', '|', True)]
    """
    return tuple(replace(bar, op="|", independent=True) if bar.op == "||" else bar for bar in bars)


# ---------------------------------------------------------------------------------------------
# The terms inside a bar, through formulae
# ---------------------------------------------------------------------------------------------


def _bar_lhs(f: _Formula, bar: Bar) -> str:
    """The left side of a bar in canonical form: ``"1"``, ``"1 + x"``, ``"0 + x + z"``."""
    node = bar.lhs_node
    assert node is not None
    intercept = True
    rest: list[tuple[str, _Node]] = []
    for sign, term in _addends(node):
        if _is_bar(term):
            assert isinstance(term, _Binary)
            raise FormulaSyntaxError(
                "a bar inside the terms of another bar",
                f.text,
                term.op_start,
                term.op_end,
            )
        if isinstance(term, _Atom) and term.kind == "number":
            if term.text not in ("0", "1"):
                raise FormulaSyntaxError(
                    f"'{term.text}' in the terms of a bar: only 0 and 1 (the intercept) are "
                    "numbers there",
                    f.text,
                    term.start,
                    term.end,
                    hint="Write (1|g) for a varying intercept, (0 + x|g) to drop it.",
                )
            intercept = (term.text == "1") == (sign == "+")
            continue
        _reject_nested_bars(f, term)
        _check_numbers(f, term, addend=False)
        rest.append((sign, term))
    if not rest and not intercept:
        raise FormulaSyntaxError(
            f"the bar '{f.text[bar.start : bar.end]}' has no terms: its intercept is removed "
            "and nothing else is there",
            f.text,
            node.start,
            node.end,
            hint="Write (1|g) for a varying intercept.",
        )
    parts = ["1" if intercept else "0"]
    parts += [f" {sign} {f.node_text(term)}" for sign, term in rest]
    return "".join(parts)


def _formulae_description(text: str, f: _Formula, start: int, end: int, what: str) -> Any:
    log = logging.getLogger("formulae")
    disabled = log.disabled
    try:
        # Bambi repeats formulae's warnings and log messages when it builds the model.
        log.disabled = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return formulae.model_description(text)
    except Exception as exc:  # formulae raises many unrelated types; none may escape
        message = str(exc).strip() or type(exc).__name__
        raise FormulaSyntaxError(
            f"Bambi's formula parser (formulae) cannot read {what}: {message}",
            f.text,
            start,
            end,
        ) from exc
    finally:
        log.disabled = disabled


def _group_terms_of(text: str, f: _Formula, bar: Bar) -> list[tuple[str, str, str]]:
    """(name, expr, factor) of each group-level term of one Bambi bar, as formulae names them."""
    desc = _formulae_description(
        f"y ~ 0 + {text}", f, bar.start, bar.end, f"the group-level term {text}"
    )
    out = []
    for term in desc.terms:
        if isinstance(term, GroupSpecificTerm):
            factor = term.factor.name
            expr = term.name[: -len(factor) - 1]
            out.append((term.name, expr, factor))
    return out


# ---------------------------------------------------------------------------------------------
# The response
# ---------------------------------------------------------------------------------------------

_RESPONSE_FUNCTIONS = (
    "log",
    "log2",
    "log10",
    "log1p",
    "exp",
    "exp2",
    "expm1",
    "sqrt",
    "abs",
    "scale",
    "center",
    "standardize",
    "I",
    "censored",
    "truncated",
    "constrained",
    "weighted",
    "c",
    "counts",
    "proportion",
    "prop",
    "p",
    "cbind",
)

_TIME_ALTERNATIVE = (
    "Residual autocorrelation structures are not supported; a smooth trend over time with "
    "correlated deviations is gp(time); independent deviations per time point (1|time_factor)."
)
_SPACE_ALTERNATIVE = (
    "Spatial autocorrelation structures are not supported; a Gaussian process over the "
    "locations is gp(lat, lon), a known adjacency-based covariance (1 | gr(region, cov = K))."
)

_ADDITIONS_UNSUPPORTED = {
    "se": (
        "brms' se() (known standard errors) has no Bambi equivalent; lme4's precision weights "
        "come closest: weights='w' with w = 1 / se^2 (residual variance sigma^2 / w, sigma "
        "estimated)."
    ),
    "cens": "Use Bambi's censored() as the response: censored(y, status) ~ x.",
    "trunc": "Use Bambi's truncated() as the response: truncated(y, lb=0) ~ x.",
    "rate": "Add offset(log(exposure)) to the right side and use a log link (e.g. poisson).",
    "subset": "Subset the data before fitting.",
    "vreal": "Custom families (vreal) are not supported; use one of Bambi's families.",
    "vint": "Custom families (vint) are not supported; use one of Bambi's families.",
    "mi": "Missing-value imputation is not supported: drop or impute missing rows first.",
    "thres": "Bambi's ordinal families (cumulative, sratio) estimate the thresholds themselves.",
    "cat": "Use family='categorical' with a categorical response.",
    "dec": (
        "The Wiener diffusion model has no Bambi equivalent; model the response times alone, "
        "e.g. log(rt) ~ ... (gaussian) or rt ~ ... with family='gamma'."
    ),
    "index": "brms' index() only names rows; drop it (rows are kept in the data's order).",
}

_SPECIALS = {
    "s": (
        "Smooth terms are not supported; write a Gaussian process, gp(x) (brms' gp(); "
        "gp(x, k = 20) for the fast approximation), or B-splines in the fixed part: bs(x, df=5)."
    ),
    "t2": (
        "Smooth terms are not supported; write a Gaussian process, gp(x1, x2) (brms' gp()), or "
        "B-splines in the fixed part: bs(x, df=5)."
    ),
    "me": (
        "Measurement-error terms have no Bambi equivalent; use the measured value as an "
        "ordinary predictor (x), or the mean of repeated measurements."
    ),
    "mi": "Missing-value imputation is not supported: drop or impute missing rows first.",
    "cs": (
        "brms' category-specific effects and glmmTMB's compound symmetry have no equivalent; "
        "write (x|g) for an unstructured block."
    ),
    "mm": (
        "Multi-membership grouping has no Bambi equivalent; give each membership its own "
        "grouping factor, (1|g1) + (1|g2), or keep each row's main group, (1|g)."
    ),
    "mmc": (
        "Multi-membership grouping has no Bambi equivalent; give each membership its own "
        "grouping factor, (1|g1) + (1|g2), or keep each row's main group, (1|g)."
    ),
    "ar": _TIME_ALTERNATIVE,
    "ma": _TIME_ALTERNATIVE,
    "arma": _TIME_ALTERNATIVE,
    "cosy": "Compound symmetry within a group is what a varying intercept gives: (1|g).",
    "car": _SPACE_ALTERNATIVE,
    "sar": _SPACE_ALTERNATIVE,
    "fcor": (
        "Fixed residual correlation matrices are not supported; a known covariance between "
        "the levels of a factor is (1 | gr(g, cov = K)) with data2={'K': K}."
    ),
    "unstr": (
        "Unstructured residual correlations are not supported; correlated effects per group "
        "are (x|g), a correlation between time points of a unit (0 + time_factor|unit)."
    ),
    "diag": "Write (x||g): independent group-level terms are what diag(x|g) means.",
    "us": "Write (x|g): an unstructured (correlated) block is what us(x|g) means.",
    "ar1": _TIME_ALTERNATIVE,
    "toep": _TIME_ALTERNATIVE,
    "ou": _TIME_ALTERNATIVE,
    "rr": "Write the block unstructured, (x|g), or diagonal, (x||g).",
    "homdiag": "Write the block diagonal, (x||g) (each sd its own), or unstructured, (x|g).",
}


# -- brms' gp() and gr() ---------------------------------------------------------------------
_GP_OPTIONS = ("by", "k", "c", "scale", "cov", "iso", "gr", "cmc")


def _named_args(f: _Formula, call: _Call, names: tuple[str, ...]) -> tuple[list, dict]:
    """Positional argument spans and named ``name = value`` arguments of ``call``."""
    positional, named = [], {}
    for lo, hi in call.args:
        toks = [t for t in f.tokens if lo <= t.start and t.end <= hi]
        if len(toks) >= 2 and toks[0].kind == "name" and toks[1].text == "=":
            name = toks[0].text
            if name not in names:
                raise UnsupportedSyntaxError(
                    f"{call.func}() has no argument {name!r} that lmmformula supports",
                    f.text,
                    lo,
                    hi,
                    hint=f"{call.func}() takes {', '.join(names)}.",
                )
            named[name] = (f.text[toks[1].end : hi].strip(), toks[min(2, len(toks) - 1)].start, hi)
        else:
            if named:
                raise FormulaSyntaxError(
                    f"a positional argument after a named one in {call.func}()", f.text, lo, hi
                )
            positional.append((lo, hi))
    return positional, named


def _number(f: _Formula, text: str, lo: int, hi: int, what: str) -> float:
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(?:/\s*([0-9.eE+-]+)\s*)?", text)
    try:
        assert m is not None
        value = float(m.group(1)) / (float(m.group(2)) if m.group(2) else 1.0)
    except (AssertionError, ValueError, ZeroDivisionError):
        raise FormulaSyntaxError(
            f"{what} must be a number, not '{text}'", f.text, lo, hi, hint=f"e.g. {what} = 20"
        ) from None
    return value


def _flag(f: _Formula, value: tuple[str, int, int], name: str, want: bool, hint: str) -> bool:
    text, lo, hi = value
    if text not in ("TRUE", "FALSE", "True", "False", "T", "F"):
        raise FormulaSyntaxError(f"{name} must be TRUE or FALSE", f.text, lo, hi)
    flag = text in ("TRUE", "True", "T")
    if flag != want:
        raise UnsupportedSyntaxError(
            f"gp(..., {name} = {text}) is not supported", f.text, lo, hi, hint=hint
        )
    return flag


def _gp_term(f: _Formula, call: _Call) -> GPTerm:
    """brms' ``gp()`` call read into a :class:`GPTerm` (brms' defaults for what is not given)."""
    positional, named = _named_args(f, call, _GP_OPTIONS)
    if not positional:
        raise FormulaSyntaxError(
            "gp() needs one or more covariates", f.text, call.start, call.end, hint="Write gp(x)."
        )
    covariates = []
    for lo, hi in positional:
        if not _is_simple(f, (lo, hi)) or f.text[lo:hi].strip()[0].isdigit():
            raise UnsupportedSyntaxError(
                f"gp() takes column names, not '{f.text[lo:hi]}'",
                f.text,
                lo,
                hi,
                hint="Compute the covariate as a column of the data first.",
            )
        covariates.append(f.text[lo:hi].strip().strip("`"))
    by = None
    if "by" in named:
        text, lo, hi = named["by"]
        if not _is_simple(f, (lo, hi)):
            raise UnsupportedSyntaxError(
                "gp(..., by = ) takes a column name", f.text, lo, hi, hint="e.g. by = f"
            )
        by = text.strip("`")
    k = None
    if "k" in named:
        text, lo, hi = named["k"]
        if text != "NA":
            value = _number(f, text, lo, hi, "k")
            if value < 1 or value != int(value):
                raise FormulaSyntaxError(
                    "gp(..., k = ) must be a positive whole number (brms: 'k' must be positive)",
                    f.text,
                    lo,
                    hi,
                )
            k = int(value)
    c = 5 / 4
    if "c" in named:
        text, lo, hi = named["c"]
        c = _number(f, text, lo, hi, "c")
        if c <= 0:
            raise FormulaSyntaxError("gp(..., c = ) must be positive", f.text, lo, hi)
    scale = True
    if "scale" in named:
        text, lo, hi = named["scale"]
        if text not in ("TRUE", "FALSE", "True", "False", "T", "F"):
            raise FormulaSyntaxError("scale must be TRUE or FALSE", f.text, lo, hi)
        scale = text in ("TRUE", "True", "T")
    if "cov" in named:
        text, lo, hi = named["cov"]
        if text.strip("'\"") != "exp_quad":
            raise UnsupportedSyntaxError(
                f"gp(..., cov = {text}): only the squared-exponential kernel is supported",
                f.text,
                lo,
                hi,
                hint='Leave cov out (brms\' default "exp_quad").',
            )
    if "iso" in named and len(covariates) > 1:
        _flag(f, named["iso"], "iso", True, "Only isotropic GPs are supported; leave iso out.")
    if "gr" in named:
        _flag(f, named["gr"], "gr", True, "GPs are evaluated on the unique points; leave gr out.")
    if "cmc" in named:
        _flag(f, named["cmc"], "cmc", True, "One GP per level of by is supported; leave cmc out.")
    label = "gp" + "".join(re.sub(r"[^\w]", "", v) for v in covariates)
    if by is not None:
        label += re.sub(r"[^\w]", "", by)
    return GPTerm(
        text=f.text[call.start : call.end],
        label=label,
        column=label,
        covariates=tuple(covariates),
        by=by,
        k=k,
        c=(c,) * len(covariates),
        scale=scale,
        start=call.start,
        end=call.end,
    )


def _gr_bar(f: _Formula, bar: Bar) -> tuple[Bar, CovTerm | None]:
    """brms' ``gr(g)`` and ``gr(g, cov = K)`` as the grouping factor: the bar on ``g``, and
    the known covariance where given."""
    node = bar.factor_node
    if not (isinstance(node, _Call) and node.func == "gr"):
        return bar, None
    positional, named = _named_args(f, node, ("cov", "by", "cor", "id", "dist", "cases"))
    if len(positional) != 1 or not _is_simple(f, positional[0]):
        raise UnsupportedSyntaxError(
            "gr() takes one grouping column", f.text, node.start, node.end, hint="e.g. gr(g)"
        )
    lo, hi = positional[0]
    factor = f.text[lo:hi].strip()
    for name in ("by", "cor", "id", "dist", "cases"):
        if name in named:
            _, vlo, vhi = named[name]
            raise UnsupportedSyntaxError(
                f"gr(..., {name} = ) is not supported",
                f.text,
                vlo,
                vhi,
                hint=f"gr({factor}) and gr({factor}, cov = K) are.",
            )
    inner = _Atom(lo, hi, "name", factor)
    new = replace(bar, factor=factor, factor_node=inner)
    if "cov" not in named:
        return new, None
    text, vlo, vhi = named["cov"]
    if not _PLAIN_NAME.fullmatch(text):
        raise UnsupportedSyntaxError(
            "gr(..., cov = ) names a matrix passed in data2",
            f.text,
            vlo,
            vhi,
            hint="Write gr(g, cov = K) and pass data2={'K': K}.",
        )
    return new, CovTerm(factor=factor, key=text, start=vlo, end=vhi)


def _split_gp(
    f: _Formula, fixed_nodes: list[tuple[str, _Node]]
) -> tuple[list[GPTerm], list[tuple[str, _Node]]]:
    """The ``gp()`` addends of the fixed part, read; and the other addends."""
    gps: list[GPTerm] = []
    rest: list[tuple[str, _Node]] = []
    for sign, node in fixed_nodes:
        if isinstance(node, _Call) and node.func == "gp":
            if sign == "-":
                raise FormulaSyntaxError(
                    "a gp() term cannot be subtracted", f.text, node.start, node.end
                )
            gp = _gp_term(f, node)
            if any(g.label == gp.label for g in gps):
                raise UnsupportedSyntaxError(
                    f"{gp.text} appears twice", f.text, node.start, node.end, hint="Give it once."
                )
            gps.append(gp)
        else:
            rest.append((sign, node))
    return gps, rest


def _addends_text(f: _Formula, nodes: list[tuple[str, _Node]]) -> str:
    """The fixed part written from its addends (``1`` when none is left)."""
    if not nodes:
        return "1"
    parts = []
    for i, (sign, node) in enumerate(nodes):
        text = f.node_text(node)
        parts.append((("-" if sign == "-" else "") + text) if i == 0 else f" {sign} {text}")
    return "".join(parts)


def _plain_names(f: _Formula) -> set[str]:
    return {t.text for t in f.tokens if t.kind == "name"} - {"gp", "gr"}


def _check_gp_gr_places(f: _Formula, gp_terms: list[GPTerm], bars) -> None:
    """gp() only as a term of the fixed part, gr() only as a bar's grouping factor."""
    allowed = {g.start for g in gp_terms}
    allowed |= {b.factor_node.start for b in bars if b.factor_node is not None}
    for i, t in enumerate(f.tokens[:-1]):
        if t.kind == "name" and t.text in ("gp", "gr") and f.tokens[i + 1].text == "(":
            if t.start in allowed and t.text == "gp":
                continue
            if t.text == "gr" and any(
                b.factor_node is not None and b.factor_node.start == t.start for b in bars
            ):
                continue
            hint = (
                "Write gp() as a term of its own: y ~ x + gp(x1, x2)."
                if t.text == "gp"
                else "Write gr() as the grouping factor of a bar: (1 | gr(g, cov = K))."
            )
            raise UnsupportedSyntaxError(
                f"{t.text}() is not supported here",
                f.text,
                t.start,
                f.tokens[f.match[i + 1]].end,
                hint=hint,
            )


def _is_simple(f: _Formula, span: tuple[int, int]) -> bool:
    """Whether the text in ``span`` is a single name or backtick name."""
    toks = [t for t in f.tokens if span[0] <= t.start and t.end <= span[1]]
    return len(toks) == 1 and toks[0].kind in ("name", "backtick", "number")


def _arg_text(f: _Formula, span: tuple[int, int]) -> str:
    return f.source(*span)


def _check_arity(f: _Formula, call: _Call, n: int, usage: str, what: str) -> None:
    args = call.args
    empty = [a for a in args if a[0] == a[1]]
    if len(args) == n and not empty:
        return
    if not args:
        message = f"{call.func}() needs {what}"
    elif empty:
        message = f"{call.func}() has an empty argument"
    else:
        message = f"{call.func}() takes {n} argument{'s' if n > 1 else ''}, got {len(args)}"
    raise FormulaSyntaxError(message, f.text, call.start, call.end, hint=f"Write {usage}.")


def _check_response_functions(f: _Formula, lo: int, hi: int) -> None:
    toks = f.tokens
    for i in range(lo, hi):
        t = toks[i]
        if t.kind != "name" or i + 1 >= hi or toks[i + 1].text != "(":
            continue
        if t.text in _RESPONSE_FUNCTIONS or t.text.startswith(("np.", "numpy.")):
            continue
        known = ", ".join(_RESPONSE_FUNCTIONS[:-2]) + ", np.*"
        raise FormulaSyntaxError(
            f"unknown function '{t.text}' in the response",
            f.text,
            t.start,
            t.end,
            hint=(
                f"The response may use {known}; for binomial data cbind(s, f), "
                "s | trials(n) or p(s, n)."
            ),
        )


def _token_range(f: _Formula, node: _Node) -> tuple[int, int]:
    idx = [i for i, t in enumerate(f.tokens) if node.start <= t.start and t.end <= node.end]
    return (idx[0], idx[-1] + 1) if idx else (0, 0)


def _read_response(f: _Formula) -> tuple[Response, list[str]]:
    lhs = _unparen(f.lhs) if _is_bar(_unparen(f.lhs)) else f.lhs
    text = f.node_text(f.lhs)
    notes: list[str] = []
    additions: list[_Call] = []
    if _is_bar(lhs):
        assert isinstance(lhs, _Binary)
        if lhs.op == "||":
            raise FormulaSyntaxError(
                "'||' in the response",
                f.text,
                lhs.op_start,
                lhs.op_end,
                hint="brms' addition terms follow a single bar: y | weights(w) ~ x.",
            )
        if _is_bar(_unparen(lhs.left)):
            raise FormulaSyntaxError(
                "more than one '|' in the response",
                f.text,
                lhs.op_start,
                lhs.op_end,
                hint="Join brms addition terms with +, e.g. y | weights(w) + cens(c) ~ x.",
            )
        for sign, node in _addends(lhs.right):
            if not isinstance(node, _Call) or sign == "-":
                raise FormulaSyntaxError(
                    f"'{f.text[node.start : node.end]}' after '|' in the response is not a "
                    "brms addition term",
                    f.text,
                    node.start,
                    node.end,
                    hint="Write s | trials(n) ~ x or y | weights(w) ~ x.",
                )
            additions.append(node)
        resp = lhs.left
    else:
        resp = lhs
    _reject_nested_bars(f, resp)
    _check_response_functions(f, *_token_range(f, resp))
    resp_text = f.node_text(resp)

    trials = weights = None
    for call in additions:
        if call.func in _ADDITIONS_UNSUPPORTED:
            raise UnsupportedSyntaxError(
                f"brms' addition term {call.func}() is not supported",
                f.text,
                call.start,
                call.end,
                hint=_ADDITIONS_UNSUPPORTED[call.func],
            )
        if call.func not in ("trials", "weights"):
            raise FormulaSyntaxError(
                f"unknown addition term '{call.func}()' after '|' in the response",
                f.text,
                call.start,
                call.func_end,
                hint="lmmformula reads trials(n) and weights(w) after the bar.",
            )
        seen = trials if call.func == "trials" else weights
        if seen is not None:
            raise FormulaSyntaxError(f"{call.func}() given twice", f.text, call.start, call.end)
        usage = "s | trials(n) ~ x" if call.func == "trials" else "y | weights(w) ~ x"
        what = "the number of trials" if call.func == "trials" else "the column of weights"
        _check_arity(f, call, 1, usage, what)
        if call.func == "trials":
            trials = call
        else:
            weights = call
    if trials is not None and weights is not None:
        raise UnsupportedSyntaxError(
            "trials() and weights() together are not supported",
            f.text,
            weights.start,
            weights.end,
            hint="Bambi's weighted() takes a plain response; drop weights() or trials().",
        )

    resp_core = _unparen(resp)
    lo, hi = _token_range(f, resp)
    for i in range(lo, hi - 1):
        t = f.tokens[i]
        if t.kind == "name" and t.text in ("cbind", "p") and f.tokens[i + 1].text == "(":
            if not (isinstance(resp_core, _Call) and resp_core.start == t.start):
                raise FormulaSyntaxError(
                    f"{t.text}(...) must be the whole left side",
                    f.text,
                    t.start,
                    t.end,
                    hint=f"Write {t.text}(...) ~ x, with nothing around it.",
                )
    binomial_call = isinstance(resp_core, _Call) and resp_core.func in ("cbind", "p")
    if binomial_call and additions:
        assert isinstance(resp_core, _Call)
        raise FormulaSyntaxError(
            f"{resp_core.func}(...) already says the binomial trials; brms addition terms "
            "cannot follow it",
            f.text,
            additions[0].start,
            additions[-1].end,
            hint=f"Write {resp_core.func}(...) ~ x alone.",
        )

    if isinstance(resp_core, _Call) and resp_core.func == "cbind":
        _check_arity(f, resp_core, 2, "cbind(successes, failures) ~ x", "two arguments")
        s, fl = (_arg_text(f, a) for a in resp_core.args)
        if all(_is_simple(f, a) for a in resp_core.args):
            bambi = f"p({s}, {s} + {fl})"
        else:
            bambi = f"p({s}, ({s}) + ({fl}))"
        notes.append(
            f"{text} is read as lme4 reads it: binomial, {s} successes out of {s} + {fl} "
            "trials (in brms, cbind() on the left means a multivariate response)."
        )
        response = Response("binomial", "cbind", text, bambi, successes=s, failures=fl)
    elif isinstance(resp_core, _Call) and resp_core.func == "p":
        _check_arity(f, resp_core, 2, "p(successes, trials) ~ x", "two arguments")
        s, n = (_arg_text(f, a) for a in resp_core.args)
        response = Response("binomial", "p", text, text, successes=s, trials=n)
    elif trials is not None:
        n = _arg_text(f, trials.args[0])
        response = Response(
            "binomial", "trials", text, f"p({resp_text}, {n})", successes=resp_text, trials=n
        )
    elif weights is not None:
        w = _arg_text(f, weights.args[0])
        response = Response("plain", "plain", text, f"weighted({resp_text}, {w})", weights=w)
        notes.append(
            f"weights({w}) becomes Bambi's weighted({resp_text}, {w}): each observation's "
            "log-likelihood is multiplied by its weight, as in brms."
        )
    else:
        response = Response("plain", "plain", text, resp_text)
    return response, notes


# ---------------------------------------------------------------------------------------------
# translate
# ---------------------------------------------------------------------------------------------


def _check_specials(f: _Formula) -> None:
    toks = f.tokens
    lo, hi = f.rhs_range
    for i in range(lo, hi - 1):
        t = toks[i]
        if t.kind == "name" and toks[i + 1].text == "(" and t.text in _SPECIALS:
            raise UnsupportedSyntaxError(
                f"{t.text}() is not supported",
                f.text,
                t.start,
                toks[f.match[i + 1]].end,
                hint=_SPECIALS[t.text],
            )


def _variables(f: _Formula, names: set[str]) -> tuple[str, ...]:
    """formulae's variable names, in order of appearance; contrasts in C(x, Sum) are not data."""
    names = {n for n in names if n and n not in _R_CONTRASTS.values()}
    toks = f.tokens
    contrast: set[int] = set()  # token indices after the first argument of C(...)
    for i, t in enumerate(toks[:-1]):
        if t.kind == "name" and t.text == "C" and toks[i + 1].text == "(":
            close = f.match[i + 1]
            j = i + 2
            while j < close and toks[j].text != ",":
                j = f.match.get(j, j) + 1
            contrast.update(range(j, close))
    seen: dict[str, None] = {}
    mentioned: set[str] = set()
    for i, t in enumerate(toks):
        if t.kind == "backtick":
            value = t.text[1:-1]
        elif t.kind == "name" and not (i + 1 < len(toks) and toks[i + 1].text == "("):
            value = t.text
        else:
            continue
        mentioned.add(value)
        if value in names and i not in contrast:
            seen.setdefault(value)
    for rest in sorted(names - mentioned):
        seen.setdefault(rest)
    return tuple(seen)


def _block_key(factor: str, k: int) -> str:
    """The key of the k-th (0-based) correlated block on ``factor``: ``g``, ``g__2``, ..."""
    return factor if k == 0 else f"{factor}__{k + 1}"


def _assign_blocks(per_bar: list[_BarPart], notes: list[str], text: str) -> dict[int, str]:
    """Which bars are covariance blocks, keyed as in :attr:`Translation.correlated`.

    As in lme4, every bar is its own block: ``(1 + x|g) + (0 + z + w|g)`` gives two blocks on
    ``g``, and ``(1|g) + (0 + f|g)`` a one-term block for ``f`` (KxK when ``f`` is a factor)
    next to the varying intercept. A bar written with ``||`` and a bar with the intercept
    alone are not blocks: their terms get independent priors. Bars with the same brms ID
    (``(1 + x|p|g)`` and ``(1|p|g)``, in one formula or across the formulas of a ``bf()``)
    form one block together.
    """
    block_of: dict[int, str] = {}
    count: dict[str, int] = {}
    by_id: dict[str, tuple[str, str, _BarPart]] = {}
    for k, part in enumerate(per_bar):
        bar, terms = part.bar, part.terms
        if not terms:
            continue
        factor = terms[0][2]
        if bar.id:
            if bar.id in by_id:
                key, first_factor, first = by_id[bar.id]
                if first_factor != factor:
                    raise UnsupportedSyntaxError(
                        f"the ID {bar.id!r} joins terms of different grouping factors "
                        f"({first_factor!r} in '{first.source}' and {factor!r} here)",
                        text,
                        part.start,
                        part.end,
                        hint="Terms that share an ID must share the grouping factor, as in brms.",
                    )
                block_of[k] = key
                continue
            key = _block_key(factor, count.get(factor, 0))
            count[factor] = count.get(factor, 0) + 1
            by_id[bar.id] = (key, factor, part)
            block_of[k] = key
            continue
        if bar.independent or (len(terms) == 1 and terms[0][1] == "1"):
            continue
        block_of[k] = _block_key(factor, count.get(factor, 0))
        count[factor] = count.get(factor, 0) + 1
        if len(terms) == 1:
            name, expr, _ = terms[0]
            notes.append(
                f"{name} is its own bar: a correlated KxK block on {factor} if {expr} is a "
                "factor with K levels, an independent term if it is numeric."
            )
    for bar_id, (key, factor, _) in by_id.items():
        members = [p for k, p in enumerate(per_bar) if block_of.get(k) == key]
        if len({p.dpar for p in members}) > 1 or len(members) > 1:
            shown = " and ".join(f"'{p.source}'" for p in members)
            notes.append(
                f"the ID {bar_id!r} joins {shown} into one correlated block on {factor} "
                "(brms' |ID| syntax)."
            )
    return block_of


def _brms_intercept(
    f: _Formula, fixed_nodes: list[tuple[str, _Node]], fixed: str, notes: list[str]
) -> tuple[str, bool]:
    """brms' ``0 + Intercept + ...``: the intercept as an ordinary population-level effect.

    The model is the one with an intercept; only its parameterisation differs (predictors not
    centred, the intercept's prior of class ``b``). Returns the fixed part for formulae and
    whether the intercept is brms' explicit one.
    """
    explicit = [n for sign, n in fixed_nodes if isinstance(n, _Atom) and n.text == "Intercept"]
    if not explicit:
        return fixed, False
    node = explicit[0]
    removed = any(
        (sign == "+" and isinstance(n, _Atom) and n.text == "0")
        or (sign == "-" and isinstance(n, _Atom) and n.text == "1")
        for sign, n in fixed_nodes
    )
    if not removed or any(s == "-" for s, n in fixed_nodes if n is node):
        raise UnsupportedSyntaxError(
            "'Intercept' is brms' explicit intercept, which goes with '0 +'",
            f.text,
            node.start,
            node.end,
            hint="Write y ~ 0 + Intercept + x (brms), or y ~ 1 + x.",
        )
    rest = [
        f" {sign} {f.node_text(n)}"
        for sign, n in fixed_nodes
        if not (isinstance(n, _Atom) and n.text in ("0", "1", "Intercept"))
    ]
    notes.append(
        "0 + Intercept is brms' explicit intercept: the model has an intercept, sampled as an "
        "ordinary population-level effect (predictors not centred; priors of class b apply)."
    )
    return "1" + "".join(rest), True


def bf(formula: str, **dpars: str) -> str:
    """brms' ``bf()`` in Python: the main formula and one formula per distributional parameter.

    Parameters
    ----------
    formula : str
        The main formula, e.g. ``"y ~ x + (1|p|g)"``.
    **dpars : str
        Per distributional parameter of the family, its right side (``sigma="z + (1|p|g)"``)
        or its whole formula (``sigma="sigma ~ z"``).

    Returns
    -------
    str
        The formula string ``"bf(y ~ x + (1|p|g), sigma ~ z + (1|p|g))"``, accepted wherever a
        formula is.

    Examples
    --------
    >>> bf("y ~ x + (1|p|g)", sigma="z + (1|p|g)")
    'bf(y ~ x + (1|p|g), sigma ~ z + (1|p|g))'
    """
    if not isinstance(formula, str):
        _parse(formula)  # the usual error for a formula that is not a string
    parts = [formula.strip()]
    for name, rhs in dpars.items():
        if not isinstance(rhs, str):
            raise FormulaSyntaxError(
                f"the formula of {name!r} must be a string, not {type(rhs).__name__}",
                repr(rhs),
                0,
                len(repr(rhs)),
            )
        text = rhs.strip()
        lhs, tilde, right = text.partition("~")
        if tilde and lhs.strip() != name:
            raise FormulaSyntaxError(
                f"the formula given as {name}= models {lhs.strip()!r}",
                text,
                0,
                len(lhs),
                hint=f"Write {name}='{right.strip()}' or {name}='{name} ~ {right.strip()}'.",
            )
        parts.append(text if tilde else f"{name} ~ {text}")
    out = f"bf({', '.join(parts)})"
    translate(out)  # refuse now what cannot be read
    return out


def translate(formula: str) -> Translation:
    """Read an lme4/brms mixed-model formula and rewrite it for Bambi.

    Parameters
    ----------
    formula : str
        A formula in lme4/brms notation, e.g. ``"log_ozone ~ TEMP + (TEMP|station)"``, or
        brms' distributional formula ``"bf(y ~ x + (1|p|g), sigma ~ z + (1|p|g))"``. See the
        module docstring for every form it reads.

    Returns
    -------
    Translation
        The Bambi formula, the group-level terms as Bambi names them, which of them form
        correlated blocks, the response kind and the family it implies.

    Raises
    ------
    FormulaSyntaxError
        If the formula cannot be read; the message shows the formula with a caret under the
        part at fault.
    UnsupportedSyntaxError
        If the formula is valid lme4/brms but lmmformula cannot keep its meaning; the hint
        says what to write instead.

    Examples
    --------
    >>> t = translate("log_ozone ~ TEMP + (TEMP|station)")
    >>> t.bambi_formula
    'log_ozone ~ TEMP + (1 + TEMP|station)'
    >>> t.correlated
    {'station': ('1|station', 'TEMP|station')}
    >>> [g.name for g in translate("y ~ x + (x||g)").group_terms]
    ['1|g', 'x|g']
    >>> translate("y ~ x + (x||g)").correlated
    {}
    >>> t = translate("awards | trials(applications) ~ 0 + gender + (1|discipline)")
    >>> t.family, t.response.bambi
    ('binomial', 'p(awards, applications)')
    >>> t = translate("bf(y ~ x + (1|p|g), sigma ~ z + (1|p|g))")
    >>> t.dpar_formulas
    {'sigma': 'sigma ~ z + (1|g)'}
    >>> t.correlated
    {'g': ('1|g', 'sigma_1|g')}
    """
    parts = [(text, dpar, _read_part(f, dpar)) for text, dpar, f in _formulas(formula)]
    whole = parts[0][0] if len(parts) == 1 else formula
    per_bar = [bp for _, _, part in parts for bp in part.per_bar]
    notes = [n for _, _, part in parts for n in part.notes]
    block_of = _assign_blocks(per_bar, notes, whole)

    group_terms: list[GroupTerm] = []
    correlated: dict[str, tuple[str, ...]] = {}
    for k, bp in enumerate(per_bar):
        block = block_of.get(k)
        prefix = f"{bp.dpar}_" if bp.dpar else ""
        names = [prefix + name for name, _, _ in bp.terms]
        if block is not None:
            correlated[block] = correlated.get(block, ()) + tuple(names)
        group_terms += [
            GroupTerm(full, expr, fac, block, k, bp.dpar)
            for full, (_, expr, fac) in zip(names, bp.terms, strict=True)
        ]

    main = parts[0][2]
    interactions: dict[str, tuple[str, ...]] = {}
    variables: dict[str, None] = {}
    for _, _, part in parts:
        interactions.update(part.interactions)
        variables.update(dict.fromkeys(part.variables))
    response = main.response
    family = "binomial" if response.kind == "binomial" else None
    return Translation(
        formula=whole,
        bambi_formula=main.bambi_formula,
        response=response,
        fixed=main.fixed,
        group_terms=tuple(group_terms),
        correlated=correlated,
        family=family,
        variables=tuple(variables),
        notes=tuple(notes),
        bars=tuple(bp.text for bp in per_bar),
        interaction_factors=interactions,
        intercept_as_b=main.intercept_as_b,
        dpar_formulas={dpar: part.bambi_formula for _, dpar, part in parts[1:]},
        gp_terms=tuple(main.gp_terms),
        cov_terms=dict(main.cov_terms),
    )


@dataclass
class _BarPart:
    """One bar of one formula on its way into the translation."""

    bar: Bar
    text: str  # the Bambi bar, e.g. "(1 + x|g)"
    terms: list[tuple[str, str, str]]  # (name, expr, factor) as formulae names them
    dpar: str
    source: str  # the bar as written
    start: int  # its span in the whole formula (a bf() included)
    end: int


@dataclass
class _Part:
    """One formula of a ``bf()`` (or the only formula), read."""

    response: Response
    fixed: str
    intercept_as_b: bool
    per_bar: list[_BarPart]
    interactions: dict[str, tuple[str, ...]]
    variables: tuple[str, ...]
    notes: list[str]
    bambi_formula: str
    gp_terms: list[GPTerm] = field(default_factory=list)
    cov_terms: dict[str, CovTerm] = field(default_factory=dict)


_BF_NAMES = ("bf", "brmsformula")


def _formulas(formula: object) -> list[tuple[str, str, _Formula | _Shifted]]:
    """``[(text, dpar, parsed)]``: the formula itself, or the formulas of brms' ``bf()``
    (the main one first with ``dpar == ""``). Errors in a formula of a ``bf()`` point into the
    whole text."""
    if not isinstance(formula, str) or not re.match(r"\s*(bf|brmsformula)\s*\(", formula):
        return [(formula, "", _parse(formula))]  # one formula (_parse refuses a non-string)
    tokens = tokenize(formula)
    match = _match_brackets(formula, tokens)
    if match.get(1) != len(tokens) - 1:
        after = match.get(1, len(tokens) - 1) + 1
        raise FormulaSyntaxError(
            f"text after {tokens[0].text}(...)",
            formula,
            tokens[min(after, len(tokens) - 1)].start,
            len(formula),
            hint="Write the whole model inside bf(...).",
        )
    args: list[tuple[int, int]] = []  # token index ranges of the arguments
    lo, i = 2, 2
    while i < len(tokens) - 1:
        if tokens[i].text in _OPENERS and tokens[i].kind == "op":
            i = match[i] + 1
            continue
        if tokens[i].text == "," and tokens[i].kind == "op":
            args.append((lo, i))
            lo = i + 1
        i += 1
    args.append((lo, len(tokens) - 1))
    out: list[tuple[str, str, _Formula]] = []
    for n, (a, b) in enumerate(args):
        if a >= b:
            raise FormulaSyntaxError(
                f"an empty argument in {tokens[0].text}()",
                formula,
                tokens[a - 1].start,
                tokens[min(a, len(tokens) - 1)].end,
            )
        start, end = tokens[a].start, tokens[b - 1].end
        text = formula[start:end]
        if tokens[a].kind == "name" and tokens[a + 1].text == "=" and b - a > 1:
            raise UnsupportedSyntaxError(
                f"the argument {tokens[a].text}= of {tokens[0].text}() is not supported",
                formula,
                start,
                end,
                hint="bf() takes the main formula and one formula per distributional "
                "parameter, e.g. bf(y ~ x, sigma ~ z); non-linear formulas are not supported.",
            )
        try:
            parsed = _parse(text)
        except FormulaSyntaxError as exc:
            raise type(exc)(
                exc.message, formula, exc.start + start, exc.end + start, exc.hint
            ) from None
        dpar = ""
        if n > 0:
            lhs = parsed.lhs
            if not (
                isinstance(lhs, _Atom) and lhs.kind == "name" and _PLAIN_NAME.fullmatch(lhs.text)
            ):
                raise FormulaSyntaxError(
                    "the left side of a further formula in bf() names a distributional parameter",
                    formula,
                    start + lhs.start,
                    start + lhs.end,
                    hint="Write e.g. bf(y ~ x, sigma ~ z): sigma, nu, shape, phi, zi, ... as "
                    "the family has them.",
                )
            dpar = lhs.text
            if dpar == "mu":
                raise UnsupportedSyntaxError(
                    "'mu ~ ...' in bf(): the main formula is the mean's",
                    formula,
                    start,
                    end,
                    hint="Write the mean's terms in the first formula.",
                )
            if dpar in (d for _, d, _ in out):
                raise FormulaSyntaxError(f"two formulas for {dpar!r} in bf()", formula, start, end)
        out.append((text, dpar, _Shifted(parsed, formula, start)))
    return out


class _Shifted:
    """A parsed formula of a ``bf()``, whose errors are raised against the whole text."""

    def __init__(self, f: _Formula, whole: str, offset: int) -> None:
        self.f, self.whole, self.offset = f, whole, offset


def _read_part(parsed: _Formula | _Shifted, dpar: str) -> _Part:
    if isinstance(parsed, _Shifted):
        try:
            return _read_one(parsed.f, dpar, parsed.offset)
        except FormulaSyntaxError as exc:
            if exc.formula != parsed.f.text:
                raise
            raise type(exc)(
                exc.message,
                parsed.whole,
                exc.start + parsed.offset,
                exc.end + parsed.offset,
                exc.hint,
            ) from None
    return _read_one(parsed, dpar, 0)


def _read_one(f: _Formula, dpar: str, offset: int) -> _Part:
    _check_specials(f)
    response, notes = _read_response(f)
    if dpar and (response.kind != "plain" or response.weights):
        raise FormulaSyntaxError(
            f"addition terms on the left of the {dpar!r} formula", f.text, 0, f.tilde.start
        )
    fixed = _fixed_text(f)
    fixed_nodes = _rhs_parts(f)[0]
    gp_terms, fixed_nodes = _split_gp(f, fixed_nodes)  # brms' gp(): lmmformula._gp
    if gp_terms:
        if dpar:
            raise UnsupportedSyntaxError(
                f"gp() in the formula of the distributional parameter {dpar!r}",
                f.text,
                gp_terms[0].start,
                gp_terms[0].end,
                hint="gp() is supported in the main formula of a bf() only, for now.",
            )
        fixed = _addends_text(f, fixed_nodes)
    fixed, intercept_as_b = _brms_intercept(f, fixed_nodes, fixed, notes)
    if dpar and intercept_as_b:
        raise UnsupportedSyntaxError(
            "'0 + Intercept' in the formula of a distributional parameter",
            f.text,
            f.tilde.end,
            len(f.text),
            hint=f"Write {dpar} ~ 1 + ... there; brms' explicit intercept is for the main formula.",
        )
    lo, hi = (
        (fixed_nodes[0][1].start, fixed_nodes[-1][1].end)
        if fixed_nodes
        else (f.tilde.end, len(f.text))
    )
    _formulae_description(f"y ~ {fixed}", f, lo, hi, f"the fixed part '{fixed}'")
    if not dpar:
        _formulae_description(
            f"{response.bambi} ~ 1", f, 0, f.tilde.start, f"the response '{response.bambi}'"
        )

    written = find_bars(f)
    _check_gp_gr_places(f, gp_terms, written)
    cov_at: dict[int, CovTerm] = {}  # brms' gr(g, cov = K), by the bar's start
    for i, bar in enumerate(written):
        written_bar, cov = _gr_bar(f, bar)
        written = (*written[:i], written_bar, *written[i + 1 :])
        if cov is not None:
            if dpar:
                raise UnsupportedSyntaxError(
                    f"gr(..., cov = ) in the formula of the distributional parameter {dpar!r}",
                    f.text,
                    cov.start,
                    cov.end,
                    hint="gr(g, cov = K) is supported in the main formula of a bf() only.",
                )
            cov_at[bar.start] = cov
    bars = expand_double_verts(expand_nested(written))
    if any(b.op == "||" for b in written):
        notes.append(
            "|| gives the terms of its bar independent priors (no correlations). With a "
            "factor f, (f||g) follows brms, glmmTMB and lme4's diag(): an intercept plus the "
            "usual contrasts of f, each with its own sd; lme4's classic || expansion "
            "(1|g) + (0 + f|g) would leave a full KxK correlated block on the levels of f."
        )
    for b in written:
        expanded = [e.factor for e in expand_nested((b,))]
        if len(expanded) > 1:
            shown = " + ".join(f"({b.lhs}|{fac})" for fac in expanded)
            notes.append(f"({b.lhs}|{b.factor}) is read as {shown}.")

    # Each bar -> its Bambi text and terms; duplicates refused.
    per_bar: list[_BarPart] = []
    seen: dict[str, Bar] = {}
    interactions: dict[str, tuple[str, ...]] = {}
    for bar in bars:
        factor = bar.factor
        parts = tuple(p.strip() for p in factor.split(":"))
        if len(parts) > 1 and all(_PLAIN_NAME.fullmatch(p) for p in parts):
            # lme4 groups by interaction(a, b, drop = TRUE): the observed combinations only,
            # where formulae would make every combination a level. The model layer adds the
            # combined column (named like Bambi's interaction factor) to its copy of the data.
            factor = ":".join(parts)
            interactions[factor] = parts
            factor = f"`{factor}`"
        text = f"({_bar_lhs(f, bar)}|{factor})"
        terms = _group_terms_of(text, f, bar)
        for name, _, _ in terms:
            if name in seen:
                first = seen[name]
                raise UnsupportedSyntaxError(
                    f"the group-level term {name} appears twice (first in "
                    f"'{f.text[first.start : first.end]}')",
                    f.text,
                    bar.start,
                    bar.end,
                    hint=(
                        "Give each term once; a bar includes the intercept unless it starts "
                        "with 0 +, e.g. (1 + x|g) or (1|g) + (0 + x|g)."
                    ),
                )
            seen[name] = bar
        source = f.text[bar.start : bar.end]
        per_bar.append(
            _BarPart(bar, text, terms, dpar, source, bar.start + offset, bar.end + offset)
        )

    cov_terms = {
        name: cov_at[bp.bar.start]
        for bp in per_bar
        if bp.bar.start in cov_at
        for name, _, _ in bp.terms
    }
    for gp in gp_terms:  # a (1|column) bar whose effects the model builds as the GP's values
        if gp.column in {fac for bp in per_bar for _, _, fac in bp.terms} or gp.column in (
            _plain_names(f)
        ):
            raise UnsupportedSyntaxError(
                f"{gp.text}: its label {gp.column!r} is also a name in the formula",
                f.text,
                gp.start,
                gp.end,
                hint="Rename that column.",
            )
        bar = Bar(lhs="1", factor=gp.column, start=gp.start, end=gp.end)
        terms = [(gp.term, "1", gp.column)]
        text = f"(1|{gp.column})"
        per_bar.append(
            _BarPart(bar, text, terms, dpar, gp.text, gp.start + offset, gp.end + offset)
        )
    rhs = " + ".join([fixed] + [bp.text for bp in per_bar])
    lhs = dpar or response.bambi
    bambi_formula = f"{lhs} ~ {rhs}"
    desc = _formulae_description(bambi_formula, f, 0, len(f.text), "the translated formula")
    built = {t.name for t in desc.terms if isinstance(t, GroupSpecificTerm)}
    names = [name for bp in per_bar for name, _, _ in bp.terms]
    if built != set(names):  # formulae quirks; the bars are disjoint
        raise FormulaSyntaxError(
            f"Bambi's formula parser (formulae) reads the translated formula "
            f"'{bambi_formula}' with the group-level terms {sorted(built)}, not "
            f"{names}; please report this formula",
            f.text,
            0,
            len(f.text),
        )
    var_names = {v for v in desc.var_names if v not in interactions and v != dpar}
    var_names |= {p for parts in interactions.values() for p in parts}
    var_names -= {g.column for g in gp_terms}
    var_names |= {v for g in gp_terms for v in (*g.covariates, *([g.by] if g.by else []))}
    variables = _variables(f, var_names)
    if dpar:
        variables = tuple(v for v in variables if v != dpar)
    return _Part(
        response=response,
        fixed=fixed,
        intercept_as_b=intercept_as_b,
        per_bar=per_bar,
        interactions=interactions,
        variables=variables,
        notes=notes,
        bambi_formula=bambi_formula,
        gp_terms=gp_terms,
        cov_terms=cov_terms,
    )
