"""Experiments: one module each, registered by name; run them with ``manualgrad run NAME``."""
from . import ltg

REGISTRY = {"ltg": ltg}
"""name -> module with ``DEFAULTS`` (dict), ``add_arguments(parser)``, ``run(**settings)``."""
