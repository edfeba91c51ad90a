"""The layers: the formula layer works without Bambi; the Bambi seam checks its version when a
model is built, not at import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import lmmformula as lf
from lmmformula import _bambi
from lmmformula.errors import ModelError


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter; its standard output (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_translate_works_with_bambi_and_pymc_absent() -> None:
    code = (
        "import sys; sys.modules['bambi'] = None; sys.modules['pymc'] = None\n"
        "import lmmformula as lf\n"
        "t = lf.translate('y ~ x + (x|g) + (1|a/b)')\n"
        "assert t.correlated == {'g': ('1|g', 'x|g')}, t.correlated\n"
        "assert 'bambi' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "try:\n"
        "    lf.model\n"
        "except ImportError:\n"
        "    print('model needs bambi')\n"
    )
    assert _python(code) == "model needs bambi"


def test_bambi_version_is_checked_when_a_model_is_built(monkeypatch, sleepstudy) -> None:
    with pytest.raises(ModelError, match=r"needs bambi 0\.21\.x.*bambi 0\.22\.0 is installed"):
        _bambi.check_bambi_version("0.22.0")
    _bambi.check_bambi_version("0.21.3")
    monkeypatch.setattr(_bambi, "version", lambda name: "0.22.0")
    assert lf.translate("Reaction ~ Days + (Days|Subject)").correlated
    with pytest.raises(ModelError, match="needs bambi"):
        lf.model("Reaction ~ Days + (Days|Subject)", sleepstudy)


def test_public_names_resolve() -> None:
    for name in lf.__all__:
        assert getattr(lf, name) is not None, name
    with pytest.raises(AttributeError):
        lf.not_a_name  # noqa: B018


def test_submodules_do_not_shadow_the_functions_of_the_same_name() -> None:
    code = (
        "import lmmformula.model, lmmformula.fit, lmmformula.compare\n"
        "import lmmformula as lf\n"
        "assert callable(lf.model) and callable(lf.fit) and callable(lf.compare)\n"
        "assert lf.model.__module__ == 'lmmformula.model'\n"
    )
    _python(code)


def _imports(path) -> set[str]:
    """The package modules ``path`` imports, in-function imports included, ``TYPE_CHECKING``
    blocks left out."""
    import ast

    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if "TYPE_CHECKING" in ast.unparse(node.test):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            parts = (node.module or "").split(".")
            if parts[0] == "lmmformula":
                found.update(parts[1:2] or [a.name for a in node.names])

    Visitor().visit(ast.parse(path.read_text()))
    return found


def test_the_package_imports_have_no_cycles() -> None:
    from pathlib import Path

    package = Path(lf.__file__).parent
    graph = {p.stem: _imports(p) - {p.stem, "__init__"} for p in package.glob("*.py")}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cyclic = {m for m in graph if m in reach(m)}
    assert not cyclic, sorted(cyclic)


def test_only_the_bambi_seam_imports_bambi() -> None:
    """Bambi is imported by at most three modules (issue 13): the seam ``_bambi`` and, for type
    hints only, ``_frame``."""
    import ast
    from pathlib import Path

    importers = set()
    for path in Path(lf.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n.split(".")[0] == "bambi" for n in names):
                importers.add(path.stem)
    assert importers <= {"_bambi", "_frame"}, sorted(importers)


def test_priors_are_resolved_to_a_value_that_changes_nothing(sleepstudy) -> None:
    import copy

    from lmmformula.priors import ResolvedPriors, resolve_priors

    priors = [lf.prior("normal(0, 5)", cls="b"), lf.prior("lkj(4)", cls="cor")]
    m = lf.model("Reaction ~ Days + (Days|Subject)", sleepstudy, priors=priors)
    assert isinstance(m.resolved_priors, ResolvedPriors)
    assert m.resolved_priors.block_eta == {"Subject": 4.0} == m.block_eta
    assert m.blocks["Subject"].eta == 4.0
    before = copy.deepcopy((m.block_eta, str(m.bambi)))
    again = resolve_priors(m, [lf.prior("normal(0, 1)", cls="b"), lf.prior("lkj(9)", cls="cor")])
    assert again.block_eta == {"Subject": 9.0}
    assert str(again.bambi_priors["Days"]) == "Normal(mu: 0.0, sigma: 1.0)"
    assert (m.block_eta, str(m.bambi)) == before  # resolving another set changed nothing
