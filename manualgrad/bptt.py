"""Backpropagation through time as a product of step Jacobians (BW-BPTT; JP eqs. 7-8).

Notation of :mod:`manualgrad.rnn` (JP eq. 5). BW writes h_t = tanh(W_hh h_{t-1} + W_xh x_t);
here h_t is ``x_t``, W_hh is ``W_rec``, W_xh is ``W_in`` and the input is ``u_t``::

    z_k = W_rec x_{k-1} + W_in u_k + b1,    x_k = sigma(z_k),    k = 1..T

Step Jacobian (BW-BPTT: "dh_t/dh_{t-1} = tanh'(W_hh h_{t-1} + W_xh x_t) W_hh"), per example::

    J_k = dx_k/dx_{k-1} = diag(sigma'(z_k)) W_rec                                  (m, m)

Product formula (the chain rule; BW-BPTT's prod_{t=2}^T dh_t/dh_{t-1})::

    dx_t/dx_k = J_t J_{t-1} ... J_{k+1},     dx_k/dx_k = I,     0 <= k <= t <= T

Adjoint identity. The many-to-one adjoint of :func:`manualgrad.rnn.adjoint` (JP eq. 8) is
lambda_k = W_rec^T [sigma'(z_{k+1}) o lambda_{k+1}] = J_{k+1}^T lambda_{k+1}; unrolled::

    lambda_k = J_{k+1}^T J_{k+2}^T ... J_T^T lambda_T = (dx_T/dx_k)^T lambda_T,   k = 0..T

(k = 0 is ``Adjoint.lam0``). So the adjoint sweep applies the transposed product to one vector
per example, at the cost of T matrix-vector products instead of T matrix-matrix products, and
||lambda_k|| <= ||dx_T/dx_k||_2 ||lambda_T||: the norm of the product decides whether the
gradient contributions dF/dW_rec = -(1/B) sum_k [sigma'(z_k) o lambda_k] x_{k-1}^T (JP eq. 12)
from early steps vanish or explode.

The linear case (sigma = identity, sigma' = 1; BW: dL_T/dW = dL_T/dh_T W_hh^(T-1) dh_1/dW):
J_k = W_rec for every k and dx_T/dx_k = W_rec^(T-k). What holds (docs/bptt.md)::

    sigma_max(W) < 1  =>  ||W^n||_2 <= sigma_max(W)^n -> 0        (vanishing; sufficient)
    rho(W) > 1        =>  ||W^n||_2 >= rho(W)^n -> infinity       (exploding; sufficient)
    ||W^n||_2^(1/n) -> rho(W)  (Gelfand), and rho(W) <= sigma_max(W)

sigma_max(W) > 1 alone decides nothing: W = [[0.5, 3], [0, 0.5]] has sigma_max ~ 3.08 but
rho = 0.5, so W^n -> 0 (after a transient). With a nonlinearity, submultiplicativity gives
||dx_t/dx_k||_2 <= prod_{s=k+1}^t max_i |sigma'(z_s)_i| ||W_rec||_2 (:func:`product_norm_bound`);
for tanh (|tanh'| <= 1) that is <= ||W_rec||_2^(t-k), which vanishes when ||W_rec||_2 < 1. The
diagonal factors cannot be pulled out of the product as BW writes (prod diag(tanh') W_hh^(T-1)):
that needs every diag(sigma'(z_s)) to commute with W_rec.

Array layout as in :mod:`manualgrad.rnn`: batched rows are examples, so Jacobians are stacks
(B, m, m) with J[b] acting on column vectors (dx_k[b] = J[b] dx_{k-1}[b]); per-step stacks have
a leading time axis with row k-1 holding step k. Spectral norms come from the batched SVD of the
active backend; :func:`spectral_radius` needs general (non-symmetric) eigenvalues, which CuPy
lacks, so it takes its matrix to the host explicitly (the one conversion in this module).
"""
from __future__ import annotations

from . import backend, rnn
from ._validate import float_array

__all__ = ["step_jacobians", "jacobian_product", "product_norms", "product_norm_bound",
           "adjoint_from_product", "singular_values", "spectral_norm", "spectral_radius",
           "linear_power_norms"]


# --- checks ---------------------------------------------------------------------------------
def _checked(params, traj, where):
    """Validate params (JP eq. 5) and a Trajectory made with the same hidden size m."""
    if not isinstance(traj, rnn.Trajectory):
        raise TypeError("%s: traj must be a manualgrad.rnn.Trajectory (from rnn.forward), got %s"
                        % (where, type(traj).__name__))
    params = rnn.check_params(params)
    W_rec = params["W_rec"]
    m = W_rec.shape[0]
    if traj.z.ndim != 3 or traj.z.shape[2] != m:
        raise ValueError("%s: traj.z must have shape (T, B, m) with m = %d (params['W_rec'] is "
                         "%s), got %s" % (where, m, tuple(W_rec.shape), tuple(traj.z.shape)))
    return params, traj


