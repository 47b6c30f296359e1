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

The implicit solvers for stiff fields (catalog row X-IMPL) are diagonally implicit tableaux,
:class:`DIRK`, in their own registry :data:`IMPLICIT` -- ``beuler`` (backward Euler, order 1)
and ``sdirk2`` (2-stage SDIRK, gamma = 1 - 1/sqrt(2), order 2), both L-stable and stiffly
accurate, fixed step, needing the field's Jacobian ``jac(t, z, theta)`` -- and are accepted by
every ``solver=`` argument; their Newton iterations, steps and adjoints are in
:mod:`manualgrad.ode.implicit`. An adaptive solve that stalls raises :class:`SolverStalled`,
which explains why (BW's stiffness ratio of the Jacobian at the state reached, when the field
has ``jac``) and suggests the implicit solvers; :meth:`Solution.diagnostics` summarises what a
solve did (step sizes, rejections with their times and error norms, Newton iterations).

States are batched, z of shape (B, n) (rows are examples); one step size serves the whole batch
(the error norm of dopri5 is taken over all B*n entries). Array work runs on the active backend
(``backend.xp()``, NumPy or CuPy); times, step sizes and error norms are host floats.

Public API: :func:`odeint` (fixed-step or adaptive solve), :func:`odeint_grid` (fixed steps over
a given host grid: replays an adaptive solve's accepted steps), :class:`Solution`,
:class:`Counted` (counts f and vjp calls). The same integrator, :func:`integrate`, also runs
the augmented backward system of the continuous adjoint (``adjoint.py``), whose state is a
tuple of arrays; it is public for that reason.

Non-finite states. Every solve raises FloatingPointError as soon as it sees a state that is no
longer finite (NaN or Inf), naming the step and its times: dopri5 rejects such steps and raises
once the step size has shrunk onto the time; a fixed-step solve (euler, midpoint, rk4, or any
tableau without error control) checks its state with one reduction per solve (``isfinite(..).all()``
on the backend, the only host synchronisation of a fixed-step solve), and when that fails re-runs
the grid step by step to say which step overflowed (the error path; :func:`_where_nonfinite`),
suggesting a smaller step (more ``steps``) or dopri5.

Arrays and workspaces. A solve allocates its arrays once -- the stage derivatives K_1..K_s, a
stage state, the two ends of a step (or, with ``record=True``, one preallocated row per step),
dopri5's error estimate -- and every step writes into them (``out=``); a field with
``f_into``/``vjp_into`` (see :func:`f_into_of`) writes its derivatives into them too. The
engine's gradient functions (``node.loss_and_grad``, ``adjoint.discrete_adjoint``, ...) draw
these arrays from a :class:`~manualgrad.backend.Workspace`, so that repeated calls with the
same shapes allocate nothing; they go through :func:`solve` and :func:`integrate_into`, whose
results live in the workspace they are given. The rule of workspaces -- a workspace holds only
what stays inside a call -- is why the user-facing :func:`odeint`, :func:`odeint_grid` and
:func:`integrate` take none: they return trajectories, and what they return is always the
caller's own. The building blocks the adjoints share with the solves are public too:
:func:`fresh` (copy out of a workspace), :func:`scratch_of`, :class:`Layout` and
:func:`lincomb` (states as views into flat vectors, and their stage sums), :func:`check_state`,
:func:`check_problem`, :func:`solve_settings`, :func:`result_dtype`, :func:`all_finite`.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field as _dcfield
from fractions import Fraction as Fr
from typing import Optional

from .. import backend
from .._validate import float_array, integer, number, registry_entry

__all__ = ["Tableau", "tableau", "SOLVERS", "DIRK", "IMPLICIT", "SolverStalled", "get_solver",
           "solver_names", "Solution", "Counted",
           "odeint", "odeint_grid", "integrate", "fixed_grid", "check_interval", "solve", "integrate_into",
           "f_into_of", "vjp_into_of", "field_f", "field_vjp", "temporaries", "fresh",
           "scratch_of", "Layout", "lincomb", "check_state", "check_problem", "solve_settings",
           "result_dtype", "all_finite", "stall_diagnosis"]


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
    def implicit(self):
        """False: an explicit method (:class:`DIRK` answers True)."""
        return False

    @property
    def prop_stages(self):
        """Stages the propagated solution needs: up to the last i with b_i != 0 (dopri5: 6)."""
        return max(i for i, w in enumerate(self.b) if w != 0) + 1

    @property
    def nfe_per_step(self):
        """f evaluations per fixed step (no error control): euler 1, midpoint 2, rk4 4, dopri5 6."""
        return self.prop_stages


def tableau(name, c, A, b, order, b_err=None, err_order=None, fsal=False, description=""):
    """A :class:`Tableau` from exact coefficients (ints, Fractions: kept in ``exact`` for the
    order-condition tests) converted to floats; how the registry's methods, and a new one, are
    written (the rows of A: the strictly lower triangle)."""
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
    "euler": tableau("euler", [0], [()], [1], 1,
                      description="forward Euler (BW): z' = z + h f(t, z)"),
    "midpoint": tableau("midpoint", [0, Fr(1, 2)], [(), (Fr(1, 2),)], [0, 1], 2,
                         description="explicit midpoint: z' = z + h f(t + h/2, z + h/2 f(t, z))"),
    "rk4": tableau("rk4", [0, Fr(1, 2), Fr(1, 2), 1],
                    [(), (Fr(1, 2),), (0, Fr(1, 2)), (0, 0, 1)],
                    [Fr(1, 6), Fr(1, 3), Fr(1, 3), Fr(1, 6)], 4,
                    description="classical Runge-Kutta of order 4"),
    "dopri5": tableau(
        "dopri5", [0, Fr(1, 5), Fr(3, 10), Fr(4, 5), Fr(8, 9), 1, 1], _DOPRI_A,
        list(_DOPRI_A[6]) + [0], 5,
        b_err=[Fr(5179, 57600), 0, Fr(7571, 16695), Fr(393, 640), Fr(-92097, 339200),
               Fr(187, 2100), Fr(1, 40)],
        err_order=4, fsal=True,
        description="Dormand-Prince 5(4): 5th-order solution, embedded 4th-order error estimate, "
                    "FSAL; adaptive (rtol/atol)"),
}
"""Registry name -> :class:`Tableau`: euler, midpoint, rk4 (fixed step) and dopri5 (adaptive)."""


