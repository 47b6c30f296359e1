"""BW neural ODE (manualgrad.ode.node): the field, both adjoints (BW Theorem 1), memory, Lemma 1."""
import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import expm as scipy_expm

from manualgrad import backend, check, testing
from manualgrad.ode import adjoint, node, solvers

TOL = check.TOLERANCES["float64"]
SMOOTH = testing.ODE_HIDDEN  # relu: kinks, FD across them is meaningless


def _flat(g, keys=None):
    """The gradients of g (sorted by name) as one flat host vector."""
    return np.concatenate([backend.to_numpy(g[k]).ravel() for k in (keys or sorted(g))])


# ----------------------------------------------------------------------------- FD checks
@given(prob=testing.node_problems())
def test_discrete_adjoint_matches_finite_differences(prob):
    """Exact gradient of the computed solution, every solver, params and h0 (float64, TOL)."""
    P, h0, kw = prob.params, prob.h0, prob.kwargs
    F, grads, info = prob.loss_and_grad()
    assert list(grads) == list(P)
    f = lambda Q: prob.loss(Q, info=info)  # noqa: E731
    assert abs(float(F) - float(f(P))) <= 1e-14 * max(1.0, abs(float(F)))
    rep = check.gradients(f, P, grads)
    assert rep.max_error < TOL, "\n%s\n%s" % (kw, rep)
    h0c = h0.copy()
    num = check.numerical_gradient(lambda: prob.loss(h0=h0c, info=info), h0c)
    assert check.fd_error(info["grad_h0"], num, F) < TOL
    tab = solvers.SOLVERS[kw["solver"]]
    steps = info["steps_forward"]
    assert info["nvjp_backward"] == tab.prop_stages * steps
    assert info["nfe_backward"] == (tab.prop_stages - 1) * steps
    if not tab.adaptive:
        assert info["nfe_forward"] == tab.nfe_per_step * steps


def test_the_fd_check_catches_a_wrong_vjp():
    """A vjp that is 0.05% off in theta1 fails the same check (the test can fail)."""
    class Off(node.NODEField):
        def vjp(self, t, z, theta, a):
            az, g = super().vjp(t, z, theta, a)
            g["theta1"] = g["theta1"] * 1.0005
            return az, g
    P = node.init_params(2, 3, seed=0)
    rng = np.random.default_rng(0)
    h0, y = rng.standard_normal((2, 2)), rng.standard_normal((2, 2))
    F, g, _ = node.loss_and_grad(P, h0, y, solver="rk4", steps=3, field=Off())
    rep = check.gradients(lambda Q: node.loss(Q, h0, y, solver="rk4", steps=3), P, g)
    assert rep.errors["theta1"] > TOL and rep.errors["theta2"] < TOL


@settings(max_examples=25)
@given(n=st.integers(1, 4), H=st.integers(1, 5), B=st.integers(1, 3), seed=st.integers(0, 10 ** 6),
       act=st.sampled_from(SMOOTH), time_input=st.booleans(), t=st.floats(-2, 2))
def test_field_vjp_is_the_transpose_of_jvp_and_differentiates_theta(n, H, B, seed, act,
                                                                     time_input, t):
    """<a, J v> = <J^T a, v> (dot-product test) and the parameter vjp against FD of <a, f>."""
    rng = np.random.default_rng(seed)
    fld = node.NODEField(act, time_input)
    P = node.init_params(n, H, seed=seed, time_input=time_input, bias_scale=0.5)
    z, a, v = (backend.asarray(rng.standard_normal((B, n))) for _ in range(3))
    az, g = fld.vjp(t, z, P, a)
    lhs, rhs = float((a * fld.jvp(t, z, P, v)).sum()), float((az * v).sum())
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))
    # the state part against central differences of <a, f(z + e v)>
    num = check.directional_derivative(lambda Z: (a * fld.f(t, Z["z"], P)).sum(), {"z": z},
                                       {"z": v})
    assert abs(num - lhs) <= 1e-8 * max(1.0, abs(lhs))
    err, _, _ = check.dot_product_test(lambda Q: (a * fld.f(t, z, Q)).sum(), P, g, seed=seed)
    assert err < TOL


