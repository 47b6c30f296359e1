"""The ``manualgrad`` console script.

    manualgrad run ltg [options]     train on the Long Time Gap task, print adjoint norms, plot
    manualgrad run --list            the registered experiments
    manualgrad study ltg [--quick]   an experiment over seeds x settings, in parallel processes
    manualgrad check                 finite-difference check of the RNN gradient on random cases
    manualgrad info                  version, backends available, default dtype
"""
from __future__ import annotations

import argparse
import sys

from . import __version__, backend


def _cmd_run(args, parsers):
    from .experiments import REGISTRY
    if args.list or not args.name:
        for name, mod in REGISTRY.items():
            print("%-8s %s" % (name, (mod.__doc__ or "").strip().splitlines()[0]))
        return 0
    mod = REGISTRY[args.name]
    sub = argparse.ArgumentParser(prog="manualgrad run %s" % args.name,
                                  description=(mod.__doc__ or "").strip())
    mod.add_arguments(sub)
    settings = vars(sub.parse_args(args.rest))
    mod.run(**settings)
    return 0


def _cmd_study(args):
    from .experiments.study import STUDIES
    add_arguments, settings_from_args, run = STUDIES[args.name]
    sub = argparse.ArgumentParser(prog="manualgrad study %s" % args.name)
    add_arguments(sub)
    run(**settings_from_args(sub.parse_args(args.rest)))
    return 0


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
    p_run = sub.add_parser("run", help="run a registered experiment", add_help=False)
    p_run.add_argument("name", nargs="?", help="experiment name (see --list)")
    p_run.add_argument("--list", action="store_true", help="list the experiments")
    p_run.add_argument("rest", nargs=argparse.REMAINDER)
    p_study = sub.add_parser("study", help="run an experiment over a grid of settings and seeds",
                             add_help=False)
    p_study.add_argument("name", nargs="?", help="study name: ltg")
    p_study.add_argument("rest", nargs=argparse.REMAINDER)
    p_check = sub.add_parser("check", help="finite-difference check of the RNN gradients")
    p_check.add_argument("--seed", type=int, default=0)
    sub.add_parser("info", help="version and available backends")
    args, extra = parser.parse_known_args(argv)
    if args.command == "run":
        args.rest = extra + list(args.rest or [])
        if args.name in ("-h", "--help"):
            args.name, args.list = None, True
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
                parser.error("unknown experiment %r: valid names are %s"
                             % (args.name, ", ".join(REGISTRY)))
            return _cmd_run(args, None)
        if args.command == "study":
            from .experiments.study import STUDIES
            if args.name not in STUDIES:
                parser.error("study: give a study name, one of %s (then --help for its options)"
                             % ", ".join(STUDIES))
            return _cmd_study(args)
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
