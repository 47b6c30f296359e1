"""The coadjoint method (JP eqs. 14-23): penalties, their gradients, and the exact gradient of F + alpha G."""
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from manualgrad import backend, check, coadjoint, rnn, testing

TOL = check.SECOND_ORDER["float64"]  # a derivative of a derivative (the coadjoint gradient)
G_NAMES = sorted(coadjoint.PENALTIES)


def _well_conditioned(prob):
    """Precondition for finite differences of G: adjoints (and lambda_T's components, which the
    released barrier takes log |.| of) well away from 0, so that a step h ~ 1e-4 in the
    parameters moves them by a small fraction of themselves. When softmax heads saturate the
    adjoints shrink to 1e-10 and log ||lambda||^2 is too steep for any finite difference; the
    analytic gradient is still exact there (checked at moderate scale in the docs)."""
    prob.assume_off_kinks()
    lam = prob.sweep().adj.lam
    assume(float(np.linalg.norm(lam, axis=2).min()) > 1e-3)
    assume(float(np.abs(lam[-1]).min()) > 1e-3)


def _adjoint_step(prob, h=2e-5, budget=1e-2):
    """The finite-difference step for J = F + alpha G: h, shortened until no adjoint moves by
    more than ``budget`` of itself when any one parameter moves by the step.

    G takes log ||lambda_k||^2 (and the released barrier log |lambda_T|). Along a parameter
    theta_i, lambda_k(theta_i + s) ~ lambda_k + s d_i lambda_k, so the log has a singularity at
    distance r ~ ||lambda_k|| / ||d_i lambda_k||, and the 4-point central difference of
    log(1 + s/r) is off by about 0.8 (h/r)^4 of the derivative (its Taylor coefficients). The
    ratio h/r is exactly the relative change of lambda_k measured here (rho); rho <= 1e-2 bounds
    that error by ~1e-8, 100x under the 1e-6 tolerance. A fixed h = 2e-5 is not enough: hypothesis
    found ||lambda_3|| = 1.0e-3 with r = 4.5e-4 (a 1-unit RNN, G20), rho = 0.044, a predicted
    0.8 rho^4 = 3e-6 and a measured 3.1e-6 error in W_rec; at h = 3e-6 it is 1.6e-9. The round-off
    floor check.gradients derives from the step keeps the comparison honest at a shorter one.
    """
    lam0 = backend.to_numpy(prob.sweep().adj.lam)
    norms0 = np.linalg.norm(lam0, axis=2)
    rho = 0.0
    for name, value in prob.params.items():
        host = backend.to_numpy(value)
        for i in range(host.size):
            moved = host.copy().reshape(-1)
            moved[i] += h * max(1.0, abs(moved[i]))
            P = dict(prob.params, **{name: backend.asarray(moved.reshape(host.shape))})
            lam = backend.to_numpy(rnn.sweep(P, prob.u, prob.y, **prob.kwargs).adj.lam)
            rho = max(rho, float((np.linalg.norm(lam - lam0, axis=2) / norms0).max()),
                      float((np.abs(lam[-1] - lam0[-1]) / np.abs(lam0[-1])).max()))
    return h if rho <= budget else h * budget / rho


@settings(max_examples=max(80, settings.default.max_examples * 2))
@given(prob=testing.rnn_problems(min_T=2, max_scale=1.0), G=st.sampled_from(G_NAMES),
       alpha=st.floats(0.05, 2.0))
def test_coadjoint_gradient_matches_finite_differences_of_F_plus_alpha_G(prob, G, alpha):
    """JP eqs. (15)-(19), derived from the Lagrangian of (14): every G, activation, head, loss."""
    _well_conditioned(prob)
    kw = dict(prob.kwargs, G=G, alpha=alpha)
    with warnings.catch_warnings():
        warnings.simplefilter("error", coadjoint.PenaltyFloorWarning)
        F, Gv, grads = coadjoint.loss_and_grad(prob.params, prob.u, prob.y, **kw)
    J = lambda P: coadjoint.loss(P, prob.u, prob.y, **kw)  # noqa: E731
    # G is steep where an adjoint is small (log ||lambda||^2): a 4-point step short enough for
    # the adjoints' own sensitivity (_adjoint_step) keeps the truncation error down
    fd = prob.fd_options() if prob.has_kinks else {"order": 4, "h": _adjoint_step(prob)}
    rep = check.gradients(J, prob.params, grads, **fd)
    assert rep.max_error < TOL, "\n%s\n%s" % (prob, rep)
    assert abs(float(F) + alpha * float(Gv) - float(J(prob.params))) < 1e-12 * max(1, abs(float(F)))


