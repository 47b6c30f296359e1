"""IDX files (the MNIST format) and the MNIST folder (JP Sec. IV-C; FW Pixel-MNIST).

IDX layout (http://yann.lecun.com/exdb/mnist/, the source JP cites as [15]), all integers
big-endian::

    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 ubyte, 0x09 sbyte, 0x0B int16, 0x0C int32, 0x0D float32,
                0x0E float64
    byte  3     number of dimensions d
    then        d dimension sizes, 4 bytes each (uint32)
    then        the elements, row-major, prod(sizes) * itemsize bytes, nothing after

so the magic number (bytes 0-3) is 0x00000803 for MNIST images (ubyte, 3-d: n, 28, 28) and
0x00000801 for labels (ubyte, 1-d: n). Files may be gzip-compressed (detected from their first
bytes, whatever their name).

:func:`read_idx` reads one file into a host NumPy array; :func:`load_mnist` reads the four
standard files from a folder. Errors name the file and say what was wrong: ``ValueError`` for a
wrong magic number, an unknown element type, a truncated header or body (a header announcing
more data than the file can hold is refused before anything is allocated), trailing bytes, a
corrupt gzip stream, or image and label counts that disagree; ``FileNotFoundError`` (with where to
get MNIST) for missing files.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib

from .. import backend
from ._paths import find_first, require_dir

__all__ = ["IDX_TYPES", "MAGIC_IMAGES", "MAGIC_LABELS", "MNIST_FILES", "MNIST_HINT",
           "read_idx", "load_mnist"]

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
"""IDX element-type byte -> big-endian NumPy dtype."""

MAGIC_IMAGES = 0x00000803
MAGIC_LABELS = 0x00000801

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""The standard MNIST file names (images, labels) per split; each may also end in ``.gz``, and
the variant with a dot before ``idx`` (``train-images.idx3-ubyte``) is accepted too."""

MNIST_HINT = ("Get MNIST from http://yann.lecun.com/exdb/mnist/ (or any mirror of it) and put "
              "the four files, gzipped or not, in one folder: train-images-idx3-ubyte, "
              "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
              "(each optionally ending in .gz); then pass that folder.")


def _describe(magic):
    return "0x%08X" % magic


def _open(path):
    """A binary file object, transparently gunzipped when the file starts with 1f 8b."""
    with open(path, "rb") as f:
        head = f.read(2)
    if head == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


_CHUNK = 1 << 24
"""Bytes read at a time: a body is read in chunks, so memory follows what the file holds, not
what its header claims."""

GZIP_MAX_RATIO = 1032
"""Deflate's largest expansion (about 1032 : 1): a gzip file of c bytes holds at most
1032 c + 1032 bytes, whatever its header says."""


def _read(f, n, path, what):
    parts, left = [], n
    try:
        while left > 0:
            part = f.read(min(left, _CHUNK))
            if not part:
                break
            parts.append(part)
            left -= len(part)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError("%s: corrupt gzip stream while reading the %s (%s)"
                         % (path, what, exc)) from None
    return b"".join(parts)


