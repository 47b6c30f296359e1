"""Results records: the one JSON file every experiment run writes, and what ``manualgrad report``
reads back.

A record is a plain dict, written as ``OUT/results.json`` by :func:`finish`::

    {
      "experiment": "adding",             # the registry name
      "settings": {...},                  # every setting of the run (not "out", "progress")
      "seed": 0,                          # settings["seed"], repeated for the report's grouping
      "versions": {"manualgrad", "python", "numpy", "scipy", "matplotlib"},
      "backend": "numpy", "dtype": "float64",
      "runs": {                           # one entry per method / curve of the experiment
        "fw": {"epochs": [{"epoch": 0, "test_mse": 0.17, ...}, ...], ...extra keys},
        "sgd": {...}
      },
      "summary": {"fw": {"test_mse": 0.01}, ...},     # optional: final numbers per run
      "figures": ["loss.png"],            # file names inside the results folder
      "wall_time_s": 12.3, "created": "2026-11-22T10:00:00", "argv": [...],
      "record_version": 1
    }

Each ``epochs`` row is a dict with an integer ``"epoch"`` (or ``"step"``) and float metrics;
``manualgrad report`` plots every metric against it and aggregates records of the same
experiment that differ only in their seed (mean and spread). Seeds make runs repeatable: the
same command twice gives the same numbers on the same backend, so everything in a record except
``wall_time_s``, ``created`` and per-run ``wall_time_s`` is a function of the settings.
:func:`comparable` strips those volatile entries (every key named in :data:`VOLATILE_KEYS`,
and every key ending in ``_time_s``, at any depth) so two records can be compared with ``==``.

Helpers for readers (``manualgrad report``, :mod:`manualgrad.experiments.report`):
:func:`group_key` (the settings except the seed, as canonical JSON), :func:`run_rows` (a run's
per-epoch rows and the key they are indexed by) and :func:`metric_names` (the numeric per-epoch
metrics of a run).
"""
from __future__ import annotations

import os
import platform
import sys
import tempfile
import time

from .. import __version__, backend, train

__all__ = ["RECORD_VERSION", "IGNORED_SETTINGS", "VOLATILE_KEYS", "X_KEYS", "prepare_out",
           "new_record", "add_run", "finish", "load", "versions", "find_records", "comparable",
           "group_key", "run_rows", "metric_names"]

RECORD_VERSION = 1
IGNORED_SETTINGS = ("out", "progress", "verbose", "resume", "checkpoint_minutes")
"""Settings that do not change the numbers, left out of ``record["settings"]`` (a run taken up
with ``--resume`` gives the record of one never interrupted)."""

VOLATILE_KEYS = ("wall_time_s", "created", "argv", "_path")
"""Entries that differ between two runs of the same command (timings, the date, the command line
with its output folder, where the record was read from); :func:`comparable` drops them, and any
key ending in ``_time_s``."""

X_KEYS = ("epoch", "step")
"""Keys that index the per-epoch rows (the x axis of the report), in order of preference."""


def versions():
    """Versions of manualgrad, Python and the numeric libraries: scipy, matplotlib and sklearn
    when installed (read from their package metadata, so the answer does not depend on what
    this process happened to import before: two processes of one install write the same
    versions), cupy when it is loaded (the CuPy backend)."""
    from importlib import metadata
    out = {"manualgrad": __version__, "python": platform.python_version(),
           "numpy": backend.np.__version__}
    for name, dist in (("scipy", "scipy"), ("matplotlib", "matplotlib"), ("cupy", None),
                       ("sklearn", "scikit-learn")):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = getattr(mod, "__version__", "?")
        elif dist is not None:
            try:
                out[name] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                pass
    return out


def prepare_out(out, overwrite=False, records=("results.json",)):
    """Make the results folder ``out`` ready before a run trains; returns ``out``.

    The folder is created (with its parents) and checked writable by writing and removing a
    probe file; a path that cannot be a folder (one under a regular file), or a folder that
    cannot be written, is a ValueError naming ``out`` and the path. Unless ``overwrite``, a
    folder that already holds one of ``records`` (paths relative to ``out``) is a
    FileExistsError (a ValueError would read as a bad setting): the run would replace it.
    """
    if isinstance(out, bool) or not isinstance(out, (str, os.PathLike)):
        raise TypeError("out must be a folder path (str or os.PathLike), got %r" % (out,))
    out = os.fspath(out)
    if not overwrite:
        held = [r for r in records if os.path.exists(os.path.join(out, r))]
        if held:
            raise FileExistsError("out %r already holds a results record (%s); give --overwrite "
                                  "(overwrite=True) to replace it, or another --out"
                                  % (out, ", ".join(held)))
    try:
        os.makedirs(out, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_test_", dir=out)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise ValueError("out %r cannot be used as the results folder: %s"
                         % (out, exc.strerror or exc)) from None
    return out


def new_record(experiment, settings):
    """A fresh record for one run of ``experiment`` with ``settings`` (a mapping)."""
    if not isinstance(experiment, str) or not experiment:
        raise TypeError("new_record: experiment must be a non-empty str, got %r" % (experiment,))
    if not hasattr(settings, "items"):
        raise TypeError("new_record: settings must be a mapping, got %s"
                        % type(settings).__name__)
    saved = {k: v for k, v in settings.items() if k not in IGNORED_SETTINGS}
    return {"experiment": experiment, "settings": saved, "seed": saved.get("seed"),
            "versions": versions(), "backend": backend.get_backend(),
            "dtype": backend.get_dtype().name, "runs": {}, "summary": {}, "figures": [],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "argv": list(sys.argv),
            "record_version": RECORD_VERSION}


