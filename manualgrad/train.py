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
- :class:`StateFile`, :func:`save_state` / :func:`load_state`: the full training state of
  :func:`fit` (parameters, the optimizer's ``state_dict()``, the shuffling RNG, epoch and
  minibatch position, the history rows, the caller's ``carry``), so that ``fit(...,
  state=StateFile(path, resume=True))`` continues a run that was killed and ends bit-identical
  to one that never was (docs/study.md).
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
           "CHECKPOINT_FORMAT", "PROGRESS_INTERVAL", "PROGRESS_INTERVAL_REDIRECTED",
           "StateFile", "save_state", "load_state", "STATE_FORMAT"]

CHECKPOINT_FORMAT = "manualgrad-checkpoint"
_CHECKPOINT_VERSION = 1
_HEADER_KEY = "__manualgrad__"
_PARAM_PREFIX = "params/"
STATE_FORMAT = "manualgrad-train-state"
_STATE_VERSION = 1

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
    resumed: dict = None
    """Where ``fit`` took up the run from a state file (``{"path", "epoch", "batch",
    "complete"}``), or None for a run from the start."""

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
        workspace=True, state=None):
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

    ``state``: None, a file path, or a :class:`StateFile`: the run's full training state
    (parameters, ``optimizer.state_dict()``, the shuffling RNG, epoch and minibatch position,
    the rows so far, ``carry``) is written there atomically at the end of every epoch and, inside
    an epoch, after the first minibatch that ends ``StateFile.every_minutes`` after the last
    write (the previous file is kept as ``<path>.prev``). With ``StateFile(path, resume=True)``
    a run found there is taken up where it was written: a finished one is returned at once
    (``evaluate`` is not called again), an unfinished one continues, and the result is
    bit-identical to a run never interrupted (same backend; ``History.resumed`` says where it
    started). A damaged file is never loaded: the previous one is used, else ValueError naming
    the file(s); a state written by another configuration (parameters, data size, batch size,
    seed, optimizer, clip, ``StateFile.tag``) is a ValueError naming what differs. The
    optimizer needs ``state_dict()`` / ``load_state_dict()`` (SGD, Adam and FrankWolfe have
    them). Whatever ``grad_fn`` or ``evaluate`` accumulate between epochs must be in ``carry``
    for a resumed run to see it.

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
    state = _state_arg(state, optimizer)
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
    stream = sys.stderr
    n_batches = math.ceil(n / batch_size)
    fingerprint = None
    start = {"epoch": 1, "batch": 0, "total": 0.0, "seen": 0, "fired": 0}
    if state is not None:
        fingerprint = _fingerprint(params, optimizer, n, batch_size, seed, example_axis, clip,
                                   inner, state.tag)
        saved = state.load() if state.resume else None
        if saved is not None:
            params, start = _restore(saved, fingerprint, epochs, optimizer, rng, state, hist)
            if start["complete"]:
                hist.wall_time = time.perf_counter() - t0
                hist.params = params
                if progress:
                    print(_summary(desc, len(hist.epochs) - 1, epochs, 0, hist)
                          + " (complete in %s)" % hist.resumed["path"], file=stream, flush=True)
                return hist
    if not hist.epochs:
        row = {"epoch": 0}
        if evaluate is not None:
            row.update(evaluate(params))
        hist.epochs.append(row)
    shown = {}  # what the bar keeps showing between epochs: the latest evaluated error
    if "test_error" in hist.epochs[-1]:
        shown["error"] = "%.4f" % hist.epochs[-1]["test_error"]
    tty = bool(getattr(stream, "isatty", lambda: False)())
    interval = PROGRESS_INTERVAL if tty else PROGRESS_INTERVAL_REDIRECTED
    bar = tqdm(total=epochs * n_batches, desc=desc, disable=not progress,
               initial=(start["epoch"] - 1) * n_batches + start["batch"],
               leave=False, dynamic_ncols=True, file=stream, mininterval=interval,
               maxinterval=max(interval, 10.0), delay=0.0 if tty else interval)
    done = start["epoch"] - 1
    last_save = time.monotonic()

    def save(epoch, batch, rng_state, total, seen, fired, complete=False):
        state.save(params=params, optimizer=optimizer, rng_state=rng_state, epoch=epoch,
                   batch=batch, total=total, seen=seen, fired=fired, rows=hist.epochs,
                   stopped=hist.stopped, complete=complete, fingerprint=fingerprint,
                   wall_time=time.perf_counter() - t0)

    scope = contextlib.ExitStack()
    scope.enter_context(backend.use_workspace(ws))  # the loop's workspace is the default inside
    try:
        for epoch in range(start["epoch"], epochs + 1):
            total, seen, fired, skip = 0.0, 0, 0, 0
            if epoch == start["epoch"] and start["batch"]:   # resumed inside this epoch
                total, seen, fired, skip = (start["total"], start["seen"], start["fired"],
                                            start["batch"])
            elif "begin_epoch" in hooks:
                hooks["begin_epoch"]()
            rng_state = rng.bit_generator.state    # where this epoch's shuffle starts
            for b, idx in enumerate(minibatches(n, batch_size, rng)):
                if b < skip:
                    continue
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
                if (state is not None and state.every_s is not None and b + 1 < n_batches
                        and time.monotonic() - last_save >= state.every_s):
                    save(epoch, b + 1, rng_state, total, seen, fired)
                    last_save = time.monotonic()
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
            if state is not None:
                save(epoch + 1, 0, rng.bit_generator.state, 0.0, 0, 0,
                     complete=bool(hist.stopped) or epoch == epochs)
                last_save = time.monotonic()
            if hist.stopped:
                break
            if "test_error" in row:
                shown["error"] = "%.4f" % row["test_error"]
            post = {k: ("%.4g" % v if isinstance(v, float) else v)
                    for k, v in row.items() if k not in ("epoch", "test_error")}
            post.update(shown)
            bar.set_postfix(post, refresh=False)
        if state is not None and done < start["epoch"]:   # nothing left to train (epochs = 0)
            save(done + 1, 0, rng.bit_generator.state, 0.0, 0, 0, complete=True)
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


