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

import numpy as np
import pytest
from oracle import printed_table  # tests/ is on sys.path under pytest

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
    "sleepstudy_from_lme4": ["lme4 estimate", "re.form = NA", "new subject", "elpd_loo"],
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


# -- computed numbers in the executed notebooks, against independent references ------------------
def _printed_by(out: Path, name: str, code: str) -> str:
    """The printed output of the (one) code cell of a vignette whose source contains ``code``."""
    nb = json.loads((out / f"{name}.ipynb").read_text(encoding="utf-8"))
    cells = [c for c in nb["cells"] if c["cell_type"] == "code" and code in "".join(c["source"])]
    assert len(cells) == 1, f"{name}: {len(cells)} cells contain {code!r}"
    texts = []
    for output in cells[0].get("outputs", []):
        if output["output_type"] == "stream":
            texts.append("".join(output["text"]))
        elif "text/plain" in output.get("data", {}):
            texts.append("".join(output["data"]["text/plain"]))
    return "\n".join(texts)


def _summary_rows(text: str, section: str) -> dict[str, tuple[float, float]]:
    """``{label: (Estimate, Est.Error)}`` of one table of a printed summary."""
    return {k: (float(v[0]), float(v[1])) for k, v in printed_table(text, section).items()}


def _near(rows: dict[str, tuple[float, float]], reference: dict[str, float], k: float = 3.0):
    """Each estimate lies within ``k`` posterior sds of its reference value."""
    for label, ref in reference.items():
        estimate, error = rows[label]
        assert abs(estimate - ref) < k * error, f"{label}: {estimate} +- {error} vs {ref}"


@pytest.mark.sampling
def test_sleepstudy_numbers_are_near_lme4(rendered):
    """The printed posterior means against lme4's REML fit (Bates et al. 2015, section 5), not
    against the reference numbers the vignette prints itself."""
    out, _ = rendered
    text = _printed_by(out, "sleepstudy_from_lme4", "print(fit.summary())")
    _near(_summary_rows(text, "Regression Coefficients:"), {"Intercept": 251.405, "Days": 10.467})
    _near(_summary_rows(text, "~Subject"), {"sd(Intercept)": 24.741, "sd(Days)": 5.922})
    _near(_summary_rows(text, "Further Distributional Parameters:"), {"sigma": 25.592})


@pytest.mark.sampling
def test_ozone_pooled_fit_is_near_least_squares(rendered):
    """The pooled model's printed coefficients against least squares on the same rows (the
    vignette's smoke subset, drawn here the same way)."""
    import lmmformula as lf

    out, _ = rendered
    ozone = lf.load_dataset("beijing_ozone")
    ozone = ozone.groupby("station").sample(n=40, random_state=20240611).sort_index()
    x, y = ozone["TEMP"].to_numpy(), ozone["log_ozone"].to_numpy()
    design = np.column_stack([np.ones_like(x), x])
    (a, b), rss, *_ = np.linalg.lstsq(design, y, rcond=None)
    text = _printed_by(out, "beijing_ozone", 'print(fits["pooled"].summary())')
    assert f"Data: {len(ozone)} observations" in text
    _near(_summary_rows(text, "Regression Coefficients:"), {"Intercept": a, "TEMP": b})
    sigma = np.sqrt(rss[0] / (len(y) - 2))
    _near(_summary_rows(text, "Further Distributional Parameters:"), {"sigma": sigma})


@pytest.mark.sampling
def test_nwo_gender_model_is_near_the_observed_rates(rendered):
    """Model 1 (``0 + gender``, wide priors) against the observed award rates: its logits and
    the gap in percentage points."""
    import lmmformula as lf

    out, _ = rendered
    nwo = lf.load_dataset("nwo_grants").groupby("gender")[["awards", "applications"]].sum()
    rate = nwo["awards"] / nwo["applications"]
    logit = np.log(rate / (1 - rate))
    text = _printed_by(out, "nwo_grants", "print(fit1.summary())")
    rows = _summary_rows(text, "Regression Coefficients:")
    _near(rows, {"gender[f]": logit["f"], "gender[m]": logit["m"]})
    gaps = _printed_by(out, "nwo_grants", "for name, g in gaps.items():")
    first = gaps.splitlines()[0]
    assert first.startswith("1: gender only")
    printed_gap = float(first.split()[5])
    assert abs(printed_gap - 100 * (rate["m"] - rate["f"])) < 1.0  # percentage points
