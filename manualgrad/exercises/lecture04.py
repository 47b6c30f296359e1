"""Exercises of lecture 04 (neural ODEs and heavy-ball neural ODEs; docs/ode.md, docs/hbnode.md).

Row-vector convention of BW's proofs: the adjoint a = dL/dz is a row (B, n), and a field's
vector-Jacobian product is a df/dz. The field is BW-NODE's f(h) = theta2 tanh(theta1 h + b1) + b2
with theta1 (H, n), b1 (H,), theta2 (n, H), b2 (n,); rows are examples (theta1 h is h @ theta1.T).
"""
from __future__ import annotations

from .. import backend
from ..ode import hbnode, node
from .core import FD, Case, Exercise, Variant, label, randn, rng, tanh_grad


# ----------------------------------------------------------------------------- 04.rk4_step_adjoint
def rk4_step(f, t, z, h):
    """One classical RK4 step z -> z'."""
    K1 = f(t, z)
    K2 = f(t + h / 2, z + h / 2 * K1)
    K3 = f(t + h / 2, z + h / 2 * K2)
    K4 = f(t + h, z + h * K3)
    return z + h / 6 * (K1 + 2 * K2 + 2 * K3 + K4)


def rk4_step_adjoint(f, vjp, t, z, h, abar):
    """Reverse mode through one RK4 step (docs/ode.md, the discrete adjoint): given
    abar' = dL/dz', return dL/dz. Kbar_i = h (b_i abar' + sum_{l>i} A_li Zbar_l),
    Zbar_i = Kbar_i df/dz(Z_i), dL/dz = abar' + sum_i Zbar_i."""
    Z1 = z                                           # the stage states, recomputed
    Z2 = z + h / 2 * f(t, Z1)
    Z3 = z + h / 2 * f(t + h / 2, Z2)
    Z4 = z + h * f(t + h / 2, Z3)
    Zbar4 = vjp(t + h, Z4, h / 6 * abar)                        # b_4 = 1/6
    Zbar3 = vjp(t + h / 2, Z3, h / 3 * abar + h * Zbar4)        # b_3 = 1/3, A_43 = 1
    Zbar2 = vjp(t + h / 2, Z2, h / 3 * abar + h / 2 * Zbar3)    # b_2 = 1/3, A_32 = 1/2
    Zbar1 = vjp(t, Z1, h / 6 * abar + h / 2 * Zbar2)            # b_1 = 1/6, A_21 = 1/2
    return abar + Zbar1 + Zbar2 + Zbar3 + Zbar4


def _node_field(s, seed):
    g = rng(seed)
    theta = node.init_params(s["n"], s["H"], seed=seed, scale=1.0, bias_scale=0.3,
                             dtype="float64")
    field = node.NODEField("tanh")
    return g, theta, field


def _case_rk4(s, seed):
    g, theta, field = _node_field(s, seed)
    B, n = s["B"], s["n"]
    h = s["h"]

    def f(t, z):
        return field.f(t, z, theta)

    def vjp(t, z, a):
        return field.vjp(t, z, theta, a)[0]

    z, abar = randn(g, B, n), randn(g, B, n)
    fd = [FD("dL/dz = d<abar', z'(z)>/dz", lambda P: (abar * rk4_step(f, 0.3, P["z"], h)).sum(),
             {"z": z.copy()}, lambda out: {"z": out["output"]})]
    return Case(label(s, seed), (f, vjp, 0.3, z, h, abar), fd)


def _v_rk4_uncoupled(f, vjp, t, z, h, abar):
    Z2 = z + h / 2 * f(t, z)
    Z3 = z + h / 2 * f(t + h / 2, Z2)
    Z4 = z + h * f(t + h / 2, Z3)
    return abar + vjp(t, z, h / 6 * abar) + vjp(t + h / 2, Z2, h / 3 * abar) + \
        vjp(t + h / 2, Z3, h / 3 * abar) + vjp(t + h, Z4, h / 6 * abar)


def _v_rk4_at_z(f, vjp, t, z, h, abar):
    Zbar4 = vjp(t + h, z, h / 6 * abar)
    Zbar3 = vjp(t + h / 2, z, h / 3 * abar + h * Zbar4)
    Zbar2 = vjp(t + h / 2, z, h / 3 * abar + h / 2 * Zbar3)
    Zbar1 = vjp(t, z, h / 6 * abar + h / 2 * Zbar2)
    return abar + Zbar1 + Zbar2 + Zbar3 + Zbar4


