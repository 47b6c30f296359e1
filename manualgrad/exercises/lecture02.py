"""Exercises of lecture 02 (the coadjoint method, JP eqs. 14-23; docs/coadjoint.md).

The penalties G_b(lambda_1..lambda_T) are per example (rows); lam has shape (T, B, m) with
lam[k-1] = lambda_k. The coadjoint gamma_k of lambda_k runs forward in time from the seeds
mu_k = dG_b/dlambda_k; the source r_k is where the adjoint recursion depends on z_k.
"""
from __future__ import annotations

from .. import backend, coadjoint
from .core import FD, Case, Exercise, Variant, label, randn, rng, tanh_grad


def _norms2(lam):
    return (lam * lam).sum(axis=-1)


# ----------------------------------------------------------------------------- 02.penalty_G23
def penalty_G23(lam):
    """JP eq. (23): G_b = (1/T) sum_k ||lambda_k||^2 - ((1/T) sum_k ||lambda_k||)^2
    - log ||lambda_T||^2, and dG_b/dlambda_k (the package's penalty G23)."""
    G_b, dG, _ = coadjoint.get_penalty("G23").fn(lam, None)
    return G_b, dG


def _case_pen(s, seed):
    g = rng(seed)
    lam = randn(g, s["T"], s["B"], s["m"]) * (1.0 + randn(g, s["T"], 1, 1, scale=0.3))
    return lam


def _fd_pen(fn):
    def make(s, seed):
        lam = _case_pen(s, seed)
        fd = [FD("dG/dlambda", lambda P: fn(P["lam"])[0].sum(), {"lam": lam.copy()},
                 lambda out: {"lam": out["dG"]})]
        return Case(label(s, seed), (lam,), fd)
    return make


def _g23_parts(lam):
    xp = backend.xp()
    T = lam.shape[0]
    n = xp.sqrt(_norms2(lam))                         # (T, B)
    mean = n.sum(axis=0) / T
    var = (n * n).sum(axis=0) / T - mean * mean
    dvar = (2.0 / T) * (1.0 - mean / n)[..., None] * lam
    nT2 = _norms2(lam[-1])
    return var, dvar, -xp.log(nT2), -2.0 * lam[-1] / nT2[:, None]


def _v_g22(lam):
    var, dvar, _, _ = _g23_parts(lam)
    return var, dvar


def _v_no_mean(lam):
    var, dvar, lv, lg = _g23_parts(lam)
    dvar = (2.0 / lam.shape[0]) * lam
    dvar[-1] += lg
    return var + lv, dvar


def _v_log_half(lam):
    var, dvar, lv, lg = _g23_parts(lam)
    dvar[-1] += 0.5 * lg
    return var + lv, dvar


def _v_log_sign(lam):
    var, dvar, lv, lg = _g23_parts(lam)
    dvar[-1] -= lg
    return var - lv, dvar


SIZES_PEN = ({"T": 4, "B": 3, "m": 3}, {"T": 2, "B": 1, "m": 2}, {"T": 6, "B": 2, "m": 4})

