"""MNIST-1D (Greydanus 2020), plain and shuffled: every cell and the coadjoint RNN over seeds.

Data: :func:`manualgrad.data.load` ``("mnist1d", shuffled=...)`` (docs/data.md): the mnist1d
package's ``make_dataset(get_dataset_args())``, 4000 training and 1000 test sequences of T = 40
steps, p = 1, 10 classes; ``shuffled=True`` is the package's own ``shuffle_seq`` variant (each
sequence's steps shuffled, which destroys the spatial structure a CNN or an RNN can use).
Inputs are normalised with the training set's statistics (``normalize``, default one global
mean and std). ``n_train`` / ``n_test`` keep a stratified subset (``data_seed``; the tests).

Methods (:data:`METHODS`), each a many-to-one classifier with a softmax head and cross-entropy
on the last hidden state h_T, hidden size ``hidden``:

- ``rnn``: the vanilla (Elman) RNN, tanh, trained by its adjoint (BPTT; JP eqs. 6-13);
- ``coadjoint``: the same RNN trained by the coadjoint method, the exact gradient of
  F + ``alpha`` G (JP eqs. 14-23, penalty ``G``, :func:`manualgrad.coadjoint.coadjoint_grad_fn`);
  it starts from the ``rnn`` method's weights;
- ``gru``, ``lstm``, ``momentum_rnn``, ``momentum_lstm``, ``indrnn``: the cells of
  :mod:`manualgrad.cells`, each by its own hand-written BPTT, with the options of
  :data:`manualgrad.experiments.methods.CELL_OPTIONS` (tanh RNNs, relu IndRNN, mu = s = 0.6 for
  the momentum cells) merged with ``cell_options``.

Training: for each seed every method starts from ``init_params(..., seed=seed)`` and sees the
minibatches of ``train.fit(seed=seed)``; Adam (or SGD) with ``lr``, gradient clipping by global
norm ``clip``. After every epoch (and at epoch 0, the initialisation) one sweep of the cell over
the test set (:func:`manualgrad.experiments.methods.cell_metrics`) gives ``test_F``,
``test_acc`` and the mean adjoint norm ||lambda_k|| = ||dF_b/dh_k|| for every step k = 1..T
(``norms_by_epoch``; ``lam1``, ``lamT`` in the rows); ``train_F`` is the mean minibatch loss of
the epoch (the coadjoint rows also have ``train_G``, the mean penalty).

Written to ``out``: ``<variant>/seed_<s>/results.json`` (one record per variant and seed, runs
labelled by method; ``resume=True`` keeps those already there and trains only the missing ones),
then ``summary.json`` (mean, std and per-seed final test accuracy of every variant and method;
mean curves), ``mnist1d.md`` (the table beside the paper's) and the figures
``mnist1d_curves.png`` (training loss and test accuracy against epoch, mean +- std over seeds)
and ``mnist1d_adjoint_norms.png`` (||lambda_k|| / ||lambda_T|| against k at a few epochs,
geometric mean over seeds, one panel per variant and method). docs/mnist1d.md has the real run.
"""
from __future__ import annotations

import json
import math
import os
import time

from .. import backend, cells, coadjoint, data, train
from .._validate import integer as _integer, number as _number
from . import record as _record
from .methods import CELL_COLORS, CELL_OPTIONS, cell_metrics, check_optimizer, drain_mean, \
    fit_jp, jp_grad_fn, split_cell_options, stop_reason
from .options import WarningLog, add_options, add_run_arguments, apply_quick, check_integers, \
    check_run_settings, complete, int_list, json_object, run_state
from .plots import save_figure

__all__ = ["DEFAULTS", "QUICK", "TINY", "METHODS", "VARIANTS", "PAPER", "HEAD", "COLORS",
           "add_arguments", "check_settings", "make_data", "method_setup", "train_seed",
           "aggregate", "write_summary", "run"]

METHODS = ("rnn", "coadjoint", "gru", "lstm", "momentum_rnn", "momentum_lstm", "indrnn")
"""Every method: the cells by their BPTT, and ``coadjoint`` (the vanilla RNN, JP's method)."""

