"""Implicit Runge-Kutta steps for stiff fields, Newton on each stage, and their exact adjoints.

Catalog row X-IMPL (docs/ode.md, "Implicit solvers for stiff fields"). The methods are the
diagonally implicit tableaux of :data:`manualgrad.ode.solvers.IMPLICIT` (:class:`~manualgrad.
ode.solvers.DIRK`): ``beuler`` (backward Euler, order 1) and ``sdirk2`` (Alexander's 2-stage
SDIRK, gamma = 1 - 1/sqrt(2), order 2); both L-stable and stiffly accurate. One step from
(t, z) with step size h, stage by stage (i = 1..s), with g_i = h A_ii::

    r_i = z + h sum_{j<i} A_ij K_j                                  (B, n)   (I1)
    Z_i = r_i + g_i f(t_i, Z_i),   t_i = t + c_i h,   K_i = f(t_i, Z_i)      (I2)
    z'  = z + h sum_i b_i K_i      (= Z_s: stiffly accurate)                 (I3)

**Newton** on G(Z) = Z - r_i - g_i f(t_i, Z) = 0 (I2): with J = df/dz (B, n, n) the field's
Jacobian in closed form (``field.jac(t, z, theta)``, column convention J[b, p, q] = df_p/dz_q),

    (I - g_i J(Z^m)) dZ = G(Z^m),   Z^{m+1} = Z^m - dZ                          (I4)

one batched linear solve per iteration (``xp.linalg.solve`` on (B, n, n)), damped per example
by a backtracking line search on ||G_b||_inf (alpha = 1, 1/2, ...), starting from
Z^0 = r_i + g_i K_{i-1} (Z^0 = z for the first stage), until the residual is at round-off:
max_b ||G_b||_inf / ||(|Z| + |r_i| + |g_i K|)_b||_inf <= ``tab.newton_tol`` (1e-12). The
iteration count is bounded (``tab.newton_max_iter``): no hang. A Newton that does not converge,
a non-finite residual, or a singular iteration matrix I - g_i J raises FloatingPointError naming
t, the step, the stage and the residual.

**Exact discrete adjoint through a step** (the gradient of the computed solution, for
``method="discrete"``). By the implicit function theorem on (I2), dK_i = (I - g_i J_i)^{-1}
(J_i dr_i + f_theta dtheta). So, given abar' = dL/dz' (rows), for i = s..1::

    Kbar_i = h (b_i abar' + sum_{l>i} A_li Zbar_l)                         (I5)
    w_i    = Kbar_i (I - g_i J_i)^{-1}:  solve (I - g_i J_i)^T w_i^T = Kbar_i^T   (I6)
    (Zbar_i, thetabar_i) = vjp(t_i, Z_i, theta, w_i)  = (w_i J_i, w_i f_theta)    (I7)
    abar = abar' + sum_i Zbar_i,      dL/dtheta += sum_i thetabar_i               (I8)

the explicit RK reverse step (adjoint.py) with one transposed linear solve per stage (I6). The
stage states are recomputed from the stored step start (the same Newton, bit for bit).

**Continuous adjoint with an implicit solver** (``method="continuous"``): the augmented system
[z, a, a_theta]' = [f, -a J, -a f_theta] is block lower triangular, so each DIRK stage is solved
exactly in three moves: Z_i by Newton (I4); the adjoint stage, linear in a,
Y_i (I + g_i J_i) = r^a_i (a transposed solve), K^a_i = -Y_i J_i and K^theta_i = -Y_i f_theta
(one vjp at (Z_i, Y_i)).

**Diagnostics**: :func:`stiffness` gives BW's stiffness ratio (BW-STIFF: largest over smallest
|eigenvalue|) of the field's Jacobian at a state, which an adaptive solve that stalls reports
(:class:`~manualgrad.ode.solvers.SolverStalled`). :func:`stiff_comparison` measures the steps
dopri5 and the implicit solvers need on a stiff problem at the same accuracy.
"""
from __future__ import annotations

import math

from .. import backend
from . import adjoint as _adjoint
from . import solvers as _solvers

__all__ = ["has_jacobian", "require_jacobian", "jacobian", "newton_stage", "dirk_step", "integrate", "step_adjoint", "sweep",
           "augmented_backward", "stiffness", "stiff_comparison", "format_comparison"]


