"""The heavy-ball method in both of the lecture's forms (BW-HB), and the Momentum RNN read as it.

BW, "Heavy-ball method vs. RNN". For a function f with gradient ``grad``, step ``s`` > 0 and
momentum ``mu`` in [0, 1)::

    x-form:   x_t = x_{t-1} - s grad f(x_{t-1}) + mu (x_{t-1} - x_{t-2})
    p-form:   p_t = mu p_{t-1} + s grad f(x_{t-1});    x_t = x_{t-1} - p_t

with p_t = x_{t-1} - x_t. Both start from x_0 with no velocity (x_{-1} = x_0, p_0 = 0), so they
produce the same iterates (up to round-off): :func:`heavy_ball` and :func:`heavy_ball_p` are
written separately, each literally from its form, and a test checks they agree.

The lecture then reads the RNN h_t = sigma(U h_{t-1} + W x_t) as a step of a projected method
with phi(.) = sigma(U .) and u_t = U^{-1} W x_t, puts momentum on it, and arrives at the
Momentum RNN::

    p_t = mu p_{t-1} - s u_t;    h_t = phi(h_{t-1} - p_t)                       (p-form)
    v_t = mu v_{t-1} + s W x_t;  h_t = sigma(U h_{t-1} + v_t),   v_t = -U p_t   (BW-MRNN)

:func:`momentum_rnn_p_form` runs the p-form literally (it needs U invertible); a test checks it
reproduces :func:`manualgrad.cells.momentum.forward` (no bias) to round-off.
"""
from __future__ import annotations

from .. import activations, backend
from .._validate import float_array, number, positive_int

__all__ = ["heavy_ball", "heavy_ball_p", "momentum_rnn_p_form"]


def _check(s, mu, steps):
    s = number(s, "s", positive=True)
    mu = number(mu, "mu", minimum=0.0)
    if mu >= 1.0:
        raise ValueError("mu must lie in [0, 1), got %r" % mu)
    return s, mu, positive_int(steps, "steps", minimum=0)


def heavy_ball(grad, x0, s, mu, steps):
    """BW-HB, x-form: ``steps`` iterations from x0 (x_{-1} = x0). Returns (steps + 1, *x0.shape).

    ``grad``: callable, grad f at an array shaped like x0.
    """
    s, mu, steps = _check(s, mu, steps)
    x0 = float_array(x0, "x0")
    xp = backend.xp()
    xs = [x0, x0]                      # x_{-1}, x_0
    for _ in range(steps):
        x1, x2 = xs[-1], xs[-2]        # x_{t-1}, x_{t-2}
        xs.append(x1 - s * grad(x1) + mu * (x1 - x2))
    return xp.stack(xs[1:])


def heavy_ball_p(grad, x0, s, mu, steps):
    """BW-HB, p-form: p_t = mu p_{t-1} + s grad f(x_{t-1}), x_t = x_{t-1} - p_t, from p_0 = 0.

    Returns the iterates (steps + 1, *x0.shape), as :func:`heavy_ball`.
    """
    s, mu, steps = _check(s, mu, steps)
    x = float_array(x0, "x0")
    xp = backend.xp()
    p = xp.zeros_like(x)
    xs = [x]
    for _ in range(steps):
        p = mu * p + s * grad(x)
        x = x - p
        xs.append(x)
    return xp.stack(xs)


def momentum_rnn_p_form(U, W, x, mu, s, h0=None, activation="tanh"):
    """The lecture's Momentum RNN in p-form (BW-HB applied to the RNN), literally.

    p_t = mu p_{t-1} - s u_t, h_t = phi(h_{t-1} - p_t), phi(z) = sigma(U z), u_t = U^{-1} W x_t,
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