VARIANTS = ("plain", "shuffled")
"""MNIST-1D as built, and its shuffled-sequence variant."""

HEAD = dict(output="softmax", loss="cross_entropy")
"""Softmax over the 10 classes on h_T, cross-entropy on integer labels."""

COLORS = dict(CELL_COLORS, coadjoint="tab:red")

PAPER = {"plain": {"logistic regression": 0.32, "MLP": 0.68, "CNN": 0.94, "GRU": 0.91},
         "shuffled": {"CNN": 0.56, "GRU": 0.57}}
"""Test accuracy in the MNIST-1D paper (Greydanus 2020, its benchmark table), as fractions."""

DEFAULTS = dict(methods="all", variants=VARIANTS, seeds=(0, 1, 2), seed=None, hidden=64,
                epochs=30, batch_size=100, optimizer="adam", lr=1e-2, clip=1.0, G="G23",
                alpha=0.1, cell_options=None, n_train=None, n_test=None, normalize="global",
                data_seed=0, eval_chunk=500, resume=False, out="results/mnist1d",
                progress=True, blas_threads=1)
"""``methods``: "all" or comma-separated names of :data:`METHODS`; ``variants``: names of
:data:`VARIANTS`; ``seed`` (an int) replaces ``seeds`` by (seed,). ``clip``: max global gradient
norm (None: off). ``G``, ``alpha``: the coadjoint penalty and its weight (G23 with a softmax
head: alpha < 1/2, docs/table2.md). ``cell_options``: {cell: {option: value}} merged over
:data:`~manualgrad.experiments.methods.CELL_OPTIONS` (``coadjoint`` uses the rnn's).
``eval_chunk``: test examples per evaluation sweep. ``resume``: keep per-seed records already in
``out`` (same settings) and train only the missing ones."""

QUICK = dict(seeds=(0,), epochs=5, hidden=32)
"""``--quick``: one seed, 5 epochs, hidden 32: every method on both variants in about two
minutes on 2 cores."""

TINY = dict(seeds=(0,), hidden=4, epochs=1, n_train=60, n_test=30, batch_size=20)
"""The test suite's setting: a stratified subset, every method and variant, seconds."""


# ------------------------------------------------------------------------------ settings

def _names(value, name, valid, allow_all=False):
    """A tuple of names among ``valid`` from a sequence or a comma-separated string."""
    if allow_all and value == "all":
        return tuple(valid)
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    if not isinstance(value, (list, tuple)):
        raise TypeError("%s must be %scomma-separated names among %s, got %r"
                        % (name, "'all' or " if allow_all else "", ", ".join(valid), value))
    out = tuple(value)
    bad = [v for v in out if v not in valid]
    if bad or not out or len(set(out)) != len(out):
        raise ValueError("%s: unknown, repeated or no names in %r; valid are %s%s"
                         % (name, value, ", ".join(valid), " (or all)" if allow_all else ""))
    return out


def _cell_of(method):
    return "rnn" if method == "coadjoint" else method


