"""The examples in the package's docstrings run and print what they show.

Every module of ``lmmformula`` with a ``>>>`` example is run through :mod:`doctest`; examples
marked ``# doctest: +SKIP`` (they sample, or draw a figure) are left out.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import warnings
from pathlib import Path

import pytest

import lmmformula

PACKAGE = Path(lmmformula.__file__).parent
MODULES = sorted(
    f"lmmformula.{info.name}"
    for info in pkgutil.iter_modules([str(PACKAGE)])
    if ">>>" in (PACKAGE / f"{info.name}.py").read_text(encoding="utf-8")
)


def test_the_modules_with_examples_are_found():
    assert {"lmmformula._text", "lmmformula.formula", "lmmformula.priors"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    runner = doctest.DocTestRunner(optionflags=flags, verbose=False)
    out: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for test in finder.find(module, name):
            runner.run(test, out=out.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(out)
