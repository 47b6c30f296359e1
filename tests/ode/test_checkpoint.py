"""The checkpointed discrete adjoint (X-CKPT, manualgrad.ode.checkpoint, docs/ode.md 4.1)."""
import functools
import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from manualgrad import backend, check, testing
from manualgrad.ode import adjoint, checkpoint, hbnode, node, solvers

AGREE = check.AGREEMENT["float64"]
SOLVERS = tuple(s for s in solvers.solver_names() if s in solvers.SOLVERS)  # explicit RK + dopri5
IMPLICIT = tuple(s for s in solvers.solver_names() if s not in solvers.SOLVERS)  # X-IMPL, if any


def _host(d):
    return {k: backend.to_numpy(v) for k, v in d.items()}


def _rel(g, ref):
    """Norm-wise relative gap of two gradient mappings (over all parameters together)."""
    g, ref = _host(g), _host(ref)
    num = math.sqrt(sum(float(np.sum((g[k] - ref[k]) ** 2)) for k in ref))
    den = math.sqrt(sum(float(np.sum(ref[k] ** 2)) for k in ref))
    return num / max(den, 1e-300)


def _same(a, b):
    a, b = _host(a), _host(b)
    return list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


# ============================================================================ the schedule
@functools.lru_cache(maxsize=None)
def _dp(l, c):
    """The recursion (R) solved by brute force: T(1, c) = 0, T(l >= 2, 0) = inf."""
    if l == 1:
        return 0
    if c == 0:
        return math.inf
    return min(j + _dp(l - j, c - 1) + _dp(j, c) for j in range(1, l))


def test_binomial_cost_and_split_solve_the_recursion():
    """(G) T(l, c) = r l - beta(c + 1, r - 1) is the minimum of (R) for every l <= 60, c <= 6,
    and every split j of (J) attains it (so the one the schedule takes does)."""
    for c in range(1, 7):
        for l in range(1, 61):
            assert checkpoint.optimal_cost(l, c) == _dp(l, c), (l, c)
            if l >= c + 2:
                r = checkpoint.repetitions(l, c)
                lo = max(checkpoint.beta(c, r - 2), l - checkpoint.beta(c - 1, r))
                hi = min(checkpoint.beta(c, r - 1), l - checkpoint.beta(c - 1, r - 1))
                assert 1 <= lo <= hi < l
                for j in range(lo, hi + 1):
                    assert j + _dp(l - j, c - 1) + _dp(j, c) == _dp(l, c), (l, c, j)
                assert lo <= checkpoint.optimal_split(l, c) <= hi


def test_binomial_cost_by_hand():
    """One checkpoint: advance to the end for every step, N (N - 1) / 2; two for 10 steps:
    r = 3 (beta(2, 2) = 6 < 10 <= beta(2, 3) = 10), T = 3 * 10 - beta(3, 2) = 20; enough
    checkpoints: every state stored once, N - 1."""
    assert [checkpoint.optimal_cost(N, 1) for N in (1, 2, 3, 10)] == [0, 1, 3, 45]
    assert checkpoint.optimal_cost(10, 2) == 20
    assert checkpoint.optimal_cost(10, 9) == checkpoint.optimal_cost(10, 50) == 9


def _replay(sched):
    """Walk the actions, checking that each uses only states held; return the leaves in the
    order reversed."""
    held, leaves, rows = {0}, [], None
    for kind, a, b in sched.forward:
        assert a in held and a < b
        if kind == "advance":
            held.add(b)
        else:
            assert b == sched.steps
            rows = (a, b)
    for kind, a, b in sched.backward:
        assert a in held, (kind, a, b)
        if kind == "advance":
            held.add(b)
        elif kind == "record":
            rows = (a, b)
        else:
            assert rows is not None and rows[0] == a and (b in held or b == sched.steps)
            leaves.append((a, b))
            held.discard(b)
            rows = None
    return leaves