@dataclass(frozen=True)
class DIRK:
    """One diagonally implicit Runge-Kutta method (catalog row X-IMPL; the steps in implicit.py).

    ``A`` holds the rows of the lower triangle *with* the diagonal (row i has i + 1 entries):

        Z_i = z + h sum_{j<i} A_ij K_j + h A_ii K_i,   K_i = f(t + c_i h, Z_i)
        z'  = z + h sum_i b_i K_i

    so every stage is an implicit equation in Z_i alone, solved by Newton's method on
    G(Z) = Z - r_i - h A_ii f(t + c_i h, Z) with the iteration matrix I - h A_ii J(Z) (J the
    field's Jacobian ``jac(t, z, theta)`` (B, n, n)) until max |G| / (|Z| + |r_i| + |h A_ii K_i|)
    <= ``newton_tol``; more than ``newton_max_iter`` iterations raise FloatingPointError.
    ``stiffly_accurate``: b equals the last row of A, so z' = Z_s (L-stability with an
    A-stable method). A DIRK is never adaptive here (fixed steps: ``steps`` or ``h``).
    Customise the Newton settings with ``dataclasses.replace(IMPLICIT["sdirk2"], newton_tol=..)``
    and pass the object as ``solver``.
    """

    name: str
    c: tuple
    A: tuple
    b: tuple
    order: int
    stiffly_accurate: bool = False
    l_stable: bool = False
    description: str = ""
    newton_tol: float = 1e-12
    newton_max_iter: int = 25

    implicit = True  # not a field: the kind of method
    adaptive = False
    b_err = None
    fsal = False

    @property
    def stages(self):
        return len(self.c)

    @property
    def prop_stages(self):
        return len(self.c)


_SDIRK_GAMMA = 1.0 - 1.0 / math.sqrt(2.0)

IMPLICIT = {
    "beuler": DIRK("beuler", (1.0,), ((1.0,),), (1.0,), 1, True, True,
                   "backward Euler: z' = z + h f(t + h, z'); order 1, L-stable"),
    "sdirk2": DIRK("sdirk2", (_SDIRK_GAMMA, 1.0),
                   ((_SDIRK_GAMMA,), (1.0 - _SDIRK_GAMMA, _SDIRK_GAMMA)),
                   (1.0 - _SDIRK_GAMMA, _SDIRK_GAMMA), 2, True, True,
                   "2-stage SDIRK (Alexander 1977), gamma = 1 - 1/sqrt(2): order 2, L-stable, "
                   "stiffly accurate"),
}
"""Registry name -> :class:`DIRK`: the implicit solvers (fixed step; the field needs ``jac``).

Kept apart from :data:`SOLVERS` (the explicit tableaux, whose every loop -- order conditions,
overflow tests, tangent sweeps -- assumes a strictly lower triangular A); :func:`get_solver`
and every ``solver=`` argument accept the names of both."""


def solver_names():
    """Every solver name ``solver=`` accepts: the explicit ones, then the implicit ones."""
    return tuple(SOLVERS) + tuple(IMPLICIT)


def get_solver(name):
    """The :class:`Tableau` or :class:`DIRK` called ``name`` (one passes through); unknown
    names raise ValueError listing every valid one."""
    if isinstance(name, (Tableau, DIRK)):
        return name
    if isinstance(name, str) and name in IMPLICIT:
        return IMPLICIT[name]
    return registry_entry(dict(SOLVERS, **IMPLICIT), name, "solver")


# ============================================================================ calling a field
# Besides f and vjp a field may offer the same numbers written into given arrays, with its
# temporaries drawn from a workspace ws (None: fresh arrays):
#
#     f_into(t, z, theta, out, ws)                      -> out = f(t, z, theta)
#     vjp_into(t, z, theta, a, out_z, out_theta, ws)    -> (out_z, out_theta) = vjp(t, z, theta, a)
#
# (out_theta: {name: array} for every key of theta). The solvers and adjoints call a field
# through f_into_of(field) and vjp_into_of(field) (resolved once per solve), which use these
# when they stand for the field's f and vjp (not when a subclass overrides f or vjp only) and
# fall back to f and vjp otherwise; field_f and field_vjp do the same for one call.
@functools.lru_cache(maxsize=256)
def _into_method(cls, name):
    """``cls.<name>_into`` when it is defined at the level of ``cls.<name>`` or below, else None."""
    mro = cls.__mro__

    def level(attr):
        return next((i for i, k in enumerate(mro) if attr in vars(k)), len(mro))
    into = level(name + "_into")
    return getattr(cls, name + "_into") if into < len(mro) and into <= level(name) else None


def f_into_of(field):
    """The field's f as ``f_into(t, z, theta, out, ws)``, which writes dz/dt into ``out`` (the
    state's shape) and returns it: the field's own ``f_into`` when it has one (its temporaries
    from workspace ``ws``), else a copy of the array ``field.f`` returns, its shape checked first.
    Resolved once per solve."""
    if _into_method(type(field), "f") is not None:
        return field.f_into

    def f_into(t, z, theta, out, ws=None):
        k = field.f(t, z, theta)
        if tuple(getattr(k, "shape", ())) != tuple(out.shape):
            raise ValueError("field.f returned shape %s, expected the state's shape %s"
                             % (tuple(getattr(k, "shape", ())), tuple(out.shape)))
        out[...] = k
        return out
    return f_into


def vjp_into_of(field):
    """The field's vjp as ``vjp_into(t, z, theta, a, out_z, out_theta, ws)``, which returns
    ``(a df/dz, {name: sum_b a df/dtheta[name]})`` with a df/dz written into ``out_z``.

    The field's own ``vjp_into`` when it has one: the theta-gradients are then written into
    ``out_theta`` ({name: array} for every key of theta), temporaries come from workspace ``ws``.
    Else the dict ``field.vjp`` returns is returned as it is, and its a df/dz copied into out_z.
    """
    if _into_method(type(field), "vjp") is not None:
        return field.vjp_into

    def vjp_into(t, z, theta, a, out_z, out_theta, ws=None):
        az, g = field.vjp(t, z, theta, a)
        if tuple(getattr(az, "shape", ())) != tuple(out_z.shape):
            raise ValueError("field.vjp returned a df/dz of shape %s, expected the state's shape "
                             "%s" % (tuple(getattr(az, "shape", ())), tuple(out_z.shape)))
        out_z[...] = az
        return out_z, g
    return vjp_into


