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


# ------------------------------------------------------------------ optimizers, fit, check
# The vocabulary of the training side (docs/conventions.md, "Validation"): every message starts
# with ``where`` (the public function or method, e.g. "SGD", "adam_step", "FrankWolfe.step"),
# names the argument (``lr``, ``grads['W_rec']``), says what was expected and repeats what was
# given. Types are TypeError, values ValueError; nothing is computed before the checks pass.

def _at(where):
    return "%s: " % where if where else ""


def positive_real(value, name, where=None, role=None, finite=True):
    """``value`` as a float > 0 (finite unless ``finite=False``); bools and strings refused.

    TypeError ``"<where>: <name> must be a real number > 0 (<role>), got '0.1'"``; ValueError
    ``"<where>: <name> must be > 0 and finite (<role>), got inf"``. For step sizes (lr, eta),
    radii (delta), eps, finite-difference steps h, clipping norms (``finite=False``: inf allowed).
    """
    what = " (%s)" % role if role else ""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError("%s%s must be a real number > 0%s, got %r"
                        % (_at(where), name, what, value))
    value = float(value)
    if not (value > 0 and (math.isfinite(value) or not finite)):
        raise ValueError("%s%s must be > 0%s%s, got %r"
                         % (_at(where), name, " and finite" if finite else "", what, value))
    return value


def unit_interval(value, name, where=None):
    """``value`` as a float with 0 <= value < 1 (decay rates: Adam's beta1, beta2)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError("%s%s must be a real number in [0, 1), got %r" % (_at(where), name, value))
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError("%s%s must satisfy 0 <= %s < 1, got %r" % (_at(where), name, name, value))
    return value


def backend_array(a, name, where=None, floating=False, finite=False, why=None):
    """``a`` itself, checked to be an array of a backend (no conversion: optimizers, gradient
    checks and clipping work on the arrays they are given); with ``floating`` of a float
    dtype, with ``finite`` free of NaN and Inf (``why``: what a non-finite entry would break)."""
    if not backend.is_array(a):
        raise TypeError("%s%s must be an array of the backend, got %s"
                        % (_at(where), name, type(a).__name__))
    if floating and a.dtype.kind != "f":
        raise TypeError("%s%s must be a floating-point array, got dtype %s"
                        % (_at(where), name, a.dtype))
    if finite and a.size:
        xp = backend.array_module_of(a)
        if not bool(xp.isfinite(a).all()):
            raise ValueError("%s%s contains %d non-finite value(s) (NaN or Inf)%s"
                             % (_at(where), name, int((~xp.isfinite(a)).sum()),
                                ": " + why if why else ""))
    return a


def array_mapping(m, what, where=None, floating=False, finite=False, why=None):
    """``m``, checked to be a mapping {name: array} (:func:`backend_array` for each entry)."""
    if not hasattr(m, "keys") or not hasattr(m, "items"):
        raise TypeError("%s%s must be a mapping {name: array}, got %s"
                        % (_at(where), what, type(m).__name__))
    for k, a in m.items():
        backend_array(a, "%s[%r]" % (what, k), where, floating, finite, why)
    return m


def same_layout(params, other, what, where=None):
    """``other`` (grads, a state, a pending step) must have the keys and shapes of ``params``."""
    if set(other) != set(params):
        raise ValueError("%s%s has keys %s but params has keys %s"
                         % (_at(where), what, sorted(map(str, other)), sorted(map(str, params))))
    for k in params:
        if tuple(other[k].shape) != tuple(params[k].shape):
            raise ValueError("%s%s[%r] has shape %s but params[%r] has shape %s"
                             % (_at(where), what, k, tuple(other[k].shape), k,
                                tuple(params[k].shape)))


def gradients(params, grads, where, why=None):
    """What every optimizer step checks: params and grads mappings of backend arrays with the
    same keys and shapes, grads floating and finite (a NaN or Inf gradient is a ValueError
    naming it, never a NaN parameter; :func:`manualgrad.train.fit` stops before it)."""
    array_mapping(params, "params", where)
    array_mapping(grads, "grads", where)
    same_layout(params, grads, "grads", where)
    array_mapping(grads, "grads", where, floating=True, finite=True, why=why)


def callable_arg(value, name, where, what, allow_none=False):
    """``value`` if callable (or None when ``allow_none``), else TypeError saying what it is for."""
    if value is None and allow_none:
        return None
    if not callable(value):
        raise TypeError("%s%s must be %scallable (%s), got %r"
                        % (_at(where), name, "None or " if allow_none else "", what, value))
    return value


def init_args(sizes, seed, scale, bias_scale, dtype, what="init_params"):
    """The arguments every ``init_params`` shares, checked.

    Returns ``(sizes, seed, scale, bias_scale, dtype)``.

    ``sizes``: a mapping name -> value, each a positive integer (Python or NumPy; bools and
    floats refused, ValueError); ``seed``: an integer >= 0 (TypeError for other types);
    ``scale``: None or a finite real >= 0; ``bias_scale``: a finite real >= 0; ``dtype``: None
    or one of ``backend.DTYPES`` (refused as :func:`manualgrad.backend.set_dtype` refuses it).
    Sizes come back as ints, scales as floats (or None), dtype as a NumPy dtype (or None).
    """
    out = {}
    for n, v in sizes.items():
        if isinstance(v, bool) or not hasattr(v, "__index__") or int(v) < 1:
            raise ValueError("%s: %s must be a positive integer, got %r" % (what, n, v))
        out[n] = int(v)
    if isinstance(seed, bool) or not hasattr(seed, "__index__"):
        raise TypeError("%s: seed must be an integer >= 0, got %r" % (what, seed))
    if int(seed) < 0:
        raise ValueError("%s: seed must be an integer >= 0, got %r" % (what, seed))
    scales = []
    for n, v in (("scale", scale), ("bias_scale", bias_scale)):
        if v is None and n == "scale":
            scales.append(None)
            continue
        if isinstance(v, bool) or not isinstance(v, Real):
            raise TypeError("%s: %s must be a real number >= 0%s, got %r"
                            % (what, n, " or None" if n == "scale" else "", v))
        if not (math.isfinite(v) and v >= 0):
            raise ValueError("%s: %s must be finite and >= 0%s, got %r"
                             % (what, n, " or None" if n == "scale" else "", v))
        scales.append(float(v))
    dt = None if dtype is None else backend._dtype_for(dtype)
    return out, int(seed), scales[0], scales[1], dt


def sequence_input(u, p, source):
    """The input u (T, B, p) of a recurrent model: a finite float array with T, B >= 1 and p
    columns, on the backend. ``source``: where p comes from, a %-format taking p (e.g.
    "W_in has %d columns")."""
    u = float_array(u, "u", ndim=3, axes=("T", "B", "p"))
    if u.shape[0] < 1 or u.shape[1] < 1:
        raise ValueError("u must have at least one step and one example, got shape %s"
                         % (tuple(u.shape),))
    axis_matches("u", u, 2, "p, input size", p, source)
    return u


def head_adjoint(traj, delta, delta_out):
    """The head's adjoint from exactly one of ``delta`` = -dF_b/dyhat (shape of ``traj.yhat``)
    and ``delta_out`` = -dF_b/do (shape of ``traj.o``), checked; returns ``(delta, delta_out)``
    with delta_out = sigma_out'(o)^T delta when only delta is given (delta None otherwise)."""
    if (delta is None) == (delta_out is None):
        raise TypeError("adjoint: give exactly one of delta (-dF/dyhat) and delta_out (-dF/do)")
    if delta_out is None:
        delta = float_array(delta, "delta")
        if delta.shape != traj.yhat.shape:
            raise ValueError("delta must have the shape of traj.yhat %s, got %s"
                             % (tuple(traj.yhat.shape), tuple(delta.shape)))
        return delta, traj.output.vjp(traj.o, traj.yhat, delta)  # sigma_out'(o) o delta
    delta_out = float_array(delta_out, "delta_out")
    if delta_out.shape != traj.o.shape:
        raise ValueError("delta_out must have the shape of traj.o %s, got %s"
                         % (tuple(traj.o.shape), tuple(delta_out.shape)))
    return None, delta_out


