"""Long Time Gap (JP Sec. IV-A, Fig. 2): one RNN trained by the adjoint and the coadjoint method.

Task (:func:`manualgrad.data.long_time_gap`): u_1..u_50 i.i.d. N(0, I_5), label 1^T u_4 > 0;
8000 examples, the **last 1600 are the test set, the first 6400 train**. The RNN (tanh hidden
units, sigmoid head, BCE) is initialised once from ``seed`` and each method trains a copy of
those parameters on the same minibatch order (also from ``seed``):

- ``adjoint``: the gradient of F (JP eqs. 9-13, :func:`manualgrad.rnn.loss_and_grad`);
- ``coadjoint``: the gradient of F + alpha G(lambda_1..lambda_T) (JP eq. 14 with the penalty
  ``G``, :func:`manualgrad.coadjoint.loss_and_grad`).

After every epoch (and at epoch 0, the initialisation) the test set is evaluated: BCE, the
classification error, the penalty G on the test adjoints and the mean over test examples of
||lambda_1|| and ||lambda_T||. ``manualgrad run ltg`` prints a per-epoch table per method and a
table of ||lambda_k|| against k, and writes to ``--out``: ``results.json`` (settings, versions,
per-epoch rows, ||lambda_k|| per epoch), ``history.csv`` (one row per method and epoch),
``test_error.png`` (Fig. 2 style) and ``adjoint_norms.png``.

The record is built and written with :mod:`manualgrad.experiments.record` (seed, versions,
backend, figures, one run per method); ``manualgrad report`` aggregates records over seeds.
``--quick`` applies :data:`QUICK` (about 20 s on 2 cores); the test suite runs :data:`TINY`.

From Python: ``run(method="all", epochs=20, ...)`` returns the record; :func:`train_method` trains
one method and is what ``manualgrad study ltg`` (:mod:`manualgrad.experiments.study`) calls in
its worker processes.

Shared parts: the gradient functions and optimizers come from
:mod:`manualgrad.experiments.methods`, the figures from :mod:`manualgrad.experiments.plots`, the
common options from :mod:`manualgrad.experiments.options`; training runs with ``blas_threads``
BLAS threads (default 1, :mod:`manualgrad.experiments.threads`). NumPy conversion happens here,
at the edge.
"""
from __future__ import annotations

import os
import time
import warnings

from .. import backend, coadjoint, data, inspect, rnn, train
from ..cells import lstm
from . import record as _record
from .methods import JP_METHODS, OPTIMIZERS, check_jp_settings, drain_mean, jp_grad_fn, \
    jp_model, make_optimizer, stop_reason
from .options import WarningLog, add_options, add_run_arguments, check_ltg_data, \
    check_run_settings, complete, run_state, selection, start_run
from .threads import blas_threads
from .plots import init_text, plot_adjoint_norms, plot_test_error, save_figure

__all__ = ["DEFAULTS", "QUICK", "TINY", "METHODS", "add_arguments", "run", "check_settings",
           "make_data", "train_method"]

METHODS = JP_METHODS
"""Methods that ``--method`` accepts (plus ``both`` = adjoint and coadjoint, ``all`` = the three,
as in JP Fig. 2). ``lstm`` trains an LSTM (:mod:`manualgrad.cells.lstm`, same hidden size, seed
and scale) by its BPTT, i.e. the adjoint method."""

DEFAULTS = dict(method="all", n=8000, n_test=1600, T=50, p=5, informative_step=4, hidden=32,
                epochs=20, batch_size=32, G="G23", alpha=0.1, optimizer="sgd", lr=None,
                scale=None, bias_scale=0.0, clip=None, seed=0, data_seed=1234, out="results/ltg",
                progress=True, blas_threads=1)
"""8000 examples as in JP; the last 1600 (20 %) are the test set, the first 6400 train.
``lr=None``: the optimizer's default (SGD 0.1, Adam 1e-3). ``scale=None``: weights
N(0, 1/fan_in); the JP authors' code used ``scale=1.0, bias_scale=1.0, hidden=10``."""

