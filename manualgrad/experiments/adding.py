"""Adding task (FW Sec. V-A, Fig. 3): a vanilla RNN trained by Frank-Wolfe, SGD, Adam and TBPTT.

Task (:func:`manualgrad.data.adding.adding_task`, the urnn generator FW cites): T steps of
(value U(0,1), marker) pairs with one marker in each half; the target is the sum of the two
marked values. ``n_train`` training and ``n_test`` test sequences are drawn from ``data_seed``
(the test set from ``data_seed + 1``). The model is the vanilla RNN of :mod:`manualgrad.rnn`
(tanh, hidden size ``hidden``, identity head, squared error: the engine's "mse" loss is
F_b = 1/2 (yhat - y)^2, so ``train_F`` is half the training MSE). Every optimizer starts from
the same initial weights (``seed``) and sees the same minibatch order (also ``seed``):

- ``fw``: FW Algorithm 1 (:class:`manualgrad.optim.FrankWolfe`): K inner steps (LMO over the
  Lp ball of radius ``fw_delta``, per tensor or whole vector), outer update by Adam (the
  authors' setting, "Adam is used as the optimizer for all the methods") or by SGD;
- ``sgd``: plain SGD (``lr_sgd``);
- ``sgd_clip``: SGD with gradient clipping (``lr_sgd_clip``, global norm ``clip_sgd``; FW
  Table III's "SGD+Clipping"). ``clip`` clips every method's gradients on top;
- ``adam``: Adam (``lr_adam``);
- ``tbptt``: Adam on the TBPTT(k1, k2) gradient (:mod:`manualgrad.tbptt`; k1 defaults to
  ceil(T / 4), k2 to k1). The loss sits at T only, so with k2 < T/2 no gradient path reaches the
  first marker: what the recurrent weights learn there, they learn from the last window;
- ``tbptt_fw`` (not in ``all``): Frank-Wolfe on the TBPTT gradient.

The test MSE, mean over the test set of (yhat - y)^2, is evaluated at initialisation and after
every epoch (a pass over the training set, ``n_train / batch_size`` iterations); the figure
``test_mse.png`` plots it against the iteration (minibatch gradient evaluations), FW Fig. 3
style, with the trivial predictor's 1/6 as a dashed line. ``results.json`` (via
:mod:`manualgrad.experiments.record`) and ``history.csv`` hold every row; FW rows also carry the
FW-A5 angle between Delta_K and the negative gradient (mean and std per epoch).

``--quick`` applies :data:`QUICK`; the test suite runs :data:`TINY`. docs/adding.md has the
measured results over seeds and sequence lengths.
"""
from __future__ import annotations

import os
import time

from .. import backend, rnn, train
from ..data.adding import TRIVIAL_MSE, adding_task
from .. import tbptt
from ..optim.adam import Adam
from ..optim.sgd import SGD
from .._validate import number as _number
from . import record as _record
from .methods import add_iterations, frank_wolfe
from .options import FW_DEFAULTS, add_fw_arguments, add_options, add_run_arguments, \
    check_fw_settings, check_integers, check_run_settings, complete, run_state, selection, \
    start_run
from .plots import save_figure
from .threads import blas_threads

__all__ = ["DEFAULTS", "QUICK", "TINY", "METHODS", "ALL", "KW", "add_arguments",
           "check_settings", "make_data", "make_optimizer", "train_method", "plot_test_mse",
           "evaluate_mse", "run"]

METHODS = ("fw", "sgd", "sgd_clip", "adam", "tbptt", "tbptt_fw")
ALL = ("fw", "sgd", "sgd_clip", "adam", "tbptt")
"""``--optimizer all`` trains these five from the same initial weights."""

COLORS = {"fw": "tab:red", "sgd": "tab:blue", "sgd_clip": "tab:cyan", "adam": "tab:green",
          "tbptt": "tab:orange", "tbptt_fw": "tab:purple"}

KW = dict(activation="tanh", output="identity", loss="mse")
"""The model: tanh RNN, identity head, F_b = 1/2 (yhat - y)^2."""

DEFAULTS = dict(optimizer="all", T=100, n_train=10000, n_test=1000, hidden=64, batch_size=50,
                epochs=25, lr_sgd=0.01, lr_sgd_clip=0.1, clip_sgd=1.0, lr_adam=1e-3, clip=None,
                fw_eta=None, **FW_DEFAULTS, tbptt_k1=None, tbptt_k2=None, scale=None, seed=0,
                data_seed=1234, out="results/adding", progress=True, blas_threads=1)
