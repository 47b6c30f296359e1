"""Tests for manualgrad.layered: the layered system, its Lagrangian and adjoint (JP eqs. (1)-(4)).

What is checked, in float64 against central differences (manualgrad.check):
- dF/dtheta and dF/dx_0 from the adjoint sweep (relative error < 1e-7);
- JP eq. (4): at the adjoint solution the Lagrangian's partials in every x_i and in yhat vanish;
- its partials in every lambda_i and in delta are the constraint residuals (zero on the forward
  solution), and L = F there;
- at the adjoint solution dL/dtheta (differences of L with states and multipliers frozen) equals
  dF/dtheta (differences of F);
- equal widths and shared weights reproduce manualgrad.rnn with zero input;
- a 0.05% error in a gradient or a multiplier is caught; bad input raises with a clear message.
"""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from manualgrad import backend, check, layered, rnn, testing

TOL = check.TOLERANCES["float64"]  # 1e-7
STATIONARY_TOL = 1e-9  # |per-example partial of L| relative to the size of its terms


def assert_allclose(actual, desired, **kwargs):
    """np.testing.assert_allclose of engine arrays, copied to the host first."""
    np.testing.assert_allclose(backend.to_numpy(actual), backend.to_numpy(desired), **kwargs)


# ----------------------------------------------------------------------------- problems
def _fixed_problem(widths=(3, 5, 2, 4), l=3, B=4, activation="tanh", output="sigmoid",
                   loss="bce", seed=7):
    params = layered.init_params(list(widths), l, seed=seed, bias_scale=0.3)
    rng = backend.host_rng(seed + 1)
    x0 = backend.asarray(rng.standard_normal((B, widths[0])))
    y = backend.asarray(rng.uniform(0.0, 1.0, size=(B, l)))
    return testing.LayeredProblem(params, x0, y, activation, output, loss, seed)


def _errors(analytic, numeric, F, order=4):
    """Per-key :func:`check.fd_error`: relative error with the round-off floor of the stencil."""
    return {k: check.fd_error(analytic[k], numeric[k], F, TOL, order=order) for k in numeric}


def _lagrangian_at(prob, s, xs=None, yhat=None, lam=None, delta=None, params=None):
    """L, every independent variable defaulting to the forward/adjoint solution of sweep ``s``."""
    return layered.lagrangian(
        prob.params if params is None else params, prob.x0,
        s.traj.x[1:] if xs is None else xs, s.traj.yhat if yhat is None else yhat,
        s.adj.lam if lam is None else lam, s.adj.delta if delta is None else delta,
        prob.y, **prob.kwargs)


def _yhat_step(prob, yhat):
    """A step for differences in yhat that stays well inside the domain of bce / cross_entropy."""
    if prob.loss_name == "mse":
        return None
    d = float(np.min(yhat))
    if prob.loss_name == "bce":
        d = min(d, float(np.min(1.0 - yhat)))
    return 1e-3 * min(1.0, d)


def _stationarity_residuals(prob, s, lam=None):
    """Per-example partials B dL/dx_{i+1} (i = 0..T-1) and B dL/dyhat by central differences,
    each divided by the size of the terms that must cancel (max(1, |F|, |lambda|, |delta|))."""
    lam = [a.copy() for a in s.adj.lam] if lam is None else lam
    xs = [a.copy() for a in s.traj.x[1:]]
    yhat = s.traj.yhat.copy()
    B = prob.x0.shape[0]
    scale = max([1.0, abs(float(s.F)), float(np.abs(s.adj.delta).max())]
                + [float(np.abs(a).max()) for a in lam])
    f = lambda: _lagrangian_at(prob, s, xs=xs, yhat=yhat, lam=lam)  # noqa: E731
    out = {}
    for i, x in enumerate(xs):
        g = check.numerical_gradient(f, x, **prob.fd_options())
        out["x_%d" % (i + 1)] = float(np.abs(B * g).max()) / scale
    g = check.numerical_gradient(f, yhat, h=_yhat_step(prob, yhat), order=4)  # smooth in yhat
    out["yhat"] = float(np.abs(B * g).max()) / scale
    return out


