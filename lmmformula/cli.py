"""The ``lmmformula`` command line.

Each subcommand is one :class:`Command` in :data:`COMMANDS`: a name, a one-line help, a function
that adds its arguments to an :mod:`argparse` parser, and a function that runs it and returns the
exit code. Adding a subcommand is one :func:`register` call; :func:`build_parser` and
:func:`main` pick it up.

Exit codes: 0 success, 1 any other lmmformula refusal (data, priors, fit), 2 a formula that
cannot be read, or bad command-line usage (argparse's own code).

Examples
--------
.. code-block:: console

    $ lmmformula translate "log_ozone ~ TEMP + (TEMP|station)"
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lmmformula.errors import FormulaSyntaxError, LmmFormulaError

__all__ = ["COMMANDS", "Command", "build_parser", "main", "register"]


@dataclass(frozen=True)
class Command:
    """One subcommand of ``lmmformula``.

    Attributes
    ----------
    name : str
        What the user types, e.g. ``"translate"``.
    help : str
        One line for ``lmmformula --help``.
    add_arguments : callable
        Adds the subcommand's arguments to its :class:`argparse.ArgumentParser`.
    run : callable
        Runs the subcommand on the parsed arguments; returns the exit code.
    description : str, optional
        The longer text of ``lmmformula NAME --help``; defaults to ``help``.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


#: Every subcommand, in the order ``--help`` lists them.
COMMANDS: dict[str, Command] = {}