@given(N=st.integers(1, 300), c=st.integers(1, 12))
def test_schedule_counts_follow_the_binomial_formula(N, c):
    """The schedule reverses every step exactly once, right to left, from states it holds; its
    forward pass takes N steps, its sweep recomputes T(N, c) - (N - 1) (the optimum of (G)); it
    holds at most c + 2 states at once (N + 1, as 'discrete', once c >= N)."""
    s = checkpoint.schedule(N, c)
    leaves = _replay(s)
    assert [k for a, b in leaves for k in range(b - 1, a - 1, -1)] == list(range(N - 1, -1, -1))
    assert s.forward_steps == N
    assert s.recomputed_steps == checkpoint.optimal_cost(N, c) - (N - 1)
    assert s.peak_states <= c + 2 and s.stored_states <= c + 1
    assert s.checkpoint_steps[0] == 0
    if c >= N:
        assert s.peak_states == N + 1 and s.recomputed_steps == 0
    if c == 1:
        assert s.recomputed_steps == (N - 1) * (N - 2) // 2


def test_a_suboptimal_split_is_caught_by_the_count(monkeypatch):
    """The count test can fail: always advancing to the last step (one checkpoint's schedule,
    valid for any budget, not optimal) recomputes more than the binomial formula allows."""
    monkeypatch.setattr(checkpoint, "optimal_split", lambda l, c: l - 1)
    checkpoint._schedule.cache_clear()
    try:
        s = checkpoint.schedule(40, 3)
        _replay(s)
        assert s.recomputed_steps > checkpoint.optimal_cost(40, 3) - 39
    finally:
        monkeypatch.undo()
        checkpoint._schedule.cache_clear()


# ============================================================================ equal to discrete
def _compare(run, c, stages):
    """run(method, **kw) -> (F, grads, info). F, the final state and dL/dz0 bit for bit, the
    theta-gradients to AGREEMENT (bit for bit when one leaf holds the solve); the counts."""
    F, g, info = run("discrete")
    F2, g2, info2 = run("checkpointed", checkpoints=c)
    assert float(F) == float(F2)
    assert _same({"a0": info["grad_h0"], "hT": info["hT"]},
                 {"a0": info2["grad_h0"], "hT": info2["hT"]})
    assert list(g2) == list(g)
    assert _rel(g2, g) <= AGREE
    N = info2["steps_forward"]
    if c >= N - 1:
        assert _same(g, g2)
    T = checkpoint.optimal_cost(N, c)
    adaptive = info2["solver"] == "dopri5"
    assert info2["recomputed_steps"] == (T + 1 if adaptive else T - (N - 1))
    # the f calls of the sweep: every recomputed step (s stages) and s - 1 per reversed step
    # (explicit RK; an implicit step's f calls depend on its Newton iterations)
    if stages is not None:
        assert info2["nfe_backward"] == stages * info2["recomputed_steps"] + (stages - 1) * N
    assert info2["peak_states"] <= c + 2 and info2["checkpoints"] == c
    assert info2["stored_states"] == len(info2["checkpoint_steps"])
    assert info2["steps_backward"] == N and info2["ts"] == info["ts"]
    return info2


@given(prob=testing.node_problems(max_steps=12), c=st.integers(1, 6))
def test_node_checkpointed_equals_discrete(prob, c):
    """BW-NODE, every explicit solver and dopri5 on its accepted grid, every head, time input or
    not, 1..12 steps, budgets 1..6."""
    stages = solvers.get_solver(prob.kwargs["solver"]).prop_stages
    _compare(lambda method, **kw: prob.loss_and_grad(method=method, workspace=False, **kw),
             c, stages)


@given(n=st.integers(1, 3), H=st.integers(1, 4), B=st.integers(1, 3), seed=testing.seeds(),
       solver=st.sampled_from(SOLVERS), N=st.integers(1, 14), c=st.integers(1, 5),
       learn=st.booleans(), gamma=st.floats(0.0, 1.5), readout=st.booleans())
def test_hbnode_checkpointed_equals_discrete(n, H, B, seed, solver, N, c, learn, gamma,
                                             readout):
    """HBNODE z = [h, m], gamma fixed or learned (gamma_raw), with or without a readout."""
    rng = backend.host_rng(seed)
    P = hbnode.init_params(n, H, seed=seed, learn_gamma=learn, gamma0=0.3 + 0.4 * (gamma / 1.5),
                           l=2 if readout else None, bias_scale=0.3)
    h0, m0 = (backend.asarray(rng.standard_normal((B, n))) for _ in range(2))
    y = backend.asarray(rng.standard_normal((B, 2 if readout else n)))
    kw = dict(rtol=1e-4, atol=1e-6) if solver == "dopri5" else dict(steps=N)

    def run(method, **extra):
        F, g, info = hbnode.loss_and_grad(P, h0, m0, y, t1=1.2, solver=solver, method=method,
                                          gamma=gamma, workspace=False, **kw, **extra)
        info["grad_h0"] = info["grad_z0"]  # compare all of dF/dz0 = [dF/dh0, dF/dm0]
        info["hT"] = backend.xp().concatenate([info["hT"], info["mT"]], axis=1)
        return F, g, info
    _compare(run, c, solvers.get_solver(solver).prop_stages)


