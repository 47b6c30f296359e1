"""Exercises of lecture 03 (LSTM, Momentum RNN, IndRNN; docs/lstm.md, docs/momentum.md,
docs/indrnn.md). JP's sign: adjoints are negative gradients, per example; rows are examples."""
from __future__ import annotations

from .. import backend
from .core import FD, Case, Exercise, Variant, label, randn, rng, tanh_grad, zeros


def _sigmoid(a):
    return 1.0 / (1.0 + backend.xp().exp(-a))


def _gates(a):
    m = a.shape[-1] // 4
    xp = backend.xp()
    return (_sigmoid(a[:, :m]), _sigmoid(a[:, m:2 * m]), _sigmoid(a[:, 2 * m:3 * m]),
            xp.tanh(a[:, 3 * m:]))


def _lstm_step(a, c_prev):
    """(h_k, c_k) of the BW-LSTM from the pre-activations a_k (gate order i, f, o, g)."""
    i, f, o, g = _gates(a)
    c = f * c_prev + i * g
    return o * backend.xp().tanh(c), c


# ----------------------------------------------------------------------------- 03.lstm_step_adjoint
def lstm_step_adjoint(W_h, a, c_prev, lam, lam_c):
    """One step of BPTT through the LSTM (docs/lstm.md): from lambda_k = -dF_b/dh_k and
    lambda^c_k = -dF_b/dc_k to (lambda_{k-1}, lambda^c_{k-1})."""
    xp = backend.xp()
    i, f, o, g = _gates(a)
    c = f * c_prev + i * g
    tc = xp.tanh(c)
    cbar = lam_c + lam * o * (1.0 - tc * tc)            # -dF_b/dc_k with h_k = o_k tanh c_k following
    zeta = xp.concatenate([cbar * g * i * (1.0 - i),     # -dF_b/da_k, gate blocks i, f, o, g
                           cbar * c_prev * f * (1.0 - f),
                           lam * tc * o * (1.0 - o),
                           cbar * i * (1.0 - g * g)], axis=1)
    return zeta @ W_h, f * cbar                          # lambda_{k-1} = W_h^T zeta_k, lambda^c_{k-1} = f_k o cbar_k


def _case_lstm(s, seed):
    B, m = s["B"], s["m"]
    g = rng(seed)
    W_h = randn(g, 4 * m, m, scale=m ** -0.5)
    a, c_prev = randn(g, B, 4 * m), randn(g, B, m)
    lam, lam_c = randn(g, B, m), randn(g, B, m)

    def f(P):  # <lambda_k, h_k> + <lambda^c_k, c_k> with h_{k-1} + dh and c_{k-1}
        h, c = _lstm_step(a + P["dh"] @ W_h.T, P["c_prev"])
        return (lam * h).sum() + (lam_c * c).sum()

    fd = [FD("(lambda_{k-1}, lambda^c_{k-1}) = d/d(h_{k-1}, c_{k-1}) of <lambda_k, h_k> + "
             "<lambda^c_k, c_k>", f, {"dh": zeros(B, m), "c_prev": c_prev.copy()},
             lambda out: {"dh": out["lam_prev"], "c_prev": out["lam_c_prev"]})]
    return Case(label(s, seed), (W_h, a, c_prev, lam, lam_c), fd)


def _v_lstm_no_h_path(W_h, a, c_prev, lam, lam_c):
    xp = backend.xp()
    i, f, o, g = _gates(a)
    tc = xp.tanh(f * c_prev + i * g)
    cbar = lam_c
    zeta = xp.concatenate([cbar * g * i * (1 - i), cbar * c_prev * f * (1 - f),
                           lam * tc * o * (1 - o), cbar * i * (1 - g * g)], axis=1)
    return zeta @ W_h, f * cbar


def _v_lstm_no_forget(W_h, a, c_prev, lam, lam_c):
    lp, lcp = lstm_step_adjoint(W_h, a, c_prev, lam, lam_c)
    f = _gates(a)[1]
    return lp, lcp / f


