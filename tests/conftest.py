"""Shared fixtures: fits are made once per session and shared between test modules."""

from __future__ import annotations

import warnings

import matplotlib
import pytest

matplotlib.use("Agg")

import lmmformula as lf
from lmmformula import _kernel

# a whole-model kernel that disagrees with PyMC's graph fails the test that fits the model
_kernel.STRICT = True

# Small, seeded sampler settings shared by the sampling tests.
FAST = {"draws": 500, "tune": 500, "chains": 2, "progressbar": False}


@pytest.fixture(scope="session")
def fast():
    """Sampler settings for small seeded fits."""
    return dict(FAST)


@pytest.fixture(scope="session")
def sleepstudy():
    return lf.load_dataset("sleepstudy")


@pytest.fixture(scope="session")
def ozone():
    return lf.load_dataset("beijing_ozone")


@pytest.fixture(scope="session")
def sleep_fit(sleepstudy):
    """``Reaction ~ Days + (Days|Subject)``: the lme4 reference model, fitted once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lf.fit("Reaction ~ Days + (Days|Subject)", sleepstudy, random_seed=20261124, **FAST)
