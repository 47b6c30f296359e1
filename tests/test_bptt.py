"""BW-BPTT: step Jacobians, the product formula, the adjoint identity, the linear case, clipping.

(a)-(c) check manualgrad.bptt against finite differences and against rnn.sweep's adjoint;
(d) checks, as hypothesis properties, what is actually true of the lecture's statements on
vanishing/exploding gradients (docs/bptt.md, "What the lecture states vs what holds");
(e) checks manualgrad.optim.clip_by_global_norm.
"""
import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from manualgrad import backend, bptt, check, rnn, testing
from manualgrad.optim import clip_by_global_norm
from manualgrad.optim.clip import global_norm

TOL = check.TOLERANCES["float64"]  # 1e-7


# --- helpers ----------------------------------------------------------------------------------
def fd_jacobian(g, x, order=4):
    """Central-difference Jacobians of a row-wise map g: (B, n) -> (B, q); returns (B, q, n).

    Rows (examples) are independent, so column j of every example's Jacobian comes from one
    pair (or two pairs) of evaluations with x[:, j] perturbed by a per-example step.
    """
    B, n = x.shape
    h = check.default_step(x.dtype, order) * np.maximum(1.0, np.abs(x))  # (B, n)
    cols = []
    for j in range(n):
        def g_at(c, j=j):
            xj = x.copy()
            xj[:, j] += c * h[:, j]
            return g(xj)
        if order == 2:
            col = (g_at(1.0) - g_at(-1.0)) / (2.0 * h[:, j, None])
        else:
            col = (g_at(-2.0) - 8.0 * g_at(-1.0) + 8.0 * g_at(1.0) - g_at(2.0)) \
                / (12.0 * h[:, j, None])
        cols.append(col)
    return np.stack(cols, axis=2)


def fd_order(prob):
    """The 2-point stencil next to relu kinks in the recurrence, else the 4-point one."""
    return 2 if prob.activation == "relu" else 4


def fd_error(J, num, x_scale, order):
    """rel_error of J against finite differences, with a floor at the differences' round-off.

    A central difference of states of size |x| carries a round-off of about eps |x| / h in every
    entry; entries of saturated units (tanh' ~ 1e-6) are smaller than that relative to the state,
    so the relative error is taken against max(||J||, ||num||, floor) with
    floor = 100 eps max(1, |x|) / (h TOL): an absolute error ~2e-10 |x| (4-point stencil) passes.
    """
    h0 = check.default_step(np.float64, order)
    floor = 100 * np.finfo(np.float64).eps * max(1.0, x_scale) / (h0 * TOL)
    return check.rel_error(J, num, floor=floor)


def forward_of(prob):
    return rnn.forward(prob.params, prob.u, prob.x0, prob.activation, prob.output,
                       prob.many_to_many)


def states_from(prob, k, t):
    """x_k -> x_t: run rnn.forward over steps k+1..t from x_k (t > k)."""
    def g(xk):
        return rnn.forward(prob.params, prob.u[k:t], xk, prob.activation, prob.output).x[-1]
    return g


def explicit_product(J, k, t):
    """J_t J_{t-1} ... J_{k+1} from the stack J (T, B, m, m), by plain matmuls."""
    B, m = J.shape[1], J.shape[2]
    P = np.broadcast_to(backend.xp().eye(m), (B, m, m)).copy()
    for s in range(k + 1, t + 1):
        P = J[s - 1] @ P
    return P


def norms2(P):
    return np.linalg.svd(P, compute_uv=False)[..., 0]


def random_orthogonal(m, rng):
    Q, R = np.linalg.qr(rng.standard_normal((m, m)))
    return Q * np.sign(np.diag(R))


def lin_params(W, p=2, l=1, seed=0):
    """RNN parameters with W_rec = W (for the linear / constructed cases)."""
    P = rnn.init_params(p, W.shape[0], l, seed=seed)
    P["W_rec"] = backend.asarray(np.array(W, dtype=float))
    return P


