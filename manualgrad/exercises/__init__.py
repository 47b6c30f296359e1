"""Checked exercises for the lectures: implement one equation, and get told what went wrong.

Each exercise asks for one equation of the sources as a small function (one step of the adjoint
recursion, the gradient sums, a penalty's gradient, the adjoint of one RK4 step, the LMO...)::

    from manualgrad import exercises
    exercises.names()                          # ('01.delta_lambda_T', '01.adjoint_step', ...)
    print(exercises.describe("01.adjoint_step"))   # signature, shapes, the equation
    report = exercises.check("01.adjoint_step", my_adjoint_step)
    print(report)                              # PASSED/FAILED, errors per case, a hint
    report.passed, report.max_error, report.hint
    solution = exercises.reference("01.adjoint_step")   # the reference solution (a function)

:func:`check` calls the function on random cases (several shapes and seeds, float64), compares
it with the reference (norm-wise relative error, tolerance :data:`TOL`), and for derivatives
checks it against central differences (:func:`manualgrad.check.gradients`) and with the
dot-product test (:func:`manualgrad.check.dot_product_test`). It never raises on a wrong
answer: the report's ``hint`` names the first failing case and, where the output matches a
known mistake (a transposed weight, a dropped term, a flipped sign, an index shift, a wrong
factor), that mistake. It raises on a malformed answer: TypeError for a wrong return type,
ValueError for a wrong shape, tuple length or set of dict keys.

The list with equations: docs/exercises.md; the reference solutions: docs/solutions.md.
"""
from __future__ import annotations

from . import core, lecture01, lecture02, lecture03, lecture04, lecture05
from .core import TOL, Exercise, Report, Variant

__all__ = ["names", "describe", "check", "reference", "get", "lectures", "Report", "Exercise",
           "Variant", "TOL"]

_REGISTRY = {}
for _mod in (lecture01, lecture02, lecture03, lecture04, lecture05):
    for _ex in _mod.EXERCISES:
        if _ex.name in _REGISTRY:
            raise RuntimeError("exercise %r is defined twice" % _ex.name)
        _REGISTRY[_ex.name] = _ex


def names(lecture=None):
    """The exercise ids, e.g. ``"01.adjoint_step"``, in lecture order; ``lecture`` ("01".."05"
    or an int) keeps one lecture's."""
    if lecture is None:
        return tuple(_REGISTRY)
    key = "%02d" % lecture if isinstance(lecture, int) else str(lecture)
    return tuple(n for n, e in _REGISTRY.items() if e.lecture == key)


def lectures():
    """The lecture numbers that have exercises ("01".."05")."""
    return tuple(dict.fromkeys(e.lecture for e in _REGISTRY.values()))


def get(name):
    """The :class:`~manualgrad.exercises.core.Exercise` called ``name``; ValueError listing the
    valid names otherwise."""
    if not isinstance(name, str):
        raise TypeError("exercise name must be a string such as '01.adjoint_step', got %r"
                        % (name,))
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError("unknown exercise %r; valid names: %s"
                         % (name, ", ".join(_REGISTRY))) from None


def describe(name):
    """What to implement for exercise ``name``: the signature, the shapes, the equation it
    follows and its source, what to return, the usual mistakes and how it is checked (a str)."""
    return get(name).describe()


def reference(name):
    """The reference solution of exercise ``name``: a function with the exercise's signature,
    returning an array, a tuple or a dict of arrays (or a number)."""
    return get(name).reference


def check(name, fn):
    """Check ``fn`` against exercise ``name``; a :class:`~manualgrad.exercises.core.Report`
    (``passed``, ``max_error``, ``fd_error``, ``dot_error``, ``hint``, per-case results).

    A wrong answer (or one that raises) gives ``passed=False`` and a hint; a malformed one
    (wrong return type: TypeError; wrong shape, length or keys: ValueError) raises.
    """
    return core.run(get(name), fn)
