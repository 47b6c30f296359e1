"""BW's analytical statements on the linearised HBNODE as property tests (manualgrad.ode.linear).

BW-STIFF (eigenvalues of B, stiffness ratio), BW Theorem 3 (exactly, via the matrix exponential),
BW Theorem 4 (against scipy's expm and against the computed adjoints), BW Proposition 1
(eigenvalue pairs of -M) and BW's remark (eqs. 23-26), including the edge cases and the
conditions without which the statements fail. Derivations: docs/hbnode.md.
"""
import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
from hypothesis import given, settings
from hypothesis import strategies as st

from manualgrad import backend
from manualgrad.ode import adjoint, hbnode, linear, solvers

SEEDS = st.integers(0, 2 ** 31 - 1)
DIMS = st.integers(1, 5)
GAMMAS = st.one_of(st.sampled_from([0.0, 1e-3, 2.0]), st.floats(0.0, 3.0))


def random_matrix(n, seed, scale=1.0):
    return scale * np.random.default_rng(seed).standard_normal((n, n)) / np.sqrt(n)


def spd_matrix(n, seed, lo=0.1, hi=10.0):
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    lam = np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    return (Q * lam) @ Q.T, lam


def multiset_distance(x, y):
    """max |x_i - y_pi(i)| over the best one-to-one matching of two complex vectors."""
    cost = np.abs(np.asarray(x)[:, None] - np.asarray(y)[None, :])
    r, c = scipy.optimize.linear_sum_assignment(cost)
    return float(cost[r, c].max())


def linear_field(A, gamma):
    """HBNODEField with f(h) = A h: identity activation, theta1 = I, theta2 = A, zero biases."""
    n = A.shape[0]
    P = {"theta1": np.eye(n), "b1": np.zeros(n), "theta2": np.array(A, dtype=float),
         "b2": np.zeros(n)}
    return hbnode.HBNODEField("identity", gamma=gamma), P


# ------------------------------------------------------------------------ BW-STIFF eigenvalues
@given(n=DIMS, seed=SEEDS, gamma=GAMMAS, scale=st.floats(0.1, 3.0))
def test_b_eigenvalues_are_roots_of_c2_plus_gamma_c_minus_lambda(n, seed, gamma, scale):
    A = random_matrix(n, seed, scale)
    B = linear.B_matrix(A, gamma)
    num = scipy.linalg.eigvals(B)
    pred = linear.b_eigenvalues(A, gamma)
    tol = 1e-6 * (1.0 + np.linalg.norm(B))
    assert multiset_distance(num, pred.ravel()) < tol
    # each predicted pair: roots of c^2 + gamma c - lambda_i (sum -gamma, product -lambda_i)
    lam = scipy.linalg.eigvals(A)
    assert np.allclose(pred.sum(axis=1), -gamma, atol=1e-12 * (1 + gamma))
    assert multiset_distance(-pred.prod(axis=1), lam) < 1e-9 * (1 + np.abs(lam).max())


@given(n=DIMS, seed=SEEDS, gamma=st.floats(0.01, 3.0))
def test_printed_stiffness_eigenvalues_are_those_of_minus_B(n, seed, gamma):
    """BW prints (gamma +- sqrt(gamma^2 + 4 lambda_i)) / 2: the spectrum of -B, not of B."""
    A = random_matrix(n, seed)
    B = linear.B_matrix(A, gamma)
    printed = linear.b_eigenvalues_printed(A, gamma).ravel()
    tol = 1e-6 * (1.0 + np.linalg.norm(B))
    assert multiset_distance(scipy.linalg.eigvals(-B), printed) < tol
    # not the spectrum of B: the sums differ by 2 n gamma (trace B = -n gamma)
    assert abs(printed.sum() - np.trace(B) - 2 * n * gamma) < 1e-9 * (1 + n * gamma)
    assert abs(printed.sum().real - np.trace(B)) > n * gamma
    # ... but the absolute values, hence the stiffness ratio, agree
    assert multiset_distance(np.abs(printed) + 0j, np.abs(scipy.linalg.eigvals(B)) + 0j) < tol


