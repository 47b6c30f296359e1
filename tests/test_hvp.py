"""Hessian-vector products by the second-order adjoint (JP Sec. I, refs [4],[5]; JP eqs. 5-13).

H v from :func:`manualgrad.rnn.hvp` is checked against central differences of the exact gradient
along v, (g(P + h v) - g(P - h v)) / 2h or the 4-point stencil, across hypothesis cases covering
every hidden activation, head, loss, many-to-one/many and x0; each intermediate tangent of
:func:`manualgrad.rnn.hvp_sweep` against differences of the first-order sweep; symmetry
<w, H v> = <v, H w>; linearity; a full Hessian built column by column; and that the comparison
catches a 0.05%-wrong H v and a sweep that forgets sigma''. Derivation: docs/hvp.md.
"""
import numpy as np
import pytest
from hypothesis import given, settings

from manualgrad import activations, backend, check, rnn, testing

TOL = check.SECOND_ORDER["float64"]  # done-when: H v against differences of the gradient
EPS = float(np.finfo(np.float64).eps)


def _direction(params, seed):
    """A random, non-uniform direction N(0, 1) per entry, like params (seeded, host-drawn)."""
    rng = np.random.default_rng(seed)
    return {k: backend.randn(a.shape, rng=rng) for k, a in params.items()}


def _stencil(prob, sw):
    """(h, order): the 4-point stencil with h = 1e-4; with relu the 2-point one with h = 1e-5.

    h shrinks further when a pre-activation is steep along v (|z_dot|, |o_dot| large, e.g. an
    exploding identity recurrence), so that no pre-activation moves by more than 2e-3 (4-point)
    or 2e-5 (2-point) per step h, which keeps the truncation error of either stencil far below
    1e-6 relative. The round-off floor of :func:`hvp_errors` grows like 1/h accordingly.
    """
    h, order, reach = (1e-5, 2, 2e-5) if prob.has_kinks else (1e-4, 4, 2e-3)
    steep = max(float(np.abs(sw.z_dot).max()), float(np.abs(sw.o_dot).max()))
    return min(h, reach / max(steep, 1.0)), order


def _central(f, h, order):
    """Central difference at 0 of a dict-valued f(t), key by key."""
    if order == 2:
        a, b = f(-h), f(h)
        return {k: (b[k] - a[k]) / (2 * h) for k in a}
    m2, m1, p1, p2 = f(-2 * h), f(-h), f(h), f(2 * h)
    return {k: (m2[k] - 8 * m1[k] + 8 * p1[k] - p2[k]) / (12 * h) for k in m2}


def _shifted(params, v, t):
    return {k: params[k] + t * v[k] for k in params}


def fd_hvp(prob, v, h, order):
    """Directional derivative of the exact gradient along v: the reference for H v."""
    return _central(lambda t: rnn.loss_and_grad(_shifted(prob.params, v, t), prob.u, prob.y,
                                                **prob.kwargs)[1], h, order)


def _norm(d):
    return float(np.sqrt(sum(float((backend.to_numpy(a) ** 2).sum()) for a in d.values())))


ROUNDOFF = 300
"""The gradient's difference quotient is resolved to atol = ROUNDOFF eps max(1, |F|, ||grad||) / h.

The gradient carries round-off accumulated over T steps and the sums over T*B rows, more than
the 10 eps |F| of a function value (:func:`check.fd_atol`). With 10 here, a few cases in 10^4
whose H v is small failed at 1e-6; with 300, the largest error over 20,000 hypothesis cases
(every activation, head, loss, many-to-one/many, x0) was 7e-8."""


def hvp_errors(prob, v, hv, h, order, tol=TOL):
    """Per-parameter :func:`check.fd_error` of ``hv`` against :func:`fd_hvp`, and the atol used.

    The relative error has the floor atol / tol (see :data:`ROUNDOFF`): an H v component smaller
    than that must match to atol absolutely, which is all the differences can resolve.
    """
    num = fd_hvp(prob, v, h, order)
    F, g = prob.loss_and_grad()
    atol = ROUNDOFF * EPS * max(1.0, abs(float(F)), _norm(g)) / h
    return {k: check.fd_error(hv[k], num[k], F, tol=tol, atol=atol) for k in hv}, atol


def _off_kinks_along(prob, sw, h, order):
    """Keep relu inputs farther from 0 than the stencil can move them (10x the linear reach)."""
    if prob.has_kinks:
        reach = (2 if order == 4 else 1) * h * max(float(np.abs(sw.z_dot).max()),
                                                   float(np.abs(sw.o_dot).max()))
        prob.assume_off_kinks(max(1e-3, 10 * reach))


