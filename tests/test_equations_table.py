"""docs/equations.md stays true: every test it cites exists.

The catalog (../shared/EQUATIONS.md) gives every equation a function, a test and a line in
docs/equations.md. A renamed test file or function silently breaks that line; this test reads the
table's test column (``tests/path.py::test_name``, or ``test_file.py::test_name`` under tests/;
later ``::name`` entries of a cell refer to the same file) and checks that each names a test (or
class) defined in that file.
"""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "docs" / "equations.md"


FILE = r"((?:tests/)?(?:[\w]+/)*test_\w+\.py)"
"""A test file as the table writes it: ``tests/ode/test_node.py`` or ``test_rnn.py``."""


def _under_tests(path):
    return path if path.startswith("tests/") else "tests/" + path


def _rows():
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        if line.startswith("|") and not set(line) <= set("|- "):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 4 and cells[0] not in ("ID", "id", "Row"):
                yield cells


def _cited_tests():
    """(row id, file, test name) for each test the table cites."""
    out = []
    for cells in _rows():
        current = None
        for path, name, bare in re.findall(FILE + r"?::(\w+)|" + FILE, cells[-1]):
            if bare:
                current = _under_tests(bare)
                continue
            current = _under_tests(path) if path else current
            if current is None:
                continue
            out.append((cells[0], current, name))
    return out


def _defined_tests(path, cache={}):
    if path not in cache:
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
        cache[path] = names
    return cache[path]


def test_the_table_cites_tests():
    assert len(_cited_tests()) > 100


def test_every_cited_test_exists():
    missing = []
    for row, path, name in _cited_tests():
        if not (ROOT / path).is_file():
            missing.append("%s: file %s" % (row, path))
        elif name not in _defined_tests(path):
            missing.append("%s: %s::%s" % (row, path, name))
    assert not missing, "docs/equations.md cites tests that do not exist:\n" + "\n".join(
        sorted(set(missing)))
