"""Exercises of lecture 01 (the vanilla RNN and its adjoint, JP eqs. 5-13; docs/adjoint.md).

Conventions (docs/conventions.md): rows are examples, so the paper's W v is ``v @ W.T`` and
W^T v is ``v @ W``; JP's adjoints are negative gradients, lambda_k = -dF_b/dx_k, per example;
gradients are of the batch mean F = (1/B) sum_b F_b. The hidden activation is tanh, the head
sigmoid + binary cross-entropy.
"""
from __future__ import annotations

from .. import backend, losses, rnn
from .core import FD, Case, Exercise, Variant, label, randn, rng, tanh_grad, uniform, zeros

JP = "JP (Johnston & Patel 2020)"


# ----------------------------------------------------------------------------- 01.delta_lambda_T
def delta_lambda_T(W_out, b2, x_T, y):
    """JP eqs. (6)-(7) for a sigmoid head with binary cross-entropy:
    delta = -dF_b/dyhat, lambda_T = W_out^T [sigma_out'(o) o delta]."""
    head = losses.get_head("sigmoid", "bce")
    o = x_T @ W_out.T + b2                       # o = W_out x_T + b2
    yhat = head.output(o)                        # yhat = sigmoid(o)
    delta = head.delta(o, yhat, y)               # (6)  delta = -dF_b/dyhat
    lam_T = head.output.vjp(o, yhat, delta) @ W_out   # (7)  W_out^T [sigma_out'(o) o delta]
    return delta, lam_T


def _bce(yhat, y):
    xp = backend.xp()
    return -(y * xp.log(yhat) + (1.0 - y) * xp.log(1.0 - yhat)).sum()


def _sigmoid(o):
    return 1.0 / (1.0 + backend.xp().exp(-o))


def _case_delta(s, seed):
    g = rng(seed)
    B, m, l = s["B"], s["m"], s["l"]
    W_out, b2 = randn(g, l, m, scale=m ** -0.5), randn(g, l, scale=0.3)
    x_T, y = randn(g, B, m, scale=0.8), uniform(g, B, l, low=0.05, high=0.95)
    o = x_T @ W_out.T + b2
    fd = [FD("lambda_T = -dF/dx_T", lambda P: -_bce(_sigmoid(P["x_T"] @ W_out.T + b2), y),
             {"x_T": x_T.copy()}, lambda out: {"x_T": out["lam_T"]}),
          FD("delta = -dF/dyhat", lambda P: -_bce(P["yhat"], y), {"yhat": _sigmoid(o)},
             lambda out: {"yhat": out["delta"]})]
    return Case(label(s, seed), (W_out, b2, x_T, y), fd)


def _v_delta_no_head_grad(W_out, b2, x_T, y):
    delta, _ = delta_lambda_T(W_out, b2, x_T, y)
    return delta, delta @ W_out


def _v_delta_transposed(W_out, b2, x_T, y):
    delta, _ = delta_lambda_T(W_out, b2, x_T, y)
    yhat = _sigmoid(x_T @ W_out.T + b2)
    return delta, (yhat * (1 - yhat) * delta) @ W_out.T


def _v_delta_plus(W_out, b2, x_T, y):
    delta, lam_T = delta_lambda_T(W_out, b2, x_T, y)
    return -delta, lam_T


def _v_delta_out(W_out, b2, x_T, y):
    _, lam_T = delta_lambda_T(W_out, b2, x_T, y)
    return y - _sigmoid(x_T @ W_out.T + b2), lam_T


