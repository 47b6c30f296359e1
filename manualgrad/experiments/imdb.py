"""IMDB sentiment (JP Sec. IV-B, Fig. 3): adjoint vs coadjoint RNN vs LSTM on embedded reviews.

JP Table I (time per update) is measured along the way (``grad_time_s``).

Data (:mod:`manualgrad.data.imdb`, docs/imdb.md): the Stanford aclImdb reviews (``--data``; train
split for training, test split for testing, 25 000 each, or balanced random subsets of
``n_train`` / ``n_test``), tokenized, cut to the first ``T`` = 50 tokens, each embedded with the
word vectors of ``--vectors`` (GloVe format; glove.6B.100d.txt gives R^100 as in JP). Unknown
words and padding follow ``unknown`` / ``pad`` and are counted in the record. Labels pos = 1,
neg = 0; the head is a sigmoid with BCE, as in the LTG experiment.

Methods, as in the LTG experiment (the shared :mod:`manualgrad.experiments.methods`: optimizers,
gradient functions; figures from :mod:`manualgrad.experiments.plots`): every method starts from
parameters drawn from ``seed`` and sees the same minibatch order:

- ``adjoint``: the RNN (tanh) trained on the gradient of F (JP eqs. 9-13);
- ``coadjoint``: the same RNN trained on the gradient of F + alpha G (JP eq. 14, penalty ``G``);
- ``lstm``: an LSTM of the same hidden size trained by its BPTT (the adjoint method).

The inputs are kept as word indices (T, n) and embedded per minibatch (``E[tokens]``): 25 000
embedded reviews would take 1 GB in float64. The test set is evaluated after every epoch (and at
epoch 0) in chunks of ``eval_batch``: BCE, classification error (JP Fig. 3), the penalty G on the
test adjoints and the mean ||lambda_1||, ||lambda_T||. Each epoch row also has ``grad_time_s``,
the mean wall time of one minibatch gradient (embedding + sweep(s) + gradients; synchronised on
the GPU), the quantity behind JP Table I.

``manualgrad run imdb --data FOLDER --vectors FILE`` writes to ``--out``: ``results.json`` (the
record: settings, data counts, per-epoch rows per method), ``test_error.png`` (Fig. 3 style) and
``adjoint_norms.png``. Without the data, ``--synthetic`` runs the same pipeline on a small made-up
corpus written to ``OUT/synthetic_data`` (:func:`manualgrad.data.imdb.write_synthetic`): a smoke
test, not JP's experiment. ``--quick`` applies :data:`QUICK`; the test suite runs :data:`TINY`.
"""
from __future__ import annotations

import math
import os
import time
import warnings

from .. import backend, coadjoint, inspect, train
from ..data import imdb as _imdb
from .._validate import integer as _integer
from . import record as _record
from .methods import JP_METHODS, OPTIMIZERS, check_jp_settings, drain_mean, make_optimizer, \
    jp_grad_fn, jp_model, stop_reason
from .options import WarningLog, add_options, add_run_arguments, apply_quick, check_integers, \
    check_run_settings, complete, run_state, selection
from .plots import plot_adjoint_norms, plot_test_error, save_figure
from .threads import blas_threads

__all__ = ["DEFAULTS", "QUICK", "TINY", "SYNTHETIC_PER_CLASS", "add_arguments", "check_settings",
           "load_data", "train_method", "run"]

METHODS = JP_METHODS
"""``adjoint``, ``coadjoint``, ``lstm``; ``--method`` also takes ``both`` (the first two) and
``all``."""

KW = dict(activation="tanh", output="sigmoid", loss="bce")
"""The RNN: tanh hidden units, sigmoid head, BCE (the LSTM: the same head and loss)."""

DEFAULTS = dict(data=None, vectors=None, synthetic=False, method="all", T=50, n_train=None,
                n_test=None, dim=None, pad="front", unknown="zero", hidden=32, epochs=20,
                batch_size=32, G="G23", alpha=0.1, optimizer="sgd", lr=None, scale=None,
                bias_scale=0.0, clip=None, seed=0, data_seed=0, eval_batch=2500,
                out="results/imdb", progress=True, blas_threads=1)
"""JP's setting: the full splits (``n_train = n_test = None``: 25 000 each), T = 50, 100-d
vectors (``dim=None`` takes the file's; ``dim=100`` insists). ``data_seed`` picks the balanced
subsets when ``n_train`` / ``n_test`` are given. ``lr=None``: SGD 0.1, Adam 1e-3 (as in LTG)."""

