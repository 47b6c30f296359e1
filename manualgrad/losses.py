"""Losses F(yhat, y) with first and second derivatives, and output heads (activation + loss).

Conventions (docs/conventions.md). Per example, losses are summed over the output axis (the last):

    mse            F_b = 1/2 ||yhat_b - y_b||^2
    bce            F_b = -sum_c [ y_bc log yhat_bc + (1 - y_bc) log(1 - yhat_bc) ]   (yhat in (0, 1))
    cross_entropy  F_b = -sum_c y_bc log yhat_bc        (y one-hot, or integer labels; yhat > 0)

and F (the training objective) is the batch mean of the F_b (and, many-to-many, F_b is summed
over the steps first). Each :class:`Loss` gives, per example and elementwise in the last axis,

    value(yhat, y)    -> F_b                  shape (...,)
    grad(yhat, y)     -> dF_b/dyhat           shape (..., l)     (JP eq. (6): delta = -grad)
    hvp(yhat, y, v)   -> d^2F_b/dyhat^2 v     shape (..., l)     (needed by JP (15)-(19))

A :class:`Head` composes an output activation with a loss, as functions of the output
pre-activation o = W_out x_T + b2. It gives F_b, -dF_b/do = J_sigma(o)^T delta (the factor
``sigma'(W_out x_T + b2) o delta`` of JP eqs. (7), (9), (10)) and d^2F_b/do^2 v. Two pairs are
fused and computed from o directly so that they stay finite when sigma saturates:
sigmoid + bce (F_b = sum softplus(o) - y o) and softmax + cross_entropy (F_b = sum(y) logsumexp(o) - y.o).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from . import activations, backend

__all__ = ["Loss", "Head", "LOSSES", "get", "get_head", "head_and_targets", "targets", "per_example",
           "loss_names", "VALID_HEADS"]


@dataclass(frozen=True)
class Loss:
    """One loss: per-example value, gradient in yhat, and Hessian-vector product in yhat."""

    name: str
    value: Callable
    grad: Callable
    hvp: Callable
    domain: str = "any"  # 'any', 'open01' (bce) or 'positive' (cross_entropy)


def _xp():
    return backend.xp()


def _mse_value(yhat, y):
    r = yhat - y
    return 0.5 * (r * r).sum(axis=-1)


def _mse_grad(yhat, y):
    return yhat - y


def _mse_hvp(yhat, y, v):
    return v


def _bce_value(yhat, y):
    xp = _xp()
    return -(y * xp.log(yhat) + (1.0 - y) * xp.log1p(-yhat)).sum(axis=-1)


def _bce_grad(yhat, y):
    return (yhat - y) / (yhat * (1.0 - yhat))


def _bce_hvp(yhat, y, v):
    return (y / (yhat * yhat) + (1.0 - y) / ((1.0 - yhat) * (1.0 - yhat))) * v


def _ce_value(yhat, y):
    return -(y * _xp().log(yhat)).sum(axis=-1)


def _ce_grad(yhat, y):
    return -y / yhat


def _ce_hvp(yhat, y, v):
    return (y / (yhat * yhat)) * v


LOSSES = {
    "mse": Loss("mse", _mse_value, _mse_grad, _mse_hvp),
    "bce": Loss("bce", _bce_value, _bce_grad, _bce_hvp, domain="open01"),
    "cross_entropy": Loss("cross_entropy", _ce_value, _ce_grad, _ce_hvp, domain="positive"),
}


def loss_names():
    return tuple(LOSSES)


def get(name):
    """Look up a loss by name; a :class:`Loss` passes through; unknown names list valid ones."""
    if isinstance(name, Loss):
        return name
    if not isinstance(name, str):
        raise TypeError("loss must be a name, one of %s; got %r" % (", ".join(LOSSES), name))
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError("unknown loss %r: valid names are %s"
                         % (name, ", ".join(LOSSES))) from None


# ----------------------------------------------------------------------------- heads
def _fused_sigmoid_bce_value(o, a, y):
    xp = _xp()
    return (xp.maximum(o, 0.0) + xp.log1p(xp.exp(-xp.abs(o))) - y * o).sum(axis=-1)


def _fused_sigmoid_bce_grad(o, a, y):
    return a - y


def _fused_sigmoid_bce_hvp(o, a, y, v):
    return a * (1.0 - a) * v


def _fused_softmax_ce_value(o, a, y):
    xp = _xp()
    mx = o.max(axis=-1, keepdims=True)
    lse = (mx + xp.log(xp.exp(o - mx).sum(axis=-1, keepdims=True)))[..., 0]
    return y.sum(axis=-1) * lse - (y * o).sum(axis=-1)


def _fused_softmax_ce_grad(o, a, y):
    return y.sum(axis=-1, keepdims=True) * a - y


def _fused_softmax_ce_hvp(o, a, y, v):
    return y.sum(axis=-1, keepdims=True) * activations.OUTPUT["softmax"].vjp(o, a, v)


_FUSED = {
    ("sigmoid", "bce"): (_fused_sigmoid_bce_value, _fused_sigmoid_bce_grad, _fused_sigmoid_bce_hvp),
    ("softmax", "cross_entropy"): (_fused_softmax_ce_value, _fused_softmax_ce_grad,
                                   _fused_softmax_ce_hvp),
}

VALID_HEADS = {
    "mse": tuple(activations.OUTPUT),
    "bce": ("sigmoid",),
    "cross_entropy": ("softmax",),
}
"""Output activations each loss accepts: bce needs yhat in (0, 1), cross_entropy a distribution."""


@dataclass(frozen=True)
class Head:
    """Output activation ``sigma_out`` composed with a loss, as functions of o (..., l).

    ``a`` is sigma_out(o) (passed in to avoid recomputation). ``y`` is a float target of the
    same shape as o (integer labels are one-hot encoded beforehand, see :func:`targets`).
    """

    output: activations.Activation
    loss: Loss
    _fused: Optional[tuple] = None

    @property
    def fused(self):
        return self._fused is not None

    def value(self, o, a, y):
        """Per-example F_b, shape o.shape[:-1]."""
        if self._fused:
            return self._fused[0](o, a, y)
        return self.loss.value(a, y)

    def delta(self, o, a, y):
        """JP eq. (6): delta = -dF_b/dyhat, shape (..., l) (inspection; may overflow if saturated)."""
        return -self.loss.grad(a, y)

    def delta_out(self, o, a, y):
        """-dF_b/do = J_sigma_out(o)^T delta, the factor sigma'(W_out x_T + b2) o delta of JP (7)."""
        if self._fused:
            return -self._fused[1](o, a, y)
        return self.output.vjp(o, a, -self.loss.grad(a, y))

    def hvp(self, o, a, y, v):
        """d^2F_b/do^2 v = sigma''[dF/dyhat, v] + J^T H_yhat J v (second derivative of the head)."""
        if self._fused:
            return self._fused[2](o, a, y, v)
        g = self.loss.grad(a, y)
        Jv = self.output.jvp(o, a, v)
        return self.output.vjp2(o, a, g, v) + self.output.vjp(o, a, self.loss.hvp(a, y, Jv))


