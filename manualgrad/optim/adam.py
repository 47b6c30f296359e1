"""Adam (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization", Algorithm 1), on mappings.

For every parameter array theta (elementwise; g_t = dF/dtheta at step t, all products and powers
elementwise)::

    t     <- t + 1
    m_t   <- beta1 * m_{t-1} + (1 - beta1) * g_t            biased first-moment estimate
    v_t   <- beta2 * v_{t-1} + (1 - beta2) * g_t^2          biased second raw-moment estimate
    mhat  <- m_t / (1 - beta1^t)                            bias-corrected (m_0 = 0 pulls m_t to 0)
    vhat  <- v_t / (1 - beta2^t)
    theta <- theta - lr * mhat / (sqrt(vhat) + eps)

with m_0 = v_0 = 0 and t_0 = 0. The step counter t is shared by all arrays of the mapping. At
t = 1 the step is lr * g / (|g| + eps), i.e. about lr * sign(g) whatever the scale of g; with a
constant gradient every step has that length (the "trust region" of Sec. 2.1).

This is Algorithm 1 literally (eps added to sqrt(vhat)), not the reordered form of the paper's
Sec. 2 (lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t), eps added to sqrt(v_t)); the two differ
only through where eps enters.

:func:`adam_step` is a pure function: the state goes in and comes out, nothing is modified in
place, calling it twice with the same inputs gives the same answer. :class:`Adam` wraps it as an
optimizer object holding the state, like :class:`~manualgrad.optim.sgd.SGD`::

    opt = Adam(lr=1e-3)
    params = opt.step(params, grads)    # opt.state == {"m": {...}, "v": {...}, "t": 1}
"""
from __future__ import annotations

from .. import _validate, backend

__all__ = ["adam_init", "adam_step", "Adam"]


def _check_hyper(where, lr, beta1, beta2, eps):
    """Return the hyperparameters as floats; TypeError / ValueError naming the bad one (the
    vocabulary of :mod:`manualgrad._validate`, shared with SGD and Frank-Wolfe)."""
    return (_validate.positive_real(lr, "lr", where),
            _validate.unit_interval(beta1, "beta1", where),
            _validate.unit_interval(beta2, "beta2", where),
            _validate.positive_real(eps, "eps", where))


def adam_init(params):
    """The initial state: ``{"m": zeros like params, "v": zeros like params, "t": 0}``."""
    _validate.array_mapping(params, "params", "adam_init")
    zeros = {k: backend.array_module_of(p).zeros_like(p) for k, p in params.items()}
    return {"m": zeros, "v": {k: z.copy() for k, z in zeros.items()}, "t": 0}


def _check_state(where, params, state):
    if not hasattr(state, "keys") or set(state) != {"m", "v", "t"}:
        raise ValueError("%s: state must be a mapping with keys 'm', 'v', 't' (from adam_init or "
                         "a previous adam_step), got %r"
                         % (where, sorted(state) if hasattr(state, "keys") else state))
    t = state["t"]
    if isinstance(t, bool) or not isinstance(t, int) or t < 0:
        raise ValueError("%s: state['t'] must be an integer >= 0, got %r" % (where, t))
    for what in ("m", "v"):
        _validate.array_mapping(state[what], "state[%r]" % what, where)
        _validate.same_layout(params, state[what], "state[%r]" % what, where)


def adam_step(params, grads, state=None, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    """One Adam step (Kingma & Ba 2015, Algorithm 1). Pure: returns ``(new_params, new_state)``.

    Parameters
    ----------
    params, grads : mappings name -> floating array, the same keys and shapes (grads = dF/dparams);
        a NaN or Inf gradient is a ValueError naming it (never a NaN parameter).
    state : ``{"m": mapping, "v": mapping, "t": int}`` from :func:`adam_init` or a previous call;
        None means :func:`adam_init(params) <adam_init>` (t = 0).
    lr : step size alpha > 0.   beta1, beta2 : decay rates in [0, 1).   eps : > 0.

    Returns new dicts; ``params``, ``grads`` and ``state`` are not modified. Arrays keep their
    dtype (float32 stays float32: the scalars are Python floats).
    """
    lr, beta1, beta2, eps = _check_hyper("adam_step", lr, beta1, beta2, eps)
    return _adam_step("adam_step", params, grads, state, lr, beta1, beta2, eps)


def _adam_step(where, params, grads, state, lr, beta1, beta2, eps):
    """:func:`adam_step` with checked hyperparameters; ``where`` names the caller in errors."""
    _validate.gradients(params, grads, where)
    if state is None:
        state = adam_init(params)
    _check_state(where, params, state)

    t = state["t"] + 1
    bias1 = 1.0 - beta1 ** t          # 1 - beta1^t
    bias2 = 1.0 - beta2 ** t          # 1 - beta2^t
    new_params, m_new, v_new = {}, {}, {}
    for k, theta in params.items():
        xp = backend.array_module_of(theta)
        g = grads[k]
        m = beta1 * state["m"][k] + (1.0 - beta1) * g          # m_t
        v = beta2 * state["v"][k] + (1.0 - beta2) * (g * g)    # v_t
        m_hat = m / bias1
        v_hat = v / bias2
        new_params[k] = theta - lr * m_hat / (xp.sqrt(v_hat) + eps)
        m_new[k], v_new[k] = m, v
    return new_params, {"m": m_new, "v": v_new, "t": t}


class Adam:
    """Adam as an optimizer object: ``params = opt.step(params, grads)``; the moments live in
    ``opt.state`` (None before the first step). Each object has its own state; :meth:`reset`
    forgets it (e.g. before training a new model)."""

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = _check_hyper("Adam", lr, beta1, beta2, eps)
        self.state = None

    def step(self, params, grads):
        params, self.state = _adam_step("Adam.step", params, grads, self.state, self.lr,
                                        self.beta1, self.beta2, self.eps)
        return params

    def reset(self):
        self.state = None

    def state_dict(self):
        """What a resumed run needs, as a new dict: ``{"state": None}`` before the first step,
        else ``{"state": {"m": {...}, "v": {...}, "t": int}}`` (the arrays themselves, not
        copies; :func:`manualgrad.train.fit` writes them to its state file bit for bit)."""
        return {"state": None if self.state is None else
                {"m": dict(self.state["m"]), "v": dict(self.state["v"]), "t": self.state["t"]}}

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` gave (e.g. read back from a state file); the next
        :meth:`step` then continues exactly where that optimizer was."""
        if not hasattr(state, "keys") or "state" not in state:
            raise ValueError("Adam.load_state_dict: expected {'state': ...} from "
                             "Adam.state_dict(), got %r" % (state,))
        st = state["state"]
        if st is not None:
            if not hasattr(st, "keys") or set(st) != {"m", "v", "t"}:
                raise ValueError("Adam.load_state_dict: state must hold 'm', 'v', 't', got %r"
                                 % (sorted(st) if hasattr(st, "keys") else st,))
            st = {"m": dict(st["m"]), "v": dict(st["v"]), "t": int(st["t"])}
        self.state = st

    def __repr__(self):
        return "Adam(lr=%g, beta1=%g, beta2=%g, eps=%g)" % (self.lr, self.beta1, self.beta2,
                                                           self.eps)
