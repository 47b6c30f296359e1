"""The ``--threads N`` flag of the benchmark scripts, applied before numpy is imported.

BLAS reads its thread count when numpy is first imported, so each script calls
:func:`apply_threads_flag` at the top, before ``import numpy``. This module imports nothing heavy.
"""
import os

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def apply_threads_flag(argv):
    """Set every variable of THREAD_VARS to N if ``argv`` has ``--threads N`` or ``--threads=N``."""
    for i, a in enumerate(argv[1:], 1):
        n = a[len("--threads="):] if a.startswith("--threads=") else (
            argv[i + 1] if a == "--threads" and i + 1 < len(argv) else None)
        if n is not None:
            for var in THREAD_VARS:
                os.environ[var] = n
