"""Images of handwritten digits as sequences (JP Sec. IV-C, Table II; FW Pixel/Permute-MNIST).

Two sources, one path (:func:`sequences_from_images`):

- :func:`digit_sequences`: scikit-learn's **bundled** 8x8 digits (1797 images, values 0..16,
  shipped inside the scikit-learn package, no download), split here into train and test;
- :func:`mnist_sequences`: real MNIST (28x28) read from the four IDX files in a folder
  (:func:`manualgrad.data.idx.load_mnist`), with MNIST's own train/test split.

An image (H, W) becomes a sequence by one of three ``mode`` s (time-major, ``u[t]`` is the input
at step t+1):

================  ==========  ==========  =================================================
mode              steps T     features p  u_t
================  ==========  ==========  =================================================
``"rows"``        H           W           row t of the image
``"columns"``     W           H           column t (JP: "the i-th column of the image")
``"pixels"``      H * W       1           pixel t in row-major order (FW Pixel-MNIST)
================  ==========  ==========  =================================================

``permute=True`` reorders the steps by a fixed permutation drawn from ``perm_seed``
(:func:`~manualgrad.data.transforms.step_permutation`), the same for train and test and for every
example (JP: "a fixed permutation is applied ... the i-th permuted column"; FW Permute-MNIST
permutes the 784 pixel steps). Labels are restricted to ``classes`` and remapped to
0..C-1 in the order given (``classes=(0, 1, 2)`` keeps 0, 1, 2 as they are); they come back as
int64 arrays (B,), the form ``loss="cross_entropy"`` with ``output="softmax"`` takes.

Normalisation (``normalize``, default ``"global"``): zero mean and unit variance with the
statistics of the **training** set only, applied to both sets. ``"global"`` uses one mean and
std for all pixels, so the rows, columns and pixels sequences of an image hold the same values
in different orders; ``"channel"`` / ``"feature"`` are per feature / per step and feature
(:func:`~manualgrad.data.transforms.standardize`); None keeps the raw pixel values.

Arrays are built on the host (``backend.np``) and moved to the active backend at the end.
"""
from __future__ import annotations

from .. import backend
from .._validate import integer as _integer
from . import transforms

__all__ = ["MODES", "images_to_sequences", "sequences_from_images", "digit_sequences",
           "load_sklearn_digits", "mnist_sequences"]

MODES = ("rows", "columns", "pixels")

_SKLEARN_HINT = ("The bundled 8x8 digits come with scikit-learn: install it with "
                 "'pip install scikit-learn' (a dependency of manualgrad; it is used only for "
                 "this data set).")


def images_to_sequences(images, mode="rows"):
    """(n, H, W) images -> time-major (T, n, p) host float64 sequences; see the module table."""
    np = backend.np
    a = backend.to_numpy(images) if backend.is_array(images) else np.asarray(images)
    if a.dtype.kind not in "iuf":
        raise TypeError("images must be a real numeric array (n, H, W), got dtype %s" % a.dtype)
    if a.ndim != 3:
        raise ValueError("images must have shape (n, H, W), got %s" % (a.shape,))
    if mode not in MODES:
        raise ValueError("mode must be one of %s, got %r" % (", ".join(MODES), mode))
    a = a.astype(np.float64)
    n, H, W = a.shape
    if mode == "rows":
        u = a.transpose(1, 0, 2)
    elif mode == "columns":
        u = a.transpose(2, 0, 1)
    else:
        u = a.reshape(n, H * W).T[:, :, None]
    return np.ascontiguousarray(u)


def _labels(labels, n, name):
    np = backend.np
    y = backend.to_numpy(labels) if backend.is_array(labels) else np.asarray(labels)
    if y.dtype.kind == "f" and y.size and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise TypeError("%s must be integer class labels, got dtype %s" % (name, y.dtype))
    if y.shape != (n,):
        raise ValueError("%s must have shape (%d,) (one label per image), got %s"
                         % (name, n, y.shape))
    return y.astype(np.int64)


