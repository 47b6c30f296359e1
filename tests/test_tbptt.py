"""Truncated BPTT(k1, k2) (manualgrad.tbptt): windows, full BPTT at k1 = k2 = T bit for bit,
the finite-difference gradient of the truncated objective, other cells, errors, and fit."""
import functools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from manualgrad import cells, check, optim, rnn, train
from manualgrad.cells import lstm
from manualgrad import tbptt

HEADS = (("sigmoid", "bce"), ("softmax", "cross_entropy"), ("identity", "mse"))


def _problem(T, B, p, m, l, head, m2m, seed):
    rng = np.random.default_rng(seed)
    P = rnn.init_params(p, m, l, seed=seed, scale=0.9, bias_scale=0.3)
    u = rng.standard_normal((T, B, p))
    lead = (T, B) if m2m else (B,)
    if head[1] == "cross_entropy":
        y = rng.integers(0, l, lead)
    else:
        y = rng.uniform(0, 1, lead + (l,))
    return P, u, y, dict(activation="tanh", output=head[0], loss=head[1], many_to_many=m2m)


def test_windows():
    assert tbptt.windows(9, 4) == [(0, 4, 0), (4, 8, 4), (8, 9, 8)]
    assert tbptt.windows(8, 2, 5) == [(0, 2, 0), (2, 4, 0), (4, 6, 1), (6, 8, 3)]
    assert tbptt.windows(5, 5) == [(0, 5, 0)]
    assert tbptt.windows(6, 1, 6) == [(0, 1, 0), (1, 2, 0), (2, 3, 0), (3, 4, 0), (4, 5, 0),
                                      (5, 6, 0)]
    assert not hasattr(optim, "tbptt_windows"), "TBPTT is a gradient method, not in optim"


@pytest.mark.parametrize("args, err, msg", [
    ((10, 0), ValueError, "k1 must be >= 1"), ((10, -3), ValueError, "k1 must be >= 1"),
    ((10, 11), ValueError, "k1 = 11 is longer than the sequence"),
    ((10, 3, 0), ValueError, "k2 must be >= 1"),
    ((10, 3, 11), ValueError, "k2 = 11 is longer than the sequence"),
    ((10, 4, 3), ValueError, "k2 .* must be >= k1"),
    ((10, 2.0), TypeError, "k1 must be an integer"), ((10, True), TypeError, "k1 must be"),
    ((0, 1), ValueError, "T must be a positive integer")])
def test_windows_errors(args, err, msg):
    with pytest.raises(err, match=msg):
        tbptt.windows(*args)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("m2m", [False, True])
def test_k1_eq_k2_eq_T_is_full_bptt_bit_for_bit(head, m2m):
    T = 7
    P, u, y, kw = _problem(T, 3, 2, 4, 3, head, m2m, seed=5)
    x0 = np.random.default_rng(9).standard_normal((3, 4)) * 0.5
    F, g = rnn.loss_and_grad(P, u, y, x0=x0, **kw)
    Ft, gt = tbptt.loss_and_grad(P, u, y, T, T, state0={"h0": x0}, **kw)
    assert float(Ft) == float(F)
    assert all(np.array_equal(gt[k], g[k]) for k in g)
    Fc, gc = tbptt.loss_and_grad(P, u, y, T, cell=cells.RNN, state0={"h0": x0}, **kw)
    assert float(Fc) == float(F) and all(np.array_equal(gc[k], g[k]) for k in g)


@settings(max_examples=40)
@given(seed=st.integers(0, 2 ** 31 - 1), T=st.integers(2, 9), k1=st.integers(1, 9),
       extra=st.integers(0, 9), head=st.sampled_from(HEADS),
       mode=st.sampled_from(("m2o-last", "m2o-window_ends", "m2m")))
