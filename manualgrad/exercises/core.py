"""The machinery of :mod:`manualgrad.exercises`: an exercise, its random cases, and the checker.

An :class:`Exercise` holds what the learner is told (signature, shapes, equation), how to draw a
random case (:class:`Case`: the positional arguments of the learner's function, and optionally
finite-difference specs :class:`FD` saying which output is the gradient of which scalar function),
the reference solution, and known wrong variants (:class:`Variant`: a transposed weight, a dropped
term, a flipped sign...). :func:`run` calls the learner's function on every case, compares it with
the reference (norm-wise relative error, :func:`manualgrad.check.rel_error`), runs the
finite-difference check and the dot-product test of :mod:`manualgrad.check` on the derivative
outputs, and, at the first failing case, compares the learner's output with each wrong variant
and with generic mistakes (negated, scaled, transposed, one component wrong) to write the hint.

Wrong answers never raise: they give a failing :class:`Report`. A *malformed* answer does: a
wrong return type is a TypeError, a wrong shape, a missing key or a wrong tuple length a
ValueError, each naming the exercise, the case and what was expected.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Callable, Optional

from .. import backend, check

TOL = 1e-8
"""Agreement with the reference (float64): a correct implementation differs by round-off, ~1e-15;
a 0.1% mistake is 1e-3."""

MATCH = 1e-6
"""How close the learner's output must be to a wrong variant to name that mistake in the hint."""


@dataclass
class FD:
    """A finite-difference spec: ``select(outputs)`` must equal the gradient of the scalar
    ``f(params)`` at ``params`` (a mapping of arrays). ``outputs``: {component name: backend array}."""

    what: str
    f: Callable
    params: dict
    select: Callable
    order: int = 4


@dataclass
class Case:
    """One random case: ``args`` are passed positionally to the learner's function; ``label``
    names the sizes and the seed; ``fd`` the finite-difference specs (derivative exercises)."""

    label: str
    args: tuple
    fd: list = field(default_factory=list)


@dataclass(frozen=True)
class Variant:
    """A known wrong answer: ``fn`` has the learner's signature, ``kind`` is one of
    ``transposed``, ``dropped``, ``sign``, ``index``, ``scale``, ``other``; ``hint`` says what it
    gets wrong (shown when the learner's output matches it)."""

    kind: str
    hint: str
    fn: Callable


KINDS = ("transposed", "dropped", "sign", "index", "scale", "other")


@dataclass
class Exercise:
    """One exercise: what to implement and how it is checked (see the module docstring).

    ``make_case(sizes, seed) -> Case``; ``sizes`` are dicts of dimensions (B, m, ...), one case
    per entry, seeded 0, 1, ...; ``outputs`` names the components of a tuple result (a dict
    result names its own); ``weights`` names the weight arguments (a transposed-weight variant is
    expected for each exercise that has one).
    """

    name: str
    lecture: str
    title: str
    equation: str
    signature: str
    task: str
    returns: str
    reference: Callable
    make_case: Callable
    sizes: tuple
    variants: tuple = ()
    outputs: tuple = ()
    weights: tuple = ()
    mistakes: str = ""

    @property
    def arg_names(self):
        """The argument names of :attr:`signature`, in order."""
        inner = self.signature.split("(", 1)[1].split(")", 1)[0]
        return [a.strip() for a in inner.split(",") if a.strip()]

    def cases(self):
        return [self.make_case(dict(s), seed) for seed, s in enumerate(self.sizes)]

    def describe(self):
        lines = ["%s  (lecture %s): %s" % (self.name, self.lecture, self.title),
                 "Equation: %s" % self.equation,
                 "Implement: %s" % self.signature, "", self.task.strip(), "",
                 "Returns: %s" % self.returns.strip()]
        if self.mistakes:
            lines += ["", "Usual mistakes: %s" % self.mistakes.strip()]
        lines += ["", "Checked on %d random cases (float64): %s; against the reference "
                  "(relative error < %.0e)%s." % (
                      len(self.sizes), "; ".join(_sizes_label(s) for s in self.sizes), TOL,
                      ", by finite differences and the dot-product test"
                      if self._has_fd() else "")]
        return "\n".join(lines)

    def _has_fd(self):
        return bool(self.make_case(dict(self.sizes[0]), 0).fd)


