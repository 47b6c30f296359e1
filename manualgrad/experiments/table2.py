"""JP Table II: digits {0, 1, 2} as sequences, sequential and permuted, adjoint vs coadjoint RNN.

JP Sec. IV-C trains one RNN architecture twice, with the adjoint method (the gradient of F, JP
eqs. 9-13) and with the coadjoint method (the gradient of F + alpha G, JP eqs. 14-23), to classify
the MNIST digits {0, 1, 2} from their 28 columns (u_i in R^28, i = 1..28), and again with the
columns in a fixed permuted order. Table II reports the training cross-entropy F, the test error
and ||lambda_1||_2 for each of the four cells.

Here (docs/table2.md):

- data: scikit-learn's **bundled 8x8 digits** (no download;
  :func:`manualgrad.data.digits.digit_sequences`; 537 images of 0, 1, 2, a stratified 75/25
  split from ``data_seed``) read row by row (``seq_rows``: 8 steps of 8) or pixel by pixel
  (``seq_pixels``: 64 steps of 1), each also with a fixed step permutation from ``perm_seed``
  (``perm_rows``, ``perm_pixels``); or **real MNIST** with ``idx=FOLDER`` (the four IDX files,
  :func:`manualgrad.data.idx.load_mnist`): 28 steps of 28 columns as the paper did
  (``seq_columns``, ``perm_columns``), MNIST's own train/test split; or a data set of the
  registry with ``dataset=NAME`` (:func:`manualgrad.data.load`): ``"mnist-5k"`` (5,000 real
  28x28 MNIST digits; {0, 1, 2} give 1,200 train / 300 test images, the registry's stratified
  split from ``data_seed``), ``"fashion-mnist"`` (its own 60,000 / 10,000 split; ``n_train`` /
  ``n_test`` take stratified subsets) or ``"digits"``, by default with the paper's two column
  tasks. Inputs are normalised with training statistics (``normalize``, default one global mean
  and std). The record's ``data[task]`` says which data set, view, split and permutation.
- model: JP eq. (5) with tanh hidden units and a **softmax output with cross-entropy** over the C
  classes (integer labels); N(0, 1/fan_in) weights unless ``scale`` is given.
- training: for each seed, both methods start from the **same initial parameters** (``seed``)
  and see the **same minibatches** (shuffled from ``seed``): SGD (or Adam), ``epochs`` passes,
  optional gradient clipping. Coadjoint: penalty ``G`` (default ``"G23"``, JP eq. 23) with
  weight ``alpha`` (default 0.1; with a softmax head G23 pushes predictions to the wrong class
  once alpha > 1/2 and holds the training loss near log(1 + 2 alpha): :func:`g23_barrier_optimum`).
- reported after every epoch: the loss on the whole training set (``train_loss``, the mean
  cross-entropy; Table II's F is a sum, ``F_sum`` = train_loss x n_train), training and test
  error, test cross-entropy, the penalty G on the test adjoints, and the means over the test
  examples of ||lambda_1|| and ||lambda_T||; at init and at the end, the mean ||lambda_k|| for
  every k.

``--seeds 0,1,2`` runs every seed in one invocation. Written to ``--out``:

- ``seed_<s>/results.json``: one record per seed (:mod:`manualgrad.experiments.record`; runs
  labelled ``<task>/<method>``, e.g. ``perm_pixels/coadjoint``), which ``manualgrad report``
  aggregates over seeds;
- ``summary.json``: the aggregate (per task and method: mean, std, median, min, max and the
  per-seed values of each final metric; mean curves), ``table2.md`` (the table in markdown) and
  the figures ``table2_test_error.png`` (test error against epoch, mean ± std over seeds),
  ``table2_adjoint_norms.png`` (||lambda_k|| against k at init and after training, median over
  seeds) and ``table2_final.png`` (each seed's final test error and ||lambda_1||).

From Python: ``run(seeds=(0, 1, 2), epochs=50, out=...)`` returns the aggregate record;
:func:`train_task` trains the methods of one task and seed; :func:`write_summary` redraws the
aggregate of finished per-seed records.
"""
from __future__ import annotations

import json
import math
import os
import time
import warnings

from .. import backend, coadjoint, rnn, train
from ..data import digits as _digits, registry as data_registry
from .._validate import integer as _integer, number as _number
from . import record as _record
from .methods import OPTIMIZERS, check_jp_settings, drain_mean, fit_jp, jp_grad_fn, \
    stop_reason
from .options import WarningLog, add_options, add_run_arguments, apply_quick, check_integers, \
    check_dataset_or_idx, check_run_settings, complete, int_list, run_state
from .plots import save_figure

__all__ = ["DEFAULTS", "QUICK", "TINY", "TASKS", "DIGITS_TASKS", "MNIST_TASKS", "DATASETS",
           "METHODS", "OPTIMIZERS", "KW", "PAPER", "add_arguments", "check_settings", "make_task_data",
           "evaluate", "train_task", "aggregate", "write_summary", "run", "plot_alpha_sweep",
           "g23_barrier_optimum", "LEARNED_BELOW"]

