"""Hessian-vector products through an ODE solve (X-NODE-HVP): tangent sweep, second-order adjoint.

What is differentiated is what :func:`manualgrad.ode.gradient.loss_and_grad` computes with
``method="discrete"``: the explicit Runge-Kutta steps of the solver (``solvers.SOLVERS``: euler,
midpoint, rk4, any :class:`~manualgrad.ode.solvers.Tableau`; dopri5 on its accepted grid, the
step sizes held fixed as the discrete adjoint holds them), the readout and the head::

    Z_i = z_k + h sum_{j<i} A_ij K_j,   K_i = f(t_k + c_i h, Z_i, theta),   i = 1..s
    z_{k+1} = z_k + h sum_i b_i K_i                                      k = 0..N-1
    h(T) = packing.observe(z_N),   o = h(T) W_out^T + b_out,   F = mean_b head(o_b, y_b)

H v = d/de [dF/dP](P + e v) at e = 0, P the field's parameters theta and the readout, v a
direction like P (and, optionally, a direction z0_dot of the initial state). Forward-over-reverse,
written out by hand as :func:`manualgrad.rnn.hvp` does for the RNN (docs/hvp.md); a dot is
d/de at e = 0. The adjoint is a row a = +dF/dz (docs/ode.md, not JP's negative):

1. forward solve (recorded, :func:`~manualgrad.ode.solvers.solve`), as ``method="discrete"``;
2. tangent sweep forward in time, the tangent of one step (:func:`step_tangent`)::

       Z_dot_i = z_dot_k + h sum_{j<i} A_ij K_dot_j,
       K_dot_i = J(Z_i) Z_dot_i + df/dtheta(Z_i) theta_dot = field.tangent(t_i, Z_i, theta,
                                                                          Z_dot_i, theta_dot)
       z_dot_{k+1} = z_dot_k + h sum_i b_i K_dot_i

3. the head and its tangent (:func:`head_tangent`): dF/do = -delta_out / B and
   (dF/do)_dot = (1/B) d^2F_b/do^2 o_dot (``losses.Head.hvp``), o_dot = h_dot W_out^T +
   h W_out_dot^T + b_out_dot; a(T) and a_dot(T) from ``packing.cotangent``;
4. the first- and second-order adjoint sweeps backward in time together, the tangent of the
   discrete adjoint's step (:func:`step_adjoint`), i = s..1::

       Kbar_i     = h (b_i a' + sum_{l>i} A_li Zbar_l)
       Kbar_dot_i = h (b_i a_dot' + sum_{l>i} A_li Zbar_dot_l)
       (Zbar_i, gbar_i)         = field.vjp(t_i, Z_i, theta, Kbar_i)
       (Zbar_dot_i, gbar_dot_i) = field.vjp(t_i, Z_i, theta, Kbar_dot_i)
                                  + field.vjp_jvp(t_i, Z_i, theta, Kbar_i, Z_dot_i, theta_dot)
       a_k = a' + sum_i Zbar_i,     a_dot_k = a_dot' + sum_i Zbar_dot_i
       dF/dtheta += sum_i gbar_i,   (H v)_theta += sum_i gbar_dot_i

   (a' = a_{k+1}); a_dot_0 is (H v) in the initial state, the tangent of dF/dz0.

A field offers the two second-order methods besides ``f`` and ``vjp``:
``tangent(t, z, theta, dz, dtheta) -> (B, n)`` (the tangent of f) and
``vjp_jvp(t, z, theta, a, dz, dtheta) -> (d/de [a df/dz], {name: d/de [a df/dtheta]})`` with
the row a held fixed (:class:`~manualgrad.ode.node.NODEField`,
:class:`~manualgrad.ode.node.LinearField`, :class:`~manualgrad.ode.hbnode.HBNODEField`).

Memory: the stage states Z_i and their tangents Z_dot_i of every step are kept from the tangent
sweep for the backward one, 2 s N arrays (B, n), plain allocations (no workspace: an HVP is a
diagnostic, not the inner loop of training). Cost per step: s - 1 evaluations of f, s of
``tangent``, 2 s of ``vjp`` and s of ``vjp_jvp``. Derivation: docs/ode.md, "Hessian-vector
products through the solver".
"""
from __future__ import annotations

