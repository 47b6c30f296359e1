"""Pixel-by-pixel and permuted digits (FW Sec. V, Fig. 4): an RNN by FW, Adam, SGD and TBPTT.

Task (FW Pixel-MNIST / Permute-MNIST, scaled down): each image is read one pixel per step
(:func:`manualgrad.data.digits.digit_sequences`, ``mode="pixels"``), all 10 classes. By default
the bundled 8x8 digits of scikit-learn (1797 images: T = 64 steps of 1 feature; a stratified
split, ``test_fraction`` to the test set, chosen by ``data_seed``); with ``idx=FOLDER`` real MNIST
from its four IDX files (T = 784, MNIST's own 60000 / 10000 split, as in the paper); with
``dataset=NAME`` a data set of the registry (:func:`manualgrad.data.load`): ``"mnist-5k"``
(5,000 real 28x28 MNIST digits, the registry's stratified 4000 / 1000 split from ``data_seed``),
``"fashion-mnist"`` (60000 / 10000) or ``"digits"``. ``view="pixels"`` (default) is FW's
Pixel-MNIST, one pixel per step (T = 784, p = 1 for 28x28 images); ``view="columns"`` the quick
setting, one image column per step (T = 28, p = 28; T = 8 for the 8x8 digits).
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
(docs/fwseq.md); MNIST (``idx``) is about 12 times longer per example and 45 times larger. On
``dataset="mnist-5k"`` (4000 training images) one epoch of one method took about 10-12 s at
T = 784 and 0.3-0.4 s with ``view="columns"`` (one core, float64; float32 was not faster).

Shared with the HAR experiment (FW Table III): the methods and their training
(:mod:`manualgrad.experiments.methods`: ``METHOD_SPECS``, ``train_classifier``, ...), the
common and Frank-Wolfe options (:mod:`manualgrad.experiments.options`) and the figures
(:mod:`manualgrad.experiments.plots`; ``plot_seed_means`` draws the mean over seeds of either's
records).
"""
from __future__ import annotations

import os
import time

from .. import backend, tbptt
from ..data import registry as data_registry
from ..data.digits import digit_sequences, mnist_sequences
from .._validate import integer as _integer, number as _number
from . import record as _record
from .methods import METHOD_SPECS, describe, holdout_split, subsample, summarize, \
    train_classifier
from .options import FW_DEFAULTS, add_fw_common_arguments, add_options, check_dataset_or_idx, \
    check_fw_common, complete, method_list, run_state, start_run
from .plots import print_run, write_outputs

__all__ = ["DEFAULTS", "QUICK", "TINY", "METHODS", "TASKS", "DATASETS", "VIEWS", "KW",
           "methods_of", "tasks_of", "steps",
           "add_arguments", "check_settings", "make_data", "run"]

METHODS = ("fw1", "fw5", "adam", "sgd", "tbptt", "tbptt_fw")
"""This experiment's methods (FW Fig. 4); ``--optimizer all`` trains them all."""

TASKS = ("pixel", "permute")
"""``pixel``: the steps in order (FW Pixel-MNIST with ``view="pixels"``); ``permute``: one fixed
permutation of the steps (FW Permute-MNIST)."""

DATASETS = ("mnist-5k", "fashion-mnist", "digits", "mnist1d")
"""Registry data sets ``dataset`` may name (None: the bundled 8x8 digits as before; MNIST from IDX
files: ``idx``). ``mnist1d`` has no pixel or column view and is refused, naming its views."""

VIEWS = ("pixels", "columns")
"""``pixels``: one pixel per step, row-major (FW); ``columns``: one image column per step."""

VIEW_WORDS = {"pixels": "pixel by pixel", "columns": "column by column"}

KW = dict(activation="tanh", output="softmax", loss="cross_entropy")
"""The model: tanh RNN, softmax head, cross-entropy."""

