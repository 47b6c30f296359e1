"""Bad input gets a clear error naming the argument, the axis and what was expected."""
import numpy as np
import pytest

from manualgrad import data, rnn

P = rnn.init_params(3, 4, 2, seed=0)
U = np.random.default_rng(0).standard_normal((5, 6, 3))
Y = np.random.default_rng(1).uniform(0, 1, (6, 2))


def test_mismatched_input_size_names_axis_and_source():
    with pytest.raises(ValueError, match=r"u: axis 2 \(p, input size\) has length 4, but W_in has 3"):
        rnn.forward(P, np.zeros((5, 6, 4)))


def test_wrong_ndim():
    with pytest.raises(ValueError, match=r"u must be a 3-d array \(T, B, p\), got shape \(6, 3\)"):
        rnn.forward(P, np.zeros((6, 3)))


def test_integer_and_boolean_inputs_are_refused():
    with pytest.raises(TypeError, match="u must be a floating-point array, got an integer array"):
        rnn.forward(P, np.zeros((5, 6, 3), dtype=int))
    with pytest.raises(TypeError, match="boolean"):
        rnn.forward(P, np.zeros((5, 6, 3), dtype=bool))
    with pytest.raises(TypeError, match="loss='bce' needs float targets"):
        rnn.loss_and_grad(P, U, np.ones((6, 2), dtype=int))


def test_non_finite_inputs_are_refused():
    u = U.copy()
    u[2, 1, 0] = np.nan
    u[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"u contains 2 non-finite value\(s\)"):
        rnn.loss_and_grad(P, u, Y)
    Q = dict(P, W_rec=P["W_rec"] * np.nan)
    with pytest.raises(ValueError, match=r"params\['W_rec'\] contains 16 non-finite"):
        rnn.forward(Q, U)
    with pytest.raises(ValueError, match="y contains NaN"):
        rnn.loss_and_grad(P, U, Y * np.nan)


def test_parameter_shapes_are_checked_against_each_other():
    with pytest.raises(ValueError, match=r"params\['W_rec'\] has shape \(4, 5\), expected \(4, 4\)"):
        rnn.forward(dict(P, W_rec=np.zeros((4, 5))), U)
    with pytest.raises(ValueError, match=r"params\['b2'\] has shape \(3,\), expected \(2,\)"):
        rnn.forward(dict(P, b2=np.zeros(3)), U)
    with pytest.raises(ValueError, match="lack b1"):
        rnn.forward({k: v for k, v in P.items() if k != "b1"}, U)
    with pytest.raises(TypeError, match="params must be a mapping"):
        rnn.forward([1, 2], U)


def test_x0_and_target_shapes():
    with pytest.raises(ValueError, match=r"x0 must have shape \(B, m\) = \(6, 4\) or \(m,\)"):
        rnn.forward(P, U, x0=np.zeros((5, 4)))
    assert rnn.forward(P, U, x0=np.ones(4)).x[0].shape == (6, 4)  # (m,) broadcasts
    with pytest.raises(ValueError, match=r"y: expected shape \(6, 2\)"):
        rnn.loss_and_grad(P, U, np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"y: expected shape \(5, 6, 2\)"):
        rnn.loss_and_grad(P, U, Y, many_to_many=True)
    with pytest.raises(ValueError, match=r"integer labels must lie in \[0, 2\)"):
        rnn.loss_and_grad(P, U, np.array([0, 1, 2, 0, 1, 0]), output="softmax",
                          loss="cross_entropy")
    with pytest.raises(ValueError, match=r"targets for loss='bce' must lie in \[0, 1\]"):
        rnn.loss_and_grad(P, U, Y + 1.0)


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown activation 'gelu': valid names are"):
        rnn.forward(P, U, activation="gelu")
    with pytest.raises(ValueError, match="unknown output 'sofmax'"):
        rnn.forward(P, U, output="sofmax")
    with pytest.raises(ValueError, match="unknown loss 'nll': valid names are mse, bce, cross_entropy"):
        rnn.loss_and_grad(P, U, Y, loss="nll")


