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

**Implicit solvers** (catalog row X-IMPL; ``solver="beuler"``/``"sdirk2"``): the discrete
sweep of an implicit step adds one transposed linear solve per stage,
(I - h A_ii J_i)^T w_i^T = Kbar_i^T, before the vjp at Z_i (eqs. I5-I8 of
:mod:`~manualgrad.ode.implicit`); the continuous adjoint solves each backward stage of the
block-triangular augmented system by Newton on z and a transposed solve on a. Both dispatch on
``tab.implicit`` to :mod:`~manualgrad.ode.implicit`.

**Continuous adjoint** (:func:`continuous_adjoint`, BW Theorem 1, eqs. (3), (8)-(11)): integrate
the augmented state [z, a, a_theta] backward from t1 to t0 with any solver,

    dz/dt = f(z, t, theta),   da/dt = -a df/dz,   da_theta/dt = -a df/dtheta,
    z(t1) = z1,   a(t1) = dL/dz(t1),   a_theta(t1) = 0,

so that dL/dtheta = a_theta(t0) = -int_{t1}^{t0} a df/dtheta dt and dL/dz0 = a(t0). z is
reconstructed backward, no forward trajectory is stored: memory does not grow with the number of
steps. It is the gradient of the exact flow up to the solver's error O(h^p) (it differs from the
discrete adjoint by that much; tests measure the order).

