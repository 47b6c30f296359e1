"""The GRU cell (X-GRU): BPTT through the reset and update gates against central differences, and
what the equations say when a gate is shut or wide open.

Cases come from the strategy every cell test shares (``manualgrad.testing.cell_problems("gru")``):
T 1..6, B 1..4, p 1..4, m 1..5, l 1..4, every head of ``manualgrad.testing.HEADS``,
many-to-one/many, state0 given or not, weights scaled by s in [0.3, 1.5], biases N(0, 0.3^2).
Checks are float64 with the 4-point stencil (2-point near relu heads), relative error below
``check.TOLERANCES["float64"]`` (1e-7) with the finite-difference floor of ``manualgrad.check``;
two implementations of one computation agree to ``check.AGREEMENT["float64"]`` (1e-12).
Runs on every backend (``python -m pytest --backend strict tests/test_gru.py``).
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manualgrad import backend, check, inspect, rnn, testing
from manualgrad.cells import gru

TOL = check.TOLERANCES["float64"]
AGREE = check.AGREEMENT["float64"]
SHUT, OPEN = -800.0, 800.0
"""Gate biases that saturate sigmoid exactly: (1 + tanh(a/2)) / 2 is 0.0 and 1.0 in float64."""


def _host(a):
    return backend.to_numpy(a)


def _with_gate_bias(params, gate, value):
    """params with the input-side bias of gate r or z set to ``value`` (a fresh b)."""
    m = params["W_out"].shape[1]
    j = gru.GATES.index(gate)
    b = params["b"].copy()
    b[j * m:(j + 1) * m] = value
    return dict(params, b=b)


# ------------------------------------------------------------------------- derivatives vs FD

@given(prob=testing.cell_problems("gru"))
def test_parameter_gradients_match_finite_differences(prob):
    """dF/dW (both column blocks, all three gate blocks), dF/db, dF/db_hn, dF/dW_out, dF/db2:
    every head, many-to-one/many, state0 or not."""
    prob.assume_off_kinks()
    F, grads = prob.loss_and_grad()
    assert set(grads) == set(gru.PARAM_NAMES)
    rep = check.gradients(prob.loss, prob.params, grads, **prob.fd_options())
    assert rep.max_error < TOL, "\n%s\n%s" % (prob, rep)
    assert abs(float(F) - float(prob.loss())) < 1e-12


@given(prob=testing.cell_problems("gru", state0=True))
def test_initial_state_gradient_matches_finite_differences(prob):
    """grad_state0 = {h0: -lam0/B} against central differences in h_0."""
    prob.assume_off_kinks()
    s = prob.sweep()
    assert set(s.grad_state0) == {"h0"}
    S = {"h0": prob.state0["h0"].copy()}
    num = check.numerical_gradient(lambda: prob.loss(state0=S), S["h0"], **prob.fd_options())
    err = check.fd_error(s.grad_state0["h0"], num, s.F, **prob.fd_options())
    assert err < TOL, err
    assert check.rel_error(s.grad_state0["h0"], -s.adj.lam0 / prob.u.shape[1]) == 0.0


@given(prob=testing.cell_problems("gru"))
def test_adjoints_are_minus_B_dF_dh_k(prob):
    """adj.lam[k-1] = -B dF/dh_k, probed by restarting the forward at step k from h_k and running
    u_{k+1..T} (many-to-many adds step k's own output loss, which reads h_k)."""
    prob.assume_off_kinks()
    s = prob.sweep()
    T, B = prob.u.shape[:2]
    P = prob.params
    for k in sorted({1, T // 2, T - 1} & set(range(1, T))):  # k = T: checked below
        S = {"h0": s.traj.h[k].copy()}
        y_rest = prob.y[k:] if prob.many_to_many else prob.y

        def F_from():
            F = gru.loss(P, prob.u[k:], y_rest, **dict(prob.kwargs, state0=S))
            if prob.many_to_many:
                o = S["h0"] @ P["W_out"].T + P["b2"]
                F = F + s.head.value(o, s.head.output.f(o), s.y[k - 1]).mean()
            return F
        g = check.numerical_gradient(F_from, S["h0"], **prob.fd_options())
        err = check.fd_error(s.adj.lam[k - 1], -B * g, B * F_from(), **prob.fd_options())
        assert err < TOL, (k, err)
    hT = s.traj.h[T]  # lam_T is the head's alone
    o = hT @ P["W_out"].T + P["b2"]
    lamT = s.head.delta_out(o, s.head.output.f(o), s.y[T - 1] if prob.many_to_many else s.y) \
        @ P["W_out"]
    assert check.rel_error(s.adj.lam[T - 1], lamT) < AGREE


@settings(max_examples=20)
@given(prob=testing.cell_problems("gru", max_T=40, min_T=10,
                                  head=(("sigmoid", "bce"), ("identity", "mse"))))
def test_dot_product_test_on_longer_sequences(prob):
    """<grad, v> against the central difference along a random direction, T = 10..40."""
    F, grads = prob.loss_and_grad()
    err, a, n = check.dot_product_test(prob.loss, prob.params, grads, seed=prob.seed % 1000)
    assert err < TOL, (a, n)


@settings(max_examples=10)
@given(prob=testing.cell_problems("gru", head=(("sigmoid", "bce"),), state0=True))
def test_checker_catches_a_gradient_that_is_0p05_percent_wrong(prob):
    """Every parameter and the initial-state gradient scaled by 1.0005 fail the check (gradients
    below the FD floor fd_atol / tol are resolved only absolutely, and skipped)."""
    s = prob.sweep()
    floor = check.fd_atol(s.F) / TOL
    for name in gru.PARAM_NAMES:
        if float(np.linalg.norm(s.grads[name])) <= floor:
            continue
        bad = dict(s.grads)
        bad[name] = s.grads[name] * 1.0005
        rep = check.gradients(prob.loss, prob.params, bad, names=[name])
        assert not rep.ok and rep.errors[name] > 4e-4, rep
    g = s.grad_state0["h0"]
    if float(np.linalg.norm(g)) > floor:
        S = {"h0": prob.state0["h0"].copy()}
        num = check.numerical_gradient(lambda: prob.loss(state0=S), S["h0"])
        assert check.fd_error(g * 1.0005, num, s.F) > 4e-4


# ------------------------------------------------------------------------- the equations

def _reference(params, u, h0):
    """The GRU in PyTorch's form (torch.nn.GRU docs), one line per equation, host NumPy:
    r = sigmoid(W_ir u + b_ir + W_hr h + b_hr), z' = sigmoid(W_iz u + b_iz + W_hz h + b_hz),
    n = tanh(W_in u + b_in + r o (W_hn h + b_hn)), h' = (1 - z') o n + z' o h.
    Our W, b with the z rows negated are PyTorch's (z' = 1 - z), b_hr = b_hz = 0."""
    W, b, b_hn = (_host(params[k]) for k in ("W", "b", "b_hn"))
    m = b_hn.shape[0]
    W = W.copy()
    b = b.copy()
    W[m:2 * m] *= -1.0
    b[m:2 * m] *= -1.0
    Wh, Wx = W[:, :m], W[:, m:]
    sig = lambda a: 1.0 / (1.0 + np.exp(-a))  # noqa: E731
    hs = [h0]
    for u_t in _host(u):
        h = hs[-1]
        r = sig(u_t @ Wx[:m].T + b[:m] + h @ Wh[:m].T)
        zp = sig(u_t @ Wx[m:2 * m].T + b[m:2 * m] + h @ Wh[m:2 * m].T)
        n = np.tanh(u_t @ Wx[2 * m:].T + b[2 * m:] + r * (h @ Wh[2 * m:].T + b_hn))
        hs.append((1.0 - zp) * n + zp * h)
    return np.stack(hs)


@settings(max_examples=30)
@given(prob=testing.cell_problems("gru", state0=True))
def test_forward_is_cho_et_al_with_the_reset_gate_on_the_product_and_torch_with_z_flipped(prob):
    """h_k against an independent host implementation of PyTorch's equations with the z rows of
    W and b negated (our h_t = (1 - z) h_{t-1} + z n is theirs with z -> 1 - z); the stored gates
    and the s_k = W_hn h_{k-1} + b_hn are those of the module docstring."""
    traj = prob.forward()
    m = traj.m
    ref = _reference(prob.params, prob.u, _host(prob.state0["h0"]))
    assert check.rel_error(_host(traj.h), ref) < AGREE
    H = _host(traj.h)
    W, b, b_hn = (_host(prob.params[k]) for k in ("W", "b", "b_hn"))
    r, z, n = (_host(traj.gate(g)) for g in gru.GATES)
    s = H[:-1] @ W[2 * m:, :m].T + b_hn
    assert check.rel_error(_host(traj.s), s) < AGREE
    assert np.all((0.0 <= r) & (r <= 1.0) & (0.0 <= z) & (z <= 1.0) & (np.abs(n) <= 1.0))
    assert check.rel_error(H[1:], (1.0 - z) * H[:-1] + z * n) < AGREE


@settings(max_examples=30)
@given(prob=testing.cell_problems("gru", many_to_many=False, state0=True))
def test_shut_update_gate_keeps_the_state_and_passes_the_adjoint_unchanged(prob):
    """z = 0 everywhere (b_z = -800, sigmoid exactly 0): h_k = h_0 for every k, bit for bit;
    lam_k = lam_T for every k; every gate gradient (W, b, b_hn) is exactly zero; dF/dh_0 = -lam_T/B.
    Fails if z multiplied h_{t-1} (PyTorch's orientation) or the direct path were missing."""
    P = _with_gate_bias(prob.params, "z", SHUT)
    s = gru.sweep(P, prob.u, prob.y, **dict(prob.kwargs))
    T, B = prob.u.shape[:2]
    assert not np.any(_host(s.traj.gate("z")))
    H = _host(s.traj.h)
    assert np.array_equal(H, np.broadcast_to(H[0], H.shape))
    lam = _host(s.adj.lam)
    assert np.array_equal(lam, np.broadcast_to(lam[T - 1], lam.shape))
    assert np.array_equal(_host(s.adj.lam0), lam[T - 1])
    for k in ("W", "b", "b_hn"):
        assert not np.any(_host(s.grads[k])), k
    assert check.rel_error(s.grad_state0["h0"], -s.adj.lam[T - 1] / B) == 0.0


@settings(max_examples=30)
@given(prob=testing.cell_problems("gru"))
def test_open_gates_make_the_gru_the_vanilla_rnn(prob):
    """r = z = 1 everywhere (b_r = b_z = +800): h_t = n_t = tanh(W_hn h_{t-1} + W_xn u_t + b_n +
    b_hn), the RNN of JP eq. (5) with W_rec = W_hn, W_in = W_xn, b1 = b_n + b_hn. Loss, states,
    adjoints and gradients agree with manualgrad.rnn (dF/db_n = dF/db_hn = dF/db1); the r and z
    blocks of the gradients are exactly zero (sigmoid' = 0 at saturation)."""
    P = _with_gate_bias(_with_gate_bias(prob.params, "r", OPEN), "z", OPEN)
    m = P["W_out"].shape[1]
    m2 = 2 * m
    R = {"W_rec": P["W"][m2:, :m], "W_in": P["W"][m2:, m:], "b1": P["b"][m2:] + P["b_hn"],
         "W_out": P["W_out"], "b2": P["b2"]}
    x0 = None if prob.state0 is None else prob.state0["h0"]
    kw = dict(output=prob.output, loss=prob.loss_name, many_to_many=prob.many_to_many)
    g = gru.sweep(P, prob.u, prob.y, state0=prob.state0, **kw)
    v = rnn.sweep(R, prob.u, prob.y, x0=x0, activation="tanh", **kw)
    assert abs(float(g.F) - float(v.F)) <= AGREE * max(1.0, abs(float(v.F)))
    assert check.rel_error(g.traj.h, v.traj.x) < AGREE
    assert check.rel_error(g.adj.lam, v.adj.lam) < AGREE
    assert check.rel_error(g.adj.lam0, v.adj.lam0) < AGREE
    for ours, theirs in ((g.grads["W"][m2:, :m], "W_rec"), (g.grads["W"][m2:, m:], "W_in"),
                         (g.grads["b"][m2:], "b1"), (g.grads["b_hn"], "b1"),
                         (g.grads["W_out"], "W_out"), (g.grads["b2"], "b2")):
        assert check.rel_error(ours, v.grads[theirs]) < AGREE, theirs
    assert not np.any(_host(g.grads["W"][:m2])) and not np.any(_host(g.grads["b"][:m2]))
    if x0 is not None:
        assert check.rel_error(g.grad_state0["h0"], v.grad_x0) < AGREE


@settings(max_examples=30)
@given(prob=testing.cell_problems("gru"))
def test_shut_reset_gate_cuts_the_recurrent_candidate_term(prob):
    """r = 0 (b_r = -800): n_t = tanh(W_xn u_t + b_n) whatever h_{t-1}, so W_hn and b_hn get
    exactly zero gradient (in the cuDNN form b_hn sits inside the reset product; in Cho et al.'s
    form, W_hn (r o h), W_hn would too, and there is no b_hn)."""
    P = _with_gate_bias(prob.params, "r", SHUT)
    m = P["W_out"].shape[1]
    s = gru.sweep(P, prob.u, prob.y, **prob.kwargs)
    assert not np.any(_host(s.grads["W"][2 * m:, :m])) and not np.any(_host(s.grads["b_hn"]))
    assert not np.any(_host(s.adj.lam_q[..., 2 * m:]))


@given(prob=testing.cell_problems("gru"), B2=st.integers(1, 3))
def test_adjoints_are_per_example_and_gradients_a_batch_mean(prob, B2):
    """Repeating the batch B2 times leaves F, the gradients and every adjoint norm unchanged
    (the adjoints are those of F_b, the gradients divide by B)."""
    xp = backend.xp()
    reps = (1, B2, 1)
    u2 = xp.tile(prob.u, reps)
    y_reps = reps[:prob.y.ndim] if prob.many_to_many else (B2,) + (1,) * (prob.y.ndim - 1)
    y2 = xp.tile(prob.y, y_reps)
    s0 = None if prob.state0 is None else {"h0": xp.tile(prob.state0["h0"], (B2, 1))}
    kw = dict(prob.kwargs, state0=s0)
    a, b = prob.sweep(), gru.sweep(prob.params, u2, y2, **kw)
    assert abs(float(a.F) - float(b.F)) <= AGREE * max(1.0, abs(float(a.F)))
    for k in gru.PARAM_NAMES:
        assert check.rel_error(a.grads[k], b.grads[k]) < AGREE, k
    na, nb = inspect.adjoint_norms(a.adj), inspect.adjoint_norms(b.adj)
    assert np.allclose(na.mean, nb.mean, rtol=AGREE, atol=0.0)


# ------------------------------------------------------------------------- init and validation

def test_init_params_shapes_update_bias_and_seed():
    P = gru.init_params(3, 4, 2, seed=7, update_bias=-1.0)
    assert {k: tuple(v.shape) for k, v in P.items()} == {
        "W": (12, 7), "b": (12,), "b_hn": (4,), "W_out": (2, 4), "b2": (2,)}
    b = _host(P["b"])
    assert np.all(b[4:8] == -1.0) and not np.any(b[:4]) and not np.any(b[8:])
    Q = gru.init_params(3, 4, 2, seed=7)
    assert np.array_equal(_host(P["W"]), _host(Q["W"]))
    assert not np.array_equal(_host(Q["W"]), _host(gru.init_params(3, 4, 2, seed=8)["W"]))
    assert abs(float(_host(Q["W"]).std()) - 1 / np.sqrt(7)) < 0.15  # 1/sqrt(m + p)


def test_bad_input_is_refused_with_clear_errors():
    P = gru.init_params(2, 3, 1, seed=0)
    u, y = backend.asarray(np.zeros((4, 2, 2))), backend.asarray(np.zeros((2, 1)))
    for bad, match in (
            (dict(P, W=P["W"][:8]), r"params\['W'\] has shape \(8, 5\), expected \(3m"),
            (dict(P, b_hn=P["b"]), r"params\['b_hn'\] has shape \(9,\), expected \(3,\)"),
            (dict(P, b=P["b_hn"]), r"params\['b'\] has shape \(3,\), expected \(9,\)")):
        with pytest.raises(ValueError, match=match):
            gru.loss_and_grad(bad, u, y)
    with pytest.raises(ValueError, match="params"):
        gru.loss({k: v for k, v in P.items() if k != "b_hn"}, u, y)
    with pytest.raises(ValueError, match="unknown key.*c0.*the state of this cell is h0"):
        gru.sweep(P, u, y, state0={"c0": backend.asarray(np.zeros(3))})
    with pytest.raises(ValueError, match=r"state0\['h0'\] must have shape \(B, m\) = \(2, 3\)"):
        gru.forward(P, u, state0={"h0": backend.asarray(np.zeros((2, 4)))})
    with pytest.raises(ValueError, match="u: axis 2"):
        gru.forward(P, backend.asarray(np.zeros((4, 2, 3))))
    with pytest.raises(ValueError, match="update_bias must be a finite number"):
        gru.init_params(2, 3, 1, update_bias=float("inf"))
    traj = gru.forward(P, u)
    with pytest.raises(ValueError, match="gate must be one of r, z, n"):
        traj.gate("f")
    with pytest.raises(IndexError, match=r"h_k: step k must be an integer in \[0, 4\], got 5"):
        traj.h_at(5)