def _sizes_label(sizes):
    return ", ".join("%s=%s" % (k, v) for k, v in sizes.items())


# --------------------------------------------------------------------------- the report
@dataclass
class CaseResult:
    """One case: the relative error against the reference per output component, and the
    finite-difference / dot-product errors (NaN where not run)."""

    label: str
    errors: dict
    fd_error: float = float("nan")
    dot_error: float = float("nan")
    raised: Optional[BaseException] = None

    @property
    def max_error(self):
        return max(self.errors.values()) if self.errors else float("inf")

    @property
    def passed(self):
        return self.raised is None and self.max_error < TOL and not (
            self.fd_error >= check.TOLERANCES["float64"]) and not (
            self.dot_error >= check.TOLERANCES["float64"])


@dataclass
class Report:
    """What :func:`manualgrad.exercises.check` found.

    ``passed``: every case agrees with the reference (and with finite differences); ``max_error``:
    the worst relative error against the reference over the cases (inf if the function raised);
    ``fd_error``, ``dot_error``: the worst finite-difference and dot-product errors (NaN for
    exercises that are not derivatives); ``hint``: what went wrong at the first failing case
    ("" when passed); ``cases``: the per-case results; ``error``: the exception the function
    raised, if any (``raise report.error`` to see its traceback).
    """

    name: str
    passed: bool
    max_error: float
    fd_error: float
    dot_error: float
    hint: str
    cases: list
    error: Optional[BaseException] = None
    tol: float = TOL
    note: str = ""

    def __bool__(self):
        return self.passed

    def __str__(self):
        head = "%s: %s (%d case%s; worst relative error vs the reference %.2e, tolerance %.0e)" % (
            self.name, "PASSED" if self.passed else "FAILED", len(self.cases),
            "" if len(self.cases) == 1 else "s", self.max_error, self.tol)
        rows = [head]
        for c in self.cases:
            if c.raised is not None:
                rows.append("  %-28s raised %s" % (c.label, type(c.raised).__name__))
                continue
            extra = ""
            if not math.isnan(c.fd_error):
                extra += "  finite differences %.1e" % c.fd_error
            if not math.isnan(c.dot_error):
                extra += "  dot-product test %.1e" % c.dot_error
            rows.append("  %-28s %.2e%s%s" % (c.label, c.max_error, extra,
                                             "" if c.passed else "  <-- fails"))
        if self.hint:
            rows.append("Hint: " + self.hint)
        if self.note:
            rows.append("Note: " + self.note)
        return "\n".join(rows)

    __repr__ = __str__


# --------------------------------------------------------------------------- outputs
def _is_arraylike(a):
    return backend.is_array(a) or (hasattr(a, "shape") and hasattr(a, "__array__"))


def _host(a):
    np = backend.np
    if backend.is_array(a):
        return backend.to_numpy(a).astype("float64")
    return np.asarray(a, dtype="float64")


