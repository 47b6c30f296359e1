"""HAR-2 and Noisy-HAR-2 (FW Sec. V, Table III): RNN and LSTM by SGD, TBPTT, Adam, FW (your data).

Data (not bundled, never downloaded): the UCI "Human Activity Recognition Using Smartphones"
data set, https://archive.ics.uci.edu/dataset/240 ; unzip it (and the ``UCI HAR Dataset.zip``
inside) and pass ``--data FOLDER``, the ``UCI HAR Dataset`` folder or the one holding it
(layout: :mod:`manualgrad.data.har`). Loaded by :func:`manualgrad.data.har.har_sequences`:
the 9 inertial signals, 128 steps, 7352 train / 2947 test windows; HAR-2 merges the 6 activities
into two classes as FastGRNN did (FW's reference [39]; ``grouping="fastgrnn"``, label = UCI
label mod 2); inputs normalised per channel with training statistics (FW: "zero mean and unit
variance"). ``noisy=True`` gives Noisy-HAR-2: N(0, ``noise_variance`` = 2) added to every
normalised input, train and test (FW: "a mean of zero and a variance of two").

Model: the vanilla RNN (tanh, ``hidden`` = 80 as in FW) or, for ``lstm_*``, the LSTM of
:mod:`manualgrad.cells.lstm` (forget-gate bias ``lstm_forget_bias``). Head (``head``): ``mse``
(default; one sigmoid output, F_b = 1/2 (yhat - y)^2: FW Sec. V, "Mean-square-error ... for
binary classification"), ``bce`` (sigmoid + binary cross-entropy) or ``cross_entropy`` (two
softmax outputs). Methods (FW Table III rows; :data:`manualgrad.experiments.methods.METHOD_SPECS`,
each with its own learning rate ``lr_<method>``; trained by
:func:`manualgrad.experiments.methods.train_classifier`, like the fwseq experiment's):

- ``sgd``; ``sgd_clip`` (SGD with global-norm clipping at ``clip_sgd``);
- ``tbptt``: Adam on the TBPTT(16, 16) gradient (FW: "forward and backward steps in TBPTT as
  16. Thus the sequence is split into ... segments"; the loss is at step 128 only);
- ``adam``; ``fw1``, ``fw5``, ``fw10``: FW Algorithm 1 with K = 1, 5, 10 (Adam outer update,
  ball radius ``fw_delta``, per tensor); ``tbptt_fw``: FW (K = ``fw_K``) on the TBPTT gradient;
- ``lstm_adam``, ``lstm_fw``: the LSTM by Adam, and by FW (K = ``fw_K``).

Not implemented: FW's "Ours+BN" and the six-layer IndRNN rows.

Per epoch: ``train_F`` (mean training loss over the epoch's minibatches), ``test_F``,
``test_acc`` (sigmoid > 1/2, or the argmax), the FW-A5 angle for FW runs; per run the wall time
(FW Table III has a "Time" column in a unit the paper does not state).
Written to ``out``: ``results.json`` (runs labelled ``har2/METHOD`` or ``noisy_har2/METHOD``),
``history.csv``, ``curves.png`` (training loss and test accuracy against epoch, FW Fig. 6 style),
``fw_angles.png``. The test suite runs :data:`TINY` on a small fixture in the HAR layout.
docs/har.md has the paper's table and how to run it. Time at full size (measured on a synthetic
stand-in of the same shape, 2 shared cores): the defaults about 6 minutes (two thirds of it the
two LSTM methods), ``--quick`` under a minute.
"""
from __future__ import annotations

import os
import time

from .. import backend
from ..data.har import CHANNELS, HAR2_GROUPINGS, har_sequences
from .. import tbptt
from .._validate import integer as _integer, number as _number
from . import record as _record
from .methods import METHOD_SPECS, describe, holdout_split, subsample, summarize, \
    train_classifier
from .options import FW_DEFAULTS, add_fw_common_arguments, add_options, check_fw_common, \
    complete, method_list, run_state, start_run
from .plots import print_run, write_outputs

__all__ = ["DEFAULTS", "QUICK", "TINY", "METHODS", "HEADS", "NO_DATA", "add_arguments",
           "check_settings", "make_data", "write_synthetic_har", "run"]

METHODS = ("sgd", "sgd_clip", "tbptt", "adam", "fw1", "fw5", "fw10", "tbptt_fw", "lstm_adam",
           "lstm_fw")
