"""The coadjoint method: adjoint control penalties G and the adjoint-over-adjoint gradient (JP eqs. 14-23).

Problem (JP eq. 14): minimise F + alpha * G(lambda_1, .., lambda_T) where the lambda_k are the
adjoints of the RNN (JP eqs. 6-8), computed from the parameters, so G depends on them through the
adjoint recursion. Per example b (rows of every array), with s_k = sigma'(z_k), a_k = s_k o lambda_k
and g = -dF_b/do (``Adjoint.delta_out``)::

    lambda_T = W_out^T g,    lambda_{k-1} = W_rec^T (s_k o lambda_k)     [+ W_out^T g_{k-1}, many-to-many]

The gradient of G_b is obtained from the Lagrangian of problem (14) with a second set of
multipliers, one per constraint (derivation in docs/coadjoint.md):

1. **Coadjoint of lambda** (JP's gamma_k), forward in time from mu_k = dG_b/dlambda_k::

       gamma_0 = mu_0 (0 unless G involves lambda_0),   gamma_k = mu_k + s_k o (W_rec gamma_{k-1}),  k = 1..T

2. **Sources**, where the adjoint recursion depends on the forward states::

       r_k = sigma''(z_k) o lambda_k o (W_rec gamma_{k-1})       (through s_k = sigma'(z_k))
       q   = -d2F_b/do2 (W_out gamma_T)                          (through g = -dF_b/do)

3. **Coadjoint of x** (JP's alpha_k, here ``xi`` so as not to clash with the weight alpha),
   backward in time::

       xi_T = W_out^T q,   zeta_k = r_k + s_k o xi_k,   xi_{k-1} = W_rec^T zeta_k   [+ W_out^T q_{k-1}]

4. **Parameter gradients** (the corrected JP eqs. 15-19), summed over k and averaged over b::

       dG/dW_rec = sum_k zeta_k x_{k-1}^T + sum_k a_k gamma_{k-1}^T
       dG/dW_in  = sum_k zeta_k u_k^T,        dG/db1 = sum_k zeta_k
       dG/dW_out = q x_T^T + g gamma_T^T,     dG/db2 = q            (many-to-many: summed over k)

The total gradient is dF/dtheta (JP eqs. 9-13, :mod:`manualgrad.rnn`) + alpha * dG/dtheta. The
cost is one more forward and one more backward sweep: about twice the adjoint method.

Penalties (JP eqs. 20-23 and the authors' released code), per example, batch mean; registry
:data:`PENALTIES`: ``"G20"``, ``"G22"``, ``"G23"``, ``"G23w"``, ``"released"``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

from . import backend, gpu, rnn
from ._validate import float_array

__all__ = ["Penalty", "PENALTIES", "get_penalty", "penalty_names", "Coadjoint", "sweep",
           "loss_and_grad", "loss", "adjoint_norms_from_lam", "coadjoint_grad_fn",
           "PenaltyFloorWarning", "AdjointUnderflowWarning", "DEFAULT_LOG_FLOOR"]

DEFAULT_LOG_FLOOR = 1e-30
"""Floor f on ||lambda_k||^2 inside log(.) (G20, G23): log(max(||lambda||^2, f)); the derivative
is taken of the floored function, so it is 0 where the floor is active (no blow-up, no NaN)."""


class PenaltyFloorWarning(UserWarning):
    """An adjoint norm fell below the penalty's floor; the penalty is flat (zero gradient) there."""


class AdjointUnderflowWarning(UserWarning):
    """Adjoints of some steps are zero or subnormal: underflow (typical in float32 on long
    sequences) or dead units (relu with z <= 0 everywhere)."""