def field_f(field, t, z, theta, out, ws=None):
    """dz/dt = field.f(t, z, theta) written into ``out``; returns it (see :func:`f_into_of`)."""
    return f_into_of(field)(t, z, theta, out, ws)


def field_vjp(field, t, z, theta, a, out_z, out_theta, ws=None):
    """``field.vjp(t, z, theta, a)``, a df/dz written into ``out_z`` (see :func:`vjp_into_of`)."""
    return vjp_into_of(field)(t, z, theta, a, out_z, out_theta, ws)


def result_dtype(a, b):
    """The dtype of an operation on arrays a and b (theirs when they agree, as after validation)."""
    return a.dtype if a.dtype == b.dtype else backend.xp().result_type(a.dtype, b.dtype)


def fresh(x, ws):
    """``x`` as the caller's own array: a copy when it may live in workspace ``ws``.

    The rule of workspaces: what a function returns is never a workspace buffer (nor a view of
    one); this is where the engine's functions copy out what they return.
    """
    return x if ws is None else x.copy()


# ============================================================================ counting
class Counted:
    """Wrap a vector field and count its calls: ``.nfe`` (f) and ``.nvjp`` (vjp).

    ``f_into``/``vjp_into`` count too (and run the field's own, when it has them). Everything else
    (``jvp``, ``check``, attributes) is passed through to the wrapped field.
    """

    def __init__(self, field):
        self.field = field
        self.nfe = 0
        self.nvjp = 0
        self._f_into = f_into_of(field)
        self._vjp_into = vjp_into_of(field)

    def f(self, t, z, theta):
        self.nfe += 1
        return self.field.f(t, z, theta)

    def vjp(self, t, z, theta, a):
        self.nvjp += 1
        return self.field.vjp(t, z, theta, a)

    def f_into(self, t, z, theta, out, ws=None):
        self.nfe += 1
        return self._f_into(t, z, theta, out, ws)

    def vjp_into(self, t, z, theta, a, out_z, out_theta, ws=None):
        self.nvjp += 1
        return self._vjp_into(t, z, theta, a, out_z, out_theta, ws)

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
    rejections: (t, h tried, error norm) of every rejected dopri5 attempt (host floats).
    newton_iters: Newton iterations of an implicit solver (0 otherwise).  tableau: the
    :class:`Tableau` or :class:`DIRK` the solve used (the adjoints use it).
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
    rejections: list = _dcfield(default_factory=list)
    newton_iters: int = 0
    tableau: object = None

    @property
    def hs(self):
        """The accepted step sizes ts[k+1] - ts[k] (host floats), exactly as the steps used them."""
        return [b - a for a, b in zip(self.ts[:-1], self.ts[1:])]

    def diagnostics(self):
        """What the solve did, host numbers only (X-IMPL): ``steps``, ``rejected``, ``h_min``,
        ``h_max`` (accepted step sizes), ``rejections`` (list of (t, h tried, error norm) of every
        rejected dopri5 attempt), ``newton_iters`` (Newton iterations of an implicit solver, all
        stages of all steps), ``nfe``."""
        hs = self.hs
        return {"steps": self.steps, "rejected": self.rejected, "h_min": min(hs), "h_max": max(hs),
                "rejections": list(self.rejections), "newton_iters": self.newton_iters,
                "nfe": self.nfe}


class SolverStalled(RuntimeError):
    """An adaptive solve that could not reach its end (step size underflow, or ``max_steps``).

    A RuntimeError whose message explains the stall (X-IMPL): the time ``t`` reached, the last
    step size ``h``, the ``accepted`` and ``rejected`` step counts, and, when the field has a
    Jacobian ``jac``, BW's stiffness ratio ``stiffness`` of df/dz at the state reached (the
    largest over the batch; None when unavailable) with the largest |eigenvalue| ``lam_max`` and
    the largest real part ``growth`` (> 0: the solution grows, a blow-up rather than stiffness),
    and the suggestion to use an implicit solver (:data:`IMPLICIT`).
    """

    def __init__(self, message, t, h, accepted, rejected, stiffness=None, lam_max=None,
                 growth=None):
        super().__init__(message)
        self.t, self.h, self.accepted, self.rejected = t, h, accepted, rejected
        self.stiffness, self.lam_max, self.growth = stiffness, lam_max, growth


# ============================================================================ state algebra
# The integrator works on a *state tuple*: (z,) for a forward solve, (z, a, g_1, ..., g_P) for
# the continuous adjoint's augmented system. Inside a solve each state (y, the stages K_i and
# Z_i, the error estimate) is a _State: its components are views into one flat vector (one per
# run of components of one dtype; one for the registry's models), so that a stage sum
# y + h sum_j a_ij K_j costs one array operation per term, whatever the number of components.
# A solve allocates its states once and reuses them in every step (_StepArrays, _Record), from a
# workspace when its caller passes one; ``fun(t, y, out, ws)`` writes dy/dt into the components
# of the tuple ``out`` (its temporaries from ws) and returns out.
class _State:
    """A state tuple ``parts`` whose components are views into the flat vectors ``flats``."""

    __slots__ = ("parts", "flats")

    def __init__(self, parts, flats):
        self.parts, self.flats = parts, flats