from .. import backend, losses
from .._validate import float_array
from . import gradient as _gradient
from . import solvers as _solvers

__all__ = ["check_field", "check_direction", "step_tangent", "step_adjoint", "head_tangent",
           "hvp"]


# ============================================================================ checks
def check_field(field, where):
    """``field`` has the methods the HVP needs (f, vjp, tangent, vjp_jvp); TypeError otherwise."""
    for m in ("f", "vjp", "tangent", "vjp_jvp"):
        if not callable(getattr(field, m, None)):
            raise TypeError("%s: the field must have methods f, vjp, tangent(t, z, theta, dz, "
                            "dtheta) and vjp_jvp(t, z, theta, a, dz, dtheta) for a Hessian-vector "
                            "product; %s has no %s" % (where, type(field).__name__, m))
    return field


def check_direction(P, v, states, where, name="v"):
    """Validate the direction ``v`` against the validated parameters ``P``; return it (backend).

    ``v`` must be a mapping with every key of P (the field's parameters and the readout), each a
    finite float array of that parameter's shape, and may hold the initial-state keys of
    ``states`` ({name: shape}, e.g. {"h0": (B, n)}). ValueError/TypeError naming the key.
    """
    if not hasattr(v, "keys"):
        raise TypeError("%s: %s must be a mapping like params with keys %s, got %s"
                        % (where, name, ", ".join(map(str, P)), type(v).__name__))
    missing = [str(k) for k in P if k not in v]
    extra = [str(k) for k in v.keys() if k not in P and k not in states]
    if missing or extra:
        parts = (["missing " + ", ".join(missing)] if missing else []) + \
            (["unexpected " + ", ".join(extra)] if extra else [])
        raise ValueError("%s: %s must have the keys of params (%s)%s: %s"
                         % (where, name, ", ".join(map(str, P)),
                            " and optionally " + ", ".join(states) if states else "",
                            "; ".join(parts)))
    out = {}
    for k in list(P) + [s for s in states if s in v]:
        want = tuple(states[k]) if k in states else tuple(getattr(P[k], "shape", ()))
        a = float_array(v[k], "%s: %s[%r]" % (where, name, k))
        if tuple(a.shape) != want:
            raise ValueError("%s: %s[%r] has shape %s, expected %s (the shape of %s)"
                             % (where, name, k, tuple(a.shape), want,
                                k if k in states else "params[%r]" % k))
        out[k] = a
    return out


# ============================================================================ one step
def step_tangent(field, t, h, z, z_dot, theta, theta_dot, tab):
    """The tangent of one explicit RK step of ``tab`` from (t, z) with step size h.

    Returns ``(Z, Z_dot, z_dot_new)``: the stage states Z_1..Z_s (Z_1 = z), their tangents and
    z_dot_{k+1} = z_dot + h sum_i b_i K_dot_i (s = ``tab.prop_stages``; K_s itself is not
    needed, the recorded z_{k+1} stands for it). Stage i at time t + c_i h, the solver's own
    expression; Z_i as the discrete adjoint recomputes it (``solvers.lincomb``).
    """
    s, A, b, c = tab.prop_stages, tab.A, tab.b, tab.c
    xp = backend.xp()
    term = xp.empty_like(z)
    Z, K, Z_dot, K_dot = [z], [], [z_dot], []
    for i in range(s):
        if i > 0:
            Z.append(_solvers.lincomb(xp.empty_like(z), z, h, A[i], K, term))
            Z_dot.append(_solvers.lincomb(xp.empty_like(z), z_dot, h, A[i], K_dot, term))
        if i < s - 1:
            K.append(field.f(t + c[i] * h, Z[i], theta))
        K_dot.append(field.tangent(t + c[i] * h, Z[i], theta, Z_dot[i], theta_dot))
    return Z, Z_dot, _solvers.lincomb(xp.empty_like(z), z_dot, h, b[:s], K_dot, term)


