"""The ``lmmformula`` command line: the translate subcommand and the command registry."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from oracle import printed_table  # tests/ is on sys.path under pytest

from lmmformula import cli
from lmmformula.cli import COMMANDS, Command, build_parser, main


def test_translate_prints_the_correlated_block(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["translate", "log_ozone ~ TEMP + (TEMP|station)"]) == 0
    out = capsys.readouterr().out
    assert "bambi formula:  log_ozone ~ TEMP + (1 + TEMP|station)" in out
    assert "station: 1|station, TEMP|station  (LKJ-correlated)" in out
    assert "independent group-level terms:\n  (none)" in out
    assert "family:         none implied" in out


def test_translate_double_vert_lists_independent_terms(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["translate", "log_ozone ~ TEMP + (TEMP||station)"]) == 0
    out = capsys.readouterr().out
    assert "correlated blocks:\n  (none)" in out
    assert "independent group-level terms:\n  1|station, TEMP|station" in out
    assert "notes:\n  - ||" in out and "diag()" in out


def test_translate_distributional_formula(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["translate", "bf(y ~ x + (1|p|g), sigma ~ z + (1|p|g))"]) == 0
    out = capsys.readouterr().out
    assert "bambi formula:  y ~ x + (1|g)\n  sigma         sigma ~ z + (1|g)\n" in out
    assert "g: 1|g, sigma_1|g  (LKJ-correlated)" in out


def test_translate_binomial_family(capsys: pytest.CaptureFixture[str]) -> None:
    formula = "awards | trials(applications) ~ 0 + gender + (1|discipline)"
    assert main(["translate", formula]) == 0
    out = capsys.readouterr().out
    assert "family:         binomial (implied by trials())" in out
    assert "awards | trials(applications)  ->  p(awards, applications)" in out
    assert "fixed part:     0 + gender" in out


def test_bad_formula_exits_2_with_a_caret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["translate", "y ~ x + (x|g"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0].startswith("lmmformula translate: unmatched '('")
    at = lines.index("    y ~ x + (x|g")
    assert lines[at + 1] == "            ^"


def test_unsupported_formula_exits_2_with_the_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["translate", "y | cens(c) ~ x"]) == 2
    err = capsys.readouterr().err
    assert "cens() is not supported" in err and "censored(y, status)" in err and "^" in err


def test_no_subcommand_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "translate" in capsys.readouterr().err


def test_translate_is_registered() -> None:
    assert "translate" in COMMANDS
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert "translate" in sub.choices


def test_a_registered_command_is_dispatched(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--times", type=int, default=1)

    def run(args: argparse.Namespace) -> int:
        print("hello " * args.times)
        return 7

    monkeypatch.setitem(cli.COMMANDS, "hello", Command("hello", "say hello", add, run))
    assert main(["hello", "--times", "2"]) == 7
    assert capsys.readouterr().out.strip() == "hello hello"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("lmmformula ")


def test_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lmmformula.cli", "translate", "y ~ x + (x|g)"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "g: 1|g, x|g  (LKJ-correlated)" in done.stdout


def _close_to_print(printed: str, value: float) -> bool:
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(float(printed) - value) <= 0.5 * 10.0**-decimals * (1 + 1e-9)


@pytest.mark.sampling
def test_fit_subcommand_reads_a_csv_and_prints_the_summary(tmp_path, capsys):
    import warnings

    import numpy as np
    import xarray as xr

    import lmmformula as lf

    data = lf.load_dataset("sleepstudy")
    path = tmp_path / "sleep.csv"
    data.to_csv(path, index=False)
    out_file = tmp_path / "fit.nc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 100 draws trip the sampler-health warning
        code = main(
            [
                "fit", "Reaction ~ Days + (Days|Subject)", "--data", str(path), "--draws", "100",
                "--tune", "100", "--chains", "2", "--seed", "1", "--save", str(out_file),
            ]
        )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert f"Data: {len(data)} observations; groups: Subject (18)" in out
    assert "Draws: 2 chains, each with 100 tuning and 100 kept draws" in out
    # the printed numbers are those of the saved draws (read here with xarray alone)
    post = xr.open_datatree(out_file, engine="h5netcdf")["posterior"].to_dataset()
    assert (post.sizes["chain"], post.sizes["draw"]) == (2, 100)
    fixed = printed_table(out, "Regression Coefficients:")
    assert list(fixed) == ["Intercept", "Days"]
    for name, printed in fixed.items():
        draws = post[name].values.ravel()
        lower, upper = np.quantile(draws, [0.025, 0.975])
        expected = [draws.mean(), draws.std(ddof=1), lower, upper]
        for text, value in zip(printed[:4], expected, strict=True):
            assert _close_to_print(text, value), (name, printed, expected)
    group = printed_table(out, "~Subject")
    assert list(group) == ["sd(Intercept)", "sd(Days)", "cor(Intercept,Days)"]
    corr = post["Subject_corr"].values[:, :, 0, 1].ravel()
    assert _close_to_print(group["cor(Intercept,Days)"][0], corr.mean())
    assert _close_to_print(group["sd(Days)"][0], post["Days|Subject_sigma"].values.mean())
    # and a short run still lands near lme4's estimate of the slope (10.467, SE 1.546)
    days = float(fixed["Days"][0])
    assert abs(days - 10.467) < 3 * float(fixed["Days"][1])
    assert f"Saved to {out_file}." in out


def test_fit_subcommand_names_a_missing_data_set(capsys):
    code = main(["fit", "y ~ x", "--data", "sleepstud"])
    assert code == 1
    assert "'sleepstudy'" in capsys.readouterr().err


def test_demo_defaults_are_the_reference_model():
    from lmmformula.cli import DEMO_FORMULA, build_parser

    args = build_parser().parse_args(["demo"])
    assert DEMO_FORMULA == "log_ozone ~ TEMP + (TEMP|station)"
    assert (args.draws, args.tune, args.chains, args.seed) == (1000, 1000, 4, 2013)
