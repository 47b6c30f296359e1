"""Long Time Gap (JP Sec. IV-A, Fig. 2): one RNN trained by the adjoint and the coadjoint method.

Task (:func:`manualgrad.data.long_time_gap`): u_1..u_50 i.i.d. N(0, I_5), label 1^T u_4 > 0;
8000 examples, the **last 1600 are the test set, the first 6400 train**. The RNN (tanh hidden
units, sigmoid head, BCE) is initialised once from ``seed`` and each method trains a copy of
those parameters on the same minibatch order (also from ``seed``):

- ``adjoint``: the gradient of F (JP eqs. 9-13, :func:`manualgrad.rnn.loss_and_grad`);
- ``coadjoint``: the gradient of F + alpha G(lambda_1..lambda_T) (JP eq. 14 with the penalty
  ``G``, :func:`manualgrad.coadjoint.loss_and_grad`).

After every epoch (and at epoch 0, the initialisation) the test set is evaluated: BCE, the
classification error, the penalty G on the test adjoints and the mean over test examples of
||lambda_1|| and ||lambda_T||. ``manualgrad run ltg`` prints a per-epoch table per method and a
table of ||lambda_k|| against k, and writes to ``--out``: ``results.json`` (settings, versions,
per-epoch rows, ||lambda_k|| per epoch), ``history.csv`` (one row per method and epoch),
``test_error.png`` (Fig. 2 style) and ``adjoint_norms.png``.

The record is built and written with :mod:`manualgrad.experiments.record` (seed, versions,
backend, figures, one run per method); ``manualgrad report`` aggregates records over seeds.
``--quick`` applies :data:`QUICK` (about 20 s on 2 cores); the test suite runs :data:`TINY`.

From Python: ``run(method="all", epochs=20, ...)`` returns the record; :func:`train_method` trains
one method and is what ``manualgrad study ltg`` (:mod:`manualgrad.experiments.study`) calls in
its worker processes.

BLAS threads: the engine's products are small, and a multi-threaded BLAS on a loaded machine can
be 30x slower than one thread (measured: 71 ms vs 2 ms per adjoint gradient on 2 shared cores).
``run`` therefore limits OpenBLAS to ``blas_threads`` threads (default 1) while it trains, via
threadpoolctl when installed, else OpenBLAS's own ``*_set_num_threads`` (nothing happens where
neither is found). NumPy conversion happens here, at the edge.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import time
import warnings

from .. import backend, coadjoint, data, inspect, rnn, train
from ..cells import lstm
from ..optim.adam import Adam
from ..optim.sgd import SGD
from .._validate import integer as _integer, number as _number
from . import record as _record
from .options import add_quick_argument, apply_quick, selection

__all__ = ["DEFAULTS", "QUICK", "TINY", "METHODS", "OPTIMIZERS", "add_arguments", "run",
           "check_settings", "check_data_settings", "make_data", "train_method", "coadjoint_grad_fn", "warning_counts",
           "stop_reason", "plot_test_error",
           "plot_adjoint_norms", "blas_threads"]

METHODS = ("adjoint", "coadjoint", "lstm")
"""Methods that ``--method`` accepts (plus ``both`` = adjoint and coadjoint, ``all`` = the three,
as in JP Fig. 2). ``lstm`` trains an LSTM (:mod:`manualgrad.cells.lstm`, same hidden size, seed
and scale) by its BPTT, i.e. the adjoint method."""

OPTIMIZERS = {"sgd": (SGD, 0.1), "adam": (Adam, 1e-3)}
"""name -> (class, default learning rate)."""

COLORS = {"adjoint": "tab:blue", "coadjoint": "tab:red", "lstm": "tab:green"}
"""Fig. 2 colours: adjoint blue, coadjoint red, LSTM green."""

DEFAULTS = dict(method="all", n=8000, n_test=1600, T=50, p=5, informative_step=4, hidden=32,
                epochs=20, batch_size=32, G="G23", alpha=0.1, optimizer="sgd", lr=None,
                scale=None, bias_scale=0.0, clip=None, seed=0, data_seed=1234, out="results/ltg",
                progress=True, blas_threads=1)
"""8000 examples as in JP; the last 1600 (20 %) are the test set, the first 6400 train.
``lr=None``: the optimizer's default (SGD 0.1, Adam 1e-3). ``scale=None``: weights
N(0, 1/fan_in); the JP authors' code used ``scale=1.0, bias_scale=1.0, hidden=10``."""

