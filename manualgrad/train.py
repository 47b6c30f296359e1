"""The training loop: minibatches, seeded shuffling, a progress bar, per-epoch metrics, NaN stop,
gradient clipping, checkpoints, and results files.

It knows only the interface, not any model's equations::

    grad_fn(params, u_batch, y_batch) -> (F, grads)      # e.g. functools.partial(rnn.loss_and_grad, ...)
    optimizer.step(params, grads) -> params              # e.g. optim.SGD(lr), optim.Adam(lr)
    evaluate(params) -> dict of metrics                  # called at epoch 0 (initialisation) and after each epoch

Data are time-major: u (T, n, p), y with examples on its first axis (many-to-one) or second
(many-to-many, ``example_axis=1``).

Files (host NumPy at this edge; nothing inside the engine converts):

- :func:`save_checkpoint` / :func:`load_checkpoint`: parameters in a ``.npz`` (one entry
  ``params/<name>`` per array, exact bytes and dtype) plus a JSON header in the entry
  ``__manualgrad__`` (format tag, version, names, dtypes, shapes, the caller's ``meta``). Loading
  gives the same bits, in the saved dtype, on the active backend. No pickles are written or read.
- :func:`write_json`: strict JSON (RFC 8259). NumPy scalars and arrays become plain numbers and
  lists; **NaN and +-Inf become ``null``** (JSON has no NaN; ``null`` is what every parser
  accepts and what ``JSON.stringify`` writes). Why a run diverged is in its ``stopped`` text.
- :func:`write_history_csv`: one row per entry of ``History.epochs`` (row 0 = initialisation),
  header = the union of the rows' keys; floats in shortest round-trip form, **non-finite floats
  as ``nan``, ``inf``, ``-inf``** (``float()`` and pandas read them back), missing cells empty.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from numbers import Real

from . import __version__, backend
from ._validate import positive_int
from .optim.clip import clip_by_global_norm

__all__ = ["History", "fit", "classification_error", "minibatches", "save_checkpoint",
           "load_checkpoint", "write_json", "write_history_csv", "to_jsonable",
           "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "manualgrad-checkpoint"
_CHECKPOINT_VERSION = 1
_HEADER_KEY = "__manualgrad__"
_PARAM_PREFIX = "params/"


@dataclass
class History:
    """Per-epoch metrics (row 0 is the initialisation) and how training ended."""

    epochs: list = field(default_factory=list)
    stopped: str = ""
    wall_time: float = 0.0
    params: dict = None

    def column(self, name):
        return [row.get(name) for row in self.epochs]


def classification_error(yhat, y):
    """Fraction misclassified: argmax over classes (l > 1, y integer or one-hot), or yhat > 1/2 (l = 1)."""
    yhat, y = _on_backend(yhat), _on_backend(y)
    xp = backend.xp()
    if yhat.shape[-1] == 1:
        pred = (yhat[..., 0] > 0.5)
        truth = (y.reshape(pred.shape) > 0.5)
    else:
        pred = yhat.argmax(axis=-1)
        truth = y if y.ndim == pred.ndim else y.argmax(axis=-1)
    return float(xp.mean(pred != truth))


def _on_backend(a):
    """Array ``a`` on the active backend in its own dtype (no copy when it is there already)."""
    return backend.asarray(a, dtype=a.dtype) if backend.is_array(a) else a


def minibatches(n, batch_size, rng):
    """Shuffled index batches covering 0..n-1 once (the last may be smaller)."""
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def fit(params, grad_fn, u, y, *, epochs, batch_size, optimizer, seed=0, evaluate=None,
        progress=True, desc="train", example_axis=0, clip=None, checkpoint_path=None,
        workspace=True):
    """Train ``params`` with ``optimizer`` on (u, y); returns a :class:`History` (final params in it).

    Shuffling uses ``default_rng(seed)`` on the host. Training stops early, with the reason in
    ``History.stopped`` and a message on stderr, if the loss or a gradient becomes NaN/Inf (the
    offending step is not applied, so ``History.params`` stays finite). ``u``, ``y`` and the
    arrays of ``params`` may be host arrays: they are moved to the active backend once, in their
    own dtypes (``grad_fn`` gets backend batches and must return backend gradients).

    ``clip``: None, or a max global norm > 0; each minibatch gradient is passed through
    :func:`~manualgrad.optim.clip_by_global_norm` and each epoch row records ``clip_fired``, the
    number of steps of that epoch whose gradient was rescaled.
    ``checkpoint_path``: None, or a file path (its folder must exist); the params are saved there
    with :func:`save_checkpoint` at the end of every epoch (after ``evaluate``, overwriting the
    previous epoch's file; also on an epoch cut short by a NaN stop), with ``meta`` ``epoch``,
    ``row`` (that epoch's metrics) and ``stopped``.

    ``workspace``: the loop runs in one :class:`~manualgrad.backend.Workspace` (True: a new one
    for this loop; a Workspace: that one; False: none). It is the thread's default inside the
    loop, so a ``grad_fn`` calling the engine's ``loss_and_grad`` (whose default is that
    workspace) allocates no trajectory after the first minibatch of each shape.

    The progress bar shows the running mean loss ``F`` of the epoch and, if ``evaluate`` returns
    ``test_error``, the latest evaluated ``error``.

    Optimizers that take their gradients elsewhere than at ``params`` (Frank-Wolfe, FW
    Algorithm 1: :class:`~manualgrad.optim.FrankWolfe`) say so through two optional attributes,
    and ``fit`` then runs, for each minibatch, ``optimizer.steps_per_batch`` times (default 1)::

        point = optimizer.eval_point(params)        # default: params itself
        F, grads = grad_fn(point, u_batch, y_batch) # then the NaN check and ``clip``
        params = optimizer.step(params, grads)

    ``train_F`` is then the mean over the epoch's minibatches of the loss at the first of these
    points (for Frank-Wolfe: at omega + Delta_{k-1}, which is omega for the first inner step).
    An optimizer with a list attribute ``angles`` (Frank-Wolfe's FW-A5 diagnostic, in degrees)
    adds ``fw_angle_mean``, ``fw_angle_std`` (over the entries appended during the epoch; NaN
    if none) and ``fw_outer_steps`` (their number) to each epoch row.
    """
    import sys

    from tqdm import tqdm  # the plain console bar: tqdm.auto warns in kernels without ipywidgets

    epochs = positive_int(epochs, "epochs", minimum=0)
    batch_size = positive_int(batch_size, "batch_size")
    if clip is not None:
        if isinstance(clip, bool) or not isinstance(clip, Real):
            raise TypeError("clip must be None or a real number > 0 (max global norm), got %r"
                            % (clip,))
        if not float(clip) > 0:
            raise ValueError("clip must be > 0 (max global norm), got %r" % (clip,))
        clip = float(clip)
    if checkpoint_path is not None:
        checkpoint_path = _file_path(checkpoint_path, "checkpoint_path", "fit")
    # the data and the parameters go to the backend once (host arrays cannot be indexed with
    # the device index of each batch, nor mixed into device steps)
    u, y = _on_backend(u), _on_backend(y)
    params = {k: _on_backend(v) for k, v in params.items()}
    n = u.shape[1]
    if y.shape[example_axis] != n:
        raise ValueError("y has %d examples on axis %d but u has %d (axis 1)"
                         % (y.shape[example_axis], example_axis, n))
    rng = backend.host_rng(seed)
    xp = backend.xp()
    if workspace is True:
        workspace = backend.Workspace()
    ws = backend.resolve_workspace(workspace)
    inner = positive_int(getattr(optimizer, "steps_per_batch", 1), "optimizer.steps_per_batch")
    eval_point = getattr(optimizer, "eval_point", None)
    angles = getattr(optimizer, "angles", None)
    hist = History()
    t0 = time.perf_counter()
    row = {"epoch": 0}
    if evaluate is not None:
        row.update(evaluate(params))
    hist.epochs.append(row)
    shown = {}  # what the bar keeps showing between epochs: the latest evaluated error
    if "test_error" in row:
        shown["error"] = "%.4f" % row["test_error"]
    bar = tqdm(total=epochs * math.ceil(n / batch_size), desc=desc, disable=not progress,
               leave=False, dynamic_ncols=True)
    scope = contextlib.ExitStack()
    scope.enter_context(backend.use_workspace(ws))  # the loop's workspace is the default inside
    try:
        for epoch in range(1, epochs + 1):
            total, seen, fired = 0.0, 0, 0
            n_angles = len(angles) if angles is not None else 0
            for idx in minibatches(n, batch_size, rng):
                ix = backend.asarray(idx, dtype="int64")
                ub = u[:, ix]
                yb = y[ix] if example_axis == 0 else y[:, ix]
                for j in range(inner):
                    point = params if eval_point is None else eval_point(params)
                    F, grads = grad_fn(point, ub, yb)
                    F = float(F)
                    finite = math.isfinite(F) and all(bool(xp.isfinite(g).all())
                                                       for g in grads.values())
                    if not finite:
                        hist.stopped = ("non-finite loss or gradient at epoch %d (F = %r); "
                                        "stopped early. Lower the learning rate or the init "
                                        "scale, or clip gradients." % (epoch, F))
                        print("manualgrad.train: " + hist.stopped, file=sys.stderr)
                        break
                    if clip is not None:
                        grads, _, did = clip_by_global_norm(grads, clip)
                        fired += int(did)
                    params = optimizer.step(params, grads)
                    if j == 0:
                        total += F * len(idx)
                        seen += len(idx)
                if hist.stopped:
                    break
                bar.update(1)
                bar.set_postfix(F="%.4f" % (total / seen), **shown)
            row = {"epoch": epoch, "train_F": total / max(seen, 1)}
            if clip is not None:
                row["clip_fired"] = fired
            if angles is not None:
                new = [a for a in angles[n_angles:] if not math.isnan(a)]
                m = sum(new) / len(new) if new else float("nan")
                row["fw_angle_mean"] = m
                row["fw_angle_std"] = (math.sqrt(sum((a - m) ** 2 for a in new) / len(new))
                                       if new else float("nan"))
                row["fw_outer_steps"] = len(angles) - n_angles
            if not hist.stopped and evaluate is not None:
                row.update(evaluate(params))
            hist.epochs.append(row)
            if checkpoint_path is not None:
                save_checkpoint(checkpoint_path, params, epoch=epoch, row=row,
                                stopped=hist.stopped)
            if hist.stopped:
                break
            if "test_error" in row:
                shown["error"] = "%.4f" % row["test_error"]
            post = {k: ("%.4g" % v if isinstance(v, float) else v)
                    for k, v in row.items() if k not in ("epoch", "test_error")}
            post.update(shown)
            bar.set_postfix(post)
    finally:
        bar.close()
        scope.close()
    hist.wall_time = time.perf_counter() - t0
    hist.params = params
    return hist


# ------------------------------------------------------------------ files (the host-NumPy edge)

def _file_path(path, name, where):
    """``path`` as a str; TypeError if not path-like, FileNotFoundError if its folder is missing."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError("%s: %s must be a str or os.PathLike file path, got %s"
                        % (where, name, type(path).__name__))
    path = os.fspath(path)
    if not path or path.endswith(("/", os.sep)):
        raise ValueError("%s: %s must name a file, got %r" % (where, name, path))
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError("%s: %s %r: the folder %r does not exist; create it first "
                                "(os.makedirs)" % (where, name, path, parent))
    if os.path.isdir(path):
        raise ValueError("%s: %s %r is a folder, not a file" % (where, name, path))
    return path


def to_jsonable(obj, where="record"):
    """``obj`` with NumPy/CuPy scalars and arrays turned into plain Python; NaN/Inf -> None.

    Mappings become dicts with str keys, tuples and lists become lists, arrays nested lists (moved
    to the host). Anything else raises TypeError naming where it sits (``record['x'][2]``).
    """
    np = backend.np
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if backend.is_array(obj):
        if obj.dtype.kind not in "biuf":
            raise TypeError("%s: cannot write an array of dtype %s as JSON" % (where, obj.dtype))
        return to_jsonable(backend.to_numpy(obj).tolist(), where)
    if hasattr(obj, "keys") and hasattr(obj, "items"):
        out = {}
        for k, v in obj.items():
            if isinstance(k, (np.generic, int, float, bool)) or k is None:
                key = json.dumps(to_jsonable(k))       # what json itself does with such keys
            elif isinstance(k, str):
                key = k
            else:
                raise TypeError("%s: key %r is a %s; JSON keys must be strings or numbers"
                                % (where, k, type(k).__name__))
            out[key] = to_jsonable(v, "%s[%r]" % (where, k))
        return out
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, "%s[%d]" % (where, i)) for i, v in enumerate(obj)]
    raise TypeError("%s is a %s, which cannot be written as JSON (use numbers, strings, lists, "
                    "dicts, arrays)" % (where, type(obj).__name__))


