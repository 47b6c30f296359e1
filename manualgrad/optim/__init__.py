"""Optimizers and gradient transforms; all take and return parameter mappings, never call a model.

:mod:`~manualgrad.optim.sgd`: :func:`sgd_step`, :class:`SGD`.
:mod:`~manualgrad.optim.adam`: :func:`adam_step`, :func:`adam_init`, :class:`Adam` (KB 2015).
:mod:`~manualgrad.optim.clip`: :func:`clip_by_global_norm` (BW-BPTT gradient clipping).
"""
from .adam import Adam, adam_init, adam_step  # noqa: F401
from .clip import clip_by_global_norm, global_norm  # noqa: F401
from .sgd import SGD, sgd_step  # noqa: F401

__all__ = ["Adam", "adam_init", "adam_step", "clip_by_global_norm", "global_norm", "SGD",
           "sgd_step"]
