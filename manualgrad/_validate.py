"""Input checks shared by the engine modules: clear errors that name the argument and axis."""
from __future__ import annotations

import math
from numbers import Real

from . import backend


def float_array(a, name, ndim=None, axes=None, finite=True):
    """Check ``a`` is a real floating array (or convertible list) and return it on the backend.

    ``ndim``: required number of dimensions; ``axes``: a label for each axis used in messages,
    e.g. ``("T", "B", "p")``. Integer and boolean arrays raise ``TypeError`` (no silent casts);
    NaN/Inf raise ``ValueError`` when ``finite``.
    """
    if a is None:
        raise TypeError("%s is required, got None" % name)
    if not backend.is_array(a):
        try:
            a = backend.np.asarray(a)
        except Exception as exc:
            raise TypeError("%s must be an array, got %s (%s)" % (name, type(a).__name__, exc))
    kind = a.dtype.kind
    if kind != "f":
        what = {"i": "an integer", "u": "an unsigned integer", "b": "a boolean",
                "c": "a complex"}.get(kind, "a non-numeric")
        raise TypeError("%s must be a floating-point array, got %s array (dtype %s); convert it "
                        "with .astype(float)" % (name, what, a.dtype))
    if ndim is not None and a.ndim != ndim:
        label = " (%s)" % ", ".join(axes) if axes else ""
        raise ValueError("%s must be a %d-d array%s, got shape %s"
                         % (name, ndim, label, tuple(a.shape)))
    a = backend.asarray(a)
    if finite and a.size and not bool(backend.xp().isfinite(a).all()):
        bad = int((~backend.xp().isfinite(a)).sum())
        raise ValueError("%s contains %d non-finite value(s) (NaN or Inf)" % (name, bad))
    return a


def axis_matches(name, a, axis, axis_label, expected, source):
    """Raise if ``a.shape[axis] != expected`` with a message naming both arguments."""
    if a.shape[axis] != expected:
        raise ValueError("%s: axis %d (%s) has length %d, but %s"
                         % (name, axis, axis_label, a.shape[axis], source % expected))


def params_mapping(params, names, shapes, what):
    """Check a parameter mapping has ``names`` with ``shapes`` (tuples); return it on the backend.

    Shapes may contain None for an axis that is checked elsewhere.
    """
    if not hasattr(params, "keys"):
        raise TypeError("params must be a mapping with keys %s, got %s"
                        % (", ".join(names), type(params).__name__))
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError("params for %s lack %s (expected keys %s, got %s)"
                         % (what, ", ".join(missing), ", ".join(names), ", ".join(map(str, params))))
    out = {}
    for n in names:
        a = float_array(params[n], "params[%r]" % n, ndim=len(shapes[n]))
        for ax, (got, want) in enumerate(zip(a.shape, shapes[n])):
            if want is not None and got != want:
                raise ValueError("params[%r] has shape %s, expected %s (axis %d differs)"
                                 % (n, tuple(a.shape), tuple(shapes[n]), ax))
        out[n] = a
    return out


def positive_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (
            hasattr(value, "__index__") and not isinstance(value, float)):
        raise TypeError("%s must be an integer, got %r" % (name, value))
    value = int(value)
    if value < minimum:
        raise ValueError("%s must be >= %d, got %d" % (name, minimum, value))
    return value


def number(value, name, minimum=None, positive=False, allow_none=False):
    """A finite real number as float (bools refused); optionally > 0 or >= ``minimum``, or None."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError("%s must be a number, got %r" % (name, value))
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("%s must be finite, got %r" % (name, value))
    if positive and not value > 0:
        raise ValueError("%s must be > 0, got %r" % (name, value))
    if minimum is not None and value < minimum:
        raise ValueError("%s must be >= %g, got %r" % (name, minimum, value))
    return value


def integer(value, name, minimum=1, allow_none=False):
    """A Python int >= ``minimum`` (bools refused), or None when ``allow_none``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s must be an integer, got %r" % (name, value))
    if value < minimum:
        raise ValueError("%s must be >= %d, got %d" % (name, minimum, value))
    return int(value)


def step(k, lo, hi, what):
    """A step index k in [lo, hi] (the paper's 1-based indexing), else IndexError naming ``what``."""
    if isinstance(k, bool) or not hasattr(k, "__index__") or not lo <= int(k) <= hi:
        raise IndexError("%s: step k must be an integer in [%d, %d], got %r" % (what, lo, hi, k))
    return int(k)
