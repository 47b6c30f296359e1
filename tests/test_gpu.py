"""The fused CuPy kernels (manualgrad.gpu) against the NumPy path they mirror (skipped without a GPU).

Every fused sweep is compared, array by array, with the same sweep computed by NumPy on the host
(float64: relative error <= 1e-12; float32: against the float64 NumPy reference, <= 1e-4), for
each strategy ("steps": one cuBLAS product and one kernel per step; "persistent": the vanilla
RNN's recurrence in one cooperative kernel), every hidden activation, many-to-one and
many-to-many, and shapes that are not multiples of the kernels' 16 x 16 tiles. The fused path is
also compared with CuPy running the NumPy path (``set_fused(False)``).
"""
import numpy as np
import pytest

import gpu_cases

from manualgrad import backend, check, coadjoint, gpu, rnn
from manualgrad.cells import lstm

CUPY_OK, CUPY_WHY = backend.cupy_available()
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not CUPY_OK, reason="CuPy/GPU not available: " + CUPY_WHY)]

TOL = check.AGREEMENT  # GPU against the NumPy path, by dtype
SHAPES = [(1, 1, 1, 1), (5, 3, 2, 7), (9, 19, 3, 37), (23, 70, 5, 48)]  # T, B, p, m
HEADS = [("sigmoid", "bce", False), ("softmax", "cross_entropy", True), ("identity", "mse", False)]


_rel, _data, _rnn_arrays = gpu_cases.rel, gpu_cases.data, gpu_cases.rnn_arrays