def check_settings(**settings):
    """Validate and complete the settings (unknown keys: TypeError naming them); returns a new
    dict with every key of :data:`DEFAULTS`, ``methods``, ``variants`` and ``seeds`` tuples and
    ``cell_options`` {cell: options} for the cells the methods use."""
    s = complete(settings, DEFAULTS, "mnist1d")
    s["methods"] = _names(s["methods"], "methods", METHODS, allow_all=True)
    s["variants"] = _names(s["variants"], "variants", VARIANTS)
    if s["seed"] is not None:
        s["seeds"] = (_integer(s["seed"], "seed", 0),)
    s["seeds"] = int_list(s["seeds"], "seeds", unique=True)
    s["seed"] = None
    check_integers(s, (("hidden", 1), ("epochs", 0), ("batch_size", 1), ("data_seed", 0),
                       ("eval_chunk", 1)))
    check_integers(s, (("n_train", 10), ("n_test", 10)), allow_none=True)
    check_optimizer(s)
    s["clip"] = _number(s["clip"], "clip", positive=True, allow_none=True)
    if not isinstance(s["G"], str):
        raise TypeError("G must be a penalty name (%s), got %r"
                        % (", ".join(coadjoint.penalty_names()), s["G"]))
    coadjoint.get_penalty(s["G"])
    s["alpha"] = _number(s["alpha"], "alpha", minimum=0.0)
    if s["normalize"] == "none":
        s["normalize"] = None
    if s["normalize"] not in (None, "global", "channel", "feature"):
        raise ValueError("normalize must be global, channel, feature or none, got %r"
                         % (s["normalize"],))
    user = {} if s["cell_options"] is None else s["cell_options"]
    if not hasattr(user, "items"):
        raise TypeError("cell_options must be a mapping {cell: {option: value}}, got %r"
                        % (user,))
    for name, opts in user.items():
        cells.get(name)            # an unknown cell: ValueError listing the valid names
        if not hasattr(opts, "items") or not all(isinstance(k, str) for k in opts):
            raise TypeError("cell_options[%r] must be a mapping {option: value}, got %r"
                            % (name, opts))
    used = tuple(dict.fromkeys(_cell_of(m) for m in s["methods"]))
    s["cell_options"] = {c: dict(CELL_OPTIONS.get(c, {}), **dict(user.get(c, {})))
                         for c in used}
    for c in used:
        split_cell_options(c, s["cell_options"][c])       # ValueError naming a bad option
    s["resume"] = bool(s["resume"])
    return check_run_settings(s)



def add_arguments(p):
    d = DEFAULTS
    p.add_argument("--methods", default=d["methods"],
                   help="comma-separated, from %s; or all (default %%(default)s)"
                        % ", ".join(METHODS))
    p.add_argument("--variants", default=",".join(d["variants"]),
                   help="comma-separated, from plain, shuffled (default %(default)s)")
    p.add_argument("--seeds", default=",".join(map(str, d["seeds"])),
                   help="comma-separated seeds, each an init + minibatch order shared by the "
                        "methods; all run in this invocation (default %(default)s)")
    p.add_argument("--optimizer", default=d["optimizer"], choices=("adam", "sgd"),
                   help="default %(default)s")
    p.add_argument("--G", default=d["G"], choices=coadjoint.penalty_names(),
                   help="adjoint penalty of the coadjoint method (default %(default)s, JP eq. 23)")
    p.add_argument("--normalize", default=d["normalize"],
                   choices=("global", "channel", "feature", "none"),
                   help="inputs standardised with training statistics (default %(default)s)")
    p.add_argument("--cell-options", type=json_object, default=d["cell_options"],
                   metavar="JSON", help="per-cell options merged over %s"
                   % json.dumps(CELL_OPTIONS).replace("%", "%%"))
    add_options(p, d, ("hidden", int, "hidden size m of every cell"), ("epochs", int, ""),
                ("batch_size", int, ""), ("lr", float, "learning rate"),
                ("clip", float, "clip each minibatch gradient to this global norm"),
                ("alpha", float, "weight of G in F + alpha G (coadjoint)"),
                ("n_train", int, "stratified subset of the 4000 training sequences (default: "
                                 "all)"),
                ("n_test", int, "likewise of the 1000 test sequences (default: all)"),
                ("eval_chunk", int, "test examples per evaluation sweep"))
    p.add_argument("--resume", action="store_true", default=d["resume"],
                   help="keep the per-seed records already in --out (same settings) and train "
                        "only the missing variants and seeds")
    add_run_arguments(p, d, QUICK, seed="run this one seed instead of --seeds",
                      data_seed="seed of the n_train / n_test subsets")