def register(command: Command) -> Command:
    """Add a subcommand to :data:`COMMANDS` (replacing one of the same name)."""
    COMMANDS[command.name] = command
    return command


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one subparser per registered :class:`Command`."""
    from lmmformula import __version__

    parser = argparse.ArgumentParser(
        prog="lmmformula",
        description=(
            "lme4/brms-style mixed-model formulas as Bayesian multilevel models with Bambi."
        ),
    )
    parser.add_argument("--version", action="version", version=f"lmmformula {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS.values():
        p = sub.add_parser(
            command.name, help=command.help, description=command.description or command.help
        )
        command.add_arguments(p)
        p.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lmmformula`` command line; returns the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``sys.argv[1:]`` when omitted.

    Returns
    -------
    int
        0 on success, 2 for a formula that cannot be read (the message, with a caret under the
        fault, goes to stderr), 1 for any other lmmformula error.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return run(args)
    except FormulaSyntaxError as err:
        print(f"lmmformula {args.command}: {err}", file=sys.stderr)
        return 2
    except LmmFormulaError as err:
        print(f"lmmformula {args.command}: {err}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------------------------------
# translate
# ---------------------------------------------------------------------------------------------


def _add_translate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "formula",
        metavar="FORMULA",
        help='an lme4/brms formula in quotes, e.g. "log_ozone ~ TEMP + (TEMP|station)"',
    )


def _family_line(source: str, family: str | None) -> str:
    if family is None:
        return "none implied by the formula (give one when fitting; Bambi's default: gaussian)"
    implied_by = {"cbind": "cbind()", "trials": "trials()", "p": "p()"}.get(source, source)
    return f"{family} (implied by {implied_by})"


def _run_translate(args: argparse.Namespace) -> int:
    from lmmformula.formula import translate

    t = translate(args.formula)
    independent = [g.name for g in t.group_terms if g.block is None]
    lines = [
        f"formula:        {t.formula}",
        f"bambi formula:  {t.bambi_formula}",
        *(f"  {dpar:<13} {text}" for dpar, text in t.dpar_formulas.items()),
        f"response:       {t.response.text}  ->  {t.response.bambi}",
        f"family:         {_family_line(t.response.source, t.family)}",
        f"fixed part:     {t.fixed}",
        f"variables:      {', '.join(t.variables)}",
        "correlated blocks:",
    ]
    if t.correlated:
        for key, names in t.correlated.items():
            kind = "LKJ-correlated" if len(names) > 1 else "one term: KxK if it is a factor"
            factor = t.block_factor(key)
            label = factor if key == factor else f"{factor} (another block, {key})"
            lines.append(f"  {label}: {', '.join(names)}  ({kind})")
    else:
        lines.append("  (none)")
    lines.append("independent group-level terms:")
    lines.append(f"  {', '.join(independent)}" if independent else "  (none)")
    if t.notes:
        lines.append("notes:")
        lines += [f"  - {note}" for note in t.notes]
    print("\n".join(lines))
    return 0


register(
    Command(
        name="translate",
        help="show how a formula is read and the Bambi formula it becomes",
        add_arguments=_add_translate_arguments,
        run=_run_translate,
        description=(
            "Read an lme4/brms formula and print the Bambi formula, the family it implies, "
            "its correlated blocks and independent group-level terms, and notes on how it "
            "was read. No data are needed."
        ),
    )
)


# ---------------------------------------------------------------------------------------------
# fit and demo
# ---------------------------------------------------------------------------------------------

DEMO_FORMULA = "log_ozone ~ TEMP + (TEMP|station)"


def _add_sampler_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--draws", type=int, default=1000, help="kept draws per chain (1000)")
    parser.add_argument("--tune", type=int, default=1000, help="tuning steps per chain (1000)")
    parser.add_argument("--chains", type=int, default=4, help="number of chains (4)")
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument(
        "--sampler",
        default="nutpie",
        choices=["nutpie", "pymc", "numpyro", "blackjax"],
        help="NUTS implementation (nutpie)",
    )
    parser.add_argument(
        "--centered",
        action="store_true",
        help="centered group-level effects instead of the non-centered default",
    )
    parser.add_argument("--save", metavar="PATH", help="also write the fit to PATH (netCDF)")


def _add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("formula", metavar="FORMULA", help="an lme4/brms formula in quotes")
    parser.add_argument(
        "--data",
        required=True,
        metavar="NAME_OR_CSV",
        help="a shipped data set (see lmmformula.list_datasets()) or a path to a CSV file",
    )
    parser.add_argument("--family", default=None, help="response family (default: implied)")
    parser.add_argument("--lkj-eta", type=float, default=2.0, help="LKJ shape (2)")
    _add_sampler_arguments(parser)


def _load_data(source: str):
    from pathlib import Path

    import pandas as pd

    from lmmformula.datasets import list_datasets, load_dataset
    from lmmformula.errors import DataError

    if source in list_datasets():
        return load_dataset(source)
    path = Path(source)
    if path.suffix.lower() in (".csv", ".gz") or path.exists():
        if not path.exists():
            raise DataError(f"no such CSV file: {source!r}")
        return pd.read_csv(path)
    return load_dataset(source)  # raises DataError with the close names


def _fit_and_print(formula: str, data, args: argparse.Namespace, family=None) -> int:
    from lmmformula.api import fit

    result = fit(
        formula,
        data,
        family,
        lkj_eta=getattr(args, "lkj_eta", 2.0),
        noncentered=not args.centered,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        sampler=args.sampler,
        random_seed=args.seed,
        progressbar=False,
    )
    print(result.summary())
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items())
    print(f"Time: {timings}.")
    if args.save:
        result.save(args.save)
        print(f"Saved to {args.save}.")
    return 0


def _run_fit(args: argparse.Namespace) -> int:
    return _fit_and_print(args.formula, _load_data(args.data), args, args.family)


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    _add_sampler_arguments(parser)
    parser.set_defaults(seed=2013)


def _run_demo(args: argparse.Namespace) -> int:
    from lmmformula.datasets import load_dataset

    print(f"Fitting {DEMO_FORMULA} to the shipped Beijing daily ozone table ...", flush=True)
    return _fit_and_print(DEMO_FORMULA, load_dataset("beijing_ozone"), args)


register(
    Command(
        name="fit",
        help="fit a formula to a shipped data set or a CSV file and print the summary",
        add_arguments=_add_fit_arguments,
        run=_run_fit,
    )
)
register(
    Command(
        name="demo",
        help=f"fit {DEMO_FORMULA} to the shipped Beijing ozone data",
        add_arguments=_add_demo_arguments,
        run=_run_demo,
        description=(
            f"Fit {DEMO_FORMULA} (correlated station intercepts and temperature slopes, "
            "LKJ(2) prior, non-centered) to the shipped Beijing daily ozone table and print "
            "the summary."
        ),
    )
)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
