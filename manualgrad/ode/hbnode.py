"""The heavy-ball neural ODE (HBNODE) and its adjoint (BW HBNODE eqs. 12-13, BW Theorems 2-3).

BW HBNODE eq. (12), d2h/dt2 + gamma dh/dt = f(h, t, theta), is solved as the first-order system
of eq. (13) on the stacked state z = [h, m] (rows are examples)::

    dh/dt = m,   dm/dt = -gamma m + f(h),   f(h) = theta2 sigma(theta1 h + b1) + b2
    z (B, 2n), h = z[:, :n], m = z[:, n:]
    theta1 (H, n)  b1 (H,)  theta2 (n, H)  b2 (n,)  [gamma_raw (1,)]

gamma is either a fixed number >= 0 or learned as gamma = sigmoid(gamma_raw) in (0, 1), as the
HBNODE authors did. Write F(h, m) = (m, -gamma m + f(h)) and J = df/dh = theta2 diag(sigma'(u))
theta1 (u = theta1 h + b1). The adjoint a = [a_h, a_m] = [dL/dh(t), dL/dm(t)] of BW Theorem 1,
da/dt = -a dF/dz with dF/dz = [[0, I], [J, -gamma I]], is (BW Theorem 2, sign fixed)::

    da_h/dt = -a_m J                (BW prints + a_m df/dh: the minus sign is missing)
    da_m/dt = -a_h + gamma a_m
    da_theta/dt = -a_m df/dtheta,    dL/dtheta = a_theta(t0) = -int_T^t0 a_m df/dtheta dt
    da_gamma/dt = -a . dF/dgamma = a_m . m,  dL/dgamma = -int_{t0}^T a_m . m dt
    dL/dgamma_raw = dL/dgamma * gamma (1 - gamma)

(:func:`adjoint_rhs`, :func:`gamma_rhs`; :meth:`HBNODEField.vjp` must agree with them, which the
tests check.) Eliminating a_h gives BW Theorem 3 for a_m, for any f::

    d2a_m/dt2 - gamma da_m/dt = a_m J(h(t))

while a_h satisfies it only when J is constant along the trajectory (linear f):
a_h'' - gamma a_h' - a_h J = -a_m dJ/dt (:meth:`HBNODEField.theorem3_residuals`).
BW states Theorem 3 for a = dL/dh; docs/hbnode.md has the derivation and the discrepancy.

Gradients of a loss on h(T) in theta, gamma and the initial state (h0, m0) come from
:mod:`manualgrad.ode.adjoint` (discrete or continuous adjoint) through :func:`loss_and_grad`,
a thin wrapper of the entry point :func:`manualgrad.ode.gradient.loss_and_grad` that
:func:`manualgrad.ode.node.loss_and_grad` shares (same readout W_out, b_out, head and methods;
the state packing :data:`POSITION` says that the loss reads h of z = [h, m])::

    P = hbnode.init_params(n, H, seed=0, learn_gamma=True, gamma0=0.5, l=1)
    F, grads, info = hbnode.loss_and_grad(P, h0, m0, y, solver="rk4", steps=20,
                                          method="discrete")   # or "continuous"
    info["grad_h0"], info["grad_m0"]                            # dF/dh0, dF/dm0 (B, n)

As in node, :func:`loss_and_grad` and :func:`loss` keep z0, the solves' arrays and the field's
temporaries (:meth:`HBNODEField.f_into`, :meth:`HBNODEField.vjp_into`) in a workspace
(``workspace=True``: the thread's default); what they return is always the caller's own.
"""
from __future__ import annotations

import math

from .. import activations, backend
from .._validate import float_array, number, params_mapping, positive_int
from . import gradient as _gradient
from . import hvp as _hvp
from . import solvers as _solvers

__all__ = ["FIELD_NAMES", "HBNODEField", "init_params", "adjoint_rhs", "gamma_rhs", "split",
           "Position", "POSITION", "check_params", "forward", "loss", "loss_and_grad",
           "hvp"]

FIELD_NAMES = ("theta1", "b1", "theta2", "b2")
"""Parameters of f (BW-NODE's theta2 sigma(theta1 h) with biases); "gamma_raw" too if learned."""


def _sigmoid(x):
    return 0.5 * (1.0 + backend.xp().tanh(0.5 * x))


def split(z):
    """(h, m) = (z[:, :n], z[:, n:]) for a stacked HBNODE state z (B, 2n)."""
    n2 = z.shape[-1]
    if n2 % 2:
        raise ValueError("an HBNODE state z = [h, m] must have an even number of columns (2n), "
                         "got shape %s" % (tuple(z.shape),))
    n = n2 // 2
    return z[..., :n], z[..., n:]


def _gamma(theta, gamma):
    """gamma as used by the field: the fixed number, or sigmoid(theta['gamma_raw']) (shape (1,))."""
    if gamma is not None:
        return gamma
    if "gamma_raw" not in theta:
        raise ValueError("gamma is learned but theta has no 'gamma_raw' entry (keys: %s)"
                         % ", ".join(map(str, theta)))
    return _sigmoid(theta["gamma_raw"])