TASKS = {"seq_rows": ("rows", False), "perm_rows": ("rows", True),
         "seq_pixels": ("pixels", False), "perm_pixels": ("pixels", True),
         "seq_columns": ("columns", False), "perm_columns": ("columns", True)}
"""task name -> (image-to-sequence mode, permuted?)."""

DIGITS_TASKS = ("seq_rows", "perm_rows", "seq_pixels", "perm_pixels")
"""Default tasks on the bundled 8x8 digits."""

MNIST_TASKS = ("seq_columns", "perm_columns")
"""Default tasks with ``idx`` (real MNIST) or ``dataset``: the paper's 28 columns, sequential and
permuted."""

DATASETS = ("mnist-5k", "fashion-mnist", "digits", "mnist1d")
"""Registry data sets ``dataset`` may name (``mnist1d`` has no image views, so no task of
:data:`TASKS` runs on it: refused with the views it has). Real MNIST from IDX files: ``idx``."""

METHODS = ("adjoint", "coadjoint")

KW = dict(activation="tanh", output="softmax", loss="cross_entropy")
"""JP eq. (5) with a softmax output and cross-entropy on integer labels."""

COLORS = {"adjoint": "tab:blue", "coadjoint": "tab:red"}

PAPER = {
    "seq_columns/adjoint": {"F": 14235.1, "test_error": 0.292, "lam1": "O(1e-7)"},
    "seq_columns/coadjoint": {"F": 14748.5, "test_error": 0.332, "lam1": "O(1e-6)"},
    "perm_columns/adjoint": {"F": 20268.3, "test_error": 0.652, "lam1": "O(1e-17)"},
    "perm_columns/coadjoint": {"F": 15449.1, "test_error": 0.333, "lam1": "O(1e-6)"},
}
"""JP Table II as printed (MNIST {0, 1, 2}, 28 columns; F is the training cross-entropy)."""

DEFAULTS = dict(tasks=None, idx=None, dataset=None, n_train=None, n_test=None, classes=(0, 1, 2),
                seeds=(0, 1, 2, 3, 4), seed=None,
                methods=METHODS, hidden=32, epochs=100, batch_size=32, optimizer="sgd", lr=None,
                clip=None, G="G23", alpha=0.1, scale=None, bias_scale=0.0, perm_seed=1234,
                data_seed=0, test_fraction=0.25, normalize="global", eval_chunk=2048,
                out="results/table2", progress=True, blas_threads=1)
"""``tasks=None``: :data:`DIGITS_TASKS`, or :data:`MNIST_TASKS` when ``idx`` (an MNIST folder) or
``dataset`` (a name of :data:`DATASETS`) is given; ``n_train`` / ``n_test``: None (all) or a
stratified subset of that many examples (``dataset`` only). ``seed`` (an int) replaces ``seeds``
by (seed,). ``lr=None``: SGD 0.1, Adam 1e-3. ``scale=None``: weights N(0, 1/fan_in).
``test_fraction`` and ``data_seed`` split the bundled digits (MNIST and Fashion-MNIST have their
own test sets; ``data_seed`` is the registry's split of mnist-5k and digits). ``eval_chunk``:
examples per evaluation sweep."""

QUICK = dict(seeds=(0, 1, 2), epochs=60)
"""``--quick``: 3 seeds x 4 tasks x 2 methods, 60 epochs: about a minute on 2 cores."""

TINY = dict(seeds=(0, 1), epochs=2, hidden=5, tasks=("seq_rows", "perm_rows"))
"""The test suite's setting (seconds)."""


# ------------------------------------------------------------------------------ settings

def _name_list(value, name, valid):
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    out = tuple(value)
    bad = [v for v in out if v not in valid]
    if bad or not out:
        raise ValueError("%s must be a non-empty list from %s, got %r"
                         % (name, ", ".join(valid), bad or value))
    if len(set(out)) != len(out):
        raise ValueError("%s lists a value twice: %r" % (name, value))
    return out