def _index(value, name):
    if isinstance(value, bool) or not hasattr(value, "__index__") or isinstance(value, float):
        raise TypeError("%s must be an integer step index, got %r" % (name, value))
    return int(value)


def _steps(k, t, T, where):
    k, t = _index(k, "k"), _index(t, "t")
    if not 0 <= k <= t <= T:
        raise ValueError("%s: need 0 <= k <= t <= T = %d, got k = %d, t = %d" % (where, T, k, t))
    return k, t


def _final_step(t, T, where):
    if t is None:
        return T
    t = _index(t, "t")
    if not 0 <= t <= T:
        raise ValueError("%s: t must satisfy 0 <= t <= T = %d, got t = %d" % (where, T, t))
    return t


def _square(W, name="W"):
    W = float_array(W, name, ndim=2, axes=("m", "m"))
    if W.shape[0] != W.shape[1] or W.shape[0] < 1:
        raise ValueError("%s must be a non-empty square matrix (m, m), got shape %s"
                         % (name, tuple(W.shape)))
    return W


def _identity_stack(B, m, dtype):
    xp = backend.xp()
    return xp.broadcast_to(xp.eye(m, dtype=dtype), (B, m, m)).copy()


def _dsigma(traj):
    """sigma'(z_k) for k = 1..T, shape (T, B, m) (row k-1 is step k)."""
    return traj.activation.grad(traj.z, traj.x[1:])


def _norm2(P):
    """Spectral norms of a stack (..., m, n): the largest singular values, shape (...)."""
    return backend.xp().linalg.svd(P, compute_uv=False)[..., 0]


def _renormalise(Q, logc):
    """Q -> Q / ||Q||_2 per stack entry, logc += log ||Q||_2 (zero matrices stay 0, log -> -inf)."""
    xp = backend.xp()
    s = _norm2(Q)
    with backend.errstate(divide="ignore"):
        logc = logc + xp.log(s)
    s = xp.where(s > 0, s, 1.0)
    return Q / s[..., None, None], logc


def _exp_or_log(logs, log):
    if log:
        return logs
    with backend.errstate(over="ignore"):
        return backend.xp().exp(logs)


# --- the step Jacobian and the product formula ------------------------------------------------
def step_jacobians(params, traj):
    """BW-BPTT step Jacobians J_k = dx_k/dx_{k-1} = diag(sigma'(z_k)) W_rec, k = 1..T.

    ``traj`` is the :class:`~manualgrad.rnn.Trajectory` of :func:`manualgrad.rnn.forward` with
    these ``params``. Returns an array (T, B, m, m); row k-1 holds J_k for every example (row i
    of W_rec scaled by sigma'(z_k)_i), all steps and examples in one broadcast product.
    """
    params, traj = _checked(params, traj, "step_jacobians")
    return _dsigma(traj)[..., :, None] * params["W_rec"]


def jacobian_product(params, traj, k, t):
    """BW-BPTT product formula dx_t/dx_k = J_t J_{t-1} ... J_{k+1} (the identity when t == k).

    ``0 <= k <= t <= T``. Returns (B, m, m), accumulated from the right: P <- J_s P for
    s = k+1..t, with J_s P = sigma'(z_s) o (W_rec P) (no (m, m) Jacobian is formed per step).
    """
    params, traj = _checked(params, traj, "jacobian_product")
    k, t = _steps(k, t, traj.T, "jacobian_product")
    W = params["W_rec"]
    d = _dsigma(traj)
    _, B, m = traj.z.shape
    P = _identity_stack(B, m, traj.z.dtype)
    for s in range(k + 1, t + 1):  # d[s-1] = sigma'(z_s)
        P = d[s - 1][:, :, None] * (W @ P)
    return P


def product_norms(params, traj, t=None, log=False):
    """||dx_t/dx_k||_2 for k = 0..t (default t = T), per example: shape (t+1, B), row k.

    One backward accumulation from t (the order of the adjoint sweep, JP eq. 8)::

        dx_t/dx_t = I,
        dx_t/dx_k = (dx_t/dx_{k+1}) J_{k+1} = [(dx_t/dx_{k+1}) diag(sigma'(z_{k+1}))] W_rec

    After every step the running product is divided by its spectral norm and the log of the
    norm accumulated, so exploding products give ``inf`` (or, with ``log=True``, the finite
    log-norms) instead of overflowing, and vanishing ones 0 (log: a large negative number;
    ``-inf`` for an exactly zero product, e.g. dead relu units). Row t is 1 (log: 0).
    """
    params, traj = _checked(params, traj, "product_norms")
    t = _final_step(t, traj.T, "product_norms")
    xp = backend.xp()
    W = params["W_rec"]
    d = _dsigma(traj)
    _, B, m = traj.z.shape
    logs = xp.zeros((t + 1, B), dtype=traj.z.dtype)
    Q = _identity_stack(B, m, traj.z.dtype)
    logc = xp.zeros(B, dtype=traj.z.dtype)
    for k in range(t - 1, -1, -1):  # Q J_{k+1}, with d[k] = sigma'(z_{k+1})
        Q = (Q * d[k][:, None, :]) @ W
        Q, logc = _renormalise(Q, logc)
        logs[k] = logc
    return _exp_or_log(logs, log)