def _stage_cotangent(h, bi, a_next, Abar, out, term):
    """h (b_i a' + sum_l A_li Zbar_l) into ``out`` (Abar: [(A_li, Zbar_l)]); None if all vanish."""
    xp = backend.xp()
    kb = None
    if bi != 0:
        kb = xp.multiply(a_next, h * bi, out=out)
    for w, zb in Abar:
        if w != 0 and zb is not None:
            if kb is None:
                kb = xp.multiply(zb, h * w, out=out)
            else:
                kb += xp.multiply(zb, h * w, out=term)
    return kb


def step_adjoint(field, t, h, Z, Z_dot, theta, theta_dot, tab, a_next, a_dot_next, g, g_dot):
    """The discrete adjoint of one step and its tangent (the second-order adjoint), backward.

    ``Z``, ``Z_dot``: the step's stage states and tangents (:func:`step_tangent`); ``a_next``,
    ``a_dot_next``: a' = dF/dz_{k+1} and its tangent. Accumulates dF/dtheta into ``g`` and
    (H v)_theta into ``g_dot`` (dicts like theta) and returns ``(a_k, a_dot_k)``; the equations
    are those of the module docstring, i = s..1 (Kbar_i needs only Zbar_l, l > i).
    """
    s, A, b, c = tab.prop_stages, tab.A, tab.b, tab.c
    xp = backend.xp()
    kb_buf, kbd_buf, term = (xp.empty_like(a_next) for _ in range(3))
    a, a_dot = a_next.copy(), a_dot_next.copy()
    Zbar, Zbar_dot = [None] * s, [None] * s
    for i in range(s - 1, -1, -1):
        later = range(i + 1, s)
        kb = _stage_cotangent(h, b[i], a_next, [(A[l][i], Zbar[l]) for l in later], kb_buf, term)
        if kb is None:  # stage i influences nothing (not so in the registry's tableaux)
            continue
        kbd = _stage_cotangent(h, b[i], a_dot_next, [(A[l][i], Zbar_dot[l]) for l in later],
                               kbd_buf, term)
        ti = t + c[i] * h
        Zbar[i], gi = field.vjp(ti, Z[i], theta, kb)
        zd1, gd1 = field.vjp(ti, Z[i], theta, kbd)
        zd2, gd2 = field.vjp_jvp(ti, Z[i], theta, kb, Z_dot[i], theta_dot)
        Zbar_dot[i] = zd1 + zd2
        for k in g:
            g[k] += gi[k]
            g_dot[k] += gd1[k] + gd2[k]
        a += Zbar[i]
        a_dot += Zbar_dot[i]
    return a, a_dot


