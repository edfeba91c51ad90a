"""One tree of errors for everything lmmformula refuses.

Every error the library raises on purpose derives from :class:`LmmFormulaError`, so
``except lf.errors.LmmFormulaError`` catches every refusal and nothing else.

================================  ===========================================================
class                             raised when
================================  ===========================================================
:class:`FormulaSyntaxError`       the formula cannot be read (shows a caret under the span)
:class:`UnsupportedSyntaxError`   the formula is valid R but cannot keep its R meaning here
:class:`DataError`                the data cannot be used with the formula (missing columns,
                                  bad values, ...)
:class:`PriorError`               a prior names a class, term or group the model lacks, or a
                                  distribution it cannot read
:class:`ModelError`               an argument of ``lf.model``/``fit`` is out of range
:class:`FitError`                 a fit cannot be used for what was asked (e.g. comparing
                                  fits on different data, loading a foreign file)
================================  ===========================================================
"""

from __future__ import annotations

from lmmformula._text import clamp_span, point_at

__all__ = [
    "DataError",
    "FitError",
    "FormulaSyntaxError",
    "LmmFormulaError",
    "ModelError",
    "PriorError",
    "UnsupportedSyntaxError",
]


class LmmFormulaError(Exception):
    """Base class of every error lmmformula raises on purpose."""


class FormulaSyntaxError(LmmFormulaError, ValueError):
    """The formula cannot be read.

    Parameters
    ----------
    message : str
        What is wrong, in words.
    formula : str
        The formula as the user wrote it.
    start, end : int
        The span ``formula[start:end]`` at fault; shown with carets under it.
    hint : str, optional
        The fix, where one is known.
    """

    def __init__(
        self, message: str, formula: str, start: int, end: int, hint: str | None = None
    ) -> None:
        self.message = message
        self.formula = formula
        self.start, self.end = clamp_span(formula, start, end)
        self.hint = hint
        super().__init__(point_at(message, formula, self.start, self.end, hint))

    @property
    def snippet(self) -> str:
        """The part of the formula at fault."""
        return self.formula[self.start : self.end]


class UnsupportedSyntaxError(FormulaSyntaxError):
    """Valid lme4/brms syntax whose meaning lmmformula cannot reproduce; says what to write."""


class DataError(LmmFormulaError, ValueError):
    """The data cannot be used with the formula; the message names the column or value."""


class PriorError(LmmFormulaError, ValueError):
    """A prior that cannot be read or that names something the model does not have."""


class ModelError(LmmFormulaError, ValueError):
    """An argument of the model or the fit is out of range or inconsistent."""


class FitError(LmmFormulaError, RuntimeError):
    """A fit cannot be used for the operation asked of it."""


class SamplingWarning(UserWarning):
    """The sampler reported divergences, high R-hat or low effective sample sizes."""
