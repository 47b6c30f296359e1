"""The T-horizon layered system (a feed-forward net), its Lagrangian and adjoint (JP eqs. (1)-(4)).

Notation (docs/adjoint.md). Layer widths m_0, ..., m_T (they may all differ), output size l,
batch size B. Parameters as a flat dict, theta_i = (W_i, b_i) and theta_T = (W_out, b_out)::

    W_i (m_{i+1}, m_i)   b_i (m_{i+1},)      i = 0..T-1
    W_out (l, m_T)       b_out (l,)

Forward, JP eq. (1) with h_i(x_i, theta_i) = sigma(W_i x_i + b_i)::

    z_i     = W_i x_i + b_i,   x_{i+1} = h_i(x_i) = sigma(z_i)     i = 0..T-1, x_0 given
    o       = W_out x_T + b_out,   yhat = h_out(x_T) = sigma_out(o)

Lagrangian, JP eq. (3), per example b, and the batch mean that the code evaluates::

    L_b = F_b(y_b, yhat_b) + delta_b . (yhat_b - h_out(x_{T,b}))
          + sum_{i=0}^{T-1} lambda_{i,b} . (x_{i+1,b} - h_i(x_{i,b}))
    L   = (1/B) sum_b L_b                      (F = (1/B) sum_b F_b, as in manualgrad.rnn)

Multiplier index convention: ``lam[i]`` is JP eq. (3)'s lambda_i; it multiplies the constraint
that *defines* x_{i+1}, so it has x_{i+1}'s width m_{i+1}. In the RNN notation of JP eqs.
(7)-(8) the same multiplier is called lambda_{i+1}; ``manualgrad.rnn`` stores it at the same
array index (rnn ``lam[k-1]`` = lambda_k), so ``lam[i]`` means the same thing in both modules.

Stationarity (JP eq. (4) and the remarks around it), per example::

    dL/dlambda_i = 0  <=>  x_{i+1} = h_i(x_i)                    (the forward sweep)
    dL/ddelta    = 0  <=>  yhat = h_out(x_T)
    dL/dyhat     = 0  <=>  delta = -dF_b/dyhat                   (JP eq. 6)
    dL/dx_T      = 0  <=>  lambda_{T-1} = W_out^T [sigma_out'(o) o delta]
    dL/dx_i      = 0  <=>  lambda_{i-1} = W_i^T [sigma'(z_i) o lambda_i]     i = T-1..1

so lambda_i = -dF_b/dx_{i+1} (JP's sign). The adjoint of the given input is
``lam_x0`` = W_0^T [sigma'(z_0) o lambda_0] = -dF_b/dx_0 (there is no multiplier for x_0: it
is data, not a variable of L). At this solution dL/dtheta = dF/dtheta::

    dF/dW_i   = -(1/B) sum_b [sigma'(z_i) o lambda_i] x_i^T
    dF/db_i   = -(1/B) sum_b  sigma'(z_i) o lambda_i
    dF/dW_out = -(1/B) sum_b [sigma_out'(o) o delta] x_T^T
    dF/db_out = -(1/B) sum_b  sigma_out'(o) o delta

For a softmax head sigma_out' is a full Jacobian J and ``sigma_out'(o) o delta`` means J^T delta
(:meth:`manualgrad.activations.Activation.vjp`). Array layout: lists, since widths vary:
``x[i]`` (B, m_i) for i = 0..T; ``z[i]``, ``lam[i]``, ``lam_z[i]`` (B, m_{i+1}) for i = 0..T-1.
Batched rows are examples, so "W v" is written ``v @ W.T``. Equal widths and one shared
(W, b) give the input-free vanilla RNN of :mod:`manualgrad.rnn` (JP eq. 5 with u = 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from . import activations, backend, losses
from ._validate import axis_matches, float_array, head_adjoint, init_args, params_mapping

__all__ = ["param_names", "init_params", "check_params", "widths_of", "Trajectory", "Adjoint",
           "Sweep", "forward", "residuals", "lagrangian", "adjoint", "gradients", "loss",
           "sweep", "loss_and_grad"]


def param_names(T):
    """The keys of a T-layer parameter dict: W_0, b_0, ..., W_{T-1}, b_{T-1}, W_out, b_out."""
    names = []
    for i in range(T):
        names += ["W_%d" % i, "b_%d" % i]
    return tuple(names) + ("W_out", "b_out")


def init_params(widths, l, seed=0, scale=None, bias_scale=0.0, dtype=None):
    """Random parameters for JP eq. (1): layer widths ``widths`` = [m_0, ..., m_T], l outputs.

    Returns the flat dict of :func:`param_names`: W_i (m_{i+1}, m_i), b_i (m_{i+1},),
    W_out (l, m_T), b_out (l,). Weights are N(0, s^2) with s = ``scale``, or s = 1/sqrt(fan_in)
    (fan_in = m_i, the matrix's columns) when ``scale`` is None; biases N(0, bias_scale^2)
    (zero by default). Drawn on the host from ``default_rng(seed)`` in key order, so both
    backends get the same numbers. ``len(widths) == 1`` (T = 0) is a single output layer.
    """
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__len__"):
        raise TypeError("init_params: widths must be a sequence of positive integers "
                        "[m_0, ..., m_T], got %r" % (widths,))
    widths = list(widths)
    if len(widths) < 1:
        raise ValueError("init_params: widths needs at least m_0 (got an empty sequence)")
    sizes = {"widths[%d] (m_%d)" % (i, i): m for i, m in enumerate(widths)}
    sizes["l"] = l
    sizes, seed, scale, bias_scale, dtype = init_args(sizes, seed, scale, bias_scale, dtype)
    *widths, l = sizes.values()
    rng = backend.host_rng(seed)

    def std(fan_in):
        return (1.0 / fan_in ** 0.5) if scale is None else scale

    params = {}
    for i in range(len(widths) - 1):
        params["W_%d" % i] = backend.randn((widths[i + 1], widths[i]), rng=rng,
                                           scale=std(widths[i]), dtype=dtype)
        params["b_%d" % i] = backend.randn((widths[i + 1],), rng=rng, scale=bias_scale,
                                           dtype=dtype)
    params["W_out"] = backend.randn((l, widths[-1]), rng=rng, scale=std(widths[-1]), dtype=dtype)
    params["b_out"] = backend.randn((l,), rng=rng, scale=bias_scale, dtype=dtype)
    return params


def _checked(params):
    """Validate ``params``; return (dict on the backend in key order, widths tuple, l)."""
    if not hasattr(params, "keys"):
        raise TypeError("params must be a mapping with keys W_0, b_0, ..., W_out, b_out, got %s"
                        % type(params).__name__)
    T = 0
    while "W_%d" % T in params:
        T += 1
    names = param_names(T)
    extra = [str(k) for k in params if k not in names]
    if extra:
        found = "W_0..W_%d found without gaps" % (T - 1) if T else "no W_0 found"
        raise ValueError("params has unexpected key(s) %s: a layered system with T = %d layers "
                         "(%s) has exactly the keys %s"
                         % (", ".join(extra), T, found, ", ".join(names)))
    P = params_mapping(params, names, {n: (None,) * (2 if n.startswith("W") else 1)
                                       for n in names}, "the layered system")
    widths = [P["W_0"].shape[1]] if T else [P["W_out"].shape[1]]
    for i in range(T):
        W, b = P["W_%d" % i], P["b_%d" % i]
        if W.shape[1] != widths[i]:
            raise ValueError("params['W_%d'] has shape %s, expected (%d, %d): its %d columns must "
                             "match the width m_%d = %d of x_%d (the rows of params['W_%d'])"
                             % (i, tuple(W.shape), W.shape[0], widths[i], W.shape[1], i,
                                widths[i], i, i - 1))
        widths.append(W.shape[0])
        if b.shape != (W.shape[0],):
            raise ValueError("params['b_%d'] has shape %s, expected (%d,) (the rows of "
                             "params['W_%d'])" % (i, tuple(b.shape), W.shape[0], i))
    W_out, b_out = P["W_out"], P["b_out"]
    if W_out.shape[1] != widths[T]:
        raise ValueError("params['W_out'] has shape %s, expected (%d, %d): its columns must match "
                         "the width m_T = %d of the last state x_%d"
                         % (tuple(W_out.shape), W_out.shape[0], widths[T], widths[T], T))
    if b_out.shape != (W_out.shape[0],):
        raise ValueError("params['b_out'] has shape %s, expected (%d,) (the rows of "
                         "params['W_out'])" % (tuple(b_out.shape), W_out.shape[0]))
    return P, tuple(widths), W_out.shape[0]


def check_params(params):
    """Validate a layered parameter dict (keys, dtype, chained shapes); return it on the backend."""
    return _checked(params)[0]


def widths_of(params):
    """``(widths, l)``: the layer widths (m_0, ..., m_T) and output size that ``params`` imply."""
    _, widths, l = _checked(params)
    return widths, l


@dataclass
class Trajectory:
    """The forward solution of JP eq. (1) (arrays on the backend).

    x: list of T+1 arrays, x[i] = x_i of shape (B, m_i); z: list of T arrays, z[i] = W_i x_i + b_i
    of shape (B, m_{i+1}); o = W_out x_T + b_out and yhat = sigma_out(o), shape (B, l);
    activation and output are :class:`~manualgrad.activations.Activation`.
    """

    x: list
    z: list
    o: object
    yhat: object
    activation: activations.Activation
    output: activations.Activation

    @property
    def T(self):
        return len(self.z)

    @property
    def B(self):
        return self.x[0].shape[0]

    @property
    def widths(self):
        return tuple(a.shape[1] for a in self.x)

    @property
    def x0(self):
        return self.x[0]


@dataclass
class Adjoint:
    """The adjoint solution of dL/dyhat = 0 and dL/dx_i = 0 (JP eqs. 4, 6), per example.

    lam: list of T arrays, lam[i] = JP (3)'s lambda_i = -dF_b/dx_{i+1}, shape (B, m_{i+1}).
    lam_z: list of T arrays, sigma'(z_i) o lambda_i = -dF_b/dz_i (the bracket of the gradients).
    lam_x0: -dF_b/dx_0 = W_0^T [sigma'(z_0) o lambda_0], shape (B, m_0).
    delta: -dF_b/dyhat (JP eq. 6), or None when only ``delta_out`` was given.
    delta_out: -dF_b/do = sigma_out'(o)^T delta, shape (B, l).
    """

    lam: list
    lam_z: list
    lam_x0: object
    delta: Optional[object]
    delta_out: object


def _x0(x0, widths):
    x0 = float_array(x0, "x0", ndim=2, axes=("B", "m_0"))
    if x0.shape[0] < 1:
        raise ValueError("x0 must hold at least one example, got shape %s" % (tuple(x0.shape),))
    axis_matches("x0", x0, 1, "m_0, input width", widths[0],
                 "params['W_0'] has %d columns" if len(widths) > 1
                 else "params['W_out'] has %d columns")
    return x0


def forward(params, x0, activation="tanh", output="sigmoid"):
    """JP eq. (1): x_{i+1} = sigma(W_i x_i + b_i), i = 0..T-1; yhat = sigma_out(W_out x_T + b_out).

    ``x0``: (B, m_0). Returns a :class:`Trajectory` (states as a list, widths vary).
    """
    P, widths, l = _checked(params)
    act = activations.get(activation, "hidden")
    out = activations.get(output, "output", argname="output")
    x = [_x0(x0, widths)]
    z = []
    for i in range(len(widths) - 1):
        z.append(x[i] @ P["W_%d" % i].T + P["b_%d" % i])
        x.append(act.f(z[i]))
    o = x[-1] @ P["W_out"].T + P["b_out"]
    return Trajectory(x, z, o, out.f(o), act, out)


def _state_list(a, name, widths, B):
    """Check a list of per-layer arrays with shapes (B, widths[i]); return it on the backend."""
    if isinstance(a, (str, bytes)) or not hasattr(a, "__len__") or backend.is_array(a):
        raise TypeError("%s must be a list of %d arrays (widths vary by layer), got %s"
                        % (name, len(widths), type(a).__name__))
    if len(a) != len(widths):
        raise ValueError("%s must hold %d arrays (one per layer, shapes %s), got %d"
                         % (name, len(widths), [(B, m) for m in widths], len(a)))
    out = []
    for i, (v, m) in enumerate(zip(a, widths)):
        v = float_array(v, "%s[%d]" % (name, i), ndim=2, axes=("B", "width"))
        if tuple(v.shape) != (B, m):
            raise ValueError("%s[%d] must have shape (B, m_%d) = (%d, %d), got %s"
                             % (name, i, i + 1, B, m, tuple(v.shape)))
        out.append(v)
    return out


def _row_array(a, name, B, l):
    a = float_array(a, name, ndim=2, axes=("B", "l"))
    if tuple(a.shape) != (B, l):
        raise ValueError("%s must have shape (B, l) = (%d, %d), got %s"
                         % (name, B, l, tuple(a.shape)))
    return a


def _residuals(params, x0, xs, yhat, activation, output):
    P, widths, l = _checked(params)
    act = activations.get(activation, "hidden")
    out = activations.get(output, "output", argname="output")
    x0 = _x0(x0, widths)
    B = x0.shape[0]
    xs = _state_list(xs, "xs", widths[1:], B)
    yhat = _row_array(yhat, "yhat", B, l)
    states = [x0] + xs
    r = [xs[i] - act.f(states[i] @ P["W_%d" % i].T + P["b_%d" % i]) for i in range(len(xs))]
    r_out = yhat - out.f(states[-1] @ P["W_out"].T + P["b_out"])
    return r, r_out, yhat, widths


def residuals(params, x0, xs, yhat, activation="tanh", output="sigmoid"):
    """Constraint residuals of JP eq. (1) at arbitrary states: ``(r, r_out)``.

    ``xs`` = [x_1, ..., x_T] (list, xs[i] of shape (B, m_{i+1}); pass ``traj.x[1:]``), ``yhat``
    (B, l). r[i] = x_{i+1} - h_i(x_i) (shape (B, m_{i+1})), r_out = yhat - h_out(x_T) (B, l).
    Both vanish exactly at the forward solution; dL/dlambda_i = r[i] / B and
    dL/ddelta = r_out / B.
    """
    r, r_out, _, _ = _residuals(params, x0, xs, yhat, activation, output)
    return r, r_out


def lagrangian(params, x0, xs, yhat, lam, delta, y, activation="tanh", output="sigmoid",
               loss="bce"):
    """JP eq. (3), batch mean: L = (1/B) sum_b [F_b + delta_b.(yhat_b - h_out(x_T,b))
    + sum_i lambda_{i,b}.(x_{i+1,b} - h_i(x_{i,b}))], a 0-d array.

    Every argument after ``x0`` is an independent variable of L, not tied to the forward solution:
    ``xs`` = [x_1..x_T] (list, (B, m_{i+1}) each), ``yhat`` (B, l),
    ``lam`` = [lambda_0..lambda_{T-1}] (list; lam[i] multiplies the constraint defining x_{i+1},
    shape (B, m_{i+1})), ``delta`` (B, l).
    F_b = loss(yhat_b, y_b) is evaluated at the given ``yhat`` (so for bce/cross_entropy it must lie
    in the loss's domain). At the forward solution L = F whatever lam and delta; at the adjoint
    solution dL/dx_i = 0 and dL/dyhat = 0 (JP eq. 4), and dL/dtheta = dF/dtheta.
    """
    r, r_out, yhat, widths = _residuals(params, x0, xs, yhat, activation, output)
    B, l = r_out.shape
    lam = _state_list(lam, "lam", widths[1:], B)
    delta = _row_array(delta, "delta", B, l)
    head = losses.get_head(output, loss)
    Y = losses.targets(y, l, head.loss, (B,))
    L_b = head.loss.value(yhat, Y) + (delta * r_out).sum(axis=-1)  # F_b + delta.(yhat - h_out)
    for lam_i, r_i in zip(lam, r):
        L_b = L_b + (lam_i * r_i).sum(axis=-1)  # + lambda_i.(x_{i+1} - h_i(x_i))
    return L_b.mean()


def adjoint(params, traj, delta=None, *, delta_out=None):
    """The adjoint system from dL/dyhat = 0 and dL/dx_i = 0 (JP eqs. 4, 6), per example.

    ``delta`` = -dF_b/dyhat (B, l) (JP eq. 6), or ``delta_out`` = -dF_b/do (B, l), what a fused
    head gives stably. Solves, backwards,

        lambda_{T-1} = W_out^T [sigma_out'(o) o delta]        (dL/dx_T = 0)
        lambda_{i-1} = W_i^T [sigma'(z_i) o lambda_i]         (dL/dx_i = 0), i = T-1..1

    and the input adjoint lam_x0 = W_0^T [sigma'(z_0) o lambda_0] = -dF_b/dx_0. Returns an
    :class:`Adjoint` (lists, since widths vary). Pure: calling it twice gives the same answer.
    """
    P, widths, l = _checked(params)
    if not isinstance(traj, Trajectory):
        raise TypeError("adjoint: traj must be the Trajectory from layered.forward, got %s"
                        % type(traj).__name__)
    if traj.widths != widths or traj.o.shape[-1] != l:
        raise ValueError("adjoint: traj has widths %s and l = %d, but params imply widths %s and "
                         "l = %d" % (traj.widths, traj.o.shape[-1], widths, l))
    delta, delta_out = head_adjoint(traj, delta, delta_out)  # sigma_out'(o) o delta (J^T delta)
    T = traj.T
    lam, lam_z = [None] * T, [None] * T
    g = delta_out @ P["W_out"]  # dL/dx_T = 0: lambda_{T-1} (or the input adjoint if T = 0)
    for i in range(T - 1, -1, -1):
        lam[i] = g
        lam_z[i] = traj.activation.grad(traj.z[i], traj.x[i + 1]) * lam[i]  # sigma'(z_i) o lambda_i
        g = lam_z[i] @ P["W_%d" % i]  # dL/dx_i = 0: lambda_{i-1} (lam_x0 when i = 0)
    return Adjoint(lam=lam, lam_z=lam_z, lam_x0=g, delta=delta, delta_out=delta_out)


def gradients(params, traj, adj):
    """dL/dtheta at the adjoint solution = dF/dtheta of the batch mean F, a dict like ``params``.

    dF/dW_i = -(1/B) sum_b [sigma'(z_i) o lambda_i] x_i^T, dF/db_i = -(1/B) sum_b sigma'(z_i) o
    lambda_i, and likewise for W_out, b_out with sigma_out'(o) o delta. Each sum over examples is
    one matrix product.
    """
    P, widths, l = _checked(params)
    if not isinstance(adj, Adjoint):
        raise TypeError("gradients: adj must be the Adjoint from layered.adjoint, got %s"
                        % type(adj).__name__)
    if traj.widths != widths or len(adj.lam_z) != traj.T:
        raise ValueError("gradients: traj (widths %s) and adj (%d layers) do not match params "
                         "(widths %s)" % (traj.widths, len(adj.lam_z), widths))
    B = traj.B
    grads = {}
    for i in range(traj.T):
        grads["W_%d" % i] = -(adj.lam_z[i].T @ traj.x[i]) / B
        grads["b_%d" % i] = -adj.lam_z[i].sum(axis=0) / B
    grads["W_out"] = -(adj.delta_out.T @ traj.x[-1]) / B
    grads["b_out"] = -adj.delta_out.sum(axis=0) / B
    return grads


@dataclass
class Sweep:
    """One forward + adjoint sweep (see :func:`sweep`).

    F: batch-mean loss (0-d array); F_b: per-example losses (B,); traj, adj; grads: dF/dtheta;
    grad_x0: dF/dx_0 = -lam_x0 / B, shape (B, m_0); y: targets as used; head.
    """

    F: object
    F_b: object
    traj: Trajectory
    adj: Adjoint
    grads: dict
    grad_x0: object
    y: object
    head: losses.Head


def loss(params, x0, y, activation="tanh", output="sigmoid", loss="bce"):
    """F = (1/B) sum_b F_b(y_b, yhat_b) (forward only; the function finite differences check).

    ``y``: (B, l), or (B,) when l = 1, or integer labels (B,) for cross_entropy.
    """
    traj = forward(params, x0, activation, output)
    head, Y = losses.head_and_targets(traj.output, loss, traj.o, y)
    return head.value(traj.o, traj.yhat, Y).mean()


def sweep(params, x0, y, activation="tanh", output="sigmoid", loss="bce"):
    """Forward (JP 1), loss, adjoint (JP 4, 6) and gradients in one call; a :class:`Sweep`."""
    traj = forward(params, x0, activation, output)
    head, Y = losses.head_and_targets(traj.output, loss, traj.o, y)
    F_b = head.value(traj.o, traj.yhat, Y)
    adj = adjoint(params, traj, delta_out=head.delta_out(traj.o, traj.yhat, Y))  # stable if fused
    with backend.errstate(divide="ignore", invalid="ignore"):
        adj.delta = head.delta(traj.o, traj.yhat, Y)  # JP (6), for lagrangian() (inf if saturated)
    grads = gradients(params, traj, adj)
    return Sweep(F_b.mean(), F_b, traj, adj, grads, -adj.lam_x0 / traj.B, Y, head)


def loss_and_grad(params, x0, y, activation="tanh", output="sigmoid", loss="bce"):
    """``(F, grads)``: the batch-mean loss and its exact gradient (JP eqs. 1-4); keys of params."""
    s = sweep(params, x0, y, activation, output, loss)
    return s.F, s.grads