# ------------------------------------------------------------------------------ the pieces
def make_data(variant, settings):
    """``(((u_train, y_train), (u_test, y_test)), info)`` of one variant (JSON-able info)."""
    s = settings
    tr, te, info = data.load("mnist1d", shuffled=variant == "shuffled", seed=s["data_seed"],
                             n_train=s["n_train"], n_test=s["n_test"],
                             normalize=s["normalize"], return_info=True)
    info = {k: v for k, v in info.items() if k in (
        "dataset", "source", "split", "T", "p", "classes", "train_counts", "test_counts",
        "shuffled", "subsample", "n_train", "n_test", "normalization")}
    info.update(n_train=int(tr[1].shape[0]), n_test=int(te[1].shape[0]),
                T=int(tr[0].shape[0]), p=int(tr[0].shape[2]))
    return (tr, te), info


def method_setup(method, settings):
    """``(cell name, init options, sweep options)`` of ``method`` under the settings."""
    cell = _cell_of(method)
    init_opts, sweep_opts = split_cell_options(cell, settings["cell_options"][cell])
    return cell, init_opts, sweep_opts


def train_seed(variant, seed, settings, dataset, progress=None, folder=None):
    """Train every method of ``settings["methods"]`` on one variant and seed.

    Returns {method: result}, result keys ``epochs`` (rows: ``epoch``, ``train_F``, ``test_F``,
    ``test_acc``, ``lam1``, ``lamT``, with clipping ``clip_fired``, for the coadjoint
    ``train_G``), ``stopped``, ``wall_time_s``, ``warnings``, ``norms_by_epoch`` (per evaluated
    epoch, the mean ||lambda_k|| over the test set, k = 1..T) and ``extra_final`` (the other
    state adjoints' norms after training).
    """
    s = settings
    (u_tr, y_tr), (u_te, y_te) = dataset
    p, C = u_tr.shape[2], 10
    progress = s["progress"] if progress is None else progress
    out = {}
    for method in s["methods"]:
        cell, init_opts, sweep_opts = method_setup(method, s)
        params = cells.get(cell).init_params(p, s["hidden"], C, seed=seed, **init_opts)
        G_seen, failure, norms_by_epoch, last = [], [], [], {}
        if method == "coadjoint":
            grad_fn = jp_grad_fn("coadjoint", dict(HEAD, **sweep_opts),
                                 coadjoint.get_penalty(s["G"]), s["alpha"], G_seen, failure)
        else:
            grad_fn = _cell_grad_fn(cell, dict(HEAD, **sweep_opts))

        def ev(P, cell=cell, sweep_opts=sweep_opts, norms_by_epoch=norms_by_epoch,
               G_seen=G_seen, last=last):
            m = cell_metrics(cell, P, u_te, y_te, chunk=s["eval_chunk"], **HEAD, **sweep_opts)
            norms_by_epoch.append([float(v) for v in m["norms"]])
            last["extra"] = {k: [float(x) for x in v] for k, v in m["extra"].items()}
            row = {"test_F": m["F"], "test_acc": 1.0 - m["error"],
                   "lam1": float(m["norms"][0]), "lamT": float(m["norms"][-1])}
            return drain_mean(row, "train_G", G_seen)

        log = WarningLog()
        state = run_state(s, folder, method, carry={
            "G_seen": G_seen, "failure": failure, "norms": norms_by_epoch, "last": last,
            "warnings": log.seen})
        hist, caught = fit_jp(params, grad_fn, u_tr, y_tr, s, ev, progress,
                              "%s %s s%d" % (variant, method, seed), seed=seed, state=state,
                              log=log)
        out[method] = {"epochs": hist.epochs, "stopped": stop_reason(hist.stopped, failure),
                       "wall_time_s": hist.wall_time, "warnings": caught,
                       "norms_by_epoch": norms_by_epoch, "extra_final": last.get("extra", {}),
                       "cell": cell, "options": {"init": init_opts, "sweep": sweep_opts}}
    return out


def _cell_grad_fn(cell, kw):
    mod = cells.get(cell)

    def grad_fn(P, u, y):
        return mod.loss_and_grad(P, u, y, **kw)
    return grad_fn


def _final(run):
    rows = [r for r in run["epochs"] if r.get("test_acc") is not None]
    return rows[-1] if rows else {}


