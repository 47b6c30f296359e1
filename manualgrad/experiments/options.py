"""Settings and command-line options shared by the experiment modules (one spelling each).

Every experiment has ``DEFAULTS`` and ``QUICK`` (overrides for a run of minutes). On the command
line ``--quick`` makes QUICK the defaults, so options given explicitly still win
(:func:`manualgrad.cli.experiment_settings`); from Python ``run(quick=True, ...)`` applies QUICK
to every setting left at its default (:func:`apply_quick`).

The common options, added by :func:`add_run_arguments`: ``--seed``, ``--data-seed``, ``--out``,
``--overwrite`` (write into a folder that already holds a record), ``--blas-threads``,
``--no-progress``, ``--quick``, and the run options :data:`RUN_KEYS`: ``--resume`` (take the run
up from its training state in ``OUT/checkpoints/``) and ``--checkpoint-minutes``. An experiment
gets them by passing ``state=run_state(s, out, label)`` (:func:`run_state`) to
:func:`manualgrad.train.fit`; the run keys pass through :func:`complete` into the settings of
every experiment and are left out of records
(:data:`manualgrad.experiments.record.IGNORED_SETTINGS`). Sizes and training options by
:func:`add_options` (one line per option, help text from the module). The Frank-Wolfe option group
(:data:`FW_DEFAULTS`, :func:`add_fw_arguments`, :func:`check_fw_settings`) is the same for every FW
experiment: ``--fw-whole-vector`` selects one ball for the whole parameter vector
(``--fw-per-tensor BOOL``, the adding experiment's former spelling, is still accepted).

Settings checks: :func:`complete` (unknown keys, defaults), :func:`check_integers`,
:func:`check_run_settings` (``blas_threads``, ``progress``), :func:`check_ltg_data` (the Long Time
Gap sizes of ltg and norms), :func:`check_fw_settings`, :func:`check_fw_common` (fwseq and har).
"""
from __future__ import annotations

import argparse
import os

from .. import tbptt
from ..optim.frank_wolfe import MINIBATCHES, OUTERS, FrankWolfe
from .._validate import integer as _integer, number as _number

__all__ = ["add_quick_argument", "apply_quick", "boolean", "selection", "complete",
           "check_integers", "check_run_settings", "check_ltg_data", "add_run_arguments",
           "add_options", "FW_DEFAULTS", "add_fw_arguments", "check_fw_settings",
           "add_fw_common_arguments", "check_fw_common", "method_list", "start_run",
           "RUN_KEYS", "CHECKPOINT_MINUTES", "run_state", "settings_tag", "WarningLog",
           "int_list", "json_object", "check_dataset_or_idx"]

RUN_KEYS = ("resume", "checkpoint_minutes")
"""Settings of how a run is carried out, not of what it computes: accepted by every
experiment's settings (:func:`complete`), never part of its record."""

CHECKPOINT_MINUTES = 10.0
"""Default minutes between training-state writes inside an epoch (every epoch end writes one)."""


def add_quick_argument(parser, quick):
    """Add ``--quick`` to an experiment's parser; its help lists the ``quick`` overrides."""
    parser.add_argument("--quick", action="store_true", default=argparse.SUPPRESS,
                        help="defaults from QUICK: %s" % ", ".join(
                            "%s=%s" % kv for kv in quick.items()))


def apply_quick(settings, defaults, quick):
    """``settings`` (a dict, modified and returned) without its ``quick`` key; when that was
    true, every setting in ``quick`` that is missing or at its value in ``defaults`` takes the
    ``quick`` value."""
    if settings.pop("quick", False):
        for k, v in quick.items():
            if k not in settings or settings[k] == defaults.get(k):
                settings[k] = v
    return settings


def boolean(text):
    """An argparse ``type`` for on/off options: true/false, yes/no, on/off, 1/0."""
    t = str(text).strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError("expected true or false, got %r" % text)


def selection(value, names, groups, what):
    """The tuple of names a ``--method``-style option selects: a group name (``groups``, e.g.
    ``{"all": names}``) or one of ``names``; ValueError naming ``what`` and the valid choices."""
    if value in groups:
        return tuple(groups[value])
    if value in names:
        return (value,)
    raise ValueError("unknown %s %r: valid are %s" % (what, value, ", ".join(
        tuple(names) + tuple(groups))))


