"""The neural ODE of BW ("Neural ODEs"): its vector field, loss, gradients, and BW Lemma 1.

BW-NODE, with rows as examples (h of shape (B, n); "W v" is ``v @ W.T``)::

    dh/dt = f(h, t, theta) = theta2 sigma(theta1 h + b1 [+ theta1_t t]) + b2

    theta1 (H, n)   b1 (H,)   theta2 (n, H)   b2 (n,)   [theta1_t (H,): with time_input=True]

BW writes f = theta2 sigma(theta1 h); the biases b1, b2 and the time column theta1_t (the time
input t fed to the hidden layer, i.e. theta1 acting on [h, t]) are the usual extensions. b1 and
b2 may be left out of ``params`` (then f has no such term and no gradient is returned for it).
``theta1_t`` is used only when ``time_input=True``; with time_input=False a ``theta1_t`` in
``params`` is ignored by f and gets an exactly-zero gradient.

Loss on h(T) (many-to-one): an optional linear readout o = h(T) W_out^T + b_out ((l, n), (l,);
when ``W_out`` is not in params, o = h(T)), then an output head of :mod:`manualgrad.losses`
(activation + loss); F is the batch mean of F_b.

Vector-field protocol (manualgrad.ode): :meth:`NODEField.f`, :meth:`NODEField.vjp` (a df/dh
and the batch sums of a df/dtheta), :meth:`NODEField.jvp`, :meth:`NODEField.check`. With
u = theta1 h + b1 + theta1_t t, s = sigma(u), and g = sigma'(u) o (a theta2) (rows)::

    a df/dh       = g theta1                     (B, n)
    dtheta2       = sum_b a^T s                  (n, H)      db2 = sum_b a
    dtheta1       = sum_b g^T h                  (H, n)      db1 = sum_b g
    dtheta1_t     = t sum_b g                    (H,)

BW Lemma 1 for the linear field f(h) = A h (:class:`LinearField`, coded ``z @ A.T``): the
adjoint row a(t) = dL/dh(t) solves da/dt = -a A, so

    a(t) = a(T) exp(-int_T^t A ds) = a(T) expm(A (T - t))          (row convention)

(for the gradient as a column, a(t)^T = expm(A^T (T - t)) a(T)^T). :func:`lemma1_adjoint`
evaluates it on the backend (matrix exponential by scaling and squaring, :func:`expm`).

:func:`loss_and_grad` and :func:`loss` take ``workspace=`` (default True: the calling thread's
:class:`~manualgrad.backend.Workspace`): the solver's states and stages, the recorded trajectory,
the adjoints and the field's temporaries (:meth:`NODEField.f_into`, :meth:`NODEField.vjp_into`)
are reused from call to call; F, the gradients and every array of ``info`` are the caller's own,
bit for bit the same as without a workspace. :func:`forward` returns the trajectory and takes
none.
"""
from __future__ import annotations

import math

from .. import activations, backend
from .._validate import float_array, number
from . import adjoint as _adjoint
from . import gradient as _gradient
from . import hvp as _hvp
from . import solvers as _solvers

__all__ = ["PARAM_NAMES", "NODEField", "LinearField", "init_params", "check_params", "readout",
           "forward", "loss", "loss_and_grad", "expm", "lemma1_adjoint", "hvp"]

PARAM_NAMES = ("theta1", "b1", "theta2", "b2")
"""The field's parameters (``theta1_t`` is added with time_input=True)."""

READOUT_NAMES = _gradient.READOUT_NAMES
"""The readout's parameters W_out (l, n), b_out (l,) (:mod:`manualgrad.ode.gradient`)."""

_GRAD_NAMES = frozenset(PARAM_NAMES + ("theta1_t",))  # the keys NODEField.vjp can make nonzero