"""``fw_eta=None``: the outer step's default, ``lr_adam`` for ``fw_outer="adam"`` (Adam's
learning rate) and 1.0 for ``"sgd"``. ``fw_decay``/``fw_decay_every``: eta and delta are
multiplied by fw_decay every fw_decay_every outer steps (1.0: no decay).
``tbptt_k1=None``: ceil(T / 4) (four windows, the last one possibly shorter);
``tbptt_k2=None``: k1. ``scale=None``: weights N(0, 1/fan_in).
The urnn generator's 10000 sequences (and its test set of one fifth, rounded to 1000); T = 100
is the shortest length of the urnn code's list (100, 200, 400, 750). Hidden size 64, half the
paper's 128, and 25 epochs (5000 iterations) keep ``manualgrad run adding`` under 10 minutes
on two CPU cores (docs/adding.md has the timing and m = 128 runs)."""

QUICK = dict(T=50, epochs=10)
"""``--quick``: T = 50 and 10 epochs (2000 iterations per optimizer), a minute or two."""

TINY = dict(T=10, n_train=64, n_test=32, hidden=8, batch_size=16, epochs=2, fw_K=2)
"""The test suite's setting: a few seconds."""


# ------------------------------------------------------------------------------ settings
def methods_of(optimizer):
    """``"all"`` -> :data:`ALL`; a name of :data:`METHODS` -> (name,)."""
    return selection(optimizer, METHODS, {"all": ALL}, "optimizer")