# ============================================================================ the Jacobian
def has_jacobian(field):
    return callable(getattr(field, "jac", None))


def require_jacobian(field, solver):
    """TypeError when ``field`` has no ``jac(t, z, theta)`` (an implicit solver needs it)."""
    if not has_jacobian(field):
        name = type(getattr(field, "field", field)).__name__
        raise TypeError("implicit solver %r needs the field's Jacobian jac(t, z, theta) -> "
                        "(B, n, n) for its Newton iterations; %s has no jac (use an explicit "
                        "solver, or add jac)" % (solver, name))


def jacobian(field, t, z, theta):
    """J = df/dz at (t, z), (B, n, n) with J[b, p, q] = df_p/dz_q (``field.jac``), shape checked."""
    J = field.jac(t, z, theta)
    B, n = z.shape
    if tuple(getattr(J, "shape", ())) != (B, n, n):
        raise ValueError("field.jac returned shape %s, expected (B, n, n) = (%d, %d, %d)"
                         % (tuple(getattr(J, "shape", ())), B, n, n))
    return J


def _solve(M, rhs, transpose, where, residual):
    """x with M x = rhs per example (M (B, n, n), rhs (B, n)), or M^T x = rhs; a singular or
    non-finite result raises FloatingPointError naming ``where`` and the Newton ``residual``."""
    xp = backend.xp()
    if transpose:
        M = xp.swapaxes(M, 1, 2)
    try:
        x = xp.linalg.solve(M, rhs[:, :, None])[:, :, 0]
    except Exception as e:  # noqa: BLE001 -- NumPy's LinAlgError ("Singular matrix")
        if type(e).__name__ != "LinAlgError":
            raise
        x = None
    if x is None or not _solvers.all_finite([x]):
        raise FloatingPointError(
            "%s: the iteration matrix I - h a_ii J is singular (or the solve overflowed)%s. "
            "h a_ii hits 1/lambda for an eigenvalue lambda of the field's Jacobian J (or J is "
            "not finite): use a different step size (steps=N)"
            % (where, "" if residual is None else "; Newton residual %.3g" % residual))
    return x


# ============================================================================ Newton, one stage
def _residual(field, t, Z, r, g, theta):
    """K = f(t, Z), G = Z - r - g K (eq. I2), and per example ||G_b||_inf and the relative
    residual ||G_b||_inf / ||(|Z| + |r| + |g K|)_b||_inf, (B,) each."""
    xp = backend.xp()
    K = field.f(t, Z, theta)
    G = Z - r - g * K
    size = xp.abs(G).max(axis=1)
    scale = (xp.abs(Z) + xp.abs(r) + abs(g) * xp.abs(K)).max(axis=1)
    return K, G, size, size / (scale + 1e-300)