def _hvp_sweep(prob, v):
    return rnn.hvp_sweep(prob.params, prob.u, prob.y, v, **prob.kwargs)


def _vdot(a, b):
    return float(sum(float((a[k] * b[k]).sum()) for k in a))


# ------------------------------------------------------------------ (a) against finite differences
@given(prob=testing.rnn_problems())
def test_hvp_matches_central_differences_of_the_gradient(prob):
    """H v = d/dt grad F(P + t v) for every activation, head, loss, many-to-one/many, x0 or not."""
    v = _direction(prob.params, prob.seed % 9973)
    sw = _hvp_sweep(prob, v)
    h, order = _stencil(prob, sw)
    _off_kinks_along(prob, sw, h, order)
    errs, _ = hvp_errors(prob, v, sw.hv, h, order)
    assert max(errs.values()) < TOL, "\n%s\n%s" % (prob, errs)
    for k in rnn.PARAM_NAMES:
        assert sw.hv[k].shape == prob.params[k].shape


@settings(max_examples=30)
@given(prob=testing.rnn_problems())
def test_tangent_and_second_order_adjoint_sweeps_match_finite_differences(prob):
    """Each line of the derivation on its own: the tangents of x_k, o, g = -dF_b/do, lambda_k and
    a_k = sigma'(z_k) o lambda_k equal central differences of the first-order sweep along v."""
    v = _direction(prob.params, prob.seed % 9973 + 1)
    sw = _hvp_sweep(prob, v)
    h, order = _stencil(prob, sw)
    _off_kinks_along(prob, sw, h, order)

    def quantities(t):
        s = rnn.sweep(_shifted(prob.params, v, t), prob.u, prob.y, **prob.kwargs)
        return {"x": s.traj.x, "z": s.traj.z, "o": s.traj.o, "g": s.adj.delta_out,
                "lam": s.adj.lam, "a": s.adj.lam_z}

    num = _central(quantities, h, order)
    ana = {"x": sw.x_dot, "z": sw.z_dot, "o": sw.o_dot, "g": sw.g_dot, "lam": sw.lam_dot,
           "a": sw.a_dot}
    q0 = quantities(0.0)
    assert float(np.abs(sw.x_dot[0]).max()) == 0.0  # x_0 is data
    for k in ana:
        atol = ROUNDOFF * EPS * max(1.0, float(np.linalg.norm(q0[k]))) / h
        err = check.rel_error(ana[k], num[k], floor=atol / TOL)
        assert err < TOL, (k, err, prob)


# ------------------------------------------------------------------ (b), (c) symmetry and linearity
@given(prob=testing.rnn_problems())
def test_hvp_is_symmetric(prob):
    """<w, H v> = <v, H w> for random v, w (the Hessian is symmetric; round-off only).

    Saturated softmax heads included: the softmax products shift v to its value at the arg-max
    first (activations._shift_to_argmax), which removes the cancellation in s o (v - s.v).
    """
    v = _direction(prob.params, prob.seed % 9973 + 2)
    w = _direction(prob.params, prob.seed % 9973 + 3)
    hv = rnn.hvp(prob.params, prob.u, prob.y, v, **prob.kwargs)
    hw = rnn.hvp(prob.params, prob.u, prob.y, w, **prob.kwargs)
    a, b = _vdot(w, hv), _vdot(v, hw)
    # relative, with a floor at 1e-4 of the Cauchy-Schwarz scale for near-cancelling products
    scale = max(abs(a), abs(b), 1e-4 * max(_norm(w) * _norm(hv), _norm(v) * _norm(hw)), 1e-300)
    assert abs(a - b) / scale < 1e-10, (a, b, prob)


@given(prob=testing.rnn_problems())
def test_hvp_is_linear_in_v(prob):
    """H (2 v + w) = 2 H v + H w, and H 0 = 0 exactly."""
    v = _direction(prob.params, prob.seed % 9973 + 4)
    w = _direction(prob.params, prob.seed % 9973 + 5)
    H = lambda d: rnn.hvp(prob.params, prob.u, prob.y, d, **prob.kwargs)  # noqa: E731
    hv, hw, hc = H(v), H(w), H({k: 2 * v[k] + w[k] for k in v})
    flat = lambda d: np.concatenate([np.ravel(d[k]) for k in rnn.PARAM_NAMES])  # noqa: E731
    ref = 2 * flat(hv) + flat(hw)
    scale = 2 * np.linalg.norm(flat(hv)) + np.linalg.norm(flat(hw))
    assert np.linalg.norm(flat(hc) - ref) <= 1e-10 * max(scale, 1e-300)
    zero = H({k: np.zeros_like(a) for k, a in prob.params.items()})
    assert all(float(np.abs(zero[k]).max()) == 0.0 for k in zero)


