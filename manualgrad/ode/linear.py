"""The linearised heavy-ball ODE: BW's stiffness slides, Theorems 3-4, Proposition 1 and the remark.

HOST-SIDE ANALYSIS MODULE. Everything here is small dense linear algebra on the host: arrays are
converted with :func:`manualgrad.backend.to_numpy` on entry, the math uses NumPy (through
``backend.np``) and ``scipy.linalg`` (``expm``, ``eigvals``, ``schur``), and results are NumPy
arrays. Nothing here is engine math that has to run on CuPy; the HBNODE itself, its adjoint and its
gradients live in :mod:`manualgrad.ode.hbnode` and run on either backend.

Notation (BW HBNODE eqs. 12-13, 17-26). For the linear field f(h) = A h (or, in BW Proposition 1,
for F, the Jacobian df/dh averaged over [t, T]) with A of shape (n, n)::

    B = [[0, I], [A, -gamma I]]                 (2n, 2n)   BW-STIFF: d/dt [h; m] = B [h; m]
    M = int_T^t B ds = (t - T) B                (2n, 2n)   BW eq. (18), constant Jacobian
    [a_h(t), a_m(t)] = [a_h(T), a_m(T)] exp(-M)            BW Theorem 4, rows (B, 2n)

Results, each checked in tests/ode/test_linear.py (docs/hbnode.md has the derivations):

- BW-STIFF: the eigenvalues of B are the roots c of c^2 + gamma c - lambda_i = 0, i.e.
  c = (-gamma +- sqrt(gamma^2 + 4 lambda_i)) / 2 (:func:`b_eigenvalues`). The printed
  (gamma +- sqrt(gamma^2 + 4 lambda_i)) / 2 (:func:`b_eigenvalues_printed`) are the eigenvalues
  of -B; their absolute values, hence the stiffness ratio, are the same.
- BW-STIFF ratio: for positive definite A, S(B) (:func:`stiffness_ratio`) equals the printed
  formula (:func:`stiffness_ratio_printed`); S(B) = sqrt(S(A)) exactly at gamma = 0, and S(B)
  increases strictly with gamma >= 0, so "S(B) <= sqrt(S(A))" holds only at gamma = 0 (with
  equality).
- BW Proposition 1: the eigenvalues of -M are -(t - T) times those of B, so they come in n pairs,
  each the roots of nu^2 - (t - T) gamma nu - (t - T)^2 lambda_i = 0 and summing to
  (t - T) gamma (:func:`eigen_pairs`, :func:`pair_spectrum`).
- BW remark (eqs. 23-26): since each pair sums to (t - T) gamma, the larger real part of a pair
  is at least (t - T) gamma / 2, which is >= (t - T) a when t <= T and gamma <= 2a
  (:func:`remark_margin`, :func:`schur_split`). For t > T, or gamma > 2a, it can fail.
"""
from __future__ import annotations

from dataclasses import dataclass

import scipy.linalg
import scipy.optimize

from .. import backend
from .._validate import float_array, number

__all__ = ["B_matrix", "M_matrix", "M_from_jacobians", "adjoint_via_expm",
           "adjoint_derivatives_expm", "heavy_ball_residual_expm", "b_eigenvalues",
           "b_eigenvalues_printed", "stiffness_ratio",
           "stiffness_ratio_printed", "eigen_pairs", "PairedSpectrum", "pair_spectrum",
           "remark_margin", "SchurSplit", "schur_split", "plot_eigen_pairs",
           "plot_stiffness_vs_gamma", "make_figures"]

np = backend.np


def _square(A, name="A"):
    """``A`` as a host float64 (n, n) array; ValueError naming ``name`` otherwise."""
    A = backend.to_numpy(float_array(A, name, ndim=2, axes=("n", "n"))).astype("float64")
    if A.shape[0] != A.shape[1] or A.shape[0] < 1:
        raise ValueError("%s must be a square (n, n) matrix with n >= 1, got shape %s"
                         % (name, A.shape))
    return A


