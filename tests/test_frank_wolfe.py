"""FW eq. (7) (the LMO over the Lp ball), FW eqs. (5)-(6) and Algorithm 1 (FrankWolfe), FW-A5
(the angle diagnostic), and Frank-Wolfe driven by train.fit with every cell, clipping and TBPTT."""
import functools
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from manualgrad import backend, cells, optim, rnn, tbptt, testing, train
from manualgrad.optim import FrankWolfe, fw_angle, lmo, lmo_params, step_decay
from manualgrad.optim.frank_wolfe import dual_exponent, norm

PS = (1.0, 1.5, 2.0, 3.0, math.inf)


def _norm(a, p):
    """||a||_p on the host, scaled by max|a| (an independent reference for the tests)."""
    a = np.abs(np.asarray(a, dtype=float)).ravel()
    m = a.max() if a.size else 0.0
    if m == 0.0:
        return 0.0
    if p == math.inf:
        return m
    return m * np.sum((a / m) ** p) ** (1.0 / p)


def _grad(seed, n, log_scale, zeros):
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(n) * rng.uniform(0.1, 10.0, n)
    g[rng.random(n) < zeros] = 0.0
    return g * 10.0 ** log_scale


# ------------------------------------------------------------------------ FW eq. (7): the LMO
def test_lmo_closed_forms_for_p_1_2_inf():
    g = np.array([3.0, -4.0, 0.0, 1.0])
    assert np.array_equal(lmo(g, p=1, delta=2.0), [0.0, 2.0, 0.0, 0.0])       # one coordinate
    assert np.allclose(lmo(g, p=2, delta=2.0), -2.0 * g / np.sqrt(26.0), rtol=1e-15)
    assert np.array_equal(lmo(g, p=math.inf, delta=2.0), [-2.0, 2.0, 0.0, -2.0])
    assert np.array_equal(lmo(g, p="inf", delta=2.0), lmo(g, p=math.inf, delta=2.0))
    # general p: -delta sign(g) |g|^(q-1) / ||g||_q^(q-1), q = p / (p - 1)
    p, q = 3.0, 1.5
    want = -2.0 * np.sign(g) * np.abs(g) ** (q - 1) / _norm(g, q) ** (q - 1)
    assert np.allclose(lmo(g, p=p, delta=2.0), want, rtol=1e-14, atol=0)
    # p = 1 with ties: the first coordinate of largest |g_i|, sign opposite to g_i
    assert np.array_equal(lmo(np.array([-5.0, 5.0]), p=1), [1.0, 0.0])
    assert dual_exponent(1) == math.inf and dual_exponent(math.inf) == 1.0
    assert dual_exponent(4) == pytest.approx(4 / 3)


@settings(max_examples=60)
@given(seed=testing.seeds(), n=st.integers(1, 12), p=st.sampled_from(PS),
       log_scale=st.integers(-200, 200), zeros=st.sampled_from((0.0, 0.5)),
       delta=st.floats(1e-3, 1e3))
def test_lmo_is_on_the_sphere_attains_minus_delta_dual_norm_and_beats_feasible_points(
        seed, n, p, log_scale, zeros, delta):
    g = _grad(seed, n, log_scale, zeros)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = lmo(g, p=p, delta=delta)
    assert s.shape == g.shape and np.all(np.isfinite(s))
    if not np.any(g):
        assert not np.any(s)
        return
    q = dual_exponent(p)
    gm = np.abs(g).max()
    assert _norm(s, p) == pytest.approx(delta, rel=1e-12)                        # boundary
    assert float(s @ (g / gm)) == pytest.approx(-delta * _norm(g / gm, q), rel=1e-12)
    # <s, g> <= <s', g> for random points s' of the ball (directions scaled into it)
    rng = np.random.default_rng(seed + 1)
    for _ in range(20):
        v = rng.standard_normal(n) * (rng.random(n) < rng.uniform(0.2, 1.0))
        if not np.any(v):
            continue
        v *= delta * rng.uniform(0.0, 1.0) ** (1.0 / n) / _norm(v, p)
        assert float(s @ (g / gm)) <= float(v @ (g / gm)) + 1e-12 * delta * _norm(g / gm, q)


