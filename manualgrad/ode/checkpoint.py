"""A checkpointed discrete adjoint: the gradient of ``method="discrete"`` from a few stored states
(catalog row X-CKPT; Griewank's binomial checkpointing, "revolve"; docs/ode.md section 4.1).

The discrete adjoint (:func:`~manualgrad.ode.adjoint.discrete_sweep`) reverses step k of a solve
z_{k+1} = Phi_k(z_k) from the stored state z_k, so it keeps all N + 1 states. With a budget of
c checkpoints (states stored at once, z0 included) the forward pass keeps only a few of them and
the backward sweep recomputes the others from the nearest checkpoint to its left. Reversing the
steps [a, b) with c checkpoints, z_a being one of them, costs (in forward steps recomputed)

    T(1, c) = 0,       T(l, 0) = infinity (l >= 2),
    T(l, c) = min_{0<j<l}  j + T(l - j, c - 1) + T(j, c)          (l = b - a >= 2)      (R)

advance j steps from z_a and store z_{a+j}; reverse [a+j, b) with the c - 1 checkpoints left;
drop z_{a+j}'s slot and reverse [a, a+j) with c again (the last step of an interval is reversed
from the working state, which holds no slot: hence T(1, 0) = 0). Griewank (1992) solved (R):
with beta(c, r) = C(c + r, c) and r the repetition number, beta(c, r - 1) < l <= beta(c, r),

    T(l, c) = r l - beta(c + 1, r - 1),                                                (G)

and j attains the minimum of (R) for every j in

    [max(beta(c, r - 2), l - beta(c - 1, r)),  min(beta(c, r - 1), l - beta(c - 1, r - 1))]  (J)

(:func:`optimal_cost`, :func:`optimal_split`; ``tests/ode/test_checkpoint.py`` checks (G) and
(J) against the recursion (R) solved by dynamic programming). Each step is recomputed at most r
times; for c ~ log2 N the cost is about N log2 N, for a fixed c it grows like N^(1 + 1/c).

**The schedule** (:func:`schedule`) is this recursion written out as actions on step indices:

* ``("advance", a, b)``: solve from the checkpoint z_a to z_b (``record=False``), store z_b;
* ``("record", a, b)``: solve from z_a with ``record=True`` over [t_a, t_{b-1}] (a leaf: an
  interval with l = b - a <= c + 1, where (R) stores every state, T = l - 1); in the forward
  pass the last leaf is recorded up to t_N, which gives z(T);
* ``("reverse", a, b)``: :func:`~manualgrad.ode.adjoint.discrete_sweep` over the leaf's Solution
  [z_a, ..., z_{b-1}, z_b] (z_b: the checkpoint, or z(T)) from dL/dz_b to dL/dz_a; the
  theta-gradients of the leaves are added up; z_b and the leaf's record are then dropped.

The forward pass is the first descent of the recursion (advance, store, ..., record the last
leaf to t_N): it computes z(T) with N steps and places the checkpoints on the way, so for the
fixed-step solvers the forward steps done again are T(N, c) - (N - 1). For dopri5 the adaptive
solve decides the grid (``record=False``) and the sweep replays the whole schedule on the
accepted grid with :func:`~manualgrad.ode.solvers.solve` (``grid=``; the replay of
``odeint_grid``, bit for bit the adaptive solve's states), so T(N, c) + 1 forward steps are done
again. Peak: at most c + 2 states at once (c checkpoints, the working state, the end state z_b of
the leaf being reversed, which an implicit step's adjoint may read), against N + 1 for
``"discrete"``; ``peak_states`` is counted exactly (:attr:`Schedule.peak_states`).

**Equality with "discrete".** The states are recomputed by the same steps from the same numbers,
so they are bit for bit the states of the discrete adjoint, and so are F, z(T) and dL/dz0 (the
adjoint passes from leaf to leaf unchanged). The theta-gradients are the same sums in another
grouping (one partial sum per leaf, then the leaves added): equal to round-off (AGREEMENT,
1e-12 relative), and bit for bit when one leaf holds the whole solve (c >= N - 1).

Arrays: the checkpoints are copies (the solve's end state lives in its workspace); the recorded
leaves are fresh arrays (their lengths vary, a workspace would keep several of them); the
advances and the sweeps use the caller's workspace ``ws``.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field as _dcfield
from typing import Optional

from .. import backend
from .._validate import integer
from . import adjoint as _adjoint
from . import solvers as _solvers

__all__ = ["beta", "repetitions", "optimal_cost", "optimal_split", "Schedule", "schedule",
           "check_checkpoints", "CheckpointedSolution", "forward", "sweep"]


# ============================================================================ the binomial schedule
def beta(c, r):
    """beta(c, r) = C(c + r, c): the most steps c checkpoints reverse with r repetitions
    (beta(c, -1) = 0)."""
    return 0 if r < 0 else math.comb(c + r, c)


def repetitions(l, c):
    """The repetition number r of (G): the smallest r >= 0 with beta(c, r) >= l (l >= 1, c >= 1)."""
    r = 0
    while beta(c, r) < l:
        r += 1
    return r


def optimal_cost(l, c):
    """T(l, c) of (G) = r l - beta(c + 1, r - 1): the fewest forward steps (the first pass
    included, the reverse steps not) that reverse l steps with c checkpoints (l, c >= 1)."""
    r = repetitions(l, c)
    return r * l - beta(c + 1, r - 1)


def optimal_split(l, c):
    """An optimal first split j of (R) for l >= c + 2 steps (the largest j of (J)): advance j
    steps, store the state, reverse the l - j steps right of it with c - 1 checkpoints."""
    r = repetitions(l, c)
    return min(beta(c, r - 1), l - beta(c - 1, r - 1))


@dataclass(frozen=True)
class Schedule:
    """The actions of a checkpointed discrete adjoint over N steps with c checkpoints.

    ``forward``: the forward pass (advances, then the last leaf recorded up to t_N);
    ``backward``: the sweep (advances, records, reverses), right to left. Actions are tuples
    ``(kind, a, b)`` of step indices (see the module docstring).
    """

    steps: int
    checkpoints: int
    forward: tuple
    backward: tuple

    @property
    def checkpoint_steps(self):
        """The step indices of the states the forward pass stores (0 first: z0)."""
        return (0,) + tuple(b for kind, _, b in self.forward if kind == "advance")

    @property
    def stored_states(self):
        """States the forward pass keeps, z0 included (<= c + 1: the last may be the working
        state of the recursion, which holds no slot)."""
        return len(self.checkpoint_steps)

    @staticmethod
    def _cost(actions, last):
        return sum(b - a if kind == "advance" else (b - a if last else b - a - 1)
                   for kind, a, b in actions if kind != "reverse")

    @property
    def forward_steps(self):
        """Steps of the forward pass: N."""
        return self._cost(self.forward, True)

    @property
    def recomputed_steps(self):
        """Forward steps the backward sweep does again: T(N, c) - (N - 1) (:func:`optimal_cost`)."""
        return self._cost(self.backward, False)

    @property
    def peak_states(self):
        """The most forward states held at once: checkpoints (z0 included), the rows of the
        recorded leaf and, while a leaf is reversed, its end state (<= c + 2; N + 1 when
        c >= N). The solver's own stage arrays (the same for every method) are not counted."""
        alive, rows, peak = {0}, 0, 1
        for phase, actions in (("forward", self.forward), ("backward", self.backward)):
            for kind, a, b in actions:
                if kind == "advance":
                    alive.add(b)
                elif kind == "record":
                    rows = b - a if phase == "forward" else b - a - 1
                peak = max(peak, len(alive) + rows)
                if kind == "reverse":
                    rows = 0
                    alive.discard(b)
        return peak