def _times(t, T):
    return number(t, "t"), number(T, "T")


def _rows(a, n2, name="a_T"):
    """Adjoint rows as a host (B, 2n) array and whether the input was a single (2n,) row."""
    a = backend.to_numpy(float_array(a, name)).astype("float64")
    single = a.ndim == 1
    a2 = a[None, :] if single else a
    if a2.ndim != 2 or a2.shape[1] != n2:
        raise ValueError("%s must have shape (2n,) or (B, 2n) with 2n = %d, got shape %s"
                         % (name, n2, a.shape))
    return a2, single


def B_matrix(A, gamma):
    """B = [[0, I], [A, -gamma I]], shape (2n, 2n), of the linearised HBNODE (BW-STIFF).

    d/dt [h; m] = B [h; m] is BW HBNODE eq. (13) with f(h) = A h (column vectors). With A
    replaced by F, the Jacobian averaged over [t, T], it is H of BW Proposition 1, eq. (19).
    A: (n, n); gamma: a real number.
    """
    A = _square(A)
    gamma = number(gamma, "gamma")
    n = A.shape[0]
    B = np.zeros((2 * n, 2 * n))
    B[:n, n:] = np.eye(n)
    B[n:, :n] = A
    B[n:, n:] = -gamma * np.eye(n)
    return B


def M_matrix(A, gamma, t, T):
    """M = int_T^t [[0, I], [A, -gamma I]] ds = (t - T) B, shape (2n, 2n) (BW Theorem 4, eq. 18).

    Exact for a linear field f(h) = A h; for a nonlinear field use :func:`M_from_jacobians`
    (and see docs/hbnode.md: Theorem 4 is then only a first-order Magnus approximation).
    """
    t, T = _times(t, T)
    return (t - T) * B_matrix(A, gamma)


def M_from_jacobians(ts, Js, gamma):
    """M = int_{ts[0]}^{ts[-1]} [[0, I], [J(s), -gamma I]] ds by the trapezoidal rule (BW eq. 18).

    ts: K >= 2 host times (ts[0] = T, ts[-1] = t, in either order); Js: (K, n, n) Jacobians
    df/dh(h(s)) at those times (one example). Used to show that BW Theorem 4 is not exact when
    the Jacobian changes along the trajectory (the B(s) do not commute).
    """
    ts = np.asarray([number(s, "ts[%d]" % i) for i, s in enumerate(ts)])
    Js = backend.to_numpy(float_array(Js, "Js", ndim=3, axes=("K", "n", "n"))).astype("float64")
    if ts.size < 2 or Js.shape[0] != ts.size or Js.shape[1] != Js.shape[2]:
        raise ValueError("M_from_jacobians: need K >= 2 times and Js of shape (K, n, n); got %d "
                         "times and Js of shape %s" % (ts.size, Js.shape))
    gamma = number(gamma, "gamma")
    w = np.diff(ts)
    Fint = ((Js[1:] + Js[:-1]) * (0.5 * w)[:, None, None]).sum(axis=0)
    n = Js.shape[1]
    M = np.zeros((2 * n, 2 * n))
    span = ts[-1] - ts[0]
    M[:n, n:] = span * np.eye(n)
    M[n:, :n] = Fint
    M[n:, n:] = -gamma * span * np.eye(n)
    return M


def adjoint_via_expm(A, gamma, t, T, a_T):
    """[dL/dh_t, dL/dm_t] = [dL/dh_T, dL/dm_T] exp(-M) for f(h) = A h (BW Theorem 4, eq. 18).

    a_T: rows (2n,) or (B, 2n) holding [a_h(T), a_m(T)]; returns the same shape (host array).
    Computed with ``scipy.linalg.expm``. Exact for the linear HBNODE; it solves the adjoint
    system da/dt = -a B (BW Theorem 2, with the sign fix) from T to t.
    """
    M = M_matrix(A, gamma, t, T)
    a2, single = _rows(a_T, M.shape[0])
    out = a2 @ scipy.linalg.expm(-M)
    return out[0] if single else out


