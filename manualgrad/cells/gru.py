"""The GRU cell and its BPTT through the reset and update gates, written out step by step (X-GRU).

Source: Cho, van Merrienboer, Gulcehre, Bahdanau, Bougares, Schwenk & Bengio, "Learning Phrase
Representations using RNN Encoder-Decoder for Statistical Machine Translation", EMNLP 2014
(Sec. 2.3, eqs. 5-8), with the reset gate placed as in cuDNN / PyTorch (below). Derivation and
tests: docs/gru.md.

Notation (docs/conventions.md). Time-major input ``u`` (T, B, p), hidden size m, output size l.
Parameters, stacked as the LSTM's (:mod:`manualgrad.cells.lstm`): ONE weight matrix acting on
[h_{t-1}; u_t]::

    W (3m, m + p)   rows in gate order r, z, n; columns: m act on h_{t-1}, then p on u_t
    b (3m,)         the input-side bias of r, z and n
    b_hn (m,)       the recurrent bias of the candidate, inside the reset product
    W_out (l, m)   b2 (l,)

Write W = [W_h | W_x], W_h (3m, m), W_x (3m, p), and W_h = [W_hr; W_hz; W_hn]. Forward, t = 1..T::

    q_t = W_h h_{t-1}                                   (3m)   q = [q_r; q_z; q_n], one product
    s_t = q_n + b_hn                                    (m)    the recurrent candidate term
    r_t = sigmoid(W_xr u_t + b_r + q_r)                 (m)    reset gate
    z_t = sigmoid(W_xz u_t + b_z + q_z)                 (m)    update gate
    n_t = tanh(W_xn u_t + b_n + r_t o s_t)              (m)    candidate h~_t
    h_t = (1 - z_t) o h_{t-1} + z_t o n_t               (m)    = h_{t-1} + z_t o (n_t - h_{t-1})
    o = W_out h_T + b2, yhat = sigma_out(o)     (many-to-one; many-to-many: every t, losses summed)

The convention (decision; docs/gru.md): h_t = (1 - z_t) o h_{t-1} + z_t o h~_t, Cho et al.'s
eq. (7) and the catalog's (z_t = 0 keeps the state; PyTorch writes (1 - z) o n + z o h, the same
cell with z -> 1 - z, i.e. its W_z, b_z are minus ours). The reset gate multiplies the candidate's
recurrent *product*, r_t o (W_hn h_{t-1} + b_hn) (cuDNN, PyTorch, Keras ``reset_after``), not its
input, W_hn (r_t o h_{t-1}) (Cho et al. eq. 6): then one (B, m) @ (m, 3m) product per step serves
all three gates, before r_t is known, where the original form needs a second product after it.

Adjoints, JP's sign, per example b (not divided by B): lam_k = -dF_b/dh_k. Backwards, k = T..1::

    lam_T    = W_out^T [sigma_out'(o) o delta]            (many-to-many: + at every k)
    zeta_n   = lam_k o z_k o (1 - n_k^2)                           -dF_b/d(n pre-activation)
    zeta_z   = lam_k o (n_k - h_{k-1}) o z_k (1 - z_k)             -dF_b/d(z pre-activation)
    zeta_r   = zeta_n o s_k o r_k (1 - r_k)                        -dF_b/d(r pre-activation)
    zeta_k   = [zeta_r; zeta_z; zeta_n]                   (3m)     -dF_b/d(W_x u_k + b + ...)
    eta_k    = [zeta_r; zeta_z; r_k o zeta_n]             (3m)     -dF_b/dq_k (eta_n = -dF_b/ds_k)
    lam_{k-1} = W_h^T eta_k + (1 - z_k) o lam_k      (+ W_out^T [sigma_out'(o_{k-1}) o delta_{k-1}])

and lam_0 from k = 1. Gradients of the batch mean F = (1/B) sum_b F_b::

    dF/dW_h  = -(1/B) sum_b sum_k eta_k h_{k-1}^T        one product over all T*B rows
    dF/dW_x  = -(1/B) sum_b sum_k zeta_k u_k^T           one product over all T*B rows
    dF/db    = -(1/B) sum_b sum_k zeta_k
    dF/db_hn = -(1/B) sum_b sum_k eta_n,k               (= r_k o zeta_n)
    dF/dW_out, dF/db2 as JP eqs. (9)-(10);   dF/dh_0 = -lam_0 / B

The state is h alone: STATE_NAMES = ("h0",), zeros unless ``state0`` is given. No fused GPU
kernel: on CuPy the GRU runs this array code (one product and a few elementwise kernels per
step); the strict backend runs it as NumPy behind CuPy's rules.

Array layout: h (T+1, B, m) with h[k] = h_k; a, gates, adj.lam_z, adj.lam_q (T, B, 3m) with
a[k-1] = a_k; s, adj.lam (T, B, m) with lam[k-1] = lam_k. Batched rows are examples ("W v" is
``v @ W.T``).

Workspaces: :func:`loss_and_grad` and :func:`loss` keep the trajectory, the adjoints and every
temporary in a :class:`~manualgrad.backend.Workspace` (``workspace=``), so repeated calls with the
same shapes allocate nothing after the first. The rule: a workspace holds only what stays inside a
call; F and the gradients are always fresh arrays, and :func:`forward` and :func:`sweep`, which
return their trajectories and adjoints, take no workspace.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Optional

from .. import activations, backend, rnn
from .._validate import params_mapping, sequence_input, state_arrays
from .._validate import step as _step
from ..rnn import AdjointRecord, TrajectoryRecord, head_loss, head_terms, state_grad

__all__ = ["PARAM_NAMES", "STATE_NAMES", "GATES", "init_params", "check_params", "Trajectory",
           "Adjoint", "Sweep", "forward", "sweep", "loss", "loss_and_grad"]

PARAM_NAMES = ("W", "b", "b_hn", "W_out", "b2")
STATE_NAMES = ("h0",)
GATES = ("r", "z", "n")
"""Row blocks of W and b, in order: W[0:m] acts for r, W[m:2m] for z, W[2m:3m] for n."""


def init_params(p, m, l, seed=0, scale=None, update_bias=0.0, bias_scale=0.0, dtype=None):
    """Random GRU parameters: W (3m, m+p), b (3m,), b_hn (m,), W_out (l, m), b2 (l,) (X-GRU).

    Weights are N(0, s^2) with s = ``scale``, or s = 1/sqrt(fan_in) when ``scale`` is None
    (fan_in = m + p for W, which acts on [h_{t-1}; u_t], and m for W_out), as for the LSTM.
    Biases are N(0, bias_scale^2) (zero by default); then ``update_bias`` is added to the z rows
    b[m:2m]. In this module's convention z_t = 0 keeps the state, so a negative update bias
    (e.g. -1) starts the cell remembering, as the LSTM's positive forget bias does. Drawn on the
    host from ``default_rng(seed)`` in the order W, b, b_hn, W_out, b2, so both backends get the
    same numbers.
    """
    (p, m, l), seed, scale, bias_scale, dtype = rnn._init_args(p, m, l, seed, scale,
                                                               bias_scale, dtype)
    if isinstance(update_bias, bool) or not isinstance(update_bias, numbers.Real) \
            or not math.isfinite(update_bias):
        raise ValueError("init_params: update_bias must be a finite number, got %r"
                         % (update_bias,))
    rng = backend.host_rng(seed)

    def std(fan_in):
        return (1.0 / fan_in ** 0.5) if scale is None else scale

    params = {
        "W": backend.randn((3 * m, m + p), rng=rng, scale=std(m + p), dtype=dtype),
        "b": backend.randn((3 * m,), rng=rng, scale=bias_scale, dtype=dtype),
        "b_hn": backend.randn((m,), rng=rng, scale=bias_scale, dtype=dtype),
        "W_out": backend.randn((l, m), rng=rng, scale=std(m), dtype=dtype),
        "b2": backend.randn((l,), rng=rng, scale=bias_scale, dtype=dtype),
    }
    params["b"][m:2 * m] += float(update_bias)
    return params


def check_params(params):
    """Validate W (3m, m+p), b (3m,), b_hn (m,), W_out (l, m), b2 (l,) against each other;
    return them on the backend. m and l are read from W_out; p = W.shape[1] - m must be >= 1."""
    P = params_mapping(params, PARAM_NAMES, {"W": (None, None), "b": (None,), "b_hn": (None,),
                                             "W_out": (None, None), "b2": (None,)}, "the GRU")
    l, m = P["W_out"].shape
    r, cols = P["W"].shape
    if r != 3 * m or cols <= m:
        raise ValueError(
            "params['W'] has shape %s, expected (3m, m + p) = (%d, %d + p) with p >= 1: m = %d "
            "from params['W_out'] (l, m) = %s; rows in gate order r, z, n, columns acting on "
            "[h_{t-1}; u_t]" % (tuple(P["W"].shape), 3 * m, m, m, tuple(P["W_out"].shape)))
    for n, want in (("b", (3 * m,)), ("b_hn", (m,)), ("b2", (l,))):
        if tuple(P[n].shape) != want:
            raise ValueError("params[%r] has shape %s, expected %s (m = %d, l = %d from "
                             "params['W_out'])" % (n, tuple(P[n].shape), want, m, l))
    return P


@dataclass
class Trajectory(TrajectoryRecord):
    """What the GRU forward computed and BPTT needs (arrays on the backend).

    u (T,B,p); h (T+1,B,m) with h[k] = h_k; a (T,B,3m): the gates' pre-activations
    [W_xr u_k + b_r + q_r; W_xz u_k + b_z + q_z; W_xn u_k + b_n + r_k o s_k]; gates (T,B,3m):
    [r_k, z_k, n_k] activated; s (T,B,m): s_k = W_hn h_{k-1} + b_hn; o, yhat: head
    pre-activation and prediction, (B,l) or (T,B,l) when ``many_to_many``.
    """

    h: object
    a: object
    gates: object
    s: object
    o: object
    yhat: object
    output: activations.Activation
    many_to_many: bool = False

    @property
    def m(self):
        return self.h.shape[2]

    def gate(self, name):
        """The activated gate ``name`` in r, z, n, shape (T, B, m); gate('z')[k-1] = z_k."""
        if name not in GATES:
            raise ValueError("gate must be one of %s, got %r" % (", ".join(GATES), name))
        j, m = GATES.index(name), self.m
        return self.gates[..., j * m:(j + 1) * m]

    def h_at(self, k):
        """h_k (B, m), k = 0..T."""
        return self.h[_step(k, 0, self.T, "h_k")]


@dataclass
class Adjoint(AdjointRecord):
    """BPTT for the GRU, per example (not divided by B), JP's sign (see the module docstring).

    lam (T,B,m): lam[k-1] = lam_k = -dF_b/dh_k;  lam0 (B,m): -dF_b/dh_0;
    lam_z (T,B,3m): zeta_k = -dF_b/da_k, the gate pre-activations, blocks r, z, n;
    lam_q (T,B,3m): eta_k = -dF_b/dq_k, q_k = W_h h_{k-1} (its n block also -dF_b/ds_k);
    delta: -dF_b/dyhat (inspection); delta_out: -dF_b/do.
    """

    lam: object
    lam0: object
    lam_z: object
    lam_q: object
    delta: Optional[object]
    delta_out: object


Sweep = rnn.StateSweep
"""One forward + BPTT sweep (see :func:`sweep`): F, F_b, traj, adj, grads, grad_state0 =
{"h0": -lam0/B} ((B, m)), y, head."""


def _forward(params, u, state0, output, many_to_many, ws=None):
    """The forward sweep on validated ``params``; a :class:`Trajectory`.

    One product (T*B, p) @ (p, 3m) for the input side of every step, then one product
    (B, m) @ (m, 3m) per step for q_t = W_h h_{t-1}. ``ws``: a
    :class:`~manualgrad.backend.Workspace` for h, a, gates, s, W_h^T and the step buffers, or
    None (fresh arrays, what :func:`forward` and :func:`sweep` return).
    """
    out = activations.get(output, "output", argname="output")
    W, b, b_hn, W_out, b2 = (params[n] for n in PARAM_NAMES)
    m = W_out.shape[1]
    p = W.shape[1] - m
    u = sequence_input(u, p, "params['W'] has m + p columns with m = %d, so p = %%d" % m)
    T, B, _ = u.shape
    xp = backend.xp()
    dt = u.dtype
    (h0,) = state_arrays(state0, STATE_NAMES, (m,), B)
    h = backend.empty((T + 1, B, m), dt, ws, "gru.h")
    h[0] = 0.0 if h0 is None else h0
    W_hT = backend.empty((m, 3 * m), dt, ws, "gru.W_hT")
    W_hT[...] = W[:, :m].T  # W_h^T, contiguous
    a = backend.empty((T, B, 3 * m), dt, ws, "gru.a")  # W_x u_t + b, all t at once
    xp.matmul(u.reshape(T * B, p), W[:, m:].T, out=a.reshape(T * B, 3 * m))
    a += b
    gates = backend.empty((T, B, 3 * m), dt, ws, "gru.gates")
    s = backend.empty((T, B, m), dt, ws, "gru.s")
    q = backend.empty((B, 3 * m), dt, ws, "gru.q")  # W_h h_{t-1}: one buffer for all steps
    rs = backend.empty((B, m), dt, ws, "gru.rs")  # r o s, then n - h_{t-1}
    m2 = 2 * m
    for t in range(T):  # a[t] is a_{t+1}
        xp.matmul(h[t], W_hT, out=q)  # q_t = W_h h_{t-1}
        xp.add(q[:, m2:], b_hn, out=s[t])  # s_t = W_hn h_{t-1} + b_hn
        a[t, :, :m2] += q[:, :m2]  # r and z pre-activations
        sg = gates[t, :, :m2]  # r_t, z_t = sigmoid = (1 + tanh(a/2)) / 2 (never overflows)
        xp.multiply(a[t, :, :m2], 0.5, out=sg)
        xp.tanh(sg, out=sg)
        sg += 1.0
        sg *= 0.5
        r, z, n = gates[t, :, :m], gates[t, :, m:m2], gates[t, :, m2:]
        a[t, :, m2:] += xp.multiply(r, s[t], out=rs)  # n pre-activation: W_xn u_t + b_n + r o s
        xp.tanh(a[t, :, m2:], out=n)  # n_t = h~_t
        xp.subtract(n, h[t], out=rs)
        rs *= z
        xp.add(h[t], rs, out=h[t + 1])  # h_t = h_{t-1} + z_t o (n_t - h_{t-1})
    hs = h[1:] if many_to_many else h[T]
    o_head = hs @ W_out.T + b2
    return Trajectory(u, h, a, gates, s, o_head, out.f(o_head), out, bool(many_to_many))


def _adjoint(params, traj, delta_out, delta=None, ws=None):
    """BPTT through h backwards in time, k = T..1 (module docstring); an :class:`Adjoint`.

    Per step: the gate derivatives and the factors they meet, formed on the step's rows, then
    one (B, 3m) @ (3m, m) product. ``ws`` as in :func:`_forward` (every array of the Adjoint but
    delta and delta_out, and W_h and the step buffers).
    """
    W, W_out = params["W"], params["W_out"]
    xp = backend.xp()
    T, B, m = traj.s.shape
    dt = traj.s.dtype
    m2 = 2 * m
    G, h, s = traj.gates, traj.h, traj.s
    W_h = backend.empty((3 * m, m), dt, ws, "gru.W_h")
    W_h[...] = W[:, :m]  # contiguous
    lam = backend.empty((T, B, m), dt, ws, "gru.lam")
    if traj.many_to_many:
        xp.matmul(delta_out, W_out, out=lam)  # W_out^T [sigma_out'(o_k) o delta_k], every k at once
    else:
        xp.matmul(delta_out, W_out, out=lam[T - 1])
    lam_z = backend.empty((T, B, 3 * m), dt, ws, "gru.lam_z")
    lam_q = backend.empty((T, B, 3 * m), dt, ws, "gru.lam_q")
    rec = backend.empty((B, m), dt, ws, "gru.rec_back")  # W_h^T eta_k
    keep = backend.empty((B, m), dt, ws, "gru.keep")  # n_k - h_{k-1}, then (1 - z_k) o lam_k
    lam0 = backend.empty((B, m), dt, ws, "gru.lam0")
    for t in range(T - 1, -1, -1):  # step k = t + 1; lam[t] is complete
        r, z, n = G[t, :, :m], G[t, :, m:m2], G[t, :, m2:]
        zeta = lam_z[t]
        xp.subtract(1.0, G[t, :, :m2], out=zeta[:, :m2])  # sigmoid' = g (1 - g) for r, z ...
        zeta[:, :m2] *= G[t, :, :m2]
        zn = zeta[:, m2:]
        xp.multiply(n, n, out=zn)  # ... and tanh' = 1 - n^2 for n
        xp.subtract(1.0, zn, out=zn)
        zn *= z
        zn *= lam[t]  # zeta_n = lam_k o z_k o (1 - n_k^2)
        xp.subtract(n, h[t], out=keep)
        keep *= lam[t]
        zeta[:, m:m2] *= keep  # zeta_z = lam_k o (n_k - h_{k-1}) o z_k (1 - z_k)
        zeta[:, :m] *= s[t]
        zeta[:, :m] *= zn  # zeta_r = zeta_n o s_k o r_k (1 - r_k)
        eta = lam_q[t]
        eta[:, :m2] = zeta[:, :m2]
        xp.multiply(zn, r, out=eta[:, m2:])  # eta_n = r_k o zeta_n = -dF_b/ds_k
        xp.subtract(1.0, z, out=keep)
        keep *= lam[t]  # (1 - z_k) o lam_k: the direct path h_{k-1} -> h_k
        if t == 0:
            xp.matmul(eta, W_h, out=lam0)
            lam0 += keep  # lam_0 = W_h^T eta_1 + (1 - z_1) o lam_1
            break
        if traj.many_to_many:
            lam[t - 1] += xp.matmul(eta, W_h, out=rec)
        else:
            xp.matmul(eta, W_h, out=lam[t - 1])
        lam[t - 1] += keep  # lam_{k-1} = W_h^T eta_k + (1 - z_k) o lam_k
    return Adjoint(lam, lam0, lam_z, lam_q, delta, delta_out)


def _gradients(traj, adj):
    """dF/dtheta of the batch mean from a validated trajectory and its :class:`Adjoint`.

    dW = -(1/B) [E^T H_prev | Z^T U], each block ONE product over all T*B rows (E: eta_k,
    Z: zeta_k); the gradients are fresh arrays.
    """
    xp = backend.xp()
    T, B, m = traj.s.shape
    p, l = traj.u.shape[2], traj.o.shape[-1]
    Z = adj.lam_z.reshape(T * B, 3 * m)
    E = adj.lam_q.reshape(T * B, 3 * m)
    dW = xp.concatenate((E.T @ traj.h[:-1].reshape(T * B, m),  # dF/dW_h
                         Z.T @ traj.u.reshape(T * B, p)), axis=1)  # dF/dW_x
    dW /= -B
    do = adj.delta_out.reshape(-1, l)
    hs = (traj.h[1:] if traj.many_to_many else traj.h[T]).reshape(-1, m)
    return {
        "W": dW,
        "b": -Z.sum(axis=0) / B,
        "b_hn": -E[:, 2 * m:].sum(axis=0) / B,
        "W_out": -(do.T @ hs) / B,  # JP (9)
        "b2": -do.sum(axis=0) / B,  # JP (10)
    }


def _sweep(params, u, y, state0, output, loss, many_to_many, ws=None):
    """:func:`sweep` on validated ``params``: trajectory and adjoints in workspace ``ws`` (if
    any), the loss and the gradients always fresh."""
    traj = _forward(params, u, state0, output, many_to_many, ws)
    head, Y, F_b, delta_out, delta = head_terms(traj, loss, y)  # delta: JP (6)
    adj = _adjoint(params, traj, delta_out, delta, ws)
    grads = _gradients(traj, adj)
    gs0 = {"h0": state_grad(adj.lam0, ws, "gru.grad_h0")}
    return Sweep(F_b.mean(), F_b, traj, adj, grads, gs0, Y, head)


def forward(params, u, state0=None, output="sigmoid", many_to_many=False):
    """The GRU forward (X-GRU) over ``u`` (T, B, p); a :class:`Trajectory` with h (T+1, B, m).

    ``params``: W (3m, m+p), b (3m,), b_hn (m,), W_out (l, m), b2 (l,). ``state0``: None
    (zeros) or a mapping {"h0": (B, m) or (m,)}. ``output``: the head's activation; the head
    reads h_T, or every h_k when ``many_to_many``.
    """
    return _forward(check_params(params), u, state0, output, many_to_many)


def loss(params, u, y, state0=None, output="sigmoid", loss="bce", many_to_many=False,
         workspace=True):
    """F = batch mean of the per-example losses F_b (forward only; what finite differences check).

    ``workspace`` as in :func:`loss_and_grad` (the trajectory lives there; F is fresh).
    """
    params = check_params(params)
    with backend.workspace_scope(workspace) as ws:
        traj = _forward(params, u, state0, output, many_to_many, ws)
        return head_loss(traj, loss, y)[2].mean()


def sweep(params, u, y, state0=None, output="sigmoid", loss="bce", many_to_many=False):
    """Forward, loss, BPTT through both gates and gradients in one call; a :class:`Sweep`.

    ``y``: (B, l) (or (B,) when l = 1, or integer labels (B,) for cross_entropy); many-to-many
    (T, B, l) or (T, B). ``grad_state0`` = {"h0": dF/dh_0} (B, m). Every array of the Sweep is
    the caller's own (no workspace).
    """
    return _sweep(check_params(params), u, y, state0, output, loss, many_to_many)


def loss_and_grad(params, u, y, state0=None, output="sigmoid", loss="bce", many_to_many=False,
                  workspace=True):
    """``(F, grads)``: the batch-mean loss and its exact gradient (keys W, b, b_hn, W_out, b2).

    ``workspace``: where the trajectory, the adjoints and the temporaries live between calls
    (:class:`~manualgrad.backend.Workspace`; True: the calling thread's default, False: fresh
    arrays). F and grads are always the caller's own arrays; results are bit for bit the same
    either way. For the trajectory and the adjoints themselves use :func:`sweep`.
    """
    params = check_params(params)
    with backend.workspace_scope(workspace) as ws:
        s = _sweep(params, u, y, state0, output, loss, many_to_many, ws)
        return s.F, s.grads