def schedule(steps, checkpoints):
    """The optimal :class:`Schedule` of N = ``steps`` steps with c = ``checkpoints`` (ints >= 1):
    the recursion (R) with the splits of :func:`optimal_split`, leaves of l <= c + 1 steps.

    Its ``recomputed_steps`` equal T(N, c) - (N - 1) of (G). Host integers only (no arrays);
    cached.
    """
    return _schedule(integer(steps, "steps", minimum=1), check_checkpoints(checkpoints))


@functools.lru_cache(maxsize=128)
def _schedule(N, c):
    fwd = []
    a, k = 0, c
    while N - a > k + 1:  # the first descent: advance and store, c - 1 fewer slots each time
        m = a + optimal_split(N - a, k)
        if k < 1 or not a < m < N:
            raise RuntimeError("checkpoint schedule: invalid split %d of [%d, %d] with %d "
                               "checkpoints" % (m, a, N, k))
        fwd.append(("advance", a, m))
        a, k = m, k - 1
    fwd.append(("record", a, N))
    back = []
    stack = [(0, N, c, True)]  # intervals to reverse, the last pushed first; True: first descent
    while stack:
        a, b, k, first = stack.pop()
        if b - a <= k + 1:  # a leaf: every state of it stored
            if not first:
                back.append(("record", a, b))
            back.append(("reverse", a, b))
            continue
        m = a + optimal_split(b - a, k)
        if k < 1 or not a < m < b:  # (R) has no schedule without a slot: a bug, never a hang
            raise RuntimeError("checkpoint schedule: invalid split %d of [%d, %d] with %d "
                               "checkpoints" % (m, a, b, k))
        if not first:
            back.append(("advance", a, m))
        stack.append((a, m, k, False))
        stack.append((m, b, k - 1, first))
    return Schedule(N, c, tuple(fwd), tuple(back))


