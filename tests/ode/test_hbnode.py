"""The heavy-ball neural ODE (BW HBNODE eqs. 12-13), its adjoint (BW Theorem 2, sign fixed), the
gamma gradient, gradients by the discrete and continuous adjoints, and BW Theorem 3 on computed
adjoint trajectories of a nonlinear field. Derivations: docs/hbnode.md.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manualgrad import backend, check, testing
from manualgrad.ode import adjoint, hbnode, node, solvers

TOL = check.TOLERANCES["float64"]
SEEDS = testing.seeds()
SOLVER_KW = {"euler": dict(steps=7), "midpoint": dict(steps=5), "rk4": dict(steps=4),
             "dopri5": dict(rtol=1e-4, atol=1e-6)}
ACTS = st.sampled_from(testing.ODE_HIDDEN)


def problem(n, H, B, seed, learn_gamma, gamma0=0.4, l=None, bias_scale=0.5):
    P = hbnode.init_params(n, H, seed=seed, learn_gamma=learn_gamma, gamma0=gamma0,
                           bias_scale=bias_scale, l=l)
    rng = np.random.default_rng(seed + 11)
    h0, m0 = rng.standard_normal((B, n)), rng.standard_normal((B, n))
    y = rng.standard_normal((B, n if l is None else l))
    return P, h0, m0, y


def fd_check(P, h0, m0, y, grads, info, solver, **kw):
    """Central differences of hbnode.loss in every parameter and in h0, m0 (dopri5: its grid)."""
    if solver == "dopri5":
        kw = dict(kw, grid=info["ts"])
        kw.pop("rtol", None), kw.pop("atol", None)
    names = list(P)

    def f(Q):
        return hbnode.loss({k: Q[k] for k in names}, Q["h0"], Q["m0"], y, solver=solver, **kw)

    Q = dict(P, h0=h0, m0=m0)
    G = dict(grads, h0=info["grad_h0"], m0=info["grad_m0"])
    return check.gradients(f, Q, G)


# ------------------------------------------------------------------------ BW HBNODE eqs. 12-13
@settings(max_examples=20)
@given(n=st.integers(1, 3), H=st.integers(1, 4), seed=SEEDS, gamma=st.floats(0.0, 2.0), act=ACTS)
def test_the_first_order_system_solves_the_second_order_equation_12(n, H, seed, gamma, act):
    """h'' + gamma h' = f(h) by central differences of a fine rk4 trajectory of eq. (13)."""
    P, h0, m0, _ = problem(n, H, 2, seed, False)
    field = hbnode.HBNODEField(act, gamma=gamma)
    errs = []
    for N in (50, 100):
        sol = solvers.odeint(field, np.hstack([h0, m0]), P, 0.0, 1.0, solver="rk4", steps=N)
        hs = np.stack([z[:, :n] for z in sol.zs])
        dt = 1.0 / N
        d2 = (hs[2:] - 2 * hs[1:-1] + hs[:-2]) / dt ** 2
        d1 = (hs[2:] - hs[:-2]) / (2 * dt)
        f = np.stack([field.f_h(0.0, h, P) for h in hs[1:-1]])
        errs.append(np.abs(d2 + gamma * d1 - f).max())
        # and m = h' (the first equation of 13)
        ms = np.stack([z[:, n:] for z in sol.zs])
        assert np.abs(d1 - ms[1:-1]).max() < 1e-2 * (1 + np.abs(ms).max())
    scale = 1 + np.abs(hs).max() + np.abs(f).max()
    assert errs[1] < 2e-3 * scale
    assert errs[1] <= errs[0] / 3 + 1e-9 * scale  # O(dt^2)


# ------------------------------------------------------------------------ the field's derivatives
@given(n=st.integers(1, 4), H=st.integers(1, 5), B=st.integers(1, 3), seed=SEEDS,
       learn=st.booleans(), gamma=st.floats(0.0, 3.0), act=ACTS)
