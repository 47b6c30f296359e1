"""Training methods shared by the experiments: gradient functions and optimizers by name.

Nothing here belongs to one experiment; every experiment module picks what it needs.

- Optimizers by name (:data:`OPTIMIZERS`, :func:`check_optimizer`, :func:`make_optimizer`) and
  the Frank-Wolfe optimizer from the ``fw_*`` settings (:func:`frank_wolfe`).
- The JP methods (ltg, imdb, table2): ``adjoint`` (the RNN's gradient of F, JP eqs. 9-13),
  ``coadjoint`` (the gradient of F + alpha G, JP eq. 14;
  :func:`manualgrad.coadjoint.coadjoint_grad_fn`) and ``lstm`` (the LSTM by its BPTT):
  :func:`jp_grad_fn`, :func:`jp_model`; and what their runs report (:func:`warning_counts`,
  :func:`stop_reason`).
- Every cell under one interface (norms, mnist1d): :data:`CELL_OPTIONS` and :data:`CELL_COLORS`,
  :func:`split_cell_options` (each option to ``init_params`` and/or ``sweep``) and
  :func:`cell_metrics` (loss, error and mean adjoint norms per step from one sweep of any cell).
- The FW methods (fwseq, har; FW Sec. V): :data:`METHOD_SPECS` (cell, TBPTT or not, optimizer,
  K), :func:`spec_optimizer`, :func:`make_grad_fn`, :func:`init_model`,
  :func:`evaluate_classifier`, :func:`train_classifier`, :func:`summarize`, :func:`describe`,
  and the data helpers :func:`holdout_split`, :func:`subsample`.
"""
from __future__ import annotations

import functools
import inspect as _inspect

from .. import backend, cells, coadjoint, losses, rnn, tbptt, train
from ..cells import lstm
from ..coadjoint import coadjoint_grad_fn
from ..data import transforms
from ..optim.adam import Adam
from ..optim.frank_wolfe import FrankWolfe, step_decay
from ..optim.sgd import SGD
from .._validate import number as _number
from .options import WarningLog
from .threads import blas_threads

__all__ = ["OPTIMIZERS", "check_optimizer", "make_optimizer", "frank_wolfe", "JP_METHODS",
           "jp_model", "jp_grad_fn", "coadjoint_grad_fn", "check_jp_settings", "fit_jp",
           "drain_mean", "warning_counts", "stop_reason", "CELL_OPTIONS", "CELL_COLORS",
           "split_cell_options", "cell_metrics", "METHOD_SPECS", "spec_optimizer",
           "make_grad_fn", "init_model", "evaluate_classifier", "add_iterations",
           "train_classifier", "summarize", "describe", "holdout_split", "subsample"]

OPTIMIZERS = {"sgd": (SGD, 0.1), "adam": (Adam, 1e-3)}
"""name -> (class, default learning rate)."""


def check_optimizer(s, optimizers=OPTIMIZERS):
    """Check ``s["optimizer"]`` (a name of ``optimizers``) in place and fill ``s["lr"]`` with
    the optimizer's default learning rate when it is None (else check it is > 0)."""
    if s["optimizer"] not in optimizers:
        raise ValueError("unknown optimizer %r: valid are %s"
                         % (s["optimizer"], ", ".join(optimizers)))
    s["lr"] = optimizers[s["optimizer"]][1] if s["lr"] is None else _number(s["lr"], "lr",
                                                                            positive=True)
    return s


def make_optimizer(s, optimizers=OPTIMIZERS):
    """The optimizer ``s["optimizer"]`` with learning rate ``s["lr"]`` (checked settings)."""
    return optimizers[s["optimizer"]][0](s["lr"])


