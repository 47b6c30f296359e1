"""The ``strict`` backend: NumPy on the CPU behind CuPy's rules, to check backend discipline anywhere.

CuPy refuses what NumPy lets pass silently: converting a device array to NumPy implicitly
(``np.asarray(a)``, ``np.testing.assert_allclose(a, b)``, matplotlib, ``np.savez``), and mixing
device arrays with NumPy arrays in one operation (``a + np_array``, ``a[...] = np_array``,
``xp.concatenate([a, np_array])``). Code and tests that only ever ran on NumPy break on a GPU in
exactly those places. This module gives a stand-in array module that raises ``TypeError`` there,
as CuPy does, while computing with NumPy underneath::

    MANUALGRAD_BACKEND=strict python -m pytest          # or: python -m pytest --backend strict

What it mirrors (CuPy 13/14): arrays are not ``numpy.ndarray``; reductions return 0-d arrays;
``float(a)``, ``int(a)``, ``bool(a)``, ``a.item()``, ``a.tolist()`` and ``a.get()`` convert
explicitly; NumPy functions and ufuncs called on these arrays dispatch to the array module
(``__array_function__`` / ``__array_ufunc__``) and refuse NumPy array operands; NumPy arrays and
lists are accepted as indices and by ``asarray``/``array``; floating-point errors never warn.
What it does not mirror: speed, device memory, CuPy-only functions and kernels (the engine's
fused GPU kernels run on real CuPy only; on this backend the engine takes its NumPy path).
"""
from __future__ import annotations

import functools
import types

from .backend import np

__all__ = ["StrictArray", "module"]

_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed (strict backend, as on CuPy). "
             "Use manualgrad.backend.to_numpy(a) (or a.get()) to copy it to the host explicitly.")
_ACCEPT_HOST = frozenset(("asarray", "array", "asanyarray", "ascontiguousarray", "asfortranarray"))


class StrictArray(np.lib.mixins.NDArrayOperatorsMixin):
    """An array of the strict backend: a NumPy array inside, CuPy's rules outside."""

    __slots__ = ("_a",)
    __array_priority__ = 100.0

    def __init__(self, a):
        object.__setattr__(self, "_a", a)

    # -------------------------------------------------------------- explicit conversions (allowed)
    def get(self, *args, **kwargs):
        """A NumPy copy on the host, like ``cupy.ndarray.get``."""
        return self._a.copy()

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __index__(self):
        if self._a.ndim != 0 or self._a.dtype.kind not in "iu":
            raise TypeError("only integer scalar arrays can be converted to a scalar index")
        return int(self._a)

    def __complex__(self):
        return complex(self._a)

    def __bool__(self):
        return bool(self._a)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        for i in range(len(self._a)):
            yield self[i]

    def __format__(self, spec):
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    def __repr__(self):
        return "strict_array(%s)" % np.array2string(self._a, separator=", ")

    def __str__(self):
        return str(self._a)

    __hash__ = None

    # ----------------------------------------------------------------------- what CuPy refuses
    def __array__(self, *args, **kwargs):
        raise TypeError(_IMPLICIT)

    def __getstate__(self):
        raise TypeError("strict arrays cannot be pickled implicitly (as a GPU array would be "
                        "copied): convert with manualgrad.backend.to_numpy first")

    # ------------------------------------------------------------------ dispatch (as CuPy does)
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        inputs = tuple(_operand(x, ufunc.__name__) for x in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(_out(o, ufunc.__name__) for o in kwargs["out"])
        with np.errstate(all="ignore"):
            res = getattr(ufunc, method)(*inputs, **kwargs)
        return _wrap(res)

    def __array_function__(self, func, types_, args, kwargs):
        return _call(func, args, kwargs, func.__name__)

    # ------------------------------------------------------------------------------ indexing
    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        with np.errstate(all="ignore"):
            self._a[_index(key)] = _operand(value, "__setitem__")

    def __setattr__(self, name, value):
        if name == "shape":
            self._a.shape = value
            return
        raise AttributeError("cannot set attribute %r of a strict array" % name)

    # --------------------------------------------------------------- attributes and methods
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            return _method(attr, name)
        return _wrap(attr)


def _is_host(x):
    return isinstance(x, np.ndarray)


def _operand(x, where):
    """Unwrap a strict array; refuse a NumPy array (CuPy: 'Unsupported type numpy.ndarray')."""
    if isinstance(x, StrictArray):
        return x._a
    if _is_host(x):
        raise TypeError("%s: unsupported operand of type numpy.ndarray (shape %s) mixed with "
                        "strict (device) arrays; move it with manualgrad.backend.asarray first"
                        % (where, x.shape))
    if isinstance(x, (list, tuple)):
        return type(x)(_operand(v, where) for v in x)
    return x


def _out(o, where):
    if o is None:
        return None
    if not isinstance(o, StrictArray):
        raise TypeError("%s: out= must be a strict (device) array, got %s" % (where, type(o).__name__))
    return o._a


def _index(key):
    """Indices may be NumPy arrays or lists (CuPy converts them); strict arrays are unwrapped."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, StrictArray):
        return key._a
    return key


def _wrap(res):
    if isinstance(res, np.ndarray):
        return StrictArray(res)
    if isinstance(res, np.generic):  # CuPy returns 0-d arrays, never NumPy scalars
        return StrictArray(np.asarray(res))
    if isinstance(res, tuple):
        return tuple(_wrap(r) for r in res)
    if isinstance(res, list):
        return [_wrap(r) for r in res]
    return res


def _unwrap_kwargs(kwargs, where):
    out = {}
    for k, v in kwargs.items():
        if k == "out":
            out[k] = tuple(_out(o, where) for o in v) if isinstance(v, tuple) else _out(v, where)
        else:
            out[k] = _operand(v, where)
    return out


def _call(func, args, kwargs, name):
    if name in _ACCEPT_HOST:  # explicit host -> device copies are fine
        args = tuple(a._a if isinstance(a, StrictArray) else a for a in args)
        kwargs = {k: (v._a if isinstance(v, StrictArray) else v) for k, v in kwargs.items()}
        res = func(*args, **kwargs)
        return StrictArray(np.array(res, copy=True) if name == "array" else np.asarray(res))
    args = tuple(_operand(a, name) for a in args)
    kwargs = _unwrap_kwargs(kwargs, name)
    with np.errstate(all="ignore"):
        res = func(*args, **kwargs)
    return _wrap(res)


def _method(bound, name):
    @functools.wraps(bound)
    def call(*args, **kwargs):
        args = tuple(_operand(a, name) for a in args)
        kwargs = _unwrap_kwargs(kwargs, name)
        with np.errstate(all="ignore"):
            return _wrap(bound(*args, **kwargs))
    return call


class _Namespace(types.ModuleType):
    """numpy (or one of its submodules) with every function wrapped by the strict rules."""

    def __init__(self, name, inner):
        super().__init__(name)
        self._inner = inner

    def __getattr__(self, name):
        if name == "ndarray":
            return StrictArray
        if name == "asnumpy":  # cupy.asnumpy
            return lambda a: a.get() if isinstance(a, StrictArray) else np.asarray(a)
        attr = getattr(self._inner, name)
        if isinstance(attr, types.ModuleType):
            return _Namespace(self.__name__ + "." + name, attr)
        if isinstance(attr, type) or not callable(attr):
            return attr  # dtypes, finfo, constants

        @functools.wraps(attr)
        def call(*args, **kwargs):
            return _call(attr, args, kwargs, name)
        return call


module = _Namespace("manualgrad.strict", np)
"""The strict array module: what ``backend.xp()`` returns on the strict backend."""
