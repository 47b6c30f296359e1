"""The vanilla RNN and its adjoint system (JP eqs. (5)-(13); BW simple RNN).

Notation (docs/conventions.md). Time-major input ``u`` of shape (T, B, p), hidden size m, output
size l. Parameters, named as in JP eq. (5)::

    W_rec (m, m)   W_in (m, p)   b1 (m,)   W_out (l, m)   b2 (l,)

Forward (JP eq. 5; BW-RNN with W_hh = W_rec, W_xh = W_in)::

    z_t   = W_rec x_{t-1} + W_in u_t + b1          t = 1..T
    x_t   = sigma(z_t)
    o     = W_out x_T + b2,   yhat = sigma_out(o)  (many-to-one, JP)
    o_t   = W_out x_t + b2,   yhat_t = sigma_out(o_t)  (many-to-many, BW: loss summed over t)

Adjoint system, with JP's sign convention lambda_k = -dF_b/dx_k, per example b (JP eqs. 6-8)::

    delta     = -dF_b/dyhat                                     (6)
    lambda_T  = W_out^T [sigma_out'(o) o delta]                 (7)
    lambda_k  = W_rec^T [sigma'(z_{k+1}) o lambda_{k+1}]        (8)   k = T-1..1
    lambda_0  = W_rec^T [sigma'(z_1) o lambda_1]                (adjoint of the initial state)

Many-to-many adds W_out^T [sigma_out'(o_k) o delta_k] to every lambda_k. Gradients of the batch
mean F = (1/B) sum_b F_b (JP eqs. 9-13; the ``o lambda_k`` dropped from eq. (11) restored)::

    dF/dW_out = -(1/B) sum_b (sigma_out'(o) o delta) x_T^T               (9)
    dF/db2    = -(1/B) sum_b  sigma_out'(o) o delta                      (10)
    dF/db1    = -(1/B) sum_b sum_k sigma'(z_k) o lambda_k                (11)
    dF/dW_rec = -(1/B) sum_b sum_k [sigma'(z_k) o lambda_k] x_{k-1}^T    (12)
    dF/dW_in  = -(1/B) sum_b sum_k [sigma'(z_k) o lambda_k] u_k^T        (13)

Array layout: ``x`` has T+1 rows (x[0] = x_0, x[k] = x_k); ``z``, ``lam`` have T rows with
z[k-1] = z_k and lam[k-1] = lambda_k. Batched rows are examples, so "W v" is written ``v @ W.T``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from . import activations, backend, gpu, losses
from ._validate import float_array, head_adjoint, init_args, params_mapping, sequence_input
from ._validate import step as _step

__all__ = ["PARAM_NAMES", "init_params", "Trajectory", "Adjoint", "Sweep", "forward", "adjoint",
           "gradients", "loss", "sweep", "loss_and_grad", "check_params", "hvp", "hvp_sweep",
           "HVPSweep", "check_direction", "TrajectoryRecord", "AdjointRecord", "SweepRecord",
           "StateSweep", "head_terms", "head_loss", "state_grad"]

PARAM_NAMES = ("W_rec", "W_in", "b1", "W_out", "b2")


def init_params(p, m, l, seed=0, scale=None, bias_scale=0.0, dtype=None):
    """Random parameters for JP eq. (5): a dict with W_rec (m,m), W_in (m,p), b1 (m,), W_out (l,m), b2 (l,).

    Weights are N(0, s^2) with s = ``scale`` for every matrix, or, when ``scale`` is None,
    s = 1/sqrt(fan_in) (fan_in = m for W_rec and W_out, p for W_in). Biases are
    N(0, bias_scale^2) (zero by default). The JP authors' code used N(0, 1) everywhere:
    ``scale=1.0, bias_scale=1.0``. Drawn on the host from ``default_rng(seed)``, in the order
    W_rec, W_in, b1, W_out, b2, so both backends get the same numbers.
    """
    (p, m, l), seed, scale, bias_scale, dtype = _init_args(p, m, l, seed, scale, bias_scale,
                                                           dtype)
    rng = backend.host_rng(seed)

    def std(fan_in):
        return (1.0 / fan_in ** 0.5) if scale is None else scale

    return {
        "W_rec": backend.randn((m, m), rng=rng, scale=std(m), dtype=dtype),
        "W_in": backend.randn((m, p), rng=rng, scale=std(p), dtype=dtype),
        "b1": backend.randn((m,), rng=rng, scale=bias_scale, dtype=dtype),
        "W_out": backend.randn((l, m), rng=rng, scale=std(m), dtype=dtype),
        "b2": backend.randn((l,), rng=rng, scale=bias_scale, dtype=dtype),
    }


def _init_args(p, m, l, seed, scale, bias_scale, dtype):
    """The checks every cell's ``init_params`` shares (sizes p, m, l; seed; scales; dtype)."""
    sizes, seed, scale, bias_scale, dtype = init_args({"p": p, "m": m, "l": l}, seed, scale,
                                                      bias_scale, dtype)
    return (sizes["p"], sizes["m"], sizes["l"]), seed, scale, bias_scale, dtype


