"""Workspaces (manualgrad.backend.Workspace): buffers reused across calls, results never aliased.

The contract, for every model's ``loss_and_grad`` (and ``loss``):

1. the same numbers bit for bit with a workspace, without one, and on a later call that reuses
   the buffers;
2. nothing returned is a workspace buffer: results kept from one call are unchanged by the next
   (the rule: a workspace holds only what stays inside a call);
3. after the first call, a call with the same shapes allocates no buffer (no workspace miss) and
   no large host memory (tracemalloc: under a quarter of one trajectory array);
4. shapes that change do not grow a workspace without bound; ``clear()`` releases everything;
5. a nested engine call (a penalty calling the engine) gets fresh arrays; the default workspace
   is per thread.
"""
import threading
import tracemalloc

import numpy as np
import pytest

from manualgrad import backend, coadjoint, rnn, train
from manualgrad.cells import CELLS
from manualgrad.ode import hbnode, node
from manualgrad.optim import Adam

T, B, P_IN, M, L = 9, 6, 3, 12, 2


def _data(seed, m2m=False):
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((T, B, P_IN))
    y = rng.uniform(0, 1, ((T, B, L) if m2m else (B, L)))
    return u, y


def _cell_case(name, m2m=False):
    cell = CELLS[name]
    params = cell.init_params(P_IN, M, L, seed=1)

    def call(seed, workspace):
        u, y = _data(seed, m2m)
        return cell.loss_and_grad(params, u, y, many_to_many=m2m, workspace=workspace)
    return call


def _coadjoint_case(G="G23"):
    params = rnn.init_params(P_IN, M, L, seed=2, bias_scale=0.2)

    def call(seed, workspace):
        u, y = _data(seed)
        return coadjoint.loss_and_grad(params, u, y, G=G, alpha=0.4, workspace=workspace)
    return call


def _rnn_loss_case():
    params = rnn.init_params(P_IN, M, L, seed=3)

    def call(seed, workspace):
        u, y = _data(seed, True)
        return rnn.loss(params, u, y, many_to_many=True, workspace=workspace)
    return call


def _node_case(solver, method):
    params = node.init_params(3, 8, seed=0, l=2)

    def call(seed, workspace):
        rng = np.random.default_rng(seed)
        h0, y = rng.standard_normal((B, 3)), rng.standard_normal((B, 2))
        kw = {} if solver == "dopri5" else dict(steps=7)
        return node.loss_and_grad(params, h0, y, 0.0, 1.0, solver, method=method,
                                  workspace=workspace, **kw)
    return call


def _hbnode_case(method):
    params = hbnode.init_params(3, 8, seed=1, learn_gamma=True, l=2)

    def call(seed, workspace):
        rng = np.random.default_rng(seed)
        h0, m0, y = (rng.standard_normal((B, 3)), rng.standard_normal((B, 3)),
                     rng.standard_normal((B, 2)))
        return hbnode.loss_and_grad(params, h0, m0, y, steps=7, method=method,
                                    workspace=workspace)
    return call


CASES = {"cell-%s" % n: _cell_case(n) for n in sorted(CELLS)}
CASES.update({"cell-%s-m2m" % n: _cell_case(n, True) for n in sorted(CELLS)})
CASES.update({"coadjoint-G23": _coadjoint_case(), "coadjoint-released": _coadjoint_case("released"),
              "rnn-loss-m2m": _rnn_loss_case()})
CASES.update({"node-%s-%s" % (s, m): _node_case(s, m) for s in ("rk4", "dopri5")
              for m in ("discrete", "continuous")})
CASES.update({"hbnode-%s" % m: _hbnode_case(m) for m in ("discrete", "continuous")})


def _arrays(result):
    """Every array in a result (F, grads dict, info dict, tuples), flattened, with a path."""
    out = []

    def walk(x, path):
        if isinstance(x, dict):
            for k in sorted(x, key=str):
                walk(x[k], path + (str(k),))
        elif isinstance(x, (tuple, list)):
            for i, v in enumerate(x):
                walk(v, path + (str(i),))
        elif backend.is_array(x) or isinstance(x, np.generic):  # F may be a NumPy scalar
            out.append(("/".join(path), x))
    walk(result, ())
    return out


