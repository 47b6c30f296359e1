"""Activations sigma, sigma' and sigma'' by name (JP eqs. (5)-(8); second derivatives for JP (15)-(19)).

Every activation acts on a pre-activation ``z`` of any shape; ``a = sigma(z)`` may be passed to
the derivatives so that tanh and sigmoid reuse the forward value. Elementwise activations have
a diagonal Jacobian, so their Jacobian products are Hadamard products (the ``\\circ`` of JP eq. 8):

    vjp(z, a, v)     = J(z)^T v              = sigma'(z) * v
    jvp(z, a, w)     = J(z) w                = sigma'(z) * w
    vjp2(z, a, v, w) = d/de [J(z + e w)^T v] = sigma''(z) * v * w

``softmax`` (output heads only) acts on the last axis and has the full Jacobian
J = diag(s) - s s^T; its products are written out below in the same three functions.

Registries: :data:`HIDDEN` (for the recurrence) and :data:`OUTPUT` (heads; adds softmax).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from . import backend

__all__ = ["Activation", "HIDDEN", "OUTPUT", "get", "hidden_names", "output_names"]


@dataclass(frozen=True)
class Activation:
    """One activation: value, first and second derivative (elementwise ones), Jacobian products.

    Attributes
    ----------
    name : str
    f : callable ``f(z) -> a``
    grad : callable ``grad(z, a) -> sigma'(z)`` (elementwise activations; ``None`` for softmax);
        must return a new array (the adjoint sweep writes into it)
    grad2 : callable ``grad2(z, a) -> sigma''(z)`` (elementwise activations; ``None`` for softmax)
    elementwise : bool
    """

    name: str
    f: Callable
    grad: Optional[Callable] = None
    grad2: Optional[Callable] = None
    elementwise: bool = True
    _vjp: Optional[Callable] = None
    _vjp2: Optional[Callable] = None
    _f_into: Optional[Callable] = None
    _grad_into: Optional[Callable] = None
    _grad2_into: Optional[Callable] = None

    def __call__(self, z):
        return self.f(z)

    def f_into(self, z, out):
        """sigma(z) written into ``out`` (the shape of z), bit for bit ``f(z)``; returns out.

        The registry's activations compute in place without temporaries (what the sweeps
        need to allocate nothing per step); any other Activation falls back to ``out[...] = f(z)``.
        """
        if self._f_into is not None:
            return self._f_into(z, out)
        out[...] = self.f(z)
        return out

    def grad_into(self, z, a, out):
        """sigma'(z) written into ``out``, bit for bit ``grad(z, a)``; returns out."""
        if self._grad_into is not None:
            return self._grad_into(z, a, out)
        out[...] = self.grad(z, a)
        return out

    def grad2_into(self, z, a, out):
        """sigma''(z) written into ``out``, bit for bit ``grad2(z, a)``; returns out."""
        if self._grad2_into is not None:
            return self._grad2_into(z, a, out)
        out[...] = self.grad2(z, a)
        return out

    def vjp(self, z, a, v):
        """J(z)^T v; shapes of z, a, v agree ((..., n))."""
        if self.elementwise:
            return self.grad(z, a) * v
        return self._vjp(z, a, v)

    def jvp(self, z, a, w):
        """J(z) w. All activations here have symmetric Jacobians, so this equals vjp."""
        return self.vjp(z, a, w)

    def vjp2(self, z, a, v, w):
        """Second-order product d/de [J(z + e w)^T v] at e = 0 (sigma'' * v * w if elementwise)."""
        if self.elementwise:
            return self.grad2(z, a) * v * w
        return self._vjp2(z, a, v, w)


def _xp():
    return backend.xp()


# --- tanh: sigma' = 1 - a^2, sigma'' = -2 a (1 - a^2)
def _tanh(z):
    return _xp().tanh(z)


def _tanh_grad(z, a=None):
    a = _tanh(z) if a is None else a
    g = a * a
    return _xp().subtract(1.0, g, out=g)  # 1 - a^2 with one temporary


def _tanh_grad2(z, a=None):
    a = _tanh(z) if a is None else a
    g = a * a
    _xp().subtract(1.0, g, out=g)
    g *= a
    g *= -2.0  # -2 a (1 - a^2), with one temporary
    return g


# --- sigmoid, written through tanh so that it never overflows: s = (1 + tanh(z/2)) / 2
def _sigmoid(z):
    return 0.5 * (1.0 + _xp().tanh(0.5 * z))


def _sigmoid_grad(z, a=None):
    a = _sigmoid(z) if a is None else a
    return a * (1.0 - a)


def _sigmoid_grad2(z, a=None):
    a = _sigmoid(z) if a is None else a
    return a * (1.0 - a) * (1.0 - 2.0 * a)


# --- identity
def _identity(z):
    return z


def _ones(z, a=None):
    return _xp().ones_like(z)


def _zeros(z, a=None):
    return _xp().zeros_like(z)


# --- relu (derivative 0 at the kink z = 0; sigma'' = 0 wherever it exists)
def _relu(z):
    return _xp().maximum(z, 0.0)


def _relu_grad(z, a=None):
    return (z > 0).astype(z.dtype)


# --- softplus log(1 + e^z), stable: max(z, 0) + log1p(e^-|z|); sigma' = sigmoid, sigma'' = s (1 - s)
def _softplus(z):
    xp = _xp()
    return xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))


def _softplus_grad(z, a=None):
    return _sigmoid(z)


def _softplus_grad2(z, a=None):
    s = _sigmoid(z)
    return s * (1.0 - s)


