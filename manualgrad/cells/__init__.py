"""Recurrent cells with hand-written BPTT, behind one interface, and a registry by name.

Every cell module (and the adapter for the vanilla RNN of :mod:`manualgrad.rnn`) provides::

    PARAM_NAMES                                   the keys of its parameter mapping
    STATE_NAMES                                   the keys of its initial state, e.g. ("h0", "c0")
    init_params(p, m, l, seed=0, **options) -> dict
    forward(params, u, state0=None, output="sigmoid", many_to_many=False, **options) -> trajectory
    sweep(params, u, y, state0=None, output="sigmoid", loss="bce", many_to_many=False, **options) -> sweep
    loss(params, u, y, ..., workspace=True) -> F  batch mean of the per-example losses
    loss_and_grad(params, u, y, ..., workspace=True) -> (F, grads)

Conventions shared with :mod:`manualgrad.rnn` (docs/conventions.md): u is time-major (T, B, p);
the head is o = W_out h_k + b2, yhat = sigma_out(o) at the last step (many-to-one) or at every step
(many-to-many, losses summed over steps); F is the batch mean of per-example losses.
``state0`` is a mapping with the keys ``STATE_NAMES`` (each (B, m) or (m,)) or None (zeros).

The sweep object has at least: ``F``, ``F_b`` (B,), ``grads`` (like params), ``grad_state0``
(a mapping like state0: dF/d(initial state)), ``traj.h`` (T+1, B, m) with h[k] = h_k, and
``adj.lam`` (T, B, m) with adj.lam[k-1] = -dF_b/dh_k (JP's sign, per example, not divided by B),
``adj.lam0`` = -dF_b/dh_0, so :func:`manualgrad.inspect.adjoint_norms` works for every cell.
Cells with more state expose its adjoints too (e.g. ``adj.lam_c`` for the LSTM cell state).

One record skeleton (:mod:`manualgrad.rnn`): every Trajectory extends ``rnn.TrajectoryRecord``
(the input ``u``, hence ``T`` and ``B``), every Adjoint ``rnn.AdjointRecord`` (``lam_at(k)``),
and every cell's Sweep is ``rnn.StateSweep`` (F, F_b, traj, adj, grads, grad_state0, y, head).
The head (``rnn.head_loss``, ``rnn.head_terms``), dF/d(initial state) (``rnn.state_grad``) and
the input checks (``init_params`` arguments, u, state0, mu and s: :mod:`manualgrad._validate`)
are shared too, so a new cell is its equations: forward, adjoint, gradients.

``workspace`` (``loss`` and ``loss_and_grad``): where the trajectory, the adjoints and the
temporaries live between calls, a :class:`~manualgrad.backend.Workspace` (True: the calling
thread's default, False: fresh arrays), so a training loop over equal shapes allocates nothing
after its first step. The rule: a workspace holds only what stays inside a call; F and the
gradients are always the caller's own arrays, bit for bit the same with or without one.
``forward`` and ``sweep`` return trajectories and adjoints and take no workspace.
"""
from __future__ import annotations

from types import SimpleNamespace

from .. import rnn

__all__ = ["CELLS", "get", "names", "register", "state_names", "final_state", "generate"]


def _rnn_kwargs(state0, options):
    x0 = None
    if state0 is not None:
        if not hasattr(state0, "keys") or set(state0) != {"h0"}:
            raise ValueError("state0 for the vanilla RNN must be a mapping with the key 'h0', "
                             "got %r" % (sorted(state0) if hasattr(state0, "keys") else state0,))
        x0 = state0["h0"]
    return dict(options, x0=x0)


def _rnn_forward(params, u, state0=None, output="sigmoid", many_to_many=False, **options):
    traj = rnn.forward(params, u, output=output, many_to_many=many_to_many,
                       **_rnn_kwargs(state0, options))
    traj.h = traj.x
    return traj


def _rnn_sweep(params, u, y, state0=None, output="sigmoid", loss="bce", many_to_many=False,
               **options):
    s = rnn.sweep(params, u, y, output=output, loss=loss, many_to_many=many_to_many,
                  **_rnn_kwargs(state0, options))
    s.traj.h = s.traj.x
    s.grad_state0 = {"h0": s.grad_x0}
    return s