def adjoint_rhs(t, h, m, a_h, a_m, theta, activation="tanh", gamma=None):
    """BW Theorem 2 with the sign fixed: returns (da_h/dt, da_m/dt), each (B, n).

        da_h/dt = -a_m J,  J = df/dh = theta2 diag(sigma'(theta1 h + b1)) theta1
        da_m/dt = -a_h + gamma a_m

    from da/dt = -a dF/dz, F(h, m) = (m, -gamma m + f(h)) (BW HBNODE eq. 13). h, m, a_h, a_m:
    (B, n); theta: the field parameters; gamma: the fixed damping, or None to use
    sigmoid(theta['gamma_raw']). t is unused (f is autonomous) and kept for the signature.
    """
    act = activations.get(activation, "hidden")
    g = _gamma(theta, gamma)
    u = h @ theta["theta1"].T + theta["b1"]
    a_m_J = ((a_m @ theta["theta2"]) * act.grad(u, None)) @ theta["theta1"]
    return -a_m_J, -a_h + g * a_m


def gamma_rhs(t, h, m, a_h, a_m):
    """da_gamma/dt = -a . dF/dgamma = -a_m . (-m) = sum over the batch of a_m . m (a 0-d array).

    With a_gamma(T) = 0, dL/dgamma = a_gamma(t0) = -int_{t0}^T (a_m . m) dt.
    """
    return (a_m * m).sum()


