"""ODE solvers (manualgrad.ode.solvers): tableaux, orders, exact solutions, dopri5, NFE, errors."""
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from manualgrad import backend
from manualgrad.ode import adjoint, node, solvers
from manualgrad.ode.solvers import SOLVERS, odeint, odeint_grid

CUPY_OK, CUPY_WHY = backend.cupy_available()
needs_gpu = pytest.mark.skipif(not CUPY_OK, reason="CuPy/GPU not available: " + CUPY_WHY)

FIXED = {"euler": 1, "midpoint": 2, "rk4": 4}


# ----------------------------------------------------------------------------- test fields
class FunField:
    """dz/dt = fn(t, z) for tests (vjp unused by the forward solves; given for the protocol)."""

    def __init__(self, fn):
        self.fn = fn

    def f(self, t, z, theta):
        return self.fn(t, z)

    def vjp(self, t, z, theta, a):
        raise NotImplementedError


def _problems():
    """(name, field, z0, t0, t1, exact z(t1)) with closed-form solutions, batched (B=3).

    z0 and the exact z(t1) are host (NumPy) arrays; the fields are built on the active backend,
    so this runs inside the tests (:func:`problem`), not at import.
    """
    rng = np.random.default_rng(0)
    A = 0.6 * rng.standard_normal((4, 4))
    z0 = rng.standard_normal((3, 4))
    decay0 = rng.standard_normal((3, 2))
    tz0 = rng.standard_normal((3, 2))
    return [
        ("linear", node.LinearField(A), z0, 0.0, 1.0, z0 @ expm(A).T),
        ("decay", FunField(lambda t, z: -z), decay0, 0.5, 2.0, decay0 * math.exp(-1.5)),
        # z' = cos(t) z: z(t) = z0 exp(sin t - sin t0) (a time-dependent field)
        ("time", FunField(lambda t, z: math.cos(t) * z), tz0, 0.3, 2.3,
         tz0 * math.exp(math.sin(2.3) - math.sin(0.3))),
    ]


PROBLEMS = ("linear", "decay", "time")


def problem(name):
    """The test problem called ``name`` (see :func:`_problems`), built on the active backend."""
    return next(p for p in _problems() if p[0] == name)


# ----------------------------------------------------------------------------- tableaux
def _trees(max_order):
    """Rooted trees up to max_order as sorted tuples of children (the root is implicit)."""
    by_order = {1: [()]}
    for p in range(2, max_order + 1):
        found = set()

        def extend(rem, start, children):
            if rem == 0:
                found.add(tuple(sorted(children)))
                return
            for q in range(1, rem + 1):
                for t in by_order[q]:
                    extend(rem - q, start, children + [t])
        extend(p - 1, 0, [])
        by_order[p] = sorted(found)
    return by_order


def _order_of(t):
    return 1 + sum(_order_of(c) for c in t)


def _gamma(t):
    g = _order_of(t)
    for c in t:
        g *= _gamma(c)
    return g


def _phi(tab, b, t):
    """Elementary weight sum_i b_i Phi_i(t) with exact fractions (Butcher's order conditions)."""
    A, c = tab.exact["A"], tab.exact["c"]
    s = len(c)

    def stage(t):  # Phi_i(t) for every stage i: prod over children of (A Phi(child))_i
        out = [Fraction(1)] * s
        for ch in t:
            v = stage(ch)
            for i in range(s):
                out[i] *= sum((A[i][j] * v[j] for j in range(len(A[i]))), Fraction(0))
        return out
    return sum(bi * p for bi, p in zip(b, stage(t)))


TREES = _trees(6)
assert [len(TREES[p]) for p in range(1, 7)] == [1, 1, 2, 4, 9, 20]  # A000081


def _conditions_hold(tab, b, order):
    return all(_phi(tab, b, t) == Fraction(1, _gamma(t)) for t in TREES[order])


