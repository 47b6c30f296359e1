"""Derivative checking as a public tool: central differences, relative error, dot-product test.

Typical use, for any function of a parameter mapping::

    from manualgrad import check, rnn
    f = lambda P: rnn.loss(P, u, y)
    F, grads = rnn.loss_and_grad(params, u, y)
    report = check.gradients(f, params, grads)      # per-parameter relative errors
    assert report.max_error < 1e-7, report

Conventions:

- ``rel_error(a, b) = ||a - b||_2 / max(||a||_2, ||b||_2, floor)``: norm-wise, so a few tiny
  entries do not dominate; the floor keeps an all-zero gradient from dividing by zero.
- Central differences of order 4 by default, [f(x-2h) - 8 f(x-h) + 8 f(x+h) - f(x+2h)] / 12h,
  with h = eps^(1/4) max(1, |x|) (about 1.2e-4 in float64). The textbook balance of
  truncation O(h^4 f^(5)) against round-off O(eps/h) is h = eps^(1/5) (7e-4), but steep
  functions (saturating heads, large pre-activations) have big fifth derivatives; at eps^(1/4)
  round-off is still ~1e-12 and truncation stays small, so gradients can be held to 1e-7. ``order=2``
  gives the classic (f(x+h) - f(x-h)) / 2h with h = eps^(1/3) max(1, |x|) (about 6e-6): use it
  near kinks (relu), where the wider stencil could step across one.
- The dot-product test compares the directional derivative along a random (seeded, Gaussian,
  non-uniform) direction v with <grad, v>: one pair of function evaluations for the whole
  parameter vector, so it scales to long sequences and big models.

Finite differences always run in float64 on the host arrays' backend; check in float64.

Arguments are checked before ``f`` is first called (the vocabulary of :mod:`manualgrad._validate`):
a gradient missing from ``grads`` or of the wrong shape, an unknown name in ``names``, a step
``h`` that is not a finite number > 0, an ``order`` other than 2 and 4 are ValueErrors naming
them; an ``f`` that does not return a scalar is a TypeError giving what it returned (found at
its first evaluation, before any finite difference is taken).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import _validate, backend

__all__ = ["rel_error", "fd_error", "fd_atol", "default_step", "numerical_gradient", "numerical_gradients",
           "GradientReport", "gradients", "directional_derivative", "dot_product_test",
           "assert_gradients", "TOLERANCES", "SECOND_ORDER", "AGREEMENT"]

TOLERANCES = {"float64": 1e-7, "float32": 2e-2}
"""Relative-error tolerances for gradient checks, keyed by dtype name (float32 is a smoke test):
an analytic first derivative against central differences of the function itself."""

SECOND_ORDER = {"float64": 1e-6, "float32": 2e-2}
"""Relative-error tolerances for derivatives of derivatives, keyed by dtype name: Hessian-vector
products against central differences of the exact gradient (tests/test_hvp.py), and the
coadjoint method, whose penalty G is a function of the adjoints, so its gradient is a second
derivative of F, against central differences of F + alpha G (tests/test_coadjoint.py). The
differenced quantity is itself a derivative, steep where adjoints are small, so the truncation
error of the stencil is larger than in :data:`TOLERANCES` for the same step."""

AGREEMENT = {"float64": 1e-12, "float32": 1e-4}
"""Relative-error tolerances for two implementations of the same computation, keyed by the dtype
of the one under test: the fused GPU kernels against the NumPy path (tests/test_gpu.py, and
tests/test_gpu_emulated.py on the CPU). No finite differences: in float64 only the order of the
sums differs (1e-12); in float32 the result is compared with the float64 reference (1e-4)."""


def _step(h, where):
    """None or a finite step > 0 (as float)."""
    return None if h is None else _validate.positive_real(h, "h", where,
                                                          role="the finite-difference step")


def _order(order, where):
    if order not in (2, 4) or isinstance(order, bool):
        raise ValueError("%s: order must be 2 or 4 (the central-difference stencil), got %r"
                         % (where, order))
    return order


def _check_grads(params, grads, names, where, what="grads"):
    """``params`` a non-empty mapping of arrays; ``names`` None or keys of it; ``grads`` a
    mapping with an array of the parameter's shape for each name. Returns the names."""
    _validate.array_mapping(params, "params", where)
    if not params:
        raise ValueError("%s: params is empty: nothing to check" % where)
    if names is None:
        names = list(params)
    else:
        if isinstance(names, str):
            raise TypeError("%s: names must be a list of parameter names, got the string %r"
                            % (where, names))
        names = list(names)
        for k in names:
            if k not in params:
                raise ValueError("%s: names: %r is not a key of params (keys: %s)"
                                 % (where, k, ", ".join(map(str, params))))
    if not hasattr(grads, "keys"):
        raise TypeError("%s: %s must be a mapping {name: array} like params, got %s"
                        % (where, what, type(grads).__name__))
    for k in names:
        if k not in grads:
            raise ValueError("%s: %s lacks %r (params has keys %s; give a gradient for every "
                             "parameter checked, or restrict the check with names=)"
                             % (where, what, k, ", ".join(map(str, params))))
        g = _validate.backend_array(grads[k], "%s[%r]" % (what, k), where)
        if tuple(g.shape) != tuple(params[k].shape):
            raise ValueError("%s: %s[%r] has shape %s but params[%r] has shape %s"
                             % (where, what, k, tuple(g.shape), k, tuple(params[k].shape)))
    return names


