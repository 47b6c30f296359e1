"""Exercises of lecture 05 (the Frank-Wolfe RNN optimizer; FW eqs. (5)-(7), Algorithm 1;
docs/frank_wolfe.md)."""
from __future__ import annotations

import math

from .. import backend
from ..optim import frank_wolfe
from .core import Case, Exercise, Variant, label, randn, rng


# ----------------------------------------------------------------------------- 05.lmo
def lmo(g, p, delta):
    """FW eq. (7): s = argmin_{||s||_p <= delta} <s, g> = -delta sign(g) |g|^(q-1) / ||g||_q^(q-1),
    1/p + 1/q = 1 (the package's frank_wolfe.lmo)."""
    return frank_wolfe.lmo(g, p, delta)


def _case_lmo(s, seed):
    r = rng(seed)
    return Case(label(s, seed), (randn(r, *s["shape"]), s["p"], s["delta"]))


def _q(p):
    return frank_wolfe.dual_exponent(p)


def _v_lmo_pm1(g, p, delta):  # exponent p - 1 instead of q - 1
    xp = backend.xp()
    if p in (1, math.inf):
        return lmo(g, 2.0, delta)
    a = xp.abs(g) ** (p - 1)
    return -delta * xp.sign(g) * a / (xp.abs(g) ** p).sum() ** ((p - 1) / p)


def _v_lmo_pnorm(g, p, delta):  # normalised to unit p-norm of g, not ||g||_q^(q-1)
    xp = backend.xp()
    if p == math.inf:
        return -delta * g / xp.abs(g).max()
    return -delta * g / ((xp.abs(g) ** p).sum() ** (1.0 / p))


LMO = Exercise(
    name="05.lmo", lecture="05",
    title="the linear minimization oracle over the Lp ball, general p",
    equation="FW eq. (7): s = argmin_{||s||_p <= delta} <s, g> = -delta sign(g) |g|^(q-1) / "
             "||g||_q^(q-1), 1/p + 1/q = 1",
    signature="lmo(g, p, delta) -> s",
    task="""\
Minimise the linear function <s, g> over the ball ||s||_p <= delta (all entries of g one vector,
any shape). With the dual exponent q (1/p + 1/q = 1; q = inf for p = 1, q = 1 for p = inf):
    s = -delta sign(g) |g|^(q-1) / ||g||_q^(q-1)
p = 2 gives -delta g / ||g||_2, p = inf gives -delta sign(g), p = 1 puts -delta sign(g_i) on one
coordinate of largest |g_i|. The result lies on the sphere (||s||_p = delta) and attains
<s, g> = -delta ||g||_q (Hoelder). Arguments: g an array (no zero entries in the cases), p a
float >= 1 or math.inf, delta > 0. Return s, shaped like g.""",
    returns="s, an array shaped like g",
    mistakes="the exponent p - 1 instead of q - 1; normalising g by its own p-norm; "
             "forgetting delta or the minus sign (that maximises)",
    reference=lmo, make_case=_case_lmo,
    sizes=({"shape": (6,), "p": 3.0, "delta": 0.5}, {"shape": (3, 4), "p": 1.5, "delta": 2.0},
           {"shape": (5,), "p": 2.0, "delta": 0.3}, {"shape": (2, 3), "p": math.inf, "delta": 1.5},
           {"shape": (7,), "p": 1.0, "delta": 0.7}),
    variants=(
        Variant("other", "the exponent is q - 1 with q = p / (p - 1) the dual exponent, not "
                "p - 1 (for p = 3: |g|^(1/2), not |g|^2)", _v_lmo_pm1),
        Variant("other", "s is -delta g / ||g||_p: that is on the sphere only for p = 2; the "
                "minimiser is -delta sign(g) |g|^(q-1) / ||g||_q^(q-1)", _v_lmo_pnorm),
        Variant("dropped", "the radius delta is missing (s must satisfy ||s||_p = delta)",
                lambda g, p, delta: lmo(g, p, 1.0)),
        Variant("sign", "s must MINIMISE <s, g>: s points against g (-delta ...); yours "
                "maximises it", lambda g, p, delta: -lmo(g, p, delta)),
    ))


# ----------------------------------------------------------------------------- 05.fw_inner_loop
def fw_inner_loop(grad_fn, omega, K, p, delta):
    """FW Algorithm 1's inner loop (FW eq. 6, step 1/k): Delta_0 = 0; for k = 1..K,
    s_k = LMO(grad F(omega + Delta_{k-1})), Delta_k = (1 - 1/k) Delta_{k-1} + (1/k) s_k."""
    Delta = backend.xp().zeros_like(omega)
    for k in range(1, K + 1):
        s = frank_wolfe.lmo(grad_fn(omega + Delta), p, delta)    # the look-ahead point
        Delta = (1.0 - 1.0 / k) * Delta + (1.0 / k) * s
    return Delta


def _case_fw(s, seed):
    r = rng(seed)
    n = s["n"]
    M = randn(r, n, n)
    A = M @ M.T / n + backend.xp().eye(n)            # SPD: F(w) = 1/2 (w - w*)^T A (w - w*)
    w_star = randn(r, n)

    def grad_fn(w):
        return (w - w_star) @ A

    return Case(label(s, seed), (grad_fn, randn(r, n), s["K"], s["p"], s["delta"]))


def _v_fw_no_lookahead(grad_fn, omega, K, p, delta):
    Delta = backend.xp().zeros_like(omega)
    for k in range(1, K + 1):
        Delta = (1.0 - 1.0 / k) * Delta + (1.0 / k) * frank_wolfe.lmo(grad_fn(omega), p, delta)
    return Delta


