"""The training loop: minibatches, seeded shuffling, a progress bar, per-epoch metrics, NaN stop.

It knows only the interface, not any model's equations::

    grad_fn(params, u_batch, y_batch) -> (F, grads)      # e.g. functools.partial(rnn.loss_and_grad, ...)
    optimizer.step(params, grads) -> params              # e.g. manualgrad.optim.sgd.SGD(lr)
    evaluate(params) -> dict of metrics                  # called at epoch 0 (initialisation) and after each epoch

Data are time-major: u (T, n, p), y with examples on its first axis (many-to-one) or second
(many-to-many, ``example_axis=1``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from . import backend
from ._validate import positive_int

__all__ = ["History", "fit", "classification_error", "minibatches"]


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
    xp = backend.array_module_of(yhat)
    if yhat.shape[-1] == 1:
        pred = (yhat[..., 0] > 0.5)
        truth = (y.reshape(pred.shape) > 0.5)
    else:
        pred = yhat.argmax(axis=-1)
        truth = y if y.ndim == pred.ndim else y.argmax(axis=-1)
    return float(xp.mean(pred != truth))


def minibatches(n, batch_size, rng):
    """Shuffled index batches covering 0..n-1 once (the last may be smaller)."""
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def fit(params, grad_fn, u, y, *, epochs, batch_size, optimizer, seed=0, evaluate=None,
        progress=True, desc="train", example_axis=0):
    """Train ``params`` with ``optimizer`` on (u, y); returns a :class:`History` (final params in it).

    Shuffling uses ``default_rng(seed)`` on the host. Training stops early, with the reason in
    ``History.stopped`` and a message on stderr, if the loss or a gradient becomes NaN/Inf.
    """
    import sys

    from tqdm.auto import tqdm

    epochs = positive_int(epochs, "epochs", minimum=0)
    batch_size = positive_int(batch_size, "batch_size")
    n = u.shape[1]
    if y.shape[example_axis] != n:
        raise ValueError("y has %d examples on axis %d but u has %d (axis 1)"
                         % (y.shape[example_axis], example_axis, n))
    rng = backend.host_rng(seed)
    xp = backend.xp()
    hist = History()
    t0 = time.perf_counter()
    row = {"epoch": 0}
    if evaluate is not None:
        row.update(evaluate(params))
    hist.epochs.append(row)
    bar = tqdm(total=epochs * math.ceil(n / batch_size), desc=desc, disable=not progress,
               leave=False, dynamic_ncols=True)
    try:
        for epoch in range(1, epochs + 1):
            total, seen = 0.0, 0
            for idx in minibatches(n, batch_size, rng):
                ix = backend.asarray(idx, dtype="int64")
                yb = y[ix] if example_axis == 0 else y[:, ix]
                F, grads = grad_fn(params, u[:, ix], yb)
                F = float(F)
                finite = math.isfinite(F) and all(bool(xp.isfinite(g).all())
                                                   for g in grads.values())
                if not finite:
                    hist.stopped = ("non-finite loss or gradient at epoch %d (F = %r); stopped "
                                    "early. Lower the learning rate or the init scale, or clip "
                                    "gradients." % (epoch, F))
                    print("manualgrad.train: " + hist.stopped, file=sys.stderr)
                    break
                params = optimizer.step(params, grads)
                total += F * len(idx)
                seen += len(idx)
                bar.update(1)
                bar.set_postfix(F="%.4f" % (total / seen))
            row = {"epoch": epoch, "train_F": total / max(seen, 1)}
            if hist.stopped:
                hist.epochs.append(row)
                break
            if evaluate is not None:
                row.update(evaluate(params))
            hist.epochs.append(row)
            bar.set_postfix({k: ("%.4g" % v if isinstance(v, float) else v)
                             for k, v in row.items() if k != "epoch"})
    finally:
        bar.close()
    hist.wall_time = time.perf_counter() - t0
    hist.params = params
    return hist
