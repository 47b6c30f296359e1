"""Experiments: one module each, registered by name; run them with ``manualgrad run NAME``."""
from . import char, ltg, norms

REGISTRY = {"ltg": ltg, "char": char, "norms": norms}
"""name -> module with ``DEFAULTS`` (dict), ``add_arguments(parser)``, ``run(**settings)``."""