def check_params(params):
    """Validate the five JP eq. (5) parameters against each other; return them on the backend."""
    if not hasattr(params, "keys") or "W_rec" not in params or "W_in" not in params \
            or "W_out" not in params:
        return params_mapping(params, PARAM_NAMES, {n: (None,) for n in PARAM_NAMES}, "the RNN")
    W_in, W_out = params["W_in"], params["W_out"]
    try:
        m, p, l = W_in.shape[0], W_in.shape[1], W_out.shape[0]
    except (AttributeError, IndexError):
        m = p = l = None
    return params_mapping(params, PARAM_NAMES, {
        "W_rec": (m, m), "W_in": (m, p), "b1": (m,), "W_out": (l, m), "b2": (l,)}, "the RNN")


# =============================================================================================
# The record skeleton every cell shares (manualgrad.cells): a trajectory knows its input u and
# so T and B; an adjoint gives lambda_k in the paper's indexing; a sweep holds F, F_b, traj, adj
# and grads. A cell's records add its own states and adjoints and nothing else.
# =============================================================================================

@dataclass
class TrajectoryRecord:
    """The skeleton of a cell's trajectory: the input u (T, B, p) it was run on.

    A cell's Trajectory adds its states, pre-activations, and the head's o and yhat.
    """

    u: object

    @property
    def T(self):
        return self.u.shape[0]

    @property
    def B(self):
        return self.u.shape[1]


class AdjointRecord:
    """The skeleton of a cell's adjoint: ``lam`` (T, B, m) with lam[k-1] = lambda_k = -dF_b/dh_k
    and ``lam0`` (B, m) = lambda_0, per example (JP's sign; fields or properties of the cell's
    Adjoint)."""

    def lam_at(self, k):
        """lambda_k (B, m) for k = 0..T in the paper's indexing (lambda_0 = ``lam0``)."""
        k = _step(k, 0, self.lam.shape[0], "lambda_k")
        return self.lam0 if k == 0 else self.lam[k - 1]


@dataclass
class SweepRecord:
    """The skeleton of a sweep: F (batch mean, 0-d array), F_b (B,), traj, adj, grads (dF/dtheta,
    a dict like params)."""

    F: object
    F_b: object
    traj: TrajectoryRecord
    adj: AdjointRecord
    grads: dict

    @property
    def T(self):
        return self.traj.T

    @property
    def B(self):
        return self.traj.B


@dataclass
class StateSweep(SweepRecord):
    """A cell's sweep (see its ``sweep``): the skeleton and grad_state0, dF/d(initial state), a
    mapping like ``state0`` with each entry -lambda_0 / B of that state; y: the targets as used;
    head: the :class:`~manualgrad.losses.Head`."""

    grad_state0: dict
    y: object
    head: losses.Head


def head_loss(traj, loss, y):
    """The head of a trajectory: ``(head, Y, F_b)``, the :class:`~manualgrad.losses.Head`, the
    targets as used and the per-example losses (B,)."""
    head, Y = losses.head_and_targets(traj.output, loss, traj.o, y)
    return head, Y, losses.per_example(head.value(traj.o, traj.yhat, Y))