# --- softmax over the last axis: J = diag(s) - s s^T (symmetric)
def _softmax(z):
    xp = _xp()
    e = xp.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _shift_to_argmax(s, v):
    """v - v[argmax s]: J^T 1 = 0, so J^T v is unchanged, but s o (v - s.v) no longer cancels
    catastrophically when s saturates (max s -> 1)."""
    xp = _xp()
    i = s.argmax(axis=-1)[..., None]
    return v - xp.take_along_axis(v, i, axis=-1)


def _softmax_vjp(z, a, v):
    s = _softmax(z) if a is None else a
    v = _shift_to_argmax(s, v)
    return s * (v - (s * v).sum(axis=-1, keepdims=True))


def _softmax_vjp2(z, a, v, w):
    # d(J^T v) in direction w, with ds = J w:  ds*v - ds (s.v) - s (ds.v)
    s = _softmax(z) if a is None else a
    v = _shift_to_argmax(s, v)
    ds = _softmax_vjp(z, s, w)
    return (ds * v - ds * (s * v).sum(axis=-1, keepdims=True)
            - s * (ds * v).sum(axis=-1, keepdims=True))


# --- the same formulas written into a given array (same operations, same order: bit for bit)
def _tanh_into(z, out):
    return _xp().tanh(z, out=out)


def _tanh_grad_into(z, a, out):
    xp = _xp()
    if a is None:
        a = xp.tanh(z, out=out)
    xp.multiply(a, a, out=out)
    return xp.subtract(1.0, out, out=out)  # 1 - a^2


def _tanh_grad2_into(z, a, out):
    a = _tanh(z) if a is None else a
    _tanh_grad_into(z, a, out)
    out *= a
    out *= -2.0  # -2 a (1 - a^2)
    return out


def _sigmoid_into(z, out):
    xp = _xp()
    xp.multiply(z, 0.5, out=out)
    xp.tanh(out, out=out)
    out += 1.0
    out *= 0.5  # (1 + tanh(z/2)) / 2
    return out


def _sigmoid_grad_into(z, a, out):
    a = _sigmoid(z) if a is None else a
    xp = _xp()
    xp.subtract(1.0, a, out=out)
    return xp.multiply(a, out, out=out)  # a (1 - a)


def _sigmoid_grad2_into(z, a, out):
    a = _sigmoid(z) if a is None else a
    _sigmoid_grad_into(z, a, out)
    out *= 1.0 - 2.0 * a  # a (1 - a) (1 - 2a)
    return out


def _identity_into(z, out):
    out[...] = z
    return out


def _ones_into(z, a, out):
    out.fill(1.0)
    return out


def _zeros_into(z, a, out):
    out.fill(0.0)
    return out


def _relu_into(z, out):
    return _xp().maximum(z, 0.0, out=out)


def _relu_grad_into(z, a, out):
    return _xp().greater(z, 0, out=out)  # 1.0 where z > 0, else 0.0


def _softplus_into(z, out):
    xp = _xp()
    xp.abs(z, out=out)
    xp.negative(out, out=out)
    xp.exp(out, out=out)
    xp.log1p(out, out=out)
    out += xp.maximum(z, 0.0)  # max(z, 0) + log1p(e^-|z|)
    return out


def _softplus_grad_into(z, a, out):
    return _sigmoid_into(z, out)


def _softplus_grad2_into(z, a, out):
    s = _sigmoid(z)
    return _sigmoid_grad_into(z, s, out)  # s (1 - s)


HIDDEN = {
    "tanh": Activation("tanh", _tanh, _tanh_grad, _tanh_grad2, _f_into=_tanh_into,
                       _grad_into=_tanh_grad_into, _grad2_into=_tanh_grad2_into),
    "sigmoid": Activation("sigmoid", _sigmoid, _sigmoid_grad, _sigmoid_grad2,
                          _f_into=_sigmoid_into, _grad_into=_sigmoid_grad_into,
                          _grad2_into=_sigmoid_grad2_into),
    "identity": Activation("identity", _identity, _ones, _zeros, _f_into=_identity_into,
                           _grad_into=_ones_into, _grad2_into=_zeros_into),
    "relu": Activation("relu", _relu, _relu_grad, _zeros, _f_into=_relu_into,
                       _grad_into=_relu_grad_into, _grad2_into=_zeros_into),
    "softplus": Activation("softplus", _softplus, _softplus_grad, _softplus_grad2,
                           _f_into=_softplus_into, _grad_into=_softplus_grad_into,
                           _grad2_into=_softplus_grad2_into),
}
"""Activations allowed in the recurrence (elementwise)."""

OUTPUT = dict(HIDDEN)
OUTPUT["softmax"] = Activation("softmax", _softmax, elementwise=False,
                               _vjp=_softmax_vjp, _vjp2=_softmax_vjp2)
"""Activations allowed for the output head yhat = sigma_out(W_out x + b2)."""


def hidden_names():
    return tuple(HIDDEN)


def output_names():
    return tuple(OUTPUT)


def get(name, kind="hidden", argname="activation"):
    """Look up an activation by name; ``kind`` is 'hidden' or 'output'.

    An :class:`Activation` passes through. Unknown names raise ``ValueError`` listing the
    valid ones.
    """
    if isinstance(name, Activation):
        if kind == "hidden" and not name.elementwise:
            raise ValueError("%s=%r: only elementwise activations can be used in the recurrence"
                             % (argname, name.name))
        return name
    table = HIDDEN if kind == "hidden" else OUTPUT
    if not isinstance(name, str):
        raise TypeError("%s must be a name, one of %s; got %r" % (argname, ", ".join(table), name))
    try:
        return table[name]
    except KeyError:
        extra = (" (softmax is only available as an output head)"
                 if kind == "hidden" and name == "softmax" else "")
        raise ValueError("unknown %s %r%s: valid names are %s"
                         % (argname, name, extra, ", ".join(table))) from None