@pytest.mark.parametrize("name", list(SOLVERS))
def test_tableau_rows_sum_to_c_and_order_conditions_hold_exactly(name):
    """c_i = sum_j A_ij, Butcher's conditions Phi(t) = 1/gamma(t) for every tree up to the order,
    and some condition of order + 1 fails (so the nominal order is the true one)."""
    tab = SOLVERS[name]
    ex = tab.exact
    for i, row in enumerate(ex["A"]):
        assert sum(row, Fraction(0)) == ex["c"][i]
    for p in range(1, tab.order + 1):
        assert _conditions_hold(tab, ex["b"], p), (name, p)
    assert not _conditions_hold(tab, ex["b"], tab.order + 1)
    if tab.adaptive:  # the embedded 4th-order weights of dopri5
        for p in range(1, tab.err_order + 1):
            assert _conditions_hold(tab, ex["b_err"], p), p
        assert not _conditions_hold(tab, ex["b_err"], tab.err_order + 1)
        assert ex["A"][-1] == tuple(ex["b"][:-1]) and ex["b"][-1] == 0  # FSAL


def test_the_order_condition_check_can_fail():
    """A 1e-4 change of one dopri5 coefficient breaks its order-5 conditions."""
    tab = SOLVERS["dopri5"]
    b = list(tab.exact["b"])
    b[2] += Fraction(1, 10000)
    assert not _conditions_hold(tab, b, 1)
    A = [list(r) for r in tab.exact["A"]]
    A[5][2] = -A[5][2]  # the sign of a63, printed wrongly in some copies of the tableau
    bad = solvers.tableau("bad", tab.exact["c"], A, tab.exact["b"], 5)
    assert not all(_conditions_hold(bad, bad.exact["b"], p) for p in range(1, 6))


# ----------------------------------------------------------------------------- orders
def _observed_orders(errors):
    e = np.asarray(errors)
    return np.log2(e[:-1] / e[1:])


@pytest.mark.parametrize("name, steps", [("euler", (40, 80, 160)), ("midpoint", (40, 80, 160)),
                                         ("rk4", (8, 16, 32))])
@pytest.mark.parametrize("prob", PROBLEMS)
def test_observed_order_of_fixed_step_solvers(name, steps, prob):
    """Halving h divides the global error by 2^p: observed order within 0.3 of p = 1, 2, 4."""
    _, field, z0, t0, t1, exact = problem(prob)
    errs = []
    for N in steps:
        sol = odeint(field, z0, {}, t0, t1, name, steps=N)
        errs.append(np.abs(backend.to_numpy(sol.z1) - exact).max())
    orders = _observed_orders(errs)
    assert np.all(np.abs(orders - SOLVERS[name].order) < 0.3), (name, errs, orders)
    assert errs[-1] < {"euler": 2e-2, "midpoint": 1e-4, "rk4": 1e-7}[name] * np.abs(exact).max()


def test_dopri5_fifth_order_step_converges_at_order_5():
    """The dopri5 coefficients, checked by the observed order of its fixed-grid 5th-order step."""
    _, field, z0, t0, t1, exact = problem("linear")
    errs = [np.abs(backend.to_numpy(odeint_grid(field, z0, {}, np.linspace(t0, t1, N + 1),
                                                "dopri5").z1) - exact).max() for N in (4, 8, 16)]
    orders = _observed_orders(errs)
    assert np.all(np.abs(orders - 5) < 0.3), (errs, orders)


@pytest.mark.parametrize("name", list(FIXED))
def test_fixed_step_nfe_is_exact_and_grid_is_uniform(name):
    _, field, z0, t0, t1, _ = problem("decay")
    sol = odeint(field, z0, {}, t0, t1, name, steps=13)
    assert sol.nfe == FIXED[name] * 13 == SOLVERS[name].nfe_per_step * 13
    assert sol.steps == 13 and len(sol.ts) == 14 and len(sol.zs) == 14
    assert sol.ts[0] == t0 and sol.ts[-1] == t1
    np.testing.assert_allclose(sol.hs, 1.5 / 13, rtol=1e-12)
    assert sol.zs[0] is not None and np.array_equal(sol.zs[-1], sol.z1)
    # h= gives the same solve when it divides the interval
    sol_h = odeint(field, z0, {}, 0.5, 2.0, name, h=0.1)
    assert sol_h.steps == 15 and sol_h.nfe == 15 * FIXED[name]
    # the counting wrapper agrees
    c = solvers.Counted(field)
    odeint(c, z0, {}, t0, t1, name, steps=13)
    assert c.nfe == sol.nfe


