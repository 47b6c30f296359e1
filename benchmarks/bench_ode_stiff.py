"""Steps dopri5 and the implicit solvers need on stiff problems (catalog row X-IMPL, docs/ode.md).

Counts, not times: for each problem, dopri5 (``--rtol``, atol = rtol * 1e-3) and the implicit
solvers ``beuler`` and ``sdirk2`` with fixed steps, the accepted and rejected steps, the f
evaluations and the max error at t1 against a reference (``manualgrad.ode.implicit.
stiff_comparison``). The problems:

* ``scalar``: the linear test equation z' = -1e4 z on [0, 1] from z0 = 1 (exact z(1) = e^-1e4 = 0
  in float64);
* ``linear``: z' = A z with A = Q diag(-0.1, -1, -1e3, -1e4) Q^T (Q a random rotation, seed 0),
  B = 2, on [0, 10] (reference: the matrix exponential);
* ``node``: a BW-NODE with a stiff tanh field, f(h) = -Q D tanh(Q^T h) (theta1 = Q^T,
  theta2 = -Q D, D = diag(1, 10, 1e3, 1e4)): Jacobian -Q D diag(sech^2) Q^T, eigenvalues
  spread over 1..1e4 near h = 0; on [0, 5] (reference: sdirk2 with 20000 steps, error ~1e-9).

    python benchmarks/bench_ode_stiff.py [--rtol 1e-3] [--problems scalar linear node]
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
from scipy.linalg import expm  # noqa: E402

from manualgrad.ode import implicit, node, solvers  # noqa: E402


def _rotation(n, seed=0):
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return Q


def problems():
    """name -> (field, z0, theta, t1, reference z(t1), implicit step counts)."""
    rng = np.random.default_rng(1)
    out = {}
    out["scalar"] = (node.LinearField(np.array([[-1e4]])), np.ones((1, 1)), {}, 1.0,
                     np.zeros((1, 1)), (10, 20, 40))
    Q = _rotation(4)
    A = Q @ np.diag([-0.1, -1.0, -1e3, -1e4]) @ Q.T
    z0 = rng.standard_normal((2, 4))
    out["linear"] = (node.LinearField(A), z0, {}, 10.0, z0 @ expm(10.0 * A).T, (20, 40, 80, 160))
    D = np.array([1.0, 10.0, 1e3, 1e4])
    theta = {"theta1": Q.T, "b1": np.zeros(4), "theta2": -Q * D[None, :], "b2": np.zeros(4)}
    fld = node.NODEField("tanh")
    h0 = rng.standard_normal((2, 4))
    ref = solvers.odeint(fld, h0, theta, 0.0, 5.0, "sdirk2", steps=20000, record=False).z1
    out["node"] = (fld, h0, theta, 5.0, ref, (20, 40, 80, 160))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rtol", type=float, default=1e-3)
    p.add_argument("--problems", nargs="+", default=["scalar", "linear", "node"],
                   choices=["scalar", "linear", "node"])
    args = p.parse_args(argv)
    probs = problems()
    for name in args.problems:
        fld, z0, theta, t1, ref, steps = probs[name]
        J = fld.jac(0.0, np.asarray(z0, dtype=float), fld.check(theta, np.asarray(z0)))
        S, lam, _ = implicit.stiffness(fld, 0.0, np.asarray(z0, dtype=float),
                                       fld.check(theta, np.asarray(z0)))
        print("\n## %s on [0, %g]: stiffness ratio at z0 %.3g, max |lambda| %.3g (J %s)"
              % (name, t1, S, lam, tuple(J.shape)))
        rows = implicit.stiff_comparison(fld, z0, theta, t1, ref, rtol=args.rtol,
                                         atol=args.rtol * 1e-3, implicit_steps=steps)
        print(implicit.format_comparison(rows))


if __name__ == "__main__":
    main()