def method_list(value, valid, what="optimizer"):
    """``"all"`` -> ``valid``; a name or comma-separated names (each in ``valid``) -> a tuple."""
    if value == "all":
        return tuple(valid)
    if not isinstance(value, str) or not value.strip():
        raise ValueError("%s must be 'all' or comma-separated names among %s, got %r"
                         % (what, ", ".join(valid), value))
    names = tuple(n.strip() for n in value.split(","))
    bad = [n for n in names if n not in valid]
    if bad or len(set(names)) != len(names):
        raise ValueError("unknown or repeated %s(s) %r: valid are %s, all (comma-separated "
                         "for several)" % (what, value, ", ".join(valid)))
    return names


# ------------------------------------------------------------------------------ settings
def start_run(check_settings, settings, defaults, quick, overwrite=False, verbose=True):
    """The start of an experiment's ``run``: ``quick`` applied (:func:`apply_quick`), the
    settings checked by ``check_settings(**settings)``, the results folder made ready before any
    work (:func:`manualgrad.experiments.record.prepare_out` with ``overwrite``; ``resume``
    implies it: a run taken up writes its record where it was going to). Returns
    ``(settings, out, say)``; ``say`` is ``print`` when ``verbose``, else a no-op."""
    from .record import prepare_out
    s = check_settings(**apply_quick(dict(settings), defaults, quick))
    out = prepare_out(s["out"], overwrite or bool(s.get("resume")))
    return s, out, (print if verbose else (lambda *a, **k: None))


def complete(settings, defaults, experiment):
    """A new dict: ``defaults`` updated with ``settings``; TypeError naming ``experiment``, the
    unknown keys and the valid ones when ``settings`` has a key ``defaults`` lacks (the run
    keys :data:`RUN_KEYS` are always accepted and kept when given)."""
    unknown = sorted(set(settings) - set(defaults) - set(RUN_KEYS))
    if unknown:
        raise TypeError("unknown %s setting(s) %s; valid are %s"
                        % (experiment, ", ".join(unknown), ", ".join(defaults)))
    s = dict(defaults)
    s.update(settings)
    return s


def check_integers(s, table, allow_none=False):
    """Check, in place, each ``(key, minimum)`` of ``table``: an int >= minimum (None allowed
    with ``allow_none``)."""
    for k, lo in table:
        s[k] = _integer(s[k], k, lo, allow_none=allow_none)
    return s


def check_run_settings(s):
    """Check, in place, the settings every run has: ``blas_threads`` (None or >= 1) and
    ``progress`` (made a bool)."""
    if s["blas_threads"] is not None:
        s["blas_threads"] = _integer(s["blas_threads"], "blas_threads", 1)
    s["progress"] = bool(s["progress"])
    return s


def check_ltg_data(s, min_T=1):
    """Check, in place, the data and training sizes of the Long Time Gap experiments.

    n, n_test, T, p, informative_step, hidden, epochs, batch_size, seed and data_seed become
    ints within range; the test split must leave training examples and the informative step
    must lie in [1, T].
    """
    check_integers(s, (("n", 2), ("n_test", 1), ("T", min_T), ("p", 1), ("informative_step", 1),
                       ("hidden", 1), ("epochs", 0), ("batch_size", 1), ("seed", 0),
                       ("data_seed", 0)))
    if s["n_test"] >= s["n"]:
        raise ValueError("n_test must be smaller than n: the first n - n_test examples train; "
                         "got n = %d, n_test = %d" % (s["n"], s["n_test"]))
    if s["informative_step"] > s["T"]:
        raise ValueError("informative_step must lie in [1, T] = [1, %d], got %d"
                         % (s["T"], s["informative_step"]))
    return s


# ------------------------------------------------------------------------------ options
def add_options(p, d, *specs):
    """One option per ``(key, type, help)`` of ``specs``: ``--key-with-dashes``, default
    ``d[key]``; a help without ``%(default)s`` or "default" gets " (default %(default)s)"."""
    for key, typ, text in specs:
        if "default" not in text:
            text += " (default %(default)s)" if text else "default %(default)s"
        p.add_argument("--" + key.replace("_", "-"), type=typ, default=d[key], help=text)