DEFAULTS = dict(optimizer="all", task="both", idx=None, dataset=None, view="pixels",
                test_fraction=0.25, holdout="test",
                val_fraction=0.2, max_train=None, max_test=None, hidden=64, batch_size=32,
                epochs=50, lr_sgd=0.03, lr_adam=1e-3, lr_tbptt=1e-3, lr_fw1=3e-3, lr_fw5=3e-3,
                lr_tbptt_fw=1e-3, **FW_DEFAULTS, tbptt_k1=None, tbptt_k2=None,
                tbptt_loss_at="last", scale=None, seed=0, data_seed=0, perm_seed=0,
                out="results/fwseq", progress=True, blas_threads=1)
"""Learning rates: chosen by a grid on a validation split of the 8x8 digits (docs/fwseq.md).
``dataset=None``: the bundled 8x8 digits (or ``idx``); ``view``: :data:`VIEWS`.
``tbptt_k1=None``: ceil(T / 4) (T from :func:`steps`: 64 for the digits, 784 for MNIST
pixels); ``tbptt_k2=None``: k1. ``fw_K``: K of ``tbptt_fw``. ``scale=None``: weights
N(0, 1/fan_in). ``max_train`` / ``max_test``: None (all), or a seeded random subset of that many
examples (for MNIST on a CPU)."""

QUICK = dict(epochs=15)
"""``--quick``: 15 epochs of each method on both tasks."""

TINY = dict(max_train=48, max_test=24, hidden=6, batch_size=16, epochs=2)
"""The test suite's setting: a few seconds."""


# ------------------------------------------------------------------------------ settings
def methods_of(optimizer, valid=METHODS):
    """``"all"`` -> ``valid``; a name or comma-separated names (each in ``valid``) -> a tuple."""
    return method_list(optimizer, valid)


def tasks_of(task):
    """``"both"`` -> (pixel, permute); ``"pixel"`` / ``"permute"`` -> that one."""
    if task == "both":
        return TASKS
    if task in TASKS:
        return (task,)
    raise ValueError("task must be one of pixel, permute, both; got %r" % (task,))


def steps(settings):
    """T of the sequences the settings ask for: 64 / 8 (bundled 8x8 digits, pixels / columns),
    784 / 28 (28x28 images: ``idx``, mnist-5k, fashion-mnist). Checks ``dataset`` and ``view``
    (ValueError naming the option) without reading any data."""
    s = settings
    if s["view"] not in VIEWS:
        raise ValueError("view must be one of %s, got %r" % (", ".join(VIEWS), s["view"]))
    check_dataset_or_idx(s, DATASETS)
    if s["dataset"] is None:
        H, W = (28, 28) if s["idx"] is not None else (8, 8)
    else:
        spec = data_registry.REGISTRY[s["dataset"]]
        if s["view"] not in spec.views or spec.image is None:
            raise ValueError("view %r is not available for dataset %r (its views: %s)"
                             % (s["view"], s["dataset"], ", ".join(spec.views)))
        H, W = spec.image
    return H * W if s["view"] == "pixels" else W


