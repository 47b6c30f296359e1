"""IndRNN, the independently recurrent network, stacked L layers deep, with hand-written BPTT.

Source: Li, Li, Cook, Zhu & Gao, "Independently Recurrent Neural Network (IndRNN): Building a
Longer and Deeper RNN", CVPR 2018 (FW ref. [24]; cited here as IndRNN). FW (Sec. IV, "Baseline
Algorithms and Implementation" and "IndRNN on Pixel-MNIST & Permute-MNIST") trains a six-layer
IndRNN as its second baseline. Derivation and tests: docs/indrnn.md.

Notation (docs/conventions.md). Time-major input ``u`` (T, B, p), L layers of m units each,
output size l. Parameters, a flat dict (:func:`param_names`)::

    W_1 (m, p)   w_1 (m,)   b_1 (m,)          layer 1 reads the input u_t
    W_i (m, m)   w_i (m,)   b_i (m,)          layer i = 2..L reads h^{i-1}_t
    W_out (l, m)  b2 (l,)                      the head reads the top layer h^L

Forward (the IndRNN recurrence of IndRNN Sec. 3, stacked as there), h^0_t = u_t::

    z^i_t = W_i h^{i-1}_t + w_i o h^i_{t-1} + b_i        t = 1..T, i = 1..L
    h^i_t = sigma(z^i_t)                                 (relu by default)
    o     = W_out h^L_T + b2,   yhat = sigma_out(o)      (many-to-one)
    o_t   = W_out h^L_t + b2                             (many-to-many: losses summed over t)

``o`` is the Hadamard product: unit n of layer i sees only its own past, h_{t-1,n}, through
one scalar w_{i,n}; the units of a layer mix only through the next layer's W_{i+1}.

Adjoint system, JP's sign (lambda^i_k = -dF_b/dh^i_k, per example), a^i_k = sigma'(z^i_k) o
lambda^i_k = -dF_b/dz^i_k::

    lambda^L_k     = W_out^T [sigma_out'(o_k) o delta_k]    (k = T only, for many-to-one)
    lambda^i_k    += W_{i+1}^T a^{i+1}_k                    i < L, all k: the layer above
    lambda^i_{k-1} += w_i o a^i_k                           k = T..2: the elementwise recursion
    lambda^i_0      = w_i o a^i_1                           (adjoint of the initial state h^i_0)

Gradients of the batch mean F = (1/B) sum_b F_b::

    dF/dW_i  = -(1/B) sum_b sum_k a^i_k (h^{i-1}_k)^T       (h^0_k = u_k)
    dF/dw_i  = -(1/B) sum_b sum_k a^i_k o h^i_{k-1}
    dF/db_i  = -(1/B) sum_b sum_k a^i_k
    dF/dW_out, dF/db2 as JP eqs. (9)-(10) on h^L

Cost: the recurrence is elementwise, so a time step costs O(B m) and no matrix product. Each
layer's input projection is one (T*B, n) @ (n, m) product before its loop, and after its
backward recursion the adjoint sent to the layer below is one (T*B, m) @ (m, m) product.

Initial state (decision): ``state0`` maps :func:`state_names` to arrays (B, m) or (m,), one per
layer: ``("h0",)`` for one layer (the interface's ``STATE_NAMES``), ``("h0_1", ..., "h0_L")``
for L >= 2; None means zeros everywhere. ``grad_state0`` has the same keys. The number of layers
is read from ``params`` (the count of keys ``W_1``, ``W_2``, ...).

Workspaces: :func:`loss_and_grad` and :func:`loss` keep every layer's trajectory, adjoints and
temporaries in a :class:`~manualgrad.backend.Workspace` (``workspace=``), so repeated calls with
the same shapes allocate nothing after the first. The rule: a workspace holds only what stays
inside a call; F and the gradients are always fresh arrays, and :func:`forward`, :func:`adjoint`,
:func:`gradients` and :func:`sweep` take no workspace.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional

from .. import activations, backend, rnn
from .._validate import float_array, head_adjoint, number, params_mapping, positive_int
from .._validate import sequence_input
from .._validate import step as _step
from ..rnn import AdjointRecord, TrajectoryRecord, head_loss, head_terms, state_grad

__all__ = ["PARAM_NAMES", "STATE_NAMES", "param_names", "state_names", "num_layers",
           "recurrent_bound", "init_params", "clip_recurrent", "check_params", "Trajectory",
           "Adjoint", "Sweep", "forward", "adjoint", "gradients", "loss", "sweep",
           "loss_and_grad"]

DEFAULT_ACTIVATION = "relu"


def param_names(layers=1):
    """Parameter keys of an L-layer IndRNN: W_1, w_1, b_1, ..., W_L, w_L, b_L, W_out, b2."""
    L = positive_int(layers, "layers")
    return tuple(n for i in range(1, L + 1) for n in ("W_%d" % i, "w_%d" % i, "b_%d" % i)) \
        + ("W_out", "b2")


def state_names(layers=1):
    """Keys of ``state0``: ("h0",) for one layer, ("h0_1", ..., "h0_L") for L >= 2."""
    L = positive_int(layers, "layers")
    return ("h0",) if L == 1 else tuple("h0_%d" % i for i in range(1, L + 1))


PARAM_NAMES = param_names(1)
"""Parameter keys of the one-layer cell (the interface's constant); :func:`param_names` for L."""

STATE_NAMES = state_names(1)
"""State keys of the one-layer cell; use :func:`state_names` for L layers."""

_LAYER_KEY = re.compile(r"^W_(\d+)$")


def num_layers(params):
    """L, the number of IndRNN layers of ``params`` (its keys W_1, ..., W_L)."""
    if not hasattr(params, "keys"):
        raise TypeError("params must be a mapping with keys %s (for L layers: W_i, w_i, b_i, "
                        "i = 1..L), got %s" % (", ".join(PARAM_NAMES), type(params).__name__))
    L = sum(1 for k in params.keys() if isinstance(k, str) and _LAYER_KEY.match(k))
    if L == 0:
        raise ValueError("params for the IndRNN lack W_1: expected keys W_i, w_i, b_i for layers "
                         "i = 1..L and W_out, b2; got %s" % ", ".join(map(str, params)))
    return L


def recurrent_bound(seq_len, mag=2.0):
    """mag^(1/seq_len): the largest |w| with which an active relu unit grows at most ``mag``-fold
    over seq_len steps.

    The IndRNN constraint on the recurrent weights (IndRNN Sec. 3; the reference code's
    ``U_bound = MAG^(1/seq_len)``, MAG = 2 or 10): with an active relu unit,
    |lambda_{t}| = |w|^(T-t) |lambda_T|, so |w| <= mag^(1/T) keeps the adjoint within a factor
    ``mag`` over the whole sequence. For long sequences this is ~1 + ln(mag)/T.
    """
    T = positive_int(seq_len, "seq_len")
    mag = number(mag, "recurrent_bound: mag", positive=True)
    return mag ** (1.0 / T)


def init_params(p, m, l, seed=0, layers=1, scale=None, bias_scale=0.0, recurrent_init="uniform",
                seq_len=None, mag=2.0, dtype=None):
    """Random parameters of an L-layer IndRNN: a dict with the keys :func:`param_names` (layers).

    Input weights W_i are N(0, s^2) with s = ``scale``, or, when ``scale`` is None,
    s = sqrt(2/fan_in) (He's scale for relu: fan_in = p for W_1, m above), and W_out with
    s = 1/sqrt(m) (or ``scale``). Biases b_i, b2 are N(0, bias_scale^2), zero by default.

    Recurrent weights w_i, by ``recurrent_init``:

    - ``"uniform"`` (default): w ~ U(0, 1) per unit, every layer (the IndRNN authors' default for
      relu, so that different units keep memories of different lengths; |w| < 1 means an active
      relu unit forgets geometrically, never explodes);
    - ``"long"``: needs ``seq_len`` T; with c = :func:`recurrent_bound` (T, mag) = mag^(1/T),
      layers 1..L-1 get U(0, c) and the top layer U(1/c, c), so that the top layer, whose last
      state the many-to-one head reads, keeps memory over all T steps (|w|^T in [1/mag, mag]);
      this is the initialisation of the IndRNN reference code that FW used;
    - a number c: w = c for every unit (1.0: each unit integrates its input, IRNN-like).

    Drawn on the host from ``default_rng(seed)``, in the order W_1, w_1, b_1, ..., W_out, b2, so
    both backends get the same numbers. Keep |w| bounded during training with
    :func:`clip_recurrent`.
    """
    (p, m, l), seed, scale, bias_scale, dtype = rnn._init_args(p, m, l, seed, scale,
                                                               bias_scale, dtype)
    L = positive_int(layers, "layers")
    if isinstance(recurrent_init, str):
        if recurrent_init not in ("uniform", "long"):
            raise ValueError("init_params: unknown recurrent_init %r: valid are 'uniform', 'long' "
                             "or a number" % (recurrent_init,))
        if recurrent_init == "long" and seq_len is None:
            raise ValueError("init_params: recurrent_init='long' needs seq_len (the sequence "
                             "length T that sets the bound mag^(1/T))")
    elif isinstance(recurrent_init, bool) or not isinstance(recurrent_init, (int, float)):
        raise TypeError("init_params: recurrent_init must be 'uniform', 'long' or a number, got %r"
                        % (recurrent_init,))
    elif not math.isfinite(recurrent_init):
        raise ValueError("init_params: recurrent_init must be a finite number, got %r"
                         % (recurrent_init,))
    c = recurrent_bound(seq_len, mag) if recurrent_init == "long" else None
    rng = backend.host_rng(seed)

    def std(fan_in, gain):
        return (gain / fan_in ** 0.5) if scale is None else scale

    params = {}
    for i in range(1, L + 1):
        fan_in = p if i == 1 else m
        params["W_%d" % i] = backend.randn((m, fan_in), rng=rng, scale=std(fan_in, 2.0 ** 0.5),
                                           dtype=dtype)
        if recurrent_init == "uniform":
            params["w_%d" % i] = backend.uniform((m,), 0.0, 1.0, rng=rng, dtype=dtype)
        elif recurrent_init == "long":
            low = 1.0 / c if i == L else 0.0
            params["w_%d" % i] = backend.uniform((m,), low, c, rng=rng, dtype=dtype)
        else:
            params["w_%d" % i] = backend.asarray(backend.np.full((m,), float(recurrent_init)),
                                                 dtype)
        params["b_%d" % i] = backend.randn((m,), rng=rng, scale=bias_scale, dtype=dtype)
    params["W_out"] = backend.randn((l, m), rng=rng, scale=std(m, 1.0), dtype=dtype)
    params["b2"] = backend.randn((l,), rng=rng, scale=bias_scale, dtype=dtype)
    return params


def clip_recurrent(params, bound):
    """A copy of ``params`` with every w_i clipped to [-bound, bound] (the IndRNN constraint).

    Apply after each optimiser step, e.g. ``params = clip_recurrent(params, recurrent_bound(T))``
    (IndRNN Sec. 3: |w| <= gamma^(1/T) keeps |w sigma'|^T <= gamma for active relu units;
    the reference code clips to [-MAG^(1/T), MAG^(1/T)], or to [-1, 1] for very long sequences).
    Only the w_i change (new arrays); the other entries are the same objects as in ``params``.
    """
    L = num_layers(params)
    try:
        bound = float(bound)
    except (TypeError, ValueError):
        raise TypeError("clip_recurrent: bound must be a number, got %r" % (bound,)) from None
    if not bound >= 0 or bound == float("inf"):
        raise ValueError("clip_recurrent: bound must be finite and >= 0, got %r" % (bound,))
    xp = backend.xp()
    out = dict(params)
    for i in range(1, L + 1):
        name = "w_%d" % i
        if name not in params:
            raise ValueError("clip_recurrent: params lack %s (layer %d of %d)" % (name, i, L))
        out[name] = xp.clip(float_array(params[name], "params[%r]" % name), -bound, bound)
    return out


def check_params(params):
    """Validate an L-layer parameter dict; return ``(params on the backend, L)``.

    The keys must be exactly :func:`param_names` (L), L the number of W_i keys; shapes are
    checked against each other (m and p from W_1, l from W_out).
    """
    L = num_layers(params)
    names = param_names(L)
    missing = [n for n in names if n not in params]
    extra = [str(k) for k in params.keys() if k not in names]
    if missing or extra:
        raise ValueError("params for a %d-layer IndRNN (keys W_1..W_%d found) must have exactly "
                         "the keys %s: %s" % (L, L, ", ".join(names), "; ".join(
                             s for s in ("missing " + ", ".join(missing) if missing else "",
                                         "unexpected " + ", ".join(extra) if extra else "") if s)))
    try:
        m, p = params["W_1"].shape
        l = params["W_out"].shape[0]
    except (AttributeError, ValueError, IndexError):
        m = p = l = None
    shapes = {"W_out": (l, m), "b2": (l,)}
    for i in range(1, L + 1):
        shapes["W_%d" % i] = (m, p if i == 1 else m)
        shapes["w_%d" % i] = (m,)
        shapes["b_%d" % i] = (m,)
    return params_mapping(params, names, shapes, "the %d-layer IndRNN" % L), L


def _check_state0(state0, L, B, m):
    """Check ``state0`` (keys :func:`state_names` (L), or None); a list of L arrays (or Nones)."""
    names = state_names(L)
    if state0 is None:
        return [None] * L
    if not hasattr(state0, "keys"):
        raise TypeError("state0 must be a mapping with the keys %s (one (B, m) or (m,) array per "
                        "layer) or None, got %s" % (", ".join(names), type(state0).__name__))
    if set(state0.keys()) != set(names):
        raise ValueError("state0 for a %d-layer IndRNN must have exactly the keys %s, got %s"
                         % (L, ", ".join(names), ", ".join(map(str, state0))))
    out = []
    for n in names:
        h0 = float_array(state0[n], "state0[%r]" % n)
        if tuple(h0.shape) not in ((B, m), (m,)):
            raise ValueError("state0[%r] must have shape (B, m) = (%d, %d) or (m,) = (%d,), got %s"
                             % (n, B, m, m, tuple(h0.shape)))
        out.append(h0)
    return out


@dataclass
class Trajectory(TrajectoryRecord):
    """What the forward sweep computed (arrays on the backend).

    u (T,B,p); h_layers: L arrays (T+1,B,m), h_layers[i-1][k] = h^i_k (row 0 the initial state);
    z_layers: L arrays (T,B,m), z_layers[i-1][k-1] = z^i_k; o, yhat (B,l), or (T,B,l) when
    ``many_to_many``. ``h`` and ``z`` are those of the top layer (what the head reads).
    """

    h_layers: list
    z_layers: list
    o: object
    yhat: object
    activation: activations.Activation
    output: activations.Activation
    many_to_many: bool = False

    @property
    def layers(self):
        return len(self.h_layers)

    @property
    def h(self):
        """Top layer h^L (T+1, B, m), h[k] = h^L_k."""
        return self.h_layers[-1]

    @property
    def z(self):
        """Top layer z^L (T, B, m), z[k-1] = z^L_k."""
        return self.z_layers[-1]

    x = h  # the name of the states in manualgrad.rnn

    def h_at(self, k, layer=None):
        """h^i_k (B, m), k = 0..T; ``layer`` i = 1..L (default: the top layer L)."""
        i = self.layers if layer is None else _step(layer, 1, self.layers, "layer")
        return self.h_layers[i - 1][_step(k, 0, self.T, "h_k")]


@dataclass
class Adjoint(AdjointRecord):
    """The adjoints of every layer, per example (not divided by B), JP's sign.

    lam_layers: L arrays (T,B,m), lam_layers[i-1][k-1] = lambda^i_k = -dF_b/dh^i_k;
    lam0_layers: L arrays (B,m), -dF_b/dh^i_0; lam_z_layers: L arrays (T,B,m),
    a^i_k = sigma'(z^i_k) o lambda^i_k = -dF_b/dz^i_k. ``lam``, ``lam0``, ``lam_z``: those of the
    top layer (what :func:`manualgrad.inspect.adjoint_norms` reads). delta: -dF_b/dyhat (JP eq. 6)
    or None; delta_out: -dF_b/do, shape of ``o``.
    """

    lam_layers: list
    lam0_layers: list
    lam_z_layers: list
    delta: Optional[object]
    delta_out: object

    @property
    def lam(self):
        return self.lam_layers[-1]

    @property
    def lam0(self):
        return self.lam0_layers[-1]

    @property
    def lam_z(self):
        return self.lam_z_layers[-1]

    def lam_at(self, k, layer=None):
        """lambda^i_k (B, m) for k = 0..T (lambda^i_0 = ``lam0_layers[i-1]``); default layer L."""
        L = len(self.lam_layers)
        i = L if layer is None else _step(layer, 1, L, "layer")
        k = _step(k, 0, self.lam_layers[0].shape[0], "lambda_k")
        return self.lam0_layers[i - 1] if k == 0 else self.lam_layers[i - 1][k - 1]


def forward(params, u, state0=None, output="sigmoid", many_to_many=False,
            activation=DEFAULT_ACTIVATION):
    """The IndRNN recurrence, stacked: run the L layers over ``u`` (T, B, p); a :class:`Trajectory`.

    ``state0``: mapping with keys :func:`state_names` (L), each (B, m) or (m,); None for zeros.
    Each layer's input projection W_i h^{i-1}_t + b_i is one matrix product for all steps; the
    loop over steps then only adds w_i o h^i_{t-1} and applies sigma (elementwise).
    """
    params, L = check_params(params)
    return _forward(params, L, u, state0, activation, output, many_to_many)


def _forward(params, L, u, state0, activation, output, many_to_many, ws=None):
    """:func:`forward` with ``params`` already validated (inputs are still checked).

    ``ws``: a :class:`~manualgrad.backend.Workspace` for every layer's h and z and the step
    buffer, or None (fresh arrays, what :func:`forward` and :func:`sweep` return).
    """
    act = activations.get(activation, "hidden")
    out = activations.get(output, "output", argname="output")
    m, p = params["W_1"].shape
    u = sequence_input(u, p, "W_1 has %d columns")
    T, B, _ = u.shape
    h0s = _check_state0(state0, L, B, m)
    xp = backend.xp()
    rec = backend.empty((B, m), u.dtype, ws, "indrnn.rec")  # w_i o h^i_{t-1}: all steps, layers
    below = u
    hs, zs = [], []
    for i in range(1, L + 1):
        W, w, b = params["W_%d" % i], params["w_%d" % i], params["b_%d" % i]
        n = below.shape[2]
        h = backend.empty((T + 1, B, m), u.dtype, ws, "indrnn.h_%d" % i)
        h[0] = 0.0 if h0s[i - 1] is None else h0s[i - 1]
        z = backend.empty((T, B, m), u.dtype, ws, "indrnn.z_%d" % i)
        xp.matmul(below.reshape(T * B, n), W.T, out=z.reshape(T * B, m))  # W_i h^{i-1}_t, all t
        z += b
        for t in range(T):
            xp.multiply(h[t], w, out=rec)
            z[t] += rec
            act.f_into(z[t], h[t + 1])  # h^i_t = sigma(z^i_t)
        hs.append(h)
        zs.append(z)
        below = h[1:]
    top = hs[-1]
    hs_out = top[1:] if many_to_many else top[T]
    o = hs_out @ params["W_out"].T + params["b2"]
    return Trajectory(u, hs, zs, o, out.f(o), act, out, bool(many_to_many))


def adjoint(params, traj, delta=None, *, delta_out=None):
    """Every layer's lambda^i_k, k = T..1, and lambda^i_0, from delta = -dF_b/dyhat (JP eq. 6).

    ``delta``: shape of ``traj.yhat``, per example; or ``delta_out`` = -dF_b/do (what a fused
    head gives stably). Returns an :class:`Adjoint` (lam_layers: L arrays (T, B, m)).
    """
    params, L = check_params(params)
    if L != traj.layers:
        raise ValueError("adjoint: params have %d layers but traj has %d" % (L, traj.layers))
    delta, delta_out = head_adjoint(traj, delta, delta_out)
    return _adjoint(params, traj, delta_out, delta)


def _adjoint(params, traj, delta_out, delta=None, ws=None):
    """BPTT layer by layer, top first (see the module docstring), on validated arrays; ``ws`` as
    in :func:`_forward` (every layer's lam, lam_z and lam0, and the step buffer)."""
    xp = backend.xp()
    T, B, m = traj.z.shape
    dt = traj.z.dtype
    L = traj.layers
    lams, lam0s, lam_zs = [None] * L, [None] * L, [None] * L
    buf = backend.empty((B, m), dt, ws, "indrnn.rec")  # w_i o a^i_k
    for i in range(L, 0, -1):
        w = params["w_%d" % i]
        lam = backend.empty((T, B, m), dt, ws, "indrnn.lam_%d" % i)
        if i == L:  # the head: W_out^T [sigma_out'(o_k) o delta_k]
            if traj.many_to_many:
                xp.matmul(delta_out, params["W_out"], out=lam)  # every k at once
            else:
                lam[:T - 1] = 0.0
                xp.matmul(delta_out, params["W_out"], out=lam[T - 1])
        else:  # the layer above: W_{i+1}^T a^{i+1}_k, every k in one product
            xp.matmul(lam_zs[i].reshape(T * B, m), params["W_%d" % (i + 1)],
                      out=lam.reshape(T * B, m))
        # lam_z starts as sigma'(z^i_k) for all k; step k multiplies in lambda^i_k
        lam_z = backend.empty((T, B, m), dt, ws, "indrnn.lam_z_%d" % i)
        traj.activation.grad_into(traj.z_layers[i - 1], traj.h_layers[i - 1][1:], lam_z)
        for k in range(T - 1, 0, -1):  # lam[k] is lambda^i_{k+1}, complete
            lam_z[k] *= lam[k]
            lam[k - 1] += xp.multiply(lam_z[k], w, out=buf)  # elementwise: no matrix product
        lam_z[0] *= lam[0]
        lam0 = xp.multiply(lam_z[0], w, out=backend.empty((B, m), dt, ws, "indrnn.lam0_%d" % i))
        lams[i - 1], lam0s[i - 1], lam_zs[i - 1] = lam, lam0, lam_z
    return Adjoint(lams, lam0s, lam_zs, delta, delta_out)


def gradients(params, traj, adj):
    """dF/dtheta of the batch mean F from a trajectory and its :class:`Adjoint`; a dict like params.

    Each sum over steps and examples is one product (or one reduction) over all T*B rows.
    """
    params, L = check_params(params)
    if not isinstance(adj, Adjoint):
        raise TypeError("gradients: adj must be the Adjoint from adjoint() or sweep(), got %s"
                        % type(adj).__name__)
    if L != traj.layers or L != len(adj.lam_layers):
        raise ValueError("gradients: params, traj and adj disagree on the number of layers "
                         "(%d, %d, %d)" % (L, traj.layers, len(adj.lam_layers)))
    return _gradients(traj, adj)


def _gradients(traj, adj, ws=None):
    """The gradient formulas of the module docstring on validated arrays (see :func:`gradients`);
    the (T*B, m) product a^i_k o h^i_{k-1} in workspace ``ws`` (or fresh), the gradients fresh."""
    xp = backend.xp()
    T, B, m = traj.z.shape
    l = traj.o.shape[-1]
    grads = {}
    below = traj.u
    ah = backend.empty((T * B, m), traj.z.dtype, ws, "indrnn.a_h")  # a^i_k o h^i_{k-1}
    for i in range(1, traj.layers + 1):
        n = below.shape[2]
        a = adj.lam_z_layers[i - 1].reshape(T * B, m)
        h = traj.h_layers[i - 1]
        grads["W_%d" % i] = -(a.T @ below.reshape(T * B, n)) / B
        grads["w_%d" % i] = -xp.multiply(a, h[:-1].reshape(T * B, m), out=ah).sum(axis=0) / B
        grads["b_%d" % i] = -a.sum(axis=0) / B
        below = h[1:]
    do = adj.delta_out.reshape(-1, l)
    top = traj.h
    hs = (top[1:] if traj.many_to_many else top[T]).reshape(-1, m)
    grads["W_out"] = -(do.T @ hs) / B  # JP (9) on the top layer
    grads["b2"] = -do.sum(axis=0) / B  # JP (10)
    return grads


Sweep = rnn.StateSweep
"""Everything one forward + adjoint sweep produced (see :func:`sweep`): F, F_b, traj, adj, grads,
grad_state0 (keys :func:`state_names` (L), each -lambda^i_0 / B (B, m)), y, head."""


def loss(params, u, y, state0=None, output="sigmoid", loss="bce", many_to_many=False,
         activation=DEFAULT_ACTIVATION, workspace=True):
    """F = batch mean of F_b (forward only; the function that finite differences check).

    ``workspace`` as in :func:`loss_and_grad` (the trajectory lives there; F is fresh).
    """
    params, L = check_params(params)
    with backend.workspace_scope(workspace) as ws:
        traj = _forward(params, L, u, state0, activation, output, many_to_many, ws)
        return head_loss(traj, loss, y)[2].mean()


def sweep(params, u, y, state0=None, output="sigmoid", loss="bce", many_to_many=False,
          activation=DEFAULT_ACTIVATION):
    """Forward, loss, BPTT through all layers and gradients in one call; a :class:`Sweep`.

    ``y``: targets (B, l) (or (B,) when l = 1, or integer labels (B,) for cross_entropy);
    many-to-many: (T, B, l) or (T, B). Every array of the Sweep is the caller's own (no workspace).
    """
    params, L = check_params(params)
    return _sweep(params, L, u, y, state0, output, loss, many_to_many, activation)


def _sweep(params, L, u, y, state0, output, loss, many_to_many, activation, ws=None):
    """:func:`sweep` on validated ``params`` (L layers): trajectory and adjoints in workspace
    ``ws`` (if any), the loss and the gradients always fresh."""
    traj = _forward(params, L, u, state0, activation, output, many_to_many, ws)
    head, Y, F_b, delta_out, delta = head_terms(traj, loss, y)  # delta: JP (6)
    adj = _adjoint(params, traj, delta_out, delta, ws)
    grads = _gradients(traj, adj, ws)
    grad_state0 = {n: state_grad(lam0, ws, "indrnn.grad_" + n)
                   for n, lam0 in zip(state_names(L), adj.lam0_layers)}
    return Sweep(F_b.mean(), F_b, traj, adj, grads, grad_state0, Y, head)


def loss_and_grad(params, u, y, state0=None, output="sigmoid", loss="bce", many_to_many=False,
                  activation=DEFAULT_ACTIVATION, workspace=True):
    """``(F, grads)``: the batch-mean loss and its exact gradient (a dict keyed like ``params``).

    ``workspace``: where the trajectories, the adjoints and the temporaries live between calls
    (:class:`~manualgrad.backend.Workspace`; True: the calling thread's default, False: fresh
    arrays). F and grads are always the caller's own arrays; results are bit for bit the same
    either way. For the trajectories and the adjoints themselves use :func:`sweep`.
    """
    params, L = check_params(params)
    with backend.workspace_scope(workspace) as ws:
        s = _sweep(params, L, u, y, state0, output, loss, many_to_many, activation, ws)
        return s.F, s.grads
