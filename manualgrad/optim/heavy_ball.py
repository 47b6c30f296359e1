"""The heavy-ball method in both of the lecture's forms (BW-HB).

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

That model lives with its cell: :func:`manualgrad.cells.momentum.momentum_rnn_p_form` runs the
p-form literally (it needs U invertible), and a test checks it reproduces
:func:`manualgrad.cells.momentum.forward` (no bias) to round-off. This module, like every
optimizer, calls no model.
"""
from __future__ import annotations

from .. import backend
from .._validate import float_array, number, positive_int

__all__ = ["heavy_ball", "heavy_ball_p"]


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
