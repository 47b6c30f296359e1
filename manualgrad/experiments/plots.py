"""Figures and printed tables that several experiments draw (shared; no experiment owns them).

- JP figures (ltg, imdb): :func:`plot_test_error` (Fig. 2/3 style test error against epoch) and
  :func:`plot_adjoint_norms` (||lambda_k|| against k and against epoch), colours
  :data:`JP_COLORS`.
- FW figures (fwseq, har): :func:`plot_curves` (FW Fig. 4 style), :func:`plot_seed_means`,
  :func:`plot_angles` (the FW-A5 diagnostic), colours :data:`FW_COLORS`; :func:`print_run` and
  :func:`write_outputs` (figures, ``history.csv`` and ``results.json`` of a run).
- :func:`save_figure`: save and close one figure.

Matplotlib is imported inside the functions, so importing an experiment needs no display.
"""
from __future__ import annotations

import math
import os

from .. import backend, train
from . import record as _record
from .methods import describe

__all__ = ["JP_COLORS", "FW_COLORS", "save_figure", "jp_label", "init_text", "plot_test_error",
           "plot_adjoint_norms", "plot_curves", "plot_seed_means", "plot_angles", "print_run",
           "write_outputs"]

JP_COLORS = {"adjoint": "tab:blue", "coadjoint": "tab:red", "lstm": "tab:green"}
"""JP Fig. 2 colours: adjoint blue, coadjoint red, LSTM green."""

FW_COLORS = {"fw1": "tab:red", "fw5": "darkred", "fw10": "salmon", "sgd": "tab:blue",
             "sgd_clip": "tab:cyan", "adam": "tab:green", "tbptt": "tab:orange",
             "tbptt_fw": "tab:purple", "lstm_adam": "olive", "lstm_fw": "tab:pink"}
"""Colours of the FW methods (:data:`manualgrad.experiments.methods.METHOD_SPECS`)."""


def save_figure(fig, path, dpi=110):
    """Save ``fig`` to ``path`` and close it; returns ``path``."""
    import matplotlib.pyplot as plt
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------ JP figures
def jp_label(method, s):
    """Legend text of a JP method (``G`` and ``alpha`` from the settings for the coadjoint)."""
    if method == "coadjoint":
        return "RNN coadjoint (%s, alpha=%g)" % (s["G"], s["alpha"])
    if method == "lstm":
        return "LSTM (adjoint)"
    return "RNN %s" % method


def init_text(s):
    """The initialisation of the settings (``scale``, ``bias_scale``) in a few characters."""
    w = "N(0,1/fan_in)" if s["scale"] is None else "N(0,%g^2)" % s["scale"]
    return "W~%s, b~N(0,%g^2)" % (w, s["bias_scale"]) if s["bias_scale"] else "W~%s, b=0" % w


def plot_test_error(runs, settings, ax=None, title=None):
    """Fig. 2 style: test classification error against epoch, one line per method."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.6))
    else:
        fig = ax.figure
    for res in runs:
        rows = [r for r in res["epochs"] if "test_error" in r]
        ax.plot([r["epoch"] for r in rows], [r["test_error"] for r in rows], marker="o", ms=3,
                lw=2, color=JP_COLORS.get(res["method"]),
                label=jp_label(res["method"], settings))
    ax.axhline(0.5, color="0.5", ls=":", lw=1, label="chance")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test classification error")
    ax.set_ylim(0, 0.65)
    ax.set_title(title or "LTG (T=%d, m=%d, %s): test error" % (
        settings["T"], settings["hidden"], init_text(settings)), fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def plot_adjoint_norms(runs, settings):
    """Two panels: ||lambda_k|| vs k (init, last epoch); ||lambda_1||, ||lambda_T|| vs epoch.

    Each run needs ``_norms`` ({epoch: :class:`~manualgrad.inspect.AdjointNorms`})."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    b.xaxis.set_major_locator(MaxNLocator(integer=True))
    first = True
    for res in runs:
        norms = res["_norms"]
        c = JP_COLORS.get(res["method"])
        if first:
            a.plot(norms[0].k, norms[0].mean, color="0.4", ls="--", lw=1.5, label="epoch 0 (init)")
            first = False
        last = max(norms)
        a.plot(norms[last].k, norms[last].mean, color=c, lw=2,
               label="%s, epoch %d" % (res["method"], last))
        rows = [r for r in res["epochs"] if "lam1" in r]
        ep = [r["epoch"] for r in rows]
        b.plot(ep, [r["lamT"] for r in rows], color=c, lw=2,
               label=r"%s $\|\lambda_T\|$" % res["method"])
        b.plot(ep, [r["lam1"] for r in rows], color=c, lw=2, ls="--",
               label=r"%s $\|\lambda_1\|$" % res["method"])
    for ax in (a, b):
        ax.set_yscale("log", nonpositive="mask")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    a.set_xlabel("step k")
    a.set_ylabel(r"mean $\|\lambda_k\|_2$ (test set)")
    b.set_xlabel("epoch")
    b.set_ylabel(r"mean $\|\lambda_k\|_2$ (test set)")
    a.set_title("adjoint norms against step", fontsize=9)
    b.set_title(r"$\|\lambda_1\|$ (input end) and $\|\lambda_T\|$ (output end)", fontsize=9)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ FW figures
