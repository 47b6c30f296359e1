"""The Frank-Wolfe RNN optimizer (FW Algorithm 1, printed in full in FWp) and its linear
minimization oracle over the Lp ball (FW eq. (7)), on parameter mappings.

The local problem (FW eq. (5)): at the current weights omega, look for the best step inside a
small ball,

    min_Delta  F(omega + Delta)    subject to  ||Delta||_p <= delta.

The Frank-Wolfe iteration on it (FW eq. (6), step size 1/k), started at Delta_0 = 0::

    s_k     = argmin_{||s||_p <= delta} <s, grad F(omega + Delta_{k-1})>        (the LMO, eq. 7)
    Delta_k = (1 - 1/k) Delta_{k-1} + (1/k) s_k                                k = 1..K

so Delta_K is the mean of the K oracle points and stays in the ball. Algorithm 1 restarts it at
every outer step t and moves the weights by the result::

    omega_t = omega_{t-1} + eta_t Delta_{t,K}

The LMO over the Lp ball (FW eq. (7); sources/README.md restores the symbols the extraction
dropped), with q the dual exponent, 1/p + 1/q = 1, and g = grad F::

    s = -delta sign(g) |g|^(q-1) / ||g||_q^(q-1)
    p = 1:    -delta sign(g_i) on ONE coordinate i of largest |g_i|, 0 elsewhere
    p = 2:    -delta g / ||g||_2                    (the delta-scaled normalised gradient)
    p = inf:  -delta sign(g)                        (the delta-scaled sign gradient)

It lies on the sphere, ||s||_p = delta, and attains <s, g> = -delta ||g||_q (Hoelder's
inequality with equality); g = 0 gives s = 0. It is computed from a = |g| / max|g| (entries in
[0, 1], the largest exactly 1), so neither tiny nor huge gradients nor a huge q (p near 1)
overflow, underflow to 0/0 or produce NaN: with S = sum a^q >= 1,
s = -delta sign(g) a^(q-1) / S^(1/p)  (because ||a||_q^(q-1) = S^((q-1)/q) = S^(1/p)).

:func:`lmo` treats one array; :func:`lmo_params` a mapping of them, either as one concatenated
vector (``per_tensor=False``: the ball of FW eq. (5) in the whole parameter space) or tensor by
tensor (``per_tensor=True``, the default: the LMO over the product of one ball of radius delta
per tensor, which is what the authors' released code does, normalising each gradient tensor by
its own norm). For p = inf the two coincide. docs/frank_wolfe.md compares them.

:class:`FrankWolfe` holds the state of Algorithm 1 and never calls a model: the training loop
(:func:`manualgrad.train.fit`) asks it where to evaluate the gradient
(:meth:`FrankWolfe.eval_point`, omega + Delta_{k-1}) and hands the gradient back
(:meth:`FrankWolfe.step`); every K-th call
performs the outer update. Outside ``fit``, :meth:`FrankWolfe.outer_step` runs one whole outer
step against a gradient oracle.
"""
from __future__ import annotations

import math
from numbers import Real

from .. import _validate, backend
from .._validate import integer as _integer, number as _number
from .adam import _adam_step, _check_hyper
from .clip import global_norm

__all__ = ["lmo", "lmo_params", "dual_exponent", "norm", "FrankWolfe", "step_decay", "angle"]

OUTERS = ("sgd", "adam")
"""How the outer update is taken: ``sgd`` omega + eta Delta_K (Alg. 1 as printed), ``adam``
Adam fed -Delta_K / delta_t (FW Sec. III: "Adam can be used to update")."""

MINIBATCHES = ("successive", "same")
"""Where the K inner gradients come from: ``successive`` minibatches (one per inner step, the
authors' code) or the ``same`` minibatch K times."""