@given(prob=testing.rnn_problems(min_T=2, max_scale=1.0), G=st.sampled_from(G_NAMES))
def test_penalty_gradient_in_the_adjoints_matches_finite_differences(prob, G):
    """dG_b/dlambda_k (JP eq. 21 and the gradients of 22, 23, 23w, released) by central differences."""
    _well_conditioned(prob)
    adj = prob.sweep().adj
    pen = coadjoint.get_penalty(G)
    Gb, dlam, dlam0 = pen(adj.lam, adj.lam0)
    lam, lam0 = adj.lam.copy(), adj.lam0.copy()
    num = check.numerical_gradient(lambda: pen(lam, lam0)[0].sum(), lam, order=2, h=1e-7)
    assert check.fd_error(dlam, num, Gb.sum(), order=2, h=1e-7) < TOL
    if pen.uses_lam0:
        num0 = check.numerical_gradient(lambda: pen(lam, lam0)[0].sum(), lam0, order=2, h=1e-7)
        assert check.fd_error(dlam0, num0, Gb.sum(), order=2, h=1e-7) < TOL
    else:
        assert dlam0 is None


@given(prob=testing.rnn_problems(min_T=2, max_scale=1.0))
def test_alpha_zero_is_the_adjoint_method_and_gradient_is_linear_in_alpha(prob):
    prob.assume_off_kinks()
    _, g = prob.loss_and_grad()
    c0 = coadjoint.sweep(prob.params, prob.u, prob.y, alpha=0.0, **prob.kwargs)
    c1 = coadjoint.sweep(prob.params, prob.u, prob.y, alpha=1.0, **prob.kwargs)
    c3 = coadjoint.sweep(prob.params, prob.u, prob.y, alpha=3.0, **prob.kwargs)
    for k in g:
        assert np.array_equal(c0.grads[k], g[k])
        assert np.allclose(c3.grads[k] - c1.grads[k], 2 * c1.grads_G[k], rtol=1e-10, atol=1e-12)


def test_coadjoint_of_lambda_is_the_total_derivative_of_G():
    """gamma_k = dG/dlambda_k counting every later-computed lambda_j (j < k) that depends on it."""
    P = rnn.init_params(2, 4, 1, seed=3, bias_scale=0.2)
    rng = np.random.default_rng(0)
    u, y = rng.standard_normal((6, 3, 2)), rng.uniform(0, 1, (3, 1))
    c = coadjoint.sweep(P, u, y, G="G22")
    traj, adj = c.sweep.traj, c.sweep.adj
    k = 4  # perturb lambda_4 and rerun the recursion (8) down to lambda_1
    s = traj.activation.grad(traj.z, traj.x[1:])
    lam_k = adj.lam[k - 1].copy()

    def G_of(lk):
        lam = adj.lam.copy()
        lam[k - 1] = lk
        for j in range(k - 1, 0, -1):
            lam[j - 1] = (s[j] * lam[j]) @ P["W_rec"]
        return coadjoint.PENALTIES["G22"](lam, None)[0].sum()
    num = check.numerical_gradient(lambda: G_of(lam_k), lam_k)
    assert check.fd_error(c.gamma[k], num, G_of(lam_k)) < 1e-8


def test_released_barrier_is_continuous_and_C1_at_l_and_finite_at_zero():
    xp = backend.xp()
    l = 1e-5
    z = backend.asarray([l * (1 - 1e-9), l * (1 + 1e-9)])
    phi, dphi = coadjoint._phi(z)
    assert abs(phi[0] - phi[1]) < 1e-6 and abs(dphi[0] / dphi[1] - 1) < 1e-6
    for z0 in (3e-6, 4e-5, -0.3, 2.0):
        zz = backend.asarray([z0])
        h = 1e-4 * abs(z0)
        num = (coadjoint._phi(zz + h)[0] - coadjoint._phi(zz - h)[0]) / (2 * h)
        assert abs(num[0] - coadjoint._phi(zz)[1][0]) < 1e-6 * abs(num[0])
    p0, d0 = coadjoint._phi(xp.zeros(3))
    assert np.all(np.isfinite(p0)) and np.all(d0 == 0)
    # it pushes lambda_T away from 0: phi decreases with |z| on both branches
    zs = backend.asarray([1e-7, 1e-6, 1e-5, 1e-3, 1.0, 10.0])
    assert np.all(np.diff(coadjoint._phi(zs)[0]) < 0)


def test_zero_adjoints_give_no_nan_and_a_warning():
    xp = backend.xp()
    lam = xp.zeros((5, 2, 3))
    lam[-1] = 1.0
    lam0 = xp.zeros((2, 3))
    for G in G_NAMES:
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            Gb, dlam, dlam0 = coadjoint.PENALTIES[G](lam, lam0)
        assert np.all(np.isfinite(Gb)) and np.all(np.isfinite(dlam))
        if G == "G20":
            assert any(issubclass(w.category, coadjoint.PenaltyFloorWarning) for w in rec)
            assert np.all(dlam[:-1] == 0)  # flat below the floor