# ----------------------------------------------------------------------------- shapes
def test_init_params_shapes_keys_and_seed():
    P = layered.init_params([3, 5, 2], 4, seed=3)
    assert list(P) == ["W_0", "b_0", "W_1", "b_1", "W_out", "b_out"]
    assert list(P) == list(layered.param_names(2))
    assert {k: v.shape for k, v in P.items()} == {
        "W_0": (5, 3), "b_0": (5,), "W_1": (2, 5), "b_1": (2,), "W_out": (4, 2), "b_out": (4,)}
    assert all(v.dtype == np.float64 for v in P.values())
    assert not P["b_0"].any()  # bias_scale 0 by default
    Q = layered.init_params([3, 5, 2], 4, seed=3)
    assert all(np.array_equal(P[k], Q[k]) for k in P)
    R = layered.init_params([3, 5, 2], 4, seed=4)
    assert not np.array_equal(P["W_0"], R["W_0"])
    assert layered.widths_of(P) == ((3, 5, 2), 4)
    U = layered.init_params([3, 5, 2], 4, seed=3, scale=0.0)
    assert not U["W_1"].any()


def test_forward_trajectory_shapes_and_values():
    prob = _fixed_problem()
    traj = layered.forward(prob.params, prob.x0, **prob.act_kwargs)
    assert traj.T == 3 and traj.B == 4 and traj.widths == (3, 5, 2, 4)
    assert [a.shape for a in traj.x] == [(4, 3), (4, 5), (4, 2), (4, 4)]
    assert [a.shape for a in traj.z] == [(4, 5), (4, 2), (4, 4)]
    assert traj.o.shape == traj.yhat.shape == (4, 3)
    # eq. (1) written out independently for layer 1 and the output
    P = prob.params
    assert_allclose(traj.x[2], np.tanh(traj.x[1] @ P["W_1"].T + P["b_1"]), rtol=1e-15)
    o = traj.x[3] @ P["W_out"].T + P["b_out"]
    assert_allclose(traj.yhat, 1.0 / (1.0 + np.exp(-o)), rtol=1e-13)


# ----------------------------------------------------------------------------- gradients
@given(testing.layered_problems())
def test_gradients_match_finite_differences(prob):
    prob.assume_off_kinks()
    s = prob.sweep()
    opts = prob.fd_options()
    num = check.numerical_gradients(prob.loss, prob.params, **opts)
    # the input adjoint too: dF/dx_0 = -lam_x0 / B
    x0 = prob.x0.copy()
    num["x0"] = check.numerical_gradient(
        lambda: layered.loss(prob.params, x0, prob.y, **prob.kwargs), x0, **opts)
    errs = _errors(dict(s.grads, x0=s.grad_x0), num, s.F, **opts)
    assert max(errs.values()) < TOL, errs
    assert float(s.F) == pytest.approx(float(prob.loss()), rel=1e-14)


def test_zero_layers_is_a_single_output_layer():
    prob = _fixed_problem(widths=(4,), l=2, output="softmax", loss="cross_entropy")
    prob.y = backend.asarray(np.array([0, 1, 1, 0]), dtype="int64")
    s = prob.sweep()
    assert s.adj.lam == [] and s.traj.T == 0
    check.assert_gradients(prob.loss, prob.params, s.grads)
    assert_allclose(s.adj.lam_x0, s.adj.delta_out @ prob.params["W_out"])


def test_adjoint_and_gradients_are_pure():
    prob = _fixed_problem()
    s = prob.sweep()
    again = layered.adjoint(prob.params, s.traj, s.adj.delta)  # delta instead of delta_out
    for a, b in zip(s.adj.lam + [s.adj.lam_x0], again.lam + [again.lam_x0]):
        assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    g2 = layered.gradients(prob.params, s.traj, again)
    assert all(check.rel_error(s.grads[k], g2[k]) < 1e-13 for k in s.grads)
    F, grads = layered.loss_and_grad(prob.params, prob.x0, prob.y, **prob.kwargs)
    assert list(grads) == list(prob.params) and float(F) == float(s.F)


# ----------------------------------------------------------------------------- Lagrangian
@given(testing.layered_problems())
def test_lagrangian_stationary_in_states_and_prediction_at_adjoint_solution(prob):
    """JP eq. (4): dL/dx_i = 0 for i = 1..T and dL/dyhat = 0 at the adjoint solution."""
    prob.assume_off_kinks()
    s = prob.sweep()
    res = _stationarity_residuals(prob, s)
    assert max(res.values()) < STATIONARY_TOL, res


