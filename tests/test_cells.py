"""Every registered cell behind one interface: gradients, adjoints, training, inspection, generation."""
import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manualgrad import backend, cells, check, data, inspect, train
from manualgrad.optim import Adam

OPTIONS = {"indrnn": {"activation": "tanh"}}  # relu kinks are covered in test_indrnn.py
HEADS = [("sigmoid", "bce"), ("softmax", "cross_entropy"), ("identity", "mse")]


def _problem(name, seed, T, B, p, m, l, head, m2m, with_state):
    cell = cells.get(name)
    rng = backend.host_rng(seed)
    params = cell.init_params(p, m, l, seed=seed)
    params = {k: v + 0.1 * backend.randn(v.shape, rng=rng) for k, v in params.items()}
    u = backend.asarray(rng.standard_normal((T, B, p)))
    output, loss = head
    lead = (T, B) if m2m else (B,)
    y = (rng.integers(0, l, lead) if loss == "cross_entropy" else rng.uniform(0, 1, lead + (l,)))
    state0 = None
    if with_state:
        traj = cell.forward(params, u[:1], output=output, **OPTIONS.get(name, {}))
        state0 = {k: 0.5 * backend.asarray(rng.standard_normal(v.shape))
                  for k, v in cells.final_state(cell, params, traj).items()}
    kw = dict(state0=state0, output=output, loss=loss, many_to_many=m2m, **OPTIONS.get(name, {}))
    return cell, params, u, y, kw


@pytest.mark.parametrize("name", cells.names())
@settings(max_examples=max(15, settings.default.max_examples // 3))
@given(seed=st.integers(0, 10 ** 6), T=st.integers(1, 5), B=st.integers(1, 3),
       p=st.integers(1, 3), m=st.integers(1, 4), head=st.sampled_from(HEADS),
       m2m=st.booleans(), with_state=st.booleans())
def test_every_cell_gradient_and_initial_state_gradient_match_finite_differences(
        name, seed, T, B, p, m, head, m2m, with_state):
    l = 3 if head[0] == "softmax" else 2
    cell, params, u, y, kw = _problem(name, seed, T, B, p, m, l, head, m2m, with_state)
    F, grads = cell.loss_and_grad(params, u, y, **kw)
    # random cells with m = 1 can be steep (|dF/dh0| ~ 20): a shorter 4-point step than the
    # default keeps truncation down; round-off stays ~1e-11 |F|
    rep = check.gradients(lambda P: cell.loss(P, u, y, **kw), params, grads, h=2e-5)
    assert rep.ok, "%s\n%s" % (name, rep)
    s = cell.sweep(params, u, y, **kw)
    assert abs(float(s.F) - float(F)) < 1e-12
    if kw["state0"] is not None:
        st0 = {k: v.copy() for k, v in kw["state0"].items()}
        for key in st0:
            num = check.numerical_gradient(
                lambda: cell.loss(params, u, y, **dict(kw, state0=st0)), st0[key], h=2e-5)
            assert check.fd_error(s.grad_state0[key], num, F, h=2e-5) < 1e-7, (name, key)
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
    with pytest.raises(ValueError, match="unknown cell 'gru': valid names are rnn, .*lstm.*indrnn"):
        cells.get("gru")
    with pytest.raises(TypeError, match="lacks"):
        cells.register("broken", object())
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        cells.generate("rnn", cells.get("rnn").init_params(2, 2, 2), np.zeros((1, 2)), 0,
                       lambda y, t: y)
    with pytest.raises(ValueError, match="state0 for the vanilla RNN must be a mapping with the key 'h0'"):
        cells.get("rnn").forward(cells.get("rnn").init_params(2, 2, 2), np.zeros((3, 1, 2)),
                                 state0={"c0": np.zeros(2)})
