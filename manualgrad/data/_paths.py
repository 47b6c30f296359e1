"""Safe file paths for data loaders: resolve a user folder, never read outside it (host-side).

Every loader that reads files (``data/idx.py``, ``data/har.py``, ``data/imdb.py``, ...) takes a
folder from the user and builds file names inside it. These helpers make that safe and the errors
useful:

- :func:`require_dir` resolves a user folder (``~`` expanded, symlinks resolved) and checks it is
  an existing directory, else ``FileNotFoundError`` / ``NotADirectoryError`` naming the path, what
  was expected there and where to get the data (``hint``).
- :func:`safe_join` joins relative parts onto a root and returns the resolved path, refusing
  (``ValueError``) absolute parts, and any ``..`` or symlink that would escape the root.
- :func:`require_file` = :func:`safe_join` + the file must exist and be a regular file.
- :func:`find_first` returns the first existing candidate among several names (e.g. ``x`` or
  ``x.gz``), or raises ``FileNotFoundError`` listing all candidates tried.

Typical use::

    from ._paths import require_dir, require_file
    root = require_dir(folder, "MNIST folder", hint="Get it from http://yann.lecun.com/exdb/mnist/")
    path = require_file(root, "train", "y_train.txt", what="HAR training labels", hint=HINT)

All functions work on :class:`pathlib.Path` and return resolved absolute paths.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["require_dir", "safe_join", "require_file", "find_first"]


def _as_path(value, name):
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)):
        raise TypeError("%s must be a path (str or os.PathLike), got %s"
                        % (name, type(value).__name__))
    text = os.fspath(value)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if text == "":
        raise ValueError("%s must be a non-empty path, got ''" % name)
    if "\x00" in text:
        raise ValueError("%s contains a NUL character: %r" % (name, text))
    return Path(text).expanduser()


def _suffix(hint):
    return (" " + hint.strip()) if hint else ""


def require_dir(path, what="data folder", hint=""):
    """Resolve ``path`` (``~`` expanded, symlinks resolved) and check it is an existing directory.

    ``what`` names the folder in messages (e.g. ``"MNIST folder"``); ``hint`` is appended to every
    error (say where to get the data and what layout is expected). Returns the resolved
    :class:`~pathlib.Path`. Raises ``TypeError`` for a non-path, ``FileNotFoundError`` when it does
    not exist, ``NotADirectoryError`` when it is a file.
    """
    p = _as_path(path, what)
    resolved = p.resolve()
    if not resolved.exists():
        raise FileNotFoundError("%s %s does not exist (resolved to %s).%s"
                                % (what, p, resolved, _suffix(hint)))
    if not resolved.is_dir():
        raise NotADirectoryError("%s %s is not a directory (resolved to %s).%s"
                                 % (what, p, resolved, _suffix(hint)))
    return resolved


def safe_join(root, *parts):
    """Join relative ``parts`` onto ``root`` and return the resolved path, which must lie inside
    the resolved ``root``.

    Each part must be a relative path (str / os.PathLike); absolute parts, parts that climb out
    with ``..``, and symlinks whose target lies outside ``root`` raise ``ValueError`` naming the
    offending path. Symlinks that stay inside ``root`` are allowed. The result need not exist.
    """
    base = _as_path(root, "root").resolve()
    rel = Path()
    for i, part in enumerate(parts):
        q = _as_path(part, "path part %d" % i)
        if q.is_absolute() or q.anchor:
            raise ValueError("path part %r must be relative to %s, got an absolute path"
                             % (os.fspath(part), base))
        rel = rel / q
    target = (base / rel).resolve()
    if target != base and base not in target.parents:
        raise ValueError("refusing to read %s: it resolves to %s, outside the data folder %s "
                         "(a '..' or a symlink escapes the folder)" % (base / rel, target, base))
    return target


def require_file(root, *parts, what="data file", hint=""):
    """:func:`safe_join` ``root`` and ``parts``, then require an existing regular file.

    Raises ``FileNotFoundError`` naming the expected path, ``what`` it should contain and
    ``hint``; ``IsADirectoryError`` if it is a folder; ``ValueError`` if it escapes ``root``.
    """
    target = safe_join(root, *parts)
    if not target.exists():
        raise FileNotFoundError("%s not found: expected %s.%s"
                                % (what, Path(root) / Path(*parts) if parts else root,
                                   _suffix(hint)))
    if not target.is_file():
        raise IsADirectoryError("%s: %s is not a regular file.%s" % (what, target, _suffix(hint)))
    return target


def find_first(root, candidates, what="data file", hint=""):
    """Return the first existing regular file among ``candidates`` (relative names or tuples of
    parts) inside ``root``; ``FileNotFoundError`` listing every candidate when none exists.

    Every candidate is checked with :func:`safe_join` (escaping candidates raise ``ValueError``).
    """
    tried = []
    for cand in candidates:
        parts = (cand,) if isinstance(cand, (str, os.PathLike)) else tuple(cand)
        target = safe_join(root, *parts)
        tried.append(str(target))
        if target.is_file():
            return target
    raise FileNotFoundError("%s not found in %s; tried: %s.%s"
                            % (what, Path(root), ", ".join(tried), _suffix(hint)))
