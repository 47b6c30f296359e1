"""``manualgrad report``: figures and tables redrawn from saved results records, over seeds.

Input: records (``results.json`` files written by ``manualgrad run``, see
:mod:`manualgrad.experiments.record`) or folders searched recursively for them. The records are

1. **grouped** by experiment and by their settings except the seed
   (:func:`manualgrad.experiments.record.group_key`): the runs of one command with different
   ``--seed`` form one group;
2. **aggregated** per group, per run label (a method, a cell, ...) and per numeric per-epoch
   metric: at every epoch, over the records (seeds) that have a finite value there, the mean,
   the sample standard deviation (ddof = 1; none for a single seed), the min, the max and the
   count n. ``null`` values (NaN or Inf written by :func:`manualgrad.train.write_json`) are not
   counted; rows past a run's early stop are simply absent;
3. **final values**: per seed, the metric in its run's last row that has it (the final epoch that
   run reached), then mean ± std over seeds, written ``"0.4875 ± 0.012 (3 seeds)"``.

Output, in ``out``: one figure per group and metric (``<experiment>-<group id>-<metric>.png``:
the mean against epoch, one line per run label, the band mean ± std shaded dark and min..max
shaded light), ``report.md`` (a markdown section per group: the settings, the table of final
values, the figures) and ``report.json`` (everything aggregated, the paths read). The tables are
also printed.

From Python: :func:`make_report` (what the CLI calls), :func:`load_records`, :func:`group_records`,
:func:`aggregate`, :func:`stats`.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time

from .. import __version__, train
from . import record as _record

__all__ = ["REPORT_VERSION", "stats", "load_records", "group_records", "aggregate",
           "format_stats", "make_report", "plot_metric", "DEFAULT_OUT"]

REPORT_VERSION = 1
DEFAULT_OUT = "results/report"

COLORS = {"adjoint": "tab:blue", "coadjoint": "tab:red", "lstm": "tab:green",
          "rnn": "tab:blue", "indrnn": "tab:purple", "momentum_rnn": "tab:orange",
          "momentum_lstm": "tab:olive", "gru": "tab:brown"}
"""Colours of familiar run labels (JP figures: adjoint blue, coadjoint red, LSTM green); other
labels take matplotlib's colour cycle in order."""


# ------------------------------------------------------------------------------ statistics
def stats(values):
    """Mean, sample std (ddof 1; None for n < 2), min, max and n over the finite ``values``;
    ``nonfinite`` counts the values left out (None, NaN, Inf). All None when n = 0."""
    finite = [float(v) for v in values
              if v is not None and not isinstance(v, str) and math.isfinite(float(v))]
    n = len(finite)
    out = {"n": n, "mean": None, "std": None, "min": None, "max": None,
           "nonfinite": len(values) - n}
    if n:
        mean = math.fsum(finite) / n
        out.update(mean=mean, min=min(finite), max=max(finite))
        if n > 1:
            out["std"] = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (n - 1))
    return out


def _num(x, digits=4):
    if x is None:
        return "nan"
    if x == 0:
        return "0"
    a = abs(x)
    if 1e-3 <= a < 1e5:
        return ("%.*g" % (digits, x))
    return "%.*e" % (max(digits - 2, 1), x)


def format_stats(st, unit="seeds"):
    """``"mean ± std (n seeds)"``; one seed: ``"mean (1 seed)"``; none finite: ``"- (0 of k)"``."""
    if not st["n"]:
        return "- (no finite value of %d)" % st["nonfinite"]
    extra = ", %d non-finite" % st["nonfinite"] if st["nonfinite"] else ""
    if st["n"] == 1:
        return "%s (1 %s%s)" % (_num(st["mean"]), unit.rstrip("s"), extra)
    return "%s ± %s (%d %s%s)" % (_num(st["mean"]), _num(st["std"], 2), st["n"], unit, extra)


# ------------------------------------------------------------------------------ reading, grouping
def load_records(paths):
    """Every record under ``paths`` (files, or folders searched recursively for
    ``results.json``), loaded with :func:`record.load`; FileNotFoundError when a path does not
    exist or holds none, ValueError naming a file that is not a record."""
    files = _record.find_records(paths)
    if not files:
        raise FileNotFoundError("no results records found in %s" % ", ".join(
            os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)))
    return [_record.load(f) for f in files]


