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


def lstm_arrays(s):
    """Every array of a cells.lstm.Sweep worth comparing, by name."""
    out = {"h": s.traj.h, "c": s.traj.c, "a": s.traj.a, "gates": s.traj.gates,
           "tc": s.traj.tc, "lam": s.adj.lam, "lam_c": s.adj.lam_c, "cbar": s.adj.lam_c_total,
           "zeta": s.adj.lam_z, "lam0": s.adj.lam0, "lam_c0": s.adj.lam_c0, "F": s.F}
    out.update({"grad_" + k: v for k, v in s.grads.items()})
    return out


def coadjoint_arrays(c):
    """The coadjoint sweeps' arrays and the gradient of a coadjoint.Coadjoint, by name."""
    out = {"gamma": c.gamma, "xi": c.xi, "zeta": c.zeta, "J": c.J}
    out.update({"grad_" + k: v for k, v in c.grads.items()})
    return out


def check_workspace_reuse(P, LP, u, y, x0):
    """RNN, coadjoint and LSTM gradients on the active (fused) backend: the same bits without a
    workspace, with one, and with it again after a call on other data; no buffer allocated
    after the first call."""
    from manualgrad import coadjoint, rnn
    from manualgrad.cells import lstm

    def calls(v, workspace):
        return [rnn.loss_and_grad(P, v, y, x0=x0, workspace=workspace)[1],
                coadjoint.loss_and_grad(P, v, y, x0=x0, workspace=workspace)[2],
                lstm.loss_and_grad(LP, v, y, workspace=workspace)[1]]
    ws = backend.Workspace()
    ref = calls(u, False)
    first = calls(u, ws)
    misses = ws.misses
    calls(u[::-1].copy(), ws)
    again = calls(u, ws)
    assert ws.misses == misses and ws.hits > 0
    for r, a, b in zip(ref, first, again):
        for k in r:
            r_, a_, b_ = (backend.to_numpy(x) for x in (r[k], a[k], b[k]))
            assert np.array_equal(r_, a_) and np.array_equal(r_, b_), k