def test_vjp_jvp_dot_product_and_jvp_against_finite_differences(n, H, B, seed, learn, gamma, act):
    field = hbnode.HBNODEField(act, learn_gamma=learn, gamma=gamma)
    P = hbnode.init_params(n, H, seed=seed, learn_gamma=learn, gamma0=0.3, bias_scale=0.5)
    rng = np.random.default_rng(seed + 1)
    z, a, v = (backend.asarray(rng.standard_normal((B, 2 * n))) for _ in range(3))
    az, _ = field.vjp(0.0, z, P, a)
    Jv = field.jvp(0.0, z, P, v)
    lhs, rhs = float((az * v).sum()), float((a * Jv).sum())
    assert abs(lhs - rhs) <= 1e-12 * (1 + abs(lhs) + np.abs(az).max() * np.abs(v).sum())
    # jvp against a 4-point central difference of f along v
    e = 1e-3
    fd = (field.f(0, z - 2 * e * v, P) - 8 * field.f(0, z - e * v, P)
          + 8 * field.f(0, z + e * v, P) - field.f(0, z + 2 * e * v, P)) / (12 * e)
    assert check.rel_error(Jv, fd, 1e-8) < TOL


@given(n=st.integers(1, 4), H=st.integers(1, 5), B=st.integers(1, 3), seed=SEEDS,
       learn=st.booleans(), gamma=st.floats(0.0, 3.0), act=ACTS)
def test_vjp_parameter_gradients_against_finite_differences(n, H, B, seed, learn, gamma, act):
    """sum_b a . df/dtheta (gamma_raw included) by central differences of <a, f>."""
    field = hbnode.HBNODEField(act, learn_gamma=learn, gamma=gamma)
    P = hbnode.init_params(n, H, seed=seed, learn_gamma=learn, gamma0=0.3, bias_scale=0.5)
    P["unused"] = np.ones((2, 2))
    rng = np.random.default_rng(seed + 2)
    z, a = (backend.asarray(rng.standard_normal((B, 2 * n))) for _ in range(2))
    _, g = field.vjp(0.0, z, P, a)
    assert set(g) == set(P)
    assert not g["unused"].any()
    rep = check.gradients(lambda Q: (a * field.f(0.0, z, Q)).sum(), P, g)
    assert rep.max_error < TOL, rep


@given(n=st.integers(1, 4), H=st.integers(1, 5), B=st.integers(1, 3), seed=SEEDS,
       learn=st.booleans(), gamma=st.floats(0.0, 3.0), act=ACTS)
def test_theorem2_adjoint_rhs_is_minus_the_vjp(n, H, B, seed, learn, gamma, act):
    """da/dt = -a dF/dz: adjoint_rhs (coded from BW Theorem 2 with the sign fixed) == -vjp."""
    field = hbnode.HBNODEField(act, learn_gamma=learn, gamma=gamma)
    P = hbnode.init_params(n, H, seed=seed, learn_gamma=learn, gamma0=0.7, bias_scale=0.5)
    rng = np.random.default_rng(seed + 3)
    z, a = (backend.asarray(rng.standard_normal((B, 2 * n))) for _ in range(2))
    h, m = hbnode.split(z)
    a_h, a_m = hbnode.split(a)
    da_h, da_m = field.adjoint_rhs(0.0, h, m, a_h, a_m, P)
    az, g = field.vjp(0.0, z, P, a)
    assert np.allclose(np.hstack([da_h, da_m]), -az, rtol=1e-13, atol=1e-13)
    # the module function with the gamma in hand, and da_h = -a_m J with the explicit Jacobian
    g_used = field.gamma_of(P)
    da_h2, da_m2 = hbnode.adjoint_rhs(0.0, h, m, a_h, a_m, P, act, None if learn else gamma)
    assert np.array_equal(da_h, da_h2) and np.array_equal(da_m, da_m2)
    J = field.jacobian(0.0, h, P)
    assert np.allclose(da_h, -np.einsum("bi,bij->bj", a_m, J), rtol=1e-12, atol=1e-12)
    assert np.allclose(da_m, -a_h + g_used * a_m, rtol=1e-14, atol=1e-14)
    # the gamma term: d a_gamma/dt = a_m . m, and vjp's gamma_raw entry is -that * gamma (1-gamma)
    if learn:
        gr = hbnode.gamma_rhs(0.0, h, m, a_h, a_m)
        assert np.allclose(g["gamma_raw"], -gr * g_used * (1 - g_used), rtol=1e-13, atol=1e-15)


class PrintedTheorem2Field(hbnode.HBNODEField):
    """BW Theorem 2 as printed: da_h/dt = +a_m df/dh (the minus sign missing)."""

    def vjp(self, t, z, theta, a):
        az, g = super().vjp(t, z, theta, a)
        n = z.shape[1] // 2
        az = az.copy()
        az[:, :n] *= -1.0
        return az, g