def _rnn_loss(params, u, y, state0=None, output="sigmoid", loss="bce", many_to_many=False,
              workspace=True, **options):
    return rnn.loss(params, u, y, output=output, loss=loss, many_to_many=many_to_many,
                    workspace=workspace, **_rnn_kwargs(state0, options))


def _rnn_loss_and_grad(params, u, y, state0=None, output="sigmoid", loss="bce",
                       many_to_many=False, workspace=True, **options):
    return rnn.loss_and_grad(params, u, y, output=output, loss=loss, many_to_many=many_to_many,
                             workspace=workspace, **_rnn_kwargs(state0, options))


RNN = SimpleNamespace(
    __name__="manualgrad.cells.rnn", __doc__=rnn.__doc__, PARAM_NAMES=rnn.PARAM_NAMES,
    STATE_NAMES=("h0",), init_params=rnn.init_params, forward=_rnn_forward, sweep=_rnn_sweep,
    loss=_rnn_loss, loss_and_grad=_rnn_loss_and_grad)
"""The vanilla RNN (JP eq. 5, BW simple RNN) under the cell interface (state0 = {"h0": x0})."""

CELLS = {"rnn": RNN}
"""name -> cell module (or adapter). Cells register themselves on import of this package."""


def register(name, module):
    """Add a cell module to :data:`CELLS` (it must provide the interface above)."""
    missing = [a for a in ("PARAM_NAMES", "STATE_NAMES", "init_params", "forward", "sweep",
                           "loss", "loss_and_grad") if not hasattr(module, a)]
    if missing:
        raise TypeError("cell %r lacks %s" % (name, ", ".join(missing)))
    CELLS[name] = module
    return module


def names():
    return tuple(CELLS)


def get(name):
    """The cell by name; unknown names list the valid ones."""
    if not isinstance(name, str):
        raise TypeError("cell must be a name, one of %s; got %r" % (", ".join(CELLS), name))
    try:
        return CELLS[name]
    except KeyError:
        raise ValueError("unknown cell %r: valid names are %s" % (name, ", ".join(CELLS))) from None


def state_names(cell, params):
    """The initial-state keys of ``cell`` for these params (a deep IndRNN has one per layer)."""
    if hasattr(cell, "state_names") and hasattr(cell, "num_layers"):
        return tuple(cell.state_names(cell.num_layers(params)))
    return tuple(cell.STATE_NAMES)


def final_state(cell, params, traj):
    """The state after the last step of ``traj``, as a ``state0`` mapping for the next call.

    By the naming convention of the interface: "h0" -> traj.h[-1], "c0" -> traj.c[-1],
    "v0" -> traj.v[-1], and "h0_i" -> traj.h_layers[i-1][-1] for stacked cells.
    """
    out = {}
    for name in state_names(cell, params):
        if name.startswith("h0_"):
            out[name] = traj.h_layers[int(name[3:]) - 1][-1]
        else:
            out[name] = getattr(traj, name[:-1])[-1]
    return out


def generate(cell, params, u_first, steps, feedback, state0=None, **options):
    """One-to-many generation (BW): run ``cell`` one step at a time, feeding its output back.

    ``u_first`` (B, p) is the first input; after step t the output yhat_t (B, l) is turned into
    the next input by ``feedback(yhat_t, t) -> (B, p)`` (e.g. a sampled one-hot character). The
    state is carried exactly (:func:`final_state`), so with a feedback that returns the true
    next inputs (teacher forcing) this equals one many-to-many forward pass. Returns the outputs
    as an array (steps, B, l) of the active backend.
    """
    from .. import backend
    xp = backend.xp()
    if isinstance(cell, str):
        cell = get(cell)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError("steps must be a positive integer, got %r" % (steps,))
    u_t, state, outs = u_first, state0, []
    for t in range(steps):
        traj = cell.forward(params, u_t[None], state0=state, many_to_many=True, **options)
        outs.append(traj.yhat[0])
        state = final_state(cell, params, traj)
        if t + 1 < steps:
            u_t = feedback(traj.yhat[0], t)
    return xp.stack(outs)


# --- the cells, registered on import (imported here, after the registry exists)
from . import gru, indrnn, lstm, momentum, momentum_lstm  # noqa: E402

register("momentum_rnn", momentum)
register("lstm", lstm)
register("momentum_lstm", momentum_lstm)
register("indrnn", indrnn)
register("gru", gru)
