"""Fused GPU kernels for the recurrences (CuPy only): the same equations, fewer host calls.

On a GPU the time of a recurrent sweep at small and medium sizes is set by the host, not by the
arithmetic: every CuPy operation is a kernel launch costing microseconds of Python and driver
work, and a step of the NumPy path (``rnn._forward``: a product, an add, a tanh, a copy) is four
of them. This module runs the same per-step equations with the fewest host calls:

* **steps** strategy: per step, ONE cuBLAS product into a preallocated row (called through
  CuPy's thin cuBLAS binding on raw device pointers, the cheapest path CuPy offers) and ONE
  element-wise kernel that does all of the step's element-wise work;
* **persistent** strategy (vanilla RNN only): the whole recurrence in ONE cooperative kernel that
  loops over the steps itself, a grid-wide barrier between steps, the product done by the kernel
  in shared-memory tiles (what cuDNN's persistent RNN kernels do). It removes the per-step launches
  entirely and wins while one step's product is small; at large B*m^2 cuBLAS's product wins.

Each kernel's CUDA source carries the equations it implements, next to the NumPy lines of
:mod:`manualgrad.rnn` / :mod:`manualgrad.cells.lstm` / :mod:`manualgrad.coadjoint` that it
mirrors; those NumPy paths stay the reference (tests compare the two to 1e-12 in float64).
Strategy: ``backend.set_fused("auto" | "steps" | "persistent" | False)``; "auto" (the default)
takes the persistent kernel when B*m^2 <= :data:`PERSISTENT_MAX_WORK` and the steps strategy
otherwise. Kernels are compiled on first use, per dtype and activation, and cached.

Layout conventions as everywhere in the engine: time-major, C-contiguous (T, B, m) arrays, rows
are examples, so "W v" is the row-major product ``v @ W.T``.
"""
from __future__ import annotations

from . import backend

import warnings

__all__ = ["PERSISTENT_MAX_WORK", "ACTIVATIONS", "fuses", "strategy_for", "rnn_forward",
           "rnn_adjoint", "lstm_forward", "lstm_adjoint", "coadjoint_gamma", "coadjoint_xi",
           "matmul_into"]

PERSISTENT_MAX_WORK = 1 << 26
"""Largest B*m^2 for which "auto" takes the persistent RNN kernel (about B = 1024, m = 256)."""

_BLOCK = 256  # threads per block of the element-wise kernels
_TILE = 16    # the persistent kernels' product tiles are _TILE x _TILE (one thread per output)

# ----------------------------------------------------------------------------- activations
# sigma(z) and sigma'(z) given a = sigma(z), exactly the formulas of manualgrad.activations
_ACT = {
    "tanh": ("return tanh(z);",
             "return (real)1 - a * a;"),
    "sigmoid": ("return (real)0.5 * ((real)1 + tanh((real)0.5 * z));",  # never overflows
                "return a * ((real)1 - a);"),
    "identity": ("return z;",
                 "return (real)1;"),
    "relu": ("return z > (real)0 ? z : (real)0;",
             "return z > (real)0 ? (real)1 : (real)0;"),
    "softplus": ("return fmax(z, (real)0) + log1p(exp(-fabs(z)));",
                 "return (real)0.5 * ((real)1 + tanh((real)0.5 * z));"),  # sigma' = sigmoid
}

ACTIVATIONS = tuple(_ACT)
"""Hidden activations with fused kernels (the registry's own :data:`manualgrad.activations.HIDDEN`)."""


def fuses(activation=None):
    """True when the engine should run its fused GPU path: CuPy, fusion on, and ``activation``
    (an :class:`~manualgrad.activations.Activation`, or None for activation-free loops) is one
    of the registry's own hidden activations (a user-made Activation takes the NumPy path)."""
    if not backend.fused():
        return False
    if activation is None:
        return True
    from .activations import HIDDEN
    return HIDDEN.get(activation.name) is activation and activation.name in _ACT


_PRELUDE = r"""
typedef %(real)s real;
__device__ __forceinline__ real act(real z) { %(act)s }           // sigma(z)
__device__ __forceinline__ real dact(real z, real a) { %(dact)s }  // sigma'(z), a = sigma(z)
__device__ __forceinline__ real sigm(real z) { return (real)0.5 * ((real)1 + tanh((real)0.5 * z)); }
#define GRID_STRIDE(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)
"""

