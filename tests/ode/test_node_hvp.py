"""Hessian-vector products through the ODE solver (X-NODE-HVP): node.hvp, hbnode.hvp.

H v is checked against central differences of the exact discrete gradient along v (for dopri5:
the gradient of the replay of its accepted grid, what the HVP differentiates), across hypothesis
cases (shapes, every explicit solver incl. dopri5, activations, heads, time input, readout,
learned or fixed gamma, a direction of the initial state or not); symmetry u^T H v = v^T H u;
the field's second-order methods against differences of f and vjp; a linear field with MSE,
whose Hessian in h0 is (1/B) Phi^T Phi whatever h0 and y, and scales with v; that the
comparison catches an HVP 0.05% off and one without the second-order term; bad input.
Derivation: docs/ode.md, "Hessian-vector products through the solver".
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manualgrad import backend, check, losses, testing
from manualgrad.ode import adjoint, gradient, hbnode, node, solvers

TOL = check.SECOND_ORDER["float64"]
AGREE = check.AGREEMENT["float64"]
EPS = float(np.finfo(np.float64).eps)
ROUNDOFF = 300  # as tests/test_hvp.py: the gradient is known to ~300 eps max(1, |F|, ||g||)
H_STEP = 1e-4   # the 4-point stencil's step along v (fields are smooth: no relu here)


def _direction(like, seed, extra=None):
    """N(0, 1) per entry, like the mapping ``like`` (plus ``extra`` {name: shape}), seeded."""
    rng = np.random.default_rng(seed)
    v = {k: backend.randn(tuple(a.shape), rng=rng) for k, a in like.items()}
    for k, shp in (extra or {}).items():
        v[k] = backend.randn(shp, rng=rng)
    return v


def _central(f, h):
    m2, m1, p1, p2 = f(-2 * h), f(-h), f(h), f(2 * h)
    return {k: ((m2[k] - p2[k]) + 8 * (p1[k] - m1[k])) / (12 * h) for k in m2}


def _norm(d):
    return float(np.sqrt(sum(float((backend.to_numpy(a) ** 2).sum()) for a in d.values())))


def _vdot(a, b):
    return float(sum(float((a[k] * b[k]).sum()) for k in a))


def _replay_grad(field, z0, P, y, ts, output, loss, packing):
    """dF/dP and dF/dz0 of the fixed grid ``ts`` stepped with dopri5 (``odeint_grid``): the
    discrete adjoint of the replay, with the readout and head of gradient.py."""
    theta = {k: x for k, x in P.items() if k not in gradient.READOUT_NAMES}
    sol = solvers.odeint_grid(field, z0, P, ts, "dopri5")
    hT = packing.observe(sol.z1)
    o = gradient.readout(P, hT)
    head, Y = losses.head_and_targets(output, loss, o, y)
    dF_do = head.delta_out(o, head.output.f(o), Y) * (-1.0 / hT.shape[0])
    g = {}
    a_h = dF_do
    if "W_out" in P:
        a_h = dF_do @ P["W_out"]
        g["W_out"] = dF_do.T @ hT
        if "b_out" in P:
            g["b_out"] = dF_do.sum(axis=0)
    a0, gt = adjoint.discrete_adjoint(field, sol, theta, packing.cotangent(a_h, sol.z1))
    g.update(gt)
    return g, a0


def _node_grad(prob, info):
    """t -> {dF/dP, dF/dh0} at (P + t v, h0 + t v_h0): loss_and_grad, or the dopri5 replay."""
    kw = prob.kwargs

    def grad(P, h0):
        if kw["solver"] != "dopri5":
            _, g, inf = node.loss_and_grad(P, h0, prob.y, **kw)
            return dict(g, h0=inf["grad_h0"])
        fld = node.NODEField(kw["activation"], time_input="theta1_t" in P)
        g, a0 = _replay_grad(fld, h0, node.check_params(P, h0, fld), prob.y, info["ts"],
                             kw["output"], kw["loss"], gradient.WHOLE)
        return dict(g, h0=a0)
    return grad


def _hb_grad(prob, info):
    kw = prob.kwargs

    def grad(P, h0, m0):
        if kw["solver"] != "dopri5":
            _, g, inf = hbnode.loss_and_grad(P, h0, m0, prob.y, **kw)
            return dict(g, h0=inf["grad_h0"], m0=inf["grad_m0"])
        fld = hbnode.HBNODEField(kw["activation"], "gamma_raw" in P, kw.get("gamma", 0.5))
        z0 = backend.xp().concatenate([h0, m0], axis=1)
        g, a0 = _replay_grad(fld, z0, hbnode.check_params(P, z0, fld), prob.y, info["ts"],
                             kw["output"], kw["loss"], hbnode.POSITION)
        n = h0.shape[1]
        return dict(g, h0=a0[:, :n], m0=a0[:, n:])
    return grad


def _errors(hv, num, F, g0):
    atol = ROUNDOFF * EPS * max(1.0, abs(float(F)), _norm(g0)) / H_STEP
    return {k: check.fd_error(hv[k], num[k], F, tol=TOL, atol=atol) for k in hv}


def _node_case(prob, with_h0):
    extra = {"h0": tuple(prob.h0.shape)} if with_h0 else None
    v = _direction(prob.params, prob.seed % 9973, extra)
    F, g, hv, info = node.hvp(prob.params, prob.h0, prob.y, v, **prob.kwargs)
    return v, F, g, hv, info


# ------------------------------------------------------------------ against finite differences
@given(prob=testing.node_problems(), with_h0=st.booleans())
def test_node_hvp_matches_central_differences_of_the_gradient(prob, with_h0):
    """H v = d/dt grad F(P + t v [, h0 + t v_h0]) for every solver, activation, head, readout,
    time input; and the gradient it returns is loss_and_grad's."""
    v, F, g, hv, info = _node_case(prob, with_h0)
    F_ref, g_ref, info_ref = prob.loss_and_grad()
    assert float(F) == float(F_ref)
    for k in g:
        assert check.rel_error(g[k], g_ref[k]) < AGREE, k
    assert check.rel_error(info["grad_h0"], info_ref["grad_h0"]) < AGREE
    grad = _node_grad(prob, info)
    dh0 = v.get("h0", 0.0 * prob.h0)
    num = _central(lambda t: grad({k: prob.params[k] + t * v[k] for k in prob.params},
                                  prob.h0 + t * dh0), H_STEP)
    errs = _errors(hv, num, F, g)
    assert set(hv) == set(v)
    assert max(errs.values()) < TOL, "\n%s\n%s" % (prob, errs)
    if not with_h0:  # the mixed second derivative d^2F/dh0 dP v
        assert check.fd_error(info["grad_h0_dot"], num["h0"], F, tol=TOL,
                              atol=ROUNDOFF * EPS * max(1.0, _norm(g)) / H_STEP) < TOL