@given(testing.layered_problems(), st.floats(0.01, 0.3))
def test_lagrangian_partials_in_multipliers_are_constraint_residuals(prob, jitter):
    """dL/dlambda_i = (x_{i+1} - h_i(x_i)) / B and dL/ddelta = (yhat - h_out(x_T)) / B: zero on
    the forward solution (where L = F for any multipliers), nonzero off it."""
    prob.assume_off_kinks()
    s = prob.sweep()
    rng = backend.host_rng(prob.seed + 2)
    B = s.traj.B
    lam = [backend.asarray(rng.standard_normal(a.shape)) for a in s.adj.lam]
    delta = backend.asarray(rng.standard_normal(s.traj.yhat.shape))
    # on the forward solution: residuals exactly zero, L = F, all partials in lam/delta vanish
    r, r_out = layered.residuals(prob.params, prob.x0, s.traj.x[1:], s.traj.yhat,
                                 **prob.act_kwargs)
    assert all(not a.any() for a in r) and not r_out.any()
    f = lambda: _lagrangian_at(prob, s, lam=lam, delta=delta)  # noqa: E731
    assert float(f()) == pytest.approx(float(s.F), rel=1e-12, abs=1e-14)
    for v in lam + [delta]:  # (the stencil on a constant leaves ~eps |L| / h of round-off)
        g = check.numerical_gradient(f, v)
        assert float(np.abs(g).max()) < 1e-10 * max(1.0, abs(float(s.F)))
    # off it (states and prediction moved): the partials are the residuals / B
    xs = [a + jitter * backend.asarray(rng.standard_normal(a.shape)) for a in s.traj.x[1:]]
    yhat = s.traj.yhat + jitter * 0.1 * s.traj.yhat * (1.0 - s.traj.yhat) \
        if prob.loss_name != "mse" else s.traj.yhat + jitter
    r, r_out = layered.residuals(prob.params, prob.x0, xs, yhat, **prob.act_kwargs)
    g = lambda: _lagrangian_at(prob, s, xs=xs, yhat=yhat, lam=lam, delta=delta)  # noqa: E731
    for v, want in zip(lam + [delta], r + [r_out]):
        num = check.numerical_gradient(g, v)
        assert check.rel_error(num, want / B) < TOL
    assert float(np.abs(r_out).max()) > 0


@given(testing.layered_problems())
def test_lagrangian_parameter_partials_equal_loss_gradient(prob):
    """At the adjoint solution, dL/dtheta with x, yhat, lambda, delta frozen equals dF/dtheta."""
    prob.assume_off_kinks()
    s = prob.sweep()
    # a saturated head (yhat within 1e-8 of 0 or 1; hypothesis found o = -33, yhat = 3e-15) makes
    # the multiplier delta = dF/dyhat ~ 1e14, and the difference quotient of delta (yhat -
    # sigma_out(o)) loses every digit to cancellation: a property of the stencil, not of L
    yh = backend.to_numpy(s.traj.yhat)
    assume(prob.loss_name == "mse" or (yh.min() > 1e-8 and (prob.loss_name != "bce"
                                                            or (1.0 - yh).min() > 1e-8)))
    opts = prob.fd_options()
    num_L = check.numerical_gradients(lambda P: _lagrangian_at(prob, s, params=P), prob.params,
                                      **opts)
    num_F = check.numerical_gradients(prob.loss, prob.params, **opts)
    errs = _errors(num_L, num_F, s.F, **opts)
    assert max(errs.values()) < TOL, errs
    errs = _errors(s.grads, num_L, s.F, **opts)
    assert max(errs.values()) < TOL, errs


# ----------------------------------------------------------------------------- vs the RNN
@given(st.integers(1, 5), st.integers(1, 4), st.integers(1, 3), testing.hidden_activations(),
       testing.heads(), testing.seeds())