G23 = Exercise(
    name="02.penalty_G23", lecture="02",
    title="the penalty G23 and its gradient in the adjoints",
    equation="JP eqs. (22)-(23): G = (1/T) sum_k ||lambda_k||^2 - ((1/T) sum_k ||lambda_k||)^2 "
             "- log ||lambda_T||^2",
    signature="penalty_G23(lam) -> (G_b, dG)",
    task="""\
The adjoint control function of JP eq. (23), per example b: the variance of the adjoint norms
(JP eq. 22, with 1/T, not 1/(T-1)) minus log ||lambda_T||^2. Return its value per example and its
gradient in every lambda_k:
    dVar/dlambda_k = (2/T) (1 - mean_j ||lambda_j|| / ||lambda_k||) lambda_k,
    d(-log ||lambda_T||^2)/dlambda_T = -2 lambda_T / ||lambda_T||^2.
Shapes: lam (T, B, m) with lam[k-1] = lambda_k (no zero rows in the cases).""",
    returns="G_b (B,) and dG (T, B, m), a tuple",
    mistakes="forgetting the log term (that is G22); dropping the mean's own derivative "
             "(2 lambda_k / T only); -lambda_T / ||lambda_T||^2 (a factor 2); +log",
    reference=penalty_G23, make_case=_fd_pen(penalty_G23), sizes=SIZES_PEN,
    outputs=("G_b", "dG"),
    variants=(
        Variant("dropped", "the -log ||lambda_T||^2 term is missing: that is G22 (JP eq. 22), "
                "not G23", _v_g22),
        Variant("dropped", "the variance's gradient misses the mean's derivative: it is (2/T) "
                "(1 - mean / ||lambda_k||) lambda_k, not (2/T) lambda_k", _v_no_mean),
        Variant("scale", "the log term's gradient is -2 lambda_T / ||lambda_T||^2 (d log ||v||^2 "
                "/dv = 2 v / ||v||^2): a factor 2 is missing", _v_log_half),
        Variant("sign", "G23 subtracts log ||lambda_T||^2 (it rewards a large output adjoint); "
                "you added it", _v_log_sign),
    ))


# ----------------------------------------------------------------------------- 02.penalty_G20
def penalty_G20(lam):
    """JP eq. (20) G_b = -sum_k log ||lambda_k||^2 and its gradient, JP eq. (21) corrected:
    dG_b/dlambda_k = -2 lambda_k / ||lambda_k||^2 (the package's penalty G20)."""
    G_b, dG, _ = coadjoint.get_penalty("G20").fn(lam, None)
    return G_b, dG


def _v_g20_printed(lam):
    xp = backend.xp()
    n2 = _norms2(lam)
    return -xp.log(n2).sum(axis=0), xp.broadcast_to((-2.0 / n2)[..., None], lam.shape).copy()


def _v_g20_norm(lam):
    xp = backend.xp()
    n2 = _norms2(lam)
    return -xp.log(n2).sum(axis=0), -2.0 * lam / xp.sqrt(n2)[..., None]


G20 = Exercise(
    name="02.penalty_G20", lecture="02",
    title="the log penalty G20 and the corrected eq. (21)",
    equation="JP eqs. (20)-(21): G = -sum_k log ||lambda_k||^2, dG/dlambda_k = -2 lambda_k / "
             "||lambda_k||^2 (JP prints -2 / ||lambda_k||^2)",
    signature="penalty_G20(lam) -> (G_b, dG)",
    task="""\
JP eq. (20) penalises small adjoints: G_b = -sum_{k=1..T} log ||lambda_k||^2 per example.
Return G_b and its gradient dG_b/dlambda_k. JP's eq. (21) prints -2 / ||lambda_k||^2, a scalar:
derive it yourself (d ||v||^2 / dv = 2 v). Shapes: lam (T, B, m), lam[k-1] = lambda_k (no zero rows).""",
    returns="G_b (B,) and dG (T, B, m), a tuple",
    mistakes="JP's printed eq. (21) (the factor lambda_k missing); dividing by ||lambda_k|| "
             "instead of ||lambda_k||^2; the sign",
    reference=penalty_G20, make_case=_fd_pen(penalty_G20), sizes=SIZES_PEN,
    outputs=("G_b", "dG"),
    variants=(
        Variant("dropped", "that is JP's printed eq. (21), -2 / ||lambda_k||^2, a scalar: the "
                "factor lambda_k is missing (d log ||v||^2 / dv = 2 v / ||v||^2)", _v_g20_printed),
        Variant("other", "the gradient divides by ||lambda_k|| instead of ||lambda_k||^2",
                _v_g20_norm),
    ))


