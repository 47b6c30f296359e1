"""Adjoint norms ||dF/dh_k|| against k for every registered cell on the Long Time Gap task.

Every cell in ``cells`` (default: all of :func:`manualgrad.cells.names`) gets the
same LTG data (:func:`manualgrad.data.long_time_gap`; the last ``n_test`` examples are the test
set), the same hidden size m and the same init ``seed``, and is trained the same way (Adam,
gradient clipping by global norm, the same minibatch order). On the test set, at initialisation
and after training, the experiment records, per step k = 1..T::

    mean over test examples b of ||lambda_k^(b)||_2,     lambda_k = -dF_b/dh_k   (adj.lam[k-1])

the adjoint of the hidden state h_k in each cell's own backward recursion (the interface of
:mod:`manualgrad.cells`; norms computed without underflow by
:func:`coadjoint.adjoint_norms_from_lam`).
For cells with more state it also keeps the norms of the other state adjoints (the LSTM cell
state ``lam_c``, the momentum velocity ``lam_v``) in ``results.json``; the figure shows lambda.

What sets the decay of lambda_k towards k = 1 is the one-step backward map of each cell
(docs/norms.md): vanilla RNN lam_{k-1} = W_rec^T diag(sigma'(z_k)) lam_k; LSTM through the cell
state lam_c_{k-1} = f_k o cbar_k (a product of forget gates); IndRNN lam_{k-1} = w o sigma'(z_k)
o lam_k (elementwise); Momentum RNN (h, v) with lam_v_{k-1} = mu (lam_z_k + lam_v_k).

Per-cell options (:data:`CELL_OPTIONS`, overridden per cell by ``cell_options``) are routed by
name: those ``init_params`` accepts go to it, those ``sweep`` accepts go to every sweep (both
when both accept them, e.g. the Momentum RNN's ``activation``, ``mu``, ``s``).

``manualgrad run norms`` prints a table (cell x {init, trained} x k in {1, T/4, T/2, 3T/4, T},
the ratio ||lambda_1|| / ||lambda_T|| and the test error) and writes to ``--out``:
``results.json`` (settings, options, per-epoch rows, the mean norms for every k) and
``norms_ltg.png`` (two panels, init | trained, one log-scale curve per cell). docs/norms.md has
the default run. The record is built with :mod:`manualgrad.experiments.record` (one run per
cell); ``--quick`` applies :data:`QUICK`; the test suite runs :data:`TINY`.
"""
from __future__ import annotations

import copy
import functools
import json
import os
import time

from .. import backend, cells, data, train
from ..optim.adam import Adam
from .._validate import number as _number
from . import record as _record
from .methods import CELL_COLORS, CELL_OPTIONS as _CELL_OPTIONS, cell_metrics, \
    split_cell_options
from .options import add_options, add_run_arguments, check_ltg_data, check_run_settings, \
    complete, json_object, run_state, start_run
from .plots import save_figure
from .threads import blas_threads

__all__ = ["DEFAULTS", "QUICK", "TINY", "CELL_OPTIONS", "COLORS", "add_arguments", "check_settings", "run",
           "split_options", "measure", "train_cell", "report_steps", "format_table",
           "plot_norms"]

CELL_OPTIONS = _CELL_OPTIONS
"""Default options per cell name (:data:`manualgrad.experiments.methods.CELL_OPTIONS`, shared
with the mnist1d experiment): tanh for the vanilla RNN, relu for the IndRNN, mu = s = 0.6 for the
momentum cells."""

COLORS = CELL_COLORS

DEFAULTS = dict(cells=None, cell_options=None, n=2000, n_test=400, T=50, p=5,
                informative_step=4, hidden=32, epochs=5, batch_size=32, lr=1e-2, clip=5.0,
                seed=0, data_seed=1234, out="results/norms", progress=True, blas_threads=1)
"""``cells=None``: every registered cell, in registry order (a list, or a comma-separated str).
``cell_options``: {cell: {option: value}} merged over :data:`CELL_OPTIONS`. The last ``n_test``
of the ``n`` LTG examples are the test set. ``clip``: max global gradient norm (None: off)."""

QUICK = dict(epochs=2)
"""``--quick``: two epochs of every cell (a few seconds; the defaults take five epochs)."""

TINY = dict(n=64, n_test=16, T=8, hidden=4, epochs=1, batch_size=16)
"""The test suite's setting: every registered cell, a second."""