@given(prob=testing.hbnode_problems(), with_state=st.sampled_from([(), ("h0",), ("m0",),
                                                                   ("h0", "m0")]))
def test_hbnode_hvp_matches_central_differences_of_the_gradient(prob, with_state):
    """The same for the HBNODE: learned or fixed gamma, directions in h0 and/or m0 or none."""
    B, n = prob.h0.shape
    v = _direction(prob.params, prob.seed % 9973, {s: (B, n) for s in with_state})
    F, g, hv, info = hbnode.hvp(prob.params, prob.h0, prob.m0, prob.y, v, **prob.kwargs)
    F_ref, g_ref, info_ref = prob.loss_and_grad()
    assert float(F) == float(F_ref)
    for k in g:
        assert check.rel_error(g[k], g_ref[k]) < AGREE, k
    grad = _hb_grad(prob, info)
    dh0, dm0 = v.get("h0", 0.0 * prob.h0), v.get("m0", 0.0 * prob.m0)
    num = _central(lambda t: grad({k: prob.params[k] + t * v[k] for k in prob.params},
                                  prob.h0 + t * dh0, prob.m0 + t * dm0), H_STEP)
    errs = _errors(hv, num, F, g)
    assert set(hv) == set(v)
    assert max(errs.values()) < TOL, "\n%s\n%s" % (prob, errs)


