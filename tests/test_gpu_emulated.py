"""The fused GPU path (manualgrad.gpu) run on the CPU: its kernels, its cuBLAS calls, its glue.

tests/cuda_emulator.py compiles each kernel's CUDA source as C++ for the host (one OS thread
per CUDA thread, real barriers for ``__syncthreads`` and the cooperative ``grid.sync``), and
stands in for cuBLAS with a column-major GEMM on host pointers. With both swapped into
manualgrad.gpu, the engine's fused path runs on NumPy buffers exactly as it would on CuPy
ones: same sources, same pointers, same launch shapes (a 2-multiprocessor "device", so the
persistent kernels' blocks loop over several tiles per step). Its results are compared with the
engine's NumPy path: float64 to 1e-12 (the products and sums run in another order), float32 to
the float64 reference at 1e-4. test_gpu.py repeats these comparisons on a real GPU.
"""
import numpy as np
import pytest

import cuda_emulator
import gpu_cases
from manualgrad import activations, backend, check, coadjoint, gpu, rnn
from manualgrad.cells import lstm

OK, WHY = cuda_emulator.available()
pytestmark = [
    pytest.mark.skipif(not OK, reason="cannot emulate the CUDA kernels here: " + WHY),
    pytest.mark.only_backend("numpy", reason="the emulated kernels read host memory through "
                                             "NumPy's raw addresses"),
]

TOL = check.AGREEMENT  # the emulated kernels against the NumPy path, by dtype


@pytest.fixture
def emulated(monkeypatch):
    """manualgrad.gpu wired to the CPU emulator; yields a function (mode) -> context manager."""
    monkeypatch.setattr(gpu, "_cache", {})
    monkeypatch.setattr(gpu, "_compile", lambda name, src: cuda_emulator.kernel(src, name))
    monkeypatch.setattr(gpu, "_address", lambda a: a.ctypes.data)
    monkeypatch.setattr(gpu, "_device", lambda: {"sms": 2})
    monkeypatch.setattr(backend, "cublas", lambda: (cuda_emulator.FakeCublas(), 0))
    monkeypatch.setattr(gpu, "fuses", lambda act=None: act is None or (
        activations.HIDDEN.get(act.name) is act and act.name in gpu.ACTIVATIONS))
    return lambda mode, dtype="float64": backend.use_backend("numpy", dtype, fused=mode)


_rel, _data, _rnn_arrays = gpu_cases.rel, gpu_cases.data, gpu_cases.rnn_arrays


def _compare(got, ref, tol):
    bad = {k: _rel(got[k], ref[k]) for k in ref if _rel(got[k], ref[k]) > tol}
    assert not bad, bad


@pytest.mark.parametrize("strategy", ["steps", "persistent"])
@pytest.mark.parametrize("activation", list(gpu.ACTIVATIONS))
@pytest.mark.parametrize("case", [
    ((5, 3, 2, 7), ("sigmoid", "bce", False)),          # one tile, ragged
    ((4, 37, 3, 21), ("softmax", "cross_entropy", True)),  # 3 x 2 tiles on 4 blocks
    ((1, 1, 1, 1), ("identity", "mse", False)),
], ids=["5x3x2x7-bce", "4x37x3x21-m2m-softmax", "1x1x1x1-mse"])
def test_emulated_fused_rnn_matches_the_numpy_path(emulated, strategy, activation, case):
    (T, B, p, m), (output, loss, many_to_many) = case
    u, y, x0 = _data(T, B, p, m, 3, loss, many_to_many)
    kw = dict(x0=x0, activation=activation, output=output, loss=loss, many_to_many=many_to_many)
    P = rnn.init_params(p, m, 3, seed=1, bias_scale=0.2)
    ref = _rnn_arrays(rnn.sweep(P, u, y, **kw))
    with emulated(strategy):
        assert gpu.strategy_for(B, m) == strategy
        got = _rnn_arrays(rnn.sweep(P, u, y, **kw))
    _compare(got, ref, TOL["float64"])


@pytest.mark.parametrize("strategy", ["steps", "persistent"])
def test_emulated_fused_rnn_in_float32(emulated, strategy):
    T, B, p, m = 12, 20, 3, 18
    u, y, x0 = _data(T, B, p, m, 1, "bce", False, seed=2)
    ref = _rnn_arrays(rnn.sweep(rnn.init_params(p, m, 1, seed=4), u, y, x0=x0))
    with emulated(strategy, "float32"):
        got = _rnn_arrays(rnn.sweep(rnn.init_params(p, m, 1, seed=4), u, y, x0=x0))
        assert got["x"].dtype == np.float32 and got["grad_W_rec"].dtype == np.float32
    _compare(got, ref, TOL["float32"])


