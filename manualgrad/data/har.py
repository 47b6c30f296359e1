"""The UCI HAR data set ("Human Activity Recognition Using Smartphones") as sequences, and the
two-class task HAR-2 and its noisy version (FW Sec. V, Table I: 7352 train / 2947 test sequences
of 128 steps x 9 features).

Expected layout (the unzipped archive from the UCI repository; pass either the folder
``UCI HAR Dataset`` itself or the folder that contains it)::

    UCI HAR Dataset/
      train/y_train.txt                          labels 1..6, one per line
      train/Inertial Signals/body_acc_x_train.txt   one window per line: 128 floats
      train/Inertial Signals/body_acc_y_train.txt   ... 9 files: {body_acc, body_gyro,
      ...                                            total_acc} x {x, y, z}
      test/y_test.txt
      test/Inertial Signals/body_acc_x_test.txt ...

Labels (``activity_labels.txt``): 1 WALKING, 2 WALKING_UPSTAIRS, 3 WALKING_DOWNSTAIRS,
4 SITTING, 5 STANDING, 6 LAYING.

HAR-2. FW Sec. V cites FastGRNN [39] (Kusupati et al., NeurIPS 2018) for HAR-2 and says
nothing more about the classes. FastGRNN's data appendix: "The 6 activities were merged to get
the binarized version. The classes {Sitting, Laying, Walking_Upstairs} and {Standing, Walking,
Walking_Downstairs} were merged to obtain the two classes." These are the even UCI labels
{2, 4, 6} and the odd ones {1, 3, 5}; we give label 0 to the first group and 1 to the second,
i.e. **label = UCI label mod 2** (``grouping="fastgrnn"``, the default). The intuitive split
moving {1, 2, 3} -> 1 vs static {4, 5, 6} -> 0 is available as ``grouping="motion"``; it is
*not* what FastGRNN (and so FW) used.

Normalisation (FW: "all samples are normalized with zero mean and unit variance"): per channel
with training statistics (``normalize="channel"``, default). Noisy-HAR-2 (FW: "adding Gaussian
noise ... with a mean of zero and a variance of two"): ``noise_variance=2.0`` adds N(0, 2) to
every normalised input value, train and test, from ``noise_seed``.

Get the data: https://archive.ics.uci.edu/dataset/240/human+activity+recognition+using+smartphones
(the zip holds ``UCI HAR Dataset.zip``; unzip both).
"""
from __future__ import annotations

from .. import backend
from .._validate import integer as _integer
from . import transforms
from ._paths import require_dir, require_file, safe_join

__all__ = ["CHANNELS", "ACTIVITIES", "HAR2_GROUPINGS", "HAR_HINT", "har_root", "load_har_split",
           "har_labels", "har_sequences"]

CHANNELS = tuple("%s_%s" % (s, a) for s in ("body_acc", "body_gyro", "total_acc") for a in "xyz")
"""The 9 inertial-signal channels, in the order of the feature axis."""

ACTIVITIES = {1: "WALKING", 2: "WALKING_UPSTAIRS", 3: "WALKING_DOWNSTAIRS", 4: "SITTING",
              5: "STANDING", 6: "LAYING"}

HAR2_GROUPINGS = {
    "fastgrnn": {1: 1, 3: 1, 5: 1, 2: 0, 4: 0, 6: 0},
    "motion": {1: 1, 2: 1, 3: 1, 4: 0, 5: 0, 6: 0},
}
"""UCI label -> HAR-2 label. ``fastgrnn``: {Walking_Upstairs, Sitting, Laying} -> 0,
{Walking, Walking_Downstairs, Standing} -> 1 (FastGRNN's HAR-2, which FW uses; = label mod 2).
``motion``: static -> 0, moving -> 1 (not the published HAR-2)."""

HAR_HINT = ("Expected the UCI HAR Dataset layout: <folder>/{train,test}/y_{train,test}.txt and "
            "<folder>/{train,test}/Inertial Signals/{body_acc,body_gyro,total_acc}_{x,y,z}_"
            "{train,test}.txt, where <folder> is 'UCI HAR Dataset' or the folder holding it. "
            "Get it from https://archive.ics.uci.edu/dataset/240/"
            "human+activity+recognition+using+smartphones and unzip it.")