def check_settings(**settings):
    """Validate and complete the settings (unknown keys: TypeError); returns a new dict.

    ``seeds``, ``classes``, ``tasks`` and ``methods`` become tuples (comma-separated strings
    accepted); ``seed`` given replaces ``seeds``; ``tasks`` and ``lr`` get their defaults.
    """
    s = complete(settings, DEFAULTS, "table2")
    if s["seed"] is not None:
        s["seeds"] = (_integer(s["seed"], "seed", 0),)
    s["seeds"] = int_list(s["seeds"], "seeds")
    if len(set(s["seeds"])) != len(s["seeds"]):
        raise ValueError("seeds lists a seed twice: %r" % (s["seeds"],))
    s["seed"] = None
    s["classes"] = int_list(s["classes"], "classes")
    if len(s["classes"]) < 2:
        raise ValueError("classes must name at least 2 digits, got %r" % (s["classes"],))
    if s["idx"] is not None:
        if isinstance(s["idx"], bytes) or not isinstance(s["idx"], (str, os.PathLike)):
            raise TypeError("idx must be a folder path, got %r" % (s["idx"],))
        s["idx"] = os.fspath(s["idx"])
    check_dataset_or_idx(s, DATASETS)
    if s["dataset"] is None and (s["n_train"] is not None or s["n_test"] is not None):
        raise ValueError("n_train / n_test subsample a registry data set: give dataset too")
    check_integers(s, (("n_train", 1), ("n_test", 1)), allow_none=True)
    if s["tasks"] is None:
        s["tasks"] = MNIST_TASKS if (s["idx"] is not None or s["dataset"] is not None) \
            else DIGITS_TASKS
    s["tasks"] = _name_list(s["tasks"], "tasks", tuple(TASKS))
    if s["dataset"] is not None:
        views = data_registry.REGISTRY[s["dataset"]].views
        bad = [t for t in s["tasks"] if TASKS[t][0] not in views]
        if bad:
            raise ValueError("dataset %r has no view %r (tasks %s); its views: %s"
                             % (s["dataset"], TASKS[bad[0]][0], ", ".join(bad),
                                ", ".join(views)))
    s["methods"] = _name_list(s["methods"], "methods", METHODS)
    check_integers(s, (("hidden", 1), ("epochs", 0), ("batch_size", 1), ("perm_seed", 0),
                       ("data_seed", 0), ("eval_chunk", 1)))
    check_jp_settings(s)
    s["test_fraction"] = _number(s["test_fraction"], "test_fraction", positive=True)
    if not s["test_fraction"] < 1:
        raise ValueError("test_fraction must lie in (0, 1), got %r" % (s["test_fraction"],))
    if s["normalize"] not in ("global", "channel", "feature", None, "none"):
        raise ValueError("normalize must be global, channel, feature or none, got %r"
                         % (s["normalize"],))
    if s["normalize"] == "none":
        s["normalize"] = None
    return check_run_settings(s)


def add_arguments(p):
    d = DEFAULTS
    p.add_argument("--idx", default=d["idx"], metavar="FOLDER",
                   help="real MNIST: a folder with the four IDX files (train-images-idx3-ubyte"
                        "[.gz], ...; see docs/data.md). Default: scikit-learn's bundled 8x8 "
                        "digits")
    p.add_argument("--dataset", default=d["dataset"], metavar="NAME",
                   help="a registry data set: %s (see docs/data.md; mnist-5k is 5,000 real "
                        "MNIST digits). Default: scikit-learn's bundled 8x8 digits"
                        % ", ".join(DATASETS[:3]))
    p.add_argument("--n-train", dest="n_train", type=int, default=d["n_train"],
                   help="with --dataset: a stratified subset of this many training examples "
                        "(default: all)")
    p.add_argument("--n-test", dest="n_test", type=int, default=d["n_test"],
                   help="with --dataset: likewise for the test set (default: all)")
    p.add_argument("--tasks", default=d["tasks"],
                   help="comma-separated, from %s (default: %s; with --idx or --dataset: %s)"
                        % (", ".join(TASKS), ",".join(DIGITS_TASKS), ",".join(MNIST_TASKS)))
    p.add_argument("--classes", default="0,1,2",
                   help="digits to classify, comma-separated (default %(default)s, as JP)")
    p.add_argument("--seeds", default=",".join(map(str, d["seeds"])),
                   help="comma-separated seeds, each an init + minibatch order shared by the "
                        "methods; all run in this invocation (default %(default)s)")
    p.add_argument("--methods", default=",".join(d["methods"]),
                   help="comma-separated, from adjoint, coadjoint (default %(default)s)")
    p.add_argument("--G", default=d["G"], choices=coadjoint.penalty_names(),
                   help="adjoint penalty of the coadjoint method (default %(default)s, JP eq. 23)")
    p.add_argument("--optimizer", default=d["optimizer"], choices=tuple(OPTIMIZERS),
                   help="default %(default)s")
    p.add_argument("--normalize", default=d["normalize"],
                   choices=("global", "channel", "feature", "none"),
                   help="zero mean, unit variance with training statistics (default "
                        "%(default)s: one mean and std for all pixels)")
    add_options(p, d, ("alpha", float, "weight of G in F + alpha G; G23 with a softmax head "
                                       "misclassifies for alpha >= 1/2"),
                ("hidden", int, "hidden size m"), ("epochs", int, ""), ("batch_size", int, ""),
                ("lr", float, "learning rate (default: SGD 0.1, Adam 0.001)"),
                ("clip", float, "clip each minibatch gradient to this global norm (default: "
                                "off)"),
                ("scale", float, "std of every weight at init (default 1/sqrt(fan_in))"),
                ("bias_scale", float, "std of the biases at init"),
                ("perm_seed", int, "seed of the fixed step permutation of the perm_* tasks"),
                ("test_fraction", float, "share of each class in the test set, bundled digits"),
                ("eval_chunk", int, "examples per evaluation sweep"))
    add_run_arguments(p, d, QUICK, seed="run this one seed instead of --seeds",
                      data_seed="seed of the stratified train/test split of the bundled "
                                "digits, of mnist-5k and digits (--dataset), and of the "
                                "--n-train / --n-test subsets")