**Workspaces.** Both sweeps allocate their arrays once per call -- the recomputed stage states,
the stage adjoints, the augmented state and the solver's stages -- and the field writes into them
(``f_into``/``vjp_into``). With ``workspace=`` (a :class:`~manualgrad.backend.Workspace`, or True
for the thread's default) those arrays are reused from call to call, so that a training loop
allocates nothing after its first step. What the functions return (a0, the gradients, z0 and,
with ``record=True``, the trajectories) is always the caller's own: a workspace holds only what
stays inside a call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .. import backend
from .._validate import float_array
from . import solvers as _solvers

__all__ = ["discrete_adjoint", "continuous_adjoint", "AdjointResult", "zeros_like_params",
           "discrete_sweep", "continuous_sweep"]


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


def discrete_adjoint(field, sol, theta, a1, workspace=True):
    """Reverse-mode gradient of the computed solution ``sol`` (solved with ``record=True``).

    Parameters
    ----------
    field : the vector field ``sol`` was computed with (``f`` and ``vjp``; ``f_into`` and
        ``vjp_into`` when it has them).
    sol : :class:`~manualgrad.ode.solvers.Solution` with ``sol.zs`` (record=True).
    theta : the parameters ``sol`` was computed with.
    a1 : (B, n) dL/dz(t1), rows are examples.
    workspace : where the recomputed stage states, the stage adjoints and the temporaries live
        between calls (a :class:`~manualgrad.backend.Workspace`; True: the calling thread's
        default; False: fresh arrays). a0 and grads are always the caller's own arrays; the
        numbers are bit for bit the same either way.

    Returns ``(a0, grads)``: a0 = dL/dz0 (B, n) and grads = {name: dL/dtheta[name]} for every
    key of theta (exact zeros for parameters f does not use). Exact up to round-off: checked
    against central differences of the solve to < 1e-7 relative error. For dopri5 the accepted
    step sizes are constants (the gradient of the replayed grid ``odeint_grid(.., sol.ts, ..)``).
    Cost: per step s - 1 evaluations of f (to recompute the stage states) and s of vjp.
    Raises FloatingPointError, naming the backward step, when the adjoint or a gradient is no
    longer finite (:func:`discrete_sweep`).
    """
    with backend.workspace_scope(workspace) as ws:
        a0, grads = discrete_sweep(field, sol, theta, a1, ws)
        return _solvers.fresh(a0, ws), grads


def discrete_sweep(field, sol, theta, a1, ws=None):
    """:func:`discrete_adjoint` as the engine calls it, with its arrays in workspace ``ws`` (None:
    fresh): the returned a0 is then a workspace buffer (copy it, :func:`~.solvers.fresh`, before
    returning it); grads are always new arrays.

    Raises FloatingPointError when the adjoint or a gradient is no longer finite (NaN or Inf)
    at the end of the sweep, naming the backward step where it happened (one reduction per
    array per sweep; the step is found by a re-run, the error path). The forward states were
    finite (the solve checks them): the adjoint, which grows backward as the state grows
    forward, overflowed.
    """
    with backend.errstate(over="ignore", invalid="ignore"):  # non-finite results raise below
        a0, grads = _sweep(field, sol, theta, a1, ws)
        if not _solvers.all_finite([a0] + list(grads.values())):
            _sweep(field, sol, theta, a1, None, locate=True)
    return a0, grads


def _sweep(field, sol, theta, a1, ws=None, locate=False):
    """The reverse sweep of :func:`discrete_sweep`; ``locate``: check a and the gradients after
    every step and raise FloatingPointError at the first that is not finite (the error path)."""
    if not isinstance(sol, _solvers.Solution):
        raise TypeError("sol must be a Solution from odeint/odeint_grid, got %s"
                        % type(sol).__name__)
    if sol.zs is None:
        raise ValueError("discrete_adjoint needs the stored states sol.zs: solve with "
                         "record=True (or use continuous_adjoint, which stores nothing)")
    tab = sol.tableau if sol.tableau is not None else _solvers.get_solver(sol.solver)
    check = getattr(field, "check", None)
    if callable(check):
        theta = check(theta, sol.zs[0])
    a1 = _check_cotangent(a1, sol.z1)
    grads = zeros_like_params(theta)  # the result: dL/dtheta accumulates here
    if tab.implicit:  # X-IMPL: a transposed linear solve per stage (implicit.py, eqs. I5-I8)
        from . import implicit as _implicit
        return _implicit.sweep(field, sol, theta, a1, tab, grads, locate)
    s = tab.prop_stages
    A, b, c = tab.A, tab.b, tab.c
    xp = backend.xp()
    ws = _solvers.scratch_of(ws)
    f_into, vjp_into = _solvers.f_into_of(field), _solvers.vjp_into_of(field)

    # the arrays of the sweep, (B, n) rows of one block: the stage states Z_2..Z_s (Z_1 = z,
    # the recorded state), K_1..K_{s-1} (K_s is not needed), the stage adjoints Zbar_1..Zbar_s,
    # Kbar_i and one term of its sum, and dL/dz_{k+1}, dL/dz_k (they alternate)
    rows = iter(backend.empty((3 * s + 2,) + tuple(a1.shape), a1.dtype, ws, "ode.dadj.rows"))
    Zs = [next(rows) for _ in range(s - 1)]
    Ks = [next(rows) for _ in range(s - 1)]
    Zbars = [next(rows) for _ in range(s)]
    kbar, term = next(rows), next(rows)
    abars = (next(rows), next(rows))
    g_stage = dict(zip(theta, _solvers.Layout(list(theta.values())).new(
        ws, "ode.dadj.g").parts))  # the theta-gradients of one vjp
    a = abars[0]
    a[...] = a1
    for step, k in enumerate(range(sol.steps - 1, -1, -1)):
        t, h, z = sol.ts[k], sol.ts[k + 1] - sol.ts[k], sol.zs[k]
        # recompute the stage states Z_1..Z_s (Z_1 = z); K_s itself is not needed
        Z = [z] + Zs
        for i in range(1, s):
            f_into(t + c[i - 1] * h, Z[i - 1], theta, Ks[i - 1], ws)
            _solvers.lincomb(Z[i], z, h, A[i], Ks[:i], term)
        Zbar = [None] * s
        a_in, a = a, abars[(step + 1) % 2]  # abar' = dL/dz_{k+1}; abar = dL/dz_k
        a[...] = a_in
        for i in range(s - 1, -1, -1):
            # Kbar_i = h (b_i abar' + sum_{l>i} A_li Zbar_l)
            kb = None
            if b[i] != 0:
                kb = xp.multiply(a_in, h * b[i], out=kbar)
            for l in range(i + 1, s):
                w = A[l][i]
                if w != 0 and Zbar[l] is not None:
                    if kb is None:
                        kb = xp.multiply(Zbar[l], h * w, out=kbar)
                    else:
                        kb += xp.multiply(Zbar[l], h * w, out=term)
            if kb is None:  # stage i influences nothing (not so in the registry's tableaux)
                continue
            Zbar[i], g = vjp_into(t + c[i] * h, Z[i], theta, kb, Zbars[i], g_stage, ws)
            _accumulate(grads, g)
            a += Zbar[i]
        if locate and not _solvers.all_finite([a] + list(grads.values())):
            bad = "the adjoint dL/dz" if not _solvers.all_finite([a]) else "a parameter gradient"
            raise FloatingPointError(
                "discrete_adjoint: %s became non-finite (NaN or Inf) in the backward step from "
                "t=%r to t=%r (step %d of %d) of %s with h=%.3g, although the forward states "
                "are finite: the adjoint grows backward as fast as the state grows forward and "
                "overflows; use a smaller step (more steps), a shorter interval or smaller "
                "weights" % (bad, sol.ts[k + 1], sol.ts[k], k + 1, sol.steps, sol.solver, h))
    if locate:
        raise FloatingPointError("discrete_adjoint: non-finite adjoint or gradient (could not be "
                                 "located on a re-run)")
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
                       rtol=1e-6, atol=1e-8, max_steps=10_000, first_step=None, record=False,
                       workspace=True):
    """BW Theorem 1: integrate [z, a, a_theta] backward from t1 to t0; no stored trajectory.

    Parameters
    ----------
    field : vector field (``f`` and ``vjp``; ``f_into`` and ``vjp_into`` when it has them).
    z1 : (B, n) the state at t1 (from the forward solve).
    theta : parameter mapping.
    a1 : (B, n) dL/dz(t1).
    t0, t1 : host floats, t1 > t0; the backward solve runs from t1 to t0.
    solver, steps, h, rtol, atol, max_steps, first_step : as in
        :func:`~manualgrad.ode.solvers.odeint` (fixed-step grid t_k = t0 + (t1-t0) k/N, walked
        from t1 down; dopri5 controls the error of all components of the augmented state).
    record : keep a and z at every backward grid time (``res.as_``, ``res.zs``).
    workspace : where the augmented state, the solver's stages and the field's temporaries live
        between calls (a :class:`~manualgrad.backend.Workspace`; True: the calling thread's
        default; False: fresh arrays). The result's arrays are always the caller's own; with
        ``record=True`` (a trajectory the caller asked for) no workspace is used at all. The
        numbers are bit for bit the same either way.

    Returns an :class:`AdjointResult`: ``a0`` = dL/dz0, ``grads`` = dL/dtheta (BW eq. (11)),
    ``z0`` reconstructed, NFE counts. Memory: the augmented state and the solver's stages,
    independent of the number of steps (with record=False).
    """
    with backend.workspace_scope(False if record else workspace) as ws:
        res = continuous_sweep(field, z1, theta, a1, t0, t1, solver, steps, h, rtol, atol,
                               max_steps, first_step, record, ws)
        res.a0, res.z0 = _solvers.fresh(res.a0, ws), _solvers.fresh(res.z0, ws)
        res.grads = {k: _solvers.fresh(v, ws) for k, v in res.grads.items()}
        return res