# ----------------------------------------------------------------------------- kernel sources
_SOURCES = {
    # rnn._forward, per step after the product z_t += W_rec x_{t-1}:   x[t + 1] = act.f(z[t])
    "rnn_step_forward": r"""
extern "C" __global__ void rnn_step_forward(const real* __restrict__ z, real* __restrict__ x,
                                            long long n) {
    GRID_STRIDE(i, n) x[i] = act(z[i]);                       // x_t = sigma(z_t)      (JP 5)
}""",
    # rnn._adjoint, per step before the product:   lam_z[k] = sigma'(z_k) o lam[k]
    "rnn_step_adjoint": r"""
extern "C" __global__ void rnn_step_adjoint(const real* __restrict__ z, const real* __restrict__ x,
                                            const real* __restrict__ lam, real* __restrict__ lam_z,
                                            long long n) {
    GRID_STRIDE(i, n) lam_z[i] = dact(z[i], x[i]) * lam[i];  // sigma'(z_k) o lambda_k  (JP 8)
}""",
    # coadjoint._coadjoint_gradients, step 1:   gamma_k = mu_k + s_k o (W_rec gamma_{k-1})
    "madd": r"""
extern "C" __global__ void madd(const real* __restrict__ add, const real* __restrict__ s,
                                const real* __restrict__ v, real* __restrict__ out, long long n) {
    GRID_STRIDE(i, n) out[i] = s[i] * v[i] + add[i];
}""",
    # coadjoint._coadjoint_gradients, step 3:   zeta_k = r_k + s_k o xi_k   (in place)
    "addmul": r"""
extern "C" __global__ void addmul(real* __restrict__ acc, const real* __restrict__ s,
                                  const real* __restrict__ v, long long n) {
    GRID_STRIDE(i, n) acc[i] += s[i] * v[i];
}""",
    # cells/lstm._forward, per step after the product a_t += W_h h_{t-1} (a: B x 4m, gate blocks
    # i, f, o, g of m columns each):
    #   i, f, o = sigmoid(a_i, a_f, a_o)   g = tanh(a_g)
    #   c_t = f o c_{t-1} + i o g          h_t = o o tanh(c_t)
    "lstm_step_forward": r"""
extern "C" __global__ void lstm_step_forward(const real* __restrict__ a, real* __restrict__ gates,
                                             const real* __restrict__ c_prev, real* __restrict__ c,
                                             real* __restrict__ tc, real* __restrict__ h,
                                             long long m, long long n) {
    GRID_STRIDE(k, n) {                              // k = b * m + j: example b, unit j
        const long long b = k / m, j = k - b * m, r = 4 * m * b + j;
        const real i = sigm(a[r]), f = sigm(a[r + m]), o = sigm(a[r + 2 * m]);
        const real g = tanh(a[r + 3 * m]);
        gates[r] = i; gates[r + m] = f; gates[r + 2 * m] = o; gates[r + 3 * m] = g;
        const real ct = f * c_prev[k] + i * g;       // c_t = f o c_{t-1} + i o g
        const real tct = tanh(ct);
        c[k] = ct; tc[k] = tct; h[k] = o * tct;     // h_t = o o tanh(c_t)
    }
}""",
    # cells/lstm._adjoint, per step k before the product lam_{k-1} = W_h^T zeta_k:
    #   cbar_k = lam_c_k + lam_k o o_k o (1 - tanh^2 c_k)
    #   zeta_k = [cbar o g o i(1-i); cbar o c_{k-1} o f(1-f); lam o tanh c_k o o(1-o); cbar o i o (1-g^2)]
    #   lam_c_{k-1} = f_k o cbar_k      (written when k > 1, i.e. lam_c_prev is given)
    "lstm_step_adjoint": r"""
extern "C" __global__ void lstm_step_adjoint(const real* __restrict__ gates, const real* __restrict__ tc,
                                             const real* __restrict__ c_prev, const real* __restrict__ lam,
                                             const real* __restrict__ lam_c, real* __restrict__ cbar,
                                             real* __restrict__ zeta, real* __restrict__ lam_c_prev,
                                             long long m, long long n, int write_prev) {
    GRID_STRIDE(k, n) {
        const long long b = k / m, j = k - b * m, r = 4 * m * b + j;
        const real i = gates[r], f = gates[r + m], o = gates[r + 2 * m], g = gates[r + 3 * m];
        const real tct = tc[k], L = lam[k];
        const real cb = L * (o * ((real)1 - tct * tct)) + lam_c[k];
        cbar[k] = cb;
        zeta[r] = cb * (g * (i * ((real)1 - i)));                 // i
        zeta[r + m] = cb * (c_prev[k] * (f * ((real)1 - f)));     // f
        zeta[r + 2 * m] = L * (tct * (o * ((real)1 - o)));        // o
        zeta[r + 3 * m] = cb * (i * ((real)1 - g * g));           // g
        if (write_prev) lam_c_prev[k] = f * cb;                   // the cell-state path
    }
}""",
    # The whole forward recurrence of rnn._forward in one cooperative kernel, t = 1..T:
    #   z_t += W_rec x_{t-1}     (z_t holds W_in u_t + b1 on entry)
    #   x_t  = sigma(z_t)
    # Each block computes _TILE x _TILE tiles of (example b, unit i) outputs, the product through
    # shared memory; a grid-wide barrier separates the steps (x_t is read by every block).
    "rnn_forward_persistent": r"""
#include <cooperative_groups.h>
extern "C" __global__ void rnn_forward_persistent(const real* __restrict__ W, real* z, real* x,
                                                  int T, int B, int m) {
    cooperative_groups::grid_group grid = cooperative_groups::this_grid();
    __shared__ real Xs[TILE][TILE + 1];   // x_{t-1}[b0 + ty][j0 + tx]
    __shared__ real Ws[TILE][TILE + 1];   // W_rec[i0 + ty][j0 + tx]
    const int tx = threadIdx.x % TILE, ty = threadIdx.x / TILE;
    const int tiles_i = (m + TILE - 1) / TILE, ntiles = ((B + TILE - 1) / TILE) * tiles_i;
    const size_t step = (size_t)B * m;
    for (int t = 0; t < T; ++t) {
        const real* xp = x + t * step;    // x_{t-1} (row t of x: x[0] = x_0)
        real* zt = z + t * step;           // z_t
        real* xt = x + (t + 1) * step;     // x_t
        for (int tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
            const int b0 = (tile / tiles_i) * TILE, i0 = (tile % tiles_i) * TILE;
            real acc = 0;                  // (W_rec x_{t-1})_i for example b = b0 + ty, i = i0 + tx
            for (int j0 = 0; j0 < m; j0 += TILE) {
                Xs[ty][tx] = (b0 + ty < B && j0 + tx < m) ? xp[(size_t)(b0 + ty) * m + j0 + tx] : (real)0;
                Ws[ty][tx] = (i0 + ty < m && j0 + tx < m) ? W[(size_t)(i0 + ty) * m + j0 + tx] : (real)0;
                __syncthreads();
                for (int jj = 0; jj < TILE; ++jj) acc += Xs[ty][jj] * Ws[tx][jj];
                __syncthreads();
            }
            const int b = b0 + ty, i = i0 + tx;
            if (b < B && i < m) {
                const size_t k = (size_t)b * m + i;
                const real zz = zt[k] + acc;   // z_t = W_rec x_{t-1} + W_in u_t + b1   (JP 5)
                zt[k] = zz;
                xt[k] = act(zz);               // x_t = sigma(z_t)
            }
        }
        grid.sync();                           // x_t complete before step t + 1 reads it
    }
}""",
    # The whole adjoint recurrence of rnn._adjoint in one cooperative kernel, k = T..1:
    #   lam_z_k = sigma'(z_k) o lambda_k,   lambda_{k-1} (+)= W_rec^T lam_z_k   (JP 8)
    # On entry lam[T-1] holds lambda_T (JP 7) and, when accumulate != 0 (many-to-many), every row
    # lam[k-1] holds its step's output term W_out^T [sigma_out'(o_k) o delta_k].
    "rnn_adjoint_persistent": r"""
#include <cooperative_groups.h>
extern "C" __global__ void rnn_adjoint_persistent(const real* __restrict__ W, const real* __restrict__ z,
                                                  const real* __restrict__ x, real* lam, real* lam_z,
                                                  int T, int B, int m, int accumulate) {
    cooperative_groups::grid_group grid = cooperative_groups::this_grid();
    __shared__ real Ls[TILE][TILE + 1];   // lam_z_k[b0 + ty][j0 + tx]
    __shared__ real Ws[TILE][TILE + 1];   // W_rec[j0 + ty][i0 + tx]
    const int tx = threadIdx.x % TILE, ty = threadIdx.x / TILE;
    const int tiles_i = (m + TILE - 1) / TILE, ntiles = ((B + TILE - 1) / TILE) * tiles_i;
    const size_t step = (size_t)B * m;
    {   // lam_z_T = sigma'(z_T) o lambda_T
        const size_t o = (size_t)(T - 1) * step;
        for (size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x; k < step;
             k += (size_t)blockDim.x * gridDim.x)
            lam_z[o + k] = dact(z[o + k], x[o + step + k]) * lam[o + k];
    }
    grid.sync();
    for (int t = T - 1; t >= 1; --t) {        // row t is step k = t + 1: lambda_{k-1} is row t - 1
        const real* lz = lam_z + t * step;
        real* lp = lam + (t - 1) * step;
        real* lzp = lam_z + (t - 1) * step;
        const real* zp = z + (t - 1) * step;
        const real* xk = x + t * step;         // x_{k-1} = sigma(z_{k-1})
        for (int tile = blockIdx.x; tile < ntiles; tile += gridDim.x) {
            const int b0 = (tile / tiles_i) * TILE, i0 = (tile % tiles_i) * TILE;
            real acc = 0;                      // (W_rec^T lam_z_k)_i for example b
            for (int j0 = 0; j0 < m; j0 += TILE) {
                Ls[ty][tx] = (b0 + ty < B && j0 + tx < m) ? lz[(size_t)(b0 + ty) * m + j0 + tx] : (real)0;
                Ws[ty][tx] = (j0 + ty < m && i0 + tx < m) ? W[(size_t)(j0 + ty) * m + i0 + tx] : (real)0;
                __syncthreads();
                for (int jj = 0; jj < TILE; ++jj) acc += Ls[ty][jj] * Ws[jj][tx];
                __syncthreads();
            }
            const int b = b0 + ty, i = i0 + tx;
            if (b < B && i < m) {
                const size_t k = (size_t)b * m + i;
                const real l = accumulate ? lp[k] + acc : acc;   // lambda_{k-1}   (JP 8)
                lp[k] = l;
                lzp[k] = dact(zp[k], xk[k]) * l;                 // lam_z_{k-1}
            }
        }
        grid.sync();                           // lam_z_{k-1} complete before the next step reads it
    }
}""",
}