def head_terms(traj, loss, y):
    """:func:`head_loss` and what starts the adjoint sweep: ``(head, Y, F_b, delta_out, delta)``,
    delta_out = -dF_b/do (stable for fused heads), delta = -dF_b/dyhat (JP eq. 6, for inspection;
    inf where a head saturates)."""
    head, Y, F_b = head_loss(traj, loss, y)
    delta_out = head.delta_out(traj.o, traj.yhat, Y)
    with backend.errstate(divide="ignore", invalid="ignore", over="ignore"):
        delta = head.delta(traj.o, traj.yhat, Y)
    return head, Y, F_b, delta_out, delta


def state_grad(lam0, ws, name):
    """dF/d(initial state) = -lambda_0 / B, in workspace ``ws`` under ``name`` (or fresh)."""
    g = backend.xp().negative(lam0, out=backend.empty(lam0.shape, lam0.dtype, ws, name))
    g /= lam0.shape[0]
    return g


@dataclass
class Trajectory(TrajectoryRecord):
    """What the forward sweep computed and the adjoint sweep needs (arrays on the backend).

    u (T,B,p); x (T+1,B,m) with x[k] = x_k; z (T,B,m) with z[k-1] = z_k; o, yhat (B,l), or
    (T,B,l) when ``many_to_many``; activation and output are :class:`~manualgrad.activations.Activation`.
    """

    x: object
    z: object
    o: object
    yhat: object
    activation: activations.Activation
    output: activations.Activation
    many_to_many: bool = False

    @property
    def x0(self):
        return self.x[0]

    def x_at(self, k):
        """x_k (B, m), k = 0..T (the paper's 1-based step index; x_0 is the initial state)."""
        return self.x[_step(k, 0, self.T, "x_k")]

    def z_at(self, k):
        """z_k = W_rec x_{k-1} + W_in u_k + b1 (B, m), k = 1..T."""
        return self.z[_step(k, 1, self.T, "z_k") - 1]


@dataclass
class Adjoint(AdjointRecord):
    """The adjoint solution of JP eqs. (6)-(8), per example (not divided by the batch size).

    lam (T,B,m): lam[k-1] = lambda_k = -dF_b/dx_k.  lam0 (B,m): lambda_0 = -dF_b/dx_0.
    lam_z (T,B,m): sigma'(z_k) o lambda_k = -dF_b/dz_k, the bracket of JP eqs. (11)-(13).
    delta: -dF_b/dyhat (JP eq. 6), or None when only ``delta_out`` was given.
    delta_out: -dF_b/do = sigma_out'(o)^T delta, shape of ``o``.
    """

    lam: object
    lam0: object
    lam_z: object
    delta: Optional[object]
    delta_out: object


def forward(params, u, x0=None, activation="tanh", output="sigmoid", many_to_many=False):
    """JP eq. (5): run the RNN over ``u`` (T, B, p) from ``x0`` (B, m), (m,) or zeros.

    Returns a :class:`Trajectory`. The input projection W_in u_t + b1 is one matrix product for
    all steps; then one product W_rec x_{t-1} per step.
    """
    return _forward(check_params(params), u, x0, activation, output, many_to_many)


def _forward(params, u, x0, activation, output, many_to_many, ws=None):
    """:func:`forward` with ``params`` already validated (inputs are still checked).

    ``ws``: a :class:`~manualgrad.backend.Workspace` for x, z and the step buffer, or None
    (fresh arrays, what :func:`forward` and :func:`sweep` return).
    """
    act = activations.get(activation, "hidden")
    out = activations.get(output, "output", argname="output")
    W_rec, W_in, b1, W_out, b2 = (params[n] for n in PARAM_NAMES)
    m, p = W_in.shape
    u = sequence_input(u, p, "W_in has %d columns")
    T, B, _ = u.shape
    xp = backend.xp()
    x = backend.empty((T + 1, B, m), u.dtype, ws, "rnn.x")
    if x0 is None:
        x[0] = 0.0
    else:
        x0 = float_array(x0, "x0")
        if x0.shape not in ((B, m), (m,)):
            raise ValueError("x0 must have shape (B, m) = (%d, %d) or (m,) = (%d,), got %s"
                             % (B, m, m, tuple(x0.shape)))
        x[0] = x0
    z = backend.empty((T, B, m), u.dtype, ws, "rnn.z")
    xp.matmul(u.reshape(T * B, p), W_in.T, out=z.reshape(T * B, m))  # W_in u_t, all t at once
    z += b1
    if gpu.fuses(act):  # CuPy: the loop below as one product and one kernel per step
        gpu.rnn_forward(W_rec, x, z, act.name)
    else:
        rec = backend.empty((B, m), u.dtype, ws, "rnn.rec")  # W_rec x_{t-1}, one buffer
        for t in range(T):
            xp.matmul(x[t], W_rec.T, out=rec)
            z[t] += rec
            act.f_into(z[t], x[t + 1])  # x_t = sigma(z_t)
    xs = x[1:] if many_to_many else x[T]
    o = xs @ W_out.T + b2
    return Trajectory(u, x, z, o, out.f(o), act, out, bool(many_to_many))