def test_euler_is_the_lecture_formula():
    """BW: h_{k+1} = h_k + s f(h_k, t_k, theta), written out by hand for three steps."""
    _, field, z0, t0, t1, _ = problem("time")
    s = (t1 - t0) / 3
    z = z0.copy()
    for k in range(3):
        z = z + s * math.cos(t0 + k * s) * z
    np.testing.assert_allclose(backend.to_numpy(odeint(field, z0, {}, t0, t1, "euler",
                                                       steps=3).z1), z, rtol=1e-14)


def test_batched_rows_are_independent():
    _, field, z0, t0, t1, _ = problem("linear")
    for name in FIXED:
        whole = backend.to_numpy(odeint(field, z0, {}, t0, t1, name, steps=5).z1)
        rows = np.vstack([backend.to_numpy(odeint(field, z0[i:i + 1], {}, t0, t1, name,
                                                  steps=5).z1) for i in range(z0.shape[0])])
        np.testing.assert_allclose(whole, rows, rtol=1e-14, atol=1e-15)


# ----------------------------------------------------------------------------- dopri5
@pytest.mark.parametrize("prob", PROBLEMS)
def test_dopri5_matches_exact_and_solve_ivp_at_tight_tolerance(prob):
    _, field, z0, t0, t1, exact = problem(prob)
    sol = odeint(field, z0, {}, t0, t1, "dopri5", rtol=1e-11, atol=1e-13)
    shape = z0.shape

    def rhs(t, y):  # scipy's state on the host, the field on the backend
        return backend.to_numpy(field.f(t, backend.asarray(y.reshape(shape)), {})).ravel()
    ref = solve_ivp(rhs, (t0, t1), z0.ravel(), method="DOP853", rtol=1e-12, atol=1e-14)
    assert ref.success
    scale = np.abs(exact).max()
    z1 = backend.to_numpy(sol.z1)
    assert np.abs(z1 - ref.y[:, -1].reshape(shape)).max() < 1e-9 * scale
    assert np.abs(z1 - exact).max() < 1e-9 * scale
    assert sol.ts[-1] == t1 and sol.steps == len(sol.ts) - 1
    # NFE: f(t0), one probe for the first step, then 6 per attempted step (FSAL)
    assert sol.nfe == 2 + 6 * (sol.steps + sol.rejected)


def test_dopri5_error_follows_tolerance_and_nfe_grows():
    _, field, z0, t0, t1, exact = problem("linear")
    errs, nfes = [], []
    for rtol in (1e-4, 1e-6, 1e-8, 1e-10):
        sol = odeint(field, z0, {}, t0, t1, "dopri5", rtol=rtol, atol=rtol * 1e-2)
        errs.append(np.abs(backend.to_numpy(sol.z1) - exact).max())
        nfes.append(sol.nfe)
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert all(a < b for a, b in zip(nfes, nfes[1:])), nfes
    assert errs[-1] < 1e-9


def test_dopri5_rejects_steps_and_first_step_is_used():
    field = FunField(lambda t, z: -50.0 * (z - math.cos(t)))  # stiff-ish: rejections happen
    z0 = np.zeros((2, 1))
    sol = odeint(field, z0, {}, 0.0, 1.0, "dopri5", rtol=1e-6, atol=1e-9, first_step=0.5)
    assert sol.rejected > 0
    assert sol.nfe == 1 + 6 * (sol.steps + sol.rejected)  # no probe with first_step given