# ------------------------------------------------------------------------ BW-STIFF ratio
@given(n=DIMS, seed=SEEDS)
def test_stiffness_ratio_at_gamma_zero_is_sqrt_of_that_of_A(n, seed):
    A, lam = spd_matrix(n, seed)
    S_A = linear.stiffness_ratio(A)
    assert S_A == pytest.approx(lam.max() / lam.min(), rel=1e-9)
    for part in ("abs", "real"):  # eigenvalues of B are +-sqrt(lambda_i): real
        assert linear.stiffness_ratio(linear.B_matrix(A, 0.0), part) == pytest.approx(
            np.sqrt(S_A), rel=1e-9)
    assert linear.stiffness_ratio_printed(A, 0.0) == pytest.approx(np.sqrt(S_A), rel=1e-12)
    # the stable case -A positive definite: eigenvalues of B are +-i sqrt|lambda_i|; the
    # absolute-value ratio is sqrt(S(A)) again (the |Re| ratio is meaningless there: Re = 0)
    assert linear.stiffness_ratio(linear.B_matrix(-A, 0.0)) == pytest.approx(np.sqrt(S_A), rel=1e-9)


@given(n=DIMS, seed=SEEDS, g1=st.floats(0.01, 5.0), g2=st.floats(0.01, 5.0))
def test_stiffness_ratio_grows_with_gamma_so_the_bound_holds_only_at_zero(n, seed, g1, g2):
    """S(B) equals the printed formula, is >= sqrt(S(A)) and strictly increasing in gamma >= 0:
    "S(B) <= sqrt(S(A))" is true only at gamma = 0, where it is an equality."""
    A, lam = spd_matrix(n, seed)
    root = np.sqrt(linear.stiffness_ratio(A))
    S = {}
    for g in (g1, g2):
        S[g] = linear.stiffness_ratio(linear.B_matrix(A, g))
        assert S[g] == pytest.approx(linear.stiffness_ratio_printed(A, g), rel=1e-8)
        assert S[g] == pytest.approx(linear.stiffness_ratio(linear.B_matrix(A, g), "real"),
                                     rel=1e-8)
        # closed-form lower bound of the increase: S(B) >= sqrt(S(A)) (1 + g / sqrt(lam_max))
        assert S[g] >= root * (1.0 + g / np.sqrt(lam.max())) * (1 - 1e-9) > root
    if abs(g1 - g2) > 1e-3:
        lo, hi = sorted((g1, g2))
        assert S[lo] < S[hi]


def test_stiffness_printed_formula_refuses_indefinite_A():
    with pytest.raises(ValueError, match="real positive eigenvalues"):
        linear.stiffness_ratio_printed(np.diag([1.0, -2.0]), 0.0)


# ------------------------------------------------------------------------ BW Proposition 1
@given(n=DIMS, seed=SEEDS, gamma=GAMMAS, t=st.floats(-3.0, 3.0), T=st.floats(-3.0, 3.0),
       scale=st.floats(0.1, 3.0))
def test_eigenvalues_of_minus_M_pair_up_summing_to_t_minus_T_gamma(n, seed, gamma, t, T, scale):
    F = random_matrix(n, seed, scale)  # any F: the Jacobian averaged over [t, T]
    ps = linear.pair_spectrum(F, gamma, t, T)
    M = linear.M_matrix(F, gamma, t, T)
    tol = 1e-6 * (1.0 + np.linalg.norm(M))
    assert ps.pairs.shape == (n, 2)
    assert ps.match_error < tol  # the numerical spectrum is the union of the predicted pairs
    assert np.abs(ps.sums - (t - T) * gamma).max() < 2 * tol
    # independently: the spectrum of -M is symmetric about (t - T) gamma / 2
    ev = scipy.linalg.eigvals(-M)
    assert multiset_distance(ev, (t - T) * gamma - ev) < 2 * tol
    # eq. (22) scaled: nu^2 - (t - T) gamma nu - (t - T)^2 lambda_i = 0 for every predicted nu
    lam = scipy.linalg.eigvals(F)
    s = t - T
    resid = ps.predicted ** 2 - s * gamma * ps.predicted - s * s * lam[:, None]
    assert np.abs(resid).max() < 1e-9 * (1 + np.abs(ps.predicted).max()) ** 2