def test_adjoint_argument_checks():
    traj = rnn.forward(P, U)
    with pytest.raises(TypeError, match="exactly one of delta"):
        rnn.adjoint(P, traj)
    with pytest.raises(ValueError, match=r"delta must have the shape of traj.yhat \(6, 2\)"):
        rnn.adjoint(P, traj, np.zeros((6, 3)))
    with pytest.raises(TypeError, match="pass the Adjoint"):
        rnn.gradients(P, traj, np.zeros((5, 6, 4)))


def test_init_and_data_arguments():
    with pytest.raises(ValueError, match="m must be a positive integer, got 0"):
        rnn.init_params(3, 0, 1)
    with pytest.raises(ValueError, match="scale must be finite and >= 0"):
        rnn.init_params(3, 2, 1, scale=-1.0)
    with pytest.raises(ValueError, match=r"informative_step must lie in \[1, T\] = \[1, 10\], got 11"):
        data.long_time_gap(n=10, T=10, informative_step=11)
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        data.long_time_gap(n=0)
    with pytest.raises(TypeError, match="T must be an integer"):
        data.long_time_gap(n=3, T=2.5)


# ------------------------------------------------ optimizers, fit, data, check, files, environment
# (issue 11: one vocabulary; each of these raised a raw or no error before)
import math  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from manualgrad import backend, check, optim, train  # noqa: E402

_P = {"w": np.ones(3), "b": np.zeros(2)}
_G = {"w": np.array([0.5, -1.0, 2.0]), "b": np.ones(2)}


@pytest.mark.parametrize("lr, err, msg", [
    (math.inf, ValueError, "lr must be > 0 and finite, got inf"),
    (math.nan, ValueError, "lr must be > 0 and finite"),
    (0.0, ValueError, "lr must be > 0 and finite"),
    ("0.1", TypeError, "lr must be a real number > 0, got '0.1'"),
    (True, TypeError, "lr must be a real number"),
])
def test_sgd_checks_its_learning_rate_like_adam(lr, err, msg):
    for make in (optim.SGD, optim.Adam):
        with pytest.raises(err, match=make.__name__ + ": " + msg):
            make(lr=lr)
    with pytest.raises(err, match="sgd_step: " + msg):
        optim.sgd_step(_P, _G, lr)


def test_sgd_checks_grads_like_adam():
    for step in (optim.SGD(0.1).step, optim.Adam(0.1).step):
        with pytest.raises(ValueError, match=r"grads\['w'\] has shape \(1,\) but params\['w'\] "
                                             r"has shape \(3,\)"):
            step(_P, dict(_G, w=np.ones(1)))        # SGD broadcast this silently
        with pytest.raises(ValueError, match=r"grads has keys \['w'\] but params has keys"):
            step(_P, {"w": _G["w"]})
        with pytest.raises(TypeError, match=r"grads\['b'\] must be a floating-point array"):
            step(_P, dict(_G, b=np.ones(2, dtype=int)))
        with pytest.raises(TypeError, match="grads must be a mapping"):
            step(_P, [1.0])


@pytest.mark.parametrize("make", [lambda: optim.SGD(0.1), lambda: optim.Adam(0.1),
                                  lambda: optim.FrankWolfe(delta=1.0)],
                         ids=["SGD", "Adam", "FrankWolfe"])
def test_every_optimizer_refuses_a_non_finite_gradient_naming_it(make):
    opt = make()
    bad = dict(_G, w=np.array([0.5, np.nan, np.inf]))
    with pytest.raises(ValueError, match=r"\.step: grads\['w'\] contains 2 non-finite value"):
        opt.step(_P, bad)
    assert all(np.isfinite(v).all() for v in opt.step(_P, _G).values())  # the state is intact


def test_split_refuses_u_and_y_of_different_example_counts():
    u = np.zeros((3, 10, 2))
    with pytest.raises(ValueError, match=r"split: y has 8 examples \(axis 0\) but u has 10 "
                                         r"\(axis 1\)"):
        data.split(u, np.zeros((8, 1)), 2)
    with pytest.raises(ValueError, match=r"split: u must be an array of shape \(T, n, \.\.\.\), "
                                         r"time-major, got shape \(10,\)"):
        data.split(np.zeros(10), np.zeros((10, 1)), 2)


def _counting(f):
    calls = []

    def g(P):
        calls.append(1)
        return f(P)
    return g, calls