def test_odeint_grid_replays_an_adaptive_solve_bit_for_bit():
    _, field, z0, t0, t1, _ = problem("time")
    sol = odeint(field, z0, {}, t0, t1, "dopri5", rtol=1e-5, atol=1e-7)
    rep = odeint_grid(field, z0, {}, sol.ts, "dopri5")
    assert np.array_equal(rep.z1, sol.z1)
    assert all(np.array_equal(a, b) for a, b in zip(rep.zs, sol.zs))
    assert rep.nfe == 6 * sol.steps and rep.hs == sol.hs


def test_record_false_keeps_no_states():
    _, field, z0, t0, t1, _ = problem("linear")
    for name, kw in (("rk4", dict(steps=4)), ("dopri5", {})):
        sol = odeint(field, z0, {}, t0, t1, name, record=False, **kw)
        assert sol.zs is None and sol.ts[-1] == t1
        with pytest.raises(ValueError, match="record=True"):
            adjoint.discrete_adjoint(field, sol, {}, np.ones_like(z0))


# ----------------------------------------------------------------------------- bad input
def test_bad_intervals_tolerances_and_solver_names():
    _, field, z0, _, _, _ = problem("decay")
    for t0, t1 in ((1.0, 1.0), (1.0, 0.5)):
        with pytest.raises(ValueError, match="t1 > t0"):
            odeint(field, z0, {}, t0, t1, "rk4", steps=3)
    with pytest.raises(ValueError, match="t1 > t0"):
        adjoint.continuous_adjoint(field, z0, {}, z0, 1.0, 0.0, "rk4", steps=2)
    with pytest.raises(ValueError, match="finite"):
        odeint(field, z0, {}, 0.0, float("inf"), "rk4", steps=3)
    for bad in (0.0, -1e-6):
        with pytest.raises(ValueError, match="rtol must be > 0"):
            odeint(field, z0, {}, 0, 1, "dopri5", rtol=bad)
        with pytest.raises(ValueError, match="atol must be > 0"):
            odeint(field, z0, {}, 0, 1, "dopri5", atol=bad)
    with pytest.raises(ValueError, match="unknown solver 'rk5'.*euler, midpoint, rk4, dopri5"):
        odeint(field, z0, {}, 0, 1, "rk5", steps=2)
    with pytest.raises(ValueError, match="needs steps="):
        odeint(field, z0, {}, 0, 1, "rk4")
    with pytest.raises(TypeError, match="not both"):
        odeint(field, z0, {}, 0, 1, "rk4", steps=2, h=0.5)
    with pytest.raises(ValueError, match="adaptive"):
        odeint(field, z0, {}, 0, 1, "dopri5", steps=10)
    with pytest.raises(TypeError, match="steps must be an integer"):
        odeint(field, z0, {}, 0, 1, "rk4", steps=2.0)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        odeint(field, z0, {}, 0, 1, "rk4", steps=0)
    with pytest.raises(ValueError, match="strictly monotone"):
        odeint_grid(field, z0, {}, [0.0, 0.5, 0.5, 1.0], "rk4")


def test_h_that_does_not_divide_the_interval_says_by_how_much():
    _, field, z0, _, _, _ = problem("decay")
    with pytest.raises(ValueError, match=r"h=0.3 does not divide .* 3\.333.*off by 0\.1.*steps=3"):
        odeint(field, z0, {}, 0.0, 1.0, "euler", h=0.3)
    with pytest.raises(ValueError, match="h must be > 0"):
        odeint(field, z0, {}, 0.0, 1.0, "euler", h=-0.1)
    assert odeint(field, z0, {}, 0.0, 1.0, "euler", h=0.1).steps == 10  # 10 * 0.1 != 1 exactly


