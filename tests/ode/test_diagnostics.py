"""Solvers that explain themselves (catalog row X-IMPL, docs/ode.md "When dopri5 stalls").

An adaptive solve that cannot finish raises SolverStalled (a RuntimeError) whose message gives t,
the last step size, the rejected-step count, BW's stiffness ratio of the field's Jacobian at the
state reached (or says it is unavailable) and whether an implicit solver would help; every
Solution, and loss_and_grad's info, records its step sizes and rejections.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from manualgrad import backend, testing
from manualgrad.ode import implicit, linear, node, solvers


class Square:
    """z' = z * z elementwise: blows up at t = 1 / z0 (a singularity, not stiffness)."""

    def f(self, t, z, theta):
        return z * z

    def vjp(self, t, z, theta, a):
        return 2 * z * a, {}

    def jac(self, t, z, theta):
        return np.eye(z.shape[1])[None] * (2 * z)[:, None, :]


class SquareNoJac(Square):
    jac = None


def test_stiff_field_stalls_with_its_stiffness_ratio_and_the_implicit_suggestion():
    """z' = diag(-1, -1e4) z, dopri5 with max_steps=100: the message names max_steps, the time
    reached, the last h, the rejected count, S = 1e4, the stability limit 3.3e-4 and sdirk2; the
    exception carries the same numbers, and the step size sits at that limit."""
    fld = node.LinearField(np.diag([-1.0, -1e4]))
    with pytest.raises(solvers.SolverStalled) as info:
        solvers.odeint(fld, np.ones((2, 2)), {}, 0.0, 1.0, "dopri5", max_steps=100)
    e = info.value
    assert isinstance(e, RuntimeError)
    msg = str(e)
    assert e.accepted + e.rejected == 100 and e.rejected > 0 and 0 < e.t < 1
    assert abs(e.stiffness - 1e4) < 1e-6 and abs(e.lam_max - 1e4) < 1e-6 and e.growth < 0
    assert 0.3 < e.h * e.lam_max < 4  # dopri5 held at its stability limit
    for part in ("max_steps=100", "reached t=%r" % e.t, "h=%.3g" % e.h,
                 "%d rejected" % e.rejected, "stiffness ratio of df/dz there is 1e+04",
                 "3.3/|lambda_max| = 0.00033", "sdirk2", "field is stiff"):
        assert part in msg, (part, msg)
    # and the advice works: sdirk2 with 20 steps solves it
    z = solvers.odeint(fld, np.ones((2, 2)), {}, 0.0, 1.0, "sdirk2", steps=20).z1
    assert np.abs(backend.to_numpy(z)[:, 0] - np.exp(-1.0)).max() < 1e-3


def test_blow_up_underflows_and_is_not_called_stiff():
    """z' = z^2 from z0 = (1, 0.5): dopri5's step underflows near t = 1; the message gives the
    ratio but says an eigenvalue has a positive real part (a blow-up), not stiffness."""
    with pytest.raises(solvers.SolverStalled, match="step size underflow") as info:
        solvers.odeint(Square(), np.array([[1.0, 0.5]]), {}, 0.0, 2.0, "dopri5")
    e = info.value
    assert abs(e.t - 1.0) < 1e-3 and e.growth > 0 and e.stiffness > 1
    assert "not stiff there" in str(e) and "blow-up" in str(e)
    assert "%d rejected" % e.rejected in str(e)


def test_field_without_jacobian_says_the_ratio_is_unavailable():
    with pytest.raises(solvers.SolverStalled, match="stiffness ratio is unavailable") as info:
        solvers.odeint(SquareNoJac(), np.array([[1.0, 0.5]]), {}, 0.0, 2.0, "dopri5")
    assert info.value.stiffness is None and "sdirk2" in str(info.value)


def test_continuous_adjoint_stall_is_diagnosed_too():
    """The backward dopri5 solve of the continuous adjoint explains its stall the same way."""
    from manualgrad.ode import adjoint
    fld = node.LinearField(np.diag([-1.0, -1e3]))
    z1 = np.ones((1, 2))
    with pytest.raises(solvers.SolverStalled, match="continuous_adjoint .*stiffness ratio"):
        adjoint.continuous_adjoint(fld, z1, {}, np.ones((1, 2)), 0.0, 1.0, "dopri5",
                                   max_steps=50)


@settings(max_examples=30)
@given(case=testing.field_states(), B=st.integers(1, 3))
def test_stiffness_is_bw_ratio_per_example(case, B):
    """implicit.stiffness = the largest over the batch of linear.stiffness_ratio(J_b) (BW-STIFF,
    absolute values), lam_max the largest |eigenvalue|, growth the largest real part."""
    fld, t, z, theta = case
    ratio, lam_max, growth = implicit.stiffness(fld, t, z, theta)
    J = backend.to_numpy(fld.jac(t, z, theta))
    want = max(linear.stiffness_ratio(Jb) for Jb in J)
    lam = np.linalg.eigvals(J)
    assert (ratio == want == np.inf) or abs(ratio - want) <= 1e-9 * max(1.0, want)
    assert abs(lam_max - np.abs(lam).max()) <= 1e-12 * max(1.0, lam_max)
    assert abs(growth - lam.real.max()) <= 1e-12 * max(1.0, lam_max)


def test_solution_records_step_sizes_and_rejections():
    """Solution.rejections holds (t, h tried, error norm > 1) of every rejected attempt; the
    next try from the same t is smaller; diagnostics() and loss_and_grad's info agree."""
    fld = node.LinearField(np.diag([-1.0, -300.0]))
    sol = solvers.odeint(fld, np.ones((1, 2)), {}, 0.0, 1.0, "dopri5")
    assert sol.rejected == len(sol.rejections) > 0
    ts = set(sol.ts)
    for t, h, err in sol.rejections:
        assert err > 1 and h > 0 and t in ts
    d = sol.diagnostics()
    assert d["h_min"] == min(sol.hs) and d["h_max"] == max(sol.hs) and d["steps"] == sol.steps
    assert d["rejected"] == sol.rejected and d["newton_iters"] == 0
    _, _, info = node.loss_and_grad({}, np.ones((1, 2)), np.zeros((1, 2)), solver="dopri5",
                                    field=fld)
    assert info["solve"]["rejected"] == sol.rejected and info["solve"]["h_min"] == d["h_min"]
    s2 = solvers.odeint(fld, np.ones((1, 2)), {}, 0.0, 1.0, "sdirk2", steps=5).diagnostics()
    assert s2["rejected"] == 0 and s2["newton_iters"] == 2 * 5  # linear: one Newton step each
