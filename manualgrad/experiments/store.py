"""The results store of a study: one folder, one run per task, keyed by what the run computes.

Layout of a study folder (``manualgrad study NAME --out STUDY``)::

    STUDY/study.json                the study: experiment, seeds, grid, fixed settings, code
                                    version, scheduler, and every task's id, key and last status
    STUDY/runs/<id>/task.json       the task's key (written before it starts)
    STUDY/runs/<id>/results.json    its record, once finished (``manualgrad run``'s record)
    STUDY/runs/<id>/checkpoints/    its training state while unfinished (``--resume``)

A task's *key* is ``{"experiment", "settings", "seed", "code"}``: the experiment's name, every
setting of the run (its ``DEFAULTS`` with ``QUICK``, the study's fixed settings and the grid
point; not ``out``, ``progress`` or the run keys), the seed, and the code version
(:func:`code_version`). Its *id* is ``<experiment>-<first 12 hex digits of the key's SHA-256>``
(canonical JSON), so the same run under the same code has the same folder in every study
session: re-running a study skips the runs whose ``results.json`` is there with the same key
(:func:`finished`), and takes up the others from their training state. A run under another
code version gets another id, so records of different code are never mixed.

``manualgrad report STUDY`` reads every ``runs/*/results.json`` (it searches folders
recursively) and aggregates them over seeds.
"""
from __future__ import annotations

import hashlib
import json
import os

from .. import __version__, train
from .options import RUN_KEYS
from .record import IGNORED_SETTINGS

__all__ = ["code_version", "task_key", "task_id", "run_dir", "finished", "write_task",
           "read_study", "write_study", "STUDY_FILE"]

STUDY_FILE = "study.json"


def _git_commit(start):
    """The commit checked out in the git work tree holding ``start`` (read from .git, no
    subprocess), or None."""
    folder = os.path.abspath(start)
    while True:
        git = os.path.join(folder, ".git")
        if os.path.isdir(git):
            try:
                head = open(os.path.join(git, "HEAD")).read().strip()
                if head.startswith("ref: "):
                    ref = head[5:]
                    path = os.path.join(git, ref)
                    if os.path.exists(path):
                        return open(path).read().strip()
                    packed = os.path.join(git, "packed-refs")
                    if os.path.exists(packed):
                        for line in open(packed):
                            parts = line.split()
                            if len(parts) == 2 and parts[1] == ref:
                                return parts[0]
                    return None
                return head
            except OSError:
                return None
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def code_version():
    """``manualgrad <version>``, and ``+g<commit>`` when the package sits in a git work tree
    (uncommitted edits do not change it: commit before a study whose numbers you will cite)."""
    commit = _git_commit(os.path.dirname(os.path.abspath(__file__)))
    return __version__ + ("+g" + commit[:12] if commit else "")


def task_key(experiment, settings, code=None):
    """The key of one run: experiment, settings (less those that do not change the numbers),
    seed and code version, as plain JSON values."""
    saved = {k: v for k, v in settings.items() if k not in IGNORED_SETTINGS and k not in RUN_KEYS}
    saved = train.to_jsonable(saved, "settings")
    return {"experiment": experiment, "settings": saved, "seed": saved.get("seed"),
            "code": code_version() if code is None else code}


def task_id(key):
    """``<experiment>-<12 hex digits>``: the run's folder name under ``runs/``."""
    text = json.dumps(key, sort_keys=True)
    return "%s-%s" % (key["experiment"], hashlib.sha256(text.encode()).hexdigest()[:12])


def run_dir(study, key):
    """The folder of the run with ``key`` in the study folder ``study``."""
    return os.path.join(os.fspath(study), "runs", task_id(key))


def write_task(folder, key):
    """Write ``folder/task.json`` (the key) before the run starts; returns the folder."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "task.json")
    if not os.path.exists(path):
        train.write_json(path, key)
    return folder


def finished(folder, key):
    """Whether the run in ``folder`` is finished: its ``results.json`` is a complete record and
    its ``task.json`` holds ``key``."""
    try:
        with open(os.path.join(folder, "task.json")) as f:
            if json.load(f) != json.loads(json.dumps(key)):
                return False
        with open(os.path.join(folder, "results.json")) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(rec, dict) and "runs" in rec and "experiment" in rec


def read_study(study):
    """The ``study.json`` of a study folder, or None."""
    path = os.path.join(os.fspath(study), STUDY_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_study(study, record):
    """Write ``study/study.json`` atomically."""
    os.makedirs(study, exist_ok=True)
    path = os.path.join(study, STUDY_FILE)
    tmp = path + ".tmp-%d" % os.getpid()
    train.write_json(tmp, record)
    os.replace(tmp, path)
    return path