def adjoint_derivatives_expm(A, gamma, t, T, a_T):
    """(a, da/dt, d2a/dt2) of a(t) = a_T exp(-(t - T) B), each (B, 2n) (host arrays).

    Differentiating the exponential: da/dt = -a B and d2a/dt2 = a B^2 (rows). Used for the exact
    check of BW Theorem 3 (:func:`heavy_ball_residual_expm`).
    """
    B = B_matrix(A, gamma)
    a = adjoint_via_expm(A, gamma, t, T, a_T)
    a = a[None, :] if a.ndim == 1 else a
    da = -a @ B
    return a, da, -da @ B


def heavy_ball_residual_expm(A, gamma, t, T, a_T):
    """BW Theorem 3 residuals r = a'' - gamma a' - a A for both adjoint components, exactly.

    Returns ``(r_h, r_m)``, each (B, n): the residual of BW eq. (15) for a_h = dL/dh(t) and for
    a_m = dL/dm(t), with a(t) from :func:`adjoint_via_expm` and its derivatives from
    :func:`adjoint_derivatives_expm`. For a linear field both vanish (to rounding): a_m satisfies
    eq. (15) for any f, and a_h = gamma a_m - a_m' satisfies it too when df/dh is constant
    (docs/hbnode.md). For nonlinear f only a_m does (see :func:`manualgrad.ode.hbnode`).
    """
    A = _square(A)
    gamma = number(gamma, "gamma")
    n = A.shape[0]
    a, da, dda = adjoint_derivatives_expm(A, gamma, t, T, a_T)
    r = dda - gamma * da
    return r[:, :n] - a[:, :n] @ A, r[:, n:] - a[:, n:] @ A


def b_eigenvalues(A, gamma):
    """Eigenvalues of B = [[0, I], [A, -gamma I]] from those of A (BW-STIFF, sign corrected).

    Each eigenvalue lambda_i of A gives the two roots of c^2 + gamma c - lambda_i = 0::

        c_{i,1} = (-gamma + sqrt(gamma^2 + 4 lambda_i)) / 2,  c_{i,2} = (-gamma - sqrt(...)) / 2

    (complex square root). Returns a complex (n, 2) host array, row i the pair of lambda_i (the
    order of A's eigenvalues is ``scipy.linalg.eigvals``'s). BW prints (gamma +- sqrt(...)) / 2,
    which are the eigenvalues of -B (:func:`b_eigenvalues_printed`).
    """
    A = _square(A)
    gamma = number(gamma, "gamma")
    lam = scipy.linalg.eigvals(A).astype("complex128")
    sq = np.sqrt(gamma * gamma + 4.0 * lam)
    return np.stack([(-gamma + sq) / 2.0, (-gamma - sq) / 2.0], axis=1)


def b_eigenvalues_printed(A, gamma):
    """BW-STIFF as printed: (gamma +- sqrt(gamma^2 + 4 lambda_i)) / 2, complex (n, 2).

    These solve c^2 - gamma c - lambda_i = 0: they are the eigenvalues of -B, not of B (kept to
    test and document the slip; the absolute values agree with :func:`b_eigenvalues`).
    """
    return -b_eigenvalues(A, gamma)[:, ::-1]


def _eigs(X, name="X"):
    X = backend.to_numpy(X) if backend.is_array(X) else np.asarray(X)
    X = np.asarray(X)
    if X.ndim == 2:
        return scipy.linalg.eigvals(_square(X, name))
    if X.ndim == 1 and X.size >= 1:
        return X.astype("complex128")
    raise ValueError("%s must be a square matrix or a 1-d array of eigenvalues, got shape %s"
                     % (name, X.shape))