# ------------------------------------------------------------------ symmetry
@given(prob=testing.node_problems(), with_h0=st.booleans())
def test_node_hvp_is_symmetric(prob, with_h0):
    """u^T H v = v^T H u (in (params, h0) when the directions hold h0)."""
    extra = {"h0": tuple(prob.h0.shape)} if with_h0 else None
    u = _direction(prob.params, prob.seed % 9973, extra)
    w = _direction(prob.params, prob.seed % 9973 + 1, extra)
    Hu = node.hvp(prob.params, prob.h0, prob.y, u, **prob.kwargs)[2]
    Hw = node.hvp(prob.params, prob.h0, prob.y, w, **prob.kwargs)[2]
    lhs, rhs = _vdot(u, Hw), _vdot(w, Hu)
    assert abs(lhs - rhs) <= 1e-10 * max(_norm(u) * _norm(Hw), _norm(w) * _norm(Hu), 1e-300)


@given(prob=testing.hbnode_problems())
def test_hbnode_hvp_is_symmetric(prob):
    B, n = prob.h0.shape
    extra = {"h0": (B, n), "m0": (B, n)}
    u = _direction(prob.params, prob.seed % 9973, extra)
    w = _direction(prob.params, prob.seed % 9973 + 1, extra)
    Hu = hbnode.hvp(prob.params, prob.h0, prob.m0, prob.y, u, **prob.kwargs)[2]
    Hw = hbnode.hvp(prob.params, prob.h0, prob.m0, prob.y, w, **prob.kwargs)[2]
    lhs, rhs = _vdot(u, Hw), _vdot(w, Hu)
    assert abs(lhs - rhs) <= 1e-10 * max(_norm(u) * _norm(Hw), _norm(w) * _norm(Hu), 1e-300)


# ------------------------------------------------------------------ the field's second order
def _fd_field(fn, z, theta, dz, dtheta, h=H_STEP):
    """d/de fn(z + e dz, theta + e dtheta) by the 4-point stencil (fn returns a dict)."""
    return _central(lambda e: fn(z + e * dz, {k: theta[k] + e * dtheta[k] for k in theta}), h)


@settings(max_examples=40)
@given(case=testing.field_states())
def test_field_tangent_and_vjp_jvp_match_finite_differences(case):
    """field.tangent = d/de f and field.vjp_jvp = d/de vjp (a fixed) along (dz, dtheta), for
    the NODE (time input or not), linear (A in theta) and HBNODE (fixed or learned gamma)
    fields."""
    field, t, z, theta = case
    rng = np.random.default_rng(7)
    dz, a = (backend.asarray(rng.standard_normal(z.shape)) for _ in range(2))
    dtheta = _direction(theta, 8)
    num_f = _fd_field(lambda zz, th: {"f": field.f(t, zz, th)}, z, theta, dz, dtheta)
    ana_f = field.tangent(t, z, theta, dz, dtheta)
    scale = max(1.0, float(np.abs(field.f(t, z, theta)).max()))
    atol = 100 * EPS * scale / H_STEP
    assert check.rel_error(ana_f, num_f["f"], floor=atol / TOL) < TOL

    def vjp(zz, th):
        az, g = field.vjp(t, zz, th, a)
        return dict(g, z=az)
    num = _fd_field(vjp, z, theta, dz, dtheta)
    az_dot, g_dot = field.vjp_jvp(t, z, theta, a, dz, dtheta)
    ana = dict(g_dot, z=az_dot)
    assert set(g_dot) == set(theta)
    for k in ana:
        assert check.rel_error(ana[k], num[k], floor=atol / TOL) < TOL, k


def test_unused_parameters_get_exact_zero_hessian_entries():
    """theta1_t without time input: f ignores it, so its row and column of H are exactly 0."""
    P = node.init_params(2, 3, seed=3, time_input=True, l=1, bias_scale=0.5)
    rng = np.random.default_rng(0)
    h0, y = rng.standard_normal((2, 2)), rng.standard_normal((2, 1))
    v = _direction(P, 1)
    _, g, hv, _ = node.hvp(P, h0, y, v, time_input=False, steps=3)
    assert not np.any(backend.to_numpy(hv["theta1_t"]))
    assert not np.any(backend.to_numpy(g["theta1_t"]))
    only = {k: 0.0 * x for k, x in v.items()}
    only["theta1_t"] = v["theta1_t"]
    hv_only = node.hvp(P, h0, y, only, time_input=False, steps=3)[2]
    assert all(not np.any(backend.to_numpy(x)) for x in hv_only.values())