def product_norm_bound(params, traj, t=None, log=False):
    """Upper bound prod_{s=k+1}^t max_i|sigma'(z_s)_i| ||W_rec||_2 >= ||dx_t/dx_k||_2; (t+1, B).

    Submultiplicativity of ||.||_2 with ||diag(d)||_2 = max_i |d_i|. For tanh (|tanh'| <= 1)
    and sigmoid (<= 1/4) it gives ||dx_t/dx_k||_2 <= (c ||W_rec||_2)^(t-k) with c = 1 or 1/4:
    vanishing is guaranteed when c ||W_rec||_2 < 1, and nothing is said otherwise.
    """
    params, traj = _checked(params, traj, "product_norm_bound")
    t = _final_step(t, traj.T, "product_norm_bound")
    xp = backend.xp()
    g = xp.abs(_dsigma(traj)).max(axis=2)  # (T, B): ||diag(sigma'(z_s))||_2
    sW = _norm2(params["W_rec"])
    logs = xp.zeros((t + 1, g.shape[1]), dtype=traj.z.dtype)
    with backend.errstate(divide="ignore"):
        step = xp.log(g) + xp.log(sW)
    for k in range(t - 1, -1, -1):
        logs[k] = logs[k + 1] + step[k]
    return _exp_or_log(logs, log)


def adjoint_from_product(params, traj, lam_T, k):
    """lambda_k = (dx_T/dx_k)^T lambda_T (the unrolled many-to-one adjoint, JP eq. 8); (B, m).

    ``lam_T`` (B, m) is lambda_T = W_out^T [sigma_out'(o) o delta] (JP eq. 7), e.g.
    ``rnn.sweep(...).adj.lam[-1]``; k = 0 gives ``adj.lam0``. For inspection and tests: the
    adjoint sweep computes the same vectors with matrix-vector products only.
    """
    params, traj = _checked(params, traj, "adjoint_from_product")
    lam_T = float_array(lam_T, "lam_T", ndim=2, axes=("B", "m"))
    if lam_T.shape != traj.z.shape[1:]:
        raise ValueError("lam_T must have shape (B, m) = %s, got %s"
                         % (tuple(traj.z.shape[1:]), tuple(lam_T.shape)))
    P = jacobian_product(params, traj, k, traj.T)
    return (lam_T[:, None, :] @ P)[:, 0, :]  # row vector lambda_T^T P = (P^T lambda_T)^T


# --- the linear case -------------------------------------------------------------------------
def singular_values(W):
    """Singular values of W (..., m, n), largest first: shape (..., min(m, n)), on the backend."""
    W = float_array(W, "W")
    if W.ndim < 2:
        raise ValueError("W must be a matrix (m, n) or a stack (..., m, n), got shape %s"
                         % (tuple(W.shape),))
    return backend.xp().linalg.svd(W, compute_uv=False)


def spectral_norm(W):
    """sigma_max(W) = ||W||_2 for W (..., m, n): shape (...), on the backend."""
    return singular_values(W)[..., 0]


def spectral_radius(W):
    """rho(W) = max_i |eig_i(W)| of a square W (m, m), as a 0-d array of the backend.

    General eigenvalues are computed on the host (CuPy's ``eigvals`` handles symmetric matrices
    only), with an explicit conversion; rho(W) <= sigma_max(W), with equality for normal W.
    """
    W = _square(W)
    np = backend.np
    rho = np.abs(np.linalg.eigvals(backend.to_numpy(W))).max()
    return backend.asarray(rho, dtype=W.dtype)


def linear_power_norms(W, n, log=False):
    """||W^k||_2 for k = 0..n: shape (n+1,) (the linear case, dx_T/dx_k = W_rec^(T-k)).

    Powers are accumulated renormalised (W^k = c_k Q_k with ||Q_k||_2 = 1), so large ``n``
    gives ``inf`` or 0 instead of overflow errors; ``log=True`` returns log ||W^k||_2.
    """
    W = _square(W)
    n = _index(n, "n")
    if n < 0:
        raise ValueError("n must be >= 0, got %d" % n)
    xp = backend.xp()
    logs = xp.zeros(n + 1, dtype=W.dtype)
    Q = xp.eye(W.shape[0], dtype=W.dtype)
    logc = xp.zeros((), dtype=W.dtype)
    for k in range(1, n + 1):
        Q, logc = _renormalise(W @ Q, logc)
        logs[k] = logc
    return _exp_or_log(logs, log)