# ============================================================================ the field
class NODEField:
    """BW-NODE: f(h, t, theta) = theta2 sigma(theta1 h + b1 [+ theta1_t t]) + b2.

    ``activation``: a name of :data:`manualgrad.activations.HIDDEN` (tanh by default) or an
    Activation; its derivative sigma' is reused for the vjp. ``time_input``: feed t to the
    hidden layer through ``theta1_t`` (H,).
    """

    def __init__(self, activation="tanh", time_input=False):
        self.act = activations.get(activation, "hidden")
        if not isinstance(time_input, bool):
            raise TypeError("time_input must be True or False, got %r" % (time_input,))
        self.time_input = time_input

    def __repr__(self):
        return "NODEField(activation=%r, time_input=%r)" % (self.act.name, self.time_input)

    # ---------------------------------------------------------------- validation (once)
    def check(self, theta, z):
        """Validate ``theta`` against the state z (B, n); return it on the backend (same keys)."""
        if not hasattr(theta, "keys"):
            raise TypeError("params must be a mapping with keys theta1, theta2 (and b1, b2%s), "
                            "got %s" % (", theta1_t" if self.time_input else "",
                                        type(theta).__name__))
        need = ["theta1", "theta2"] + (["theta1_t"] if self.time_input else [])
        missing = [k for k in need if k not in theta]
        if missing:
            raise ValueError("params for the neural ODE field lack %s (got keys %s)%s"
                             % (", ".join(missing), ", ".join(map(str, theta)),
                                "; time_input=True needs theta1_t (H,)"
                                if "theta1_t" in missing else ""))
        out = dict(theta)
        th1 = float_array(theta["theta1"], "params['theta1']", ndim=2, axes=("H", "n"))
        H, n = th1.shape
        nz = z.shape[-1]
        if n != nz:
            raise ValueError("params['theta1'] has shape %s: its %d columns must equal the state "
                             "size n = %d of h0/z (shape %s)" % (tuple(th1.shape), n, nz,
                                                                 tuple(z.shape)))
        want = {"theta1": (H, n), "theta2": (n, H), "b1": (H,), "b2": (n,), "theta1_t": (H,)}
        for k, shp in want.items():
            if k not in theta:
                continue
            a = float_array(theta[k], "params[%r]" % k, ndim=len(shp))
            if tuple(a.shape) != shp:
                raise ValueError("params[%r] has shape %s, expected %s (H = %d hidden units, "
                                 "n = %d state size)" % (k, tuple(a.shape), shp, H, n))
            out[k] = a
        return out

    # ---------------------------------------------------------------- f, vjp, jvp
    def _pre_into(self, t, z, theta, u, ws=None):
        """u = theta1 h + b1 [+ theta1_t t] (rows: z theta1^T + b1 + t theta1_t), into ``u``."""
        xp = backend.xp()
        xp.matmul(z, theta["theta1"].T, out=u)
        if "b1" in theta:
            u += theta["b1"]
        if self.time_input:
            th = theta["theta1_t"]
            u += xp.multiply(th, t, out=backend.empty(tuple(th.shape), th.dtype, ws,
                                                      "node.t_theta1_t"))
        return u

    def _pre(self, t, z, theta):
        th1 = theta["theta1"]
        u = backend.empty((z.shape[0], th1.shape[0]), _solvers.result_dtype(z, th1))
        return self._pre_into(t, z, theta, u)

    def f(self, t, z, theta):
        """dh/dt (B, n) at time t (host float) and state z (B, n)."""
        return self.f_into(t, z, theta)

    def f_into(self, t, z, theta, out=None, ws=None):
        """:meth:`f` written into ``out`` (B, n) (None: a new array); returns it.

        The temporaries u and sigma(u) (B, H) come from workspace ``ws`` (None: fresh arrays).
        """
        xp = backend.xp()
        th1, th2 = theta["theta1"], theta["theta2"]
        hidden, dt = (z.shape[0], th1.shape[0]), _solvers.result_dtype(z, th1)
        u, s = _solvers.temporaries(ws, "node.f", (hidden, hidden), dt)
        u = self._pre_into(t, z, theta, u, ws)
        s = self.act.f_into(u, s)  # sigma(u)
        if out is None:
            out = backend.empty((z.shape[0], th2.shape[0]), _solvers.result_dtype(s, th2))
        xp.matmul(s, th2.T, out=out)
        if "b2" in theta:
            out += theta["b2"]
        return out

    def vjp(self, t, z, theta, a):
        """(a df/dh (B, n), {name: sum_b a df/dtheta[name]}) for a (B, n); every key of theta."""
        return self.vjp_into(t, z, theta, a)

    def vjp_into(self, t, z, theta, a, out_z=None, out_theta=None, ws=None):
        """:meth:`vjp` written into ``out_z`` (B, n) and ``out_theta`` ({name: array} for every
        key of theta; None: new arrays, each in its parameter's dtype); returns them.

        The temporaries (B, H) come from workspace ``ws`` (None: fresh arrays).
        """
        xp = backend.xp()
        th1, th2 = theta["theta1"], theta["theta2"]
        hidden, dt = (z.shape[0], th1.shape[0]), _solvers.result_dtype(z, th1)
        u, s, g, a_theta2 = _solvers.temporaries(ws, "node.vjp", (hidden,) * 4, dt)
        u = self._pre_into(t, z, theta, u, ws)
        s = self.act.f_into(u, s)
        g = self.act.grad_into(u, s, g)
        g *= xp.matmul(a, th2, out=a_theta2)  # g = sigma'(u) o (a theta2)
        if out_theta is None:
            out_theta = {k: backend.empty(tuple(v.shape), v.dtype) for k, v in theta.items()}
        for k, v in out_theta.items():
            if k not in _GRAD_NAMES or (k == "theta1_t" and not self.time_input):
                v.fill(0)  # keys f does not use get exact zeros
        xp.matmul(a.T, s, out=out_theta["theta2"])
        xp.matmul(g.T, z, out=out_theta["theta1"])
        if "b2" in theta:
            a.sum(axis=0, out=out_theta["b2"])
        if "b1" in theta or self.time_input:
            gs = out_theta["b1"] if "b1" in theta else backend.empty(
                (hidden[1],), g.dtype, ws, "node.g_sum")
            gs = g.sum(axis=0, out=gs)
            if self.time_input:
                xp.multiply(gs, t, out=out_theta["theta1_t"])
        if out_z is None:
            out_z = backend.empty(tuple(a.shape), _solvers.result_dtype(g, th1))
        xp.matmul(g, th1, out=out_z)
        return out_z, out_theta

    def jvp(self, t, z, theta, v):
        """(df/dh) v per example, v (B, n) -> (B, n)."""
        u = self._pre(t, z, theta)
        return (self.act.grad(u, self.act.f(u)) * (v @ theta["theta1"].T)) @ theta["theta2"].T

    def jac(self, t, z, theta):
        """X-IMPL: J = df/dh = theta2 diag(sigma'(u_b)) theta1 per example, (B, n, n)
        (J[b, p, q] = df_p/dh_q), u = theta1 h + b1 [+ theta1_t t]: the Newton matrix of the
        implicit solvers (manualgrad.ode.implicit, eq. I4)."""
        u = self._pre(t, z, theta)
        d = self.act.grad(u, self.act.f(u))  # sigma'(u) (B, H)
        return (theta["theta2"][None, :, :] * d[:, None, :]) @ theta["theta1"]

    # ---------------------------------------------------------------- second order (X-NODE-HVP)
    def _pre_dot(self, t, z, theta, dz, dtheta):
        """u_dot = dz theta1^T + z dtheta1^T + db1 [+ t dtheta1_t]: the tangent of u (B, H)."""
        u_dot = dz @ theta["theta1"].T + z @ dtheta["theta1"].T
        if "b1" in theta:
            u_dot = u_dot + dtheta["b1"]
        if self.time_input:
            u_dot = u_dot + t * dtheta["theta1_t"]
        return u_dot

    def tangent(self, t, z, theta, dz, dtheta):
        """X-NODE-HVP: f_dot = d/de f(t, z + e dz, theta + e dtheta) at e = 0, (B, n).

        dz (B, n); dtheta a mapping like theta (the direction in parameter space)::

            u_dot = dz theta1^T + z dtheta1^T + db1 [+ t dtheta1_t]
            f_dot = (sigma'(u) o u_dot) theta2^T + sigma(u) dtheta2^T + db2
        """
        u = self._pre(t, z, theta)
        s = self.act.f(u)
        f_dot = (self.act.grad(u, s) * self._pre_dot(t, z, theta, dz, dtheta)) @ theta["theta2"].T
        f_dot = f_dot + s @ dtheta["theta2"].T
        if "b2" in theta:
            f_dot = f_dot + dtheta["b2"]
        return f_dot

    def vjp_jvp(self, t, z, theta, a, dz, dtheta):
        """X-NODE-HVP: the tangent of :meth:`vjp` along (dz, dtheta) with the row a held fixed.

        Returns ``(d/de [a df/dz], {name: d/de [sum_b a df/dtheta[name]]})`` at (z + e dz,
        theta + e dtheta), e = 0; every key of theta (exact zeros for keys f does not use). With
        w = a theta2, g = sigma'(u) o w (as in :meth:`vjp`)::

            g_dot         = sigma''(u) o u_dot o w + sigma'(u) o (a dtheta2)
            (a df/dz)_dot = g_dot theta1 + g dtheta1
            dtheta1_dot   = sum_b [g_dot^T z + g^T dz]      db1_dot = sum_b g_dot
            dtheta2_dot   = sum_b a^T (sigma'(u) o u_dot)   db2_dot = 0
            dtheta1_t_dot = t sum_b g_dot
        """
        u = self._pre(t, z, theta)
        s = self.act.f(u)
        sp, w = self.act.grad(u, s), a @ theta["theta2"]
        u_dot = self._pre_dot(t, z, theta, dz, dtheta)
        g = sp * w
        g_dot = self.act.grad2(u, s) * u_dot * w + sp * (a @ dtheta["theta2"])
        out = _adjoint.zeros_like_params(theta)
        out["theta2"] = a.T @ (sp * u_dot)
        out["theta1"] = g_dot.T @ z + g.T @ dz
        if "b1" in theta:
            out["b1"] = g_dot.sum(axis=0)
        if self.time_input:
            out["theta1_t"] = t * g_dot.sum(axis=0)
        return g_dot @ theta["theta1"] + g @ dtheta["theta1"], out