# ------------------------------------------------------------------------------ the pieces
def g23_barrier_optimum(alpha, n_classes=3):
    """The probabilities that minimise one example's F + alpha * (-log ||r||^2), r = e_c - p.

    With a softmax head, -dF_b/do = r = e_c - p (c the true class), lambda_T = W_out^T r and every
    lambda_k is linear in r, so G23's barrier -log ||lambda_T||^2 contains -2 log ||r|| + (terms
    of the direction of r only). For fixed p_c, ||r||^2 = (1 - p_c)^2 + sum_{j != c} p_j^2 is
    largest with the remaining mass on one wrong class j, and then
    -log p_c - 2 alpha log(1 - p_c) is smallest at p_c = 1 / (1 + 2 alpha),
    p_j = 2 alpha / (1 + 2 alpha).
    Returns the probability vector (true class first, the favoured wrong class second). The
    prediction is wrong (p_j > p_c) once alpha > 1/2, and the per-example loss cannot go below
    log(1 + 2 alpha) while the barrier is at its optimum (0.182 at alpha = 0.1).
    """
    alpha = _number(alpha, "alpha", minimum=0.0)
    n_classes = _integer(n_classes, "n_classes", 2)
    p = [0.0] * n_classes
    p[0] = 1.0 / (1.0 + 2.0 * alpha)
    p[1] = 2.0 * alpha / (1.0 + 2.0 * alpha)
    return p


def make_task_data(task, settings):
    """``(((u_tr, y_tr), (u_te, y_te)), info)`` for one task (see :data:`TASKS`)."""
    s = settings
    mode, permute = TASKS[task]
    if s["idx"] is not None:
        tr, te, info = _digits.mnist_sequences(s["idx"], mode=mode, classes=s["classes"],
                                               permute=permute, perm_seed=s["perm_seed"],
                                               normalize=s["normalize"], return_info=True)
        info["source"] = "MNIST IDX files in %s" % s["idx"]
    elif s["dataset"] is not None:
        tr, te, info = data_registry.load(s["dataset"], view=mode, classes=s["classes"],
                                          permuted=permute, perm_seed=s["perm_seed"],
                                          seed=s["data_seed"], n_train=s["n_train"],
                                          n_test=s["n_test"], normalize=s["normalize"],
                                          return_info=True)
        info["file"] = info["source"]
        info["source"] = "%s (%s view, split %s, %s)" % (
            s["dataset"], mode, "seed %d" % s["data_seed"] if "seed" in info["split"]
            else "the source's own", "permuted steps, perm_seed %d" % s["perm_seed"]
            if permute else "steps in order")
    else:
        tr, te, info = _digits.digit_sequences(mode=mode, classes=s["classes"], permute=permute,
                                               perm_seed=s["perm_seed"],
                                               test_fraction=s["test_fraction"],
                                               seed=s["data_seed"], normalize=s["normalize"],
                                               return_info=True)
        info["source"] = "scikit-learn bundled 8x8 digits"
    return (tr, te), info


def evaluate(params, u, y, penalty, chunk=2048):
    """Loss, error, penalty and adjoint norms of ``params`` on (u, y), ``chunk`` examples at a time.

    Returns ``(F, error, G, lam)``: mean cross-entropy, classification error, mean G_b of the
    penalty on the adjoints, and lam (T,) host array of mean ||lambda_k|| over the examples
    (k = 1..T; computed without underflow).
    """
    n = u.shape[1]
    F = err = G = 0.0
    lam = None
    for i in range(0, n, chunk):
        ub, yb = u[:, i:i + chunk], y[i:i + chunk]
        B = ub.shape[1]
        sw = rnn.sweep(params, ub, yb, **KW)
        F += float(sw.F) * B
        err += train.classification_error(sw.traj.yhat, yb) * B
        nrm = backend.to_numpy(coadjoint.adjoint_norms_from_lam(sw.adj.lam)).sum(axis=1)
        lam = nrm if lam is None else lam + nrm
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            G += float(penalty(sw.adj.lam, sw.adj.lam0)[0].sum())
    return F / n, err / n, G / n, lam / n


