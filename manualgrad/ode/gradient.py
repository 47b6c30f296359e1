"""One gradient entry point for the ODE models: solve, readout, head, adjoint (BW Theorem 1).

A model on an ODE solve (:mod:`~manualgrad.ode.node`, :mod:`~manualgrad.ode.hbnode`) gives a
vector field, the initial state z0 (B, N) and a *state packing*: which part h of the state
z(T) the loss reads (the whole state for BW-NODE, h of z = [h, m] for the HBNODE). Everything
after that is the same for every model and lives here, once::

    z(T)      = solve(field, z0, theta)                          (solvers.solve)
    h(T)      = packing.observe(z(T))                            (B, n)
    o         = h(T) W_out^T + b_out    (o = h(T) without W_out)  (B, l)        (readout)
    F         = mean_b head(o_b, y_b)                            (losses.get_head)
    dF/do     = -delta_out / B                                   (B, l)
    dF/dW_out = (dF/do)^T h(T),  dF/db_out = sum_b dF/do,  dF/dh(T) = dF/do W_out
    a(T)      = dF/dz(T) = packing.cotangent(dF/dh(T), z(T))     (B, N)
    (dF/dz0, dF/dtheta) = METHODS[method](field, solution, theta, a(T))

The methods are a registry, :data:`METHODS`: ``"discrete"`` (reverse mode through the solver's
own steps, :func:`~manualgrad.ode.adjoint.discrete_sweep`; needs the recorded trajectory),
``"continuous"`` (BW Theorem 1, eqs. (3), (8)-(11): the augmented state integrated backward,
:func:`~manualgrad.ode.adjoint.continuous_sweep`; stores nothing) and ``"checkpointed"``
(X-CKPT, :mod:`~manualgrad.ode.checkpoint`: the discrete adjoint from ``checkpoints`` stored
states, segments recomputed on Griewank's binomial schedule; its Method has its own forward
pass and reports its schedule in ``info``). A new method (an implicit solver's adjoint) is one
:class:`Method` added to the registry: every model gets it, with the same readout, head, info
and workspace rules.

Non-finite values: the solves raise FloatingPointError when a state is no longer finite
(:mod:`~manualgrad.ode.solvers`), the discrete sweep when the adjoint is; :func:`loss_and_grad`
raises it too when the loss F or dF/dz(T) overflows while z(T) is finite (a huge but finite
state; the message says how large it is).

Workspaces (docs/workspace.md): :func:`loss_and_grad` takes the resolved workspace ``ws`` of its
caller (a :class:`~manualgrad.backend.Workspace` or None) and returns only the caller's own
arrays: F, the gradients and every array of ``info``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .. import backend, losses
from .._validate import float_array
from . import adjoint as _adjoint
from . import checkpoint as _checkpoint
from . import solvers as _solvers

__all__ = ["READOUT_NAMES", "WHOLE", "Whole", "Method", "METHODS", "method_names",
           "check_method", "check_checkpoints", "check_readout", "readout", "head_loss",
           "loss_and_grad"]

READOUT_NAMES = ("W_out", "b_out")
"""The readout's parameters, W_out (l, n) and b_out (l,); never passed to the field."""


# ============================================================================ state packing
class Whole:
    """The state packing of a model whose loss reads the whole state: h = z, dF/dz = dF/dh.

    A packing has ``observe(z) -> h`` (a view of z (B, N), shape (B, n)) and
    ``cotangent(a_h, z) -> a_z`` (dF/dz (B, N) from dF/dh (B, n); zero where the loss does not
    read z). :data:`WHOLE` is the instance BW-NODE uses; the HBNODE's reads h of z = [h, m]
    (:data:`manualgrad.ode.hbnode.POSITION`).
    """

    def observe(self, z):
        return z

    def cotangent(self, a_h, z):
        return a_h

    def __repr__(self):
        return "Whole()"


WHOLE = Whole()