class Layout:
    """Where the components of states shaped like the tuple ``like`` lie in flat vectors.

    Consecutive components of one dtype form a run that shares one flat vector; component j is
    the view [offset_j, offset_j + size_j) of its run's vector, reshaped.
    """

    def __init__(self, like):
        self.shapes = [tuple(c.shape) for c in like]
        self.runs = []  # [dtype, size, [(component, offset, size)]]
        for j, c in enumerate(like):
            if not self.runs or self.runs[-1][0] != c.dtype:
                self.runs.append([c.dtype, 0, []])
            run, size = self.runs[-1], math.prod(self.shapes[j])
            run[2].append((j, run[1], size))
            run[1] += size

    def view(self, flats):
        """The _State whose flat vectors are ``flats`` (one per run)."""
        parts = [None] * len(self.shapes)
        for flat, (_, _, members) in zip(flats, self.runs):
            for j, offset, size in members:
                parts[j] = flat[offset:offset + size].reshape(self.shapes[j])
        return _State(tuple(parts), tuple(flats))

    def new(self, ws, name, dtype=None):
        """An uninitialised _State, its vectors from workspace ``ws`` under ``name.r`` (r the
        run) or fresh when ws is None; ``dtype`` overrides the runs' dtypes (flags: bool)."""
        return self.view([backend.empty((size,), dt if dtype is None else dtype, ws,
                                        "%s.%d" % (name, r))
                          for r, (dt, size, _) in enumerate(self.runs)])

    def block(self, rows, ws, name):
        """Room for ``rows`` states: one uninitialised (rows, size) array per run, from workspace
        ``ws`` under ``name.r`` (fresh when ws is None); ``row(block, i)`` is the i-th state."""
        return [backend.empty((rows, size), dt, ws, "%s.%d" % (name, r))
                for r, (dt, size, _) in enumerate(self.runs)]

    def row(self, block, i):
        return self.view([b[i] for b in block])

    def adopt(self, y, ws, name):
        """The caller's state tuple ``y`` as a _State: y itself when it is one contiguous array,
        else a copy in ``new(ws, name)`` (the solve only reads it)."""
        if len(y) == 1 and y[0].flags.c_contiguous:
            return _State(tuple(y), (y[0].reshape(-1),))
        state = self.new(ws, name)
        for part, c in zip(state.parts, y):
            part[...] = c
        return state


def lincomb(out, y, h, coefs, ks, term):
    """out = y + h sum_j coefs[j] ks[j] for arrays (y None: the sum alone, zeros if it is empty).

    Zero coefficients are skipped; the terms h coefs[j] ks[j] are formed in order (in ``term``)
    and summed into ``out``, which must be none of y and ks. Returns out.
    """
    xp = backend.xp()
    empty = True
    for w, k in zip(coefs, ks):
        if w == 0:
            continue
        if empty:
            xp.multiply(k, h * w, out=out)
            empty = False
        else:
            out += xp.multiply(k, h * w, out=term)
    if empty:
        if y is None:
            out.fill(0)
        else:
            out[...] = y
    elif y is not None:
        out += y  # = y + the sum (one addition: the order of its operands is exact)
    return out


def _combo(out, y, h, coefs, ks, term):
    """out = y + h sum_j coefs[j] ks[j] for _States (y None: the sum alone), run by run."""
    for r in range(len(out.flats)):
        lincomb(out.flats[r], None if y is None else y.flats[r], h, coefs,
                 [k.flats[r] for k in ks], term.flats[r])
    return out


class _Scratch:
    """A solve's view of its workspace: the same buffers, each looked up in the workspace once per
    solve and then in a plain dict (a field asks for its temporaries at every evaluation)."""

    __slots__ = ("ws", "seen")

    def __init__(self, ws):
        self.ws, self.seen = ws, {}

    def empty(self, name, shape, dtype=None):
        key = (name, shape, dtype)
        buf = self.seen.get(key)
        if buf is None:
            buf = self.seen[key] = self.ws.empty(name, shape, dtype)
        return buf

    def group(self, name, shapes, dtype):
        """:func:`temporaries`: the arrays ``name.0``, ``name.1``, ... in one look-up."""
        key = (name, shapes, dtype)
        bufs = self.seen.get(key)
        if bufs is None:
            bufs = self.seen[key] = tuple(self.ws.empty("%s.%d" % (name, i), shape, dtype)
                                          for i, shape in enumerate(shapes))
        return bufs


def temporaries(ws, name, shapes, dtype):
    """Uninitialised arrays of the given ``shapes``, all of ``dtype``, for one evaluation of a
    field: from workspace ``ws`` under ``name.0``, ``name.1``, ... or fresh when ws is None.
    Within a solve (ws a :class:`_Scratch`) the whole group costs one dict look-up."""
    if ws is None:
        xp = backend.xp()
        return tuple(xp.empty(shape, dtype=dtype) for shape in shapes)
    if isinstance(ws, _Scratch):
        return ws.group(name, shapes, dtype)
    return tuple(ws.empty("%s.%d" % (name, i), shape, dtype) for i, shape in enumerate(shapes))


def scratch_of(ws):
    """A :class:`_Scratch` over workspace ``ws`` (None stays None: fresh arrays)."""
    return ws if ws is None or isinstance(ws, _Scratch) else _Scratch(ws)


class _StepArrays:
    """The states of one solve, allocated once (rows of one block) and reused by every step.

    ``K[i]``: the stage derivative K_{i+1}; ``Z``: a stage state Z_i (one suffices: f uses each up
    before the next is formed); ``term``: one term h a_ij K_j of a stage sum; ``ends``: y_k and
    y_{k+1}, which alternate from step to step when no record keeps the states; for adaptive
    solves ``err`` (the error estimate) and ``scale`` (scratch for its norm). _States of
    ``layout``, from workspace ``ws`` under ``prefix.steps`` (fresh when ws is None), which the
    field's evaluations get too (``ws``).
    """

    def __init__(self, layout, stages, ws, prefix, ends=True, adaptive=False):
        self.layout, self.ws, self.prefix = layout, ws, prefix
        names = (["K%d" % (i + 1) for i in range(stages)] + ["Z", "term"]
                 + (["end0", "end1"] if ends else []) + (["err", "scale"] if adaptive else []))
        block = layout.block(len(names), ws, prefix + ".steps")
        state = {name: layout.row(block, i) for i, name in enumerate(names)}
        self.K = [state["K%d" % (i + 1)] for i in range(stages)]
        self.Z, self.term = state["Z"], state["term"]
        self.ends = (state["end0"], state["end1"]) if ends else None
        if adaptive:
            self.err, self.scale = state["err"], state["scale"]

    def all_finite(self, y):
        """True when every entry of the _State y is finite."""
        flags = self.layout.new(self.ws, self.prefix + ".finite", bool)
        return all_finite(y.flats, flags.flats)