QUICK = dict(epochs=5)
"""``--quick``: the JP data set (8000 examples), 5 epochs of each method (about 20 s on 2 cores;
the defaults take about a minute)."""

TINY = dict(n=120, n_test=40, T=8, hidden=5, epochs=2)
"""The test suite's setting: a second or two."""


# ------------------------------------------------------------------------------ settings
def methods_of(method):
    """``"both"`` -> (adjoint, coadjoint); ``"all"`` -> all of :data:`METHODS`; a name -> (name,)."""
    return selection(method, METHODS, {"both": ("adjoint", "coadjoint"), "all": METHODS}, "method")


def check_settings(**settings):
    """Validate and complete the settings of the experiment (unknown keys: TypeError).

    Returns a new dict with every key of :data:`DEFAULTS`; ``lr`` filled in from the optimizer's
    default. Raises ValueError/TypeError naming the bad setting.
    """
    s = complete(settings, DEFAULTS, "LTG")
    methods_of(s["method"])
    check_ltg_data(s, min_T=2)  # the penalties compare at least two adjoints
    check_jp_settings(s)
    return check_run_settings(s)


def add_arguments(p):
    d = DEFAULTS
    p.add_argument("--method", default=d["method"], choices=METHODS + ("both", "all"),
                   help="which training method(s); 'both' trains each from the same init on the "
                        "same data (default %(default)s)")
    p.add_argument("--G", default=d["G"], choices=coadjoint.penalty_names(),
                   help="adjoint penalty of the coadjoint method: G20/G22/G23 are JP eqs. 20/22/"
                        "23, G23w the weighted variant, 'released' the authors' released code "
                        "(default %(default)s)")
    p.add_argument("--optimizer", default=d["optimizer"], choices=tuple(OPTIMIZERS),
                   help="default %(default)s")
    add_options(p, d, ("alpha", float, "weight of G in F + alpha G, >= 0"),
                ("lr", float, "learning rate (default: SGD 0.1, Adam 0.001)"),
                ("clip", float, "clip each minibatch gradient to this global norm (default: no "
                                "clipping)"),
                ("n", int, "examples in all"),
                ("n_test", int, "held-out test examples, the last ones"),
                ("T", int, "sequence length"),
                ("informative_step", int, "1-based step whose sum decides the label (JP: 4)"),
                ("hidden", int, "hidden size m (JP authors' code: 10)"),
                ("epochs", int, ""), ("batch_size", int, ""),
                ("scale", float, "std of every weight (JP authors' code: 1.0); default "
                                 "1/sqrt(fan_in)"),
                ("bias_scale", float, "std of the biases (JP authors' code: 1.0)"))
    add_run_arguments(p, d, QUICK)


# ------------------------------------------------------------------------------ the experiment
KW = dict(activation="tanh", output="sigmoid", loss="bce")
"""The RNN: tanh hidden units, sigmoid head, BCE (the LSTM: the same head and loss)."""


def make_data(settings):
    """``((u_train, y_train), (u_test, y_test))``: the LTG task, the last ``n_test`` held out."""
    s = settings
    u, y = data.long_time_gap(n=s["n"], T=s["T"], p=s["p"], informative_step=s["informative_step"],
                              seed=s["data_seed"])
    return data.split(u, y, s["n_test"])


def init_params(settings):
    """The initial parameters every method starts from (``seed``, ``scale``, ``bias_scale``)."""
    s = settings
    return rnn.init_params(s["p"], s["hidden"], 1, seed=s["seed"], scale=s["scale"],
                           bias_scale=s["bias_scale"])


def _norms(adj):
    """Per-step norms ||lambda_k|| (without underflow) as an :class:`inspect.AdjointNorms`."""
    per = backend.to_numpy(coadjoint.adjoint_norms_from_lam(adj.lam))
    return inspect.AdjointNorms(per, per.mean(axis=1), backend.np.arange(1, per.shape[0] + 1))