def check_settings(**settings):
    """Validate and complete the settings (unknown keys: TypeError); a new dict with every key of
    :data:`DEFAULTS`, ``fw_eta``, ``tbptt_k1`` and ``tbptt_k2`` filled in."""
    s = complete(settings, DEFAULTS, "adding")
    methods_of(s["optimizer"])
    check_integers(s, (("T", 2), ("n_train", 1), ("n_test", 1), ("hidden", 1),
                       ("batch_size", 1), ("epochs", 0), ("seed", 0), ("data_seed", 0)))
    for k in ("lr_sgd", "lr_sgd_clip", "clip_sgd", "lr_adam"):
        s[k] = _number(s[k], k, positive=True)
    s["fw_eta"] = _number(s["fw_eta"], "fw_eta", positive=True, allow_none=True)
    check_fw_settings(s)
    if s["fw_eta"] is None:
        s["fw_eta"] = s["lr_adam"] if s["fw_outer"] == "adam" else 1.0
    s["clip"] = _number(s["clip"], "clip", positive=True, allow_none=True)
    s["scale"] = _number(s["scale"], "scale", minimum=0.0, allow_none=True)
    s["tbptt_k1"] = -(-s["T"] // 4) if s["tbptt_k1"] is None else s["tbptt_k1"]
    s["tbptt_k2"] = s["tbptt_k1"] if s["tbptt_k2"] is None else s["tbptt_k2"]
    tbptt.windows(s["T"], s["tbptt_k1"], s["tbptt_k2"])               # k1, k2 checked here
    return check_run_settings(s)


def add_arguments(p):
    d = DEFAULTS
    p.add_argument("--optimizer", default=d["optimizer"], choices=METHODS + ("all",),
                   help="which optimizer(s); 'all' = %s from the same init (default "
                        "%%(default)s)" % ", ".join(ALL))
    add_options(p, d, ("T", int, "sequence length"), ("n_train", int, ""), ("n_test", int, ""),
                ("hidden", int, ""), ("batch_size", int, ""),
                ("epochs", int, "passes over the training set"), ("lr_sgd", float, ""),
                ("lr_sgd_clip", float, "learning rate of sgd_clip"),
                ("clip_sgd", float, "global-norm threshold of sgd_clip"),
                ("lr_adam", float, "Adam's learning rate (adam, tbptt)"),
                ("clip", float, "clip every method's minibatch gradients to this global norm "
                                "(default: none; a no-op for FW, whose LMO ignores the "
                                "gradient's scale)"),
                ("fw_eta", float, "FW outer step (default: lr-adam with the Adam outer update, "
                                  "1 with SGD)"),
                ("tbptt_k1", int, "TBPTT forward window (default ceil(T / 4))"),
                ("tbptt_k2", int, "TBPTT backward window >= k1 (default k1)"),
                ("scale", float, "std of every weight at init (default 1/sqrt(fan_in))"))
    add_fw_arguments(p, d)
    add_run_arguments(p, d, QUICK, seed="init and shuffling seed, shared by the optimizers")


# ------------------------------------------------------------------------------ the experiment
def make_data(settings):
    """``((u_train, y_train), (u_test, y_test))``: training data from ``data_seed``, test data
    from ``data_seed + 1``."""
    s = settings
    return (adding_task(s["n_train"], s["T"], seed=s["data_seed"]),
            adding_task(s["n_test"], s["T"], seed=s["data_seed"] + 1))


def make_optimizer(method, settings):
    """The optimizer object of ``method`` from the settings."""
    s = settings
    if method == "sgd":
        return SGD(s["lr_sgd"])
    if method == "sgd_clip":
        return SGD(s["lr_sgd_clip"])
    if method in ("adam", "tbptt"):
        return Adam(s["lr_adam"])
    return frank_wolfe(s, s["fw_eta"], s["fw_K"])


def evaluate_mse(params, u, y):
    """Mean over examples of (yhat - y)^2 (the usual MSE; the trivial predictor gets 1/6)."""
    yhat = rnn.forward(params, u, activation=KW["activation"], output=KW["output"]).yhat
    return float(((yhat - y) ** 2).mean())


def train_method(method, settings, datasets=None, progress=None):
    """Train one method; returns a JSON-able dict: ``method``, ``epochs`` (rows with ``epoch``,
    ``iteration``, ``train_F``, ``test_mse``, and for FW ``fw_angle_mean``, ``fw_angle_std``,
    ``fw_outer_steps``), ``stopped``, ``wall_time_s``, ``optimizer`` (its repr)."""
    s = check_settings(**settings)
    if method not in METHODS:
        raise ValueError("unknown method %r: valid are %s" % (method, ", ".join(METHODS)))
    (u_tr, y_tr), (u_te, y_te) = datasets if datasets is not None else make_data(s)
    params = rnn.init_params(2, s["hidden"], 1, seed=s["seed"], scale=s["scale"])
    if method.startswith("tbptt"):
        grad_fn = tbptt.grad_fn(s["tbptt_k1"], s["tbptt_k2"], **KW)
    else:
        def grad_fn(P, u, y):
            return rnn.loss_and_grad(P, u, y, **KW)
    opt = make_optimizer("fw" if method == "tbptt_fw" else method, s)
    progress = s["progress"] if progress is None else progress
    clip = s["clip"]
    if method == "sgd_clip":
        clip = s["clip_sgd"] if clip is None else min(clip, s["clip_sgd"])
    with blas_threads(s["blas_threads"]):
        hist = train.fit(params, grad_fn, u_tr, y_tr, epochs=s["epochs"],
                         batch_size=s["batch_size"], optimizer=opt, seed=s["seed"],
                         evaluate=lambda P: {"test_mse": evaluate_mse(P, u_te, y_te)},
                         progress=progress, desc=method, clip=clip,
                         state=run_state(s, s["out"], method))
    add_iterations(hist.epochs, s["n_train"], s["batch_size"], opt)
    return {"method": method, "epochs": hist.epochs, "stopped": hist.stopped,
            "wall_time_s": hist.wall_time, "optimizer": repr(opt)}


def _label(method, s):
    if method in ("fw", "tbptt_fw"):
        fw = "FW (K=%d, p=%g, %s, %s outer)" % (
            s["fw_K"], s["fw_p"], "per tensor" if s["fw_per_tensor"] else "whole vector",
            s["fw_outer"])
        return fw if method == "fw" else "TBPTT(%d,%d) + %s" % (s["tbptt_k1"], s["tbptt_k2"], fw)
    if method == "sgd":
        return "SGD (lr=%g)" % s["lr_sgd"]
    if method == "sgd_clip":
        return "SGD (lr=%g) + clipping at %g" % (s["lr_sgd_clip"], s["clip_sgd"])
    if method == "adam":
        return "Adam (lr=%g)" % s["lr_adam"]
    return "TBPTT(%d,%d) + Adam" % (s["tbptt_k1"], s["tbptt_k2"])


def plot_test_mse(runs, settings, ax=None, title=None):
    """FW Fig. 3 style: test MSE against iteration, one line per method, the 1/6 line dashed."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
    else:
        fig = ax.figure
    top = 1.5 * TRIVIAL_MSE       # the initial MSE (about 1) is left off the top of the axis
    for res in runs:
        rows = [r for r in res["epochs"] if r.get("test_mse") is not None]
        ys = [r["test_mse"] for r in rows]
        top = max([top] + [v for r, v in zip(rows, ys) if r["epoch"] > 0 and v == v])
        ax.plot([r["iteration"] for r in rows], ys, marker="o", ms=3, lw=2,
                color=COLORS.get(res["method"]), label=_label(res["method"], settings))
    ax.axhline(TRIVIAL_MSE, color="0.3", ls="--", lw=1, label="predict 1 (MSE 1/6)")
    ax.set_ylim(0, min(1.1 * top, 1.0))
    ax.set_xlabel("iteration (minibatch gradients)")
    ax.set_ylabel("test MSE")
    ax.set_title(title or "adding task, T=%d: vanilla RNN m=%d, batch %d, seed %d"
                 % (settings["T"], settings["hidden"], settings["batch_size"], settings["seed"]),
                 fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def run(verbose=True, overwrite=False, **settings):
    """Run the experiment; returns the results record (also written to ``out/results.json``).

    Settings: see :data:`DEFAULTS` (``quick=True`` applies :data:`QUICK` to the settings left
    at their defaults). Every method starts from the same weights and sees the same minibatches.
    ``overwrite``: replace a record already in ``out`` (else FileExistsError before training).
    """
    s, out, say = start_run(check_settings, settings, DEFAULTS, QUICK, overwrite, verbose)
    methods = methods_of(s["optimizer"])
    datasets = make_data(s)
    say("Adding task (FW Sec. V-A): T=%d, %d train / %d test sequences; RNN m=%d tanh, identity "
        "head, squared error; batch %d, %d epochs (%d iterations); seed %d, data seed %d; "
        "methods: %s; backend %s/%s"
        % (s["T"], s["n_train"], s["n_test"], s["hidden"], s["batch_size"], s["epochs"],
           s["epochs"] * -(-s["n_train"] // s["batch_size"]), s["seed"], s["data_seed"],
           ", ".join(_label(m, s) for m in methods), backend.get_backend(),
           backend.get_dtype().name))
    runs = []
    t0 = time.perf_counter()
    for method in methods:
        res = train_method(method, s, datasets=datasets)
        runs.append(res)
        say("\n%s:" % _label(method, s))
        say("%6s %9s %10s %10s%s" % ("epoch", "iteration", "train F", "test MSE",
                                      " %14s" % "angle (deg)" if "fw" in method else ""))
        for r in res["epochs"]:
            ang = ""
            if "fw_angle_mean" in r:
                ang = " %7.2f+-%5.2f" % (r["fw_angle_mean"], r["fw_angle_std"])
            say("%6d %9d %10s %10.4f%s" % (r["epoch"], r["iteration"],
                                           "%.4f" % r["train_F"] if "train_F" in r else "-",
                                           r.get("test_mse", float("nan")), ang))
        if res["stopped"]:
            say("stopped: " + res["stopped"])
    wall = time.perf_counter() - t0
    say("\nfinal test MSE (trivial predictor: %.4f): %s" % (TRIVIAL_MSE, ", ".join(
        "%s %.4f" % (r["method"], r["epochs"][-1].get("test_mse", float("nan"))) for r in runs)))

    paths = {"csv": os.path.join(out, "history.csv"),
             "test_mse": save_figure(plot_test_mse(runs, s), os.path.join(out, "test_mse.png"))}
    train.write_history_csv(paths["csv"], [dict({"method": r["method"]}, **row)
                                           for r in runs for row in r["epochs"]])
    record = _record.new_record("adding", s)
    record["trivial_mse"] = TRIVIAL_MSE
    for r in runs:
        _record.add_run(record, r["method"], r["epochs"], stopped=r["stopped"],
                        wall_time_s=r["wall_time_s"], optimizer=r["optimizer"],
                        description=_label(r["method"], s))
        last = r["epochs"][-1]
        record["summary"][r["method"]] = {"test_mse": last.get("test_mse"),
                                          "best_test_mse": min(
                                              (x["test_mse"] for x in r["epochs"]
                                               if x.get("test_mse") is not None),
                                              default=None)}
    path = _record.finish(record, out, wall, figures=[paths["test_mse"]])
    say("\nwrote %s, %s, %s (%.1f s)" % (path, paths["csv"], paths["test_mse"], wall))
    return record