class LinearField:
    """f(z) = A z (coded ``z @ A.T``), the linear field of BW Lemma 1.

    ``A`` (n, n) fixed at construction (a host matrix is moved to the active backend then, and
    again at first use if the backend has changed since), or None to read it from
    ``theta["A"]`` (then the vjp returns dL/dA = sum_b a^T z for it). Any other key of theta
    gets an exact-zero gradient.
    """

    def __init__(self, A=None):
        self.A = None if A is None else float_array(A, "A", ndim=2, axes=("n", "n"))
        if self.A is not None and self.A.shape[0] != self.A.shape[1]:
            raise ValueError("A must be square (n, n), got shape %s" % (tuple(self.A.shape),))

    def _A(self, theta):
        if self.A is None:
            return theta["A"]
        if backend.array_module_of(self.A) is not backend.xp():  # built under another backend
            self.A = backend.asarray(self.A, self.A.dtype)
        return self.A

    def check(self, theta, z):
        theta = {} if theta is None else theta
        if not hasattr(theta, "keys"):
            raise TypeError("theta must be a mapping, got %s" % type(theta).__name__)
        out = dict(theta)
        if self.A is None:
            if "A" not in theta:
                raise ValueError("LinearField() without A reads theta['A'] (n, n); it is missing")
            out["A"] = float_array(theta["A"], "theta['A']", ndim=2, axes=("n", "n"))
        A = self._A(out)
        n = z.shape[-1]
        if tuple(A.shape) != (n, n):
            raise ValueError("A has shape %s, expected (n, n) = (%d, %d) for states of shape %s"
                             % (tuple(A.shape), n, n, tuple(z.shape)))
        return out

    def f(self, t, z, theta):
        return z @ self._A(theta).T

    def f_into(self, t, z, theta, out, ws=None):
        """:meth:`f` written into ``out`` (B, n)."""
        return backend.xp().matmul(z, self._A(theta).T, out=out)

    def vjp(self, t, z, theta, a):
        grads = _adjoint.zeros_like_params(theta)  # unused keys stay exactly 0
        if self.A is None:
            grads["A"] = a.T @ z
        return a @ self._A(theta), grads

    def vjp_into(self, t, z, theta, a, out_z, out_theta, ws=None):
        """:meth:`vjp` written into ``out_z`` (B, n) and ``out_theta`` ({name: array}, every key
        of theta)."""
        xp = backend.xp()
        for k, v in out_theta.items():
            if k != "A" or self.A is not None:
                v.fill(0)  # unused keys get exact zeros
        if self.A is None:
            xp.matmul(a.T, z, out=out_theta["A"])
        xp.matmul(a, self._A(theta), out=out_z)
        return out_z, out_theta

    def jvp(self, t, z, theta, v):
        return v @ self._A(theta).T

    def jac(self, t, z, theta):
        """X-IMPL: J = A for every example, (B, n, n) (a broadcast view)."""
        A = self._A(theta)
        return backend.xp().broadcast_to(A, (z.shape[0],) + tuple(A.shape))

    def tangent(self, t, z, theta, dz, dtheta):
        """X-NODE-HVP: f_dot = dz A^T (+ z dA^T when A is read from theta), (B, n)."""
        f_dot = dz @ self._A(theta).T
        if self.A is None:
            f_dot = f_dot + z @ dtheta["A"].T
        return f_dot

    def vjp_jvp(self, t, z, theta, a, dz, dtheta):
        """X-NODE-HVP: the tangent of :meth:`vjp` along (dz, dtheta), a fixed: (a dA, {A: a^T dz})
        when A is read from theta, else zeros (f is linear in z)."""
        out = _adjoint.zeros_like_params(theta)
        if self.A is None:
            out["A"] = a.T @ dz
            return a @ dtheta["A"], out
        return backend.xp().zeros_like(a), out


