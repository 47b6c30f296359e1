"""The one gradient entry point of the ODE models (manualgrad.ode.gradient, docs/ode.md 3.4)."""
import numpy as np
import pytest

from manualgrad import backend
from manualgrad.ode import gradient, hbnode, node


def _host(d):
    return {k: backend.to_numpy(v) for k, v in d.items()}


def _same(a, b):
    a, b = _host(a), _host(b)
    return list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


def _node_problem():
    rng = backend.host_rng(0)
    P = node.init_params(3, 4, seed=1, l=2, bias_scale=0.1)
    h0 = backend.asarray(rng.standard_normal((4, 3)))
    y = backend.asarray(rng.standard_normal((4, 2)))
    return P, h0, y


def _hb_problem():
    rng = backend.host_rng(2)
    P = hbnode.init_params(3, 4, seed=3, learn_gamma=True, gamma0=0.4, l=2, bias_scale=0.1)
    h0, m0 = (backend.asarray(rng.standard_normal((4, 3))) for _ in range(2))
    y = backend.asarray(rng.standard_normal((4, 2)))
    return P, h0, m0, y


@pytest.mark.parametrize("method", ["discrete", "continuous"])
def test_node_loss_and_grad_is_the_entry_point(method):
    """node.loss_and_grad = gradient.loss_and_grad with the NODEField and the whole state,
    bit for bit; info renames grad_z0 to grad_h0 and zT to hT."""
    P, h0, y = _node_problem()
    F, g, info = node.loss_and_grad(P, h0, y, solver="rk4", steps=5, method=method,
                                    workspace=False)
    P2 = node.check_params(P, h0, node.NODEField())
    F2, g2, info2 = gradient.loss_and_grad(node.NODEField(), h0, P2, y, solver="rk4", steps=5,
                                           method=method)
    assert float(F) == float(F2) and _same(g, g2)
    assert _same({"a0": info["grad_h0"], "hT": info["hT"], "aT": info["aT"]},
                 {"a0": info2["grad_z0"], "hT": info2["zT"], "aT": info2["aT"]})


def test_hbnode_packing_reads_h_and_gives_m_a_zero_cotangent():
    """POSITION: h(T) = z(T)[:, :n], dF/dz(T) = [dF/dh(T), 0]."""
    P, h0, m0, y = _hb_problem()
    F, g, info = hbnode.loss_and_grad(P, h0, m0, y, solver="rk4", steps=5)
    n = h0.shape[1]
    aT = backend.to_numpy(info["aT"])
    assert aT.shape == (4, 2 * n) and np.all(aT[:, n:] == 0.0) and np.abs(aT[:, :n]).max() > 0
    z = backend.asarray(np.arange(12.0).reshape(2, 6))
    assert np.array_equal(backend.to_numpy(hbnode.POSITION.observe(z)),
                          np.arange(12.0).reshape(2, 6)[:, :3])


def test_a_method_added_to_the_registry_serves_both_models(monkeypatch):
    """A new Method is one registry entry: node and hbnode both accept it at once (here a copy of
    the discrete one, which must give the discrete results bit for bit)."""
    disc = gradient.METHODS["discrete"]
    monkeypatch.setitem(gradient.METHODS, "discrete_copy",
                        gradient.Method("discrete_copy", disc.record, disc.sweep))
    P, h0, y = _node_problem()
    _, g, _ = node.loss_and_grad(P, h0, y, solver="midpoint", steps=4)
    _, g2, info = node.loss_and_grad(P, h0, y, solver="midpoint", steps=4,
                                     method="discrete_copy")
    assert _same(g, g2) and info["method"] == "discrete_copy"
    Q, h0, m0, y = _hb_problem()
    _, g, _ = hbnode.loss_and_grad(Q, h0, m0, y, solver="midpoint", steps=4)
    _, g2, _ = hbnode.loss_and_grad(Q, h0, m0, y, solver="midpoint", steps=4,
                                    method="discrete_copy")
    assert _same(g, g2)


def test_unknown_method_names_the_registry():
    P, h0, y = _node_problem()
    with pytest.raises(ValueError, match="method must be 'discrete' or 'continuous' or "
                                         "'checkpointed', got 'adj'"):
        node.loss_and_grad(P, h0, y, solver="rk4", steps=2, method="adj")
    assert gradient.method_names() == ("discrete", "continuous", "checkpointed")