def group_records(records, ignore=("seed",)):
    """Groups of records with the same experiment and settings except ``ignore``.

    Returns a list of dicts, sorted by experiment then key: ``experiment``, ``id``
    (``<experiment>-<8 hex digits>``, stable for the same settings), ``key`` (canonical JSON),
    ``settings`` (the common settings, seed left out), ``records`` (sorted by seed, then path),
    ``seeds`` and ``notes`` (e.g. a seed that appears twice).
    """
    by_key = {}
    for rec in records:
        by_key.setdefault(_record.group_key(rec, ignore), []).append(rec)
    groups = []
    for key, recs in by_key.items():
        recs = sorted(recs, key=lambda r: (_seed_order(r.get("seed")), r.get("_path", "")))
        seeds = [r.get("seed") for r in recs]
        notes = []
        repeated = sorted({repr(s) for s in seeds if seeds.count(s) > 1})
        if repeated:
            notes.append("seed %s appears in more than one record; each record counts once"
                         % ", ".join(repeated))
        backends = sorted({"%s/%s" % (r.get("backend"), r.get("dtype")) for r in recs})
        if len(backends) > 1:
            notes.append("records from several backends: %s" % ", ".join(backends))
        exp = recs[0]["experiment"]
        settings = {k: v for k, v in (recs[0].get("settings") or {}).items() if k not in ignore}
        groups.append({"experiment": exp, "key": key,
                       "id": "%s-%s" % (_safe(exp), hashlib.sha1(key.encode()).hexdigest()[:8]),
                       "settings": settings, "records": recs, "seeds": seeds, "notes": notes,
                       "backends": backends})
    return sorted(groups, key=lambda g: (g["experiment"], g["key"]))


def _seed_order(seed):
    return (0, seed, "") if isinstance(seed, (int, float)) and not isinstance(seed, bool) \
        else (1, 0, repr(seed))


def _safe(text):
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(text)).strip("_") or "x"


def aggregate(group, metrics=None):
    """Mean and spread over the group's records, per run label and per-epoch metric.

    Returns ``{"runs": {label: {"x": "epoch", "metrics": {metric: curve}}},
    "final": {label: {metric: stats + values + epochs}}}`` where a curve is a dict of lists over
    the epochs some record reached: ``epoch``, ``mean``, ``std``, ``min``, ``max``, ``n``.
    ``metrics``: None (all) or names to keep.
    """
    labels = []
    for rec in group["records"]:
        labels += [lab for lab in rec["runs"] if lab not in labels]
    runs, final = {}, {}
    for lab in labels:
        xkey, names = None, []
        per_record = []
        for rec in group["records"]:
            run = rec["runs"].get(lab)
            if run is None:
                continue
            x, rows = _record.run_rows(run)
            if x is None:
                continue
            xkey = xkey or x
            per_record.append((rec, x, rows))
            names += [m for m in _record.metric_names(run) if m not in names]
        if metrics is not None:
            names = [m for m in names if m in metrics]
        if not per_record or not names:
            continue
        curves, fin = {}, {}
        for m in names:
            by_x = {}
            last = []
            for rec, x, rows in per_record:
                have = [r for r in rows if m in r]
                for r in have:
                    by_x.setdefault(r[x], []).append(_value(r[m]))
                if have:
                    last.append((rec.get("seed"), have[-1][x], _value(have[-1][m])))
            xs = sorted(by_x)
            sts = [stats(by_x[v]) for v in xs]
            curves[m] = {"epoch": xs, **{k: [s[k] for s in sts]
                                         for k in ("mean", "std", "min", "max", "n")}}
            st = stats([v for _, _, v in last])
            st.update(values=[v for _, _, v in last], seeds=[s for s, _, _ in last],
                      epochs=[e for _, e, _ in last])
            fin[m] = st
        runs[lab] = {"x": xkey, "metrics": curves}
        final[lab] = fin
    return {"runs": runs, "final": final}


def _value(v):
    """A row's value as float (bools 0/1); None for null and for anything not a number."""
    if isinstance(v, (bool, int, float)):
        return float(v)
    return None


