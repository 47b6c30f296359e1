"""Inspection: adjoint norms ||lambda_k|| (JP eqs. 7-8) and their plot. NumPy at this edge.

Everything here reads the same :class:`~manualgrad.rnn.Adjoint` that training uses; results are
NumPy arrays (converted from CuPy here, never inside the engine).
"""
from __future__ import annotations

from dataclasses import dataclass

from . import backend

__all__ = ["AdjointNorms", "adjoint_norms", "plot_adjoint_norms", "norm_table"]


@dataclass
class AdjointNorms:
    """||lambda_k||_2 for k = 1..T (NumPy arrays).

    per_example (T, B): row k-1 is ||lambda_k|| for each example; mean (T,): batch mean;
    k (T,): the step indices 1..T; lam0 (B,) or None: ||lambda_0|| (adjoint of x_0).
    """

    per_example: object
    mean: object
    k: object
    lam0: object = None

    @property
    def T(self):
        return self.mean.shape[0]

    def ratio(self):
        """||lambda_1|| / ||lambda_T|| (batch means): below 1 the adjoint decays toward the input."""
        return float(self.mean[0] / self.mean[-1]) if self.mean[-1] > 0 else float("nan")


def adjoint_norms(adj):
    """Per-step adjoint norms from an :class:`~manualgrad.rnn.Adjoint` (or a (T, B, m) array)."""
    lam = getattr(adj, "lam", adj)
    if not backend.is_array(lam) or lam.ndim != 3:
        raise ValueError("adjoint_norms: expected an Adjoint or a (T, B, m) array of lambdas, got "
                         "%r" % (getattr(lam, "shape", type(lam).__name__),))
    xp = backend.array_module_of(lam)
    per = backend.to_numpy(xp.sqrt((lam * lam).sum(axis=2)))
    lam0 = getattr(adj, "lam0", None)
    n0 = None if lam0 is None else backend.to_numpy(xp.sqrt((lam0 * lam0).sum(axis=1)))
    np = backend.np
    return AdjointNorms(per, per.mean(axis=1), np.arange(1, per.shape[0] + 1), n0)


def norm_table(norms, steps=None, labels=None):
    """A plain-text table of mean ||lambda_k|| at the chosen steps for one or more AdjointNorms."""
    if isinstance(norms, AdjointNorms):
        norms = [norms]
    labels = labels or ["||lambda_k||"] * len(norms)
    T = norms[0].T
    if steps is None:
        steps = sorted({1, 2, 4, T // 4, T // 2, 3 * T // 4, T - 1, T} & set(range(1, T + 1)))
    head = "%6s" % "k" + "".join(" %14s" % lab for lab in labels)
    rows = [head] + ["%6d" % k + "".join(" %14.3e" % n.mean[k - 1] for n in norms) for k in steps]
    return "\n".join(rows)


def plot_adjoint_norms(norms, labels=None, ax=None, title=None, per_example=False):
    """Plot mean ||lambda_k|| against k on a log scale; returns the matplotlib Figure.

    ``norms``: one :class:`AdjointNorms` or a list. ``per_example`` adds faint per-example lines.
    """
    import matplotlib.pyplot as plt

    if isinstance(norms, AdjointNorms):
        norms = [norms]
    labels = labels or [None] * len(norms)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.5))
    else:
        fig = ax.figure
    for n, lab in zip(norms, labels):
        line, = ax.semilogy(n.k, n.mean, label=lab, lw=2)
        if per_example:
            ax.semilogy(n.k, n.per_example, color=line.get_color(), alpha=0.15, lw=0.8)
    ax.set_xlabel("step k")
    ax.set_ylabel(r"$\|\lambda_k\|_2$")
    if title:
        ax.set_title(title)
    if any(labels):
        ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig
