"""Solves, sweeps and losses that overflow raise FloatingPointError naming the step (docs/ode.md).

A linear field f(z) = lambda z with a large positive lambda and a big fixed step: every explicit
Runge-Kutta step multiplies the state by the stability polynomial R(h lambda) = 1 + x b^T
(I - x A)^{-1} 1 (x = h lambda), so the step at which the state overflows is known in advance.
"""
import math

import numpy as np
import pytest

from manualgrad import backend
from manualgrad.ode import adjoint, node, solvers

FIXED = [name for name, tab in solvers.SOLVERS.items() if not tab.adaptive]


def _stability(tab, x):
    """R(x) = 1 + x b^T (I - x A)^{-1} 1 of the tableau (the factor of one step on z' = z/h x)."""
    s = tab.stages
    A = np.zeros((s, s))
    for i, row in enumerate(tab.A):
        A[i, :len(row)] = row
    return 1.0 + x * float(np.asarray(tab.b) @ np.linalg.solve(np.eye(s) - x * A, np.ones(s)))


def _first_overflow(R, steps):
    """The first step k (1-based) after which R^k is not finite in float64 (None: never)."""
    log_max = math.log(np.finfo(np.float64).max)
    k = math.floor(log_max / math.log(abs(R))) + 1
    return k if k <= steps else None


@pytest.mark.parametrize("name", FIXED)
def test_fixed_step_overflow_raises_naming_the_step(name):
    """lambda = 1000, h = 1: the state overflows within 200 steps; the error names the step (k,
    where R^k overflows, or k - 1, where a stage K_i ~ x^i z does) and suggests a smaller step,
    for odeint and for both gradient methods."""
    tab = solvers.SOLVERS[name]
    lam, steps = 1000.0, 200
    k = _first_overflow(_stability(tab, lam * 1.0), steps)
    assert k is not None
    fld = node.LinearField(lam * np.eye(2))
    h0 = backend.asarray(np.ones((3, 2)))
    pattern = r"non-finite .* \(step (%d|%d) of %d\) of %s .* smaller step" % (k - 1, k, steps,
                                                                               name)
    with pytest.raises(FloatingPointError, match=pattern):
        solvers.odeint(fld, h0, {}, 0.0, float(steps), name, steps=steps)
    y = backend.asarray(np.zeros((3, 2)))
    for method in ("discrete", "continuous"):
        with pytest.raises(FloatingPointError, match=pattern):
            node.loss_and_grad({}, h0, y, t1=float(steps), solver=name, steps=steps, field=fld,
                               method=method)


@pytest.mark.parametrize("method", ["discrete", "continuous"])
def test_finite_state_whose_loss_overflows_raises(method):
    """Euler with x = h lambda = 500 for 60 steps: z(T) = 501^60 ~ 1e162 is finite, F = |z|^2/2
    is not. Before: F = inf and inf/NaN gradients with NumPy warnings only."""
    fld = node.LinearField(1e4 * np.eye(2))
    h0 = backend.asarray(np.ones((3, 2)))
    y = backend.asarray(np.zeros((3, 2)))
    big = r"largest \|z\(T\)\| = \d\.\d+e\+16[12]"
    with pytest.raises(FloatingPointError, match=r"loss F = inf.*%s.* smaller step" % big):
        node.loss_and_grad({}, h0, y, t1=3.0, solver="euler", steps=60, field=fld,
                           method=method)


def test_discrete_adjoint_overflow_raises_naming_the_backward_step():
    """Euler with h lambda = 1 doubles the adjoint at every backward step: from a(T) = 1e300
    it overflows after 28 steps back, i.e. in forward step 40 - 28 + 1 = 13 of 40."""
    fld = node.LinearField(10.0 * np.eye(2))
    z0 = backend.asarray(np.ones((2, 2)))
    sol = solvers.odeint(fld, z0, {}, 0.0, 4.0, "euler", steps=40)
    a1 = backend.asarray(np.full((2, 2), 1e300))
    j = math.floor(math.log2(np.finfo(np.float64).max / 1e300)) + 1  # 28
    with pytest.raises(FloatingPointError,
                       match=r"adjoint dL/dz became non-finite .* \(step %d of 40\) of euler"
                       % (40 - j + 1)):
        adjoint.discrete_adjoint(fld, sol, {}, a1)


def test_dopri5_whose_first_derivative_overflows_raises():
    """dopri5 from a state whose dy/dt overflows in the error norm: FloatingPointError (before: a
    ZeroDivisionError in the starting-step heuristic)."""
    fld = node.LinearField(100.0 * np.eye(2))
    z1 = backend.asarray(np.ones((2, 2)))
    a1 = backend.asarray(np.full((2, 2), 1e307))  # da/dt = -a A = -1e309: inf
    with pytest.raises(FloatingPointError, match="continuous_adjoint .* not finite"):
        adjoint.continuous_adjoint(fld, z1, {}, a1, 0.0, 1.0, "dopri5")


def test_finite_solves_are_unchanged_by_the_checks():
    """A well-behaved solve still runs (the checks only read the state)."""
    fld = node.LinearField(-np.eye(2))
    z0 = backend.asarray(np.ones((1, 2)))
    for name in FIXED:
        sol = solvers.odeint(fld, z0, {}, 0.0, 1.0, name, steps=50)
        np.testing.assert_allclose(backend.to_numpy(sol.z1), math.exp(-1.0) * np.ones((1, 2)),
                                   rtol=2e-2)