# ------------------------------------------------------------------ a linear field with MSE
@pytest.mark.parametrize("solver,kw", [("euler", dict(steps=5)), ("midpoint", dict(steps=3)),
                                       ("rk4", dict(steps=2)), ("dopri5", dict(rtol=1e-6))])
def test_linear_field_mse_hessian_in_h0_is_phi_T_phi_whatever_the_point(solver, kw):
    """f(z) = A z (A fixed), identity + MSE: F(h0) = 1/(2B) ||h0 Phi^T - y||^2 is quadratic, so
    H v = (1/B) v Phi^T Phi, with Phi^T = the solve from the identity rows: the same at any h0
    and y, and H(2v) = 2 H v, H(v + w) = H v + H w (fails for a tangent or second-order
    adjoint that is not linear in v or that depends on the point)."""
    rng = np.random.default_rng(5)
    n, B = 3, 4
    A = rng.standard_normal((n, n))
    field = node.LinearField(A)
    # dopri5: the same grid at every point (the HVP holds the accepted grid fixed)
    sol_I = solvers.odeint(field, np.eye(n), {}, 0.0, 1.0, solver, **kw)
    PhiT = backend.to_numpy(sol_I.z1)
    v = {"h0": rng.standard_normal((B, n))}
    w = {"h0": rng.standard_normal((B, n))}
    want = v["h0"] @ PhiT @ PhiT.T / B
    for trial in range(2):
        h0, y = rng.standard_normal((B, n)) * (1 + 3 * trial), rng.standard_normal((B, n))
        run = (lambda d: node.hvp({}, h0, y, d, field=field, solver=solver, **kw)[2]["h0"]) \
            if solver != "dopri5" else \
            (lambda d: node.hvp({}, h0, y, d, field=field, solver="dopri5", **kw)[2]["h0"])
        Hv = backend.to_numpy(run(v))
        if solver != "dopri5":  # dopri5's grid depends on h0: Phi is that grid's
            assert check.rel_error(Hv, want) < AGREE
        assert check.rel_error(backend.to_numpy(run({"h0": 2 * v["h0"]})), 2 * Hv) < AGREE
        Hvw = backend.to_numpy(run({"h0": v["h0"] + w["h0"]}))
        assert check.rel_error(Hvw, Hv + backend.to_numpy(run(w))) < AGREE


def test_linear_field_with_A_learned_scales_with_v():
    """A read from theta: F is not quadratic in A, but H v is still linear in v."""
    rng = np.random.default_rng(6)
    P = {"A": rng.standard_normal((2, 2)) * 0.5}
    h0, y = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    v = {"A": rng.standard_normal((2, 2)), "h0": rng.standard_normal((3, 2))}
    f = node.LinearField()
    hv = node.hvp(P, h0, y, v, field=f, steps=4)[2]
    hv2 = node.hvp(P, h0, y, {k: 2 * x for k, x in v.items()}, field=f, steps=4)[2]
    for k in hv:
        assert check.rel_error(hv2[k], 2 * hv[k]) < AGREE


# ------------------------------------------------------------------ the comparison can fail
def _fixed_case():
    P = node.init_params(2, 3, seed=4, l=2, bias_scale=0.5)
    rng = np.random.default_rng(1)
    h0, y = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    kw = dict(solver="rk4", steps=3, activation="tanh", output="tanh", loss="mse")
    prob = testing.NODEProblem(P, backend.asarray(h0), backend.asarray(y), kw, 0)
    v = _direction(P, 2)
    return prob, v


def _fd_reference(prob, v):
    grad = _node_grad(prob, None)
    return _central(lambda t: grad({k: prob.params[k] + t * v[k] for k in prob.params},
                                   prob.h0), H_STEP)


