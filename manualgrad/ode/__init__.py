"""Neural ODEs with hand-written adjoints (BW "Neural ODEs", Theorem 1, Lemma 1; BW HBNODE).

Modules: :mod:`~manualgrad.ode.solvers` (explicit Runge-Kutta solvers in a registry:
euler, midpoint, rk4, dopri5), :mod:`~manualgrad.ode.adjoint` (the discrete adjoint of a solve
and the continuous adjoint of BW Theorem 1, generic over the vector-field protocol),
:mod:`~manualgrad.ode.gradient` (the one gradient entry point of the models: solve, readout,
head and the registry of gradient methods, ``METHODS``), :mod:`~manualgrad.ode.node` (the BW
neural ODE field, its loss and gradients, Lemma 1), :mod:`~manualgrad.ode.hbnode` (the
heavy-ball neural ODE, BW Theorems 2-4) and :mod:`~manualgrad.ode.linear` (host-side linear
theory of the heavy-ball ODE; import it explicitly: ``from manualgrad.ode import linear``, it
needs scipy); :mod:`~manualgrad.ode.hvp` (Hessian-vector products through the discrete solve,
X-NODE-HVP: ``node.hvp``, ``hbnode.hvp``; the fields' ``tangent`` and ``vjp_jvp``),
:mod:`~manualgrad.ode.implicit` (backward Euler and SDIRK2 for stiff fields, X-IMPL; in the
solver registry :data:`IMPLICIT`, a stalled adaptive solve raises :class:`SolverStalled`) and
:mod:`~manualgrad.ode.checkpoint` (the checkpointed discrete adjoint, X-CKPT).

Vector-field protocol: ``field.f(t, z, theta) -> (B, n)`` and
``field.vjp(t, z, theta, a) -> (a @ df/dz, {name: sum_b a . df/dtheta[name]})``; optional
``field.jvp(t, z, theta, v)``, ``field.check(theta, z0) -> theta``, and for allocation-free
solves ``field.f_into(t, z, theta, out, ws)`` and ``field.vjp_into(t, z, theta, a, out_z,
out_theta, ws)``. ``loss_and_grad`` takes ``workspace=`` (docs/workspace.md). A state, adjoint
or loss that is no longer finite raises FloatingPointError naming the step. See docs/ode.md.
"""
from . import adjoint, checkpoint, gradient, hbnode, hvp, implicit, node, solvers
from .adjoint import continuous_adjoint, discrete_adjoint
from .node import LinearField, NODEField
from .solvers import IMPLICIT, SOLVERS, SolverStalled, odeint, odeint_grid, solver_names

__all__ = ["adjoint", "checkpoint", "gradient", "hbnode", "hvp", "implicit", "node", "solvers",
           "continuous_adjoint", "discrete_adjoint", "LinearField", "NODEField", "IMPLICIT",
           "SOLVERS", "SolverStalled", "odeint", "odeint_grid", "solver_names"]