def test_tbptt_gradient_is_the_fd_gradient_of_the_truncated_objective(seed, T, k1, extra, head,
                                                                        mode):
    k1 = min(k1, T)
    k2 = min(k1 + extra, T)
    m2m = mode == "m2m"
    loss_at = "window_ends" if mode.endswith("window_ends") else "last"
    P, u, y, kw = _problem(T, 2, 2, 3, 2, head, m2m, seed)
    F, g = tbptt.loss_and_grad(P, u, y, k1, k2, loss_at=loss_at, **kw)
    G0 = tbptt.truncated_objective(P, u, y, k1, k2, loss_at=loss_at, **kw)
    assert float(G0) == pytest.approx(float(F), rel=1e-13)
    if loss_at == "last":   # the forward is exact: G(theta0; theta0) is the ordinary loss
        assert float(F) == pytest.approx(float(rnn.loss(P, u, y, **kw)), rel=1e-13)
    # h = 3e-5, not the default eps^(1/4) = 1.2e-4: at weight scale 0.9 over up to 9 steps the
    # objective's higher derivatives are large, and the 4-point stencil's truncation error
    # (h^4 f^(5) / 30) reached 1.3e-7 and 2.0e-7 at the default step (hypothesis seed 2731;
    # 400 random cases), falling as h^4 (5.9e-8 at 1e-4, 4.7e-10 at 3e-5). At 3e-5 the worst of
    # the same 400 cases is 1.5e-9; round-off (eps |F| / h) stays far below, and check.gradients
    # derives its floor from this h.
    rep = check.gradients(lambda Q: tbptt.truncated_objective(Q, u, y, k1, k2, anchor=P,
                                                              loss_at=loss_at, **kw), P, g, h=3e-5)
    assert rep.max_error < 1e-7, rep


def test_truncation_is_real_and_matches_a_restarted_sweep():
    """Many-to-one TBPTT(k, k) with k | T is BPTT of the last window from the frozen state;
    with shorter windows it differs from full BPTT (the test can fail)."""
    T, k = 12, 4
    P, u, y, kw = _problem(T, 3, 2, 5, 1, ("sigmoid", "bce"), False, seed=2)
    F, g = tbptt.loss_and_grad(P, u, y, k, **kw)
    xs = rnn.forward(P, u, **{k_: v for k_, v in kw.items() if k_ != "loss"}).x
    Fr, gr = rnn.loss_and_grad(P, u[T - k:], y, x0=xs[T - k], **kw)
    assert float(F) == pytest.approx(float(Fr), rel=1e-14)
    assert all(np.allclose(g[n], gr[n], rtol=1e-13, atol=1e-16) for n in g)
    Ff, gf = rnn.loss_and_grad(P, u, y, **kw)
    assert max(check.rel_error(g[n], gf[n]) for n in ("W_rec", "W_in", "b1")) > 1e-3
    assert np.allclose(g["W_out"], gf["W_out"]) and np.allclose(g["b2"], gf["b2"])
    # k2 > k1 reaches further back and changes the recurrent gradient again
    g2 = tbptt.loss_and_grad(P, u, y, 4, 8, **kw)[1]
    assert check.rel_error(g2["W_rec"], g["W_rec"]) > 1e-6


def test_many_to_many_windows_add_up():
    """TBPTT(k, k) many-to-many = the sum over windows of restarted many-to-many sweeps."""
    T, k = 9, 3
    P, u, y, kw = _problem(T, 2, 2, 4, 2, ("softmax", "cross_entropy"), True, seed=4)
    F, g = tbptt.loss_and_grad(P, u, y, k, **kw)
    xs = rnn.forward(P, u, activation="tanh", output="softmax", many_to_many=True).x
    parts = [rnn.loss_and_grad(P, u[a:a + k], y[a:a + k], x0=xs[a], **kw) for a in (0, 3, 6)]
    assert float(F) == pytest.approx(sum(float(f) for f, _ in parts), rel=1e-13)
    assert all(np.allclose(g[n], sum(gp[n] for _, gp in parts), rtol=1e-12, atol=1e-15)
               for n in g)