# ------------------------------------------------------------------------------ penalties
def _norms(v, axis=-1):
    """Euclidean norms along ``axis`` without underflow/overflow.

    ||v|| = sqrt(sum_i v_i^2) in one pass when every sum of squares is a normal, finite number
    (squares that underflow then change it by less than a rounding error); otherwise, where some
    v is zero, subnormal or huge, M * ||v / M|| with M = max |v|.
    """
    xp = backend.xp()
    w = v if axis in (-1, v.ndim - 1) else xp.moveaxis(v, axis, -1)
    n2 = xp.einsum("...i,...i->...", w, w)  # sum_i v_i^2
    info = backend.np.finfo(v.dtype)
    if bool(((n2 >= info.tiny) & (n2 <= info.max)).all()):  # one check (one device sync)
        return xp.sqrt(n2)
    M = xp.abs(v).max(axis=axis, keepdims=True)
    safe = xp.where(M > 0, M, 1.0)
    return (safe * xp.sqrt(((v / safe) ** 2).sum(axis=axis, keepdims=True)))[..., 0]


def _unit(v, n):
    """v / ||v|| with 0 where v = 0 (the subgradient of the norm at 0 that adds nothing)."""
    xp = backend.xp()
    nn = n[..., None]
    return xp.where(nn > 0, v / xp.where(nn > 0, nn, 1.0), 0.0)


def _warn_floor(mask, what):
    if bool(mask.any()):
        warnings.warn("%s: %d adjoint norm(s)^2 below the floor %.0e; the penalty is flat there "
                      "(zero gradient). The adjoints have vanished: see docs/coadjoint.md."
                      % (what, int(mask.sum()), DEFAULT_LOG_FLOOR), PenaltyFloorWarning,
                      stacklevel=4)


def _neg_log_sq(v, floor, out=None):
    """-log(max(||v||^2, floor)) and its gradient -2 v / ||v||^2, per row; 0 where the floor is
    active. The gradient is written into ``out`` (the shape of v) when given."""
    xp = backend.xp()
    n = _norms(v)
    n2 = n * n
    low = n2 <= floor
    val = -xp.log(xp.where(low, floor, n2))
    grad = xp.multiply(v, xp.where(low, 0.0, -2.0 / xp.where(low, 1.0, n2))[..., None], out=out)
    return val, grad, low


def _variance(lam_list_norms, lam_list, weights=None, out=None):
    """Variance of adjoint norms (JP eq. 22) and its gradient in each lambda.

    ``lam_list``: (K, B, m); ``weights``: (K,) summing to 1 (None: 1/K each). The gradient is
    written into ``out`` ((K, B, m)) when given.
    Var = sum_k w_k n_k^2 - (sum_k w_k n_k)^2;  dVar/dlambda_k = 2 w_k (1 - (sum_j w_j n_j) / n_k) lambda_k,
    0 where lambda_k = 0 (the subgradient of the norm at 0 that adds nothing).
    """
    xp = backend.xp()
    n = lam_list_norms  # (K, B)
    K = n.shape[0]
    w = xp.full((K,), 1.0 / K, dtype=n.dtype) if weights is None else weights
    mean = w @ n  # (B,): sum_k w_k n_k
    val = (w[:, None] * n * n).sum(axis=0) - mean * mean
    with backend.errstate(divide="ignore", over="ignore", invalid="ignore"):
        c = 2.0 * w[:, None] * (1.0 - mean / xp.where(n > 0, n, 1.0))  # (K, B)
    if bool(xp.isfinite(c).all()):
        return val, xp.multiply(c[..., None], lam_list, out=out)
    # some n_k so far below the mean that mean / n_k overflows (subnormal adjoints): through
    # unit vectors, 2 w_k lambda_k - 2 w_k mean lambda_k / n_k
    grad = 2.0 * w[:, None, None] * lam_list \
        - 2.0 * (w[:, None] * mean[None, :])[..., None] * _unit(lam_list, n)
    if out is not None:
        out[...] = grad
        grad = out
    return val, grad


def _g20(lam, lam0, log_floor=DEFAULT_LOG_FLOOR, out=None):
    """JP eq. (20): G = -sum_k log ||lambda_k||^2; gradient (eq. 21, corrected) -2 lambda_k / ||lambda_k||^2."""
    val, grad, low = _neg_log_sq(lam, log_floor, out)
    _warn_floor(low, "G20")
    return val.sum(axis=0), grad, None


def _g22(lam, lam0, out=None):
    """JP eq. (22): (1/T) sum_k ||lambda_k||^2 - ((1/T) sum_k ||lambda_k||)^2."""
    val, grad = _variance(_norms(lam), lam, out=out)
    return val, grad, None


