"""Pixel-by-pixel and permuted digits (FW Sec. V, Fig. 4): an RNN by FW, Adam, SGD and TBPTT.

Task (FW Pixel-MNIST / Permute-MNIST, scaled down): each image is read one pixel per step
(:func:`manualgrad.data.digits.digit_sequences`, ``mode="pixels"``), all 10 classes. By default
the bundled 8x8 digits of scikit-learn (1797 images: T = 64 steps of 1 feature; a stratified
split, ``test_fraction`` to the test set, chosen by ``data_seed``); with ``idx=FOLDER`` real MNIST
from its four IDX files (T = 784, MNIST's own 60000 / 10000 split, as in the paper).
``permute`` reorders the T steps by one fixed permutation drawn from ``perm_seed`` alone
(:func:`manualgrad.data.transforms.step_permutation`): the same for train and test, for every
method, every ``seed`` and every ``data_seed``; the record holds it. Inputs are normalised to
zero mean and unit variance with training statistics (FW: "All datasets are normalized").

Model: the vanilla RNN of :mod:`manualgrad.rnn` (tanh, hidden size ``hidden``, softmax head,
cross-entropy; FW Sec. V: "a linear function followed by a tanh activation"). Every method starts
from the same weights (``seed``) and sees the same minibatch order (also ``seed``). Methods
(:data:`METHOD_SPECS`; each has its own learning rate ``lr_<method>``):

- ``fw1``, ``fw5``: FW Algorithm 1 (:class:`manualgrad.optim.FrankWolfe`) with K = 1 and K = 5
  inner steps, LMO over the Lp ball of radius ``fw_delta`` (per tensor by default), outer update
  by Adam with learning rate ``lr_fw1`` / ``lr_fw5`` (FW Sec. V: "Adam is used as the optimizer
  for all the methods");
- ``adam``: Adam on the BPTT gradient; ``sgd``: plain SGD;
- ``tbptt``: Adam on the TBPTT(k1, k2) gradient (:mod:`manualgrad.tbptt`), windows of a
  quarter of the sequence by default (FW: 196 = 784 / 4 steps; here ceil(T / 4)); the loss is
  at step T only (``tbptt_loss_at="last"``), so the gradient sees the last k2 steps;
- ``tbptt_fw``: Frank-Wolfe (K = ``fw_K``) on the TBPTT gradient.

After every epoch (and at epoch 0) the held-out set is evaluated: ``test_F`` (mean
cross-entropy) and ``test_acc`` (fraction correct); ``train_F`` is the mean training
cross-entropy over the epoch's minibatches (:func:`manualgrad.train.fit`), ``iteration`` the
number of minibatch gradients so far, and FW rows carry the FW-A5 angle between Delta_K and
the negative gradient (``fw_angle_mean``, ``fw_angle_std`` in degrees, ``fw_outer_steps``).
``holdout="validation"`` replaces the test set by a stratified ``val_fraction`` of the training
set (for tuning learning rates without touching the test set).

Written to ``out``: ``results.json`` (:mod:`manualgrad.experiments.record`; runs labelled
``TASK/METHOD``, e.g. ``permute/fw5``), ``history.csv``, ``curves.png`` (training cross-entropy
and test accuracy against epoch, one row per task, like FW Fig. 4) and ``fw_angles.png``.
``--quick`` applies :data:`QUICK`; the test suite runs :data:`TINY`. docs/fwseq.md has the
measured results over seeds and the comparison with the paper's claims.

Time: the defaults (both tasks, six methods, 50 epochs) took 65-155 s on 2 shared CPU cores
(docs/fwseq.md); MNIST (``idx``) is about 12 times longer per example and 45 times larger.

:mod:`manualgrad.experiments.har` (FW Table III) reuses :data:`METHOD_SPECS`,
:func:`check_common`, :func:`add_common_arguments`, :func:`train_method`,
:func:`holdout_split`, :func:`subsample`, :func:`describe`, :func:`print_run` and
:func:`write_outputs`; :func:`plot_seed_means` draws the mean over seeds of either's records.
"""
from __future__ import annotations

import math
import os
import time