# ------------------------------------------------------------------ resumable training state

class StateFile:
    """Where :func:`fit` keeps its full training state, and whether it takes a run up from there.

    ``path``: the state file (its folder must exist); the one before is kept as
    ``<path>.prev``. ``resume``: continue from the file when there is one (a run with no file
    starts from the beginning). ``every_minutes``: also write inside an epoch, after the first
    minibatch that ends this long after the last write (None: at the end of epochs only; 0:
    after every minibatch). ``carry``: a mapping name -> list or dict that ``grad_fn`` or
    ``evaluate`` fill between epochs (values JSON-able or arrays); it is written with the state
    and restored in place on resume. ``tag``: any JSON-able value naming the run (e.g. a hash of
    its settings); a state file with another tag is refused.
    """

    def __init__(self, path, resume=False, every_minutes=10.0, carry=None, tag=None):
        self.path = _file_path(path, "path", "StateFile")
        self.prev = self.path + ".prev"
        self.resume = bool(resume)
        if every_minutes is None:
            self.every_s = None
        else:
            m = _validate.number(every_minutes, "every_minutes", minimum=0.0)
            self.every_s = 60.0 * float(m)
        carry = {} if carry is None else carry
        if not hasattr(carry, "items"):
            raise TypeError("StateFile: carry must be a mapping name -> list or dict, got %s"
                            % type(carry).__name__)
        for k, v in carry.items():
            if not isinstance(k, str) or not isinstance(v, (list, dict)):
                raise TypeError("StateFile: carry[%r] must be a list or dict under a str name, "
                                "got %s" % (k, type(v).__name__))
        self.carry = carry
        self.tag = to_jsonable(tag, "tag")
        self.skipped = []
        """Files :meth:`load` passed over as damaged: ``(path, reason)`` pairs."""

    def __repr__(self):
        return "StateFile(%r, resume=%s)" % (self.path, self.resume)

    def exists(self):
        """Whether a state file (or its previous one) is there."""
        return os.path.exists(self.path) or os.path.exists(self.prev)

    def save(self, **state):
        """Write ``state`` (with ``carry``) atomically; the current file becomes ``.prev``."""
        optimizer = state.pop("optimizer")
        state["optimizer"] = optimizer.state_dict()
        state["carry"] = {k: v for k, v in self.carry.items()}
        return save_state(self.path, state)

    def load(self):
        """The newest loadable state (a dict), or None when there is no file. A damaged file is
        skipped for ``.prev`` (and listed in :attr:`skipped`, with a warning on stderr); if no
        file can be read: ValueError naming each and why."""
        import sys
        problems = []
        for path in (self.path, self.prev):
            if not os.path.exists(path):
                continue
            try:
                st = load_state(path)
            except ValueError as exc:
                problems.append((path, str(exc)))
                continue
            if problems:
                self.skipped.extend(problems)
                print("manualgrad.train: %s; resuming from the previous state file %s"
                      % ("; ".join(p for _, p in problems), path), file=sys.stderr)
            st["_path"] = path
            return st
        if problems:
            raise ValueError("no usable training state: %s. Delete the file(s) to start the run "
                             "again from the beginning" % "; ".join(p for _, p in problems))
        return None


