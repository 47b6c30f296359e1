"""Character-level language model (BW-CHAR): a simple RNN learns to predict the next character.

The lecture's example (BW): vocabulary [h, e, l, o], training sequence "hello"; at test time the
model samples one character at a time and feeds it back. The model is the BW simple RNN with a
softmax head (:mod:`manualgrad.rnn`, many-to-many)::

    h_t    = tanh(W_hh h_{t-1} + W_xh x_t + b1)      (W_hh = W_rec, W_xh = W_in; h_0 = 0)
    o_t    = W_out h_t + b2,   yhat_t = softmax(o_t)   the distribution of character t + 1
    F_b    = sum_t -log yhat_t[c_{t+1}]                (BW: the loss is the sum over the steps)

x_t is the one-hot vector of character t. Training data
(:func:`manualgrad.data.text.next_char_dataset`): windows of ``seq_len`` characters, u (T, n, V)
one-hot inputs, y (T, n) the next characters' indices; each window starts from h_0 = 0. Training
runs :func:`manualgrad.train.fit` (progress bar, optional gradient clipping, which the per-epoch
table and ``results.json`` count).

Sampling (:func:`sample`, one-to-many): run the recurrence one step at a time from the carried
hidden state; after the prime characters, each sampled character is the next input. Temperature
0 is greedy (argmax); tau > 0 samples from softmax(o_t / tau).

``manualgrad run char`` trains on "hello" (a greedy sample from "h" reproduces it after a few
steps: docs/char.md); ``manualgrad run char --text FILE`` on a utf-8 text file. Written to
``--out``: ``results.json`` (settings, vocabulary, per-epoch rows, samples), ``loss.png`` (loss
per character against step) and ``params.npz`` (a :func:`manualgrad.train.save_checkpoint` with
the vocabulary in its meta).

The record is built with :mod:`manualgrad.experiments.record`: its one run, ``rnn``, holds the
per-epoch rows (also kept at the top level as ``epochs``), so ``manualgrad report`` can aggregate
runs over seeds. ``--quick`` applies :data:`QUICK`; the test suite runs :data:`TINY`.
"""
from __future__ import annotations

import functools
import math
import os
from numbers import Real

from .. import backend, rnn, train
from ..data.text import Vocabulary, next_char_dataset, one_hot, read_text
from ..optim.adam import Adam
from ..optim.sgd import SGD
from .._validate import integer as _integer, number as _number
from . import record as _record
from .methods import check_optimizer, make_optimizer
from .options import add_options, add_run_arguments, check_integers, check_run_settings, \
    complete, run_state, start_run
from .plots import save_figure
from .threads import blas_threads

__all__ = ["DEFAULTS", "QUICK", "TINY", "OPTIMIZERS", "KW", "add_arguments", "check_settings", "run", "sample",
           "reproduces", "load_text", "plot_loss", "REPRODUCE_MAX_CHARS"]

OPTIMIZERS = {"sgd": (SGD, 0.1), "adam": (Adam, 0.01)}
"""name -> (class, default learning rate)."""

KW = dict(activation="tanh", output="softmax", loss="cross_entropy", many_to_many=True)
"""The BW character model: tanh hidden units, softmax head, cross-entropy summed over the steps."""

DEFAULT_STRING = "hello"

REPRODUCE_MAX_CHARS = 200
"""Texts up to this length are checked after every epoch: does a greedy sample from the first
character reproduce the whole text? (``reproduces`` in the per-epoch rows.)"""

DEFAULTS = dict(text=None, string=None, seq_len=None, stride=None, max_chars=None, order="first",
                hidden=16, optimizer="adam", lr=None, epochs=100, batch_size=32, clip=None,
                scale=None, seed=0, first=None, length=None, temperature=1.0, samples=3,
                out="results/char", progress=True, blas_threads=1)
"""``text``: a utf-8 file to train on; ``string``: a literal training text; neither: "hello".
``seq_len=None``: min(len(text) - 1, 25); ``stride=None``: ``seq_len`` (windows do not overlap);
``max_chars``: use only the first that many characters of the text (None: all).
``order``: vocabulary order, ``first`` (first appearance: [h, e, l, o]) or ``sorted``.
``lr=None``: the optimizer's default (Adam 0.01, SGD 0.1). With one window ("hello") and
``batch_size`` >= 1 an epoch is one step. ``first=None``: the text's first character;
``length=None``: len(text) - 1 characters for texts up to 200 characters, else 200.
``temperature`` for the ``samples`` random samples (the greedy one is always printed)."""