def test_equal_widths_and_shared_weights_reproduce_the_rnn(m, T, B, act, head, seed):
    """x_{i+1} = sigma(W x_i + b) is the RNN of JP eq. (5) with u = 0; lam[i] is rnn's lam[i]."""
    output, loss_name = head
    l = 3 if output == "softmax" else 2
    R = rnn.init_params(1, m, l, seed=seed, bias_scale=0.3)
    P = {}
    for i in range(T):
        P["W_%d" % i], P["b_%d" % i] = R["W_rec"], R["b1"]
    P["W_out"], P["b_out"] = R["W_out"], R["b2"]
    rng = backend.host_rng(seed)
    x0 = backend.asarray(rng.standard_normal((B, m)))
    y = (backend.asarray(rng.integers(0, l, size=(B,)), dtype="int64")
         if loss_name == "cross_entropy" else backend.asarray(rng.uniform(0.1, 0.9, size=(B, l))))
    kw = dict(activation=act, output=output, loss=loss_name)
    s = layered.sweep(P, x0, y, **kw)
    r = rnn.sweep(R, backend.asarray(np.zeros((T, B, 1))), y, x0=x0, **kw)
    assert float(s.F) == pytest.approx(float(r.F), rel=1e-13)
    for i in range(T):
        assert_allclose(s.traj.x[i + 1], r.traj.x[i + 1], rtol=1e-13, atol=1e-15)
        assert_allclose(s.adj.lam[i], r.adj.lam[i], rtol=1e-12, atol=1e-15)
    assert_allclose(s.grad_x0, r.grad_x0, rtol=1e-12, atol=1e-15)
    assert check.rel_error(sum(s.grads["W_%d" % i] for i in range(T)), r.grads["W_rec"]) < 1e-12
    assert check.rel_error(sum(s.grads["b_%d" % i] for i in range(T)), r.grads["b1"]) < 1e-12
    assert check.rel_error(s.grads["W_out"], r.grads["W_out"]) < 1e-12
    assert check.rel_error(s.grads["b_out"], r.grads["b2"]) < 1e-12
    assert not r.grads["W_in"].any()  # unused with u = 0: exactly zero


# ----------------------------------------------------------------------------- mutations
@pytest.mark.parametrize("name", ["W_0", "b_1", "W_out", "b_out"])
def test_gradient_off_by_five_hundredths_percent_fails_the_check(name):
    prob = _fixed_problem()
    F, grads = layered.loss_and_grad(prob.params, prob.x0, prob.y, **prob.kwargs)
    assert check.gradients(prob.loss, prob.params, grads).ok
    bad = dict(grads)
    bad[name] = grads[name] * 1.0005
    rep = check.gradients(prob.loss, prob.params, bad, names=[name])
    assert not rep.ok and rep.errors[name] > 4e-4, rep
    with pytest.raises(AssertionError, match=name):
        check.assert_gradients(prob.loss, prob.params, bad, names=[name])


@pytest.mark.parametrize("i", [0, 1, 2])
def test_multiplier_off_by_five_hundredths_percent_breaks_stationarity(i):
    prob = _fixed_problem()
    s = prob.sweep()
    assert max(_stationarity_residuals(prob, s).values()) < STATIONARY_TOL
    lam = [a.copy() for a in s.adj.lam]
    lam[i] = lam[i] * 1.0005
    res = _stationarity_residuals(prob, s, lam=lam)
    assert res["x_%d" % (i + 1)] > 1e3 * STATIONARY_TOL, res


# ----------------------------------------------------------------------------- bad input
def _params():
    return layered.init_params([3, 5, 2], 4, seed=0)


def test_bad_params_raise_with_the_shapes():
    x0 = np.zeros((2, 3))
    P = _params()
    P["W_1"] = np.zeros((2, 6))
    with pytest.raises(ValueError, match=r"params\['W_1'\] has shape \(2, 6\), expected \(2, 5\)"):
        layered.forward(P, x0)
    P = _params()
    P["b_0"] = np.zeros(4)
    with pytest.raises(ValueError, match=r"params\['b_0'\] has shape \(4,\), expected \(5,\)"):
        layered.forward(P, x0)
    P = _params()
    P["W_out"] = np.zeros((4, 5))
    with pytest.raises(ValueError, match=r"params\['W_out'\] has shape \(4, 5\), "
                                         r"expected \(4, 2\)"):
        layered.forward(P, x0)
    P = _params()
    del P["b_1"]
    with pytest.raises(ValueError, match=r"lack b_1"):
        layered.forward(P, x0)
    P = _params()
    P["W_3"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"unexpected key\(s\) W_3"):
        layered.forward(P, x0)
    P = _params()
    P["W_0"] = np.zeros((5, 3), dtype=np.int64)
    with pytest.raises(TypeError, match=r"params\['W_0'\] must be a floating-point array"):
        layered.forward(P, x0)
    P = _params()
    P["b_0"] = np.zeros((5, 1))
    with pytest.raises(ValueError, match=r"params\['b_0'\] must be a 1-d array, "
                                         r"got shape \(5, 1\)"):
        layered.forward(P, x0)
    with pytest.raises(TypeError, match="params must be a mapping"):
        layered.forward([1, 2], x0)