from .. import backend, cells, losses, rnn, train
from ..cells import lstm
from ..data import transforms
from ..data.digits import digit_sequences, mnist_sequences
from .. import tbptt
from ..optim.frank_wolfe import MINIBATCHES, OUTERS, FrankWolfe
from .._validate import integer as _integer, number as _number
from . import record as _record
from .adding import make_optimizer as _adding_optimizer
from .ltg import blas_threads
from .options import add_quick_argument, apply_quick

__all__ = ["DEFAULTS", "QUICK", "TINY", "METHODS", "TASKS", "METHOD_SPECS", "COLORS", "KW",
           "FW_DEFAULTS", "methods_of", "tasks_of", "add_arguments", "add_fw_arguments",
           "add_common_arguments", "check_settings", "check_fw_settings", "check_common",
           "make_data", "holdout_split", "subsample", "make_optimizer", "make_grad_fn",
           "init_model", "evaluate_classifier", "train_method", "summarize", "describe",
           "print_run", "plot_curves", "plot_seed_means", "plot_angles", "write_outputs", "run"]

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

METHODS = ("fw1", "fw5", "adam", "sgd", "tbptt", "tbptt_fw")
"""This experiment's methods (FW Fig. 4); ``--optimizer all`` trains them all."""

TASKS = ("pixel", "permute")

COLORS = {"fw1": "tab:red", "fw5": "darkred", "fw10": "salmon", "sgd": "tab:blue",
          "sgd_clip": "tab:cyan", "adam": "tab:green", "tbptt": "tab:orange",
          "tbptt_fw": "tab:purple", "lstm_adam": "olive", "lstm_fw": "tab:pink"}

KW = dict(activation="tanh", output="softmax", loss="cross_entropy")
"""The model: tanh RNN, softmax head, cross-entropy."""

FW_DEFAULTS = dict(fw_delta=1e-3, fw_K=1, fw_p=2.0, fw_per_tensor=True, fw_outer="adam",
                   fw_minibatch="successive", fw_decay=1.0, fw_decay_every=1000)
"""The Frank-Wolfe settings shared by the FW experiments (see :func:`add_fw_arguments`)."""

DEFAULTS = dict(optimizer="all", task="both", idx=None, test_fraction=0.25, holdout="test",
                val_fraction=0.2, max_train=None, max_test=None, hidden=64, batch_size=32,
                epochs=50, lr_sgd=0.03, lr_adam=1e-3, lr_tbptt=1e-3, lr_fw1=3e-3, lr_fw5=3e-3,
                lr_tbptt_fw=1e-3, **FW_DEFAULTS, tbptt_k1=None, tbptt_k2=None,
                tbptt_loss_at="last", scale=None, seed=0, data_seed=0, perm_seed=0,
                out="results/fwseq", progress=True, blas_threads=1)
"""Learning rates: chosen by a grid on a validation split (docs/fwseq.md). ``tbptt_k1=None``:
ceil(T / 4) (T = 64 for the digits, 784 for MNIST); ``tbptt_k2=None``: k1. ``fw_K``: K of
``tbptt_fw``. ``scale=None``: weights N(0, 1/fan_in). ``max_train`` / ``max_test``: None (all),
or a seeded random subset of that many examples (for MNIST on a CPU)."""

QUICK = dict(epochs=15)
"""``--quick``: 15 epochs of each method on both tasks."""

TINY = dict(max_train=48, max_test=24, hidden=6, batch_size=16, epochs=2)
"""The test suite's setting: a few seconds."""


# ------------------------------------------------------------------------------ settings
def methods_of(optimizer, valid=METHODS):
    """``"all"`` -> ``valid``; a name or comma-separated names (each in ``valid``) -> a tuple."""
    if optimizer == "all":
        return tuple(valid)
    if not isinstance(optimizer, str) or not optimizer.strip():
        raise ValueError("optimizer must be 'all' or comma-separated names among %s, got %r"
                         % (", ".join(valid), optimizer))
    names = tuple(n.strip() for n in optimizer.split(","))
    bad = [n for n in names if n not in valid]
    if bad or len(set(names)) != len(names):
        raise ValueError("unknown or repeated optimizer(s) %r: valid are %s, all (comma-separated "
                         "for several)" % (optimizer, ", ".join(valid)))
    return names