"""FW Table III's rows that this experiment has (in the table's order); ``all`` trains them all."""

HEADS = {"mse": dict(output="sigmoid", loss="mse", l=1, targets="float"),
         "bce": dict(output="sigmoid", loss="bce", l=1, targets="float"),
         "cross_entropy": dict(output="softmax", loss="cross_entropy", l=2, targets="int")}
"""``head`` -> the output activation, loss, number of outputs and target form."""

NO_DATA = ("har: no data folder given (--data FOLDER). The UCI HAR data set is not bundled with "
           "manualgrad and is never downloaded by it. Get 'Human Activity Recognition Using "
           "Smartphones' from https://archive.ics.uci.edu/dataset/240 , unzip it and the "
           "'UCI HAR Dataset.zip' inside, and pass the folder 'UCI HAR Dataset' (or the folder "
           "holding it): it must contain train/y_train.txt, train/Inertial Signals/"
           "body_acc_x_train.txt, ..., and the same under test/. (--synthetic runs on a small "
           "synthetic stand-in instead, to try the pipeline; it is not HAR.)")

DEFAULTS = dict(data=None, synthetic=False, noisy=False, noise_variance=2.0, noise_seed=0, grouping="fastgrnn",
                head="mse", optimizer="all", holdout="test", val_fraction=0.2, max_train=None,
                max_test=None, hidden=80, batch_size=64, epochs=10, lr_sgd=0.1,
                lr_sgd_clip=0.1, clip_sgd=1.0, lr_tbptt=1e-3, lr_adam=1e-3, lr_fw1=1e-3,
                lr_fw5=3e-3, lr_fw10=3e-3, lr_tbptt_fw=1e-3, lr_lstm_adam=1e-3, lr_lstm_fw=1e-3,
                **FW_DEFAULTS, tbptt_k1=16, tbptt_k2=None, tbptt_loss_at="last",
                lstm_forget_bias=1.0, scale=None, seed=0, data_seed=0, out="results/har",
                progress=True, blas_threads=1)
"""FW's hidden size 80 and TBPTT windows of 16 steps; ``tbptt_k2=None``: k1. The learning rates
are untuned starting points (the data are not here to tune them; docs/har.md). ``data`` is
required unless ``synthetic=True`` (:func:`write_synthetic_har`: a small SYNTHETIC stand-in in
the UCI layout, written to ``out/synthetic_data``, for trying the pipeline; not HAR)."""

QUICK = dict(epochs=3, max_train=2000)
"""``--quick``: 2000 of the 7352 training windows, 3 epochs of each method."""

TINY = dict(synthetic=True, hidden=4, batch_size=16, epochs=2, tbptt_k1=4)
"""The test suite's setting: the synthetic stand-in (48 + 24 windows of 16 steps), a few
seconds."""

SYNTHETIC = dict(n_train=48, n_test=24, T=16, seed=0)
"""Size of the synthetic stand-in that ``synthetic=True`` writes."""


def check_settings(**settings):
    """Validate and complete the settings (unknown keys: TypeError; no ``data``: ValueError
    saying where to get the data set). A new dict with every key of :data:`DEFAULTS`."""
    s = complete(settings, DEFAULTS, "har")
    s["synthetic"] = bool(s["synthetic"])
    if s["data"] is None and not s["synthetic"]:
        raise ValueError(NO_DATA)
    if s["data"] is not None and s["synthetic"]:
        raise ValueError("give either data (the UCI HAR folder) or synthetic=True (a synthetic "
                         "stand-in), not both")
    if s["data"] is not None:
        if isinstance(s["data"], bool) or not isinstance(s["data"], (str, os.PathLike)):
            raise TypeError("data must be the path of the UCI HAR folder, got %r"
                            % (s["data"],))
        s["data"] = os.fspath(s["data"])
    check_fw_common(s, METHODS, METHOD_SPECS)
    s["noisy"] = bool(s["noisy"])
    s["noise_variance"] = _number(s["noise_variance"], "noise_variance", minimum=0.0)
    s["noise_seed"] = _integer(s["noise_seed"], "noise_seed", 0)
    if s["grouping"] not in HAR2_GROUPINGS:
        raise ValueError("grouping must be one of %s, got %r"
                         % (", ".join(HAR2_GROUPINGS), s["grouping"]))
    if s["head"] not in HEADS:
        raise ValueError("head must be one of %s, got %r" % (", ".join(HEADS), s["head"]))
    s["clip_sgd"] = _number(s["clip_sgd"], "clip_sgd", positive=True)
    s["lstm_forget_bias"] = _number(s["lstm_forget_bias"], "lstm_forget_bias")
    s["tbptt_k1"] = _integer(s["tbptt_k1"], "tbptt_k1", 1)
    if s["tbptt_k2"] is None:
        s["tbptt_k2"] = s["tbptt_k1"]
    if s["tbptt_k2"] < s["tbptt_k1"]:
        raise ValueError("tbptt_k2 (%d) must be >= tbptt_k1 (%d)" % (s["tbptt_k2"],
                                                                   s["tbptt_k1"]))
    return s