QUICK = dict(n_train=5000, n_test=5000, epochs=10)
"""``--quick``: 5000 + 5000 reviews, 10 epochs of each method (minutes on 2 cores, most of it the
LSTM; reading glove.6B.100d.txt takes about 10 s)."""

TINY = dict(synthetic=True, T=12, hidden=4, epochs=2, batch_size=16)
"""The test suite's setting: the synthetic corpus, a second or two."""

SYNTHETIC_PER_CLASS = 50
"""Reviews per class and split of the ``--synthetic`` corpus (200 in all)."""

_CHOICES = {"pad": _imdb.PADS, "unknown": _imdb.UNKNOWN}


def methods_of(method):
    """``"both"`` -> (adjoint, coadjoint); ``"all"`` -> :data:`METHODS`; a name -> (name,)."""
    return selection(method, METHODS, {"both": ("adjoint", "coadjoint"), "all": METHODS}, "method")


# ------------------------------------------------------------------------------ settings
def _path_setting(value, name):
    if value is None:
        return None
    if isinstance(value, bool) or isinstance(value, bytes) or not isinstance(
            value, (str, os.PathLike)):
        raise TypeError("%s must be a path (str or os.PathLike), got %r" % (name, value))
    return os.fspath(value)


def check_settings(**settings):
    """Validate and complete the settings (unknown keys: TypeError); a new dict with every key of
    :data:`DEFAULTS`, ``lr`` filled in. ValueError when neither ``data`` and ``vectors`` nor
    ``synthetic`` are given (saying where to get the data)."""
    s = complete(settings, DEFAULTS, "imdb")
    s["data"] = _path_setting(s["data"], "data")
    s["vectors"] = _path_setting(s["vectors"], "vectors")
    s["synthetic"] = bool(s["synthetic"])
    if s["synthetic"] and (s["data"] is not None or s["vectors"] is not None):
        raise ValueError("give either synthetic (a made-up corpus) or data and vectors, not both")
    if not s["synthetic"] and (s["data"] is None or s["vectors"] is None):
        missing = " and ".join(k for k in ("data", "vectors") if s[k] is None)
        raise ValueError(
            "the IMDB experiment needs the reviews and word vectors; %s not given. --data "
            "FOLDER: %s --vectors FILE: %s Or run --synthetic for a smoke test on a made-up "
            "corpus." % (missing, _imdb.DATA_HINT, _imdb.VECTORS_HINT))
    methods_of(s["method"])
    s["T"] = _integer(s["T"], "T", 2)      # the penalties compare at least two adjoints
    for k in ("n_train", "n_test"):
        s[k] = _integer(s[k], k, 2, allow_none=True)
        if s["synthetic"] and s[k] is not None and s[k] > 2 * SYNTHETIC_PER_CLASS:
            s[k] = 2 * SYNTHETIC_PER_CLASS     # run() says so: the corpus has no more
    s["dim"] = _integer(s["dim"], "dim", 1, allow_none=True)
    for k, choices in _CHOICES.items():
        if s[k] not in choices:
            raise ValueError("%s must be one of %s, got %r" % (k, ", ".join(choices), s[k]))
    check_integers(s, (("hidden", 1), ("epochs", 0), ("batch_size", 1), ("seed", 0),
                       ("data_seed", 0), ("eval_batch", 1)))
    check_jp_settings(s)
    return check_run_settings(s)