@pytest.mark.parametrize("p", [1 + 1e-12, 1.0 + 1e-6, 1.001, 50.0, 1e6])
@pytest.mark.parametrize("scale", [1e-300, 1e-20, 1.0, 1e300])
def test_lmo_is_stable_for_extreme_p_and_gradient_scales(p, scale):
    g = np.array([1.0, -0.999, 0.5, 1e-3, 0.0]) * scale
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = lmo(g, p=p, delta=0.5)
    assert np.all(np.isfinite(s)) and s[-1] == 0.0
    assert _norm(s, p) == pytest.approx(0.5, rel=1e-9)
    assert np.all(np.sign(s[:4]) == -np.sign(g[:4])) or p < 1.01  # p near 1: tail underflows
    if p < 1.001:   # almost all the mass on the largest entries, as for p = 1
        assert abs(s[0]) > 0.3


def test_lmo_zero_gradient_gives_zero_without_warnings():
    for p in PS:
        with np.errstate(all="raise"):
            s = lmo(np.zeros((3, 2)), p=p, delta=1.0)
        assert s.shape == (3, 2) and not np.any(s)
    out = lmo_params({"a": np.zeros(3), "b": np.ones(2)}, p=2, delta=1.0)
    assert not np.any(out["a"]) and np.allclose(out["b"], -np.ones(2) / np.sqrt(2))
    assert lmo(np.zeros(0)).shape == (0,)


def test_lmo_keeps_shape_and_float32_and_does_not_modify_its_input():
    g = np.arange(1.0, 7.0, dtype=np.float32).reshape(2, 3).T      # not C-contiguous
    keep = g.copy()
    for p in PS:
        s = lmo(g, p=p, delta=1.0)
        assert s.shape == (3, 2) and s.dtype == np.float32
        assert _norm(s, p) == pytest.approx(1.0, rel=1e-5)
    assert np.array_equal(g, keep)
    s1 = lmo(g, p=1)
    assert s1[2, 1] == -1.0 and np.count_nonzero(s1) == 1       # largest |g| is g[2, 1] = 6


def test_lmo_params_per_tensor_and_whole_vector():
    rng = np.random.default_rng(3)
    G = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(3) * 100, "c": np.zeros(2)}
    flat = np.concatenate([G[k].ravel() for k in G])
    for p in PS:
        per = lmo_params(G, p=p, delta=0.7, per_tensor=True)
        whole = lmo_params(G, p=p, delta=0.7, per_tensor=False)
        assert list(per) == list(G) == list(whole)
        for k in G:   # per tensor: each its own ball
            assert np.array_equal(per[k], lmo(G[k], p=p, delta=0.7))
        ref = lmo(flat, p=p, delta=0.7)   # whole: the LMO of the concatenated vector
        got = np.concatenate([whole[k].ravel() for k in G])
        assert np.allclose(got, ref, rtol=1e-14, atol=0)
        assert _norm(got, p) == pytest.approx(0.7, rel=1e-12)
        q = dual_exponent(p)
        assert sum(float((per[k] * G[k]).sum()) for k in G) == pytest.approx(
            -0.7 * sum(_norm(G[k], q) for k in G), rel=1e-12)
        if p == math.inf:   # the product of inf-balls is the inf-ball
            assert all(np.array_equal(per[k], whole[k]) for k in G)
    # p = 1, whole vector: one coordinate in all the tensors (in b, the largest)
    w1 = lmo_params(G, p=1, per_tensor=False)
    assert sum(np.count_nonzero(v) for v in w1.values()) == 1 and np.count_nonzero(w1["b"]) == 1


@pytest.mark.parametrize("bad, err, msg", [
    (dict(p=0.5), ValueError, "p must be >= 1"), (dict(p=0), ValueError, "p must be >= 1"),
    (dict(p=-math.inf), ValueError, "p must be >= 1"), (dict(p=math.nan), ValueError, "p must"),
    (dict(p="two"), TypeError, "p must be a real"), (dict(p=True), TypeError, "p must be"),
    (dict(delta=0.0), ValueError, "delta must be > 0"),
    (dict(delta=-1.0), ValueError, "delta must be > 0"),
    (dict(delta=math.inf), ValueError, "delta must be > 0 and finite"),
    (dict(delta=None), TypeError, "delta must be a real")])