# ------------------------------------------------------------------------------ settings
def _cell_names(value):
    """The cells to compare: None -> all registered; a str "a,b" or a list of names."""
    if value is None:
        return tuple(cells.names())
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise TypeError("cells must be None, a comma-separated str or a list of cell names; "
                        "valid names are %s; got %r" % (", ".join(cells.names()), value))
    # "rnn,lstm" and ["rnn,lstm", "indrnn"] (what --cells gives) name several cells
    value = [x.strip() for v in value for x in (v.split(",") if isinstance(v, str) else [v])]
    value = [v for v in value if v != ""]
    out = []
    for name in value:
        cells.get(name)            # TypeError / ValueError listing the valid names
        if name in out:
            raise ValueError("cell %r is listed twice in cells" % (name,))
        out.append(name)
    if not out:
        raise ValueError("cells is empty: name at least one of %s" % ", ".join(cells.names()))
    return tuple(out)


def _options_of(names, user):
    """{cell: options}: :data:`CELL_OPTIONS` with the user's ``cell_options`` merged over them."""
    if user is None:
        user = {}
    if not hasattr(user, "items"):
        raise TypeError("cell_options must be a mapping {cell: {option: value}}, got %r"
                        % (user,))
    for name, opts in user.items():
        cells.get(name)            # an unknown cell: ValueError listing the valid names
        if not hasattr(opts, "items") or not all(isinstance(k, str) for k in opts):
            raise TypeError("cell_options[%r] must be a mapping {option: value}, got %r"
                            % (name, opts))
    return {name: dict(CELL_OPTIONS.get(name, {}), **dict(user.get(name, {}))) for name in names}


def split_options(name, options):
    """``(init_options, sweep_options)`` of cell ``name``
    (:func:`manualgrad.experiments.methods.split_cell_options`): each option goes to the
    function(s) that accept it by name; options the experiment sets itself or that neither
    accepts: ValueError."""
    return split_cell_options(name, options)


def check_settings(**settings):
    """Validate and complete the settings (unknown keys: TypeError); returns a new dict with every
    key of :data:`DEFAULTS`, ``cells`` a tuple of names and ``cell_options`` {cell: options} for
    exactly those cells. Unknown cell names: ValueError listing the registered ones."""
    s = complete(settings, DEFAULTS, "norms")
    s["cells"] = _cell_names(s["cells"])
    s["cell_options"] = _options_of(s["cells"], s["cell_options"])
    for name in s["cells"]:
        split_options(name, s["cell_options"][name])
    check_ltg_data(s, min_T=1)
    s["lr"] = _number(s["lr"], "lr", positive=True)
    s["clip"] = _number(s["clip"], "clip", positive=True, allow_none=True)
    return check_run_settings(s)



def add_arguments(p):
    d = DEFAULTS
    p.add_argument("--cells", nargs="+", default=d["cells"], metavar="CELL",
                   help="cells to compare, space- or comma-separated (default: every registered "
                        "cell: %s)" % ", ".join(cells.names()))
    p.add_argument("--cell-options", type=json_object, default=d["cell_options"],
                   metavar="JSON",
                   help="per-cell options merged over the defaults %s, e.g. "
                        "'{\"indrnn\": {\"activation\": \"tanh\"}, \"lstm\": {\"forget_bias\": 1}}'"
                        % json.dumps(CELL_OPTIONS).replace("%", "%%"))
    add_options(p, d, ("n", int, "examples in all"),
                ("n_test", int, "held-out test examples, the last ones"),
                ("T", int, "sequence length"), ("p", int, "input size"),
                ("informative_step", int, "1-based step whose sum decides the label"),
                ("hidden", int, "hidden size m of every cell"), ("epochs", int, ""),
                ("batch_size", int, ""), ("lr", float, "Adam learning rate"),
                ("clip", float, "clip each minibatch gradient to this global norm"))
    add_run_arguments(p, d, QUICK, seed="init and shuffling seed, the same for every cell")


# ------------------------------------------------------------------------------ measurement
def measure(name, params, u, y, sweep_options):
    """One sweep of cell ``name`` on (u, y): test loss, error and mean adjoint norms per step.

    Returns a dict: ``test_F``, ``test_error``, ``norms`` (T,) host array of mean ||lambda_k||,
    ``zero_frac`` (T,) the fraction of examples with lambda_k exactly 0 (a relu unit switched
    off on the way back cuts its path), ``extra`` {adjoint name: (T,) mean norms} for the other
    state adjoints (lam_c, lam_v). The shared :func:`~manualgrad.experiments.methods.cell_metrics`.
    """
    m = cell_metrics(name, params, u, y, **sweep_options)
    return {"test_F": m["F"], "test_error": m["error"], "norms": m["norms"],
            "zero_frac": m["zero_frac"], "extra": m["extra"]}


