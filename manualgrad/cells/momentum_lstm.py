"""The momentum LSTM (MomentumRNN, Nguyen et al. 2020, cited in BW) and its BPTT through (h, c, v).

BW's momentum cell puts a heavy-ball velocity on the input term of the recurrence,
v_t = mu v_{t-1} + s W x_t, h_t = sigma(U h_{t-1} + v_t). For the LSTM the MomentumRNN authors
apply it to the input projection of all four gates. With the stacked W = [W_h | W_x] (4m, m+p)
of :mod:`manualgrad.cells.lstm`, t = 1..T::

    v_t = mu v_{t-1} + s W_x u_t                                   (4m,)
    a_t = W_h h_{t-1} + v_t + b = [a_i; a_f; a_o; a_g]
    i, f, o = sigmoid(a_i, a_f, a_o),  g = tanh(a_g)
    c_t = f o c_{t-1} + i o g,         h_t = o o tanh(c_t)

mu in [0, 1) (momentum) and s > 0 (step size) are options, default 0.6 and 0.6 (the authors'
MNIST recipe). mu = 0, s = 1 is the plain LSTM. STATE_NAMES = ("h0", "c0", "v0"), with v0 (B, 4m)
or (4m,). Parameters, heads, shapes and the (h, c) adjoints are those of
:mod:`manualgrad.cells.lstm`; the velocity adds, per example and with JP's sign,
lam_v_k = -dF_b/dv_k (the forward restarted at step k from (h_k, c_k, v_k))::

    lam_v_T     = 0
    lam_v_{k-1} = mu (zeta_k + lam_v_k)          k = T..1     (zeta_k = -dF_b/da_k)
    dF/dW_x     = -(s/B) sum_b sum_k (zeta_k + lam_v_k) u_k^T
    dF/dW_h     = -(1/B) sum_b sum_k zeta_k h_{k-1}^T,   dF/db = -(1/B) sum_b sum_k zeta_k
    dF/dv_0     = -lam_v_0 / B

Differences from the authors' code (``MomentumLSTMCell``): there ``x2h`` has its own bias inside
the momentum, v_t = mu v_{t-1} + s (W_x u_t + b_x), and the gates are chunked in the order
i, f, g, o; here the one bias b sits outside, a_t = W_h h_{t-1} + v_t + b, and the row order is
the lecture's i, f, o, g. See docs/lstm.md.

:func:`loss_and_grad` and :func:`loss` take ``workspace=`` as in :mod:`manualgrad.cells.lstm`:
trajectory, adjoints and temporaries (v and lam_v included) live in a
:class:`~manualgrad.backend.Workspace`; F and the gradients are always fresh arrays.
"""
from __future__ import annotations

from .. import backend
from . import lstm
from .lstm import check_momentum, check_params

__all__ = ["PARAM_NAMES", "STATE_NAMES", "DEFAULT_MU", "DEFAULT_S", "init_params", "forward",
           "sweep", "loss", "loss_and_grad"]

PARAM_NAMES = lstm.PARAM_NAMES
STATE_NAMES = ("h0", "c0", "v0")
DEFAULT_MU = 0.6
DEFAULT_S = 0.6


def init_params(p, m, l, seed=0, scale=None, forget_bias=0.0, bias_scale=0.0, dtype=None):
    """The parameters of :func:`manualgrad.cells.lstm.init_params` (W (4m, m+p), b, W_out, b2)."""
    return lstm.init_params(p, m, l, seed, scale, forget_bias, bias_scale, dtype)


def forward(params, u, state0=None, output="sigmoid", many_to_many=False, mu=DEFAULT_MU,
            s=DEFAULT_S):
    """Momentum-LSTM forward over ``u`` (T, B, p); a :class:`~manualgrad.cells.lstm.Trajectory`.

    ``traj.v`` (T+1, B, 4m) holds v[k] = v_k. ``state0``: None (zeros) or a mapping with keys
    among "h0", "c0" ((B, m) or (m,)) and "v0" ((B, 4m) or (4m,)); a missing key means zeros.
    ``mu`` in [0, 1), ``s`` > 0.
    """
    mom = check_momentum(mu, s)
    return lstm._forward(check_params(params), u, state0, output, many_to_many, mom)


def loss(params, u, y, state0=None, output="sigmoid", loss="bce", many_to_many=False,
         mu=DEFAULT_MU, s=DEFAULT_S, workspace=True):
    """F = batch mean of the per-example losses (forward only); ``workspace`` as in
    :func:`loss_and_grad` (the trajectory lives there; F is fresh)."""
    mom = check_momentum(mu, s)
    params = check_params(params)
    with backend.workspace_scope(workspace) as ws:
        return lstm._loss(params, u, y, state0, output, loss, many_to_many, mom, ws)


def sweep(params, u, y, state0=None, output="sigmoid", loss="bce", many_to_many=False,
          mu=DEFAULT_MU, s=DEFAULT_S):
    """Forward, loss, BPTT through (h, c, v) and gradients; a :class:`~manualgrad.cells.lstm.Sweep`.

    ``adj.lam_v`` (T, B, 4m) and ``adj.lam_v0`` (B, 4m) are the velocity adjoints;
    ``grad_state0`` = {"h0": (B, m), "c0": (B, m), "v0": (B, 4m)}. Every array of the Sweep is
    the caller's own (no workspace).
    """
    mom = check_momentum(mu, s)
    return lstm._sweep(check_params(params), u, y, state0, output, loss, many_to_many, mom)


def loss_and_grad(params, u, y, state0=None, output="sigmoid", loss="bce", many_to_many=False,
                  mu=DEFAULT_MU, s=DEFAULT_S, workspace=True):
    """``(F, grads)``: the batch-mean loss and its exact gradient (keys W, b, W_out, b2).

    ``workspace``: where the trajectory, the adjoints and the temporaries live between calls
    (:class:`~manualgrad.backend.Workspace`; True: the calling thread's default, False: fresh
    arrays). F and grads are always the caller's own arrays, bit for bit the same either way.
    """
    mom = check_momentum(mu, s)
    params = check_params(params)
    with backend.workspace_scope(workspace) as ws:
        sw = lstm._sweep(params, u, y, state0, output, loss, many_to_many, mom, ws)
        return sw.F, sw.grads
