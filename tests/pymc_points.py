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
