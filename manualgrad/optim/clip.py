"""Gradient clipping by the global norm (BW-BPTT: "gradient clipping, i.e., scaling gradient if its
norm is greater than" a threshold), the remedy for exploding products dx_T/dx_k (docs/bptt.md).

For a mapping of gradients g = {name: dF/dtheta_name}, with the global norm over all of them::

    ||g|| = sqrt(sum_name ||g_name||_F^2)
    g <- g * (max_norm / ||g||)     if ||g|| > max_norm,     else g unchanged

Every array is scaled by the same factor, so the direction of the full gradient is kept and only
its length is capped at ``max_norm``. The norm is computed scaled by the largest |entry|, so
gradients near the float64 limit (1e200) neither overflow nor lose the result.
"""
from __future__ import annotations

import math

from .. import _validate, backend

__all__ = ["clip_by_global_norm", "global_norm"]


def _check_grads(grads):
    _validate.array_mapping(grads, "grads", floating=True, finite=True,
                            why="clipping cannot recover a direction from them")


def global_norm(grads):
    """sqrt(sum of squares of every entry of every array in ``grads``), as a Python float."""
    _check_grads(grads)
    arrays = [g for g in grads.values() if g.size]
    if not arrays:
        return 0.0
    amax = max(float(backend.array_module_of(g).abs(g).max()) for g in arrays)
    if amax == 0.0:
        return 0.0
    ss = sum(float(((g / amax) ** 2).sum()) for g in arrays)  # each term <= size, no overflow
    return amax * math.sqrt(ss)


def clip_by_global_norm(grads, max_norm):
    """Scale all gradients by max_norm / ||g|| when the global norm ||g|| exceeds ``max_norm``.

    Parameters
    ----------
    grads : mapping name -> floating array (any shapes, e.g. the dict of ``rnn.loss_and_grad``)
    max_norm : real number > 0 (``inf`` never clips)

    Returns
    -------
    (clipped, norm, fired): ``clipped`` a new dict with the keys of ``grads`` (scaled copies when
    ``fired``, else the same array objects), ``norm`` the global norm before clipping (float),
    ``fired`` whether ``norm > max_norm``. Zero gradients have norm 0, never fire and are returned
    untouched; the result is never NaN (non-finite gradients raise ``ValueError``).
    """
    max_norm = _validate.positive_real(max_norm, "max_norm", finite=False)
    norm = global_norm(grads)
    if not norm > max_norm:
        return dict(grads), norm, False
    scale = max_norm / norm
    return {k: g * g.dtype.type(scale) for k, g in grads.items()}, norm, True
