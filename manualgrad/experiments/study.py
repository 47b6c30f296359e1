"""Studies: an experiment over seeds x settings, one task per run, on a Dask cluster.

``manualgrad study NAME`` (every registered experiment) runs NAME over a grid::

    manualgrad study adding --seeds 0-9 --grid hidden=32,64 --grid lr_adam=0.001,0.01 \\
        --set epochs=20 [--spec FILE] [--quick] [--scheduler local[:N] | tcp://HOST:PORT]

One task per (grid point, seed), each a complete ``manualgrad run NAME`` writing its record
into the study's results store (:mod:`manualgrad.experiments.store`): ``STUDY/runs/<id>/``,
keyed by experiment, settings, seed and code version. The tasks go to Dask's distributed
scheduler (:func:`connect`): ``local[:N]`` (the default) starts a ``LocalCluster`` of N worker
processes (default min(cores, tasks)) with one thread and one BLAS thread each; ``tcp://...``
uses a running cluster (``dask scheduler`` / ``dask worker``, dask-jobqueue, dask-kubernetes)
whose workers see the study folder (a shared file system); ``inline`` runs the tasks one after
the other in this process (no Dask). Every task runs with ``resume=True``: a task that was
running on a worker that died is taken up from its last training state by the worker Dask
hands it to next, and re-running a study skips finished runs and resumes unfinished ones. A
progress bar counts tasks; the summary at the end says how many were done, resumed, already
finished (skipped) and failed, with each failure's reason (``study.json``). docs/study.md.

``manualgrad study ltg`` without ``--grid``, ``--set`` or ``--spec`` runs the LTG *cell* study
(:func:`run_ltg_study`, below) on the same engine.

The LTG cell study trains the Long Time Gap RNN (:mod:`manualgrad.experiments.ltg`) with
both methods over a grid::

    method x seed x init scale x hidden size x penalty G x weight alpha x informative step

The adjoint method does not depend on G or alpha, so it runs once per (seed, scale, hidden).
Every (seed, scale, hidden) starts both methods from the same parameters and the same minibatch
order; the data (``data_seed``) are the same for every run. Each run is one task on the Dask
engine (``scheduler``, default ``local:<workers>``; ``workers=1`` runs them in this process),
with one BLAS thread each. A seed gives the same numbers whatever the number of workers. Each
run keeps its training state and its result in ``out/runs/<id>/`` (keyed like the store's runs:
settings, backend, code version), so a study run again reads finished runs back and resumes
unfinished ones.

A *cell* is one configuration (method, G, alpha, scale, hidden, step) over the seeds. For each cell
and epoch, the test error's mean, sample std (ddof=1; 0 for one seed), min and max over seeds;
the summary table gives the final error, the fraction of seeds that *learned* (final test error
< ``learned_below``, default 0.2) and the first epoch that reached it. A run stopped early
(non-finite loss) keeps its last evaluated error for the final-error statistics and is counted
in ``diverged``; its per-epoch statistics use the seeds still running (``n`` per epoch).

Writes to ``out``: ``study.json`` (settings, every run's per-epoch rows, the cells),
``study.csv`` (one row per cell and epoch), ``study_<G>.png`` (one panel per init scale and
hidden size: mean +- std bands of the test error against epoch, adjoint and coadjoint per alpha).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

from .. import __version__, backend, coadjoint, train
from .._validate import integer as _integer, number as _number
from . import ltg, store
from .methods import OPTIMIZERS
from .options import boolean
from .plots import JP_COLORS

__all__ = ["STUDIES", "LTG_DEFAULTS", "LTG_QUICK", "add_arguments", "run_ltg_study", "jobs_ltg",
           "aggregate", "parse_scale", "parse_seeds", "parse_grid", "study_tasks", "connect",
           "run_tasks", "run_task", "run_study", "add_study_arguments", "study_from_args",
           "GENERAL_ONLY"]

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

BAR_MININTERVAL = 0.5
"""The study's progress bar redraws at most every this many seconds; on close it leaves one
line (runs done, elapsed time, rate)."""

LTG_DEFAULTS = dict(seeds=(0, 1, 2, 3, 4), alphas=(0.01, 0.1, 1.0, 10.0), scales=("fan_in", "1"),
                    hidden=(10, 32), G=("G23",), bias_scale="match", informative_steps=(4,),
                    epochs=20, n=8000,
                    n_test=1600, T=50, batch_size=32, optimizer="sgd", lr=None, clip=None,
                    data_seed=1234, learned_below=0.2, workers=None, out="results/study_ltg",
                    progress=True, scheduler=None)
"""The full grid: 5 seeds x 4 alphas x 2 inits x 2 hidden sizes (100 runs per G)."""

LTG_QUICK = dict(seeds=(0, 1, 2), alphas=(0.1, 1.0), scales=("fan_in", "1"), hidden=(10, 32),
                 epochs=10)
"""``--quick``: 3 seeds x 2 alphas x 2 inits x m = 10, 32, G23, 10 epochs (36 runs; see
docs/ltg.md for the measured time, a few minutes on 2 cores)."""


def parse_scale(token):
    """Init-scale token: ``fan_in`` (``default``, None) -> None, std 1/sqrt(fan_in); a number -> std."""
    if token is None or (isinstance(token, str) and token.lower() in ("fan_in", "default", "none")):
        return None
    try:
        value = float(token)
    except (TypeError, ValueError):
        raise ValueError("init scale %r: expected 'fan_in' or a number >= 0" % (token,)) from None
    if not (math.isfinite(value) and value >= 0):
        raise ValueError("init scale must be 'fan_in' or a finite number >= 0, got %r" % (token,))
    return value


def _scale_name(scale):
    return "fan_in" if scale is None else "%g" % scale


def _bias_for(scale, bias_scale):
    """``match``: biases get the weights' std (0 for fan_in), as in the JP authors' N(0, 1) init."""
    if bias_scale == "match":
        return 0.0 if scale is None else scale
    return float(bias_scale)


def _check_study(s):
    """Validate the study settings (ValueError/TypeError with the setting's name)."""
    for key in ("seeds", "alphas", "scales", "hidden", "G", "informative_steps"):
        if isinstance(s[key], (str, int, float)):
            s[key] = (s[key],)
        s[key] = tuple(s[key])
        if not s[key]:
            raise ValueError("%s: give at least one value" % key)
    for seed in s["seeds"]:
        _integer(seed, "seed", 0)
    s["alphas"] = tuple(_number(a, "alpha", minimum=0.0) for a in s["alphas"])
    s["scales"] = tuple(parse_scale(x) for x in s["scales"])
    for m in s["hidden"]:
        _integer(m, "hidden", 1)
    for k in s["informative_steps"]:
        _integer(k, "informative_step", 1)
    if s["bias_scale"] != "match":
        s["bias_scale"] = _number(float(s["bias_scale"]) if isinstance(s["bias_scale"], str)
                                      else s["bias_scale"], "bias_scale", minimum=0.0)
    s["learned_below"] = _number(s["learned_below"], "learned_below", positive=True)
    if s["workers"] is not None:
        s["workers"] = _integer(s["workers"], "workers", 1)
    for key in ("seeds", "alphas", "scales", "hidden", "G", "informative_steps"):
        if len(set(s[key])) != len(s[key]):
            raise ValueError("%s: repeated values %s" % (key, list(s[key])))
    return s


def jobs_ltg(s):
    """The runs of the grid as a list of complete LTG settings (with ``method``)."""
    base = {k: s[k] for k in ("epochs", "n", "n_test", "T", "batch_size", "optimizer", "lr",
                              "clip", "data_seed")}
    jobs = []
    for step in s["informative_steps"]:
        for m in s["hidden"]:
            for scale in s["scales"]:
                for seed in s["seeds"]:
                    common = dict(base, hidden=m, scale=scale, seed=seed, informative_step=step,
                                  bias_scale=_bias_for(scale, s["bias_scale"]), progress=False,
                                  blas_threads=1, out="-")
                    jobs.append(ltg.check_settings(method="adjoint", G=s["G"][0], alpha=0.0,
                                                   **common))
                    for G in s["G"]:
                        for alpha in s["alphas"]:
                            jobs.append(ltg.check_settings(method="coadjoint", G=G, alpha=alpha,
                                                           **common))
    return jobs


def _cell_key(job):
    """(method, G, alpha, scale, hidden, informative_step): G, alpha None for the adjoint method."""
    co = job["method"] == "coadjoint"
    return (job["method"], job["G"] if co else None, job["alpha"] if co else None,
            job["scale"], job["hidden"], job["informative_step"])


def _job(args):
    """Worker: one training run. Returns a plain dict (pickled back to the parent).

    ``args``: ``(index, job, backend, dtype[, folder])``. With a folder (the study's store), the
    run keeps its training state there (and takes it up: ``resume``), writes its result to
    ``folder/result.json`` and, when that file is already there, only reads it back."""
    index, job, backend_name, dtype = args[:4]
    folder = args[4] if len(args) > 4 else None
    if backend.get_backend() != backend_name or backend.get_dtype().name != dtype:
        backend.set_backend(backend_name, dtype=dtype)
    path = None if folder is None else os.path.join(folder, "result.json")
    if path is not None and os.path.exists(path):
        with open(path) as f:
            res = json.load(f)          # NaN and Infinity as Python writes them
        res["index"] = index
        return res
    t0 = time.perf_counter()
    if folder is not None:
        os.makedirs(folder, exist_ok=True)
        job = dict(job, out=folder, resume=True)
    res = ltg.train_method(job["method"], job, progress=False, keep_norms=False)
    res["index"] = index
    res["job"] = {k: v for k, v in job.items() if k not in ("progress", "out", "resume")}
    res["job_wall_s"] = time.perf_counter() - t0
    res["pid"] = os.getpid()
    if path is not None:
        import shutil
        tmp = path + ".tmp-%d" % os.getpid()
        with open(tmp, "w") as f:
            json.dump(res, f)
        os.replace(tmp, path)
        shutil.rmtree(os.path.join(folder, "checkpoints"), ignore_errors=True)
    return res


def _final_error(rows):
    """The last evaluated test error of a run (carried forward over a NaN stop)."""
    vals = [r["test_error"] for r in rows if r.get("test_error") is not None]
    return vals[-1] if vals else float("nan")


def _stats(values):
    vals = [v for v in values if v is not None and math.isfinite(v)]
    n = len(vals)
    if not n:
        return {"n": 0, "mean": float("nan"), "std": float("nan"), "min": float("nan"),
                "max": float("nan")}
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
    return {"n": n, "mean": mean, "std": std, "min": min(vals), "max": max(vals)}


def _median(vals):
    vals = sorted(vals)
    if not vals:
        return None
    k = len(vals) // 2
    return vals[k] if len(vals) % 2 else 0.5 * (vals[k - 1] + vals[k])


def aggregate(results, epochs, learned_below=0.2):
    """Cells from run results: per-epoch test-error statistics and the final-error summary."""
    cells = {}
    for res in sorted(results, key=lambda r: r["index"]):
        cells.setdefault(_cell_key(res["job"]), []).append(res)
    out = []
    for key, runs in cells.items():
        method, G, alpha, scale, hidden, step = key
        per_epoch = []
        for e in range(epochs + 1):
            vals = []
            for r in runs:
                row = r["epochs"][e] if e < len(r["epochs"]) else {}
                vals.append(row.get("test_error"))
            st = _stats(vals)
            st["epoch"] = e
            per_epoch.append(st)
        finals = [_final_error(r["epochs"]) for r in runs]
        learned = [f < learned_below for f in finals]
        first = []
        for r in runs:
            hit = [row["epoch"] for row in r["epochs"]
                   if row.get("test_error") is not None and row["test_error"] < learned_below]
            if hit:
                first.append(hit[0])
        last_rows = [[row for row in r["epochs"] if "lam1" in row][-1] for r in runs]
        out.append({
            "method": method, "G": G, "alpha": alpha, "scale": _scale_name(scale),
            "bias_scale": runs[0]["job"]["bias_scale"], "hidden": hidden,
            "informative_step": step, "gap": runs[0]["job"]["T"] - step,
            "seeds": [r["job"]["seed"] for r in runs],
            "final_error": _stats(finals), "final_errors": finals,
            "best_error": _stats([min((row["test_error"] for row in r["epochs"]
                                       if row.get("test_error") is not None), default=None)
                                  for r in runs]),
            "learned": sum(learned), "runs": len(runs), "learned_below": learned_below,
            "first_learned_epoch_median": _median(first),
            "diverged": sum(bool(r["stopped"]) for r in runs),
            "final_lam1_median": _median([row["lam1"] for row in last_rows]),
            "final_lamT_median": _median([row["lamT"] for row in last_rows]),
            "test_error": per_epoch,
            "wall_time_s_mean": sum(r["job_wall_s"] for r in runs) / len(runs),
        })
    return out


def _cell_label(c):
    if c["method"] == "coadjoint":
        return "coadjoint %s a=%g" % (c["G"], c["alpha"])
    return c["method"]


def summary_table(cells):
    """The printed summary: final test error mean +- std over seeds, learned fraction, norms."""
    head = "%-26s %-7s %4s %4s %16s %6s %6s %8s %6s %4s %10s %10s" % (
        "configuration", "init", "m", "gap", "final err", "min", "max", "learned", "epoch", "div",
        "||lam_1||", "||lam_T||")
    lines = [head, "-" * len(head)]
    for c in cells:
        f = c["final_error"]
        lines.append("%-26s %-7s %4d %4d %8.3f +- %5.3f %6.3f %6.3f %5d/%-2d %6s %4d %10.2e %10.2e"
                     % (_cell_label(c), c["scale"], c["hidden"], c["gap"], f["mean"], f["std"],
                        f["min"], f["max"], c["learned"], c["runs"],
                        "-" if c["first_learned_epoch_median"] is None
                        else "%g" % c["first_learned_epoch_median"], c["diverged"],
                        c["final_lam1_median"], c["final_lamT_median"]))
    return "\n".join(lines)


def plot_cells(cells, G, title=""):
    """Panels (gap, hidden) x scale: mean +- std test error against epoch, a line per method/alpha."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    mine = [c for c in cells if c["method"] != "coadjoint" or c["G"] == G]
    hiddens = sorted({(-c["gap"], c["hidden"]) for c in mine})
    scales = []
    for c in mine:
        if c["scale"] not in scales:
            scales.append(c["scale"])
    alphas = sorted({c["alpha"] for c in mine if c["method"] == "coadjoint"})
    reds = plt.get_cmap("Reds")
    fig, axes = plt.subplots(len(hiddens), len(scales), figsize=(4.6 * len(scales),
                                                                 3.2 * len(hiddens)),
                             squeeze=False, sharey=True)
    for i, m in enumerate(hiddens):
        for j, sc in enumerate(scales):
            ax = axes[i][j]
            for c in mine:
                if (-c["gap"], c["hidden"]) != m or c["scale"] != sc:
                    continue
                ep = [r["epoch"] for r in c["test_error"]]
                mu = [r["mean"] for r in c["test_error"]]
                sd = [r["std"] for r in c["test_error"]]
                if c["method"] == "coadjoint":
                    k = alphas.index(c["alpha"])
                    color = reds(0.45 + 0.55 * k / max(len(alphas) - 1, 1))
                else:
                    color = JP_COLORS.get(c["method"], "k")
                ax.plot(ep, mu, color=color, lw=1.8, label="%s (%d/%d learned)"
                        % (_cell_label(c), c["learned"], c["runs"]))
                ax.fill_between(ep, [a - b for a, b in zip(mu, sd)],
                                [a + b for a, b in zip(mu, sd)], color=color, alpha=0.15, lw=0)
            ax.axhline(0.5, color="0.5", ls=":", lw=1)
            ax.set_ylim(0, 0.65)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            bias = [c["bias_scale"] for c in mine
                    if (-c["gap"], c["hidden"]) == m and c["scale"] == sc]
            ax.set_title("gap %d, m=%d, W std %s, b std %g" % (
                -m[0], m[1], "1/sqrt(fan_in)" if sc == "fan_in" else sc, bias[0] if bias else 0),
                fontsize=9)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=6.5, loc="lower left")
            if i == len(hiddens) - 1:
                ax.set_xlabel("epoch")
            if j == 0:
                ax.set_ylabel("test error (mean +- std)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def add_arguments(p):
    d = LTG_DEFAULTS
    p.add_argument("--quick", action="store_true",
                   help="the quick grid: seeds 0 1 2, alphas 0.1 1, scales fan_in 1, hidden 10 32, "
                        "10 epochs (explicit options override it)")
    p.add_argument("--seeds", type=parse_seeds, nargs="+", default=None,
                   help="init/shuffle seeds (default %s)" % " ".join(map(str, d["seeds"])))
    p.add_argument("--alphas", type=float, nargs="+", default=None,
                   help="penalty weights (default %s)" % " ".join("%g" % a for a in d["alphas"]))
    p.add_argument("--scales", nargs="+", default=None,
                   help="init weight stds: 'fan_in' (1/sqrt(fan_in)) or numbers (default %s)"
                        % " ".join(d["scales"]))
    p.add_argument("--bias-scale", default=None,
                   help="bias std: a number, or 'match' (= the weight std, 0 for fan_in; "
                        "default match, so scale 1 is the JP authors' N(0, 1) init)")
    p.add_argument("--hidden", type=int, nargs="+", default=None,
                   help="hidden sizes (default %s)" % " ".join(map(str, d["hidden"])))
    p.add_argument("--informative-steps", type=int, nargs="+", default=None,
                   help="1-based steps whose sum decides the label (JP: 4, i.e. gap T - 4 = 46; "
                        "default 4)")
    p.add_argument("--G", nargs="+", default=None, choices=coadjoint.penalty_names(),
                   help="penalties (default %s)" % " ".join(d["G"]))
    p.add_argument("--epochs", type=int, default=None, help="default %d" % d["epochs"])
    p.add_argument("--optimizer", default=None, choices=tuple(OPTIMIZERS),
                   help="default sgd")
    p.add_argument("--lr", type=float, default=None, help="default: SGD 0.1, Adam 0.001")
    p.add_argument("--clip", type=float, default=None, help="default: no clipping")
    p.add_argument("--n", type=int, default=None, help="examples (default 8000)")
    p.add_argument("--n-test", type=int, default=None,
                   help="test examples, the last ones (default 1600)")
    p.add_argument("--T", type=int, default=None, help="sequence length (default 50)")
    p.add_argument("--batch-size", type=int, default=None, help="default 32")
    p.add_argument("--data-seed", type=int, default=None, help="default 1234")
    p.add_argument("--learned-below", type=float, default=None,
                   help="a run learned if its final test error is below this (default 0.2)")
    p.add_argument("--workers", type=int, default=None,
                   help="local Dask worker processes (default min(cores, runs)); 1 runs in "
                        "this process")
    p.add_argument("--scheduler", default=None,
                   help="local[:N] (a LocalCluster of N processes; default local:<workers>), "
                        "tcp://HOST:PORT (a running Dask cluster) or inline")
    p.add_argument("--out", default=None, help="output folder (default %s)" % d["out"])
    p.add_argument("--no-progress", dest="progress", action="store_false", default=True)


def settings_from_args(ns):
    """Study settings from parsed arguments: defaults, then ``--quick``, then explicit options."""
    s = dict(LTG_DEFAULTS)
    if ns.quick:
        s.update(LTG_QUICK)
        s["out"] = "results/study_ltg_quick"
    for k in LTG_DEFAULTS:
        v = getattr(ns, k, None)
        if v is not None and k != "progress":
            s[k] = v
    if ns.seeds is not None:     # each --seeds token may be a range: 0-4 or 0,2,5
        s["seeds"] = tuple(x for part in ns.seeds for x in part)
    s["progress"] = ns.progress
    return s


def run_ltg_study(verbose=True, **settings):
    """Run the LTG grid; returns the study record (also written to ``out/study.json``)."""
    unknown = sorted(set(settings) - set(LTG_DEFAULTS))
    if unknown:
        raise TypeError("unknown study setting(s) %s; valid are %s"
                        % (", ".join(unknown), ", ".join(LTG_DEFAULTS)))
    s = _check_study(dict(LTG_DEFAULTS, **settings))
    say = print if verbose else (lambda *a, **k: None)
    jobs = jobs_ltg(s)
    cores = os.cpu_count() or 1
    workers = s["workers"] or min(cores, len(jobs))
    workers = max(1, min(workers, len(jobs)))
    say("LTG study: %d runs (seeds %s; alphas %s; G %s; init scales %s, bias %s; hidden %s; "
        "label from u_%s of T=%d; %d epochs, n=%d (test: last %d), %s lr=%s%s) on %d worker(s), "
        "%d core(s)"
        % (len(jobs), list(s["seeds"]), list(s["alphas"]), list(s["G"]),
           [_scale_name(x) for x in s["scales"]], s["bias_scale"], list(s["hidden"]),
           "/".join(map(str, s["informative_steps"])), s["T"], s["epochs"], s["n"], s["n_test"],
           s["optimizer"], jobs[0]["lr"], ", clip %g" % s["clip"] if s["clip"] else "", workers,
           cores))
    code = store.code_version()
    args = [(i, job, backend.get_backend(), backend.get_dtype().name,
             os.path.join(s["out"], "runs", store.task_id(store.task_key(
                 "ltg", dict(job, backend=backend.get_backend(),
                             dtype=backend.get_dtype().name), code))))
            for i, job in enumerate(jobs)]
    done = sum(os.path.exists(os.path.join(a[4], "result.json")) for a in args)
    if done:
        say("LTG study: %d of %d runs already in %s/runs (read back, not trained again)"
            % (done, len(args), s["out"]))
    # longest first (coadjoint, wide) for a balanced pool; the results are re-sorted by index
    args.sort(key=lambda a: (a[1]["method"] != "coadjoint", -a[1]["hidden"], a[0]))
    t0 = time.perf_counter()
    if workers == 1 and s["scheduler"] is None:
        scheduler = "inline"
    else:
        scheduler = s["scheduler"] or "local:%d" % workers
    outcome = run_tasks(_job, args, scheduler=scheduler, progress=s["progress"],
                        desc="ltg study", names=["ltg-job-%d" % a[0] for a in args])
    if outcome["failed"]:
        raise RuntimeError("LTG study: %d run(s) failed: %s" % (len(outcome["failed"]), "; ".join(
            "%s: %s" % kv for kv in list(outcome["failed"].items())[:5])))
    results = list(outcome["results"].values())
    wall = time.perf_counter() - t0
    results.sort(key=lambda r: r["index"])
    cells = aggregate(results, s["epochs"], s["learned_below"])
    say("\n" + summary_table(cells))
    cpu = sum(r["job_wall_s"] for r in results)
    say("\n%d runs in %.1f s wall on %d worker(s) (sum of run times %.1f s); final error = test "
        "error after epoch %d, mean +- sample std over seeds; learned = final error < %g; epoch = "
        "median first epoch below it; div = runs stopped on a non-finite loss"
        % (len(results), wall, workers, cpu, s["epochs"], s["learned_below"]))
    out = s["out"]
    os.makedirs(out, exist_ok=True)
    saved_settings = {k: v for k, v in s.items() if k not in ("progress", "out")}
    saved_settings["scales"] = [_scale_name(x) for x in s["scales"]]
    record = {
        "study": "ltg", "settings": saved_settings, "workers": workers, "cores": cores,
        "wall_time_s": wall, "sum_run_time_s": cpu,
        "split": {"train": [0, s["n"] - s["n_test"]], "test": [s["n"] - s["n_test"], s["n"]]},
        "versions": {"manualgrad": __version__, "python": platform.python_version(),
                     "numpy": backend.np.__version__},
        "backend": backend.get_backend(), "dtype": backend.get_dtype().name,
        "cells": cells,
        "runs": [{k: r[k] for k in ("job", "epochs", "stopped", "warnings", "job_wall_s")}
                 for r in results],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "argv": sys.argv,
    }
    paths = [train.write_json(os.path.join(out, "study.json"), record)]
    rows = []
    for c in cells:
        for r in c["test_error"]:
            rows.append({"method": c["method"], "G": c["G"] or "", "alpha": c["alpha"],
                         "scale": c["scale"], "bias_scale": c["bias_scale"],
                         "hidden": c["hidden"], "informative_step": c["informative_step"],
                         "epoch": r["epoch"], "n_seeds": r["n"],
                         "test_error_mean": r["mean"], "test_error_std": r["std"],
                         "test_error_min": r["min"], "test_error_max": r["max"]})
    paths.append(train.write_history_csv(os.path.join(out, "study.csv"), rows))
    import matplotlib.pyplot as plt
    for G in s["G"]:
        fig = plot_cells(cells, G, "LTG study, %s, %s, %d seeds: test error mean +- std"
                         % (G, s["optimizer"], len(s["seeds"])))
        path = os.path.join(out, "study_%s.png" % G)
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    say("wrote %s" % ", ".join(paths))
    return record


# ------------------------------------------------------------------------------ the engine
def _dask():
    """``dask.distributed``, or RuntimeError saying how to install it."""
    try:
        import dask
        import distributed
    except ImportError as exc:
        raise RuntimeError("studies run on Dask's distributed scheduler, which is not installed "
                           "(%s): pip install 'manualgrad[study]' (or 'dask[distributed]'), or "
                           "give --scheduler inline to run the tasks in this process" % exc) \
            from None
    return dask, distributed


ALLOWED_FAILURES = 10
"""How many workers may die while running one task before Dask gives it up (a task resumes
from its training state each time, so a retry loses at most the minutes since the last one)."""


def connect(scheduler, n_tasks=None):
    """``(client, cluster)`` for ``scheduler``: ``local`` or ``local:N`` starts a LocalCluster of
    N worker processes (default min(cores, n_tasks)), one thread each and one BLAS thread
    (``OMP_NUM_THREADS=1`` etc. in the workers' environment); ``tcp://HOST:PORT`` (any Dask
    address) connects to a running scheduler (``cluster`` is None). Close both when done."""
    dask, distributed = _dask()
    if not isinstance(scheduler, str) or not scheduler:
        raise ValueError("scheduler must be local, local:N, inline or a Dask address "
                         "(tcp://HOST:PORT), got %r" % (scheduler,))
    if "://" in scheduler:
        return distributed.Client(scheduler, timeout="30s"), None
    name, _, count = scheduler.partition(":")
    if name != "local":
        raise ValueError("unknown scheduler %r: give local, local:N, inline or tcp://HOST:PORT"
                         % scheduler)
    if count:
        try:
            n = int(count)
        except ValueError:
            raise ValueError("scheduler %r: N in local:N must be an integer >= 1" % scheduler) \
                from None
        if n < 1:
            raise ValueError("scheduler %r: N in local:N must be >= 1" % scheduler)
    else:
        n = max(1, min(os.cpu_count() or 1, n_tasks or 1))
    import logging
    dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
                     "distributed.worker.daemon": False})
    cluster = distributed.LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
        silence_logs=logging.CRITICAL, env={k: "1" for k in THREAD_VARS})   # ":0": a free port
    return distributed.Client(cluster), cluster


def _call(fn, payload, backend_name, dtype):
    """What a worker runs: ``fn(payload)`` on the study's backend and dtype."""
    if backend.get_backend() != backend_name or backend.get_dtype().name != dtype:
        backend.set_backend(backend_name, dtype=dtype)
    return fn(payload)


def run_tasks(fn, payloads, scheduler="local", progress=True, desc="study", names=None,
              retries=0, client=None):
    """Run ``fn(payload)`` for each payload (``fn`` a module-level function) on ``scheduler``
    (see :func:`connect`; ``"inline"``: one after the other in this process), or on the Dask
    ``client`` given. A bar counts finished tasks. Returns ``{"results": {name: value},
    "failed": {name: reason}, "workers": n, "wall_time_s": seconds, "startup_time_s": seconds
    to start the cluster}``; a task that raises is
    retried ``retries`` times, then reported with its reason, and the others go on."""
    from tqdm.auto import tqdm
    names = list(names) if names is not None else ["task-%d" % i for i in range(len(payloads))]
    if len(set(names)) != len(names):
        raise ValueError("run_tasks: task names must be unique")
    be, dt = backend.get_backend(), backend.get_dtype().name
    results, failed = {}, {}
    bar = tqdm(total=len(payloads), desc=desc, disable=not progress, dynamic_ncols=True,
               mininterval=BAR_MININTERVAL, leave=True, unit="run")
    t0 = time.perf_counter()
    workers, startup = 1, 0.0
    try:
        if client is None and scheduler == "inline":
            for name, payload in zip(names, payloads):
                try:
                    results[name] = _call(fn, payload, be, dt)
                except Exception as exc:
                    failed[name] = "%s: %s" % (type(exc).__name__, exc)
                bar.update(1)
        elif payloads:
            own = client is None
            cluster = None
            if own:
                client, cluster = connect(scheduler, len(payloads))
            startup = time.perf_counter() - t0
            try:
                _, distributed = _dask()
                workers = max(1, len(client.scheduler_info().get("workers", {})))
                futures = {client.submit(_call, fn, p, be, dt, key=name, pure=False,
                                         retries=retries): name
                           for name, p in zip(names, payloads)}
                for fut in distributed.as_completed(list(futures)):
                    name = futures[fut]
                    try:
                        results[name] = fut.result()
                    except Exception as exc:
                        failed[name] = "%s: %s" % (type(exc).__name__, exc)
                    bar.update(1)
            finally:
                if own:
                    client.close()
                    if cluster is not None:
                        cluster.close()
    finally:
        bar.close()
    return {"results": results, "failed": failed, "workers": workers,
            "wall_time_s": time.perf_counter() - t0, "startup_time_s": startup}


# ------------------------------------------------------------------------------ any experiment
GENERAL_ONLY = ("--grid", "--set", "--spec")
"""Options that make ``manualgrad study ltg`` the general form instead of the LTG cell study."""


def parse_seeds(text):
    """``"0-9"`` -> 0..9; ``"0,3,5"``, ``"0-2,7"``, ``"4"``; a list of ints stays. Returns a
    tuple of distinct ints >= 0 in the order given."""
    if isinstance(text, (list, tuple)):
        parts = [str(x) for x in text]
    else:
        parts = str(text).replace(" ", ",").split(",")
    seeds = []
    for part in filter(None, parts):
        lo, dash, hi = part.partition("-")
        try:
            rng = range(int(lo), int(hi) + 1) if dash else [int(lo)]
        except ValueError:
            raise argparse.ArgumentTypeError("seeds: expected e.g. 0-9, 0,3,5 or 4, got %r"
                                             % (text,)) from None
        for x in rng:
            if x < 0:
                raise argparse.ArgumentTypeError("seeds must be >= 0, got %d" % x)
            if x not in seeds:
                seeds.append(x)
    if not seeds:
        raise argparse.ArgumentTypeError("seeds: give at least one, e.g. 0-9")
    return tuple(seeds)


def _experiment(name):
    from . import REGISTRY
    if name not in REGISTRY:
        raise ValueError("unknown experiment %r: valid are %s" % (name, ", ".join(REGISTRY)))
    return REGISTRY[name]


def _converters(mod):
    """setting -> a function text -> value, from the experiment's own option parser."""
    p = argparse.ArgumentParser(add_help=False)
    mod.add_arguments(p)
    conv = {}
    for act in p._actions:
        key = act.dest
        if key not in mod.DEFAULTS:
            continue
        if act.nargs == 0:                  # store_true / store_false: give true or false
            conv[key] = boolean
        elif act.type is not None:
            conv[key] = act.type
        else:
            conv[key] = str
    return conv


def _value(mod, conv, key, text):
    """``text`` (from the command line or a spec) as the value of setting ``key``."""
    if key not in mod.DEFAULTS or key in ("out", "progress"):
        raise ValueError("%s has no setting %r; valid are %s" % (
            mod.__name__.rsplit(".", 1)[-1], key,
            ", ".join(k for k in mod.DEFAULTS if k not in ("out", "progress"))))
    if not isinstance(text, str):
        return text                         # from a spec file: already typed
    if text.lower() in ("none", "null"):
        return None
    try:
        return conv.get(key, str)(text)
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise ValueError("setting %s: cannot read %r (%s)" % (key, text, exc)) from None


def parse_grid(mod, items, values=True):
    """``["alpha=0.01,0.1,1", "hidden=32,64"]`` -> ``{"alpha": [0.01, 0.1, 1.0], "hidden":
    [32, 64]}``, each value typed as the experiment's option for that setting; with
    ``values=False`` one value per item (``--set``)."""
    conv = _converters(mod)
    out = {}
    for item in items or ():
        key, eq, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key:
            raise ValueError("expected SETTING=%s, got %r" % ("V1,V2,..." if values else "VALUE",
                                                               item))
        if key in out:
            raise ValueError("setting %r given twice" % key)
        if values:
            vals = [_value(mod, conv, key, t.strip()) for t in text.split(",")]
            if len(vals) != len(set(map(repr, vals))):
                raise ValueError("--grid %s: repeated values" % key)
            out[key] = vals
        else:
            out[key] = _value(mod, conv, key, text.strip())
    return out


def study_tasks(name, seeds, grid=None, settings=None, quick=False):
    """The runs of a study, in order (grid points in the order given, the last setting fastest,
    then seeds): a list of complete settings dicts (the experiment's ``DEFAULTS``, then its
    ``QUICK`` when ``quick``, then ``settings``, then the grid point and the seed)."""
    import itertools
    mod = _experiment(name)
    if "seed" not in mod.DEFAULTS:
        raise ValueError("experiment %r has no 'seed' setting to vary" % name)
    base = dict(mod.DEFAULTS)
    if quick:
        base.update(getattr(mod, "QUICK", {}))
    base.update(settings or {})
    grid = grid or {}
    for key in list(grid) + list(settings or {}):
        if key not in mod.DEFAULTS or key in ("seed", "out", "progress"):
            raise ValueError("%s: %r is not a setting a study can vary (seeds go in --seeds)"
                             % (name, key))
    tasks = []
    for point in itertools.product(*grid.values()):
        for seed in seeds:
            s = dict(base, **dict(zip(grid, point)))
            s["seed"] = seed
            s.pop("quick", None)
            tasks.append(s)
    return tasks


def run_task(task):
    """One run of a study (what a worker executes): ``REGISTRY[experiment].run`` into the task's
    folder with ``resume=True``, quietly. Returns ``{"id", "status", "wall_time_s", "pid",
    "host"}``; status ``done``, ``resumed`` (a training state was taken up) or ``finished``
    (the record was already there)."""
    import socket
    folder, key = task["folder"], task["key"]
    t0 = time.perf_counter()
    info = {"id": os.path.basename(folder), "pid": os.getpid(), "host": socket.gethostname()}
    if store.finished(folder, key):
        return dict(info, status="finished", wall_time_s=0.0)
    store.write_task(folder, key)
    ck = os.path.join(folder, "checkpoints")
    resumed = os.path.isdir(ck) and any(f.endswith((".npz", ".prev")) for f in os.listdir(ck))
    mod = _experiment(key["experiment"])
    settings = dict(task["settings"], out=folder, progress=False, resume=True)
    if "checkpoint_minutes" in task:
        settings["checkpoint_minutes"] = task["checkpoint_minutes"]
    mod.run(verbose=False, overwrite=True, **settings)
    return dict(info, status="resumed" if resumed else "done",
                wall_time_s=time.perf_counter() - t0)


def run_study(name, seeds=(0,), grid=None, settings=None, quick=False, scheduler="local",
              out=None, progress=True, retries=0, checkpoint_minutes=None, verbose=True,
              client=None):
    """Run experiment ``name`` over ``seeds`` x ``grid`` (setting -> values) with the fixed
    ``settings``, one task per run, into the study folder ``out`` (default
    ``results/study_<name>``); see the module docstring. Returns the study record (also
    ``out/study.json``): the spec, every task's id, settings and status, and the summary
    ``{"tasks", "done", "resumed", "finished", "failed"}`` (finished: skipped, already there)."""
    say = print if verbose else (lambda *a, **k: None)
    out = os.fspath(out or "results/study_%s" % name)
    seeds = parse_seeds(seeds)
    runs = study_tasks(name, seeds, grid, settings, quick)
    code = store.code_version()
    tasks, skipped = [], []
    for s in runs:
        key = store.task_key(name, s, code)
        folder = store.run_dir(out, key)
        entry = {"settings": s, "key": key, "folder": folder}
        if checkpoint_minutes is not None:
            entry["checkpoint_minutes"] = checkpoint_minutes
        (skipped if store.finished(folder, key) else tasks).append(entry)
    check = getattr(_experiment(name), "check_settings", None)
    if check is not None and tasks:        # a bad setting fails here, before any cluster
        for t in tasks:
            check(**dict(t["settings"], out=out))
    ids = [os.path.basename(t["folder"]) for t in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError("the grid gives the same run twice (check --grid and --set)")
    say("%s study: %d runs (%d seeds x %d grid points), %d already finished, %d to run on %s; "
        "store %s; code %s" % (name, len(runs), len(seeds), len(runs) // len(seeds),
                               len(skipped), len(tasks), scheduler if client is None
                               else "the given client", out, code))
    os.makedirs(out, exist_ok=True)
    spec = {"study": name, "seeds": list(seeds), "grid": grid or {}, "settings": settings or {},
            "quick": bool(quick), "code": code, "backend": backend.get_backend(),
            "dtype": backend.get_dtype().name, "scheduler": scheduler}
    outcome = run_tasks(run_task, tasks, scheduler=scheduler, progress=progress,
                        desc="%s study" % name, names=ids, retries=retries, client=client)
    status = {os.path.basename(t["folder"]): "finished" for t in skipped}
    for i, r in outcome["results"].items():
        status[i] = r["status"]
    for i, why in outcome["failed"].items():
        status[i] = "failed: " + why
    summary = {"tasks": len(runs), "done": sum(v in ("done", "resumed") for v in status.values()),
               "resumed": sum(v == "resumed" for v in status.values()),
               "finished": sum(v == "finished" for v in status.values()),
               "failed": len(outcome["failed"])}
    record = dict(spec, summary=summary, workers=outcome["workers"],
                  wall_time_s=outcome["wall_time_s"], startup_time_s=outcome["startup_time_s"],
                  sum_task_time_s=sum(r.get("wall_time_s", 0.0)
                                      for r in outcome["results"].values()),
                  tasks=[{"id": os.path.basename(t["folder"]), "seed": t["settings"]["seed"],
                          "grid": {k: t["settings"][k] for k in (grid or {})},
                          "status": status[os.path.basename(t["folder"])],
                          "host": outcome["results"].get(os.path.basename(t["folder"]), {})
                          .get("host")}
                         for t in skipped + tasks],
                  created=time.strftime("%Y-%m-%dT%H:%M:%S"), argv=list(sys.argv))
    store.write_study(out, record)
    say("%s study: %d done (%d resumed from a training state), %d already finished, %d failed; "
        "%.1f s on %d worker(s)" % (name, summary["done"], summary["resumed"],
                                    summary["finished"], summary["failed"],
                                    outcome["wall_time_s"], outcome["workers"]))
    for i, why in sorted(outcome["failed"].items()):
        say("  failed %s: %s" % (i, why[:500]))
    say("records in %s/runs/*/results.json; aggregate: manualgrad report %s" % (out, out))
    return record


def _read_spec(path):
    """A study spec file (JSON): ``{"seeds": "0-9" or [..], "grid": {setting: [values]},
    "settings": {setting: value}, "quick": bool, "scheduler": ..., "out": ...}``."""
    with open(path) as f:
        try:
            spec = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError("study spec %s is not valid JSON: %s" % (path, exc)) from None
    allowed = {"experiment", "seeds", "grid", "settings", "quick", "scheduler", "out",
               "retries", "checkpoint_minutes"}
    if not isinstance(spec, dict) or set(spec) - allowed:
        raise ValueError("study spec %s: expected a JSON object with keys among %s, got %s"
                         % (path, ", ".join(sorted(allowed)), sorted(spec) if isinstance(
                             spec, dict) else type(spec).__name__))
    return spec


def add_study_arguments(p, name):
    """The options of the general ``manualgrad study NAME``."""
    p.add_argument("--seeds", default=None,
                   help="seeds: a range 0-9, a list 0,3,5, or both (default 0)")
    p.add_argument("--grid", action="append", default=[], metavar="SETTING=V1,V2,...",
                   help="a setting of %s and its values (repeat for a product grid)" % name)
    p.add_argument("--set", action="append", default=[], metavar="SETTING=VALUE",
                   help="a setting fixed for every run (repeatable)")
    p.add_argument("--spec", default=None, metavar="FILE",
                   help="a JSON file with seeds, grid, settings, quick, scheduler, out "
                        "(command-line options win)")
    p.add_argument("--quick", action="store_true", default=None,
                   help="start each run from the experiment's QUICK settings")
    p.add_argument("--scheduler", default=None,
                   help="local[:N] (default: a LocalCluster of N = min(cores, runs) worker "
                        "processes), tcp://HOST:PORT (a running Dask scheduler whose workers "
                        "share this file system) or inline (this process, no Dask)")
    p.add_argument("--retries", type=int, default=None,
                   help="times a task that raised is tried again (default 0)")
    p.add_argument("--checkpoint-minutes", type=float, default=None,
                   help="minutes between training-state writes inside an epoch (default 10)")
    p.add_argument("--out", default=None,
                   help="the study folder (default results/study_%s)" % name)
    p.add_argument("--no-progress", dest="progress", action="store_false", default=True)


def study_from_args(name, ns):
    """``run_study``'s keywords from the parsed options (a spec file first, options over it)."""
    mod = _experiment(name)
    spec = _read_spec(ns.spec) if ns.spec else {}
    if spec.get("experiment", name) != name:
        raise ValueError("study spec %s is for %r, not %r" % (ns.spec, spec["experiment"], name))
    grid = {k: list(v) if isinstance(v, (list, tuple)) else [v]
            for k, v in (spec.get("grid") or {}).items()}
    for k, vals in grid.items():
        conv = _converters(mod)
        grid[k] = [_value(mod, conv, k, v) for v in vals]
    grid.update(parse_grid(mod, ns.grid))
    fixed = dict(spec.get("settings") or {})
    conv = _converters(mod)
    fixed = {k: _value(mod, conv, k, v) for k, v in fixed.items()}
    fixed.update(parse_grid(mod, ns.set, values=False))
    pick = (lambda key, default: getattr(ns, key) if getattr(ns, key) is not None
            else spec.get(key, default))
    return dict(name=name, seeds=pick("seeds", (0,)), grid=grid, settings=fixed,
                quick=bool(pick("quick", False)), scheduler=pick("scheduler", "local"),
                out=pick("out", None), retries=int(pick("retries", 0)),
                checkpoint_minutes=pick("checkpoint_minutes", None), progress=ns.progress)


STUDIES = {"ltg": (add_arguments, settings_from_args, run_ltg_study)}
"""Studies with their own form: name -> (add_arguments(parser), settings_from_args(namespace),
run(**settings)). ``manualgrad study ltg`` takes this form unless one of :data:`GENERAL_ONLY`
is given; every registered experiment has the general form (:func:`run_study`)."""
