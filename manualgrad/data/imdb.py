"""IMDB movie reviews embedded with word vectors (JP Sec. IV-B, JP-IMDB): the data pipeline.

JP train on the 25 000 labelled training reviews of the Stanford Large Movie Review Dataset and
test on its 25 000 test reviews; each review is cut to its **first 50 words** and each word is
embedded in R^100, so an input sequence is u_1..u_50 in R^100, the label positive/negative. The
paper does not say which embedding; we use GloVe (glove.6B.100d.txt), the usual 100-d choice.

Files, read on the host (``backend.np``) and never outside the folders given:

- **reviews** (:func:`list_reviews`, :func:`read_reviews`): the ``aclImdb`` folder of
  ``aclImdb_v1.tar.gz`` (https://ai.stanford.edu/~amaas/data/sentiment/), laid out as
  ``aclImdb/{train,test}/{pos,neg}/ID_RATING.txt`` (one review per file, utf-8; the other files
  of the archive -- ``unsup/``, ``*.feat``, ``urls_*.txt``, ``imdb.vocab`` -- are not read).
  ``folder`` may be the ``aclImdb`` folder or the folder that holds it. Every file is opened
  through :func:`manualgrad.data._paths.safe_join`: a symlink or ``..`` that leads outside the
  folder is refused (ValueError). Any other entry in ``pos/`` or ``neg/`` than ``ID_RATING.txt``
  files (hidden files aside) is a ValueError naming it. Labels: pos = 1, neg = 0.
- **word vectors** (:func:`read_vectors`): a text file in the GloVe format, one word and its d
  numbers per line separated by single spaces (``glove.6B.100d.txt`` from
  https://nlp.stanford.edu/projects/glove/, d = 100 as in JP). Every line must have the same
  d (ValueError naming the first line that differs); a first line of two integers (the word2vec
  text header "count dim") is skipped. A symlinked file whose target lies outside its own
  folder is refused, as for the reviews.

Tokens (:func:`tokenize`): lower case; the HTML line breaks ``<br />`` of the reviews become
spaces; apostrophes are dropped inside words (``don't`` -> ``dont``, ``film's`` -> ``films``);
every other character that is not a letter or digit separates tokens (punctuation is dropped).

Policies (:func:`encode`), counted in the returned stats:

- **truncation**: the first ``T`` tokens of a review (T = 50 in JP);
- **unknown words** (no vector): ``unknown="zero"`` (default) keeps the word's position with a
  zero vector; ``unknown="skip"`` drops unknown words first, then takes the first T known ones;
- **padding**: reviews shorter than T get zero vectors; ``pad="front"`` (default) puts them
  before the words, so the review ends at step T, next to the output (a many-to-one RNN reads
  its last input last); ``pad="back"`` after.

Arrays: ``tokens`` (T, n) int64 row indices into the vector matrix ``E`` (V + 1, d), whose row 0
is the zero vector used for padding and unknown words; embedded inputs ``u = E[tokens]``
(T, n, d) float on the active backend (time-major, as everywhere in manualgrad); labels ``y``
(n, 1) float in {0, 1} for the sigmoid + BCE head. :func:`load_imdb` does it all for one split,
:func:`load_splits` for train and test with one read of the vectors.

:func:`write_synthetic` writes a small corpus in the same layout and a matching vector file (made
up words and vectors, with a planted sentiment signal): a smoke test and a demo of the pipeline
when the real data are not at hand (``manualgrad run imdb --synthetic``).
"""
from __future__ import annotations

import collections
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import backend
from .._validate import integer as _integer
from ._paths import require_dir, safe_join

__all__ = ["IMDB_URL", "GLOVE_URL", "DATA_HINT", "VECTORS_HINT", "SPLITS", "CLASSES", "PADS",
           "UNKNOWN", "tokenize", "imdb_root", "Review", "list_reviews", "read_reviews",
           "WordVectors", "read_vectors", "encode", "embed", "ImdbSplit", "load_imdb",
           "load_splits", "write_synthetic"]

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/"
GLOVE_URL = "https://nlp.stanford.edu/projects/glove/"
DATA_HINT = ("Get the Large Movie Review Dataset from %s (aclImdb_v1.tar.gz, 80 MB), extract it "
             "with 'tar xzf aclImdb_v1.tar.gz' and give the extracted aclImdb folder (or the "
             "folder holding it); it must hold aclImdb/{train,test}/{pos,neg}/ID_RATING.txt."
             % IMDB_URL)
