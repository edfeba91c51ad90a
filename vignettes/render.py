"""Execute every vignette from scratch and write self-contained HTML.

    python vignettes/render.py                       # all vignettes -> vignettes/_build/
    python vignettes/render.py --out DIR             # somewhere else
    python vignettes/render.py nwo_grants            # only the vignettes named
    LMMFORMULA_SMOKE=1 python vignettes/render.py    # few draws and a data subset (for tests)

Each ``vignettes/*.py`` (jupytext percent format) is converted to a notebook, executed in a fresh
kernel that runs *this* interpreter (a kernel spec written to a temporary directory, so no
``ipykernel install`` is needed), and exported with nbconvert's HTMLExporter; figures are
embedded as base64 PNG. Every ``vignettes/*.md`` page is exported as a one-cell notebook.
Executed notebooks (``.ipynb``) are written beside the HTML. The exit status is 1 when any cell
of any vignette fails; the error is printed and the other vignettes still run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "_build"
KERNEL_NAME = "lmmformula-vignettes"
CELL_TIMEOUT = 1800  # seconds per cell


def find_sources(names: list[str]) -> tuple[list[Path], list[Path]]:
    """The executable vignettes (``*.py`` except this script) and the markdown pages."""
    scripts = sorted(
        p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_")
    )
    pages = sorted(p for p in HERE.glob("*.md") if not p.name.startswith("_"))
    if names:
        wanted = {Path(n).stem for n in names}
        unknown = wanted - {p.stem for p in scripts + pages}
        if unknown:
            raise SystemExit(
                f"render.py: no vignette named {', '.join(sorted(unknown))}; "
                f"have {', '.join(p.stem for p in scripts + pages)}"
            )
        scripts = [p for p in scripts if p.stem in wanted]
        pages = [p for p in pages if p.stem in wanted]
    return scripts, pages


def write_kernelspec(root: Path) -> None:
    """A kernel spec that starts ipykernel with the current interpreter (the venv's python)."""
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({Path(sys.executable).parent.parent.name})",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))


def html_exporter():
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    return exporter


def render_script(path: Path, out: Path) -> float:
    """Execute one jupytext vignette and write ``out/<name>.html`` and ``.ipynb``; seconds."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    nb = jupytext.read(path)
    nb.metadata["kernelspec"] = {
        "name": KERNEL_NAME,
        "display_name": "Python",
        "language": "python",
    }
    start = time.perf_counter()
    client = NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(HERE)}},
    )
    try:
        client.execute()
    finally:
        seconds = time.perf_counter() - start
        # Write what ran, also on failure: the HTML shows the traceback in place.
        nbformat.write(nb, out / f"{path.stem}.ipynb")
        export_html(nb, path, out)
    return seconds


_CODE_SPAN = re.compile(r"<code>(.*?)</code>", re.S)


def fix_table_pipes(html: str) -> str:
    """GitHub-flavoured tables escape a pipe inside a code span as ``\\|``; GitHub shows ``|``,
    nbconvert's markdown renderer keeps the backslash. Drop it inside ``<code>``."""
    return _CODE_SPAN.sub(lambda m: "<code>" + m.group(1).replace("\\|", "|") + "</code>", html)


def export_html(nb, path: Path, out: Path) -> None:
    body, _ = html_exporter().from_notebook_node(
        nb, resources={"metadata": {"name": title_of(nb, path)}}
    )
    (out / f"{path.stem}.html").write_text(fix_table_pipes(body), encoding="utf-8")


def title_of(nb, path: Path) -> str:
    """The first markdown heading of the notebook, else the file name."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


def render_page(path: Path, out: Path) -> float:
    """Export a markdown page as a one-cell notebook (nbconvert renders markdown cells)."""
    import nbformat

    start = time.perf_counter()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(path.read_text(encoding="utf-8"))]
    export_html(nb, path, out)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="vignettes to render (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args(argv)

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    scripts, pages = find_sources(args.names)
    smoke = bool(os.environ.get("LMMFORMULA_SMOKE"))
    print(
        f"rendering {len(scripts) + len(pages)} vignette(s) to {out}"
        + (" [smoke]" if smoke else "")
    )

    failures: list[str] = []
    total = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lmmformula-kernel-") as tmp:
        write_kernelspec(Path(tmp))
        # Kernel specs in JUPYTER_PATH come first, so the kernel runs this interpreter.
        os.environ["JUPYTER_PATH"] = os.pathsep.join(
            [tmp, *filter(None, [os.environ.get("JUPYTER_PATH")])]
        )
        # Figures are shown inline (PNG) in the kernel, whatever imported matplotlib first.
        os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
        for path in scripts:
            try:
                seconds = render_script(path, out)
            except Exception as exc:  # CellExecutionError, DeadKernelError, timeouts
                failures.append(path.name)
                print(f"FAILED  {path.name}", file=sys.stderr)
                print(_short_error(exc), file=sys.stderr)
            else:
                print(f"ok      {path.name:32s} {seconds:7.1f} s -> {out / (path.stem + '.html')}")
        for path in pages:
            try:
                seconds = render_page(path, out)
            except Exception as exc:
                failures.append(path.name)
                print(f"FAILED  {path.name}", file=sys.stderr)
                traceback.print_exception(exc, file=sys.stderr)
            else:
                print(f"ok      {path.name:32s} {seconds:7.1f} s -> {out / (path.stem + '.html')}")
    print(f"total {time.perf_counter() - total:.1f} s")
    if failures:
        print(f"{len(failures)} vignette(s) failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def _short_error(exc: Exception) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # the traceback's terminal colours
    return text if len(text) < 6000 else text[:3000] + "\n...\n" + text[-3000:]


if __name__ == "__main__":
    sys.exit(main())