# ----------------------------------------------------------------------------- exact zeros
@pytest.mark.parametrize("method", ["discrete", "continuous"])
def test_unused_parameters_get_exact_zeros(method):
    """time_input=False: f ignores theta1_t, whose gradient is exactly 0 (not omitted); a field
    without b1/b2 has no such keys; the readout is differentiated."""
    rng = np.random.default_rng(3)
    P = node.init_params(3, 4, seed=3, time_input=True, l=2, bias_scale=0.5)
    h0, y = rng.standard_normal((2, 3)), rng.standard_normal((2, 2))
    F, g, info = node.loss_and_grad(P, h0, y, solver="rk4", steps=3, time_input=False,
                                    method=method)
    assert set(g) == set(P) and np.all(g["theta1_t"] == 0.0)
    assert all(np.abs(g[k]).max() > 0 for k in g if k != "theta1_t")
    # and FD agrees that F does not depend on theta1_t
    f = lambda Q: node.loss(Q, h0, y, solver="rk4", steps=3, time_input=False)  # noqa: E731
    num = check.numerical_gradient(lambda: f(P), P["theta1_t"])  # 0 up to the stencil's round-off
    assert np.abs(num).max() < check.fd_atol(F)
    Q = {k: v for k, v in P.items() if k not in ("b1", "b2", "theta1_t")}
    F2, g2, _ = node.loss_and_grad(Q, h0, y, solver="rk4", steps=3, method=method)
    assert set(g2) == set(Q)
    # the LinearField with fixed A: every theta entry is unused
    fld = node.LinearField(np.eye(3))
    sol = solvers.odeint(fld, h0, {"c": np.ones(2)}, 0, 1, "rk4", steps=2)
    _, gl = adjoint.discrete_adjoint(fld, sol, {"c": np.ones(2)}, h0)
    assert np.all(gl["c"] == 0.0)


def test_linear_field_parameter_gradient():
    rng = np.random.default_rng(0)
    A = 0.5 * rng.standard_normal((3, 3))
    z0, a1 = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    a1 = backend.asarray(a1)  # the closure below multiplies it with solutions
    fld = node.LinearField()
    for s, kw in (("rk4", dict(steps=4)), ("dopri5", {})):
        sol = solvers.odeint(fld, z0, {"A": A}, 0, 1, s, **kw)
        a0, g = adjoint.discrete_adjoint(fld, sol, {"A": A}, a1)
        f = lambda Q: (a1 * solvers.odeint_grid(fld, z0, Q, sol.ts, s).z1).sum()  # noqa: E731
        assert check.gradients(f, {"A": A}, g).max_error < TOL


# ----------------------------------------------------------------------------- continuous adjoint
def _smooth_problem():
    rng = np.random.default_rng(0)
    P = node.init_params(3, 5, seed=2, l=2, bias_scale=0.3)
    return P, rng.standard_normal((4, 3)), rng.standard_normal((4, 2))


@pytest.mark.parametrize("solver, steps", [("euler", (16, 32, 64)), ("midpoint", (8, 16, 32)),
                                           ("rk4", (4, 8, 16))])
def test_continuous_adjoint_differs_from_discrete_at_the_solvers_order(solver, steps):
    """||g_cont(h) - g_disc(h)|| / ||g_disc|| ~ C h^p: observed order within 0.3 of p."""
    P, h0, y = _smooth_problem()
    d = []
    for N in steps:
        _, gd, idd = node.loss_and_grad(P, h0, y, solver=solver, steps=N)
        _, gc, idc = node.loss_and_grad(P, h0, y, solver=solver, steps=N, method="continuous")
        d.append(np.linalg.norm(_flat(gc) - _flat(gd)) / np.linalg.norm(_flat(gd)))
        assert check.rel_error(idc["grad_h0"], idd["grad_h0"]) < 10 * d[-1] + 1e-12
        # NFE: every backward evaluation is one f and one vjp, s per step
        s = solvers.SOLVERS[solver].nfe_per_step
        assert idc["nfe_backward"] == idc["nvjp_backward"] == s * N
        assert idc["nfe_forward"] == idd["nfe_forward"] == s * N
    orders = np.log2(np.array(d[:-1]) / np.array(d[1:]))
    p = solvers.SOLVERS[solver].order
    assert np.all(np.abs(orders - p) < 0.3), (d, orders)