# ----------------------------------------------------------------------------- validation
def _order(p, name="p"):
    """The norm order as a float >= 1 (``inf`` allowed, also as the string "inf")."""
    if isinstance(p, str) and p.strip().lower() in ("inf", "infinity"):
        return math.inf
    if isinstance(p, bool) or not isinstance(p, Real):
        raise TypeError("%s must be a real number >= 1 or inf (the norm of the ball), got %r"
                        % (name, p))
    p = float(p)
    if math.isnan(p) or not p >= 1.0:
        raise ValueError("%s must be >= 1 (the Lp ball is convex only for p >= 1; use inf for "
                         "the max-norm), got %r" % (name, p))
    return p


def _radius(delta, name="delta", where=None):
    return _validate.positive_real(delta, name, where, role="the radius of the ball")


_NO_DIRECTION = "the LMO has no direction to give"


def _grad(g, name):
    return _validate.backend_array(g, name, floating=True, finite=True, why=_NO_DIRECTION)


def dual_exponent(p):
    """q with 1/p + 1/q = 1: inf for p = 1, 1 for p = inf, p / (p - 1) otherwise."""
    p = _order(p)
    if p == 1.0:
        return math.inf
    if p == math.inf:
        return 1.0
    return p / (p - 1.0)


def norm(a, p=2):
    """||a||_p of an array (all entries), as a Python float, computed scaled by max|a|."""
    p = _order(p)
    xp = backend.array_module_of(a)
    if a.size == 0:
        return 0.0
    amax = float(xp.abs(a).max())
    if amax == 0.0 or not math.isfinite(amax):
        return amax
    if p == math.inf:
        return amax
    r = xp.abs(a) / amax
    return amax * float((r ** p).sum()) ** (1.0 / p)


# ----------------------------------------------------------------------------- the LMO
def _lmo_group(gs, p, delta):
    """FW eq. (7) for the concatenation of the arrays ``gs`` (a list), returned as a list.

    One ball of radius delta for all of them together. Scaled by the largest |g| over the
    group; see the module docstring for why that is exact and stable.
    """
    outs = [backend.array_module_of(g).zeros(g.shape, dtype=g.dtype) for g in gs]  # C order
    maxes = [float(backend.array_module_of(g).abs(g).max()) if g.size else 0.0 for g in gs]
    amax = max(maxes, default=0.0)
    if amax == 0.0:                       # g = 0: every s in the ball is a minimizer; take 0
        return outs
    if p == math.inf:                     # -delta sign(g)
        return [(-delta) * backend.array_module_of(g).sign(g) for g in gs]
    if p == 1.0:                          # one coordinate of largest |g_i| (the first one)
        j = maxes.index(amax)
        g, xp = gs[j], backend.array_module_of(gs[j])
        i = int(xp.argmax(xp.abs(g).reshape(-1)))
        flat = outs[j].reshape(-1)
        flat[i] = -delta if float(g.reshape(-1)[i]) > 0 else delta
        return outs
    if p == 2.0:                          # -delta g / ||g||_2, the ratio taken on g / max|g|
        rs = [g / amax for g in gs]
        nrm = math.sqrt(sum(float((r * r).sum()) for r in rs))
        return [(-delta / nrm) * r for r in rs]
    qm1 = 1.0 / (p - 1.0)                 # q - 1, exact for p near 1 (q = p / (p - 1))
    q = p * qm1
    a = [backend.array_module_of(g).abs(g) / amax for g in gs]   # in [0, 1], max exactly 1
    S = sum(float((r ** q).sum()) for r in a)                   # >= 1: no 0/0, no overflow
    c = -delta / S ** (1.0 / p)                                  # ||a||_q^(q-1) = S^(1/p)
    return [c * backend.array_module_of(g).sign(g) * (r ** qm1) for g, r in zip(gs, a)]


