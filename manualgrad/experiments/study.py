"""Studies: one experiment over a grid of settings and seeds, in parallel processes.

``manualgrad study ltg`` trains the Long Time Gap RNN (:mod:`manualgrad.experiments.ltg`) with
both methods over a grid::

    method x seed x init scale x hidden size x penalty G x weight alpha x informative step

The adjoint method does not depend on G or alpha, so it runs once per (seed, scale, hidden).
Every (seed, scale, hidden) starts both methods from the same parameters and the same minibatch
order; the data (``data_seed``) are the same for every run. Each run is one job; jobs go to a
``multiprocessing`` pool (spawn context, ``workers`` processes, default min(cores, jobs)) with
one BLAS thread each (``OPENBLAS_NUM_THREADS=1`` etc. are set in the parent before the pool
starts, so the children read them when they import NumPy). ``workers=1`` runs the jobs in this
process. A seed gives the same numbers whatever the number of workers.

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

import math
import multiprocessing
import os
import platform
import sys
import time

from .. import __version__, backend, coadjoint, train
from .._validate import integer as _integer, number as _number
from . import ltg
from .methods import OPTIMIZERS
from .plots import JP_COLORS

__all__ = ["STUDIES", "LTG_DEFAULTS", "LTG_QUICK", "add_arguments", "run_ltg_study", "jobs_ltg",
           "aggregate", "parse_scale"]

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
                    progress=True)
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
    """Worker: one training run. Returns a plain dict (pickled back to the parent)."""
    index, job, backend_name, dtype = args
    if backend.get_backend() != backend_name or backend.get_dtype().name != dtype:
        backend.set_backend(backend_name, dtype=dtype)
    t0 = time.perf_counter()
    res = ltg.train_method(job["method"], job, progress=False, keep_norms=False)
    res["index"] = index
    res["job"] = {k: v for k, v in job.items() if k not in ("progress", "out")}
    res["job_wall_s"] = time.perf_counter() - t0
    res["pid"] = os.getpid()
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
    p.add_argument("--seeds", type=int, nargs="+", default=None,
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
                   help="processes (default min(cores, runs)); 1 runs in this process")
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
    args = [(i, job, backend.get_backend(), backend.get_dtype().name)
            for i, job in enumerate(jobs)]
    # longest first (coadjoint, wide) for a balanced pool; the results are re-sorted by index
    args.sort(key=lambda a: (a[1]["method"] != "coadjoint", -a[1]["hidden"], a[0]))
    from tqdm.auto import tqdm
    bar = tqdm(total=len(jobs), desc="ltg study", disable=not s["progress"], dynamic_ncols=True,
               mininterval=BAR_MININTERVAL, leave=True, unit="run")
    t0 = time.perf_counter()
    results = []
    try:
        if workers == 1:
            for a in args:
                results.append(_job(a))
                bar.update(1)
        else:
            saved = {k: os.environ.get(k) for k in THREAD_VARS}
            for k in THREAD_VARS:
                os.environ[k] = "1"
            try:
                pool = multiprocessing.get_context("spawn").Pool(workers)
                try:
                    for res in pool.imap_unordered(_job, args):
                        results.append(res)
                        bar.update(1)
                    pool.close()
                except BaseException:
                    pool.terminate()
                    raise
                finally:
                    pool.join()
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
    finally:
        bar.close()
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


STUDIES = {"ltg": (add_arguments, settings_from_args, run_ltg_study)}
"""name -> (add_arguments(parser), settings_from_args(namespace), run(**settings))."""
