"""One suite, any backend: ``python -m pytest --backend numpy|cupy|strict`` (or MANUALGRAD_BACKEND).

On cupy the engine's fused kernels run in the mode MANUALGRAD_FUSED selects (default "auto";
"steps", "persistent", or 0 for the NumPy path on CuPy arrays), so one GPU session can run the
suite once per strategy.

Every test runs on the selected backend in float64 (an autouse fixture switches to it and
restores the switch afterwards); tests build their arrays through :mod:`manualgrad.backend` and
compare results with :func:`manualgrad.backend.to_numpy` at the edges. ``strict`` is NumPy
behind CuPy's rules, so a CPU run finds the host/device mixing a GPU run would fail on.

Markers:
    only_backend("numpy", reason="...")  the test can only run on the listed backends (it
                                          measures NumPy's warnings, host memory, ...): skipped
                                          with its reason elsewhere
    gpu                                   needs CuPy and a CUDA GPU (skipped otherwise)
"""
import os

import matplotlib
import pytest
from hypothesis import settings

import manualgrad.testing  # noqa: F401  (registers the hypothesis profiles)
from manualgrad import backend

matplotlib.use("Agg")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "manualgrad"))

_SELECTED = {"name": "numpy", "fused": "auto"}


def pytest_addoption(parser):
    parser.addoption(
        "--backend", action="store", default=None, choices=backend.BACKENDS,
        help="array backend for every test: numpy (default), cupy (needs a CUDA GPU) or strict "
             "(NumPy behind CuPy's rules); default: $MANUALGRAD_BACKEND, else numpy")


def pytest_configure(config):
    name = config.getoption("--backend") or os.environ.get("MANUALGRAD_BACKEND") or "numpy"
    name = name.strip().lower()
    if name not in backend.BACKENDS:
        raise pytest.UsageError("MANUALGRAD_BACKEND=%r: valid backends are %s"
                                % (name, ", ".join(backend.BACKENDS)))
    if name == "cupy":
        ok, why = backend.cupy_available()
        if not ok:
            raise pytest.UsageError("--backend cupy: " + why)
    _SELECTED["name"] = name
    _SELECTED["fused"] = backend.fused_mode() or False  # MANUALGRAD_FUSED, read at import
    backend.set_backend(name, "float64")  # module-level test data is built on it too


def pytest_report_header(config):
    return "manualgrad backend: %s (float64, fused: %s)" % (_SELECTED["name"], _SELECTED["fused"])


def pytest_collection_modifyitems(config, items):
    name = _SELECTED["name"]
    for item in items:
        mark = item.get_closest_marker("only_backend")
        if mark is None:
            continue
        reason = mark.kwargs.get("reason")
        if not mark.args or not reason:
            raise pytest.UsageError("%s: only_backend needs the backends and a reason, e.g. "
                                    "@pytest.mark.only_backend('numpy', reason='...')" % item.nodeid)
        if name not in mark.args:
            item.add_marker(pytest.mark.skip(
                reason="%s only: %s" % (" or ".join(mark.args), reason)))


@pytest.fixture(autouse=True)
def _selected_backend_float64():
    """Every test starts on the selected backend in float64 and leaves the switch as it found it."""
    with backend.use_backend(_SELECTED["name"], "float64", fused=_SELECTED["fused"]):
        yield