def train_task(task, seed, settings, datasets, progress=None, folder=None):
    """Train every method of ``settings["methods"]`` on one task and seed.

    All methods start from ``rnn.init_params(p, hidden, C, seed=seed, ...)`` and see the
    minibatches of ``train.fit(seed=seed)``. Returns {method: result} with result keys
    ``epochs`` (per-epoch rows), ``stopped``, ``wall_time_s``, ``warnings``, ``lam_init`` and
    ``lam_final`` (mean ||lambda_k|| over the test set, k = 1..T, lists). ``folder``: the seed's
    results folder, where each method keeps its training state (``--resume``), or None.
    """
    s = settings
    (u_tr, y_tr), (u_te, y_te) = datasets
    C = len(s["classes"])
    pen = coadjoint.get_penalty(s["G"])
    progress = s["progress"] if progress is None else progress
    out = {}
    for method in s["methods"]:
        params = rnn.init_params(u_tr.shape[2], s["hidden"], C, seed=seed, scale=s["scale"],
                                 bias_scale=s["bias_scale"])
        G_seen, failure, lam_by_epoch = [], [], []
        grad_fn = jp_grad_fn(method, KW, pen, s["alpha"], G_seen, failure)

        def ev(P):
            F_tr, e_tr, _, _ = evaluate(P, u_tr, y_tr, pen, s["eval_chunk"])
            F_te, e_te, G_te, lam = evaluate(P, u_te, y_te, pen, s["eval_chunk"])
            lam_by_epoch.append(lam)
            row = {"train_loss": F_tr, "train_error": e_tr, "test_F": F_te, "test_error": e_te,
                   "test_G": G_te, "lam1": float(lam[0]), "lamT": float(lam[-1])}
            return drain_mean(row, "train_G", G_seen)

        log = WarningLog()
        state = run_state(s, folder, "%s_%s" % (task, method), carry={
            "G_seen": G_seen, "failure": failure, "lam": lam_by_epoch, "warnings": log.seen})
        hist, caught = fit_jp(params, grad_fn, u_tr, y_tr, s, ev, progress,
                              "%s %s s%d" % (task, method, seed), seed=seed, state=state,
                              log=log)
        out[method] = {"epochs": hist.epochs, "stopped": stop_reason(hist.stopped, failure),
                       "wall_time_s": hist.wall_time, "warnings": caught,
                       "lam_init": lam_by_epoch[0].tolist(),
                       "lam_final": lam_by_epoch[-1].tolist()}
    return out


FINAL = ("train_loss", "F_sum", "train_error", "test_error", "test_F", "lam1", "lamT")
"""The final metrics aggregated over seeds (Table II's F, test error and ||lambda_1||, and more)."""

LEARNED_BELOW = 0.1
"""A seed counts as *learned* when its final test error is below this (chance is about 0.66)."""


def _final(res, n_train):
    """The last evaluated row of a run, with F_sum = train_loss * n_train."""
    rows = [r for r in res["epochs"] if r.get("test_error") is not None]
    last = dict(rows[-1])
    last["F_sum"] = last["train_loss"] * n_train if last.get("train_loss") is not None else None
    return last


def _stats(values):
    """mean, std (ddof 1; 0 for one value), median, min, max, geomean (of the positive values,
    with ``zeros`` counting the others) and the per-seed ``values`` of the finite ``values``."""
    np = backend.np
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    out = {"values": [None if x is None else float(x) for x in values], "n": int(v.size)}
    if v.size:
        out.update(mean=float(v.mean()), std=float(v.std(ddof=1)) if v.size > 1 else 0.0,
                   median=float(np.median(v)), min=float(v.min()), max=float(v.max()))
        pos = v[v > 0]
        out["geomean"] = float(np.exp(np.log(pos).mean())) if pos.size else None
        out["zeros"] = int(v.size - pos.size)
    return out


def aggregate(per_seed, settings, n_train):
    """Aggregate ``per_seed`` = {seed: {task: {method: result}}} over the seeds.

    Returns {"cells": {label: {...}}, "curves": {label: [rows]}}, label ``task/method``. A cell
    holds the :func:`_stats` of each :data:`FINAL` metric, ``learned`` (seeds with final test
    error < :data:`LEARNED_BELOW`), ``stopped`` (per seed) and the per-step profiles
    ``lam_init_median`` / ``lam_final_median`` (median over seeds of the mean ||lambda_k||).
    Curves: per epoch, the mean and std over the seeds that reached it.
    """
    np = backend.np
    seeds = sorted(per_seed)
    cells, curves = {}, {}
    for task in settings["tasks"]:
        for method in settings["methods"]:
            label = "%s/%s" % (task, method)
            runs = [per_seed[sd][task][method] for sd in seeds]
            finals = [_final(r, n_train[task]) for r in runs]
            cell = {m: _stats([f.get(m) for f in finals]) for m in FINAL}
            cell["learned"] = sum(1 for f in finals if f["test_error"] < LEARNED_BELOW)
            cell["stopped"] = [r["stopped"] for r in runs]
            for key in ("lam_init", "lam_final"):
                cell[key + "_median"] = np.median(np.asarray([r[key] for r in runs], dtype=float),
                                                  axis=0).tolist()
            cells[label] = cell
            rows = []
            for e in range(max(len(r["epochs"]) for r in runs)):
                have = [r["epochs"][e] for r in runs if e < len(r["epochs"])
                        and r["epochs"][e].get("test_error") is not None]
                if not have:
                    continue
                row = {"epoch": e, "n": len(have)}
                for m in ("test_error", "train_loss", "lam1", "lamT"):
                    v = np.asarray([h[m] for h in have], dtype=float)
                    row[m] = float(v.mean())
                    row[m + "_std"] = float(v.std(ddof=1)) if v.size > 1 else 0.0
                    row[m + "_median"] = float(np.median(v))
                rows.append(row)
            curves[label] = rows
    return {"cells": cells, "curves": curves}


# ------------------------------------------------------------------------------ output
def _pm(st, fmt="%.3f"):
    if not st.get("n"):
        return "-"
    return (fmt + " ± " + fmt) % (st["mean"], st["std"]) if st["n"] > 1 else fmt % st["mean"]