class _Record:
    """The states after the accepted steps: ``row(k)`` is the _State after step k + 1.

    Rows lie in blocks of ``rows`` rows (:meth:`Layout.block`), from workspace ``ws`` under
    ``name<block>`` or fresh when ws is None: N fixed steps take one block of N rows, an
    adaptive solve adds blocks as it goes.
    """

    def __init__(self, layout, ws, name, rows=16):
        self.layout, self.ws, self.name, self.rows = layout, ws, name, rows
        self.blocks = []

    def row(self, k):
        b, r = divmod(k, self.rows)
        while len(self.blocks) <= b:
            self.blocks.append(self.layout.block(self.rows, self.ws,
                                                 "%s%d" % (self.name, len(self.blocks))))
        return self.layout.row(self.blocks[b], r)


def all_finite(arrays, flags=None):
    """True when every entry of the arrays is finite (``flags``: boolean scratch arrays shaped
    like them; None: new ones). One ``isfinite(..).all()`` reduction per array on the backend
    (NumPy or CuPy), combined there, and one host synchronisation in all: the check of a whole
    solve or sweep, not of a step."""
    xp = backend.xp()
    arrays = list(arrays)
    flags = [None] * len(arrays) if flags is None else list(flags)
    ok = None
    for c, f in zip(arrays, flags):
        r = xp.isfinite(c, out=f).all() if f is not None else xp.isfinite(c).all()
        ok = r if ok is None else ok & r
    return True if ok is None else bool(ok)


def _error_norm(y, y_new, err, rtol, atol, scale, scratch):
    """RMS over all entries of err / (atol + rtol max(|y|, |y_new|)) (Hairer et al. I, II.4).

    _States; ``scale`` and ``scratch`` are overwritten. The squares are summed component by
    component (each in one pass, as a sum over that component alone), then over components.
    """
    xp = backend.xp()
    for a, b, e, r, tmp in zip(y.flats, y_new.flats, err.flats, scale.flats, scratch.flats):
        xp.abs(a, out=r)
        r = xp.maximum(r, xp.abs(b, out=tmp), out=r)
        r *= rtol
        r += atol  # the scale atol + rtol max(|y|, |y_new|)
        r = xp.divide(e, r, out=r)
        xp.multiply(r, r, out=r)
    total, count = 0.0, 0
    for r in scale.parts:
        total += float(r.sum())
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


def check_state(z0, name="z0"):
    """``z0`` validated as a (B, n) float array on the backend with B, n >= 1 (ValueError or
    TypeError naming ``name`` otherwise); returns it."""
    z0 = float_array(z0, name, ndim=2, axes=("B", "n"))
    if z0.shape[0] < 1 or z0.shape[1] < 1:
        raise ValueError("%s must have at least one example and one component, got shape %s"
                         % (name, tuple(z0.shape)))
    return z0


def check_problem(field, z0, theta):
    """``(z0, theta)`` validated once per solve: the field has ``f`` and ``vjp``, z0 is a (B, n)
    state (:func:`check_state`) and theta passes the field's optional ``check(theta, z0)``."""
    for m in ("f", "vjp"):
        if not callable(getattr(field, m, None)):
            raise TypeError("field must have methods f(t, z, theta) and vjp(t, z, theta, a); "
                            "%s has no %s" % (type(field).__name__, m))
    z0 = check_state(z0)
    check = getattr(field, "check", None)
    if callable(check):
        theta = check(theta, z0)
    return z0, theta


def _forward_fun(field, theta):
    """fun(t, y, out, ws) of a forward solve: out[0] = field.f(t, y[0], theta)."""
    f_into = f_into_of(field)

    def fun(t, y, out, ws):
        f_into(t, y[0], theta, out[0], ws)
        return out
    return fun


def solve_settings(tab, t0, t1, steps, h, rtol, atol, max_steps, first_step, hint=""):
    """The validated settings of a solve over [t0, t1]: ``(grid, rtol, atol, max_steps,
    first_step)``, grid the host grid of a fixed-step solver and None for an adaptive one."""
    if not tab.adaptive:
        return fixed_grid(t0, t1, steps, h, tab.name), rtol, atol, max_steps, first_step
    if steps is not None or h is not None:
        raise ValueError("solver %r is adaptive (rtol/atol error control): steps=/h= are not "
                         "accepted (got steps=%r, h=%r)%s" % (tab.name, steps, h, hint))
    return (None, number(rtol, "rtol", positive=True), number(atol, "atol", positive=True),
            integer(max_steps, "max_steps", minimum=1),
            number(first_step, "first_step", positive=True, allow_none=True))


# ============================================================================ integrator
def _rk_step(fun, t, y, h, tab, arr, y_new, k1=None, nstages=None):
    """One explicit RK step from (t, y) with step size h, the new state written into ``y_new``::

        Z_i = y + h sum_{j<i} A_ij K_j,   K_i = fun(t + c_i h, Z_i),   y_new = y + h sum_i b_i K_i

    for i = 1..s (s = ``nstages``, default the stages the propagated solution needs); _States,
    K_i in ``arr.K``, the stage states in ``arr.Z`` (:class:`_StepArrays`). Stage i is evaluated
    at time ``t + c_i * h`` (this exact expression is what the discrete adjoint uses too).
    ``k1``: K_1 already known (FSAL). Returns (ks, y_new, nfe).
    """
    s = tab.prop_stages if nstages is None else nstages
    ks, nfe = [], 0
    for i in range(s):
        if i == 0 and k1 is not None:
            ks.append(k1)
            continue
        Zi = y if i == 0 else _combo(arr.Z, y, h, tab.A[i], ks, arr.term)
        fun(t + tab.c[i] * h, Zi.parts, arr.K[i].parts, arr.ws)
        ks.append(arr.K[i])
        nfe += 1
    _combo(y_new, y, h, tab.b[:s], ks, arr.term)
    return ks, y_new, nfe


