"""Optimizers and gradient transforms; all take and return parameter mappings, never call a model.

:mod:`~manualgrad.optim.sgd`: :func:`sgd_step`, :class:`SGD`.
:mod:`~manualgrad.optim.adam`: :func:`adam_step`, :func:`adam_init`, :class:`Adam` (KB 2015).
:mod:`~manualgrad.optim.clip`: :func:`clip_by_global_norm` (BW-BPTT gradient clipping).
:mod:`~manualgrad.optim.frank_wolfe`: :func:`lmo`, :func:`lmo_params` (FW eq. 7),
:class:`FrankWolfe` (FW Algorithm 1), :func:`step_decay`, :func:`fw_angle` (FW Assumption A5).

Truncated BPTT is a gradient method, not an optimizer: it lives in :mod:`manualgrad.tbptt`,
next to :mod:`manualgrad.bptt`.

One protocol, what :func:`manualgrad.train.fit` relies on: ``opt.step(params, grads) -> params``;
optionally ``eval_point(params)`` and ``steps_per_batch`` (where and how often the gradient is
taken) and ``begin_epoch()`` / ``epoch_metrics() -> mapping`` (extra entries of each epoch row);
for runs that resume (``fit(..., state=...)``) ``state_dict() -> mapping`` and
``load_state_dict(mapping)``: everything the optimizer carries between steps (Adam's moments and
step count, Frank-Wolfe's counters, pending Delta and Adam outer state; SGD: nothing).
One vocabulary of checks (:mod:`manualgrad._validate`, docs/conventions.md): every optimizer
refuses bad hyperparameters at construction and, at each step, grads whose keys or shapes
differ from params or that hold NaN or Inf (ValueError naming the array).
"""
from . import frank_wolfe  # noqa: F401
from .adam import Adam, adam_init, adam_step  # noqa: F401
from .clip import clip_by_global_norm, global_norm  # noqa: F401
from .frank_wolfe import FrankWolfe, lmo, lmo_params, step_decay  # noqa: F401
from .frank_wolfe import angle as fw_angle  # noqa: F401
from .sgd import SGD, sgd_step  # noqa: F401

__all__ = ["Adam", "adam_init", "adam_step", "clip_by_global_norm", "global_norm", "SGD",
           "sgd_step", "FrankWolfe", "lmo", "lmo_params", "step_decay", "fw_angle"]