@given(n=DIMS, seed=SEEDS, gamma=GAMMAS, re=st.floats(-2, 2), im=st.floats(-2, 2))
def test_characteristic_polynomial_eq_20_has_no_minus_sign(n, seed, gamma, re, im):
    """det(x I - H) = det(x(x + gamma) I - F) = +ch_F(x(x + gamma)); BW eqs. (20)-(21) print -ch_F."""
    F = random_matrix(n, seed)
    H = linear.B_matrix(F, gamma)
    x = complex(re, im)
    lhs = np.linalg.det(x * np.eye(2 * n) - H)
    rhs = np.linalg.det(x * (x + gamma) * np.eye(n) - F)
    assert abs(lhs - rhs) < 1e-9 * (1 + abs(lhs))
    if abs(rhs) > 1e-6:
        assert abs(lhs + rhs) > abs(rhs)  # the printed -ch_F is wrong


# ------------------------------------------------------------------------ BW Theorem 4
@settings(max_examples=25)
@given(n=DIMS, seed=SEEDS, gamma=GAMMAS, t=st.floats(0.0, 1.5), span=st.floats(0.1, 2.0))
def test_theorem4_expm_is_scipy_expm_and_the_exact_flow_of_the_adjoint(n, seed, gamma, t, span):
    A = random_matrix(n, seed)
    T = t + span
    rng = np.random.default_rng(seed + 1)
    aT = rng.standard_normal((3, 2 * n))
    M = linear.M_matrix(A, gamma, t, T)
    B = linear.B_matrix(A, gamma)
    # M = int_T^t [[0, I], [A, -gamma I]] ds, and eq. (18) with scipy's expm
    assert np.allclose(M, (t - T) * B, rtol=0, atol=1e-15)
    expected = aT @ scipy.linalg.expm(-M)
    got = linear.adjoint_via_expm(A, gamma, t, T, aT)
    assert np.abs(got - expected).max() <= 1e-13 * (1 + np.abs(expected).max())
    # it solves the adjoint ODE da/dt = -a B (BW Theorem 2, sign fixed): a(T) = aT, and a
    # fourth-order central difference in t of the formula gives -a B
    assert np.allclose(linear.adjoint_via_expm(A, gamma, T, T, aT), aT, rtol=0, atol=1e-14)
    d = 1e-3
    ap = [linear.adjoint_via_expm(A, gamma, t + k * d, T, aT) for k in (-2, -1, 1, 2)]
    da = (ap[0] - 8 * ap[1] + 8 * ap[2] - ap[3]) / (12 * d)
    assert np.abs(da + got @ B).max() < 1e-8 * (1 + np.abs(got @ B).max()) * (1 + np.linalg.norm(B)) ** 5


@settings(max_examples=15)
@given(n=DIMS, seed=SEEDS, gamma=GAMMAS, span=st.floats(0.2, 2.0))
def test_theorem4_agrees_with_the_computed_adjoints(n, seed, gamma, span):
    """Discrete adjoint of rk4 = aT P(hB)^N exactly (P the rk4 polynomial), which converges to
    aT exp(-M) at 4th order; the continuous adjoint converges to it too."""
    A = random_matrix(n, seed)
    field, P = linear_field(A, gamma)
    t0, T = 0.25, 0.25 + span
    rng = np.random.default_rng(seed + 7)
    z0 = rng.standard_normal((2, 2 * n))
    aT = rng.standard_normal((2, 2 * n))
    exact = linear.adjoint_via_expm(A, gamma, t0, T, aT)
    B = linear.B_matrix(A, gamma)
    errs = []
    for N in (8, 16, 64):
        sol = solvers.odeint(field, z0, P, t0, T, solver="rk4", steps=N)
        a0 = backend.to_numpy(adjoint.discrete_adjoint(field, sol, P, aT)[0])
        X = (T - t0) / N * B
        R = np.eye(2 * n) + X + X @ X / 2 + X @ X @ X / 6 + X @ X @ X @ X / 24
        poly = aT @ np.linalg.matrix_power(R, N)
        assert np.abs(a0 - poly).max() < 1e-12 * (1 + np.abs(poly).max())
        res = adjoint.continuous_adjoint(field, sol.z1, P, aT, t0, T, solver="rk4", steps=N)
        errs.append((np.abs(a0 - exact).max(), np.abs(backend.to_numpy(res.a0) - exact).max()))
    scale = 1 + np.abs(exact).max()
    for k in range(2):  # both converge; 4th order, tested loosely as >= 2^3 per halving
        assert errs[2][k] <= max(errs[0][k] / 8 ** 2, 1e-13 * scale)
        assert errs[2][k] < 1e-7 * scale


