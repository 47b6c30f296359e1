"""First and second derivatives of every activation, loss and head, by central differences."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from manualgrad import activations, backend, check, losses, testing


def _z(seed, shape, scale=2.0):
    z = np.random.default_rng(seed).standard_normal(shape) * scale
    return backend.asarray(np.where(np.abs(z) < 1e-2, 0.5, z))  # off the relu kink


@given(name=st.sampled_from(sorted(activations.HIDDEN)), seed=testing.seeds())
def test_elementwise_first_and_second_derivative(name, seed):
    act = activations.HIDDEN[name]
    z = _z(seed, (4, 3))
    a = act.f(z)
    # d/dz of sum(w * f(z)) = w * f'(z); of sum(w * f'(z)) = w * f''(z)
    w = backend.randn(z.shape, seed=seed + 1)
    zz = z.copy()
    g1 = check.numerical_gradient(lambda: (w * act.f(zz)).sum(), zz, order=2)
    g2 = check.numerical_gradient(lambda: (w * act.grad(zz, None)).sum(), zz, order=2)
    assert check.rel_error(w * act.grad(z, a), g1) < 1e-8
    if name != "relu":  # sigma'' of relu is 0 away from the kink; FD of a step function is 0 too
        assert check.rel_error(w * act.grad2(z, a), g2) < 1e-7
    else:
        assert np.all(act.grad2(z, a) == 0)
    # the cached form (a given) equals the recomputed one
    assert np.allclose(act.grad(z, a), act.grad(z, None), rtol=0, atol=1e-15)


@given(name=st.sampled_from(sorted(activations.OUTPUT)), seed=testing.seeds())
def test_jacobian_products_and_second_order_product(name, seed):
    act = activations.OUTPUT[name]
    rng = np.random.default_rng(seed)
    z, v, w = _z(seed, (3, 4)), backend.randn((3, 4), rng=rng), backend.randn((3, 4), rng=rng)
    zz = z.copy()
    num_vjp = check.numerical_gradient(lambda: (v * act.f(zz)).sum(), zz, order=2)  # J^T v
    assert check.rel_error(act.vjp(z, act.f(z), v), num_vjp) < 1e-8
    # vjp2(z, v, w) = d/de J(z + e w)^T v: directional derivative of vjp
    h = 1e-5
    num = (act.vjp(z + h * w, None, v) - act.vjp(z - h * w, None, v)) / (2 * h)
    ref = act.vjp2(z, act.f(z), v, w)
    if name == "relu":
        assert np.all(ref == 0)
    else:
        assert check.rel_error(ref, num) < 1e-7


def test_softmax_is_stable_and_normalised():
    s = activations.OUTPUT["softmax"].f(backend.asarray([[1000.0, 0.0, -1000.0], [1.0, 1.0, 1.0]]))
    assert np.all(np.isfinite(s)) and np.allclose(s.sum(axis=1), 1.0)


def _targets(loss, seed, shape):
    rng = np.random.default_rng(seed)
    if loss == "cross_entropy":
        return backend.asarray(np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])])
    if loss == "bce":
        return backend.uniform(shape, rng=rng)
    return backend.randn(shape, rng=rng)


@given(name=st.sampled_from(sorted(losses.LOSSES)), seed=testing.seeds())
def test_loss_gradient_and_hessian_vector_product(name, seed):
    ls = losses.LOSSES[name]
    rng = np.random.default_rng(seed)
    shape = (3, 4)
    yhat = backend.uniform(shape, 0.05, 0.95, rng=rng)
    y = _targets(name, seed, shape)
    v = backend.randn(shape, rng=rng)
    yy = yhat.copy()
    g = check.numerical_gradient(lambda: ls.value(yy, y).sum(), yy)
    assert check.rel_error(ls.grad(yhat, y), g) < 1e-8
    H = check.numerical_gradient(lambda: (ls.grad(yy, y) * v).sum(), yy)  # H v (H symmetric)
    assert check.rel_error(ls.hvp(yhat, y, v), H) < 1e-7
    assert ls.value(yhat, y).shape == (3,)


@given(head=testing.heads(), seed=testing.seeds())
def test_head_derivatives_in_the_output_preactivation(head, seed):
    output, loss = head
    h = losses.get_head(output, loss)
    rng = np.random.default_rng(seed)
    o = _z(seed, (3, 4))
    y = _targets(loss, seed + 7, (3, 4))
    v = backend.randn(o.shape, rng=rng)
    oo = o.copy()
    a = h.output.f(o)
    opts = {"order": 2} if output == "relu" else {}
    g = check.numerical_gradient(lambda: h.value(oo, h.output.f(oo), y).sum(), oo, **opts)
    assert check.rel_error(-h.delta_out(o, a, y), g) < 1e-7
    Hv = check.numerical_gradient(lambda: (h.delta_out(oo, h.output.f(oo), y) * v).sum(), oo,
                                  **opts)
    assert check.rel_error(h.hvp(o, a, y, v), -Hv) < 1e-6 if output == "relu" else \
        check.rel_error(h.hvp(o, a, y, v), -Hv) < 1e-7


@pytest.mark.parametrize("output,loss", [("sigmoid", "bce"), ("softmax", "cross_entropy")])
def test_fused_heads_equal_the_composition_and_stay_finite_when_saturated(output, loss):
    h = losses.get_head(output, loss)
    rng = np.random.default_rng(0)
    o = backend.randn((5, 3), rng=rng)
    y = _targets(loss, 1, (5, 3))
    a = h.output.f(o)
    composed = losses.Head(h.output, h.loss)  # the unfused path
    assert np.allclose(h.value(o, a, y), composed.value(o, a, y), rtol=1e-12)
    assert np.allclose(h.delta_out(o, a, y), composed.delta_out(o, a, y), rtol=1e-10)
    v = backend.randn(o.shape, rng=rng)
    assert np.allclose(h.hvp(o, a, y, v), composed.hvp(o, a, y, v), rtol=1e-9, atol=1e-12)
    big = 800.0 * np.sign(o)  # sigmoid/softmax saturate to exact 0/1 in float64
    ab = h.output.f(big)
    assert np.all(np.isfinite(h.value(big, ab, y))) and np.all(np.isfinite(h.delta_out(big, ab, y)))


def test_registries_reject_unknown_names_and_list_valid_ones():
    with pytest.raises(ValueError, match="valid names are tanh, sigmoid"):
        activations.get("gelu")
    with pytest.raises(ValueError, match="only available as an output head"):
        activations.get("softmax", kind="hidden")
    with pytest.raises(ValueError, match="valid names are mse, bce, cross_entropy"):
        losses.get("hinge")
    with pytest.raises(ValueError, match="loss='bce' needs output in"):
        losses.get_head("identity", "bce")
    with pytest.raises(TypeError):
        losses.get(3)
