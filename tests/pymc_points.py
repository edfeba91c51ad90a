"""Points of a PyMC model's value variables, shared by the tests that compare log densities
with their oracles."""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt


def value_point(pm_model, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """PyMC's value-variable point (transformed space) from constrained values of the free
    variables, keyed by the free variables' names."""
    out = {}
    for rv in pm_model.free_RVs:
        value = pt.as_tensor(np.asarray(values[rv.name], dtype=float))
        transform = pm_model.rvs_to_transforms.get(rv)
        if transform is not None:
            value = transform.forward(value, *rv.owner.inputs)
        out[pm_model.rvs_to_values[rv].name] = np.asarray(value.eval(), dtype=float)
    return out


def lkj_packed_point(
    point: dict[str, np.ndarray], factor: str, k: int
) -> tuple[dict[str, np.ndarray], float]:
    """A point of lmmformula's block coordinates (``{factor}_sd_log__``, the log sds, and
    ``{factor}_lkj_corr_cholesky__``, lmmformula._lkj) mapped to ``pm.LKJCholeskyCov``'s
    (``{factor}_lkj_cholesky-cov-packed__``: ``L = diag(s) C`` packed row-major with a log
    diagonal), and ``log |det J|`` of that map (numerical), so that a model's log density at
    ``point`` equals the LKJCholeskyCov model's at the mapped point plus ``log |det J|``."""
    from oracle import corr_cholesky_from_unconstrained, log_abs_det_jacobian

    rows, cols = np.tril_indices(k)  # row-major lower triangle, PyMC's packing
    on_diag = rows == cols

    def packed(v):
        chol = np.exp(v[:k])[:, None] * corr_cholesky_from_unconstrained(v[k:], k)
        out = chol[rows, cols]
        out[on_diag] = np.log(out[on_diag])
        return out

    keys = (f"{factor}_sd_log__", f"{factor}_lkj_corr_cholesky__")
    v = np.concatenate([np.atleast_1d(np.asarray(point[key], dtype=float)) for key in keys])
    mapped = {key: value for key, value in point.items() if key not in keys}
    mapped[f"{factor}_lkj_cholesky-cov-packed__"] = packed(v)
    return mapped, log_abs_det_jacobian(packed, v)