def rel_error(a, b, floor=1e-12):
    """||a - b||_2 / max(||a||_2, ||b||_2, floor), as a Python float (a, b: arrays of one shape)."""
    xp = backend.array_module_of(a)
    a = xp.asarray(a, dtype="float64")
    b = backend.array_module_of(b).asarray(b, dtype="float64")
    if a.shape != b.shape:
        raise ValueError("rel_error: shapes differ, %s vs %s" % (tuple(a.shape), tuple(b.shape)))
    if xp is not backend.array_module_of(b):
        a, b = backend.to_numpy(a), backend.to_numpy(b)
        xp = backend.np
    num = float(xp.linalg.norm((a - b).ravel()))
    den = max(float(xp.linalg.norm(a.ravel())), float(xp.linalg.norm(b.ravel())), floor)
    return num / den


def fd_atol(f_value, order=4, h=None, dtype="float64"):
    """Absolute resolution of a central difference: 10 eps max(1, |f|) / h.

    Round-off in f (about eps |f|) divided by the step; about 2e-11 |f| for the default 4-point
    stencil in float64 and 4e-10 |f| for the 2-point one.
    """
    h = _step(h, "check.fd_atol")
    h = default_step(dtype, _order(order, "check.fd_atol")) if h is None else h
    eps = float(backend.np.finfo(backend.np.dtype(dtype)).eps)
    return 10.0 * eps * max(1.0, abs(_scalar(f_value))) / h


def fd_error(analytic, numeric, f_value, tol=1e-7, atol=None, order=4, h=None):
    """:func:`rel_error` of an analytic derivative against a finite-difference one, with the FD floor.

    The floor is ``atol / tol``, ``atol`` defaulting to :func:`fd_atol` of the stencil used: a
    derivative smaller than the floor (an exactly-zero one, say) must match to ``atol``
    absolutely, since finite differences cannot resolve it better.
    """
    if atol is None:
        atol = fd_atol(f_value, order, h)
    return rel_error(analytic, numeric, atol / tol)


def default_step(dtype, order=4):
    """Default relative step: eps^(1/3) for ``order=2``, eps^(1/4) for ``order=4`` (see above)."""
    if order not in (2, 4):
        raise ValueError("order must be 2 or 4, got %r" % (order,))
    return float(backend.np.finfo(backend.np.dtype(dtype)).eps ** (1.0 / (4 if order == 4 else 3)))


def _central(f_at, step, order):
    """Central difference of the scalar function ``f_at(offset)`` at offset 0."""
    if order == 2:
        return (f_at(step) - f_at(-step)) / (2.0 * step)
    # grouped as differences of symmetric pairs, so a function constant in this entry gives
    # exactly 0 (the ungrouped sum leaves round-off of order eps |f| / step)
    return ((f_at(-2 * step) - f_at(2 * step)) + 8.0 * (f_at(step) - f_at(-step))) / (12.0 * step)


