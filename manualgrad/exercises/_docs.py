"""docs/exercises.md and docs/solutions.md, generated from the exercise registry.

Regenerate after changing an exercise: ``python -m manualgrad.exercises._docs`` (from the
repository root); tests/test_exercises.py checks that the files are up to date.
"""
from __future__ import annotations

import inspect as _pyinspect
import os
import textwrap

from . import core, get, lectures, names
from .lecture03 import _gates, _sigmoid

LECTURES = {
    "01": "01_rnn_adjoint.ipynb", "02": "02_coadjoint.ipynb", "03": "03_lstm_momentum.ipynb",
    "04": "04_neural_odes.ipynb", "05": "05_frank_wolfe.ipynb",
}


def _cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def _example():
    """A failing report, as check() prints it (a transposed W_rec in 01.adjoint_step)."""
    from . import check, reference
    ref = reference("01.adjoint_step")
    return str(check("01.adjoint_step", lambda W_rec, z_next, lam_next: ref(W_rec.T, z_next,
                                                                             lam_next)))


def exercises_md():
    rows = ["# Checked exercises", "",
            "`manualgrad.exercises` holds one small function to write per equation of the lectures, and a",
            "checker that says what went wrong. Each lecture notebook ends with an **Exercises (checked)**",
            "section: a stub cell per exercise and a check cell. From Python:", "",
            "```python",
            "from manualgrad import exercises",
            "exercises.names()                            # the ids below",
            "print(exercises.describe(\"01.adjoint_step\"))  # signature, shapes, equation, usual mistakes",
            "report = exercises.check(\"01.adjoint_step\", my_adjoint_step)",
            "print(report)                                # PASSED / FAILED, errors per case, a hint",
            "solution = exercises.reference(\"01.adjoint_step\")   # the reference solution",
            "```", "",
            "The reference solutions are in [solutions.md](solutions.md) (folded). Conventions as everywhere",
            "in the package ([conventions.md](conventions.md)): float64, rows are examples (the paper's W v is",
            "`v @ W.T`, W^T v is `v @ W`), JP's adjoints are negative gradients and per example, gradients",
            "are of the batch mean.", "",
            "## The exercises", "",
            "| id | lecture | equation | implement |", "| --- | --- | --- | --- |"]
    for name in names():
        ex = get(name)
        rows.append("| `%s` | [%s](../lectures/%s) | %s | `%s`: %s; returns %s |" % (
            name, ex.lecture, LECTURES[ex.lecture], _cell(ex.equation), _cell(ex.signature),
            _cell(ex.title), _cell(ex.returns)))
    rows += ["", "%d exercises: %s." % (len(names()), ", ".join(
        "%d in lecture %s" % (len(names(lec)), lec) for lec in lectures())), "",
        "## How `check()` reports", "",
        "`exercises.check(name, fn)` calls `fn` with the exercise's positional arguments on several random",
        "cases (different shapes, seeds 0, 1, 2, ..., float64; the arguments are copies, so `fn` may",
        "modify them) and returns a `Report`:", "",
        "- `passed`: every case agrees with the reference to a norm-wise relative error below",
        "  `exercises.TOL` = %.0e (`manualgrad.check.rel_error`; a correct function is at round-off," % core.TOL,
        "  ~1e-15; a 0.1 % mistake is 1e-3), and, for derivatives, with finite differences;",
        "- `max_error`: the worst relative error against the reference over the cases (inf if `fn` raised);",
        "- `fd_error`, `dot_error`: for derivative exercises, the worst error of the output against",
        "  4th-order central differences of the scalar function it is the gradient of",
        "  (`manualgrad.check.gradients`, on the first case) and of the random-direction dot-product",
        "  test (`manualgrad.check.dot_product_test`, on every case), both against",
        "  `check.TOLERANCES['float64']` = 1e-7; NaN for the Frank-Wolfe exercises, which are not derivatives;",
        "- `hint`: \"\" when passed; otherwise it names the first failing case (`case 2 of 3 (T=5, B=4,",
        "  m=4, p=3, seed 1)`) and what went wrong there;",
        "- `cases`: the per-case results; `error`: the exception `fn` raised, if any (`raise report.error`",
        "  shows its traceback); `note`: set when `fn` is the reference itself (the notebooks' placeholder).",
        "", "The hint is found by comparing the output of the first failing case, in this order, with:", "",
        "1. the exercise's **known mistakes** (each exercise lists two to four: a transposed weight, a",
        "   dropped term, a flipped sign, an index shift, the printed paper's version where it is wrong,",
        "   e.g. JP's eq. (11) without `o lambda_k`, JP's eq. (21) without `lambda_k`, BW Theorem 2's",
        "   `+ a_m J`); a match within 1e-6 names it: `your output matches a known mistake [dropped]: ...`;",
        "2. the reference with one of its **weight arguments transposed**;",
        "3. generic mistakes per output component: **negated** (the sign convention), a **multiple** of",
        "   the reference (`times 1.001`; an integer factor such as B suggests a missing 1/B), the",
        "   **transpose**, all **zeros**, **NaN/Inf**; for tuple and dict outputs, **which components** are",
        "   wrong and which are right;",
        "4. the cases that passed (\"it agrees on ... but not on ...\": a batch size B > 1, a non-square",
        "   weight, a longer sequence);",
        "5. otherwise the relative error and the equation to go through term by term.", "",
        "A function that raises is a failing report too (`not implemented yet` for NotImplementedError; a",
        "shape error in a matrix product adds \"a weight on the wrong side or transposed\"). Only a",
        "**malformed** answer raises: a wrong return type is a `TypeError` (an array expected, a tuple of",
        "2 arrays, a dict, a real number), a wrong shape, tuple length or set of dict keys a `ValueError`,",
        "each naming the exercise, the case and what was expected (a transposed shape says so).", "",
        "An example, a transposed `W_rec` in `01.adjoint_step`:", "",
        "```text", _example(), "```", ""]
    return "\n".join(rows)