def _state_arg(state, optimizer):
    """``fit``'s ``state`` as a :class:`StateFile` (or None); the optimizer must have the
    ``state_dict`` protocol."""
    if state is None:
        return None
    if isinstance(state, (str, os.PathLike)) and not isinstance(state, bytes):
        state = StateFile(state)
    if not isinstance(state, StateFile):
        raise TypeError("fit: state must be None, a file path or a train.StateFile, got %s"
                        % type(state).__name__)
    for m in ("state_dict", "load_state_dict"):
        if not callable(getattr(optimizer, m, None)):
            raise TypeError("fit: state needs an optimizer with state_dict() and "
                            "load_state_dict() (SGD, Adam, FrankWolfe), got %r" % (optimizer,))
    return state


def _fingerprint(params, optimizer, n, batch_size, seed, example_axis, clip, inner, tag):
    """What a state file must agree on to be taken up by this call of ``fit``."""
    return {"params": [[k, str(a.dtype), list(a.shape)] for k, a in params.items()],
            "optimizer": type(optimizer).__name__, "n": int(n), "batch_size": int(batch_size),
            "seed": to_jsonable(seed, "seed"), "example_axis": int(example_axis),
            "clip": clip, "steps_per_batch": int(inner), "tag": tag,
            "backend": backend.get_backend()}


def _restore(saved, fingerprint, epochs, optimizer, rng, state, hist):
    """Put the state ``saved`` (from :meth:`StateFile.load`) back: returns ``(params, start)``."""
    path = saved["_path"]
    theirs = saved.get("fingerprint") or {}
    differ = sorted(k for k in set(fingerprint) | set(theirs)
                    if fingerprint.get(k) != theirs.get(k))
    if differ:
        raise ValueError("the training state %s was written by another run (%s differ: %s); "
                         "remove it, or run without resume" % (path, ", ".join(differ), "; ".join(
                             "%s %r here, %r there" % (k, fingerprint.get(k), theirs.get(k))
                             for k in differ)))
    trained = int(saved["epoch"]) - 1            # epochs finished
    if saved["batch"] == 0 and trained > epochs:
        raise ValueError("the training state %s holds %d epochs, more than epochs = %d"
                         % (path, trained, epochs))
    optimizer.load_state_dict(saved["optimizer"])
    rng.bit_generator.state = saved["rng_state"]
    hist.epochs = list(saved["rows"])
    hist.stopped = saved["stopped"]
    for k, v in state.carry.items():
        got = saved["carry"].get(k, type(v)())
        if isinstance(v, list):
            v[:] = got
        else:
            v.clear()
            v.update(got)
    complete = bool(saved["complete"]) and (bool(hist.stopped) or trained >= epochs)
    hist.resumed = {"path": path, "epoch": int(saved["epoch"]), "batch": int(saved["batch"]),
                    "complete": complete}
    start = {"epoch": int(saved["epoch"]), "batch": int(saved["batch"]),
             "total": saved["total"], "seen": saved["seen"], "fired": saved["fired"],
             "complete": complete}
    return dict(saved["params"]), start


_ARRAY_REF = "__array__"