def _g23(lam, lam0, log_floor=DEFAULT_LOG_FLOOR, out=None):
    """JP eq. (23): the variance of eq. (22) minus log ||lambda_T||^2."""
    val, grad = _variance(_norms(lam), lam, out=out)
    lv, lg, low = _neg_log_sq(lam[-1], log_floor)
    _warn_floor(low, "G23")
    grad[-1] += lg
    return val + lv, grad, None


def _geometric_weights(T, rho):
    """w_k proportional to rho^(T-k), k = 1..T, normalised: heaviest at the output step T."""
    xp = backend.xp()
    k = xp.arange(1, T + 1, dtype=backend.get_dtype())
    w = rho ** (T - k)
    return w / w.sum()


def _make_g23w(rho=0.9, log_floor=DEFAULT_LOG_FLOOR):
    def g23w(lam, lam0, out=None):
        """JP-23w: variance with weights rho^(T-k) (output steps first) minus log ||lambda_T||^2."""
        w = _geometric_weights(lam.shape[0], rho)
        val, grad = _variance(_norms(lam), lam, w, out)
        lv, lg, low = _neg_log_sq(lam[-1], log_floor)
        _warn_floor(low, "G23w")
        grad[-1] += lg
        return val + lv, grad, None
    return g23w


_L_RELEASED = 1e-5


def _phi(zv, l=_L_RELEASED):
    """The released code's barrier, per component: phi(z) = 1 - l / (|z| c) for |z| < l and
    log(l |z|) / c otherwise, c = 1 + log l^2 (< 0; phi is C^1 at |z| = l and decreases in |z|).
    Returns (phi, dphi/dz).

    |z| is clamped below at a_min = 1e3 sqrt(l / (|c| max_float)), the smallest value at which
    phi and phi' stay finite in the dtype (about 1e-154 in float64, 4e-20 in float32); the
    derivative is that of the clamped function, so 0 below a_min and at z = 0: no NaN, no inf.
    """
    xp = backend.xp()
    c = 1.0 + math.log(l * l)
    a = xp.abs(zv)
    a_min = 1e3 * math.sqrt(l / abs(c)) / math.sqrt(float(backend.np.finfo(zv.dtype).max))
    clamped = a < a_min
    a_safe = xp.maximum(a, a_min)
    small = a_safe < l
    phi = xp.where(small, 1.0 - l / (a_safe * c), xp.log(l * a_safe) / c)
    dphi_da = xp.where(small, (l / (a_safe * c)) / a_safe, 1.0 / (a_safe * c))
    return phi, xp.where(clamped, 0.0, xp.sign(zv) * dphi_da)


def _released(lam, lam0):
    """The authors' released penalty: 1e-2 [Var(||lambda_0||..||lambda_T||) + sum_c phi(lambda_T[c])]."""
    xp = backend.xp()
    allv = xp.concatenate([lam0[None], lam], axis=0)  # (T+1, B, m): lambda_0 .. lambda_T
    val, grad = _variance(_norms(allv), allv)
    ph, dph = _phi(lam[-1])
    val = 1e-2 * (val + ph.sum(axis=-1))
    grad *= 1e-2
    grad[-1] += 1e-2 * dph
    return val, grad[1:], grad[0]


@dataclass(frozen=True)
class Penalty:
    """An adjoint control function G (JP Sec. III-B) with its gradient.

    ``fn(lam, lam0) -> (G_b, dG_b/dlam, dG_b/dlam0 or None)`` with lam (T, B, m), lam0 (B, m),
    G_b (B,). ``uses_lam0``: whether G involves the adjoint of the initial state.
    ``writes_out``: ``fn`` also takes ``out=`` (T, B, m) and writes dG_b/dlam there (the
    built-in penalties but ``released``), so the coadjoint sweep in a workspace allocates nothing.
    """

    name: str
    fn: Callable
    uses_lam0: bool = False
    doc: str = ""
    writes_out: bool = False

    def __call__(self, lam, lam0):
        return self.fn(lam, lam0)