def _first_step(fun, t0, y0, f0, direction, order, rtol, atol, span, arr, what="odeint"):
    """Initial step size (Hairer-Norsett-Wanner II.4, 'Starting step size'); one f evaluation.

    Works in ``arr`` (:class:`_StepArrays` of an adaptive solve): err (zeros), Z, K[1], scale, term.
    Raises FloatingPointError when the norms of y0 or dy/dt(t0) overflow (no step size can be
    measured from them; before, 0.01 d0 / d1 = 0 ended in a ZeroDivisionError).
    """
    xp = backend.xp()
    zero = arr.err
    for flat in zero.flats:
        flat.fill(0)
    d0 = _error_norm(y0, zero, y0, rtol, atol, arr.scale, arr.term)
    d1 = _error_norm(y0, zero, f0, rtol, atol, arr.scale, arr.term)
    if not (math.isfinite(d0) and math.isfinite(d1)):
        raise FloatingPointError(
            "%s: at t=%r the state or its derivative dy/dt is too large for dopri5's error norm "
            "(|y| = %.3g, |dy/dt| = %.3g relative to atol + rtol |y|, not finite): the state is "
            "no longer finite in the norm; the problem overflows (a field or adjoint that grows "
            "too fast over this interval)" % (what, t0, d0, d1))
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    h0 = min(h0, span)
    y1 = _combo(arr.Z, y0, direction * h0, (1.0,), (f0,), arr.term)
    f1 = arr.K[1]
    fun(t0 + direction * h0, y1.parts, f1.parts, arr.ws)
    diff = arr.Z  # y1 is used up
    for d, a, b in zip(diff.flats, f1.flats, f0.flats):
        xp.subtract(a, b, out=d)
    d2 = _error_norm(y0, zero, diff, rtol, atol, arr.scale, arr.term) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100 * h0, h1, span)


def _where_nonfinite(fun, y0, ts, tab, what):
    """Re-run a fixed-grid solve checking every step; raise FloatingPointError naming the time."""
    if not all_finite(y0):
        raise FloatingPointError("%s: the initial state at t=%r is not finite" % (what, ts[0]))
    layout = Layout(y0)
    arr = _StepArrays(layout, tab.prop_stages, None, "ode.rerun")  # fresh arrays: an error path
    y = layout.adopt(y0, None, "ode.rerun.start")
    for k in range(len(ts) - 1):
        _, y, _ = _rk_step(fun, ts[k], y, ts[k + 1] - ts[k], tab, arr, arr.ends[k % 2])
        if not all_finite(y.flats):
            raise FloatingPointError(
                "%s: the state became non-finite (NaN or Inf) in the step from t=%r to t=%r "
                "(step %d of %d) of %s with h=%.3g; the field blows up or the step is too large "
                "for it: use a smaller step (more steps) or the adaptive dopri5"
                % (what, ts[k], ts[k + 1], k + 1, len(ts) - 1, tab.name, ts[k + 1] - ts[k]))
    raise FloatingPointError("%s: non-finite state (could not be located on a re-run)" % what)


def integrate(fun, y0, tab, ts=None, t_start=None, t_end=None, rtol=1e-6, atol=1e-8,
              max_steps=10_000, first_step=None, record=True, what="odeint"):
    """Integrate dy/dt = fun(t, y) for a state tuple y; the engine of :func:`odeint`.

    ``fun(t, y)`` returns dy/dt as a tuple like y. Fixed steps over the host grid ``ts`` (any
    direction), or, when ``ts`` is None, adaptive steps of the embedded pair ``tab`` from
    ``t_start`` to ``t_end`` (either direction) with error control RMS(err / (atol + rtol
    max(|y|, |y_new|))) <= 1 and step-size factor clip(0.9 err^(-1/5), 0.2, 10) (1/(q+1), q = min
    order of the pair).

    Returns ``(y_end, ts, ys, nfe, accepted, rejected)``; ``ys`` is the list of states at the
    accepted times when ``record`` (else None); all arrays are the caller's own. Non-finite
    states raise FloatingPointError with the time; an adaptive solve needing more than
    ``max_steps`` attempts, or whose step size underflows, raises RuntimeError.
    """
    def fun_into(t, y, out, ws):
        for o, d in zip(out, fun(t, y)):
            o[...] = d
        return out
    return integrate_into(fun_into, y0, tab, ts, t_start, t_end, rtol, atol, max_steps,
                          first_step, record, what)


def integrate_into(fun, y0, tab, ts, t_start, t_end, rtol, atol, max_steps, first_step, record,
                   what, ws=None, prefix="ode", diagnose=None, rejections=None):
    """:func:`integrate` for ``fun(t, y, out, ws)`` (writes dy/dt into the tuple out, its
    temporaries from ws, and returns out), the solve's arrays (stages, states, record) from
    workspace ``ws`` under names ``prefix.*`` (None: fresh).

    With a workspace, y_end and the recorded states are workspace buffers, for use inside one
    call; y0 is only read. Adaptive solves only: ``rejections`` (a list) receives
    (t, h tried, error norm) of every rejected attempt; ``diagnose(t, y)`` (y the state tuple
    reached) returns ``(stiffness, lam_max, growth)`` for the message of :class:`SolverStalled`
    (None: unavailable). Explicit tableaux only (an implicit :class:`DIRK` needs the field's
    Jacobian: :mod:`~manualgrad.ode.implicit`).
    """
    if tab.implicit:
        raise ValueError("%s: solver %r is implicit; integrate_into runs explicit tableaux only "
                         "(use solve, odeint or odeint_grid)" % (what, tab.name))
    ws = scratch_of(ws)
    with backend.errstate(over="ignore", invalid="ignore"):  # non-finite states are reported below
        if ts is not None:
            return _fixed(fun, y0, tab, ts, record, what, ws, prefix)
        if not tab.adaptive:
            raise ValueError("%s: solver %r is not adaptive; give a grid" % (what, tab.name))
        return _adaptive(fun, y0, tab, t_start, t_end, rtol, atol, max_steps, first_step, record,
                         what, ws, prefix, diagnose, rejections)


