"""The ``manualgrad`` console script.

    manualgrad run --list            the registered experiments, one line each
    manualgrad run NAME [options]    run one (NAME --help: its options; --quick: a short setting);
                                     writes OUT/results.json (a record) and figures; refuses an
                                     OUT that already holds a record unless --overwrite
    manualgrad report RESULTS... [--out FOLDER] [--metric NAME]
                                     figures and tables over seeds from saved records
    manualgrad run NAME --resume     take a killed run up from its last training state
    manualgrad study NAME [--seeds 0-9] [--grid SETTING=V1,V2]... [--set SETTING=V]...
                     [--spec FILE] [--quick] [--scheduler local[:N] | tcp://HOST:PORT]
                                     an experiment over seeds x settings, one task per run on
                                     Dask (a LocalCluster by default); a results store that
                                     skips finished runs and resumes unfinished ones
    manualgrad study ltg [--quick]   the LTG cell study (no --grid/--set/--spec)
    manualgrad data [--mnist-idx DIR]
                                     the data sets of data.load: sizes, views, where each comes
                                     from, whether it is present here, how to get it
    manualgrad check                 finite-difference check of the RNN gradient on random cases
    manualgrad info                  version, backends available, default dtype
"""
from __future__ import annotations

import argparse
import re
import sys

from . import __version__, backend


_ROLE = re.compile(r":(?:[a-z]+:)+`(~?)([^`<]*?)\s*(?:<([^`>]*)>)?`")


def plain(text):
    """``text`` (a docstring) without reStructuredText markup, for a terminal: Sphinx roles
    (``:func:`name```, ``:class:`~a.b.C``` -> ``C``) become their target, double backticks go,
    and a literal block's ``::`` becomes ``:``."""
    def role(m):
        target = m.group(3) or m.group(2)
        return target.rsplit(".", 1)[-1] if m.group(1) else (m.group(2) or target)
    text = _ROLE.sub(role, text).replace("``", "")
    return re.sub(r"(\S)::$", r"\1:", text, flags=re.M)      # a literal block's "::"


class PlainHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help as plain text: the description keeps its lines, and :func:`plain` strips the
    markup of the docstrings and option helps."""

    def _fill_text(self, text, width, indent):
        return super()._fill_text(plain(text), width, indent)

    def _expand_help(self, action):
        return plain(super()._expand_help(action))


def _summary(mod):
    """The first line of an experiment module's docstring (what ``run --list`` shows)."""
    lines = (mod.__doc__ or "").strip().splitlines()
    return lines[0].strip() if lines else "(no description)"


def experiment_settings(name, mod, argv):
    """The settings ``mod.run`` gets from the command line ``argv`` of ``manualgrad run NAME``.

    The module's ``add_arguments`` defines the options; ``--quick`` (added here when the module
    does not define it) makes the module's ``QUICK`` overrides the defaults, so options given
    explicitly still win (``--quick --seed 3``). ``quick`` itself reaches ``run`` only when it
    is one of the module's ``DEFAULTS``; ``overwrite`` only when ``--overwrite`` is given.
    """
    sub = argparse.ArgumentParser(prog="manualgrad run %s" % name,
                                  description=(mod.__doc__ or "").strip(),
                                  formatter_class=PlainHelpFormatter)
    mod.add_arguments(sub)
    try:
        sub.add_argument("--quick", action="store_true", default=argparse.SUPPRESS,
                         help="the module's QUICK settings as defaults: a run of minutes")
    except argparse.ArgumentError:   # the module defines --quick itself
        pass
    settings = vars(sub.parse_args(argv))
    if settings.get("quick"):
        quick = getattr(mod, "QUICK", None)
        if quick is None:
            raise ValueError("experiment %r defines no QUICK settings; run it without --quick"
                             % name)
        sub.set_defaults(**quick)
        settings = vars(sub.parse_args(argv))
    if "quick" not in getattr(mod, "DEFAULTS", {}):
        settings.pop("quick", None)
    return settings


HELP = ("-h", "--help")


def _cmd_run(args, parser):
    from .experiments import REGISTRY
    if not args.name and not args.list and any(a in HELP for a in args.rest):
        parser.print_help()
        return 0
    if args.list or not args.name:
        width = max([len(n) for n in REGISTRY] + [8])
        for name, mod in REGISTRY.items():
            print("%-*s  %s" % (width, name, _summary(mod)))
        return 0
    mod = REGISTRY[args.name]
    mod.run(**experiment_settings(args.name, mod, args.rest))
    return 0