def train_method(method, settings, datasets=None, params=None, progress=None, keep_norms=True):
    """Train one method from the settings; returns a dict (plain Python, JSON-able).

    Keys: ``method``; ``epochs`` (rows: ``epoch``, ``train_F`` (batch-mean BCE over the epoch),
    ``train_G`` (coadjoint: mean penalty over the epoch), ``test_F``, ``test_error``, ``test_G``
    (G on the test adjoints, for either method), ``lam1``, ``lamT`` (means over the test
    examples of ||lambda_1||, ||lambda_T||), ``clip_fired`` when clipping); ``stopped`` (why
    training ended early, or ""); ``wall_time_s``; ``warnings`` ({category: {count, first}});
    ``adjoint_norms`` ({epoch: mean ||lambda_k||, k = 1..T}) if ``keep_norms``, and then also
    ``_norms`` ({epoch: :class:`~manualgrad.inspect.AdjointNorms`}, for the plots; not JSON-able).

    With ``settings["out"]`` a folder, the training state is kept in
    ``OUT/checkpoints/<method>.npz`` (:func:`~manualgrad.experiments.options.run_state`;
    ``resume`` takes it up), together with
    what the epochs accumulate on the side (penalty values, adjoint norms, warnings), so a
    resumed run returns the same dict.
    """
    s = check_settings(**settings)
    if method not in METHODS:
        raise ValueError("unknown method %r: valid are %s" % (method, ", ".join(METHODS)))
    (u_tr, y_tr), (u_te, y_te) = datasets if datasets is not None else make_data(s)
    if method == "lstm":  # its own parameters, drawn from the same seed and scale
        params = lstm.init_params(s["p"], s["hidden"], 1, seed=s["seed"], scale=s["scale"],
                                  bias_scale=s["bias_scale"])
    params = init_params(s) if params is None else params
    pen = coadjoint.get_penalty(s["G"])
    progress = s["progress"] if progress is None else progress
    norm_means = {}    # str(epoch) -> mean ||lambda_k||, k = 1..T (carried by the state)
    G_seen = []        # penalty values of this epoch's minibatches (coadjoint)
    failure = []       # a FloatingPointError raised by the coadjoint sweep
    log = WarningLog()

    model, kw = jp_model(method, KW)
    grad_fn = jp_grad_fn(method, KW, pen, s["alpha"], G_seen, failure)

    def evaluate(P):
        sw = model.sweep(P, u_te, y_te, **kw)
        nrm = _norms(sw.adj)
        if keep_norms:
            norm_means[str(len(norm_means))] = nrm.mean.tolist()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Gb = pen(sw.adj.lam, sw.adj.lam0)[0]
        row = {"test_F": float(sw.F), "test_error": train.classification_error(sw.traj.yhat, y_te),
               "test_G": float(Gb.mean()), "lam1": float(nrm.mean[0]),
               "lamT": float(nrm.mean[-1])}
        return drain_mean(row, "train_G", G_seen)

    state = run_state(s, s["out"], method, carry={"G_seen": G_seen, "failure": failure,
                                                   "norms": norm_means, "warnings": log.seen})
    with log, blas_threads(s["blas_threads"]):
        hist = train.fit(params, grad_fn, u_tr, y_tr, epochs=s["epochs"],
                         batch_size=s["batch_size"], optimizer=make_optimizer(s), seed=s["seed"],
                         evaluate=evaluate, progress=progress, desc=method, clip=s["clip"],
                         state=state)
    out = {"method": method, "epochs": hist.epochs, "stopped": stop_reason(hist.stopped, failure),
           "wall_time_s": hist.wall_time, "warnings": log.counts()}
    if keep_norms:
        k = backend.np.arange(1, s["T"] + 1)
        out["adjoint_norms"] = dict(norm_means)
        out["_norms"] = {int(e): inspect.AdjointNorms(None, backend.np.array(m), k)
                         for e, m in norm_means.items()}
    return out


def _fmt_row(r, with_G):
    ratio = r["lam1"] / r["lamT"] if r.get("lamT") else float("nan")
    G = ("%10.4g" % r["train_G"]) if "train_G" in r else "%10s" % "-"
    return "%5d %10s%s %10.4f %10.4f %12.3e %12.3e %12.3e" % (
        r["epoch"], ("%.4f" % r["train_F"]) if "train_F" in r else "-",
        (" " + G) if with_G else "", r["test_F"], r["test_error"], r["lam1"], r["lamT"], ratio)


