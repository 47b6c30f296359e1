"""The LSTM cell and its BPTT, written out step by step (BW-LSTM; Hochreiter & Schmidhuber 1997).

Notation (docs/lstm.md, docs/conventions.md). Time-major input ``u`` (T, B, p), hidden size m,
output size l. Parameters: ONE stacked weight matrix acting on [h_{t-1}; u_t], as in the lecture::

    W (4m, m + p)   rows in gate order i, f, o, g; columns: the first m act on h_{t-1}, the last p on u_t
    b (4m,)         W_out (l, m)   b2 (l,)

Write W = [W_h | W_x] with W_h (4m, m) and W_x (4m, p). Forward (BW-LSTM), t = 1..T::

    a_t = W [h_{t-1}; u_t] + b = W_h h_{t-1} + W_x u_t + b          (4m,)  a = [a_i; a_f; a_o; a_g]
    i_t = sigmoid(a_i)  f_t = sigmoid(a_f)  o_t = sigmoid(a_o)  g_t = tanh(a_g)
    c_t = f_t o c_{t-1} + i_t o g_t
    h_t = o_t o tanh(c_t)
    o = W_out h_T + b2, yhat = sigma_out(o)       (many-to-one; many-to-many: every t, losses summed)

(``o`` without a subscript is the head's pre-activation, as in :mod:`manualgrad.rnn`; the output
gate is ``o_t``, stored in ``traj.gates``.) The state is the pair (h_t, c_t); STATE_NAMES =
("h0", "c0"), zeros unless ``state0`` is given.

Adjoints, JP's sign, per example b (not divided by B). lam_k = -dF_b/dh_k and lam_c_k = -dF_b/dc_k
are the adjoints of the state (h_k, c_k): the derivative of F_b when the forward is restarted
at step k from a perturbed state (so lam_c_k holds h_k fixed). Backwards, k = T..1::

    lam_T   = W_out^T [sigma_out'(o) o delta]            lam_c_T = 0      (many-to-many: + at every k)
    cbar_k  = lam_c_k + lam_k o o_k o (1 - tanh^2 c_k)   (= -dF_b/dc_k with h_k = o_k tanh c_k following)
    zeta_k  = -dF_b/da_k = [ cbar_k o g_k o i_k (1 - i_k);          (i)
                             cbar_k o c_{k-1} o f_k (1 - f_k);      (f)
                             lam_k o tanh(c_k) o o_k (1 - o_k);     (o)
                             cbar_k o i_k o (1 - g_k^2) ]           (g)
    lam_{k-1}   = W_h^T zeta_k                  (+ W_out^T [sigma_out'(o_{k-1}) o delta_{k-1}], many-to-many)
    lam_c_{k-1} = f_k o cbar_k                  (the cell-state path: a product of forget gates)

and lam_0, lam_c_0 from k = 1. Gradients of the batch mean F = (1/B) sum_b F_b::

    dF/dW   = -(1/B) sum_b sum_k zeta_k [h_{k-1}; u_k]^T      (one product over all T*B rows)
    dF/db   = -(1/B) sum_b sum_k zeta_k
    dF/dW_out, dF/db2 as JP eqs. (9)-(10);   dF/dh_0 = -lam_0 / B,  dF/dc_0 = -lam_c_0 / B

The momentum LSTM (Nguyen et al. 2020, cited in BW; :mod:`manualgrad.cells.momentum_lstm`) shares
this code: v_t = mu v_{t-1} + s W_x u_t, a_t = W_h h_{t-1} + v_t + b, with the adjoint lam_v_k
of v_k as a third state.

Array layout: h, c (T+1, B, m) with h[k] = h_k; a, gates, adj.lam_z (T, B, 4m) with a[k-1] = a_k;
adj.lam, adj.lam_c (T, B, m) with lam[k-1] = lam_k. Batched rows are examples ("W v" is ``v @ W.T``).

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

from .. import activations, backend, gpu, rnn
from .._validate import momentum_hyper, params_mapping, sequence_input
from .._validate import state_arrays
from .._validate import step as _step
from ..rnn import AdjointRecord, TrajectoryRecord, head_loss, head_terms, state_grad

__all__ = ["PARAM_NAMES", "STATE_NAMES", "init_params", "check_params", "check_momentum",
           "Trajectory", "Adjoint", "Sweep", "forward", "sweep", "loss", "loss_and_grad"]

PARAM_NAMES = ("W", "b", "W_out", "b2")
STATE_NAMES = ("h0", "c0")
GATES = ("i", "f", "o", "g")
"""Row blocks of W and b, in order: W[0:m] acts for i, W[m:2m] for f, W[2m:3m] for o, W[3m:4m] for g."""

_SIGMOID = activations.HIDDEN["sigmoid"]
_TANH = activations.HIDDEN["tanh"]


def init_params(p, m, l, seed=0, scale=None, forget_bias=0.0, bias_scale=0.0, dtype=None):
    """Random LSTM parameters: W (4m, m+p), b (4m,), W_out (l, m), b2 (l,) (BW-LSTM).

    Weights are N(0, s^2) with s = ``scale``, or s = 1/sqrt(fan_in) when ``scale`` is None
    (fan_in = m + p for W, which acts on [h_{t-1}; u_t], and m for W_out). Biases are
    N(0, bias_scale^2) (zero by default); then ``forget_bias`` is added to the f rows b[m:2m]
    (1.0 is the common choice that starts the cell remembering; the MomentumRNN authors used 1.0
    in each of their two biases). Drawn on the host from ``default_rng(seed)`` in the order
    W, b, W_out, b2, so both backends get the same numbers.
    """
    (p, m, l), seed, scale, bias_scale, dtype = rnn._init_args(p, m, l, seed, scale,
                                                               bias_scale, dtype)
    if isinstance(forget_bias, bool) or not isinstance(forget_bias, numbers.Real) \
            or not math.isfinite(forget_bias):
        raise ValueError("init_params: forget_bias must be a finite number, got %r" % (forget_bias,))
    rng = backend.host_rng(seed)

    def std(fan_in):
        return (1.0 / fan_in ** 0.5) if scale is None else scale

    params = {
        "W": backend.randn((4 * m, m + p), rng=rng, scale=std(m + p), dtype=dtype),
        "b": backend.randn((4 * m,), rng=rng, scale=bias_scale, dtype=dtype),
        "W_out": backend.randn((l, m), rng=rng, scale=std(m), dtype=dtype),
        "b2": backend.randn((l,), rng=rng, scale=bias_scale, dtype=dtype),
    }
    params["b"][m:2 * m] += float(forget_bias)
    return params


def check_params(params):
    """Validate W (4m, m+p), b (4m,), W_out (l, m), b2 (l,) against each other; return them on the backend.

    m and l are read from W_out; p = W.shape[1] - m must be >= 1.
    """
    P = params_mapping(params, PARAM_NAMES, {"W": (None, None), "b": (None,),
                                             "W_out": (None, None), "b2": (None,)}, "the LSTM")
    l, m = P["W_out"].shape
    r, cols = P["W"].shape
    if r != 4 * m or cols <= m:
        raise ValueError(
            "params['W'] has shape %s, expected (4m, m + p) = (%d, %d + p) with p >= 1: m = %d "
            "from params['W_out'] (l, m) = %s; rows in gate order i, f, o, g, columns acting on "
            "[h_{t-1}; u_t]" % (tuple(P["W"].shape), 4 * m, m, m, tuple(P["W_out"].shape)))
    for n, want in (("b", (4 * m,)), ("b2", (l,))):
        if tuple(P[n].shape) != want:
            raise ValueError("params[%r] has shape %s, expected %s (m = %d, l = %d from "
                             "params['W_out'])" % (n, tuple(P[n].shape), want, m, l))
    return P


check_momentum = momentum_hyper
"""Validate the momentum options: mu in [0, 1) (momentum), s > 0 (step size); return floats."""


@dataclass
class Trajectory(TrajectoryRecord):
    """What the LSTM forward computed and BPTT needs (arrays on the backend).

    u (T,B,p); h, c (T+1,B,m) with h[k] = h_k, c[k] = c_k; a (T,B,4m): pre-activations a_k;
    gates (T,B,4m): [i_k, f_k, o_k, g_k] activated; tc (T,B,m): tanh(c_k); o, yhat: head
    pre-activation and prediction, (B,l) or (T,B,l) when ``many_to_many``. Momentum LSTM: v
    (T+1,B,4m) with v[k] = v_k, and ``momentum`` = (mu, s); None for the plain LSTM.
    """

    h: object
    c: object
    a: object
    gates: object
    tc: object
    o: object
    yhat: object
    output: activations.Activation
    many_to_many: bool = False
    v: Optional[object] = None
    momentum: Optional[tuple] = None

    @property
    def m(self):
        return self.h.shape[2]

    def gate(self, name):
        """The activated gate ``name`` in i, f, o, g, shape (T, B, m); gate('f')[k-1] = f_k."""
        if name not in GATES:
            raise ValueError("gate must be one of %s, got %r" % (", ".join(GATES), name))
        j, m = GATES.index(name), self.m
        return self.gates[..., j * m:(j + 1) * m]

    def h_at(self, k):
        """h_k (B, m), k = 0..T."""
        return self.h[_step(k, 0, self.T, "h_k")]

    def c_at(self, k):
        """c_k (B, m), k = 0..T."""
        return self.c[_step(k, 0, self.T, "c_k")]


@dataclass
class Adjoint(AdjointRecord):
    """BPTT for the LSTM, per example (not divided by B), JP's sign (see the module docstring).

    lam (T,B,m): lam[k-1] = -dF_b/dh_k;  lam_c (T,B,m): lam_c[k-1] = -dF_b/dc_k (h_k held);
    lam0, lam_c0 (B,m): the adjoints of h_0 and c_0;
    lam_c_total (T,B,m): cbar_k = lam_c_k + lam_k o o_k o (1 - tanh^2 c_k), -dF_b/dc_k with h_k following;
    lam_z (T,B,4m): zeta_k = -dF_b/da_k, gate blocks i, f, o, g;
    delta: -dF_b/dyhat (inspection); delta_out: -dF_b/do.
    Momentum LSTM: lam_v (T,B,4m): lam_v[k-1] = -dF_b/dv_k (h_k, c_k held), lam_v0 (B,4m).
    """

    lam: object
    lam0: object
    lam_c: object
    lam_c0: object
    lam_c_total: object
    lam_z: object
    delta: Optional[object]
    delta_out: object
    lam_v: Optional[object] = None
    lam_v0: Optional[object] = None

    def lam_c_at(self, k):
        """lam_c_k (B, m), k = 0..T (lam_c_0 = ``lam_c0``)."""
        k = _step(k, 0, self.lam_c.shape[0], "lambda_c_k")
        return self.lam_c0 if k == 0 else self.lam_c[k - 1]


Sweep = rnn.StateSweep
"""One forward + BPTT sweep (see :func:`sweep`): F, F_b, traj, adj, grads, grad_state0 =
{"h0": -lam0/B, "c0": -lam_c0/B[, "v0": -lam_v0/B]} (each (B, width)), y, head."""


def _forward(params, u, state0, output, many_to_many, momentum=None, ws=None):
    """The forward sweep on validated ``params`` (``momentum`` = (mu, s) or None); a :class:`Trajectory`.

    One product (T*B, p) @ (p, 4m) for the input projection of every step, then one product
    (B, m) @ (m, 4m) per step. Gates are written into preallocated buffers. ``ws``: a
    :class:`~manualgrad.backend.Workspace` for h, c, a, gates, tc (and v), W_h^T and the step
    buffers, or None (fresh arrays, what :func:`forward` and :func:`sweep` return).
    """
    out = activations.get(output, "output", argname="output")
    W, b, W_out, b2 = (params[n] for n in PARAM_NAMES)
    m = W_out.shape[1]
    p = W.shape[1] - m
    u = sequence_input(u, p, "params['W'] has m + p columns with m = %d, so p = %%d" % m)
    T, B, _ = u.shape
    xp = backend.xp()
    dt = u.dtype
    names, widths = (STATE_NAMES, (m, m)) if momentum is None else \
        (STATE_NAMES + ("v0",), (m, m, 4 * m))
    s0 = state_arrays(state0, names, widths, B, ("m", "m", "4m"))
    h = backend.empty((T + 1, B, m), dt, ws, "lstm.h")
    c = backend.empty((T + 1, B, m), dt, ws, "lstm.c")
    h[0] = 0.0 if s0[0] is None else s0[0]
    c[0] = 0.0 if s0[1] is None else s0[1]
    W_hT = backend.empty((m, 4 * m), dt, ws, "lstm.W_hT")
    W_hT[...] = W[:, :m].T  # W_h^T, contiguous
    a = backend.empty((T, B, 4 * m), dt, ws, "lstm.a")  # W_x u_t, all t at once:
    xp.matmul(u.reshape(T * B, p), W[:, m:].T, out=a.reshape(T * B, 4 * m))
    v = None
    if momentum is not None:  # v_t = mu v_{t-1} + s W_x u_t (elementwise scan), then a_t = v_t + ...
        mu, s = momentum
        a *= s
        v = backend.empty((T + 1, B, 4 * m), dt, ws, "lstm.v")
        v[0] = 0.0 if s0[2] is None else s0[2]
        for t in range(T):
            xp.multiply(v[t], mu, out=v[t + 1])
            v[t + 1] += a[t]
        a[:] = v[1:]
    a += b
    gates = backend.empty((T, B, 4 * m), dt, ws, "lstm.gates")
    tc = backend.empty((T, B, m), dt, ws, "lstm.tc")
    if momentum is None and gpu.fuses():  # CuPy: the loop below as one product and one kernel
        gpu.lstm_forward(W_hT, a, gates, h, c, tc)
        return _trajectory(u, h, c, a, gates, tc, W_out, b2, out, many_to_many, v, momentum)
    rec = backend.empty((B, 4 * m), dt, ws, "lstm.rec")  # W_h h_{t-1}: one buffer for all steps
    ig = backend.empty((B, m), dt, ws, "lstm.ig")  # i o g
    m3 = 3 * m
    for t in range(T):  # a[t] is a_{t+1}
        a[t] += xp.matmul(h[t], W_hT, out=rec)
        sg = gates[t]  # i, f, o = sigmoid = (1 + tanh(a/2)) / 2 (never overflows); whole
        xp.multiply(a[t], 0.5, out=sg)  # (B, 4m) rows, contiguous: the g block is redone below
        xp.tanh(sg, out=sg)
        sg += 1.0
        sg *= 0.5
        xp.tanh(a[t, :, m3:], out=gates[t, :, m3:])  # g
        i, f, o, g = (gates[t, :, j * m:(j + 1) * m] for j in range(4))
        xp.multiply(f, c[t], out=c[t + 1])
        c[t + 1] += xp.multiply(i, g, out=ig)  # c_t = f o c_{t-1} + i o g
        xp.tanh(c[t + 1], out=tc[t])
        xp.multiply(o, tc[t], out=h[t + 1])  # h_t = o o tanh(c_t)
    return _trajectory(u, h, c, a, gates, tc, W_out, b2, out, many_to_many, v, momentum)


def _trajectory(u, h, c, a, gates, tc, W_out, b2, out, many_to_many, v, momentum):
    """The head o = W_out h_T + b2 (every h_k when many-to-many) and the :class:`Trajectory`."""
    T = u.shape[0]
    hs = h[1:] if many_to_many else h[T]
    o_head = hs @ W_out.T + b2
    return Trajectory(u, h, c, a, gates, tc, o_head, out.f(o_head), out, bool(many_to_many), v,
                      momentum)


def _adjoint(params, traj, delta_out, delta=None, ws=None):
    """BPTT through (h, c[, v]) backwards in time, k = T..1 (module docstring); an :class:`Adjoint`.

    Per step: the gate derivatives and the factors they meet (known from the forward
    trajectory, formed on the step's rows while they are in cache), then one (B, 4m) @ (4m, m)
    product.
    ``ws`` as in :func:`_forward` (every array of the Adjoint but delta and delta_out, and oD,
    W_h and the step buffers).
    """
    W, W_out = params["W"], params["W_out"]
    xp = backend.xp()
    T, B, m = traj.tc.shape
    dt = traj.tc.dtype
    if traj.momentum is None and gpu.fuses():  # CuPy: one kernel and one product per step
        return _fused_adjoint(W, W_out, traj, delta_out, delta, ws)
    m2, m3 = 2 * m, 3 * m
    G = traj.gates
    i, f, o, g = (G[..., j * m:(j + 1) * m] for j in range(4))
    lam_z = backend.empty((T, B, 4 * m), dt, ws, "lstm.lam_z")
    oD = backend.empty((B, m), dt, ws, "lstm.oD")  # dh_k/dc_k, step k's
    W_h = _W_h(W, m, ws)
    lam, lam_c, cbar = _head_adjoint(traj, delta_out, W_out, ws)
    rec = backend.empty((B, m), dt, ws, "lstm.rec_back")  # W_h^T zeta_k
    mom = traj.momentum
    lam_v = None
    if mom is not None:
        mu = mom[0]
        lam_v = backend.empty((T, B, 4 * m), dt, ws, "lstm.lam_v")
        lam_v[T - 1] = 0.0
        gv = backend.empty((B, 4 * m), dt, ws, "lstm.gv")  # zeta_k + lam_v_k
    for t in range(T - 1, -1, -1):  # step k = t + 1; lam[t], lam_c[t] (and lam_v[t]) are complete
        z = lam_z[t]  # (B, 4m): first the factor each gate block of zeta_k multiplies
        #   i: g o sigmoid'(a_i)  f: c_{k-1} o sigmoid'(a_f)  o: tanh c_k o sigmoid'(a_o)  g: i o tanh'(a_g)
        xp.subtract(1.0, G[t], out=z)  # contiguous: G (1 - G) = sigmoid' for i, f, o ...
        z *= G[t]
        gd = z[:, m3:]  # ... and tanh' = 1 - g^2 for g
        xp.multiply(g[t], g[t], out=gd)
        xp.subtract(1.0, gd, out=gd)
        z[:, :m] *= g[t]
        z[:, m:m2] *= traj.c[t]
        z[:, m2:m3] *= traj.tc[t]
        z[:, m3:] *= i[t]
        xp.multiply(traj.tc[t], traj.tc[t], out=oD)  # dh_k/dc_k = o_k o (1 - tanh^2 c_k)
        xp.subtract(1.0, oD, out=oD)
        oD *= o[t]
        xp.multiply(lam[t], oD, out=cbar[t])
        cbar[t] += lam_c[t]
        z4 = z.reshape(B, 4, m)  # a view: gate blocks i, f, o, g
        z4[:, :2] *= cbar[t][:, None, :]  # i, f
        z4[:, 2] *= lam[t]  # o
        z4[:, 3] *= cbar[t]  # g
        if t == 0:
            break
        if traj.many_to_many:
            lam[t - 1] += xp.matmul(z, W_h, out=rec)
        else:
            xp.matmul(z, W_h, out=lam[t - 1])
        xp.multiply(f[t], cbar[t], out=lam_c[t - 1])
        if mom is not None:  # -dF_b/dv_{k-1} = mu (zeta_k + lam_v_k)
            xp.add(z, lam_v[t], out=gv)
            xp.multiply(gv, mu, out=lam_v[t - 1])
    lam0, lam_c0 = _initial_adjoints(lam_z[0], W_h, f[0], cbar[0], ws)
    lam_v0 = None
    if mom is not None:  # lam_v_0 = mu (zeta_1 + lam_v_1)
        lam_v0 = backend.empty((B, 4 * m), dt, ws, "lstm.lam_v0")
        xp.add(lam_z[0], lam_v[0], out=lam_v0)
        lam_v0 *= mu
    return Adjoint(lam, lam0, lam_c, lam_c0, cbar, lam_z, delta, delta_out, lam_v, lam_v0)


def _initial_adjoints(zeta1, W_h, f1, cbar1, ws):
    """lam_0 = W_h^T zeta_1 and lam_c_0 = f_1 o cbar_1 (B, m), in ``ws`` (or fresh)."""
    xp = backend.xp()
    B, m = cbar1.shape
    lam0 = xp.matmul(zeta1, W_h, out=backend.empty((B, m), cbar1.dtype, ws, "lstm.lam0"))
    lam_c0 = xp.multiply(f1, cbar1, out=backend.empty((B, m), cbar1.dtype, ws, "lstm.lam_c0"))
    return lam0, lam_c0


def _W_h(W, m, ws):
    """W_h = W[:, :m] (4m, m), contiguous: a copy in ``ws`` (or fresh)."""
    W_h = backend.empty((W.shape[0], m), W.dtype, ws, "lstm.W_h")
    W_h[...] = W[:, :m]
    return W_h


def _head_adjoint(traj, delta_out, W_out, ws):
    """lam, lam_c, cbar (T, B, m) from ``ws`` (or fresh), with what the head starts them with:
    lam_T = W_out^T [sigma_out'(o) o delta] (many-to-many: every lam_k its output term) and
    lam_c_T = 0 (nothing after step T reads c_T)."""
    xp = backend.xp()
    T, B, m = traj.tc.shape
    dt = traj.tc.dtype
    lam = backend.empty((T, B, m), dt, ws, "lstm.lam")
    if traj.many_to_many:
        xp.matmul(delta_out, W_out, out=lam)  # W_out^T [sigma_out'(o_k) o delta_k], every k at once
    else:
        xp.matmul(delta_out, W_out, out=lam[T - 1])
    lam_c = backend.empty((T, B, m), dt, ws, "lstm.lam_c")
    lam_c[T - 1] = 0.0
    cbar = backend.empty((T, B, m), dt, ws, "lstm.cbar")
    return lam, lam_c, cbar


def _fused_adjoint(W, W_out, traj, delta_out, delta, ws=None):
    """:func:`_adjoint` for the plain LSTM on CuPy: the same recursion, with each step's
    element-wise work (cbar_k, zeta_k, lam_c_{k-1}) in one kernel
    (:func:`manualgrad.gpu.lstm_adjoint`), and the same workspace buffers."""
    T, B, m = traj.tc.shape
    W_h = _W_h(W, m, ws)
    lam, lam_c, cbar = _head_adjoint(traj, delta_out, W_out, ws)
    lam_z = backend.empty((T, B, 4 * m), traj.gates.dtype, ws, "lstm.lam_z")
    gpu.lstm_adjoint(W_h, traj, lam, lam_c, cbar, lam_z, traj.many_to_many)
    lam0, lam_c0 = _initial_adjoints(lam_z[0], W_h, traj.gates[0, :, m:2 * m], cbar[0], ws)
    return Adjoint(lam, lam0, lam_c, lam_c0, cbar, lam_z, delta, delta_out)


def _gradients(traj, adj, ws=None):
    """dF/dtheta of the batch mean from a validated trajectory and its :class:`Adjoint`.

    Plain LSTM: dW = -(1/B) Z^T [H_prev | U], ONE product over all T*B rows. Momentum LSTM: W_x
    enters every v_k through s W_x u_k, so its block is -(s/B) (Z + L_v)^T U. ``ws``: where the
    (T*B)-row operand [H_prev | U] (momentum: Z + L_v) lives, or None; the gradients are fresh.
    """
    xp = backend.xp()
    T, B, m = traj.tc.shape
    p, l = traj.u.shape[2], traj.o.shape[-1]
    dt = traj.tc.dtype
    Z = adj.lam_z.reshape(T * B, 4 * m)
    U = traj.u.reshape(T * B, p)
    if traj.momentum is None:
        X = backend.empty((T, B, m + p), dt, ws, "lstm.X")  # [h_{k-1}; u_k]
        X[..., :m] = traj.h[:-1]
        X[..., m:] = traj.u
        dW = Z.T @ X.reshape(T * B, m + p)
    else:
        Zv = backend.empty((T * B, 4 * m), dt, ws, "lstm.Zv")  # -dF_b/dv_k: gates + momentum
        xp.add(Z, adj.lam_v.reshape(T * B, 4 * m), out=Zv)
        dW = xp.concatenate((Z.T @ traj.h[:-1].reshape(T * B, m),
                             traj.momentum[1] * (Zv.T @ U)), axis=1)
    dW /= -B
    do = adj.delta_out.reshape(-1, l)
    hs = (traj.h[1:] if traj.many_to_many else traj.h[T]).reshape(-1, m)
    return {
        "W": dW,
        "b": -Z.sum(axis=0) / B,
        "W_out": -(do.T @ hs) / B,
        "b2": -do.sum(axis=0) / B,
    }


def _loss(params, u, y, state0, output, loss, many_to_many, momentum, ws=None):
    """F on validated ``params``; the trajectory in workspace ``ws`` (if any), F fresh."""
    traj = _forward(params, u, state0, output, many_to_many, momentum, ws)
    return head_loss(traj, loss, y)[2].mean()


def _sweep(params, u, y, state0, output, loss, many_to_many, momentum, ws=None):
    """:func:`sweep` on validated ``params``: trajectory and adjoints in workspace ``ws`` (if
    any), the loss and the gradients always fresh."""
    traj = _forward(params, u, state0, output, many_to_many, momentum, ws)
    head, Y, F_b, delta_out, delta = head_terms(traj, loss, y)
    adj = _adjoint(params, traj, delta_out, delta, ws)
    grads = _gradients(traj, adj, ws)
    gs0 = {"h0": state_grad(adj.lam0, ws, "lstm.grad_h0"),
           "c0": state_grad(adj.lam_c0, ws, "lstm.grad_c0")}
    if momentum is not None:
        gs0["v0"] = state_grad(adj.lam_v0, ws, "lstm.grad_v0")
    return Sweep(F_b.mean(), F_b, traj, adj, grads, gs0, Y, head)


def forward(params, u, state0=None, output="sigmoid", many_to_many=False):
    """BW-LSTM forward over ``u`` (T, B, p); a :class:`Trajectory` with h, c (T+1, B, m).

    ``params``: W (4m, m+p), b (4m,), W_out (l, m), b2 (l,). ``state0``: None (zeros) or a
    mapping with keys among "h0", "c0", each (B, m) or (m,); a missing key means zeros. ``output``: the head's activation; the head
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
        return _loss(params, u, y, state0, output, loss, many_to_many, None, ws)


def sweep(params, u, y, state0=None, output="sigmoid", loss="bce", many_to_many=False):
    """Forward, loss, BPTT through (h, c) and gradients in one call; a :class:`Sweep`.

    ``y``: (B, l) (or (B,) when l = 1, or integer labels (B,) for cross_entropy); many-to-many
    (T, B, l) or (T, B). ``grad_state0`` = {"h0": dF/dh_0, "c0": dF/dc_0}, each (B, m). Every
    array of the Sweep is the caller's own (no workspace).
    """
    return _sweep(check_params(params), u, y, state0, output, loss, many_to_many, None)


def loss_and_grad(params, u, y, state0=None, output="sigmoid", loss="bce", many_to_many=False,
                  workspace=True):
    """``(F, grads)``: the batch-mean loss and its exact gradient (keys W, b, W_out, b2).

    ``workspace``: where the trajectory, the adjoints and the temporaries live between calls
    (:class:`~manualgrad.backend.Workspace`; True: the calling thread's default, False: fresh
    arrays). F and grads are always the caller's own arrays; results are bit for bit the same
    either way. For the trajectory and the adjoints themselves use :func:`sweep`.
    """
    params = check_params(params)
    with backend.workspace_scope(workspace) as ws:
        s = _sweep(params, u, y, state0, output, loss, many_to_many, None, ws)
        return s.F, s.grads