def _phase(m):
    n = m["norms"]
    return {"test_F": m["test_F"], "test_error": m["test_error"], "norms": n.tolist(),
            "ratio": float(n[0] / n[-1]) if n[-1] > 0 else float("nan"),
            "zero_frac": m["zero_frac"].tolist(),
            "extra": {k: v.tolist() for k, v in m["extra"].items()}}


def train_cell(name, settings, datasets, folder=None):
    """Initialise cell ``name`` from the settings, measure, train, measure; a JSON-able dict.

    Keys: ``cell``, ``options`` {init, sweep}, ``init`` and ``trained`` (each ``test_F``,
    ``test_error``, ``norms`` (mean ||lambda_k||, k = 1..T), ``ratio`` ||lambda_1||/||lambda_T||,
    ``zero_frac`` (per k), ``extra``), ``epochs`` (per-epoch rows: ``train_F``, ``test_F``,
    ``test_error``, ``lam1``, ``lamT``, ``clip_fired``), ``stopped``, ``wall_time_s``.
    ``folder``: the results folder, where the training state is kept (``--resume``), or None.
    """
    s = settings
    cell = cells.get(name)
    init_opts, sweep_opts = split_options(name, s["cell_options"][name])
    (u_tr, y_tr), (u_te, y_te) = datasets
    params = cell.init_params(s["p"], s["hidden"], 1, seed=s["seed"], **init_opts)
    start = measure(name, params, u_te, y_te, sweep_opts)

    calls = []

    def evaluate(P):      # fit calls it at epoch 0 (the init, already measured) and each epoch
        m = measure(name, P, u_te, y_te, sweep_opts) if calls else start
        calls.append(1)
        return {"test_F": m["test_F"], "test_error": m["test_error"],
                "lam1": float(m["norms"][0]), "lamT": float(m["norms"][-1])}

    grad_fn = functools.partial(cell.loss_and_grad, **sweep_opts)
    with blas_threads(s["blas_threads"]):
        hist = train.fit(params, grad_fn, u_tr, y_tr, epochs=s["epochs"],
                         batch_size=s["batch_size"], optimizer=Adam(s["lr"]), seed=s["seed"],
                         evaluate=evaluate, progress=s["progress"], desc=name, clip=s["clip"],
                         state=run_state(s, folder, name, carry={"calls": calls}))
        # hist.params: after the last finite step, also when training stopped early
        end = measure(name, hist.params, u_te, y_te, sweep_opts)
    return {"cell": name, "options": {"init": init_opts, "sweep": sweep_opts},
            "init": _phase(start), "trained": _phase(end), "epochs": hist.epochs,
            "stopped": hist.stopped, "wall_time_s": hist.wall_time}


