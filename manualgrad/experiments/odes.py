"""Neural ODE vs heavy-ball neural ODE (BW) on nested spheres: accuracy, NFE, adjoint norms.

Task (:func:`nested_spheres`): points x in R^d, uniform in the ball ||x|| < r1 (label 0) or in
the shell r2 < ||x|| < r3 (label 1), half of each; ``n_train`` points from ``data_seed``, ``n_test``
from ``data_seed + 1``. The input is the initial state, h(0) = x, and a linear readout on h(T)
gives one logit (sigmoid + BCE). A plain neural ODE is a homeomorphism of R^d, so it cannot
map the ball and the shell around it to linearly separable sets; it can only squeeze the
shell's points past each other, which is the BW slides' "NFEs can be excessively high"
scenario. The heavy-ball ODE flows in the phase space (h, m) of dimension 2d (m(0) = 0), where
h(T) need not be a homeomorphism of h(0).

Models (same hidden size, hence the same parameter count up to gamma; same initial f and
readout from ``seed``, same minibatch order):

- ``node``: BW-NODE dh/dt = theta2 tanh(theta1 h + b1) + b2 (:mod:`manualgrad.ode.node`);
- ``hbnode``: BW HBNODE eq. (13), dh/dt = m, dm/dt = -gamma m + f(h) with the same f
  (:mod:`manualgrad.ode.hbnode`); gamma learned as sigmoid(gamma_raw) from ``gamma`` (the
  HBNODE authors' choice) or fixed (``learn_gamma=False``).

Both are trained with Adam (:class:`manualgrad.optim.Adam`), the forward pass by the adaptive
dopri5 solver and the gradient by the continuous adjoint of BW Theorem 1
(``adjoint="continuous"``, dopri5 backward with the same rtol/atol; ``"discrete"`` trains on the
exact gradient of the computed solution instead).

Measured at initialisation (epoch 0) and after every epoch, each a per-epoch row of the run:

- ``train_F`` (mean BCE over the epoch's minibatches), ``test_F``, ``test_acc``;
- ``nfe_forward``, ``nfe_backward``: evaluations of f per training iteration in the forward
  solve and in the backward (adjoint) solve, the mean over the epoch's iterations (epoch 0: the
  probe below at initialisation); every iteration's counts are kept in the run's
  ``nfe_forward_iter`` / ``nfe_backward_iter``;
- ``probe_nfe_forward``, ``probe_nfe_backward``: the same for one fixed probe batch (the first
  ``batch_size`` training points), and ``grad_rel_diff``: the relative difference, over all
  parameters, between the continuous-adjoint gradient and the discrete adjoint's (the exact
  gradient of the same dopri5 forward solve) on that batch (``check_discrete``);
- adjoint norms (every ``norm_every`` epochs and at the last one) on the first
  ``norm_examples`` test points: the forward dopri5 solve, then the continuous adjoint with
  ``record=True`` (rtol ``norm_rtol``, atol ``norm_atol``) from a(T) = dF_b/dh(T) scaled to unit
  norm per example (a is linear in a(T), so ||a_b(t)|| is the ratio ||a_b(t)|| / ||a_b(T)||).
  For the HBNODE a = [a_h, a_m] = [dL/dh, dL/dm] (a_m(T) = 0), and a_h alone is also kept.
  ``adj_ratio`` is the median over examples of ||a(0)|| / ||a(T)||, ``adj_h_ratio`` the same for
  a_h (= adj_ratio for the NODE), ``adj_ratio_discrete`` the same from the discrete adjoint of the
  forward solve (a check that needs no backward reconstruction of z), ``recon_err`` the largest
  error of the backward-reconstructed z(0). The curves (median and quartiles over examples of
  ||a(t)|| / ||a(T)||) on the fixed grid t_k = k T / (norm_points - 1) are in the run's
  ``adjoint_norms`` (values between the adaptive solver's accepted times are interpolated
  linearly in log ||a||);
- stiffness: the eigenvalues of the Jacobian of the vector field (the NODE's df/dh, n x n; the
  HBNODE's [[0, I], [df/dh, -gamma I]], 2n x 2n, BW's matrix B) at the forward solve's accepted
  states of the same test points: ``jac_rho_mean``/``jac_rho_max`` (spectral radius, mean / max
  over states), ``jac_re_max`` (largest real part: the fastest local expansion) and
  ``jac_stiffness`` (median over states of max|lambda| / min|lambda|, BW's stiffness ratio).

Files in ``out``: ``results.json`` (:mod:`manualgrad.experiments.record`: runs ``node`` and
``hbnode``), ``history.csv``, ``adjoint_norms.png``, ``nfe.png`` and ``training.png``.
``--quick`` applies :data:`QUICK` (about 25 s), the test suite :data:`TINY`; the defaults took
73-152 s on 2 shared CPU cores. docs/ode_experiment.md has the results over seeds and what they
say about the lecture's claims.
"""
from __future__ import annotations

import math
import os
import time

from .. import backend, losses, train
from .._validate import integer as _integer, number as _number
from ..ode import adjoint as _adjoint
from ..ode import gradient as _gradient
from ..ode import hbnode, node, solvers
from ..optim.adam import Adam
from . import record as _record
from .options import add_options, add_run_arguments, boolean, check_integers, complete, \
    run_state, selection, start_run