dims = testing.sizes(6, min_value=2)
seeds = testing.seeds()


# --- (a) step Jacobians against finite differences of the one-step map -------------------------
@pytest.mark.parametrize("act", testing.HIDDEN)
@given(data=st.data())
def test_step_jacobians_match_finite_differences(act, data):
    prob = data.draw(testing.rnn_problems(hidden=(act,), many_to_many=False))
    prob.assume_off_kinks()
    traj = forward_of(prob)
    J = bptt.step_jacobians(prob.params, traj)
    T, B, m = traj.z.shape
    assert J.shape == (T, B, m, m)
    for k in range(1, T + 1):  # x_{k-1} -> x_k is one step of rnn.forward
        order = fd_order(prob)
        num = fd_jacobian(states_from(prob, k - 1, k), traj.x[k - 1].copy(), order)
        assert fd_error(J[k - 1], num, np.abs(traj.x[k]).max(), order) < TOL, (act, k)


def test_finite_difference_check_catches_a_transposed_jacobian():
    """The checker must fail on W_rec diag(sigma') (the factors in the wrong order)."""
    prob = testing.RNNProblem(rnn.init_params(2, 4, 1, seed=3, bias_scale=0.3),
                              np.random.default_rng(3).standard_normal((3, 2, 2)), None, None,
                              "tanh", "sigmoid", "bce", False, 3)
    traj = forward_of(prob)
    d = traj.activation.grad(traj.z, traj.x[1:])
    wrong = prob.params["W_rec"] * d[1][:, None, :]  # W_rec diag(sigma'(z_2))
    num = fd_jacobian(states_from(prob, 1, 2), traj.x[1].copy())
    assert check.rel_error(bptt.step_jacobians(prob.params, traj)[1], num) < TOL
    assert check.rel_error(wrong, num) > 1e-3


# --- (b) the product formula -----------------------------------------------------------------
@given(data=st.data())
def test_jacobian_product_matches_finite_differences_and_explicit_product(data):
    prob = data.draw(testing.rnn_problems(many_to_many=False))
    prob.assume_off_kinks()
    traj = forward_of(prob)
    T = traj.T
    k = data.draw(st.integers(0, T), label="k")
    t = data.draw(st.integers(k, T), label="t")
    P = bptt.jacobian_product(prob.params, traj, k, t)
    B, m = traj.z.shape[1:]
    assert P.shape == (B, m, m)
    J = bptt.step_jacobians(prob.params, traj)
    assert check.rel_error(P, explicit_product(J, k, t)) < 1e-12
    if t == k:
        assert np.array_equal(P, np.broadcast_to(backend.xp().eye(m), (B, m, m)))
    else:
        order = fd_order(prob)
        num = fd_jacobian(states_from(prob, k, t), traj.x[k].copy(), order)
        assert fd_error(P, num, np.abs(traj.x[t]).max(), order) < TOL


@given(data=st.data())
def test_product_norms_are_the_spectral_norms_of_the_products(data):
    prob = data.draw(testing.rnn_problems(many_to_many=False))
    traj = forward_of(prob)
    t = data.draw(st.one_of(st.none(), st.integers(0, traj.T)), label="t")
    tt = traj.T if t is None else t
    N = bptt.product_norms(prob.params, traj, t)
    assert N.shape == (tt + 1, traj.B)
    ref = np.stack([norms2(bptt.jacobian_product(prob.params, traj, k, tt))
                    for k in range(tt + 1)])
    assert check.rel_error(N, ref) < 1e-10
    assert np.allclose(N[tt], 1.0, rtol=1e-14)
    logN = bptt.product_norms(prob.params, traj, t, log=True)
    with np.errstate(divide="ignore"):
        assert np.allclose(logN, np.log(ref), rtol=1e-9, atol=1e-9)


