"""Plain stochastic gradient descent: theta <- theta - lr * dF/dtheta, on parameter mappings.

Checked like :mod:`~manualgrad.optim.adam` (one vocabulary, :mod:`manualgrad._validate`): lr a
finite real > 0; params and grads mappings of backend arrays with the same keys and shapes;
grads floating and finite (a NaN or Inf gradient is a ValueError naming it, never a NaN
parameter).
"""
from __future__ import annotations

from .. import _validate

__all__ = ["sgd_step", "SGD"]


def _sgd_step(where, params, grads, lr):
    _validate.gradients(params, grads, where)
    return {k: params[k] - lr * grads[k] for k in params}


def sgd_step(params, grads, lr):
    """One SGD step. Returns a new mapping; ``params`` is not modified. Keys, shapes must match."""
    lr = _validate.positive_real(lr, "lr", "sgd_step")
    return _sgd_step("sgd_step", params, grads, lr)


class SGD:
    """SGD with a fixed learning rate, an optimizer object: ``params = opt.step(params, grads)``."""

    def __init__(self, lr=0.1):
        self.lr = _validate.positive_real(lr, "lr", "SGD")

    def step(self, params, grads):
        return _sgd_step("SGD.step", params, grads, self.lr)

    def state_dict(self):
        """SGD keeps nothing between steps: ``{}`` (the protocol of Adam and FrankWolfe)."""
        return {}

    def load_state_dict(self, state):
        """Nothing to restore; ``state`` must be the ``{}`` of :meth:`state_dict`."""
        if not hasattr(state, "keys") or len(state):
            raise ValueError("SGD.load_state_dict: SGD has no state; expected {}, got %r"
                             % (state,))

    def __repr__(self):
        return "SGD(lr=%g)" % self.lr
