"""IndRNN (manualgrad.cells.indrnn): BPTT through L stacked layers against central differences.

Problems are drawn by the strategy every cell test shares, ``manualgrad.testing.cell_problems``
(shapes T 1..6, B 1..4, p 1..4, m 1..5, layers 1..3, relu/tanh, every head of
manualgrad.testing.HEADS, many-to-one/many, state0 given or not). Recurrent weights are
drawn from U(-1.2, 1.2), so negative ones and |w| > 1 are covered too. relu problems are kept
off their kinks (every z^i_k, and o for a relu head, at least 1e-3 from 0) and checked with the
2-point stencil, as manualgrad.testing.RNNProblem does.
"""
import numpy as np
import pytest
from hypothesis import given, settings

from manualgrad import activations, backend, check, inspect, rnn, testing
from manualgrad.cells import indrnn

TOL = check.TOLERANCES["float64"]
CUPY_OK, CUPY_WHY = backend.cupy_available()


# --------------------------------------------------------------------------------------------
# BPTT against finite differences
# --------------------------------------------------------------------------------------------

@given(prob=testing.cell_problems("indrnn"))
def test_parameter_gradients_match_finite_differences(prob):
    """Every W_i, w_i, b_i, W_out, b2 for 1-3 layers, relu/tanh, every head, both modes."""
    prob.assume_off_kinks()
    F, grads = prob.loss_and_grad()
    assert list(grads) == list(indrnn.param_names(prob.layers))
    rep = check.gradients(prob.loss, prob.params, grads, **prob.fd_options())
    assert rep.max_error < TOL, "\n%s\n%s" % (prob, rep)
    assert abs(float(F) - float(prob.loss())) < 1e-12


@given(prob=testing.cell_problems("indrnn", state0=True))
def test_initial_state_gradients_are_minus_lambda0_over_B(prob):
    """grad_state0[h0_i] = dF/dh^i_0 = -lambda^i_0 / B for every layer i."""
    prob.assume_off_kinks()
    s = prob.sweep()
    assert set(s.grad_state0) == set(indrnn.state_names(prob.layers))
    for i, name in enumerate(indrnn.state_names(prob.layers)):
        x = prob.state0[name]
        num = check.numerical_gradient(prob.loss, x, **prob.fd_options())
        assert check.fd_error(s.grad_state0[name], num, s.F, **prob.fd_options()) < TOL, name
        assert np.array_equal(s.grad_state0[name], -s.adj.lam0_layers[i] / prob.u.shape[1])


def _loss_restarted(prob, s, i, k, x):
    """F as a function of x = h^i_k (B, m) alone, everything before step k fixed (batch mean).

    The layers above i are recomputed at step k from x; then the whole stack is restarted
    from the states at step k on u_{k+1..T}; many-to-many adds the loss of step k's output.
    """
    P, L, T = prob.params, prob.layers, prob.u.shape[0]
    act = activations.get(prob.activation)
    hs = s.traj.h_layers
    states = [hs[j][k] for j in range(L)]
    states[i - 1] = x
    for j in range(i + 1, L + 1):
        z = states[j - 2] @ P["W_%d" % j].T + P["w_%d" % j] * hs[j - 1][k - 1] + P["b_%d" % j]
        states[j - 1] = act.f(z)
    F = 0.0
    if k < T:
        y_rest = prob.y[k:] if prob.many_to_many else prob.y
        F = indrnn.loss(P, prob.u[k:], y_rest, **dict(
            prob.kwargs, state0=dict(zip(indrnn.state_names(L), states))))
    if prob.many_to_many or k == T:
        o = states[L - 1] @ P["W_out"].T + P["b2"]
        Y = s.y[k - 1] if prob.many_to_many else s.y
        F = F + s.head.value(o, s.head.output.f(o), Y).mean()
    return F


