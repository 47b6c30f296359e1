"""The floors of docs/architecture.md hold: a module imports only modules on its own floor or below.

The import graph is read from the source (``ast``), so a lazy import inside a function counts as
much as one at the top. The floors, bottom to top::

    0  backend, _strict                         the array module switch
    1  _validate, activations, check, inspect,  vocabulary, derivatives of the nonlinearities,
       gpu                                      finite differences, norms, fused kernels
    2  losses, data                             heads; generators and loaders
    3  rnn, layered, bptt, tbptt, coadjoint,    the models and their gradient methods
       cells, ode
    4  testing                                  strategies over the models (for tests)
    4  optim, train                             optimizers and the loop: no model, no data
    5  experiments                              settings, data, methods, figures
    5  exercises                                the lectures' checked exercises
    6  cli                                      the console script

and two rules on top: ``optim`` and ``train`` know no model (they take parameter mappings and
gradient functions), and only ``backend`` and ``_strict`` import numpy or cupy.
"""
import ast
import os

import pytest

import manualgrad

ROOT = os.path.dirname(manualgrad.__file__)

FLOORS = {
    "backend": 0, "_strict": 0,
    "_validate": 1, "activations": 1, "check": 1, "inspect": 1, "gpu": 1,
    "losses": 2, "data": 2,
    "rnn": 3, "layered": 3, "bptt": 3, "tbptt": 3, "coadjoint": 3, "cells": 3, "ode": 3,
    "testing": 4, "optim": 4, "train": 4,
    "experiments": 5, "exercises": 5,
    "cli": 6,
}
MODELS = ("rnn", "layered", "bptt", "tbptt", "coadjoint", "cells", "ode", "losses", "data")
"""What ``optim`` and ``train`` may not import: models, heads and data."""
ARRAY_MODULES = ("numpy", "cupy")


def _modules():
    """``{dotted name below manualgrad: path}`` for every .py file of the package."""
    out = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                out[rel[:-len(".__init__")] if rel.endswith("__init__") else rel] = path
    return out


MODULES = _modules()


def _imports(name):
    """The manualgrad modules (dotted, below manualgrad) and the top-level outside packages that
    module ``name`` imports anywhere in its source."""
    path = MODULES[name]
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    inside, outside = set(), set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "manualgrad" or a.name.startswith("manualgrad."):
                    inside.add(a.name[len("manualgrad."):] or "manualgrad")
                else:
                    outside.add(a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module == "manualgrad" or node.module.startswith("manualgrad."):
                    base = node.module[len("manualgrad."):] if "." in node.module else ""
                else:
                    outside.add(node.module.split(".")[0])
                    continue
            else:
                parts = package.split(".") if package else []
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            for a in node.names:
                full = (base + "." + a.name).strip(".")
                inside.add(full if full in MODULES else (base or "manualgrad"))
    return inside, outside


def _room(name):
    return name.split(".")[0]


def test_every_module_has_a_floor():
    rooms = {_room(m) for m in MODULES if m}
    missing = rooms - set(FLOORS) - {"__main__"}
    assert not missing, "modules without a floor in tests/test_architecture.py and " \
                        "docs/architecture.md: %s" % sorted(missing)


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m))
def test_module_imports_only_its_floor_and_below(name):
    inside, outside = _imports(name)
    room = _room(name)
    floor = FLOORS.get(room)
    if floor is None:
        pytest.skip("%s is the package's entry point" % name)
    above = sorted(m for m in inside - {"manualgrad"} if FLOORS[_room(m)] > floor)
    assert not above, "%s (floor %d) imports from a higher floor: %s" % (name, floor, above)
    if room in ("optim", "train"):
        models = sorted(m for m in inside if _room(m) in MODELS)
        assert not models, "%s knows no model, yet imports %s" % (name, models)
    if room not in ("backend", "_strict"):
        arrays = sorted(outside & set(ARRAY_MODULES))
        assert not arrays, "%s imports %s; get the array module from manualgrad.backend" % (
            name, arrays)


def test_the_check_can_fail(tmp_path, monkeypatch):
    """A module that imports upwards is caught (a control for the test above)."""
    bad = tmp_path / "bad.py"
    bad.write_text("from .experiments import record\nimport numpy\n")
    monkeypatch.setitem(MODULES, "activations_bad", str(bad))
    inside, outside = _imports("activations_bad")
    assert "experiments.record" in inside and "numpy" in outside
    assert FLOORS[_room("experiments.record")] > FLOORS["activations"]