# ----------------------------------------------------------------------------- 02.coadjoint_forward
def coadjoint_forward(W_rec, s, mu):
    """Step 1 of the coadjoint method (docs/coadjoint.md): gamma_0 = 0,
    gamma_k = mu_k + s_k o (W_rec gamma_{k-1}), k = 1..T, forward in time (s_k = sigma'(z_k))."""
    T, B, m = s.shape
    gamma = backend.xp().zeros((T + 1, B, m), dtype=s.dtype)
    for k in range(1, T + 1):
        gamma[k] = mu[k - 1] + s[k - 1] * (gamma[k - 1] @ W_rec.T)
    return gamma


def _case_gamma(sz, seed):
    T, B, m = sz["T"], sz["B"], sz["m"]
    g = rng(seed)
    W_rec = randn(g, m, m, scale=1.1 * m ** -0.5)
    s = tanh_grad(randn(g, T, B, m))
    mu = randn(g, T, B, m)

    def G_lin(P):  # sum_k <mu_k, lambda_k> with lambda_T = c and lambda_{k-1} = W^T (s_k o lambda_k)
        lam, total = P["c"], 0.0
        for k in range(T, 0, -1):
            total = total + (mu[k - 1] * lam).sum()
            lam = (s[k - 1] * lam) @ W_rec
        return total

    fd = [FD("gamma_T = dG/dlambda_T through the adjoint recursion", G_lin,
             {"c": randn(g, B, m)}, lambda out: {"c": out["output"][T]})]
    return Case(label(sz, seed), (W_rec, s, mu), fd)


def _v_gamma_backward(W_rec, s, mu):
    T, B, m = s.shape
    gamma = backend.xp().zeros((T + 1, B, m), dtype=s.dtype)
    for k in range(T, 0, -1):
        nxt = gamma[k + 1] if k < T else gamma[0]
        gamma[k] = mu[k - 1] + s[k - 1] * (nxt @ W_rec.T)
    return gamma


GAMMA = Exercise(
    name="02.coadjoint_forward", lecture="02",
    title="the forward coadjoint sweep (gamma)",
    equation="JP eqs. (15)-(19), corrected (docs/coadjoint.md step 1, JP's gamma_k): gamma_0 = 0, "
             "gamma_k = mu_k + sigma'(z_k) o (W_rec gamma_{k-1}), k = 1..T",
    signature="coadjoint_forward(W_rec, s, mu) -> gamma",
    task="""\
The adjoint recursion lambda_{k-1} = W_rec^T (s_k o lambda_k) runs backwards, so the multiplier
of each of its equations (the coadjoint gamma_k of lambda_k) runs FORWARDS, seeded by
mu_k = dG_b/dlambda_k: gamma_0 = 0 and gamma_k = mu_k + s_k o (W_rec gamma_{k-1}) for k = 1..T,
where s_k = sigma'(z_k). (gamma_T is then dG_b/dlambda_T through the whole recursion.)
Shapes: W_rec (m, m); s and mu (T, B, m) with s[k-1] = s_k; return gamma (T+1, B, m) with
gamma[k] = gamma_k. Rows are examples: W_rec v is v @ W_rec.T.""",
    returns="gamma (T+1, B, m), gamma[0] = 0",
    mistakes="W_rec^T where W_rec belongs (the coadjoint runs the transposed map of the adjoint); "
             "running it backwards; forgetting s_k",
    reference=coadjoint_forward, make_case=_case_gamma,
    sizes=({"T": 4, "B": 2, "m": 3}, {"T": 2, "B": 1, "m": 2}, {"T": 5, "B": 3, "m": 4}),
    weights=("W_rec",),
    variants=(
        Variant("transposed", "you applied W_rec^T (v @ W_rec); the coadjoint is the transpose "
                "of the adjoint's map, so gamma_k uses W_rec itself: v @ W_rec.T",
                lambda W, s, mu: coadjoint_forward(W.T, s, mu)),
        Variant("dropped", "the factor s_k = sigma'(z_k) is missing",
                lambda W, s, mu: coadjoint_forward(W, backend.xp().ones_like(s), mu)),
        Variant("other", "you ran the recursion backwards in time; gamma runs forwards from "
                "gamma_0 = 0 (the adjoint ran backwards)", _v_gamma_backward),
    ))