def stiffness_ratio(X, part="abs"):
    """Stiffness ratio S = max |lambda| / min |lambda| over the eigenvalues of X (BW-STIFF).

    X: a square matrix, or a 1-d array of its eigenvalues. ``part="abs"`` uses absolute values
    (the lecture's definition: "the ratio between the largest and the smallest eigenvalues (in
    absolute value)"); ``part="real"`` uses |Re lambda|, the usual definition for stiff ODEs.
    Returns ``inf`` when the smallest one is 0.
    """
    if part not in ("abs", "real"):
        raise ValueError("stiffness_ratio: part must be 'abs' or 'real', got %r" % (part,))
    lam = _eigs(X)
    v = np.abs(lam) if part == "abs" else np.abs(lam.real)
    lo, hi = float(v.min()), float(v.max())
    return float("inf") if lo == 0.0 else hi / lo


def stiffness_ratio_printed(A, gamma):
    """BW-STIFF's printed stiffness ratio of B for positive definite A::

        S(B) = (gamma + sqrt(gamma^2 + 4 lambda_max)) / |gamma - sqrt(gamma^2 + 4 lambda_min)|

    For A with real positive eigenvalues (positive definite A, the lecture's case); ValueError
    otherwise. At gamma = 0 it equals sqrt(lambda_max / lambda_min) = sqrt(S(A)).
    """
    A = _square(A)
    gamma = number(gamma, "gamma", minimum=0.0)
    lam = scipy.linalg.eigvals(A)
    if np.abs(lam.imag).max() > 1e-12 * max(1.0, np.abs(lam).max()) or lam.real.min() <= 0:
        raise ValueError("stiffness_ratio_printed: A must have real positive eigenvalues "
                         "(positive definite), got eigenvalues %s" % (lam,))
    lmin, lmax = float(lam.real.min()), float(lam.real.max())
    return (gamma + np.sqrt(gamma ** 2 + 4 * lmax)) / abs(gamma - np.sqrt(gamma ** 2 + 4 * lmin))


def eigen_pairs(A, gamma, t, T):
    """The predicted eigenvalue pairs of -M, complex (n, 2) (BW Proposition 1, eqs. 19-22).

    -M = -(t - T) H with H = [[0, I], [F, -gamma I]] (F = A here). Row i holds the two roots of
    nu^2 - (t - T) gamma nu - (t - T)^2 lambda_i = 0 (lambda_i an eigenvalue of F), i.e.
    -(t - T) times the pair of :func:`b_eigenvalues`; each row sums to (t - T) gamma (Vieta).
    """
    t, T = _times(t, T)
    return -(t - T) * b_eigenvalues(A, gamma)


@dataclass
class PairedSpectrum:
    """The numerically computed eigenvalues of -M grouped into the pairs of BW Proposition 1.

    pairs (n, 2) complex: ``scipy.linalg.eigvals(-M)`` arranged so that row i matches
    ``predicted[i]``; predicted (n, 2): :func:`eigen_pairs`; match_error: max |pairs - predicted|;
    target: (t - T) gamma, the common pair sum; sums (n,): pairs.sum(axis=1).
    """

    pairs: object
    predicted: object
    match_error: float
    target: float

    @property
    def sums(self):
        return self.pairs.sum(axis=1)


def pair_spectrum(A, gamma, t, T):
    """Group eig(-M) (computed by scipy, independently of the theory) into BW Proposition 1's pairs.

    The 2n numerical eigenvalues are matched one-to-one to the 2n predicted ones (a minimum-cost
    assignment on |difference|), so ``match_error`` small plus ``sums`` equal to (t - T) gamma
    is the proposition checked on the actual spectrum.
    """
    t, T = _times(t, T)
    M = M_matrix(A, gamma, t, T)
    num = scipy.linalg.eigvals(-M)
    pred = eigen_pairs(A, gamma, t, T)
    flat = pred.reshape(-1)
    cost = np.abs(flat[:, None] - num[None, :])
    rows, cols = scipy.optimize.linear_sum_assignment(cost)
    matched = np.empty_like(flat)
    matched[rows] = num[cols]
    err = float(cost[rows, cols].max())
    return PairedSpectrum(matched.reshape(pred.shape), pred, err, (t - T) * number(gamma, "gamma"))