# ============================================================================ parameters
def init_params(n, H, seed=0, scale=None, time_input=False, l=None, bias_scale=0.0, dtype=None):
    """Random BW-NODE parameters: theta1 (H, n), b1 (H,), theta2 (n, H), b2 (n,).

    Weights N(0, s^2) with s = ``scale`` or, when None, 1/sqrt(fan_in) (n for theta1, H for
    theta2); biases N(0, bias_scale^2). ``time_input=True`` adds theta1_t (H,) (weight scale).
    ``l``: also a readout W_out (l, n), b_out (l,) (s = 1/sqrt(n)). Drawn on the host from
    ``default_rng(seed)`` in the order theta1, b1, theta2, b2, theta1_t, W_out, b_out.
    """
    for v, name in ((n, "n"), (H, "H")):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError("init_params: %s must be a positive integer, got %r" % (name, v))
    if l is not None and (isinstance(l, bool) or not isinstance(l, int) or l < 1):
        raise ValueError("init_params: l must be a positive integer or None, got %r" % (l,))
    if scale is not None and not scale >= 0:
        raise ValueError("init_params: scale must be >= 0 or None, got %r" % (scale,))
    if not bias_scale >= 0:
        raise ValueError("init_params: bias_scale must be >= 0, got %r" % (bias_scale,))
    rng = backend.host_rng(seed)

    def std(fan_in):
        return 1.0 / math.sqrt(fan_in) if scale is None else float(scale)

    P = {"theta1": backend.randn((H, n), rng=rng, scale=std(n), dtype=dtype),
         "b1": backend.randn((H,), rng=rng, scale=bias_scale, dtype=dtype),
         "theta2": backend.randn((n, H), rng=rng, scale=std(H), dtype=dtype),
         "b2": backend.randn((n,), rng=rng, scale=bias_scale, dtype=dtype)}
    if time_input:
        P["theta1_t"] = backend.randn((H,), rng=rng, scale=std(n), dtype=dtype)
    if l is not None:
        P["W_out"] = backend.randn((l, n), rng=rng, scale=1.0 / math.sqrt(n), dtype=dtype)
        P["b_out"] = backend.randn((l,), rng=rng, scale=bias_scale, dtype=dtype)
    return P