def test_theorem4_is_only_approximate_for_a_nonlinear_field():
    """With J(s) varying along the trajectory, exp(-int B ds) is a first-order Magnus
    approximation: the gap to the (converged) adjoint does not shrink with the step."""
    n, H, gamma, t0, T = 2, 6, 0.3, 0.0, 2.0
    field = hbnode.HBNODEField("tanh", gamma=gamma)
    P = hbnode.init_params(n, H, seed=3, scale=2.0, bias_scale=0.5)
    z0 = np.array([[1.5, -1.0, 0.5, 1.0]])
    aT = np.array([[1.0, -0.5, 0.3, 0.8]])
    gaps, steps_err = [], []
    prev = None
    for N in (200, 400):
        sol = solvers.odeint(field, z0, P, t0, T, solver="rk4", steps=N)
        a0 = backend.to_numpy(adjoint.discrete_adjoint(field, sol, P, aT)[0])
        Js = np.stack([field.jacobian(s, z[:, :n], P)[0] for s, z in zip(sol.ts, sol.zs)])
        M = linear.M_from_jacobians(sol.ts[::-1], Js[::-1], gamma)  # int_T^t0
        approx = aT @ scipy.linalg.expm(-M)
        gaps.append(np.abs(approx - a0).max())
        if prev is not None:
            steps_err.append(np.abs(a0 - prev).max())
        prev = a0
    assert gaps[1] > 1e-2 * np.abs(a0).max()           # a real, O(1) discrepancy ...
    assert abs(gaps[1] - gaps[0]) < 1e-3 * gaps[1]      # ... that the step does not remove
    assert steps_err[0] < 1e-6 * gaps[1]                # while the adjoint itself has converged


def test_M_from_jacobians_is_M_for_a_constant_jacobian():
    A = random_matrix(3, 5)
    ts = np.linspace(2.0, 0.5, 7)
    M = linear.M_from_jacobians(ts, np.repeat(A[None], 7, axis=0), 0.7)
    assert np.allclose(M, linear.M_matrix(A, 0.7, 0.5, 2.0), rtol=0, atol=1e-14)


# ------------------------------------------------------------------------ BW Theorem 3
@given(n=DIMS, seed=SEEDS, gamma=GAMMAS, t=st.floats(-1.0, 1.0), span=st.floats(0.0, 2.0))
def test_theorem3_holds_exactly_for_both_components_when_f_is_linear(n, seed, gamma, t, span):
    """a = aT exp(-(t - T) B): a_m'' - gamma a_m' = a_m A, and (J constant) the same for a_h."""
    A = random_matrix(n, seed)
    aT = np.random.default_rng(seed + 2).standard_normal((2, 2 * n))
    a, da, dda = linear.adjoint_derivatives_expm(A, gamma, t, t + span, aT)
    r_h, r_m = linear.heavy_ball_residual_expm(A, gamma, t, t + span, aT)
    scale = (1 + np.abs(dda).max() + gamma * np.abs(da).max()) * (1 + np.linalg.norm(A))
    assert np.abs(r_m).max() < 1e-12 * scale
    assert np.abs(r_h).max() < 1e-12 * scale
    # and by central differences in t of the exponential formula (no derivative formula used)
    d = 1e-3
    T = t + span
    ap = [linear.adjoint_via_expm(A, gamma, t + k * d, T, aT) for k in (-1, 0, 1)]
    d1 = (ap[2] - ap[0]) / (2 * d)
    d2 = (ap[2] - 2 * ap[1] + ap[0]) / d ** 2
    r = d2 - gamma * d1 - np.hstack([ap[1][:, :n] @ A, ap[1][:, n:] @ A])
    B = linear.B_matrix(A, gamma)
    assert np.abs(r).max() < 1e-5 * np.abs(aT).max() * (1 + np.linalg.norm(B)) ** 4 * np.exp(
        np.linalg.norm(B) * (span + d))


