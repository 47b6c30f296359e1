"""Data sets and task generators. Arrays are generated on the host (seeded), then moved to the
active backend; inputs are time-major (T, n, p)."""
from .ltg import long_time_gap, split  # noqa: F401