def add_run_arguments(p, d, quick, seed="init and shuffling seed, shared by the methods",
                      data_seed="seed of the data"):
    """The options of every run: ``--seed`` (help ``seed``; left out when ``seed`` is None),
    ``--data-seed`` (when ``d`` has ``data_seed`` and ``data_seed`` is not None),
    ``--blas-threads``, ``--out``, ``--overwrite``, ``--no-progress`` and ``--quick``
    (the overrides of ``quick``)."""
    if seed is not None:
        add_options(p, d, ("seed", int, seed))
    if "data_seed" in d and data_seed is not None:
        add_options(p, d, ("data_seed", int, data_seed))
    add_options(p, d, ("blas_threads", int, "BLAS threads while training (fastest for these "
                                            "small products)"),
                ("out", None, "output folder"))
    p.add_argument("--overwrite", action="store_true", default=argparse.SUPPRESS,
                   help="write into --out even when it already holds a results record "
                        "(default: refuse)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars")
    have = getattr(p, "_option_string_actions", {})   # an experiment's own --resume stays
    if "--resume" not in have:
        p.add_argument("--resume", action="store_true", default=argparse.SUPPRESS,
                       help="continue the run from its last training state in OUT/checkpoints/ "
                            "(bit-identical to a run never interrupted); a run with none starts "
                            "from the beginning")
    if "--checkpoint-minutes" not in have:
        p.add_argument("--checkpoint-minutes", type=float, default=argparse.SUPPRESS,
                       help="minutes between training-state writes inside an epoch (every "
                            "epoch end writes one; default %g)" % CHECKPOINT_MINUTES)
    add_quick_argument(p, quick)