_COOPERATIVE = ("rnn_forward_persistent", "rnn_adjoint_persistent")
_ACT_FREE = ("madd", "addmul", "lstm_step_forward", "lstm_step_adjoint")
_cache = {}


def source(name, dtype, activation=None):
    """The complete CUDA source of kernel ``name`` for ``dtype`` and the hidden ``activation``."""
    dt = backend.np.dtype(dtype).name
    if name in _ACT_FREE:
        activation = "identity"
    if activation not in _ACT:
        raise ValueError("no fused kernel for activation %r (fused: %s); use "
                         "backend.set_fused(False)" % (activation, ", ".join(_ACT)))
    f, df = _ACT[activation]
    src = _PRELUDE % {"real": {"float64": "double", "float32": "float"}[dt], "act": f, "dact": df}
    return src.replace("TILE", str(_TILE)) + _SOURCES[name].replace("TILE", str(_TILE))


def _compile(name, src):
    return backend.xp().RawKernel(src, name, enable_cooperative_groups=name in _COOPERATIVE)


def _kernel(name, dtype, activation=None):
    """The compiled kernel ``name`` for ``dtype`` (float32/float64) and ``activation`` (cached)."""
    key = (name, backend.np.dtype(dtype).name, "identity" if name in _ACT_FREE else activation)
    k = _cache.get(key)
    if k is None:
        k = _cache[key] = _compile(name, source(name, dtype, activation))
    return k