def test_the_printed_theorem2_gives_wrong_gradients_and_the_fixed_one_right():
    n, H, B = 2, 4, 2
    P, h0, m0, y = problem(n, H, B, seed=5, learn_gamma=True)
    F, g, info = hbnode.loss_and_grad(P, h0, m0, y, solver="rk4", steps=40)
    assert fd_check(P, h0, m0, y, g, info, "rk4", steps=40).max_error < TOL
    out = {}
    for cls in (hbnode.HBNODEField, PrintedTheorem2Field):
        field = cls("tanh", learn_gamma=True)
        _, gc, ic = hbnode.loss_and_grad(P, h0, m0, y, solver="rk4", steps=40,
                                         method="continuous", field=field)
        out[cls.__name__] = max([check.rel_error(gc[k], g[k]) for k in g]
                                + [check.rel_error(ic["grad_z0"], info["grad_z0"])])
    assert out["HBNODEField"] < 1e-5
    assert out["PrintedTheorem2Field"] > 0.05


# ------------------------------------------------------------------------ gradients vs FD
@settings(max_examples=60)
@given(n=st.integers(1, 3), H=st.integers(1, 3), B=st.integers(1, 2), seed=SEEDS,
       solver=st.sampled_from(sorted(SOLVER_KW)), learn=st.booleans(),
       gamma=st.floats(0.0, 2.0), gamma0=st.floats(0.05, 0.95), readout=st.booleans(),
       act=st.sampled_from(["tanh", "sigmoid", "softplus"]))
def test_discrete_adjoint_matches_finite_differences(n, H, B, seed, solver, learn, gamma, gamma0,
                                                     readout, act):
    """theta, gamma_raw, h0 and m0 to relative error < TOL (float64)."""
    P, h0, m0, y = problem(n, H, B, seed, learn, gamma0, l=2 if readout else None)
    kw = dict(SOLVER_KW[solver], t1=1.2, gamma=gamma, activation=act)
    F, g, info = hbnode.loss_and_grad(P, h0, m0, y, solver=solver, **kw)
    assert set(g) == set(P)
    assert info["grad_h0"].shape == h0.shape and info["grad_m0"].shape == m0.shape
    rep = fd_check(P, h0, m0, y, g, info, solver, **kw)
    assert rep.max_error < TOL, rep


@pytest.mark.parametrize("method", ["discrete", "continuous"])
def test_unused_parameters_get_exact_zeros(method):
    """gamma_raw with a fixed gamma, and an unrelated key: exactly zero gradients."""
    P, h0, m0, y = problem(2, 3, 2, seed=1, learn_gamma=True, l=1)
    P["unused"] = np.full((3,), 0.7)
    field = hbnode.HBNODEField("tanh", learn_gamma=False, gamma=0.6)
    _, g, _ = hbnode.loss_and_grad(P, h0, m0, y, solver="rk4", steps=5, field=field,
                                   method=method)
    assert list(g) == list(P)
    assert g["gamma_raw"].shape == (1,) and not g["gamma_raw"].any()
    assert not g["unused"].any()
    assert all(np.abs(g[k]).max() > 0 for k in ("theta1", "b1", "theta2", "b2", "W_out", "b_out"))
    # learned gamma: the same key is used and gets its gradient
    _, g2, _ = hbnode.loss_and_grad(P, h0, m0, y, solver="rk4", steps=5, method=method)
    assert abs(float(g2["gamma_raw"][0])) > 0 and not g2["unused"].any()