PENALTIES = {
    "G20": Penalty("G20", _g20, doc="-sum_k log ||lambda_k||^2 (JP eq. 20), floored",
                   writes_out=True),
    "G22": Penalty("G22", _g22, doc="variance of ||lambda_1||..||lambda_T|| (JP eq. 22)",
                   writes_out=True),
    "G23": Penalty("G23", _g23, doc="variance - log ||lambda_T||^2 (JP eq. 23)",
                   writes_out=True),
    "G23w": Penalty("G23w", _make_g23w(), doc="weighted variance (weights 0.9^(T-k)) "
                    "- log ||lambda_T||^2 (JP-23w)", writes_out=True),
    "released": Penalty("released", _released, uses_lam0=True,
                        doc="1e-2 [Var(||lambda_0||..||lambda_T||) + sum_c phi(lambda_T[c])] "
                            "(the authors' released code)"),
}


def penalty_names():
    return tuple(PENALTIES)


def get_penalty(G):
    """A :class:`Penalty` by name, or wrap a user callable ``G(lam, lam0) -> (G_b, dlam, dlam0)``."""
    if isinstance(G, Penalty):
        return G
    if isinstance(G, str):
        try:
            return PENALTIES[G]
        except KeyError:
            raise ValueError("unknown penalty G=%r: valid names are %s, or pass a callable "
                             "G(lam, lam0) -> (G_b, dG/dlam, dG/dlam0 or None)"
                             % (G, ", ".join(PENALTIES))) from None
    if callable(G):
        return Penalty(getattr(G, "__name__", "custom"), G, uses_lam0=True)
    raise TypeError("G must be a penalty name (%s), a Penalty or a callable; got %r"
                    % (", ".join(PENALTIES), G))


def _evaluate_penalty(pen, lam, lam0, ws=None):
    """Call G and check what it returns: shapes and finiteness, with clear errors. With a
    workspace ``ws``, a penalty that ``writes_out`` writes dG/dlam into one of its buffers."""
    xp = backend.xp()
    T, B, m = lam.shape
    if ws is not None and pen.writes_out:
        out = pen.fn(lam, lam0, out=backend.empty((T, B, m), lam.dtype, ws, "coadjoint.mu"))
    else:
        out = pen(lam, lam0)
    if not isinstance(out, tuple) or len(out) != 3:
        raise TypeError("penalty %r must return (G_b, dG/dlam, dG/dlam0 or None), got %r"
                        % (pen.name, type(out).__name__))
    Gb, dlam, dlam0 = out
    for name, arr, shape in (("G_b", Gb, (B,)), ("dG/dlam", dlam, (T, B, m)),
                             ("dG/dlam0", dlam0, (B, m))):
        if arr is None:
            if name != "dG/dlam0":
                raise TypeError("penalty %r returned None for %s" % (pen.name, name))
            continue
        if tuple(arr.shape) != shape:
            raise ValueError("penalty %r returned %s of shape %s, expected %s"
                             % (pen.name, name, tuple(arr.shape), shape))
        if not bool(xp.isfinite(arr).all()):
            raise FloatingPointError(
                "penalty %r returned non-finite values in %s (%d entries). If the adjoints "
                "vanished (see AdjointUnderflowWarning), use float64 or a floored penalty."
                % (pen.name, name, int((~xp.isfinite(arr)).sum())))
    return Gb, dlam, dlam0


# ------------------------------------------------------------------------------ the sweeps
@dataclass
class Coadjoint:
    """Everything the coadjoint method computed (arrays on the backend, per example).

    F, G: batch means of F_b and G_b; J = F + alpha G. grads: dJ/dtheta. grads_F, grads_G:
    the two parts (dG/dtheta not multiplied by alpha). sweep: the :class:`~manualgrad.rnn.Sweep`
    (trajectory, adjoints). gamma (T+1, B, m): gamma[k] = coadjoint of lambda_k. xi (T+1, B, m):
    xi[k] = dG_b/dx_k (coadjoint of x_k; JP's alpha_k). zeta (T, B, m): zeta[k-1] = dG_b/dz_k.
    q: dG_b/do. mu, mu0: dG_b/dlambda_k, dG_b/dlambda_0 (the seeds).
    """

    F: object
    G: object
    J: object
    alpha: float
    G_b: object
    grads: dict
    grads_F: dict
    grads_G: dict
    sweep: rnn.Sweep
    gamma: object
    xi: object
    zeta: object
    q: object
    mu: object
    mu0: Optional[object]


