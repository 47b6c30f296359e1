"""Momentum RNN (BW-MRNN): BPTT through (h, v) against central differences, the lecture's factor
D_k [U^T + mu Sigma_k] against finite differences of the partial it stands for, and how the true
adjoint relates to the product of those factors (docs/momentum.md)."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from manualgrad import backend, check, rnn, testing
from manualgrad.cells import momentum as M

TOL = check.TOLERANCES["float64"]
INVERTIBLE = ("tanh", "sigmoid", "softplus", "identity")
HIDDEN = INVERTIBLE + ("relu",)

# sigma^{-1}, written here independently of the module (numpy, float64)
INVERSE = {"tanh": np.arctanh, "sigmoid": lambda h: np.log(h) - np.log1p(-h),
           "softplus": lambda h: np.log(np.expm1(h)), "identity": lambda h: h}
SIGMA = {"tanh": np.tanh, "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
         "softplus": lambda z: np.logaddexp(0.0, z), "identity": lambda z: z}


def range_margin(act, h):
    """Distance of h to the edge of sigma's range (inf for identity)."""
    if act == "tanh":
        return 1.0 - np.abs(h)
    if act == "sigmoid":
        return np.minimum(h, 1.0 - h)
    if act == "softplus":
        return h
    return np.full_like(h, np.inf)


def head_term(prob, sw, k):
    """W_out^T g_k: what step k's own output adds to lam_k (zero for k < T many-to-one)."""
    T = prob.u.shape[0]
    if prob.many_to_many:
        return sw.adj.delta_out[k - 1] @ prob.params["W_out"]
    if k == T:
        return sw.adj.delta_out @ prob.params["W_out"]
    return np.zeros_like(sw.traj.h[k])


# ---------------------------------------------------------------------------------------------
# BPTT through (h, v)
# ---------------------------------------------------------------------------------------------

@given(prob=testing.cell_problems("momentum_rnn"))
def test_parameter_gradients_match_finite_differences(prob):
    """dF/dU, dW, db, dW_out, db2 for every activation, head, mu, s, many-to-one/many, state0."""
    prob.assume_off_kinks()
    F, grads = M.loss_and_grad(prob.params, prob.u, prob.y, **prob.kwargs)
    rep = check.gradients(prob.loss, prob.params, grads, **prob.fd_options())
    assert rep.max_error < TOL, "\n%s\n%s" % (prob, rep)
    assert abs(float(F) - float(prob.loss())) < 1e-12


@given(prob=testing.cell_problems("momentum_rnn", state0=True))
def test_initial_state_gradients_h0_v0(prob):
    """grad_state0 = {h0: -lam0/B, v0: -lam_v0/B} against central differences."""
    prob.assume_off_kinks()
    sw = prob.sweep()
    for name in M.STATE_NAMES:
        S = {k: v.copy() for k, v in prob.state0.items()}
        num = check.numerical_gradient(lambda: prob.loss(state0=S), S[name], **prob.fd_options())
        err = check.fd_error(sw.grad_state0[name], num, sw.F, **prob.fd_options())
        assert err < TOL, (name, err, prob)
    assert np.array_equal(sw.grad_state0["h0"], -sw.adj.lam0 / prob.u.shape[1])
    assert np.array_equal(sw.grad_state0["v0"], -sw.adj.lam_v0 / prob.u.shape[1])


