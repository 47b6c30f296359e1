"""Truncated backpropagation through time, TBPTT(k1, k2) (Williams & Peng 1990; the baseline of
FW Sec. V), as a gradient function for :func:`manualgrad.train.fit`.

Windows. The steps 1..T are cut into J = ceil(T / k1) forward windows of k1 steps (the last may
be shorter). Window j covers the steps a_j + 1 .. b_j with a_j = (j - 1) k1, b_j = min(j k1, T);
its losses are backpropagated through the window and k2 - k1 >= 0 steps before it, down to step
c_j + 1 with c_j = max(a_j - (k2 - k1), 0): k2 steps from the end of a full window (so k2 > k1
reaches back into the previous windows; a short last window gets its own steps plus k2 - k1).
The forward is never cut: the hidden state is carried from window to window exactly, and it is
*detached* where a backward stops: h_{c_j} is treated as a constant.

The truncated objective (what this module differentiates). Let theta0 be the current
parameters and h_{c_j}(theta0) the states of the full forward pass at theta0. For parameters
theta, let h^(j)_t(theta), t = c_j + 1 .. b_j, be the states of the RNN restarted at step c_j
from the frozen h_{c_j}(theta0) and run with theta. Then::

    G(theta; theta0) = (1/B) sum_b sum_j sum_{t in L_j} w_j l(o^(j)_t(theta), y_t)
    o^(j)_t = W_out h^(j)_t + b2

with the loss steps L_j and weights w_j:

- many-to-many: L_j = {a_j + 1, .., b_j} (every step once), w_j = 1;
- many-to-one, ``loss_at="last"`` (default): only the last window has a loss, L_J = {T},
  w_J = 1; earlier windows only carry the state forward;
- many-to-one, ``loss_at="window_ends"``: the sequence's target y is also asked for at the
  end of every window, L_j = {b_j}, w_j = 1 / J (the mean over the window ends).

At theta = theta0 the restarted states equal the full forward's, so G(theta0; theta0) is the
ordinary loss F (for "last" and many-to-many), and the TBPTT gradient is the exact gradient of
G in theta at theta0::

    g_TBPTT(theta0) = d/dtheta G(theta; theta0) |_{theta = theta0}

which :func:`truncated_objective` evaluates and finite differences can check. With
k1 = k2 = T there is one window, c_1 = 0, and G = F: the gradient is full BPTT
(:func:`manualgrad.rnn.loss_and_grad`), bit for bit.

For each window the backward is the adjoint system of the vanilla RNN (JP eqs. 6-8) run over the
steps c_j + 1 .. b_j of the full forward's trajectory, with the window's output terms injected
at the steps of L_j, and the parameter gradients are JP eqs. (9)-(13) summed over those steps;
the window gradients are added up (one gradient per minibatch, one optimizer step: the
parameters do not change between the windows of one call; docs/frank_wolfe.md). The vanilla RNN
supports any k2 >= k1; the other cells of :mod:`manualgrad.cells` support k2 = k1 (windows that
do not overlap are just the cell's own sweep from the carried state).
"""
from __future__ import annotations

from . import backend, losses, rnn
from ._validate import float_array

__all__ = ["windows", "loss_and_grad", "truncated_objective", "grad_fn", "LOSS_AT"]

LOSS_AT = ("last", "window_ends")
"""Where a many-to-one loss is taken: only at T, or at the end of every forward window."""


def _window_length(k, name, T):
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError("%s must be an integer window length in [1, T], got %r" % (name, k))
    if k < 1:
        raise ValueError("%s must be >= 1 (a window of at least one step), got %d" % (name, k))
    if k > T:
        raise ValueError("%s = %d is longer than the sequence (T = %d steps); use at most T "
                         "(k1 = k2 = T is full BPTT)" % (name, k, T))
    return k