def add_run(record, label, epochs, **extra):
    """Add one run (a method, a curve) to ``record``: ``epochs`` is a list of metric rows.

    Each row must be a mapping with an ``epoch`` or ``step`` key. ``extra`` (wall time, stop
    reason, adjoint norms, ...) is stored beside the rows. Returns the run dict.
    """
    if not isinstance(label, str) or not label:
        raise TypeError("add_run: label must be a non-empty str, got %r" % (label,))
    if label in record["runs"]:
        raise ValueError("add_run: the record already has a run %r" % label)
    rows = list(epochs)
    for i, row in enumerate(rows):
        if not hasattr(row, "keys") or not ("epoch" in row or "step" in row):
            raise ValueError("add_run(%r): row %d must be a mapping with an 'epoch' or 'step' "
                             "key, got %r" % (label, i, row))
    run = dict(extra, epochs=rows)
    record["runs"][label] = run
    return run


def finish(record, out, wall_time_s, figures=()):
    """Set the wall time and figure names, write ``out/results.json``; returns its path.

    ``out`` is created if missing. ``figures``: file names (or paths) of figures already saved
    in ``out``. The record is written under a temporary name and renamed (a killed run leaves
    no half record), and then the run's training states (``out/checkpoints/``,
    :func:`manualgrad.experiments.options.run_state`) are removed: a finished run has nothing
    left to resume.
    """
    import shutil
    os.makedirs(out, exist_ok=True)
    record["wall_time_s"] = float(wall_time_s)
    record["figures"] = [os.path.basename(os.fspath(f)) for f in figures]
    path = os.path.join(out, "results.json")
    tmp = os.path.join(out, ".results.json.tmp-%d" % os.getpid())
    try:
        train.write_json(tmp, record)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    shutil.rmtree(os.path.join(out, "checkpoints"), ignore_errors=True)
    return path


def find_records(paths):
    """The ``results.json`` files named by ``paths`` (files, or folders searched recursively),
    sorted; FileNotFoundError naming a path that does not exist or holds no record."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isfile(p):
            found.append(p)
        elif os.path.isdir(p):
            hits = sorted(os.path.join(d, f) for d, _, files in os.walk(p) for f in files
                          if f == "results.json")
            if not hits:
                raise FileNotFoundError("%r holds no results.json (give the folder a "
                                        "'manualgrad run ... --out FOLDER' wrote)" % p)
            found.extend(hits)
        else:
            raise FileNotFoundError("no such file or folder: %r" % p)
    return sorted(set(found))


def load(path):
    """Read one record (a ``results.json`` path, or the folder holding it); ValueError if the
    file is not a record (no ``experiment`` or ``runs``)."""
    import json
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "results.json")
    with open(path) as f:
        try:
            rec = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError("%s is not valid JSON: %s" % (path, exc)) from None
    if not isinstance(rec, dict) or "experiment" not in rec or "runs" not in rec:
        raise ValueError("%s is not a manualgrad results record (it lacks 'experiment' or "
                         "'runs')" % path)
    if not isinstance(rec["runs"], dict) or not all(isinstance(r, dict)
                                                     for r in rec["runs"].values()):
        raise ValueError("%s is not a manualgrad results record: 'runs' must map each run label "
                         "to a dict with 'epochs' rows, got %s" % (path,
                                                                  type(rec["runs"]).__name__))
    rec.setdefault("seed", rec.get("settings", {}).get("seed"))
    rec["_path"] = path
    return rec


def _volatile(key):
    return key in VOLATILE_KEYS or (isinstance(key, str) and key.endswith("_time_s"))


def comparable(record):
    """A copy of ``record`` without its volatile entries (:data:`VOLATILE_KEYS` and keys ending in
    ``_time_s``, at any depth): what two runs of the same command must agree on."""
    if isinstance(record, dict):
        return {k: comparable(v) for k, v in record.items() if not _volatile(k)}
    if isinstance(record, (list, tuple)):
        return [comparable(v) for v in record]
    return record


def group_key(record, ignore=("seed",)):
    """The experiment and its settings except ``ignore`` (default: the seed), as canonical JSON:
    records with equal keys are repeats of one setting (``manualgrad report`` aggregates them)."""
    import json
    settings = {k: v for k, v in (record.get("settings") or {}).items() if k not in ignore}
    return json.dumps([record["experiment"], train.to_jsonable(settings)], sort_keys=True)


def run_rows(run):
    """``(x_key, rows)``: a run's per-epoch rows (a list of dicts) and the key that indexes them
    (``"epoch"``, else ``"step"``; None when no row has either). A run without rows gives
    ``(None, [])``."""
    rows = run.get("epochs") if isinstance(run, dict) else None
    if not isinstance(rows, list):
        return None, []
    rows = [r for r in rows if isinstance(r, dict)]
    for x in X_KEYS:
        if rows and all(isinstance(r.get(x), (int, float)) and not isinstance(r.get(x), bool)
                        for r in rows):
            return x, rows
    return None, rows


def metric_names(run):
    """The numeric per-epoch metrics of a run, in order of first appearance: keys other than
    :data:`X_KEYS` whose values are numbers (bools count as 0/1; ``null``, i.e. NaN, is allowed
    beside numbers)."""
    _, rows = run_rows(run)
    names, bad = [], set()
    for r in rows:
        for k, v in r.items():
            if k in X_KEYS or k in bad:
                continue
            if v is None or isinstance(v, (int, float)):
                if k not in names and v is not None:
                    names.append(k)
            else:
                bad.add(k)
    return [k for k in names if k not in bad]