@given(data=st.data())
def test_product_norms_lie_between_the_bounds(data):
    """prod sigma_min(J_s) <= ||dx_t/dx_k||_2 <= prod max|sigma'(z_s)| ||W_rec||_2 (any sigma)."""
    prob = data.draw(testing.rnn_problems(many_to_many=False))
    traj = forward_of(prob)
    N = bptt.product_norms(prob.params, traj)
    upper = bptt.product_norm_bound(prob.params, traj)
    smin = np.linalg.svd(bptt.step_jacobians(prob.params, traj), compute_uv=False)[..., -1]
    ones = backend.xp().ones((1, traj.B))
    lower = np.flip(np.cumprod(np.flip(np.concatenate([smin, ones]), 0), 0), 0)
    assert np.all(N <= upper * (1 + 1e-10) + 1e-300)
    assert np.all(N >= lower * (1 - 1e-10))


# --- (c) the adjoint identity -----------------------------------------------------------------
@given(prob=testing.rnn_problems(many_to_many=False))
def test_adjoint_is_the_transposed_product_applied_to_lambda_T(prob):
    """lambda_k = (dx_T/dx_k)^T lambda_T, k = 0..T, against rnn.sweep's adjoint (JP eq. 8)."""
    s = prob.sweep()
    lam, T = s.adj.lam, s.traj.T
    for k in range(T + 1):
        want = s.adj.lam0 if k == 0 else lam[k - 1]
        got = bptt.adjoint_from_product(prob.params, s.traj, lam[T - 1], k)
        assert check.rel_error(got, want) < 1e-12, k
        P = bptt.jacobian_product(prob.params, s.traj, k, T)
        assert check.rel_error(np.einsum("bij,bi->bj", P, lam[T - 1]), want) < 1e-12, k


# --- (d) the linear case and what the lecture's statements really say --------------------------
@given(m=dims, seed=seeds, T=st.integers(1, 12))
def test_linear_case_product_is_a_matrix_power(m, seed, T):
    """sigma = identity: dx_T/dx_k = W_rec^(T-k), so product_norms = linear_power_norms reversed."""
    rng = np.random.default_rng(seed)
    P = lin_params(rng.standard_normal((m, m)) * rng.uniform(0.2, 2.0) / math.sqrt(m), seed=seed)
    traj = rnn.forward(P, rng.standard_normal((T, 3, 2)), activation="identity")
    assert check.rel_error(bptt.jacobian_product(P, traj, 0, T)[0],
                           np.linalg.matrix_power(P["W_rec"], T)) < 1e-12
    assert check.rel_error(bptt.product_norms(P, traj)[:, 1],
                           np.flip(bptt.linear_power_norms(P["W_rec"], T))) < 1e-10
    ref = [float(np.linalg.norm(np.linalg.matrix_power(P["W_rec"], k), 2)) for k in range(T + 1)]
    assert check.rel_error(bptt.linear_power_norms(P["W_rec"], T), np.array(ref)) < 1e-10


@given(m=dims, seed=seeds, s=st.floats(0.05, 0.99), n=st.integers(1, 300))
def test_sigma_max_below_one_vanishes(m, seed, s, n):
    """TRUE: sigma_max(W) < 1  =>  ||W^k||_2 <= sigma_max^k for every k, -> 0."""
    G = np.random.default_rng(seed).standard_normal((m, m))
    W = s * G / np.linalg.norm(G, 2)
    assert float(bptt.spectral_norm(W)) == pytest.approx(s, rel=1e-12)
    logN = backend.to_numpy(bptt.linear_power_norms(W, n, log=True))
    assert np.all(logN <= np.arange(n + 1) * math.log(s) + 1e-10 * np.arange(1, n + 2))
    assert np.all(np.diff(logN) <= math.log(s) + 1e-10)  # ||W^(k+1)|| <= s ||W^k||


