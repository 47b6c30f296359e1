"""Experiments: one module each, registered by name; run them with ``manualgrad run NAME``.

Every module has a docstring (its first line is what ``manualgrad run --list`` shows),
``DEFAULTS``, ``QUICK`` (a setting that finishes in well under 10 minutes on 2 CPU cores),
``TINY`` (seconds; what the test suite runs), ``add_arguments(parser)`` and
``run(verbose=True, **settings) -> record``; records are written by :mod:`.record` and read
back by ``manualgrad report`` (:mod:`.report`).
"""
from . import adding, char, fwseq, har, imdb, ltg, norms, odes, table2

REGISTRY = {"ltg": ltg, "table2": table2, "imdb": imdb, "char": char, "norms": norms,
            "adding": adding, "fwseq": fwseq, "har": har, "ode": odes}
"""name -> module with ``DEFAULTS``, ``QUICK``, ``TINY``, ``add_arguments(parser)``,
``run(**settings)``."""