QUICK = dict(epochs=5)
"""``--quick``: the JP data set (8000 examples), 5 epochs of each method (about 20 s on 2 cores;
the defaults take about a minute)."""

TINY = dict(n=120, n_test=40, T=8, hidden=5, epochs=2)
"""The test suite's setting: a second or two."""


# ------------------------------------------------------------------------------ settings
def methods_of(method):
    """``"both"`` -> (adjoint, coadjoint); ``"all"`` -> all of :data:`METHODS`; a name -> (name,)."""
    return selection(method, METHODS, {"both": ("adjoint", "coadjoint"), "all": METHODS}, "method")


def check_data_settings(s, min_T=1):
    """Check, in place, the data and training sizes that the LTG experiments share.

    n, n_test, T, p, informative_step, hidden, epochs, batch_size, seed and data_seed become
    ints within range; the test split must leave training examples and the informative step
    must lie in [1, T].
    """
    for k, lo in (("n", 2), ("n_test", 1), ("T", min_T), ("p", 1), ("informative_step", 1),
                  ("hidden", 1), ("epochs", 0), ("batch_size", 1), ("seed", 0),
                  ("data_seed", 0)):
        s[k] = _integer(s[k], k, lo)
    if s["n_test"] >= s["n"]:
        raise ValueError("n_test must be smaller than n: the first n - n_test examples train; "
                         "got n = %d, n_test = %d" % (s["n"], s["n_test"]))
    if s["informative_step"] > s["T"]:
        raise ValueError("informative_step must lie in [1, T] = [1, %d], got %d"
                         % (s["T"], s["informative_step"]))
    return s


def check_settings(**settings):
    """Validate and complete the settings of the experiment (unknown keys: TypeError).

    Returns a new dict with every key of :data:`DEFAULTS`; ``lr`` filled in from the optimizer's
    default. Raises ValueError/TypeError naming the bad setting.
    """
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise TypeError("unknown LTG setting(s) %s; valid are %s"
                        % (", ".join(unknown), ", ".join(DEFAULTS)))
    s = dict(DEFAULTS)
    s.update(settings)
    methods_of(s["method"])
    check_data_settings(s, min_T=2)  # the penalties compare at least two adjoints
    coadjoint.get_penalty(s["G"])          # ValueError naming the valid penalties
    if not isinstance(s["G"], str):
        raise TypeError("G must be a penalty name (%s), got %r"
                        % (", ".join(coadjoint.penalty_names()), s["G"]))
    s["alpha"] = _number(s["alpha"], "alpha", minimum=0.0)
    if s["optimizer"] not in OPTIMIZERS:
        raise ValueError("unknown optimizer %r: valid are %s"
                         % (s["optimizer"], ", ".join(OPTIMIZERS)))
    s["lr"] = OPTIMIZERS[s["optimizer"]][1] if s["lr"] is None else _number(s["lr"], "lr",
                                                                             positive=True)
    s["scale"] = _number(s["scale"], "scale", minimum=0.0, allow_none=True)
    s["bias_scale"] = _number(s["bias_scale"], "bias_scale", minimum=0.0)
    s["clip"] = _number(s["clip"], "clip", positive=True, allow_none=True)
    if s["blas_threads"] is not None:
        s["blas_threads"] = _integer(s["blas_threads"], "blas_threads", 1)
    s["progress"] = bool(s["progress"])
    return s