def tasks_of(task):
    """``"both"`` -> (pixel, permute); ``"pixel"`` / ``"permute"`` -> that one."""
    if task == "both":
        return TASKS
    if task in TASKS:
        return (task,)
    raise ValueError("task must be one of pixel, permute, both; got %r" % (task,))


def check_fw_settings(s):
    """Check, in place, the Frank-Wolfe keys of :data:`FW_DEFAULTS` (and ``lr_*`` of FW methods
    are checked by the caller)."""
    s["fw_delta"] = _number(s["fw_delta"], "fw_delta", positive=True)
    s["fw_decay"] = _number(s["fw_decay"], "fw_decay", positive=True)
    s["fw_K"] = _integer(s["fw_K"], "fw_K", 1)
    s["fw_decay_every"] = _integer(s["fw_decay_every"], "fw_decay_every", 1)
    if s["fw_outer"] not in OUTERS:
        raise ValueError("fw_outer must be one of %s, got %r" % (", ".join(OUTERS), s["fw_outer"]))
    if s["fw_minibatch"] not in MINIBATCHES:
        raise ValueError("fw_minibatch must be one of %s, got %r"
                         % (", ".join(MINIBATCHES), s["fw_minibatch"]))
    s["fw_p"] = FrankWolfe(s["fw_delta"], 1.0, K=s["fw_K"], p=s["fw_p"]).p   # p checked here
    s["fw_per_tensor"] = bool(s["fw_per_tensor"])
    return s


def check_common(s, valid_methods):
    """Check, in place, the settings fwseq and har share (methods, ``lr_<method>`` of every
    method in ``valid_methods``, sizes, holdout, FW, TBPTT, seeds); returns the methods to run."""
    methods = methods_of(s["optimizer"], valid_methods)
    for m in valid_methods:
        s["lr_" + m] = _number(s["lr_" + m], "lr_" + m, positive=True)
    for k, lo in (("hidden", 1), ("batch_size", 1), ("epochs", 0), ("seed", 0),
                  ("data_seed", 0)):
        s[k] = _integer(s[k], k, lo)
    for k in ("max_train", "max_test"):
        s[k] = _integer(s[k], k, 1, allow_none=True)
    if s["holdout"] not in ("test", "validation"):
        raise ValueError("holdout must be 'test' or 'validation', got %r" % (s["holdout"],))
    s["val_fraction"] = _number(s["val_fraction"], "val_fraction")
    if not 0.0 < s["val_fraction"] < 1.0:
        raise ValueError("val_fraction must lie in (0, 1), got %r" % (s["val_fraction"],))
    check_fw_settings(s)
    for k in ("tbptt_k1", "tbptt_k2"):
        s[k] = _integer(s[k], k, 1, allow_none=True)
    if s["tbptt_loss_at"] not in tbptt.LOSS_AT:
        raise ValueError("tbptt_loss_at must be one of %s, got %r"
                         % (", ".join(tbptt.LOSS_AT), s["tbptt_loss_at"]))
    s["scale"] = _number(s["scale"], "scale", minimum=0.0, allow_none=True)
    if s["blas_threads"] is not None:
        s["blas_threads"] = _integer(s["blas_threads"], "blas_threads", 1)
    s["progress"] = bool(s["progress"])
    return methods