DELTA = Exercise(
    name="01.delta_lambda_T", lecture="01",
    title="the head's adjoint: delta and lambda_T",
    equation="JP eqs. (6)-(7): delta = -dF_b/dyhat, lambda_T = W_out^T [sigma_out'(o) o delta]",
    signature="delta_lambda_T(W_out, b2, x_T, y) -> (delta, lam_T)",
    task="""\
The head is o = W_out x_T + b2, yhat = sigmoid(o), with the binary cross-entropy
F_b = -sum_c [y_c log yhat_c + (1 - y_c) log(1 - yhat_c)] (targets y in (0, 1)).
Compute JP eq. (6), delta = -dF_b/dyhat (per example, no 1/B), and JP eq. (7),
lambda_T = W_out^T [sigma_out'(o) o delta], where sigmoid'(o) = yhat (1 - yhat).
Shapes: W_out (l, m), b2 (l,), x_T (B, m), y (B, l); rows are examples, so W_out x_T is
x_T @ W_out.T and W_out^T v is v @ W_out.""",
    returns="delta (B, l) and lam_T (B, m), a tuple",
    mistakes="delta = +dF/dyhat (the sign); forgetting sigma_out'(o) in (7); returning "
             "-dF/do = y - yhat as delta; W_out where W_out^T belongs",
    reference=delta_lambda_T, make_case=_case_delta,
    sizes=({"B": 3, "m": 3, "l": 3}, {"B": 1, "m": 3, "l": 1}, {"B": 4, "m": 5, "l": 2}),
    outputs=("delta", "lam_T"), weights=("W_out",),
    variants=(
        Variant("dropped", "lambda_T misses the factor sigma_out'(o) = yhat (1 - yhat) of JP eq. "
                "(7): it is W_out^T [sigma_out'(o) o delta], not W_out^T delta", _v_delta_no_head_grad),
        Variant("transposed", "lambda_T uses W_out where JP eq. (7) has W_out^T: with rows as "
                "examples W_out^T v is v @ W_out, not v @ W_out.T", _v_delta_transposed),
        Variant("sign", "delta has the wrong sign: JP eq. (6) defines delta = -dF_b/dyhat "
                "= y / yhat - (1 - y) / (1 - yhat)", _v_delta_plus),
        Variant("other", "you returned -dF_b/do = y - yhat (the fused head's delta_out) as delta; "
                "JP's delta is -dF_b/dyhat, before the sigmoid's derivative", _v_delta_out),
    ))


# ----------------------------------------------------------------------------- 01.adjoint_step
def adjoint_step(W_rec, z_next, lam_next):
    """JP eq. (8): lambda_k = W_rec^T [sigma'(z_{k+1}) o lambda_{k+1}], sigma = tanh."""
    return (tanh_grad(z_next) * lam_next) @ W_rec      # (8)


def _case_step(s, seed):
    g = rng(seed)
    B, m = s["B"], s["m"]
    W_rec = randn(g, m, m, scale=1.2 * m ** -0.5)
    z_next, lam_next = randn(g, B, m), randn(g, B, m)
    xp = backend.xp()
    # lambda_k is the gradient in x_k of <lambda_{k+1}, x_{k+1}> (x_{k+1} = tanh(W_rec x_k + ...))
    fd = [FD("lambda_k = d<lambda_{k+1}, x_{k+1}>/dx_k",
             lambda P: (lam_next * xp.tanh(z_next + P["d"] @ W_rec.T)).sum(),
             {"d": zeros(B, m)}, lambda out: {"d": out["output"]})]
    return Case(label(s, seed), (W_rec, z_next, lam_next), fd)


