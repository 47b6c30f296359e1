"""Plain stochastic gradient descent: theta <- theta - lr * dF/dtheta, on parameter mappings."""
from __future__ import annotations

__all__ = ["sgd_step", "SGD"]


def sgd_step(params, grads, lr):
    """One SGD step. Returns a new mapping; ``params`` is not modified. Keys must match."""
    if set(params) != set(grads):
        raise ValueError("sgd_step: grads keys %s differ from params keys %s"
                         % (sorted(grads), sorted(params)))
    return {k: params[k] - lr * grads[k] for k in params}


class SGD:
    """SGD with a fixed learning rate, as an optimizer object: ``params = opt.step(params, grads)``."""

    def __init__(self, lr=0.1):
        if not (lr > 0):
            raise ValueError("SGD: lr must be > 0, got %r" % (lr,))
        self.lr = float(lr)

    def step(self, params, grads):
        return sgd_step(params, grads, self.lr)

    def __repr__(self):
        return "SGD(lr=%g)" % self.lr
