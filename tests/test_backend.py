"""The backend switch, the import rule, and CuPy/NumPy agreement (skipped without a GPU)."""
import ast
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from manualgrad import backend, rnn

PKG = pathlib.Path(__file__).resolve().parents[1] / "manualgrad"
CUPY_OK, CUPY_WHY = backend.cupy_available()
needs_gpu = pytest.mark.skipif(not CUPY_OK, reason="CuPy/GPU not available: " + CUPY_WHY)


def _imported_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno


def test_only_backend_imports_numpy_or_cupy():
    offenders = []
    files = sorted(PKG.rglob("*.py"))
    assert len(files) > 5
    for f in files:
        if f.name == "backend.py" and f.parent == PKG:
            continue
        for mod, line in _imported_modules(f):
            if mod in ("numpy", "cupy", "cupyx"):
                offenders.append("%s:%d imports %s" % (f.relative_to(PKG.parent), line, mod))
    assert not offenders, "engine modules must use manualgrad.backend:\n" + "\n".join(offenders)


def test_the_import_rule_test_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy as np\nfrom cupy import asarray\n")
    assert [m for m, _ in _imported_modules(bad)] == ["numpy", "cupy"]


def test_no_autodiff_library_anywhere():
    for f in list(PKG.rglob("*.py")) + list((PKG.parent / "tests").rglob("*.py")):
        for mod, line in _imported_modules(f):
            assert mod not in ("torch", "jax", "autograd", "tensorflow"), "%s:%d" % (f, line)


def _selected_backend(config):
    """The backend this run selected, read as tests/conftest.py reads it: --backend, else
    $MANUALGRAD_BACKEND, else numpy."""
    name = config.getoption("--backend") or os.environ.get("MANUALGRAD_BACKEND") or "numpy"
    return name.strip().lower()


def test_switch_context_manager_and_dtype(request):
    selected = _selected_backend(request.config)
    assert backend.get_backend() == selected and backend.get_dtype() == np.float64
    with backend.use_backend(dtype="float32"):
        P = rnn.init_params(2, 3, 1, seed=0)
        assert all(v.dtype == np.float32 for v in P.values())
        u = backend.asarray(np.ones((4, 2, 2)))
        assert rnn.loss(P, u, np.ones((2, 1)), loss="mse", output="identity").dtype == np.float32
    assert backend.get_dtype() == np.float64
    with pytest.raises(ValueError, match="unknown backend 'torch'.*numpy, cupy"):
        backend.set_backend("torch")
    with pytest.raises(ValueError, match="dtype must be one of"):
        backend.set_dtype("float16")
    assert backend.get_backend() == selected


def test_same_seed_same_numbers_and_float32_is_the_rounded_float64():
    a = backend.randn((3, 4), seed=7)
    b = backend.randn((3, 4), seed=7, dtype="float32")
    assert np.array_equal(a.astype(np.float32), b)
    assert not np.array_equal(a, backend.randn((3, 4), seed=8))


@pytest.mark.skipif(CUPY_OK, reason="CuPy is usable here; the error path cannot be exercised")
def test_cupy_request_without_gpu_says_what_and_how_to_fix(request):
    with pytest.raises(RuntimeError, match="cannot use the 'cupy' backend: CuPy is (not installed|"
                                           "installed but no CUDA GPU).*set_backend\\('numpy'\\)"):
        backend.set_backend("cupy")
    assert backend.get_backend() == _selected_backend(request.config)


def test_environment_variable_selects_backend_and_dtype():
    code = ("from manualgrad import backend; print(backend.get_backend(), backend.get_dtype())")
    env = dict(os.environ, MANUALGRAD_BACKEND="numpy", MANUALGRAD_DTYPE="float32",
               PYTHONPATH=str(PKG.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["numpy", "float32"], out.stderr
    env["MANUALGRAD_BACKEND"] = "tensorflow"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "MANUALGRAD_BACKEND='tensorflow' is not valid (unknown backend)" in out.stderr


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("many_to_many", [False, True])
@pytest.mark.parametrize("head", [("sigmoid", "bce"), ("softmax", "cross_entropy"),
                                  ("identity", "mse")])
def test_cupy_matches_numpy_to_1e12(head, many_to_many):
    output, loss = head
    rng = np.random.default_rng(0)
    T, B, p, m, l = 20, 8, 3, 16, 3
    u = rng.standard_normal((T, B, p))
    lead = (T, B) if many_to_many else (B,)
    y = rng.integers(0, l, lead) if loss == "cross_entropy" else rng.uniform(0, 1, lead + (l,))
    x0 = 0.3 * rng.standard_normal((B, m))
    kw = dict(x0=x0, activation="tanh", output=output, loss=loss, many_to_many=many_to_many)
    with backend.use_backend("numpy"):  # the reference on the host, whatever the suite's backend
        F_np, g_np = rnn.loss_and_grad(rnn.init_params(p, m, l, seed=1, bias_scale=0.2), u, y, **kw)
    with backend.use_backend("cupy"):
        P = rnn.init_params(p, m, l, seed=1, bias_scale=0.2)
        F_cp, g_cp = rnn.loss_and_grad(P, u, y, **kw)
        assert type(g_cp["W_rec"]).__module__.startswith("cupy")
        assert abs(float(F_cp) - float(F_np)) <= 1e-12 * max(1.0, abs(float(F_np)))
        for k in g_np:
            diff = np.abs(backend.to_numpy(g_cp[k]) - g_np[k]).max()
            assert diff <= 1e-12 * max(1.0, np.abs(g_np[k]).max()), (k, diff)