def adjoint(params, traj, delta=None, *, delta_out=None):
    """JP eqs. (6)-(8): every lambda_k, k = T..1, and lambda_0, from delta = -dF_b/dyhat.

    ``delta``: shape of ``traj.yhat``, per example (JP eq. 6). Alternatively ``delta_out`` =
    -dF_b/do (what a fused head gives stably; see :class:`~manualgrad.losses.Head`).
    Returns an :class:`Adjoint` whose ``lam`` has shape (T, B, m).
    """
    params = check_params(params)
    delta, delta_out = head_adjoint(traj, delta, delta_out)
    return _adjoint(params, traj, delta_out, delta)


def _adjoint(params, traj, delta_out, delta=None, ws=None):
    """The sweep of JP eqs. (7)-(8) on validated arrays (see :func:`adjoint`); ``ws`` as in
    :func:`_forward` (lam, lam_z and the step buffer)."""
    W_rec, W_out = params["W_rec"], params["W_out"]
    xp = backend.xp()
    T, B, m = traj.z.shape
    dt = traj.z.dtype
    fused = gpu.fuses(traj.activation)
    # lam_z starts as sigma'(z_k) for all k at once; step k multiplies in lambda_k
    lam_z = backend.empty((T, B, m), dt, ws, "rnn.lam_z")
    if not fused:
        traj.activation.grad_into(traj.z, traj.x[1:], lam_z)
    lam = backend.empty((T, B, m), dt, ws, "rnn.lam")
    if traj.many_to_many:  # W_out^T [sigma_out'(o_k) o delta_k], every k at once
        xp.matmul(delta_out, W_out, out=lam)  # as delta_out @ W_out, bit for bit
        rec = backend.empty((B, m), dt, ws, "rnn.rec")  # W_rec^T [sigma'(z_{k+1}) o lambda_{k+1}]
    else:
        xp.matmul(delta_out, W_out, out=lam[T - 1])  # (7)
    if fused:  # CuPy: the loop below as one kernel and one product per step
        gpu.rnn_adjoint(W_rec, traj.z, traj.x, lam, lam_z, traj.activation.name,
                        traj.many_to_many)
    else:
        for k in range(T - 1, 0, -1):  # lam[k] is lambda_{k+1}
            lam_z[k] *= lam[k]
            if traj.many_to_many:
                lam[k - 1] += xp.matmul(lam_z[k], W_rec, out=rec)  # (8) plus the step's output term
            else:
                xp.matmul(lam_z[k], W_rec, out=lam[k - 1])  # (8)
        lam_z[0] *= lam[0]
    lam0 = lam_z[0] @ W_rec
    return Adjoint(lam=lam, lam0=lam0, lam_z=lam_z, delta=delta, delta_out=delta_out)


def gradients(params, traj, lam, delta=None):
    """JP eqs. (9)-(13): dF/dtheta of the batch mean F, as a dict like ``params``.

    ``lam`` is the :class:`Adjoint` from :func:`adjoint` (then ``delta`` is not needed), or the
    raw (T, B, m) array of lambdas together with ``delta``. Each sum over steps is one matrix
    product over all T*B rows.
    """
    params = check_params(params)
    if not isinstance(lam, Adjoint):
        if delta is None:
            raise TypeError("gradients: pass the Adjoint from adjoint(), or lam with delta")
        lam = float_array(lam, "lam", ndim=3, axes=("T", "B", "m"))
        if lam.shape != traj.z.shape:
            raise ValueError("lam must have shape (T, B, m) = %s, got %s"
                             % (tuple(traj.z.shape), tuple(lam.shape)))
        ref = adjoint(params, traj, delta)
        dsigma = traj.activation.grad(traj.z, traj.x[1:])
        lam = Adjoint(lam=lam, lam0=None, lam_z=dsigma * lam, delta=ref.delta,
                      delta_out=ref.delta_out)
    return _gradients(traj, lam)