def _cmd_report(args):
    import os

    from .experiments import report, store
    out = args.out
    if (out == report.DEFAULT_OUT and len(args.results) == 1
            and os.path.isfile(os.path.join(args.results[0], store.STUDY_FILE))):
        out = os.path.join(args.results[0], "report")    # a study's report goes beside it
    report.make_report(args.results, out=out, metrics=args.metric, figures=args.figures)
    return 0


def _cmd_study(args):
    from .experiments import study
    general = any(a.split("=")[0] in study.GENERAL_ONLY for a in args.rest)
    if args.name in study.STUDIES and not general:
        add_arguments, settings_from_args, run = study.STUDIES[args.name]
        sub = argparse.ArgumentParser(
            prog="manualgrad study %s" % args.name, formatter_class=PlainHelpFormatter,
            description="The %s cell study (the general form: give --grid, --set or --spec; "
                        "see 'manualgrad study --help')." % args.name)
        add_arguments(sub)
        run(**settings_from_args(sub.parse_args(args.rest)))
        return 0
    sub = argparse.ArgumentParser(prog="manualgrad study %s" % args.name,
                                  formatter_class=PlainHelpFormatter,
                                  description=study.__doc__.split("\n\n")[0])
    study.add_study_arguments(sub, args.name)
    rec = study.run_study(**study.study_from_args(args.name, sub.parse_args(args.rest)))
    return 1 if rec["summary"]["failed"] else 0


def _cmd_check(args):
    from . import check, rnn
    rng = backend.host_rng(args.seed)
    worst = 0.0
    print("%-9s %-8s %-14s %-6s  %s" % ("hidden", "output", "loss", "m2m", "max rel_error"))
    for act in ("tanh", "sigmoid", "identity", "softplus"):
        for out, loss in (("sigmoid", "bce"), ("softmax", "cross_entropy"), ("identity", "mse")):
            for m2m in (False, True):
                T, B, p, m, l = 5, 3, 2, 4, 3
                P = rnn.init_params(p, m, l, seed=int(rng.integers(1 << 30)), bias_scale=0.3)
                u = backend.asarray(rng.standard_normal((T, B, p)))
                lead = (T, B) if m2m else (B,)
                y = (rng.integers(0, l, lead) if loss == "cross_entropy" else
                     rng.uniform(0, 1, lead + (l,)))
                kw = dict(activation=act, output=out, loss=loss, many_to_many=m2m)
                F, g = rnn.loss_and_grad(P, u, y, **kw)
                rep = check.gradients(lambda Q: rnn.loss(Q, u, y, **kw), P, g)
                worst = max(worst, rep.max_error)
                print("%-9s %-8s %-14s %-6s  %.2e" % (act, out, loss, m2m, rep.max_error))
    print("worst relative error %.2e (float64, 4th-order central differences)" % worst)
    return 0 if worst < 1e-7 else 1


def _cmd_data(args):
    """List the data sets of the registry (:func:`manualgrad.data.datasets`): name, whether it
    is here, sizes and views, where it comes from, and how to get a missing one."""
    from .data import registry
    rows = registry.datasets(mnist_folder=args.mnist_idx)
    state = {True: "present", False: "missing", None: "needs a folder"}
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        views = ", ".join("%s (T=%d, p=%d)" % (v, T, p) for v, (T, p) in r["views"].items())
        print("%-*s  %-14s %s" % (width, r["name"], state[r["available"]], r["description"]))
        print("%*s  %d train + %d test; views: %s" % (width, "", r["train"], r["test"], views))
        print("%*s  source: %s" % (width, "", r["source"]))
        print("%*s  %s %s" % (width, "", "here:" if r["available"] else "to get it:", r["where"]))
    print("\nLoad one: from manualgrad import data; "
          "(u, y), (u_test, y_test) = data.load('mnist-5k', view='columns')  (docs/data.md)")
    return 0


