"""Implicit solvers for stiff fields (manualgrad.ode.implicit, catalog row X-IMPL; docs/ode.md).

The tableaux (order conditions, L-stability), the closed-form Jacobians, Newton, the measured
order, the exact discrete adjoint (finite differences), the continuous adjoint through the
block-triangular augmented system, clear errors, and the stiff example's step counts.
"""
import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from scipy.linalg import expm

from manualgrad import backend, check, testing
from manualgrad.ode import adjoint, hbnode, implicit, node, solvers

TOL = check.TOLERANCES["float64"]
AGREE = check.AGREEMENT["float64"]
NAMES = tuple(solvers.IMPLICIT)


def _R(tab, x):
    """The stability function R(x) = 1 + x b^T (I - x A)^{-1} 1 of a DIRK (full lower A)."""
    s = tab.stages
    A = np.zeros((s, s), dtype=complex)
    for i, row in enumerate(tab.A):
        A[i, :len(row)] = row
    return 1.0 + x * (np.asarray(tab.b) @ np.linalg.solve(np.eye(s) - x * A, np.ones(s)))


# ----------------------------------------------------------------------------- the tableaux
@pytest.mark.parametrize("name", NAMES)
def test_tableau_order_conditions_stiff_accuracy_and_l_stability(name):
    """Rows sum to c; b.1 = 1, b.c = 1/2 up to the order (and not beyond); b = last row of A;
    |R(iy)| <= 1 on the imaginary axis (A-stable) and R(x) -> 0 as x -> -inf (L-stable)."""
    tab = solvers.IMPLICIT[name]
    A = [list(r) + [0.0] * (tab.stages - len(r)) for r in tab.A]
    assert np.allclose([sum(r) for r in A], tab.c, atol=1e-15)
    b, c = np.asarray(tab.b), np.asarray(tab.c)
    conds = [abs(b.sum() - 1), abs(b @ c - 0.5), abs(b @ c ** 2 - 1 / 3)]
    assert all(e < 1e-15 for e in conds[:tab.order])
    assert conds[tab.order] > 1e-3  # the order is not higher than stated
    assert tab.stiffly_accurate and tuple(tab.A[-1]) == tuple(tab.b)
    ys = np.logspace(-3, 6, 200)
    assert max(abs(_R(tab, 1j * y)) for y in ys) <= 1 + 1e-12
    assert abs(_R(tab, -1e8)) < 1e-7 and abs(_R(tab, -1e3)) < 1e-2


def test_solver_names_and_registries():
    """Implicit names resolve like explicit ones; SOLVERS keeps the explicit tableaux only."""
    assert set(solvers.solver_names()) == set(solvers.SOLVERS) | set(solvers.IMPLICIT)
    assert all(not t.implicit for t in solvers.SOLVERS.values())
    assert solvers.get_solver("sdirk2").implicit and solvers.get_solver("beuler").order == 1
    with pytest.raises(ValueError, match="beuler.*sdirk2"):
        solvers.get_solver("bdf")


# ----------------------------------------------------------------------------- Jacobians
@settings(max_examples=40)
@given(case=testing.field_states())
def test_jac_agrees_with_jvp_and_finite_differences(case):
    """J v = jvp(v) (AGREEMENT) and J = central differences of f, for NODE, Linear, HBNODE."""
    fld, t, z, theta = case
    J = fld.jac(t, z, theta)
    B, N = z.shape
    assert J.shape == (B, N, N)
    v = backend.asarray(np.random.default_rng(0).standard_normal((B, N)))
    Jv = np.einsum("bpq,bq->bp", backend.to_numpy(J), backend.to_numpy(v))
    jvp = backend.to_numpy(fld.jvp(t, z, theta, v))
    assert check.rel_error(Jv, jvp) < AGREE
    eps = 1e-6
    num = (backend.to_numpy(fld.f(t, z + eps * v, theta))
           - backend.to_numpy(fld.f(t, z - eps * v, theta))) / (2 * eps)
    assert check.rel_error(Jv, num, floor=1e-6) < 1e-6