def check_params(params, h0, field):
    """Validate params (field part via ``field.check``, readout W_out (l, n), b_out (l,))."""
    return _gradient.check_readout(params, field.check(params, h0), h0.shape[1])


readout = _gradient.readout  # o = h(T) W_out^T + b_out, or h(T) without W_out


def _field_for(field, activation, time_input, params):
    if field is not None:
        return field
    if time_input is None:
        time_input = hasattr(params, "keys") and "theta1_t" in params
    return NODEField(activation, time_input)


def forward(params, h0, t0=0.0, t1=1.0, solver="rk4", steps=None, h=None, rtol=1e-6, atol=1e-8,
            max_steps=10_000, activation="tanh", time_input=None, field=None, grid=None,
            record=True):
    """Solve BW-NODE from h0 (B, n); a :class:`~manualgrad.ode.solvers.Solution`.

    ``grid``: a host grid of times to step over with ``solver`` instead (``odeint_grid``).
    ``time_input=None``: True iff params has ``theta1_t``. ``field``: a field object instead of
    the NODEField(activation, time_input). The Solution's arrays are the caller's own (no
    workspace: it returns the trajectory).
    """
    fld, h0, P = _problem(params, h0, activation, time_input, field)
    return _solvers.solve(fld, h0, P, t0, t1, solver, steps, h, rtol, atol, max_steps,
                          grid=grid, record=record)


