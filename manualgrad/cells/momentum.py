"""The Momentum RNN cell (BW-MRNN) and its BPTT through the (h, v) state.

The lecture's heavy-ball cell (BW, "Momentum RNN"; Nguyen et al., MomentumRNN, NeurIPS 2020), with
a bias inside sigma. Time-major input ``u`` (T, B, p), hidden size m, output size l::

    v_t = mu v_{t-1} + s W u_t                       t = 1..T      (BW-MRNN, momentum)
    z_t = U h_{t-1} + v_t + b
    h_t = sigma(z_t)
    o   = W_out h_T + b2,   yhat = sigma_out(o)      (many-to-one; many-to-many: every t)

Parameters ``U`` (m, m), ``W`` (m, p), ``b`` (m,), ``W_out`` (l, m), ``b2`` (l,). The
hyperparameters are ``mu`` in [0, 1) (momentum, default 0.6) and ``s`` > 0 (step size, default
0.6: the MomentumRNN authors' values on pixel MNIST). The initial state is (h_0, v_0), zeros
unless ``state0={"h0": ..., "v0": ...}``. With mu = 0 the cell is the vanilla RNN of
:mod:`manualgrad.rnn` with W_rec = U, W_in = s W, b1 = b.

Adjoint system through the state (h_k, v_k), JP's sign, per example b (docs/momentum.md)::

    lam_k   = -dF_b/dh_k   (v_k held fixed)       lam_v_k = -dF_b/dv_k   (h_k held fixed)
    lam_z_k = sigma'(z_k) o lam_k                 (= -dF_b/dz_k)
    lam_in_k = lam_z_k + lam_v_k                  (= -dF_b/d(s W u_k), the adjoint of the drive)

    lam_T   = W_out^T g_T,   lam_v_T = 0          (g = -dF_b/do; many-to-many adds W_out^T g_k
    lam_k   = U^T lam_z_{k+1}      (+ W_out^T g_k)            to every lam_k)
    lam_v_k = mu lam_in_{k+1}                     k = T-1..0  (k = 0: lam0, lam_v0)

so the one-step adjoint map is the transpose of the state Jacobian (see :func:`adjoint_map`)::

    [lam_k  ]   [ U^T D_{k+1}     0   ] [lam_{k+1}  ]        D_{k+1} = diag(sigma'(z_{k+1}))
    [lam_v_k] = [ mu D_{k+1}    mu I  ] [lam_v_{k+1}]

Gradients of the batch mean F = (1/B) sum_b F_b::

    dF/dU     = -(1/B) sum_b sum_k lam_z_k h_{k-1}^T
    dF/dW     = -(s/B) sum_b sum_k lam_in_k u_k^T
    dF/db     = -(1/B) sum_b sum_k lam_z_k
    dF/dW_out = -(1/B) sum_b g h_T^T      dF/db2 = -(1/B) sum_b g     (many-to-many: sum over k)
    dF/dh_0   = -lam0 / B                 dF/dv_0 = -lam_v0 / B

The lecture's factor D_k [U^T + mu Sigma_k] is about the recurrence with v eliminated,
h_{k+1} = sigma(U h_k + mu (sigma^{-1}(h_k) - U h_{k-1} - b) + s W u_{k+1} + b) (sigma must be
invertible): :func:`momentum_factor` is the partial dh_{k+1}/dh_k with h_{k-1} held fixed,
:func:`eliminated_adjoint` the adjoint of h_k in that recurrence, and docs/momentum.md relates
both to the (h, v) adjoint above and to the vanilla factor.

Array layout: ``h``, ``v`` have T+1 rows (h[k] = h_k); ``z``, ``lam``, ``lam_v`` have T rows with
z[k-1] = z_k, lam[k-1] = lam_k. Batched rows are examples, so "U h" is written ``h @ U.T``.

Workspaces: :func:`loss_and_grad` and :func:`loss` keep the trajectory, the adjoints and the step
buffer in a :class:`~manualgrad.backend.Workspace` (``workspace=``), so repeated calls with the
same shapes allocate nothing after the first. The rule: a workspace holds only what stays inside a
call; F and the gradients are always fresh arrays, and :func:`forward`, :func:`adjoint` and
:func:`sweep`, which return trajectories and adjoints, take no workspace.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .. import activations, backend, rnn
from .._validate import float_array, momentum_hyper, number, params_mapping, sequence_input
from .._validate import state_arrays, step as _step
from ..rnn import AdjointRecord, TrajectoryRecord, head_loss, head_terms, state_grad

__all__ = ["PARAM_NAMES", "STATE_NAMES", "INVERTIBLE", "init_params", "check_params",
           "check_hyper", "Trajectory", "Adjoint", "Sweep", "forward", "adjoint", "gradients",
           "sweep", "loss", "loss_and_grad", "eliminated_step", "momentum_factor",
           "lecture_factor", "vanilla_factor", "adjoint_map", "eliminated_adjoint",
           "momentum_rnn_p_form"]

PARAM_NAMES = ("U", "W", "b", "W_out", "b2")
STATE_NAMES = ("h0", "v0")
DEFAULTS = {"activation": "tanh", "mu": 0.6, "s": 0.6}


def _inv_tanh(h):
    return backend.xp().arctanh(h)


def _inv_sigmoid(h):
    xp = backend.xp()
    return xp.log(h) - xp.log1p(-h)


def _inv_softplus(h):
    # log(e^h - 1) = h + log(1 - e^-h), stable for large h
    xp = backend.xp()
    return h + xp.log(-xp.expm1(-h))


def _inv_identity(h):
    return h * 1.0


INVERTIBLE = {"tanh": _inv_tanh, "sigmoid": _inv_sigmoid, "softplus": _inv_softplus,
              "identity": _inv_identity}
"""Hidden activations with sigma' > 0 everywhere, hence invertible: name -> sigma^{-1}.
(relu is not: the v-eliminated recurrence and :func:`momentum_factor` need sigma^{-1}.)"""


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------

check_hyper = momentum_hyper
"""Validate the hyperparameters: mu in [0, 1) (momentum), s > 0 (step size); floats back."""


def init_params(p, m, l, seed=0, scale=None, bias_scale=0.0, dtype=None, activation="tanh",
                mu=0.6, s=0.6):
    """Random parameters: a dict with U (m,m), W (m,p), b (m,), W_out (l,m), b2 (l,).

    Weights N(0, std^2) with std = ``scale`` or, when None, 1/sqrt(fan_in); biases
    N(0, bias_scale^2). Drawn in the order U, W, b, W_out, b2 from ``default_rng(seed)``, the
    order of :func:`manualgrad.rnn.init_params`, so a seed gives U = W_rec and W = W_in of the
    vanilla RNN. ``activation``, ``mu``, ``s`` are checked (the cell's options) but do not
    change the draw.
    """
    activations.get(activation, "hidden")
    check_hyper(mu, s)
    P = rnn.init_params(p, m, l, seed=seed, scale=scale, bias_scale=bias_scale, dtype=dtype)
    return {"U": P["W_rec"], "W": P["W_in"], "b": P["b1"], "W_out": P["W_out"], "b2": P["b2"]}


def check_params(params):
    """Validate the five parameters against each other; return them on the backend."""
    if not hasattr(params, "keys") or "W" not in params or "W_out" not in params:
        return params_mapping(params, PARAM_NAMES, {n: (None,) for n in PARAM_NAMES},
                              "the Momentum RNN")
    try:
        m, p, l = params["W"].shape[0], params["W"].shape[1], params["W_out"].shape[0]
    except (AttributeError, IndexError):
        m = p = l = None
    return params_mapping(params, PARAM_NAMES, {
        "U": (m, m), "W": (m, p), "b": (m,), "W_out": (l, m), "b2": (l,)}, "the Momentum RNN")


# --------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------

@dataclass
class Trajectory(TrajectoryRecord):
    """What the forward sweep computed (arrays on the backend).

    u (T,B,p); h (T+1,B,m) with h[k] = h_k; v (T+1,B,m) with v[k] = v_k (v[0] = v_0);
    z (T,B,m) with z[k-1] = z_k = U h_{k-1} + v_k + b; o, yhat (B,l), or (T,B,l) when
    ``many_to_many``; activation, output: :class:`~manualgrad.activations.Activation`;
    mu, s: the hyperparameters used.
    """

    h: object
    v: object
    z: object
    o: object
    yhat: object
    activation: activations.Activation
    output: activations.Activation
    mu: float
    s: float
    many_to_many: bool = False

    @property
    def x(self):
        """Alias of ``h`` (the name :mod:`manualgrad.rnn` uses for the hidden state)."""
        return self.h


def forward(params, u, state0=None, output="sigmoid", many_to_many=False, activation="tanh",
            mu=0.6, s=0.6):
    """BW-MRNN: run the Momentum RNN over ``u`` (T, B, p) from state0 = {h0, v0} (zeros if None).

    Returns a :class:`Trajectory`. The input drive s W u_t is one matrix product for all steps;
    then one product U h_{t-1} per step.
    """
    mu, s = check_hyper(mu, s)
    return _forward(check_params(params), u, state0, activation, output, many_to_many, mu, s)


def _forward(params, u, state0, activation, output, many_to_many, mu, s, ws=None):
    """:func:`forward` with validated ``params``, ``mu``, ``s`` (inputs are still checked).

    ``ws``: a :class:`~manualgrad.backend.Workspace` for h, v, z and the step buffer, or None
    (fresh arrays, what :func:`forward` and :func:`sweep` return).
    """
    act = activations.get(activation, "hidden")
    out = activations.get(output, "output", argname="output")
    U, W, b, W_out, b2 = (params[n] for n in PARAM_NAMES)
    m, p = W.shape
    u = sequence_input(u, p, "W has %d columns")
    T, B, _ = u.shape
    h0, v0 = state_arrays(state0, STATE_NAMES, (m, m), B)
    xp = backend.xp()
    h = backend.empty((T + 1, B, m), u.dtype, ws, "momentum.h")
    v = backend.empty((T + 1, B, m), u.dtype, ws, "momentum.v")
    h[0] = 0.0 if h0 is None else h0
    v[0] = 0.0 if v0 is None else v0
    xp.matmul(u.reshape(T * B, p), W.T, out=v[1:].reshape(T * B, m))  # W u_t, all t at once
    if s != 1.0:
        v[1:] *= s
    z = backend.empty((T, B, m), u.dtype, ws, "momentum.z")
    rec = backend.empty((B, m), u.dtype, ws, "momentum.rec")  # U h_{t-1} (and mu v_{t-1})
    for t in range(T):
        if mu != 0.0:
            v[t + 1] += xp.multiply(v[t], mu, out=rec)  # v_t = mu v_{t-1} + s W u_t
        xp.add(v[t + 1], b, out=z[t])
        z[t] += xp.matmul(h[t], U.T, out=rec)
        act.f_into(z[t], h[t + 1])  # h_t = sigma(z_t)
    hs = h[1:] if many_to_many else h[T]
    o = hs @ W_out.T + b2
    return Trajectory(u, h, v, z, o, out.f(o), act, out, mu, s, bool(many_to_many))


# --------------------------------------------------------------------------------------------
# adjoint and gradients
# --------------------------------------------------------------------------------------------

@dataclass
class Adjoint(AdjointRecord):
    """The adjoints of the state (h_k, v_k), per example (not divided by the batch size).

    lam (T,B,m): lam[k-1] = -dF_b/dh_k (v_k fixed);  lam0 (B,m) = -dF_b/dh_0.
    lam_v (T,B,m): lam_v[k-1] = -dF_b/dv_k (h_k fixed);  lam_v0 (B,m) = -dF_b/dv_0.
    lam_z (T,B,m): sigma'(z_k) o lam_k = -dF_b/dz_k.
    lam_in (T,B,m): lam_z_k + lam_v_k = -dF_b/d(s W u_k), the adjoint of the input drive.
    delta: -dF_b/dyhat (inspection) or None; delta_out: -dF_b/do, shape of ``o``.
    """

    lam: object
    lam0: object
    lam_v: object
    lam_v0: object
    lam_z: object
    lam_in: object
    delta: Optional[object]
    delta_out: object


def adjoint(params, traj, delta_out):
    """The adjoint sweep through (h, v) from ``delta_out`` = -dF_b/do (shape of ``traj.o``).

    Returns an :class:`Adjoint` (recurrences in the module docstring).
    """
    params = check_params(params)
    delta_out = float_array(delta_out, "delta_out")
    if delta_out.shape != traj.o.shape:
        raise ValueError("delta_out must have the shape of traj.o %s, got %s"
                         % (tuple(traj.o.shape), tuple(delta_out.shape)))
    return _adjoint(params, traj, delta_out)


def _adjoint(params, traj, delta_out, delta=None, ws=None):
    """The adjoint sweep on validated arrays (see :func:`adjoint`); ``ws`` as in
    :func:`_forward` (every array of the Adjoint but delta and delta_out, and the step buffer)."""
    U, W_out = params["U"], params["W_out"]
    xp = backend.xp()
    T, B, m = traj.z.shape
    dt = traj.z.dtype
    mu = traj.mu
    lam_z = backend.empty((T, B, m), dt, ws, "momentum.lam_z")
    traj.activation.grad_into(traj.z, traj.h[1:], lam_z)  # sigma'(z_k), all k; times lam_k below
    lam = backend.empty((T, B, m), dt, ws, "momentum.lam")
    lam_v = backend.empty((T, B, m), dt, ws, "momentum.lam_v")
    lam_in = backend.empty((T, B, m), dt, ws, "momentum.lam_in")
    lam_v[T - 1] = 0.0  # v_T reaches nothing
    if traj.many_to_many:
        xp.matmul(delta_out, W_out, out=lam)  # W_out^T g_k, every k at once
        rec = backend.empty((B, m), dt, ws, "momentum.rec")  # U^T lam_z_{k+1}
    else:
        xp.matmul(delta_out, W_out, out=lam[T - 1])
    for k in range(T - 1, 0, -1):  # lam[k] is lam_{k+1}, complete
        lam_z[k] *= lam[k]
        xp.add(lam_z[k], lam_v[k], out=lam_in[k])
        if traj.many_to_many:
            lam[k - 1] += xp.matmul(lam_z[k], U, out=rec)  # U^T lam_z_{k+1} + output term
        else:
            xp.matmul(lam_z[k], U, out=lam[k - 1])
        xp.multiply(lam_in[k], mu, out=lam_v[k - 1])  # lam_v_k = mu lam_in_{k+1}
    lam_z[0] *= lam[0]
    xp.add(lam_z[0], lam_v[0], out=lam_in[0])
    lam0 = xp.matmul(lam_z[0], U, out=backend.empty((B, m), dt, ws, "momentum.lam0"))
    lam_v0 = xp.multiply(lam_in[0], mu, out=backend.empty((B, m), dt, ws, "momentum.lam_v0"))
    return Adjoint(lam, lam0, lam_v, lam_v0, lam_z, lam_in, delta, delta_out)


def gradients(traj, adj):
    """dF/dtheta of the batch mean F, a dict like params (each step sum: one product, T*B rows)."""
    T, B, m = traj.z.shape
    p, l = traj.u.shape[2], traj.o.shape[-1]
    lz = adj.lam_z.reshape(T * B, m)
    do = adj.delta_out.reshape(-1, l)
    hs = (traj.h[1:] if traj.many_to_many else traj.h[T]).reshape(-1, m)
    return {
        "U": -(lz.T @ traj.h[:-1].reshape(T * B, m)) / B,
        "W": -(traj.s * (adj.lam_in.reshape(T * B, m).T @ traj.u.reshape(T * B, p))) / B,
        "b": -lz.sum(axis=0) / B,
        "W_out": -(do.T @ hs) / B,
        "b2": -do.sum(axis=0) / B,
    }


Sweep = rnn.StateSweep
"""One forward + adjoint sweep (see :func:`sweep`): F, F_b, traj, adj, grads, grad_state0 =
{"h0": -lam0/B, "v0": -lam_v0/B} (each (B, m)), y, head."""


def loss(params, u, y, state0=None, output="sigmoid", loss="bce", many_to_many=False,
         activation="tanh", mu=0.6, s=0.6, workspace=True):
    """F = batch mean of F_b (forward only; the function finite differences check).

    ``workspace`` as in :func:`loss_and_grad` (the trajectory lives there; F is fresh).
    """
    mu, s = check_hyper(mu, s)
    params = check_params(params)
    with backend.workspace_scope(workspace) as ws:
        traj = _forward(params, u, state0, activation, output, many_to_many, mu, s, ws)
        return head_loss(traj, loss, y)[2].mean()


def sweep(params, u, y, state0=None, output="sigmoid", loss="bce", many_to_many=False,
          activation="tanh", mu=0.6, s=0.6):
    """Forward (BW-MRNN), loss, adjoint through (h, v) and gradients in one call; a :class:`Sweep`.

    ``u`` (T, B, p); ``y``: (B, l) (or (B,) when l = 1, integer labels (B,) for cross_entropy);
    many-to-many: (T, B, l) or (T, B). ``state0``: {"h0": (B,m) or (m,), "v0": ...} or None.
    Every array of the Sweep is the caller's own (no workspace).
    """
    mu, s = check_hyper(mu, s)
    return _sweep(check_params(params), u, y, state0, output, loss, many_to_many, activation,
                  mu, s)


def _sweep(params, u, y, state0, output, loss, many_to_many, activation, mu, s, ws=None):
    """:func:`sweep` on validated ``params``, ``mu``, ``s``: trajectory and adjoints in workspace
    ``ws`` (if any), the loss and the gradients always fresh."""
    traj = _forward(params, u, state0, activation, output, many_to_many, mu, s, ws)
    head, Y, F_b, delta_out, delta = head_terms(traj, loss, y)  # delta: inspection only
    adj = _adjoint(params, traj, delta_out, delta, ws)
    grads = gradients(traj, adj)
    gs0 = {"h0": state_grad(adj.lam0, ws, "momentum.grad_h0"),
           "v0": state_grad(adj.lam_v0, ws, "momentum.grad_v0")}
    return Sweep(F_b.mean(), F_b, traj, adj, grads, gs0, Y, head)


def loss_and_grad(params, u, y, state0=None, output="sigmoid", loss="bce", many_to_many=False,
                  activation="tanh", mu=0.6, s=0.6, workspace=True):
    """``(F, grads)``: the batch-mean loss and its exact gradient (BPTT through (h, v)).

    ``workspace``: where the trajectory, the adjoints and the temporaries live between calls
    (:class:`~manualgrad.backend.Workspace`; True: the calling thread's default, False: fresh
    arrays). F and grads are always the caller's own arrays; results are bit for bit the same
    either way. For the trajectory and the adjoints themselves use :func:`sweep`.
    """
    mu, s = check_hyper(mu, s)
    params = check_params(params)
    with backend.workspace_scope(workspace) as ws:
        sw = _sweep(params, u, y, state0, output, loss, many_to_many, activation, mu, s, ws)
        return sw.F, sw.grads


# --------------------------------------------------------------------------------------------
# the lecture's factor, the (h, v) adjoint map, the vanilla factor
# --------------------------------------------------------------------------------------------

def _invertible(act, what):
    if act.name not in INVERTIBLE:
        raise ValueError("%s needs an invertible hidden activation (one of %s): v is eliminated "
                         "through sigma^{-1}; got activation=%r"
                         % (what, ", ".join(INVERTIBLE), act.name))
    return INVERTIBLE[act.name]


def eliminated_step(params, h, h_prev, u_next, activation="tanh", mu=0.6, s=0.6):
    """The v-eliminated recurrence (BW-MRNN rewritten): h_{k+1} from h_k and h_{k-1}.

        h_{k+1} = sigma(U h_k + mu (sigma^{-1}(h_k) - U h_{k-1} - b) + s W u_{k+1} + b)

    ``h``, ``h_prev``: (B, m) (h_k, h_{k-1}); ``u_next``: (B, p) (u_{k+1}). It reproduces the
    cell's h_{k+1} because v_k = sigma^{-1}(h_k) - U h_{k-1} - b. Needs an invertible sigma
    (:data:`INVERTIBLE`) and h_k inside its range. Returns (B, m).
    """
    mu, s = check_hyper(mu, s)
    params = check_params(params)
    act = activations.get(activation, "hidden")
    inv = _invertible(act, "eliminated_step")
    U, W, b = params["U"], params["W"], params["b"]
    h = float_array(h, "h", ndim=2, axes=("B", "m"))
    h_prev = float_array(h_prev, "h_prev", ndim=2, axes=("B", "m"))
    u_next = float_array(u_next, "u_next", ndim=2, axes=("B", "p"))
    with backend.errstate(divide="ignore", invalid="ignore"):
        zk = inv(h)
    if not bool(backend.xp().isfinite(zk).all()):
        raise ValueError("eliminated_step: h lies outside the range of sigma=%r (sigma^{-1}(h) "
                         "is not finite)" % act.name)
    zn = h @ U.T + mu * (zk - h_prev @ U.T - b) + s * (u_next @ W.T) + b
    return act.f(zn)


def _factor_parts(params, traj, k, mu, s, what):
    """sigma'(zhat_{k+1}) and Sigma_k = 1/sigma'(z_k), both (B, m), for 1 <= k <= T-1."""
    params = check_params(params)
    act = traj.activation
    _invertible(act, what)
    k = _step(k, 1, traj.T - 1, what)
    mu = traj.mu if mu is None else mu
    s = traj.s if s is None else s
    mu, s = check_hyper(mu, s)
    U, W, b = params["U"], params["W"], params["b"]
    xp = backend.xp()
    zk = traj.z[k - 1]  # z_k = sigma^{-1}(h_k), kept from the forward sweep
    dk = act.grad(zk, traj.h[k])
    if not bool((dk > 0).all()):
        raise ValueError("%s: sigma'(z_k) = 0 at step k=%d (sigma saturated in float): "
                         "(sigma^{-1})'(h_k) is infinite" % (what, k))
    if mu == traj.mu and s == traj.s:  # z_{k+1}, h_{k+1} of the trajectory
        Dn = act.grad(traj.z[k], traj.h[k + 1])
    else:  # the v-eliminated map with other hyperparameters, at the same (h_k, h_{k-1})
        zn = (traj.h[k] @ U.T + mu * (zk - traj.h[k - 1] @ U.T - b)
              + s * (traj.u[k] @ W.T) + b)
        Dn = act.grad(zn, act.f(zn))
    return params, xp, U, mu, Dn, 1.0 / dk


def momentum_factor(params, traj, k, mu=None, s=None):
    """dh_{k+1}/dh_k with h_{k-1} held fixed (v eliminated), k = 1..T-1: shape (B, m, m).

        J_k = diag(sigma'(zhat_{k+1})) [U + mu Sigma_k],   Sigma_k = diag((sigma^{-1})'(h_k))
                                                                    = diag(1/sigma'(z_k))

    Column (numerator) convention: J_k[b, i, j] = d h_{k+1, i} / d h_{k, j} for example b;
    zhat_{k+1} = U h_k + mu (sigma^{-1}(h_k) - U h_{k-1} - b) + s W u_{k+1} + b, which is the
    trajectory's z_{k+1} when ``mu``, ``s`` are the trajectory's (the default, None). Its
    transpose [U^T + mu Sigma_k] diag(sigma'(zhat_{k+1})) is what this partial contributes to the
    adjoint; the lecture prints D_k [U^T + mu Sigma_k] (:func:`lecture_factor`). Needs an
    invertible activation (:data:`INVERTIBLE`) and sigma'(z_k) > 0 in float.
    """
    params, xp, U, mu, Dn, Sig = _factor_parts(params, traj, k, mu, s, "momentum_factor")
    B, m = Dn.shape
    M = xp.broadcast_to(U, (B, m, m)).copy()
    i = xp.arange(m)
    M[:, i, i] += mu * Sig
    M *= Dn[:, :, None]
    return M


def lecture_factor(params, traj, k, mu=None, s=None):
    """The lecture's printed factor D_k [U^T + mu Sigma_k] (BW-MRNN eq. 1), k = 1..T-1: (B, m, m).

    D_k = diag(sigma'(zhat_{k+1})), Sigma_k = diag(1/sigma'(z_k)), as in :func:`momentum_factor`.
    It is the transpose of [U + mu Sigma_k] D_k, which is neither J_k nor J_k^T (the diagonal
    stands on the wrong side); kept for comparison (docs/momentum.md).
    """
    params, xp, U, mu, Dn, Sig = _factor_parts(params, traj, k, mu, s, "lecture_factor")
    B, m = Dn.shape
    M = xp.broadcast_to(U.T, (B, m, m)).copy()
    i = xp.arange(m)
    M[:, i, i] += mu * Sig
    M *= Dn[:, :, None]
    return M


def vanilla_factor(params, traj, k):
    """dh_{k+1}/dh_k with v_k held fixed, k = 0..T-1: D_{k+1} U, shape (B, m, m).

    D_{k+1} = diag(sigma'(z_{k+1})). It is the vanilla RNN's one-step Jacobian (the lecture's
    D_k U^T, there indexed by k and transposed: the adjoint map is U^T D_{k+1}), here evaluated
    along the momentum trajectory, and the h-h block of the (h, v) Jacobian (:func:`adjoint_map`).
    """
    params = check_params(params)
    k = _step(k, 0, traj.T - 1, "vanilla_factor")
    D = traj.activation.grad(traj.z[k], traj.h[k + 1])
    return D[:, :, None] * params["U"]


def adjoint_map(params, traj, k):
    """The true one-step adjoint map through (h, v), k = 0..T-1: shape (B, 2m, 2m).

    With D = diag(sigma'(z_{k+1})), the Jacobian of (h_k, v_k) -> (h_{k+1}, v_{k+1}) is
    [[D U, mu D], [0, mu I]]; this returns its transpose::

        A_k = [[U^T D, 0], [mu D, mu I]],   [lam_k; lam_v_k] = A_k [lam_{k+1}; lam_v_{k+1}]
                                            (+ [W_out^T g_k; 0] many-to-many)

    Stacked vectors are [h-part; v-part] (length 2m). Works for every activation.
    """
    params = check_params(params)
    k = _step(k, 0, traj.T - 1, "adjoint_map")
    xp = backend.xp()
    U = params["U"]
    D = traj.activation.grad(traj.z[k], traj.h[k + 1])  # (B, m)
    B, m = D.shape
    A = xp.zeros((B, 2 * m, 2 * m), dtype=D.dtype)
    A[:, :m, :m] = U.T[None] * D[:, None, :]  # U^T D
    i = xp.arange(m)
    A[:, m + i, i] = traj.mu * D  # mu D
    A[:, m + i, m + i] = traj.mu  # mu I
    return A


def eliminated_adjoint(traj, adj):
    """a_k = -dF_b/dh_k with h_{k-1} held fixed (the adjoint of h_k with v eliminated): (T, B, m).

        a_k = lam_k + Sigma_k lam_v_k = lam_in_k / sigma'(z_k),      a[k-1] = a_k, k = 1..T

    (moving h_k with h_{k-1} fixed moves v_k = sigma^{-1}(h_k) - U h_{k-1} - b by Sigma_k dh_k).
    It obeys a_k = J_k^T a_{k+1} - U^T lam_v_{k+1} (+ W_out^T g_k), J_k = :func:`momentum_factor`;
    see docs/momentum.md. Needs an invertible activation with sigma'(z_k) > 0.
    """
    _invertible(traj.activation, "eliminated_adjoint")
    d = traj.activation.grad(traj.z, traj.h[1:])
    if not bool((d > 0).all()):
        raise ValueError("eliminated_adjoint: sigma'(z_k) = 0 somewhere (sigma saturated in "
                         "float): (sigma^{-1})'(h_k) is infinite")
    return adj.lam_in / d


# --------------------------------------------------------------------------------------------
# the p-form (BW-HB)
# --------------------------------------------------------------------------------------------

def momentum_rnn_p_form(U, W, x, mu, s, h0=None, activation="tanh"):
    """The lecture's Momentum RNN in p-form (BW-HB applied to the RNN), literally.

    The lecture reads h_t = sigma(U h_{t-1} + W x_t) as a step of a projected method with
    phi(.) = sigma(U .) and u_t = U^{-1} W x_t and puts heavy-ball momentum
    (:func:`manualgrad.optim.heavy_ball.heavy_ball_p`) on it::

        p_t = mu p_{t-1} - s u_t;    h_t = phi(h_{t-1} - p_t)                   (p-form)
        v_t = mu v_{t-1} + s W x_t;  h_t = sigma(U h_{t-1} + v_t),  v_t = -U p_t  (BW-MRNN)

    so with b = 0 and v_0 = 0 it is :func:`forward` written another way (a test checks the two
    agree to round-off).

    p_0 = 0. ``U`` (m, m) invertible, ``W`` (m, p), ``x`` (T, B, p), ``h0`` (B, m) or None
    (zeros). Returns h (T + 1, B, m) with h[0] = h0. (Rows are examples: U z is ``z @ U.T``.)
    """
    mu = number(mu, "mu", minimum=0.0)
    s = number(s, "s", positive=True)
    U = float_array(U, "U", ndim=2, axes=("m", "m"))
    W = float_array(W, "W", ndim=2, axes=("m", "p"))
    x = float_array(x, "x", ndim=3, axes=("T", "B", "p"))
    m = U.shape[0]
    if U.shape != (m, m) or W.shape[0] != m or W.shape[1] != x.shape[2]:
        raise ValueError("momentum_rnn_p_form: shapes U %s, W %s, x %s do not fit (U (m, m), "
                         "W (m, p), x (T, B, p))" % (U.shape, W.shape, x.shape))
    xp = backend.xp()
    sigma = activations.get(activation, "hidden").f
    T, B, _ = x.shape
    h = xp.zeros((B, m), dtype=U.dtype) if h0 is None else float_array(h0, "h0", ndim=2)
    u = xp.linalg.solve(U, (x.reshape(T * B, -1) @ W.T).T).T.reshape(T, B, m)  # U^{-1} W x_t
    p = xp.zeros_like(h)
    hs = [h]
    for t in range(T):
        p = mu * p - s * u[t]
        h = sigma((h - p) @ U.T)
        hs.append(h)
    return xp.stack(hs)