def test_emulated_persistent_kernel_over_many_steps_and_tiles(emulated):
    """T = 40 grid-wide barriers, 5 x 3 tiles per step on 4 blocks: a race would show here."""
    T, B, p, m = 40, 70, 2, 45
    u, y, x0 = _data(T, B, p, m, 1, "bce", True, seed=5)
    kw = dict(x0=x0, many_to_many=True)
    P = rnn.init_params(p, m, 1, seed=6, scale=1.2)
    ref = _rnn_arrays(rnn.sweep(P, u, y, **kw))
    with emulated("persistent"):
        got = _rnn_arrays(rnn.sweep(P, u, y, **kw))
    _compare(got, ref, 1e-11)


@pytest.mark.parametrize("head", [("sigmoid", "bce", False), ("softmax", "cross_entropy", True)],
                         ids=["bce", "m2m-softmax"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_emulated_fused_lstm_matches_the_numpy_path(emulated, head, dtype):
    output, loss, many_to_many = head
    T, B, p, m, l = 6, 5, 3, 7, 3
    u, y, h0 = _data(T, B, p, m, l, loss, many_to_many, seed=7)
    kw = dict(state0={"h0": h0, "c0": 0.5 * h0[:, ::-1].copy()}, output=output, loss=loss,
              many_to_many=many_to_many)
    P = lstm.init_params(p, m, l, seed=1, bias_scale=0.3, forget_bias=1.0)

    arrays = gpu_cases.lstm_arrays
    ref = arrays(lstm.sweep(P, u, y, **kw))
    with emulated("steps", dtype):
        got = arrays(lstm.sweep(P, u, y, **kw))
    _compare(got, ref, TOL[dtype])


@pytest.mark.parametrize("many_to_many", [False, True])
def test_emulated_fused_coadjoint_matches_the_numpy_path(emulated, many_to_many):
    T, B, p, m, l = 7, 6, 3, 9, 2
    u, y, x0 = _data(T, B, p, m, l, "bce", many_to_many, seed=9)
    kw = dict(G="G23", alpha=0.3, x0=x0, many_to_many=many_to_many)
    P = rnn.init_params(p, m, l, seed=3, bias_scale=0.2)

    arrays = gpu_cases.coadjoint_arrays
    ref = arrays(coadjoint.sweep(P, u, y, **kw))
    with emulated("steps"):
        got = arrays(coadjoint.sweep(P, u, y, **kw))
    _compare(got, ref, 1e-11)


def test_emulator_catches_a_missing_barrier(emulated):
    """The harness itself: the persistent forward kernel without its grid-wide barrier reads
    x_{t-1} before other blocks wrote it, and the comparison must fail."""
    src = gpu.source("rnn_forward_persistent", "float64", "tanh").replace("grid.sync();", "")
    broken = cuda_emulator.kernel(src, "rnn_forward_persistent")
    T, B, m = 30, 48, 32
    rng = np.random.default_rng(0)
    W = rng.standard_normal((m, m)) / np.sqrt(m)
    zin = rng.standard_normal((T, B, m))
    ref_x = np.zeros((T + 1, B, m))
    for t in range(T):
        ref_x[t + 1] = np.tanh(zin[t] + ref_x[t] @ W.T)
    worst = 0.0
    for _ in range(3):  # a race need not show every time; three runs of 30 steps
        x, z = np.zeros((T + 1, B, m)), zin.copy()
        broken((4,), (256,), (W, z, x, np.int32(T), np.int32(B), np.int32(m)))
        worst = max(worst, _rel(x, ref_x))
    assert worst > 1e-6


@pytest.mark.parametrize("strategy", ["steps", "persistent"])
def test_emulated_fused_path_reuses_its_workspace_bit_for_bit(emulated, strategy):
    """The fused path takes its buffers from the engine's workspace like the NumPy path."""
    T, B, p, m = 8, 19, 3, 21
    u, y, x0 = _data(T, B, p, m, 2, "bce", False, seed=12)
    with emulated(strategy):
        gpu_cases.check_workspace_reuse(rnn.init_params(p, m, 2, seed=2),
                                        lstm.init_params(p, m, 2, seed=3), u, y, x0)