class HBNODEField:
    """The HBNODE vector field F(z) = [m, -gamma m + f(h)] on z = [h, m] (BW HBNODE eq. 13).

    Implements the field protocol of :mod:`manualgrad.ode` (``f``, ``vjp``, ``jvp``, ``check``).
    ``activation``: sigma by name (:mod:`manualgrad.activations`). ``learn_gamma=False`` uses
    the fixed ``gamma`` (a number >= 0); ``learn_gamma=True`` uses gamma = sigmoid(theta
    ['gamma_raw']) and ``gamma`` is ignored.
    """

    def __init__(self, activation="tanh", learn_gamma=False, gamma=0.5):
        self.act = activations.get(activation, "hidden")
        self.activation = self.act.name
        if not isinstance(learn_gamma, bool):
            raise TypeError("learn_gamma must be True or False, got %r" % (learn_gamma,))
        self.learn_gamma = learn_gamma
        self.gamma = None if learn_gamma else number(gamma, "gamma", minimum=0.0)

    def __repr__(self):
        g = "sigmoid(gamma_raw)" if self.learn_gamma else repr(self.gamma)
        return "HBNODEField(activation=%r, gamma=%s)" % (self.activation, g)

    @property
    def names(self):
        """The parameter names the field uses."""
        return FIELD_NAMES + (("gamma_raw",) if self.learn_gamma else ())

    def gamma_of(self, theta):
        """gamma: the fixed float, or sigmoid(theta['gamma_raw']) (array of shape (1,))."""
        return _gamma(theta, self.gamma)

    # -- validation (called once per solve by manualgrad.ode) ----------------------------------
    def check(self, theta, z0=None):
        """Validate the field's parameters (and z0 (B, 2n) if given); theta on the backend.

        Other keys of ``theta`` (a readout, say) pass through unchanged.
        """
        if not hasattr(theta, "keys") or "theta1" not in theta:
            params_mapping(theta, self.names, {k: (None,) for k in self.names}, "the HBNODE field")
        try:
            H, n = theta["theta1"].shape
        except (AttributeError, ValueError):
            H = n = None
        shapes = {"theta1": (H, n), "b1": (H,), "theta2": (n, H), "b2": (n,), "gamma_raw": (1,)}
        out = dict(theta)
        out.update(params_mapping(theta, self.names, {k: shapes[k] for k in self.names},
                                  "the HBNODE field"))
        if z0 is not None:
            z0 = float_array(z0, "z0", ndim=2, axes=("B", "2n"))
            if n is not None and z0.shape[1] != 2 * n:
                raise ValueError("z0 = [h0, m0] must have 2n = %d columns (theta1 has n = %d "
                                 "columns), got shape %s" % (2 * n, n, tuple(z0.shape)))
        return out

    # -- the field and its derivatives ---------------------------------------------------------
    def _pre(self, h, theta):
        return h @ theta["theta1"].T + theta["b1"]

    def _gamma_into(self, theta, ws):
        """gamma for :meth:`f_into`/:meth:`vjp_into`: the fixed float, or sigmoid(gamma_raw)
        computed into an array (1,) from workspace ``ws`` (None: a new one)."""
        if self.gamma is not None:
            return self.gamma
        if "gamma_raw" not in theta:
            return _gamma(theta, None)  # raises, naming the missing key
        xp = backend.xp()
        x = theta["gamma_raw"]
        g = xp.multiply(x, 0.5, out=backend.empty(tuple(x.shape), x.dtype, ws, "hbnode.gamma"))
        g = xp.tanh(g, out=g)
        g += 1.0
        g *= 0.5  # 0.5 (1 + tanh(x / 2)) = sigmoid(x), as _sigmoid computes it
        return g

    def f(self, t, z, theta):
        """dz/dt = [m, -gamma m + theta2 sigma(theta1 h + b1) + b2], shape (B, 2n) (BW eq. 13)."""
        return self.f_into(t, z, theta)

    def f_into(self, t, z, theta, out=None, ws=None):
        """:meth:`f` written into ``out`` (B, 2n) (None: a new array); returns it. Temporaries
        come from workspace ``ws`` (None: fresh arrays)."""
        xp = backend.xp()
        th1, th2 = theta["theta1"], theta["theta2"]
        h, m = split(z)
        B, n, H = z.shape[0], th2.shape[0], th1.shape[0]
        dt = _solvers.result_dtype(z, th1)
        g = self._gamma_into(theta, ws)
        u, s, fh, gm = _solvers.temporaries(ws, "hbnode.f", ((B, H), (B, H), (B, n), (B, n)), dt)
        u = xp.matmul(h, th1.T, out=u)
        u += theta["b1"]
        s = self.act.f_into(u, s)
        fh = xp.matmul(s, th2.T, out=fh)
        fh += theta["b2"]  # f(h) = theta2 sigma(theta1 h + b1) + b2
        if out is None:
            out = backend.empty((B, 2 * n), dt)
        out[:, :n] = m  # dh/dt = m
        xp.subtract(fh, xp.multiply(m, g, out=gm), out=out[:, n:])  # dm/dt = f(h) - gamma m
        return out

    def f_h(self, t, h, theta):
        """f(h) = theta2 sigma(theta1 h + b1) + b2, (B, n): the force of BW HBNODE eq. (12)."""
        return self.act.f(self._pre(h, theta)) @ theta["theta2"].T + theta["b2"]

    def vjp(self, t, z, theta, a):
        """(a dF/dz, {name: sum_b a dF/dtheta}) for rows a = [a_h, a_m] (B, 2n).

        a dF/dz = [a_m J, a_h - gamma a_m] (so da/dt = -this is BW Theorem 2, sign fixed);
        with delta = (a_m theta2) o sigma'(u): d/dtheta1 = delta^T h, d/db1 = sum_b delta,
        d/dtheta2 = a_m^T sigma(u), d/db2 = sum_b a_m, d/dgamma = -sum_b a_m . m and
        d/dgamma_raw = d/dgamma * gamma (1 - gamma). Parameters f does not use get exact zeros.
        """
        return self.vjp_into(t, z, theta, a)

    def vjp_into(self, t, z, theta, a, out_z=None, out_theta=None, ws=None):
        """:meth:`vjp` written into ``out_z`` (B, 2n) and ``out_theta`` ({name: array} for every
        key of theta; None: new arrays, each in its parameter's dtype); returns them.
        Temporaries come from workspace ``ws`` (None: fresh arrays)."""
        xp = backend.xp()
        th1, th2 = theta["theta1"], theta["theta2"]
        h, m = split(z)
        a_h, a_m = split(a)
        B, n, H = z.shape[0], th2.shape[0], th1.shape[0]
        dt = _solvers.result_dtype(z, th1)
        g = self._gamma_into(theta, ws)
        u, s, delta, sp, a_m_J, gam, a_m_m, d_gamma = _solvers.temporaries(
            ws, "hbnode.vjp", ((B, H),) * 4 + ((B, n),) * 3 + ((),), dt)
        u = xp.matmul(h, th1.T, out=u)
        u += theta["b1"]
        s = self.act.f_into(u, s)
        delta = xp.matmul(a_m, th2, out=delta)
        delta *= self.act.grad_into(u, s, sp)  # delta = (a_m theta2) o sigma'(u)
        if out_z is None:
            out_z = backend.empty((B, 2 * n), dt)
        out_z[:, :n] = xp.matmul(delta, th1, out=a_m_J)
        xp.subtract(a_h, xp.multiply(a_m, g, out=gam), out=out_z[:, n:])
        # a dF/dz = [a_m J, a_h - gamma a_m]
        if out_theta is None:
            out_theta = {k: backend.empty(tuple(v.shape), v.dtype) for k, v in theta.items()}
        for k, v in out_theta.items():
            if k not in FIELD_NAMES and (k != "gamma_raw" or not self.learn_gamma):
                v.fill(0)  # keys the field does not use get exact zeros
        xp.matmul(delta.T, h, out=out_theta["theta1"])
        delta.sum(axis=0, out=out_theta["b1"])
        xp.matmul(a_m.T, s, out=out_theta["theta2"])
        a_m.sum(axis=0, out=out_theta["b2"])
        if self.learn_gamma:
            a_m_m = xp.multiply(a_m, m, out=a_m_m)
            d_gamma = xp.negative(a_m_m.sum(out=d_gamma), out=d_gamma)
            # dL/dgamma = -sum_b a_m . m
            r = xp.multiply(d_gamma, g, out=out_theta["gamma_raw"])
            r *= xp.subtract(1.0, g, out=backend.empty(tuple(g.shape), g.dtype, ws,
                                                       "hbnode.one_minus_gamma"))
        return out_z, out_theta

    def jvp(self, t, z, theta, v):
        """(dF/dz) v = [v_m, J v_h - gamma v_m], (B, 2n), for tangents v = [v_h, v_m]."""
        h, _ = split(z)
        v_h, v_m = split(v)
        g = self.gamma_of(theta)
        u = self._pre(h, theta)
        Jv = ((v_h @ theta["theta1"].T) * self.act.grad(u, None)) @ theta["theta2"].T
        return backend.xp().concatenate([v_m, Jv - g * v_m], axis=1)

    def jac(self, t, z, theta):
        """X-IMPL: dF/dz = [[0, I], [J(h), -gamma I]] per example, (B, 2n, 2n), J = df/dh
        (:meth:`jacobian`): the Newton matrix of the implicit solvers (manualgrad.ode.implicit)."""
        xp = backend.xp()
        h, _ = split(z)
        B, n = h.shape
        g = self.gamma_of(theta)
        eye = xp.eye(n, dtype=z.dtype)
        out = xp.zeros((B, 2 * n, 2 * n), dtype=z.dtype)
        out[:, :n, n:] = eye  # dh/dt = m
        out[:, n:, :n] = self.jacobian(t, h, theta)  # d(f(h) - gamma m)/dh
        out[:, n:, n:] = -g * eye  # -gamma I (gamma a float, or (1,) when learned)
        return out

    # -- second order (X-NODE-HVP) ----------------------------------------------------------------
    def _gamma_dot(self, theta, dtheta):
        """(gamma, gamma_dot): gamma_dot = gamma (1 - gamma) dgamma_raw when learned, else 0."""
        g = self.gamma_of(theta)
        return (g, g * (1.0 - g) * dtheta["gamma_raw"]) if self.learn_gamma else (g, 0.0)

    def tangent(self, t, z, theta, dz, dtheta):
        """X-NODE-HVP: F_dot = d/de F(z + e dz, theta + e dtheta) at e = 0, (B, 2n)::

            u_dot = dh theta1^T + h dtheta1^T + db1
            F_dot = [dm, (sigma'(u) o u_dot) theta2^T + sigma(u) dtheta2^T + db2
                         - gamma dm - gamma_dot m]
        """
        (h, m), (dh, dm) = split(z), split(dz)
        g, g_dot = self._gamma_dot(theta, dtheta)
        u = self._pre(h, theta)
        s = self.act.f(u)
        u_dot = dh @ theta["theta1"].T + h @ dtheta["theta1"].T + dtheta["b1"]
        f_dot = (self.act.grad(u, s) * u_dot) @ theta["theta2"].T + s @ dtheta["theta2"].T \
            + dtheta["b2"]
        return backend.xp().concatenate([dm, f_dot - g * dm - g_dot * m], axis=1)

    def vjp_jvp(self, t, z, theta, a, dz, dtheta):
        """X-NODE-HVP: the tangent of :meth:`vjp` along (dz, dtheta) with the row a held fixed.

        Returns ``(d/de [a dF/dz], {name: d/de [sum_b a dF/dtheta[name]]})``; with
        delta = (a_m theta2) o sigma'(u) as in :meth:`vjp`::

            delta_dot       = (a_m dtheta2) o sigma'(u) + (a_m theta2) o sigma''(u) o u_dot
            (a dF/dz)_dot   = [delta_dot theta1 + delta dtheta1, -gamma_dot a_m]
            dtheta1_dot     = sum_b [delta_dot^T h + delta^T dh]     db1_dot = sum_b delta_dot
            dtheta2_dot     = sum_b a_m^T (sigma'(u) o u_dot)        db2_dot = 0
            dgamma_raw_dot  = -gamma (1 - gamma) [sum_b a_m . dm
                                                  + (1 - 2 gamma) dgamma_raw sum_b a_m . m]
        """
        (h, m), (dh, dm), (_, a_m) = split(z), split(dz), split(a)
        g, g_dot = self._gamma_dot(theta, dtheta)
        u = self._pre(h, theta)
        s = self.act.f(u)
        sp, w = self.act.grad(u, s), a_m @ theta["theta2"]
        u_dot = dh @ theta["theta1"].T + h @ dtheta["theta1"].T + dtheta["b1"]
        delta = w * sp
        delta_dot = (a_m @ dtheta["theta2"]) * sp + w * self.act.grad2(u, s) * u_dot
        out = {k: backend.xp().zeros(tuple(v.shape), dtype=v.dtype) for k, v in theta.items()}
        out["theta1"] = delta_dot.T @ h + delta.T @ dh
        out["b1"] = delta_dot.sum(axis=0)
        out["theta2"] = a_m.T @ (sp * u_dot)
        if self.learn_gamma:
            out["gamma_raw"] = -g * (1.0 - g) * ((a_m * dm).sum() + (1.0 - 2.0 * g)
                                                 * dtheta["gamma_raw"] * (a_m * m).sum())
        a_z = backend.xp().concatenate([delta_dot @ theta["theta1"] + delta @ dtheta["theta1"],
                                        -g_dot * a_m], axis=1)
        return a_z, out

    def adjoint_rhs(self, t, h, m, a_h, a_m, theta):
        """BW Theorem 2, sign fixed, with this field's sigma and gamma (:func:`adjoint_rhs`)."""
        return adjoint_rhs(t, h, m, a_h, a_m, theta, self.act, self.gamma_of(theta))

    # -- BW Theorem 3 ---------------------------------------------------------------------------
    def jacobian(self, t, h, theta):
        """J = df/dh = theta2 diag(sigma'(u)) theta1 per example, (B, n, n) (column convention)."""
        d = self.act.grad(self._pre(h, theta), None)
        return (theta["theta2"][None, :, :] * d[:, None, :]) @ theta["theta1"]

    def a_J(self, t, h, a, theta):
        """Rows a J(h) = ((a theta2) o sigma'(u)) theta1, (B, n)."""
        return ((a @ theta["theta2"]) * self.act.grad(self._pre(h, theta), None)) @ theta["theta1"]

    def a_Jdot(self, t, h, m, a, theta):
        """Rows a dJ/dt along the flow dh/dt = m: ((a theta2) o sigma''(u) o (theta1 m)) theta1."""
        u = self._pre(h, theta)
        return ((a @ theta["theta2"]) * self.act.grad2(u, None) * (m @ theta["theta1"].T)) \
            @ theta["theta1"]

    def theorem3_residuals(self, ts, zs, as_, theta):
        """BW Theorem 3 on a recorded adjoint trajectory, by central differences in time.

        ts: K >= 3 equally spaced times (either direction); zs, as_: states z = [h, m] and
        adjoints a = [a_h, a_m] at those times, each (B, 2n) on the backend; theta: the field's
        parameters (validated and moved to the backend by :meth:`check`). Returns a dict of
        (K-2, B, n) host arrays at the interior times::

            "m": a_m'' - gamma a_m' - a_m J      (BW eq. 15 for a_m: -> 0 as the step shrinks)
            "h": a_h'' - gamma a_h' - a_h J      (BW eq. 15 for a_h: -> -a_m dJ/dt, not 0)
            "h_corrected": the "h" residual + a_m dJ/dt   (-> 0)

        with a' = (a_{k+1} - a_{k-1}) / (t_{k+1} - t_{k-1}) and a'' = (a_{k+1} - 2 a_k +
        a_{k-1}) / dt^2, both O(dt^2) accurate.
        """
        np = backend.np
        ts = np.asarray([float(s) for s in ts])
        K = ts.size
        if K < 3 or len(zs) != K or len(as_) != K:
            raise ValueError("theorem3_residuals: need K >= 3 times with a state and an adjoint "
                             "each; got %d times, %d states, %d adjoints" % (K, len(zs), len(as_)))
        dt = np.diff(ts)
        if np.abs(dt - dt[0]).max() > 1e-9 * abs(dt[0]):
            raise ValueError("theorem3_residuals: the times must be equally spaced")
        theta = self.check(theta)
        g = self.gamma_of(theta)
        g = float(backend.to_numpy(g).reshape(-1)[0]) if backend.is_array(g) else g
        out = {"m": [], "h": [], "h_corrected": []}
        for k in range(1, K - 1):
            h, m = split(zs[k])
            a = as_[k]
            d1 = (as_[k + 1] - as_[k - 1]) / (ts[k + 1] - ts[k - 1])
            d2 = (as_[k + 1] - 2.0 * a + as_[k - 1]) / dt[0] ** 2
            r = d2 - g * d1
            r_h, r_m = split(r)
            a_h, a_m = split(a)
            res_h = r_h - self.a_J(ts[k], h, a_h, theta)
            out["m"].append(backend.to_numpy(r_m - self.a_J(ts[k], h, a_m, theta)))
            out["h"].append(backend.to_numpy(res_h))
            out["h_corrected"].append(backend.to_numpy(res_h + self.a_Jdot(ts[k], h, m, a_m,
                                                                             theta)))
        return {k: np.stack(v) for k, v in out.items()}