def add_arguments(p):
    d = DEFAULTS
    p.add_argument("--data", default=d["data"], metavar="FOLDER",
                   help="the unzipped 'UCI HAR Dataset' folder (or the folder holding it); "
                        "required. https://archive.ics.uci.edu/dataset/240")
    p.add_argument("--synthetic", action="store_true", default=d["synthetic"],
                   help="instead of --data: write a small SYNTHETIC stand-in in the UCI layout "
                        "to OUT/synthetic_data and run on it (tries the pipeline; NOT HAR)")
    p.add_argument("--noisy", action="store_true", default=d["noisy"],
                   help="Noisy-HAR-2: add N(0, --noise-variance) to the normalised inputs")
    p.add_argument("--grouping", default=d["grouping"], choices=tuple(HAR2_GROUPINGS),
                   help="which activities form the two classes (default %(default)s: "
                        "FastGRNN's HAR-2)")
    p.add_argument("--head", default=d["head"], choices=tuple(HEADS),
                   help="sigmoid + MSE (FW), sigmoid + BCE, or softmax + cross-entropy "
                        "(default %(default)s)")
    add_options(p, d, ("noise_variance", float, "default %(default)s (FW)"),
                ("noise_seed", int, ""),
                ("clip_sgd", float, "global-norm threshold of sgd_clip"),
                ("lstm_forget_bias", float, "initial forget-gate bias of the LSTM"),
                ("data_seed", int, "seed of the validation split and the subsets"))
    add_fw_common_arguments(p, d, METHODS, METHOD_SPECS, QUICK)


def write_synthetic_har(folder, n_train=48, n_test=24, T=16, seed=0):
    """Write a SYNTHETIC stand-in for the UCI HAR data set in its layout under
    ``folder/UCI HAR Dataset`` (NOT the UCI data): ``n_train`` and ``n_test`` windows of ``T``
    steps x 9 channels, UCI labels 1..6 in turn; each value is N(0, 1) plus 0.8 for the windows
    whose HAR-2 class (label mod 2) is 1, so a model has something to learn. Host NumPy, seeded.
    Returns the folder given."""
    np = backend.np
    n_train, n_test = _integer(n_train, "n_train", 2), _integer(n_test, "n_test", 2)
    T = _integer(T, "T", 1)
    rng = backend.host_rng(_integer(seed, "seed", 0))
    root = os.path.join(os.fspath(folder), "UCI HAR Dataset")
    for split, n in (("train", n_train), ("test", n_test)):
        sig = os.path.join(root, split, "Inertial Signals")
        os.makedirs(sig, exist_ok=True)
        y = np.arange(n) % 6 + 1
        u = rng.standard_normal((n, T, len(CHANNELS))) + 0.8 * (y % 2)[:, None, None]
        for c, name in enumerate(CHANNELS):
            with open(os.path.join(sig, "%s_%s.txt" % (name, split)), "w") as f:
                f.writelines(" ".join("%.8e" % v for v in row) + "\n" for row in u[:, :, c])
        with open(os.path.join(root, split, "y_%s.txt" % split), "w") as f:
            f.writelines("%d\n" % v for v in y)
    return folder