def _components(ex, value, where, ref_value):
    """The output as ``{component: host float64 array}``, checked against the reference's
    structure ``ref_value``; TypeError / ValueError for a malformed output."""
    np = backend.np
    if isinstance(ref_value, Mapping):
        if not isinstance(value, Mapping):
            raise TypeError("%s: the function must return a dict with keys %s, got %s"
                            % (where, sorted(ref_value), type(value).__name__))
        missing = [k for k in ref_value if k not in value]
        extra = [k for k in value if k not in ref_value]
        if missing or extra:
            raise ValueError("%s: the returned dict has keys %s; expected %s%s" % (
                where, sorted(value), sorted(ref_value),
                " (missing %s)" % missing if missing else ""))
        return {k: _one(value[k], ref_value[k], "%s, output %r" % (where, k))
                for k in ref_value}
    if isinstance(ref_value, tuple):
        names = ex.outputs or tuple("output %d" % i for i in range(len(ref_value)))
        if not isinstance(value, (tuple, list)):
            raise TypeError("%s: the function must return a tuple of %d arrays (%s), got %s"
                            % (where, len(ref_value), ", ".join(names), type(value).__name__))
        if len(value) != len(ref_value):
            raise ValueError("%s: the function returned %d values; expected %d (%s)"
                             % (where, len(value), len(ref_value), ", ".join(names)))
        return {n: _one(v, r, "%s, output %r" % (where, n))
                for n, v, r in zip(names, value, ref_value)}
    if isinstance(ref_value, Real) and not _is_arraylike(ref_value):
        if isinstance(value, bool) or not (isinstance(value, Real) or (
                _is_arraylike(value) and getattr(value, "size", 0) == 1)):
            raise TypeError("%s: the function must return a real number, got %s"
                            % (where, type(value).__name__))
        return {"output": np.asarray(float(_host(value).reshape(())), dtype="float64")}
    return {"output": _one(value, ref_value, where)}


def _one(value, ref, where):
    if not _is_arraylike(value):
        raise TypeError("%s: expected an array of shape %s, got %s"
                        % (where, tuple(ref.shape), type(value).__name__))
    if tuple(value.shape) != tuple(ref.shape):
        note = ""
        if tuple(value.shape) == tuple(ref.shape)[::-1]:
            note = " (transposed? rows are examples, so W v is v @ W.T and W^T v is v @ W)"
        elif len(value.shape) != len(ref.shape):
            note = " (a sum over the wrong axis, or a missing/extra axis?)"
        raise ValueError("%s: returned shape %s, expected %s%s"
                         % (where, tuple(value.shape), tuple(ref.shape), note))
    return _host(value)


def _copy_args(args):
    """Fresh copies of the array arguments (the learner may modify them in place)."""
    out = []
    for a in args:
        if backend.is_array(a):
            out.append(a.copy())
        elif isinstance(a, dict):
            out.append({k: (v.copy() if backend.is_array(v) else v) for k, v in a.items()})
        else:
            out.append(a)
    return tuple(out)


def _rel(a, b):
    return check.rel_error(a, b, floor=1e-300) if a.size else 0.0


def _errors(out, ref):
    return {k: _rel(out[k], ref[k]) for k in ref}


# --------------------------------------------------------------------------- finite differences
def _fd_errors(case, out):
    """Worst finite-difference and dot-product errors of ``out`` (host components) over the case's
    specs; (nan, nan) when it has none."""
    if not case.fd:
        return float("nan"), float("nan")
    dev = {k: backend.asarray(v, "float64") for k, v in out.items()}
    fd_err = dot_err = 0.0
    for i, spec in enumerate(case.fd):
        grads = spec.select(dev)
        f = spec.f
        rep = check.gradients(f, spec.params, grads, order=spec.order)
        fd_err = max(fd_err, rep.max_error)
        e, _, _ = check.dot_product_test(f, spec.params, grads, seed=i, order=spec.order)
        dot_err = max(dot_err, e)
    return fd_err, dot_err


def _dot_errors(case, out):
    """Only the dot-product test (cheap: one pair of evaluations per spec)."""
    if not case.fd:
        return float("nan")
    dev = {k: backend.asarray(v, "float64") for k, v in out.items()}
    err = 0.0
    for i, spec in enumerate(case.fd):
        e, _, _ = check.dot_product_test(spec.f, spec.params, spec.select(dev), seed=i,
                                         order=spec.order)
        err = max(err, e)
    return err