def check_checkpoints(checkpoints, method="checkpointed"):
    """The budget c as an int >= 1 (an integer number of stored states, z0 included); TypeError
    for a non-integer (bools and floats too), ValueError below 1 -- before any work."""
    if isinstance(checkpoints, bool) or isinstance(checkpoints, float) or not hasattr(
            checkpoints, "__index__"):
        raise TypeError("method=%r: checkpoints must be an integer (the number of forward states "
                        "stored at once, z0 included; >= 1), got %r" % (method, checkpoints))
    c = int(checkpoints)
    if c < 1:
        raise ValueError("method=%r: checkpoints must be >= 1 (the number of forward states stored "
                         "at once, z0 included; 1 stores z0 only and recomputes N(N-1)/2 steps), "
                         "got %d" % (method, c))
    return c


# ============================================================================ running it
@dataclass
class CheckpointedSolution(_solvers.Solution):
    """The forward pass of the checkpointed adjoint: a :class:`~manualgrad.ode.solvers.Solution`
    (``zs`` is None) with the checkpoints ``store`` ({step: z_step}, z0 at 0), the recorded last
    leaf ``leaf`` (a Solution ending at t_N; None until the sweep replays a dopri5 solve), its
    ``schedule``, ``replay`` (dopri5: the sweep replays the forward pass on the accepted grid)
    and, after the sweep, ``recomputed`` (the forward steps it did again)."""

    store: dict = _dcfield(default_factory=dict)
    leaf: Optional[_solvers.Solution] = None
    schedule: Optional[Schedule] = None
    replay: bool = False
    recomputed: Optional[int] = None


def _advance(field, z, theta, ts, solver, ws):
    """z_b from z_a over the grid ts = [t_a, ..., t_b] (no record), copied out of the workspace."""
    seg = _solvers.solve(field, z, theta, solver=solver, grid=ts, record=False, ws=ws)
    return seg.z1.copy(), seg.steps, seg.nfe


def _run_forward(field, z0, theta, ts, solver, sched, ws):
    """The forward actions of ``sched``: ({step: checkpoint}, the last leaf's Solution, steps,
    nfe)."""
    store, steps, nfe, leaf = {0: z0}, 0, 0, None
    for kind, a, b in sched.forward:
        if kind == "advance":
            store[b], n, e = _advance(field, store[a], theta, ts[a:b + 1], solver, ws)
        else:  # the last leaf, recorded up to t_N (fresh arrays)
            leaf = _solvers.solve(field, store[a], theta, solver=solver, grid=ts[a:b + 1],
                                  record=True)
            n, e = leaf.steps, leaf.nfe
        steps, nfe = steps + n, nfe + e
    return store, leaf, steps, nfe