def _gradients(traj, lam):
    """JP eqs. (9)-(13) from a validated trajectory and its :class:`Adjoint` (see :func:`gradients`)."""
    T, B, m = traj.z.shape
    p, l = traj.u.shape[2], traj.o.shape[-1]
    lz = lam.lam_z.reshape(T * B, m)
    do = lam.delta_out.reshape(-1, l)
    xs = (traj.x[1:] if traj.many_to_many else traj.x[T]).reshape(-1, m)
    return {
        "W_rec": -(lz.T @ traj.x[:-1].reshape(T * B, m)) / B,  # (12)
        "W_in": -(lz.T @ traj.u.reshape(T * B, p)) / B,  # (13)
        "b1": -lz.sum(axis=0) / B,  # (11)
        "W_out": -(do.T @ xs) / B,  # (9)
        "b2": -do.sum(axis=0) / B,  # (10)
    }


@dataclass
class Sweep(SweepRecord):
    """Everything one forward + adjoint sweep produced (see :func:`sweep`).

    F: batch mean loss (0-d array of the backend); F_b: per-example losses (B,); traj, adj;
    grads: dF/dtheta; grad_x0: dF/dx_0 = -lambda_0 / B, shape (B, m); y: targets as used;
    params: the parameters as validated (on the active backend and dtype).
    """

    grad_x0: object
    y: object
    head: losses.Head
    params: dict = None


def loss(params, u, y, x0=None, activation="tanh", output="sigmoid", loss="bce",
         many_to_many=False, workspace=True):
    """F = batch mean of F_b (forward only; the function that finite differences check).

    ``workspace`` as in :func:`loss_and_grad` (the trajectory lives there; F is fresh).
    """
    params = check_params(params)
    with backend.workspace_scope(workspace) as ws:
        traj = _forward(params, u, x0, activation, output, many_to_many, ws)
        return head_loss(traj, loss, y)[2].mean()


def sweep(params, u, y, x0=None, activation="tanh", output="sigmoid", loss="bce",
          many_to_many=False):
    """Forward (JP 5), loss, adjoint (JP 6-8) and gradients (JP 9-13) in one call; a :class:`Sweep`.

    ``y``: targets, shape (B, l) (or (B,) when l = 1, or integer labels (B,) for
    cross_entropy); many-to-many: (T, B, l) or (T, B). Every array of the Sweep is the caller's
    own (no workspace).
    """
    params = check_params(params)  # validated once; the sweeps below trust their inputs
    return _sweep(params, u, y, x0, activation, output, loss, many_to_many)


def _sweep(params, u, y, x0, activation, output, loss, many_to_many, ws=None):
    """:func:`sweep` on validated ``params``; trajectory and adjoints in workspace ``ws`` (if
    any), the loss and the gradients always fresh."""
    traj = _forward(params, u, x0, activation, output, many_to_many, ws)
    head, Y, F_b, delta_out, delta = head_terms(traj, loss, y)  # delta: JP (6)
    adj = _adjoint(params, traj, delta_out, delta, ws)
    grads = _gradients(traj, adj)
    return Sweep(F_b.mean(), F_b, traj, adj, grads, -adj.lam0 / traj.B, Y, head, params)


def loss_and_grad(params, u, y, x0=None, activation="tanh", output="sigmoid", loss="bce",
                  many_to_many=False, workspace=True):
    """``(F, grads)``: the batch-mean loss and its exact gradient (JP eqs. 5-13).

    ``grads`` is a dict with the keys of ``params``. For the adjoints themselves use
    :func:`sweep`. Defaults follow the LTG task: tanh hidden units, sigmoid output, BCE.
    ``workspace``: where the trajectory, the adjoints and the temporaries live between calls
    (:class:`~manualgrad.backend.Workspace`; True: the calling thread's default, False: fresh
    arrays). F and grads are always the caller's own arrays; results are bit for bit the same
    either way.
    """
    params = check_params(params)
    with backend.workspace_scope(workspace) as ws:
        s = _sweep(params, u, y, x0, activation, output, loss, many_to_many, ws)
        return s.F, s.grads