def init_params(n, H, seed=0, learn_gamma=False, gamma0=0.5, scale=None, bias_scale=0.0,
                l=None, dtype=None):
    """Random HBNODE parameters: theta1 (H, n), b1 (H,), theta2 (n, H), b2 (n,) [gamma_raw (1,)].

    Weights N(0, s^2) with s = ``scale`` or 1/sqrt(fan_in) (n for theta1, H for theta2); biases
    N(0, bias_scale^2). With ``learn_gamma``, gamma_raw = logit(gamma0) so that
    sigmoid(gamma_raw) = gamma0 in (0, 1). ``l``: also a readout W_out (l, n), b_out (l,) on
    h(T) (s = 1/sqrt(n)), as in :func:`manualgrad.ode.node.init_params`. Drawn on the host from
    ``default_rng(seed)`` in the order theta1, b1, theta2, b2, W_out, b_out (so the field
    parameters equal node.init_params(n, H, seed)'s).
    """
    n = positive_int(n, "n")
    H = positive_int(H, "H")
    l = positive_int(l, "l") if l is not None else None
    rng = backend.host_rng(seed)

    def std(fan_in):
        return 1.0 / math.sqrt(fan_in) if scale is None else number(scale, "scale", minimum=0.0)

    bias_scale = number(bias_scale, "bias_scale", minimum=0.0)
    P = {
        "theta1": backend.randn((H, n), rng=rng, scale=std(n), dtype=dtype),
        "b1": backend.randn((H,), rng=rng, scale=bias_scale, dtype=dtype),
        "theta2": backend.randn((n, H), rng=rng, scale=std(H), dtype=dtype),
        "b2": backend.randn((n,), rng=rng, scale=bias_scale, dtype=dtype),
    }
    if learn_gamma:
        g0 = number(gamma0, "gamma0")
        if not 0.0 < g0 < 1.0:
            raise ValueError("gamma0 must lie in (0, 1) when gamma is learned as "
                             "sigmoid(gamma_raw), got %r" % (gamma0,))
        P["gamma_raw"] = backend.asarray(backend.np.array([math.log(g0 / (1.0 - g0))]), dtype)
    if l is not None:
        P["W_out"] = backend.randn((l, n), rng=rng, scale=1.0 / math.sqrt(n), dtype=dtype)
        P["b_out"] = backend.randn((l,), rng=rng, scale=bias_scale, dtype=dtype)
    return P