# ----------------------------------------------------------------------------- order
def _order(errs):
    e = np.asarray(errs)
    return np.log2(e[:-1] / e[1:])


@pytest.mark.parametrize("name", NAMES)
def test_measured_order_linear_and_node(name):
    """Global error at t = 1 vs steps 10..80: slope within 0.2 of the nominal order, on a
    linear field (exact: expm) and on a NODE (reference: rk4 with 2000 steps)."""
    tab = solvers.IMPLICIT[name]
    A = np.array([[-1.0, 2.0], [-2.0, -0.5]])
    z0 = np.array([[1.0, -0.5], [0.3, 0.8]])
    exact = z0 @ expm(A).T
    P = node.init_params(2, 3, seed=4, bias_scale=0.5)
    fld = node.NODEField("tanh")
    ref = backend.to_numpy(solvers.odeint(fld, z0, P, 0.0, 1.0, "rk4", steps=2000).z1)
    lin, nod = [], []
    for N in (10, 20, 40, 80):
        z = solvers.odeint(node.LinearField(A), z0, {}, 0.0, 1.0, name, steps=N).z1
        lin.append(np.abs(backend.to_numpy(z) - exact).max())
        z = solvers.odeint(fld, z0, P, 0.0, 1.0, name, steps=N).z1
        nod.append(np.abs(backend.to_numpy(z) - ref).max())
    for errs in (lin, nod):
        assert np.all(np.abs(_order(errs) - tab.order) < 0.2), (name, errs)


def test_backward_euler_on_the_linear_equation_is_its_formula():
    """Backward Euler on z' = A z is z_N = (I - hA)^{-N} z0 exactly (one Newton step solves a
    linear stage; the second iteration sees the residual at round-off)."""
    A = np.array([[-3.0, 1.0], [0.5, -2.0]])
    z0 = np.array([[1.0, 2.0]])
    sol = solvers.odeint(node.LinearField(A), z0, {}, 0.0, 1.0, "beuler", steps=7)
    M = np.linalg.matrix_power(np.linalg.inv(np.eye(2) - A / 7), 7)
    assert check.rel_error(backend.to_numpy(sol.z1), z0 @ M.T) < AGREE
    assert sol.newton_iters == 7 and sol.nfe == 14


# ----------------------------------------------------------------------------- exact adjoint
@settings(max_examples=25)
@given(prob=testing.implicit_node_problems(solvers=NAMES))
def test_discrete_adjoint_matches_finite_differences(prob):
    """method='discrete' with an implicit solver is the exact gradient of the computed solution:
    params and h0 against central differences (float64, TOLERANCES)."""
    F, grads, info = prob.loss_and_grad()
    rep = check.gradients(lambda Q: prob.loss(Q), prob.params, grads)
    assert rep.max_error < TOL, "\n%s\n%s" % (prob.kwargs, rep)
    h0c = prob.h0.copy()
    num = check.numerical_gradient(lambda: prob.loss(h0=h0c), h0c)
    assert check.fd_error(info["grad_h0"], num, F) < TOL
    steps = info["steps_forward"]
    s = solvers.IMPLICIT[prob.kwargs["solver"]].stages
    assert info["nvjp_backward"] == s * steps and info["solve"]["newton_iters"] >= s * steps