QUICK = dict(epochs=60)
"""``--quick``: 60 steps on "hello" (greedy sampling reproduces it after about 16); a second."""

TINY = dict(epochs=3, samples=1)
"""The test suite's setting."""


# ------------------------------------------------------------------------------ settings
def check_settings(**settings):
    """Validate and complete the settings (unknown keys: TypeError); returns a new dict with every
    key of :data:`DEFAULTS`, ``lr`` filled in. Text-dependent defaults (``seq_len``, ``stride``,
    ``first``, ``length``) are filled in by :func:`run` once the text is read."""
    s = complete(settings, DEFAULTS, "char")
    if s["text"] is not None and s["string"] is not None:
        raise ValueError("give either text (a file) or string (a literal text), not both")
    if s["text"] is not None and (isinstance(s["text"], bytes)
                                  or not isinstance(s["text"], (str, os.PathLike))):
        raise TypeError("text must be a file path (str or os.PathLike), got %r" % (s["text"],))
    if s["string"] is not None and not isinstance(s["string"], str):
        raise TypeError("string must be a str, got %s" % type(s["string"]).__name__)
    check_integers(s, (("seq_len", 1), ("stride", 1), ("max_chars", 2), ("length", 0)),
                   allow_none=True)
    check_integers(s, (("hidden", 1), ("epochs", 0), ("batch_size", 1), ("seed", 0),
                       ("samples", 0)))
    if s["order"] not in ("first", "sorted"):
        raise ValueError("order must be 'first' or 'sorted', got %r" % (s["order"],))
    check_optimizer(s, OPTIMIZERS)
    s["clip"] = _number(s["clip"], "clip", positive=True, allow_none=True)
    s["scale"] = _number(s["scale"], "scale", minimum=0.0, allow_none=True)
    s["temperature"] = _temperature(s["temperature"])
    if s["first"] is not None and (not isinstance(s["first"], str) or not s["first"]):
        raise ValueError("first must be a non-empty str (the prime characters), got %r"
                         % (s["first"],))
    return check_run_settings(s)


def add_arguments(p):
    d = DEFAULTS
    p.add_argument("--text", default=d["text"], metavar="FILE",
                   help="utf-8 text file to train on (default: the lecture's \"hello\")")
    p.add_argument("--string", default=d["string"],
                   help="a literal training text instead of a file (default \"hello\")")
    p.add_argument("--order", default=d["order"], choices=("first", "sorted"),
                   help="vocabulary order (default %(default)s: [h, e, l, o] for \"hello\")")
    p.add_argument("--optimizer", default=d["optimizer"], choices=tuple(OPTIMIZERS),
                   help="default %(default)s")
    p.add_argument("--first", default=d["first"],
                   help="prime characters for the samples (default: the text's first character)")
    add_options(p, d, ("seq_len", int, "characters per training window (default: "
                                       "min(len(text) - 1, 25))"),
                ("stride", int, "characters between window starts (default: seq-len, no "
                                "overlap)"),
                ("max_chars", int, "use only the first N characters of the text (default: all)"),
                ("hidden", int, "hidden size m (default %(default)s; more, e.g. 128, for real "
                                "text)"),
                ("lr", float, "learning rate (default: Adam 0.01, SGD 0.1)"),
                ("epochs", int, "passes over the windows (\"hello\": one window, so one step "
                                "per epoch)"),
                ("batch_size", int, ""),
                ("clip", float, "clip each minibatch gradient to this global norm; the table "
                                "counts how often it fired per epoch (default: no clipping)"),
                ("scale", float, "std of every weight at init (default 1/sqrt(fan_in))"),
                ("length", int, "characters to generate per sample (default: len(text) - 1, at "
                                "most 200)"),
                ("temperature", float, "temperature of the random samples, >= 0; 0 is greedy"),
                ("samples", int, "random samples to print besides the greedy one"))
    add_run_arguments(p, d, QUICK, seed="init, shuffling and sampling seed")