def check_settings(**settings):
    """Validate and complete the settings (unknown keys: TypeError); a new dict with every key of
    :data:`DEFAULTS`, ``tbptt_k1`` and ``tbptt_k2`` resolved against T (:func:`steps`: 64, or
    784 for 28x28 images; 8 or 28 with ``view="columns"``). ValueError/TypeError name the bad
    setting."""
    s = complete(settings, DEFAULTS, "fwseq")
    check_fw_common(s, METHODS, METHOD_SPECS)
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
    T = steps(s)
    s["tbptt_k1"] = -(-T // 4) if s["tbptt_k1"] is None else s["tbptt_k1"]
    s["tbptt_k2"] = s["tbptt_k1"] if s["tbptt_k2"] is None else s["tbptt_k2"]
    tbptt.windows(T, s["tbptt_k1"], s["tbptt_k2"])            # k1, k2 checked against T
    return s


def add_arguments(p):
    d = DEFAULTS
    p.add_argument("--task", default=d["task"], choices=TASKS + ("both",),
                   help="pixel-by-pixel, permuted, or both (default %(default)s)")
    p.add_argument("--dataset", default=d["dataset"], metavar="NAME",
                   help="a registry data set: %s (mnist-5k: 5,000 real MNIST digits; see "
                        "docs/data.md). Default: scikit-learn's bundled 8x8 digits"
                        % ", ".join(DATASETS[:3]))
    p.add_argument("--view", default=d["view"], metavar="|".join(VIEWS),
                   help="pixels: one pixel per step (FW Pixel-MNIST, T = 784 for 28x28); "
                        "columns: one column per step (T = 28; the quick setting). Default "
                        "%(default)s")
    p.add_argument("--idx", default=d["idx"], metavar="FOLDER",
                   help="real MNIST: the folder with the four IDX files (train-images-idx3-ubyte, "
                        "...; gzipped or not); default: scikit-learn's bundled 8x8 digits")
    add_options(p, d, ("test_fraction", float, "8x8 digits: share of each class in the test "
                                               "set"),
                ("data_seed", int, "seed of the train/test split (8x8 digits), the validation "
                                   "split and the subsets"),
                ("perm_seed", int, "seed of the fixed step permutation"))
    add_fw_common_arguments(p, d, METHODS, METHOD_SPECS, QUICK)


# ------------------------------------------------------------------------------ data
def make_data(settings):
    """``({task: ((u_train, y_train), (u_test, y_test))}, {task: info})`` for the tasks of the
    settings. ``info`` is the loader's (:func:`~manualgrad.data.digits.sequences_from_images`):
    the permutation, the split, the normalisation statistics; plus ``holdout`` and the sizes
    actually used. The held-out pair is the validation split with ``holdout="validation"``."""
    s = settings
    datasets, infos = {}, {}
    for task in tasks_of(s["task"]):
        kw = dict(mode=s["view"], permute=(task == "permute"), perm_seed=s["perm_seed"],
                  normalize="global", return_info=True)
        if s["dataset"] is not None:
            train_set, test_set, info = data_registry.load(
                s["dataset"], view=s["view"], permuted=kw["permute"], perm_seed=s["perm_seed"],
                seed=s["data_seed"], normalize="global", return_info=True)
            info["file"] = info["source"]
            info["source"] = "%s (%s view, split %s)" % (
                s["dataset"], s["view"], "seed %d" % s["data_seed"] if "seed" in info["split"]
                else "the source's own")
        elif s["idx"] is None:
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


# ------------------------------------------------------------------------------ the experiment
def run(verbose=True, overwrite=False, **settings):
    """Run the experiment; returns the results record (also written to ``out/results.json``).

    Settings: see :data:`DEFAULTS` (``quick=True`` applies :data:`QUICK` to the settings left at
    their defaults). Runs are labelled ``TASK/METHOD``; every method of a task starts from the
    same weights and sees the same minibatches and the same permutation. ``overwrite``: replace
    a record already in ``out`` (else FileExistsError before training).
    """
    s, out, say = start_run(check_settings, settings, DEFAULTS, QUICK, overwrite, verbose)
    methods = methods_of(s["optimizer"])
    datasets, infos = make_data(s)
    model = dict(KW, l=10)
    first = infos[next(iter(infos))]
    say("FW-SEQ (FW Sec. V, Fig. 4) on %s, %s: T=%d, p=%d, %d classes, %d train / %d %s "
        "examples; RNN m=%d tanh, softmax, cross-entropy; batch %d, %d epochs; seed %d, data "
        "seed %d, perm seed %d; tasks: %s; backend %s/%s"
        % (first["source"], VIEW_WORDS[s["view"]], first["T"], first["p"],
           len(first["classes"]), first["n_train_used"], first["n_heldout_used"], s["holdout"],
           s["hidden"], s["batch_size"], s["epochs"], s["seed"], s["data_seed"], s["perm_seed"],
           ", ".join(datasets), backend.get_backend(), backend.get_dtype().name))
    record = _record.new_record("fwseq", s)
    record["data"] = infos
    groups = []
    t0 = time.perf_counter()
    for task, data in datasets.items():
        runs = []
        for method in methods:
            label = "%s/%s" % (task, method)
            res = train_classifier(method, s, data, model, desc=label,
                                   state=run_state(s, out, label))
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
    title = "%s, %s (T=%d): RNN m=%d, batch %d, seed %d" % (
        first["source"], VIEW_WORDS[s["view"]], first["T"], s["hidden"], s["batch_size"], s["seed"])
    write_outputs(record, groups, s, out, title, wall, say)
    return record
