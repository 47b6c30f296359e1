"""Every lecture notebook runs top to bottom, and imports manualgrad instead of redefining it.

STYLE habit 11 (d2l-en PR #1092: notebooks out of step with the package are what breaks for
users). Each ``lectures/*.ipynb`` is executed with nbclient in a fresh kernel, working directory
``lectures/``; a cell that raises fails the test with that cell's source and traceback.

The kernel must be the Python that runs pytest, with this checkout importable:

- a temporary kernelspec named ``python3`` whose argv starts with ``sys.executable`` is put first
  on ``JUPYTER_PATH``, so a ``python3`` kernelspec registered elsewhere (another environment,
  a user-level install) cannot be picked up instead;
- the repository root is prepended to ``PYTHONPATH`` for the kernel, so an uninstalled checkout
  works as well as a ``pip install``-ed one;
- ``MANUALGRAD_BACKEND`` is set to the backend the tests run on (``--backend``), so the
  notebooks run on numpy, strict or cupy like every other test;
- a final cell, added to the in-memory copy only, checks that the kernel's ``sys.executable``
  is pytest's, that ``manualgrad`` was imported from this checkout and that it runs on the
  selected backend.

Needs the test extra (nbformat, nbclient, ipykernel); skipped with a message otherwise.
"""
import ast
import importlib
import json
import os
import pkgutil
import re
import sys
from pathlib import Path

import pytest

from manualgrad import backend

ROOT = Path(__file__).resolve().parents[1]
LECTURES = ROOT / "lectures"
NOTEBOOKS = sorted(LECTURES.glob("*.ipynb"))
KERNEL = "python3"
CELL_TIMEOUT = 600  # seconds per cell

# Names a notebook must never define itself: the model entry points, always ...
ALWAYS_FORBIDDEN = {"forward", "adjoint", "gradients", "sweep", "loss", "loss_and_grad",
                    "init_params", "rel_error", "numerical_gradient", "dot_product_test",
                    "adjoint_norms", "long_time_gap"}


def _package_names():
    """... and every public name exported (``__all__``) by an importable manualgrad module."""
    names = set(ALWAYS_FORBIDDEN)
    import manualgrad
    for mod in pkgutil.walk_packages(manualgrad.__path__, "manualgrad."):
        if mod.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        try:  # a module another engineer is still writing must not break this test
            names.update(getattr(importlib.import_module(mod.name), "__all__", ()))
        except Exception:
            continue
    return names


def _code_cells(path):
    with open(path, encoding="utf-8") as fh:
        nb = json.load(fh)
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            src = cell["source"]
            yield i, "".join(src) if isinstance(src, list) else src


def _python_source(src):
    """Drop IPython-only lines (magics, shell escapes) so that ``ast`` can parse the cell."""
    return "\n".join("" if re.match(r"\s*[%!]", line) else line for line in src.splitlines())


def test_lectures_exist():
    assert NOTEBOOKS, "no notebooks found in %s" % LECTURES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_imports_not_redefines(path):
    """Notebooks import manualgrad and define no function or class named like one of its own."""
    forbidden = _package_names()
    imports, clashes = False, []
    for i, src in _code_cells(path):
        tree = ast.parse(_python_source(src), filename="%s[cell %d]" % (path.name, i))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) \
                    else [node.module or ""]
                imports |= any(m == "manualgrad" or m.startswith("manualgrad.") for m in mods)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                    and node.name in forbidden:
                clashes.append("cell %d, line %d: %s %s" % (
                    i, node.lineno, "class" if isinstance(node, ast.ClassDef) else "def",
                    node.name))
    assert imports, "%s never imports manualgrad" % path.name
    assert not clashes, ("%s redefines manualgrad names (import them instead):\n  %s"
                         % (path.name, "\n  ".join(clashes)))


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """Pin the ``python3`` kernel to this interpreter, make the checkout importable in it and
    select the tests' backend there."""
    spec_dir = tmp_path_factory.mktemp("jupyter") / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (manualgrad tests)", "language": "python"}))
    saved = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "PYTHONPATH", "MANUALGRAD_BACKEND")}
    for key, first in (("JUPYTER_PATH", spec_dir.parent.parent), ("PYTHONPATH", ROOT)):
        os.environ[key] = os.pathsep.join([str(first)] + ([saved[key]] if saved[key] else []))
    os.environ["MANUALGRAD_BACKEND"] = backend.get_backend()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_kernel_resolves_to_this_python(kernel_env):
    pytest.importorskip("ipykernel", reason="the test extra (ipykernel) is not installed")
    ksm = pytest.importorskip("jupyter_client.kernelspec",
                              reason="the test extra (nbclient) is not installed")
    spec = ksm.KernelSpecManager().get_kernel_spec(KERNEL)
    assert spec.argv[0] == sys.executable, (spec.resource_dir, spec.argv)


_CHECK_CELL = """\
import os, sys, manualgrad
here = os.path.realpath(os.path.dirname(manualgrad.__file__))
assert os.path.realpath(sys.executable) == os.path.realpath(%r), sys.executable
assert here == os.path.realpath(%r), "manualgrad imported from " + here
assert manualgrad.backend.get_backend() == %r, manualgrad.backend.get_backend()
"""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, kernel_env):
    nbformat = pytest.importorskip("nbformat", reason="the test extra (nbformat) is not installed")
    nbclient = pytest.importorskip("nbclient", reason="the test extra (nbclient) is not installed")
    pytest.importorskip("ipykernel", reason="the test extra (ipykernel) is not installed")
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(str(path), as_version=4)
    check = _CHECK_CELL % (sys.executable, str(ROOT / "manualgrad"), backend.get_backend())
    nb.cells.append(nbformat.v4.new_code_cell(check))  # in memory only; the file is untouched
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT,
                                     resources={"metadata": {"path": str(LECTURES)}})
    error = None
    try:
        client.execute()
    except CellExecutionError as exc:
        error = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # drop IPython's terminal colours
    if error is not None:  # failed outside the except block: no chained traceback
        pytest.fail("%s: a cell raised\n%s" % (path.name, error), pytrace=False)
