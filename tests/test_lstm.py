"""LSTM and momentum LSTM (BW-LSTM; MomentumRNN): BPTT against central differences, across hypothesis cases.

Both cells are drawn by the strategy every cell test shares (``manualgrad.testing.cell_problems``):
shapes T 1..6, B 1..4, p 1..4, m 1..5, every head of ``manualgrad.testing.HEADS``,
many-to-one/many, state0 given or not, and for the momentum LSTM mu in [0, 0.95], s in [0.1, 1.5].
Checks are float64 with the 4-point stencil (2-point near relu heads), relative error below
``check.TOLERANCES["float64"]`` (1e-7) with the finite-difference floor of ``manualgrad.check``.
"""
import numpy as np
import pytest
from hypothesis import given, settings

from manualgrad import backend, check, inspect, losses, testing
from manualgrad.cells import lstm, momentum_lstm

TOL = check.TOLERANCES["float64"]
CELLS = {"lstm": lstm, "momentum_lstm": momentum_lstm}
LSTMS = tuple(CELLS)  # testing.cell_problems draws one of them


# ------------------------------------------------------------------------- derivatives vs FD

@given(prob=testing.cell_problems(LSTMS))
def test_parameter_gradients_match_finite_differences(prob):
    """dF/dW, dF/db, dF/dW_out, dF/db2 for both cells, every head, many-to-one/many, state0 or not."""
    prob.assume_off_kinks()
    F, grads = prob.loss_and_grad()
    rep = check.gradients(prob.loss, prob.params, grads, **prob.fd_options())
    assert rep.max_error < TOL, "\n%s\n%s" % (prob, rep)
    assert abs(float(F) - float(prob.loss())) < 1e-12


@given(prob=testing.cell_problems(LSTMS, state0=True))
def test_initial_state_gradients_match_finite_differences(prob):
    """grad_state0 = {h0: -lam0/B, c0: -lam_c0/B[, v0: -lam_v0/B]} against central differences."""
    prob.assume_off_kinks()
    s = prob.sweep()
    assert set(s.grad_state0) == set(prob.cell.STATE_NAMES)
    S = {k: v.copy() for k, v in prob.state0.items()}
    for name in prob.cell.STATE_NAMES:
        num = check.numerical_gradient(lambda: prob.loss(state0=S), S[name], **prob.fd_options())
        err = check.fd_error(s.grad_state0[name], num, s.F, **prob.fd_options())
        assert err < TOL, (name, err)
    B = prob.u.shape[1]
    assert check.rel_error(s.grad_state0["h0"], -s.adj.lam0 / B) == 0.0
    assert check.rel_error(s.grad_state0["c0"], -s.adj.lam_c0 / B) == 0.0