VECTORS_HINT = ("Get GloVe vectors from %s (glove.6B.zip, 822 MB; unzip it and give "
                "glove.6B.100d.txt, the 100-dimensional vectors of JP's setting): a text file with "
                "one word and its numbers per line." % GLOVE_URL)
SPLITS = ("train", "test")
CLASSES = (("neg", 0), ("pos", 1))
"""Class folders and their labels: neg = 0, pos = 1."""
PADS = ("front", "back")
UNKNOWN = ("zero", "skip")

_NAME = re.compile(r"([0-9]+)_([0-9]+)\.txt")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_APOSTROPHE = re.compile(r"(?<=\w)['\u2019](?=\w)")
_TOKEN = re.compile(r"[^\W_]+")


# ------------------------------------------------------------------------------ tokens
def tokenize(text):
    """The tokens of a review: lower case, ``<br />`` -> space, apostrophes inside words dropped,
    every other non-alphanumeric character a separator.

    ``tokenize("I didn't like it.<br /><br />2/10!")`` is ``['i', 'didnt', 'like', 'it', '2',
    '10']``.
    """
    if not isinstance(text, str):
        raise TypeError("tokenize: text must be a str, got %s" % type(text).__name__)
    text = _APOSTROPHE.sub("", _BR.sub(" ", text)).lower()
    return _TOKEN.findall(text)


# ------------------------------------------------------------------------------ reviews
@dataclass(frozen=True)
class Review:
    """One review file: ``split``, class folder ``cls`` (pos/neg), ``label`` (1/0), ``id`` and
    ``rating`` (from ``ID_RATING.txt``) and its resolved ``path``."""

    split: str
    cls: str
    label: int
    id: int
    rating: int
    path: str


def imdb_root(folder):
    """The resolved ``aclImdb`` folder: ``folder`` itself if it holds ``train/`` or ``test/``,
    else ``folder/aclImdb``; FileNotFoundError (with where to get the data) otherwise."""
    root = require_dir(folder, "IMDB folder", hint=DATA_HINT)
    for cand in (root, safe_join(root, "aclImdb")):
        if cand.is_dir() and any(safe_join(cand, s).is_dir() for s in SPLITS):
            return cand
    raise FileNotFoundError("IMDB folder %s holds neither train/ nor test/ (nor aclImdb/train/). "
                            "%s" % (root, DATA_HINT))


def list_reviews(folder, split="train"):
    """The review files of one split, sorted by label (neg first) then ID: a list of
    :class:`Review`.

    FileNotFoundError naming the missing folder of the layout; ValueError for a file that is not
    ``ID_RATING.txt``, for a symlink that leaves the folder, or for a class folder without
    reviews.
    """
    if split not in SPLITS:
        raise ValueError("split must be one of %s, got %r" % (", ".join(SPLITS), split))
    root = imdb_root(folder)
    out = []
    for cls, label in CLASSES:
        d = safe_join(root, split, cls)
        if not d.is_dir():
            raise FileNotFoundError("IMDB folder %s lacks %s/%s/ (expected %s/%s/%s/ID_RATING.txt)."
                                    " %s" % (root, split, cls, root, split, cls, DATA_HINT))
        found = []
        for name in sorted(os.listdir(d)):
            if name.startswith("."):
                continue
            m = _NAME.fullmatch(name)
            if m is None:
                raise ValueError("unexpected entry %r in %s: an IMDB class folder holds only "
                                 "review files named ID_RATING.txt (e.g. 0_9.txt)" % (name, d))
            path = safe_join(root, split, cls, name)
            if not path.is_file():
                raise ValueError("%s is not a regular file (an IMDB review must be a text file "
                                 "ID_RATING.txt)" % path)
            found.append(Review(split, cls, label, int(m.group(1)), int(m.group(2)), str(path)))
        if not found:
            raise ValueError("no reviews in %s (expected files ID_RATING.txt). %s" % (d, DATA_HINT))
        out += sorted(found, key=lambda r: r.id)
    return out