def test_gamma_gradient_is_minus_the_integral_of_a_m_dot_m():
    """dL/dgamma = -int_{t0}^{T} a_m . m dt (trapezoid over the recorded continuous adjoint),
    against central differences in the fixed gamma, and dL/dgamma_raw = that * gamma (1 - gamma)."""
    n, H, B = 2, 3, 2
    P, h0, m0, y = problem(n, H, B, seed=2, learn_gamma=False)
    gamma, N, t1 = 0.35, 400, 1.5
    field = hbnode.HBNODEField("tanh", gamma=gamma)
    sol = solvers.odeint(field, np.hstack([h0, m0]), P, 0.0, t1, solver="rk4", steps=N)
    _, _, info = hbnode.loss_and_grad(P, h0, m0, y, solver="rk4", steps=N, t1=t1, gamma=gamma)
    res = adjoint.continuous_adjoint(field, sol.z1, P, info["aT"], 0.0, t1, solver="rk4",
                                     steps=N, record=True)
    vals = [float(hbnode.gamma_rhs(t, z[:, :n], z[:, n:], a[:, :n], a[:, n:]))
            for t, z, a in zip(res.ts, res.zs, res.as_)]
    ts = np.asarray(res.ts)  # from t1 down to t0
    integral = float(np.sum(0.5 * (np.asarray(vals[1:]) + vals[:-1]) * np.diff(ts)))  # int_t1^t0
    dL_dgamma = integral  # a_gamma(t0) = -int_{t0}^{t1} a_m . m dt = int_{t1}^{t0} a_m . m dt
    e = 1e-4
    fd = float((-hbnode.loss(P, h0, m0, y, solver="rk4", steps=N, t1=t1, gamma=gamma + 2 * e)
                + 8 * hbnode.loss(P, h0, m0, y, solver="rk4", steps=N, t1=t1, gamma=gamma + e)
                - 8 * hbnode.loss(P, h0, m0, y, solver="rk4", steps=N, t1=t1, gamma=gamma - e)
                + hbnode.loss(P, h0, m0, y, solver="rk4", steps=N, t1=t1, gamma=gamma - 2 * e))
               / (12 * e))
    assert abs(dL_dgamma - fd) < 1e-5 * abs(fd) and abs(fd) > 1e-3
    # the learned parameterisation
    g0 = gamma
    P2 = dict(P, gamma_raw=np.array([np.log(g0 / (1 - g0))]))
    _, g2, i2 = hbnode.loss_and_grad(P2, h0, m0, y, solver="rk4", steps=N, t1=t1)
    assert float(g2["gamma_raw"][0]) == pytest.approx(fd * g0 * (1 - g0), rel=1e-8)
    assert i2["grad_gamma"] == pytest.approx(fd, rel=1e-8)


# ------------------------------------------------------------------------ continuous vs discrete
@settings(max_examples=20)
@given(n=st.integers(1, 3), H=st.integers(1, 4), seed=SEEDS, learn=st.booleans(),
       gamma=st.floats(0.0, 2.0))
def test_continuous_adjoint_converges_to_the_discrete_one(n, H, seed, learn, gamma):
    """Relative gap (all gradients and dL/dz0) vs steps: rk4 ~16x per halving (tested: >= 8x
    on the last halving, >= 64x over two), euler ~2x (tested: >= 1.6x per halving).

    rk4 starts at 16 steps: at 8 (h = 1/8) a damping gamma near 2 can leave the gap outside the
    asymptotic regime (hypothesis: n = H = 1, gamma = 2, seed 171 gave 4.9x, then 10.6x, then
    13.7x per halving: 52x over the first two); from 16 steps, 300 random cases all passed."""
    P, h0, m0, y = problem(n, H, 2, seed, learn, l=2)
    for solver, Ns in (("rk4", (16, 32, 64)), ("euler", (32, 64, 128))):
        gaps = []
        for N in Ns:
            kw = dict(solver=solver, steps=N, gamma=gamma, t1=1.0)
            _, gd, idd = hbnode.loss_and_grad(P, h0, m0, y, **kw)
            _, gc, ic = hbnode.loss_and_grad(P, h0, m0, y, method="continuous", **kw)
            ref = np.concatenate([np.ravel(gd[k]) for k in gd] + [np.ravel(idd["grad_z0"])])
            got = np.concatenate([np.ravel(gc[k]) for k in gc] + [np.ravel(ic["grad_z0"])])
            gaps.append(np.abs(got - ref).max() / np.abs(ref).max())
        floor = 1e-13
        if solver == "rk4":
            assert gaps[2] <= max(gaps[1] / 8, floor) and gaps[2] <= max(gaps[0] / 64, floor), gaps
            assert gaps[2] < 1e-6, gaps
        else:
            assert gaps[1] <= gaps[0] / 1.6 and gaps[2] <= gaps[1] / 1.6, gaps
            assert gaps[2] < 0.05, gaps


def test_continuous_adjoint_with_dopri5_matches_to_its_tolerance():
    P, h0, m0, y = problem(2, 3, 2, seed=4, learn_gamma=True, l=1)
    _, gd, idd = hbnode.loss_and_grad(P, h0, m0, y, solver="rk4", steps=200)
    errs = []
    for tol in (1e-5, 1e-8):
        _, gc, ic = hbnode.loss_and_grad(P, h0, m0, y, solver="dopri5", rtol=tol, atol=tol * 1e-2,
                                         method="continuous")
        errs.append(max(check.rel_error(gc[k], gd[k]) for k in gd))
    assert errs[1] < 1e-6 and errs[1] < errs[0]