def make_data(settings, folder=None):
    """``(((u_train, y_train), (u_test, y_test)), info)`` for the settings, read from ``folder``
    (default: ``settings["data"]``). The held-out pair is the validation split with
    ``holdout="validation"``; when a TBPTT method is to run, its windows are checked against the
    data's T here."""
    s = settings
    head = HEADS[s["head"]]
    folder = s["data"] if folder is None else folder
    train_set, test_set, info = har_sequences(
        folder, task="har2", grouping=s["grouping"], normalize="channel",
        noise_variance=s["noise_variance"] if s["noisy"] else None, noise_seed=s["noise_seed"],
        targets=head["targets"], return_info=True)
    if s["holdout"] == "validation":
        train_set, test_set = holdout_split(train_set, s["val_fraction"], s["data_seed"])
    train_set = subsample(train_set, s["max_train"], s["data_seed"])
    test_set = subsample(test_set, s["max_test"], s["data_seed"] + 1)
    if any(METHOD_SPECS[m]["truncated"] for m in method_list(s["optimizer"], METHODS)):
        tbptt.windows(info["T"], s["tbptt_k1"], s["tbptt_k2"])
    info.update(holdout=s["holdout"], n_train_used=int(train_set[1].shape[0]),
                n_heldout_used=int(test_set[1].shape[0]))
    return (train_set, test_set), info


def run(verbose=True, overwrite=False, **settings):
    """Run the experiment; returns the results record (also written to ``out/results.json``).

    Settings: see :data:`DEFAULTS`; ``data`` is required. Every RNN method starts from the same
    weights, the LSTM methods from the same LSTM weights, and all see the same minibatches.
    ``overwrite``: replace a record already in ``out`` (else FileExistsError before training).
    """
    s, out, say = start_run(check_settings, settings, DEFAULTS, QUICK, overwrite, verbose)
    methods = method_list(s["optimizer"], METHODS)
    folder = s["data"]
    if s["synthetic"]:
        folder = write_synthetic_har(os.path.join(out, "synthetic_data"), **SYNTHETIC)
    data, info = make_data(s, folder)
    info["source"] = "SYNTHETIC stand-in (not HAR)" if s["synthetic"] else "UCI HAR"
    head = HEADS[s["head"]]
    model = dict(activation="tanh", output=head["output"], loss=head["loss"], l=head["l"])
    task = ("synthetic_" if s["synthetic"] else "") + ("noisy_har2" if s["noisy"] else "har2")
    say("%s (FW Sec. V, Table III) from %s: T=%d, %d channels, %d train / %d %s windows "
        "(classes %s); hidden %d, %s + %s; batch %d, %d epochs; seed %d; backend %s/%s"
        % ("Noisy-HAR-2 (noise variance %g)" % s["noise_variance"] if s["noisy"] else "HAR-2",
           "%s in %s" % (info["source"], folder), info["T"], info["p"], info["n_train_used"],
           info["n_heldout_used"],
           s["holdout"], info["train_counts"], s["hidden"], head["output"], head["loss"],
           s["batch_size"], s["epochs"], s["seed"], backend.get_backend(),
           backend.get_dtype().name))
    record = _record.new_record("har", s)
    record["data"] = info
    runs = []
    t0 = time.perf_counter()
    for method in methods:
        label = "%s/%s" % (task, method)
        res = train_classifier(method, s, data, model, desc=label,
                               state=run_state(s, out, label))
        runs.append(res)
        print_run(say, describe(method, s), res)
        _record.add_run(record, label, res["epochs"], stopped=res["stopped"],
                        wall_time_s=res["wall_time_s"], optimizer=res["optimizer"],
                        description=describe(method, s), task=task, method=method)
        record["summary"][label] = summarize(res["epochs"])
    wall = time.perf_counter() - t0
    say("\n%-22s %9s %9s %9s %8s" % ("run", "test acc", "best acc", "train F", "time s"))
    for label, sm in record["summary"].items():
        say("%-22s %9s %9s %9s %8.1f" % (
            label, "-" if sm["test_acc"] is None else "%.2f%%" % (100 * sm["test_acc"]),
            "-" if sm["best_test_acc"] is None else "%.2f%%" % (100 * sm["best_test_acc"]),
            "-" if sm["train_F"] is None else "%.4f" % sm["train_F"],
            record["runs"][label]["wall_time_s"]))
    title = "%s: T=%d, hidden %d, %s + %s, batch %d, seed %d" % (
        task, info["T"], s["hidden"], head["output"], head["loss"], s["batch_size"], s["seed"])
    write_outputs(record, [(task, runs)], s, out, title, wall, say,
                        metrics=(("train_F", "training loss (%s)" % head["loss"]),
                                 ("test_acc", "test accuracy")))
    return record