def windows(T, k1, k2=None):
    """The TBPTT(k1, k2) windows of a sequence of T steps: a list of ``(a, b, c)``.

    Window j covers steps a+1..b (a = (j-1) k1, b = min(j k1, T)); its backward runs down to
    step c+1, c = max(a - (k2 - k1), 0) (k2 steps back from b for a full window). ``k2``
    defaults to k1. Errors: k1, k2 not integers in [1, T], or k2 < k1 (each window's losses
    must at least be backpropagated through it).
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError("T must be a positive integer (sequence length), got %r" % (T,))
    k1 = _window_length(k1, "k1", T)
    k2 = k1 if k2 is None else _window_length(k2, "k2", T)
    if k2 < k1:
        raise ValueError("k2 (backward window, %d) must be >= k1 (forward window, %d): "
                         "TBPTT(k1, k2) backpropagates each window's losses through the window "
                         "and k2 - k1 steps before it" % (k2, k1))
    out = []
    for a in range(0, T, k1):
        b = min(a + k1, T)
        out.append((a, b, max(a - (k2 - k1), 0)))
    return out


def _check_loss_at(loss_at, many_to_many):
    if loss_at not in LOSS_AT:
        raise ValueError("loss_at must be one of %s, got %r" % (", ".join(LOSS_AT), loss_at))
    if many_to_many and loss_at != "last":
        raise ValueError("loss_at=%r is for many-to-one targets; many-to-many losses are taken "
                         "at every step already" % (loss_at,))


def _loss_steps(wins, T, many_to_many, loss_at):
    """For each window, (list of 1-based loss steps, weight) following the module docstring."""
    J = len(wins)
    out = []
    for a, b, _ in wins:
        if many_to_many:
            out.append((list(range(a + 1, b + 1)), 1.0))
        elif loss_at == "window_ends":
            out.append(([b], 1.0 / J))
        else:
            out.append(([T], 1.0) if b == T else ([], 1.0))
    return out


def _x0(state0):
    if state0 is None:
        return None
    if not hasattr(state0, "keys") or set(state0) != {"h0"}:
        raise ValueError("state0 for the vanilla RNN must be a mapping with the key 'h0', got %r"
                         % (sorted(state0) if hasattr(state0, "keys") else state0,))
    return state0["h0"]


def loss_and_grad(params, u, y, k1, k2=None, cell="rnn", state0=None, output="sigmoid",
                  loss="bce", many_to_many=False, loss_at="last", **options):
    """``(F, grads)``: the loss and the TBPTT(k1, k2) gradient (module docstring: g_TBPTT).

    Parameters
    ----------
    params : the cell's parameter mapping (vanilla RNN: W_rec, W_in, b1, W_out, b2)
    u : (T, B, p) time-major inputs;  y : targets as for the cell's ``sweep`` ((B, l), (B,) or
        labels; many-to-many (T, B, l) or (T, B))
    k1 : forward window, integer in [1, T];  k2 : backward window in [k1, T] (default k1)
    cell : a name of :mod:`manualgrad.cells` or a cell module; k2 > k1 needs ``"rnn"`` (the
        vanilla RNN's own path; the adapter object ``cells.RNN`` takes the generic path)
    state0 : initial state mapping (``{"h0": x0}`` for the RNN) or None (zeros)
    output, loss, many_to_many : the head, as for :func:`manualgrad.rnn.sweep`
    loss_at : ``"last"`` or ``"window_ends"`` (many-to-one only; module docstring)
    options : passed to the cell (e.g. ``activation="tanh"`` for the RNN)

    F is G(theta0; theta0): the ordinary batch-mean loss for "last" and many-to-many (the
    forward is exact), the mean window-end loss for "window_ends". ``grads`` has the keys of
    ``params``. ``fit`` uses it as ``functools.partial(loss_and_grad, k1=.., k2=.., ...)`` or
    :func:`grad_fn`.
    """
    _check_loss_at(loss_at, many_to_many)
    u = float_array(u, "u", ndim=3, axes=("T", "B", "p"))
    T = u.shape[0]
    wins = windows(T, k1, k2)
    name = cell if isinstance(cell, str) else getattr(cell, "__name__", repr(cell))
    if cell == "rnn" or cell is rnn:      # the RNN's own path (any k2 >= k1)
        return _rnn_tbptt(params, u, y, wins, _x0(state0), output, loss, many_to_many, loss_at,
                          options)
    if any(c != a for a, _, c in wins):
        raise ValueError("TBPTT(k1, k2) with k2 > k1 (overlapping backward windows) is written "
                         "for the vanilla RNN only (cell='rnn'); got cell %r with k1 = %d, "
                         "k2 = %d" % (name, k1, k2))
    return _cell_tbptt(params, u, y, wins, cell, state0, output, loss, many_to_many, loss_at,
                       options)


def grad_fn(k1, k2=None, **kwargs):
    """``fit``'s gradient function for TBPTT(k1, k2): ``(params, u, y) -> (F, grads)``.

    ``kwargs`` as for :func:`loss_and_grad` (cell, output, loss, many_to_many, loss_at,
    activation, ...). The windows are checked against each batch's T when it is called.
    """
    def tbptt_grad(params, u, y):
        return loss_and_grad(params, u, y, k1, k2, **kwargs)
    tbptt_grad.__doc__ = "TBPTT(%r, %r) gradient, %r" % (k1, k2 if k2 is not None else k1, kwargs)
    return tbptt_grad


# ------------------------------------------------------------------------- the vanilla RNN
def _rnn_tbptt(params, u, y, wins, x0, output, loss, many_to_many, loss_at, options):
    activation = options.pop("activation", "tanh")
    if options:
        raise TypeError("unexpected option(s) for the vanilla RNN: %s" % ", ".join(options))
    params = rnn.check_params(params)
    T = u.shape[0]
    # The full forward, exact: many-to-one keeps rnn.forward's head at T (so that k1 = k2 = T
    # repeats rnn.sweep operation for operation); other window ends get their head below.
    traj = rnn.forward(params, u, x0, activation, output, many_to_many)
    head, Y = losses.head_and_targets(traj.output, loss, traj.o, y)
    W_out, b2 = params["W_out"], params["b2"]
    steps = _loss_steps(wins, T, many_to_many, loss_at)
    F = 0.0
    grads = None
    for (a, b, c), (at, w) in zip(wins, steps):
        if not at:
            continue
        if many_to_many:
            o, yhat = traj.o[c:b], traj.yhat[c:b]
            g_out = backend.xp().zeros_like(o)
            sl = slice(a - c, b - c)           # the window's own steps inside c+1..b
            g_out[sl] = head.delta_out(o[sl], yhat[sl], Y[a:b])
            F_w = losses.per_example(head.value(o[sl], yhat[sl], Y[a:b])).mean()
        else:
            if b == T:
                o, yhat = traj.o, traj.yhat
            else:
                o = traj.x[b] @ W_out.T + b2
                yhat = traj.output.f(o)
            g_out = head.delta_out(o, yhat, Y)
            F_w = losses.per_example(head.value(o, yhat, Y)).mean()
            if w != 1.0:
                g_out = g_out * w
        F = F + (F_w if w == 1.0 else w * F_w)
        sub = rnn.Trajectory(u[c:b], traj.x[c:b + 1], traj.z[c:b], o, yhat, traj.activation,
                             traj.output, many_to_many)
        adj = rnn.adjoint(params, sub, delta_out=g_out)   # JP (7)-(8) over steps c+1..b
        g = rnn.gradients(params, sub, adj)               # JP (9)-(13); x_c is a constant
        grads = g if grads is None else {n: grads[n] + g[n] for n in grads}
    return F, grads


def truncated_objective(params, u, y, k1, k2=None, anchor=None, state0=None,
                        activation="tanh", output="sigmoid", loss="bce", many_to_many=False,
                        loss_at="last"):
    """G(params; anchor) of the module docstring, for the vanilla RNN (a 0-d array).

    The states where the backward windows stop, h_{c_j}, are taken from a full forward pass at
    ``anchor`` (default: ``params``) and frozen; each window is re-run with ``params`` from its
    frozen state. The gradient of this function in ``params`` at ``params = anchor`` is the
    TBPTT gradient of :func:`loss_and_grad` (what the tests check by finite differences).
    """
    _check_loss_at(loss_at, many_to_many)
    u = float_array(u, "u", ndim=3, axes=("T", "B", "p"))
    T = u.shape[0]
    wins = windows(T, k1, k2)
    x0 = _x0(state0)
    full = rnn.forward(params if anchor is None else anchor, u, x0, activation, output,
                       many_to_many)
    frozen = full.x
    head, Y = losses.head_and_targets(full.output, loss, full.o, y)
    G = 0.0
    for (a, b, c), (at, w) in zip(wins, _loss_steps(wins, T, many_to_many, loss_at)):
        if not at:
            continue
        tr = rnn.forward(params, u[c:b], frozen[c], activation, output, many_to_many)
        if many_to_many:
            sl = slice(a - c, b - c)
            G = G + losses.per_example(head.value(tr.o[sl], tr.yhat[sl], Y[a:b])).mean()
        else:
            G = G + w * losses.per_example(head.value(tr.o, tr.yhat, Y)).mean()
    return G


# ------------------------------------------------------------------------- any cell, k2 = k1
def _cell_tbptt(params, u, y, wins, cell, state0, output, loss, many_to_many, loss_at, options):
    from . import cells
    mod = cells.get(cell) if isinstance(cell, str) else cell
    T = u.shape[0]
    steps = _loss_steps(wins, T, many_to_many, loss_at)
    state, F, grads = state0, 0.0, None
    for (a, b, _), (at, w) in zip(wins, steps):
        kw = dict(options, state0=state, output=output, many_to_many=many_to_many)
        if not at:                                        # no loss here: carry the state
            traj = mod.forward(params, u[a:b], **kw)
            state = cells.final_state(mod, params, traj)
            continue
        yw = y[a:b] if many_to_many else y
        s = mod.sweep(params, u[a:b], yw, loss=loss, **kw)   # grad_state0 dropped: detached
        F = F + (s.F if w == 1.0 else w * s.F)
        g = s.grads if w == 1.0 else {n: w * v for n, v in s.grads.items()}
        grads = g if grads is None else {n: grads[n] + g[n] for n in grads}
        state = cells.final_state(mod, params, s.traj)
    return F, grads