def _g(x):
    """A number in 2 significant digits: 0.16, 2.1e-07, 8.8e+06."""
    return "0" if x == 0 else ("%.2g" % x if 1e-3 <= abs(x) < 1e4 else "%.1e" % x)


def _med(st):
    if not st.get("n"):
        return "-"
    return "%s [%s, %s]" % (_g(st["median"]), _g(st["min"]), _g(st["max"])) if st["n"] > 1 \
        else _g(st["median"])


HEAD = ("task", "method", "F = train CE, median [min, max]", "F × n_train (median)",
        "test error, mean ± std", "test error, median", "learned",
        "‖λ_1‖, median [min, max]", "‖λ_T‖, median [min, max]")


def table_lines(agg, settings, markdown=False):
    """Table II rows per task and method: F (mean cross-entropy on the training set, and its sum
    F × n_train), test error, seeds learned, ||lambda_1|| and ||lambda_T|| (test means)."""
    rows = []
    for label, c in agg["cells"].items():
        task, method = label.split("/")
        rows.append((task, method, _med(c["train_loss"]),
                     _g(c["F_sum"]["median"]) if c["F_sum"].get("n") else "-",
                     _pm(c["test_error"]), "%.3f" % c["test_error"]["median"],
                     "%d/%d" % (c["learned"], len(c["test_error"]["values"])),
                     _med(c["lam1"]), _med(c["lamT"])))
    if markdown:
        out = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
        return out + ["| " + " | ".join(r) + " |" for r in rows]
    w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEAD)]
    fmt = "  ".join("%%-%ds" % x for x in w)
    return [fmt % HEAD] + [fmt % r for r in rows]


def _chance(counts):
    return 1.0 - max(counts) / float(sum(counts))


