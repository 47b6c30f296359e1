"""Vanilla RNN (JP eqs. 5-13): every derivative against central differences, across hypothesis cases."""
import numpy as np
import pytest
from hypothesis import given, settings

from manualgrad import backend, check, rnn, testing

TOL = check.TOLERANCES["float64"]


@given(prob=testing.rnn_problems())
def test_parameter_gradients_match_finite_differences(prob):
    """JP eqs. (9)-(13) for every activation, head, loss, many-to-one/many, x0 given or not."""
    prob.assume_off_kinks()
    F, grads = prob.loss_and_grad()
    rep = check.gradients(prob.loss, prob.params, grads, **prob.fd_options())
    assert rep.max_error < TOL, "\n%s\n%s" % (prob, rep)
    assert abs(float(F) - float(prob.loss())) < 1e-12


@given(prob=testing.rnn_problems(x0=True))
def test_initial_state_gradient_is_minus_lambda0_over_B(prob):
    prob.assume_off_kinks()
    s = prob.sweep()
    num = check.numerical_gradient(prob.loss_of_x0, prob.x0, **prob.fd_options())
    assert check.fd_error(s.grad_x0, num, s.F, **prob.fd_options()) < TOL


@given(prob=testing.rnn_problems())
def test_adjoints_are_minus_dF_b_dx_k(prob):
    """JP eq. (8) with the paper's sign: lambda_k = -dF_b/dx_k, per example (not batch mean).

    dF/dx_k is probed by adding a perturbation e_k to x_k: run the forward from a state
    injected at step k and difference it. Equivalent and simpler: the per-example adjoint of
    step k equals the x0-gradient of the sequence u_{k+1..T} started from x_k, times B.
    """
    prob.assume_off_kinks()
    s = prob.sweep()
    T, B = prob.u.shape[:2]
    for k in (1, T // 2, T):
        if k < 1 or k > T:
            continue
        xk = s.traj.x[k].copy()
        u_rest = prob.u[k:]
        if k == T:  # no steps left: lambda_T = W_out^T [sigma_out'(o) delta] (+ nothing)
            if prob.many_to_many:
                continue
            o = xk @ prob.params["W_out"].T + prob.params["b2"]
            head = s.head
            lamT = head.delta_out(o, head.output.f(o), s.y) @ prob.params["W_out"]
            assert check.rel_error(s.adj.lam[T - 1], lamT) < 1e-12
            continue
        y_rest = prob.y[k:] if prob.many_to_many else prob.y
        kw = dict(prob.kwargs, x0=None)

        def F_from(x):
            F = rnn.loss(prob.params, u_rest, y_rest, **dict(kw, x0=x))
            if prob.many_to_many:  # step k's own output loss depends on x_k too
                o = x @ prob.params["W_out"].T + prob.params["b2"]
                F = F + s.head.value(o, s.head.output.f(o), s.y[k - 1]).mean()
            return F
        g = check.numerical_gradient(lambda: F_from(xk), xk, **prob.fd_options())
        # many-to-many: the losses of steps 1..k-1 do not depend on x_k
        assert check.fd_error(s.adj.lam[k - 1], -B * g, B * F_from(xk), **prob.fd_options()) < TOL


@given(prob=testing.rnn_problems())
def test_dot_product_test_on_the_whole_parameter_vector(prob):
    prob.assume_off_kinks()
    F, grads = prob.loss_and_grad()
    err, a, n = check.dot_product_test(prob.loss, prob.params, grads, seed=prob.seed % 1000,
                                       **prob.fd_options())
    assert err < TOL, (a, n)
    assert err < TOL, (a, n)


def _reported_error_of_0p05_percent(F, g, tol):
    """The relative error check.gradients reports for g * 1.0005 (4-point stencil, float64):
    5e-4 ||g|| / max(||g||, floor), with its floor fd_atol(F) / tol (check.fd_error)."""
    norm = float(np.linalg.norm(backend.to_numpy(g)))
    return 5e-4 * norm / max(norm, check.fd_atol(F) / tol)


@settings(max_examples=10)
@given(prob=testing.rnn_problems(hidden=("tanh",), head=(("sigmoid", "bce"),)))
def test_checker_catches_a_gradient_that_is_0p05_percent_wrong(prob):
    F, grads = prob.loss_and_grad()
    for name in rnn.PARAM_NAMES:
        bad = dict(grads)
        bad[name] = grads[name] * 1.0005
        if float(abs(grads[name]).max()) == 0:
            continue
        rep = check.gradients(prob.loss, prob.params, bad, names=[name])
        expected = _reported_error_of_0p05_percent(F, grads[name], rep.tol)
        assert not rep.ok, (name, rep)
        assert abs(rep.errors[name] - expected) < 0.1 * expected, (name, expected, rep)
        with pytest.raises(AssertionError, match=name):
            check.assert_gradients(prob.loss, prob.params, bad, names=[name])


def test_explicit_adjoint_and_gradients_api_equals_sweep():
    P = rnn.init_params(3, 5, 2, seed=3, bias_scale=0.2)
    rng = np.random.default_rng(0)
    u, y = backend.randn((7, 4, 3), rng=rng), backend.randn((4, 2), rng=rng)
    traj = rnn.forward(P, u, activation="tanh", output="identity")
    delta = -(traj.yhat - y)  # JP eq. (6) for F_b = 1/2 ||yhat - y||^2
    adj = rnn.adjoint(P, traj, delta)
    assert adj.lam.shape == (7, 4, 5) and adj.lam0.shape == (4, 5)
    g1 = rnn.gradients(P, traj, adj)
    g2 = rnn.gradients(P, traj, adj.lam, delta)  # raw-array form
    F, g3 = rnn.loss_and_grad(P, u, y, activation="tanh", output="identity", loss="mse")
    for k in rnn.PARAM_NAMES:
        assert g1[k].shape == P[k].shape
        assert np.allclose(g1[k], g2[k], rtol=1e-13, atol=0)
        assert np.allclose(g1[k], g3[k], rtol=1e-13, atol=0)


def test_adjoint_norms_do_not_depend_on_batch_size():
    P = rnn.init_params(2, 4, 1, seed=1)
    rng = np.random.default_rng(1)
    u, y = rng.standard_normal((6, 8, 2)), rng.uniform(0, 1, (8, 1))
    full = rnn.sweep(P, u, y)
    half = rnn.sweep(P, u[:, :3], y[:3])
    assert np.allclose(full.adj.lam[:, :3], half.adj.lam, rtol=1e-13, atol=0)


def test_gradients_are_the_mean_of_per_example_gradients():
    P = rnn.init_params(2, 4, 3, seed=2)
    rng = np.random.default_rng(2)
    u, y = rng.standard_normal((5, 3, 2)), rng.integers(0, 3, (3,))
    kw = dict(output="softmax", loss="cross_entropy")
    _, g = rnn.loss_and_grad(P, u, y, **kw)
    per = [rnn.loss_and_grad(P, u[:, b:b + 1], y[b:b + 1], **kw)[1] for b in range(3)]
    for k in g:
        assert np.allclose(g[k], sum(p[k] for p in per) / 3, rtol=1e-12, atol=1e-15)


def test_init_params_shapes_scale_and_seed():
    P = rnn.init_params(5, 10, 1, seed=0)
    assert {k: v.shape for k, v in P.items()} == {
        "W_rec": (10, 10), "W_in": (10, 5), "b1": (10,), "W_out": (1, 10), "b2": (1,)}
    assert np.all(P["b1"] == 0)
    Q = rnn.init_params(5, 10, 1, seed=0)
    assert all(np.array_equal(P[k], Q[k]) for k in P)
    big = rnn.init_params(5, 400, 1, seed=1, scale=1.0, bias_scale=1.0)
    assert abs(big["W_rec"].std() - 1.0) < 0.02 and big["b1"].std() > 0.5
    assert abs(rnn.init_params(5, 400, 1, seed=1)["W_rec"].std() - 0.05) < 0.002


def test_paper_indexed_accessors():
    P = rnn.init_params(2, 3, 1, seed=0)
    u = np.random.default_rng(0).standard_normal((4, 2, 2))
    s = rnn.sweep(P, u, np.ones((2, 1)))
    assert np.array_equal(s.traj.x_at(0), s.traj.x[0]) and np.array_equal(s.traj.x_at(4), s.traj.x[4])
    assert np.array_equal(s.traj.z_at(1), s.traj.z[0])
    assert np.array_equal(s.adj.lam_at(4), s.adj.lam[3]) and s.adj.lam_at(0) is s.adj.lam0
    for bad in (5, -1, 1.0):
        with pytest.raises(IndexError, match=r"step k must be an integer in \[0, 4\]"):
            s.adj.lam_at(bad)
    with pytest.raises(IndexError, match=r"\[1, 4\]"):
        s.traj.z_at(0)


def test_init_params_takes_numpy_integer_sizes_and_seeds():
    P = rnn.init_params(np.int64(5), np.int32(4), np.int64(2), seed=np.int64(3))
    Q = rnn.init_params(5, 4, 2, seed=3)
    assert all(np.array_equal(P[k], Q[k]) and P[k].shape == Q[k].shape for k in Q)


@pytest.mark.parametrize("kw, exc, match", [
    (dict(seed=-1), ValueError, "seed must be an integer >= 0"),
    (dict(seed="3"), TypeError, "seed must be an integer"),
    (dict(seed=1.5), TypeError, "seed must be an integer"),
    (dict(seed=None), TypeError, "seed must be an integer"),
    (dict(seed=True), TypeError, "seed must be an integer"),
    (dict(scale=float("inf")), ValueError, "scale must be finite and >= 0"),
    (dict(scale=float("nan")), ValueError, "scale must be finite and >= 0"),
    (dict(scale=-1.0), ValueError, "scale must be finite and >= 0"),
    (dict(scale="1"), TypeError, "scale must be a real number"),
    (dict(bias_scale=float("inf")), ValueError, "bias_scale must be finite and >= 0"),
    (dict(bias_scale=-0.5), ValueError, "bias_scale must be finite and >= 0"),
    (dict(bias_scale=None), TypeError, "bias_scale must be a real number"),
    (dict(dtype="float16"), ValueError, r"dtype must be one of \('float64', 'float32'\)"),
    (dict(dtype="int64"), ValueError, "dtype must be one of"),
    (dict(dtype="no-such-type"), TypeError, "dtype must be one of"),
])
def test_init_params_refuses_bad_seed_scale_and_dtype(kw, exc, match):
    """Each fails here with a message naming the argument, not later (or with inf weights)."""
    with pytest.raises(exc, match=match):
        rnn.init_params(3, 4, 2, **kw)


def test_init_params_dtype_is_refused_as_set_dtype_refuses_it():
    for dt in ("float16", "int32"):
        with pytest.raises(ValueError) as a:
            backend.set_dtype(dt)
        with pytest.raises(ValueError) as b:
            rnn.init_params(3, 4, 2, dtype=dt)
        assert str(a.value) == str(b.value)
    assert rnn.init_params(3, 4, 2, dtype="float32")["W_rec"].dtype == np.float32