RK4 = Exercise(
    name="04.rk4_step_adjoint", lecture="04",
    title="the adjoint of one RK4 step (vector-Jacobian products through the stages)",
    equation="docs/ode.md, discrete adjoint (BW-NODE): Kbar_i = h (b_i abar' + sum_{l>i} A_li "
             "Zbar_l), Zbar_i = Kbar_i df/dz(Z_i), dL/dz = abar' + sum_i Zbar_i",
    signature="rk4_step_adjoint(f, vjp, t, z, h, abar) -> abar_prev",
    task="""\
The classical RK4 step: K1 = f(t, z), K2 = f(t + h/2, z + h/2 K1), K3 = f(t + h/2, z + h/2 K2),
K4 = f(t + h, z + h K3), z' = z + h/6 (K1 + 2 K2 + 2 K3 + K4). Given abar' = dL/dz' (B, n),
return dL/dz by reverse mode through the step: recompute the stage states Z_i, then for
i = 4..1: Kbar_i = h (b_i abar' + sum_{l>i} A_li Zbar_l) and Zbar_i = vjp(t + c_i h, Z_i, Kbar_i)
(b = 1/6, 1/3, 1/3, 1/6; A_21 = A_32 = 1/2, A_43 = 1; c = 0, 1/2, 1/2, 1); dL/dz = abar' + sum Zbar_i.
f(t, z) -> (B, n) is the field; vjp(t, z, a) -> a df/dz (B, n) its vector-Jacobian product.""",
    returns="abar_prev (B, n) = dL/dz",
    mistakes="Kbar_i = h b_i abar' only (the coupling through the later stages dropped); the "
             "vjps evaluated at z instead of the stage states Z_i; forgetting the identity "
             "term abar' (z' = z + ...)",
    reference=rk4_step_adjoint, make_case=_case_rk4,
    sizes=({"B": 3, "n": 2, "H": 4, "h": 0.4}, {"B": 1, "n": 3, "H": 3, "h": 0.2},
           {"B": 4, "n": 4, "H": 6, "h": 0.7}),
    variants=(
        Variant("dropped", "the stage coupling is missing: Kbar_i = h (b_i abar' + sum_{l>i} A_li "
                "Zbar_l), later stages feed earlier ones through A", _v_rk4_uncoupled),
        Variant("other", "the vjps are evaluated at z for every stage; each needs its own stage "
                "state Z_i (recompute them first)", _v_rk4_at_z),
        Variant("dropped", "the identity term abar' is missing: z' = z + h sum b_i K_i, so "
                "dL/dz = abar' + sum_i Zbar_i",
                lambda f, vjp, t, z, h, a: rk4_step_adjoint(f, vjp, t, z, h, a) - a),
    ))


# ----------------------------------------------------------------------------- 04.hbnode_adjoint_rhs
def hbnode_adjoint_rhs(h, m, a_h, a_m, theta1, b1, theta2, gamma):
    """BW Theorem 2 with the corrected sign (docs/hbnode.md): da_h/dt = -a_m J,
    da_m/dt = -a_h + gamma a_m, J = df/dh (the package's hbnode.adjoint_rhs)."""
    theta = {"theta1": theta1, "b1": b1, "theta2": theta2}
    return hbnode.adjoint_rhs(0.0, h, m, a_h, a_m, theta, "tanh", gamma)


def _case_hb(s, seed):
    B, n, H, gamma = s["B"], s["n"], s["H"], s["gamma"]
    g = rng(seed)
    theta1, b1 = randn(g, H, n, scale=n ** -0.5), randn(g, H, scale=0.3)
    theta2, b2 = randn(g, n, H, scale=H ** -0.5), randn(g, n, scale=0.3)
    h, m, a_h, a_m = (randn(g, B, n) for _ in range(4))
    xp = backend.xp()

    def F(P):  # -<a, F(z)> with F(h, m) = (m, -gamma m + f(h)): its z-gradient is da/dt
        fh = xp.tanh(P["h"] @ theta1.T + b1) @ theta2.T + b2
        return -(a_h * P["m"]).sum() - (a_m * (-gamma * P["m"] + fh)).sum()

    fd = [FD("da/dt = -a dF/dz", F, {"h": h.copy(), "m": m.copy()},
             lambda out: {"h": out["da_h"], "m": out["da_m"]})]
    return Case(label(s, seed), (h, m, a_h, a_m, theta1, b1, theta2, gamma), fd)


