"""Hypothesis strategies for derivative tests: shapes, seeds, activations, heads, RNN problems.

For users writing their own property-based derivative tests, and for manualgrad's tests::

    from hypothesis import given
    from manualgrad import check, testing

    @given(testing.rnn_problems())
    def test_my_gradient(prob):
        prob.assume_off_kinks()
        F, grads = prob.loss_and_grad()
        rep = check.gradients(prob.loss, prob.params, grads, **prob.fd_options())
        assert rep.max_error < 1e-7, rep

The profiles ``"manualgrad"`` (no deadline, 60 examples), ``"manualgrad-thorough"`` (300) and
``"manualgrad-gpu"`` (12, for a time-limited GPU session) are registered
here; load it with ``hypothesis.settings.load_profile("manualgrad")``. Shapes are small, inputs
are N(0, 1), weights N(0, s^2/fan_in) with s in [0.3, 1.5], so nothing overflows; relu
problems are kept off their kinks (``assume_off_kinks``) and checked with the narrow
2-point stencil.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st

from . import backend, layered, rnn

__all__ = ["HEADS", "seeds", "sizes", "hidden_activations", "heads", "rnn_problems", "RNNProblem",
           "CELL_HIDDEN", "CellProblem", "cell_problems", "LayeredProblem", "layered_problems",
           "OffKinks",
           "ODE_HIDDEN", "ODE_HEADS", "NODEProblem", "node_problems", "field_states",
           "implicit_node_problems", "HBNODEProblem", "hbnode_problems"]

settings.register_profile(
    "manualgrad", deadline=None, max_examples=60, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "manualgrad-thorough", deadline=None, max_examples=300, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(  # a GPU session: every example is launch-bound, the CPU run does the search
    "manualgrad-gpu", deadline=None, max_examples=12, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

HEADS = (("sigmoid", "bce"), ("softmax", "cross_entropy"), ("identity", "mse"), ("tanh", "mse"),
         ("sigmoid", "mse"), ("softmax", "mse"), ("softplus", "mse"), ("relu", "mse"))
"""Every (output activation, loss) pair the engine supports."""

HIDDEN = ("tanh", "sigmoid", "identity", "relu", "softplus")


def seeds():
    return st.integers(min_value=0, max_value=2 ** 31 - 1)


def sizes(max_value=5, min_value=1):
    return st.integers(min_value=min_value, max_value=max_value)


def hidden_activations():
    return st.sampled_from(HIDDEN)


def heads():
    return st.sampled_from(HEADS)


class OffKinks:
    """What every problem class here shares: relu kinks are avoided and the stencil chosen.

    A problem provides ``activation``, ``output`` and ``relu_inputs()``, the arrays that feed a
    relu (pre-activations z of a relu hidden layer, o of a relu head).
    """

    @property
    def has_kinks(self):
        return "relu" in (self.activation, self.output)

    def kink_margin(self):
        """Smallest |pre-activation| feeding a relu (inf when there is no relu)."""
        if not self.has_kinks:
            return float("inf")
        xp = backend.xp()
        return min((float(xp.abs(a).min()) for a in self.relu_inputs()), default=float("inf"))

    def assume_off_kinks(self, margin=1e-3):
        """``hypothesis.assume`` that no relu input lies within ``margin`` of 0."""
        assume(self.kink_margin() > margin)

    def fd_options(self):
        """Finite-difference options: the 2-point stencil near kinks, else the 4-point one."""
        return {"order": 2} if self.has_kinks else {"order": 4}


@dataclass
class RNNProblem(OffKinks):
    """A random, well-scaled vanilla-RNN problem (arrays on the active backend)."""

    params: dict
    u: object
    y: object
    x0: Optional[object]
    activation: str
    output: str
    loss_name: str
    many_to_many: bool
    seed: int

    @property
    def kwargs(self):
        return dict(x0=self.x0, activation=self.activation, output=self.output,
                    loss=self.loss_name, many_to_many=self.many_to_many)

    def loss(self, params=None):
        """F(params) with everything else fixed: the function finite differences check."""
        return rnn.loss(self.params if params is None else params, self.u, self.y, **self.kwargs)

    def loss_of_x0(self):
        return rnn.loss(self.params, self.u, self.y, **self.kwargs)

    def loss_and_grad(self):
        return rnn.loss_and_grad(self.params, self.u, self.y, **self.kwargs)

    def sweep(self):
        return rnn.sweep(self.params, self.u, self.y, **self.kwargs)

    def relu_inputs(self):
        traj = rnn.forward(self.params, self.u, self.x0, self.activation, self.output,
                           self.many_to_many)
        return ([traj.z] if self.activation == "relu" else []) + (
            [traj.o] if self.output == "relu" else [])


@st.composite
def rnn_problems(draw, max_T=6, max_B=4, max_p=4, max_m=6, max_l=4, hidden=HIDDEN, head=HEADS,
                 many_to_many=None, x0=None, min_T=1, max_scale=1.5):
    """Strategy for :class:`RNNProblem`: shapes, seed, activation, head, x0 given or not.

    ``many_to_many`` / ``x0``: None draws both ways, True/False fixes it. Weights are
    N(0, s^2 / fan_in) with s drawn from [0.3, ``max_scale``].
    """
    T = draw(sizes(max_T, min_value=min_T))
    B = draw(sizes(max_B))
    p = draw(sizes(max_p))
    m = draw(sizes(max_m))
    act = draw(st.sampled_from(hidden))
    output, loss_name = draw(st.sampled_from(head))
    l = draw(sizes(max_l, min_value=2 if output == "softmax" else 1))
    m2m = draw(st.booleans()) if many_to_many is None else many_to_many
    with_x0 = draw(st.booleans()) if x0 is None else x0
    seed = draw(seeds())
    scale = draw(st.floats(0.3, max_scale))
    rng = backend.host_rng(seed)
    params = rnn.init_params(p, m, l, seed=seed, bias_scale=0.3)
    params = {k: v * scale if k.startswith("W") else v for k, v in params.items()}
    u = backend.asarray(rng.standard_normal((T, B, p)))
    lead = (T, B) if m2m else (B,)
    if loss_name == "cross_entropy":
        y = backend.asarray(rng.integers(0, l, size=lead), dtype="int64")
    elif loss_name == "bce":
        y = backend.asarray(rng.uniform(0.0, 1.0, size=lead + (l,)))
    else:
        y = backend.asarray(rng.standard_normal(lead + (l,)))
    x0_arr = backend.asarray(0.5 * rng.standard_normal((B, m))) if with_x0 else None
    return RNNProblem(params, u, y, x0_arr, act, output, loss_name, m2m, seed)


# ------------------------------------------------------------------------------ every cell
CELL_HIDDEN = {"rnn": HIDDEN, "momentum_rnn": HIDDEN, "indrnn": ("relu", "tanh"),
               "lstm": (None,), "momentum_lstm": (None,), "gru": (None,)}
"""The hidden activations :func:`cell_problems` draws by default, per cell (None: the cell has
no choice, its gates are fixed)."""


@dataclass
class CellProblem(OffKinks):
    """A random, well-scaled problem for one registered cell (arrays on the active backend).

    ``options``: the cell's own keyword arguments (activation, mu, s); ``state0``: a mapping
    with the cell's state keys, or None (zeros).
    """

    name: str
    params: dict
    u: object
    y: object
    state0: Optional[dict]
    output: str
    loss_name: str
    many_to_many: bool
    options: dict
    seed: int

    @property
    def cell(self):
        from . import cells
        return cells.get(self.name)

    @property
    def activation(self):
        return self.options.get("activation")

    @property
    def mu(self):
        return self.options.get("mu")

    @property
    def s(self):
        return self.options.get("s")

    @property
    def layers(self):
        """The number of stacked layers (IndRNN), 1 for every other cell."""
        from .cells import indrnn
        return indrnn.num_layers(self.params) if self.name == "indrnn" else 1

    @property
    def kwargs(self):
        return dict(state0=self.state0, output=self.output, loss=self.loss_name,
                    many_to_many=self.many_to_many, **self.options)

    def loss(self, params=None, **over):
        """F(params) with everything else fixed (``over`` replaces keyword arguments)."""
        P = self.params if params is None else params
        return self.cell.loss(P, self.u, self.y, **dict(self.kwargs, **over))

    def loss_and_grad(self):
        return self.cell.loss_and_grad(self.params, self.u, self.y, **self.kwargs)

    def sweep(self):
        return self.cell.sweep(self.params, self.u, self.y, **self.kwargs)

    def forward(self):
        return self.cell.forward(self.params, self.u, state0=self.state0, output=self.output,
                                 many_to_many=self.many_to_many, **self.options)

    def relu_inputs(self):
        """z of every layer (relu hidden units) and o (relu head)."""
        traj = self.forward()
        return (list(getattr(traj, "z_layers", None) or [traj.z]) if self.activation == "relu"
                else []) + ([traj.o] if self.output == "relu" else [])


def _targets(rng, loss_name, lead, l):
    """Targets for a head: integer labels (cross_entropy), U(0, 1) (bce), N(0, 1) (mse)."""
    if loss_name == "cross_entropy":
        return backend.asarray(rng.integers(0, l, size=lead), dtype="int64")
    if loss_name == "bce":
        return backend.asarray(rng.uniform(0.0, 1.0, size=lead + (l,)))
    return backend.asarray(rng.standard_normal(lead + (l,)))


_SIGMA = {"tanh": backend.np.tanh, "sigmoid": lambda z: 1.0 / (1.0 + backend.np.exp(-z)),
          "softplus": lambda z: backend.np.logaddexp(0.0, z)}


@st.composite
def cell_problems(draw, cell, max_T=6, max_B=4, max_p=4, max_m=None, max_l=4, hidden=None,
                  head=HEADS, many_to_many=None, state0=None, min_T=1, layers=None,
                  max_layers=3, input_scale=1.0):
    """Strategy for :class:`CellProblem` of ``cell`` (a registered name, or a tuple to draw from).

    Shared by every cell: shapes T in min_T..max_T, B, p, l up to their maxima, m up to
    ``max_m`` (default 6 for rnn, 5 otherwise); the hidden activation from ``hidden`` (default
    :data:`CELL_HIDDEN`); the head from ``head``; many-to-one/many and state0 given or not (None
    draws both ways, True/False fixes it); a seed; inputs N(0, input_scale^2); biases
    N(0, 0.3^2). Weight matrices are the cell's init scaled by s, and per cell:

    - rnn: s in [0.3, 1.5]; h0 ~ N(0, 0.5^2);
    - momentum_rnn: s in [0.3, 1.5] (U, W, W_out), mu in [0, 0.95], step s in [0.1, 2];
      h0 = sigma(N(0, 0.5^2)) inside sigma's range (tanh, sigmoid, softplus), v0 ~ N(0, 0.5^2);
    - lstm, momentum_lstm: s in [0.3, 2], forget bias in [-1, 1]; momentum mu in [0, 0.95],
      step s in [0.1, 1.5]; h0 ~ N(0, 0.5^2), c0 ~ N(0, 1), v0 ~ N(0, 0.5^2);
    - gru: s in [0.3, 1.5] (W, W_out), biases b, b_hn N(0, 0.3^2); h0 ~ N(0, 0.5^2);
    - indrnn: 1..``max_layers`` layers (or ``layers``), s in [0.3, 1.2], recurrent weights
      U(-1.2, 1.2) (negative and |w| > 1 covered); every h0_i ~ N(0, 0.5^2).
    """
    from . import cells
    from .cells import indrnn
    name = draw(st.sampled_from(cell)) if isinstance(cell, tuple) else cell
    mod = cells.get(name)
    T = draw(sizes(max_T, min_value=min_T))
    B = draw(sizes(max_B))
    p = draw(sizes(max_p))
    m = draw(sizes(max_m or (6 if name == "rnn" else 5)))
    L = (draw(sizes(max_layers)) if layers is None else layers) if name == "indrnn" else 1
    act = draw(st.sampled_from(CELL_HIDDEN[name] if hidden is None or CELL_HIDDEN[name] == (None,)
                               else hidden))
    output, loss_name = draw(st.sampled_from(head))
    l = draw(sizes(max_l, min_value=2 if output == "softmax" else 1))
    m2m = draw(st.booleans()) if many_to_many is None else many_to_many
    with_s0 = draw(st.booleans()) if state0 is None else state0
    seed = draw(seeds())
    rng = backend.host_rng(seed)
    options = {} if act is None else {"activation": act}
    if name == "lstm" or name == "momentum_lstm":
        scale = draw(st.floats(0.3, 2.0))
        params = mod.init_params(p, m, l, seed=seed, forget_bias=draw(st.floats(-1.0, 1.0)),
                                 bias_scale=0.3)
        if name == "momentum_lstm":
            options.update(mu=draw(st.floats(0.0, 0.95)), s=draw(st.floats(0.1, 1.5)))
    elif name == "indrnn":
        scale = draw(st.floats(0.3, 1.2))
        params = indrnn.init_params(p, m, l, seed=seed, layers=L, bias_scale=0.3)
        for i in range(1, L + 1):
            params["w_%d" % i] = backend.uniform(m, -1.2, 1.2, rng=rng)
    else:
        if name == "momentum_rnn":
            options.update(mu=draw(st.floats(0.0, 0.95)), s=draw(st.floats(0.1, 2.0)))
        scale = draw(st.floats(0.3, 1.5))
        params = mod.init_params(p, m, l, seed=seed, bias_scale=0.3)
    scaled = ("W_%d" % i for i in range(1, L + 1)) if name == "indrnn" else \
        (k for k in params if k[0] == "W" or k == "U")  # the IndRNN's W_out keeps its init
    params = dict(params, **{k: params[k] * scale for k in scaled})
    u = backend.asarray(input_scale * rng.standard_normal((T, B, p)))
    y = _targets(rng, loss_name, (T, B) if m2m else (B,), l)
    s0 = None
    if with_s0:
        h0 = 0.5 * rng.standard_normal((B, m))
        if name == "momentum_rnn" and act in _SIGMA:
            h0 = _SIGMA[act](h0)  # inside sigma's range, so that sigma^{-1}(h_0) exists
        s0 = {"h0": backend.asarray(h0)}
        if name.endswith("lstm"):
            s0["c0"] = backend.asarray(rng.standard_normal((B, m)))
        if name == "momentum_lstm":
            s0["v0"] = backend.asarray(0.5 * rng.standard_normal((B, 4 * m)))
        if name == "momentum_rnn":
            s0["v0"] = backend.asarray(0.5 * rng.standard_normal((B, m)))
        if name == "indrnn":
            s0 = {n: backend.asarray(0.5 * rng.standard_normal((B, m)))
                  for n in indrnn.state_names(L)}
    return CellProblem(name, params, u, y, s0, output, loss_name, m2m, options, seed)


# ------------------------------------------------------------------ the layered system (JP 1-4)
@dataclass
class LayeredProblem(OffKinks):
    """A random, well-scaled layered-system problem (arrays on the active backend)."""

    params: dict
    x0: object
    y: object
    activation: str
    output: str
    loss_name: str
    seed: int

    @property
    def kwargs(self):
        return dict(activation=self.activation, output=self.output, loss=self.loss_name)

    @property
    def act_kwargs(self):
        return dict(activation=self.activation, output=self.output)

    def loss(self, params=None):
        return layered.loss(self.params if params is None else params, self.x0, self.y,
                            **self.kwargs)

    def sweep(self):
        return layered.sweep(self.params, self.x0, self.y, **self.kwargs)

    def relu_inputs(self):
        traj = layered.forward(self.params, self.x0, **self.act_kwargs)
        return (list(traj.z) if self.activation == "relu" else []) + (
            [traj.o] if self.output == "relu" else [])


@st.composite
def layered_problems(draw, min_T=1, max_T=4, max_width=5, max_B=4, max_l=4,
                     hidden=HIDDEN, head=HEADS):
    """Widths m_i in 1..max_width, T in min_T..max_T, weights N(0, s^2/fan_in), s in [0.3, 1.5]."""
    T = draw(st.integers(min_T, max_T))
    widths = draw(st.lists(sizes(max_width), min_size=T + 1, max_size=T + 1))
    B = draw(sizes(max_B))
    act = draw(st.sampled_from(hidden))
    output, loss_name = draw(st.sampled_from(head))
    l = draw(sizes(max_l, min_value=2 if output == "softmax" else 1))
    seed = draw(seeds())
    scale = draw(st.floats(0.3, 1.5))
    params = layered.init_params(widths, l, seed=seed, bias_scale=0.3)
    params = {k: v * scale if k.startswith("W") else v for k, v in params.items()}
    rng = backend.host_rng(seed + 1)
    x0 = backend.asarray(rng.standard_normal((B, widths[0])))
    y = _targets(rng, loss_name, (B,), l)
    return LayeredProblem(params, x0, y, act, output, loss_name, seed)


# ============================================================================ ODE problems
ODE_HIDDEN = ("tanh", "sigmoid", "softplus", "identity")
"""Smooth activations for ODE fields (relu has kinks: finite differences across them mislead)."""

ODE_HEADS = (("identity", "mse"), ("tanh", "mse"), ("sigmoid", "bce"),
             ("softmax", "cross_entropy"))
"""The heads the ODE problems draw from."""


@dataclass
class NODEProblem:
    """A random, well-scaled BW-NODE problem (:mod:`manualgrad.ode.node`).

    ``params``: theta1, b1, theta2, b2 [theta1_t] [W_out, b_out]; ``h0`` (B, n) and the targets
    ``y`` on the active backend; ``kwargs``: the solve, field and head settings of
    ``node.loss_and_grad`` (t0, t1, solver, steps or rtol/atol, activation, output, loss).
    """

    params: dict
    h0: object
    y: object
    kwargs: dict
    seed: int

    def loss_and_grad(self, **extra):
        from .ode import node
        return node.loss_and_grad(self.params, self.h0, self.y, **dict(self.kwargs, **extra))

    def replay_kwargs(self, info):
        """The settings with the forward grid fixed: for dopri5 the replay of its accepted steps
        (``grid=info["ts"]``), the function its discrete adjoint differentiates."""
        kw = dict(self.kwargs)
        if kw["solver"] == "dopri5":
            kw.pop("rtol"), kw.pop("atol")
            kw["grid"] = info["ts"]
        return kw

    def loss(self, params=None, h0=None, info=None):
        """F(params, h0) with everything else fixed (``info``: replay that solve's grid)."""
        from .ode import node
        kw = self.kwargs if info is None else self.replay_kwargs(info)
        return node.loss(self.params if params is None else params,
                         self.h0 if h0 is None else h0, self.y, **kw)


@st.composite
def node_problems(draw, solvers=("euler", "midpoint", "rk4", "dopri5"), max_n=3, max_H=4,
                  max_B=3, max_steps=4, hidden=ODE_HIDDEN, head=ODE_HEADS):
    """Strategy for :class:`NODEProblem`: n, H, B small; weights N(0, s^2/fan_in), s in
    [0.3, 1.5], biases N(0, 0.25); time input or not; readout (l in 1..3) or none; t0 in
    [-0.5, 0.5], T in [0.3, 1.5]; 1..max_steps fixed steps, or dopri5 at rtol 1e-3."""
    from .ode import node
    n, H, B = draw(sizes(max_n)), draw(sizes(max_H)), draw(sizes(max_B))
    seed = draw(seeds())
    act = draw(st.sampled_from(hidden))
    time_input = draw(st.booleans())
    l = draw(st.one_of(st.none(), sizes(3)))
    output, loss_name = draw(st.sampled_from(head))
    solver = draw(st.sampled_from(solvers))
    steps = draw(sizes(max_steps))
    t0 = draw(st.floats(-0.5, 0.5))
    T = draw(st.floats(0.3, 1.5))
    rng = backend.host_rng(seed)
    params = node.init_params(n, H, seed=seed, scale=draw(st.floats(0.3, 1.5)),
                              time_input=time_input, l=l, bias_scale=0.5)
    h0 = backend.asarray(rng.standard_normal((B, n)))
    lo = n if l is None else l
    if loss_name == "bce":
        y = backend.asarray(rng.uniform(0.05, 0.95, (B, lo)))
    else:
        y = _targets(rng, loss_name, (B,), lo)
    kw = dict(t0=t0, t1=t0 + T, solver=solver, activation=act, output=output, loss=loss_name)
    kw.update(dict(rtol=1e-3, atol=1e-5) if solver == "dopri5" else dict(steps=steps))
    return NODEProblem(params, h0, y, kw, seed)


@st.composite
def field_states(draw, kinds=("node", "linear", "hbnode"), max_n=3, max_H=4, max_B=3):
    """Strategy for ``(field, t, z, theta)``: a vector field with a closed-form Jacobian ``jac``
    (X-IMPL) at a random state: a BW-NODE field (smooth activation, time input or not), a
    LinearField reading A from theta, or an HBNODE field (fixed or learned gamma); z (B, N) and
    theta on the active backend (theta validated by the field's ``check``)."""
    from .ode import hbnode, node
    kind = draw(st.sampled_from(kinds))
    n, H, B = draw(sizes(max_n)), draw(sizes(max_H)), draw(sizes(max_B))
    seed = draw(seeds())
    rng = backend.host_rng(seed)
    t = draw(st.floats(-1.0, 1.0))
    if kind == "node":
        time_input = draw(st.booleans())
        fld = node.NODEField(draw(st.sampled_from(ODE_HIDDEN)), time_input=time_input)
        theta = node.init_params(n, H, seed=seed, time_input=time_input, bias_scale=0.5)
        N = n
    elif kind == "linear":
        fld = node.LinearField()
        theta = {"A": rng.standard_normal((n, n))}
        N = n
    else:
        learn = draw(st.booleans())
        fld = hbnode.HBNODEField(draw(st.sampled_from(ODE_HIDDEN)), learn_gamma=learn,
                                 gamma=draw(st.floats(0.0, 2.0)))
        theta = hbnode.init_params(n, H, seed=seed, learn_gamma=learn)
        N = 2 * n
    z = backend.asarray(rng.standard_normal((B, N)))
    return fld, t, z, fld.check(theta, z)


@st.composite
def implicit_node_problems(draw, solvers=("beuler", "sdirk2"), max_steps=4):
    """:func:`node_problems` for the implicit solvers (X-IMPL) with enough steps that
    h L <= 1/2, L = ||theta2||_2 ||theta1||_2 >= the Lipschitz constant of f (|sigma'| <= 1):
    then every stage equation Z = r + h a_ii f(Z) is a contraction in Z, with a unique
    solution. (On a field expanding faster than 1/(h a_ii), backward Euler's equation can have
    no solution, and Newton rightly raises.)"""
    prob = draw(node_problems(solvers=solvers, max_steps=max_steps))
    kw = prob.kwargs
    np = backend.np
    L = (np.linalg.norm(backend.to_numpy(prob.params["theta2"]), 2)
         * np.linalg.norm(backend.to_numpy(prob.params["theta1"]), 2))
    kw["steps"] = max(kw["steps"], math.ceil(2 * L * (kw["t1"] - kw["t0"])))
    return prob


@dataclass
class HBNODEProblem:
    """A random, well-scaled HBNODE problem (:mod:`manualgrad.ode.hbnode`): ``params`` (theta1,
    b1, theta2, b2 [gamma_raw] [W_out, b_out]), ``h0``, ``m0`` (B, n) and targets ``y`` on the
    active backend; ``kwargs``: the solve, field and head settings of ``hbnode.loss_and_grad``."""

    params: dict
    h0: object
    m0: object
    y: object
    kwargs: dict
    seed: int

    def loss_and_grad(self, **extra):
        from .ode import hbnode
        return hbnode.loss_and_grad(self.params, self.h0, self.m0, self.y,
                                    **dict(self.kwargs, **extra))


@st.composite
def hbnode_problems(draw, solvers=("euler", "midpoint", "rk4", "dopri5"), max_n=3, max_H=4,
                    max_B=3, max_steps=4, hidden=ODE_HIDDEN, head=ODE_HEADS):
    """Strategy for :class:`HBNODEProblem` (X-NODE-HVP tests): as :func:`node_problems`, with
    gamma fixed in [0, 2] or learned (gamma0 in [0.1, 0.9]) and m0 ~ N(0, 1)."""
    from .ode import hbnode
    n, H, B = draw(sizes(max_n)), draw(sizes(max_H)), draw(sizes(max_B))
    seed = draw(seeds())
    act = draw(st.sampled_from(hidden))
    learn = draw(st.booleans())
    l = draw(st.one_of(st.none(), sizes(3)))
    output, loss_name = draw(st.sampled_from(head))
    solver = draw(st.sampled_from(solvers))
    steps = draw(sizes(max_steps))
    t0 = draw(st.floats(-0.5, 0.5))
    T = draw(st.floats(0.3, 1.5))
    rng = backend.host_rng(seed)
    params = hbnode.init_params(n, H, seed=seed, scale=draw(st.floats(0.3, 1.5)),
                                learn_gamma=learn, gamma0=draw(st.floats(0.1, 0.9)), l=l,
                                bias_scale=0.5)
    h0 = backend.asarray(rng.standard_normal((B, n)))
    m0 = backend.asarray(rng.standard_normal((B, n)))
    lo = n if l is None else l
    if loss_name == "bce":
        y = backend.asarray(rng.uniform(0.05, 0.95, (B, lo)))
    else:
        y = _targets(rng, loss_name, (B,), lo)
    kw = dict(t0=t0, t1=t0 + T, solver=solver, activation=act, output=output, loss=loss_name)
    if not learn:
        kw["gamma"] = draw(st.floats(0.0, 2.0))
    kw.update(dict(rtol=1e-3, atol=1e-5) if solver == "dopri5" else dict(steps=steps))
    return HBNODEProblem(params, h0, m0, y, kw, seed)
