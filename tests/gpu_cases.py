"""What the GPU tests share: test_gpu.py (on a GPU) and test_gpu_emulated.py (the kernels on the CPU)."""
import numpy as np

from manualgrad import backend


def rel(a, b):
    """||a - b|| / ||b|| on the host in float64 (a, b of any backend)."""
    a = backend.to_numpy(a).astype(np.float64)
    b = backend.to_numpy(b).astype(np.float64)
    return float(np.linalg.norm((a - b).ravel()) / max(np.linalg.norm(b.ravel()), 1e-300))


def data(T, B, p, m, l, loss, many_to_many, seed=0):
    """u (T, B, p), targets for ``loss`` (labels for cross_entropy), x0 (B, m): host arrays."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((T, B, p))
    lead = (T, B) if many_to_many else (B,)
    y = rng.integers(0, l, lead) if loss == "cross_entropy" else rng.uniform(0, 1, lead + (l,))
    return u, y, 0.3 * rng.standard_normal((B, m))


def rnn_arrays(s):
    """Every array of an rnn.Sweep worth comparing, by name."""
    out = {"x": s.traj.x, "z": s.traj.z, "lam": s.adj.lam, "lam_z": s.adj.lam_z,
           "lam0": s.adj.lam0, "F": s.F}
    out.update({"grad_" + k: v for k, v in s.grads.items()})
    return out