def write_json(path, record, indent=1):
    """Write ``record`` (a mapping) as strict JSON via :func:`to_jsonable` (NaN/Inf -> null).

    The folder of ``path`` must exist. Returns ``path``.
    """
    path = _file_path(path, "path", "write_json")
    if not hasattr(record, "keys"):
        raise TypeError("write_json: record must be a mapping, got %s" % type(record).__name__)
    text = json.dumps(to_jsonable(record), indent=indent, allow_nan=False)
    with open(path, "w") as f:
        f.write(text + "\n")
    return path


def _csv_cell(v):
    np = backend.np
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))          # shortest round-trip form; 'nan', 'inf', '-inf'
    if isinstance(v, str):
        return v
    return json.dumps(to_jsonable(v, "cell"), allow_nan=False)


def write_history_csv(path, history):
    """Write per-epoch metrics as CSV: a header, then one row per epoch (row 0 = initialisation).

    ``history``: a :class:`History` or a list of row mappings. Columns: ``epoch`` first, then every
    other key in the order first seen. Missing cells are empty, non-finite floats ``nan``/``inf``.
    The folder of ``path`` must exist. Returns ``path``.
    """
    path = _file_path(path, "path", "write_history_csv")
    rows = history.epochs if isinstance(history, History) else history
    if not isinstance(rows, (list, tuple)) or not all(hasattr(r, "keys") for r in rows):
        raise TypeError("write_history_csv: history must be a History or a list of dicts, got %s"
                        % type(history).__name__)
    columns = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    if "epoch" in columns:
        columns.remove("epoch")
        columns.insert(0, "epoch")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([_csv_cell(r.get(c)) for c in columns])
    return path