def _v_fw_classic(grad_fn, omega, K, p, delta):
    Delta = backend.xp().zeros_like(omega)
    for k in range(1, K + 1):
        gam = 2.0 / (k + 1)
        Delta = (1.0 - gam) * Delta + gam * frank_wolfe.lmo(grad_fn(omega + Delta), p, delta)
    return Delta


def _v_fw_last(grad_fn, omega, K, p, delta):
    Delta = backend.xp().zeros_like(omega)
    for k in range(1, K + 1):
        Delta = frank_wolfe.lmo(grad_fn(omega + Delta), p, delta)
    return Delta


FW = Exercise(
    name="05.fw_inner_loop", lecture="05",
    title="Frank-Wolfe Algorithm 1's inner loop",
    equation="FW eqs. (5)-(7), Algorithm 1: s_k = LMO(grad F(omega + Delta_{k-1})), "
             "Delta_k = (1 - 1/k) Delta_{k-1} + (1/k) s_k, k = 1..K, Delta_0 = 0",
    signature="fw_inner_loop(grad_fn, omega, K, p, delta) -> Delta_K",
    task="""\
The local problem of FW eq. (5) is min F(omega + Delta) over ||Delta||_p <= delta. Run K
Frank-Wolfe iterations on it from Delta_0 = 0 with step size 1/k: at each k take the gradient
at the look-ahead point omega + Delta_{k-1}, its LMO s_k (FW eq. 7; use
manualgrad.optim.frank_wolfe.lmo or your 05.lmo), and average: Delta_k = (1 - 1/k) Delta_{k-1} +
(1/k) s_k. Return Delta_K (the outer step then moves omega by eta Delta_K). Arguments:
grad_fn(w) -> gradient (n,); omega (n,); K an int; p, delta as in 05.lmo.""",
    returns="Delta_K (n,)",
    mistakes="taking every gradient at omega (no look-ahead); the classic step 2/(k+1) "
             "instead of FW's 1/k; returning the last s_k instead of the average",
    reference=fw_inner_loop, make_case=_case_fw,
    sizes=({"n": 4, "K": 4, "p": 2.0, "delta": 1.0}, {"n": 3, "K": 3, "p": math.inf, "delta": 0.5},
           {"n": 5, "K": 6, "p": 3.0, "delta": 2.0}),
    variants=(
        Variant("other", "every gradient is taken at omega; Algorithm 1 evaluates it at the "
                "look-ahead point omega + Delta_{k-1}", _v_fw_no_lookahead),
        Variant("other", "that is the classic Frank-Wolfe step 2/(k+1); FW uses 1/k, so Delta_K "
                "is the mean of the K oracle points", _v_fw_classic),
        Variant("dropped", "Delta_k = s_k: the averaging (1 - 1/k) Delta_{k-1} + (1/k) s_k is "
                "missing", _v_fw_last),
    ))


# ----------------------------------------------------------------------------- 05.fw_angle
def fw_angle(Delta, grads):
    """FW Assumption A5's diagnostic: the angle in degrees between the step Delta and -grad F,
    both mappings seen as one vector (the package's frank_wolfe.angle)."""
    return frank_wolfe.angle(Delta, {k: -g for k, g in grads.items()})


def _case_angle(s, seed):
    r = rng(seed)
    shapes = {"W": (s["m"], s["m"]), "b": (s["m"],), "W_out": (1, s["m"])}
    grads = {k: randn(r, *sh) for k, sh in shapes.items()}
    noise = {k: randn(r, *sh, scale=s["noise"]) for k, sh in shapes.items()}
    Delta = frank_wolfe.lmo_params({k: grads[k] + noise[k] for k in grads}, 2.0, 0.1)
    return Case(label(s, seed), (Delta, grads))


def _v_angle_mean(Delta, grads):
    return sum(frank_wolfe.angle({k: Delta[k]}, {k: -grads[k]}) for k in grads) / len(grads)


FW_ANGLE = Exercise(
    name="05.fw_angle", lecture="05",
    title="the Frank-Wolfe angle diagnostic",
    equation="FW Assumption A5: the angle between the Frank-Wolfe step Delta and -grad F, "
             "theta = arccos(<Delta, -g> / (||Delta|| ||g||)), in degrees",
    signature="fw_angle(Delta, grads) -> float",
    task="""\
FW's Assumption A5 asks the Frank-Wolfe direction to stay within an angle of the negative
gradient. Given the step Delta and the gradient, both dicts {name: array} with the same keys and
shapes, return the angle in DEGREES between Delta and -grad, treating all tensors together as one
vector: theta = arccos(<Delta, -g> / (||Delta||_2 ||g||_2)). (Clip the cosine to [-1, 1]; the
package uses 2 atan2(||a - b||, ||a + b||) of the unit vectors, accurate near 0 and 180.)""",
    returns="a float, degrees in [0, 180]",
    mistakes="the angle to +grad (180 - theta); radians; averaging per-tensor angles",
    reference=fw_angle, make_case=_case_angle,
    sizes=({"m": 3, "noise": 1.0}, {"m": 2, "noise": 0.3}, {"m": 4, "noise": 2.0}),
    variants=(
        Variant("sign", "that is the angle to +grad (180 - theta); A5 measures the angle to the "
                "descent direction -grad", lambda D, g: 180.0 - fw_angle(D, g)),
        Variant("scale", "the angle is in radians; return degrees", lambda D, g: math.radians(
            fw_angle(D, g))),
        Variant("other", "you averaged one angle per tensor; A5 takes all tensors together as "
                "one vector", _v_angle_mean),
    ))

EXERCISES = [LMO, FW, FW_ANGLE]