def frank_wolfe(s, eta, K):
    """FW Algorithm 1 (:class:`~manualgrad.optim.FrankWolfe`) from the ``fw_*`` settings of
    :data:`manualgrad.experiments.options.FW_DEFAULTS`, outer step ``eta``, ``K`` inner steps;
    eta and delta decay by ``fw_decay`` every ``fw_decay_every`` outer steps unless it is 1."""
    schedule = None if s["fw_decay"] == 1.0 else step_decay(s["fw_decay"], s["fw_decay_every"])
    return FrankWolfe(s["fw_delta"], eta, K=K, p=s["fw_p"], per_tensor=s["fw_per_tensor"],
                      outer=s["fw_outer"], minibatch=s["fw_minibatch"], schedule=schedule)


# ------------------------------------------------------------------------------ JP methods
JP_METHODS = ("adjoint", "coadjoint", "lstm")
"""The JP experiments' methods: the RNN by the adjoint and the coadjoint method, the LSTM."""


def jp_model(method, kw):
    """``(module, options)`` that evaluate ``method``'s model: :mod:`manualgrad.rnn` with the RNN
    options ``kw``, or :mod:`manualgrad.cells.lstm` with ``kw`` less ``activation``."""
    if method == "lstm":
        return lstm, {k: v for k, v in kw.items() if k != "activation"}
    return rnn, kw


def jp_grad_fn(method, kw, G=None, alpha=None, G_seen=None, failure=None):
    """``(P, u, y) -> (F, grads)`` of a JP method: the gradient of F (``adjoint``, ``lstm``), or
    of F + alpha G (``coadjoint``, penalty ``G``; ``G_seen`` and ``failure`` as in
    :func:`manualgrad.coadjoint.coadjoint_grad_fn`). ``kw``: the RNN's options."""
    if method == "coadjoint":
        return coadjoint_grad_fn(G, alpha, G_seen, failure, **kw)
    model, opts = jp_model(method, kw)
    return functools.partial(model.loss_and_grad, **opts)


def check_jp_settings(s):
    """Check, in place, the training settings of the JP methods: ``G`` (a penalty name of
    :func:`manualgrad.coadjoint.penalty_names`), ``alpha`` >= 0, the optimizer and ``lr``
    (:func:`check_optimizer`), ``scale`` (None or >= 0), ``bias_scale`` >= 0, ``clip``."""
    if not isinstance(s["G"], str):
        raise TypeError("G must be a penalty name (%s), got %r"
                        % (", ".join(coadjoint.penalty_names()), s["G"]))
    coadjoint.get_penalty(s["G"])          # ValueError naming the valid penalties
    s["alpha"] = _number(s["alpha"], "alpha", minimum=0.0)
    check_optimizer(s)
    s["scale"] = _number(s["scale"], "scale", minimum=0.0, allow_none=True)
    s["bias_scale"] = _number(s["bias_scale"], "bias_scale", minimum=0.0)
    s["clip"] = _number(s["clip"], "clip", positive=True, allow_none=True)
    return s


def fit_jp(params, grad_fn, u, y, s, evaluate, progress, desc, seed=None, state=None,
           log=None):
    """:func:`manualgrad.train.fit` with the settings ``s`` (epochs, batch size, optimizer, clip,
    BLAS threads; ``seed`` default ``s["seed"]``), recording every warning in ``log`` (a
    :class:`~manualgrad.experiments.options.WarningLog`, a new one when None); ``state``: fit's
    training state (:func:`~manualgrad.experiments.options.run_state`; put ``log.seen`` in its
    ``carry`` so a resumed run counts the warnings of its first part). Returns
    ``(history, warning_counts)`` (:func:`warning_counts`'s form)."""
    log = WarningLog() if log is None else log
    with log, blas_threads(s["blas_threads"]):
        hist = train.fit(params, grad_fn, u, y, epochs=s["epochs"], batch_size=s["batch_size"],
                         optimizer=make_optimizer(s), seed=s["seed"] if seed is None else seed,
                         evaluate=evaluate, progress=progress, desc=desc, clip=s["clip"],
                         state=state)
    return hist, log.counts()


