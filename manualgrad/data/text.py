"""Text for character-level language models (BW-CHAR, lecture "BW": vocabulary [h, e, l, o],
training sequence "hello", task: predict the next character).

A :class:`Vocabulary` maps characters to indices 0..V-1 and back. :func:`next_char_dataset` cuts a
text into windows of ``seq_len`` characters, time-major as everywhere in manualgrad
(docs/conventions.md)::

    u (T, n, V) float   u[t, i] = one_hot(c[s_i + t])       inputs x_1..x_T, one-hot
    y (T, n)    int     y[t, i] = c[s_i + t + 1]            targets: the next character's index

with T = ``seq_len``, c the encoded text, window i starting at s_i = i * stride. For "hello" with
the default vocabulary [h, e, l, o] and T = 4 there is one window: inputs h, e, l, l and targets
e, l, l, o, the lecture's picture. Indices are worked out on the host (``backend.np``); ``u`` and
``y`` are returned on the active backend (``u`` in the active float dtype, ``y`` as int64, which
:func:`manualgrad.losses.targets` accepts as integer labels for ``cross_entropy``).
"""
from __future__ import annotations

import os

from .. import backend
from .._validate import positive_int

__all__ = ["Vocabulary", "one_hot", "next_char_dataset", "read_text", "ORDERS"]

ORDERS = ("first", "sorted")
"""Vocabulary orders: ``first`` (order of first appearance; "hello" gives [h, e, l, o] as in the
lecture) and ``sorted`` (by code point; "hello" gives [e, h, l, o])."""

_SHOW_AT_MOST = 100  # characters listed in an error message before it is cut short


def _check_text(text, name="text"):
    if not isinstance(text, str):
        raise TypeError("%s must be a str, got %s" % (name, type(text).__name__))
    if not text:
        raise ValueError("%s is empty: a character model needs at least one character" % name)
    return text


class Vocabulary:
    """The characters of a text, each with an index 0..V-1.

    ``Vocabulary("hello")`` has ``chars == ("h", "e", "l", "o")`` (order of first appearance,
    the lecture's order); ``Vocabulary("hello", order="sorted")`` has ("e", "h", "l", "o").
    :meth:`from_chars` takes the characters in a given order (no duplicates).

    ``encode(str) -> int64 host array``, ``decode(ints) -> str``; a character outside the
    vocabulary raises ValueError naming it, its position and the vocabulary.
    """

    def __init__(self, text, order="first"):
        _check_text(text)
        if order not in ORDERS:
            raise ValueError("order must be one of %s, got %r" % (", ".join(ORDERS), order))
        chars = list(dict.fromkeys(text))  # first appearance, no duplicates
        if order == "sorted":
            chars.sort()
        self._set(chars)

    @classmethod
    def from_chars(cls, chars):
        """A vocabulary with exactly these characters, in this order (a str or a sequence of
        one-character strs, no duplicates)."""
        if isinstance(chars, str):
            chars = list(chars)
        if not isinstance(chars, (list, tuple)):
            raise TypeError("chars must be a str or a list of one-character strs, got %s"
                            % type(chars).__name__)
        if not chars:
            raise ValueError("chars is empty: a vocabulary needs at least one character")
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise TypeError("every vocabulary entry must be a one-character str, got %r"
                                % (c,))
        seen = set()
        for c in chars:
            if c in seen:
                raise ValueError("character %r appears twice in chars" % c)
            seen.add(c)
        self = cls.__new__(cls)
        self._set(list(chars))
        return self

    def _set(self, chars):
        self.chars = tuple(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}

    @property
    def size(self):
        """V, the number of characters."""
        return len(self.chars)

    def __len__(self):
        return len(self.chars)

    def __contains__(self, c):
        return c in self.index

    def __eq__(self, other):
        return isinstance(other, Vocabulary) and self.chars == other.chars

    def __hash__(self):
        return hash(self.chars)

    def __repr__(self):
        return "Vocabulary(%s)" % self.describe()

    def describe(self, limit=_SHOW_AT_MOST):
        """The characters as a list for messages: ['h', 'e', 'l', 'o'] (cut after ``limit``)."""
        shown = ", ".join(repr(c) for c in self.chars[:limit])
        more = len(self.chars) - limit
        return "[%s%s] (%d characters)" % (shown, ", ... %d more" % more if more > 0 else "",
                                           len(self.chars))

    def _unknown(self, c, position, what):
        return ValueError("%s: character %r (U+%04X) at position %d is not in the vocabulary %s"
                          % (what, c, ord(c), position, self.describe()))

    def check(self, text, what="text"):
        """Raise ValueError naming the first character of ``text`` outside the vocabulary."""
        if not isinstance(text, str):
            raise TypeError("%s must be a str, got %s" % (what, type(text).__name__))
        for i, c in enumerate(text):
            if c not in self.index:
                raise self._unknown(c, i, what)
        return text

    def encode(self, text):
        """The indices of the characters of ``text``: a host int64 array of shape (len(text),)."""
        self.check(text, "encode")
        return backend.np.fromiter((self.index[c] for c in text), dtype=backend.np.int64,
                                   count=len(text))

    def decode(self, indices):
        """The string of the indices (a sequence or 1-d integer array, host or backend)."""
        np = backend.np
        if backend.is_array(indices):
            a = backend.to_numpy(indices)
        else:
            try:
                a = np.asarray(list(indices) if not isinstance(indices, int) else indices)
            except TypeError:
                raise TypeError("decode: indices must be a sequence or array of integers, got %s"
                                % type(indices).__name__) from None
        if a.size == 0:
            return ""
        if a.ndim != 1:
            raise ValueError("decode: indices must be 1-d, got shape %s" % (a.shape,))
        if a.dtype.kind not in "iu":
            raise TypeError("decode: indices must be integers, got dtype %s" % a.dtype)
        bad = (a < 0) | (a >= len(self.chars))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError("decode: index %d at position %d is outside [0, %d), the vocabulary "
                             "%s" % (int(a[i]), i, len(self.chars), self.describe()))
        return "".join(self.chars[int(i)] for i in a)