def _host(result):
    return [(p, backend.to_numpy(a).copy()) for p, a in _arrays(result)]


def _same(a, b):
    return len(a) == len(b) and all(pa == pb and np.array_equal(x, y, equal_nan=True)
                                    and x.dtype == y.dtype for (pa, x), (pb, y) in zip(a, b))


@pytest.mark.parametrize("case", sorted(CASES))
def test_bit_for_bit_with_and_without_a_workspace_and_on_reuse(case):
    call = CASES[case]
    ws = backend.Workspace()
    fresh = _host(call(0, False))
    first = _host(call(0, ws))
    call(1, ws)  # the buffers now hold another call's numbers
    again = _host(call(0, ws))
    assert fresh and _same(fresh, first) and _same(fresh, again)
    assert len(ws) > 0, "the call did not use the workspace"


@pytest.mark.parametrize("case", sorted(CASES))
def test_results_are_never_workspace_buffers(case):
    call = CASES[case]
    ws = backend.Workspace()
    kept = call(0, ws)
    kept_host = _host(kept)
    call(1, ws)
    assert _same(_host(kept), kept_host), "a later call changed a result the caller holds"
    if backend.get_backend() == "numpy":  # and, directly, no result shares memory with a buffer
        for path, a in _arrays(kept):
            assert not any(np.shares_memory(a, b) for b in ws._buffers.values()), path


@pytest.mark.parametrize("case", sorted(CASES))
def test_second_call_allocates_no_buffer(case):
    call = CASES[case]
    ws = backend.Workspace()
    call(0, ws)
    n, misses = len(ws), ws.misses
    call(1, ws)
    call(2, ws)
    assert ws.misses == misses and len(ws) == n
    assert ws.hits > 0


@pytest.mark.only_backend("numpy", reason="tracemalloc sees host memory only")
@pytest.mark.parametrize("case", ["cell-rnn", "cell-lstm", "cell-momentum_rnn", "cell-indrnn",
                                  "cell-momentum_lstm", "cell-gru", "coadjoint-G23"])
def test_steady_state_allocates_no_trajectory_sized_memory(case):
    """A larger problem (T = 60, B = 64, m = 48: one (T, B, m) array is 1.4 MiB): after the
    first call, a call's peak of new host memory stays under a quarter of that."""
    global T, B, M
    saved = T, B, M
    T, B, M = 60, 64, 48
    try:
        call = (_cell_case(case[5:]) if case.startswith("cell-") else _coadjoint_case())
        ws = backend.Workspace()
        call(0, ws)
        call(1, ws)
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            call(2, ws)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        traj = T * B * M * 8
        assert peak < traj / 4, "%s: %.2f MiB new memory at peak (a trajectory is %.2f MiB)" % (
            case, peak / 2 ** 20, traj / 2 ** 20)
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            call(3, False)  # the control: without a workspace the trajectories are allocated
            peak_fresh = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert peak_fresh > traj, (peak_fresh, traj)
    finally:
        T, B, M = saved


def test_changing_shapes_are_bounded_and_clear_releases():
    ws = backend.Workspace(per_name=2)
    params = rnn.init_params(P_IN, M, L, seed=0)
    rng = np.random.default_rng(0)
    for T_ in (3, 4, 5, 6, 7, 8):
        rnn.loss_and_grad(params, rng.standard_normal((T_, B, P_IN)), rng.uniform(0, 1, (B, L)),
                          workspace=ws)
    names = [k[0] for k in ws._buffers]
    assert max(names.count(n) for n in set(names)) <= 2
    assert ws.nbytes > 0
    ws.clear()
    assert len(ws) == 0 and ws.nbytes == 0
    with pytest.raises(ValueError, match="per_name"):
        backend.Workspace(per_name=0)
    with pytest.raises(TypeError, match="workspace must be"):
        rnn.loss_and_grad(params, rng.standard_normal((3, B, P_IN)), rng.uniform(0, 1, (B, L)),
                          workspace="yes")


