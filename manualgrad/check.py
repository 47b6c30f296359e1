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
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import backend

__all__ = ["rel_error", "fd_error", "fd_atol", "default_step", "numerical_gradient", "numerical_gradients",
           "GradientReport", "gradients", "directional_derivative", "dot_product_test",
           "assert_gradients", "TOLERANCES"]

TOLERANCES = {"float64": 1e-7, "float32": 2e-2}
"""Relative-error tolerances for gradient checks, keyed by dtype name (float32 is a smoke test)."""


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
    h = default_step(dtype, order) if h is None else float(h)
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


def _scalar(v):
    try:
        return float(v)
    except TypeError:
        return float(backend.to_numpy(v))


def numerical_gradient(f, x, h=None, index=None, order=4):
    """Central-difference gradient of the scalar function ``f`` at array ``x`` (same shape as x).

    ``x`` is perturbed in place one entry at a time and restored. ``index``: optional iterable of
    flat indices to differentiate (the others are left 0), for spot checks of large arrays.
    """
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
            return _scalar(f())

        gflat[i] = _central(f_at, h0 * max(1.0, abs(old)), order)
        flat[i] = old
    return g


def numerical_gradients(f, params, h=None, names=None, order=4):
    """Central-difference gradient of ``f(params)`` for each array in the mapping ``params``.

    Works on copies: ``params`` itself is not modified. Returns a dict of float64 arrays.
    """
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
    num = numerical_gradients(f, params, h, names, order)
    if tol is None:
        dt = next(iter(params.values())).dtype
        tol = TOLERANCES.get(backend.np.dtype(dt).name, 1e-7)
    f0 = f(params)
    dt = next(iter(params.values())).dtype
    if atol is None:
        atol = fd_atol(f0, order, h, dt if h is None else "float64")
    return GradientReport({k: fd_error(grads[k], num[k], f0, tol, atol) for k in num}, tol)


def assert_gradients(f, params, grads, h=None, tol=None, names=None, order=4, atol=None):
    """Raise ``AssertionError`` with the per-parameter table if any relative error is >= tol."""
    rep = gradients(f, params, grads, h, tol, names, order, atol)
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
    dt = next(iter(params.values())).dtype
    h = default_step(dt, order) if h is None else float(h)
    v = {k: _like(direction[k], params[k]) for k in params}
    return _central(lambda t: _scalar(f({k: params[k] + t * v[k] for k in params})), h, order)


def dot_product_test(f, params, grads, seed=0, h=None, direction=None, order=4, tol=1e-7,
                     atol=None):
    """Random-direction test: relative error between <grads, v> and the central difference along v.

    Returns ``(rel_err, analytic, numeric)``. The direction is N(0, 1) per entry, seeded, unless
    given. The relative error has the finite-difference floor of :func:`fd_error`.
    """
    v = _random_direction(params, seed) if direction is None else direction
    analytic = sum(_vdot(grads[k], v[k]) for k in params)
    numeric = directional_derivative(f, params, v, h, order)
    err = fd_error(backend.np.array([analytic]), backend.np.array([numeric]), f(params), tol,
                   atol, order, h)
    return err, analytic, numeric
