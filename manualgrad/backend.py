"""The array-module switch: NumPy (CPU) or CuPy (GPU), and the default dtype.

This is the only module of manualgrad that imports numpy or cupy. Engine code asks it for the
active array module::

    from manualgrad import backend
    xp = backend.xp()          # numpy or cupy
    a = backend.asarray(a)     # on the active backend, in the active float dtype

Selection, in order of precedence:

1. ``use_backend("cupy")`` (a context manager) or ``set_backend("cupy")``;
2. the environment variable ``MANUALGRAD_BACKEND`` (``numpy``, ``cupy`` or ``strict``), read at
   import;
3. ``numpy``.

``strict`` is NumPy on the CPU behind CuPy's rules (:mod:`manualgrad._strict`): no implicit
conversion to NumPy, no NumPy arrays mixed into device operations. It finds the code (and tests)
that would break on a GPU, on any machine; it is for testing, not for speed.

On CuPy the engine runs each recurrence through fused kernels (:mod:`manualgrad.gpu`: one
matrix product and one element-wise kernel per step) instead of the NumPy path's chain of array
operations; ``set_fused(False)`` (or ``MANUALGRAD_FUSED=0``) runs the NumPy path on CuPy arrays
instead, e.g. to compare the two.

The default float dtype is float64 (``set_dtype("float32")`` or ``MANUALGRAD_DTYPE`` to change).
Random numbers are always drawn on the host with NumPy's ``default_rng(seed)`` and then moved,
so one seed gives the same numbers on both backends. Convert back with :func:`to_numpy` at the
edges (plots, files, printing); the engine never converts.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

__all__ = [
    "BACKENDS", "DTYPES", "set_backend", "get_backend", "use_backend", "xp", "np",
    "set_dtype", "get_dtype", "asarray", "to_numpy", "host_rng", "randn", "uniform",
    "cupy_available", "is_array", "array_module_of", "errstate", "fused", "set_fused",
    "fused_mode", "FUSED_MODES", "cublas",
]

BACKENDS = ("numpy", "cupy", "strict")
DTYPES = ("float64", "float32")

_state = {"name": "numpy", "xp": np, "dtype": np.dtype("float64"), "fused": "auto"}


def cupy_available():
    """Return ``(True, "")`` if CuPy can run here, else ``(False, reason)``; never raises."""
    try:
        import cupy  # noqa: F401  (only backend.py imports cupy)
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        return False, (
            "CuPy is not installed (%s: %s). Install the GPU extra matching your CUDA version, "
            "e.g. `pip install 'manualgrad[gpu]'` (cupy-cuda12x) or `pip install cupy-cuda13x`, "
            "or use set_backend('numpy')." % (type(exc).__name__, exc))
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, (
            "CuPy is installed but no CUDA GPU is usable (%s: %s). Run on a machine with an "
            "NVIDIA GPU and driver, or use set_backend('numpy')." % (type(exc).__name__, exc))
    if n < 1:
        return False, ("CuPy is installed but no CUDA GPU is visible (0 devices; check "
                       "CUDA_VISIBLE_DEVICES). Use set_backend('numpy') on this machine.")
    return True, ""


def _module_for(name):
    if not isinstance(name, str):
        raise TypeError("backend name must be a string, one of %s; got %r" % (BACKENDS, name))
    key = name.strip().lower()
    if key not in BACKENDS:
        raise ValueError("unknown backend %r: valid backends are %s" % (name, ", ".join(BACKENDS)))
    if key == "numpy":
        return key, np
    if key == "strict":
        from . import _strict
        return key, _strict.module
    ok, reason = cupy_available()
    if not ok:
        raise RuntimeError("cannot use the 'cupy' backend: " + reason)
    import cupy
    return key, cupy


def _dtype_for(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError("dtype must be one of %s; got %r" % (DTYPES, dtype)) from None
    if dt.name not in DTYPES:
        raise ValueError("dtype must be one of %s; got %r" % (DTYPES, dt.name))
    return dt


def set_backend(name, dtype=None):
    """Make ``name`` ('numpy' or 'cupy') the active backend; optionally set the dtype too."""
    key, mod = _module_for(name)
    if dtype is not None:
        _state["dtype"] = _dtype_for(dtype)
    _state["name"], _state["xp"] = key, mod


def get_backend():
    """Name of the active backend: 'numpy' or 'cupy'."""
    return _state["name"]


def xp():
    """The active array module (numpy or cupy). Engine code uses only this."""
    return _state["xp"]


def set_dtype(dtype):
    """Set the default float dtype: 'float64' (default) or 'float32'."""
    _state["dtype"] = _dtype_for(dtype)


def get_dtype():
    """The default float dtype as a numpy dtype object (valid for cupy too)."""
    return _state["dtype"]


FUSED_MODES = ("auto", "steps", "persistent")


def fused():
    """True when the engine should take its fused GPU path: the backend is cupy and fusion is on."""
    return _state["name"] == "cupy" and _state["fused"] is not None


def fused_mode():
    """The fused strategy ('auto', 'steps' or 'persistent'; :mod:`manualgrad.gpu`), None when off."""
    return _state["fused"]


def _fused_mode_for(flag):
    if flag is True:
        return "auto"
    if flag is False:
        return None
    if isinstance(flag, str) and flag in FUSED_MODES:
        return flag
    raise ValueError("fused must be True, False or one of %s, got %r"
                     % (", ".join(FUSED_MODES), flag))


def set_fused(flag):
    """Fused CuPy kernels: True (= 'auto', the default), 'steps', 'persistent', or False (off).

    Off, the engine runs its NumPy path on CuPy arrays. 'steps': one cuBLAS product and one
    fused kernel per step; 'persistent': the vanilla RNN's recurrence in one kernel; 'auto'
    picks by size (:func:`manualgrad.gpu.strategy_for`). No effect on the numpy backend.
    """
    _state["fused"] = _fused_mode_for(flag)


@contextlib.contextmanager
def use_backend(name=None, dtype=None, fused=None):
    """Context manager: run a block on backend ``name`` and/or with ``dtype`` (and ``fused``), then restore."""
    saved = dict(_state)
    try:
        if name is not None:
            set_backend(name)
        if dtype is not None:
            set_dtype(dtype)
        if fused is not None:
            set_fused(fused)
        yield _state["xp"]
    finally:
        _state.update(saved)


def _is_strict(a):
    return type(a).__name__ == "StrictArray" and type(a).__module__ == "manualgrad._strict"


def array_module_of(a):
    """numpy, cupy or the strict module, whichever owns array ``a`` (numpy for scalars and lists)."""
    mod = type(a).__module__.split(".")[0]
    if mod == "cupy":
        import cupy
        return cupy
    if _is_strict(a):
        from . import _strict
        return _strict.module
    return np


def is_array(a):
    """True for numpy, cupy and strict arrays."""
    return isinstance(a, np.ndarray) or type(a).__module__.split(".")[0] == "cupy" \
        or _is_strict(a)


def asarray(a, dtype=None):
    """``a`` as an array of the active backend in ``dtype`` (default: the active float dtype).

    Moves host arrays to the GPU when the backend is cupy, and GPU arrays to the host when it is
    numpy. No copy is made when ``a`` already has the right module and dtype.
    """
    dt = get_dtype() if dtype is None else np.dtype(dtype)
    mod = _state["xp"]
    owner = array_module_of(a)
    if owner is not np and owner is not mod:  # another device module: through the host
        a = a.get()
    if mod is np:
        return np.asarray(a, dtype=dt)
    return mod.asarray(a, dtype=dt)


def to_numpy(a):
    """A NumPy copy/view of ``a`` (cupy and strict arrays are copied to the host); for the edges only."""
    if array_module_of(a) is not np:
        return a.get()
    return np.asarray(a)


def cublas():
    """``(cublas, handle)``: CuPy's thin cuBLAS binding and the current device's handle.

    For :mod:`manualgrad.gpu`, which calls ``dgemm``/``sgemm`` on raw device pointers: the
    cheapest call path CuPy offers for a product into a preallocated output. CuPy only.
    """
    if _state["name"] != "cupy":
        raise RuntimeError("backend.cublas() needs the cupy backend (active: %r)" % _state["name"])
    from cupy_backends.cuda.libs import cublas as _cublas
    import cupy
    return _cublas, cupy.cuda.device.get_cublas_handle()


def errstate(**kwargs):
    """``numpy.errstate(**kwargs)`` on the numpy backend; a no-op context on cupy (it never warns)."""
    if _state["xp"] is np:
        return np.errstate(**kwargs)
    return contextlib.nullcontext()


def host_rng(seed):
    """A seeded NumPy ``Generator`` on the host (the same numbers whatever the backend)."""
    return np.random.default_rng(seed)


def randn(shape, seed=None, rng=None, scale=1.0, dtype=None):
    """N(0, scale^2) samples drawn on the host (``rng`` or ``default_rng(seed)``), then moved."""
    g = rng if rng is not None else host_rng(seed)
    return asarray(scale * g.standard_normal(shape), dtype)


def uniform(shape, low=0.0, high=1.0, seed=None, rng=None, dtype=None):
    """U(low, high) samples drawn on the host, then moved to the active backend."""
    g = rng if rng is not None else host_rng(seed)
    return asarray(g.uniform(low, high, size=shape), dtype)


def _from_environment():
    name = os.environ.get("MANUALGRAD_BACKEND")
    if name:
        set_backend(name)
    dtype = os.environ.get("MANUALGRAD_DTYPE")
    if dtype:
        set_dtype(dtype)
    flag = os.environ.get("MANUALGRAD_FUSED")
    if flag:
        value = {"0": False, "1": True}.get(flag, flag)
        if value not in (True, False) + FUSED_MODES:
            raise ValueError("MANUALGRAD_FUSED must be 0, 1, %s; got %r"
                             % (", ".join(FUSED_MODES), flag))
        set_fused(value)


_from_environment()