def _fixed(fun, y0, tab, ts, record, what, ws, prefix):
    N = len(ts) - 1
    layout = Layout(y0)
    arr = _StepArrays(layout, tab.prop_stages, ws, prefix, ends=not record)
    rec = _Record(layout, ws, prefix + ".rec", N) if record else None
    y = layout.adopt(y0, ws, prefix + ".start")
    ys = [y0] if record else None
    nfe = 0
    for k in range(N):
        y_new = rec.row(k) if record else arr.ends[k % 2]
        _, y, n = _rk_step(fun, ts[k], y, ts[k + 1] - ts[k], tab, arr, y_new)
        nfe += n
        if record:
            ys.append(y.parts)
    if not arr.all_finite(y):
        _where_nonfinite(fun, y0, ts, tab, what)
    return y.parts, list(ts), ys, nfe, N, 0


def _stalled(what, reason, t, habs, accepted, rejected, y, diagnose, hint):
    """The :class:`SolverStalled` of an adaptive solve that stopped at t (the error path)."""
    stiff = lam = growth = None
    if diagnose is not None:
        try:
            stiff, lam, growth = diagnose(t, y.parts)
        except Exception:  # noqa: BLE001 -- a diagnosis must never hide the stall itself
            stiff = lam = growth = None
    if stiff is None:
        why = ("BW's stiffness ratio is unavailable (the field has no Jacobian jac(t, z, theta))"
               "; a stiff field (eigenvalues of df/dz of very different sizes) makes an explicit "
               "solver take steps of about 3.3/|lambda_max|: if that is the case use an "
               "implicit solver, solver='sdirk2' or 'beuler' with fixed steps (after adding jac)")
    else:
        # stiff: decaying modes (no eigenvalue with a large positive real part) and a large
        # ratio, or the step held at the stability limit; a large Re lambda > 0 is a blow-up
        blowup = growth > 0.1 * lam and growth > 0
        stiff_here = not blowup and (stiff > 100 or habs * lam > 0.3)
        why = ("BW's stiffness ratio of df/dz there is %.3g (max |lambda| = %.3g: dopri5 is "
               "stable only for h below about 3.3/|lambda_max| = %.3g)"
               % (stiff, lam, 3.3 / lam if lam else float("inf")))
        why += ("; the field is stiff: use an implicit solver, solver='sdirk2' or 'beuler' with "
                "fixed steps (steps=N)" if stiff_here else
                "; but the field is not stiff there: %s; an implicit solver only helps stiff "
                "fields (large eigenvalues with negative real parts)"
                % ("an eigenvalue has real part %.3g > 0, the solution grows that fast (a "
                   "blow-up or singularity near t)" % growth if blowup else
                   "the step shrinks for another reason (a discontinuity or singularity near t)"))
    msg = ("%s: %s; last step size h=%.3g, %d accepted and %d rejected steps; %s. %s"
           % (what, reason, habs, accepted, rejected, why, hint))
    return SolverStalled(msg, t, habs, accepted, rejected, stiff, lam, growth)


def _adaptive(fun, y0, tab, t0, t1, rtol, atol, max_steps, first_step, record, what, ws, prefix,
              diagnose=None, rejections=None):
    direction = 1.0 if t1 > t0 else -1.0
    span = abs(t1 - t0)
    q = min(tab.order, tab.err_order)
    expo = 1.0 / (q + 1)
    safety, facmin, facmax = 0.9, 0.2, 10.0
    dw = tuple(b - e for b, e in zip(tab.b, tab.b_err))  # error weights b - b_err
    layout = Layout(y0)
    arr = _StepArrays(layout, tab.stages, ws, prefix, ends=not record, adaptive=True)
    y = layout.adopt(y0, ws, prefix + ".start")
    if not arr.all_finite(y):
        raise FloatingPointError("%s: the initial state at t=%r is not finite" % (what, t0))
    k1 = arr.K[0]
    fun(t0, y.parts, k1.parts, ws)
    nfe = 1
    if first_step is None:
        habs = _first_step(fun, t0, y, k1, direction, q, rtol, atol, span, arr, what)
        nfe += 1
    else:
        habs = min(first_step, span)
    t = t0
    ts = [t0]
    rec = _Record(layout, ws, prefix + ".rec") if record else None
    ys = [y0] if record else None
    end = 0  # without a record, the new state goes to arr.ends[end]
    accepted = rejected = 0
    last_rejected = False
    last_nonfinite = False
    while direction * (t1 - t) > 0:
        if accepted + rejected >= max_steps:
            raise _stalled(
                what, "dopri5 could not reach t1=%r within max_steps=%d steps: it reached t=%r"
                % (t1, max_steps, t),
                t, habs, accepted, rejected, y, diagnose,
                "Loosen rtol/atol (rtol=%g, atol=%g), raise max_steps, or use a fixed-step "
                "solver" % (rtol, atol))
        tiny = 16 * math.ulp(max(abs(t), abs(t1), 1e-300))
        if habs < tiny:
            if last_nonfinite:
                raise FloatingPointError(
                    "%s: the state becomes non-finite (NaN or Inf) right after t=%r: the step "
                    "size was cut to %.3g without reaching a finite state" % (what, t, habs))
            raise _stalled(what, "step size underflow (%.3g) at t=%r (the problem is too stiff "
                           "or singular for rtol=%g, atol=%g)" % (habs, t, rtol, atol),
                           t, habs, accepted, rejected, y, diagnose,
                           "Loosen rtol/atol, shorten the interval, or check the field for a "
                           "blow-up near t")
        t_new = t + direction * habs
        if direction * (t_new - t1) >= 0 or direction * (t1 - t_new) < tiny:
            t_new = t1
        h = t_new - t  # the step actually taken, so that the grid ts replays it bit for bit
        y_new = rec.row(accepted) if record else arr.ends[end]
        ks, y_new, n = _rk_step(fun, t, y, h, tab, arr, y_new, k1=k1, nstages=tab.stages)
        nfe += n
        err = _combo(arr.err, None, h, dw, ks, arr.term)
        en = _error_norm(y, y_new, err, rtol, atol, arr.scale, arr.term)
        if math.isfinite(en) and en <= 1.0:
            t, y = t_new, y_new
            accepted += 1
            ts.append(t)
            if record:
                ys.append(y.parts)
            end = 1 - end
            # FSAL: the last stage is f at the new state, K_1 of the next step; its array
            # becomes arr.K[0], which the next step reads and does not write
            k1 = ks[-1]
            arr.K[0], arr.K[-1] = arr.K[-1], arr.K[0]
            fac = facmax if en == 0 else min(facmax, max(facmin, safety * en ** -expo))
            if last_rejected:
                fac = min(fac, 1.0)
            habs = abs(h) * fac
            last_rejected = last_nonfinite = False
        else:
            rejected += 1
            if rejections is not None:
                rejections.append((t, h, en))
            last_nonfinite = not math.isfinite(en)
            fac = facmin if last_nonfinite else max(facmin, safety * en ** -expo)
            habs = abs(h) * min(fac, 1.0)
            last_rejected = True
    return y.parts, ts, ys, nfe, accepted, rejected