# ============================================================================ the head
def head_tangent(P, zT, zT_dot, v, y, output, loss, packing):
    """F, the readout's gradient and H v, and the cotangent a(T) = dF/dz(T) with its tangent.

    o = h W_out^T + b_out (o = h without W_out), h = packing.observe(z(T))::

        dF/do       = -delta_out / B                     (B, l)   (head.delta_out)
        (dF/do)_dot = (1/B) d^2F_b/do^2 o_dot            (head.hvp)
        o_dot       = h_dot W_out^T + h W_out_dot^T + b_out_dot
        dF/dW_out = (dF/do)^T h,  (H v)_W_out = (dF/do)_dot^T h + (dF/do)^T h_dot
        dF/db_out = sum_b dF/do,  (H v)_b_out = sum_b (dF/do)_dot
        a_h = dF/do W_out,  a_h_dot = (dF/do)_dot W_out + dF/do W_out_dot

    Returns ``(F, grads, hv, aT, aT_dot, o_dot)`` (grads, hv: the readout keys of P).
    """
    hT, hT_dot = packing.observe(zT), packing.observe(zT_dot)
    o = _gradient.readout(P, hT)
    head, Y = losses.head_and_targets(output, loss, o, y)
    yo = head.output.f(o)
    B = hT.shape[0]
    F = head.value(o, yo, Y).mean()
    grads, hv = {}, {}
    if "W_out" in P:
        o_dot = hT_dot @ P["W_out"].T + hT @ v["W_out"].T
        if "b_out" in P:
            o_dot = o_dot + v["b_out"]
    else:
        o_dot = hT_dot
    dF_do = head.delta_out(o, yo, Y) * (-1.0 / B)
    dF_do_dot = head.hvp(o, yo, Y, o_dot) * (1.0 / B)
    if "W_out" in P:
        a_h = dF_do @ P["W_out"]
        a_h_dot = dF_do_dot @ P["W_out"] + dF_do @ v["W_out"]
        grads["W_out"] = dF_do.T @ hT
        hv["W_out"] = dF_do_dot.T @ hT + dF_do.T @ hT_dot
        if "b_out" in P:
            grads["b_out"] = dF_do.sum(axis=0)
            hv["b_out"] = dF_do_dot.sum(axis=0)
    else:
        a_h, a_h_dot = dF_do, dF_do_dot
    return F, grads, hv, packing.cotangent(a_h, zT), packing.cotangent(a_h_dot, zT), o_dot