@pytest.mark.skipif(not IMPLICIT, reason="no implicit solvers registered")
@given(prob=testing.node_problems(solvers=IMPLICIT or ("rk4",), max_steps=12),
       c=st.integers(1, 6))
def test_implicit_solvers_checkpointed_equals_discrete(prob, c):
    """The implicit solvers (X-IMPL) through the same public functions: solve(grid=...) and
    discrete_sweep; bit-identical states, so the same equalities. (Problems whose Newton
    iteration does not converge at the drawn step are the implicit solver's concern: skipped.)"""
    try:
        prob.loss_and_grad(method="discrete", workspace=False)
    except FloatingPointError:
        assume(False)
    _compare(lambda method, **kw: prob.loss_and_grad(method=method, workspace=False, **kw),
             c, None)


def test_checkpointed_gradient_matches_finite_differences():
    """Directly, not only through 'discrete': rk4, 9 steps, 2 checkpoints, a readout."""
    rng = backend.host_rng(3)
    P = node.init_params(3, 4, seed=3, l=2, bias_scale=0.3, time_input=True)
    h0, y = (backend.asarray(rng.standard_normal((2, k))) for k in (3, 2))
    kw = dict(solver="rk4", steps=9, t1=1.3)
    _, g, info = node.loss_and_grad(P, h0, y, method="checkpointed", checkpoints=2, **kw)
    assert info["recomputed_steps"] == checkpoint.optimal_cost(9, 2) - 8 > 0
    check.assert_gradients(lambda p: node.loss(p, h0, y, **kw), P, g)


@given(prob=testing.node_problems(solvers=("dopri5",)))
def test_dopri5_replay_on_the_accepted_grid_reproduces_the_states_bit_for_bit(prob):
    """The checkpoints of a dopri5 solve come from the replay of its accepted grid
    (odeint_grid): the same states as the adaptive solve's, bit for bit, time input or not."""
    fld = node.NODEField(prob.kwargs["activation"], time_input="theta1_t" in prob.params)
    P = node.check_params(prob.params, prob.h0, fld)
    kw = prob.kwargs
    sol = solvers.odeint(fld, prob.h0, P, kw["t0"], kw["t1"], "dopri5", rtol=kw["rtol"],
                         atol=kw["atol"])
    rep = solvers.odeint_grid(fld, prob.h0, P, sol.ts, "dopri5")
    assert len(rep.zs) == len(sol.zs)
    assert all(np.array_equal(backend.to_numpy(a), backend.to_numpy(b))
               for a, b in zip(sol.zs, rep.zs))


def test_workspace_and_repeated_calls_give_the_same_numbers():
    rng = backend.host_rng(0)
    P = node.init_params(3, 4, seed=1, l=2, bias_scale=0.1)
    h0, y = (backend.asarray(rng.standard_normal((4, k))) for k in (3, 2))
    runs = [node.loss_and_grad(P, h0, y, solver="midpoint", steps=17, method="checkpointed",
                               checkpoints=3, workspace=w) for w in (False, True, True)]
    for F, g, info in runs[1:]:
        assert float(F) == float(runs[0][0]) and _same(g, runs[0][1])
        assert _same({"a": info["grad_h0"]}, {"a": runs[0][2]["grad_h0"]})
    assert runs[0][2]["checkpoint_steps"] == list(checkpoint.schedule(17, 3).checkpoint_steps)


