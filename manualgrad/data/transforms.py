"""Transforms shared by the data loaders: normalisation with training statistics, stratified
splits, fixed step permutations and additive Gaussian noise (FW Noisy-HAR-2).

Everything here works on time-major sequences ``u`` of shape (T, n, p) (steps, examples,
features) and on either array module: a host NumPy array stays on the host, a backend array
stays on the backend. Random numbers are always drawn on the host (``backend.host_rng``), so a
seed gives the same numbers on NumPy and CuPy.

- :func:`standardize`: zero mean, unit variance using the statistics of the **first** array
  (the training set) for every array passed; ``per`` = ``"global"`` (one mean and std),
  ``"channel"`` (one per feature p, over steps and examples) or ``"feature"`` (one per step and
  feature, over examples). Features with std below ``eps`` are only centred (divided by 1).
- :func:`stratified_split`: seeded train/test indices with each class split in the same ratio.
- :func:`step_permutation` / :func:`permute_steps`: a fixed seeded permutation of the T steps,
  applied identically to every example (permuted MNIST, JP Sec. IV-C; FW Permute-MNIST).
- :func:`add_gaussian_noise`: u + N(0, variance) elementwise (FW Sec. V: Noisy-HAR-2 adds noise
  of mean 0 and variance 2 to the normalised HAR-2 inputs); usable on any data set.
"""
from __future__ import annotations

from .. import backend
from .._validate import integer as _integer, number as _number

__all__ = ["NORMALIZE_MODES", "standardize", "fit_standardizer", "apply_standardizer",
           "stratified_split", "step_permutation", "permute_steps", "add_gaussian_noise"]

NORMALIZE_MODES = ("global", "channel", "feature")
"""Values of ``per`` (or a loader's ``normalize``; None there means no normalisation)."""

_AXES = {"global": (0, 1, 2), "channel": (0, 1), "feature": (1,)}


def _sequences(u, name):
    """``u`` as a real floating (T, n, p) array of its own module (host or backend)."""
    if not backend.is_array(u):
        u = backend.np.asarray(u)
    if u.dtype.kind != "f":
        raise TypeError("%s must be a floating-point array (T, n, p), got dtype %s"
                        % (name, u.dtype))
    if u.ndim != 3:
        raise ValueError("%s must be a 3-d time-major array (T, n, p), got shape %s"
                         % (name, tuple(u.shape)))
    return u


def fit_standardizer(u_train, per="channel", eps=1e-8):
    """``(mean, std)`` of ``u_train`` (T, n, p), broadcastable to (T, n, p), on u_train's module.

    ``per``: see :data:`NORMALIZE_MODES`. ``std`` is replaced by 1 where it is below ``eps``
    (constant features, e.g. the always-blank corner pixels of the 8x8 digits).
    """
    u = _sequences(u_train, "u_train")
    if per not in _AXES:
        raise ValueError("per must be one of %s, got %r" % (", ".join(NORMALIZE_MODES), per))
    eps = _number(eps, "eps", minimum=0.0)
    if u.shape[1] < 1:
        raise ValueError("u_train has no examples (shape %s)" % (tuple(u.shape),))
    xp = backend.array_module_of(u)
    mean = u.mean(axis=_AXES[per], keepdims=True)
    std = u.std(axis=_AXES[per], keepdims=True)
    std = xp.where(std < eps, 1.0, std)
    return mean, std


def apply_standardizer(u, mean, std):
    """(u - mean) / std, checked for a matching feature axis."""
    u = _sequences(u, "u")
    if mean.shape[2] not in (1, u.shape[2]) or mean.shape[0] not in (1, u.shape[0]):
        raise ValueError("u has shape %s but the statistics were fitted on shape %s "
                         "(T and p must agree)" % (tuple(u.shape), tuple(mean.shape)))
    return (u - mean) / std