def _select(images, y, classes, name):
    """Keep the images whose label is in ``classes``; remap labels to positions in ``classes``."""
    np = backend.np
    keep = np.isin(y, classes)
    remap = {c: i for i, c in enumerate(classes)}
    y2 = np.array([remap[int(v)] for v in y[keep]], dtype=np.int64)
    if y2.size == 0:
        raise ValueError("%s: no image has a label in classes=%s" % (name, list(classes)))
    return images[keep], y2


def _classes(classes, y):
    np = backend.np
    if classes is None:
        return [int(c) for c in np.unique(y)]
    try:
        cl = [int(c) for c in classes]
    except (TypeError, ValueError):
        raise TypeError("classes must be None or a sequence of integer labels, got %r"
                        % (classes,)) from None
    if len(cl) < 2 or len(set(cl)) != len(cl):
        raise ValueError("classes must name at least 2 distinct labels, got %r" % (classes,))
    missing = sorted(set(cl) - set(int(c) for c in np.unique(y)))
    if missing:
        raise ValueError("classes %s do not occur in the labels (present: %s)"
                         % (missing, sorted(set(int(c) for c in np.unique(y)))))
    return cl


def sequences_from_images(images, labels, mode="rows", classes=None, permute=False, perm_seed=0,
                          test_fraction=0.25, seed=0, test=None, normalize="global",
                          return_info=False):
    """Digit images as a sequence classification task: ``((u_train, y_train), (u_test, y_test))``.

    images (n, H, W) (any real dtype), labels (n,) integers. ``test``: None to split
    ``images`` into train and test (stratified by class, ``test_fraction`` of each class to the
    test set, chosen by ``seed``; :func:`~manualgrad.data.transforms.stratified_split`), or
    ``(images_test, labels_test)`` for a given test set (MNIST's t10k files). Then: keep
    ``classes`` and remap labels to 0..C-1, turn images into sequences by ``mode``, apply the
    step permutation (``permute``, ``perm_seed``), normalise with training statistics
    (``normalize``). u arrays are (T, n, p) in the backend's float dtype, labels int64 (n,).

    ``return_info=True`` adds a third element, a JSON-able dict: mode, T, p, classes (original
    labels, in the order of the new labels 0..C-1), n_train, n_test, per-class counts, perm
    (the step permutation as a list, or None), normalize with its mean and std, and the split
    (seed and test_fraction, or "given").
    """
    np = backend.np
    imgs = backend.to_numpy(images) if backend.is_array(images) else np.asarray(images)
    if imgs.ndim != 3:
        raise ValueError("images must have shape (n, H, W), got %s" % (imgs.shape,))
    y = _labels(labels, imgs.shape[0], "labels")
    if mode not in MODES:
        raise ValueError("mode must be one of %s, got %r" % (", ".join(MODES), mode))
    if normalize is not None and normalize not in transforms.NORMALIZE_MODES:
        raise ValueError("normalize must be None or one of %s, got %r"
                         % (", ".join(transforms.NORMALIZE_MODES), normalize))
    cl = _classes(classes, y)
    if test is None:
        imgs_tr, y_tr = _select(imgs, y, cl, "images")
        tr, te = transforms.stratified_split(y_tr, test_fraction, seed)
        imgs_te, y_te = imgs_tr[te], y_tr[te]
        imgs_tr, y_tr = imgs_tr[tr], y_tr[tr]
        split = {"seed": int(seed), "test_fraction": float(test_fraction)}
    else:
        try:
            t_images, t_labels = test
        except (TypeError, ValueError):
            raise TypeError("test must be None or a pair (images_test, labels_test)") from None
        t_imgs = backend.to_numpy(t_images) if backend.is_array(t_images) else np.asarray(t_images)
        if t_imgs.ndim != 3 or t_imgs.shape[1:] != imgs.shape[1:]:
            raise ValueError("test images must have shape (n_test, %d, %d) like the training "
                             "images, got %s" % (imgs.shape[1], imgs.shape[2], t_imgs.shape))
        t_y = _labels(t_labels, t_imgs.shape[0], "test labels")
        imgs_tr, y_tr = _select(imgs, y, cl, "images")
        imgs_te, y_te = _select(t_imgs, t_y, cl, "test images")
        split = "given"
    u_tr = images_to_sequences(imgs_tr, mode)
    u_te = images_to_sequences(imgs_te, mode)
    perm = None
    if permute:
        perm = transforms.step_permutation(u_tr.shape[0], _integer(perm_seed, "perm_seed", 0))
        u_tr = transforms.permute_steps(u_tr, perm)
        u_te = transforms.permute_steps(u_te, perm)
    stats = None
    if normalize is not None:
        (u_tr, u_te), stats = transforms.standardize(u_tr, u_te, per=normalize)
    out = ((backend.asarray(u_tr), backend.asarray(y_tr, dtype="int64")),
           (backend.asarray(u_te), backend.asarray(y_te, dtype="int64")))
    if not return_info:
        return out
    info = {
        "mode": mode, "T": int(u_tr.shape[0]), "p": int(u_tr.shape[2]), "classes": cl,
        "n_train": int(y_tr.size), "n_test": int(y_te.size),
        "train_counts": np.bincount(y_tr, minlength=len(cl)).tolist(),
        "test_counts": np.bincount(y_te, minlength=len(cl)).tolist(),
        "perm": None if perm is None else perm.tolist(), "perm_seed": int(perm_seed) if permute
        else None, "split": split, "normalize": normalize,
        "mean": None if stats is None else stats["mean"].tolist(),
        "std": None if stats is None else stats["std"].tolist(),
    }
    return out + (info,)


