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

import collections
import contextlib
import os
import threading

import numpy as np

__all__ = [
    "BACKENDS", "DTYPES", "set_backend", "get_backend", "use_backend", "xp", "np",
    "set_dtype", "get_dtype", "asarray", "to_numpy", "host_rng", "randn", "uniform",
    "cupy_available", "is_array", "array_module_of", "errstate", "fused", "set_fused",
    "fused_mode", "FUSED_MODES", "cublas", "Workspace", "workspace", "set_workspace",
    "use_workspace", "clear_workspace", "resolve_workspace", "workspace_scope", "empty",
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


# ============================================================================ workspace
class Workspace:
    """Buffers that repeated calls with the same shapes reuse, so a training loop allocates
    nothing after its first step.

    ``ws.empty(name, shape, dtype)`` returns an uninitialised array of the active backend; a
    later call with the same name, shape, dtype and backend returns the same array again. The
    engine's ``loss_and_grad`` functions take ``workspace=`` (a Workspace, True for the calling
    thread's default, False for fresh arrays) and keep their trajectories, adjoints and
    temporaries in it::

        ws = backend.Workspace()
        for ub, yb in batches:
            F, grads = rnn.loss_and_grad(params, ub, yb, workspace=ws)   # allocates once

    **The rule: a workspace holds only what stays inside a call.** Everything a function returns
    (F, the gradients, the objects of ``sweep()``) is the caller's own array, never a workspace
    buffer, so a later call cannot change a result the caller still holds. Functions that
    return their trajectories and adjoints (``sweep``, ``hvp_sweep``) do not take a workspace.

    Bounds: each name keeps buffers for at most ``per_name`` shapes (least recently used evicted
    first), so a loop over changing shapes (the last, shorter minibatch; sequences of several
    lengths) does not grow without bound. ``clear()`` releases every buffer (on CuPy they return
    to CuPy's memory pool; ``cupy.get_default_memory_pool().free_all_blocks()`` hands them back
    to the device). One workspace serves one thread at a time; the default one is per thread.
    """

    def __init__(self, per_name=4):
        if isinstance(per_name, bool) or not isinstance(per_name, int) or per_name < 1:
            raise ValueError("Workspace: per_name must be an integer >= 1, got %r" % (per_name,))
        self.per_name = per_name
        self._buffers = collections.OrderedDict()  # key -> array, least recently used first
        self.hits = 0
        self.misses = 0
        self._busy = False  # a call is using it (see workspace_scope)

    def empty(self, name, shape, dtype=None):
        """An uninitialised array ``shape`` of ``dtype`` (default: the active dtype) on the active
        backend, the same one every time for this name, shape, dtype and backend."""
        dt = get_dtype() if dtype is None else np.dtype(dtype)
        shape = tuple(int(n) for n in shape)
        key = (name, shape, dt.str, _state["name"])
        buf = self._buffers.pop(key, None)
        if buf is None:
            self.misses += 1
            buf = _state["xp"].empty(shape, dtype=dt)
            same = [k for k in self._buffers if k[0] == name]
            for k in same[:max(0, len(same) + 1 - self.per_name)]:
                del self._buffers[k]
        else:
            self.hits += 1
        self._buffers[key] = buf
        return buf

    def zeros(self, name, shape, dtype=None):
        """:meth:`empty`, filled with zeros."""
        buf = self.empty(name, shape, dtype)
        buf.fill(0)
        return buf

    def clear(self):
        """Release every buffer (and reset the counters)."""
        self._buffers.clear()
        self.hits = self.misses = 0

    @property
    def nbytes(self):
        """Bytes held in buffers."""
        return sum(int(b.nbytes) for b in self._buffers.values())

    def __len__(self):
        return len(self._buffers)

    def __repr__(self):
        return ("Workspace(%d buffers, %.1f MiB, %d hits, %d misses)"
                % (len(self), self.nbytes / 2 ** 20, self.hits, self.misses))


_local = threading.local()


def workspace():
    """The calling thread's default :class:`Workspace` (created on first use), or None when the
    default is disabled (``set_workspace(False)`` or ``MANUALGRAD_WORKSPACE=0``)."""
    if not hasattr(_local, "current"):
        _local.current = Workspace() if _state.get("workspace_default", True) else None
    return _local.current


def set_workspace(ws):
    """Make ``ws`` the calling thread's default workspace: a :class:`Workspace`, True (a new
    one) or False/None (no default: ``workspace=True`` then allocates fresh arrays)."""
    if ws is True:
        ws = Workspace()
    elif ws is False:
        ws = None
    elif ws is not None and not isinstance(ws, Workspace):
        raise TypeError("set_workspace: expected a Workspace, True, False or None, got %r" % (ws,))
    _local.current = ws


@contextlib.contextmanager
def use_workspace(ws):
    """Context manager: ``ws`` (see :func:`set_workspace`) is the thread's default inside the block."""
    saved = workspace()
    set_workspace(ws)
    try:
        yield workspace()
    finally:
        _local.current = saved


def clear_workspace():
    """Release the buffers of the calling thread's default workspace."""
    ws = workspace()
    if ws is not None:
        ws.clear()


def resolve_workspace(workspace_arg):
    """What an engine function's ``workspace=`` argument means: a Workspace, or None (fresh
    arrays). True: the thread's default; False or None: none; a Workspace: itself."""
    if workspace_arg is True:
        return workspace()
    if workspace_arg is False or workspace_arg is None:
        return None
    if isinstance(workspace_arg, Workspace):
        return workspace_arg
    raise TypeError("workspace must be a backend.Workspace, True (the thread's default) or False "
                    "(fresh arrays), got %r" % (workspace_arg,))


@contextlib.contextmanager
def workspace_scope(workspace_arg):
    """The workspace one engine call uses: :func:`resolve_workspace` of its ``workspace=``
    argument, or None (fresh arrays) when that workspace is already in use further up this
    thread's stack (a penalty or callback calling the engine again), so that a nested call
    cannot overwrite the outer call's buffers."""
    ws = resolve_workspace(workspace_arg)
    if ws is None or ws._busy:
        yield None
        return
    ws._busy = True
    try:
        yield ws
    finally:
        ws._busy = False


def empty(shape, dtype=None, ws=None, name=None):
    """An uninitialised array: from workspace ``ws`` under ``name``, or a fresh one when ws is None."""
    if ws is None:
        return _state["xp"].empty(shape, dtype=get_dtype() if dtype is None else dtype)
    return ws.empty(name, shape, dtype)


def _environment_error(var, value, valid, why):
    """A bad environment variable: one ValueError naming it, its value and the valid values."""
    return ValueError("environment variable %s=%r is not valid (%s); valid values: %s; unset it "
                      "for the default" % (var, value, why, ", ".join(valid)))


def _from_environment():
    """Apply MANUALGRAD_BACKEND, _DTYPE, _FUSED, _WORKSPACE; a bad value stops ``import
    manualgrad`` with a ValueError naming the variable, its value and the valid values (and a
    RuntimeError naming MANUALGRAD_BACKEND when it asks for CuPy on a machine without it)."""
    name = os.environ.get("MANUALGRAD_BACKEND")
    if name:
        if name.strip().lower() not in BACKENDS:
            raise _environment_error("MANUALGRAD_BACKEND", name, BACKENDS, "unknown backend")
        try:
            set_backend(name)
        except RuntimeError as exc:
            raise RuntimeError("environment variable MANUALGRAD_BACKEND=%r: %s; unset it (or set "
                               "it to numpy) on this machine" % (name, exc)) from None
    dtype = os.environ.get("MANUALGRAD_DTYPE")
    if dtype:
        try:
            set_dtype(dtype.strip())
        except (TypeError, ValueError):
            raise _environment_error("MANUALGRAD_DTYPE", dtype, DTYPES,
                                     "not a supported float dtype") from None
    flag = os.environ.get("MANUALGRAD_FUSED")
    if flag:
        value = {"0": False, "1": True}.get(flag, flag)
        if value not in (True, False) + FUSED_MODES:
            raise _environment_error("MANUALGRAD_FUSED", flag, ("0", "1") + FUSED_MODES,
                                     "not a fused-kernel mode")
        set_fused(value)
    flag = os.environ.get("MANUALGRAD_WORKSPACE")
    if flag:
        if flag not in ("0", "1"):
            raise _environment_error("MANUALGRAD_WORKSPACE", flag, ("0", "1"),
                                     "1 uses a default workspace per thread, 0 none")
        _state["workspace_default"] = flag == "1"


_from_environment()