def _source(fn):
    return textwrap.dedent(_pyinspect.getsource(fn)).rstrip()


def solutions_md():
    from .core import tanh_grad
    rows = ["# Reference solutions of the checked exercises", "",
            "The reference solution of every exercise of [exercises.md](exercises.md), as",
            "`exercises.reference(name)` returns it (its source, from `manualgrad/exercises/`). Each is",
            "folded: try the exercise first. Where the package already has the function the reference",
            "calls it (the penalties, the LMO, the HBNODE adjoint, the NODE field's vector-Jacobian",
            "product); elsewhere it is written out in a few lines following the equation.", "",
            "Helpers used below: `tanh_grad(z)` is sigma'(z) = 1 - tanh(z)^2 from",
            "`manualgrad.activations`; `_gates` and `_sigmoid` split the LSTM pre-activations:", "",
            "<details><summary>helpers: tanh_grad, _sigmoid, _gates</summary>", "",
            "```python", _source(tanh_grad), "", "", _source(_sigmoid), "", "", _source(_gates), "```",
            "", "</details>", ""]
    for lec in lectures():
        rows += ["## Lecture %s ([notebook](../lectures/%s))" % (lec, LECTURES[lec]), ""]
        for name in names(lec):
            ex = get(name)
            eq = ex.equation.replace("<", "&lt;").replace(">", "&gt;")
            rows += ["<details><summary>%s: %s (%s)</summary>" % (name, ex.title,
                                                                  eq.split(":")[0]), "",
                     "```python", _source(ex.reference), "```", "", "</details>", ""]
    return "\n".join(rows)


def write(root):
    for fname, text in (("exercises.md", exercises_md()), ("solutions.md", solutions_md())):
        with open(os.path.join(root, "docs", fname), "w", encoding="utf-8") as fh:
            fh.write(text)


if __name__ == "__main__":
    write(os.getcwd())
