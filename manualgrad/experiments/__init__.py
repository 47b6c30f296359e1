"""Experiments: one module each, registered by name; run them with ``manualgrad run NAME``.

The interface of an experiment module (``tests/test_registry.py`` checks it for every name in
:data:`REGISTRY`):

- a docstring, whose first line is what ``manualgrad run --list`` shows;
- ``DEFAULTS`` (every setting), ``QUICK`` (overrides for a run that finishes in well under 10
  minutes on 2 CPU cores) and ``TINY`` (seconds; what the test suite runs), dicts;
- ``add_arguments(parser)``: one option per setting, the common ones (``--seed``, ``--out``,
  ``--overwrite``, ``--blas-threads``, ``--no-progress``, ``--quick``) from
  :func:`.options.add_run_arguments`;
- ``run(verbose=True, overwrite=False, **settings) -> record``: checks the settings, makes the
  results folder ready (:func:`.record.prepare_out`: created and writable, and without a
  record unless ``overwrite``) before it trains, and writes its records with :mod:`.record`;
  ``manualgrad report`` (:mod:`.report`) reads them back.

An experiment module holds its settings, data, methods and figures. What two experiments share
lives in a shared module, never inside one of them, and no experiment module imports another
(``tests/test_experiments_layer.py``): :mod:`.options` (common settings and options, the one
Frank-Wolfe option group), :mod:`.methods` (gradient functions and optimizers by name, the FW
methods' training), :mod:`.threads` (BLAS thread limits), :mod:`.plots` (shared figures),
:mod:`.record`, :mod:`.report` and :mod:`.study`.
"""
from . import adding, char, fwseq, har, imdb, ltg, mnist1d, norms, odes, table2

REGISTRY = {"ltg": ltg, "table2": table2, "imdb": imdb, "char": char, "norms": norms,
            "adding": adding, "fwseq": fwseq, "har": har, "ode": odes, "mnist1d": mnist1d}
"""name -> module with ``DEFAULTS``, ``QUICK``, ``TINY``, ``add_arguments(parser)``,
``run(verbose=True, overwrite=False, **settings)``."""