# ============================================================================ public solves
def odeint(field, z0, theta, t0, t1, solver="rk4", steps=None, h=None, rtol=1e-6, atol=1e-8,
           max_steps=10_000, first_step=None, record=True):
    """Solve dz/dt = field.f(t, z, theta) from z(t0) = z0 to t1 > t0 (BW neural ODE forward pass).

    Parameters
    ----------
    field : vector field with ``f(t, z, theta) -> (B, n)`` and ``vjp`` (see manualgrad.ode);
        its optional ``check(theta, z0)`` validates ``theta`` once; its optional ``f_into``
        (see :func:`f_into_of`) is used instead of ``f``.
    z0 : (B, n) initial states (rows are examples).
    theta : parameter mapping passed to the field.
    t0, t1 : host floats, t1 > t0.
    solver : 'euler', 'midpoint', 'rk4' (fixed step: give ``steps`` or ``h``) or 'dopri5'
        (adaptive: ``rtol``, ``atol`` > 0, ``max_steps`` attempts at most, optional
        ``first_step``); or the implicit 'beuler', 'sdirk2' (fixed step, for stiff fields; the
        field needs ``jac``; :mod:`manualgrad.ode.implicit`).
    record : keep the state at every accepted time in ``sol.zs`` (the discrete adjoint needs it;
        memory grows with the number of steps). With False only the current state is kept.

    Returns a :class:`Solution`, whose arrays are the caller's own (a solve that returns its
    trajectory takes no workspace). Raises ValueError for bad arguments (a fixed ``h`` that does
    not divide t1 - t0 says by how much and suggests ``steps``), FloatingPointError when the
    state becomes non-finite (NaN or Inf: with the step and its times, for every solver) or an
    implicit solver's Newton iteration fails, :class:`SolverStalled` (a RuntimeError) when
    dopri5 cannot reach t1 within ``max_steps`` attempts or its step size underflows.
    """
    return solve(field, z0, theta, t0, t1, solver, steps, h, rtol, atol, max_steps, first_step,
                 record=record)


def odeint_grid(field, z0, theta, ts, solver="rk4", record=True):
    """Fixed steps of ``solver`` over the host grid ``ts`` (strictly increasing, len >= 2).

    For dopri5 this takes its 5th-order step (6 stages, no error control) on every interval:
    ``odeint_grid(field, z0, theta, sol.ts, "dopri5")`` replays an adaptive solve ``sol`` bit for
    bit, which is what its discrete adjoint differentiates. Returns a :class:`Solution` (the
    caller's own arrays).
    """
    return solve(field, z0, theta, solver=solver, grid=ts, record=record)


def solve(field, z0, theta, t0=0.0, t1=1.0, solver="rk4", steps=None, h=None, rtol=1e-6,
          atol=1e-8, max_steps=10_000, first_step=None, grid=None, record=True, ws=None):
    """The engine's forward solve: :func:`odeint` over [t0, t1], or :func:`odeint_grid` over the
    host grid ``grid`` when it is given (t0, t1, steps, h, rtol, atol, max_steps, first_step are
    then not used), with the solve's arrays in workspace ``ws`` (None: fresh arrays).

    With a workspace the Solution's z1 and zs are workspace buffers, for a gradient function to
    use inside one call (it copies out with :func:`fresh` what it returns); :func:`odeint` and
    :func:`odeint_grid` are this function with ``ws=None``. Same checks and errors as odeint.
    """
    tab = get_solver(solver)
    rejections, iters = [], 0
    if grid is not None:
        ts = _check_grid(grid)
        check_interval(ts[0], ts[-1], "odeint_grid")
        z0, theta = check_problem(field, z0, theta)
        what = "odeint_grid"
        t0, t1 = ts[0], ts[-1]
    else:
        t0, t1 = check_interval(t0, t1)
        z0, theta = check_problem(field, z0, theta)
        ts, rtol, atol, max_steps, first_step = solve_settings(
            tab, t0, t1, steps, h, rtol, atol, max_steps, first_step,
            "; use a fixed-step solver, or odeint_grid(..., ts, %r) for a fixed grid" % tab.name)
        what = "odeint"
    if tab.implicit:  # X-IMPL: Newton on every stage, the field's Jacobian (implicit.py)
        from . import implicit as _implicit
        y, ts, ys, nfe, acc, rej, iters = _implicit.integrate(field, z0, theta, tab, ts, record,
                                                              what)
    else:
        y, ts, ys, nfe, acc, rej = integrate_into(
            _forward_fun(field, theta), (z0,), tab, ts, t0, t1, rtol, atol, max_steps,
            first_step, record, what, ws, "ode.fwd", diagnose=stall_diagnosis(field, theta),
            rejections=rejections)
    return Solution(y[0], ts, None if ys is None else [s[0] for s in ys], nfe, tab.name, acc,
                    rej, t0, t1, rejections, iters, tab)


def stall_diagnosis(field, theta):
    """``diagnose(t, y)`` for :class:`SolverStalled`: BW's stiffness ratio of the field's
    Jacobian at the state y[0] reached (:func:`~manualgrad.ode.implicit.stiffness`), or None
    when the field has no ``jac``."""
    if not callable(getattr(field, "jac", None)):
        return None

    def diagnose(t, y):
        from . import implicit as _implicit
        return _implicit.stiffness(field, t, y[0], theta)
    return diagnose