def test_bad_states_and_fields():
    _, field, z0, _, _, _ = problem("decay")
    with pytest.raises(ValueError, match=r"z0 must be a 2-d array \(B, n\)"):
        odeint(field, z0[0], {}, 0, 1, "rk4", steps=2)
    bad = z0.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="z0 contains 1 non-finite"):
        odeint(field, bad, {}, 0, 1, "rk4", steps=2)
    with pytest.raises(TypeError, match="integer array"):
        odeint(field, np.ones((2, 2), dtype=int), {}, 0, 1, "rk4", steps=2)
    with pytest.raises(ValueError, match=r"field.f returned shape \(3, 1\)"):
        odeint(FunField(lambda t, z: z[:, :1]), z0, {}, 0, 1, "rk4", steps=2)
    with pytest.raises(TypeError, match="methods f"):
        odeint(object(), z0, {}, 0, 1, "rk4", steps=2)
    with pytest.raises(ValueError, match="a1 must have the shape of the final state"):
        adjoint.continuous_adjoint(node.LinearField(np.eye(2)), z0, {}, z0[:, :1], 0, 1, "rk4",
                                   steps=2)
    sol = odeint(node.LinearField(np.eye(2)), z0, {}, 0, 1, "rk4", steps=2)
    with pytest.raises(ValueError, match="a1 must have the shape"):
        adjoint.discrete_adjoint(node.LinearField(np.eye(2)), sol, {}, np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"A has shape \(2, 2\), expected \(n, n\) = \(3, 3\)"):
        odeint(node.LinearField(np.eye(2)), np.ones((1, 3)), {}, 0, 1, "rk4", steps=2)


def test_blow_up_is_reported_with_its_time():
    """z' = z^2, z(0) = 1 blows up at t = 1: a fixed-step solve names the step where it did."""
    field = FunField(lambda t, z: z * z)
    z0 = np.ones((1, 1))
    z, k = 1.0, 0  # Euler by hand: the first step whose result overflows
    with np.errstate(over="ignore"):
        while np.isfinite(z):
            z, k = np.float64(z) + 0.05 * np.float64(z) ** 2, k + 1
    assert k == 33
    with pytest.raises(FloatingPointError, match=r"non-finite .* from t=1\.6 to t=1\.65 \(step 33 "
                                                 r"of 40\)"):
        odeint(field, z0, {}, 0.0, 2.0, "euler", steps=40)
    # dopri5 cannot pass the singularity: it runs out of steps just before t = 1
    with pytest.raises(RuntimeError, match=r"max_steps=200 .* reached t=0\.99"):
        odeint(field, z0, {}, 0.0, 2.0, "dopri5", max_steps=200)
    # a field that turns NaN at t > 0.5: the adaptive step shrinks onto t = 0.5 and says so
    nan_after = FunField(lambda t, z: -z if t <= 0.5 else z * np.nan)
    with pytest.raises(FloatingPointError, match=r"non-finite .* after t=0\.4999"):
        odeint(nan_after, z0, {}, 0.0, 1.0, "dopri5")


def test_tolerance_that_cannot_be_met_names_max_steps():
    field = FunField(lambda t, z: math.cos(40.0 * t) * 40.0 * z)
    with pytest.raises(RuntimeError, match=r"max_steps=5 .*reached t="):
        odeint(field, np.ones((1, 1)), {}, 0.0, 10.0, "dopri5", rtol=1e-10, atol=1e-12,
               max_steps=5)


# ----------------------------------------------------------------------------- cupy
@needs_gpu
def test_cupy_solves_and_adjoints_agree_with_numpy():
    rng = np.random.default_rng(1)
    h0, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    with backend.use_backend("numpy"):  # the reference on the host, whatever the suite's backend
        P = node.init_params(3, 4, seed=0, l=2)
        ref = {m: node.loss_and_grad(P, h0, y, 0, 1, "rk4", steps=6, method=m)
               for m in ("discrete", "continuous")}
    with backend.use_backend("cupy"):
        Pc = {k: backend.asarray(v) for k, v in P.items()}
        for m in ("discrete", "continuous"):
            F, g, info = node.loss_and_grad(Pc, backend.asarray(h0), backend.asarray(y), 0, 1,
                                            "rk4", steps=6, method=m)
            assert abs(float(F) - float(ref[m][0])) < 1e-12
            for k in P:
                np.testing.assert_allclose(backend.to_numpy(g[k]), ref[m][1][k], rtol=1e-10,
                                           atol=1e-13)
        sol = odeint(node.NODEField(), backend.asarray(h0), Pc, 0, 1, "dopri5")
        assert sol.steps > 0
