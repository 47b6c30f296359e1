"""The Long Time Gap task of JP Sec. IV-A (Fig. 2).

Each example is a sequence u_1..u_T of independent N(0, I_p) vectors (T = 50, p = 5 in JP) with
label y = 1 if 1^T u_s > 0 else 0, where s is the informative step (s = 4 in JP, far from the
output at step T). A perfect classifier exists, but the RNN must carry u_s across T - s steps.
"""
from __future__ import annotations

from .. import backend
from .._validate import positive_int

__all__ = ["long_time_gap", "split"]


def long_time_gap(n=8000, T=50, p=5, informative_step=4, seed=0):
    """Generate the LTG task: ``(u, y)`` with u (T, n, p) float and y (n, 1) float in {0, 1}.

    ``informative_step`` is 1-based (u_4 in the paper), 1 <= informative_step <= T. Drawn on
    the host with ``default_rng(seed)`` as one (n, T, p) block, so a seed gives the same data on
    every backend, then moved to the active backend.
    """
    n = positive_int(n, "n")
    T = positive_int(T, "T")
    p = positive_int(p, "p")
    s = positive_int(informative_step, "informative_step")
    if s > T:
        raise ValueError("informative_step must lie in [1, T] = [1, %d], got %d" % (T, s))
    rng = backend.host_rng(seed)
    u = rng.standard_normal((n, T, p)).transpose(1, 0, 2)  # (T, n, p)
    y = (u[s - 1].sum(axis=1) > 0).astype(float)[:, None]
    return backend.asarray(backend.np.ascontiguousarray(u)), backend.asarray(y)


def split(u, y, n_test):
    """Split time-major data along the example axis: the last ``n_test`` examples are the test set.

    Returns ``(u_train, y_train), (u_test, y_test)``. ``u`` (T, n, ...) and ``y`` (n, ...) must
    hold the same number n of examples (ValueError naming both counts otherwise).
    """
    for name, a, ndim, shape in (("u", u, 2, "(T, n, ...), time-major"), ("y", y, 1, "(n, ...)")):
        if not backend.is_array(a):
            raise TypeError("split: %s must be an array of shape %s, got %s"
                            % (name, shape, type(a).__name__))
        if a.ndim < ndim:
            raise ValueError("split: %s must be an array of shape %s, got shape %s"
                             % (name, shape, tuple(a.shape)))
    n = u.shape[1]
    if y.shape[0] != n:
        raise ValueError("split: y has %d examples (axis 0) but u has %d (axis 1)"
                         % (y.shape[0], n))
    n_test = positive_int(n_test, "n_test")
    if n_test >= n:
        raise ValueError("n_test must be smaller than the number of examples %d, got %d"
                         % (n, n_test))
    k = n - n_test
    return (u[:, :k], y[:k]), (u[:, k:], y[k:])