def newton_stage(field, t, r, g, theta, Z0, tab, where="newton"):
    """Solve Z = r + g f(t, Z) (eq. I2) by Newton's method (I4) with a backtracking line search;
    returns (Z, K = f(t, Z), nfe, iterations). r, Z0 (B, n); g = h A_ii (host float).

    Each iteration solves (I - g J(Z)) dZ = G(Z) and tries Z - alpha dZ with alpha = 1, 1/2,
    1/4, ... per example until ||G_b||_inf decreases by the factor 1 - 1e-4 alpha (at most 30
    halvings): the full Newton step near the solution (quadratic convergence), a damped one far
    from it (a saturating field, tanh with h a_ii |J| in the hundreds, makes the full step
    overshoot and cycle). Converged when the relative residual is at round-off
    (``tab.newton_tol``); FloatingPointError after ``tab.newton_max_iter`` iterations, on a
    non-finite residual, or a singular iteration matrix. The iterates are a deterministic
    function of the inputs, so the adjoint's recomputation reproduces them bit for bit."""
    xp = backend.xp()
    Z = Z0.copy()
    eye = xp.eye(Z.shape[1], dtype=Z.dtype)
    K, G, size, rel = _residual(field, t, Z, r, g, theta)
    nfe = 1
    for it in range(tab.newton_max_iter + 1):
        res = float(rel.max())
        if res <= tab.newton_tol:
            return Z, K, nfe, it
        if not math.isfinite(res):
            raise FloatingPointError(
                "%s: the state became non-finite (NaN or Inf) in Newton iteration %d at t=%r "
                "(residual %r): the field blows up; use a smaller step (more steps)"
                % (where, it, t, res))
        if it == tab.newton_max_iter:
            raise FloatingPointError(
                "%s: Newton did not converge in newton_max_iter=%d iterations at t=%r (relative "
                "residual %.3g > newton_tol=%.3g): the stage equation may have no solution (a "
                "field expanding faster than 1/(h a_ii)) or the step is too large for the "
                "field's nonlinearity; use a smaller step (more steps), or change the settings "
                "with dataclasses.replace(solvers.IMPLICIT[%r], newton_tol=..., "
                "newton_max_iter=...)" % (where, tab.newton_max_iter, t, res, tab.newton_tol,
                                          tab.name))
        M = eye - g * jacobian(field, t, Z, theta)  # I - g J(Z^m)
        dZ = _solve(M, G, False, "%s at t=%r (Newton iteration %d)" % (where, t, it + 1), res)
        alpha = xp.ones(size.shape, dtype=Z.dtype)
        for _ in range(31):
            Zt = Z - alpha[:, None] * dZ  # (I4), damped per example
            Kt, Gt, size_t, rel_t = _residual(field, t, Zt, r, g, theta)
            nfe += 1
            bad = ~((size_t <= (1 - 1e-4 * alpha) * size) | (rel_t <= tab.newton_tol))
            if not bool(bad.any()):
                break
            alpha = xp.where(bad, 0.5 * alpha, alpha)
        Z, K, G, size, rel = Zt, Kt, Gt, size_t, rel_t
    raise AssertionError("unreachable")


# ============================================================================ one DIRK step
def dirk_step(field, t, z, h, theta, tab, where="dirk"):
    """One step (I1)-(I3) from (t, z) with step size h. Returns (z', Zs, Ks, nfe, iterations):
    the stage states Z_i and derivatives K_i (lists of (B, n)), f calls, Newton iterations."""
    xp = backend.xp()
    Zs, Ks, nfe, iters = [], [], 0, 0
    for i in range(tab.stages):
        r = z.copy()
        for j in range(i):
            if tab.A[i][j] != 0:
                r += (h * tab.A[i][j]) * Ks[j]  # (I1)
        g = h * tab.A[i][i]
        Z0 = z if i == 0 else r + g * Ks[-1]
        Z, K, n, it = newton_stage(field, t + tab.c[i] * h, r, g, theta, Z0, tab,
                                   "%s, stage %d of %d" % (where, i + 1, tab.stages))
        Zs.append(Z)
        Ks.append(K)
        nfe, iters = nfe + n, iters + it
    if tab.stiffly_accurate:
        z_new = Zs[-1]  # (I3): b = the last row of A
    else:
        z_new = z.copy()
        for i in range(tab.stages):
            z_new += (h * tab.b[i]) * Ks[i]
    return xp.ascontiguousarray(z_new), Zs, Ks, nfe, iters


def _where(what, tab, k, N, t0, t1):
    return ("%s: implicit solver %s, step %d of %d (from t=%r to t=%r, h=%.3g)"
            % (what, tab.name, k + 1, N, t0, t1, t1 - t0))


def integrate(field, z0, theta, tab, ts, record=True, what="odeint"):
    """Fixed DIRK steps over the host grid ``ts``; the forward solve of :func:`solvers.solve`
    for an implicit solver. Returns ``((z_end,), ts, ys, nfe, steps, 0, newton_iterations)``,
    ys the list of state tuples at ts when ``record`` (else None)."""
    require_jacobian(field, tab.name)
    if not _solvers.all_finite([z0]):
        raise FloatingPointError("%s: the initial state at t=%r is not finite" % (what, ts[0]))
    N = len(ts) - 1
    z, ys, nfe, iters = z0, ([(z0,)] if record else None), 0, 0
    with backend.errstate(over="ignore", invalid="ignore"):  # non-finite residuals raise
        for k in range(N):
            z, _, _, n, it = dirk_step(field, ts[k], z, ts[k + 1] - ts[k], theta, tab,
                                       _where(what, tab, k, N, ts[k], ts[k + 1]))
            nfe, iters = nfe + n, iters + it
            if record:
                ys.append((z,))
    return (z,), list(ts), ys, nfe, N, 0, iters