def _cmd_info(args):
    ok, why = backend.cupy_available()
    print("manualgrad %s" % __version__)
    print("backend: %s, dtype: %s" % (backend.get_backend(), backend.get_dtype().name))
    print("numpy %s; cupy: %s" % (backend.np.__version__, "available" if ok else why))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="manualgrad", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version="manualgrad " + __version__)
    parser.add_argument("--backend", choices=backend.BACKENDS, default=None,
                        help="array backend (default: $MANUALGRAD_BACKEND or numpy)")
    parser.add_argument("--dtype", choices=backend.DTYPES, default=None)
    sub = parser.add_subparsers(dest="command")
    p_run = sub.add_parser("run", help="run a registered experiment", add_help=False,
                           usage="manualgrad run [--list | NAME [options]]",
                           description="Run a registered experiment (--list: their names). "
                           "'manualgrad run NAME --help' lists NAME's options; --quick runs "
                           "its short setting; --overwrite lets it replace a record already "
                           "in --out.")
    p_run.add_argument("name", nargs="?", help="experiment name (see --list)")
    p_run.add_argument("--list", action="store_true", help="list the experiments")
    p_run.add_argument("rest", nargs=argparse.REMAINDER, help="the experiment's options")
    p_study = sub.add_parser("study", help="run an experiment over a grid of settings and seeds",
                             add_help=False, usage="manualgrad study NAME [options]",
                             description="Run a registered experiment over a grid of seeds and "
                             "settings, one task per run on Dask (a LocalCluster by default, or "
                             "--scheduler tcp://HOST:PORT), into a results store that skips "
                             "finished runs and resumes unfinished ones. 'manualgrad study NAME "
                             "--help' lists the options; 'manualgrad study ltg' without --grid, "
                             "--set or --spec is the LTG cell study.")
    p_study.add_argument("name", nargs="?", help="a registered experiment (manualgrad run "
                                                 "--list), e.g. ltg, adding")
    p_study.add_argument("rest", nargs=argparse.REMAINDER, help="the study's options")
    p_report = sub.add_parser("report", help="figures and tables over seeds from saved results "
                                         "records", description="Read results records (files, "
                                         "or folders searched recursively), group them by "
                                         "experiment and settings except the seed, and write "
                                         "report.md, report.json and one figure per metric "
                                         "(mean and spread over seeds) in --out.")
    from .experiments import report as _report
    _report.add_arguments(p_report)
    p_data = sub.add_parser("data", help="the registered data sets: where each comes from and "
                            "whether it is present", description="List the data sets that "
                            "manualgrad.data.load(name) reads (all offline): their sizes and "
                            "views, where each comes from, whether it is present here, and how "
                            "to get a missing one (pip install '.[data]'; apt-get install "
                            "dataset-fashion-mnist). Exit status 0 either way.")
    p_data.add_argument("--mnist-idx", metavar="FOLDER", default=None,
                        help="a folder holding MNIST's four IDX files, to check for mnist-idx")
    p_check = sub.add_parser("check", help="finite-difference check of the RNN gradients")
    p_check.add_argument("--seed", type=int, default=0)
    sub.add_parser("info", help="version and available backends")
    args, extra = parser.parse_known_args(argv)
    if args.command == "run":
        args.rest = extra + list(args.rest or [])
        if args.name in HELP:
            args.name, args.rest = None, [args.name] + args.rest
    elif args.command == "study":
        args.rest = extra + list(args.rest or [])
    elif extra:
        parser.error("unrecognized arguments: %s" % " ".join(extra))
    try:
        if args.backend or args.dtype:
            backend.set_backend(args.backend or backend.get_backend(), dtype=args.dtype)
        if args.command == "run":
            from .experiments import REGISTRY
            if args.name and args.name not in REGISTRY:
                parser.error("unknown experiment %r: valid names are %s (see 'manualgrad run "
                             "--list')" % (args.name, ", ".join(REGISTRY)))
            return _cmd_run(args, p_run)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "study":
            from .experiments import REGISTRY
            if args.name in HELP or (not args.name and any(a in HELP for a in args.rest)):
                p_study.print_help()
                return 0
            if args.name not in REGISTRY:
                parser.error("study: give an experiment name, one of %s (then --help for its "
                             "options)" % ", ".join(REGISTRY))
            return _cmd_study(args)
        if args.command == "data":
            return _cmd_data(args)
        if args.command == "check":
            return _cmd_check(args)
        if args.command == "info":
            return _cmd_info(args)
    except (ValueError, TypeError, RuntimeError, OSError) as exc:
        print("manualgrad: error: %s" % exc, file=sys.stderr)
        return 2
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
