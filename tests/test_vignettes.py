"""The vignettes render: every executable vignette runs from scratch (smoke mode: few draws, a
data subset) and becomes self-contained HTML with its figures and tables; the migration guide
renders too."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VIGNETTES = ROOT / "vignettes"
RENDER = VIGNETTES / "render.py"

# vignette -> strings its HTML must contain (key tables and results)
EXPECTED = {
    "nwo_grants": ["elpd_loo", "elpd_diff", "gap_pp", "Regression Coefficients", "sd(Intercept)"],
    "beijing_ozone": [
        "elpd_loo",
        "elpd_diff",
        "FLAGGED",
        "No flags",
        "divergences",
        "correlated slopes",
        "varying intercepts",
        "baseline at 0",
    ],
    "sleepstudy_from_lme4": [
        "REML criterion at convergence: 1743.6",
        "lme4 estimate",
        "251.405",
        "re.form = NA",
        "new subject",
        "elpd_loo",
    ],
}
PAGES = {"migrating_from_r": ["<table", "loo_compare", "allow_new_levels", 'priors="brms"']}
PNG = "data:image/png;base64"


def _scripts() -> list[Path]:
    return sorted(p for p in VIGNETTES.glob("*.py") if p.name != "render.py")


def test_every_vignette_is_checked():
    assert {p.stem for p in _scripts()} == set(EXPECTED)
    assert {p.stem for p in VIGNETTES.glob("*.md")} == set(PAGES)


@pytest.mark.parametrize("path", _scripts(), ids=lambda p: p.stem)
def test_vignette_uses_public_api_and_states_settings(path):
    """Only ``import lmmformula as lf``; the seed and sampler settings in the first code cell;
    smoke mode read from the environment."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("lmmformula"), (
                f"{path.name}: 'from {node.module} import ...'; use the public API (lf.*)"
            )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lmmformula"):
                    assert alias.name == "lmmformula" and alias.asname == "lf", path.name
    assert not re.search(r"\b(lf|lmmformula)\._(?!_)", source), f"{path.name}: private name"
    first_code = source.split("# %%\n", 1)[1].split("# %%", 1)[0]
    for needle in ("LMMFORMULA_SMOKE", "SEED =", "SAMPLER =", "draws", "tune", "chains"):
        assert needle in first_code, f"{path.name}: first code cell lacks {needle!r}"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("vignettes")
    env = dict(os.environ, LMMFORMULA_SMOKE="1")
    proc = subprocess.run(
        [sys.executable, str(RENDER), "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return out, proc


@pytest.mark.sampling
def test_render_succeeds(rendered):
    _, proc = rendered
    assert proc.returncode == 0, f"render failed:\n{proc.stdout}\n{proc.stderr[-6000:]}"


@pytest.mark.sampling
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_vignette_html(rendered, name):
    out, proc = rendered
    html_path = out / f"{name}.html"
    assert html_path.exists(), f"{name}.html missing:\n{proc.stdout}\n{proc.stderr[-6000:]}"
    html = html_path.read_text(encoding="utf-8")
    assert PNG in html, f"{name}.html has no embedded figure"
    # self-contained: every image is embedded
    assert not re.search(r"<img[^>]+src=\"(?!data:)", html)
    # no cell raised (the executed notebook holds no error output)
    nb = json.loads((out / f"{name}.ipynb").read_text(encoding="utf-8"))
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, errors
    for needle in EXPECTED[name]:
        assert needle in html, f"{name}.html lacks {needle!r}"


@pytest.mark.sampling
@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_html(rendered, name):
    out, _ = rendered
    html = (out / f"{name}.html").read_text(encoding="utf-8")
    for needle in PAGES[name]:
        assert needle in html, f"{name}.html lacks {needle!r}"
    # pipes escaped for GitHub tables show as plain pipes
    assert "\\|" not in html
    assert "(x|g)" in html
