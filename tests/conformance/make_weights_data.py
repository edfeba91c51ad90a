"""Write ``data/sim_weights.csv``: a gaussian varying-intercept data set with precision weights.

Run from the repository root: ``.venv/bin/python tests/conformance/make_weights_data.py``; then
``Rscript tests/conformance/weights_reference.R`` prints lme4's estimates that
``tests/test_lme4_semantics.py`` compares with.
"""

import numpy as np
import pandas as pd

rng = np.random.default_rng(3)
G, N = 20, 400
g = rng.integers(0, G, N)
x = rng.normal(size=N)
w = rng.uniform(0.5, 3, N)
b = rng.normal(0, 1, G)
y = 1 + 0.5 * x + b[g] + rng.normal(size=N) * 1.3 / np.sqrt(w)
pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g], "w": w, "w4": 4 * w}).to_csv(
    "tests/conformance/data/sim_weights.csv", index=False, float_format="%.10g"
)