# ============================================================================ the discrete adjoint
def step_adjoint(field, t, h, z, theta, tab, a_next, grads, where="dirk adjoint"):
    """dL/dz_k from dL/dz_{k+1} = ``a_next`` through one DIRK step from (t, z_k) (I5)-(I8);
    the parameter gradients are added into ``grads``. Returns (abar, nfe, nvjp)."""
    xp = backend.xp()
    _, Zs, _, nfe, _ = dirk_step(field, t, z, h, theta, tab, where)  # the same stages
    s = tab.stages
    eye = xp.eye(z.shape[1], dtype=z.dtype)
    Zbar = [None] * s
    a = a_next.copy()
    for i in range(s - 1, -1, -1):
        kbar = (h * tab.b[i]) * a_next  # (I5)
        for l in range(i + 1, s):
            if tab.A[l][i] != 0:
                kbar = kbar + (h * tab.A[l][i]) * Zbar[l]
        ti = t + tab.c[i] * h
        M = eye - (h * tab.A[i][i]) * jacobian(field, ti, Zs[i], theta)
        w = _solve(M, kbar, True, "%s, stage %d at t=%r" % (where, i + 1, ti), None)  # (I6)
        Zbar[i], g = field.vjp(ti, Zs[i], theta, w)  # (I7)
        _adjoint._accumulate(grads, g)
        a += Zbar[i]  # (I8)
    return a, nfe, s


def sweep(field, sol, theta, a1, tab, grads, locate=False):
    """The reverse sweep of :func:`~manualgrad.ode.adjoint.discrete_sweep` through the DIRK
    steps of ``sol`` (recorded): returns (dL/dz0, grads). ``locate``: check after every step and
    raise FloatingPointError at the first non-finite adjoint or gradient."""
    a = a1
    for k in range(sol.steps - 1, -1, -1):
        t, h = sol.ts[k], sol.ts[k + 1] - sol.ts[k]
        a, _, _ = step_adjoint(field, t, h, sol.zs[k], theta, tab, a, grads,
                               _where("discrete_adjoint", tab, k, sol.steps, t, sol.ts[k + 1]))
        if locate and not _solvers.all_finite([a] + list(grads.values())):
            raise FloatingPointError(
                "discrete_adjoint: the adjoint or a gradient became non-finite (NaN or Inf) in "
                "the backward step from t=%r to t=%r (step %d of %d) of %s with h=%.3g; use a "
                "smaller step (more steps), a shorter interval or smaller weights"
                % (sol.ts[k + 1], t, k + 1, sol.steps, tab.name, h))
    return a, grads


# ============================================================================ continuous adjoint
def augmented_backward(field, z1, a1, theta, tab, ts, record=False,
                       what="continuous_adjoint (backward from t1 to t0)"):
    """BW Theorem 1's augmented system [z, a, a_theta] integrated by the DIRK over the host grid
    ``ts`` (from t1 down to t0): each stage by Newton on z (I4), a transposed linear solve for
    the adjoint stage, and one vjp (module docstring). Returns ``(y, ts, ys, steps, 0)`` with
    y = (z, a, *a_theta in theta's order) and ys the list of such tuples when ``record``."""
    require_jacobian(field, tab.name)
    xp = backend.xp()
    keys = list(theta)
    z, a = z1, a1
    gs = [xp.zeros(tuple(theta[k].shape), dtype=theta[k].dtype) for k in keys]
    ys = [(z, a) + tuple(gs)] if record else None
    N, s = len(ts) - 1, tab.stages
    eye = xp.eye(z1.shape[1], dtype=z1.dtype)
    with backend.errstate(over="ignore", invalid="ignore"):
        for k in range(N):
            t, h = ts[k], ts[k + 1] - ts[k]
            where = _where(what, tab, k, N, t, ts[k + 1])
            z_new, Zs, _, _, _ = dirk_step(field, t, z, h, theta, tab, where)
            Kas, Kgs = [], []
            for i in range(s):
                ra = a.copy()
                for j in range(i):
                    if tab.A[i][j] != 0:
                        ra += (h * tab.A[i][j]) * Kas[j]
                ti = t + tab.c[i] * h
                M = eye + (h * tab.A[i][i]) * jacobian(field, ti, Zs[i], theta)
                Y = _solve(M, ra, True, "%s, adjoint stage %d at t=%r" % (where, i + 1, ti),
                           None)
                aJ, g = field.vjp(ti, Zs[i], theta, Y)  # Y J, Y f_theta
                Kas.append(-aJ)
                Kgs.append({kk: -g[kk] for kk in keys})
            a = a + sum((h * tab.b[i]) * Kas[i] for i in range(s))
            gs = [gk + sum((h * tab.b[i]) * Kgs[i][kk] for i in range(s))
                  for gk, kk in zip(gs, keys)]
            z = z_new
            if not _solvers.all_finite([a] + gs):
                raise FloatingPointError("%s: the augmented state became non-finite (NaN or Inf); "
                                         "use a smaller step (more steps)" % where)
            if record:
                ys.append((z, a) + tuple(gs))
    return (z, a) + tuple(gs), list(ts), ys, N, 0


