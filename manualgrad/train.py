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

from . import __version__, _validate, backend
from ._validate import positive_int
from .optim.clip import clip_by_global_norm

__all__ = ["History", "fit", "classification_error", "minibatches", "save_checkpoint",
           "load_checkpoint", "write_json", "write_history_csv", "to_jsonable",
           "CHECKPOINT_FORMAT", "PROGRESS_INTERVAL", "PROGRESS_INTERVAL_REDIRECTED"]

CHECKPOINT_FORMAT = "manualgrad-checkpoint"
_CHECKPOINT_VERSION = 1
_HEADER_KEY = "__manualgrad__"
_PARAM_PREFIX = "params/"

PROGRESS_INTERVAL = 0.5
"""Seconds between redraws of fit's progress bar on a terminal (at most)."""

PROGRESS_INTERVAL_REDIRECTED = 30.0
"""Seconds between redraws when stderr is not a terminal (a log file, a pipe, a notebook): the
bar appears only after this long, so a short phase leaves just its summary line in a log."""


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

    Optimizers may add entries to the epoch rows through two optional methods:
    ``optimizer.begin_epoch()``, called before each epoch's first minibatch, and
    ``optimizer.epoch_metrics()``, called after its last, returning a mapping whose items are
    appended to the row (after ``train_F`` and ``clip_fired``, before ``evaluate``'s). Frank-Wolfe
    reports its FW-A5 angle statistics this way (``fw_angle_mean``, ``fw_angle_std``,
    ``fw_outer_steps``); ``fit`` itself knows no optimizer by name.

    ``progress``: a bar on stderr while the loop runs, redrawn at most every
    :data:`PROGRESS_INTERVAL` seconds on a terminal; when stderr is not a terminal (a log file,
    a pipe) it stays silent for the first :data:`PROGRESS_INTERVAL_REDIRECTED` seconds and is
    then redrawn at most that often. It is removed when the loop ends, and one summary line
    stays: ``<desc>: <epochs done>/<epochs> epochs, <n> minibatches, <seconds> s; <last row>``.

    Every argument is checked before any work is done: TypeError/ValueError naming it.
    """
    import sys

    from tqdm import tqdm  # the plain console bar: tqdm.auto warns in kernels without ipywidgets

    where = "fit"
    _validate.array_mapping(params, "params", where)
    _validate.callable_arg(grad_fn, "grad_fn", where, "grad_fn(params, u_batch, y_batch) -> "
                           "(F, grads)")
    if not callable(getattr(optimizer, "step", None)):
        raise TypeError("fit: optimizer must have a step(params, grads) -> params method (e.g. "
                        "optim.SGD(lr), optim.Adam(lr)), got %r" % (optimizer,))
    _validate.callable_arg(evaluate, "evaluate", where, "evaluate(params) -> dict of metrics",
                           allow_none=True)
    hooks = {}
    for hook in ("begin_epoch", "epoch_metrics", "eval_point"):
        fn = getattr(optimizer, hook, None)
        if fn is not None:
            hooks[hook] = _validate.callable_arg(fn, "optimizer.%s" % hook, where,
                                                 "an optional optimizer hook")
    epochs = positive_int(epochs, "epochs", minimum=0)
    batch_size = positive_int(batch_size, "batch_size")
    if example_axis not in (0, 1) or isinstance(example_axis, bool):
        raise ValueError("fit: example_axis must be 0 (y: (n, ...)) or 1 (y: (T, n, ...)), got %r"
                         % (example_axis,))
    if not isinstance(desc, str):
        raise TypeError("fit: desc must be a str (the progress bar's label), got %r" % (desc,))
    if clip is not None:
        clip = _validate.positive_real(clip, "clip", where, role="max global norm", finite=False)
    if checkpoint_path is not None:
        checkpoint_path = _file_path(checkpoint_path, "checkpoint_path", "fit")
    for name, a, ndim in (("u", u, 2), ("y", y, 1 + example_axis)):
        if not (backend.is_array(a) and a.ndim >= ndim):
            raise TypeError("fit: %s must be an array with its examples on axis %d, got %s"
                            % (name, 1 if name == "u" else example_axis,
                               "shape %s" % (tuple(a.shape),) if backend.is_array(a)
                               else type(a).__name__))
    n = u.shape[1]
    if y.shape[example_axis] != n:
        raise ValueError("fit: y has %d examples on axis %d but u has %d (axis 1)"
                         % (y.shape[example_axis], example_axis, n))
    inner = positive_int(getattr(optimizer, "steps_per_batch", 1), "optimizer.steps_per_batch")
    # the data and the parameters go to the backend once (host arrays cannot be indexed with
    # the device index of each batch, nor mixed into device steps)
    u, y = _on_backend(u), _on_backend(y)
    params = {k: _on_backend(v) for k, v in params.items()}
    rng = backend.host_rng(seed)
    xp = backend.xp()
    if workspace is True:
        workspace = backend.Workspace()
    ws = backend.resolve_workspace(workspace)
    eval_point = hooks.get("eval_point")
    hist = History()
    t0 = time.perf_counter()
    row = {"epoch": 0}
    if evaluate is not None:
        row.update(evaluate(params))
    hist.epochs.append(row)
    shown = {}  # what the bar keeps showing between epochs: the latest evaluated error
    if "test_error" in row:
        shown["error"] = "%.4f" % row["test_error"]
    stream = sys.stderr
    tty = bool(getattr(stream, "isatty", lambda: False)())
    interval = PROGRESS_INTERVAL if tty else PROGRESS_INTERVAL_REDIRECTED
    bar = tqdm(total=epochs * math.ceil(n / batch_size), desc=desc, disable=not progress,
               leave=False, dynamic_ncols=True, file=stream, mininterval=interval,
               maxinterval=max(interval, 10.0), delay=0.0 if tty else interval)
    done = 0
    scope = contextlib.ExitStack()
    scope.enter_context(backend.use_workspace(ws))  # the loop's workspace is the default inside
    try:
        for epoch in range(1, epochs + 1):
            total, seen, fired = 0.0, 0, 0
            if "begin_epoch" in hooks:
                hooks["begin_epoch"]()
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
                bar.set_postfix(F="%.4f" % (total / seen), **shown, refresh=False)
                bar.update(1)  # redraws only when the interval has passed
            row = {"epoch": epoch, "train_F": total / max(seen, 1)}
            if clip is not None:
                row["clip_fired"] = fired
            if "epoch_metrics" in hooks:
                extra = hooks["epoch_metrics"]()
                if not hasattr(extra, "keys") or not hasattr(extra, "items"):
                    raise TypeError("fit: optimizer.epoch_metrics() must return a mapping of "
                                    "row entries, got %s" % type(extra).__name__)
                row.update(extra)
            done = epoch
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
            bar.set_postfix(post, refresh=False)
    finally:
        steps = bar.n
        bar.close()
        scope.close()
    hist.wall_time = time.perf_counter() - t0
    hist.params = params
    if progress:
        print(_summary(desc, done, epochs, steps, hist), file=stream, flush=True)
    return hist


def _summary(desc, done, epochs, steps, hist):
    """The line a finished progress bar leaves: the phase, how far it got, the last row."""
    last = hist.epochs[-1] if hist.epochs else {}
    shown = " ".join("%s=%s" % (k, "%.4g" % v if isinstance(v, float) else v)
                     for k, v in last.items() if k != "epoch")
    return "%s: %d/%d epochs, %d minibatches, %.1f s%s%s" % (
        desc, done, epochs, steps, hist.wall_time, "; " + shown if shown else "",
        "; stopped early (non-finite loss or gradient)" if hist.stopped else "")


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
    active default dtype). FileNotFoundError if there is no such file; ValueError naming the file
    if it is not a manualgrad checkpoint (not an .npz, no header, another format, or a newer
    version) or is damaged (truncated, a flipped byte caught by the archive's CRC, a garbled
    entry): the archive's own errors (``zipfile.BadZipFile``, ...) never escape.
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
    with open(path, "rb") as fh:  # closed on every path, also when the archive is unreadable
        try:
            z = backend.np.load(fh, allow_pickle=False)
        except Exception as exc:
            raise ValueError(not_ckpt % (path, "cannot be read as .npz: %s" % exc)) from None
        if not hasattr(z, "files"):
            raise ValueError(not_ckpt % (path, "a single .npy array, not an .npz archive"))
        with z:
            params, meta = _read_checkpoint(z, path, not_ckpt)
    return params, meta


def _read_checkpoint(z, path, not_ckpt):
    """The parameters and meta of the open .npz ``z`` (see :func:`load_checkpoint`)."""
    if _HEADER_KEY not in z.files:
        raise ValueError(not_ckpt % (path, "an .npz without the %r header; it holds %s"
                                     % (_HEADER_KEY, ", ".join(z.files[:8]) or "nothing")))
    try:
        header = json.loads(str(z[_HEADER_KEY][()]))
    except Exception as exc:
        raise ValueError(not_ckpt % (path, "unreadable header: %s: %s"
                                     % (type(exc).__name__, exc))) from None
    if not isinstance(header, dict) or header.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(not_ckpt % (path, "header format is not %r" % CHECKPOINT_FORMAT))
    version = header.get("version")
    if not isinstance(version, int) or version > _CHECKPOINT_VERSION:
        raise ValueError("load_checkpoint: %r has checkpoint version %r; this manualgrad "
                         "reads version <= %d (upgrade manualgrad)"
                         % (path, version, _CHECKPOINT_VERSION))
    damaged = "load_checkpoint: %r is damaged: %s; save it again or use an earlier " \
              "checkpoint"
    names, dtypes = header.get("names"), header.get("dtypes")
    if not (isinstance(names, list) and isinstance(dtypes, list)
            and len(names) == len(dtypes)
            and all(isinstance(x, str) for x in names + dtypes)):
        raise ValueError(damaged % (path, "the header's names and dtypes are not two lists "
                                    "of strings of one length"))
    params = {}
    for name, dt in zip(names, dtypes):
        key = _PARAM_PREFIX + name
        if key not in z.files:
            raise ValueError("load_checkpoint: %r is damaged: the header lists %r but the "
                             "archive has no entry %r" % (path, name, key))
        try:   # a flipped byte: zipfile's BadZipFile (CRC), a garbled .npy header, ...
            host = z[key]
        except Exception as exc:
            raise ValueError(damaged % (path, "entry %r cannot be read (%s: %s)"
                                        % (key, type(exc).__name__, exc))) from None
        if host.dtype.str != dt:
            raise ValueError("load_checkpoint: %r is damaged: %r has dtype %s, header says %s"
                             % (path, name, host.dtype.str, dt))
        params[name] = backend.asarray(host, dtype=host.dtype)
    return params, header.get("meta", {})