def save_checkpoint(path, params, **meta):
    """Save ``params`` (mapping name -> array) bit-for-bit to the ``.npz`` file ``path``.

    Arrays are moved to the host with ``backend.to_numpy`` and stored under ``params/<name>`` with
    their dtype and exact bytes; ``meta`` (JSON-able keywords, e.g. ``epoch=3``) goes into the
    JSON header entry ``__manualgrad__`` (NaN/Inf -> null, tuples -> lists). The file is written
    under a temporary name and renamed, so an interrupted save never leaves half a checkpoint.
    ``path`` is used as given (no ``.npz`` is appended); its folder must exist. Returns ``path``.
    """
    path = _file_path(path, "path", "save_checkpoint")
    if not hasattr(params, "keys") or not hasattr(params, "items"):
        raise TypeError("save_checkpoint: params must be a mapping {name: array}, got %s"
                        % type(params).__name__)
    arrays, names = {}, []
    for k, a in params.items():
        if not isinstance(k, str) or not k:
            raise TypeError("save_checkpoint: parameter names must be non-empty strings, got %r"
                            % (k,))
        if not backend.is_array(a):
            raise TypeError("save_checkpoint: params[%r] must be an array, got %s"
                            % (k, type(a).__name__))
        host = backend.to_numpy(a)
        names.append(k)
        arrays[_PARAM_PREFIX + k] = host
    header = {"format": CHECKPOINT_FORMAT, "version": _CHECKPOINT_VERSION, "names": names,
              "dtypes": [arrays[_PARAM_PREFIX + k].dtype.str for k in names],
              "shapes": [list(arrays[_PARAM_PREFIX + k].shape) for k in names],
              "manualgrad": __version__, "backend": backend.get_backend(),
              "meta": to_jsonable(meta, "meta")}
    arrays[_HEADER_KEY] = backend.np.array(json.dumps(header, allow_nan=False))
    tmp = "%s.tmp-%d" % (path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            backend.np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(path):
    """Load a file written by :func:`save_checkpoint`: returns ``(params, meta)``.

    Each array comes back with the saved dtype and bits, on the active backend (whatever the
    active default dtype). FileNotFoundError if there is no such file; ValueError if the file is
    not a manualgrad checkpoint (not an .npz, no header, another format, or a newer version).
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError("load_checkpoint: path must be a str or os.PathLike file path, got %s"
                        % type(path).__name__)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError("load_checkpoint: no checkpoint file at path %r%s" % (
            path, " (it is a folder)" if os.path.isdir(path) else ""))
    not_ckpt = "load_checkpoint: %r is not a manualgrad checkpoint (%s); write one with " \
               "train.save_checkpoint"
    try:
        z = backend.np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ValueError(not_ckpt % (path, "cannot be read as .npz: %s" % exc)) from exc
    if not hasattr(z, "files"):
        raise ValueError(not_ckpt % (path, "a single .npy array, not an .npz archive"))
    with z:
        if _HEADER_KEY not in z.files:
            raise ValueError(not_ckpt % (path, "an .npz without the %r header; it holds %s"
                                         % (_HEADER_KEY, ", ".join(z.files[:8]) or "nothing")))
        try:
            header = json.loads(str(z[_HEADER_KEY][()]))
        except Exception as exc:
            raise ValueError(not_ckpt % (path, "unreadable header: %s" % exc)) from exc
        if not isinstance(header, dict) or header.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(not_ckpt % (path, "header format is not %r" % CHECKPOINT_FORMAT))
        version = header.get("version")
        if not isinstance(version, int) or version > _CHECKPOINT_VERSION:
            raise ValueError("load_checkpoint: %r has checkpoint version %r; this manualgrad "
                             "reads version <= %d (upgrade manualgrad)"
                             % (path, version, _CHECKPOINT_VERSION))
        params = {}
        for name, dt in zip(header["names"], header["dtypes"]):
            key = _PARAM_PREFIX + name
            if key not in z.files:
                raise ValueError("load_checkpoint: %r is damaged: the header lists %r but the "
                                 "archive has no entry %r" % (path, name, key))
            host = z[key]
            if host.dtype.str != dt:
                raise ValueError("load_checkpoint: %r is damaged: %r has dtype %s, header says %s"
                                 % (path, name, host.dtype.str, dt))
            params[name] = backend.asarray(host, dtype=host.dtype)
    return params, header.get("meta", {})
