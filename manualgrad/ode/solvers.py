"""Explicit Runge-Kutta solvers for dz/dt = f(t, z, theta), written out (BW neural ODEs).

BW, "Numerical ODE solver - Forward Euler method": h_{k+1} = h_k + s f(h_k, t_k, theta). This
module generalises that step to any explicit Runge-Kutta method given by its Butcher tableau
(c, A, b): with step size h from (t, z),

    Z_i = z + h sum_{j<i} A_ij K_j,     K_i = f(t + c_i h, Z_i, theta),     i = 1..s
    z'  = z + h sum_i b_i K_i

Each method is a small :class:`Tableau` in the registry :data:`SOLVERS`:

=========  =====  ======  ===================================================================
name       order  stages  notes
=========  =====  ======  ===================================================================
euler      1      1       BW's forward Euler
midpoint   2      2       explicit midpoint
rk4        4      4       classical Runge-Kutta
dopri5     5(4)   7       Dormand-Prince: 5th-order solution, embedded 4th-order error
                          estimate, FSAL (the 7th stage is the next step's 1st); adaptive
=========  =====  ======  ===================================================================

States are batched, z of shape (B, n) (rows are examples); one step size serves the whole batch
(the error norm of dopri5 is taken over all B*n entries). Array work runs on the active backend
(``backend.xp()``, NumPy or CuPy); times, step sizes and error norms are host floats.

Public API: :func:`odeint` (fixed-step or adaptive solve), :func:`odeint_grid` (fixed steps over
a given host grid: replays an adaptive solve's accepted steps), :class:`Solution`,
:class:`Counted` (counts f and vjp calls). The same integrator, :func:`integrate`, also runs
the augmented backward system of the continuous adjoint (``adjoint.py``), whose state is a
tuple of arrays; it is public for that reason.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field as _dcfield
from fractions import Fraction as Fr
from typing import Optional

from .. import backend
from .._validate import float_array, integer, number

__all__ = ["Tableau", "SOLVERS", "get_solver", "solver_names", "Solution", "Counted", "odeint",
           "odeint_grid", "integrate", "fixed_grid", "check_interval"]


# ============================================================================ tableaux
@dataclass(frozen=True)
class Tableau:
    """One explicit Runge-Kutta method (Butcher tableau), exact rationals converted to floats.

    c (s,), A (s rows, row i has i entries: the strictly lower triangle), b (s,) the weights of
    the propagated solution, ``order`` its order. Adaptive methods add ``b_err`` (s,), the weights
    of the embedded solution of order ``err_order``; the local error estimate is
    h sum_i (b_i - b_err_i) K_i. ``fsal``: the last stage is evaluated at the new state (its
    A row equals b), so its K is the next step's K_1.
    """

    name: str
    c: tuple
    A: tuple
    b: tuple
    order: int
    b_err: Optional[tuple] = None
    err_order: Optional[int] = None
    fsal: bool = False
    description: str = ""
    exact: dict = _dcfield(default_factory=dict, compare=False, repr=False)

    @property
    def stages(self):
        """Number of stages s (for dopri5: 7, including the FSAL stage)."""
        return len(self.c)

    @property
    def adaptive(self):
        return self.b_err is not None

    @property
    def prop_stages(self):
        """Stages the propagated solution needs: up to the last i with b_i != 0 (dopri5: 6)."""
        return max(i for i, w in enumerate(self.b) if w != 0) + 1

    @property
    def nfe_per_step(self):
        """f evaluations per fixed step (no error control): euler 1, midpoint 2, rk4 4, dopri5 6."""
        return self.prop_stages


def _tableau(name, c, A, b, order, b_err=None, err_order=None, fsal=False, description=""):
    exact = {"c": tuple(Fr(x) for x in c), "A": tuple(tuple(Fr(x) for x in r) for r in A),
             "b": tuple(Fr(x) for x in b),
             "b_err": None if b_err is None else tuple(Fr(x) for x in b_err)}
    flt = lambda seq: tuple(float(x) for x in seq)  # noqa: E731
    return Tableau(name, flt(c), tuple(flt(r) for r in A), flt(b), order,
                   None if b_err is None else flt(b_err), err_order, fsal, description, exact)


_DOPRI_A = (
    (),
    (Fr(1, 5),),
    (Fr(3, 40), Fr(9, 40)),
    (Fr(44, 45), Fr(-56, 15), Fr(32, 9)),
    (Fr(19372, 6561), Fr(-25360, 2187), Fr(64448, 6561), Fr(-212, 729)),
    (Fr(9017, 3168), Fr(-355, 33), Fr(46732, 5247), Fr(49, 176), Fr(-5103, 18656)),
    (Fr(35, 384), Fr(0), Fr(500, 1113), Fr(125, 192), Fr(-2187, 6784), Fr(11, 84)),
)

SOLVERS = {
    "euler": _tableau("euler", [0], [()], [1], 1,
                      description="forward Euler (BW): z' = z + h f(t, z)"),
    "midpoint": _tableau("midpoint", [0, Fr(1, 2)], [(), (Fr(1, 2),)], [0, 1], 2,
                         description="explicit midpoint: z' = z + h f(t + h/2, z + h/2 f(t, z))"),
    "rk4": _tableau("rk4", [0, Fr(1, 2), Fr(1, 2), 1],
                    [(), (Fr(1, 2),), (0, Fr(1, 2)), (0, 0, 1)],
                    [Fr(1, 6), Fr(1, 3), Fr(1, 3), Fr(1, 6)], 4,
                    description="classical Runge-Kutta of order 4"),
    "dopri5": _tableau(
        "dopri5", [0, Fr(1, 5), Fr(3, 10), Fr(4, 5), Fr(8, 9), 1, 1], _DOPRI_A,
        list(_DOPRI_A[6]) + [0], 5,
        b_err=[Fr(5179, 57600), 0, Fr(7571, 16695), Fr(393, 640), Fr(-92097, 339200),
               Fr(187, 2100), Fr(1, 40)],
        err_order=4, fsal=True,
        description="Dormand-Prince 5(4): 5th-order solution, embedded 4th-order error estimate, "
                    "FSAL; adaptive (rtol/atol)"),
}
"""Registry name -> :class:`Tableau`: euler, midpoint, rk4 (fixed step) and dopri5 (adaptive)."""


def solver_names():
    return tuple(SOLVERS)


def get_solver(name):
    """The :class:`Tableau` called ``name`` (a Tableau passes through); unknown names raise."""
    if isinstance(name, Tableau):
        return name
    if not isinstance(name, str):
        raise TypeError("solver must be a name, one of %s; got %r" % (", ".join(SOLVERS), name))
    try:
        return SOLVERS[name]
    except KeyError:
        raise ValueError("unknown solver %r: valid names are %s"
                         % (name, ", ".join(SOLVERS))) from None


# ============================================================================ counting
class Counted:
    """Wrap a vector field and count its calls: ``.nfe`` (f) and ``.nvjp`` (vjp).

    Everything else (``jvp``, ``check``, attributes) is passed through to the wrapped field.
    """

    def __init__(self, field):
        self.field = field
        self.nfe = 0
        self.nvjp = 0

    def f(self, t, z, theta):
        self.nfe += 1
        return self.field.f(t, z, theta)

    def vjp(self, t, z, theta, a):
        self.nvjp += 1
        return self.field.vjp(t, z, theta, a)

    def __getattr__(self, name):
        return getattr(self.field, name)


# ============================================================================ solution
@dataclass
class Solution:
    """The result of :func:`odeint` / :func:`odeint_grid` (arrays on the backend, times on host).

    z1 (B, n): the state at t1.  ts: host list of the accepted grid times [t0, ..., t1].
    zs: list of (B, n) states at ``ts`` (``zs[0]`` is z0) when solved with ``record=True``,
    else None.  nfe: evaluations of f.  solver: the solver's name.  steps: accepted steps
    (``len(ts) - 1``).  rejected: rejected steps (dopri5; 0 otherwise).  t0, t1: the interval.
    """

    z1: object
    ts: list
    zs: Optional[list]
    nfe: int
    solver: str
    steps: int
    rejected: int = 0
    t0: float = 0.0
    t1: float = 1.0

    @property
    def hs(self):
        """The accepted step sizes ts[k+1] - ts[k] (host floats), exactly as the steps used them."""
        return [b - a for a, b in zip(self.ts[:-1], self.ts[1:])]


# ============================================================================ state algebra
# The integrator works on a *state tuple*: (z,) for a forward solve, (z, a, g_1, ..., g_P) for
# the continuous adjoint's augmented system. ``fun(t, y) -> dy/dt`` returns a tuple alike.
def _combo(y, h, coefs, ks, like=None):
    """y + h sum_j coefs[j] ks[j], componentwise over the state tuple; zero coefficients skipped.

    ``y=None`` gives h sum_j coefs[j] ks[j] alone (zeros shaped like ``like`` if all are zero).
    Always returns new arrays (never aliases of y), one temporary per nonzero coefficient.
    """
    out = []
    for c in range(len(y if y is not None else like)):
        acc = None
        for w, k in zip(coefs, ks):
            if w == 0:
                continue
            term = k[c] * (h * w)
            if acc is None:
                acc = term
            else:
                acc += term
        if y is None:
            out.append(backend.xp().zeros_like(like[c]) if acc is None else acc)
        else:
            out.append(y[c] + acc if acc is not None else y[c].copy())
    return tuple(out)


def _all_finite(y):
    xp = backend.xp()
    return all(bool(xp.isfinite(c).all()) for c in y)


def _error_norm(y, y_new, err, rtol, atol):
    """RMS over all entries of err / (atol + rtol max(|y|, |y_new|)) (Hairer et al. I, II.4)."""
    xp = backend.xp()
    total, count = 0.0, 0
    for a, b, e in zip(y, y_new, err):
        scale = xp.maximum(xp.abs(a), xp.abs(b))
        scale *= rtol
        scale += atol
        r = e / scale
        total += float((r * r).sum())
        count += r.size
    return math.sqrt(total / max(count, 1))


# ============================================================================ checks
def check_interval(t0, t1, what="odeint"):
    """t0, t1 as host floats with t1 > t0 (ValueError otherwise)."""
    t0 = number(t0, "t0")
    t1 = number(t1, "t1")
    if not t1 > t0:
        raise ValueError("%s: need t1 > t0 (integration runs forward from t0 to t1), got t0=%r, "
                         "t1=%r" % (what, t0, t1))
    return t0, t1


def fixed_grid(t0, t1, steps=None, h=None, solver="rk4"):
    """The host grid [t0, t0 + (t1-t0)/N, ..., t1] of a fixed-step solve (t_k = t0 + (t1-t0) k/N).

    Exactly one of ``steps`` (int N >= 1) and ``h`` (> 0, must divide t1 - t0 to 1e-12
    relative; otherwise ValueError saying by how much and which ``steps`` to use).
    """
    if steps is not None and h is not None:
        raise TypeError("%s: give steps= or h=, not both (got steps=%r, h=%r)" % (solver, steps, h))
    if steps is None and h is None:
        raise ValueError("fixed-step solver %r needs steps= (number of steps) or h= (step size)"
                         % solver)
    L = t1 - t0
    if h is not None:
        h = number(h, "h", positive=True)
        q = L / h
        N = max(1, int(round(q)))
        if abs(N * h - L) > 1e-12 * L:
            lo, hi = max(1, int(math.floor(q))), int(math.ceil(q))
            raise ValueError(
                "h=%r does not divide the interval t1 - t0 = %r: it fits %.10g times, so the last "
                "step would be off by %.3g (%.3g of h); pass steps=N instead (steps=%d gives "
                "h=%.6g, steps=%d gives h=%.6g) or an h that divides t1 - t0"
                % (h, L, q, abs(N * h - L), abs(N * h - L) / h, lo, L / lo, max(hi, lo + 1),
                   L / max(hi, lo + 1)))
        steps = N
    else:
        steps = integer(steps, "steps", minimum=1)
    ts = [t0 + L * k / steps for k in range(steps + 1)]
    ts[-1] = t1
    return ts


def _check_grid(ts):
    try:
        ts = [float(t) for t in ts]
    except TypeError:
        raise TypeError("ts must be a sequence of numbers (host floats), got %r"
                        % (type(ts).__name__,)) from None
    if len(ts) < 2:
        raise ValueError("ts must hold at least 2 times, got %d" % len(ts))
    if not all(math.isfinite(t) for t in ts):
        raise ValueError("ts must be finite, got %r" % (ts,))
    d = [b - a for a, b in zip(ts[:-1], ts[1:])]
    if not (all(x > 0 for x in d) or all(x < 0 for x in d)):
        raise ValueError("ts must be strictly monotone (all increasing or all decreasing)")
    return ts


def _check_state(z0, name="z0"):
    z0 = float_array(z0, name, ndim=2, axes=("B", "n"))
    if z0.shape[0] < 1 or z0.shape[1] < 1:
        raise ValueError("%s must have at least one example and one component, got shape %s"
                         % (name, tuple(z0.shape)))
    return z0


def _prepare(field, z0, theta):
    for m in ("f", "vjp"):
        if not callable(getattr(field, m, None)):
            raise TypeError("field must have methods f(t, z, theta) and vjp(t, z, theta, a); "
                            "%s has no %s" % (type(field).__name__, m))
    z0 = _check_state(z0)
    check = getattr(field, "check", None)
    if callable(check):
        theta = check(theta, z0)
    return z0, theta


def _forward_fun(field, theta, z0):
    shape = tuple(z0.shape)

    def fun(t, y):
        k = field.f(t, y[0], theta)
        if tuple(getattr(k, "shape", ())) != shape:
            raise ValueError("field.f returned shape %s, expected the state's shape %s"
                             % (tuple(getattr(k, "shape", ())), shape))
        return (k,)
    return fun


# ============================================================================ integrator
def _rk_step(fun, t, y, h, tab, k1=None, nstages=None):
    """One explicit RK step: the stage derivatives K_1..K_s (s = ``nstages``) and the new state.

    Stage i is evaluated at time ``t + c_i * h`` (this exact expression is what the discrete
    adjoint uses too). ``k1``: K_1 already known (FSAL). Returns (ks, y_new, nfe).
    """
    s = tab.prop_stages if nstages is None else nstages
    ks, nfe = [], 0
    for i in range(s):
        if i == 0 and k1 is not None:
            ks.append(k1)
            continue
        yi = y if i == 0 else _combo(y, h, tab.A[i], ks)
        ks.append(fun(t + tab.c[i] * h, yi))
        nfe += 1
    y_new = _combo(y, h, tab.b[:s], ks)
    return ks, y_new, nfe


def _first_step(fun, t0, y0, f0, direction, order, rtol, atol, span):
    """Initial step size (Hairer-Norsett-Wanner II.4, 'Starting step size'); one f evaluation."""
    zero = tuple(backend.xp().zeros_like(c) for c in y0)
    d0 = _error_norm(y0, zero, y0, rtol, atol)
    d1 = _error_norm(y0, zero, f0, rtol, atol)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    h0 = min(h0, span)
    y1 = _combo(y0, direction * h0, (1.0,), (f0,))
    f1 = fun(t0 + direction * h0, y1)
    diff = tuple(a - b for a, b in zip(f1, f0))
    d2 = _error_norm(y0, zero, diff, rtol, atol) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100 * h0, h1, span)


def _where_nonfinite(fun, y0, ts, tab, what):
    """Re-run a fixed-grid solve checking every step; raise FloatingPointError naming the time."""
    if not _all_finite(y0):
        raise FloatingPointError("%s: the initial state at t=%r is not finite" % (what, ts[0]))
    y = y0
    for k in range(len(ts) - 1):
        _, y, _ = _rk_step(fun, ts[k], y, ts[k + 1] - ts[k], tab)
        if not _all_finite(y):
            raise FloatingPointError(
                "%s: the state became non-finite (NaN or Inf) in the step from t=%r to t=%r "
                "(step %d of %d); the field blows up or the step is too large for it: use more "
                "steps or an adaptive solver" % (what, ts[k], ts[k + 1], k + 1, len(ts) - 1))
    raise FloatingPointError("%s: non-finite state (could not be located on a re-run)" % what)


def integrate(fun, y0, tab, ts=None, t_start=None, t_end=None, rtol=1e-6, atol=1e-8,
              max_steps=10_000, first_step=None, record=True, what="odeint"):
    """Integrate dy/dt = fun(t, y) for a state tuple y; the engine of :func:`odeint`.

    Fixed steps over the host grid ``ts`` (any direction), or, when ``ts`` is None, adaptive
    steps of the embedded pair ``tab`` from ``t_start`` to ``t_end`` (either direction) with
    error control RMS(err / (atol + rtol max(|y|, |y_new|))) <= 1 and step-size factor
    clip(0.9 err^(-1/5), 0.2, 10) (1/(q+1), q = min order of the pair).

    Returns ``(y_end, ts, ys, nfe, accepted, rejected)``; ``ys`` is the list of states at the
    accepted times when ``record`` (else None). Non-finite states raise FloatingPointError with
    the time; an adaptive solve needing more than ``max_steps`` attempts, or whose step size
    underflows, raises RuntimeError.
    """
    with backend.errstate(over="ignore", invalid="ignore"):  # non-finite states are reported below
        return _integrate(fun, y0, tab, ts, t_start, t_end, rtol, atol, max_steps, first_step,
                          record, what)


def _integrate(fun, y0, tab, ts, t_start, t_end, rtol, atol, max_steps, first_step, record,
               what):
    if ts is not None:
        y = y0
        ys = [y0] if record else None
        nfe = 0
        for k in range(len(ts) - 1):
            _, y, n = _rk_step(fun, ts[k], y, ts[k + 1] - ts[k], tab)
            nfe += n
            if record:
                ys.append(y)
        if not _all_finite(y):
            _where_nonfinite(fun, y0, ts, tab, what)
        return y, list(ts), ys, nfe, len(ts) - 1, 0
    if not tab.adaptive:
        raise ValueError("%s: solver %r is not adaptive; give a grid" % (what, tab.name))
    return _adaptive(fun, y0, tab, t_start, t_end, rtol, atol, max_steps, first_step, record, what)


def _adaptive(fun, y0, tab, t0, t1, rtol, atol, max_steps, first_step, record, what):
    direction = 1.0 if t1 > t0 else -1.0
    span = abs(t1 - t0)
    q = min(tab.order, tab.err_order)
    expo = 1.0 / (q + 1)
    safety, facmin, facmax = 0.9, 0.2, 10.0
    dw = tuple(b - e for b, e in zip(tab.b, tab.b_err))  # error weights b - b_err
    if not _all_finite(y0):
        raise FloatingPointError("%s: the initial state at t=%r is not finite" % (what, t0))
    k1 = fun(t0, y0)
    nfe = 1
    if first_step is None:
        habs = _first_step(fun, t0, y0, k1, direction, q, rtol, atol, span)
        nfe += 1
    else:
        habs = min(first_step, span)
    t, y = t0, y0
    ts = [t0]
    ys = [y0] if record else None
    accepted = rejected = 0
    last_rejected = False
    last_nonfinite = False
    while direction * (t1 - t) > 0:
        if accepted + rejected >= max_steps:
            raise RuntimeError(
                "%s: dopri5 could not reach t1=%r within max_steps=%d steps (%d accepted, %d "
                "rejected); it reached t=%r with step size %.3g. Loosen rtol/atol (rtol=%g, "
                "atol=%g), raise max_steps, or use a fixed-step solver"
                % (what, t1, max_steps, accepted, rejected, t, habs, rtol, atol))
        tiny = 16 * math.ulp(max(abs(t), abs(t1), 1e-300))
        if habs < tiny:
            if last_nonfinite:
                raise FloatingPointError(
                    "%s: the state becomes non-finite (NaN or Inf) right after t=%r: the step "
                    "size was cut to %.3g without reaching a finite state" % (what, t, habs))
            raise RuntimeError("%s: step size underflow (%.3g) at t=%r: the problem is too stiff "
                               "or singular for rtol=%g, atol=%g" % (what, habs, t, rtol, atol))
        t_new = t + direction * habs
        if direction * (t_new - t1) >= 0 or direction * (t1 - t_new) < tiny:
            t_new = t1
        h = t_new - t  # the step actually taken, so that the grid ts replays it bit for bit
        ks, y_new, n = _rk_step(fun, t, y, h, tab, k1=k1, nstages=tab.stages)
        nfe += n
        err = _combo(None, h, dw, ks, like=y)
        en = _error_norm(y, y_new, err, rtol, atol)
        if math.isfinite(en) and en <= 1.0:
            t, y = t_new, y_new
            accepted += 1
            ts.append(t)
            if record:
                ys.append(y)
            k1 = ks[-1]  # FSAL: the last stage is f at the new state
            fac = facmax if en == 0 else min(facmax, max(facmin, safety * en ** -expo))
            if last_rejected:
                fac = min(fac, 1.0)
            habs = abs(h) * fac
            last_rejected = last_nonfinite = False
        else:
            rejected += 1
            last_nonfinite = not math.isfinite(en)
            fac = facmin if last_nonfinite else max(facmin, safety * en ** -expo)
            habs = abs(h) * min(fac, 1.0)
            last_rejected = True
    return y, ts, ys, nfe, accepted, rejected


# ============================================================================ public solves
def odeint(field, z0, theta, t0, t1, solver="rk4", steps=None, h=None, rtol=1e-6, atol=1e-8,
           max_steps=10_000, first_step=None, record=True):
    """Solve dz/dt = field.f(t, z, theta) from z(t0) = z0 to t1 > t0 (BW neural ODE forward pass).

    Parameters
    ----------
    field : vector field with ``f(t, z, theta) -> (B, n)`` and ``vjp`` (see manualgrad.ode);
        its optional ``check(theta, z0)`` validates ``theta`` once.
    z0 : (B, n) initial states (rows are examples).
    theta : parameter mapping passed to the field.
    t0, t1 : host floats, t1 > t0.
    solver : 'euler', 'midpoint', 'rk4' (fixed step: give ``steps`` or ``h``) or 'dopri5'
        (adaptive: ``rtol``, ``atol`` > 0, ``max_steps`` attempts at most, optional
        ``first_step``).
    record : keep the state at every accepted time in ``sol.zs`` (the discrete adjoint needs it;
        memory grows with the number of steps). With False only the current state is kept.

    Returns a :class:`Solution`. Raises ValueError for bad arguments (a fixed ``h`` that does not
    divide t1 - t0 says by how much and suggests ``steps``), FloatingPointError when the state
    becomes non-finite (with the time), RuntimeError when dopri5 cannot reach t1 within
    ``max_steps`` attempts.
    """
    tab = get_solver(solver)
    t0, t1 = check_interval(t0, t1)
    z0, theta = _prepare(field, z0, theta)
    fun = _forward_fun(field, theta, z0)
    if tab.adaptive:
        if steps is not None or h is not None:
            raise ValueError("solver %r is adaptive (rtol/atol error control): steps=/h= are not "
                             "accepted (got steps=%r, h=%r); use a fixed-step solver, or "
                             "odeint_grid(..., ts, %r) for a fixed grid" % (tab.name, steps, h,
                                                                            tab.name))
        rtol = number(rtol, "rtol", positive=True)
        atol = number(atol, "atol", positive=True)
        max_steps = integer(max_steps, "max_steps", minimum=1)
        first_step = number(first_step, "first_step", positive=True, allow_none=True)
        y, ts, ys, nfe, acc, rej = integrate(fun, (z0,), tab, None, t0, t1, rtol, atol,
                                             max_steps, first_step, record)
    else:
        grid = fixed_grid(t0, t1, steps, h, tab.name)
        y, ts, ys, nfe, acc, rej = integrate(fun, (z0,), tab, grid, record=record)
    return Solution(y[0], ts, None if ys is None else [s[0] for s in ys], nfe, tab.name, acc,
                    rej, t0, t1)


def odeint_grid(field, z0, theta, ts, solver="rk4", record=True):
    """Fixed steps of ``solver`` over the host grid ``ts`` (strictly increasing, len >= 2).

    For dopri5 this takes its 5th-order step (6 stages, no error control) on every interval:
    ``odeint_grid(field, z0, theta, sol.ts, "dopri5")`` replays an adaptive solve ``sol`` bit for
    bit, which is what its discrete adjoint differentiates. Returns a :class:`Solution`.
    """
    tab = get_solver(solver)
    ts = _check_grid(ts)
    check_interval(ts[0], ts[-1], "odeint_grid")
    z0, theta = _prepare(field, z0, theta)
    fun = _forward_fun(field, theta, z0)
    y, ts, ys, nfe, acc, rej = integrate(fun, (z0,), tab, ts, record=record, what="odeint_grid")
    return Solution(y[0], ts, None if ys is None else [s[0] for s in ys], nfe, tab.name, acc,
                    0, ts[0], ts[-1])
