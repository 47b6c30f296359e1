"""BW-HB: the heavy-ball method in its two forms (the Momentum RNN as its p-form: test_momentum)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from manualgrad import backend
from manualgrad.optim import heavy_ball as hb


def _quadratic(n, seed):
    rng = np.random.default_rng(seed)
    Q = rng.standard_normal((n, n))
    A = Q @ Q.T / n + 0.1 * np.eye(n)          # f(x) = x^T A x / 2 - b^T x, grad = A x - b
    b = rng.standard_normal(n)
    Ad, bd = backend.asarray(A), backend.asarray(b)    # grad acts on the iterates, on the backend
    return A, b, (lambda x: x @ Ad.T - bd)


@given(n=st.integers(1, 6), seed=st.integers(0, 2**16), s=st.floats(0.01, 0.5),
       mu=st.floats(0.0, 0.95), steps=st.integers(0, 30))
@settings(max_examples=40)
def test_x_form_and_p_form_give_the_same_iterates(n, seed, s, mu, steps):
    A, b, grad = _quadratic(n, seed)
    x0 = np.random.default_rng(seed + 1).standard_normal((3, n))
    xs = backend.to_numpy(hb.heavy_ball(grad, x0, s, mu, steps))
    ps = backend.to_numpy(hb.heavy_ball_p(grad, x0, s, mu, steps))
    assert xs.shape == ps.shape == (steps + 1, 3, n)
    scale = 1 + np.abs(xs).max()
    assert np.abs(xs - ps).max() <= 1e-12 * scale * (steps + 1)


def test_first_step_is_gradient_descent_and_second_adds_momentum():
    A, b, grad = _quadratic(3, 0)
    x0 = backend.asarray(np.ones((1, 3)))
    s, mu = 0.1, 0.7
    xs = backend.to_numpy(hb.heavy_ball(grad, x0, s, mu, 2))
    x1 = x0 - s * grad(x0)
    x2 = x1 - s * grad(x1) + mu * (x1 - x0)
    np.testing.assert_allclose(xs[1], backend.to_numpy(x1), rtol=0, atol=1e-15)
    np.testing.assert_allclose(xs[2], backend.to_numpy(x2), rtol=0, atol=1e-15)


def test_momentum_speeds_up_an_ill_conditioned_quadratic():
    """The reason for the method: with s = 1/L, mu = 0.9 beats mu = 0 after 100 steps."""
    A = backend.asarray(np.diag([1.0, 1e-2]))
    grad = lambda x: x @ A.T  # noqa: E731
    x0 = np.ones((1, 2))
    plain = backend.to_numpy(hb.heavy_ball(grad, x0, 1.0, 0.0, 100))[-1]
    heavy = backend.to_numpy(hb.heavy_ball(grad, x0, 1.0, 0.9, 100))[-1]
    assert np.linalg.norm(heavy) < 0.1 * np.linalg.norm(plain)


@pytest.mark.parametrize("kw, match", [
    (dict(s=0.0), "s"), (dict(s=-1.0), "s"), (dict(mu=1.0), "mu"), (dict(mu=-0.1), "mu"),
    (dict(steps=-1), "steps"), (dict(steps=1.5), "steps"),
])
def test_bad_hyperparameters_are_refused(kw, match):
    args = dict(s=0.1, mu=0.5, steps=3)
    args.update(kw)
    with pytest.raises((ValueError, TypeError), match=match):
        hb.heavy_ball(lambda x: x, np.ones(2), **args)
    with pytest.raises((ValueError, TypeError), match=match):
        hb.heavy_ball_p(lambda x: x, np.ones(2), **args)