# ------------------------------------------------------------------------------ sampling
def _temperature(temperature):
    if isinstance(temperature, bool) or not isinstance(temperature, Real):
        raise TypeError("temperature must be a real number >= 0 (0: greedy), got %r"
                        % (temperature,))
    t = float(temperature)
    if not math.isfinite(t) or t < 0:
        raise ValueError("temperature must be finite and >= 0 (0: greedy, > 0: sample from "
                         "softmax(o / temperature)), got %r" % (temperature,))
    return t


def sample(params, vocab, first, n, temperature=0.0, seed=0, activation="tanh"):
    """Generate ``n`` characters after the prime ``first``, one at a time (BW "Testing").

    One-to-many generation with the trained RNN: h_0 = 0; each character of ``first`` is fed in
    turn (one-hot), then each generated character is fed back as the next input::

        h_t = tanh(W_rec h_{t-1} + W_in x_t + b1),   o_t = W_out h_t + b2
        c_{t+1} = argmax o_t                            (temperature 0: greedy)
        c_{t+1} ~ softmax(o_t / temperature)            (temperature > 0)

    Each step is :func:`manualgrad.rnn.forward` with T = 1 from the carried state (``x0=h``).

    Parameters
    ----------
    params : the RNN's parameters (``rnn.init_params(V, m, V)``; W_in (m, V), W_out (V, m)).
    vocab : :class:`~manualgrad.data.text.Vocabulary` of V characters.
    first : non-empty str, every character in ``vocab`` (ValueError naming the unknown one).
    n : int >= 0, characters to generate.
    temperature : real >= 0 (negative or non-finite: ValueError).
    seed : int or a NumPy ``Generator``; the draws are on the host, so a seed gives the same
        sample every time (greedy sampling draws nothing).

    Returns ``first`` followed by the ``n`` generated characters (a str).
    """
    if not isinstance(vocab, Vocabulary):
        raise TypeError("vocab must be a Vocabulary, got %s" % type(vocab).__name__)
    if not isinstance(first, str):
        raise TypeError("first must be a str (the prime characters), got %s"
                        % type(first).__name__)
    if not first:
        raise ValueError("first is empty: give at least one character to start sampling from")
    vocab.check(first, "sample: first")
    n = _integer(n, "n", 0)
    temperature = _temperature(temperature)
    P = rnn.check_params(params)
    V = len(vocab)
    if P["W_in"].shape[1] != V or P["W_out"].shape[0] != V:
        raise ValueError("the RNN has %d inputs and %d outputs but the vocabulary has %d "
                         "characters; train with rnn.init_params(V, m, V), V = len(vocab)"
                         % (P["W_in"].shape[1], P["W_out"].shape[0], V))
    np = backend.np
    rng = seed if isinstance(seed, np.random.Generator) else backend.host_rng(seed)
    out = list(first)
    h = None
    c = vocab.index[first[0]]
    for t in range(len(first) - 1 + n):
        traj = rnn.forward(P, one_hot([[c]], V), x0=h, activation=activation,
                           output="identity")
        h = traj.x[1]
        if t < len(first) - 1:        # still reading the prime
            c = vocab.index[first[t + 1]]
            continue
        o = backend.to_numpy(traj.o[0]).astype(np.float64)  # o_t (V,): B = 1, many-to-one
        if temperature == 0.0:
            c = int(np.argmax(o))
        else:
            z = o / temperature
            p = np.exp(z - z.max())
            c = int(rng.choice(V, p=p / p.sum()))
        out.append(vocab.chars[c])
    return "".join(out)


def reproduces(params, vocab, text, activation="tanh"):
    """True when a greedy sample from ``text[0]`` of len(text) - 1 characters equals ``text``."""
    return sample(params, vocab, text[0], len(text) - 1, 0.0, activation=activation) == text