def check_settings(**settings):
    """Validate and complete the settings (unknown keys: TypeError); a new dict with every key of
    :data:`DEFAULTS`, ``tbptt_k1`` and ``tbptt_k2`` resolved against T (64, or 784 with
    ``idx``). ValueError/TypeError name the bad setting."""
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise TypeError("unknown fwseq setting(s) %s; valid are %s"
                        % (", ".join(unknown), ", ".join(DEFAULTS)))
    s = dict(DEFAULTS)
    s.update(settings)
    check_common(s, METHODS)
    tasks_of(s["task"])
    s["perm_seed"] = _integer(s["perm_seed"], "perm_seed", 0)
    s["test_fraction"] = _number(s["test_fraction"], "test_fraction")
    if not 0.0 < s["test_fraction"] < 1.0:
        raise ValueError("test_fraction must lie in (0, 1), got %r" % (s["test_fraction"],))
    if s["idx"] is not None:
        if isinstance(s["idx"], bool) or not isinstance(s["idx"], (str, os.PathLike)):
            raise TypeError("idx must be None or the folder of the MNIST IDX files, got %r"
                            % (s["idx"],))
        s["idx"] = os.fspath(s["idx"])
    T = 64 if s["idx"] is None else 784
    s["tbptt_k1"] = -(-T // 4) if s["tbptt_k1"] is None else s["tbptt_k1"]
    s["tbptt_k2"] = s["tbptt_k1"] if s["tbptt_k2"] is None else s["tbptt_k2"]
    tbptt.windows(T, s["tbptt_k1"], s["tbptt_k2"])            # k1, k2 checked against T
    return s


def add_fw_arguments(p, d):
    """The Frank-Wolfe options (keys of :data:`FW_DEFAULTS`, defaults from ``d``)."""
    p.add_argument("--fw-delta", type=float, default=d["fw_delta"],
                   help="radius of the FW ball (default %(default)s)")
    p.add_argument("--fw-K", type=int, default=d["fw_K"],
                   help="inner FW steps of the combined methods (tbptt_fw, lstm_fw; default "
                        "%(default)s)")
    p.add_argument("--fw-p", type=float, default=d["fw_p"],
                   help="norm of the ball, >= 1, inf allowed (default %(default)s)")
    p.add_argument("--fw-whole-vector", dest="fw_per_tensor", action="store_false",
                   default=d["fw_per_tensor"],
                   help="one ball for the whole parameter vector (default: one per tensor, the "
                        "authors' code)")
    p.add_argument("--fw-outer", default=d["fw_outer"], choices=OUTERS,
                   help="outer update (default %(default)s; with sgd the step is lr * Delta_K)")
    p.add_argument("--fw-minibatch", default=d["fw_minibatch"], choices=MINIBATCHES,
                   help="inner steps on successive minibatches or the same one (default "
                        "%(default)s)")
    p.add_argument("--fw-decay", type=float, default=d["fw_decay"],
                   help="factor for eta and delta every --fw-decay-every outer steps "
                        "(default %(default)s: none)")
    p.add_argument("--fw-decay-every", type=int, default=d["fw_decay_every"],
                   help="default %(default)s")


def add_common_arguments(p, d, methods):
    """The options fwseq and har share (defaults from ``d``; one ``--lr-METHOD`` per method)."""
    p.add_argument("--optimizer", default=d["optimizer"],
                   help="methods, comma-separated, among %s; or 'all' (default %%(default)s)"
                        % ", ".join(methods))
    p.add_argument("--holdout", default=d["holdout"], choices=("test", "validation"),
                   help="evaluate on the test set, or on a validation split of the training set "
                        "(for tuning; default %(default)s)")
    p.add_argument("--val-fraction", type=float, default=d["val_fraction"],
                   help="share of the training set held out by --holdout validation "
                        "(default %(default)s)")
    p.add_argument("--max-train", type=int, default=d["max_train"],
                   help="use a seeded random subset of this many training examples "
                        "(default: all)")
    p.add_argument("--max-test", type=int, default=d["max_test"],
                   help="likewise for the held-out set (default: all)")
    p.add_argument("--hidden", type=int, default=d["hidden"], help="default %(default)s")
    p.add_argument("--batch-size", type=int, default=d["batch_size"], help="default %(default)s")
    p.add_argument("--epochs", type=int, default=d["epochs"], help="default %(default)s")
    for m in methods:
        p.add_argument("--lr-%s" % m.replace("_", "-"), dest="lr_" + m, type=float,
                       default=d["lr_" + m],
                       help="learning rate of %s%s (default %%(default)s)"
                            % (m, " (FW: the outer Adam step eta)"
                               if METHOD_SPECS[m]["opt"] == "fw" else ""))
    add_fw_arguments(p, d)
    p.add_argument("--tbptt-k1", type=int, default=d["tbptt_k1"],
                   help="TBPTT forward window (default %s)"
                        % ("ceil(T / 4)" if d["tbptt_k1"] is None else d["tbptt_k1"]))
    p.add_argument("--tbptt-k2", type=int, default=d["tbptt_k2"],
                   help="TBPTT backward window >= k1 (default k1)")
    p.add_argument("--tbptt-loss-at", default=d["tbptt_loss_at"], choices=tbptt.LOSS_AT,
                   help="many-to-one TBPTT loss at the last step only, or at every window end "
                        "(default %(default)s)")
    p.add_argument("--scale", type=float, default=d["scale"],
                   help="std of every weight at init (default 1/sqrt(fan_in))")
    p.add_argument("--seed", type=int, default=d["seed"],
                   help="init and shuffling seed, shared by the methods (default %(default)s)")
    p.add_argument("--blas-threads", type=int, default=d["blas_threads"],
                   help="BLAS threads while training (default %(default)s)")
    p.add_argument("--out", default=d["out"], help="output folder (default %(default)s)")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def add_arguments(p):
    d = DEFAULTS
    p.add_argument("--task", default=d["task"], choices=TASKS + ("both",),
                   help="pixel-by-pixel, permuted, or both (default %(default)s)")
    p.add_argument("--idx", default=d["idx"], metavar="FOLDER",
                   help="real MNIST: the folder with the four IDX files (train-images-idx3-ubyte, "
                        "...; gzipped or not); default: scikit-learn's bundled 8x8 digits")
    p.add_argument("--test-fraction", type=float, default=d["test_fraction"],
                   help="8x8 digits: share of each class in the test set (default %(default)s)")
    p.add_argument("--data-seed", type=int, default=d["data_seed"],
                   help="seed of the train/test split (8x8 digits), the validation split and "
                        "the subsets (default %(default)s)")
    p.add_argument("--perm-seed", type=int, default=d["perm_seed"],
                   help="seed of the fixed step permutation (default %(default)s)")
    add_common_arguments(p, d, METHODS)
    add_quick_argument(p, QUICK)


# ------------------------------------------------------------------------------ data
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


def make_data(settings):
    """``({task: ((u_train, y_train), (u_test, y_test))}, {task: info})`` for the tasks of the
    settings. ``info`` is the loader's (:func:`~manualgrad.data.digits.sequences_from_images`):
    the permutation, the split, the normalisation statistics; plus ``holdout`` and the sizes
    actually used. The held-out pair is the validation split with ``holdout="validation"``."""
    s = settings
    datasets, infos = {}, {}
    for task in tasks_of(s["task"]):
        kw = dict(mode="pixels", permute=(task == "permute"), perm_seed=s["perm_seed"],
                  normalize="global", return_info=True)
        if s["idx"] is None:
            train_set, test_set, info = digit_sequences(test_fraction=s["test_fraction"],
                                                        seed=s["data_seed"], **kw)
            info["source"] = "sklearn 8x8 digits"
        else:
            train_set, test_set, info = mnist_sequences(s["idx"], classes=None, **kw)
            info["source"] = "MNIST IDX files in %s" % s["idx"]
        if s["holdout"] == "validation":
            train_set, test_set = holdout_split(train_set, s["val_fraction"], s["data_seed"])
        train_set = subsample(train_set, s["max_train"], s["data_seed"])
        test_set = subsample(test_set, s["max_test"], s["data_seed"] + 1)
        info.update(holdout=s["holdout"], n_train_used=int(train_set[1].shape[0]),
                    n_heldout_used=int(test_set[1].shape[0]))
        datasets[task], infos[task] = (train_set, test_set), info
    return datasets, infos


# ------------------------------------------------------------------------------ one method
def _K(spec, s):
    K = spec["K"]
    return s[K] if isinstance(K, str) else K


def make_optimizer(method, settings):
    """The optimizer of ``method`` (:data:`METHOD_SPECS`) with learning rate ``lr_<method>``;
    built by :func:`manualgrad.experiments.adding.make_optimizer`."""
    spec = METHOD_SPECS[method]
    lr = settings["lr_" + method]
    if spec["opt"] == "sgd":
        return _adding_optimizer("sgd", dict(settings, lr_sgd=lr))
    if spec["opt"] == "adam":
        return _adding_optimizer("adam", dict(settings, lr_adam=lr))
    return _adding_optimizer("fw", dict(settings, fw_eta=lr, fw_K=_K(spec, settings)))


def make_grad_fn(method, settings, model):
    """``(params, u, y) -> (F, grads)`` for ``method``: the cell's BPTT gradient, or TBPTT(k1, k2)
    with the settings' windows. ``model``: dict with output, loss (and activation for the RNN)."""
    spec = METHOD_SPECS[method]
    opts = dict(output=model["output"], loss=model["loss"])
    if spec["cell"] == "rnn":
        opts["activation"] = model.get("activation", "tanh")
    if spec["truncated"]:
        return tbptt.grad_fn(settings["tbptt_k1"], settings["tbptt_k2"], cell=spec["cell"],
                             loss_at=settings["tbptt_loss_at"], **opts)
    if spec["cell"] == "rnn":
        def grad_fn(P, u, y):
            return rnn.loss_and_grad(P, u, y, **opts)
    else:
        cell = cells.get(spec["cell"])

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


def train_method(method, settings, data, model, progress=None, desc=None):
    """Train one method on ``data = ((u_train, y_train), (u_test, y_test))``.

    ``settings``: checked settings (the keys of :data:`DEFAULTS` or har's); ``model``: dict with
    ``output``, ``loss``, ``l`` (outputs) and, for the RNN, ``activation``. Returns a JSON-able
    dict: ``method``, ``epochs`` (rows with ``epoch``, ``iteration``, ``train_F``, ``test_F``,
    ``test_acc``, for FW ``fw_angle_mean``, ``fw_angle_std``, ``fw_outer_steps``, with
    clipping ``clip_fired``), ``stopped``, ``wall_time_s``, ``optimizer`` (its repr).
    """
    s = settings
    spec = METHOD_SPECS[method]
    (u_tr, y_tr), (u_te, y_te) = data
    params = init_model(method, u_tr.shape[2], s, model)
    grad_fn = make_grad_fn(method, s, model)
    opt = make_optimizer(method, s)
    eval_opts = dict(output=model["output"], loss=model["loss"])
    if spec["cell"] == "rnn":
        eval_opts["activation"] = model.get("activation", "tanh")
    clip = s[spec["clip"]] if spec.get("clip") else None
    progress = s["progress"] if progress is None else progress
    with blas_threads(s["blas_threads"]):
        hist = train.fit(params, grad_fn, u_tr, y_tr, epochs=s["epochs"],
                         batch_size=s["batch_size"], optimizer=opt, seed=s["seed"],
                         evaluate=lambda P: evaluate_classifier(P, u_te, y_te, spec["cell"],
                                                                **eval_opts),
                         progress=progress, desc=desc or method, clip=clip)
    per_epoch = -(-u_tr.shape[1] // s["batch_size"]) * getattr(opt, "steps_per_batch", 1)
    for r in hist.epochs:
        r["iteration"] = r["epoch"] * per_epoch
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


# ------------------------------------------------------------------------------ figures
def describe(method, s):
    """A one-line description of ``method`` with its settings (legends, printed tables)."""
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


def plot_curves(groups, settings, title="", metrics=None):
    """FW Fig. 4 style: one row per group ``(name, runs)``, columns training loss and test
    accuracy against epoch, one line per method (colours :data:`COLORS`)."""
    import matplotlib.pyplot as plt

    metrics = metrics or (("train_F", "training cross-entropy"), ("test_acc", "test accuracy"))
    fig, axes = plt.subplots(len(groups), len(metrics), squeeze=False,
                             figsize=(5.2 * len(metrics), 3.4 * len(groups) + 0.6))
    for (name, runs), row in zip(groups, axes):
        for (key, ylabel), ax in zip(metrics, row):
            for res in runs:
                pts = [(r["epoch"], r[key]) for r in res["epochs"]
                       if r.get(key) is not None and math.isfinite(r[key])]
                if pts:
                    ax.plot(*zip(*pts), lw=1.6, color=COLORS.get(res["method"]),
                            label=describe(res["method"], settings))
            if key.endswith("_F"):
                _loss_ylim(ax, [[r.get(key) for r in res["epochs"]] for res in runs])
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.set_title(name, fontsize=9)
            ax.grid(True, alpha=0.3)
    axes[0][-1].legend(fontsize=6, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _loss_ylim(ax, curves):
    """y from 0 to the largest first finite value of the curves: a run that explodes later
    would otherwise flatten the others."""
    firsts = [next((v for v in c if v is not None and math.isfinite(v)), None) for c in curves]
    firsts = [v for v in firsts if v is not None]
    if firsts:
        ax.set_ylim(0, 1.05 * max(firsts))


def plot_seed_means(records, metrics=None, title=""):
    """Mean +- std over records (the same settings, different seeds; e.g. from
    :func:`manualgrad.experiments.record.load`) of each run's per-epoch metrics: one row per
    task (the part of the run label before "/"), columns as :func:`plot_curves`."""
    import matplotlib.pyplot as plt
    np = backend.np

    metrics = metrics or (("train_F", "training cross-entropy"), ("test_acc", "test accuracy"))
    labels = list(records[0]["runs"])
    tasks = list(dict.fromkeys(lab.split("/")[0] for lab in labels))
    fig, axes = plt.subplots(len(tasks), len(metrics), squeeze=False,
                             figsize=(5.2 * len(metrics), 3.4 * len(tasks) + 0.6))
    for task, row in zip(tasks, axes):
        for (key, ylabel), ax in zip(metrics, row):
            means = []
            for lab in (l for l in labels if l.split("/")[0] == task):
                curves = []
                for rec in records:
                    rows = rec["runs"].get(lab, {}).get("epochs", [])
                    curves.append({r["epoch"]: r[key] for r in rows if r.get(key) is not None})
                epochs = sorted(set.intersection(*(set(c) for c in curves)))
                if not epochs:
                    continue
                v = np.array([[c[e] for e in epochs] for c in curves], dtype=float)
                m, sd = v.mean(axis=0), v.std(axis=0)
                method = lab.split("/", 1)[1]
                c = COLORS.get(method)
                ax.plot(epochs, m, lw=1.6, color=c, label="%s (%d seeds)" % (method, len(curves)))
                ax.fill_between(epochs, m - sd, m + sd, color=c, alpha=0.12)
                means.append(m.tolist())
            if key.endswith("_F"):
                _loss_ylim(ax, means)
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel + " (mean +- std)")
            ax.set_title(task, fontsize=9)
            ax.grid(True, alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_angles(groups):
    """The FW-A5 angle between Delta_K and -g (mean +- std per epoch) of every FW run."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    styles = ("-", "--", ":", "-.")
    for i, (name, runs) in enumerate(groups):
        for res in runs:
            rows = [r for r in res["epochs"] if r.get("fw_angle_mean") is not None
                    and math.isfinite(r["fw_angle_mean"])]
            if not rows:
                continue
            x = [r["epoch"] for r in rows]
            m = [r["fw_angle_mean"] for r in rows]
            sd = [r["fw_angle_std"] for r in rows]
            c = COLORS.get(res["method"])
            ax.plot(x, m, styles[i % 4], color=c, lw=1.6, label="%s %s" % (name, res["method"]))
            ax.fill_between(x, [a - b for a, b in zip(m, sd)], [a + b for a, b in zip(m, sd)],
                            color=c, alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_ylabel("angle(Delta_K, -g) (degrees)")
    ax.set_title("FW-A5 diagnostic: mean +- std over the epoch's outer steps", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def print_run(say, label, res):
    """Print one run's per-epoch table with ``say`` (print, or a no-op)."""
    say("\n%s:" % label)
    fw = any("fw_angle_mean" in r for r in res["epochs"])
    say("%6s %9s %10s %10s %9s%s" % ("epoch", "iteration", "train CE", "test CE", "test acc",
                                     " %14s" % "angle (deg)" if fw else ""))
    for r in res["epochs"]:
        ang = ""
        if r.get("fw_angle_mean") is not None:
            ang = " %7.2f+-%5.2f" % (r["fw_angle_mean"], r["fw_angle_std"])
        say("%6d %9d %10s %10s %9s%s" % (
            r["epoch"], r["iteration"], "%.4f" % r["train_F"] if "train_F" in r else "-",
            "%.4f" % r["test_F"] if "test_F" in r else "-",
            "%.2f%%" % (100 * r["test_acc"]) if "test_acc" in r else "-", ang))
    if res["stopped"]:
        say("stopped: " + res["stopped"])


def write_outputs(record, groups, settings, out, title, wall, say, metrics=None):
    """Write ``curves.png`` (:func:`plot_curves` with ``metrics``), ``fw_angles.png`` (when a run
    has FW angles), ``history.csv`` and ``results.json`` for a record whose runs are in
    ``groups`` (a list of ``(name, runs)``); returns the path of ``results.json``."""
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    figures = []
    fig = plot_curves(groups, settings, title=title, metrics=metrics)
    path = os.path.join(out, "curves.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    figures.append(path)
    if any(r.get("fw_angle_mean") is not None for _, runs in groups for res in runs
           for r in res["epochs"]):
        fig = plot_angles(groups)
        path = os.path.join(out, "fw_angles.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        figures.append(path)
    csv = train.write_history_csv(os.path.join(out, "history.csv"), [
        dict({"run": "%s/%s" % (name, res["method"])}, **row)
        for name, runs in groups for res in runs for row in res["epochs"]])
    path = _record.finish(record, out, wall, figures=figures)
    say("\nwrote %s, %s, %s (%.1f s)" % (path, csv, ", ".join(figures), wall))
    return path


# ------------------------------------------------------------------------------ the experiment
def run(verbose=True, **settings):
    """Run the experiment; returns the results record (also written to ``out/results.json``).

    Settings: see :data:`DEFAULTS` (``quick=True`` applies :data:`QUICK` to the settings left at
    their defaults). Runs are labelled ``TASK/METHOD``; every method of a task starts from the
    same weights and sees the same minibatches and the same permutation.
    """
    s = check_settings(**apply_quick(dict(settings), DEFAULTS, QUICK))
    say = print if verbose else (lambda *a, **k: None)
    methods = methods_of(s["optimizer"])
    datasets, infos = make_data(s)
    model = dict(KW, l=10)
    first = infos[next(iter(infos))]
    say("FW-SEQ (FW Sec. V, Fig. 4) on %s, pixel by pixel: T=%d, %d classes, %d train / %d %s "
        "examples; RNN m=%d tanh, softmax, cross-entropy; batch %d, %d epochs; seed %d, data "
        "seed %d, perm seed %d; tasks: %s; backend %s/%s"
        % (first["source"], first["T"], len(first["classes"]), first["n_train_used"],
           first["n_heldout_used"], s["holdout"], s["hidden"], s["batch_size"], s["epochs"],
           s["seed"], s["data_seed"], s["perm_seed"], ", ".join(datasets),
           backend.get_backend(), backend.get_dtype().name))
    record = _record.new_record("fwseq", s)
    record["data"] = infos
    groups = []
    t0 = time.perf_counter()
    for task, data in datasets.items():
        runs = []
        for method in methods:
            label = "%s/%s" % (task, method)
            res = train_method(method, s, data, model, desc=label)
            runs.append(res)
            print_run(say, "%s: %s" % (task, describe(method, s)), res)
            _record.add_run(record, label, res["epochs"], stopped=res["stopped"],
                            wall_time_s=res["wall_time_s"], optimizer=res["optimizer"],
                            description=describe(method, s), task=task, method=method)
            record["summary"][label] = summarize(res["epochs"])
        groups.append((task, runs))
    wall = time.perf_counter() - t0
    say("\n%-20s %9s %9s %9s %9s %6s %8s" % ("run", "test acc", "best acc", "train CE",
                                              "min CE", "ups", "time s"))
    for label, sm in record["summary"].items():
        def f(v, pct=False):
            return "-" if v is None else ("%.2f%%" % (100 * v) if pct else "%.4f" % v)
        say("%-20s %9s %9s %9s %9s %6d %8.1f" % (
            label, f(sm["test_acc"], True), f(sm["best_test_acc"], True), f(sm["train_F"]),
            f(sm["min_train_F"]), sm["loss_increases"], record["runs"][label]["wall_time_s"]))
    title = "%s, pixel by pixel (T=%d): RNN m=%d, batch %d, seed %d" % (
        first["source"], first["T"], s["hidden"], s["batch_size"], s["seed"])
    write_outputs(record, groups, s, s["out"], title, wall, say)
    return record