@given(m=dims, seed=seeds, r=st.floats(1.01, 3.0), n=st.integers(1, 200))
def test_spectral_radius_above_one_explodes(m, seed, r, n):
    """TRUE: rho(W) > 1  =>  ||W^k||_2 >= rho^k for every k, -> infinity (random, non-normal W)."""
    G = np.random.default_rng(seed).standard_normal((m, m))
    rho_G = float(bptt.spectral_radius(G))
    assume(rho_G > 1e-3)
    W = r * G / rho_G
    assert float(bptt.spectral_radius(W)) == pytest.approx(r, rel=1e-9)
    logN = backend.to_numpy(bptt.linear_power_norms(W, n, log=True))
    assert np.all(logN >= np.arange(n + 1) * math.log(r) * (1 - 1e-8) - 1e-8)
    # Gelfand: ||W^n||^(1/n) -> rho from above; sigma_max bounds it
    assert logN[n] / n <= math.log(float(bptt.spectral_norm(W))) + 1e-10


def test_sigma_max_above_one_alone_does_not_explode_counterexample():
    """FALSE in general: [[0.5, 3], [0, 0.5]] has sigma_max ~ 3.08 > 1, yet W^n -> 0."""
    W = np.array([[0.5, 3.0], [0.0, 0.5]])
    assert float(bptt.spectral_norm(W)) > 3.0
    assert float(bptt.spectral_radius(W)) == pytest.approx(0.5, rel=1e-12)
    N = bptt.linear_power_norms(W, 100)
    # exact: W^n = [[0.5^n, 3 n 0.5^(n-1)], [0, 0.5^n]]
    exact = [np.linalg.norm(np.array([[0.5 ** k, 3 * k * 0.5 ** (k - 1) if k else 0.0],
                                      [0.0, 0.5 ** k]]), 2) for k in range(101)]
    assert check.rel_error(N, np.array(exact)) < 1e-12
    assert N[1] > 3.0 and N[2] > 3.0  # a transient growth ...
    assert N[20] < 1e-3 and N[100] < 1e-25  # ... then vanishing


@given(m=dims, seed=seeds, r=st.floats(0.0, 0.8), c=st.floats(2.0, 10.0))
def test_sigma_max_above_one_alone_does_not_explode_random_nonnormal(m, seed, r, c):
    """FALSE in general, as a property: W = Q U Q^T, U upper triangular with |diag| <= r < 1 and
    off-diagonal entries up to c >= 2, has sigma_max >= c > 1 but rho <= r, so W^n -> 0."""
    rng = np.random.default_rng(seed)
    U = np.triu(rng.uniform(-c, c, (m, m)), 1)
    U[0, m - 1] = c * rng.choice([-1.0, 1.0])
    U += np.diag(rng.uniform(-r, r, m))
    Q = random_orthogonal(m, rng)
    W = Q @ U @ Q.T
    assert float(bptt.spectral_norm(W)) >= c * (1 - 1e-12) > 1.0
    # rho(W) = max |diag(U)| <= r exactly; eigvals(W) of a (nearly) defective W is accurate only
    # to ~eps^(1/m), so the eigenvalues are read off the triangular factor
    assert np.abs(np.diag(U)).max() <= r
    logN = bptt.linear_power_norms(W, 1500, log=True)
    assert logN[1] > 0.0  # ||W|| > 1 ...
    assert logN[-1] < math.log(1e-8)  # ... and still W^n -> 0


def test_diagonal_factors_do_not_come_out_of_the_product():
    """BW writes prod_t diag(tanh'_t) W_hh as (prod_t diag(tanh'_t)) W_hh^(T-1): false unless the
    diagonals commute with W_hh. The true product is jacobian_product."""
    rng = np.random.default_rng(0)
    P = lin_params(rng.standard_normal((4, 4)) / 2, seed=0)
    traj = rnn.forward(P, rng.standard_normal((5, 3, 2)))
    d = traj.activation.grad(traj.z, traj.x[1:])
    pulled = np.prod(d, axis=0)[:, :, None] * np.linalg.matrix_power(P["W_rec"], 5)
    assert check.rel_error(bptt.jacobian_product(P, traj, 0, 5), pulled) > 1e-2


