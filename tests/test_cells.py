"""Every registered cell behind one interface: gradients, adjoints, training, inspection, generation."""
import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manualgrad import cells, check, data, inspect, testing, train
from manualgrad.optim import Adam

OPTIONS = {"indrnn": {"activation": "tanh"}}  # relu kinks are covered in test_indrnn.py
HEADS = (("sigmoid", "bce"), ("softmax", "cross_entropy"), ("identity", "mse"))
TOL = check.TOLERANCES["float64"]


@pytest.mark.parametrize("name", cells.names())
@settings(max_examples=max(15, settings.default.max_examples // 3))
@given(data=st.data())
def test_every_cell_gradient_and_initial_state_gradient_match_finite_differences(name, data):
    """The shared strategy (testing.cell_problems) for every registered cell, tanh hidden units
    where the cell has a choice (relu kinks are covered per cell), three heads."""
    prob = data.draw(testing.cell_problems(name, max_T=5, max_B=3, max_p=3, max_m=4,
                                           hidden=("tanh",), head=HEADS), label="prob")
    cell, params, u, y, kw = prob.cell, prob.params, prob.u, prob.y, prob.kwargs
    T, B = u.shape[:2]
    F, grads = prob.loss_and_grad()
    # random cells with m = 1 can be steep (|dF/dh0| ~ 20): a shorter 4-point step than the
    # default keeps truncation down; round-off stays ~1e-11 |F|
    rep = check.gradients(prob.loss, params, grads, tol=TOL, h=2e-5)
    assert rep.ok, "%s\n%s" % (name, rep)
    s = prob.sweep()
    assert abs(float(s.F) - float(F)) < 1e-12
    if prob.state0 is not None:
        st0 = {k: v.copy() for k, v in prob.state0.items()}
        assert set(s.grad_state0) == set(st0) == set(cells.state_names(cell, params))
        for key in st0:
            num = check.numerical_gradient(
                lambda: cell.loss(params, u, y, **dict(kw, state0=st0)), st0[key], h=2e-5)
            assert check.fd_error(s.grad_state0[key], num, F, TOL, h=2e-5) < TOL, (name, key)
    norms = inspect.adjoint_norms(s.adj)  # the inspection works for every cell
    assert norms.per_example.shape == (T, B) and np.all(np.isfinite(norms.mean))


@pytest.mark.parametrize("name", cells.names())
def test_every_cell_trains_with_the_same_loop(name):
    cell = cells.get(name)
    u, y = data.long_time_gap(n=256, T=5, informative_step=4, seed=0)
    gf = functools.partial(cell.loss_and_grad, output="sigmoid", loss="bce",
                           **OPTIONS.get(name, {}))
    ev = lambda P: {"F": float(cell.loss(P, u, y, **OPTIONS.get(name, {})))}  # noqa: E731
    h = train.fit(cell.init_params(5, 8, 1, seed=1), gf, u, y, epochs=8, batch_size=32,
                  optimizer=Adam(0.02), seed=0, evaluate=ev, progress=False, clip=5.0)
    F = h.column("F")
    assert F[-1] < 0.85 * F[0], (name, F)


@pytest.mark.parametrize("name", cells.names())
def test_generation_with_teacher_forcing_equals_one_many_to_many_pass(name):
    cell = cells.get(name)
    rng = np.random.default_rng(0)
    params = cell.init_params(3, 4, 3, seed=2)
    u = rng.standard_normal((6, 2, 3))
    opts = OPTIONS.get(name, {})
    full = cell.forward(params, u, output="softmax", many_to_many=True, **opts).yhat
    gen = cells.generate(cell, params, u[0], 6, feedback=lambda yhat, t: u[t + 1],
                         output="softmax", **opts)
    assert gen.shape == (6, 2, 3)
    assert np.allclose(gen, full, rtol=1e-12, atol=1e-14)


def test_generation_feeds_its_own_output_back():
    """Greedy one-hot feedback: each step's input is the previous step's argmax."""
    cell = cells.get("rnn")
    params = cell.init_params(4, 5, 4, seed=0)
    first = np.eye(4)[[1]]
    seen = []

    def fb(yhat, t):
        seen.append(int(yhat.argmax()))
        return np.eye(4)[[seen[-1]]]
    out = cells.generate("rnn", params, first, 5, fb, output="softmax")
    assert out.shape == (5, 1, 4) and len(seen) == 4
    assert seen == [int(o.argmax()) for o in out[:4]]


def test_registry_and_generation_errors():
    with pytest.raises(ValueError, match="unknown cell 'elman': valid names are rnn, .*indrnn, gru"):
        cells.get("elman")
    with pytest.raises(TypeError, match="lacks"):
        cells.register("broken", object())
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        cells.generate("rnn", cells.get("rnn").init_params(2, 2, 2), np.zeros((1, 2)), 0,
                       lambda y, t: y)
    with pytest.raises(ValueError, match="state0 for the vanilla RNN must be a mapping with the key 'h0'"):
        cells.get("rnn").forward(cells.get("rnn").init_params(2, 2, 2), np.zeros((3, 1, 2)),
                                 state0={"c0": np.zeros(2)})


@pytest.mark.parametrize("name", cells.names())
def test_every_cell_init_params_takes_numpy_sizes_and_refuses_bad_seed_scale_dtype(name):
    """The shared init checks (rnn._init_args): NumPy integer sizes are sizes; a seed that is not
    an integer >= 0, a scale that is not finite and >= 0, a dtype set_dtype refuses: a clear
    error naming the argument, before anything is drawn."""
    init = cells.get(name).init_params
    P = init(np.int64(3), np.int32(4), np.int64(2), seed=np.int64(5))
    Q = init(3, 4, 2, seed=5)
    assert all(np.array_equal(P[k], Q[k]) and P[k].shape == Q[k].shape for k in Q)
    for kw, exc, match in ((dict(seed=-1), ValueError, "seed"), (dict(seed="3"), TypeError, "seed"),
                           (dict(seed=1.5), TypeError, "seed"),
                           (dict(scale=float("inf")), ValueError, "scale"),
                           (dict(scale=float("nan")), ValueError, "scale"),
                           (dict(scale=-1.0), ValueError, "scale"),
                           (dict(bias_scale=float("inf")), ValueError, "bias_scale"),
                           (dict(dtype="float16"), ValueError, "dtype must be one of"),
                           (dict(p=1.5), ValueError, "p must be a positive integer"),
                           (dict(m=True), ValueError, "m must be a positive integer")):
        args = dict(p=3, m=4, l=2)
        args.update(kw)
        with pytest.raises(exc, match=match):
            init(**args)


def test_indrnn_init_refuses_a_non_finite_recurrent_weight_or_mag():
    ind = cells.get("indrnn")
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="recurrent_init must be a finite number"):
            ind.init_params(2, 3, 1, recurrent_init=bad)
        with pytest.raises(ValueError, match="mag must be finite"):
            ind.init_params(2, 3, 1, recurrent_init="long", seq_len=10, mag=bad)