def standardize(u_train, *others, per="channel", eps=1e-8):
    """Normalise ``u_train`` and ``others`` with the mean and std of ``u_train`` only.

    Returns ``(normalised, stats)``: ``normalised`` a tuple (train first, then each of
    ``others``), ``stats`` a dict ``{"per", "mean", "std"}`` with the statistics as host NumPy
    arrays (squeezed: a scalar for ``global``, (p,) for ``channel``, (T, p) for ``feature``).
    Using training statistics only keeps the test set out of the preprocessing.
    """
    mean, std = fit_standardizer(u_train, per=per, eps=eps)
    out = tuple(apply_standardizer(a, mean, std) for a in (u_train,) + others)
    sq = {"global": lambda a: a.reshape(()), "channel": lambda a: a.reshape(-1),
          "feature": lambda a: a[:, 0, :]}[per]
    return out, {"per": per, "mean": backend.to_numpy(sq(mean)),
                 "std": backend.to_numpy(sq(std))}


def stratified_split(labels, test_fraction=0.25, seed=0):
    """Seeded stratified split: ``(train_idx, test_idx)``, sorted host int arrays.

    Each class c with n_c examples puts round(test_fraction * n_c) of them, clamped to
    [1, n_c - 1], in the test set, chosen by ``default_rng(seed)``; the two index sets are
    disjoint and cover every example. Every class needs at least 2 examples.
    """
    np = backend.np
    y = backend.to_numpy(labels) if backend.is_array(labels) else np.asarray(labels)
    if y.ndim != 1:
        raise ValueError("labels must be a 1-d array, got shape %s" % (y.shape,))
    if y.dtype.kind not in "iu":
        raise TypeError("labels must be integers, got dtype %s" % y.dtype)
    f = _number(test_fraction, "test_fraction")
    if not 0.0 < f < 1.0:
        raise ValueError("test_fraction must lie in (0, 1), got %r" % (test_fraction,))
    rng = backend.host_rng(_integer(seed, "seed", 0))
    test = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if idx.size < 2:
            raise ValueError("class %d has %d example(s); a stratified split needs at least 2 "
                             "per class" % (c, idx.size))
        k = min(max(int(round(f * idx.size)), 1), idx.size - 1)
        test.append(rng.permutation(idx)[:k])
    test = np.sort(np.concatenate(test))
    mask = np.ones(y.size, dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask), test


def step_permutation(T, seed=0):
    """A fixed permutation of the T steps (host int array) from ``default_rng(seed)``."""
    T = _integer(T, "T", 1)
    return backend.host_rng(_integer(seed, "seed", 0)).permutation(T)


def permute_steps(u, perm):
    """``u`` with its steps reordered: out[t] = u[perm[t]], the same for every example.

    ``perm`` must be a permutation of 0..T-1 (T = u.shape[0]).
    """
    u = _sequences(u, "u")
    np = backend.np
    pr = backend.to_numpy(perm) if backend.is_array(perm) else np.asarray(perm)
    T = u.shape[0]
    if pr.ndim != 1 or pr.dtype.kind not in "iu" or pr.size != T or \
            not np.array_equal(np.sort(pr), np.arange(T)):
        raise ValueError("perm must be a permutation of 0..%d (u has T = %d steps), got %r"
                         % (T - 1, T, pr if pr.size <= 20 else pr.shape))
    xp = backend.array_module_of(u)
    return u[xp.asarray(pr)]


def add_gaussian_noise(u, variance=2.0, seed=0):
    """``u + e`` with e i.i.d. N(0, variance), drawn on the host from ``default_rng(seed)``.

    FW Sec. V, Noisy-HAR-2: "Gaussian noise with a mean of zero and a variance of two" added to
    the (normalised) HAR-2 inputs. Any shape; the result is on ``u``'s array module and dtype.
    """
    if not backend.is_array(u):
        u = backend.np.asarray(u)
    if u.dtype.kind != "f":
        raise TypeError("u must be a floating-point array, got dtype %s" % u.dtype)
    variance = _number(variance, "variance", minimum=0.0)
    seed = _integer(seed, "seed", 0)
    e = backend.host_rng(seed).standard_normal(u.shape) * variance ** 0.5
    if backend.array_module_of(u) is backend.np:
        return u + e.astype(u.dtype, copy=False)
    return u + backend.asarray(e, dtype=u.dtype)
