"""Gradients of an ODE solve two ways: the discrete adjoint and the continuous one (BW Theorem 1).

Both work for any vector field with the protocol of :mod:`manualgrad.ode` (``f`` and ``vjp``);
row-vector convention as in BW's proof: the adjoint a(t) = dL/dz(t) is a row, a (B, n) for a
batch, and ``field.vjp(t, z, theta, a)`` returns a df/dz (B, n) and the batch sums of
a df/dtheta.

**Discrete adjoint** (:func:`discrete_adjoint`): the exact gradient of the *computed* solution,
reverse mode through the solver's own steps. One explicit RK step (see solvers.py) is

    Z_i = z + h sum_{j<i} A_ij K_j,   K_i = f(t + c_i h, Z_i),   z' = z + h sum_i b_i K_i.

Given abar' = dL/dz' its reverse, for i = s..1 (later stages first), is

    Kbar_i = h (b_i abar' + sum_{l>i} A_li Zbar_l)
    (Zbar_i, thetabar_i) = vjp(t + c_i h, Z_i, theta, Kbar_i)
    abar = abar' + sum_i Zbar_i,        dL/dtheta += sum_i thetabar_i.

The stage states Z_i are recomputed from the stored step-start state z (s - 1 evaluations of f
per step); so the backward pass needs ``sol.zs``, i.e. memory that grows with the number of
steps. For the adaptive dopri5 the accepted step sizes are held fixed (constants, not functions
of theta and z0): the result is the exact gradient of ``odeint_grid(field, z0, theta, sol.ts,
"dopri5")``, the replay of the accepted grid, which the tests check by finite differences. (The
step-size controller is piecewise smooth in the inputs through its error estimates; its
derivative is ignored, as in every adjoint method for adaptive solvers.)

**Continuous adjoint** (:func:`continuous_adjoint`, BW Theorem 1, eqs. (3), (8)-(11)): integrate
the augmented state [z, a, a_theta] backward from t1 to t0 with any solver,

    dz/dt = f(z, t, theta),   da/dt = -a df/dz,   da_theta/dt = -a df/dtheta,
    z(t1) = z1,   a(t1) = dL/dz(t1),   a_theta(t1) = 0,

so that dL/dtheta = a_theta(t0) = -int_{t1}^{t0} a df/dtheta dt and dL/dz0 = a(t0). z is
reconstructed backward, no forward trajectory is stored: memory does not grow with the number of
steps. It is the gradient of the exact flow up to the solver's error O(h^p) (it differs from the
discrete adjoint by that much; tests measure the order).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .. import backend
from .._validate import float_array, integer, number
from . import solvers as _solvers

__all__ = ["discrete_adjoint", "continuous_adjoint", "AdjointResult", "zeros_like_params"]


def zeros_like_params(theta):
    """{name: zeros of theta[name]'s shape and dtype} on the active backend.

    Also for entries a field's ``check`` passes through unchanged (host arrays of keys the field
    does not use): their exact-zero gradients must live on the backend with the others.
    """
    xp = backend.xp()
    return {k: xp.zeros(tuple(v.shape), dtype=v.dtype) for k, v in theta.items()}


def _check_cotangent(a1, z1, name="a1"):
    a1 = float_array(a1, name, ndim=2, axes=("B", "n"))
    if tuple(a1.shape) != tuple(z1.shape):
        raise ValueError("%s must have the shape of the final state z1 %s (B, n), got %s"
                         % (name, tuple(z1.shape), tuple(a1.shape)))
    return a1


def _accumulate(grads, g):
    for k, v in g.items():
        if k not in grads:
            raise ValueError("field.vjp returned a gradient for %r, which is not a key of theta "
                             "(keys %s)" % (k, ", ".join(map(str, grads))))
        grads[k] += v


def discrete_adjoint(field, sol, theta, a1):
    """Reverse-mode gradient of the computed solution ``sol`` (solved with ``record=True``).

    Parameters
    ----------
    field : the vector field ``sol`` was computed with (``f`` and ``vjp``).
    sol : :class:`~manualgrad.ode.solvers.Solution` with ``sol.zs`` (record=True).
    theta : the parameters ``sol`` was computed with.
    a1 : (B, n) dL/dz(t1), rows are examples.

    Returns ``(a0, grads)``: a0 = dL/dz0 (B, n) and grads = {name: dL/dtheta[name]} for every
    key of theta (exact zeros for parameters f does not use). Exact up to round-off: checked
    against central differences of the solve to < 1e-7 relative error. For dopri5 the accepted
    step sizes are constants (the gradient of the replayed grid ``odeint_grid(.., sol.ts, ..)``).
    Cost: per step s - 1 evaluations of f (to recompute the stage states) and s of vjp.
    """
    if not isinstance(sol, _solvers.Solution):
        raise TypeError("sol must be a Solution from odeint/odeint_grid, got %s"
                        % type(sol).__name__)
    if sol.zs is None:
        raise ValueError("discrete_adjoint needs the stored states sol.zs: solve with "
                         "record=True (or use continuous_adjoint, which stores nothing)")
    tab = _solvers.get_solver(sol.solver)
    check = getattr(field, "check", None)
    if callable(check):
        theta = check(theta, sol.zs[0])
    a = _check_cotangent(a1, sol.z1).copy()
    grads = zeros_like_params(theta)
    s = tab.prop_stages
    A, b, c = tab.A, tab.b, tab.c
    ts = sol.ts
    for k in range(sol.steps - 1, -1, -1):
        t, h, z = ts[k], ts[k + 1] - ts[k], sol.zs[k]
        # recompute the stage states Z_1..Z_s (Z_1 = z); K_s itself is not needed
        Z, K = [z], []
        for i in range(1, s):
            K.append(field.f(t + c[i - 1] * h, Z[i - 1], theta))
            Z.append(_solvers._combo((z,), h, A[i], [(kk,) for kk in K])[0])
        Zbar = [None] * s
        a_in = a  # abar' = dL/dz_{k+1}
        a = a_in.copy()
        for i in range(s - 1, -1, -1):
            kbar = None
            if b[i] != 0:
                kbar = a_in * (h * b[i])
            for l in range(i + 1, s):
                w = A[l][i]
                if w != 0 and Zbar[l] is not None:
                    term = Zbar[l] * (h * w)
                    if kbar is None:
                        kbar = term
                    else:
                        kbar += term
            if kbar is None:  # stage i influences nothing (not so in the registry's tableaux)
                continue
            Zbar[i], g = field.vjp(t + c[i] * h, Z[i], theta, kbar)
            _accumulate(grads, g)
            a += Zbar[i]
    return a, grads


@dataclass
class AdjointResult:
    """The result of :func:`continuous_adjoint` (arrays on the backend, times on the host).

    a0 (B, n): dL/dz(t0).  grads: {name: dL/dtheta[name]} = a_theta(t0).  z0 (B, n): the
    initial state reconstructed by the backward solve (compare with the true z0 to see the
    reconstruction error).  nfe, nvjp: calls of f and vjp (one each per evaluation of the
    augmented dynamics).  steps, rejected: backward steps.  ts: host list of the backward grid
    times, from t1 down to t0.  as_, zs: a and z at ``ts`` (lists of (B, n)) when
    ``record=True``, else None.
    """

    a0: object
    grads: dict
    z0: object
    nfe: int
    nvjp: int
    steps: int
    rejected: int
    ts: list
    as_: Optional[list] = None
    zs: Optional[list] = None


def continuous_adjoint(field, z1, theta, a1, t0, t1, solver="rk4", steps=None, h=None,
                       rtol=1e-6, atol=1e-8, max_steps=10_000, first_step=None, record=False):
    """BW Theorem 1: integrate [z, a, a_theta] backward from t1 to t0; no stored trajectory.

    Parameters
    ----------
    field : vector field (``f`` and ``vjp``).
    z1 : (B, n) the state at t1 (from the forward solve).
    theta : parameter mapping.
    a1 : (B, n) dL/dz(t1).
    t0, t1 : host floats, t1 > t0; the backward solve runs from t1 to t0.
    solver, steps, h, rtol, atol, max_steps, first_step : as in
        :func:`~manualgrad.ode.solvers.odeint` (fixed-step grid t_k = t0 + (t1-t0) k/N, walked
        from t1 down; dopri5 controls the error of all components of the augmented state).
    record : keep a and z at every backward grid time (``res.as_``, ``res.zs``).

    Returns an :class:`AdjointResult`: ``a0`` = dL/dz0, ``grads`` = dL/dtheta (BW eq. (11)),
    ``z0`` reconstructed, NFE counts. Memory: the augmented state and the solver's stages,
    independent of the number of steps (with record=False).
    """
    tab = _solvers.get_solver(solver)
    t0, t1 = _solvers.check_interval(t0, t1, "continuous_adjoint")
    z1, theta = _solvers._prepare(field, z1, theta)
    a1 = _check_cotangent(a1, z1)
    keys = list(theta.keys())
    counted = _solvers.Counted(field)
    shape = tuple(z1.shape)

    def fun(t, y):
        z, a = y[0], y[1]
        dz = counted.f(t, z, theta)
        if tuple(getattr(dz, "shape", ())) != shape:
            raise ValueError("field.f returned shape %s, expected the state's shape %s"
                             % (tuple(getattr(dz, "shape", ())), shape))
        az, ath = counted.vjp(t, z, theta, a)
        extra = [k for k in ath if k not in theta]
        if extra:
            raise ValueError("field.vjp returned gradients for %s, not keys of theta" % extra)
        return (dz, -az) + tuple(-ath[k] for k in keys)

    zeros = zeros_like_params(theta)  # a_theta(t1) = 0
    y1 = (z1, a1) + tuple(zeros[k] for k in keys)
    if tab.adaptive:
        if steps is not None or h is not None:
            raise ValueError("solver %r is adaptive (rtol/atol error control): steps=/h= are not "
                             "accepted (got steps=%r, h=%r)" % (tab.name, steps, h))
        rtol = number(rtol, "rtol", positive=True)
        atol = number(atol, "atol", positive=True)
        max_steps = integer(max_steps, "max_steps", minimum=1)
        first_step = number(first_step, "first_step", positive=True, allow_none=True)
        y, ts, ys, _, acc, rej = _solvers.integrate(
            fun, y1, tab, None, t1, t0, rtol, atol, max_steps, first_step, record,
            what="continuous_adjoint (backward from t1 to t0)")
    else:
        grid = _solvers.fixed_grid(t0, t1, steps, h, tab.name)[::-1]
        y, ts, ys, _, acc, rej = _solvers.integrate(
            fun, y1, tab, grid, record=record, what="continuous_adjoint (backward from t1 to t0)")
    grads = {k: y[2 + i] for i, k in enumerate(keys)}
    return AdjointResult(
        a0=y[1], grads=grads, z0=y[0], nfe=counted.nfe, nvjp=counted.nvjp, steps=acc,
        rejected=rej, ts=ts, as_=None if ys is None else [s[1] for s in ys],
        zs=None if ys is None else [s[0] for s in ys])