STEP = Exercise(
    name="01.adjoint_step", lecture="01",
    title="one step of the adjoint recursion",
    equation="JP eq. (8): lambda_k = W_rec^T [sigma'(z_{k+1}) o lambda_{k+1}]",
    signature="adjoint_step(W_rec, z_next, lam_next) -> lam",
    task="""\
One step of the backward recursion of the vanilla RNN (z_{k+1} = W_rec x_k + W_in u_{k+1} + b1,
x_{k+1} = tanh(z_{k+1})): given the pre-activation z_{k+1} and the adjoint lambda_{k+1}
= -dF_b/dx_{k+1}, return lambda_k = W_rec^T [sigma'(z_{k+1}) o lambda_{k+1}] with
sigma'(z) = 1 - tanh(z)^2. Shapes: W_rec (m, m), z_next (B, m), lam_next (B, m); rows are
examples, so W_rec^T v is v @ W_rec.""",
    returns="lam (B, m), lambda_k",
    mistakes="W_rec instead of W_rec^T (v @ W_rec.T); forgetting sigma'; tanh(z) instead of "
             "1 - tanh(z)^2",
    reference=adjoint_step, make_case=_case_step,
    sizes=({"B": 3, "m": 4}, {"B": 1, "m": 2}, {"B": 5, "m": 6}),
    weights=("W_rec",),
    variants=(
        Variant("transposed", "W_rec where JP eq. (8) has W_rec^T: with rows as examples "
                "W_rec^T v is v @ W_rec, not v @ W_rec.T",
                lambda W, z, lam: (tanh_grad(z) * lam) @ W.T),
        Variant("dropped", "the factor sigma'(z_{k+1}) of JP eq. (8) is missing",
                lambda W, z, lam: lam @ W),
        Variant("other", "you used sigma(z) = tanh(z) where the derivative sigma'(z) = "
                "1 - tanh(z)^2 belongs", lambda W, z, lam: (backend.xp().tanh(z) * lam) @ W),
    ))


# ----------------------------------------------------------------------------- 01.gradient_sums
def gradient_sums(x, u, z, lam):
    """JP eqs. (11)-(13) (with eq. (11)'s missing o lambda_k restored), batch mean:
    dF/dW_rec = -(1/B) sum_b sum_k a_k x_{k-1}^T, dF/dW_in = -(1/B) sum_b sum_k a_k u_k^T,
    dF/db1 = -(1/B) sum_b sum_k a_k, with a_k = sigma'(z_k) o lambda_k."""
    T, B, m = z.shape
    a = (tanh_grad(z) * lam).reshape(T * B, m)           # a_k = sigma'(z_k) o lambda_k
    return {
        "W_rec": -(a.T @ x[:-1].reshape(T * B, m)) / B,   # (12): x_{k-1}, k = 1..T
        "W_in": -(a.T @ u.reshape(T * B, -1)) / B,        # (13)
        "b1": -a.sum(axis=0) / B,                         # (11)
    }


def _case_sums(s, seed):
    T, B, m, p = s["T"], s["B"], s["m"], s["p"]
    g = rng(seed)
    params = rnn.init_params(p, m, 1, seed=seed, scale=1.0 / m ** 0.5, bias_scale=0.3,
                             dtype="float64")
    u = randn(g, T, B, p)
    y = backend.asarray((backend.np.arange(B) % 2).reshape(B, 1), "float64")
    sw = rnn.sweep(params, u, y)
    names = ("W_rec", "W_in", "b1")
    fd = [FD("dF/dtheta of rnn.loss", lambda P: rnn.loss({**params, **P}, u, y, workspace=False),
             {k: params[k].copy() for k in names}, lambda out: {k: out[k] for k in names})]
    return Case(label(s, seed), (sw.traj.x.copy(), u, sw.traj.z.copy(), sw.adj.lam.copy()), fd)


def _v_sums_jp11(x, u, z, lam):
    out = gradient_sums(x, u, z, lam)
    T, B, m = z.shape
    out["b1"] = -tanh_grad(z).reshape(T * B, m).sum(axis=0) / B
    return out


def _v_sums_shift(x, u, z, lam):
    out = gradient_sums(x, u, z, lam)
    T, B, m = z.shape
    a = (tanh_grad(z) * lam).reshape(T * B, m)
    out["W_rec"] = -(a.T @ x[1:].reshape(T * B, m)) / B
    return out


def _v_sums_transposed(x, u, z, lam):
    out = gradient_sums(x, u, z, lam)
    out["W_rec"] = out["W_rec"].T.copy()
    return out


