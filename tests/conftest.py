import os

import matplotlib
import pytest
from hypothesis import settings

import manualgrad.testing  # noqa: F401  (registers the hypothesis profiles)
from manualgrad import backend

matplotlib.use("Agg")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "manualgrad"))


@pytest.fixture(autouse=True)
def _numpy_float64_backend():
    """Every test starts on numpy/float64 and leaves the switch as it found it."""
    with backend.use_backend("numpy", "float64"):
        yield