@given(prob=testing.cell_problems("indrnn"))
def test_adjoints_are_minus_B_dF_dh_k_in_every_layer(prob):
    """lambda^i_k = -dF_b/dh^i_k = -B dF/dh^i_k (per example, JP's sign), probed by restarting.

    adj.lam is the top layer's; adj.lam_layers holds every layer's.
    """
    prob.assume_off_kinks()
    s = prob.sweep()
    T, B = prob.u.shape[:2]
    L = prob.layers
    assert s.adj.lam is s.adj.lam_layers[-1] and s.adj.lam0 is s.adj.lam0_layers[-1]
    for i in range(1, L + 1):
        for k in sorted({1, (T + 1) // 2, T}):
            xk = s.traj.h_layers[i - 1][k].copy()
            g = check.numerical_gradient(lambda: _loss_restarted(prob, s, i, k, xk), xk,
                                         **prob.fd_options())
            F0 = _loss_restarted(prob, s, i, k, xk)
            err = check.fd_error(s.adj.lam_layers[i - 1][k - 1], -B * g, B * F0,
                                 **prob.fd_options())
            assert err < TOL, (i, k, err)


def _reported_error_of_0p05_percent(F, g, tol):
    """The relative error check.gradients reports for g * 1.0005 (4-point stencil, float64):
    5e-4 ||g|| / max(||g||, floor), with its floor fd_atol(F) / tol (check.fd_error)."""
    norm = float(np.linalg.norm(backend.to_numpy(g)))
    return 5e-4 * norm / max(norm, check.fd_atol(F) / tol)


@settings(max_examples=10)
@given(prob=testing.cell_problems("indrnn", hidden=("tanh",),
                                  head=(("sigmoid", "bce"), ("identity", "mse"))))
def test_checker_catches_a_gradient_that_is_0p05_percent_wrong(prob):
    F, grads = prob.loss_and_grad()
    tested = 0
    for name in indrnn.param_names(prob.layers):
        if float(np.abs(grads[name]).max()) < 1e-6 * max(1.0, abs(float(F))):
            continue  # below what central differences resolve: nothing to catch
        bad = dict(grads)
        bad[name] = grads[name] * 1.0005
        rep = check.gradients(prob.loss, prob.params, bad, names=[name])
        expected = _reported_error_of_0p05_percent(F, grads[name], rep.tol)
        assert not rep.ok, (name, rep)
        assert abs(rep.errors[name] - expected) < 0.1 * expected, (name, expected, rep)
        with pytest.raises(AssertionError, match=name):
            check.assert_gradients(prob.loss, prob.params, bad, names=[name])
        tested += 1
    assert tested > 0


def test_dot_product_test_on_a_six_layer_stack():
    """FW's configuration in miniature: six relu layers, softmax head, the whole vector at once."""
    P = indrnn.init_params(3, 6, 4, seed=5, layers=6, bias_scale=0.3)
    rng = np.random.default_rng(5)
    u, y = rng.standard_normal((12, 3, 3)), rng.integers(0, 4, 3)
    kw = dict(output="softmax", loss="cross_entropy")
    traj = indrnn.forward(P, u, output="softmax")
    assert min(float(np.abs(z).min()) for z in traj.z_layers) > 1e-4  # off the kinks
    F, g = indrnn.loss_and_grad(P, u, y, **kw)
    err, a, n = check.dot_product_test(lambda Q: indrnn.loss(Q, u, y, **kw), P, g, seed=1,
                                       order=2)
    assert err < TOL, (a, n)


# --------------------------------------------------------------------------------------------
# Against the vanilla RNN; structure of the adjoint
# --------------------------------------------------------------------------------------------

def _as_rnn(P, i=1, W_out=None, b2=None):
    return {"W_rec": np.diag(P["w_%d" % i]), "W_in": P["W_%d" % i], "b1": P["b_%d" % i],
            "W_out": P["W_out"] if W_out is None else W_out, "b2": P["b2"] if b2 is None else b2}


@given(prob=testing.cell_problems("indrnn", layers=1, hidden=activations.hidden_names()))
def test_one_layer_equals_the_vanilla_rnn_with_diagonal_recurrence(prob):
    """W_rec = diag(w), W_in = W: forward, adjoints and gradients agree bit for bit.

    (W_rec h with a diagonal W_rec adds exact zeros to w o h, so even the rounding agrees; the
    w gradient is diag(dF/dW_rec) up to the order of summation.)
    """
    P = prob.params
    h0 = None if prob.state0 is None else prob.state0["h0"]
    s = prob.sweep()
    r = rnn.sweep(_as_rnn(P), prob.u, prob.y, x0=h0, activation=prob.activation,
                  output=prob.output, loss=prob.loss_name, many_to_many=prob.many_to_many)
    for a, b in ((s.traj.h, r.traj.x), (s.traj.z, r.traj.z), (s.traj.o, r.traj.o),
                 (s.F_b, r.F_b), (s.adj.lam, r.adj.lam), (s.adj.lam0, r.adj.lam0),
                 (s.adj.lam_z, r.adj.lam_z), (s.grads["W_1"], r.grads["W_in"]),
                 (s.grads["b_1"], r.grads["b1"]), (s.grads["W_out"], r.grads["W_out"]),
                 (s.grads["b2"], r.grads["b2"]), (s.grad_state0["h0"], r.grad_x0)):
        assert np.array_equal(a, b)
    assert check.rel_error(s.grads["w_1"], np.diag(r.grads["W_rec"]), floor=1e-300) < 1e-13


@given(prob=testing.cell_problems("indrnn", hidden=activations.hidden_names()))
def test_a_stack_is_vanilla_rnns_composed_layer_by_layer(prob):
    """Layer i is the vanilla RNN with W_rec = diag(w_i) run on layer i-1's states."""
    P, L = prob.params, prob.layers
    traj = indrnn.forward(P, prob.u, prob.state0, prob.output, prob.many_to_many,
                          prob.activation)
    below = prob.u
    for i in range(1, L + 1):
        h0 = None if prob.state0 is None else prob.state0[indrnn.state_names(L)[i - 1]]
        r = rnn.forward(_as_rnn(P, i), below, x0=h0, activation=prob.activation,
                        output=prob.output, many_to_many=prob.many_to_many)
        assert np.array_equal(traj.h_layers[i - 1], r.x)
        below = r.x[1:]
    assert np.array_equal(traj.o, r.o) and np.array_equal(traj.yhat, r.yhat)


def test_active_relu_unit_adjoint_is_a_power_of_its_recurrent_weight():
    """lambda_k = w^(T-k) o lambda_T per unit while sigma' = 1: |w| < 1 vanishes, > 1 explodes."""
    rng = np.random.default_rng(0)
    T, B, p, m = 30, 2, 3, 4
    P = indrnn.init_params(p, m, 1, seed=0)
    P["W_1"] = np.abs(P["W_1"])
    P["b_1"] = backend.asarray(np.full(m, 0.5))
    P["w_1"] = backend.asarray([0.5, 0.9, 1.0, 1.1])
    u = np.abs(rng.standard_normal((T, B, p)))  # positive inputs: every z > 0, relu' = 1
    s = indrnn.sweep(P, u, rng.standard_normal((B, 1)), output="identity", loss="mse")
    assert float(s.traj.z.min()) > 0
    powers = P["w_1"] ** backend.asarray(np.arange(T - 1, -1, -1)[:, None, None],
                                         dtype="int64")  # w^(T-k), k = 1..T
    assert np.allclose(s.adj.lam, powers * s.adj.lam[T - 1], rtol=1e-12, atol=0)
    ratio = np.abs(s.adj.lam[0] / s.adj.lam[T - 1]).mean(axis=0)
    assert ratio[0] < 1e-8 and abs(ratio[2] - 1) < 1e-12 and ratio[3] > 10  # 0.5^29, 1, 1.1^29


def test_relu_units_switched_off_block_the_adjoint():
    """sigma'(z_k) = 0 stops lambda at step k: the earlier lambdas of that unit get nothing."""
    P = indrnn.init_params(1, 2, 1, seed=0, recurrent_init=1.0)
    P["W_1"] = np.array([[1.0], [1.0]])
    P["b_1"] = np.array([0.0, 0.0])
    u = np.array([1.0, 1.0, -5.0, 1.0]).reshape(4, 1, 1)  # unit 0 and 1: h = 1, 2, 0, 1 (dead at 3)
    s = indrnn.sweep(P, u, np.array([[0.3]]), output="identity", loss="mse")
    assert np.all(s.traj.z[2] < 0)
    assert np.all(s.adj.lam[:2] == 0) and np.all(s.adj.lam0 == 0)
    assert np.all(s.adj.lam[2:] != 0)


def test_explicit_adjoint_and_gradients_api_equals_sweep():
    P = indrnn.init_params(3, 5, 2, seed=3, layers=3, bias_scale=0.2)
    rng = np.random.default_rng(0)
    u, y = backend.randn((7, 4, 3), rng=rng), backend.randn((4, 2), rng=rng)
    traj = indrnn.forward(P, u, output="identity", activation="tanh")
    adj = indrnn.adjoint(P, traj, -(traj.yhat - y))  # JP eq. (6) for mse
    adj2 = indrnn.adjoint(P, traj, delta_out=-(traj.yhat - y))
    g = indrnn.gradients(P, traj, adj)
    s = indrnn.sweep(P, u, y, output="identity", loss="mse", activation="tanh")
    assert len(adj.lam_layers) == 3 and all(a.shape == (7, 4, 5) for a in adj.lam_layers)
    assert adj.lam0.shape == (4, 5) and adj.lam_at(0, layer=2) is adj.lam0_layers[1]
    assert np.array_equal(adj.lam_at(3), adj.lam[2]) and traj.h_at(7, 1).shape == (4, 5)
    for k in g:
        assert np.array_equal(g[k], s.grads[k])
    for a, b, c in zip(adj.lam_layers, adj2.lam_layers, s.adj.lam_layers):
        assert np.array_equal(a, b) and np.array_equal(a, c)
    norms = inspect.adjoint_norms(s.adj)  # reads the top layer
    assert norms.per_example.shape == (7, 4) and norms.lam0.shape == (4,)


def test_adjoints_are_per_example_and_gradients_the_batch_mean():
    P = indrnn.init_params(2, 4, 3, seed=1, layers=2, bias_scale=0.2)
    rng = np.random.default_rng(1)
    u, y = rng.standard_normal((6, 5, 2)), rng.integers(0, 3, 5)
    kw = dict(output="softmax", loss="cross_entropy", activation="tanh")
    full = indrnn.sweep(P, u, y, **kw)
    part = indrnn.sweep(P, u[:, :2], y[:2], **kw)
    for a, b in zip(full.adj.lam_layers, part.adj.lam_layers):
        assert np.allclose(a[:, :2], b, rtol=1e-13, atol=0)
    per = [indrnn.loss_and_grad(P, u[:, b:b + 1], y[b:b + 1], **kw)[1] for b in range(5)]
    for k in full.grads:
        assert np.allclose(full.grads[k], sum(q[k] for q in per) / 5, rtol=1e-12, atol=1e-15)


def _backend_problem():
    rng = np.random.default_rng(0)
    T, B, p, m, l, L = 20, 8, 3, 16, 3, 3
    u, y = rng.standard_normal((T, B, p)), rng.integers(0, l, (T, B))
    s0 = {n: 0.3 * rng.standard_normal((B, m)) for n in indrnn.state_names(L)}
    kw = dict(state0=s0, activation="tanh", output="softmax", loss="cross_entropy",
              many_to_many=True)
    return (p, m, l, L), u, y, kw


def test_float32_agrees_with_float64():
    shape, u, y, kw = _backend_problem()
    F64, g64 = indrnn.loss_and_grad(indrnn.init_params(*shape[:3], seed=1, layers=shape[3],
                                                       bias_scale=0.2), u, y, **kw)
    with backend.use_backend(dtype="float32"):
        P = indrnn.init_params(*shape[:3], seed=1, layers=shape[3], bias_scale=0.2)
        F32, g32 = indrnn.loss_and_grad(P, u, y, **kw)
        assert g32["w_2"].dtype == np.float32 and F32.dtype == np.float32
    assert abs(float(F32) - float(F64)) < 1e-5 * abs(float(F64))
    for k in g64:
        assert check.rel_error(g32[k], g64[k]) < 1e-4, k


@pytest.mark.skipif(not CUPY_OK, reason="CuPy/GPU not available: " + CUPY_WHY)
@pytest.mark.gpu
def test_cupy_matches_numpy_to_1e12():
    shape, u, y, kw = _backend_problem()
    with backend.use_backend("numpy"):  # the reference on the host, whatever the suite's backend
        F_np, g_np = indrnn.loss_and_grad(indrnn.init_params(*shape[:3], seed=1, layers=shape[3],
                                                             bias_scale=0.2), u, y, **kw)
    with backend.use_backend("cupy"):
        P = indrnn.init_params(*shape[:3], seed=1, layers=shape[3], bias_scale=0.2)
        s = indrnn.sweep(P, u, y, **kw)
        assert type(s.grads["w_1"]).__module__.startswith("cupy")
        assert abs(float(s.F) - float(F_np)) <= 1e-12 * max(1.0, abs(float(F_np)))
        for k in g_np:
            diff = np.abs(backend.to_numpy(s.grads[k]) - g_np[k]).max()
            assert diff <= 1e-12 * max(1.0, np.abs(g_np[k]).max()), (k, diff)
        Q = indrnn.clip_recurrent(P, 0.5)
        assert type(Q["w_1"]).__module__.startswith("cupy")


# --------------------------------------------------------------------------------------------
# Parameters, initialisation, the recurrent constraint
# --------------------------------------------------------------------------------------------

def test_names_init_shapes_and_seed():
    assert indrnn.PARAM_NAMES == ("W_1", "w_1", "b_1", "W_out", "b2")
    assert indrnn.STATE_NAMES == ("h0",)
    assert indrnn.param_names(2) == ("W_1", "w_1", "b_1", "W_2", "w_2", "b_2", "W_out", "b2")
    assert indrnn.state_names(3) == ("h0_1", "h0_2", "h0_3")
    P = indrnn.init_params(5, 10, 3, seed=0, layers=3)
    assert {k: v.shape for k, v in P.items()} == {
        "W_1": (10, 5), "w_1": (10,), "b_1": (10,), "W_2": (10, 10), "w_2": (10,), "b_2": (10,),
        "W_3": (10, 10), "w_3": (10,), "b_3": (10,), "W_out": (3, 10), "b2": (3,)}
    assert indrnn.num_layers(P) == 3 and P["W_1"].dtype == np.float64
    assert all(np.array_equal(P[k], v) for k, v in indrnn.init_params(5, 10, 3, seed=0,
                                                                      layers=3).items())
    assert np.all(P["b_1"] == 0) and np.all((P["w_1"] >= 0) & (P["w_1"] < 1))
    big = indrnn.init_params(400, 400, 1, seed=1, layers=2)
    assert abs(big["W_2"].std() - (2 / 400) ** 0.5) < 0.002  # He scale for relu
    assert abs(indrnn.init_params(4, 400, 1, seed=1, scale=0.3)["W_1"].std() - 0.3) < 0.02


def test_recurrent_init_long_and_constant():
    c = indrnn.recurrent_bound(100, mag=2.0)
    assert c == pytest.approx(2 ** 0.01)
    P = indrnn.init_params(2, 300, 1, seed=2, layers=3, recurrent_init="long", seq_len=100)
    assert np.all((P["w_1"] >= 0) & (P["w_1"] <= c)) and P["w_1"].min() < 0.1
    assert np.all((P["w_3"] >= 1 / c) & (P["w_3"] <= c))  # the top layer keeps long memory
    Q = indrnn.init_params(2, 4, 1, layers=2, recurrent_init=1.0)
    assert np.all(Q["w_1"] == 1.0) and np.all(Q["w_2"] == 1.0)


def test_clip_recurrent():
    P = indrnn.init_params(2, 6, 1, seed=0, layers=2)
    P["w_2"] = np.array([-3.0, -1.0, 0.2, 1.0, 1.5, 7.0])
    Q = indrnn.clip_recurrent(P, 1.2)
    assert np.array_equal(Q["w_2"], [-1.2, -1.0, 0.2, 1.0, 1.2, 1.2])
    assert Q["W_1"] is P["W_1"] and P["w_2"][0] == -3.0  # a copy: params untouched
    assert np.array_equal(Q["w_1"], P["w_1"])  # already in [0, 1)
    with pytest.raises(ValueError, match="bound"):
        indrnn.clip_recurrent(P, -1.0)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------

def _small():
    P = indrnn.init_params(3, 4, 2, seed=0, layers=2)
    u = np.random.default_rng(0).standard_normal((5, 2, 3))
    return P, u, np.full((2, 2), 0.5)


def test_wrong_shapes_name_the_argument():
    P, u, y = _small()
    with pytest.raises(ValueError, match=r"u: axis 2 .*W_1 has 3 columns"):
        indrnn.forward(P, u[:, :, :2])
    with pytest.raises(ValueError, match="u must be a 3-d array"):
        indrnn.forward(P, u[0])
    with pytest.raises(ValueError, match=r"params\['W_2'\] has shape \(4, 3\)"):
        indrnn.forward(dict(P, W_2=np.ones((4, 3))), u)
    with pytest.raises(ValueError, match=r"params\['w_1'\]"):
        indrnn.forward(dict(P, w_1=np.ones(5)), u)
    with pytest.raises(ValueError, match=r"params\['W_out'\]"):
        indrnn.forward(dict(P, W_out=np.ones((2, 3))), u)
    with pytest.raises(ValueError, match=r"missing b_2"):
        indrnn.forward({k: v for k, v in P.items() if k != "b_2"}, u)
    with pytest.raises(ValueError, match=r"unexpected W_rec"):
        indrnn.forward(dict(P, W_rec=np.eye(4)), u)
    with pytest.raises(ValueError, match="lack W_1"):
        indrnn.forward({"W_out": P["W_out"], "b2": P["b2"]}, u)
    with pytest.raises(TypeError, match="params must be a mapping"):
        indrnn.forward([P["W_1"]], u)
    with pytest.raises(ValueError, match="at least one step"):
        indrnn.forward(P, u[:0])


def test_state0_is_checked():
    P, u, y = _small()
    h = np.zeros((2, 4))
    assert indrnn.forward(P, u, state0={"h0_1": h, "h0_2": np.zeros(4)}).h.shape == (6, 2, 4)
    with pytest.raises(ValueError, match=r"exactly the keys h0_1, h0_2"):
        indrnn.forward(P, u, state0={"h0": h})
    with pytest.raises(ValueError, match=r"state0\['h0_2'\] must have shape"):
        indrnn.forward(P, u, state0={"h0_1": h, "h0_2": np.zeros((3, 4))})
    with pytest.raises(TypeError, match="state0 must be a mapping"):
        indrnn.forward(P, u, state0=h)
    with pytest.raises(TypeError, match=r"state0\['h0_1'\] must be a floating-point"):
        indrnn.forward(P, u, state0={"h0_1": h.astype(int), "h0_2": h})


def test_layers_below_one_and_bad_init_arguments():
    for bad in (0, -2):
        with pytest.raises(ValueError, match="layers must be >= 1"):
            indrnn.init_params(2, 3, 1, layers=bad)
        with pytest.raises(ValueError, match="layers must be >= 1"):
            indrnn.param_names(bad)
    with pytest.raises(TypeError, match="layers must be an integer"):
        indrnn.init_params(2, 3, 1, layers=2.0)
    with pytest.raises(ValueError, match="m must be a positive integer"):
        indrnn.init_params(2, 0, 1)
    with pytest.raises(ValueError, match="recurrent_init"):
        indrnn.init_params(2, 3, 1, recurrent_init="orthogonal")
    with pytest.raises(ValueError, match="needs seq_len"):
        indrnn.init_params(2, 3, 1, recurrent_init="long")
    with pytest.raises(ValueError, match="seq_len must be >= 1"):
        indrnn.recurrent_bound(0)


def test_unknown_activation_and_head():
    P, u, y = _small()
    with pytest.raises(ValueError, match="unknown activation 'relu6'"):
        indrnn.forward(P, u, activation="relu6")
    with pytest.raises(ValueError, match="softmax is only available as an output head"):
        indrnn.sweep(P, u, y, activation="softmax")
    with pytest.raises(ValueError, match="unknown output"):
        indrnn.loss(P, u, y, output="sigmoidal")
    with pytest.raises(ValueError, match="loss='bce' needs output"):
        indrnn.loss(P, u, y, output="identity", loss="bce")


def test_integer_and_non_finite_arrays_are_refused():
    P, u, y = _small()
    with pytest.raises(TypeError, match="u must be a floating-point array, got an integer"):
        indrnn.forward(P, u.astype(int))
    with pytest.raises(TypeError, match=r"params\['w_2'\] must be a floating-point"):
        indrnn.forward(dict(P, w_2=np.ones(4, dtype=int)), u)
    with pytest.raises(TypeError, match="y has integer dtype"):
        indrnn.sweep(P, u, np.ones((2, 2), dtype=int))
    bad = u.copy()
    bad[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="u contains 1 non-finite"):
        indrnn.sweep(P, bad, y)
    with pytest.raises(TypeError, match=r"params\['w_1'\] must be a floating-point"):
        indrnn.clip_recurrent(dict(P, w_1=np.ones(4, dtype=bool)), 1.0)
