"""IMDB sentiment (JP Sec. IV-B, Fig. 3): adjoint vs coadjoint RNN vs LSTM on embedded reviews.

JP Table I (time per update) is measured along the way (``grad_time_s``).

Data (:mod:`manualgrad.data.imdb`, docs/imdb.md): the Stanford aclImdb reviews (``--data``; train
split for training, test split for testing, 25 000 each, or balanced random subsets of
``n_train`` / ``n_test``), tokenized, cut to the first ``T`` = 50 tokens, each embedded with the
word vectors of ``--vectors`` (GloVe format; glove.6B.100d.txt gives R^100 as in JP). Unknown
words and padding follow ``unknown`` / ``pad`` and are counted in the record. Labels pos = 1,
neg = 0; the head is a sigmoid with BCE, as in the LTG experiment.

Methods, as in :mod:`manualgrad.experiments.ltg` (whose optimizers, heads, penalty names and
figures this module reuses): every method starts from parameters drawn from ``seed`` and sees the
same minibatch order:

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

from .. import backend, coadjoint, inspect, rnn, train
from ..cells import lstm
from ..data import imdb as _imdb
from .._validate import integer as _integer, number as _number
from . import ltg
from . import record as _record
from .options import add_quick_argument, apply_quick

__all__ = ["DEFAULTS", "QUICK", "TINY", "SYNTHETIC_PER_CLASS", "add_arguments", "check_settings",
           "load_data", "train_method", "run"]

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
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise TypeError("unknown imdb setting(s) %s; valid are %s"
                        % (", ".join(unknown), ", ".join(DEFAULTS)))
    s = dict(DEFAULTS)
    s.update(settings)
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
    ltg.methods_of(s["method"])
    s["T"] = _integer(s["T"], "T", 2)      # the penalties compare at least two adjoints
    for k in ("n_train", "n_test"):
        s[k] = _integer(s[k], k, 2, allow_none=True)
    s["dim"] = _integer(s["dim"], "dim", 1, allow_none=True)
    for k, choices in _CHOICES.items():
        if s[k] not in choices:
            raise ValueError("%s must be one of %s, got %r" % (k, ", ".join(choices), s[k]))
    for k, lo in (("hidden", 1), ("epochs", 0), ("batch_size", 1), ("seed", 0), ("data_seed", 0),
                  ("eval_batch", 1)):
        s[k] = _integer(s[k], k, lo)
    if not isinstance(s["G"], str):
        raise TypeError("G must be a penalty name (%s), got %r"
                        % (", ".join(coadjoint.penalty_names()), s["G"]))
    coadjoint.get_penalty(s["G"])
    s["alpha"] = _number(s["alpha"], "alpha", minimum=0.0)
    if s["optimizer"] not in ltg.OPTIMIZERS:
        raise ValueError("unknown optimizer %r: valid are %s"
                         % (s["optimizer"], ", ".join(ltg.OPTIMIZERS)))
    s["lr"] = ltg.OPTIMIZERS[s["optimizer"]][1] if s["lr"] is None else _number(
        s["lr"], "lr", positive=True)
    s["scale"] = _number(s["scale"], "scale", minimum=0.0, allow_none=True)
    s["bias_scale"] = _number(s["bias_scale"], "bias_scale", minimum=0.0)
    s["clip"] = _number(s["clip"], "clip", positive=True, allow_none=True)
    if s["blas_threads"] is not None:
        s["blas_threads"] = _integer(s["blas_threads"], "blas_threads", 1)
    s["progress"] = bool(s["progress"])
    return s


def add_arguments(p):
    d = DEFAULTS
    p.add_argument("--data", default=d["data"], metavar="FOLDER",
                   help="the aclImdb folder (or the folder holding it), from %s" % _imdb.IMDB_URL)
    p.add_argument("--vectors", default=d["vectors"], metavar="FILE",
                   help="word vectors in GloVe text format, e.g. glove.6B.100d.txt from %s"
                        % _imdb.GLOVE_URL)
    p.add_argument("--synthetic", action="store_true",
                   help="instead of --data/--vectors: a small made-up corpus written to "
                        "OUT/synthetic_data (a smoke test)")
    p.add_argument("--method", default=d["method"], choices=ltg.METHODS + ("both", "all"),
                   help="which method(s); 'all' (default) = adjoint, coadjoint, lstm as in JP "
                        "Fig. 3")
    p.add_argument("--T", type=int, default=d["T"],
                   help="tokens kept per review, the first ones (default %(default)s, as JP)")
    p.add_argument("--n-train", type=int, default=d["n_train"],
                   help="training reviews, a balanced random subset (default: all 25000)")
    p.add_argument("--n-test", type=int, default=d["n_test"],
                   help="test reviews, a balanced random subset (default: all 25000)")
    p.add_argument("--dim", type=int, default=d["dim"],
                   help="required vector dimension (default: the file's; JP: 100)")
    p.add_argument("--pad", default=d["pad"], choices=_imdb.PADS,
                   help="where short reviews get zero vectors (default %(default)s: the words "
                        "end at step T)")
    p.add_argument("--unknown", default=d["unknown"], choices=_imdb.UNKNOWN,
                   help="words without a vector: 'zero' keeps their place with a zero vector, "
                        "'skip' drops them before the cut (default %(default)s)")
    p.add_argument("--hidden", type=int, default=d["hidden"], help="hidden size m "
                   "(default %(default)s)")
    p.add_argument("--epochs", type=int, default=d["epochs"], help="default %(default)s")
    p.add_argument("--batch-size", type=int, default=d["batch_size"], help="default %(default)s")
    p.add_argument("--G", default=d["G"], choices=coadjoint.penalty_names(),
                   help="adjoint penalty of the coadjoint method (default %(default)s)")
    p.add_argument("--alpha", type=float, default=d["alpha"],
                   help="weight of G in F + alpha G, >= 0 (default %(default)s)")
    p.add_argument("--optimizer", default=d["optimizer"], choices=tuple(ltg.OPTIMIZERS),
                   help="default %(default)s")
    p.add_argument("--lr", type=float, default=d["lr"],
                   help="learning rate (default: SGD 0.1, Adam 0.001)")
    p.add_argument("--scale", type=float, default=d["scale"],
                   help="std of every weight (default 1/sqrt(fan_in))")
    p.add_argument("--bias-scale", type=float, default=d["bias_scale"],
                   help="std of the biases (default %(default)s)")
    p.add_argument("--clip", type=float, default=d["clip"],
                   help="clip each minibatch gradient to this global norm (default: off)")
    p.add_argument("--seed", type=int, default=d["seed"],
                   help="init and shuffling seed, shared by the methods (default %(default)s)")
    p.add_argument("--data-seed", type=int, default=d["data_seed"],
                   help="seed of the balanced subsets (default %(default)s)")
    p.add_argument("--eval-batch", type=int, default=d["eval_batch"],
                   help="test reviews per evaluation chunk (default %(default)s)")
    p.add_argument("--blas-threads", type=int, default=d["blas_threads"],
                   help="BLAS threads while training (default %(default)s)")
    p.add_argument("--out", default=d["out"], help="output folder (default %(default)s)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    add_quick_argument(p, QUICK)


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
    """Train one method on the encoded splits; a dict like :func:`ltg.train_method`'s.

    Keys: ``method``; ``epochs`` (rows: ``epoch``, ``train_F``, ``train_G`` (coadjoint),
    ``test_F``, ``test_error``, ``test_G``, ``lam1``, ``lamT``, ``grad_time_s`` (mean seconds
    per minibatch gradient in that epoch), ``clip_fired`` when clipping); ``stopped``;
    ``wall_time_s``; ``warnings``; ``adjoint_norms`` ({epoch: mean ||lambda_k||, k = 1..T}); and
    ``_norms`` ({epoch: :class:`~manualgrad.inspect.AdjointNorms`}, for the plot; not JSON-able).
    """
    s = settings
    if method not in ltg.METHODS:
        raise ValueError("unknown method %r: valid are %s" % (method, ", ".join(ltg.METHODS)))
    np = backend.np
    E = backend.asarray(train_split.vectors.matrix)               # (V + 1, d), row 0 zeros
    tok_tr = backend.asarray(train_split.tokens, dtype="int64")   # (T, n)
    tok_te = backend.asarray(test_split.tokens, dtype="int64")
    y_tr, y_te = train_split.y, test_split.y
    p = E.shape[1]
    init = dict(seed=s["seed"], scale=s["scale"], bias_scale=s["bias_scale"])
    model = lstm if method == "lstm" else rnn
    kw = ltg.LSTM_KW if method == "lstm" else ltg.KW
    params = model.init_params(p, s["hidden"], 1, **init)
    pen = coadjoint.get_penalty(s["G"])
    progress = s["progress"] if progress is None else progress
    norms_by_epoch, G_seen, times, failure = {}, [], [], []

    def grad_fn(P, tok, y):
        t0 = time.perf_counter()
        u = E[tok]                                                # (T, B, d)
        if method == "coadjoint":
            try:
                F, G, grads = coadjoint.loss_and_grad(P, u, y, G=pen, alpha=s["alpha"],
                                                      **ltg.KW)
            except FloatingPointError as exc:   # fit stops on a non-finite loss, cleanly
                failure.append(str(exc))
                return float("nan"), {}
            G_seen.append(float(G))
        else:
            F, grads = model.loss_and_grad(P, u, y, **kw)
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
        norms_by_epoch[len(norms_by_epoch)] = inspect.AdjointNorms(None, mean,
                                                                   np.arange(1, s["T"] + 1))
        row = {"test_F": F_sum / n, "test_error": err_sum / n, "test_G": G_sum / n,
               "lam1": float(mean[0]), "lamT": float(mean[-1])}
        if G_seen:
            row["train_G"] = sum(G_seen) / len(G_seen)
            G_seen.clear()
        if times:
            row["grad_time_s"] = sum(times) / len(times)
            times.clear()
        return row

    cls = ltg.OPTIMIZERS[s["optimizer"]][0]
    with warnings.catch_warnings(record=True) as caught, ltg.blas_threads(s["blas_threads"]):
        warnings.simplefilter("always")
        hist = train.fit(params, grad_fn, tok_tr, y_tr, epochs=s["epochs"],
                         batch_size=s["batch_size"], optimizer=cls(s["lr"]), seed=s["seed"],
                         evaluate=evaluate, progress=progress, desc=method, clip=s["clip"])
    return {"method": method, "epochs": hist.epochs,
            "stopped": ltg.stop_reason(hist.stopped, failure),
            "wall_time_s": hist.wall_time, "warnings": ltg.warning_counts(caught),
            "adjoint_norms": {str(e): nm.mean.tolist() for e, nm in norms_by_epoch.items()},
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


def run(verbose=True, **settings):
    """Run the experiment; returns the results record (also written to ``out/results.json``).

    Settings: see :data:`DEFAULTS` (``data`` and ``vectors``, or ``synthetic=True``).
    """
    s = check_settings(**apply_quick(dict(settings), DEFAULTS, QUICK))
    say = print if verbose else (lambda *a, **k: None)
    methods = ltg.methods_of(s["method"])
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

    out = s["out"]
    os.makedirs(out, exist_ok=True)
    paths = {"test_error": os.path.join(out, "test_error.png"),
             "adjoint_norms": os.path.join(out, "adjoint_norms.png")}
    import matplotlib.pyplot as plt
    fig = ltg.plot_test_error(runs, s, title="IMDB%s (first %d tokens, %d-d vectors, %d train / "
                              "%d test, m=%d): test error" % (
                                  " synthetic" if s["synthetic"] else "", s["T"], vec["dim"],
                                  info["train"]["reviews"], info["test"]["reviews"],
                                  s["hidden"]))
    fig.savefig(paths["test_error"], dpi=110)
    plt.close(fig)
    fig = ltg.plot_adjoint_norms(runs, s)
    fig.savefig(paths["adjoint_norms"], dpi=100)
    plt.close(fig)
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