def _problem(params, h0, activation, time_input, field):
    """``(field, h0, P)`` validated: the NODEField unless ``field`` is given (then params pass
    unchecked, as a dict, to that field's own ``check`` in the solve)."""
    fld = _field_for(field, activation, time_input, params)
    h0 = _solvers.check_state(h0, "h0")
    P = check_params(params, h0, fld) if field is None else dict(params)
    return fld, h0, P


def loss(params, h0, y, t0=0.0, t1=1.0, solver="rk4", steps=None, h=None, rtol=1e-6, atol=1e-8,
         max_steps=10_000, activation="tanh", time_input=None, output="identity", loss="mse",
         field=None, grid=None, workspace=True):
    """F = batch mean of head(readout(h(T)), y) (forward only; what finite differences check).

    Arguments as in :func:`loss_and_grad`; ``grid`` replays a fixed grid (e.g. ``info["ts"]``
    of a dopri5 solve). ``workspace`` as in :func:`loss_and_grad` (the solver's states and
    stages live there; F is the caller's own).
    """
    fld, h0, P = _problem(params, h0, activation, time_input, field)
    with backend.workspace_scope(workspace) as ws:
        sol = _solvers.solve(fld, h0, P, t0, t1, solver, steps, h, rtol, atol, max_steps,
                             grid=grid, record=False, ws=ws)
        return _gradient.head_loss(P, sol.z1, y, output, loss)


def loss_and_grad(params, h0, y, t0=0.0, t1=1.0, solver="rk4", steps=None, h=None,
                  method="discrete", rtol=1e-6, atol=1e-8, max_steps=10_000, activation="tanh",
                  time_input=None, output="identity", loss="mse", field=None,
                  adjoint_solver=None, adjoint_steps=None, adjoint_rtol=None, adjoint_atol=None,
                  workspace=True, checkpoints=None):
    """``(F, grads, info)``: the BW-NODE loss on h(T) and its gradient, two ways.

    A thin wrapper of :func:`manualgrad.ode.gradient.loss_and_grad`, the entry point BW-NODE
    shares with the HBNODE (readout, head, and the methods of ``gradient.METHODS``).

    Parameters
    ----------
    params : theta1 (H, n), theta2 (n, H), optional b1 (H,), b2 (n,), theta1_t (H,), and an
        optional readout W_out (l, n), b_out (l,).
    h0 : (B, n) initial states (the input of the network).
    y : targets for the head, (B, l) (or as :func:`manualgrad.losses.targets` accepts).
    t0, t1, solver, steps, h, rtol, atol, max_steps : the forward solve (see ``odeint``).
    method : 'discrete' -- exact gradient of the computed solution (``discrete_adjoint``;
        stores the trajectory), or 'continuous' -- BW Theorem 1 (``continuous_adjoint``;
        stores nothing, integrates backward with ``adjoint_solver``/``adjoint_steps``/
        ``adjoint_rtol``/``adjoint_atol``, defaulting to the forward settings; for dopri5 the
        forward solve's accepted steps do not carry over), or 'checkpointed' -- the discrete
        gradient from ``checkpoints`` stored states (X-CKPT, :mod:`~manualgrad.ode.checkpoint`).
    checkpoints : 'checkpointed' only, required there: the number c >= 1 of forward states
        stored at once (z0 included); the sweep recomputes the others on Griewank's binomial
        schedule (peak c + 2 states instead of N + 1). Non-integers and c < 1 raise first.
    activation, time_input, field : the field (NODEField(activation, time_input) unless a field
        object is given; time_input=None means "params has theta1_t").
    output, loss : the head (default identity + mse: F = mean_b 1/2 ||o_b - y_b||^2).
    workspace : where the solves keep their arrays between calls -- the forward states (the
        recorded trajectory for 'discrete'), the solver's stages, the adjoints, the augmented
        state for 'continuous' and the field's temporaries (a
        :class:`~manualgrad.backend.Workspace`; True: the calling thread's default; False:
        fresh arrays). After the first call with given shapes a call allocates no such array
        again. F, grads and every array of info are always the caller's own; the numbers are
        bit for bit the same either way.

    Returns
    -------
    F : 0-d array, the batch mean loss.
    grads : {name: dF/dparams[name]} for every key of params (readout included; exact zeros for
        keys f ignores).
    info : dict with ``grad_h0`` = dF/dh0 (B, n) (the gradient for the input, kept out of
        ``grads``), ``hT`` (B, n), ``aT`` = dF/dh(T), ``nfe_forward``, ``nfe_backward``
        (f calls in the backward pass), ``nvjp_backward``, ``steps_forward``, ``steps_backward``,
        ``ts`` (forward grid, host list), ``method``, ``solver``; 'checkpointed' adds the
        schedule: ``checkpoints``, ``checkpoint_steps``, ``stored_states``,
        ``recomputed_steps``, ``peak_states`` (see :func:`manualgrad.ode.gradient.loss_and_grad`).

    Raises FloatingPointError when the state, the adjoint or the loss is no longer finite
    (naming the step; see docs/ode.md).
    """
    _gradient.check_method(method)
    _gradient.check_checkpoints(checkpoints, method)
    fld, h0, P = _problem(params, h0, activation, time_input, field)
    with backend.workspace_scope(workspace) as ws:
        F, grads, g = _gradient.loss_and_grad(
            fld, h0, P, y, t0, t1, solver, steps, h, method, rtol, atol, max_steps, output, loss,
            adjoint_solver, adjoint_steps, adjoint_rtol, adjoint_atol, ws=ws,
            checkpoints=checkpoints)
    info = {"grad_h0": g["grad_z0"], "hT": g["zT"], "aT": g["aT"],
            "nfe_forward": g["nfe_forward"], "nfe_backward": g["nfe_backward"],
            "nvjp_backward": g["nvjp_backward"], "steps_forward": g["steps_forward"],
            "steps_backward": g["steps_backward"], "ts": g["ts"], "method": g["method"],
            "solver": g["solver"], "solve": g["solve"]}  # X-IMPL: step sizes, rejections
    info.update({k: g[k] for k in _gradient.METHODS[method].info_keys})
    return F, grads, info