def load_sklearn_digits():
    """``(images, labels)``: scikit-learn's bundled 8x8 digits, (1797, 8, 8) float64 in 0..16
    and (1797,) int64 in 0..9 (host arrays). scikit-learn is imported here, lazily."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("scikit-learn is needed for the bundled 8x8 digits but could not be "
                          "imported (%s). %s" % (exc, _SKLEARN_HINT)) from None
    d = load_digits()
    return backend.np.asarray(d.images, dtype=float), backend.np.asarray(d.target, dtype="int64")


def digit_sequences(mode="rows", classes=None, permute=False, perm_seed=0, test_fraction=0.25,
                    seed=0, normalize="global", return_info=False):
    """scikit-learn's 8x8 digits as sequences: ``((u_train, y_train), (u_test, y_test))``.

    ``mode="rows"``: 8 steps of 8 features (the image rows); ``"columns"``: 8 steps of 8;
    ``"pixels"``: 64 steps of 1. ``classes=(0, 1, 2)`` is JP Table II's subset (537 images:
    178 + 182 + 177). Split: stratified, ``test_fraction`` of each class to the test set,
    chosen by ``seed`` (default 0.25: 403 train and 134 test images for classes 0, 1, 2).
    Everything else as :func:`sequences_from_images`.
    """
    images, labels = load_sklearn_digits()
    return sequences_from_images(images, labels, mode=mode, classes=classes, permute=permute,
                                 perm_seed=perm_seed, test_fraction=test_fraction, seed=seed,
                                 normalize=normalize, return_info=return_info)


def mnist_sequences(folder, mode="columns", classes=(0, 1, 2), permute=False, perm_seed=0,
                    normalize="global", return_info=False):
    """Real MNIST from the IDX files in ``folder`` as sequences, MNIST's own train/test split.

    Defaults follow JP Table II: digits {0, 1, 2}, 28 steps of 28 features, u_i = the i-th
    column. File names and layout: :func:`manualgrad.data.idx.load_mnist`.
    """
    from .idx import load_mnist

    (x_tr, y_tr), (x_te, y_te) = load_mnist(folder)
    return sequences_from_images(x_tr, y_tr, mode=mode, classes=classes, permute=permute,
                                 perm_seed=perm_seed, test=(x_te, y_te), normalize=normalize,
                                 return_info=return_info)