@pytest.mark.parametrize("learn_gamma", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_hbnode_discrete_adjoint_matches_finite_differences(name, learn_gamma):
    """The HBNODE field's jac [[0, I], [J, -gamma I]]: exact gradients with implicit solvers."""
    rng = np.random.default_rng(3)
    P = hbnode.init_params(2, 3, seed=5, learn_gamma=learn_gamma, bias_scale=0.3, l=2)
    h0, y = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    kw = dict(solver=name, steps=3, t1=1.2, learn_gamma=learn_gamma)
    F, g, info = hbnode.loss_and_grad(P, h0, None, y, **kw)
    rep = check.gradients(lambda Q: hbnode.loss(Q, h0, None, y, **kw), P, g)
    assert rep.max_error < TOL, rep


def test_the_fd_check_catches_a_wrong_jacobian():
    """A Jacobian 0.05% off leaves the forward solve converged (Newton's residual uses f) but
    breaks the adjoint's transposed solve (I6): the same check fails (the test can fail)."""
    class Off(node.NODEField):
        def jac(self, t, z, theta):
            return super().jac(t, z, theta) * 1.0005
    P = node.init_params(2, 3, seed=0, bias_scale=0.5)
    rng = np.random.default_rng(0)
    h0, y = rng.standard_normal((2, 2)), rng.standard_normal((2, 2))
    _, good, _ = node.loss_and_grad(P, h0, y, solver="sdirk2", steps=3)
    _, bad, _ = node.loss_and_grad(P, h0, y, solver="sdirk2", steps=3, field=Off())
    f = lambda Q: node.loss(Q, h0, y, solver="sdirk2", steps=3)  # noqa: E731
    assert check.gradients(f, P, good).max_error < TOL
    assert check.gradients(f, P, bad).max_error > TOL


def test_discrete_adjoint_direct_call_and_custom_newton_settings():
    """adjoint.discrete_adjoint on an odeint Solution; a DIRK with other Newton settings passed
    as the solver object is the one the sweep uses (sol.tableau)."""
    A = np.array([[-50.0, 1.0], [0.0, -2.0]])
    fld = node.LinearField()
    z0 = np.array([[1.0, -1.0]])
    tab = dataclasses.replace(solvers.IMPLICIT["sdirk2"], newton_tol=1e-14, newton_max_iter=5)
    sol = solvers.odeint(fld, z0, {"A": A}, 0.0, 1.0, tab, steps=5)
    assert sol.tableau is tab
    a1 = np.array([[0.3, -0.7]])
    a0, g = adjoint.discrete_adjoint(fld, sol, {"A": A}, a1)
    # z_N = S^N z0 with S the step matrix of sdirk2 on z' = A z: dL/dz0 = a1 S^N
    h = 0.2
    gam = 1 - 1 / math.sqrt(2)
    Minv = np.linalg.inv(np.eye(2) - h * gam * A)
    K1 = Minv @ A  # K_1 = (I - h gamma A)^{-1} A z
    K2 = Minv @ A @ (np.eye(2) + h * (1 - gam) * K1)  # K_2 = (..)^{-1} A (z + h (1-gamma) K_1)
    step = np.eye(2) + h * ((1 - gam) * K1 + gam * K2)  # z' = step z
    assert check.rel_error(backend.to_numpy(sol.z1), z0 @ np.linalg.matrix_power(step, 5).T) < 1e-12
    assert check.rel_error(backend.to_numpy(a0), a1 @ np.linalg.matrix_power(step, 5)) < 1e-12
    f = lambda Q: float((a1 * backend.to_numpy(  # noqa: E731
        solvers.odeint(fld, z0, Q, 0.0, 1.0, tab, steps=5).z1)).sum())
    assert check.gradients(f, {"A": A}, g).max_error < TOL


# ----------------------------------------------------------------------------- continuous
@pytest.mark.parametrize("name", NAMES)
def test_continuous_adjoint_converges_at_the_order(name):
    """method='continuous' integrates [z, a, a_theta] backward with the DIRK (Newton on z, a
    transposed solve on a): its gradient converges to the exact one at the solver's order."""
    P = node.init_params(3, 4, seed=1, l=2, bias_scale=0.5)
    rng = np.random.default_rng(0)
    h0, y = rng.standard_normal((2, 3)), rng.standard_normal((2, 2))
    _, ref, _ = node.loss_and_grad(P, h0, y, solver="rk4", steps=400)
    flat = lambda g: np.concatenate([backend.to_numpy(g[k]).ravel() for k in sorted(g)])  # noqa
    errs = []
    for N in (8, 16, 32):
        _, g, info = node.loss_and_grad(P, h0, y, solver=name, steps=N, method="continuous")
        errs.append(np.abs(flat(g) - flat(ref)).max())
        assert info["steps_backward"] == N
    assert np.all(np.abs(_order(errs) - solvers.IMPLICIT[name].order) < 0.2), errs


# ----------------------------------------------------------------------------- errors
def test_singular_iteration_matrix_raises():
    """A = I / (h a_ii): I - h a_ii A = 0 is singular; FloatingPointError naming t and the step."""
    fld = node.LinearField(np.eye(2) * 4.0)
    with pytest.raises(FloatingPointError, match=r"singular .*residual"):
        solvers.odeint(fld, np.ones((1, 2)), {}, 0.0, 1.0, "beuler", steps=4)
    with pytest.raises(FloatingPointError, match=r"step 1 of 4 .*t=0\.0"):
        solvers.odeint(fld, np.ones((1, 2)), {}, 0.0, 1.0, "beuler", steps=4)


def test_newton_that_does_not_converge_raises_not_hangs():
    """A bounded iteration count: newton_max_iter=1 on a nonlinear field raises with the
    residual and the setting; a blow-up (z' = 5 z^2 from 1, singular at t = 0.2, one big step)
    raises too, never hangs."""
    P = node.init_params(2, 3, seed=0, scale=3.0, bias_scale=0.5)
    tab = dataclasses.replace(solvers.IMPLICIT["beuler"], newton_max_iter=1)
    with pytest.raises(FloatingPointError, match=r"Newton did not converge .*newton_max_iter=1"):
        solvers.odeint(node.NODEField(), np.ones((2, 2)), P, 0.0, 1.0, tab, steps=1)

    class Square:
        def f(self, t, z, theta):
            return 5 * z * z

        def vjp(self, t, z, theta, a):
            return 10 * z * a, {}

        def jac(self, t, z, theta):
            return np.eye(z.shape[1])[None] * (10 * z)[:, None, :]
    with pytest.raises(FloatingPointError, match=r"beuler"):
        solvers.odeint(Square(), np.ones((1, 1)), {}, 0.0, 1.0, "beuler", steps=1)


def test_field_without_jac_and_bad_settings():
    """No jac: TypeError naming it; implicit solvers are fixed-step: steps/h required."""
    class NoJac:
        def f(self, t, z, theta):
            return -z

        def vjp(self, t, z, theta, a):
            return -a, {}
    with pytest.raises(TypeError, match="jac"):
        solvers.odeint(NoJac(), np.ones((1, 2)), {}, 0.0, 1.0, "sdirk2", steps=2)
    with pytest.raises(ValueError, match="steps="):
        solvers.odeint(node.LinearField(-np.eye(2)), np.ones((1, 2)), {}, 0.0, 1.0, "sdirk2")
    with pytest.raises(ValueError, match="implicit"):
        solvers.integrate(lambda t, y: y, (backend.asarray(np.ones((1, 1))),),
                          solvers.IMPLICIT["beuler"], ts=[0.0, 1.0])


# ----------------------------------------------------------------------------- the stiff example
def test_stiff_linear_equation_step_counts():
    """z' = -1e4 z on [0, 1]: dopri5 (rtol 1e-3) needs > 2500 steps, held at its stability limit
    h ~ 3.3e-4; sdirk2 and beuler with 10 steps are more accurate (L-stable: R(-1e3)^10 ~ 0):
    more than 100 times fewer steps."""
    fld = node.LinearField(np.array([[-1e4]]))
    rows = implicit.stiff_comparison(fld, np.ones((1, 1)), {}, 1.0, np.zeros((1, 1)),
                                     implicit_steps=(10,))
    dop, imp = rows[0], rows[1:]
    assert dop["solver"] == "dopri5" and dop["steps"] > 2500 and dop["rejected"] > 0
    for r in imp:
        assert r["steps"] == 10 and r["error"] <= dop["error"]
        assert dop["steps"] >= 100 * r["steps"]


def test_stiff_linear_field_step_counts():
    """A 4x4 field with eigenvalues -0.1, -1, -1e3, -1e4 (a rotated diagonal) on [0, 5]: sdirk2
    with 80 steps is more accurate than dopri5 at rtol 1e-3 with > 100 times the steps (~15000,
    held at h ~ 3.3e-4 by stability; the slow modes keep the exact solution away from 0)."""
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    A = Q @ np.diag([-0.1, -1.0, -1e3, -1e4]) @ Q.T
    z0 = rng.standard_normal((2, 4))
    ref = z0 @ expm(5.0 * A).T
    assert np.abs(ref).max() > 0.1
    rows = implicit.stiff_comparison(node.LinearField(A), z0, {}, 5.0, ref,
                                     implicit_steps=(80,), solvers=("sdirk2",))
    dop, sd = rows
    assert sd["error"] <= dop["error"] and dop["steps"] >= 100 * sd["steps"], rows
    assert "dopri5" in implicit.format_comparison(rows)


def _stiff_node(D, seed=0):
    """f(h) = -Q D tanh(Q^T h): in y = Q^T h each mode decays as y_i' = -d_i tanh(y_i)."""
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(D), len(D))))
    D = np.asarray(D, dtype=float)
    return {"theta1": Q.T.copy(), "b1": np.zeros(len(D)), "theta2": -Q * D[None, :],
            "b2": np.zeros(len(D))}