@given(prob=testing.cell_problems("momentum_rnn"))
def test_adjoints_are_minus_B_dF_dstate_by_restarting_at_step_k(prob):
    """lam_k = -dF_b/dh_k (v_k fixed), lam_v_k = -dF_b/dv_k (h_k fixed): restart at step k."""
    prob.assume_off_kinks()
    sw = prob.sweep()
    T, B = prob.u.shape[:2]
    W_out, b2 = prob.params["W_out"], prob.params["b2"]
    for k in sorted({1, (T + 1) // 2, T}):
        if k == T:  # nothing follows: lam_T is the output term, v_T reaches nothing
            assert np.array_equal(sw.adj.lam_v[T - 1], np.zeros_like(sw.adj.lam_v[T - 1]))
            assert check.rel_error(sw.adj.lam[T - 1], head_term(prob, sw, T)) < 1e-12
            continue
        y_rest = prob.y[k:] if prob.many_to_many else prob.y

        def F_from(S):
            F = M.loss(prob.params, prob.u[k:], y_rest, **dict(prob.kwargs, state0=S))
            if prob.many_to_many:  # step k's own output depends on h_k
                o = S["h0"] @ W_out.T + b2
                F = F + sw.head.value(o, sw.head.output.f(o), sw.y[k - 1]).mean()
            return F

        S = {"h0": sw.traj.h[k].copy(), "v0": sw.traj.v[k].copy()}
        for name, lam in (("h0", sw.adj.lam[k - 1]), ("v0", sw.adj.lam_v[k - 1])):
            num = check.numerical_gradient(lambda: F_from(S), S[name], **prob.fd_options())
            err = check.fd_error(lam, -B * num, sw.F, **prob.fd_options())
            assert err < TOL, (k, name, err, prob)


@given(prob=testing.cell_problems("momentum_rnn"))
def test_lam_in_is_the_input_drive_adjoint(prob):
    """-dF/du_k = (s/B) W^T lam_in_k: lam_in = lam_z + lam_v is the adjoint of s W u_k."""
    prob.assume_off_kinks()
    sw = prob.sweep()
    B = prob.u.shape[1]
    u = prob.u.copy()
    num = check.numerical_gradient(
        lambda: M.loss(prob.params, u, prob.y, **prob.kwargs), u, **prob.fd_options())
    ana = -(prob.s / B) * (sw.adj.lam_in @ prob.params["W"])
    assert check.fd_error(ana, num, sw.F, **prob.fd_options()) < TOL


@given(prob=testing.cell_problems("momentum_rnn", hidden=INVERTIBLE))
def test_mu_zero_is_the_vanilla_rnn_with_W_in_sW(prob):
    """mu = 0: the cell is rnn with W_rec = U, W_in = s W, b1 = b. Bit for bit when s = 1/2."""
    for s, exact in ((0.5, True), (prob.s, False)):
        kw = dict(prob.kwargs, mu=0.0, s=s, state0=None)
        a = M.sweep(prob.params, prob.u, prob.y, **kw)
        R = {"W_rec": prob.params["U"], "W_in": s * prob.params["W"], "b1": prob.params["b"],
             "W_out": prob.params["W_out"], "b2": prob.params["b2"]}
        b = rnn.sweep(R, prob.u, prob.y, activation=prob.activation, output=prob.output,
                      loss=prob.loss_name, many_to_many=prob.many_to_many)
        pairs = [(a.traj.h, b.traj.x), (a.traj.z, b.traj.z), (a.F, b.F), (a.adj.lam, b.adj.lam),
                 (a.adj.lam0, b.adj.lam0), (a.adj.lam_in, b.adj.lam_z),
                 (a.grads["U"], b.grads["W_rec"]), (a.grads["W"], s * b.grads["W_in"]),
                 (a.grads["b"], b.grads["b1"]), (a.grads["W_out"], b.grads["W_out"]),
                 (a.grads["b2"], b.grads["b2"])]
        for x, y in pairs:
            if exact:
                assert np.array_equal(x, y)
            else:  # s W vs W then s: round-off, amplified where a gradient entry is a
                # cancelling sum (seen: 1.1e-11 on an entry of 5e-6); a wrong factor is O(1)
                assert check.rel_error(x, y, floor=1e-300) < 1e-9
        assert not a.adj.lam_v.any() and not a.adj.lam_v0.any()


# ---------------------------------------------------------------------------------------------
# the lecture's factor: dh_{k+1}/dh_k with h_{k-1} fixed
# ---------------------------------------------------------------------------------------------

def eliminated_map(prob, hk, hprev, u_next, mu=None, s=None):
    """h_{k+1}(h_k; h_{k-1}) with v eliminated, written out in numpy (independent of the module)."""
    P, act = prob.params, prob.activation
    mu = prob.mu if mu is None else mu
    s = prob.s if s is None else s
    U, W, b = P["U"], P["W"], P["b"]
    z = hk @ U.T + mu * (INVERSE[act](hk) - hprev @ U.T - b) + s * (u_next @ W.T) + b
    return SIGMA[act](z)


def fd_jacobian(f, x):
    """d f(x)_i / d x_j per example (B, m, m), 4-point central differences, default step."""
    B, m = x.shape
    return _fd_jac(f, x, np.full((B,), check.default_step("float64")))


def _fd_jac(f, x, step):
    B, m = x.shape
    xp = backend.xp()
    J = xp.empty((B, m, m))
    step = backend.asarray(step)
    for j in range(m):
        e = xp.zeros_like(x)
        e[:, j] = step
        fs = [f(x + c * e) for c in (-2, -1, 1, 2)]
        J[:, :, j] = (fs[0] - 8 * fs[1] + 8 * fs[2] - fs[3]) / (12 * step[:, None])
    return J


def per_example_error(A, N, floor):
    return max(check.rel_error(a, n, floor) for a, n in zip(A, N))


@settings(max_examples=80)
@given(prob=testing.cell_problems("momentum_rnn", hidden=INVERTIBLE, min_T=2), data=st.data())
def test_momentum_factor_matches_finite_differences_of_its_partial(prob, data):
    """J_k = diag(sigma'(z_{k+1})) [U + mu diag(1/sigma'(z_k))] = dh_{k+1}/dh_k, h_{k-1} fixed,
    to 1e-8: finite differences of the v-eliminated map evaluated through sigma^{-1}."""
    tr = M.forward(prob.params, prob.u, prob.state0, prob.output, prob.many_to_many,
                   prob.activation, prob.mu, prob.s)
    T = prob.u.shape[0]
    k = data.draw(st.integers(1, T - 1), label="k")
    hk, hprev = tr.h[k], tr.h[k - 1]
    margin = range_margin(prob.activation, hk).min(axis=1)  # per example
    assume(margin.min() > 0.01)  # e.g. |h_k| < 0.99 for tanh
    # the eliminated map reproduces the cell (v_k = sigma^{-1}(h_k) - U h_{k-1} - b)
    assert check.rel_error(eliminated_map(prob, hk, hprev, prob.u[k]), tr.h[k + 1]) < 1e-12
    assert check.rel_error(M.eliminated_step(prob.params, hk, hprev, prob.u[k], prob.activation,
                                             prob.mu, prob.s), tr.h[k + 1]) < 1e-12
    J = M.momentum_factor(prob.params, tr, k)
    assert J.shape == hk.shape + hk.shape[-1:]
    step = check.default_step("float64") * np.minimum(1.0, margin)  # scaled to the range edge
    N = _fd_jac(lambda x: eliminated_map(prob, x, hprev, prob.u[k]), hk, step)
    floor = check.fd_atol(1.0, 4, step.min()) / 1e-8
    assert per_example_error(J, N, floor) < 1e-8, (k, prob)
    # the lecture's printed D_k [U^T + mu Sigma_k] is the transpose of [U + mu Sigma_k] D_k
    L = M.lecture_factor(prob.params, tr, k)
    U, mu, eye = prob.params["U"], prob.mu, backend.xp().eye(prob.params["U"].shape[0])
    Sig = 1.0 / tr.activation.grad(tr.z[k - 1], tr.h[k])
    D = tr.activation.grad(tr.z[k], tr.h[k + 1])
    printed = D[:, :, None] * (U.T[None] + mu * Sig[:, None, :] * eye)
    assert check.rel_error(L, printed) < 1e-14
    assert check.rel_error(L, np.swapaxes((U[None] + mu * Sig[:, :, None] * eye)
                                          * D[:, None, :], 1, 2)) < 1e-14


def test_momentum_factor_with_other_hyperparameters():
    """mu=, s= given: the partial of the v-eliminated map with those values, same (h_k, h_{k-1})."""
    rng = np.random.default_rng(3)
    P = M.init_params(3, 4, 2, seed=3, bias_scale=0.3)
    u = backend.randn((4, 2, 3), rng=rng)
    tr = M.forward(P, u, mu=0.6, s=0.6)
    prob = testing.CellProblem("momentum_rnn", P, u, None, None, "sigmoid", "bce", False,
                               {"activation": "tanh", "mu": 0.3, "s": 1.1}, 3)
    J = M.momentum_factor(P, tr, 2, mu=0.3, s=1.1)
    N = fd_jacobian(lambda x: eliminated_map(prob, x, tr.h[1], u[2]), tr.h[2])
    assert per_example_error(J, N, 1e-3) < 1e-8
    assert check.rel_error(J, M.momentum_factor(P, tr, 2)) > 1e-2  # differs from mu=s=0.6


@given(prob=testing.cell_problems("momentum_rnn", hidden=HIDDEN))
def test_vanilla_factor_and_adjoint_map_match_finite_differences(prob):
    """vanilla_factor = dh_{k+1}/dh_k with v_k fixed = D_{k+1} U; adjoint_map = transpose of the
    Jacobian of (h_k, v_k) -> (h_{k+1}, v_{k+1}); mu = 0 makes momentum_factor the vanilla one."""
    prob.assume_off_kinks()
    tr = M.forward(prob.params, prob.u, prob.state0, prob.output, prob.many_to_many,
                   prob.activation, prob.mu, prob.s)
    T, B, m = tr.z.shape
    k = T - 1
    fd = prob.fd_options()

    def step(hv):  # (B, 2m) -> (B, 2m): one step of the cell from (h_k, v_k)
        Q = dict(prob.params)
        S = {"h0": hv[:, :m], "v0": hv[:, m:]}
        t1 = M.forward(Q, prob.u[k:k + 1], S, prob.output, False, prob.activation, prob.mu, prob.s)
        return np.concatenate([t1.h[1], t1.v[1]], axis=1)

    x = np.concatenate([tr.h[k], tr.v[k]], axis=1)
    if fd["order"] == 2:  # relu: narrow 2-point stencil
        h = check.default_step("float64", 2)
        N = backend.xp().empty((B, 2 * m, 2 * m))
        for j in range(2 * m):
            e = np.zeros_like(x)
            e[:, j] = h
            N[:, :, j] = (step(x + e) - step(x - e)) / (2 * h)
        tol = 1e-6
    else:
        N = fd_jacobian(step, x)
        tol = 1e-8
    A = M.adjoint_map(prob.params, tr, k)
    assert per_example_error(np.swapaxes(A, 1, 2), N, 1e-3) < tol
    V = M.vanilla_factor(prob.params, tr, k)
    assert per_example_error(V, N[:, :m, :m], 1e-3) < tol
    if prob.activation in INVERTIBLE and T >= 2:
        if (tr.activation.grad(tr.z, tr.h[1:]) > 0).all():
            tr0 = M.forward(prob.params, prob.u, prob.state0, prob.output, prob.many_to_many,
                            prob.activation, 0.0, prob.s)
            assert check.rel_error(M.momentum_factor(prob.params, tr0, T - 1),
                                   M.vanilla_factor(prob.params, tr0, T - 1)) < 1e-15


# ---------------------------------------------------------------------------------------------
# the true adjoint vs the product of factors
# ---------------------------------------------------------------------------------------------

@given(prob=testing.cell_problems("momentum_rnn"))
def test_adjoint_map_transports_the_state_adjoints(prob):
    """[lam_k; lam_v_k] = A_k [lam_{k+1}; lam_v_{k+1}] + [W_out^T g_k; 0], k = 0..T-1."""
    sw = prob.sweep()
    T, B, m = sw.traj.z.shape
    lam = np.concatenate([sw.adj.lam, sw.adj.lam_v], axis=2)  # (T, B, 2m)
    lam_0 = np.concatenate([sw.adj.lam0, sw.adj.lam_v0], axis=1)
    for k in range(T):
        A = M.adjoint_map(prob.params, sw.traj, k)
        got = np.einsum("bij,bj->bi", A, lam[k])
        if k > 0:
            got[:, :m] += head_term(prob, sw, k)
        want = lam_0 if k == 0 else lam[k - 1]
        assert check.rel_error(got, want, floor=1e-300) < 1e-12, k


@given(prob=testing.cell_problems("momentum_rnn", hidden=INVERTIBLE))
def test_eliminated_adjoint_is_minus_B_dF_dh_k_with_h_prev_fixed(prob):
    """a_k = lam_k + Sigma_k lam_v_k = -dF_b/dh_k when h_{k-1} is held (v_k moves with h_k)."""
    prob.assume_off_kinks()  # a relu head
    sw = prob.sweep()
    tr = sw.traj
    T, B, m = tr.z.shape
    k = max(1, T - 2)
    margin = range_margin(prob.activation, tr.h[k])
    assume(margin.min() > 0.01)
    a = M.eliminated_adjoint(tr, sw.adj)
    P, y_rest = prob.params, (prob.y[k:] if prob.many_to_many else prob.y)
    U, b, W_out, b2 = P["U"], P["b"], P["W_out"], P["b2"]
    hprev = tr.h[k - 1]

    def F_of(h):
        v = INVERSE[prob.activation](h) - hprev @ U.T - b  # v_k consistent with (h_k, h_{k-1})
        if k == T:
            F = 0.0
        else:
            F = M.loss(P, prob.u[k:], y_rest, **dict(prob.kwargs, state0={"h0": h, "v0": v}))
        if prob.many_to_many or k == T:
            o = h @ W_out.T + b2
            F = F + sw.head.value(o, sw.head.output.f(o), sw.y[k - 1] if prob.many_to_many
                                  else sw.y).mean()
        return F

    order = prob.fd_options()["order"]
    step = check.default_step("float64", order) * np.minimum(1.0, margin.min())
    h = tr.h[k].copy()
    num = check.numerical_gradient(lambda: F_of(h), h, h=step, order=order)
    atol = check.fd_atol(sw.F, order, step)
    assert check.fd_error(a[k - 1], -B * num, sw.F, atol=atol, order=order) < TOL


@given(prob=testing.cell_problems("momentum_rnn", hidden=INVERTIBLE, min_T=2))
def test_true_adjoint_is_factor_product_plus_the_h_prev_slot(prob):
    """a_k = J_k^T a_{k+1} - U^T lam_v_{k+1} + W_out^T g_k
           = J_k^T a_{k+1} + C_{k+1}^T a_{k+2} + W_out^T g_k,
    C_{k+1} = -mu diag(sigma'(z_{k+2})) U
    (the partial of h_{k+2} in h_k through the h_{k-1} slot, which eq. (1)'s product drops)."""
    sw = prob.sweep()
    tr = sw.traj
    T = tr.T
    d = tr.activation.grad(tr.z, tr.h[1:])
    assume((d > 1e-12).all())
    a = M.eliminated_adjoint(tr, sw.adj)
    U = prob.params["U"]
    for k in range(1, T):
        J = M.momentum_factor(prob.params, tr, k)
        Ja = np.einsum("bji,bj->bi", J, a[k])  # J_k^T a_{k+1}
        head = head_term(prob, sw, k)
        assert check.rel_error(Ja - sw.adj.lam_v[k] @ U + head, a[k - 1], floor=1e-300) < 1e-9, k
        if k + 1 < T:
            Ca = -prob.mu * ((d[k + 1] * a[k + 1]) @ U)  # C_{k+1}^T a_{k+2}
        else:
            Ca = 0.0 * Ja
        assert check.rel_error(Ja + Ca + head, a[k - 1], floor=1e-300) < 1e-9, k


@settings(max_examples=30)
@given(prob=testing.cell_problems("momentum_rnn", hidden=INVERTIBLE, min_T=3,
                                  many_to_many=False))
def test_factor_product_is_the_adjoint_only_for_mu_zero(prob):
    """Many-to-one: prod_k J_k^T a_T equals a_t for every t when mu = 0 (then J_k is the vanilla
    factor); for mu > 0 it holds one step back (t = T-1) and fails two steps back in general."""
    T = prob.u.shape[0]
    for mu in (0.0, prob.mu):
        sw = M.sweep(prob.params, prob.u, prob.y, **dict(prob.kwargs, mu=mu))
        tr = sw.traj
        assume((tr.activation.grad(tr.z, tr.h[1:]) > 1e-12).all())
        a = M.eliminated_adjoint(tr, sw.adj)
        g = a[T - 1]
        for t in range(T - 1, 0, -1):
            g = np.einsum("bji,bj->bi", M.momentum_factor(prob.params, tr, t), g)
            err = check.rel_error(g, a[t - 1], floor=1e-300)
            if mu == 0.0 or t == T - 1:
                assert err < 1e-9, (mu, t)
            if mu == 0.0:
                assert check.rel_error(a[t - 1], sw.adj.lam[t - 1], floor=1e-300) < 1e-15


def test_scalar_linear_case_rates():
    """m = 1, identity, U = 0.5, mu = 0.6: the adjoint map [[U, 0], [mu, mu]] has eigenvalues 0.5
    and 0.6, so a_{T-n} = (6 (0.6)^n - 5 (0.5)^n) a_T (decay at the rate max(|U|, mu)); the product
    of the lecture's factors J = U + mu = 1.1 would grow like 1.1^n. The (h, v) state adjoint
    lam_{T-n} = 0.5^n lam_T decays exactly like the vanilla RNN's."""
    T = 30
    P = {"U": np.array([[0.5]]), "W": np.array([[1.0]]), "b": np.zeros(1),
         "W_out": np.array([[1.0]]), "b2": np.zeros(1)}
    rng = np.random.default_rng(0)
    u = 0.1 * rng.standard_normal((T, 3, 1))
    y = rng.standard_normal((3, 1))
    sw = M.sweep(P, u, y, activation="identity", output="identity", loss="mse", mu=0.6, s=0.6)
    a = M.eliminated_adjoint(sw.traj, sw.adj)[:, :, 0]
    n = backend.asarray(np.arange(T)[::-1][:, None], dtype="int64")  # n = T - k
    assert np.allclose(a, (6 * 0.6 ** n - 5 * 0.5 ** n) * a[-1], rtol=1e-12, atol=0)
    assert np.allclose(sw.adj.lam[:, :, 0], 0.5 ** n * a[-1], rtol=1e-12, atol=0)
    J = M.momentum_factor(P, sw.traj, 5)
    assert np.allclose(J, 1.1)
    A = M.adjoint_map(P, sw.traj, 5)[0]
    assert np.allclose(sorted(np.linalg.eigvals(backend.to_numpy(A)).real), [0.5, 0.6])


def test_chain_of_factors_reassociates_to_vanilla_plus_mu_identity():
    """J_t^T ... J_{T-1}^T = [U^T + mu Sigma_t] [prod_{k=t+1}^{T-1} (diag(sigma'(z_k)) U^T + mu I)]
    diag(sigma'(z_T)): the printed D[U^T + mu Sigma_k] is right inside a chain once its diagonal
    carries the index of Sigma_k (diag(sigma'(z_k)) Sigma_k = I), ends aside."""
    rng = np.random.default_rng(7)
    P = M.init_params(3, 4, 1, seed=7, bias_scale=0.3)
    u = rng.standard_normal((6, 2, 3))
    tr = M.forward(P, u, mu=0.6, s=0.6)
    U, mu, T, m = P["U"], 0.6, 6, 4
    eye = backend.xp().eye(m)
    d = tr.activation.grad(tr.z, tr.h[1:])  # d[k-1] = sigma'(z_k)
    t = 1
    lhs = np.broadcast_to(eye, (2, m, m))
    for k in range(t, T):
        lhs = lhs @ np.swapaxes(M.momentum_factor(P, tr, k), 1, 2)
    rhs = U.T[None] + mu * eye / d[t - 1][:, None, :]
    for k in range(t + 1, T):
        rhs = rhs @ (d[k - 1][:, :, None] * U.T[None] + mu * eye)
    rhs = rhs * d[T - 1][:, None, :]
    assert check.rel_error(lhs, rhs) < 1e-12
    printed = np.broadcast_to(eye, (2, m, m))
    for k in range(t, T):
        printed = printed @ M.lecture_factor(P, tr, k)
    assert check.rel_error(printed, lhs) > 1e-2  # the printed chain is a different matrix


def test_momentum_slows_the_decay_of_the_input_adjoint_on_ltg():
    """Long Time Gap (T = 50), m = 16, tanh, equal drive variance s / sqrt(1 - mu^2) = 0.75:
    ||lam_in_1|| / ||lam_in_T|| is much larger with mu = 0.9 than with mu = 0, while the (h, v)
    state adjoint lam, which obeys the vanilla recursion, is not."""
    from manualgrad.data import long_time_gap
    u, y = long_time_gap(n=64, T=50, p=5, seed=0)
    P = M.init_params(5, 16, 1, seed=0)

    def ratio(x):
        n = np.linalg.norm(x, axis=-1).mean(axis=-1)
        return n[0] / n[-1]

    van = M.sweep(P, u, y, mu=0.0, s=0.75)
    mom = M.sweep(P, u, y, mu=0.9, s=0.75 * np.sqrt(1 - 0.81))
    assert ratio(mom.adj.lam_in) > 1e3 * ratio(van.adj.lam_in)
    assert ratio(mom.adj.lam) < 1e2 * ratio(van.adj.lam)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------

def _small():
    rng = np.random.default_rng(0)
    P = M.init_params(3, 4, 2, seed=0)
    return P, rng.standard_normal((5, 2, 3)), rng.uniform(size=(2, 2))


@pytest.mark.parametrize("mu", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_mu_outside_0_1_is_refused(mu):
    P, u, y = _small()
    for f in (lambda: M.forward(P, u, mu=mu), lambda: M.sweep(P, u, y, mu=mu),
              lambda: M.loss(P, u, y, mu=mu), lambda: M.init_params(3, 4, 2, mu=mu)):
        with pytest.raises(ValueError, match="mu"):
            f()


@pytest.mark.parametrize("s", [0.0, -0.5, float("nan"), float("-inf")])
def test_s_not_positive_is_refused(s):
    P, u, y = _small()
    with pytest.raises(ValueError, match=r"\bs\b"):
        M.sweep(P, u, y, s=s)
    with pytest.raises(ValueError, match=r"\bs\b"):
        M.loss_and_grad(P, u, y, s=s)


@pytest.mark.parametrize("bad", [True, "0.5", None, [0.5]])
def test_hyperparameters_of_the_wrong_type(bad):
    P, u, y = _small()
    with pytest.raises(TypeError, match="mu"):
        M.forward(P, u, mu=bad)
    with pytest.raises(TypeError, match=r"\bs\b"):
        M.forward(P, u, s=bad)


def test_state0_errors_name_the_key_and_shape():
    P, u, y = _small()
    with pytest.raises(ValueError, match=r"state0\['v0'\].*\(B, m\) = \(2, 4\)"):
        M.sweep(P, u, y, state0={"h0": np.zeros((2, 4)), "v0": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"state0\['h0'\]"):
        M.sweep(P, u, y, state0={"h0": np.zeros((3, 4))})
    with pytest.raises(ValueError, match="unknown key.*c0"):
        M.sweep(P, u, y, state0={"h0": np.zeros(4), "c0": np.zeros(4)})
    with pytest.raises(TypeError, match="state0 must be a mapping"):
        M.sweep(P, u, y, state0=np.zeros((2, 4)))
    with pytest.raises(TypeError, match=r"state0\['v0'\].*integer"):
        M.sweep(P, u, y, state0={"v0": np.zeros((2, 4), dtype=int)})
    with pytest.raises(ValueError, match=r"state0\['h0'\].*non-finite"):
        M.sweep(P, u, y, state0={"h0": np.full(4, np.nan)})
    # (m,) broadcasts and a missing key means zeros
    a = M.sweep(P, u, y, state0={"h0": np.full(4, 0.1)})
    b = M.sweep(P, u, y, state0={"h0": np.full((2, 4), 0.1), "v0": np.zeros((2, 4))})
    assert np.array_equal(a.grads["U"], b.grads["U"])
    assert a.grad_state0["h0"].shape == (2, 4) and a.grad_state0["v0"].shape == (2, 4)


def test_params_and_input_errors():
    P, u, y = _small()
    with pytest.raises(ValueError, match="lack U"):
        M.sweep({k: v for k, v in P.items() if k != "U"}, u, y)
    with pytest.raises(ValueError, match=r"params\['U'\] has shape"):
        M.sweep(dict(P, U=np.zeros((4, 3))), u, y)
    with pytest.raises(ValueError, match="u: axis 2"):
        M.sweep(P, u[:, :, :2], y)
    with pytest.raises(ValueError, match="unknown activation"):
        M.sweep(P, u, y, activation="softmax")


def test_factor_needs_an_invertible_activation_and_a_valid_step():
    P, u, y = _small()
    tr = M.forward(P, u, activation="relu")
    for f in (M.momentum_factor, M.lecture_factor):
        with pytest.raises(ValueError, match="invertible.*relu"):
            f(P, tr, 1)
    with pytest.raises(ValueError, match="invertible.*relu"):
        M.eliminated_adjoint(tr, M.sweep(P, u, y, activation="relu").adj)
    with pytest.raises(ValueError, match="invertible.*relu"):
        M.eliminated_step(P, tr.h[1], tr.h[0], u[1], activation="relu")
    M.vanilla_factor(P, tr, 0)  # fine for relu
    M.adjoint_map(P, tr, 4)
    tr = M.forward(P, u)
    for k in (0, 5, 1.0, True):
        with pytest.raises(IndexError, match="step k"):
            M.momentum_factor(P, tr, k)
    with pytest.raises(IndexError, match="step k"):
        M.adjoint_map(P, tr, 5)
    with pytest.raises(ValueError, match="mu"):
        M.momentum_factor(P, tr, 1, mu=1.0)
    # saturated tanh: sigma'(z_k) = 0 in float, (sigma^{-1})' infinite
    Pbig = dict(P, W=1e3 * P["W"])
    tr = M.forward(Pbig, u)
    with pytest.raises(ValueError, match="saturated"):
        M.momentum_factor(Pbig, tr, 2)
    with pytest.raises(ValueError, match="outside the range"):
        M.eliminated_step(P, np.ones((2, 4)), tr.h[0], u[1])


def test_defaults_are_the_authors_mu_and_s():
    P, u, y = _small()
    tr = M.forward(P, u)
    assert (tr.mu, tr.s, tr.activation.name) == (0.6, 0.6, "tanh")
    assert M.STATE_NAMES == ("h0", "v0") and M.PARAM_NAMES == ("U", "W", "b", "W_out", "b2")
    with backend.use_backend("numpy", "float32"):  # float32 runs (smoke)
        F, g = M.loss_and_grad(P, u, y)
        assert g["U"].dtype == np.float32


def test_state_carries_across_calls():
    """Running step by step with the final (h, v) carried as state0 equals one many-to-many pass
    (cells.final_state / cells.generate with teacher forcing)."""
    from manualgrad import cells
    rng = np.random.default_rng(5)
    P = M.init_params(3, 4, 2, seed=5, bias_scale=0.3)
    u = rng.standard_normal((6, 2, 3))
    s0 = {"h0": 0.3 * rng.standard_normal((2, 4)), "v0": 0.3 * rng.standard_normal((2, 4))}
    full = M.forward(P, u, s0, many_to_many=True, mu=0.7, s=0.9)
    out = cells.generate(M, P, u[0], 6, lambda yhat, t: u[t + 1], state0=s0, mu=0.7, s=0.9)
    assert check.rel_error(out, full.yhat) < 1e-14
    fin = cells.final_state(M, P, full)
    assert set(fin) == {"h0", "v0"} and np.array_equal(fin["v0"], full.v[-1])


# ---------------------------------------------------------------------------------------------
# the p-form (BW-HB applied to the RNN)
# ---------------------------------------------------------------------------------------------

@given(m=st.integers(1, 5), p=st.integers(1, 4), T=st.integers(1, 8), seed=st.integers(0, 2**16),
       mu=st.floats(0.0, 0.9), s=st.floats(0.1, 2.0),
       activation=st.sampled_from(["tanh", "sigmoid", "identity"]))
@settings(max_examples=40)
def test_momentum_rnn_is_the_heavy_ball_p_form_with_v_equal_minus_U_p(m, p, T, seed, mu, s,
                                                                       activation):
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((m, m)) / np.sqrt(m) + 1.5 * np.eye(m)   # well conditioned
    W = rng.standard_normal((m, p))
    x = rng.standard_normal((T, 2, p))
    h0 = 0.3 * rng.standard_normal((2, m))
    P = {"U": U, "W": W, "b": np.zeros(m), "W_out": np.zeros((1, m)), "b2": np.zeros(1)}
    traj = M.forward(P, x, state0={"h0": h0, "v0": np.zeros((2, m))}, activation=activation,
                     mu=mu, s=s)
    h = backend.to_numpy(M.momentum_rnn_p_form(U, W, x, mu, s, h0=h0, activation=activation))
    np.testing.assert_allclose(h, backend.to_numpy(traj.h), rtol=0, atol=1e-10)


def test_momentum_rnn_p_form_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes"):
        M.momentum_rnn_p_form(np.eye(3), np.ones((2, 4)), np.ones((2, 1, 4)), 0.5, 0.5)