def lmo(grad, p=2, delta=1.0):
    """FW eq. (7): argmin of <s, grad> over the ball ||s||_p <= delta, for one array.

    Parameters
    ----------
    grad : floating array of the backend, any shape (the gradient g, all entries one vector)
    p : real >= 1, or ``inf`` (``math.inf`` or the string "inf")
    delta : radius > 0

    Returns s, an array like ``grad`` (same shape and dtype) with ||s||_p = delta and
    <s, g> = -delta ||g||_q, 1/p + 1/q = 1; zeros when g = 0. p = 1 puts all the mass on the
    first coordinate of largest |g_i|. ValueError/TypeError name a bad argument; a non-finite
    gradient raises ValueError.
    """
    p, delta = _order(p), _radius(delta)
    g = _grad(grad, "grad")
    return _lmo_group([g], p, delta)[0]


def lmo_params(grads, p=2, delta=1.0, per_tensor=True):
    """FW eq. (7) on a mapping of gradients ``{name: array}``; returns ``{name: s_name}``.

    ``per_tensor=True``: each tensor is its own ball, s_name = lmo(grads[name], p, delta) (the
    LMO over the product of the balls ||s_name||_p <= delta; the authors' code). Then
    <s, g> = -delta sum_name ||g_name||_q and ||s_name||_p = delta for each non-zero g_name.
    ``per_tensor=False``: one ball for the concatenated vector (FW eq. (5) as written), so
    ||s||_p = delta over all entries together and <s, g> = -delta ||g||_q.
    """
    p, delta = _order(p), _radius(delta)
    _validate.array_mapping(grads, "grads", "lmo_params", floating=True, finite=True,
                            why=_NO_DIRECTION)
    return _lmo_params(grads, p, delta, per_tensor)


def _lmo_params(grads, p, delta, per_tensor):
    """:func:`lmo_params` on checked arguments."""
    names = list(grads)
    gs = [grads[n] for n in names]
    if per_tensor:
        return {n: _lmo_group([g], p, delta)[0] for n, g in zip(names, gs)}
    return dict(zip(names, _lmo_group(gs, p, delta)))


# ----------------------------------------------------------------------------- diagnostics
def angle(a, b):
    """The angle in degrees between two mappings of arrays seen as single vectors; NaN if
    either is zero. With the unit vectors ahat, bhat: 2 atan2(||ahat - bhat||, ||ahat + bhat||),
    accurate near 0 and 180 degrees too (arccos of the cosine loses half the digits there)."""
    na, nb = global_norm(a), global_norm(b)
    if na == 0.0 or nb == 0.0:
        return float("nan")
    diff = math.sqrt(sum(float(((a[k] / na - b[k] / nb) ** 2).sum()) for k in a))
    summ = math.sqrt(sum(float(((a[k] / na + b[k] / nb) ** 2).sum()) for k in a))
    return math.degrees(2.0 * math.atan2(diff, summ))


