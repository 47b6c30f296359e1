"""Data sets and task generators. Arrays are generated or read on the host (seeded), then moved
to the active backend; inputs are time-major (T, n, p).

:func:`datasets` and :func:`load` (:mod:`.registry`): the real data sets by name, offline
(``mnist-5k``, ``fashion-mnist``, ``mnist1d``, ``digits``, ``mnist-idx``), as sequences in
views (pixels, columns, rows), permuted or not.

:mod:`.ltg` (JP Long Time Gap), :mod:`.adding` (FW adding task), :mod:`.digits` (scikit-learn's
bundled 8x8 digits as sequences; MNIST through :mod:`.idx`), :mod:`.har` (UCI HAR, HAR-2),
:mod:`.imdb` (aclImdb reviews and GloVe vectors), :mod:`.text` (characters), :mod:`.transforms`
(noise, standardisation, permutations, splits). Loaders of user files never read outside the
folder they are given (:mod:`._paths`).
"""
from . import digits, har, idx, imdb, registry, text, transforms  # noqa: F401
from .registry import datasets, load  # noqa: F401
from .ltg import long_time_gap, split  # noqa: F401