# ------------------------------------------------------------------ (d) the full Hessian
def _tiny(act, output, loss, many_to_many, seed=7):
    T, B, p, m, l = 4, 3, 2, 3, 2
    rng = np.random.default_rng(seed)
    P = rnn.init_params(p, m, l, seed=seed, bias_scale=0.3)
    u = rng.standard_normal((T, B, p))
    lead = (T, B) if many_to_many else (B,)
    y = rng.integers(0, l, lead) if loss == "cross_entropy" else rng.uniform(0, 1, lead + (l,))
    return testing.RNNProblem(P, u, y, 0.5 * rng.standard_normal((B, m)), act, output, loss,
                              many_to_many, seed)


@pytest.mark.parametrize("act,output,loss,many_to_many", [
    ("tanh", "softmax", "cross_entropy", True), ("softplus", "tanh", "mse", False),
    ("sigmoid", "sigmoid", "bce", False), ("tanh", "softmax", "mse", True)])
def test_full_hessian_built_column_by_column_is_symmetric_and_matches_fd(act, output, loss,
                                                                         many_to_many):
    """H e_j for every unit vector e_j (26 parameters): H = H^T, H v = (H) v, H = FD Jacobian of grad."""
    prob = _tiny(act, output, loss, many_to_many)
    names, P = rnn.PARAM_NAMES, prob.params
    sizes = [P[k].size for k in names]
    n = sum(sizes)

    def unflat(x):
        out, i = {}, 0
        for k, s in zip(names, sizes):
            out[k] = x[i:i + s].reshape(P[k].shape)
            i += s
        return out

    flat = lambda d: np.concatenate([backend.to_numpy(d[k]).ravel() for k in names])  # noqa: E731
    H = np.empty((n, n))
    Hfd = np.empty((n, n))
    for j in range(n):
        e = unflat(backend.asarray(np.eye(n)[j]))
        H[:, j] = flat(rnn.hvp(P, prob.u, prob.y, e, **prob.kwargs))
        Hfd[:, j] = flat(fd_hvp(prob, e, 1e-4, 4))
    assert np.linalg.norm(H - H.T) <= 1e-13 * np.linalg.norm(H)
    v = _direction(P, 11)
    assert np.allclose(H @ flat(v), flat(rnn.hvp(P, prob.u, prob.y, v, **prob.kwargs)),
                       rtol=1e-12, atol=1e-13 * np.linalg.norm(H))
    assert np.linalg.norm(H - Hfd) <= TOL * np.linalg.norm(H)
    assert np.linalg.norm(Hfd - Hfd.T) <= 1e-8 * np.linalg.norm(H)  # FD agrees up to its noise


# ------------------------------------------------------------------ (e) the comparison can fail
@settings(max_examples=10)
@given(prob=testing.rnn_problems(hidden=("tanh",), head=(("sigmoid", "bce"),)))
def test_comparison_catches_an_hvp_that_is_0p05_percent_wrong(prob):
    v = _direction(prob.params, prob.seed % 9973)
    sw = _hvp_sweep(prob, v)
    h, order = _stencil(prob, sw)
    hv = sw.hv
    errs, atol = hvp_errors(prob, v, hv, h, order)
    assert max(errs.values()) < TOL
    checked = 0
    for name in rnn.PARAM_NAMES:
        if np.linalg.norm(hv[name]) < 10 * atol / TOL:  # below the FD floor: judged absolutely
            continue
        bad = dict(hv)
        bad[name] = hv[name] * 1.0005
        errs_bad, _ = hvp_errors(prob, v, bad, h, order)
        assert errs_bad[name] > 1e-4 > TOL, (name, errs_bad)
        checked += 1
    assert checked >= 1


def test_comparison_catches_a_sweep_that_forgets_sigma_second_derivative():
    """The sigma''(z_k) o z_dot_k o lambda_k term matters: dropping it (a Gauss-Newton-like
    product) fails the check by far, while the full sweep passes."""
    tanh = activations.HIDDEN["tanh"]
    no_second = activations.Activation("tanh", tanh.f, tanh.grad,
                                       lambda z, a=None: np.zeros_like(z))
    prob = _tiny("tanh", "identity", "mse", False, seed=3)
    prob.params = {k: 2.0 * a if k.startswith("W") else a for k, a in prob.params.items()}
    v = _direction(prob.params, 0)
    good = rnn.hvp(prob.params, prob.u, prob.y, v, **prob.kwargs)
    bad = rnn.hvp(prob.params, prob.u, prob.y, v, **dict(prob.kwargs, activation=no_second))
    assert max(hvp_errors(prob, v, good, 1e-4, 4)[0].values()) < TOL
    assert max(hvp_errors(prob, v, bad, 1e-4, 4)[0].values()) > 1e-3