def drain_mean(row, key, values):
    """Set ``row[key]`` to the mean of the list ``values`` and empty it (nothing when empty)."""
    if values:
        row[key] = sum(values) / len(values)
        values.clear()
    return row


def warning_counts(caught):
    """``{category name: {"count", "first"}}`` of the warnings recorded by ``catch_warnings``."""
    seen = {}
    for w in caught:
        seen.setdefault(w.category.__name__, {"count": 0, "first": str(w.message)})
        seen[w.category.__name__]["count"] += 1
    return seen


def stop_reason(stopped, failure):
    """``fit``'s stop reason, with the first coadjoint failure (if any) appended."""
    if failure:
        return "%s (%s)" % (stopped, failure[0]) if stopped else failure[0]
    return stopped


# ------------------------------------------------------------------------------ every cell
CELL_OPTIONS = {"rnn": {"activation": "tanh"},
                "lstm": {},
                "momentum_lstm": {"mu": 0.6, "s": 0.6},
                "indrnn": {"activation": "relu"},
                "momentum_rnn": {"activation": "tanh", "mu": 0.6, "s": 0.6}}
"""Default options per cell name (a cell not listed gets its own defaults): tanh for the vanilla
RNN (as in JP), relu for the IndRNN (its default), mu = s = 0.6 for the momentum cells (the
MomentumRNN authors' values)."""

CELL_COLORS = {"rnn": "tab:blue", "lstm": "tab:green", "momentum_lstm": "tab:olive",
               "indrnn": "tab:purple", "momentum_rnn": "tab:orange", "gru": "tab:brown"}
"""One colour per cell, the same in every experiment's figures."""

_FIXED = ("p", "m", "l", "seed", "dtype", "params", "u", "y", "state0", "output", "loss",
          "many_to_many")
"""Arguments an experiment sets itself; a per-cell option may not name them."""


def _named_params(fn):
    """(names of the keyword-able parameters of ``fn``, whether it takes **kwargs)."""
    sig = _inspect.signature(fn)
    named = {n for n, q in sig.parameters.items()
             if q.kind in (q.POSITIONAL_OR_KEYWORD, q.KEYWORD_ONLY)}
    return named, any(q.kind == q.VAR_KEYWORD for q in sig.parameters.values())


def split_cell_options(name, options):
    """``(init_options, sweep_options)`` of cell ``name``: each option goes to the function(s)
    that accept it by name (``init_params`` and/or ``sweep``); a ``sweep`` with ``**options``
    (the vanilla RNN adapter) takes every option that ``init_params`` does not. Options the
    experiment sets itself (seed, sizes, head, loss) or that neither accepts: ValueError."""
    cell = cells.get(name)
    init_named, _ = _named_params(cell.init_params)
    sweep_named, sweep_any = _named_params(cell.sweep)
    init_named -= set(_FIXED)
    sweep_named -= set(_FIXED)
    init_opts, sweep_opts = {}, {}
    for key, value in options.items():
        if key in _FIXED:
            raise ValueError("cell option %r of %r is set by the experiment, not per cell"
                             % (key, name))
        if key not in init_named and key not in sweep_named and not sweep_any:
            raise ValueError("unknown option %r for cell %r: valid are %s"
                             % (key, name, ", ".join(sorted(init_named | sweep_named))))
        if key in init_named:
            init_opts[key] = value
        if key in sweep_named or (sweep_any and key not in init_named):
            sweep_opts[key] = value
    return init_opts, sweep_opts


def _extra_adjoints(cell, params):
    """Names of the adjoints of the non-h state, by the interface's naming: c0 -> lam_c, ..."""
    return tuple("lam_" + n[:-1] for n in cells.state_names(cell, params)
                 if n.endswith("0") and n != "h0" and not n.startswith("h0_"))