def momentum_hyper(mu, s):
    """The heavy-ball options of the momentum cells (BW-MRNN), checked: mu in [0, 1) (momentum),
    s > 0 finite (step size); returns ``(mu, s)`` as floats. Bools and non-numbers: TypeError."""
    for name, val in (("mu", mu), ("s", s)):
        if isinstance(val, bool) or not isinstance(val, Real):
            raise TypeError("%s must be a real number, got %r" % (name, val))
    mu, s = float(mu), float(s)
    if not (0.0 <= mu < 1.0):
        raise ValueError("mu must lie in [0, 1) (the momentum coefficient), got %r" % (mu,))
    if not (s > 0.0 and math.isfinite(s)):
        raise ValueError("s must be a finite number > 0 (the step size), got %r" % (s,))
    return mu, s


def state_arrays(state0, names, widths, B, labels=None):
    """A cell's initial states, checked: per name in ``names`` an array (B, width) or (width,),
    or None for a key missing from ``state0`` (or state0 None), which means zeros.

    ``labels``: the width of each name as the messages write it (default "m").
    """
    if state0 is None:
        state0 = {}
    if not hasattr(state0, "keys"):
        raise TypeError("state0 must be a mapping with keys among %s (or None), got %s"
                        % (", ".join(names), type(state0).__name__))
    extra = [str(k) for k in state0 if k not in names]
    if extra:
        raise ValueError("state0 has unknown key(s) %s: the state of this cell is %s"
                         % (", ".join(extra), ", ".join(names)))
    labels = labels or ("m",) * len(names)
    out = []
    for n, w, lab in zip(names, widths, labels):
        if state0.get(n) is None:
            out.append(None)
            continue
        a = float_array(state0[n], "state0[%r]" % n)
        if tuple(a.shape) not in ((B, w), (w,)):
            raise ValueError("state0[%r] must have shape (B, %s) = (%d, %d) or (%s,) = (%d,), "
                             "got %s" % (n, lab, B, w, lab, w, tuple(a.shape)))
        out.append(a)
    return out


def registry_entry(registry, name, what, cls=None):
    """``registry[name]`` for a name of ``registry`` (an instance of ``cls`` passes through).

    TypeError for a name that is not a string, ValueError listing the valid names for an unknown
    one; ``what`` is the kind the messages name ("solver", ...).
    """
    if cls is not None and isinstance(name, cls):
        return name
    if not isinstance(name, str):
        raise TypeError("%s must be a name, one of %s; got %r" % (what, ", ".join(registry), name))
    try:
        return registry[name]
    except KeyError:
        raise ValueError("unknown %s %r: valid names are %s"
                         % (what, name, ", ".join(registry))) from None