# ----------------------------------------------------------------------------- 02.source_term
def source_term(W_rec, z, lam, gamma):
    """Step 2 of the coadjoint method: r_k = sigma''(z_k) o lambda_k o (W_rec gamma_{k-1}),
    k = 1..T, sigma = tanh (sigma'' = -2 tanh (1 - tanh^2))."""
    from .. import activations
    act = activations.get("tanh")
    return act.grad2(z, act(z)) * lam * (gamma[:-1] @ W_rec.T)


def _case_source(sz, seed):
    T, B, m = sz["T"], sz["B"], sz["m"]
    g = rng(seed)
    W_rec = randn(g, m, m, scale=m ** -0.5)
    z, lam, gamma = randn(g, T, B, m), randn(g, T, B, m), randn(g, T + 1, B, m)
    Wg = gamma[:-1] @ W_rec.T
    fd = [FD("r = d/dz <sigma'(z) o lambda, W_rec gamma_{k-1}>",
             lambda P: (tanh_grad(P["z"]) * lam * Wg).sum(), {"z": z.copy()},
             lambda out: {"z": out["output"]})]
    return Case(label(sz, seed), (W_rec, z, lam, gamma), fd)


SOURCE = Exercise(
    name="02.source_term", lecture="02",
    title="the coadjoint source term r_k",
    equation="docs/coadjoint.md step 2 (JP eqs. 15-19, corrected): r_k = sigma''(z_k) o "
             "lambda_k o (W_rec gamma_{k-1})",
    signature="source_term(W_rec, z, lam, gamma) -> r",
    task="""\
The adjoint recursion depends on the forward states through s_k = sigma'(z_k); differentiating
the term <gamma_{k-1}, W_rec^T (s_k o lambda_k)> of the Lagrangian in z_k gives the source of
the second backward sweep, r_k = sigma''(z_k) o lambda_k o (W_rec gamma_{k-1}), k = 1..T, with
sigma = tanh: sigma''(z) = -2 tanh(z) (1 - tanh(z)^2). Shapes: W_rec (m, m); z, lam (T, B, m)
with z[k-1] = z_k; gamma (T+1, B, m) with gamma[k] = gamma_k. Return r (T, B, m).""",
    returns="r (T, B, m), r[k-1] = r_k",
    mistakes="gamma_k instead of gamma_{k-1} (gamma[1:] for gamma[:-1]); W_rec^T for W_rec; "
             "sigma' instead of sigma''",
    reference=source_term, make_case=_case_source,
    sizes=({"T": 3, "B": 2, "m": 3}, {"T": 2, "B": 1, "m": 2}, {"T": 5, "B": 3, "m": 4}),
    weights=("W_rec",),
    variants=(
        Variant("index", "r_k reads gamma_{k-1} = gamma[:-1]; you used gamma_k (an index shift)",
                lambda W, z, lam, gam: source_term(
                    W, z, lam, backend.xp().concatenate([gam[1:], gam[-1:]], axis=0))),
        Variant("transposed", "W_rec^T where W_rec belongs: W_rec gamma_{k-1} is gamma @ W_rec.T",
                lambda W, z, lam, gam: source_term(W.T, z, lam, gam)),
        Variant("other", "you used sigma'(z_k) = 1 - tanh^2 where sigma''(z_k) = -2 tanh(z_k) "
                "(1 - tanh(z_k)^2) belongs",
                lambda W, z, lam, gam: tanh_grad(z) * lam * (gam[:-1] @ W.T)),
        Variant("dropped", "the factor lambda_k is missing",
                lambda W, z, lam, gam: source_term(W, z, backend.xp().ones_like(lam), gam)),
    ))

EXERCISES = [G20, G23, GAMMA, SOURCE]