LSTM = Exercise(
    name="03.lstm_step_adjoint", lecture="03",
    title="one step of BPTT through the LSTM cell state",
    equation="docs/lstm.md (BW-LSTM): cbar_k = lambda^c_k + lambda_k o o_k o (1 - tanh^2 c_k), "
             "zeta_k = -dF_b/da_k, lambda_{k-1} = W_h^T zeta_k, lambda^c_{k-1} = f_k o cbar_k",
    signature="lstm_step_adjoint(W_h, a, c_prev, lam, lam_c) -> (lam_prev, lam_c_prev)",
    task="""\
The LSTM step: a_k = W_h h_{k-1} + W_x u_k + b (B, 4m) in gate order i, f, o, g;
i, f, o = sigmoid of their blocks, g = tanh of its block; c_k = f o c_{k-1} + i o g,
h_k = o o tanh(c_k). Given a_k, c_{k-1} and the adjoints lambda_k = -dF_b/dh_k and
lambda^c_k = -dF_b/dc_k (holding h_k fixed), return
    cbar_k      = lambda^c_k + lambda_k o o_k o (1 - tanh^2 c_k)
    zeta_k      = [cbar o g o i(1-i);  cbar o c_{k-1} o f(1-f);  lambda_k o tanh(c_k) o o(1-o);  cbar o i o (1-g^2)]
    lambda_{k-1} = W_h^T zeta_k,   lambda^c_{k-1} = f_k o cbar_k.
Shapes: W_h (4m, m) (the h-columns of the stacked W), a (B, 4m), c_prev, lam, lam_c (B, m).
Rows are examples: W_h^T v is v @ W_h.""",
    returns="lam_prev (B, m) and lam_c_prev (B, m), a tuple",
    mistakes="forgetting the path through h_k = o tanh(c_k) in cbar; lambda^c_{k-1} = cbar_k "
             "without the forget gate; the gate blocks in the wrong order; v @ W_h.T",
    reference=lstm_step_adjoint, make_case=_case_lstm,
    sizes=({"B": 3, "m": 2}, {"B": 1, "m": 3}, {"B": 4, "m": 4}),
    outputs=("lam_prev", "lam_c_prev"), weights=("W_h",),
    variants=(
        Variant("dropped", "cbar_k misses the path through h_k = o_k tanh(c_k): cbar_k = "
                "lambda^c_k + lambda_k o o_k o (1 - tanh^2 c_k), not lambda^c_k alone",
                _v_lstm_no_h_path),
        Variant("dropped", "lambda^c_{k-1} = f_k o cbar_k: the forget gate f_k is missing (the "
                "cell-state path is a product of forget gates)", _v_lstm_no_forget),
        Variant("other", "the gate blocks are in the wrong order: a_k is [a_i; a_f; a_o; a_g]",
                lambda W, a, c, lam, lc: lstm_step_adjoint(
                    W, backend.xp().concatenate([a[:, a.shape[1] // 4:a.shape[1] // 2],
                                                 a[:, :a.shape[1] // 4],
                                                 a[:, a.shape[1] // 2:]], axis=1), c, lam, lc)),
    ))


# ----------------------------------------------------------------------------- 03.momentum_adjoint_step
def momentum_adjoint_step(U, z_next, lam_next, lam_v_next, mu):
    """One step of the Momentum RNN adjoint (docs/momentum.md): with a = sigma'(z_{k+1}) o
    lambda_{k+1}, lambda_k = U^T a and lambda^v_k = mu (a + lambda^v_{k+1})."""
    a = tanh_grad(z_next) * lam_next
    return a @ U, mu * (a + lam_v_next)


def _case_mom(s, seed):
    B, m = s["B"], s["m"]
    mu = s["mu"]
    g = rng(seed)
    U = randn(g, m, m, scale=m ** -0.5)
    z, lam, lam_v = randn(g, B, m), randn(g, B, m), randn(g, B, m)
    xp = backend.xp()

    def f(P):  # <lambda_{k+1}, h_{k+1}> + <lambda^v_{k+1}, v_{k+1}> with h_k + dh, v_k + dv
        return (lam * xp.tanh(z + P["dh"] @ U.T + mu * P["dv"])).sum() + \
            (lam_v * (mu * P["dv"])).sum()

    fd = [FD("(lambda_k, lambda^v_k) = d/d(h_k, v_k)", f, {"dh": zeros(B, m), "dv": zeros(B, m)},
             lambda out: {"dh": out["lam"], "dv": out["lam_v"]})]
    return Case(label(s, seed), (U, z, lam, lam_v, mu), fd)


MOMENTUM = Exercise(
    name="03.momentum_adjoint_step", lecture="03",
    title="one step of the Momentum RNN adjoint through (h, v)",
    equation="docs/momentum.md (BW-MRNN): lambda_k = U^T [sigma'(z_{k+1}) o lambda_{k+1}], "
             "lambda^v_k = mu (sigma'(z_{k+1}) o lambda_{k+1} + lambda^v_{k+1})",
    signature="momentum_adjoint_step(U, z_next, lam_next, lam_v_next, mu) -> (lam, lam_v)",
    task="""\
The Momentum RNN: v_{k+1} = mu v_k + s W u_{k+1}, z_{k+1} = U h_k + v_{k+1} + b,
h_{k+1} = tanh(z_{k+1}). Its state is (h, v); with lambda_k = -dF_b/dh_k and lambda^v_k =
-dF_b/dv_k, one backward step is the transpose of the state Jacobian:
    lambda_k   = U^T [sigma'(z_{k+1}) o lambda_{k+1}]
    lambda^v_k = mu (sigma'(z_{k+1}) o lambda_{k+1} + lambda^v_{k+1})
Shapes: U (m, m); z_next, lam_next, lam_v_next (B, m); mu a float in [0, 1).""",
    returns="lam (B, m) and lam_v (B, m), a tuple",
    mistakes="forgetting lambda^v_{k+1} in lambda^v_k (v_{k+1} depends on v_k directly); "
             "forgetting mu; U where U^T belongs",
    reference=momentum_adjoint_step, make_case=_case_mom,
    sizes=({"B": 3, "m": 3, "mu": 0.6}, {"B": 1, "m": 2, "mu": 0.9}, {"B": 4, "m": 5, "mu": 0.3}),
    outputs=("lam", "lam_v"), weights=("U",),
    variants=(
        Variant("transposed", "U where the adjoint has U^T: U^T v is v @ U, not v @ U.T",
                lambda U, z, l, lv, mu: momentum_adjoint_step(U.T, z, l, lv, mu)),
        Variant("dropped", "lambda^v_k misses lambda^v_{k+1}: v_{k+1} = mu v_k + ... depends on "
                "v_k directly, not only through z_{k+1}",
                lambda U, z, l, lv, mu: momentum_adjoint_step(U, z, l, 0 * lv, mu)),
        Variant("dropped", "the factor mu is missing in lambda^v_k",
                lambda U, z, l, lv, mu: momentum_adjoint_step(U, z, l, lv, 1.0)),
    ))


# ----------------------------------------------------------------------------- 03.indrnn_recurrent_grad
def indrnn_recurrent_grad(w, h, z, g):
    """The IndRNN recurrent-weight gradient (docs/indrnn.md), one layer, sigma = tanh:
    lambda_T = g_T, lambda_{k-1} = g_{k-1} + w o a_k with a_k = sigma'(z_k) o lambda_k, and
    dF/dw = -(1/B) sum_b sum_k a_k o h_{k-1}."""
    T, B, m = z.shape
    s = tanh_grad(z)
    lam = g[T - 1]
    dw = 0.0
    for k in range(T, 0, -1):                    # step k: z[k-1] = z_k, h[k-1] = h_{k-1}
        a = s[k - 1] * lam                       # a_k = sigma'(z_k) o lambda_k
        dw = dw + (a * h[k - 1]).sum(axis=0)
        if k > 1:
            lam = g[k - 2] + w * a               # lambda_{k-1}: elementwise, no matrix
    return -dw / B


def _indrnn_forward(w, pre, h0):
    xp = backend.xp()
    hs = [h0]
    for k in range(pre.shape[0]):
        hs.append(xp.tanh(pre[k] + w * hs[-1]))
    return xp.stack(hs)


def _case_ind(s, seed):
    T, B, m = s["T"], s["B"], s["m"]
    r = rng(seed)
    w = randn(r, m, scale=0.8)
    pre = randn(r, T, B, m)            # W_1 u_k + b_1, held fixed
    h = _indrnn_forward(w, pre, randn(r, B, m, scale=0.5))
    z = pre + w * h[:-1]
    g = randn(r, T, B, m)              # -dF_b/dh_k arriving from above (head, next layer)

    def F(P):  # F = -(1/B) sum_b sum_k <g_k, h_k(w)>, so that g_k is its direct adjoint
        return -(g * _indrnn_forward(P["w"], pre, h[0])[1:]).sum() / B

    fd = [FD("dF/dw", F, {"w": w.copy()}, lambda out: {"w": out["output"]})]
    return Case(label(s, seed), (w, h, z, g), fd)


def _v_ind_no_rec(w, h, z, g):
    T, B, m = z.shape
    return -(tanh_grad(z) * g * h[:-1]).sum(axis=(0, 1)) / B


def _v_ind_shift(w, h, z, g):
    xp = backend.xp()
    return indrnn_recurrent_grad(w, xp.concatenate([h[1:], h[-1:]], axis=0), z, g)


INDRNN = Exercise(
    name="03.indrnn_recurrent_grad", lecture="03",
    title="the IndRNN recurrent-weight gradient",
    equation="IndRNN, FW's baseline (docs/indrnn.md): lambda_{k-1} = g_{k-1} + w o a_k, a_k = sigma'(z_k) o lambda_k, "
             "dF/dw = -(1/B) sum_b sum_k a_k o h_{k-1}",
    signature="indrnn_recurrent_grad(w, h, z, g) -> dw",
    task="""\
One IndRNN layer, z_k = W u_k + w o h_{k-1} + b, h_k = tanh(z_k): the recurrent weight w (m,)
acts elementwise. g (T, B, m) is the adjoint arriving at each h_k from outside the recurrence
(the head, the layer above): g[k-1] = -dF_b/dh_k with h_{k+1} held fixed. Run the elementwise
backward recursion lambda_T = g_T, lambda_{k-1} = g_{k-1} + w o sigma'(z_k) o lambda_k, and return
dF/dw = -(1/B) sum_b sum_k sigma'(z_k) o lambda_k o h_{k-1} (batch mean). Shapes: w (m,);
h (T+1, B, m) with h[k] = h_k (h[0] = h_0); z, g (T, B, m) with z[k-1] = z_k.""",
    returns="dw (m,)",
    mistakes="using g_k as the adjoint (forgetting the recursion through w); h_k instead of "
             "h_{k-1}; a missing 1/B; the sign",
    reference=indrnn_recurrent_grad, make_case=_case_ind,
    sizes=({"T": 4, "B": 2, "m": 3}, {"T": 2, "B": 1, "m": 2}, {"T": 6, "B": 3, "m": 4}),
    variants=(
        Variant("dropped", "you used g_k as the adjoint: the recursion lambda_{k-1} = g_{k-1} + "
                "w o sigma'(z_k) o lambda_k through the recurrent weight is missing", _v_ind_no_rec),
        Variant("index", "dF/dw pairs a_k with h_{k-1} = h[k-1] (z_k reads h_{k-1}); you used h_k "
                "(an index shift)", _v_ind_shift),
    ))

EXERCISES = [LSTM, MOMENTUM, INDRNN]