def read_reviews(folder, split="train", n=None, seed=0):
    """``(reviews, texts)``: the :class:`Review` list of a split (or a balanced random subset of
    ``n``: n // 2 negative and n - n // 2 positive, chosen with ``host_rng(seed)``, kept in
    label-then-ID order) and their texts (utf-8; undecodable bytes become U+FFFD)."""
    reviews = list_reviews(folder, split)
    if n is not None:
        n = _integer(n, "n", 2)
        rng = backend.host_rng(seed)
        chosen = []
        for (cls, label), k in zip(CLASSES, (n // 2, n - n // 2)):
            pool = [r for r in reviews if r.label == label]
            if k > len(pool):
                raise ValueError("n = %d asks for %d %s reviews of the %s split, but it has %d"
                                 % (n, k, cls, split, len(pool)))
            idx = sorted(rng.permutation(len(pool))[:k].tolist())
            chosen += [pool[i] for i in idx]
        reviews = chosen
    texts = []
    for r in reviews:
        with open(r.path, encoding="utf-8", errors="replace") as f:
            texts.append(f.read())
    return reviews, texts


# ------------------------------------------------------------------------------ word vectors
@dataclass
class WordVectors:
    """Word vectors read from a GloVe-format file.

    ``words`` (V,) in file order; ``index`` word -> row of ``matrix``; ``matrix`` (V + 1, d) host
    float64 with **row 0 the zero vector** (padding, unknown words) and row i the vector of
    ``words[i - 1]``; ``dim`` = d; ``path``; ``lines`` (vector lines in the file), ``duplicates``
    (later repeats of a word, ignored); ``header`` (a word2vec "count dim" first line was
    skipped).
    """

    words: list
    index: dict
    matrix: object
    dim: int
    path: str
    lines: int = 0
    duplicates: int = 0
    header: bool = False

    def __len__(self):
        return len(self.words)

    def __contains__(self, word):
        return word in self.index


def _vectors_file(path):
    """Resolve the vectors file: it must be a regular file, and a symlink may not lead outside
    the folder that holds it."""
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError("vectors must be a file path (str or os.PathLike), got %s"
                        % type(path).__name__)
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise FileNotFoundError("word-vector file %s does not exist. %s" % (p, VECTORS_HINT))
    parent = require_dir(p.absolute().parent, "folder of the word-vector file", VECTORS_HINT)
    target = safe_join(parent, p.name)
    if not target.is_file():
        raise ValueError("word-vector file %s is not a regular file (a folder?). %s"
                         % (p, VECTORS_HINT))
    return target


def read_vectors(path, words=None, dim=None):
    """Read a GloVe-format text file: ``word x_1 .. x_d`` per line, single spaces.

    ``words``: None (keep every word) or an iterable of the words wanted (the others are checked
    for the line format but not parsed: reading only a data set's vocabulary from the 400 000
    lines of glove.6B takes seconds). ``dim``: None, or the required d (ValueError if the file's
    differs). Returns :class:`WordVectors`.

    ValueError naming the line (1-based) and the file when a line has another number of values
    than the first, when a value is not a number, when the file has no vectors, or when it is not
    utf-8. FileNotFoundError (with where to get GloVe) when the file does not exist.
    """
    target = _vectors_file(path)
    if dim is not None:
        dim = _integer(dim, "dim", 1)
    wanted = None if words is None else set(words)
    np = backend.np
    found_words, rows = [], []
    index = {}
    d = None
    lines = dups = 0
    header = False
    first_line = None
    try:
        with open(target, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                text = line.rstrip("\r\n").rstrip(" ")
                if not text:
                    continue
                nfields = text.count(" ") + 1
                if d is None:
                    parts = text.split(" ")
                    if (nfields == 2 and parts[0].isdigit() and parts[1].isdigit()
                            and first_line is None):
                        header = True
                        first_line = lineno
                        d = int(parts[1])
                        if d < 1:
                            raise ValueError("%s line %d: the header gives dimension %d"
                                             % (target, lineno, d))
                        continue
                    if nfields < 2:
                        raise ValueError("%s line %d has no numbers after the word %r: expected "
                                         "'word x_1 ... x_d' (GloVe text format)"
                                         % (target, lineno, parts[0]))
                    d = nfields - 1
                    first_line = lineno
                    if dim is not None and d != dim:
                        raise ValueError("%s has %d-dimensional vectors (line %d), but dim = %d "
                                         "was asked for" % (target, d, lineno, dim))
                elif nfields != d + 1:
                    raise ValueError("%s line %d has %d numbers after the word, expected %d (as on "
                                     "line %d): every line must be 'word x_1 ... x_d' with the "
                                     "same d, separated by single spaces (a truncated or mixed "
                                     "file?)" % (target, lineno, nfields - 1, d, first_line))
                lines += 1
                word, rest = text.split(" ", 1)
                if wanted is not None and word not in wanted:
                    continue
                if word in index:
                    dups += 1
                    continue
                try:
                    vec = np.array(rest.split(" "), dtype=np.float64)
                except ValueError:
                    raise ValueError("%s line %d: the values after %r are not all numbers"
                                     % (target, lineno, word)) from None
                if not np.isfinite(vec).all():
                    raise ValueError("%s line %d: the vector of %r has non-finite values"
                                     % (target, lineno, word))
                index[word] = len(found_words) + 1
                found_words.append(word)
                rows.append(vec)
    except UnicodeDecodeError as exc:
        raise ValueError("%s is not utf-8 text (%s); a GloVe file is utf-8" % (target, exc)) \
            from None
    if d is None or lines == 0:
        raise ValueError("%s holds no word vectors (empty file). %s" % (target, VECTORS_HINT))
    matrix = np.zeros((len(rows) + 1, d))
    if rows:
        matrix[1:] = np.stack(rows)
    return WordVectors(found_words, index, matrix, d, str(target), lines, dups, header)


# ------------------------------------------------------------------------------ encoding
def _check_policies(T, pad, unknown):
    T = _integer(T, "T", 1)
    if pad not in PADS:
        raise ValueError("pad must be one of %s, got %r" % (", ".join(PADS), pad))
    if unknown not in UNKNOWN:
        raise ValueError("unknown must be one of %s, got %r" % (", ".join(UNKNOWN), unknown))
    return T


def encode(token_lists, vectors, T=50, pad="front", unknown="zero", top_unknown=20):
    """Row indices of the first ``T`` tokens of each review: ``(tokens, stats)``.

    ``tokens`` (T, n) int64 host array of rows of ``vectors.matrix`` (0: padding or an unknown
    word under ``unknown="zero"``). ``stats``: ``reviews``; ``tokens_in_reviews`` (all tokens);
    ``words_used`` (known words placed in the windows); ``unknown`` (unknown tokens met: inside
    the first T under "zero", skipped before the window filled up under "skip");
    ``unknown_rate`` = unknown / (unknown + words_used); ``padded_positions``;
    ``reviews_padded``; ``reviews_truncated`` (longer than the window); ``reviews_empty`` (no
    known word in the window); ``top_unknown`` [[word, count], ...] (the most frequent unknown
    tokens met).
    """
    T = _check_policies(T, pad, unknown)
    if not isinstance(vectors, WordVectors):
        raise TypeError("vectors must be WordVectors (read_vectors), got %s"
                        % type(vectors).__name__)
    np = backend.np
    token_lists = list(token_lists)
    n = len(token_lists)
    out = np.zeros((T, n), dtype=np.int64)
    index = vectors.index
    unk = collections.Counter()
    total = used = padded = n_padded = n_trunc = n_empty = 0
    for i, toks in enumerate(token_lists):
        total += len(toks)
        if unknown == "zero":
            window = toks[:T]
            ids = [index.get(w, 0) for w in window]
            for w, j in zip(window, ids):
                if j == 0:
                    unk[w] += 1
            truncated = len(toks) > T
        else:                      # skip unknown words until T known ones fill the window
            ids, truncated = [], False
            for w in toks:
                k = index.get(w, 0)
                if len(ids) == T:
                    if k:
                        truncated = True
                        break
                    continue
                if k:
                    ids.append(k)
                else:
                    unk[w] += 1
        L = len(ids)
        known = sum(1 for j in ids if j)
        used += known
        n_empty += known == 0
        n_trunc += bool(truncated)
        if L < T:
            padded += T - L
            n_padded += 1
        if L:
            if pad == "front":
                out[T - L:, i] = ids
            else:
                out[:L, i] = ids
    n_unk = sum(unk.values())
    stats = {"reviews": n, "tokens_in_reviews": total, "words_used": used, "unknown": n_unk,
             "unknown_rate": n_unk / (n_unk + used) if n_unk + used else 0.0,
             "padded_positions": padded, "reviews_padded": n_padded,
             "reviews_truncated": n_trunc, "reviews_empty": n_empty,
             "top_unknown": [[w, c] for w, c in unk.most_common(top_unknown)]}
    return out, stats


def embed(tokens, vectors):
    """Embedded inputs ``vectors.matrix[tokens]``: (T, n, d) float on the active backend (the
    active float dtype); padding and zero-policy unknown words are zero vectors."""
    if not isinstance(vectors, WordVectors):
        raise TypeError("vectors must be WordVectors (read_vectors), got %s"
                        % type(vectors).__name__)
    tokens = backend.np.asarray(backend.to_numpy(tokens) if backend.is_array(tokens) else tokens)
    if tokens.ndim != 2 or tokens.dtype.kind not in "iu":
        raise ValueError("tokens must be a (T, n) integer array, got shape %s dtype %s"
                         % (tokens.shape, tokens.dtype))
    return backend.asarray(vectors.matrix[tokens])


@dataclass
class ImdbSplit:
    """One encoded split: ``tokens`` (T, n) host int64, ``u`` (T, n, d) on the backend (None when
    not embedded), ``y`` (n, 1) float on the backend (pos 1, neg 0), ``reviews`` (the
    :class:`Review` list, same order), ``stats`` (:func:`encode`'s counts plus ``split``,
    ``positive``, ``negative``)."""

    tokens: object
    y: object
    reviews: list
    stats: dict
    u: object = None
    vectors: WordVectors = field(default=None, repr=False)


def _vocabulary(token_lists, T, unknown):
    vocab = set()
    for toks in token_lists:
        vocab.update(toks[:T] if unknown == "zero" else toks)
    return vocab


def _encode_split(split, reviews, token_lists, vectors, T, pad, unknown, embed_inputs):
    tokens, stats = encode(token_lists, vectors, T, pad, unknown)
    labels = backend.np.array([[float(r.label)] for r in reviews]).reshape(len(reviews), 1)
    stats = dict(split=split, positive=int(labels.sum()),
                 negative=int(len(reviews) - labels.sum()), **stats)
    return ImdbSplit(tokens, backend.asarray(labels), reviews, stats,
                     embed(tokens, vectors) if embed_inputs else None, vectors)


def load_imdb(folder, vectors, split="train", T=50, n=None, seed=0, pad="front", unknown="zero",
              dim=None, embed_inputs=True):
    """Read, tokenize, truncate, embed one split: an :class:`ImdbSplit`.

    ``vectors``: a GloVe-format file (only the words of these reviews are kept) or
    :class:`WordVectors` already read. ``n``: None (the whole split) or a balanced random subset
    (:func:`read_reviews`). ``embed_inputs=False`` leaves ``u`` None (use ``tokens`` and
    ``vectors.matrix``: 25 000 embedded reviews take 1 GB in float64).
    """
    T = _check_policies(T, pad, unknown)
    reviews, texts = read_reviews(folder, split, n=n, seed=seed)
    token_lists = [tokenize(t) for t in texts]
    if not isinstance(vectors, WordVectors):
        vectors = read_vectors(vectors, words=_vocabulary(token_lists, T, unknown), dim=dim)
    elif dim is not None and vectors.dim != dim:
        raise ValueError("the word vectors have dimension %d, but dim = %d was asked for"
                         % (vectors.dim, dim))
    return _encode_split(split, reviews, token_lists, vectors, T, pad, unknown, embed_inputs)


def load_splits(folder, vectors, T=50, n_train=None, n_test=None, seed=0, pad="front",
                unknown="zero", dim=None, embed_inputs=True):
    """``(train, test)`` :class:`ImdbSplit` s sharing one read of the vector file (kept: the
    words of both splits' reviews). Subsets as in :func:`read_reviews` (seeds ``seed`` and
    ``seed + 1``)."""
    T = _check_policies(T, pad, unknown)
    got = {}
    for split, n, sd in (("train", n_train, seed), ("test", n_test, seed + 1)):
        reviews, texts = read_reviews(folder, split, n=n, seed=sd)
        got[split] = (reviews, [tokenize(t) for t in texts])
    if not isinstance(vectors, WordVectors):
        vocab = set()
        for reviews, toks in got.values():
            vocab |= _vocabulary(toks, T, unknown)
        vectors = read_vectors(vectors, words=vocab, dim=dim)
    elif dim is not None and vectors.dim != dim:
        raise ValueError("the word vectors have dimension %d, but dim = %d was asked for"
                         % (vectors.dim, dim))
    return tuple(_encode_split(split, *got[split], vectors, T, pad, unknown, embed_inputs)
                 for split in SPLITS)


# ------------------------------------------------------------------------------ synthetic data
_POSITIVE = ("great", "excellent", "wonderful", "loved", "superb", "brilliant", "enjoyable",
             "touching", "best", "fun")
_NEGATIVE = ("bad", "awful", "boring", "worst", "terrible", "waste", "poor", "dull", "stupid",
             "mess")
_NEUTRAL = ("the", "a", "movie", "film", "plot", "actor", "actors", "story", "and", "it", "was",
            "this", "of", "scene", "scenes", "character", "director", "i", "to", "is", "in",
            "that", "with", "for", "as", "but", "on", "script", "ending", "music", "cast", "time",
            "watch", "saw", "one", "two", "very", "really", "just", "some")
_UNSEEN = ("zorblax", "quuxly", "flimflam")
"""Words of the synthetic reviews that the synthetic vector file leaves out (unknown words)."""


def write_synthetic(folder, n_per_class=24, dim=8, seed=0, min_words=6, max_words=30):
    """Write a small made-up corpus in the aclImdb layout and a GloVe-format vector file.

    ``folder/aclImdb/{train,test}/{pos,neg}/ID_RATING.txt`` (``n_per_class`` reviews in each of
    the four folders; ratings 7-10 positive, 1-4 negative) and ``folder/vectors.txt`` (random
    N(0, 1) ``dim``-vectors of the neutral and sentiment words, except coordinate 0: about +2 for
    positive words, -2 for negative ones, N(0, 0.3^2) for the others -- a planted sentiment
    direction; three words used in reviews are left out, so the unknown-word policy is
    exercised). A review is ``min_words``..``max_words``
    neutral words, punctuation and ``<br />`` breaks, with two to four words of its class's
    sentiment list, at least one of them among its first six words (so a short window still sees
    it). Returns ``(aclImdb folder, vectors file)`` as resolved paths.
    """
    n_per_class = _integer(n_per_class, "n_per_class", 1)
    dim = _integer(dim, "dim", 1)
    min_words = _integer(min_words, "min_words", 6)
    max_words = _integer(max_words, "max_words", min_words)
    rng = backend.host_rng(seed)
    root = Path(os.fspath(folder)).expanduser()
    os.makedirs(root, exist_ok=True)
    root = require_dir(root, "synthetic data folder")
    acl = safe_join(root, "aclImdb")
    next_id = 0
    for split in SPLITS:
        for cls, label in CLASSES:
            d = safe_join(acl, split, cls)
            os.makedirs(d, exist_ok=True)
            words = _POSITIVE if label else _NEGATIVE
            for _ in range(n_per_class):
                L = int(rng.integers(min_words, max_words + 1))
                toks = [str(_NEUTRAL[j]) for j in rng.integers(0, len(_NEUTRAL), L)]
                k = int(rng.integers(2, 5))
                spots = [int(rng.integers(0, 6))] + [int(x) for x in rng.integers(0, L, k - 1)]
                for s in spots:
                    toks[s] = str(words[int(rng.integers(0, len(words)))])
                if rng.random() < 0.5:
                    toks[int(rng.integers(0, L))] = str(_UNSEEN[int(rng.integers(0, 3))])
                text = " ".join(toks)
                text = text[:1].upper() + text[1:] + ". <br /><br />" + (
                    "Didn't expect it!" if rng.random() < 0.5 else "Really, I mean it.")
                rating = int(rng.integers(7, 11)) if label else int(rng.integers(1, 5))
                with open(safe_join(d, "%d_%d.txt" % (next_id, rating)), "w",
                          encoding="utf-8") as f:
                    f.write(text)
                next_id += 1
    vocab = list(_NEUTRAL) + ["didnt", "expect", "mean"] + list(_POSITIVE) + list(_NEGATIVE)
    vecs = rng.standard_normal((len(vocab), dim))
    k = len(_POSITIVE)                   # the planted sentiment direction: coordinate 0
    vecs[:-2 * k, 0] *= 0.3
    vecs[-2 * k:-k, 0] = 2.0 + 0.3 * vecs[-2 * k:-k, 0]
    vecs[-k:, 0] = -2.0 + 0.3 * vecs[-k:, 0]
    path = safe_join(root, "vectors.txt")
    with open(path, "w", encoding="utf-8") as f:
        for w, v in zip(vocab, vecs):
            f.write(w + " " + " ".join("%.6f" % x for x in v) + "\n")
    return acl, path