def _v_sums_no_sigma(x, u, z, lam):
    T, B, m = z.shape
    a = lam.reshape(T * B, m)
    return {"W_rec": -(a.T @ x[:-1].reshape(T * B, m)) / B,
            "W_in": -(a.T @ u.reshape(T * B, -1)) / B, "b1": -a.sum(axis=0) / B}


SUMS = Exercise(
    name="01.gradient_sums", lecture="01",
    title="the parameter gradients as sums over time",
    equation="JP eqs. (11)-(13): dF/dW_rec = -(1/B) sum_b sum_k [sigma'(z_k) o lambda_k] x_{k-1}^T, "
             "dF/dW_in (u_k^T), dF/db1 (eq. (11) with its missing o lambda_k restored)",
    signature="gradient_sums(x, u, z, lam) -> {'W_rec': ..., 'W_in': ..., 'b1': ...}",
    task="""\
From a forward trajectory and its adjoints (rnn.sweep's traj.x, u, traj.z, adj.lam) compute the
gradients of the batch mean F = (1/B) sum_b F_b in W_rec, W_in and b1, with a_k = sigma'(z_k) o
lambda_k (sigma = tanh):
    dF/dW_rec = -(1/B) sum_b sum_{k=1..T} a_k x_{k-1}^T        (12)
    dF/dW_in  = -(1/B) sum_b sum_k a_k u_k^T                   (13)
    dF/db1    = -(1/B) sum_b sum_k a_k                         (11, with o lambda_k: JP prints it without)
Shapes and layout: x (T+1, B, m) with x[k] = x_k; u (T, B, p) with u[k-1] = u_k; z and lam
(T, B, m) with z[k-1] = z_k, lam[k-1] = lambda_k. Return a dict of arrays (m, m), (m, p), (m,).""",
    returns="a dict {'W_rec': (m, m), 'W_in': (m, p), 'b1': (m,)}",
    mistakes="JP's printed eq. (11) without o lambda_k; x_k instead of x_{k-1} (an index shift); "
             "the outer product in the wrong order (a transposed gradient); a missing 1/B",
    reference=gradient_sums, make_case=_case_sums,
    sizes=({"T": 3, "B": 2, "m": 3, "p": 2}, {"T": 5, "B": 4, "m": 4, "p": 3},
           {"T": 2, "B": 1, "m": 2, "p": 1}),
    variants=(
        Variant("dropped", "JP's printed eq. (11): dF/db1 = -sum_k sigma'(z_k) lacks o lambda_k "
                "(without it the gradient does not even depend on the loss)", _v_sums_jp11),
        Variant("index", "dF/dW_rec pairs a_k with x_k; the pre-activation z_k = W_rec x_{k-1} + "
                "... reads x_{k-1}, i.e. x[:-1] (an index shift)", _v_sums_shift),
        Variant("transposed", "dF/dW_rec is transposed: the outer product is a_k x_{k-1}^T "
                "(rows of W_rec are the units z_k is computed for)", _v_sums_transposed),
        Variant("dropped", "the factor sigma'(z_k) is missing: a_k = sigma'(z_k) o lambda_k",
                _v_sums_no_sigma),
    ))


# ----------------------------------------------------------------------------- 01.adjoint_sweep
def adjoint_sweep(W_rec, W_out, z, g):
    """JP eqs. (7)-(8), the whole backward sweep: lambda_T = W_out^T g,
    lambda_k = W_rec^T [sigma'(z_{k+1}) o lambda_{k+1}], k = T-1..1; g = sigma_out'(o) o delta."""
    T, B, m = z.shape
    lam = backend.xp().zeros((T, B, m), dtype=z.dtype)
    lam[T - 1] = g @ W_out                                # (7)
    for k in range(T - 1, 0, -1):                         # lam[k-1] = lambda_k
        lam[k - 1] = adjoint_step(W_rec, z[k], lam[k])    # (8): z[k] = z_{k+1}
    return lam