@pytest.mark.parametrize("m2m", [False, True])
def test_lstm_tbptt_k1_eq_k2(m2m):
    T, B, p, m, l = 8, 3, 2, 4, 1
    rng = np.random.default_rng(0)
    P = lstm.init_params(p, m, l, seed=1, forget_bias=1.0)
    u = rng.standard_normal((T, B, p))
    y = rng.uniform(0, 1, (T, B, l) if m2m else (B, l))
    kw = dict(output="sigmoid", loss="bce", many_to_many=m2m)
    F, g = tbptt.loss_and_grad(P, u, y, T, cell="lstm", **kw)
    Fl, gl = lstm.loss_and_grad(P, u, y, **kw)
    assert float(F) == float(Fl) and all(np.array_equal(g[n], gl[n]) for n in g)
    F4, g4 = tbptt.loss_and_grad(P, u, y, 4, cell="lstm", **kw)
    tr = lstm.forward(P, u, output="sigmoid", many_to_many=m2m)
    st4 = {"h0": tr.h[4], "c0": tr.c[4]}
    second = lstm.loss_and_grad(P, u[4:], y[4:] if m2m else y, state0=st4, **kw)
    want = second[1]
    if m2m:
        first = lstm.loss_and_grad(P, u[:4], y[:4], **kw)
        want = {n: first[1][n] + second[1][n] for n in want}
    assert all(np.allclose(g4[n], want[n], rtol=1e-12, atol=1e-15) for n in g4)
    assert float(F4) == pytest.approx(float(Fl), rel=1e-13)
    with pytest.raises(ValueError, match="vanilla RNN only"):
        tbptt.loss_and_grad(P, u, y, 2, 4, cell="lstm", **kw)


def test_loss_and_grad_errors():
    P, u, y, kw = _problem(6, 2, 2, 3, 1, ("sigmoid", "bce"), False, seed=0)
    with pytest.raises(ValueError, match="loss_at must be one of last, window_ends"):
        tbptt.loss_and_grad(P, u, y, 2, loss_at="middle", **kw)
    kw_m = dict(kw, many_to_many=True)
    with pytest.raises(ValueError, match="many-to-one"):
        tbptt.loss_and_grad(P, u, np.zeros((6, 2, 1)), 2, loss_at="window_ends", **kw_m)
    with pytest.raises(ValueError, match="key 'h0'"):
        tbptt.loss_and_grad(P, u, y, 2, state0={"x0": np.zeros(3)}, **kw)
    with pytest.raises(ValueError, match="longer than the sequence"):
        tbptt.loss_and_grad(P, u, y, 7, **kw)
    with pytest.raises(ValueError, match="k1 must be >= 1"):
        tbptt.loss_and_grad(P, u, y, 0, **kw)
    with pytest.raises(TypeError, match="unexpected option"):
        tbptt.loss_and_grad(P, u, y, 2, mu=0.5, **kw)
    with pytest.raises(ValueError, match="unknown cell"):
        tbptt.loss_and_grad(P, u, y, 2, cell="elman", output="sigmoid", loss="bce")


def test_window_ends_loss_is_the_mean_over_window_ends():
    P, u, y, kw = _problem(6, 2, 2, 3, 1, ("sigmoid", "bce"), False, seed=3)
    F = tbptt.loss_and_grad(P, u, y, 2, loss_at="window_ends", **kw)[0]
    want = np.mean([float(rnn.loss(P, u[:b], y, **kw)) for b in (2, 4, 6)])
    assert float(F) == pytest.approx(want, rel=1e-13)


def test_fit_with_the_tbptt_gradient_function():
    rng = np.random.default_rng(0)
    T, n = 12, 128
    u = rng.standard_normal((T, n, 2))
    y = (u[-2, :, :1] + u[-1, :, 1:] > 0).astype(float)      # decided near the end: TBPTT learns
    kw = dict(activation="tanh", output="sigmoid", loss="bce")
    P0 = rnn.init_params(2, 8, 1, seed=0)
    gf = tbptt.grad_fn(3, 6, **kw)
    assert "TBPTT(3, 6)" in gf.__doc__
    h = train.fit(P0, gf, u, y, epochs=10, batch_size=32, optimizer=optim.Adam(0.03), seed=0,
                  evaluate=lambda P: {"F": float(rnn.loss(P, u, y, **kw))}, progress=False)
    assert h.epochs[-1]["F"] < 0.7 * h.epochs[0]["F"]
    same = functools.partial(tbptt.loss_and_grad, k1=3, k2=6, **kw)
    a, b = gf(P0, u, y), same(P0, u, y)
    assert all(np.array_equal(a[1][k], b[1][k]) for k in P0)