def step_decay(gamma, every):
    """A schedule for :class:`FrankWolfe`: factor(t) = gamma ** (t // every), t = outer steps
    done (the "learning rate decay factor" of FW Sec. V, applied to eta and delta together)."""
    gamma = _number(gamma, "gamma", positive=True)
    every = _integer(every, "every", 1)

    def factor(t):
        return gamma ** (t // every)
    factor.__doc__ = "gamma ** (t // every) with gamma = %g, every = %d" % (gamma, every)
    return factor


# ----------------------------------------------------------------------------- Algorithm 1
class FrankWolfe:
    """FW Algorithm 1 as an optimizer object holding Delta, the inner counter k and the outer t.

    Parameters
    ----------
    delta : radius of the ball, > 0 (delta_t = delta * schedule(t))
    eta : outer step, > 0 (eta_t = eta * schedule(t)); default 1.0 for ``outer="sgd"`` (a step
        of Delta_K itself, length <= delta) and 1e-3 for ``outer="adam"`` (Adam's learning rate)
    K : inner Frank-Wolfe steps per outer step, >= 1
    p : norm of the ball, real >= 1 or inf (default 2)
    per_tensor : one ball per tensor (default, the authors' code) or one for the whole vector
    outer : ``"sgd"``: omega <- omega + eta_t Delta_K (Alg. 1); ``"adam"``: omega <- Adam step
        with "gradient" -Delta_K / delta_t and learning rate eta_t (see below)
    minibatch : ``"successive"`` (default): each inner step gets the next minibatch, as in the
        authors' code; ``"same"``: the K inner steps share one minibatch (the deterministic FW
        of eq. (6) applied to that minibatch's loss). Read by :func:`~manualgrad.train.fit`
        through :attr:`steps_per_batch`.
    schedule : None, or a callable t -> factor > 0 (t = outer steps done, from 0), applied to
        eta and delta alike (FW Sec. III: "we decrease delta with the learning rate"); e.g.
        :func:`step_decay`.
    beta1, beta2, eps : Adam's hyperparameters for ``outer="adam"``.

    Protocol (what ``fit`` does, per minibatch, :attr:`steps_per_batch` times)::

        point = opt.eval_point(params)              # omega + Delta_{k-1}
        F, grads = grad_fn(point, u_batch, y_batch)
        params = opt.step(params, grads)            # returns omega until the K-th call

    ``params`` is always omega (the outer iterate): :meth:`step` returns it unchanged for
    k < K and the updated omega at k = K. Nothing is modified in place.

    Adam outer update. Adam receives -Delta_K / delta_t as its gradient, as in the authors'
    code (``p.grad.div_(-lr)`` with delta = lr there): -Delta_K points uphill like a gradient,
    and dividing by delta_t makes Adam's input dimensionless (for K = 1 and p = 2 per tensor it
    is g_name / ||g_name||) and independent of the radius and of its decay, so that a change of
    delta_t does not pass through Adam's second-moment memory as a spurious change of scale,
    and eps keeps its meaning. The decay reaches the step through Adam's learning rate eta_t.

    Diagnostic (FW Assumption A5): after each outer step, :attr:`angles` gets the angle in
    degrees between Delta_K and -g_1, the negative gradient at omega (the first inner step's
    gradient, whose point is omega + Delta_0 = omega), both as whole vectors.
    :meth:`begin_epoch` / :meth:`epoch_metrics` (the optional hooks ``fit`` calls on any
    optimizer) put their mean, standard deviation and number per epoch into the epoch rows.
    """

    def __init__(self, delta, eta=None, K=1, p=2, per_tensor=True, outer="sgd",
                 minibatch="successive", schedule=None, beta1=0.9, beta2=0.999, eps=1e-8):
        where = "FrankWolfe"
        self.delta = _radius(delta, "delta", where)
        if outer not in OUTERS:
            raise ValueError("%s: outer must be one of %s, got %r" % (where, ", ".join(OUTERS),
                                                                      outer))
        self.outer = outer
        if eta is None:
            eta = 1.0 if outer == "sgd" else 1e-3
        self.eta = _validate.positive_real(eta, "eta", where, role="the outer step")
        if isinstance(K, bool) or not isinstance(K, int):
            raise TypeError("%s: K must be an integer >= 1 (inner steps), got %r" % (where, K))
        if K < 1:
            raise ValueError("%s: K must be >= 1 (inner Frank-Wolfe steps per outer step), "
                             "got %r" % (where, K))
        self.K = int(K)
        self.p = _order(p, "p")
        self.per_tensor = bool(per_tensor)
        if minibatch not in MINIBATCHES:
            raise ValueError("%s: minibatch must be one of %s, got %r"
                             % (where, ", ".join(MINIBATCHES), minibatch))
        self.minibatch = minibatch
        if schedule is not None and not callable(schedule):
            raise TypeError("%s: schedule must be None or a callable t -> factor, got %r"
                            % (where, schedule))
        self.schedule = schedule
        # the same checks as Adam's own (its learning rate eta_t is checked at each outer step)
        _, self.beta1, self.beta2, self.eps = _check_hyper(where, 1.0, beta1, beta2, eps)
        self.reset()

    # -------------------------------------------------------------------- state
    def reset(self):
        """Forget everything: t = 0, no inner step pending, no Adam moments, no angles."""
        self.t = 0               # outer steps done
        self.k = 0               # inner steps done in the current outer step
        self.Delta = None        # Delta_k of the current outer step (None = Delta_0 = 0)
        self._g1 = None          # gradient at omega (first inner step), for the angle
        self.adam_state = None
        self.angles = []
        self._epoch_start = 0    # len(angles) when the current epoch began (begin_epoch)

    def state_dict(self):
        """Everything Algorithm 1 carries between calls, as a new dict: the outer counter ``t``,
        the inner counter ``k``, the pending ``Delta`` and first gradient ``g1`` (None between
        outer steps), the Adam outer state, the angles and where the current epoch began. The
        hyperparameters and the schedule are not state: the caller builds the optimizer with
        them again. Arrays are the optimizer's own (not copies)."""
        adam = self.adam_state
        return {"t": self.t, "k": self.k,
                "Delta": None if self.Delta is None else dict(self.Delta),
                "g1": None if self._g1 is None else dict(self._g1),
                "adam": None if adam is None else {"m": dict(adam["m"]), "v": dict(adam["v"]),
                                                   "t": adam["t"]},
                "angles": [float(a) for a in self.angles], "epoch_start": self._epoch_start}

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` gave: the next :meth:`step` continues exactly there."""
        need = {"t", "k", "Delta", "g1", "adam", "angles", "epoch_start"}
        if not hasattr(state, "keys") or set(state) != need:
            raise ValueError("FrankWolfe.load_state_dict: expected the keys %s of "
                             "FrankWolfe.state_dict(), got %r"
                             % (sorted(need), sorted(state) if hasattr(state, "keys") else state))
        k = int(state["k"])
        if not 0 <= k < self.K:
            raise ValueError("FrankWolfe.load_state_dict: k = %d pending inner steps, but this "
                             "optimizer has K = %d" % (k, self.K))
        self.t, self.k = int(state["t"]), k
        self.Delta = None if state["Delta"] is None else dict(state["Delta"])
        self._g1 = None if state["g1"] is None else dict(state["g1"])
        adam = state["adam"]
        self.adam_state = None if adam is None else {"m": dict(adam["m"]), "v": dict(adam["v"]),
                                                     "t": int(adam["t"])}
        self.angles = [float(a) for a in state["angles"]]
        self._epoch_start = int(state["epoch_start"])

    @property
    def steps_per_batch(self):
        """Inner steps :func:`~manualgrad.train.fit` takes on each minibatch: K ("same") or 1."""
        return self.K if self.minibatch == "same" else 1

    def factor(self, t=None):
        """The schedule factor at outer step t (default: the current one); 1 without schedule."""
        t = self.t if t is None else t
        if self.schedule is None:
            return 1.0
        f = self.schedule(t)
        if isinstance(f, bool) or not isinstance(f, Real) or not (float(f) > 0) \
                or not math.isfinite(float(f)):
            raise ValueError("FrankWolfe: schedule(%d) must be a finite number > 0, got %r"
                             % (t, f))
        return float(f)

    @property
    def delta_t(self):
        """The radius of the current outer step, delta * schedule(t)."""
        return self.delta * self.factor()

    @property
    def eta_t(self):
        """The outer step of the current outer step, eta * schedule(t)."""
        return self.eta * self.factor()

    # -------------------------------------------------------------------- the protocol
    def eval_point(self, params):
        """Where the next gradient must be taken: omega + Delta_{k-1} (omega itself at k = 1)."""
        _validate.array_mapping(params, "params", "FrankWolfe.eval_point")
        if self.Delta is None:
            return dict(params)
        _validate.same_layout(params, self.Delta, "the pending Delta", "FrankWolfe.eval_point")
        return {n: params[n] + self.Delta[n] for n in params}

    def step(self, params, grads):
        """One inner step with ``grads`` = grad F at :meth:`eval_point` ``(params)``.

        s_k = LMO(grads) (FW eq. 7), Delta_k = (1 - 1/k) Delta_{k-1} + (1/k) s_k (eq. 6);
        at k = K the outer update (Alg. 1) is applied and returned, and the inner loop
        restarts. Before that, ``params`` (omega) is returned unchanged.
        """
        _validate.gradients(params, grads, "FrankWolfe.step", why=_NO_DIRECTION)
        delta_t = self.delta_t
        s = _lmo_params(grads, self.p, delta_t, self.per_tensor)
        k = self.k + 1
        if k == 1:                                  # Delta_1 = 0 + s_1
            self.Delta, self._g1 = s, dict(grads)
        else:
            a, b = 1.0 - 1.0 / k, 1.0 / k
            self.Delta = {n: a * self.Delta[n] + b * s[n] for n in params}
        if k < self.K:
            self.k = k
            return params
        return self._outer(params, delta_t)

    def _outer(self, params, delta_t):
        D = self.Delta
        self.angles.append(angle(D, {n: -g for n, g in self._g1.items()}))
        eta_t = self.eta_t
        if self.outer == "sgd":
            new = {n: params[n] + eta_t * D[n] for n in params}
        else:
            pseudo = {n: D[n] * (-1.0 / delta_t) for n in params}
            lr = _validate.positive_real(eta_t, "eta_t", "FrankWolfe")
            new, self.adam_state = _adam_step("FrankWolfe (Adam outer step)", params, pseudo,
                                              self.adam_state, lr, self.beta1, self.beta2,
                                              self.eps)
        self.t += 1
        self.k, self.Delta, self._g1 = 0, None, None
        return new

    # -------------------------------------------------------------------- per-epoch rows
    def begin_epoch(self):
        """Mark the start of an epoch (called by :func:`~manualgrad.train.fit`)."""
        self._epoch_start = len(self.angles)

    def epoch_metrics(self):
        """The epoch row's Frank-Wolfe entries (FW Assumption A5), over the outer steps since
        :meth:`begin_epoch`: ``fw_angle_mean`` and ``fw_angle_std`` of :attr:`angles` in
        degrees (NaN entries left out; NaN if none) and ``fw_outer_steps``, their number."""
        new = [a for a in self.angles[self._epoch_start:] if not math.isnan(a)]
        m = sum(new) / len(new) if new else float("nan")
        return {"fw_angle_mean": m,
                "fw_angle_std": (math.sqrt(sum((a - m) ** 2 for a in new) / len(new))
                                 if new else float("nan")),
                "fw_outer_steps": len(self.angles) - self._epoch_start}

    def outer_step(self, params, oracle):
        """One whole outer step of Alg. 1: K inner steps with ``oracle(point) -> grads`` (a
        mapping like params, the gradient at ``point`` of the objective, e.g. of one fixed
        minibatch's loss). Returns the new omega. Needs no inner step pending."""
        if self.k != 0:
            raise RuntimeError("FrankWolfe.outer_step: %d inner step(s) of the current outer "
                               "step are pending (mixing step() and outer_step()); call reset() "
                               "or finish them with step()" % self.k)
        if not callable(oracle):
            raise TypeError("FrankWolfe.outer_step: oracle must be a callable point -> grads, "
                            "got %r" % (oracle,))
        for _ in range(self.K):
            params = self.step(params, oracle(self.eval_point(params)))
        return params

    def __repr__(self):
        return ("FrankWolfe(delta=%g, eta=%g, K=%d, p=%g, per_tensor=%s, outer=%r, "
                "minibatch=%r%s)" % (self.delta, self.eta, self.K, self.p, self.per_tensor,
                                     self.outer, self.minibatch,
                                     ", schedule=%r" % self.schedule if self.schedule else ""))