def _grid(n):
    return (min((n + _BLOCK - 1) // _BLOCK, _device()["sms"] * 16),)


def _launch(n):
    """``(grid, block, n)`` for an element-wise kernel over n entries (n as the kernel's int64)."""
    return _grid(n), (_BLOCK,), backend.np.int64(n)


def _device():
    cp = backend.xp()
    dev = cp.cuda.Device()
    key = ("device", dev.id)
    info = _cache.get(key)
    if info is None:
        info = {"sms": int(dev.attributes["MultiProcessorCount"])}
        _cache[key] = info
    return info


def _address(a):
    """The raw device address of array ``a``'s first element (CuPy: ``a.data.ptr``)."""
    return a.data.ptr


def _ptr(a, row=0):
    """Raw device pointer to row ``row`` of the C-contiguous array ``a`` (rows along axis 0)."""
    return _address(a) + row * (a.size // a.shape[0]) * a.itemsize


# ----------------------------------------------------------------------------- products
class _Gemm:
    """C (M x N) = A (M x K) @ op(Bm) + beta C on raw pointers of row-major arrays (cuBLAS).

    cuBLAS is column-major: a row-major X is the column-major X^T, so the call computes
    C^T = op(Bm)^T A^T with the operands swapped. ``trans_b``: op(Bm) = Bm^T, Bm stored (N x K);
    else op(Bm) = Bm, stored (K x N).
    """

    def __init__(self, dtype, M, N, K, trans_b):
        cublas, self.handle = backend.cublas()
        self.fn = cublas.dgemm if backend.np.dtype(dtype) == backend.np.float64 else cublas.sgemm
        self.args = (cublas.CUBLAS_OP_T if trans_b else cublas.CUBLAS_OP_N, cublas.CUBLAS_OP_N,
                     N, M, K)
        self.lda, self.ldb, self.ldc = (K if trans_b else N), K, N

    def __call__(self, C, A, Bm, beta=0.0):
        self.fn(self.handle, *self.args, 1.0, Bm, self.lda, A, self.ldb, beta, C, self.ldc)


def matmul_into(out, a, b, trans_b=False, accumulate=False):
    """``out (+)= a @ b`` (or ``a @ b.T``) into the preallocated C-contiguous ``out``, via cuBLAS.

    a (M, K), b (K, N) (or (N, K) with ``trans_b``), out (M, N); all C-contiguous, one dtype.
    """
    M, K = a.shape
    N = b.shape[0] if trans_b else b.shape[1]
    _Gemm(out.dtype, M, N, K, trans_b)(_address(out), _address(a), _address(b),
                                       1.0 if accumulate else 0.0)


def strategy_for(B, m):
    """'persistent' or 'steps': what the active fused mode runs for a (B, m) vanilla RNN."""
    mode = backend.fused_mode()
    if mode == "auto":
        if _cache.get("persistent_unavailable") or B * m * m > PERSISTENT_MAX_WORK:
            return "steps"
        return "persistent"
    return mode


def _contiguous(W, dtype):
    return backend.xp().ascontiguousarray(W, dtype=dtype)


# ----------------------------------------------------------------------------- the vanilla RNN
def rnn_forward(W_rec, x, z, activation):
    """JP eq. (5) for t = 1..T, in place: ``z`` (T, B, m) holds W_in u_t + b1 on entry and z_t on
    exit; ``x`` (T+1, B, m) holds x_0 in row 0 on entry and x_t in row t on exit.

    The steps strategy: per step ``z[t] += x[t] @ W_rec.T`` (cuBLAS, beta = 1) and one kernel
    ``x[t+1] = sigma(z[t])``; the persistent strategy: one kernel for all steps.
    """
    T, B, m = z.shape
    W_rec = _contiguous(W_rec, x.dtype)
    i32 = backend.np.int32
    if strategy_for(B, m) == "persistent" and _persistent(
            "rnn_forward_persistent", x.dtype, activation, B, m,
            (W_rec, z, x, i32(T), i32(B), i32(m))):
        return
    gemm = _Gemm(x.dtype, B, m, m, trans_b=True)
    act = _kernel("rnn_step_forward", x.dtype, activation)
    grid, block, nn = _launch(B * m)
    W = _address(W_rec)
    for t in range(T):
        zt, xt = _ptr(z, t), _ptr(x, t)
        gemm(zt, xt, W, 1.0)                       # z_t += W_rec x_{t-1}
        act(grid, block, (zt, _ptr(x, t + 1), nn))  # x_t = sigma(z_t)


def rnn_adjoint(W_rec, z, x, lam, lam_z, activation, many_to_many):
    """JP eq. (8) for k = T..1, in place: on entry ``lam[T-1]`` = lambda_T (and, many-to-many,
    every row its output term); on exit ``lam`` (T, B, m) holds lambda_k and ``lam_z`` (T, B, m)
    holds sigma'(z_k) o lambda_k, row k-1 for step k. ``x`` is the (T+1, B, m) trajectory.
    """
    T, B, m = z.shape
    W_rec = _contiguous(W_rec, x.dtype)
    z, x = _contiguous(z, x.dtype), _contiguous(x, x.dtype)
    i32 = backend.np.int32
    if strategy_for(B, m) == "persistent" and _persistent(
            "rnn_adjoint_persistent", x.dtype, activation, B, m,
            (W_rec, z, x, lam, lam_z, i32(T), i32(B), i32(m), i32(1 if many_to_many else 0))):
        return
    gemm = _Gemm(x.dtype, B, m, m, trans_b=False)
    dsig = _kernel("rnn_step_adjoint", x.dtype, activation)
    grid, block, nn = _launch(B * m)
    W = _address(W_rec)
    beta = 1.0 if many_to_many else 0.0
    for k in range(T - 1, -1, -1):  # row k is step k + 1
        dsig(grid, block, (_ptr(z, k), _ptr(x, k + 1), _ptr(lam, k), _ptr(lam_z, k), nn))
        if k:
            gemm(_ptr(lam, k - 1), _ptr(lam_z, k), W, beta)  # lambda_{k-1} (+)= W_rec^T lam_z_k


def _persistent(name, dtype, activation, B, m, args):
    """Launch a persistent kernel; True when it ran. In "auto" mode a kernel that cannot be built
    or launched cooperatively here (no cooperative launch, an NVRTC without the headers) is
    reported once with a warning and the steps strategy is used from then on; in "persistent"
    mode the error is raised."""
    tiles = ((B + _TILE - 1) // _TILE) * ((m + _TILE - 1) // _TILE)
    blocks = max(1, min(tiles, _device()["sms"] * 2))  # co-resident for a cooperative launch
    try:
        _kernel(name, dtype, activation)((blocks,), (_TILE * _TILE,), args)
    except Exception as exc:
        if backend.fused_mode() == "persistent":
            raise
        _cache["persistent_unavailable"] = "%s: %s" % (type(exc).__name__, exc)
        warnings.warn("manualgrad.gpu: the persistent RNN kernel is unavailable here (%s); "
                      "using one product and one kernel per step instead"
                      % _cache["persistent_unavailable"], RuntimeWarning, stacklevel=3)
        return False
    return True


# ----------------------------------------------------------------------------- the LSTM
def lstm_forward(W_hT, a, gates, h, c, tc):
    """BW-LSTM forward for t = 1..T in place (cells.lstm._forward's loop): ``a`` (T, B, 4m) holds
    W_x u_t + b on entry and a_t on exit; ``h``, ``c`` (T+1, B, m) hold h_0, c_0 in row 0;
    ``gates`` (T, B, 4m) and ``tc`` (T, B, m) are written. ``W_hT`` (m, 4m) = W_h^T, contiguous.
    """
    T, B, m4 = a.shape
    m = m4 // 4
    gemm = _Gemm(a.dtype, B, m4, m, trans_b=False)
    cell = _kernel("lstm_step_forward", a.dtype)
    grid, block, nn = _launch(B * m)
    mm = backend.np.int64(m)
    W = _address(W_hT)
    for t in range(T):
        at = _ptr(a, t)
        gemm(at, _ptr(h, t), W, 1.0)  # a_t += W_h h_{t-1}
        cell(grid, block, (at, _ptr(gates, t), _ptr(c, t), _ptr(c, t + 1), _ptr(tc, t),
                           _ptr(h, t + 1), mm, nn))


def lstm_adjoint(W_h, traj, lam, lam_c, cbar, lam_z, many_to_many):
    """BPTT through (h, c) for k = T..1 in place (cells.lstm._adjoint's loop, plain LSTM).

    On entry ``lam[T-1]`` = lambda_T (many-to-many: every row its output term), ``lam_c[T-1]`` = 0;
    on exit lam, lam_c, cbar (T, B, m) and lam_z = zeta (T, B, 4m) as in :class:`cells.lstm.Adjoint`.
    ``W_h`` (4m, m) contiguous.
    """
    T, B, m = traj.tc.shape
    gemm = _Gemm(lam.dtype, B, m, 4 * m, trans_b=False)
    cell = _kernel("lstm_step_adjoint", lam.dtype)
    grid, block, nn = _launch(B * m)
    mm = backend.np.int64(m)
    i32 = backend.np.int32
    W = _address(W_h)
    beta = 1.0 if many_to_many else 0.0
    G, tcs, c = traj.gates, traj.tc, traj.c
    for t in range(T - 1, -1, -1):  # row t is step k = t + 1
        prev = _ptr(lam_c, t - 1) if t else _ptr(lam_c, t)  # unused when t == 0
        cell(grid, block, (_ptr(G, t), _ptr(tcs, t), _ptr(c, t), _ptr(lam, t), _ptr(lam_c, t),
                           _ptr(cbar, t), _ptr(lam_z, t), prev, mm, nn, i32(1 if t else 0)))
        if t:
            gemm(_ptr(lam, t - 1), _ptr(lam_z, t), W, beta)  # lambda_{k-1} (+)= W_h^T zeta_k


# ----------------------------------------------------------------------------- the coadjoint
def coadjoint_gamma(W_rec, gamma, Wgam, s, mu):
    """Step 1 of the coadjoint sweeps, k = 1..T: Wgam[k-1] = W_rec gamma_{k-1},
    gamma_k = mu_k + s_k o Wgam[k-1]. ``gamma`` (T+1, B, m) holds gamma_0 in row 0."""
    T, B, m = s.shape
    gemm = _Gemm(s.dtype, B, m, m, trans_b=True)
    madd = _kernel("madd", s.dtype)
    grid, block, nn = _launch(B * m)
    W = _address(W_rec)
    for k in range(T):
        wg = _ptr(Wgam, k)
        gemm(wg, _ptr(gamma, k), W, 0.0)                                   # W_rec gamma_{k-1}
        madd(grid, block, (_ptr(mu, k), _ptr(s, k), wg, _ptr(gamma, k + 1), nn))  # gamma_k


def coadjoint_xi(W_rec, zeta, s, xi, many_to_many):
    """Step 3, k = T..1: zeta_k = r_k + s_k o xi_k (``zeta`` holds r on entry), then
    xi_{k-1} (+)= W_rec^T zeta_k. ``xi`` (T+1, B, m) holds xi_T (many-to-many: every row its
    output term W_out^T q_k, row 0 zero) on entry."""
    T, B, m = s.shape
    gemm = _Gemm(s.dtype, B, m, m, trans_b=False)
    addmul = _kernel("addmul", s.dtype)
    grid, block, nn = _launch(B * m)
    W = _address(W_rec)
    beta = 1.0 if many_to_many else 0.0
    for k in range(T - 1, -1, -1):  # zeta row k is step k + 1; xi row k + 1 is xi_{k+1}
        zk = _ptr(zeta, k)
        addmul(grid, block, (zk, _ptr(s, k), _ptr(xi, k + 1), nn))  # zeta_k = r_k + s_k o xi_k
        gemm(_ptr(xi, k), zk, W, beta)                               # xi_{k-1} (+)= W_rec^T zeta_k