@given(m=dims, seed=seeds, T=st.integers(1, 8))
def test_diagonal_factors_come_out_when_W_rec_is_diagonal(m, seed, T):
    rng = np.random.default_rng(seed)
    P = lin_params(np.diag(rng.uniform(-1.5, 1.5, m)), seed=seed)
    traj = rnn.forward(P, rng.standard_normal((T, 3, 2)))
    d = traj.activation.grad(traj.z, traj.x[1:])
    pulled = np.prod(d, axis=0)[:, :, None] * np.linalg.matrix_power(P["W_rec"], T)
    assert check.rel_error(bptt.jacobian_product(P, traj, 0, T), pulled) < 1e-12


@given(prob=testing.rnn_problems(hidden=("tanh",), many_to_many=False), s=st.floats(0.05, 0.99))
def test_tanh_with_small_W_rec_vanishes(prob, s):
    """TRUE: |tanh'| <= 1, so ||dx_t/dx_k||_2 <= ||W_rec||_2^(t-k) -> 0 when ||W_rec||_2 < 1."""
    W = prob.params["W_rec"]
    assume(np.linalg.norm(W, 2) > 1e-6)
    params = dict(prob.params, W_rec=s * W / np.linalg.norm(W, 2))
    traj = rnn.forward(params, prob.u, prob.x0)
    T = traj.T
    N = bptt.product_norms(params, traj)
    geometric = backend.asarray(s ** np.arange(T, -1, -1.0))  # row k: s^(T-k)
    assert np.all(bptt.product_norm_bound(params, traj) <= geometric[:, None] * (1 + 1e-12))
    assert np.all(N <= geometric[:, None] * (1 + 1e-12))


@given(m=dims, seed=seeds, a=st.floats(1.0, 2.0), T=st.integers(1, 60))
def test_tanh_products_need_not_vanish_at_rest(m, seed, a, T):
    """The lecture's "tanh' < 1 a.s., hence dL/dW -> 0 as T -> infinity" is not a theorem: with
    W_rec = a Q (Q orthogonal, a >= 1), zero input and x_0 = 0 the state stays at 0, tanh'(0) = 1,
    J_k = W_rec, and ||dx_T/dx_0||_2 = a^T: constant for a = 1, exploding for a > 1."""
    rng = np.random.default_rng(seed)
    P = lin_params(a * random_orthogonal(m, rng), seed=seed)
    P["b1"][:] = 0.0
    traj = rnn.forward(P, np.zeros((T, 2, 2)))
    assert np.all(traj.z == 0.0)
    logN = bptt.product_norms(P, traj, log=True)
    assert np.allclose(logN[0], T * math.log(a), rtol=1e-10, atol=1e-10)


@given(m=dims, seed=seeds, a=st.floats(1.05, 1.2), T=st.integers(10, 40))
def test_tanh_products_need_not_vanish_with_small_inputs(m, seed, a, T):
    """Same away from rest: W_rec = a I and small positive inputs (z_k >= 5e-7, so tanh'(z_k) < 1
    at every step and unit, and no unit saturates). The product is diagonal,
    dx_T/dx_0 = diag(prod_k a tanh'(z_k)), its norm >= (a min tanh')^T > 1: it grows with T."""
    rng = np.random.default_rng(seed)
    P = lin_params(a * np.eye(m), p=1, seed=seed)
    P["W_in"] = rng.uniform(1e-6, 1e-5, (m, 1))
    P["b1"][:] = 0.0
    traj = rnn.forward(P, rng.uniform(0.5, 1.5, (T, 3, 1)))
    d = traj.activation.grad(traj.z, traj.x[1:])
    assert np.all(d < 1.0) and np.all(traj.z > 0.0) and np.all(traj.x < 0.2)
    N0 = bptt.product_norms(P, traj)[0]
    assert check.rel_error(N0, np.prod(a * d, axis=0).max(axis=1)) < 1e-12
    assert np.all(N0 >= (a * d.min()) ** T * (1 - 1e-12))
    assert np.all(N0 > 1.0)
    N = bptt.product_norms(P, traj)  # row k: ||dx_T/dx_k||, growing as k moves away from T
    assert np.all(np.diff(N, axis=0) < 0)