SPLITS = ("train", "test")


def har_root(folder):
    """The resolved ``UCI HAR Dataset`` folder: ``folder`` itself if it holds ``train/``, else
    ``folder/UCI HAR Dataset``; FileNotFoundError naming the layout otherwise."""
    root = require_dir(folder, "HAR folder", hint=HAR_HINT)
    if safe_join(root, "train").is_dir() or safe_join(root, "test").is_dir():
        return root
    inner = safe_join(root, "UCI HAR Dataset")
    if inner.is_dir():
        return inner
    raise FileNotFoundError("HAR folder %s holds neither train/ nor 'UCI HAR Dataset/'. %s"
                            % (root, HAR_HINT))


def _read_matrix(path, what):
    """Whitespace-separated floats, one row per non-empty line; ValueError on ragged rows."""
    np = backend.np
    rows = []
    width = None
    with open(path, "r") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if width is None:
                width = len(parts)
            elif len(parts) != width:
                raise ValueError("%s (%s): line %d has %d values, but line 1 has %d; every "
                                 "line must hold one window of the same length. %s"
                                 % (path, what, lineno, len(parts), width, HAR_HINT))
            rows.append(parts)
    if not rows:
        raise ValueError("%s (%s) is empty. %s" % (path, what, HAR_HINT))
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError as exc:
        raise ValueError("%s (%s): not all values are numbers (%s)" % (path, what, exc)) from None


def _read_labels(path):
    np = backend.np
    vals = []
    with open(path, "r") as f:
        for lineno, line in enumerate(f, 1):
            s = line.strip()
            if not s:
                continue
            try:
                v = int(s)
            except ValueError:
                raise ValueError("%s: line %d is %r, expected one integer label 1..6"
                                 % (path, lineno, s)) from None
            if v not in ACTIVITIES:
                raise ValueError("%s: line %d has label %d, expected 1..6 (%s)"
                                 % (path, lineno, v, ", ".join("%d %s" % kv
                                                               for kv in ACTIVITIES.items())))
            vals.append(v)
    if not vals:
        raise ValueError("%s holds no labels. %s" % (path, HAR_HINT))
    return np.asarray(vals, dtype=np.int64)


def load_har_split(folder, split="train", channels=CHANNELS):
    """Raw HAR windows of one split: ``(u, y)`` host arrays, u (n, T, C) float64 (T = 128 steps,
    C channels in the order of ``channels``), y (n,) int64 UCI labels 1..6.

    Every channel file must have the same number of windows (lines) and steps (values per
    line), and y the same number of lines. Only files inside ``folder`` are read.
    """
    if split not in SPLITS:
        raise ValueError("split must be 'train' or 'test', got %r" % (split,))
    chans = tuple(channels)
    bad = [c for c in chans if c not in CHANNELS]
    if bad or not chans:
        raise ValueError("channels must be a non-empty subset of %s, got %r" % (CHANNELS, bad
                                                                                 or chans))
    root = har_root(folder)
    mats = []
    for c in chans:
        path = require_file(root, split, "Inertial Signals", "%s_%s.txt" % (c, split),
                            what="HAR channel %s (%s)" % (c, split), hint=HAR_HINT)
        m = _read_matrix(path, "channel %s" % c)
        if mats and m.shape != mats[0][1].shape:
            raise ValueError("HAR %s: channel %s has %d windows of %d steps but channel %s has "
                             "%d of %d; all 9 channel files must match"
                             % (split, c, m.shape[0], m.shape[1], mats[0][0],
                                mats[0][1].shape[0], mats[0][1].shape[1]))
        mats.append((c, m))
    lab_path = require_file(root, split, "y_%s.txt" % split, what="HAR %s labels" % split,
                            hint=HAR_HINT)
    y = _read_labels(lab_path)
    n = mats[0][1].shape[0]
    if y.size != n:
        raise ValueError("HAR %s: %s has %d labels but the channel files have %d windows"
                         % (split, lab_path, y.size, n))
    u = backend.np.stack([m for _, m in mats], axis=-1)  # (n, T, C)
    return u, y