def test_damped_newton_on_a_saturating_stiff_node_and_its_exact_gradient():
    """A tanh field with h a_ii |J| ~ 700: the full Newton step overshoots (tanh saturates) and
    cycles; the line search converges. The discrete adjoint of that solve matches finite
    differences (params and h0), and sdirk2 with 20 steps is more accurate than dopri5's ~3000
    (rtol 1e-3)."""
    P = _stiff_node([1.0, 1e4])
    rng = np.random.default_rng(1)
    h0, y = 2.0 * rng.standard_normal((2, 2)), rng.standard_normal((2, 2))
    full = dataclasses.replace(solvers.IMPLICIT["sdirk2"], newton_max_iter=25)
    sol = solvers.odeint(node.NODEField(), h0, P, 0.0, 1.0, full, steps=20)
    assert sol.nfe > sol.newton_iters + 2 * 20  # some full steps were refused (halved)
    ref = solvers.odeint(node.NODEField(), h0, P, 0.0, 1.0, "sdirk2", steps=4000).z1
    dop = solvers.odeint(node.NODEField(), h0, P, 0.0, 1.0, "dopri5", rtol=1e-3, atol=1e-6)
    err = lambda z: np.abs(backend.to_numpy(z) - backend.to_numpy(ref)).max()  # noqa: E731
    assert err(sol.z1) < err(dop.z1) and dop.steps > 100 * 20
    kw = dict(solver="sdirk2", steps=20)
    F, g, info = node.loss_and_grad(P, h0, y, **kw)
    rep = check.gradients(lambda Q: node.loss(Q, h0, y, **kw), P, g)
    assert rep.max_error < TOL, rep
    h0c = h0.copy()
    num = check.numerical_gradient(lambda: node.loss(P, h0c, y, **kw), h0c)
    assert check.fd_error(info["grad_h0"], num, F) < TOL


@pytest.mark.parametrize("name", NAMES)
def test_checkpointed_adjoint_equals_discrete_with_implicit_solvers(name):
    """The checkpointed adjoint re-solves segments with solvers.solve and sweeps them with
    adjoint.discrete_sweep: with an implicit solver it equals method='discrete' (AGREEMENT)."""
    P = node.init_params(2, 3, seed=2, l=1, bias_scale=0.5)
    rng = np.random.default_rng(2)
    h0, y = rng.standard_normal((3, 2)), rng.standard_normal((3, 1))
    kw = dict(solver=name, steps=9)
    _, g, info = node.loss_and_grad(P, h0, y, **kw)
    _, gc, infoc = node.loss_and_grad(P, h0, y, method="checkpointed", checkpoints=2, **kw)
    for k in P:
        assert check.rel_error(backend.to_numpy(gc[k]), backend.to_numpy(g[k])) < AGREE, k
    assert check.rel_error(backend.to_numpy(infoc["grad_h0"]),
                           backend.to_numpy(info["grad_h0"])) < AGREE