# ============================================================================ readout and head
def check_readout(params, P, n):
    """Validate the readout W_out (l, n), b_out (l,) of ``params`` into ``P`` (moved to the
    backend); ``n`` is the size of h, on which the readout acts. Returns P."""
    if "b_out" in params and "W_out" not in params:
        raise ValueError("params has b_out but no W_out: the readout needs W_out (l, n)")
    if "W_out" in params:
        W = float_array(params["W_out"], "params['W_out']", ndim=2, axes=("l", "n"))
        if W.shape[1] != n:
            raise ValueError("params['W_out'] has shape %s, expected (l, n) with n = %d (the "
                             "readout acts on h(T))" % (tuple(W.shape), n))
        P["W_out"] = W
        if "b_out" in params:
            bo = float_array(params["b_out"], "params['b_out']", ndim=1, axes=("l",))
            if tuple(bo.shape) != (W.shape[0],):
                raise ValueError("params['b_out'] has shape %s, expected (l,) = (%d,)"
                                 % (tuple(bo.shape), W.shape[0]))
            P["b_out"] = bo
    return P


def readout(params, hT):
    """o = h(T) W_out^T + b_out (B, l), or h(T) itself when params has no W_out."""
    if "W_out" not in params:
        return hT
    o = hT @ params["W_out"].T
    if "b_out" in params:
        o = o + params["b_out"]
    return o


def head_loss(params, hT, y, output="identity", loss="mse"):
    """F = batch mean of head(readout(h(T)), y): the forward value of :func:`loss_and_grad`."""
    o = readout(params, hT)
    head, Y = losses.head_and_targets(output, loss, o, y)
    return head.value(o, head.output.f(o), Y).mean()


# ============================================================================ methods
@dataclass(frozen=True)
class Method:
    """A gradient method of an ODE solve.

    ``record``: the forward solve must keep its trajectory (``sol.zs``). ``sweep(field, sol,
    theta, aT, opts, ws) -> (a0, grads, steps_backward)``: dF/dz0 (may be a workspace buffer),
    {name: dF/dtheta[name]} for every key of theta (the caller's own arrays) and the number of
    backward steps; ``opts`` holds the forward and adjoint settings of :func:`loss_and_grad`.

    Optional: ``forward(field, z0, P, opts, ws) -> Solution`` replaces the plain forward solve
    (the checkpointed adjoint stores its checkpoints on the way), and ``report(sol) -> dict``
    adds the method's own keys (``info_keys``) to ``info`` after the sweep.
    """

    name: str
    record: bool
    sweep: Callable
    description: str = ""
    forward: Optional[Callable] = None
    report: Optional[Callable] = None
    info_keys: tuple = ()


def _discrete(field, sol, theta, aT, opts, ws):
    a0, g = _adjoint.discrete_sweep(field, sol, theta, aT, ws)  # g: new arrays
    return a0, g, sol.steps


def _continuous(field, sol, theta, aT, opts, ws):
    asolver = opts["solver"] if opts["adjoint_solver"] is None else opts["adjoint_solver"]
    if _solvers.get_solver(asolver).adaptive:
        kw = dict(rtol=opts["rtol"] if opts["adjoint_rtol"] is None else opts["adjoint_rtol"],
                  atol=opts["atol"] if opts["adjoint_atol"] is None else opts["adjoint_atol"],
                  max_steps=opts["max_steps"])
    elif opts["adjoint_steps"] is not None:
        kw = dict(steps=opts["adjoint_steps"])
    elif not _solvers.get_solver(opts["solver"]).adaptive:
        kw = dict(steps=opts["steps"], h=opts["h"])
    else:
        raise ValueError("method='continuous' with a fixed-step adjoint_solver after an "
                         "adaptive forward solve needs adjoint_steps=")
    res = _adjoint.continuous_sweep(field, sol.z1, theta, aT, sol.t0, sol.t1, asolver, ws=ws,
                                    **kw)
    g = {k: _solvers.fresh(v, ws) for k, v in res.grads.items()}  # a_theta(t0)
    return res.a0, g, res.steps


def _checkpointed_forward(field, z0, P, opts, ws):
    return _checkpoint.forward(field, z0, P, opts["t0"], opts["t1"], opts["solver"],
                               opts["steps"], opts["h"], opts["rtol"], opts["atol"],
                               opts["max_steps"], opts["checkpoints"], ws)


def _checkpointed(field, sol, theta, aT, opts, ws):
    a0, g = _checkpoint.sweep(field, sol, theta, aT, ws)  # X-CKPT; g: new arrays
    return a0, g, sol.steps