# ------------------------------------------------------------------------------ figures, tables
def plot_metric(group, agg, metric):
    """One figure: ``metric`` against epoch for every run label of the group that has it; mean
    line, mean ± std band (dark) and min..max band (light). Returns a matplotlib Figure (not
    attached to pyplot, so it works without a display)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.add_subplot(1, 1, 1)
    cycle = iter(["tab:blue", "tab:red", "tab:green", "tab:orange", "tab:purple", "tab:brown",
                  "tab:pink", "tab:gray", "tab:olive", "tab:cyan"] * 10)
    xname = "epoch"
    lines = []
    for lab, run in agg["runs"].items():
        c = run["metrics"].get(metric)
        if c is None:
            continue
        xname = run["x"] or xname
        pts = [(x, mu, sd or 0.0, a, b, n) for x, mu, sd, a, b, n in zip(
            c["epoch"], c["mean"], c["std"], c["min"], c["max"], c["n"]) if n]
        if pts:
            lines.append((lab, COLORS.get(lab) or next(cycle), pts))
    lows = [p[3] for _, _, pts in lines for p in pts]
    highs = [abs(p[4]) for _, _, pts in lines for p in pts]
    log = bool(lows) and min(lows) > 0 and max(highs) / min(lows) > 1e3
    for lab, color, pts in lines:
        x = [p[0] for p in pts]
        mu = [p[1] for p in pts]
        nmax = max(p[5] for p in pts)
        ax.plot(x, mu, color=color, lw=2, marker="o" if len(x) < 30 else None, ms=3,
                label="%s (%d seed%s)" % (lab, nmax, "s" if nmax > 1 else ""))
        if nmax > 1:
            ax.fill_between(x, [p[3] for p in pts], [p[4] for p in pts], color=color,
                            alpha=0.12, lw=0)
            # on a log axis a band below 0 is cut at the smallest value seen there
            lo = [max(p[1] - p[2], p[3]) if log else p[1] - p[2] for p in pts]
            ax.fill_between(x, lo, [p[1] + p[2] for p in pts], color=color, alpha=0.28, lw=0)
    if log:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xname)
    ax.set_ylabel(metric)
    ax.set_title("%s: %s (mean; dark band ± std, light band min..max over seeds)"
                 % (group["id"], metric), fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _md_escape(text):
    return str(text).replace("|", "\\|")


def _settings_text(settings, only=None):
    keys = sorted(settings) if only is None else [k for k in sorted(settings) if k in only]
    return ", ".join("%s=%s" % (k, json.dumps(train.to_jsonable(settings[k]))) for k in keys)


def _table(agg):
    """Markdown table: one row per metric, one column per run label, final values over seeds."""
    labels = list(agg["final"])
    metrics = []
    for lab in labels:
        metrics += [m for m in agg["final"][lab] if m not in metrics]
    if not labels:
        return "(no per-epoch metrics in these records)"
    lines = ["| metric (final epoch) | %s |" % " | ".join(_md_escape(l) for l in labels),
             "|---|%s" % ("---|" * len(labels))]
    for m in metrics:
        cells = [format_stats(agg["final"][lab][m]) if m in agg["final"][lab] else ""
                 for lab in labels]
        lines.append("| %s | %s |" % (_md_escape(m), " | ".join(cells)))
    epochs = sorted({e for lab in labels for st in agg["final"][lab].values()
                     for e in st["epochs"]})
    if epochs:
        lines.append("")
        lines.append("Final epoch reached: %s." % (", ".join(str(e) for e in epochs)))
    return "\n".join(lines)


def make_report(paths, out=DEFAULT_OUT, metrics=None, verbose=True, figures=True):
    """Read the records under ``paths``, group, aggregate, draw, write; returns the report dict.

    ``out``: the folder for ``report.md``, ``report.json`` and the figures (created).
    ``metrics``: None (every per-epoch metric) or a list of names; ValueError when none of them
    is in any record (the message lists the metrics found). ``figures=False`` skips the PNGs.
    """
    if metrics is not None:
        if isinstance(metrics, str):
            metrics = [metrics]
        metrics = list(metrics)
    records = load_records(paths)
    groups = group_records(records)
    say = print if verbose else (lambda *a, **k: None)
    aggs = [aggregate(g, metrics) for g in groups]
    if metrics is not None and not any(agg["runs"] for agg in aggs):
        found = sorted({m for g in groups for rec in g["records"] for run in rec["runs"].values()
                        for m in _record.metric_names(run)})
        raise ValueError("metric %s is in none of the %d record(s); their per-epoch metrics are: "
                         "%s" % (", ".join(repr(m) for m in metrics), len(records),
                                 ", ".join(found) or "none"))
    os.makedirs(out, exist_ok=True)
    # settings that differ between groups of one experiment: shown in the section titles
    differ = {}
    for g in groups:
        differ.setdefault(g["experiment"], []).append(g["settings"])
    varying = {}
    for exp, sets in differ.items():
        keys = set().union(*[set(s) for s in sets])
        varying[exp] = {k for k in keys if len({json.dumps(train.to_jsonable(s.get(k)),
                                                           sort_keys=True) for s in sets}) > 1}
    md = ["# manualgrad report", "",
          "%d record(s) in %d group(s) (same experiment and settings except the seed). Final "
          "values: mean ± sample std over seeds of each seed's last epoch. Written %s by "
          "manualgrad %s." % (len(records), len(groups), time.strftime("%Y-%m-%d %H:%M"),
                              __version__), ""]
    written, out_groups = [], []
    for g, agg in zip(groups, aggs):
        title = "%s — %s" % (g["experiment"], g["id"])
        seeds = ", ".join(str(s) for s in g["seeds"])
        md += ["## " + title, "",
               "%d record(s), seeds %s; backend %s." % (len(g["records"]), seeds,
                                                       ", ".join(g["backends"])), ""]
        if varying[g["experiment"]]:
            md += ["Differs from the other %s groups in: `%s`." % (
                g["experiment"], _settings_text(g["settings"], varying[g["experiment"]])), ""]
        md += ["Settings (except seed): `%s`." % _settings_text(g["settings"]), ""]
        for note in g["notes"]:
            md += ["Note: %s." % note, ""]
        table = _table(agg)
        md += [table, ""]
        say("\n%s  (%d record(s), seeds %s)" % (title, len(g["records"]), seeds))
        if varying[g["experiment"]]:
            say("  " + _settings_text(g["settings"], varying[g["experiment"]]))
        say(table)
        figs = []
        if figures:
            names = []
            for lab in agg["runs"]:
                names += [m for m in agg["runs"][lab]["metrics"] if m not in names]
            for m in names:
                fig = plot_metric(g, agg, m)
                fname = "%s-%s.png" % (g["id"], _safe(m))
                fig.savefig(os.path.join(out, fname), dpi=100)
                figs.append(fname)
                md += ["![%s](%s)" % (m, fname), ""]
        written += figs
        out_groups.append({"experiment": g["experiment"], "id": g["id"],
                           "settings": g["settings"], "seeds": g["seeds"],
                           "records": [r["_path"] for r in g["records"]], "notes": g["notes"],
                           "backends": g["backends"], "runs": agg["runs"],
                           "final": agg["final"], "figures": figs})
    rep = {"report_version": REPORT_VERSION, "manualgrad": __version__,
           "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "inputs": [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike))
                                             else paths)],
           "metrics": metrics, "groups": out_groups, "figures": written}
    md_path = os.path.join(out, "report.md")
    with open(md_path, "w") as f:
        f.write("\n".join(md).rstrip() + "\n")
    train.write_json(os.path.join(out, "report.json"), rep)
    say("\nwrote %s, %s and %d figure(s) in %s"
        % (md_path, os.path.join(out, "report.json"), len(written), out))
    return rep


def add_arguments(p):
    """The options of ``manualgrad report``."""
    p.add_argument("results", nargs="+", metavar="RESULTS",
                   help="results.json files, or folders searched recursively for them")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help="folder for report.md, report.json and the figures "
                        "(default %(default)s)")
    p.add_argument("--metric", action="append", default=None, metavar="NAME",
                   help="report only this per-epoch metric (repeat for more; default: all)")
    p.add_argument("--no-figures", dest="figures", action="store_false",
                   help="tables only")