def add_arguments(p):
    d = DEFAULTS
    p.add_argument("--method", default=d["method"], choices=METHODS + ("both", "all"),
                   help="which training method(s); 'both' trains each from the same init on the "
                        "same data (default %(default)s)")
    p.add_argument("--G", default=d["G"], choices=coadjoint.penalty_names(),
                   help="adjoint penalty of the coadjoint method: G20/G22/G23 are JP eqs. 20/22/"
                        "23, G23w the weighted variant, 'released' the authors' released code "
                        "(default %(default)s)")
    p.add_argument("--alpha", type=float, default=d["alpha"],
                   help="weight of G in F + alpha G, >= 0 (default %(default)s)")
    p.add_argument("--optimizer", default=d["optimizer"], choices=tuple(OPTIMIZERS),
                   help="default %(default)s")
    p.add_argument("--lr", type=float, default=d["lr"],
                   help="learning rate (default: SGD 0.1, Adam 0.001)")
    p.add_argument("--clip", type=float, default=d["clip"],
                   help="clip each minibatch gradient to this global norm (default: no clipping)")
    p.add_argument("--n", type=int, default=d["n"], help="examples in all (default %(default)s)")
    p.add_argument("--n-test", type=int, default=d["n_test"],
                   help="held-out test examples, the last ones (default %(default)s)")
    p.add_argument("--T", type=int, default=d["T"], help="sequence length (default %(default)s)")
    p.add_argument("--informative-step", type=int, default=d["informative_step"],
                   help="1-based step whose sum decides the label (JP: 4)")
    p.add_argument("--hidden", type=int, default=d["hidden"],
                   help="hidden size m (JP authors' code: 10; default %(default)s)")
    p.add_argument("--epochs", type=int, default=d["epochs"], help="default %(default)s")
    p.add_argument("--batch-size", type=int, default=d["batch_size"], help="default %(default)s")
    p.add_argument("--scale", type=float, default=d["scale"],
                   help="std of every weight (JP authors' code: 1.0); default 1/sqrt(fan_in)")
    p.add_argument("--bias-scale", type=float, default=d["bias_scale"],
                   help="std of the biases (JP authors' code: 1.0; default %(default)s)")
    p.add_argument("--seed", type=int, default=d["seed"],
                   help="init and shuffling seed, shared by the methods (default %(default)s)")
    p.add_argument("--data-seed", type=int, default=d["data_seed"], help="default %(default)s")
    p.add_argument("--blas-threads", type=int, default=d["blas_threads"],
                   help="BLAS threads while training (default %(default)s; fastest for these "
                        "small products)")
    p.add_argument("--out", default=d["out"], help="output folder (default %(default)s)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    add_quick_argument(p, QUICK)


# ------------------------------------------------------------------------------ BLAS threads
_OPENBLAS_SYMBOLS = (("openblas_set_num_threads", "openblas_get_num_threads"),
                     ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
                     ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                     ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"))


def _openblas_handles():
    """(set, get) function pairs of every OpenBLAS loaded in this process (Linux; else [])."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()
                     and line.split()[-1].startswith("/")}
    except OSError:
        return []
    pairs = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _OPENBLAS_SYMBOLS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                setter, getter = getattr(lib, set_name), getattr(lib, get_name)
                setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
                pairs.append((setter, getter))
                break
    return pairs


@contextlib.contextmanager
def blas_threads(n):
    """Limit the BLAS to ``n`` threads inside the block (None: leave it alone); restored after."""
    if n is None or backend.get_backend() != "numpy":
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(limits=int(n), user_api="blas"):
            yield
        return
    pairs = _openblas_handles()
    old = [get() for _, get in pairs]
    for setter, _ in pairs:
        setter(int(n))
    try:
        yield
    finally:
        for (setter, _), k in zip(pairs, old):
            setter(int(k))


# ------------------------------------------------------------------------------ the experiment
KW = dict(activation="tanh", output="sigmoid", loss="bce")
LSTM_KW = dict(output="sigmoid", loss="bce")


def make_data(settings):
    """``((u_train, y_train), (u_test, y_test))``: the LTG task, the last ``n_test`` held out."""
    s = settings
    u, y = data.long_time_gap(n=s["n"], T=s["T"], p=s["p"], informative_step=s["informative_step"],
                              seed=s["data_seed"])
    return data.split(u, y, s["n_test"])


def init_params(settings):
    """The initial parameters every method starts from (``seed``, ``scale``, ``bias_scale``)."""
    s = settings
    return rnn.init_params(s["p"], s["hidden"], 1, seed=s["seed"], scale=s["scale"],
                           bias_scale=s["bias_scale"])


def _norms(adj):
    """Per-step norms ||lambda_k|| (without underflow) as an :class:`inspect.AdjointNorms`."""
    per = backend.to_numpy(coadjoint.adjoint_norms_from_lam(adj.lam))
    return inspect.AdjointNorms(per, per.mean(axis=1), backend.np.arange(1, per.shape[0] + 1))


def coadjoint_grad_fn(G, alpha, G_seen, failure, **kw):
    """The gradient of F + alpha G (:func:`manualgrad.coadjoint.loss_and_grad`) as ``fit`` wants
    it, ``(P, u, y) -> (F, grads)``. Each minibatch's G is appended to ``G_seen``; a
    FloatingPointError of the coadjoint sweep is appended to ``failure`` and returns a NaN loss,
    so ``fit`` stops cleanly."""
    def grad_fn(P, u, y):
        try:
            F, Gb, grads = coadjoint.loss_and_grad(P, u, y, G=G, alpha=alpha, **kw)
        except FloatingPointError as exc:
            failure.append(str(exc))
            return float("nan"), {}
        G_seen.append(float(Gb))
        return F, grads
    return grad_fn


def warning_counts(caught):
    """``{category name: {"count", "first"}}`` of the warnings recorded by ``catch_warnings``."""
    seen = {}
    for w in caught:
        seen.setdefault(w.category.__name__, {"count": 0, "first": str(w.message)})
        seen[w.category.__name__]["count"] += 1
    return seen


def stop_reason(stopped, failure):
    """``fit``'s stop reason, with the first coadjoint failure (if any) appended."""
    if failure:
        return "%s (%s)" % (stopped, failure[0]) if stopped else failure[0]
    return stopped


def train_method(method, settings, datasets=None, params=None, progress=None, keep_norms=True):
    """Train one method from the settings; returns a dict (plain Python, JSON-able).

    Keys: ``method``; ``epochs`` (rows: ``epoch``, ``train_F`` (batch-mean BCE over the epoch),
    ``train_G`` (coadjoint: mean penalty over the epoch), ``test_F``, ``test_error``, ``test_G``
    (G on the test adjoints, for either method), ``lam1``, ``lamT`` (means over the test
    examples of ||lambda_1||, ||lambda_T||), ``clip_fired`` when clipping); ``stopped`` (why
    training ended early, or ""); ``wall_time_s``; ``warnings`` ({category: {count, first}});
    ``adjoint_norms`` ({epoch: mean ||lambda_k||, k = 1..T}) if ``keep_norms``, and then also
    ``_norms`` ({epoch: :class:`~manualgrad.inspect.AdjointNorms`}, for the plots; not JSON-able).
    """
    s = check_settings(**settings)
    if method not in METHODS:
        raise ValueError("unknown method %r: valid are %s" % (method, ", ".join(METHODS)))
    (u_tr, y_tr), (u_te, y_te) = datasets if datasets is not None else make_data(s)
    if method == "lstm":  # its own parameters, drawn from the same seed and scale
        params = lstm.init_params(s["p"], s["hidden"], 1, seed=s["seed"], scale=s["scale"],
                                  bias_scale=s["bias_scale"])
    params = init_params(s) if params is None else params
    pen = coadjoint.get_penalty(s["G"])
    progress = s["progress"] if progress is None else progress
    norms_by_epoch = {}
    G_seen = []        # penalty values of this epoch's minibatches (coadjoint)
    failure = []       # a FloatingPointError raised by the coadjoint sweep

    model = lstm if method == "lstm" else rnn
    kw = LSTM_KW if method == "lstm" else KW
    if method in ("adjoint", "lstm"):
        grad_fn = functools.partial(model.loss_and_grad, **kw)
    else:
        grad_fn = coadjoint_grad_fn(pen, s["alpha"], G_seen, failure, **KW)

    def evaluate(P):
        sw = model.sweep(P, u_te, y_te, **kw)
        nrm = _norms(sw.adj)
        if keep_norms:
            norms_by_epoch[len(norms_by_epoch)] = nrm
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Gb = pen(sw.adj.lam, sw.adj.lam0)[0]
        row = {"test_F": float(sw.F), "test_error": train.classification_error(sw.traj.yhat, y_te),
               "test_G": float(Gb.mean()), "lam1": float(nrm.mean[0]),
               "lamT": float(nrm.mean[-1])}
        if G_seen:
            row["train_G"] = sum(G_seen) / len(G_seen)
            G_seen.clear()
        return row

    cls = OPTIMIZERS[s["optimizer"]][0]
    with warnings.catch_warnings(record=True) as caught, blas_threads(s["blas_threads"]):
        warnings.simplefilter("always")
        hist = train.fit(params, grad_fn, u_tr, y_tr, epochs=s["epochs"],
                         batch_size=s["batch_size"], optimizer=cls(s["lr"]), seed=s["seed"],
                         evaluate=evaluate, progress=progress, desc=method, clip=s["clip"])
    out = {"method": method, "epochs": hist.epochs, "stopped": stop_reason(hist.stopped, failure),
           "wall_time_s": hist.wall_time, "warnings": warning_counts(caught)}
    if keep_norms:
        out["adjoint_norms"] = {str(e): n.mean.tolist() for e, n in norms_by_epoch.items()}
        out["_norms"] = norms_by_epoch
    return out


def _fmt_row(r, with_G):
    ratio = r["lam1"] / r["lamT"] if r.get("lamT") else float("nan")
    G = ("%10.4g" % r["train_G"]) if "train_G" in r else "%10s" % "-"
    return "%5d %10s%s %10.4f %10.4f %12.3e %12.3e %12.3e" % (
        r["epoch"], ("%.4f" % r["train_F"]) if "train_F" in r else "-",
        (" " + G) if with_G else "", r["test_F"], r["test_error"], r["lam1"], r["lamT"], ratio)


def _table(res, say):
    with_G = res["method"] == "coadjoint"
    say("\n%s:" % res["method"])
    say("%5s %10s%s %10s %10s %12s %12s %12s" % (
        "epoch", "train F", (" %10s" % "train G") if with_G else "", "test F", "test err",
        "||lam_1||", "||lam_T||", "ratio"))
    for r in res["epochs"]:
        if "test_F" in r:
            say(_fmt_row(r, with_G))
    if res["stopped"]:
        say("stopped: " + res["stopped"])
    for name, w in res["warnings"].items():
        say("%s in %d steps; first: %s" % (name, w["count"], w["first"][:300]))


def _label(method, s):
    if method == "coadjoint":
        return "RNN coadjoint (%s, alpha=%g)" % (s["G"], s["alpha"])
    if method == "lstm":
        return "LSTM (adjoint)"
    return "RNN %s" % method


def plot_test_error(runs, settings, ax=None, title=None):
    """Fig. 2 style: test classification error against epoch, one line per method."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.6))
    else:
        fig = ax.figure
    for res in runs:
        rows = [r for r in res["epochs"] if "test_error" in r]
        ax.plot([r["epoch"] for r in rows], [r["test_error"] for r in rows], marker="o", ms=3,
                lw=2, color=COLORS.get(res["method"]), label=_label(res["method"], settings))
    ax.axhline(0.5, color="0.5", ls=":", lw=1, label="chance")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test classification error")
    ax.set_ylim(0, 0.65)
    ax.set_title(title or "LTG (T=%d, m=%d, %s): test error" % (
        settings["T"], settings["hidden"], _init_text(settings)), fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def _init_text(s):
    w = "N(0,1/fan_in)" if s["scale"] is None else "N(0,%g^2)" % s["scale"]
    return "W~%s, b~N(0,%g^2)" % (w, s["bias_scale"]) if s["bias_scale"] else "W~%s, b=0" % w


def plot_adjoint_norms(runs, settings):
    """Two panels: ||lambda_k|| vs k (init, last epoch); ||lambda_1||, ||lambda_T|| vs epoch."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    b.xaxis.set_major_locator(MaxNLocator(integer=True))
    first = True
    for res in runs:
        norms = res["_norms"]
        c = COLORS.get(res["method"])
        if first:
            a.plot(norms[0].k, norms[0].mean, color="0.4", ls="--", lw=1.5, label="epoch 0 (init)")
            first = False
        last = max(norms)
        a.plot(norms[last].k, norms[last].mean, color=c, lw=2,
               label="%s, epoch %d" % (res["method"], last))
        rows = [r for r in res["epochs"] if "lam1" in r]
        ep = [r["epoch"] for r in rows]
        b.plot(ep, [r["lamT"] for r in rows], color=c, lw=2,
               label=r"%s $\|\lambda_T\|$" % res["method"])
        b.plot(ep, [r["lam1"] for r in rows], color=c, lw=2, ls="--",
               label=r"%s $\|\lambda_1\|$" % res["method"])
    for ax in (a, b):
        ax.set_yscale("log", nonpositive="mask")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    a.set_xlabel("step k")
    a.set_ylabel(r"mean $\|\lambda_k\|_2$ (test set)")
    b.set_xlabel("epoch")
    b.set_ylabel(r"mean $\|\lambda_k\|_2$ (test set)")
    a.set_title("adjoint norms against step", fontsize=9)
    b.set_title(r"$\|\lambda_1\|$ (input end) and $\|\lambda_T\|$ (output end)", fontsize=9)
    fig.tight_layout()
    return fig


def run(verbose=True, **settings):
    """Run the experiment; returns the results record (also written to ``out/results.json``).

    Settings: see :data:`DEFAULTS` (``method`` "adjoint", "coadjoint" or "both"). Every method
    starts from the same initial parameters and sees the same minibatches.
    """
    s = check_settings(**apply_quick(dict(settings), DEFAULTS, QUICK))
    say = print if verbose else (lambda *a, **k: None)
    methods = methods_of(s["method"])
    datasets = make_data(s)
    say("Long Time Gap (JP Sec. IV-A): n=%d (train: first %d, test: last %d), T=%d, p=%d, label "
        "from u_%d; RNN m=%d tanh, sigmoid+BCE, init %s, seed %d; %s lr=%g, batch %d%s; "
        "methods: %s%s; backend %s/%s"
        % (s["n"], s["n"] - s["n_test"], s["n_test"], s["T"], s["p"], s["informative_step"],
           s["hidden"], _init_text(s), s["seed"], s["optimizer"].upper(), s["lr"],
           s["batch_size"], ", clip %g" % s["clip"] if s["clip"] else "", ", ".join(methods),
           " (G=%s, alpha=%g)" % (s["G"], s["alpha"]) if "coadjoint" in methods else "",
           backend.get_backend(), backend.get_dtype().name))
    runs = []
    t0 = time.perf_counter()
    for method in methods:
        res = train_method(method, s, datasets=datasets, params=init_params(s))
        runs.append(res)
        _table(res, say)
    wall = time.perf_counter() - t0
    for res in runs:
        norms = res["_norms"]
        last = max(norms)
        say("\n%s: mean ||lambda_k|| over the test set, at initialisation and after epoch %d:"
            % (res["method"], last))
        say(inspect.norm_table([norms[0], norms[last]], labels=["epoch 0", "epoch %d" % last]))
    if len(runs) > 1:
        say("\nfinal test error: " + ", ".join("%s %.4f" % (r["method"], r["epochs"][-1].get(
            "test_error", float("nan"))) for r in runs))
    out = s["out"]
    os.makedirs(out, exist_ok=True)
    paths = {"results": os.path.join(out, "results.json"), "csv": os.path.join(out, "history.csv"),
             "test_error": os.path.join(out, "test_error.png"),
             "adjoint_norms": os.path.join(out, "adjoint_norms.png")}
    import matplotlib.pyplot as plt
    fig = plot_test_error(runs, s)
    fig.savefig(paths["test_error"], dpi=110)
    plt.close(fig)
    fig = plot_adjoint_norms(runs, s)
    fig.savefig(paths["adjoint_norms"], dpi=100)
    plt.close(fig)
    record = _record.new_record("ltg", s)
    record["methods"] = list(methods)
    record["split"] = {"train": [0, s["n"] - s["n_test"]], "test": [s["n"] - s["n_test"], s["n"]],
                       "note": "examples [a, b): the first n - n_test train, the last n_test test"}
    for r in runs:
        _record.add_run(record, r["method"], r["epochs"],
                        **{k: v for k, v in r.items() if k not in ("_norms", "epochs")})
        last = r["epochs"][-1]
        record["summary"][r["method"]] = {k: last[k] for k in ("test_error", "test_F")
                                          if k in last}
    _record.finish(record, out, wall, figures=[paths["test_error"], paths["adjoint_norms"]])
    train.write_history_csv(paths["csv"], [dict({"method": r["method"]}, **row)
                                           for r in runs for row in r["epochs"]])
    say("\nwrote %s (%.1f s)" % (", ".join(paths.values()), wall))
    return record