def _checkpointed_report(sol):
    s = sol.schedule
    return {"checkpoints": s.checkpoints, "checkpoint_steps": list(s.checkpoint_steps),
            "stored_states": s.stored_states, "recomputed_steps": sol.recomputed,
            "peak_states": s.peak_states}


METHODS = {
    "discrete": Method("discrete", True, _discrete,
                       "exact gradient of the computed solution: reverse mode through the "
                       "solver's steps (stores the trajectory)"),
    "continuous": Method("continuous", False, _continuous,
                         "BW Theorem 1: [z, a, a_theta] integrated backward with adjoint_solver "
                         "(stores nothing; the gradient of the exact flow up to O(h^p))"),
    "checkpointed": Method("checkpointed", False, _checkpointed,
                           "the discrete adjoint from `checkpoints` stored states: segments "
                           "recomputed on a binomial (revolve) schedule (X-CKPT)",
                           forward=_checkpointed_forward, report=_checkpointed_report,
                           info_keys=("checkpoints", "checkpoint_steps", "stored_states",
                                      "recomputed_steps", "peak_states")),
}
"""Registry name -> :class:`Method`: the gradient methods every ODE model offers."""


def method_names():
    return tuple(METHODS)


def check_method(method):
    """The :class:`Method` called ``method`` (ValueError naming the valid ones otherwise)."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError("method must be %s, got %r"
                         % (" or ".join(repr(m) for m in METHODS), method))
    return METHODS[method]


def check_checkpoints(checkpoints, method):
    """The checkpoint budget of ``method``: an int >= 1 for 'checkpointed' (required there,
    :func:`~manualgrad.ode.checkpoint.check_checkpoints`), None for the others (ValueError if
    given: they store all states or none)."""
    if method == "checkpointed":
        if checkpoints is None:
            raise ValueError("method='checkpointed' needs checkpoints= (an integer >= 1: the "
                             "number of forward states stored at once, z0 included; e.g. "
                             "checkpoints=8)")
        return _checkpoint.check_checkpoints(checkpoints, method)
    if checkpoints is not None:
        raise ValueError("checkpoints=%r is used only by method='checkpointed', got method=%r"
                         % (checkpoints, method))
    return None


# ============================================================================ entry point
def loss_and_grad(field, z0, P, y, t0=0.0, t1=1.0, solver="rk4", steps=None, h=None,
                  method="discrete", rtol=1e-6, atol=1e-8, max_steps=10_000, output="identity",
                  loss="mse", adjoint_solver=None, adjoint_steps=None, adjoint_rtol=None,
                  adjoint_atol=None, packing=WHOLE, ws=None, checkpoints=None):
    """``(F, grads, info)``: a loss on h(T) of the solve of ``field`` from z0 and its gradient.

    Parameters
    ----------
    field : the model's vector field (the ODE protocol of :mod:`manualgrad.ode`); wrapped here
        in :class:`~manualgrad.ode.solvers.Counted`.
    z0 : (B, N) the initial state, validated (it may live in ``ws``).
    P : the validated parameters: the field's and the readout's (:data:`READOUT_NAMES`, acting
        on h(T)); the field gets every other key.
    y : targets for the head.
    t0, t1, solver, steps, h, rtol, atol, max_steps : the forward solve (``solvers.odeint``).
    method : a name of :data:`METHODS` ('discrete', 'continuous' or 'checkpointed').
    output, loss : the head (default identity + mse: F = mean_b 1/2 ||o_b - y_b||^2).
    adjoint_solver, adjoint_steps, adjoint_rtol, adjoint_atol : the backward solve of
        'continuous' (default: the forward settings; a fixed-step adjoint_solver after a dopri5
        forward solve needs adjoint_steps).
    packing : which part of z(T) the loss reads (:class:`Whole`: all of it).
    ws : the caller's resolved workspace (:func:`manualgrad.backend.workspace_scope`), or None.
    checkpoints : 'checkpointed' only (and required there): the number c >= 1 of forward states
        stored at once, z0 included (:mod:`~manualgrad.ode.checkpoint`, X-CKPT); checked before
        any work.

    Returns
    -------
    F : 0-d array.  grads : {name: dF/dP[name]} for every key of P, in P's order.
    info : ``grad_z0`` = dF/dz0 (B, N), ``zT`` (B, N), ``hT`` = packing.observe(zT),
    ``aT`` = dF/dz(T) (B, N), ``nfe_forward``, ``nfe_backward`` (f calls of the backward pass),
    ``nvjp_backward``, ``steps_forward``, ``steps_backward``, ``ts`` (forward grid, host list),
    ``method``, ``solver``; with 'checkpointed' also ``checkpoints`` (c), ``checkpoint_steps``
    (the steps the forward pass stored, 0 first), ``stored_states`` (their number),
    ``recomputed_steps`` (forward steps done again by the sweep: T(N, c) - (N - 1), dopri5
    T(N, c) + 1) and ``peak_states`` (most forward states held at once, <= c + 2; 'discrete'
    holds N + 1). Every array is the caller's own.
    """
    meth = check_method(method)
    checkpoints = check_checkpoints(checkpoints, method)
    opts = dict(t0=t0, t1=t1, solver=solver, steps=steps, h=h, rtol=rtol, atol=atol,
                max_steps=max_steps, adjoint_solver=adjoint_solver, adjoint_steps=adjoint_steps,
                adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol, checkpoints=checkpoints)
    fld = _solvers.Counted(field)
    if meth.forward is not None:
        sol = meth.forward(fld, z0, P, opts, ws)
    else:
        sol = _solvers.solve(fld, z0, P, t0, t1, solver, steps, h, rtol, atol, max_steps,
                             record=meth.record, ws=ws)
    nfe_forward = fld.nfe
    zT = sol.z1.copy()  # returned in info: the caller's own, not a view into the trajectory
    hT = packing.observe(zT)
    with backend.errstate(over="ignore", invalid="ignore"):  # non-finite F, aT raise below
        o = readout(P, hT)
        head, Y = losses.head_and_targets(output, loss, o, y)
        yo = head.output.f(o)
        F = head.value(o, yo, Y).mean()
        B = hT.shape[0]
        dF_do = head.delta_out(o, yo, Y) * (-1.0 / B)  # dF/do (B, l)
        readout_grads = {}
        if "W_out" in P:
            a_hT = dF_do @ P["W_out"]
            readout_grads["W_out"] = dF_do.T @ hT
            if "b_out" in P:
                readout_grads["b_out"] = dF_do.sum(axis=0)
        else:
            a_hT = dF_do
        aT = packing.cotangent(a_hT, zT)
        finite = _solvers.all_finite([F, aT] + list(readout_grads.values()))
    if not finite:
        _overflowing_loss(F, zT, method, output, loss)
    theta = {k: v for k, v in P.items() if k not in READOUT_NAMES}
    fld.nfe = 0
    a0, g, steps_back = meth.sweep(fld, sol, theta, aT, opts, ws)
    grads = dict(g)
    grads.update(readout_grads)
    grads = {k: grads[k] for k in P}  # the order of params
    info = {"grad_z0": _solvers.fresh(a0, ws), "zT": zT, "hT": hT, "aT": aT,
            "nfe_forward": nfe_forward, "nfe_backward": fld.nfe, "nvjp_backward": fld.nvjp,
            "steps_forward": sol.steps, "steps_backward": steps_back, "ts": sol.ts,
            "method": method, "solver": sol.solver,
            "solve": sol.diagnostics()}  # X-IMPL: hs range, rejections, Newton iterations
    if meth.report is not None:
        info.update(meth.report(sol))
    return F, grads, info


def _overflowing_loss(F, zT, method, output, loss):
    """Raise FloatingPointError for a loss F, a cotangent dF/dz(T) or a readout gradient that is
    not finite on a finite z(T) (the error path: the host conversions here are fine)."""
    big = float(backend.xp().abs(zT).max())
    raise FloatingPointError(
        "loss_and_grad (method=%r): the loss F = %r, its gradient dF/dz(T) or the readout's "
        "gradient is not finite (NaN or Inf), although the final state z(T) is finite (largest "
        "|z(T)| = %.3g): the head (output=%r, loss=%r) overflows there. A state this large "
        "means the solve grows too fast: use a smaller step (more steps), a shorter interval "
        "or smaller weights" % (method, float(F), big, output, loss))