from .plots import save_figure
from .threads import blas_threads

__all__ = ["DEFAULTS", "QUICK", "TINY", "MODELS", "add_arguments", "check_settings",
           "nested_spheres", "make_data", "Model", "make_model", "adjoint_profile",
           "jacobian_spectrum", "train_model", "plot_adjoint_norms", "plot_nfe", "plot_training",
           "plot_seeds", "run"]

np = backend.np

MODELS = ("node", "hbnode")
"""``--model`` accepts these and ``both``."""

COLORS = {"node": "tab:blue", "hbnode": "tab:red"}
LABELS = {"node": "NODE", "hbnode": "HBNODE"}

HEAD = dict(output="sigmoid", loss="bce")
"""One logit on h(T), sigmoid + binary cross-entropy."""

DEFAULTS = dict(model="both", d=2, r1=0.5, r2=1.0, r3=1.5, n_train=512, n_test=512, T=20.0,
                hidden=32, epochs=60, batch_size=64, lr=0.01, rtol=1e-5, atol=1e-6,
                max_steps=20000, gamma=0.5, learn_gamma=True, adjoint="continuous",
                solver="dopri5", steps=None, checkpoints=None,
                check_discrete=True, norm_examples=128, norm_points=51, norm_every=1,
                norm_rtol=1e-7, norm_atol=1e-9, seed=0, data_seed=1234, out="results/ode",
                progress=True, blas_threads=1)
"""Nested spheres in d = 2 (ball r < 0.5 against shell 1 < r < 1.5), horizon T = 20, H = 32
tanh units (165 parameters for the NODE, 166 for the HBNODE with gamma learned), Adam lr 0.01,
batch 64, 60 epochs (480 iterations); dopri5 with rtol 1e-5, atol 1e-6 both ways.

``solver`` (any name of :func:`manualgrad.ode.solvers.solver_names`: the explicit tableaus,
dopri5, the implicit ``beuler`` and ``sdirk2`` of X-IMPL) is the solver of training and of the
test evaluation; a fixed-step solver needs ``steps``. ``adjoint`` is a name of
:data:`manualgrad.ode.gradient.METHODS`; ``"checkpointed"`` (X-CKPT) needs ``checkpoints``.
The diagnostics (adjoint norms, Jacobian spectra, the probe's continuous vs discrete
comparison) always use dopri5 at the ``norm_*`` / ``rtol`` tolerances, so they mean the same
whatever the training solver."""

QUICK = dict(epochs=25, norm_examples=64, norm_every=5)
"""``--quick``: 25 epochs (200 iterations per model), adjoint norms on 64 test points every 5
epochs (about 40 s on 2 shared cores)."""

TINY = dict(n_train=32, n_test=16, T=1.0, hidden=4, epochs=2, batch_size=16, rtol=1e-3,
            atol=1e-4, norm_examples=8, norm_points=5, norm_rtol=1e-5, norm_atol=1e-7)
"""The test suite's setting: a second or two."""


# ------------------------------------------------------------------------------ settings
def models_of(model):
    """``"both"`` -> (node, hbnode); a name -> (name,)."""
    return selection(model, MODELS, {"both": MODELS}, "model")


def check_settings(**settings):
    """Validate and complete the settings (unknown keys: TypeError); a new dict with every key of
    :data:`DEFAULTS`. Raises ValueError/TypeError naming the bad setting."""
    s = complete(settings, DEFAULTS, "ode")
    models_of(s["model"])
    check_integers(s, (("d", 1), ("n_train", 1), ("n_test", 1), ("hidden", 1), ("epochs", 0),
                       ("batch_size", 1), ("max_steps", 1), ("norm_examples", 1),
                       ("norm_points", 2), ("norm_every", 1), ("seed", 0), ("data_seed", 0)))
    for k in ("r1", "r2", "r3", "T", "lr", "rtol", "atol", "norm_rtol", "norm_atol"):
        s[k] = _number(s[k], k, positive=True)
    if not s["r1"] < s["r2"] < s["r3"]:
        raise ValueError("the radii must satisfy 0 < r1 < r2 < r3 (ball r < r1, shell r2 < r < "
                         "r3), got r1=%g, r2=%g, r3=%g" % (s["r1"], s["r2"], s["r3"]))
    for k in ("learn_gamma", "check_discrete", "progress"):
        if not isinstance(s[k], bool):
            raise TypeError("%s must be True or False, got %r" % (k, s[k]))
    s["gamma"] = _number(s["gamma"], "gamma", minimum=0.0)
    if s["learn_gamma"] and not 0.0 < s["gamma"] < 1.0:
        raise ValueError("gamma must lie in (0, 1) when it is learned (learn_gamma=True: gamma "
                         "= sigmoid(gamma_raw) starts at gamma), got %r" % s["gamma"])
    if s["adjoint"] not in _gradient.METHODS:
        raise ValueError("adjoint must be one of %s (continuous: BW Theorem 1), got %r"
                         % (", ".join(_gradient.METHODS), s["adjoint"]))
    if s["solver"] not in solvers.solver_names():
        raise ValueError("solver must be one of %s, got %r"
                         % (", ".join(solvers.solver_names()), s["solver"]))
    if solvers.get_solver(s["solver"]).adaptive:
        if s["steps"] is not None:
            raise ValueError("steps=%r is for fixed-step solvers; solver %r is adaptive (it "
                             "uses rtol, atol, max_steps)" % (s["steps"], s["solver"]))
    elif s["steps"] is None:
        raise ValueError("solver %r takes fixed steps: give steps (e.g. --steps 40)"
                         % (s["solver"],))
    else:
        s["steps"] = _integer(s["steps"], "steps", 1)
    s["checkpoints"] = _gradient.check_checkpoints(s["checkpoints"], s["adjoint"])
    if s["blas_threads"] is not None:
        s["blas_threads"] = _integer(s["blas_threads"], "blas_threads", 1)
    return s