def read_idx(path, expect_magic=None):
    """Read one IDX file (optionally gzipped) into a host NumPy array of native byte order.

    ``expect_magic``: None, or the magic number the file must have (``MAGIC_IMAGES``,
    ``MAGIC_LABELS``); a different one is a ValueError that says which was found. The header's
    sizes must match the body exactly: a shorter body ("truncated") or extra bytes after it are
    ValueErrors giving the expected and the found byte counts.
    """
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError("path must be a file path, got %s" % type(path).__name__)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError("IDX file not found: %s" % path)
    np = backend.np
    size = os.path.getsize(path)
    with _open(path) as f:
        gzipped = isinstance(f, gzip.GzipFile)
        head = _read(f, 4, path, "header")
        if len(head) < 4:
            raise ValueError("%s: truncated IDX header (%d of 4 magic-number bytes)"
                             % (path, len(head)))
        magic = struct.unpack(">I", head)[0]
        if head[:2] != b"\x00\x00" or head[2] not in IDX_TYPES or head[3] == 0:
            raise ValueError(
                "%s: not an IDX file: magic number %s; expected 0x0000TTDD with TT an element "
                "type (%s) and DD >= 1 dimensions, e.g. %s (MNIST images) or %s (MNIST labels)"
                % (path, _describe(magic), ", ".join("%02X" % t for t in IDX_TYPES),
                   _describe(MAGIC_IMAGES), _describe(MAGIC_LABELS)))
        if expect_magic is not None and magic != expect_magic:
            raise ValueError("%s: magic number %s, expected %s (%s)"
                             % (path, _describe(magic), _describe(expect_magic),
                                "images: ubyte, 3-d" if expect_magic == MAGIC_IMAGES else
                                "labels: ubyte, 1-d" if expect_magic == MAGIC_LABELS else
                                "as requested"))
        dtype = np.dtype(IDX_TYPES[head[2]])
        ndim = head[3]
        raw = _read(f, 4 * ndim, path, "dimension sizes")
        if len(raw) < 4 * ndim:
            raise ValueError("%s: truncated IDX header: %d dimension sizes announced, %d bytes "
                             "of the %d they need present" % (path, ndim, len(raw), 4 * ndim))
        dims = struct.unpack(">%dI" % ndim, raw)
        count = 1
        for d in dims:
            count *= d
        nbytes = count * dtype.itemsize
        # the header's sizes against the file's before allocating anything for the body: a
        # corrupt header (60000 x 2800 x 2800) is a clear error, not a MemoryError
        header = 4 + 4 * ndim
        at_most = GZIP_MAX_RATIO * (size + 1) if gzipped else size - header
        if nbytes > at_most:
            raise ValueError("%s: truncated IDX file: the header announces shape %s (%d bytes of "
                             "data) but %s; the header is corrupt or the file incomplete"
                             % (path, dims, nbytes, "the gzip file of %d bytes can hold at most "
                                "%d once decompressed" % (size, at_most) if gzipped else
                                "only %d bytes follow it" % at_most))
        body = _read(f, nbytes + 1, path, "data")  # one byte more, to detect trailing bytes
    if len(body) < nbytes:
        raise ValueError("%s: truncated IDX file: the header announces shape %s (%d bytes of "
                         "data) but only %d bytes follow it" % (path, dims, nbytes, len(body)))
    if len(body) > nbytes:
        raise ValueError("%s: %d byte(s) of data, more than the %d that shape %s needs "
                         "(trailing bytes: not a valid IDX file)"
                         % (path, len(body), nbytes, dims))
    arr = np.frombuffer(body, dtype=dtype).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def _candidates(name):
    dotted = name.replace("-idx", ".idx")
    return [name, name + ".gz", dotted, dotted + ".gz"]


def _load_pair(root, split, hint=MNIST_HINT, what="MNIST"):
    img_name, lab_name = MNIST_FILES[split]
    img_path = find_first(root, _candidates(img_name), what="%s %s images" % (what, split),
                          hint=hint)
    lab_path = find_first(root, _candidates(lab_name), what="%s %s labels" % (what, split),
                          hint=hint)
    images = read_idx(img_path, expect_magic=MAGIC_IMAGES)
    labels = read_idx(lab_path, expect_magic=MAGIC_LABELS)
    if images.shape[0] != labels.shape[0]:
        raise ValueError("%s %s: %s holds %d images but %s holds %d labels; the files do "
                         "not belong together (re-download them). %s"
                         % (what, split, img_path, images.shape[0], lab_path, labels.shape[0],
                            hint))
    return images, labels


def load_mnist(folder, hint=MNIST_HINT, what="MNIST"):
    """``((x_train, y_train), (x_test, y_test))`` from the four MNIST IDX files in ``folder``.

    Images are host uint8 arrays (n, 28, 28), labels host uint8 arrays (n,) (60000 and 10000
    examples for MNIST; any sizes are accepted, so Fashion-MNIST in the same format loads too).
    Expected names in :data:`MNIST_FILES` (``.gz`` optional). Only files inside ``folder`` are
    read (:mod:`manualgrad.data._paths`). Turn them into sequences with
    :func:`manualgrad.data.digits.sequences_from_images` or
    :func:`~manualgrad.data.digits.mnist_sequences`. ``hint`` (where to get the files) ends
    every missing-file error; ``what`` names the data set in messages (the registry passes
    Fashion-MNIST's, :mod:`manualgrad.data.registry`).
    """
    root = require_dir(folder, "%s folder" % what, hint=hint)
    return _load_pair(root, "train", hint, what), _load_pair(root, "test", hint, what)
