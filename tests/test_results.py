"""The R-style accessors against direct reductions of the posterior draws.

``summary`` (its printed table parsed back), ``fixef``, ``varcorr``, ``ranef`` and ``coef``
are each compared with numpy means, standard deviations and quantiles of the stored draws,
found by Bambi's variable names (``1|g``, ``x|g_sigma``, ``g_corr``) and not through the
accessors' own helpers. Two fits: the sleepstudy fit of conftest (sampled), and a model with a
``(0 + f|g)`` factor block and an ``(x|h)`` block whose "posterior" is a set of prior draws
(the accessors only read draws, so no sampling is needed for it).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pymc as pm
import pytest
import xarray as xr

import lmmformula as lf
from lmmformula.fit import Fit

Q = (0.025, 0.975)
COLUMNS = {"Estimate": "mean", "Est.Error": "sd", "l-95% CI": "lower", "u-95% CI": "upper"}
LEVELS = list("abcd")


# -- fits ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def factor_fit():
    """``y ~ x + (0 + f|g) + (x|h)`` with 2 chains x 150 prior draws as its posterior."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(15), 8)
    data = pd.DataFrame(
        {
            "y": rng.normal(size=120),
            "x": rng.normal(size=120),
            "f": np.tile(LEVELS, 30),
            "g": [f"g{i:02d}" for i in g],
            "h": [f"h{i % 3}" for i in g],
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lf.model("y ~ x + (0 + f|g) + (x|h)", data)
        pm_model = model.build().pymc_model
        names = ["Intercept", "x", "sigma", "f|g", "f|g_sigma", "g_corr"]
        names += ["1|h", "x|h", "1|h_sigma", "x|h_sigma", "h_corr"]
        prior = pm.sample_prior_predictive(
            draws=300, model=pm_model, var_names=names, random_seed=5
        )
    draws = prior["prior"].to_dataset().isel(chain=0)
    halves = [draws.isel(draw=slice(i * 150, (i + 1) * 150)) for i in range(2)]
    posterior = xr.concat(
        [h.assign_coords(draw=np.arange(150)) for h in halves], dim="chain"
    ).assign_coords(chain=[0, 1])
    idata = xr.DataTree.from_dict({"posterior": posterior})
    return Fit(model, idata, sampler="prior draws", settings={"tune": 0})


@pytest.fixture(params=["sleepstudy", "factor"])
def any_fit(request):
    if request.param == "sleepstudy":
        return request.getfixturevalue("sleep_fit")
    return request.getfixturevalue("factor_fit")


# -- direct reductions ---------------------------------------------------------------------------
def reduce(draws) -> dict[str, float]:
    """Posterior mean, sd and 95% equal-tailed interval of (chain, draw) draws."""
    flat = np.asarray(draws, dtype=float).reshape(-1)
    lower, upper = np.quantile(flat, Q)
    return {"mean": flat.mean(), "sd": flat.std(ddof=1), "lower": lower, "upper": upper}


def _group_name(term: str, factor: str) -> tuple[str, str | None]:
    """Bambi's variable for a term label: ``Intercept`` -> ``1|g``; ``f[a]`` -> (``f|g``, a)."""
    if term == "Intercept":
        return f"1|{factor}", None
    hit = re.fullmatch(r"(.+)\[(.+)\]", term)
    if hit:
        return f"{hit.group(1)}|{factor}", hit.group(2)
    return f"{term}|{factor}", None


def _select(da: xr.DataArray, level: str | None) -> xr.DataArray:
    if level is None:
        return da
    (dim,) = [d for d in da.dims if d.endswith("__expr_dim")]
    return da.sel({dim: level})


def sd_draws(post: xr.Dataset, factor: str, term: str) -> np.ndarray:
    name, level = _group_name(term, factor)
    return _select(post[f"{name}_sigma"], level).transpose("chain", "draw").values


def cor_draws(post: xr.Dataset, factor: str, a: str, b: str) -> np.ndarray:
    corr = post[f"{factor}_corr"]
    labels = {}
    for term in (a, b):
        name, level = _group_name(term, factor)
        labels[term] = name if level is None else name.replace("|", f"[{level}]|")
    dim, dim_bis = f"{factor}__block_dim", f"{factor}__block_dim_bis"
    return corr.sel({dim: labels[a], dim_bis: labels[b]}).transpose("chain", "draw").values


def effect_draws(post: xr.Dataset, factor: str, term: str) -> np.ndarray:
    """(chain, draw, level) draws of one group-level coefficient."""
    name, level = _group_name(term, factor)
    da = _select(post[name], level)
    return da.transpose("chain", "draw", f"{factor}__factor_dim").values


def fixed_names(fit: Fit) -> list[str]:
    return [n for n in ("Intercept", "x", "Days") if n in fit.posterior]


def factors(fit: Fit) -> list[str]:
    return sorted(
        str(v).split("__")[0] for v in fit.posterior.coords if str(v).endswith("__factor_dim")
    )


# -- the printed summary, parsed back ------------------------------------------------------------
def parse_summary(text: str) -> dict[str, dict[str, dict[str, str]]]:
    """``{section: {row label: {column: printed value}}}``; sections are ``~factor``,
    ``Regression Coefficients`` and ``Further Distributional Parameters``."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    section = None
    header: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            header = None
            continue
        if stripped.startswith("~"):
            section, header = stripped, None
            continue
        if stripped in ("Regression Coefficients:", "Further Distributional Parameters:"):
            section, header = stripped[:-1], None
            continue
        if section is None:
            continue
        if "Estimate" in stripped and header is None:
            header = stripped.replace("l-95% CI", "l-95%_CI").replace("u-95% CI", "u-95%_CI")
            header = [h.replace("_CI", " CI") for h in header.split()]
            continue
        if header is not None:
            label, *values = stripped.split()
            assert len(values) == len(header), line
            out.setdefault(section, {})[label] = dict(zip(header, values, strict=True))
        if stripped.startswith("Diagnostics:"):
            break
    return out


def assert_printed(printed: str, expected: float, what: str) -> None:
    """A printed number equals ``expected`` up to the rounding of its last printed digit."""
    if printed.lower() == "nan":
        assert np.isnan(expected), f"{what}: printed NaN, expected {expected}"
        return
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    tol = 0.5 * 10.0**-decimals * (1 + 1e-9)
    assert abs(float(printed) - expected) <= tol, f"{what}: printed {printed}, expected {expected}"


def _expected_rows(fit: Fit) -> dict[str, dict[str, np.ndarray]]:
    """The summary's sections and rows, each with its draws, written from Bambi's names."""
    post = fit.posterior
    rows: dict[str, dict[str, np.ndarray]] = {}
    for factor in factors(fit):
        terms = []
        for name in post.data_vars:
            if name.endswith(f"|{factor}") and f"{factor}__factor_dim" in post[name].dims:
                expr = name.split("|")[0]
                da = post[name]
                extra = [d for d in da.dims if d.endswith("__expr_dim")]
                if extra:
                    terms += [f"{expr}[{lv}]" for lv in da[extra[0]].values]
                else:
                    terms.append("Intercept" if expr == "1" else expr)
        # the block's column order
        order = [str(v) for v in post[f"{factor}_corr"][f"{factor}__block_dim"].values]
        order = [_pretty(v) for v in order]
        terms = sorted(terms, key=order.index)
        section = rows.setdefault(f"~{factor}", {})
        for term in terms:
            section[f"sd({term})"] = sd_draws(post, factor, term)
        for i, a in enumerate(terms):
            for b in terms[i + 1 :]:
                section[f"cor({a},{b})"] = cor_draws(post, factor, a, b)
    rows["Regression Coefficients"] = {n: post[n].values for n in fixed_names(fit)}
    rows["Further Distributional Parameters"] = {"sigma": post["sigma"].values}
    return rows


def _pretty(column: str) -> str:
    expr = column.split("|")[0]
    return "Intercept" if expr == "1" else expr


# -- tests --------------------------------------------------------------------------------------
@pytest.mark.sampling
def test_summary_table_is_the_draws(any_fit):
    fit = any_fit
    text = str(fit.summary())
    printed = parse_summary(text)
    expected = _expected_rows(fit)
    assert set(printed) == set(expected)
    for section, rows in expected.items():
        assert list(printed[section]) == list(rows), section
        for label, draws in rows.items():
            ref = reduce(draws)
            for column, key in COLUMNS.items():
                assert_printed(printed[section][label][column], ref[key], f"{label} {column}")
            assert float(printed[section][label]["l-95% CI"]) <= float(
                printed[section][label]["u-95% CI"]
            )
    # the header counts the data
    data = fit.model.data
    sizes = ", ".join(f"{f} ({data[f].nunique()})" for f in factors(fit))
    assert f"Data: {len(data)} observations; groups: {sizes}" in text


@pytest.mark.sampling
def test_summary_agrees_with_fixef_and_varcorr(any_fit):
    fit = any_fit
    printed = parse_summary(str(fit.summary()))
    fe = fit.fixef()
    for name, row in printed["Regression Coefficients"].items():
        for column, key in zip(COLUMNS, ("estimate", "sd", "lower", "upper"), strict=True):
            assert_printed(row[column], fe.loc[name, key], f"fixef {name} {column}")
    vc = fit.varcorr()
    for _, row in vc.iterrows():
        if row.grp == "Residual":
            section, label = "Further Distributional Parameters", "sigma"
        elif row.var2 is None:
            section, label = f"~{row.grp}", f"sd({row.var1})"
        else:
            section, label = f"~{row.grp}", f"cor({row.var1},{row.var2})"
        for column, key in zip(COLUMNS, ("estimate", "sd", "lower", "upper"), strict=True):
            assert_printed(printed[section][label][column], row[key], f"varcorr {label} {column}")


@pytest.mark.sampling
def test_fixef_is_the_draws(any_fit):
    fit = any_fit
    fe = fit.fixef()
    assert list(fe.index) == fixed_names(fit)
    for name in fe.index:
        ref = reduce(fit.posterior[name].values)
        got = fe.loc[name]
        np.testing.assert_allclose(
            [got.estimate, got.sd, got.lower, got.upper],
            [ref["mean"], ref["sd"], ref["lower"], ref["upper"]],
            rtol=1e-10,
        )


@pytest.mark.sampling
def test_varcorr_is_the_draws(any_fit):
    fit = any_fit
    post = fit.posterior
    vc = fit.varcorr()
    seen = 0
    for _, row in vc.iterrows():
        if row.grp == "Residual":
            draws = post["sigma"].values
        elif row.var2 is None:
            draws = sd_draws(post, row.grp, row.var1)
        else:
            draws = cor_draws(post, row.grp, row.var1, row.var2)
        ref = reduce(draws)
        np.testing.assert_allclose(
            [row.estimate, row.sd, row.lower, row.upper],
            [ref["mean"], ref["sd"], ref["lower"], ref["upper"]],
            rtol=1e-10,
            err_msg=f"{row.grp} {row.var1} {row.var2}",
        )
        seen += 1
    expected = sum(len(rows) for rows in _expected_rows(fit).values()) - len(fixed_names(fit))
    assert seen == expected


def test_factor_term_sds_are_each_levels_draws(factor_fit):
    """``(0 + f|g)``: one sd per level of f, each the draws of that level's sd."""
    post = factor_fit.posterior
    vc = factor_fit.varcorr()
    sds = vc[(vc.grp == "g") & vc.var2.isna()].set_index("var1")
    assert list(sds.index) == [f"f[{lv}]" for lv in LEVELS]
    for lv in LEVELS:
        draws = post["f|g_sigma"].sel(f__expr_dim=lv).values
        assert sds.loc[f"f[{lv}]", "estimate"] == pytest.approx(draws.mean(), rel=1e-12)
        lower, upper = np.quantile(draws, Q)
        assert sds.loc[f"f[{lv}]", "lower"] == pytest.approx(lower, rel=1e-12)
        assert sds.loc[f"f[{lv}]", "upper"] == pytest.approx(upper, rel=1e-12)
    # the levels' draws differ, so a mix-up of levels shows
    assert sds["estimate"].nunique() == len(LEVELS)
    # and the correlations are the 6 off-diagonal cells of the 4 x 4 matrix, in order
    cors = vc[(vc.grp == "g") & vc.var2.notna()]
    pairs = [(f"f[{a}]", f"f[{b}]") for i, a in enumerate(LEVELS) for b in LEVELS[i + 1 :]]
    assert list(zip(cors.var1, cors.var2, strict=True)) == pairs
    corr = post["g_corr"].values
    cells = [(i, j) for i in range(4) for j in range(i + 1, 4)]
    for (_, row), (i, j) in zip(cors.iterrows(), cells, strict=True):
        assert row.estimate == pytest.approx(corr[:, :, i, j].mean(), rel=1e-12)


@pytest.mark.sampling
def test_ranef_and_coef_are_the_draws(any_fit):
    fit = any_fit
    post = fit.posterior
    ranef = fit.ranef()
    coef = fit.coef()
    long = fit.ranef(long=True)
    assert set(ranef) == set(coef) == set(factors(fit))
    for factor, table in ranef.items():
        levels = [str(v) for v in post[f"{factor}__factor_dim"].values]
        assert [str(v) for v in table.index] == levels
        for term in table.columns:
            draws = effect_draws(post, factor, term)  # (chain, draw, level)
            flat = draws.reshape(-1, draws.shape[-1])
            np.testing.assert_allclose(table[term], flat.mean(axis=0), rtol=1e-10)
            rows = long[(long.grpvar == factor) & (long.term == term)]
            assert [str(v) for v in rows.grp] == levels
            lower, upper = np.quantile(flat, Q, axis=0)
            np.testing.assert_allclose(rows.condval, flat.mean(axis=0), rtol=1e-10)
            np.testing.assert_allclose(rows.condsd, flat.std(axis=0, ddof=1), rtol=1e-10)
            np.testing.assert_allclose(rows.lower, lower, rtol=1e-10)
            np.testing.assert_allclose(rows.upper, upper, rtol=1e-10)
            # coef: the population value plus the level's deviation, draw by draw
            fixed = post[term].values[..., None] if term in post else 0.0
            np.testing.assert_allclose(
                coef[factor][term], (fixed + draws).mean(axis=(0, 1)), rtol=1e-10, atol=1e-12
            )
        # population coefficients without a group-level part on this factor
        for name in fixed_names(fit):
            if name not in table.columns:
                np.testing.assert_allclose(coef[factor][name], post[name].values.mean())


def test_two_blocks_on_one_factor_report_each_blocks_correlation():
    """``(x|g) + (0 + z + w|g)``: two correlated blocks on g (lme4: separate bars are separate
    blocks); varcorr reports cor(Intercept, x) and cor(z, w), each from its own block's draws,
    and no correlation across the blocks."""
    rng = np.random.default_rng(3)
    data = pd.DataFrame(
        {
            "y": rng.normal(size=120),
            "x": rng.normal(size=120),
            "z": rng.normal(size=120),
            "w": rng.normal(size=120),
            "g": np.repeat([f"g{i:02d}" for i in range(15)], 8),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lf.model("y ~ x + (x|g) + (0 + z + w|g)", data)
        pm_model = model.build().pymc_model
        names = [d.name for d in pm_model.deterministics if d.name != "mu"]
        prior = pm.sample_prior_predictive(
            draws=200, model=pm_model, var_names=[*names, "Intercept", "x", "sigma"], random_seed=7
        )
    fit = Fit(model, xr.DataTree.from_dict({"posterior": prior["prior"].to_dataset()}), sampler="")
    post = fit.posterior
    corr_names = sorted(n for n in post.data_vars if n.endswith("_corr"))
    assert len(corr_names) == 2
    vc = fit.varcorr()
    cors = vc[vc.var2.notna()]
    assert sorted(zip(cors.var1, cors.var2, strict=True)) == [("Intercept", "x"), ("z", "w")]
    for _, row in cors.iterrows():
        # the block whose axes hold both terms
        wanted = {_group_name(row.var1, "g")[0], _group_name(row.var2, "g")[0]}
        (name,) = [
            n for n in corr_names if wanted <= {str(v) for v in post[n][post[n].dims[2]].values}
        ]
        corr = post[name]
        cell = corr.sel(
            {
                corr.dims[2]: _group_name(row.var1, "g")[0],
                corr.dims[3]: _group_name(row.var2, "g")[0],
            }
        )
        np.testing.assert_allclose(row.estimate, float(cell.mean()), rtol=1e-12)
    sds = vc[(vc.grp == "g") & vc.var2.isna()]
    assert list(sds.var1) == ["Intercept", "x", "z", "w"]
    for _, row in sds.iterrows():
        np.testing.assert_allclose(row.estimate, sd_draws(post, "g", row.var1).mean(), rtol=1e-12)