# --- linear-algebra helpers -------------------------------------------------------------------
def test_singular_values_and_radius_against_numpy():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((5, 5))
    assert check.rel_error(bptt.singular_values(W), np.linalg.svd(W, compute_uv=False)) < 1e-14
    assert float(bptt.spectral_radius(W)) == pytest.approx(np.abs(np.linalg.eigvals(W)).max())
    S = rng.standard_normal((3, 4, 2))
    assert bptt.singular_values(S).shape == (3, 2)
    R = random_orthogonal(4, rng)
    assert float(bptt.spectral_norm(R)) == pytest.approx(1.0)
    assert float(bptt.spectral_radius(R)) == pytest.approx(1.0)


# --- bad input -------------------------------------------------------------------------------
def test_bad_input_is_refused_with_a_clear_error():
    rng = np.random.default_rng(2)
    P = rnn.init_params(2, 3, 1, seed=2)
    traj = rnn.forward(P, rng.standard_normal((4, 2, 2)))
    with pytest.raises(ValueError, match="0 <= k <= t <= T = 4"):
        bptt.jacobian_product(P, traj, 3, 2)
    with pytest.raises(ValueError, match="T = 4"):
        bptt.jacobian_product(P, traj, 0, 5)
    with pytest.raises(TypeError, match="k must be an integer"):
        bptt.jacobian_product(P, traj, 1.0, 2)
    with pytest.raises(ValueError, match="t must satisfy"):
        bptt.product_norms(P, traj, t=-1)
    with pytest.raises(TypeError, match="Trajectory"):
        bptt.step_jacobians(P, traj.x)
    with pytest.raises(ValueError, match="m = 5"):
        bptt.step_jacobians(rnn.init_params(2, 5, 1), traj)
    with pytest.raises(ValueError, match=r"lam_T must have shape \(B, m\) = \(2, 3\)"):
        bptt.adjoint_from_product(P, traj, np.ones((3, 3)), 0)
    with pytest.raises(ValueError, match="square"):
        bptt.spectral_radius(np.ones((2, 3)))
    with pytest.raises(ValueError, match="square"):
        bptt.linear_power_norms(np.ones((2, 3)), 3)
    with pytest.raises(ValueError, match="n must be >= 0"):
        bptt.linear_power_norms(np.eye(2), -1)
    with pytest.raises(ValueError, match="matrix"):
        bptt.singular_values(np.ones(3))
    with pytest.raises(TypeError, match="floating-point"):
        bptt.spectral_norm(np.eye(2, dtype=int))


def test_overflow_and_dead_units_give_inf_and_zero_not_errors():
    N = bptt.linear_power_norms(3.0 * np.eye(2), 1000)
    assert N[-1] == np.inf
    assert float(bptt.linear_power_norms(3.0 * np.eye(2), 1000, log=True)[-1]) == pytest.approx(
        1000 * math.log(3.0))
    P = lin_params(np.eye(2), seed=0)
    P["b1"][:] = -5.0
    P["W_in"][:] = 0.0
    traj = rnn.forward(P, np.ones((3, 2, 2)), activation="relu")  # every unit dead: J = 0
    N = bptt.product_norms(P, traj)
    assert np.array_equal(backend.to_numpy(N[:3]), np.zeros((3, 2))) and np.all(N[3] == 1.0)


# --- (e) gradient clipping --------------------------------------------------------------------
@st.composite
def grad_dicts(draw):
    seed = draw(seeds)
    rng = np.random.default_rng(seed)
    n = draw(st.integers(1, 4))
    scale = 10.0 ** draw(st.floats(-6, 6))
    shapes = [tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=2))) for _ in range(n)]
    return {"g%d" % i: backend.asarray(scale * rng.standard_normal(s))
            for i, s in enumerate(shapes)}