def remark_margin(A, gamma, t, T, a):
    """min over the pairs of [max real part in the pair] - (t - T) a (BW remark, eqs. 23-26).

    Non-negative exactly when "for every pair of eigenvalues of -M there is at least one whose
    real part is no less than (t - T) a". Uses the numerical spectrum of -M paired by
    :func:`pair_spectrum`. Holds (up to rounding) when t <= T and gamma <= 2a (the pair's real
    parts sum to (t - T) gamma, so the larger is >= (t - T) gamma / 2 >= (t - T) a).
    """
    a = number(a, "a", positive=True)
    t, T = _times(t, T)
    ps = pair_spectrum(A, gamma, t, T)
    return float((ps.pairs.real.max(axis=1) - (t - T) * a).min())


@dataclass
class SchurSplit:
    """Sorted complex Schur form -M = Q U Q^H split as in BW eqs. (23), (26).

    Q (2n, 2n) unitary, U upper triangular with the k eigenvalues with real part >= threshold
    first (the block U_L = U[:k, :k]) and the others after (U_V); threshold = (t - T) a.
    """

    Q: object
    U: object
    k: int
    threshold: float

    @property
    def U_L(self):
        return self.U[:self.k, :self.k]


def schur_split(A, gamma, t, T, a, tol=None):
    """Sorted Schur decomposition of -M for BW's remark (eqs. 23-26); a :class:`SchurSplit`.

    Eigenvalues with Re >= (t - T) a - tol go first. ``tol`` (default 1e-10 (1 + ||M||_F))
    absorbs rounding at the edge gamma = 2a, where complex pairs sit exactly on the threshold.
    BW writes Q orthogonal and Q^T; with complex eigenvalues Q must be unitary (Q^H).
    """
    a = number(a, "a", positive=True)
    t, T = _times(t, T)
    M = M_matrix(A, gamma, t, T)
    thr = (t - T) * a
    tol = 1e-10 * (1.0 + float(np.linalg.norm(M))) if tol is None else number(tol, "tol", 0.0)
    U, Q, k = scipy.linalg.schur(-M.astype("complex128"), output="complex",
                                 sort=lambda x: x.real >= thr - tol)
    return SchurSplit(Q, U, int(k), thr)