def cell_metrics(name, params, u, y, chunk=None, **sweep_options):
    """One sweep of cell ``name`` on (u, y), ``chunk`` examples at a time (None: all at once):
    the loss, the error and the mean adjoint norms per step.

    Returns a dict: ``F`` (mean loss), ``error`` (classification error), ``norms`` (T,) host
    array of the mean over examples of ||lambda_k||_2, lambda_k = -dF_b/dh_k (``adj.lam[k-1]``,
    k = 1..T, computed without underflow by :func:`coadjoint.adjoint_norms_from_lam`),
    ``zero_frac`` (T,) the fraction of examples with lambda_k exactly 0 (a relu unit switched
    off on the way back cuts its path), ``extra`` {adjoint name: (T,) mean norms} for the other
    state adjoints (the LSTM's ``lam_c``, the momentum velocity ``lam_v``). ``sweep_options``:
    the cell's sweep options (head, loss, activation, ...). Nothing is recomputed differently
    from training: it is the cell's own ``sweep``.
    """
    cell = cells.get(name)
    n = u.shape[1]
    step = n if chunk is None else max(1, int(chunk))
    F = err = 0.0
    norms = zeros = None
    extra = {}
    for i in range(0, n, step):
        ub, yb = u[:, i:i + step], y[i:i + step]
        B = ub.shape[1]
        sw = cell.sweep(params, ub, yb, **sweep_options)
        F += float(sw.F) * B
        err += train.classification_error(sw.traj.yhat, yb) * B
        per = backend.to_numpy(coadjoint.adjoint_norms_from_lam(sw.adj.lam))   # (T, B)
        norms = per.sum(axis=1) if norms is None else norms + per.sum(axis=1)
        z = (per == 0).sum(axis=1)
        zeros = z if zeros is None else zeros + z
        for attr in _extra_adjoints(cell, params):
            lam = getattr(sw.adj, attr, None)
            if lam is not None:
                e = backend.to_numpy(coadjoint.adjoint_norms_from_lam(lam)).sum(axis=1)
                extra[attr] = e if attr not in extra else extra[attr] + e
    return {"F": F / n, "error": err / n, "norms": norms / n, "zero_frac": zeros / n,
            "extra": {k: v / n for k, v in extra.items()}}


# ------------------------------------------------------------------------------ FW methods
METHOD_SPECS = {
    "sgd": dict(cell="rnn", truncated=False, opt="sgd", K=None),
    "sgd_clip": dict(cell="rnn", truncated=False, opt="sgd", K=None, clip="clip_sgd"),
    "adam": dict(cell="rnn", truncated=False, opt="adam", K=None),
    "tbptt": dict(cell="rnn", truncated=True, opt="adam", K=None),
    "fw1": dict(cell="rnn", truncated=False, opt="fw", K=1),
    "fw5": dict(cell="rnn", truncated=False, opt="fw", K=5),
    "fw10": dict(cell="rnn", truncated=False, opt="fw", K=10),
    "tbptt_fw": dict(cell="rnn", truncated=True, opt="fw", K="fw_K"),
    "lstm_adam": dict(cell="lstm", truncated=False, opt="adam", K=None),
    "lstm_fw": dict(cell="lstm", truncated=False, opt="fw", K="fw_K"),
}
"""Every method of the FW experiments: the cell (``rnn`` or ``lstm``), whether the gradient is
TBPTT's, the optimizer (``sgd``, ``adam``, ``fw``) and FW's K (a number, or the name of the
setting that holds it). A method's learning rate is the setting ``lr_<method>`` (for FW: the
outer step eta); ``clip`` names the setting with the global-norm threshold."""


def _K(spec, s):
    K = spec["K"]
    return s[K] if isinstance(K, str) else K


def spec_optimizer(method, settings):
    """The optimizer of ``method`` (:data:`METHOD_SPECS`) with learning rate ``lr_<method>``."""
    spec = METHOD_SPECS[method]
    lr = settings["lr_" + method]
    if spec["opt"] == "fw":
        return frank_wolfe(settings, lr, _K(spec, settings))
    return OPTIMIZERS[spec["opt"]][0](lr)


