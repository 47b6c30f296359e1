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
    with pytest.raises(ValueError, match="scale must be >= 0"):
        rnn.init_params(3, 2, 1, scale=-1.0)
    with pytest.raises(ValueError, match=r"informative_step must lie in \[1, T\] = \[1, 10\], got 11"):
        data.long_time_gap(n=10, T=10, informative_step=11)
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        data.long_time_gap(n=0)
    with pytest.raises(TypeError, match="T must be an integer"):
        data.long_time_gap(n=3, T=2.5)
