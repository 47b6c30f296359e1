"""Command-line and settings helpers shared by the experiment modules.

Every experiment has ``DEFAULTS`` and ``QUICK`` (overrides for a run of minutes). On the command
line ``--quick`` makes QUICK the defaults, so options given explicitly still win
(:func:`manualgrad.cli.experiment_settings`); from Python ``run(quick=True, ...)`` applies QUICK
to every setting left at its default (:func:`apply_quick`).
"""
from __future__ import annotations

import argparse

__all__ = ["add_quick_argument", "apply_quick", "boolean", "selection"]


def add_quick_argument(parser, quick):
    """Add ``--quick`` to an experiment's parser; its help lists the ``quick`` overrides."""
    parser.add_argument("--quick", action="store_true", default=argparse.SUPPRESS,
                        help="defaults from QUICK: %s" % ", ".join(
                            "%s=%s" % kv for kv in quick.items()))


def apply_quick(settings, defaults, quick):
    """``settings`` (a dict, modified and returned) without its ``quick`` key; when that was
    true, every setting in ``quick`` that is missing or at its value in ``defaults`` takes the
    ``quick`` value."""
    if settings.pop("quick", False):
        for k, v in quick.items():
            if k not in settings or settings[k] == defaults.get(k):
                settings[k] = v
    return settings


def boolean(text):
    """An argparse ``type`` for on/off options: true/false, yes/no, on/off, 1/0."""
    t = str(text).strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError("expected true or false, got %r" % text)


def selection(value, names, groups, what):
    """The tuple of names a ``--method``-style option selects: a group name (``groups``, e.g.
    ``{"all": names}``) or one of ``names``; ValueError naming ``what`` and the valid choices."""
    if value in groups:
        return tuple(groups[value])
    if value in names:
        return (value,)
    raise ValueError("unknown %s %r: valid are %s" % (what, value, ", ".join(
        tuple(names) + tuple(groups))))