# --------------------------------------------------------------------------- diagnosis
def _generic(name, out, ref):
    """What a wrong component looks like, if it is recognisable: negated, scaled, transposed,
    zero, non-finite; None otherwise."""
    np = backend.np
    o, r = out.ravel(), ref.ravel()
    if not np.all(np.isfinite(o)):
        return "%s contains NaN or Inf (an overflow, a division by a zero norm, or an " \
               "uninitialised array such as np.empty)" % name
    if not np.any(o) and np.any(r):
        return "%s is all zeros (a term never added, or the result not written back)" % name
    if _rel(out, -ref) < MATCH:
        return "%s has the wrong sign: JP's adjoints are negative gradients " \
               "(lambda = -dF/dx) and gradients carry the leading minus of JP eqs. 9-13" % name
    rr = float(r @ r)
    if rr > 0:
        c = float(o @ r) / rr
        if c != 0 and _rel(out, c * ref) < MATCH:
            why = ""
            if abs(c - round(c)) < 1e-9 and round(c) > 1:
                why = " (a missing division, e.g. by the batch size B, or a doubled term)"
            elif abs(1 / c - round(1 / c)) < 1e-9 and round(1 / c) > 1:
                why = " (an extra division, e.g. by B where the quantity is per example, " \
                      "or a missing factor 2)"
            return "%s is the reference times %.6g: right direction, wrong factor%s" % (
                name, c, why)
    if ref.ndim >= 2 and ref.shape[-1] == ref.shape[-2] and _rel(
            out, np.swapaxes(ref, -1, -2)) < MATCH:
        return "%s is the transpose of the reference (an outer product in the wrong order, " \
               "or W where W^T belongs)" % name
    return None


def diagnose(ex, case, out, ref, results, index, equation_hint=True):
    """The hint for the first failing case ``case`` (index ``index``); ``out``/``ref`` are its
    components."""
    where = "case %d of %d (%s)" % (index + 1, len(results), case.label)
    for v in ex.variants:
        try:
            vo = v.fn(*_copy_args(case.args))
            vo = _components(ex, vo, "variant", _ref_struct(ex, case))
        except Exception:
            continue
        if all(vo[k].shape == out[k].shape for k in out) and max(
                _rel(out[k], vo[k]) for k in out) < MATCH:
            return "%s: your output matches a known mistake [%s]: %s" % (where, v.kind, v.hint)
    args = ex.arg_names
    for w in ex.weights:  # a weight argument used transposed, everywhere it appears
        i = args.index(w)
        try:
            a = list(_copy_args(case.args))
            a[i] = a[i].T.copy()
            vo = ex.reference(*a)
            vo = _components(ex, vo, "variant", _ref_struct(ex, case))
        except Exception:
            continue
        if max(_rel(out[k], vo[k]) for k in out) < MATCH:
            return "%s: your output matches a known mistake [transposed]: %s is used " \
                   "transposed; rows are examples, so %s v is v @ %s.T and %s^T v is v @ %s" % (
                       where, w, w, w, w, w)
    errs = _errors(out, ref)
    wrong = [k for k in ref if not errs[k] < TOL]  # NaN counts as wrong
    parts = []
    found = {}
    for k in wrong:  # one message per kind of mistake, naming every component it fits
        g = _generic("\0", out[k], ref[k])
        if g:
            found.setdefault(g, []).append(k)
    for g, ks in found.items():
        who = "the output" if len(ref) == 1 else (
            ks[0] if len(ks) == 1 else "each of " + ", ".join(ks))
        parts.append(g.replace("\0", who))
    if len(ref) > 1 and len(wrong) < len(ref):
        parts.append("only %s %s wrong (%s right)" % (
            ", ".join(repr(k) for k in wrong), "is" if len(wrong) == 1 else "are",
            ", ".join(repr(k) for k in ref if k not in wrong)))
    passed = [r.label for r in results if r.errors and r.max_error < TOL]
    if passed:
        parts.append("it agrees on %s but not on %s: look at what differs between the cases "
                     "(a batch size B > 1, a non-square weight, a longer sequence)"
                     % ("; ".join(passed), case.label))
    if not parts:
        parts.append("the output differs from the reference by relative error %.2e (worst in "
                     "%s); go through %s term by term"
                     % (max(errs.values()), max(errs, key=errs.get), ex.equation))
    elif equation_hint:
        parts.append("see %s" % ex.equation)
    return "%s: %s" % (where, "; ".join(parts))