# =============================================================================================
# Second-order adjoint: Hessian-vector products of F in the parameters
# (JP Sec. I, refs [4],[5]: second-order adjoint; what is differentiated: JP eqs. (5)-(13)).
# Derivation and tests: docs/hvp.md.
# =============================================================================================

@dataclass
class HVPSweep:
    """Everything one Hessian-vector product computed (see :func:`hvp_sweep`); arrays on the backend.

    Dots are derivatives d/de at e = 0 along theta + e v (the tangents of the quantities of
    :class:`Trajectory` and :class:`Adjoint`; x_0 and the data are not perturbed).

    F: batch-mean loss; grads: dF/dtheta (JP 9-13); traj, adj: the first-order sweeps;
    v: the direction as validated (dict like params);
    z_dot (T,B,m): z_dot[k-1] = z_dot_k;  x_dot (T+1,B,m): x_dot[k] = x_dot_k, x_dot[0] = 0;
    o_dot: shape of ``traj.o``;  g_dot = -d^2F_b/do^2 o_dot, shape of ``traj.o`` (g = adj.delta_out);
    lam_dot (T,B,m): lam_dot[k-1] = lambda_dot_k;
    a_dot (T,B,m): a_dot[k-1] = d/de [sigma'(z_k) o lambda_k];
    hv: H v, dict like params (H the Hessian of F in the five parameters).
    """

    F: object
    grads: dict
    traj: Trajectory
    adj: Adjoint
    v: dict
    z_dot: object
    x_dot: object
    o_dot: object
    g_dot: object
    lam_dot: object
    a_dot: object
    hv: dict


def check_direction(params, v, name="v"):
    """Validate a direction ``v`` in parameter space against ``params``; return it on the backend.

    ``v`` must be a mapping with exactly the keys W_rec, W_in, b1, W_out, b2, each a finite float
    array of the shape of the parameter it perturbs.
    """
    if not hasattr(v, "keys"):
        raise TypeError("%s must be a mapping like params with keys %s, got %s"
                        % (name, ", ".join(PARAM_NAMES), type(v).__name__))
    missing = [n for n in PARAM_NAMES if n not in v]
    extra = [str(k) for k in v.keys() if k not in PARAM_NAMES]
    if missing or extra:
        raise ValueError("%s must have exactly the keys of params (%s): %s"
                         % (name, ", ".join(PARAM_NAMES), "; ".join(
                             s for s in ("missing " + ", ".join(missing) if missing else "",
                                         "unexpected " + ", ".join(extra) if extra else "") if s)))
    out = {}
    for n in PARAM_NAMES:
        a = float_array(v[n], "%s[%r]" % (name, n))
        if tuple(a.shape) != tuple(params[n].shape):
            raise ValueError("%s[%r] has shape %s, expected %s (the shape of params[%r])"
                             % (name, n, tuple(a.shape), tuple(params[n].shape), n))
        out[n] = a
    return out


def _tangent(params, v, traj):
    """Tangent (forward-mode) sweep of JP eq. (5) along v: z_dot, x_dot (x_dot_0 = 0), o_dot, sigma'(z).

        z_dot_k = W_rec_dot x_{k-1} + W_rec x_dot_{k-1} + W_in_dot u_k + b1_dot     k = 1..T
        x_dot_k = sigma'(z_k) o z_dot_k
        o_dot   = W_out_dot x_T + W_out x_dot_T + b2_dot    (many-to-many: every k)

    The terms known from the forward trajectory are one product over all T*B rows each; the
    loop does one product W_rec x_dot_{k-1} per step. Shapes as in :class:`HVPSweep`.
    """
    W_rec, W_out = params["W_rec"], params["W_out"]
    xp = backend.xp()
    T, B, m = traj.z.shape
    p = traj.u.shape[2]
    z_dot = (traj.x[:-1].reshape(T * B, m) @ v["W_rec"].T
             + traj.u.reshape(T * B, p) @ v["W_in"].T).reshape(T, B, m)
    z_dot += v["b1"]
    dsig = traj.activation.grad(traj.z, traj.x[1:])  # sigma'(z_k), all k
    x_dot = xp.empty_like(traj.x)
    x_dot[0] = 0.0  # x_0 is data
    rec = xp.empty((B, m), dtype=traj.x.dtype)
    for t in range(T):  # z_dot[t] is z_dot_{t+1}
        if t > 0:  # x_dot_0 = 0: no recurrent term at the first step
            z_dot[t] += xp.matmul(x_dot[t], W_rec.T, out=rec)
        xp.multiply(dsig[t], z_dot[t], out=x_dot[t + 1])
    xs, xs_dot = (traj.x[1:], x_dot[1:]) if traj.many_to_many else (traj.x[T], x_dot[T])
    o_dot = xs @ v["W_out"].T + xs_dot @ W_out.T + v["b2"]
    return z_dot, x_dot, o_dot, dsig


