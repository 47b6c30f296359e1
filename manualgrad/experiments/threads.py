"""BLAS thread limits while an experiment trains (shared by every experiment).

The engine's products are small, and a multi-threaded BLAS on a loaded machine can be 30x slower
than one thread (measured: 71 ms vs 2 ms per adjoint gradient on 2 shared cores). Experiments
therefore train inside :func:`blas_threads` with their ``blas_threads`` setting (default 1):
via threadpoolctl when installed, else OpenBLAS's own ``*_set_num_threads`` (nothing happens
where neither is found, or on the CuPy backend). The previous limit is restored on exit.
"""
from __future__ import annotations

import contextlib
import ctypes

from .. import backend

__all__ = ["blas_threads"]

_OPENBLAS_SYMBOLS = (("openblas_set_num_threads", "openblas_get_num_threads"),
                     ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
                     ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                     ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"))


def _openblas_handles():
    """(set, get) function pairs of every OpenBLAS loaded in this process (Linux; else [])."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()
                     and line.split()[-1].startswith("/")}
    except OSError:
        return []
    pairs = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _OPENBLAS_SYMBOLS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                setter, getter = getattr(lib, set_name), getattr(lib, get_name)
                setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
                pairs.append((setter, getter))
                break
    return pairs


def _threadpool_limits():
    """threadpoolctl's ``threadpool_limits``, or None when threadpoolctl is not installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits


@contextlib.contextmanager
def blas_threads(n):
    """Limit the BLAS to ``n`` threads inside the block (None: leave it alone); restored after."""
    if n is None or backend.get_backend() != "numpy":
        yield
        return
    limits = _threadpool_limits()
    if limits is not None:
        with limits(limits=int(n), user_api="blas"):
            yield
        return
    pairs = _openblas_handles()
    old = [get() for _, get in pairs]
    for setter, _ in pairs:
        setter(int(n))
    try:
        yield
    finally:
        for (setter, _), k in zip(pairs, old):
            setter(int(k))