def _scalar(v, where="check"):
    """``v`` (a number or a one-element array, e.g. the value of ``f``) as a Python float;
    TypeError saying what ``f`` returned otherwise."""
    if backend.is_array(v):
        if v.size != 1:
            raise TypeError("%s: f must return a scalar (a number or a one-element array), got "
                            "an array of shape %s" % (where, tuple(v.shape)))
        return float(backend.to_numpy(v).reshape(()))
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError("%s: f must return a scalar (a number or a one-element array), got %s"
                        % (where, type(v).__name__)) from None


def numerical_gradient(f, x, h=None, index=None, order=4):
    """Central-difference gradient of the scalar function ``f`` at array ``x`` (same shape as x).

    ``x`` is perturbed in place one entry at a time and restored. ``index``: optional iterable of
    flat indices to differentiate (the others are left 0), for spot checks of large arrays.
    """
    where = "check.numerical_gradient"
    _validate.callable_arg(f, "f", where, "f() -> scalar, reading x")
    _validate.backend_array(x, "x", where, floating=True)
    h = _step(h, where)
    order = _order(order, where)
    xp = backend.array_module_of(x)
    if not x.flags.c_contiguous:
        raise ValueError("numerical_gradient: x must be C-contiguous (it is perturbed in place "
                         "through a flat view); pass x.copy()")
    h0 = default_step(x.dtype, order) if h is None else float(h)
    g = xp.zeros(x.shape, dtype="float64")
    flat = x.reshape(-1)  # a view: x must be contiguous (copies made by numerical_gradients are)
    gflat = g.reshape(-1)
    idx = range(x.size) if index is None else index
    for i in idx:
        old = flat[i].item()

        def f_at(offset):
            flat[i] = old + offset
            return _scalar(f(), where)

        gflat[i] = _central(f_at, h0 * max(1.0, abs(old)), order)
        flat[i] = old
    return g


def numerical_gradients(f, params, h=None, names=None, order=4):
    """Central-difference gradient of ``f(params)`` for each array in the mapping ``params``.

    Works on copies: ``params`` itself is not modified. Returns a dict of float64 arrays.
    """
    where = "check.numerical_gradients"
    _validate.callable_arg(f, "f", where, "f(params) -> scalar")
    names = _check_grads(params, params, names, where, "params")
    _step(h, where)
    _order(order, where)
    P = {k: v.copy() for k, v in params.items()}
    out = {}
    for name in (names if names is not None else P):
        out[name] = numerical_gradient(lambda: f(P), P[name], h, order=order)
    return out


@dataclass
class GradientReport:
    """Per-parameter relative errors of an analytic gradient against finite differences."""

    errors: dict = field(default_factory=dict)
    tol: float = 1e-7

    @property
    def max_error(self):
        return max(self.errors.values()) if self.errors else 0.0

    @property
    def ok(self):
        return self.max_error < self.tol

    def __str__(self):
        rows = ["%-10s %10s" % ("parameter", "rel_error")]
        rows += ["%-10s %10.2e%s" % (k, e, "" if e < self.tol else "  <-- above %.0e" % self.tol)
                 for k, e in self.errors.items()]
        return "\n".join(rows)


def gradients(f, params, grads, h=None, tol=None, names=None, order=4, atol=None):
    """Compare ``grads`` (analytic) with central differences of ``f(params)``; a :class:`GradientReport`.

    ``tol`` defaults to :data:`TOLERANCES` for the dtype of the first parameter. Central
    differences resolve a derivative only up to round-off, about eps |f| / h in absolute terms;
    so the relative error uses the floor ``atol / tol`` (:func:`fd_error`, :func:`fd_atol`):
    a gradient smaller than the floor (an exactly-zero one, say) must match to ``atol``
    absolutely. A 0.05% error in any gradient larger than ~1e-7 |f| still fails at tol 1e-7.
    """
    return _gradients("check.gradients", f, params, grads, h, tol, names, order, atol)