def _check_alpha(alpha):
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) and not hasattr(alpha, "__float__"):
        raise TypeError("alpha must be a number >= 0, got %r" % (alpha,))
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError("alpha must be a finite number >= 0 (the weight of G in F + alpha G), "
                         "got %r" % (alpha,))
    return alpha


def _check_underflow(lam, dtype):
    """Warn when adjoints are zero or subnormal (underflow, or dead units): G cannot see them.

    A row counts as vanished when its squared norm is exactly 0 (every entry below ~sqrt(tiny)).
    """
    xp = backend.xp()
    dead = xp.einsum("tbm,tbm->tb", lam, lam) == 0  # (T, B)
    if bool(dead.any()):
        steps = backend.to_numpy(dead.any(axis=1)).nonzero()[0] + 1
        name = backend.np.dtype(dtype).name
        cure = ("they underflowed: use float64 (set_dtype('float64')) or shorter sequences"
                if name == "float32" else
                "they underflowed, or the units are dead (relu with z <= 0); shorter "
                "sequences or another init scale help")
        warnings.warn(
            "adjoints vanished in %s: lambda_k is zero or subnormal for %d (step, example) "
            "pairs, at steps k = %d..%d. Norm, log and barrier penalties are flat or floored "
            "there and cannot push gradient into those steps; %s."
            % (name, int(dead.sum()), int(steps.min()), int(steps.max()), cure),
            AdjointUnderflowWarning, stacklevel=3)


def sweep(params, u, y, G="G23", alpha=1.0, x0=None, activation="tanh", output="sigmoid",
          loss="bce", many_to_many=False):
    """Forward, adjoint, coadjoint (forward) and second adjoint (backward) sweeps: a :class:`Coadjoint`.

    Implements the exact gradient of J = F + alpha G (JP eq. 14; the corrected eqs. 15-19) for
    every hidden activation, head and loss of the engine. Every array of the result is the
    caller's own (no workspace).
    """
    return _sweep(params, u, y, G, alpha, x0, activation, output, loss, many_to_many)


def _sweep(params, u, y, G, alpha, x0, activation, output, loss, many_to_many, ws=None):
    """:func:`sweep`, with the sweeps' arrays in workspace ``ws`` when given (then only J's
    parts and the gradients are fresh; the rest of the returned object are its buffers)."""
    alpha = _check_alpha(alpha)
    pen = get_penalty(G)
    P = rnn.check_params(params)  # validated once
    s = rnn._sweep(P, u, y, x0, activation, output, loss, many_to_many, ws)
    traj, adj = s.traj, s.adj
    T, B, m = traj.z.shape
    if T < 2:
        raise ValueError("the adjoint penalties compare adjoints across steps; they need T >= 2 "
                         "steps, got T = %d" % T)
    _check_underflow(adj.lam, adj.lam.dtype)
    G_b, mu, mu0 = _evaluate_penalty(pen, adj.lam, adj.lam0, ws)
    grads_G, gamma, xi, zeta, q = _coadjoint_gradients(P, traj, adj, s.head, s.y, mu, mu0, ws)
    grads = {k: s.grads[k] + alpha * grads_G[k] for k in s.grads}
    xp = backend.xp()
    bad = [k for k, v in grads.items() if not bool(xp.isfinite(v).all())]
    if bad:
        raise FloatingPointError(
            "the coadjoint gradient is non-finite in %s (alpha = %g, G = %r). The adjoints or "
            "their penalty overflowed; lower alpha or the init scale, or use float64."
            % (", ".join(bad), alpha, pen.name))
    Gm = G_b.mean()
    return Coadjoint(s.F, Gm, s.F + alpha * Gm, alpha, G_b, grads, s.grads, grads_G, s, gamma,
                     xi, zeta, q, mu, mu0)