def test_check_gradients_names_a_missing_gradient_a_bad_step_and_a_vector_f():
    f, calls = _counting(lambda P: float((P["w"] ** 2).sum() + P["b"].sum()))
    with pytest.raises(ValueError, match=r"check.gradients: grads lacks 'b'"):
        check.gradients(f, _P, {"w": 2 * _P["w"]})
    with pytest.raises(ValueError, match=r"check.gradients: grads\['b'\] has shape \(3,\) but "
                                         r"params\['b'\] has shape \(2,\)"):
        check.gradients(f, _P, {"w": 2 * _P["w"], "b": np.ones(3)})
    for h in (0.0, -1e-4, math.nan):
        with pytest.raises(ValueError, match="check.gradients: h must be > 0 and finite"):
            check.gradients(f, _P, {"w": 2 * _P["w"], "b": np.ones(2)}, h=h)
        with pytest.raises(ValueError, match="h must be > 0 and finite"):
            check.dot_product_test(f, _P, {"w": 2 * _P["w"], "b": np.ones(2)}, h=h)
    with pytest.raises(ValueError, match=r"names: 'x' is not a key of params"):
        check.gradients(f, _P, {"w": 2 * _P["w"], "b": np.ones(2)}, names=["x"])
    assert calls == []  # refused before any evaluation
    vec, calls = _counting(lambda P: P["w"] ** 2)
    with pytest.raises(TypeError, match=r"check.gradients: f must return a scalar.*shape \(3,\)"):
        check.gradients(vec, _P, {"w": 2 * _P["w"], "b": np.ones(2)})
    assert len(calls) == 1  # one evaluation tells; no finite differences were taken
    assert check.gradients(f, _P, {"w": 2 * _P["w"], "b": np.ones(2)}).ok


def _damaged(tmp_path):
    """A checkpoint, then copies with one byte of the array data flipped (a CRC error), the
    array's .npy header garbled, and the file cut in half."""
    w = np.arange(1000.0)
    train.save_checkpoint(tmp_path / "good.npz", {"w": w, "b": np.ones(3)}, epoch=1)
    raw = (tmp_path / "good.npz").read_bytes()
    at = raw.index(w[500:501].tobytes())
    head = raw.index(b"{'descr'", raw.index(b"params/w.npy"))
    flipped = bytearray(raw)
    flipped[at] ^= 0x5A
    garbled = raw[:head] + b"{'descr': <f8', 'fortran_" + raw[head + 26:]
    out = {}
    for name, b in (("crc", bytes(flipped)), ("npyheader", garbled), ("cut", raw[:len(raw) // 2])):
        out[name] = tmp_path / ("%s.npz" % name)
        out[name].write_bytes(b)
    return out


def test_damaged_checkpoint_is_a_value_error_naming_the_file(tmp_path):
    for name, path in _damaged(tmp_path).items():
        with pytest.raises(ValueError, match=r"load_checkpoint: '.*%s\.npz'" % name):
            train.load_checkpoint(path)


def _import_with(var, value):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANUALGRAD_")}
    env[var] = value
    return subprocess.run([sys.executable, "-c", "import manualgrad"], env=env, text=True,
                          capture_output=True, timeout=300)


@pytest.mark.parametrize("var, value, valid", [
    ("MANUALGRAD_BACKEND", "nmupy", "numpy, cupy, strict"),
    ("MANUALGRAD_DTYPE", "float16", "float64, float32"),
    ("MANUALGRAD_DTYPE", "double precision", "float64, float32"),
    ("MANUALGRAD_FUSED", "yes", "0, 1, auto, steps, persistent"),
    ("MANUALGRAD_WORKSPACE", "on", "0, 1"),
])
def test_bad_environment_variable_is_named_at_import(var, value, valid):
    r = _import_with(var, value)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ValueError: environment variable %s=%r" % (var, value)), last
    assert "valid values: " + valid in last, last
    assert "During handling" not in r.stderr  # one error, not a chain


@pytest.mark.skipif(backend.cupy_available()[0], reason="CuPy works here")
def test_cupy_requested_by_the_environment_without_cupy_names_the_variable():
    r = _import_with("MANUALGRAD_BACKEND", "cupy")
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode != 0 and "MANUALGRAD_BACKEND='cupy'" in last and "CuPy" in last, last