def add_arguments(p):
    d = DEFAULTS
    p.add_argument("--model", default=d["model"], choices=MODELS + ("both",),
                   help="which model(s); 'both' trains each from the same f and readout on the "
                        "same minibatches (default %(default)s)")
    p.add_argument("--adjoint", default=d["adjoint"], choices=tuple(_gradient.METHODS),
                   help="training gradient: BW Theorem 1 (continuous), the discrete adjoint, "
                        "or the discrete adjoint from --checkpoints stored states "
                        "(checkpointed) (default %(default)s)")
    p.add_argument("--solver", default=d["solver"], choices=solvers.solver_names(),
                   help="solver of training and test evaluation; beuler and sdirk2 are "
                        "implicit, for stiff fields (default %(default)s)")
    p.add_argument("--steps", type=int, default=d["steps"],
                   help="steps of a fixed-step solver (required with one)")
    p.add_argument("--checkpoints", type=int, default=d["checkpoints"],
                   help="stored states of --adjoint checkpointed")
    add_options(p, d, ("d", int, "dimension of the points"),
                ("r1", float, "radius of the inner ball, label 0"),
                ("r2", float, "inner radius of the shell, label 1"),
                ("r3", float, "outer radius of the shell"), ("n_train", int, ""),
                ("n_test", int, ""), ("T", float, "integration horizon: h(T) is read out"),
                ("hidden", int, "hidden units H of f"), ("epochs", int, ""),
                ("batch_size", int, ""), ("lr", float, "Adam's learning rate"),
                ("rtol", float, "dopri5 relative tolerance, forward and backward"),
                ("atol", float, "dopri5 absolute tolerance"),
                ("max_steps", int, "dopri5 step attempts per solve at most"),
                ("gamma", float, "HBNODE damping: its initial value when learned, else fixed"),
                ("learn_gamma", boolean, "learn gamma = sigmoid(gamma_raw) (true) or keep it "
                                         "fixed (false)"),
                ("check_discrete", boolean, "compare with the discrete adjoint on a probe batch "
                                            "every epoch"),
                ("norm_examples", int, "test points for the adjoint norms and Jacobians"),
                ("norm_points", int, "points of the fixed time grid of the adjoint curves"),
                ("norm_every", int, "measure the adjoint norms every this many epochs"),
                ("norm_rtol", float, ""), ("norm_atol", float, ""))
    add_run_arguments(p, d, QUICK, seed="init and shuffling seed, shared by the models")