# ============================================================================ loss and gradients
def _field_for(field, activation, gamma, learn_gamma, params):
    if field is not None:
        return field
    if learn_gamma is None:
        learn_gamma = hasattr(params, "keys") and "gamma_raw" in params
    return HBNODEField(activation, learn_gamma, gamma)


def _state(h0, m0, ws=None):
    """z0 = [h0, m0] (B, 2n); m0 None means zeros (the HBNODE authors' default). From workspace
    ``ws`` (None: a new array)."""
    h0 = float_array(h0, "h0", ndim=2, axes=("B", "n"))
    if m0 is not None:
        m0 = float_array(m0, "m0", ndim=2, axes=("B", "n"))
        if tuple(m0.shape) != tuple(h0.shape):
            raise ValueError("m0 must have the shape of h0 %s (B, n), got %s"
                             % (tuple(h0.shape), tuple(m0.shape)))
    B, n = h0.shape
    dt = h0.dtype if m0 is None else backend.xp().result_type(h0.dtype, m0.dtype)
    z0 = backend.empty((B, 2 * n), dt, ws, "hbnode.z0")
    z0[:, :n] = h0
    if m0 is None:
        z0[:, n:] = 0.0
    else:
        z0[:, n:] = m0
    return z0


class Position:
    """The HBNODE's state packing (:class:`manualgrad.ode.gradient.Whole` for the protocol): the
    loss reads h of z = [h, m], so h = z[:, :n] and dF/dz(T) = [dF/dh(T), 0] (BW HBNODE eq. 13:
    m enters the loss only through the dynamics)."""

    def observe(self, z):
        return split(z)[0]

    def cotangent(self, a_h, z):
        _, m = split(z)
        xp = backend.xp()
        return xp.concatenate([a_h, xp.zeros_like(m)], axis=1)  # L reads h only

    def __repr__(self):
        return "Position()"