def _coadjoint_gradients(P, traj, adj, head, Y, mu, mu0, ws=None):
    """The coadjoint sweeps (steps 1-4 of the module docstring); returns (dG/dtheta, gamma, xi, zeta, q).

    Every per-step product and Hadamard product writes into a preallocated row (``out=``), so
    the loops allocate nothing; the whole-trajectory arrays are s, sigma'' o lambda, gamma,
    W_rec gamma (which becomes r, then zeta, in place) and xi, from workspace ``ws`` if given.
    """
    xp = backend.xp()
    W_rec, W_out = P["W_rec"], P["W_out"]
    T, B, m = traj.z.shape
    p, l = traj.u.shape[2], traj.o.shape[-1]
    act = traj.activation
    dt = traj.z.dtype
    s = act.grad_into(traj.z, traj.x[1:], backend.empty((T, B, m), dt, ws, "coadjoint.s"))
    # sigma''(z_k) o lambda_k for step 2, computed first: fewer (T, B, m) arrays alive at once
    d2lam = act.grad2_into(traj.z, traj.x[1:], backend.empty((T, B, m), dt, ws, "coadjoint.d2lam"))
    d2lam *= adj.lam
    # 1. coadjoint of lambda, forward in time: gamma_k = mu_k + s_k o (W_rec gamma_{k-1})
    gamma = backend.empty((T + 1, B, m), dt, ws, "coadjoint.gamma")
    Wgam = backend.empty((T, B, m), dt, ws, "coadjoint.Wgam")  # W_rec gamma_{k-1}, row k-1
    gamma[0] = 0.0 if mu0 is None else mu0
    fused = gpu.fuses()
    if fused:  # CuPy: the loop below as one product and one kernel per step
        gpu.coadjoint_gamma(W_rec, gamma, Wgam, s, xp.ascontiguousarray(mu, dtype=s.dtype))
    else:
        W_rec_T = W_rec.T
        for gamma_prev, gamma_k, Wgam_k, s_k, mu_k in zip(gamma[:-1], gamma[1:], Wgam, s, mu):
            xp.matmul(gamma_prev, W_rec_T, out=Wgam_k)  # W_rec gamma_{k-1}
            xp.multiply(s_k, Wgam_k, out=gamma_k)
            gamma_k += mu_k  # gamma_k = mu_k + s_k o (W_rec gamma_{k-1})
    # 2. sources: r_k = sigma''(z_k) o lambda_k o (W_rec gamma_{k-1}), written over W_rec gamma;
    #    q = -d2F/do2 (W_out gamma_T)
    r = Wgam
    r *= d2lam
    del d2lam
    if traj.many_to_many:
        q = -head.hvp(traj.o, traj.yhat, Y, gamma[1:] @ W_out.T)  # (T, B, l)
    else:
        q = -head.hvp(traj.o, traj.yhat, Y, gamma[T] @ W_out.T)  # (B, l)
    # 3. coadjoint of x, backward: zeta_k = r_k + s_k o xi_k, xi_{k-1} = W_rec^T zeta_k (+ W_out^T q_{k-1})
    xi = backend.empty((T + 1, B, m), dt, ws, "coadjoint.xi")
    if traj.many_to_many:
        xp.matmul(q, W_out, out=xi[1:])  # as q @ W_out, bit for bit
        xi[0] = 0.0
    else:
        xp.matmul(q, W_out, out=xi[T])
    zeta = r  # written in place: zeta_k = r_k + s_k o xi_k
    many_to_many = traj.many_to_many
    if fused:  # CuPy: the loop below as one kernel and one product per step
        gpu.coadjoint_xi(W_rec, zeta, s, xi, many_to_many)
    else:
        rec = backend.empty((B, m), dt, ws, "coadjoint.rec")
        steps = zip(zeta[::-1], s[::-1], xi[1:][::-1], xi[:-1][::-1])  # k = T, T-1, .., 1
        for zeta_k, s_k, xi_k, xi_prev in steps:
            zeta_k += xp.multiply(s_k, xi_k, out=rec)  # zeta_k = r_k + s_k o xi_k
            if many_to_many:  # xi_prev holds W_out^T q_{k-1}; add W_rec^T zeta_k
                xi_prev += xp.matmul(zeta_k, W_rec, out=rec)
            else:
                xp.matmul(zeta_k, W_rec, out=xi_prev)  # xi_{k-1} = W_rec^T zeta_k
    # 4. parameter gradients, one product over all T*B rows each; per-example sums, batch mean
    zf = zeta.reshape(T * B, m)
    xs = (traj.x[1:] if traj.many_to_many else traj.x[T]).reshape(-1, m)
    gams = (gamma[1:] if traj.many_to_many else gamma[T]).reshape(-1, m)
    qf, gf = q.reshape(-1, l), adj.delta_out.reshape(-1, l)
    grads = {
        "W_rec": (zf.T @ traj.x[:-1].reshape(T * B, m)
                  + adj.lam_z.reshape(T * B, m).T @ gamma[:-1].reshape(T * B, m)) / B,
        "W_in": (zf.T @ traj.u.reshape(T * B, p)) / B,
        "b1": zeta.sum(axis=0).sum(axis=0) / B,  # over k, then over b (faster than over T*B rows)
        "W_out": (qf.T @ xs + gf.T @ gams) / B,
        "b2": qf.sum(axis=0) / B,
    }
    return grads, gamma, xi, zeta, q