@given(grads=grad_dicts(), max_norm=st.floats(1e-3, 1e3))
def test_clip_by_global_norm(grads, max_norm):
    ref = math.sqrt(sum(float((g ** 2).sum()) for g in grads.values()))
    clipped, norm, fired = clip_by_global_norm(grads, max_norm)
    assert norm == pytest.approx(ref, rel=1e-12)
    assert fired == (ref > max_norm)
    assert set(clipped) == set(grads)
    new = math.sqrt(sum(float((g ** 2).sum()) for g in clipped.values()))
    if fired:
        assert abs(new - max_norm) <= 1e-12 * max_norm
        c = max_norm / norm
        for k in grads:  # same direction: one common factor c in (0, 1)
            assert np.allclose(clipped[k], c * grads[k], rtol=1e-14, atol=0.0)
    else:
        assert all(clipped[k] is grads[k] for k in grads)
    assert not any(np.isnan(g).any() for g in clipped.values())


def test_clip_edge_cases():
    zeros = {"W": np.zeros((3, 2)), "b": np.zeros(3)}
    out, norm, fired = clip_by_global_norm(zeros, 1.0)
    assert norm == 0.0 and not fired and all(np.array_equal(out[k], zeros[k]) for k in zeros)
    huge = {"W": np.full((2, 2), 1e200), "b": np.array([-1e200, 0.0])}  # squares overflow
    out, norm, fired = clip_by_global_norm(huge, 5.0)
    assert fired and norm == pytest.approx(math.sqrt(5) * 1e200, rel=1e-12)
    assert global_norm(out) == pytest.approx(5.0, rel=1e-12) and out["b"][1] == 0.0
    f32 = {"W": np.ones((2, 2), dtype=np.float32) * 10}
    out, _, fired = clip_by_global_norm(f32, 1.0)
    assert fired and out["W"].dtype == np.float32
    assert clip_by_global_norm({"W": np.ones(3)}, float("inf"))[2] is False
    assert clip_by_global_norm({"W": np.array([3.0, 4.0])}, 5.0)[2] is False  # norm == max_norm
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="max_norm must be > 0"):
            clip_by_global_norm({"W": np.ones(3)}, bad)
    for bad in ("1", True, None):
        with pytest.raises(TypeError, match="max_norm"):
            clip_by_global_norm({"W": np.ones(3)}, bad)
    with pytest.raises(TypeError, match="mapping"):
        clip_by_global_norm([np.ones(3)], 1.0)
    with pytest.raises(TypeError, match=r"grads\['W'\] must be a floating-point"):
        clip_by_global_norm({"W": np.ones(3, dtype=int)}, 1.0)
    with pytest.raises(ValueError, match=r"grads\['W'\] contains 1 non-finite"):
        clip_by_global_norm({"W": np.array([1.0, np.nan])}, 1.0)


def test_clipping_an_exploding_rnn_gradient():
    """End to end: W_rec = a Q over 30 steps. a = 0.5 (vanishing) leaves the gradient below the
    threshold; a = 1.5 (rho > 1, exploding) makes it large, and clipping caps its length."""
    rng = np.random.default_rng(5)
    Q = random_orthogonal(4, rng)
    u = 1e-3 * rng.standard_normal((30, 4, 2))
    y = rng.uniform(0, 1, (4, 1))
    norms = {}
    for a in (0.5, 1.5):
        P = rnn.init_params(2, 4, 1, seed=5)
        P["W_rec"] = a * Q
        P["b1"][:] = 0.0
        _, grads = rnn.loss_and_grad(P, u, y)
        clipped, norms[a], fired = clip_by_global_norm(grads, 1.0)
        assert fired == (a > 1)
        assert global_norm(clipped) == pytest.approx(min(1.0, norms[a]), rel=1e-12)
    assert norms[1.5] > 10.0 and norms[0.5] < 1.0