POSITION = Position()


def check_params(params, z0, field):
    """Validate the field parameters (``field.check``) and the readout W_out (l, n), b_out (l,)."""
    P = field.check(params, z0) if hasattr(field, "check") else dict(params)
    return _gradient.check_readout(params, P, z0.shape[1] // 2)


def forward(params, h0, m0=None, t0=0.0, t1=1.0, solver="rk4", steps=None, h=None, rtol=1e-6,
            atol=1e-8, max_steps=10_000, activation="tanh", gamma=0.5, learn_gamma=None,
            field=None, grid=None, record=True):
    """Solve the HBNODE (BW eq. 13) from z0 = [h0, m0]; a :class:`~manualgrad.ode.solvers.Solution`.

    h0, m0: (B, n) (m0 None: zeros). ``learn_gamma=None``: True iff params has ``gamma_raw``;
    otherwise gamma is the fixed ``gamma``. ``grid``: step over this host grid with ``solver``
    (``odeint_grid``; replays e.g. a dopri5 solve's ``info["ts"]``). The Solution's arrays are
    the caller's own (no workspace: it returns the trajectory).
    """
    fld = _field_for(field, activation, gamma, learn_gamma, params)
    z0 = _state(h0, m0)
    P = check_params(params, z0, fld)
    return _solvers.solve(fld, z0, P, t0, t1, solver, steps, h, rtol, atol, max_steps,
                          grid=grid, record=record)


def loss(params, h0, m0, y, t0=0.0, t1=1.0, solver="rk4", steps=None, h=None, rtol=1e-6,
         atol=1e-8, max_steps=10_000, activation="tanh", gamma=0.5, learn_gamma=None,
         output="identity", loss="mse", field=None, grid=None, workspace=True):
    """F = batch mean of head(readout(h(T)), y) (forward only; what finite differences check).

    Arguments as in :func:`loss_and_grad` (``workspace``: where z0 and the solver's states and
    stages live; F is the caller's own).
    """
    fld = _field_for(field, activation, gamma, learn_gamma, params)
    with backend.workspace_scope(workspace) as ws:
        z0 = _state(h0, m0, ws)
        P = check_params(params, z0, fld)
        sol = _solvers.solve(fld, z0, P, t0, t1, solver, steps, h, rtol, atol, max_steps,
                             grid=grid, record=False, ws=ws)
        return _gradient.head_loss(P, POSITION.observe(sol.z1), y, output, loss)


def loss_and_grad(params, h0, m0, y, t0=0.0, t1=1.0, solver="rk4", steps=None, h=None,
                  method="discrete", rtol=1e-6, atol=1e-8, max_steps=10_000, activation="tanh",
                  gamma=0.5, learn_gamma=None, output="identity", loss="mse", field=None,
                  adjoint_solver=None, adjoint_steps=None, adjoint_rtol=None,
                  adjoint_atol=None, workspace=True, checkpoints=None):
    """``(F, grads, info)``: a loss on h(T) of the HBNODE and its gradient, two ways.

    A thin wrapper of :func:`manualgrad.ode.gradient.loss_and_grad` with the state packing
    :data:`POSITION` (the loss reads h of z = [h, m]): the same head, readout and methods as
    :func:`manualgrad.ode.node.loss_and_grad`.

    Parameters
    ----------
    params : theta1 (H, n), b1 (H,), theta2 (n, H), b2 (n,), gamma_raw (1,) when gamma is
        learned, and an optional readout W_out (l, n), b_out (l,) acting on h(T).
    h0, m0 : (B, n) initial position and velocity (m0 None: zeros); z0 = [h0, m0].
    y : targets for the head.
    t0, t1, solver, steps, h, rtol, atol, max_steps : the forward solve.
    method : 'discrete' (exact gradient of the computed solution) or 'continuous' (BW
        Theorem 1 on z = [h, m]: the adjoint system of BW Theorem 2 with the sign fixed,
        integrated backward with ``adjoint_solver``/``adjoint_steps``/... as in node), or
        'checkpointed' (X-CKPT: the discrete gradient from ``checkpoints`` stored states).
    checkpoints : 'checkpointed' only, required there: the number c >= 1 of states z = [h, m]
        stored at once (z0 included), as in node.loss_and_grad.
    activation, gamma, learn_gamma, field : the field, HBNODEField(activation, learn_gamma,
        gamma) unless given; learn_gamma None means "params has gamma_raw".
    output, loss : the head (default identity + mse).
    workspace : where z0, the solves' states, stages and adjoints and the field's temporaries
        live between calls (a :class:`~manualgrad.backend.Workspace`; True: the calling
        thread's default; False: fresh arrays), as in node.loss_and_grad. F, grads and every
        array of info are always the caller's own; bit for bit the same numbers either way.

    Returns
    -------
    F : 0-d array.  grads : {name: dF/dparams[name]} for every key of params (gamma_raw
    included: dF/dgamma * gamma (1 - gamma); exact zeros for keys the field ignores).
    info : ``grad_h0``, ``grad_m0`` (B, n) = dF/dh0, dF/dm0; ``grad_z0`` (B, 2n); ``hT``,
    ``mT``; ``aT`` = dF/dz(T) (B, 2n); ``gamma`` (float); ``grad_gamma`` = dF/dgamma (float,
    when gamma is learned: the gamma_raw gradient / (gamma (1 - gamma)); else None); NFE and
    step counts, ``ts``, ``method``, ``solver`` (and the checkpoint schedule of
    'checkpointed') as in node.loss_and_grad.

    Raises FloatingPointError when the state, the adjoint or the loss is no longer finite.
    """
    _gradient.check_method(method)
    _gradient.check_checkpoints(checkpoints, method)
    base = _field_for(field, activation, gamma, learn_gamma, params)
    with backend.workspace_scope(workspace) as ws:
        z0 = _state(h0, m0, ws)
        P = check_params(params, z0, base)
        F, grads, g = _gradient.loss_and_grad(
            base, z0, P, y, t0, t1, solver, steps, h, method, rtol, atol, max_steps, output,
            loss, adjoint_solver, adjoint_steps, adjoint_rtol, adjoint_atol, POSITION, ws,
            checkpoints=checkpoints)
    a0, zT = g["grad_z0"], g["zT"]
    hT, mT = split(zT)
    g_val = base.gamma_of(P)
    g_val = float(backend.to_numpy(g_val).reshape(-1)[0]) if backend.is_array(g_val) else g_val
    n = hT.shape[1]
    grad_gamma = None
    if "gamma_raw" in grads and getattr(base, "learn_gamma", False):
        grad_gamma = float(backend.to_numpy(grads["gamma_raw"]).reshape(-1)[0]) / (
            g_val * (1.0 - g_val))
    info = {"grad_h0": a0[:, :n], "grad_m0": a0[:, n:], "grad_z0": a0, "hT": hT, "mT": mT,
            "aT": g["aT"], "gamma": g_val, "grad_gamma": grad_gamma,
            "nfe_forward": g["nfe_forward"], "nfe_backward": g["nfe_backward"],
            "nvjp_backward": g["nvjp_backward"], "steps_forward": g["steps_forward"],
            "steps_backward": g["steps_backward"], "ts": g["ts"], "method": g["method"],
            "solver": g["solver"], "solve": g["solve"]}  # X-IMPL: step sizes, rejections
    info.update({k: g[k] for k in _gradient.METHODS[method].info_keys})
    return F, grads, info


# ============================================================================ X-NODE-HVP
def hvp(params, h0, m0, y, v, t0=0.0, t1=1.0, solver="rk4", steps=None, h=None, rtol=1e-6,
        atol=1e-8, max_steps=10_000, activation="tanh", gamma=0.5, learn_gamma=None,
        output="identity", loss="mse", field=None):
    """``(F, grads, hv, info)``: the HBNODE loss, its gradient and the Hessian-vector product
    H v through the discrete solve (X-NODE-HVP; :func:`manualgrad.ode.hvp.hvp` with the state
    packing :data:`POSITION`, docs/hbnode.md).

    H is the Hessian of the F of :func:`loss_and_grad` (``method="discrete"``; dopri5 on its
    accepted grid) in the parameters, gamma_raw included when gamma is learned
    (:meth:`HBNODEField.tangent`, :meth:`HBNODEField.vjp_jvp`). Plain allocations, no workspace.

    Parameters
    ----------
    params, h0, m0, y, t0, t1, solver, steps, h, rtol, atol, max_steps, activation, gamma,
    learn_gamma, output, loss, field : as in :func:`loss_and_grad`.
    v : the direction, a mapping with every key of params, each a finite float array of its
        parameter's shape; optionally ``"h0"`` and/or ``"m0"`` (B, n), directions of the
        initial state (a missing one is zero: that part of the state is data).

    Returns
    -------
    F : 0-d array.  grads : dF/dparams.  hv : {name: (H v)[name]} for every key of v.
    info : ``grad_h0``, ``grad_m0`` and their tangents ``grad_h0_dot``, ``grad_m0_dot`` (B, n);
        ``hT``, ``mT``, ``zT_dot`` (B, 2n), ``aT``, ``aT_dot``, ``o_dot``, ``gamma``,
        ``steps_forward``, ``ts``, ``solver`` and the counts of :func:`manualgrad.ode.hvp.hvp`.
    """
    fld = _field_for(field, activation, gamma, learn_gamma, params)
    z0 = _state(h0, m0)
    P = check_params(params, z0, fld)
    B, n = z0.shape[0], z0.shape[1] // 2
    v = _hvp.check_direction(P, v, {"h0": (B, n), "m0": (B, n)}, "hbnode.hvp")
    z0_dot = None
    if "h0" in v or "m0" in v:
        z0_dot = backend.xp().zeros_like(z0)
        for key, part in (("h0", slice(0, n)), ("m0", slice(n, 2 * n))):
            if key in v:
                z0_dot[:, part] = v[key]
    F, grads, hv, g = _hvp.hvp(fld, z0, P, y, v, z0_dot, t0, t1, solver, steps, h, rtol, atol,
                               max_steps, output, loss, POSITION, where="hbnode.hvp")
    a0, a0_dot = g["grad_z0"], g["grad_z0_dot"]
    for key, part in (("h0", slice(0, n)), ("m0", slice(n, 2 * n))):
        if key in v:
            hv[key] = a0_dot[:, part]
    hT, mT = split(g["zT"])
    g_val = fld.gamma_of(P) if hasattr(fld, "gamma_of") else None
    if backend.is_array(g_val):
        g_val = float(backend.to_numpy(g_val).reshape(-1)[0])
    info = {"grad_h0": a0[:, :n], "grad_m0": a0[:, n:], "grad_h0_dot": a0_dot[:, :n],
            "grad_m0_dot": a0_dot[:, n:], "hT": hT, "mT": mT, "zT_dot": g["zT_dot"],
            "aT": g["aT"], "aT_dot": g["aT_dot"], "o_dot": g["o_dot"], "gamma": g_val,
            "steps_forward": g["steps_forward"], "ts": g["ts"], "solver": g["solver"],
            "nfe_forward": g["nfe_forward"], "nfe_hvp": g["nfe_hvp"], "ntangent": g["ntangent"],
            "nvjp": g["nvjp"], "nvjp_jvp": g["nvjp_jvp"]}
    return F, grads, hv, info