# ------------------------------------------------------------------------------ aggregate
def _stats(values):
    np = backend.np
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0, "values": list(values)}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "n": int(v.size), "min": float(v.min()), "max": float(v.max()),
            "values": list(values)}


def norm_epochs(epochs):
    """The epochs at which the adjoint-norm figure draws ||lambda_k||: 0, E/4, E/2, E."""
    return sorted({0, epochs // 4, epochs // 2, epochs})


def aggregate(records):
    """{variant: {method: cell}} over per-seed records: final ``test_acc``, ``train_F``,
    ``ratio`` (||lambda_1|| / ||lambda_T||) and ``wall_time_s`` (mean, std, per seed), the mean
    and std curves of ``train_F`` and ``test_acc`` per epoch, and the geometric mean over seeds
    of ||lambda_k|| / ||lambda_T|| at :func:`norm_epochs`."""
    np = backend.np
    by = {}
    for rec in records:
        by.setdefault(rec["settings"]["variant"], []).append(rec)
    cells_ = {}
    for variant, recs in by.items():
        cells_[variant] = {}
        methods = list(recs[0]["runs"])
        for method in methods:
            runs = [r["runs"][method] for r in recs if method in r["runs"]]
            fin = [_final(run) for run in runs]
            cell = {k: _stats([f.get(k) for f in fin]) for k in ("test_acc", "train_F")}
            cell["ratio"] = _stats([f["lam1"] / f["lamT"] if f.get("lamT") else None
                                    for f in fin])
            cell["wall_time_s"] = _stats([run.get("wall_time_s") for run in runs])
            cell["seeds"] = [r["seed"] for r in recs if method in r["runs"]]
            cell["stopped"] = [run.get("stopped") for run in runs]
            curves = {}
            for key in ("train_F", "test_acc"):
                rows = [{r["epoch"]: r[key] for r in run["epochs"]
                         if r.get(key) is not None} for run in runs]
                ep = sorted(set.intersection(*(set(c) for c in rows))) if rows else []
                v = np.array([[c[e] for e in ep] for c in rows], dtype=float)
                curves[key] = {"epoch": ep, "mean": v.mean(axis=0).tolist() if ep else [],
                               "std": v.std(axis=0).tolist() if ep else []}
            cell["curves"] = curves
            n_ep = min(len(run["norms_by_epoch"]) for run in runs) - 1
            rel = {}
            for e in norm_epochs(n_ep):
                mats = []
                for run in runs:
                    nb = np.array(run["norms_by_epoch"][e], dtype=float)
                    with np.errstate(divide="ignore", invalid="ignore"):
                        mats.append(np.log10(nb / nb[-1]))
                m = np.array(mats)
                rel[str(e)] = (10.0 ** m.mean(axis=0)).tolist() if np.all(np.isfinite(m)) \
                    else [None] * m.shape[1]
            cell["relative_norms"] = rel
            cells_[variant][method] = cell
    return cells_


def _pct(st):
    if st["mean"] is None:
        return "-"
    return "%.1f ± %.1f %%" % (100 * st["mean"], 100 * st["std"])


def table_lines(agg, settings, markdown=False):
    """The table: method x variant, final test accuracy mean ± std over seeds, the ratio
    ||lambda_1|| / ||lambda_T|| and the mean wall time per run; the paper's rows after."""
    variants = [v for v in VARIANTS if v in agg]
    methods = list(dict.fromkeys(m for v in variants for m in agg[v]))
    head = ["method"] + ["%s test acc" % v for v in variants] + \
        ["%s l1/lT" % v for v in variants] + ["s / run"]
    rows = []
    for m in methods:
        cells_ = [agg[v].get(m) for v in variants]
        acc = [_pct(c["test_acc"]) if c else "-" for c in cells_]
        rat = ["%.2g" % c["ratio"]["mean"] if c and c["ratio"]["mean"] is not None else "-"
               for c in cells_]
        wall = [c["wall_time_s"]["mean"] for c in cells_ if c and c["wall_time_s"]["mean"]]
        rows.append([m] + acc + rat + ["%.1f" % (sum(wall) / len(wall)) if wall else "-"])
    for name in ("logistic regression", "MLP", "CNN", "GRU"):
        rows.append(["paper: %s" % name] + ["%.0f %%" % (100 * PAPER[v][name])
                                           if name in PAPER[v] else "-" for v in variants]
                    + ["-"] * len(variants) + ["-"])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return out + ["| " + " | ".join(r) + " |" for r in rows]
    w = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    fmt = "  ".join("%%-%ds" % x for x in w)
    return [fmt % tuple(head), "-" * (sum(w) + 2 * len(w))] + [fmt % tuple(r) for r in rows]


def plot_curves(agg, settings):
    """Rows: variants; columns: training loss (mean minibatch cross-entropy of the epoch) and
    test accuracy against epoch; mean ± std over seeds, one line per method."""
    import matplotlib.pyplot as plt

    variants = [v for v in VARIANTS if v in agg]
    fig, axes = plt.subplots(len(variants), 2, figsize=(11, 3.6 * len(variants) + 0.5),
                             squeeze=False)
    for variant, row in zip(variants, axes):
        for key, ax, ylabel in (("train_F", row[0], "training cross-entropy"),
                                ("test_acc", row[1], "test accuracy")):
            for method, cell in agg[variant].items():
                c = cell["curves"][key]
                if not c["epoch"]:
                    continue
                m, sd = backend.np.array(c["mean"]), backend.np.array(c["std"])
                ax.plot(c["epoch"], m, lw=1.6, color=COLORS.get(method),
                        label="%s (%d seeds)" % (method, len(cell["seeds"])))
                ax.fill_between(c["epoch"], m - sd, m + sd, color=COLORS.get(method),
                                alpha=0.12, lw=0)
            if key == "test_acc":
                for name, acc in PAPER[variant].items():
                    if name in ("CNN", "GRU"):         # labels at opposite ends: no overlap
                        ax.axhline(acc, color="0.4", ls="--" if name == "GRU" else ":", lw=1)
                        ax.text(0.01 if name == "CNN" else 0.99, acc, "paper %s" % name,
                                transform=ax.get_yaxis_transform(), fontsize=7,
                                va="bottom" if name == "CNN" else "top",
                                ha="left" if name == "CNN" else "right", color="0.3")
                ax.set_ylim(0, 1)
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.set_title("MNIST-1D %s" % variant, fontsize=9)
            ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="upper right")
    s = settings
    fig.suptitle("MNIST-1D: m=%d, %s lr=%g, batch %d, clip %s; mean ± std over seeds %s"
                 % (s["hidden"], s["optimizer"], s["lr"], s["batch_size"], s["clip"],
                    ",".join(map(str, s["seeds"]))), fontsize=9)
    fig.tight_layout()
    return fig


def plot_norms(agg, settings):
    """One panel per variant (rows) and method (columns): ||lambda_k|| / ||lambda_T|| against k
    (log scale), the geometric mean over seeds, at :func:`norm_epochs` (light: early)."""
    import matplotlib.pyplot as plt

    variants = [v for v in VARIANTS if v in agg]
    methods = list(dict.fromkeys(m for v in variants for m in agg[v]))
    fig, axes = plt.subplots(len(variants), len(methods), sharey=True, squeeze=False,
                             figsize=(2.3 * len(methods) + 1, 2.6 * len(variants) + 0.7))
    cmap = plt.get_cmap("viridis")
    for variant, row in zip(variants, axes):
        for method, ax in zip(methods, row):
            cell = agg[variant].get(method)
            if cell is None:
                ax.set_visible(False)
                continue
            eps = sorted(cell["relative_norms"], key=int)
            for i, e in enumerate(eps):
                v = cell["relative_norms"][e]
                if any(x is None for x in v):
                    continue
                ax.plot(range(1, len(v) + 1), v, lw=1.5,
                        color=cmap(0.85 * i / max(1, len(eps) - 1)), label="epoch %s" % e)
            ax.set_yscale("log", nonpositive="mask")
            ax.set_title("%s: %s" % (variant, method), fontsize=8)
            ax.grid(True, which="both", alpha=0.3)
            ax.set_xlabel("step k", fontsize=8)
        row[0].set_ylabel(r"$\|\lambda_k\| / \|\lambda_T\|$ (test)", fontsize=8)
    axes[0][0].legend(fontsize=6)
    fig.suptitle("MNIST-1D: mean adjoint norm over the test set relative to the last step, "
                 "geometric mean over seeds (m=%d)" % settings["hidden"], fontsize=9)
    fig.tight_layout()
    return fig


def _settings_key(rec):
    return json.dumps(train.to_jsonable({k: v for k, v in rec["settings"].items()
                                         if k not in ("seed", "variant")}), sort_keys=True)


def write_summary(out, records, settings=None, verbose=True):
    """Aggregate per-seed records into ``out``: ``summary.json``, ``mnist1d.md`` and the two
    figures. ``records``: dicts as :func:`run` writes them, or paths/folders for
    :func:`manualgrad.experiments.record.load`, with the same settings except seed and
    variant. Returns the aggregate record."""
    say = print if verbose else (lambda *a, **k: None)
    recs = [r if isinstance(r, dict) else _record.load(r) for r in records]
    if not recs:
        raise ValueError("write_summary needs at least one per-seed record")
    for r in recs:
        if r.get("experiment") != "mnist1d" or "variant" not in r.get("settings", {}):
            raise ValueError("not a per-seed mnist1d record: %s"
                             % r.get("_path", r.get("experiment")))
        if _settings_key(r) != _settings_key(recs[0]):
            raise ValueError("the records' settings differ beyond seed and variant (%s vs %s)"
                             % (r.get("_path", "?"), recs[0].get("_path", "?")))
    base = {k: v for k, v in recs[0]["settings"].items() if k not in ("seed", "variant")}
    s = dict(base) if settings is None else dict(settings)
    s["seeds"] = sorted({r["seed"] for r in recs})
    s.setdefault("clip", None)
    agg = aggregate(recs)
    say("\nfinal test accuracy, mean ± std over seeds %s; l1/lT = mean ||lambda_1|| / mean "
        "||lambda_T|| on the test set after training:" % ",".join(map(str, s["seeds"])))
    for line in table_lines(agg, s):
        say(line)
    os.makedirs(out, exist_ok=True)
    figs = {"mnist1d_curves.png": plot_curves(agg, s),
            "mnist1d_adjoint_norms.png": plot_norms(agg, s)}
    for name, fig in figs.items():
        save_figure(fig, os.path.join(out, name))
    md = ["# MNIST-1D (manualgrad run mnist1d)", "",
          "hidden %d, %s lr %g, batch %d, %d epochs, clip %s, coadjoint %s alpha %g; seeds %s."
          % (s["hidden"], s["optimizer"], s["lr"], s["batch_size"], s["epochs"], s["clip"],
             s["G"], s["alpha"], ",".join(map(str, s["seeds"]))), ""]
    md += table_lines(agg, s, markdown=True)
    with open(os.path.join(out, "mnist1d.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    summary = _record.new_record("mnist1d", dict(s, seed=None))
    summary.update(aggregate=True, cells=agg, paper=PAPER,
                   data={r["settings"]["variant"]: r["data"] for r in recs},
                   records=sorted(os.path.join(r["settings"]["variant"], "seed_%d" % r["seed"],
                                               "results.json") for r in recs))
    for variant, methods in agg.items():
        for method, cell in methods.items():
            label = "%s/%s" % (variant, method)
            rows = {}
            for key, c in cell["curves"].items():
                for e, v in zip(c["epoch"], c["mean"]):
                    rows.setdefault(e, {"epoch": e})[key] = v
            rows = [rows[e] for e in sorted(rows)]
            _record.add_run(summary, label, rows)
            summary["summary"][label] = {"test_acc": cell["test_acc"]["mean"],
                                         "test_acc_std": cell["test_acc"]["std"]}
    summary["wall_time_s"] = float(sum(r.get("wall_time_s", 0.0) for r in recs))
    summary["figures"] = list(figs)
    train.write_json(os.path.join(out, "summary.json"), summary)
    say("\nwrote %s: summary.json, mnist1d.md, %s" % (out, ", ".join(figs)))
    return summary


# ------------------------------------------------------------------------------ the experiment
def run(verbose=True, overwrite=False, **settings):
    """Run every variant, seed and method; returns the aggregate record (``summary.json``).

    Settings: see :data:`DEFAULTS`. Each variant and seed is written to
    ``out/<variant>/seed_<s>/results.json`` as soon as it is done; with ``resume`` those already
    there (with the same settings) are kept. ``overwrite``: replace records already in ``out``
    (else FileExistsError before training, unless ``resume``).
    """
    s = check_settings(**apply_quick(dict(settings), DEFAULTS, QUICK))
    paths = {(v, sd): os.path.join(v, "seed_%d" % sd, "results.json")
             for v in s["variants"] for sd in s["seeds"]}
    out = _record.prepare_out(s["out"], overwrite or s["resume"],
                              records=["summary.json"] + list(paths.values()))
    say = print if verbose else (lambda *a, **k: None)
    saved = {k: v for k, v in s.items() if k not in ("seeds", "seed", "variants", "resume")}
    say("MNIST-1D: variants %s, seeds %s, methods %s; hidden %d, softmax + cross-entropy on "
        "h_T; %s lr %g, batch %d, %d epochs, clip %s; coadjoint %s alpha %g; backend %s/%s"
        % (",".join(s["variants"]), ",".join(map(str, s["seeds"])), ",".join(s["methods"]),
           s["hidden"], s["optimizer"], s["lr"], s["batch_size"], s["epochs"], s["clip"],
           s["G"], s["alpha"], backend.get_backend(), backend.get_dtype().name))
    t0 = time.perf_counter()
    records = []
    datasets = {}
    for seed in s["seeds"]:            # seeds outer: both variants of a seed are done together
        for variant in s["variants"]:
            path = os.path.join(out, paths[variant, seed])
            want = _record.new_record("mnist1d", dict(saved, seed=seed, variant=variant))
            if s["resume"] and os.path.exists(path):
                rec = _record.load(path)
                if _settings_key(rec) != _settings_key(want) or rec["seed"] != seed:
                    raise ValueError("resume: %s was written with other settings; give another "
                                     "--out or --overwrite without --resume" % path)
                say("%s seed %d: kept %s" % (variant, seed, path))
                records.append(rec)
                continue
            if variant not in datasets:
                datasets[variant] = make_data(variant, s)
                info = datasets[variant][1]
                say("%s: %s; %d train / %d test, T=%d" % (variant, info["source"],
                                                          info["n_train"], info["n_test"],
                                                          info["T"]))
            ts = time.perf_counter()
            rec = want
            dataset, rec["data"] = datasets[variant]
            for method, res in train_seed(variant, seed, s, dataset,
                                          folder=os.path.dirname(path)).items():
                _record.add_run(rec, method, res["epochs"],
                                **{k: v for k, v in res.items() if k != "epochs"})
                fin = _final(res)
                rec["summary"][method] = {k: fin.get(k) for k in ("test_acc", "train_F",
                                                                  "lam1", "lamT")}
                if res["stopped"]:
                    say("  %s seed %d %s stopped: %s" % (variant, seed, method,
                                                         res["stopped"][:200]))
            _record.finish(rec, os.path.dirname(path), time.perf_counter() - ts)
            records.append(rec)
            say("%s seed %d (%.1f s): test acc %s" % (
                variant, seed, time.perf_counter() - ts, ", ".join(
                    "%s %.3f" % (m, r["test_acc"]) for m, r in rec["summary"].items()
                    if r["test_acc"] is not None)))
    summary = write_summary(out, records, settings=dict(saved, seeds=s["seeds"]),
                            verbose=verbose)
    summary["wall_time_s"] = time.perf_counter() - t0
    train.write_json(os.path.join(out, "summary.json"), summary)
    return summary
