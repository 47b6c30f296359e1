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

from dataclasses import dataclass
from typing import Optional

from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st

from . import backend, rnn

__all__ = ["HEADS", "seeds", "sizes", "hidden_activations", "heads", "rnn_problems", "RNNProblem"]

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


@dataclass
class RNNProblem:
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

    @property
    def has_kinks(self):
        return "relu" in (self.activation, self.output)

    def kink_margin(self):
        """Smallest |pre-activation| feeding a relu (inf when there is no relu)."""
        if not self.has_kinks:
            return float("inf")
        traj = rnn.forward(self.params, self.u, self.x0, self.activation, self.output,
                           self.many_to_many)
        xp = backend.xp()
        m = float("inf")
        if self.activation == "relu":
            m = min(m, float(xp.abs(traj.z).min()))
        if self.output == "relu":
            m = min(m, float(xp.abs(traj.o).min()))
        return m

    def assume_off_kinks(self, margin=1e-3):
        """``hypothesis.assume`` that no relu input lies within ``margin`` of 0."""
        assume(self.kink_margin() > margin)

    def fd_options(self):
        """Finite-difference options: the 2-point stencil near kinks, else the 4-point one."""
        return {"order": 2} if self.has_kinks else {"order": 4}


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