def plot_eigen_pairs(A, gamma, t, T, a=None, path=None, ax=None):
    """Plot eig(-M) in the complex plane with each Proposition 1 pair joined by a segment.

    Every segment's midpoint lies at (t - T) gamma / 2 on the real axis (the pair sums to
    (t - T) gamma); a dashed line marks Re = (t - T) a when ``a`` is given (BW remark). Saves
    to ``path`` if given; returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    t, T = _times(t, T)
    gamma = number(gamma, "gamma")
    ps = pair_spectrum(A, gamma, t, T)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(8.0, 4.5))
    else:
        fig = ax.figure
    colors = plt.cm.viridis(np.linspace(0.0, 0.9, ps.pairs.shape[0]))
    for i, (p, c) in enumerate(zip(ps.pairs, colors)):
        ax.plot(p.real, p.imag, "-", color=c, lw=1.0, alpha=0.7)
        ax.plot(p.real, p.imag, "o", color=c, ms=6,
                label="pair %d: sum = %.4f%+.1ei" % (i + 1, p.sum().real, p.sum().imag))
    mid = ps.target / 2.0
    ax.axvline(mid, color="k", lw=0.8, ls=":", label="Re = (t-T) gamma / 2 = %.3f" % mid)
    ax.plot([mid], [0.0], "kx", ms=9)
    if a is not None:
        ax.axvline((t - T) * a, color="tab:red", lw=1.0, ls="--",
                   label="Re = (t-T) a = %.3f" % ((t - T) * a))
    ax.axhline(0.0, color="0.6", lw=0.5)
    ax.set_xlabel("Re")
    ax.set_ylabel("Im")
    ax.set_title("eigenvalues of -M, n = %d, gamma = %.2f, t - T = %.2f\n(each pair sums to "
                 "(t - T) gamma = %.3f)" % (ps.pairs.shape[0], gamma, t - T, ps.target), fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if path is not None:
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    return fig


def plot_stiffness_vs_gamma(A, gammas, path=None, ax=None):
    """Plot S(B(gamma)) (numerical and BW's formula) against gamma, with sqrt(S(A)) and S(A).

    A: positive definite (n, n); gammas: host sequence of gamma >= 0. Shows that S(B) equals
    sqrt(S(A)) at gamma = 0 and grows with gamma (BW-STIFF). Returns the Figure.
    """
    import matplotlib.pyplot as plt

    A = _square(A)
    gammas = np.asarray([number(g, "gammas[%d]" % i, minimum=0.0) for i, g in enumerate(gammas)])
    S_num = [stiffness_ratio(B_matrix(A, g)) for g in gammas]
    S_bw = [stiffness_ratio_printed(A, g) for g in gammas]
    S_A = stiffness_ratio(A)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.0, 4.0))
    else:
        fig = ax.figure
    ax.plot(gammas, S_num, "-", color="tab:blue", lw=2, label="S(B), eigenvalues of B")
    ax.plot(gammas, S_bw, "--", color="tab:orange", lw=1.2, label="S(B), BW's formula")
    ax.axhline(np.sqrt(S_A), color="k", ls=":", label="sqrt(S(A)) = %.2f" % np.sqrt(S_A))
    ax.axhline(S_A, color="0.5", ls="-.", label="S(A) = %.1f" % S_A)
    ax.set_xlabel("gamma")
    ax.set_ylabel("stiffness ratio max|lambda| / min|lambda|")
    ax.set_yscale("log")
    ax.set_title("linearised HBNODE, A positive definite (n = %d):\nS(B) = sqrt(S(A)) at "
                 "gamma = 0 and grows with gamma" % A.shape[0], fontsize=9)
    ax.legend(fontsize=8)
    if path is not None:
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    return fig


def make_figures(outdir="docs/figures", seed=0):
    """Write docs/figures/hbnode_eigs.png and hbnode_stiffness.png (the figures of docs/hbnode.md).

    hbnode_eigs: eig(-M) for A = N(0, 1/n) (n = 4, ``seed``), gamma = 0.8, t = 0, T = 2, a = 0.5.
    hbnode_stiffness: S(B) against gamma for A = Q diag(0.2, 1, 3, 10) Q^T (Q from ``seed``).
    Returns the two paths.
    """
    import os

    import matplotlib.pyplot as plt

    os.makedirs(outdir, exist_ok=True)
    rng = backend.host_rng(seed)
    n = 4
    A = rng.standard_normal((n, n)) / np.sqrt(n)
    p1 = os.path.join(outdir, "hbnode_eigs.png")
    plt.close(plot_eigen_pairs(A, 0.8, 0.0, 2.0, a=0.5, path=p1))
    Q = np.linalg.qr(rng.standard_normal((n, n)))[0]
    S = (Q * np.array([0.2, 1.0, 3.0, 10.0])) @ Q.T
    p2 = os.path.join(outdir, "hbnode_stiffness.png")
    plt.close(plot_stiffness_vs_gamma(0.5 * (S + S.T), np.linspace(0.0, 3.0, 61), path=p2))
    return p1, p2
