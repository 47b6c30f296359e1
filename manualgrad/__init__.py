"""manualgrad: recurrent and continuous-depth networks with every derivative written by hand.

Modules: :mod:`~manualgrad.backend` (NumPy/CuPy switch), :mod:`~manualgrad.activations`,
:mod:`~manualgrad.losses`, :mod:`~manualgrad.rnn` (JP eqs. 5-13), :mod:`~manualgrad.layered`
(JP eqs. 1-4), :mod:`~manualgrad.bptt` (BW-BPTT),
:mod:`~manualgrad.tbptt` (truncated BPTT), :mod:`~manualgrad.inspect`,
:mod:`~manualgrad.check`, :mod:`~manualgrad.testing`, :mod:`~manualgrad.data`.
"""
__version__ = "0.1.0"

REPOSITORY_URL = "https://github.com/manualgrad/manualgrad"
"""Where the repository is published: the lectures' Colab badges and install cells use it
(lectures/README.md). The one place to change when the repository moves."""

from . import activations, backend, bptt, check, data, inspect, layered, losses, optim, rnn, tbptt, train  # noqa: F401,E402,E501
from .backend import get_backend, set_backend, use_backend  # noqa: F401,E402