def test_bad_x0_raises_with_expected_and_actual_shape():
    P = _params()
    with pytest.raises(ValueError, match=r"x0 must be a 2-d array \(B, m_0\), got shape \(3,\)"):
        layered.forward(P, np.zeros(3))
    with pytest.raises(ValueError, match=r"x0: axis 1 \(m_0, input width\) has length 4, "
                                         r"but params\['W_0'\] has 3 columns"):
        layered.forward(P, np.zeros((2, 4)))
    with pytest.raises(TypeError, match=r"x0 must be a floating-point array, got an integer"):
        layered.forward(P, np.zeros((2, 3), dtype=np.int32))
    with pytest.raises(ValueError, match=r"x0 contains 1 non-finite"):
        layered.forward(P, np.array([[0.0, np.nan, 1.0]]))
    with pytest.raises(ValueError, match=r"y: expected shape \(2, 4\)"):
        layered.loss(P, np.zeros((2, 3)), np.zeros((3, 4)))


def test_unknown_activation_or_head_raises():
    P, x0 = _params(), np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"unknown activation 'tanhh': valid names are tanh"):
        layered.forward(P, x0, activation="tanhh")
    with pytest.raises(ValueError, match=r"unknown activation 'softmax' \(softmax is only"):
        layered.forward(P, x0, activation="softmax")
    with pytest.raises(ValueError, match=r"unknown output 'sigmod'"):
        layered.forward(P, x0, output="sigmod")
    with pytest.raises(ValueError, match=r"loss='bce' needs output in \['sigmoid'\]"):
        layered.loss_and_grad(P, x0, np.zeros((2, 4)), output="tanh", loss="bce")


def test_bad_lagrangian_and_adjoint_arguments_raise():
    prob = _fixed_problem()
    s = prob.sweep()
    with pytest.raises(ValueError, match=r"xs must hold 3 arrays"):
        _lagrangian_at(prob, s, xs=s.traj.x)  # x_0..x_T instead of x_1..x_T
    with pytest.raises(TypeError, match=r"xs must be a list of 3 arrays"):
        _lagrangian_at(prob, s, xs=s.traj.x[1])
    bad = list(s.adj.lam)
    bad[1] = np.zeros((4, 5))
    with pytest.raises(ValueError, match=r"lam\[1\] must have shape \(B, m_2\) = \(4, 2\), "
                                         r"got \(4, 5\)"):
        _lagrangian_at(prob, s, lam=bad)
    with pytest.raises(ValueError, match=r"delta must have shape \(B, l\) = \(4, 3\), "
                                         r"got \(4, 2\)"):
        _lagrangian_at(prob, s, delta=np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"yhat must be a 2-d array"):
        _lagrangian_at(prob, s, yhat=np.zeros(3))
    with pytest.raises(TypeError, match="exactly one of delta"):
        layered.adjoint(prob.params, s.traj)
    with pytest.raises(ValueError, match=r"delta must have the shape of traj.yhat \(4, 3\), "
                                         r"got \(4, 2\)"):
        layered.adjoint(prob.params, s.traj, np.zeros((4, 2)))
    other = layered.init_params([3, 5, 3, 4], 3)
    with pytest.raises(ValueError, match=r"traj has widths \(3, 5, 2, 4\)"):
        layered.adjoint(other, s.traj, s.adj.delta)
    with pytest.raises(TypeError, match="adj must be the Adjoint"):
        layered.gradients(prob.params, s.traj, s.adj.lam)


def test_bad_init_params_arguments_raise():
    with pytest.raises(ValueError, match=r"widths\[1\] \(m_1\) must be a positive integer, got 0"):
        layered.init_params([3, 0, 2], 1)
    with pytest.raises(TypeError, match="widths must be a sequence"):
        layered.init_params(5, 1)
    with pytest.raises(ValueError, match=r"l must be a positive integer, got 0"):
        layered.init_params([3, 2], 0)