def _cell_options(spec, model):
    opts = dict(output=model["output"], loss=model["loss"])
    if spec["cell"] == "rnn":
        opts["activation"] = model.get("activation", "tanh")
    return opts


def make_grad_fn(method, settings, model):
    """``(params, u, y) -> (F, grads)`` for ``method``: the cell's BPTT gradient, or TBPTT(k1, k2)
    with the settings' windows. ``model``: dict with output, loss (and activation for the RNN)."""
    spec = METHOD_SPECS[method]
    opts = _cell_options(spec, model)
    if spec["truncated"]:
        return tbptt.grad_fn(settings["tbptt_k1"], settings["tbptt_k2"], cell=spec["cell"],
                             loss_at=settings["tbptt_loss_at"], **opts)
    cell = rnn if spec["cell"] == "rnn" else cells.get(spec["cell"])

    def grad_fn(P, u, y):
        return cell.loss_and_grad(P, u, y, **opts)
    return grad_fn


def init_model(method, p, settings, model):
    """Initial parameters of ``method``'s cell: all RNN methods get the same weights (``seed``);
    the LSTM gets its own from the same seed (forget-gate bias ``lstm_forget_bias``, default 1)."""
    spec = METHOD_SPECS[method]
    if spec["cell"] == "rnn":
        return rnn.init_params(p, settings["hidden"], model["l"], seed=settings["seed"],
                               scale=settings["scale"])
    return lstm.init_params(p, settings["hidden"], model["l"], seed=settings["seed"],
                            scale=settings["scale"],
                            forget_bias=settings.get("lstm_forget_bias", 1.0))


def evaluate_classifier(params, u, y, cell="rnn", output="softmax", loss="cross_entropy",
                        chunk=2000, prefix="test", **options):
    """``{prefix_F: mean loss, prefix_acc: fraction correct}`` of a many-to-one classifier on
    (u, y), forward passes over chunks of ``chunk`` examples (MNIST's 10000 x 784 steps would
    not fit at once). Accuracy: argmax of the softmax, or yhat > 1/2 for one sigmoid output."""
    mod = cells.get(cell)
    n = u.shape[1]
    total, wrong = 0.0, 0.0
    for i in range(0, n, chunk):
        ub, yb = u[:, i:i + chunk], y[i:i + chunk]
        traj = mod.forward(params, ub, output=output, **options)
        head, Y = losses.head_and_targets(traj.output, loss, traj.o, yb)
        total += float(losses.per_example(head.value(traj.o, traj.yhat, Y)).sum())
        wrong += train.classification_error(traj.yhat, yb) * yb.shape[0]
    return {prefix + "_F": total / n, prefix + "_acc": 1.0 - wrong / n}