# ------------------------------------------------------------------------------ data
def nested_spheres(n, d=2, r1=0.5, r2=1.0, r3=1.5, seed=0):
    """``(x, y)``: n points in R^d, x (n, d), y (n, 1) floats: label 0 uniform in the ball
    ||x|| < r1, label 1 uniform in the shell r2 < ||x|| < r3 (floor(n/2) zeros, the rest ones),
    in a random order. Drawn on the host from ``default_rng(seed)``; returned on the backend."""
    n = _integer(n, "n", 1)
    d = _integer(d, "d", 1)
    r1, r2, r3 = (_number(r, name, positive=True) for r, name in ((r1, "r1"), (r2, "r2"),
                                                                    (r3, "r3")))
    if not r1 < r2 < r3:
        raise ValueError("need 0 < r1 < r2 < r3, got r1=%g, r2=%g, r3=%g" % (r1, r2, r3))
    rng = backend.host_rng(seed)
    g = rng.standard_normal((n, d))
    g /= np.linalg.norm(g, axis=1, keepdims=True)      # uniform directions
    y = np.zeros(n)
    y[n // 2:] = 1.0
    u = rng.random(n)                                  # radii with density ~ r^(d-1)
    r = np.where(y == 0, r1 * u ** (1.0 / d), (r2 ** d + u * (r3 ** d - r2 ** d)) ** (1.0 / d))
    order = rng.permutation(n)
    return backend.asarray((g * r[:, None])[order]), backend.asarray(y[order][:, None])


def make_data(settings):
    """``((x_train, y_train), (x_test, y_test))``: train from data_seed, test from data_seed + 1."""
    s = settings
    kw = dict(d=s["d"], r1=s["r1"], r2=s["r2"], r3=s["r3"])
    return (nested_spheres(s["n_train"], seed=s["data_seed"], **kw),
            nested_spheres(s["n_test"], seed=s["data_seed"] + 1, **kw))


# ------------------------------------------------------------------------------ the models
class Model:
    """One of the two models, with what the experiment needs from it.

    ``name``; ``field`` (the vector field object); ``params0`` (initial parameters: the field's,
    W_out (1, d), b_out (1,)); ``z0(x)`` the initial state (x, or [x, 0] for the HBNODE);
    ``h(z)`` the h part of a state; ``loss_and_grad(P, x, y, method)``; ``forward(P, x,
    record)``; ``theta(P)`` the field's parameters (no readout).
    """

    def __init__(self, name, settings):
        s = settings
        self.name, self.s, self.d = name, s, s["d"]
        self.solve = dict(t0=0.0, t1=s["T"], solver=s["solver"], steps=s["steps"],
                          rtol=s["rtol"], atol=s["atol"], max_steps=s["max_steps"])
        self.probe_solve = dict(self.solve, solver="dopri5", steps=None)
        if name == "node":
            self.field = node.NODEField("tanh", time_input=False)
            self.params0 = node.init_params(s["d"], s["hidden"], seed=s["seed"], l=1)
            self.extra = {}
        elif name == "hbnode":
            self.field = hbnode.HBNODEField("tanh", learn_gamma=s["learn_gamma"],
                                            gamma=s["gamma"])
            self.params0 = hbnode.init_params(s["d"], s["hidden"], seed=s["seed"], l=1,
                                              learn_gamma=s["learn_gamma"],
                                              gamma0=s["gamma"] if s["learn_gamma"] else 0.5)
            self.extra = dict(gamma=s["gamma"], learn_gamma=s["learn_gamma"])
        else:
            raise ValueError("unknown model %r: valid are %s" % (name, ", ".join(MODELS)))

    @property
    def n_params(self):
        return int(sum(v.size for v in self.params0.values()))

    def z0(self, x):
        if self.name == "node":
            return x
        return backend.xp().concatenate([x, backend.xp().zeros_like(x)], axis=1)

    def h(self, z):
        return z[:, :self.d]

    def theta(self, P):
        return {k: v for k, v in P.items() if k not in node.READOUT_NAMES}

    def gamma(self, P):
        """The HBNODE's gamma as a float (None for the NODE)."""
        if self.name != "hbnode":
            return None
        g = self.field.gamma_of(P)
        return float(backend.to_numpy(g).reshape(-1)[0]) if backend.is_array(g) else float(g)

    def loss_and_grad(self, P, x, y, method, probe=False):
        """F, grads, info by ``method``: the training solver, or dopri5 when ``probe``."""
        kw = dict(self.probe_solve if probe else self.solve, method=method, **HEAD)
        if method == "checkpointed":
            kw["checkpoints"] = self.s["checkpoints"]
        if self.name == "node":
            return node.loss_and_grad(P, x, y, field=None, **kw)
        return hbnode.loss_and_grad(P, x, None, y, **kw, **self.extra)

    def forward(self, P, x, record=False, rtol=None, atol=None):
        kw = dict(self.solve, record=record)
        if rtol is not None:
            kw.update(rtol=rtol, atol=atol)
        if self.name == "node":
            return node.forward(P, x, **kw)
        return hbnode.forward(P, x, None, **kw, **self.extra)


def make_model(name, settings):
    """The :class:`Model` called ``name`` ("node" or "hbnode") for the settings."""
    return Model(name, check_settings(**settings))


def _head(P, hT, y):
    """(F_b per example (B,), yhat (B, 1), dF_b/dh(T) per example (B, d))."""
    o = node.readout(P, hT)
    head, Y = losses.head_and_targets(HEAD["output"], HEAD["loss"], o, y)
    yo = head.output.f(o)
    dF_do = -head.delta_out(o, yo, Y)                 # per example: dF_b/do (B, 1)
    return head.value(o, yo, Y), yo, dF_do @ P["W_out"]


def _log_interp(t_grid, ts, vals):
    """vals (K, B) at the times ts (K, any order) -> (len(t_grid), B), linear in log."""
    ts = np.asarray(ts, dtype=float)
    order = np.argsort(ts)
    logs = np.log(np.maximum(np.asarray(vals, dtype=float)[order], 1e-300))
    return np.exp(np.stack([np.interp(t_grid, ts[order], logs[:, b])
                            for b in range(logs.shape[1])], axis=1))


def _quantiles(r):
    """median, 25 % and 75 % over examples (axis 1) of r (K, B), as lists."""
    q = np.quantile(r, [0.5, 0.25, 0.75], axis=1)
    return [v.tolist() for v in q]


def adjoint_profile(model, P, x, y, t_grid, rtol, atol, max_steps):
    """The adjoint norms of ``model`` at parameters P on the points x (BW Theorem 1, Lemma 1).

    Forward dopri5 solve (rtol, atol) from z0(x); a(T) = dF_b/dz(T) per example, scaled to unit
    norm; the continuous adjoint backward with ``record=True``; per-example ||a(t)|| (and
    ||a_h(t)||) interpolated in log onto ``t_grid`` (host array from 0 to T). Also the discrete
    adjoint of the forward solve (exact for the computed solution, no backward reconstruction),
    which gives a second a(0). Returns a dict: ``ratio`` (median, q25, q75 lists over t_grid of
    ||a(t)|| / ||a(T)||), ``h_ratio`` (the same for a_h), ``adj_ratio``, ``adj_h_ratio``,
    ``adj_ratio_discrete`` (medians at t = 0), ``recon_err`` (max |z0 reconstructed - z0|),
    ``nfe_backward``, and ``sol`` (the forward :class:`~manualgrad.ode.solvers.Solution`).
    """
    theta = model.theta(P)
    z0 = model.z0(x)
    sol = solvers.odeint(model.field, z0, theta, 0.0, model.s["T"], "dopri5", rtol=rtol,
                         atol=atol, max_steps=max_steps, record=True)
    _, _, aTh = _head(P, model.h(sol.z1), y)
    xp = backend.xp()
    aT = aTh if model.name == "node" else xp.concatenate([aTh, xp.zeros_like(aTh)], axis=1)
    nrm = xp.sqrt((aT * aT).sum(axis=1, keepdims=True))
    aT = aT / xp.maximum(nrm, 1e-300)                 # unit rows: ||a(t)|| is the ratio
    res = _adjoint.continuous_adjoint(model.field, sol.z1, theta, aT, 0.0, model.s["T"],
                                      "dopri5", rtol=rtol, atol=atol, max_steps=max_steps,
                                      record=True)
    A = np.stack([backend.to_numpy(a) for a in res.as_])          # (K, B, N)
    full = np.linalg.norm(A, axis=2)
    hpart = np.linalg.norm(A[:, :, :model.d], axis=2)
    r_full = _log_interp(t_grid, res.ts, full)
    r_h = _log_interp(t_grid, res.ts, hpart)
    a0_disc, _ = _adjoint.discrete_adjoint(model.field, sol, theta, aT)
    disc = np.linalg.norm(backend.to_numpy(a0_disc), axis=1)
    a0 = backend.to_numpy(res.a0)
    return {"ratio": _quantiles(r_full), "h_ratio": _quantiles(r_h),
            "adj_ratio": float(np.median(np.linalg.norm(a0, axis=1))),
            "adj_h_ratio": float(np.median(np.linalg.norm(a0[:, :model.d], axis=1))),
            "adj_ratio_discrete": float(np.median(disc)),
            "recon_err": float(np.abs(backend.to_numpy(res.z0) - backend.to_numpy(z0)).max()),
            "nfe_backward": int(res.nfe), "sol": sol}


def jacobian_spectrum(model, P, sol):
    """Eigenvalues of the field's Jacobian at every accepted state of ``sol`` (host, complex).

    The Jacobian of the whole vector field: df/dh (n x n) for the NODE, [[0, I], [df/dh,
    -gamma I]] (2n x 2n, BW's B) for the HBNODE; its columns are ``field.jvp`` of the unit
    vectors. Returns an array (K * B, N) of eigenvalues.
    """
    theta = model.field.check(model.theta(P), sol.zs[0])
    xp = backend.xp()
    N = sol.zs[0].shape[1]
    eye = xp.eye(N, dtype=sol.zs[0].dtype)
    eig = []
    for t, z in zip(sol.ts, sol.zs):
        cols = [backend.to_numpy(model.field.jvp(t, z, theta, xp.broadcast_to(eye[i], z.shape)))
                for i in range(N)]
        J = np.stack(cols, axis=2)                      # (B, N, N): J[b, :, i] = J e_i
        eig.append(np.linalg.eigvals(J))
    return np.concatenate(eig, axis=0)


def _spectrum_stats(lam):
    a = np.abs(lam)
    rho = a.max(axis=1)
    lo = a.min(axis=1)
    with np.errstate(divide="ignore"):
        stiff = np.where(lo > 0, rho / np.maximum(lo, 1e-300), np.inf)
    return {"jac_rho_mean": float(rho.mean()), "jac_rho_max": float(rho.max()),
            "jac_re_max": float(lam.real.max()), "jac_stiffness": float(np.median(stiff))}


def _flat(g):
    return np.concatenate([backend.to_numpy(v).ravel() for v in g.values()])


def train_model(name, settings, datasets=None, progress=None):
    """Train one model; returns a JSON-able dict: ``model``, ``epochs`` (rows, see the module
    docstring), ``nfe_forward_iter``, ``nfe_backward_iter`` (per training iteration),
    ``adjoint_norms`` ({"t": grid, "epochs": {epoch: {"ratio": [median, q25, q75],
    "h_ratio": [...]}}}), ``n_params``, ``gamma`` (final, HBNODE), ``stopped``,
    ``wall_time_s``."""
    s = check_settings(**settings)
    model = Model(name, s)
    (x_tr, y_tr), (x_te, y_te) = datasets if datasets is not None else make_data(s)
    progress = s["progress"] if progress is None else progress
    nb = min(s["batch_size"], x_tr.shape[0])
    x_probe, y_probe = x_tr[:nb], y_tr[:nb]
    k_norm = min(s["norm_examples"], x_te.shape[0])
    x_norm, y_norm = x_te[:k_norm], y_te[:k_norm]
    t_grid = np.linspace(0.0, s["T"], s["norm_points"])
    iters = {"f": [], "b": []}
    seen = {"f": 0}
    failures = []
    curves = {}
    epoch_box = [0]
    t_start = time.perf_counter()

    def grad_fn(P, u, y):
        try:
            F, grads, info = model.loss_and_grad(P, u[0], y, s["adjoint"])
        except (RuntimeError, FloatingPointError) as exc:   # fit stops on a non-finite loss
            failures.append("%s: %s" % (type(exc).__name__, exc))
            return float("nan"), {}
        iters["f"].append(int(info["nfe_forward"]))
        iters["b"].append(int(info["nfe_backward"]))
        return F, grads

    def evaluate(P):
        epoch = epoch_box[0]
        epoch_box[0] += 1
        row = {}
        try:
            sol = model.forward(P, x_te)
            Fb, yhat, _ = _head(P, model.h(sol.z1), y_te)
            row["test_F"] = float(Fb.mean())
            row["test_acc"] = 1.0 - train.classification_error(yhat, y_te)
            row["test_nfe"] = int(sol.nfe)
            _, g, info = model.loss_and_grad(P, x_probe, y_probe, "continuous", probe=True)
            row["probe_nfe_forward"] = int(info["nfe_forward"])
            row["probe_nfe_backward"] = int(info["nfe_backward"])
            if s["check_discrete"]:
                _, g2, _ = model.loss_and_grad(P, x_probe, y_probe, "discrete", probe=True)
                a, b = _flat(g), _flat(g2)
                row["grad_rel_diff"] = float(np.linalg.norm(a - b) / max(np.linalg.norm(b),
                                                                         1e-300))
        except (RuntimeError, FloatingPointError) as exc:
            failures.append("evaluation at epoch %d: %s: %s" % (epoch, type(exc).__name__, exc))
        new_f, new_b = iters["f"][seen["f"]:], iters["b"][seen["f"]:]
        seen["f"] = len(iters["f"])
        if new_f:
            row["nfe_forward"] = sum(new_f) / len(new_f)
            row["nfe_backward"] = sum(new_b) / len(new_b)
        elif "probe_nfe_forward" in row and s["solver"] == "dopri5":  # epoch 0: the probe
            row["nfe_forward"] = float(row["probe_nfe_forward"])
            row["nfe_backward"] = float(row["probe_nfe_backward"])
        if model.name == "hbnode":
            row["gamma"] = model.gamma(P)
        if epoch % s["norm_every"] == 0 or epoch == s["epochs"]:
            try:
                prof = adjoint_profile(model, P, x_norm, y_norm, t_grid, s["norm_rtol"],
                                       s["norm_atol"], s["max_steps"])
                for k in ("adj_ratio", "adj_h_ratio", "adj_ratio_discrete", "recon_err"):
                    row[k] = prof[k]
                row.update(_spectrum_stats(jacobian_spectrum(model, P, prof["sol"])))
                curves[str(epoch)] = {"ratio": prof["ratio"], "h_ratio": prof["h_ratio"]}
            except (RuntimeError, FloatingPointError) as exc:
                failures.append("adjoint norms at epoch %d: %s: %s"
                                % (epoch, type(exc).__name__, exc))
        row["elapsed_time_s"] = time.perf_counter() - t_start
        return row

    with blas_threads(s["blas_threads"]):
        hist = train.fit(dict(model.params0), grad_fn, x_tr[None], y_tr, epochs=s["epochs"],
                         batch_size=s["batch_size"], optimizer=Adam(s["lr"]), seed=s["seed"],
                         evaluate=evaluate, progress=progress, desc=name,
                         state=run_state(s, s["out"], name, carry={
                             "iters": iters, "seen": seen, "failures": failures,
                             "curves": curves, "epoch": epoch_box}))
    stopped = hist.stopped
    if failures:
        stopped = "; ".join(([stopped] if stopped else []) + failures[:3])
    return {"model": name, "epochs": hist.epochs, "nfe_forward_iter": iters["f"],
            "nfe_backward_iter": iters["b"],
            "adjoint_norms": {"t": t_grid.tolist(), "epochs": curves},
            "n_params": model.n_params, "gamma": model.gamma(hist.params),
            "stopped": stopped, "wall_time_s": hist.wall_time}


# ------------------------------------------------------------------------------ figures
def _solver_text(s):
    """'dopri5 rtol=.. atol=..' or 'beuler, 40 steps' (records from before --solver: dopri5)."""
    solver, steps = s.get("solver", "dopri5"), s.get("steps")
    if steps is None:
        return "%s rtol=%g atol=%g" % (solver, s["rtol"], s["atol"])
    return "%s, %d steps" % (solver, steps)


def _title(s):
    g = ("gamma learned from %g" % s["gamma"]) if s["learn_gamma"] else "gamma = %g" % s["gamma"]
    return ("nested spheres d=%d, T=%g, H=%d, %s; HBNODE %s; seed %d"
            % (s["d"], s["T"], s["hidden"], _solver_text(s), g, s["seed"]))


def plot_adjoint_norms(runs, settings):
    """||a(t)|| / ||a(T)|| against t (median over test points, quartile band), at initialisation
    (dashed) and after training (solid); for the HBNODE also a_h alone (dotted)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(5.2 * len(runs), 3.8), squeeze=False)
    for ax, res in zip(axes[0], runs):
        an = res["adjoint_norms"]
        t = an["t"]
        eps = sorted(int(e) for e in an["epochs"])
        if not eps:
            continue
        c = COLORS[res["model"]]
        todo = [(eps[0], "--", "epoch %d (init)" % eps[0])]
        if eps[-1] != eps[0]:
            todo.append((eps[-1], "-", "epoch %d (trained)" % eps[-1]))
        for e, ls, lab in todo:
            med, q25, q75 = an["epochs"][str(e)]["ratio"]
            name = "[a_h, a_m]" if res["model"] == "hbnode" else "a"
            ax.plot(t, med, ls=ls, color=c, lw=2, label="%s, %s" % (name, lab))
            ax.fill_between(t, q25, q75, color=c, alpha=0.12 if ls == "-" else 0.06)
            if res["model"] == "hbnode":
                ax.plot(t, an["epochs"][str(e)]["h_ratio"][0], ls=":", lw=1.5,
                        color="k" if ls == "-" else "0.55", label="a_h only, %s" % lab)
        ax.set_yscale("log", nonpositive="mask")
        ax.set_xlabel("t")
        ax.set_ylabel("||a(t)|| / ||a(T)||  (median, 25-75 %)")
        ax.set_title("%s: adjoint norm backward from T" % LABELS[res["model"]], fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(_title(settings), fontsize=8)
    fig.tight_layout()
    return fig


def _smooth(v, k):
    if len(v) < k or k < 2:
        return np.asarray(v, dtype=float)
    return np.convolve(np.asarray(v, dtype=float), np.ones(k) / k, mode="valid")


def plot_nfe(runs, settings):
    """NFE per training iteration, forward and backward pass (thin: raw; thick: moving mean)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, key, what in ((axes[0], "nfe_forward_iter", "forward"),
                          (axes[1], "nfe_backward_iter", "backward (adjoint)")):
        for res in runs:
            v = res[key]
            if not v:
                continue
            c = COLORS[res["model"]]
            ax.plot(range(1, len(v) + 1), v, color=c, lw=0.6, alpha=0.35)
            k = max(1, min(25, len(v) // 10))
            sm = _smooth(v, k)
            ax.plot(range(k, k + len(sm)), sm, color=c, lw=2, label=LABELS[res["model"]])
        ax.set_xlabel("training iteration")
        ax.set_title("NFE per iteration, %s pass" % what, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("evaluations of f")
    fig.suptitle(_title(settings), fontsize=8)
    fig.tight_layout()
    return fig


def plot_training(runs, settings):
    """Per epoch: training loss, test accuracy, ||a(0)|| / ||a(T)|| (continuous adjoint, solid;
    discrete adjoint of the forward solve, dotted), the Jacobian's spectral radius."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    spec = (("train_F", "train loss (BCE)", False), ("test_acc", "test accuracy", False),
            ("adj_ratio", "||a(0)|| / ||a(T)|| (median)", True),
            ("jac_rho_mean", "spectral radius of the Jacobian (mean)", False))
    for ax, (key, title, log) in zip(axes, spec):
        for res in runs:
            rows = [r for r in res["epochs"] if r.get(key) is not None]
            ax.plot([r["epoch"] for r in rows], [r[key] for r in rows], marker="o", ms=2.5,
                    lw=1.6, color=COLORS[res["model"]], label=LABELS[res["model"]])
            if key == "adj_ratio":      # the check without backward reconstruction
                rows = [r for r in res["epochs"] if r.get("adj_ratio_discrete") is not None]
                ax.plot([r["epoch"] for r in rows], [r["adj_ratio_discrete"] for r in rows],
                        ls=":", lw=1.4, color=COLORS[res["model"]],
                        label="%s, discrete adjoint" % LABELS[res["model"]])
        if log:
            ax.set_yscale("log", nonpositive="mask")
            ax.axhline(1.0, color="0.5", lw=0.8, ls=":")
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(_title(settings), fontsize=8)
    fig.tight_layout()
    return fig


def plot_seeds(records, path=None):
    """Per-epoch curves of several records (seeds), one thin line per seed and model: test
    accuracy, ||a(0)|| / ||a(T)|| (log; from the discrete adjoint of the forward solve, which
    needs no backward reconstruction), NFE per iteration forward and backward. ``records``:
    record dicts or paths of ``results.json`` files / their folders. Saves to ``path`` if given;
    returns the Figure."""
    import matplotlib.pyplot as plt

    recs = [_record.load(r) if isinstance(r, (str, os.PathLike)) else r for r in records]
    if not recs:
        raise ValueError("plot_seeds: no records given")
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    spec = (("test_acc", "test accuracy", False),
            ("adj_ratio_discrete", "||a(0)|| / ||a(T)|| (median; discrete adjoint)", True),
            ("nfe_forward", "NFE per iteration, forward", False),
            ("nfe_backward", "NFE per iteration, backward", False))
    for ax, (key, title, log) in zip(axes, spec):
        for rec in recs:
            for name, run in rec["runs"].items():
                rows = [r for r in run["epochs"] if r.get(key) is not None]
                ax.plot([r["epoch"] for r in rows], [r[key] for r in rows], lw=1.1, alpha=0.75,
                        color=COLORS.get(name), label=LABELS.get(name, name))
        if log:
            ax.set_yscale("log", nonpositive="mask")
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles))
        ax.legend(uniq.values(), uniq.keys(), fontsize=8)
    seeds = sorted({r.get("seed") for r in recs}, key=str)
    head = _title(recs[0]["settings"]).rsplit(";", 1)[0]
    fig.suptitle("%s; seeds %s (one line per seed)" % (head, ", ".join(map(str, seeds))),
                 fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


# ------------------------------------------------------------------------------ the run
def _fmt(v, spec="%.3g"):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else spec % v


def _table(res, say):
    say("\n%s (%d parameters):" % (LABELS[res["model"]], res["n_params"]))
    say("%5s %9s %9s %8s %8s %8s %10s %10s %9s %10s" % (
        "epoch", "train F", "test F", "test acc", "NFE fwd", "NFE bwd", "a(0)/a(T)",
        "a_h ratio", "rho(J)", "grad diff"))
    for r in res["epochs"]:
        say("%5d %9s %9s %8s %8s %8s %10s %10s %9s %10s" % (
            r["epoch"], _fmt(r.get("train_F"), "%.4f"), _fmt(r.get("test_F"), "%.4f"),
            _fmt(r.get("test_acc"), "%.3f"), _fmt(r.get("nfe_forward"), "%.1f"),
            _fmt(r.get("nfe_backward"), "%.1f"), _fmt(r.get("adj_ratio"), "%.3g"),
            _fmt(r.get("adj_h_ratio"), "%.3g"), _fmt(r.get("jac_rho_mean"), "%.3g"),
            _fmt(r.get("grad_rel_diff"), "%.1e")))
    if res["gamma"] is not None:
        say("final gamma = %.4f" % res["gamma"])
    if res["stopped"]:
        say("stopped: " + res["stopped"])


def _summary(res):
    rows = res["epochs"]
    last = rows[-1]
    first_norm = next((r for r in rows if "adj_ratio" in r), {})
    last_norm = next((r for r in reversed(rows) if "adj_ratio" in r), {})
    f, b = res["nfe_forward_iter"], res["nfe_backward_iter"]
    return {"test_acc": last.get("test_acc"), "test_F": last.get("test_F"),
            "nfe_forward_mean": sum(f) / len(f) if f else None,
            "nfe_backward_mean": sum(b) / len(b) if b else None,
            "nfe_forward_last_epoch": last.get("nfe_forward"),
            "nfe_backward_last_epoch": last.get("nfe_backward"),
            "adj_ratio_init": first_norm.get("adj_ratio"),
            "adj_ratio_final": last_norm.get("adj_ratio"),
            "adj_h_ratio_final": last_norm.get("adj_h_ratio"),
            "jac_rho_mean_init": first_norm.get("jac_rho_mean"),
            "jac_rho_mean_final": last_norm.get("jac_rho_mean"),
            "n_params": res["n_params"], "gamma": res["gamma"]}


def run(verbose=True, overwrite=False, **settings):
    """Run the experiment; returns the results record (also written to ``out/results.json``).

    Settings: see :data:`DEFAULTS` (``quick=True`` applies :data:`QUICK` to the settings left
    at their defaults). The models start from the same f and readout and see the same
    minibatches. ``overwrite``: replace a record already in ``out`` (else FileExistsError
    before training).
    """
    s, out, say = start_run(check_settings, settings, DEFAULTS, QUICK, overwrite, verbose)
    models = models_of(s["model"])
    datasets = make_data(s)
    say("Nested spheres (BW neural ODEs vs HBNODE): d=%d, ball r<%g vs shell %g<r<%g, %d train "
        "/ %d test points; T=%g, H=%d tanh, sigmoid+BCE readout on h(T); Adam lr=%g, batch %d, "
        "%d epochs; %s, %s adjoint; HBNODE gamma %s %g; seed %d, data "
        "seed %d; backend %s/%s"
        % (s["d"], s["r1"], s["r2"], s["r3"], s["n_train"], s["n_test"], s["T"], s["hidden"],
           s["lr"], s["batch_size"], s["epochs"], _solver_text(s),
           s["adjoint"] + ("" if s["checkpoints"] is None else " (%d checkpoints)"
                           % s["checkpoints"]),
           "learned from" if s["learn_gamma"] else "fixed at", s["gamma"], s["seed"],
           s["data_seed"], backend.get_backend(), backend.get_dtype().name))
    runs = []
    t0 = time.perf_counter()
    for name in models:
        res = train_model(name, s, datasets=datasets)
        runs.append(res)
        _table(res, say)
    wall = time.perf_counter() - t0

    paths = {key: save_figure(fn(runs, s), os.path.join(out, key + ".png"))
             for key, fn in (("adjoint_norms", plot_adjoint_norms), ("nfe", plot_nfe),
                             ("training", plot_training))}
    csv = os.path.join(out, "history.csv")
    train.write_history_csv(csv, [dict({"model": r["model"]}, **row)
                                  for r in runs for row in r["epochs"]])
    record = _record.new_record("ode", s)
    record["models"] = list(models)
    for r in runs:
        _record.add_run(record, r["model"], r["epochs"],
                        **{k: v for k, v in r.items() if k not in ("epochs", "model")})
        record["summary"][r["model"]] = _summary(r)
    path = _record.finish(record, out, wall, figures=list(paths.values()))
    say("\nsummary: " + "; ".join(
        "%s acc %s, NFE fwd %s bwd %s, ||a(0)||/||a(T)|| %s -> %s" % (
            LABELS[m], _fmt(v["test_acc"], "%.3f"), _fmt(v["nfe_forward_mean"], "%.1f"),
            _fmt(v["nfe_backward_mean"], "%.1f"), _fmt(v["adj_ratio_init"]),
            _fmt(v["adj_ratio_final"])) for m, v in record["summary"].items()))
    say("wrote %s, %s, %s (%.1f s)" % (path, csv, ", ".join(paths.values()), wall))
    return record