# ------------------------------------------------------------------ (f) bad directions
def _problem():
    prob = _tiny("tanh", "sigmoid", "bce", False)
    return prob, _direction(prob.params, 0)


@pytest.mark.parametrize("mutate,exc,match", [
    (lambda v: v.pop("b1"), ValueError, r"v must have exactly the keys of params .*missing b1"),
    (lambda v: v.update(W_Rec=v["W_rec"]), ValueError, r"unexpected W_Rec"),
    (lambda v: v.update(W_in=v["W_in"].T), ValueError,
     r"v\['W_in'\] has shape \(2, 3\), expected \(3, 2\) \(the shape of params\['W_in'\]\)"),
    (lambda v: v.update(b2=v["b2"][None]), ValueError, r"v\['b2'\] has shape \(1, 2\), expected \(2,\)"),
    (lambda v: v["W_rec"].__setitem__((0, 1), np.nan), ValueError,
     r"v\['W_rec'\] contains 1 non-finite value\(s\)"),
    (lambda v: v["W_out"].__setitem__((1, 0), np.inf), ValueError,
     r"v\['W_out'\] contains 1 non-finite value\(s\)"),
    (lambda v: v.update(b1=np.ones(3, dtype=int)), TypeError,
     r"v\['b1'\] must be a floating-point array, got an integer array"),
])
def test_bad_direction_raises_a_clear_error(mutate, exc, match):
    prob, v = _problem()
    mutate(v)
    with pytest.raises(exc, match=match):
        rnn.hvp(prob.params, prob.u, prob.y, v, **prob.kwargs)


def test_direction_must_be_a_mapping():
    prob, v = _problem()
    with pytest.raises(TypeError, match="v must be a mapping like params with keys W_rec, W_in"):
        rnn.hvp(prob.params, prob.u, prob.y, [v[k] for k in rnn.PARAM_NAMES], **prob.kwargs)


def test_hvp_sweep_returns_the_gradient_and_tangent_shapes():
    prob = _tiny("tanh", "softmax", "cross_entropy", True)
    v = _direction(prob.params, 1)
    sw = _hvp_sweep(prob, v)
    F, g = prob.loss_and_grad()
    assert float(sw.F) == float(F) and all(np.array_equal(sw.grads[k], g[k]) for k in g)
    T, B, m = sw.traj.z.shape
    assert sw.x_dot.shape == (T + 1, B, m) and sw.lam_dot.shape == sw.a_dot.shape == (T, B, m)
    assert sw.o_dot.shape == sw.g_dot.shape == sw.traj.o.shape
    hv = rnn.hvp(prob.params, prob.u, prob.y, v, **prob.kwargs)
    assert all(np.array_equal(hv[k], sw.hv[k]) for k in hv)


CUPY_OK, CUPY_WHY = backend.cupy_available()


@pytest.mark.gpu
@pytest.mark.skipif(not CUPY_OK, reason="CuPy/GPU not available: " + CUPY_WHY)
@pytest.mark.parametrize("many_to_many", [False, True])
def test_cupy_hvp_matches_numpy_to_1e12(many_to_many):
    rng = np.random.default_rng(0)
    T, B, p, m, l = 20, 8, 3, 16, 3
    u = rng.standard_normal((T, B, p))
    lead = (T, B) if many_to_many else (B,)
    y = rng.integers(0, l, lead)
    kw = dict(x0=0.3 * rng.standard_normal((B, m)), activation="tanh", output="softmax",
              loss="cross_entropy", many_to_many=many_to_many)
    with backend.use_backend("numpy"):  # the reference on the host, whatever the suite's backend
        P = rnn.init_params(p, m, l, seed=1, bias_scale=0.2)
        v = _direction(P, 2)
        ref = rnn.hvp(P, u, y, v, **kw)
    with backend.use_backend("cupy"):
        got = rnn.hvp(rnn.init_params(p, m, l, seed=1, bias_scale=0.2), u, y,
                      {k: backend.asarray(a) for k, a in v.items()}, **kw)
        assert type(got["W_rec"]).__module__.startswith("cupy")
        for k in ref:
            diff = np.abs(backend.to_numpy(got[k]) - ref[k]).max()
            assert diff <= 1e-12 * max(1.0, np.abs(ref[k]).max()), (k, diff)