def _ref_struct(ex, case):
    return ex.reference(*_copy_args(case.args))


# --------------------------------------------------------------------------- the check
def run(ex, fn):
    """Check ``fn`` against exercise ``ex``; a :class:`Report` (see the module docstring)."""
    if not callable(fn):
        raise TypeError("exercises.check(%r, fn): fn must be a function with the signature %s, "
                        "got %r" % (ex.name, ex.signature, fn))
    results, first = [], None
    error = None
    cases = ex.cases()
    for i, case in enumerate(cases):
        where = "exercises.check(%r), case %d (%s)" % (ex.name, i + 1, case.label)
        ref_value = ex.reference(*_copy_args(case.args))
        ref = _components(ex, ref_value, where + " [reference]", ref_value)
        try:
            value = fn(*_copy_args(case.args))
        except Exception as exc:  # a wrong answer: reported, not raised
            results.append(CaseResult(case.label, {}, raised=exc))
            if first is None:
                first = (i, case, None, ref)
                error = exc
            continue
        out = _components(ex, value, where, ref_value)  # malformed: raises
        errs = _errors(out, ref)
        res = CaseResult(case.label, errs)
        if i == 0:
            res.fd_error, res.dot_error = _fd_errors(case, out)
        else:
            res.dot_error = _dot_errors(case, out)
        results.append(res)
        if first is None and not res.passed:
            first = (i, case, out, ref)
    passed = first is None
    hint = ""
    if not passed:
        i, case, out, ref = first
        if out is None:
            exc = results[i].raised
            kind = "not implemented yet" if isinstance(exc, NotImplementedError) else \
                "%s: %s" % (type(exc).__name__, exc)
            hint = "case %d of %d (%s): your function raised %s" % (
                i + 1, len(cases), case.label, kind)
            if isinstance(exc, (ValueError, IndexError)) and not isinstance(
                    exc, NotImplementedError):
                hint += " -- a shape mismatch usually means a weight on the wrong side or " \
                        "transposed (rows are examples: W v is v @ W.T, W^T v is v @ W)"
            hint += "; raise report.error to see the traceback"
        elif results[i].max_error < TOL:
            hint = "case %d of %d (%s): the output agrees with the reference but not with " \
                   "finite differences (error %.1e, dot-product test %.1e)" % (
                       i + 1, len(cases), case.label, results[i].fd_error, results[i].dot_error)
        else:
            hint = diagnose(ex, case, out, ref, results, i)
    nan = float("nan")
    fd = [r.fd_error for r in results if not math.isnan(r.fd_error)]
    dot = [r.dot_error for r in results if not math.isnan(r.dot_error)]
    note = "this is the reference solution itself (exercises.reference(%r)); replace the " \
           "placeholder with your own function" % ex.name if fn is ex.reference else ""
    return Report(ex.name, passed, max(r.max_error for r in results),
                  max(fd) if fd else nan, max(dot) if dot else nan, hint, results, error,
                  note=note)


# --------------------------------------------------------------------------- helpers for cases
def rng(seed):
    """The host generator of a case (seeded; the same numbers on every backend)."""
    return backend.host_rng(1000 + seed)


def randn(g, *shape, scale=1.0):
    """N(0, scale^2) float64 array of the backend, drawn from host generator ``g``."""
    return backend.randn(shape, rng=g, scale=scale, dtype="float64")


def uniform(g, *shape, low=0.0, high=1.0):
    return backend.uniform(shape, low=low, high=high, rng=g, dtype="float64")


def zeros(*shape):
    return backend.xp().zeros(shape, dtype="float64")


def label(sizes, seed):
    return "%s, seed %d" % (_sizes_label(sizes), seed)


def tanh_grad(z):
    """sigma'(z) for sigma = tanh, from the package's activation table."""
    from .. import activations
    act = activations.get("tanh")
    return act.grad(z, act(z))