def _case_sweep(s, seed):
    T, B, m, l = s["T"], s["B"], s["m"], s["l"]
    g = rng(seed)
    W_rec = randn(g, m, m, scale=1.1 * m ** -0.5)
    W_out = randn(g, l, m, scale=m ** -0.5)
    W_in, b1 = randn(g, m, 2), randn(g, m, scale=0.3)
    u = randn(g, T, B, 2)
    xp = backend.xp()
    x = [randn(g, B, m, scale=0.5)]
    z = []
    for k in range(T):
        z.append(x[-1] @ W_rec.T + u[k] @ W_in.T + b1)
        x.append(xp.tanh(z[-1]))
    z = xp.stack(z)
    gout = randn(g, B, l)

    def readout(P):  # <g, W_out x_T> with the forward restarted at step 1 from x_1 + d
        xk = x[1] + P["d"]
        for k in range(2, T + 1):
            xk = xp.tanh(xk @ W_rec.T + u[k - 1] @ W_in.T + b1)
        return (gout * (xk @ W_out.T)).sum()

    fd = [FD("lambda_1 = d<g, W_out x_T>/dx_1", readout, {"d": zeros(B, m)},
             lambda out: {"d": out["output"][0]})]
    return Case(label(s, seed), (W_rec, W_out, z, gout), fd)


def _v_sweep_shift(W_rec, W_out, z, g):
    T, B, m = z.shape
    lam = backend.xp().zeros((T, B, m), dtype=z.dtype)
    lam[T - 1] = g @ W_out
    for k in range(T - 1, 0, -1):
        lam[k - 1] = adjoint_step(W_rec, z[k - 1], lam[k])
    return lam


SWEEP = Exercise(
    name="01.adjoint_sweep", lecture="01",
    title="the whole backward sweep",
    equation="JP eqs. (7)-(8): lambda_T = W_out^T g, lambda_k = W_rec^T [sigma'(z_{k+1}) o "
             "lambda_{k+1}], k = T-1..1",
    signature="adjoint_sweep(W_rec, W_out, z, g) -> lam",
    task="""\
Put eqs. (7) and (8) together (many-to-one, tanh): start from lambda_T = W_out^T g, where
g = sigma_out'(o) o delta = -dF_b/do is given (B, l), and run eq. (8) backwards to lambda_1.
Layout: z (T, B, m) with z[k-1] = z_k; return lam (T, B, m) with lam[k-1] = lambda_k. W_rec
(m, m), W_out (l, m). (You may call your 01.adjoint_step.)""",
    returns="lam (T, B, m), lam[k-1] = lambda_k",
    mistakes="z_k where eq. (8) reads z_{k+1} (an index shift); W_rec where W_rec^T belongs",
    reference=adjoint_sweep, make_case=_case_sweep,
    sizes=({"T": 4, "B": 2, "m": 3, "l": 1}, {"T": 2, "B": 1, "m": 2, "l": 2},
           {"T": 6, "B": 3, "m": 4, "l": 2}),
    weights=("W_rec", "W_out"),
    variants=(
        Variant("index", "eq. (8) reads z_{k+1} = z[k] for lam[k-1] = lambda_k; you used z_k "
                "(an index shift)", _v_sweep_shift),
        Variant("transposed", "W_rec where eq. (8) has W_rec^T (v @ W_rec, not v @ W_rec.T)",
                lambda W, Wo, z, g: adjoint_sweep(W.T, Wo, z, g)),
        Variant("dropped", "the factor sigma'(z_{k+1}) of eq. (8) is missing",
                lambda W, Wo, z, g: adjoint_sweep(W, Wo, backend.xp().zeros_like(z), g)),
    ))

EXERCISES = [DELTA, STEP, SUMS, SWEEP]