def loss_and_grad(params, u, y, G="G23", alpha=1.0, x0=None, activation="tanh",
                  output="sigmoid", loss="bce", many_to_many=False, workspace=True):
    """``(F, G_value, grads)``: batch means of F and G, and the exact gradient of F + alpha G.

    JP eqs. (14)-(19), with G one of :data:`PENALTIES` (``"G20"``, ``"G22"``, ``"G23"``,
    ``"G23w"``, ``"released"``) or a callable ``G(lam, lam0) -> (G_b, dG_b/dlam, dG_b/dlam0 or
    None)``. For the adjoints and coadjoints use :func:`sweep`. ``workspace``: where the sweeps'
    arrays live between calls (:class:`~manualgrad.backend.Workspace`; True: the thread's
    default; False: fresh arrays); the returned values are always the caller's own.
    """
    with backend.workspace_scope(workspace) as ws:
        c = _sweep(params, u, y, G, alpha, x0, activation, output, loss, many_to_many, ws)
        return c.F, c.G, c.grads


def loss(params, u, y, G="G23", alpha=1.0, x0=None, activation="tanh", output="sigmoid",
         loss="bce", many_to_many=False, workspace=True):
    """J = F + alpha G from explicitly computed adjoints (forward + adjoint sweep only).

    The function that finite differences of the coadjoint gradient are taken of.
    ``workspace`` as in :func:`loss_and_grad`.
    """
    alpha = _check_alpha(alpha)
    pen = get_penalty(G)
    P = rnn.check_params(params)
    with backend.workspace_scope(workspace) as ws:
        s = rnn._sweep(P, u, y, x0, activation, output, loss, many_to_many, ws)
        if s.traj.T < 2:
            raise ValueError("the adjoint penalties need T >= 2 steps, got T = %d" % s.traj.T)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PenaltyFloorWarning)
            G_b, _, _ = _evaluate_penalty(pen, s.adj.lam, s.adj.lam0, ws)
        return s.F + alpha * G_b.mean()


def adjoint_norms_from_lam(lam):
    """||lambda_k|| per step and example, computed without underflow: (T, B)."""
    lam = float_array(lam, "lam", ndim=3, axes=("T", "B", "m"), finite=False)
    return _norms(lam)


def coadjoint_grad_fn(G, alpha, G_seen, failure, **kw):
    """The gradient of F + alpha G (:func:`loss_and_grad`) as a training loop wants it,
    ``(P, u, y) -> (F, grads)``.

    Each minibatch's G is appended to the list ``G_seen``; a FloatingPointError of the
    coadjoint sweep is appended (as text) to the list ``failure`` and returns a NaN loss and no
    gradients, so :func:`manualgrad.train.fit` stops cleanly. ``kw``: the model options of
    :func:`loss_and_grad` (activation, output, loss, ...).
    """
    def grad_fn(P, u, y):
        try:
            F, Gb, grads = loss_and_grad(P, u, y, G=G, alpha=alpha, **kw)
        except FloatingPointError as exc:
            failure.append(str(exc))
            return float("nan"), {}
        G_seen.append(float(Gb))
        return F, grads
    return grad_fn