@given(prob=testing.cell_problems(LSTMS))
def test_adjoints_are_minus_B_dF_dstate_k(prob):
    """adj.lam[k-1] = -B dF/dh_k, adj.lam_c[k-1] = -B dF/dc_k (and adj.lam_v[k-1] = -B dF/dv_k).

    dF/d(state_k) is probed by restarting the forward at step k from (h_k, c_k[, v_k]) and
    running u_{k+1..T}; many-to-many adds step k's own output loss, which reads h_k.
    """
    prob.assume_off_kinks()
    s = prob.sweep()
    T, B = prob.u.shape[:2]
    P = prob.params
    names = prob.cell.STATE_NAMES
    state_k = {"h0": s.traj.h, "c0": s.traj.c, "v0": s.traj.v}
    adj_k = {"h0": s.adj.lam, "c0": s.adj.lam_c, "v0": s.adj.lam_v}
    for k in sorted({1, T // 2, T} - {0}):
        if k == T:  # no steps left: lam_T = W_out^T [sigma_out'(o_T) o delta_T], lam_c_T = lam_v_T = 0
            hT = s.traj.h[T]
            o = hT @ P["W_out"].T + P["b2"]
            yT = s.y[T - 1] if prob.many_to_many else s.y
            lamT = s.head.delta_out(o, s.head.output.f(o), yT) @ P["W_out"]
            assert check.rel_error(s.adj.lam[T - 1], lamT) < 1e-12
            assert not np.any(s.adj.lam_c[T - 1])
            if s.adj.lam_v is not None:
                assert not np.any(s.adj.lam_v[T - 1])
            continue
        S = {n: state_k[n][k].copy() for n in names}
        y_rest = prob.y[k:] if prob.many_to_many else prob.y

        def F_from():
            F = prob.cell.loss(P, prob.u[k:], y_rest, **dict(prob.kwargs, state0=S))
            if prob.many_to_many:  # step k's own output loss depends on h_k too
                o = S["h0"] @ P["W_out"].T + P["b2"]
                F = F + s.head.value(o, s.head.output.f(o), s.y[k - 1]).mean()
            return F
        F0 = F_from()
        for n in names:
            g = check.numerical_gradient(F_from, S[n], **prob.fd_options())
            err = check.fd_error(adj_k[n][k - 1], -B * g, B * F0, **prob.fd_options())
            assert err < TOL, (n, k, err)


@settings(max_examples=20)
@given(prob=testing.cell_problems(LSTMS, max_T=40, min_T=10,
                                  head=(("sigmoid", "bce"), ("identity", "mse"))))
def test_dot_product_test_on_longer_sequences(prob):
    """<grad, v> against the central difference along a random direction, T = 10..40."""
    F, grads = prob.loss_and_grad()
    err, a, n = check.dot_product_test(prob.loss, prob.params, grads, seed=prob.seed % 1000)
    assert err < TOL, (a, n)


@settings(max_examples=10)
@given(prob=testing.cell_problems(LSTMS, head=(("sigmoid", "bce"),), state0=True))
def test_checker_catches_a_gradient_that_is_0p05_percent_wrong(prob):
    """Every parameter and initial-state gradient scaled by 1.0005 fails the check with an error
    of 5e-4. (Gradients below the FD floor fd_atol / tol are only resolved to fd_atol absolutely,
    so a relative error of theirs cannot be seen; they are skipped.)"""
    s = prob.sweep()
    floor = check.fd_atol(s.F) / TOL
    for name in lstm.PARAM_NAMES:
        if np.linalg.norm(s.grads[name]) <= floor:
            continue
        bad = dict(s.grads)
        bad[name] = s.grads[name] * 1.0005
        rep = check.gradients(prob.loss, prob.params, bad, names=[name])
        assert not rep.ok and rep.errors[name] > 4e-4, rep
        with pytest.raises(AssertionError, match=name):
            check.assert_gradients(prob.loss, prob.params, bad, names=[name])
    S = {k: v.copy() for k, v in prob.state0.items()}
    for name in prob.cell.STATE_NAMES:
        g = s.grad_state0[name]
        if np.linalg.norm(g) <= floor:
            continue
        num = check.numerical_gradient(lambda: prob.loss(state0=S), S[name])
        assert check.fd_error(g * 1.0005, num, s.F) > 4e-4, name


# ------------------------------------------------------------------------- the equations

def _reference_forward(P, u, h0, c0, v0=None, mu=0.0, s=1.0):
    """BW-LSTM written as on the slide: gates = act(W [h_{t-1}; u_t] + b), one example at a time."""
    T, B, p = u.shape
    m = P["W_out"].shape[1]
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    hs = np.zeros((T + 1, B, m))
    cs = np.zeros((T + 1, B, m))
    for b in range(B):
        h, c = h0[b].copy(), c0[b].copy()
        v = None if v0 is None else v0[b].copy()
        hs[0, b], cs[0, b] = h, c
        for t in range(T):
            if v is None:
                a = P["W"] @ np.concatenate([h, u[t, b]]) + P["b"]
            else:
                v = mu * v + s * P["W"][:, m:] @ u[t, b]
                a = P["W"][:, :m] @ h + v + P["b"]
            i, f, o, g = sig(a[:m]), sig(a[m:2 * m]), sig(a[2 * m:3 * m]), np.tanh(a[3 * m:])
            c = f * c + i * g
            h = o * np.tanh(c)
            hs[t + 1, b], cs[t + 1, b] = h, c
    return hs, cs


@pytest.mark.parametrize("name", list(CELLS))
def test_forward_matches_the_lecture_equations(name):
    rng = np.random.default_rng(3)
    T, B, p, m, l = 4, 3, 2, 3, 2
    P = lstm.init_params(p, m, l, seed=5, bias_scale=0.5, forget_bias=1.0)
    u = rng.standard_normal((T, B, p))
    s0 = {"h0": rng.standard_normal((B, m)), "c0": rng.standard_normal((B, m))}
    Ph = {k: backend.to_numpy(a) for k, a in P.items()}  # the reference runs on the host
    if name == "lstm":
        traj = lstm.forward(P, u, s0)
        h, c = _reference_forward(Ph, u, s0["h0"], s0["c0"])
    else:
        s0["v0"] = rng.standard_normal((B, 4 * m))
        traj = momentum_lstm.forward(P, u, s0, mu=0.7, s=0.4)
        h, c = _reference_forward(Ph, u, s0["h0"], s0["c0"], s0["v0"], mu=0.7, s=0.4)
        v = s0["v0"]
        for t in range(T):
            v = 0.7 * v + 0.4 * u[t] @ Ph["W"][:, m:].T
            assert check.rel_error(traj.v[t + 1], v) < 1e-14
    assert traj.h.shape == (T + 1, B, m) and traj.c.shape == (T + 1, B, m)
    assert check.rel_error(traj.h, h) < 1e-14 and check.rel_error(traj.c, c) < 1e-14
    f = traj.gate("f")
    assert f.shape == (T, B, m) and check.rel_error(f, 1 / (1 + np.exp(-traj.a[..., m:2 * m]))) < 1e-14
    assert check.rel_error(traj.o, traj.h[T] @ P["W_out"].T + P["b2"]) < 1e-14


def test_momentum_lstm_with_mu_0_and_s_1_is_the_lstm():
    rng = np.random.default_rng(1)
    T, B, p, m, l = 5, 2, 3, 4, 2
    P = lstm.init_params(p, m, l, seed=2, bias_scale=0.3)
    u = rng.standard_normal((T, B, p))
    y = rng.uniform(size=(T, B, l))
    s0 = {"h0": rng.standard_normal((B, m)), "c0": rng.standard_normal((B, m))}
    a = lstm.sweep(P, u, y, s0, many_to_many=True)
    b = momentum_lstm.sweep(P, u, y, dict(s0, v0=rng.standard_normal((B, 4 * m))),
                            many_to_many=True, mu=0.0, s=1.0)
    for n in lstm.PARAM_NAMES:
        assert check.rel_error(a.grads[n], b.grads[n]) < 1e-13, n
    for n in ("lam", "lam_c", "lam_z", "lam0", "lam_c0"):
        assert check.rel_error(getattr(a.adj, n), getattr(b.adj, n)) < 1e-13, n
    assert not np.any(b.grad_state0["v0"]) and not np.any(b.adj.lam_v)  # mu = 0: v0 is forgotten


@pytest.mark.parametrize("many_to_many", [False, True])
def test_momentum_lstm_is_the_lstm_on_exponentially_filtered_inputs(many_to_many):
    """v_t = mu v_{t-1} + s W_x u_t does not read h, so with v_0 = 0, v_t = W_x ubar_t with
    ubar_t = mu ubar_{t-1} + s u_t: the plain LSTM on ubar. Its h, c, adjoints and gradients are
    the momentum LSTM's; dF/dW_x agrees only if lam_v (the momentum path) is right."""
    rng = np.random.default_rng(8)
    T, B, p, m, l = 7, 3, 2, 4, 2
    mu, s = 0.8, 0.4
    P = lstm.init_params(p, m, l, seed=6, bias_scale=0.5)
    u = rng.standard_normal((T, B, p))
    y = rng.uniform(size=(T, B, l) if many_to_many else (B, l))
    ubar = np.empty_like(u)
    acc = np.zeros((B, p))
    for t in range(T):
        acc = mu * acc + s * u[t]
        ubar[t] = acc
    h0, c0 = rng.standard_normal((B, m)), rng.standard_normal((B, m))
    a = lstm.sweep(P, ubar, y, {"h0": h0, "c0": c0}, many_to_many=many_to_many)
    b = momentum_lstm.sweep(P, u, y, {"h0": h0, "c0": c0, "v0": np.zeros((B, 4 * m))},
                            many_to_many=many_to_many, mu=mu, s=s)
    assert check.rel_error(a.traj.h, b.traj.h) < 1e-13
    for n in lstm.PARAM_NAMES:
        assert check.rel_error(a.grads[n], b.grads[n]) < 1e-12, n
    for n in ("lam", "lam_c", "lam0", "lam_c0"):
        assert check.rel_error(getattr(a.adj, n), getattr(b.adj, n)) < 1e-12, n


def test_cell_adjoint_is_a_product_of_forget_gates_when_the_h_recurrence_is_cut():
    """W_h = 0: lam_c_k = f_{k+1} o ... o f_T o cbar_T. The c-path carries the adjoint through
    elementwise forget-gate factors only, no matrix and no tanh' (BW's remark on the LSTM)."""
    rng = np.random.default_rng(4)
    T, B, p, m, l = 12, 3, 2, 4, 1
    P = lstm.init_params(p, m, l, seed=0, forget_bias=2.0)
    P["W"][:, :m] = 0.0
    u = rng.standard_normal((T, B, p))
    s = lstm.sweep(P, u, rng.uniform(size=(B, l)))
    f = s.traj.gate("f")
    prod = s.adj.lam_c_total[T - 1].copy()
    for k in range(T - 1, 0, -1):
        prod = prod * f[k]  # f[k] is f_{k+1}
        assert check.rel_error(s.adj.lam_c[k - 1], prod) < 1e-13
        assert not np.any(s.adj.lam[k - 1])  # h_k reaches F only through the head at T
    assert check.rel_error(s.adj.lam_c0, prod * f[0]) < 1e-13


@pytest.mark.parametrize("name", list(CELLS))
def test_adjoints_do_not_depend_on_batch_size(name):
    rng = np.random.default_rng(7)
    T, p, m, l = 6, 2, 3, 2
    P = lstm.init_params(p, m, l, seed=1)
    u = rng.standard_normal((T, 1, p))
    y = rng.uniform(size=(1, l))
    one = CELLS[name].sweep(P, u, y)
    many = CELLS[name].sweep(P, np.repeat(u, 4, axis=1), np.repeat(y, 4, axis=0))
    assert check.rel_error(many.adj.lam[:, 3], one.adj.lam[:, 0]) < 1e-14
    assert check.rel_error(many.adj.lam_c[:, 3], one.adj.lam_c[:, 0]) < 1e-14
    assert check.rel_error(many.grads["W"], one.grads["W"]) < 1e-13  # batch mean


@pytest.mark.parametrize("name", list(CELLS))
def test_sweep_shapes_interface_and_purity(name):
    cell = CELLS[name]
    for attr in ("PARAM_NAMES", "STATE_NAMES", "init_params", "forward", "sweep", "loss",
                 "loss_and_grad"):
        assert hasattr(cell, attr)
    rng = np.random.default_rng(0)
    T, B, p, m, l = 4, 3, 2, 5, 3
    P = cell.init_params(p, m, l, seed=0)
    assert tuple(P) == cell.PARAM_NAMES
    u = rng.standard_normal((T, B, p))
    y = rng.integers(0, l, size=(T, B))
    kw = dict(output="softmax", loss="cross_entropy", many_to_many=True)
    s1, s2 = cell.sweep(P, u, y, **kw), cell.sweep(P, u, y, **kw)
    assert s1.traj.h.shape == (T + 1, B, m) and s1.adj.lam.shape == (T, B, m)
    assert s1.adj.lam_c.shape == (T, B, m) and s1.adj.lam0.shape == (B, m)
    assert s1.adj.lam_z.shape == (T, B, 4 * m) and s1.traj.o.shape == (T, B, l)
    assert s1.F_b.shape == (B,) and abs(float(s1.F) - float(cell.loss(P, u, y, **kw))) < 1e-14
    for n in P:
        assert s1.grads[n].shape == P[n].shape and np.array_equal(s1.grads[n], s2.grads[n])
    F, g = cell.loss_and_grad(P, u, y, **kw)
    assert float(F) == float(s1.F) and all(np.array_equal(g[n], s1.grads[n]) for n in P)
    widths = {"h0": m, "c0": m, "v0": 4 * m}
    assert {k: v.shape for k, v in s1.grad_state0.items()} == \
        {k: (B, widths[k]) for k in cell.STATE_NAMES}
    assert inspect.adjoint_norms(s1.adj).per_example.shape == (T, B)


@pytest.mark.parametrize("name", list(CELLS))
def test_missing_state0_keys_mean_zeros(name):
    cell = CELLS[name]
    P, u, y = _small()
    h0 = np.random.default_rng(1).standard_normal((2, 3))
    zeros = {"h0": h0, "c0": np.zeros((2, 3)), "v0": np.zeros((2, 12))}
    full = cell.sweep(P, u, y, {k: zeros[k] for k in cell.STATE_NAMES})
    part = cell.sweep(P, u, y, {"h0": h0})
    assert np.array_equal(full.traj.h, part.traj.h) and np.array_equal(full.grads["W"], part.grads["W"])
    assert set(part.grad_state0) == set(cell.STATE_NAMES)


def test_state0_of_shape_m_broadcasts_over_the_batch():
    rng = np.random.default_rng(2)
    T, B, p, m, l = 3, 4, 2, 3, 1
    P = lstm.init_params(p, m, l, seed=3)
    u = rng.standard_normal((T, B, p))
    h0, c0 = rng.standard_normal(m), rng.standard_normal(m)
    a = lstm.forward(P, u, {"h0": h0, "c0": c0})
    b = lstm.forward(P, u, {"h0": np.tile(h0, (B, 1)), "c0": np.tile(c0, (B, 1))})
    assert np.array_equal(a.h, b.h) and np.array_equal(a.c, b.c)


def test_init_params_forget_bias_and_scale():
    p, m, l = 3, 4, 2
    P = lstm.init_params(p, m, l, seed=0, forget_bias=1.5)
    assert P["W"].shape == (4 * m, m + p) and P["b"].shape == (4 * m,)
    assert np.all(P["b"][m:2 * m] == 1.5)
    assert not np.any(P["b"][:m]) and not np.any(P["b"][2 * m:])
    Q = lstm.init_params(p, m, l, seed=0, forget_bias=1.5, bias_scale=0.1)
    R = lstm.init_params(p, m, l, seed=0, forget_bias=0.0, bias_scale=0.1)
    assert np.allclose(Q["b"][m:2 * m], R["b"][m:2 * m] + 1.5) and np.any(R["b"][m:2 * m])
    assert np.array_equal(Q["b"][:m], R["b"][:m]) and np.array_equal(Q["W"], R["W"])
    big = lstm.init_params(40, 60, 1, seed=0)
    assert abs(float(big["W"].std()) * 10.0 - 1.0) < 0.05  # 1/sqrt(m + p) = 1/10
    assert np.array_equal(momentum_lstm.init_params(p, m, l, seed=4)["W"],
                          lstm.init_params(p, m, l, seed=4)["W"])
    with pytest.raises(ValueError, match="forget_bias"):
        lstm.init_params(p, m, l, forget_bias=float("nan"))


# ------------------------------------------------------------------------- bad input

def _small(name="lstm"):
    rng = np.random.default_rng(0)
    P = lstm.init_params(2, 3, 1, seed=0)
    return P, rng.standard_normal((4, 2, 2)), rng.uniform(size=(2, 1))


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("state0, match", [
    ({"h0": np.zeros((2, 4)), "c0": np.zeros((2, 3))}, r"state0\['h0'\] must have shape \(B, m\) = \(2, 3\)"),
    ({"h0": np.zeros((2, 3)), "c0": np.zeros((3, 3))}, r"state0\['c0'\] must have shape"),
    ({"h0": np.zeros((2, 3)), "x0": np.zeros(3)}, r"unknown key\(s\) x0: the state of this cell is h0, c0"),
])
def test_bad_state0_raises(name, state0, match):
    P, u, y = _small()
    with pytest.raises(ValueError, match=match):
        CELLS[name].sweep(P, u, y, state0)


def test_bad_v0_shape_and_state0_type_raise():
    P, u, y = _small()
    s0 = {"h0": np.zeros((2, 3)), "c0": np.zeros((2, 3)), "v0": np.zeros((2, 3))}
    with pytest.raises(ValueError, match=r"state0\['v0'\] must have shape \(B, 4m\) = \(2, 12\)"):
        momentum_lstm.forward(P, u, s0)
    with pytest.raises(TypeError, match="state0 must be a mapping"):
        lstm.forward(P, u, np.zeros((2, 3)))


@pytest.mark.parametrize("key, shape, match", [
    ("W", (12, 3), r"params\['W'\] has shape \(12, 3\), expected \(4m, m \+ p\) = \(12, 3 \+ p\)"),
    ("W", (9, 5), r"params\['W'\] has shape \(9, 5\), expected \(4m, m \+ p\)"),
    ("b", (9,), r"params\['b'\] has shape \(9,\), expected \(12,\)"),
    ("b2", (2,), r"params\['b2'\] has shape \(2,\), expected \(1,\)"),
])
def test_bad_parameter_shapes_raise(key, shape, match):
    P, u, y = _small()
    P[key] = np.zeros(shape)
    with pytest.raises(ValueError, match=match):
        lstm.loss_and_grad(P, u, y)


def test_bad_input_width_and_missing_params_raise():
    P, u, y = _small()
    with pytest.raises(ValueError, match=r"u: axis 2 \(p, input size\) has length 3.*p = 2"):
        lstm.forward(P, np.zeros((4, 2, 3)))
    with pytest.raises(ValueError, match="lack b2"):
        lstm.forward({k: v for k, v in P.items() if k != "b2"}, u)
    with pytest.raises(ValueError, match=r"u must be a 3-d array \(T, B, p\)"):
        lstm.forward(P, np.zeros((4, 2)))


@pytest.mark.parametrize("mu, s, exc, match", [
    (1.0, 0.5, ValueError, r"mu must lie in \[0, 1\)"),
    (-0.1, 0.5, ValueError, r"mu must lie in \[0, 1\)"),
    (float("nan"), 0.5, ValueError, r"mu must lie in \[0, 1\)"),
    (0.5, 0.0, ValueError, "s must be a finite number > 0"),
    (0.5, -1.0, ValueError, "s must be a finite number > 0"),
    (0.5, float("inf"), ValueError, "s must be a finite number > 0"),
    (True, 0.5, TypeError, "mu must be a real number"),
    (0.5, "1", TypeError, "s must be a real number"),
])
def test_momentum_options_out_of_range_raise(mu, s, exc, match):
    P, u, y = _small()
    for call in (lambda: momentum_lstm.forward(P, u, mu=mu, s=s),
                 lambda: momentum_lstm.sweep(P, u, y, mu=mu, s=s),
                 lambda: momentum_lstm.loss(P, u, y, mu=mu, s=s)):
        with pytest.raises(exc, match=match):
            call()


def test_integer_and_nonfinite_arrays_are_refused():
    P, u, y = _small()
    with pytest.raises(TypeError, match="u must be a floating-point array"):
        lstm.forward(P, np.ones((4, 2, 2), dtype=int))
    with pytest.raises(TypeError, match=r"params\['W'\] must be a floating-point array"):
        lstm.forward(dict(P, W=np.ones((12, 5), dtype=np.int64)), u)
    with pytest.raises(TypeError, match=r"state0\['c0'\] must be a floating-point array"):
        lstm.forward(P, u, {"h0": np.zeros((2, 3)), "c0": np.zeros((2, 3), dtype=int)})
    with pytest.raises(TypeError, match="integer dtype"):
        lstm.sweep(P, u, np.ones((2, 1), dtype=int))
    with pytest.raises(ValueError, match="non-finite"):
        lstm.forward(P, u, {"h0": np.full((2, 3), np.nan), "c0": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="unknown output"):
        lstm.forward(P, u, output="sofmax")
    with pytest.raises(ValueError, match="loss='bce' needs output"):
        lstm.sweep(P, u, y, output="identity", loss="bce")


def test_head_losses_are_those_of_the_rnn_heads():
    """The head reads h_T through losses.head_and_targets, so a fused head equals its unfused value."""
    P, u, y = _small()
    traj = lstm.forward(P, u)
    head, Y = losses.head_and_targets(traj.output, "bce", traj.o, y)
    assert check.rel_error(head.value(traj.o, traj.yhat, Y).mean(), lstm.loss(P, u, y)) < 1e-15