# ------------------------------------------------------------------------ BW Theorem 3, nonlinear f
@settings(max_examples=20)
@given(n=st.integers(1, 3), H=st.integers(2, 4), seed=SEEDS, gamma=st.floats(0.0, 1.5))
def test_theorem3_holds_for_a_m_and_not_for_a_h_on_the_computed_adjoint(n, H, seed, gamma):
    """On A's recorded continuous adjoint (rk4) of a tanh field, by central differences in time:
    a_m'' - gamma a_m' - a_m J -> 0 at O(dt^2), while a_h's residual tends to -a_m dJ/dt:
    the residual "h" + a_m dJ/dt ("h_corrected") -> 0 at O(dt^2)."""
    field = hbnode.HBNODEField("tanh", gamma=gamma)
    P = hbnode.init_params(n, H, seed=seed, scale=1.2, bias_scale=0.5)
    rng = np.random.default_rng(seed + 9)
    z1, aT = rng.standard_normal((2, 2 * n)), rng.standard_normal((2, 2 * n))
    worst, a_max, rs = [], 0.0, []
    for N in (160, 320, 640):  # at 80 steps some cases are still pre-asymptotic (ratio 2.8)
        res = adjoint.continuous_adjoint(field, z1, P, aT, 0.0, 1.0, solver="rk4", steps=N,
                                         record=True)
        r = field.theorem3_residuals(res.ts, res.zs, res.as_, P)
        rs.append(r)
        worst.append([np.abs(r["m"]).max(), np.abs(r["h_corrected"]).max(), np.abs(r["h"]).max()])
        a_max = max(float(np.abs(a).max()) for a in res.as_)
    worst = np.array(worst)
    floor = 1e-8 * a_max  # round-off of second differences: ~ eps |a| / dt^2
    for j in (0, 1):  # a_m and corrected a_h: O(dt^2)
        assert worst[2, j] <= max(worst[1, j] / 3, floor), worst
        assert worst[2, j] <= max(worst[0, j] / 10, floor), worst
    # a_h's residual does not vanish: at the times common to both grids (interior point i of
    # the 320-step grid is point 2i+1 of the 640-step one) it stays at -a_m dJ/dt, which the
    # step does not change, up to the O(dt^2) errors of both grids
    gap = np.abs(rs[1]["h"] - rs[2]["h"][1::2]).max()
    assert gap <= 2 * (worst[1, 1] + worst[2, 1]) + floor
    defect = np.abs(r["h"] - r["h_corrected"]).max()
    if defect > 100 * (worst[2, 1] + floor):
        assert worst[2, 2] > 10 * worst[2, 1]


def test_theorem3_fails_for_a_h_on_a_fixed_example():
    """A concrete case: a_h's residual is O(1) and does not shrink; a_m's is tiny."""
    n, gamma = 2, 0.5
    field = hbnode.HBNODEField("tanh", gamma=gamma)
    P = hbnode.init_params(n, 4, seed=0, scale=1.5, bias_scale=0.5)
    z1 = np.array([[0.8, -0.6, 0.4, 0.9]])
    aT = np.array([[1.0, 0.5, -0.7, 0.3]])
    out = []
    for N in (100, 200):
        res = adjoint.continuous_adjoint(field, z1, P, aT, 0.0, 1.0, solver="rk4", steps=N,
                                         record=True)
        r = field.theorem3_residuals(res.ts, res.zs, res.as_, P)
        out.append((np.abs(r["m"]).max(), np.abs(r["h"]).max()))
    assert out[1][0] < 1e-4 and out[1][1] > 0.05
    assert out[1][1] == pytest.approx(out[0][1], rel=1e-2)


# ------------------------------------------------------------------------ API details
def test_init_params_match_node_and_gamma0():
    P = hbnode.init_params(3, 4, seed=7, learn_gamma=True, gamma0=0.25, l=2)
    Q = node.init_params(3, 4, seed=7, l=2)
    for k in ("theta1", "b1", "theta2", "b2"):
        assert np.array_equal(P[k], Q[k])
    assert P["gamma_raw"].shape == (1,)
    assert float(hbnode.HBNODEField(learn_gamma=True).gamma_of(P)[0]) == pytest.approx(0.25,
                                                                                      rel=1e-14)
    assert "gamma_raw" not in hbnode.init_params(3, 4)