def add_arguments(p):
    d = DEFAULTS
    p.add_argument("--data", default=d["data"], metavar="FOLDER",
                   help="the aclImdb folder (or the folder holding it), from %s" % _imdb.IMDB_URL)
    p.add_argument("--vectors", default=d["vectors"], metavar="FILE",
                   help="word vectors in GloVe text format, e.g. glove.6B.100d.txt from %s"
                        % _imdb.GLOVE_URL)
    p.add_argument("--synthetic", action="store_true",
                   help="instead of --data/--vectors: a small made-up corpus written to "
                        "OUT/synthetic_data (a smoke test; sizes above its %d reviews per split "
                        "are capped)" % (2 * SYNTHETIC_PER_CLASS))
    p.add_argument("--method", default=d["method"], choices=METHODS + ("both", "all"),
                   help="which method(s); 'all' (default) = adjoint, coadjoint, lstm as in JP "
                        "Fig. 3")
    p.add_argument("--pad", default=d["pad"], choices=_imdb.PADS,
                   help="where short reviews get zero vectors (default %(default)s: the words "
                        "end at step T)")
    p.add_argument("--unknown", default=d["unknown"], choices=_imdb.UNKNOWN,
                   help="words without a vector: 'zero' keeps their place with a zero vector, "
                        "'skip' drops them before the cut (default %(default)s)")
    p.add_argument("--G", default=d["G"], choices=coadjoint.penalty_names(),
                   help="adjoint penalty of the coadjoint method (default %(default)s)")
    p.add_argument("--optimizer", default=d["optimizer"], choices=tuple(OPTIMIZERS),
                   help="default %(default)s")
    add_options(p, d, ("T", int, "tokens kept per review, the first ones (default %(default)s, "
                                 "as JP)"),
                ("n_train", int, "training reviews, a balanced random subset (default: all "
                                 "25000)"),
                ("n_test", int, "test reviews, a balanced random subset (default: all 25000)"),
                ("dim", int, "required vector dimension (default: the file's; JP: 100)"),
                ("hidden", int, "hidden size m"), ("epochs", int, ""), ("batch_size", int, ""),
                ("alpha", float, "weight of G in F + alpha G, >= 0"),
                ("lr", float, "learning rate (default: SGD 0.1, Adam 0.001)"),
                ("scale", float, "std of every weight (default 1/sqrt(fan_in))"),
                ("bias_scale", float, "std of the biases"),
                ("clip", float, "clip each minibatch gradient to this global norm (default: "
                                "off)"),
                ("eval_batch", int, "test reviews per evaluation chunk"))
    add_run_arguments(p, d, QUICK, data_seed="seed of the balanced subsets")


# ------------------------------------------------------------------------------ data
def load_data(settings):
    """``(train, test, info)``: the two :class:`~manualgrad.data.imdb.ImdbSplit` s (word indices,
    not embedded) and a JSON-able description (sources, vector file, counts per split).

    With ``synthetic`` the corpus is first written to ``out/synthetic_data``; paths in ``info``
    are then relative to ``out`` (so two runs of one command give the same record).
    """
    s = settings
    if s["synthetic"]:
        folder = os.path.join(s["out"], "synthetic_data")
        data, vectors = _imdb.write_synthetic(folder, n_per_class=SYNTHETIC_PER_CLASS,
                                              seed=s["data_seed"])
    else:
        data, vectors = s["data"], s["vectors"]
    tr, te = _imdb.load_splits(data, vectors, T=s["T"], n_train=s["n_train"],
                               n_test=s["n_test"], seed=s["data_seed"], pad=s["pad"],
                               unknown=s["unknown"], dim=s["dim"], embed_inputs=False)
    vec = tr.vectors
    if tr.stats["words_used"] == 0:
        raise ValueError("none of the first %d tokens of the %d training reviews has a vector in "
                         "%s (%d lines read): is it the right file? %s"
                         % (s["T"], tr.stats["reviews"], vec.path, vec.lines, _imdb.VECTORS_HINT))

    def shown(path):
        if s["synthetic"]:
            return os.path.relpath(path, os.path.realpath(s["out"]))
        return str(path)

    info = {"source": "synthetic" if s["synthetic"] else "aclImdb",
            "reviews_folder": shown(_imdb.imdb_root(data)),
            "vectors": {"path": shown(vec.path), "dim": vec.dim, "lines": vec.lines,
                        "words_kept": len(vec), "duplicates": vec.duplicates,
                        "header": vec.header},
            "policy": {"T": s["T"], "pad": s["pad"], "unknown": s["unknown"],
                       "tokenizer": "lower case; <br /> -> space; apostrophes inside words "
                                    "dropped; other non-alphanumerics separate tokens"},
            "train": tr.stats, "test": te.stats}
    return tr, te, info


# ------------------------------------------------------------------------------ training
def _synchronize():
    if backend.get_backend() == "cupy":
        backend.xp().cuda.Device().synchronize()