def continuous_sweep(field, z1, theta, a1, t0, t1, solver="rk4", steps=None, h=None,
                     rtol=1e-6, atol=1e-8, max_steps=10_000, first_step=None, record=False,
                     ws=None):
    """:func:`continuous_adjoint` as the engine calls it, with its arrays in workspace ``ws``
    (None: fresh): a0, grads and z0 of the result are then workspace buffers (copy what you
    return, :func:`~.solvers.fresh`). A non-finite augmented state raises FloatingPointError
    as every solve does (:mod:`~manualgrad.ode.solvers`)."""
    tab = _solvers.get_solver(solver)
    t0, t1 = _solvers.check_interval(t0, t1, "continuous_adjoint")
    z1, theta = _solvers.check_problem(field, z1, theta)
    a1 = _check_cotangent(a1, z1)
    keys = list(theta.keys())
    counted = _solvers.Counted(field)
    f_into, vjp_into = counted.f_into, counted.vjp_into
    xp = backend.xp()

    def fun(t, y, out, ws):
        """The augmented dynamics (dz/dt, da/dt, da_theta/dt) = (f, -a df/dz, -a df/dtheta),
        written into the state tuple ``out``; the field's temporaries from ``ws``."""
        z, a = y[0], y[1]
        f_into(t, z, theta, out[0], ws)
        az, ath = vjp_into(t, z, theta, a, out[1], dict(zip(keys, out[2:])), ws)
        extra = [k for k in ath if k not in theta]
        if extra:
            raise ValueError("field.vjp returned gradients for %s, not keys of theta" % extra)
        xp.negative(az, out=out[1])
        for k, o in zip(keys, out[2:]):
            xp.negative(ath[k], out=o)
        return out

    a_theta1 = _solvers.Layout(list(theta.values())).new(ws, "ode.adj.a_theta1")
    for flat in a_theta1.flats:
        flat.fill(0)  # a_theta(t1) = 0
    y1 = (z1, a1) + a_theta1.parts
    grid, rtol, atol, max_steps, first_step = _solvers.solve_settings(
        tab, t0, t1, steps, h, rtol, atol, max_steps, first_step)
    if tab.implicit:  # X-IMPL: Newton on z, a transposed solve on a (implicit.py)
        from . import implicit as _implicit
        y, ts, ys, acc, rej = _implicit.augmented_backward(counted, z1, a1, theta, tab,
                                                           grid[::-1], record)
    else:
        y, ts, ys, _, acc, rej = _solvers.integrate_into(
            fun, y1, tab, None if grid is None else grid[::-1], t1, t0, rtol, atol, max_steps,
            first_step, record, "continuous_adjoint (backward from t1 to t0)", ws, "ode.adj",
            diagnose=_solvers.stall_diagnosis(field, theta))
    grads = {k: y[2 + i] for i, k in enumerate(keys)}
    return AdjointResult(
        a0=y[1], grads=grads, z0=y[0], nfe=counted.nfe, nvjp=counted.nvjp, steps=acc,
        rejected=rej, ts=ts, as_=None if ys is None else [s[1] for s in ys],
        zs=None if ys is None else [s[0] for s in ys])