def _table(res, say):
    with_G = res["method"] == "coadjoint"
    say("\n%s:" % res["method"])
    say("%5s %10s%s %10s %10s %12s %12s %12s" % (
        "epoch", "train F", (" %10s" % "train G") if with_G else "", "test F", "test err",
        "||lam_1||", "||lam_T||", "ratio"))
    for r in res["epochs"]:
        if "test_F" in r:
            say(_fmt_row(r, with_G))
    if res["stopped"]:
        say("stopped: " + res["stopped"])
    for name, w in res["warnings"].items():
        say("%s in %d steps; first: %s" % (name, w["count"], w["first"][:300]))


def run(verbose=True, overwrite=False, **settings):
    """Run the experiment; returns the results record (also written to ``out/results.json``).

    Settings: see :data:`DEFAULTS` (``method`` "adjoint", "coadjoint", "lstm", "both" or
    "all"). Every method starts from the same initial parameters and sees the same minibatches.
    ``overwrite``: replace a record already in ``out`` (else FileExistsError before training).
    """
    s, out, say = start_run(check_settings, settings, DEFAULTS, QUICK, overwrite, verbose)
    methods = methods_of(s["method"])
    datasets = make_data(s)
    say("Long Time Gap (JP Sec. IV-A): n=%d (train: first %d, test: last %d), T=%d, p=%d, label "
        "from u_%d; RNN m=%d tanh, sigmoid+BCE, init %s, seed %d; %s lr=%g, batch %d%s; "
        "methods: %s%s; backend %s/%s"
        % (s["n"], s["n"] - s["n_test"], s["n_test"], s["T"], s["p"], s["informative_step"],
           s["hidden"], init_text(s), s["seed"], s["optimizer"].upper(), s["lr"],
           s["batch_size"], ", clip %g" % s["clip"] if s["clip"] else "", ", ".join(methods),
           " (G=%s, alpha=%g)" % (s["G"], s["alpha"]) if "coadjoint" in methods else "",
           backend.get_backend(), backend.get_dtype().name))
    runs = []
    t0 = time.perf_counter()
    for method in methods:
        res = train_method(method, s, datasets=datasets, params=init_params(s))
        runs.append(res)
        _table(res, say)
    wall = time.perf_counter() - t0
    for res in runs:
        norms = res["_norms"]
        last = max(norms)
        say("\n%s: mean ||lambda_k|| over the test set, at initialisation and after epoch %d:"
            % (res["method"], last))
        say(inspect.norm_table([norms[0], norms[last]], labels=["epoch 0", "epoch %d" % last]))
    if len(runs) > 1:
        say("\nfinal test error: " + ", ".join("%s %.4f" % (r["method"], r["epochs"][-1].get(
            "test_error", float("nan"))) for r in runs))
    paths = {"results": os.path.join(out, "results.json"), "csv": os.path.join(out, "history.csv"),
             "test_error": save_figure(plot_test_error(runs, s),
                                       os.path.join(out, "test_error.png")),
             "adjoint_norms": save_figure(plot_adjoint_norms(runs, s),
                                          os.path.join(out, "adjoint_norms.png"), dpi=100)}
    record = _record.new_record("ltg", s)
    record["methods"] = list(methods)
    record["split"] = {"train": [0, s["n"] - s["n_test"]], "test": [s["n"] - s["n_test"], s["n"]],
                       "note": "examples [a, b): the first n - n_test train, the last n_test test"}
    for r in runs:
        _record.add_run(record, r["method"], r["epochs"],
                        **{k: v for k, v in r.items() if k not in ("_norms", "epochs")})
        last = r["epochs"][-1]
        record["summary"][r["method"]] = {k: last[k] for k in ("test_error", "test_F")
                                          if k in last}
    _record.finish(record, out, wall, figures=[paths["test_error"], paths["adjoint_norms"]])
    train.write_history_csv(paths["csv"], [dict({"method": r["method"]}, **row)
                                           for r in runs for row in r["epochs"]])
    say("\nwrote %s (%.1f s)" % (", ".join(paths.values()), wall))
    return record