def add_iterations(rows, n_train, batch_size, opt):
    """Set ``iteration`` (minibatch gradients so far) in each per-epoch row, in place."""
    per_epoch = -(-n_train // batch_size) * getattr(opt, "steps_per_batch", 1)
    for r in rows:
        r["iteration"] = r["epoch"] * per_epoch
    return rows


def train_classifier(method, settings, data, model, progress=None, desc=None, state=None):
    """Train one FW method on ``data = ((u_train, y_train), (u_test, y_test))``.

    ``settings``: checked settings (fwseq's or har's); ``model``: dict with ``output``,
    ``loss``, ``l`` (outputs) and, for the RNN, ``activation``. Returns a JSON-able dict:
    ``method``, ``epochs`` (rows with ``epoch``, ``iteration``, ``train_F``, ``test_F``,
    ``test_acc``, for FW ``fw_angle_mean``, ``fw_angle_std``, ``fw_outer_steps``, with
    clipping ``clip_fired``), ``stopped``, ``wall_time_s``, ``optimizer`` (its repr).
    ``state``: fit's training state (:func:`~manualgrad.experiments.options.run_state`).
    """
    s = settings
    spec = METHOD_SPECS[method]
    (u_tr, y_tr), (u_te, y_te) = data
    params = init_model(method, u_tr.shape[2], s, model)
    grad_fn = make_grad_fn(method, s, model)
    opt = spec_optimizer(method, s)
    eval_opts = _cell_options(spec, model)
    clip = s[spec["clip"]] if spec.get("clip") else None
    progress = s["progress"] if progress is None else progress
    with blas_threads(s["blas_threads"]):
        hist = train.fit(params, grad_fn, u_tr, y_tr, epochs=s["epochs"],
                         batch_size=s["batch_size"], optimizer=opt, seed=s["seed"],
                         evaluate=lambda P: evaluate_classifier(P, u_te, y_te, spec["cell"],
                                                                **eval_opts),
                         progress=progress, desc=desc or method, clip=clip, state=state)
    add_iterations(hist.epochs, u_tr.shape[1], s["batch_size"], opt)
    return {"method": method, "epochs": hist.epochs, "stopped": hist.stopped,
            "wall_time_s": hist.wall_time, "optimizer": repr(opt)}


def summarize(rows):
    """Final numbers of one run's rows: ``test_acc`` and ``train_F`` (last epoch),
    ``best_test_acc``, ``min_train_F``, ``loss_increases`` (epochs whose training loss rose above
    the previous epoch's: the paper's "sporadic increases"), ``epochs`` (completed)."""
    acc = [r["test_acc"] for r in rows if r.get("test_acc") is not None]
    tr = [r["train_F"] for r in rows if r.get("train_F") is not None]
    ups = sum(1 for a, b in zip(tr, tr[1:]) if b > a)
    last = rows[-1] if rows else {}
    return {"test_acc": last.get("test_acc"), "train_F": last.get("train_F"),
            "best_test_acc": max(acc) if acc else None, "min_train_F": min(tr) if tr else None,
            "loss_increases": ups, "epochs": len(rows) - 1}


def describe(method, s):
    """A one-line description of FW method ``method`` with its settings (legends, tables)."""
    spec = METHOD_SPECS[method]
    lr = s["lr_" + method]
    cell = "LSTM + " if spec["cell"] == "lstm" else ""
    trunc = "TBPTT(%s,%s) + " % (s["tbptt_k1"], s["tbptt_k2"]) if spec["truncated"] else ""
    if spec["opt"] == "fw":
        return "%s%sFW K=%d (p=%g, %s outer, eta=%g)" % (
            cell, trunc, _K(spec, s), s["fw_p"], s["fw_outer"], lr)
    name = {"sgd": "SGD", "adam": "Adam"}[spec["opt"]]
    clip = " + clip %g" % s[spec["clip"]] if spec.get("clip") else ""
    return "%s%s%s (lr=%g)%s" % (cell, trunc, name, lr, clip)


def subsample(data, k, seed):
    """``(u, y)`` reduced to a seeded random subset of ``k`` examples (kept in their order);
    unchanged when k is None or not smaller than n."""
    u, y = data
    n = u.shape[1]
    if k is None or k >= n:
        return data
    idx = backend.np.sort(backend.host_rng(seed).permutation(n)[:k])
    ix = backend.asarray(idx, dtype="int64")
    return u[:, ix], y[ix]


def holdout_split(data, fraction, seed):
    """Split a training set ``(u, y)`` into ``(train, validation)``, stratified by class
    (labels (n,) integers or (n, 1) 0/1 floats), ``fraction`` of each class to validation."""
    u, y = data
    labels = backend.to_numpy(y).reshape(y.shape[0], -1)[:, 0].round().astype("int64")
    tr, va = transforms.stratified_split(labels, fraction, seed)
    tr, va = backend.asarray(tr, dtype="int64"), backend.asarray(va, dtype="int64")
    return (u[:, tr], y[tr]), (u[:, va], y[va])