# ============================================================================ BW Lemma 1
def expm(M):
    """Matrix exponential of a square matrix on the backend: scaling and squaring + Taylor.

    M / 2^j with ||M / 2^j||_1 <= 1/2, Taylor series to degree 18 (remainder < 1e-20 relative
    there), then j squarings. Agrees with scipy.linalg.expm to ~1e-14 relative for ||M|| ~ 1 and
    ~1e-12 for ||M||_1 ~ 20 (the squarings amplify round-off;
    tests/ode/test_node.py). No scipy: runs on NumPy and CuPy.
    """
    xp = backend.xp()
    M = float_array(M, "M", ndim=2)
    if M.shape[0] != M.shape[1]:
        raise ValueError("expm: M must be square, got shape %s" % (tuple(M.shape),))
    norm = float(xp.abs(M).sum(axis=0).max()) if M.size else 0.0
    j = max(0, int(math.ceil(math.log2(norm / 0.5)))) if norm > 0.5 else 0
    X = M / (2.0 ** j)
    n = M.shape[0]
    E = xp.eye(n, dtype=M.dtype)
    term = xp.eye(n, dtype=M.dtype)
    for k in range(1, 19):
        term = (term @ X) / k
        E = E + term
    for _ in range(j):
        E = E @ E
    return E