@pytest.mark.parametrize("strategy", ["steps", "persistent"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", list(gpu.ACTIVATIONS))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("head", HEADS, ids=lambda h: "%s-%s-%s" % h)
def test_fused_rnn_sweep_matches_numpy(strategy, dtype, activation, shape, head):
    T, B, p, m = shape
    output, loss, many_to_many = head
    l = 3
    u, y, x0 = _data(T, B, p, m, l, loss, many_to_many)
    kw = dict(x0=x0, activation=activation, output=output, loss=loss, many_to_many=many_to_many)
    with backend.use_backend("numpy", "float64"):
        ref = _rnn_arrays(rnn.sweep(rnn.init_params(p, m, l, seed=1, bias_scale=0.2), u, y, **kw))
    with backend.use_backend("cupy", dtype, fused=strategy):
        assert gpu.strategy_for(B, m) == strategy
        P = rnn.init_params(p, m, l, seed=1, bias_scale=0.2)
        got = _rnn_arrays(rnn.sweep(P, u, y, **kw))
        assert type(got["x"]).__module__.startswith("cupy") and got["x"].dtype == dtype
    bad = {k: _rel(got[k], ref[k]) for k in ref if _rel(got[k], ref[k]) > TOL[dtype]}
    assert not bad, bad


@pytest.mark.parametrize("strategy", ["steps", "persistent"])
def test_fused_and_unfused_cupy_agree_and_hvp_runs_on_the_fused_trajectory(strategy):
    T, B, p, m, l = 30, 33, 4, 21, 2
    u, y, x0 = _data(T, B, p, m, l, "bce", False, seed=3)
    with backend.use_backend("cupy", "float64", fused=False):
        P = rnn.init_params(p, m, l, seed=2, bias_scale=0.3)
        plain = _rnn_arrays(rnn.sweep(P, u, y, x0=x0))
    with backend.use_backend("cupy", "float64", fused=strategy):
        fused = _rnn_arrays(rnn.sweep(P, u, y, x0=x0))
        v = rnn.init_params(p, m, l, seed=5, scale=1.0, bias_scale=1.0)
        hv = rnn.hvp(P, u, y, v, x0=x0)
    with backend.use_backend("numpy", "float64"):
        hv_ref = rnn.hvp(rnn.init_params(p, m, l, seed=2, bias_scale=0.3), u, y,
                         rnn.init_params(p, m, l, seed=5, scale=1.0, bias_scale=1.0), x0=x0)
    for k in plain:
        assert _rel(fused[k], plain[k]) <= 1e-12, k
    for k in hv_ref:
        assert _rel(hv[k], hv_ref[k]) <= 1e-12, k


def test_persistent_kernel_on_a_long_sequence_and_many_tiles():
    """T = 300 steps with 8 x 7 tiles per step: every grid-wide barrier must hold."""
    T, B, p, m, l = 300, 120, 2, 100, 1
    u, y, x0 = _data(T, B, p, m, l, "bce", False, seed=4)
    kw = dict(x0=x0, activation="tanh")
    with backend.use_backend("numpy", "float64"):
        ref = _rnn_arrays(rnn.sweep(rnn.init_params(p, m, l, seed=6), u, y, **kw))
    with backend.use_backend("cupy", "float64", fused="persistent"):
        got = _rnn_arrays(rnn.sweep(rnn.init_params(p, m, l, seed=6), u, y, **kw))
    for k in ref:
        assert _rel(got[k], ref[k]) <= 1e-11, k


def test_unfused_activation_takes_the_numpy_path_on_cupy():
    """A user-made Activation has no kernel: the engine runs its NumPy path on CuPy arrays."""
    from manualgrad import activations
    mine = activations.Activation("mytanh", activations.HIDDEN["tanh"].f,
                                  activations.HIDDEN["tanh"].grad, activations.HIDDEN["tanh"].grad2)
    with backend.use_backend("cupy", "float64"):
        assert not gpu.fuses(mine) and gpu.fuses(activations.HIDDEN["tanh"])
        u, y, _ = _data(6, 4, 2, 5, 1, "bce", False)
        P = rnn.init_params(2, 5, 1, seed=0)
        F1, g1 = rnn.loss_and_grad(P, u, y, activation=mine)
        F2, g2 = rnn.loss_and_grad(P, u, y, activation="tanh")
    for k in g1:
        assert _rel(g1[k], g2[k]) <= 1e-12


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (7, 5, 3, 6), (12, 40, 4, 33)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("head", HEADS, ids=lambda h: "%s-%s-%s" % h)
def test_fused_lstm_sweep_matches_numpy(dtype, shape, head):
    T, B, p, m = shape
    output, loss, many_to_many = head
    l = 3
    u, y, h0 = _data(T, B, p, m, l, loss, many_to_many, seed=7)
    c0 = 0.5 * h0[:, ::-1].copy()
    kw = dict(state0={"h0": h0, "c0": c0}, output=output, loss=loss, many_to_many=many_to_many)

    arrays = gpu_cases.lstm_arrays
    with backend.use_backend("numpy", "float64"):
        ref = arrays(lstm.sweep(lstm.init_params(p, m, l, seed=1, bias_scale=0.3,
                                                 forget_bias=1.0), u, y, **kw))
    with backend.use_backend("cupy", dtype, fused="steps"):
        got = arrays(lstm.sweep(lstm.init_params(p, m, l, seed=1, bias_scale=0.3,
                                                 forget_bias=1.0), u, y, **kw))
    bad = {k: _rel(got[k], ref[k]) for k in ref if _rel(got[k], ref[k]) > TOL[dtype]}
    assert not bad, bad


@pytest.mark.parametrize("many_to_many", [False, True])
@pytest.mark.parametrize("G", ["G20", "G23", "released"])
def test_fused_coadjoint_matches_numpy(G, many_to_many):
    T, B, p, m, l = 17, 24, 3, 19, 2
    u, y, x0 = _data(T, B, p, m, l, "bce", many_to_many, seed=9)
    kw = dict(G=G, alpha=0.3, x0=x0, many_to_many=many_to_many)

    arrays = gpu_cases.coadjoint_arrays
    with backend.use_backend("numpy", "float64"):
        ref = arrays(coadjoint.sweep(rnn.init_params(p, m, l, seed=3, bias_scale=0.2), u, y, **kw))
    with backend.use_backend("cupy", "float64", fused="steps"):
        got = arrays(coadjoint.sweep(rnn.init_params(p, m, l, seed=3, bias_scale=0.2), u, y, **kw))
    bad = {k: _rel(got[k], ref[k]) for k in ref if _rel(got[k], ref[k]) > 1e-11}
    assert not bad, bad


def test_matmul_into_accumulates_and_transposes():
    cp = pytest.importorskip("cupy")
    rng = np.random.default_rng(0)
    a, b, c = rng.standard_normal((5, 7)), rng.standard_normal((7, 3)), rng.standard_normal((5, 3))
    with backend.use_backend("cupy", "float64"):
        out = cp.asarray(c)
        gpu.matmul_into(out, cp.asarray(a), cp.asarray(b), accumulate=True)
        assert _rel(out, c + a @ b) <= 1e-14
        gpu.matmul_into(out, cp.asarray(a), cp.asarray(b.T.copy()), trans_b=True)
        assert _rel(out, a @ b) <= 1e-14


@pytest.mark.parametrize("strategy", ["steps", "persistent"])
def test_fused_path_reuses_its_workspace_bit_for_bit(strategy):
    """The CuPy path draws its buffers from the same workspaces as the NumPy path (issue 17)."""
    T, B, p, m, l = 15, 20, 3, 17, 2
    u, y, x0 = _data(T, B, p, m, l, "bce", False, seed=11)
    with backend.use_backend("cupy", "float64", fused=strategy):
        gpu_cases.check_workspace_reuse(rnn.init_params(p, m, l, seed=2),
                                        lstm.init_params(p, m, l, seed=3), u, y, x0)