def forward(field, z0, theta, t0, t1, solver, steps, h, rtol, atol, max_steps, checkpoints,
            ws=None):
    """The forward pass: z(T) with the checkpoints of :func:`schedule` stored on the way.

    Fixed-step solvers: the grid t_k = t0 + (t1 - t0) k / N and the schedule's forward actions
    (N steps). Adaptive (dopri5): the adaptive solve with ``record=False`` decides the grid; the
    checkpoints are placed by the sweep's replay. Returns a :class:`CheckpointedSolution`.
    """
    c = check_checkpoints(checkpoints)
    tab = _solvers.get_solver(solver)
    if tab.adaptive:
        z0 = _solvers.check_state(z0)
        sol = _solvers.solve(field, z0, theta, t0, t1, solver, steps, h, rtol, atol, max_steps,
                             record=False, ws=ws)
        # z1 a copy: a view would keep the solve's stage arrays alive through the sweep
        return CheckpointedSolution(sol.z1.copy(), sol.ts, None, sol.nfe, sol.solver, sol.steps,
                                    sol.rejected, sol.t0, sol.t1, store={0: z0}, replay=True,
                                    schedule=schedule(sol.steps, c))
    t0, t1 = _solvers.check_interval(t0, t1)
    ts = _solvers.solve_settings(tab, t0, t1, steps, h, rtol, atol, max_steps, None)[0]
    z0, theta = _solvers.check_problem(field, z0, theta)
    sched = schedule(len(ts) - 1, c)
    store, leaf, n, nfe = _run_forward(field, z0, theta, ts, tab.name, sched, ws)
    # z1 a copy: a view would keep the leaf's record alive after its reverse (and in info["zT"])
    return CheckpointedSolution(leaf.z1.copy(), ts, None, nfe, tab.name, n, 0, t0, t1,
                                store=store, leaf=leaf, schedule=sched)


def sweep(field, csol, theta, a1, ws=None):
    """The backward sweep of the schedule: ``(a0, grads)`` = (dL/dz0, {name: dL/dtheta}) of the
    computed solution, equal to :func:`~manualgrad.ode.adjoint.discrete_sweep` of the recorded
    solve (a0 bit for bit, grads to round-off). a0 may be a workspace buffer (copy it with
    :func:`~manualgrad.ode.solvers.fresh`); grads are new arrays. Sets ``csol.recomputed``.

    The sweep releases the checkpoints and the leaf of ``csol`` as it goes (that is the memory
    bound), so a fixed-step CheckpointedSolution can be swept once (a second sweep raises
    ValueError); a dopri5 one, which keeps only z0, any number of times.
    """
    if not isinstance(csol, CheckpointedSolution):
        raise TypeError("sweep needs the CheckpointedSolution of checkpoint.forward, got %s"
                        % type(csol).__name__)
    if csol.recomputed is not None and not csol.replay:
        raise ValueError("sweep: this CheckpointedSolution was swept already (the sweep releases "
                         "its checkpoints as it goes); run checkpoint.forward again")
    sched, ts, solver = csol.schedule, csol.ts, csol.solver
    recomputed = 0
    store, leaf = csol.store, csol.leaf
    csol.leaf = None
    if csol.replay:  # dopri5: the forward pass again, on the accepted grid
        store, leaf, recomputed, _ = _run_forward(field, store[0], theta, ts, solver, sched, ws)
    adj = backend.empty(tuple(a1.shape), a1.dtype, ws, "ode.ckpt.adjoint")
    adj[...] = a1
    grads, seg = None, None
    for kind, a, b in sched.backward:
        if kind == "advance":
            store[b], n, _ = _advance(field, store[a], theta, ts[a:b + 1], solver, ws)
            recomputed += n
        elif kind == "record":  # z_a .. z_{b-1}: z_b is the checkpoint at b
            seg = None if b - a < 2 else _solvers.solve(field, store[a], theta, solver=solver,
                                                        grid=ts[a:b], record=True)
            recomputed += 0 if seg is None else seg.steps
        else:  # reverse the leaf [a, b]
            if b == sched.steps:
                part, leaf = leaf, None
            else:
                zs = ([store[a]] if seg is None else list(seg.zs)) + [store[b]]
                part = _solvers.Solution(store[b], ts[a:b + 1], zs, 0, solver, b - a, 0,
                                         ts[a], ts[b])
            a0, g = _adjoint.discrete_sweep(field, part, theta, adj, ws)
            adj[...] = a0  # a0 may be a workspace buffer of the next sweep
            if grads is None:
                grads = g
            else:
                for k, v in g.items():
                    grads[k] += v
            del part, a0, g  # a0 is a view of the sweep's arrays: release them now
            seg = None
            if b != sched.steps:
                del store[b]
    csol.recomputed = recomputed
    return adj, grads