def lemma1_adjoint(A, aT, t, T):
    """BW Lemma 1 for f(h) = A h: the adjoint row a(t) = a(T) expm(A (T - t)).

    ``A`` (n, n); ``aT`` (B, n) (or (n,)) = dL/dh(T), rows; ``t`` a host float or a sequence of
    floats; ``T`` the final time. Returns a(t) of shape aT.shape, or (len(t),) + aT.shape for a
    sequence. For A with eigenvalues of negative real part the adjoint decays as t goes back
    from T (||a(t)|| <= ||a(T)|| ||expm(A (T - t))||): BW's vanishing adjoint.
    """
    xp = backend.xp()
    A = float_array(A, "A", ndim=2)
    if A.shape[0] != A.shape[1]:
        raise ValueError("A must be square (n, n), got shape %s" % (tuple(A.shape),))
    aT = float_array(aT, "aT")
    if aT.ndim not in (1, 2) or aT.shape[-1] != A.shape[0]:
        raise ValueError("aT must have shape (B, n) or (n,) with n = %d, got %s"
                         % (A.shape[0], tuple(aT.shape)))
    T = number(T, "T")
    scalar = not hasattr(t, "__len__")
    times = [number(t, "t")] if scalar else [number(s, "t[%d]" % i) for i, s in enumerate(t)]
    out = [aT @ expm(A * (T - s)) for s in times]
    return out[0] if scalar else xp.stack(out)


# ============================================================================ X-NODE-HVP
def hvp(params, h0, y, v, t0=0.0, t1=1.0, solver="rk4", steps=None, h=None, rtol=1e-6,
        atol=1e-8, max_steps=10_000, activation="tanh", time_input=None, output="identity",
        loss="mse", field=None):
    """``(F, grads, hv, info)``: the BW-NODE loss, its gradient and the Hessian-vector product
    H v through the discrete solve (X-NODE-HVP; :func:`manualgrad.ode.hvp.hvp`; derivation in
    docs/ode.md, "Hessian-vector products through the solver").

    H is the Hessian of the F of :func:`loss_and_grad` (``method="discrete"``: the solver's own
    steps, dopri5 on its accepted grid held fixed) in the parameters, by a tangent sweep forward
    through the RK steps and a second-order adjoint sweep back, as :func:`manualgrad.rnn.hvp`
    does for the RNN. Plain allocations, no workspace.

    Parameters
    ----------
    params, h0, y, t0, t1, solver, steps, h, rtol, atol, max_steps, activation, time_input,
    output, loss, field : as in :func:`loss_and_grad` (a ``field`` needs the methods ``tangent``
        and ``vjp_jvp`` too).
    v : the direction, a mapping with every key of params (theta1, theta2 and whichever of b1,
        b2, theta1_t, W_out, b_out params has), each a finite float array of its parameter's
        shape; optionally ``"h0"`` (B, n), a direction of the initial state (then H is the
        Hessian in (params, h0) and hv has an ``"h0"`` entry; without it h0 is data).

    Returns
    -------
    F : 0-d array.  grads : dF/dparams as :func:`loss_and_grad` returns them (to round-off).
    hv : {name: (H v)[name]} for every key of v (exact zeros for keys f ignores).
    info : ``grad_h0`` = dF/dh0, ``grad_h0_dot`` = its tangent along v (the mixed second
        derivative when v has no h0), ``hT``, ``hT_dot``, ``aT``, ``aT_dot``, ``o_dot``,
        ``steps_forward``, ``ts``, ``solver``, and the counts ``nfe_forward``, ``nfe_hvp``,
        ``ntangent``, ``nvjp``, ``nvjp_jvp``.
    """
    fld, h0, P = _problem(params, h0, activation, time_input, field)
    if field is not None and callable(getattr(fld, "check", None)):
        P = check_params(params, h0, fld)  # the direction is checked against validated arrays
    v = _hvp.check_direction(P, v, {"h0": tuple(h0.shape)}, "node.hvp")
    F, grads, hv, g = _hvp.hvp(fld, h0, P, y, v, v.get("h0"), t0, t1, solver, steps, h, rtol,
                               atol, max_steps, output, loss, where="node.hvp")
    if "h0" in v:
        hv["h0"] = g["grad_z0_dot"]
    info = {"grad_h0": g["grad_z0"], "grad_h0_dot": g["grad_z0_dot"], "hT": g["hT"],
            "hT_dot": g["zT_dot"], "aT": g["aT"], "aT_dot": g["aT_dot"], "o_dot": g["o_dot"],
            "steps_forward": g["steps_forward"], "ts": g["ts"], "solver": g["solver"],
            "nfe_forward": g["nfe_forward"], "nfe_hvp": g["nfe_hvp"], "ntangent": g["ntangent"],
            "nvjp": g["nvjp"], "nvjp_jvp": g["nvjp_jvp"]}
    return F, grads, hv, info