def test_m0_none_means_zeros_and_info_fields():
    P, h0, m0, y = problem(2, 3, 2, seed=3, learn_gamma=False)
    F1, g1, i1 = hbnode.loss_and_grad(P, h0, None, y, steps=4)
    F2, g2, i2 = hbnode.loss_and_grad(P, h0, np.zeros_like(h0), y, steps=4)
    assert float(F1) == float(F2) and all(np.array_equal(g1[k], g2[k]) for k in g1)
    assert i1["grad_z0"].shape == (2, 4) and np.array_equal(i1["grad_z0"][:, 2:], i1["grad_m0"])
    assert i1["gamma"] == 0.5 and i1["method"] == "discrete" and i1["nfe_forward"] == 16
    assert i1["grad_gamma"] is None  # fixed gamma: not a parameter
    assert not i1["aT"][:, 2:].any()  # the loss reads h(T) only


def test_float32_runs_and_agrees_roughly():
    P, h0, m0, y = problem(2, 3, 2, seed=3, learn_gamma=True, l=1)
    F, g, _ = hbnode.loss_and_grad(P, h0, m0, y, steps=6)
    with backend.use_backend(dtype="float32"):
        P32 = {k: backend.asarray(v) for k, v in P.items()}
        F32, g32, _ = hbnode.loss_and_grad(P32, backend.asarray(h0), backend.asarray(m0),
                                           backend.asarray(y), steps=6)
        assert all(v.dtype == np.float32 for v in g32.values())
    assert max(check.rel_error(g32[k], g[k]) for k in g) < 1e-3


@pytest.mark.skipif(not backend.cupy_available()[0], reason="CuPy with a CUDA GPU is not available")
def test_cupy_agrees_with_numpy():
    with backend.use_backend("numpy"):  # the reference on the host, whatever the suite's backend
        P, h0, m0, y = problem(2, 3, 2, seed=3, learn_gamma=True, l=1)
        ref = {m: hbnode.loss_and_grad(P, h0, m0, y, steps=6, method=m)
               for m in ("discrete", "continuous")}
    with backend.use_backend("cupy"):
        Pg = {k: backend.asarray(v) for k, v in P.items()}
        for method, (F, g, info) in ref.items():
            Fg, gg, ig = hbnode.loss_and_grad(Pg, backend.asarray(h0), backend.asarray(m0),
                                              backend.asarray(y), steps=6, method=method)
            assert abs(float(Fg) - float(F)) <= 1e-12 * abs(float(F))
            for k in g:
                assert check.rel_error(backend.to_numpy(gg[k]), g[k]) < 1e-12, k
            assert check.rel_error(backend.to_numpy(ig["grad_z0"]), info["grad_z0"]) < 1e-12


def test_bad_inputs_name_the_argument():
    P, h0, m0, y = problem(2, 3, 2, seed=0, learn_gamma=False)
    field = hbnode.HBNODEField()
    with pytest.raises(ValueError, match="even number of columns"):
        field.f(0.0, np.ones((2, 3)), P)
    with pytest.raises(ValueError, match="z0 = \\[h0, m0\\] must have 2n = 4 columns"):
        field.check(P, np.ones((2, 6)))
    with pytest.raises(ValueError, match="params\\['theta2'\\] has shape"):
        field.check(dict(P, theta2=np.ones((3, 3))), np.ones((2, 4)))
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        hbnode.HBNODEField(gamma=-0.1)
    with pytest.raises(ValueError, match="gamma0 must lie in \\(0, 1\\)"):
        hbnode.init_params(2, 3, learn_gamma=True, gamma0=1.0)
    with pytest.raises(ValueError, match="no 'gamma_raw'"):
        hbnode.HBNODEField(learn_gamma=True).f(0.0, np.ones((2, 4)), P)
    with pytest.raises(ValueError, match="m0 must have the shape of h0"):
        hbnode.loss_and_grad(P, h0, np.ones((2, 3)), y, steps=2)
    with pytest.raises(ValueError, match="method must be"):
        hbnode.loss_and_grad(P, h0, m0, y, steps=2, method="adjoint")
    with pytest.raises(ValueError, match="W_out'\\] has shape"):
        hbnode.loss_and_grad(dict(P, W_out=np.ones((1, 3))), h0, m0, y[:, :1], steps=2)
    with pytest.raises(TypeError, match="learn_gamma must be True or False"):
        hbnode.HBNODEField(learn_gamma="yes")