def _second_order_adjoint(params, v, traj, adj, z_dot, dsig, g_dot):
    """Second-order adjoint sweep: the tangent of JP eqs. (7)-(8) along v, backwards in time.

    With a_k = sigma'(z_k) o lambda_k (``adj.lam_z``) and g = -dF_b/do (``adj.delta_out``)::

        lam_dot_T     = W_out_dot^T g + W_out^T g_dot                                 (tangent of 7)
        a_dot_k       = sigma''(z_k) o z_dot_k o lambda_k + sigma'(z_k) o lam_dot_k
        lam_dot_{k-1} = W_rec_dot^T a_k + W_rec^T a_dot_k,   k = T..2               (tangent of 8)

    Many-to-many adds W_out_dot^T g_k + W_out^T g_dot_k to every lam_dot_k. The terms known
    before the sweep are products over all rows at once; the loop does one product per step.
    Returns ``(lam_dot, a_dot)``, both (T, B, m), index k-1 for step k.
    """
    W_rec, W_out = params["W_rec"], params["W_out"]
    xp = backend.xp()
    T, B, m = z_dot.shape
    g = adj.delta_out
    # a_dot starts as sigma''(z_k) o z_dot_k o lambda_k for all k; step k adds sigma'(z_k) o lam_dot_k
    a_dot = traj.activation.vjp2(traj.z, traj.x[1:], adj.lam, z_dot)
    lam_dot = xp.empty_like(z_dot)
    if traj.many_to_many:
        lam_dot[:] = g @ v["W_out"] + g_dot @ W_out  # the output term of every step
        lam_dot[:-1] += adj.lam_z[1:] @ v["W_rec"]  # W_rec_dot^T a_{k+1}, k = 1..T-1
    else:
        lam_dot[T - 1] = g @ v["W_out"] + g_dot @ W_out  # tangent of (7)
        lam_dot[:-1] = adj.lam_z[1:] @ v["W_rec"]
    rec = xp.empty((B, m), dtype=z_dot.dtype)
    for k in range(T - 1, 0, -1):  # lam_dot[k] is lam_dot_{k+1}, complete
        a_dot[k] += dsig[k] * lam_dot[k]
        lam_dot[k - 1] += xp.matmul(a_dot[k], W_rec, out=rec)  # tangent of (8)
    a_dot[0] += dsig[0] * lam_dot[0]
    return lam_dot, a_dot


def _hvp_gradients(traj, adj, x_dot, a_dot, g_dot):
    """Tangents of JP eqs. (9)-(13) along v: H v, a dict like params (step sums as products)."""
    T, B, m = traj.z.shape
    p, l = traj.u.shape[2], traj.o.shape[-1]
    a = adj.lam_z.reshape(T * B, m)
    ad = a_dot.reshape(T * B, m)
    g = adj.delta_out.reshape(-1, l)
    gd = g_dot.reshape(-1, l)
    if traj.many_to_many:
        xs, xs_dot = traj.x[1:].reshape(T * B, m), x_dot[1:].reshape(T * B, m)
    else:
        xs, xs_dot = traj.x[T], x_dot[T]
    return {
        "W_rec": -(ad.T @ traj.x[:-1].reshape(T * B, m) + a.T @ x_dot[:-1].reshape(T * B, m)) / B,
        "W_in": -(ad.T @ traj.u.reshape(T * B, p)) / B,  # tangent of (13): u is data
        "b1": -ad.sum(axis=0) / B,  # tangent of (11)
        "W_out": -(gd.T @ xs + g.T @ xs_dot) / B,  # tangent of (9)
        "b2": -gd.sum(axis=0) / B,  # tangent of (10)
    }