def test_continuous_adjoint_with_dopri5_approaches_the_exact_gradient():
    """Tight dopri5 forward and backward vs the discrete RK4 gradient on a fine grid."""
    P, h0, y = _smooth_problem()
    _, gref, iref = node.loss_and_grad(P, h0, y, solver="rk4", steps=200)
    _, gc, ic = node.loss_and_grad(P, h0, y, solver="dopri5", rtol=1e-10, atol=1e-12,
                                   method="continuous")
    assert check.rel_error(_flat(gc), _flat(gref)) < 1e-8
    assert check.rel_error(ic["grad_h0"], iref["grad_h0"]) < 1e-8
    assert ic["nfe_backward"] == ic["nvjp_backward"] > 0
    # continuous adjoint with a fixed-step backward solve after an adaptive forward solve
    _, gm, _ = node.loss_and_grad(P, h0, y, solver="dopri5", rtol=1e-10, atol=1e-12,
                                  method="continuous", adjoint_solver="rk4", adjoint_steps=100)
    assert check.rel_error(_flat(gm), _flat(gref)) < 1e-7


def test_continuous_adjoint_reconstructs_h0_and_records_the_adjoint():
    P, h0, y = _smooth_problem()
    fld = node.NODEField()
    theta = {k: v for k, v in P.items() if k not in ("W_out", "b_out")}
    sol = solvers.odeint(fld, h0, theta, 0.0, 1.0, "rk4", steps=20)
    a1 = np.random.default_rng(1).standard_normal(h0.shape)
    res = adjoint.continuous_adjoint(fld, sol.z1, theta, a1, 0.0, 1.0, "rk4", steps=20,
                                     record=True)
    assert np.abs(backend.to_numpy(res.z0) - h0).max() < 1e-6
    assert res.ts[0] == 1.0 and res.ts[-1] == 0.0 and len(res.as_) == 21
    assert np.array_equal(backend.to_numpy(res.as_[0]), a1)
    assert np.array_equal(res.as_[-1], res.a0)
    assert all(np.abs(z - zf).max() < 1e-6 for z, zf in zip(res.zs, sol.zs[::-1]))
    assert adjoint.continuous_adjoint(fld, sol.z1, theta, a1, 0, 1, "rk4", steps=20).as_ is None


def test_continuous_adjoint_cannot_reconstruct_h_through_strong_contraction():
    """The price of storing nothing: h is re-integrated backward, and a direction that the forward
    flow contracted by e^-40 is lost to round-off (1e-16 e^40 ~ 1e1). f = A h, A = Q diag(-lam, 0)
    Q^T: at lam = 5 the continuous gradient dL/dA matches the discrete one, at lam = 40 it does not
    (the adjoint a itself, which does not depend on h for a linear field, stays right)."""
    c, s = math.cos(0.6), math.sin(0.6)
    Q = np.array([[c, -s], [s, c]])
    z0, aT = np.array([[1.0, 1.0]]), np.array([[1.0, 0.5]])
    fld = node.LinearField()
    gaps = {}
    for lam in (5.0, 40.0):
        th = {"A": Q @ np.diag([-lam, 0.0]) @ Q.T}
        sol = solvers.odeint(fld, z0, th, 0.0, 1.0, "rk4", steps=400)
        res = adjoint.continuous_adjoint(fld, sol.z1, th, aT, 0.0, 1.0, "rk4", steps=400)
        a0, g = adjoint.discrete_adjoint(fld, sol, th, aT)
        assert check.rel_error(res.a0, a0) < 1e-12
        gaps[lam] = (np.abs(backend.to_numpy(res.z0) - z0).max(),
                     check.rel_error(res.grads["A"], g["A"]))
    assert gaps[5.0][0] < 1e-9 and gaps[5.0][1] < 1e-9, gaps
    assert gaps[40.0][0] > 0.1 and gaps[40.0][1] > 1e-2, gaps


# ----------------------------------------------------------------------------- memory
def _peak_bytes(fn):
    fn()  # warm caches (imports, first-call allocations)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.only_backend("numpy", "strict", reason="tracemalloc traces host allocations only; "
                          "CuPy's device arrays are invisible to it")