@settings(max_examples=10)
@given(n=st.integers(1, 3), seed=SEEDS, gamma=st.floats(0.0, 2.0))
def test_theorem3_on_the_recorded_continuous_adjoint_of_a_linear_field(n, seed, gamma):
    """Second differences in time of A's continuous adjoint record (rk4): both components satisfy
    eq. (15) up to O(dt^2), and the residual falls ~4x per halving of the step."""
    A = random_matrix(n, seed)
    field, P = linear_field(A, gamma)
    rng = np.random.default_rng(seed + 3)
    z1, aT = rng.standard_normal((2, 2 * n)), rng.standard_normal((2, 2 * n))
    worst = []
    for N in (40, 80):
        res = adjoint.continuous_adjoint(field, z1, P, aT, 0.0, 1.0, solver="rk4", steps=N,
                                         record=True)
        r = field.theorem3_residuals(res.ts, res.zs, res.as_, P)
        worst.append([np.abs(r["m"]).max(), np.abs(r["h"]).max()])
        # for constant J the correction term a_m dJ/dt is exactly zero
        assert np.array_equal(r["h"], r["h_corrected"])
    worst = np.array(worst)
    a_scale = max(float(np.abs(a).max()) for a in res.as_) * (
        1 + np.linalg.norm(linear.B_matrix(A, gamma))) ** 4
    assert (worst[1] < 1e-3 * a_scale).all()
    assert (worst[1] <= worst[0] / 3.0 + 1e-10 * a_scale).all()


# ------------------------------------------------------------------------ BW remark (23)-(26)
A_VALUES = st.floats(0.05, 3.0)


@given(n=DIMS, seed=SEEDS, a=A_VALUES, frac=st.one_of(st.sampled_from([0.0, 1.0]),
                                                      st.floats(0.0, 1.0)),
       t=st.floats(-3.0, 3.0), span=st.one_of(st.just(0.0), st.floats(0.0, 3.0)),
       scale=st.floats(0.1, 3.0))
def test_remark_each_pair_has_an_eigenvalue_with_real_part_at_least_t_minus_T_a(
        n, seed, a, frac, t, span, scale):
    """For t <= T and 0 <= gamma <= 2a (edges gamma = 0, gamma = 2a, t = T included)."""
    F = random_matrix(n, seed, scale)
    gamma = frac * 2 * a
    T = t + span
    M = linear.M_matrix(F, gamma, t, T)
    tol = 1e-6 * (1 + np.linalg.norm(M))
    assert linear.remark_margin(F, gamma, t, T, a) >= -tol
    # the same through the sorted Schur form of eqs. (23), (26): U_L holds >= n eigenvalues
    split = linear.schur_split(F, gamma, t, T, a, tol=tol)
    assert split.k >= n
    assert np.allclose(split.Q @ split.U @ split.Q.conj().T, -M, atol=1e-10 * (1 + np.linalg.norm(M)))
    assert (np.abs(np.exp(np.diag(split.U_L))) >= np.exp((t - T) * a - tol) * (1 - 1e-12)).all()


@settings(max_examples=30)
@given(n=DIMS, seed=SEEDS, gamma=GAMMAS, t=st.floats(0.0, 1.0), span=st.floats(0.0, 2.0),
       a=A_VALUES)
def test_remark_norm_identities_eqs_24_25(n, seed, gamma, t, span, a):
    F = random_matrix(n, seed)
    T = t + span
    aT = np.random.default_rng(seed + 4).standard_normal(2 * n)
    split = linear.schur_split(F, gamma, t, T, a)
    Q, U, k = split.Q, split.U, split.k
    a_t = linear.adjoint_via_expm(F, gamma, t, T, aT)
    v = aT @ Q                                                          # v^T = a_T Q
    expU = scipy.linalg.expm(U)
    assert np.allclose(a_t, v @ expU @ Q.conj().T, atol=1e-10 * (1 + np.abs(a_t).max()))  # (24)
    e = v / np.linalg.norm(v)
    ratio = np.linalg.norm(a_t) / np.linalg.norm(aT)
    assert ratio == pytest.approx(np.linalg.norm(e @ expU), rel=1e-9)     # (25)
    # (26): exp(U) is block upper triangular with exp(U_L) in the corner, hence the lower bound
    assert np.allclose(expU[:k, :k], scipy.linalg.expm(U[:k, :k]), atol=1e-10 * (1 + np.abs(expU).max()))
    assert np.linalg.norm(e @ expU) >= np.linalg.norm(e[:k] @ expU[:k, :k]) * (1 - 1e-12)