def test_G20_printed_gradient_lacks_the_lambda_factor():
    """JP eq. (21) prints dG/dlambda_k = -2 / ||lambda_k||^2 (a scalar); the gradient is -2 lambda_k / ||lambda_k||^2."""
    lam = backend.randn((3, 2, 4), seed=0)
    _, dlam, _ = coadjoint.PENALTIES["G20"](lam, None)
    n2 = (lam ** 2).sum(axis=2, keepdims=True)
    assert np.allclose(dlam, -2 * lam / n2, rtol=1e-12)
    assert not np.allclose(dlam, -2 / n2)


def test_G22_G23_values_follow_the_printed_formulas():
    lam = backend.randn((6, 3, 2), seed=1)
    n = np.linalg.norm(lam, axis=2)
    var = (n ** 2).mean(axis=0) - n.mean(axis=0) ** 2
    assert np.allclose(coadjoint.PENALTIES["G22"](lam, None)[0], var, rtol=1e-12)
    assert np.allclose(coadjoint.PENALTIES["G23"](lam, None)[0], var - np.log(n[-1] ** 2), rtol=1e-12)
    w = backend.asarray(0.9 ** (6 - np.arange(1, 7)))
    w /= w.sum()
    wvar = (w[:, None] * n ** 2).sum(0) - ((w[:, None] * n).sum(0)) ** 2
    assert np.allclose(coadjoint.PENALTIES["G23w"](lam, None)[0], wvar - np.log(n[-1] ** 2))
    lam0 = backend.randn((3, 2), seed=2)
    n_all = np.vstack([np.linalg.norm(lam0, axis=1)[None], n])
    var_all = (n_all ** 2).mean(0) - n_all.mean(0) ** 2
    phi = coadjoint._phi(lam[-1])[0].sum(axis=1)
    assert np.allclose(coadjoint.PENALTIES["released"](lam, lam0)[0], 1e-2 * (var_all + phi))


def test_user_penalty_and_bad_input():
    P = rnn.init_params(2, 3, 1, seed=0)
    rng = np.random.default_rng(0)
    u, y = rng.standard_normal((5, 2, 2)), rng.uniform(0, 1, (2, 1))

    def my_G(lam, lam0):  # G_b = sum_k ||lambda_k||^2
        return (lam ** 2).sum(axis=(0, 2)), 2 * lam, None
    F, Gv, g = coadjoint.loss_and_grad(P, u, y, G=my_G, alpha=0.5)
    rep = check.gradients(lambda Q: coadjoint.loss(Q, u, y, G=my_G, alpha=0.5), P, g)
    assert rep.max_error < TOL
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0"):
        coadjoint.loss_and_grad(P, u, y, alpha=-0.1)
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        coadjoint.loss_and_grad(P, u, y, alpha=float("nan"))
    with pytest.raises(ValueError, match="unknown penalty G='G21': valid names are G20, G22"):
        coadjoint.loss_and_grad(P, u, y, G="G21")
    with pytest.raises(TypeError, match="G must be a penalty name"):
        coadjoint.loss_and_grad(P, u, y, G=3)
    with pytest.raises(FloatingPointError, match="non-finite values in G_b"):
        coadjoint.loss_and_grad(P, u, y, G=lambda lam, lam0: (lam.sum((0, 2)) * np.inf, lam, None))
    with pytest.raises(ValueError, match=r"returned dG/dlam of shape \(5, 2\), expected \(5, 2, 3\)"):
        coadjoint.loss_and_grad(P, u, y, G=lambda lam, lam0: (lam.sum((0, 2)), lam[:, :, 0], None))
    with pytest.raises(TypeError, match="must return"):
        coadjoint.loss_and_grad(P, u, y, G=lambda lam, lam0: 1.0)
    with pytest.raises(ValueError, match="need T >= 2 steps, got T = 1"):
        coadjoint.loss_and_grad(P, u[:1], y)


def test_float32_underflow_is_detected_and_said():
    """Long sequences in float32: early adjoints underflow to 0; a warning names the steps."""
    with backend.use_backend(dtype="float32"):
        P = rnn.init_params(3, 8, 1, seed=0, scale=0.3)
        rng = np.random.default_rng(0)
        u, y = rng.standard_normal((400, 4, 3)), rng.uniform(0, 1, (4, 1))
        with pytest.warns(coadjoint.AdjointUnderflowWarning, match="float32.*use float64"):
            F, Gv, g = coadjoint.loss_and_grad(P, u, y, G="G23", alpha=1.0)
        assert all(np.all(np.isfinite(v)) for v in g.values())  # never silent NaN
        with pytest.raises(FloatingPointError, match="non-finite"):
            coadjoint.loss_and_grad(P, u, y, alpha=1.0,
                                    G=lambda lam, lam0: (-np.log((lam ** 2).sum((0, 2)) * 0), lam, None))
