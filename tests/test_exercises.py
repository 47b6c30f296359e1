"""manualgrad.exercises: every exercise accepts its reference and rejects slightly wrong answers
with an informative hint; malformed answers raise clear errors (STYLE habit 14: teaching
material checks the learner, and its check says what went wrong)."""
import math
import re

import pytest

from manualgrad import backend, exercises, rnn
from manualgrad.exercises import core

NAMES = exercises.names()
GENERIC = "the output differs from the reference"


def _map(value, fn):
    """Apply ``fn`` to every array (or number) of an output: array, tuple or dict."""
    if isinstance(value, dict):
        return {k: fn(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(fn(v) for v in value)
    return fn(value)


def _wrap(name, post):
    ref = exercises.reference(name)
    return lambda *args: _map(ref(*args), post)


def _mentions_case(hint):
    return re.search(r"case \d+ of \d+ \(", hint) is not None


def test_at_least_three_exercises_per_lecture_and_fifteen_in_all():
    assert len(NAMES) >= 15
    assert exercises.lectures() == ("01", "02", "03", "04", "05")
    for lec in exercises.lectures():
        assert len(exercises.names(lec)) >= 3, lec
        assert all(n.startswith(lec + ".") for n in exercises.names(lec))
    assert exercises.names(1) == exercises.names("01")


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes(name):
    report = exercises.check(name, exercises.reference(name))
    assert report.passed, report
    assert report.max_error < 1e-12, report
    assert report.hint == ""
    assert len(report.cases) >= 3  # several shapes and seeds
    if not math.isnan(report.fd_error):  # derivatives: finite differences and dot-product test
        assert report.fd_error < 1e-7 and report.dot_error < 1e-7, report
    assert "PASSED" in str(report)


DERIVATIVES = [n for n in NAMES if not n.startswith("05.")]


def test_derivative_exercises_are_checked_by_finite_differences():
    for name in DERIVATIVES:
        report = exercises.check(name, exercises.reference(name))
        assert not math.isnan(report.fd_error) and not math.isnan(report.dot_error), name


@pytest.mark.parametrize("name", NAMES)
def test_describe_mentions_the_equation_signature_and_shapes(name):
    text = exercises.describe(name)
    ex = exercises.get(name)
    assert ex.equation in text and ex.signature in text
    assert re.search(r"\b(JP|BW|FW)", ex.equation), ex.equation  # the source ...
    assert re.search(r"eqs?\. \(?\d|Theorem|Algorithm|Assumption|docs/", ex.equation)  # ... and where
    assert "Returns:" in text and "Checked on" in text


@pytest.mark.parametrize("name", NAMES)
def test_scaled_by_1_001_is_rejected_with_the_factor_in_the_hint(name):
    report = exercises.check(name, _wrap(name, lambda v: v * 1.001))
    assert not report.passed
    assert 5e-4 < report.max_error < 2e-3, report
    assert _mentions_case(report.hint), report.hint
    assert "1.001" in report.hint and GENERIC not in report.hint, report.hint


@pytest.mark.parametrize("name", NAMES)
def test_flipped_sign_is_rejected_and_named(name):
    report = exercises.check(name, _wrap(name, lambda v: -v))
    assert not report.passed
    assert _mentions_case(report.hint)
    assert "sign" in report.hint, report.hint


@pytest.mark.parametrize("name", NAMES)
def test_every_known_mistake_is_rejected_and_named(name):
    ex = exercises.get(name)
    assert len(ex.variants) >= 2, "give each exercise at least two known mistakes"
    assert {v.kind for v in ex.variants} <= set(core.KINDS)
    for v in ex.variants:
        report = exercises.check(name, v.fn)
        assert not report.passed, (v.hint, report)
        assert _mentions_case(report.hint), report.hint
        assert v.hint in report.hint or "raised" in report.hint, (v.hint, report.hint)
        assert GENERIC not in report.hint


def test_the_kinds_of_mistakes_are_covered():
    kinds = {v.kind for n in NAMES for v in exercises.get(n).variants}
    assert {"transposed", "dropped", "sign", "index"} <= kinds
    dropped = [n for n in NAMES if any(v.kind == "dropped" for v in exercises.get(n).variants)]
    assert len(dropped) >= 12, dropped


@pytest.mark.parametrize("name", [n for n in NAMES if exercises.get(n).weights])
def test_transposed_weight_is_rejected(name):
    """Transposing a weight argument: recognised where the shapes allow it, a clear "raised"
    hint pointing at the transposition where they do not."""
    ex = exercises.get(name)
    args = ex.arg_names
    assert any(v.kind == "transposed" for v in ex.variants) or ex.name == "03.lstm_step_adjoint"
    ref = ex.reference
    for w in ex.weights:
        i = args.index(w)

        def fn(*a, i=i):
            a = list(a)
            a[i] = a[i].T.copy()
            return ref(*a)

        report = exercises.check(name, fn)
        assert not report.passed
        assert _mentions_case(report.hint), report.hint
        assert GENERIC not in report.hint
        assert ("transpos" in report.hint or "W^T" in report.hint or "^T" in report.hint), \
            report.hint


def test_transposed_variant_recognised_on_a_square_case():
    report = exercises.check("01.adjoint_step", lambda W, z, lam: exercises.reference(
        "01.adjoint_step")(W.T, z, lam))
    assert not report.passed and "[transposed]" in report.hint and "case 1 of 3" in report.hint


def test_one_component_wrong_is_named():
    ref = exercises.reference("03.lstm_step_adjoint")

    def fn(*a):
        lam_prev, lam_c_prev = ref(*a)
        return lam_prev, lam_c_prev + 1e-3
    report = exercises.check("03.lstm_step_adjoint", fn)
    assert not report.passed
    assert "only 'lam_c_prev' is wrong" in report.hint and "'lam_prev' right" in report.hint


def test_missing_batch_division_is_recognised():
    ref = exercises.reference("01.gradient_sums")

    def fn(x, u, z, lam):
        B = z.shape[1]
        return {k: v * B for k, v in ref(x, u, z, lam).items()}
    report = exercises.check("01.gradient_sums", fn)
    assert not report.passed and "batch size B" in report.hint


def test_a_function_that_raises_is_a_failing_report_not_an_exception():
    def stub(*args):
        raise NotImplementedError

    report = exercises.check("01.adjoint_step", stub)
    assert not report.passed and "not implemented yet" in report.hint
    assert isinstance(report.error, NotImplementedError)
    assert math.isinf(report.max_error)
    report = exercises.check("01.adjoint_step", lambda W, z, lam: W @ z)  # (m,m) @ (B,m)
    assert not report.passed and "raised" in report.hint and "transposed" in report.hint


def test_nan_and_zero_outputs_are_named():
    xp = backend.xp()
    report = exercises.check("01.adjoint_step", lambda W, z, lam: lam * xp.nan)
    assert "NaN" in report.hint
    report = exercises.check("01.adjoint_step", lambda W, z, lam: 0 * lam)
    assert "all zeros" in report.hint


def test_malformed_answers_raise_clear_errors():
    with pytest.raises(TypeError, match="01.adjoint_step.*array of shape"):
        exercises.check("01.adjoint_step", lambda W, z, lam: [1.0, 2.0])
    with pytest.raises(ValueError, match=r"returned shape \(4, 3\), expected \(3, 4\).*transposed"):
        exercises.check("01.adjoint_step", lambda W, z, lam: lam.T.copy())
    with pytest.raises(TypeError, match="tuple of 2 arrays \\(delta, lam_T\\)"):
        exercises.check("01.delta_lambda_T", lambda *a: exercises.reference(
            "01.delta_lambda_T")(*a)[1])
    with pytest.raises(ValueError, match="returned 1 values; expected 2"):
        exercises.check("01.delta_lambda_T", lambda *a: exercises.reference(
            "01.delta_lambda_T")(*a)[:1])
    with pytest.raises(ValueError, match="keys.*missing \\['b1'\\]"):
        exercises.check("01.gradient_sums", lambda *a: {
            k: v for k, v in exercises.reference("01.gradient_sums")(*a).items() if k != "b1"})
    with pytest.raises(TypeError, match="must return a dict"):
        exercises.check("01.gradient_sums", lambda *a: 0.0)
    with pytest.raises(TypeError, match="real number"):
        exercises.check("05.fw_angle", lambda D, g: "45")
    with pytest.raises(TypeError, match="fn must be a function"):
        exercises.check("01.adjoint_step", "my_adjoint_step")
    with pytest.raises(ValueError, match="unknown exercise 'nope'.*01.adjoint_step"):
        exercises.check("nope", lambda: None)
    with pytest.raises(TypeError, match="exercise name must be a string"):
        exercises.describe(3)


def test_arguments_are_copies():
    """A function that overwrites its inputs does not corrupt the reference's inputs."""
    ref = exercises.reference("01.adjoint_step")

    def fn(W, z, lam):
        out = ref(W, z, lam)
        W[...] = 0.0
        lam[...] = 0.0
        return out
    assert exercises.check("01.adjoint_step", fn).passed


def test_references_agree_with_the_package_sweeps():
    """The few-line references follow the package: 01.adjoint_sweep and 01.adjoint_step
    against rnn.sweep's adjoints, 01.gradient_sums against rnn.sweep's gradients."""
    xp = backend.xp()
    params = rnn.init_params(3, 4, 1, seed=2, bias_scale=0.2)
    u = backend.randn((5, 3, 3), seed=3)
    y = backend.asarray([[1.0], [0.0], [1.0]])
    s = rnn.sweep(params, u, y)
    lam = exercises.reference("01.adjoint_sweep")(params["W_rec"], params["W_out"], s.traj.z,
                                                   s.adj.delta_out)
    assert float(xp.abs(lam - s.adj.lam).max()) < 1e-13
    grads = exercises.reference("01.gradient_sums")(s.traj.x, u, s.traj.z, s.adj.lam)
    for k in grads:
        assert float(xp.abs(grads[k] - s.grads[k]).max()) < 1e-13, k
    delta, lam_T = exercises.reference("01.delta_lambda_T")(params["W_out"], params["b2"],
                                                            s.traj.x[-1], y)
    assert float(xp.abs(lam_T - s.adj.lam[-1]).max()) < 1e-13


def test_rk4_reference_agrees_with_the_discrete_adjoint():
    from manualgrad.ode import adjoint, node, solvers
    theta = node.init_params(3, 5, seed=1, scale=1.0)
    field = node.NODEField("tanh")
    z0 = backend.randn((2, 3), seed=4)
    sol = solvers.odeint_grid(field, z0, theta, [0.0, 0.4], "rk4")
    a1 = backend.randn((2, 3), seed=5)
    res = adjoint.discrete_adjoint(field, sol, theta, a1)
    a0 = res[0] if isinstance(res, tuple) else res.a0
    mine = exercises.reference("04.rk4_step_adjoint")(
        lambda t, z: field.f(t, z, theta), lambda t, z, a: field.vjp(t, z, theta, a)[0],
        0.0, z0, 0.4, a1)
    assert float(backend.xp().abs(mine - a0).max()) < 1e-13


def test_report_string_lists_cases_and_hint():
    report = exercises.check("01.adjoint_step", lambda W, z, lam: lam @ W)
    text = str(report)
    assert "FAILED" in text and "Hint:" in text and "<-- fails" in text
    assert len([r for r in text.splitlines() if r.startswith("  B=")]) == 3 and not report


# ----------------------------------------------------------------------------- docs and notebooks
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_docs_are_generated_from_the_registry():
    """docs/exercises.md and docs/solutions.md are up to date (regenerate with
    ``python -m manualgrad.exercises._docs``)."""
    from manualgrad.exercises import _docs
    for fname, text in (("exercises.md", _docs.exercises_md()),
                        ("solutions.md", _docs.solutions_md())):
        on_disk = (ROOT / "docs" / fname).read_text(encoding="utf-8")
        assert on_disk == text, "docs/%s is out of date: python -m manualgrad.exercises._docs" % fname
    solutions = (ROOT / "docs" / "solutions.md").read_text(encoding="utf-8")
    for name in NAMES:
        assert "<details><summary>%s: " % name in solutions
    assert solutions.count("<details>") == solutions.count("</details>") == len(NAMES) + 1
    assert "\n\n```python\n" in solutions and "```\n\n</details>" in solutions


def _notebook(lec):
    import json
    path = next((ROOT / "lectures").glob("%s_*.ipynb" % lec))
    return path, json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("lec", exercises.lectures())
def test_notebook_has_goals_colab_and_every_checked_exercise(lec):
    import manualgrad
    path, nb = _notebook(lec)
    first = "".join(nb["cells"][0]["source"])
    url = manualgrad.REPOSITORY_URL
    owner_repo = url.split("github.com/", 1)[1]
    assert "**Learning goals.**" in first and "**Prerequisites / time.**" in first
    assert 3 <= first.split("**Learning goals.**")[1].split("**Prerequisites")[0].count("\n- ") <= 5
    assert ("https://colab.research.google.com/github/%s/blob/main/lectures/%s"
            % (owner_repo, path.name)) in first
    install = "".join(nb["cells"][1]["source"])
    assert '"google.colab" in sys.modules' in install and '"%s"' % url in install
    sources = ["".join(c["source"]) for c in nb["cells"]]
    assert any(s.startswith("## Exercises (checked)") for s in sources)
    for name in exercises.names(lec):
        assert any('solution = exercises.reference("%s")' % name in s for s in sources), name
        assert any('exercises.check("%s", solution)' % name in s for s in sources), name
    ids = [c["id"] for c in nb["cells"]]
    assert len(ids) == len(set(ids))