def test_remark_bound_is_attained_at_gamma_equal_2a():
    """F = -c I with c > gamma^2/4: complex pairs whose real parts are exactly (t - T) gamma / 2."""
    a, t, T = 0.5, 0.0, 2.0
    F = -3.0 * np.eye(3)
    assert linear.remark_margin(F, 2 * a, t, T, a) == pytest.approx(0.0, abs=1e-12)
    assert linear.schur_split(F, 2 * a, t, T, a).k == 6  # all on the threshold, counted in U_L


def test_remark_fails_for_gamma_above_2a():
    """The condition gamma <= 2a is needed: with complex pairs both real parts are (t - T) gamma/2."""
    a, gamma, t, T = 0.25, 1.0, 0.0, 2.0
    F = -np.eye(2)   # gamma^2 + 4 lambda = 1 - 4 < 0: complex pairs
    margin = linear.remark_margin(F, gamma, t, T, a)
    assert margin == pytest.approx((t - T) * (gamma / 2 - a), rel=1e-10) and margin < 0
    assert linear.schur_split(F, gamma, t, T, a).k == 0


def test_remark_fails_for_t_after_T():
    """The remark needs t <= T (the backward pass): for t > T, F = 0 has pairs {0, (t - T) gamma}."""
    a, gamma, t, T = 1.0, 0.5, 2.0, 0.0
    F = np.zeros((2, 2))
    margin = linear.remark_margin(F, gamma, t, T, a)
    assert margin == pytest.approx((t - T) * (gamma - a), abs=1e-12) and margin < 0


def test_remark_does_not_bound_every_adjoint():
    """The remark is about the spectrum: an a_T along a left eigenvector of a fast eigenvalue
    (e_L = 0 in eq. 26) decays faster than exp((t - T) a). F = 0, gamma = 2a = 1, t - T = -2:
    a_T = [0, 1] gives a(t) = exp(-2) a_T, below exp((t - T) a) = exp(-1)."""
    a, gamma, t, T = 0.5, 1.0, 0.0, 2.0
    F = np.zeros((1, 1))
    assert linear.remark_margin(F, gamma, t, T, a) >= 0  # the remark's hypothesis holds
    aT = np.array([0.0, 1.0])
    a_t = linear.adjoint_via_expm(F, gamma, t, T, aT)
    assert np.allclose(a_t, np.exp(-2.0) * aT, rtol=1e-13, atol=1e-15)
    assert np.linalg.norm(a_t) < np.exp((t - T) * a) * np.linalg.norm(aT) / 2


# ------------------------------------------------------------------------ validation, figure
def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="A must be a square"):
        linear.B_matrix(np.ones((2, 3)), 0.1)
    with pytest.raises(TypeError, match="gamma must be a number"):
        linear.B_matrix(np.eye(2), "0.1")
    with pytest.raises(ValueError, match="a_T must have shape \\(2n,\\) or \\(B, 2n\\)"):
        linear.adjoint_via_expm(np.eye(2), 0.1, 0.0, 1.0, np.ones(3))
    with pytest.raises(ValueError, match="a must be > 0"):
        linear.remark_margin(np.eye(2), 0.1, 0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="part must be"):
        linear.stiffness_ratio(np.eye(2), "imag")
    with pytest.raises(TypeError, match="integer array"):
        linear.M_matrix(np.eye(2, dtype=int), 0.1, 0.0, 1.0)


def test_plot_eigen_pairs_writes_a_figure(tmp_path):
    A = random_matrix(4, 0)
    fig = linear.plot_eigen_pairs(A, 0.8, 0.0, 2.0, a=0.5, path=tmp_path / "eigs.png")
    assert (tmp_path / "eigs.png").stat().st_size > 1000
    assert len(fig.axes[0].lines) >= 2 * 4
    import matplotlib.pyplot as plt
    plt.close(fig)
    A, _ = spd_matrix(3, 1)
    fig = linear.plot_stiffness_vs_gamma(A, [0.0, 0.5, 1.0], path=tmp_path / "stiff.png")
    assert (tmp_path / "stiff.png").stat().st_size > 1000
    y = fig.axes[0].lines[0].get_ydata()
    assert y[0] == pytest.approx(np.sqrt(linear.stiffness_ratio(A)), rel=1e-9) and y[0] < y[1] < y[2]
    plt.close(fig)