def train_method(method, settings, train_split, test_split, progress=None):
    """Train one method on the encoded splits; a dict like the LTG experiment's ``train_method``.

    Keys: ``method``; ``epochs`` (rows: ``epoch``, ``train_F``, ``train_G`` (coadjoint),
    ``test_F``, ``test_error``, ``test_G``, ``lam1``, ``lamT``, ``grad_time_s`` (mean seconds
    per minibatch gradient in that epoch), ``clip_fired`` when clipping); ``stopped``;
    ``wall_time_s``; ``warnings``; ``adjoint_norms`` ({epoch: mean ||lambda_k||, k = 1..T}); and
    ``_norms`` ({epoch: :class:`~manualgrad.inspect.AdjointNorms`}, for the plot; not JSON-able).
    """
    s = settings
    if method not in METHODS:
        raise ValueError("unknown method %r: valid are %s" % (method, ", ".join(METHODS)))
    np = backend.np
    E = backend.asarray(train_split.vectors.matrix)               # (V + 1, d), row 0 zeros
    tok_tr = backend.asarray(train_split.tokens, dtype="int64")   # (T, n)
    tok_te = backend.asarray(test_split.tokens, dtype="int64")
    y_tr, y_te = train_split.y, test_split.y
    p = E.shape[1]
    init = dict(seed=s["seed"], scale=s["scale"], bias_scale=s["bias_scale"])
    model, kw = jp_model(method, KW)
    params = model.init_params(p, s["hidden"], 1, **init)
    pen = coadjoint.get_penalty(s["G"])
    progress = s["progress"] if progress is None else progress
    norm_means, G_seen, times, failure = {}, [], [], []     # carried by the training state
    log = WarningLog()
    gradient = jp_grad_fn(method, KW, pen, s["alpha"], G_seen, failure)

    def grad_fn(P, tok, y):
        t0 = time.perf_counter()
        F, grads = gradient(P, E[tok], y)                         # embedded: (T, B, d)
        F = float(F)
        _synchronize()
        times.append(time.perf_counter() - t0)
        return F, grads

    def evaluate(P):
        n = tok_te.shape[1]
        F_sum = err_sum = G_sum = 0.0
        norm_sum = np.zeros(s["T"])
        for a in range(0, n, s["eval_batch"]):
            b = min(n, a + s["eval_batch"])
            y = y_te[a:b]
            sw = model.sweep(P, E[tok_te[:, a:b]], y, **kw)
            F_sum += float(sw.F) * (b - a)
            err_sum += train.classification_error(sw.traj.yhat, y) * (b - a)
            norm_sum += backend.to_numpy(coadjoint.adjoint_norms_from_lam(sw.adj.lam)).sum(axis=1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                G_sum += float(pen(sw.adj.lam, sw.adj.lam0)[0].sum())
        mean = norm_sum / n
        norm_means[str(len(norm_means))] = mean.tolist()
        row = {"test_F": F_sum / n, "test_error": err_sum / n, "test_G": G_sum / n,
               "lam1": float(mean[0]), "lamT": float(mean[-1])}
        drain_mean(row, "train_G", G_seen)
        return drain_mean(row, "grad_time_s", times)

    state = run_state(s, s["out"], method, carry={"G_seen": G_seen, "times": times,
                                                   "failure": failure, "norms": norm_means,
                                                   "warnings": log.seen})
    with log, blas_threads(s["blas_threads"]):
        hist = train.fit(params, grad_fn, tok_tr, y_tr, epochs=s["epochs"],
                         batch_size=s["batch_size"], optimizer=make_optimizer(s), seed=s["seed"],
                         evaluate=evaluate, progress=progress, desc=method, clip=s["clip"],
                         state=state)
    caught = log.counts()
    k = np.arange(1, s["T"] + 1)
    norms_by_epoch = {int(e): inspect.AdjointNorms(None, np.array(m), k)
                      for e, m in norm_means.items()}
    return {"method": method, "epochs": hist.epochs,
            "stopped": stop_reason(hist.stopped, failure),
            "wall_time_s": hist.wall_time, "warnings": caught,
            "adjoint_norms": dict(norm_means),
            "_norms": norms_by_epoch}


# ------------------------------------------------------------------------------ the experiment
def _fmt(x, spec):
    return spec % x if isinstance(x, (int, float)) and math.isfinite(x) else "-"


def _table(res, say):
    say("\n%s:" % res["method"])
    say("%5s %10s %10s %10s %12s %12s %11s" % ("epoch", "train F", "test F", "test err",
                                               "||lam_1||", "||lam_T||", "ms/grad"))
    for r in res["epochs"]:
        if "test_F" not in r:
            continue
        say("%5d %10s %10s %10s %12s %12s %11s" % (
            r["epoch"], _fmt(r.get("train_F"), "%.4f"), _fmt(r["test_F"], "%.4f"),
            _fmt(r["test_error"], "%.4f"), _fmt(r["lam1"], "%.3e"), _fmt(r["lamT"], "%.3e"),
            _fmt(1e3 * r["grad_time_s"] if "grad_time_s" in r else None, "%.3f")))
    if res["stopped"]:
        say("stopped: " + res["stopped"])
    for name, w in res["warnings"].items():
        say("%s in %d steps; first: %s" % (name, w["count"], w["first"][:300]))


def _describe(st):
    top = ", ".join("%s (%d)" % (w, c) for w, c in st["top_unknown"][:8])
    return ("%s: %d reviews (%d pos, %d neg); %d of %d window tokens unknown (%.2f %%)%s; %d "
            "reviews padded (%d zero positions), %d longer than the window, %d with no known word"
            % (st["split"], st["reviews"], st["positive"], st["negative"], st["unknown"],
               st["unknown"] + st["words_used"], 100 * st["unknown_rate"],
               "; most frequent: " + top if top else "", st["reviews_padded"],
               st["padded_positions"], st["reviews_truncated"], st["reviews_empty"]))


def run(verbose=True, overwrite=False, **settings):
    """Run the experiment; returns the results record (also written to ``out/results.json``).

    Settings: see :data:`DEFAULTS` (``data`` and ``vectors``, or ``synthetic=True``; with the
    synthetic corpus ``n_train`` and ``n_test`` are capped at its size, and the run says so).
    ``overwrite``: replace a record already in ``out`` (else FileExistsError before training).
    """
    asked = apply_quick(dict(settings), DEFAULTS, QUICK)
    s = check_settings(**asked)
    out = _record.prepare_out(s["out"], overwrite or bool(s.get("resume")))
    say = print if verbose else (lambda *a, **k: None)
    for k in ("n_train", "n_test"):
        if asked.get(k) is not None and asked[k] != s[k]:
            say("note: %s = %s capped at %d, the synthetic corpus's reviews per split"
                % (k, asked[k], s[k]))
    methods = methods_of(s["method"])
    t_load = time.perf_counter()
    tr, te, info = load_data(s)
    t_load = time.perf_counter() - t_load
    vec = info["vectors"]
    say("IMDB sentiment (JP Sec. IV-B): %s reviews from %s, first %d tokens, %d-d vectors from %s "
        "(%d of %d words kept), pad %s, unknown words -> %s; loaded in %.1f s"
        % (info["source"], info["reviews_folder"], s["T"], vec["dim"], vec["path"],
           vec["words_kept"], vec["lines"], s["pad"], s["unknown"], t_load))
    if not s["synthetic"] and vec["dim"] != 100:
        say("note: JP embed in R^100; these vectors have %d dimensions" % vec["dim"])
    say(_describe(info["train"]))
    say(_describe(info["test"]))
    say("RNN m=%d tanh, sigmoid+BCE, seed %d; %s lr=%g, batch %d%s, %d epochs; methods: %s%s; "
        "backend %s/%s" % (s["hidden"], s["seed"], s["optimizer"].upper(), s["lr"],
                           s["batch_size"], ", clip %g" % s["clip"] if s["clip"] else "",
                           s["epochs"], ", ".join(methods),
                           " (G=%s, alpha=%g)" % (s["G"], s["alpha"])
                           if "coadjoint" in methods else "",
                           backend.get_backend(), backend.get_dtype().name))
    runs = []
    t0 = time.perf_counter()
    for method in methods:
        res = train_method(method, s, tr, te)
        runs.append(res)
        _table(res, say)
    wall = time.perf_counter() - t0
    summary = {}
    for r in runs:
        last = r["epochs"][-1]
        t = [row["grad_time_s"] for row in r["epochs"] if "grad_time_s" in row]
        summary[r["method"]] = {k: last[k] for k in ("test_error", "test_F") if k in last}
        if t:
            summary[r["method"]]["grad_time_s"] = sum(t) / len(t)
    say("\nfinal test error and mean time per minibatch gradient (JP Table I): " + "; ".join(
        "%s %s, %s ms" % (m, _fmt(v.get("test_error"), "%.4f"),
                          _fmt(1e3 * v["grad_time_s"] if "grad_time_s" in v else None, "%.3f"))
        for m, v in summary.items()))

    title = "IMDB%s (first %d tokens, %d-d vectors, %d train / %d test, m=%d): test error" % (
        " synthetic" if s["synthetic"] else "", s["T"], vec["dim"], info["train"]["reviews"],
        info["test"]["reviews"], s["hidden"])
    paths = {"test_error": save_figure(plot_test_error(runs, s, title=title),
                                       os.path.join(out, "test_error.png")),
             "adjoint_norms": save_figure(plot_adjoint_norms(runs, s),
                                          os.path.join(out, "adjoint_norms.png"), dpi=100)}
    record = _record.new_record("imdb", s)
    record["methods"] = list(methods)
    record["data"] = info
    for r in runs:
        _record.add_run(record, r["method"], r["epochs"],
                        **{k: v for k, v in r.items() if k not in ("_norms", "epochs")})
    record["summary"] = summary
    path = _record.finish(record, out, wall, figures=list(paths.values()))
    say("\nwrote %s, %s (%.2f s)" % (path, ", ".join(paths.values()), wall))
    return record
