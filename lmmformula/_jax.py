"""The JAX samplers (``sampler="numpyro"`` / ``"blackjax"``): what is checked before sampling.

PyMC runs both through ``pymc.sampling.jax``. Two things there need care:

* PyMC 6 passes ``progress_bar`` to ``blackjax.window_adaptation``; blackjax 1.6 dropped that
  argument and forwards unknown ones to the NUTS kernel, which fails on the first warm-up step
  with "kernel() got an unexpected keyword argument 'progress_bar'" (pymc-devs/pymc#8367).
  :func:`blackjax_problem` reads PyMC's loop to tell whether the installed pair has the bug,
  and the fit is refused before any compiling when it does.
* PyMC maps blackjax chains over devices with ``jax.pmap`` (``chain_method="parallel"``),
  which fails when JAX sees fewer devices than chains (a CPU is one device); numpyro falls
  back to running the chains one after another, PyMC's blackjax loop does not. With fewer
  devices than chains the chains are vectorized instead (``jax.vmap``).
"""

from __future__ import annotations

import importlib.metadata
import inspect
from typing import Any

from lmmformula.errors import ModelError

__all__ = ["BLACKJAX_WORKS", "blackjax_problem", "jax_sampler_kwargs"]

BLACKJAX_WORKS = ">=1.5,<1.6"
"""blackjax versions that work with PyMC 6's JAX sampling loop (``lmmformula[jax]`` pins them)."""


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _pymc_passes_progress_bar() -> bool:
    """Whether PyMC's blackjax loop hands ``progress_bar`` to ``window_adaptation``."""
    try:
        from pymc.sampling import jax as pmjax

        source = inspect.getsource(pmjax._blackjax_inference_loop)
    except (ImportError, AttributeError, OSError, TypeError):
        return True  # cannot tell: assume the released PyMC 6 loop
    pop = source.find('pop("progress_bar"')
    adapt = source.find("window_adaptation(")
    return pop < 0 or adapt < 0 or pop > adapt


def blackjax_problem() -> str | None:
    """Why ``sampler="blackjax"`` cannot work with the installed versions, or None."""
    try:
        version = importlib.metadata.version("blackjax")
    except importlib.metadata.PackageNotFoundError:
        return None  # the caller reports the missing package
    if _version_tuple(version) >= (1, 6) and _pymc_passes_progress_bar():
        pymc_version = importlib.metadata.version("pymc")
        return (
            f"sampler='blackjax' does not work with blackjax {version} under pymc "
            f"{pymc_version}: PyMC passes progress_bar to blackjax.window_adaptation, which "
            'blackjax 1.6 no longer accepts (it fails with "kernel() got an unexpected keyword '
            "argument 'progress_bar'\"; pymc-devs/pymc#8367). The versions that work are "
            f"blackjax{BLACKJAX_WORKS} (pip install 'blackjax{BLACKJAX_WORKS}', which "
            "'lmmformula[jax]' installs); or use sampler='numpyro'."
        )
    return None


def jax_sampler_kwargs(sampler: str, chains: int, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments for ``bambi.Model.fit`` with a JAX sampler, checked.

    Raises
    ------
    ModelError
        ``sampler="blackjax"`` with a blackjax that PyMC's loop cannot drive.
    """
    from lmmformula._marginal_op import register_jax

    register_jax()  # the marginal likelihood's Op (issue 14) in JAX
    if sampler != "blackjax":
        return kwargs
    problem = blackjax_problem()
    if problem is not None:
        raise ModelError(problem)
    import jax

    out = dict(kwargs)
    options = dict(out.get("nuts_sampler_kwargs") or {})
    if "chain_method" not in options and jax.local_device_count() < chains:
        options["chain_method"] = "vectorized"
        out["nuts_sampler_kwargs"] = options
    return out