# ------------------------------------------------------------------------------ report
def report_steps(T):
    """The steps of the table: 1, T/4, T/2, 3T/4, T (rounded down, at least 1, no repeats)."""
    return sorted({1, max(1, T // 4), max(1, T // 2), max(1, 3 * T // 4), T})


def format_table(runs, T, epochs):
    """Plain-text table: one row per cell and phase, mean ||lambda_k|| at :func:`report_steps`,
    the ratio ||lambda_1|| / ||lambda_T||, the fraction of examples with lambda_1 = 0 exactly
    and the test error."""
    steps = report_steps(T)
    head = "%-14s %-9s" % ("cell", "phase") + "".join(" %10s" % ("k=%d" % k) for k in steps) \
        + " %11s %6s %9s" % ("l1/lT", "l1=0", "test err")
    lines = [head, "-" * len(head)]
    for r in runs:
        for phase, label in (("init", "init"), ("trained", "ep %d" % epochs)):
            ph = r[phase]
            n = ph["norms"]
            lines.append("%-14s %-9s" % (r["cell"], label)
                         + "".join(" %10.3e" % n[k - 1] for k in steps)
                         + " %11.3e %6.3f %9.4f" % (ph["ratio"], ph["zero_frac"][0],
                                                     ph["test_error"]))
    return "\n".join(lines)


def _label(name, options):
    shown = ", ".join("%s=%s" % (k, v) for k, v in options.items())
    return "%s (%s)" % (name, shown) if shown else name


def plot_norms(runs, settings):
    """Two panels, initialisation | trained: mean ||lambda_k|| against k, log scale, one curve per
    cell, the y range shared; the legend gives each cell's ratio and test error."""
    import matplotlib.pyplot as plt

    s = settings
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), sharey=True)
    palette = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    colors = {r["cell"]: COLORS.get(r["cell"]) or next(palette) for r in runs}
    k = list(range(1, s["T"] + 1))
    for ax, phase, title in ((axes[0], "init", "at initialisation"),
                             (axes[1], "trained", "after %d epochs (Adam lr=%g%s)" % (
                                 s["epochs"], s["lr"],
                                 ", clip %g" % s["clip"] if s["clip"] else ""))):
        for r in runs:
            ph = r[phase]
            ax.plot(k, ph["norms"], lw=2, color=colors[r["cell"]],
                    label="%s: ratio %.2g, error %.2f" % (
                        _label(r["cell"], s["cell_options"][r["cell"]]), ph["ratio"],
                        ph["test_error"]))
        ax.axvline(s["informative_step"], color="0.5", ls=":", lw=1)
        ax.set_yscale("log", nonpositive="mask")
        ax.set_xlabel("step k (dotted: informative step %d)" % s["informative_step"])
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, title=r"ratio = $\|\lambda_1\| / \|\lambda_T\|$, test error",
                  title_fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                  frameon=False)
    axes[0].set_ylabel(r"mean $\|\lambda_k\|_2 = \|\partial F_b / \partial h_k\|$ (test set)")
    fig.suptitle("LTG (T=%d, m=%d, %d test examples): adjoint norms per cell"
                 % (s["T"], s["hidden"], s["n_test"]), fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ the experiment
def run(verbose=True, overwrite=False, **settings):
    """Run the comparison; returns the results record (also written to ``out/results.json``).

    Settings: see :data:`DEFAULTS`. Every cell sees the same data, the same hidden size, the same
    init seed and the same minibatch order. ``overwrite``: replace a record already in ``out``
    (else FileExistsError before training).
    """
    s, out, say = start_run(check_settings, settings, DEFAULTS, QUICK, overwrite, verbose)
    u, y = data.long_time_gap(n=s["n"], T=s["T"], p=s["p"], informative_step=s["informative_step"],
                              seed=s["data_seed"])
    datasets = data.split(u, y, s["n_test"])
    say("Adjoint norms on the Long Time Gap task: n=%d (train: first %d, test: last %d), T=%d, "
        "p=%d, label from u_%d; m=%d, sigmoid+BCE; Adam lr=%g, batch %d, %d epochs%s; seed %d; "
        "cells: %s; backend %s/%s"
        % (s["n"], s["n"] - s["n_test"], s["n_test"], s["T"], s["p"], s["informative_step"],
           s["hidden"], s["lr"], s["batch_size"], s["epochs"],
           ", clip %g" % s["clip"] if s["clip"] else "", s["seed"],
           ", ".join(_label(c, s["cell_options"][c]) for c in s["cells"]),
           backend.get_backend(), backend.get_dtype().name))
    runs = []
    t0 = time.perf_counter()
    for name in s["cells"]:
        r = train_cell(name, s, datasets, folder=out)
        runs.append(r)
        fired = sum(row.get("clip_fired", 0) for row in r["epochs"])
        say("%-14s %.1f s; test error %.4f -> %.4f%s%s"
            % (name, r["wall_time_s"], r["init"]["test_error"], r["trained"]["test_error"],
               "; clipping fired in %d steps" % fired if s["clip"] else "",
               "; stopped: " + r["stopped"] if r["stopped"] else ""))
    wall = time.perf_counter() - t0
    say("\nmean ||lambda_k|| = ||dF_b/dh_k|| over the %d test examples; l1/lT = "
        "||lambda_1|| / ||lambda_T||; l1=0: fraction of examples with lambda_1 = 0 exactly:"
        % s["n_test"])
    say(format_table(runs, s["T"], s["epochs"]))

    paths = {"results": os.path.join(out, "results.json"),
             "figure": save_figure(plot_norms(runs, s), os.path.join(out, "norms_ltg.png"),
                                   dpi=90)}
    saved = {k: copy.deepcopy(v) for k, v in s.items()
             if k not in ("progress", "out", "resume", "checkpoint_minutes")}
    saved["cells"] = list(s["cells"])
    record = _record.new_record("norms", saved)
    record.update({
        "cells": list(s["cells"]),
        "split": {"train": [0, s["n"] - s["n_test"]], "test": [s["n"] - s["n_test"], s["n"]],
                  "note": "examples [a, b): the first n - n_test train, the last n_test test"},
        "steps": report_steps(s["T"]),
        "norms_note": "norms[k-1] = mean over test examples of ||lambda_k||_2, lambda_k = "
                      "-dF_b/dh_k; extra: the other state adjoints (lam_c, lam_v) likewise"})
    for r in runs:
        _record.add_run(record, r["cell"], r["epochs"],
                        **{k: v for k, v in r.items() if k != "epochs"})
        record["summary"][r["cell"]] = {"test_error": r["trained"]["test_error"],
                                        "ratio": r["trained"]["ratio"]}
    _record.finish(record, out, wall, figures=[paths["figure"]])
    say("\nwrote %s (%.1f s)" % (", ".join(paths.values()), wall))
    return record