def test_a_fixed_step_checkpointed_solution_is_swept_once():
    rng = backend.host_rng(0)
    P = node.check_params(node.init_params(2, 3, seed=0), np.zeros((1, 2)), node.NODEField())
    h0 = backend.asarray(rng.standard_normal((2, 2)))
    fld = node.NODEField()
    csol = checkpoint.forward(fld, h0, P, 0.0, 1.0, "rk4", 6, None, 1e-6, 1e-8, 100, 2)
    aT = backend.asarray(rng.standard_normal((2, 2)))
    a0, g = checkpoint.sweep(fld, csol, P, aT)
    sol = solvers.odeint(fld, h0, P, 0.0, 1.0, "rk4", steps=6)
    b0, gd = adjoint.discrete_adjoint(fld, sol, P, aT)
    assert np.array_equal(backend.to_numpy(a0), backend.to_numpy(b0)) and _rel(g, gd) <= AGREE
    assert csol.store.keys() == {0} and csol.leaf is None  # released as the sweep went
    with pytest.raises(ValueError, match="swept already"):
        checkpoint.sweep(fld, csol, P, aT)


# ============================================================================ bad budgets
@pytest.mark.parametrize("bad, err, match", [
    (0, ValueError, ">= 1"), (-3, ValueError, ">= 1"), (2.0, TypeError, "integer"),
    (True, TypeError, "integer"), ("4", TypeError, "integer"), (None, ValueError, "needs "
                                                                "checkpoints=")])
def test_bad_budgets_raise_before_any_work(monkeypatch, bad, err, match):
    def no_work(*a, **k):
        raise AssertionError("a solve started before the budget was checked")
    monkeypatch.setattr(solvers, "solve", no_work)
    monkeypatch.setattr(checkpoint, "forward", no_work)
    P = node.init_params(2, 3, seed=0)
    h0 = np.zeros((1, 2))
    with pytest.raises(err, match=match):
        node.loss_and_grad(P, h0, h0, steps=4, method="checkpointed", checkpoints=bad)
    Q = hbnode.init_params(2, 3, seed=0)
    with pytest.raises(err, match=match):
        hbnode.loss_and_grad(Q, h0, None, h0, steps=4, method="checkpointed", checkpoints=bad)


def test_a_budget_with_another_method_is_refused():
    P = node.init_params(2, 3, seed=0)
    h0 = np.zeros((1, 2))
    for method in ("discrete", "continuous"):
        with pytest.raises(ValueError, match="only by method='checkpointed'"):
            node.loss_and_grad(P, h0, h0, steps=4, method=method, checkpoints=3)
    with pytest.raises(ValueError, match=">= 1"):
        checkpoint.schedule(5, 0)
    with pytest.raises(ValueError, match="steps"):
        checkpoint.schedule(0, 2)


# ============================================================================ memory
def _peak_bytes(fn):
    fn()  # warm caches (imports, the schedule, first-call allocations)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.only_backend("numpy", "strict", reason="tracemalloc traces host allocations only")
def test_checkpointed_memory_does_not_grow_with_the_steps():
    """With a fixed budget (c = 4: at most 6 states held, whatever N) steps x8 (16 -> 128)
    leaves the peak flat (the fixed part is ~40 states of temporaries: stages, sweep rows, the
    field's), while 'discrete' grows by one state per extra step; and raising the budget raises
    the peak by the states the schedule says it holds."""
    rng = np.random.default_rng(0)
    B, n, H = 128, 16, 16
    P = node.init_params(n, H, seed=0)
    h0, y = rng.standard_normal((B, n)), rng.standard_normal((B, n))
    state = B * n * 8

    def peak(steps, **kw):
        return _peak_bytes(lambda: node.loss_and_grad(P, h0, y, solver="rk4", steps=steps,
                                                      workspace=False, **kw))
    k16, k128 = (peak(N, method="checkpointed", checkpoints=4) for N in (16, 128))
    d16, d128 = (peak(N) for N in (16, 128))
    assert k128 - k16 < 0.05 * 112 * state, (k16, k128, state)
    # the budget sets the peak: c = 8 holds 10 states, c = 2 holds 4 (Schedule.peak_states)
    held = [checkpoint.schedule(64, c).peak_states for c in (2, 8)]
    k2, k8 = (peak(64, method="checkpointed", checkpoints=c) for c in (2, 8))
    assert held == [4, 10] and abs((k8 - k2) / state - 6) < 1, (k2, k8, state)
    assert d128 - d16 > 0.8 * 112 * state
    assert d128 > 3 * k128