# ------------------------------------------------------------------------------ resuming
def settings_tag(s, label):
    """A short hash of the settings ``s`` (less ``out``, ``progress``, ``verbose`` and the run
    keys) and ``label``: what a run's state file must have been written with to be taken up."""
    import hashlib
    import json

    from .. import train
    skip = set(RUN_KEYS) | {"out", "progress", "verbose", "blas_threads"}
    text = json.dumps([label, train.to_jsonable({k: v for k, v in s.items() if k not in skip})],
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_state(s, out, label, carry=None):
    """The ``state`` argument of :func:`manualgrad.train.fit` for the training called ``label``
    (a method, a model) of a run with checked settings ``s`` writing to ``out``: a
    :class:`~manualgrad.train.StateFile` at ``OUT/checkpoints/<label>.npz``, resuming when
    ``s["resume"]``, written every ``s["checkpoint_minutes"]`` (default
    :data:`CHECKPOINT_MINUTES`) inside an epoch; ``carry`` as in the StateFile. ``out`` None
    (e.g. a study job that keeps no files) gives None: no state is kept."""
    import re

    from .. import train
    if out is None or out == "-":
        return None
    folder = os.path.join(os.fspath(out), "checkpoints")
    os.makedirs(folder, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", str(label)) or "train"
    minutes = s.get("checkpoint_minutes")
    return train.StateFile(os.path.join(folder, name + ".npz"), resume=bool(s.get("resume")),
                           every_minutes=CHECKPOINT_MINUTES if minutes is None else minutes,
                           carry=carry, tag=settings_tag(s, label))


class WarningLog:
    """Counts the warnings raised inside ``with log:`` as ``{category: {"count", "first"}}``
    (the form of :func:`manualgrad.experiments.methods.warning_counts`), kept in a plain list of
    ``[category, message]`` pairs (:attr:`seen`) that a run's state can carry
    (``run_state(..., carry={"warnings": log.seen})``), so a resumed run reports the warnings
    of its first part too."""

    def __init__(self):
        self.seen = []
        self._ctx = None

    def __enter__(self):
        import warnings
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("always")

        def show(message, category, filename, lineno, file=None, line=None):
            self.seen.append([category.__name__, str(message)])
        warnings.showwarning = show
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)

    def counts(self):
        out = {}
        for name, message in self.seen:
            out.setdefault(name, {"count": 0, "first": message})
            out[name]["count"] += 1
        return out


# ------------------------------------------------------------------------------ Frank-Wolfe
FW_DEFAULTS = dict(fw_delta=1e-3, fw_K=1, fw_p=2.0, fw_per_tensor=True, fw_outer="adam",
                   fw_minibatch="successive", fw_decay=1.0, fw_decay_every=1000)
"""The Frank-Wolfe settings of every FW experiment (:func:`add_fw_arguments`)."""


def add_fw_arguments(p, d, K_help="inner FW steps per outer step"):
    """The Frank-Wolfe option group (keys of :data:`FW_DEFAULTS`, defaults from ``d``)."""
    g = p.add_argument_group("Frank-Wolfe (FW Algorithm 1)")
    add_options(g, d, ("fw_delta", float, "radius of the FW ball"), ("fw_K", int, K_help),
                ("fw_p", float, "norm of the ball, >= 1, inf allowed"))
    g.add_argument("--fw-whole-vector", dest="fw_per_tensor", action="store_false",
                   default=d["fw_per_tensor"],
                   help="one ball for the whole parameter vector (default: one per tensor, the "
                        "authors' code)")
    g.add_argument("--fw-per-tensor", dest="fw_per_tensor", type=boolean,
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    g.add_argument("--fw-outer", default=d["fw_outer"], choices=OUTERS,
                   help="outer update (default %(default)s; with sgd the step is eta * Delta_K)")
    g.add_argument("--fw-minibatch", default=d["fw_minibatch"], choices=MINIBATCHES,
                   help="inner steps on successive minibatches or the same one (default "
                        "%(default)s)")
    add_options(g, d, ("fw_decay", float, "factor for eta and delta every --fw-decay-every "
                                          "outer steps (default %(default)s: none)"),
                ("fw_decay_every", int, ""))


def check_fw_settings(s):
    """Check, in place, the Frank-Wolfe keys of :data:`FW_DEFAULTS`."""
    s["fw_delta"] = _number(s["fw_delta"], "fw_delta", positive=True)
    s["fw_decay"] = _number(s["fw_decay"], "fw_decay", positive=True)
    check_integers(s, (("fw_K", 1), ("fw_decay_every", 1)))
    if s["fw_outer"] not in OUTERS:
        raise ValueError("fw_outer must be one of %s, got %r" % (", ".join(OUTERS), s["fw_outer"]))
    if s["fw_minibatch"] not in MINIBATCHES:
        raise ValueError("fw_minibatch must be one of %s, got %r"
                         % (", ".join(MINIBATCHES), s["fw_minibatch"]))
    s["fw_p"] = FrankWolfe(s["fw_delta"], 1.0, K=s["fw_K"], p=s["fw_p"]).p   # p checked here
    s["fw_per_tensor"] = bool(s["fw_per_tensor"])
    return s


def check_fw_common(s, valid_methods, specs):
    """Check, in place, the settings fwseq and har share (methods, ``lr_<method>`` of every
    method in ``valid_methods``, sizes, holdout, FW, TBPTT, seeds); returns the methods to run.
    ``specs``: :data:`manualgrad.experiments.methods.METHOD_SPECS`."""
    methods = method_list(s["optimizer"], valid_methods)
    for m in valid_methods:
        s["lr_" + m] = _number(s["lr_" + m], "lr_" + m, positive=True)
    check_integers(s, (("hidden", 1), ("batch_size", 1), ("epochs", 0), ("seed", 0),
                       ("data_seed", 0)))
    check_integers(s, (("max_train", 1), ("max_test", 1)), allow_none=True)
    if s["holdout"] not in ("test", "validation"):
        raise ValueError("holdout must be 'test' or 'validation', got %r" % (s["holdout"],))
    s["val_fraction"] = _number(s["val_fraction"], "val_fraction")
    if not 0.0 < s["val_fraction"] < 1.0:
        raise ValueError("val_fraction must lie in (0, 1), got %r" % (s["val_fraction"],))
    check_fw_settings(s)
    check_integers(s, (("tbptt_k1", 1), ("tbptt_k2", 1)), allow_none=True)
    if s["tbptt_loss_at"] not in tbptt.LOSS_AT:
        raise ValueError("tbptt_loss_at must be one of %s, got %r"
                         % (", ".join(tbptt.LOSS_AT), s["tbptt_loss_at"]))
    s["scale"] = _number(s["scale"], "scale", minimum=0.0, allow_none=True)
    check_run_settings(s)
    return methods


def add_fw_common_arguments(p, d, methods, specs, quick):
    """The options fwseq and har share (defaults from ``d``; one ``--lr-METHOD`` per method of
    ``methods``, ``specs`` their :data:`~manualgrad.experiments.methods.METHOD_SPECS`)."""
    p.add_argument("--optimizer", default=d["optimizer"],
                   help="methods, comma-separated, among %s; or 'all' (default %%(default)s)"
                        % ", ".join(methods))
    p.add_argument("--holdout", default=d["holdout"], choices=("test", "validation"),
                   help="evaluate on the test set, or on a validation split of the training set "
                        "(for tuning; default %(default)s)")
    add_options(p, d, ("val_fraction", float, "share of the training set held out by --holdout "
                                              "validation"),
                ("max_train", int, "use a seeded random subset of this many training examples "
                                   "(default: all)"),
                ("max_test", int, "likewise for the held-out set (default: all)"),
                ("hidden", int, "hidden size m"), ("batch_size", int, ""), ("epochs", int, ""))
    for m in methods:
        p.add_argument("--lr-%s" % m.replace("_", "-"), dest="lr_" + m, type=float,
                       default=d["lr_" + m],
                       help="learning rate of %s%s (default %%(default)s)"
                            % (m, " (FW: the outer Adam step eta)"
                               if specs[m]["opt"] == "fw" else ""))
    add_fw_arguments(p, d, K_help="inner FW steps of the combined methods (tbptt_fw, lstm_fw)")
    add_options(p, d, ("tbptt_k1", int, "TBPTT forward window (default %s)" % (
        "ceil(T / 4)" if d["tbptt_k1"] is None else d["tbptt_k1"])),
        ("tbptt_k2", int, "TBPTT backward window >= k1 (default k1)"))
    p.add_argument("--tbptt-loss-at", default=d["tbptt_loss_at"], choices=tbptt.LOSS_AT,
                   help="many-to-one TBPTT loss at the last step only, or at every window end "
                        "(default %(default)s)")
    add_options(p, d, ("scale", float, "std of every weight at init (default 1/sqrt(fan_in))"))
    add_run_arguments(p, d, quick, data_seed=None)


# ------------------------------------------------------------------------------ small parsers
def int_list(value, name, unique=False):
    """A tuple of ints >= 0 from a sequence, an int or a comma-separated string ("0,1,2");
    ``unique``: a value listed twice is a ValueError. Errors name ``name``."""
    if isinstance(value, str):
        parts = [v for v in value.replace(" ", "").split(",") if v]
        try:
            value = [int(v) for v in parts]
        except ValueError:
            raise ValueError("%s must be comma-separated integers, got %r" % (name, value)) \
                from None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    try:
        out = tuple(_integer(v, name, 0) for v in value)
    except TypeError as exc:
        raise TypeError("%s must be a sequence of integers, got %r (%s)" % (name, value, exc)) \
            from None
    if not out:
        raise ValueError("%s must name at least one value" % name)
    if unique and len(set(out)) != len(out):
        raise ValueError("%s lists a value twice: %r" % (name, out))
    return out


def json_object(text):
    """argparse type: a JSON object such as ``{"lstm": {"forget_bias": 1}}`` (per-cell options)."""
    import json
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError("not JSON (%s): %r" % (exc, text)) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object {cell: {option: value}}, got %r"
                                         % (text,))
    return value


def check_dataset_or_idx(s, datasets):
    """``s["dataset"]`` is None or a name of ``datasets``, and not given together with
    ``s["idx"]`` (MNIST from IDX files): ValueError naming the setting otherwise."""
    if s["dataset"] is None:
        return
    if s["dataset"] not in datasets:
        raise ValueError("dataset must be one of %s (or None: the bundled 8x8 digits), got %r"
                         % (", ".join(datasets), s["dataset"]))
    if s["idx"] is not None:
        raise ValueError("give dataset or idx, not both (idx is MNIST from IDX files; "
                         "dataset=%r a registry data set)" % s["dataset"])