def _aJ(a_m, h, theta1, b1, theta2):
    return ((a_m @ theta2) * tanh_grad(h @ theta1.T + b1)) @ theta1


HB = Exercise(
    name="04.hbnode_adjoint_rhs", lecture="04",
    title="the HBNODE adjoint right-hand side",
    equation="BW Theorem 2, sign corrected (docs/hbnode.md): da_h/dt = -a_m J, da_m/dt = -a_h + "
             "gamma a_m, J = df/dh = theta2 diag(sigma'(theta1 h + b1)) theta1",
    signature="hbnode_adjoint_rhs(h, m, a_h, a_m, theta1, b1, theta2, gamma) -> (da_h, da_m)",
    task="""\
The HBNODE as a first-order system: dh/dt = m, dm/dt = -gamma m + f(h), f(h) = theta2 tanh(theta1 h
+ b1) + b2. Its adjoint a = [a_h, a_m] (rows) solves da/dt = -a dF/dz, which is BW Theorem 2 with
the sign BW misprints fixed:
    da_h/dt = -a_m J,   J = df/dh = theta2 diag(tanh'(theta1 h + b1)) theta1
    da_m/dt = -a_h + gamma a_m
Shapes: h, m, a_h, a_m (B, n); theta1 (H, n), b1 (H,), theta2 (n, H); gamma a float.
Rows: a_m J is ((a_m @ theta2) * tanh'(u)) @ theta1 with u = h @ theta1.T + b1.""",
    returns="da_h (B, n) and da_m (B, n), a tuple",
    mistakes="BW's printed + a_m J; J a_m (the Jacobian transposed); dropping gamma a_m",
    reference=hbnode_adjoint_rhs, make_case=_case_hb,
    sizes=({"B": 3, "n": 2, "H": 4, "gamma": 0.5}, {"B": 1, "n": 3, "H": 3, "gamma": 0.9},
           {"B": 4, "n": 4, "H": 5, "gamma": 0.3}),
    outputs=("da_h", "da_m"), weights=("theta1", "theta2"),
    variants=(
        Variant("sign", "da_h/dt = +a_m J is BW Theorem 2 as printed: the minus sign is missing "
                "(da/dt = -a dF/dz; docs/hbnode.md)",
                lambda h, m, ah, am, t1, b1, t2, g: (_aJ(am, h, t1, b1, t2), -ah + g * am)),
        Variant("transposed", "you computed J a_m (the Jacobian transposed): the adjoint is the "
                "row a_m J = ((a_m @ theta2) * sigma'(u)) @ theta1",
                lambda h, m, ah, am, t1, b1, t2, g: (
                    -(((am @ t1.T) * tanh_grad(h @ t1.T + b1)) @ t2.T), -ah + g * am)),
        Variant("dropped", "da_m/dt misses gamma a_m: dF/dm = [I; -gamma I] gives -a_h + gamma a_m",
                lambda h, m, ah, am, t1, b1, t2, g: (-_aJ(am, h, t1, b1, t2), -ah)),
        Variant("sign", "da_m/dt = -a_h + gamma a_m; you have the sign of the gamma term "
                "flipped (the damping -gamma m enters with a minus, and da/dt = -a dF/dz)",
                lambda h, m, ah, am, t1, b1, t2, g: (-_aJ(am, h, t1, b1, t2), -ah - g * am)),
    ))


# ----------------------------------------------------------------------------- 04.continuous_adjoint_rhs
def continuous_adjoint_rhs(z, a, theta):
    """BW Theorem 1, the augmented dynamics integrated backward: dz/dt = f, da/dt = -a df/dz,
    da_theta/dt = -a df/dtheta (summed over the batch), for the BW-NODE field."""
    field = node.NODEField("tanh")
    a_z, a_theta = field.vjp(0.0, z, theta, a)
    out = {"dz": field.f(0.0, z, theta), "da": -a_z}
    out.update({"d" + k: -v for k, v in a_theta.items()})
    return out


