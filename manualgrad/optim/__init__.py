"""Optimizers and gradient transforms; all take and return parameter mappings, never call a model.

:mod:`~manualgrad.optim.sgd`: :func:`sgd_step`, :class:`SGD`.
:mod:`~manualgrad.optim.clip`: :func:`clip_by_global_norm` (BW-BPTT gradient clipping).
"""
from .clip import clip_by_global_norm, global_norm  # noqa: F401
from .sgd import SGD, sgd_step  # noqa: F401

__all__ = ["clip_by_global_norm", "global_norm", "SGD", "sgd_step"]