def _metric_grid(n_rows, metrics):
    import matplotlib.pyplot as plt
    metrics = metrics or (("train_F", "training cross-entropy"), ("test_acc", "test accuracy"))
    fig, axes = plt.subplots(n_rows, len(metrics), squeeze=False,
                             figsize=(5.2 * len(metrics), 3.4 * n_rows + 0.6))
    return fig, axes, metrics


def _finish_grid(fig, axes, title, legend_size):
    axes[0][-1].legend(fontsize=legend_size, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_curves(groups, settings, title="", metrics=None):
    """FW Fig. 4 style: one row per group ``(name, runs)``, columns training loss and test
    accuracy against epoch, one line per method (colours :data:`FW_COLORS`)."""
    fig, axes, metrics = _metric_grid(len(groups), metrics)
    for (name, runs), row in zip(groups, axes):
        for (key, ylabel), ax in zip(metrics, row):
            for res in runs:
                pts = [(r["epoch"], r[key]) for r in res["epochs"]
                       if r.get(key) is not None and math.isfinite(r[key])]
                if pts:
                    ax.plot(*zip(*pts), lw=1.6, color=FW_COLORS.get(res["method"]),
                            label=describe(res["method"], settings))
            if key.endswith("_F"):
                _loss_ylim(ax, [[r.get(key) for r in res["epochs"]] for res in runs])
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.set_title(name, fontsize=9)
            ax.grid(True, alpha=0.3)
    return _finish_grid(fig, axes, title, 6)


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
    np = backend.np
    labels = list(records[0]["runs"])
    tasks = list(dict.fromkeys(lab.split("/")[0] for lab in labels))
    fig, axes, metrics = _metric_grid(len(tasks), metrics)
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
                c = FW_COLORS.get(method)
                ax.plot(epochs, m, lw=1.6, color=c, label="%s (%d seeds)" % (method, len(curves)))
                ax.fill_between(epochs, m - sd, m + sd, color=c, alpha=0.12)
                means.append(m.tolist())
            if key.endswith("_F"):
                _loss_ylim(ax, means)
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel + " (mean +- std)")
            ax.set_title(task, fontsize=9)
            ax.grid(True, alpha=0.3)
    return _finish_grid(fig, axes, title, 7)


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
            c = FW_COLORS.get(res["method"])
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
    """Print one FW run's per-epoch table with ``say`` (print, or a no-op)."""
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
    os.makedirs(out, exist_ok=True)
    figures = [save_figure(plot_curves(groups, settings, title=title, metrics=metrics),
                           os.path.join(out, "curves.png"))]
    if any(r.get("fw_angle_mean") is not None for _, runs in groups for res in runs
           for r in res["epochs"]):
        figures.append(save_figure(plot_angles(groups), os.path.join(out, "fw_angles.png")))
    csv = train.write_history_csv(os.path.join(out, "history.csv"), [
        dict({"run": "%s/%s" % (name, res["method"])}, **row)
        for name, runs in groups for res in runs for row in res["epochs"]])
    path = _record.finish(record, out, wall, figures=figures)
    say("\nwrote %s, %s, %s (%.1f s)" % (path, csv, ", ".join(figures), wall))
    return path