def test_lmo_rejects_bad_p_and_delta(bad, err, msg):
    kw = dict(p=2, delta=1.0)
    kw.update(bad)
    with pytest.raises(err, match=msg):
        lmo(np.ones(3), **kw)
    with pytest.raises(err, match=msg):
        lmo_params({"a": np.ones(3)}, **kw)


def test_lmo_rejects_bad_gradients():
    with pytest.raises(ValueError, match="non-finite"):
        lmo(np.array([1.0, np.nan]))
    with pytest.raises(TypeError, match="floating"):
        lmo(np.array([1, 2]))
    with pytest.raises(TypeError, match="array"):
        lmo([1.0, 2.0])
    with pytest.raises(TypeError, match="mapping"):
        lmo_params([np.ones(2)])
    with pytest.raises(ValueError, match=r"grads\['b'\] contains 1 non-finite"):
        lmo_params({"a": np.ones(2), "b": np.array([np.inf])})
    assert norm(np.array([3.0, -4.0])) == 5.0 and norm(np.array([3.0, -4.0]), 1) == 7.0


# ------------------------------------------------------------------------ Algorithm 1
def _toy(seed=0):
    rng = np.random.default_rng(seed)
    P = {"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(3)}
    G = {"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(3)}
    return P, G


def test_K1_p2_per_tensor_sgd_outer_is_exactly_a_normalised_gradient_step():
    P, G = _toy()
    opt = FrankWolfe(delta=0.3, eta=0.5, K=1, p=2, per_tensor=True, outer="sgd")
    assert opt.eval_point(P) == P      # omega + Delta_0 = omega
    Q = opt.step(P, G)
    for k in P:
        want = P[k] - 0.5 * 0.3 * G[k] / np.linalg.norm(G[k])
        assert np.allclose(Q[k], want, rtol=1e-15, atol=1e-15)
    # the same on a real RNN gradient
    u = np.random.default_rng(1).standard_normal((6, 4, 2))
    y = np.random.default_rng(2).uniform(0, 1, (4, 1))
    R = rnn.init_params(2, 5, 1, seed=3)
    F, g = rnn.loss_and_grad(R, u, y)
    S = FrankWolfe(delta=0.01, eta=2.0).step(R, g)
    assert all(np.allclose(S[k], R[k] - 0.02 * g[k] / np.linalg.norm(g[k]), rtol=1e-14,
                           atol=1e-16) for k in R)
    assert opt.t == 1 and opt.k == 0 and opt.angles and opt.angles[0] > 0  # per tensor != -g


def test_inner_loop_follows_eq_6_and_evaluates_at_omega_plus_delta():
    """K = 3 by hand: s_k = LMO(grad at omega + Delta_{k-1}), Delta_k = (1-1/k) Delta + s_k / k."""
    c = {"x": np.array([2.0, -1.0, 0.5])}

    def grad(P):   # F = 1/2 ||x - c||^2 + 1/4 sum x^4
        return {"x": P["x"] - c["x"] + P["x"] ** 3}
    P = {"x": np.array([0.3, 0.2, -0.1])}
    for p in (1.0, 1.5, 2.0, math.inf):
        for per_tensor in (True, False):
            opt = FrankWolfe(delta=0.4, eta=0.7, K=3, p=p, per_tensor=per_tensor, outer="sgd")
            D, seen = np.zeros(3), []
            cur = P
            for k in (1, 2, 3):
                point = opt.eval_point(cur)
                assert np.allclose(point["x"], P["x"] + D, rtol=0, atol=1e-15)
                seen.append(point["x"].copy())
                s = lmo(grad(point)["x"], p=p, delta=0.4)
                D = (1 - 1 / k) * D + s / k
                cur = opt.step(cur, grad(point))
                if k < 3:
                    assert cur is P and opt.k == k
            assert np.allclose(cur["x"], P["x"] + 0.7 * D, rtol=0, atol=1e-15)
            assert _norm(D, p) <= 0.4 * (1 + 1e-12)                      # Delta stays feasible
            # outer_step with an oracle does the same
            opt2 = FrankWolfe(delta=0.4, eta=0.7, K=3, p=p, per_tensor=per_tensor)
            pts = []
            R = opt2.outer_step(P, lambda Q: (pts.append(Q["x"].copy()), grad(Q))[1])
            assert np.array_equal(R["x"], cur["x"]) and np.allclose(pts, seen, atol=0)


def test_inner_loop_solves_the_local_problem_eq_5():
    """min 1/2 ||omega + Delta - c||^2 over ||Delta||_inf <= delta is Delta* = clip(c - omega):
    the 1/k Frank-Wolfe iteration (eq. 6) approaches it at O(1/K); p = 2 likewise."""
    omega = {"x": np.array([0.0, 0.0, 0.0, 0.0])}
    c = np.array([0.05, -0.3, 1.0, -0.02])
    oracle = lambda P: {"x": P["x"] - c}   # noqa: E731
    for K in (50, 400):
        opt = FrankWolfe(delta=0.1, eta=1.0, K=K, p=math.inf)
        D = opt.outer_step(omega, oracle)["x"]
        assert np.abs(D - np.clip(c, -0.1, 0.1)).max() < 2.0 / K
    opt = FrankWolfe(delta=2.0, eta=1.0, K=400, p=2)          # c inside the ball: Delta* = c
    D = opt.outer_step(omega, oracle)["x"]
    assert np.linalg.norm(D - c) < 0.05


def test_adam_outer_is_adam_fed_minus_delta_over_radius():
    P, G = _toy(1)
    G2 = {k: v * 0.5 + 0.1 for k, v in G.items()}
    opt = FrankWolfe(delta=0.2, eta=1e-2, K=2, p=2, outer="adam", beta1=0.8, beta2=0.99,
                     eps=1e-7)
    assert opt.step(P, G) is P
    point = opt.eval_point(P)
    D = {k: 0.5 * (lmo(G[k], 2, 0.2) + lmo(G2[k], 2, 0.2)) for k in P}
    Q = opt.step(P, G2)
    want, _ = optim.adam_step(P, {k: -D[k] / 0.2 for k in P}, None, lr=1e-2, beta1=0.8,
                              beta2=0.99, eps=1e-7)
    assert all(np.allclose(Q[k], want[k], rtol=1e-14, atol=1e-16) for k in P)
    assert all(np.allclose(point[k], P[k] + lmo(G[k], 2, 0.2)) for k in P)
    assert opt.adam_state["t"] == 1
    assert FrankWolfe(delta=1.0, outer="adam").eta == 1e-3
    assert FrankWolfe(delta=1.0).eta == 1.0


def test_schedule_decays_eta_and_delta_together():
    P, G = _toy(2)
    opt = FrankWolfe(delta=1.0, eta=0.5, K=1, schedule=step_decay(0.1, 2))
    steps = []
    for t in range(5):
        assert opt.delta_t == pytest.approx(0.1 ** (t // 2))
        assert opt.eta_t == pytest.approx(0.5 * 0.1 ** (t // 2))
        Q = opt.step(P, G)
        steps.append(np.sqrt(sum(np.sum((Q[k] - P[k]) ** 2) for k in P)))
        P = Q
    # each step has length eta_t delta_t * sqrt(#tensors) (p = 2 per tensor)
    assert np.allclose(steps, [0.5 * np.sqrt(2) * 0.01 ** (t // 2) for t in range(5)])
    with pytest.raises(ValueError, match="schedule"):
        FrankWolfe(delta=1.0, schedule=lambda t: 0.0).step(P, G)
    with pytest.raises(ValueError, match="gamma"):
        step_decay(0.0, 1)
    with pytest.raises(ValueError, match="every"):
        step_decay(0.5, 0)


@pytest.mark.parametrize("kw, err, msg", [
    (dict(delta=0.0), ValueError, "delta must be > 0"),
    (dict(delta=-0.1), ValueError, "delta must be > 0"),
    (dict(p=0.99), ValueError, "p must be >= 1"),
    (dict(K=0), ValueError, "K must be >= 1"), (dict(K=-2), ValueError, "K must be >= 1"),
    (dict(K=2.0), TypeError, "K must be an integer"),
    (dict(eta=0.0), ValueError, "eta must be > 0"), (dict(eta=-1), ValueError, "eta must be"),
    (dict(eta=math.nan), ValueError, "eta must be > 0"),
    (dict(eta="1"), TypeError, "eta must be a real"),
    (dict(outer="rmsprop"), ValueError, "outer must be one of sgd, adam"),
    (dict(minibatch="random"), ValueError, "minibatch must be one of successive, same"),
    (dict(schedule=0.5), TypeError, "schedule must be None or a callable"),
    (dict(beta1=1.0), ValueError, "beta1"), (dict(eps=0.0), ValueError, "eps")])
def test_frank_wolfe_rejects_bad_hyperparameters(kw, err, msg):
    args = dict(delta=1.0)
    args.update(kw)
    with pytest.raises(err, match=msg):
        FrankWolfe(**args)


def test_step_checks_keys_and_pending_state():
    P, G = _toy()
    opt = FrankWolfe(delta=1.0, K=2)
    with pytest.raises(ValueError, match="grads has keys"):
        opt.step(P, {"W": G["W"]})
    with pytest.raises(ValueError, match=r"grads\['b'\] has shape"):
        opt.step(P, {"W": G["W"], "b": np.ones(4)})
    opt.step(P, G)
    with pytest.raises(RuntimeError, match="pending"):
        opt.outer_step(P, lambda Q: G)
    opt.reset()
    assert opt.k == 0 and opt.t == 0 and opt.angles == [] and opt.Delta is None
    assert "FrankWolfe(delta=1" in repr(opt)


def test_angle_diagnostic_fw_a5():
    P, G = _toy()
    opt = FrankWolfe(delta=0.1, K=1, p=2, per_tensor=False)
    opt.step(P, G)
    assert opt.angles[-1] == pytest.approx(0.0, abs=1e-12)    # whole-vector p=2, K=1: -g itself
    opt = FrankWolfe(delta=0.1, K=1, p=2, per_tensor=True)
    opt.step(P, G)
    D = {k: lmo(G[k], 2, 0.1) for k in G}
    cos = sum(float((D[k] * -G[k]).sum()) for k in G) / (
        np.sqrt(sum(np.sum(D[k] ** 2) for k in G)) * np.sqrt(sum(np.sum(G[k] ** 2) for k in G)))
    assert opt.angles[-1] == pytest.approx(np.degrees(np.arccos(cos)), abs=1e-9)
    assert 0 < opt.angles[-1] < 90
    assert math.isnan(fw_angle({"a": np.zeros(2)}, {"a": np.ones(2)}))
    assert fw_angle({"a": np.array([1e-300, 0.0])}, {"a": np.array([0.0, 1e300])}) == 90.0


# ------------------------------------------------------------------------ driven by train.fit
def _data(n=48, T=6, p=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((T, n, p)), rng.uniform(0, 1, (n, 1))


def test_fit_successive_minibatches_one_outer_step_per_K_batches():
    u, y = _data()
    calls = []

    def grad_fn(P, ub, yb):
        calls.append((P["w"].copy(), float(ub.sum())))
        return float(np.sum(P["w"] ** 2)), {"w": 2 * P["w"] - 1.0}
    opt = FrankWolfe(delta=0.1, eta=1.0, K=3, p=2)
    h = train.fit({"w": np.zeros(2)}, grad_fn, u, y, epochs=2, batch_size=8, optimizer=opt,
                  progress=False)
    assert len(calls) == 12 and opt.t == 4 and len(opt.angles) == 4       # 6 batches/epoch
    assert h.column("fw_outer_steps") == [None, 2, 2]
    assert len({c[1] for c in calls}) > 3      # successive: different minibatches
    assert all(r["fw_angle_mean"] == pytest.approx(0.0, abs=1e-12) for r in h.epochs[1:])
    assert all(r["fw_angle_std"] == pytest.approx(0.0, abs=1e-12) for r in h.epochs[1:])
    # the inner points move away from omega, and omega only moves every third call
    assert np.array_equal(backend.to_numpy(calls[0][0]), np.zeros(2))
    assert not np.array_equal(calls[1][0], calls[0][0])


def test_fit_same_minibatch_K_gradients_per_batch():
    u, y = _data()
    batches = []

    def grad_fn(P, ub, yb):
        batches.append(float(ub.sum()))
        return float(np.sum(P["w"] ** 2)), {"w": 2 * P["w"] - 1.0}
    opt = FrankWolfe(delta=0.1, K=4, minibatch="same")
    assert opt.steps_per_batch == 4
    h = train.fit({"w": np.zeros(2)}, grad_fn, u, y, epochs=1, batch_size=8, optimizer=opt,
                  progress=False)
    assert len(batches) == 24 and opt.t == 6 and h.epochs[1]["fw_outer_steps"] == 6
    assert all(len(set(batches[i:i + 4])) == 1 for i in range(0, 24, 4))
    assert len(set(batches[::4])) == 6


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_fit_trains_rnn_and_lstm_with_fw_and_clipping_is_a_noop(cell):
    mod = cells.get(cell)
    u, _ = _data(n=64, T=5, p=3, seed=1)
    y = (u[-1, :, :1] > 0).astype(float)
    P0 = mod.init_params(3, 6, 1, seed=0)
    gf = functools.partial(mod.loss_and_grad, output="sigmoid", loss="bce")
    F0 = float(mod.loss(P0, u, y, output="sigmoid", loss="bce"))
    runs = []
    for clip in (None, 1e-3):
        opt = FrankWolfe(delta=0.05, K=2, p=2, outer="sgd")
        runs.append(train.fit(P0, gf, u, y, epochs=8, batch_size=16, optimizer=opt, seed=1,
                              clip=clip, progress=False))
    F1 = float(mod.loss(runs[0].params, u, y, output="sigmoid", loss="bce"))
    assert F1 < 0.9 * F0
    # the LMO ignores the gradient's scale, so global-norm clipping changes nothing
    assert runs[1].epochs[1]["clip_fired"] == 4           # 4 minibatches per epoch
    assert all(np.allclose(runs[0].params[k], runs[1].params[k], rtol=1e-12, atol=1e-14)
               for k in P0)


def test_fit_with_fw_stops_on_nan_and_keeps_omega():
    u, y = _data()
    calls = []

    def grad_fn(P, ub, yb):
        calls.append(1)
        bad = len(calls) == 5
        return (float("nan") if bad else 1.0), {"w": backend.asarray(np.ones(2))}
    opt = FrankWolfe(delta=0.1, K=2)
    h = train.fit({"w": np.zeros(2)}, grad_fn, u, y, epochs=2, batch_size=8, optimizer=opt,
                  progress=False)
    assert "non-finite" in h.stopped and opt.t == 2
    assert np.allclose(backend.to_numpy(h.params["w"]), -2 * 0.1 * np.ones(2) / np.sqrt(2))


def test_classification_api_fw_adam_tbptt_and_tbptt_fw():
    """The API the digit-sequence and HAR experiments use, on a tiny softmax + cross_entropy task:
    the class is the sign pattern of the first input at step 2 of 12 (3 classes)."""
    rng = np.random.default_rng(0)
    T, n, p, l = 12, 96, 2, 3
    u = rng.standard_normal((T, n, p))
    labels = (u[1, :, 0] > 0).astype(int) + (u[1, :, 1] > 0.5).astype(int)
    kw = dict(activation="tanh", output="softmax", loss="cross_entropy")
    P0 = rnn.init_params(p, 8, l, seed=0)
    full = functools.partial(rnn.loss_and_grad, **kw)
    trunc = tbptt.grad_fn(4, 12, **kw)       # k1 = 4 forward, k2 = 12 backward
    setups = {"adam": (full, optim.Adam(0.05)),
              "fw": (full, FrankWolfe(delta=0.05, eta=0.05, K=1, outer="adam")),
              "tbptt": (trunc, optim.Adam(0.05)),
              "tbptt_fw": (trunc, FrankWolfe(delta=0.05, eta=0.05, K=2, outer="adam"))}
    F0 = float(rnn.loss(P0, u, labels, **kw))

    def evaluate(P):
        s = rnn.sweep(P, u, labels, **kw)
        return {"test_F": float(s.F), "test_error": train.classification_error(s.traj.yhat,
                                                                               labels)}
    for name, (gf, opt) in setups.items():
        h = train.fit(P0, gf, u, labels, epochs=15, batch_size=16, optimizer=opt, seed=0,
                      evaluate=evaluate, progress=False)
        assert not h.stopped
        assert h.epochs[-1]["test_F"] < 0.8 * F0, name
        assert h.epochs[-1]["test_error"] < h.epochs[0]["test_error"], name
        if "fw" in name:
            assert "fw_angle_mean" in h.epochs[-1]