def one_hot(indices, size, dtype=None):
    """One-hot rows: an array of shape ``indices.shape + (size,)`` on the active backend, float.

    ``indices``: integers in [0, size) (host or backend array, or a sequence); ``size`` >= 1.
    """
    np = backend.np
    size = positive_int(size, "size")
    a = backend.to_numpy(indices) if backend.is_array(indices) else np.asarray(indices)
    if a.dtype.kind not in "iu":
        if a.size == 0 and a.dtype.kind == "f":
            a = a.astype(np.int64)
        else:
            raise TypeError("one_hot: indices must be integers, got dtype %s" % a.dtype)
    if a.size and (a.min() < 0 or a.max() >= size):
        raise ValueError("one_hot: indices must lie in [0, %d), found values in [%d, %d]"
                         % (size, int(a.min()), int(a.max())))
    out = np.zeros(a.shape + (size,))
    np.put_along_axis(out, a[..., None].astype(np.int64), 1.0, axis=-1)
    return backend.asarray(out, dtype)


def next_char_dataset(text, seq_len, vocab=None, stride=1):
    """Windows of ``text`` for next-character prediction: ``(u, y)``.

    u (T, n, V) float on the backend: one-hot inputs; y (T, n) int64 on the backend: the index
    of the next character (T = ``seq_len``, V = ``len(vocab)``). Window i covers the characters
    i*stride .. i*stride + T (T + 1 of them: T inputs, the last T of them also targets), so
    n = (len(text) - T - 1) // stride + 1. ``vocab`` defaults to :class:`Vocabulary(text)
    <Vocabulary>` (first-appearance order); a text character outside a given ``vocab`` raises
    ValueError. Empty text, or text shorter than T + 1 characters, raises ValueError.
    """
    _check_text(text)
    seq_len = positive_int(seq_len, "seq_len")
    stride = positive_int(stride, "stride")
    if len(text) < seq_len + 1:
        raise ValueError("text has %d character(s); windows of seq_len = %d inputs need at least "
                         "seq_len + 1 = %d (each input's target is the next character). Use a "
                         "longer text or a smaller seq_len (at most %d)"
                         % (len(text), seq_len, seq_len + 1, len(text) - 1))
    if vocab is None:
        vocab = Vocabulary(text)
    elif not isinstance(vocab, Vocabulary):
        raise TypeError("vocab must be a Vocabulary or None, got %s" % type(vocab).__name__)
    np = backend.np
    c = vocab.encode(text)
    starts = np.arange(0, len(c) - seq_len, stride)            # window i starts at i * stride
    idx = starts[None, :] + np.arange(seq_len + 1)[:, None]     # (T + 1, n)
    win = c[idx]
    u = one_hot(win[:-1], len(vocab))
    y = backend.asarray(np.ascontiguousarray(win[1:]), dtype="int64")
    return u, y


def read_text(path, encoding="utf-8"):
    """The contents of a text file as a str (``encoding`` utf-8 by default).

    A missing file raises FileNotFoundError naming the path; a folder, an empty file, or bytes
    that are not valid in ``encoding`` raise ValueError naming the path.
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError("path must be a str or os.PathLike, got %s" % type(path).__name__)
    path = os.fspath(path)
    if not os.path.exists(path):
        where = os.path.abspath(path)
        raise FileNotFoundError("text file %r does not exist%s"
                                % (path, "" if where == path else " (looked at %r)" % where))
    if os.path.isdir(path):
        raise ValueError("text file %r is a folder, not a file" % path)
    try:
        with open(path, encoding=encoding) as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise ValueError("text file %r is not valid %s: %s (pass the right encoding)"
                         % (path, encoding, exc)) from None
    if not text:
        raise ValueError("text file %r is empty: a character model needs some text" % path)
    return text