def _pack(obj, arrays, where):
    """``obj`` as JSON-able values with each array replaced by ``{"__array__": name}`` (the
    host array stored in ``arrays[name]``); NaN and Inf stay (the state's JSON allows them)."""
    np = backend.np
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if backend.is_array(obj) or isinstance(obj, np.ndarray):
        name = "a/%d" % len(arrays)
        arrays[name] = backend.to_numpy(obj)
        return {_ARRAY_REF: name}
    if hasattr(obj, "keys") and hasattr(obj, "items"):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str) or k == _ARRAY_REF:
                raise TypeError("save_state: %s has the key %r; keys must be strings other than "
                                "%r" % (where, k, _ARRAY_REF))
            out[k] = _pack(v, arrays, "%s[%r]" % (where, k))
        return out
    if isinstance(obj, (list, tuple)):
        return [_pack(v, arrays, "%s[%d]" % (where, i)) for i, v in enumerate(obj)]
    raise TypeError("save_state: %s is a %s, which a state file cannot hold (numbers, strings, "
                    "lists, dicts, arrays)" % (where, type(obj).__name__))


def _unpack(obj, arrays):
    if isinstance(obj, dict):
        if len(obj) == 1 and _ARRAY_REF in obj:
            host = arrays[obj[_ARRAY_REF]]
            return backend.asarray(host, dtype=host.dtype)
        return {k: _unpack(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v, arrays) for v in obj]
    return obj


def _fsync_folder(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_state(path, state, keep_previous=True):
    """Write ``state`` (a mapping of JSON-able values and arrays, nested) to the ``.npz`` file
    ``path`` atomically: written and synced under a temporary name, the existing file renamed to
    ``<path>.prev`` (``keep_previous``), then the new one renamed into place, so that a crash at
    any moment leaves a complete file at ``path`` or ``<path>.prev``. Arrays keep their bits
    and dtype; floats round-trip exactly (NaN and Inf included). Returns ``path``."""
    path = _file_path(path, "path", "save_state")
    if not hasattr(state, "items"):
        raise TypeError("save_state: state must be a mapping, got %s" % type(state).__name__)
    arrays = {}
    skeleton = _pack(state, arrays, "state")
    header = {"format": STATE_FORMAT, "version": _STATE_VERSION, "manualgrad": __version__,
              "backend": backend.get_backend(), "state": skeleton,
              "arrays": {k: [a.dtype.str, list(a.shape)] for k, a in arrays.items()}}
    arrays[_HEADER_KEY] = backend.np.array(json.dumps(header))
    tmp = "%s.tmp-%d" % (path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            backend.np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and os.path.exists(path):
            os.replace(path, path + ".prev")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    _fsync_folder(os.path.dirname(os.path.abspath(path)))
    return path


def load_state(path):
    """Read a file written by :func:`save_state`: the state mapping, arrays on the active
    backend. Every entry is read and checked (the archive's CRCs, dtypes and shapes against the
    header) before anything is returned: a truncated, half-written or altered file is a
    ValueError naming it, never a partial state. FileNotFoundError if there is no file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError("load_state: no training state file at %r" % path)
    bad = "training state %r is damaged or not a state file (%s)"
    with open(path, "rb") as fh:
        try:
            z = backend.np.load(fh, allow_pickle=False)
        except Exception as exc:
            raise ValueError(bad % (path, "cannot be read as .npz: %s" % exc)) from None
        if not hasattr(z, "files"):
            raise ValueError(bad % (path, "a single .npy array, not an .npz archive"))
        with z:
            try:
                header = json.loads(str(z[_HEADER_KEY][()]))
            except Exception as exc:
                raise ValueError(bad % (path, "no readable header: %s: %s"
                                        % (type(exc).__name__, exc))) from None
            if not isinstance(header, dict) or header.get("format") != STATE_FORMAT:
                raise ValueError(bad % (path, "header format is not %r" % STATE_FORMAT))
            if not isinstance(header.get("version"), int) or header["version"] > _STATE_VERSION:
                raise ValueError("training state %r has version %r; this manualgrad reads "
                                 "version <= %d" % (path, header.get("version"), _STATE_VERSION))
            arrays = {}
            for name, (dt, shape) in header.get("arrays", {}).items():
                try:
                    host = z[name]
                except Exception as exc:
                    raise ValueError(bad % (path, "entry %r cannot be read: %s: %s"
                                            % (name, type(exc).__name__, exc))) from None
                if host.dtype.str != dt or list(host.shape) != shape:
                    raise ValueError(bad % (path, "entry %r is %s %s, the header says %s %s"
                                            % (name, host.dtype.str, host.shape, dt, shape)))
                arrays[name] = host
    try:
        return _unpack(header["state"], arrays)
    except KeyError as exc:
        raise ValueError(bad % (path, "the header names a missing entry %s" % exc)) from None


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