def plot_test_error(agg, settings, chance):
    """Test error against epoch per task: mean ± std over the seeds, one line per method."""
    import matplotlib.pyplot as plt
    np = backend.np
    tasks = settings["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.3 * len(tasks), 3.2), squeeze=False,
                             sharey=True)
    n = 0
    for ax, task in zip(axes[0], tasks):
        for method in settings["methods"]:
            rows = agg["curves"]["%s/%s" % (task, method)]
            n = max([n] + [r["n"] for r in rows])
            ep = np.asarray([r["epoch"] for r in rows])
            m = np.asarray([r["test_error"] for r in rows])
            sd = np.asarray([r["test_error_std"] for r in rows])
            ax.plot(ep, m, color=COLORS[method], lw=2, label=method)
            ax.fill_between(ep, m - sd, m + sd, color=COLORS[method], alpha=0.2, lw=0)
        ax.axhline(chance[task], color="0.5", ls=":", lw=1, label="constant guess")
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("test error (mean ± std, %d seeds)" % n)
    axes[0][0].set_ylim(0, 0.8)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_adjoint_norms(agg, settings):
    """||lambda_k|| against k (test mean, median over seeds): at init and after training."""
    import matplotlib.pyplot as plt
    tasks = settings["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.3 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        first = True
        for method in settings["methods"]:
            c = agg["cells"]["%s/%s" % (task, method)]
            k = backend.np.arange(1, len(c["lam_final_median"]) + 1)
            if first:
                ax.plot(k, c["lam_init_median"], color="0.4", ls="--", lw=1.5, label="init")
                first = False
            ax.plot(k, c["lam_final_median"], color=COLORS[method], lw=2, label=method)
        ax.set_yscale("log", nonpositive="mask")
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("step k")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel(r"$\|\lambda_k\|$ (test mean; median over seeds)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


LOG_FLOOR = -40
"""``table2_final.png`` draws log10 ||lambda_1|| below this value at this value (triangles)."""


def plot_final(agg, settings, chance):
    """Each seed's final test error and log10 ||lambda_1||, per task and method."""
    import matplotlib.pyplot as plt
    np = backend.np
    tasks = settings["tasks"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    width = 0.35
    for j, method in enumerate(settings["methods"]):
        off = (j - (len(settings["methods"]) - 1) / 2) * width
        for i, task in enumerate(tasks):
            c = agg["cells"]["%s/%s" % (task, method)]
            x = np.full(len(c["test_error"]["values"]), i + off)
            a.scatter(x, c["test_error"]["values"], color=COLORS[method], s=14,
                      label=method if i == 0 else None)
            lam = np.log10(np.maximum(np.asarray(c["lam1"]["values"], dtype=float), 1e-300))
            low = lam < LOG_FLOOR   # underflowed or far below: drawn at the floor as triangles
            b.scatter(x[~low], lam[~low], color=COLORS[method], s=14,
                      label=method if i == 0 else None)
            b.scatter(x[low], np.full(int(low.sum()), LOG_FLOOR), color=COLORS[method], s=22,
                      marker="v")
    for i, task in enumerate(tasks):
        a.hlines(chance[task], i - 0.45, i + 0.45, color="0.5", ls=":", lw=1)
    for ax in (a, b):
        ax.set_xticks(range(len(tasks)))
        ax.set_xticklabels(tasks, fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    a.set_ylabel("final test error (one dot per seed)")
    b.set_ylabel(r"log10 $\|\lambda_1\|$ (test mean)")
    b.set_title("triangles: below 1e%d (or 0)" % LOG_FLOOR, fontsize=8)
    fig.tight_layout()
    return fig


def plot_alpha_sweep(summaries, tasks=None, adjoint=None):
    """Final test error and training loss of the coadjoint method against alpha.

    ``summaries``: {alpha: summary record or path of a ``summary.json``} (runs that differ only
    in alpha); ``adjoint``: optionally a summary whose adjoint cells give the alpha = 0 point. The
    right panel draws the measured median training loss against the closed-form floor
    log(1 + 2 alpha) of :func:`g23_barrier_optimum`.
    """
    import matplotlib.pyplot as plt
    np = backend.np

    def load(x):
        if isinstance(x, dict):
            return x
        with open(x) as f:
            return json.load(f)

    sums = {float(a): load(v) for a, v in summaries.items()}
    alphas = sorted(sums)
    tasks = tasks or [t for t in sums[alphas[0]]["settings"]["tasks"]]
    adj = load(adjoint) if adjoint is not None else None
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    for i, task in enumerate(tasks):
        col = "C%d" % i
        xs, m, sd, F = [], [], [], []
        if adj is not None and "%s/adjoint" % task in adj["cells"]:
            c = adj["cells"]["%s/adjoint" % task]
            a.errorbar([0.003], [c["test_error"]["mean"]], [c["test_error"]["std"]], color=col,
                       marker="s", ms=5, capsize=3, ls="none")
        for al in alphas:
            c = sums[al]["cells"].get("%s/coadjoint" % task)
            if c is None:
                continue
            xs.append(al)
            m.append(c["test_error"]["mean"])
            sd.append(c["test_error"]["std"])
            F.append(c["train_loss"]["median"])
        a.errorbar(xs, m, sd, color=col, marker="o", ms=4, capsize=3, label=task)
        b.plot(xs, F, color=col, marker="o", ms=4, label=task)
    grid = np.geomspace(min(alphas), max(alphas), 100)
    b.plot(grid, np.log1p(2 * grid), color="k", ls="--", lw=1, label="log(1 + 2 alpha)")
    a.axvline(0.5, color="0.5", ls=":", lw=1)
    b.axvline(0.5, color="0.5", ls=":", lw=1)
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_xlabel("alpha (G23); squares at the left: adjoint")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    a.set_ylabel("final test error (mean ± std)")
    b.set_ylabel("final training loss F (median)")
    b.set_yscale("log")
    fig.tight_layout()
    return fig


def _protocol(s):
    return ("RNN m=%d tanh, softmax + cross-entropy; init %s; %s lr=%g, batch %d, %d epochs%s; "
            "coadjoint G=%s alpha=%g; seeds %s"
            % (s["hidden"], "N(0,1/fan_in)" if s["scale"] is None else "N(0,%g^2)" % s["scale"],
               s["optimizer"].upper(), s["lr"], s["batch_size"], s["epochs"],
               ", clip %g" % s["clip"] if s["clip"] else "", s["G"], s["alpha"],
               ",".join(map(str, s["seeds"]))))


def write_summary(out, records, settings=None, verbose=True):
    """Aggregate per-seed records into ``out``: ``summary.json``, ``table2.md`` and the figures.

    ``records``: the per-seed table2 records (dicts as written by :func:`run`, or paths /
    folders for :func:`manualgrad.experiments.record.load`), all with the same settings except
    the seed. Returns the aggregate record. :func:`run` calls this after training; call it
    yourself to redraw a finished run: ``write_summary(out, [out + "/seed_0", ...])``.
    """
    say = print if verbose else (lambda *a, **k: None)
    recs = [r if isinstance(r, dict) else _record.load(r) for r in records]
    if not recs:
        raise ValueError("write_summary needs at least one per-seed record")
    def key(r):
        return json.dumps(train.to_jsonable({k: v for k, v in r["settings"].items()
                                             if k != "seed"}), sort_keys=True)

    for r in recs:
        if r.get("experiment") != "table2" or "data" not in r:
            raise ValueError("not a per-seed table2 record: %s"
                             % r.get("_path", r.get("experiment")))
        if key(r) != key(recs[0]):
            raise ValueError("the records' settings differ beyond the seed (%s vs %s)"
                             % (r.get("_path", "?"), recs[0].get("_path", "?")))
    if len({r["seed"] for r in recs}) != len(recs):
        raise ValueError("two records have the same seed: %s" % [r["seed"] for r in recs])
    base = {k: v for k, v in recs[0]["settings"].items() if k != "seed"}
    s = dict(base) if settings is None else dict(settings)
    s["seeds"] = sorted(r["seed"] for r in recs)
    infos = recs[0]["data"]
    per_seed = {r["seed"]: {t: {m: r["runs"]["%s/%s" % (t, m)] for m in s["methods"]}
                            for t in s["tasks"]} for r in recs}
    n_train = {t: infos[t]["n_train"] for t in s["tasks"]}
    agg = aggregate(per_seed, s, n_train)
    say("\nfinal values over %d seed(s) (learned: final test error < %g); F is the mean "
        "cross-entropy on the training set, ||lambda|| are means over the test set:"
        % (len(s["seeds"]), LEARNED_BELOW))
    for line in table_lines(agg, s):
        say(line)
    chance = {t: _chance(infos[t]["test_counts"]) for t in s["tasks"]}
    os.makedirs(out, exist_ok=True)
    figs = {"table2_test_error.png": plot_test_error(agg, s, chance),
            "table2_adjoint_norms.png": plot_adjoint_norms(agg, s),
            "table2_final.png": plot_final(agg, s, chance)}
    for name, fig in figs.items():
        save_figure(fig, os.path.join(out, name))
    i0 = infos[s["tasks"][0]]
    md = ["# JP Table II (manualgrad run table2)", "", _protocol(s) + ".", "",
          "Data: %s; %d train / %d test examples; constant-guess test error %s. Learned: final "
          "test error < %g." % (i0["source"], i0["n_train"], i0["n_test"], ", ".join(
              "%s %.3f" % kv for kv in chance.items()), LEARNED_BELOW), ""]
    md += table_lines(agg, s, markdown=True)
    with open(os.path.join(out, "table2.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    summary = _record.new_record("table2", dict(s, seed=None))
    summary.update(aggregate=True, data=infos, n_train=n_train, chance=chance,
                   learned_below=LEARNED_BELOW, cells=agg["cells"], paper=PAPER,
                   records=["seed_%d/results.json" % sd for sd in s["seeds"]])
    for label, rows in agg["curves"].items():
        _record.add_run(summary, label, rows)
        summary["summary"][label] = {m: agg["cells"][label][m].get("mean") for m in FINAL}
    summary["wall_time_s"] = float(sum(r.get("wall_time_s", 0.0) for r in recs))
    summary["figures"] = list(figs)
    train.write_json(os.path.join(out, "summary.json"), summary)
    say("\nwrote %s: summary.json, table2.md, %s" % (out, ", ".join(figs)))
    return summary


def run(verbose=True, overwrite=False, **settings):
    """Run the experiment for every seed; returns the aggregate record (``summary.json``).

    Settings: see :data:`DEFAULTS`. Per seed, every method starts from the same parameters and
    sees the same minibatches; each seed's record is written to ``out/seed_<s>/results.json``,
    then :func:`write_summary` aggregates them. ``overwrite``: replace records already in
    ``out`` (``summary.json`` or a ``seed_<s>/results.json`` of these seeds; else
    FileExistsError before training).
    """
    s = check_settings(**apply_quick(dict(settings), DEFAULTS, QUICK))
    out = _record.prepare_out(s["out"], overwrite or bool(s.get("resume")),
                              records=["summary.json"] + [
        os.path.join("seed_%d" % seed, "results.json") for seed in s["seeds"]])
    say = print if verbose else (lambda *a, **k: None)
    t0 = time.perf_counter()
    data, infos = {}, {}
    for task in s["tasks"]:
        data[task], infos[task] = make_task_data(task, s)
    i0 = infos[s["tasks"][0]]
    say("JP Table II: %s, classes %s -> labels 0..%d; %d train / %d test (train %s, test %s); "
        "tasks %s; %s; backend %s/%s"
        % (i0["source"], list(s["classes"]), len(s["classes"]) - 1, i0["n_train"], i0["n_test"],
           i0["train_counts"], i0["test_counts"], ", ".join(s["tasks"]), _protocol(s),
           backend.get_backend(), backend.get_dtype().name))
    saved = {k: v for k, v in s.items() if k not in ("seeds", "seed")}
    records = []
    for seed in s["seeds"]:
        ts = time.perf_counter()
        rec = _record.new_record("table2", dict(saved, seed=seed))
        rec["data"] = infos
        for task in s["tasks"]:
            for method, res in train_task(task, seed, s, data[task],
                                          folder=os.path.join(out, "seed_%d" % seed)).items():
                label = "%s/%s" % (task, method)
                _record.add_run(rec, label, res["epochs"], stopped=res["stopped"],
                                wall_time_s=res["wall_time_s"], warnings=res["warnings"],
                                lam_init=res["lam_init"], lam_final=res["lam_final"])
                rec["summary"][label] = {k: v for k, v in _final(
                    res, infos[task]["n_train"]).items() if k in FINAL}
                if res["stopped"]:
                    say("  seed %d %s stopped: %s" % (seed, label, res["stopped"][:200]))
        _record.finish(rec, os.path.join(out, "seed_%d" % seed), time.perf_counter() - ts)
        records.append(rec)
        say("seed %d: test error %s (%.1f s)" % (seed, ", ".join(
            "%s %.3f" % (lab, r["test_error"]) for lab, r in rec["summary"].items()),
            time.perf_counter() - ts))
    summary = write_summary(out, records, settings=dict(saved), verbose=verbose)
    summary["wall_time_s"] = time.perf_counter() - t0
    train.write_json(os.path.join(out, "summary.json"), summary)
    return summary