def test_continuous_adjoint_memory_is_flat_and_discrete_grows_linearly():
    """tracemalloc peak of one loss_and_grad without a workspace: steps x8 leaves the continuous
    adjoint's peak roughly flat, while the discrete adjoint's grows by about one state per extra
    step. With a workspace the same arrays stay there between calls: the discrete adjoint's
    record grows by exactly one state per step, the continuous adjoint's arrays not at all."""
    rng = np.random.default_rng(0)
    B, n, H = 128, 16, 16
    P = node.init_params(n, H, seed=0)
    h0, y = rng.standard_normal((B, n)), rng.standard_normal((B, n))
    state = B * n * 8

    def peak(method, steps):
        return _peak_bytes(lambda: node.loss_and_grad(P, h0, y, solver="rk4", steps=steps,
                                                      method=method, workspace=False))
    c16, c128 = peak("continuous", 16), peak("continuous", 128)
    d16, d128 = peak("discrete", 16), peak("discrete", 128)
    assert c128 < 1.25 * c16, (c16, c128)
    assert 0.8 * 112 * state < d128 - d16 < 1.5 * 112 * state, (d16, d128, state)
    assert d128 > 3 * c128

    def held(method, steps):
        ws = backend.Workspace()
        node.loss_and_grad(P, h0, y, solver="rk4", steps=steps, method=method, workspace=ws)
        return ws.nbytes
    assert held("continuous", 128) == held("continuous", 16)
    assert held("discrete", 128) - held("discrete", 16) == 112 * state


# ----------------------------------------------------------------------------- BW Lemma 1
def test_expm_matches_scipy():
    rng = np.random.default_rng(0)
    for scale, tol in ((0.01, 1e-14), (1.0, 1e-13), (5.0, 1e-11)):  # scaling and squaring loses
        M = scale * rng.standard_normal((4, 4))  # ~ ||M|| eps (||M||_1 ~ 20 for the last)
        assert check.rel_error(node.expm(M), scipy_expm(M)) < tol
    assert np.array_equal(backend.to_numpy(node.expm(np.zeros((2, 2)))), np.eye(2))


def test_lemma1_adjoint_of_a_linear_field_is_aT_expm_A_T_minus_t():
    """BW Lemma 1, f(h) = A h: a(t) = a(T) expm(A (T - t)) (row a; the transpose expm(A^T ..)
    belongs to the column convention and is wrong here), on the continuous adjoint's trajectory."""
    rng = np.random.default_rng(1)
    n, T = 4, 2.0
    A = 0.7 * rng.standard_normal((n, n))
    aT = rng.standard_normal((3, n))
    fld = node.LinearField(A)
    res = adjoint.continuous_adjoint(fld, rng.standard_normal((3, n)), {}, aT, 0.0, T, "rk4",
                                     steps=200, record=True)
    want = np.stack([aT @ scipy_expm(A * (T - t)) for t in res.ts])
    assert check.rel_error(np.stack(res.as_), want) < 1e-9
    assert check.rel_error(node.lemma1_adjoint(A, aT, res.ts, T), want) < 1e-12
    wrong = np.stack([aT @ scipy_expm(A.T * (T - t)) for t in res.ts])
    assert check.rel_error(np.stack(res.as_), wrong) > 1e-2
    # the exact discrete adjoint of Euler is a(T) (I + hA)^N, which tends to the same limit
    sol = solvers.odeint(fld, np.zeros((3, n)), {}, 0.0, T, "euler", steps=50)
    a0, _ = adjoint.discrete_adjoint(fld, sol, {}, aT)
    assert check.rel_error(a0, aT @ np.linalg.matrix_power(np.eye(n) + (T / 50) * A, 50)) < 1e-13
    assert node.lemma1_adjoint(A, aT[0], 0.5, T).shape == (n,)


def test_lemma1_the_adjoint_decays_going_back_in_time():
    """A = -lam I + S (S skew): ||a(t)|| = ||a(T)|| exp(-lam (T - t)) exactly: the vanishing
    adjoint of BW's remark; with lam < 0 it grows instead (exploding)."""
    rng = np.random.default_rng(2)
    S = rng.standard_normal((3, 3))
    S = S - S.T
    aT = rng.standard_normal((2, 3))
    ts = np.linspace(0.0, 5.0, 11)
    for lam in (1.0, -0.3):
        a = node.lemma1_adjoint(-lam * np.eye(3) + S, aT, ts, 5.0)
        norms = np.linalg.norm(a, axis=-1)
        want = np.linalg.norm(aT, axis=-1)[None, :] * np.exp(-lam * (5.0 - ts))[:, None]
        assert check.rel_error(norms, want) < 1e-12
    assert np.linalg.norm(node.lemma1_adjoint(-np.eye(3) + S, aT, 0.0, 5.0)) < 0.01 * \
        np.linalg.norm(aT)