def har_labels(y, task="har2", grouping="fastgrnn"):
    """Map UCI labels 1..6 to the task's: ``"har2"`` by :data:`HAR2_GROUPINGS` [grouping] (0/1),
    ``"har6"`` to 0..5 (label - 1). Host int64 array."""
    np = backend.np
    y = np.asarray(y)
    if task == "har6":
        return (y - 1).astype(np.int64)
    if task != "har2":
        raise ValueError("task must be 'har2' or 'har6', got %r" % (task,))
    if grouping not in HAR2_GROUPINGS:
        raise ValueError("grouping must be one of %s, got %r"
                         % (", ".join(HAR2_GROUPINGS), grouping))
    table = HAR2_GROUPINGS[grouping]
    return np.array([table[int(v)] for v in y], dtype=np.int64)


def har_sequences(folder, task="har2", grouping="fastgrnn", normalize="channel",
                  noise_variance=None, noise_seed=0, targets="int", return_info=False):
    """HAR-2 (or the 6-class HAR) as time-major sequences:
    ``((u_train, y_train), (u_test, y_test))``.

    u: (128, n, 9) on the backend (7352 train, 2947 test windows in the full data set).
    ``normalize``: ``"channel"`` (default), ``"global"``, ``"feature"`` or None, with training
    statistics (:func:`~manualgrad.data.transforms.standardize`). ``noise_variance``: None, or
    the variance of the Gaussian noise added after normalisation to train and test (2.0 gives
    Noisy-HAR-2; noise from ``noise_seed`` for train and ``noise_seed + 1`` for test).
    ``targets``: ``"int"`` -> int64 labels (n,) for softmax + cross_entropy; ``"float"`` ->
    (n, 1) float 0/1 for a sigmoid or identity head with bce / mse (FW: "MSE ... for binary
    classification"; HAR-2 only). ``return_info`` adds a dict (counts, grouping, stats).
    """
    np = backend.np
    if targets not in ("int", "float"):
        raise ValueError("targets must be 'int' or 'float', got %r" % (targets,))
    if targets == "float" and task != "har2":
        raise ValueError("targets='float' is for the binary task har2, got task=%r" % (task,))
    if normalize is not None and normalize not in transforms.NORMALIZE_MODES:
        raise ValueError("normalize must be None or one of %s, got %r"
                         % (", ".join(transforms.NORMALIZE_MODES), normalize))
    parts = [load_har_split(folder, s) for s in SPLITS]
    ys = [har_labels(y, task, grouping) for _, y in parts]
    us = [np.ascontiguousarray(u.transpose(1, 0, 2)) for u, _ in parts]  # (T, n, C)
    stats = None
    if normalize is not None:
        us, stats = transforms.standardize(us[0], us[1], per=normalize)
        us = list(us)
    if noise_variance is not None:
        seed = _integer(noise_seed, "noise_seed", 0)
        us = [transforms.add_gaussian_noise(u, noise_variance, seed + i) for i, u in enumerate(us)]

    def lab(y):
        if targets == "float":
            return backend.asarray(y.astype(np.float64)[:, None])
        return backend.asarray(y, dtype="int64")

    out = tuple((backend.asarray(u), lab(y)) for u, y in zip(us, ys))
    if not return_info:
        return out
    C = 2 if task == "har2" else 6
    info = {"task": task, "grouping": grouping if task == "har2" else None,
            "T": int(us[0].shape[0]), "p": int(us[0].shape[2]), "channels": list(CHANNELS),
            "n_train": int(ys[0].size), "n_test": int(ys[1].size),
            "train_counts": np.bincount(ys[0], minlength=C).tolist(),
            "test_counts": np.bincount(ys[1], minlength=C).tolist(),
            "normalize": normalize, "noise_variance": noise_variance,
            "noise_seed": noise_seed if noise_variance is not None else None,
            "mean": None if stats is None else stats["mean"].tolist(),
            "std": None if stats is None else stats["std"].tolist()}
    return out + (info,)