def _gradients(where, f, params, grads, h, tol, names, order, atol):
    _validate.callable_arg(f, "f", where, "f(params) -> scalar")
    names = _check_grads(params, grads, names, where)
    h, order = _step(h, where), _order(order, where)
    tol = None if tol is None else _validate.positive_real(tol, "tol", where)
    atol = None if atol is None else _validate.positive_real(atol, "atol", where)
    f0 = _scalar(f(params), where)   # a vector-valued f is refused before any difference
    num = numerical_gradients(f, params, h, names, order)
    dt = next(iter(params.values())).dtype
    if tol is None:
        tol = TOLERANCES.get(backend.np.dtype(dt).name, 1e-7)
    if atol is None:
        atol = fd_atol(f0, order, h, dt if h is None else "float64")
    return GradientReport({k: fd_error(grads[k], num[k], f0, tol, atol) for k in num}, tol)


def assert_gradients(f, params, grads, h=None, tol=None, names=None, order=4, atol=None):
    """Raise ``AssertionError`` with the per-parameter table if any relative error is >= tol."""
    rep = _gradients("check.assert_gradients", f, params, grads, h, tol, names, order, atol)
    if not rep.ok:
        raise AssertionError("gradient check failed (tol %.1e):\n%s" % (rep.tol, rep))
    return rep


def _like(a, ref):
    """``a`` on the array module of ``ref``, moved explicitly (e.g. a NumPy direction for device
    parameters, or host parameters with device gradients)."""
    xp = backend.array_module_of(ref)
    return backend.to_numpy(a) if xp is backend.np else xp.asarray(a)


def _vdot(g, v):
    """<g, v> = sum(g * v) as a Python float, on the array module of g (v is moved there)."""
    xp = backend.array_module_of(g)
    return _scalar((xp.asarray(g) * _like(v, g)).sum())


def _random_direction(params, seed):
    rng = backend.host_rng(seed)
    out = {}
    for k, v in params.items():
        xp = backend.array_module_of(v)
        d = rng.standard_normal(v.shape)
        out[k] = xp.asarray(d, dtype=v.dtype)
    return out


def directional_derivative(f, params, direction, h=None, order=4):
    """d/dt f(params + t v) at t = 0 by central differences, v = ``direction`` (mapping like params)."""
    where = "check.directional_derivative"
    _validate.callable_arg(f, "f", where, "f(params) -> scalar")
    _check_grads(params, direction, None, where, "direction")
    h, order = _step(h, where), _order(order, where)
    return _directional(f, params, direction, h, order, where)


def _directional(f, params, direction, h, order, where):
    dt = next(iter(params.values())).dtype
    h = default_step(dt, order) if h is None else h
    v = {k: _like(direction[k], params[k]) for k in params}
    return _central(lambda t: _scalar(f({k: params[k] + t * v[k] for k in params}), where), h,
                    order)


def dot_product_test(f, params, grads, seed=0, h=None, direction=None, order=4, tol=1e-7,
                     atol=None):
    """Random-direction test: relative error between <grads, v> and the central difference along v.

    Returns ``(rel_err, analytic, numeric)``. The direction is N(0, 1) per entry, seeded, unless
    given. The relative error has the finite-difference floor of :func:`fd_error`.
    """
    where = "check.dot_product_test"
    _validate.callable_arg(f, "f", where, "f(params) -> scalar")
    _check_grads(params, grads, None, where)
    if direction is not None:
        _check_grads(params, direction, None, where, "direction")
    h, order = _step(h, where), _order(order, where)
    tol = _validate.positive_real(tol, "tol", where)
    atol = None if atol is None else _validate.positive_real(atol, "atol", where)
    f0 = _scalar(f(params), where)
    v = _random_direction(params, seed) if direction is None else direction
    analytic = sum(_vdot(grads[k], v[k]) for k in params)
    numeric = _directional(f, params, v, h, order, where)
    err = fd_error(backend.np.array([analytic]), backend.np.array([numeric]), f0, tol,
                   atol, order, h)
    return err, analytic, numeric