def get_head(output, loss):
    """The :class:`Head` for ``output`` (activation name) and ``loss`` (name), checked."""
    out = activations.get(output, kind="output", argname="output")
    ls = get(loss)
    allowed = VALID_HEADS.get(ls.name)
    if allowed is not None and out.name not in allowed:
        raise ValueError(
            "loss=%r needs output in %s (its predictions must lie in %s); got output=%r"
            % (ls.name, list(allowed),
               "(0, 1)" if ls.name == "bce" else "the probability simplex", out.name))
    return Head(out, ls, _FUSED.get((out.name, ls.name)))


def per_example(F):
    """F_b from head values: many-to-many values (T, B) are summed over the steps (BW: "the
    loss is the sum of the loss at each slot"); many-to-one values (B,) pass through."""
    return F.sum(axis=0) if F.ndim == 2 else F


def head_and_targets(output, loss, o, y):
    """The :class:`Head` for ``output``/``loss`` and ``y`` checked against the output pre-activation o.

    Targets come back as floats of o's shape (integer labels one-hot encoded); see :func:`targets`.
    """
    head = get_head(output, loss)
    return head, targets(y, o.shape[-1], head.loss, o.shape[:-1])


def targets(y, l, loss, leading_shape, argname="y"):
    """Validate targets and return them as a float array of shape leading_shape + (l,).

    ``loss='cross_entropy'`` accepts integer labels of shape ``leading_shape`` (one-hot encoded
    here, each in [0, l)) or one-hot/probability rows. For mse and bce with l == 1, a target of
    shape ``leading_shape`` is accepted and given its trailing axis.
    """
    xp = backend.xp()
    ls = get(loss)
    if not backend.is_array(y):
        y = backend.np.asarray(y)
    want = tuple(leading_shape) + (l,)
    kind = y.dtype.kind
    if kind == "b" or kind not in "iuf":
        raise TypeError("%s must be a numeric array (float targets%s); got dtype %s"
                        % (argname, ", or integer labels for cross_entropy"
                           if ls.name == "cross_entropy" else "", y.dtype))
    if kind in "iu":
        if ls.name != "cross_entropy":
            raise TypeError("%s has integer dtype %s: loss=%r needs float targets "
                            "(convert with y.astype(float))" % (argname, y.dtype, ls.name))
        if tuple(y.shape) != tuple(leading_shape):
            raise ValueError("%s: integer labels must have shape %s, got %s"
                             % (argname, tuple(leading_shape), tuple(y.shape)))
        lo, hi = (int(y.min()), int(y.max())) if y.size else (0, 0)  # on y's own device
        if lo < 0 or hi >= l:
            raise ValueError("%s: integer labels must lie in [0, %d) (l = %d outputs); found "
                             "values in [%d, %d]" % (argname, l, l, lo, hi))
        labels = backend.asarray(y, dtype=y.dtype)
        return backend.asarray(xp.eye(l, dtype=backend.get_dtype())[labels])
    if l == 1 and ls.name != "cross_entropy" and tuple(y.shape) == tuple(leading_shape):
        y = y[..., None]
    if tuple(y.shape) != want:
        raise ValueError("%s: expected shape %s (%s), got %s"
                         % (argname, want, "leading axes, then l outputs", tuple(y.shape)))
    y = backend.asarray(y)
    if not bool(xp.isfinite(y).all()):
        raise ValueError("%s contains NaN or Inf" % argname)
    if ls.name in ("bce", "cross_entropy") and y.size and bool(((y < 0) | (y > 1)).any()):
        raise ValueError("%s: targets for loss=%r must lie in [0, 1]" % (argname, ls.name))
    return y
