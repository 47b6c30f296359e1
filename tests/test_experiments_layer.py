"""experiments/ is a thin layer: no registered experiment module imports another one.

What two experiments share lives in a shared module (options, methods, threads, plots, record,
report, study, store), never inside one of them (docs: ARCHITECTURE's floors). The import graph of
``manualgrad/experiments/*.py`` is read with ``ast`` (nothing is imported to build it), so the
test also catches imports inside functions.
"""
import ast
from pathlib import Path

import pytest

from manualgrad.experiments import REGISTRY

FOLDER = Path(__file__).resolve().parents[1] / "manualgrad" / "experiments"
PACKAGE = "manualgrad.experiments"
SHARED = {"options", "methods", "threads", "plots", "record", "report", "study", "store"}
EXPERIMENTS = {mod.__name__.rsplit(".", 1)[-1] for mod in REGISTRY.values()}


def imported_modules(path):
    """Names of the modules of ``manualgrad.experiments`` that the file at ``path`` imports
    (``from . import x``, ``from .x import y``, ``import manualgrad.experiments.x``, ...)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:                   # from . import x / from .x import y
                base = node.module
            elif node.level == 0 and node.module and node.module.startswith(PACKAGE):
                base = node.module[len(PACKAGE) + 1:] or None
            else:
                continue
            if base:
                found.add(base.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    found.add(alias.name[len(PACKAGE) + 1:].split(".")[0])
    return found


def test_the_registry_and_the_shared_modules_are_the_whole_package():
    files = {p.stem for p in FOLDER.glob("*.py")} - {"__init__"}
    assert EXPERIMENTS and not EXPERIMENTS & SHARED
    assert files == EXPERIMENTS | SHARED, (
        "a module of experiments/ is neither registered nor a known shared module: %s"
        % sorted(files ^ (EXPERIMENTS | SHARED)))


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_no_experiment_imports_another_experiment(name):
    bad = imported_modules(FOLDER / (name + ".py")) & (EXPERIMENTS - {name})
    assert not bad, ("experiments/%s.py imports the experiment module(s) %s; move what they "
                     "share to a shared module (%s)" % (name, sorted(bad), ", ".join(
                         sorted(SHARED))))


@pytest.mark.parametrize("name", sorted(SHARED - {"study"}))
def test_shared_modules_import_no_experiment(name):
    """Only ``study`` (which runs an experiment over a grid) may use an experiment module."""
    bad = imported_modules(FOLDER / (name + ".py")) & EXPERIMENTS
    assert not bad, "the shared module %s imports the experiment(s) %s" % (name, sorted(bad))


def test_the_checker_sees_every_import_form(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from . import ltg, record\nfrom .adding import make_data\n"
                 "import manualgrad.experiments.fwseq\n"
                 "from manualgrad.experiments import har\n"
                 "def f():\n    from .char import sample\n"
                 "from .. import rnn\nfrom ..data import adding\n")
    assert imported_modules(f) == {"ltg", "record", "adding", "fwseq", "har", "char"}
