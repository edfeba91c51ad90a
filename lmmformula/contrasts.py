"""R's contrast functions for ``C(f, contr.sum)`` and friends.

R codes a factor ``f`` with K levels by a K x (K - 1) contrast matrix when the term does not
span the intercept on its own, and by its K indicators when it does. formulae knows treatment
and sum coding; R users also write ``contr.helmert`` and ``contr.poly`` (the default for
ordered factors). :data:`contr` makes ``C(f, contr.sum)``, ``C(f, contr.treatment)``,
``C(f, contr.helmert)`` and ``C(f, contr.poly)`` mean what they mean in R: the same matrices
as R's ``contr.*`` functions (``contr.poly`` up to the sign of each column, which R fixes by
its own QR convention; the coded column space is the same).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from formulae.categorical import ContrastMatrix, Encoding, Sum, Treatment

__all__ = ["Helmert", "Poly", "contr"]


class Helmert(Encoding):
    """R's ``contr.helmert``: column j contrasts level j + 1 with the mean of levels 1..j."""

    def code_without_intercept(self, levels):
        n = len(levels)
        matrix = np.zeros((n, n - 1))
        for j in range(n - 1):
            matrix[: j + 1, j] = -1.0
            matrix[j + 1, j] = j + 1.0
        return ContrastMatrix(matrix, [f"H{j + 1}" for j in range(n - 1)])

    def code_with_intercept(self, levels):
        contrast = self.code_without_intercept(levels)
        matrix = np.column_stack((np.ones(len(levels)), contrast.matrix))
        return ContrastMatrix(matrix, ["mean", *contrast.labels])


class Poly(Encoding):
    """R's ``contr.poly``: orthonormal polynomials in the level positions 1..K."""

    def _matrix(self, n: int) -> np.ndarray:
        x = np.arange(1, n + 1, dtype=float)
        vander = np.vander(x - x.mean(), n, increasing=True)
        q, r = np.linalg.qr(vander)
        q = q * np.sign(np.diag(r))  # R's sign convention: positive leading coefficients
        return q[:, 1:]

    def code_without_intercept(self, levels):
        n = len(levels)
        labels = [".L", ".Q", ".C"] + [f"^{k}" for k in range(4, n)]
        return ContrastMatrix(self._matrix(n), labels[: n - 1])

    def code_with_intercept(self, levels):
        contrast = self.code_without_intercept(levels)
        matrix = np.column_stack((np.ones(len(levels)), contrast.matrix))
        return ContrastMatrix(matrix, ["mean", *contrast.labels])


contr = SimpleNamespace(sum=Sum, treatment=Treatment, helmert=Helmert, poly=Poly)
"""R's contrast functions by their R names: ``contr.sum``, ``contr.treatment``,
``contr.helmert``, ``contr.poly``."""