def _case_cont(s, seed):
    B, n = s["B"], s["n"]
    g, theta, field = _node_field(s, seed)
    z, a = randn(g, B, n), randn(g, B, n)
    names = ("theta1", "b1", "theta2", "b2")

    def F_z(P):
        return -(a * field.f(0.0, P["z"], theta)).sum()

    def F_th(P):
        return -(a * field.f(0.0, z, P)).sum()

    fd = [FD("da/dt = -a df/dz", F_z, {"z": z.copy()}, lambda out: {"z": out["da"]}),
          FD("da_theta/dt = -a df/dtheta", F_th, {k: theta[k].copy() for k in names},
             lambda out: {k: out["d" + k] for k in names})]
    return Case(label(s, seed), (z, a, theta), fd)


def _v_cont(kind):
    def fn(z, a, theta):
        out = continuous_adjoint_rhs(z, a, theta)
        B = z.shape[0]
        if kind == "forward":
            return {k: (v if k == "dz" else -v) for k, v in out.items()}
        if kind == "mean":
            return {k: (v / B if k not in ("dz", "da") else v) for k, v in out.items()}
        if kind == "transposed":
            th1, th2 = theta["theta1"], theta["theta2"]
            u = z @ th1.T + theta["b1"]
            gg = tanh_grad(u) * (a @ th2)
            out["da"] = -(gg @ th1.T)  # raises unless H == n
            return out
        raise ValueError(kind)
    return fn


CONT = Exercise(
    name="04.continuous_adjoint_rhs", lecture="04",
    title="the continuous adjoint's augmented right-hand side",
    equation="BW Theorem 1 (docs/ode.md): dz/dt = f(z), da/dt = -a df/dz, da_theta/dt = "
             "-a df/dtheta, integrated backward from a(t1) = dL/dz(t1), a_theta(t1) = 0",
    signature="continuous_adjoint_rhs(z, a, theta) -> {'dz', 'da', 'dtheta1', 'db1', 'dtheta2', 'db2'}",
    task="""\
For the BW-NODE field f(z) = theta2 tanh(theta1 z + b1) + b2, write the right-hand side of the
augmented system that the continuous adjoint integrates backward in time. With u = z theta1^T + b1,
s = tanh(u) and g = tanh'(u) o (a theta2) (rows, (B, H)):
    dz/dt = f(z) = s theta2^T + b2          da/dt = -a df/dz = -g theta1
    dtheta2/dt = -sum_b a^T s   dtheta1/dt = -sum_b g^T z   db1/dt = -sum_b g   db2/dt = -sum_b a
(the theta parts summed over the batch rows). Shapes: z, a (B, n); theta a dict with theta1
(H, n), b1 (H,), theta2 (n, H), b2 (n,). Return a dict with keys dz, da (B, n) and dtheta1,
db1, dtheta2, db2 (the parameters' shapes).""",
    returns="a dict {'dz': (B, n), 'da': (B, n), 'dtheta1': (H, n), 'db1': (H,), 'dtheta2': (n, H), "
            "'db2': (n,)}",
    mistakes="forgetting the minus signs (that integrates the adjoint the wrong way); averaging "
             "over the batch instead of summing; g @ theta1.T for g @ theta1",
    reference=continuous_adjoint_rhs, make_case=_case_cont,
    sizes=({"B": 3, "n": 3, "H": 3}, {"B": 1, "n": 2, "H": 4}, {"B": 4, "n": 4, "H": 6}),
    variants=(
        Variant("sign", "da/dt and da_theta/dt carry a minus: a(t) solves da/dt = -a df/dz "
                "backward from a(t1) (BW Theorem 1)", _v_cont("forward")),
        Variant("scale", "the theta parts are sums over the batch rows (the loss's batch mean is "
                "already in a(t1)); you averaged", _v_cont("mean")),
        Variant("transposed", "a df/dz is g @ theta1 (theta1 is (H, n)); you used theta1^T",
                _v_cont("transposed")),
    ))

EXERCISES = [RK4, HB, CONT]