# ============================================================================ entry point
def hvp(field, z0, P, y, v, z0_dot=None, t0=0.0, t1=1.0, solver="rk4", steps=None, h=None,
        rtol=1e-6, atol=1e-8, max_steps=10_000, output="identity", loss="mse",
        packing=_gradient.WHOLE, where="hvp"):
    """``(F, grads, hv, info)``: the loss and gradient of ``gradient.loss_and_grad`` (method
    'discrete') and H v, the Hessian of F in P along ``v`` (X-NODE-HVP).

    Parameters as in :func:`manualgrad.ode.gradient.loss_and_grad` (validated: z0 (B, N), P the
    field's parameters and the readout); ``v`` a validated direction like P
    (:func:`check_direction`); ``z0_dot`` (B, N) the direction of the initial state, or None
    (zero: z0 is data). dopri5 solves adaptively, then the accepted grid is held fixed.

    Returns F (0-d), grads {name: dF/dP[name]} and hv {name: (H v)[name]} for every key of P in
    P's order, and ``info``: ``grad_z0`` = dF/dz0 and ``grad_z0_dot`` = its tangent along
    (v, z0_dot) (= (H v) in z0; the mixed second derivative d^2F/dz0 dP v when z0_dot is None),
    ``zT``, ``zT_dot``, ``hT``, ``aT``, ``aT_dot``, ``o_dot``, ``steps_forward``, ``ts``,
    ``solver``, and the evaluation counts ``nfe_forward``, ``nfe_hvp`` (f in the tangent sweep),
    ``ntangent``, ``nvjp``, ``nvjp_jvp``. Every array is the caller's own (no workspace).
    Raises FloatingPointError when the solve, the tangents or the adjoints are no longer finite.
    """
    field = check_field(field, where)
    if getattr(_solvers.get_solver(solver), "implicit", False):
        raise ValueError("%s: solver %r is implicit; the Hessian-vector product runs through "
                         "explicit Runge-Kutta steps only (%s)"
                         % (where, getattr(solver, "name", solver), ", ".join(_solvers.SOLVERS)))
    fld = _Counting(field)
    sol = _solvers.solve(fld, z0, P, t0, t1, solver, steps, h, rtol, atol, max_steps,
                         record=True)
    nfe_forward, fld.counts["f"] = fld.counts["f"], 0
    tab = _solvers.get_solver(sol.solver)
    theta = {k: x for k, x in P.items() if k not in _gradient.READOUT_NAMES}
    theta_dot = {k: v[k] for k in theta}
    xp = backend.xp()
    with backend.errstate(over="ignore", invalid="ignore"):  # non-finite results raise below
        z_dot = xp.zeros_like(z0) if z0_dot is None else z0_dot
        stages = []
        for k in range(sol.steps):  # tangent sweep, forward in time
            t, hk = sol.ts[k], sol.ts[k + 1] - sol.ts[k]
            Z, Z_dot, z_dot = step_tangent(fld, t, hk, sol.zs[k], z_dot, theta, theta_dot, tab)
            stages.append((Z, Z_dot))
        zT = sol.z1
        F, r_grads, r_hv, aT, aT_dot, o_dot = head_tangent(P, zT, z_dot, v, y, output, loss,
                                                           packing)
        g = {k: xp.zeros(tuple(x.shape), dtype=x.dtype) for k, x in theta.items()}
        g_dot = {k: xp.zeros(tuple(x.shape), dtype=x.dtype) for k, x in theta.items()}
        a, a_dot = aT, aT_dot
        for k in range(sol.steps - 1, -1, -1):  # first- and second-order adjoints, backward
            t, hk = sol.ts[k], sol.ts[k + 1] - sol.ts[k]
            Z, Z_dot = stages[k]
            a, a_dot = step_adjoint(fld, t, hk, Z, Z_dot, theta, theta_dot, tab, a, a_dot, g,
                                    g_dot)
        g.update(r_grads)
        g_dot.update(r_hv)
        grads = {k: g[k] for k in P}
        hv = {k: g_dot[k] for k in P}
        if not _solvers.all_finite([F, a, a_dot, aT_dot] + list(grads.values())
                                   + list(hv.values())):
            raise FloatingPointError(
                "%s: the loss, the gradient or the Hessian-vector product is not finite (NaN or "
                "Inf) although the forward states are (largest |z(T)| = %.3g): the tangent or the "
                "second-order adjoint overflows; use a smaller step (more steps), a shorter "
                "interval, smaller weights or a smaller direction v"
                % (where, float(xp.abs(zT).max())))
    info = {"grad_z0": a if a is not aT else a.copy(), "grad_z0_dot": a_dot, "zT": zT,
            "zT_dot": z_dot, "hT": packing.observe(zT), "aT": aT, "aT_dot": aT_dot,
            "o_dot": o_dot, "steps_forward": sol.steps, "ts": sol.ts, "solver": sol.solver,
            "nfe_forward": nfe_forward, "nfe_hvp": fld.counts["f"],
            "ntangent": fld.counts["tangent"], "nvjp": fld.counts["vjp"],
            "nvjp_jvp": fld.counts["vjp_jvp"]}
    return F, grads, hv, info


class _Counting:
    """The field, its calls of f, tangent, vjp and vjp_jvp counted (``counts``); the solve goes
    through f (no workspace), everything else (check, attributes) passes through."""

    def __init__(self, field):
        self.field = field
        self.counts = {"f": 0, "tangent": 0, "vjp": 0, "vjp_jvp": 0}

    def f(self, t, z, theta):
        self.counts["f"] += 1
        return self.field.f(t, z, theta)

    def tangent(self, t, z, theta, dz, dtheta):
        self.counts["tangent"] += 1
        return self.field.tangent(t, z, theta, dz, dtheta)

    def vjp(self, t, z, theta, a):
        self.counts["vjp"] += 1
        return self.field.vjp(t, z, theta, a)

    def vjp_jvp(self, t, z, theta, a, dz, dtheta):
        self.counts["vjp_jvp"] += 1
        return self.field.vjp_jvp(t, z, theta, a, dz, dtheta)

    def __getattr__(self, name):
        return getattr(self.field, name)