def test_default_workspace_is_per_thread_can_be_disabled_and_cleared():
    params = rnn.init_params(P_IN, M, L, seed=0)
    u, y = _data(0)
    with backend.use_workspace(True) as ws:
        F0, g0 = rnn.loss_and_grad(params, u, y)  # workspace=True: the thread's default
        assert ws is backend.workspace() and len(ws) > 0
        other = {}

        def worker():
            other["ws"] = backend.workspace()
            other["res"] = rnn.loss_and_grad(params, u, y)
        th = threading.Thread(target=worker)
        th.start()
        th.join()
        assert other["ws"] is not ws
        assert all(np.array_equal(backend.to_numpy(other["res"][1][k]), backend.to_numpy(g0[k]))
                   for k in g0)
        backend.clear_workspace()
        assert len(ws) == 0
    with backend.use_workspace(False):
        assert backend.workspace() is None
        F1, g1 = rnn.loss_and_grad(params, u, y)  # fresh arrays
    assert float(F1) == float(F0)


def test_threads_sharing_nothing_get_the_serial_results():
    params = rnn.init_params(P_IN, M, L, seed=4)
    serial = {s: rnn.loss_and_grad(params, *_data(s), workspace=False)[1] for s in range(8)}
    got, errors = {}, []

    def worker(seeds):
        try:
            for _ in range(5):
                for s in seeds:
                    got[s] = rnn.loss_and_grad(params, *_data(s))[1]  # each thread's default
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=worker, args=(range(i, 8, 2),)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for s in serial:
        for k in serial[s]:
            assert np.array_equal(backend.to_numpy(got[s][k]), backend.to_numpy(serial[s][k]))


def test_a_nested_engine_call_gets_fresh_arrays():
    """A penalty that calls the engine runs while the outer call's buffers are in use."""
    params = rnn.init_params(P_IN, M, L, seed=5, bias_scale=0.2)
    u, y = _data(5)
    inner = {}

    def G(lam, lam0):
        inner["F"] = rnn.loss_and_grad(params, u[:, ::-1].copy(), y)[0]  # same shapes
        Gb, dlam, dlam0 = coadjoint.get_penalty("G22")(lam, lam0)
        return Gb, dlam, dlam0
    ws = backend.Workspace()
    with backend.use_workspace(ws):
        F, Gv, g = coadjoint.loss_and_grad(params, u, y, G=G, alpha=0.5, workspace=True)
    F2, Gv2, g2 = coadjoint.loss_and_grad(params, u, y, G="G22", alpha=0.5, workspace=False)
    assert float(F) == float(F2) and float(Gv) == float(Gv2)
    assert all(np.array_equal(backend.to_numpy(g[k]), backend.to_numpy(g2[k])) for k in g)
    assert float(inner["F"]) == float(rnn.loss_and_grad(params, u[:, ::-1].copy(), y,
                                                        workspace=False)[0])


def test_fit_runs_its_loop_in_one_workspace():
    params = rnn.init_params(P_IN, M, L, seed=6)
    rng = np.random.default_rng(6)
    u, y = rng.standard_normal((T, 40, P_IN)), rng.uniform(0, 1, (40, L))
    seen = []

    def grad_fn(P, ub, yb):
        seen.append(backend.workspace())
        return rnn.loss_and_grad(P, ub, yb)
    h1 = train.fit(params, grad_fn, u, y, epochs=2, batch_size=16, optimizer=Adam(lr=1e-2),
                   seed=0, progress=False)
    assert len(set(map(id, seen))) == 1 and seen[0] is not None
    assert len(seen[0]) > 0  # the loop's workspace holds the (T, 16, m) and (T, 8, m) buffers
    with backend.use_workspace(False):
        h2 = train.fit(params, lambda P, ub, yb: rnn.loss_and_grad(P, ub, yb, workspace=False),
                       u, y, epochs=2, batch_size=16, optimizer=Adam(lr=1e-2), seed=0,
                       progress=False)
    for k in params:
        assert np.array_equal(backend.to_numpy(h1.params[k]), backend.to_numpy(h2.params[k]))