def _adjoint_vs_lemma1_formula(n, seed, activation="tanh"):
    """Relative gap between the true adjoint a(0) and BW's a(T) exp(int_0^T J(h(s)) ds)."""
    rng = np.random.default_rng(seed)
    P = node.init_params(n, 6, seed=seed, scale=1.5, bias_scale=0.5)
    fld = node.NODEField(activation)
    h0, aT = rng.standard_normal((1, n)), rng.standard_normal((1, n))
    N, T = 400, 1.5
    sol = solvers.odeint(fld, h0, P, 0.0, T, "rk4", steps=N)
    a0, _ = adjoint.discrete_adjoint(fld, sol, P, aT)
    eye = backend.asarray(np.eye(n))
    J = [np.stack([backend.to_numpy(fld.jvp(t, z, P, eye[i:i + 1])[0]) for i in range(n)], axis=1)
         for t, z in zip(sol.ts, sol.zs)]  # J[k] = df/dh at t_k, (n, n), on the host for expm
    w = np.full(N + 1, T / N)
    w[0] = w[-1] = T / (2 * N)
    intJ = sum(wk * Jk for wk, Jk in zip(w, J))  # trapezoid rule, error O(N^-2)
    formula = aT @ scipy_expm(intJ)  # row a: a(0) = a(T) exp(int_0^T J ds), BW's formula
    return check.rel_error(a0, formula)


def test_lemma1_formula_holds_for_scalar_states_but_not_in_general():
    """BW Lemma 1 writes dh_T/dh_t = exp(-int_T^t df/dh ds). That is exact when the Jacobians
    commute (scalar state, linear f); for a nonlinear field with n > 1 it is not (the true factor
    is a time-ordered exponential): see docs/ode.md, Discrepancies."""
    assert _adjoint_vs_lemma1_formula(1, 0) < 1e-5
    assert _adjoint_vs_lemma1_formula(3, 0, "identity") < 1e-6  # linear f: constant J, exact
    assert _adjoint_vs_lemma1_formula(3, 0) > 0.1


# ----------------------------------------------------------------------------- bad input
def test_bad_parameters_and_arguments():
    rng = np.random.default_rng(0)
    P = node.init_params(3, 4, seed=0, l=2)
    h0, y = rng.standard_normal((2, 3)), rng.standard_normal((2, 2))
    bad = dict(P, theta2=np.ones((3, 5)))
    with pytest.raises(ValueError,
                       match=r"params\['theta2'\] has shape \(3, 5\), expected \(3, 4\)"):
        node.loss_and_grad(bad, h0, y, steps=2)
    with pytest.raises(ValueError, match="its 3 columns must equal the state size n = 2"):
        node.loss_and_grad(P, h0[:, :2], y, steps=2)
    with pytest.raises(ValueError, match="lack theta2"):
        node.loss_and_grad({"theta1": P["theta1"]}, h0, y, steps=2)
    with pytest.raises(ValueError, match="time_input=True needs theta1_t"):
        node.loss_and_grad(P, h0, y, steps=2, time_input=True)
    with pytest.raises(ValueError, match=r"params\['W_out'\] has shape \(2, 4\)"):
        node.loss_and_grad(dict(P, W_out=np.ones((2, 4))), h0, y, steps=2)
    with pytest.raises(ValueError, match=r"b_out'\] has shape \(3,\), expected \(l,\) = \(2,\)"):
        node.loss_and_grad(dict(P, b_out=np.ones(3)), h0, y, steps=2)
    with pytest.raises(ValueError, match=r"h0 must be a 2-d array \(B, n\)"):
        node.loss_and_grad(P, h0[0], y, steps=2)
    with pytest.raises(ValueError, match="method must be"):
        node.loss_and_grad(P, h0, y, steps=2, method="adjoint")
    with pytest.raises(ValueError, match=r"y: expected shape \(2, 2\)"):
        node.loss_and_grad(P, h0, y[:, :1], steps=2)
    with pytest.raises(TypeError, match="floating-point"):
        node.loss_and_grad(dict(P, b1=np.ones(4, dtype=int)), h0, y, steps=2)
    with pytest.raises(ValueError, match="unknown activation 'tanhh'"):
        node.NODEField("tanhh")
    with pytest.raises(ValueError, match="adjoint_steps"):
        node.loss_and_grad(P, h0, y, solver="dopri5", method="continuous", adjoint_solver="rk4")
    with pytest.raises(ValueError, match="aT must have shape"):
        node.lemma1_adjoint(np.eye(3), np.ones((2, 2)), 0.0, 1.0)
    with pytest.raises(ValueError, match="M must be square"):
        node.expm(np.ones((2, 3)))