def test_comparison_catches_an_hvp_that_is_0p05_percent_wrong():
    prob, v = _fixed_case()
    F, g, hv, _ = node.hvp(prob.params, prob.h0, prob.y, v, **prob.kwargs)
    num = _fd_reference(prob, v)
    assert max(_errors(hv, num, F, g).values()) < TOL
    for k in hv:
        bad = dict(hv, **{k: hv[k] * 1.0005})
        assert max(_errors(bad, num, F, g).values()) > TOL, k


class _NoSecondOrder(node.NODEField):
    """A field whose vjp_jvp forgets the second-order term (a Gauss-Newton-like product)."""

    def vjp_jvp(self, t, z, theta, a, dz, dtheta):
        az, g = super().vjp_jvp(t, z, theta, a, dz, dtheta)
        return 0.0 * az, {k: 0.0 * x for k, x in g.items()}


def test_comparison_catches_a_sweep_without_the_second_order_term():
    prob, v = _fixed_case()
    F, g, hv, _ = node.hvp(prob.params, prob.h0, prob.y, v, field=_NoSecondOrder("tanh"),
                           **{k: x for k, x in prob.kwargs.items() if k != "activation"})
    num = _fd_reference(prob, v)
    assert max(_errors(hv, num, F, g).values()) > 100 * TOL


# ------------------------------------------------------------------ bad input
def test_bad_direction_raises_a_clear_error():
    P = node.init_params(2, 3, seed=0, l=1)
    rng = np.random.default_rng(0)
    h0, y = rng.standard_normal((2, 2)), rng.standard_normal((2, 1))
    v = _direction(P, 0)
    with pytest.raises(TypeError, match="v must be a mapping"):
        node.hvp(P, h0, y, [1.0], steps=2)
    with pytest.raises(ValueError, match="missing theta2"):
        node.hvp(P, h0, y, {k: x for k, x in v.items() if k != "theta2"}, steps=2)
    with pytest.raises(ValueError, match="unexpected m0"):
        node.hvp(P, h0, y, dict(v, m0=np.zeros((2, 2))), steps=2)
    with pytest.raises(ValueError, match=r"v\['b1'\] has shape \(2,\), expected \(3,\)"):
        node.hvp(P, h0, y, dict(v, b1=np.zeros(2)), steps=2)
    with pytest.raises(ValueError, match=r"v\['h0'\] has shape \(3, 2\), expected \(2, 2\)"):
        node.hvp(P, h0, y, dict(v, h0=np.zeros((3, 2))), steps=2)
    bad = backend.to_numpy(v["theta1"]).copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"v\['theta1'\] contains 1 non-finite"):
        node.hvp(P, h0, y, dict(v, theta1=bad), steps=2)
    with pytest.raises(TypeError, match=r"v\['b2'\] must be a floating-point array"):
        node.hvp(P, h0, y, dict(v, b2=np.zeros(2, dtype=int)), steps=2)
    Q = hbnode.init_params(2, 3, seed=0, learn_gamma=True)
    with pytest.raises(ValueError, match="hbnode.hvp: v must have the keys.*missing gamma_raw"):
        hbnode.hvp(Q, h0, None, y, {k: x for k, x in _direction(Q, 0).items()
                                    if k != "gamma_raw"}, steps=2)


def test_a_field_without_second_order_methods_or_an_implicit_solver_is_refused():
    class FirstOrderOnly:
        def f(self, t, z, theta):
            return z

        def vjp(self, t, z, theta, a):
            return a, {}

    rng = np.random.default_rng(0)
    h0, y = rng.standard_normal((2, 2)), rng.standard_normal((2, 2))
    with pytest.raises(TypeError, match="node.hvp: the field must have .* no tangent"):
        node.hvp({}, h0, y, {}, field=FirstOrderOnly(), steps=2)
    implicit = getattr(solvers, "IMPLICIT", {})
    if implicit:
        P = node.init_params(2, 3, seed=0)
        with pytest.raises(ValueError, match="is implicit"):
            node.hvp(P, h0, y, _direction(P, 0), solver=next(iter(implicit)), steps=2)
