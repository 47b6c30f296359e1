"""The strict backend (NumPy behind CuPy's rules) and the fused-kernel switch.

The strict backend exists so that code and tests that would break on a GPU break on any
machine: these tests check that it refuses what CuPy refuses, allows what CuPy allows, and that
the engine's main entry points run on it end to end (so the CPU suite guards the GPU path's
backend discipline between GPU sessions).
"""
import numpy as np
import pytest

from manualgrad import backend, coadjoint, gpu, rnn, train
from manualgrad.cells import CELLS
from manualgrad.ode import hbnode, node
from manualgrad.optim import Adam


@pytest.fixture
def strict():
    with backend.use_backend("strict", "float64") as xp:
        yield xp


def test_strict_refuses_implicit_conversion_and_mixing_like_cupy(strict):
    a = backend.asarray(np.arange(6.0).reshape(2, 3))
    host = np.ones((2, 3))
    assert not isinstance(a, np.ndarray) and backend.is_array(a)
    for bad in (lambda: np.asarray(a), lambda: np.testing.assert_allclose(a, host),
                lambda: a + host, lambda: host * a, lambda: strict.concatenate([a, host]),
                lambda: a.__setitem__(0, host[0]), lambda: strict.matmul(a, host.T)):
        with pytest.raises(TypeError, match="(Implicit conversion|numpy.ndarray)"):
            bad()


def test_strict_allows_what_cupy_allows(strict):
    a = backend.asarray(np.arange(6.0).reshape(2, 3))
    s = a.sum()
    assert backend.is_array(s) and s.shape == () and float(s) == 15.0  # 0-d array, not a scalar
    assert int(a[1, 2]) == 5 and bool((a >= 0).all()) and a.item(0) == 0.0
    assert np.allclose(a, a) and np.array_equal(np.exp(a), strict.exp(a))  # dispatch to xp
    assert backend.is_array(np.exp(a))
    a[np.array([0])] = 7.0  # NumPy index arrays and Python scalars are fine
    b = a[[1]]
    assert float(b.sum()) == 12.0 and float(a[0].sum()) == 21.0
    got = backend.to_numpy(a)
    assert isinstance(got, np.ndarray) and got.tolist() == [[7.0, 7.0, 7.0], [3.0, 4.0, 5.0]]
    out = strict.empty((2, 2))
    r = strict.matmul(a[:, :2], a[:, :2].T, out=out)
    assert backend.to_numpy(out)[0, 0] == 98.0 and backend.to_numpy(r)[1, 1] == 25.0
    with np.errstate(all="raise"):
        z = backend.asarray(np.zeros(2))
        assert bool(strict.isinf(1.0 / z).all())  # like CuPy, floating-point errors never warn


def test_backends_listed_and_fused_switch():
    assert backend.BACKENDS == ("numpy", "cupy", "strict")
    with backend.use_backend("numpy", fused="steps"):
        assert backend.fused_mode() == "steps" and not backend.fused()  # numpy: never fused
    with backend.use_backend(fused=False):
        assert backend.fused_mode() is None
    with backend.use_backend(fused=True):
        assert backend.fused_mode() == "auto"
    with pytest.raises(ValueError, match="fused must be True, False or one of auto, steps, persistent"):
        backend.set_fused("fast")
    with backend.use_backend("strict"):
        assert not backend.fused() and not gpu.fuses()  # strict runs the NumPy path
        with pytest.raises(RuntimeError, match="needs the cupy backend"):
            backend.cublas()


def test_gpu_auto_strategy_by_size():
    with backend.use_backend(fused=True):
        assert gpu.strategy_for(64, 128) == "persistent"
        assert gpu.strategy_for(2048, 512) == "steps"
    with backend.use_backend(fused="steps"):
        assert gpu.strategy_for(1, 1) == "steps"


def _rnn_problem(T=5, B=3, p=2, m=4, l=2, seed=0):
    rng = np.random.default_rng(seed)
    return (rnn.init_params(p, m, l, seed=seed), rng.standard_normal((T, B, p)),
            rng.uniform(0, 1, (B, l)))


@pytest.mark.parametrize("name", sorted(CELLS))
def test_every_cell_sweeps_on_strict_and_matches_numpy(name, strict):
    cell = CELLS[name]
    rng = np.random.default_rng(1)
    u, y = rng.standard_normal((5, 3, 2)), rng.uniform(0, 1, (3, 1))
    with backend.use_backend("numpy"):
        F0, g0 = cell.loss_and_grad(cell.init_params(2, 4, 1, seed=2), u, y)
    F1, g1 = cell.loss_and_grad(cell.init_params(2, 4, 1, seed=2), u, y)
    assert abs(float(F1) - float(F0)) <= 1e-14 * abs(float(F0))
    for k in g0:
        assert backend.is_array(g1[k]) and not isinstance(g1[k], np.ndarray)
        np.testing.assert_array_equal(backend.to_numpy(g1[k]), g0[k])


def test_coadjoint_hvp_and_training_run_on_strict(strict):
    P, u, y = _rnn_problem()
    c = coadjoint.sweep(P, u, y, G="G23", alpha=0.5)
    assert np.isfinite(float(c.J))
    hv = rnn.hvp(P, u, y, rnn.init_params(2, 4, 2, seed=9))
    assert set(hv) == set(P)

    def grad_fn(params, ub, yb):
        return rnn.loss_and_grad(params, ub, yb)
    hist = train.fit(P, grad_fn, u, y, epochs=2, batch_size=2, optimizer=Adam(lr=1e-2), seed=0,
                     progress=False)
    assert len(hist.epochs) == 3 and backend.is_array(hist.params["W_rec"])  # row 0: the init


def test_neural_odes_run_on_strict(strict):
    rng = np.random.default_rng(0)
    P = node.init_params(2, 5, seed=0, l=1)
    h0, y = rng.standard_normal((4, 2)), rng.standard_normal((4, 1))
    for method in ("discrete", "continuous"):
        F, g, info = node.loss_and_grad(P, h0, y, 0.0, 1.0, "rk4", steps=4, method=method)
        assert np.isfinite(float(F)) and backend.is_array(g["theta1"])
    Q = hbnode.init_params(2, 5, seed=1, learn_gamma=True, l=1)
    F, g, info = hbnode.loss_and_grad(Q, h0, rng.standard_normal((4, 2)), y, steps=4)
    assert np.isfinite(float(F))