# ------------------------------------------------------------------------------ the experiment
def load_text(settings):
    """``(text, source)``: the training text of the settings and where it came from."""
    s = settings
    if s["text"] is not None:
        text, source = read_text(s["text"]), os.fspath(s["text"])
    else:
        text = DEFAULT_STRING if s["string"] is None else s["string"]
        source = "string"
        if not text:
            raise ValueError("string is empty: a character model needs some text")
    if s["max_chars"] is not None:
        text = text[:s["max_chars"]]
    if len(text) < 2:
        raise ValueError("the text has %d character(s); a next-character model needs at least 2"
                         % len(text))
    return text, source


def plot_loss(rows, steps_per_epoch, seq_len, n_chars, reproduced_at=None, title=None):
    """Training loss per character (nats) against the step, log scale (the mean over each epoch's
    minibatches, computed before their updates, plotted at the epoch's last step), the level of a
    uniform guess ln V (V = ``n_chars``, the vocabulary size) and a line where greedy sampling
    reproduced the text from then on."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    pts = [(r["epoch"] * steps_per_epoch, r["train_F"] / seq_len) for r in rows if "train_F" in r]
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=2, color="tab:blue",
                label="train loss per character")
    if pts:
        ax.axhline(math.log(n_chars), color="0.5", ls=":", lw=1,
                   label="uniform guess, ln V = %.3g" % math.log(n_chars))
    if reproduced_at is not None:
        ax.axvline(reproduced_at, color="tab:red", ls="--", lw=1,
                   label="greedy sample reproduces the text (step %d)" % reproduced_at)
    ax.set_yscale("log", nonpositive="mask")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy per character (nats)")
    ax.set_title(title or "character RNN", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _show(text, limit=None):
    """A sample for the console: newlines and tabs visible, cut at ``limit`` characters."""
    shown = text if limit is None or len(text) <= limit else text[:limit] + "..."
    return repr(shown)


def run(verbose=True, overwrite=False, **settings):
    """Train the character model and sample from it; returns the results record (also written to
    ``out/results.json``). Settings: see :data:`DEFAULTS`. ``overwrite``: replace a record
    already in ``out`` (else FileExistsError before training)."""
    s, out, say = start_run(check_settings, settings, DEFAULTS, QUICK, overwrite, verbose)
    text, source = load_text(s)
    vocab = Vocabulary(text, order=s["order"])
    seq_len = min(len(text) - 1, 25) if s["seq_len"] is None else s["seq_len"]
    stride = seq_len if s["stride"] is None else s["stride"]
    first = text[0] if s["first"] is None else s["first"]
    vocab.check(first, "first")     # fail before training, not after
    short = len(text) <= REPRODUCE_MAX_CHARS
    length = (len(text) - 1 if short else REPRODUCE_MAX_CHARS) if s["length"] is None \
        else s["length"]
    u, y = next_char_dataset(text, seq_len, vocab, stride=stride)
    n, V = u.shape[1], len(vocab)
    steps_per_epoch = math.ceil(n / s["batch_size"])
    if source == "string":
        name = "\"%s\"" % text if len(text) <= 40 else "a string"
    else:
        name = os.path.basename(source)
    say("Character RNN (BW-CHAR): %s, %d characters, vocabulary %s; %d window(s) of %d "
        "(stride %d); RNN m=%d tanh, softmax + cross-entropy summed over steps; %s lr=%g, batch "
        "%d (%d step(s)/epoch), %d epochs%s; seed %d; backend %s/%s"
        % (name if source == "string" else source, len(text),
           vocab.describe(limit=24), n, seq_len, stride, s["hidden"], s["optimizer"].upper(),
           s["lr"], s["batch_size"], steps_per_epoch, s["epochs"],
           ", clip %g" % s["clip"] if s["clip"] else "", s["seed"], backend.get_backend(),
           backend.get_dtype().name))

    params = rnn.init_params(V, s["hidden"], V, seed=s["seed"], scale=s["scale"])
    grad_fn = functools.partial(rnn.loss_and_grad, **KW)

    def evaluate(P):
        return {"reproduces": reproduces(P, vocab, text)} if short else {}

    with blas_threads(s["blas_threads"]):
        hist = train.fit(params, grad_fn, u, y, epochs=s["epochs"], batch_size=s["batch_size"],
                         optimizer=make_optimizer(s, OPTIMIZERS), seed=s["seed"], evaluate=evaluate,
                         progress=s["progress"], desc="char", example_axis=1, clip=s["clip"],
                         state=run_state(s, out, "char"))
    params = hist.params
    rows = hist.epochs
    for r in rows:
        r["step"] = r["epoch"] * steps_per_epoch
        if "train_F" in r:
            r["F_per_char"] = r["train_F"] / seq_len
    # the first step from which greedy sampling reproduced the text at every later evaluation
    reproduced_at = None
    if short and rows and rows[-1].get("reproduces"):
        k = len(rows) - 1
        while k > 0 and rows[k - 1].get("reproduces"):
            k -= 1
        reproduced_at = rows[k]["step"]

    every = max(1, len(rows) // 10)
    say("\n%6s %6s %10s %10s%s%s" % ("epoch", "step", "train F", "F/char",
                                      " %6s" % "clip" if s["clip"] else "",
                                      "  reproduces" if short else ""))
    for i, r in enumerate(rows):
        if "train_F" not in r or (i % every and i not in (1, len(rows) - 1)):
            continue
        say("%6d %6d %10.4f %10.4f%s%s" % (
            r["epoch"], r["step"], r["train_F"], r["F_per_char"],
            " %6d" % r["clip_fired"] if s["clip"] else "",
            "  %s" % r["reproduces"] if short else ""))
    if hist.stopped:
        say("stopped: " + hist.stopped)
    if s["clip"]:
        fired = [r.get("clip_fired", 0) for r in rows[1:]]
        say("clipping (max norm %g) fired in %d of %d steps; per epoch: %s"
            % (s["clip"], sum(fired), steps_per_epoch * len(fired),
               " ".join(str(f) for f in fired) if len(fired) <= 50 else
               "see results.json (epochs[].clip_fired)"))
    if short:
        say("greedy sampling from %r reproduces the text: %s%s"
            % (text[0], bool(rows[-1].get("reproduces")),
               " (from step %d on)" % reproduced_at if reproduced_at is not None else ""))

    greedy = sample(params, vocab, first, length, 0.0)
    randoms = [sample(params, vocab, first, length, s["temperature"], seed=s["seed"] + i)
               for i in range(s["samples"])]
    say("\nsamples from %r, %d characters each:" % (first, length))
    say("  greedy:            %s" % _show(greedy, 400))
    for i, smp in enumerate(randoms):
        say("  temperature %-5g %s" % (s["temperature"], _show(smp, 400))
            if i == 0 else "  %-17s %s" % ("", _show(smp, 400)))

    paths = {"results": os.path.join(out, "results.json"), "loss": os.path.join(out, "loss.png"),
             "params": os.path.join(out, "params.npz")}
    save_figure(plot_loss(rows, steps_per_epoch, seq_len, V, reproduced_at,
                          title="character RNN on %s: m=%d, %s lr=%g, %d window(s) of %d"
                          % (name, s["hidden"], s["optimizer"], s["lr"], n, seq_len)),
                paths["loss"])
    train.save_checkpoint(paths["params"], params, vocab=list(vocab.chars), hidden=s["hidden"],
                          experiment="char")
    saved = {k: v for k, v in s.items() if k not in ("progress", "out")}
    if saved["text"] is not None:
        saved["text"] = os.fspath(saved["text"])
    saved.update(seq_len=seq_len, stride=stride, first=first, length=length)
    record = _record.new_record("char", saved)
    record.update({
        "source": source, "text": text if short else None, "n_chars": len(text),
        "vocab": list(vocab.chars), "windows": n, "steps_per_epoch": steps_per_epoch,
        "steps": steps_per_epoch * s["epochs"], "epochs": rows, "stopped": hist.stopped,
        "reproduced_at_step": reproduced_at,
        "samples": {"first": first, "length": length, "greedy": greedy,
                    "temperature": s["temperature"], "random": randoms}})
    _record.add_run(record, "rnn", rows, stopped=hist.stopped,
                    reproduced_at_step=reproduced_at)
    if rows and "train_F" in rows[-1]:
        record["summary"]["rnn"] = {"F_per_char": rows[-1]["F_per_char"]}
    _record.finish(record, out, hist.wall_time, figures=[paths["loss"]])
    say("\nwrote %s (%.1f s)" % (", ".join(paths.values()), hist.wall_time))
    return record