# ============================================================================ diagnostics
def stiffness(field, t, z, theta):
    """BW's stiffness ratio (BW-STIFF: max |lambda| / min |lambda| over the eigenvalues of the
    Jacobian df/dz at (t, z); :func:`manualgrad.ode.linear.stiffness_ratio` per example) and the
    largest |lambda|, each the largest over the batch, and the largest real part of an
    eigenvalue (> 0: a growing mode): ``(ratio, lam_max, growth)`` host floats (ratio inf when
    an eigenvalue is 0). Host eigenvalues: a diagnostic, not engine math."""
    np = backend.np
    lam = np.linalg.eigvals(backend.to_numpy(jacobian(field, t, z, theta)))  # (B, n)
    v = np.abs(lam)
    lo, hi = v.min(axis=1), v.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(lo > 0, hi / np.where(lo > 0, lo, 1.0), np.inf)
    return float(ratio.max()), float(hi.max()), float(lam.real.max())


def stiff_comparison(field, z0, theta, t1, reference, rtol=1e-3, atol=1e-6,
                     implicit_steps=(10, 20, 40, 80), solvers=("beuler", "sdirk2")):
    """Steps and error at t1 of dopri5 (``rtol``, ``atol``) and of the implicit solvers (fixed
    ``implicit_steps``) on dz/dt = field.f from z0 at t0 = 0; ``reference`` is z(t1). Returns a
    list of dicts (solver, setting, steps, rejected, nfe, error = max |z - reference|), dopri5
    first. For the table of docs/ode.md (:func:`format_comparison` prints it)."""
    np = backend.np
    ref = backend.to_numpy(reference)
    rows = []
    sol = _solvers.odeint(field, z0, theta, 0.0, t1, "dopri5", rtol=rtol, atol=atol,
                          max_steps=10 ** 7, record=False)
    rows.append(dict(solver="dopri5", setting="rtol=%g" % rtol, steps=sol.steps,
                     rejected=sol.rejected, nfe=sol.nfe,
                     error=float(np.abs(backend.to_numpy(sol.z1) - ref).max())))
    for name in solvers:
        for N in implicit_steps:
            sol = _solvers.odeint(field, z0, theta, 0.0, t1, name, steps=N, record=False)
            err = float(np.abs(backend.to_numpy(sol.z1) - ref).max())
            rows.append(dict(solver=name, setting="steps=%d" % N, steps=sol.steps, rejected=0,
                             nfe=sol.nfe, error=err))
    return rows


def format_comparison(rows):
    """The rows of :func:`stiff_comparison` as a plain-text table."""
    lines = ["%-8s %-12s %8s %9s %9s %10s" % ("solver", "setting", "steps", "rejected", "nfe",
                                              "error")]
    for r in rows:
        lines.append("%-8s %-12s %8d %9d %9d %10.2e" % (r["solver"], r["setting"], r["steps"],
                                                        r["rejected"], r["nfe"], r["error"]))
    return "\n".join(lines)
