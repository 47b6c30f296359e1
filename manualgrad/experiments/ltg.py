"""Long Time Gap (JP Sec. IV-A): train the vanilla RNN with the adjoint method and watch ||lambda_k||.

``manualgrad run ltg`` trains with minibatch SGD on BCE (sigmoid head, tanh hidden units) and,
after every epoch, evaluates on the held-out test set: BCE, classification error, and the
adjoint norms ||lambda_k|| (JP eqs. 7-8) averaged over the test examples. It prints a per-epoch
table and a table of ||lambda_k|| against k, and writes ``results.json`` and
``adjoint_norms.png`` to the output folder. NumPy conversion happens here, at the edge.
"""
from __future__ import annotations

import functools
import json
import os
import platform
import sys
import time

from .. import __version__, backend, data, inspect, rnn, train
from ..optim.sgd import SGD

DEFAULTS = dict(n=8000, n_test=1600, T=50, p=5, informative_step=4, hidden=32, epochs=10,
                batch_size=32, lr=0.1, scale=None, seed=0, data_seed=1234, out="results/ltg",
                progress=True)
"""8000 examples as in JP; the last 1600 (20 %) are the test set, the first 6400 train."""


def add_arguments(p):
    d = DEFAULTS
    p.add_argument("--n", type=int, default=d["n"], help="examples in all (default %(default)s)")
    p.add_argument("--n-test", type=int, default=d["n_test"], help="held-out test examples")
    p.add_argument("--T", type=int, default=d["T"], help="sequence length (default %(default)s)")
    p.add_argument("--informative-step", type=int, default=d["informative_step"],
                   help="1-based step whose sum decides the label (JP: 4)")
    p.add_argument("--hidden", type=int, default=d["hidden"], help="hidden size m")
    p.add_argument("--epochs", type=int, default=d["epochs"])
    p.add_argument("--batch-size", type=int, default=d["batch_size"])
    p.add_argument("--lr", type=float, default=d["lr"], help="SGD learning rate")
    p.add_argument("--scale", type=float, default=d["scale"],
                   help="std of every weight (JP authors' code: 1.0); default 1/sqrt(fan_in)")
    p.add_argument("--seed", type=int, default=d["seed"], help="init and shuffling seed")
    p.add_argument("--data-seed", type=int, default=d["data_seed"])
    p.add_argument("--out", default=d["out"], help="output folder (default %(default)s)")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def _fmt_row(r):
    return "%5d %10s %10.4f %10.4f %12.3e %12.3e %12.3e" % (
        r["epoch"], ("%.4f" % r["train_F"]) if "train_F" in r else "-", r["test_F"],
        r["test_error"], r["lam1"], r["lamT"], r["lam1"] / r["lamT"] if r["lamT"] else float("nan"))


def run(n=8000, n_test=1600, T=50, p=5, informative_step=4, hidden=32, epochs=10, batch_size=32,
        lr=0.1, scale=None, seed=0, data_seed=1234, out="results/ltg", progress=True,
        verbose=True):
    """Run the experiment; returns the results record (also written to ``out/results.json``)."""
    say = print if verbose else (lambda *a, **k: None)
    u, y = data.long_time_gap(n=n, T=T, p=p, informative_step=informative_step, seed=data_seed)
    (u_tr, y_tr), (u_te, y_te) = data.split(u, y, n_test)
    params = rnn.init_params(p, hidden, 1, seed=seed, scale=scale)
    kw = dict(activation="tanh", output="sigmoid", loss="bce")
    norms_by_epoch = {}

    def evaluate(P):
        s = rnn.sweep(P, u_te, y_te, **kw)
        nrm = inspect.adjoint_norms(s.adj)
        norms_by_epoch[len(norms_by_epoch)] = nrm
        return {"test_F": float(s.F), "test_error": train.classification_error(s.traj.yhat, y_te),
                "lam1": float(nrm.mean[0]), "lamT": float(nrm.mean[-1])}

    say("Long Time Gap (JP Sec. IV-A): n=%d (train %d, test %d), T=%d, p=%d, label from u_%d; "
        "RNN m=%d tanh, sigmoid+BCE; SGD lr=%g, batch %d; backend %s/%s"
        % (n, n - n_test, n_test, T, p, informative_step, hidden, lr, batch_size,
           backend.get_backend(), backend.get_dtype().name))
    hist = train.fit(params, functools.partial(rnn.loss_and_grad, **kw), u_tr, y_tr,
                     epochs=epochs, batch_size=batch_size, optimizer=SGD(lr), seed=seed,
                     evaluate=evaluate, progress=progress, desc="ltg")
    say("\n%5s %10s %10s %10s %12s %12s %12s" % ("epoch", "train F", "test F", "test err",
                                                  "||lam_1||", "||lam_T||", "ratio"))
    for r in hist.epochs:
        if "test_F" in r:
            say(_fmt_row(r))
    if hist.stopped:
        say("stopped: " + hist.stopped)
    last = max(norms_by_epoch)
    say("\nmean ||lambda_k|| over the test set, at initialisation and after epoch %d:" % last)
    say(inspect.norm_table([norms_by_epoch[0], norms_by_epoch[last]],
                           labels=["epoch 0", "epoch %d" % last]))
    os.makedirs(out, exist_ok=True)
    shown = sorted({0, last // 2, last})
    fig = inspect.plot_adjoint_norms([norms_by_epoch[e] for e in shown],
                                     labels=["epoch %d" % e for e in shown],
                                     title="LTG: adjoint norms, adjoint-trained RNN")
    fig_path = os.path.join(out, "adjoint_norms.png")
    fig.savefig(fig_path, dpi=120)
    record = {
        "experiment": "ltg", "method": "adjoint",
        "settings": dict(n=n, n_test=n_test, T=T, p=p, informative_step=informative_step,
                         hidden=hidden, epochs=epochs, batch_size=batch_size, lr=lr, scale=scale,
                         seed=seed, data_seed=data_seed, optimizer="sgd"),
        "versions": {"manualgrad": __version__, "python": platform.python_version(),
                     "numpy": backend.np.__version__},
        "backend": backend.get_backend(), "dtype": backend.get_dtype().name,
        "epochs": hist.epochs, "stopped": hist.stopped, "wall_time_s": hist.wall_time,
        "adjoint_norms": {str(e): nrm.mean.tolist() for e, nrm in norms_by_epoch.items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "argv": sys.argv,
    }
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(record, f, indent=1)
    say("\nwrote %s and %s (%.1f s)" % (fig_path, os.path.join(out, "results.json"),
                                       hist.wall_time))
    return record