def hvp_sweep(params, u, y, v, x0=None, activation="tanh", output="sigmoid", loss="bce",
              many_to_many=False):
    """H v with every intermediate tangent, for inspection: an :class:`HVPSweep` (see :func:`hvp`)."""
    params = check_params(params)
    v = check_direction(params, v)
    traj = _forward(params, u, x0, activation, output, many_to_many)  # JP (5)
    head, Y, F_b = head_loss(traj, loss, y)
    g = head.delta_out(traj.o, traj.yhat, Y)  # -dF_b/do (JP 6 composed with sigma_out')
    adj = _adjoint(params, traj, g)  # JP (7)-(8)
    grads = _gradients(traj, adj)  # JP (9)-(13)
    z_dot, x_dot, o_dot, dsig = _tangent(params, v, traj)
    g_dot = -head.hvp(traj.o, traj.yhat, Y, o_dot)  # tangent of -dF_b/do
    lam_dot, a_dot = _second_order_adjoint(params, v, traj, adj, z_dot, dsig, g_dot)
    hv = _hvp_gradients(traj, adj, x_dot, a_dot, g_dot)
    return HVPSweep(F_b.mean(), grads, traj, adj, v, z_dot, x_dot, o_dot, g_dot, lam_dot, a_dot, hv)


def hvp(params, u, y, v, x0=None, activation="tanh", output="sigmoid", loss="bce",
        many_to_many=False):
    """Hessian-vector product H v of the batch-mean F in the five parameters (second-order adjoint).

    The matrix-free primitive JP builds on (JP Sec. I, refs [4],[5]: second-order adjoint),
    applied to the RNN of JP eqs. (5)-(13): forward-over-reverse, written out by hand. One call
    runs four sweeps, each O(T B m (m + p + l)):

    1. forward (JP 5) and 2. adjoint (JP 6-8), as in :func:`sweep`;
    3. tangent sweep forward in time along v (x_dot_0 = 0; x0 and the data are not differentiated)::

           z_dot_k = W_rec_dot x_{k-1} + W_rec x_dot_{k-1} + W_in_dot u_k + b1_dot
           x_dot_k = sigma'(z_k) o z_dot_k                                  k = 1..T
           o_dot   = W_out_dot x_T + W_out x_dot_T + b2_dot            (many-to-many: every step)
           g_dot   = -d^2F_b/do^2 o_dot              (tangent of g = -dF_b/do; Head.hvp)

    4. second-order adjoint sweep backward in time (tangent of JP 7-8), a_k = sigma'(z_k) o lambda_k::

           lam_dot_T     = W_out_dot^T g + W_out^T g_dot
           a_dot_k       = sigma''(z_k) o z_dot_k o lambda_k + sigma'(z_k) o lam_dot_k
           lam_dot_{k-1} = W_rec_dot^T a_k + W_rec^T a_dot_k        (many-to-many: + the output terms)

    and the tangents of JP eqs. (9)-(13)::

           (H v)_W_rec = -(1/B) sum_b sum_k [a_dot_k x_{k-1}^T + a_k x_dot_{k-1}^T]
           (H v)_W_in  = -(1/B) sum_b sum_k  a_dot_k u_k^T
           (H v)_b1    = -(1/B) sum_b sum_k  a_dot_k
           (H v)_W_out = -(1/B) sum_b [g_dot x_T^T + g x_dot_T^T]      (many-to-many: sum over k)
           (H v)_b2    = -(1/B) sum_b  g_dot

    Parameters: ``params`` and ``v`` are mappings with keys W_rec (m,m), W_in (m,p), b1 (m,),
    W_out (l,m), b2 (l,) (``v`` is checked: exactly those keys, those shapes, finite);
    ``u`` (T,B,p), ``y``, ``x0`` and the rest as in :func:`sweep`. Returns H v as a dict like
    ``params``. relu: sigma'' = 0 away from the kink, where H v is exact; at a kink it is the
    one-sided value. For the tangents themselves use :func:`hvp_sweep`.
    """
    return hvp_sweep(params, u, y, v, x0, activation, output, loss, many_to_many).hv
